//! The registry domain: what pushing and pulling mean, over a [`BlobStore`]
//! and a [`MetaStore`].
//!
//! # Layout
//!
//! - [`Registry`]: every operation of the distribution API, in domain terms
//!   (typed names, digests and references in; records and streams out).
//! - [`error`]: [`RegistryError`], with its mapping to the spec's error codes.
//! - `blobs`, `uploads`, `manifests`, [`namespaces`]: the operations, one
//!   file per resource.
//! - [`images`]: manifests as images for the management API: listings,
//!   inspection, config facts read once, server-side tag, untag, delete.
//! - [`jobs`]: background work (expired upload purge) with `run_once` for tests.
//! - [`events`]: the event stream's consumers ([`EventConsumer`], driven by a
//!   [`ConsumerRunner`]) and its retention.
//! - [`advisor`]: the Vulnerability Advisor: scan on push ([`advisor::ScanOnPush`]),
//!   the scan workers ([`advisor::ScanWorkers`]) and image assessment.
//! - [`advisory_sync`]: the scheduled sync of configured advisory sources
//!   ([`advisory_sync::AdvisorySync`], one node per pass under a job lease;
//!   the download is an [`advisory_sync::AdvisoryFetcher`] the binary gives).
//! - [`replication`]: copying images to and from other registries
//!   ([`Replicator`], over a [`RemoteRegistry`]), on demand, on push
//!   ([`ReplicationTrigger`]) and on a schedule.
//! - [`pulls`]: pull statistics, counted in memory and flushed in batches.
//! - [`gc`]: deletion's second half, online garbage collection
//!   ([`Registry::collect_garbage`] runs one pass).
//!
//! **Architecture Invariant:** this crate sees only the two traits; it never
//! names a concrete backend, never builds SQL and never touches HTTP types.
//! **Architecture Invariant:** a blob becomes reachable through a repository
//! only after the storage backend verified its digest (`finish_upload`) or, for
//! a mount, after the source repository was checked to hold it.

use std::sync::Arc;
use std::time::Duration;

use berth_meta::{MetaStore, Timestamp};
use berth_storage::BlobStore;

pub mod advisor;
pub mod advisory_sync;
pub mod audit;
mod blobs;
mod cache;
pub mod error;
pub mod events;
pub mod gc;
pub mod images;
mod immutable;
pub mod jobs;
mod manifests;
pub mod namespaces;
pub mod proxy;
pub mod pulls;
pub mod quotas;
pub mod replication;
pub mod retention;
mod trash;
mod uploads;
pub mod usage;
pub mod webhooks;

pub use audit::AuditTrail;
pub use berth_meta::{
    Actor, ActorKind, Change, Event, EventCursor, EventKind, ImageCursor, ImageSummary,
    ImmutableRule, Namespace, NamespaceUsage, Referrer, RepositoryCursor, RepositoryQuery,
    RepositorySort, RepositorySummary, RestoredImage, TagConflict, TagCursor, TagQuery, TagSort,
    TaggedFilter, TaggedImage, TrashCursor, TrashEntry, Visibility,
};
pub use berth_meta::{
    AuditQuery, AuditRecord, DeliveryAttempt, DeliveryJob, DeliveryNext, DeliveryRow,
    DeliveryState, NewAuditRecord, NewWebhook, WebhookEnvelope, WebhookRow,
};
pub use berth_meta::{DailyUsage, NamespaceFindings, SeverityCounts};
pub use berth_meta::{
    Direction, NewReplicationRule, PendingDelete, ReplicationRule, ReplicationRun, RunCounts,
    RunStatus, RunTrigger,
};
pub use berth_meta::{QuotaExceeded, QuotaUpdate, StorageDrift};
pub use berth_meta::{RetentionPolicy, UntaggedImages};
/// Why the blob store cannot serve, carried by [`RegistryError::Unavailable`].
pub use berth_storage::Unavailability;
/// The byte streams of the registry's API: request bodies flow in as a
/// [`ByteStream`], blobs flow out as a [`BlobBody`]. They are the blob store's
/// own types, named here so that callers (the HTTP server) depend on the
/// registry alone and never on a storage crate.
pub use berth_storage::{BlobBody, ByteStream, FileRegion, Growing};
pub use error::{Dependency, RegistryError};
pub use events::{ConsumerError, ConsumerOptions, ConsumerPass, ConsumerRunner, EventConsumer};
pub use gc::{GcOptions, GcReport};
pub use images::{Image, ImageDetails, ImageFacts};
pub use manifests::{ManifestPut, ReferrersPage};
pub use namespaces::NamespaceDeletion;
pub use proxy::{
    Freshness, ProxySettings, Upstream, UpstreamBlob, UpstreamError, UpstreamManifest,
};
pub use replication::{
    RemoteConnector, RemoteRegistry, ReplicationOptions, ReplicationTrigger, Replicator, RunScope,
};
pub use retention::{
    AgeSource, RetentionImage, RetentionPlan, RetentionReason, RetentionReport, RetentionSkip,
    RetentionVerdict,
};
pub use uploads::UploadStatus;
pub use webhooks::{WebhookFanout, WebhookOptions};

