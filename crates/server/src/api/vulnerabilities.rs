//! The Vulnerability Advisor's API: an image's vulnerability report and
//! SBOM, exemptions, per-namespace pull policies, and the advisory data.
//!
//! Images are named in one path segment, percent-encoded (`team%2Fapp:v1`,
//! `team%2Fapp@sha256:…`), since repository names contain `/`. Seeing an
//! image's report needs pull in its namespace; exemptions and policies of
//! a namespace need `manage_settings` there, registry-wide exemptions and
//! importing advisories an administrator.

use std::collections::BTreeMap;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use berth_auth::{Expiry, NamespaceFacts};
use berth_oci::{Digest, Reference, RepoName, Tag};
use berth_registry::advisor::{
    severity_of, threshold_level, ExemptionRow, ImageAssessment, PolicyMode, PolicyRow, SbomFormat,
    ScanFinding, ScanStatus, POLICY_SEVERITIES,
};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::error::{ErrorBody, ManagementError};
use super::types::{ExpiryParam, Name};
use super::{no_content, ok, Context};

/// An image named in a path: `REPOSITORY:TAG`, `REPOSITORY@DIGEST`, or
/// `REPOSITORY` for its `latest` tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageParam {
    pub repository: RepoName,
    pub reference: Reference,
    /// The namespace, as a name the permission table can take.
    pub namespace: Name,
}

impl ImageParam {
    pub fn parse(text: &str) -> Result<ImageParam, String> {
        let (repository, reference) = if let Some((repository, digest)) = text.split_once('@') {
            let digest = Digest::parse(digest).map_err(|e| format!("{text:?}: {e}"))?;
            (repository, Reference::Digest(digest))
        } else {
            match text.rsplit_once(':') {
                Some((repository, tag)) if !tag.contains('/') => {
                    let tag = Tag::parse(tag).map_err(|e| format!("{text:?}: {e}"))?;
                    (repository, Reference::Tag(tag))
                }
                _ => (
                    text,
                    Reference::Tag(Tag::parse("latest").expect("a valid tag")),
                ),
            }
        };
        let repository = RepoName::parse(repository).map_err(|e| format!("{text:?}: {e}"))?;
        let namespace = Name::try_from(repository.namespace().to_string())?;
        Ok(ImageParam {
            repository,
            reference,
            namespace,
        })
    }

    /// The image as the caller named it.
    pub fn display(&self) -> String {
        match &self.reference {
            Reference::Tag(tag) => format!("{}:{tag}", self.repository),
            Reference::Digest(digest) => format!("{}@{digest}", self.repository),
        }
    }
}

/// Where an exemption applies: `*` (the whole registry), `NS`, `NS/REPO`,
/// `NS/REPO:TAG` or `NS/REPO@DIGEST`, parsed and in canonical form.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ExemptionScope {
    text: String,
    /// `None` for the whole registry.
    namespace: Option<Name>,
}

impl ExemptionScope {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn namespace(&self) -> Option<&Name> {
        self.namespace.as_ref()
    }
}

impl TryFrom<String> for ExemptionScope {
    type Error = String;
    fn try_from(value: String) -> Result<ExemptionScope, String> {
        if value == "*" {
            return Ok(ExemptionScope {
                text: value,
                namespace: None,
            });
        }
        let has_reference = value.contains('@')
            || value
                .rsplit_once(':')
                .is_some_and(|(_, tag)| !tag.contains('/'));
        let namespace = if has_reference {
            ImageParam::parse(&value)?.namespace
        } else if value.contains('/') {
            let repository = RepoName::parse(&value).map_err(|e| format!("{value:?}: {e}"))?;
            Name::try_from(repository.namespace().to_string())?
        } else {
            Name::try_from(value.clone())?
        };
        Ok(ExemptionScope {
            text: value,
            namespace: Some(namespace),
        })
    }
}

impl PartialSchema for ExemptionScope {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Where an exemption applies: `*` (the whole registry), a namespace, \
                 a repository, `REPOSITORY:TAG` or `REPOSITORY@DIGEST`.",
            ))
            .min_length(Some(1))
            .examples(["team-a/api:1.4"])
            .into()
    }
}

impl ToSchema for ExemptionScope {}

/// SBOM format in a path: `cyclonedx` or `spdx`.
pub fn sbom_format(text: &str) -> Result<SbomFormat, String> {
    match text {
        "cyclonedx" => Ok(SbomFormat::CycloneDx),
        "spdx" => Ok(SbomFormat::Spdx),
        other => Err(format!(
            "{other:?} is not an SBOM format (cyclonedx or spdx)"
        )),
    }
}

