//! RubyGems versions, ordered as `Gem::Version#<=>` orders them.
//!
//! A version is cut into segments, runs of digits (numbers) or of letters
//! (strings); a `-` means `.pre.` (so `1.0-1` is a pre-release). Trailing
//! zeros are dropped from the leading numeric part and from the part after
//! the first string (`1.0.0 = 1`, `1.0.a.0 = 1.a`). Segments compare one by
//! one, a missing one being 0: a string is below a number (`1.a < 1.0 < 1.1`
//! because strings mark pre-releases), numbers compare as numbers and
//! strings as strings.

use std::cmp::Ordering;

use super::dpkg::compare_digits;

/// Compares two gem versions; `None` when either is not a valid one.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let a = canonical_segments(a)?;
    let b = canonical_segments(b)?;
    for i in 0..a.len().max(b.len()) {
        let zero = Segment::Number("");
        let (x, y) = (a.get(i).unwrap_or(&zero), b.get(i).unwrap_or(&zero));
        let order = match (x, y) {
            (Segment::Number(x), Segment::Number(y)) => compare_digits(x.as_bytes(), y.as_bytes()),
            (Segment::Text(x), Segment::Text(y)) => x.cmp(y),
            (Segment::Text(_), Segment::Number(_)) => Ordering::Less,
            (Segment::Number(_), Segment::Text(_)) => Ordering::Greater,
        };
        if order != Ordering::Equal {
            return Some(order);
        }
    }
    Some(Ordering::Equal)
}

/// Whether a version is a pre-release (has a letter).
pub fn is_prerelease(version: &str) -> bool {
    version.bytes().any(|c| c.is_ascii_alphabetic())
}

#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    /// Digits without leading zeros ("" is zero).
    Number(&'a str),
    Text(&'a str),
}

/// Checks the version against `Gem::Version`'s pattern and returns its
/// canonical segments.
fn canonical_segments(version: &str) -> Option<Vec<Segment<'_>>> {
    let version = version.trim();
    if !valid(version) {
        return None;
    }
    // `-` stands for `.pre.`: it adds a "pre" string segment.
    let mut segments = Vec::new();
    let bytes = version.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'-' {
            segments.push(Segment::Text("pre"));
            i += 1;
        } else if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            segments.push(Segment::Number(version[start..i].trim_start_matches('0')));
        } else if bytes[i].is_ascii_alphabetic() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            segments.push(Segment::Text(&version[start..i]));
        } else {
            i += 1;
        }
    }
    if segments.is_empty() {
        segments.push(Segment::Number(""));
    }
    // Trailing zeros go from the numeric part and from the string part.
    let split = segments
        .iter()
        .position(|s| matches!(s, Segment::Text(_)))
        .unwrap_or(segments.len());
    let strings = segments.split_off(split);
    let mut canonical = drop_trailing_zeros(segments);
    canonical.extend(drop_trailing_zeros(strings));
    Some(canonical)
}

fn drop_trailing_zeros(mut segments: Vec<Segment<'_>>) -> Vec<Segment<'_>> {
    while matches!(segments.last(), Some(Segment::Number(""))) {
        segments.pop();
    }
    segments
}

/// `Gem::Version::ANCHORED_VERSION_PATTERN`: digits, then dot-separated
/// alphanumeric parts, then an optional `-`-separated pre-release; an empty
/// version means "0".
fn valid(version: &str) -> bool {
    if version.is_empty() {
        return true;
    }
    let (release, pre) = match version.split_once('-') {
        Some((release, pre)) => (release, Some(pre)),
        None => (version, None),
    };
    let mut parts = release.split('.');
    let first = parts.next().unwrap_or("");
    if first.is_empty() || !first.bytes().all(|c| c.is_ascii_digit()) {
        return false;
    }
    if !parts.all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric())) {
        return false;
    }
    match pre {
        None => true,
        Some(pre) => pre
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')),
    }
}
