//! `berth-bench hw`: the machine's own limits, measured the same way the
//! registry would hit them, so every scenario can be read as a fraction of
//! what the hardware allows.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};

use crate::client::{Result, Target};
use crate::content::random_bytes;
use crate::rate::{self, RequestTemplate};
use crate::scenarios::Report;

const MIB: usize = 1024 * 1024;
const MB: f64 = 1_000_000.0;

/// Prints `hw_sha256`, `hw_durable_blob_cpu`, `hw_loopback_tcp`,
/// `hw_disk_write_fsync`, `hw_small_file_fsync` (one writer),
/// `hw_small_file_fsync_16` (sixteen), `hw_http_ceiling`,
/// `hw_http_server_cpu_per_request` and `hw_bench_cpu_per_request`.
pub fn run(dir: &Path, quick: bool) -> Result<()> {
    let mut report = Report::default();
    let scale = if quick { 16 } else { 1 };
    let ceiling_duration = if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(3)
    };
    report.figure("hw_sha256", sha256_speed(512 * MIB / scale), "MB/s");
    // Measured before the measurements below delete their files: ext4
    // without a journal scans past inodes freed in the last half minute or
    // so when it allocates one, which would charge their removal to this
    // figure.
    report.figure(
        "hw_durable_blob_cpu",
        durable_blob_cpu(dir, 400 / scale)?,
        "us",
    );
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
        small_file_fsync_rate(dir, 200 / scale, 1)?,
        "files/s",
    );
    report.figure(
        "hw_small_file_fsync_16",
        small_file_fsync_rate(dir, 800 / scale, 16)?,
        "files/s",
    );
    let ceiling = http_ceiling(ceiling_duration)?;
    report.figure("hw_http_ceiling", ceiling.requests_per_second, "req/s");
    report.figure(
        "hw_http_server_cpu_per_request",
        ceiling.server_micros_per_request,
        "us",
    );
    report.figure(
        "hw_bench_cpu_per_request",
        ceiling.generator_micros_per_request,
        "us",
    );
    Ok(())
}

/// The request rate this load generator reaches against the cheapest
/// possible HTTP server (hyper on one thread answering every request with a
/// fixed 1 KiB body, about a manifest's size), with 64 connections as in
/// `manifest_get`. Both share the machine's cores as the scenarios do, so no
/// registry can show more than this through this tool on this machine: a
/// figure near it means the tool, not the registry, is the limit.
///
/// Also returns the generator's CPU cost per request in microseconds, so a
/// scenario's request rate tells how much of the machine the tool itself
/// took, and the server's: what the kernel and the least an HTTP/1 server
/// must do cost per request here, the floor under any registry's CPU for a
/// request.
fn http_ceiling(duration: Duration) -> Result<Ceiling> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::Builder::new()
        .name("ceiling-server".into())
        .spawn(move || -> Result<Duration> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let cpu_before = thread_cpu()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let body = Bytes::from(vec![b'x'; 1024]);
                let accept_loop = async {
                    loop {
                        let (stream, _) = listener.accept().await?;
                        stream.set_nodelay(true)?;
                        let body = body.clone();
                        let service = service_fn(move |_request| {
                            let body = body.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                    body,
                                )))
                            }
                        });
                        tokio::spawn(
                            hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service),
                        );
                    }
                };
                tokio::select! {
                    result = accept_loop => result,
                    _ = stopped => Ok::<_, std::io::Error>(()),
                }
            })?;
            Ok(thread_cpu()?.saturating_sub(cpu_before))
        })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let measured = runtime.block_on(async {
        let target = Target::from_url(&format!("http://{address}")).await?;
        let template = RequestTemplate::new(&target, http::Method::GET, "/", None)?;
        rate::run(vec![template], 64, duration, available_threads()).await
    });
    let _ = stop.send(());
    let server_cpu = server.join().map_err(|_| "ceiling server panicked")??;
    let measured = measured?;
    let completed = measured.completed.max(1) as f64;
    // The generator's figure counts only its own threads, not the server's.
    Ok(Ceiling {
        requests_per_second: measured.requests_per_second(),
        server_micros_per_request: server_cpu.as_secs_f64() * 1e6 / completed,
        generator_micros_per_request: measured.generator_cpu_seconds * 1e6 / completed,
    })
}

