//! Webhooks: URLs that receive a namespace's events (or, registry-wide,
//! every event) as signed CloudEvents. Creating, removing and inspecting
//! the webhooks of a namespace needs `manage_settings` in it; registry-wide
//! ones (scope `*`) are administrators'. The signing secret is sealed with
//! the key-encryption key when one is configured and never returned.

use axum::response::Response;
use berth_registry::webhooks::{is_webhook_event_type, WEBHOOK_EVENT_ALIASES};
use berth_registry::{DeliveryRow, NewWebhook, WebhookEnvelope, WebhookRow};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::error::ManagementError;
use super::types::{Name, NAME_PATTERN};
use super::{created, no_content, ok, Context};

/// The most event types one webhook subscribes to.
const MAX_EVENT_TYPES: usize = 32;

/// The longest webhook URL accepted.
const MAX_URL_LENGTH: usize = 2048;

/// Deliveries one listing shows.
const DELIVERY_LOG_LENGTH: usize = 50;

/// Whose events a webhook receives: a namespace's, or (`*`) every event.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum WebhookScope {
    Namespace(Name),
    Registry,
}

impl WebhookScope {
    pub fn namespace(&self) -> Option<&Name> {
        match self {
            WebhookScope::Namespace(name) => Some(name),
            WebhookScope::Registry => None,
        }
    }

    fn matches(&self, webhook: &WebhookRow) -> bool {
        webhook.namespace.as_deref() == self.namespace().map(Name::as_str)
    }
}

impl TryFrom<String> for WebhookScope {
    type Error = String;
    fn try_from(value: String) -> Result<WebhookScope, String> {
        if value == "*" {
            return Ok(WebhookScope::Registry);
        }
        Name::try_from(value).map(WebhookScope::Namespace)
    }
}

impl std::fmt::Display for WebhookScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebhookScope::Namespace(name) => f.write_str(name.as_str()),
            WebhookScope::Registry => f.write_str("*"),
        }
    }
}

/// What a webhook scope looks like: a namespace name, or `*`.
pub fn webhook_scope_pattern() -> String {
    format!(
        "^(\\*|{})$",
        NAME_PATTERN.trim_start_matches('^').trim_end_matches('$')
    )
}

impl PartialSchema for WebhookScope {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Whose events a webhook receives: a namespace, or `*` for every event of \
                 the registry (administrators only).",
            ))
            .pattern(Some(webhook_scope_pattern()))
            .examples(["team-a"])
            .into()
    }
}

impl ToSchema for WebhookScope {}

/// A webhook's URL: http or https, with a host, no credentials.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct WebhookUrl(pub String);

impl TryFrom<String> for WebhookUrl {
    type Error = String;
    fn try_from(value: String) -> Result<WebhookUrl, String> {
        if value.len() > MAX_URL_LENGTH {
            return Err(format!("a URL of at most {MAX_URL_LENGTH} bytes"));
        }
        let url = url::Url::parse(&value).map_err(|e| format!("{value:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{value:?}: only http and https URLs"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{value:?}: the URL needs a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{value:?}: no credentials in the URL; give a secret to sign deliveries"
            ));
        }
        if url.fragment().is_some() {
            return Err(format!("{value:?}: no fragment (#…) in the URL"));
        }
        Ok(WebhookUrl(url.to_string()))
    }
}

impl PartialSchema for WebhookUrl {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An http or https URL with a host and without credentials or fragment.",
            ))
            .pattern(Some("^[hH][tT][tT][pP][sS]?://[^/@#?]+([/?][^#]*)?$"))
            .max_length(Some(MAX_URL_LENGTH))
            .examples(["https://ci.example.com/hooks/berth"])
            .into()
    }
}

impl ToSchema for WebhookUrl {}

/// An event type: `push`, `delete`, or an event kind of the stream.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct EventType(pub String);

impl TryFrom<String> for EventType {
    type Error = String;
    fn try_from(value: String) -> Result<EventType, String> {
        if is_webhook_event_type(&value) {
            Ok(EventType(value))
        } else {
            let aliases: Vec<&str> = WEBHOOK_EVENT_ALIASES.iter().map(|(a, _)| *a).collect();
            Err(format!(
                "{value:?}: not an event type ({}, or an event kind such as tag.moved)",
                aliases.join(", ")
            ))
        }
    }
}

impl PartialSchema for EventType {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "`push` (a tag pointed at an image), `delete` (a tag, image or repository \
                 deleted), or any event kind of the stream (`manifest.stored`, \
                 `namespace.created`, …).",
            ))
            .pattern(Some("^[a-z_]+(\\.[a-z_]+)?$"))
            .examples(["push"])
            .into()
    }
}

impl ToSchema for EventType {}

