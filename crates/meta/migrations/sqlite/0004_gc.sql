-- Reference facts for online garbage collection (see "Deletion and garbage
-- collection" in ARCHITECTURE.md).
--
-- Garbage is found through these columns and tables alone, never by walking
-- every blob or manifest: each is set, in the same transaction, by the change
-- that removed a thing's last reference, and cleared by the change that gave
-- it one back. A pass therefore reads only candidates, through the partial
-- indexes below.

-- When the link stopped being referenced by any manifest of its repository
-- (or, for a link no manifest ever referenced, when it was created). NULL
-- while some manifest of the repository references the blob.
ALTER TABLE repository_blobs ADD COLUMN unreferenced_since INTEGER;

-- Whether a manifest of the repository ever referenced the blob. A link no
-- manifest has referenced yet belongs to a push in progress, which may take
-- as long as an upload session may live; it is kept at least that long.
ALTER TABLE repository_blobs ADD COLUMN was_referenced INTEGER NOT NULL DEFAULT 0;

CREATE INDEX repository_blobs_unreferenced
    ON repository_blobs (unreferenced_since) WHERE unreferenced_since IS NOT NULL;

-- When the blob lost its last repository link and its last manifest
-- reference. NULL while anything references it.
ALTER TABLE blobs ADD COLUMN orphaned_at INTEGER;

CREATE INDEX blobs_orphaned ON blobs (orphaned_at) WHERE orphaned_at IS NOT NULL;

-- Blobs whose bytes garbage collection is deleting. A row here is a promise
-- that nothing will link the digest until the bytes are gone and the row is
-- removed: `link_blob` refuses while it exists. A pass that crashed between
-- writing the row and removing it finishes the deletion on its next run.
CREATE TABLE blob_deletions (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    started_at INTEGER NOT NULL
);

-- Untagged-manifest collection (optional) looks manifests up by age.
CREATE INDEX manifests_by_created_at ON manifests (created_at);

-- Facts for data written before this migration: links no manifest of their
-- repository references, and blobs nothing references, become candidates now.
UPDATE repository_blobs SET was_referenced = 1
WHERE EXISTS (
    SELECT 1 FROM manifest_blobs mb
    WHERE mb.repository_id = repository_blobs.repository_id
      AND mb.blob_digest = repository_blobs.digest
);

UPDATE repository_blobs SET unreferenced_since = CAST(strftime('%s', 'now') AS INTEGER)
WHERE was_referenced = 0;

UPDATE blobs SET orphaned_at = CAST(strftime('%s', 'now') AS INTEGER)
WHERE NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = blobs.digest)
  AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = blobs.digest);
