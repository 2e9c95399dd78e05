//! Garbage-collection benchmark (issue 7): builds a registry of many images
//! through the registry API on SQLite and the filesystem, deletes a share of
//! them, and times one collection pass while pulls keep running, reporting
//! the pass's time, the process's peak memory during it and how pulls fared.
//!
//! ```sh
//! cargo run --release -p berth-registry --example gc_bench -- \
//!     --images 10000 --blobs-per-image 10 --garbage-percent 10 [--dir DIR]
//! ```
//!
//! Blobs are small (the pass's cost is per object, not per byte); each
//! image's blobs are its own, so images × blobs-per-image blobs are stored.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_meta::sqlite::SqliteMetaStore;
use berth_oci::{Algorithm, Digest, Reference, RepoName, Tag};
use berth_registry::{Actor, Clock, GcOptions, Registry, RegistryConfig};

/// Who the benchmark's changes are made by.
fn actor() -> Actor {
    Actor::system("gc-bench")
}
use berth_storage::fs::FsBlobStore;
use berth_storage::ByteStream;
use futures::StreamExt;

struct Args {
    images: usize,
    blobs_per_image: usize,
    garbage_percent: usize,
    /// Concurrent pushers while building.
    pushers: usize,
    dir: Option<std::path::PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        images: 10_000,
        blobs_per_image: 10,
        garbage_percent: 10,
        pushers: 8,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--images" => args.images = value.parse().expect("--images N"),
            "--blobs-per-image" => args.blobs_per_image = value.parse().expect("a number"),
            "--garbage-percent" => args.garbage_percent = value.parse().expect("a number"),
            "--pushers" => args.pushers = value.parse().expect("a number"),
            "--dir" => args.dir = Some(value.into()),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(args.blobs_per_image >= 1, "an image needs a config blob");
    args
}

fn stream(bytes: Vec<u8>) -> ByteStream {
    Box::pin(futures::stream::once(async move {
        Ok(bytes::Bytes::from(bytes))
    }))
}

/// Resident-set figures of this process in KiB: (current, peak).
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak resident-set figure so that the next reading covers only
/// what follows (Linux: writing 5 to clear_refs).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn push_image(
    registry: &Registry,
    index: usize,
    blobs_per_image: usize,
) -> (RepoName, Digest) {
    // A hundred images per repository, as in a registry with many projects.
    let repository = RepoName::parse(&format!("bench/repo-{}", index / 100)).unwrap();
    let mut descriptors = Vec::new();
    for blob in 0..blobs_per_image {
        let bytes = format!("image {index} blob {blob} {:0>48}", index * 31 + blob).into_bytes();
        let digest = Algorithm::Sha256.digest_of(&bytes);
        registry
            .upload_monolithic(&actor(), &repository, &digest, stream(bytes.clone()))
            .await
            .expect("blob push");
        descriptors.push((digest, bytes.len()));
    }
    let (config, layers) = descriptors.split_first().unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.0.as_str(), "size": config.1},
        "layers": layers.iter().map(|(d, size)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.as_str(), "size": size})).collect::<Vec<_>>(),
    });
    let put = registry
        .put_manifest(
            &actor(),
            &repository,
            &Reference::Tag(Tag::parse(&format!("v{index}")).unwrap()),
            &[],
            Some("application/vnd.oci.image.manifest.v1+json"),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .await
        .expect("manifest push");
    (repository, put.digest)
}

