-- The event stream: one row per state change, inserted in the transaction
-- that makes the change (see crates/meta/src/events.rs).
--
-- AUTOINCREMENT, because a position is never to be handed out twice: without
-- it SQLite reuses the largest rowid after the newest rows are deleted
-- (retention may delete every event), and a consumer whose position is past
-- the reused numbers would skip the new events. A rolled-back insert leaves
-- no hole: the counter rolls back with it, and the one writer commits in
-- position order.
CREATE TABLE events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Seconds since the Unix epoch: when the change was made.
    at INTEGER NOT NULL,
    -- `namespace.created`, `tag.moved`, … (EventKind::as_str).
    kind TEXT NOT NULL,
    namespace TEXT,
    repository TEXT,
    digest TEXT,
    tag TEXT,
    -- `user`, `robot`, `anonymous` or `system`, with the name and the
    -- client's address when known.
    actor_kind TEXT NOT NULL,
    actor_name TEXT,
    actor_address TEXT,
    -- A JSON object of small facts (sizes, media types, previous values).
    detail TEXT NOT NULL
);

-- Retention deletes by age; `--since 1h` looks up the first event by time.
CREATE INDEX events_by_time ON events (at);

-- Named consumers: the position up to which each has handled the stream,
-- and a lease so that one node at a time handles a consumer's events.
CREATE TABLE event_consumers (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    holder TEXT,
    lease_expires INTEGER,
    updated_at INTEGER NOT NULL
);
