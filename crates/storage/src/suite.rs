//! The shared test suite every [`BlobStore`] backend must pass.
//!
//! Each scenario is a `pub async fn` taking the store and a [`Leftovers`] probe.
//! It starts from an empty store, cleans up after itself and ends by checking
//! that the store holds no blobs, uploads or temporaries any more, so that a
//! backend that leaks fails the very scenario that leaked. A backend's tests run
//! every scenario as its own test (through
//! [`with_storage_scenarios!`](crate::with_storage_scenarios)) or all of them
//! in sequence through [`run_all`].
//!
//! The suite panics on failure, like any test; it is compiled only for tests and
//! under the `test-suite` feature.

use berth_oci::{Algorithm, ByteRange, Digest, UploadId};
use bytes::Bytes;
use futures::StreamExt;

use crate::{BlobBody, BlobStore, ByteStream, StorageError, UploadProgress};

/// What the suite needs to see beyond the trait: the remains a backend keeps
/// outside committed blobs.
#[async_trait::async_trait]
pub trait Leftovers: Send + Sync {
    /// Describes every upload and temporary object the backend still holds
    /// (an upload that was begun and not yet finished or aborted must be among
    /// them). The descriptions only serve a failing test's reader.
    async fn leftovers(&self) -> Vec<String>;
}

/// Declares [`run_all`] from the one list of scenarios in
/// [`with_storage_scenarios!`](crate::with_storage_scenarios).
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        /// Runs every scenario in sequence against one store.
        pub async fn run_all(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
            $(
                tracing::info!(scenario = stringify!($name), "running storage scenario");
                $name(store, leftovers).await;
            )*
        }
    };
}

/// Calls `$callback!` with the name of every scenario, in the order
/// [`run_all`] runs them: this crate declares [`run_all`] with it, and each
/// backend's test file its one test per scenario, so no list of them can
/// miss one.
#[macro_export]
macro_rules! with_storage_scenarios {
    ($callback:ident) => {
        $callback!(
            store_is_ready,
            monolithic_upload,
            empty_blob,
            chunked_upload_with_empty_chunks,
            resume_from_serialized_progress,
            failed_stream_keeps_progress_valid,
            earlier_progress_discards_later_data,
            progress_conflict,
            unknown_upload,
            digest_mismatch_leaves_nothing_visible,
            sha512_finish,
            finish_without_hash_state_rehashes,
            writes_without_hash_state_finish_by_rehashing,
            reupload_of_existing_blob,
            range_reads,
            read_of_missing_blob,
            delete_is_idempotent,
            abort_upload,
            list_blobs_order_and_paging,
            list_uploads_order_and_paging,
            concurrent_identical_uploads,
            concurrent_large_uploads,
            upload_file_holds_what_was_written,
            last_chunks,
            concurrent_last_chunks_of_one_blob,
        );
    };
}

crate::with_storage_scenarios!(scenarios);

pub async fn store_is_ready(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    store.check_ready().await.expect("a fresh store is ready");
    assert_clean(store, leftovers).await;
}

pub async fn monolithic_upload(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let data = test_bytes(1, 100_000);
    let digest = Algorithm::Sha256.digest_of(&data);
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    assert_eq!(begun.size, 0);
    let written = store
        .write_chunk(&id, &begun, stream_of(vec![Bytes::from(data.clone())]))
        .await
        .expect("write");
    assert_eq!(written.size, data.len() as u64);
    let size = store
        .finish_upload(&id, &written, &digest)
        .await
        .expect("finish");
    assert_eq!(size, data.len() as u64);
    assert_eq!(
        store.blob_size(&digest).await.expect("size"),
        Some(data.len() as u64)
    );
    assert_eq!(read_whole(store, &digest).await, data);
    // Finishing consumed the upload.
    assert!(matches!(
        store.write_chunk(&id, &written, stream_of(vec![])).await,
        Err(StorageError::UploadNotFound)
    ));
    store.delete_blob(&digest).await.expect("delete");
    assert_clean(store, leftovers).await;
}

pub async fn empty_blob(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let digest = Algorithm::Sha256.digest_of(b"");
    // Finished straight after beginning, without any chunk.
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    assert_eq!(
        store
            .finish_upload(&id, &begun, &digest)
            .await
            .expect("finish"),
        0
    );
    // And again through one empty chunk, which meets the existing blob.
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    let written = store
        .write_chunk(&id, &begun, stream_of(vec![]))
        .await
        .expect("write");
    assert_eq!(written.size, 0);
    assert_eq!(
        store
            .finish_upload(&id, &written, &digest)
            .await
            .expect("finish"),
        0
    );
    let body = store.read_blob(&digest, None).await.expect("read");
    assert_eq!(body.len, 0);
    assert!(read_body(body).await.is_empty());
    store.delete_blob(&digest).await.expect("delete");
    assert_clean(store, leftovers).await;
}

