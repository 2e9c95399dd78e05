//! Quotas: storage per namespace (kept and enforced by the metadata store,
//! in the transaction that adds the bytes) and pull traffic per namespace
//! and calendar month (counted and enforced here).
//!
//! # Traffic
//!
//! A client's blob GET that is served, streamed or redirected
//! ([`Registry::serve_blob`], [`Registry::blob_redirect`]), counts the bytes
//! it serves (the range's, or the whole blob's for a redirect) in this
//! node's memory: a lock and a hash lookup, no database write. HEADs, and
//! the registry's own reads (the scanner's, image facts), are not traffic. The counts go to the
//! metadata store in batches with the pull statistics
//! ([`Registry::run_pull_stats`], every few seconds, and once more at
//! shutdown), and each flush reads back every namespace's month total and
//! limit. A GET is refused (`TrafficQuotaExceeded`, HTTP 429 with
//! `Retry-After` at the month's end, UTC) once the namespace's total as
//! last read plus what this node counted since reaches its limit.
//!
//! **Exactness.** The totals are exact sums (counts are additive, whatever
//! node flushes them, in any order), but enforcement is not instant across
//! nodes: a node sees other nodes' traffic up to one flush interval late,
//! and a GET admitted just under the limit serves its whole blob. So a
//! namespace may overshoot its limit by what the other nodes serve in one
//! flush interval plus one blob per node; a single node overshoots by at
//! most one blob. What a node counted since its last flush is lost if the
//! process is killed (statistics, like pull counts): traffic is undercounted,
//! never overcounted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use berth_meta::{Actor, QuotaRow, QuotaUpdate, StorageDrift, Timestamp, TrafficCount, TrafficRow};
use time::OffsetDateTime;

use crate::{Registry, RegistryError};

/// Size units from the largest, binary then decimal: `10GB` is 10^10
/// bytes, `8MiB` is 8 × 2^20 (the configuration, the CLI and the web
/// console all read sizes with [`parse_size`]).
pub const SIZE_UNITS: &[(&str, u64)] = &[
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

/// A number of bytes written as a plain number or with a unit of
/// [`SIZE_UNITS`] (`10GB`, `512 KiB`, `1048576`; units in any case).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || format!("{text:?} is not a size such as 8MiB, 512KiB or 1048576");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let unit = unit.trim();
    let factor = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|(_, factor)| *factor)
            .ok_or_else(invalid)?
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The first second (UTC) of the calendar month holding `at`.
pub fn month_start(at: Timestamp) -> Timestamp {
    let Ok(time) = OffsetDateTime::from_unix_timestamp(at) else {
        return at;
    };
    let date = time.date();
    date.replace_day(1)
        .map(|first| first.midnight().assume_utc().unix_timestamp())
        .unwrap_or(at)
}

/// The first second (UTC) of the calendar month after the one holding `at`.
pub fn next_month_start(at: Timestamp) -> Timestamp {
    let Ok(time) = OffsetDateTime::from_unix_timestamp(at) else {
        return at;
    };
    let date = time.date();
    let (year, month) = match date.month().next() {
        time::Month::January => (date.year() + 1, time::Month::January),
        next => (date.year(), next),
    };
    time::Date::from_calendar_date(year, month, 1)
        .map(|first| first.midnight().assume_utc().unix_timestamp())
        .unwrap_or(at)
}

/// A namespace's own limit that means "none": it exempts the namespace from
/// a registry-wide default. It is the largest limit the metadata store
/// holds (a signed 64-bit integer), which no usage can reach, so the checks
/// need no case of their own; only the figures reported translate it.
pub const UNLIMITED: u64 = i64::MAX as u64;

/// The limit that applies: the namespace's own (where [`UNLIMITED`] is
/// none), else the default.
fn effective(own: Option<u64>, default: Option<u64>) -> Option<u64> {
    match own {
        Some(UNLIMITED) => None,
        Some(limit) => Some(limit),
        None => default,
    }
}

/// A namespace's quotas as they apply: usage and effective limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaStatus {
    pub namespace: String,
    /// Bytes the namespace holds.
    pub storage_bytes: u64,
    /// The limit that applies (`None`: unlimited).
    pub storage_limit: Option<u64>,
    /// Whether that limit is the registry-wide default rather than the
    /// namespace's own.
    pub storage_limit_is_default: bool,
    /// Bytes served this month: the stored total plus this node's counts
    /// not yet flushed.
    pub traffic_bytes: u64,
    pub traffic_limit: Option<u64>,
    pub traffic_limit_is_default: bool,
    /// The month the traffic is of (its first second, UTC).
    pub month: Timestamp,
}

