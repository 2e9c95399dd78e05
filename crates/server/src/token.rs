//! The token endpoint (`/auth/token`), Docker's token protocol: `GET` with
//! Basic credentials or none, and the OAuth2 `POST` form (password and
//! refresh-token grants) that `docker login` uses to get a refresh
//! ("identity") token. Both answer with a short-lived registry JWT carrying
//! only the actions the policy grants, which may be none: a client that asks
//! for more than it may have gets a token for less, and `/v2/` refuses the rest.
//! Besides repositories and the catalog, the management API's scopes
//! (`namespace:NS:ACTION`, `registry:users:*`, `registry:tokens:*`) are
//! granted by the same policy, so a token for `/api/v1` carries exactly
//! the management rights it was asked and allowed to have.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_auth::challenge::oauth_error_code;
use berth_auth::policy::{granted_actions, granted_namespace_actions, granted_registry_actions};
use berth_auth::store::issue_refresh_token;
use berth_auth::{
    login_with_refresh_token, AccessEntry, AuthError, Credentials, Grant, LoginError, Principal,
    RegistryResource, ResourceType, Scope, Secret, TokenGetRequest, TokenPostRequest,
    TokenResponse,
};
use berth_oci::{ErrorCode, RepoName};
use berth_registry::NewAuditRecord;
use time::OffsetDateTime;

use crate::access::{store_failure, user_name, AuthState};
use crate::error::ApiError;
use crate::origin::ClientOrigin;
use crate::AppState;

/// Largest OAuth2 form accepted: a few credentials and scopes.
const MAX_FORM_BYTES: usize = 64 * 1024;

fn auth_state(state: &AppState) -> Result<&Arc<AuthState>, ApiError> {
    state.auth.as_ref().ok_or_else(ApiError::not_found)
}

/// `GET /auth/token`.
pub async fn get_token(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    match get_token_inner(&state, &parts).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn get_token_inner(state: &AppState, parts: &Parts) -> Result<Response, ApiError> {
    let auth = auth_state(state)?;
    let query = TokenGetRequest::parse(parts.uri.query().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(ErrorCode::Unsupported, e.to_string()))?;
    check_service(auth, query.service.as_deref())?;
    let principal = match parts.headers.get(header::AUTHORIZATION) {
        None => Principal::Anonymous,
        Some(value) => match value.to_str().ok().and_then(Credentials::parse) {
            Some(Credentials::Basic { username, password }) => {
                crate::access::login(auth, parts, &username, &password)
                    .await
                    .map_err(|e| basic_login_error(auth, parts, e))?
            }
            _ => {
                return Err(basic_login_error(
                    auth,
                    parts,
                    LoginError::InvalidCredentials,
                ))
            }
        },
    };
    if let (Some(account), Some(subject)) = (&query.account, principal.subject()) {
        if account != subject {
            return Err(ApiError::bad_request(
                ErrorCode::Unsupported,
                "account does not match the credentials",
            ));
        }
    }
    let refresh = if query.offline_token {
        Refresh::Issue
    } else {
        Refresh::None
    };
    let grant = if principal.subject().is_some() {
        "basic"
    } else {
        "anonymous"
    };
    let mirrored = root_mirrored(state, &query.scopes).await?;
    let response = issue(auth, &principal, &query.scopes, &mirrored, refresh).await?;
    audit_login(state, parts, &principal, grant, &response);
    Ok(response.into_response())
}

/// A failed Basic login at the token endpoint: 401 with a Basic challenge,
/// which is what clients that send no credentials yet expect.
fn basic_login_error(auth: &AuthState, parts: &Parts, error: LoginError) -> ApiError {
    match error {
        LoginError::InvalidCredentials => {
            ApiError::new(ErrorCode::Unauthorized, "invalid credentials").with_header(
                "www-authenticate",
                berth_auth::challenge::basic_challenge(&auth.realm(parts)),
            )
        }
        other => auth.login_error(parts, other),
    }
}

fn check_service(auth: &AuthState, service: Option<&str>) -> Result<(), ApiError> {
    match service {
        Some(service) if service != auth.authority.service => Err(ApiError::bad_request(
            ErrorCode::Unsupported,
            format!("unknown service {service:?}"),
        )),
        _ => Ok(()),
    }
}

/// `POST /auth/token` (OAuth2 form).
pub async fn post_token(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match post_token_inner(&state, &parts, body).await {
        Ok(response) => response,
        Err(e) => e,
    }
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": code }))).into_response()
}

/// An OAuth2 error (RFC 6749 §5.2) with a description saying what to fix.
fn oauth_error_described(status: StatusCode, code: &str, description: &str) -> Response {
    let body = serde_json::json!({ "error": code, "error_description": description });
    (status, axum::Json(body)).into_response()
}

async fn post_token_inner(
    state: &AppState,
    parts: &Parts,
    body: Body,
) -> Result<Response, Response> {
    let auth = auth_state(state).map_err(IntoResponse::into_response)?;
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| oauth_error(StatusCode::BAD_REQUEST, "invalid_request"))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| oauth_error(StatusCode::BAD_REQUEST, "invalid_request"))?;
    let form = TokenPostRequest::parse(text).map_err(|e| {
        oauth_error_described(
            StatusCode::BAD_REQUEST,
            oauth_error_code(&e),
            &e.to_string(),
        )
    })?;
    check_service(auth, form.service.as_deref()).map_err(IntoResponse::into_response)?;
    // A refresh grant that asks for offline access rotates the token it
    // presents: the answer carries the new one, and the old one is dead.
    let login = match &form.grant {
        Grant::Password { username, password } => {
            crate::access::login(auth, parts, username, password)
                .await
                .map(|principal| (principal, None))
        }
        Grant::RefreshToken { refresh_token } => {
            login_with_refresh_token(
                auth.store.as_ref(),
                refresh_token,
                OffsetDateTime::now_utc(),
                form.offline.then_some(auth.refresh_token_lifetime),
            )
            .await
        }
    };
    let (principal, rotated) = login.map_err(|e| match e {
        LoginError::InvalidCredentials => oauth_error(
            StatusCode::UNAUTHORIZED,
            oauth_error_code(&AuthError::Token(berth_auth::TokenRejection::Malformed)),
        ),
        other => auth.login_error(parts, other).into_response(),
    })?;
    let refresh = match rotated {
        Some(secret) => Refresh::Rotated(secret),
        None if form.offline => Refresh::Issue,
        None => Refresh::None,
    };
    let grant = match &form.grant {
        Grant::Password { .. } => "password",
        Grant::RefreshToken { .. } => "refresh_token",
    };
    let mirrored = root_mirrored(state, &form.scopes)
        .await
        .map_err(IntoResponse::into_response)?;
    let response = issue(auth, &principal, &form.scopes, &mirrored, refresh)
        .await
        .map_err(IntoResponse::into_response)?;
    audit_login(state, parts, &principal, grant, &response);
    Ok(response.into_response())
}