/// One finding of a report.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindingView {
    /// The advisory's id (`DSA-5902-1`, `PYSEC-2018-28`).
    pub advisory: String,
    /// Its other ids (`CVE-…`, `GHSA-…`).
    pub aliases: Vec<String>,
    pub summary: String,
    pub package: String,
    /// The package URL.
    pub purl: String,
    pub installed_version: String,
    /// The first version with the fix, when one is published.
    pub fixed_version: Option<String>,
    /// `critical`, `high`, `medium`, `low`, `negligible` or `unknown`.
    pub severity: String,
    /// The CVSS base score, when the advisory gives a vector.
    pub score: Option<f64>,
    /// The layer that installed the package.
    pub layer: Option<String>,
}

impl FindingView {
    fn of(finding: &ScanFinding) -> FindingView {
        FindingView {
            advisory: finding.advisory.clone(),
            aliases: finding.aliases.clone(),
            summary: finding.summary.clone(),
            package: finding.package.name.clone(),
            purl: finding.package.purl.clone(),
            installed_version: finding.installed_version.clone(),
            fixed_version: finding.fixed_version.clone(),
            severity: severity_of(finding).as_str().to_string(),
            score: finding.severity.as_ref().and_then(|s| s.score),
            layer: finding.package.layer.as_ref().map(|d| d.to_string()),
        }
    }
}

/// One image's part of a report (an index has one per platform).
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageReport {
    pub digest: String,
    /// The platform (`linux/amd64`) of an index's image.
    pub platform: Option<String>,
    /// `No issues`, `N issues`, `Scanning`, `Unsupported OS` or `Not scanned`.
    pub status: String,
    /// Why the index is partial, when it is.
    pub partial: Option<String>,
    /// The operating system found (`debian 12`).
    pub os: Option<String>,
    pub packages: usize,
    /// Findings with a published fix, worst first.
    pub findings: Vec<FindingView>,
    /// Findings without a published fix (not counted in the status).
    pub unfixed: Vec<FindingView>,
    /// Findings left out by an exemption.
    pub exempted: Vec<FindingView>,
    /// Counted findings per severity.
    pub by_severity: BTreeMap<String, usize>,
}

/// An image's vulnerability report.
#[derive(Debug, Serialize, ToSchema)]
pub struct VulnerabilityReport {
    /// The image as asked for.
    pub image: String,
    /// The manifest's digest.
    pub digest: String,
    /// The image's status (for an index, its images' together).
    pub status: String,
    pub images: Vec<ImageReport>,
}

fn status_text(status: &ScanStatus, counted: usize) -> String {
    match status {
        ScanStatus::NotScanned => "Not scanned".to_string(),
        ScanStatus::Scanning => "Scanning".to_string(),
        ScanStatus::UnsupportedOs(_) => "Unsupported OS".to_string(),
        ScanStatus::Indexed { .. } if counted == 0 => "No issues".to_string(),
        ScanStatus::Indexed { .. } if counted == 1 => "1 issue".to_string(),
        ScanStatus::Indexed { .. } => format!("{counted} issues"),
    }
}

fn image_report(assessment: &ImageAssessment) -> ImageReport {
    let (fixed, unfixed): (Vec<&ScanFinding>, Vec<&ScanFinding>) =
        assessment.findings.iter().partition(|f| f.is_fixable());
    let mut by_severity = BTreeMap::new();
    for finding in &fixed {
        *by_severity
            .entry(severity_of(finding).as_str().to_string())
            .or_insert(0) += 1;
    }
    let report = assessment.report.as_ref();
    ImageReport {
        digest: assessment.manifest.to_string(),
        platform: assessment.platform.clone(),
        status: status_text(&assessment.status, fixed.len()),
        partial: match &assessment.status {
            ScanStatus::Indexed { partial } => partial.clone(),
            _ => None,
        },
        os: report.and_then(|r| r.distribution.as_ref()).map(|d| {
            format!("{} {}", d.id, d.version_id.as_deref().unwrap_or(""))
                .trim()
                .to_string()
        }),
        packages: report.map_or(0, |r| r.packages.len()),
        findings: fixed.into_iter().map(FindingView::of).collect(),
        unfixed: unfixed.into_iter().map(FindingView::of).collect(),
        exempted: assessment.exempted.iter().map(FindingView::of).collect(),
        by_severity,
    }
}

