//! The pull-through cache in the domain, without HTTP: the upstream is
//! another registry behind a counting, fault-injecting [`Upstream`].

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_oci::{ByteRange, Digest, Reference, RepoName, UploadId};
use berth_registry::{BlobBody, Clock};
use berth_registry::{
    ByteStream, Freshness, ProxySettings, Registry, RegistryError, Upstream, UpstreamBlob,
    UpstreamError, UpstreamManifest,
};
use berth_storage::fs::FsBlobStore;
use berth_storage::{
    BlobStore, FileRegion, StorageError, StoredBlob, StoredUpload, UploadProgress,
};
use bytes::Bytes;
use futures::StreamExt;
use support::{by_digest, repo, tag, Harness};

/// A registry as an upstream, counting what it is asked.
#[derive(Default)]
struct FakeUpstream {
    registry: Mutex<Option<Registry>>,
    heads: AtomicUsize,
    gets: AtomicUsize,
    blob_gets: AtomicUsize,
    blob_heads: AtomicUsize,
    /// Every call fails with this while set.
    failure: Mutex<Option<UpstreamError>>,
    /// Blobs are served with a byte flipped while set.
    corrupt: Mutex<bool>,
    /// While set, a blob's answer is its first half, then, once this is
    /// notified, a broken connection.
    cut: Mutex<Option<Arc<tokio::sync::Notify>>>,
}

impl FakeUpstream {
    fn registry(&self) -> Registry {
        self.registry.lock().unwrap().clone().unwrap()
    }

