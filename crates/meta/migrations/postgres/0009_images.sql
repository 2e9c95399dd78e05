-- The image listing of the management API: what each manifest weighs and
-- what its image configuration says, kept with the manifest so that a page
-- of images is read from one index range and never from the blob store.
--
-- `total_size` is the size of the image: its config and layers, each
-- distinct blob once; for an index, the distinct blobs of all its children
-- (the manifests' own bytes are not counted, as `docker images` does not).
-- It is computed in the transaction that stores the manifest, from the
-- sizes the blobs table holds, so it never disagrees with what was pushed.
-- Manifests stored before this migration get theirs here.
--
-- `facts` is the JSON summary of the image configuration (created, platform,
-- entrypoint, history, ...) or of an index's platforms, written once by the
-- registry the first time the image is listed or inspected (the blob store
-- is read then, and never again for it). NULL until then.

ALTER TABLE manifests ADD COLUMN total_size BIGINT;
ALTER TABLE manifests ADD COLUMN facts TEXT;

UPDATE manifests SET total_size = (
    SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN (
        SELECT mb.blob_digest FROM manifest_blobs mb
        WHERE mb.repository_id = manifests.repository_id
          AND (mb.manifest_digest = manifests.digest
               OR mb.manifest_digest IN (
                   SELECT c.child_digest FROM manifest_children c
                   WHERE c.repository_id = manifests.repository_id
                     AND c.parent_digest = manifests.digest))));

-- Images are listed newest push first, a page at a time by keyset
-- (pushed at, digest), within one repository.
CREATE INDEX manifests_by_push ON manifests (repository_id, created_at, digest);
