//! The Vulnerability Advisor in the registry: scan on push, the scan
//! workers, and assessment of an image against the stored advisories.
//!
//! - [`ScanOnPush`] is an event consumer: every tag move queues the tagged
//!   image (an index: each platform's image) in the metadata store's scan
//!   queue, one transaction per batch of events. It never reads a layer,
//!   so it keeps up with any push rate.
//! - [`ScanWorkers`] take jobs from that queue with a lease (a node killed
//!   mid-scan leaves its job to another after the lease), read each layer
//!   once, as a stream, from the blob store, index it with
//!   [`berth_scanner::Indexer`] and store the layer's index by digest, so a
//!   layer shared by many images is read once. A bounded number of workers
//!   runs per node, off the request path.
//! - [`Registry::assess_image`] joins an image's stored index with the
//!   advisories as they are now, minus unexpired exemptions.
//!
//! **Architecture Invariant:** indexing happens only in the workers, never
//! in a push or pull request; a pull reads an image's stored state and the
//! stored advisories, never a layer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_meta::advisor::package_key;
use berth_meta::{
    AdvisoryBatch, AdvisoryRow, Event, EventKind, FinishedScan, ImageFindings, ImageIndexRow,
    ImportCounts, IndexState, LayerIndexRow, MetaError, NamespaceFindings, ScanJob, SeverityCounts,
};
use berth_oci::manifest::{ManifestKind, ParsedManifest};
use berth_oci::{Digest, RepoName, Tag};
use berth_scanner::{AdvisorySource, Finding, IndexReport, LayerIndex, PackageKey, SourceError};
use tokio_util::sync::CancellationToken;

use crate::events::{ConsumerError, EventConsumer};
use crate::{Actor, Registry, RegistryError};

/// The format of stored layer indexes: a layer index stored by another
/// format is indexed again (when the scanner's output changes shape, this
/// number goes up).
pub const LAYER_INDEX_FORMAT: i64 = 1;

/// Config media types of container images: other image manifests
/// (signatures, SBOMs, Helm charts) hold no file system to index.
const IMAGE_CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// The most stale finding counts one refresh assesses again: small, so
/// that a worker returns to the scan queue soon after an advisory import.
pub const FINDINGS_BATCH: usize = 50;

/// Images whose package keys one backfill step records at most.
pub const BACKFILL_BATCH: usize = 100;

/// The job lease under which one node at a time records the package keys
/// of images indexed before they were kept.
pub const BACKFILL_JOB: &str = "advisor-package-backfill";

/// Where a node's backfill of package keys stands: the last image it
/// looked at, or done for this start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Backfill {
    /// Not started.
    #[default]
    Start,
    /// Went through the images up to this one.
    After(Digest),
    /// A pass went through every image without keys: nothing more to do
    /// until the node starts again.
    Done,
}

/// Queues tagged images for indexing: the scan-on-push consumer.
pub struct ScanOnPush {
    registry: Registry,
}

impl ScanOnPush {
    /// The consumer's name, which keys its position in the database.
    pub const NAME: &'static str = "scan-on-push";

    pub fn new(registry: Registry) -> ScanOnPush {
        ScanOnPush { registry }
    }
}

#[async_trait::async_trait]
impl EventConsumer for ScanOnPush {
    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError> {
        // Queueing is idempotent (an image queued or indexed already is
        // left alone), so a batch offered again does no harm.
        let tagged: Vec<(RepoName, Digest)> = events
            .iter()
            .filter(|event| event.kind == EventKind::TagMoved)
            .filter_map(|event| Some((event.repository.clone()?, event.digest.clone()?)))
            .collect();
        if !tagged.is_empty() {
            self.registry.queue_scans(&tagged, false).await?;
        }
        Ok(())
    }
}

/// What one image's indexing found, as the assessment reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStatus {
    /// The advisor has not heard of the image (pushed before scanning was
    /// enabled, or untagged).
    NotScanned,
    /// Queued or being indexed.
    Scanning,
    /// Indexed: nothing the advisor can assess (no known operating system
    /// and no language packages).
    UnsupportedOs(String),
    /// Indexed (completely, or `partial` names what could not be read).
    Indexed { partial: Option<String> },
}

/// One image's assessment.
#[derive(Clone, Debug)]
pub struct ImageAssessment {
    /// The image manifest (one platform's).
    pub manifest: Digest,
    /// The platform, for an image listed by an index (`linux/amd64`).
    pub platform: Option<String>,
    pub status: ScanStatus,
    /// The image's index report, once indexed.
    pub report: Option<IndexReport>,
    /// Findings that count: not exempted, and with a published fix unless
    /// every finding was asked for. Sorted by severity (worst first), then
    /// package and advisory.
    pub findings: Vec<Finding>,
    /// Findings left out by an exemption.
    pub exempted: Vec<Finding>,
    /// Findings without a fix, left out because not every finding was
    /// asked for.
    pub unfixed: usize,
}

/// Settings of the scan workers.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// Workers per node (each indexes one image at a time).
    pub workers: usize,
    /// How long a worker's hold on a job lasts; renewed by nothing, so it
    /// must exceed the longest indexing (a node killed mid-scan delays its
    /// job by at most this).
    pub lease: Duration,
    /// How long a job that failed for a passing reason waits before another try.
    pub retry_delay: Duration,
    /// How often an idle worker looks at the queue.
    pub poll_interval: Duration,
    /// Tries before a job is given up as partial.
    pub max_attempts: u32,
    /// Whether indexed images get their SBOM attached as a referrer (each
    /// namespace's policy may still turn it off).
    pub attach_sbom: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            workers: 2,
            lease: Duration::from_secs(600),
            retry_delay: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            max_attempts: 5,
            attach_sbom: true,
        }
    }
}

/// The annotation that marks an SBOM referrer as the one the Vulnerability
/// Advisor attached (its value: the generator and its version), so an image
/// indexed again, on any node, does not get a second one.
pub const SBOM_GENERATOR_ANNOTATION: &str = "io.berth.sbom.generator";

/// The OCI empty descriptor's content (`{}`), the config of artifacts.
const EMPTY_CONFIG: &[u8] = b"{}";
const EMPTY_CONFIG_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// What the workers did: for metrics and tests.
#[derive(Debug, Default)]
pub struct ScanStats {
    /// Images whose indexing finished (done, partial or unsupported),
    /// failures aside.
    pub finished: std::sync::atomic::AtomicU64,
    /// Jobs that failed and were given back to the queue.
    pub failures: std::sync::atomic::AtomicU64,
    /// Layers read from storage and indexed (not found already indexed).
    pub layers_indexed: std::sync::atomic::AtomicU64,
    /// Total time spent indexing finished images, in microseconds.
    pub scan_micros: std::sync::atomic::AtomicU64,
}

/// One job's end, as the workers report it to their observer (metrics).
#[derive(Clone, Debug)]
pub struct ScanRecord {
    /// How long the job took.
    pub duration: Duration,
    /// Whether it failed (and was given back to the queue, or given up).
    pub failed: bool,
}

/// What the workers call after each job.
pub type ScanObserver = Arc<dyn Fn(&ScanRecord) + Send + Sync>;

/// The scan workers of one node.
#[derive(Clone)]
pub struct ScanWorkers {
    registry: Registry,
    indexer: Arc<Indexer>,
    options: ScanOptions,
    stats: Arc<ScanStats>,
    observer: Option<ScanObserver>,
}

impl ScanWorkers {
    pub fn new(registry: Registry, indexer: Indexer, options: ScanOptions) -> ScanWorkers {
        ScanWorkers {
            registry,
            indexer: Arc::new(indexer),
            options,
            stats: Arc::new(ScanStats::default()),
            observer: None,
        }
    }

