//! Webhooks in the registry: the consumer that turns events into
//! deliveries, and the bookkeeping of delivery attempts.
//!
//! - [`WebhookFanout`] is an event consumer: for every event some webhook
//!   subscribes to, it builds the payload once per envelope (a CloudEvent,
//!   or Distribution's notification envelope for webhooks that ask for it)
//!   and queues one delivery per matching webhook in the metadata store. Queueing is idempotent
//!   (one delivery per webhook and event position), so a batch handed over
//!   again, after a crash or a lost lease, queues nothing twice.
//! - The sender (the binary's delivery workers, which own the outbound HTTP
//!   client) takes due deliveries a few at a time with
//!   [`Registry::take_webhook_deliveries`] and records their attempts
//!   together with [`Registry::finish_webhook_deliveries`] (two commits a
//!   batch, not two a delivery: the metadata store's writer is the pushes'
//!   too), which decides each next attempt: exponential backoff, up to
//!   [`WebhookOptions::max_attempts`].
//!
//! **Architecture Invariant:** nothing here runs on the write path; a push
//! writes its event and returns, and a slow or dead endpoint only makes its
//! own deliveries wait.

use std::time::Duration;

use berth_meta::{
    Actor, DeliveryAttempt, DeliveryJob, DeliveryNext, DeliveryRow, Event, EventKind,
    FinishedDelivery, MetaError, NewDelivery, NewWebhook, WebhookEnvelope, WebhookRow,
};
use serde_json::json;

use crate::events::{ConsumerError, EventConsumer};
use crate::{Registry, RegistryError};

/// The event types a webhook subscribes to besides the stream's own kinds,
/// with the kinds each stands for: the names people use.
pub const WEBHOOK_EVENT_ALIASES: &[(&str, &[EventKind])] = &[
    // A push ends with a tag pointing at the manifest; pushes by digest
    // only (signatures, SBOMs) are `manifest.stored`.
    ("push", &[EventKind::TagMoved]),
    // A deletion into the trash is a deletion to those watching (the image
    // is gone until someone restores it).
    (
        "delete",
        &[
            EventKind::ManifestTrashed,
            EventKind::ManifestDeleted,
            EventKind::TagDeleted,
            EventKind::RepositoryDeleted,
        ],
    ),
    // The Vulnerability Advisor indexed an image: its findings can be read.
    ("scan", &[EventKind::ScanFinished]),
    // Pulls, counted per image and puller between two flushes of the pull
    // statistics (`count` in the detail).
    ("pull", &[EventKind::ImagePulled]),
    // A push or pull refused over a namespace's quota (at most one a
    // minute per namespace and quota from each node).
    ("quota", &[EventKind::QuotaExceeded]),
    // New or changed advisories changed an indexed image's findings.
    ("vulnerability", &[EventKind::VulnerabilitiesChanged]),
];

/// Whether `name` is an event type a webhook may subscribe to: an alias of
/// [`WEBHOOK_EVENT_ALIASES`] or an event kind (`manifest.stored`).
pub fn is_webhook_event_type(name: &str) -> bool {
    WEBHOOK_EVENT_ALIASES
        .iter()
        .any(|(alias, _)| *alias == name)
        || EventKind::parse(name).is_some()
}

/// Whether a webhook subscribed to `events` wants an event of `kind`.
pub fn subscribes_to(events: &[String], kind: EventKind) -> bool {
    events.iter().any(|name| {
        name == kind.as_str()
            || WEBHOOK_EVENT_ALIASES
                .iter()
                .any(|(alias, kinds)| alias == name && kinds.contains(&kind))
    })
}

/// Whether a webhook (of its namespace, or registry-wide) wants `event`.
pub fn webhook_matches(webhook: &WebhookRow, event: &Event) -> bool {
    let in_scope = match &webhook.namespace {
        None => true,
        Some(namespace) => event.namespace.as_deref() == Some(namespace.as_str()),
    };
    in_scope && subscribes_to(&webhook.events, event.kind)
}

/// The CloudEvents `type` of an event kind: `io.berth.` and a name that
/// says what happened to what.
pub fn cloud_event_type(kind: EventKind) -> String {
    let name = match kind {
        EventKind::TagMoved => "image.pushed",
        EventKind::ManifestDeleted => "image.deleted",
        other => other.as_str(),
    };
    format!("io.berth.{name}")
}

