//! End-to-end tests of the `berth` process itself, started the way an
//! operator starts it: which settings reach it (the standard AWS
//! variables), what stops it at start (misconfigured storage or database,
//! access control exposed over plain HTTP), what it leaves on disk (file
//! modes, the generated administrator password), what its logs look like
//! in a pipe, and how long a stalled client can hold its shutdown.

mod support;

use berth_test_support::seaweedfs as storage_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use support::http::{request, RequestBody};

/// A `berth serve` that printed its address; stopped (SIGTERM) on drop.
struct Serving {
    child: Child,
    addr: String,
    /// Where its stderr (the log) goes.
    stderr: PathBuf,
    _logs: tempfile::TempDir,
}

/// How a start ended.
enum Started {
    Serving(Serving),
    /// It exited before serving, with this status and stderr.
    Exited(ExitStatus, String),
}

impl Started {
    fn serving(self) -> Serving {
        match self {
            Started::Serving(serving) => serving,
            Started::Exited(status, stderr) => {
                panic!("berth did not start ({status}):\n{stderr}")
            }
        }
    }

    fn exited(self) -> (ExitStatus, String) {
        match self {
            Started::Exited(status, stderr) => (status, stderr),
            Started::Serving(serving) => panic!("berth started on {}", serving.addr),
        }
    }
}

impl Serving {
    fn signal(&self, name: &str) {
        Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
    }

