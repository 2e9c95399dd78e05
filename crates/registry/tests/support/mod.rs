//! A registry on SQLite and the filesystem in a temporary directory, with a
//! clock the test moves, and helpers that push and pull whole images through
//! the registry API.

#![allow(dead_code)]

pub mod crash;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use berth_meta::sqlite::SqliteMetaStore;
use berth_meta::GcStore;
use berth_oci::{Algorithm, Digest, Reference, RepoName, Tag};
use berth_registry::{Actor, Clock, GcOptions, GcReport, Registry, RegistryConfig, RegistryError};
use berth_storage::fs::FsBlobStore;
use berth_storage::{BlobStore, ByteStream};
use bytes::Bytes;
use futures::StreamExt;

/// The fixed clock's start: a plausible "now", far from zero.
pub const START: i64 = 1_800_000_000;

/// The grace period the harness configures, in seconds.
pub const GRACE: i64 = 3600;

/// The upload TTL the harness configures: links no manifest ever referenced
/// are kept at least this long.
pub const UPLOAD_TTL: i64 = 7200;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub registry: Registry,
    pub meta: Arc<SqliteMetaStore>,
    pub blobs: Arc<FsBlobStore>,
    pub clock: Arc<AtomicI64>,
}

/// An image as pushed: its manifest digest and every blob it references.
#[derive(Clone, Debug)]
pub struct Image {
    pub digest: Digest,
    pub blobs: Vec<Digest>,
}

pub fn config() -> RegistryConfig {
    RegistryConfig {
        gc_grace_period: std::time::Duration::from_secs(GRACE as u64),
        upload_ttl: std::time::Duration::from_secs(UPLOAD_TTL as u64),
        // Most tests are about what a final deletion leaves behind; the
        // trash tests (`gc.rs`) turn the trash on.
        trash_retention: std::time::Duration::ZERO,
        ..RegistryConfig::default()
    }
}

/// Who the tests' changes are made by.
pub fn actor() -> Actor {
    Actor::user("tester")
}

pub fn repo(name: &str) -> RepoName {
    RepoName::parse(name).unwrap()
}

pub fn tag(name: &str) -> Reference {
    Reference::Tag(Tag::parse(name).unwrap())
}

pub fn by_digest(digest: &Digest) -> Reference {
    Reference::Digest(digest.clone())
}

pub fn stream(bytes: Vec<u8>) -> ByteStream {
    Box::pin(futures::stream::once(async move { Ok(Bytes::from(bytes)) }))
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::with_config(config()).await
    }

    pub async fn with_config(config: RegistryConfig) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness::open(dir, config, START).await
    }

    /// Opens (or reopens) the registry in `dir` with the clock at `now`.
    pub async fn open(dir: tempfile::TempDir, config: RegistryConfig, now: i64) -> Harness {
        let blobs = Arc::new(FsBlobStore::open(dir.path().join("blobs")).unwrap());
        let meta = Arc::new(
            SqliteMetaStore::open(&dir.path().join("berth.db"))
                .await
                .unwrap(),
        );
        let clock = Arc::new(AtomicI64::new(now));
        let registry = Registry::with_clock(
            blobs.clone(),
            meta.clone(),
            config,
            Clock::Fixed(clock.clone()),
        );
        Harness {
            dir,
            registry,
            meta,
            blobs,
            clock,
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.fetch_add(seconds, Ordering::SeqCst);
    }

    pub async fn push_blob(&self, repository: &RepoName, bytes: &[u8]) -> Digest {
        try_push_blob(&self.registry, repository, bytes)
            .await
            .unwrap()
    }

    /// Pushes a config blob and the layers, then the manifest under `reference`.
    pub async fn push_image(
        &self,
        repository: &RepoName,
        reference: &Reference,
        name: &str,
        layers: &[&[u8]],
    ) -> Image {
        try_push_image(&self.registry, repository, reference, name, layers)
            .await
            .unwrap()
    }

    pub async fn gc(&self) -> GcReport {
        self.registry
            .collect_garbage(&GcOptions::default())
            .await
            .unwrap()
    }

    /// Whether the blob store holds the bytes.
    pub async fn stored(&self, digest: &Digest) -> bool {
        self.blobs.blob_size(digest).await.unwrap().is_some()
    }

    /// Every digest the blob store holds.
    pub async fn all_stored(&self) -> BTreeSet<Digest> {
        let mut all = BTreeSet::new();
        let mut after = None;
        loop {
            let page = self.blobs.list_blobs(after.as_ref(), 1000).await.unwrap();
            if page.is_empty() {
                return all;
            }
            after = page.last().map(|b| b.digest.clone());
            all.extend(page.into_iter().map(|b| b.digest));
        }
    }

    pub async fn pull(&self, repository: &RepoName, reference: &Reference) -> Image {
        pull_image(&self.registry, repository, reference)
            .await
            .unwrap()
    }

    /// No deletion is left half done.
    pub async fn no_pending_deletions(&self) {
        assert!(self
            .meta
            .pending_blob_deletions(10)
            .await
            .unwrap()
            .is_empty());
    }
}

