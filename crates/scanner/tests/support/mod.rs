//! Helpers shared by the scanner's integration tests: loud skips when a
//! tool or fixture package is missing (the convention of
//! `crates/berth/tests/support/mod.rs`: a skip outside CI, a failure under
//! `CI=true`), layers built from directories and files, the expected
//! package lists of Go test files read at test time, and precision and
//! recall.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_oci::{Algorithm, Digest};
use berth_scanner::{IndexReport, Indexer, LayerIndex};

/// Whether the tests run in CI, where every tool is installed and a missing
/// one is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|value| value == "true" || value == "1")
        .unwrap_or(false)
}

/// Records a skipped test in `target/e2e-skipped.txt` (printed by
/// scripts/test.sh) and on stderr.
pub fn record_skip(test: &str, why: &str) {
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-skipped.txt");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{test}: {why}");
    }
}

/// Something a test needs is missing: a skip outside CI, a failure in it.
pub fn missing(test: &str, what: &str) {
    if in_ci() {
        panic!("{test}: {what} is missing (CI=true: missing tools are failures)");
    }
    record_skip(test, &format!("{what} is missing"));
}

/// A path that must exist (an installed fixture package's file); `None`
/// after [`missing`] when it does not.
pub fn require_path(path: &str, package: &str, test: &str) -> Option<PathBuf> {
    let path = PathBuf::from(path);
    if path.exists() {
        Some(path)
    } else {
        missing(
            test,
            &format!("{} (Debian package {package})", path.display()),
        );
        None
    }
}

/// A tool on PATH, or `None` after [`missing`].
pub fn require_tool(tool: &str, test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        missing(test, &format!("the tool {tool}"));
    }
    found
}

/// Where tests keep data that is slow to build (a Debian root file
/// system, installed packages), between runs: under `target/`.
pub fn cache_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/scanner-test-data");
    std::fs::create_dir_all(&dir).expect("create the test data cache");
    dir
}

/// Runs a command, failing the test with its output if it fails.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A tar layer builder: entries added in order, then compressed or not.
pub struct LayerBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> Self {
        LayerBuilder {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    pub fn file(mut self, path: &str, data: &[u8]) -> Self {
        self.file_mode(path, data, 0o644);
        self
    }

    pub fn executable(mut self, path: &str, data: &[u8]) -> Self {
        self.file_mode(path, data, 0o755);
        self
    }

    fn file_mode(&mut self, path: &str, data: &[u8], mode: u32) {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_entry_type(tar::EntryType::Regular);
        self.builder
            .append_data(&mut header, path, data)
            .expect("append a file");
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_mode(0o777);
        header.set_entry_type(tar::EntryType::Symlink);
        self.builder
            .append_link(&mut header, path, target)
            .expect("append a link");
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Link);
        self.builder
            .append_link(&mut header, path, target)
            .expect("append a hard link");
        self
    }

    /// Every file under `dir`, at `prefix` in the layer (what `docker
    /// build` would make of a `COPY dir prefix`).
    pub fn directory(mut self, prefix: &str, dir: &Path) -> Self {
        self.builder.follow_symlinks(false);
        self.builder
            .append_dir_all(prefix, dir)
            .expect("append a directory");
        self
    }

    pub fn tar(self) -> Vec<u8> {
        self.builder.into_inner().expect("finish the tar")
    }

    pub fn gzip(self) -> Vec<u8> {
        gzip(&self.tar())
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

pub fn digest_of(data: &[u8]) -> Digest {
    Algorithm::Sha256.digest_of(data)
}

/// Indexes layer blobs (bottom first) and coalesces them.
pub fn index(layers: &[Vec<u8>]) -> (Vec<LayerIndex>, IndexReport) {
    let indexer = Indexer::default();
    let indexes: Vec<LayerIndex> = layers
        .iter()
        .map(|blob| indexer.index_layer_blocking(digest_of(blob), None, &blob[..]))
        .collect();
    let report = IndexReport::from_layers(&indexes);
    (indexes, report)
}

/// Precision and recall of a found set against an expected one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub expected: usize,
    pub found: usize,
    pub correct: usize,
}

impl Score {
    pub fn of<T: Ord + Clone>(expected: &BTreeSet<T>, found: &BTreeSet<T>) -> Score {
        Score {
            expected: expected.len(),
            found: found.len(),
            correct: expected.intersection(found).count(),
        }
    }

    pub fn precision(&self) -> f64 {
        if self.found == 0 {
            1.0
        } else {
            self.correct as f64 / self.found as f64
        }
    }

    pub fn recall(&self) -> f64 {
        if self.expected == 0 {
            1.0
        } else {
            self.correct as f64 / self.expected as f64
        }
    }

