//! The JSON management API under `/api/v1`, for administrators and namespace
//! owners: users, namespaces (visibility), members and access tokens.
//!
//! Callers authenticate like on `/v2/` (Basic with a user's password, or a
//! registry bearer token); robots (access tokens) are refused, because their
//! rights are registry actions only. Who may do what is the policy's:
//! `ManageSettings` for visibility, `ManageMembers` for members, and
//! `may_grant_token_scope` for every scope of a new token.
//!
//! | method | path | who |
//! |---|---|---|
//! | GET, POST | `/users` | administrators |
//! | GET, POST | `/namespaces` | users (listing shows what they may pull from) |
//! | PATCH | `/namespaces/{ns}` `{"visibility"}` | owners |
//! | GET | `/namespaces/{ns}/members` | owners |
//! | PUT, DELETE | `/namespaces/{ns}/members/{user}` `{"role"}` | owners |
//! | GET, POST | `/tokens` | users (their own tokens; administrators all) |
//! | DELETE | `/tokens/{name}` | the creator, administrators |

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, put};
use axum::{Json, Router};
use berth_auth::admin::{self, AdminError};
use berth_auth::policy::{authorize_namespace, may_create_namespace, may_grant_token_scope};
use berth_auth::{Action, Expiry, Principal, Role, Secret, TokenScope, Visibility};
use berth_oci::ErrorCode;
use serde::Deserialize;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::access::{authenticate, store_failure, user_name, AuthState};
use crate::error::ApiError;
use crate::AppState;

type ApiResult = Result<Response, ApiError>;

/// The management routes, nested under `/api/v1` by [`crate::app`].
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/namespaces", get(list_namespaces).post(create_namespace))
        .route("/namespaces/{namespace}", patch(update_namespace))
        .route("/namespaces/{namespace}/members", get(list_members))
        .route(
            "/namespaces/{namespace}/members/{user}",
            put(set_member).delete(remove_member),
        )
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{name}", delete(revoke_token))
}

/// The calling user, or the refusal to answer with.
async fn user(state: &AppState, request: Request) -> Result<(Arc<AuthState>, Principal), ApiError> {
    let auth = state.auth.clone().ok_or_else(ApiError::not_found)?;
    let (parts, _body) = request.into_parts();
    let caller = authenticate(&auth, &parts).await?;
    match caller.principal {
        Principal::Anonymous => {
            Err(auth.unauthorized(&parts.headers, None, None, "authentication required"))
        }
        Principal::AccessToken { .. } => Err(forbidden()),
        user @ Principal::User { .. } => Ok((auth, user)),
    }
}

fn forbidden() -> ApiError {
    ApiError::new(
        ErrorCode::Denied,
        "requested access to the resource is denied",
    )
}

/// The change `principal` makes now through the API.
fn change_by(principal: &Principal) -> berth_auth::Change {
    berth_auth::change_at(&principal.actor(None), OffsetDateTime::now_utc())
}

fn is_admin(principal: &Principal) -> bool {
    matches!(principal, Principal::User { is_admin: true, .. })
}

fn admin_error(error: AdminError) -> ApiError {
    match error {
        AdminError::Invalid(e) => ApiError::bad_request(ErrorCode::Unsupported, e.to_string()),
        AdminError::AlreadyExists(what) => {
            ApiError::new(ErrorCode::Unsupported, format!("{what} already exists"))
                .with_status(StatusCode::CONFLICT)
        }
        AdminError::NotFound(what) => {
            ApiError::new(ErrorCode::NameUnknown, format!("{what} not found"))
        }
        AdminError::Store(e) => store_failure(e),
    }
}

fn time_text(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

fn parse_body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(ErrorCode::Unsupported, format!("invalid JSON: {e}")))
}

async fn split_body(request: Request) -> Result<(Request, bytes::Bytes), ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| ApiError::bad_request(ErrorCode::Unsupported, "body too large"))?;
    Ok((Request::from_parts(parts, axum::body::Body::empty()), bytes))
}

