//! Faults of what Berth depends on, with the real binary: a full disk, a
//! read-only data directory, SQLite's write lock held by another process,
//! PostgreSQL killed and restarted, and an S3 store that is down, slow or
//! failing (through a fault-injecting proxy). The PostgreSQL test kills
//! the test cluster, so no other test of this binary may use it.
//!
//! Each fault must get a clean answer: `503 UNAVAILABLE` with a JSON body
//! (and `Retry-After` where waiting helps), never a hang or a bare `500`;
//! it must leave no partial state; `/readyz` must answer at once and name
//! the dependency that is down; and once the fault is gone, Berth works
//! again without a restart. The tests print how long the error and the
//! recovery took; they assert no durations (a machine under load may be
//! slow), only that no answer takes as long as a hang ([`HANG`]).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_test_support::postgres;
use berth_test_support::seaweedfs as storage_support;
use support::fault_proxy::{Fault, FaultProxy};
use support::http::{try_request_within, HttpResponse, RequestBody};
use support::oci::{random_bytes, sha256_digest};
use support::TestRegistry;

/// No answer may take this long: a registry waiting on a dead dependency
/// must give up well before (it gives up within a few seconds); waiting
/// this long is what "hangs" means here.
const HANG: Duration = Duration::from_secs(15);

/// How long a test waits for `/readyz` to say ready after a fault ends.
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);

/// One request, which must be answered within [`HANG`], and how long the
/// answer took.
fn call(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: RequestBody<'_>,
) -> (HttpResponse, Duration) {
    let started = Instant::now();
    let answer = try_request_within(Some(HANG), addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: no answer within {HANG:?} ({e})"));
    (answer, started.elapsed())
}

/// The `code` of the first error in an error body.
fn error_code(response: &HttpResponse) -> String {
    serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|body| body["errors"][0]["code"].as_str().map(str::to_string))
        .unwrap_or_else(|| {
            format!(
                "(no error body: {:?})",
                String::from_utf8_lossy(&response.body)
            )
        })
}

/// Checks that an answer is the clean refusal of an unavailable dependency.
fn assert_unavailable(what: &str, response: &HttpResponse, retry_after: Option<bool>) {
    assert_eq!(
        (response.status, error_code(response).as_str()),
        (503, "UNAVAILABLE"),
        "{what}: {}",
        String::from_utf8_lossy(&response.body)
    );
    if let Some(expected) = retry_after {
        assert_eq!(
            response.header("retry-after").is_some(),
            expected,
            "{what}: Retry-After"
        );
    }
}

/// `/readyz`: its status, its JSON body and how long it took.
fn readyz(addr: &str) -> (u16, serde_json::Value, Duration) {
    let (answer, took) = call(addr, "GET", "/readyz", &[], RequestBody::Empty);
    let body = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("/readyz body is not JSON ({e}): {:?}", answer.body));
    (answer.status, body, took)
}

/// Asserts `/readyz` says `dependency` is down for `reason` (and only it
/// if `only`), and returns how long it took to say so.
fn assert_not_ready(addr: &str, dependency: &str, reason: &str) -> Duration {
    let (status, body, took) = readyz(addr);
    assert_eq!(status, 503, "/readyz: {body}");
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body[dependency]["ready"], false, "{body}");
    assert_eq!(body[dependency]["reason"], reason, "{body}");
    took
}

