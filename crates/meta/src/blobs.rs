//! [`BlobLinkStore`]: which blobs each repository may serve.
//!
//! A blob's bytes are stored once, whatever the repository (by
//! `berth-storage`); a repository may serve a blob only once it is linked
//! there, by a finished upload or a mount. Links are also what garbage
//! collection counts (see [`crate::gc`]).

use berth_oci::{Digest, RepoName};

use crate::{Change, MetaError};

/// Links between repositories and stored blobs.
#[async_trait::async_trait]
pub trait BlobLinkStore: Send + Sync + 'static {
    /// Records that `digest` (of `size` bytes) is stored and may be seen
    /// through `repository`, creating the repository if needed. Idempotent;
    /// every call writes a `blob.linked` event.
    /// (Re)creates the blob's row if garbage collection removed it and clears
    /// any garbage-collection candidacy of the blob; a link no manifest of the
    /// repository references (a layer pushed ahead of its manifest) becomes a
    /// link candidate as of the change, so a re-push restarts its grace period.
    /// Fails with `BlobBeingDeleted` while garbage collection deletes the
    /// blob's bytes ([`GcStore::begin_blob_deletions`](crate::GcStore::begin_blob_deletions)
    /// until [`GcStore::finish_blob_deletion`](crate::GcStore::finish_blob_deletion)).
    async fn link_blob(
        &self,
        change: &Change,
        repository: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<(), MetaError>;

    /// Returns the blob's size if it is linked into `repository`.
    async fn linked_blob_size(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError>;

    /// Lists the repositories `digest` is linked into, by name in byte
    /// order, after `after`, at most `limit`: the candidate sources of a
    /// cross-repository mount that names no source. Reads the links of that
    /// one digest (an index lookup), never every repository.
    async fn repositories_with_blob(
        &self,
        digest: &Digest,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, MetaError>;

    /// Removes the link between `repository` and the blob. Returns whether a
    /// link existed (and wrote a `blob.unlinked` event). The blob's bytes
    /// are left to garbage collection: if nothing references the blob any
    /// more it becomes a candidate as of the change. Manifests of the
    /// repository that reference the blob keep it alive (their references), though it is no longer served through the
    /// repository.
    async fn unlink_blob(
        &self,
        change: &Change,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<bool, MetaError>;
}
