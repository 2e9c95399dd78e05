//! Quotas: each namespace's storage (bytes it holds) and pull traffic
//! (bytes of blobs served this calendar month, UTC), with the limits that
//! apply. Anyone who may see a namespace sees its quotas; setting limits and
//! recounting usage are an administrator's, since a namespace's owners
//! raising their own limits would defeat them.

use axum::response::Response;
use berth_registry::quotas::{QuotaStatus, UNLIMITED};
use berth_registry::QuotaUpdate;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::error::ManagementError;
use super::types::Name;
use super::{ok, Context};

/// A namespace's quotas.
#[derive(Debug, Serialize, ToSchema)]
pub struct Quota {
    pub namespace: String,
    pub storage: QuotaFigures,
    pub traffic: QuotaFigures,
    /// The month the traffic is of: its first second (UTC), seconds since
    /// the epoch.
    pub month: i64,
}

/// Usage against a limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaFigures {
    /// Bytes used.
    pub used: u64,
    /// The limit that applies, in bytes; `null` for none.
    pub limit: Option<u64>,
    /// Whether the limit is the registry-wide default rather than the
    /// namespace's own (`false` with a `null` limit: the namespace is
    /// unlimited whatever the default, or there is no default).
    pub default: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaList {
    /// By name: the namespaces the caller may see.
    pub quotas: Vec<Quota>,
}

/// A limit as a request gives it: bytes, or the word `unlimited`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LimitValue {
    /// Bytes.
    Bytes(u64),
    /// `unlimited`: no limit, even when the registry has a default.
    Word(LimitWord),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LimitWord {
    Unlimited,
}

/// Reads a field that may be absent (unchanged), `null` (back to the
/// default), `"unlimited"` or bytes.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<u64>>, D::Error> {
    Ok(Some(Option::<LimitValue>::deserialize(deserializer)?.map(
        |value| match value {
            LimitValue::Bytes(bytes) => bytes,
            LimitValue::Word(LimitWord::Unlimited) => UNLIMITED,
        },
    )))
}

/// The largest limit in bytes: one below what the database stores as
/// "unlimited" (a signed 64-bit integer's largest value).
pub const MAX_LIMIT: u64 = UNLIMITED - 1;

/// New limits for a namespace. A field left out keeps its limit; `null`
/// returns it to the registry-wide default; `"unlimited"` exempts the
/// namespace from that default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimits {
    /// Bytes the namespace may hold, or `"unlimited"`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<LimitValue>)]
    pub storage: Option<Option<u64>>,
    /// Bytes of blobs the namespace may serve per calendar month, or
    /// `"unlimited"`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<LimitValue>)]
    pub traffic: Option<Option<u64>>,
}

impl QuotaLimits {
    /// Refuses limits beyond [`MAX_LIMIT`], naming the field.
    pub fn validate(&self) -> Result<(), ManagementError> {
        for (field, value) in [("storage", self.storage), ("traffic", self.traffic)] {
            if let Some(Some(limit)) = value {
                if limit > MAX_LIMIT && limit != UNLIMITED {
                    return Err(ManagementError::invalid_request(format!(
                        "{field}: at most {MAX_LIMIT} bytes, or \"unlimited\""
                    )));
                }
            }
        }
        Ok(())
    }
}

/// One namespace's storage usage, as recorded and as recounted.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageDrift {
    pub namespace: String,
    /// Bytes the registry had recorded.
    pub recorded: u64,
    /// Bytes recounted from the data, now recorded.
    pub actual: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Recount {
    /// Every namespace, by name.
    pub namespaces: Vec<UsageDrift>,
    /// How many had drifted (recorded differed from actual); zero unless
    /// something changed usage behind the registry's back.
    pub drifted: usize,
}

/// The API's view of a namespace's quotas (the console shows the same).
pub fn view(status: QuotaStatus) -> Quota {
    Quota {
        storage: QuotaFigures {
            used: status.storage_bytes,
            limit: status.storage_limit,
            default: status.storage_limit_is_default,
        },
        traffic: QuotaFigures {
            used: status.traffic_bytes,
            limit: status.traffic_limit,
            default: status.traffic_limit_is_default,
        },
        month: status.month,
        namespace: status.namespace,
    }
}

