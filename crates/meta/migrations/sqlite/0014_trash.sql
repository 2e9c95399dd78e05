-- The trash (issue 15): a deleted image stays restorable for a while.
--
-- A trashed manifest keeps its row and every row that references it or
-- that it references (`manifest_blobs`, `manifest_children`), so nothing it
-- holds becomes a garbage-collection candidate while it is in the trash;
-- every read that serves `/v2/` or lists images skips rows whose
-- `trashed_at` is set. `trash_root` names the manifest whose deletion put
-- this one in the trash (itself, or the subject it was a referrer of), so
-- that restoring or expiring an entry takes exactly what went in with it.
ALTER TABLE manifests ADD COLUMN trashed_at INTEGER;
ALTER TABLE manifests ADD COLUMN trash_root TEXT;

CREATE INDEX manifests_by_trash_root ON manifests (repository_id, trash_root)
    WHERE trash_root IS NOT NULL;

-- One row per deletion in the trash, keyed by the manifest deleted. The
-- namespace is copied in so that a listing restricted to one namespace is
-- one index range, as is the expiry's scan by age.
CREATE TABLE trash (
    repository_id INTEGER NOT NULL,
    digest TEXT NOT NULL,
    namespace TEXT NOT NULL,
    trashed_at INTEGER NOT NULL,
    -- Who deleted it, as the actor is shown.
    trashed_by TEXT NOT NULL,
    PRIMARY KEY (repository_id, digest),
    FOREIGN KEY (repository_id, digest) REFERENCES manifests (repository_id, digest)
);

CREATE INDEX trash_by_age ON trash (trashed_at, repository_id, digest);
CREATE INDEX trash_by_namespace ON trash (namespace, trashed_at, repository_id, digest);

-- The tags the manifests of a trash entry had, given back on restore where
-- still free. They go with their entry.
CREATE TABLE trashed_tags (
    repository_id INTEGER NOT NULL,
    root_digest TEXT NOT NULL,
    name TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    PRIMARY KEY (repository_id, root_digest, name),
    FOREIGN KEY (repository_id, root_digest) REFERENCES trash (repository_id, digest)
        ON DELETE CASCADE
);
