//! Maven versions, ordered as Maven's `ComparableVersion` orders them.
//!
//! A version is split, case-insensitively, into items at `.` and `-` and
//! at every change between digits and letters. A `-` (and a change between
//! digits and letters) opens a nested list, so `1-1` is `[1, [1]]`; so
//! does a qualifier after a dot when it ends the version or is followed by
//! digits (`1.0.xyz = 1.0-xyz`, Maven 3.8's rule).
//! Numbers compare as numbers; qualifiers by rank:
//! `alpha < beta < milestone < rc = cr < snapshot < "" = ga = final =
//! release < sp`,
//! then unknown qualifiers in lexical order (`a1`, `b1`, `m1` are
//! `alpha-1`, `beta-1`, `milestone-1`). Trailing "null" items (0, the empty
//! qualifier, empty lists) are dropped, so `1.0 = 1`. Between kinds: a
//! number beats a list beats a qualifier (`1.1 > 1-1 > 1-sp`).

use std::cmp::Ordering;

use super::dpkg::compare_digits;

/// Compares two Maven versions. Every string is a version, so this never
/// fails.
pub fn compare(a: &str, b: &str) -> Ordering {
    compare_lists(&parse(a), &parse(b))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Digits without leading zeros ("" is zero).
    Number(String),
    /// A qualifier, aliases resolved.
    Text(String),
    List(Vec<Item>),
}

impl Item {
    fn is_null(&self) -> bool {
        match self {
            Item::Number(n) => n.is_empty(),
            Item::Text(t) => qualifier_key(t) == RELEASE_KEY,
            Item::List(items) => items.is_empty(),
        }
    }
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
const RELEASE_KEY: &str = "5";

/// A string key that orders qualifiers: known ones by their rank, unknown
/// ones after all known ones, lexically.
fn qualifier_key(qualifier: &str) -> String {
    match QUALIFIERS.iter().position(|q| *q == qualifier) {
        Some(rank) => rank.to_string(),
        None => format!("{}-{qualifier}", QUALIFIERS.len()),
    }
}

fn text_item(value: &str, followed_by_digit: bool) -> Item {
    let value = match value {
        "a" if followed_by_digit => "alpha",
        "b" if followed_by_digit => "beta",
        "m" if followed_by_digit => "milestone",
        other => other,
    };
    let value = match value {
        "ga" | "final" | "release" => "",
        "cr" => "rc",
        other => other,
    };
    Item::Text(value.to_string())
}

fn number_item(digits: &str) -> Item {
    Item::Number(digits.trim_start_matches('0').to_string())
}

/// Parses into the nested item lists, normalized.
fn parse(version: &str) -> Vec<Item> {
    let version = version.to_lowercase();
    // The stack of open lists; each `-` or digit/letter change pushes one,
    // and every list is a child of the one below it.
    let mut stack: Vec<Vec<Item>> = vec![Vec::new()];
    let chars: Vec<char> = version.chars().collect();
    let mut is_digit = false;
    let mut start = 0;
    let piece = |from: usize, to: usize| chars[from..to].iter().collect::<String>();
    let item = |is_digit: bool, text: &str| {
        if is_digit {
            number_item(text)
        } else {
            text_item(text, false)
        }
    };
    for (i, &c) in chars.iter().enumerate() {
        let top = stack.len() - 1;
        if c == '.' || c == '-' {
            let it = if i == start {
                Item::Number(String::new())
            } else {
                item(is_digit, &piece(start, i))
            };
            stack[top].push(it);
            start = i + 1;
            if c == '-' {
                stack.push(Vec::new());
            }
        } else if c.is_ascii_digit() {
            if !is_digit && i > start {
                // A qualifier after a dot counts as one after a hyphen
                // (`1.0.0.x1 = 1.0.0-x1`): it opens a list of its own.
                if !stack[top].is_empty() {
                    stack.push(Vec::new());
                }
                let top = stack.len() - 1;
                stack[top].push(text_item(&piece(start, i), true));
                start = i;
                stack.push(Vec::new());
            }
            is_digit = true;
        } else {
            if is_digit && i > start {
                stack[top].push(number_item(&piece(start, i)));
                start = i;
                stack.push(Vec::new());
            }
            is_digit = false;
        }
    }
    if chars.len() > start {
        // The same for a qualifier ending the version: `1.0.xyz = 1.0-xyz`.
        if !is_digit && !stack[stack.len() - 1].is_empty() {
            stack.push(Vec::new());
        }
        let top = stack.len() - 1;
        stack[top].push(item(is_digit, &piece(start, chars.len())));
    }
    // Close the lists from the innermost out, normalizing each before it
    // becomes an item of its parent.
    while stack.len() > 1 {
        let mut list = stack.pop().unwrap_or_default();
        normalize(&mut list);
        let top = stack.len() - 1;
        stack[top].push(Item::List(list));
    }
    let mut root = stack.pop().unwrap_or_default();
    normalize(&mut root);
    root
}

/// Drops trailing null items, looking through (but not past) nested lists
/// at the end, as `ListItem.normalize` does.
fn normalize(list: &mut Vec<Item>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if list[i].is_null() {
            list.remove(i);
        } else if !matches!(list[i], Item::List(_)) {
            break;
        }
    }
}

fn compare_item(a: &Item, b: Option<&Item>) -> Ordering {
    match (a, b) {
        (Item::Number(n), None) => {
            if n.is_empty() {
                Ordering::Equal
            } else {
                Ordering::Greater
            }
        }
        (Item::Number(x), Some(Item::Number(y))) => compare_digits(x.as_bytes(), y.as_bytes()),
        (Item::Number(_), Some(_)) => Ordering::Greater,
        (Item::Text(t), None) => qualifier_key(t).as_str().cmp(RELEASE_KEY),
        (Item::Text(_), Some(Item::Number(_) | Item::List(_))) => Ordering::Less,
        (Item::Text(x), Some(Item::Text(y))) => qualifier_key(x).cmp(&qualifier_key(y)),
        (Item::List(items), None) => match items.first() {
            None => Ordering::Equal,
            Some(first) => compare_item(first, None),
        },
        (Item::List(_), Some(Item::Number(_))) => Ordering::Less,
        (Item::List(_), Some(Item::Text(_))) => Ordering::Greater,
        (Item::List(x), Some(Item::List(y))) => compare_lists(x, y),
    }
}

fn compare_lists(a: &[Item], b: &[Item]) -> Ordering {
    for i in 0..a.len().max(b.len()) {
        let order = match (a.get(i), b.get(i)) {
            (Some(l), r) => compare_item(l, r),
            (None, Some(r)) => compare_item(r, None).reverse(),
            (None, None) => Ordering::Equal,
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}