    fn fail(&self) -> Result<(), UpstreamError> {
        match self.failure.lock().unwrap().clone() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

fn not_found(error: RegistryError) -> UpstreamError {
    match error {
        RegistryError::ManifestUnknown | RegistryError::BlobUnknown => UpstreamError::NotFound,
        other => UpstreamError::Failed(other.to_string()),
    }
}

#[async_trait::async_trait]
impl Upstream for FakeUpstream {
    async fn manifest_digest(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Digest>, UpstreamError> {
        self.heads.fetch_add(1, Ordering::SeqCst);
        self.fail()?;
        let record = self
            .registry()
            .get_manifest(repository, reference)
            .await
            .map_err(not_found)?;
        Ok(Some(record.digest.clone()))
    }

    async fn manifest(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<UpstreamManifest, UpstreamError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.fail()?;
        let record = self
            .registry()
            .get_manifest(repository, reference)
            .await
            .map_err(not_found)?;
        Ok(UpstreamManifest {
            media_type: record.media_type.clone(),
            payload: record.payload.clone(),
        })
    }

    async fn blob_size(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, UpstreamError> {
        self.blob_heads.fetch_add(1, Ordering::SeqCst);
        self.fail()?;
        let size = self
            .registry()
            .blob_size(repository, digest)
            .await
            .map_err(not_found)?;
        Ok(Some(size))
    }

    async fn blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<UpstreamBlob, UpstreamError> {
        self.blob_gets.fetch_add(1, Ordering::SeqCst);
        self.fail()?;
        let body = self
            .registry()
            .read_blob(repository, digest, None)
            .await
            .map_err(not_found)?;
        let cut = self.cut.lock().unwrap().clone();
        if let Some(release) = cut {
            let bytes = read_all(body.stream)
                .await
                .map_err(|error| UpstreamError::Failed(error.to_string()))?;
            let half = Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
            let stream: ByteStream = Box::pin(futures::stream::once(async { Ok(half) }).chain(
                futures::stream::once(async move {
                    release.notified().await;
                    Err(std::io::Error::other("the connection was cut"))
                }),
            ));
            return Ok(UpstreamBlob {
                len: Some(body.len),
                stream,
            });
        }
        let corrupt = *self.corrupt.lock().unwrap();
        let stream: ByteStream = Box::pin(body.stream.map(move |piece| {
            let piece = piece?;
            if !corrupt {
                return Ok(piece);
            }
            let mut bytes = piece.to_vec();
            bytes[0] ^= 0xff;
            Ok(Bytes::from(bytes))
        }));
        Ok(UpstreamBlob {
            len: Some(body.len),
            stream,
        })
    }
}

struct Setup {
    upstream: Harness,
    cache: Harness,
    fake: Arc<FakeUpstream>,
    image: support::Image,
}

/// An upstream holding `team/app:v1`, and a cache mirroring it in three
/// namespaces: `cache` (tags believed for an hour; it also answers at the
/// registry's root), `always` (tags checked
/// on every pull) and `small` (at most one byte).
async fn setup() -> Setup {
    setup_on(None).await
}

/// [`setup`], with a cache whose filesystem store is wrapped by `wrap`
/// (see [`Wrapped`]).
async fn setup_on(wrap: Option<fn(Arc<FsBlobStore>) -> Wrapped>) -> Setup {
    let upstream = Harness::new().await;
    let image = upstream
        .push_image(
            &repo("team/app"),
            &tag("v1"),
            "app",
            &[b"layer one", b"layer two"],
        )
        .await;
    let fake = Arc::new(FakeUpstream::default());
    *fake.registry.lock().unwrap() = Some(upstream.registry.clone());
    let mut cache = Harness::new().await;
    if let Some(wrap) = wrap {
        cache.registry = Registry::with_clock(
            Arc::new(wrap(cache.blobs.clone())),
            cache.meta.clone(),
            support::config(),
            Clock::Fixed(cache.clock.clone()),
        );
    }
    let settings = |namespace: &str, tag_ttl: Duration| ProxySettings {
        namespace: namespace.into(),
        tag_ttl,
        docker_hub: false,
        max_size: None,
        root: namespace == "cache",
        upstream: fake.clone(),
    };
    let small = ProxySettings {
        max_size: Some(1),
        ..settings("small", Duration::from_secs(3600))
    };
    cache.registry.attach_upstreams(vec![
        settings("cache", Duration::from_secs(3600)),
        settings("always", Duration::ZERO),
        small,
    ]);
    Setup {
        upstream,
        cache,
        fake,
        image,
    }
}

/// Waits (bounded) until the background store of `repository:v1` is done.
async fn wait_until_stored(registry: &Registry, repository: &RepoName) {
    for _ in 0..500 {
        if registry.get_manifest(repository, &tag("v1")).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{repository}:v1 was never stored");
}

async fn read_all(stream: ByteStream) -> std::io::Result<Vec<u8>> {
    let mut stream = stream;
    let mut bytes = Vec::new();
    while let Some(piece) = stream.next().await {
        bytes.extend_from_slice(&piece?);
    }
    Ok(bytes)
}

#[tokio::test]
async fn tags_are_asked_upstream_once_per_ttl_and_digests_never_again() {
    let s = setup().await;
    let registry = &s.cache.registry;
    for (namespace, heads_on_second_pull) in [("cache", 0), ("always", 1)] {
        let name = repo(&format!("{namespace}/team/app"));
        let (heads, gets) = (
            s.fake.heads.load(Ordering::SeqCst),
            s.fake.gets.load(Ordering::SeqCst),
        );
        let (first, freshness) = registry.pull_manifest(&name, &tag("v1")).await.unwrap();
        assert_eq!(
            (first.digest.clone(), freshness),
            (s.image.digest.clone(), Freshness::Fresh)
        );
        wait_until_stored(registry, &name).await;
        // Stored through the push path: its blobs are linked too.
        for blob in &s.image.blobs {
            registry.blob_size(&name, blob).await.unwrap();
        }
        let (second, _) = registry.pull_manifest(&name, &tag("v1")).await.unwrap();
        assert_eq!(second.digest, s.image.digest);
        registry
            .pull_manifest(&name, &by_digest(&s.image.digest))
            .await
            .unwrap();
        assert_eq!(
            s.fake.heads.load(Ordering::SeqCst) - heads,
            heads_on_second_pull,
            "{namespace}"
        );
        assert_eq!(s.fake.gets.load(Ordering::SeqCst) - gets, 1, "{namespace}");
    }
}

#[tokio::test]
async fn names_outside_every_namespace_go_to_the_root_mirror_and_local_namespaces_win() {
    let s = setup().await;
    let registry = &s.cache.registry;
    let cases = [
        // No namespace `team` here: served as the root mirror's.
        ("team/app", Some("cache/team/app")),
        // Proxy namespaces are never prefixed again.
        ("always/team/app", None),
        ("cache/team/app", None),
    ];
    for (name, expected) in cases {
        assert_eq!(
            registry.root_mirror(&repo(name)).await.unwrap(),
            expected.map(repo),
            "{name}"
        );
    }
    let mapped = registry
        .root_mirror(&repo("team/app"))
        .await
        .unwrap()
        .unwrap();
    let (pulled, _) = registry.pull_manifest(&mapped, &tag("v1")).await.unwrap();
    assert_eq!(pulled.digest, s.image.digest);
    // A name too long once prefixed is served as it is (and is unknown).
    let long = format!("team/{}", "a".repeat(250));
    assert_eq!(registry.root_mirror(&repo(&long)).await.unwrap(), None);
    // Once `team` is a namespace of this registry, its names are local.
    s.cache
        .push_image(&repo("team/own"), &tag("v1"), "own", &[b"mine"])
        .await;
    assert_eq!(registry.root_mirror(&repo("team/app")).await.unwrap(), None);
    // Without a root upstream nothing is ever mapped.
    assert_eq!(
        s.upstream
            .registry
            .root_mirror(&repo("other/app"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn upstream_failures_serve_what_is_stored_and_translate_the_rest() {
    let s = setup().await;
    let registry = &s.cache.registry;
    let name = repo("always/team/app");
    registry.pull_manifest(&name, &tag("v1")).await.unwrap();
    wait_until_stored(registry, &name).await;
    let failures = [
        UpstreamError::Failed("down".into()),
        UpstreamError::TooManyRequests {
            retry_after: Some(3),
        },
    ];
    for failure in failures {
        *s.fake.failure.lock().unwrap() = Some(failure.clone());
        let (stale, freshness) = registry.pull_manifest(&name, &tag("v1")).await.unwrap();
        assert_eq!(
            (stale.digest.clone(), freshness),
            (s.image.digest.clone(), Freshness::Stale)
        );
        let uncached = registry
            .pull_manifest(&repo("always/team/other"), &tag("v1"))
            .await
            .unwrap_err();
        match failure {
            UpstreamError::TooManyRequests { .. } => assert!(
                matches!(
                    uncached,
                    RegistryError::UpstreamTooManyRequests {
                        retry_after: Some(3)
                    }
                ),
                "{uncached:?}"
            ),
            _ => assert!(
                matches!(uncached, RegistryError::UpstreamFailed(_)),
                "{uncached:?}"
            ),
        }
    }
    *s.fake.failure.lock().unwrap() = None;
    let unknown = registry
        .pull_manifest(&repo("always/team/other"), &tag("v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, RegistryError::ManifestUnknown),
        "{unknown:?}"
    );
    // Pushes are refused, by name.
    let refused = registry.refuse_proxy_write(&name).unwrap_err();
    assert!(matches!(refused, RegistryError::ProxyReadOnly(ref ns) if ns == "always"));
    registry.refuse_proxy_write(&repo("team/app")).unwrap();
}

#[tokio::test]
async fn a_blob_head_asks_upstreams_head_and_fetches_nothing() {
    let s = setup().await;
    let registry = &s.cache.registry;
    let name = repo("cache/team/app");
    let layer = s.image.blobs[1].clone();
    let size = s
        .upstream
        .registry
        .blob_size(&repo("team/app"), &layer)
        .await
        .unwrap();
    let missing = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
    // (upstream failure, digest, the answer: a size or the error's name)
    let cases = [
        (None, layer.clone(), Ok(size)),
        (None, missing, Err("BlobUnknown")),
        (
            Some(UpstreamError::TooManyRequests {
                retry_after: Some(3),
            }),
            layer.clone(),
            Err("UpstreamTooManyRequests(3)"),
        ),
        (
            Some(UpstreamError::Failed("down".into())),
            layer.clone(),
            Err("UpstreamFailed"),
        ),
    ];
    for (failure, digest, expected) in cases {
        *s.fake.failure.lock().unwrap() = failure.clone();
        let answer = registry
            .pull_blob_through(&name, &digest, true)
            .await
            .map(|answer| {
                let (size, body) = answer.expect("a proxy namespace answers");
                assert!(body.is_none(), "a HEAD has no body");
                size
            })
            .map_err(|error| match error {
                RegistryError::BlobUnknown => "BlobUnknown",
                RegistryError::UpstreamTooManyRequests {
                    retry_after: Some(3),
                } => "UpstreamTooManyRequests(3)",
                RegistryError::UpstreamFailed(_) => "UpstreamFailed",
                other => panic!("{failure:?}: {other:?}"),
            });
        assert_eq!(answer, expected, "{failure:?} {digest}");
    }
    *s.fake.failure.lock().unwrap() = None;
    assert_eq!(s.fake.blob_heads.load(Ordering::SeqCst), 4);
    assert_eq!(s.fake.blob_gets.load(Ordering::SeqCst), 0);
    assert!(matches!(
        registry.blob_size(&name, &layer).await,
        Err(RegistryError::BlobUnknown)
    ));
    // A GET still fetches it, once.
    let (_, body) = pull_cold(registry, &name, &layer).await;
    read_all(body.stream).await.unwrap();
    assert_eq!(s.fake.blob_gets.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_corrupt_blob_is_never_cached_and_concurrent_readers_share_one_fetch() {
    corrupt_and_concurrent_fetches(setup_on(None).await, true).await;
}

#[tokio::test]
async fn without_upload_files_a_fetch_is_shared_from_memory_as_safely() {
    corrupt_and_concurrent_fetches(setup_on(Some(Wrapped::WithoutUploadFiles)).await, false).await;
}

async fn corrupt_and_concurrent_fetches(s: Setup, upload_files: bool) {
    let registry = &s.cache.registry;
    let name = repo("cache/team/app");
    let layer = s.image.blobs[1].clone();

    *s.fake.corrupt.lock().unwrap() = true;
    let (_, body) = pull_cold(registry, &name, &layer).await;
    assert_eq!(
        body.file
            .as_ref()
            .is_some_and(|file| file.growing.is_some()),
        upload_files,
        "readers read the upload's file exactly when the store keeps one"
    );
    assert!(
        read_all(body.stream).await.is_err(),
        "a corrupt blob was served whole"
    );
    assert!(matches!(
        registry.blob_size(&name, &layer).await,
        Err(RegistryError::BlobUnknown)
    ));
    *s.fake.corrupt.lock().unwrap() = false;

    let before = s.fake.blob_gets.load(Ordering::SeqCst);
    let readers: Vec<_> = (0..10)
        .map(|_| {
            let (registry, name, layer) = (registry.clone(), name.clone(), layer.clone());
            tokio::spawn(async move {
                match registry
                    .pull_blob_through(&name, &layer, false)
                    .await
                    .unwrap()
                {
                    Some((_, Some(body))) => read_all(body.stream).await.unwrap(),
                    // Stored by the time this reader asked.
                    _ => read_all(
                        registry
                            .read_blob(&name, &layer, None)
                            .await
                            .unwrap()
                            .stream,
                    )
                    .await
                    .unwrap(),
                }
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), b"layer one");
    }
    assert_eq!(s.fake.blob_gets.load(Ordering::SeqCst) - before, 1);
    assert_eq!(registry.blob_size(&name, &layer).await.unwrap(), 9);
}

#[tokio::test]
async fn a_blob_another_repository_of_the_namespace_holds_is_linked_not_fetched() {
    let s = setup().await;
    let registry = &s.cache.registry;
    let shared_layer = s.image.blobs[1].clone();
    let other = s
        .upstream
        .push_image(
            &repo("team/other"),
            &tag("v1"),
            "other",
            &[b"layer one", b"its own layer"],
        )
        .await;
    assert!(other.blobs.contains(&shared_layer));
    let app = repo("cache/team/app");
    registry.pull_manifest(&app, &tag("v1")).await.unwrap();
    wait_until_stored(registry, &app).await;

    // The shared layer, asked through the other repository: linked from
    // `cache/team/app`, served from storage, not fetched again.
    let before = s.fake.blob_gets.load(Ordering::SeqCst);
    let name = repo("cache/team/other");
    assert!(registry
        .pull_blob_through(&name, &shared_layer, false)
        .await
        .unwrap()
        .is_none());
    assert_eq!(registry.blob_size(&name, &shared_layer).await.unwrap(), 9);
    assert_eq!(s.fake.blob_gets.load(Ordering::SeqCst), before);
    // Its whole image: only the blobs the namespace lacked are fetched.
    registry.pull_manifest(&name, &tag("v1")).await.unwrap();
    wait_until_stored(registry, &name).await;
    let fetched = s.fake.blob_gets.load(Ordering::SeqCst) - before;
    let missing = other
        .blobs
        .iter()
        .filter(|blob| !s.image.blobs.contains(blob))
        .count();
    assert_eq!(fetched, missing);
    // Another namespace shares nothing: `always` fetches for itself.
    let elsewhere = repo("always/team/other");
    assert!(registry
        .pull_blob_through(&elsewhere, &shared_layer, false)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_namespace_over_its_max_size_loses_its_least_recently_pulled_images() {
    let s = setup().await;
    let registry = &s.cache.registry;
    for namespace in ["cache", "small"] {
        let name = repo(&format!("{namespace}/team/app"));
        registry.pull_manifest(&name, &tag("v1")).await.unwrap();
        wait_until_stored(registry, &name).await;
    }
    // Only `small` is over its limit; a second pass counts what the first
    // evicted as freed, although the usage shows it only after GC.
    assert_eq!(registry.evict_proxy_namespaces().await.unwrap(), 1);
    assert_eq!(registry.evict_proxy_namespaces().await.unwrap(), 0);
    assert!(matches!(
        registry
            .get_manifest(&repo("small/team/app"), &tag("v1"))
            .await,
        Err(RegistryError::ManifestUnknown)
    ));
    registry
        .get_manifest(&repo("cache/team/app"), &tag("v1"))
        .await
        .unwrap();
    // Evicted is not gone for good: the next pull fetches it again.
    let (again, _) = registry
        .pull_manifest(&repo("small/team/app"), &by_digest(&s.image.digest))
        .await
        .unwrap();
    assert_eq!(again.digest, s.image.digest);
}

#[tokio::test]
async fn an_index_is_cached_with_every_platform_and_pulls_while_upstream_is_down() {
    let s = setup().await;
    let multi = repo("team/multi");
    let amd64 = s
        .upstream
        .push_image(&multi, &platform_tag(), "amd64", &[b"amd64 layer"])
        .await;
    let arm64 = s
        .upstream
        .push_image(&multi, &platform_tag(), "arm64", &[b"arm64 layer"])
        .await;
    let index = support::push_index(
        &s.upstream.registry,
        &multi,
        &tag("v1"),
        &[&amd64.digest, &arm64.digest],
    )
    .await;
    let registry = &s.cache.registry;
    let name = repo("always/team/multi");
    let (served, _) = registry.pull_manifest(&name, &tag("v1")).await.unwrap();
    assert_eq!(served.digest, index);
    wait_until_stored(registry, &name).await;
    for image in [&amd64, &arm64] {
        registry
            .get_manifest(&name, &by_digest(&image.digest))
            .await
            .unwrap();
        for blob in &image.blobs {
            registry.blob_size(&name, blob).await.unwrap();
        }
    }
    *s.fake.failure.lock().unwrap() = Some(UpstreamError::Failed("down".into()));
    let (stale, freshness) = registry.pull_manifest(&name, &tag("v1")).await.unwrap();
    assert_eq!((stale.digest.clone(), freshness), (index, Freshness::Stale));
    let (child, _) = registry
        .pull_manifest(&name, &by_digest(&arm64.digest))
        .await
        .unwrap();
    assert_eq!(child.digest, arm64.digest);
}

/// The tag the images of an index are pushed under upstream (each moves
/// it; the cache pulls only the index).
fn platform_tag() -> Reference {
    tag("platform")
}

/// Pushes upstream `team/big:v1`, whose layer is larger than a reader
/// wake-up step (so a fetch's file is read as it grows); the layer, the
/// repository that mirrors it and the layer's digest.
async fn push_big_layer(s: &Setup) -> (Vec<u8>, RepoName, Digest) {
    let layer: Vec<u8> = (0..3 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    let image = s
        .upstream
        .push_image(&repo("team/big"), &tag("v1"), "big", &[&layer])
        .await;
    let digest = image.blobs[1].clone();
    (layer, repo("cache/team/big"), digest)
}

/// Pulls `digest` through the cache into `name`: its length, and the file
/// region its body reads (a filesystem store gives one).
async fn pull_file_region(
    registry: &Registry,
    name: &RepoName,
    digest: &Digest,
) -> (u64, FileRegion) {
    let (len, body) = pull_cold(registry, name, digest).await;
    let region = body.file.expect("a file region on a filesystem store");
    (len, region)
}

/// A GET through the cache into `name` of a blob it does not hold yet:
/// its length and body.
async fn pull_cold(registry: &Registry, name: &RepoName, digest: &Digest) -> (u64, BlobBody) {
    let (len, body) = registry
        .pull_blob_through(name, digest, false)
        .await
        .unwrap()
        .expect("a blob of a proxy namespace that the cache does not hold");
    (len, body.expect("a GET's body"))
}

#[tokio::test]
async fn readers_of_a_cold_blob_read_its_upload_file_and_never_complete_a_corrupt_one() {
    let s = setup().await;
    let registry = &s.cache.registry;
    let (layer, name, digest) = push_big_layer(&s).await;

    *s.fake.corrupt.lock().unwrap() = true;
    let (len, region) = pull_file_region(registry, &name, &digest).await;
    let growing = region.growing.expect("a region that grows");
    let mut have = 0;
    let failure = loop {
        match growing.readable(have).await {
            Ok(readable) => {
                assert!(readable > have && readable < len, "{readable} of {len}");
                have = readable;
            }
            Err(error) => break error,
        }
    };
    assert!(failure.to_string().contains("digest"), "{failure}");
    assert!(registry.blob_size(&name, &digest).await.is_err());
    *s.fake.corrupt.lock().unwrap() = false;

    let (len, body) = pull_cold(registry, &name, &digest).await;
    assert_eq!(len, layer.len() as u64);
    assert!(body
        .file
        .as_ref()
        .is_some_and(|file| file.growing.is_some()));
    assert!(read_all(body.stream).await.unwrap() == layer);
    wait_until_blob_stored(registry, &name, &digest).await;
}

#[tokio::test]
async fn a_reader_of_a_cut_fetch_who_asks_again_gets_a_new_fetch() {
    // The store takes its time to abort the broken upload (as a busy
    // database might), which holds open the moment when the upload's file
    // is cut back but the fetch is not over.
    let s = setup_on(Some(Wrapped::SlowAbort)).await;
    let registry = &s.cache.registry;
    let (layer, name, digest) = push_big_layer(&s).await;

    let release = Arc::new(tokio::sync::Notify::new());
    *s.fake.cut.lock().unwrap() = Some(release.clone());
    let file = pull_file_region(registry, &name, &digest).await.1.file;
    let file_len = || file.metadata().unwrap().len();
    wait_for("half the blob in the upload's file", || {
        file_len() == layer.len() as u64 / 2
    })
    .await;
    *s.fake.cut.lock().unwrap() = None;
    release.notify_one();
    // A reader of the file fails now: what it was told it may read is
    // gone.
    wait_for("the failed write cut back", || file_len() == 0).await;

    let before = s.fake.blob_gets.load(Ordering::SeqCst);
    let (len, body) = pull_cold(registry, &name, &digest).await;
    assert_eq!(len, layer.len() as u64);
    assert!(
        read_all(body.stream).await.unwrap() == layer,
        "the second pull got other bytes"
    );
    assert_eq!(s.fake.blob_gets.load(Ordering::SeqCst) - before, 1);
    wait_until_blob_stored(registry, &name, &digest).await;
}

/// Waits (bounded) until `done` holds.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// Waits (bounded) until `digest` is stored in `repository`.
async fn wait_until_blob_stored(registry: &Registry, repository: &RepoName, digest: &Digest) {
    for _ in 0..500 {
        if registry.blob_size(repository, digest).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{digest} was never stored in {repository}");
}

/// The filesystem store, keeping its upload files to itself (a fetch's
/// readers then share it from memory, as on S3) or, with `SlowAbort`,
/// sharing them and taking its time to abort an upload.
enum Wrapped {
    WithoutUploadFiles(Arc<FsBlobStore>),
    SlowAbort(Arc<FsBlobStore>),
}

impl std::ops::Deref for Wrapped {
    type Target = FsBlobStore;

    fn deref(&self) -> &FsBlobStore {
        match self {
            Wrapped::WithoutUploadFiles(store) | Wrapped::SlowAbort(store) => store,
        }
    }
}

/// How long `Wrapped::SlowAbort` takes to abort an upload: long past
/// what a reader needs to notice a cut file and ask again.
const SLOW_ABORT: Duration = Duration::from_millis(300);

#[async_trait::async_trait]
impl BlobStore for Wrapped {
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        (**self).blob_size(digest).await
    }

    async fn read_blob(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody, StorageError> {
        (**self).read_blob(digest, range).await
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<(), StorageError> {
        (**self).delete_blob(digest).await
    }

    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        (**self).list_blobs(after, limit).await
    }

    async fn list_uploads(
        &self,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<StoredUpload>, StorageError> {
        (**self).list_uploads(after, limit).await
    }

    async fn begin_upload(&self, id: &UploadId) -> Result<UploadProgress, StorageError> {
        (**self).begin_upload(id).await
    }

    async fn write_chunk(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        data: ByteStream,
    ) -> Result<UploadProgress, StorageError> {
        (**self).write_chunk(id, progress, data).await
    }

    async fn finish_upload(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        expected: &Digest,
    ) -> Result<u64, StorageError> {
        (**self).finish_upload(id, progress, expected).await
    }

    async fn abort_upload(
        &self,
        id: &UploadId,
        progress: Option<&UploadProgress>,
    ) -> Result<(), StorageError> {
        if let Wrapped::SlowAbort(_) = self {
            tokio::time::sleep(SLOW_ABORT).await;
        }
        (**self).abort_upload(id, progress).await
    }

    async fn open_upload_file(&self, id: &UploadId) -> Result<Option<std::fs::File>, StorageError> {
        match self {
            Wrapped::WithoutUploadFiles(_) => Ok(None),
            Wrapped::SlowAbort(store) => store.open_upload_file(id).await,
        }
    }

    async fn check_ready(&self) -> Result<(), StorageError> {
        (**self).check_ready().await
    }
}