/// Records a login in the audit trail: a registry token issued to a user
/// or robot, with what it grants. Tokens for anonymous callers (every
/// public pull asks for one) are not logins and are left out. The secret
/// parts of the answer (the tokens) are never recorded.
fn audit_login(
    state: &AppState,
    parts: &Parts,
    principal: &Principal,
    grant: &'static str,
    issued: &Issued,
) {
    let (kind, name) = match principal {
        Principal::Anonymous => return,
        Principal::User { name, .. } => ("user", name),
        Principal::AccessToken { name, .. } => ("robot", name),
    };
    let address = parts
        .extensions
        .get::<ClientOrigin>()
        .and_then(|origin| origin.address);
    // A token naming one namespace's resources is filed under it, so that
    // `berth audit --namespace NS` shows who logged in to work on NS.
    let namespaces: std::collections::BTreeSet<&str> = issued
        .access
        .iter()
        .map(|entry| match entry.resource_type.as_str() {
            "repository" => entry.name.split('/').next().unwrap_or(""),
            "namespace" => entry.name.as_str(),
            _ => "",
        })
        .collect();
    let namespace = match namespaces.into_iter().collect::<Vec<_>>()[..] {
        [only] if !only.is_empty() => Some(only.to_string()),
        _ => None,
    };
    state.registry.record_access(NewAuditRecord {
        at: OffsetDateTime::now_utc().unix_timestamp(),
        actor_kind: kind.to_string(),
        actor_name: Some(name.clone()),
        actor_address: address.map(|a| a.to_string()),
        action: "token.issued".to_string(),
        namespace,
        resource: None,
        outcome: "ok".to_string(),
        detail: serde_json::json!({
            "grant": grant,
            "access": issued.access,
            "refresh_token": issued.refresh_token,
        }),
        event_position: None,
    });
}

/// A token endpoint's answer, with what the audit trail records of it.
struct Issued {
    response: Response,
    /// What the token grants.
    access: Vec<AccessEntry>,
    /// Whether a refresh token came with it.
    refresh_token: bool,
}

impl IntoResponse for Issued {
    fn into_response(self) -> Response {
        self.response
    }
}

/// Which refresh token an answer of the token endpoint carries.
enum Refresh {
    None,
    /// A new one, for a login that asked for offline access.
    Issue,
    /// The one a refresh grant's rotation just stored.
    Rotated(Secret),
}