/// Get an image's vulnerability report.
///
/// The image's stored index matched against the advisories as they are
/// now, minus the exemptions in force. Findings with a published fix count
/// (the status); those without one are listed apart. Needs pull in the
/// image's namespace.
#[utoipa::path(
    get,
    path = "/api/v1/images/{image}/vulnerabilities",
    tag = "vulnerabilities",
    operation_id = "get_vulnerability_report",
    params(("image" = String, Path, description = "The image, percent-encoded: `REPOSITORY:TAG`, `REPOSITORY@DIGEST` or `REPOSITORY`")),
    responses((status = 200, description = "The report", body = VulnerabilityReport))
)]
pub async fn report(ctx: &Context<'_>, image: &ImageParam) -> Result<Response, ManagementError> {
    let report = assess(ctx.registry, &image.repository, &image.reference).await?;
    Ok(ok(VulnerabilityReport {
        image: image.display(),
        ..report
    }))
}

/// The vulnerability report of `reference` in `repository` (the web
/// console shows the same on an image's page).
pub async fn assess(
    registry: &berth_registry::Registry,
    repository: &RepoName,
    reference: &Reference,
) -> Result<VulnerabilityReport, ManagementError> {
    let (digest, assessments) = registry
        .assess_reference(repository, reference, true)
        .await?;
    let images: Vec<ImageReport> = assessments.iter().map(image_report).collect();
    // An index's status: its images' worst (scanning before unsupported
    // before counted issues), with the issues of all of them.
    let counted: usize = images.iter().map(|i| i.findings.len()).sum();
    let status = if images.iter().any(|i| i.status == "Scanning") {
        "Scanning".to_string()
    } else if images.iter().any(|i| i.status == "Not scanned") {
        "Not scanned".to_string()
    } else if !images.is_empty() && images.iter().all(|i| i.status == "Unsupported OS") {
        "Unsupported OS".to_string()
    } else {
        status_text(&ScanStatus::Indexed { partial: None }, counted)
    };
    let image = match reference {
        Reference::Tag(tag) => format!("{}:{}", repository.as_str(), tag.as_str()),
        Reference::Digest(digest) => format!("{}@{digest}", repository.as_str()),
    };
    Ok(VulnerabilityReport {
        image,
        digest: digest.to_string(),
        status,
        images,
    })
}

/// Get an image's SBOM.
///
/// CycloneDX 1.6 JSON (`cyclonedx`) or SPDX 2.3 JSON (`spdx`), from the
/// image's stored index. An index's first platform image is described.
/// 409 while the image is not indexed.
#[utoipa::path(
    get,
    path = "/api/v1/images/{image}/sbom/{format}",
    tag = "vulnerabilities",
    operation_id = "get_sbom",
    params(
        ("image" = String, Path, description = "The image, percent-encoded"),
        ("format" = String, Path, description = "`cyclonedx` or `spdx`"),
    ),
    responses(
        (status = 200, description = "The SBOM", content_type = "application/json", body = Object),
        (status = 409, description = "The image is not indexed (yet)", body = ErrorBody),
    )
)]
pub async fn sbom(
    ctx: &Context<'_>,
    image: &ImageParam,
    format: SbomFormat,
) -> Result<Response, ManagementError> {
    let (_, assessments) = ctx
        .registry
        .assess_reference(&image.repository, &image.reference, false)
        .await?;
    let Some((assessment, report)) = assessments
        .iter()
        .find_map(|a| a.report.as_ref().map(|r| (a, r)))
    else {
        return Err(ManagementError::conflict(format!(
            "{} is not indexed (yet): see its vulnerability report's status",
            image.display()
        )));
    };
    let document = berth_registry::advisor::sbom_document(
        report,
        &image.repository.to_string(),
        &assessment.manifest,
        format,
    );
    Ok((
        [(header::CONTENT_TYPE, format.media_type())],
        serde_json::to_string(&document).unwrap_or_default(),
    )
        .into_response())
}

/// A namespace's pull policy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VulnerabilityPolicy {
    /// `off`, `warn` (pulls succeed with a warning header) or `block`
    /// (pulls of images with fixable findings at or above `severity` are
    /// refused with 403 `DENIED`).
    #[schema(pattern = "^(off|warn|block)$")]
    pub mode: String,
    /// The lowest severity that counts: `critical`, `high`, `medium`, `low`
    /// or `any`.
    #[serde(default = "default_severity")]
    #[schema(pattern = "^(any|low|medium|high|critical)$")]
    pub severity: String,
    /// Whether images not indexed yet are refused (or warned about) too.
    #[serde(default)]
    pub block_unscanned: bool,
    /// Whether each indexed image gets its SBOM (CycloneDX) attached as an
    /// OCI referrer (artifact type `application/vnd.cyclonedx+json`), which
    /// `oras discover` and the referrers API list. On by default.
    #[serde(default = "default_attach_sbom")]
    pub attach_sbom: bool,
}

fn default_severity() -> String {
    "critical".to_string()
}

