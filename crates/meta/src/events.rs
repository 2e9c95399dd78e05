//! The event stream: every state change, written in the transaction that
//! makes it (a transactional outbox), read in order by named consumers.
//!
//! # Writing
//!
//! Every write method of the other traits takes a [`Change`]: when it
//! happens and who makes it (an [`Actor`]). The events describing the
//! change are inserted in the same transaction as the change, so an event
//! exists exactly when its change committed: none is lost if the process
//! dies after the commit, none is invented if the change rolls back.
//!
//! # Reading
//!
//! Each event has a *position*. On SQLite, whose one writer commits in
//! order, positions become visible in order, and a reader that reads after
//! the last position it handled misses nothing. On PostgreSQL positions are
//! taken from a sequence when the event is inserted, but transactions commit
//! in any order, so a reader may see position 12 while 11 belongs to a
//! transaction that has not committed yet (and may never). Reading
//! "everything after 10" and moving on to 12 would lose 11 forever.
//! [`EventStore::read_events`] therefore hands out only a gap-free prefix,
//! and decides a gap is permanent (its transaction rolled back, or the
//! sequence skipped it) only from a snapshot horizon:
//!
//! 1. Every event row records the id of the transaction that wrote it, and
//!    that transaction had its id *before* it took its position (the id is
//!    assigned at a transaction's first write, and the event is inserted
//!    after the change it describes; the insert refuses a transaction
//!    without an id: `pg_current_xact_id_if_assigned()` is `NOT NULL`).
//! 2. A reader that sees position `q` but not `p < q` in a snapshot `S`
//!    knows `p` was taken before `q` (the sequence is monotonic) and so
//!    before `S`, by a transaction whose id is below `S`'s `xmax` (1).
//! 3. Once `pg_snapshot_xmin` of a later snapshot is at least that `xmax`,
//!    every such transaction has ended: if `p` is still not visible, it
//!    never will be, and the reader moves past it.
//!
//! So a reader waits at a gap only while the transactions that were running
//! when it saw the gap run, and never skips an event that commits later.
//! Conflicting transactions (two pushes moving one tag) commit in the order
//! of their positions, because the second waits for the first's row lock
//! before it inserts its event; unrelated transactions may commit in either
//! order, and the stream orders them by position.
//!
//! # Consumers
//!
//! A consumer has a name, a durable position (every event up to it has
//! been handled) and a lease, so that on several nodes one node at a time
//! handles its events, and another takes over when that node disappears.
//! Delivery is at least once: a consumer that crashes after handling a
//! batch and before advancing its position gets the batch again.

use std::net::IpAddr;

use berth_oci::{Digest, RepoName, Tag};

use crate::{MetaError, Timestamp};

/// What kind of principal made a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// A user account, by name.
    User,
    /// An access (robot) token, by name.
    Robot,
    /// A client that presented no credentials (every client, with access
    /// control off).
    Anonymous,
    /// The registry itself: a background job or an administrator's command
    /// line, by name.
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Robot => "robot",
            ActorKind::Anonymous => "anonymous",
            ActorKind::System => "system",
        }
    }

    pub fn parse(text: &str) -> Option<ActorKind> {
        [
            ActorKind::User,
            ActorKind::Robot,
            ActorKind::Anonymous,
            ActorKind::System,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// Who made a change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Actor {
    pub kind: ActorKind,
    /// The user's, token's or job's name; `None` for anonymous clients.
    pub name: Option<String>,
    /// The client's address, when the change came over the network.
    pub address: Option<IpAddr>,
}

impl Actor {
    pub fn user(name: impl Into<String>) -> Actor {
        Actor::named(ActorKind::User, name.into())
    }

    pub fn robot(name: impl Into<String>) -> Actor {
        Actor::named(ActorKind::Robot, name.into())
    }

    pub fn anonymous() -> Actor {
        Actor {
            kind: ActorKind::Anonymous,
            name: None,
            address: None,
        }
    }

    /// The registry itself, doing `job` (`"gc"`, `"upload-purge"`, `"admin"`…).
    pub fn system(job: impl Into<String>) -> Actor {
        Actor::named(ActorKind::System, job.into())
    }

    /// The authenticated principal's name (a user's or an access token's),
    /// which per-principal limits count by; `None` for anonymous clients
    /// and the registry's own jobs.
    pub fn principal(&self) -> Option<&str> {
        match self.kind {
            ActorKind::User | ActorKind::Robot => self.name.as_deref(),
            ActorKind::Anonymous | ActorKind::System => None,
        }
    }

    fn named(kind: ActorKind, name: String) -> Actor {
        Actor {
            kind,
            name: Some(name),
            address: None,
        }
    }

    /// The same actor, coming from `address`.
    pub fn from_address(mut self, address: IpAddr) -> Actor {
        self.address = Some(address);
        self
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind.as_str())?;
        if let Some(name) = &self.name {
            write!(f, ":{name}")?;
        }
        if let Some(address) = &self.address {
            write!(f, "@{address}")?;
        }
        Ok(())
    }
}

