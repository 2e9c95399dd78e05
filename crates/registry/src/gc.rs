//! Online garbage collection: removing what nothing references any more,
//! while pushes and pulls go on.
//!
//! The metadata store keeps the reference facts (which links no manifest
//! references, which blobs nothing links or references, since when), updated
//! in the same transactions that add and remove references. A pass therefore
//! reads candidates only, and its work grows with the garbage, not with the
//! registry. Every step re-checks its candidates in the transaction that
//! removes them; bytes are deleted only after the metadata row is gone and a
//! deletion marker makes `link_blob` refuse the digest (see "Deletion and
//! garbage collection" in ARCHITECTURE.md for why nothing referenced can be
//! lost). A pass is a sequence of bounded batches:
//!
//! 1. finish deletions a crashed pass left half done (markers),
//! 2. optionally delete old untagged manifests,
//! 3. remove repository links unreferenced for longer than the grace period,
//! 4. delete blobs unreferenced for longer than the grace period,
//! 5. optionally sweep storage for objects the metadata does not know.

use std::time::{Duration, Instant};

use berth_meta::{
    Actor, BlobCandidate, Change, GcCutoffs, LinkCandidate, ManifestCandidate, Timestamp,
};
use tokio_util::sync::CancellationToken;

use crate::{Registry, RegistryError};

/// The name of the job lease that keeps garbage collection on one node,
/// and of the actor its changes are made by.
pub const GC_JOB: &str = "gc";

/// A change garbage collection makes at `now`.
fn gc_change(now: Timestamp) -> Change {
    Change::new(Actor::system(GC_JOB), now)
}

/// How one pass runs.
#[derive(Clone, Debug, Default)]
pub struct GcOptions {
    /// Report what would be removed and remove nothing.
    pub dry_run: bool,
    /// Also walk the blob store for objects the metadata does not know. This
    /// reads every stored object, so it runs on its own, rarer schedule.
    pub sweep_orphans: bool,
    /// Stops the pass between two items when cancelled (shutdown); what is
    /// left is picked up by the next pass.
    pub cancel: CancellationToken,
}

/// What one pass removed (or, in a dry run, would remove).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub dry_run: bool,
    /// Another node held the job lease, so this pass did nothing.
    pub lease_busy: bool,
    /// The pass stopped early (cancelled, or the lease was lost).
    pub interrupted: bool,
    /// Untagged manifests (and their referrers) deleted.
    pub manifests_removed: u64,
    /// Repository links removed.
    pub links_removed: u64,
    /// Blobs whose rows and bytes were deleted (including deletions a crashed
    /// pass left half done).
    pub blobs_removed: u64,
    /// Stored objects the metadata did not know, deleted by the sweep.
    pub orphans_removed: u64,
    /// Bytes of the blobs and orphans deleted.
    pub bytes_reclaimed: u64,
    /// Wall-clock time of the pass.
    pub duration: Duration,
}

impl GcReport {
    /// Manifests, blobs and orphaned objects removed (links are bookkeeping,
    /// not objects).
    pub fn objects_removed(&self) -> u64 {
        self.manifests_removed + self.blobs_removed + self.orphans_removed
    }
}

impl std::fmt::Display for GcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lease_busy {
            return write!(
                f,
                "skipped: another node holds the garbage-collection lease"
            );
        }
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        write!(
            f,
            "{verb} {} manifests, {} repository links, {} blobs, {} orphaned objects; \
             {} bytes; {:.3} s{}",
            self.manifests_removed,
            self.links_removed,
            self.blobs_removed,
            self.orphans_removed,
            self.bytes_reclaimed,
            self.duration.as_secs_f64(),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
        )
    }
}

/// Why a pass stopped before its end.
enum Stop {
    Interrupted,
    Failed(RegistryError),
}

impl From<RegistryError> for Stop {
    fn from(e: RegistryError) -> Self {
        Stop::Failed(e)
    }
}

impl From<berth_meta::MetaError> for Stop {
    fn from(e: berth_meta::MetaError) -> Self {
        Stop::Failed(e.into())
    }
}

impl From<berth_storage::StorageError> for Stop {
    fn from(e: berth_storage::StorageError) -> Self {
        Stop::Failed(e.into())
    }
}

/// The state of one pass: its report, and its hold on the job lease.
struct Pass<'a> {
    registry: &'a Registry,
    options: &'a GcOptions,
    report: GcReport,
    /// When the lease was last taken or renewed.
    renewed: Instant,
}