/// The repositories among `scopes` that `/v2/` serves from the upstream
/// answering at the root (see `Registry::root_mirror`), by the name the
/// client asked for: the policy decides on the name served, while the
/// token's access claim keeps the client's name, which is the one its
/// requests carry.
async fn root_mirrored(
    state: &AppState,
    scopes: &[Scope],
) -> Result<HashMap<String, RepoName>, ApiError> {
    let mut mirrored = HashMap::new();
    for scope in scopes {
        if scope.resource_type != ResourceType::Repository {
            continue;
        }
        let Ok(repository) = RepoName::parse(&scope.name) else {
            continue;
        };
        if let Some(served) = state.registry.root_mirror(&repository).await? {
            mirrored.insert(scope.name.clone(), served);
        }
    }
    Ok(mirrored)
}

/// Grants what the policy allows of `scopes`, signs the token and, when asked
/// and the principal is a user, issues a refresh token.
async fn issue(
    auth: &AuthState,
    principal: &Principal,
    scopes: &[Scope],
    mirrored: &HashMap<String, RepoName>,
    refresh: Refresh,
) -> Result<Issued, ApiError> {
    let now = OffsetDateTime::now_utc();
    let access = grant(auth, principal, scopes, mirrored).await?;
    let granted = access.clone();
    let not_after = match principal {
        Principal::AccessToken { expires_at, .. } => *expires_at,
        _ => None,
    };
    let issued = auth
        .authority
        .issue(principal.subject(), access, now, not_after)
        .map_err(|e| {
            tracing::error!(error = %e, "signing a registry token failed");
            ApiError::internal()
        })?;
    let refresh: Option<Secret> = match (refresh, principal) {
        (Refresh::Rotated(secret), _) => Some(secret),
        (Refresh::Issue, Principal::User { name, .. }) => {
            let (secret, record) = issue_refresh_token(name, now, auth.refresh_token_lifetime);
            auth.store
                .create_refresh_token(record)
                .await
                .map_err(store_failure)?;
            Some(secret)
        }
        (Refresh::Issue | Refresh::None, _) => None,
    };
    let body = TokenResponse::new(&issued, refresh.as_ref()).to_json();
    Ok(Issued {
        response: (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        access: granted,
        refresh_token: refresh.is_some(),
    })
}

/// The access entries of a token for `principal` asking for `scopes`;
/// a repository in `mirrored` is decided as the name it is served under.
pub async fn grant(
    auth: &AuthState,
    principal: &Principal,
    scopes: &[Scope],
    mirrored: &HashMap<String, RepoName>,
) -> Result<Vec<AccessEntry>, ApiError> {
    let mut access = Vec::new();
    // Scopes often share a namespace; each is looked up once per request.
    let mut known = HashMap::new();
    for scope in scopes {
        match scope.resource_type {
            ResourceType::Repository => {
                let Ok(asked) = RepoName::parse(&scope.name) else {
                    continue;
                };
                let repository = mirrored.get(&scope.name).cloned().unwrap_or(asked);
                let namespace = repository.namespace();
                let facts = match known.get(namespace) {
                    Some(facts) => *facts,
                    None => {
                        let facts = auth
                            .store
                            .namespace_facts(namespace, user_name(principal))
                            .await
                            .map_err(store_failure)?;
                        known.insert(namespace.to_string(), facts);
                        facts
                    }
                };
                let actions =
                    granted_actions(principal, &auth.policy, facts, &repository, &scope.actions);
                if !actions.is_empty() {
                    access.push(AccessEntry::granted(scope, actions));
                }
            }
            // Management scopes (see `berth_auth::scope`), decided by the
            // same policy as the management API's own checks.
            ResourceType::Namespace => {
                if berth_auth::model::validate_account_name(&scope.name).is_err() {
                    continue;
                }
                let facts = auth
                    .store
                    .namespace_facts(&scope.name, user_name(principal))
                    .await
                    .map_err(store_failure)?;
                let actions = granted_namespace_actions(
                    principal,
                    &auth.policy,
                    facts,
                    &scope.name,
                    &scope.actions,
                );
                if !actions.is_empty() {
                    access.push(AccessEntry::granted(scope, actions));
                }
            }
            ResourceType::Registry => {
                let Some(resource) = RegistryResource::parse(&scope.name) else {
                    continue;
                };
                let actions = granted_registry_actions(principal, resource, &scope.actions);
                if !actions.is_empty() {
                    access.push(AccessEntry::granted(scope, actions));
                }
            }
            ResourceType::Other(_) => {}
        }
    }
    Ok(access)
}