/// Polls `/readyz` until it answers 200; returns how long that took.
fn wait_until_ready(addr: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body, _) = readyz(addr);
        if status == 200 {
            assert_eq!(body["ready"], true, "{body}");
            return started.elapsed();
        }
        assert!(
            started.elapsed() < RECOVERY_LIMIT,
            "not ready {RECOVERY_LIMIT:?} after the fault ended: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pushes `data` as one blob (`POST ?digest=` with the body).
fn push_blob(addr: &str, repository: &str, data: &[u8]) -> (HttpResponse, Duration) {
    call(
        addr,
        "POST",
        &format!(
            "/v2/{repository}/blobs/uploads/?digest={}",
            sha256_digest(data)
        ),
        &[],
        RequestBody::Bytes(data),
    )
}

/// Pushes a small image (config, one layer, manifest tagged `tag`) and
/// returns the manifest bytes.
fn push_image(addr: &str, repository: &str, tag: &str) -> Vec<u8> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#).into_bytes();
    let layer = random_bytes(50_000);
    for blob in [&config, &layer] {
        let (answer, _) = push_blob(addr, repository, blob);
        assert_eq!(
            answer.status,
            201,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256_digest(&layer), "size": layer.len()}],
    }))
    .expect("manifest");
    let (answer, _) = call(
        addr,
        "PUT",
        &format!("/v2/{repository}/manifests/{tag}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        RequestBody::Bytes(&manifest),
    );
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    manifest
}

/// Pulls the image `push_image` pushed: the manifest and every blob.
fn assert_pulls(addr: &str, repository: &str, tag: &str, manifest: &[u8]) {
    let (answer, _) = call(
        addr,
        "GET",
        &format!("/v2/{repository}/manifests/{tag}"),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        RequestBody::Empty,
    );
    assert_eq!(answer.status, 200, "manifest {repository}:{tag}");
    assert_eq!(answer.body, manifest);
    let parsed: serde_json::Value = serde_json::from_slice(manifest).expect("manifest JSON");
    let mut digests = vec![parsed["config"]["digest"]
        .as_str()
        .expect("config")
        .to_string()];
    digests.push(
        parsed["layers"][0]["digest"]
            .as_str()
            .expect("layer")
            .to_string(),
    );
    for digest in digests {
        let (answer, _) = call(
            addr,
            "GET",
            &format!("/v2/{repository}/blobs/{digest}"),
            &[],
            RequestBody::Empty,
        );
        assert_eq!(answer.status, 200, "blob {digest}");
        assert_eq!(sha256_digest(&answer.body), digest);
    }
}

/// Prints a fault's figures for the report.
fn report(fault: &str, figures: &[(&str, Duration)]) {
    let shown: Vec<String> = figures
        .iter()
        .map(|(what, took)| format!("{what} {} ms", took.as_millis()))
        .collect();
    eprintln!("FAULT {fault}: {}", shown.join(", "));
}

/// Every file under `dir` with its size, for checking what a fault left.
fn files_with_sizes(dir: &Path) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let meta = entry.metadata().expect("metadata");
            found.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
        }
    }
    found.sort();
    found
}

