//! Red Hat family package versions (`[epoch:]version[-release]`), ordered as
//! rpm orders them: the epoch as a number (missing means 0), then version
//! and release with `rpmvercmp`.
//!
//! `rpmvercmp` skips separators (anything but letters, digits, `~` and
//! `^`), then compares runs of digits (as numbers) or of letters (as
//! strings); a digit run beats a letter run; `~` sorts before everything,
//! even the end (`1.0~rc1 < 1.0`), and `^` sorts after the end but before
//! anything else (`1.0 < 1.0^git1 < 1.0.1`).

use std::cmp::Ordering;

use super::dpkg::compare_digits;

/// Compares two EVR strings the way `rpm.vercmp` (rpmverCmp) does.
pub fn compare(a: &str, b: &str) -> Ordering {
    let a = Evr::parse(a);
    let b = Evr::parse(b);
    compare_digits(a.epoch.as_bytes(), b.epoch.as_bytes())
        .then_with(|| rpmvercmp(a.version, b.version))
        .then_with(|| match (a.release, b.release) {
            (Some(ra), Some(rb)) => rpmvercmp(ra, rb),
            // A missing release sorts first: rpm orders `1.0` before
            // `1.0-1` (the generated tables check it).
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
}

/// An epoch-version-release triple.
pub(crate) struct Evr<'a> {
    /// Digits; "" means 0.
    pub(crate) epoch: &'a str,
    pub(crate) version: &'a str,
    pub(crate) release: Option<&'a str>,
}

impl<'a> Evr<'a> {
    pub(crate) fn parse(evr: &'a str) -> Self {
        let evr = evr.trim();
        let (epoch, rest) = match evr.split_once(':') {
            Some((epoch, rest)) if epoch.bytes().all(|c| c.is_ascii_digit()) => (epoch, rest),
            _ => ("", evr),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((version, release)) => (version, Some(release)),
            None => (rest, None),
        };
        Evr {
            epoch,
            version,
            release,
        }
    }
}

/// rpm's `rpmvercmp` on one version or release string.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let separator = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while i < a.len() && separator(a[i]) {
            i += 1;
        }
        while j < b.len() && separator(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        // Tilde: sorts before everything, even the end of the string.
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        // Caret: sorts after the end of the string but before anything else.
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca.is_none() || cb.is_none() {
            break;
        }
        let numeric = a[i].is_ascii_digit();
        let run = |s: &[u8], start: usize| {
            let mut end = start;
            while end < s.len()
                && if numeric {
                    s[end].is_ascii_digit()
                } else {
                    s[end].is_ascii_alphabetic()
                }
            {
                end += 1;
            }
            end
        };
        let (end_a, end_b) = (run(a, i), run(b, j));
        // The other side has a run of the other kind: numbers are newer.
        if end_b == j {
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let order = if numeric {
            compare_digits(&a[i..end_a], &b[j..end_b])
        } else {
            a[i..end_a].cmp(&b[j..end_b])
        };
        if order != Ordering::Equal {
            return order;
        }
        i = end_a;
        j = end_b;
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (false, _) => Ordering::Greater,
        (true, false) => Ordering::Less,
    }
}
