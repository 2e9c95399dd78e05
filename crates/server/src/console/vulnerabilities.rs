//! The console's vulnerability pages: an image's findings (on its page),
//! the form that exempts one finding, and a namespace's exemptions. An
//! exemption is made and removed through the management API's own
//! functions (`api::vulnerabilities::exempt`, `unexempt`), with the API's
//! permission row for its scope (`api::permission::exemption_scope`).

use berth_oci::{Reference, RepoName};
use maud::{html, Markup};
use time::OffsetDateTime;

use super::html::{bar_chart, csrf_field, when};
use super::see_other;
use super::views::{image_path, Ctx, PageResult};
use crate::api;
use crate::api::error::ManagementError;
use crate::api::permission::exemption_scope;
use crate::api::types::Name;
use crate::api::vulnerabilities::{
    exemption_cursor, Exemption, ExemptionListing, ExemptionScope, FindingView, FindingsSummary,
    NewExemption, VulnerabilityPolicy, VulnerabilityReport,
};

/// The most findings an image's page lists in each table; the API has
/// them all.
const MAX_FINDINGS_SHOWN: usize = 200;

/// The exemptions a namespace's page lists at a time.
const EXEMPTIONS_PER_PAGE: usize = 100;

/// The severities in the order people read them, worst first.
const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "unknown"];

pub fn exemptions_path(namespace: &str) -> String {
    format!("/namespaces/{namespace}/exemptions")
}

fn rank(severity: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|s| s.eq_ignore_ascii_case(severity))
        .unwrap_or(SEVERITIES.len())
}

/// An image's vulnerability findings on its page (`image` is the page's
/// path): its status, a chart by severity, the findings with a fix, worst
/// first, each with an "Exempt" link for those who may; with `show_all`,
/// the findings without a fix and the exempted ones too.
pub fn section(
    report: &VulnerabilityReport,
    image: &str,
    show_all: bool,
    may_exempt: bool,
) -> Markup {
    let mut by_severity: std::collections::BTreeMap<String, u64> = Default::default();
    for image in &report.images {
        for (severity, count) in &image.by_severity {
            *by_severity.entry(severity.to_lowercase()).or_default() += *count as u64;
        }
    }
    let mut bars: Vec<(String, u64)> = SEVERITIES
        .iter()
        .filter_map(|s| by_severity.get(*s).map(|n| (s.to_string(), *n)))
        .collect();
    bars.extend(
        by_severity
            .iter()
            .filter(|(s, _)| !SEVERITIES.contains(&s.as_str()))
            .map(|(s, n)| (s.clone(), *n)),
    );
    let collect = |pick: fn(&api::vulnerabilities::ImageReport) -> &Vec<FindingView>| {
        let mut findings: Vec<(&Option<String>, &FindingView)> = report
            .images
            .iter()
            .flat_map(|image| pick(image).iter().map(move |f| (&image.platform, f)))
            .collect();
        findings.sort_by_key(|(_, f)| rank(&f.severity));
        findings
    };
    let fixed = collect(|i| &i.findings);
    let unfixed = collect(|i| &i.unfixed);
    let exempted = collect(|i| &i.exempted);
    let count = |n: u64| n.to_string();
    let toggle = if show_all {
        html! { a href=(image) { "Show only the findings with a fix" } }
    } else {
        html! { a href=(format!("{image}?all=true#vulnerabilities")) { "Show all (including unfixed and exempted: " (unfixed.len() + exempted.len()) ")" } }
    };
    html! {
        h2 id="vulnerabilities" { "Vulnerabilities" }
        p { "Status: " strong id="vulnerability-status" { (report.status) } }
        @if !bars.is_empty() {
            (bar_chart("Findings with a fix, by severity", &bars, count))
        }
        p { (toggle) }
        @if !fixed.is_empty() {
            (findings_table("Findings with a fix", &fixed, image, may_exempt))
        }
        @if show_all {
            @if !unfixed.is_empty() {
                h3 { "Without a fix (not counted)" }
                (findings_table("Findings without a fix", &unfixed, image, may_exempt))
            }
            @if !exempted.is_empty() {
                h3 { "Exempted" }
                (findings_table("Exempted findings", &exempted, image, false))
            }
        }
    }
}

