//! The vocabulary of the OCI Distribution Specification, parsed and validated.
//!
//! # Layout
//!
//! - [`digest`]: content digests (`sha256:…`, `sha512:…`) and incremental hashing.
//! - [`name`]: repository names (`team-a/api`) and tags.
//! - [`reference`]: what follows `/manifests/`: a tag or a digest.
//! - [`range`]: HTTP `Range` and `Content-Range` headers as the spec uses them.
//! - [`manifest`]: image manifests, indexes, Docker schema2 manifests and lists, artifacts.
//! - [`upload`]: upload session identifiers.
//! - [`error`]: the spec's error codes and their HTTP status.
//!
//! This crate does no IO, is not async and knows nothing of HTTP frameworks: every
//! other crate parses raw strings into these types at its edge and never handles
//! the raw strings again.

pub mod digest;
pub mod error;
pub mod manifest;
pub mod name;
pub mod pattern;
pub mod range;
pub mod reference;
pub mod upload;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::ErrorCode;
pub use manifest::{Descriptor, ManifestError, ManifestKind, ParsedManifest};
pub use name::{NameError, RepoName, Tag};
pub use pattern::{
    PatternError, RepoPattern, RepoPatternError, TagPattern, TagRegex, TagRegexError,
};
pub use range::{ByteRange, RangeError, RangeRequest};
pub use reference::{Reference, ReferenceError};
pub use upload::UploadId;
