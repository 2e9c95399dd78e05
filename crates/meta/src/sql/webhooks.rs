//! [`WebhookStore`] in SQL.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::db::{database, query, write_error, Row};
use super::events::NewEvent;
use super::jobs::LeasedQueue;
use super::{limit_to_i64, SqlMetaStore};
use crate::webhooks::{
    DeliveryJob, DeliveryNext, DeliveryRow, DeliveryState, FinishedDelivery, NewDelivery,
    NewWebhook, WebhookEnvelope, WebhookRow, WebhookStore,
};
use crate::{Change, EventKind, MetaError, Timestamp};

const WEBHOOK_COLUMNS: &str =
    "id, namespace, url, events, secret, created_by, created_at, envelope";

fn envelope_from(text: &str) -> Result<WebhookEnvelope, MetaError> {
    WebhookEnvelope::parse(text)
        .ok_or_else(|| MetaError::Corrupt(format!("a webhook's envelope {text:?}")))
}

/// The pending deliveries: the earliest due first.
const DELIVERY_QUEUE: LeasedQueue = LeasedQueue {
    table: "webhook_deliveries",
    key: "id",
    ready: "state = 'pending' AND not_before <= $3",
    order: "not_before, id",
    returning: "id, webhook_id, payload, attempts",
    what: "taking a webhook delivery",
};

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_position, event_kind, state, attempts, \
     not_before, last_status, last_response, last_error, created_at, updated_at";

fn webhook_from_row(row: &Row) -> Result<WebhookRow, MetaError> {
    let events: String = row.get("events")?;
    Ok(WebhookRow {
        id: row.get("id")?,
        namespace: row.get("namespace")?,
        url: row.get("url")?,
        events: serde_json::from_str(&events)
            .map_err(|e| MetaError::Corrupt(format!("a webhook's events {events:?}: {e}")))?,
        secret: row.get("secret")?,
        created_by: row.get("created_by")?,
        created_at: row.get("created_at")?,
        envelope: envelope_from(&row.get::<String>("envelope")?)?,
    })
}