/// The overview's and a namespace page's vulnerability figures: how many
/// images have findings (fixable, not exempted, as last assessed) and a
/// chart of their findings by severity, every severity shown, zeros too.
pub fn findings_summary(findings: &FindingsSummary) -> Markup {
    let images = findings.images_with_issues;
    let counts = &findings.findings;
    let bars: Vec<(String, u64)> = SEVERITIES
        .iter()
        .zip([
            counts.critical,
            counts.high,
            counts.medium,
            counts.low,
            counts.unknown,
        ])
        .map(|(severity, n)| (severity.to_string(), n))
        .collect();
    html! {
        h2 id="findings" { "Vulnerabilities" }
        @if images == 0 {
            p class="muted" id="images-with-issues" {
                "No image has findings with a fix, as far as the Vulnerability Advisor has assessed them."
            }
        } @else {
            p id="images-with-issues" {
                strong { (images) } @if images == 1 { " image has" } @else { " images have" }
                " findings with a fix ("
                (findings.total_findings) " findings; exempted ones and those without a fix are not counted)."
            }
            (bar_chart("Findings with a fix, by severity", &bars, |n| n.to_string()))
        }
    }
}

fn findings_table(
    caption: &str,
    findings: &[(&Option<String>, &FindingView)],
    image: &str,
    may_exempt: bool,
) -> Markup {
    html! {
        div class="table-wrap" {
            table {
                caption class="visually-hidden" { (caption) }
                thead { tr {
                    th scope="col" { "Severity" } th scope="col" { "Advisory" }
                    th scope="col" { "Package" } th scope="col" { "Installed" }
                    th scope="col" { "Fixed in" } th scope="col" class="hide-narrow" { "Platform" }
                    @if may_exempt { th scope="col" { "Action" } }
                } }
                tbody {
                    @for (platform, finding) in findings.iter().take(MAX_FINDINGS_SHOWN) {
                        tr {
                            td { (finding.severity) }
                            td class="mono" { (finding.advisory) @if !finding.summary.is_empty() { div class="muted" { (finding.summary) } } }
                            td class="mono" { (finding.package) }
                            td class="mono" { (finding.installed_version) }
                            td class="mono" { (finding.fixed_version.as_deref().unwrap_or("")) }
                            td class="hide-narrow" { (platform.as_deref().unwrap_or("")) }
                            @if may_exempt {
                                td { a href=(format!("{image}/exempt/{}", encode(&finding.advisory))) { "Exempt " (finding.advisory) } }
                            }
                        }
                    }
                }
            }
        }
        @if findings.len() > MAX_FINDINGS_SHOWN {
            p class="muted" { "The first " (MAX_FINDINGS_SHOWN) " of " (findings.len()) "; " code { "berth" } " and the API list them all." }
        }
    }
}

/// What a path segment keeps as it is: the unreserved characters of
/// RFC 3986 (advisory ids are letters, digits and `-`).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path segment, percent-encoded.
fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

/// `GET /repositories/{repo}/-/images/{reference}/exempt/{issue}`: the
/// scopes the caller may exempt the finding in, from the narrowest (this
/// digest) to the whole registry (administrators), a reason and an expiry.
pub(super) async fn exempt_form(
    ctx: &Ctx<'_>,
    repository: &RepoName,
    reference: &Reference,
    issue: &str,
) -> PageResult {
    let report = api::vulnerabilities::assess(&ctx.state.registry, repository, reference).await?;
    let name = repository.as_str();
    let finding = report
        .images
        .iter()
        .flat_map(|image| image.findings.iter().chain(&image.unfixed))
        .find(|f| f.advisory == issue || f.aliases.iter().any(|a| a == issue));
    let mut candidates: Vec<(String, String)> = vec![(
        format!("{name}@{}", report.digest),
        "this image (by digest)".to_string(),
    )];
    if let Reference::Tag(tag) = reference {
        candidates.push((
            format!("{name}:{tag}"),
            format!("whatever the tag {tag} names"),
        ));
    }
    candidates.push((name.to_string(), format!("every image of {name}")));
    candidates.push((
        repository.namespace().to_string(),
        format!("every image of the namespace {}", repository.namespace()),
    ));
    candidates.push(("*".to_string(), "every image of the registry".to_string()));
    let mut scopes = Vec::new();
    for (scope, label) in candidates {
        let Ok(parsed) = ExemptionScope::try_from(scope.clone()) else {
            continue;
        };
        if ctx.may(exemption_scope(&parsed)).await {
            scopes.push((scope, label));
        }
    }
    let back = image_path(name, &reference.to_string());
    let title = format!("Exempt {issue}");
    let body = html! {
        ul class="crumbs" {
            li { a href=(format!("/namespaces/{}", repository.namespace())) { (repository.namespace()) } }
            li { a href=(format!("/repositories/{name}")) { (name) } }
            li { a href=(back) { (report.image) } }
        }
        h1 { (title) }
        @if let Some(finding) = finding {
            dl class="facts" {
                dt { "Advisory" } dd class="mono" { (finding.advisory) @if !finding.aliases.is_empty() { " (" (finding.aliases.join(", ")) ")" } }
                dt { "Severity" } dd { (finding.severity) }
                dt { "Package" } dd class="mono" { (finding.package) " " (finding.installed_version) }
                dt { "Fixed in" } dd class="mono" { (finding.fixed_version.as_deref().unwrap_or("no fix published")) }
                @if !finding.summary.is_empty() { dt { "Summary" } dd { (finding.summary) } }
            }
        } @else {
            p class="muted" { "The image has no finding of " code { (issue) } " now; an exemption still applies if it appears later." }
        }
        @if scopes.is_empty() {
            div class="notice error" role="alert" { "You may not exempt findings here: that is for the namespace's owners and the registry's administrators." }
        } @else {
            form class="stack" method="post" action="/exemptions" {
                (csrf_field(ctx.session.as_ref()))
                input type="hidden" name="issue" value=(issue);
                input type="hidden" name="back" value=(back);
                fieldset {
                    legend { "Where the finding stops counting" }
                    @for (i, (scope, label)) in scopes.iter().enumerate() {
                        div class="choice" {
                            input type="radio" id=(format!("scope-{i}")) name="scope" value=(scope) checked[i == 0];
                            label for=(format!("scope-{i}")) { (label) " " code { (scope) } }
                        }
                    }
                }
                div {
                    label for="reason" { "Reason" }
                    textarea id="reason" name="reason" rows="2" required maxlength="1000" aria-describedby="reason-help" {}
                    p id="reason-help" class="muted" { "Why it does not matter here, for whoever reads the exemption later." }
                }
                div {
                    label for="expires" { "Expires" }
                    select id="expires" name="expires" {
                        option value="30d" { "in 30 days" }
                        option value="90d" selected { "in 90 days" }
                        option value="365d" { "in a year" }
                        option value="never" { "never" }
                    }
                }
                div { button type="submit" { "Exempt " (issue) } }
            }
        }
    };
    ctx.page(&title, body)
}

