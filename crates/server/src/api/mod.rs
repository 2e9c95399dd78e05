//! The JSON management API under `/api/v1`: users, namespaces, members,
//! access tokens and images, for people, their tools and their robots.
//!
//! # Layout
//!
//! A request goes through four steps, each in one place:
//!
//! 1. [`route`]: the method and path find a [`route::Route`] in the routing
//!    table (404 for an unknown path, 405 for a known path's other methods).
//! 2. [`endpoint`]: the path parameters and the JSON body are parsed into an
//!    [`endpoint::Endpoint`], typed and validated (400, 413, 415).
//! 3. [`permission`]: the caller is authenticated (as on `/v2/`) and the
//!    endpoint's row of the permission table is checked, once (401, 403).
//! 4. the endpoint's handler, in the module of its resource ([`users`],
//!    [`namespaces`], [`members`], [`tokens`], [`images`]), does the work
//!    through `berth_auth` (images: through the registry domain) and
//!    answers with a typed body.
//!
//! [`error`] is the one mapping from every error below into
//! `{"code","message","detail"}`; [`types`] holds the validated values the
//! resources share; [`openapi`] generates the OpenAPI document from all of
//! the above. Adding an endpoint is a route, an endpoint variant, a
//! permission row, a handler and its line in the document (CONTRIBUTING.md
//! walks through it); the compiler and the tests point at anything missed.
//!
//! **Architecture Invariant:** handlers never decide rights: the
//! authorization step runs before every handler, and a handler only filters
//! listings through the [`permission::Authorized`] value that step returns.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde::Serialize;
use time::OffsetDateTime;

pub mod audit;
pub mod cursor;
pub mod endpoint;
pub mod error;
pub mod images;
pub mod immutable;
pub mod members;
pub mod namespaces;
pub mod openapi;
pub mod permission;
pub mod quotas;
pub mod replications;
pub mod repositories;
pub mod retention;
pub mod route;
pub mod tokens;
pub mod trash;
pub mod types;
pub mod users;
pub mod vulnerabilities;
pub mod webhooks;

use berth_auth::{change_at, Actor, Change};

use crate::access::{actor_of, authenticate_caller, AuthState};
use crate::v2::EndpointLabel;
use crate::AppState;
use endpoint::Endpoint;
use error::ManagementError;
use permission::Authorized;
use route::Route;

/// The API's routes, merged into the application by [`crate::app`]. Every
/// path under `/api/v1` reaches [`dispatch`], which answers unknown ones.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1", any(dispatch))
        .route("/api/v1/{*rest}", any(dispatch))
}

/// What a handler is given: the access-control state it works through,
/// the caller the authorization step let in, and that caller as the actor
/// of the changes it makes (for the event stream).
pub struct Context<'a> {
    pub auth: &'a AuthState,
    /// The registry domain, for the image and vulnerability endpoints.
    pub registry: &'a berth_registry::Registry,
    pub caller: &'a Authorized,
    pub actor: Actor,
    /// How the server calls out (webhook secrets are sealed with its key).
    pub outbound: &'a crate::settings::OutboundSettings,
    /// Runs replication rules on demand; `None` when the server runs none.
    pub replicator: Option<&'a berth_registry::Replicator>,
    /// The advisory sync; `None` when the binary gave none.
    pub advisory_sync: Option<&'a berth_registry::advisory_sync::AdvisorySync>,
}

impl Context<'_> {
    /// The time a change is recorded at.
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    /// The change the caller makes at `at`.
    pub fn change_at(&self, at: OffsetDateTime) -> Change {
        change_at(&self.actor, at)
    }
}

/// A query string parsed into `T`, or a 400 that names the parameter at
/// fault: serde's message says what was wrong with a value, not which
/// parameter held it. `T`'s fields must all be optional for the culprit to
/// be found (each parameter is then tried alone); otherwise the message
/// is serde's.
pub fn parse_query<T: serde::de::DeserializeOwned>(
    query: Option<&str>,
) -> Result<T, ManagementError> {
    let query = query.unwrap_or("");
    serde_urlencoded::from_str(query).map_err(|error| {
        let all_optional = serde_urlencoded::from_str::<T>("").is_ok();
        let culprit = all_optional
            .then(|| {
                serde_urlencoded::from_str::<Vec<(String, String)>>(query)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|pair| {
                        let alone = serde_urlencoded::to_string([pair]).unwrap_or_default();
                        serde_urlencoded::from_str::<T>(&alone).is_err()
                    })
            })
            .flatten();
        match culprit {
            Some((name, _)) => {
                ManagementError::invalid_request(format!("query parameter {name}: {error}"))
            }
            None => ManagementError::invalid_request(format!("query: {error}")),
        }
    })
}

/// A listing's page size from its `limit` parameter: `default` when it is
/// absent, a 400 naming the bounds when it is outside 1 to `max`.
pub fn page_limit(
    limit: Option<u64>,
    default: usize,
    max: usize,
) -> Result<usize, ManagementError> {
    match limit {
        None => Ok(default),
        Some(limit) if (1..=max as u64).contains(&limit) => Ok(limit as usize),
        Some(limit) => Err(ManagementError::invalid_request(format!(
            "query parameter limit: {limit} is not between 1 and {max}"
        ))),
    }
}