/// Settings of the registry domain.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// How long an upload session may stay idle before it is purged.
    pub upload_ttl: Duration,
    /// How long one node may hold an upload's write lease while it writes a
    /// chunk; a node that dies mid-chunk blocks the session at most this long.
    pub upload_lease: Duration,
    /// A name for this node, used as the holder of job leases and as the
    /// prefix of its upload leases' holders. One process at a time may use
    /// a name: a node that starts releases every upload lease under its
    /// name ([`Registry::release_dead_upload_leases`]), taking them for
    /// remains of its earlier life. A name of letters, digits, `.`, `_` and
    /// `-` (no `/`, which ends the prefix).
    pub node_name: String,
    /// How long an unreferenced blob or repository link is kept before
    /// garbage collection removes it: the window in which a re-push or a new
    /// manifest revives it for free. A link no manifest has referenced yet (a
    /// layer pushed ahead of its manifest) is kept for at least `upload_ttl`.
    pub gc_grace_period: Duration,
    /// With `Some(age)`, garbage collection also deletes manifests that are
    /// untagged, unlisted by any index and not a referrer of a stored
    /// manifest, once older than `age`. Off by default: untagged manifests
    /// are often pulled by digest.
    pub gc_untagged_age: Option<Duration>,
    /// Whether deleting a manifest also deletes its referrers (signatures,
    /// SBOMs: manifests of the same repository whose subject it is), recursively.
    pub delete_referrers: bool,
    /// How many candidates one garbage-collection batch handles, which bounds
    /// both its memory and the length of its transactions.
    pub gc_batch_size: usize,
    /// How long the garbage-collection job lease lasts; a pass renews it as
    /// it goes, so a node that dies mid-pass blocks others at most this long.
    pub gc_lease: Duration,
    /// How long a manifest or blob lookup may be served from this process's
    /// cache; zero disables the cache. Bounds how long a tag moved, or a
    /// manifest or blob deleted, through another node can still be served here.
    pub manifest_cache_ttl: Duration,
    /// When set, blob GETs may be answered with a redirect to a presigned
    /// storage URL valid this long (if the backend can presign).
    pub redirect_expiry: Option<Duration>,
    /// How long events are kept before [`Registry::purge_old_events`]
    /// deletes them.
    pub event_retention: Duration,
    /// Whether flushing pull statistics also writes `image.pulled` events
    /// (one per image and puller per flush), for webhooks and the audit
    /// trail.
    pub pull_events: bool,
    /// Most descriptors in one page of a referrers list. Generous, because
    /// not every client follows `Link` to the next page.
    pub referrers_page_size: usize,
    /// Most bytes in one page of a referrers list (the whole JSON index),
    /// which bounds the memory a referrers request takes; a page always
    /// holds at least one descriptor.
    pub referrers_page_bytes: usize,
    /// Most bytes of annotations (as JSON) a referrers descriptor carries;
    /// a manifest with more is listed without its annotations.
    pub referrer_annotation_bytes: usize,
    /// Most upload sessions open at once in one repository. Sessions idle
    /// for longer than `upload_ttl` do not count (the purge removes them).
    /// The check precedes the creation without a lock, so concurrent starts
    /// may overshoot by their number.
    pub max_uploads_per_repository: u64,
    /// Most upload sessions one authenticated principal (user or access
    /// token) has open at once, across repositories; anonymous sessions
    /// count only per repository.
    pub max_uploads_per_principal: u64,
    /// How long a deleted image stays in the trash, restorable, before
    /// [`Registry::expire_trash`] deletes it for good. Zero turns the trash
    /// off: deletions are final at once.
    pub trash_retention: Duration,
    /// The storage limit of namespaces without one of their own (`None`:
    /// unlimited), for reporting; the metadata store enforces it and is
    /// given the same value.
    pub default_storage_limit: Option<u64>,
    /// The monthly pull-traffic limit of namespaces without one of their
    /// own (`None`: unlimited).
    pub default_traffic_limit: Option<u64>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            upload_ttl: Duration::from_secs(24 * 3600),
            upload_lease: Duration::from_secs(300),
            node_name: format!("node-{}", uuid::Uuid::new_v4().simple()),
            gc_grace_period: Duration::from_secs(3600),
            gc_untagged_age: None,
            delete_referrers: true,
            gc_batch_size: 500,
            gc_lease: Duration::from_secs(15),
            manifest_cache_ttl: Duration::from_secs(1),
            redirect_expiry: None,
            event_retention: Duration::from_secs(7 * 24 * 3600),
            pull_events: true,
            referrers_page_size: 1000,
            referrers_page_bytes: 1024 * 1024,
            referrer_annotation_bytes: 16 * 1024,
            max_uploads_per_repository: 1000,
            max_uploads_per_principal: 1000,
            trash_retention: Duration::from_secs(30 * 24 * 3600),
            default_storage_limit: None,
            default_traffic_limit: None,
        }
    }
}

