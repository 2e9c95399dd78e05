//! `/users`: user accounts. Administrators only (see the permission table).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use axum::response::Response;
use berth_auth::admin;
use berth_auth::store::UserRecord;
use berth_auth::{login_with_password, LoginContext, LoginError, Principal, Secret};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::{ErrorBody, ManagementError};
use super::types::{secret, Name};
use super::{created, no_content, ok, Context};

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
    /// A disabled user cannot log in, and every credential of theirs is
    /// refused.
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<UserRecord> for User {
    fn from(user: UserRecord) -> User {
        User {
            disabled: user.is_disabled(),
            name: user.name,
            admin: user.is_admin,
            created_at: user.created_at,
        }
    }
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// Grant or withdraw administration of the whole registry.
    #[serde(default)]
    pub admin: Option<bool>,
    /// Disable (the user cannot log in, and their refresh tokens, registry
    /// tokens and the access tokens they created stop working at once) or
    /// enable the account.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// A password set by an administrator.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// At least 8 characters and at most 1024 bytes.
    #[serde(deserialize_with = "secret")]
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 1024)]
    pub password: Secret,
}

/// The caller's own password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password in use now.
    #[serde(deserialize_with = "secret")]
    #[schema(value_type = String, format = Password, max_length = 1024)]
    pub current_password: Secret,
    /// At least 8 characters and at most 1024 bytes.
    #[serde(deserialize_with = "secret")]
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 1024)]
    pub new_password: Secret,
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
    Ok(ok(all(ctx).await?))
}

/// Every user (the web console's administration page lists the same).
pub async fn all(ctx: &Context<'_>) -> Result<UserList, ManagementError> {
    let users = ctx.auth.store.list_users().await?;
    let users = users.into_iter().map(User::from).collect();
    Ok(UserList { users })
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
        disabled: false,
        created_at: now,
    }))
}

/// Change a user.
///
/// Grants or withdraws administration and disables or enables the account.
/// Administrators only. Disabling revokes the user's refresh tokens, and
/// their registry tokens and the access tokens they created are refused
/// from the next request on. The last enabled administrator can be neither
/// demoted nor disabled.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{name}",
    tag = "users",
    operation_id = "update_user",
    params(("name" = Name, Path, description = "The user")),
    request_body = UserUpdate,
    responses(
        (status = 200, description = "The user as changed", body = User),
        (status = 409, description = "The user is the last enabled administrator", body = ErrorBody),
    )
)]
pub async fn update(
    ctx: &Context<'_>,
    name: &Name,
    update: UserUpdate,
) -> Result<Response, ManagementError> {
    let store = ctx.auth.store.as_ref();
    let change = ctx.change_at(ctx.now());
    let name = name.as_str();
    if store.get_user(name).await?.is_none() {
        return Err(ManagementError::not_found(format!("no user {name}")));
    }
    if let Some(admin) = update.admin {
        admin::set_admin(store, name, admin, &change).await?;
    }
    if let Some(disabled) = update.disabled {
        admin::set_disabled(store, name, disabled, &change).await?;
    }
    let user = store
        .get_user(name)
        .await?
        .ok_or_else(|| ManagementError::not_found(format!("no user {name}")))?;
    Ok(ok(User::from(user)))
}

/// Delete a user.
///
/// Deletes a user with their memberships and refresh tokens. Administrators
/// only. Their personal namespace stays; the access tokens they created stop
/// working. The last enabled administrator cannot be deleted.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{name}",
    tag = "users",
    operation_id = "delete_user",
    params(("name" = Name, Path, description = "The user")),
    responses(
        (status = 204, description = "The user was deleted"),
        (status = 409, description = "The user is the last enabled administrator", body = ErrorBody),
    )
)]
pub async fn delete(ctx: &Context<'_>, name: &Name) -> Result<Response, ManagementError> {
    admin::delete_user(
        ctx.auth.store.as_ref(),
        name.as_str(),
        &ctx.change_at(ctx.now()),
    )
    .await?;
    Ok(no_content())
}

/// Set a user's password.
///
/// Administrators only. Every refresh token of the user is revoked, so
/// stored logins (`docker login`, `berth login`) of the old password end.
#[utoipa::path(
    put,
    path = "/api/v1/users/{name}/password",
    tag = "users",
    operation_id = "set_user_password",
    params(("name" = Name, Path, description = "The user")),
    request_body = PasswordReset,
    responses((status = 204, description = "The password was set"))
)]
pub async fn set_password(
    ctx: &Context<'_>,
    name: &Name,
    reset: PasswordReset,
) -> Result<Response, ManagementError> {
    admin::set_password(
        ctx.auth.store.as_ref(),
        name.as_str(),
        &reset.password,
        &ctx.change_at(ctx.now()),
    )
    .await?;
    Ok(no_content())
}

/// Change your password.
///
/// The logged-in user's own password, given the current one (checked like
/// a login, so wrong guesses count towards the login throttle). Every
/// refresh token of the user is revoked: log in again afterwards.
#[utoipa::path(
    put,
    path = "/api/v1/user/password",
    tag = "users",
    operation_id = "change_own_password",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "The password was changed"),
        (status = 403, description = "The current password is wrong", body = ErrorBody),
    )
)]
pub async fn change_own_password(
    ctx: &Context<'_>,
    change: PasswordChange,
) -> Result<Response, ManagementError> {
    // Only users pass the authorization step, so there is a name.
    let name = ctx
        .caller
        .user_name()
        .ok_or_else(|| ManagementError::forbidden("only users have a password"))?;
    let context = LoginContext {
        address: ctx
            .actor
            .address
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        now: ctx.now(),
        instant: Instant::now(),
    };
    let store = ctx.auth.store.as_ref();
    match login_with_password(
        store,
        &ctx.auth.login,
        name,
        &change.current_password,
        context,
    )
    .await
    {
        Ok(Principal::User { name: checked, .. }) if checked == name => {}
        Ok(_) | Err(LoginError::InvalidCredentials) => {
            return Err(ManagementError::forbidden("the current password is wrong"))
        }
        Err(other) => return Err(other.into()),
    }
    admin::set_password(store, name, &change.new_password, &ctx.change_at(ctx.now())).await?;
    Ok(no_content())
}
