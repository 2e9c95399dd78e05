//! Entry points for the fuzz targets (`fuzz/`) and the robustness tests:
//! the parsers that read untrusted bytes, reachable one at a time. Only
//! with the `fuzzing` feature; not part of the crate's API.

use crate::analyzer::{self, Context};
use crate::layer::tar::TarReader;
use crate::limits::{Budget, Limits};

/// Reads every entry of a tar stream and all its data.
pub fn tar(data: &[u8]) {
    let mut reader = TarReader::new(data, 64 << 10);
    let mut buf = [0u8; 4096];
    while let Ok(Some(_entry)) = reader.next_entry() {
        while let Ok(n) = reader.read_data(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

/// Paths each analyzer reads, to aim bytes at one of them.
pub const PATHS: &[&str] = &[
    "etc/os-release",
    "etc/redhat-release",
    "var/lib/dpkg/status",
    "lib/apk/db/installed",
    "var/lib/rpm/Packages",
    "usr/lib/python3/dist-packages/x-1.0.dist-info/METADATA",
    "srv/node_modules/x/package.json",
    "srv/package-lock.json",
    "srv/Cargo.lock",
    "usr/bin/tool",
    "srv/app.war",
    "usr/lib/ruby/gems/3.0.0/specifications/x.gemspec",
    "srv/composer.lock",
    "srv/app.deps.json",
];

/// Runs every analyzer that wants `PATHS[selector % PATHS.len()]` on the
/// bytes, as an executable regular file.
pub fn analyze(selector: u8, data: &[u8]) {
    let path = PATHS[selector as usize % PATHS.len()];
    let limits = Limits::default();
    let budget = Budget::new(limits.memory_budget);
    let candidate = analyzer::Candidate {
        path,
        size: data.len() as u64,
        mode: 0o755,
        regular: true,
    };
    for analyzer in analyzer::all() {
        if analyzer.wants(&candidate) {
            let mut ctx = Context {
                limits: &limits,
                budget: &budget,
                problems: Vec::new(),
            };
            let _ = analyzer.analyze(&mut ctx, path, data);
            let mut reader = data;
            let _ = analyzer.analyze_stream(&mut ctx, path, &mut reader);
        }
    }
}
