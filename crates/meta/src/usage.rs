//! [`UsageHistoryStore`]: each namespace's storage, pulls and pull bytes
//! per day, for the console's 30-day charts and
//! `GET /api/v1/namespaces/{namespace}/usage-history`.

use crate::{MetaError, Timestamp};

/// Seconds in a day (UTC days have no leap seconds in Unix time).
pub const DAY: Timestamp = 86_400;

/// The first second of the UTC day of `at`.
pub fn day_start(at: Timestamp) -> Timestamp {
    at - at.rem_euclid(DAY)
}

/// One namespace's figures for one day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DailyUsage {
    /// The first second of the day (UTC).
    pub day: Timestamp,
    /// Bytes held, as the storage quota counts them, at the day's last
    /// snapshot.
    pub storage_bytes: u64,
    /// Manifest pulls counted that day.
    pub pulls: u64,
    /// Blob bytes served that day (what the traffic quota counts).
    pub pull_bytes: u64,
}

/// The daily usage series. Pulls and pull bytes are added by
/// `PullStatsStore::record_pulls` and `QuotaStore::record_traffic` in their
/// own transactions (the day of each count); this trait snapshots storage,
/// prunes old days and reads a series. Statistics, not changes anyone made:
/// no events.
#[async_trait::async_trait]
pub trait UsageHistoryStore: Send + Sync + 'static {
    /// Sets the storage of day `day` of every namespace to what it holds
    /// now (creating the day's row with no pulls where there is none); one
    /// statement, O(namespaces). Returns how many rows it wrote.
    async fn snapshot_storage(&self, day: Timestamp) -> Result<u64, MetaError>;

    /// Deletes the rows of days before `before`; returns how many.
    async fn prune_usage_history(&self, before: Timestamp) -> Result<u64, MetaError>;

    /// The stored days of `namespace` from day `from` on, oldest first
    /// (days without a row are missing: no snapshot and no pulls).
    async fn usage_history(
        &self,
        namespace: &str,
        from: Timestamp,
    ) -> Result<Vec<DailyUsage>, MetaError>;
}