    /// Sends SIGTERM and waits (at most a minute, far beyond any shutdown
    /// deadline these tests set) for the exit; returns the status and log.
    fn stop(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        let status = wait_with_bound(&mut self.child, Duration::from_secs(60))
            .expect("berth exits after SIGTERM");
        (
            status,
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        )
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for `child` to exit, for at most `bound`.
fn wait_with_bound(child: &mut Child, bound: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Starts `berth serve` in `data_dir` with `args` and exactly the
/// environment `env` plus `PATH` (nothing else of the test's own
/// environment reaches it), logging at `info` to a file.
fn start(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Started {
    let logs = tempfile::tempdir().expect("log dir");
    let stderr = logs.path().join("stderr");
    let mut child = Command::new(support::berth_binary())
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BERTH_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("start berth");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read berth stdout");
    match line.trim().strip_prefix("listening on ") {
        Some(addr) => Started::Serving(Serving {
            addr: addr.to_string(),
            child,
            stderr,
            _logs: logs,
        }),
        None => {
            // Stdout closed without an address: the process is exiting.
            let status = wait_with_bound(&mut child, Duration::from_secs(60))
                .expect("berth exits after failing to start");
            Started::Exited(status, std::fs::read_to_string(&stderr).unwrap_or_default())
        }
    }
}

/// `start` on loopback port 0.
fn serve(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Serving {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    start(data_dir, &all, env).serving()
}

fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Pushes `bytes` as a blob of `repo` in one request and reads it back.
fn push_and_pull(addr: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let pushed = request(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        RequestBody::Bytes(bytes),
    );
    assert_eq!(
        pushed.status,
        201,
        "monolithic push: {}",
        String::from_utf8_lossy(&pushed.body)
    );
    let pulled = request(
        addr,
        "GET",
        &format!("/v2/{repo}/blobs/{digest}"),
        &[],
        RequestBody::Empty,
    );
    assert_eq!(pulled.status, 200);
    assert_eq!(pulled.body, bytes);
    digest
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Skips a test that starts its own server when the suite runs against an
/// external registry.
fn local_only(test: &str) -> bool {
    if support::is_external_registry() {
        support::record_skip(test, "starts its own server");
        return false;
    }
    true
}

/// With the S3 store named only by the standard AWS variables
/// (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, credentials and region), as a
/// newcomer following the AWS documentation sets them, the first upload
/// succeeds. It used to get a 500: the endpoint was taken from the
/// environment but plain HTTP to it was refused.
#[tokio::test(flavor = "multi_thread")]
async fn standard_aws_variables_configure_the_s3_store() {
    const TEST: &str = "standard_aws_variables_configure_the_s3_store";
    if !local_only(TEST) {
        return;
    }
    let Some(weed) = storage_support::weed(TEST) else {
        return;
    };
    let bucket = weed.new_bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("s3://{bucket}/berth");
    let node = serve(
        dir.path(),
        &["--storage", &storage, "--s3-path-style", "true"],
        &[
            ("AWS_ENDPOINT_URL", &weed.endpoint),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", storage_support::ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", storage_support::SECRET_KEY),
            ("AWS_REGION", storage_support::REGION),
        ],
    );
    push_and_pull(
        &node.addr,
        "team/app",
        b"bytes stored through the AWS variables",
    );
    let (status, _) = node.stop();
    assert!(status.success(), "{status}");
}

/// Asserts that a start failed with exit status 1 and one error message
/// containing every `expected` piece, printed once (not also as a log line).
fn assert_refused(started: Started, expected: &[&str]) {
    let (status, stderr) = started.exited();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("error") || line.contains("ERROR"))
        .collect();
    assert_eq!(errors.len(), 1, "the error is printed once:\n{stderr}");
    assert!(errors[0].starts_with("error: "), "{stderr}");
    for piece in expected {
        assert!(errors[0].contains(piece), "{piece:?} in:\n{stderr}");
    }
}

/// Storage that cannot hold blobs stops the start, before the server
/// listens, with the setting named, where it came from and how to set it.
#[tokio::test(flavor = "multi_thread")]
async fn misconfigured_storage_stops_the_start() {
    const TEST: &str = "misconfigured_storage_stops_the_start";
    if !local_only(TEST) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let storage = format!("fs://{}/blobs", file.display());
    assert_refused(
        start(
            &dir.path().join("data"),
            &["--listen", "127.0.0.1:0"],
            &[("BERTH_STORAGE", &storage)],
        ),
        &[
            "blob storage",
            "storage.url (env BERTH_STORAGE)",
            "server.data_dir (flag --data-dir)",
        ],
    );

    let Some(weed) = storage_support::weed(TEST) else {
        return;
    };
    // A wrong secret key: SeaweedFS refuses the probe's first write. (It
    // creates missing buckets on demand, so a wrong bucket name would not
    // show here.)
    let bucket = weed.new_bucket().await;
    let storage = format!("s3://{bucket}/berth");
    let secret = "a-wrong-secret";
    assert_refused(
        start(
            &dir.path().join("data"),
            &[
                "--listen",
                "127.0.0.1:0",
                "--storage",
                &storage,
                "--s3-endpoint",
                &weed.endpoint,
                "--s3-path-style",
                "true",
                "--s3-access-key-id",
                storage_support::ACCESS_KEY,
                "--s3-secret-access-key",
                secret,
            ],
            &[],
        ),
        &[
            "failed its start-up check",
            "SignatureDoesNotMatch",
            "storage.url (flag --storage)",
            "storage.s3_endpoint (flag --s3-endpoint)",
            // A setting left at its default says how to set it.
            "storage.s3_region (default; set with --s3-region, BERTH_S3_REGION",
        ],
    );
}

/// A database that cannot be opened stops the start with the setting named.
#[test]
fn misconfigured_database_stops_the_start() {
    if !local_only("misconfigured_database_stops_the_start") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let sqlite = format!("sqlite://{}/berth.db", file.display());
    // Port 1 on loopback: nothing listens there, so the connection is
    // refused at once.
    let postgres = "postgres://berth:hunter2@127.0.0.1:1/berth";
    for (url, expected) in [
        (sqlite.as_str(), "sqlite://"),
        (postgres, "postgres://berth:***@127.0.0.1:1/berth"),
    ] {
        let started = start(
            &dir.path().join("data"),
            &["--listen", "127.0.0.1:0", "--database", url],
            &[],
        );
        if let Started::Exited(_, stderr) = &started {
            assert!(
                !stderr.contains("hunter2"),
                "the password leaked:\n{stderr}"
            );
        }
        assert_refused(
            started,
            &[
                "metadata database",
                expected,
                "database.url (flag --database)",
            ],
        );
    }
}

/// With access control on, a listener other machines can reach needs TLS,
/// an explicit realm or trusted proxies; the refusal names all three.
#[test]
fn access_control_on_a_public_address_needs_tls_a_realm_or_proxies() {
    if !local_only("access_control_on_a_public_address_needs_tls_a_realm_or_proxies") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = start(dir.path(), &["--listen", "0.0.0.0:0", "--auth"], &[]).exited();
    assert_eq!(status.code(), Some(2), "{stderr}");
    for way_out in ["--tls-cert", "--auth-realm", "--trusted-proxies"] {
        assert!(stderr.contains(way_out), "{way_out} in {stderr}");
    }
    assert!(
        !dir.path().join("berth.db").exists(),
        "refused before anything was opened"
    );

    // `config check` says the same, and accepts either way out (checked
    // without binding a public address).
    let check = |extra: &[&str]| {
        Command::new(support::berth_binary())
            .args(["config", "check", "--listen", "0.0.0.0:5000", "--auth"])
            .args(extra)
            .env_clear()
            .output()
            .unwrap()
    };
    let refused = check(&[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--trusted-proxies"));
    for extra in [
        &["--auth-realm", "https://registry.example/auth/token"][..],
        &["--trusted-proxies", "10.0.0.0/8"][..],
    ] {
        let accepted = check(extra);
        assert!(
            accepted.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&accepted.stderr)
        );
    }
}

/// The data directory is 0700; the database, blobs and upload files 0600;
/// an older install's looser modes are tightened at start.
#[test]
fn the_data_directory_is_private() {
    if !local_only("the_data_directory_is_private") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let node = serve(&data, &[], &[]);
    let digest = push_and_pull(&node.addr, "team/app", b"a private layer");
    let started = request(
        &node.addr,
        "POST",
        "/v2/team/app/blobs/uploads/",
        &[],
        RequestBody::Empty,
    );
    assert_eq!(started.status, 202);
    let uploads: Vec<PathBuf> = std::fs::read_dir(data.join("uploads"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let hex = digest.strip_prefix("sha256:").unwrap();
    let blob = data.join("blobs/sha256").join(&hex[..2]).join(hex);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&blob), 0o600);
    assert_eq!(mode(&uploads[0]), 0o600);
    for file in ["berth.db", "berth.db-wal", "berth.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let (status, _) = node.stop();
    assert!(status.success());

    // An install from before: everything readable by all.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in ["berth.db", "berth.db-wal", "berth.db-shm"] {
        let path = data.join(file);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let node = serve(&data, &[], &[]);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("berth.db")), 0o600);
    let (status, log) = node.stop();
    assert!(status.success());
    assert!(log.contains("restricted the data directory"), "{log}");
}

/// Logs written to a pipe or file have no colour escape codes (a terminal
/// would get them, unless NO_COLOR is set; see `logging.rs`).
#[test]
fn logs_in_a_pipe_have_no_escape_codes() {
    if !local_only("logs_in_a_pipe_have_no_escape_codes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = serve(dir.path(), &[], &[]);
    assert_eq!(
        request(&node.addr, "GET", "/v2/", &[], RequestBody::Empty).status,
        200
    );
    let (status, log) = node.stop();
    assert!(status.success());
    assert!(log.contains("berth is serving"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in:\n{log}");
}

/// The generated administrator password is written to a private file in
/// the data directory, never to the log; it logs in.
#[test]
fn the_generated_admin_password_is_in_a_private_file() {
    if !local_only("the_generated_admin_password_is_in_a_private_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = serve(dir.path(), &["--auth"], &[]);
    let path = dir.path().join("initial-admin-password");
    assert_eq!(mode(&path), 0o600);
    let password = std::fs::read_to_string(&path).unwrap();
    let password = password.trim_end();
    let basic = format!("Basic {}", STANDARD.encode(format!("admin:{password}")));
    let anonymous = request(&node.addr, "GET", "/v2/", &[], RequestBody::Empty);
    assert_eq!(anonymous.status, 401);
    let logged_in = request(
        &node.addr,
        "GET",
        "/v2/",
        &[("Authorization", &basic)],
        RequestBody::Empty,
    );
    assert_eq!(logged_in.status, 200);
    let (status, log) = node.stop();
    assert!(status.success());
    assert!(
        !log.contains(password),
        "the password is in the log:\n{log}"
    );
    assert!(log.contains(&path.display().to_string()), "{log}");
}

/// A client that stalls in the middle of an upload does not keep the
/// server from exiting after SIGTERM: past `shutdown_timeout` it exits
/// anyway, with success, saying so in the log.
#[test]
fn a_stalled_upload_does_not_hold_the_shutdown() {
    if !local_only("a_stalled_upload_does_not_hold_the_shutdown") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = serve(dir.path(), &["--shutdown-timeout", "1s"], &[]);
    let started = request(
        &node.addr,
        "POST",
        "/v2/team/app/blobs/uploads/",
        &[],
        RequestBody::Empty,
    );
    assert_eq!(started.status, 202);
    let location = started.header("location").expect("Location").to_string();
    let mut stalled = TcpStream::connect(&node.addr).unwrap();
    write!(
        stalled,
        "PATCH {location} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        node.addr,
        8 << 20
    )
    .unwrap();
    stalled.write_all(&vec![7u8; 1 << 20]).unwrap();
    // The request is in flight once the server has written some of its
    // body to the upload's file; from then on the client sends nothing.
    let upload = std::fs::read_dir(dir.path().join("uploads"))
        .unwrap()
        .next()
        .expect("the upload's file")
        .unwrap()
        .path();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&upload).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the server never wrote the body");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, log) = node.stop();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        log.contains("requests still in flight after shutdown_timeout"),
        "{log}"
    );
    // The stalled client sees its connection closed.
    let mut rest = Vec::new();
    let _ = stalled.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stalled.read_to_end(&mut rest);
}

/// The older top-level spelling of a file still works, with one warning.
#[test]
fn a_flat_configuration_file_still_works_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:5001\"\ngc_interval = \"10m\"\n[storage]\nupload_ttl = \"2h\"\n",
    )
    .unwrap();
    let out = Command::new(support::berth_binary())
        .args(["config", "check", "--config"])
        .arg(&path)
        .env_clear()
        .env("BERTH_GC_BATCH_SIZE", "42")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("warning:").count(), 1, "{stderr}");
    assert!(stderr.contains("`gc_interval` → [gc] interval"), "{stderr}");
    for line in [
        "listen = \"127.0.0.1:5001\"",
        "interval = \"10m\"",
        "upload_ttl = \"2h\"",
        "batch_size = 42",
    ] {
        assert!(stdout.contains(line), "{line} in\n{stdout}");
    }
    assert!(stdout.contains("# env BERTH_GC_BATCH_SIZE"), "{stdout}");
    assert!(
        stdout.contains(&format!("# file {}", path.display())),
        "{stdout}"
    );
}
