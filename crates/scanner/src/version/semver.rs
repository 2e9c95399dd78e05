//! Semantic Versioning 2.0 precedence, with each ecosystem's spelling:
//!
//! - crates.io: strict `MAJOR.MINOR.PATCH[-PRE][+BUILD]` (Cargo's `semver`);
//! - npm: node-semver's spelling (a leading `v`, surrounding spaces);
//! - Go: a leading `v` is required, `v1.2` means `v1.2.0`, `+incompatible`
//!   is build metadata and so ignored, pseudo-versions
//!   (`v0.0.0-20210121094942-22b2f8951d46`) are pre-releases and sort as
//!   such; invalid versions sort below every valid one (golang.org/x/mod);
//! - OSV `SEMVER` ranges: SemVer 2.0, a leading `v` tolerated.
//!
//! Precedence: major, minor, patch as numbers; a version with a pre-release
//! sorts before the same version without; pre-release identifiers compare
//! one by one, numbers as numbers and below text, text as ASCII; more
//! identifiers win when all shared ones are equal; build metadata is
//! ignored.

use std::cmp::Ordering;

use super::dpkg::compare_digits;

/// How strictly to read a version string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spelling {
    /// Exactly three numeric components without leading zeros.
    Strict,
    /// node-semver's (non-loose) parse: surrounding spaces and one leading
    /// `v` are allowed.
    Npm,
    /// golang.org/x/mod/semver: a `v` is required; minor and patch may be
    /// left out (not with a pre-release or build suffix).
    Go,
    /// Go's rules with the `v` optional, as OSV writes Go versions.
    GoOptionalV,
    /// OSV SEMVER events: strict, but a leading `v` is tolerated.
    Osv,
}

/// Compares two versions; `None` when either does not parse.
pub fn compare(spelling: Spelling, a: &str, b: &str) -> Option<Ordering> {
    Some(SemVer::parse(spelling, a)?.cmp(&SemVer::parse(spelling, b)?))
}

/// Go's order, which is total: invalid versions sort below every valid one
/// and equal to each other, as `semver.Compare` does.
pub fn compare_go(a: &str, b: &str) -> Ordering {
    match (
        SemVer::parse(Spelling::Go, a),
        SemVer::parse(Spelling::Go, b),
    ) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    }
}

/// A parsed version: numeric parts are digit strings (compared as
/// unbounded numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemVer<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    pre: Vec<&'a str>,
}

impl<'a> SemVer<'a> {
    pub fn parse(spelling: Spelling, version: &'a str) -> Option<Self> {
        let mut s = version;
        match spelling {
            Spelling::Strict => {}
            Spelling::Osv => s = s.strip_prefix('v').unwrap_or(s),
            Spelling::Go => s = s.strip_prefix('v')?,
            Spelling::GoOptionalV => s = s.strip_prefix('v').unwrap_or(s),
            Spelling::Npm => {
                s = s.trim();
                s = s.strip_prefix('v').unwrap_or(s);
            }
        }
        // Build metadata: validated, then ignored.
        let (s, build) = match s.split_once('+') {
            Some((s, build)) => (s, Some(build)),
            None => (s, None),
        };
        if let Some(build) = build {
            if !build
                .split('.')
                .all(|id| !id.is_empty() && id.bytes().all(is_identifier_byte))
            {
                return None;
            }
        }
        let (core, pre) = match s.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (s, None),
        };
        let mut parts = core.split('.');
        let major = number(parts.next()?)?;
        let (minor, patch) = match (parts.next(), parts.next()) {
            (Some(minor), Some(patch)) => (number(minor)?, number(patch)?),
            // Go's shorthand: `v1` and `v1.2`, without suffixes.
            (minor, None)
                if matches!(spelling, Spelling::Go | Spelling::GoOptionalV)
                    && pre.is_none()
                    && build.is_none() =>
            {
                (minor.map(number).unwrap_or(Some("0"))?, "0")
            }
            _ => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => {
                let ids: Vec<&str> = pre.split('.').collect();
                for id in &ids {
                    if id.is_empty() || !id.bytes().all(is_identifier_byte) {
                        return None;
                    }
                    // Numeric identifiers must not have leading zeros.
                    if id.len() > 1 && id.starts_with('0') && id.bytes().all(|c| c.is_ascii_digit())
                    {
                        return None;
                    }
                }
                ids
            }
        };
        Some(SemVer {
            major,
            minor,
            patch,
            pre,
        })
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

fn is_identifier_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

/// A numeric component: digits without leading zeros.
fn number(s: &str) -> Option<&str> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    Some(s)
}

impl PartialOrd for SemVer<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SemVer<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        let num = |a: &str, b: &str| compare_digits(a.as_bytes(), b.as_bytes());
        num(self.major, other.major)
            .then_with(|| num(self.minor, other.minor))
            .then_with(|| num(self.patch, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prerelease(&self.pre, &other.pre),
            })
    }
}

fn compare_prerelease(a: &[&str], b: &[&str]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let x_numeric = x.bytes().all(|c| c.is_ascii_digit());
        let y_numeric = y.bytes().all(|c| c.is_ascii_digit());
        let order = match (x_numeric, y_numeric) {
            (true, true) => compare_digits(x.as_bytes(), y.as_bytes()),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}
