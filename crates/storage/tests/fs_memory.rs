//! Streaming really is streaming: writing and reading a blob far larger than
//! the buffers must not grow the process's memory by more than a few MiB.
//!
//! This is its own test binary so that no other test shares the process and
//! disturbs the measurement.
#![cfg(target_os = "linux")]

use berth_oci::{Algorithm, UploadId};
use berth_storage::fs::FsBlobStore;
use berth_storage::suite;
use berth_storage::BlobStore;
use bytes::Bytes;
use futures::StreamExt;

const PIECE: usize = 64 * 1024;
const PIECES: usize = 2048;
/// What the upload and the read together may add to the peak resident size.
const ALLOWED_GROWTH_KIB: u64 = 16 * 1024;

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
async fn a_128_mib_blob_streams_in_and_out_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsBlobStore::open(dir.path().to_path_buf()).expect("open");
    // One piece, reused, so the body itself costs no memory per piece.
    let piece = Bytes::from(suite::test_bytes(1, PIECE));
    let mut hasher = Algorithm::Sha256.hasher();
    for _ in 0..PIECES {
        hasher.update(&piece);
    }
    let digest = hasher.finish();
    let body_piece = piece.clone();
    let body = Box::pin(futures::stream::iter(0..PIECES).map(move |_| Ok(body_piece.clone())));

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
    while let Some(chunk) = stream.next().await {
        read += chunk.expect("chunk").len() as u64;
    }
    assert_eq!(read, size);
    let peak = status_kib("VmHWM:");
    assert!(
        peak.saturating_sub(baseline) < ALLOWED_GROWTH_KIB,
        "resident memory grew from {baseline} KiB to a peak of {peak} KiB"
    );
}
