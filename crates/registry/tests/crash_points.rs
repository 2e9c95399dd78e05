//! A push crashed at every step it takes in the blob store, then a restart
//! on the same stores: what the client finds, and what the purge leaves.
//!
//! For each step of each way to push a blob, a fresh registry runs the push
//! with its blob store armed to crash at that step (see `support::crash`).
//! Then a new registry on the same stores, under the same node name, plays
//! the restarted process, and the test checks:
//!
//! 1. no session record is left whose data is gone (a record never
//!    outlives its data);
//! 2. the client's retry works: a session it was told about either takes
//!    the rest of the blob (never "being written by another request") or
//!    is unknown, and then a new push succeeds; the blob reads back whole;
//! 3. once the upload TTL has passed, one purge leaves no upload data and
//!    no session record behind.

mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_meta::sqlite::SqliteMetaStore;
use berth_meta::{Actor, UploadStore};
use berth_oci::{Algorithm, ByteRange, Digest, RepoName, UploadId};
use berth_registry::{Clock, Registry, RegistryConfig, RegistryError};
use berth_storage::fs::FsBlobStore;
use berth_storage::BlobStore;
use futures::StreamExt;
use support::crash::{quiet_simulated_crashes, CrashingBlobs};
use support::stream;

/// The upload TTL of these registries, in seconds.
const TTL: u64 = 3600;

/// The blob every scenario pushes: large enough for two chunks.
fn blob() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 31 + i / 97) as u8).collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// The ways a client pushes a blob.
#[derive(Clone, Copy, Debug)]
enum Push {
    /// `POST ?digest=` with the whole blob.
    Monolithic,
    /// `POST`, two `PATCH`es, then `PUT ?digest=` without a body.
    Chunked,
    /// `POST`, one `PATCH`, then `PUT ?digest=` with the last chunk.
    LastChunkOnPut,
    /// `POST`, then `PUT ?digest=` with the whole blob (containerd's and
    /// oras's way), which finishes a claimed session.
    WholeBlobOnPut,
}

/// Pushes `data` the given way, recording the session id in `session`
/// as soon as the client would learn it (the `POST` answered).
async fn push(
    registry: &Registry,
    repository: &RepoName,
    how: Push,
    data: &[u8],
    session: &Mutex<Option<UploadId>>,
) -> Result<(), RegistryError> {
    let digest = Algorithm::Sha256.digest_of(data);
    let half = data.len() / 2;
    match how {
        Push::Monolithic => {
            registry
                .upload_monolithic(
                    &Actor::anonymous(),
                    repository,
                    &digest,
                    stream(data.to_vec()),
                )
                .await?;
        }
        Push::Chunked => {
            let status = registry
                .start_upload(&Actor::anonymous(), repository)
                .await?;
            *session.lock().unwrap() = Some(status.id.clone());
            registry
                .append_chunk(
                    repository,
                    &status.id,
                    Some(ByteRange {
                        start: 0,
                        end: half as u64,
                    }),
                    stream(data[..half].to_vec()),
                )
                .await?;
            registry
                .append_chunk(
                    repository,
                    &status.id,
                    Some(ByteRange {
                        start: half as u64,
                        end: data.len() as u64,
                    }),
                    stream(data[half..].to_vec()),
                )
                .await?;
            registry
                .finish_upload(
                    &Actor::anonymous(),
                    repository,
                    &status.id,
                    &digest,
                    None,
                    None,
                )
                .await?;
        }
        Push::LastChunkOnPut => {
            let status = registry
                .start_upload(&Actor::anonymous(), repository)
                .await?;
            *session.lock().unwrap() = Some(status.id.clone());
            registry
                .append_chunk(
                    repository,
                    &status.id,
                    Some(ByteRange {
                        start: 0,
                        end: half as u64,
                    }),
                    stream(data[..half].to_vec()),
                )
                .await?;
            registry
                .finish_upload(
                    &Actor::anonymous(),
                    repository,
                    &status.id,
                    &digest,
                    Some(ByteRange {
                        start: half as u64,
                        end: data.len() as u64,
                    }),
                    Some(stream(data[half..].to_vec())),
                )
                .await?;
        }
        Push::WholeBlobOnPut => {
            let status = registry
                .start_upload(&Actor::anonymous(), repository)
                .await?;
            *session.lock().unwrap() = Some(status.id.clone());
            registry
                .finish_upload(
                    &Actor::anonymous(),
                    repository,
                    &status.id,
                    &digest,
                    None,
                    Some(stream(data.to_vec())),
                )
                .await?;
        }
    }
    Ok(())
}

