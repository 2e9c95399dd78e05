//! The indexer: one streaming pass per layer, feeding the analyzers the
//! files they want, producing a [`LayerIndex`].

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use berth_oci::Digest;
use tokio::io::AsyncRead;

use crate::analyzer::{self, Analyzer, Candidate, Context};
use crate::layer::tar::{EntryKind, TarError, TarReader};
use crate::layer::{self, Whiteout};
use crate::limits::{Budget, Limits};
use crate::report::{FileContents, FileRecord, LayerIndex, LayerStats, Problem, ProblemKind};

/// Indexes layers. Cheap to share: hold one in an `Arc` and index many
/// layers at once, each on its own blocking thread.
pub struct Indexer {
    limits: Limits,
    analyzers: Vec<Box<dyn Analyzer>>,
}

impl Default for Indexer {
    fn default() -> Self {
        Indexer::new(Limits::default())
    }
}

impl Indexer {
    /// An indexer with every analyzer and the given caps.
    pub fn new(limits: Limits) -> Self {
        Indexer {
            limits,
            analyzers: analyzer::all(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Indexes one layer blob read from an async stream (the blob store's
    /// reader), on a blocking thread: decompression and parsing are CPU
    /// work and must not hold an async worker. Never fails and never
    /// panics: whatever cannot be read is named in the result's
    /// `problems`.
    pub async fn index_layer<R>(
        self: &Arc<Self>,
        layer: Digest,
        media_type: Option<String>,
        reader: R,
    ) -> LayerIndex
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let indexer = self.clone();
        let digest = layer.clone();
        let task = tokio::task::spawn_blocking(move || {
            let bridge = tokio_util::io::SyncIoBridge::new(reader);
            indexer.index_layer_blocking(layer, media_type.as_deref(), bridge)
        });
        match task.await {
            Ok(index) => index,
            // Only a panic outside the guarded walk (or a cancelled
            // runtime) gets here.
            Err(e) => failed_index(digest, format!("the indexing task failed: {e}")),
        }
    }

    /// Indexes one layer blob (compressed or not) from a blocking reader.
    pub fn index_layer_blocking(
        &self,
        layer: Digest,
        media_type: Option<&str>,
        reader: impl Read,
    ) -> LayerIndex {
        let mut walk = Walk::default();
        let budget = Budget::new(self.limits.memory_budget);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.walk(&mut walk, &budget, media_type, reader)
        }));
        if outcome.is_err() {
            walk.problem(
                ProblemKind::Internal,
                None,
                "the scanner failed on this layer; the rest of it was not read",
            );
        }
        walk.stats.peak_buffered_bytes = budget.peak();
        let mut problems = walk.problems;
        for problem in &mut problems {
            problem.layer = Some(layer.clone());
        }
        problems.sort();
        problems.dedup();
        LayerIndex {
            layer,
            files: walk
                .records
                .into_iter()
                .map(|(path, contents)| FileRecord { path, contents })
                .collect(),
            whiteouts: walk.whiteouts,
            opaque_dirs: walk.opaque_dirs,
            problems,
            stats: walk.stats,
        }
    }

    fn walk(&self, walk: &mut Walk, budget: &Budget, media_type: Option<&str>, reader: impl Read) {
        let decompressed = match layer::open(reader, media_type, &self.limits) {
            Ok(d) => d,
            Err(e) => {
                let (kind, detail) = layer::classify(&e);
                walk.problem(kind, None, detail);
                return;
            }
        };
        let counters = decompressed.counters.clone();
        let mut tar = TarReader::new(decompressed.reader, self.limits.max_header_extension);
        loop {
            let entry = match tar.next_entry() {
                Ok(Some(entry)) => entry,
                Ok(None) => break,
                Err(TarError::Io(e)) => {
                    let (kind, detail) = layer::classify(&e);
                    walk.problem(kind, None, detail);
                    break;
                }
                Err(TarError::Malformed(detail)) => {
                    walk.problem(ProblemKind::MalformedArchive, None, detail);
                    break;
                }
            };
            walk.stats.entries += 1;
            if walk.stats.entries > self.limits.max_entries {
                walk.problem(
                    ProblemKind::TooManyEntries,
                    None,
                    format!("more than {} entries", self.limits.max_entries),
                );
                break;
            }
            let Some(path) = layer::normalize_path(&entry.path) else {
                continue;
            };
            match layer::whiteout(&path) {
                Some(Whiteout::Path(hidden)) => {
                    walk.records.remove(&hidden);
                    walk.whiteouts.push(hidden);
                    continue;
                }
                Some(Whiteout::Opaque(dir)) => {
                    walk.opaque_dirs.push(dir);
                    continue;
                }
                None => {}
            }
            let candidate = Candidate {
                path: &path,
                size: entry.size,
                mode: entry.mode,
                regular: entry.kind == EntryKind::File,
            };
            let wanting: Vec<&dyn Analyzer> = self
                .analyzers
                .iter()
                .map(|a| a.as_ref())
                .filter(|a| a.wants(&candidate))
                .collect();
            match entry.kind {
                EntryKind::File if !wanting.is_empty() => {
                    if let Err(e) =
                        self.analyze_file(walk, budget, &mut tar, &path, entry.size, &wanting)
                    {
                        let (kind, detail) = layer::classify(&e);
                        walk.problem(kind, None, detail);
                        break;
                    }
                }
                EntryKind::Hardlink => {
                    // A hard link's data is its target's, read earlier in
                    // this layer: the link path holds what the target held.
                    let target = layer::normalize_path(&entry.link).unwrap_or_default();
                    let linked = walk
                        .records
                        .get(&target)
                        .cloned()
                        .map(|contents| relocate(contents, &target, &path));
                    match linked {
                        Some(contents) => {
                            walk.records.insert(path, contents);
                        }
                        None if !wanting.is_empty() => {
                            walk.records.insert(path, FileContents::Nothing);
                        }
                        None => {}
                    }
                }
                // A link, directory or device at a wanted path still hides
                // what lower layers had there.
                _ if !wanting.is_empty() || self.wanted_by_name(&path) => {
                    walk.records.insert(path, FileContents::Nothing);
                }
                _ => {}
            }
        }
        walk.stats.compressed_bytes = counters.compressed.get();
        walk.stats.decompressed_bytes = counters.decompressed.get();
        walk.whiteouts.sort();
        walk.whiteouts.dedup();
        walk.opaque_dirs.sort();
        walk.opaque_dirs.dedup();
    }