/// The context every write takes: when the change happens and who makes it.
/// It travels explicitly from the request (or job) that causes the change
/// to the transaction that writes its events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub at: Timestamp,
    pub actor: Actor,
}

impl Change {
    pub fn new(actor: Actor, at: Timestamp) -> Change {
        Change { at, actor }
    }
}

/// What happened. The text forms (`as_str`) are the stream's public
/// vocabulary: stored in the database, printed by `berth events tail`, and
/// what later consumers (webhooks, audit) match on, so a kind is never
/// renamed, only added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    NamespaceCreated,
    /// Visibility changed (`detail`: `visibility`, `previous`).
    NamespaceUpdated,
    NamespaceDeleted,
    RepositoryCreated,
    RepositoryDeleted,
    /// A blob became visible through a repository (`detail`: `size`).
    BlobLinked,
    BlobUnlinked,
    /// Garbage collection deleted a blob's row; its bytes go next.
    BlobDeleted,
    /// A manifest was stored (`detail`: `media_type`, `size`, and
    /// `subject`, `artifact_type` when it has them).
    ManifestStored,
    ManifestDeleted,
    /// A tag was created or moved (`detail`: `previous`, the digest it
    /// pointed at, or null).
    TagMoved,
    /// A tag was deleted (`digest`: what it pointed at).
    TagDeleted,
    /// An upload session ended with a verified blob (`detail`: `size`, `upload`).
    UploadFinished,
    UserCreated,
    /// A password or the administrator flag changed (`detail` says which).
    UserUpdated,
    UserDeleted,
    /// A member was added or their role changed (`detail`: `user`, `role`, `previous`).
    MemberSet,
    MemberRemoved,
    TokenCreated,
    TokenRevoked,
    /// An advisory import changed the stored advisories (`detail`:
    /// `added`, `updated`, `removed`, `generation`).
    AdvisoriesImported,
    /// A vulnerability exemption was added or replaced (`detail`: `scope`,
    /// `advisory`, `expires_at`; the namespace is the scope's).
    ExemptionSet,
    /// A vulnerability exemption was removed (`detail`: `scope`, `advisory`).
    ExemptionRemoved,
    /// A namespace's vulnerability pull policy changed (`detail`: `mode`,
    /// `severity`, `block_unscanned`, `previous`).
    VulnerabilityPolicySet,
    /// An immutable-tag rule was added (`detail`: `scope`, `pattern`).
    ImmutableRuleAdded,
    /// An immutable-tag rule was removed (`detail`: `scope`, `pattern`).
    ImmutableRuleRemoved,
    /// A webhook was created (`detail`: `id`, `events`; the namespace is
    /// its own, none for a registry-wide one).
    WebhookCreated,
    /// A webhook was deleted (`detail`: `id`, `events`).
    WebhookDeleted,
    /// A manifest was deleted into the trash (`detail`: `root`, the digest
    /// whose deletion took it there).
    ManifestTrashed,
    /// A manifest came back from the trash, by a restore or a push of the
    /// same digest (`detail`: `root`).
    ManifestRestored,
    /// A trash entry outlived the trash retention and its manifests were
    /// deleted for good (`detail`: `trashed_at`; `manifest.deleted` events
    /// follow, one per manifest).
    TrashExpired,
    /// A namespace's retention policy was set or replaced (`detail`:
    /// `keep`, `untagged`, `min_age` in seconds, `keep_tags`).
    RetentionPolicySet,
    /// A namespace's retention policy was removed (`detail`: as for
    /// `retention_policy.set`, the policy removed).
    RetentionPolicyRemoved,
    /// A namespace's quota limits changed (`detail`: `storage_limit`,
    /// `traffic_limit`, each `null` for the default, and `previous`).
    QuotaSet,
    /// A recount of a namespace's storage found the recorded usage wrong
    /// and replaced it (`detail`: `recorded`, `actual`).
    QuotaRecomputed,
    /// A replication rule was created (`detail`: `name`, `direction`,
    /// `repositories`, `tags`; never its URL or credentials).
    ReplicationRuleCreated,
    /// A replication rule was deleted (`detail`: as for its creation).
    ReplicationRuleDeleted,
    /// A replication run finished (`detail`: `rule`, `run`, `trigger`,
    /// `status`, `images_copied`, `images_skipped`, `blobs_copied`,
    /// `bytes`, `error`).
    ReplicationFinished,
    /// The Vulnerability Advisor finished indexing an image (one platform's
    /// manifest; `detail`: `state` (`done`, `partial`, `unsupported`) and
    /// `reason` for the last two), in the transaction that records it.
    ScanFinished,
    /// An image was pulled (`detail`: `count`, the pulls one puller made
    /// of it since their node's last flush of pull statistics; the event's
    /// time is the newest of them).
    ImagePulled,
    /// A request was refused because it would exceed a namespace's quota
    /// (`detail`: `quota` (`storage` or `traffic`), `usage`, `limit`, and
    /// for storage `adding`); at most one a minute per namespace and quota
    /// from each node, however often clients retry.
    QuotaExceeded,
    /// Advisories changed (an import or a scheduled sync) and with them the
    /// findings of an image already indexed (one platform's manifest, in
    /// one repository holding it; `detail`: `advisories`, the ids whose
    /// findings in it appeared, changed or went, at most 50, and
    /// `advisory_count`, how many there were). Written after the import
    /// that changed them commits, without reading the image's layers.
    VulnerabilitiesChanged,
}