/// A tmpfs of `size` mounted for the test and unmounted when dropped.
struct SmallDisk {
    mount_point: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts one, or returns `None` after recording why the test cannot
    /// run (it needs root; under `CI=true` that is a failure).
    fn mount(test: &str, size: &str) -> Option<SmallDisk> {
        if support::is_external_registry() {
            support::record_skip(test, "mounts a filesystem for its own server");
            return None;
        }
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        if !support::is_root() {
            assert!(!in_ci, "{test}: needs root to mount a filesystem (CI=true)");
            support::record_skip(test, "needs root to mount a small filesystem");
            return None;
        }
        let mount_point = tempfile::tempdir().expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(mount_point.path())
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            assert!(!in_ci, "{test}: cannot mount a tmpfs (CI=true)");
            support::record_skip(test, "cannot mount a tmpfs here");
            return None;
        }
        Some(SmallDisk { mount_point })
    }

    fn path(&self) -> &Path {
        self.mount_point.path()
    }

    /// Remounts read-only or read-write. A remount read-only fails while a
    /// file is open for writing, which lasts milliseconds here, so it is
    /// tried a few times.
    fn remount(&self, options: &str) {
        for _ in 0..50 {
            let done = Command::new("mount")
                .args(["-o", &format!("remount,{options}")])
                .arg(self.path())
                .status()
                .is_ok_and(|status| status.success());
            if done {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cannot remount {} {options}", self.path().display());
    }

    /// Writes a file until the filesystem is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let block = vec![0x5a_u8; 64 * 1024];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let _ = file.flush();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

/// A disk that fills up under Berth: `/readyz` says the storage is full,
/// a push is refused with `503` and leaves no partial upload behind, pulls
/// go on, and once there is room again pushes work without a restart.
/// (Before: the push got `500 INTERNAL_ERROR`, its partial upload file
/// stayed and kept the space, and `/readyz` said ready.)
#[test]
fn disk_full() {
    const TEST: &str = "disk_full";
    let Some(disk) = SmallDisk::mount(TEST, "48m") else {
        return;
    };
    // Blob storage on the small disk; the database stays in the test's own
    // data directory, so the fault is storage's alone.
    let data_dir = disk.path().join("data");
    let storage = format!("fs://{}", data_dir.display());
    let mut registry = TestRegistry::start_with(&["--storage", &storage]);
    let addr = registry.addr.clone();
    let manifest = push_image(&addr, "faults/full", "before");

    let filler = disk.fill();
    let ready_took = assert_not_ready(&addr, "storage", "full");
    let blob = random_bytes(3 << 20);
    let (answer, monolithic_took) = push_blob(&addr, "faults/full", &blob);
    assert_unavailable("a push on a full disk", &answer, None);

    // A chunked push: its session may open (an empty file needs no block),
    // but the chunk is refused and nothing of it stays on the disk.
    let (started, _) = call(
        &addr,
        "POST",
        "/v2/faults/full/blobs/uploads/",
        &[],
        RequestBody::Empty,
    );
    let mut chunk_took = Duration::ZERO;
    if started.status == 202 {
        let location = started.header("location").expect("Location").to_string();
        let range = format!("0-{}", blob.len() - 1);
        let (answer, took) = call(
            &addr,
            "PATCH",
            &location,
            &[("Content-Range", &range)],
            RequestBody::Bytes(&blob),
        );
        chunk_took = took;
        assert_unavailable("a chunk on a full disk", &answer, None);
        let (status, _) = call(&addr, "GET", &location, &[], RequestBody::Empty);
        assert_eq!(status.status, 204);
        assert_eq!(
            status.header("range"),
            Some("0-0"),
            "the session holds nothing"
        );
    } else {
        assert_unavailable("opening an upload on a full disk", &started, None);
    }
    let uploads = files_with_sizes(&data_dir.join("uploads"));
    assert!(
        uploads.iter().all(|(_, size)| *size == 0),
        "partial upload data stayed: {uploads:?}"
    );
    assert!(files_with_sizes(&data_dir.join("tmp")).is_empty());
    assert_pulls(&addr, "faults/full", "before", &manifest);

    std::fs::remove_file(filler).expect("remove the filler");
    let recovered = wait_until_ready(&addr);
    let (answer, _) = push_blob(&addr, "faults/full", &blob);
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    push_image(&addr, "faults/full", "after");
    report(
        "disk full",
        &[
            ("/readyz", ready_took),
            ("monolithic push refused", monolithic_took),
            ("chunk refused", chunk_took),
            ("ready again after space freed", recovered),
        ],
    );
    registry.stop();
}

/// The storage directory turns read-only under Berth (remounted): `/readyz`
/// says so, pushes are refused with `503`, pulls go on, and once it is
/// writable again pushes work without a restart.
#[test]
fn read_only_data_directory() {
    const TEST: &str = "read_only_data_directory";
    let Some(disk) = SmallDisk::mount(TEST, "64m") else {
        return;
    };
    // Only blob storage is on the disk. The database and the node name file
    // stay in the test's data directory: a filesystem cannot turn read-only
    // while SQLite holds files on it open for writing.
    let storage = format!("fs://{}", disk.path().display());
    let mut registry = TestRegistry::start_with(&["--storage", &storage]);
    let addr = registry.addr.clone();
    let manifest = push_image(&addr, "faults/ro", "before");

    disk.remount("ro");
    let ready_took = assert_not_ready(&addr, "storage", "read-only");
    let blob = random_bytes(100_000);
    let (answer, push_took) = push_blob(&addr, "faults/ro", &blob);
    assert_unavailable("a push to a read-only directory", &answer, None);
    let (answer, _) = call(
        &addr,
        "POST",
        "/v2/faults/ro/blobs/uploads/",
        &[],
        RequestBody::Empty,
    );
    assert_unavailable("opening an upload in a read-only directory", &answer, None);
    assert_pulls(&addr, "faults/ro", "before", &manifest);

    disk.remount("rw");
    let recovered = wait_until_ready(&addr);
    let (answer, _) = push_blob(&addr, "faults/ro", &blob);
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(files_with_sizes(&disk.path().join("uploads")).is_empty());
    report(
        "read-only data directory",
        &[
            ("/readyz", ready_took),
            ("push refused", push_took),
            ("ready again after remount", recovered),
        ],
    );
    registry.stop();
}

/// Another process holds SQLite's write lock (a connection of this test,
/// in a transaction): pushes are refused with `503` and `Retry-After`
/// within about the busy timeout, `/readyz` names the database, pulls go
/// on, and once the lock is released pushes work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_write_lock_held_elsewhere() {
    use sqlx::{ConnectOptions, Connection};
    const TEST: &str = "sqlite_write_lock_held_elsewhere";
    if support::is_external_registry() {
        support::record_skip(TEST, "locks its own server's database");
        return;
    }
    let registry = TestRegistry::start();
    let data_dir = registry
        .data_dir
        .as_ref()
        .expect("local")
        .path()
        .to_path_buf();
    let addr = registry.addr.clone();
    let manifest = {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || push_image(&addr, "faults/busy", "before"))
            .await
            .expect("push")
    };

    let mut holder = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("berth.db"))
        .connect()
        .await
        .expect("open the database");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .expect("take the write lock");

    let during = {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            let ready_took = assert_not_ready(&addr, "database", "not answering");
            let (answer, push_took) = push_blob(&addr, "faults/busy", &random_bytes(10_000));
            assert_unavailable("a push while the lock is held", &answer, Some(true));
            assert_pulls(&addr, "faults/busy", "before", &manifest);
            let uploads = files_with_sizes(&data_dir.join("uploads"));
            assert!(uploads.is_empty(), "the refused push left {uploads:?}");
            (ready_took, push_took)
        })
        .await
        .expect("checks while locked")
    };

    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("release the lock");
    holder.close().await.expect("close");
    let recovered = {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            let recovered = wait_until_ready(&addr);
            push_image(&addr, "faults/busy", "after");
            recovered
        })
        .await
        .expect("recovery")
    };
    report(
        "SQLite write lock held elsewhere",
        &[
            ("/readyz", during.0),
            ("push refused", during.1),
            ("ready again after release", recovered),
        ],
    );
}

