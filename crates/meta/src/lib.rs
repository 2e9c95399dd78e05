//! Registry metadata: repositories, which blobs each repository may see,
//! manifests and what they reference, tags, referrers, upload sessions,
//! leases on background jobs, garbage-collection bookkeeping, and the
//! access-control records (users, namespaces, members, tokens, signing keys).
//!
//! # Layout
//!
//! The contract is a set of small traits, one per concern, each with its
//! written contract and its own shared test suite:
//!
//! | trait | module | what |
//! |---|---|---|
//! | [`RepositoryStore`] | [`repositories`] | listing and deleting repositories |
//! | [`BlobLinkStore`] | [`blobs`] | which blobs a repository may serve |
//! | [`ManifestStore`] | [`manifests`] | manifests, tags and referrers |
//! | [`ImageStore`] | [`images`] | manifests as images: listings, sizes, config facts |
//! | [`UploadStore`] | [`uploads`] | upload sessions and their write leases |
//! | [`JobLeaseStore`] | [`jobs`] | one node at a time for background jobs |
//! | [`GcStore`] | [`gc`] | garbage-collection candidates and deletions |
//! | [`EventStore`] | [`events`] | the event stream and its consumers |
//! | [`NamespaceStore`] | [`namespaces`] | namespaces, their visibility and usage |
//! | [`UserStore`], [`MemberStore`], [`TokenStore`], [`SigningKeyStore`] | [`auth`] | access control |
//! | [`ImmutabilityStore`] | [`immutable`] | immutable-tag rules (enforced by the tag writes) |
//! | [`RetentionStore`] | [`retention`] | retention policies, and the images a pass weighs |
//! | [`AdvisorStore`] | [`advisor`] | the Vulnerability Advisor: layer indexes, scan queue, advisories, exemptions, pull policies |
//! | [`AdvisorySyncStore`] | [`advisory_sync`] | the state of each advisory source's scheduled sync |
//! | [`WebhookStore`] | [`webhooks`] | webhook endpoints and their delivery queue |
//! | [`AuditStore`] | [`audit`] | the audit trail |
//! | [`QuotaStore`] | [`quotas`] | storage and pull-traffic quotas per namespace |
//! | [`SessionStore`] | [`sessions`] | the web console's sign-in sessions |
//! | [`ReplicationStore`] | [`replication`] | replication rules and the history of their runs |
//!
//! [`MetaStore`] is the umbrella: every backend implements all of them, and
//! the registry holds one `Arc<dyn MetaStore>` (a `&dyn MetaStore` coerces
//! to any of the smaller traits). [`auth::AuthMetaStore`] is the umbrella of
//! what access control needs.
//!
//! There is one implementation, [`sql::SqlMetaStore`], over either database:
//! [`sqlite`] (the default, embedded) and [`postgres`] (several nodes sharing
//! one database; Cargo feature `postgres`, on by default) only open their
//! database, hold its migrations and say what differs (locking, a few
//! dialect spellings). [`suite`] is the shared test suite both must pass.
//!
//! **All SQL lives in this crate.** Callers speak in `berth_oci` types and
//! plain rows; connections never leave it. Every method that changes more
//! than one row runs in one transaction, so a reader never sees a manifest
//! without its references or a tag pointing at a missing manifest. Every
//! method that changes state takes a [`Change`] (when, and by whom) and
//! writes the events that describe the change in that same transaction.

pub mod advisor;
pub mod advisory_sync;
pub mod audit;
pub mod auth;
pub mod blobs;
pub mod events;
pub mod findings;
pub mod gc;
pub mod images;
pub mod immutable;
pub mod jobs;
pub mod manifests;
pub mod namespaces;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod pulls;
pub mod quotas;
pub mod replication;
pub mod repositories;
pub mod retention;
pub mod sessions;
pub mod sql;
pub mod sqlite;
#[cfg(any(test, feature = "test-suite"))]
pub mod suite;
pub mod trash;
pub mod uploads;
pub mod usage;
pub mod webhooks;

