-- Reference facts for online garbage collection, as in
-- migrations/sqlite/0004_gc.sql (which explains each column).

ALTER TABLE repository_blobs ADD COLUMN unreferenced_since BIGINT;
ALTER TABLE repository_blobs ADD COLUMN was_referenced INTEGER NOT NULL DEFAULT 0;
CREATE INDEX repository_blobs_unreferenced
    ON repository_blobs (unreferenced_since) WHERE unreferenced_since IS NOT NULL;

ALTER TABLE blobs ADD COLUMN orphaned_at BIGINT;
CREATE INDEX blobs_orphaned ON blobs (orphaned_at) WHERE orphaned_at IS NOT NULL;

CREATE TABLE blob_deletions (
    digest TEXT COLLATE "C" PRIMARY KEY,
    size BIGINT NOT NULL CHECK (size >= 0),
    started_at BIGINT NOT NULL
);

CREATE INDEX manifests_by_created_at ON manifests (created_at);

UPDATE repository_blobs SET was_referenced = 1
WHERE EXISTS (
    SELECT 1 FROM manifest_blobs mb
    WHERE mb.repository_id = repository_blobs.repository_id
      AND mb.blob_digest = repository_blobs.digest
);

UPDATE repository_blobs SET unreferenced_since = EXTRACT(EPOCH FROM now())::BIGINT
WHERE was_referenced = 0;

UPDATE blobs SET orphaned_at = EXTRACT(EPOCH FROM now())::BIGINT
WHERE NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = blobs.digest)
  AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = blobs.digest);