/// An event's time as both envelopes write it (RFC 3339, UTC).
fn rfc3339(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The event as a CloudEvents 1.0 JSON document (structured mode): `id` is
/// the event's position, unique within `source`, so a receiver drops the
/// copies at-least-once delivery may send; `subject` is the repository with
/// its tag or digest (or the namespace).
pub fn cloud_event(event: &Event, source: &str) -> serde_json::Value {
    let time = rfc3339(event.at);
    let subject = match (&event.repository, &event.tag, &event.digest) {
        (Some(repository), Some(tag), _) => Some(format!("{repository}:{tag}")),
        (Some(repository), None, Some(digest)) => Some(format!("{repository}@{digest}")),
        (Some(repository), None, None) => Some(repository.to_string()),
        (None, _, _) => event.namespace.clone(),
    };
    let mut document = json!({
        "specversion": "1.0",
        "id": event.position.to_string(),
        "source": source,
        "type": cloud_event_type(event.kind),
        "time": time,
        "datacontenttype": "application/json",
        "data": {
            "kind": event.kind.as_str(),
            "namespace": event.namespace,
            "repository": event.repository.as_ref().map(|r| r.as_str()),
            "tag": event.tag.as_ref().map(|t| t.as_str()),
            "digest": event.digest.as_ref().map(|d| d.as_str()),
            // The actor's kind and name; the client's address stays in the
            // registry (an endpoint outside it need not learn it).
            "actor": { "kind": event.actor.kind.as_str(), "name": event.actor.name },
            "detail": event.detail,
        },
    });
    if let Some(subject) = subject {
        document["subject"] = json!(subject);
    }
    document
}

/// The event in CNCF Distribution's notification envelope (`{"events":
/// [...]}`, one event), for webhooks that asked for it; `None` for the
/// kinds Distribution has no notification of (namespaces, members,
/// policies…), which such a webhook does not receive. A push names the
/// manifest's media type and size: `manifest` gives them for a tag move
/// (the event holds only the digest), a stored manifest's event carries
/// them. The event's position is its `id`, as in the CloudEvent, so a
/// receiver can drop copies.
pub fn distribution_envelope(
    event: &Event,
    source: &str,
    manifest: Option<(&str, u64)>,
) -> Option<serde_json::Value> {
    let (action, method) = match event.kind {
        EventKind::TagMoved | EventKind::ManifestStored => ("push", "PUT"),
        EventKind::ManifestDeleted | EventKind::ManifestTrashed | EventKind::TagDeleted => {
            ("delete", "DELETE")
        }
        EventKind::ImagePulled => ("pull", "GET"),
        _ => return None,
    };
    let repository = event.repository.as_ref()?;
    let timestamp = rfc3339(event.at);
    let mut target = json!({ "repository": repository.as_str() });
    if let Some(tag) = &event.tag {
        target["tag"] = json!(tag.as_str());
    }
    if let Some(digest) = &event.digest {
        target["digest"] = json!(digest.as_str());
        if source.starts_with("http") {
            target["url"] = json!(format!("{source}/v2/{repository}/manifests/{digest}"));
        }
    }
    let stored = event.detail["media_type"]
        .as_str()
        .zip(event.detail["size"].as_u64());
    if action == "push" {
        if let Some((media_type, size)) = manifest.or(stored) {
            target["mediaType"] = json!(media_type);
            target["size"] = json!(size);
            target["length"] = json!(size);
        }
    }
    let id = event.position.to_string();
    Some(json!({
        "events": [{
            "id": id,
            "timestamp": timestamp,
            "action": action,
            "target": target,
            "request": { "id": id, "method": method },
            "actor": { "name": event.actor.name.clone().unwrap_or_default() },
            "source": { "addr": source },
        }]
    }))
}

/// How deliveries are retried.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// The wait after the first failed attempt; each further failure
    /// doubles it, up to `max_retry_delay`.
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    /// Attempts before a delivery is given up as failed.
    pub max_attempts: u32,
    /// How long a worker's hold on a delivery lasts (longer than one
    /// attempt can take, timeouts included).
    pub lease: Duration,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            retry_delay: Duration::from_secs(10),
            max_retry_delay: Duration::from_secs(3600),
            max_attempts: 8,
            lease: Duration::from_secs(120),
        }
    }
}

