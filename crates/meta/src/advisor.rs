//! [`AdvisorStore`]: what the Vulnerability Advisor keeps in the database.
//!
//! Layer indexes and advisories are stored as the scanner serialized them
//! (JSON text): this crate does not depend on the scanner, and the rows it
//! needs to look things up (layer digest, advisory id, aliases, package
//! keys) are given alongside. The registry converts between the two.

use berth_oci::{Digest, RepoName};

use crate::{Change, MetaError, Timestamp};

/// How far indexing an image got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexState {
    /// Waiting in the scan queue.
    Queued,
    /// A worker holds its job.
    Indexing,
    /// Every layer was indexed completely.
    Done,
    /// Indexed, but something could not be read (the reason says what):
    /// the findings may miss packages.
    Partial(String),
    /// Nothing the advisor can assess (no known operating system and no
    /// language packages, or not an image at all).
    Unsupported(String),
}

impl IndexState {
    /// The stored name of the state.
    pub fn as_str(&self) -> &'static str {
        match self {
            IndexState::Queued => "queued",
            IndexState::Indexing => "indexing",
            IndexState::Done => "done",
            IndexState::Partial(_) => "partial",
            IndexState::Unsupported(_) => "unsupported",
        }
    }

    /// The reason, for the states that have one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            IndexState::Partial(reason) | IndexState::Unsupported(reason) => Some(reason),
            _ => None,
        }
    }

    /// Whether indexing ended (the image is not indexed again on its own).
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            IndexState::Done | IndexState::Partial(_) | IndexState::Unsupported(_)
        )
    }

    /// The state from its stored name and reason.
    pub fn parse(state: &str, reason: Option<String>) -> Option<IndexState> {
        let reason = || reason.clone().unwrap_or_default();
        Some(match state {
            "queued" => IndexState::Queued,
            "indexing" => IndexState::Indexing,
            "done" => IndexState::Done,
            "partial" => IndexState::Partial(reason()),
            "unsupported" => IndexState::Unsupported(reason()),
            _ => return None,
        })
    }
}

/// What the advisor knows of one image manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageIndexRow {
    pub manifest: Digest,
    pub state: IndexState,
    /// The image's layers in order, once indexing finished (empty before).
    pub layers: Vec<Digest>,
    pub updated_at: Timestamp,
}

/// A job of the scan queue, as a worker holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanJob {
    /// The image manifest to index (one platform's, never an index).
    pub manifest: Digest,
    /// A repository the manifest was pushed to, to read it and its layers.
    pub repository: RepoName,
    /// How many times a worker has taken this job, this time included.
    pub attempts: u32,
    pub enqueued_at: Timestamp,
}

/// One advisory as an import stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvisoryRow {
    pub id: String,
    /// The record's `modified` time, in nanoseconds since the epoch.
    pub modified_ns: i64,
    pub aliases: Vec<String>,
    /// The package keys it affects ([`package_key`]).
    pub packages: Vec<String>,
    /// The normalized record, as the scanner serialized it.
    pub body: String,
}

/// The key under which advisories of a package are stored and looked up.
pub fn package_key(ecosystem: &str, name: &str) -> String {
    // A line break appears in neither an ecosystem nor a package name, so
    // the key is unambiguous (NUL would be too, but PostgreSQL's text
    // refuses it).
    format!("{ecosystem}\n{name}")
}

/// One transaction of an advisory import: the records, and what the
/// import tells of them ([`AdvisorStore::import_advisories`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct AdvisoryBatch<'a> {
    /// Records to store (newer replacing older ones of the same id).
    pub advisories: &'a [AdvisoryRow],
    /// Ids of withdrawn records, removed if stored.
    pub withdrawn: &'a [String],
    /// The stored `(id, modified)` of the batch's ids that `verdicts` were
    /// computed from; ids not stored are absent. `None`: not checked.
    pub seen: Option<&'a [(String, i64)]>,
    /// The images whose findings the batch changes (a manifest digest and
    /// the `vulnerabilities.changed` event's detail).
    pub verdicts: &'a [(Digest, serde_json::Value)],
}

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub added: u64,
    /// Stored records replaced by newer ones.
    pub updated: u64,
    /// Records not newer than the stored ones, left alone.
    pub unchanged: u64,
    /// Withdrawn records removed.
    pub removed: u64,
}