/// Traffic counted on this node, and what it last read of everyone's.
#[derive(Default)]
pub(crate) struct TrafficMeter {
    state: Mutex<MeterState>,
}

#[derive(Default)]
struct MeterState {
    /// Bytes served since the last flush, by namespace and month.
    pending: HashMap<(String, Timestamp), u64>,
    /// The month `totals` are of.
    month: Timestamp,
    /// Each namespace's stored total and own limit for `month`, as last read.
    totals: HashMap<String, (u64, Option<u64>)>,
}

impl TrafficMeter {
    /// Bytes used and the limit that applies to `namespace` in the month of
    /// `now`, from the last totals read plus this node's pending counts.
    fn state_of(
        &self,
        namespace: &str,
        month: Timestamp,
        default: Option<u64>,
    ) -> (u64, Option<u64>) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (stored, own) = if state.month == month {
            state.totals.get(namespace).copied().unwrap_or((0, None))
        } else {
            (0, None)
        };
        let pending = state
            .pending
            .get(&(namespace.to_owned(), month))
            .copied()
            .unwrap_or(0);
        (stored.saturating_add(pending), effective(own, default))
    }

    /// This node's counts for `namespace` in `month` not yet flushed.
    fn pending(&self, namespace: &str, month: Timestamp) -> u64 {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .pending
            .get(&(namespace.to_owned(), month))
            .copied()
            .unwrap_or(0)
    }

    fn add(&self, namespace: &str, month: Timestamp, bytes: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let pending = state
            .pending
            .entry((namespace.to_owned(), month))
            .or_default();
        *pending = pending.saturating_add(bytes);
    }

    /// The pending counts, to be stored as of day `day`.
    fn take(&self, day: Timestamp) -> Vec<TrafficCount> {
        let pending =
            std::mem::take(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()).pending);
        pending
            .into_iter()
            .map(|((namespace, month), bytes)| TrafficCount {
                namespace,
                month,
                day,
                bytes,
            })
            .collect()
    }

    fn restore(&self, counts: Vec<TrafficCount>) {
        for count in counts {
            self.add(&count.namespace, count.month, count.bytes);
        }
    }

    fn set_totals(&self, month: Timestamp, rows: Vec<TrafficRow>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.month = month;
        state.totals = rows
            .into_iter()
            .map(|row| (row.namespace, (row.bytes, row.limit)))
            .collect();
    }

    fn set_limit(&self, namespace: &str, month: Timestamp, limit: Option<u64>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // A new month since the last flush: the totals read were of the old
        // one (and counted as nothing now), so start it, or the new limit
        // would wait for the next flush.
        if state.month < month {
            state.month = month;
            state.totals.clear();
        }
        if state.month == month {
            state
                .totals
                .entry(namespace.to_owned())
                .or_insert((0, None))
                .1 = limit;
        }
    }
}

/// The shortest time between two `quota.exceeded` events of one namespace
/// and quota from one node: a client retrying a refused push every second
/// is one event a minute, not sixty.
pub const QUOTA_EVENT_INTERVAL: Duration = Duration::from_secs(60);

/// Most (namespace, quota) pairs remembered; past it the memory is cleared,
/// which at worst lets one more event per pair through early.
const MAX_QUOTA_EVENT_KEYS: usize = 10_000;

