-- Tags deleted here whose deletion a push replication rule's remote has
-- not taken yet (it was down, or refused): tried again by the rule's next
-- runs until done (issue 16; see crates/meta/src/replication.rs). Bounded
-- per rule by the store's caller; they go with their rule.
CREATE TABLE replication_pending_deletes (
    rule_id INTEGER NOT NULL REFERENCES replication_rules (id) ON DELETE CASCADE,
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    since BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    PRIMARY KEY (rule_id, repository, tag)
);
-- Oldest first per rule: the retry order, and which go when over the bound.
CREATE INDEX replication_pending_deletes_by_age
    ON replication_pending_deletes (rule_id, since, repository, tag);
