-- The state of the advisory data (`advisory_data()`: count, newest
-- modification, generation) is read for every scanned image and every second
-- by an idle scan worker. Counting the advisories and finding the newest
-- read every advisory's row, bodies included: 620 ms for 500,000 advisories
-- of 2 KB on SQLite. The count is now kept beside the generation, moved by
-- each import in its own transaction, and the newest modification is read
-- from an index (0.05 ms).
CREATE INDEX advisories_by_modified ON advisories (modified_ns);
ALTER TABLE advisory_data ADD COLUMN advisory_count BIGINT NOT NULL DEFAULT 0;
UPDATE advisory_data SET advisory_count = (SELECT COUNT(*) FROM advisories);
