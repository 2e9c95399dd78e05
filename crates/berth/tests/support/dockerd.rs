//! A private `dockerd` for one test: its own data root, exec root, socket,
//! pid file and daemon configuration under a temporary directory, so that it
//! neither touches nor depends on a system docker. It is told the registry
//! under test is insecure (plain HTTP), which is why the registry must be
//! running, and its port known, before the daemon starts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::daemon::{log_tail, remove_daemon_dir, short_temp_dir, stop_daemon, wait_for_socket};

/// A running private dockerd; dropping it stops the daemon, the containerd
/// it started, and removes every file it wrote.
pub struct Dockerd {
    /// Holds data-root, exec-root, the socket, the log and the client
    /// configuration; `None` only while dropping.
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    /// `unix:///…/docker.sock`, what `docker -H` takes.
    host: String,
    /// The docker command line client to run against this daemon.
    docker: PathBuf,
}

impl Dockerd {
    /// Starts dockerd with each of `insecure_registries` (`127.0.0.1:PORT`)
    /// allowed over plain HTTP, and waits until its API answers.
    pub fn start(dockerd: &Path, docker: &Path, insecure_registries: &[&str]) -> Dockerd {
        Dockerd::start_with_mirrors(dockerd, docker, insecure_registries, &[])
    }

    /// [`Dockerd::start`], with `registry_mirrors` (URLs) as the daemon's
    /// `registry-mirrors`: where it pulls Docker Hub's images from.
    pub fn start_with_mirrors(
        dockerd: &Path,
        docker: &Path,
        insecure_registries: &[&str],
        registry_mirrors: &[&str],
    ) -> Dockerd {
        let dir = short_temp_dir("berth-dockerd-");
        let root = dir.path();
        // A configuration file of the test's own keeps a host's
        // /etc/docker/daemon.json (registry mirrors, another storage
        // driver…) out of the test.
        let config = serde_json::json!({ "registry-mirrors": registry_mirrors });
        std::fs::write(root.join("daemon.json"), config.to_string()).expect("write daemon.json");
        std::fs::create_dir_all(root.join("client")).expect("create client config dir");
        let log = root.join("dockerd.log");
        let log_file = std::fs::File::create(&log).expect("create dockerd log");
        let socket = root.join("docker.sock");
        let host = format!("unix://{}", socket.display());
        let mut command = Command::new(dockerd);
        for registry in insecure_registries {
            command.arg("--insecure-registry").arg(registry);
        }
        let mut child = command
            .arg("--debug")
            .arg("--config-file")
            .arg(root.join("daemon.json"))
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("docker.pid"))
            .arg("--host")
            .arg(&host)
            // No network set-up at all: the tests run containers with
            // `--network none`, and touching the host's iptables or creating
            // a docker0 bridge would leak state outside the temp directory.
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--bridge=none",
            ])
            // vfs copies layers instead of mounting them: slower for big
            // images, but it works on any file system and in nested
            // containers, and leaves no overlay mounts to clean up.
            .args(["--storage-driver", "vfs"])
            // Without `--containerd`, dockerd starts its own containerd whose
            // state and socket live under the exec root and data root, so it
            // cannot clash with a system containerd or with the containerd
            // tests running in parallel.
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", dockerd.display()));
        wait_for_socket(
            &mut child,
            &socket,
            b"GET /_ping HTTP/1.0\r\n\r\n",
            &log,
            Duration::from_secs(60),
        );
        Dockerd {
            dir: Some(dir),
            child: Some(child),
            host,
            docker: docker.to_path_buf(),
        }
    }

    /// A `docker` command aimed at this daemon (add its arguments), with a
    /// private client configuration (`docker manifest` keeps its local lists there) and none
    /// of the caller's docker environment.
    pub fn docker(&self) -> Command {
        // Every client command runs under `timeout`: a registry that never
        // answers must fail the test (exit status 124) well within the time
        // CI allows, rather than hang it.
        let mut command = Command::new("timeout");
        command
            .args(["--kill-after=10s", "120s"])
            .arg(&self.docker)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.dir().join("client"))
            // The classic builder needs no buildx plugin and no network; it is
            // what a docker.io installation without plugins uses anyway.
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_API_VERSION");
        command
    }

    /// The daemon's temporary directory, for scratch files such as build
    /// contexts that should disappear with it.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dockerd directory").path()
    }

    /// The daemon's debug log so far (requests it made to the registry are
    /// logged there), for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.dir().join("dockerd.log"), lines)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of the private dockerd's log ---\n{}",
                log_tail(&dir.path().join("dockerd.log"), 80)
            );
        }
        if let Some(mut child) = self.child.take() {
            stop_daemon(&mut child, dir.path(), Duration::from_secs(20));
        }
        remove_daemon_dir(dir, "dockerd");
    }
}
