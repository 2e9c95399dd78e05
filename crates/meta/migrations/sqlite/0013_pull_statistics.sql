-- Pull statistics: how often, and when last, each image (manifest) and each
-- repository was pulled. Nodes count pulls in memory and add them here in
-- batches every few seconds (see `PullStatsStore`), so a pull costs no write
-- of its own. Counts start at zero: pulls before this migration were not
-- counted anywhere.

ALTER TABLE manifests ADD COLUMN pull_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE manifests ADD COLUMN last_pulled_at INTEGER;
ALTER TABLE repositories ADD COLUMN pull_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN last_pulled_at INTEGER;

-- Repositories listed most pulled first, a page at a time by keyset
-- (pulls, name).
CREATE INDEX repositories_by_pulls ON repositories (pull_count, name);
