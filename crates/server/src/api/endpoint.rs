//! A request parsed into what it asks for: an [`Endpoint`], with its path
//! parameters and JSON body validated into types. Everything that can be
//! wrong with a request's form is found here and answered 400 (or 413, 415)
//! naming what was wrong, before anyone's rights are looked at.

use axum::body::Body;
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::audit::AuditListing;
use super::error::{ErrorCode, ManagementError};
use super::images::{ImageListing, TagListing, TagRequest};
use super::immutable::{NewImmutableRule, PatternParam, RuleScope};
use super::members::MemberUpdate;
use super::namespaces::DeleteOptions;
use super::namespaces::NamespaceListing;
use super::namespaces::{NamespaceUpdate, NewNamespace};
use super::quotas::QuotaLimits;
use super::replications::NewReplicationRequest;
use super::repositories::RepositoryListing;
use super::retention::{RetentionPolicyRequest, RetentionRunRequest};
use super::route::{PathParams, Route};
use super::tokens::{NewToken, MAX_SCOPES};
use super::trash::{restore_digest, TrashListing};
use super::types::{Name, ReferenceParam, RepositoryParam, TagParam};
use super::users::{NewUser, PasswordChange, PasswordReset, UserUpdate};
use super::vulnerabilities::{
    sbom_format, AdvisoryImport, ExemptionListing, ExemptionScope, ImageParam, NewExemption,
    SummaryQuery, VulnerabilityPolicy,
};
use super::webhooks::{NewWebhookRequest, WebhookScope};
use berth_registry::advisor::SbomFormat;

/// The largest request body accepted: a name, a password, a hundred scopes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// One parsed request of the management API.
#[derive(Debug)]
pub enum Endpoint {
    OpenApi,
    ListUsers,
    CreateUser(NewUser),
    UpdateUser(Name, UserUpdate),
    DeleteUser(Name),
    SetUserPassword(Name, PasswordReset),
    ChangeOwnPassword(PasswordChange),
    ListNamespaces(NamespaceListing),
    CreateNamespace(NewNamespace),
    GetNamespace(Name),
    UpdateNamespace(Name, NamespaceUpdate),
    ListMembers(Name),
    /// Namespace, user, new role.
    SetMember(Name, Name, MemberUpdate),
    /// Namespace, user.
    RemoveMember(Name, Name),
    ListTokens,
    CreateToken(NewToken),
    RevokeToken(Name),
    ListNamespaceTokens(Name),
    ListImages(RepositoryParam, ImageListing),
    ListTags(RepositoryParam, TagListing),
    GetImage(RepositoryParam, ReferenceParam),
    DeleteImage(RepositoryParam, ReferenceParam),
    /// Target repository and tag, and where the image comes from.
    TagImage(RepositoryParam, TagParam, TagRequest),
    UntagImage(RepositoryParam, TagParam),
    ListRepositories(RepositoryListing),
    /// The namespace, and whether to delete its repositories too.
    DeleteNamespace(Name, bool),
    GetVulnerabilityReport(ImageParam),
    GetSbom(ImageParam, SbomFormat),
    GetVulnerabilityPolicy(Name),
    SetVulnerabilityPolicy(Name, VulnerabilityPolicy),
    ListVulnerabilityPolicies,
    /// The images with findings, of one namespace or of all the caller sees.
    GetVulnerabilitySummary(SummaryQuery),
    ListExemptions(ExemptionListing),
    AddExemption(NewExemption),
    /// Scope, issue.
    RemoveExemption(ExemptionScope, String),
    GetAdvisoryData,
    ImportAdvisories(AdvisoryImport),
    ListAdvisorySources,
    SyncAdvisorySources,
    ListImmutableRules,
    AddImmutableRule(NewImmutableRule),
    /// Scope, tag pattern.
    RemoveImmutableRule(RuleScope, PatternParam),
    ListWebhooks,
    CreateWebhook(NewWebhookRequest),
    /// Scope, id.
    DeleteWebhook(WebhookScope, i64),
    /// Scope, id.
    ListWebhookDeliveries(WebhookScope, i64),
    ListAudit(AuditListing),
    ListTrash(TrashListing),
    /// Repository, and the digest of the trashed image.
    RestoreImage(RepositoryParam, berth_oci::Digest),
    ListRetentionPolicies,
    SetRetentionPolicy(Name, RetentionPolicyRequest),
    RemoveRetentionPolicy(Name),
    RunRetentionPolicy(Name, RetentionRunRequest),
    ListQuotas,
    GetQuota(Name),
    /// A namespace's usage per day, over this many days.
    GetUsageHistory(Name, u32),
    SetQuota(Name, QuotaLimits),
    RecomputeQuotas,
    ListReplications,
    CreateReplication(NewReplicationRequest),
    GetReplication(Name),
    RunReplication(Name),
    DeleteReplication(Name),
}