    /// The same workers, reporting each job's end to `observer`.
    pub fn with_observer(mut self, observer: ScanObserver) -> ScanWorkers {
        self.observer = Some(observer);
        self
    }

    pub fn stats(&self) -> &Arc<ScanStats> {
        &self.stats
    }

    fn holder(&self, worker: usize) -> String {
        format!("{}/scan-{worker}", self.registry.config().node_name)
    }

    /// Takes and indexes queued jobs, one at a time, until none is free
    /// (or `limit` were handled); returns how many it handled.
    pub async fn run_once(&self, limit: usize) -> Result<usize, RegistryError> {
        let holder = self.holder(0);
        let mut handled = 0;
        while handled < limit && self.scan_next(&holder).await? {
            handled += 1;
        }
        self.registry.refresh_findings(FINDINGS_BATCH).await?;
        let mut backfill = Backfill::Start;
        // Bounded: each step moves past at least one image or ends.
        for _ in 0..10_000 {
            if !self.backfill_step(&holder, &mut backfill).await? {
                break;
            }
        }
        Ok(handled)
    }

    /// One step of the backfill of package keys (images indexed before the
    /// store kept them, which changed advisories would otherwise never
    /// find): under the [`BACKFILL_JOB`] lease, so one node does it at a
    /// time, the next [`BACKFILL_BATCH`] such images after `backfill` get
    /// their keys from their layers' stored indexes, without reading a
    /// layer and without changing their state; an image one of whose layer
    /// indexes is missing or of an older format is queued to be indexed
    /// again instead (its layers are read then). Returns whether there may
    /// be more to do; `backfill` moves on, and is `Done` after a pass that
    /// found nothing more. Progress is kept in the store (an image leaves
    /// the list once recorded), so a node that stops resumes at its next
    /// start, and another node takes over when the lease runs out.
    pub async fn backfill_step(
        &self,
        holder: &str,
        backfill: &mut Backfill,
    ) -> Result<bool, RegistryError> {
        let after = match backfill {
            Backfill::Done => return Ok(false),
            Backfill::Start => None,
            Backfill::After(digest) => Some(digest.clone()),
        };
        let meta = self.registry.meta();
        let lease = self.options.lease.as_secs().max(1) as i64;
        if !meta
            .acquire_job_lease(BACKFILL_JOB, holder, self.registry.now(), lease)
            .await?
        {
            // Another node does it; this one looks again later.
            return Ok(false);
        }
        let page = meta
            .images_without_package_keys(after.as_ref(), BACKFILL_BATCH)
            .await?;
        for (row, repository) in &page {
            match self.stored_report(&row.layers).await? {
                Some(report) => {
                    let keys: Vec<String> = berth_scanner::matcher::lookup_keys(&report)
                        .iter()
                        .map(|key| package_key(&key.ecosystem, &key.name))
                        .collect();
                    meta.record_image_packages(&row.manifest, &keys).await?;
                }
                None => {
                    if let Some(repository) = repository {
                        meta.enqueue_scan(repository, &row.manifest, self.registry.now(), true)
                            .await?;
                    }
                }
            }
        }
        match page.last() {
            Some((row, _)) if page.len() == BACKFILL_BATCH => {
                *backfill = Backfill::After(row.manifest.clone());
                Ok(true)
            }
            _ => {
                *backfill = Backfill::Done;
                meta.release_job_lease(BACKFILL_JOB, holder).await?;
                Ok(!page.is_empty())
            }
        }
    }

    /// The index of an image with `layers`, from their stored indexes in
    /// the current format; `None` if one is missing or older.
    async fn stored_report(&self, layers: &[Digest]) -> Result<Option<IndexReport>, RegistryError> {
        let meta = self.registry.meta();
        let mut indexes = Vec::with_capacity(layers.len());
        for layer in layers {
            let Some((LAYER_INDEX_FORMAT, body)) = meta.layer_index(layer).await? else {
                return Ok(None);
            };
            let Ok(index) = serde_json::from_str::<LayerIndex>(&body) else {
                return Ok(None);
            };
            indexes.push(index);
        }
        Ok(Some(IndexReport::from_layers(&indexes)))
    }

