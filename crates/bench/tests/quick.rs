//! CI's check of the benchmark tool (issue 7): `berth-bench --quick` must
//! complete every scenario against a real Berth started on port 0, and the
//! `hw` mode must complete. Nothing here asserts on a measured figure, since
//! timings on a shared CI machine prove nothing.
//!
//! The `berth` binary is another package's, so cargo gives no
//! `CARGO_BIN_EXE_berth` here: the test takes it from `BERTH_BIN`, or else
//! from the same target directory as this test (`cargo test --workspace`
//! builds it there). `BERTH_BENCH_REGISTRY=http://HOST:PORT` runs the check
//! against an already running registry instead, e.g. CNCF Distribution.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

const SCENARIOS: [&str; 9] = [
    "push_small",
    "push_large_chunked",
    "push_large_mono",
    "pull_blob",
    "manifest_get",
    "head_blob",
    "tags_list",
    "catalog",
    "same_blob",
];

#[test]
fn quick_run_completes_every_scenario() {
    let server = Server::start();
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth-bench"));
    command.args(["--url", &server.url, "--quick"]);
    if let Some(child) = &server.child {
        command.args(["--pid", &child.id().to_string()]);
    }
    let output = command.output().expect("run berth-bench");
    let stdout = expect_success("berth-bench --quick", &output);
    for scenario in SCENARIOS {
        let prefix = format!("{scenario}: ");
        assert!(
            stdout.lines().any(|line| line.starts_with(&prefix)),
            "no `{scenario}` figure in the output:\n{stdout}"
        );
    }
    if server.child.is_some() {
        assert!(
            stdout.contains("push_small.server_rss_peak: "),
            "--pid gave no server figures:\n{stdout}"
        );
    }
}

/// Several `--url`s and `--pid`s: the clients of each scenario are spread
/// over the URLs and the server figures come per node. Only one server runs
/// here, given twice, since separate single-node registries
/// share no data (setup goes through the first URL and is read through all);
/// several real nodes on PostgreSQL and S3 are `bench/multinode.sh`'s job and
/// the data sharing itself is covered by `crates/berth/tests/e2e_multinode.rs`.
#[test]
fn quick_run_spreads_over_several_urls() {
    let server = Server::start();
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth-bench"));
    command.args(["--url", &server.url, "--url", &server.url, "--quick"]);
    for scenario in ["push_small", "pull_blob", "manifest_get", "same_blob"] {
        command.args(["--scenario", scenario]);
    }
    if let Some(child) = &server.child {
        // The same process twice stands in for two nodes: the figures are
        // then counted twice, which is fine for a check that only looks at
        // which lines appear.
        let pid = child.id().to_string();
        command.args(["--pid", &pid, "--pid", &pid]);
    }
    let output = command.output().expect("run berth-bench");
    let stdout = expect_success("berth-bench --url A --url B --quick", &output);
    for scenario in ["push_small", "pull_blob", "manifest_get", "same_blob"] {
        let prefix = format!("{scenario}: ");
        assert!(
            stdout.lines().any(|line| line.starts_with(&prefix)),
            "no `{scenario}` figure in the output:\n{stdout}"
        );
    }
    if server.child.is_some() {
        for figure in [
            "manifest_get.server_cpu: ",
            "manifest_get.server_rss_peak: ",
            "manifest_get.server_cpu.node1: ",
            "manifest_get.server_cpu.node2: ",
            "manifest_get.server_rss_peak.node2: ",
            "server_vmhwm.node2: ",
        ] {
            assert!(
                stdout.contains(figure),
                "no `{figure}` in the output:\n{stdout}"
            );
        }
    }
}

/// `idle_connections` on request: a hundred connections that never send a
/// byte stay open while `/healthz` is timed beside them, and the server's
/// memory is reported with them. Needs a local server (its loopback
/// addresses and its process).
#[test]
fn quick_idle_connections_stay_open_beside_an_active_client() {
    let server = Server::start();
    let Some(child) = &server.child else {
        eprintln!("idle_connections needs a local Berth; BERTH_BENCH_REGISTRY is set");
        return;
    };
    let output = Command::new(env!("CARGO_BIN_EXE_berth-bench"))
        .args([
            "--url",
            &server.url,
            "--quick",
            "--scenario",
            "idle_connections",
        ])
        .args(["--pid", &child.id().to_string()])
        .output()
        .expect("run berth-bench");
    let stdout = expect_success("berth-bench --scenario idle_connections", &output);
    for figure in [
        "idle_connections.opened: 100",
        "idle_connections.open_at_end: 100",
        "idle_connections.healthz_during_p99: ",
        "idle_connections.rss_per_connection: ",
    ] {
        assert!(
            stdout.lines().any(|line| line.starts_with(figure)),
            "no `{figure}` in the output:\n{stdout}"
        );
    }
}

#[test]
fn hardware_mode_completes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_berth-bench"))
        .args(["hw", "--quick", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run berth-bench hw");
    let stdout = expect_success("berth-bench hw --quick", &output);
    for figure in [
        "hw_sha256",
        "hw_durable_blob_cpu",
        "hw_loopback_tcp",
        "hw_disk_write_fsync",
        "hw_small_file_fsync",
        "hw_small_file_fsync_16",
        "hw_http_ceiling",
        "hw_http_server_cpu_per_request",
        "hw_bench_cpu_per_request",
    ] {
        assert!(
            stdout.contains(&format!("{figure}: ")),
            "no {figure} in:\n{stdout}"
        );
    }
    // The disk measurement must clean up after itself.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

fn expect_success(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed with {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The registry under test, stopped when the test ends.
struct Server {
    url: String,
    child: Option<Child>,
    /// Kept so the data directory lives exactly as long as the server.
    _data_dir: Option<tempfile::TempDir>,
}

impl Server {
    fn start() -> Server {
        if let Ok(url) = std::env::var("BERTH_BENCH_REGISTRY") {
            return Server {
                url,
                child: None,
                _data_dir: None,
            };
        }
        let binary = berth_binary();
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(&binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .env("BERTH_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        // Berth prints exactly one line, "listening on ADDR", once bound.
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read berth stdout");
        let Some(address) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            panic!("unexpected first line from {}: {line:?}", binary.display());
        };
        Server {
            url: format!("http://{address}"),
            child: Some(child),
            _data_dir: Some(data_dir),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn berth_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(path);
    }
    // This test runs from <target>/<profile>/deps/, next to which cargo puts
    // the workspace's binaries.
    let test_exe = std::env::current_exe().expect("current exe");
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile dir");
    let path = profile_dir.join("berth");
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo test --workspace` (which builds it) or set BERTH_BIN",
        path.display()
    );
    path
}
