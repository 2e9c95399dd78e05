//! Test harnesses shared by Berth's crates, as a dev-dependency.
//!
//! # Layout
//!
//! - [`skip`]: the skip convention: a test whose tool or service is missing
//!   records a loud skip outside CI and fails under `CI=true`.
//! - [`process`]: running commands and finding tools.
//! - [`postgres`]: a throw-away PostgreSQL cluster, one new database per test.
//! - [`seaweedfs`]: a throw-away SeaweedFS speaking S3, one new bucket per test.
//!
//! Every service runs on loopback ports chosen at start, in a temporary
//! directory, and is stopped when the test binary is done with it, so several
//! test binaries (and several worktrees) can run at once.
//!
//! **Architecture Invariant:** this crate depends on no Berth crate (see
//! `Cargo.toml`); harnesses that need Berth's types live in the tests of the
//! crate that owns those types and build on these.

pub mod postgres;
pub mod process;
pub mod seaweedfs;
pub mod skip;

pub use skip::{in_ci, record_skip, require_python_module, require_tool, tool_missing};

/// The workspace's `target` directory, where skips are recorded and
/// expensive fixtures (a PostgreSQL template) are kept between runs.
pub fn target_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}