impl EventKind {
    /// Every kind, for parsing and documentation.
    pub const ALL: [EventKind; 42] = [
        EventKind::NamespaceCreated,
        EventKind::NamespaceUpdated,
        EventKind::NamespaceDeleted,
        EventKind::RepositoryCreated,
        EventKind::RepositoryDeleted,
        EventKind::BlobLinked,
        EventKind::BlobUnlinked,
        EventKind::BlobDeleted,
        EventKind::ManifestStored,
        EventKind::ManifestDeleted,
        EventKind::TagMoved,
        EventKind::TagDeleted,
        EventKind::UploadFinished,
        EventKind::UserCreated,
        EventKind::UserUpdated,
        EventKind::UserDeleted,
        EventKind::MemberSet,
        EventKind::MemberRemoved,
        EventKind::TokenCreated,
        EventKind::TokenRevoked,
        EventKind::AdvisoriesImported,
        EventKind::ExemptionSet,
        EventKind::ExemptionRemoved,
        EventKind::VulnerabilityPolicySet,
        EventKind::ImmutableRuleAdded,
        EventKind::ImmutableRuleRemoved,
        EventKind::WebhookCreated,
        EventKind::WebhookDeleted,
        EventKind::ManifestTrashed,
        EventKind::ManifestRestored,
        EventKind::TrashExpired,
        EventKind::RetentionPolicySet,
        EventKind::RetentionPolicyRemoved,
        EventKind::QuotaSet,
        EventKind::QuotaRecomputed,
        EventKind::ReplicationRuleCreated,
        EventKind::ReplicationRuleDeleted,
        EventKind::ReplicationFinished,
        EventKind::ScanFinished,
        EventKind::ImagePulled,
        EventKind::QuotaExceeded,
        EventKind::VulnerabilitiesChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::NamespaceCreated => "namespace.created",
            EventKind::NamespaceUpdated => "namespace.updated",
            EventKind::NamespaceDeleted => "namespace.deleted",
            EventKind::RepositoryCreated => "repository.created",
            EventKind::RepositoryDeleted => "repository.deleted",
            EventKind::BlobLinked => "blob.linked",
            EventKind::BlobUnlinked => "blob.unlinked",
            EventKind::BlobDeleted => "blob.deleted",
            EventKind::ManifestStored => "manifest.stored",
            EventKind::ManifestDeleted => "manifest.deleted",
            EventKind::TagMoved => "tag.moved",
            EventKind::TagDeleted => "tag.deleted",
            EventKind::UploadFinished => "upload.finished",
            EventKind::UserCreated => "user.created",
            EventKind::UserUpdated => "user.updated",
            EventKind::UserDeleted => "user.deleted",
            EventKind::MemberSet => "member.set",
            EventKind::MemberRemoved => "member.removed",
            EventKind::TokenCreated => "token.created",
            EventKind::TokenRevoked => "token.revoked",
            EventKind::AdvisoriesImported => "advisories.imported",
            EventKind::ExemptionSet => "exemption.set",
            EventKind::ExemptionRemoved => "exemption.removed",
            EventKind::VulnerabilityPolicySet => "vulnerability_policy.set",
            EventKind::ImmutableRuleAdded => "immutable_rule.added",
            EventKind::ImmutableRuleRemoved => "immutable_rule.removed",
            EventKind::WebhookCreated => "webhook.created",
            EventKind::WebhookDeleted => "webhook.deleted",
            EventKind::ManifestTrashed => "manifest.trashed",
            EventKind::ManifestRestored => "manifest.restored",
            EventKind::TrashExpired => "trash.expired",
            EventKind::RetentionPolicySet => "retention_policy.set",
            EventKind::RetentionPolicyRemoved => "retention_policy.removed",
            EventKind::QuotaSet => "quota.set",
            EventKind::QuotaRecomputed => "quota.recomputed",
            EventKind::ReplicationRuleCreated => "replication_rule.created",
            EventKind::ReplicationRuleDeleted => "replication_rule.deleted",
            EventKind::ReplicationFinished => "replication.finished",
            EventKind::ScanFinished => "scan.finished",
            EventKind::ImagePulled => "image.pulled",
            EventKind::QuotaExceeded => "quota.exceeded",
            EventKind::VulnerabilitiesChanged => "vulnerabilities.changed",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Its place in the stream; increasing, not necessarily contiguous.
    pub position: i64,
    pub at: Timestamp,
    pub kind: EventKind,
    /// The namespace the change is in, if any (every repository's is).
    pub namespace: Option<String>,
    pub repository: Option<RepoName>,
    pub digest: Option<Digest>,
    pub tag: Option<Tag>,
    pub actor: Actor,
    /// Small facts about the change (sizes, media types, previous values),
    /// a JSON object.
    pub detail: serde_json::Value,
}

/// Where a reader stands in the stream: every event at or before
/// `position` has been read or will never exist. Start a reader with
/// [`EventCursor::after`]; each [`EventPage`] hands back the next cursor,
/// which also remembers a gap the reader is waiting at (see the module
/// documentation), so readers pass it back rather than rebuilding it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventCursor {
    pub position: i64,
    /// A gap seen after `position`: every missing position up to `.0` was
    /// taken by a transaction with an id below the horizon `.1`.
    pub(crate) gap: Option<(i64, u64)>,
}