/// When this node last wrote a `quota.exceeded` event, per namespace and
/// quota.
#[derive(Default)]
pub(crate) struct QuotaEvents {
    last: Mutex<HashMap<(String, &'static str), Timestamp>>,
}

impl QuotaEvents {
    /// Whether an event for `key` may be written at `now` (and if so, notes
    /// that it is).
    fn admit(&self, key: (String, &'static str), now: Timestamp) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let interval = QUOTA_EVENT_INTERVAL.as_secs() as Timestamp;
        if last.get(&key).is_some_and(|at| now - at < interval) {
            return false;
        }
        if last.len() >= MAX_QUOTA_EVENT_KEYS {
            last.clear();
        }
        last.insert(key, now);
        true
    }
}

impl Registry {
    /// Records, as a `quota.exceeded` event, that `actor`'s request was
    /// refused with `error`, when that is a quota's refusal (other errors
    /// are ignored). At most one event per namespace and quota a minute
    /// from this node; written in the background, so the refusal is not
    /// slowed, and a failure to write it is logged, not answered.
    pub fn note_quota_refusal(&self, actor: &Actor, error: &RegistryError) {
        let (namespace, quota, detail) = match error {
            RegistryError::StorageQuotaExceeded(exceeded) => (
                exceeded.namespace.clone(),
                "storage",
                serde_json::json!({
                    "quota": "storage",
                    "usage": exceeded.usage,
                    "limit": exceeded.limit,
                    "adding": exceeded.adding,
                }),
            ),
            RegistryError::TrafficQuotaExceeded {
                namespace,
                used,
                limit,
                ..
            } => (
                namespace.clone(),
                "traffic",
                serde_json::json!({ "quota": "traffic", "usage": used, "limit": limit }),
            ),
            _ => return,
        };
        let now = self.now();
        if !self
            .inner
            .quota_events
            .admit((namespace.clone(), quota), now)
        {
            return;
        }
        let change = self.change(actor);
        let registry = self.clone();
        tokio::spawn(async move {
            if let Err(error) = registry
                .meta()
                .record_quota_exceeded(&change, &namespace, detail)
                .await
            {
                tracing::warn!(%error, %namespace, quota, "cannot record a quota refusal");
            }
        });
    }

    /// Refuses a blob GET from `namespace` once its traffic this month has
    /// reached its limit (see the module documentation for how exact that
    /// is across nodes).
    pub(crate) fn admit_traffic(&self, namespace: &str) -> Result<(), RegistryError> {
        let now = self.now();
        let month = month_start(now);
        let (used, limit) =
            self.inner
                .traffic
                .state_of(namespace, month, self.config().default_traffic_limit);
        match limit {
            Some(limit) if used >= limit => Err(RegistryError::TrafficQuotaExceeded {
                namespace: namespace.to_owned(),
                used,
                limit,
                retry_after: u64::try_from(next_month_start(now) - now)
                    .unwrap_or(0)
                    .max(1),
            }),
            _ => Ok(()),
        }
    }

    /// Counts `bytes` served from `namespace` now.
    pub(crate) fn count_traffic(&self, namespace: &str, bytes: u64) {
        self.inner
            .traffic
            .add(namespace, month_start(self.now()), bytes);
    }

    /// Adds the traffic counted since the last flush to the metadata store
    /// and reads back every namespace's total and limit for this month.
    /// Counts the store could not take are kept for the next flush.
    pub async fn flush_traffic(&self) -> Result<(), RegistryError> {
        let batch = self.inner.traffic.take(berth_meta::day_start(self.now()));
        if let Err(error) = self.meta().record_traffic(&batch).await {
            self.inner.traffic.restore(batch);
            return Err(error.into());
        }
        let month = month_start(self.now());
        let rows = self.meta().traffic(month).await?;
        self.inner.traffic.set_totals(month, rows);
        Ok(())
    }

    fn quota_status(&self, row: QuotaRow, month: Timestamp) -> QuotaStatus {
        let config = self.config();
        let pending = self.inner.traffic.pending(&row.namespace, month);
        QuotaStatus {
            storage_bytes: row.storage_bytes,
            storage_limit: effective(row.storage_limit, config.default_storage_limit),
            storage_limit_is_default: row.storage_limit.is_none()
                && config.default_storage_limit.is_some(),
            traffic_bytes: row.traffic_bytes.saturating_add(pending),
            traffic_limit: effective(row.traffic_limit, config.default_traffic_limit),
            traffic_limit_is_default: row.traffic_limit.is_none()
                && config.default_traffic_limit.is_some(),
            month,
            namespace: row.namespace,
        }
    }

    /// One namespace's quotas; `NamespaceUnknown` if there is no such
    /// namespace.
    pub async fn quota(&self, namespace: &str) -> Result<QuotaStatus, RegistryError> {
        let month = month_start(self.now());
        let row = self
            .meta()
            .quota(namespace, month)
            .await?
            .ok_or(RegistryError::NamespaceUnknown)?;
        Ok(self.quota_status(row, month))
    }

