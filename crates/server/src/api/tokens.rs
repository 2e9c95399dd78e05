//! `/tokens`: access (robot) tokens for pipelines and clusters. People
//! create them within what they may grant (owners, for their namespaces;
//! administrators, anything) and list and revoke their own; administrators
//! see and revoke all. Robots never manage tokens.

use axum::response::Response;
use berth_auth::admin;
use berth_auth::store::AccessTokenRecord;
use berth_auth::Expiry;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::{ErrorBody, ManagementError};
use super::types::{ExpiryParam, Name, ScopeParam};
use super::{created, no_content, ok, Context};

/// The most scopes one token may carry; enough for any real token, and a
/// bound on the work one request causes.
pub const MAX_SCOPES: usize = 100;

/// A new access token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Its login name (`docker login -u NAME`); not taken by a user or
    /// another token.
    pub name: Name,
    #[schema(min_items = 1, max_items = 100)]
    pub scopes: Vec<ScopeParam>,
    /// How long it lives; `never` when absent.
    #[serde(default)]
    pub expires: Option<ExpiryParam>,
}

/// An access token; its secret is shown only once, when it is created.
#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    pub name: String,
    pub scopes: Vec<String>,
    /// The user who created it.
    pub created_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was last used, roughly (uses are recorded coarsely).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<AccessTokenRecord> for Token {
    fn from(record: AccessTokenRecord) -> Token {
        Token {
            name: record.name,
            scopes: record.scopes.iter().map(ToString::to_string).collect(),
            created_by: record.created_by,
            created_at: record.created_at,
            expires_at: record.expires_at,
            last_used_at: record.last_used_at,
            revoked_at: record.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// By name, revoked ones included.
    pub tokens: Vec<Token>,
}

/// A token just created, with its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub name: String,
    /// The secret, the password of `docker login -u NAME`. Shown this once.
    pub token: String,
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

/// List access tokens.
///
/// The caller's own tokens; every token for administrators.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    operation_id = "list_tokens",
    responses((status = 200, description = "The tokens", body = TokenList))
)]
pub async fn list(ctx: &Context<'_>) -> Result<Response, ManagementError> {
    Ok(ok(visible(ctx).await?))
}

/// The tokens the caller may see (the web console lists the same).
pub async fn visible(ctx: &Context<'_>) -> Result<TokenList, ManagementError> {
    let tokens = ctx.auth.store.list_access_tokens().await?;
    let tokens = tokens
        .into_iter()
        .filter(|token| ctx.caller.may_see_token(token))
        .map(Token::from)
        .collect();
    Ok(TokenList { tokens })
}

/// List a namespace's access tokens.
///
/// Every token with a scope in the namespace, whoever created it, revoked
/// ones included: its owners (and administrators) see the robots that
/// reach it, their co-owners' too.
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/tokens",
    tag = "tokens",
    operation_id = "list_namespace_tokens",
    params(("namespace" = Name, Path, description = "The namespace")),
    responses((status = 200, description = "The tokens", body = TokenList))
)]
pub async fn list_in_namespace(
    ctx: &Context<'_>,
    namespace: &Name,
) -> Result<Response, ManagementError> {
    let tokens = ctx.auth.store.list_access_tokens().await?;
    let tokens = tokens
        .into_iter()
        .filter(|token| {
            token
                .scopes
                .iter()
                .any(|scope| scope.namespace() == namespace.as_str())
        })
        .map(Token::from)
        .collect();
    Ok(ok(TokenList { tokens }))
}

/// Create an access token.
///
/// Every scope must be one the caller may grant: owners for their
/// namespaces, administrators for any. The answer holds the secret, once.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    operation_id = "create_token",
    request_body = NewToken,
    responses(
        (status = 201, description = "The token, with its secret", body = CreatedToken),
        (status = 409, description = "The name is taken by a user or another token", body = ErrorBody),
    )
)]
pub async fn create(ctx: &Context<'_>, new: NewToken) -> Result<Response, ManagementError> {
    Ok(created(issue(ctx, new).await?))
}

/// Creates the token `new` asks for; the answer holds its secret, once
/// (the web console shows it on the page that answers the form).
pub async fn issue(ctx: &Context<'_>, new: NewToken) -> Result<CreatedToken, ManagementError> {
    let scopes: Vec<_> = new.scopes.into_iter().map(|scope| scope.0).collect();
    let rendered = scopes.iter().map(ToString::to_string).collect();
    let expiry = new.expires.map_or(Expiry::Never, |e| e.0);
    let now = ctx.now();
    let secret = admin::create_access_token(
        ctx.auth.store.as_ref(),
        new.name.as_str(),
        scopes,
        expiry,
        ctx.caller.user_name(),
        ctx.auth.policy.max_token_lifetime,
        &ctx.change_at(now),
    )
    .await?;
    // The secret is in this one answer and nowhere else.
    Ok(CreatedToken {
        name: new.name.into(),
        token: secret.expose().to_string(),
        scopes: rendered,
        expires_at: expiry.expires_at(now),
    })
}

/// Revoke an access token.
///
/// It stops working at once. Its creator and administrators may.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{name}",
    tag = "tokens",
    operation_id = "revoke_token",
    params(("name" = Name, Path, description = "The token's name")),
    responses((status = 204, description = "The token was revoked"))
)]
pub async fn revoke(ctx: &Context<'_>, name: &Name) -> Result<Response, ManagementError> {
    match ctx
        .auth
        .store
        .revoke_access_token(&ctx.change_at(ctx.now()), name.as_str())
        .await
    {
        Err(berth_auth::AuthStoreError::NotFound) => Err(ManagementError::not_found(format!(
            "no access token {name}"
        ))),
        other => {
            other?;
            Ok(no_content())
        }
    }
}
