//! The console's lifecycle pages: a namespace's quotas, retention policy
//! and immutable-tag rules (`/namespaces/{ns}/lifecycle`), its trash
//! (`/namespaces/{ns}/trash`), and the forms that change them. Every change
//! goes through the same function of the management API's module as the
//! API's handler (`api::quotas::apply`, `api::retention::set`, …), so the
//! console and the API validate, record and report alike.

use berth_auth::Action;
use berth_oci::{Digest, RepoName};
use maud::{html, Markup};
use time::OffsetDateTime;

use super::html::{csrf_field, size, when};
use super::see_other;
use super::views::{
    image_path, query_pairs, query_string, repository_path, short_digest, Ctx, PageResult,
};
use crate::api;
use crate::api::error::ManagementError;
use crate::api::immutable::{NewImmutableRule, PatternParam, RuleScope};
use crate::api::permission::Permission;
use crate::api::quotas::{QuotaFigures, QuotaLimits};
use crate::api::retention::{RetentionPolicyRequest, RetentionRunView, Untagged};
use crate::api::trash::{RestoredImageView, TrashListing};
use crate::api::types::Name;

/// Entries per page of a namespace's trash.
const TRASH_PAGE_SIZE: &str = "50";

pub fn lifecycle_path(namespace: &Name) -> String {
    format!("/namespaces/{namespace}/lifecycle")
}

pub fn trash_path(namespace: &Name) -> String {
    format!("/namespaces/{namespace}/trash")
}

fn time_of(seconds: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).ok()
}

/// Seconds as the forms write an age: `7d`, `12h`, `30m` (whole minutes,
/// rounded up).
fn age_text(seconds: u64) -> String {
    if seconds == 0 {
        "0".to_string()
    } else if seconds.is_multiple_of(86_400) {
        format!("{}d", seconds / 86_400)
    } else if seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else {
        format!("{}m", seconds.div_ceil(60))
    }
}

/// Usage against a limit: the figures, and a meter when there is a limit.
fn usage(id: &str, label: &str, figures: &QuotaFigures) -> Markup {
    html! {
        div class="usage" {
            p {
                strong { (label) ": " }
                (size(figures.used)) " used"
                @match figures.limit {
                    Some(limit) => {
                        " of " (size(limit))
                        @if figures.default { " (the registry-wide default)" }
                    }
                    None => " · no limit",
                }
            }
            @if let Some(limit) = figures.limit {
                meter id=(id) aria-label=(label) min="0" max=(limit) high=(limit / 10 * 9) value=(figures.used.min(limit)) {
                    (size(figures.used)) " of " (size(limit))
                }
            }
        }
    }
}