    /// Runs the workers until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..self.options.workers.max(1) {
            let workers = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let holder = workers.holder(worker);
                let mut backfill = Backfill::Start;
                loop {
                    let busy = match workers.scan_next(&holder).await {
                        Ok(busy) => busy,
                        Err(error) => {
                            tracing::warn!(%error, "scan worker: the queue could not be read");
                            false
                        }
                    };
                    // With the queue empty, the first worker brings stale
                    // finding counts up to date, a batch at a time.
                    let busy = busy
                        || (worker == 0
                            && match workers.registry.refresh_findings(FINDINGS_BATCH).await {
                                Ok(refreshed) => refreshed > 0,
                                Err(error) => {
                                    tracing::warn!(%error, "scan worker: finding counts could not be refreshed");
                                    false
                                }
                            })
                        // Then it records the package keys of images indexed
                        // before they were kept, once per start.
                        || (worker == 0
                            && match workers.backfill_step(&holder, &mut backfill).await {
                                Ok(more) => more,
                                Err(error) => {
                                    tracing::warn!(%error, "scan worker: package keys could not be backfilled");
                                    false
                                }
                            });
                    if busy {
                        if shutdown.is_cancelled() {
                            return;
                        }
                        continue;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(workers.options.poll_interval) => {}
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Takes one job and indexes its image; `false` when no job was free.
    async fn scan_next(&self, holder: &str) -> Result<bool, RegistryError> {
        let meta = self.registry.meta();
        let now = self.registry.now();
        let lease = self.options.lease.as_secs().max(1) as i64;
        let Some(job) = meta.take_scan(holder, now, lease).await? else {
            return Ok(false);
        };
        let started = Instant::now();
        let outcome = self.index_image(&job).await;
        let now = self.registry.now();
        let failed = outcome.is_err();
        let mut indexed = None;
        let mut stored_state = None;
        let finished = match outcome {
            Ok(IndexedImage {
                state,
                layers,
                report,
                new_indexes,
            }) => {
                let keys: Vec<String> = report
                    .as_ref()
                    .map(|report| {
                        berth_scanner::matcher::lookup_keys(report)
                            .iter()
                            .map(|key| package_key(&key.ecosystem, &key.name))
                            .collect()
                    })
                    .unwrap_or_default();
                if matches!(state, IndexState::Done | IndexState::Partial(_)) {
                    indexed = report;
                }
                let scan = FinishedScan {
                    state: &state,
                    layers: &layers,
                    package_keys: &keys,
                    new_layer_indexes: &new_indexes,
                };
                let finished = meta.finish_scan(holder, &job.manifest, &scan, now).await;
                stored_state = Some(state);
                finished
            }
            Err(error) if job.attempts < self.options.max_attempts => {
                tracing::warn!(%error, manifest = %job.manifest, attempts = job.attempts,
                    "indexing an image failed; it is tried again later");
                self.stats
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let again = now.saturating_add(self.options.retry_delay.as_secs() as i64);
                meta.retry_scan(holder, &job.manifest, again).await
            }
            Err(error) => {
                tracing::warn!(%error, manifest = %job.manifest, "indexing an image failed for good");
                self.stats
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let state = IndexState::Partial(format!("indexing failed: {error}"));
                meta.finish_scan(
                    holder,
                    &job.manifest,
                    &FinishedScan::state_only(&state),
                    now,
                )
                .await
            }
        };
        match finished {
            Ok(()) => {}
            // Another worker took the job over after this one's lease ran
            // out; its result stands.
            Err(MetaError::LeaseLost) => return Ok(true),
            Err(error) => return Err(error.into()),
        }
        // The overview's counts follow the image's new state, assessed from
        // what this indexing has just stored when it finished it; a failure
        // leaves the row stale, for the next refresh to take again.
        let just_stored = stored_state.as_ref().map(|state| (state, indexed.clone()));
        if let Err(error) = self
            .registry
            .record_findings_of(&job.repository, &job.manifest, just_stored)
            .await
        {
            tracing::warn!(%error, manifest = %job.manifest, repository = %job.repository,
                "recording an image's finding counts failed");
        }
        if let Some(report) = indexed {
            // The verdict is recorded; the SBOM is an extra whose failure
            // (a full quota, storage away) costs the image nothing but it.
            if let Err(error) = self.attach_sbom(&job, &report).await {
                tracing::warn!(%error, manifest = %job.manifest, repository = %job.repository,
                    "attaching an image's SBOM failed");
            }
        }
        if let Some(observer) = &self.observer {
            observer(&ScanRecord {
                duration: started.elapsed(),
                failed,
            });
        }
        if !failed {
            self.stats
                .finished
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.stats.scan_micros.fetch_add(
                started.elapsed().as_micros() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        Ok(true)
    }

    /// Indexes the image of `job`: each layer's stored index, or the layer
    /// read and indexed now. An error is a passing failure (storage or
    /// database unavailable); what is wrong with the image itself is a
    /// finished state.
    async fn index_image(&self, job: &ScanJob) -> Result<IndexedImage, RegistryError> {
        let meta = self.registry.meta();
        let Some(record) = meta
            .manifest_by_digest(&job.repository, &job.manifest)
            .await?
        else {
            let state = IndexState::Unsupported("the manifest was deleted".to_string());
            return Ok(IndexedImage::unsupported(state));
        };
        let parsed = match ParsedManifest::parse(&record.payload, Some(&record.media_type)) {
            Ok(parsed) if !parsed.kind.is_index() => parsed,
            _ => {
                let state = IndexState::Unsupported("not an image manifest".to_string());
                return Ok(IndexedImage::unsupported(state));
            }
        };
        let mut layers = Vec::new();
        let mut new_indexes = Vec::new();
        for descriptor in parsed.layers.iter().filter(|d| !d.is_non_distributable()) {
            match self.layer_index(job, descriptor).await {
                Ok((index, new)) => {
                    layers.push(index);
                    new_indexes.extend(new);
                }
                Err(error) => {
                    // The layers read before the failure are kept, so that
                    // the next attempt does not read them again. If that
                    // fails too, the next attempt reads them again; the
                    // failure reported is the first one.
                    for index in &new_indexes {
                        let now = self.registry.now();
                        let stored = meta
                            .put_layer_index(&index.layer, index.format, &index.body, now)
                            .await;
                        if let Err(stored) = stored {
                            tracing::warn!(error = %stored, layer = %index.layer,
                                "storing the index of a layer read before a failure failed");
                            break;
                        }
                    }
                    return Err(error);
                }
            }
        }
        let digests: Vec<Digest> = layers.iter().map(|layer| layer.layer.clone()).collect();
        let report = IndexReport::from_layers(&layers);
        Ok(IndexedImage {
            state: index_state(&report),
            layers: digests,
            report: Some(report),
            new_indexes,
        })
    }

    /// Attaches the SBOM of an indexed image to it, as an OCI artifact
    /// whose `subject` is the image (artifact type
    /// `application/vnd.cyclonedx+json`, one layer: the CycloneDX 1.6
    /// document), stored through the normal push path by `system:scanner`
    /// (its blobs count towards the namespace's quota; its event is a
    /// `manifest.stored`). Returns whether one was attached: not when the
    /// option or the namespace's policy turns it off, in a proxy namespace
    /// (a cache holds what upstream has), when the image has gone, or when
    /// an earlier indexing already attached one.
    pub async fn attach_sbom(
        &self,
        job: &ScanJob,
        report: &IndexReport,
    ) -> Result<bool, RegistryError> {
        let registry = &self.registry;
        let namespace = job.repository.namespace();
        if !self.options.attach_sbom || registry.is_proxy_namespace(namespace) {
            return Ok(false);
        }
        if let Some(policy) = registry.vulnerability_policy(namespace).await? {
            if !policy.attach_sbom {
                return Ok(false);
            }
        }
        let Some(subject) = registry
            .meta()
            .manifest_by_digest(&job.repository, &job.manifest)
            .await?
        else {
            return Ok(false);
        };
        let existing = registry
            .referrers(
                &job.repository,
                &job.manifest,
                Some(berth_scanner::sbom::CYCLONEDX_MEDIA_TYPE),
                None,
            )
            .await?;
        let attached = existing.descriptors.iter().any(|descriptor| {
            serde_json::from_slice::<serde_json::Value>(descriptor)
                .is_ok_and(|d| d["annotations"][SBOM_GENERATOR_ANNOTATION].is_string())
        });
        if attached {
            return Ok(false);
        }
        let document = sbom_document(
            report,
            job.repository.as_str(),
            &job.manifest,
            SbomFormat::CycloneDx,
        );
        let sbom = serde_json::to_vec(&document)
            .map_err(|error| RegistryError::InvalidParameter(format!("an SBOM: {error}")))?;
        let actor = Actor::system("scanner");
        let mut blobs = Vec::new();
        for bytes in [EMPTY_CONFIG.to_vec(), sbom] {
            let digest = berth_oci::Algorithm::Sha256.digest_of(&bytes);
            let size = bytes.len() as u64;
            let stream: berth_storage::ByteStream = Box::pin(futures::stream::once(async move {
                Ok(bytes::Bytes::from(bytes))
            }));
            registry
                .upload_monolithic(&actor, &job.repository, &digest, stream)
                .await?;
            blobs.push((digest, size));
        }
        let generator = format!("berth {}", env!("CARGO_PKG_VERSION"));
        let created = document["metadata"]["timestamp"].clone();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": berth_scanner::sbom::CYCLONEDX_MEDIA_TYPE,
            "config": {
                "mediaType": EMPTY_CONFIG_TYPE,
                "digest": blobs[0].0.as_str(),
                "size": blobs[0].1,
            },
            "layers": [{
                "mediaType": berth_scanner::sbom::CYCLONEDX_MEDIA_TYPE,
                "digest": blobs[1].0.as_str(),
                "size": blobs[1].1,
                "annotations": { "org.opencontainers.image.title": "sbom.cdx.json" },
            }],
            "subject": {
                "mediaType": subject.media_type,
                "digest": job.manifest.as_str(),
                "size": subject.payload.len(),
            },
            "annotations": {
                "org.opencontainers.image.created": created,
                SBOM_GENERATOR_ANNOTATION: generator,
            },
        });
        let payload = serde_json::to_vec(&manifest).map_err(|error| {
            RegistryError::InvalidParameter(format!("an SBOM manifest: {error}"))
        })?;
        let digest = berth_oci::Algorithm::Sha256.digest_of(&payload);
        registry
            .put_manifest(
                &actor,
                &job.repository,
                &berth_oci::Reference::Digest(digest),
                &[],
                Some("application/vnd.oci.image.manifest.v1+json"),
                payload,
            )
            .await?;
        Ok(true)
    }

    /// The index of one layer: the stored one, or the layer read and
    /// indexed now, with the row to store for it (stored with the image's
    /// finished state).
    async fn layer_index(
        &self,
        job: &ScanJob,
        descriptor: &berth_oci::manifest::Descriptor,
    ) -> Result<(LayerIndex, Option<LayerIndexRow>), RegistryError> {
        let meta = self.registry.meta();
        if let Some((LAYER_INDEX_FORMAT, body)) = meta.layer_index(&descriptor.digest).await? {
            if let Ok(index) = serde_json::from_str::<LayerIndex>(&body) {
                return Ok((index, None));
            }
        }
        let body = self
            .registry
            .read_blob(&job.repository, &descriptor.digest, None)
            .await?;
        let reader = tokio_util::io::StreamReader::new(body.stream);
        let index = self
            .indexer
            .index_layer(
                descriptor.digest.clone(),
                Some(descriptor.media_type.clone()),
                reader,
            )
            .await;
        // An index cut short by the storage failing mid-stream says so in
        // its problems; it is stored all the same, as the layer read then.
        let body = serde_json::to_string(&index)
            .map_err(|error| RegistryError::InvalidParameter(format!("layer index: {error}")))?;
        self.stats
            .layers_indexed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let row = LayerIndexRow {
            layer: descriptor.digest.clone(),
            format: LAYER_INDEX_FORMAT,
            body,
        };
        Ok((index, Some(row)))
    }
}

/// What indexing one image found.
struct IndexedImage {
    state: IndexState,
    /// The image's layers, in order.
    layers: Vec<Digest>,
    /// `None` when the image has nothing to index.
    report: Option<IndexReport>,
    /// The layers read and indexed now, to store with the image's state.
    new_indexes: Vec<LayerIndexRow>,
}

impl IndexedImage {
    fn unsupported(state: IndexState) -> IndexedImage {
        IndexedImage {
            state,
            layers: Vec::new(),
            report: None,
            new_indexes: Vec::new(),
        }
    }
}

/// The finished state of an image with `report`.
fn index_state(report: &IndexReport) -> IndexState {
    let known_os = report
        .distribution
        .as_ref()
        .is_some_and(|d| d.osv_ecosystem().is_some());
    let language_packages = report
        .packages
        .iter()
        .any(|p| p.kind.language_ecosystem().is_some());
    if !known_os && !language_packages {
        let os = report
            .distribution
            .as_ref()
            .map(|d| d.id.clone())
            .unwrap_or_else(|| "none found".to_string());
        return IndexState::Unsupported(format!("operating system {os}"));
    }
    match report.problems.first() {
        None => IndexState::Done,
        Some(problem) => IndexState::Partial(format!(
            "{} problem(s), the first: {}",
            report.problems.len(),
            problem.detail
        )),
    }
}

/// The stored advisories as the matcher asks for them.
struct StoredAdvisories<'a> {
    meta: &'a dyn berth_meta::MetaStore,
}

#[async_trait::async_trait]
impl AdvisorySource for StoredAdvisories<'_> {
    async fn advisories_for(&self, keys: &[PackageKey]) -> Result<Vec<Arc<Advisory>>, SourceError> {
        let keys: Vec<String> = keys
            .iter()
            .map(|key| package_key(&key.ecosystem, &key.name))
            .collect();
        let bodies = self
            .meta
            .advisories_for_packages(&keys)
            .await
            .map_err(|error| SourceError(error.to_string()))?;
        bodies
            .iter()
            .map(|body| {
                serde_json::from_str::<Advisory>(body)
                    .map(Arc::new)
                    .map_err(|error| SourceError(format!("a stored advisory: {error}")))
            })
            .collect()
    }

