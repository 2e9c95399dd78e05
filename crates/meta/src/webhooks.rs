//! [`WebhookStore`]: webhook endpoints and the queue of deliveries to them.
//!
//! A webhook is a URL that receives the event stream's changes of one
//! namespace (or of the whole registry) as CloudEvents. The webhook
//! consumer (`berth_registry::webhooks`) turns each matching event into a
//! delivery row here; delivery workers on any node take due deliveries
//! with a lease, send them and record the outcome. The queue lives in the
//! database, so a node restart or a dead endpoint loses nothing.

use crate::{Change, MetaError, Timestamp};

/// A webhook to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewWebhook {
    /// The namespace whose events it receives; `None` for the whole registry.
    pub namespace: Option<String>,
    /// Where deliveries are POSTed (validated by the caller: http or https).
    pub url: String,
    /// Subscribed event types, as the caller validated them.
    pub events: Vec<String>,
    /// The signing secret as stored (sealed by the caller when a
    /// key-encryption key is configured), `None` for unsigned deliveries.
    pub secret: Option<String>,
    /// Who created it (how the actor is shown).
    pub created_by: String,
    /// What its deliveries look like.
    pub envelope: WebhookEnvelope,
}

/// The shape of a webhook's deliveries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WebhookEnvelope {
    /// A CloudEvents 1.0 JSON document per event (structured mode).
    #[default]
    CloudEvents,
    /// CNCF Distribution's notification envelope (`{"events": [...]}`,
    /// media type `application/vnd.docker.distribution.events.v1+json`),
    /// for consumers written against Distribution; only the kinds it has
    /// (pushes and deletions of manifests and tags) are sent.
    Distribution,
}

impl WebhookEnvelope {
    pub const ALL: [WebhookEnvelope; 2] =
        [WebhookEnvelope::CloudEvents, WebhookEnvelope::Distribution];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEnvelope::CloudEvents => "cloudevents",
            WebhookEnvelope::Distribution => "distribution",
        }
    }

    pub fn parse(text: &str) -> Option<WebhookEnvelope> {
        WebhookEnvelope::ALL
            .into_iter()
            .find(|envelope| envelope.as_str() == text)
    }

    /// The `Content-Type` its deliveries are sent with.
    pub fn content_type(self) -> &'static str {
        match self {
            WebhookEnvelope::CloudEvents => "application/cloudevents+json; charset=utf-8",
            WebhookEnvelope::Distribution => "application/vnd.docker.distribution.events.v1+json",
        }
    }
}

/// A stored webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: i64,
    pub namespace: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    /// The secret as stored (see [`NewWebhook::secret`]); never shown.
    pub secret: Option<String>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub envelope: WebhookEnvelope,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its first or next attempt.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt failed; no more are made.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// A delivery to queue: one event for one webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    pub webhook_id: i64,
    pub event_position: i64,
    /// The event's kind (`tag.moved`), for the delivery log.
    pub event_kind: String,
    /// The request body, sent and signed as it is on every attempt.
    pub payload: String,
}

/// A delivery as the log shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: i64,
    pub webhook_id: i64,
    pub event_position: i64,
    pub event_kind: String,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending deliveries).
    pub not_before: Timestamp,
    /// The HTTP status of the last answer, if the endpoint answered.
    pub last_status: Option<u16>,
    /// The start of the last answer's body (bounded by the worker).
    pub last_response: Option<String>,
    /// Why the last attempt failed without an answer, or with a non-2xx one.
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A delivery a worker holds, with what it needs to send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryJob {
    pub id: i64,
    pub webhook_id: i64,
    pub url: String,
    /// The webhook's secret as stored.
    pub secret: Option<String>,
    /// The webhook's envelope, which says how the payload is sent.
    pub envelope: WebhookEnvelope,
    pub payload: String,
    /// Attempts including this one.
    pub attempts: u32,
}

/// What one attempt found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub status: Option<u16>,
    pub response: Option<String>,
    pub error: Option<String>,
}

/// What happens to a delivery after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryNext {
    /// It succeeded: the delivery is done.
    Delivered,
    /// It failed: try again at this time.
    RetryAt(Timestamp),
    /// It failed for the last time.
    GiveUp,
}

/// An attempt on a delivery, to record ([`WebhookStore::finish_deliveries`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedDelivery {
    pub id: i64,
    pub attempt: DeliveryAttempt,
    pub next: DeliveryNext,
}

/// Webhooks and their delivery queue.
///
/// Webhooks are decisions of people: creating and removing one takes a
/// [`Change`] and writes its event (`webhook.created`, `webhook.deleted`;
/// `detail`: `id`, `events`; the URL is left out, as it may carry a token).
/// Deliveries are derived data, written without events, like scan jobs.
#[async_trait::async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Creates a webhook and returns it with its new id (ids are never
    /// reused). Fails with `NotFound` when its namespace does not exist.
    async fn create_webhook(
        &self,
        change: &Change,
        webhook: &NewWebhook,
    ) -> Result<WebhookRow, MetaError>;

    /// The webhook `id`, if it exists.
    async fn webhook(&self, id: i64) -> Result<Option<WebhookRow>, MetaError>;

    /// Webhooks by id: those of `namespace`, or every one (registry-wide
    /// ones included) when `namespace` is `None`.
    async fn list_webhooks(&self, namespace: Option<&str>) -> Result<Vec<WebhookRow>, MetaError>;

    /// Deletes webhook `id` and its deliveries (pending ones are never
    /// sent); returns it, or `None` when there was none.
    async fn delete_webhook(
        &self,
        change: &Change,
        id: i64,
    ) -> Result<Option<WebhookRow>, MetaError>;

    /// Queues `deliveries`, due at `now`, in one transaction. A delivery of
    /// a (webhook, event) pair queued before is left as it is, and one of
    /// a webhook deleted meanwhile is dropped, so queueing the same batch
    /// again changes nothing. Returns how many were queued.
    async fn enqueue_deliveries(
        &self,
        deliveries: &[NewDelivery],
        now: Timestamp,
    ) -> Result<u64, MetaError>;

    /// Takes up to `limit` of the oldest pending deliveries that are due
    /// (`not_before <= now`) and free (never taken, or their holder's lease
    /// expired: a lease runs until, not including, its expiry second) for
    /// `lease_secs` under `holder`, counting an attempt on each, in one
    /// transaction; oldest first. Empty when none is. Two callers never
    /// hold the same delivery while its lease runs.
    async fn take_deliveries(
        &self,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryJob>, MetaError>;

    /// Records the attempts `holder` made (each delivery's id, the attempt
    /// and what follows), releasing those deliveries, in one transaction.
    /// Returns how many were recorded: a delivery `holder` does not hold
    /// (an expired lease nobody took still counts as held) is left as it is
    /// and not counted.
    async fn finish_deliveries(
        &self,
        holder: &str,
        finished: &[FinishedDelivery],
        now: Timestamp,
    ) -> Result<usize, MetaError>;

    /// Webhook `webhook_id`'s deliveries, newest first, at most `limit`.
    async fn list_deliveries(
        &self,
        webhook_id: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, MetaError>;

    /// Deletes at most `limit` finished (delivered or failed) deliveries
    /// last updated before `before`; returns how many.
    async fn delete_finished_deliveries(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<u64, MetaError>;
}