/// A new webhook.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookRequest {
    pub scope: WebhookScope,
    pub url: WebhookUrl,
    /// What it receives: at least one event type.
    pub events: Vec<EventType>,
    /// Signs each delivery (HMAC-SHA256 of the body, header
    /// `X-Berth-Signature-256: sha256=<hex>`); stored encrypted when a
    /// key-encryption key is configured, and never returned.
    #[serde(default, deserialize_with = "optional_secret")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 256)]
    pub secret: Option<berth_auth::Secret>,
    /// What deliveries look like: `cloudevents` (the default) or
    /// `distribution`, CNCF Distribution's notification envelope for
    /// consumers written against it (pushes and deletions only).
    #[serde(default)]
    pub envelope: Envelope,
}

/// The shape of a webhook's deliveries.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// A CloudEvents 1.0 JSON document per event.
    #[default]
    Cloudevents,
    /// `{"events": [...]}` as Distribution's notifications send it.
    Distribution,
}

impl From<Envelope> for WebhookEnvelope {
    fn from(envelope: Envelope) -> WebhookEnvelope {
        match envelope {
            Envelope::Cloudevents => WebhookEnvelope::CloudEvents,
            Envelope::Distribution => WebhookEnvelope::Distribution,
        }
    }
}

impl From<WebhookEnvelope> for Envelope {
    fn from(envelope: WebhookEnvelope) -> Envelope {
        match envelope {
            WebhookEnvelope::CloudEvents => Envelope::Cloudevents,
            WebhookEnvelope::Distribution => Envelope::Distribution,
        }
    }
}

fn optional_secret<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<berth_auth::Secret>, D::Error> {
    let value: Option<String> = Option::deserialize(deserializer)?;
    match value {
        Some(text) if text.is_empty() || text.len() > 256 => {
            Err(serde::de::Error::custom("a secret of 1 to 256 bytes"))
        }
        other => Ok(other.map(berth_auth::Secret::new)),
    }
}

impl NewWebhookRequest {
    /// Checks what the types alone cannot: the number of event types.
    pub fn validate(&self) -> Result<(), ManagementError> {
        if self.events.is_empty() || self.events.len() > MAX_EVENT_TYPES {
            return Err(ManagementError::invalid_request(format!(
                "events: between 1 and {MAX_EVENT_TYPES} event types"
            )));
        }
        Ok(())
    }
}

/// A webhook (without its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: i64,
    /// A namespace, or `*`.
    pub scope: String,
    pub url: String,
    pub events: Vec<String>,
    /// Whether deliveries are signed.
    pub signed: bool,
    /// What deliveries look like.
    pub envelope: Envelope,
    pub created_by: String,
    /// Seconds since the epoch.
    pub created_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// By id: those the caller may manage.
    pub webhooks: Vec<WebhookView>,
}

/// One delivery of an event to a webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    /// The event's position in the stream (the CloudEvent's `id`).
    pub event: i64,
    pub event_kind: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: u32,
    /// When the next attempt is due (pending deliveries), seconds since the epoch.
    pub next_attempt_at: Option<i64>,
    pub last_status: Option<u16>,
    /// The start of the last answer's body.
    pub last_response: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// The latest deliveries, newest first.
    pub deliveries: Vec<DeliveryView>,
}

fn webhook_view(webhook: WebhookRow) -> WebhookView {
    WebhookView {
        id: webhook.id,
        scope: webhook.namespace.unwrap_or_else(|| "*".to_string()),
        url: webhook.url,
        events: webhook.events,
        signed: webhook.secret.is_some(),
        envelope: webhook.envelope.into(),
        created_by: webhook.created_by,
        created_at: webhook.created_at,
    }
}

fn delivery_view(delivery: DeliveryRow) -> DeliveryView {
    let pending = delivery.state == berth_registry::DeliveryState::Pending;
    DeliveryView {
        id: delivery.id,
        event: delivery.event_position,
        event_kind: delivery.event_kind,
        state: delivery.state.as_str().to_string(),
        attempts: delivery.attempts,
        next_attempt_at: pending.then_some(delivery.not_before),
        last_status: delivery.last_status,
        last_response: delivery.last_response,
        last_error: delivery.last_error,
        created_at: delivery.created_at,
        updated_at: delivery.updated_at,
    }
}

/// The associated data a webhook's sealed secret is bound to, so a sealed
/// secret copied onto another webhook's row does not open.
pub fn secret_binding(url: &str) -> String {
    format!("webhook:{url}")
}

/// List webhooks.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    operation_id = "list_webhooks",
    responses((status = 200, description = "The webhooks the caller may manage", body = WebhookList))
)]
pub async fn list(ctx: &Context<'_>) -> Result<Response, ManagementError> {
    let mut webhooks = Vec::new();
    for webhook in ctx.registry.webhooks(None).await? {
        let visible = match &webhook.namespace {
            None => ctx.caller.may_administer(),
            Some(namespace) => {
                let facts = ctx
                    .auth
                    .store
                    .namespace_facts(namespace, ctx.caller.user_name())
                    .await?;
                ctx.caller
                    .may_manage_settings(&ctx.auth.policy, facts, namespace)
            }
        };
        if visible {
            webhooks.push(webhook_view(webhook));
        }
    }
    Ok(ok(WebhookList { webhooks }))
}

