//! Retention policies: per namespace, the newest N tagged images of each
//! repository stay, untagged images stay or go, nothing younger than a
//! minimum age goes, and tags matching a regular expression always stay;
//! what a run selects goes to the trash. Setting, removing and running a
//! policy needs `manage_settings` in its namespace; the listing shows the
//! policies of the namespaces the caller may see.

use axum::response::Response;
use berth_oci::TagRegex;
use berth_registry::{RetentionPolicy, RetentionReport, RetentionVerdict, UntaggedImages};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::error::ManagementError;
use super::types::Name;
use super::{no_content, ok, Context};

/// What becomes of images no tag points at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Untagged {
    /// They stay.
    #[default]
    Keep,
    /// They go, once older than the minimum age.
    Delete,
}

impl From<Untagged> for UntaggedImages {
    fn from(untagged: Untagged) -> UntaggedImages {
        match untagged {
            Untagged::Keep => UntaggedImages::Keep,
            Untagged::Delete => UntaggedImages::Delete,
        }
    }
}

impl From<UntaggedImages> for Untagged {
    fn from(untagged: UntaggedImages) -> Untagged {
        match untagged {
            UntaggedImages::Keep => Untagged::Keep,
            UntaggedImages::Delete => Untagged::Delete,
        }
    }
}

/// A regular expression over tags (the `regex` crate's syntax), parsed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct KeepTagsParam(pub TagRegex);

impl TryFrom<String> for KeepTagsParam {
    type Error = String;
    fn try_from(value: String) -> Result<KeepTagsParam, String> {
        TagRegex::parse(&value)
            .map(KeepTagsParam)
            .map_err(|e| e.to_string())
    }
}

impl PartialSchema for KeepTagsParam {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A regular expression (Rust `regex` syntax, matched anywhere in the tag unless \
                 anchored): an image with a tag it matches always stays.",
            ))
            .min_length(Some(1))
            .max_length(Some(TagRegex::MAX_LEN))
            .examples(["^v[0-9]+\\.[0-9]+\\.[0-9]+$"])
            .into()
    }
}

impl ToSchema for KeepTagsParam {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("TagRegex")
    }
}

/// The longest minimum age accepted: a hundred years, in seconds.
pub const MAX_MIN_AGE: u64 = 100 * 365 * 86_400;

/// A minimum age in seconds, at most [`MAX_MIN_AGE`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct MinAge(pub u64);

impl TryFrom<u64> for MinAge {
    type Error = String;
    fn try_from(value: u64) -> Result<MinAge, String> {
        if value <= MAX_MIN_AGE {
            Ok(MinAge(value))
        } else {
            Err(format!("at most {MAX_MIN_AGE} seconds (a hundred years)"))
        }
    }
}

impl PartialSchema for MinAge {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .description(Some(
                "Seconds: no image created or pushed more recently goes; 0 when not given.",
            ))
            .minimum(Some(0))
            .maximum(Some(MAX_MIN_AGE as f64))
            .into()
    }
}

impl ToSchema for MinAge {}

/// The most tagged images a policy may keep per repository.
pub const MAX_KEEP: u32 = 1_000_000;

/// How many tagged images stay per repository, at most [`MAX_KEEP`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct Keep(pub u32);

impl TryFrom<u64> for Keep {
    type Error = String;
    fn try_from(value: u64) -> Result<Keep, String> {
        u32::try_from(value)
            .ok()
            .filter(|keep| *keep <= MAX_KEEP)
            .map(Keep)
            .ok_or_else(|| format!("at most {MAX_KEEP}"))
    }
}

impl PartialSchema for Keep {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .description(Some(
                "How many tagged images of each repository stay, newest first (by the image \
                 configuration's `created`, else the push time).",
            ))
            .minimum(Some(0))
            .maximum(Some(MAX_KEEP))
            .into()
    }
}

impl ToSchema for Keep {}

/// A retention policy, as set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicyRequest {
    pub keep: Keep,
    /// What becomes of untagged images; `keep` when not given.
    #[serde(default)]
    pub untagged: Untagged,
    #[serde(default)]
    pub min_age: MinAge,
    /// Tags that always stay.
    #[serde(default)]
    pub keep_tags: Option<KeepTagsParam>,
}

