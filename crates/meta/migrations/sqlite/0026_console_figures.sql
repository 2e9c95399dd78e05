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

-- `namespace_usage_daily`: per namespace and UTC day (`day`: the Unix
-- time of its first second), the storage it held (the last snapshot of
-- that day), the manifest pulls counted and the blob bytes served. Pulls
-- and bytes are added by the same batches that add them to the pull
-- statistics and the traffic quota; storage is copied from
-- `namespace_quotas` by a leased job every few minutes (one statement
-- over the namespaces) and by the first pull batch of a day. Rows older
-- than the retention (400 days) are deleted by the same job.
CREATE TABLE namespace_usage_daily (
    namespace TEXT NOT NULL REFERENCES namespaces (name) ON DELETE CASCADE,
    day INTEGER NOT NULL,
    storage_bytes INTEGER NOT NULL,
    pulls INTEGER NOT NULL,
    pull_bytes INTEGER NOT NULL,
    PRIMARY KEY (namespace, day)
);
CREATE INDEX namespace_usage_daily_by_day ON namespace_usage_daily (day);
