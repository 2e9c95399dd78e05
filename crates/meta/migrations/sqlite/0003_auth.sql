-- Access control: users, namespaces with their visibility and members,
-- access (robot) tokens and refresh tokens.
--
-- Secrets are never stored: passwords as argon2id PHC strings, tokens as the
-- lowercase hex SHA-256 of the secret. Timestamps are seconds since the Unix
-- epoch, supplied by the caller. Namespaces are independent of the
-- repositories table: a namespace may exist before anything is pushed to it,
-- and repositories keep working when access control is off.

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL CHECK (is_admin IN (0, 1)),
    created_at INTEGER NOT NULL
);

CREATE TABLE namespaces (
    name TEXT PRIMARY KEY,
    visibility TEXT NOT NULL CHECK (visibility IN ('public', 'private')),
    created_at INTEGER NOT NULL
);

-- Removing a user or a namespace removes its memberships with it.
CREATE TABLE namespace_members (
    namespace TEXT NOT NULL REFERENCES namespaces (name) ON DELETE CASCADE,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('reader', 'writer', 'maintainer', 'owner')),
    PRIMARY KEY (namespace, user_name)
);

CREATE INDEX namespace_members_by_user ON namespace_members (user_name);

-- Revoked tokens stay, so their names are never silently reused.
-- `scopes` is a JSON array written and read by the auth crate.
CREATE TABLE access_tokens (
    name TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_by TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    revoked_at INTEGER
);

CREATE TABLE refresh_tokens (
    secret_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_name);