pub async fn chunked_upload_with_empty_chunks(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let data = test_bytes(2, 300_001);
    let digest = Algorithm::Sha256.digest_of(&data);
    let id = UploadId::new_random();
    let mut progress = store.begin_upload(&id).await.expect("begin");
    let chunk_sizes = [0, 1, 7, 4096, 0, 65_536, 100_000, 3, 0];
    let mut offset = 0;
    let mut round = 0;
    while offset < data.len() {
        let size = chunk_sizes[round % chunk_sizes.len()].min(data.len() - offset);
        let chunk = &data[offset..offset + size];
        // Each request body arrives as several pieces, empty ones among them.
        let pieces = if chunk.is_empty() {
            vec![Bytes::new()]
        } else {
            let middle = chunk.len() / 2;
            vec![
                Bytes::copy_from_slice(&chunk[..middle]),
                Bytes::new(),
                Bytes::copy_from_slice(&chunk[middle..]),
            ]
        };
        progress = store
            .write_chunk(&id, &progress, stream_of(pieces))
            .await
            .expect("write");
        offset += size;
        round += 1;
        assert_eq!(progress.size, offset as u64);
    }
    // A stream with no items at all is a zero-length chunk too.
    progress = store
        .write_chunk(&id, &progress, stream_of(vec![]))
        .await
        .expect("write");
    assert_eq!(progress.size, data.len() as u64);
    store
        .finish_upload(&id, &progress, &digest)
        .await
        .expect("finish");
    assert_eq!(read_whole(store, &digest).await, data);
    store.delete_blob(&digest).await.expect("delete");
    assert_clean(store, leftovers).await;
}

/// Every call gets the upload id and progress back from their serialized form,
/// as a request served by another node would.
pub async fn resume_from_serialized_progress(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let data = test_bytes(3, 350_000);
    let digest = Algorithm::Sha256.digest_of(&data);
    let id = UploadId::new_random();
    let mut saved_id = id.to_string();
    let mut saved =
        serde_json::to_string(&store.begin_upload(&id).await.expect("begin")).expect("serialize");
    for chunk in data.chunks(70_000) {
        let id = UploadId::parse(&saved_id).expect("id parses");
        let progress: UploadProgress = serde_json::from_str(&saved).expect("deserialize");
        let progress = store
            .write_chunk(
                &id,
                &progress,
                stream_of(vec![Bytes::copy_from_slice(chunk)]),
            )
            .await
            .expect("write");
        saved_id = id.to_string();
        saved = serde_json::to_string(&progress).expect("serialize");
    }
    let id = UploadId::parse(&saved_id).expect("id parses");
    let progress: UploadProgress = serde_json::from_str(&saved).expect("deserialize");
    assert_eq!(progress.size, data.len() as u64);
    store
        .finish_upload(&id, &progress, &digest)
        .await
        .expect("finish");
    assert_eq!(read_whole(store, &digest).await, data);
    store.delete_blob(&digest).await.expect("delete");
    assert_clean(store, leftovers).await;
}

/// A body that breaks off mid-chunk fails the call with `Incoming`, and the
/// progress from before the call still continues the upload correctly.
pub async fn failed_stream_keeps_progress_valid(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let first = test_bytes(4, 1_000);
    let second = test_bytes(5, 2_345);
    // The broken attempt sends more, and different, bytes than the retry, so
    // any of them surviving would show in the blob.
    let broken = test_bytes(6, 600_000);
    let mut whole = first.clone();
    whole.extend_from_slice(&second);
    let digest = Algorithm::Sha256.digest_of(&whole);

    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    // A failure on the very first chunk.
    let result = store
        .write_chunk(&id, &begun, failing_stream(&broken[..10_000]))
        .await;
    assert_incoming(result);
    let after_first = store
        .write_chunk(&id, &begun, stream_of(vec![Bytes::from(first)]))
        .await
        .expect("write first");
    // A failure on a later chunk, twice in a row.
    for _ in 0..2 {
        let result = store
            .write_chunk(&id, &after_first, failing_stream(&broken))
            .await;
        assert_incoming(result);
    }
    let after_second = store
        .write_chunk(&id, &after_first, stream_of(vec![Bytes::from(second)]))
        .await
        .expect("retry second");
    assert_eq!(after_second.size, whole.len() as u64);
    store
        .finish_upload(&id, &after_second, &digest)
        .await
        .expect("finish");
    assert_eq!(read_whole(store, &digest).await, whole);
    store.delete_blob(&digest).await.expect("delete");
    assert_clean(store, leftovers).await;
}

