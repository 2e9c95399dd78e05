//! The shared suite and filesystem-specific checks against [`FsBlobStore`].

use std::path::{Path, PathBuf};

use berth_oci::{Algorithm, Digest, UploadId};
use berth_storage::fs::FsBlobStore;
use berth_storage::suite::{self, Leftovers};
use berth_storage::{BlobStore, ByteStream, StorageError};
use bytes::Bytes;
use futures::StreamExt;

/// A store in a fresh temporary directory, removed when the test ends.
fn new_store() -> (tempfile::TempDir, FsBlobStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsBlobStore::open(dir.path().to_path_buf()).expect("open");
    (dir, store)
}

/// Runs each named suite scenario as its own test in its own store.
macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_dir, store) = new_store();
                suite::$name(&store, &store).await;
            }
        )*
    };
}

berth_storage::with_storage_scenarios!(suite_tests);

/// All scenarios in sequence in one store, which also shows that each one
/// leaves the store as it found it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_in_one_store() {
    let (_dir, store) = new_store();
    suite::run_all(&store, &store).await;
}

/// Every file and directory under `root`, relative to it, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let relative = path.strip_prefix(root).expect("under root");
            out.push(relative.display().to_string());
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn layout_matches_the_documented_tree() {
    let (dir, store) = new_store();
    assert_eq!(
        tree(dir.path()),
        ["blobs", "blobs/sha256", "blobs/sha512", "tmp", "uploads"]
    );

    let id = UploadId::new_random();
    store.begin_upload(&id).await.expect("begin");
    assert_eq!(
        tree(dir.path()),
        [
            "blobs".to_string(),
            "blobs/sha256".into(),
            "blobs/sha512".into(),
            "tmp".into(),
            "uploads".into(),
            format!("uploads/{id}"),
        ]
    );
    store.abort_upload(&id, None).await.expect("abort");

    let sha256 = suite::store_blob(&store, b"layout").await;
    let sha512 = Algorithm::Sha512.digest_of(b"layout");
    let (id, progress) = suite::upload_in_chunks(&store, b"layout", 3).await;
    store
        .finish_upload(&id, &progress, &sha512)
        .await
        .expect("finish");
    let blob_file = |digest: &Digest| {
        let hex = digest.encoded();
        format!("blobs/{}/{}/{hex}", digest.algorithm().as_str(), &hex[..2])
    };
    let mut expected = vec![
        "blobs".to_string(),
        "blobs/sha256".into(),
        format!("blobs/sha256/{}", &sha256.encoded()[..2]),
        blob_file(&sha256),
        "blobs/sha512".into(),
        format!("blobs/sha512/{}", &sha512.encoded()[..2]),
        blob_file(&sha512),
        "tmp".into(),
        "uploads".into(),
    ];
    expected.sort();
    assert_eq!(tree(dir.path()), expected);
    assert_eq!(
        std::fs::read(dir.path().join(blob_file(&sha256))).expect("blob file"),
        b"layout"
    );
}

/// Upload files, and so blobs (the same files, linked), are readable by
/// the registry's own account only, whatever the process's umask.
#[tokio::test]
async fn uploads_and_blobs_are_private_files() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, store) = new_store();
    let mode = |path: &Path| std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
    let id = UploadId::new_random();
    store.begin_upload(&id).await.expect("begin");
    assert_eq!(
        mode(&dir.path().join("uploads").join(id.to_string())),
        0o600
    );
    store.abort_upload(&id, None).await.expect("abort");
    let digest = suite::store_blob(&store, b"private").await;
    let hex = digest.encoded();
    let blob = dir.path().join("blobs/sha256").join(&hex[..2]).join(hex);
    assert_eq!(mode(&blob), 0o600);
}

/// Files that are not well-formed blobs are left out of listings.
#[tokio::test]
async fn listing_skips_foreign_files() {
    let (dir, store) = new_store();
    let digest = suite::store_blob(&store, b"listed").await;
    let hex = digest.encoded();
    let fan_out = dir.path().join("blobs/sha256").join(&hex[..2]);
    // A digest in the wrong fan-out directory, uppercase hex, a short name, an
    // editor's backup, a directory posing as a blob and a bad fan-out name.
    let wrong_prefix = if hex.starts_with("00") { "11" } else { "00" };
    std::fs::write(fan_out.join(format!("{wrong_prefix}{}", &hex[2..])), b"x").expect("write");
    std::fs::write(fan_out.join(hex.to_uppercase()), b"x").expect("write");
    std::fs::write(fan_out.join(&hex[..10]), b"x").expect("write");
    std::fs::write(fan_out.join(format!("{hex}~")), b"x").expect("write");
    std::fs::create_dir(fan_out.join(format!("{}0", &hex[..63]))).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("blobs/sha256/zz")).expect("mkdir");
    std::fs::write(dir.path().join("blobs/sha256/zz").join(hex), b"x").expect("write");
    let listed = store.list_blobs(None, 100).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].digest, digest);
}

