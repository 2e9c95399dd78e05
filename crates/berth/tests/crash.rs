//! Crashes of the real `berth serve`: SIGKILL while requests are in flight,
//! then a restart on the same data, and what clients find afterwards.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::http::{request, RequestBody};
use support::TestRegistry;

/// How long a test waits for the server to reach a state it polls for.
const POLL_LIMIT: Duration = Duration::from_secs(20);

/// Upload sessions whose write lease is held, read from the SQLite database
/// of `data_dir` on the side (WAL lets a reader in while the server writes).
async fn leased_uploads(data_dir: &Path) -> i64 {
    use sqlx::ConnectOptions;
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("berth.db"))
        .read_only(true)
        .connect()
        .await
        .expect("open the server's database read-only");
    sqlx::query_scalar("SELECT count(*) FROM uploads WHERE lease_holder IS NOT NULL")
        .fetch_one(&mut connection)
        .await
        .expect("count leased uploads")
}

/// Opens an upload session and returns its `Location`.
fn start_session(addr: &str, repository: &str) -> String {
    let r = request(
        addr,
        "POST",
        &format!("/v2/{repository}/blobs/uploads/"),
        &[],
        RequestBody::Empty,
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    r.header("location").expect("a Location").to_string()
}

/// Sends a PATCH announcing `data.len()` bytes but only the first half of
/// them, and returns the connection with the request still in flight.
fn half_sent_patch(addr: &str, location: &str, data: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Range: 0-{}\r\nContent-Length: {}\r\n\r\n",
        data.len() - 1,
        data.len()
    );
    stream.write_all(head.as_bytes()).expect("send the head");
    stream
        .write_all(&data[..data.len() / 2])
        .expect("send half of the body");
    stream.flush().expect("flush");
    stream
}

/// A chunk was being written when the server was killed: its session's
/// write lease died with the process. After a restart the client resends
/// the chunk and finishes the upload at once. (Each process used to take a
/// new random node name, so the restarted server saw a lease of a stranger
/// and answered 416 "being written by another request" for five minutes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_in_flight_at_sigkill_goes_on_after_restart() {
    if support::is_external_registry() {
        support::record_skip(
            "upload_in_flight_at_sigkill_goes_on_after_restart",
            "kills its own server",
        );
        return;
    }
    let mut registry = TestRegistry::start();
    let data_dir = registry
        .data_dir
        .as_ref()
        .expect("local")
        .path()
        .to_path_buf();
    let data = support::oci::random_bytes(256 * 1024);
    let digest = support::oci::sha256_digest(&data);

    let location = start_session(&registry.addr, "crash/lease");
    let in_flight = half_sent_patch(&registry.addr, &location, &data);
    let deadline = Instant::now() + POLL_LIMIT;
    while leased_uploads(&data_dir).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the server never took the upload's lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    registry.kill();
    drop(in_flight);
    registry.restart(&[]);

    let addr = registry.addr.clone();
    let (patch, put, get) = tokio::task::spawn_blocking(move || {
        let range = format!("0-{}", data.len() - 1);
        let patch = request(
            &addr,
            "PATCH",
            &location,
            &[("Content-Range", &range)],
            RequestBody::Bytes(&data),
        );
        let put = request(
            &addr,
            "PUT",
            &format!("{location}?digest={digest}"),
            &[],
            RequestBody::Empty,
        );
        let get = request(
            &addr,
            "GET",
            &format!("/v2/crash/lease/blobs/{digest}"),
            &[],
            RequestBody::Empty,
        );
        (patch, put, get.body == data)
    })
    .await
    .expect("client");
    assert_eq!(
        patch.status,
        202,
        "PATCH after the restart: {}",
        String::from_utf8_lossy(&patch.body)
    );
    assert_eq!(
        put.status,
        201,
        "PUT after the restart: {}",
        String::from_utf8_lossy(&put.body)
    );
    assert!(get, "the blob reads back as sent");
}

