//! Registry metadata: repositories, which blobs each repository may see,
//! manifests and what they reference, tags, referrers, upload sessions and
//! leases on background jobs.
//!
//! # Layout
//!
//! - [`MetaStore`]: the trait, with its contract.
//! - [`sqlite`]: the SQLite backend (the default, embedded).
//! - [`postgres`]: the PostgreSQL backend, for several nodes sharing one
//!   database (Cargo feature `postgres`, on by default).
//! - [`suite`]: the shared test suite every backend must pass.
//! - [`auth`]: the access-control tables ([`auth::AuthMetaStore`]: users,
//!   namespaces, members, tokens and the token signing keys), implemented in
//!   `sqlite_auth` and `postgres_auth`, with their own suite in [`auth_suite`].
//!
//! **All SQL lives in this crate.** Callers speak in `berth_oci` types; rows and
//! connections never leave it. Every method that changes more than one row runs
//! in one transaction, so a reader never sees a manifest without its references
//! or a tag pointing at a missing manifest.

use berth_oci::{Digest, RepoName, Tag};

pub mod auth;
#[cfg(any(test, feature = "test-suite"))]
pub mod auth_suite;
mod common;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "postgres")]
mod postgres_auth;
pub mod sqlite;
mod sqlite_auth;
#[cfg(any(test, feature = "test-suite"))]
pub mod suite;

/// Seconds since the Unix epoch. Time is always passed in, never read inside a
/// backend, so tests control it.
pub type Timestamp = i64;

/// A manifest as stored: its bytes plus what was parsed from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    /// The artifact type the referrers API reports (see `ParsedManifest::artifact_type`).
    pub artifact_type: Option<String>,
    /// The manifest's `subject`, if it refers to another manifest.
    pub subject: Option<Digest>,
    /// The manifest's annotations as a JSON object, for the referrers API.
    pub annotations: Option<String>,
    /// The exact bytes pushed; `digest` is their digest.
    pub payload: Vec<u8>,
}

/// A manifest to store, with everything it references inside its repository.
#[derive(Clone, Debug)]
pub struct NewManifest {
    pub record: ManifestRecord,
    /// Blobs (config and distributable layers) that must be linked to the repository.
    pub blobs: Vec<Digest>,
    /// The size the manifest's descriptors give each of `blobs` (a digest
    /// the manifest lists twice with two sizes appears twice): each must be
    /// the stored blob's size. Empty when the caller declares none.
    pub blob_sizes: Vec<(Digest, u64)>,
    /// Child manifests (of an index) that must exist in the repository.
    pub children: Vec<Digest>,
}

/// One entry of the referrers list; `annotations` is `None` when the
/// manifest has none or more than the caller's cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// A blob a manifest gives the wrong size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeMismatch {
    pub digest: Digest,
    /// The size the manifest's descriptor gives.
    pub declared: u64,
    /// The size of the blob as stored.
    pub stored: u64,
}

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

/// How many upload sessions are open, as [`MetaStore::count_live_uploads`]
/// counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveUploads {
    /// In the repository asked about.
    pub in_repository: u64,
    /// Opened by the principal asked about (0 when none was named).
    pub of_principal: u64,
}

/// What a manifest deletion removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletedManifest {
    /// Tags that pointed at the manifest and are gone with it.
    pub tags: Vec<Tag>,
    /// Referrers (manifests whose subject was a deleted manifest, recursively)
    /// deleted with it, sorted by digest.
    pub referrers: Vec<Digest>,
}

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

/// Errors of a metadata backend.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A manifest refers to blobs not linked into its repository.
    #[error("manifest references unknown blobs")]
    MissingBlobs(Vec<Digest>),
    /// A manifest gives blobs sizes other than theirs.
    #[error("manifest gives blobs the wrong size")]
    BlobSizeMismatch(Vec<SizeMismatch>),
    /// An index refers to manifests not stored in its repository.
    #[error("index references unknown manifests")]
    MissingManifests(Vec<Digest>),
    /// The upload is held by another writer (its lease has not expired).
    #[error("upload is busy")]
    UploadBusy,
    #[error("upload not found")]
    UploadNotFound,
    /// The manifest is still referenced by an index in the same repository.
    #[error("manifest is referenced by {0}")]
    ManifestReferenced(Digest),
    /// Garbage collection is deleting this blob's bytes; it cannot be linked
    /// until that finishes (the caller stores the bytes again, then links).
    #[error("blob is being deleted by garbage collection")]
    BlobBeingDeleted,
    /// The database cannot do the work now, for a reason outside the
    /// request: it does not answer (down, unreachable, no connection free
    /// in time), another process holds its write lock, its disk is full or
    /// read-only. Nothing was changed; the same call may succeed later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    /// Stored data could not be decoded: a bug or a corrupted database.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
}

