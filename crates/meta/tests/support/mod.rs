//! Helpers shared by this crate's integration tests: loud skips when a
//! service the test needs is not installed, and a throw-away PostgreSQL.
//!
//! The skip convention is the one of `crates/berth/tests/support/mod.rs`,
//! copied here so that this crate's tests do not depend on the binary's.

#![allow(dead_code)]

pub mod postgres;

use std::path::Path;

/// Whether the tests run in CI, where every service is installed and a
/// missing one is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|value| value == "true" || value == "1")
        .unwrap_or(false)
}

/// Reports a missing tool: outside CI, records a loud skip and returns;
/// under `CI=true`, fails the test.
pub fn tool_missing(tool: &str, test: &str) {
    if in_ci() {
        panic!(
            "{test}: required tool {tool:?} is not installed (CI=true: missing tools are failures)"
        );
    }
    record_skip(test, &format!("{tool} is not installed"));
}

/// Records a skipped test in `target/e2e-skipped.txt` (read and printed by
/// the README's test command) and on stderr.
pub fn record_skip(test: &str, why: &str) {
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-skipped.txt");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write;
        let _ = writeln!(file, "{test}: {why}");
    }
}
