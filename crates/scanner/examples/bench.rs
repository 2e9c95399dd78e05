//! Benchmarks of the scanner's core, without a benchmark framework:
//!
//! - **indexing**: layers (given with `--layer PATH`, or a synthetic one of
//!   text, package databases and binaries, compressed with gzip and zstd),
//!   reported as compressed megabytes per second of the indexing thread's
//!   CPU time (so a busy machine does not skew it);
//! - **import**: parsing and storing OSV records (`--advisories N`,
//!   500,000 by default), from JSON bytes;
//! - **assessment**: an image of `--packages N` packages (500 by default)
//!   against those advisories, median and worst of repeated runs.
//!
//! ```text
//! cargo run -p berth-scanner --release --example bench -- [--layer PATH]... [--advisories N] [--packages N]
//! ```

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_oci::Algorithm;
use berth_scanner::{
    assess_with, osv, Advisory, AdvisoryIndex, Distribution, IndexReport, Indexer, Package,
    PackageKey, PackageKind,
};

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A layer that compresses like real ones (about 3:1): source-like text,
/// a dpkg database, Python metadata, and incompressible binary sections.
fn synthetic_layer(target: usize) -> Vec<u8> {
    let words = [
        "fn", "let", "return", "struct", "impl", "self", "package", "version", "import", "from",
        "def", "class", "if", "else", "for", "while", "match", "error", "value", "config",
        "server", "client", "request", "response", "handler", "buffer", "stream", "layer", "index",
        "report", "=", "(", ")", "{", "}", ";",
    ];
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut builder = tar::Builder::new(Vec::new());
    let add = |builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        builder
            .append_data(&mut header, path, data)
            .expect("append");
    };
    let mut status = String::new();
    for n in 0..800 {
        status.push_str(&format!(
            "Package: package{n}\nStatus: install ok installed\nSource: source{}\nVersion: 1.{n}-{}\nArchitecture: amd64\nDescription: a package\n  that does things\n\n",
            n / 3,
            n % 7
        ));
    }
    add(
        &mut builder,
        "var/lib/dpkg/status",
        status.as_bytes(),
        0o644,
    );
    let mut written = status.len();
    let mut n = 0;
    while written < target {
        let size = 2_000 + rng.below(200_000) as usize;
        let mut data = Vec::with_capacity(size);
        if n % 5 == 4 {
            // Binary-like: half noise, half zeros.
            while data.len() < size {
                let v = rng.next();
                data.extend_from_slice(&if v.is_multiple_of(2) {
                    v.to_le_bytes()
                } else {
                    [0; 8]
                });
            }
            add(
                &mut builder,
                &format!("usr/lib/x86_64-linux-gnu/lib{n}.so"),
                &data,
                0o644,
            );
        } else {
            while data.len() < size {
                data.extend_from_slice(words[rng.below(words.len() as u64) as usize].as_bytes());
                data.push(if rng.below(12) == 0 { b'\n' } else { b' ' });
                if rng.below(40) == 0 {
                    data.extend_from_slice(format!("{}", rng.next()).as_bytes());
                }
            }
            add(
                &mut builder,
                &format!("usr/share/app/src/file{n}.rs"),
                &data,
                0o644,
            );
        }
        if n % 50 == 0 {
            let metadata = format!("Name: dist{n}\nVersion: 1.{n}.0\n\n");
            add(
                &mut builder,
                &format!("usr/lib/python3/dist-packages/dist{n}-1.{n}.0.dist-info/METADATA"),
                metadata.as_bytes(),
                0o644,
            );
        }
        written += size;
        n += 1;
    }
    builder.into_inner().expect("tar")
}

