//! The shared suite and S3-specific checks against [`S3BlobStore`] on a real
//! SeaweedFS (see `support`), each test in a bucket of its own.
#![cfg(feature = "s3")]

mod support;

use berth_oci::{Algorithm, Digest, UploadId};
use berth_storage::s3::{S3BlobStore, DEFAULT_PART_SIZE};
use berth_storage::suite::{self, Leftovers};
use berth_storage::{BlobStore, StorageError, UploadProgress};
use bytes::Bytes;
use futures::StreamExt;

/// Runs each named suite scenario as its own test in its own bucket.
macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(probe) = support::new_probe(stringify!($name)).await else { return };
                suite::$name(&probe.store, &probe).await;
            }
        )*
    };
}

berth_storage::with_storage_scenarios!(suite_tests);

/// All scenarios in sequence in one bucket, which also shows that each one
/// leaves the store as it found it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_in_one_bucket() {
    let Some(probe) = support::new_probe("whole_suite_in_one_bucket").await else {
        return;
    };
    suite::run_all(&probe.store, &probe).await;
}

const MIB: usize = 1024 * 1024;

/// Writes one chunk through `store`, passing the progress through its
/// serialized form as the metadata store would.
async fn write_via(
    store: &S3BlobStore,
    id: &UploadId,
    saved: &str,
    chunk: &[u8],
) -> Result<String, StorageError> {
    let progress: UploadProgress = serde_json::from_str(saved).expect("deserialize");
    let pieces = chunk
        .chunks(256 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    let progress = store
        .write_chunk(id, &progress, suite::stream_of(pieces))
        .await?;
    Ok(serde_json::to_string(&progress).expect("serialize"))
}

/// 40 MiB in 3 MiB chunks, each chunk sent through another of three nodes
/// (independent stores on one bucket): chunks smaller than a part are kept as
/// tails and merged into later parts, and the state needed to continue lives
/// in the serialized progress only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_in_small_chunks_across_nodes() {
    let Some(probe) = support::new_probe("large_upload_in_small_chunks_across_nodes").await else {
        return;
    };
    let nodes: Vec<S3BlobStore> = (0..3)
        .map(|_| support::store(probe.weed, &probe.bucket))
        .collect();
    let data = suite::test_bytes(40, 40 * MIB);
    let digest = Algorithm::Sha256.digest_of(&data);
    let id = UploadId::new_random();
    let mut saved =
        serde_json::to_string(&nodes[0].begin_upload(&id).await.expect("begin")).expect("json");
    let mut saw_a_tail = false;
    for (index, chunk) in data.chunks(3 * MIB).enumerate() {
        saved = write_via(&nodes[index % 3], &id, &saved, chunk)
            .await
            .expect("write");
        let progress: UploadProgress = serde_json::from_str(&saved).expect("json");
        saw_a_tail |= progress.backend_state.get("tail").is_some();
        // Only whole parts and at most one part's worth of tail are in flight.
        let parts = progress.backend_state["parts"]
            .as_array()
            .map_or(0, Vec::len) as u64;
        assert_eq!(
            parts,
            progress.size / DEFAULT_PART_SIZE as u64,
            "{}",
            progress.backend_state
        );
    }
    assert!(saw_a_tail, "3 MiB chunks leave tails");
    // Superseded tails are removed as the upload goes on.
    let tails = probe
        .store
        .leftovers()
        .await
        .into_iter()
        .filter(|key| key.contains("/tail-"))
        .count();
    assert!(tails <= 2, "{tails} tails kept");
    let progress: UploadProgress = serde_json::from_str(&saved).expect("json");
    assert_eq!(progress.size, data.len() as u64);
    assert_eq!(
        nodes[1]
            .finish_upload(&id, &progress, &digest)
            .await
            .expect("finish"),
        data.len() as u64
    );
    let body = nodes[2].read_blob(&digest, None).await.expect("read");
    assert_eq!(body.len, data.len() as u64);
    let read = suite::read_body(body).await;
    assert!(read == data, "the blob reads back as written");
    let range = berth_oci::ByteRange {
        start: 8 * MIB as u64 - 5,
        end: 8 * MIB as u64 + 5,
    };
    let body = nodes[0]
        .read_blob(&digest, Some(range))
        .await
        .expect("read across a part boundary");
    assert_eq!(
        suite::read_body(body).await,
        &data[8 * MIB - 5..8 * MIB + 5]
    );
    probe.store.delete_blob(&digest).await.expect("delete");
    suite::assert_clean(&probe.store, &probe).await;
}