/// What a client does after its push failed (the server went away): it
/// finishes the session it knows, from where the server says it stands,
/// or pushes again from scratch.
async fn retry(
    registry: &Registry,
    repository: &RepoName,
    data: &[u8],
    session: Option<UploadId>,
) -> Result<(), String> {
    let digest = Algorithm::Sha256.digest_of(data);
    if let Some(id) = session {
        match registry.upload_status(repository, &id).await {
            Ok(status) => {
                let rest = data[status.size as usize..].to_vec();
                let finished = registry
                    .finish_upload(
                        &Actor::anonymous(),
                        repository,
                        &id,
                        &digest,
                        Some(ByteRange {
                            start: status.size,
                            end: data.len() as u64,
                        }),
                        Some(stream(rest)),
                    )
                    .await;
                match finished {
                    Ok(_) => return Ok(()),
                    // Gone meanwhile (finished before the crash): push again.
                    Err(RegistryError::UploadUnknown) => {}
                    Err(e) => return Err(format!("finishing the known session: {e:?}")),
                }
            }
            Err(RegistryError::UploadUnknown) => {}
            Err(e) => return Err(format!("asking for the session: {e:?}")),
        }
    }
    registry
        .upload_monolithic(
            &Actor::anonymous(),
            repository,
            &digest,
            stream(data.to_vec()),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("pushing again: {e:?}"))
}

/// Every session record's upload id, and every upload the store holds.
async fn sessions_and_uploads(
    meta: &SqliteMetaStore,
    blobs: &FsBlobStore,
) -> (Vec<String>, Vec<String>) {
    let mut records: Vec<String> = meta
        .expired_uploads(i64::MAX, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.id)
        .collect();
    records.sort();
    let uploads = blobs
        .list_uploads(None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|upload| upload.id.to_string())
        .collect();
    (records, uploads)
}

async fn read_whole(registry: &Registry, repository: &RepoName, digest: &Digest) -> Vec<u8> {
    let body = registry.read_blob(repository, digest, None).await.unwrap();
    let mut bytes = Vec::new();
    let mut pieces = body.stream;
    while let Some(piece) = pieces.next().await {
        bytes.extend_from_slice(&piece.unwrap());
    }
    bytes
}

/// A filesystem blob store and a SQLite metadata store in a new directory.
async fn stores() -> (tempfile::TempDir, Arc<FsBlobStore>, Arc<SqliteMetaStore>) {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FsBlobStore::open(dir.path().join("data")).unwrap());
    let meta = Arc::new(
        SqliteMetaStore::open(&dir.path().join("berth.db"))
            .await
            .unwrap(),
    );
    (dir, fs, meta)
}

fn config() -> RegistryConfig {
    RegistryConfig {
        upload_ttl: Duration::from_secs(TTL),
        node_name: "node-a".into(),
        ..RegistryConfig::default()
    }
}

