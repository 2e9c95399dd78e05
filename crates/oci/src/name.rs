//! Repository names and tags, with the grammar of the OCI Distribution Spec.
//!
//! A repository name is one or more path components separated by `/`; each
//! component matches `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`. The first component is
//! the repository's namespace. A tag matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.

use std::fmt;
use std::str::FromStr;

/// Longest repository name accepted. The spec leaves the limit to registries;
/// Docker and Distribution use 255 characters, which clients expect.
pub const MAX_NAME_LEN: usize = 255;

/// Why a string is not a valid repository name or tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("repository name is empty")]
    Empty,
    #[error("repository name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("repository name component {0:?} does not match the grammar")]
    BadComponent(String),
    #[error("tag {0:?} does not match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    BadTag(String),
}

/// A validated repository name such as `library/alpine` or `team-a/sub/api`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(Box<str>);

impl RepoName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        for component in s.split('/') {
            if !is_valid_component(component) {
                return Err(NameError::BadComponent(component.to_string()));
            }
        }
        Ok(RepoName(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first path component, which names the repository's namespace.
    pub fn namespace(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

/// Checks one path component against `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    // The component must start with a run of alphanumerics.
    if bytes.is_empty() || !alnum(bytes[0]) {
        return false;
    }
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator: one '.', one or two '_', or any number of '-'.
        let start = i;
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < bytes.len() && bytes[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        debug_assert!(i > start);
        // A separator must be followed by an alphanumeric.
        if i >= bytes.len() || !alnum(bytes[i]) {
            return false;
        }
    }
    true
}

impl FromStr for RepoName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        RepoName::parse(s)
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoName({})", self.0)
    }
}

/// A validated tag such as `latest` or `v1.2.3-rc_1`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(Box<str>);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let bytes = s.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_');
        let rest_ok = bytes
            .iter()
            .skip(1)
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        if first_ok && rest_ok && bytes.len() <= 128 {
            Ok(Tag(s.into()))
        } else {
            Err(NameError::BadTag(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Tag::parse(s)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        let long_ok = "a".repeat(MAX_NAME_LEN);
        let too_long = "a".repeat(MAX_NAME_LEN + 1);
        let cases: &[(&str, bool)] = &[
            ("alpine", true),
            ("library/alpine", true),
            ("team-a/sub/deep/api", true),
            ("a.b_c__d---e", true),
            ("a0/1b", true),
            ("my-app.v2", true),
            (&long_ok, true),
            (&too_long, false),
            ("", false),
            ("Alpine", false),
            ("-alpine", false),
            ("alpine-", false),
            ("a..b", false),
            ("a___b", false),
            ("a._b", false),
            ("a//b", false),
            ("/a", false),
            ("a/", false),
            ("a b", false),
            ("a/_b", false),
            ("a:b", false),
        ];
        for (input, ok) in cases {
            assert_eq!(RepoName::parse(input).is_ok(), *ok, "input {input:?}");
        }
    }

    #[test]
    fn namespace_is_first_component() {
        assert_eq!(RepoName::parse("team-a/api").unwrap().namespace(), "team-a");
        assert_eq!(RepoName::parse("alpine").unwrap().namespace(), "alpine");
        assert_eq!(RepoName::parse("a/b/c").unwrap().namespace(), "a");
    }

    #[test]
    fn tags() {
        let t128 = "a".repeat(128);
        let t129 = "a".repeat(129);
        let cases: &[(&str, bool)] = &[
            ("latest", true),
            ("v1.2.3", true),
            ("_hidden", true),
            ("Release-1_0", true),
            (&t128, true),
            (&t129, false),
            ("", false),
            (".dot", false),
            ("-dash", false),
            ("a/b", false),
            ("a:b", false),
            ("sha256:abc", false),
        ];
        for (input, ok) in cases {
            assert_eq!(Tag::parse(input).is_ok(), *ok, "input {input:?}");
        }
    }
}