/// Aborting ends every multipart upload of the session, including one begun
/// by a call whose progress the caller never saw (a node that failed mid-
/// chunk), so expired sessions stop costing storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_leaves_no_multipart_uploads() {
    let Some(probe) = support::new_probe("abort_leaves_no_multipart_uploads").await else {
        return;
    };
    let store = &probe.store;
    let data = suite::test_bytes(41, 2 * DEFAULT_PART_SIZE + 1000);

    // A failure after the first part was sent: the call aborts the multipart
    // upload it began itself.
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    let result = store
        .write_chunk(&id, &begun, suite::failing_stream(&data))
        .await;
    assert!(
        matches!(result, Err(StorageError::Incoming(_))),
        "{result:?}"
    );
    assert_eq!(
        probe.weed.multipart_uploads(&probe.bucket).await,
        Vec::<String>::new()
    );

    // Written in full; then another write from the begin progress (as after a
    // lost response) begins a second multipart upload the first progress does
    // not name; aborting with either progress, or none, ends both.
    let written = store
        .write_chunk(
            &id,
            &begun,
            suite::stream_of(vec![Bytes::from(data.clone())]),
        )
        .await
        .expect("write");
    store
        .write_chunk(
            &id,
            &begun,
            suite::stream_of(vec![Bytes::from(data.clone())]),
        )
        .await
        .expect("write again");
    assert_eq!(probe.weed.multipart_uploads(&probe.bucket).await.len(), 2);
    store
        .abort_upload(&id, Some(&written))
        .await
        .expect("abort");
    assert!(matches!(
        store
            .finish_upload(&id, &written, &Algorithm::Sha256.digest_of(&data))
            .await,
        Err(StorageError::UploadNotFound)
    ));
    suite::assert_clean(store, &probe).await;

    // Aborting without a progress, as the purge of expired sessions may.
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    store
        .write_chunk(
            &id,
            &begun,
            suite::stream_of(vec![Bytes::from(data.clone())]),
        )
        .await
        .expect("write");
    assert_eq!(probe.weed.multipart_uploads(&probe.bucket).await.len(), 1);
    store.abort_upload(&id, None).await.expect("abort");
    suite::assert_clean(store, &probe).await;
}

/// A finish that mismatched after assembling the upload (only a sha512 digest
/// needs that) can be repeated with the right digest, and nothing was visible
/// in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_after_an_assembled_mismatch() {
    let Some(probe) = support::new_probe("finish_after_an_assembled_mismatch").await else {
        return;
    };
    let store = &probe.store;
    let data = suite::test_bytes(42, DEFAULT_PART_SIZE + 12_345);
    let (id, progress) = suite::upload_in_chunks(store, &data, 3 * MIB).await;
    let wrong = Algorithm::Sha512.digest_of(b"wrong");
    assert!(matches!(
        store.finish_upload(&id, &progress, &wrong).await,
        Err(StorageError::DigestMismatch { computed }) if computed == Algorithm::Sha512.digest_of(&data)
    ));
    assert!(store.list_blobs(None, 10).await.expect("list").is_empty());
    for algorithm in [Algorithm::Sha512, Algorithm::Sha256] {
        let digest = algorithm.digest_of(&data);
        let (id, progress) = if algorithm == Algorithm::Sha512 {
            (id.clone(), progress.clone())
        } else {
            suite::upload_in_chunks(store, &data, 5 * MIB).await
        };
        store
            .finish_upload(&id, &progress, &digest)
            .await
            .expect("finish");
        let read = suite::read_body(store.read_blob(&digest, None).await.expect("read")).await;
        assert!(read == data);
        store.delete_blob(&digest).await.expect("delete");
    }
    suite::assert_clean(store, &probe).await;
}

