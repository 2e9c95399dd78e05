//! Indexes layer files given on the command line, bottom layer first, and
//! prints the coalesced index report as JSON (`--summary` for counts
//! only). A layer's digest is computed from its bytes.
//!
//! ```text
//! cargo run -p berth-scanner --release --example index -- [--summary] LAYER...
//! ```

use std::fs::File;
use std::io::Read;

use berth_oci::Algorithm;
use berth_scanner::{IndexReport, Indexer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut summary = false;
    let mut paths = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--summary" {
            summary = true;
        } else {
            paths.push(arg);
        }
    }
    let indexer = Indexer::default();
    let mut layers = Vec::new();
    for path in &paths {
        let mut hasher = Algorithm::Sha256.hasher();
        let mut file = File::open(path)?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        let digest = hasher.finish();
        let started = std::time::Instant::now();
        let layer = indexer.index_layer_blocking(digest, None, File::open(path)?);
        eprintln!(
            "{path}: {} entries, {} files read, {} compressed / {} decompressed bytes, peak buffered {} bytes, {:?}, {} problems",
            layer.stats.entries,
            layer.stats.files_read,
            layer.stats.compressed_bytes,
            layer.stats.decompressed_bytes,
            layer.stats.peak_buffered_bytes,
            started.elapsed(),
            layer.problems.len()
        );
        layers.push(layer);
    }
    let report = IndexReport::from_layers(&layers);
    if summary {
        println!("distribution: {:?}", report.distribution);
        let mut kinds = std::collections::BTreeMap::new();
        for p in &report.packages {
            *kinds.entry(format!("{:?}", p.kind)).or_insert(0) += 1;
        }
        println!("packages: {kinds:?}");
        for problem in &report.problems {
            println!("problem: {problem:?}");
        }
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