impl ImportCounts {
    /// Whether the import changed the stored advisories.
    pub fn changed(&self) -> bool {
        self.added + self.updated + self.removed > 0
    }
}

/// The state of the stored advisory data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdvisoryData {
    pub count: u64,
    /// Increases with every import that changed something: assessments
    /// are valid for one generation.
    pub generation: i64,
    /// When an import last ran (changing something or not); `None` before
    /// the first.
    pub imported_at: Option<Timestamp>,
    /// The newest `modified` among the stored records, in nanoseconds.
    pub newest_modified_ns: Option<i64>,
}

/// An exemption: findings of an advisory that do not count for images in
/// a scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExemptionRow {
    /// `*`, `NS`, `NS/REPO`, `NS/REPO:TAG` or `NS/REPO@DIGEST`, validated by
    /// the caller.
    pub scope: String,
    /// An advisory id or one of its aliases.
    pub advisory: String,
    pub reason: String,
    /// Who made it (the actor's name).
    pub author: String,
    pub created_at: Timestamp,
    /// The exemption ends at (not including) this second, if set.
    pub expires_at: Option<Timestamp>,
}

impl ExemptionRow {
    /// Whether the exemption still applies at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|expiry| now < expiry)
    }

    /// The namespace of the scope, `None` for the whole registry.
    pub fn namespace(&self) -> Option<&str> {
        scope_namespace(&self.scope)
    }
}

/// The namespace a scope names (its first path component), `None` for `*`.
pub fn scope_namespace(scope: &str) -> Option<&str> {
    if scope == "*" {
        return None;
    }
    let end = scope.find(['/', ':', '@']).unwrap_or(scope.len());
    Some(&scope[..end])
}

/// What a pull policy does with an image that has findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyMode {
    Off,
    /// Pulls succeed; the answer and the audit say why they would not.
    Warn,
    /// Pulls of an image with findings at or above the threshold are refused.
    Block,
}

impl PolicyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Off => "off",
            PolicyMode::Warn => "warn",
            PolicyMode::Block => "block",
        }
    }

    pub fn parse(text: &str) -> Option<PolicyMode> {
        [PolicyMode::Off, PolicyMode::Warn, PolicyMode::Block]
            .into_iter()
            .find(|mode| mode.as_str() == text)
    }
}

/// What one image's indexing found, as
/// [`finish_scan`](AdvisorStore::finish_scan) records it.
#[derive(Clone, Copy, Debug)]
pub struct FinishedScan<'a> {
    /// The finished state.
    pub state: &'a IndexState,
    /// The image's layers (their digests), in order.
    pub layers: &'a [Digest],
    /// The image's package keys.
    pub package_keys: &'a [String],
    /// The indexes of layers this indexing read (a layer indexed before
    /// keeps its stored index), stored with the image's state rather than
    /// in a commit of their own each.
    pub new_layer_indexes: &'a [LayerIndexRow],
}

impl<'a> FinishedScan<'a> {
    /// A finished scan that found nothing to record but its state.
    pub fn state_only(state: &'a IndexState) -> FinishedScan<'a> {
        FinishedScan {
            state,
            layers: &[],
            package_keys: &[],
            new_layer_indexes: &[],
        }
    }
}

/// A layer's index as stored: see
/// [`put_layer_index`](AdvisorStore::put_layer_index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerIndexRow {
    pub layer: Digest,
    pub format: i64,
    /// The index, as the scanner serialized it.
    pub body: String,
}

/// A namespace's pull policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRow {
    pub namespace: String,
    pub mode: PolicyMode,
    /// The lowest severity that counts (`critical`, `high`, `medium`, `low`
    /// or `any`), validated by the caller.
    pub severity: String,
    /// Whether pulls of images not indexed yet are refused too.
    pub block_unscanned: bool,
    /// Whether each indexed image gets its SBOM attached as a referrer
    /// (what namespaces without a policy get).
    pub attach_sbom: bool,
    pub updated_at: Timestamp,
}

