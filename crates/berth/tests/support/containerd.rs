//! A private `containerd` for one test: its own root, state, sockets and
//! plugin directory under a temporary directory, driven with `ctr`. The CRI
//! plugin is disabled: the tests need no Kubernetes, and without it
//! containerd starts in a fraction of a second.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::daemon::{log_tail, remove_daemon_dir, short_temp_dir, stop_daemon, wait_for_socket};

/// The containerd namespace the tests work in; any name would do, but a
/// distinct one makes the test's images obvious in a debug log.
pub const NAMESPACE: &str = "berth-e2e";

/// A running private containerd; dropping it stops the daemon and its shims
/// and removes every file it wrote.
pub struct Containerd {
    /// Holds root, state, the sockets, the configuration and the log; `None`
    /// only while dropping.
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    socket: PathBuf,
    /// The `ctr` client to run against this daemon.
    ctr: PathBuf,
}

impl Containerd {
    /// Starts containerd and waits until its gRPC socket accepts connections.
    pub fn start(containerd: &Path, ctr: &Path) -> Containerd {
        let dir = short_temp_dir("berth-ctrd-");
        let root = dir.path();
        let socket = root.join("containerd.sock");
        // Every path containerd would otherwise take from the host
        // (/var/lib/containerd, /run/containerd, /opt/containerd) is pointed
        // into the temporary directory, so that parallel tests and a system
        // containerd never share state.
        let config = format!(
            r#"version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{root}/containerd.sock"

[ttrpc]
  address = "{root}/containerd.sock.ttrpc"

[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
"#,
            root = root.display()
        );
        let config_path = root.join("config.toml");
        std::fs::write(&config_path, config).expect("write containerd config");
        let log = root.join("containerd.log");
        let log_file = std::fs::File::create(&log).expect("create containerd log");
        let mut child = Command::new(containerd)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", containerd.display()));
        wait_for_socket(&mut child, &socket, b"", &log, Duration::from_secs(60));
        Containerd {
            dir: Some(dir),
            child: Some(child),
            socket,
            ctr: ctr.to_path_buf(),
        }
    }

    /// A `ctr` command aimed at this daemon, in the test namespace, with the
    /// `native` snapshotter (plain directory copies: like dockerd's vfs it
    /// works on any file system and leaves no overlay mounts behind).
    pub fn ctr(&self) -> Command {
        // Every client command runs under `timeout`: a registry that never
        // answers must fail the test (exit status 124) well within the time
        // CI allows, rather than hang it.
        let mut command = Command::new("timeout");
        command
            .args(["--kill-after=10s", "120s"])
            .arg(&self.ctr)
            .arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(NAMESPACE)
            .env("CONTAINERD_SNAPSHOTTER", "native");
        command
    }

    /// The daemon's temporary directory, for scratch files (image archives)
    /// that should disappear with it.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("containerd directory").path()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of the private containerd's log ---\n{}",
                log_tail(&dir.path().join("containerd.log"), 80)
            );
        }
        if let Some(mut child) = self.child.take() {
            stop_daemon(&mut child, dir.path(), Duration::from_secs(20));
        }
        remove_daemon_dir(dir, "containerd");
    }
}