pub async fn try_push_blob(
    registry: &Registry,
    repository: &RepoName,
    bytes: &[u8],
) -> Result<Digest, RegistryError> {
    let digest = Algorithm::Sha256.digest_of(bytes);
    registry
        .upload_monolithic(&actor(), repository, &digest, stream(bytes.to_vec()))
        .await?;
    Ok(digest)
}

/// The manifest JSON of an image with `config` and `layers`.
pub fn manifest_json(config: (&Digest, usize), layers: &[(Digest, usize)]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(digest, size)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest.as_str(),
                "size": size,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.0.as_str(),
            "size": config.1,
        },
        "layers": layers,
    }))
    .unwrap()
}

pub async fn try_push_image(
    registry: &Registry,
    repository: &RepoName,
    reference: &Reference,
    name: &str,
    layers: &[&[u8]],
) -> Result<Image, RegistryError> {
    let config_bytes = format!(r#"{{"image":"{name}"}}"#).into_bytes();
    let config = try_push_blob(registry, repository, &config_bytes).await?;
    let mut layer_refs = Vec::new();
    for layer in layers {
        let digest = try_push_blob(registry, repository, layer).await?;
        layer_refs.push((digest, layer.len()));
    }
    let payload = manifest_json((&config, config_bytes.len()), &layer_refs);
    let put = registry
        .put_manifest(
            &actor(),
            repository,
            reference,
            &[],
            Some("application/vnd.oci.image.manifest.v1+json"),
            payload,
        )
        .await?;
    let mut blobs = vec![config];
    blobs.extend(layer_refs.into_iter().map(|(d, _)| d));
    Ok(Image {
        digest: put.digest,
        blobs,
    })
}

/// Pushes an index listing `children` (all in `repository` already).
pub async fn push_index(
    registry: &Registry,
    repository: &RepoName,
    reference: &Reference,
    children: &[&Digest],
) -> Digest {
    let manifests: Vec<serde_json::Value> = children
        .iter()
        .map(|digest| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest.as_str(),
                "size": 100,
            })
        })
        .collect();
    let payload = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    registry
        .put_manifest(
            &actor(),
            repository,
            reference,
            &[],
            Some("application/vnd.oci.image.index.v1+json"),
            payload,
        )
        .await
        .unwrap()
        .digest
}

/// Pushes an artifact (a signature) whose subject is `subject`, by digest.
pub async fn push_referrer(
    registry: &Registry,
    repository: &RepoName,
    subject: &Digest,
    content: &[u8],
) -> Image {
    let empty = try_push_blob(registry, repository, b"{}").await.unwrap();
    let layer = try_push_blob(registry, repository, content).await.unwrap();
    let payload = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": empty.as_str(),
            "size": 2,
        },
        "layers": [{
            "mediaType": "application/vnd.example.signature.v1",
            "digest": layer.as_str(),
            "size": content.len(),
        }],
        "subject": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": subject.as_str(),
            "size": 100,
        },
    }))
    .unwrap();
    let digest = Algorithm::Sha256.digest_of(&payload);
    registry
        .put_manifest(
            &actor(),
            repository,
            &by_digest(&digest),
            &[],
            Some("application/vnd.oci.image.manifest.v1+json"),
            payload,
        )
        .await
        .unwrap();
    Image {
        digest,
        blobs: vec![empty, layer],
    }
}

/// Pulls an image: the manifest, then every blob it names, each read whole
/// and checked against its digest.
pub async fn pull_image(
    registry: &Registry,
    repository: &RepoName,
    reference: &Reference,
) -> Result<Image, RegistryError> {
    let record = registry.get_manifest(repository, reference).await?;
    assert_eq!(
        record.digest.algorithm().digest_of(&record.payload),
        record.digest,
        "manifest bytes match their digest"
    );
    let parsed = berth_oci::ParsedManifest::parse(&record.payload, Some(&record.media_type))
        .expect("a stored manifest parses");
    let mut blobs = Vec::new();
    for descriptor in parsed.required_blobs() {
        let body = registry
            .read_blob(repository, &descriptor.digest, None)
            .await?;
        let mut bytes = Vec::new();
        let mut stream = body.stream;
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.expect("blob bytes read"));
        }
        assert_eq!(
            descriptor.digest.algorithm().digest_of(&bytes),
            descriptor.digest,
            "blob bytes match their digest"
        );
        blobs.push(descriptor.digest.clone());
    }
    Ok(Image {
        digest: record.digest.clone(),
        blobs,
    })
}