fn default_attach_sbom() -> bool {
    true
}

impl VulnerabilityPolicy {
    /// Checks the words, as a 400 naming the field.
    pub fn validate(&self) -> Result<PolicyMode, ManagementError> {
        let mode = PolicyMode::parse(&self.mode).ok_or_else(|| {
            ManagementError::invalid_request(format!(
                "mode: {:?} is not one of off, warn, block",
                self.mode
            ))
        })?;
        if threshold_level(&self.severity).is_none() {
            return Err(ManagementError::invalid_request(format!(
                "severity: {:?} is not one of {}",
                self.severity,
                POLICY_SEVERITIES.join(", ")
            )));
        }
        Ok(mode)
    }
}

/// A namespace's policy, as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct NamespacePolicy {
    pub namespace: String,
    #[serde(flatten)]
    pub policy: VulnerabilityPolicy,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyList {
    /// By namespace: the policies of the namespaces the caller may see
    /// (namespaces without one are off).
    pub policies: Vec<NamespacePolicy>,
}

/// The API's view of a namespace's policy (`off` when none was set).
pub fn policy_view(row: Option<PolicyRow>) -> VulnerabilityPolicy {
    match row {
        Some(row) => VulnerabilityPolicy {
            mode: row.mode.as_str().to_string(),
            severity: row.severity,
            block_unscanned: row.block_unscanned,
            attach_sbom: row.attach_sbom,
        },
        None => VulnerabilityPolicy {
            mode: "off".to_string(),
            severity: default_severity(),
            block_unscanned: false,
            attach_sbom: default_attach_sbom(),
        },
    }
}

/// Get a namespace's vulnerability pull policy.
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/vulnerability-policy",
    tag = "vulnerabilities",
    operation_id = "get_vulnerability_policy",
    params(("namespace" = Name, Path, description = "The namespace")),
    responses((status = 200, description = "The policy (`off` when none was set)", body = VulnerabilityPolicy))
)]
pub async fn get_policy(ctx: &Context<'_>, namespace: &Name) -> Result<Response, ManagementError> {
    let row = ctx
        .registry
        .vulnerability_policy(namespace.as_str())
        .await?;
    Ok(ok(policy_view(row)))
}

/// Set a namespace's vulnerability pull policy.
///
/// Needs `manage_settings` on the namespace: owners and administrators.
#[utoipa::path(
    put,
    path = "/api/v1/namespaces/{namespace}/vulnerability-policy",
    tag = "vulnerabilities",
    operation_id = "set_vulnerability_policy",
    params(("namespace" = Name, Path, description = "The namespace")),
    request_body = VulnerabilityPolicy,
    responses((status = 200, description = "The policy, set", body = VulnerabilityPolicy))
)]
pub async fn set_policy(
    ctx: &Context<'_>,
    namespace: &Name,
    policy: VulnerabilityPolicy,
) -> Result<Response, ManagementError> {
    Ok(ok(apply_policy(
        ctx.registry,
        &ctx.actor,
        namespace,
        policy,
    )
    .await?))
}

/// Sets `namespace`'s pull policy as `actor`, after checking its words
/// (the API's handler and the web console's form both come here).
pub async fn apply_policy(
    registry: &berth_registry::Registry,
    actor: &berth_auth::Actor,
    namespace: &Name,
    policy: VulnerabilityPolicy,
) -> Result<VulnerabilityPolicy, ManagementError> {
    let mode = policy.validate()?;
    registry
        .set_vulnerability_policy(
            actor,
            &PolicyRow {
                namespace: namespace.to_string(),
                mode,
                severity: policy.severity.clone(),
                block_unscanned: policy.block_unscanned,
                attach_sbom: policy.attach_sbom,
                updated_at: time::OffsetDateTime::now_utc().unix_timestamp(),
            },
        )
        .await?;
    Ok(policy)
}

/// The facts the permission policy needs about `namespace` for the caller.
async fn facts(ctx: &Context<'_>, namespace: &str) -> Result<NamespaceFacts, ManagementError> {
    Ok(ctx
        .auth
        .store
        .namespace_facts(namespace, ctx.caller.user_name())
        .await?)
}

/// List the namespaces' vulnerability pull policies.
///
/// Those of the namespaces the caller may see.
#[utoipa::path(
    get,
    path = "/api/v1/vulnerability-policies",
    tag = "vulnerabilities",
    operation_id = "list_vulnerability_policies",
    responses((status = 200, description = "The policies", body = PolicyList))
)]
pub async fn list_policies(ctx: &Context<'_>) -> Result<Response, ManagementError> {
    let mut policies = Vec::new();
    for row in ctx.registry.vulnerability_policies().await? {
        let facts = facts(ctx, &row.namespace).await?;
        if ctx.caller.may_see_namespace(facts, &row.namespace) {
            policies.push(NamespacePolicy {
                namespace: row.namespace.clone(),
                policy: policy_view(Some(row)),
            });
        }
    }
    Ok(ok(PolicyList { policies }))
}