impl Endpoint {
    /// Builds the endpoint of `route` from its path parameters and body,
    /// with no query string.
    pub fn parse(
        route: Route,
        params: &PathParams,
        body: &[u8],
    ) -> Result<Endpoint, ManagementError> {
        Endpoint::parse_with_query(route, params, None, body)
    }

    /// Builds the endpoint of `route` from its path parameters, query
    /// string (which only listings read) and body.
    pub fn parse_with_query(
        route: Route,
        params: &PathParams,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Endpoint, ManagementError> {
        let name = |param: &str| Name::from_param(param, params.get(param));
        let repository = || RepositoryParam::from_param("repository", params.get("repository"));
        let reference = || ReferenceParam::from_param("reference", params.get("reference"));
        let tag = || TagParam::from_param("tag", params.get("tag"));
        Ok(match route {
            Route::OpenApi => Endpoint::OpenApi,
            Route::ListUsers => Endpoint::ListUsers,
            Route::CreateUser => Endpoint::CreateUser(json(body)?),
            Route::UpdateUser => Endpoint::UpdateUser(name("name")?, json(body)?),
            Route::DeleteUser => Endpoint::DeleteUser(name("name")?),
            Route::SetUserPassword => Endpoint::SetUserPassword(name("name")?, json(body)?),
            Route::ChangeOwnPassword => Endpoint::ChangeOwnPassword(json(body)?),
            Route::ListNamespaces => Endpoint::ListNamespaces(NamespaceListing::parse(query)?),
            Route::CreateNamespace => Endpoint::CreateNamespace(json(body)?),
            Route::GetNamespace => Endpoint::GetNamespace(name("namespace")?),
            Route::UpdateNamespace => Endpoint::UpdateNamespace(name("namespace")?, json(body)?),
            Route::ListMembers => Endpoint::ListMembers(name("namespace")?),
            Route::SetMember => Endpoint::SetMember(name("namespace")?, name("user")?, json(body)?),
            Route::RemoveMember => Endpoint::RemoveMember(name("namespace")?, name("user")?),
            Route::ListTokens => Endpoint::ListTokens,
            Route::CreateToken => {
                let new: NewToken = json(body)?;
                if new.scopes.is_empty() || new.scopes.len() > MAX_SCOPES {
                    return Err(ManagementError::invalid_request(format!(
                        "scopes: a token needs between 1 and {MAX_SCOPES} scopes"
                    )));
                }
                Endpoint::CreateToken(new)
            }
            Route::RevokeToken => Endpoint::RevokeToken(name("name")?),
            Route::ListNamespaceTokens => Endpoint::ListNamespaceTokens(name("namespace")?),
            Route::ListImages => {
                let repository = repository()?;
                let listing = ImageListing::parse(&repository.0, query)?;
                Endpoint::ListImages(repository, listing)
            }
            Route::ListTags => {
                let repository = repository()?;
                let listing = TagListing::parse(&repository.0, query)?;
                Endpoint::ListTags(repository, listing)
            }
            Route::GetImage => Endpoint::GetImage(repository()?, reference()?),
            Route::DeleteImage => Endpoint::DeleteImage(repository()?, reference()?),
            Route::TagImage => Endpoint::TagImage(repository()?, tag()?, json(body)?),
            Route::UntagImage => Endpoint::UntagImage(repository()?, tag()?),
            Route::ListRepositories => Endpoint::ListRepositories(RepositoryListing::parse(query)?),
            Route::DeleteNamespace => {
                let options: DeleteOptions = super::parse_query(query)?;
                Endpoint::DeleteNamespace(name("namespace")?, options.force.unwrap_or(false))
            }
            Route::GetVulnerabilityReport => Endpoint::GetVulnerabilityReport(image(params)?),
            Route::GetSbom => Endpoint::GetSbom(
                image(params)?,
                sbom_format(params.get("format")).map_err(|e| {
                    ManagementError::invalid_request(format!("path parameter format: {e}"))
                })?,
            ),
            Route::GetVulnerabilityPolicy => Endpoint::GetVulnerabilityPolicy(name("namespace")?),
            Route::SetVulnerabilityPolicy => {
                let policy: VulnerabilityPolicy = json(body)?;
                policy.validate()?;
                Endpoint::SetVulnerabilityPolicy(name("namespace")?, policy)
            }
            Route::ListVulnerabilityPolicies => Endpoint::ListVulnerabilityPolicies,
            Route::GetVulnerabilitySummary => {
                Endpoint::GetVulnerabilitySummary(SummaryQuery::parse(query)?)
            }
            Route::ListExemptions => Endpoint::ListExemptions(ExemptionListing::parse(query)?),
            Route::AddExemption => Endpoint::AddExemption(json(body)?),
            Route::RemoveExemption => Endpoint::RemoveExemption(
                ExemptionScope::try_from(params.get("scope").to_string()).map_err(|e| {
                    ManagementError::invalid_request(format!("path parameter scope: {e}"))
                })?,
                params.get("issue").to_string(),
            ),
            Route::GetAdvisoryData => Endpoint::GetAdvisoryData,
            Route::ImportAdvisories => Endpoint::ImportAdvisories(json(body)?),
            Route::ListAdvisorySources => Endpoint::ListAdvisorySources,
            Route::SyncAdvisorySources => Endpoint::SyncAdvisorySources,
            Route::ListImmutableRules => Endpoint::ListImmutableRules,
            Route::AddImmutableRule => Endpoint::AddImmutableRule(json(body)?),
            Route::RemoveImmutableRule => Endpoint::RemoveImmutableRule(
                RuleScope::try_from(params.get("scope").to_string()).map_err(|e| {
                    ManagementError::invalid_request(format!("path parameter scope: {e}"))
                })?,
                PatternParam::try_from(params.get("tags").to_string()).map_err(|e| {
                    ManagementError::invalid_request(format!("path parameter tags: {e}"))
                })?,
            ),
            Route::ListWebhooks => Endpoint::ListWebhooks,
            Route::CreateWebhook => {
                let new: NewWebhookRequest = json(body)?;
                new.validate()?;
                Endpoint::CreateWebhook(new)
            }
            Route::DeleteWebhook => {
                Endpoint::DeleteWebhook(webhook_scope(params)?, webhook_id(params)?)
            }
            Route::ListWebhookDeliveries => {
                Endpoint::ListWebhookDeliveries(webhook_scope(params)?, webhook_id(params)?)
            }
            Route::ListAudit => Endpoint::ListAudit(AuditListing::parse(query)?),
            Route::ListTrash => Endpoint::ListTrash(TrashListing::parse(query)?),
            Route::RestoreImage => Endpoint::RestoreImage(
                repository()?,
                restore_digest(&ReferenceParam::from_param("digest", params.get("digest"))?)?,
            ),
            Route::ListRetentionPolicies => Endpoint::ListRetentionPolicies,
            Route::SetRetentionPolicy => {
                Endpoint::SetRetentionPolicy(name("namespace")?, json(body)?)
            }
            Route::RemoveRetentionPolicy => Endpoint::RemoveRetentionPolicy(name("namespace")?),
            Route::RunRetentionPolicy => {
                Endpoint::RunRetentionPolicy(name("namespace")?, json(body)?)
            }
            Route::ListQuotas => Endpoint::ListQuotas,
            Route::GetQuota => Endpoint::GetQuota(name("namespace")?),
            Route::GetUsageHistory => {
                Endpoint::GetUsageHistory(name("namespace")?, super::quotas::history_days(query)?)
            }
            Route::SetQuota => {
                let limits: QuotaLimits = json(body)?;
                limits.validate()?;
                Endpoint::SetQuota(name("namespace")?, limits)
            }
            Route::RecomputeQuotas => Endpoint::RecomputeQuotas,
            Route::ListReplications => Endpoint::ListReplications,
            Route::CreateReplication => {
                let new: NewReplicationRequest = json(body)?;
                new.validate()?;
                Endpoint::CreateReplication(new)
            }
            Route::GetReplication => Endpoint::GetReplication(name("name")?),
            Route::RunReplication => Endpoint::RunReplication(name("name")?),
            Route::DeleteReplication => Endpoint::DeleteReplication(name("name")?),
        })
    }
}

/// The webhook scope path parameter.
fn webhook_scope(params: &PathParams) -> Result<WebhookScope, ManagementError> {
    WebhookScope::try_from(params.get("scope").to_string())
        .map_err(|e| ManagementError::invalid_request(format!("path parameter scope: {e}")))
}

/// The webhook id path parameter.
fn webhook_id(params: &PathParams) -> Result<i64, ManagementError> {
    let text = params.get("id");
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ManagementError::invalid_request(format!(
                "path parameter id: {text:?} is not a webhook id (a positive integer)"
            ))
        })
}

