//! Immutable-tag rules: a tag whose name matches a rule's pattern, in the
//! rule's namespace or repository, can be pushed once and then never moved
//! to another image nor deleted (the registry answers 403 `DENIED` naming
//! the rule). Adding and removing a rule needs `manage_settings` in its
//! namespace; the listing shows the rules of the namespaces the caller may
//! see.

use axum::response::Response;
use berth_oci::{RepoName, TagPattern};
use berth_registry::ImmutableRule;
use serde::{Deserialize, Serialize};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::error::{ErrorBody, ManagementError};
use super::types::{Name, REPOSITORY_PATTERN};
use super::{created, no_content, ok, Context};

/// What a tag pattern looks like; `maxLength` bounds it at 128.
pub const TAG_PATTERN_PATTERN: &str = "^[a-zA-Z0-9_.*?-]+$";

/// Where a rule applies: a namespace (`team-a`) or one repository
/// (`team-a/api`), parsed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RuleScope {
    pub namespace: Name,
    /// `None` for every repository of the namespace.
    pub repository: Option<RepoName>,
}

impl TryFrom<String> for RuleScope {
    type Error = String;
    fn try_from(value: String) -> Result<RuleScope, String> {
        if !value.contains('/') {
            return Ok(RuleScope {
                namespace: Name::try_from(value)?,
                repository: None,
            });
        }
        let repository = RepoName::parse(&value).map_err(|e| format!("{value:?}: {e}"))?;
        Ok(RuleScope {
            namespace: Name::try_from(repository.namespace().to_string())?,
            repository: Some(repository),
        })
    }
}

impl PartialSchema for RuleScope {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Where a rule applies: a namespace, or one repository in it.",
            ))
            .pattern(Some(REPOSITORY_PATTERN))
            .examples(["team-a/api"])
            .into()
    }
}

impl ToSchema for RuleScope {}

/// A tag pattern (`v*`, `release-?`), parsed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PatternParam(pub TagPattern);

impl TryFrom<String> for PatternParam {
    type Error = String;
    fn try_from(value: String) -> Result<PatternParam, String> {
        TagPattern::parse(&value)
            .map(PatternParam)
            .map_err(|e| e.to_string())
    }
}

impl PartialSchema for PatternParam {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Tags a rule covers: `*` stands for any run of characters, `?` for one, \
                 every other character for itself; the whole tag must match.",
            ))
            .pattern(Some(TAG_PATTERN_PATTERN))
            .min_length(Some(1))
            .max_length(Some(128))
            .examples(["v*"])
            .into()
    }
}

impl ToSchema for PatternParam {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("TagPattern")
    }
}

/// A new immutable-tag rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewImmutableRule {
    pub scope: RuleScope,
    pub tags: PatternParam,
}

/// An immutable-tag rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImmutableRuleView {
    /// `NS` or `NS/REPO`.
    pub scope: String,
    pub namespace: String,
    /// The tag pattern.
    pub tags: String,
    pub author: String,
    /// Seconds since the epoch.
    pub created_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImmutableRuleList {
    /// By namespace, then repository (namespace-wide rules first), then
    /// pattern: those of the namespaces the caller may see.
    pub rules: Vec<ImmutableRuleView>,
}

/// The API's view of a rule (the console shows the same).
pub fn rule_view(rule: ImmutableRule) -> ImmutableRuleView {
    ImmutableRuleView {
        scope: rule.scope().to_string(),
        tags: rule.pattern.to_string(),
        namespace: rule.namespace,
        author: rule.author,
        created_at: rule.created_at,
    }
}

/// List immutable-tag rules.
#[utoipa::path(
    get,
    path = "/api/v1/immutable-rules",
    tag = "lifecycle",
    operation_id = "list_immutable_rules",
    responses((status = 200, description = "The rules", body = ImmutableRuleList))
)]
pub async fn list_rules(ctx: &Context<'_>) -> Result<Response, ManagementError> {
    let mut rules = Vec::new();
    let mut seen: Option<(String, bool)> = None;
    for rule in ctx.registry.immutable_rules(None).await? {
        // Rules come grouped by namespace: one visibility check per group.
        let visible = match &seen {
            Some((namespace, visible)) if *namespace == rule.namespace => *visible,
            _ => {
                let facts = ctx
                    .auth
                    .store
                    .namespace_facts(&rule.namespace, ctx.caller.user_name())
                    .await?;
                let visible = ctx.caller.may_see_namespace(facts, &rule.namespace);
                seen = Some((rule.namespace.clone(), visible));
                visible
            }
        };
        if visible {
            rules.push(rule_view(rule));
        }
    }
    Ok(ok(ImmutableRuleList { rules }))
}