/// The management API when the database does not answer (issue 11): with
/// SQLite's write lock held elsewhere, a change through `/api/v1` is
/// refused with the API's `503` (`unavailable`, with `Retry-After`), never
/// a `500`, and goes through once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_changes_while_the_database_is_locked() {
    use base64::Engine;
    use sqlx::{ConnectOptions, Connection};
    const TEST: &str = "api_changes_while_the_database_is_locked";
    if support::is_external_registry() {
        support::record_skip(TEST, "locks its own server's database");
        return;
    }
    let registry = TestRegistry::start_with(&["--auth"]);
    let data_dir = registry
        .data_dir
        .as_ref()
        .expect("local")
        .path()
        .to_path_buf();
    let password = std::fs::read_to_string(data_dir.join("initial-admin-password"))
        .expect("the generated administrator password");
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{}", password.trim()));
    let authorization = format!("Basic {credentials}");
    let addr = registry.addr.clone();
    let create = move |name: &'static str| {
        let body = format!(r#"{{"name":"{name}"}}"#);
        call(
            &addr,
            "POST",
            "/api/v1/namespaces",
            &[
                ("Authorization", authorization.as_str()),
                ("Content-Type", "application/json"),
            ],
            RequestBody::Bytes(body.as_bytes()),
        )
    };

    let mut holder = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("berth.db"))
        .connect()
        .await
        .expect("open the database");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .expect("take the write lock");
    let (refused, refused_took) = {
        let create = create.clone();
        tokio::task::spawn_blocking(move || create("locked-out"))
            .await
            .expect("the refused change")
    };
    let body: serde_json::Value = serde_json::from_slice(&refused.body).unwrap_or_default();
    assert_eq!(
        (refused.status, body["code"].as_str()),
        (503, Some("unavailable")),
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert!(refused.header("retry-after").is_some(), "Retry-After");

    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("release the lock");
    holder.close().await.expect("close");
    let (created, created_took) = tokio::task::spawn_blocking(move || create("locked-out"))
        .await
        .expect("the change after the lock");
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    report(
        "SQLite write lock held elsewhere, management API",
        &[
            ("change refused", refused_took),
            ("change made after release", created_took),
        ],
    );
}

