//! The console's request handling and its pages: one function per page,
//! each reading through the domain services the management API uses and
//! rendering the API's own view types.

use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use berth_auth::{Action, LoginError, Principal, Secret};
use berth_oci::{Reference, RepoName, Tag};
use maud::{html, Markup};

use super::html::{self, bar_chart, copyable, csrf_field, daily_chart, layout, size, when, Chrome};
use super::lifecycle;
use super::page::{self, Form, NoPage, Page, REPOSITORY_END};
use super::session::{self, Session};
use super::settings;
use super::vulnerabilities;
use super::{html_response, is_write, replication, see_other};
use crate::access::{actor_of, origin_of, AuthState, Caller};
use crate::api::error::ManagementError;
use crate::api::images::{ImageDetailsView, ImageListing, ImageSummaryView, PlatformView};
use crate::api::namespaces::Namespace;
use crate::api::namespaces::NamespaceListing;
use crate::api::permission::{authorize_policy, Authorized, Permission};
use crate::api::repositories::{RepositoryListing, RepositoryView};
use crate::api::tokens::{CreatedToken, NewToken};
use crate::api::types::Name;
use crate::api::{self, Context};
use crate::AppState;

/// The largest form body read: every console form is a few fields.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The most namespaces the overview and the namespace list show; far more
/// than a registry's people browse, and a bound on a page's work.
const MAX_NAMESPACES: usize = 1000;

/// Repositories per page of a namespace, and images per page of a
/// repository.
const PAGE_SIZE: &str = "50";

/// What a page's handler works with: the request, who is asking (after the
/// authorization step), and their session.
pub(super) struct Ctx<'a> {
    pub(super) state: &'a AppState,
    pub(super) parts: &'a Parts,
    /// Access control, when it is on.
    pub(super) auth: Option<&'a AuthState>,
    /// What the authorization step returned (with access control on).
    pub(super) caller: Option<Authorized>,
    pub(super) session: Option<Session>,
}

/// An error as the console shows it: a status and a sentence.
pub(super) struct Failure {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl From<ManagementError> for Failure {
    fn from(error: ManagementError) -> Failure {
        Failure {
            status: error.status(),
            message: error.message().to_string(),
        }
    }
}

impl Failure {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

pub(super) type PageResult = Result<Response, Failure>;

impl<'a> Ctx<'a> {
    pub(super) fn chrome(&self) -> Chrome<'_> {
        Chrome {
            session: self.session.as_ref(),
            access_control: self.auth.is_some(),
            admin: self.session.is_some() && self.caller.as_ref().is_some_and(|c| c.is_admin()),
            path: self.parts.uri.path(),
        }
    }

    /// A 200 page.
    pub(super) fn page(&self, title: &str, body: Markup) -> PageResult {
        Ok(html_response(
            StatusCode::OK,
            layout(&self.chrome(), title, body),
        ))
    }

    /// The management API's handler context, with access control on.
    pub(super) fn api(&self) -> Option<Context<'_>> {
        let auth = self.auth?;
        let caller = self.caller.as_ref()?;
        Some(Context {
            auth,
            registry: &self.state.registry,
            caller,
            actor: actor_of(&caller.principal, self.parts),
            outbound: &self.state.outbound,
            replicator: self.state.replicator.as_deref(),
            advisory_sync: self.state.advisory_sync.as_deref(),
        })
    }

    /// Whether the caller would be allowed `permission` (to show or hide
    /// a form), decided by the same authorization step as a request.
    pub(super) async fn may(&self, permission: Permission) -> bool {
        match (self.auth, &self.caller) {
            (None, _) => true,
            (Some(auth), Some(caller)) => authorize_policy(
                auth,
                caller_of(caller.principal.clone()),
                &permission,
                self.parts,
            )
            .await
            .is_ok(),
            (Some(_), None) => false,
        }
    }

    /// The actor of the changes the caller makes.
    pub(super) fn actor(&self) -> berth_auth::Actor {
        let principal = self
            .caller
            .as_ref()
            .map_or(Principal::Anonymous, |c| c.principal.clone());
        actor_of(&principal, self.parts)
    }

    /// The host clients pull from, as the browser reached the console.
    pub(super) fn registry_host(&self) -> String {
        origin_of(self.parts)
            .host
            .unwrap_or_else(|| "localhost:5000".to_string())
    }
}

fn caller_of(principal: Principal) -> Caller {
    Caller {
        principal,
        bearer: None,
        presented_credentials: true,
    }
}

