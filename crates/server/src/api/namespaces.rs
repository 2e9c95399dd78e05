//! `/namespaces`: the first path component of repository names, with their
//! visibility. Everyone logged in lists what they may see; creating needs
//! the right to create that name; settings need `manage_settings`.

use axum::response::Response;
use berth_auth::store::{NamespaceReach, NamespaceRecord};
use berth_auth::{admin, NamespaceFacts, Principal, Role, Visibility};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::error::{ErrorBody, ManagementError};
use super::types::{Name, RoleSchema, VisibilitySchema};
use super::{created, ok, Context};
use berth_registry::{NamespaceUsage, RegistryError};

/// The query of a namespace deletion.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteOptions {
    /// Delete its repositories too, with everything in them (through the
    /// registry, writing their events). Without it, a namespace that holds
    /// repositories is not deleted (409).
    pub force: Option<bool>,
}

/// A namespace, deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedNamespace {
    pub name: String,
    /// The repositories deleted with it.
    pub repositories: Vec<String>,
}

/// A new namespace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNamespace {
    pub name: Name,
    /// Private unless asked otherwise: publishing must be a decision.
    #[serde(default)]
    #[schema(value_type = VisibilitySchema, default = "private")]
    pub visibility: Visibility,
}

/// A change to a namespace's settings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceUpdate {
    #[schema(value_type = VisibilitySchema)]
    pub visibility: Visibility,
}

/// A namespace as the caller sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Namespace {
    pub name: String,
    #[schema(value_type = VisibilitySchema)]
    pub visibility: Visibility,
    /// The caller's role in it, if they are a member.
    #[schema(value_type = Option<RoleSchema>)]
    pub role: Option<Role>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Repositories in it.
    pub repositories: u64,
    /// Manifests stored in its repositories.
    pub images: u64,
    /// Bytes it holds, as its storage quota counts them: the blobs and
    /// manifests of its repositories, each once.
    pub storage_bytes: u64,
    /// Manifest pulls counted in its repositories (the pull statistics,
    /// flushed every few seconds by each node).
    pub pulls: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NamespaceList {
    /// By name: those the caller may pull from (members, public ones,
    /// administrators all), within what their token grants. A page may
    /// hold fewer than `limit` and still have a next one (a token's scopes
    /// are applied to the page read).
    pub namespaces: Vec<Namespace>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Namespaces listed per page unless the caller asks otherwise (as the
/// other listings).
pub const DEFAULT_PAGE_SIZE: usize = super::repositories::DEFAULT_PAGE_SIZE;
/// The most namespaces one page lists.
pub const MAX_PAGE_SIZE: usize = super::repositories::MAX_PAGE_SIZE;

/// The query of a namespace listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NamespaceListQuery {
    /// At most this many namespaces (1 to 1000; 100 by default).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// Where to continue: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A validated namespace listing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceListing {
    pub limit: usize,
    /// The last namespace of the previous page.
    pub after: Option<String>,
}

/// What an opaque cursor holds: which listing it pages (so that another
/// listing's cursor, which has other fields, is refused) and the last
/// namespace read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorBody {
    l: String,
    a: String,
}

/// The `l` of a namespace listing's cursor.
const CURSOR_LISTING: &str = "namespaces";

fn encode_cursor(after: &str) -> String {
    let body = CursorBody {
        l: CURSOR_LISTING.to_string(),
        a: after.to_string(),
    };
    super::cursor::encode(&body)
}

