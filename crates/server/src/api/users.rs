//! `/users`: user accounts. Administrators only (see the permission table).

use axum::response::Response;
use berth_auth::admin;
use berth_auth::Secret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::{ErrorBody, ManagementError};
use super::types::{secret, Name};
use super::{created, ok, Context};

/// A new user. Their personal namespace, named after them, is created with
/// them, private, with them as its owner.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: Name,
    /// At least 8 characters and at most 1024 bytes.
    #[serde(deserialize_with = "secret")]
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 1024)]
    pub password: Secret,
    /// Whether the user administers the whole registry.
    #[serde(default)]
    pub admin: bool,
}

/// A user account.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub name: String,
    pub admin: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// By name.
    pub users: Vec<User>,
}

/// List users.
///
/// Every user account, by name. Administrators only.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    operation_id = "list_users",
    responses((status = 200, description = "The users", body = UserList))
)]
pub async fn list(ctx: &Context<'_>) -> Result<Response, ManagementError> {
    let users = ctx.auth.store.list_users().await?;
    let users = users
        .into_iter()
        .map(|user| User {
            name: user.name,
            admin: user.is_admin,
            created_at: user.created_at,
        })
        .collect();
    Ok(ok(UserList { users }))
}

/// Create a user.
///
/// Creates a user and their personal namespace. Administrators only. The
/// name must not be taken by a user, a namespace or an access token.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    operation_id = "create_user",
    request_body = NewUser,
    responses(
        (status = 201, description = "The user was created", body = User),
        (status = 409, description = "The name is taken by a user, namespace or access token", body = ErrorBody),
    )
)]
pub async fn create(ctx: &Context<'_>, new: NewUser) -> Result<Response, ManagementError> {
    let now = ctx.now();
    admin::create_user(
        ctx.auth.store.as_ref(),
        new.name.as_str(),
        &new.password,
        new.admin,
        &ctx.change_at(now),
    )
    .await?;
    Ok(created(User {
        name: new.name.into(),
        admin: new.admin,
        created_at: now,
    }))
}
