-- A repository's figures as listings show them, kept in its row, so that
-- a listing sorted by any of them reads a page, not every repository, and
-- a namespace's counts add up its repositories' (issue 12: every list is
-- O(page) through indexes).
--
-- `size_bytes` is the sum of the sizes of the blobs linked to the
-- repository (`repository_blobs`), each once. `image_count` counts its live
-- manifests (not in the trash), `tag_count` its tags. `last_push_at` is
-- when a manifest was last stored in it or a tag last created or moved; it
-- never goes back (deleting the newest image does not un-push it). All are
-- maintained by the triggers below, in the statement (and so the
-- transaction) that makes the change, whichever code path does it, as the
-- quota figures of migration 0017 are. A push costs no statement more than
-- before for the counts: they move in the same update as the last push.
ALTER TABLE repositories ADD COLUMN size_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN last_push_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN image_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN tag_count INTEGER NOT NULL DEFAULT 0;

UPDATE repositories SET
    size_bytes = COALESCE((SELECT SUM(b.size) FROM repository_blobs rb
        JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = repositories.id), 0),
    last_push_at = MAX(
        COALESCE((SELECT MAX(m.created_at) FROM manifests m WHERE m.repository_id = repositories.id), 0),
        COALESCE((SELECT MAX(t.updated_at) FROM tags t WHERE t.repository_id = repositories.id), 0)),
    image_count = (SELECT COUNT(*) FROM manifests m
        WHERE m.repository_id = repositories.id AND m.trashed_at IS NULL),
    tag_count = (SELECT COUNT(*) FROM tags t WHERE t.repository_id = repositories.id);

CREATE INDEX repositories_by_size ON repositories (size_bytes, name);
CREATE INDEX repositories_by_last_push ON repositories (last_push_at, name);

-- A link's blob row exists while the link does (its foreign key), so the
-- size is there to subtract when the link goes.
CREATE TRIGGER repository_size_link_added AFTER INSERT ON repository_blobs BEGIN
    UPDATE repositories
       SET size_bytes = size_bytes + (SELECT size FROM blobs WHERE digest = NEW.digest)
     WHERE id = NEW.repository_id;
END;

CREATE TRIGGER repository_size_link_removed AFTER DELETE ON repository_blobs BEGIN
    UPDATE repositories
       SET size_bytes = size_bytes - (SELECT size FROM blobs WHERE digest = OLD.digest)
     WHERE id = OLD.repository_id;
END;

-- Manifests are stored live (never straight into the trash).
CREATE TRIGGER repository_manifest_added AFTER INSERT ON manifests BEGIN
    UPDATE repositories
       SET image_count = image_count + 1, last_push_at = MAX(last_push_at, NEW.created_at)
     WHERE id = NEW.repository_id;
END;

CREATE TRIGGER repository_manifest_removed AFTER DELETE ON manifests
WHEN OLD.trashed_at IS NULL BEGIN
    UPDATE repositories SET image_count = image_count - 1 WHERE id = OLD.repository_id;
END;

-- Into the trash and back out of it.
CREATE TRIGGER repository_manifest_trashed AFTER UPDATE OF trashed_at ON manifests
WHEN (OLD.trashed_at IS NULL) <> (NEW.trashed_at IS NULL) BEGIN
    UPDATE repositories
       SET image_count = image_count + (CASE WHEN NEW.trashed_at IS NULL THEN 1 ELSE -1 END)
     WHERE id = NEW.repository_id;
END;

CREATE TRIGGER repository_tag_added AFTER INSERT ON tags BEGIN
    UPDATE repositories
       SET tag_count = tag_count + 1, last_push_at = MAX(last_push_at, NEW.updated_at)
     WHERE id = NEW.repository_id;
END;

CREATE TRIGGER repository_tag_moved AFTER UPDATE OF manifest_digest, updated_at ON tags BEGIN
    UPDATE repositories SET last_push_at = NEW.updated_at
     WHERE id = NEW.repository_id AND last_push_at < NEW.updated_at;
END;

CREATE TRIGGER repository_tag_removed AFTER DELETE ON tags BEGIN
    UPDATE repositories SET tag_count = tag_count - 1 WHERE id = OLD.repository_id;
END;