impl EventCursor {
    /// A cursor from which the next event read is the first after `position`
    /// (0: the start of the stream).
    pub fn after(position: i64) -> EventCursor {
        EventCursor {
            position,
            gap: None,
        }
    }
}

/// A page of the stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventPage {
    /// Events after the cursor, in position order, with none missing: every
    /// event up to the last of them that will ever exist is here.
    pub events: Vec<Event>,
    /// Where to read next.
    pub next: EventCursor,
    /// Committed events beyond a gap that may still fill (PostgreSQL only),
    /// in position order. They are not part of the ordered stream yet (they
    /// come again in a later page's `events`); readers that must react to
    /// every committed change at once, such as cache invalidation, look at
    /// them too.
    pub pending: Vec<Event>,
}

/// What a subscription reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Changes to these repositories committed.
    Changed(Vec<RepoName>),
    /// Notices may have been lost (the connection dropped and has been
    /// re-established, or a transaction touched too many repositories to
    /// name them all): anything may have changed.
    Anything,
    /// A fence sent with [`EventStore::send_fence`] (by any node) has
    /// arrived: every notice of a change that committed before it was sent
    /// has arrived on this subscription before it. A subscriber that acts on
    /// notices acknowledges another node's fence with
    /// [`EventStore::send_ack`] once it has acted on everything before it.
    Fence(String),
    /// A subscriber acknowledged the fence with this token.
    Ack(String),
}