// ---------------------------------------------------------------------------
// Crash consistency: SIGKILL at random points of a busy server, on SQLite +
// filesystem and on PostgreSQL + S3.
// ---------------------------------------------------------------------------

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use berth_meta::MetaStore;
use berth_registry::{Clock, GcOptions, Registry, RegistryConfig};
use berth_storage::BlobStore;
use berth_test_support::postgres;
use berth_test_support::seaweedfs as storage_support;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::http::{try_request, HttpResponse};
use support::oci::sha256_digest;

/// The server's settings in these tests: collection, its orphan sweep and
/// the upload purge every second or two, so they are often in the middle
/// of a pass when the server is killed.
const BUSY_SERVER: &[&str] = &[
    "--gc-interval",
    "1s",
    "--gc-grace-period",
    "1s",
    "--gc-orphan-sweep-interval",
    "2s",
    "--upload-ttl",
    "1m",
    "--upload-purge-interval",
    "1s",
];

/// Clients pushing and deleting at once.
const WORKERS: usize = 4;

/// Repositories the workers push to, so that blobs are shared across
/// repositories as well as within them.
const REPOSITORIES: &[&str] = &["crash/alpha", "crash/beta", "crash/team/gamma"];

/// An image as the client pushed it.
#[derive(Clone, Debug)]
struct Image {
    repository: String,
    tag: String,
    manifest: Vec<u8>,
    digest: String,
    /// The config and the layers, as (digest, bytes).
    blobs: Vec<(String, Vec<u8>)>,
}

/// A chunked upload a client was writing when the server died: where it
/// is, and the whole blob it was sending.
#[derive(Clone, Debug)]
struct OpenSession {
    addr_independent_location: String,
    data: Vec<u8>,
}

/// What the clients know, across rounds.
#[derive(Default)]
struct Ledger {
    /// Pushes the registry acknowledged (manifest PUT answered 201) and no
    /// acknowledged delete removed since.
    live: Vec<Image>,
    /// Manifests whose delete the registry acknowledged (202).
    deleted: Vec<Image>,
    /// Sessions open at a crash, to resume after the restart.
    open_sessions: Vec<OpenSession>,
    acknowledged_pushes: usize,
    acknowledged_deletes: usize,
}

/// How the `berth gc` passes run beside the server ended.
#[derive(Default, Debug)]
struct GcTally {
    completed: usize,
    lease_busy: usize,
    killed: usize,
}

/// A backend under test: the server's arguments and how to open its
/// stores in-process once the server is stopped.
struct Backend {
    name: &'static str,
    args: Vec<String>,
    rounds: usize,
    /// Keeps the PostgreSQL database alive for the test.
    _database: Option<postgres::TestDatabase>,
    s3: Option<(String, String)>,
    database_url: Option<String>,
}

impl Backend {
    fn sqlite_fs() -> Backend {
        Backend {
            name: "SQLite + filesystem",
            args: Vec::new(),
            rounds: 12,
            _database: None,
            s3: None,
            database_url: None,
        }
    }

    async fn postgres_s3(test: &str) -> Option<Backend> {
        let database = postgres::fresh_database(test).await?;
        let weed = storage_support::weed(test)?;
        let bucket = weed.new_bucket().await;
        let mut args = vec!["--database".to_string(), database.url.clone()];
        args.extend(support::s3_flags(&bucket, &weed.endpoint));
        Some(Backend {
            name: "PostgreSQL + S3",
            args,
            rounds: 12,
            database_url: Some(database.url.clone()),
            _database: Some(database),
            s3: Some((weed.endpoint.clone(), bucket)),
        })
    }

    fn server_args(&self) -> Vec<&str> {
        let mut args: Vec<&str> = BUSY_SERVER.to_vec();
        args.extend(self.args.iter().map(String::as_str));
        args
    }

