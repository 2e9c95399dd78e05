//! Python distributions: `*.dist-info/METADATA` (wheels, pip),
//! `*.egg-info/PKG-INFO` and `*.egg-info` files (setuptools, distro
//! packages). Both are core metadata: RFC 822 headers (`Name`,
//! `Version`) before a blank line and the description.

use super::{
    field, packages, rfc822_fields, text, AnalyzeError, Analyzed, Analyzer, Candidate, Context,
};
use crate::report::{Package, PackageKind};

pub(crate) struct Python;

/// Core metadata headers are a few kilobytes.
const MAX_HEADERS: usize = 1 << 20;

impl Analyzer for Python {
    fn wants(&self, file: &Candidate<'_>) -> bool {
        let path = file.path;
        path.ends_with(".dist-info/METADATA")
            || path.ends_with(".egg-info/PKG-INFO")
            || (path.ends_with(".egg-info") && file.regular)
    }

    /// Only the headers are read (at most a megabyte, copied only when not
    /// UTF-8).
    fn memory_factor(&self) -> u64 {
        1
    }

    fn analyze(&self, _ctx: &mut Context<'_>, _path: &str, data: &[u8]) -> Analyzed {
        // Only the headers, which end at the first empty line: the
        // description after them can be long and is not read.
        let end = memchr::memmem::find(data, b"\n\n")
            .unwrap_or(data.len())
            .min(MAX_HEADERS);
        let text = text(&data[..end]);
        let fields = rfc822_fields(&text);
        let name = field(&fields, "Name").filter(|n| !n.is_empty());
        let version = field(&fields, "Version").filter(|v| !v.is_empty());
        match (name, version) {
            (Some(name), Some(version)) => Ok(packages(vec![Package::new(
                PackageKind::Python,
                name,
                version,
            )])),
            _ => Err(AnalyzeError::malformed(
                "no Name and Version in the metadata",
            )),
        }
    }
}

/// A PyPI project name in its normalized form (PEP 503): lowercase, runs
/// of `-`, `_` and `.` as one `-`. OSV names PyPI packages this way.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
        } else {
            if separator && !out.is_empty() {
                out.push('-');
            }
            separator = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize() {
        for (name, want) in [
            ("Django", "django"),
            ("zope.interface", "zope-interface"),
            ("typing__extensions", "typing-extensions"),
            ("A-_.B", "a-b"),
        ] {
            assert_eq!(normalize_name(name), want);
        }
    }
}
