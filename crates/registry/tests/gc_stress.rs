//! Garbage collection racing real work: several tasks push images that share
//! layers, delete tags and manifests and push them again, while passes run
//! back to back and the clock races ahead so that grace periods expire
//! during the run. Afterwards every image that should exist is pulled and
//! verified by digest, and once the grace period has passed with no more
//! pushes, storage holds exactly the blobs live manifests reference.
//!
//! Bounded: a fixed number of rounds per task, well under a minute.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_oci::Digest;
use berth_registry::{GcOptions, RegistryConfig, RegistryError};
use support::{actor, by_digest, pull_image, repo, tag, try_push_image, Harness, Image};

/// Pushes refused because of a collection, by kind: (blob being collected,
/// layer link collected before the manifest arrived).
static REFUSED_BEING_COLLECTED: AtomicU64 = AtomicU64::new(0);
static REFUSED_LINK_GONE: AtomicU64 = AtomicU64::new(0);

const TASKS: usize = 4;
const ROUNDS: usize = 40;
/// Seconds of the fixed clock; the clock task moves it by one second at a
/// time, so grace periods run out many times during the run.
const GRACE: u64 = 5;
/// Links no manifest referenced yet (a push in progress) are kept this long:
/// long enough for a push on a loaded machine to reach its manifest most of
/// the time, short enough that some do not and are pushed again.
const UPLOAD_TTL: u64 = 40;