    pub fn add(self, other: Score) -> Score {
        Score {
            expected: self.expected + other.expected,
            found: self.found + other.found,
            correct: self.correct + other.correct,
        }
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "precision {:.3} ({}/{}), recall {:.3} ({}/{})",
            self.precision(),
            self.correct,
            self.found,
            self.recall(),
            self.correct,
            self.expected
        )
    }
}

/// Prints a score line the report can quote, and the differences.
pub fn report<T: Ord + Clone + std::fmt::Debug>(
    what: &str,
    expected: &BTreeSet<T>,
    found: &BTreeSet<T>,
) -> Score {
    let score = Score::of(expected, found);
    eprintln!("SCORE {what}: {score}");
    for missing in expected.difference(found) {
        eprintln!("  missed: {missing:?}");
    }
    for extra in found.difference(expected) {
        eprintln!("  extra:  {extra:?}");
    }
    score
}

// --- Go test files ---------------------------------------------------------
//
// The expected package lists of go-rpmdb's and go-dep-parser's tests are Go
// composite literals; they are read from the installed Go files at test
// time (not copied into this repository).

/// One element of a Go composite literal: positional values by index, keyed
/// values by key.
#[derive(Debug, Default, Clone)]
pub struct GoElement {
    pub positional: Vec<String>,
    pub keyed: BTreeMap<String, String>,
}

impl GoElement {
    /// A field by key, or else by position.
    pub fn get(&self, key: &str, position: usize) -> Option<&str> {
        self.keyed
            .get(key)
            .or_else(|| self.positional.get(position))
            .map(String::as_str)
    }
}

/// The elements of the literal assigned to `name` (`name = []T{...}`) in
/// any `.go` file of `dir`.
pub fn go_var(dir: &Path, name: &str) -> Vec<GoElement> {
    for entry in std::fs::read_dir(dir).expect("read the Go package") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "go") {
            let text = std::fs::read_to_string(&path).expect("read a Go file");
            for pattern in [
                format!("\t{name} = "),
                format!("{name} := "),
                format!(" {name} = "),
            ] {
                if let Some(at) = text.find(&pattern) {
                    return go_literal(&text[at + pattern.len()..]);
                }
            }
        }
    }
    panic!("no variable {name} in {}", dir.display())
}

/// The `want` of the test case that names `fixture` in a Go test file:
/// either a literal or a variable of the package.
pub fn go_want(test_file: &Path, fixture: &str) -> Vec<GoElement> {
    let text = std::fs::read_to_string(test_file).expect("read the Go test file");
    let at = text
        .find(&format!("\"{fixture}\""))
        .unwrap_or_else(|| panic!("{fixture} is not in {}", test_file.display()));
    let rest = &text[at..];
    let want = rest.find("want:").expect("a want field") + "want:".len();
    let value = rest[want..].trim_start();
    if value.starts_with(|c: char| c.is_ascii_alphabetic()) && !value.starts_with("types.") {
        let ident: String = value
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        return go_var(test_file.parent().expect("a directory"), &ident);
    }
    go_literal(value)
}

/// Parses the composite literal at the start of `text` (after its type):
/// a list of `{...}` elements, or a single struct literal.
pub fn go_literal(text: &str) -> Vec<GoElement> {
    let open = text.find('{').expect("a composite literal");
    let body = &text[open + 1..matching(text, open)];
    let trimmed = body.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('&') {
        let mut elements = Vec::new();
        let mut at = 0;
        while let Some(start) = body[at..].find('{') {
            let start = at + start;
            let end = matching(body, start);
            elements.push(go_fields(&body[start + 1..end]));
            at = end + 1;
        }
        elements
    } else {
        vec![go_fields(body)]
    }
}

/// The index of the brace closing the one at `open`, skipping strings.
fn matching(text: &str, open: usize) -> usize {
    let bytes = text.as_bytes();
    let mut depth = 0;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("an unclosed brace")
}

/// The fields of one element: comma-separated, each a string, a number,
/// `nil`, or `Key: value`.
fn go_fields(body: &str) -> GoElement {
    let mut element = GoElement::default();
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in body.chars() {
        if in_string {
            current.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                current.push(c);
            }
            ',' | '\n' => {
                if !current.trim().is_empty() {
                    fields.push(current.trim().to_string());
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    if !current.trim().is_empty() {
        fields.push(current.trim().to_string());
    }
    for field in fields {
        if field.starts_with("//") {
            continue;
        }
        let (key, value) = match field.split_once(':') {
            Some((key, value))
                if !key.contains('"') && key.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                (Some(key.trim().to_string()), value.trim())
            }
            _ => (None, field.as_str()),
        };
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map(|v| v.replace("\\\"", "\""))
            .unwrap_or_else(|| value.to_string());
        match key {
            Some(key) => {
                element.keyed.insert(key, value);
            }
            None => element.positional.push(value),
        }
    }
    element
}
