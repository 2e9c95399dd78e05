//! Debian packages: `var/lib/dpkg/status`, and the per-package files of
//! distroless images, `var/lib/dpkg/status.d/*`.
//!
//! Paragraphs of `Field: value` lines. A package counts when its `Status`
//! says it is installed (distroless files have no `Status`: everything
//! listed is installed). `Source: name (version)` names the source package
//! the binary was built from, with its version when it differs from the
//! binary's; advisories for Debian name source packages.

use super::{
    field, packages, rfc822_fields, text, AnalyzeError, Analyzed, Analyzer, Candidate, Context,
};
use crate::report::{Package, PackageKind, SourcePackage};

pub(crate) struct Dpkg;

impl Analyzer for Dpkg {
    fn wants(&self, file: &Candidate<'_>) -> bool {
        file.path == "var/lib/dpkg/status"
            || file
                .path
                .strip_prefix("var/lib/dpkg/status.d/")
                .is_some_and(|name| !name.contains('/') && !name.ends_with(".md5sums"))
    }

    fn analyze(&self, _ctx: &mut Context<'_>, _path: &str, data: &[u8]) -> Analyzed {
        let text = text(data);
        let found = parse(&text);
        if found.is_empty() && !text.trim().is_empty() && !text.contains("Package:") {
            return Err(AnalyzeError::malformed("no package paragraphs"));
        }
        Ok(packages(found))
    }
}

/// The installed packages of a status file.
pub(crate) fn parse(text: &str) -> Vec<Package> {
    let mut found = Vec::new();
    // Paragraphs are separated by empty lines (possibly with spaces).
    let mut paragraph = String::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if !paragraph.is_empty() {
                found.extend(package(&paragraph));
                paragraph.clear();
            }
        } else {
            paragraph.push_str(line);
            paragraph.push('\n');
        }
    }
    found
}

fn package(paragraph: &str) -> Option<Package> {
    let fields = rfc822_fields(paragraph);
    let name = field(&fields, "Package")?;
    let version = field(&fields, "Version")?;
    if let Some(status) = field(&fields, "Status") {
        // "want flag status": only the last word says whether files are
        // on disk; "installed" is the state that counts.
        if status.split_whitespace().last() != Some("installed") {
            return None;
        }
    }
    let mut package = Package::new(PackageKind::Dpkg, name, version);
    package.arch = field(&fields, "Architecture").map(str::to_string);
    if let Some(source) = field(&fields, "Source") {
        let (source_name, source_version) = match source.split_once('(') {
            Some((name, rest)) => (name.trim(), rest.trim_end_matches(')').trim()),
            None => (source.trim(), version),
        };
        if !source_name.is_empty() {
            package.source = Some(SourcePackage {
                name: source_name.to_string(),
                version: source_version.to_string(),
            });
        }
    } else {
        package.source = Some(SourcePackage {
            name: name.to_string(),
            version: version.to_string(),
        });
    }
    Some(package)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_paragraphs() {
        let status = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u10\nDescription: GNU C Library\n multi-line\n .\n more\n\nPackage: gcc-12-base\nStatus: install ok installed\nSource: gcc-12 (12.2.0-14)\nVersion: 12.2.0-14+deb12u1\n\nPackage: old\nStatus: deinstall ok config-files\nVersion: 1.0\n\nPackage: bash\nVersion: 5.2.15-2+b7\nSource: bash (5.2.15-2)\n";
        let found = parse(status);
        let got: Vec<(&str, &str, &str, &str)> = found
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_str(),
                    p.source_name(),
                    p.source_version(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("libc6", "2.36-9+deb12u10", "glibc", "2.36-9+deb12u10"),
                ("gcc-12-base", "12.2.0-14+deb12u1", "gcc-12", "12.2.0-14"),
                ("bash", "5.2.15-2+b7", "bash", "5.2.15-2"),
            ]
        );
        assert_eq!(found[0].arch.as_deref(), Some("amd64"));
    }
}
