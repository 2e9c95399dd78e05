//! Executables: Go build information and cargo-auditable dependency
//! lists, from ELF, PE and Mach-O binaries.
//!
//! A binary under the size cap is parsed whole with the `object` crate
//! (sections, and address translation for Go binaries older than 1.18).
//! A larger one is searched as a stream for Go 1.18+'s inline build
//! information, which needs no sections; its cargo-auditable section, if
//! any, cannot be found without the section table at the end of the file,
//! and that is recorded as a partial result.

use std::io::{self, Read};

use object::{Object, ObjectSection};

use super::golang::{self, BuildInfo};
use super::{cargo, packages, Analyzed, Analyzer, Candidate, Context};
use crate::report::{FileContents, Package, ProblemKind};

pub(crate) struct Binary;

/// cargo-auditable's own cap on the decompressed dependency list.
const MAX_AUDITABLE_JSON: u64 = 8 << 20;
/// How much build information a streamed binary may carry.
const MAX_STREAMED_BUILD_INFO: usize = 1 << 20;
/// Executables shorter than this are scripts or stubs.
const MIN_BINARY: u64 = 1024;

fn is_executable_format(prefix: &[u8]) -> bool {
    prefix.starts_with(b"\x7fELF")
        || prefix.starts_with(b"MZ")
        || [
            [0xfe, 0xed, 0xfa, 0xce],
            [0xfe, 0xed, 0xfa, 0xcf],
            [0xce, 0xfa, 0xed, 0xfe],
            [0xcf, 0xfa, 0xed, 0xfe],
        ]
        .iter()
        .any(|magic| prefix.starts_with(magic))
}

impl Analyzer for Binary {
    fn wants(&self, file: &Candidate<'_>) -> bool {
        file.executable() && file.size >= MIN_BINARY
    }

    /// Sections are read in place; the cargo-auditable JSON (at most 8 MiB)
    /// is the only copy, under its own reservation.
    fn memory_factor(&self) -> u64 {
        1
    }

    fn analyze(&self, ctx: &mut Context<'_>, path: &str, data: &[u8]) -> Analyzed {
        if !is_executable_format(data) {
            return Ok(FileContents::Nothing);
        }
        let mut found = Vec::new();
        // Go: the build information, inline or through pointers.
        if let Some(at) = golang::find(data, 0) {
            match golang::header(&data[at..]) {
                Some(BuildInfo::Inline { version, modinfo }) => {
                    found.extend(golang::packages(version, modinfo));
                }
                Some(BuildInfo::Pointers {
                    pointer_size,
                    big_endian,
                    version_address,
                    modinfo_address,
                }) => match object::File::parse(data) {
                    Ok(file) => {
                        let read =
                            |address| go_string(&file, data, address, pointer_size, big_endian);
                        match (read(version_address), read(modinfo_address)) {
                            (Some(version), Some(modinfo)) => {
                                found.extend(golang::packages(version, modinfo));
                            }
                            _ => ctx.problem(
                                ProblemKind::MalformedFile,
                                path,
                                "Go build information points outside the binary",
                            ),
                        }
                    }
                    Err(e) => ctx.problem(
                        ProblemKind::MalformedFile,
                        path,
                        format!("not a readable binary: {e}"),
                    ),
                },
                None => ctx.problem(
                    ProblemKind::MalformedFile,
                    path,
                    "malformed Go build information",
                ),
            }
        }
        // Rust: cargo-auditable's zlib-compressed JSON section.
        if let Ok(file) = object::File::parse(data) {
            if let Some(section) = file.section_by_name(".dep-v0") {
                let reservation = ctx.budget.reserve(MAX_AUDITABLE_JSON);
                match section.data() {
                    Ok(_) if reservation.is_none() => ctx.problem(
                        ProblemKind::FileTooLarge,
                        path,
                        "no memory budget left to read the cargo-auditable data",
                    ),
                    Ok(compressed) => match inflate(compressed, MAX_AUDITABLE_JSON) {
                        Ok(json) => match cargo::auditable(&json) {
                            Ok(crates) => found.extend(crates),
                            Err(e) => ctx.problem(ProblemKind::MalformedFile, path, e),
                        },
                        Err(e) => ctx.problem(
                            ProblemKind::MalformedFile,
                            path,
                            format!("cargo-auditable data: {e}"),
                        ),
                    },
                    Err(e) => ctx.problem(
                        ProblemKind::MalformedFile,
                        path,
                        format!("cargo-auditable section: {e}"),
                    ),
                }
            }
        }
        Ok(if found.is_empty() {
            FileContents::Nothing
        } else {
            packages(found)
        })
    }