/// A failed begin leaves no temporary behind, and `open` removes a crash's
/// stale temporaries but not fresh ones another process may be using.
#[tokio::test]
async fn temporaries_are_cleaned() {
    let (dir, store) = new_store();
    let tmp = dir.path().join("tmp");
    let id = UploadId::new_random();
    store.begin_upload(&id).await.expect("begin");
    let error = store.begin_upload(&id).await.expect_err("a duplicate id");
    assert!(matches!(error, StorageError::Io(_)), "{error:?}");
    assert!(tree(&tmp).is_empty(), "{:?}", tree(&tmp));
    store.abort_upload(&id, None).await.expect("abort");

    let stale = tmp.join("stale-upload");
    std::fs::create_dir(&stale).expect("mkdir");
    std::fs::write(stale.join("data"), b"junk").expect("write");
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::open(&stale)
        .expect("open dir")
        .set_modified(two_hours_ago)
        .expect("set mtime");
    let fresh: PathBuf = tmp.join("fresh-file");
    std::fs::write(&fresh, b"in use").expect("write");

    let reopened = FsBlobStore::open(dir.path().to_path_buf()).expect("reopen");
    assert_eq!(tree(&tmp), ["fresh-file"]);
    std::fs::remove_file(&fresh).expect("remove");
    assert!(reopened.leftovers().await.is_empty());
}

/// Uploads left by an older Berth as `uploads/<id>/data` directories are
/// converted when the store opens, and go on where they stopped; a directory
/// without data is removed.
#[tokio::test]
async fn uploads_of_the_older_layout_are_converted() {
    let (dir, store) = new_store();
    let data = suite::test_bytes(7, 250_000);
    let (id, progress) = suite::upload_in_chunks(&store, &data[..100_000], 100_000).await;
    drop(store);
    let uploads = dir.path().join("uploads");
    let file = uploads.join(id.to_string());
    let parked = dir.path().join("parked");
    std::fs::rename(&file, &parked).expect("park");
    std::fs::create_dir(&file).expect("mkdir");
    std::fs::rename(&parked, file.join("data")).expect("into the old layout");
    let empty = UploadId::new_random();
    std::fs::create_dir(uploads.join(empty.to_string())).expect("mkdir");

    let store = FsBlobStore::open(dir.path().to_path_buf()).expect("reopen");
    assert_eq!(tree(&uploads), [id.to_string()]);
    let progress = store
        .write_chunk(
            &id,
            &progress,
            suite::stream_of(vec![Bytes::copy_from_slice(&data[100_000..])]),
        )
        .await
        .expect("the upload goes on");
    let digest = Algorithm::Sha256.digest_of(&data);
    store
        .finish_upload(&id, &progress, &digest)
        .await
        .expect("finish");
    let body = store.read_blob(&digest, None).await.expect("read");
    assert!(suite::read_body(body).await == data);
    store.delete_blob(&digest).await.expect("delete");
    suite::assert_clean(&store, &store).await;
}

/// A mismatch found by re-reading the data from disk leaves the upload intact.
#[tokio::test]
async fn sha512_mismatch_keeps_the_upload_data() {
    let (dir, store) = new_store();
    let data = suite::test_bytes(1, 10_000);
    let (id, progress) = suite::upload_in_chunks(&store, &data, 3_000).await;
    let wrong = Algorithm::Sha512.digest_of(b"wrong");
    assert!(matches!(
        store.finish_upload(&id, &progress, &wrong).await,
        Err(StorageError::DigestMismatch { .. })
    ));
    let stored =
        std::fs::read(dir.path().join("uploads").join(id.to_string())).expect("upload data");
    assert_eq!(stored, data);
}

const LARGE_CHUNK: usize = 64 * 1024;
const LARGE_CHUNKS: usize = 1024;

