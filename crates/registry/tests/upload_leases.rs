//! Upload write leases: requests for one session take turns, on one node as
//! across nodes, and a restarted node frees the leases its earlier life held.

mod support;

use std::sync::Arc;
use std::time::Duration;

use berth_meta::sqlite::SqliteMetaStore;
use berth_oci::{ByteRange, RepoName};
use berth_registry::Actor;
use berth_registry::{Registry, RegistryConfig, RegistryError};
use berth_storage::fs::FsBlobStore;
use berth_storage::ByteStream;
use bytes::Bytes;
use support::stream;

/// Two registries' worth of shared stores in a temporary directory.
struct Stores {
    _dir: tempfile::TempDir,
    blobs: Arc<FsBlobStore>,
    meta: Arc<SqliteMetaStore>,
}

async fn stores() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Arc::new(FsBlobStore::open(dir.path().join("data")).unwrap());
    let meta = Arc::new(
        SqliteMetaStore::open(&dir.path().join("berth.db"))
            .await
            .unwrap(),
    );
    Stores {
        _dir: dir,
        blobs,
        meta,
    }
}

fn node(stores: &Stores, name: &str) -> Registry {
    Registry::new(
        stores.blobs.clone(),
        stores.meta.clone(),
        RegistryConfig {
            node_name: name.into(),
            ..RegistryConfig::default()
        },
    )
}

/// A request body whose first piece is sent at once and whose rest waits
/// for the test; `started` fires once the registry reads the body, which
/// it does only while it holds the session's lease.
fn held_open_body() -> (
    ByteStream,
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::mpsc::Sender<Bytes>,
) {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (more_tx, more_rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let body = futures::stream::unfold(
        (Some(started_tx), more_rx),
        |(started, mut more)| async move {
            if let Some(started) = started {
                let _ = started.send(());
                return Some((Ok(Bytes::from_static(b"first piece ")), (None, more)));
            }
            more.recv().await.map(|bytes| (Ok(bytes), (None, more)))
        },
    );
    (Box::pin(body), started_rx, more_tx)
}

/// A second request for a session whose chunk is still arriving is refused
/// while the first holds the lease, even on the same node. (All requests of
/// a node used to share its name as the lease holder, so the second took
/// the lease over and both wrote to the upload at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_on_one_node_take_turns() {
    let stores = stores().await;
    let registry = node(&stores, "node-a");
    let repository = RepoName::parse("leases/turns").unwrap();
    let session = registry
        .start_upload(&Actor::anonymous(), &repository)
        .await
        .unwrap();

    let (body, started, more) = held_open_body();
    let first = {
        let (registry, repository, id) = (registry.clone(), repository.clone(), session.id.clone());
        tokio::spawn(async move { registry.append_chunk(&repository, &id, None, body).await })
    };
    started.await.expect("the first request reads its body");

    let second = registry
        .append_chunk(&repository, &session.id, None, stream(b"intruder".to_vec()))
        .await;
    assert!(
        matches!(second, Err(RegistryError::UploadBusy)),
        "the second request got {second:?}"
    );

    more.send(Bytes::from_static(b"and the rest"))
        .await
        .unwrap();
    drop(more);
    let first = first.await.unwrap().expect("the first request completes");
    assert_eq!(first.size, "first piece and the rest".len() as u64);
    let status = registry
        .upload_status(&repository, &session.id)
        .await
        .unwrap();
    assert_eq!(status.size, first.size);
}

/// A node dies while it writes a chunk; when it comes back under the same
/// name it frees that session at once, and only the leases that were its
/// own: another node's running lease stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_frees_its_dead_leases_and_only_those() {
    let stores = stores().await;
    let repository = RepoName::parse("leases/restart").unwrap();
    let before_crash = node(&stores, "node-a");
    let other = node(&stores, "node-b");
    let mine = before_crash
        .start_upload(&Actor::anonymous(), &repository)
        .await
        .unwrap();
    let theirs = other
        .start_upload(&Actor::anonymous(), &repository)
        .await
        .unwrap();

    let mut writers = Vec::new();
    let mut bodies = Vec::new();
    for (registry, id) in [(&before_crash, &mine.id), (&other, &theirs.id)] {
        let (body, started, more) = held_open_body();
        let (registry, repository, id) = (registry.clone(), repository.clone(), id.clone());
        writers.push(tokio::spawn(async move {
            registry.append_chunk(&repository, &id, None, body).await
        }));
        started.await.unwrap();
        bodies.push(more);
    }
    // Node A dies mid-chunk: its request never completes.
    writers.remove(0).abort();
    drop(before_crash);

    let restarted = node(&stores, "node-a");
    assert!(
        matches!(
            restarted
                .append_chunk(
                    &repository,
                    &mine.id,
                    Some(ByteRange { start: 0, end: 5 }),
                    stream(b"retry".to_vec())
                )
                .await,
            Err(RegistryError::UploadBusy)
        ),
        "before the release, the dead lease still runs"
    );
    assert_eq!(restarted.release_dead_upload_leases().await.unwrap(), 1);
    let status = restarted
        .append_chunk(
            &repository,
            &mine.id,
            Some(ByteRange { start: 0, end: 5 }),
            stream(b"retry".to_vec()),
        )
        .await
        .expect("the session is free after the restart");
    assert_eq!(status.size, 5);
    assert!(matches!(
        restarted
            .append_chunk(&repository, &theirs.id, None, stream(b"steal".to_vec()))
            .await,
        Err(RegistryError::UploadBusy)
    ));

    let more = bodies.remove(1);
    more.send(Bytes::from_static(b"done")).await.unwrap();
    drop(more);
    let theirs_status = tokio::time::timeout(Duration::from_secs(30), writers.remove(0))
        .await
        .expect("node B's request completes")
        .unwrap()
        .expect("node B keeps its lease");
    assert_eq!(theirs_status.size, "first piece done".len() as u64);
}