/// The registry's metadata.
///
/// Contract common to all methods: safe to call concurrently from many tasks
/// and from several processes sharing one database; every method is atomic.
/// Lists are sorted by byte order of their text (which is what clients expect
/// from `_catalog` and tag lists), and `after` pages start strictly after the
/// given value.
#[async_trait::async_trait]
pub trait MetaStore: Send + Sync + 'static {
    // --- repositories ---

    /// Lists repository names after `after`, at most `limit`. A repository
    /// exists once anything (blob link, manifest, upload) was created in it.
    async fn list_repositories(
        &self,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, MetaError>;

    // --- blobs ---

    /// Records that `digest` (of `size` bytes) is stored and may be seen
    /// through `repository`, creating the repository if needed. Idempotent.
    /// (Re)creates the blob's row if garbage collection removed it and clears
    /// any garbage-collection candidacy of the blob; a link no manifest of the
    /// repository references (a layer pushed ahead of its manifest) becomes a
    /// link candidate as of `now`, so a re-push restarts its grace period.
    /// Fails with `BlobBeingDeleted` while garbage collection deletes the
    /// blob's bytes ([`MetaStore::begin_blob_deletions`] until
    /// [`MetaStore::finish_blob_deletion`]).
    async fn link_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        size: u64,
        now: Timestamp,
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
    /// link existed. The blob's bytes are left to garbage collection: if
    /// nothing references the blob any more it becomes a candidate as of
    /// `now`. Manifests of the repository that reference the blob keep it
    /// alive (their `manifest_blobs` rows), though it is no longer served
    /// through the repository.
    async fn unlink_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        now: Timestamp,
    ) -> Result<bool, MetaError>;

    // --- manifests and tags ---

    /// Stores a manifest in `repository` (creating the repository) and points
    /// `tag` at it if given, replacing the tag's previous target. Fails with
    /// `MissingBlobs`/`MissingManifests` (storing nothing) unless every blob in
    /// `manifest.blobs` is linked to the repository and every child manifest is
    /// stored in it, and then with `BlobSizeMismatch` (storing nothing, listing
    /// mismatches in the order of `manifest.blob_sizes`) unless every size in
    /// `manifest.blob_sizes` is its blob's, all checked in the same transaction
    /// as the insert. Storing a manifest that exists already only updates the tag.
    async fn put_manifest(
        &self,
        repository: &RepoName,
        manifest: &NewManifest,
        tag: Option<&Tag>,
        now: Timestamp,
    ) -> Result<(), MetaError>;

    /// Fetches a manifest by digest.
    async fn manifest_by_digest(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetaError>;

    /// Fetches the manifest a tag points at.
    async fn manifest_by_tag(
        &self,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>, MetaError>;

    /// Deletes a manifest and every tag pointing at it, and with
    /// `with_referrers` every manifest of the repository whose subject is a
    /// deleted one (recursively) with their tags, all in one transaction.
    /// Returns `None` if it was not stored. Fails with `ManifestReferenced`,
    /// deleting nothing, if an index in the same repository (other than one
    /// being deleted) lists any manifest to be deleted. Blobs and links that
    /// lose their last reference become garbage-collection candidates as of
    /// `now`.
    async fn delete_manifest(
        &self,
        repository: &RepoName,
        digest: &Digest,
        with_referrers: bool,
        now: Timestamp,
    ) -> Result<Option<DeletedManifest>, MetaError>;

    /// Deletes a tag, leaving the manifest. Returns whether the tag existed.
    async fn delete_tag(&self, repository: &RepoName, tag: &Tag) -> Result<bool, MetaError>;

    /// Lists tags of the repository after `after`, at most `limit`. Returns
    /// `None` if the repository does not exist.
    async fn list_tags(
        &self,
        repository: &RepoName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<Tag>>, MetaError>;

    /// Lists manifests in `repository` whose subject is `subject`, optionally
    /// only those of one artifact type, sorted by digest, strictly after
    /// `after`, at most `limit`. Annotations longer than
    /// `max_annotation_bytes` (as stored JSON text) come back as `None` and
    /// are never read out of the database, so a page costs at most `limit`
    /// times that much memory however large the stored annotations are.
    async fn referrers(
        &self,
        repository: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        limit: usize,
        max_annotation_bytes: usize,
    ) -> Result<Vec<Referrer>, MetaError>;

    // --- uploads ---

    /// Records a new upload session (creating the repository).
    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), MetaError>;

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

    /// Fetches an upload of `repository`; `None` if absent or in another repository.
    async fn get_upload(
        &self,
        repository: &RepoName,
        id: &str,
    ) -> Result<Option<UploadRecord>, MetaError>;

    /// Takes the upload's write lease for `lease_secs` under the holder name
    /// `holder` and returns the record. Fails with `UploadBusy` while another
    /// holder's lease runs, `UploadNotFound` if absent.
    async fn lock_upload(
        &self,
        repository: &RepoName,
        id: &str,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<UploadRecord, MetaError>;

    /// Stores new progress and releases the lease if `holder` still holds it.
    /// Fails with `UploadBusy` if the lease was lost (expired and taken).
    async fn update_upload(
        &self,
        id: &str,
        holder: &str,
        progress: &str,
        now: Timestamp,
    ) -> Result<(), MetaError>;

    /// Releases the lease without changing progress (after a failed write).
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

    /// Lists uploads last updated before `before`, at most `limit`, oldest first.
    async fn expired_uploads(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, MetaError>;

    // --- job leases ---

    /// Takes or renews the lease on the background job `job` for `lease_secs`
    /// under the holder name `holder`, so that a job such as the upload purge
    /// or garbage collection runs on one node at a time. Returns `true` if the
    /// lease was free, expired (a lease runs until, not including, its expiry
    /// second) or already held by `holder` (which renews it to
    /// `now + lease_secs`); `false`, changing nothing, while another holder's
    /// lease runs.
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

    // --- garbage collection ---

    /// Lists links that qualify under `cutoffs` (see [`GcCutoffs`]), ordered
    /// by (since, repository, digest) and starting strictly after `after`,
    /// at most `limit`. Reads candidates only, never every link.
    async fn expired_links(
        &self,
        cutoffs: GcCutoffs,
        after: Option<&LinkCandidate>,
        limit: usize,
    ) -> Result<Vec<LinkCandidate>, MetaError>;

    /// Removes those of `links` that still qualify under `cutoffs` and that no
    /// manifest of their repository references, in one transaction. A blob
    /// left without any reference becomes a candidate as of the removed
    /// link's own `since` (it has been unreferenced that long; `now` caps it),
    /// so one pass can remove the link and then the blob. Returns the links
    /// removed.
    async fn remove_links(
        &self,
        links: &[LinkCandidate],
        cutoffs: GcCutoffs,
        now: Timestamp,
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
    /// `link_blob` refuses the digest until [`MetaStore::finish_blob_deletion`].
    /// Returns the blobs whose deletion began; the caller deletes their bytes.
    async fn begin_blob_deletions(
        &self,
        blobs: &[BlobCandidate],
        before: Timestamp,
        now: Timestamp,
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
    /// in progress: stored objects the metadata does not know.
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

    /// Deletes the manifest like [`MetaStore::delete_manifest`] with
    /// referrers, but only if it still qualifies as in
    /// [`MetaStore::expired_untagged_manifests`], checked in the same
    /// transaction. Returns what was deleted, or `None`.
    async fn delete_untagged_manifest(
        &self,
        candidate: &ManifestCandidate,
        before: Timestamp,
        now: Timestamp,
    ) -> Result<Option<DeletedManifest>, MetaError>;

    // --- operations ---

    /// Whether the database answers and would take a write now (used by
    /// `/readyz`): fails with `Unavailable` when it does not answer, or
    /// when another process holds its write lock.
    async fn check_ready(&self) -> Result<(), MetaError>;
}
