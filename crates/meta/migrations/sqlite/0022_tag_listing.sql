-- A repository's tags are listed a page at a time by keyset, by name (the
-- primary key), by when each tag was last pushed or moved, or by the size
-- of the image it names (issue 14: search, sort and paging that stay fast
-- with 100,000 tags). These two indexes make the last two sorts one range
-- each, read in order from the cursor.
CREATE INDEX tags_by_update ON tags (repository_id, updated_at, name);
CREATE INDEX manifests_by_size ON manifests (repository_id, total_size, digest);