/// What `http_ceiling` measured.
struct Ceiling {
    requests_per_second: f64,
    server_micros_per_request: f64,
    generator_micros_per_request: f64,
}

/// The CPU time (user and system) the calling thread has used, to the
/// microsecond: `/proc`'s clock ticks are too coarse for a loop of a
/// fraction of a second.
fn thread_cpu() -> std::io::Result<Duration> {
    // SAFETY: `getrusage` writes only into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let micros = |time: libc::timeval| time.tv_sec as u64 * 1_000_000 + time.tv_usec as u64;
    Ok(Duration::from_micros(
        micros(usage.ru_utime) + micros(usage.ru_stime),
    ))
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

/// Creates, writes (4 KiB), fsyncs and renames small files from `writers`
/// threads at once: the ceiling for durably committing small blobs and
/// manifests, one client at a time (1) or from many clients (16), where the
/// disk and the filesystem journal can batch concurrent flushes.
fn small_file_fsync_rate(dir: &Path, count: usize, writers: usize) -> Result<f64> {
    let scratch = dir.join(format!("berth-bench-hw-{}-{writers}.d", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let buffer = random_bytes(4096, 4);
    let per_writer = count.div_ceil(writers);
    let started = Instant::now();
    let result = std::thread::scope(|scope| -> std::io::Result<()> {
        let threads: Vec<_> = (0..writers)
            .map(|writer| {
                let (scratch, buffer) = (&scratch, &buffer);
                scope.spawn(move || -> std::io::Result<()> {
                    for index in 0..per_writer {
                        let name = format!("{writer}-{index}");
                        let temporary = scratch.join(format!("{name}.tmp"));
                        let mut file = std::fs::File::create(&temporary)?;
                        file.write_all(buffer)?;
                        file.sync_all()?;
                        std::fs::rename(&temporary, scratch.join(name))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for thread in threads {
            thread
                .join()
                .map_err(|_| std::io::Error::other("fsync writer panicked"))??;
        }
        // The renames are durable only once the directory itself is synced.
        std::fs::File::open(&scratch)?.sync_all()
    });
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&scratch);
    result?;
    Ok((per_writer * writers) as f64 / seconds)
}

/// The CPU time in microseconds one thread spends per small blob committed
/// the way a registry on a filesystem must before it acknowledges a push:
/// the upload's file created, 4 KiB written and `fdatasync`ed, the file
/// hard-linked under its digest into one of 256 fan-out directories, that
/// directory fsynced, and the upload's name removed. Almost all of it is the
/// kernel's, so it is the floor under a small push's server CPU on this
/// filesystem: a `push_small` image has two blobs. The blobs are committed
/// one at a time because concurrent flushes would share the disk's waits
/// but not this CPU.
fn durable_blob_cpu(dir: &Path, count: usize) -> Result<f64> {
    let scratch = dir.join(format!("berth-bench-hw-{}-blobs.d", std::process::id()));
    let uploads = scratch.join("uploads");
    std::fs::create_dir_all(&uploads)?;
    let result = (|| -> std::io::Result<Duration> {
        for fan_out in 0..=255u8 {
            std::fs::create_dir(scratch.join(format!("{fan_out:02x}")))?;
        }
        std::fs::File::open(&scratch)?.sync_all()?;
        let mut buffer = random_bytes(4096, 5);
        let before = thread_cpu()?;
        for index in 0..count {
            // Each blob differs, as pushed blobs do, and lands in another
            // fan-out directory.
            buffer[..8].copy_from_slice(&(index as u64).to_le_bytes());
            let upload = uploads.join(index.to_string());
            let mut file = std::fs::File::create_new(&upload)?;
            file.write_all(&buffer)?;
            file.sync_data()?;
            drop(file);
            let fan_out = scratch.join(format!("{:02x}", index % 256));
            std::fs::hard_link(&upload, fan_out.join(index.to_string()))?;
            std::fs::File::open(&fan_out)?.sync_all()?;
            std::fs::remove_file(&upload)?;
        }
        Ok(thread_cpu()?.saturating_sub(before))
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(result?.as_secs_f64() * 1e6 / count.max(1) as f64)
}

/// One load thread per CPU, as the scenarios use by default.
pub fn available_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