    fn analyze_stream(
        &self,
        ctx: &mut Context<'_>,
        path: &str,
        reader: &mut dyn Read,
    ) -> Option<Analyzed> {
        Some(stream(ctx, path, reader))
    }
}

/// Reads a Go string header (pointer, length) at `address`, then the
/// string it points to.
fn go_string<'a>(
    file: &object::File<'a>,
    data: &'a [u8],
    address: u64,
    pointer_size: usize,
    big_endian: bool,
) -> Option<&'a [u8]> {
    let header = at_address(file, data, address, 2 * pointer_size)?;
    let pointer = golang::read_pointer(header, pointer_size, big_endian)?;
    let length = golang::read_pointer(&header[pointer_size..], pointer_size, big_endian)?;
    at_address(file, data, pointer, usize::try_from(length).ok()?)
}

/// The file bytes backing `length` bytes at a virtual address.
fn at_address<'a>(
    file: &object::File<'a>,
    data: &'a [u8],
    address: u64,
    length: usize,
) -> Option<&'a [u8]> {
    for section in file.sections() {
        let start = section.address();
        let end = start.checked_add(section.size())?;
        if address >= start && address < end {
            let (file_start, file_size) = section.file_range()?;
            let within = address - start;
            if within.checked_add(length as u64)? > file_size {
                return None;
            }
            let from = usize::try_from(file_start.checked_add(within)?).ok()?;
            return data.get(from..from.checked_add(length)?);
        }
    }
    None
}

/// zlib-inflates at most `cap` bytes.
fn inflate(compressed: &[u8], cap: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(cap + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(io::Error::other(format!("more than {cap} bytes")));
    }
    Ok(out)
}

/// Searches a binary too large to hold for inline Go build information,
/// one chunk at a time.
fn stream(ctx: &mut Context<'_>, path: &str, reader: &mut dyn Read) -> Analyzed {
    const CHUNK: usize = 1 << 20;
    let Some(_reservation) = ctx.budget.reserve((CHUNK + MAX_STREAMED_BUILD_INFO) as u64) else {
        ctx.problem(
            ProblemKind::FileTooLarge,
            path,
            "no memory budget left to search the binary",
        );
        return Ok(FileContents::Nothing);
    };
    let mut buffer = vec![0u8; CHUNK];
    // Bytes kept from the previous chunk so a magic across the boundary
    // is found.
    let keep = golang::MAGIC.len() - 1;
    let mut filled = 0usize;
    let mut offset: u64 = 0;
    let mut first = true;
    loop {
        let n = match reader.read(&mut buffer[filled..]) {
            Ok(n) => n,
            Err(e) => {
                return Err(super::AnalyzeError::malformed(format!(
                    "reading the binary: {e}"
                )))
            }
        };
        if n == 0 && filled < keep + 1 {
            break;
        }
        filled += n;
        if first {
            if filled < 4 {
                continue;
            }
            if !is_executable_format(&buffer[..filled]) {
                return Ok(FileContents::Nothing);
            }
            first = false;
        }
        if let Some(at) = golang::find(&buffer[..filled], offset) {
            // Collect the header and what follows it.
            let mut info = buffer[at..filled].to_vec();
            while info.len() < MAX_STREAMED_BUILD_INFO {
                let mut more = vec![0u8; (MAX_STREAMED_BUILD_INFO - info.len()).min(64 << 10)];
                let n = reader.read(&mut more).unwrap_or(0);
                if n == 0 {
                    break;
                }
                info.extend_from_slice(&more[..n]);
                if let Some(BuildInfo::Inline { .. }) = golang::header(&info) {
                    break;
                }
            }
            let found: Vec<Package> = match golang::header(&info) {
                Some(BuildInfo::Inline { version, modinfo }) => golang::packages(version, modinfo),
                _ => {
                    ctx.problem(
                        ProblemKind::FileTooLarge,
                        path,
                        "a Go binary from before Go 1.18 over the size cap: its build information was not read",
                    );
                    Vec::new()
                }
            };
            return Ok(packages(found));
        }
        if n == 0 {
            break;
        }
        if filled == buffer.len() {
            buffer.copy_within(filled - keep..filled, 0);
            offset += (filled - keep) as u64;
            filled = keep;
        }
    }
    Ok(FileContents::Nothing)
}