    /// The stores, opened the way the binary opens them.
    async fn open(&self, data_dir: &Path) -> (Arc<dyn BlobStore>, Arc<dyn MetaStore>) {
        let blobs: Arc<dyn BlobStore> = match &self.s3 {
            Some((endpoint, bucket)) => {
                let config = berth_storage::s3::S3Config {
                    endpoint: Some(endpoint.clone()),
                    path_style: true,
                    allow_http: true,
                    access_key_id: Some(storage_support::ACCESS_KEY.into()),
                    secret_access_key: Some(storage_support::SECRET_KEY.into()),
                    region: storage_support::REGION.into(),
                    ..berth_storage::s3::S3Config::from_url(&format!("s3://{bucket}/berth"))
                        .expect("a valid URL")
                };
                Arc::new(berth_storage::s3::S3BlobStore::new(&config).expect("S3 store"))
            }
            None => Arc::new(
                berth_storage::fs::FsBlobStore::open(data_dir.to_path_buf()).expect("fs store"),
            ),
        };
        let meta: Arc<dyn MetaStore> = match &self.database_url {
            Some(url) => postgres_meta(url).await,
            None => Arc::new(
                berth_meta::sqlite::SqliteMetaStore::open(&data_dir.join("berth.db"))
                    .await
                    .expect("SQLite"),
            ),
        };
        (blobs, meta)
    }
}

/// The PostgreSQL metadata store at `url`.
#[cfg(feature = "postgres")]
async fn postgres_meta(url: &str) -> Arc<dyn MetaStore> {
    Arc::new(
        berth_meta::postgres::PostgresMetaStore::connect(url)
            .await
            .expect("PostgreSQL"),
    )
}

/// Without the `postgres` feature the PostgreSQL test skips before it
/// gets here.
#[cfg(not(feature = "postgres"))]
async fn postgres_meta(_url: &str) -> Arc<dyn MetaStore> {
    unreachable!("built without the postgres feature")
}

/// A seeded generator: `BERTH_CRASH_SEED` replays a run, otherwise a new
/// seed is drawn. The seed is printed either way.
fn seeded(test: &str) -> (u64, StdRng) {
    let seed = std::env::var("BERTH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("{test}: seed {seed} (replay with BERTH_CRASH_SEED={seed})");
    (seed, StdRng::seed_from_u64(seed))
}

/// The body bytes of an answer, for failure messages.
fn text(response: &HttpResponse) -> String {
    String::from_utf8_lossy(&response.body)
        .chars()
        .take(300)
        .collect()
}

/// How a client's step ended.
enum Step<T> {
    Done(T),
    /// The server went away: the step's outcome is unknown.
    ServerGone,
}

/// Pushes one blob, monolithic or in chunks, retrying a `503` (a blob that
/// garbage collection was deleting as it was pushed must be pushed again).
fn push_blob(
    addr: &str,
    repository: &str,
    data: &[u8],
    chunked: bool,
    open: &Mutex<Option<OpenSession>>,
) -> Result<Step<()>, String> {
    let digest = sha256_digest(data);
    for _attempt in 0..5 {
        let answer = if chunked {
            let Ok(started) = try_request(
                addr,
                "POST",
                &format!("/v2/{repository}/blobs/uploads/"),
                &[],
                RequestBody::Empty,
            ) else {
                return Ok(Step::ServerGone);
            };
            if started.status != 202 {
                return Err(format!(
                    "POST upload: {} {}",
                    started.status,
                    text(&started)
                ));
            }
            let location = started.header("location").unwrap_or_default().to_string();
            *open.lock().unwrap() = Some(OpenSession {
                addr_independent_location: location.clone(),
                data: data.to_vec(),
            });
            let half = data.len() / 2;
            for (start, end) in [(0, half), (half, data.len())] {
                let range = format!("{start}-{}", end - 1);
                let Ok(patched) = try_request(
                    addr,
                    "PATCH",
                    &location,
                    &[("Content-Range", &range)],
                    RequestBody::Bytes(&data[start..end]),
                ) else {
                    return Ok(Step::ServerGone);
                };
                if patched.status != 202 {
                    return Err(format!(
                        "PATCH {range}: {} {}",
                        patched.status,
                        text(&patched)
                    ));
                }
            }
            let Ok(put) = try_request(
                addr,
                "PUT",
                &format!("{location}?digest={digest}"),
                &[],
                RequestBody::Empty,
            ) else {
                return Ok(Step::ServerGone);
            };
            *open.lock().unwrap() = None;
            put
        } else {
            let Ok(put) = try_request(
                addr,
                "POST",
                &format!("/v2/{repository}/blobs/uploads/?digest={digest}"),
                &[],
                RequestBody::Bytes(data),
            ) else {
                return Ok(Step::ServerGone);
            };
            put
        };
        match answer.status {
            201 => return Ok(Step::Done(())),
            503 => continue,
            status => return Err(format!("finishing a blob push: {status} {}", text(&answer))),
        }
    }
    Err("a blob push got 503 five times".into())
}

/// Builds an image of a config, one shared layer and one of its own.
fn make_image(rng: &mut StdRng, shared: &[Vec<u8>], repository: &str, tag: String) -> Image {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#).into_bytes();
    let own: Vec<u8> = (0..rng.random_range(1_000..60_000))
        .map(|_| rng.random())
        .collect();
    let common = shared[rng.random_range(0..shared.len())].clone();
    let mut blobs = vec![(sha256_digest(&config), config)];
    for layer in [common, own] {
        blobs.push((sha256_digest(&layer), layer));
    }
    let layers: Vec<serde_json::Value> = blobs[1..]
        .iter()
        .map(|(digest, bytes)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest,
                "size": bytes.len(),
            })
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": blobs[0].0,
            "size": blobs[0].1.len(),
        },
        "layers": layers,
    }))
    .expect("manifest JSON");
    Image {
        repository: repository.to_string(),
        tag,
        digest: sha256_digest(&manifest),
        manifest,
        blobs,
    }
}

