//! What the dockerd and containerd helpers share: the root check, stopping a
//! daemon and whatever it started, and proving that nothing (no process, no
//! mount) is left behind in its temporary directory.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::images::in_ci;
use super::{is_root, record_skip};

/// Daemons such as dockerd and containerd need root (namespaces, mounts,
/// cgroups). Outside CI a non-root run records a loud skip; CI runs as root,
/// so there it is a failure.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if in_ci() {
        panic!("{test}: must run as root to start its daemons (CI=true)");
    }
    record_skip(test, "not root, and the test starts its own daemon");
    false
}

/// A short, unique directory under `/tmp` for one daemon. Unix socket paths
/// are limited to 108 bytes and containerd nests its sockets a few levels
/// deep, so the directory must not inherit a long `TMPDIR`.
pub fn short_temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create daemon temp dir")
}

/// Waits until a daemon answers on its unix socket, or panics with the tail
/// of its log if it exits or does not answer within `timeout`. `probe` is a
/// raw request written to the socket, and any bytes back mean it is serving;
/// an empty probe waits only for the socket to accept connections.
pub fn wait_for_socket(
    child: &mut Child,
    socket: &Path,
    probe: &[u8],
    log: &Path,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "daemon exited with {status} before serving {}:\n{}",
                socket.display(),
                log_tail(log, 60)
            );
        }
        if let Ok(mut stream) = UnixStream::connect(socket) {
            // A gRPC socket (containerd) waits for the client to speak HTTP/2
            // first, so there an accepted connection is the only sign; it is
            // enough, because containerd creates its socket last.
            if probe.is_empty() {
                return;
            }
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut answer = [0u8; 64];
            if stream.write_all(probe).is_ok() && matches!(stream.read(&mut answer), Ok(n) if n > 0)
            {
                return;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "daemon did not answer on {} within {timeout:?}:\n{}",
                socket.display(),
                log_tail(log, 60)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of a log file, for failure messages.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Stops a daemon: SIGTERM, a grace period for it to stop its own children
/// and undo its mounts, then SIGKILL. Afterwards any process whose command
/// line still names `dir` (a daemon-managed containerd, a shim) is killed by
/// its id: those were started by this daemon alone, because `dir` is unique.
pub fn stop_daemon(child: &mut Child, dir: &Path, grace: Duration) {
    signal(child.id(), "TERM");
    let deadline = Instant::now() + grace;
    let mut exited = false;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !exited {
        eprintln!(
            "daemon {} ignored SIGTERM for {grace:?}; killing it",
            child.id()
        );
        let _ = child.kill();
        let _ = child.wait();
    }
    for pid in processes_naming(dir) {
        eprintln!("killing process {pid} left behind under {}", dir.display());
        signal(pid, "KILL");
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// Process ids whose command line mentions `dir`.
fn processes_naming(dir: &Path) -> Vec<u32> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // The fifth field of mountinfo is the mount point; spaces in it are
    // escaped as \040, and our temporary paths contain none.
    let mut points: Vec<String> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| *point == prefix || point.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    points.dedup();
    points
}

/// Unmounts whatever a stopped daemon left mounted under `dir` (lazily if a
/// plain unmount fails) and returns what it found, so the caller can fail the
/// test: a daemon that leaks mounts would break the next run's cleanup.
pub fn unmount_leftovers(dir: &Path) -> Vec<String> {
    let leftovers = mounts_under(dir);
    for point in &leftovers {
        let plain = Command::new("umount")
            .arg(point)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !plain {
            let _ = Command::new("umount").arg("-l").arg(point).status();
        }
    }
    leftovers
}

/// Removes the daemon's directory after `stop_daemon`, and fails the test
/// (unless it is already failing) if mounts were left behind.
pub fn remove_daemon_dir(dir: tempfile::TempDir, what: &str) {
    let leftovers = unmount_leftovers(dir.path());
    let path = dir.path().to_path_buf();
    if let Err(error) = dir.close() {
        eprintln!("cannot remove {what} directory {}: {error}", path.display());
    }
    if !leftovers.is_empty() && !std::thread::panicking() {
        panic!(
            "{what} left mounts behind under {}: {leftovers:?}",
            path.display()
        );
    }
}