/// Pulls an image by digest and checks every blob's bytes against its digest.
async fn pull(registry: &Registry, repository: &RepoName, digest: &Digest) -> bool {
    let Ok(record) = registry
        .get_manifest(repository, &Reference::Digest(digest.clone()))
        .await
    else {
        return false;
    };
    let Ok(parsed) = berth_oci::ParsedManifest::parse(&record.payload, Some(&record.media_type))
    else {
        return false;
    };
    for descriptor in parsed.required_blobs() {
        let Ok(body) = registry
            .read_blob(repository, &descriptor.digest, None)
            .await
        else {
            return false;
        };
        let mut bytes = Vec::new();
        let mut stream = body.stream;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(_) => return false,
            }
        }
        if descriptor.digest.algorithm().digest_of(&bytes) != descriptor.digest {
            return false;
        }
    }
    true
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let temp = tempfile::tempdir().unwrap();
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    let blobs = Arc::new(FsBlobStore::open(dir.join("blobs")).unwrap());
    let meta = Arc::new(SqliteMetaStore::open(&dir.join("berth.db")).await.unwrap());
    let clock = Arc::new(AtomicI64::new(1_800_000_000));
    let config = RegistryConfig::default();
    let grace = config.gc_grace_period.max(config.upload_ttl).as_secs() as i64;
    let registry = Registry::with_clock(blobs, meta, config, Clock::Fixed(clock.clone()));

    println!(
        "building {} images x {} blobs = {} blobs in {}",
        args.images,
        args.blobs_per_image,
        args.images * args.blobs_per_image,
        dir.display()
    );
    let build_started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut pushers = Vec::new();
    for _ in 0..args.pushers {
        let registry = registry.clone();
        let next = next.clone();
        let (images, per) = (args.images, args.blobs_per_image);
        pushers.push(tokio::spawn(async move {
            let mut pushed = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst) as usize;
                if index >= images {
                    return pushed;
                }
                let (repository, digest) = push_image(&registry, index, per).await;
                pushed.push((index, repository, digest));
                if index % 1000 == 999 {
                    eprintln!("  {} images pushed", index + 1);
                }
            }
        }));
    }
    let mut images = Vec::new();
    for pusher in pushers {
        images.extend(pusher.await.unwrap());
    }
    images.sort_by_key(|(index, _, _)| *index);
    let build_time = build_started.elapsed();

    // With 10 %, every tenth image is deleted and its blobs become garbage.
    let step = if args.garbage_percent == 0 {
        usize::MAX
    } else {
        100 / args.garbage_percent.min(100)
    };
    let mut live = Vec::new();
    let mut deleted = 0;
    for (index, repository, digest) in &images {
        if index.is_multiple_of(step) {
            registry
                .delete_manifest(&actor(), repository, &Reference::Digest(digest.clone()))
                .await
                .unwrap();
            deleted += 1;
        } else {
            live.push((repository.clone(), digest.clone()));
        }
    }
    clock.fetch_add(grace + 1, Ordering::SeqCst);

    // Pulls run during the pass, to show that they keep working and at what pace.
    let stop = Arc::new(AtomicBool::new(false));
    let puller = {
        let registry = registry.clone();
        let stop = stop.clone();
        let live = live.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed, mut worst) = (0u64, 0u64, Duration::ZERO);
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && !live.is_empty() {
                let (repository, digest) = &live[(i * 7919) % live.len()];
                let started = Instant::now();
                if pull(&registry, repository, digest).await {
                    ok += 1;
                } else {
                    failed += 1;
                }
                worst = worst.max(started.elapsed());
                i += 1;
            }
            (ok, failed, worst)
        })
    };
    let (rss_before, _) = memory_kib();
    reset_peak_memory();
    let report = registry
        .collect_garbage(&GcOptions::default())
        .await
        .unwrap();
    let (_, peak) = memory_kib();
    stop.store(true, Ordering::SeqCst);
    let (pulls_ok, pulls_failed, worst_pull) = puller.await.unwrap();
    let idle = registry
        .collect_garbage(&GcOptions::default())
        .await
        .unwrap();

    println!(
        "build: {:.1} s ({} images deleted)",
        build_time.as_secs_f64(),
        deleted
    );
    println!("pass: {report}");
    println!(
        "pass memory: RSS {} MiB before, peak {} MiB during (includes the concurrent pulls)",
        rss_before / 1024,
        peak / 1024
    );
    println!(
        "pulls during the pass: {pulls_ok} verified, {pulls_failed} failed, slowest {:.1} ms",
        worst_pull.as_secs_f64() * 1000.0
    );
    println!("idle pass afterwards: {idle}");
    assert_eq!(pulls_failed, 0, "pulls keep working during collection");
    assert_eq!(
        report.blobs_removed as usize,
        deleted * args.blobs_per_image,
        "every blob of every deleted image is reclaimed"
    );
}