/// The query of the findings summary.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// Only this namespace (which the caller must see); without it, every
    /// namespace the caller sees.
    #[param(value_type = Option<Name>)]
    pub namespace: Option<Name>,
}

impl SummaryQuery {
    pub fn parse(query: Option<&str>) -> Result<SummaryQuery, ManagementError> {
        super::parse_query(query)
    }
}

/// Findings counted by severity.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SeverityCountsView {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub unknown: u64,
}

impl From<&berth_registry::SeverityCounts> for SeverityCountsView {
    fn from(counts: &berth_registry::SeverityCounts) -> SeverityCountsView {
        SeverityCountsView {
            critical: counts.critical,
            high: counts.high,
            medium: counts.medium,
            low: counts.low,
            unknown: counts.unknown,
        }
    }
}

/// One namespace's images with issues.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NamespaceFindingsView {
    pub namespace: String,
    /// Its images with at least one finding that counts.
    pub images_with_issues: u64,
    /// Their findings that count, by severity.
    pub findings: SeverityCountsView,
}

/// The images with issues and their findings by severity, as last
/// assessed. A finding counts when a fixed version is published and no
/// exemption covers it; an image is a platform manifest, counted once per
/// repository; images in the trash are not counted.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct FindingsSummary {
    /// Images with at least one finding that counts, in every namespace
    /// listed.
    pub images_with_issues: u64,
    /// Their findings, by severity.
    pub findings: SeverityCountsView,
    /// Sum of `findings`.
    pub total_findings: u64,
    /// The namespaces that have images with issues, by name.
    pub namespaces: Vec<NamespaceFindingsView>,
}

/// The summary of the stored finding counts of `namespaces` (the caller
/// decides which it may see): one index range, whatever the number of
/// images. The console's overview and namespace page show the same.
pub async fn findings_summary(
    registry: &berth_registry::Registry,
    namespaces: &[String],
) -> Result<FindingsSummary, ManagementError> {
    if namespaces.is_empty() {
        return Ok(FindingsSummary::default());
    }
    let rows = registry.findings_by_namespace(Some(namespaces)).await?;
    let mut total = berth_registry::SeverityCounts::default();
    let mut images = 0u64;
    for row in &rows {
        images = images.saturating_add(row.images);
        total.add(&row.counts);
    }
    Ok(FindingsSummary {
        images_with_issues: images,
        findings: SeverityCountsView::from(&total),
        total_findings: total.total(),
        namespaces: rows
            .iter()
            .map(|row| NamespaceFindingsView {
                namespace: row.namespace.clone(),
                images_with_issues: row.images,
                findings: SeverityCountsView::from(&row.counts),
            })
            .collect(),
    })
}

/// The names of the namespaces the caller may see.
pub async fn visible_namespace_names(ctx: &Context<'_>) -> Result<Vec<String>, ManagementError> {
    Ok(ctx
        .auth
        .store
        .namespaces_with_facts(ctx.caller.user_name())
        .await?
        .into_iter()
        .filter(|(record, facts)| ctx.caller.may_see_namespace(*facts, &record.name))
        .map(|(record, _)| record.name)
        .collect())
}

/// Summarize the images with issues.
///
/// The images with at least one finding that has a published fix and no
/// exemption, and those findings by severity, as last assessed: of one
/// namespace (which the caller must see), or of every namespace the caller
/// may see, per namespace and added up. Read from the counts stored at each
/// assessment, so it costs the same however many images there are.
#[utoipa::path(
    get,
    path = "/api/v1/vulnerabilities/summary",
    tag = "vulnerabilities",
    operation_id = "get_vulnerability_summary",
    params(SummaryQuery),
    responses(
        (status = 200, description = "The images with issues", body = FindingsSummary),
        (status = 400, description = "A malformed query: an unknown parameter, a namespace that is not a name", body = ErrorBody),
    )
)]
pub async fn summary(ctx: &Context<'_>, query: SummaryQuery) -> Result<Response, ManagementError> {
    let names = match &query.namespace {
        // Authorized for this namespace.
        Some(namespace) => vec![namespace.as_str().to_string()],
        None => visible_namespace_names(ctx).await?,
    };
    Ok(ok(findings_summary(ctx.registry, &names).await?))
}

