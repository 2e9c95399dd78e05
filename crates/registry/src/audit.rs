//! The audit trail in the registry: [`AuditTrail`], the consumer that copies
//! every event of the stream into the audit records (who, what, on which
//! resource, when, the outcome), and the queries and retention over them.
//!
//! Accesses that change nothing never reach the stream: refused requests,
//! and logins (a registry token issued to a user or robot, a console
//! sign-in). The server hands each to [`Registry::record_access`], which
//! keeps it in memory, and [`Registry::run_audit_flush`] writes them in
//! batches, so a flood of refused requests or logins costs no write each.
//! At most [`MAX_PENDING_ACCESSES`] wait; beyond that they are counted and
//! dropped (and the count logged).
//!
//! Copying is idempotent (one record per event position), so a batch handed
//! over again adds nothing. The records outlive the events: they are kept
//! for the audit retention (`[audit] retention`), the events for
//! `[events] retention`.

use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use berth_meta::{AuditQuery, AuditRecord, Event, EventKind, NewAuditRecord};

use crate::events::{ConsumerError, EventConsumer};
use crate::{Registry, RegistryError};

/// What an event's record names as its resource.
fn resource(event: &Event) -> Option<String> {
    match (&event.repository, &event.tag, &event.digest) {
        (Some(repository), Some(tag), _) => Some(format!("{repository}:{tag}")),
        (Some(repository), None, Some(digest)) => Some(format!("{repository}@{digest}")),
        (Some(repository), None, None) => Some(repository.to_string()),
        (None, _, Some(digest)) => Some(digest.to_string()),
        (None, _, None) => {
            // Access-control events name their user or token in the detail.
            let named = match event.kind {
                EventKind::UserCreated | EventKind::UserUpdated | EventKind::UserDeleted => event
                    .detail
                    .get("user")
                    .or_else(|| event.detail.get("name")),
                EventKind::TokenCreated | EventKind::TokenRevoked => event
                    .detail
                    .get("token")
                    .or_else(|| event.detail.get("name")),
                EventKind::MemberSet | EventKind::MemberRemoved => event.detail.get("user"),
                _ => None,
            };
            named
                .and_then(|name| name.as_str().map(str::to_string))
                .or_else(|| event.namespace.clone())
        }
    }
}

/// The record of a committed change.
pub fn audit_record(event: &Event) -> NewAuditRecord {
    NewAuditRecord {
        at: event.at,
        actor_kind: event.actor.kind.as_str().to_string(),
        actor_name: event.actor.name.clone(),
        actor_address: event.actor.address.map(|address| address.to_string()),
        action: event.kind.as_str().to_string(),
        namespace: event.namespace.clone(),
        resource: resource(event),
        outcome: "ok".to_string(),
        detail: event.detail.clone(),
        event_position: Some(event.position),
    }
}

/// Copies every event into the audit trail: the audit consumer.
pub struct AuditTrail {
    registry: Registry,
}

impl AuditTrail {
    /// The consumer's name, which keys its position in the database.
    pub const NAME: &'static str = "audit";

    pub fn new(registry: Registry) -> AuditTrail {
        AuditTrail { registry }
    }
}

#[async_trait::async_trait]
impl EventConsumer for AuditTrail {
    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError> {
        let records: Vec<NewAuditRecord> = events.iter().map(audit_record).collect();
        self.registry.meta().record_audit(&records).await?;
        Ok(())
    }
}

/// Access records kept in memory at most between two flushes.
pub const MAX_PENDING_ACCESSES: usize = 10_000;

/// Access records not written yet, and how many were dropped.
#[derive(Default)]
pub(crate) struct AccessBuffer {
    pending: Mutex<(Vec<NewAuditRecord>, u64)>,
}

impl Registry {
    /// Keeps the record of an access that changed nothing (a refused
    /// request, a login) for the next flush (dropped, and counted, while
    /// [`MAX_PENDING_ACCESSES`] wait).
    pub fn record_access(&self, record: NewAuditRecord) {
        let mut pending = self
            .inner
            .accesses
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pending.0.len() < MAX_PENDING_ACCESSES {
            pending.0.push(record);
        } else {
            pending.1 += 1;
        }
    }

    /// Writes the access records kept since the last flush; a batch
    /// the store refuses is put back (within the bound) for the next.
    pub async fn flush_accesses(&self) -> Result<usize, RegistryError> {
        let (records, dropped) = {
            let mut pending = self
                .inner
                .accesses
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            (
                std::mem::take(&mut pending.0),
                std::mem::take(&mut pending.1),
            )
        };
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "accesses not audited: too many between two flushes"
            );
        }
        if records.is_empty() {
            return Ok(0);
        }
        let count = records.len();
        if let Err(error) = self.meta().record_audit(&records).await {
            let mut pending = self
                .inner
                .accesses
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let room = MAX_PENDING_ACCESSES.saturating_sub(pending.0.len());
            pending.0.extend(records.into_iter().take(room));
            return Err(error.into());
        }
        Ok(count)
    }

    /// Runs [`Registry::flush_accesses`] every `interval` until `shutdown`
    /// fires, and once more then.
    pub async fn run_audit_flush(&self, interval: Duration, shutdown: CancellationToken) {
        loop {
            let stop = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = tokio::time::sleep(interval) => false,
            };
            if let Err(error) = self.flush_accesses().await {
                tracing::warn!(%error, "cannot write refused requests and logins to the audit trail");
            }
            if stop {
                return;
            }
        }
    }

    /// The audit records `query` selects, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, RegistryError> {
        Ok(self.meta().list_audit(query).await?)
    }

    /// Deletes the audit records older than `age`, in batches; returns how many.
    pub async fn purge_old_audit(&self, age: Duration) -> Result<u64, RegistryError> {
        let before = self.now() - age.as_secs() as i64;
        let mut deleted = 0;
        for _ in 0..1000 {
            let batch = self.meta().delete_audit_before(before, 1000).await?;
            deleted += batch;
            if batch < 1000 {
                break;
            }
        }
        Ok(deleted)
    }

    /// Deletes webhook deliveries older than `delivery_age` and audit records
    /// older than `audit_age` every `interval` until `shutdown` fires, on one
    /// node at a time (a job lease, as for event retention).
    pub async fn run_log_retention(
        &self,
        interval: Duration,
        delivery_age: Duration,
        audit_age: Duration,
        shutdown: CancellationToken,
    ) {
        self.every_interval_under_lease(
            LOG_RETENTION_JOB,
            "webhook log and audit retention",
            interval,
            shutdown,
            || async {
                if let Err(error) = self.purge_old_deliveries(delivery_age).await {
                    tracing::warn!(%error, "webhook delivery log retention failed");
                }
                if let Err(error) = self.purge_old_audit(audit_age).await {
                    tracing::warn!(%error, "audit trail retention failed");
                }
            },
        )
        .await
    }
}

/// The job lease name of the webhook log and audit retention.
const LOG_RETENTION_JOB: &str = "log-retention";