fn delivery_from_row(row: &Row) -> Result<DeliveryRow, MetaError> {
    let state: String = row.get("state")?;
    let attempts: i64 = row.get("attempts")?;
    let status: Option<i64> = row.get("last_status")?;
    Ok(DeliveryRow {
        id: row.get("id")?,
        webhook_id: row.get("webhook_id")?,
        event_position: row.get("event_position")?,
        event_kind: row.get("event_kind")?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| MetaError::Corrupt(format!("a delivery's state {state:?}")))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        not_before: row.get("not_before")?,
        last_status: status.and_then(|status| u16::try_from(status).ok()),
        last_response: row.get("last_response")?,
        last_error: row.get("last_error")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// The event detail of a webhook's creation or removal: no URL, which may
/// carry a token in its query.
fn webhook_detail(webhook: &WebhookRow) -> serde_json::Value {
    serde_json::json!({ "id": webhook.id, "events": webhook.events })
}

fn webhook_event(kind: EventKind, webhook: &WebhookRow) -> NewEvent {
    match &webhook.namespace {
        Some(namespace) => NewEvent::namespace(kind, namespace, webhook_detail(webhook)),
        None => NewEvent::new(kind, webhook_detail(webhook)),
    }
}

#[async_trait::async_trait]
impl<B: 'static> WebhookStore for SqlMetaStore<B> {
    async fn create_webhook(
        &self,
        change: &Change,
        webhook: &NewWebhook,
    ) -> Result<WebhookRow, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        if let Some(namespace) = &webhook.namespace {
            // Locked against a concurrent deletion of the namespace, which
            // would otherwise leave a webhook of a namespace that is gone.
            let sql = format!(
                "SELECT name FROM namespaces WHERE name = $1{}",
                tx.dialect().for_share()
            );
            let found = query(&sql)
                .bind(namespace)
                .fetch_optional(&mut tx)
                .await
                .map_err(database("looking up a webhook's namespace"))?;
            if found.is_none() {
                return Err(MetaError::NotFound);
            }
        }
        let events = serde_json::to_string(&webhook.events)
            .map_err(|e| MetaError::Database(format!("encoding a webhook's events: {e}")))?;
        let sql = format!(
            "INSERT INTO webhooks (namespace, url, events, secret, created_by, created_at, \
             envelope) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {WEBHOOK_COLUMNS}"
        );
        let created = query(&sql)
            .bind(&webhook.namespace)
            .bind(&webhook.url)
            .bind(events)
            .bind(&webhook.secret)
            .bind(&webhook.created_by)
            .bind(change.at)
            .bind(webhook.envelope.as_str())
            .fetch_one(&mut tx)
            .await
            .map_err(write_error("creating a webhook"))?;
        let created = webhook_from_row(&created)?;
        tx.record(webhook_event(EventKind::WebhookCreated, &created))?;
        tx.commit()
            .await
            .map_err(database("committing a webhook"))?;
        Ok(created)
    }

    async fn webhook(&self, id: i64) -> Result<Option<WebhookRow>, MetaError> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
        query(&sql)
            .bind(id)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("reading a webhook"))?
            .as_ref()
            .map(webhook_from_row)
            .transpose()
    }

    async fn list_webhooks(&self, namespace: Option<&str>) -> Result<Vec<WebhookRow>, MetaError> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks \
             WHERE $1 IS NULL OR namespace = $1 ORDER BY id"
        );
        query(&sql)
            .bind(namespace)
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing webhooks"))?
            .iter()
            .map(webhook_from_row)
            .collect()
    }

    async fn delete_webhook(
        &self,
        change: &Change,
        id: i64,
    ) -> Result<Option<WebhookRow>, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        // Its deliveries go with it (`ON DELETE CASCADE`), sent or not.
        let sql = format!("DELETE FROM webhooks WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}");
        let Some(deleted) = query(&sql)
            .bind(id)
            .fetch_optional(&mut tx)
            .await
            .map_err(database("deleting a webhook"))?
        else {
            return Ok(None);
        };
        let deleted = webhook_from_row(&deleted)?;
        tx.record(webhook_event(EventKind::WebhookDeleted, &deleted))?;
        tx.commit()
            .await
            .map_err(database("committing a webhook's removal"))?;
        Ok(Some(deleted))
    }

    async fn enqueue_deliveries(
        &self,
        deliveries: &[NewDelivery],
        now: Timestamp,
    ) -> Result<u64, MetaError> {
        if deliveries.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db.begin_write().await?;
        let mut queued = 0;
        for delivery in deliveries {
            // `INSERT … SELECT` from the webhook drops a delivery whose
            // webhook was deleted meanwhile; the unique key ignores one
            // queued before.
            queued += query(
                "INSERT INTO webhook_deliveries (webhook_id, event_position, event_kind, payload, \
                     state, attempts, not_before, created_at, updated_at) \
                 SELECT id, $2, $3, $4, 'pending', 0, $5, $5, $5 FROM webhooks WHERE id = $1 \
                 ON CONFLICT (webhook_id, event_position) DO NOTHING",
            )
            .bind(delivery.webhook_id)
            .bind(delivery.event_position)
            .bind(delivery.event_kind.as_str())
            .bind(delivery.payload.as_str())
            .bind(now)
            .execute(&mut tx)
            .await
            .map_err(database("queueing a webhook delivery"))?;
        }
        tx.commit()
            .await
            .map_err(database("committing webhook deliveries"))?;
        Ok(queued)
    }

    async fn take_deliveries(
        &self,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryJob>, MetaError> {
        if !DELIVERY_QUEUE.any_free(&self.db, now).await? {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin_write().await?;
        let rows = DELIVERY_QUEUE
            .take_many(&mut tx, holder, now, lease_secs, limit)
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // A batch's deliveries mostly share a few webhooks: each is read once.
        let mut webhooks: HashMap<i64, (String, Option<String>, WebhookEnvelope)> = HashMap::new();
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            let webhook_id: i64 = row.get("webhook_id")?;
            if let Entry::Vacant(slot) = webhooks.entry(webhook_id) {
                let webhook = query("SELECT url, secret, envelope FROM webhooks WHERE id = $1")
                    .bind(webhook_id)
                    .fetch_one(&mut tx)
                    .await
                    .map_err(database("reading a delivery's webhook"))?;
                slot.insert((
                    webhook.get("url")?,
                    webhook.get("secret")?,
                    envelope_from(&webhook.get::<String>("envelope")?)?,
                ));
            }
            let (url, secret, envelope) = &webhooks[&webhook_id];
            let attempts: i64 = row.get("attempts")?;
            jobs.push(DeliveryJob {
                id: row.get("id")?,
                webhook_id,
                url: url.clone(),
                secret: secret.clone(),
                envelope: *envelope,
                payload: row.get("payload")?,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            });
        }
        tx.commit()
            .await
            .map_err(database("committing taken webhook deliveries"))?;
        // Oldest first, as they were queued (ids grow with time).
        jobs.sort_by_key(|job| job.id);
        Ok(jobs)
    }

    async fn finish_deliveries(
        &self,
        holder: &str,
        finished: &[FinishedDelivery],
        now: Timestamp,
    ) -> Result<usize, MetaError> {
        if finished.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db.begin_write().await?;
        let mut recorded = 0;
        for done in finished {
            let (state, not_before) = match done.next {
                DeliveryNext::Delivered => (DeliveryState::Delivered, None),
                DeliveryNext::RetryAt(at) => (DeliveryState::Pending, Some(at)),
                DeliveryNext::GiveUp => (DeliveryState::Failed, None),
            };
            let updated = query(
                "UPDATE webhook_deliveries SET state = $1, not_before = COALESCE($2, not_before), \
                     holder = NULL, lease_expires = NULL, last_status = $3, last_response = $4, \
                     last_error = $5, updated_at = $6 \
                 WHERE id = $7 AND holder = $8 AND state = 'pending'",
            )
            .bind(state.as_str())
            .bind(not_before)
            .bind(done.attempt.status.map(i64::from))
            .bind(done.attempt.response.as_deref())
            .bind(done.attempt.error.as_deref())
            .bind(now)
            .bind(done.id)
            .bind(holder)
            .execute(&mut tx)
            .await
            .map_err(database("recording a webhook delivery attempt"))?;
            recorded += usize::from(updated > 0);
        }
        tx.commit()
            .await
            .map_err(database("committing webhook delivery attempts"))?;
        Ok(recorded)
    }

    async fn list_deliveries(
        &self,
        webhook_id: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, MetaError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
             ORDER BY id DESC LIMIT $2"
        );
        query(&sql)
            .bind(webhook_id)
            .bind(limit_to_i64(limit))
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing webhook deliveries"))?
            .iter()
            .map(delivery_from_row)
            .collect()
    }

    async fn delete_finished_deliveries(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<u64, MetaError> {
        query(
            "DELETE FROM webhook_deliveries WHERE id IN ( \
                 SELECT id FROM webhook_deliveries \
                 WHERE state <> 'pending' AND updated_at < $1 ORDER BY id LIMIT $2)",
        )
        .bind(before)
        .bind(limit_to_i64(limit))
        .execute(self.db.writer())
        .await
        .map_err(database("deleting old webhook deliveries"))
    }
}