/// Checks a namespace-wide action on `namespace` for `principal`.
async fn check_namespace(
    auth: &AuthState,
    principal: &Principal,
    namespace: &str,
    action: Action,
) -> Result<(), ApiError> {
    let facts = auth.facts(principal, namespace).await?;
    if authorize_namespace(principal, &auth.policy, facts, namespace, action).is_allowed()
        && facts != berth_auth::NamespaceFacts::Missing
    {
        Ok(())
    } else if facts == berth_auth::NamespaceFacts::Missing && is_admin(principal) {
        Err(ApiError::new(ErrorCode::NameUnknown, "no such namespace"))
    } else {
        Err(forbidden())
    }
}

// --- users ---

async fn list_users(State(state): State<AppState>, request: Request) -> ApiResult {
    let (auth, principal) = user(&state, request).await?;
    if !is_admin(&principal) {
        return Err(forbidden());
    }
    let users = auth.store.list_users().await.map_err(store_failure)?;
    let users: Vec<_> = users
        .into_iter()
        .map(
            |u| json!({"name": u.name, "admin": u.is_admin, "created_at": time_text(u.created_at)}),
        )
        .collect();
    Ok(Json(json!({ "users": users })).into_response())
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

async fn create_user(State(state): State<AppState>, request: Request) -> ApiResult {
    let (request, body) = split_body(request).await?;
    let (auth, principal) = user(&state, request).await?;
    if !is_admin(&principal) {
        return Err(forbidden());
    }
    let new: NewUser = parse_body(&body)?;
    admin::create_user(
        auth.store.as_ref(),
        &new.name,
        &Secret::new(new.password),
        new.admin,
        &change_by(&principal),
    )
    .await
    .map_err(admin_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": new.name, "admin": new.admin})),
    )
        .into_response())
}

// --- namespaces ---

async fn list_namespaces(State(state): State<AppState>, request: Request) -> ApiResult {
    let (auth, principal) = user(&state, request).await?;
    let mut visible = Vec::new();
    for namespace in auth.store.list_namespaces().await.map_err(store_failure)? {
        let role = match user_name(&principal) {
            Some(name) => auth
                .store
                .member_role(&namespace.name, name)
                .await
                .map_err(store_failure)?,
            None => None,
        };
        if is_admin(&principal) || role.is_some() || namespace.visibility == Visibility::Public {
            visible.push(json!({
                "name": namespace.name,
                "visibility": namespace.visibility,
                "role": role,
                "created_at": time_text(namespace.created_at),
            }));
        }
    }
    Ok(Json(json!({ "namespaces": visible })).into_response())
}

#[derive(Deserialize)]
struct NewNamespace {
    name: String,
    #[serde(default)]
    visibility: Visibility,
}