/// Add an immutable-tag rule.
///
/// From then on, a tag of the scope whose name matches the pattern can be
/// created, and pushed again with the same image, but never moved to
/// another image nor deleted. Needs `manage_settings` in the namespace.
#[utoipa::path(
    post,
    path = "/api/v1/immutable-rules",
    tag = "lifecycle",
    operation_id = "add_immutable_rule",
    request_body = NewImmutableRule,
    responses(
        (status = 201, description = "The rule", body = ImmutableRuleView),
        (status = 409, description = "The scope has this pattern already", body = ErrorBody),
    )
)]
pub async fn add_rule(
    ctx: &Context<'_>,
    new: NewImmutableRule,
) -> Result<Response, ManagementError> {
    Ok(created(add(ctx.registry, &ctx.actor, new).await?))
}

/// Adds a rule as `actor` (the API's handler and the web console's form
/// both come here).
pub async fn add(
    registry: &berth_registry::Registry,
    actor: &berth_auth::Actor,
    new: NewImmutableRule,
) -> Result<ImmutableRuleView, ManagementError> {
    let rule = ImmutableRule {
        namespace: new.scope.namespace.to_string(),
        repository: new.scope.repository,
        pattern: new.tags.0,
        author: actor.name.clone().unwrap_or_else(|| actor.to_string()),
        created_at: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    registry.add_immutable_rule(actor, &rule).await?;
    Ok(rule_view(rule))
}

/// Remove an immutable-tag rule.
#[utoipa::path(
    delete,
    path = "/api/v1/immutable-rules/{scope}/{tags}",
    tag = "lifecycle",
    operation_id = "remove_immutable_rule",
    params(
        ("scope" = RuleScope, Path, description = "The rule's scope, percent-encoded"),
        ("tags" = PatternParam, Path, description = "The rule's tag pattern, percent-encoded"),
    ),
    responses((status = 204, description = "Removed"))
)]
pub async fn remove_rule(
    ctx: &Context<'_>,
    scope: &RuleScope,
    tags: &PatternParam,
) -> Result<Response, ManagementError> {
    remove(ctx.registry, &ctx.actor, scope, tags).await?;
    Ok(no_content())
}

/// Removes a rule as `actor`; 404 when there is no such rule.
pub async fn remove(
    registry: &berth_registry::Registry,
    actor: &berth_auth::Actor,
    scope: &RuleScope,
    tags: &PatternParam,
) -> Result<(), ManagementError> {
    let removed = registry
        .remove_immutable_rule(
            actor,
            scope.namespace.as_str(),
            scope.repository.as_ref(),
            &tags.0,
        )
        .await?;
    if removed.is_none() {
        let scope = scope
            .repository
            .as_ref()
            .map_or(scope.namespace.as_str(), RepoName::as_str);
        return Err(ManagementError::not_found(format!(
            "no immutable-tag rule {} in {scope}",
            tags.0
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_agree_with_the_parsers() {
        let pattern = regex::Regex::new(TAG_PATTERN_PATTERN).unwrap();
        for candidate in [
            "v*",
            "*",
            "release-?",
            "1.2.0",
            "",
            "v[0-9]",
            "a/b",
            "v 1",
            "ä",
        ] {
            assert_eq!(
                PatternParam::try_from(candidate.to_string()).is_ok(),
                pattern.is_match(candidate),
                "{candidate:?}"
            );
        }
        let long = "a".repeat(129);
        assert!(
            pattern.is_match(&long) && PatternParam::try_from(long).is_err(),
            "maxLength says it"
        );
        let scope = regex::Regex::new(REPOSITORY_PATTERN).unwrap();
        for candidate in ["team-a", "team-a/api", "a/b/c", "A", "a//b", "", "a/", "-a"] {
            assert_eq!(
                RuleScope::try_from(candidate.to_string()).is_ok(),
                scope.is_match(candidate),
                "{candidate:?}"
            );
        }
    }
}
