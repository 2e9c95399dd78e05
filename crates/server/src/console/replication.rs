//! The console's replication pages, for administrators (as
//! `/api/v1/replications`): the rules with their last run and the form for
//! a new one, a rule with its recent runs, and "Run now" and "Delete". They
//! call the management API's own functions (`api::replications::summaries`,
//! `details`, `add`, `start`, `delete`), so the rules' credentials are
//! sealed and never shown back the same way.

use axum::http::StatusCode;
use maud::{html, Markup};
use time::OffsetDateTime;

use super::html::{csrf_field, size, when};
use super::see_other;
use super::views::{query_pairs, Ctx, Failure, PageResult};
use crate::api;
use crate::api::replications::{NewReplicationRequest, ReplicationView, RunView};
use crate::api::types::Name;

pub fn rule_path(name: &str) -> String {
    format!("/admin/replications/{name}")
}

fn at(seconds: i64) -> Markup {
    when(OffsetDateTime::from_unix_timestamp(seconds).ok())
}

fn api_context<'a>(ctx: &'a Ctx<'a>) -> Result<api::Context<'a>, Failure> {
    ctx.api()
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "Access control is off."))
}

/// When a rule runs: on push, every so often, or when asked.
fn triggers(rule: &ReplicationView) -> String {
    let mut triggers = Vec::new();
    if rule.on_push {
        triggers.push("on push".to_string());
    }
    if let Some(secs) = rule.interval_secs {
        triggers.push(format!("every {}", interval_text(secs)));
    }
    if triggers.is_empty() {
        "when run".to_string()
    } else {
        triggers.join(", ")
    }
}

