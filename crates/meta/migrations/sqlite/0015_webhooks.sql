-- Webhooks and the audit trail. Webhooks: endpoints that receive the event stream's changes as
-- CloudEvents, and the queue of deliveries to them (see
-- crates/meta/src/webhooks.rs).
--
-- AUTOINCREMENT so that the id of a removed webhook is never handed out
-- again: people and scripts name webhooks by id (`berth webhook rm ID`).
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The namespace whose events it receives; NULL for every event of the
    -- registry (`'*'`, administrators only). A namespace's webhooks go
    -- with it.
    namespace TEXT REFERENCES namespaces (name) ON DELETE CASCADE,
    url TEXT NOT NULL,
    -- A JSON array of the subscribed event types (`push`, `delete`, or
    -- event kinds such as `namespace.created`).
    events TEXT NOT NULL,
    -- The signing secret, sealed with the key-encryption key when one is
    -- configured (`berth-sealed-v1:…`), else as given; NULL for none.
    secret TEXT,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX webhooks_by_namespace ON webhooks (namespace);

-- One row per (webhook, event): the UNIQUE key makes queueing idempotent,
-- so a batch of events handed to the consumer again queues nothing twice.
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_position INTEGER NOT NULL,
    event_kind TEXT NOT NULL,
    -- The CloudEvent, exactly the bytes that are sent and signed, built once
    -- so that every attempt sends the same body.
    payload TEXT NOT NULL,
    -- `pending`, `delivered` or `failed` (attempts exhausted).
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before INTEGER NOT NULL,
    holder TEXT,
    lease_expires INTEGER,
    last_status INTEGER,
    last_response TEXT,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (webhook_id, event_position)
);
-- Workers take the oldest due pending delivery.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, not_before, id);

-- The audit trail: who did what, on which resource, when, with what
-- outcome (see crates/meta/src/audit.rs). Kept for `[audit] retention`,
-- longer than events. A record copied from an event keeps its position, and
-- the UNIQUE key makes the copy idempotent.
CREATE TABLE audit_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_name TEXT,
    actor_address TEXT,
    action TEXT NOT NULL,
    namespace TEXT,
    resource TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    event_position INTEGER UNIQUE
);
CREATE INDEX audit_records_by_time ON audit_records (at, id);
CREATE INDEX audit_records_by_actor ON audit_records (actor_name, at);
CREATE INDEX audit_records_by_namespace ON audit_records (namespace, at);
