//! `/namespaces/{namespace}/members`: who may do what in a namespace.
//! Every endpoint needs `manage_members` on the namespace: its owners and
//! administrators. A namespace never loses its last owner.

use axum::response::Response;
use berth_auth::{admin, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ErrorBody, ManagementError};
use super::types::{Name, RoleSchema};
use super::{no_content, ok, Context};

/// A member's new role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberUpdate {
    #[schema(value_type = RoleSchema)]
    pub role: Role,
}

/// A user's membership.
#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub user: String,
    #[schema(value_type = RoleSchema)]
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    /// By user name.
    pub members: Vec<Member>,
}

/// List a namespace's members.
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/members",
    tag = "members",
    operation_id = "list_members",
    params(("namespace" = Name, Path, description = "The namespace")),
    responses((status = 200, description = "The members", body = MemberList))
)]
pub async fn list(ctx: &Context<'_>, namespace: &Name) -> Result<Response, ManagementError> {
    Ok(ok(all(ctx, namespace).await?))
}

/// The members of `namespace` (the web console shows the same list).
pub async fn all(ctx: &Context<'_>, namespace: &Name) -> Result<MemberList, ManagementError> {
    let members = ctx.auth.store.list_members(namespace.as_str()).await?;
    let members = members
        .into_iter()
        .map(|m| Member {
            user: m.user,
            role: m.role,
        })
        .collect();
    Ok(MemberList { members })
}

/// Add a member or change their role.
///
/// Refused (409) when it would demote the namespace's last owner.
#[utoipa::path(
    put,
    path = "/api/v1/namespaces/{namespace}/members/{user}",
    tag = "members",
    operation_id = "set_member",
    params(
        ("namespace" = Name, Path, description = "The namespace"),
        ("user" = Name, Path, description = "The user"),
    ),
    request_body = MemberUpdate,
    responses(
        (status = 200, description = "The membership", body = Member),
        (status = 409, description = "It would demote the last owner", body = ErrorBody),
    )
)]
pub async fn set(
    ctx: &Context<'_>,
    namespace: &Name,
    user: &Name,
    update: MemberUpdate,
) -> Result<Response, ManagementError> {
    admin::set_member(
        ctx.auth.store.as_ref(),
        namespace.as_str(),
        user.as_str(),
        update.role,
        &ctx.change_at(ctx.now()),
    )
    .await?;
    Ok(ok(Member {
        user: user.to_string(),
        role: update.role,
    }))
}

/// Remove a member.
///
/// Refused (409) for the namespace's last owner.
#[utoipa::path(
    delete,
    path = "/api/v1/namespaces/{namespace}/members/{user}",
    tag = "members",
    operation_id = "remove_member",
    params(
        ("namespace" = Name, Path, description = "The namespace"),
        ("user" = Name, Path, description = "The user"),
    ),
    responses(
        (status = 204, description = "The member was removed"),
        (status = 409, description = "It would remove the last owner", body = ErrorBody),
    )
)]
pub async fn remove(
    ctx: &Context<'_>,
    namespace: &Name,
    user: &Name,
) -> Result<Response, ManagementError> {
    admin::remove_member(
        ctx.auth.store.as_ref(),
        namespace.as_str(),
        user.as_str(),
        &ctx.change_at(ctx.now()),
    )
    .await?;
    Ok(no_content())
}
