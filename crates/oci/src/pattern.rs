//! [`TagPattern`] (a glob over tag names, as immutable-tag rules use it) and
//! [`RepoPattern`] (a glob over repository names, as replication rules use it).

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
        glob_matches(self.0.as_bytes(), tag.as_bytes())
    }
}

/// Whether `pattern` (`*` any run, `?` one character, else itself) matches
/// all of `text`.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it was last tried
    // at: on a mismatch the star takes one more character and the
    // rest is tried again from there.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
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

/// A pattern over repository names, as replication rules use it: the name
/// is split at `/` into components; a pattern component `**` stands for
/// any number of whole components (none included), any other component is
/// a glob over one component (`*` any run of characters, `?` one, else
/// itself). `team/**` matches `team`, `team/api` and `team/a/b`;
/// `team/*` matches `team/api` only; `*/base` matches `lib/base`; `**`
/// matches every repository.
///
/// Only the characters a repository name may hold and the wildcards are
/// accepted, at most 255 of them, with no empty component and `**` only as
/// a whole component, so a pattern never means something surprising.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoPattern(Box<str>);

/// Why a text is not a repository pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid repository pattern {0:?}: use components of a-z 0-9 . _ - and the wildcards * and ? \
     separated by /, with ** only as a whole component (as in team/**)"
)]
pub struct RepoPatternError(pub String);

impl RepoPattern {
    /// The longest pattern accepted, in bytes (a repository name's limit).
    pub const MAX_LEN: usize = 255;

    pub fn parse(text: &str) -> Result<RepoPattern, RepoPatternError> {
        let valid_component = |component: &str| {
            !component.is_empty()
                && (component == "**"
                    || (!component.contains("**")
                        && component.bytes().all(|b| {
                            b.is_ascii_lowercase()
                                || b.is_ascii_digit()
                                || matches!(b, b'.' | b'_' | b'-' | b'*' | b'?')
                        })))
        };
        if text.is_empty()
            || text.len() > RepoPattern::MAX_LEN
            || !text.split('/').all(valid_component)
        {
            return Err(RepoPatternError(text.to_string()));
        }
        Ok(RepoPattern(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern matches all of the repository name `name`.
    pub fn matches(&self, name: &str) -> bool {
        let pattern: Vec<&[u8]> = self.0.split('/').map(str::as_bytes).collect();
        let name: Vec<&[u8]> = name.split('/').map(str::as_bytes).collect();
        // `reachable[j]`: the pattern's components so far can match the
        // name's first `j` components. One row per pattern component, so
        // the work is bounded by the product of the two lengths and never
        // recursive.
        let mut reachable = vec![false; name.len() + 1];
        reachable[0] = true;
        for component in pattern {
            let mut next = vec![false; name.len() + 1];
            if component == b"**" {
                let mut any = false;
                for j in 0..=name.len() {
                    any |= reachable[j];
                    next[j] = any;
                }
            } else {
                for j in 0..name.len() {
                    next[j + 1] = reachable[j] && glob_matches(component, name[j]);
                }
            }
            reachable = next;
        }
        reachable[name.len()]
    }
}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
    fn repository_patterns_match_components() {
        let cases = [
            ("team/**", "team", true),
            ("team/**", "team/api", true),
            ("team/**", "team/a/b/c", true),
            ("team/**", "teams/api", false),
            ("team/**", "other/team/api", false),
            ("team/*", "team/api", true),
            ("team/*", "team/a/b", false),
            ("team/*", "team", false),
            ("*/base", "lib/base", true),
            ("*/base", "lib/sub/base", false),
            ("**/base", "lib/sub/base", true),
            ("**/base", "base", true),
            ("**/base", "lib/based", false),
            ("**", "anything/at/all", true),
            ("*", "one", true),
            ("*", "one/two", false),
            ("team/**/web", "team/web", true),
            ("team/**/web", "team/x/y/web", true),
            ("team/**/web", "team/x/y/web/z", false),
            ("team/api-?", "team/api-a", true),
            ("team/api-?", "team/api-ab", false),
            ("t*m/a*", "team/api", true),
            ("library/alpine", "library/alpine", true),
            ("library/alpine", "library/alpine2", false),
        ];
        for (pattern, name, expected) in cases {
            let parsed = RepoPattern::parse(pattern).unwrap();
            assert_eq!(parsed.matches(name), expected, "{pattern} against {name:?}");
            assert_eq!(parsed.as_str(), pattern);
        }
    }

    #[test]
    fn only_name_characters_and_whole_double_stars_are_repository_patterns() {
        let long = "a".repeat(RepoPattern::MAX_LEN + 1);
        for bad in [
            "", "/", "team/", "/team", "a//b", "Team/*", "a**", "**b/c", "a b", "ä", &long,
        ] {
            assert!(RepoPattern::parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            "**",
            "a/**/b",
            "team/*",
            "x.y_z-1/?",
            &"a".repeat(RepoPattern::MAX_LEN),
        ] {
            assert!(RepoPattern::parse(good).is_ok(), "{good:?}");
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
