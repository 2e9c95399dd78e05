//! Python package versions (PEP 440), ordered as `packaging.version` orders
//! them.
//!
//! `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, with the spec's
//! normalizations: case-insensitive, `alpha`/`beta`/`c`/`pre`/`preview`
//! spellings, `-`, `_` and `.` separators (or none), implicit numbers
//! (`1.0a` is `1.0a0`), `1.0-1` for `1.0.post1`, a leading `v`. The order:
//! epoch, release (trailing zeros ignored), then a release without
//! pre-release sorts after its pre-releases, a `.devN` alone sorts before
//! them, post-releases after, dev before its non-dev, and a local version
//! after the same public version.

use std::cmp::Ordering;

use super::dpkg::compare_digits;

/// Compares two PEP 440 versions; `None` when either is not a valid one.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    Some(Pep440::parse(a)?.cmp(&Pep440::parse(b)?))
}

/// A parsed version; numbers are kept as digit strings without leading
/// zeros so that no version overflows.
#[derive(Debug, PartialEq, Eq)]
pub struct Pep440 {
    epoch: String,
    /// Release components with trailing zeros removed.
    release: Vec<String>,
    /// (0 = a, 1 = b, 2 = rc, number)
    pre: Option<(u8, String)>,
    post: Option<String>,
    dev: Option<String>,
    local: Vec<LocalPart>,
}

#[derive(Debug, PartialEq, Eq)]
enum LocalPart {
    Number(String),
    Text(String),
}

impl Pep440 {
    /// Parses a version the way `packaging.version.Version` accepts it.
    pub fn parse(version: &str) -> Option<Self> {
        let lower = version.trim().to_ascii_lowercase();
        let mut s = Cursor {
            rest: lower.as_str(),
        };
        s.eat("v");
        // Epoch and the first release component.
        let first = s.number()?;
        let (epoch, first) = if s.eat("!") {
            (first, s.number()?)
        } else {
            (String::from(""), first)
        };
        let mut release = vec![first];
        while s.rest.starts_with('.') && s.rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
            s.eat(".");
            release.push(s.number()?);
        }
        while release.len() > 1 && release.last().is_some_and(|n| n.is_empty()) {
            release.pop();
        }
        // Pre-release.
        let mut pre = None;
        {
            let mut t = s.clone();
            t.separator();
            let label = [
                ("alpha", 0),
                ("a", 0),
                ("beta", 1),
                ("b", 1),
                ("preview", 2),
                ("pre", 2),
                ("rc", 2),
                ("c", 2),
            ]
            .into_iter()
            .find(|(label, _)| t.rest.starts_with(label));
            if let Some((label, rank)) = label {
                t.eat(label);
                let number = t.optional_number();
                pre = Some((rank, number));
                s = t;
            }
        }
        // Post-release: `-N` or `[sep](post|rev|r)[sep][N]`.
        let mut post = None;
        {
            let mut t = s.clone();
            if t.eat("-") && t.rest.starts_with(|c: char| c.is_ascii_digit()) {
                post = Some(t.number()?);
                s = t;
            } else {
                let mut t = s.clone();
                t.separator();
                if let Some(label) = ["post", "rev", "r"]
                    .into_iter()
                    .find(|l| t.rest.starts_with(l))
                {
                    t.eat(label);
                    post = Some(t.optional_number());
                    s = t;
                }
            }
        }
        // Development release.
        let mut dev = None;
        {
            let mut t = s.clone();
            t.separator();
            if t.eat("dev") {
                dev = Some(t.optional_number());
                s = t;
            }
        }
        // Local version label.
        let mut local = Vec::new();
        if s.eat("+") {
            let label = s.rest;
            s.rest = "";
            for part in label.split(['.', '-', '_']) {
                if part.is_empty() || !part.bytes().all(|c| c.is_ascii_alphanumeric()) {
                    return None;
                }
                if part.bytes().all(|c| c.is_ascii_digit()) {
                    local.push(LocalPart::Number(strip_zeros(part)));
                } else {
                    local.push(LocalPart::Text(part.to_string()));
                }
            }
        }
        if !s.rest.is_empty() {
            return None;
        }
        Some(Pep440 {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }

    /// Whether this is a pre-release or a development release.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }
}

impl PartialOrd for Pep440 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pep440 {
    fn cmp(&self, other: &Self) -> Ordering {
        num(&self.epoch, &other.epoch)
            .then_with(|| compare_release(&self.release, &other.release))
            .then_with(|| self.pre_key().cmp(&other.pre_key()))
            .then_with(|| self.post_key().cmp(&other.post_key()))
            .then_with(|| self.dev_key().cmp(&other.dev_key()))
            .then_with(|| compare_local(&self.local, &other.local))
    }
}

/// A sort key with explicit infinities, as `packaging` builds them.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key<'a> {
    NegativeInfinity,
    Value(u8, Digits<'a>),
    Infinity,
}

/// Digits compared as numbers.
#[derive(PartialEq, Eq)]
struct Digits<'a>(&'a str);

