//! Garbage collection through the real binary: `berth gc` is killed in the
//! middle of a pass, and the next pass finishes the job without touching
//! anything still referenced.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_meta::sqlite::SqliteMetaStore;
use berth_meta::GcStore;
use berth_oci::{Algorithm, Digest, Reference, RepoName, Tag};
use berth_registry::{Registry, RegistryConfig};
use berth_storage::fs::FsBlobStore;
use berth_storage::{BlobStore, ByteStream};
use futures::StreamExt;

const GARBAGE_BLOBS: usize = 400;

fn stream(bytes: Vec<u8>) -> ByteStream {
    Box::pin(futures::stream::once(async move {
        Ok(bytes::Bytes::from(bytes))
    }))
}

async fn open(data_dir: &std::path::Path) -> (Registry, Arc<SqliteMetaStore>, Arc<FsBlobStore>) {
    let blobs = Arc::new(FsBlobStore::open(data_dir.to_path_buf()).unwrap());
    let meta = Arc::new(
        SqliteMetaStore::open(&data_dir.join("berth.db"))
            .await
            .unwrap(),
    );
    let registry = Registry::new(blobs.clone(), meta.clone(), RegistryConfig::default());
    (registry, meta, blobs)
}

async fn push_blob(registry: &Registry, repository: &RepoName, bytes: &[u8]) -> Digest {
    let digest = Algorithm::Sha256.digest_of(bytes);
    registry
        .upload_monolithic(
            &berth_registry::Actor::system("test"),
            repository,
            &digest,
            stream(bytes.to_vec()),
        )
        .await
        .unwrap();
    digest
}

/// A live image (tagged) and many garbage blobs, unreferenced from now.
async fn build(data_dir: &std::path::Path) -> (Reference, Vec<Digest>) {
    let (registry, meta, _) = open(data_dir).await;
    let live = RepoName::parse("crash/live").unwrap();
    let junk = RepoName::parse("crash/junk").unwrap();
    let config = push_blob(&registry, &live, br#"{"image":"live"}"#).await;
    let mut layers = Vec::new();
    for i in 0..3 {
        let bytes = format!("live layer {i}").into_bytes();
        layers.push((push_blob(&registry, &live, &bytes).await, bytes.len()));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.as_str(), "size": 16},
        "layers": layers.iter().map(|(d, size)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.as_str(), "size": size})).collect::<Vec<_>>(),
    });
    let reference = Reference::Tag(Tag::parse("v1").unwrap());
    registry
        .put_manifest(
            &berth_registry::Actor::system("test"),
            &live,
            &reference,
            &[],
            Some("application/vnd.oci.image.manifest.v1+json"),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .await
        .unwrap();
    // A layer of the live image also pushed to, then deleted from, the junk
    // repository: it must survive for the live image.
    push_blob(&registry, &junk, b"live layer 0").await;
    registry
        .delete_blob(&berth_registry::Actor::system("test"), &junk, &layers[0].0)
        .await
        .unwrap();
    for i in 0..GARBAGE_BLOBS {
        let digest = push_blob(&registry, &junk, format!("garbage {i}").as_bytes()).await;
        registry
            .delete_blob(&berth_registry::Actor::system("test"), &junk, &digest)
            .await
            .unwrap();
    }
    meta.close().await;
    let mut live_blobs = vec![config];
    live_blobs.extend(layers.into_iter().map(|(d, _)| d));
    (reference, live_blobs)
}

fn berth_gc(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(support::berth_binary());
    command
        .arg("gc")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--gc-grace-period")
        .arg("1s")
        .arg("--gc-batch-size")
        .arg("10")
        .env("BERTH_LOG", "berth_registry=debug");
    command
}

async fn stored(blobs: &FsBlobStore) -> Vec<Digest> {
    blobs
        .list_blobs(None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.digest)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gc_killed_mid_pass_is_finished_by_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    let (reference, live_blobs) = build(&data_dir).await;
    // Let the one-second grace period pass.
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // Kill the pass as soon as it starts deleting blobs.
    let mut child = berth_gc(&data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut saw_batch = false;
    for line in BufReader::new(stderr).lines() {
        if line.unwrap().contains("deleting a batch of blobs") {
            saw_batch = true;
            break;
        }
    }
    assert!(saw_batch, "the pass reached blob deletion");
    child.kill().unwrap();
    child.wait().unwrap();

    let (_, meta, blobs) = open(&data_dir).await;
    let left = stored(&blobs).await.len();
    assert!(
        left > live_blobs.len(),
        "the kill landed mid-pass ({left} objects left)"
    );
    meta.close().await;

    // The killed process still holds the job lease until it expires; the
    // next pass waits for it like a second node would.
    let deadline = Instant::now() + Duration::from_secs(40);
    let output = loop {
        let output = berth_gc(&data_dir)
            .env("BERTH_LOG", "warn")
            .output()
            .unwrap();
        match output.status.code() {
            Some(0) => break output,
            Some(3) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            other => panic!(
                "berth gc exited with {other:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    };
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.starts_with("removed "), "{report}");

    let (registry, meta, blobs) = open(&data_dir).await;
    let mut expected = live_blobs.clone();
    expected.sort();
    assert_eq!(
        stored(&blobs).await,
        expected,
        "only the live image's blobs remain"
    );
    assert!(meta.pending_blob_deletions(10).await.unwrap().is_empty());
    // The live image still pulls, byte for byte.
    let live = RepoName::parse("crash/live").unwrap();
    let record = registry.get_manifest(&live, &reference).await.unwrap();
    assert!(String::from_utf8_lossy(&record.payload).contains(live_blobs[1].as_str()));
    for digest in &live_blobs {
        let mut body = registry
            .read_blob(&live, digest, None)
            .await
            .unwrap()
            .stream;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(&Algorithm::Sha256.digest_of(&bytes), digest);
    }

    // A dry run now finds nothing to do.
    let output = berth_gc(&data_dir).arg("--dry-run").output().unwrap();
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("would remove 0 manifests"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
