//! Ruby gems: `specifications/*.gemspec`, the specifications RubyGems
//! writes for every installed gem. They are Ruby code; RubyGems generates
//! them in one shape (`Gem::Specification.new do |s|` then `s.name = "…"`,
//! `s.version = "…"`), which is what is read here, whatever the block
//! variable is called.

use super::{packages, text, AnalyzeError, Analyzed, Analyzer, Candidate, Context};
use crate::report::{Package, PackageKind};

pub(crate) struct Gemspec;

impl Analyzer for Gemspec {
    fn wants(&self, file: &Candidate<'_>) -> bool {
        file.regular
            && file.path.ends_with(".gemspec")
            && file.path.rsplit('/').nth(1) == Some("specifications")
    }

    fn analyze(&self, _ctx: &mut Context<'_>, _path: &str, data: &[u8]) -> Analyzed {
        let text = text(data);
        let (name, version) =
            parse(&text).ok_or_else(|| AnalyzeError::malformed("no gem name and version"))?;
        Ok(packages(vec![Package::new(
            PackageKind::Gem,
            name,
            version,
        )]))
    }
}

fn parse(text: &str) -> Option<(String, String)> {
    let mut variable = None;
    let (mut name, mut version) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if variable.is_none() {
            if line.starts_with("Gem::Specification.new") {
                let start = line.find('|')? + 1;
                let end = start + line[start..].find('|')?;
                variable = Some(line[start..end].trim().to_string());
            }
            continue;
        }
        let var = variable.as_deref()?;
        let Some(rest) = line.strip_prefix(var).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        if let Some(value) = assignment(rest, "name") {
            name = quoted(value);
        } else if let Some(value) = assignment(rest, "version") {
            version = quoted(value);
        }
    }
    Some((name?, version?))
}

/// `name = VALUE` → `VALUE`.
fn assignment<'a>(rest: &'a str, attribute: &str) -> Option<&'a str> {
    let rest = rest.strip_prefix(attribute)?.trim_start();
    rest.strip_prefix('=')
        .filter(|r| !r.starts_with('='))
        .map(str::trim)
}

/// The first string literal in a Ruby expression (`"rake".freeze`,
/// `Gem::Version.new("1.0")`).
fn quoted(value: &str) -> Option<String> {
    let start = value.find(['"', '\''])?;
    let quote = value[start..].chars().next()?;
    let body = &value[start + 1..];
    let end = body.find(quote)?;
    let s = &body[..end];
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemspecs() {
        let rake = "# stub\nGem::Specification.new do |s|\n  s.name = \"rake\".freeze\n  s.version = \"13.0.3\"\n  s.required_rubygems_version = Gem::Requirement.new(\">= 1.3.2\".freeze)\nend\n";
        assert_eq!(parse(rake), Some(("rake".into(), "13.0.3".into())));
        let other = "Gem::Specification.new do |spec|\n    spec.name = 'async'.freeze # comment\n    spec.version = \"1.25.0\"\nend\n";
        assert_eq!(parse(other), Some(("async".into(), "1.25.0".into())));
        let wrong_variable = "Gem::Specification.new do |spec|\n    s.name = \"async\".freeze\n    s.version = \"1.25.0\"\nend\n";
        assert_eq!(parse(wrong_variable), None);
        let no_version = "Gem::Specification.new do |s|\n    s.name = \"async\".freeze\nend\n";
        assert_eq!(parse(no_version), None);
    }
}
