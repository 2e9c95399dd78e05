//! Analyzers: one module per kind of file, each declaring the paths it
//! wants, so one pass over a layer's tar feeds all of them (as Trivy's
//! analyzers do).
//!
//! An analyzer sees one file at a time, already in memory (the indexer
//! reads it only when some analyzer wants it, and only under the size cap
//! and the memory budget), and turns it into [`FileContents`]. It never
//! does IO, never panics on its input, and reports what it cannot read as
//! an [`AnalyzeError`]; the indexer records that as a partial result.

use std::io::Read;

use crate::limits::{Budget, Limits};
use crate::report::{FileContents, Package, Problem, ProblemKind};

pub(crate) mod apk;
pub(crate) mod binary;
pub(crate) mod cargo;
pub(crate) mod composer;
pub(crate) mod dotnet;
pub(crate) mod dpkg;
pub(crate) mod golang;
pub(crate) mod java;
pub(crate) mod npm;
pub(crate) mod os_release;
pub(crate) mod python;
pub(crate) mod rpm;
pub(crate) mod ruby;

/// A file an analyzer may want: its normalized path and header facts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate<'a> {
    pub(crate) path: &'a str,
    pub(crate) size: u64,
    pub(crate) mode: u32,
    /// A regular file (not a link, directory or device).
    pub(crate) regular: bool,
}

impl Candidate<'_> {
    /// The last path component.
    pub(crate) fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(self.path)
    }

    pub(crate) fn executable(&self) -> bool {
        self.regular && self.mode & 0o111 != 0
    }
}

/// What an analyzer may use while parsing.
pub(crate) struct Context<'a> {
    pub(crate) limits: &'a Limits,
    pub(crate) budget: &'a Budget,
    /// Problems met inside the file that do not make the whole file
    /// unreadable (a nested archive over the cap).
    pub(crate) problems: Vec<Problem>,
}

impl Context<'_> {
    pub(crate) fn problem(&mut self, kind: ProblemKind, path: &str, detail: impl Into<String>) {
        self.problems.push(Problem {
            kind,
            layer: None,
            path: Some(path.to_string()),
            detail: detail.into(),
        });
    }
}

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnalyzeError {
    pub(crate) kind: ProblemKind,
    pub(crate) detail: String,
}

impl AnalyzeError {
    pub(crate) fn malformed(detail: impl Into<String>) -> Self {
        AnalyzeError {
            kind: ProblemKind::MalformedFile,
            detail: detail.into(),
        }
    }
}

pub(crate) type Analyzed = Result<FileContents, AnalyzeError>;

/// One kind of file.
pub(crate) trait Analyzer: Send + Sync {
    /// Whether this analyzer reads the file. Called for every entry of
    /// every layer, so it looks at the path (and mode) only.
    fn wants(&self, file: &Candidate<'_>) -> bool;

    /// Parses a wanted file.
    fn analyze(&self, ctx: &mut Context<'_>, path: &str, data: &[u8]) -> Analyzed;

    /// How many times its size a file may cost while this analyzer parses
    /// it (the buffer itself included): the indexer reserves that much of
    /// the memory budget before reading the file. Parsers that build trees
    /// or copy text (JSON, TOML, text that is not UTF-8) need two; those
    /// that read the buffer in place need one.
    fn memory_factor(&self) -> u64 {
        2
    }

    /// Parses a wanted file too large to hold in memory, as a stream, if
    /// this analyzer can; `None` if it cannot.
    fn analyze_stream(
        &self,
        _ctx: &mut Context<'_>,
        _path: &str,
        _reader: &mut dyn Read,
    ) -> Option<Analyzed> {
        None
    }
}

/// Every analyzer, in a fixed order.
pub(crate) fn all() -> Vec<Box<dyn Analyzer>> {
    vec![
        Box::new(os_release::OsRelease),
        Box::new(dpkg::Dpkg),
        Box::new(apk::Apk),
        Box::new(rpm::Rpm),
        Box::new(python::Python),
        Box::new(npm::Npm),
        Box::new(cargo::CargoLock),
        Box::new(binary::Binary),
        Box::new(java::Java),
        Box::new(ruby::Gemspec),
        Box::new(composer::ComposerLock),
        Box::new(dotnet::DepsJson),
    ]
}

/// Packages found in a file.
pub(crate) fn packages(packages: Vec<Package>) -> FileContents {
    FileContents::Packages { packages }
}

/// Splits RFC 822-style text (dpkg status, Python metadata, apk database
/// lines aside) into its first paragraph's fields: `Key: value` with
/// continuation lines starting with a space or tab. Stops at the first
/// empty line. Keys are returned as written.
pub(crate) fn rfc822_fields(paragraph: &str) -> Vec<(&str, String)> {
    let mut fields: Vec<(&str, String)> = Vec::new();
    for line in paragraph.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim(), value.trim().to_string()));
        }
    }
    fields
}

/// The value of a field (case-insensitive key) among parsed fields.
pub(crate) fn field<'a>(fields: &'a [(&str, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// Text from bytes, without a copy when the bytes are UTF-8. Otherwise
/// every byte outside ASCII becomes `?` (package names and versions are
/// ASCII): a copy of the same size, never larger, which the analyzers'
/// [`Analyzer::memory_factor`] of two covers.
pub(crate) fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(data) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => std::borrow::Cow::Owned(
            data.iter()
                .map(|&b| if b.is_ascii() { b as char } else { '?' })
                .collect(),
        ),
    }
}