/// A namespace's retention policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionPolicyView {
    pub namespace: String,
    pub keep: u32,
    pub untagged: Untagged,
    /// Seconds.
    pub min_age: u64,
    pub keep_tags: Option<String>,
    /// Who set it last.
    pub author: String,
    /// Seconds since the epoch.
    pub updated_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionPolicyList {
    /// By namespace: those of the namespaces the caller may see.
    pub policies: Vec<RetentionPolicyView>,
}

/// A run of a policy: a dry run only lists what would go.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRunRequest {
    #[serde(default)]
    pub dry_run: bool,
}

/// An image a run deleted (would delete), or left alone and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionItem {
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    /// When it was created, seconds since the epoch.
    pub created: i64,
    /// Where `created` comes from: `created` (the image configuration;
    /// for an index, its newest child's) or `pushed` (the push time).
    pub age_from: String,
    /// Its age in seconds when the run decided.
    pub age: i64,
    /// An index's untagged children, which go with it.
    pub children: Vec<String>,
    /// Why the policy selects it.
    pub reason: String,
    /// Why it stays anyway (skipped images only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// What a run did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionRunView {
    pub namespace: String,
    pub dry_run: bool,
    /// The images moved to the trash (to be moved, in a dry run), by
    /// repository, then newest first.
    pub removed: Vec<RetentionItem>,
    /// Images selected but left alone: protected by an immutable tag, or
    /// changed since the run read them.
    pub skipped: Vec<RetentionItem>,
    /// How many images stay.
    pub kept: usize,
}

/// The API's view of a policy (the console shows the same).
pub fn policy_view(policy: RetentionPolicy) -> RetentionPolicyView {
    RetentionPolicyView {
        namespace: policy.namespace,
        keep: policy.keep,
        untagged: policy.untagged.into(),
        min_age: policy.min_age,
        keep_tags: policy.keep_tags.map(|regex| regex.to_string()),
        author: policy.author,
        updated_at: policy.updated_at,
    }
}

fn item(verdict: &RetentionVerdict, now: i64, skipped: Option<String>) -> RetentionItem {
    let image = &verdict.image;
    RetentionItem {
        repository: image.repository.to_string(),
        digest: image.digest.to_string(),
        tags: image.tags.iter().map(ToString::to_string).collect(),
        created: image.created,
        age_from: image.age_from.as_str().to_string(),
        age: now.saturating_sub(image.created).max(0),
        children: image.children.iter().map(ToString::to_string).collect(),
        reason: verdict.reason.to_string(),
        skipped,
    }
}

fn run_view(report: RetentionReport, now: i64) -> RetentionRunView {
    RetentionRunView {
        namespace: report.namespace,
        dry_run: report.dry_run,
        removed: report.removed.iter().map(|v| item(v, now, None)).collect(),
        skipped: report
            .skipped
            .into_iter()
            .map(|s| item(&s.verdict, now, Some(s.why)))
            .collect(),
        kept: report.kept,
    }
}

/// List retention policies.
#[utoipa::path(
    get,
    path = "/api/v1/retention-policies",
    tag = "lifecycle",
    operation_id = "list_retention_policies",
    responses((status = 200, description = "The policies", body = RetentionPolicyList))
)]
pub async fn list_policies(ctx: &Context<'_>) -> Result<Response, ManagementError> {
    let mut policies = Vec::new();
    for policy in ctx.registry.retention_policies(None).await? {
        let facts = ctx
            .auth
            .store
            .namespace_facts(&policy.namespace, ctx.caller.user_name())
            .await?;
        if ctx.caller.may_see_namespace(facts, &policy.namespace) {
            policies.push(policy_view(policy));
        }
    }
    Ok(ok(RetentionPolicyList { policies }))
}

/// Set a namespace's retention policy, replacing any.
///
/// Needs `manage_settings` in the namespace. The policy runs every
/// `retention_interval` and on demand (`run_retention_policy`).
#[utoipa::path(
    put,
    path = "/api/v1/namespaces/{namespace}/retention-policy",
    tag = "lifecycle",
    operation_id = "set_retention_policy",
    params(("namespace" = Name, Path, description = "The namespace")),
    request_body = RetentionPolicyRequest,
    responses((status = 200, description = "The policy, set", body = RetentionPolicyView))
)]
pub async fn set_policy(
    ctx: &Context<'_>,
    namespace: &Name,
    request: RetentionPolicyRequest,
) -> Result<Response, ManagementError> {
    Ok(ok(set(ctx.registry, &ctx.actor, namespace, request).await?))
}

