//! The pull-through cache: namespaces that mirror an upstream registry.
//!
//! A proxy namespace (`[[upstream]]` in the configuration) is read-only to
//! clients; what they pull is fetched from its [`Upstream`] on a miss,
//! verified, and stored through the same domain paths as a push
//! ([`Registry::upload_monolithic`], the manifest put), so pull statistics,
//! garbage collection, events and the console see cached content as any
//! other.
//!
//! - Manifests by tag ask upstream (a HEAD) at most once per `tag_ttl` per
//!   node; by digest, never again once stored. A manifest is stored once
//!   every blob (or, for an index, every child manifest) it references is
//!   stored: what it lists is fetched in the background right away, for an
//!   index every platform, so that it pulls while upstream is down.
//! - Blobs are fetched once per digest however many clients ask at once (a
//!   [`Flight`]), and once per namespace: a blob another of its
//!   repositories holds is linked from there. Every client reads the bytes
//!   as they arrive, but the last ones are held back until the digest is
//!   verified, so a corrupt or cut fetch ends every reader's stream with an
//!   error and caches nothing. On a store that keeps uploads in local files
//!   the readers read the upload's file as it is written (a server sends it
//!   with `sendfile`, see [`berth_storage::Growing`]), whatever the blob's
//!   size and whenever they come. Otherwise a blob of at most
//!   [`MAX_SHARED_BLOB`] is shared from memory, a piece kept only until the
//!   readers seated when it arrived have read it; a client that comes later,
//!   or asks for a larger blob, reads it from storage once stored.
//! - A HEAD of a blob not stored is answered from upstream's HEAD (its
//!   size; nothing fetched, nothing stored), or from a fetch in flight.
//! - When upstream fails (down, timeout, 429, 5xx), stored content is
//!   served marked [`Freshness::Stale`]; with nothing stored, the failure is
//!   the client's answer (`TOOMANYREQUESTS` with the upstream's
//!   `Retry-After`, or 502).
//!
//! - One upstream may also answer at the registry's root ([`ProxySettings::root`]):
//!   a pull of a name whose first component is no namespace of this
//!   registry is served from that proxy namespace (`library/alpine` as
//!   `hub/library/alpine`), because docker's `registry-mirrors` sends a
//!   mirror the upstream's own names and accepts no path prefix. Local
//!   namespaces always win; see [`Registry::root_mirror`].
//!
//! **Architecture Invariant:** nothing from upstream becomes visible
//! unverified: manifests are hashed before they are served or stored, blobs
//! become visible only through `finish_upload`, which verifies the digest.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_meta::{Actor, ManifestRecord};
use berth_oci::manifest::MAX_MANIFEST_SIZE;
use berth_oci::{Digest, ParsedManifest, Reference, RepoName, Tag};
use berth_storage::{BlobBody, ByteStream, Growing};
use bytes::Bytes;
use futures::StreamExt;

use crate::{Registry, RegistryError};

/// A manifest as an upstream served it.
#[derive(Clone, Debug)]
pub struct UpstreamManifest {
    /// The `Content-Type` it came with.
    pub media_type: String,
    /// The bytes, at most [`MAX_MANIFEST_SIZE`]; not yet verified.
    pub payload: Vec<u8>,
}

/// A blob as an upstream serves it.
pub struct UpstreamBlob {
    /// The length the upstream announced, if it did.
    pub len: Option<u64>,
    /// The bytes, not yet verified; the stream ends with an error when the
    /// transfer breaks.
    pub stream: ByteStream,
}

/// Why an upstream did not answer with what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream does not have it (404).
    #[error("the upstream registry does not have it")]
    NotFound,
    /// The upstream refused for a while (429), with its `Retry-After` in
    /// seconds if it gave one.
    #[error("the upstream registry asks to slow down (429)")]
    TooManyRequests { retry_after: Option<u64> },
    /// The upstream refused our credentials (401 or 403 after
    /// authenticating).
    #[error("the upstream registry refused access: {0}")]
    Denied(String),
    /// Not reachable, too slow, a 5xx, or an answer that breaks the
    /// protocol (too large, no digest): words for the log and the client,
    /// without credentials.
    #[error("the upstream registry failed: {0}")]
    Failed(String),
}

