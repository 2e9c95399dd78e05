//! [`AdvisorySyncStore`]: the state of each configured advisory source's
//! scheduled sync.

use crate::{MetaError, Timestamp};

/// What the store remembers of one advisory source (a URL of an OSV
/// `all.zip` or record) between syncs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdvisorySourceRow {
    pub url: String,
    /// When a sync of the source last started.
    pub last_attempt_at: Option<Timestamp>,
    /// When a sync of the source last succeeded (a download stored, or the
    /// source answered that nothing changed).
    pub last_success_at: Option<Timestamp>,
    /// Records the last successful sync added, updated or removed.
    pub records_changed: u64,
    /// Why the last attempt failed; `None` when it succeeded.
    pub last_error: Option<String>,
    /// The `ETag` of the last download, sent back as `If-None-Match`.
    pub etag: Option<String>,
    /// The `Last-Modified` of the last download, sent back as
    /// `If-Modified-Since`.
    pub last_modified: Option<String>,
}

/// The sync state of advisory sources. Operational records, like job
/// leases: written without a [`Change`](crate::Change) and without events
/// (the advisories a sync imports write theirs).
#[async_trait::async_trait]
pub trait AdvisorySyncStore: Send + Sync + 'static {
    /// Records that a sync of `url` succeeded at `now`, changing
    /// `records_changed` records, with the validators of what was
    /// downloaded (`None` keeps the stored ones: a `304 Not Modified`
    /// answer carries none that matter). Clears the last error; creates the
    /// source's row if it has none.
    async fn record_advisory_sync_success(
        &self,
        url: &str,
        now: Timestamp,
        records_changed: u64,
        validators: Option<(Option<&str>, Option<&str>)>,
    ) -> Result<(), MetaError>;

    /// Records that a sync of `url` failed at `now` with `error` (bounded
    /// by the caller); the last success and the validators stay. Creates
    /// the source's row if it has none.
    async fn record_advisory_sync_failure(
        &self,
        url: &str,
        now: Timestamp,
        error: &str,
    ) -> Result<(), MetaError>;

    /// The state of every source that was ever synced, by URL.
    async fn advisory_sources(&self) -> Result<Vec<AdvisorySourceRow>, MetaError>;
}