/// The image path parameter.
fn image(params: &PathParams) -> Result<ImageParam, ManagementError> {
    ImageParam::parse(params.get("image"))
        .map_err(|e| ManagementError::invalid_request(format!("path parameter image: {e}")))
}

/// Parses a JSON body into `T`, saying what was wrong when it cannot.
fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ManagementError> {
    if body.is_empty() {
        return Err(ManagementError::invalid_request(
            "this request needs a JSON body",
        ));
    }
    // Every body is an object; serde would also fill a struct from an
    // array of its fields in order (`[null, null]`), which no client means.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ManagementError::invalid_request(
            "invalid request body: it must be a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| refuse(&error.path().to_string(), error.into_inner()))?;
    // Trailing bytes after the value are malformed JSON, as from_slice says.
    deserializer.end().map_err(|error| refuse(".", error))?;
    Ok(value)
}

/// The 400 for a body that failed to parse at `path` (`.` for the root).
fn refuse(path: &str, error: serde_json::Error) -> ManagementError {
    let what = match error.classify() {
        serde_json::error::Category::Data => "invalid request body",
        _ => "malformed JSON",
    };
    // serde_json's message says what was expected and where, and quotes
    // only names and refused values, never a string field's content (so a
    // password does not come back in an error).
    let message = if path == "." {
        format!("{what}: {error}")
    } else {
        format!("{what}: {path}: {error}")
    };
    ManagementError::invalid_request(message)
        .with_detail(serde_json::json!({ "line": error.line(), "column": error.column() }))
}

