//! Replication rules: copying images between Berth and another registry
//! (see `berth_registry::replication`). Every operation is an
//! administrator's: a rule reads or writes any repository its pattern
//! matches and calls out to a URL. Credentials are sealed with the
//! key-encryption key when one is configured and never returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_oci::{RepoPattern, TagPattern};
use berth_registry::{Direction, NewReplicationRule, ReplicationRule, ReplicationRun, RunTrigger};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ErrorBody, ErrorCode, ManagementError};
use super::types::Name;
use super::{created, no_content, ok, Context};

/// The longest remote URL accepted.
const MAX_URL_LENGTH: usize = 2048;
/// The longest credentials accepted.
const MAX_CREDENTIALS: usize = 4096;
/// The shortest and longest schedule, in seconds.
const MIN_INTERVAL: u64 = 10;
const MAX_INTERVAL: u64 = 30 * 24 * 3600;
/// Runs a rule's page shows.
const RUNS_SHOWN: usize = 20;
/// Pending deletes a rule's details show at most (the oldest).
const PENDING_SHOWN: usize = 20;

/// The associated data a rule's sealed credentials are bound to, so that
/// sealed credentials copied onto another rule's row do not open.
pub fn credentials_binding(rule_name: &str) -> String {
    format!("replication-rule:{rule_name}")
}

/// Which way a rule copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DirectionParam {
    /// Berth → the remote.
    Push,
    /// The remote → Berth.
    Pull,
}

/// A new replication rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReplicationRequest {
    #[schema(value_type = String, example = "to-dr-site")]
    pub name: Name,
    pub direction: DirectionParam,
    /// The other registry's base URL (http or https, no credentials).
    #[schema(example = "https://registry.dr.example.com", max_length = 2048)]
    pub url: String,
    /// `user:password`, or a token; stored encrypted when a key-encryption
    /// key is configured, and never returned.
    #[serde(default, deserialize_with = "optional_credentials")]
    #[schema(value_type = Option<String>, max_length = 4096)]
    pub credentials: Option<berth_auth::Secret>,
    /// Repositories: a glob, `*` within a path component, `**` across.
    #[schema(example = "team/**")]
    pub repositories: String,
    /// Tags: a glob (`*`, `?`); every tag when absent.
    #[serde(default)]
    #[schema(example = "v*")]
    pub tags: Option<String>,
    /// Replicate each push (and tag deletion) at once (push rules only).
    #[serde(default)]
    pub on_push: bool,
    /// Run every this many seconds (10 to 30 days' worth).
    #[serde(default)]
    pub interval_secs: Option<u64>,
}

fn optional_credentials<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<berth_auth::Secret>, D::Error> {
    let value: Option<String> = Option::deserialize(deserializer)?;
    match value {
        Some(text) if text.is_empty() || text.len() > MAX_CREDENTIALS => Err(
            serde::de::Error::custom(format!("credentials of 1 to {MAX_CREDENTIALS} bytes")),
        ),
        other => Ok(other.map(berth_auth::Secret::new)),
    }
}

impl NewReplicationRequest {
    /// Checks what the types alone cannot: the URL, the patterns, the
    /// schedule. Private addresses are checked again when the rule runs
    /// (host names resolve then).
    pub fn validate(&self) -> Result<(), ManagementError> {
        let invalid = ManagementError::invalid_request;
        if self.url.len() > MAX_URL_LENGTH {
            return Err(invalid(format!("url: at most {MAX_URL_LENGTH} bytes")));
        }
        let url = url::Url::parse(&self.url).map_err(|e| invalid(format!("url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("url: an http or https URL with a host".to_string()));
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(invalid(
                "url: the registry's base URL, without credentials (give them separately), \
                 query or fragment"
                    .to_string(),
            ));
        }
        RepoPattern::parse(&self.repositories)
            .map_err(|e| invalid(format!("repositories: {e}")))?;
        if let Some(tags) = &self.tags {
            TagPattern::parse(tags).map_err(|e| invalid(format!("tags: {e}")))?;
        }
        if self.on_push && self.direction == DirectionParam::Pull {
            return Err(invalid(
                "on_push: only push rules replicate on push (give pull rules an interval)"
                    .to_string(),
            ));
        }
        if let Some(interval) = self.interval_secs {
            if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
                return Err(invalid(format!(
                    "interval_secs: between {MIN_INTERVAL} and {MAX_INTERVAL}"
                )));
            }
        }
        Ok(())
    }
}

/// A rule (without its credentials).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicationView {
    pub name: String,
    /// `push` or `pull`.
    pub direction: String,
    pub url: String,
    /// Whether credentials are stored.
    pub authenticated: bool,
    pub repositories: String,
    pub tags: Option<String>,
    pub on_push: bool,
    pub interval_secs: Option<i64>,
    pub enabled: bool,
    pub created_by: String,
    /// Seconds since the epoch.
    pub created_at: i64,
}