impl NamespaceListing {
    /// Validates the query string of a listing.
    pub fn parse(query: Option<&str>) -> Result<NamespaceListing, ManagementError> {
        let query: NamespaceListQuery = super::parse_query(query)?;
        let limit = super::page_limit(query.limit, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = match &query.cursor {
            None => None,
            Some(cursor) => {
                let body: CursorBody = super::cursor::decode(cursor)?;
                if body.l != CURSOR_LISTING || Name::try_from(body.a.clone()).is_err() {
                    return Err(super::cursor::refused());
                }
                Some(body.a)
            }
        };
        Ok(NamespaceListing { limit, after })
    }

    /// The first page of `limit`.
    pub fn first(limit: usize) -> NamespaceListing {
        NamespaceListing { limit, after: None }
    }
}

/// The namespace as `ctx`'s caller sees it.
async fn view(ctx: &Context<'_>, record: NamespaceRecord) -> Result<Namespace, ManagementError> {
    let role = match ctx.caller.user_name() {
        Some(user) => ctx.auth.store.member_role(&record.name, user).await?,
        None => None,
    };
    with_role(ctx, record, role).await
}

/// A namespace as the API shows it, given the caller's role in it.
async fn with_role(
    ctx: &Context<'_>,
    record: NamespaceRecord,
    role: Option<Role>,
) -> Result<Namespace, ManagementError> {
    let usage = match ctx.registry.namespace_usage(&record.name).await {
        Ok(usage) => usage,
        // Deleted since it was read: it holds nothing.
        Err(RegistryError::NamespaceUnknown) => NamespaceUsage::default(),
        Err(other) => return Err(other.into()),
    };
    Ok(namespace_view(record, role, usage))
}

fn namespace_view(record: NamespaceRecord, role: Option<Role>, usage: NamespaceUsage) -> Namespace {
    Namespace {
        name: record.name,
        visibility: record.visibility,
        role,
        created_at: record.created_at,
        repositories: usage.repositories,
        images: usage.images,
        storage_bytes: usage.storage_bytes,
        pulls: usage.pulls,
    }
}

/// The namespace `name`, which the authorization step found to exist.
async fn get_record(ctx: &Context<'_>, name: &Name) -> Result<NamespaceRecord, ManagementError> {
    ctx.auth
        .store
        .get_namespace(name.as_str())
        .await?
        .ok_or_else(|| ManagementError::not_found(format!("no namespace {name}")))
}

/// List namespaces.
///
/// The namespaces the caller may pull from: those they are a member of,
/// public ones, and all of them for administrators. Robots see those their
/// scopes reach; a registry token shows only those it grants pull in.
#[utoipa::path(
    get,
    path = "/api/v1/namespaces",
    tag = "namespaces",
    operation_id = "list_namespaces",
    params(NamespaceListQuery),
    responses(
        (status = 200, description = "A page of the namespaces the caller may see", body = NamespaceList),
        (status = 400, description = "A malformed query: an unknown parameter, a limit out of range, a cursor of another listing", body = ErrorBody),
    )
)]
pub async fn list(
    ctx: &Context<'_>,
    listing: NamespaceListing,
) -> Result<Response, ManagementError> {
    Ok(ok(page(ctx, &listing).await?))
}

/// The page of namespaces `listing` asks for, of those the caller may see
/// (the web console's namespace list shows the same page), with what each
/// holds: one query for the page with the caller's roles, read through
/// indexes (administrators and robots: every namespace by name; users:
/// the public ones and theirs; anonymous: the public ones), and one for
/// the page's figures, however many namespaces there are.
pub async fn page(
    ctx: &Context<'_>,
    listing: &NamespaceListing,
) -> Result<NamespaceList, ManagementError> {
    let reach = match &ctx.caller.principal {
        // A robot's scopes name namespaces of any visibility; the page is
        // read in full and its scopes keep what they reach.
        Principal::User { is_admin: true, .. } | Principal::AccessToken { .. } => {
            NamespaceReach::All
        }
        Principal::User { name, .. } => NamespaceReach::PublicOrMemberOf(Some(name)),
        Principal::Anonymous => NamespaceReach::PublicOrMemberOf(None),
    };
    let rows = ctx
        .auth
        .store
        .namespace_page(
            reach,
            ctx.caller.user_name(),
            listing.after.as_deref(),
            listing.limit,
        )
        .await?;
    // The page is cut by what was read, so a page the token's scopes thin
    // still continues where the database left off.
    let next_cursor = (rows.len() == listing.limit)
        .then(|| rows.last())
        .flatten()
        .map(|(last, _)| encode_cursor(&last.name));
    let mut seen = Vec::with_capacity(rows.len());
    for (record, facts) in rows {
        if !ctx.caller.may_see_namespace(facts, &record.name) {
            continue;
        }
        let role = match facts {
            NamespaceFacts::Exists { member_role, .. } => member_role,
            NamespaceFacts::Missing => None,
        };
        seen.push((record, role));
    }
    let namespaces = with_usage(ctx.registry, seen).await?;
    Ok(NamespaceList {
        namespaces,
        next_cursor,
    })
}