impl WebhookOptions {
    /// The wait before the attempt after `attempts` failed ones.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.retry_delay
            .saturating_mul(1 << doublings)
            .min(self.max_retry_delay)
    }
}

/// Queues a delivery for every event a webhook wants: the webhook consumer.
pub struct WebhookFanout {
    registry: Registry,
    /// The CloudEvents `source` of every event this registry sends.
    source: String,
}

impl WebhookFanout {
    /// The consumer's name, which keys its position in the database.
    pub const NAME: &'static str = "webhooks";

    /// The media type and size of the manifest a tag move points at, for
    /// Distribution's envelope; `None` for other events and for a manifest
    /// deleted since (the notification then goes without them).
    async fn pushed_manifest(&self, event: &Event) -> Result<Option<(String, u64)>, MetaError> {
        let (EventKind::TagMoved, Some(repository), Some(digest)) =
            (event.kind, &event.repository, &event.digest)
        else {
            return Ok(None);
        };
        Ok(self
            .registry
            .meta()
            .manifest_by_digest(repository, digest)
            .await?
            .map(|record| (record.media_type, record.payload.len() as u64)))
    }

    pub fn new(registry: Registry, source: impl Into<String>) -> WebhookFanout {
        WebhookFanout {
            registry,
            source: source.into(),
        }
    }
}

#[async_trait::async_trait]
impl EventConsumer for WebhookFanout {
    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError> {
        // Read once per batch: webhooks are few, and a webhook created
        // during the batch receives events from the next batch on.
        let webhooks = self.registry.meta().list_webhooks(None).await?;
        if webhooks.is_empty() {
            return Ok(());
        }
        let mut deliveries = Vec::new();
        for event in events {
            // Each payload is built at most once per event, whatever the
            // number of webhooks that want it in that envelope.
            let mut cloud = None;
            let mut distribution: Option<Option<String>> = None;
            for webhook in webhooks.iter().filter(|w| webhook_matches(w, event)) {
                let payload = match webhook.envelope {
                    WebhookEnvelope::CloudEvents => cloud
                        .get_or_insert_with(|| cloud_event(event, &self.source).to_string())
                        .clone(),
                    WebhookEnvelope::Distribution => {
                        if distribution.is_none() {
                            let manifest = self.pushed_manifest(event).await?;
                            distribution = Some(
                                distribution_envelope(
                                    event,
                                    &self.source,
                                    manifest.as_ref().map(|(t, s)| (t.as_str(), *s)),
                                )
                                .map(|envelope| envelope.to_string()),
                            );
                        }
                        match distribution.clone().flatten() {
                            Some(payload) => payload,
                            // Nothing Distribution would have sent.
                            None => continue,
                        }
                    }
                };
                deliveries.push(NewDelivery {
                    webhook_id: webhook.id,
                    event_position: event.position,
                    event_kind: event.kind.as_str().to_string(),
                    payload,
                });
            }
        }
        self.registry
            .meta()
            .enqueue_deliveries(&deliveries, self.registry.now())
            .await?;
        Ok(())
    }
}

impl Registry {
    /// Creates a webhook: `NamespaceUnknown` when its namespace does not exist.
    pub async fn create_webhook(
        &self,
        actor: &Actor,
        webhook: &NewWebhook,
    ) -> Result<WebhookRow, RegistryError> {
        match self
            .meta()
            .create_webhook(&self.change(actor), webhook)
            .await
        {
            Err(MetaError::NotFound) => Err(RegistryError::NamespaceUnknown),
            other => Ok(other?),
        }
    }

    /// The webhook `id`, if it exists.
    pub async fn webhook(&self, id: i64) -> Result<Option<WebhookRow>, RegistryError> {
        Ok(self.meta().webhook(id).await?)
    }

    /// The webhooks of one namespace, or every one.
    pub async fn webhooks(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<WebhookRow>, RegistryError> {
        Ok(self.meta().list_webhooks(namespace).await?)
    }

    /// Deletes webhook `id` with its deliveries; the webhook, if it existed.
    pub async fn delete_webhook(
        &self,
        actor: &Actor,
        id: i64,
    ) -> Result<Option<WebhookRow>, RegistryError> {
        Ok(self.meta().delete_webhook(&self.change(actor), id).await?)
    }

    /// Webhook `id`'s latest deliveries, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, RegistryError> {
        Ok(self.meta().list_deliveries(id, limit).await?)
    }