fn bench_index(name: &str, blob: &[u8]) {
    let indexer = Indexer::default();
    let digest = Algorithm::Sha256.digest_of(blob);
    let mut best = Duration::MAX;
    let mut layer = None;
    for _ in 0..3 {
        let cpu = thread_cpu();
        let index = indexer.index_layer_blocking(digest.clone(), None, blob);
        best = best.min(thread_cpu() - cpu);
        layer = Some(index);
    }
    let layer = layer.expect("indexed");
    let seconds = best.as_secs_f64();
    println!(
        "index {name:<28} {:>7.1} MB compressed, {:>7.1} MB tar: {:>7.3} s CPU, {:>6.0} MB/s compressed, {:>6.0} MB/s tar, {} packages, {} problems",
        layer.stats.compressed_bytes as f64 / 1e6,
        layer.stats.decompressed_bytes as f64 / 1e6,
        seconds,
        layer.stats.compressed_bytes as f64 / 1e6 / seconds,
        layer.stats.decompressed_bytes as f64 / 1e6 / seconds,
        IndexReport::from_layers(std::slice::from_ref(&layer)).packages.len(),
        layer.problems.len()
    );
    // Inflate alone, through the same flate2 decoder and buffer size, is
    // what bounds a gzip layer: printed beside it to compare.
    if blob.starts_with(&[0x1f, 0x8b]) {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let cpu = thread_cpu();
            let mut decoder = flate2::bufread::MultiGzDecoder::new(
                std::io::BufReader::with_capacity(64 << 10, blob),
            );
            // Into a 256 KiB buffer, as the indexer reads it.
            let mut buffer = vec![0; 256 << 10];
            while decoder.read(&mut buffer).expect("inflate") > 0 {}
            best = best.min(thread_cpu() - cpu);
        }
        println!(
            "inflate alone {name:<20} {:>7.1} MB compressed: {:>7.3} s CPU, {:>6.0} MB/s compressed",
            blob.len() as f64 / 1e6,
            best.as_secs_f64(),
            blob.len() as f64 / 1e6 / best.as_secs_f64()
        );
    }
}

/// Synthetic OSV records as JSON: a realistic spread of ecosystems, names
/// drawn from a pool so that packages have several advisories.
fn synthetic_records(count: usize) -> Vec<Vec<u8>> {
    let ecosystems = [
        ("Debian:12", 30),
        ("Ubuntu:22.04:LTS", 10),
        ("npm", 15),
        ("PyPI", 10),
        ("Maven", 10),
        ("Go", 8),
        ("crates.io", 3),
        ("RubyGems", 3),
        ("Packagist", 3),
        ("NuGet", 3),
        ("AlmaLinux:9", 5),
    ];
    let total: u64 = ecosystems.iter().map(|(_, w)| *w).sum();
    let mut rng = Rng(42);
    (0..count)
        .map(|n| {
            let mut pick = rng.below(total);
            let ecosystem = ecosystems
                .iter()
                .find(|(_, weight)| {
                    if pick < *weight {
                        true
                    } else {
                        pick -= weight;
                        false
                    }
                })
                .map(|(e, _)| *e)
                .unwrap_or("npm");
            let name = format!("pkg{}", rng.below(60_000));
            let fixed = format!("{}.{}.{}", rng.below(5), rng.below(20), rng.below(30));
            let kind = if matches!(ecosystem, "Go" | "crates.io") { "SEMVER" } else { "ECOSYSTEM" };
            serde_json::json!({
                "schema_version": "1.6.0",
                "id": format!("BENCH-{n}"),
                "modified": "2025-01-01T00:00:00Z",
                "aliases": [format!("CVE-2025-{n}")],
                "summary": "a synthetic advisory",
                "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "affected": [{
                    "package": {"ecosystem": ecosystem, "name": name},
                    "ranges": [{"type": kind, "events": [{"introduced": "0"}, {"fixed": fixed}]}],
                }],
            })
            .to_string()
            .into_bytes()
        })
        .collect()
}

