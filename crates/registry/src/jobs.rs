//! Background jobs. Each offers `run_once` for tests; the server runs them on
//! a schedule until its shutdown token fires.

use std::time::Duration;

use berth_oci::UploadId;
use berth_storage::UploadProgress;
use tokio_util::sync::CancellationToken;

use crate::{Registry, RegistryError};

/// What one purge pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub uploads_removed: usize,
}

/// How many sessions one batch of the purge handles, so a pass never holds
/// much in memory however many sessions expired.
const PURGE_BATCH: usize = 100;

impl Registry {
    /// Removes upload sessions idle for longer than the configured TTL,
    /// with their data.
    pub async fn purge_expired_uploads(&self) -> Result<PurgeReport, RegistryError> {
        let cutoff = self.now() - self.config().upload_ttl.as_secs() as i64;
        let mut report = PurgeReport::default();
        loop {
            let expired = self.meta().expired_uploads(cutoff, PURGE_BATCH).await?;
            if expired.is_empty() {
                break;
            }
            let batch_len = expired.len();
            for record in expired {
                let progress: Option<UploadProgress> = serde_json::from_str(&record.progress).ok();
                if let Some(id) = UploadId::parse(&record.id) {
                    self.blobs().abort_upload(&id, progress.as_ref()).await?;
                }
                if self.meta().delete_upload(&record.id).await? {
                    report.uploads_removed += 1;
                }
            }
            if batch_len < PURGE_BATCH {
                break;
            }
        }
        Ok(report)
    }

    /// Runs the purge every `interval` until `shutdown` fires. Several nodes
    /// may run this loop; a job lease in the metadata store lets one of them
    /// work at a time, and another takes over if that node disappears.
    pub async fn run_upload_purge(&self, interval: Duration, shutdown: CancellationToken) {
        let lease_secs = (interval.as_secs() as i64 * 2).max(60);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let holder = &self.config().node_name;
            match self
                .meta()
                .acquire_job_lease(UPLOAD_PURGE_JOB, holder, self.now(), lease_secs)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the upload purge lease");
                    continue;
                }
            }
            match self.purge_expired_uploads().await {
                Ok(report) if report.uploads_removed > 0 => {
                    tracing::info!(
                        removed = report.uploads_removed,
                        "purged expired upload sessions"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "upload purge failed"),
            }
        }
    }
}

/// The job lease name of the upload purge.
const UPLOAD_PURGE_JOB: &str = "upload-purge";