    /// Every namespace's quotas, by name, after `after`, at most `limit`.
    pub async fn quotas(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<QuotaStatus>, RegistryError> {
        let month = month_start(self.now());
        let rows = self.meta().list_quotas(after, limit, month).await?;
        Ok(rows
            .into_iter()
            .map(|row| self.quota_status(row, month))
            .collect())
    }

    /// Changes a namespace's own limits (`None` in the update: unchanged;
    /// `Some(None)`: back to the default). `NamespaceUnknown` if there is
    /// no such namespace.
    pub async fn set_quota(
        &self,
        actor: &Actor,
        namespace: &str,
        update: &QuotaUpdate,
    ) -> Result<QuotaStatus, RegistryError> {
        let month = month_start(self.now());
        let row = match self
            .meta()
            .set_quota(&self.change(actor), namespace, update, month)
            .await
        {
            Err(berth_meta::MetaError::NotFound) => return Err(RegistryError::NamespaceUnknown),
            other => other?,
        };
        // This node applies the new traffic limit at once; the others with
        // their next flush.
        self.inner
            .traffic
            .set_limit(namespace, month, row.traffic_limit);
        Ok(self.quota_status(row, month))
    }

    /// Recounts every namespace's storage usage from the data, corrects
    /// what had drifted, and returns every namespace's recorded and actual
    /// figures.
    pub async fn recompute_quotas(
        &self,
        actor: &Actor,
    ) -> Result<Vec<StorageDrift>, RegistryError> {
        Ok(self.meta().recompute_storage(&self.change(actor)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event per namespace and quota a minute: a retry inside the
    /// interval is not admitted, another quota or namespace is, and the
    /// interval's end admits the next.
    #[test]
    fn quota_events_are_admitted_once_a_minute_per_namespace_and_quota() {
        let events = QuotaEvents::default();
        let key = |ns: &str, quota| (ns.to_string(), quota);
        for (key, now, admitted) in [
            (key("a", "storage"), 100, true),
            (key("a", "storage"), 101, false),
            (key("a", "traffic"), 101, true),
            (key("b", "storage"), 102, true),
            (key("a", "storage"), 159, false),
            (key("a", "storage"), 160, true),
        ] {
            assert_eq!(events.admit(key.clone(), now), admitted, "{key:?} at {now}");
        }
    }

    /// Months start on the first at midnight UTC, whatever the month's
    /// length, across a year's end and in a leap year.
    #[test]
    fn months_start_and_end_in_utc() {
        let table = [
            // 2024-02-29 12:00:00 UTC
            (1_709_208_000, 1_706_745_600, 1_709_251_200),
            // 2024-12-31 23:59:59 UTC
            (1_735_689_599, 1_733_011_200, 1_735_689_600),
            // 2025-01-01 00:00:00 UTC, the first second of a month
            (1_735_689_600, 1_735_689_600, 1_738_368_000),
        ];
        for (at, start, next) in table {
            assert_eq!(month_start(at), start, "start of {at}");
            assert_eq!(next_month_start(at), next, "end of {at}");
        }
    }

    /// Pending counts add to the totals last read, per namespace and
    /// month; the namespace's own limit beats the default; a new month
    /// starts from nothing; a failed flush's counts come back.
    #[test]
    fn the_meter_adds_pending_counts_to_the_totals_read() {
        let meter = TrafficMeter::default();
        let (march, april) = (1_709_251_200, 1_711_929_600);
        meter.set_totals(
            march,
            vec![TrafficRow {
                namespace: "a".into(),
                bytes: 100,
                limit: Some(150),
            }],
        );
        meter.add("a", march, 30);
        meter.add("b", march, 5);
        assert_eq!(meter.state_of("a", march, Some(1000)), (130, Some(150)));
        assert_eq!(meter.state_of("b", march, Some(1000)), (5, Some(1000)));
        assert_eq!(meter.state_of("a", april, None), (0, None));
        let taken = meter.take(march);
        assert_eq!(taken.iter().map(|c| c.bytes).sum::<u64>(), 35);
        assert_eq!(meter.state_of("a", march, None), (100, Some(150)));
        meter.restore(taken);
        assert_eq!(meter.state_of("a", march, None), (130, Some(150)));
        meter.set_limit("b", march, Some(UNLIMITED));
        assert_eq!(meter.state_of("b", march, Some(1000)), (5, None));
    }

    /// A namespace's own limit beats the default, `UNLIMITED` is none even
    /// with a default, and no limit of its own leaves the default.
    #[test]
    fn the_effective_limit_is_the_namespace_s_own_else_the_default() {
        let table = [
            (Some(10), Some(20), Some(10)),
            (Some(10), None, Some(10)),
            (None, Some(20), Some(20)),
            (None, None, None),
            (Some(UNLIMITED), Some(20), None),
            (Some(UNLIMITED), None, None),
            (Some(0), Some(20), Some(0)),
        ];
        for (own, default, applies) in table {
            assert_eq!(
                effective(own, default),
                applies,
                "own {own:?}, default {default:?}"
            );
        }
    }
}