async fn create_namespace(State(state): State<AppState>, request: Request) -> ApiResult {
    let (request, body) = split_body(request).await?;
    let (auth, principal) = user(&state, request).await?;
    let new: NewNamespace = parse_body(&body)?;
    if !may_create_namespace(&principal, &auth.policy, &new.name) {
        return Err(forbidden());
    }
    // Administrators create namespaces for others; they become owners only
    // when they add themselves.
    let owner = if is_admin(&principal) {
        None
    } else {
        user_name(&principal)
    };
    admin::create_namespace(
        auth.store.as_ref(),
        &new.name,
        new.visibility,
        owner,
        &change_by(&principal),
    )
    .await
    .map_err(admin_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": new.name, "visibility": new.visibility})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct NamespaceUpdate {
    visibility: Visibility,
}

async fn update_namespace(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    request: Request,
) -> ApiResult {
    let (request, body) = split_body(request).await?;
    let (auth, principal) = user(&state, request).await?;
    check_namespace(&auth, &principal, &namespace, Action::ManageSettings).await?;
    let update: NamespaceUpdate = parse_body(&body)?;
    auth.store
        .set_visibility(&change_by(&principal), &namespace, update.visibility)
        .await
        .map_err(store_failure)?;
    Ok(Json(json!({"name": namespace, "visibility": update.visibility})).into_response())
}

// --- members ---

async fn list_members(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    request: Request,
) -> ApiResult {
    let (auth, principal) = user(&state, request).await?;
    check_namespace(&auth, &principal, &namespace, Action::ManageMembers).await?;
    let members = auth
        .store
        .list_members(&namespace)
        .await
        .map_err(store_failure)?;
    let members: Vec<_> = members
        .into_iter()
        .map(|m| json!({"user": m.user, "role": m.role}))
        .collect();
    Ok(Json(json!({ "members": members })).into_response())
}

#[derive(Deserialize)]
struct MemberUpdate {
    role: Role,
}

async fn set_member(
    State(state): State<AppState>,
    Path((namespace, member)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let (request, body) = split_body(request).await?;
    let (auth, principal) = user(&state, request).await?;
    check_namespace(&auth, &principal, &namespace, Action::ManageMembers).await?;
    let update: MemberUpdate = parse_body(&body)?;
    admin::set_member(
        auth.store.as_ref(),
        &namespace,
        &member,
        update.role,
        &change_by(&principal),
    )
    .await
    .map_err(admin_error)?;
    Ok(Json(json!({"user": member, "role": update.role})).into_response())
}

async fn remove_member(
    State(state): State<AppState>,
    Path((namespace, member)): Path<(String, String)>,
    request: Request,
) -> ApiResult {
    let (auth, principal) = user(&state, request).await?;
    check_namespace(&auth, &principal, &namespace, Action::ManageMembers).await?;
    match auth
        .store
        .remove_member(&change_by(&principal), &namespace, &member)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(berth_auth::AuthStoreError::NotFound) => {
            Err(ApiError::new(ErrorCode::NameUnknown, "no such member"))
        }
        Err(e) => Err(store_failure(e)),
    }
}

// --- tokens ---

async fn list_tokens(State(state): State<AppState>, request: Request) -> ApiResult {
    let (auth, principal) = user(&state, request).await?;
    let tokens = auth
        .store
        .list_access_tokens()
        .await
        .map_err(store_failure)?;
    let tokens: Vec<_> = tokens
        .into_iter()
        .filter(|t| is_admin(&principal) || t.created_by.as_deref() == user_name(&principal))
        .map(|t| {
            json!({
                "name": t.name,
                "scopes": t.scopes.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "created_by": t.created_by,
                "created_at": time_text(t.created_at),
                "expires_at": t.expires_at.map(time_text),
                "last_used_at": t.last_used_at.map(time_text),
                "revoked_at": t.revoked_at.map(time_text),
            })
        })
        .collect();
    Ok(Json(json!({ "tokens": tokens })).into_response())
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
    scopes: Vec<String>,
    /// `30d`, `12h`, `never`; default `never`.
    expires: Option<String>,
}

async fn create_token(State(state): State<AppState>, request: Request) -> ApiResult {
    let (request, body) = split_body(request).await?;
    let (auth, principal) = user(&state, request).await?;
    let new: NewToken = parse_body(&body)?;
    let bad =
        |e: berth_auth::AuthError| ApiError::bad_request(ErrorCode::Unsupported, e.to_string());
    let scopes = new
        .scopes
        .iter()
        .map(|s| TokenScope::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    for scope in &scopes {
        let facts = auth.facts(&principal, scope.namespace()).await?;
        if !may_grant_token_scope(&principal, facts, scope) {
            return Err(forbidden());
        }
    }
    let expiry = Expiry::parse(new.expires.as_deref().unwrap_or("never")).map_err(bad)?;
    let secret = admin::create_access_token(
        auth.store.as_ref(),
        &new.name,
        scopes,
        expiry,
        user_name(&principal),
        &change_by(&principal),
    )
    .await
    .map_err(admin_error)?;
    // The secret is in this one answer and nowhere else.
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": new.name, "token": secret.expose()})),
    )
        .into_response())
}

async fn revoke_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult {
    let (auth, principal) = user(&state, request).await?;
    let token = auth
        .store
        .get_access_token(&name)
        .await
        .map_err(store_failure)?
        .ok_or_else(|| ApiError::new(ErrorCode::NameUnknown, "no such token"))?;
    if !is_admin(&principal) && token.created_by.as_deref() != user_name(&principal) {
        return Err(forbidden());
    }
    auth.store
        .revoke_access_token(&change_by(&principal), &name)
        .await
        .map_err(store_failure)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
