-- Replication rules and the history of their runs (issue 16; see
-- crates/meta/src/replication.rs). One node runs a rule at a time through
-- a job lease (`job_leases`, job `replication/<name>`).
--
-- An identity column so that a removed rule's id is never handed out again, and
-- a run of it that finishes late finds nothing to update.
CREATE TABLE replication_rules (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    -- `push` (Berth → remote) or `pull` (remote → Berth).
    direction TEXT NOT NULL,
    remote_url TEXT NOT NULL,
    -- `user:password` or a token, sealed with the key-encryption key when
    -- one is configured (`berth-sealed-v1:…`); NULL for anonymous access.
    credentials TEXT,
    repositories TEXT NOT NULL,
    tags TEXT,
    on_push BOOLEAN NOT NULL,
    -- Seconds between scheduled runs; NULL for none.
    interval_secs BIGINT,
    enabled BOOLEAN NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The last runs of each rule (the store keeps a bounded number per rule).
CREATE TABLE replication_runs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id BIGINT NOT NULL REFERENCES replication_rules (id) ON DELETE CASCADE,
    -- `manual`, `push` or `schedule`.
    trigger_kind TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    -- `running`, `succeeded` or `failed`.
    status TEXT NOT NULL,
    images_copied BIGINT NOT NULL DEFAULT 0,
    images_skipped BIGINT NOT NULL DEFAULT 0,
    blobs_copied BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX replication_runs_by_rule ON replication_runs (rule_id, id);
