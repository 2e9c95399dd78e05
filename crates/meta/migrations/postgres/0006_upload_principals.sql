-- Who opened each upload session, as in migrations/sqlite/0006_upload_principals.sql.
ALTER TABLE uploads ADD COLUMN principal TEXT;

CREATE INDEX uploads_by_repository ON uploads (repository_id, updated_at);
CREATE INDEX uploads_by_principal ON uploads (principal, updated_at)
    WHERE principal IS NOT NULL;