/// Namespaces per page read from the registry while listing.
const PAGE: usize = 500;

/// List quotas.
#[utoipa::path(
    get,
    path = "/api/v1/quotas",
    tag = "lifecycle",
    operation_id = "list_quotas",
    responses((status = 200, description = "The quotas of the namespaces the caller may see", body = QuotaList))
)]
pub async fn list(ctx: &Context<'_>) -> Result<Response, ManagementError> {
    let mut quotas = Vec::new();
    let mut after: Option<String> = None;
    // Which namespaces the caller sees, read once for all of them.
    let visible: std::collections::HashSet<String> =
        super::vulnerabilities::visible_namespace_names(ctx)
            .await?
            .into_iter()
            .collect();
    // Bounded by the number of namespaces; each page moves strictly on.
    loop {
        let page = ctx.registry.quotas(after.as_deref(), PAGE).await?;
        let full = page.len() == PAGE;
        for status in page {
            after = Some(status.namespace.clone());
            if visible.contains(&status.namespace) {
                quotas.push(view(status));
            }
        }
        if !full {
            break;
        }
    }
    Ok(ok(QuotaList { quotas }))
}

/// Get a namespace's quotas.
#[utoipa::path(
    get,
    path = "/api/v1/quotas/{namespace}",
    tag = "lifecycle",
    operation_id = "get_quota",
    params(("namespace" = Name, Path, description = "The namespace")),
    responses((status = 200, description = "The namespace's quotas", body = Quota))
)]
pub async fn get(ctx: &Context<'_>, namespace: &Name) -> Result<Response, ManagementError> {
    Ok(ok(view(ctx.registry.quota(namespace.as_str()).await?)))
}

/// Set a namespace's limits.
///
/// A lower storage limit than the namespace's usage deletes nothing: it
/// refuses further pushes that add bytes until usage is below it.
#[utoipa::path(
    put,
    path = "/api/v1/quotas/{namespace}",
    tag = "lifecycle",
    operation_id = "set_quota",
    params(("namespace" = Name, Path, description = "The namespace")),
    request_body = QuotaLimits,
    responses((status = 200, description = "The namespace's quotas", body = Quota))
)]
pub async fn set(
    ctx: &Context<'_>,
    namespace: &Name,
    limits: QuotaLimits,
) -> Result<Response, ManagementError> {
    Ok(ok(apply(ctx.registry, &ctx.actor, namespace, limits).await?))
}

/// Sets a namespace's limits as `actor` (the API's handler and the web
/// console's form both come here), after checking them.
pub async fn apply(
    registry: &berth_registry::Registry,
    actor: &berth_auth::Actor,
    namespace: &Name,
    limits: QuotaLimits,
) -> Result<Quota, ManagementError> {
    limits.validate()?;
    let update = QuotaUpdate {
        storage_limit: limits.storage,
        traffic_limit: limits.traffic,
    };
    let status = registry
        .set_quota(actor, namespace.as_str(), &update)
        .await?;
    Ok(view(status))
}

/// Recount storage usage.
///
/// Rebuilds every namespace's usage from the data and reports any drift
/// from what was recorded (which must be zero), correcting it.
#[utoipa::path(
    post,
    path = "/api/v1/quota-recompute",
    tag = "lifecycle",
    operation_id = "recompute_quotas",
    responses((status = 200, description = "Every namespace's recorded and recounted usage", body = Recount))
)]
pub async fn recompute(ctx: &Context<'_>) -> Result<Response, ManagementError> {
    let figures = ctx.registry.recompute_quotas(&ctx.actor).await?;
    let namespaces: Vec<UsageDrift> = figures
        .into_iter()
        .map(|d| UsageDrift {
            namespace: d.namespace,
            recorded: d.recorded,
            actual: d.actual,
        })
        .collect();
    let drifted = namespaces.iter().filter(|d| d.recorded != d.actual).count();
    Ok(ok(Recount {
        namespaces,
        drifted,
    }))
}