/// Pushes, retrying the refusals garbage collection may cause: a blob being
/// deleted (`BlobBeingCollected`) or a layer link collected between the
/// layer push and the manifest (`ManifestBlobUnknown`), both of which a
/// client answers by pushing again.
async fn push_retrying(
    h: &Harness,
    repository: &berth_oci::RepoName,
    reference: &berth_oci::Reference,
    name: &str,
    layers: &[&[u8]],
) -> Image {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match try_push_image(&h.registry, repository, reference, name, layers).await {
            Ok(image) => return image,
            Err(RegistryError::BlobBeingCollected) => {
                REFUSED_BEING_COLLECTED.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
            Err(RegistryError::ManifestBlobUnknown(_)) => {
                REFUSED_LINK_GONE.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("push failed: {e}"),
        }
    }
    panic!("push kept being refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_racing_pushes_and_deletes_never_loses_a_live_blob() {
    let started = std::time::Instant::now();
    let h = Arc::new(
        Harness::with_config(RegistryConfig {
            gc_grace_period: Duration::from_secs(GRACE),
            upload_ttl: Duration::from_secs(UPLOAD_TTL),
            gc_batch_size: 7,
            ..support::config()
        })
        .await,
    );
    let done = Arc::new(AtomicBool::new(false));

    let clock = {
        let h = h.clone();
        let done = done.clone();
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                h.advance(1);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let collector = {
        let h = h.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut passes = 0u64;
            let mut removed = 0u64;
            while !done.load(Ordering::SeqCst) {
                let report = h
                    .registry
                    .collect_garbage(&GcOptions {
                        sweep_orphans: passes.is_multiple_of(5),
                        ..GcOptions::default()
                    })
                    .await
                    .expect("a pass succeeds");
                passes += 1;
                removed += report.blobs_removed;
            }
            (passes, removed)
        })
    };

    let mut workers = Vec::new();
    for task in 0..TASKS {
        let h = h.clone();
        workers.push(tokio::spawn(async move {
            // Every task pushes the same base layers into its own repository
            // and into a shared one, so blobs are shared across manifests and
            // repositories.
            let own = repo(&format!("stress/task-{task}"));
            let shared = repo("stress/shared");
            let base: Vec<Vec<u8>> = (0..3)
                .map(|i| format!("base layer {i}").into_bytes())
                .collect();
            // Live manifests: (repository, digest) -> image, plus live tags.
            let mut live: BTreeMap<(String, Digest), Image> = BTreeMap::new();
            let mut tags: BTreeMap<(String, String), Digest> = BTreeMap::new();
            for round in 0..ROUNDS {
                let version = round % 6;
                let top = format!("task {task} version {version}").into_bytes();
                let layers: Vec<&[u8]> = vec![&base[round % 3], &base[(round + 1) % 3], &top];
                let repository = if round % 4 == 0 { &shared } else { &own };
                let tag_name = format!("t{task}-v{version}");
                let image = push_retrying(
                    &h,
                    repository,
                    &tag(&tag_name),
                    &format!("t{task}v{version}"),
                    &layers,
                )
                .await;
                live.insert(
                    (repository.to_string(), image.digest.clone()),
                    image.clone(),
                );
                tags.insert(
                    (repository.to_string(), tag_name.clone()),
                    image.digest.clone(),
                );
                match round % 5 {
                    // Untag: the manifest stays, reachable by digest.
                    1 => {
                        h.registry
                            .delete_manifest(&actor(), repository, &tag(&tag_name))
                            .await
                            .unwrap();
                        tags.remove(&(repository.to_string(), tag_name));
                    }
                    // Delete by digest: the manifest and its tags go.
                    2 | 3 => {
                        h.registry
                            .delete_manifest(&actor(), repository, &by_digest(&image.digest))
                            .await
                            .unwrap();
                        live.remove(&(repository.to_string(), image.digest.clone()));
                        tags.retain(|(r, _), d| !(r == repository.as_str() && *d == image.digest));
                    }
                    _ => {}
                }
                // Pull something live now and then, while collection runs.
                if let Some(((r, d), _)) = live.iter().nth(round % live.len().max(1)) {
                    pull_image(&h.registry, &repo(r), &by_digest(d))
                        .await
                        .expect("a live image pulls during collection");
                }
            }
            (live, tags)
        }));
    }
    let mut live: BTreeMap<(String, Digest), Image> = BTreeMap::new();
    let mut tags: BTreeMap<(String, String), Digest> = BTreeMap::new();
    for worker in workers {
        let (l, t) = worker.await.unwrap();
        live.extend(l);
        tags.extend(t);
    }
    done.store(true, Ordering::SeqCst);
    clock.await.unwrap();
    let (passes, removed_during) = collector.await.unwrap();

    // The shared repository's manifests may have been deleted by another
    // task that pushed the identical image (same digest): keep only what
    // the registry still has there, which must pull.
    let mut expected_blobs: BTreeSet<Digest> = BTreeSet::new();
    for ((r, digest), image) in &live {
        let repository = repo(r);
        match pull_image(&h.registry, &repository, &by_digest(digest)).await {
            Ok(pulled) => {
                assert_eq!(&pulled.blobs, &image.blobs);
                expected_blobs.extend(pulled.blobs);
            }
            Err(RegistryError::ManifestUnknown) if r == "stress/shared" => {}
            Err(e) => panic!("live image {r}@{digest} does not pull: {e}"),
        }
    }
    for ((r, name), digest) in &tags {
        if let Ok(pulled) = pull_image(&h.registry, &repo(r), &tag(name)).await {
            assert_eq!(&pulled.digest, digest, "{r}:{name}");
        } else {
            assert_eq!(r, "stress/shared", "{r}:{name} must pull");
        }
    }

    // With no more pushes, everything unreferenced goes within the grace
    // period (plus one pass), and nothing referenced does.
    h.advance(UPLOAD_TTL as i64 + 1);
    h.gc().await;
    h.no_pending_deletions().await;
    assert_eq!(h.all_stored().await, expected_blobs);
    eprintln!(
        "{passes} passes removed {removed_during} blobs during the run; {} live manifests; \
         pushes refused: {} blob being collected, {} link collected; {:?}",
        live.len(),
        REFUSED_BEING_COLLECTED.load(Ordering::Relaxed),
        REFUSED_LINK_GONE.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert!(passes > 10, "collection ran alongside the pushes");
}