/// One run of a rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub id: i64,
    /// `manual`, `push` or `schedule`.
    pub trigger: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub images_copied: u64,
    pub images_skipped: u64,
    pub blobs_copied: u64,
    pub bytes: u64,
    /// Why it failed, or the last error it went past.
    pub error: Option<String>,
}

/// A tag deleted here whose deletion the rule's remote has not taken yet;
/// every run of the rule tries it again.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingDeleteView {
    pub repository: String,
    pub tag: String,
    /// When the first attempt failed (Unix seconds).
    pub since: i64,
    pub attempts: u64,
    /// The remote's answer to the last attempt.
    pub error: String,
}

/// A rule with its last runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicationDetails {
    #[serde(flatten)]
    pub rule: ReplicationView,
    /// Newest first.
    pub runs: Vec<RunView>,
    /// How many deletions the remote has not taken yet (push rules).
    pub pending_deletes: u64,
    /// The oldest of them, at most 20.
    pub oldest_pending_deletes: Vec<PendingDeleteView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicationList {
    /// By name, each with its last run.
    pub replications: Vec<ReplicationSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicationSummary {
    #[serde(flatten)]
    pub rule: ReplicationView,
    pub last_run: Option<RunView>,
}

fn rule_view(rule: ReplicationRule) -> ReplicationView {
    ReplicationView {
        name: rule.name,
        direction: rule.direction.as_str().to_string(),
        url: rule.remote_url,
        authenticated: rule.credentials.is_some(),
        repositories: rule.repositories,
        tags: rule.tags,
        on_push: rule.on_push,
        interval_secs: rule.interval_secs,
        enabled: rule.enabled,
        created_by: rule.created_by,
        created_at: rule.created_at,
    }
}

fn run_view(run: ReplicationRun) -> RunView {
    RunView {
        id: run.id,
        trigger: run.trigger.as_str().to_string(),
        status: run.status.as_str().to_string(),
        started_at: run.started_at,
        finished_at: run.finished_at,
        images_copied: run.counts.images_copied,
        images_skipped: run.counts.images_skipped,
        blobs_copied: run.counts.blobs_copied,
        bytes: run.counts.bytes,
        error: run.last_error,
    }
}

/// List replication rules.
#[utoipa::path(
    get,
    path = "/api/v1/replications",
    tag = "replications",
    operation_id = "list_replications",
    responses((status = 200, description = "Every rule with its last run", body = ReplicationList))
)]
pub async fn list(ctx: &Context<'_>) -> Result<Response, ManagementError> {
    Ok(ok(ReplicationList {
        replications: summaries(ctx.registry).await?,
    }))
}

/// Every rule with its last run, as the API lists them.
pub async fn summaries(
    registry: &berth_registry::Registry,
) -> Result<Vec<ReplicationSummary>, ManagementError> {
    let mut replications = Vec::new();
    for rule in registry.replication_rules().await? {
        let last_run = registry
            .replication_runs(rule.id, 1)
            .await?
            .into_iter()
            .next()
            .map(run_view);
        replications.push(ReplicationSummary {
            rule: rule_view(rule),
            last_run,
        });
    }
    Ok(replications)
}

/// Create a replication rule.
#[utoipa::path(
    post,
    path = "/api/v1/replications",
    tag = "replications",
    operation_id = "create_replication",
    request_body = NewReplicationRequest,
    responses(
        (status = 201, description = "The rule", body = ReplicationView),
        (status = 409, description = "A rule has this name already", body = ErrorBody),
    )
)]
pub async fn create(
    ctx: &Context<'_>,
    new: NewReplicationRequest,
) -> Result<Response, ManagementError> {
    Ok(created(add(ctx, new).await?))
}

/// Creates a rule (its credentials sealed when a key-encryption key is
/// configured); the rule as the API shows it.
pub async fn add(
    ctx: &Context<'_>,
    new: NewReplicationRequest,
) -> Result<ReplicationView, ManagementError> {
    let name = new.name.as_str().to_string();
    let credentials = new
        .credentials
        .map(|secret| match &ctx.outbound.key_encryption {
            Some(key) => key.seal(&credentials_binding(&name), secret.expose()),
            None => secret.expose().to_string(),
        });
    let rule = NewReplicationRule {
        name,
        direction: match new.direction {
            DirectionParam::Push => Direction::Push,
            DirectionParam::Pull => Direction::Pull,
        },
        remote_url: new.url.trim_end_matches('/').to_string(),
        credentials,
        repositories: new.repositories,
        tags: new.tags,
        on_push: new.on_push,
        interval_secs: new.interval_secs.map(|secs| secs as i64),
        enabled: true,
        created_by: ctx
            .actor
            .name
            .clone()
            .unwrap_or_else(|| ctx.actor.to_string()),
    };
    let rule = ctx
        .registry
        .create_replication_rule(&ctx.actor, &rule)
        .await?;
    Ok(rule_view(rule))
}