fn main() {
    let mut layers = Vec::new();
    let mut advisories = 500_000;
    let mut packages = 500;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--layer" => layers.push(args.next().expect("a path")),
            "--advisories" => {
                advisories = args.next().and_then(|n| n.parse().ok()).expect("a number")
            }
            "--packages" => packages = args.next().and_then(|n| n.parse().ok()).expect("a number"),
            other => panic!("unknown argument {other}"),
        }
    }

    // Indexing.
    if layers.is_empty() {
        let tar = synthetic_layer(256 << 20);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(&tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let zst = zstd::encode_all(&tar[..], 3).expect("zstd");
        bench_index("synthetic, gzip -6", &gz);
        bench_index("synthetic, zstd -3", &zst);
        bench_index("synthetic, uncompressed", &tar);
    }
    for path in &layers {
        let blob = std::fs::read(path).expect("read the layer");
        bench_index(path, &blob);
    }

    // Import.
    let records = synthetic_records(advisories);
    let bytes: usize = records.iter().map(Vec::len).sum();
    let started = Instant::now();
    let mut store = AdvisoryIndex::new();
    for record in &records {
        store.upsert(osv::parse_json(record).expect("a valid record"));
    }
    let import = started.elapsed();
    println!(
        "import {advisories} advisories ({:.0} MB of JSON): {:.2} s ({:.0} records/s)",
        bytes as f64 / 1e6,
        import.as_secs_f64(),
        advisories as f64 / import.as_secs_f64()
    );
    drop(records);
    // An incremental refresh: 1% of the records newer.
    let refresh: Vec<Advisory> = (0..advisories / 100)
        .map(|n| {
            let mut a = (**store
                .get(&format!("BENCH-{}", n * 97 % advisories))
                .expect("stored"))
            .clone();
            a.modified += time::Duration::days(1);
            a
        })
        .collect();
    let started = Instant::now();
    let changed = refresh
        .into_iter()
        .map(|a| store.upsert(a))
        .filter(|c| *c == berth_scanner::Change::Updated)
        .count();
    println!(
        "refresh {changed} changed advisories: {:.3} s",
        started.elapsed().as_secs_f64()
    );

    // Assessment: an image whose packages are half in the advisories'
    // name pool, across its ecosystems.
    let mut rng = Rng(7);
    let kinds = [
        PackageKind::Dpkg,
        PackageKind::Npm,
        PackageKind::Python,
        PackageKind::Maven,
        PackageKind::Go,
    ];
    let image = IndexReport {
        distribution: Some(Distribution {
            id: "debian".into(),
            version_id: Some("12".into()),
            ..Default::default()
        }),
        packages: (0..packages)
            .map(|n| {
                let kind = kinds[n % kinds.len()];
                let name = if n % 2 == 0 {
                    format!("pkg{}", rng.below(60_000))
                } else {
                    format!("other{n}")
                };
                let version = match kind {
                    PackageKind::Go => format!("v1.{}.0", rng.below(20)),
                    _ => format!("1.{}.0", rng.below(20)),
                };
                Package {
                    location: "bench".into(),
                    ..Package::new(kind, name, version)
                }
            })
            .collect(),
        ..Default::default()
    };
    let keys: Vec<PackageKey> = image
        .packages
        .iter()
        .map(|p| match p.kind {
            PackageKind::Dpkg => PackageKey::new("Debian", &p.name),
            kind => PackageKey::new(kind.language_ecosystem().expect("a language"), &p.name),
        })
        .collect();
    let mut lookups = Vec::new();
    let mut matches = Vec::new();
    let mut findings = 0;
    for _ in 0..200 {
        let cpu = thread_cpu();
        let candidates: Vec<Arc<Advisory>> = store.lookup(&keys);
        let looked_up = thread_cpu();
        findings = assess_with(&image, &candidates).len();
        matches.push(thread_cpu() - looked_up);
        lookups.push(looked_up - cpu);
    }
    let total: Vec<Duration> = {
        let mut t: Vec<Duration> = lookups.iter().zip(&matches).map(|(a, b)| *a + *b).collect();
        t.sort();
        t
    };
    lookups.sort();
    matches.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "assess {packages} packages against {} advisories (CPU time): median {:.3} ms (lookup {:.3} ms, matching {:.3} ms), worst {:.3} ms, {findings} findings",
        store.len(),
        ms(total[total.len() / 2]),
        ms(lookups[lookups.len() / 2]),
        ms(matches[matches.len() / 2]),
        ms(total[total.len() - 1]),
    );
}