/// A page of every namespace, for the web console with access control
/// off (everything is everyone's then): the same two queries.
pub async fn page_unfiltered(
    registry: &berth_registry::Registry,
    listing: &NamespaceListing,
) -> Result<NamespaceList, ManagementError> {
    let rows = registry
        .list_namespaces(listing.after.as_deref(), listing.limit)
        .await?;
    let next_cursor = (rows.len() == listing.limit)
        .then(|| rows.last())
        .flatten()
        .map(|last| encode_cursor(&last.name));
    let seen = rows
        .into_iter()
        .map(|row| {
            let record = NamespaceRecord {
                visibility: match row.visibility {
                    berth_registry::Visibility::Public => Visibility::Public,
                    berth_registry::Visibility::Private => Visibility::Private,
                },
                name: row.name,
                created_at: OffsetDateTime::from_unix_timestamp(row.created_at)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            };
            (record, None)
        })
        .collect();
    Ok(NamespaceList {
        namespaces: with_usage(registry, seen).await?,
        next_cursor,
    })
}

/// The namespaces as the API shows them, with their figures read in one
/// query.
async fn with_usage(
    registry: &berth_registry::Registry,
    seen: Vec<(NamespaceRecord, Option<Role>)>,
) -> Result<Vec<Namespace>, ManagementError> {
    let names: Vec<&str> = seen
        .iter()
        .map(|(record, _)| record.name.as_str())
        .collect();
    let usage: std::collections::HashMap<String, NamespaceUsage> = registry
        .namespaces_usage(&names)
        .await?
        .into_iter()
        .collect();
    Ok(seen
        .into_iter()
        .map(|(record, role)| {
            // A namespace deleted since it was read holds nothing.
            let usage = usage.get(&record.name).cloned().unwrap_or_default();
            namespace_view(record, role, usage)
        })
        .collect())
}

/// Every namespace the caller may see, unpaged, for the console's overview
/// (which adds them up): two queries for the names and the caller's facts
/// (`namespaces_with_facts`), one for every namespace's figures.
pub async fn visible(ctx: &Context<'_>) -> Result<NamespaceList, ManagementError> {
    let mut seen = Vec::new();
    for (record, facts) in ctx
        .auth
        .store
        .namespaces_with_facts(ctx.caller.user_name())
        .await?
    {
        if !ctx.caller.may_see_namespace(facts, &record.name) {
            continue;
        }
        let role = match facts {
            NamespaceFacts::Exists { member_role, .. } => member_role,
            NamespaceFacts::Missing => None,
        };
        seen.push((record, role));
    }
    let names: Vec<&str> = seen
        .iter()
        .map(|(record, _)| record.name.as_str())
        .collect();
    let usage: std::collections::HashMap<String, NamespaceUsage> = ctx
        .registry
        .namespaces_usage(&names)
        .await?
        .into_iter()
        .collect();
    let namespaces = seen
        .into_iter()
        .map(|(record, role)| {
            // A namespace deleted since it was read holds nothing.
            let usage = usage.get(&record.name).cloned().unwrap_or_default();
            namespace_view(record, role, usage)
        })
        .collect();
    Ok(NamespaceList {
        namespaces,
        next_cursor: None,
    })
}