/// One client: pushes images and deletes acknowledged ones until the
/// server goes away. Returns an error for any answer a correct registry
/// would not give.
fn client(
    addr: String,
    mut rng: StdRng,
    name: String,
    shared: Arc<Vec<Vec<u8>>>,
    ledger: Arc<Mutex<Ledger>>,
) -> Result<(), String> {
    let open = Mutex::new(None);
    for n in 0.. {
        if rng.random_bool(0.25) {
            let victim = {
                let mut ledger = ledger.lock().unwrap();
                if ledger.live.is_empty() {
                    None
                } else {
                    let i = rng.random_range(0..ledger.live.len());
                    Some(ledger.live.swap_remove(i))
                }
            };
            if let Some(image) = victim {
                let path = format!("/v2/{}/manifests/{}", image.repository, image.digest);
                let Ok(deleted) = try_request(&addr, "DELETE", &path, &[], RequestBody::Empty)
                else {
                    // Deleted or not: the image is no longer checked either way.
                    return Ok(());
                };
                if deleted.status != 202 {
                    return Err(format!(
                        "DELETE {path}: {} {}",
                        deleted.status,
                        text(&deleted)
                    ));
                }
                let mut ledger = ledger.lock().unwrap();
                ledger.deleted.push(image);
                ledger.acknowledged_deletes += 1;
            }
            continue;
        }
        let repository = REPOSITORIES[rng.random_range(0..REPOSITORIES.len())];
        let image = make_image(&mut rng, &shared, repository, format!("{name}-{n}"));
        for (_, bytes) in &image.blobs {
            match push_blob(&addr, repository, bytes, rng.random_bool(0.5), &open)? {
                Step::Done(()) => {}
                Step::ServerGone => {
                    if let Some(session) = open.lock().unwrap().take() {
                        ledger.lock().unwrap().open_sessions.push(session);
                    }
                    return Ok(());
                }
            }
        }
        let path = format!("/v2/{repository}/manifests/{}", image.tag);
        let Ok(put) = try_request(
            &addr,
            "PUT",
            &path,
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            RequestBody::Bytes(&image.manifest),
        ) else {
            return Ok(());
        };
        if put.status != 201 {
            return Err(format!("PUT {path}: {} {}", put.status, text(&put)));
        }
        let mut ledger = ledger.lock().unwrap();
        ledger.live.push(image);
        ledger.acknowledged_pushes += 1;
    }
    Ok(())
}

