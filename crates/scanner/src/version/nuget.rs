//! NuGet package versions, ordered as NuGet.Versioning's
//! `VersionComparer.Default` orders them.
//!
//! `Major.Minor[.Patch[.Revision]][-Release][+Metadata]`: the four numbers
//! compare as numbers (a missing one is 0, leading zeros allowed); a
//! version with a release label sorts before the same version without;
//! labels compare part by part (split at `.`), numbers as numbers and below
//! words, words case-insensitively; more parts win when the shared ones are
//! equal; metadata is ignored.

use std::cmp::Ordering;

use super::dpkg::compare_digits;

/// Compares two NuGet versions; `None` when either is not a valid one.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let a = parse(a)?;
    let b = parse(b)?;
    for i in 0..4 {
        let order = compare_digits(a.numbers[i].as_bytes(), b.numbers[i].as_bytes());
        if order != Ordering::Equal {
            return Some(order);
        }
    }
    Some(match (a.label.is_empty(), b.label.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => compare_labels(&a.label, &b.label),
    })
}

struct NuGetVersion {
    /// Major, minor, patch, revision as digits without leading zeros.
    numbers: [String; 4],
    /// Release label parts, lowercased ("" parts never occur).
    label: Vec<String>,
}

fn parse(version: &str) -> Option<NuGetVersion> {
    let version = version.trim();
    let version = version.split_once('+').map_or(version, |(v, _)| v);
    let (core, label) = match version.split_once('-') {
        Some((core, label)) => (core, Some(label)),
        None => (version, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if !(1..=4).contains(&parts.len()) {
        return None;
    }
    let mut numbers: [String; 4] = Default::default();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        numbers[i] = part.trim_start_matches('0').to_string();
    }
    let label = match label {
        None => Vec::new(),
        Some(label) => {
            let parts: Vec<String> = label.split('.').map(str::to_ascii_lowercase).collect();
            if parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
            {
                return None;
            }
            parts
        }
    };
    Some(NuGetVersion { numbers, label })
}

fn compare_labels(a: &[String], b: &[String]) -> Ordering {
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