/// Reads a JSON request body of at most [`MAX_BODY_BYTES`].
pub async fn read_body(parts: &Parts, body: Body) -> Result<Bytes, ManagementError> {
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    // Requiring JSON's media type also keeps browsers from sending these
    // requests cross-site: a form can post text/plain, but JSON needs a
    // preflight the server never answers.
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ManagementError::new(
            ErrorCode::UnsupportedMediaType,
            "the request body must be JSON, sent as Content-Type: application/json",
        ));
    }
    let too_large = || {
        ManagementError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|error| {
            let over_limit = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if over_limit {
                too_large()
            } else {
                ManagementError::invalid_request(format!(
                    "reading the request body failed: {error}"
                ))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_parsed_or_refused_with_a_reason() {
        let params = PathParams::default();
        // (route, body, expected: Ok or the start of the message)
        let table: &[(Route, &str, Result<(), &str>)] = &[
            (
                Route::CreateUser,
                r#"{"name":"bob","password":"long enough"}"#,
                Ok(()),
            ),
            (
                Route::CreateUser,
                r#"{"name":"Bob","password":"long enough"}"#,
                Err("invalid request body: name: \"Bob\" is not a valid name"),
            ),
            (
                Route::CreateUser,
                r#"{"name":"bob","password":"long enough","role":"x"}"#,
                Err("invalid request body: role: unknown field `role`"),
            ),
            (
                Route::CreateUser,
                r#"{"name":"bob"}"#,
                Err("invalid request body: missing field `password`"),
            ),
            (
                Route::CreateUser,
                r#"{"name":"bob","#,
                Err("malformed JSON"),
            ),
            (Route::CreateUser, "", Err("this request needs a JSON body")),
            (
                Route::CreateUser,
                r#"["bob"]"#,
                Err("invalid request body: it must be a JSON object"),
            ),
            (
                Route::CreateUser,
                r#" [null, null]"#,
                Err("invalid request body: it must be a JSON object"),
            ),
            (Route::CreateNamespace, r#"{"name":"team"}"#, Ok(())),
            (
                Route::CreateNamespace,
                r#"{"name":"team","visibility":"secret"}"#,
                Err("invalid request body: visibility: unknown variant `secret`"),
            ),
            (
                Route::CreateToken,
                r#"{"name":"ci","scopes":["team:pull"],"expires":"30d"}"#,
                Ok(()),
            ),
            (
                Route::CreateToken,
                r#"{"name":"ci","scopes":["team:pull"],"expires":null}"#,
                Ok(()),
            ),
            (
                Route::CreateToken,
                r#"{"name":"ci","scopes":[]}"#,
                Err("scopes: a token needs between 1 and 100"),
            ),
            (
                Route::CreateToken,
                r#"{"name":"ci","scopes":["team:admin"]}"#,
                Err("invalid request body: scopes[0]: invalid token scope"),
            ),
            (
                Route::CreateToken,
                r#"{"name":"ci","scopes":["team:pull"],"expires":"0d"}"#,
                Err("invalid request body: expires: invalid expiry"),
            ),
        ];
        for (route, body, expected) in table {
            let parsed = Endpoint::parse(*route, &params, body.as_bytes());
            match (parsed, expected) {
                (Ok(_), Ok(())) => {}
                (Err(error), Err(start)) => {
                    assert_eq!(error.code(), ErrorCode::InvalidRequest, "{body}");
                    assert!(
                        error.message().starts_with(start),
                        "{body}: {}",
                        error.message()
                    );
                }
                (parsed, _) => panic!("{body}: {parsed:?}"),
            }
        }
        let many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("\"t{i}:pull\"")).collect();
        let body = format!(r#"{{"name":"ci","scopes":[{}]}}"#, many.join(","));
        assert!(Endpoint::parse(Route::CreateToken, &params, body.as_bytes()).is_err());
    }

    #[test]
    fn passwords_never_show_in_debug_output() {
        let body = br#"{"name":"bob","password":"hunter2 hunter2"}"#;
        let endpoint = Endpoint::parse(Route::CreateUser, &PathParams::default(), body).unwrap();
        assert!(!format!("{endpoint:?}").contains("hunter2"));
    }
}