/// The S3 store killed (nothing listens), slow (answers after 20 s) and
/// failing (every request `500`), one after the other, through a proxy:
/// blob reads and pushes are refused with `503` and `Retry-After`,
/// manifests (in the database) are still served, `/readyz` names the
/// storage, and after each fault Berth serves again without a restart;
/// one upload purge leaves no upload in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_down_slow_and_failing() {
    const TEST: &str = "s3_down_slow_and_failing";
    if support::is_external_registry() {
        support::record_skip(TEST, "starts its own server");
        return;
    }
    let Some(weed) = storage_support::weed(TEST) else {
        return;
    };
    let bucket = weed.new_bucket().await;
    let proxy = FaultProxy::start(weed.endpoint.trim_start_matches("http://"));
    let flags = support::s3_flags(&bucket, &format!("http://{}", proxy.addr));
    let registry = TestRegistry::start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let addr = registry.addr.clone();
    let proxy = std::sync::Arc::new(proxy);
    let checked = {
        let (addr, proxy) = (addr.clone(), proxy.clone());
        tokio::task::spawn_blocking(move || {
            let manifest = push_image(&addr, "faults/s3", "before");
            let parsed: serde_json::Value = serde_json::from_slice(&manifest).expect("JSON");
            let layer = parsed["layers"][0]["digest"]
                .as_str()
                .expect("layer")
                .to_string();
            let mut figures = Vec::new();
            for (name, fault) in [
                ("S3 down", Fault::Down),
                ("S3 slow", Fault::Slow(Duration::from_secs(20))),
                ("S3 answering 500", Fault::Fail500),
            ] {
                proxy.set(fault);
                let ready_took = assert_not_ready(&addr, "storage", "not answering");
                let (answer, read_took) = call(
                    &addr,
                    "GET",
                    &format!("/v2/faults/s3/blobs/{layer}"),
                    &[],
                    RequestBody::Empty,
                );
                assert_unavailable(&format!("{name}: a blob read"), &answer, Some(true));
                let (answer, push_took) = push_blob(&addr, "faults/s3", &random_bytes(20_000));
                assert_unavailable(&format!("{name}: a push"), &answer, Some(true));
                let (answer, _) = call(
                    &addr,
                    "GET",
                    "/v2/faults/s3/manifests/before",
                    &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
                    RequestBody::Empty,
                );
                assert_eq!(
                    answer.status, 200,
                    "{name}: manifests come from the database"
                );
                proxy.set(Fault::None);
                let recovered = wait_until_ready(&addr);
                assert_pulls(&addr, "faults/s3", "before", &manifest);
                figures.push((name, ready_took, read_took, push_took, recovered));
            }
            push_image(&addr, "faults/s3", "after");
            figures
        })
        .await
        .expect("checks")
    };
    // A write the store took but answered too late for Berth (the slow
    // fault holds answers back, not requests) leaves upload data that no
    // session names: what a crash leaves too, and what the upload purge
    // sweeps once it has been idle for `upload_ttl`. One purge, as of two
    // days later, must leave the bucket without uploads.
    let mut registry = registry;
    registry.stop();
    let config = berth_storage::s3::S3Config {
        endpoint: Some(weed.endpoint.clone()),
        path_style: true,
        allow_http: true,
        access_key_id: Some(storage_support::ACCESS_KEY.into()),
        secret_access_key: Some(storage_support::SECRET_KEY.into()),
        region: storage_support::REGION.into(),
        ..berth_storage::s3::S3Config::from_url(&format!("s3://{bucket}/berth"))
            .expect("a valid URL")
    };
    let store: std::sync::Arc<dyn berth_storage::BlobStore> =
        std::sync::Arc::new(berth_storage::s3::S3BlobStore::new(&config).expect("store"));
    let data_dir = registry.data_dir.as_ref().expect("local").path();
    let meta: std::sync::Arc<dyn berth_meta::MetaStore> = std::sync::Arc::new(
        berth_meta::sqlite::SqliteMetaStore::open(&data_dir.join("berth.db"))
            .await
            .expect("SQLite"),
    );
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
        + 2 * 24 * 3600;
    let cleaner = berth_registry::Registry::with_clock(
        store.clone(),
        meta,
        berth_registry::RegistryConfig::default(),
        berth_registry::Clock::Fixed(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
            later,
        ))),
    );
    let purged = cleaner.purge_expired_uploads().await.expect("purge");
    println!("FAULT S3: one purge removed {purged:?}");
    let uploads = store.list_uploads(None, 100).await.expect("list uploads");
    assert!(
        uploads.is_empty(),
        "uploads left in the bucket after a purge: {uploads:?}"
    );
    for (name, ready, read, push, recovered) in checked {
        report(
            name,
            &[
                ("/readyz", ready),
                ("blob read refused", read),
                ("push refused", push),
                ("ready again after the fault", recovered),
            ],
        );
    }
}

