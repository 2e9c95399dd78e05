//! A manifest reference: the part of `/v2/<name>/manifests/<reference>` after the
//! last slash, which is either a tag or a digest.

use std::fmt;

use crate::digest::{Digest, DigestError};
use crate::name::{NameError, Tag};

/// A tag or a digest naming a manifest.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

/// Why a reference could not be parsed. A string containing `:` is read as a
/// digest, since tags cannot contain colons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Tag(#[from] NameError),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            Ok(Reference::Tag(Tag::parse(s)?))
        }
    }

    pub fn as_digest(&self) -> Option<&Digest> {
        match self {
            Reference::Digest(d) => Some(d),
            Reference::Tag(_) => None,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        assert!(matches!(Reference::parse(d), Ok(Reference::Digest(_))));
        assert!(matches!(
            Reference::parse("sha256:bad"),
            Err(ReferenceError::Digest(_))
        ));
        assert!(matches!(
            Reference::parse("-bad"),
            Err(ReferenceError::Tag(_))
        ));
        assert!(matches!(Reference::parse(""), Err(ReferenceError::Tag(_))));
        assert_eq!(Reference::parse(d).unwrap().to_string(), d);
    }
}
