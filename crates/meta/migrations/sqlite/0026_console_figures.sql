-- Figures for the console's overview (issue 14).
--
-- `image_findings`: the fixable, not exempted vulnerability findings of
-- each assessed image (a platform manifest) in a repository, by severity,
-- as the advisor last assessed it against advisory data `generation`. The
-- scan workers write a row when they finish indexing an image and refresh
-- stale rows (another generation, or marked stale by an exemption's
-- change) in small batches when the scan queue is empty. `total` is the
-- sum of the counts, so that images with findings are one partial index
-- range per namespace, however many images have none.
CREATE TABLE image_findings (
    repository TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    namespace TEXT NOT NULL,
    generation INTEGER NOT NULL,
    critical INTEGER NOT NULL,
    high INTEGER NOT NULL,
    medium INTEGER NOT NULL,
    low INTEGER NOT NULL,
    unknown INTEGER NOT NULL,
    total INTEGER NOT NULL,
    assessed_at INTEGER NOT NULL,
    PRIMARY KEY (repository, manifest_digest)
);
CREATE INDEX image_findings_with_findings ON image_findings (namespace) WHERE total > 0;
CREATE INDEX image_findings_by_generation ON image_findings (generation);
