-- Whether an `image_findings` row's image is live (stored and not in the
-- trash), kept on the row, so that the overview's count of images with
-- findings reads one covering partial index and joins nothing (issue 14:
-- with 10,000 repositories the join to `repositories` and `manifests` cost
-- two lookups per row with findings, 120 ms of the overview's 173).
--
-- The advisor's upsert sets `live` from the manifest as it stands in the
-- same transaction; the triggers below keep it in the statement (and so
-- the transaction) that trashes, restores or deletes the manifest,
-- whichever code path does it, as migration 0020 keeps the repository
-- figures. A deleted manifest's row goes with it. A manifest stored again
-- after that has no row until the advisor records it, which it does when
-- it has indexed the image.
ALTER TABLE image_findings ADD COLUMN live INTEGER NOT NULL DEFAULT 0 CHECK (live IN (0, 1));

UPDATE image_findings SET live = EXISTS (
    SELECT 1 FROM manifests m JOIN repositories r ON r.id = m.repository_id
     WHERE r.name = image_findings.repository
       AND m.digest = image_findings.manifest_digest
       AND m.trashed_at IS NULL);

-- Covering: the count reads namespace and the severities from the index
-- alone, only the rows with findings of live images. `total` and `live`
-- are columns too because SQLite counts the columns of a partial index's
-- condition as read from the row otherwise (`total > 0` is no equality it
-- could take as known).
DROP INDEX image_findings_with_findings;
CREATE INDEX image_findings_live_with_findings
    ON image_findings (namespace, critical, high, medium, low, unknown, total, live)
    WHERE total > 0 AND live;

-- Into the trash and back out of it.
CREATE TRIGGER image_findings_manifest_trashed AFTER UPDATE OF trashed_at ON manifests
WHEN (OLD.trashed_at IS NULL) <> (NEW.trashed_at IS NULL) BEGIN
    UPDATE image_findings SET live = (NEW.trashed_at IS NULL)
     WHERE repository = (SELECT name FROM repositories WHERE id = NEW.repository_id)
       AND manifest_digest = NEW.digest;
END;

CREATE TRIGGER image_findings_manifest_removed AFTER DELETE ON manifests BEGIN
    DELETE FROM image_findings
     WHERE repository = (SELECT name FROM repositories WHERE id = OLD.repository_id)
       AND manifest_digest = OLD.digest;
END;