/// `POST /exemptions`: made as the API makes it; back to the image, whose
/// verdict no longer counts the finding.
pub(super) async fn exempt(ctx: &Ctx<'_>, new: NewExemption, back: &str) -> PageResult {
    api::vulnerabilities::exempt(&ctx.state.registry, &ctx.actor(), new).await?;
    Ok(see_other(back))
}

/// `POST /exemptions/remove`.
pub(super) async fn remove(
    ctx: &Ctx<'_>,
    scope: &ExemptionScope,
    issue: &str,
    back: &str,
) -> PageResult {
    api::vulnerabilities::unexempt(&ctx.state.registry, &ctx.actor(), scope, issue).await?;
    Ok(see_other(back))
}

/// `POST /namespaces/{ns}/vulnerability-policy`: set as the API sets it.
pub(super) async fn set_policy(
    ctx: &Ctx<'_>,
    namespace: &Name,
    policy: VulnerabilityPolicy,
) -> PageResult {
    api::vulnerabilities::apply_policy(&ctx.state.registry, &ctx.actor(), namespace, policy)
        .await?;
    Ok(see_other(&format!(
        "{}?done=policy#policy",
        exemptions_path(namespace.as_str())
    )))
}

/// `GET /namespaces/{ns}/exemptions`: the namespace's pull policy (with
/// its form for those who may change it), and the exemptions that apply to the
/// namespace's images (its own, its repositories' and images', and the
/// registry-wide ones), with a remove button for those who may.
pub(super) async fn exemptions(ctx: &Ctx<'_>, namespace: &Name) -> PageResult {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    // The API's listing: its cursor, its page size, this namespace's
    // exemptions and the registry-wide ones, a page at a time.
    let query = super::views::query_pairs(ctx.parts);
    let kept = super::views::kept_pairs(&query, &["cursor"]);
    let listing = ExemptionListing::parse(Some(&super::views::query_string(&kept)))?;
    let rows = ctx
        .state
        .registry
        .exemption_page(
            Some(namespace.as_str()),
            listing
                .after
                .as_ref()
                .map(|(scope, issue)| (scope.as_str(), issue.as_str())),
            EXEMPTIONS_PER_PAGE,
        )
        .await
        .map_err(ManagementError::from)?;
    let next_link = (rows.len() == EXEMPTIONS_PER_PAGE)
        .then(|| rows.last().map(exemption_cursor))
        .flatten()
        .map(|cursor| {
            format!(
                "{}?{}",
                exemptions_path(namespace.as_str()),
                super::views::query_string(&[("cursor", &cursor)])
            )
        });
    let list: Vec<Exemption> = rows
        .into_iter()
        .map(|row| api::vulnerabilities::exemption_view(row, now))
        .collect();
    let may_namespace = ctx
        .may(api::permission::Permission::Namespace(
            namespace.clone(),
            berth_auth::Action::ManageSettings,
        ))
        .await;
    let may_registry = ctx.may(api::permission::Permission::Administrator).await;
    let policy = api::vulnerabilities::policy_view(
        ctx.state
            .registry
            .vulnerability_policy(namespace.as_str())
            .await
            .map_err(ManagementError::from)?,
    );
    let saved = super::views::query_pairs(ctx.parts)
        .iter()
        .any(|(k, v)| k == "done" && v == "policy");
    let back = exemptions_path(namespace.as_str());
    let body = html! {
        ul class="crumbs" {
            li { a href="/namespaces" { "Namespaces" } }
            li { a href=(format!("/namespaces/{namespace}")) { (namespace) } }
            li { "Exemptions" }
        }
        h1 { (namespace) ": vulnerabilities" }
        @if saved { div class="notice ok" role="status" { "The pull policy is set." } }
        h2 id="policy" { "Pull policy" }
        p {
            @match policy.mode.as_str() {
                "off" => "Off: pulls are not checked.",
                "warn" => "Warn: pulls of images with fixable findings succeed with a warning header.",
                _ => "Block: pulls of images with fixable findings are refused (403).",
            }
            @if policy.mode != "off" {
                " Lowest severity that counts: " strong { (policy.severity) } "."
                @if policy.block_unscanned { " Images not scanned yet count too." }
            }
            @if !policy.attach_sbom { " SBOMs are not attached to indexed images." }
        }
        @if may_namespace {
            form class="toolbar" method="post" action=(format!("/namespaces/{namespace}/vulnerability-policy")) {
                (csrf_field(ctx.session.as_ref()))
                div {
                    label for="mode" { "Mode" }
                    select id="mode" name="mode" {
                        @for mode in ["off", "warn", "block"] { option value=(mode) selected[policy.mode == mode] { (mode) } }
                    }
                }
                div {
                    label for="severity" { "Lowest severity" }
                    select id="severity" name="severity" {
                        @for severity in ["critical", "high", "medium", "low", "any"] { option value=(severity) selected[policy.severity == severity] { (severity) } }
                    }
                }
                div class="choice" {
                    input type="checkbox" id="block_unscanned" name="block_unscanned" value="true" checked[policy.block_unscanned];
                    label for="block_unscanned" { "Images not scanned yet count too" }
                }
                div class="choice" {
                    input type="checkbox" id="attach_sbom" name="attach_sbom" value="true" checked[policy.attach_sbom];
                    label for="attach_sbom" { "Attach each indexed image's SBOM as a referrer" }
                }
                button type="submit" { "Set pull policy" }
            }
        }
        h2 { "Exemptions" }
        p class="lead" { "Findings of these advisories do not count for the images in each scope (an image's page lists them as exempted). Expired ones are listed, not applied." }
        @if list.is_empty() {
            p class="muted" { "No exemptions apply here. An image's findings have an “Exempt” link for the namespace's owners." }
        } @else {
            div class="table-wrap" {
                table {
                    thead { tr {
                        th scope="col" { "Advisory" } th scope="col" { "Scope" } th scope="col" { "Reason" }
                        th scope="col" class="hide-narrow" { "By" } th scope="col" { "Expires" }
                        th scope="col" { "Action" }
                    } }
                    tbody {
                        @for exemption in &list {
                            tr {
                                td class="mono" { (exemption.issue) }
                                td class="mono" { (exemption.scope) }
                                td { (exemption.reason) }
                                td class="hide-narrow" { (exemption.author) }
                                td {
                                    (when(exemption.expires_at.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())))
                                    @if exemption.expired { " " span class="badge" { "expired" } }
                                }
                                td {
                                    @if (exemption.scope == "*" && may_registry) || (exemption.scope != "*" && may_namespace) {
                                        form class="inline" method="post" action="/exemptions/remove" {
                                            (csrf_field(ctx.session.as_ref()))
                                            input type="hidden" name="scope" value=(exemption.scope);
                                            input type="hidden" name="issue" value=(exemption.issue);
                                            input type="hidden" name="back" value=(back);
                                            button class="secondary" type="submit" { "Remove " (exemption.issue) " in " (exemption.scope) }
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
        @if let Some(link) = &next_link {
            nav class="pager" aria-label="Pages" { a href=(link) { "Next page" } }
        }
    };
    ctx.page(&format!("{namespace}: exemptions"), body)
}
