//! Each namespace's usage per day: the storage snapshots (a leased job)
//! and the series the console's charts and
//! `GET /api/v1/namespaces/{namespace}/usage-history` show. Pulls and pull
//! bytes reach the series with the pull and traffic batches (`pulls.rs`,
//! `quotas.rs`), in the same transactions.

use std::time::Duration;

use berth_meta::usage::DAY;
use berth_meta::{day_start, DailyUsage};
use tokio_util::sync::CancellationToken;

use crate::{Registry, RegistryError};

/// How long daily rows are kept: a year and a month, so a year is always
/// there to compare with.
pub const USAGE_HISTORY_DAYS: i64 = 400;

/// The most days one series may ask for.
pub const MAX_HISTORY_DAYS: u32 = 400;

/// How often a node (holding the lease) copies every namespace's storage
/// into today's row: the storage of a day is its last snapshot, so a day's
/// figure is at most this old when the day ends.
pub const USAGE_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// The job lease name of the storage snapshots.
const USAGE_SNAPSHOT_JOB: &str = "usage-snapshot";

impl Registry {
    /// Copies every namespace's storage into today's row and deletes rows
    /// older than [`USAGE_HISTORY_DAYS`]; returns the rows written and
    /// deleted.
    pub async fn snapshot_usage(&self) -> Result<(u64, u64), RegistryError> {
        let today = day_start(self.now());
        let written = self.meta().snapshot_storage(today).await?;
        let pruned = self
            .meta()
            .prune_usage_history(today - USAGE_HISTORY_DAYS * DAY)
            .await?;
        Ok((written, pruned))
    }

    /// Runs [`Registry::snapshot_usage`] every `interval` until `shutdown`
    /// fires, on one node at a time.
    pub async fn run_usage_snapshots(&self, interval: Duration, shutdown: CancellationToken) {
        self.every_interval_under_lease(
            USAGE_SNAPSHOT_JOB,
            "usage snapshot",
            interval,
            shutdown,
            || async {
                if let Err(error) = self.snapshot_usage().await {
                    tracing::warn!(%error, "the usage snapshot failed");
                }
            },
        )
        .await
    }

    /// `namespace`'s last `days` days (1 to [`MAX_HISTORY_DAYS`]), oldest
    /// first, one entry a day: a day without a row has no pulls and the
    /// storage of the day before (0 before the first row); today's storage
    /// is what the namespace holds now. `NamespaceUnknown` if it does not
    /// exist.
    pub async fn usage_history(
        &self,
        namespace: &str,
        days: u32,
    ) -> Result<Vec<DailyUsage>, RegistryError> {
        let now = self.namespace_usage(namespace).await?.storage_bytes;
        self.usage_history_until(namespace, days, now).await
    }

    /// [`Registry::usage_history`] when the caller has just read the
    /// namespace's storage (`now`, today's figure): one query fewer.
    pub async fn usage_history_until(
        &self,
        namespace: &str,
        days: u32,
        now: u64,
    ) -> Result<Vec<DailyUsage>, RegistryError> {
        let days = i64::from(days.clamp(1, MAX_HISTORY_DAYS));
        let today = day_start(self.now());
        let from = today - (days - 1) * DAY;
        let rows = self.meta().usage_history(namespace, from).await?;
        Ok(fill_days(&rows, from, today, now))
    }
}

/// One entry per day from `from` to `today`: the stored row, or one with
/// no pulls and the storage carried forward; today's storage is `now`.
fn fill_days(
    rows: &[DailyUsage],
    from: berth_meta::Timestamp,
    today: berth_meta::Timestamp,
    now: u64,
) -> Vec<DailyUsage> {
    let mut series = Vec::new();
    let mut rows = rows.iter().peekable();
    let mut storage = 0;
    let mut day = from;
    while day <= today {
        let mut entry = DailyUsage {
            day,
            storage_bytes: storage,
            ..DailyUsage::default()
        };
        while let Some(row) = rows.next_if(|row| row.day <= day) {
            if row.day == day {
                entry = row.clone();
            }
        }
        if day == today {
            entry.storage_bytes = now;
        }
        storage = entry.storage_bytes;
        series.push(entry);
        day += DAY;
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (stored rows as (day index, storage, pulls), storage now, expected
    /// (storage, pulls) per day of a 4-day window).
    #[test]
    fn missing_days_carry_the_storage_forward_and_today_is_now() {
        let from = 1_000 * DAY;
        type Case<'a> = (&'a [(i64, u64, u64)], u64, [(u64, u64); 4]);
        let table: [Case; 3] = [
            (&[], 7, [(0, 0), (0, 0), (0, 0), (7, 0)]),
            (
                &[(0, 10, 1), (2, 30, 0)],
                40,
                [(10, 1), (10, 0), (30, 0), (40, 0)],
            ),
            (
                &[(1, 5, 2), (3, 9, 4)],
                12,
                [(0, 0), (5, 2), (5, 0), (12, 4)],
            ),
        ];
        for (rows, now, expected) in table {
            let rows: Vec<DailyUsage> = rows
                .iter()
                .map(|(i, storage, pulls)| DailyUsage {
                    day: from + i * DAY,
                    storage_bytes: *storage,
                    pulls: *pulls,
                    pull_bytes: *pulls * 100,
                })
                .collect();
            let series = fill_days(&rows, from, from + 3 * DAY, now);
            let got: Vec<(u64, u64)> = series.iter().map(|d| (d.storage_bytes, d.pulls)).collect();
            assert_eq!(got, expected, "{rows:?}");
            let days: Vec<i64> = series.iter().map(|d| (d.day - from) / DAY).collect();
            assert_eq!(days, [0, 1, 2, 3]);
        }
    }
}