impl Registry {
    /// Runs one garbage-collection pass, if this node can take the job lease.
    pub async fn collect_garbage(&self, options: &GcOptions) -> Result<GcReport, RegistryError> {
        let started = Instant::now();
        let mut pass = Pass {
            registry: self,
            options,
            report: GcReport {
                dry_run: options.dry_run,
                ..GcReport::default()
            },
            renewed: Instant::now(),
        };
        if !pass.take_lease().await? {
            pass.report.lease_busy = true;
            return Ok(pass.report);
        }
        let outcome = pass.run().await;
        let _ = self
            .meta()
            .release_job_lease(GC_JOB, &self.config().node_name)
            .await;
        let mut report = pass.report;
        report.duration = started.elapsed();
        match outcome {
            Ok(()) => Ok(report),
            Err(Stop::Interrupted) => {
                report.interrupted = true;
                Ok(report)
            }
            Err(Stop::Failed(e)) => Err(e),
        }
    }

    /// Runs a pass every `interval` (and the orphan sweep with it every
    /// `sweep_interval`) until `shutdown` fires, handing each report to
    /// `on_report` (the server records metrics there).
    pub async fn run_gc(
        &self,
        interval: Duration,
        sweep_interval: Duration,
        shutdown: CancellationToken,
        on_report: impl Fn(&GcReport) + Send,
    ) {
        let mut last_sweep = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let sweep_orphans = last_sweep.elapsed() >= sweep_interval;
            let options = GcOptions {
                dry_run: false,
                sweep_orphans,
                cancel: shutdown.clone(),
            };
            match self.collect_garbage(&options).await {
                Ok(report) => {
                    if sweep_orphans && !report.lease_busy && !report.interrupted {
                        last_sweep = Instant::now();
                    }
                    if report.objects_removed() > 0 || report.links_removed > 0 {
                        tracing::info!(%report, "garbage collection pass");
                    } else {
                        tracing::debug!(%report, "garbage collection pass");
                    }
                    on_report(&report);
                }
                Err(e) => tracing::warn!(error = %e, "garbage collection pass failed"),
            }
        }
    }
}

