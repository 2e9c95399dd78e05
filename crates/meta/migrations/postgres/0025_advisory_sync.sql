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