    async fn data_version(&self) -> Result<String, SourceError> {
        let data = self
            .meta
            .advisory_data()
            .await
            .map_err(|error| SourceError(error.to_string()))?;
        Ok(data.generation.to_string())
    }
}

/// The row an advisory is stored as.
pub fn advisory_row(advisory: &Advisory) -> Result<AdvisoryRow, RegistryError> {
    let mut packages: Vec<String> = advisory
        .keys()
        .map(|key| package_key(&key.ecosystem, &key.name))
        .collect();
    packages.sort();
    packages.dedup();
    let modified_ns = i64::try_from(advisory.modified.unix_timestamp_nanos()).map_err(|_| {
        RegistryError::InvalidParameter(format!("{}: modified is out of range", advisory.id))
    })?;
    Ok(AdvisoryRow {
        id: advisory.id.clone(),
        modified_ns,
        aliases: advisory.aliases.clone(),
        packages,
        body: serde_json::to_string(advisory)
            .map_err(|error| RegistryError::InvalidParameter(error.to_string()))?,
    })
}

/// Advisories stored per transaction by [`Registry::import_advisories`]:
/// large enough that an import of hundreds of thousands takes few
/// commits, small enough that one transaction stays short.
const ADVISORIES_PER_TRANSACTION: usize = 500;

/// Images whose verdict one import checks at most.
pub const MAX_IMAGES_CHECKED: usize = 10_000;
/// Images looked up, and told of, per query.
pub const IMAGES_PER_PAGE: usize = 500;
/// Times a batch is computed again when another import changed its
/// advisories before it committed.
const MAX_BATCH_ATTEMPTS: usize = 5;
/// Advisory ids one `vulnerabilities.changed` event names at most.
const MAX_ADVISORIES_TOLD: usize = 50;

/// What an import found to tell: the images whose findings changed, with
/// the advisories that changed them.
#[derive(Default)]
struct VerdictChanges {
    images: std::collections::BTreeMap<Digest, std::collections::BTreeSet<String>>,
    checked: usize,
    unchecked: usize,
    /// Images' stored indexes rebuilt by earlier batches of the import, so
    /// an image many batches touch is rebuilt once (up to
    /// [`REPORTS_KEPT`]; emptied when full).
    reports: std::collections::HashMap<Digest, Option<Arc<IndexReport>>>,
}

/// Rebuilt image indexes one import keeps at most.
const REPORTS_KEPT: usize = 256;

/// The ids of `batch` the import changed: added, replaced by a newer
/// record, or withdrawn while stored. `rows` are the batch's stored rows,
/// for their `modified` as the store compares it; `stored` the stored
/// versions (id, modified) from before the import.
fn changed_ids(
    batch: &[Advisory],
    rows: &[AdvisoryRow],
    stored: &[(String, i64, String)],
) -> Vec<String> {
    let stored: std::collections::HashMap<&str, i64> = stored
        .iter()
        .map(|(id, modified, _)| (id.as_str(), *modified))
        .collect();
    let modified: std::collections::HashMap<&str, i64> = rows
        .iter()
        .map(|row| (row.id.as_str(), row.modified_ns))
        .collect();
    batch
        .iter()
        .filter(|advisory| {
            let id = advisory.id.as_str();
            match (stored.get(id), modified.get(id)) {
                // Withdrawn: removed if it was stored.
                (Some(_), None) => true,
                (None, None) => false,
                (None, Some(_)) => true,
                (Some(old), Some(new)) => new > old,
            }
        })
        .map(|advisory| advisory.id.clone())
        .collect()
}

/// The advisories `changed` of `batch` as they were (`stored`: id,
/// modified, body from before the import) and as they are: added ones only
/// after, withdrawn ones only before, replaced ones both.
fn changed_advisories(
    batch: &[Advisory],
    changed: &[String],
    stored: &[(String, i64, String)],
) -> (Vec<Arc<Advisory>>, Vec<Arc<Advisory>>) {
    // A stored body that no longer reads cannot have findings.
    let before = stored
        .iter()
        .filter_map(|(_, _, body)| serde_json::from_str::<Advisory>(body).ok())
        .map(Arc::new)
        .collect();
    let changed: std::collections::HashSet<&str> = changed.iter().map(String::as_str).collect();
    let after = batch
        .iter()
        .filter(|advisory| changed.contains(advisory.id.as_str()) && advisory.withdrawn.is_none())
        .map(|advisory| Arc::new(advisory.clone()))
        .collect();
    (before, after)
}

