//! [`JobLeaseStore`]: leases that keep a background job on one node at a time.

use crate::{MetaError, Timestamp};

/// Leases on named background jobs (upload purge, garbage collection), so
/// that when several nodes share the database each job runs on one node at
/// a time, and another node takes over when the holder disappears.
#[async_trait::async_trait]
pub trait JobLeaseStore: Send + Sync + 'static {
    /// Takes or renews the lease on the background job `job` for `lease_secs`
    /// under the holder name `holder`. Returns `true` if the lease was free,
    /// expired (a lease runs until, not including, its expiry second) or
    /// already held by `holder` (which renews it to `now + lease_secs`);
    /// `false`, changing nothing, while another holder's lease runs.
    async fn acquire_job_lease(
        &self,
        job: &str,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<bool, MetaError>;

    /// Gives up `holder`'s lease on `job` so another node need not wait for it
    /// to expire. Releasing a lease held by someone else, or none, changes
    /// nothing and is not an error.
    async fn release_job_lease(&self, job: &str, holder: &str) -> Result<(), MetaError>;
}
