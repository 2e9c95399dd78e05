//! Streaming really is streaming on S3 too: a 256 MiB upload and read must
//! not grow the process's memory by more than about one part and the HTTP
//! client's buffers.
//!
//! This is its own test binary (with its own SeaweedFS) so that no other test
//! shares the process and disturbs the measurement.
#![cfg(all(target_os = "linux", feature = "s3"))]

mod support;

use berth_oci::{Algorithm, UploadId};
use berth_storage::suite;
use berth_storage::BlobStore;
use bytes::Bytes;
use futures::StreamExt;

const PIECE: usize = 64 * 1024;
const PIECES: usize = 4096;
/// What the upload and the read together may add to the peak resident size:
/// well above the two part buffers (16 MiB) and the client's buffers, far
/// below the blob itself (about 18 MiB were measured).
const ALLOWED_GROWTH_KIB: u64 = 48 * 1024;

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .expect("field present");
    line.split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .expect("a number of KiB")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_blob_streams_in_and_out_in_bounded_memory() {
    let Some(probe) =
        support::new_probe("a_256_mib_blob_streams_in_and_out_in_bounded_memory").await
    else {
        return;
    };
    let store = &probe.store;
    // One piece, reused, so the body itself costs no memory per piece.
    let piece = Bytes::from(suite::test_bytes(1, PIECE));
    let mut hasher = Algorithm::Sha256.hasher();
    for _ in 0..PIECES {
        hasher.update(&piece);
    }
    let digest = hasher.finish();
    let body_piece = piece.clone();
    let body = Box::pin(futures::stream::iter(0..PIECES).map(move |_| Ok(body_piece.clone())));

    // Warm the client up (connection pool, TLS-free HTTP state) before the
    // baseline, so that only the streaming is measured.
    store.check_ready().await.expect("ready");
    let baseline = status_kib("VmRSS:");
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    let written = store.write_chunk(&id, &begun, body).await.expect("write");
    let size = store
        .finish_upload(&id, &written, &digest)
        .await
        .expect("finish");
    assert_eq!(size, (PIECE * PIECES) as u64);
    let mut stream = store.read_blob(&digest, None).await.expect("read").stream;
    let mut read = 0u64;
    let mut hasher = Algorithm::Sha256.hasher();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        read += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(read, size);
    assert_eq!(hasher.finish(), digest);
    let peak = status_kib("VmHWM:");
    eprintln!(
        "resident memory grew by at most {} KiB",
        peak.saturating_sub(baseline)
    );
    assert!(
        peak.saturating_sub(baseline) < ALLOWED_GROWTH_KIB,
        "resident memory grew from {baseline} KiB to a peak of {peak} KiB"
    );
    store.delete_blob(&digest).await.expect("delete");
    suite::assert_clean(store, &probe).await;
}