    /// Whether some analyzer would want a regular file at this path.
    fn wanted_by_name(&self, path: &str) -> bool {
        let candidate = Candidate {
            path,
            size: 0,
            mode: 0o644,
            regular: true,
        };
        self.analyzers.iter().any(|a| a.wants(&candidate))
    }

    /// Reads one wanted file and runs the analyzers that want it. An error
    /// is the layer stream's (the walk cannot go on); problems with the
    /// file itself are recorded.
    fn analyze_file<R: BufRead>(
        &self,
        walk: &mut Walk,
        budget: &Budget,
        tar: &mut TarReader<R>,
        path: &str,
        size: u64,
        wanting: &[&dyn Analyzer],
    ) -> io::Result<()> {
        let mut ctx = Context {
            limits: &self.limits,
            budget,
            problems: Vec::new(),
        };
        // The file and what parsing it may cost, reserved up front.
        let factor = wanting.iter().map(|a| a.memory_factor()).max().unwrap_or(1);
        let reservation = if size <= self.limits.max_file_size {
            budget.reserve(size.saturating_mul(factor))
        } else {
            None
        };
        let mut results = Vec::new();
        if reservation.is_some() {
            let mut data = Vec::with_capacity(size as usize);
            let mut reader = EntryReader(tar);
            reader.read_to_end(&mut data)?;
            walk.stats.files_read += 1;
            for analyzer in wanting {
                results.push(analyzer.analyze(&mut ctx, path, &data));
            }
        } else {
            let mut streamed = false;
            for analyzer in wanting {
                let mut reader = EntryReader(&mut *tar);
                if let Some(result) = analyzer.analyze_stream(&mut ctx, path, &mut reader) {
                    results.push(result);
                    streamed = true;
                    break;
                }
            }
            if !streamed {
                ctx.problem(
                    ProblemKind::FileTooLarge,
                    path,
                    format!(
                        "{size} bytes is over the cap of {} (or the memory budget)",
                        self.limits.max_file_size
                    ),
                );
            }
        }
        drop(reservation);
        let mut contents = FileContents::Nothing;
        for result in results {
            match result {
                Ok(found) => contents = combine(contents, found),
                Err(e) => ctx.problem(e.kind, path, e.detail),
            }
        }
        if let FileContents::Packages { packages } = &mut contents {
            for package in packages.iter_mut().filter(|p| p.location.is_empty()) {
                package.location = path.to_string();
            }
            let room = self.limits.max_packages.saturating_sub(walk.packages);
            if packages.len() > room {
                packages.truncate(room);
                ctx.problem(
                    ProblemKind::TooManyPackages,
                    path,
                    format!(
                        "more than {} packages in the layer",
                        self.limits.max_packages
                    ),
                );
            }
            walk.packages += packages.len();
        }
        walk.problems.append(&mut ctx.problems);
        walk.records.insert(path.to_string(), contents);
        Ok(())
    }
}

/// A layer index holding nothing but the reason.
fn failed_index(layer: Digest, detail: String) -> LayerIndex {
    LayerIndex {
        layer: layer.clone(),
        files: Vec::new(),
        whiteouts: Vec::new(),
        opaque_dirs: Vec::new(),
        problems: vec![Problem {
            kind: ProblemKind::Internal,
            layer: Some(layer),
            path: None,
            detail,
        }],
        stats: LayerStats::default(),
    }
}

/// Merges what two analyzers found in the same file.
fn combine(a: FileContents, b: FileContents) -> FileContents {
    match (a, b) {
        (FileContents::Nothing, other) | (other, FileContents::Nothing) => other,
        (FileContents::Packages { mut packages }, FileContents::Packages { packages: more }) => {
            packages.extend(more);
            FileContents::Packages { packages }
        }
        (d @ FileContents::Distribution { .. }, _) => d,
        (_, d) => d,
    }
}

/// A hard link's contents under the link's own path: locations inside the
/// target become locations inside the link.
fn relocate(contents: FileContents, target: &str, link: &str) -> FileContents {
    match contents {
        FileContents::Packages { mut packages } => {
            for package in &mut packages {
                if let Some(rest) = package.location.strip_prefix(target) {
                    package.location = format!("{link}{rest}");
                }
            }
            FileContents::Packages { packages }
        }
        other => other,
    }
}

/// The state of one layer's walk.
#[derive(Default)]
struct Walk {
    records: BTreeMap<String, FileContents>,
    whiteouts: Vec<String>,
    opaque_dirs: Vec<String>,
    problems: Vec<Problem>,
    stats: LayerStats,
    /// Packages recorded so far.
    packages: usize,
}

impl Walk {
    fn problem(&mut self, kind: ProblemKind, path: Option<&str>, detail: impl Into<String>) {
        self.problems.push(Problem {
            kind,
            layer: None,
            path: path.map(str::to_string),
            detail: detail.into(),
        });
    }
}

/// The current entry's data as a reader.
struct EntryReader<'a, R>(&'a mut TarReader<R>);

impl<R: BufRead> Read for EntryReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_data(buf)
    }
}
