//! The console's settings and account pages: the effective configuration
//! and the run-time settings for administrators (`/admin/settings`), and a
//! user's sessions (`/account`, "sign out everywhere", and the same for
//! administrators on a user's row).

use axum::http::header;
use maud::html;
use time::OffsetDateTime;

use super::html::{csrf_field, size};
use super::see_other;
use super::session;
use super::views::{Ctx, Failure, PageResult};
use super::vulnerabilities::exemptions_path;
use crate::api::error::ManagementError;
use crate::api::types::Name;
use axum::http::StatusCode;

/// The most namespaces the settings page lists with their pull policy.
const MAX_NAMESPACES: usize = 1000;

/// `GET /admin/settings`: the registry-wide quota defaults, every
/// namespace's vulnerability pull policy (changed on the namespace's
/// vulnerability page), and the effective configuration as `berth config
/// check` prints it (secrets shown as `***`).
pub(super) async fn settings(ctx: &Ctx<'_>) -> PageResult {
    let registry = &ctx.state.registry;
    let config = registry.config();
    let namespaces = registry
        .list_namespaces(None, MAX_NAMESPACES)
        .await
        .map_err(ManagementError::from)?;
    let policies = registry
        .vulnerability_policies()
        .await
        .map_err(ManagementError::from)?;
    let limit = |limit: Option<u64>| limit.map_or("unlimited".to_string(), size);
    let body = html! {
        h1 { "Settings" }
        h2 { "Quotas" }
        dl class="facts" {
            dt { "Default storage per namespace" } dd { (limit(config.default_storage_limit)) }
            dt { "Default pull traffic per namespace and month" } dd { (limit(config.default_traffic_limit)) }
        }
        p class="muted" {
            "The defaults are in the configuration (" code { "quota.default_storage" } ", " code { "quota.default_traffic" }
            "; a restart applies a change). A namespace's own limits are set at run time on its "
            strong { "Quotas, retention and immutable tags" } " page."
        }
        h2 { "Vulnerability pull policies" }
        p class="muted" { "Per namespace, changed at run time on the namespace's vulnerability page (" code { "berth va policy set" } "). Namespaces without one are off." }
        @if namespaces.is_empty() {
            p class="muted" { "No namespaces yet." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Namespace" } th scope="col" { "Mode" }
                        th scope="col" { "Lowest severity" } th scope="col" class="hide-narrow" { "Not yet scanned" }
                    } }
                    tbody {
                        @for namespace in &namespaces {
                            @let policy = policies.iter().find(|p| p.namespace == namespace.name);
                            tr {
                                td { a href=(format!("{}#policy", exemptions_path(&namespace.name))) { (namespace.name) } }
                                td { (policy.map_or("off", |p| p.mode.as_str())) }
                                td { (policy.map_or("—", |p| p.severity.as_str())) }
                                td class="hide-narrow" { @if policy.is_some_and(|p| p.block_unscanned) { "refused too" } @else { "allowed" } }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Effective configuration" }
        @if ctx.state.configuration_listing.is_empty() {
            p class="muted" { "This server was started without a configuration listing." }
        } @else {
            p class="muted" { "As " code { "berth config check" } " prints it: each key, its value and where the value came from. Secrets are shown as " code { "***" } "." }
            pre id="configuration" aria-label="Effective configuration" { code { (ctx.state.configuration_listing.as_str()) } }
        }
    };
    ctx.page("Settings", body)
}

/// `GET /account`: who is signed in, and "sign out everywhere".
pub(super) fn account(ctx: &Ctx<'_>) -> PageResult {
    let Some(session) = &ctx.session else {
        return Ok(see_other("/sign-in?next=%2Faccount"));
    };
    let admin = ctx.caller.as_ref().is_some_and(|c| c.is_admin());
    let body = html! {
        h1 { "Your account" }
        dl class="facts" {
            dt { "User" } dd { (session.user) }
            dt { "Role" } dd { @if admin { "administrator" } @else { "user" } }
        }
        p { a href="/tokens" { "Your access tokens" } }
        h2 { "Sessions" }
        p { "Signing out everywhere ends every console session of yours, on every browser and every node, this one included. Your password and access tokens keep working." }
        form method="post" action="/account/sign-out-everywhere" {
            (csrf_field(Some(session)))
            button class="danger" type="submit" { "Sign out everywhere" }
        }
    };
    ctx.page("Your account", body)
}

/// `POST /account/sign-out-everywhere`: every session of the caller ends,
/// and the browser forgets this one's cookie.
pub(super) async fn sign_out_everywhere(ctx: &Ctx<'_>) -> PageResult {
    let (Some(auth), Some(session)) = (ctx.auth, &ctx.session) else {
        return Ok(see_other("/"));
    };
    auth.store
        .revoke_sessions_of_user(&session.user, OffsetDateTime::now_utc())
        .await
        .map_err(ManagementError::from)?;
    let mut response = see_other("/sign-in");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::removal(auth, ctx.parts));
    Ok(response)
}

/// `POST /admin/users/{name}/sign-out`: every session of the user ends
/// (their password and tokens keep working; disabling stops those).
pub(super) async fn sign_user_out(ctx: &Ctx<'_>, name: &Name) -> PageResult {
    let Some(auth) = ctx.auth else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "Access control is off.",
        ));
    };
    if auth
        .store
        .get_user(name.as_str())
        .await
        .map_err(ManagementError::from)?
        .is_none()
    {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("There is no user {name}."),
        ));
    }
    auth.store
        .revoke_sessions_of_user(name.as_str(), OffsetDateTime::now_utc())
        .await
        .map_err(ManagementError::from)?;
    Ok(see_other(&format!("/admin/users?signed-out={name}")))
}