/// Create a namespace.
///
/// Administrators create any namespace (and own it only if they add
/// themselves); users create their personal namespace, and others when the
/// server allows it (`users_may_create_namespaces`), becoming its owner.
#[utoipa::path(
    post,
    path = "/api/v1/namespaces",
    tag = "namespaces",
    operation_id = "create_namespace",
    request_body = NewNamespace,
    responses(
        (status = 201, description = "The namespace was created", body = Namespace),
        (status = 409, description = "The namespace exists", body = ErrorBody),
    )
)]
pub async fn create(ctx: &Context<'_>, new: NewNamespace) -> Result<Response, ManagementError> {
    // Administrators create namespaces for others; they become owners only
    // when they add themselves.
    let owner = if ctx.caller.is_admin() {
        None
    } else {
        ctx.caller.user_name()
    };
    let now = ctx.now();
    admin::create_namespace(
        ctx.auth.store.as_ref(),
        new.name.as_str(),
        new.visibility,
        owner,
        &ctx.change_at(now),
    )
    .await?;
    Ok(created(Namespace {
        name: new.name.into(),
        visibility: new.visibility,
        role: owner.map(|_| Role::Owner),
        created_at: now,
        repositories: 0,
        images: 0,
        storage_bytes: 0,
        pulls: 0,
    }))
}

/// Get a namespace.
///
/// For those who may see it (see List namespaces).
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}",
    tag = "namespaces",
    operation_id = "get_namespace",
    params(("namespace" = Name, Path, description = "The namespace")),
    responses((status = 200, description = "The namespace", body = Namespace))
)]
pub async fn get(ctx: &Context<'_>, name: &Name) -> Result<Response, ManagementError> {
    Ok(ok(one(ctx, name).await?))
}

/// The namespace `name`, which the authorization step let the caller see.
pub async fn one(ctx: &Context<'_>, name: &Name) -> Result<Namespace, ManagementError> {
    let record = get_record(ctx, name).await?;
    view(ctx, record).await
}

/// Change a namespace's settings.
///
/// Needs `manage_settings` on it: owners and administrators.
#[utoipa::path(
    patch,
    path = "/api/v1/namespaces/{namespace}",
    tag = "namespaces",
    operation_id = "update_namespace",
    params(("namespace" = Name, Path, description = "The namespace")),
    request_body = NamespaceUpdate,
    responses((status = 200, description = "The namespace, changed", body = Namespace))
)]
pub async fn update(
    ctx: &Context<'_>,
    name: &Name,
    update: NamespaceUpdate,
) -> Result<Response, ManagementError> {
    match ctx
        .auth
        .store
        .set_visibility(&ctx.change_at(ctx.now()), name.as_str(), update.visibility)
        .await
    {
        Err(berth_auth::AuthStoreError::NotFound) => {
            return Err(ManagementError::not_found(format!("no namespace {name}")))
        }
        other => other?,
    }
    let record = get_record(ctx, name).await?;
    Ok(ok(view(ctx, record).await?))
}

/// Delete a namespace.
///
/// Refused (409) while it holds repositories, unless `force=true`, which
/// deletes them first through the registry (their manifests, tags and
/// links, with their events); blobs nothing else references are left to
/// garbage collection. Needs `manage_settings`: owners and administrators.
#[utoipa::path(
    delete,
    path = "/api/v1/namespaces/{namespace}",
    tag = "namespaces",
    operation_id = "delete_namespace",
    params(("namespace" = Name, Path, description = "The namespace"), DeleteOptions),
    responses(
        (status = 200, description = "The namespace was deleted", body = DeletedNamespace),
        (status = 409, description = "The namespace holds repositories", body = ErrorBody),
    )
)]
pub async fn delete(
    ctx: &Context<'_>,
    name: &Name,
    force: bool,
) -> Result<Response, ManagementError> {
    let deletion = match ctx
        .registry
        .delete_namespace(&ctx.actor, name.as_str(), force)
        .await
    {
        Err(RegistryError::NamespaceUnknown) => {
            return Err(ManagementError::not_found(format!("no namespace {name}")))
        }
        Err(RegistryError::NamespaceNotEmpty) => {
            return Err(ManagementError::new(
                super::error::ErrorCode::Conflict,
                format!(
                    "namespace {name} holds repositories: delete them first, \
                     or pass force=true to delete them with it"
                ),
            ))
        }
        other => other?,
    };
    Ok(ok(DeletedNamespace {
        name: name.as_str().to_string(),
        repositories: deletion
            .repositories
            .iter()
            .map(|r| r.as_str().to_string())
            .collect(),
    }))
}