/// Writing with an older progress discards what was written after it, as the
/// contract says for data a failed call left behind.
pub async fn earlier_progress_discards_later_data(
    store: &dyn BlobStore,
    leftovers: &dyn Leftovers,
) {
    let first = test_bytes(7, 50_000);
    let discarded = test_bytes(8, 70_000);
    let replacement = test_bytes(9, 30_000);
    let mut whole = first.clone();
    whole.extend_from_slice(&replacement);
    let digest = Algorithm::Sha256.digest_of(&whole);

    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    let after_first = store
        .write_chunk(&id, &begun, stream_of(vec![Bytes::from(first)]))
        .await
        .expect("write");
    store
        .write_chunk(&id, &after_first, stream_of(vec![Bytes::from(discarded)]))
        .await
        .expect("write");
    let after_replacement = store
        .write_chunk(&id, &after_first, stream_of(vec![Bytes::from(replacement)]))
        .await
        .expect("write");
    store
        .finish_upload(&id, &after_replacement, &digest)
        .await
        .expect("finish");
    assert_eq!(read_whole(store, &digest).await, whole);
    store.delete_blob(&digest).await.expect("delete");
    assert_clean(store, leftovers).await;
}

/// A progress claiming more bytes than the upload holds is refused by writes
/// and by finishing, and the real progress still works afterwards.
pub async fn progress_conflict(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let data = test_bytes(10, 1_000);
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    let written = store
        .write_chunk(&id, &begun, stream_of(vec![Bytes::from(data.clone())]))
        .await
        .expect("write");
    let mut ahead = written.clone();
    ahead.size += 10;
    assert!(matches!(
        store
            .write_chunk(&id, &ahead, stream_of(vec![Bytes::from_static(b"x")]))
            .await,
        Err(StorageError::ProgressConflict)
    ));
    assert!(matches!(
        store
            .finish_upload(&id, &ahead, &Algorithm::Sha256.digest_of(&data))
            .await,
        Err(StorageError::ProgressConflict)
    ));
    let more = store
        .write_chunk(&id, &written, stream_of(vec![Bytes::from_static(b"tail")]))
        .await
        .expect("write with the real progress");
    assert_eq!(more.size, data.len() as u64 + 4);
    store.abort_upload(&id, Some(&more)).await.expect("abort");
    assert_clean(store, leftovers).await;
}

pub async fn unknown_upload(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let id = UploadId::new_random();
    let progress = UploadProgress {
        size: 0,
        hash_state: Vec::new(),
        backend_state: serde_json::Value::Null,
    };
    assert!(matches!(
        store
            .write_chunk(&id, &progress, stream_of(vec![Bytes::from_static(b"x")]))
            .await,
        Err(StorageError::UploadNotFound)
    ));
    assert!(matches!(
        store
            .finish_upload(&id, &progress, &Algorithm::Sha256.digest_of(b""))
            .await,
        Err(StorageError::UploadNotFound)
    ));
    assert_clean(store, leftovers).await;
}

/// A wrong digest makes nothing visible and leaves the upload finishable.
pub async fn digest_mismatch_leaves_nothing_visible(
    store: &dyn BlobStore,
    leftovers: &dyn Leftovers,
) {
    let data = test_bytes(11, 123_456);
    let right = Algorithm::Sha256.digest_of(&data);
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    let written = store
        .write_chunk(&id, &begun, stream_of(vec![Bytes::from(data.clone())]))
        .await
        .expect("write");
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let wrong = algorithm.digest_of(b"something else");
        match store.finish_upload(&id, &written, &wrong).await {
            Err(StorageError::DigestMismatch { computed }) => {
                assert_eq!(computed, algorithm.digest_of(&data));
            }
            other => panic!("expected a digest mismatch, got {other:?}"),
        }
        assert_eq!(store.blob_size(&wrong).await.expect("size"), None);
        assert_eq!(
            store
                .blob_size(&algorithm.digest_of(&data))
                .await
                .expect("size"),
            None
        );
        assert!(store
            .list_blobs(None, usize::MAX)
            .await
            .expect("list")
            .is_empty());
    }
    store
        .finish_upload(&id, &written, &right)
        .await
        .expect("the upload survived the mismatch");
    assert_eq!(read_whole(store, &right).await, data);
    store.delete_blob(&right).await.expect("delete");
    assert_clean(store, leftovers).await;
}

pub async fn sha512_finish(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let data = test_bytes(12, 200_000);
    let digest = Algorithm::Sha512.digest_of(&data);
    let (id, progress) = upload_in_chunks(store, &data, 64_000).await;
    assert_eq!(
        store
            .finish_upload(&id, &progress, &digest)
            .await
            .expect("finish"),
        data.len() as u64
    );
    assert_eq!(
        store.blob_size(&digest).await.expect("size"),
        Some(data.len() as u64)
    );
    assert_eq!(
        store
            .blob_size(&Algorithm::Sha256.digest_of(&data))
            .await
            .expect("size"),
        None
    );
    remove_the_only_blob(store, &digest, &data).await;
    assert_clean(store, leftovers).await;
}