/// Manifest lookups kept in memory at most; at a few KiB each this bounds
/// the cache to tens of MiB in the worst case.
const MANIFEST_CACHE_ENTRIES: usize = 4096;

/// Blob sizes kept in memory at most (a few dozen bytes each).
const BLOB_CACHE_ENTRIES: usize = 65536;

/// The registry: cheap to clone, shared by every request handler.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetaStore>,
    config: RegistryConfig,
    clock: Clock,
    manifest_cache: cache::ManifestCache,
    blob_cache: cache::BlobCache,
    /// Whether the caches may serve (see `cache.rs`), shared by both.
    cache_gate: Arc<cache::Gate>,
    /// Fences this node waits for after its changes (see `cache.rs`).
    fences: cache::Fences,
    /// Namespaces' vulnerability pull policies, read on every manifest GET
    /// (see `Registry::pull_policy`).
    policy_cache: advisor::PolicyCache,
    /// Pulls counted since the last flush (see `pulls.rs`).
    pulls: pulls::PullCounter,
    /// Blob traffic counted since the last flush, and the totals last read
    /// (see `quotas.rs`).
    traffic: quotas::TrafficMeter,
    /// Refused requests waiting to be written to the audit trail (see
    /// `audit.rs`).
    accesses: audit::AccessBuffer,
    /// When this node last wrote a `quota.exceeded` event, per namespace
    /// and quota (see `quotas.rs`).
    quota_events: quotas::QuotaEvents,
    /// The proxy namespaces and their upstreams, set once before serving
    /// (see `proxy.rs`).
    proxies: std::sync::OnceLock<proxy::Proxies>,
}

/// Where the registry reads the time. Tests replace it to move time forward.
#[derive(Clone)]
pub enum Clock {
    System,
    Fixed(Arc<std::sync::atomic::AtomicI64>),
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            Clock::Fixed(t) => t.load(std::sync::atomic::Ordering::SeqCst),
        }
    }
}