impl PartialOrd for Digits<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Digits<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        num(self.0, other.0)
    }
}

impl Pep440 {
    fn pre_key(&self) -> Key<'_> {
        match (&self.pre, &self.post, &self.dev) {
            // A dev release of a final version sorts before its pre-releases.
            (None, None, Some(_)) => Key::NegativeInfinity,
            (None, _, _) => Key::Infinity,
            (Some((rank, n)), _, _) => Key::Value(*rank, Digits(n)),
        }
    }

    fn post_key(&self) -> Key<'_> {
        match &self.post {
            None => Key::NegativeInfinity,
            Some(n) => Key::Value(0, Digits(n)),
        }
    }

    fn dev_key(&self) -> Key<'_> {
        match &self.dev {
            None => Key::Infinity,
            Some(n) => Key::Value(0, Digits(n)),
        }
    }
}

fn compare_release(a: &[String], b: &[String]) -> Ordering {
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).map_or("", String::as_str),
            b.get(i).map_or("", String::as_str),
        );
        let order = num(x, y);
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

/// Local labels: no label sorts first; segment by segment, numbers beat
/// text, numbers compare as numbers and text as text; a longer label wins
/// when one is a prefix of the other.
fn compare_local(a: &[LocalPart], b: &[LocalPart]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x, y) {
            (LocalPart::Number(x), LocalPart::Number(y)) => num(x, y),
            (LocalPart::Text(x), LocalPart::Text(y)) => x.cmp(y),
            (LocalPart::Number(_), LocalPart::Text(_)) => Ordering::Greater,
            (LocalPart::Text(_), LocalPart::Number(_)) => Ordering::Less,
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

fn num(a: &str, b: &str) -> Ordering {
    compare_digits(a.as_bytes(), b.as_bytes())
}

fn strip_zeros(digits: &str) -> String {
    digits.trim_start_matches('0').to_string()
}

#[derive(Clone)]
struct Cursor<'a> {
    rest: &'a str,
}

impl Cursor<'_> {
    fn eat(&mut self, prefix: &str) -> bool {
        match self.rest.strip_prefix(prefix) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// One optional separator: `-`, `_` or `.`.
    fn separator(&mut self) {
        let _ = self.eat("-") || self.eat("_") || self.eat(".");
    }

    /// Digits (at least one), returned without leading zeros.
    fn number(&mut self) -> Option<String> {
        let len = self.rest.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        let digits = strip_zeros(&self.rest[..len]);
        self.rest = &self.rest[len..];
        Some(digits)
    }

    /// `[sep]N` or nothing (an implicit 0).
    fn optional_number(&mut self) -> String {
        let mut t = self.clone();
        t.separator();
        match t.number() {
            Some(n) => {
                *self = t;
                n
            }
            None => String::new(),
        }
    }
}
