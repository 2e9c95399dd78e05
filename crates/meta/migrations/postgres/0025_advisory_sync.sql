-- The scheduled advisory sync (issue 13): per configured source URL, when a
-- sync last ran and succeeded, how many records it changed, why it last
-- failed, and the HTTP validators (ETag, Last-Modified) of the last download
-- so an unchanged source is not downloaded again.
CREATE TABLE advisory_sources (
    url TEXT PRIMARY KEY,
    last_attempt_at BIGINT,
    last_success_at BIGINT,
    records_changed BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    etag TEXT,
    last_modified TEXT
);

-- The package keys ("ecosystem" LF "name", as advisory_packages has them)
-- each indexed image's findings are looked up by, written when its indexing
-- finishes: when advisories of a package change, the images to assess again
-- (and to tell about it, `vulnerabilities.changed`) are found here without
-- reading layer indexes. Images indexed before this migration have none
-- until they are indexed again.
CREATE TABLE image_packages (
    package_key TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    PRIMARY KEY (package_key, manifest_digest)
);
CREATE INDEX image_packages_by_manifest ON image_packages (manifest_digest);

-- When changed advisories last changed each indexed image's findings: the
-- state change its `vulnerabilities.changed` events commit with.
ALTER TABLE image_indexes ADD COLUMN findings_changed_at BIGINT;