/// The days a usage history covers unless the query says otherwise.
pub const DEFAULT_HISTORY_DAYS: u32 = 30;

/// The query of `GET /api/v1/namespaces/{namespace}/usage-history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    days: Option<u32>,
}

/// The days a usage history query asks for: `days`, 1 to
/// [`berth_registry::usage::MAX_HISTORY_DAYS`], 30 by default.
pub fn history_days(query: Option<&str>) -> Result<u32, ManagementError> {
    let query: HistoryQuery = super::parse_query(query)?;
    let max = berth_registry::usage::MAX_HISTORY_DAYS;
    match query.days {
        None => Ok(DEFAULT_HISTORY_DAYS),
        Some(days) if (1..=max).contains(&days) => Ok(days),
        Some(days) => Err(ManagementError::invalid_request(format!(
            "query parameter days: {days} is not between 1 and {max}"
        ))),
    }
}

/// A namespace's usage per day, oldest first, today last.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageHistory {
    pub namespace: String,
    pub days: Vec<UsageDay>,
}

/// One day of a namespace's usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageDay {
    /// The day (UTC), `YYYY-MM-DD`.
    pub date: String,
    /// Bytes held at the day's last snapshot (today: now), as the storage
    /// quota counts them.
    pub storage_bytes: u64,
    /// Manifest pulls that day.
    pub pulls: u64,
    /// Blob bytes served that day, as the traffic quota counts them.
    pub pull_bytes: u64,
}

/// `namespace`'s usage over its last `days` days, as the API shows it.
pub async fn usage_history(
    registry: &berth_registry::Registry,
    namespace: &Name,
    days: u32,
) -> Result<UsageHistory, ManagementError> {
    let series = registry.usage_history(namespace.as_str(), days).await?;
    Ok(history_view(namespace, series))
}

/// [`usage_history`] when the caller knows the namespace's storage now
/// (the overview, which has just read every namespace's figures).
pub async fn usage_history_until(
    registry: &berth_registry::Registry,
    namespace: &Name,
    days: u32,
    storage_now: u64,
) -> Result<UsageHistory, ManagementError> {
    let series = registry
        .usage_history_until(namespace.as_str(), days, storage_now)
        .await?;
    Ok(history_view(namespace, series))
}

fn history_view(namespace: &Name, series: Vec<berth_registry::DailyUsage>) -> UsageHistory {
    UsageHistory {
        namespace: namespace.to_string(),
        days: series
            .into_iter()
            .map(|day| UsageDay {
                date: time::OffsetDateTime::from_unix_timestamp(day.day)
                    .map(|at| at.date().to_string())
                    .unwrap_or_default(),
                storage_bytes: day.storage_bytes,
                pulls: day.pulls,
                pull_bytes: day.pull_bytes,
            })
            .collect(),
    }
}

/// Get a namespace's usage per day.
///
/// Storage, manifest pulls and blob bytes served, one entry per day (UTC)
/// for the last `days` days (30 unless asked; at most 400), oldest first.
/// Storage is the day's last snapshot (taken every 15 minutes; today's is
/// live); a day without one carries the day before's.
#[utoipa::path(
    get,
    path = "/api/v1/namespaces/{namespace}/usage-history",
    tag = "namespaces",
    operation_id = "get_usage_history",
    params(
        ("namespace" = Name, Path, description = "The namespace"),
        ("days" = Option<u32>, Query, description = "How many days, today included (1 to 400, default 30)"),
    ),
    responses((status = 200, description = "The namespace's usage per day", body = UsageHistory))
)]
pub async fn history(
    ctx: &Context<'_>,
    namespace: &Name,
    days: u32,
) -> Result<Response, ManagementError> {
    Ok(ok(usage_history(ctx.registry, namespace, days).await?))
}