impl Registry {
    /// Queues each image `digest` of `repository` in `pushed` for indexing
    /// (an index: each of its platform images), unless it is queued or
    /// indexed already; with `again`, indexed images are queued again.
    /// Returns how many images were queued. A manifest deleted since is
    /// skipped. The images are queued in one transaction, so a batch of
    /// pushes costs one commit, not one each.
    pub async fn queue_scans(
        &self,
        pushed: &[(RepoName, Digest)],
        again: bool,
    ) -> Result<usize, RegistryError> {
        let meta = self.meta();
        let mut images: Vec<(RepoName, Digest)> = Vec::new();
        for (repository, digest) in pushed {
            let Some(record) = meta.manifest_by_digest(repository, digest).await? else {
                continue;
            };
            let Ok(parsed) = ParsedManifest::parse(&record.payload, Some(&record.media_type))
            else {
                continue;
            };
            if parsed.kind.is_index() {
                images.extend(
                    parsed
                        .manifests
                        .iter()
                        .filter(|child| {
                            ManifestKind::from_media_type(&child.media_type)
                                .is_some_and(|kind| !kind.is_index())
                                && !is_attestation(child)
                        })
                        .map(|child| (repository.clone(), child.digest.clone())),
                );
            } else if parsed
                .config
                .as_ref()
                .is_some_and(|config| IMAGE_CONFIG_TYPES.contains(&config.media_type.as_str()))
            {
                images.push((repository.clone(), digest.clone()));
            }
        }
        let queued = meta.enqueue_scans(&images, self.now(), again).await?;
        let mut assessed = std::collections::HashSet::new();
        for ((repository, image), queued) in images.iter().zip(&queued) {
            if *queued || !assessed.insert((repository, image)) {
                continue;
            }
            if meta
                .image_index(image)
                .await?
                .is_some_and(|row| row.state.is_finished())
            {
                // Indexed already (pushed to another repository first): its
                // stored index is assessed for this repository now, since
                // no worker will take it up for it.
                self.record_findings(repository, image).await?;
            }
        }
        Ok(queued.iter().filter(|queued| **queued).count())
    }

    /// Stores advisories (newer ones replace older ones of the same id;
    /// withdrawn ones are removed), in batches; returns what changed.
    ///
    /// Each batch tells of the verdicts it changes, in its own
    /// transaction: the indexed images with a package an added, updated or
    /// withdrawn advisory names are matched against that advisory as it
    /// was and as it is, from their stored index (never their layers), and
    /// each image whose findings differ gets one `vulnerabilities.changed`
    /// event per repository holding it, committed with the batch. The
    /// verdicts are computed from the stored versions the batch replaces;
    /// if another import changed them before the batch commits, the batch
    /// is computed again ([`MAX_BATCH_ATTEMPTS`] times at most). At most
    /// [`MAX_IMAGES_CHECKED`] images are checked per call (paged,
    /// [`IMAGES_PER_PAGE`] at a time); past that the rest are logged, not
    /// told.
    pub async fn import_advisories(
        &self,
        actor: &Actor,
        advisories: &[Advisory],
    ) -> Result<ImportCounts, RegistryError> {
        self.import_advisories_with_progress(actor, advisories, &|_| {})
            .await
    }

    /// [`Registry::import_advisories`], calling `progress` with the number
    /// of records of each batch once it is stored (for a progress bar).
    pub async fn import_advisories_with_progress(
        &self,
        actor: &Actor,
        advisories: &[Advisory],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<ImportCounts, RegistryError> {
        let mut total = ImportCounts::default();
        let mut told = VerdictChanges::default();
        for batch in advisories.chunks(ADVISORIES_PER_TRANSACTION) {
            let mut rows = Vec::new();
            let mut withdrawn = Vec::new();
            for advisory in batch {
                if advisory.withdrawn.is_some() {
                    withdrawn.push(advisory.id.clone());
                } else {
                    rows.push(advisory_row(advisory)?);
                }
            }
            let counts = self
                .import_batch(actor, batch, &rows, &withdrawn, &mut told)
                .await?;
            total.added += counts.added;
            total.updated += counts.updated;
            total.unchanged += counts.unchanged;
            total.removed += counts.removed;
            progress(batch.len());
        }
        if told.unchecked > 0 {
            tracing::warn!(
                unchecked = told.unchecked,
                checked = told.checked,
                "advisories changed for more images than one import checks; the rest were not told of it"
            );
        }
        Ok(total)
    }

    /// Stores one batch with the verdict changes it makes, computed from
    /// the stored versions it replaces and checked against them when it
    /// commits.
    async fn import_batch(
        &self,
        actor: &Actor,
        batch: &[Advisory],
        rows: &[AdvisoryRow],
        withdrawn: &[String],
        told: &mut VerdictChanges,
    ) -> Result<ImportCounts, RegistryError> {
        let ids: Vec<String> = batch.iter().map(|a| a.id.clone()).collect();
        for _ in 0..MAX_BATCH_ATTEMPTS {
            // Versions first: the bodies are read only of the records the
            // import changes (a refresh brings mostly unchanged ones).
            let versions = self.meta().advisories_by_id(&ids, false).await?;
            let seen: Vec<(String, i64)> = versions
                .iter()
                .map(|(id, modified, _)| (id.clone(), *modified))
                .collect();
            // What the import will change, as it is stored before it.
            let changed = changed_ids(batch, rows, &versions);
            let mut images = VerdictChanges {
                checked: told.checked,
                reports: std::mem::take(&mut told.reports),
                ..VerdictChanges::default()
            };
            if !changed.is_empty() {
                let stored = self.meta().advisories_by_id(&changed, true).await?;
                let (before, after) = changed_advisories(batch, &changed, &stored);
                self.find_verdict_changes(&before, &after, &mut images)
                    .await?;
            }
            let verdicts: Vec<(Digest, serde_json::Value)> = images
                .images
                .iter()
                .map(|(manifest, ids)| {
                    let detail = serde_json::json!({
                        "advisories": ids.iter().take(MAX_ADVISORIES_TOLD).collect::<Vec<_>>(),
                        "advisory_count": ids.len(),
                    });
                    (manifest.clone(), detail)
                })
                .collect();
            let imported = self
                .meta()
                .import_advisories(
                    &self.change(actor),
                    &AdvisoryBatch {
                        advisories: rows,
                        withdrawn,
                        seen: Some(&seen),
                        verdicts: &verdicts,
                    },
                )
                .await?;
            told.reports = images.reports;
            if let Some(counts) = imported {
                told.checked = images.checked;
                told.unchecked += images.unchecked;
                return Ok(counts);
            }
        }
        // Imports running side by side kept changing the same records: the
        // database could not take this batch now, and a later call can.
        Err(MetaError::Unavailable(format!(
            "other imports changed the same advisories {MAX_BATCH_ATTEMPTS} times while this one stored them"
        ))
        .into())
    }

    /// Adds to `told` the indexed images whose findings differ between the
    /// advisories `before` (as stored) and `after` (as imported).
    async fn find_verdict_changes(
        &self,
        before: &[Arc<Advisory>],
        after: &[Arc<Advisory>],
        told: &mut VerdictChanges,
    ) -> Result<(), RegistryError> {
        let mut keys: Vec<String> = before
            .iter()
            .chain(after)
            .flat_map(|advisory| advisory.keys())
            .map(|key| package_key(&key.ecosystem, &key.name))
            .collect();
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return Ok(());
        }
        let mut last: Option<Digest> = None;
        loop {
            let page = self
                .meta()
                .images_with_packages(&keys, last.as_ref(), IMAGES_PER_PAGE)
                .await?;
            let Some(end) = page.last().cloned() else {
                return Ok(());
            };
            for manifest in &page {
                if told.checked >= MAX_IMAGES_CHECKED {
                    told.unchecked += 1;
                    continue;
                }
                told.checked += 1;
                let report = match told.reports.get(manifest) {
                    Some(report) => report.clone(),
                    None => {
                        let report = self.indexed_report(manifest).await?.map(Arc::new);
                        if told.reports.len() >= REPORTS_KEPT {
                            told.reports.clear();
                        }
                        told.reports.insert(manifest.clone(), report.clone());
                        report
                    }
                };
                let Some(report) = report else {
                    continue;
                };
                let old = berth_scanner::assess_with(&report, before);
                let new = berth_scanner::assess_with(&report, after);
                let differing: Vec<&Finding> = old
                    .iter()
                    .filter(|f| !new.contains(f))
                    .chain(new.iter().filter(|f| !old.contains(f)))
                    .collect();
                if !differing.is_empty() {
                    told.images
                        .entry(manifest.clone())
                        .or_default()
                        .extend(differing.into_iter().map(|f| f.advisory.clone()));
                }
            }
            if page.len() < IMAGES_PER_PAGE {
                return Ok(());
            }
            last = Some(end);
        }
    }