/// An upstream registry, as the pull-through cache uses it.
///
/// Contract: every call is bounded in time (connect and read timeouts) and
/// in memory (a manifest larger than [`MAX_MANIFEST_SIZE`] is `Failed`);
/// credentials are the implementation's business and never appear in
/// errors. Repository names are the upstream's own (after the `library/`
/// rule). Nothing returned is trusted: the caller verifies digests.
#[async_trait::async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// The digest `reference` points at upstream (a HEAD request), or
    /// `None` when the upstream answered without `Docker-Content-Digest`.
    async fn manifest_digest(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Digest>, UpstreamError>;

    /// The manifest `reference` names, asked for in every manifest media
    /// type Berth stores.
    async fn manifest(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<UpstreamManifest, UpstreamError>;

    /// The blob's size, asked with a HEAD: no body is fetched. `None` when
    /// the upstream has the blob but does not say its size there (it
    /// redirects, or sends no `Content-Length`), for the caller to fetch it
    /// instead.
    async fn blob_size(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, UpstreamError>;

    /// The blob's bytes (redirects followed, as S3-backed registries answer
    /// blob GETs with one).
    async fn blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<UpstreamBlob, UpstreamError>;
}

/// One configured upstream.
#[derive(Clone)]
pub struct ProxySettings {
    /// The namespace that mirrors it.
    pub namespace: String,
    /// How long a tag's digest is believed before upstream is asked again.
    pub tag_ttl: Duration,
    /// Docker Hub's rule: a one-component name means `library/NAME`.
    pub docker_hub: bool,
    /// The most bytes the namespace may hold (its storage usage, as
    /// quotas count it); beyond it, least-recently-pulled images are
    /// evicted ([`Registry::evict_proxy_namespaces`]). `None`: unlimited.
    pub max_size: Option<u64>,
    /// Whether pulls of names outside every namespace of this registry are
    /// served from this one (docker's `registry-mirrors`); at most one
    /// upstream says so.
    pub root: bool,
    /// The upstream itself.
    pub upstream: Arc<dyn Upstream>,
}

/// Whether a manifest served through a proxy namespace was confirmed with
/// upstream, or served from the cache because upstream failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Upstream could not be asked; the stored copy may be out of date. The
    /// server says so in a `Warning: 110` header.
    Stale,
}

/// Tags whose last upstream check is remembered at most, per namespace; a
/// full table is emptied (the cost: one more HEAD per tag).
const TAG_CHECKS: usize = 65536;

/// Namespaces remembered as existing for the root mirror's decision at
/// most; a full table is emptied (the cost: one lookup each again).
const KNOWN_NAMESPACES: usize = 4096;

/// How long a namespace is believed to exist without asking again. Only
/// existence is remembered, never absence: a namespace created on another
/// node is seen at once, so local content is never answered from upstream;
/// one deleted elsewhere keeps its names off the mirror for this long.
const KNOWN_NAMESPACE_TTL: Duration = Duration::from_secs(60);

/// Repositories holding a blob that a proxy namespace looks at to link it
/// from, rather than fetch it again.
const NAMESPACE_HOLDERS: usize = 16;

/// How deep an index of indexes is cached.
const MAX_INDEX_DEPTH: usize = 2;

/// The largest blob whose fetch its readers read from memory when the store
/// keeps no upload files (a larger or unannounced one is read back from
/// storage once stored): a reader that stalls keeps at most this much in
/// memory.
const MAX_SHARED_BLOB: u64 = 256 * 1024 * 1024;

/// How many bytes a fetch into an upload file receives between wake-ups
/// of its readers, who then read what the file holds. Waking them for
/// every piece (tens of kilobytes) cost more than the reading.
const FILE_READERS_STEP: u64 = 1024 * 1024;

/// The job lease of the eviction pass: one node at a time evicts.
const EVICTION_JOB: &str = "proxy-eviction";

/// How long, beyond twice the GC grace period, evicted bytes count as freed
/// before the usage shows it: the default GC interval.
const EVICTION_SETTLE: Duration = Duration::from_secs(3600);

/// Images of a proxy namespace one eviction pass considers at most, and
/// the page in which they are read.
const EVICTION_SCAN: usize = 100_000;
const EVICTION_PAGE: usize = 500;

/// The upstream repository `repository` (in a proxy namespace) stands for:
/// the name without its namespace, and on Docker Hub `library/NAME` for a
/// one-component name. `None` for the bare namespace, which names nothing
/// upstream.
pub fn upstream_repository(repository: &RepoName, docker_hub: bool) -> Option<RepoName> {
    let (_, rest) = repository.as_str().split_once('/')?;
    let name = if docker_hub && !rest.contains('/') {
        format!("library/{rest}")
    } else {
        rest.to_string()
    };
    RepoName::parse(&name).ok()
}

/// The state of a proxy namespace on this node.
pub(crate) struct Proxy {
    settings: ProxySettings,
    /// When each tag was last confirmed with upstream.
    tag_checks: Mutex<HashMap<(RepoName, Tag), Instant>>,
    /// Blob fetches in progress, by digest.
    flights: Mutex<HashMap<Digest, Arc<Flight>>>,
    /// Manifests whose blobs and children are being fetched in the
    /// background to store them, so that concurrent pulls start one such
    /// task each.
    storing: Mutex<std::collections::HashSet<(RepoName, Digest)>>,
    /// Bytes this node evicted, and when: freed, but still counted in the
    /// usage until garbage collection reclaims them.
    evicted: Mutex<Vec<(Instant, u64)>>,
}

/// Every proxy namespace of this registry.
#[derive(Default)]
pub(crate) struct Proxies {
    by_namespace: HashMap<String, Arc<Proxy>>,
    /// The namespace answering at the root, if one does.
    root: Option<String>,
    /// Namespaces seen to exist, and when (for the root mirror).
    known: Mutex<HashMap<String, Instant>>,
}

impl Proxies {
    pub(crate) fn new(settings: Vec<ProxySettings>) -> Proxies {
        Proxies {
            root: settings
                .iter()
                .find(|settings| settings.root)
                .map(|settings| settings.namespace.clone()),
            known: Mutex::default(),
            by_namespace: settings
                .into_iter()
                .map(|settings| {
                    (
                        settings.namespace.clone(),
                        Arc::new(Proxy {
                            settings,
                            tag_checks: Mutex::default(),
                            flights: Mutex::default(),
                            evicted: Mutex::default(),
                            storing: Mutex::default(),
                        }),
                    )
                })
                .collect(),
        }
    }
}

/// One blob fetch from upstream, shared by every reader that asks while it
/// runs.
struct Flight {
    state: Mutex<FlightState>,
    /// Bumped whenever `state` changes.
    changed: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct FlightState {
    /// Whether the upstream answered (then `len` and `shared` are known).
    started: bool,
    len: Option<u64>,
    /// Whether readers get the bytes as they arrive (from `file`, or from
    /// `chunks` when the blob is small enough) or from storage once stored.
    shared: bool,
    /// The upload's file, when the store keeps one: readers read it as it
    /// is written, and `chunks` stays empty.
    file: Option<Arc<File>>,
    /// The pieces some reader has yet to read: piece `dropped + i` of the
    /// blob is `chunks[i]`. A piece every reader has read is dropped at
    /// once rather than kept for readers who might come later (those read
    /// from storage once it is stored): keeping a whole blob in memory
    /// cost fresh pages for every piece received, a fifth of a cold
    /// pull's CPU (docs/performance.md).
    chunks: VecDeque<Bytes>,
    /// Pieces dropped from the front of `chunks`.
    dropped: usize,
    /// The next piece of each reader of `chunks`, by reader number.
    readers: HashMap<u64, usize>,
    /// The number the next reader gets.
    next_reader: u64,
    /// `Some(Ok)` once verified and stored, `Some(Err)` when it failed.
    outcome: Option<Result<(), FlightFailure>>,
}

impl FlightState {
    /// Drops the pieces every reader has read (all of them without
    /// readers).
    fn trim(&mut self) {
        let keep_from = self
            .readers
            .values()
            .copied()
            .min()
            .unwrap_or(self.dropped + self.chunks.len());
        while self.dropped < keep_from && self.chunks.pop_front().is_some() {
            self.dropped += 1;
        }
    }
}

/// A reader's place in a [`Flight`]'s pieces; dropping it (the client went
/// away, or read everything) lets the flight drop what it alone held.
struct FlightSeat {
    flight: Arc<Flight>,
    reader: u64,
}

impl Drop for FlightSeat {
    fn drop(&mut self) {
        let mut state = self.flight.state.lock().expect("flight lock");
        state.readers.remove(&self.reader);
        state.trim();
    }
}

#[derive(Clone, Debug)]
enum FlightFailure {
    /// Before the first byte: the upstream's answer.
    Upstream(UpstreamError),
    /// Afterwards: the transfer broke or the bytes were wrong.
    Broken(String),
}

impl Flight {
    fn update(&self, change: impl FnOnce(&mut FlightState)) {
        change(&mut self.state.lock().expect("flight lock"));
        self.changed.send_modify(|n| *n += 1);
    }
}

impl FlightFailure {
    fn message(&self) -> String {
        match self {
            FlightFailure::Upstream(error) => error.to_string(),
            FlightFailure::Broken(message) => message.clone(),
        }
    }
}

/// How far a fetch's upload file may be read: as far as it is written,
/// except its last byte, which waits for the digest's verification.
struct FlightFile {
    flight: Arc<Flight>,
    file: Arc<File>,
    len: u64,
}

impl std::fmt::Debug for FlightFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightFile")
            .field("len", &self.len)
            .finish()
    }
}

