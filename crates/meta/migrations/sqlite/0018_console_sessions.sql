-- Web console sessions (issue 14).
--
-- The browser's cookie carries a random secret; only its lowercase hex
-- SHA-256 is stored here, as for refresh tokens, so a copy of the database
-- signs nobody in. A session ends at `expires_at` (the absolute limit), when
-- it has not been seen since the idle limit the server applies to
-- `last_seen_at`, or when it is revoked (sign-out). Removing a user removes
-- their sessions; a disabled user's sessions are refused by the server,
-- which reads the user on every request.
CREATE TABLE console_sessions (
    secret_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE INDEX console_sessions_by_user ON console_sessions (user_name);
