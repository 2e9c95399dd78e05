-- Retention policies (issue 15): at most one per namespace, going with it.
--
-- A policy keeps the newest `keep_images` tagged images of each repository
-- of the namespace; `untagged` is 'keep' or 'delete' (what becomes of
-- images no tag points at); nothing younger than `min_age` seconds is ever
-- deleted; an image with a tag that `keep_tags` (a regular expression, NULL
-- for none) matches is always kept. The registry evaluates it; the store
-- only keeps it.
CREATE TABLE retention_policies (
    namespace TEXT PRIMARY KEY REFERENCES namespaces (name) ON DELETE CASCADE,
    keep_images INTEGER NOT NULL,
    untagged TEXT NOT NULL,
    min_age INTEGER NOT NULL,
    keep_tags TEXT,
    author TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