pub fn ok<T: Serialize>(body: T) -> Response {
    Json(body).into_response()
}

/// 201 with `body`.
pub fn created<T: Serialize>(body: T) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

/// 204.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Every request under `/api/v1`.
async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let mut label = "api";
    let mut response = match handle(&state, request, &mut label).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    response.extensions_mut().insert(EndpointLabel(label));
    response
}

async fn handle(
    state: &AppState,
    request: Request,
    label: &mut &'static str,
) -> Result<Response, ManagementError> {
    let (parts, body) = request.into_parts();
    let (route, params) = Route::find(&parts.method, parts.uri.path())?;
    *label = route.name();
    let Some(auth) = state.auth.as_deref() else {
        // Without access control nobody can be authorized, so the API
        // answers only what anyone may read.
        return match route {
            Route::OpenApi => Ok(openapi::document()),
            _ => Err(ManagementError::not_found(
                "the management API needs access control: start the server with --auth",
            )),
        };
    };
    let caller = authenticate_caller(auth, &parts)
        .await
        .map_err(|failure| permission::refuse_credentials(auth, &parts, failure))?;
    let body = if route.takes_body() {
        endpoint::read_body(&parts, body).await?
    } else {
        bytes::Bytes::new()
    };
    let endpoint = Endpoint::parse_with_query(route, &params, parts.uri.query(), &body)?;
    let permission = permission::required(&endpoint);
    let caller = permission::authorize(auth, caller, &permission, &parts).await?;
    let context = Context {
        auth,
        registry: &state.registry,
        caller: &caller,
        actor: actor_of(&caller.principal, &parts),
        outbound: &state.outbound,
        replicator: state.replicator.as_deref(),
        advisory_sync: state.advisory_sync.as_deref(),
    };
    let result = handle_endpoint(&context, endpoint).await;
    if let Err(refused) = &result {
        if let Some(refusal) = refused.quota_refusal() {
            state.registry.note_quota_refusal(&context.actor, refusal);
        }
    }
    result
}