/// `GET /namespaces/{ns}/lifecycle`, and the same page after a run of the
/// retention policy (`run`) or a change (`notice`).
pub(super) async fn lifecycle(
    ctx: &Ctx<'_>,
    namespace: &Name,
    run: Option<RetentionRunView>,
) -> PageResult {
    let registry = &ctx.state.registry;
    let quota = api::quotas::view(
        registry
            .quota(namespace.as_str())
            .await
            .map_err(ManagementError::from)?,
    );
    let policy = registry
        .retention_policies(Some(namespace.as_str()))
        .await
        .map_err(ManagementError::from)?
        .into_iter()
        .find(|p| p.namespace == namespace.as_str())
        .map(api::retention::policy_view);
    let rules: Vec<_> = registry
        .immutable_rules(Some(namespace.as_str()))
        .await
        .map_err(ManagementError::from)?
        .into_iter()
        .map(api::immutable::rule_view)
        .collect();
    let may_set_quota = ctx.may(Permission::Administrator).await;
    let may_manage = ctx
        .may(Permission::Namespace(
            namespace.clone(),
            Action::ManageSettings,
        ))
        .await;
    let query = query_pairs(ctx.parts);
    // A run's figures come back in the redirect's query (see
    // `run_retention`); they only say what the page says, so a hand-made
    // link can show nothing worse than wrong numbers.
    let figure = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let notice = query
        .iter()
        .find(|(k, _)| k == "done")
        .and_then(|(_, v)| match v.as_str() {
            "quota" => Some("The limits are set.".to_string()),
            "retention" => Some("The retention policy is set.".to_string()),
            "retention-removed" => Some("The retention policy is removed.".to_string()),
            "retention-run" => Some(format!(
                "The policy ran. Went to the trash: {} images; {} stay; {} selected but left alone.",
                figure("trashed"),
                figure("kept"),
                figure("skipped")
            )),
            "rule" => Some("The immutable-tag rule is added.".to_string()),
            "rule-removed" => Some("The immutable-tag rule is removed.".to_string()),
            _ => None,
        });
    let body = html! {
        ul class="crumbs" {
            li { a href="/namespaces" { "Namespaces" } }
            li { a href=(format!("/namespaces/{namespace}")) { (namespace) } }
            li { "Lifecycle" }
        }
        h1 { (namespace) ": lifecycle" }
        @if let Some(notice) = notice { div class="notice ok" role="status" { (notice) } }
        p { a href=(trash_path(namespace)) { "Trash: deleted images, restorable" } }

        h2 id="quota" { "Quotas" }
        (usage("storage-meter", "Storage", &quota.storage))
        (usage("traffic-meter", "Pull traffic this month", &quota.traffic))
        @if may_set_quota {
            form class="stack" method="post" action=(format!("/namespaces/{namespace}/quota")) {
                (csrf_field(ctx.session.as_ref()))
                div {
                    label for="storage" { "Storage limit" }
                    input type="text" id="storage" name="storage" maxlength="32" placeholder="10GB" aria-describedby="limit-help";
                }
                div {
                    label for="traffic" { "Monthly pull traffic limit" }
                    input type="text" id="traffic" name="traffic" maxlength="32" placeholder="100GB" aria-describedby="limit-help";
                }
                p id="limit-help" class="muted" {
                    "A size such as " code { "10GB" } " or " code { "500MiB" } ", "
                    code { "unlimited" } " (exempt from the registry-wide default), or "
                    code { "default" } " (back to it). Left empty, a limit stays as it is. "
                    "A lower limit deletes nothing: it refuses pushes that add bytes."
                }
                div { button type="submit" { "Set limits" } }
            }
        }

        h2 id="retention" { "Retention policy" }
        @match &policy {
            Some(policy) => {
                p {
                    "Keep the newest " strong { (policy.keep) } " tagged images of each repository; "
                    @match policy.untagged { Untagged::Keep => "untagged images stay", Untagged::Delete => "untagged images go" }
                    @if policy.min_age > 0 { "; nothing younger than " (age_text(policy.min_age)) " goes" }
                    @if let Some(tags) = &policy.keep_tags { "; tags matching " code { (tags) } " always stay" }
                    ". Set by " (policy.author) " on " (when(time_of(policy.updated_at))) "."
                }
            }
            None => p class="muted" { "No policy: nothing is deleted on a schedule." }
        }
        @if may_manage {
            form class="stack" method="post" action=(format!("/namespaces/{namespace}/retention")) {
                (csrf_field(ctx.session.as_ref()))
                div {
                    label for="keep" { "Keep the newest (tagged images per repository)" }
                    input type="number" id="keep" name="keep" min="0" max="1000000" required value=(policy.as_ref().map_or(10, |p| p.keep));
                }
                div {
                    label for="untagged" { "Untagged images" }
                    select id="untagged" name="untagged" {
                        @let delete = policy.as_ref().is_some_and(|p| p.untagged == Untagged::Delete);
                        option value="keep" selected[!delete] { "keep" }
                        option value="delete" selected[delete] { "delete" }
                    }
                }
                div {
                    label for="min_age" { "Minimum age" }
                    input type="text" id="min_age" name="min_age" maxlength="16" placeholder="7d" aria-describedby="min-age-help" value=(policy.as_ref().map_or(String::new(), |p| if p.min_age > 0 { age_text(p.min_age) } else { String::new() }));
                    p id="min-age-help" class="muted" { "Nothing younger goes: " code { "7d" } ", " code { "12h" } ", " code { "2w" } "; empty for none." }
                }
                div {
                    label for="keep_tags" { "Tags always kept (regular expression)" }
                    input type="text" id="keep_tags" name="keep_tags" maxlength="1024" placeholder="^v[0-9]+\\.[0-9]+\\.[0-9]+$" value=(policy.as_ref().and_then(|p| p.keep_tags.clone()).unwrap_or_default());
                }
                div { button type="submit" { "Set policy" } }
            }
            @if policy.is_some() {
                div class="actions" {
                    form class="inline" method="post" action=(format!("/namespaces/{namespace}/retention/run")) {
                        (csrf_field(ctx.session.as_ref()))
                        input type="hidden" name="dry_run" value="true";
                        button class="secondary" type="submit" { "Preview" }
                    }
                    details class="confirm" {
                        summary { "Run now" }
                        form method="post" action=(format!("/namespaces/{namespace}/retention/run")) {
                            (csrf_field(ctx.session.as_ref()))
                            input type="hidden" name="dry_run" value="false";
                            p { "What the policy selects goes to the trash, restorable until it expires." }
                            button class="danger" type="submit" { "Run the policy now" }
                        }
                    }
                    details class="confirm" {
                        summary { "Remove policy" }
                        form method="post" action=(format!("/namespaces/{namespace}/retention/remove")) {
                            (csrf_field(ctx.session.as_ref()))
                            p { "Nothing is deleted on a schedule any more." }
                            button class="danger" type="submit" { "Remove the policy" }
                        }
                    }
                }
            }
        }
        @if let Some(run) = &run { (run_report(run)) }

        h2 id="immutable" { "Immutable tags" }
        p class="muted" { "A tag matching a rule can be pushed once, then never moved to another image nor deleted." }
        @if rules.is_empty() {
            p class="muted" { "No rules." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Where" } th scope="col" { "Tags" }
                        th scope="col" class="hide-narrow" { "Added by" } th scope="col" class="hide-narrow" { "Added" }
                        @if may_manage { th scope="col" { "Action" } }
                    } }
                    tbody {
                        @for rule in &rules {
                            tr {
                                td class="mono" { (rule.scope) }
                                td class="mono" { (rule.tags) }
                                td class="hide-narrow" { (rule.author) }
                                td class="hide-narrow" { (when(time_of(rule.created_at))) }
                                @if may_manage {
                                    td {
                                        form class="inline" method="post" action=(format!("/namespaces/{namespace}/immutable/remove")) {
                                            (csrf_field(ctx.session.as_ref()))
                                            input type="hidden" name="scope" value=(rule.scope);
                                            input type="hidden" name="tags" value=(rule.tags);
                                            button class="secondary" type="submit" { "Remove " (rule.tags) " in " (rule.scope) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if may_manage {
            form class="toolbar" method="post" action=(format!("/namespaces/{namespace}/immutable")) {
                (csrf_field(ctx.session.as_ref()))
                div {
                    label for="rule-scope" { "Where" }
                    input type="text" id="rule-scope" name="scope" maxlength="255" value=(namespace) aria-describedby="rule-help";
                }
                div class="grow" {
                    label for="rule-tags" { "Tags" }
                    input type="text" id="rule-tags" name="tags" maxlength="128" required placeholder="v*" aria-describedby="rule-help";
                }
                button type="submit" { "Add rule" }
            }
            p id="rule-help" class="muted" { "Where: " code { (namespace) } " (every repository) or " code { (namespace) "/REPOSITORY" } ". Tags: " code { "*" } " stands for any run of characters, " code { "?" } " for one; the whole tag must match." }
        }
    };
    ctx.page(&format!("{namespace}: lifecycle"), body)
}

/// What a retention run did, or would do (a preview).
fn run_report(run: &RetentionRunView) -> Markup {
    html! {
        section aria-labelledby="run-title" {
            h3 id="run-title" {
                @if run.dry_run { "Preview: what the policy would delete now" } @else { "The policy ran" }
            }
            div class="notice ok" role="status" {
                @if run.dry_run {
                    "Would go to the trash: " (run.removed.len()) " images; " (run.kept) " stay."
                } @else {
                    "Went to the trash: " (run.removed.len()) " images; " (run.kept) " stay."
                }
            }
            @if !run.removed.is_empty() {
                div class="table-wrap" {
                    table {
                        thead { tr {
                            th scope="col" { "Repository" } th scope="col" { "Digest" }
                            th scope="col" { "Tags" } th scope="col" class="hide-narrow" { "Why" }
                        } }
                        tbody {
                            @for item in &run.removed {
                                tr {
                                    td { (item.repository) }
                                    td class="mono" { (short_digest(&item.digest)) }
                                    td class="mono" { (item.tags.join(" ")) }
                                    td class="hide-narrow" { (item.reason) }
                                }
                            }
                        }
                    }
                }
            }
            @if !run.skipped.is_empty() {
                p { "Selected but left alone:" }
                ul {
                    @for item in &run.skipped {
                        li { (item.repository) "@" (short_digest(&item.digest)) ": " (item.skipped.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

pub(super) async fn set_quota(ctx: &Ctx<'_>, namespace: &Name, limits: QuotaLimits) -> PageResult {
    api::quotas::apply(&ctx.state.registry, &ctx.actor(), namespace, limits).await?;
    Ok(see_other(&format!(
        "{}?done=quota#quota",
        lifecycle_path(namespace)
    )))
}

pub(super) async fn set_retention(
    ctx: &Ctx<'_>,
    namespace: &Name,
    request: RetentionPolicyRequest,
) -> PageResult {
    api::retention::set(&ctx.state.registry, &ctx.actor(), namespace, request).await?;
    Ok(see_other(&format!(
        "{}?done=retention#retention",
        lifecycle_path(namespace)
    )))
}

pub(super) async fn remove_retention(ctx: &Ctx<'_>, namespace: &Name) -> PageResult {
    api::retention::remove(&ctx.state.registry, &ctx.actor(), namespace).await?;
    Ok(see_other(&format!(
        "{}?done=retention-removed#retention",
        lifecycle_path(namespace)
    )))
}

/// Previews the policy and shows the page with what it would do (a
/// preview changes nothing, so its answer may be reloaded), or runs it and
/// redirects to the page with what it did, so that reloading the page does
/// not run the policy again. What went is listed in the trash.
pub(super) async fn run_retention(ctx: &Ctx<'_>, namespace: &Name, dry_run: bool) -> PageResult {
    let run = api::retention::run(&ctx.state.registry, &ctx.actor(), namespace, dry_run).await?;
    if dry_run {
        return lifecycle(ctx, namespace, Some(run)).await;
    }
    Ok(see_other(&format!(
        "{}?done=retention-run&trashed={}&kept={}&skipped={}#retention",
        lifecycle_path(namespace),
        run.removed.len(),
        run.kept,
        run.skipped.len()
    )))
}

pub(super) async fn add_rule(ctx: &Ctx<'_>, new: NewImmutableRule) -> PageResult {
    let namespace = new.scope.namespace.clone();
    api::immutable::add(&ctx.state.registry, &ctx.actor(), new).await?;
    Ok(see_other(&format!(
        "{}?done=rule#immutable",
        lifecycle_path(&namespace)
    )))
}

pub(super) async fn remove_rule(
    ctx: &Ctx<'_>,
    scope: &RuleScope,
    tags: &PatternParam,
) -> PageResult {
    api::immutable::remove(&ctx.state.registry, &ctx.actor(), scope, tags).await?;
    Ok(see_other(&format!(
        "{}?done=rule-removed#immutable",
        lifecycle_path(&scope.namespace)
    )))
}

/// The most tags a restore's notice names (its redirect carries them).
const MAX_RESTORED_TAGS_SHOWN: usize = 50;

/// What a restore did, as its redirect tells the trash page.
struct RestoredNotice {
    repository: RepoName,
    digest: Digest,
    tags: Vec<String>,
    referrers: usize,
    /// Tags not given back, with the image that has the name now.
    conflicts: Vec<(String, Option<Digest>)>,
}

/// The notice of the restore whose redirect led here (`restored`, `tag`,
/// `referrers`, `conflict`); `None` without one. Every value is checked as
/// it would be anywhere else, so a hand-made link shows nothing but valid
/// names.
fn restored_notice(query: &[(String, String)]) -> Option<RestoredNotice> {
    let image = &query.iter().find(|(k, _)| k == "restored")?.1;
    let (repository, digest) = image.split_once('@')?;
    let values = |key: &'static str| {
        query
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let tag = |text: &str| {
        berth_oci::Tag::parse(text)
            .ok()
            .map(|t| t.as_str().to_string())
    };
    Some(RestoredNotice {
        repository: RepoName::parse(repository).ok()?,
        digest: Digest::parse(digest).ok()?,
        tags: values("tag").filter_map(tag).collect(),
        referrers: values("referrers")
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        conflicts: values("conflict")
            .filter_map(|text| match text.split_once('@') {
                Some((name, current)) => Some((tag(name)?, Digest::parse(current).ok())),
                None => Some((tag(text)?, None)),
            })
            .collect(),
    })
}

/// `GET /namespaces/{ns}/trash`, with a restore's notice after one.
pub(super) async fn trash(ctx: &Ctx<'_>, namespace: &Name) -> PageResult {
    let query = query_pairs(ctx.parts);
    let restored = restored_notice(&query);
    let cursor = if restored.is_some() {
        None
    } else {
        query
            .iter()
            .find(|(k, v)| k == "cursor" && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let mut pairs = vec![("limit", TRASH_PAGE_SIZE)];
    if let Some(cursor) = &cursor {
        pairs.push(("cursor", cursor));
    }
    let listing = TrashListing::parse(Some(&query_string(&pairs)))?;
    let registry = &ctx.state.registry;
    let (entries, next) =
        api::trash::read_page(registry, Some(namespace.as_str()), &listing).await?;
    let entries: Vec<_> = entries
        .into_iter()
        .map(|entry| {
            let repository = entry.repository.clone();
            (repository, api::trash::entry_view(registry, entry))
        })
        .collect();
    // Restoring needs delete on the repository: one decision per
    // repository on the page.
    let mut may_restore: Vec<(RepoName, bool)> = Vec::new();
    for (repository, _) in &entries {
        if !may_restore.iter().any(|(r, _)| r == repository) {
            let allowed = ctx
                .may(Permission::Repositories(vec![(
                    repository.clone(),
                    Action::Delete,
                )]))
                .await;
            may_restore.push((repository.clone(), allowed));
        }
    }
    let allowed = |repository: &RepoName| {
        may_restore
            .iter()
            .any(|(r, allowed)| r == repository && *allowed)
    };
    let body = html! {
        ul class="crumbs" {
            li { a href="/namespaces" { "Namespaces" } }
            li { a href=(format!("/namespaces/{namespace}")) { (namespace) } }
            li { "Trash" }
        }
        h1 { (namespace) ": trash" }
        p class="lead" { "Deleted images wait here, restorable with their tags and referrers, until they expire; then the garbage collector reclaims what nothing else holds." }
        @if let Some(restored) = &restored {
            div class="notice ok" role="status" {
                p {
                    a href=(image_path(restored.repository.as_str(), restored.digest.as_str())) { (restored.repository) "@" (short_digest(restored.digest.as_str())) }
                    " is back."
                    @if !restored.tags.is_empty() { " Tags restored: " code { (restored.tags.join(" ")) } "." }
                    @if restored.referrers > 0 { " With " (restored.referrers) " referrers." }
                }
                @if !restored.conflicts.is_empty() {
                    p { "Tags not restored, because another image has the name now:" }
                    ul {
                        @for (tag, current) in &restored.conflicts {
                            li { code { (tag) } @if let Some(current) = current { " (now " span class="mono" { (short_digest(current.as_str())) } ")" } }
                        }
                    }
                }
            }
        }
        @if entries.is_empty() {
            p class="muted" { "The trash is empty" @if cursor.is_some() { " from here on" } "." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Image" } th scope="col" { "Tags" }
                        th scope="col" class="hide-narrow" { "Deleted" } th scope="col" class="hide-narrow" { "By" }
                        th scope="col" { "Expires" } th scope="col" { "Action" }
                    } }
                    tbody {
                        @for (repository, entry) in &entries {
                            tr {
                                td { (entry.repository) " " span class="mono" { (short_digest(&entry.digest)) } }
                                td class="mono" { (entry.tags.join(" ")) }
                                td class="hide-narrow" { (when(Some(entry.deleted_at))) }
                                td class="hide-narrow" { (entry.deleted_by) }
                                td { (when(Some(entry.expires_at))) }
                                td {
                                    @if allowed(repository) {
                                        form class="inline" method="post" action=(format!("{}/-/images/{}/restore", repository_path(&entry.repository), entry.digest)) {
                                            (csrf_field(ctx.session.as_ref()))
                                            button type="submit" { "Restore " (short_digest(&entry.digest)) }
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
        @if let Some(next) = &next {
            nav class="pager" aria-label="Pages" {
                a href=(format!("{}?{}", trash_path(namespace), query_string(&[("cursor", next)]))) { "Next page" }
            }
        }
    };
    ctx.page(&format!("{namespace}: trash"), body)
}

pub(super) async fn restore(ctx: &Ctx<'_>, repository: &RepoName, digest: &Digest) -> PageResult {
    let restored =
        api::trash::restore_image(&ctx.state.registry, &ctx.actor(), repository, digest).await?;
    let namespace = Name::try_from(repository.namespace().to_string())
        .map_err(ManagementError::invalid_request)?;
    Ok(see_other(&restored_link(&namespace, &restored)))
}

/// The trash page with a restore's notice: the restore answers with a
/// redirect to it, so that reloading the page does not post the restore
/// again. At most [`MAX_RESTORED_TAGS_SHOWN`] tags and conflicts are named.
fn restored_link(namespace: &Name, restored: &RestoredImageView) -> String {
    let image = format!("{}@{}", restored.repository, restored.digest);
    let referrers = restored.referrers.len().to_string();
    let conflicts: Vec<String> = restored
        .conflicts
        .iter()
        .take(MAX_RESTORED_TAGS_SHOWN)
        .map(|conflict| match &conflict.current {
            Some(current) => format!("{}@{current}", conflict.tag),
            None => conflict.tag.clone(),
        })
        .collect();
    let mut pairs: Vec<(&str, &str)> = vec![("restored", &image), ("referrers", &referrers)];
    pairs.extend(
        restored
            .tags
            .iter()
            .take(MAX_RESTORED_TAGS_SHOWN)
            .map(|tag| ("tag", tag.as_str())),
    );
    pairs.extend(conflicts.iter().map(|c| ("conflict", c.as_str())));
    format!("{}?{}", trash_path(namespace), query_string(&pairs))
}

/// Deletes an image (every tag of it) into the trash, as the API's delete.
pub(super) async fn delete_image(
    ctx: &Ctx<'_>,
    repository: &RepoName,
    digest: &Digest,
) -> PageResult {
    ctx.state
        .registry
        .delete_image(
            &ctx.actor(),
            repository,
            &berth_oci::Reference::Digest(digest.clone()),
        )
        .await
        .map_err(ManagementError::from)?;
    Ok(see_other(&format!(
        "{}?{}",
        repository_path(repository.as_str()),
        query_string(&[("deleted", &digest.to_string())])
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_written_as_the_form_reads_them() {
        for (seconds, text) in [
            (0, "0"),
            (60, "1m"),
            (61, "2m"),
            (3600, "1h"),
            (86_400, "1d"),
            (7 * 86_400, "7d"),
            (90_000, "25h"),
            (90_001, "1501m"),
        ] {
            assert_eq!(age_text(seconds), text, "{seconds}");
            if seconds > 0 {
                let parsed = berth_auth::Expiry::parse(text).unwrap();
                assert!(
                    matches!(parsed, berth_auth::Expiry::After(d) if d.whole_seconds() as u64 >= seconds),
                    "{text}"
                );
            }
        }
    }

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_restores_notice_shows_only_valid_names() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let image = format!("team/app@{digest}");
        let conflict = format!("v2@{digest}");
        let notice = restored_notice(&pairs(&[
            ("restored", &image),
            ("referrers", "2"),
            ("tag", "v1"),
            ("tag", "<script>"),
            ("conflict", &conflict),
            ("conflict", "latest"),
            ("conflict", "bad tag@x"),
        ]))
        .unwrap();
        assert_eq!(notice.repository.as_str(), "team/app");
        assert_eq!(notice.digest.as_str(), digest);
        assert_eq!(notice.tags, ["v1"]);
        assert_eq!(notice.referrers, 2);
        assert_eq!(
            notice.conflicts,
            [
                ("v2".to_string(), Some(Digest::parse(&digest).unwrap())),
                ("latest".to_string(), None),
            ]
        );
        // No notice without a valid image.
        for image in ["", "team/app", "team/app@sha256:zz", "Team/App@sha256:0"] {
            assert!(
                restored_notice(&pairs(&[("restored", image)])).is_none(),
                "{image}"
            );
        }
        assert!(restored_notice(&pairs(&[("tag", "v1")])).is_none());
    }
}