/// Writing on after the hash state was lost (a progress from an older
/// release) keeps it absent, so finishing hashes the data rather than trusting
/// a state over only the later bytes.
pub async fn writes_without_hash_state_finish_by_rehashing(
    store: &dyn BlobStore,
    leftovers: &dyn Leftovers,
) {
    let data = test_bytes(46, 300_000);
    let digest = Algorithm::Sha256.digest_of(&data);
    let (id, mut progress) = upload_in_chunks(store, &data[..100_000], 50_000).await;
    progress.hash_state.clear();
    let progress = store
        .write_chunk(
            &id,
            &progress,
            stream_of(vec![Bytes::copy_from_slice(&data[100_000..])]),
        )
        .await
        .expect("write");
    assert!(progress.hash_state.is_empty());
    assert_eq!(progress.size, data.len() as u64);
    store
        .finish_upload(&id, &progress, &digest)
        .await
        .expect("finish");
    assert_eq!(
        read_body(store.read_blob(&digest, None).await.expect("read")).await,
        data
    );
    store.delete_blob(&digest).await.expect("delete");
    assert_clean(store, leftovers).await;
}

/// A progress without a hash state (say, from an older release) is finished by
/// hashing the stored bytes again, and still catches a wrong digest.
pub async fn finish_without_hash_state_rehashes(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let data = test_bytes(13, 150_000);
    let digest = Algorithm::Sha256.digest_of(&data);
    let (id, mut progress) = upload_in_chunks(store, &data, 40_000).await;
    progress.hash_state.clear();
    assert!(matches!(
        store
            .finish_upload(&id, &progress, &Algorithm::Sha256.digest_of(b"other"))
            .await,
        Err(StorageError::DigestMismatch { computed }) if computed == digest
    ));
    store
        .finish_upload(&id, &progress, &digest)
        .await
        .expect("finish");
    assert_eq!(read_whole(store, &digest).await, data);
    store.delete_blob(&digest).await.expect("delete");
    assert_clean(store, leftovers).await;
}

pub async fn reupload_of_existing_blob(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let data = test_bytes(14, 77_777);
    let digest = Algorithm::Sha256.digest_of(&data);
    for _ in 0..2 {
        let (id, progress) = upload_in_chunks(store, &data, 30_000).await;
        assert_eq!(
            store
                .finish_upload(&id, &progress, &digest)
                .await
                .expect("finish"),
            data.len() as u64
        );
        assert!(
            leftovers.leftovers().await.is_empty(),
            "the finished upload is gone"
        );
    }
    remove_the_only_blob(store, &digest, &data).await;
    assert_clean(store, leftovers).await;
}

pub async fn range_reads(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    // Large enough that ranges cross the pieces a backend reads in (256 KiB
    // and 1 MiB are common), with starts that are not page-aligned, and on
    // both sides of the size where a backend switches from copying to
    // mapping (64 KiB on the filesystem).
    let data = test_bytes(15, 2_500_000);
    let digest = store_blob(store, &data).await;
    let len = data.len() as u64;
    let ranges = [
        (0, 1),
        (0, 10),
        (250_000, 350_000),
        (262_143, 262_145),
        (4_097, 4_097 + 65_535),
        (4_097, 4_097 + 65_536),
        (1_048_575, 1_048_577),
        (1_000_001, 2_200_003),
        (len - 10, len),
        (len - 1, len),
        (0, len),
        (len, len),
    ];
    for (start, end) in ranges {
        let body = store
            .read_blob(&digest, Some(ByteRange { start, end }))
            .await
            .expect("read range");
        assert_eq!(body.len, end - start, "length of {start}..{end}");
        assert_eq!(
            read_body(body).await,
            &data[start as usize..end as usize],
            "bytes of {start}..{end}"
        );
    }
    store.delete_blob(&digest).await.expect("delete");
    assert_clean(store, leftovers).await;
}

pub async fn read_of_missing_blob(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    for digest in [
        Algorithm::Sha256.digest_of(b"never stored"),
        Algorithm::Sha512.digest_of(b"never stored"),
    ] {
        assert!(matches!(
            store.read_blob(&digest, None).await,
            Err(StorageError::BlobNotFound)
        ));
        assert!(matches!(
            store
                .read_blob(&digest, Some(ByteRange { start: 0, end: 1 }))
                .await,
            Err(StorageError::BlobNotFound)
        ));
        assert_eq!(store.blob_size(&digest).await.expect("size"), None);
    }
    assert_clean(store, leftovers).await;
}

pub async fn delete_is_idempotent(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let data = test_bytes(16, 5_000);
    let digest = Algorithm::Sha256.digest_of(&data);
    store
        .delete_blob(&digest)
        .await
        .expect("deleting an absent blob");
    store_blob(store, &data).await;
    store.delete_blob(&digest).await.expect("delete");
    assert_eq!(store.blob_size(&digest).await.expect("size"), None);
    assert!(matches!(
        store.read_blob(&digest, None).await,
        Err(StorageError::BlobNotFound)
    ));
    store.delete_blob(&digest).await.expect("deleting again");
    assert_clean(store, leftovers).await;
}

