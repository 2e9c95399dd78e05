//! [`GcStore`]: what online garbage collection reads and deletes.
//!
//! The facts it works from are kept by the other traits' writes, in the
//! same transactions as the reference changes that cause them (see
//! "Deletion and garbage collection" in ARCHITECTURE.md): a link no manifest
//! of its repository references carries the time it became unreferenced, a
//! blob nothing links or references carries the time it was orphaned, and a
//! blob whose bytes are being deleted has a deletion marker. Every deleting
//! method re-checks its candidates in the transaction that deletes them.

use berth_oci::{Digest, RepoName};

use crate::manifests::DeletedManifest;
use crate::{Change, MetaError, Timestamp};

/// A repository link that garbage collection may remove: no manifest of the
/// repository references the blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkCandidate {
    pub repository: RepoName,
    pub digest: Digest,
    /// When the link became unreferenced (or was created, if never referenced).
    pub since: Timestamp,
}

/// A blob that garbage collection may delete, or is deleting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobCandidate {
    pub digest: Digest,
    pub size: u64,
    /// When the blob lost its last reference (for a deletion in progress:
    /// when the deletion started).
    pub since: Timestamp,
}

/// An untagged manifest that garbage collection may delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestCandidate {
    pub repository: RepoName,
    pub digest: Digest,
    pub created_at: Timestamp,
}

/// The age limits of one garbage collection pass, as cut-off timestamps:
/// a candidate qualifies when it became one strictly before its cut-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcCutoffs {
    /// For links that a manifest once referenced, and for blobs.
    pub unreferenced_before: Timestamp,
    /// For links no manifest ever referenced (a push may still be on its way).
    pub never_referenced_before: Timestamp,
}

/// Garbage-collection candidates and deletions. Listing methods read
/// candidates through their own indexes, never every link or blob, so a
/// pass costs in proportion to the garbage.
#[async_trait::async_trait]
pub trait GcStore: Send + Sync + 'static {
    /// Lists links that qualify under `cutoffs` (see [`GcCutoffs`]), ordered
    /// by (since, repository, digest) and starting strictly after `after`,
    /// at most `limit`.
    async fn expired_links(
        &self,
        cutoffs: GcCutoffs,
        after: Option<&LinkCandidate>,
        limit: usize,
    ) -> Result<Vec<LinkCandidate>, MetaError>;

    /// Removes those of `links` that still qualify under `cutoffs` and that no
    /// manifest of their repository references, in one transaction. A blob
    /// left without any reference becomes a candidate as of the removed
    /// link's own `since` (it has been unreferenced that long; the change's
    /// time caps it), so one pass can remove the link and then the blob.
    /// Returns the links removed, each with a `blob.unlinked` event.
    async fn remove_links(
        &self,
        change: &Change,
        links: &[LinkCandidate],
        cutoffs: GcCutoffs,
    ) -> Result<Vec<LinkCandidate>, MetaError>;

    /// Lists blobs unreferenced since before `before`, ordered by (since,
    /// digest), strictly after `after`, at most `limit`.
    async fn expired_blobs(
        &self,
        before: Timestamp,
        after: Option<&BlobCandidate>,
        limit: usize,
    ) -> Result<Vec<BlobCandidate>, MetaError>;

    /// For each of `blobs` that is still unreferenced since before `before`
    /// (no repository link, no manifest reference), deletes its row and
    /// records a deletion in progress, in one transaction; from then on
    /// `link_blob` refuses the digest until [`GcStore::finish_blob_deletion`].
    /// Returns the blobs whose deletion began (each with a `blob.deleted`
    /// event); the caller deletes their bytes.
    async fn begin_blob_deletions(
        &self,
        change: &Change,
        blobs: &[BlobCandidate],
        before: Timestamp,
    ) -> Result<Vec<BlobCandidate>, MetaError>;

    /// Records a deletion in progress for a stored object the metadata does
    /// not know (the orphan sweep), unless the digest has a row or a deletion
    /// already. Returns whether it was recorded.
    async fn begin_orphan_deletion(
        &self,
        digest: &Digest,
        size: u64,
        now: Timestamp,
    ) -> Result<bool, MetaError>;

    /// Lists deletions in progress (begun and not finished, e.g. because a
    /// pass crashed), oldest first, at most `limit`.
    async fn pending_blob_deletions(&self, limit: usize) -> Result<Vec<BlobCandidate>, MetaError>;

    /// Ends a deletion in progress once the bytes are gone. Idempotent.
    async fn finish_blob_deletion(&self, digest: &Digest) -> Result<(), MetaError>;

    /// Returns those of `digests` that have neither a blob row nor a deletion
    /// in progress: stored objects the metadata does not know. Each appears
    /// once, in the order first given.
    async fn unknown_blobs(&self, digests: &[Digest]) -> Result<Vec<Digest>, MetaError>;

    /// Lists manifests created before `before` that no tag points at, no index
    /// of their repository lists, and whose subject (if any) is not stored in
    /// their repository (a live manifest's referrers live with it), ordered by
    /// (created_at, repository, digest), strictly after `after`, at most
    /// `limit`. This reads manifests by age, so its cost grows with the
    /// number of manifests older than the cut-off, not only with garbage.
    async fn expired_untagged_manifests(
        &self,
        before: Timestamp,
        after: Option<&ManifestCandidate>,
        limit: usize,
    ) -> Result<Vec<ManifestCandidate>, MetaError>;

    /// Deletes the manifest like [`ManifestStore::delete_manifest`](crate::ManifestStore::delete_manifest)
    /// with referrers, but only if it still qualifies as in
    /// [`GcStore::expired_untagged_manifests`] and none of its referrers is
    /// tagged or listed by an index, checked in the same transaction.
    /// Returns what was deleted (with the same events), or `None`.
    async fn delete_untagged_manifest(
        &self,
        change: &Change,
        candidate: &ManifestCandidate,
        before: Timestamp,
    ) -> Result<Option<DeletedManifest>, MetaError>;
}