/// A body of 64 MiB produced piece by piece, never held in memory whole.
fn large_body() -> ByteStream {
    Box::pin(
        futures::stream::iter(0..LARGE_CHUNKS)
            .map(|i| Ok(Bytes::from(suite::test_bytes(i as u64, LARGE_CHUNK)))),
    )
}

fn large_digest(algorithm: Algorithm) -> Digest {
    let mut hasher = algorithm.hasher();
    for i in 0..LARGE_CHUNKS {
        hasher.update(&suite::test_bytes(i as u64, LARGE_CHUNK));
    }
    hasher.finish()
}

/// 64 MiB streamed in, committed by digest, and streamed out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_streamed_upload() {
    let (_dir, store) = new_store();
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    let written = store
        .write_chunk(&id, &begun, large_body())
        .await
        .expect("write");
    let size = (LARGE_CHUNK * LARGE_CHUNKS) as u64;
    assert_eq!(written.size, size);
    let digest = large_digest(Algorithm::Sha256);
    assert_eq!(
        store
            .finish_upload(&id, &written, &digest)
            .await
            .expect("finish"),
        size
    );
    let body = store.read_blob(&digest, None).await.expect("read");
    assert_eq!(body.len, size);
    let mut hasher = Algorithm::Sha256.hasher();
    let mut read = 0u64;
    let mut stream = body.stream;
    while let Some(piece) = stream.next().await {
        let piece = piece.expect("piece");
        assert!(piece.len() <= berth_storage::fs::READ_CHUNK_SIZE);
        read += piece.len() as u64;
        hasher.update(&piece);
    }
    assert_eq!(read, size);
    assert_eq!(hasher.finish(), digest);
}

/// A pull that is under way when garbage collection deletes its blob still
/// receives every byte: the read holds the open file (and its maps), and
/// unlinking a file leaves both readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_survives_deletion_mid_stream() {
    let (_dir, store) = new_store();
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let digest = Algorithm::Sha256.digest_of(&data);
    let id = UploadId::new_random();
    let begun = store.begin_upload(&id).await.expect("begin");
    let body: ByteStream = Box::pin(futures::stream::iter(
        data.chunks(300_000)
            .map(|piece| Ok(Bytes::copy_from_slice(piece)))
            .collect::<Vec<_>>(),
    ));
    let written = store.write_chunk(&id, &begun, body).await.expect("write");
    store
        .finish_upload(&id, &written, &digest)
        .await
        .expect("finish");

    let body = store.read_blob(&digest, None).await.expect("read");
    let mut stream = body.stream;
    let mut received = stream
        .next()
        .await
        .expect("a first piece")
        .expect("bytes")
        .to_vec();
    store.delete_blob(&digest).await.expect("delete");
    assert_eq!(store.blob_size(&digest).await.expect("size"), None);
    while let Some(piece) = stream.next().await {
        received.extend_from_slice(&piece.expect("bytes after the delete"));
    }
    assert!(received == data, "the stream returned other bytes");
}

/// Opening a store is safe while servers use it: `berth gc` opens the store
/// of a running server, whose uploads finish (their files vanish) while the
/// open lists `uploads/`. A SIGKILL loop saw `berth gc` fail to start with
/// "No such file or directory" when an entry vanished between the listing
/// and the look at it. Here one thread creates and removes upload files as
/// fast as it can while the store is opened again and again; every open
/// must succeed.
#[test]
fn open_while_uploads_come_and_go() {
    let (dir, _store) = new_store();
    let uploads = dir.path().join("uploads");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        let uploads = uploads.clone();
        std::thread::spawn(move || {
            let mut created = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let names: Vec<PathBuf> = (0..32)
                    .map(|_| uploads.join(UploadId::new_random().to_string()))
                    .collect();
                for name in &names {
                    std::fs::write(name, b"").expect("create an upload file");
                }
                for name in &names {
                    std::fs::remove_file(name).expect("remove an upload file");
                }
                created += names.len() as u64;
            }
            created
        })
    };
    let mut failures = Vec::new();
    for _ in 0..300 {
        if let Err(error) = FsBlobStore::open(dir.path().to_path_buf()) {
            failures.push(error.to_string());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let created = churn.join().expect("the churning thread");
    assert!(created > 0, "the churning thread never ran");
    assert!(failures.is_empty(), "opens failed: {failures:?}");
}
