-- The event stream, as in migrations/sqlite/0008_events.sql, plus the id of
-- the transaction that wrote each event (`xid`): positions come from a
-- sequence when the row is inserted, transactions commit in any order, and
-- readers use the transaction ids to tell a gap that will still fill from
-- one that never will (crates/meta/src/events.rs explains it). The
-- identity's sequence caches one value at a time (the default), so
-- positions are handed out in the order of the inserts across sessions.
CREATE TABLE events (
    position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid xid8 NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT COLLATE "C",
    repository TEXT COLLATE "C",
    digest TEXT COLLATE "C",
    tag TEXT COLLATE "C",
    actor_kind TEXT NOT NULL,
    actor_name TEXT,
    actor_address TEXT,
    detail TEXT NOT NULL
);

CREATE INDEX events_by_time ON events (at);

CREATE TABLE event_consumers (
    name TEXT COLLATE "C" PRIMARY KEY,
    position BIGINT NOT NULL,
    holder TEXT,
    lease_expires BIGINT,
    updated_at BIGINT NOT NULL
);
