//! Packagist (Composer) versions, ordered as OSV orders them: PHP's
//! `version_compare` after a leading `v` is dropped (Composer strips it when
//! it normalizes a version, and PHP would otherwise sort `v1.0` below `0.1`).
//!
//! `version_compare` cuts a version at `.`, `-`, `_`, `+` (and any other
//! character that is not a letter or digit) and between digits and other
//! characters, then compares piece by piece: numbers as numbers; words by
//! rank, `dev < alpha = a < beta = b < RC = rc < (a number) < pl = p`
//! (matched as prefixes, so `patch` ranks as `p`), any other word below
//! `dev`. When one version runs out, the other is greater if it goes on
//! with a number, and otherwise its next word is ranked against a number:
//! `1.0.0 > 1.0`, `1.0-rc1 < 1.0`.

use std::cmp::Ordering;

use super::dpkg::compare_digits;

/// Compares two Composer versions. Every string has a place in PHP's
/// order, so this never fails.
pub fn compare(a: &str, b: &str) -> Ordering {
    let strip = |v: &'_ str| {
        let v = v.trim();
        v.strip_prefix(['v', 'V']).unwrap_or(v).to_string()
    };
    version_compare(&strip(a), &strip(b))
}

#[derive(Debug)]
enum Piece<'a> {
    Number(&'a str),
    Word(&'a str),
}

/// PHP's canonical pieces: any character but a letter or digit separates,
/// and digits meeting letters make a cut.
fn pieces(version: &str) -> Vec<Piece<'_>> {
    let bytes = version.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if !c.is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        let digit = c.is_ascii_digit();
        while i < bytes.len()
            && bytes[i].is_ascii_alphanumeric()
            && bytes[i].is_ascii_digit() == digit
        {
            i += 1;
        }
        out.push(if digit {
            Piece::Number(&version[start..i])
        } else {
            Piece::Word(&version[start..i])
        });
    }
    out
}

/// The rank of a word; a number ranks as `#`.
fn rank(piece: &Piece<'_>) -> i32 {
    let word = match piece {
        Piece::Number(_) => return 4,
        Piece::Word(word) => *word,
    };
    const FORMS: [(&str, i32); 10] = [
        ("dev", 0),
        ("alpha", 1),
        ("a", 1),
        ("beta", 2),
        ("b", 2),
        ("RC", 3),
        ("rc", 3),
        ("#", 4),
        ("pl", 5),
        ("p", 5),
    ];
    FORMS
        .iter()
        .find(|(form, _)| word.starts_with(form))
        .map_or(-6, |(_, rank)| *rank)
}

fn version_compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (pieces(a), pieces(b));
    for i in 0..a.len().max(b.len()) {
        let order = match (a.get(i), b.get(i)) {
            (Some(Piece::Number(x)), Some(Piece::Number(y))) => {
                compare_digits(x.as_bytes(), y.as_bytes())
            }
            (Some(x), Some(y)) => rank(x).cmp(&rank(y)),
            (Some(x), None) => match x {
                Piece::Number(_) => Ordering::Greater,
                word => rank(word).cmp(&4),
            },
            (None, Some(y)) => match y {
                Piece::Number(_) => Ordering::Less,
                word => 4.cmp(&rank(word)),
            },
            (None, None) => Ordering::Equal,
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}
