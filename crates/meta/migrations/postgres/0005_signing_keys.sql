-- Registry token signing keys, as in migrations/sqlite/0005_signing_keys.sql
-- (which explains each column): the same table and columns.

CREATE TABLE signing_keys (
    kid TEXT COLLATE "C" PRIMARY KEY,
    private_key_pem TEXT,
    public_key_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT,
    CHECK (retired_at IS NOT NULL OR private_key_pem IS NOT NULL)
);

CREATE UNIQUE INDEX signing_keys_one_current
    ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;