pub async fn abort_upload(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let data = test_bytes(17, 10_000);
    let (id, progress) = upload_in_chunks(store, &data, 4_000).await;
    assert!(
        !leftovers.leftovers().await.is_empty(),
        "the leftovers probe sees an upload in progress"
    );
    store
        .abort_upload(&id, Some(&progress))
        .await
        .expect("abort");
    assert!(matches!(
        store
            .write_chunk(&id, &progress, stream_of(vec![Bytes::from_static(b"x")]))
            .await,
        Err(StorageError::UploadNotFound)
    ));
    assert!(matches!(
        store
            .finish_upload(&id, &progress, &Algorithm::Sha256.digest_of(&data))
            .await,
        Err(StorageError::UploadNotFound)
    ));
    store
        .abort_upload(&id, Some(&progress))
        .await
        .expect("aborting again");
    store
        .abort_upload(&UploadId::new_random(), None)
        .await
        .expect("aborting an unknown upload");
    // An upload with no data yet, aborted without its progress.
    let id = UploadId::new_random();
    store.begin_upload(&id).await.expect("begin");
    store.abort_upload(&id, None).await.expect("abort");
    assert_clean(store, leftovers).await;
}

pub async fn list_uploads_order_and_paging(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64
    };
    let started = now();
    let mut uploads = Vec::new();
    for seed in 0..5u64 {
        // Some empty, some with bytes (an S3 upload then has a tail object
        // besides its marker, which must not list it twice).
        let data = test_bytes(300 + seed, (seed as usize % 2) * 1000);
        let (id, progress) = upload_in_chunks(store, &data, 400).await;
        uploads.push((id, progress));
    }
    // A finished and an aborted upload are no longer listed.
    let finished = test_bytes(310, 50);
    let finished_digest = Algorithm::Sha256.digest_of(&finished);
    let (id, progress) = upload_in_chunks(store, &finished, 50).await;
    store
        .finish_upload(&id, &progress, &finished_digest)
        .await
        .expect("finish");
    let (id, progress) = upload_in_chunks(store, &test_bytes(311, 10), 10).await;
    store
        .abort_upload(&id, Some(&progress))
        .await
        .expect("abort");

    let mut expected: Vec<UploadId> = uploads.iter().map(|(id, _)| id.clone()).collect();
    expected.sort();
    let listed = store.list_uploads(None, usize::MAX).await.expect("list");
    let listed_ids: Vec<UploadId> = listed.iter().map(|upload| upload.id.clone()).collect();
    assert_eq!(listed_ids, expected);
    for upload in &listed {
        assert!(
            upload.modified >= started - 5 && upload.modified <= now() + 5,
            "{upload:?} was written during this test, from {started}"
        );
    }
    check_pages(&expected, |after: Option<UploadId>, limit| async move {
        let page = store.list_uploads(after.as_ref(), limit).await;
        let ids = page.expect("list page").into_iter().map(|upload| upload.id);
        ids.collect()
    })
    .await;

    for (id, progress) in &uploads {
        store.abort_upload(id, Some(progress)).await.expect("abort");
    }
    assert!(store
        .list_uploads(None, usize::MAX)
        .await
        .expect("list")
        .is_empty());
    store.delete_blob(&finished_digest).await.expect("delete");
    assert_clean(store, leftovers).await;
}

/// Checks a paged listing against `expected`, its whole content in order:
/// read in pages of 1, 2, 3 and 100 keys, each page asked for after the
/// last key of the one before until a page is empty, it gives `expected`
/// with no page longer than asked; asked for no keys, it gives none.
async fn check_pages<K, F, Fut>(expected: &[K], mut list: F)
where
    K: Clone + PartialEq + std::fmt::Debug,
    F: FnMut(Option<K>, usize) -> Fut,
    Fut: std::future::Future<Output = Vec<K>>,
{
    for page_size in [1, 2, 3, 100] {
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let page = list(after.clone(), page_size).await;
            assert!(page.len() <= page_size, "a page of {} keys", page.len());
            let Some(last) = page.last() else { break };
            after = Some(last.clone());
            keys.extend(page);
        }
        assert_eq!(keys, expected, "pages of {page_size}");
    }
    assert_eq!(list(None, 0).await, [], "a page of no keys");
}

