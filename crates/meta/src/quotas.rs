//! [`QuotaStore`]: storage and pull-traffic quotas per namespace.
//!
//! **Storage.** A namespace's usage is the bytes it holds: each blob its
//! repositories link or their manifests reference, and each manifest, once
//! per namespace however many of its repositories hold it. Manifests in the
//! trash still hold their blobs, so they count until the trash expires
//! them. Usage is kept incrementally, in the transaction of every write that
//! adds or removes a holder (migration 0017's triggers), never recounted on
//! the push path. A write that would add bytes beyond the namespace's limit
//! (its own, else the store's default,
//! [`SqlMetaStore::with_default_storage_limit`](crate::sql::SqlMetaStore::with_default_storage_limit))
//! fails with [`MetaError::QuotaExceeded`] and changes nothing: a blob link
//! ([`BlobLinkStore::link_blob`](crate::BlobLinkStore::link_blob), a
//! finished upload) or a manifest
//! ([`ManifestStore::put_manifest`](crate::ManifestStore::put_manifest)).
//! The check is exact under concurrent writers: on PostgreSQL the writer
//! locks the namespace's usage row before deciding, so writers adding bytes
//! to one namespace decide one at a time, each on the others' committed
//! result.
//!
//! **Traffic.** Bytes of blobs served, per namespace and calendar month
//! (UTC), added in batches by the nodes ([`QuotaStore::record_traffic`]);
//! enforcement, from those totals, is the registry's.

use crate::{Change, MetaError, Timestamp};

/// A namespace's quota state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaRow {
    pub namespace: String,
    /// Bytes the namespace holds now.
    pub storage_bytes: u64,
    /// The namespace's own storage limit; `None`: the default applies.
    pub storage_limit: Option<u64>,
    /// The namespace's own monthly traffic limit; `None`: the default
    /// applies.
    pub traffic_limit: Option<u64>,
    /// Bytes served in the month asked about, as far as nodes have flushed
    /// their counts.
    pub traffic_bytes: u64,
}

/// A change to a namespace's limits: `None` leaves a limit as it is,
/// `Some(None)` returns it to the default, `Some(Some(n))` sets it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaUpdate {
    pub storage_limit: Option<Option<u64>>,
    pub traffic_limit: Option<Option<u64>>,
}

/// What a refused write would have done: the namespace's usage before it,
/// the limit that applied and the bytes the write would have added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub namespace: String,
    pub usage: u64,
    pub limit: u64,
    pub adding: u64,
}

/// One namespace's usage as recorded and as recounted from the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageDrift {
    pub namespace: String,
    pub recorded: u64,
    pub actual: u64,
}

/// Bytes served from one namespace in one month, counted by a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficCount {
    pub namespace: String,
    /// The Unix time of the month's first second (UTC).
    pub month: Timestamp,
    /// The Unix time of the first second of the day the bytes count in, in
    /// the namespace's daily usage (the day of the batch's flush).
    pub day: Timestamp,
    pub bytes: u64,
}

/// A namespace's traffic in one month with its own limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficRow {
    pub namespace: String,
    pub bytes: u64,
    pub limit: Option<u64>,
}

/// Quotas.
#[async_trait::async_trait]
pub trait QuotaStore: Send + Sync + 'static {
    /// The namespace's quota state with its traffic in `month`; `None` if
    /// no such namespace.
    async fn quota(&self, namespace: &str, month: Timestamp)
        -> Result<Option<QuotaRow>, MetaError>;

    /// Every namespace's quota state, by name, strictly after `after`, at
    /// most `limit`.
    async fn list_quotas(
        &self,
        after: Option<&str>,
        limit: usize,
        month: Timestamp,
    ) -> Result<Vec<QuotaRow>, MetaError>;

    /// Changes a namespace's limits and returns its new state (traffic of
    /// `month`). `NotFound` if no such namespace. Writes `quota.set` when a
    /// limit changes. A lower limit than the usage refuses further bytes
    /// and deletes nothing.
    async fn set_quota(
        &self,
        change: &Change,
        namespace: &str,
        update: &QuotaUpdate,
        month: Timestamp,
    ) -> Result<QuotaRow, MetaError>;

    /// Recounts every namespace's storage usage from the data (links,
    /// references, manifests), replaces what was recorded where it differs
    /// (writing `quota.recomputed` for each), and returns every namespace's
    /// recorded and actual figures, by name. One transaction; on PostgreSQL
    /// it locks every usage row first, so no write changes usage meanwhile.
    async fn recompute_storage(&self, change: &Change) -> Result<Vec<StorageDrift>, MetaError>;

    /// Adds each count to its namespace's month, in one transaction, in
    /// one order whatever the batch's (so two nodes flushing at once cannot
    /// deadlock). Counts of namespaces that no longer exist are dropped.
    /// Traffic is a statistic: no event.
    async fn record_traffic(&self, counts: &[TrafficCount]) -> Result<(), MetaError>;

    /// The namespaces that served bytes in `month` or have a traffic limit
    /// of their own, with both.
    async fn traffic(&self, month: Timestamp) -> Result<Vec<TrafficRow>, MetaError>;

    /// Writes a `quota.exceeded` event about `namespace` as `change`'s
    /// actor, by itself: the change that was refused wrote nothing, and
    /// this records that it was refused (`detail`: which quota, the usage
    /// and limit, what the request would have added).
    async fn record_quota_exceeded(
        &self,
        change: &Change,
        namespace: &str,
        detail: serde_json::Value,
    ) -> Result<(), MetaError>;
}