/// Handles one console request, errors included, as an HTML answer.
pub async fn handle(state: &AppState, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // The assets need nobody's session: no database read for them.
    if let Some(asset) = super::assets::find(parts.uri.path()) {
        if parts.method == Method::GET || parts.method == Method::HEAD {
            return asset.response();
        }
    }
    let auth = state.auth.as_deref();
    let mut ctx = Ctx {
        state,
        parts: &parts,
        auth,
        caller: None,
        session: None,
    };
    let principal = match auth {
        None => Principal::Anonymous,
        Some(auth) => match session::resume(auth, &parts).await {
            Ok(Some((session, principal))) => {
                ctx.session = Some(session);
                principal
            }
            Ok(None) => Principal::Anonymous,
            Err(error) => return failure_page(&ctx, error.into()),
        },
    };
    let form = if is_write(&parts.method) {
        match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(bytes) => match Form::parse(&bytes) {
                Ok(form) => Some(form),
                Err(refusal) => return no_page(&ctx, refusal),
            },
            Err(_) => {
                return failure_page(
                    &ctx,
                    Failure::new(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."),
                )
            }
        }
    } else {
        None
    };
    let page = match Page::parse(
        &parts.method,
        parts.uri.path(),
        form.as_ref().unwrap_or(&Form::default()),
    ) {
        Ok(page) => page,
        Err(refusal) => return no_page(&ctx, refusal),
    };
    if let Err(failure) = check_form(&ctx, &page, form.as_ref()) {
        return failure_page(&ctx, failure);
    }
    match auth {
        Some(auth) => {
            let anonymous = principal == Principal::Anonymous;
            match authorize_policy(auth, caller_of(principal), &page::required(&page), &parts).await
            {
                Ok(caller) => ctx.caller = Some(caller),
                Err(refusal)
                    if anonymous
                        && matches!(
                            refusal.status(),
                            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                        ) =>
                {
                    // Perhaps they may once signed in: ask them to.
                    let back = parts
                        .uri
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_string();
                    return see_other(&html::sign_in_link(&back));
                }
                Err(refusal) => return failure_page(&ctx, refusal.into()),
            }
        }
        None if needs_access_control(&page) => {
            return failure_page(
                &ctx,
                Failure::new(
                    StatusCode::NOT_FOUND,
                    "Access control is off on this registry, so there is nothing to sign in \
                     to and no tokens to manage: everything is open to everyone. Start it \
                     with berth serve --auth to use accounts.",
                ),
            )
        }
        None => {}
    }
    let form = form.unwrap_or_default();
    let result = match page {
        Page::Asset(asset) => Ok(asset.response()),
        Page::Overview => overview(&ctx).await,
        Page::Namespaces => namespaces(&ctx).await,
        Page::Namespace(name) => namespace(&ctx, &name).await,
        Page::Repository(repository) => repository_page(&ctx, &repository).await,
        Page::Image(repository, reference) => image(&ctx, &repository, &reference).await,
        Page::DeleteTag(repository, tag) => delete_tag(&ctx, &repository, &tag).await,
        Page::SignInForm => sign_in_form(&ctx),
        Page::SignIn => sign_in(&ctx, &form).await,
        Page::SignOut => sign_out(&ctx).await,
        Page::Tokens => tokens(&ctx, None).await,
        Page::CreateToken(new) => create_token(&ctx, new).await,
        Page::RevokeToken(name) => revoke_token(&ctx, &name).await,
        Page::Users => users(&ctx).await,
        Page::SetUserDisabled(name, disabled) => set_user_disabled(&ctx, &name, disabled).await,
        Page::Lifecycle(name) => lifecycle::lifecycle(&ctx, &name, None).await,
        Page::SetQuota(name, limits) => lifecycle::set_quota(&ctx, &name, limits).await,
        Page::SetRetention(name, request) => lifecycle::set_retention(&ctx, &name, request).await,
        Page::RemoveRetention(name) => lifecycle::remove_retention(&ctx, &name).await,
        Page::RunRetention(name, dry_run) => lifecycle::run_retention(&ctx, &name, dry_run).await,
        Page::AddImmutableRule(new) => lifecycle::add_rule(&ctx, new).await,
        Page::RemoveImmutableRule(scope, tags) => lifecycle::remove_rule(&ctx, &scope, &tags).await,
        Page::Trash(name) => lifecycle::trash(&ctx, &name).await,
        Page::RestoreImage(repository, digest) => {
            lifecycle::restore(&ctx, &repository, &digest).await
        }
        Page::DeleteImage(repository, digest) => {
            lifecycle::delete_image(&ctx, &repository, &digest).await
        }
        Page::ExemptForm(repository, reference, issue) => {
            vulnerabilities::exempt_form(&ctx, &repository, &reference, &issue).await
        }
        Page::Exempt(new, back) => vulnerabilities::exempt(&ctx, new, &back).await,
        Page::RemoveExemption(scope, issue, back) => {
            vulnerabilities::remove(&ctx, &scope, &issue, &back).await
        }
        Page::Exemptions(name) => vulnerabilities::exemptions(&ctx, &name).await,
        Page::SetVulnerabilityPolicy(name, policy) => {
            vulnerabilities::set_policy(&ctx, &name, policy).await
        }
        Page::Settings => settings::settings(&ctx).await,
        Page::Replications => replication::list(&ctx).await,
        Page::CreateReplication(new) => replication::create(&ctx, new).await,
        Page::Replication(name) => replication::rule(&ctx, &name).await,
        Page::RunReplication(name) => replication::run(&ctx, &name).await,
        Page::DeleteReplication(name) => replication::delete(&ctx, &name).await,
        Page::Account => settings::account(&ctx),
        Page::SignOutEverywhere => settings::sign_out_everywhere(&ctx).await,
        Page::SignUserOut(name) => settings::sign_user_out(&ctx, &name).await,
    };
    result.unwrap_or_else(|failure| failure_page(&ctx, failure))
}

/// Pages that only exist with access control on.
fn needs_access_control(page: &Page) -> bool {
    matches!(
        page,
        Page::SignInForm
            | Page::SignIn
            | Page::SignOut
            | Page::Tokens
            | Page::CreateToken(_)
            | Page::RevokeToken(_)
            | Page::Users
            | Page::SetUserDisabled(..)
            | Page::Settings
            | Page::Account
            | Page::SignOutEverywhere
            | Page::SignUserOut(_)
            | Page::Replications
            | Page::CreateReplication(_)
            | Page::Replication(_)
            | Page::RunReplication(_)
            | Page::DeleteReplication(_)
    )
}

/// The CSRF checks of a form's POST: from this site, and, for a signed-in
/// form, with the session's token.
fn check_form(ctx: &Ctx<'_>, page: &Page, form: Option<&Form>) -> Result<(), Failure> {
    let Some(form) = form else {
        return Ok(());
    };
    let refused = || {
        Failure::new(
            StatusCode::FORBIDDEN,
            "This form was not sent from a page of this registry, or the page was too old. \
             Go back, reload the page and try again.",
        )
    };
    if !session::same_site(ctx.parts) {
        return Err(refused());
    }
    if page.needs_csrf_token() && ctx.auth.is_some() {
        let presented = form.get("csrf").unwrap_or("");
        match &ctx.session {
            Some(session) if session.csrf_matches(presented) => {}
            _ => return Err(refused()),
        }
    }
    Ok(())
}

fn no_page(ctx: &Ctx<'_>, refusal: NoPage) -> Response {
    let failure = match refusal {
        NoPage::NotFound => Failure::new(
            StatusCode::NOT_FOUND,
            "There is no page at this address. Check the link, or start from the overview.",
        ),
        NoPage::MethodNotAllowed => Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "This page cannot be used that way. Go back and use its links and buttons.",
        ),
        NoPage::BadForm(message) => Failure::new(StatusCode::BAD_REQUEST, message),
    };
    failure_page(ctx, failure)
}

/// An error page: the status, a title and the sentence of `failure`.
fn failure_page(ctx: &Ctx<'_>, failure: Failure) -> Response {
    let title = match failure.status {
        StatusCode::BAD_REQUEST => "That did not work",
        StatusCode::UNAUTHORIZED => "Sign-in needed",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::METHOD_NOT_ALLOWED => "Not possible here",
        StatusCode::CONFLICT => "Conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "Too large",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
        StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
        _ => "Something went wrong",
    };
    let message = if failure.status.is_server_error() {
        // 5xx details are in the server's log, never on the page.
        "The registry could not answer this time. Try again in a moment; if it keeps \
         happening, the server's log says why."
            .to_string()
    } else {
        failure.message
    };
    html_response(
        failure.status,
        layout(&ctx.chrome(), title, html::error_body(title, &message)),
    )
}

// --- listings shared by several pages ---

/// The namespaces the caller may see, as the API lists them. With access
/// control off, every namespace (as `/v2/` shows everything then).
async fn visible_namespaces(ctx: &Ctx<'_>) -> Result<Vec<Namespace>, Failure> {
    if let Some(api) = ctx.api() {
        return Ok(api::namespaces::visible(&api).await?.namespaces);
    }
    let registry = &ctx.state.registry;
    let mut namespaces = Vec::new();
    for record in registry
        .list_namespaces(None, MAX_NAMESPACES)
        .await
        .map_err(ManagementError::from)?
    {
        let usage = registry
            .namespace_usage(&record.name)
            .await
            .unwrap_or_default();
        namespaces.push(Namespace {
            visibility: match record.visibility {
                berth_registry::Visibility::Public => berth_auth::Visibility::Public,
                berth_registry::Visibility::Private => berth_auth::Visibility::Private,
            },
            name: record.name,
            role: None,
            created_at: time::OffsetDateTime::from_unix_timestamp(record.created_at)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            repositories: usage.repositories,
            images: usage.images,
            storage_bytes: usage.storage_bytes,
            pulls: usage.pulls,
        });
    }
    Ok(namespaces)
}