pub async fn list_blobs_order_and_paging(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let mut contents: Vec<Vec<u8>> = (0..8u64)
        .map(|seed| test_bytes(100 + seed, 10 + seed as usize))
        .collect();
    // Two blobs in one fan-out directory, so that paging inside one is covered.
    contents.extend(two_contents_sharing_a_prefix());
    let mut expected = Vec::new();
    for data in &contents {
        expected.push((store_blob(store, data).await, data.len() as u64));
    }
    for seed in 0..2u64 {
        let data = test_bytes(200 + seed, 20);
        let digest = Algorithm::Sha512.digest_of(&data);
        let (id, progress) = upload_in_chunks(store, &data, 20).await;
        store
            .finish_upload(&id, &progress, &digest)
            .await
            .expect("finish");
        expected.push((digest, data.len() as u64));
    }
    expected.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));

    let listed = store.list_blobs(None, usize::MAX).await.expect("list");
    let listed_pairs: Vec<(Digest, u64)> = listed
        .iter()
        .map(|blob| (blob.digest.clone(), blob.size))
        .collect();
    assert_eq!(listed_pairs, expected);
    // Written during this test, so after 2020 and not in the future.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    for blob in &listed {
        assert!(
            blob.modified > 1_577_836_800 && blob.modified <= now + 5,
            "{blob:?}"
        );
    }

    let expected_digests: Vec<Digest> = expected.iter().map(|(d, _)| d.clone()).collect();
    check_pages(
        &expected_digests,
        |after: Option<Digest>, limit| async move {
            let page = store.list_blobs(after.as_ref(), limit).await;
            let digests = page.expect("list page").into_iter().map(|blob| blob.digest);
            digests.collect()
        },
    )
    .await;
    // `after` need not be a stored digest.
    for boundary in [
        format!("sha256:{}", "8".repeat(64)),
        format!("sha256:{}", "f".repeat(64)),
        format!("sha512:{}", "0".repeat(128)),
        format!("sha512:{}", "f".repeat(128)),
    ] {
        let boundary = Digest::parse(&boundary).expect("digest");
        let tail: Vec<Digest> = store
            .list_blobs(Some(&boundary), usize::MAX)
            .await
            .expect("list tail")
            .into_iter()
            .map(|blob| blob.digest)
            .collect();
        let wanted: Vec<Digest> = expected_digests
            .iter()
            .filter(|d| d.as_str() > boundary.as_str())
            .cloned()
            .collect();
        assert_eq!(tail, wanted, "after {boundary}");
    }

    for (digest, _) in &expected {
        store.delete_blob(digest).await.expect("delete");
    }
    assert_clean(store, leftovers).await;
}

/// Several uploads of the same content finishing at the same moment all
/// succeed and leave one intact blob.
pub async fn concurrent_identical_uploads(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let data = test_bytes(18, 300_000);
    let digest = Algorithm::Sha256.digest_of(&data);
    for _round in 0..3 {
        let mut uploads = Vec::new();
        for _ in 0..4 {
            uploads.push(upload_in_chunks(store, &data, 100_000).await);
        }
        let finishes = uploads
            .iter()
            .map(|(id, progress)| store.finish_upload(id, progress, &digest));
        for result in futures::future::join_all(finishes).await {
            assert_eq!(result.expect("finish"), data.len() as u64);
        }
        assert_eq!(read_whole(store, &digest).await, data);
        store.delete_blob(&digest).await.expect("delete");
    }
    assert_clean(store, leftovers).await;
}

/// Many large uploads at once, each sent as a first chunk of uneven pieces
/// and a second chunk, all come out intact. Stores may write large uploads
/// differently from small ones, and only some at a time (the filesystem
/// store's large batches), so this runs more of them than such limits allow.
pub async fn concurrent_large_uploads(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    const UPLOADS: u64 = 6;
    const FIRST: usize = 3 * 1024 * 1024 + 12_345;
    let blobs: Vec<Vec<u8>> = (0..UPLOADS)
        .map(|seed| test_bytes(100 + seed, FIRST + 700_001))
        .collect();
    let uploads = blobs.iter().map(|data| async move {
        let id = UploadId::new_random();
        let progress = store.begin_upload(&id).await.expect("begin");
        // Pieces of an odd size, as a network delivers them, so batches
        // never end on a piece boundary of a round size.
        let pieces: Vec<Bytes> = data[..FIRST]
            .chunks(65_537)
            .map(Bytes::copy_from_slice)
            .collect();
        let progress = store
            .write_chunk(&id, &progress, stream_of(pieces))
            .await
            .expect("first chunk");
        assert_eq!(progress.size, FIRST as u64);
        let rest = vec![Bytes::copy_from_slice(&data[FIRST..])];
        let progress = store
            .write_chunk(&id, &progress, stream_of(rest))
            .await
            .expect("second chunk");
        let digest = Algorithm::Sha256.digest_of(data);
        let size = store
            .finish_upload(&id, &progress, &digest)
            .await
            .expect("finish");
        assert_eq!(size, data.len() as u64);
        digest
    });
    let digests = futures::future::join_all(uploads).await;
    for (digest, data) in digests.iter().zip(&blobs) {
        assert!(read_whole(store, digest).await == *data, "{digest}");
    }
    for digest in &digests {
        store.delete_blob(digest).await.expect("delete");
    }
    assert_clean(store, leftovers).await;
}

