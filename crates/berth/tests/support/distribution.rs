//! A CNCF Distribution registry (Debian's `docker-registry`) started by a
//! test: the upstream of the pull-through cache, the other end of
//! replication.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Distribution registry in a temp dir, killed on drop.
pub struct Distribution {
    pub addr: String,
    child: Option<Child>,
    binary: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

/// Runs `docker-registry serve CONFIG` and waits (bounded) until `addr`
/// takes connections.
fn spawn(binary: &Path, config: &Path, addr: &str) -> Child {
    let child = Command::new(binary)
        .arg("serve")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Distribution {
    /// Starts `docker-registry serve` on a free port, with deletes enabled
    /// (replication deletes on it); with `htpasswd`, it asks for Basic
    /// credentials checked against that file's content.
    pub fn start(binary: &Path, htpasswd: Option<&str>) -> Distribution {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  delete:\n    enabled: true\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some(entries) = htpasswd {
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, entries).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: upstream\n    path: {}\n",
                path.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let addr = format!("127.0.0.1:{port}");
        let child = spawn(binary, &config_path, &addr);
        Distribution {
            addr,
            child: Some(child),
            binary: binary.to_path_buf(),
            config: config_path,
            _dir: dir,
        }
    }

    /// Starts it again after [`Distribution::stop`], on the same address
    /// and data.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Some(spawn(&self.binary, &self.config, &self.addr));
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        self.stop();
    }
}