impl Growing for FlightFile {
    fn readable(&self, have: u64) -> futures::future::BoxFuture<'static, std::io::Result<u64>> {
        let (flight, file, len) = (self.flight.clone(), self.file.clone(), self.len);
        Box::pin(async move {
            // Subscribed before looking, so a change in between is seen.
            let mut changes = flight.changed.subscribe();
            loop {
                let outcome = flight.state.lock().expect("flight lock").outcome.clone();
                match outcome {
                    Some(Ok(())) => return Ok(len),
                    Some(Err(failure)) => return Err(std::io::Error::other(failure.message())),
                    None => {
                        // The bytes below the file's length are written
                        // (the upload only appends); a failed write that
                        // cuts it back fails the fetch, which ends every
                        // reader with an error.
                        let written = file.metadata()?.len().min(len.saturating_sub(1));
                        if written > have {
                            return Ok(written);
                        }
                    }
                }
                if changes.changed().await.is_err() {
                    return Err(std::io::Error::other("the fetch stopped"));
                }
            }
        })
    }
}

/// Takes `flight` out of `proxy`'s table, unless a newer fetch of the
/// digest took its place.
fn unlist(proxy: &Proxy, digest: &Digest, flight: &Arc<Flight>) {
    let mut flights = proxy.flights.lock().expect("flights");
    if flights
        .get(digest)
        .is_some_and(|listed| Arc::ptr_eq(listed, flight))
    {
        flights.remove(digest);
    }
}

/// Held by a fetch's stream into storage: dropped before the stream
/// ended, it takes the fetch out of its proxy's table.
struct Listed {
    proxy: Arc<Proxy>,
    digest: Digest,
    flight: Arc<Flight>,
    ended: bool,
}

impl Listed {
    /// The stream ended: the fetch stays listed until its outcome.
    fn end(&mut self) {
        self.ended = true;
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        if !self.ended {
            unlist(&self.proxy, &self.digest, &self.flight);
        }
    }
}

/// The actor cached content is stored as.
fn proxy_actor() -> Actor {
    Actor::system("proxy")
}

fn upstream_error(error: UpstreamError, not_found: RegistryError) -> RegistryError {
    match error {
        UpstreamError::NotFound => not_found,
        UpstreamError::TooManyRequests { retry_after } => {
            RegistryError::UpstreamTooManyRequests { retry_after }
        }
        UpstreamError::Denied(message) | UpstreamError::Failed(message) => {
            RegistryError::UpstreamFailed(message)
        }
    }
}

impl Registry {
    /// Makes the namespaces of `settings` proxy namespaces. Called once,
    /// before serving; a second call is ignored (and logged).
    pub fn attach_upstreams(&self, settings: Vec<ProxySettings>) {
        if self.inner.proxies.set(Proxies::new(settings)).is_err() {
            tracing::error!("upstreams attached twice; the second set is ignored");
        }
    }

    fn proxy(&self, namespace: &str) -> Option<&Arc<Proxy>> {
        self.inner.proxies.get()?.by_namespace.get(namespace)
    }

    /// The name a pull of `repository` is served under when it goes to the
    /// root mirror: `ROOT/REPOSITORY`, when an upstream answers at the root
    /// and `repository`'s first component is neither a namespace of this
    /// registry nor a proxy namespace. `None` (serve `repository` as it is)
    /// otherwise, and when the prefixed name would be too long.
    ///
    /// Costs nothing without a root upstream; with one, a lookup of the
    /// namespace, remembered for a minute when it exists.
    pub async fn root_mirror(
        &self,
        repository: &RepoName,
    ) -> Result<Option<RepoName>, RegistryError> {
        let Some(proxies) = self.inner.proxies.get() else {
            return Ok(None);
        };
        let Some(root) = &proxies.root else {
            return Ok(None);
        };
        let namespace = repository.namespace();
        if proxies.by_namespace.contains_key(namespace) {
            return Ok(None);
        }
        let now = Instant::now();
        let known = proxies
            .known
            .lock()
            .expect("known namespaces lock")
            .get(namespace)
            .is_some_and(|seen| now.duration_since(*seen) < KNOWN_NAMESPACE_TTL);
        if known {
            return Ok(None);
        }
        if self.meta().get_namespace(namespace).await?.is_some() {
            let mut known = proxies.known.lock().expect("known namespaces lock");
            if known.len() >= KNOWN_NAMESPACES {
                known.clear();
            }
            known.insert(namespace.to_string(), now);
            return Ok(None);
        }
        Ok(RepoName::parse(&format!("{root}/{repository}")).ok())
    }

