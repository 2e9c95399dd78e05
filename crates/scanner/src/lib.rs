//! The Vulnerability Advisor's core: what is installed in an image, which
//! known vulnerabilities affect it, and its software bill of materials.
//!
//! # Layout
//!
//! The work is split three ways, as Clair v4 splits it:
//!
//! - **Indexing** ([`Indexer`]): one streaming pass over each layer blob
//!   (gzip, zstd or plain tar) feeds the [analyzers](analyzer), one per kind
//!   of file, each asking only for the paths it reads; the result is a
//!   [`LayerIndex`] that depends on that layer alone, so it is computed once
//!   per layer digest. [`IndexReport::from_layers`] coalesces an image's
//!   layers in order (whiteouts and opaque directories applied).
//! - **Advisories** ([`osv`]): OSV records (JSON, YAML, an ecosystem's
//!   `all.zip`), normalized into [`Advisory`] values; [`AdvisorySource`] is
//!   the small trait a store of them implements, [`AdvisoryIndex`] the
//!   in-memory one.
//! - **Matching** ([`matcher`]): an index report against an advisory source,
//!   giving [`Finding`]s, with the version order of each ecosystem
//!   ([`version`]).
//!
//! Around them: [`sbom`] (CycloneDX 1.6 and SPDX 2.3 from an index
//! report), [`purl`] (package URLs), [`limits`] (the caps that bound what a
//! hostile layer can cost) and [`report`] (the index types).
//!
//! **Invariants:** indexing writes nothing to disk, holds at most the
//! decompressor's window plus [`Limits::memory_budget`] of file buffers at
//! once, and never panics on its input: whatever cannot be read is named in
//! the result's `problems`. This crate does no HTTP and no SQL; time is a
//! parameter.

pub mod advisory;
mod analyzer;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod layer;
pub mod limits;
pub mod matcher;
pub mod osv;
pub mod purl;
pub mod report;
pub mod sbom;
pub mod version;

pub use advisory::{
    Advisory, AdvisoryIndex, AdvisorySource, Affected, Change, Event, PackageKey, Range, RangeKind,
    Severity, SeverityLevel, SourceError,
};
pub use analyzer::python::normalize_name as normalize_pypi_name;
pub use index::Indexer;
pub use layer::Compression;
pub use limits::Limits;
pub use matcher::{assess, assess_with, Finding};
pub use report::{
    Distribution, FileContents, FileRecord, IndexReport, LayerIndex, LayerStats, Package,
    PackageKind, Problem, ProblemKind, SourcePackage,
};