    /// Takes up to `limit` due deliveries for this node (holder `holder`),
    /// oldest first.
    pub async fn take_webhook_deliveries(
        &self,
        holder: &str,
        options: &WebhookOptions,
        limit: usize,
    ) -> Result<Vec<DeliveryJob>, RegistryError> {
        let lease_secs = options.lease.as_secs().max(1) as i64;
        Ok(self
            .meta()
            .take_deliveries(holder, self.now(), lease_secs, limit)
            .await?)
    }

    /// Records the attempts on `attempted` deliveries in one transaction:
    /// each delivered when its flag says so, else due again after the
    /// backoff, or failed once `max_attempts` were made. Returns what
    /// follows each, in order (a delivery whose lease this node lost is
    /// left to its new holder, and its next step is not recorded).
    pub async fn finish_webhook_deliveries(
        &self,
        holder: &str,
        attempted: &[(DeliveryJob, DeliveryAttempt, bool)],
        options: &WebhookOptions,
    ) -> Result<Vec<DeliveryNext>, RegistryError> {
        let now = self.now();
        let finished: Vec<FinishedDelivery> = attempted
            .iter()
            .map(|(job, attempt, delivered)| FinishedDelivery {
                id: job.id,
                attempt: attempt.clone(),
                next: next_step(job, *delivered, options, now),
            })
            .collect();
        let recorded = self
            .meta()
            .finish_deliveries(holder, &finished, now)
            .await?;
        if recorded < finished.len() {
            tracing::warn!(
                lost = finished.len() - recorded,
                "webhook deliveries whose lease ran out before their attempts were recorded; \
                 their new holders send them again"
            );
        }
        Ok(finished.into_iter().map(|done| done.next).collect())
    }

    /// Deletes finished deliveries last updated more than `age` ago.
    pub async fn purge_old_deliveries(&self, age: Duration) -> Result<u64, RegistryError> {
        let before = self.now() - age.as_secs() as i64;
        let mut deleted = 0;
        for _ in 0..1000 {
            let batch = self.meta().delete_finished_deliveries(before, 1000).await?;
            deleted += batch;
            if batch < 1000 {
                break;
            }
        }
        Ok(deleted)
    }
}

