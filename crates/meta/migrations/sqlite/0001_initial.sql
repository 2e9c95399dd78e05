-- The initial metadata schema.
--
-- The PostgreSQL backend uses the same tables, columns and constraints, so
-- both backends behave alike and the shared test suite holds for both.
-- Repositories are referred to by an integer id everywhere but in their own
-- table, which keeps the per-repository keys short and lets a later migration
-- rename or move repositories (namespaces, access control) by touching one row.
-- Timestamps are seconds since the Unix epoch, supplied by the caller.
-- Text that must sort in byte order (names, tags, digests) relies on SQLite's
-- default BINARY collation; PostgreSQL will declare COLLATE "C" for the same.

CREATE TABLE repositories (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- Every blob whose bytes the blob store holds, once, whatever the repository.
-- Garbage collection deletes a row here only when no repository_blobs or
-- manifest_blobs row names the digest; the foreign keys below make any other
-- deletion fail.
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    created_at INTEGER NOT NULL
);

-- Which blobs a repository may serve. A blob pushed to one repository is
-- invisible from another until it is linked there (by upload or mount).
CREATE TABLE repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    digest TEXT NOT NULL REFERENCES blobs (digest),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);

-- Garbage collection counts references to a digest across repositories.
CREATE INDEX repository_blobs_by_digest ON repository_blobs (digest);

CREATE TABLE manifests (
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    artifact_type TEXT,
    -- The digest of the manifest this one refers to; it need not exist,
    -- because the spec lets referrers be pushed before their subject.
    subject TEXT,
    -- A JSON object, kept as text because only the referrers API reads it.
    annotations TEXT,
    -- The exact bytes pushed; the digest is computed over them.
    payload BLOB NOT NULL,
    size INTEGER NOT NULL CHECK (size >= 0),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);

-- The referrers API looks manifests up by subject within a repository.
CREATE INDEX manifests_by_subject ON manifests (repository_id, subject);

-- The blobs (config and layers) a manifest references. These rows are what
-- keeps a blob alive during garbage collection even after it was unlinked
-- from the repository, so the foreign key to blobs is deliberate.
CREATE TABLE manifest_blobs (
    repository_id INTEGER NOT NULL,
    manifest_digest TEXT NOT NULL,
    blob_digest TEXT NOT NULL REFERENCES blobs (digest),
    PRIMARY KEY (repository_id, manifest_digest, blob_digest),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests (repository_id, digest)
);

CREATE INDEX manifest_blobs_by_blob ON manifest_blobs (blob_digest);

-- The manifests an index lists. The foreign key on the child makes deleting
-- a manifest that an index still lists fail even if the code forgot to check.
CREATE TABLE manifest_children (
    repository_id INTEGER NOT NULL,
    parent_digest TEXT NOT NULL,
    child_digest TEXT NOT NULL,
    PRIMARY KEY (repository_id, parent_digest, child_digest),
    FOREIGN KEY (repository_id, parent_digest) REFERENCES manifests (repository_id, digest),
    FOREIGN KEY (repository_id, child_digest) REFERENCES manifests (repository_id, digest)
);

CREATE INDEX manifest_children_by_child ON manifest_children (repository_id, child_digest);

CREATE TABLE tags (
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    name TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests (repository_id, digest)
);

-- Deleting a manifest finds the tags that point at it.
CREATE INDEX tags_by_manifest ON tags (repository_id, manifest_digest);

-- Upload sessions. The lease lets one writer at a time append to an upload,
-- across processes, and expires so that a crashed writer does not block it.
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- The blob store's progress record, as JSON written by the caller.
    progress TEXT NOT NULL,
    lease_holder TEXT,
    lease_expires INTEGER,
    CHECK ((lease_holder IS NULL) = (lease_expires IS NULL))
);

-- The purge of abandoned uploads scans by age.
CREATE INDEX uploads_by_updated_at ON uploads (updated_at);