impl Registry {
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetaStore>,
        config: RegistryConfig,
    ) -> Registry {
        Registry::with_clock(blobs, meta, config, Clock::System)
    }

    pub fn with_clock(
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetaStore>,
        config: RegistryConfig,
        clock: Clock,
    ) -> Registry {
        let config_ttl = config.manifest_cache_ttl;
        let cache_gate = Arc::new(cache::Gate::default());
        let manifest_cache =
            cache::TtlCache::new(config_ttl, MANIFEST_CACHE_ENTRIES, cache_gate.clone());
        Registry {
            inner: Arc::new(Inner {
                blobs,
                meta,
                config,
                clock,
                manifest_cache,
                blob_cache: cache::TtlCache::new(
                    config_ttl,
                    BLOB_CACHE_ENTRIES,
                    cache_gate.clone(),
                ),
                cache_gate,
                fences: cache::Fences::default(),
                policy_cache: Default::default(),
                pulls: Default::default(),
                traffic: Default::default(),
                accesses: Default::default(),
                quota_events: Default::default(),
                proxies: Default::default(),
            }),
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// A change `actor` makes now.
    fn change(&self, actor: &Actor) -> Change {
        Change::new(actor.clone(), self.now())
    }

    fn blobs(&self) -> &dyn BlobStore {
        &*self.inner.blobs
    }

    fn meta(&self) -> &dyn MetaStore {
        &*self.inner.meta
    }

    /// Keeps this node's caches in step with changes other nodes make, until
    /// `cancel`: subscribes to the database's notices of committed changes
    /// and forgets what each names. The caches serve only while subscribed
    /// (on SQLite, which has one node and no notices, from the start); when
    /// the subscription breaks they are emptied and shut until it is back.
    /// A process that never runs this (`berth gc`, tests) serves no cached
    /// lookup, which is correct, only slower.
    ///
    /// Fences other nodes send after their changes are acknowledged here
    /// once every notice before them has been acted on, and this node's
    /// own fences are counted off as the acknowledgements come (`settle`).
    pub async fn run_cache_invalidation(&self, cancel: tokio_util::sync::CancellationToken) {
        use berth_meta::Notice;
        loop {
            match self.meta().subscribe().await {
                Ok(None) => {
                    self.inner.cache_gate.set_open(true);
                    cancel.cancelled().await;
                    return;
                }
                Ok(Some(mut subscription)) => {
                    self.clear_caches();
                    self.inner.cache_gate.set_fenced(true);
                    self.inner.cache_gate.set_open(true);
                    loop {
                        let notice = tokio::select! {
                            _ = cancel.cancelled() => return,
                            notice = subscription.next() => notice,
                        };
                        match notice {
                            Ok(Notice::Changed(repositories)) => {
                                for repository in &repositories {
                                    self.invalidate(repository);
                                }
                            }
                            Ok(Notice::Anything) => self.clear_caches(),
                            Ok(Notice::Fence(token)) => {
                                // Every notice before the fence has been
                                // acted on (this loop runs them in order).
                                if !self.inner.fences.is_own(&token) {
                                    let registry = self.clone();
                                    tokio::spawn(async move {
                                        if let Err(error) = registry.meta().send_ack(&token).await {
                                            tracing::warn!(%error, "cannot acknowledge a cache fence");
                                        }
                                    });
                                }
                            }
                            Ok(Notice::Ack(token)) => self.inner.fences.acked(&token),
                            Err(error) => {
                                tracing::warn!(%error, "change notices lost; caches off until resubscribed");
                                break;
                            }
                        }
                    }
                    self.inner.cache_gate.set_open(false);
                    self.inner.cache_gate.set_fenced(false);
                    self.clear_caches();
                }
                Err(error) => {
                    self.inner.cache_gate.set_open(false);
                    tracing::warn!(%error, "cannot subscribe to change notices; caches off");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
    }

    /// Whether this node hears other nodes' changes as notices (its
    /// invalidation task is subscribed on PostgreSQL): only then do its
    /// caches serve, and its own changes wait for the other nodes.
    pub fn hears_other_nodes(&self) -> bool {
        self.inner.cache_gate.is_fenced()
    }

    /// After a change that can make other nodes' cached lookups stale (a
    /// deletion, a tag put), waits until every other subscribed node has
    /// acted on its notice: sends a fence and waits for each of them to
    /// acknowledge it (see `cache.rs`), at most the cache TTL, after which
    /// nothing cached before the change is served anyway. Immediate where
    /// no node caches (a zero TTL), where changes need no notices (SQLite's
    /// single node) and where no other node listens.
    pub(crate) async fn settle(&self) {
        let ttl = self.inner.config.manifest_cache_ttl;
        if ttl.is_zero() || !self.inner.cache_gate.is_fenced() {
            return;
        }
        let fences = &self.inner.fences;
        let (token, done) = fences.register();
        match self.meta().send_fence(&token).await {
            Ok(nodes) => fences.expect(&token, nodes),
            Err(error) => {
                fences.forget(&token);
                tracing::warn!(%error, "cannot send a cache fence; other nodes may serve the previous state for up to cache_ttl");
                return;
            }
        }
        if tokio::time::timeout(ttl, done).await.is_err() {
            tracing::warn!("a cache fence was not acknowledged by every node within cache_ttl");
        }
        fences.forget(&token);
    }

    fn clear_caches(&self) {
        self.inner.manifest_cache.clear();
        self.inner.blob_cache.clear();
    }

    /// Forgets every cached lookup of `repository`, after a change to it.
    fn invalidate(&self, repository: &berth_oci::RepoName) {
        self.inner.manifest_cache.invalidate(repository);
        self.inner.blob_cache.invalidate(repository);
    }

    /// Lists repository names for `_catalog`.
    pub async fn catalog(
        &self,
        after: Option<&berth_oci::RepoName>,
        limit: usize,
    ) -> Result<Vec<berth_oci::RepoName>, RegistryError> {
        Ok(self.meta().list_repositories(after, limit).await?)
    }

    /// Checks both backends at once, each within `deadline`: whether each
    /// answers and would take a write now.
    pub async fn readiness(&self, deadline: Duration) -> Readiness {
        let within = |dependency: Dependency, result: Result<Result<(), RegistryError>, _>| {
            result.unwrap_or_else(|_elapsed| {
                Err(RegistryError::Unavailable {
                    dependency,
                    reason: berth_storage::Unavailability::NotAnswering,
                    detail: format!("no answer within {deadline:?}"),
                })
            })
        };
        let (database, storage) = tokio::join!(
            tokio::time::timeout(deadline, async {
                self.meta().check_ready().await.map_err(RegistryError::from)
            }),
            tokio::time::timeout(deadline, async {
                self.blobs()
                    .check_ready()
                    .await
                    .map_err(RegistryError::from)
            }),
        );
        Readiness {
            database: within(Dependency::Database, database),
            storage: within(Dependency::Storage, storage),
        }
    }
}

/// How each backend answered a readiness check.
#[derive(Debug)]
pub struct Readiness {
    pub database: Result<(), RegistryError>,
    pub storage: Result<(), RegistryError>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.database.is_ok() && self.storage.is_ok()
    }
}