/// The Vulnerability Advisor's records: layer indexes, image index states,
/// the scan queue, advisories, exemptions and pull policies.
///
/// Layer indexes and image states are derived data: they are written
/// without a [`Change`] and without events, like job leases. Advisories,
/// exemptions and policies are decisions of people and write their events.
#[async_trait::async_trait]
pub trait AdvisorStore: Send + Sync + 'static {
    // --- layer indexes ---

    /// Stores the index of layer `layer` unless one is stored already (a
    /// layer's index depends only on its bytes, so the first one stays);
    /// returns whether this call stored it.
    async fn put_layer_index(
        &self,
        layer: &Digest,
        format: i64,
        body: &str,
        now: Timestamp,
    ) -> Result<bool, MetaError>;

    /// The stored index of layer `layer`: its format and body.
    async fn layer_index(&self, layer: &Digest) -> Result<Option<(i64, String)>, MetaError>;

    // --- images and the scan queue ---

    /// What the advisor knows of image `manifest`, if anything.
    async fn image_index(&self, manifest: &Digest) -> Result<Option<ImageIndexRow>, MetaError>;

    /// Queues image `manifest` (pushed to `repository`) for indexing unless
    /// it is queued or being indexed already, or, without `again`, its
    /// indexing finished. Returns whether it queued a job; the image's state
    /// becomes `Queued`.
    async fn enqueue_scan(
        &self,
        repository: &RepoName,
        manifest: &Digest,
        now: Timestamp,
        again: bool,
    ) -> Result<bool, MetaError> {
        let queued = self
            .enqueue_scans(&[(repository.clone(), manifest.clone())], now, again)
            .await?;
        Ok(queued.first().copied().unwrap_or(false))
    }

    /// [`enqueue_scan`](AdvisorStore::enqueue_scan) for each of `images`
    /// (an image and the repository it was pushed to), in one transaction;
    /// returns whether each was queued, in the order given. An image given
    /// twice is queued at most once, for the first repository given with
    /// it. A batch of pushes queues its images with one commit instead of
    /// one each.
    async fn enqueue_scans(
        &self,
        images: &[(RepoName, Digest)],
        now: Timestamp,
        again: bool,
    ) -> Result<Vec<bool>, MetaError>;

    /// Takes the oldest job that is free (never taken, or its holder's
    /// lease expired: a lease runs until, not including, its expiry second)
    /// and due (`not_before <= now`) for `lease_secs` under `holder`; the
    /// image's state becomes `Indexing`. `None` when no job is free. Two
    /// callers never take the same job while its lease runs.
    async fn take_scan(
        &self,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<Option<ScanJob>, MetaError>;

    /// Ends `holder`'s job on `manifest`: the job leaves the queue and the
    /// image's state becomes `scan.state` (finished) with `scan.layers`,
    /// the image's package keys (the [`package_key`]s its findings are
    /// looked up by) become `scan.package_keys`, replacing earlier ones, and
    /// `scan.new_layer_indexes` are stored as
    /// [`put_layer_index`](AdvisorStore::put_layer_index) would, in one
    /// transaction. Fails with `LeaseLost`, changing nothing, unless
    /// `holder` holds the job (an expired lease nobody took still counts).
    async fn finish_scan(
        &self,
        holder: &str,
        manifest: &Digest,
        scan: &FinishedScan<'_>,
        now: Timestamp,
    ) -> Result<(), MetaError>;

    /// The indexed images (manifest digests) with a package key among
    /// `package_keys`, each once, in digest order, after `after` (a page's
    /// last digest), at most `limit`.
    async fn images_with_packages(
        &self,
        package_keys: &[String],
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Digest>, MetaError>;

    /// The images whose indexing finished with packages (`done` or
    /// `partial`) but whose package keys were never recorded (indexed
    /// before the store kept them), each with a repository holding it (the
    /// first by name; `None` when none does), in digest order after `after`
    /// (a page's last digest), at most `limit`.
    async fn images_without_package_keys(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<(ImageIndexRow, Option<RepoName>)>, MetaError>;

    /// Records the package keys of image `manifest` (as
    /// [`finish_scan`](AdvisorStore::finish_scan) would have) if its indexing
    /// finished with packages and its keys are still not recorded; returns
    /// whether it did. Not when the image was queued or indexed again
    /// since: that indexing records its own.
    async fn record_image_packages(
        &self,
        manifest: &Digest,
        package_keys: &[String],
    ) -> Result<bool, MetaError>;

    /// Gives `holder`'s job on `manifest` back to the queue, due again at
    /// `not_before` (a passing failure: storage unavailable). Fails with
    /// `LeaseLost` unless `holder` holds it.
    async fn retry_scan(
        &self,
        holder: &str,
        manifest: &Digest,
        not_before: Timestamp,
    ) -> Result<(), MetaError>;

    /// How many jobs are queued (held or not).
    async fn scan_queue_depth(&self) -> Result<u64, MetaError>;

    // --- advisories ---

    /// Imports one batch: stores `batch.advisories`, each replacing a
    /// stored record of the same id only if its `modified` is newer, and
    /// removes the `batch.withdrawn` ids; writes an `advisories.imported`
    /// event with the counts when something changed, and advances the
    /// data's generation; and records that the findings of each image of
    /// `batch.verdicts` changed at the change's time, with a
    /// `vulnerabilities.changed` event in every repository holding it (none
    /// for an image no repository holds any more). All of it in one
    /// transaction, so the advisories and the events naming the images
    /// they affect are visible together or not at all; an import of many
    /// batches tells each batch's images with that batch.
    ///
    /// With `batch.seen` (the stored `(id, modified)` of the batch's ids
    /// that the caller computed `verdicts` from, in any order), the batch
    /// is stored only if those ids are stored exactly so when it commits;
    /// otherwise (another import changed them since) nothing changes and
    /// the answer is `None`, for the caller to compute again. Without it
    /// the answer is always `Some`.
    async fn import_advisories(
        &self,
        change: &Change,
        batch: &AdvisoryBatch<'_>,
    ) -> Result<Option<ImportCounts>, MetaError>;

    /// The bodies of every stored advisory affecting one of `package_keys`,
    /// each once, in id order.
    async fn advisories_for_packages(
        &self,
        package_keys: &[String],
    ) -> Result<Vec<String>, MetaError>;

    /// The stored advisories among `ids`: each one's id, `modified` (in
    /// nanoseconds) and, with `bodies`, its body (else empty), in id order.
    async fn advisories_by_id(
        &self,
        ids: &[String],
        bodies: bool,
    ) -> Result<Vec<(String, i64, String)>, MetaError>;

    /// The ids of the stored advisories whose id or alias is `name`, in
    /// order.
    async fn advisory_ids_named(&self, name: &str) -> Result<Vec<String>, MetaError>;

    /// The state of the stored advisory data.
    async fn advisory_data(&self) -> Result<AdvisoryData, MetaError>;

    // --- exemptions ---

    /// Adds an exemption, or replaces the one with the same scope and
    /// advisory (its reason, author and expiry); writes `exemption.set`.
    async fn set_exemption(
        &self,
        change: &Change,
        exemption: &ExemptionRow,
    ) -> Result<(), MetaError>;

    /// Removes the exemption of `advisory` in `scope`; returns whether there
    /// was one (and wrote `exemption.removed`).
    async fn remove_exemption(
        &self,
        change: &Change,
        scope: &str,
        advisory: &str,
    ) -> Result<bool, MetaError>;

    /// The exemptions, expired ones too, by scope then advisory; only those
    /// of exactly `scope` when given.
    async fn list_exemptions(&self, scope: Option<&str>) -> Result<Vec<ExemptionRow>, MetaError>;

    /// A page of at most `limit` exemptions, expired ones too, by scope
    /// then advisory, after `after` (the previous page's last scope and
    /// advisory). With `namespace`, only those that apply to its images:
    /// the registry-wide ones (`*`) and the namespace's own, its
    /// repositories' and its images'. Read through the primary key: the
    /// work is the page and the namespace's exemptions, not every one.
    async fn exemption_page(
        &self,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<ExemptionRow>, MetaError>;

    // --- pull policies ---

    /// Sets the pull policy of a namespace; writes `vulnerability_policy.set`
    /// when it changed. `NotFound` if the namespace does not exist.
    async fn set_policy(&self, change: &Change, policy: &PolicyRow) -> Result<(), MetaError>;

    /// The pull policy of a namespace, if one was set.
    async fn policy(&self, namespace: &str) -> Result<Option<PolicyRow>, MetaError>;

    /// Every namespace's policy, by namespace.
    async fn list_policies(&self) -> Result<Vec<PolicyRow>, MetaError>;
}