    /// The stored index of an image whose indexing finished with packages
    /// (done or partial), rebuilt from its layers' stored indexes.
    async fn indexed_report(
        &self,
        manifest: &Digest,
    ) -> Result<Option<IndexReport>, RegistryError> {
        let Some(row) = self.meta().image_index(manifest).await? else {
            return Ok(None);
        };
        self.report_of(&row).await
    }

    /// The report of the image whose index row is `row`, rebuilt from its
    /// layers' stored indexes; `None` unless its indexing finished with
    /// packages (done or partial).
    async fn report_of(&self, row: &ImageIndexRow) -> Result<Option<IndexReport>, RegistryError> {
        if !matches!(row.state, IndexState::Done | IndexState::Partial(_)) {
            return Ok(None);
        }
        let meta = self.meta();
        let mut layers = Vec::new();
        for layer in &row.layers {
            let Some((_, body)) = meta.layer_index(layer).await? else {
                continue;
            };
            let index: LayerIndex = serde_json::from_str(&body)
                .map_err(|error| MetaError::Corrupt(format!("layer index {layer}: {error}")))?;
            layers.push(index);
        }
        Ok(Some(IndexReport::from_layers(&layers)))
    }

    /// The scan queue's depth and the seconds since advisories were last
    /// imported (`None` before the first import), for metrics.
    pub async fn advisor_state(&self) -> Result<(u64, Option<i64>), RegistryError> {
        let meta = self.meta();
        let depth = meta.scan_queue_depth().await?;
        let data = meta.advisory_data().await?;
        let now = self.now();
        Ok((depth, data.imported_at.map(|at| (now - at).max(0))))
    }

    /// The state of the stored advisory data.
    pub async fn advisory_data(&self) -> Result<berth_meta::AdvisoryData, RegistryError> {
        Ok(self.meta().advisory_data().await?)
    }

    /// What the advisor knows of image `manifest`.
    pub async fn image_index_state(
        &self,
        manifest: &Digest,
    ) -> Result<Option<ImageIndexRow>, RegistryError> {
        Ok(self.meta().image_index(manifest).await?)
    }

    /// Assesses the image `manifest` of `repository` (tagged `tag`, when
    /// asked by tag, for tag-scoped exemptions): its stored index against
    /// the stored advisories, minus the exemptions in force. With `all`,
    /// findings without a published fix count too.
    pub async fn assess_image(
        &self,
        repository: &RepoName,
        tag: Option<&Tag>,
        manifest: &Digest,
        all: bool,
    ) -> Result<ImageAssessment, RegistryError> {
        let Some(row) = self.meta().image_index(manifest).await? else {
            return Ok(unassessed(manifest, ScanStatus::NotScanned));
        };
        let report = self.report_of(&row).await?;
        self.assess_indexed(repository, tag, manifest, &row.state, report, all)
            .await
    }

    /// Assesses the image `manifest` of `repository` as [`assess_image`]
    /// does, from its index `state` and, when that is finished, its
    /// `report`: the stored one, or the one its indexing has just stored.
    ///
    /// [`assess_image`]: Registry::assess_image
    async fn assess_indexed(
        &self,
        repository: &RepoName,
        tag: Option<&Tag>,
        manifest: &Digest,
        state: &IndexState,
        report: Option<IndexReport>,
        all: bool,
    ) -> Result<ImageAssessment, RegistryError> {
        let meta = self.meta();
        let partial = match state {
            IndexState::Queued | IndexState::Indexing => {
                return Ok(unassessed(manifest, ScanStatus::Scanning));
            }
            IndexState::Unsupported(reason) => {
                return Ok(unassessed(
                    manifest,
                    ScanStatus::UnsupportedOs(reason.clone()),
                ));
            }
            IndexState::Done => None,
            IndexState::Partial(reason) => Some(reason.clone()),
        };
        // Both callers pass the report of a finished state; an image
        // without one has no packages to match.
        let report = report.unwrap_or_else(|| IndexReport::from_layers(&[]));
        let mut assessment = unassessed(manifest, ScanStatus::NotScanned);
        let findings = berth_scanner::assess(&report, &StoredAdvisories { meta })
            .await
            .map_err(|error| MetaError::Corrupt(error.0))?;
        let exemptions = meta.list_exemptions(None).await?;
        let now = self.now();
        let applying: Vec<&ExemptionRow> = exemptions
            .iter()
            .filter(|e| e.is_active(now) && scope_covers(&e.scope, repository, tag, manifest))
            .collect();
        for finding in findings {
            let exempt = applying
                .iter()
                .any(|e| e.advisory == finding.advisory || finding.aliases.contains(&e.advisory));
            if exempt {
                assessment.exempted.push(finding);
            } else if all || finding.is_fixable() {
                assessment.findings.push(finding);
            } else {
                assessment.unfixed += 1;
            }
        }
        assessment.findings.sort_by(|a, b| {
            severity_of(b)
                .cmp(&severity_of(a))
                .then_with(|| a.package.name.cmp(&b.package.name))
                .then_with(|| a.advisory.cmp(&b.advisory))
        });
        assessment.status = ScanStatus::Indexed { partial };
        assessment.report = Some(report);
        Ok(assessment)
    }
}

/// The assessment of `manifest` before (or without) any finding: its
/// `status` only.
fn unassessed(manifest: &Digest, status: ScanStatus) -> ImageAssessment {
    ImageAssessment {
        manifest: manifest.clone(),
        platform: None,
        status,
        report: None,
        findings: Vec::new(),
        exempted: Vec::new(),
        unfixed: 0,
    }
}

/// The severity level of a finding (unknown when the advisory gives none).
pub fn severity_of(finding: &Finding) -> berth_scanner::SeverityLevel {
    finding
        .severity
        .as_ref()
        .map(|s| s.level)
        .unwrap_or_default()
}

/// Whether an exemption scope covers an image: `*`, its namespace, its
/// repository, the tag it was asked by, or its digest.
pub fn scope_covers(
    scope: &str,
    repository: &RepoName,
    tag: Option<&Tag>,
    manifest: &Digest,
) -> bool {
    if scope == "*" || scope == repository.namespace() || scope == repository.as_str() {
        return true;
    }
    if let Some((repo, reference)) = scope.rsplit_once('@') {
        return repo == repository.as_str() && reference == manifest.as_str();
    }
    if let (Some((repo, name)), Some(tag)) = (scope.rsplit_once(':'), tag) {
        return repo == repository.as_str() && name == tag.as_str();
    }
    false
}

/// Whether an index entry is an attestation manifest (BuildKit lists
/// provenance and SBOM attestations with the platform `unknown/unknown`).
fn is_attestation(child: &berth_oci::manifest::Descriptor) -> bool {
    child
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("vnd.docker.reference.type"))
        || child
            .platform
            .as_ref()
            .and_then(|p| p.get("os"))
            .is_some_and(|os| os == "unknown")
}