/// Create a webhook.
///
/// From then on, every event of its scope of the subscribed types is
/// POSTed to the URL as a CloudEvent, at least once.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    operation_id = "create_webhook",
    request_body = NewWebhookRequest,
    responses((status = 201, description = "The webhook", body = WebhookView))
)]
pub async fn create(
    ctx: &Context<'_>,
    new: NewWebhookRequest,
) -> Result<Response, ManagementError> {
    let url = new.url.0;
    let secret = new.secret.map(|secret| match &ctx.outbound.key_encryption {
        Some(key) => key.seal(&secret_binding(&url), secret.expose()),
        None => secret.expose().to_string(),
    });
    let mut events: Vec<String> = Vec::new();
    for event in new.events {
        if !events.contains(&event.0) {
            events.push(event.0);
        }
    }
    let webhook = NewWebhook {
        namespace: new.scope.namespace().map(|name| name.to_string()),
        url,
        events,
        secret,
        created_by: ctx
            .actor
            .name
            .clone()
            .unwrap_or_else(|| ctx.actor.to_string()),
        envelope: new.envelope.into(),
    };
    let webhook = ctx.registry.create_webhook(&ctx.actor, &webhook).await?;
    Ok(created(webhook_view(webhook)))
}

/// The webhook `id` of `scope`, or a 404.
async fn find(
    ctx: &Context<'_>,
    scope: &WebhookScope,
    id: i64,
) -> Result<WebhookRow, ManagementError> {
    match ctx.registry.webhook(id).await? {
        Some(webhook) if scope.matches(&webhook) => Ok(webhook),
        _ => Err(ManagementError::not_found(format!(
            "no webhook {id} in {scope}"
        ))),
    }
}

/// Delete a webhook, with its pending deliveries.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{scope}/{id}",
    tag = "webhooks",
    operation_id = "delete_webhook",
    params(
        ("scope" = WebhookScope, Path, description = "The webhook's namespace, or `*`"),
        ("id" = i64, Path, description = "The webhook's id"),
    ),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete(
    ctx: &Context<'_>,
    scope: &WebhookScope,
    id: i64,
) -> Result<Response, ManagementError> {
    find(ctx, scope, id).await?;
    ctx.registry.delete_webhook(&ctx.actor, id).await?;
    Ok(no_content())
}

/// A webhook's latest deliveries.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{scope}/{id}/deliveries",
    tag = "webhooks",
    operation_id = "list_webhook_deliveries",
    params(
        ("scope" = WebhookScope, Path, description = "The webhook's namespace, or `*`"),
        ("id" = i64, Path, description = "The webhook's id"),
    ),
    responses((status = 200, description = "The delivery log", body = DeliveryList))
)]
pub async fn deliveries(
    ctx: &Context<'_>,
    scope: &WebhookScope,
    id: i64,
) -> Result<Response, ManagementError> {
    find(ctx, scope, id).await?;
    let deliveries = ctx
        .registry
        .webhook_deliveries(id, DELIVERY_LOG_LENGTH)
        .await?
        .into_iter()
        .map(delivery_view)
        .collect();
    Ok(ok(DeliveryList { deliveries }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_host_and_no_credentials() {
        for (url, accepted) in [
            ("https://ci.example.com/hooks/berth", true),
            ("http://10.0.0.1:8080/x?a=b", true),
            ("ftp://example.com/", false),
            ("file:///etc/passwd", false),
            ("https://user:pass@example.com/", false),
            ("https://example.com/#frag", false),
            ("not a url", false),
            ("http://", false),
        ] {
            assert_eq!(
                WebhookUrl::try_from(url.to_string()).is_ok(),
                accepted,
                "{url}"
            );
        }
    }

    #[test]
    fn patterns_agree_with_the_parsers() {
        let scope = regex::Regex::new(&webhook_scope_pattern()).unwrap();
        for candidate in ["*", "team-a", "a", "**", "Team", "", "a/b"] {
            assert_eq!(
                scope.is_match(candidate),
                WebhookScope::try_from(candidate.to_string()).is_ok(),
                "{candidate:?}"
            );
        }
        let event = regex::Regex::new("^[a-z_]+(\\.[a-z_]+)?$").unwrap();
        for candidate in ["push", "delete", "tag.moved", "pull"] {
            if EventType::try_from(candidate.to_string()).is_ok() {
                assert!(event.is_match(candidate), "{candidate:?}");
            }
        }
    }
}
