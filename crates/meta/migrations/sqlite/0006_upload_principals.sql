-- Who opened each upload session: the authenticated principal's name (a
-- user or an access token), NULL when access control is off or the caller
-- is anonymous. Open sessions are capped per principal as well as per
-- repository, and only sessions the purge would keep count
-- (`updated_at` within the upload TTL), so both caps read by age.
ALTER TABLE uploads ADD COLUMN principal TEXT;

CREATE INDEX uploads_by_repository ON uploads (repository_id, updated_at);
CREATE INDEX uploads_by_principal ON uploads (principal, updated_at)
    WHERE principal IS NOT NULL;