/// The images with findings of `namespaces` (those the caller may see),
/// as `GET /api/v1/vulnerabilities/summary` answers: one index range over
/// the stored finding counts.
async fn visible_findings(
    ctx: &Ctx<'_>,
    namespaces: &[Namespace],
) -> Result<api::vulnerabilities::FindingsSummary, Failure> {
    let names: Vec<String> = namespaces.iter().map(|n| n.name.clone()).collect();
    Ok(api::vulnerabilities::findings_summary(&ctx.state.registry, &names).await?)
}

/// The most namespaces whose daily usage the overview adds up (the
/// largest by storage): a query each, side by side.
const OVERVIEW_HISTORY_NAMESPACES: usize = 10;

/// Storage and pulls per day over the last 30 days, of `namespaces` (each
/// with its storage now, which the caller has read) added up, as two
/// column charts (`whose` says whose they are).
async fn usage_charts(
    ctx: &Ctx<'_>,
    namespaces: &[(Name, u64)],
    whose: &str,
) -> Result<Markup, Failure> {
    let histories = futures::future::try_join_all(namespaces.iter().map(|(namespace, now)| {
        api::quotas::usage_history_until(
            &ctx.state.registry,
            namespace,
            api::quotas::DEFAULT_HISTORY_DAYS,
            *now,
        )
    }))
    .await?;
    let mut days: Vec<(String, u64, u64)> = Vec::new();
    for history in histories {
        if days.is_empty() {
            days = history
                .days
                .iter()
                .map(|d| (d.date.clone(), 0, 0))
                .collect();
        }
        for (sum, day) in days.iter_mut().zip(&history.days) {
            sum.1 += day.storage_bytes;
            sum.2 += day.pulls;
        }
    }
    let storage: Vec<(String, u64)> = days.iter().map(|(d, s, _)| (d.clone(), *s)).collect();
    let pulls: Vec<(String, u64)> = days.iter().map(|(d, _, p)| (d.clone(), *p)).collect();
    Ok(html! {
        @if !days.is_empty() {
            h2 id="usage" { "The last 30 days" }
            p class="muted" { (whose) }
            div class="charts" {
                div { h3 { "Storage" } (daily_chart("Storage per day", &storage, size)) }
                div { h3 { "Pulls" } (daily_chart("Pulls per day", &pulls, |n| n.to_string())) }
            }
        }
    })
}

/// A page of repositories as the API lists them (`query` is the API's:
/// `namespace`, `q`, `sort`, `limit`, `cursor`).
async fn repositories(
    ctx: &Ctx<'_>,
    query: &str,
) -> Result<(Vec<RepositoryView>, Option<String>), Failure> {
    let listing = RepositoryListing::parse(Some(query))?;
    if let Some(api) = ctx.api() {
        let page = api::repositories::page(&api, listing).await?;
        return Ok((page.repositories, page.next_cursor));
    }
    // Without access control every namespace is everyone's.
    let namespaces = listing
        .namespace
        .as_ref()
        .map(|namespace| vec![namespace.as_str().to_string()]);
    let (rows, next) =
        api::repositories::summaries(&ctx.state.registry, &listing, namespaces).await?;
    Ok((
        rows.into_iter().map(api::repositories::view).collect(),
        next,
    ))
}

/// `key=value&…` from pairs, each encoded.
pub(super) fn query_string(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// The query's pairs whose key is one of `keys`, non-empty.
pub(super) fn kept_pairs<'q>(
    query: &'q [(String, String)],
    keys: &[&str],
) -> Vec<(&'q str, &'q str)> {
    query
        .iter()
        .filter(|(key, value)| keys.contains(&key.as_str()) && !value.is_empty())
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect()
}

pub(super) fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default()
}

pub(super) fn repository_path(repository: &str) -> String {
    format!("/repositories/{repository}")
}

pub(super) fn image_path(repository: &str, reference: &str) -> String {
    format!("/repositories/{repository}{REPOSITORY_END}images/{reference}")
}

pub(super) fn visibility_badge(visibility: berth_auth::Visibility) -> Markup {
    match visibility {
        berth_auth::Visibility::Public => html! { span class="badge public" { "public" } },
        berth_auth::Visibility::Private => html! { span class="badge private" { "private" } },
    }
}

pub(super) fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) if hex.len() > 12 => format!("{algorithm}:{}", &hex[..12]),
        _ => digest.to_string(),
    }
}