/// A new exemption.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExemption {
    pub scope: ExemptionScope,
    /// The advisory id or one of its aliases (`CVE-2024-1234`).
    #[schema(min_length = 1, max_length = 200)]
    pub issue: String,
    #[serde(default)]
    pub reason: String,
    /// How long it lasts (`30d`), or `never` (the default).
    pub expires: Option<ExpiryParam>,
}

/// An exemption.
#[derive(Debug, Serialize, ToSchema)]
pub struct Exemption {
    pub scope: String,
    pub issue: String,
    pub reason: String,
    pub author: String,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Seconds since the epoch; none when it does not expire.
    pub expires_at: Option<i64>,
    /// Whether it has expired (expired exemptions are listed, not applied).
    pub expired: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExemptionList {
    /// By scope, then issue: registry-wide ones and those of namespaces the
    /// caller may see. A page may hold fewer than `limit` and still have a
    /// next one (exemptions of namespaces the caller may not see are left
    /// out of the page read).
    pub exemptions: Vec<Exemption>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Exemptions listed per page unless the caller asks otherwise (as the
/// other listings).
pub const EXEMPTION_PAGE_SIZE: usize = super::repositories::DEFAULT_PAGE_SIZE;
/// The most exemptions one page lists.
pub const MAX_EXEMPTION_PAGE_SIZE: usize = super::repositories::MAX_PAGE_SIZE;

/// The query of an exemption listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExemptionListQuery {
    /// Only the exemptions that apply to this namespace's images: its own,
    /// its repositories' and images', and the registry-wide ones.
    #[param(value_type = Option<String>)]
    pub namespace: Option<Name>,
    /// At most this many exemptions (1 to 1000; 100 by default).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// Where to continue: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A validated exemption listing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExemptionListing {
    pub namespace: Option<Name>,
    pub limit: usize,
    /// The scope and issue of the previous page's last exemption.
    pub after: Option<(String, String)>,
}

/// What an opaque exemption cursor holds: the listing it pages (another
/// listing's cursor is refused), and the last scope and issue read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExemptionCursor {
    l: String,
    s: String,
    a: String,
}

/// The `l` of an exemption listing's cursor.
const EXEMPTION_CURSOR: &str = "exemptions";

/// The cursor that continues after `row`.
pub fn exemption_cursor(row: &ExemptionRow) -> String {
    let body = ExemptionCursor {
        l: EXEMPTION_CURSOR.to_string(),
        s: row.scope.clone(),
        a: row.advisory.clone(),
    };
    super::cursor::encode(&body)
}

impl ExemptionListing {
    /// Validates the query string of a listing.
    pub fn parse(query: Option<&str>) -> Result<ExemptionListing, ManagementError> {
        let query: ExemptionListQuery = super::parse_query(query)?;
        let limit = super::page_limit(query.limit, EXEMPTION_PAGE_SIZE, MAX_EXEMPTION_PAGE_SIZE)?;
        let after = match &query.cursor {
            None => None,
            Some(cursor) => {
                let body: ExemptionCursor = super::cursor::decode(cursor)?;
                if body.l != EXEMPTION_CURSOR {
                    return Err(super::cursor::refused());
                }
                Some((body.s, body.a))
            }
        };
        Ok(ExemptionListing {
            namespace: query.namespace,
            limit,
            after,
        })
    }
}

/// The API's view of an exemption at `now` (the console shows the same).
pub fn exemption_view(row: ExemptionRow, now: i64) -> Exemption {
    Exemption {
        expired: !row.is_active(now),
        scope: row.scope,
        issue: row.advisory,
        reason: row.reason,
        author: row.author,
        created_at: row.created_at,
        expires_at: row.expires_at,
    }
}

/// List exemptions.
#[utoipa::path(
    get,
    path = "/api/v1/exemptions",
    tag = "vulnerabilities",
    operation_id = "list_exemptions",
    params(ExemptionListQuery),
    responses(
        (status = 200, description = "A page of the exemptions", body = ExemptionList),
        (status = 400, description = "A malformed query: an unknown parameter, a limit out of range, a cursor of another listing", body = ErrorBody),
    )
)]
pub async fn list_exemptions(
    ctx: &Context<'_>,
    listing: ExemptionListing,
) -> Result<Response, ManagementError> {
    let now = ctx.now().unix_timestamp();
    let rows = ctx
        .registry
        .exemption_page(
            listing.namespace.as_ref().map(Name::as_str),
            listing
                .after
                .as_ref()
                .map(|(scope, issue)| (scope.as_str(), issue.as_str())),
            listing.limit,
        )
        .await?;
    // The page is cut by what was read, so a page thinned by visibility
    // still continues where the database left off.
    let next_cursor = (rows.len() == listing.limit)
        .then(|| rows.last().map(exemption_cursor))
        .flatten();
    // Each namespace of the page is looked up once (a namespace listing's
    // own, when given, was authorized before the handler ran).
    let mut visible: BTreeMap<String, bool> = BTreeMap::new();
    if let Some(namespace) = &listing.namespace {
        visible.insert(namespace.as_str().to_string(), true);
    }
    let mut exemptions = Vec::with_capacity(rows.len());
    for row in rows {
        let shown = match row.namespace() {
            None => true,
            Some(namespace) => match visible.get(namespace) {
                Some(shown) => *shown,
                None => {
                    let facts = facts(ctx, namespace).await?;
                    let shown = ctx.caller.may_see_namespace(facts, namespace);
                    visible.insert(namespace.to_string(), shown);
                    shown
                }
            },
        };
        if shown {
            exemptions.push(exemption_view(row, now));
        }
    }
    Ok(ok(ExemptionList {
        exemptions,
        next_cursor,
    }))
}

