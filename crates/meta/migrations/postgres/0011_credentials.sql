-- Credentials after creation (issue 11): disabled accounts and refresh-token
-- families.
--
-- A disabled user keeps their row (and so their name, memberships and the
-- tokens they created) but may not log in, and every credential of theirs
-- stops working; `disabled_at` is when, NULL for an enabled account.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;

-- A refresh token belongs to the family of the token it was rotated from
-- (the first token of a login starts its own family, named by its hash).
-- Presenting a token that was already rotated away revokes its whole
-- family: one of the two holders is a thief, and neither can be told apart.
ALTER TABLE refresh_tokens ADD COLUMN family TEXT;
UPDATE refresh_tokens SET family = secret_hash;
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