/// Runs one push crashed at `step`; returns `false` when the push took
/// fewer steps (it completed, so every step has been tried).
async fn crash_and_recover(how: Push, step: usize) -> bool {
    let (_dir, fs, meta) = stores().await;
    let clock = Arc::new(AtomicI64::new(now()));
    let crashing = Arc::new(CrashingBlobs::new(fs.clone()));
    let first = Registry::with_clock(
        crashing.clone(),
        meta.clone(),
        config(),
        Clock::Fixed(clock.clone()),
    );
    let repository = RepoName::parse("crash/points").unwrap();
    let data = blob();
    let digest = Algorithm::Sha256.digest_of(&data);
    let session = Arc::new(Mutex::new(None));

    crashing.arm(step);
    let outcome = {
        let (registry, repository, data, session) = (
            first.clone(),
            repository.clone(),
            data.clone(),
            session.clone(),
        );
        tokio::spawn(async move { push(&registry, &repository, how, &data, &session).await }).await
    };
    let steps = crashing.disarm();
    match outcome {
        Err(join) if join.is_panic() => {}
        Ok(Ok(())) => {
            assert!(
                steps <= step,
                "{how:?}: completed although armed for step {step}"
            );
            return false;
        }
        other => panic!("{how:?} crashed at step {step}: unexpected outcome {other:?}"),
    }
    drop(first);

    // The restarted process: same stores, same node name.
    let second = Registry::with_clock(
        fs.clone(),
        meta.clone(),
        config(),
        Clock::Fixed(clock.clone()),
    );
    second.release_dead_upload_leases().await.unwrap();

    let (records, uploads) = sessions_and_uploads(&meta, &fs).await;
    for record in &records {
        assert!(
            uploads.contains(record),
            "{how:?}, crash at step {step}: the session {record} outlived its data"
        );
    }

    let known = session.lock().unwrap().clone();
    if let Err(e) = retry(&second, &repository, &data, known).await {
        panic!("{how:?}, crash at step {step}: the client's retry failed: {e}");
    }
    assert!(read_whole(&second, &repository, &digest).await == data);

    clock.fetch_add(TTL as i64 + 10, Ordering::SeqCst);
    second.purge_expired_uploads().await.unwrap();
    let (records, uploads) = sessions_and_uploads(&meta, &fs).await;
    assert!(
        records.is_empty() && uploads.is_empty(),
        "{how:?}, crash at step {step}: after a purge, sessions {records:?} and upload data {uploads:?} remain"
    );
    assert!(read_whole(&second, &repository, &digest).await == data);
    true
}

async fn every_step(how: Push) {
    quiet_simulated_crashes();
    let mut step = 0;
    while crash_and_recover(how, step).await {
        step += 1;
        assert!(step < 100, "{how:?} takes implausibly many steps");
    }
    assert!(step >= 4, "{how:?} crashed at only {step} steps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monolithic_push_crashed_at_every_step() {
    every_step(Push::Monolithic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_push_crashed_at_every_step() {
    every_step(Push::Chunked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_with_last_chunk_on_put_crashed_at_every_step() {
    every_step(Push::LastChunkOnPut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_with_whole_blob_on_put_crashed_at_every_step() {
    every_step(Push::WholeBlobOnPut).await;
}

/// A whole blob sent with the closing `PUT` is written without its own
/// fsync (`write_last_chunk`), so a storage finish that fails otherwise
/// than by a digest mismatch must not bring the session back claiming those
/// bytes: it comes back as it stood before them, and the client's retry,
/// which asks where the session stands, sends the whole blob again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_finish_restores_the_session_before_its_last_chunk() {
    let (_dir, fs, meta) = stores().await;
    let failing = Arc::new(CrashingBlobs::new(fs.clone()));
    let registry = Registry::with_clock(
        failing.clone(),
        meta.clone(),
        config(),
        Clock::Fixed(Arc::new(AtomicI64::new(now()))),
    );
    let repository = RepoName::parse("failed/finish").unwrap();
    let data = blob();
    let digest = Algorithm::Sha256.digest_of(&data);
    let session = Mutex::new(None);

    failing.fail_finishes.store(true, Ordering::SeqCst);
    let pushed = push(
        &registry,
        &repository,
        Push::WholeBlobOnPut,
        &data,
        &session,
    )
    .await;
    assert!(
        matches!(pushed, Err(RegistryError::Storage(_))),
        "{pushed:?}"
    );
    let id = session
        .lock()
        .unwrap()
        .clone()
        .expect("the session was opened");
    let status = registry.upload_status(&repository, &id).await.unwrap();
    assert_eq!(status.size, 0, "the session claims the unsynced last chunk");

    failing.fail_finishes.store(false, Ordering::SeqCst);
    retry(&registry, &repository, &data, Some(id))
        .await
        .unwrap();
    assert!(read_whole(&registry, &repository, &digest).await == data);
    let (records, uploads) = sessions_and_uploads(&meta, &fs).await;
    assert!(
        records.is_empty() && uploads.is_empty(),
        "{records:?} {uploads:?}"
    );
}