pub use advisor::{
    AdvisorStore, AdvisoryBatch, AdvisoryData, AdvisoryRow, ExemptionRow, FinishedScan,
    ImageIndexRow, ImportCounts, IndexState, LayerIndexRow, PolicyMode, PolicyRow, ScanJob,
};
pub use advisory_sync::{AdvisorySourceRow, AdvisorySyncStore};
pub use audit::{AuditQuery, AuditRecord, AuditStore, NewAuditRecord};
pub use auth::{
    AuthMetaStore, MemberStore, RefreshRotation, SigningKeyStore, TokenStore, UserStore,
};
pub use blobs::BlobLinkStore;
pub use events::{
    Actor, ActorKind, Change, ConsumerRow, Event, EventCursor, EventKind, EventPage, EventStore,
    EventSubscription, Notice,
};
pub use findings::{FindingCountStore, ImageFindings, NamespaceFindings, SeverityCounts};
pub use gc::{BlobCandidate, GcCutoffs, GcStore, LinkCandidate, ManifestCandidate};
pub use images::{
    ImageCursor, ImageStore, ImageSummary, RepositoryCursor, RepositoryQuery, RepositorySort,
    RepositorySummary, TagCursor, TagQuery, TagSort, TaggedFilter, TaggedImage,
};
pub use immutable::{ImmutabilityStore, ImmutableRule};
pub use jobs::JobLeaseStore;
pub use manifests::{
    DeletedManifest, ManifestRecord, ManifestStore, NewManifest, Referrer, SizeMismatch,
};
pub use namespaces::{
    Namespace, NamespaceEntry, NamespaceReach, NamespaceStore, NamespaceUsage, Visibility,
};
pub use pulls::{PullCount, PullStatsStore};
pub use quotas::{
    QuotaExceeded, QuotaRow, QuotaStore, QuotaUpdate, StorageDrift, TrafficCount, TrafficRow,
};
pub use replication::{
    Direction, NewReplicationRule, PendingDelete, ReplicationRule, ReplicationRun,
    ReplicationStore, RunCounts, RunStatus, RunTrigger,
};
pub use repositories::{RepositoryDeletion, RepositoryStore};
pub use retention::{RetentionCandidate, RetentionPolicy, RetentionStore, UntaggedImages};
pub use sessions::{SessionRow, SessionStore};
pub use trash::{RestoredImage, TagConflict, TrashCursor, TrashEntry, TrashStore};
pub use uploads::{LiveUploads, UploadCaps, UploadOpening, UploadRecord, UploadStore};
pub use usage::{day_start, DailyUsage, UsageHistoryStore};
pub use webhooks::{
    DeliveryAttempt, DeliveryJob, DeliveryNext, DeliveryRow, DeliveryState, FinishedDelivery,
    NewDelivery, NewWebhook, WebhookEnvelope, WebhookRow, WebhookStore,
};

/// Seconds since the Unix epoch. Time is always passed in, never read inside a
/// backend, so tests control it.
pub type Timestamp = i64;

/// Errors of a metadata backend: the one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A manifest refers to blobs not linked into its repository.
    #[error("manifest references unknown blobs")]
    MissingBlobs(Vec<berth_oci::Digest>),
    /// A manifest gives blobs sizes other than theirs.
    #[error("manifest gives blobs the wrong size")]
    BlobSizeMismatch(Vec<SizeMismatch>),
    /// An index refers to manifests not stored in its repository.
    #[error("index references unknown manifests")]
    MissingManifests(Vec<berth_oci::Digest>),
    /// The upload is held by another writer (its lease has not expired).
    #[error("upload is busy")]
    UploadBusy,
    #[error("upload not found")]
    UploadNotFound,
    /// The manifest is still referenced by an index in the same repository.
    #[error("manifest is referenced by {0}")]
    ManifestReferenced(berth_oci::Digest),
    /// Garbage collection is deleting this blob's bytes; it cannot be linked
    /// until that finishes (the caller stores the bytes again, then links).
    #[error("blob is being deleted by garbage collection")]
    BlobBeingDeleted,
    /// A create collided with an existing name (user, namespace, token, key).
    #[error("already exists")]
    AlreadyExists,
    /// A change named something that does not exist (a user, a namespace, a
    /// membership, a token).
    #[error("not found")]
    NotFound,
    /// The change would move or delete `tag`, which `rule` makes immutable.
    #[error("tag {tag} is immutable (rule {rule})")]
    ImmutableTag {
        tag: berth_oci::Tag,
        rule: Box<ImmutableRule>,
    },
    /// The write would add bytes beyond the namespace's storage quota.
    #[error(
        "namespace {} would exceed its storage quota: {} bytes used of {}, the write adds {}",
        .0.namespace, .0.usage, .0.limit, .0.adding
    )]
    QuotaExceeded(Box<QuotaExceeded>),
    /// The change would leave the registry without an enabled
    /// administrator (demoting, disabling or deleting the last one).
    #[error("the last enabled administrator")]
    LastAdmin,
    /// The change would leave a namespace without an owner (demoting or
    /// removing its last one).
    #[error("the namespace's last owner")]
    LastOwner,
    /// A namespace cannot be deleted while it holds repositories.
    #[error("namespace holds repositories")]
    NamespaceNotEmpty,
    /// A consumer's lease was taken over by another holder; its position
    /// was not moved.
    #[error("the lease was lost to another holder")]
    LeaseLost,
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

/// Everything the registry keeps in its database, as one object.
///
/// Contract common to every method of every supertrait: safe to call
/// concurrently from many tasks and from several processes sharing one
/// database; every method is atomic (it happens entirely or not at all).
/// Lists are sorted by byte order of their text (which is what clients
/// expect from `_catalog` and tag lists), and `after` pages start strictly
/// after the given value. Names are validated by the caller.
#[async_trait::async_trait]
pub trait MetaStore:
    RepositoryStore
    + BlobLinkStore
    + ManifestStore
    + ImageStore
    + UploadStore
    + JobLeaseStore
    + GcStore
    + EventStore
    + AuthMetaStore
    + AdvisorStore
    + AdvisorySyncStore
    + ImmutabilityStore
    + PullStatsStore
    + WebhookStore
    + AuditStore
    + TrashStore
    + RetentionStore
    + QuotaStore
    + SessionStore
    + ReplicationStore
    + FindingCountStore
    + UsageHistoryStore
{
    /// Whether the database answers and would take a write now (used by
    /// `/readyz`): fails with `Unavailable` when it does not answer, or
    /// when another process holds its write lock.
    async fn check_ready(&self) -> Result<(), MetaError>;
}