/// What a namespace's pull policy says about pulling an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullVerdict {
    /// No policy, policy off, or nothing at or above its threshold.
    Allow,
    /// The policy warns: the pull goes ahead, the message says why it
    /// would not under `block`.
    Warn(String),
    /// The policy blocks the pull, for the reason the message gives (the
    /// worst findings and how to exempt them).
    Block(String),
}

/// The severities a policy threshold may name, lowest first.
pub const POLICY_SEVERITIES: [&str; 5] = ["any", "low", "medium", "high", "critical"];

/// The lowest severity level a policy threshold counts.
pub fn threshold_level(severity: &str) -> Option<berth_scanner::SeverityLevel> {
    use berth_scanner::SeverityLevel;
    Some(match severity {
        "any" => SeverityLevel::Unknown,
        "low" => SeverityLevel::Low,
        "medium" => SeverityLevel::Medium,
        "high" => SeverityLevel::High,
        "critical" => SeverityLevel::Critical,
        _ => return None,
    })
}

/// Findings a refusal names at most.
const FINDINGS_NAMED: usize = 3;

impl Registry {
    /// What the pull policy of `repository`'s namespace says about pulling
    /// `record` (asked for by `tag`, if by tag). Reads the policy, and only
    /// when one is on, the image's stored state and the advisories; never a
    /// layer. An index is judged by its platform images together.
    pub async fn pull_verdict(
        &self,
        repository: &RepoName,
        tag: Option<&Tag>,
        record: &berth_meta::ManifestRecord,
    ) -> Result<PullVerdict, RegistryError> {
        let Some(policy) = self.pull_policy(repository.namespace()).await? else {
            return Ok(PullVerdict::Allow);
        };
        if policy.mode == berth_meta::PolicyMode::Off {
            return Ok(PullVerdict::Allow);
        }
        let threshold = threshold_level(&policy.severity)
            .ok_or_else(|| MetaError::Corrupt(format!("policy severity {:?}", policy.severity)))?;
        let images: Vec<Digest> =
            match ParsedManifest::parse(&record.payload, Some(&record.media_type)) {
                Ok(parsed) if parsed.kind.is_index() => parsed
                    .manifests
                    .iter()
                    .filter(|child| !is_attestation(child))
                    .map(|child| child.digest.clone())
                    .collect(),
                _ => vec![record.digest.clone()],
            };
        let mut counted: Vec<Finding> = Vec::new();
        let mut unscanned = false;
        for image in &images {
            let assessment = self.assess_image(repository, tag, image, false).await?;
            match assessment.status {
                ScanStatus::NotScanned | ScanStatus::Scanning => unscanned = true,
                ScanStatus::UnsupportedOs(_) | ScanStatus::Indexed { .. } => {}
            }
            counted.extend(
                assessment
                    .findings
                    .into_iter()
                    .filter(|f| severity_of(f) >= threshold),
            );
        }
        let name = match tag {
            Some(tag) => format!("{repository}:{tag}"),
            None => format!("{repository}@{}", record.digest),
        };
        let message = if !counted.is_empty() {
            counted.sort_by(|a, b| {
                severity_of(b)
                    .cmp(&severity_of(a))
                    .then_with(|| a.advisory.cmp(&b.advisory))
            });
            counted.dedup_by(|a, b| a.advisory == b.advisory && a.package == b.package);
            let worst: Vec<String> = counted
                .iter()
                .take(FINDINGS_NAMED)
                .map(|f| {
                    let id = f
                        .aliases
                        .iter()
                        .find(|a| a.starts_with("CVE-"))
                        .unwrap_or(&f.advisory);
                    format!(
                        "{id} ({}) in {} {}, fixed in {}",
                        severity_of(f).as_str(),
                        f.package.name,
                        f.installed_version,
                        f.fixed_version.as_deref().unwrap_or("no release yet"),
                    )
                })
                .collect();
            let first = counted[0]
                .aliases
                .iter()
                .find(|a| a.starts_with("CVE-"))
                .unwrap_or(&counted[0].advisory);
            format!(
                "{name} has {} fixable vulnerabilit{} at or above severity {} \
                 (namespace policy {}): {}; update the image, or exempt a finding with \
                 `berth exemption add --scope {repository} --issue {first} --reason TEXT`",
                counted.len(),
                if counted.len() == 1 { "y" } else { "ies" },
                policy.severity,
                policy.mode.as_str(),
                worst.join("; "),
            )
        } else if unscanned && policy.block_unscanned {
            format!(
                "{name} has not been scanned for vulnerabilities yet and the namespace \
                 policy blocks unscanned images; try again once it is indexed"
            )
        } else {
            return Ok(PullVerdict::Allow);
        };
        Ok(match policy.mode {
            berth_meta::PolicyMode::Block => PullVerdict::Block(message),
            _ => PullVerdict::Warn(message),
        })
    }
}

/// The scanner's types the layers above show (findings, severities, the
/// index report), so they need not depend on the scanner themselves.
pub use berth_scanner::{
    Advisory, Finding as ScanFinding, IndexReport as ScanReport, Indexer, Limits, SeverityLevel,
};

/// SBOM formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbomFormat {
    /// CycloneDX 1.6 JSON.
    CycloneDx,
    /// SPDX 2.3 JSON.
    Spdx,
}

impl SbomFormat {
    pub fn media_type(self) -> &'static str {
        match self {
            SbomFormat::CycloneDx => berth_scanner::sbom::CYCLONEDX_MEDIA_TYPE,
            SbomFormat::Spdx => berth_scanner::sbom::SPDX_MEDIA_TYPE,
        }
    }
}

/// The SBOM of an indexed image's `report`, naming the image `name` at
/// `digest`.
pub fn sbom_document(
    report: &IndexReport,
    name: &str,
    digest: &Digest,
    format: SbomFormat,
) -> serde_json::Value {
    let subject = berth_scanner::sbom::Subject {
        name: name.to_string(),
        digest: Some(digest.to_string()),
    };
    let now = time::OffsetDateTime::now_utc();
    let version = env!("CARGO_PKG_VERSION");
    match format {
        SbomFormat::CycloneDx => berth_scanner::sbom::cyclonedx(report, &subject, now, version),
        SbomFormat::Spdx => berth_scanner::sbom::spdx(report, &subject, now, version),
    }
}

/// The platform an index entry names (`linux/amd64`, `linux/arm64/v8`).
fn platform_of(child: &berth_oci::manifest::Descriptor) -> Option<String> {
    let platform = child.platform.as_ref()?;
    let field = |name: &str| platform.get(name).and_then(|v| v.as_str());
    let mut text = format!("{}/{}", field("os")?, field("architecture")?);
    if let Some(variant) = field("variant") {
        text.push('/');
        text.push_str(variant);
    }
    Some(text)
}

impl Registry {
    /// Assesses the image `reference` of `repository` names: one
    /// assessment, or one per platform image for an index. Returns the
    /// manifest's digest with them.
    pub async fn assess_reference(
        &self,
        repository: &RepoName,
        reference: &berth_oci::Reference,
        all: bool,
    ) -> Result<(Digest, Vec<ImageAssessment>), RegistryError> {
        let record = self.get_manifest(repository, reference).await?;
        let tag = match reference {
            berth_oci::Reference::Tag(tag) => Some(tag),
            berth_oci::Reference::Digest(_) => None,
        };
        let mut assessments = Vec::new();
        match ParsedManifest::parse(&record.payload, Some(&record.media_type)) {
            Ok(parsed) if parsed.kind.is_index() => {
                for child in parsed.manifests.iter().filter(|c| !is_attestation(c)) {
                    let mut assessment = self
                        .assess_image(repository, tag, &child.digest, all)
                        .await?;
                    assessment.platform = platform_of(child);
                    assessments.push(assessment);
                }
            }
            _ => {
                assessments.push(
                    self.assess_image(repository, tag, &record.digest, all)
                        .await?,
                );
            }
        }
        Ok((record.digest.clone(), assessments))
    }
}