/// What follows an attempt on `job`: done when `delivered`, else due again
/// after the backoff, or given up once `max_attempts` were made.
fn next_step(
    job: &DeliveryJob,
    delivered: bool,
    options: &WebhookOptions,
    now: berth_meta::Timestamp,
) -> DeliveryNext {
    if delivered {
        DeliveryNext::Delivered
    } else if job.attempts >= options.max_attempts {
        DeliveryNext::GiveUp
    } else {
        let wait = options.backoff(job.attempts).as_secs().max(1) as i64;
        DeliveryNext::RetryAt(now.saturating_add(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_subscribe_by_alias_or_kind() {
        let push = vec!["push".to_string()];
        let delete = vec!["delete".to_string()];
        let stored = vec!["manifest.stored".to_string()];
        let pull = vec!["pull".to_string()];
        for (events, kind, expected) in [
            (&push, EventKind::TagMoved, true),
            (&push, EventKind::ManifestStored, false),
            (&push, EventKind::TagDeleted, false),
            (&delete, EventKind::TagDeleted, true),
            (&delete, EventKind::ManifestDeleted, true),
            (&delete, EventKind::RepositoryDeleted, true),
            (&delete, EventKind::ManifestTrashed, true),
            (&delete, EventKind::TagMoved, false),
            (&stored, EventKind::ManifestStored, true),
            (&stored, EventKind::TagMoved, false),
            (&pull, EventKind::ImagePulled, true),
            (&push, EventKind::ImagePulled, false),
        ] {
            assert_eq!(subscribes_to(events, kind), expected, "{events:?} {kind}");
        }
        assert!(is_webhook_event_type("push"));
        assert!(is_webhook_event_type("namespace.created"));
        assert!(is_webhook_event_type("pull"));
        assert!(!is_webhook_event_type("pulls"));
        assert!(!is_webhook_event_type(""));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let options = WebhookOptions {
            retry_delay: Duration::from_secs(10),
            max_retry_delay: Duration::from_secs(100),
            max_attempts: 8,
            lease: Duration::from_secs(60),
        };
        let waits: Vec<u64> = (1..=6).map(|n| options.backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![10, 20, 40, 80, 100, 100]);
        assert_eq!(options.backoff(u32::MAX).as_secs(), 100);
    }

    #[test]
    fn cloud_events_carry_the_required_attributes() {
        let event = Event {
            position: 42,
            at: 1_700_000_000,
            kind: EventKind::TagMoved,
            namespace: Some("team".to_string()),
            repository: Some(berth_oci::RepoName::parse("team/app").unwrap()),
            digest: None,
            tag: Some(berth_oci::Tag::parse("v1").unwrap()),
            actor: Actor::user("alice").from_address("10.0.0.1".parse().unwrap()),
            detail: json!({"previous": null}),
        };
        let document = cloud_event(&event, "https://registry.example");
        assert_eq!(document["specversion"], "1.0");
        assert_eq!(document["id"], "42");
        assert_eq!(document["source"], "https://registry.example");
        assert_eq!(document["type"], "io.berth.image.pushed");
        assert_eq!(document["time"], "2023-11-14T22:13:20Z");
        assert_eq!(document["subject"], "team/app:v1");
        assert_eq!(document["data"]["actor"]["name"], "alice");
        assert!(!document.to_string().contains("10.0.0.1"));
    }

    /// Distribution's envelope, kind by kind: pushes name the manifest's
    /// media type and size (from the lookup for a tag move, from the
    /// event for a stored manifest), deletions their digest or tag, and
    /// kinds Distribution has no notification of give nothing.
    #[test]
    fn distribution_envelopes_match_what_distribution_sends() {
        let digest = berth_oci::Digest::parse(
            "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
        )
        .unwrap();
        let event = |kind: EventKind, tag: Option<&str>, detail: serde_json::Value| Event {
            position: 7,
            at: 1_700_000_000,
            kind,
            namespace: Some("team".to_string()),
            repository: Some(berth_oci::RepoName::parse("team/app").unwrap()),
            digest: Some(digest.clone()),
            tag: tag.map(|t| berth_oci::Tag::parse(t).unwrap()),
            actor: Actor::user("alice").from_address("10.0.0.1".parse().unwrap()),
            detail,
        };
        let oci = "application/vnd.oci.image.manifest.v1+json";
        let source = "https://registry.example";
        let pushed = distribution_envelope(
            &event(EventKind::TagMoved, Some("v1"), json!({"previous": null})),
            source,
            Some((oci, 1234)),
        )
        .unwrap();
        assert_eq!(
            pushed["events"][0]["target"],
            json!({
                "repository": "team/app",
                "tag": "v1",
                "digest": digest.as_str(),
                "url": format!("{source}/v2/team/app/manifests/{digest}"),
                "mediaType": oci,
                "size": 1234,
                "length": 1234,
            })
        );
        let first = &pushed["events"][0];
        assert_eq!(
            (&first["id"], &first["action"], &first["timestamp"]),
            (&json!("7"), &json!("push"), &json!("2023-11-14T22:13:20Z"))
        );
        assert_eq!(first["actor"]["name"], "alice");
        assert!(!pushed.to_string().contains("10.0.0.1"));

        let stored = distribution_envelope(
            &event(
                EventKind::ManifestStored,
                None,
                json!({"media_type": oci, "size": 99}),
            ),
            "/berth",
            None,
        )
        .unwrap();
        let target = &stored["events"][0]["target"];
        assert_eq!(
            (&target["size"], &target["mediaType"]),
            (&json!(99), &json!(oci))
        );
        assert!(target.get("url").is_none(), "no URL without an origin");

        for kind in [
            EventKind::ManifestDeleted,
            EventKind::ManifestTrashed,
            EventKind::TagDeleted,
        ] {
            let deleted = distribution_envelope(&event(kind, None, json!({})), source, None)
                .unwrap_or_else(|| panic!("{kind:?} is a deletion"));
            assert_eq!(deleted["events"][0]["action"], "delete", "{kind:?}");
            assert!(deleted["events"][0]["target"].get("size").is_none());
        }
        for kind in [
            EventKind::NamespaceCreated,
            EventKind::MemberSet,
            EventKind::BlobLinked,
        ] {
            assert_eq!(
                distribution_envelope(&event(kind, None, json!({})), source, None),
                None,
                "{kind:?}"
            );
        }
    }
}
