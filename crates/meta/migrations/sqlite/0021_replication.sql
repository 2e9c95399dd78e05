-- Replication rules and the history of their runs (issue 16; see
-- crates/meta/src/replication.rs). One node runs a rule at a time through
-- a job lease (`job_leases`, job `replication/<name>`).
--
-- AUTOINCREMENT so that a removed rule's id is never handed out again, and
-- a run of it that finishes late finds nothing to update.
CREATE TABLE replication_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    -- `push` (Berth → remote) or `pull` (remote → Berth).
    direction TEXT NOT NULL,
    remote_url TEXT NOT NULL,
    -- `user:password` or a token, sealed with the key-encryption key when
    -- one is configured (`berth-sealed-v1:…`); NULL for anonymous access.
    credentials TEXT,
    repositories TEXT NOT NULL,
    tags TEXT,
    on_push INTEGER NOT NULL CHECK (on_push IN (0, 1)),
    -- Seconds between scheduled runs; NULL for none.
    interval_secs INTEGER,
    enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- The last runs of each rule (the store keeps a bounded number per rule).
CREATE TABLE replication_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id INTEGER NOT NULL REFERENCES replication_rules (id) ON DELETE CASCADE,
    -- `manual`, `push` or `schedule`.
    trigger_kind TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    -- `running`, `succeeded` or `failed`.
    status TEXT NOT NULL,
    images_copied INTEGER NOT NULL DEFAULT 0,
    images_skipped INTEGER NOT NULL DEFAULT 0,
    blobs_copied INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX replication_runs_by_rule ON replication_runs (rule_id, id);