fn interval_text(secs: i64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn status_badge(run: Option<&RunView>) -> Markup {
    match run {
        None => html! { span class="muted" { "never run" } },
        Some(run) => html! { span class=(format!("badge run-{}", run.status)) { (run.status) } },
    }
}

/// `GET /admin/replications`.
pub(super) async fn list(ctx: &Ctx<'_>) -> PageResult {
    api_context(ctx)?;
    let rules = api::replications::summaries(&ctx.state.registry).await?;
    let done = query_pairs(ctx.parts)
        .into_iter()
        .find(|(k, _)| k == "deleted")
        .map(|(_, v)| v);
    let body = html! {
        h1 { "Replication" }
        @if let Some(name) = &done {
            div class="notice ok" role="status" { "Rule " (name) " and its history are deleted." }
        }
        p class="lead" { "Rules copy images between this registry and others: push rules send what is pushed here, pull rules fetch from the other registry." }
        @if rules.is_empty() {
            p class="muted" { "No rules yet." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Rule" } th scope="col" { "Direction" }
                        th scope="col" class="hide-narrow" { "Remote" }
                        th scope="col" { "Repositories" } th scope="col" class="hide-narrow" { "Tags" }
                        th scope="col" class="hide-narrow" { "Runs" } th scope="col" { "Last run" }
                    } }
                    tbody {
                        @for summary in &rules {
                            @let rule = &summary.rule;
                            tr {
                                td { a href=(rule_path(&rule.name)) { (rule.name) } }
                                td { (rule.direction) }
                                td class="hide-narrow mono" { (rule.url) }
                                td class="mono" { (rule.repositories) }
                                td class="hide-narrow mono" { (rule.tags.as_deref().unwrap_or("every tag")) }
                                td class="hide-narrow" { (triggers(rule)) }
                                td {
                                    (status_badge(summary.last_run.as_ref()))
                                    @if let Some(run) = &summary.last_run { " " (at(run.started_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 id="new" { "New rule" }
        (new_rule_form(ctx))
    };
    ctx.page("Replication", body)
}

fn new_rule_form(ctx: &Ctx<'_>) -> Markup {
    html! {
        form class="stack" method="post" action="/admin/replications" {
            (csrf_field(ctx.session.as_ref()))
            div {
                label for="name" { "Name" }
                input type="text" id="name" name="name" required maxlength="64" placeholder="to-dr-site";
            }
            div {
                label for="direction" { "Direction" }
                select id="direction" name="direction" {
                    option value="push" { "push: from here to the remote" }
                    option value="pull" { "pull: from the remote to here" }
                }
            }
            div {
                label for="url" { "Remote registry URL" }
                input type="url" id="url" name="url" required maxlength="2048" placeholder="https://registry.example.com";
            }
            div {
                label for="credentials" { "Credentials (optional)" }
                input type="password" id="credentials" name="credentials" maxlength="4096" autocomplete="off" aria-describedby="credentials-help";
                p id="credentials-help" class="muted" { code { "user:password" } " or a token; stored sealed and never shown again." }
            }
            div {
                label for="repositories" { "Repositories" }
                input type="text" id="repositories" name="repositories" required maxlength="255" placeholder="team/**" aria-describedby="repositories-help";
                p id="repositories-help" class="muted" { code { "*" } " within a path component, " code { "**" } " across them." }
            }
            div {
                label for="tags" { "Tags (optional)" }
                input type="text" id="tags" name="tags" maxlength="255" placeholder="v*" aria-describedby="tags-help";
                p id="tags-help" class="muted" { "A glob; every tag when empty." }
            }
            div {
                label for="interval" { "Run every (seconds, optional)" }
                input type="number" id="interval" name="interval" min="10" max="2592000" placeholder="3600";
            }
            div class="choice" {
                input type="checkbox" id="on_push" name="on_push" value="true";
                label for="on_push" { "Replicate each push at once (push rules)" }
            }
            button type="submit" { "Create rule" }
        }
    }
}

/// `POST /admin/replications`.
pub(super) async fn create(ctx: &Ctx<'_>, new: NewReplicationRequest) -> PageResult {
    let api = api_context(ctx)?;
    let rule = api::replications::add(&api, new).await?;
    Ok(see_other(&rule_path(&rule.name)))
}

/// `GET /admin/replications/{name}`.
pub(super) async fn rule(ctx: &Ctx<'_>, name: &Name) -> PageResult {
    api_context(ctx)?;
    let details = api::replications::details(&ctx.state.registry, name).await?;
    let rule = &details.rule;
    let started = query_pairs(ctx.parts).iter().any(|(k, _)| k == "started");
    let path = rule_path(&rule.name);
    let body = html! {
        ul class="crumbs" { li { a href="/admin/replications" { "Replication" } } li { (rule.name) } }
        h1 { "Rule " (rule.name) }
        @if started {
            div class="notice ok" role="status" { "A run started; reload to follow it." }
        }
        dl class="facts" {
            dt { "Direction" } dd { (rule.direction) }
            dt { "Remote" } dd class="mono" { (rule.url) }
            dt { "Credentials" } dd { @if rule.authenticated { "set (never shown)" } @else { "none" } }
            dt { "Repositories" } dd class="mono" { (rule.repositories) }
            dt { "Tags" } dd class="mono" { (rule.tags.as_deref().unwrap_or("every tag")) }
            dt { "Runs" } dd { (triggers(rule)) }
            dt { "Created" } dd { "by " (rule.created_by) ", " (at(rule.created_at)) }
        }
        div class="actions" {
            form class="inline" method="post" action=(format!("{path}/run")) {
                (csrf_field(ctx.session.as_ref()))
                button type="submit" { "Run now" }
            }
            details class="confirm" {
                summary { "Delete rule" }
                form method="post" action=(format!("{path}/delete")) {
                    (csrf_field(ctx.session.as_ref()))
                    p { "The rule and its run history are deleted; nothing it copied is." }
                    button class="danger" type="submit" { "Delete rule " (rule.name) }
                }
            }
        }
        @if details.pending_deletes > 0 {
            h2 { "Deletions not yet on the remote" }
            p {
                (details.pending_deletes) " deleted tag(s) are still on the remote: it did not take \
                 their deletion. Every run of the rule tries again."
            }
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Tag" } th scope="col" { "Since" }
                        th scope="col" class="num" { "Attempts" } th scope="col" { "Last error" }
                    } }
                    tbody {
                        @for pending in &details.oldest_pending_deletes {
                            tr {
                                td class="mono" { (pending.repository) ":" (pending.tag) }
                                td { (at(pending.since)) }
                                td class="num" { (pending.attempts) }
                                td { (pending.error) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Recent runs" }
        @if details.runs.is_empty() {
            p class="muted" { "No runs yet." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Started" } th scope="col" { "Trigger" } th scope="col" { "Status" }
                        th scope="col" class="num" { "Copied" } th scope="col" class="num" { "Skipped" }
                        th scope="col" class="num hide-narrow" { "Blobs" } th scope="col" class="num hide-narrow" { "Bytes" }
                        th scope="col" { "Error" }
                    } }
                    tbody {
                        @for run in &details.runs {
                            tr {
                                td { (at(run.started_at)) }
                                td { (run.trigger) }
                                td { (status_badge(Some(run))) }
                                td class="num" { (run.images_copied) }
                                td class="num" { (run.images_skipped) }
                                td class="num hide-narrow" { (run.blobs_copied) }
                                td class="num hide-narrow" { (size(run.bytes)) }
                                td { (run.error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    };
    ctx.page(&format!("Rule {}", rule.name), body)
}

/// `POST /admin/replications/{name}/run`.
pub(super) async fn run(ctx: &Ctx<'_>, name: &Name) -> PageResult {
    let api = api_context(ctx)?;
    api::replications::start(&api, name).await?;
    Ok(see_other(&format!(
        "{}?started=1",
        rule_path(name.as_str())
    )))
}

/// `POST /admin/replications/{name}/delete`.
pub(super) async fn delete(ctx: &Ctx<'_>, name: &Name) -> PageResult {
    let api = api_context(ctx)?;
    api::replications::remove(&api, name).await?;
    Ok(see_other(&format!("/admin/replications?deleted={name}")))
}