/// `write_last_chunk` ends an upload like `write_chunk` in every outcome
/// the caller can see: the blob is stored; a mismatch leaves the upload
/// finishable; a copy of a stored blob is discarded; and a caller that
/// gives up on finishing can write again from its earlier progress.
pub async fn last_chunks(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let data = test_bytes(21, 150_001);
    let digest = Algorithm::Sha256.digest_of(&data);
    let last_chunk = |id: UploadId, progress: UploadProgress, expected: Digest| {
        let pieces: Vec<Bytes> = data.chunks(40_000).map(Bytes::copy_from_slice).collect();
        async move {
            store
                .write_last_chunk(&id, &progress, stream_of(pieces), &expected)
                .await
                .expect("last chunk")
        }
    };

    // Stored, after a mismatch the upload survives.
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    let wrong = Algorithm::Sha256.digest_of(b"not these bytes");
    let written = last_chunk(id.clone(), begun, wrong.clone()).await;
    assert_eq!(written.size, data.len() as u64);
    assert!(matches!(
        store.finish_upload(&id, &written, &wrong).await,
        Err(StorageError::DigestMismatch { computed }) if computed == digest
    ));
    assert_eq!(store.blob_size(&wrong).await.expect("size"), None);
    assert_eq!(store.blob_size(&digest).await.expect("size"), None);
    assert_eq!(
        store
            .finish_upload(&id, &written, &digest)
            .await
            .expect("the upload survived the mismatch"),
        data.len() as u64
    );
    assert_eq!(read_whole(store, &digest).await, data);

    // A copy of the stored blob: discarded, the blob kept.
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    let written = last_chunk(id.clone(), begun, digest.clone()).await;
    assert_eq!(
        store
            .finish_upload(&id, &written, &digest)
            .await
            .expect("finish a copy"),
        data.len() as u64
    );
    assert!(leftovers.leftovers().await.is_empty(), "the copy is gone");
    assert_eq!(read_whole(store, &digest).await, data);
    store.delete_blob(&digest).await.expect("delete");

    // Given up after the last chunk: a write from the earlier progress
    // replaces its bytes.
    let other = test_bytes(22, 70_000);
    let other_digest = Algorithm::Sha256.digest_of(&other);
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    last_chunk(id.clone(), begun.clone(), digest.clone()).await;
    let rewritten = store
        .write_chunk(&id, &begun, stream_of(vec![Bytes::from(other.clone())]))
        .await
        .expect("write from the earlier progress");
    assert_eq!(rewritten.size, other.len() as u64);
    store
        .finish_upload(&id, &rewritten, &other_digest)
        .await
        .expect("finish");
    assert_eq!(read_whole(store, &other_digest).await, other);
    assert_eq!(store.blob_size(&digest).await.expect("size"), None);
    store.delete_blob(&other_digest).await.expect("delete");
    assert_clean(store, leftovers).await;
}

/// Many uploads of one new blob, each sent whole as a last chunk at the
/// same time (a base layer pushed by many builders), all succeed and leave
/// one intact blob, in every order their finishes take.
pub async fn concurrent_last_chunks_of_one_blob(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let data = test_bytes(23, 2 * 1024 * 1024 + 4_321);
    let digest = Algorithm::Sha256.digest_of(&data);
    for _round in 0..2 {
        let uploads = (0..8).map(|_| {
            let (data, digest) = (&data, &digest);
            async move {
                let id = UploadId::new_random();
                let begun = store.begin_upload(&id).await.expect("begin");
                let pieces: Vec<Bytes> = data.chunks(65_537).map(Bytes::copy_from_slice).collect();
                let written = store
                    .write_last_chunk(&id, &begun, stream_of(pieces), digest)
                    .await
                    .expect("last chunk");
                store
                    .finish_upload(&id, &written, digest)
                    .await
                    .expect("finish")
            }
        });
        for size in futures::future::join_all(uploads).await {
            assert_eq!(size, data.len() as u64);
        }
        remove_the_only_blob(store, &digest, &data).await;
    }
    assert_clean(store, leftovers).await;
}

/// Deterministic pseudo-random bytes (xorshift64*), different for each seed, so
/// scenarios need no random number generator and failures reproduce.
pub fn test_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A request body made of the given pieces.
pub fn stream_of(pieces: Vec<Bytes>) -> ByteStream {
    Box::pin(futures::stream::iter(pieces.into_iter().map(Ok)))
}

/// A request body that delivers `prefix` in pieces and then breaks off, as
/// when a client goes away mid-request.
pub fn failing_stream(prefix: &[u8]) -> ByteStream {
    let pieces: Vec<std::io::Result<Bytes>> = prefix
        .chunks(16 * 1024)
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .chain(std::iter::once(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "the client went away",
        ))))
        .collect();
    Box::pin(futures::stream::iter(pieces))
}

