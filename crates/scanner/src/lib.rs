//! The Vulnerability Advisor's core.
pub mod version;