/// Runs the handler of `endpoint`, which the authorization step allowed.
async fn handle_endpoint(
    ctx: &Context<'_>,
    endpoint: Endpoint,
) -> Result<Response, ManagementError> {
    match endpoint {
        Endpoint::OpenApi => Ok(openapi::document()),
        Endpoint::ListUsers => users::list(ctx).await,
        Endpoint::CreateUser(new) => users::create(ctx, new).await,
        Endpoint::UpdateUser(name, update) => users::update(ctx, &name, update).await,
        Endpoint::DeleteUser(name) => users::delete(ctx, &name).await,
        Endpoint::SetUserPassword(name, reset) => users::set_password(ctx, &name, reset).await,
        Endpoint::ChangeOwnPassword(change) => users::change_own_password(ctx, change).await,
        Endpoint::ListNamespaces(listing) => namespaces::list(ctx, listing).await,
        Endpoint::CreateNamespace(new) => namespaces::create(ctx, new).await,
        Endpoint::GetNamespace(name) => namespaces::get(ctx, &name).await,
        Endpoint::UpdateNamespace(name, update) => namespaces::update(ctx, &name, update).await,
        Endpoint::ListMembers(namespace) => members::list(ctx, &namespace).await,
        Endpoint::SetMember(namespace, user, update) => {
            members::set(ctx, &namespace, &user, update).await
        }
        Endpoint::RemoveMember(namespace, user) => members::remove(ctx, &namespace, &user).await,
        Endpoint::ListTokens => tokens::list(ctx).await,
        Endpoint::CreateToken(new) => tokens::create(ctx, new).await,
        Endpoint::RevokeToken(name) => tokens::revoke(ctx, &name).await,
        Endpoint::ListNamespaceTokens(namespace) => {
            tokens::list_in_namespace(ctx, &namespace).await
        }
        Endpoint::ListImages(repository, listing) => {
            images::list(ctx, &repository.0, listing).await
        }
        Endpoint::ListTags(repository, listing) => {
            images::list_tags(ctx, &repository.0, listing).await
        }
        Endpoint::GetImage(repository, reference) => {
            images::get(ctx, &repository.0, &reference.0).await
        }
        Endpoint::DeleteImage(repository, reference) => {
            images::delete(ctx, &repository.0, &reference.0).await
        }
        Endpoint::TagImage(repository, tag, request) => {
            images::tag(ctx, &repository.0, &tag, request).await
        }
        Endpoint::UntagImage(repository, tag) => images::untag(ctx, &repository.0, &tag).await,
        Endpoint::ListRepositories(listing) => repositories::list(ctx, listing).await,
        Endpoint::DeleteNamespace(name, force) => namespaces::delete(ctx, &name, force).await,
        Endpoint::GetVulnerabilityReport(image) => vulnerabilities::report(ctx, &image).await,
        Endpoint::GetSbom(image, format) => vulnerabilities::sbom(ctx, &image, format).await,
        Endpoint::GetVulnerabilityPolicy(namespace) => {
            vulnerabilities::get_policy(ctx, &namespace).await
        }
        Endpoint::SetVulnerabilityPolicy(namespace, policy) => {
            vulnerabilities::set_policy(ctx, &namespace, policy).await
        }
        Endpoint::ListVulnerabilityPolicies => vulnerabilities::list_policies(ctx).await,
        Endpoint::GetVulnerabilitySummary(query) => vulnerabilities::summary(ctx, query).await,
        Endpoint::ListExemptions(listing) => vulnerabilities::list_exemptions(ctx, listing).await,
        Endpoint::AddExemption(new) => vulnerabilities::add_exemption(ctx, new).await,
        Endpoint::RemoveExemption(scope, issue) => {
            vulnerabilities::remove_exemption(ctx, &scope, &issue).await
        }
        Endpoint::GetAdvisoryData => vulnerabilities::advisory_data(ctx).await,
        Endpoint::ImportAdvisories(body) => vulnerabilities::import(ctx, body).await,
        Endpoint::ListAdvisorySources => vulnerabilities::advisory_sources(ctx).await,
        Endpoint::SyncAdvisorySources => vulnerabilities::sync_advisory_sources(ctx).await,
        Endpoint::ListImmutableRules => immutable::list_rules(ctx).await,
        Endpoint::AddImmutableRule(new) => immutable::add_rule(ctx, new).await,
        Endpoint::RemoveImmutableRule(scope, tags) => {
            immutable::remove_rule(ctx, &scope, &tags).await
        }
        Endpoint::ListReplications => replications::list(ctx).await,
        Endpoint::CreateReplication(new) => replications::create(ctx, new).await,
        Endpoint::GetReplication(name) => replications::get(ctx, &name).await,
        Endpoint::RunReplication(name) => replications::run(ctx, &name).await,
        Endpoint::DeleteReplication(name) => replications::delete(ctx, &name).await,
        Endpoint::ListWebhooks => webhooks::list(ctx).await,
        Endpoint::CreateWebhook(new) => webhooks::create(ctx, new).await,
        Endpoint::DeleteWebhook(scope, id) => webhooks::delete(ctx, &scope, id).await,
        Endpoint::ListWebhookDeliveries(scope, id) => webhooks::deliveries(ctx, &scope, id).await,
        Endpoint::ListAudit(listing) => audit::list(ctx, listing).await,
        Endpoint::ListTrash(listing) => trash::list(ctx, listing).await,
        Endpoint::RestoreImage(repository, digest) => {
            trash::restore(ctx, &repository.0, &digest).await
        }
        Endpoint::ListRetentionPolicies => retention::list_policies(ctx).await,
        Endpoint::SetRetentionPolicy(namespace, request) => {
            retention::set_policy(ctx, &namespace, request).await
        }
        Endpoint::RemoveRetentionPolicy(namespace) => {
            retention::remove_policy(ctx, &namespace).await
        }
        Endpoint::RunRetentionPolicy(namespace, request) => {
            retention::run_policy(ctx, &namespace, request).await
        }
        Endpoint::ListQuotas => quotas::list(ctx).await,
        Endpoint::GetQuota(namespace) => quotas::get(ctx, &namespace).await,
        Endpoint::GetUsageHistory(namespace, days) => quotas::history(ctx, &namespace, days).await,
        Endpoint::SetQuota(namespace, limits) => quotas::set(ctx, &namespace, limits).await,
        Endpoint::RecomputeQuotas => quotas::recompute(ctx).await,
    }
}

#[cfg(test)]
mod tests {
    use super::vulnerabilities::ExemptionListQuery;
    use super::*;

    #[test]
    fn malformed_queries_name_the_parameter_at_fault() {
        // (query, Ok or the text the 400 carries)
        let cases: [(&str, Result<(), &str>); 6] = [
            ("", Ok(())),
            ("limit=5&namespace=team-a&cursor=abc", Ok(())),
            ("limit=many", Err("query parameter limit: ")),
            (
                "limit=5&namespace=Not%20A%20Name",
                Err("query parameter namespace: "),
            ),
            ("limit=-1", Err("query parameter limit: ")),
            ("colour=blue", Err("unknown field `colour`")),
        ];
        for (query, expected) in cases {
            let parsed = parse_query::<ExemptionListQuery>(Some(query)).map(|_| ());
            match (parsed, expected) {
                (Ok(()), Ok(())) => {}
                (Err(error), Err(text)) => {
                    assert_eq!(error.code(), error::ErrorCode::InvalidRequest, "{query}");
                    assert!(
                        error.message().contains(text),
                        "{query}: {}",
                        error.message()
                    );
                }
                (parsed, expected) => panic!("{query}: {parsed:?}, expected {expected:?}"),
            }
        }
    }
}
