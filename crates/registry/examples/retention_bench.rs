//! Retention benchmark (issue 15: a pass over a namespace of 10,000 images
//! within 2 s): fills a SQLite metadata store with a namespace of many
//! tagged images (their configurations' `created` already read, as after
//! a first pass or an image listing), then times dry runs of a policy over
//! it: the candidate read, the evaluation and the report.
//!
//! ```sh
//! cargo run -p berth-registry --example retention_bench -- --images 10000 --repositories 10
//! ```
//!
//! The blob store is never read (the facts are in the database), so the
//! time is the metadata read and the evaluation; a first pass over images
//! never listed before adds one config-blob read per image, once.

use std::sync::Arc;
use std::time::Instant;

use berth_meta::sqlite::SqliteMetaStore;
use berth_meta::{BlobLinkStore, Change, ImageStore, ManifestRecord, ManifestStore, NewManifest};
use berth_oci::{Algorithm, RepoName, Tag};
use berth_registry::{Actor, Clock, Registry, RegistryConfig, RetentionPolicy, UntaggedImages};
use berth_storage::fs::FsBlobStore;

const NOW: i64 = 1_800_000_000;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|at| args.get(at + 1))
        .map(|value| value.parse().expect("a number"))
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let images = arg("--images", 10_000);
    let repositories = arg("--repositories", 10).max(1);
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(
        SqliteMetaStore::open(&dir.path().join("berth.db"))
            .await
            .unwrap(),
    );
    let blobs = Arc::new(FsBlobStore::open(dir.path().join("blobs")).unwrap());
    let registry = Registry::with_clock(
        blobs,
        meta.clone(),
        RegistryConfig::default(),
        Clock::Fixed(Arc::new(std::sync::atomic::AtomicI64::new(NOW))),
    );
    let change = Change::new(Actor::system("retention-bench"), NOW);

    let started = Instant::now();
    let config = Algorithm::Sha256.digest_of(b"shared config");
    for i in 0..images {
        let repository = RepoName::parse(&format!("bench/app-{}", i % repositories)).unwrap();
        if i < repositories {
            meta.link_blob(&change, &repository, &config, 13)
                .await
                .unwrap();
        }
        let payload = format!(r#"{{"schemaVersion":2,"image":{i}}}"#);
        let record = ManifestRecord {
            digest: Algorithm::Sha256.digest_of(payload.as_bytes()),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
            artifact_type: None,
            subject: None,
            annotations: None,
            payload: payload.into_bytes(),
        };
        let digest = record.digest.clone();
        let manifest = NewManifest {
            record,
            blobs: vec![config.clone()],
            blob_sizes: Vec::new(),
            children: Vec::new(),
        };
        // Every fifth image is untagged; one in ten has two tags.
        let tag = (i % 5 != 0).then(|| Tag::parse(&format!("t{i}")).unwrap());
        meta.put_manifest(&change, &repository, &manifest, tag.as_ref())
            .await
            .unwrap();
        if i % 10 == 1 {
            let extra = Tag::parse(&format!("v{i}")).unwrap();
            meta.put_manifest(&change, &repository, &manifest, Some(&extra))
                .await
                .unwrap();
        }
        let created = time::OffsetDateTime::from_unix_timestamp(NOW - 86_400 - i as i64 * 60)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        meta.set_image_facts(
            &repository,
            &digest,
            &format!(r#"{{"created":"{created}"}}"#),
        )
        .await
        .unwrap();
    }
    println!(
        "built {images} images in {repositories} repositories in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let policy = RetentionPolicy {
        namespace: "bench".to_string(),
        keep: 100,
        untagged: UntaggedImages::Delete,
        min_age: 0,
        keep_tags: Some(berth_oci::TagRegex::parse("^v[0-9]+1$").unwrap()),
        author: "bench".to_string(),
        updated_at: NOW,
    };
    registry
        .set_retention_policy(&Actor::system("retention-bench"), &policy)
        .await
        .unwrap();
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let report = registry
            .run_retention(&Actor::system("retention-bench"), "bench", true)
            .await
            .unwrap()
            .unwrap();
        times.push(started.elapsed().as_secs_f64());
        assert_eq!(
            report.removed.len() + report.kept + report.skipped.len(),
            images
        );
        if times.len() == 1 {
            println!(
                "dry run: {} would go, {} kept",
                report.removed.len(),
                report.kept
            );
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "dry-run pass over {images} images: median {:.3} s, min {:.3} s, max {:.3} s",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
