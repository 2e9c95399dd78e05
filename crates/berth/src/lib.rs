//! The library half of the `berth` package: the configuration (every key
//! declared once, read from defaults, the file, the environment and flags)
//! and the node's name, which the configuration checks.
//!
//! They are a library so that the configuration reader can be fuzzed like
//! every other parser at Berth's edge (`fuzz/fuzz_targets/config.rs`); the
//! binary (`main.rs`) uses them from here, and everything else of the
//! package stays in the binary.

pub mod config;
pub mod node;
