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
