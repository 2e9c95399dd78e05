//! Shared harness for end-to-end tests: starts the real `berth` binary on a
//! free loopback port with a fresh data directory. Finding tools, skipping
//! and running commands come from `berth-test-support`, shared with the
//! other crates' tests.
//!
//! Setting `BERTH_E2E_REGISTRY=127.0.0.1:PORT` runs a test against an already
//! running registry instead (useful to compare Berth with another registry).

#![allow(dead_code)]

pub mod containerd;
pub mod containers;
pub mod cutting_proxy;
pub mod daemon;
pub mod distribution;
pub mod dockerd;
pub mod fault_proxy;
pub mod http;
pub mod images;
pub mod oci;
pub mod registry_http;
pub mod wire;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// Each test binary uses some of these; the others would warn.
#[allow(unused_imports)]
pub use berth_test_support::process::{is_root, run, run_bytes, which};
#[allow(unused_imports)]
pub use berth_test_support::{record_skip, require_python_module, require_tool};

/// The `berth serve` flags that put blob storage in `bucket` of the
/// throw-away SeaweedFS (or a proxy in front of it) at `endpoint`, with its
/// test credentials.
pub fn s3_flags(bucket: &str, endpoint: &str) -> Vec<String> {
    use berth_test_support::seaweedfs::{ACCESS_KEY, REGION, SECRET_KEY};
    [
        "--storage",
        &format!("s3://{bucket}/berth"),
        "--s3-endpoint",
        endpoint,
        "--s3-path-style",
        "true",
        "--s3-region",
        REGION,
        "--s3-access-key-id",
        ACCESS_KEY,
        "--s3-secret-access-key",
        SECRET_KEY,
    ]
    .iter()
    .map(|flag| flag.to_string())
    .collect()
}

/// A running registry under test.
pub struct TestRegistry {
    /// `127.0.0.1:PORT`, the form clients use in image references.
    pub addr: String,
    /// The data directory (`None` for an external registry).
    pub data_dir: Option<tempfile::TempDir>,
    child: Option<Child>,
}

impl TestRegistry {
    /// Starts `berth serve` on port 0 with a fresh data directory.
    pub fn start() -> TestRegistry {
        TestRegistry::start_with(&[])
    }

    /// Starts `berth serve` with extra arguments.
    pub fn start_with(extra_args: &[&str]) -> TestRegistry {
        if let Ok(addr) = std::env::var("BERTH_E2E_REGISTRY") {
            return TestRegistry {
                addr,
                data_dir: None,
                child: None,
            };
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let (child, addr) = spawn_berth(dir.path(), extra_args);
        TestRegistry {
            addr,
            data_dir: Some(dir),
            child: Some(child),
        }
    }

    /// Stops the server (SIGTERM, then wait) and starts it again on the same
    /// data directory, on a new port.
    pub fn restart(&mut self, extra_args: &[&str]) {
        self.stop();
        let dir = self
            .data_dir
            .as_ref()
            .expect("restart needs a local registry")
            .path()
            .to_path_buf();
        let (child, addr) = spawn_berth(&dir, extra_args);
        self.child = Some(child);
        self.addr = addr;
    }

    /// Sends SIGTERM and waits for a graceful exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server with SIGKILL, as a crash or an OOM kill would, and
    /// reaps it. [`TestRegistry::restart`] starts it again afterwards.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id of the server, for /proc measurements.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The path of the `berth` binary cargo built for these tests.
pub fn berth_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

fn spawn_berth(data_dir: &Path, extra_args: &[&str]) -> (Child, String) {
    let mut child = Command::new(berth_binary())
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra_args)
        .env(
            "BERTH_LOG",
            std::env::var("BERTH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start berth");
    // The server prints exactly one line "listening on ADDR" on stdout once the
    // socket is bound; everything else goes to stderr.
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read berth stdout");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from berth: {line:?}"))
        .to_string();
    (child, addr)
}

/// Whether the registry under test is an external one given by
/// `BERTH_E2E_REGISTRY` (which a test can neither restart nor inspect).
pub fn is_external_registry() -> bool {
    std::env::var_os("BERTH_E2E_REGISTRY").is_some()
}