/// A presigned URL serves the blob to a client without credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_get_serves_the_blob() {
    let Some(probe) = support::new_probe("presigned_get_serves_the_blob").await else {
        return;
    };
    let store = &probe.store;
    let data = suite::test_bytes(43, 70_000);
    let digest: Digest = suite::store_blob(store, &data).await;
    let url = store
        .presigned_get(&digest, std::time::Duration::from_secs(60))
        .await
        .expect("sign")
        .expect("S3 signs URLs");
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(url.as_str())
        .send()
        .await
        .expect("get");
    assert!(response.status().is_success(), "{}", response.status());
    assert!(response.bytes().await.expect("body") == data);
    store.delete_blob(&digest).await.expect("delete");
    suite::assert_clean(store, &probe).await;
}

/// Keys under `blobs/` that are not well-formed digests are left out of
/// listings (and reported as leftovers, being foreign).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_skips_foreign_objects() {
    let Some(probe) = support::new_probe("listing_skips_foreign_objects").await else {
        return;
    };
    let digest = suite::store_blob(&probe.store, b"listed").await;
    let hex = digest.encoded();
    let foreign = [
        format!("blobs/sha256/{}", hex.to_uppercase()),
        format!("blobs/sha256/{}", &hex[..10]),
        format!("blobs/sha256/{hex}~"),
        format!("blobs/md5/{hex}"),
        format!("blobs/sha256/{hex}/nested"),
    ];
    for key in &foreign {
        let (status, body) = probe
            .weed
            .signed(
                http::Method::PUT,
                &format!("/{}/registry/berth/{key}", probe.bucket),
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
    }
    let listed = probe.store.list_blobs(None, 100).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].digest, digest);
    assert_eq!(probe.store.leftovers().await.len(), foreign.len());
}

/// A blob above the server-side copy limit is committed by streaming it into
/// a multipart upload at its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_above_the_copy_limit_streams() {
    let Some(probe) = support::new_probe("commit_above_the_copy_limit_streams").await else {
        return;
    };
    let config = berth_storage::s3::S3Config {
        max_copy_size: MIB as u64,
        ..support::config(probe.weed, &probe.bucket)
    };
    let store = S3BlobStore::new(&config).expect("store");
    for len in [MIB + 1, 2 * DEFAULT_PART_SIZE + 77] {
        let data = suite::test_bytes(45, len);
        let digest = suite::store_blob(&store, &data).await;
        let read = suite::read_body(store.read_blob(&digest, None).await.expect("read")).await;
        assert!(read == data, "{len} bytes read back");
        store.delete_blob(&digest).await.expect("delete");
    }
    suite::assert_clean(&store, &probe).await;
}

/// Reading a large blob streams it in pieces rather than one body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stream() {
    let Some(probe) = support::new_probe("reads_stream").await else {
        return;
    };
    let data = suite::test_bytes(44, 3 * MIB);
    let digest = suite::store_blob(&probe.store, &data).await;
    let mut stream = probe
        .store
        .read_blob(&digest, None)
        .await
        .expect("read")
        .stream;
    let mut pieces = 0;
    while let Some(piece) = stream.next().await {
        piece.expect("piece");
        pieces += 1;
    }
    assert!(pieces > 1, "{pieces} pieces");
    probe.store.delete_blob(&digest).await.expect("delete");
    suite::assert_clean(&probe.store, &probe).await;
}