    /// Whether `namespace` mirrors an upstream (and so refuses pushes).
    pub fn is_proxy_namespace(&self, namespace: &str) -> bool {
        self.proxy(namespace).is_some()
    }

    /// Refuses a change to a proxy namespace's content by a client.
    pub fn refuse_proxy_write(&self, repository: &RepoName) -> Result<(), RegistryError> {
        if self.is_proxy_namespace(repository.namespace()) {
            return Err(RegistryError::ProxyReadOnly(
                repository.namespace().to_string(),
            ));
        }
        Ok(())
    }

    /// The manifest a client pulls: [`Registry::get_manifest`], and in a
    /// proxy namespace, through the upstream as the module documentation
    /// says.
    pub async fn pull_manifest(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<(Arc<ManifestRecord>, Freshness), RegistryError> {
        let Some(proxy) = self.proxy(repository.namespace()).cloned() else {
            return Ok((
                self.get_manifest(repository, reference).await?,
                Freshness::Fresh,
            ));
        };
        let Some(upstream_name) = upstream_repository(repository, proxy.settings.docker_hub) else {
            return Err(RegistryError::ManifestUnknown);
        };
        let local = match self.get_manifest(repository, reference).await {
            Ok(record) => Some(record),
            Err(RegistryError::ManifestUnknown) => None,
            Err(e) => return Err(e),
        };
        let upstream = proxy.settings.upstream.clone();
        let tag = match reference {
            // Content by digest never changes: once stored, it is the answer.
            Reference::Digest(_) => {
                if let Some(local) = local {
                    return Ok((local, Freshness::Fresh));
                }
                None
            }
            Reference::Tag(tag) => Some(tag),
        };
        if let (Some(tag), Some(local)) = (tag, &local) {
            let key = (repository.clone(), tag.clone());
            let checked = proxy
                .tag_checks
                .lock()
                .expect("tag checks")
                .get(&key)
                .copied();
            if checked.is_some_and(|at| at.elapsed() < proxy.settings.tag_ttl) {
                return Ok((local.clone(), Freshness::Fresh));
            }
            match upstream.manifest_digest(&upstream_name, reference).await {
                Ok(Some(digest)) => {
                    self.note_tag_checked(&proxy, key);
                    if digest == local.digest {
                        return Ok((local.clone(), Freshness::Fresh));
                    }
                    // The tag moved upstream: to a manifest stored already,
                    // or to one to fetch.
                    let moved = Reference::Digest(digest);
                    if let Ok(stored) = self.get_manifest(repository, &moved).await {
                        self.store_upstream_manifest(
                            repository,
                            Some(tag),
                            &stored.digest,
                            &UpstreamManifest {
                                media_type: stored.media_type.clone(),
                                payload: stored.payload.clone(),
                            },
                        )
                        .await;
                        return Ok((stored, Freshness::Fresh));
                    }
                }
                Ok(None) => {}
                Err(UpstreamError::NotFound) => return Err(RegistryError::ManifestUnknown),
                Err(error) => {
                    tracing::warn!(%repository, %tag, %error, "upstream unavailable; serving the cached manifest");
                    return Ok((local.clone(), Freshness::Stale));
                }
            }
        }
        let fetched = match upstream.manifest(&upstream_name, reference).await {
            Ok(fetched) => fetched,
            Err(error) => {
                if let (Some(local), false) = (&local, error == UpstreamError::NotFound) {
                    return Ok((local.clone(), Freshness::Stale));
                }
                return Err(upstream_error(error, RegistryError::ManifestUnknown));
            }
        };
        if fetched.payload.len() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::UpstreamFailed(format!(
                "the upstream's manifest is larger than the {MAX_MANIFEST_SIZE} bytes allowed"
            )));
        }
        let digest = match reference {
            Reference::Digest(claimed) => {
                let computed = claimed.algorithm().digest_of(&fetched.payload);
                if &computed != claimed {
                    return Err(RegistryError::UpstreamFailed(format!(
                        "the upstream's manifest hashes to {computed}, not {claimed}"
                    )));
                }
                computed
            }
            Reference::Tag(_) => berth_oci::Algorithm::Sha256.digest_of(&fetched.payload),
        };
        let parsed = ParsedManifest::parse(&fetched.payload, Some(fetched.media_type.as_str()))
            .map_err(|e| RegistryError::UpstreamFailed(format!("the upstream's manifest: {e}")))?;
        if let Some(tag) = tag {
            self.note_tag_checked(&proxy, (repository.clone(), tag.clone()));
        }
        let record = Arc::new(ManifestRecord {
            digest: digest.clone(),
            media_type: parsed.media_type.to_string(),
            artifact_type: parsed.artifact_type.clone(),
            subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
            annotations: None,
            payload: fetched.payload.clone(),
        });
        let stored = self
            .store_upstream_manifest(repository, tag, &digest, &fetched)
            .await;
        if !stored {
            // What it lists is fetched now (joining any fetch a client
            // starts), then it is stored; by one task however many clients
            // pull it meanwhile.
            let key = (repository.clone(), digest.clone());
            if proxy.storing.lock().expect("storing").insert(key.clone()) {
                let registry = self.clone();
                let repository = repository.clone();
                let tag = tag.cloned();
                tokio::spawn(async move {
                    let cached = registry
                        .cache_whole(&proxy, &repository, tag.as_ref(), &digest, &fetched, 0)
                        .await;
                    if let Err(error) = cached {
                        tracing::warn!(%repository, %digest, %error, "cannot cache a proxied image");
                    }
                    proxy.storing.lock().expect("storing").remove(&key);
                });
            }
        }
        Ok((record, Freshness::Fresh))
    }

    fn note_tag_checked(&self, proxy: &Proxy, key: (RepoName, Tag)) {
        let mut checks = proxy.tag_checks.lock().expect("tag checks");
        if checks.len() >= TAG_CHECKS {
            checks.clear();
        }
        checks.insert(key, Instant::now());
    }

    /// Stores a verified upstream manifest (tagged `tag`) the way a push
    /// does. Returns whether it is stored; a manifest whose blobs or
    /// children are missing is not, and anything else is logged.
    async fn store_upstream_manifest(
        &self,
        repository: &RepoName,
        tag: Option<&Tag>,
        digest: &Digest,
        manifest: &UpstreamManifest,
    ) -> bool {
        let tags: Vec<Tag> = tag.into_iter().cloned().collect();
        let result = self
            .put_manifest(
                &proxy_actor(),
                repository,
                &Reference::Digest(digest.clone()),
                &tags,
                Some(manifest.media_type.as_str()),
                manifest.payload.clone(),
            )
            .await;
        match result {
            Ok(_) => true,
            Err(RegistryError::ManifestBlobUnknown(_)) => false,
            Err(error) => {
                tracing::warn!(%repository, %digest, %error, "cannot store a proxied manifest");
                false
            }
        }
    }

    /// Fetches what a verified upstream manifest lists and is not stored
    /// (an image's blobs; an index's child manifests, verified, each with
    /// its own blobs), then stores it tagged `tag`. An index is cached with
    /// every platform it lists, so that it pulls while upstream is down.
    async fn cache_whole(
        &self,
        proxy: &Arc<Proxy>,
        repository: &RepoName,
        tag: Option<&Tag>,
        digest: &Digest,
        manifest: &UpstreamManifest,
        depth: usize,
    ) -> Result<(), RegistryError> {
        let parsed = ParsedManifest::parse(&manifest.payload, Some(manifest.media_type.as_str()))
            .map_err(|e| {
            RegistryError::UpstreamFailed(format!("the upstream's manifest: {e}"))
        })?;
        for blob in parsed.required_blobs() {
            self.fetch_blob_through(proxy, repository, &blob.digest)
                .await?;
        }
        // An index of indexes is followed one level down, no further.
        if depth < MAX_INDEX_DEPTH {
            let upstream_name = upstream_repository(repository, proxy.settings.docker_hub)
                .ok_or(RegistryError::ManifestUnknown)?;
            for child in &parsed.manifests {
                let reference = Reference::Digest(child.digest.clone());
                if self.get_manifest(repository, &reference).await.is_ok() {
                    continue;
                }
                let fetched = proxy
                    .settings
                    .upstream
                    .manifest(&upstream_name, &reference)
                    .await
                    .map_err(|e| upstream_error(e, RegistryError::ManifestUnknown))?;
                let computed = child.digest.algorithm().digest_of(&fetched.payload);
                if computed != child.digest {
                    return Err(RegistryError::UpstreamFailed(format!(
                        "the upstream's manifest hashes to {computed}, not {}",
                        child.digest
                    )));
                }
                Box::pin(self.cache_whole(
                    proxy,
                    repository,
                    None,
                    &child.digest,
                    &fetched,
                    depth + 1,
                ))
                .await?;
            }
        }
        self.store_upstream_manifest(repository, tag, digest, manifest)
            .await;
        Ok(())
    }

    /// A blob GET or HEAD a client makes in a proxy namespace for a blob
    /// the repository does not hold: `None` outside proxy namespaces and
    /// for stored blobs (served the usual way); otherwise the size and, for
    /// a GET, the bytes as they arrive from upstream. A HEAD fetches
    /// nothing when upstream's HEAD tells the size (or a fetch in flight
    /// knows it): a client checking for a blob should not make the cache
    /// pull it whole.
    pub async fn pull_blob_through(
        &self,
        repository: &RepoName,
        digest: &Digest,
        head: bool,
    ) -> Result<Option<(u64, Option<BlobBody>)>, RegistryError> {
        let Some(proxy) = self.proxy(repository.namespace()).cloned() else {
            return Ok(None);
        };
        match self.blob_size(repository, digest).await {
            Ok(_) => return Ok(None),
            Err(RegistryError::BlobUnknown) => {}
            Err(e) => return Err(e),
        }
        if self.link_from_namespace(repository, digest).await? {
            return Ok(None);
        }
        if head {
            if let Some(size) = self.upstream_blob_size(&proxy, repository, digest).await? {
                return Ok(Some((size, None)));
            }
        }
        let (flight, seat) = self.join_flight(&proxy, repository, digest, !head);
        let mut changes = flight.changed.subscribe();
        // Until the upstream answers.
        let (len, shared, file) = loop {
            {
                let state = flight.state.lock().expect("flight lock");
                if let Some(Err(FlightFailure::Upstream(error))) = &state.outcome {
                    return Err(upstream_error(error.clone(), RegistryError::BlobUnknown));
                }
                if let Some(Err(FlightFailure::Broken(message))) = &state.outcome {
                    return Err(RegistryError::UpstreamFailed(message.clone()));
                }
                if state.started {
                    break (state.len, state.shared, state.file.clone());
                }
            }
            if changes.changed().await.is_err() {
                return Err(RegistryError::UpstreamFailed("the fetch stopped".into()));
            }
        };
        if shared && head {
            return Ok(Some((len.expect("shared fetches have a length"), None)));
        }
        if shared && (file.is_some() || seat.is_some()) {
            let len = len.expect("shared fetches have a length");
            self.admit_traffic(repository.namespace())?;
            self.count_traffic(repository.namespace(), len);
            let body = match (file, seat) {
                (Some(file), _) => {
                    let growing = Arc::new(FlightFile {
                        flight: flight.clone(),
                        file: file.clone(),
                        len,
                    });
                    berth_storage::fs::growing_body(file, len, growing)
                }
                (None, Some(seat)) => BlobBody::streamed(len, flight_reader(seat, changes)),
                (None, None) => unreachable!("checked above"),
            };
            return Ok(Some((len, Some(body))));
        }
        // Too large to share in memory (or of unknown length), or joined
        // after the first pieces were dropped, or a HEAD: served from
        // storage once stored.
        loop {
            if let Some(outcome) = flight.state.lock().expect("flight lock").outcome.clone() {
                if let Err(FlightFailure::Upstream(error)) = outcome {
                    return Err(upstream_error(error, RegistryError::BlobUnknown));
                }
                if let Err(FlightFailure::Broken(message)) = outcome {
                    return Err(RegistryError::UpstreamFailed(message));
                }
                break;
            }
            if changes.changed().await.is_err() {
                break;
            }
        }
        // The fetch may have been another repository's of the namespace.
        if self.blob_size(repository, digest).await.is_err() {
            self.link_from_namespace(repository, digest).await?;
        }
        let size = self.blob_size(repository, digest).await?;
        let body = if head {
            None
        } else {
            Some(self.serve_blob(repository, digest, None).await?)
        };
        Ok(Some((size, body)))
    }

    /// The size of a blob not stored, without fetching it: from a fetch in
    /// flight that knows it, else from upstream's HEAD, whose errors are
    /// translated as a GET's are. `None` when neither says (the caller
    /// fetches it).
    async fn upstream_blob_size(
        &self,
        proxy: &Proxy,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let in_flight = proxy.flights.lock().expect("flights").get(digest).cloned();
        if let Some(flight) = in_flight {
            let state = flight.state.lock().expect("flight lock");
            if state.started && state.outcome.is_none() {
                if let Some(len) = state.len {
                    return Ok(Some(len));
                }
            }
        }
        let upstream_name = upstream_repository(repository, proxy.settings.docker_hub)
            .ok_or(RegistryError::BlobUnknown)?;
        proxy
            .settings
            .upstream
            .blob_size(&upstream_name, digest)
            .await
            .map_err(|error| upstream_error(error, RegistryError::BlobUnknown))
    }

    /// Fetches a blob through `proxy` into `repository` and waits until it
    /// is stored (or joins the fetch already running).
    async fn fetch_blob_through(
        &self,
        proxy: &Arc<Proxy>,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        if self.blob_size(repository, digest).await.is_ok()
            || self.link_from_namespace(repository, digest).await?
        {
            return Ok(());
        }
        let (flight, _) = self.join_flight(proxy, repository, digest, false);
        let mut changes = flight.changed.subscribe();
        loop {
            let outcome = flight.state.lock().expect("flight lock").outcome.clone();
            if let Some(outcome) = outcome {
                return match outcome {
                    // The fetch may have been another repository's of the
                    // namespace: then the blob is linked from there.
                    Ok(()) => {
                        if self.blob_size(repository, digest).await.is_err() {
                            self.link_from_namespace(repository, digest).await?;
                        }
                        Ok(())
                    }
                    Err(FlightFailure::Upstream(error)) => {
                        Err(upstream_error(error, RegistryError::BlobUnknown))
                    }
                    Err(FlightFailure::Broken(message)) => {
                        Err(RegistryError::UpstreamFailed(message))
                    }
                };
            }
            if changes.changed().await.is_err() {
                return Err(RegistryError::UpstreamFailed("the fetch stopped".into()));
            }
        }
    }

    /// Links `digest` into `repository` from another repository of its
    /// proxy namespace that holds it (a mount), so that a layer shared by
    /// images of one upstream is fetched once, and a fetch that another
    /// repository's pull started serves this one too. Whether it did.
    ///
    /// Sharing within the namespace reveals nothing: whoever may pull one
    /// of its repositories may pull them all.
    async fn link_from_namespace(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let namespace = repository.namespace();
        // Holders come by name, so those of the namespace come right after
        // its bare name (`hub` < `hub/…`).
        let Ok(start) = RepoName::parse(namespace) else {
            return Ok(false);
        };
        let holders = self
            .blob_holders(digest, Some(&start), NAMESPACE_HOLDERS)
            .await?;
        for holder in holders
            .iter()
            .filter(|holder| holder.namespace() == namespace && *holder != repository)
        {
            if self
                .mount_blob(&proxy_actor(), repository, holder, digest)
                .await?
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The fetch of `digest` in progress, or a new one. With `read`, also
    /// a seat among its readers, unless pieces were dropped already (the
    /// reader then reads the blob from storage once it is stored).
    fn join_flight(
        &self,
        proxy: &Arc<Proxy>,
        repository: &RepoName,
        digest: &Digest,
        read: bool,
    ) -> (Arc<Flight>, Option<FlightSeat>) {
        let seat = |flight: &Arc<Flight>| {
            let mut state = flight.state.lock().expect("flight lock");
            if !read || state.dropped > 0 {
                return None;
            }
            let reader = state.next_reader;
            state.next_reader += 1;
            state.readers.insert(reader, 0);
            Some(FlightSeat {
                flight: flight.clone(),
                reader,
            })
        };
        let mut flights = proxy.flights.lock().expect("flights");
        if let Some(flight) = flights.get(digest) {
            return (flight.clone(), seat(flight));
        }
        let flight = Arc::new(Flight {
            state: Mutex::default(),
            changed: tokio::sync::watch::channel(0).0,
        });
        // Seated before the fetch starts, so that the first reader of a
        // cold blob misses no piece.
        let first_seat = seat(&flight);
        flights.insert(digest.clone(), flight.clone());
        drop(flights);
        // The fetch runs on its own, so a reader that goes away does not
        // cancel it for the others.
        let registry = self.clone();
        let proxy = proxy.clone();
        let repository = repository.clone();
        let digest = digest.clone();
        let running = flight.clone();
        tokio::spawn(async move {
            let outcome = registry
                .run_flight(&proxy, &repository, &digest, &running)
                .await;
            if let Err(FlightFailure::Broken(message)) = &outcome {
                tracing::warn!(%repository, %digest, message, "a blob fetch from upstream failed; nothing cached");
            }
            // Out of the table before the outcome is published, so a
            // reader told of a failure and asking again starts a new fetch.
            unlist(&proxy, &digest, &running);
            running.update(|state| {
                state.started = true;
                state.outcome = Some(outcome);
            });
        });
        (flight, first_seat)
    }

    async fn run_flight(
        &self,
        proxy: &Arc<Proxy>,
        repository: &RepoName,
        digest: &Digest,
        flight: &Arc<Flight>,
    ) -> Result<(), FlightFailure> {
        let upstream_name = upstream_repository(repository, proxy.settings.docker_hub)
            .ok_or(FlightFailure::Upstream(UpstreamError::NotFound))?;
        let blob = proxy
            .settings
            .upstream
            .blob(&upstream_name, digest)
            .await
            .map_err(FlightFailure::Upstream)?;
        let actor = proxy_actor();
        let upload = self
            .start_upload(&actor, repository)
            .await
            .map_err(|error| FlightFailure::Broken(error.to_string()))?;
        let file = match self.blobs().open_upload_file(&upload.id).await {
            Ok(file) => file.map(Arc::new),
            Err(error) => {
                // Only sharing is lost: readers read from storage later.
                tracing::debug!(%error, "the upload's file cannot be opened for its readers");
                None
            }
        };
        let from_file = file.is_some();
        let shared = blob
            .len
            .is_some_and(|len| from_file || len <= MAX_SHARED_BLOB);
        flight.update(|state| {
            state.started = true;
            state.len = blob.len;
            state.shared = shared;
            state.file = file;
        });
        let announced = blob.len;
        let sharing = flight.clone();
        let mut received: u64 = 0;
        // Every piece goes to storage and, for a shared fetch, to the
        // readers; more bytes than announced is a broken transfer.
        let mut pieces = blob.stream.map(move |piece| {
            let piece = piece?;
            received += piece.len() as u64;
            if announced.is_some_and(|len| received > len) {
                return Err(std::io::Error::other(
                    "more bytes than the upstream announced",
                ));
            }
            if from_file {
                // Readers read the file; wake them once per step received.
                let before = received - piece.len() as u64;
                if before / FILE_READERS_STEP != received / FILE_READERS_STEP {
                    sharing.changed.send_modify(|n| *n += 1);
                }
            } else if shared {
                let copy = piece.clone();
                sharing.update(|state| {
                    state.chunks.push_back(copy);
                    state.trim();
                });
            }
            Ok(piece)
        });
        // A write that fails cuts the upload's file back, and readers of
        // the file fail at that moment, while the upload is still being
        // cancelled. The fetch leaves the table first, when the store
        // drops its stream unfinished (after a broken piece, or its own
        // failure), so that a reader asking again starts a new fetch
        // rather than joining this one. (A write failing after the last
        // piece, at the final sync, still leaves that window.)
        let mut listed = Listed {
            proxy: proxy.clone(),
            digest: digest.clone(),
            flight: flight.clone(),
            ended: false,
        };
        let tee: ByteStream = Box::pin(futures::stream::poll_fn(move |cx| {
            let next = pieces.poll_next_unpin(cx);
            if let std::task::Poll::Ready(None) = next {
                listed.end();
            }
            next
        }));
        match self
            .finish_monolithic(&actor, repository, &upload.id, digest, tee)
            .await
        {
            Ok(size) if announced.is_none_or(|len| len == size) => Ok(()),
            Ok(size) => Err(FlightFailure::Broken(format!(
                "the upstream announced {} bytes and sent {size}",
                announced.unwrap_or_default()
            ))),
            Err(error) => Err(FlightFailure::Broken(error.to_string())),
        }
    }
}

impl Registry {
    /// Evicts, in every proxy namespace over its `max_size`, the
    /// least-recently-pulled images (never pulled: oldest pushed first)
    /// until their sizes add up to the excess. Eviction is an ordinary
    /// final deletion (with referrers, as `system:proxy-eviction`, past the
    /// trash, whose images would still count): garbage collection reclaims
    /// the bytes after its grace period, by the protocol that keeps it from
    /// racing a pull in flight. Usage drops only then, so the bytes a pass
    /// evicted are counted as freed by later passes on this node for
    /// [`EVICTION_SETTLE`] past twice the grace period. An image's size
    /// counts blobs other images share, so a pass may free less than it
    /// meant; a later pass evicts more. Returns how many images went.
    pub async fn evict_proxy_namespaces(&self) -> Result<usize, RegistryError> {
        let Some(proxies) = self.inner.proxies.get() else {
            return Ok(0);
        };
        let mut evicted = 0;
        for proxy in proxies.by_namespace.values() {
            let Some(limit) = proxy.settings.max_size else {
                continue;
            };
            let namespace = &proxy.settings.namespace;
            let usage = match self.namespace_usage(namespace).await {
                Ok(usage) => usage.storage_bytes,
                Err(RegistryError::NamespaceUnknown) => continue,
                Err(error) => return Err(error),
            };
            let settle = self.config().gc_grace_period * 2 + EVICTION_SETTLE;
            let pending: u64 = {
                let mut pending = proxy.evicted.lock().expect("evicted bytes");
                pending.retain(|(at, _)| at.elapsed() < settle);
                pending.iter().map(|(_, bytes)| bytes).sum()
            };
            let usage = usage.saturating_sub(pending);
            if usage <= limit {
                continue;
            }
            let (images, bytes) = self.evict_from(namespace, usage - limit).await?;
            proxy
                .evicted
                .lock()
                .expect("evicted bytes")
                .push((Instant::now(), bytes));
            evicted += images;
        }
        Ok(evicted)
    }

    /// Evicts from `namespace` until `excess` bytes are freed (as image
    /// sizes count); returns the images and bytes evicted.
    async fn evict_from(
        &self,
        namespace: &str,
        excess: u64,
    ) -> Result<(usize, u64), RegistryError> {
        // (last pulled or pushed, repository, digest, bytes)
        let mut images: Vec<(i64, RepoName, Digest, u64)> = Vec::new();
        let mut after_repository: Option<RepoName> = None;
        'repositories: loop {
            let repositories = self
                .namespace_repositories(namespace, after_repository.as_ref(), EVICTION_PAGE)
                .await?;
            let Some(last) = repositories.last() else {
                break;
            };
            after_repository = Some(last.clone());
            for repository in repositories {
                let mut after: Option<berth_meta::ImageCursor> = None;
                loop {
                    let Some(page) = self
                        .meta()
                        .list_images(
                            &repository,
                            berth_meta::TaggedFilter::Any,
                            after.as_ref(),
                            EVICTION_PAGE,
                        )
                        .await?
                    else {
                        break;
                    };
                    let Some(last) = page.last() else {
                        break;
                    };
                    after = Some(berth_meta::ImageCursor {
                        pushed_at: last.pushed_at,
                        digest: last.digest.clone(),
                    });
                    let full = page.len() < EVICTION_PAGE;
                    // Referrers go with their subject.
                    for image in page.into_iter().filter(|image| image.subject.is_none()) {
                        images.push((
                            image.last_pulled_at.unwrap_or(image.pushed_at),
                            repository.clone(),
                            image.digest,
                            image.size + image.manifest_size,
                        ));
                        if images.len() >= EVICTION_SCAN {
                            break 'repositories;
                        }
                    }
                    if full {
                        break;
                    }
                }
            }
        }
        images.sort();
        let actor = Actor::system("proxy-eviction");
        let (mut freed, mut evicted) = (0u64, 0usize);
        for (_, repository, digest, bytes) in images {
            if freed >= excess {
                break;
            }
            self.inner.manifest_cache.invalidate(&repository);
            let deleted = self
                .meta()
                .delete_manifest(&self.change(&actor), &repository, &digest, true)
                .await;
            self.inner.manifest_cache.invalidate(&repository);
            match deleted {
                Ok(Some(_)) => {
                    freed += bytes;
                    evicted += 1;
                }
                // Gone meanwhile, or a child a live index lists (it goes
                // with the index).
                Ok(None) | Err(berth_meta::MetaError::ManifestReferenced(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        if evicted > 0 {
            self.settle().await;
            tracing::info!(
                namespace,
                evicted,
                freed,
                excess,
                "evicted least-recently-pulled images from a proxy namespace"
            );
        }
        Ok((evicted, freed))
    }

    /// Runs [`Registry::evict_proxy_namespaces`] every `interval` until
    /// `shutdown` fires, on one node at a time (a job lease).
    pub async fn run_proxy_eviction_schedule(
        &self,
        interval: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        self.every_interval_under_lease(
            EVICTION_JOB,
            "proxy eviction",
            interval,
            shutdown,
            || async {
                if let Err(error) = self.evict_proxy_namespaces().await {
                    tracing::warn!(%error, "proxy eviction failed");
                }
            },
        )
        .await
    }
}

/// A reader of a shared fetch: every piece as it arrives, except the last
/// one, which waits for the digest to be verified; a failed fetch ends the
/// stream with an error. Each piece read is let go of (the seat's place
/// moves on), so the flight keeps only what some reader has yet to read.
fn flight_reader(seat: FlightSeat, changes: tokio::sync::watch::Receiver<u64>) -> ByteStream {
    Box::pin(futures::stream::unfold(
        (seat, changes, 0usize),
        |(seat, mut changes, next)| async move {
            loop {
                let step = {
                    let mut state = seat.flight.state.lock().expect("flight lock");
                    // Pieces before `next` may be gone; `next` itself is
                    // kept for this reader.
                    let available = state.dropped + state.chunks.len();
                    let piece =
                        |state: &FlightState| state.chunks.get(next - state.dropped).cloned();
                    let step = match &state.outcome {
                        Some(Err(failure)) => Some(Err(std::io::Error::other(failure.message()))),
                        Some(Ok(())) if next < available => piece(&state).map(Ok),
                        Some(Ok(())) => None,
                        None if next + 1 < available => piece(&state).map(Ok),
                        None => None,
                    };
                    if let Some(Ok(_)) = step {
                        state.readers.insert(seat.reader, next + 1);
                        state.trim();
                    }
                    step
                };
                match step {
                    Some(Ok(piece)) => return Some((Ok(piece), (seat, changes, next + 1))),
                    // The error is the stream's last item.
                    Some(Err(error)) if next != usize::MAX => {
                        return Some((Err(error), (seat, changes, usize::MAX)))
                    }
                    Some(Err(_)) => return None,
                    None => {
                        if seat
                            .flight
                            .state
                            .lock()
                            .expect("flight lock")
                            .outcome
                            .is_some()
                        {
                            return None;
                        }
                        if changes.changed().await.is_err() {
                            return None;
                        }
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flight_keeps_only_the_pieces_some_reader_has_yet_to_read() {
        // (pieces received, pieces dropped before, readers' next pieces,
        // pieces dropped after)
        let cases: [(usize, usize, &[usize], usize); 6] = [
            (5, 0, &[], 5),
            (5, 0, &[0], 0),
            (5, 0, &[3, 1], 1),
            (5, 2, &[4, 2], 2),
            (5, 2, &[5], 5),
            (0, 0, &[0, 0], 0),
        ];
        for (received, dropped, readers, expected) in cases {
            let mut state = FlightState {
                chunks: (dropped..received)
                    .map(|i| Bytes::from(vec![i as u8]))
                    .collect(),
                dropped,
                readers: readers
                    .iter()
                    .copied()
                    .enumerate()
                    .map(|(i, next)| (i as u64, next))
                    .collect(),
                ..FlightState::default()
            };
            state.trim();
            assert_eq!(state.dropped, expected, "{received} {dropped} {readers:?}");
            assert_eq!(state.dropped + state.chunks.len(), received);
            // What is kept starts with the piece the slowest reader reads next.
            if let Some(first) = state.chunks.front() {
                assert_eq!(first[0] as usize, expected);
            }
        }
    }

    #[test]
    fn upstream_names_follow_docker_hubs_library_rule() {
        let cases = [
            ("hub/alpine", true, Some("library/alpine")),
            ("hub/bitnami/redis", true, Some("bitnami/redis")),
            ("cache/alpine", false, Some("alpine")),
            ("cache/team/app", false, Some("team/app")),
            ("hub", true, None),
            ("cache", false, None),
        ];
        for (name, docker_hub, expected) in cases {
            let repository = RepoName::parse(name).unwrap();
            assert_eq!(
                upstream_repository(&repository, docker_hub)
                    .as_ref()
                    .map(RepoName::as_str),
                expected,
                "{name}"
            );
        }
    }
}