/// A finish that fails leaves the session as it stood, so the client can
/// finish it properly: a claimed session (no bytes yet, the whole blob on
/// the `PUT`) is put back with the bytes that reached storage, or as it was
/// when nothing was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_finish_of_a_claimed_session_puts_it_back() {
    let stores = stores().await;
    let registry = node(&stores, "node-a");
    let repository = RepoName::parse("leases/claims").unwrap();
    let data = b"the whole blob".to_vec();
    let digest = berth_oci::Algorithm::Sha256.digest_of(&data);
    let wrong = berth_oci::Algorithm::Sha256.digest_of(b"something else");
    let len = data.len() as u64;

    // (what the PUT sends, whether the error is the expected one, the
    // session's size afterwards).
    type Check = fn(&RegistryError) -> bool;
    let cases: Vec<(&str, Option<ByteRange>, &berth_oci::Digest, Check, u64)> = vec![
        (
            "a range that does not start where the session ends",
            Some(ByteRange {
                start: 5,
                end: 5 + len,
            }),
            &digest,
            |e| matches!(e, RegistryError::ChunkOutOfOrder { .. }),
            0,
        ),
        (
            "a body shorter than its range",
            Some(ByteRange {
                start: 0,
                end: len + 10,
            }),
            &digest,
            |e| matches!(e, RegistryError::ChunkSizeMismatch { .. }),
            0,
        ),
        (
            "the wrong digest: the bytes are kept",
            None,
            &wrong,
            |e| matches!(e, RegistryError::DigestMismatch { .. }),
            len,
        ),
    ];
    for (what, range, put_digest, expected, size_after) in cases {
        let session = registry
            .start_upload(&Actor::anonymous(), &repository)
            .await
            .unwrap();
        let failed = registry
            .finish_upload(
                &Actor::anonymous(),
                &repository,
                &session.id,
                put_digest,
                range,
                Some(stream(data.clone())),
            )
            .await;
        match failed {
            Err(e) if expected(&e) => {}
            other => panic!("{what}: got {other:?}"),
        }
        let status = registry
            .upload_status(&repository, &session.id)
            .await
            .unwrap_or_else(|e| panic!("{what}: the session is gone: {e:?}"));
        assert_eq!(status.size, size_after, "{what}");
        // The client finishes it properly.
        let rest = data[size_after as usize..].to_vec();
        let size = registry
            .finish_upload(
                &Actor::anonymous(),
                &repository,
                &session.id,
                &digest,
                None,
                (!rest.is_empty()).then(|| stream(rest)),
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: finishing after the failure: {e:?}"));
        assert_eq!(size, len, "{what}");
    }
}

/// A session whose chunk is still arriving cannot be claimed: the finish
/// is refused as busy and the session is intact afterwards. A session that
/// holds acknowledged bytes keeps its record while its last chunk arrives
/// on the `PUT` (it is finished under its lease), so a crash then would
/// leave it resumable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_does_not_claim_a_session_being_written() {
    let stores = stores().await;
    let registry = node(&stores, "node-a");
    let repository = RepoName::parse("leases/busy").unwrap();
    let session = registry
        .start_upload(&Actor::anonymous(), &repository)
        .await
        .unwrap();
    let whole = b"first piece and the rest".to_vec();
    let digest = berth_oci::Algorithm::Sha256.digest_of(&whole);

    let (body, started, more) = held_open_body();
    let first = {
        let (registry, repository, id) = (registry.clone(), repository.clone(), session.id.clone());
        tokio::spawn(async move { registry.append_chunk(&repository, &id, None, body).await })
    };
    started.await.expect("the first request reads its body");
    let finish = registry
        .finish_upload(
            &Actor::anonymous(),
            &repository,
            &session.id,
            &digest,
            None,
            None,
        )
        .await;
    assert!(
        matches!(finish, Err(RegistryError::UploadBusy)),
        "a finish during a chunk got {finish:?}"
    );
    more.send(Bytes::from_static(b"and the rest"))
        .await
        .unwrap();
    drop(more);
    first.await.unwrap().expect("the chunk completes");

    // Now a last chunk on the PUT, held open: the session keeps its record
    // (and so its acknowledged bytes) while the chunk arrives.
    let next = b"more".to_vec();
    let mut all = whole.clone();
    all.extend_from_slice(b"first piece more");
    let all_digest = berth_oci::Algorithm::Sha256.digest_of(&all);
    let (body, started, more) = held_open_body();
    let put = {
        let (registry, repository, id) = (registry.clone(), repository.clone(), session.id.clone());
        tokio::spawn(async move {
            registry
                .finish_upload(
                    &Actor::anonymous(),
                    &repository,
                    &id,
                    &all_digest,
                    None,
                    Some(body),
                )
                .await
        })
    };
    started.await.expect("the PUT reads its body");
    let status = registry
        .upload_status(&repository, &session.id)
        .await
        .expect("the session keeps its record while its last chunk arrives");
    assert_eq!(status.size, whole.len() as u64);
    more.send(Bytes::from(next)).await.unwrap();
    drop(more);
    let size = put.await.unwrap().expect("the PUT completes");
    assert_eq!(size, all.len() as u64);
}