/// Add an exemption.
///
/// Findings of the issue stop counting for images in the scope. A scope in
/// a namespace needs `manage_settings` there; `*` an administrator. An
/// exemption of the same scope and issue is replaced.
#[utoipa::path(
    post,
    path = "/api/v1/exemptions",
    tag = "vulnerabilities",
    operation_id = "add_exemption",
    request_body = NewExemption,
    responses((status = 201, description = "The exemption", body = Exemption))
)]
pub async fn add_exemption(
    ctx: &Context<'_>,
    new: NewExemption,
) -> Result<Response, ManagementError> {
    let exemption = exempt(ctx.registry, &ctx.actor, new).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(exemption)).into_response())
}

/// Adds (or replaces) an exemption as `actor` (the API's handler and the
/// web console's form both come here).
pub async fn exempt(
    registry: &berth_registry::Registry,
    actor: &berth_auth::Actor,
    new: NewExemption,
) -> Result<Exemption, ManagementError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expires_at = match new.expires.map(|e| e.0) {
        None | Some(Expiry::Never) => None,
        Some(Expiry::After(duration)) => Some(now.saturating_add(duration.whole_seconds())),
    };
    let row = ExemptionRow {
        scope: new.scope.as_str().to_string(),
        advisory: new.issue.trim().to_string(),
        reason: new.reason,
        author: actor.name.clone().unwrap_or_else(|| actor.to_string()),
        created_at: now,
        expires_at,
    };
    if row.advisory.is_empty() || row.advisory.len() > 200 {
        return Err(ManagementError::invalid_request(
            "issue: an advisory id or alias of 1 to 200 characters",
        ));
    }
    registry.set_exemption(actor, &row).await?;
    Ok(exemption_view(row, now))
}

/// Remove an exemption.
#[utoipa::path(
    delete,
    path = "/api/v1/exemptions/{scope}/{issue}",
    tag = "vulnerabilities",
    operation_id = "remove_exemption",
    params(
        ("scope" = String, Path, description = "The scope, percent-encoded"),
        ("issue" = String, Path, description = "The advisory id or alias"),
    ),
    responses((status = 204, description = "Removed"))
)]
pub async fn remove_exemption(
    ctx: &Context<'_>,
    scope: &ExemptionScope,
    issue: &str,
) -> Result<Response, ManagementError> {
    unexempt(ctx.registry, &ctx.actor, scope, issue).await?;
    Ok(no_content())
}

/// Removes an exemption as `actor`; 404 when there is none.
pub async fn unexempt(
    registry: &berth_registry::Registry,
    actor: &berth_auth::Actor,
    scope: &ExemptionScope,
    issue: &str,
) -> Result<(), ManagementError> {
    if !registry
        .remove_exemption(actor, scope.as_str(), issue)
        .await?
    {
        return Err(ManagementError::not_found(format!(
            "no exemption of {issue} in {}",
            scope.as_str()
        )));
    }
    Ok(())
}

/// The state of the advisory data.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdvisoryDataView {
    /// Advisories stored.
    pub count: u64,
    /// Increases with every import that changed something.
    pub generation: i64,
    /// When advisories were last imported (seconds since the epoch).
    pub imported_at: Option<i64>,
}

/// Get the state of the advisory data.
#[utoipa::path(
    get,
    path = "/api/v1/advisories",
    tag = "vulnerabilities",
    operation_id = "get_advisory_data",
    responses((status = 200, description = "The advisory data", body = AdvisoryDataView))
)]
pub async fn advisory_data(ctx: &Context<'_>) -> Result<Response, ManagementError> {
    let data = ctx.registry.advisory_data().await?;
    Ok(ok(AdvisoryDataView {
        count: data.count,
        generation: data.generation,
        imported_at: data.imported_at,
    }))
}

