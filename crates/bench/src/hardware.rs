//! `berth-bench hw`: the machine's own limits, measured the same way the
//! registry would hit them, so every scenario can be read as a fraction of
//! what the hardware allows.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use crate::client::Result;
use crate::content::random_bytes;
use crate::scenarios::Report;

const MIB: usize = 1024 * 1024;
const MB: f64 = 1_000_000.0;

/// Prints `hw_sha256`, `hw_loopback_tcp`, `hw_disk_write_fsync` and
/// `hw_small_file_fsync`.
pub fn run(dir: &Path, quick: bool) -> Result<()> {
    let mut report = Report::default();
    let scale = if quick { 16 } else { 1 };
    report.figure("hw_sha256", sha256_speed(512 * MIB / scale), "MB/s");
    report.figure(
        "hw_loopback_tcp",
        loopback_speed(4096 * MIB / scale)?,
        "MB/s",
    );
    report.figure(
        "hw_disk_write_fsync",
        disk_write_speed(dir, 512 * MIB / scale)?,
        "MB/s",
    );
    report.figure(
        "hw_small_file_fsync",
        small_file_fsync_rate(dir, 200 / scale)?,
        "files/s",
    );
    Ok(())
}

/// SHA-256 over an in-memory buffer on one core: the ceiling for any push,
/// since a registry must hash every byte it accepts.
fn sha256_speed(length: usize) -> f64 {
    let data = random_bytes(length, 1);
    let started = Instant::now();
    // Hashing in 1 MiB updates is how a streaming upload feeds the hasher.
    let mut hasher = Sha256::new();
    for chunk in data.chunks(MIB) {
        hasher.update(chunk);
    }
    std::hint::black_box(hasher.finalize());
    length as f64 / MB / started.elapsed().as_secs_f64()
}

/// One TCP stream over loopback between two threads, 256 KiB writes and
/// reads: the ceiling for a single-stream pull or push on this machine.
fn loopback_speed(length: usize) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut stream = TcpStream::connect(address)?;
        let buffer = random_bytes(256 * 1024, 2);
        let mut sent = 0;
        while sent < length {
            let part = buffer.len().min(length - sent);
            stream.write_all(&buffer[..part])?;
            sent += part;
        }
        Ok(())
    });
    let (mut stream, _) = listener.accept()?;
    let mut buffer = vec![0u8; 256 * 1024];
    let started = Instant::now();
    let mut received = 0usize;
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        received += read;
    }
    let seconds = started.elapsed().as_secs_f64();
    writer.join().map_err(|_| "loopback writer panicked")??;
    if received != length {
        return Err(format!("loopback: received {received} of {length} bytes").into());
    }
    Ok(length as f64 / MB / seconds)
}

/// Writes a file in 1 MiB writes and fsyncs it, counting the fsync: the
/// ceiling for a durable blob commit into `dir`.
fn disk_write_speed(dir: &Path, length: usize) -> Result<f64> {
    let path = dir.join(format!("berth-bench-hw-{}.tmp", std::process::id()));
    let buffer = random_bytes(MIB, 3);
    let started = Instant::now();
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&path)?;
        let mut written = 0;
        while written < length {
            let part = buffer.len().min(length - written);
            file.write_all(&buffer[..part])?;
            written += part;
        }
        file.sync_all()
    })();
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    result?;
    Ok(length as f64 / MB / seconds)
}

/// Creates, writes (4 KiB), fsyncs and renames small files: the ceiling for
/// durably committing small blobs and manifests one at a time.
fn small_file_fsync_rate(dir: &Path, count: usize) -> Result<f64> {
    let scratch = dir.join(format!("berth-bench-hw-{}.d", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let buffer = random_bytes(4096, 4);
    let started = Instant::now();
    let result = (|| -> std::io::Result<()> {
        for index in 0..count {
            let temporary = scratch.join(format!("{index}.tmp"));
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&buffer)?;
            file.sync_all()?;
            std::fs::rename(&temporary, scratch.join(index.to_string()))?;
        }
        // The rename is durable only once the directory itself is synced.
        std::fs::File::open(&scratch)?.sync_all()
    })();
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&scratch);
    result?;
    Ok(count as f64 / seconds)
}
