-- Access control, as in migrations/sqlite/0003_auth.sql: the same tables and
-- columns, so the schema versions mean the same on both backends. The
-- PostgreSQL backend does not implement AuthMetaStore yet; the tables are
-- here so a database created now needs no catch-up when it does.

CREATE TABLE users (
    name TEXT COLLATE "C" PRIMARY KEY,
    password_hash TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE namespaces (
    name TEXT COLLATE "C" PRIMARY KEY,
    visibility TEXT NOT NULL CHECK (visibility IN ('public', 'private')),
    created_at BIGINT NOT NULL
);

CREATE TABLE namespace_members (
    namespace TEXT COLLATE "C" NOT NULL REFERENCES namespaces (name) ON DELETE CASCADE,
    user_name TEXT COLLATE "C" NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('reader', 'writer', 'maintainer', 'owner')),
    PRIMARY KEY (namespace, user_name)
);

CREATE INDEX namespace_members_by_user ON namespace_members (user_name);

CREATE TABLE access_tokens (
    name TEXT COLLATE "C" PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE refresh_tokens (
    secret_hash TEXT PRIMARY KEY,
    user_name TEXT COLLATE "C" NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_name);
