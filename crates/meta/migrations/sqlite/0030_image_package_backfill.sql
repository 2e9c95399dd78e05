-- Whether an indexed image's package keys (`image_packages`, migration
-- 0025) are recorded. Images indexed before 0025 have none, so changed
-- advisories never found them; the scan workers record their keys from
-- the stored layer indexes (or index them again when those are missing),
-- once, and this flag says which still need it. Every finished indexing
-- sets it; a `done` or `partial` image without it is one to backfill.
ALTER TABLE image_indexes ADD COLUMN packages_recorded BOOLEAN NOT NULL DEFAULT FALSE;

-- Images with package keys have them; images whose indexing did not end
-- with packages (unsupported) have none to record; queued ones get theirs
-- when they finish.
UPDATE image_indexes SET packages_recorded = TRUE
 WHERE state NOT IN ('done', 'partial')
    OR EXISTS (SELECT 1 FROM image_packages p
                WHERE p.manifest_digest = image_indexes.manifest_digest);

-- The backfill reads the images still without keys, in digest order, from
-- this index alone; it is empty once the backfill is done.
CREATE INDEX image_indexes_without_packages ON image_indexes (manifest_digest)
 WHERE NOT packages_recorded;