/// Sets `namespace`'s policy as `actor` (the API's handler and the web
/// console's form both come here).
pub async fn set(
    registry: &berth_registry::Registry,
    actor: &berth_auth::Actor,
    namespace: &Name,
    request: RetentionPolicyRequest,
) -> Result<RetentionPolicyView, ManagementError> {
    let policy = RetentionPolicy {
        namespace: namespace.to_string(),
        keep: request.keep.0,
        untagged: request.untagged.into(),
        min_age: request.min_age.0,
        keep_tags: request.keep_tags.map(|param| param.0),
        author: actor.name.clone().unwrap_or_else(|| actor.to_string()),
        updated_at: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    registry.set_retention_policy(actor, &policy).await?;
    Ok(policy_view(policy))
}

/// Remove a namespace's retention policy.
#[utoipa::path(
    delete,
    path = "/api/v1/namespaces/{namespace}/retention-policy",
    tag = "lifecycle",
    operation_id = "remove_retention_policy",
    params(("namespace" = Name, Path, description = "The namespace")),
    responses((status = 204, description = "Removed"))
)]
pub async fn remove_policy(
    ctx: &Context<'_>,
    namespace: &Name,
) -> Result<Response, ManagementError> {
    remove(ctx.registry, &ctx.actor, namespace).await?;
    Ok(no_content())
}

/// Removes `namespace`'s policy as `actor`; 404 when it has none.
pub async fn remove(
    registry: &berth_registry::Registry,
    actor: &berth_auth::Actor,
    namespace: &Name,
) -> Result<(), ManagementError> {
    let removed = registry
        .remove_retention_policy(actor, namespace.as_str())
        .await?;
    if removed.is_none() {
        return Err(ManagementError::not_found(format!(
            "{namespace} has no retention policy"
        )));
    }
    Ok(())
}

/// Run a namespace's retention policy now.
///
/// Lists exactly what goes, and unless `dry_run` moves it to the trash
/// (restorable for `trash_retention`). A dry run and a run made at the
/// same moment select the same images. Needs `manage_settings` in the
/// namespace.
#[utoipa::path(
    post,
    path = "/api/v1/namespaces/{namespace}/retention-policy/run",
    tag = "lifecycle",
    operation_id = "run_retention_policy",
    params(("namespace" = Name, Path, description = "The namespace")),
    request_body = RetentionRunRequest,
    responses((status = 200, description = "What went (or would go)", body = RetentionRunView))
)]
pub async fn run_policy(
    ctx: &Context<'_>,
    namespace: &Name,
    request: RetentionRunRequest,
) -> Result<Response, ManagementError> {
    Ok(ok(run(
        ctx.registry,
        &ctx.actor,
        namespace,
        request.dry_run,
    )
    .await?))
}

/// Runs `namespace`'s policy as `actor` (a dry run only lists); 404 when
/// it has none.
pub async fn run(
    registry: &berth_registry::Registry,
    actor: &berth_auth::Actor,
    namespace: &Name,
    dry_run: bool,
) -> Result<RetentionRunView, ManagementError> {
    let report = registry
        .run_retention(actor, namespace.as_str(), dry_run)
        .await?
        .ok_or_else(|| {
            ManagementError::not_found(format!("{namespace} has no retention policy"))
        })?;
    let at = report.at;
    Ok(run_view(report, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_tags_are_validated_at_the_edge() {
        assert!(KeepTagsParam::try_from("^v[0-9]+$".to_string()).is_ok());
        for bad in [
            String::new(),
            "(".to_string(),
            "a".repeat(TagRegex::MAX_LEN + 1),
        ] {
            assert!(KeepTagsParam::try_from(bad.clone()).is_err(), "{bad:?}");
        }
        assert_eq!(MinAge::try_from(MAX_MIN_AGE), Ok(MinAge(MAX_MIN_AGE)));
        assert!(MinAge::try_from(MAX_MIN_AGE + 1).is_err());
        assert_eq!(Keep::try_from(u64::from(MAX_KEEP)), Ok(Keep(MAX_KEEP)));
        assert!(Keep::try_from(u64::from(MAX_KEEP) + 1).is_err());
    }
}
