-- Whether an `image_findings` row's image is live (stored and not in the
-- trash), kept on the row, so that the overview's count of images with
-- findings reads one covering partial index and joins nothing (issue 14:
-- with 10,000 repositories the join to `repositories` and `manifests` cost
-- two lookups per row with findings, 120 ms of the overview's 173).
--
-- The advisor's upsert sets `live` from the manifest as it stands in the
-- same transaction, holding the manifest row `FOR SHARE` so that a trash
-- or delete waits for it (or it for them); the trigger below keeps it in
-- the statement (and so the transaction) that trashes, restores or
-- deletes the manifest, whichever code path does it, as migration 0020
-- keeps the repository figures. A deleted manifest's row goes with it. A
-- manifest stored again after that has no row until the advisor records
-- it, which it does when it has indexed the image.
--
-- Locking: the trigger is named so that it fires after the quota and
-- repository triggers of the same event (name order), which keeps their
-- order; it locks one `image_findings` row, after the manifest row, as
-- the advisor's upsert does.
ALTER TABLE image_findings ADD COLUMN live BOOLEAN NOT NULL DEFAULT FALSE;

UPDATE image_findings SET live = EXISTS (
    SELECT 1 FROM manifests m JOIN repositories r ON r.id = m.repository_id
     WHERE r.name = image_findings.repository
       AND m.digest = image_findings.manifest_digest
       AND m.trashed_at IS NULL);

-- Covering: the count reads namespace and the severities from the index
-- alone (an index-only scan), only the rows with findings of live images.
DROP INDEX image_findings_with_findings;
CREATE INDEX image_findings_live_with_findings
    ON image_findings (namespace, critical, high, medium, low, unknown)
    WHERE total > 0 AND live;

CREATE FUNCTION berth_image_findings_live() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM image_findings
         WHERE repository = (SELECT name FROM repositories WHERE id = OLD.repository_id)
           AND manifest_digest = OLD.digest;
    ELSIF (OLD.trashed_at IS NULL) <> (NEW.trashed_at IS NULL) THEN
        -- Into the trash and back out of it.
        UPDATE image_findings SET live = (NEW.trashed_at IS NULL)
         WHERE repository = (SELECT name FROM repositories WHERE id = NEW.repository_id)
           AND manifest_digest = NEW.digest;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER vulnerability_findings_manifest AFTER DELETE OR UPDATE OF trashed_at ON manifests
    FOR EACH ROW EXECUTE FUNCTION berth_image_findings_live();
