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
    /// Sessions idle for longer than the upload TTL, with their data.
    pub uploads_removed: usize,
    /// Upload data without a session (a crash between the two left it),
    /// idle for longer than the upload TTL.
    pub orphaned_uploads_removed: usize,
}

/// How many sessions one batch of the purge handles, so a pass never holds
/// much in memory however many sessions expired.
const PURGE_BATCH: usize = 100;

impl Registry {
    /// Removes upload sessions idle for longer than the configured TTL,
    /// with their data, and then upload data that has no session and has
    /// not been written for as long.
    ///
    /// A session's record is deleted before its data (see `uploads.rs`), so
    /// a crash halfway leaves data without a record, which the second half
    /// finds. That half waits out the TTL too, for the same reason sessions
    /// get it: an upload whose record was just deleted by a finish still in
    /// progress must keep its data until that finish has used it, and no
    /// finish takes anywhere near that long.
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
                if !self.meta().delete_upload(&record.id).await? {
                    // Finished, cancelled or purged meanwhile, by whoever
                    // deleted the record, which also takes care of the data.
                    continue;
                }
                if let Some(id) = UploadId::parse(&record.id) {
                    self.blobs().abort_upload(&id, progress.as_ref()).await?;
                }
                report.uploads_removed += 1;
            }
            if batch_len < PURGE_BATCH {
                break;
            }
        }
        report.orphaned_uploads_removed = self.purge_orphaned_uploads(cutoff).await?;
        Ok(report)
    }

    /// Removes upload data last written before `cutoff` that no session
    /// record owns; returns how many uploads it removed.
    async fn purge_orphaned_uploads(&self, cutoff: i64) -> Result<usize, RegistryError> {
        let mut removed = 0;
        let mut after: Option<UploadId> = None;
        loop {
            let page = self
                .blobs()
                .list_uploads(after.as_ref(), PURGE_BATCH)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let page_len = page.len();
            let idle: Vec<String> = page
                .into_iter()
                .filter(|upload| upload.modified < cutoff)
                .map(|upload| upload.id.to_string())
                .collect();
            for orphan in self.meta().unknown_uploads(&idle).await? {
                if let Some(id) = UploadId::parse(&orphan) {
                    tracing::info!(upload = %id, "removing upload data without a session");
                    self.blobs().abort_upload(&id, None).await?;
                    removed += 1;
                }
            }
            if page_len < PURGE_BATCH {
                break;
            }
        }
        Ok(removed)
    }

    /// Runs the purge every `interval` until `shutdown` fires. Several nodes
    /// may run this loop; a job lease in the metadata store lets one of them
    /// work at a time, and another takes over if that node disappears.
    pub async fn run_upload_purge(&self, interval: Duration, shutdown: CancellationToken) {
        self.every_interval_under_lease(
            UPLOAD_PURGE_JOB,
            "upload purge",
            interval,
            shutdown,
            || async {
                match self.purge_expired_uploads().await {
                    Ok(report)
                        if report.uploads_removed > 0 || report.orphaned_uploads_removed > 0 =>
                    {
                        tracing::info!(
                            removed = report.uploads_removed,
                            orphans = report.orphaned_uploads_removed,
                            "purged expired upload sessions"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "upload purge failed"),
                }
            },
        )
        .await
    }

    /// Runs `pass` every `interval` until `shutdown` fires, on one node at a
    /// time: before each pass the node takes the job lease `job` (held for
    /// twice the interval, at least a minute, so a node that dies hands the
    /// work on); a node that cannot take it skips that pass. `what` names
    /// the job in the log. Every periodic job of the registry runs here.
    pub(crate) async fn every_interval_under_lease<F, Fut>(
        &self,
        job: &str,
        what: &str,
        interval: Duration,
        shutdown: CancellationToken,
        mut pass: F,
    ) where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let lease_secs = (interval.as_secs() as i64 * 2).max(60);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let holder = &self.config().node_name;
            match self
                .meta()
                .acquire_job_lease(job, holder, self.now(), lease_secs)
                .await
            {
                Ok(true) => pass().await,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "cannot take the {what} lease"),
            }
        }
    }
}

/// The job lease name of the upload purge.
const UPLOAD_PURGE_JOB: &str = "upload-purge";