/// An upload's local file, where the backend keeps one, holds every byte
/// written so far in order, and stays readable as the blob's file once the
/// upload is finished (a pull-through fetch sends it to clients while it
/// is written).
pub async fn upload_file_holds_what_was_written(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    use std::os::unix::fs::FileExt;
    assert!(
        matches!(
            store.open_upload_file(&UploadId::new_random()).await,
            Ok(None) | Err(StorageError::UploadNotFound)
        ),
        "an unknown upload has no file"
    );
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    let Some(file) = store.open_upload_file(&id).await.expect("open the file") else {
        store.abort_upload(&id, Some(&begun)).await.expect("abort");
        assert_clean(store, leftovers).await;
        return;
    };
    let first = test_bytes(21, 300_000);
    let second = test_bytes(22, 70_000);
    let read = |len: usize| {
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, 0)
            .expect("reading the upload's file");
        bytes
    };
    assert_eq!(file.metadata().expect("stat").len(), 0);
    let progress = store
        .write_chunk(&id, &begun, stream_of(vec![Bytes::from(first.clone())]))
        .await
        .expect("write");
    assert_eq!(file.metadata().expect("stat").len(), first.len() as u64);
    assert_eq!(read(first.len()), first);
    let progress = store
        .write_chunk(&id, &progress, stream_of(vec![Bytes::from(second.clone())]))
        .await
        .expect("write");
    let whole = [first, second].concat();
    assert_eq!(read(whole.len()), whole);
    let digest = Algorithm::Sha256.digest_of(&whole);
    store
        .finish_upload(&id, &progress, &digest)
        .await
        .expect("finish");
    assert_eq!(read(whole.len()), whole, "the file after finishing");
    assert_eq!(read_whole(store, &digest).await, whole);
    drop(file);
    store.delete_blob(&digest).await.expect("delete");
    assert_clean(store, leftovers).await;
}

/// Collects a body, checking that it delivers exactly the length it
/// announced, and that its file region, when it names one, holds the same
/// bytes as its stream.
pub async fn read_body(body: BlobBody) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let announced = body.len;
    let mut stream = body.stream;
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece.expect("reading the blob"));
    }
    assert_eq!(out.len() as u64, announced, "announced length");
    if let Some(region) = body.file {
        let mut from_file = vec![0u8; out.len()];
        region
            .file
            .read_exact_at(&mut from_file, region.offset)
            .expect("reading the blob's file region");
        assert!(from_file == out, "the file region differs from the stream");
    }
    out
}

/// Begins an upload and writes `data` in chunks of `chunk_size`.
pub async fn upload_in_chunks(
    store: &dyn BlobStore,
    data: &[u8],
    chunk_size: usize,
) -> (UploadId, UploadProgress) {
    let id = UploadId::new_random();
    let mut progress = store.begin_upload(&id).await.expect("begin");
    for chunk in data.chunks(chunk_size) {
        progress = store
            .write_chunk(
                &id,
                &progress,
                stream_of(vec![Bytes::copy_from_slice(chunk)]),
            )
            .await
            .expect("write");
    }
    (id, progress)
}

/// Stores `data` as a sha256 blob and returns its digest.
pub async fn store_blob(store: &dyn BlobStore, data: &[u8]) -> Digest {
    let digest = Algorithm::Sha256.digest_of(data);
    let (id, progress) = upload_in_chunks(store, data, 1 << 20).await;
    store
        .finish_upload(&id, &progress, &digest)
        .await
        .expect("finish");
    digest
}

/// Checks that the store holds no blobs, uploads or temporaries.
pub async fn assert_clean(store: &dyn BlobStore, leftovers: &dyn Leftovers) {
    let remains = leftovers.leftovers().await;
    assert!(remains.is_empty(), "left behind: {remains:?}");
    let blobs = store.list_blobs(None, usize::MAX).await.expect("list");
    assert!(blobs.is_empty(), "blobs left behind: {blobs:?}");
}

/// Checks that the store holds one blob, `digest`, whose bytes are `data`,
/// and deletes it.
async fn remove_the_only_blob(store: &dyn BlobStore, digest: &Digest, data: &[u8]) {
    assert!(read_whole(store, digest).await == data, "{digest}");
    let listed = store.list_blobs(None, usize::MAX).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].digest, *digest);
    store.delete_blob(digest).await.expect("delete");
}

async fn read_whole(store: &dyn BlobStore, digest: &Digest) -> Vec<u8> {
    read_body(store.read_blob(digest, None).await.expect("read")).await
}

fn assert_incoming(result: Result<UploadProgress, StorageError>) {
    match result {
        Err(StorageError::Incoming(error)) => {
            assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
        }
        other => panic!("expected an incoming-stream error, got {other:?}"),
    }
}

/// Finds two small contents whose sha256 digests share their first two hex
/// digits; among a few dozen candidates a pair is all but certain.
fn two_contents_sharing_a_prefix() -> [Vec<u8>; 2] {
    let mut seen: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    for seed in 1_000..2_000u64 {
        let data = test_bytes(seed, 33);
        let prefix = Algorithm::Sha256.digest_of(&data).encoded()[..2].to_string();
        if let Some(other) = seen.insert(prefix, data.clone()) {
            return [other, data];
        }
    }
    panic!("no two of a thousand digests share a prefix");
}
