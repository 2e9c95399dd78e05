//! Debian and Ubuntu package versions, ordered as `dpkg --compare-versions`
//! orders them (deb-version(7)).
//!
//! A version is `[epoch:]upstream[-revision]`. The epoch compares as a
//! number; upstream and revision compare with the same algorithm: the
//! string is cut into alternating runs of non-digits and digits; non-digit
//! runs compare character by character with `~` sorting before everything
//! (even the end of the string), then the end, then letters, then every
//! other character; digit runs compare as numbers.

use std::cmp::Ordering;

/// Compares two dpkg versions. Every string has a place in the order (dpkg
/// itself compares malformed versions the same way), so this never fails.
pub fn compare(a: &str, b: &str) -> Ordering {
    let a = Parts::parse(a);
    let b = Parts::parse(b);
    compare_numbers(a.epoch, b.epoch)
        .then_with(|| compare_fragment(a.upstream, b.upstream))
        .then_with(|| compare_fragment(a.revision, b.revision))
}

/// A version cut into its three parts.
struct Parts<'a> {
    /// The epoch's digits ("" when there is no epoch, which means 0).
    epoch: &'a str,
    upstream: &'a str,
    /// "" when there is no revision; dpkg compares it as "0", and an empty
    /// string and "0" compare equal under [`compare_fragment`].
    revision: &'a str,
}

impl<'a> Parts<'a> {
    fn parse(version: &'a str) -> Self {
        let version = version.trim();
        let (epoch, rest) = match version.split_once(':') {
            Some((epoch, rest)) if epoch.bytes().all(|c| c.is_ascii_digit()) => (epoch, rest),
            _ => ("", version),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((upstream, revision)) => (upstream, revision),
            None => (rest, ""),
        };
        Parts {
            epoch,
            upstream,
            revision,
        }
    }
}

/// The weight of one character in a non-digit run: `~` first, then the end
/// of the run, then letters, then everything else by byte value.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp`.
fn compare_fragment(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // The non-digit run.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let wa = weight(a.get(i).copied());
            let wb = weight(b.get(j).copied());
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        // The digit run, compared as a number of any length.
        let start_a = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let start_b = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let order = compare_digits(&a[start_a..i], &b[start_b..j]);
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

fn compare_numbers(a: &str, b: &str) -> Ordering {
    compare_digits(a.as_bytes(), b.as_bytes())
}

/// Compares two runs of ASCII digits as unbounded numbers (an empty run is
/// zero), so no version can overflow an integer.
pub(crate) fn compare_digits(a: &[u8], b: &[u8]) -> Ordering {
    let a = strip_zeros(a);
    let b = strip_zeros(b);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn strip_zeros(digits: &[u8]) -> &[u8] {
    let first = digits
        .iter()
        .position(|&c| c != b'0')
        .unwrap_or(digits.len());
    &digits[first..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        for (version, epoch, upstream, revision) in [
            ("1:2.3-4", "1", "2.3", "4"),
            ("2.3", "", "2.3", ""),
            ("1.2-3-4", "", "1.2-3", "4"),
            ("a:1", "", "a:1", ""),
            ("1:2:3-1", "1", "2:3", "1"),
        ] {
            let parts = Parts::parse(version);
            assert_eq!(
                (parts.epoch, parts.upstream, parts.revision),
                (epoch, upstream, revision),
                "{version}"
            );
        }
    }
}