/// Notices of committed changes, delivered shortly after each commit.
#[async_trait::async_trait]
pub trait EventSubscription: Send {
    /// Waits for the next notice. An error means the subscription is gone
    /// (the caller subscribes again, and treats what happened meanwhile as
    /// [`Notice::Anything`]).
    async fn next(&mut self) -> Result<Notice, MetaError>;
}

/// A consumer's durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerRow {
    pub name: String,
    /// Every event up to this position has been handled.
    pub position: i64,
    pub holder: Option<String>,
    pub lease_expires: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// The event stream and its consumers.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Reads at most `limit` events after `cursor` (see [`EventPage`] for what
    /// it returns and the module documentation for why nothing is missed).
    async fn read_events(&self, cursor: &EventCursor, limit: usize)
        -> Result<EventPage, MetaError>;

    /// The newest event's position, 0 if there is none.
    async fn last_event_position(&self) -> Result<i64, MetaError>;

    /// A position at or before which every event that will ever exist has
    /// committed: a reader starting after it misses nothing committed from
    /// now on. On SQLite that is the newest position; on PostgreSQL it is
    /// the newest visible position once every transaction running when it
    /// was read has ended, so this waits for those (briefly, normally; it
    /// fails if they run on for long).
    async fn settled_position(&self) -> Result<i64, MetaError>;

    /// Subscribes to notices of committed changes (PostgreSQL `LISTEN`; the
    /// notice is sent by the committing transaction, so it arrives shortly
    /// after the commit, never before). `None` where the backend has none:
    /// SQLite serves one node, whose own writes need no notice.
    async fn subscribe(&self) -> Result<Option<Box<dyn EventSubscription>>, MetaError>;

    /// Sends `token` to every subscription as a [`Notice::Fence`] and
    /// returns how many subscriptions other than the sender's own will see
    /// it. Notices arrive in commit order, so a subscriber that has acted on
    /// the fence has acted on every change committed before this call: a
    /// node that waits for that many [`Notice::Ack`]s after a change knows
    /// no other node still serves what the change made stale. Returns 0
    /// and sends nothing where [`EventStore::subscribe`] gives no
    /// subscription.
    async fn send_fence(&self, token: &str) -> Result<usize, MetaError>;

    /// Acknowledges another node's fence (a [`Notice::Ack`] to every
    /// subscription).
    async fn send_ack(&self, token: &str) -> Result<(), MetaError>;

    /// The position of the first event written at or after `at`, if any.
    async fn first_event_since(&self, at: Timestamp) -> Result<Option<i64>, MetaError>;

    /// Deletes at most `limit` of the oldest events written before `before`;
    /// returns how many. Retention, run in batches by a background job.
    async fn delete_events_before(&self, before: Timestamp, limit: usize)
        -> Result<u64, MetaError>;

    /// Takes or renews the lease on consumer `name` for `lease_secs` under
    /// the holder name `holder`, creating the consumer at position `start`
    /// if it is new, and returns its position; `None`, changing nothing,
    /// while another holder's lease runs. A lease runs until, not
    /// including, its expiry second.
    async fn acquire_consumer(
        &self,
        name: &str,
        holder: &str,
        start: i64,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<Option<i64>, MetaError>;

    /// Records that consumer `name` has handled every event up to
    /// `position` (a position never goes back). Fails with `LeaseLost`,
    /// changing nothing, unless `holder` holds the consumer's lease (an
    /// expired lease nobody took still counts).
    async fn advance_consumer(
        &self,
        name: &str,
        holder: &str,
        position: i64,
        now: Timestamp,
    ) -> Result<(), MetaError>;

    /// Gives up `holder`'s lease on consumer `name`, keeping its position.
    /// Releasing a lease held by someone else, or none, changes nothing.
    async fn release_consumer(&self, name: &str, holder: &str) -> Result<(), MetaError>;

    /// Every consumer, by name.
    async fn list_consumers(&self) -> Result<Vec<ConsumerRow>, MetaError>;
}