/// Records to import.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvisoryImport {
    /// OSV records (schema 1.6), at most 64 KiB of them per request; larger
    /// imports use `berth advisories import` on the server's database.
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<serde_json::Value>,
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub removed: u64,
}

/// Import advisories (administrators).
///
/// Incremental: a record replaces a stored one only if its `modified` is
/// newer; withdrawn records are removed.
#[utoipa::path(
    post,
    path = "/api/v1/advisories",
    tag = "vulnerabilities",
    operation_id = "import_advisories",
    request_body = AdvisoryImport,
    responses((status = 200, description = "What the import did", body = ImportResult))
)]
pub async fn import(ctx: &Context<'_>, body: AdvisoryImport) -> Result<Response, ManagementError> {
    let mut advisories = Vec::new();
    for (n, record) in body.records.iter().enumerate() {
        let bytes = serde_json::to_vec(record).unwrap_or_default();
        let advisory = berth_registry::advisor::parse_osv(&bytes)
            .map_err(|error| ManagementError::invalid_request(format!("records[{n}]: {error}")))?;
        advisories.push(advisory);
    }
    let counts = ctx
        .registry
        .import_advisories(&ctx.actor, &advisories)
        .await?;
    Ok(ok(ImportResult {
        added: counts.added,
        updated: counts.updated,
        unchanged: counts.unchanged,
        removed: counts.removed,
    }))
}

/// A configured advisory source and the state of its sync.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdvisorySourceView {
    /// The source's URL (a password in it shown as `***`).
    pub url: String,
    /// When a sync last started (seconds since the epoch).
    pub last_attempt_at: Option<i64>,
    /// When a sync last succeeded.
    pub last_success_at: Option<i64>,
    /// Records the last successful sync added, updated or removed.
    pub records_changed: u64,
    /// Why the last attempt failed; absent when it succeeded.
    pub last_error: Option<String>,
}

/// What one sync of a source did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceSyncView {
    pub url: String,
    /// Records added, updated or removed; absent when the sync failed.
    pub changed: Option<u64>,
    /// Records of the download that could not be read.
    pub skipped: usize,
    /// Whether the source answered that nothing changed.
    pub not_modified: bool,
    pub error: Option<String>,
}

/// `url` with its password, if any, shown as `***`.
fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// List the advisory sources and their sync state (administrators).
///
/// The sources are `[scanner] advisory_urls`, in configuration order; a
/// source never synced has no times.
#[utoipa::path(
    get,
    path = "/api/v1/advisories/sources",
    tag = "vulnerabilities",
    operation_id = "list_advisory_sources",
    responses((status = 200, description = "The configured sources", body = Vec<AdvisorySourceView>))
)]
pub async fn advisory_sources(ctx: &Context<'_>) -> Result<Response, ManagementError> {
    let rows = match ctx.advisory_sync {
        Some(sync) => sync.status().await?,
        None => Vec::new(),
    };
    let views: Vec<AdvisorySourceView> = rows
        .into_iter()
        .map(|row| AdvisorySourceView {
            url: shown_url(&row.url),
            last_attempt_at: row.last_attempt_at,
            last_success_at: row.last_success_at,
            records_changed: row.records_changed,
            last_error: row.last_error,
        })
        .collect();
    Ok(ok(views))
}

/// Sync every advisory source now (administrators).
///
/// Downloads each configured source (conditionally, with the validators
/// of the last download) and imports it; answers when the pass is over,
/// with what it did per source. A source's failure is in its result, not
/// an error of the request.
#[utoipa::path(
    post,
    path = "/api/v1/advisories/sources/sync",
    tag = "vulnerabilities",
    operation_id = "sync_advisory_sources",
    responses(
        (status = 200, description = "What the sync did per source", body = Vec<SourceSyncView>),
        (status = 409, description = "A sync is running already", body = ErrorBody),
    )
)]
pub async fn sync_advisory_sources(ctx: &Context<'_>) -> Result<Response, ManagementError> {
    let outcomes = match ctx.advisory_sync {
        Some(sync) => sync.sync_now().await?,
        None => Vec::new(),
    };
    let views: Vec<SourceSyncView> = outcomes
        .into_iter()
        .map(|outcome| SourceSyncView {
            url: shown_url(&outcome.url),
            changed: outcome.changed,
            skipped: outcome.skipped,
            not_modified: outcome.not_modified,
            error: outcome.error,
        })
        .collect();
    Ok(ok(views))
}
