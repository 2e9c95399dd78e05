//! The caps that keep a hostile layer from hurting the server, and the
//! memory budget that bounds what indexing holds at once.
//!
//! Indexing streams each layer once and keeps in memory only the file it is
//! parsing (and, inside a Java archive, the nested archives it is opening),
//! so its peak extra memory is the decompressor's window (8 MiB at most),
//! plus the budget below (40 MiB), plus the index it builds (at most
//! `max_packages` packages of about 300 bytes): under 64 MiB whatever the
//! image (`tests/memory.rs` measures it).

use std::cell::Cell;

/// Caps applied while indexing one layer. Every field has a default that
/// suits real images; a layer that crosses one is indexed as far as it
/// safely can and its result is marked partial, naming the cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed bytes read from one layer (the tar stream). Past it,
    /// the rest of the layer is not read.
    pub max_decompressed_bytes: u64,
    /// Decompressed bytes per compressed byte, checked once
    /// `ratio_grace_bytes` have been decompressed: a zip bomb is stopped
    /// long before it reaches `max_decompressed_bytes`. Real layers stay
    /// under 20; long runs of zeros reach 1000.
    pub max_compression_ratio: u64,
    /// Decompressed bytes read before the ratio is enforced (small layers
    /// of empty files compress extremely well and are harmless).
    pub ratio_grace_bytes: u64,
    /// Entries (files, directories, links) in one layer.
    pub max_entries: u64,
    /// The largest file read into memory to be parsed (package databases,
    /// manifests, archives, binaries). Larger files are skipped and named
    /// in the partial reasons; executables larger than this are still
    /// searched, as a stream, for Go build information.
    pub max_file_size: u64,
    /// Bytes held at once by file buffers and what parsing them costs
    /// (a file parsed into a tree reserves twice its size), including
    /// archives nested in archives (a JAR in a WAR in an EAR each hold
    /// their own buffer).
    pub memory_budget: u64,
    /// Packages one layer may report: the index itself is memory too
    /// (about 300 bytes a package), and no real layer comes near this.
    pub max_packages: usize,
    /// How deep archives are opened inside archives (a WAR is depth 1, a
    /// JAR inside it depth 2).
    pub max_archive_depth: u32,
    /// Entries listed in one zip archive's central directory.
    pub max_archive_entries: usize,
    /// Bytes of one tar header extension (a PAX record set or a GNU long
    /// name); real ones are a few hundred bytes.
    pub max_header_extension: u64,
    /// zstd's window, as a power of two: frames that ask for more are
    /// refused, which bounds the decoder's memory (2^23 = 8 MiB covers
    /// every compression level up to 19).
    pub zstd_window_log_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed_bytes: 32 << 30,
            max_compression_ratio: 200,
            ratio_grace_bytes: 64 << 20,
            max_entries: 2_000_000,
            max_file_size: 32 << 20,
            memory_budget: 40 << 20,
            max_packages: 50_000,
            max_archive_depth: 3,
            max_archive_entries: 100_000,
            max_header_extension: 64 << 10,
            zstd_window_log_max: 23,
        }
    }
}

/// Bytes held by buffers right now, against the budget. One per layer
/// being indexed; indexing a layer is single-threaded, so a `Cell` is
/// enough.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    used: Cell<u64>,
    peak: Cell<u64>,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Self {
        Budget {
            limit,
            used: Cell::new(0),
            peak: Cell::new(0),
        }
    }

    /// Reserves `bytes` for a buffer; `None` when that would go over the
    /// budget. The reservation is returned when it is dropped.
    pub(crate) fn reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        let used = self.used.get().checked_add(bytes)?;
        if used > self.limit {
            return None;
        }
        self.used.set(used);
        self.peak.set(self.peak.get().max(used));
        Some(Reservation {
            budget: self,
            bytes,
        })
    }

    /// The most bytes held at once so far.
    pub(crate) fn peak(&self) -> u64 {
        self.peak.get()
    }
}

/// A part of the budget in use; given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation<'a> {
    budget: &'a Budget,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.used.set(self.budget.used.get() - self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_reserves_and_returns() {
        let budget = Budget::new(100);
        let a = budget.reserve(60).expect("fits");
        assert!(budget.reserve(41).is_none());
        let b = budget.reserve(40).expect("fits exactly");
        drop(a);
        let c = budget.reserve(60).expect("room again");
        drop((b, c));
        assert_eq!(budget.peak(), 100);
        assert!(budget.reserve(u64::MAX).is_none());
    }
}
