//! [`UploadStore`]: upload sessions and their write leases.
//!
//! An upload's progress (size, hash state, the storage backend's state)
//! lives here rather than on a node, so any node can continue a session
//! another node started. A chunk is written under the session's lease, so
//! two requests for one session take turns, across processes.

use berth_oci::{Digest, RepoName};

use crate::{Change, MetaError, Timestamp};

/// An upload session's persisted state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRecord {
    /// The upload's id in its textual (UUID) form.
    pub id: String,
    pub repository: RepoName,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The storage backend's `UploadProgress`, serialized as JSON by the caller.
    pub progress: String,
    /// Who opened the session (the authenticated principal's name), so that
    /// open sessions can be counted per principal; `None` for anonymous
    /// callers and when access control is off.
    pub principal: Option<String>,
}

/// How many upload sessions are open, as
/// [`UploadStore::count_live_uploads`] counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveUploads {
    /// In the repository asked about.
    pub in_repository: u64,
    /// Opened by the principal asked about (0 when none was named).
    pub of_principal: u64,
}

/// The limits on open sessions [`UploadStore::open_upload`] keeps: a
/// session opens only while fewer than `per_repository` sessions updated at
/// or after `since` are open in its repository and fewer than
/// `per_principal` were opened by its principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadCaps {
    pub per_repository: u64,
    pub per_principal: u64,
    pub since: Timestamp,
}

/// What [`UploadStore::open_upload`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadOpening {
    Opened,
    /// A cap was reached; the counts say which.
    Full(LiveUploads),
}

/// Upload sessions.
#[async_trait::async_trait]
pub trait UploadStore: Send + Sync + 'static {
    /// Records a new upload session (creating the repository). The session
    /// itself is bookkeeping and writes no event; creating the repository
    /// does.
    async fn create_upload(&self, change: &Change, upload: &UploadRecord) -> Result<(), MetaError>;

    /// Records a new upload session as [`UploadStore::create_upload`] does,
    /// unless opening it would break `caps` (counted as
    /// [`UploadStore::count_live_uploads`] counts), in which case nothing is
    /// written and the counts are returned. When the repository exists the
    /// check and the insert are one statement, so a push's start costs one
    /// round trip.
    async fn open_upload(
        &self,
        change: &Change,
        upload: &UploadRecord,
        caps: &UploadCaps,
    ) -> Result<UploadOpening, MetaError>;

    /// Counts the upload sessions updated at or after `since` (those the
    /// purge of expired sessions would keep) in `repository` and, when
    /// `principal` is given, those opened by `principal` in any repository.
    /// Reads the sessions by age through indexes, never every session.
    async fn count_live_uploads(
        &self,
        repository: &RepoName,
        principal: Option<&str>,
        since: Timestamp,
    ) -> Result<LiveUploads, MetaError>;

    /// Ends upload `id` of `repository` with its verified blob: links the
    /// blob as [`BlobLinkStore::link_blob`](crate::BlobLinkStore::link_blob)
    /// does, writing `blob.linked` and `upload.finished` in one transaction.
    /// The caller has deleted the session's record already
    /// ([`UploadStore::delete_upload`]), before it finished the bytes, so
    /// that no record outlives its data; this touches no session. Fails like
    /// `link_blob`, changing nothing.
    async fn finish_upload(
        &self,
        change: &Change,
        repository: &RepoName,
        id: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<(), MetaError>;

    /// Fetches an upload of `repository`; `None` if absent or in another repository.
    async fn get_upload(
        &self,
        repository: &RepoName,
        id: &str,
    ) -> Result<Option<UploadRecord>, MetaError>;

    /// Takes the upload's write lease for `lease_secs` under the holder name
    /// `holder` and returns the record. A lease runs until, not including, its
    /// expiry second, and the holder may take its own lease again, which
    /// renews it. Fails with `UploadBusy` while another holder's lease runs,
    /// `UploadNotFound` if absent (or in another repository).
    async fn lock_upload(
        &self,
        repository: &RepoName,
        id: &str,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<UploadRecord, MetaError>;

    /// Takes upload `id` of `repository` to be finished: deletes its record,
    /// in one statement, unless another holder's lease runs, and returns the
    /// record as it was. A claimed session is gone for every other request
    /// (it answers `UploadNotFound`), so the claim excludes other writers as
    /// a lease does, and finishing needs no separate lease and delete.
    /// Fails with `UploadBusy` while a lease runs (one that ran out at or
    /// before `now` does not count), `UploadNotFound` if absent (or in
    /// another repository); a failed claim changes nothing.
    async fn claim_upload(
        &self,
        repository: &RepoName,
        id: &str,
        now: Timestamp,
    ) -> Result<UploadRecord, MetaError>;

    /// Stores new progress and releases the lease if `holder` still holds it
    /// (a lease that expired but was not taken by anyone else still counts:
    /// nobody wrote in between). Fails with `UploadBusy` if the lease was
    /// lost, `UploadNotFound` if the upload is gone.
    async fn update_upload(
        &self,
        id: &str,
        holder: &str,
        progress: &str,
        now: Timestamp,
    ) -> Result<(), MetaError>;

    /// Releases `holder`'s lease without changing progress (after a failed
    /// write). Releasing a lease someone else holds, or of an upload that is
    /// gone, changes nothing and is not an error.
    async fn unlock_upload(&self, id: &str, holder: &str) -> Result<(), MetaError>;

    /// Releases every upload lease whose holder name starts with
    /// `holder_prefix`, leaving progress untouched, and returns how many it
    /// released. A node calls it as it starts, with the prefix all its
    /// holder names share: every lease such a name holds then belongs to the
    /// node's earlier life, whose process is gone, and would otherwise keep
    /// its session locked until the lease expires.
    async fn release_upload_leases(&self, holder_prefix: &str) -> Result<u64, MetaError>;

    /// Deletes the upload record. Returns whether it existed.
    async fn delete_upload(&self, id: &str) -> Result<bool, MetaError>;

    /// Returns those of `ids` that have no upload record, each once, in the
    /// order given: upload data in storage that no session owns (a crash
    /// between removing a session's record and its data left it), which
    /// the upload purge removes.
    async fn unknown_uploads(&self, ids: &[String]) -> Result<Vec<String>, MetaError>;

    /// Lists uploads last updated before `before`, at most `limit`, oldest
    /// first (then by id).
    async fn expired_uploads(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, MetaError>;
}