/// `berth gc` passes, one after another beside the server, until `stop`;
/// the one running when the server is killed is killed with it.
fn gc_passes(
    data_dir: PathBuf,
    args: Vec<String>,
    stop: Arc<AtomicBool>,
    running: Arc<Mutex<Option<Child>>>,
    tally: Arc<Mutex<GcTally>>,
) -> Result<(), String> {
    while !stop.load(Ordering::SeqCst) {
        let child = Command::new(support::berth_binary())
            .arg("gc")
            .arg("--sweep-orphans")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--gc-grace-period", "1s"])
            .args(&args)
            .env("BERTH_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start berth gc: {e}"))?;
        *running.lock().unwrap() = Some(child);
        loop {
            let mut slot = running.lock().unwrap();
            let Some(child) = slot.as_mut() else {
                // Killed by the test with the server.
                tally.lock().unwrap().killed += 1;
                return Ok(());
            };
            match child.try_wait() {
                Ok(Some(status)) => {
                    let child = slot.take().expect("child");
                    drop(slot);
                    match status.code() {
                        Some(0) => tally.lock().unwrap().completed += 1,
                        Some(3) => tally.lock().unwrap().lease_busy += 1,
                        _ => {
                            let output = child.wait_with_output().map_err(|e| e.to_string())?;
                            return Err(format!(
                                "berth gc failed ({status}): {}",
                                String::from_utf8_lossy(&output.stderr)
                            ));
                        }
                    }
                    break;
                }
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for berth gc: {e}")),
            }
            drop(slot);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// Reads a blob through the registry and compares it with what was pushed.
fn check_blob(
    addr: &str,
    repository: &str,
    digest: &str,
    expected: Option<&[u8]>,
) -> Result<(), String> {
    let path = format!("/v2/{repository}/blobs/{digest}");
    let got =
        try_request(addr, "GET", &path, &[], RequestBody::Empty).map_err(|e| e.to_string())?;
    if got.status != 200 {
        return Err(format!("GET {path}: {} {}", got.status, text(&got)));
    }
    if sha256_digest(&got.body) != digest || expected.is_some_and(|e| e != got.body.as_slice()) {
        return Err(format!("GET {path}: other bytes than pushed"));
    }
    Ok(())
}

/// After a restart: every open session takes the rest of its blob (no lease
/// of the dead process stands in the way), every acknowledged push pulls
/// back byte for byte, deleted manifests are gone, and every blob any
/// stored manifest references can be read.
fn verify_after_restart(addr: &str, ledger: &mut Ledger) -> Result<(), String> {
    for session in ledger.open_sessions.drain(..) {
        let location = session.addr_independent_location;
        let status = try_request(addr, "GET", &location, &[], RequestBody::Empty)
            .map_err(|e| e.to_string())?;
        if status.status == 404 {
            continue;
        }
        if status.status != 204 {
            return Err(format!(
                "GET {location}: {} {}",
                status.status,
                text(&status)
            ));
        }
        // Chunks are never a single byte, so "0-0" means an empty session.
        let size = match status.header("range") {
            Some("0-0") | None => 0,
            Some(range) => range
                .split_once('-')
                .and_then(|(_, last)| last.parse::<usize>().ok())
                .map(|last| last + 1)
                .ok_or_else(|| format!("bad Range {range:?}"))?,
        };
        if size < session.data.len() {
            let range = format!("{size}-{}", session.data.len() - 1);
            let patched = try_request(
                addr,
                "PATCH",
                &location,
                &[("Content-Range", &range)],
                RequestBody::Bytes(&session.data[size..]),
            )
            .map_err(|e| e.to_string())?;
            if patched.status != 202 {
                return Err(format!(
                    "resuming {location} at {size} after the restart: {} {}",
                    patched.status,
                    text(&patched)
                ));
            }
        }
        let digest = sha256_digest(&session.data);
        let put = try_request(
            addr,
            "PUT",
            &format!("{location}?digest={digest}"),
            &[],
            RequestBody::Empty,
        )
        .map_err(|e| e.to_string())?;
        if put.status != 201 {
            return Err(format!(
                "finishing {location}: {} {}",
                put.status,
                text(&put)
            ));
        }
    }
    for image in &ledger.live {
        let path = format!("/v2/{}/manifests/{}", image.repository, image.tag);
        let got = try_request(
            addr,
            "GET",
            &path,
            &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
            RequestBody::Empty,
        )
        .map_err(|e| e.to_string())?;
        if got.status != 200 || got.body != image.manifest {
            return Err(format!(
                "acknowledged push {path}: {} {}",
                got.status,
                text(&got)
            ));
        }
        for (digest, bytes) in &image.blobs {
            check_blob(addr, &image.repository, digest, Some(bytes))?;
        }
    }
    for image in &ledger.deleted {
        let path = format!("/v2/{}/manifests/{}", image.repository, image.digest);
        let got =
            try_request(addr, "HEAD", &path, &[], RequestBody::Empty).map_err(|e| e.to_string())?;
        if got.status != 404 {
            return Err(format!("deleted manifest {path}: {}", got.status));
        }
    }
    // Everything stored, acknowledged or not (a push the crash cut short may
    // have stored its manifest): each manifest's blobs are all there.
    for repository in REPOSITORIES {
        let tags = try_request(
            addr,
            "GET",
            &format!("/v2/{repository}/tags/list?n=100000"),
            &[],
            RequestBody::Empty,
        )
        .map_err(|e| e.to_string())?;
        if tags.status == 404 {
            continue;
        }
        let listed: serde_json::Value =
            serde_json::from_slice(&tags.body).map_err(|e| e.to_string())?;
        for tag in listed["tags"].as_array().into_iter().flatten() {
            let tag = tag.as_str().unwrap_or_default();
            let path = format!("/v2/{repository}/manifests/{tag}");
            let got = try_request(
                addr,
                "GET",
                &path,
                &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
                RequestBody::Empty,
            )
            .map_err(|e| e.to_string())?;
            if got.status != 200 {
                return Err(format!("listed tag {path}: {}", got.status));
            }
            let manifest: serde_json::Value =
                serde_json::from_slice(&got.body).map_err(|e| e.to_string())?;
            let mut digests = vec![manifest["config"]["digest"]
                .as_str()
                .unwrap_or_default()
                .to_string()];
            for layer in manifest["layers"].as_array().into_iter().flatten() {
                digests.push(layer["digest"].as_str().unwrap_or_default().to_string());
            }
            for digest in digests {
                check_blob(addr, repository, &digest, None)?;
            }
        }
    }
    Ok(())
}

/// The test: rounds of busy clients and `berth gc` passes, each ended by a
/// SIGKILL at a random moment, then a restart and the checks above; at the
/// end, with the server stopped, one purge and one collection pass (far in
/// the future, so every grace period is over) must leave no upload data,
/// no session, and no stored object the database does not know.
async fn crash_consistency(test: &str, backend: Backend) {
    let (seed, mut rng) = seeded(test);
    let shared: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..6)
            .map(|_| {
                (0..rng.random_range(500..20_000))
                    .map(|_| rng.random())
                    .collect()
            })
            .collect(),
    );
    let args = backend.server_args();
    let mut registry = TestRegistry::start_with(&args);
    let data_dir = registry
        .data_dir
        .as_ref()
        .expect("local")
        .path()
        .to_path_buf();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let gc_tally = Arc::new(Mutex::new(GcTally::default()));
    let started = Instant::now();
    let failure =
        |what: String| -> String { format!("{test} ({}), seed {seed}: {what}", backend.name) };

    for round in 0..backend.rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let running_gc = Arc::new(Mutex::new(None));
        let gc = {
            let (data_dir, args, stop, running, tally) = (
                data_dir.clone(),
                backend.args.clone(),
                stop.clone(),
                running_gc.clone(),
                gc_tally.clone(),
            );
            std::thread::spawn(move || gc_passes(data_dir, args, stop, running, tally))
        };
        let clients: Vec<_> = (0..WORKERS)
            .map(|worker| {
                let (addr, shared, ledger) =
                    (registry.addr.clone(), shared.clone(), ledger.clone());
                let client_rng = StdRng::seed_from_u64(rng.random());
                let name = format!("r{round}w{worker}");
                std::thread::spawn(move || client(addr, client_rng, name, shared, ledger))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2000))).await;
        stop.store(true, Ordering::SeqCst);
        registry.kill();
        if let Some(mut child) = running_gc.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for client in clients {
            if let Err(e) = client.join().expect("client thread") {
                panic!("{}", failure(format!("round {round}: {e}")));
            }
        }
        if let Err(e) = gc.join().expect("gc thread") {
            panic!("{}", failure(format!("round {round}: {e}")));
        }
        registry.restart(&args);
        let addr = registry.addr.clone();
        let checked_ledger = ledger.clone();
        let verified = tokio::task::spawn_blocking(move || {
            verify_after_restart(&addr, &mut checked_ledger.lock().unwrap())
        })
        .await
        .expect("verification");
        if let Err(e) = verified {
            panic!(
                "{}",
                failure(format!("after the crash of round {round}: {e}"))
            );
        }
    }
    registry.stop();

    let (blobs, meta) = backend.open(&data_dir).await;
    let later = Arc::new(std::sync::atomic::AtomicI64::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64
            + 2 * 24 * 3600,
    ));
    let cleaner = Registry::with_clock(
        blobs.clone(),
        meta.clone(),
        RegistryConfig::default(),
        Clock::Fixed(later),
    );
    cleaner.purge_expired_uploads().await.expect("purge");
    let report = cleaner
        .collect_garbage(&GcOptions {
            sweep_orphans: true,
            ..GcOptions::default()
        })
        .await
        .expect("collection");
    let uploads = blobs
        .list_uploads(None, 10_000)
        .await
        .expect("list uploads");
    let sessions = meta
        .expired_uploads(i64::MAX, 10_000)
        .await
        .expect("sessions");
    let stored: Vec<_> = blobs
        .list_blobs(None, 1_000_000)
        .await
        .expect("list blobs")
        .into_iter()
        .map(|blob| blob.digest)
        .collect();
    let unknown = meta.unknown_blobs(&stored).await.expect("unknown blobs");
    let pending = meta.pending_blob_deletions(10).await.expect("pending");
    assert!(
        uploads.is_empty() && sessions.is_empty() && unknown.is_empty() && pending.is_empty(),
        "{}",
        failure(format!(
            "after a purge and a collection pass: upload data {uploads:?}, sessions {:?}, \
             unknown objects {unknown:?}, unfinished deletions {pending:?} ({report})",
            sessions.iter().map(|s| &s.id).collect::<Vec<_>>()
        ))
    );
    // The final pass deleted nothing anything references: every
    // acknowledged push still pulls back.
    let live = ledger.lock().unwrap().live.clone();
    for image in &live {
        let repository = berth_oci::RepoName::parse(&image.repository).expect("name");
        for (digest, bytes) in &image.blobs {
            let digest = berth_oci::Digest::parse(digest).expect("digest");
            let body = cleaner.read_blob(&repository, &digest, None).await;
            let body = body.unwrap_or_else(|e| {
                panic!("{}", failure(format!("{digest} after the final pass: {e}")))
            });
            let mut read = Vec::new();
            let mut pieces = body.stream;
            while let Some(piece) = futures::StreamExt::next(&mut pieces).await {
                read.extend_from_slice(&piece.expect("bytes"));
            }
            assert!(read == *bytes, "{}", failure(format!("{digest} changed")));
        }
    }
    let ledger = ledger.lock().unwrap();
    let gc = gc_tally.lock().unwrap();
    let figures: BTreeMap<&str, usize> = [
        ("rounds", backend.rounds),
        ("acknowledged pushes", ledger.acknowledged_pushes),
        ("acknowledged deletes", ledger.acknowledged_deletes),
        ("gc passes completed", gc.completed),
        ("gc passes refused (lease busy)", gc.lease_busy),
        ("gc passes killed", gc.killed),
    ]
    .into_iter()
    .collect();
    eprintln!(
        "{test} ({}), seed {seed}: {figures:?} in {:.1?}",
        backend.name,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_consistency_sqlite_fs() {
    if support::is_external_registry() {
        support::record_skip("crash_consistency_sqlite_fs", "kills its own server");
        return;
    }
    crash_consistency("crash_consistency_sqlite_fs", Backend::sqlite_fs()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_consistency_postgres_s3() {
    const TEST: &str = "crash_consistency_postgres_s3";
    if support::is_external_registry() {
        support::record_skip(TEST, "kills its own server");
        return;
    }
    if !cfg!(feature = "postgres") {
        support::record_skip(TEST, "berth is built without the postgres feature");
        return;
    }
    let Some(backend) = Backend::postgres_s3(TEST).await else {
        return;
    };
    crash_consistency(TEST, backend).await;
}
