//! Running commands and finding tools.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

/// Finds `tool` in the directories of `PATH`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// Whether the tests run as root (daemons such as dockerd need it, and
/// PostgreSQL refuses it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| output.stdout == b"0\n")
        .unwrap_or(false)
}

/// A loopback port nobody listens on right now. Another process could take
/// it before the caller binds it, which fails that start loudly, not
/// silently; callers that start servers retry on a new port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding a loopback port")
        .port()
}

/// `n` distinct loopback ports nobody listens on right now, for a server
/// with several listeners. All are held at once while they are chosen:
/// picked one by one, the kernel may hand the same port out twice (one
/// SeaweedFS start got its master and volume server on one port).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a loopback port"))
        .collect();
    held.iter()
        .map(|listener| listener.local_addr().expect("a bound address").port())
        .collect()
}

/// Runs a command, panicking with its output if it fails; returns stdout.
pub fn run(command: &mut Command) -> String {
    String::from_utf8_lossy(&run_bytes(command)).into_owned()
}

/// Runs a command like [`run`] and returns its stdout as exact bytes (for
/// manifests, whose digest depends on every byte).
pub fn run_bytes(command: &mut Command) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    if !output.status.success() {
        panic!(
            "{command:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output.stdout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_chosen_together_are_distinct() {
        // Many rounds, since a repeat picked one at a time is rare.
        for _ in 0..200 {
            let mut ports = free_ports(8);
            ports.sort_unstable();
            ports.dedup();
            assert_eq!(ports.len(), 8);
        }
    }
}
