//! Alpine package versions, ordered as apk-tools 2.14 (the apk of Alpine's
//! supported releases) orders them.
//!
//! An Alpine version is `digits{.digits}[letter]{_suffix[digits]}[-rN]`,
//! for example `1.2.3b_rc2_p1-r4`. It is read as a sequence of tokens, each
//! with an integer value, and two versions compare token by token:
//!
//! - numbers compare as numbers, except that a component after a dot that
//!   starts with a zero (`1.02`, `1.002`) first yields minus the count of
//!   its zeros after the first, then the rest as a plain number, so
//!   `1.02 < 1.1` and `1.002 < 1.02`;
//! - a letter right after a number compares by its character;
//! - suffixes: the pre-release ones `_alpha < _beta < _pre < _rc` have
//!   negative values, the post-release ones `_cvs < _svn < _git < _hg < _p`
//!   values from zero up;
//! - `-rN` is the package revision.
//!
//! When every common token is equal and the versions go on differently, a
//! version that goes on with a pre-release suffix is smaller; otherwise the
//! one whose next token is of an earlier kind (a dot before a letter before
//! a suffix … before the end) is greater.

use std::cmp::Ordering;

/// Compares two Alpine versions. Malformed versions still have a place in
/// the order (as in apk-tools): comparison stops at the first token that
/// does not fit the grammar.
pub fn compare(a: &str, b: &str) -> Ordering {
    let mut a = Tokens::new(a.trim());
    let mut b = Tokens::new(b.trim());
    let (mut av, mut bv) = (0i64, 0i64);
    while a.kind == b.kind && !a.kind.terminal() && av == bv {
        av = a.next_value();
        bv = b.next_value();
    }
    match av.cmp(&bv) {
        Ordering::Equal => {}
        other => return other,
    }
    if a.kind == b.kind {
        return Ordering::Equal;
    }
    // One version goes on where the other stopped: it is smaller if it goes
    // on with a pre-release suffix.
    if a.kind == Kind::Suffix && a.clone().next_value() < 0 {
        return Ordering::Less;
    }
    if b.kind == Kind::Suffix && b.clone().next_value() < 0 {
        return Ordering::Greater;
    }
    // Otherwise the one going on with the earlier kind of token is greater.
    b.kind.cmp(&a.kind)
}

/// The kind of the next token, in apk-tools' order (the derived `Ord`
/// follows the declaration order, which the comparison relies on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Invalid,
    /// A number after a dot (leading zeros count).
    DigitOrZero,
    /// A number (the first component, after a letter, after leading zeros).
    Digit,
    Letter,
    /// `_` followed by a suffix name.
    Suffix,
    /// The number after a suffix name.
    SuffixNumber,
    /// The number after `-r`.
    RevisionNumber,
    End,
}

impl Kind {
    fn terminal(self) -> bool {
        matches!(self, Kind::End | Kind::Invalid)
    }
}

const PRE_RELEASE: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST_RELEASE: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

/// The tokenizer: `kind` is the kind of the token `rest` starts with.
#[derive(Clone)]
struct Tokens<'a> {
    rest: &'a [u8],
    kind: Kind,
}

impl<'a> Tokens<'a> {
    fn new(version: &'a str) -> Self {
        Tokens {
            rest: version.as_bytes(),
            kind: Kind::Digit,
        }
    }

    /// Reads the value of the current token and moves to the next one.
    fn next_value(&mut self) -> i64 {
        if self.rest.is_empty() {
            self.kind = Kind::End;
            return 0;
        }
        let mut next_kind = None;
        let (value, used) = match self.kind {
            Kind::DigitOrZero if self.rest[0] == b'0' => {
                // Every zero but the last is consumed here and counted
                // against the component; the last is read as a number.
                let extra = self.rest[1..].iter().take_while(|&&c| c == b'0').count();
                let extra = extra.min(self.rest.len() - 1);
                next_kind = Some(Kind::Digit);
                (-(extra as i64), extra)
            }
            Kind::DigitOrZero | Kind::Digit | Kind::SuffixNumber | Kind::RevisionNumber => {
                let len = self.rest.iter().take_while(|c| c.is_ascii_digit()).count();
                // apk-tools refuses numbers of 18 digits or more.
                if len >= 18 {
                    self.kind = Kind::Invalid;
                    return -1;
                }
                let value = self.rest[..len]
                    .iter()
                    .fold(0i64, |n, &c| n * 10 + (c - b'0') as i64);
                (value, len)
            }
            Kind::Letter => (self.rest[0] as i64, 1),
            Kind::Suffix => {
                let name_matches = |name: &&str| self.rest.starts_with(name.as_bytes());
                if let Some(rank) = PRE_RELEASE.iter().position(name_matches) {
                    (
                        rank as i64 - PRE_RELEASE.len() as i64,
                        PRE_RELEASE[rank].len(),
                    )
                } else if let Some(rank) = POST_RELEASE.iter().position(name_matches) {
                    (rank as i64, POST_RELEASE[rank].len())
                } else {
                    self.kind = Kind::Invalid;
                    return -1;
                }
            }
            Kind::End | Kind::Invalid => return 0,
        };
        self.rest = &self.rest[used..];
        if self.rest.is_empty() {
            self.kind = Kind::End;
        } else if let Some(kind) = next_kind {
            self.kind = kind;
        } else {
            self.advance_kind();
        }
        value
    }

    /// Decides the kind of the token `rest` starts with, from its first
    /// character and the kind of the token before; consumes separators.
    fn advance_kind(&mut self) {
        let previous = self.kind;
        let c = self.rest[0];
        let next = if matches!(previous, Kind::Digit | Kind::DigitOrZero) && c.is_ascii_lowercase()
        {
            Kind::Letter
        } else if previous == Kind::Letter && c.is_ascii_digit() {
            Kind::Digit
        } else if previous == Kind::Suffix && c.is_ascii_digit() {
            Kind::SuffixNumber
        } else {
            let mut separator = 1;
            let kind = match c {
                b'.' => Kind::DigitOrZero,
                b'_' => Kind::Suffix,
                b'-' if self.rest.get(1) == Some(&b'r') => {
                    separator = 2;
                    Kind::RevisionNumber
                }
                _ => Kind::Invalid,
            };
            self.rest = &self.rest[separator.min(self.rest.len())..];
            kind
        };
        // Tokens must come in grammar order; going back is allowed only for
        // the repeatable parts (another dotted number, another suffix, a
        // number after a letter).
        let allowed_back = matches!(
            (next, previous),
            (Kind::DigitOrZero, Kind::Digit)
                | (Kind::Suffix, Kind::SuffixNumber)
                | (Kind::Digit, Kind::Letter)
        );
        self.kind = if next < previous && !allowed_back {
            Kind::Invalid
        } else {
            next
        };
    }
}