impl Pass<'_> {
    async fn run(&mut self) -> Result<(), Stop> {
        let registry = self.registry;
        let config = registry.config();
        let now = registry.now();
        let grace = secs(config.gc_grace_period);
        let cutoffs = GcCutoffs {
            unreferenced_before: now - grace,
            never_referenced_before: now - grace.max(secs(config.upload_ttl)),
        };
        if !self.options.dry_run {
            self.finish_pending_deletions().await?;
        }
        if let Some(age) = config.gc_untagged_age {
            self.untagged_manifests(now - secs(age), now).await?;
        }
        self.links(cutoffs, now).await?;
        self.blobs(cutoffs.unreferenced_before, now).await?;
        if self.options.sweep_orphans {
            self.sweep_orphans(now - grace, now).await?;
        }
        Ok(())
    }

    fn batch(&self) -> usize {
        self.registry.config().gc_batch_size.max(1)
    }

    /// Takes or renews the job lease. Returns whether this node holds it.
    async fn take_lease(&mut self) -> Result<bool, RegistryError> {
        let registry = self.registry;
        let held = registry
            .meta()
            .acquire_job_lease(
                GC_JOB,
                &registry.config().node_name,
                registry.now(),
                secs(registry.config().gc_lease).max(1),
            )
            .await?;
        self.renewed = Instant::now();
        Ok(held)
    }

    /// Called between items: stops on cancellation, and renews the lease once
    /// a third of it has passed (stopping if another node took it over).
    async fn checkpoint(&mut self) -> Result<(), Stop> {
        if self.options.cancel.is_cancelled() {
            return Err(Stop::Interrupted);
        }
        if self.renewed.elapsed() >= self.registry.config().gc_lease / 3
            && !self.take_lease().await?
        {
            tracing::warn!("lost the garbage-collection lease; stopping the pass");
            return Err(Stop::Interrupted);
        }
        Ok(())
    }

    /// Deletes the bytes of blobs whose deletion began (their rows are gone
    /// and `link_blob` refuses them), then ends each deletion.
    async fn delete_bytes(&mut self, blob: &BlobCandidate) -> Result<(), Stop> {
        let registry = self.registry;
        registry.blobs().delete_blob(&blob.digest).await?;
        registry.meta().finish_blob_deletion(&blob.digest).await?;
        self.report.bytes_reclaimed += blob.size;
        Ok(())
    }

    async fn finish_pending_deletions(&mut self) -> Result<(), Stop> {
        loop {
            let pending = self
                .registry
                .meta()
                .pending_blob_deletions(self.batch())
                .await?;
            let full = pending.len() == self.batch();
            for blob in &pending {
                self.checkpoint().await?;
                self.delete_bytes(blob).await?;
                self.report.blobs_removed += 1;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn untagged_manifests(&mut self, before: Timestamp, now: Timestamp) -> Result<(), Stop> {
        let mut after: Option<ManifestCandidate> = None;
        loop {
            let candidates = self
                .registry
                .meta()
                .expired_untagged_manifests(before, after.as_ref(), self.batch())
                .await?;
            let full = candidates.len() == self.batch();
            for candidate in &candidates {
                self.checkpoint().await?;
                if self.options.dry_run {
                    self.report.manifests_removed += 1;
                    continue;
                }
                let deleted = self
                    .registry
                    .meta()
                    .delete_untagged_manifest(&gc_change(now), candidate, before)
                    .await?;
                if let Some(deleted) = deleted {
                    self.report.manifests_removed += 1 + deleted.referrers.len() as u64;
                    self.registry
                        .inner
                        .manifest_cache
                        .invalidate(&candidate.repository);
                }
            }
            after = candidates.last().cloned();
            if !full {
                return Ok(());
            }
        }
    }

    async fn links(&mut self, cutoffs: GcCutoffs, now: Timestamp) -> Result<(), Stop> {
        let mut after: Option<LinkCandidate> = None;
        loop {
            self.checkpoint().await?;
            let candidates = self
                .registry
                .meta()
                .expired_links(cutoffs, after.as_ref(), self.batch())
                .await?;
            let full = candidates.len() == self.batch();
            if self.options.dry_run {
                self.report.links_removed += candidates.len() as u64;
            } else if !candidates.is_empty() {
                let removed = self
                    .registry
                    .meta()
                    .remove_links(&gc_change(now), &candidates, cutoffs)
                    .await?;
                self.report.links_removed += removed.len() as u64;
                // This node stops serving the removed links at once; other
                // nodes' caches let them go within their TTL.
                for link in &removed {
                    self.registry.inner.blob_cache.invalidate(&link.repository);
                }
            }
            after = candidates.last().cloned();
            if !full {
                return Ok(());
            }
        }
    }

    async fn blobs(&mut self, before: Timestamp, now: Timestamp) -> Result<(), Stop> {
        let mut after: Option<BlobCandidate> = None;
        loop {
            self.checkpoint().await?;
            let candidates = self
                .registry
                .meta()
                .expired_blobs(before, after.as_ref(), self.batch())
                .await?;
            let full = candidates.len() == self.batch();
            if self.options.dry_run {
                self.report.blobs_removed += candidates.len() as u64;
                self.report.bytes_reclaimed += candidates.iter().map(|b| b.size).sum::<u64>();
            } else if !candidates.is_empty() {
                // Rows go first (re-checked, with a marker per blob), bytes
                // after: a crash in between leaves markers the next pass
                // finishes, never a row without bytes.
                let begun = self
                    .registry
                    .meta()
                    .begin_blob_deletions(&gc_change(now), &candidates, before)
                    .await?;
                tracing::debug!(blobs = begun.len(), "deleting a batch of blobs");
                for blob in &begun {
                    self.delete_bytes(blob).await?;
                    self.report.blobs_removed += 1;
                }
            }
            after = candidates.last().cloned();
            if !full {
                return Ok(());
            }
        }
    }

    /// Deletes stored objects that have neither a blob row nor a deletion in
    /// progress and were last written before `before`: what a crash between
    /// storing bytes and linking them left behind.
    async fn sweep_orphans(&mut self, before: Timestamp, now: Timestamp) -> Result<(), Stop> {
        let registry = self.registry;
        let mut after = None;
        loop {
            self.checkpoint().await?;
            let page = registry
                .blobs()
                .list_blobs(after.as_ref(), self.batch())
                .await?;
            let full = page.len() == self.batch();
            let digests: Vec<_> = page.iter().map(|b| b.digest.clone()).collect();
            let unknown = registry.meta().unknown_blobs(&digests).await?;
            for stored in page.iter().filter(|b| unknown.contains(&b.digest)) {
                if stored.modified >= before {
                    continue;
                }
                if self.options.dry_run {
                    self.report.orphans_removed += 1;
                    self.report.bytes_reclaimed += stored.size;
                    continue;
                }
                // The marker is what stops a push that found these bytes
                // from linking them while they are deleted.
                if registry
                    .meta()
                    .begin_orphan_deletion(&stored.digest, stored.size, now)
                    .await?
                {
                    self.delete_bytes(&BlobCandidate {
                        digest: stored.digest.clone(),
                        size: stored.size,
                        since: now,
                    })
                    .await?;
                    self.report.orphans_removed += 1;
                }
            }
            after = page.last().map(|b| b.digest.clone());
            if !full {
                return Ok(());
            }
        }
    }
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 4)
}