/// PostgreSQL killed (immediate stop: every connection cut, nothing
/// listening) under a running server, then started again: manifest reads
/// and upload starts are refused with `503` and `Retry-After` at once
/// (never the 10-30 s hang of pool and connect timeouts), `/readyz` names
/// the database, and once PostgreSQL is back Berth serves again without a
/// restart, from the same data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_and_restarted() {
    const TEST: &str = "postgres_killed_and_restarted";
    if support::is_external_registry() {
        support::record_skip(TEST, "starts its own server");
        return;
    }
    if !cfg!(feature = "postgres") {
        support::record_skip(TEST, "berth is built without the postgres feature");
        return;
    }
    let Some(database) = postgres::fresh_database(TEST).await else {
        return;
    };
    database.commit_durably().await;
    // No manifest cache: every read goes to the database.
    let registry = TestRegistry::start_with(&["--database", &database.url, "--cache-ttl", "0s"]);
    let addr = registry.addr.clone();
    let database = std::sync::Arc::new(database);
    let figures = {
        let (addr, database) = (addr.clone(), database.clone());
        tokio::task::spawn_blocking(move || {
            let manifest = push_image(&addr, "faults/pg", "before");
            database.lease.kill_server();
            let ready_took = assert_not_ready(&addr, "database", "not answering");
            let (answer, manifest_took) = call(
                &addr,
                "GET",
                "/v2/faults/pg/manifests/before",
                &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
                RequestBody::Empty,
            );
            assert_unavailable("a manifest read", &answer, Some(true));
            let (answer, start_took) = call(
                &addr,
                "POST",
                "/v2/faults/pg/blobs/uploads/",
                &[],
                RequestBody::Empty,
            );
            assert_unavailable("an upload start", &answer, Some(true));
            let (answer, push_took) = push_blob(&addr, "faults/pg", &random_bytes(10_000));
            assert_unavailable("a monolithic push", &answer, Some(true));

            database.lease.restart_server();
            let recovered = wait_until_ready(&addr);
            assert_pulls(&addr, "faults/pg", "before", &manifest);
            push_image(&addr, "faults/pg", "after");
            (ready_took, manifest_took, start_took, push_took, recovered)
        })
        .await
        .expect("checks")
    };
    report(
        "PostgreSQL killed and restarted",
        &[
            ("/readyz", figures.0),
            ("manifest read refused", figures.1),
            ("upload start refused", figures.2),
            ("push refused", figures.3),
            ("ready again after restart", figures.4),
        ],
    );
    drop(registry);
}
