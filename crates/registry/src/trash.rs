//! The trash: a deleted image disappears from the registry at once but
//! stays restorable for `trash_retention`; then [`Registry::expire_trash`]
//! deletes it for good, through the manifest deletion garbage collection
//! uses, and what it held becomes collection garbage like after any
//! deletion. The metadata store keeps the entries (`berth_meta::TrashStore`).

use std::time::Duration;

use berth_meta::{Actor, RestoredImage, TrashCursor, TrashEntry};
use berth_oci::{Digest, RepoName};
use tokio_util::sync::CancellationToken;

use crate::{Registry, RegistryError};

/// The job lease that lets one node at a time expire the trash.
const TRASH_EXPIRY_JOB: &str = "trash-expiry";

/// Entries one expiry batch reads; each is deleted in its own transaction.
const EXPIRY_BATCH: usize = 100;

impl Registry {
    /// One page of the trash, of one namespace or of all, oldest first,
    /// strictly after `after`.
    pub async fn trash(
        &self,
        namespace: Option<&str>,
        after: Option<&TrashCursor>,
        limit: usize,
    ) -> Result<Vec<TrashEntry>, RegistryError> {
        Ok(self.meta().list_trash(namespace, after, limit).await?)
    }

    /// When an entry trashed at `trashed_at` expires.
    pub fn trash_expires_at(&self, trashed_at: berth_meta::Timestamp) -> berth_meta::Timestamp {
        trashed_at.saturating_add(self.config().trash_retention.as_secs() as i64)
    }

    /// Brings the trash entry of `digest` back, with its referrers and the
    /// tags still free; `ManifestUnknown` when it is not in the trash.
    pub async fn restore_image(
        &self,
        actor: &Actor,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<RestoredImage, RegistryError> {
        // A restore only makes things appear, and misses are never cached,
        // so no cached entry can contradict it; invalidating anyway keeps
        // tag lookups of this node fresh for the tags it gives back.
        let restored = self
            .meta()
            .restore_manifest(&self.change(actor), repository, digest)
            .await?;
        self.inner.manifest_cache.invalidate(repository);
        restored.ok_or(RegistryError::ManifestUnknown)
    }

    /// Deletes for good every trash entry older than `trash_retention`, in
    /// batches; returns how many entries went. An entry restored or pushed
    /// again meanwhile is skipped (the store re-checks each in the
    /// transaction that deletes it).
    pub async fn expire_trash(&self) -> Result<u64, RegistryError> {
        let before = self.now() - self.config().trash_retention.as_secs() as i64;
        let actor = Actor::system("trash-expiry");
        let mut expired = 0;
        let mut after: Option<TrashCursor> = None;
        loop {
            let batch = self
                .meta()
                .expired_trash(before, after.as_ref(), EXPIRY_BATCH)
                .await?;
            for entry in &batch {
                let deleted = self
                    .meta()
                    .expire_trash(
                        &self.change(&actor),
                        &entry.repository,
                        &entry.digest,
                        before,
                    )
                    .await?;
                if deleted.is_some() {
                    expired += 1;
                }
            }
            if batch.len() < EXPIRY_BATCH {
                return Ok(expired);
            }
            after = batch.last().map(TrashEntry::cursor);
        }
    }

    /// Runs [`Registry::expire_trash`] every `interval` until `shutdown`
    /// fires, on one node at a time (a job lease, as for event retention).
    pub async fn run_trash_expiry(&self, interval: Duration, shutdown: CancellationToken) {
        self.every_interval_under_lease(
            TRASH_EXPIRY_JOB,
            "trash expiry",
            interval,
            shutdown,
            || async {
                match self.expire_trash().await {
                    Ok(0) => {}
                    Ok(expired) => tracing::info!(expired, "deleted expired trash entries"),
                    Err(error) => tracing::warn!(%error, "trash expiry failed"),
                }
            },
        )
        .await
    }
}
