//! Indexing never holds more than 64 MiB of extra memory, whatever the
//! layer: measured with a counting allocator (this test binary's global
//! allocator; zstd allocates through it too) while indexing a layer full
//! of what makes the indexer buffer: package files just under the size
//! cap, executables far over it, a Java archive with nested archives, and
//! hundreds of megabytes of data nobody reads. The layer is written to
//! disk first, so it is not itself counted.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_scanner::Indexer;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(pointer, layout, new_size) };
        if !new.is_null() {
            if new_size > layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes that do not compress (so the ratio cap stays out of the way).
struct Noise(u64);

impl std::io::Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(buf.len())
    }
}

fn append(
    builder: &mut tar::Builder<impl Write>,
    path: &str,
    size: u64,
    mode: u32,
    prefix: &[u8],
    seed: u64,
) {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    let body = std::io::Read::chain(
        prefix,
        std::io::Read::take(Noise(seed), size - prefix.len() as u64),
    );
    builder
        .append_data(&mut header, path, body)
        .expect("append");
}

fn java_archive(nested: usize, nested_size: usize) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for n in 0..nested {
            let mut inner = std::io::Cursor::new(Vec::new());
            {
                let mut jar = zip::ZipWriter::new(&mut inner);
                jar.start_file(format!("META-INF/maven/g{n}/a{n}/pom.properties"), stored)
                    .expect("entry");
                jar.write_all(format!("groupId=g{n}\nartifactId=a{n}\nversion=1.{n}\n").as_bytes())
                    .expect("write");
                jar.start_file("blob.bin", stored).expect("entry");
                let mut noise = vec![0u8; nested_size];
                std::io::Read::read_exact(&mut Noise(n as u64 + 99), &mut noise).expect("noise");
                jar.write_all(&noise).expect("write");
                jar.finish().expect("finish");
            }
            zip.start_file(format!("WEB-INF/lib/a{n}.jar"), stored)
                .expect("entry");
            zip.write_all(&inner.into_inner()).expect("write");
        }
        zip.finish().expect("finish");
    }
    out.into_inner()
}

#[test]
fn indexing_stays_within_64_mib() {
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("layer.tar.zst");
    {
        let file = BufWriter::new(std::fs::File::create(&path).expect("create the layer"));
        let encoder = zstd::stream::Encoder::new(file, 1)
            .expect("zstd")
            .auto_finish();
        let mut builder = tar::Builder::new(encoder);
        // Package files just under the 32 MiB size cap: each is held while
        // it is parsed, one at a time.
        for n in 0..4u64 {
            let path = format!("usr/lib/python3/dist-packages/p{n}-1.0.dist-info/METADATA");
            append(
                &mut builder,
                &path,
                31 << 20,
                0o644,
                format!("Name: p{n}\nVersion: 1.0\n\n").as_bytes(),
                n + 1,
            );
        }
        // Files parsed into trees or copied as text, as large as the budget
        // allows them (twice their size): a lockfile of 40,000 packages and
        // a package database that is not UTF-8, which together come near
        // the cap on packages.
        let mut lock =
            String::from("{\"lockfileVersion\": 3, \"packages\": {\"\": {\"name\": \"app\"}");
        for n in 0..40_000 {
            lock.push_str(&format!(
                ",\"node_modules/package-number-{n}\": {{\"version\": \"1.0.{n}\", \"resolved\": \"https://registry.npmjs.org/package-number-{n}/-/package-number-{n}-1.0.{n}.tgz\", \"integrity\": \"sha512-{}\"}}",
                "A".repeat(300)
            ));
        }
        lock.push_str("}}");
        assert!(
            lock.len() > 18 << 20 && lock.len() < 20 << 20,
            "{}",
            lock.len()
        );
        let mut header = tar::Header::new_gnu();
        header.set_size(lock.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "srv/app/package-lock.json", lock.as_bytes())
            .expect("append");
        let mut status = Vec::new();
        for n in 0..9_000 {
            status.extend_from_slice(
                format!(
                    "Package: p{n}\nStatus: install ok installed\nVersion: 1.{n}\nDescription: "
                )
                .as_bytes(),
            );
            status.extend_from_slice(b"\xff\xfe");
            status.extend_from_slice(&[b'x'; 300]);
            status.extend_from_slice(b"\n\n");
        }
        assert!(status.len() < 20 << 20);
        let mut header = tar::Header::new_gnu();
        header.set_size(status.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "var/lib/dpkg/status", &status[..])
            .expect("append");
        // Executables far over the cap: searched as streams.
        for n in 0..2u64 {
            append(
                &mut builder,
                &format!("usr/bin/big{n}"),
                96 << 20,
                0o755,
                b"\x7fELF\x02\x01\x01",
                n + 10,
            );
        }
        // A WAR under the cap holding archives that each need a buffer.
        let war = java_archive(3, 6 << 20);
        let mut header = tar::Header::new_gnu();
        header.set_size(war.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "srv/app.war", &war[..])
            .expect("append");
        // Data nobody reads.
        for n in 0..4u64 {
            append(
                &mut builder,
                &format!("data/blob{n}"),
                64 << 20,
                0o644,
                b"",
                n + 20,
            );
        }
        builder
            .into_inner()
            .expect("finish the tar")
            .flush()
            .expect("flush");
    }
    let compressed = std::fs::metadata(&path).expect("the layer").len();

    let indexer = Indexer::default();
    let digest = berth_oci::Algorithm::Sha256.digest_of(b"memory-test-layer");
    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let file = std::fs::File::open(&path).expect("open the layer");
    let layer = indexer.index_layer_blocking(digest, None, file);
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    // What is still held is the index itself.
    let retained = CURRENT.load(Ordering::Relaxed) - baseline;
    eprintln!(
        "MEMORY retained index {:.1} MiB, working peak {:.1} MiB",
        retained as f64 / (1 << 20) as f64,
        (peak - retained) as f64 / (1 << 20) as f64
    );

    eprintln!(
        "MEMORY peak extra {:.1} MiB while indexing {} MiB compressed / {} MiB decompressed ({} entries, {} files read, budget peak {:.1} MiB)",
        peak as f64 / (1 << 20) as f64,
        compressed >> 20,
        layer.stats.decompressed_bytes >> 20,
        layer.stats.entries,
        layer.stats.files_read,
        layer.stats.peak_buffered_bytes as f64 / (1 << 20) as f64,
    );
    assert!(layer.problems.is_empty(), "{:?}", layer.problems);
    let report = berth_scanner::IndexReport::from_layers(std::slice::from_ref(&layer));
    // Everything under the caps was read: 4 Python distributions, the 3
    // nested archives, the lockfile's and the database's packages.
    assert_eq!(report.packages.len(), 7 + 40_000 + 9_000);
    assert!(peak < 64 << 20, "peak extra memory {peak} bytes");
}