fn platforms(list: &[PlatformView]) -> String {
    list.iter()
        .map(|p| match &p.variant {
            Some(variant) => format!("{}/{}/{}", p.os, p.architecture, variant),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// --- pages ---

async fn overview(ctx: &Ctx<'_>) -> PageResult {
    // The page's reads run side by side where they do not depend on each
    // other (the metadata store has several readers): the namespaces and
    // both repository listings first, then the findings and the charts,
    // which follow from the namespaces.
    let (namespaces, (recent, _), (most_pulled, _)) = tokio::try_join!(
        visible_namespaces(ctx),
        repositories(ctx, "sort=last_push&limit=8"),
        repositories(ctx, "sort=pulls&limit=10"),
    )?;
    let repositories_total: u64 = namespaces.iter().map(|n| n.repositories).sum();
    let images_total: u64 = namespaces.iter().map(|n| n.images).sum();
    let storage_total: u64 = namespaces.iter().map(|n| n.storage_bytes).sum();
    let mut largest: Vec<&Namespace> = namespaces.iter().collect();
    largest.sort_by(|a, b| {
        b.storage_bytes
            .cmp(&a.storage_bytes)
            .then(a.name.cmp(&b.name))
    });
    let charted: Vec<(Name, u64)> = largest
        .iter()
        .take(OVERVIEW_HISTORY_NAMESPACES)
        .filter_map(|n| Some((Name::try_from(n.name.clone()).ok()?, n.storage_bytes)))
        .collect();
    let whose = if namespaces.len() > charted.len() {
        format!(
            "The {} largest namespaces you see, added up.",
            charted.len()
        )
    } else {
        "Every namespace you see, added up.".to_string()
    };
    let (findings, usage) = tokio::try_join!(
        visible_findings(ctx, &namespaces),
        usage_charts(ctx, &charted, &whose),
    )?;
    let with_issues = findings.images_with_issues;
    // The total adds up the namespaces' figures; only the chart's ten most
    // pulled repositories are listed.
    let pulls_total: u64 = namespaces.iter().map(|n| n.pulls).sum();
    let mut by_storage: Vec<(String, u64)> = namespaces
        .iter()
        .map(|n| (n.name.clone(), n.storage_bytes))
        .collect();
    by_storage.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    by_storage.truncate(10);
    let by_pulls: Vec<(String, u64)> = most_pulled
        .iter()
        .take(10)
        .filter(|r| r.pull_count > 0)
        .map(|r| (r.name.clone(), r.pull_count))
        .collect();
    let count = |n: u64| n.to_string();
    let body = html! {
        h1 { "Overview" }
        @if ctx.auth.is_some() && ctx.session.is_none() {
            p class="lead" { "You see the public namespaces. " a href="/sign-in" { "Sign in" } " to see yours." }
        }
        div class="cards" {
            div class="card" { span class="value" { (namespaces.len()) } "namespaces" }
            div class="card" { span class="value" { (repositories_total) } "repositories" }
            div class="card" { span class="value" { (images_total) } "images" }
            div class="card" { span class="value" { (size(storage_total)) } "storage used" }
            div class="card" { span class="value" { (pulls_total) } "pulls" }
            div class="card" { span class="value" { (with_issues) } "images with issues" }
        }
        h2 { "Most recently pushed" }
        @if recent.is_empty() {
            p class="muted" { "Nothing pushed yet. Push with " code { "docker push " (ctx.registry_host()) "/NAMESPACE/NAME:TAG" } "." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr { th scope="col" { "Repository" } th scope="col" { "Last push" } th scope="col" class="num" { "Size" } th scope="col" class="num hide-narrow" { "Pulls" } } }
                    tbody {
                        @for repository in &recent {
                            tr {
                                td { a href=(repository_path(&repository.name)) { (repository.name) } }
                                td { (when(repository.last_push)) }
                                td class="num" { (size(repository.size)) }
                                td class="num hide-narrow" { (repository.pull_count) }
                            }
                        }
                    }
                }
            }
        }
        @if !by_storage.is_empty() {
            h2 { "Storage per namespace" }
            (bar_chart("Storage per namespace", &by_storage, size))
        }
        @if !by_pulls.is_empty() {
            h2 { "Most pulled repositories" }
            (bar_chart("Pulls per repository", &by_pulls, count))
        }
        (usage)
        (vulnerabilities::findings_summary(&findings))
    };
    ctx.page("Overview", body)
}

async fn namespaces(ctx: &Ctx<'_>) -> PageResult {
    let query = query_pairs(ctx.parts);
    let mut pairs = vec![("limit", PAGE_SIZE)];
    pairs.extend(kept_pairs(&query, &["cursor"]));
    let listing = NamespaceListing::parse(Some(&query_string(&pairs)))?;
    let page = match ctx.api() {
        Some(api) => api::namespaces::page(&api, &listing).await?,
        // Without access control every namespace is everyone's.
        None => api::namespaces::page_unfiltered(&ctx.state.registry, &listing).await?,
    };
    let namespaces = page.namespaces;
    let next_link = page
        .next_cursor
        .map(|cursor| format!("/namespaces?{}", query_string(&[("cursor", &cursor)])));
    let body = html! {
        h1 { "Namespaces" }
        @if namespaces.is_empty() {
            p class="muted" { "No namespaces to show. A namespace is the first part of a repository's name; pushing " code { "NAMESPACE/NAME" } " creates it." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Namespace" } th scope="col" { "Visibility" }
                        th scope="col" class="hide-narrow" { "Your role" }
                        th scope="col" class="num" { "Repositories" } th scope="col" class="num hide-narrow" { "Images" }
                        th scope="col" class="num" { "Storage" }
                    } }
                    tbody {
                        @for namespace in &namespaces {
                            tr {
                                td { a href=(format!("/namespaces/{}", namespace.name)) { (namespace.name) } }
                                td { (visibility_badge(namespace.visibility)) }
                                td class="hide-narrow" { @match namespace.role { Some(role) => (role.to_string()), None => span class="muted" { "—" } } }
                                td class="num" { (namespace.repositories) }
                                td class="num hide-narrow" { (namespace.images) }
                                td class="num" { (size(namespace.storage_bytes)) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(link) = &next_link {
            nav class="pager" aria-label="Pages" { a href=(link) { "Next page" } }
        }
    };
    ctx.page("Namespaces", body)
}

async fn namespace(ctx: &Ctx<'_>, name: &Name) -> PageResult {
    let (visibility, role, storage_now) = match ctx.api() {
        Some(api) => {
            let found = api::namespaces::one(&api, name).await?;
            (found.visibility, found.role, found.storage_bytes)
        }
        None => {
            let registry = &ctx.state.registry;
            let (found, usage) = tokio::try_join!(
                registry.namespace(name.as_str()),
                registry.namespace_usage(name.as_str()),
            )
            .map_err(ManagementError::from)?;
            let visibility = match found.visibility {
                berth_registry::Visibility::Public => berth_auth::Visibility::Public,
                berth_registry::Visibility::Private => berth_auth::Visibility::Private,
            };
            (visibility, None, usage.storage_bytes)
        }
    };
    let query = query_pairs(ctx.parts);
    let mut pairs = vec![("namespace", name.as_str()), ("limit", PAGE_SIZE)];
    pairs.extend(kept_pairs(&query, &["q", "sort", "cursor"]));
    let may_see_members = ctx.auth.is_some()
        && ctx
            .may(Permission::Namespace(name.clone(), Action::ManageMembers))
            .await;
    let namespace_names = [name.as_str().to_string()];
    let listing = query_string(&pairs);
    let charted = [(name.clone(), storage_now)];
    // The page's reads run side by side (the store has several readers).
    let ((rows, next), members, usage, findings) = tokio::try_join!(
        repositories(ctx, &listing),
        async {
            match ctx.api() {
                Some(api) if may_see_members => {
                    Ok::<_, Failure>(Some(api::members::all(&api, name).await?.members))
                }
                _ => Ok(None),
            }
        },
        usage_charts(ctx, &charted, "This namespace's figures per day (UTC).",),
        async {
            Ok::<_, Failure>(
                api::vulnerabilities::findings_summary(&ctx.state.registry, &namespace_names)
                    .await?,
            )
        },
    )?;
    let search = query
        .iter()
        .find(|(k, _)| k == "q")
        .map_or("", |(_, v)| v.as_str());
    let sort = query
        .iter()
        .find(|(k, _)| k == "sort")
        .map_or("name", |(_, v)| v.as_str());
    let next_link = next.map(|cursor| {
        let mut pairs: Vec<(&str, &str)> = kept_pairs(&query, &["q", "sort"]);
        pairs.push(("cursor", &cursor));
        format!("/namespaces/{name}?{}", query_string(&pairs))
    });
    let body = html! {
        ul class="crumbs" { li { a href="/namespaces" { "Namespaces" } } li { (name) } }
        h1 { (name) " " (visibility_badge(visibility)) }
        @if let Some(role) = role { p class="lead" { "Your role: " (role.to_string()) } }
        nav aria-label="Namespace" {
            ul class="crumbs" {
                li { a href=(lifecycle::lifecycle_path(name)) { "Quotas, retention and immutable tags" } }
                li { a href=(lifecycle::trash_path(name)) { "Trash" } }
                li { a href=(vulnerabilities::exemptions_path(name.as_str())) { "Vulnerability exemptions" } }
            }
        }
        h2 { "Repositories" }
        form class="toolbar" method="get" action=(format!("/namespaces/{name}")) role="search" {
            div class="grow" {
                label for="q" { "Search" }
                input type="search" id="q" name="q" value=(search) maxlength="255" placeholder="part of a name";
            }
            div {
                label for="sort" { "Sort by" }
                select id="sort" name="sort" {
                    @for (value, label) in [("name", "Name"), ("last_push", "Last push"), ("size", "Size"), ("pulls", "Pulls")] {
                        option value=(value) selected[sort == value] { (label) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        @if rows.is_empty() {
            p class="muted" { "No repositories" @if !search.is_empty() { " match " code { (search) } } "." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Repository" } th scope="col" class="num" { "Tags" }
                        th scope="col" class="num hide-narrow" { "Images" } th scope="col" class="num" { "Size" }
                        th scope="col" { "Last push" } th scope="col" class="num hide-narrow" { "Pulls" }
                        th scope="col" class="hide-narrow" { "Last pull" }
                    } }
                    tbody {
                        @for repository in &rows {
                            tr {
                                td { a href=(repository_path(&repository.name)) { (repository.name) } }
                                td class="num" { (repository.tags) }
                                td class="num hide-narrow" { (repository.images) }
                                td class="num" { (size(repository.size)) }
                                td { (when(repository.last_push)) }
                                td class="num hide-narrow" { (repository.pull_count) }
                                td class="hide-narrow" { (when(repository.last_pull)) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(link) = &next_link {
            nav class="pager" aria-label="Pages" { a href=(link) { "Next page" } }
        }
        (usage)
        (vulnerabilities::findings_summary(&findings))
        @if let Some(members) = &members {
            h2 { "Members" }
            div class="table-wrap" {
                table {
                    thead { tr { th scope="col" { "User" } th scope="col" { "Role" } } }
                    tbody {
                        @for member in members {
                            tr { td { (member.user) } td { (member.role.to_string()) } }
                        }
                    }
                }
            }
        }
    };
    ctx.page(name.as_str(), body)
}

async fn repository_page(ctx: &Ctx<'_>, repository: &RepoName) -> PageResult {
    let query = query_pairs(ctx.parts);
    // Finding a tag is one index lookup, however many tags there are: the
    // form goes straight to the tag's image page.
    if let Some((_, wanted)) = query
        .iter()
        .find(|(k, v)| k == "tag" && !v.trim().is_empty())
    {
        let tag = Tag::parse(wanted.trim()).map_err(|_| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("{wanted:?} is not a tag: letters, digits, '_', '.' and '-', at most 128."),
            )
        })?;
        return Ok(see_other(&image_path(repository.as_str(), tag.as_str())));
    }
    // Searching or sorting tags lists tags (one row each), a page at a
    // time by keyset however many there are.
    if query
        .iter()
        .any(|(k, v)| (k == "q" || k == "sort") && !v.is_empty())
    {
        return tag_search(ctx, repository, &query).await;
    }
    let tagged = query
        .iter()
        .find(|(k, _)| k == "tagged")
        .map_or("true", |(_, v)| v.as_str());
    let mut pairs = vec![("limit", PAGE_SIZE)];
    pairs.extend(kept_pairs(&query, &["tagged", "cursor"]));
    let listing = ImageListing::parse(repository, Some(&query_string(&pairs)))?;
    let page = api::images::page(&ctx.state.registry, repository, listing).await?;
    let untagged_notice = query
        .iter()
        .find(|(k, _)| k == "untagged")
        .map(|(_, v)| v.clone());
    let deleted_notice = query
        .iter()
        .find(|(k, _)| k == "deleted")
        .map(|(_, v)| v.clone());
    let name = repository.as_str();
    let next_link = page.next_cursor.as_ref().map(|cursor| {
        format!(
            "{}?{}",
            repository_path(name),
            query_string(&[("tagged", tagged), ("cursor", cursor)])
        )
    });
    let filter = |value: &str, label: &str| {
        let href = format!("{}?tagged={value}", repository_path(name));
        html! {
            li { @if tagged == value { strong aria-current="page" { (label) } } @else { a href=(href) { (label) } } }
        }
    };
    let body = html! {
        ul class="crumbs" {
            li { a href="/namespaces" { "Namespaces" } }
            li { a href=(format!("/namespaces/{}", repository.namespace())) { (repository.namespace()) } }
            li { (name) }
        }
        h1 { (name) }
        @if let Some(tag) = &untagged_notice {
            div class="notice ok" role="status" { "The tag " code { (tag) } " was deleted." }
        }
        @if let Some(digest) = &deleted_notice {
            div class="notice ok" role="status" {
                "The image " span class="mono" { (short_digest(digest)) } " was deleted. It waits in the "
                a href=(format!("/namespaces/{}/trash", repository.namespace())) { "trash" } ", restorable."
            }
        }
        (tag_search_form(name, "", "name"))
        form class="toolbar" method="get" action=(repository_path(name)) role="search" aria-label="Go to a tag" {
            div class="grow" {
                label for="tag" { "Go to tag" }
                input type="search" id="tag" name="tag" maxlength="128" placeholder="latest";
            }
            button type="submit" { "Go" }
        }
        nav aria-label="Which images" {
            ul class="crumbs" {
                (filter("true", "Tagged"))
                (filter("false", "Untagged"))
                (filter("any", "All"))
            }
        }
        @if page.images.is_empty() {
            p class="muted" { "No images here." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Tags" } th scope="col" { "Digest" }
                        th scope="col" class="num" { "Size" } th scope="col" class="hide-narrow" { "Platforms" }
                        th scope="col" { "Pushed" } th scope="col" class="hide-narrow" { "Last pulled" }
                        th scope="col" class="num hide-narrow" { "Pulls" }
                    } }
                    tbody {
                        @for image in &page.images { (image_row(name, image)) }
                    }
                }
            }
        }
        @if let Some(link) = &next_link {
            nav class="pager" aria-label="Pages" { a href=(link) { "Next page" } }
        }
    };
    ctx.page(name, body)
}

/// The form that searches a repository's tags by part of their name and
/// sorts them.
fn tag_search_form(repository: &str, search: &str, sort: &str) -> Markup {
    html! {
        form class="toolbar" method="get" action=(repository_path(repository)) role="search" aria-label="Search tags" {
            div class="grow" {
                label for="q" { "Search tags" }
                input type="search" id="q" name="q" value=(search) maxlength="128" placeholder="part of a tag";
            }
            div {
                label for="sort" { "Sort tags by" }
                select id="sort" name="sort" {
                    @for (value, label) in [("name", "Name"), ("newest", "Newest"), ("oldest", "Oldest"), ("size", "Size")] {
                        option value=(value) selected[sort == value] { (label) }
                    }
                }
            }
            button type="submit" { "Show tags" }
        }
    }
}

/// A repository's tags, searched by part of their name and sorted by
/// name, age or size (`api::images::tag_page`).
async fn tag_search(
    ctx: &Ctx<'_>,
    repository: &RepoName,
    query: &[(String, String)],
) -> PageResult {
    let mut pairs = vec![("limit", PAGE_SIZE)];
    pairs.extend(kept_pairs(query, &["q", "sort", "cursor"]));
    let listing = api::images::TagListing::parse(repository, Some(&query_string(&pairs)))?;
    let page = api::images::tag_page(&ctx.state.registry, repository, listing).await?;
    let search = query
        .iter()
        .find(|(k, _)| k == "q")
        .map_or("", |(_, v)| v.as_str());
    let sort = query
        .iter()
        .find(|(k, v)| k == "sort" && !v.is_empty())
        .map_or("name", |(_, v)| v.as_str());
    let name = repository.as_str();
    let next_link = page.next_cursor.as_ref().map(|cursor| {
        let mut pairs = kept_pairs(query, &["q", "sort"]);
        pairs.push(("cursor", cursor));
        format!("{}?{}", repository_path(name), query_string(&pairs))
    });
    let body = html! {
        ul class="crumbs" {
            li { a href="/namespaces" { "Namespaces" } }
            li { a href=(format!("/namespaces/{}", repository.namespace())) { (repository.namespace()) } }
            li { a href=(repository_path(name)) { (name) } }
        }
        h1 { (name) ": tags" }
        (tag_search_form(name, search, sort))
        @if page.tags.is_empty() {
            p class="muted" { "No tags" @if !search.is_empty() { " contain " code { (search) } } "." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Tag" } th scope="col" { "Digest" }
                        th scope="col" class="num" { "Size" } th scope="col" class="hide-narrow" { "Platforms" }
                        th scope="col" { "Tag pushed" } th scope="col" class="num hide-narrow" { "Pulls" }
                    } }
                    tbody {
                        @for row in &page.tags {
                            tr {
                                td class="mono" { a href=(image_path(name, &row.tag)) { (row.tag) } }
                                td class="mono" { a href=(image_path(name, &row.image.digest)) { (short_digest(&row.image.digest)) } }
                                td class="num" { (size(row.image.size)) }
                                td class="hide-narrow" { (platforms(&row.image.platforms)) }
                                td { (when(Some(row.tag_pushed_at))) }
                                td class="num hide-narrow" { (row.image.pull_count) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(link) = &next_link {
            nav class="pager" aria-label="Pages" { a href=(link) { "Next page" } }
        }
    };
    ctx.page(&format!("{name}: tags"), body)
}

fn image_row(repository: &str, image: &ImageSummaryView) -> Markup {
    html! {
        tr {
            td {
                @for tag in &image.tags {
                    a href=(image_path(repository, tag)) { (tag) } " "
                }
                @if image.tags.is_empty() { span class="muted" { "untagged" } }
            }
            td class="mono" { a href=(image_path(repository, &image.digest)) { (short_digest(&image.digest)) } }
            td class="num" { (size(image.size)) }
            td class="hide-narrow" { (platforms(&image.platforms)) }
            td { (when(Some(image.pushed_at))) }
            td class="hide-narrow" { (when(image.last_pulled)) }
            td class="num hide-narrow" { (image.pull_count) }
        }
    }
}

async fn image(ctx: &Ctx<'_>, repository: &RepoName, reference: &Reference) -> PageResult {
    let details: ImageDetailsView =
        api::images::details(&ctx.state.registry, repository, reference).await?;
    let name = repository.as_str();
    let summary = &details.summary;
    let host = ctx.registry_host();
    let may_delete = ctx
        .may(Permission::Repositories(vec![(
            repository.clone(),
            Action::Delete,
        )]))
        .await;
    // The advisor's report, when it has one; the page is useful without.
    // `?all=true` lists the findings without a fix and the exempted ones too.
    let show_all = query_pairs(ctx.parts)
        .iter()
        .any(|(k, v)| k == "all" && v == "true");
    // Anyone who may change an exemption of the namespace (or the
    // registry's) is offered the form.
    let may_exempt = ctx
        .may(Permission::Namespace(
            Name::try_from(repository.namespace().to_string())
                .map_err(ManagementError::invalid_request)?,
            Action::ManageSettings,
        ))
        .await;
    let vulnerabilities = api::vulnerabilities::assess(&ctx.state.registry, repository, reference)
        .await
        .ok();
    let by_digest = format!("{host}/{name}@{}", summary.digest);
    let title = match reference {
        Reference::Tag(tag) => format!("{name}:{}", tag.as_str()),
        Reference::Digest(digest) => format!("{name}@{}", short_digest(&digest.to_string())),
    };
    let body = html! {
        ul class="crumbs" {
            li { a href="/namespaces" { "Namespaces" } }
            li { a href=(format!("/namespaces/{}", repository.namespace())) { (repository.namespace()) } }
            li { a href=(repository_path(name)) { (name) } }
        }
        h1 { (title) }
        dl class="facts" {
            dt { "Digest" } dd class="mono digest" { (summary.digest) }
            dt { "Media type" } dd class="mono" { (summary.media_type) }
            @if let Some(artifact) = &summary.artifact_type { dt { "Artifact type" } dd class="mono" { (artifact) } }
            dt { "Size" } dd { (size(summary.size)) }
            @if !summary.platforms.is_empty() { dt { "Platforms" } dd { (platforms(&summary.platforms)) } }
            @if let Some(created) = &summary.created { dt { "Built" } dd { (created) } }
            dt { "Pushed" } dd { (when(Some(summary.pushed_at))) }
            dt { "Last pulled" } dd { (when(summary.last_pulled)) }
            dt { "Pulls" } dd { (summary.pull_count) }
        }
        h2 { "Pull" }
        @for (i, tag) in summary.tags.iter().enumerate() {
            (copyable(&format!("docker-tag-{i}"), "docker pull by tag", &format!("docker pull {host}/{name}:{tag}")))
            (copyable(&format!("podman-tag-{i}"), "podman pull by tag", &format!("podman pull {host}/{name}:{tag}")))
        }
        (copyable("docker-digest", "docker pull by digest", &format!("docker pull {by_digest}")))
        (copyable("podman-digest", "podman pull by digest", &format!("podman pull {by_digest}")))
        @if may_delete {
            details class="confirm" {
                summary { "Delete this image" }
                form method="post" action=(format!("/repositories/{name}{REPOSITORY_END}images/{}/delete", summary.digest)) {
                    (csrf_field(ctx.session.as_ref()))
                    p { "The image and every tag of it go to the namespace's trash, restorable until it expires." }
                    button class="danger" type="submit" { "Delete image " (short_digest(&summary.digest)) }
                }
            }
        }
        @if !summary.tags.is_empty() {
            h2 { "Tags" }
            div class="table-wrap" {
                table {
                    thead { tr { th scope="col" { "Tag" } th scope="col" { "Action" } } }
                    tbody {
                        @for tag in &summary.tags {
                            tr {
                                td class="mono" { (tag) }
                                td {
                                    @if may_delete {
                                        details class="confirm" {
                                            summary { "Delete tag " (tag) }
                                            form method="post" action=(format!("/repositories/{name}{REPOSITORY_END}tags/{tag}/delete")) {
                                                (csrf_field(ctx.session.as_ref()))
                                                p { "The image stays under its digest and other tags. Clients pulling " code { (name) ":" (tag) } " will no longer find it." }
                                                button class="danger" type="submit" { "Delete " (tag) }
                                            }
                                        }
                                    } @else {
                                        span class="muted" { "—" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !details.children.is_empty() {
            h2 { "Platforms" }
            div class="table-wrap" {
                table {
                    thead { tr { th scope="col" { "Platform" } th scope="col" { "Digest" } th scope="col" class="num" { "Manifest size" } } }
                    tbody {
                        @for child in &details.children {
                            tr {
                                td { @if let Some(platform) = &child.platform { (platforms(std::slice::from_ref(platform))) } }
                                td class="mono" { a href=(image_path(name, &child.digest)) { (short_digest(&child.digest)) } }
                                td class="num" { (size(child.size)) }
                            }
                        }
                    }
                }
            }
        }
        @if !details.layers.is_empty() {
            h2 { "Layers" }
            div class="table-wrap" {
                table {
                    thead { tr { th scope="col" { "#" } th scope="col" { "Digest" } th scope="col" class="hide-narrow" { "Media type" } th scope="col" class="num" { "Size" } } }
                    tbody {
                        @for (i, layer) in details.layers.iter().enumerate() {
                            tr {
                                td { (i + 1) }
                                td class="mono" { (short_digest(&layer.digest)) }
                                td class="mono hide-narrow" { (layer.media_type) }
                                td class="num" { (size(layer.size)) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(config) = &details.config {
            h2 { "Configuration" }
            dl class="facts" {
                @if let (Some(os), Some(arch)) = (&details.os, &details.architecture) { dt { "Platform" } dd { (os) "/" (arch) @if let Some(v) = &details.variant { "/" (v) } } }
                dt { "Entrypoint" } dd class="mono" { (shell_words(&config.entrypoint)) }
                dt { "Command" } dd class="mono" { (shell_words(&config.cmd)) }
                dt { "Working directory" } dd class="mono" { (config.working_dir) }
                dt { "User" } dd class="mono" { @if config.user.is_empty() { "(root)" } @else { (config.user) } }
                dt { "Ports" } dd class="mono" { (config.exposed_ports.join(", ")) }
                dt { "Volumes" } dd class="mono" { (config.volumes.join(", ")) }
                dt { "Environment" } dd { @for env in &config.env { div class="mono" { (env) } } }
                dt { "Labels" } dd { @for (key, value) in &config.labels { div class="mono" { (key) "=" (value) } } }
            }
        }
        @if !details.history.is_empty() {
            h2 { "History" }
            div class="table-wrap" {
                table {
                    thead { tr { th scope="col" { "Created" } th scope="col" { "Step" } } }
                    tbody {
                        @for step in &details.history {
                            tr {
                                td { (step.created.as_deref().unwrap_or("")) }
                                td class="mono" { (step.created_by.as_deref().unwrap_or("")) @if step.empty_layer { " " span class="badge" { "no layer" } } }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(report) = &vulnerabilities { (vulnerabilities::section(report, &image_path(name, &reference.to_string()), show_all, may_exempt)) }
        @if !details.referrers.is_empty() {
            h2 { "Referrers" }
            @for (artifact_type, referrers) in &details.referrers {
                h3 class="mono" { @if artifact_type.is_empty() { "(no artifact type)" } @else { (artifact_type) } }
                ul {
                    @for referrer in referrers {
                        li class="mono" { a href=(image_path(name, &referrer.digest)) { (short_digest(&referrer.digest)) } " · " (size(referrer.size)) }
                    }
                }
            }
        }
    };
    ctx.page(&title, body)
}

/// A command line as words, quoted where they hold spaces.
fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if w.is_empty() || w.contains(char::is_whitespace) {
                format!("{w:?}")
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn delete_tag(ctx: &Ctx<'_>, repository: &RepoName, tag: &Tag) -> PageResult {
    ctx.state
        .registry
        .untag_image(&ctx.actor(), repository, tag)
        .await
        .map_err(ManagementError::from)?;
    Ok(see_other(&format!(
        "{}?{}",
        repository_path(repository.as_str()),
        query_string(&[("untagged", tag.as_str())])
    )))
}

fn sign_in_form(ctx: &Ctx<'_>) -> PageResult {
    if ctx.session.is_some() {
        return Ok(see_other("/"));
    }
    let query = query_pairs(ctx.parts);
    let next = query
        .iter()
        .find(|(k, _)| k == "next")
        .map_or("/", |(_, v)| v.as_str());
    sign_in_page(ctx, StatusCode::OK, next, "", None)
}

fn sign_in_page(
    ctx: &Ctx<'_>,
    status: StatusCode,
    next: &str,
    username: &str,
    error: Option<&str>,
) -> PageResult {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(error) = error {
            div class="notice error" role="alert" { (error) }
        }
        form class="stack" method="post" action="/sign-in" {
            input type="hidden" name="next" value=(safe_next(next));
            div {
                label for="username" { "User name" }
                input type="text" id="username" name="username" value=(username) autocomplete="username" required autofocus;
            }
            div {
                label for="password" { "Password" }
                input type="password" id="password" name="password" autocomplete="current-password" required;
            }
            div { button type="submit" { "Sign in" } }
        }
        p class="muted" { "The same account you use with " code { "docker login" } "." }
    };
    Ok(html_response(
        status,
        layout(&ctx.chrome(), "Sign in", body),
    ))
}

/// Where to go after signing in: a path of this site, never another site
/// (`//host` and `/\host` are other sites to a browser).
fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next
    } else {
        "/"
    }
}

async fn sign_in(ctx: &Ctx<'_>, form: &Form) -> PageResult {
    let Some(auth) = ctx.auth else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "Access control is off.",
        ));
    };
    let username = form.get("username").unwrap_or("").trim();
    let password = Secret::new(form.get("password").unwrap_or(""));
    let next = safe_next(form.get("next").unwrap_or("/"));
    let refuse = |status, message: &str| sign_in_page(ctx, status, next, username, Some(message));
    if username.is_empty() || password.expose().is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Enter your user name and password.",
        );
    }
    match crate::access::login(auth, ctx.parts, username, &password).await {
        Ok(Principal::User { name, .. }) => {
            let cookie = session::start(auth, ctx.parts, &name).await?;
            audit_sign_in(ctx, &name, None);
            let mut response = see_other(next);
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            Ok(response)
        }
        Ok(_) => {
            audit_sign_in(ctx, username, Some(StatusCode::UNAUTHORIZED));
            refuse(
                StatusCode::UNAUTHORIZED,
                "Access tokens cannot sign in to the console. Sign in with your user name and password.",
            )
        }
        Err(LoginError::InvalidCredentials) => {
            audit_sign_in(ctx, username, Some(StatusCode::UNAUTHORIZED));
            refuse(StatusCode::UNAUTHORIZED, "Wrong user name or password.")
        }
        Err(LoginError::Throttled(wait) | LoginError::Busy(wait)) => refuse(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many attempts. Wait {} seconds and try again.",
                wait.as_secs().max(1)
            ),
        ),
        Err(LoginError::Store(error)) => Err(ManagementError::from(error).into()),
    }
}

/// Records a console sign-in in the audit trail: `session.started` for
/// one that succeeded, `request.refused` for a wrong password (the form
/// carries no `Authorization` header, so the refusals layer cannot see
/// it). The name of a refused one is only what was typed, marked as
/// claimed; the password is never recorded.
fn audit_sign_in(ctx: &Ctx<'_>, user: &str, refused: Option<StatusCode>) {
    let address = ctx
        .parts
        .extensions
        .get::<crate::origin::ClientOrigin>()
        .and_then(|origin| origin.address);
    let user: String = user.chars().take(255).collect();
    let (action, outcome, detail) = match refused {
        None => (
            "session.started",
            "ok".to_string(),
            serde_json::json!({ "via": "console" }),
        ),
        Some(status) => (
            "request.refused",
            format!("refused {}", status.as_u16()),
            serde_json::json!({ "credentials": "console", "status": status.as_u16() }),
        ),
    };
    ctx.state
        .registry
        .record_access(berth_registry::NewAuditRecord {
            at: time::OffsetDateTime::now_utc().unix_timestamp(),
            actor_kind: "user".to_string(),
            actor_name: Some(user),
            actor_address: address.map(|a| a.to_string()),
            action: action.to_string(),
            namespace: None,
            resource: Some("POST /sign-in".to_string()),
            outcome,
            detail,
            event_position: None,
        });
}

async fn sign_out(ctx: &Ctx<'_>) -> PageResult {
    let (Some(auth), Some(session)) = (ctx.auth, &ctx.session) else {
        return Ok(see_other("/"));
    };
    let cookie: HeaderValue = session::end(auth, ctx.parts, session).await?;
    let mut response = see_other("/");
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

async fn tokens(ctx: &Ctx<'_>, created: Option<CreatedToken>) -> PageResult {
    let Some(api) = ctx.api() else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "Access control is off.",
        ));
    };
    let list = api::tokens::visible(&api).await?.tokens;
    let host = ctx.registry_host();
    let body = html! {
        h1 { "Access tokens" }
        p class="lead" { "Robot accounts for pipelines and clusters: each logs in with its name and secret, and may do what its scopes say, within what you may do." }
        @if let Some(created) = &created {
            div class="notice ok" role="status" {
                h2 { "Token " (created.name) " created" }
                p { strong { "Copy the secret now: it is shown this once." } }
                (copyable("token-secret", "The token's secret", &created.token))
                h3 { "Log in with docker or podman" }
                (copyable("token-docker-login", "docker login command", &format!("echo '{}' | docker login {host} -u {} --password-stdin", created.token, created.name)))
                (copyable("token-podman-login", "podman login command", &format!("echo '{}' | podman login {host} -u {} --password-stdin", created.token, created.name)))
                h3 { "Kubernetes pull secret" }
                p { "Apply it with " code { "kubectl apply -f -" } ", then name it in " code { "imagePullSecrets" } "." }
                (copyable("token-k8s", "Kubernetes Secret YAML", &berth_auth::robots::kubernetes_pull_secret(&format!("{}-pull", created.name), None, &host, &created.name, &Secret::new(created.token.clone()))))
            }
        }
        h2 { "New token" }
        form class="stack" method="post" action="/tokens" {
            (csrf_field(ctx.session.as_ref()))
            div {
                label for="name" { "Name" }
                input type="text" id="name" name="name" required maxlength="64" pattern="[a-z0-9]+([._-][a-z0-9]+)*" aria-describedby="name-help";
                p id="name-help" class="muted" { "Its login name: lowercase letters, digits, '-', '_' and '.'." }
            }
            div {
                label for="scopes" { "Scopes" }
                textarea id="scopes" name="scopes" rows="3" required aria-describedby="scopes-help" {}
                p id="scopes-help" class="muted" { "One per line: " code { "team-a:pull" } " for a namespace, " code { "team-a/app:pull,push" } " for one repository. Actions: pull, push, delete, or *." }
            }
            div {
                label for="expires" { "Expires" }
                select id="expires" name="expires" {
                    option value="1d" { "in 1 day" }
                    option value="7d" { "in 7 days" }
                    option value="30d" selected { "in 30 days" }
                    option value="90d" { "in 90 days" }
                    option value="365d" { "in a year" }
                    option value="never" { "never" }
                }
            }
            div { button type="submit" { "Create token" } }
        }
        h2 { "Your tokens" }
        @if list.is_empty() {
            p class="muted" { "No tokens yet." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Scopes" }
                        th scope="col" class="hide-narrow" { "Created" } th scope="col" { "Expires" }
                        th scope="col" class="hide-narrow" { "Last used" } th scope="col" { "State" }
                    } }
                    tbody {
                        @for token in &list {
                            tr {
                                td class="mono" { (token.name) }
                                td class="mono" { (token.scopes.join(" ")) }
                                td class="hide-narrow" { (when(Some(token.created_at))) }
                                td { (when(token.expires_at)) }
                                td class="hide-narrow" { (when(token.last_used_at)) }
                                td {
                                    @if token.revoked_at.is_some() {
                                        span class="badge" { "revoked" }
                                    } @else {
                                        details class="confirm" {
                                            summary { "Revoke " (token.name) }
                                            form method="post" action=(format!("/tokens/{}/revoke", token.name)) {
                                                (csrf_field(ctx.session.as_ref()))
                                                p { "Whatever uses it stops working at once." }
                                                button class="danger" type="submit" { "Revoke " (token.name) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ctx.page("Access tokens", body)
}

async fn create_token(ctx: &Ctx<'_>, new: NewToken) -> PageResult {
    let Some(api) = ctx.api() else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "Access control is off.",
        ));
    };
    let created = api::tokens::issue(&api, new).await?;
    // The secret is on this page only, which no cache keeps (`no-store`).
    tokens(ctx, Some(created)).await
}

async fn revoke_token(ctx: &Ctx<'_>, name: &Name) -> PageResult {
    let Some(api) = ctx.api() else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "Access control is off.",
        ));
    };
    api::tokens::revoke(&api, name).await?;
    Ok(see_other("/tokens"))
}

async fn users(ctx: &Ctx<'_>) -> PageResult {
    let Some(api) = ctx.api() else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "Access control is off.",
        ));
    };
    let list = api::users::all(&api).await?.users;
    let own = ctx.session.as_ref().map(|s| s.user.as_str());
    let signed_out = query_pairs(ctx.parts)
        .into_iter()
        .find(|(k, _)| k == "signed-out")
        .map(|(_, v)| v);
    let body = html! {
        h1 { "Users" }
        @if let Some(user) = &signed_out {
            div class="notice ok" role="status" { (user) " is signed out of every console session." }
        }
        p class="lead" { "Disabling a user ends their console sessions and refuses their passwords and tokens at once; enabling them lets them sign in again." }
        div class="table-wrap" {
            table {
                thead { tr {
                    th scope="col" { "User" } th scope="col" { "Role" }
                    th scope="col" class="hide-narrow" { "Created" } th scope="col" { "State" }
                    th scope="col" { "Action" }
                } }
                tbody {
                    @for user in &list {
                        tr {
                            td { (user.name) }
                            td { @if user.admin { "administrator" } @else { "user" } }
                            td class="hide-narrow" { (when(Some(user.created_at))) }
                            td { @if user.disabled { span class="badge" { "disabled" } } @else { "enabled" } }
                            td {
                                @if Some(user.name.as_str()) == own {
                                    a href="/account" { "your account" }
                                } @else if user.disabled {
                                    form class="inline" method="post" action=(format!("/admin/users/{}/enable", user.name)) {
                                        (csrf_field(ctx.session.as_ref()))
                                        button class="secondary" type="submit" { "Enable " (user.name) }
                                    }
                                } @else {
                                    details class="confirm" {
                                        summary { "Disable " (user.name) }
                                        form method="post" action=(format!("/admin/users/{}/disable", user.name)) {
                                            (csrf_field(ctx.session.as_ref()))
                                            p { "They are signed out everywhere, and their tokens stop working." }
                                            button class="danger" type="submit" { "Disable " (user.name) }
                                        }
                                    }
                                    " "
                                    form class="inline" method="post" action=(format!("/admin/users/{}/sign-out", user.name)) {
                                        (csrf_field(ctx.session.as_ref()))
                                        button class="secondary" type="submit" { "Sign " (user.name) " out everywhere" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ctx.page("Users", body)
}

async fn set_user_disabled(ctx: &Ctx<'_>, name: &Name, disabled: bool) -> PageResult {
    let Some(api) = ctx.api() else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "Access control is off.",
        ));
    };
    let update = api::users::UserUpdate {
        admin: None,
        disabled: Some(disabled),
    };
    api::users::update(&api, name, update).await?;
    Ok(see_other("/admin/users"))
}
