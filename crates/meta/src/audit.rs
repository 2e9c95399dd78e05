//! [`AuditStore`]: the audit trail, who did what, on which resource, when,
//! and with what outcome.
//!
//! Records of changes are copied from the event stream by the audit
//! consumer (`berth_registry::audit`), so they exist exactly when the change
//! committed; they are kept for the audit retention, which is usually
//! longer than the events'.

use crate::{MetaError, Timestamp};

/// A record to store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAuditRecord {
    pub at: Timestamp,
    /// `user`, `robot`, `anonymous` or `system` (`ActorKind::as_str`).
    pub actor_kind: String,
    pub actor_name: Option<String>,
    pub actor_address: Option<String>,
    /// What was done: an event kind (`tag.deleted`).
    pub action: String,
    pub namespace: Option<String>,
    /// What it was done to: `REPO:TAG`, `REPO@DIGEST`, a repository, a
    /// namespace, a user or token name.
    pub resource: Option<String>,
    /// `ok` for a change that committed.
    pub outcome: String,
    /// Small facts (the event's detail).
    pub detail: serde_json::Value,
    /// The event it was copied from, which makes copying idempotent.
    pub event_position: Option<i64>,
}

/// A stored record.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub record: NewAuditRecord,
}

/// Which records to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only those at or after this time.
    pub since: Option<Timestamp>,
    /// Only those of the actor of this name.
    pub actor: Option<String>,
    pub namespace: Option<String>,
    pub action: Option<String>,
    /// Only those older than the record of this id (the next page).
    pub before_id: Option<i64>,
    pub limit: usize,
}

/// The audit trail. Records are facts about the past: they are never
/// changed, only deleted by age.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Stores `records` in one transaction; a record of an event position
    /// stored before is left as it is. Returns how many were stored.
    async fn record_audit(&self, records: &[NewAuditRecord]) -> Result<u64, MetaError>;

    /// The records `query` selects, newest first (by id), at most `limit`.
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, MetaError>;

    /// Deletes at most `limit` of the records written before `before`;
    /// returns how many.
    async fn delete_audit_before(&self, before: Timestamp, limit: usize) -> Result<u64, MetaError>;
}
