//! [`TagPattern`]: a glob over tag names, as immutable-tag rules use it.

use std::fmt;

/// A pattern that matches whole tags: `*` stands for any run of characters
/// (none included), `?` for exactly one, every other character for itself.
/// `v*` matches `v1` and `v1.2.0`, `release-?` matches `release-a`, `*`
/// every tag.
///
/// Only the characters a tag may hold and the two wildcards are accepted,
/// at most 128 of them, so no escaping is needed and a pattern never means
/// something surprising. Matching is written out rather than taken from a
/// glob crate: the alphabet has no classes, braces or separators, and the
/// two-wildcard algorithm below is linear in practice and never recursive.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagPattern(Box<str>);

/// Why a text is not a tag pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid tag pattern {0:?}: use 1 to 128 of A-Z a-z 0-9 _ . - and the wildcards * and ?")]
pub struct PatternError(pub String);

impl TagPattern {
    pub fn parse(text: &str) -> Result<TagPattern, PatternError> {
        let valid = !text.is_empty()
            && text.len() <= 128
            && text.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'*' | b'?')
            });
        if valid {
            Ok(TagPattern(text.into()))
        } else {
            Err(PatternError(text.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern matches all of `tag`.
    pub fn matches(&self, tag: &str) -> bool {
        let pattern = self.0.as_bytes();
        let tag = tag.as_bytes();
        let (mut p, mut t) = (0, 0);
        // Where the last `*` was, and the tag position it was last tried
        // at: on a mismatch the star takes one more character and the
        // rest is tried again from there.
        let mut star: Option<(usize, usize)> = None;
        while t < tag.len() {
            match pattern.get(p) {
                Some(b'*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(&c) if c == b'?' || c == tag[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p + 1;
                        t = star_t + 1;
                        star = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|&c| c == b'*')
    }
}

impl fmt::Display for TagPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A regular expression over tag names, as a retention policy's
/// `--keep-tags` uses it: a tag is kept when the expression matches
/// anywhere in it (anchor it with `^` and `$` to match the whole tag).
///
/// The `regex` crate's syntax, at most [`TagRegex::MAX_LEN`] bytes, and a
/// compiled size bounded by [`TagRegex::SIZE_LIMIT`]: matching takes time
/// linear in the tag's length whatever the expression, so a stored policy
/// can never make a retention pass slow.
#[derive(Clone, Debug)]
pub struct TagRegex {
    text: Box<str>,
    regex: regex::Regex,
}

/// Why a text is not a tag regex.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid tag regex {text:?}: {reason}")]
pub struct TagRegexError {
    pub text: String,
    pub reason: String,
}

impl TagRegex {
    /// The longest expression accepted, in bytes.
    pub const MAX_LEN: usize = 256;
    /// The most memory a compiled expression may take, in bytes.
    pub const SIZE_LIMIT: usize = 1 << 20;

    pub fn parse(text: &str) -> Result<TagRegex, TagRegexError> {
        let error = |reason: String| TagRegexError {
            text: text.to_string(),
            reason,
        };
        if text.is_empty() || text.len() > TagRegex::MAX_LEN {
            return Err(error(format!("use 1 to {} bytes", TagRegex::MAX_LEN)));
        }
        let regex = regex::RegexBuilder::new(text)
            .size_limit(TagRegex::SIZE_LIMIT)
            .build()
            .map_err(|e| error(e.to_string()))?;
        Ok(TagRegex {
            text: text.into(),
            regex,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the expression matches somewhere in `tag`.
    pub fn matches(&self, tag: &str) -> bool {
        self.regex.is_match(tag)
    }
}

impl PartialEq for TagRegex {
    fn eq(&self, other: &TagRegex) -> bool {
        self.text == other.text
    }
}

impl Eq for TagRegex {}

impl fmt::Display for TagRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_tags() {
        let cases = [
            ("v*", "v1.2.0", true),
            ("v*", "v", true),
            ("v*", "latest", false),
            ("v*", "av1", false),
            ("*", "anything", true),
            ("release-?", "release-a", true),
            ("release-?", "release-ab", false),
            ("release-?", "release-", false),
            ("1.2.0", "1.2.0", true),
            ("1.2.0", "1.2.01", false),
            ("*-prod", "api-prod", true),
            ("*-prod", "api-prod-2", false),
            ("v*.*", "v1.2", true),
            ("v*.*", "v12", false),
            ("*a*b", "xaybab", true),
            ("*a*b", "xaybac", false),
            ("a**b", "ab", true),
            ("?*", "", false),
        ];
        for (pattern, tag, expected) in cases {
            let parsed = TagPattern::parse(pattern).unwrap();
            assert_eq!(parsed.matches(tag), expected, "{pattern} against {tag:?}");
        }
    }

    #[test]
    fn only_tag_characters_and_wildcards_are_patterns() {
        for bad in ["", "v[0-9]", "a/b", "ä", "v 1", &"a".repeat(129)] {
            assert!(TagPattern::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["*", "v1.*", "_x-?", &"a".repeat(128)] {
            assert_eq!(TagPattern::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn tag_regexes_match_anywhere_unless_anchored() {
        let cases = [
            ("^v[0-9]+", "v12", true),
            ("^v[0-9]+", "xv12", false),
            ("prod", "api-prod-2", true),
            ("^release-[a-z]$", "release-a", true),
            ("^release-[a-z]$", "release-ab", false),
            ("^(latest|stable)$", "stable", true),
        ];
        for (expression, tag, expected) in cases {
            let parsed = TagRegex::parse(expression).unwrap();
            assert_eq!(
                parsed.matches(tag),
                expected,
                "{expression} against {tag:?}"
            );
            assert_eq!(parsed.as_str(), expression);
        }
    }

    #[test]
    fn tag_regexes_are_bounded_and_must_compile() {
        let long = "a".repeat(TagRegex::MAX_LEN + 1);
        let huge = "\\w{1000}{1000}";
        for bad in ["", "(", "[a-", long.as_str(), huge] {
            assert!(TagRegex::parse(bad).is_err(), "{bad:?}");
        }
        assert!(TagRegex::parse(&"a".repeat(TagRegex::MAX_LEN)).is_ok());
    }
}