/// A replication rule with its last runs.
#[utoipa::path(
    get,
    path = "/api/v1/replications/{name}",
    tag = "replications",
    operation_id = "get_replication",
    params(("name" = String, Path, description = "The rule's name")),
    responses((status = 200, description = "The rule and its last runs", body = ReplicationDetails))
)]
pub async fn get(ctx: &Context<'_>, name: &Name) -> Result<Response, ManagementError> {
    Ok(ok(details(ctx.registry, name).await?))
}

/// A rule and its last runs, newest first, as the API shows them.
pub async fn details(
    registry: &berth_registry::Registry,
    name: &Name,
) -> Result<ReplicationDetails, ManagementError> {
    let rule = registry.replication_rule(name.as_str()).await?;
    let runs = registry
        .replication_runs(rule.id, RUNS_SHOWN)
        .await?
        .into_iter()
        .map(run_view)
        .collect();
    let (pending_deletes, oldest) = registry
        .replication_pending_deletes(rule.id, PENDING_SHOWN)
        .await?;
    Ok(ReplicationDetails {
        rule: rule_view(rule),
        runs,
        pending_deletes,
        oldest_pending_deletes: oldest
            .into_iter()
            .map(|pending| PendingDeleteView {
                repository: pending.repository.to_string(),
                tag: pending.tag.to_string(),
                since: pending.since,
                attempts: pending.attempts,
                error: pending.last_error,
            })
            .collect(),
    })
}

/// Run a replication rule now.
///
/// The run goes on in the background; its progress and outcome are in the
/// rule's runs. 409 while the rule is running.
#[utoipa::path(
    post,
    path = "/api/v1/replications/{name}/run",
    tag = "replications",
    operation_id = "run_replication",
    params(("name" = String, Path, description = "The rule's name")),
    responses(
        (status = 202, description = "The run, started", body = RunView),
        (status = 409, description = "The rule is running", body = ErrorBody),
    )
)]
pub async fn run(ctx: &Context<'_>, name: &Name) -> Result<Response, ManagementError> {
    Ok((StatusCode::ACCEPTED, Json(start(ctx, name).await?)).into_response())
}

/// Starts a run of rule `name` in the background; the run as the API shows
/// it.
pub async fn start(ctx: &Context<'_>, name: &Name) -> Result<RunView, ManagementError> {
    ctx.registry.replication_rule(name.as_str()).await?;
    let Some(replicator) = ctx.replicator else {
        return Err(ManagementError::new(
            ErrorCode::Unavailable,
            "replication is not running on this server",
        ));
    };
    let run = replicator
        .start_rule(name.as_str(), RunTrigger::Manual)
        .await?;
    Ok(run_view(run))
}

/// Delete a replication rule and its history.
#[utoipa::path(
    delete,
    path = "/api/v1/replications/{name}",
    tag = "replications",
    operation_id = "delete_replication",
    params(("name" = String, Path, description = "The rule's name")),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete(ctx: &Context<'_>, name: &Name) -> Result<Response, ManagementError> {
    remove(ctx, name).await?;
    Ok(no_content())
}

/// Deletes rule `name` and its history.
pub async fn remove(ctx: &Context<'_>, name: &Name) -> Result<(), ManagementError> {
    ctx.registry
        .delete_replication_rule(&ctx.actor, name.as_str())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str, repositories: &str, tags: Option<&str>) -> NewReplicationRequest {
        NewReplicationRequest {
            name: Name::try_from("rule".to_string()).unwrap(),
            direction: DirectionParam::Push,
            url: url.into(),
            credentials: None,
            repositories: repositories.into(),
            tags: tags.map(Into::into),
            on_push: false,
            interval_secs: None,
        }
    }

    #[test]
    fn rules_need_a_base_url_and_valid_patterns() {
        for (url, repositories, tags, accepted) in [
            ("https://r.example", "team/**", Some("v*"), true),
            ("http://10.0.0.1:5000", "**", None, true),
            ("ftp://r.example", "team/**", None, false),
            ("https://u:p@r.example", "team/**", None, false),
            ("https://r.example/?x=1", "team/**", None, false),
            ("https://r.example", "Team/**", None, false),
            ("https://r.example", "team/a**", None, false),
            ("https://r.example", "team/**", Some("v/1"), false),
        ] {
            assert_eq!(
                request(url, repositories, tags).validate().is_ok(),
                accepted,
                "{url} {repositories} {tags:?}"
            );
        }
        let mut pull_on_push = request("https://r.example", "a", None);
        pull_on_push.direction = DirectionParam::Pull;
        pull_on_push.on_push = true;
        assert!(pull_on_push.validate().is_err());
        let mut too_often = request("https://r.example", "a", None);
        too_often.interval_secs = Some(1);
        assert!(too_often.validate().is_err());
    }
}