/// The metadata rows the layers above read and write through the registry.
pub use berth_meta::{AdvisoryData, ExemptionRow, PolicyMode, PolicyRow};

/// Parses one OSV record (JSON).
pub fn parse_osv(bytes: &[u8]) -> Result<Advisory, String> {
    berth_scanner::osv::parse_json(bytes).map_err(|error| error.to_string())
}

/// Pull policies by namespace, each with when it was read. At most
/// [`POLICY_CACHE_ENTRIES`]; emptied when full (namespaces are few).
pub(crate) type PolicyCache =
    std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Option<PolicyRow>)>>;

const POLICY_CACHE_ENTRIES: usize = 4096;

impl Registry {
    /// The pull policy of `namespace` as a manifest GET sees it: read from
    /// the database at most once per `cache_ttl` per namespace, so that
    /// pulls of a namespace without a policy, the common case, cost no
    /// query. A policy set through this node applies at once; one set
    /// through another node within `cache_ttl` (1 s by default).
    async fn pull_policy(&self, namespace: &str) -> Result<Option<PolicyRow>, RegistryError> {
        let ttl = self.inner.config.manifest_cache_ttl;
        if let Ok(cache) = self.inner.policy_cache.lock() {
            if let Some((read, policy)) = cache.get(namespace) {
                if read.elapsed() < ttl {
                    return Ok(policy.clone());
                }
            }
        }
        let read = std::time::Instant::now();
        let policy = self.meta().policy(namespace).await?;
        if !ttl.is_zero() {
            if let Ok(mut cache) = self.inner.policy_cache.lock() {
                if cache.len() >= POLICY_CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(namespace.to_string(), (read, policy.clone()));
            }
        }
        Ok(policy)
    }

    /// The pull policy of `namespace`, if one was set.
    pub async fn vulnerability_policy(
        &self,
        namespace: &str,
    ) -> Result<Option<PolicyRow>, RegistryError> {
        Ok(self.meta().policy(namespace).await?)
    }

    /// Every namespace's pull policy, by namespace.
    pub async fn vulnerability_policies(&self) -> Result<Vec<PolicyRow>, RegistryError> {
        Ok(self.meta().list_policies().await?)
    }

    /// Sets a namespace's pull policy (`NamespaceUnknown` if it does not exist).
    pub async fn set_vulnerability_policy(
        &self,
        actor: &Actor,
        policy: &PolicyRow,
    ) -> Result<(), RegistryError> {
        let result = self.meta().set_policy(&self.change(actor), policy).await;
        if let Ok(mut cache) = self.inner.policy_cache.lock() {
            cache.remove(&policy.namespace);
        }
        match result {
            Err(MetaError::NotFound) => Err(RegistryError::NamespaceUnknown),
            other => Ok(other?),
        }
    }

    /// Assesses image `manifest` of `repository` and stores its finding
    /// counts by severity (fixable, not exempted: what a pull policy
    /// counts), for the overview; forgets them when the image is gone or
    /// not assessed (yet). Negligible findings count as low.
    pub async fn record_findings(
        &self,
        repository: &RepoName,
        manifest: &Digest,
    ) -> Result<(), RegistryError> {
        self.record_findings_of(repository, manifest, None).await
    }

    /// [`record_findings`](Registry::record_findings), with the image's
    /// index state and report when its indexing has just stored them
    /// (`indexed`), which spares reading them back: the image's index row
    /// and each layer's index, parsed again.
    async fn record_findings_of(
        &self,
        repository: &RepoName,
        manifest: &Digest,
        indexed: Option<(&IndexState, Option<IndexReport>)>,
    ) -> Result<(), RegistryError> {
        let meta = self.meta();
        // Read before the assessment: an import in between leaves the row
        // of the older generation, so it is refreshed again.
        let generation = meta.advisory_data().await?.generation;
        let stored = meta.manifest_by_digest(repository, manifest).await?;
        let assessment = match (stored, indexed) {
            (None, _) => None,
            (Some(_), None) => Some(self.assess_image(repository, None, manifest, false).await?),
            (Some(_), Some((state, report))) => Some(
                self.assess_indexed(repository, None, manifest, state, report, false)
                    .await?,
            ),
        };
        let Some(assessment) =
            assessment.filter(|a| matches!(a.status, ScanStatus::Indexed { .. }))
        else {
            meta.forget_image_findings(repository, manifest).await?;
            return Ok(());
        };
        let mut counts = SeverityCounts::default();
        for finding in &assessment.findings {
            let count = match severity_of(finding) {
                SeverityLevel::Critical => &mut counts.critical,
                SeverityLevel::High => &mut counts.high,
                SeverityLevel::Medium => &mut counts.medium,
                SeverityLevel::Low | SeverityLevel::Negligible => &mut counts.low,
                SeverityLevel::Unknown => &mut counts.unknown,
            };
            *count += 1;
        }
        meta.record_image_findings(&ImageFindings {
            repository: repository.clone(),
            manifest: manifest.clone(),
            generation,
            counts,
            assessed_at: self.now(),
        })
        .await?;
        Ok(())
    }

    /// Assesses again up to `limit` images whose stored finding counts are
    /// stale (another advisory generation, or an exemption changed);
    /// returns how many.
    pub async fn refresh_findings(&self, limit: usize) -> Result<usize, RegistryError> {
        let generation = self.meta().advisory_data().await?.generation;
        let stale = self.meta().stale_image_findings(generation, limit).await?;
        for (repository, manifest) in &stale {
            self.record_findings(repository, manifest).await?;
        }
        Ok(stale.len())
    }

    /// Per namespace of `namespaces` (every one with `None`): its stored,
    /// untrashed images with findings and their findings by severity, as
    /// last assessed. One index range over the images with findings.
    pub async fn findings_by_namespace(
        &self,
        namespaces: Option<&[String]>,
    ) -> Result<Vec<NamespaceFindings>, RegistryError> {
        Ok(self.meta().findings_by_namespace(namespaces).await?)
    }

    /// Every exemption, expired ones too.
    pub async fn exemptions(&self) -> Result<Vec<ExemptionRow>, RegistryError> {
        Ok(self.meta().list_exemptions(None).await?)
    }

    /// A page of at most `limit` exemptions after `after` (scope,
    /// advisory), expired ones too; with `namespace`, those that apply to
    /// its images (see `AdvisorStore::exemption_page`).
    pub async fn exemption_page(
        &self,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<ExemptionRow>, RegistryError> {
        Ok(self.meta().exemption_page(namespace, after, limit).await?)
    }

    /// Adds (or replaces) an exemption.
    pub async fn set_exemption(
        &self,
        actor: &Actor,
        exemption: &ExemptionRow,
    ) -> Result<(), RegistryError> {
        self.meta()
            .set_exemption(&self.change(actor), exemption)
            .await?;
        self.findings_changed(&exemption.scope).await;
        Ok(())
    }

    /// Marks the finding counts an exemption's scope covers stale. A
    /// failure costs only freshness (the exemption itself is made), so it
    /// is logged, not returned.
    async fn findings_changed(&self, scope: &str) {
        let namespace = berth_meta::advisor::scope_namespace(scope);
        if let Err(error) = self.meta().invalidate_image_findings(namespace).await {
            tracing::warn!(%error, scope, "marking finding counts stale failed");
        }
    }

    /// Removes an exemption; whether there was one.
    pub async fn remove_exemption(
        &self,
        actor: &Actor,
        scope: &str,
        advisory: &str,
    ) -> Result<bool, RegistryError> {
        let removed = self
            .meta()
            .remove_exemption(&self.change(actor), scope, advisory)
            .await?;
        if removed {
            self.findings_changed(scope).await;
        }
        Ok(removed)
    }
}
