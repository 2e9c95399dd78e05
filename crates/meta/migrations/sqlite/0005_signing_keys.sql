-- Registry token signing keys, shared by every node that uses this database,
-- so a token signed by one node verifies on all of them.
--
-- `kid` is derived from the public key by the auth crate. The current key
-- (the one that signs) has no `retired_at`; at most one key is current, which
-- the unique partial index guarantees even if two rotations raced. A retired
-- key only verifies tokens it signed before it retired, so its private half
-- is erased when it retires; it is deleted once those tokens have expired.
-- Timestamps are seconds since the Unix epoch, supplied by the caller.

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    private_key_pem TEXT,
    public_key_pem TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER,
    CHECK (retired_at IS NOT NULL OR private_key_pem IS NOT NULL)
);

CREATE UNIQUE INDEX signing_keys_one_current
    ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;
