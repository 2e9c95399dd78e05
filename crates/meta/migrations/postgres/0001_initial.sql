-- The initial metadata schema, the same tables, columns and constraints as
-- migrations/sqlite/0001_initial.sql, so both backends behave alike and the
-- shared test suite holds for both. See that file for what each table is for;
-- only the differences from SQLite are explained here.
--
-- Text that is sorted or paged (repository names, tags, digests) is declared
-- COLLATE "C", which compares bytes, as SQLite's BINARY does: the database's
-- default collation may be a locale's, which would order `_catalog` and tag
-- lists differently from SQLite and make `last=` paging skip or repeat names.
-- The same collation on both sides of every foreign key keeps them comparable.
-- Timestamps and sizes are BIGINT (Rust's i64); payloads are BYTEA.

CREATE TABLE repositories (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE blobs (
    digest TEXT COLLATE "C" PRIMARY KEY,
    size BIGINT NOT NULL CHECK (size >= 0),
    created_at BIGINT NOT NULL
);

CREATE TABLE repository_blobs (
    repository_id BIGINT NOT NULL REFERENCES repositories (id),
    digest TEXT COLLATE "C" NOT NULL REFERENCES blobs (digest),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);

CREATE INDEX repository_blobs_by_digest ON repository_blobs (digest);

CREATE TABLE manifests (
    repository_id BIGINT NOT NULL REFERENCES repositories (id),
    digest TEXT COLLATE "C" NOT NULL,
    media_type TEXT NOT NULL,
    artifact_type TEXT,
    subject TEXT COLLATE "C",
    annotations TEXT,
    payload BYTEA NOT NULL,
    size BIGINT NOT NULL CHECK (size >= 0),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);

CREATE INDEX manifests_by_subject ON manifests (repository_id, subject);

CREATE TABLE manifest_blobs (
    repository_id BIGINT NOT NULL,
    manifest_digest TEXT COLLATE "C" NOT NULL,
    blob_digest TEXT COLLATE "C" NOT NULL REFERENCES blobs (digest),
    PRIMARY KEY (repository_id, manifest_digest, blob_digest),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests (repository_id, digest)
);

CREATE INDEX manifest_blobs_by_blob ON manifest_blobs (blob_digest);

CREATE TABLE manifest_children (
    repository_id BIGINT NOT NULL,
    parent_digest TEXT COLLATE "C" NOT NULL,
    child_digest TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (repository_id, parent_digest, child_digest),
    FOREIGN KEY (repository_id, parent_digest) REFERENCES manifests (repository_id, digest),
    FOREIGN KEY (repository_id, child_digest) REFERENCES manifests (repository_id, digest)
);

CREATE INDEX manifest_children_by_child ON manifest_children (repository_id, child_digest);

CREATE TABLE tags (
    repository_id BIGINT NOT NULL REFERENCES repositories (id),
    name TEXT COLLATE "C" NOT NULL,
    manifest_digest TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests (repository_id, digest)
);

CREATE INDEX tags_by_manifest ON tags (repository_id, manifest_digest);

CREATE TABLE uploads (
    id TEXT COLLATE "C" PRIMARY KEY,
    repository_id BIGINT NOT NULL REFERENCES repositories (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    progress TEXT NOT NULL,
    lease_holder TEXT,
    lease_expires BIGINT,
    CHECK ((lease_holder IS NULL) = (lease_expires IS NULL))
);

CREATE INDEX uploads_by_updated_at ON uploads (updated_at);
