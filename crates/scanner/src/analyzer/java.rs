//! Java archives (JAR, WAR, EAR and the plugin variants): every
//! `META-INF/maven/GROUP/ARTIFACT/pom.properties` inside, which Maven
//! writes into every artifact it builds (a shaded "fat" JAR keeps those of
//! the artifacts it swallowed), and the same inside archives nested in the
//! archive (`WEB-INF/lib/*.jar`, `BOOT-INF/lib/*.jar`, EAR modules), read
//! from memory.
//!
//! Caps: an archive's entry count (checked in its end-of-central-directory
//! record before the zip reader allocates anything), nesting depth, and
//! each nested archive's size against the memory budget. Archives without
//! Maven metadata are not identified: no lookup by file name or checksum
//! is made.

use std::io::{Cursor, Read};

use super::{packages, AnalyzeError, Analyzed, Analyzer, Candidate, Context};
use crate::report::{Package, PackageKind, ProblemKind};

pub(crate) struct Java;

const ARCHIVES: [&str; 7] = [".jar", ".war", ".ear", ".jpi", ".hpi", ".sar", ".par"];
/// pom.properties files are a few hundred bytes.
const MAX_PROPERTIES: u64 = 64 << 10;
/// What the zip reader keeps per central-directory entry, roughly; charged
/// against the budget while an archive is open.
const BYTES_PER_ENTRY: u64 = 256;

fn is_archive(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ARCHIVES.iter().any(|ext| lower.ends_with(ext))
}

impl Analyzer for Java {
    fn wants(&self, file: &Candidate<'_>) -> bool {
        file.regular && is_archive(file.file_name())
    }

    /// The archive is read in place; nested archives reserve their own
    /// buffers.
    fn memory_factor(&self) -> u64 {
        1
    }

    fn analyze(&self, ctx: &mut Context<'_>, path: &str, data: &[u8]) -> Analyzed {
        let mut found = Vec::new();
        archive(ctx, path, data, 1, &mut found).map_err(AnalyzeError::malformed)?;
        Ok(packages(found))
    }
}

/// Collects the packages of one archive and the archives nested in it.
/// An error means this archive itself could not be opened; problems with
/// nested archives are recorded and the walk goes on.
fn archive(
    ctx: &mut Context<'_>,
    location: &str,
    data: &[u8],
    depth: u32,
    found: &mut Vec<Package>,
) -> Result<(), String> {
    if depth > ctx.limits.max_archive_depth {
        ctx.problem(
            ProblemKind::ArchiveDepth,
            location,
            format!(
                "archives nested more than {} deep",
                ctx.limits.max_archive_depth
            ),
        );
        return Ok(());
    }
    let entries = central_directory_entries(data)?;
    if entries > ctx.limits.max_archive_entries as u64 {
        return Err(format!(
            "{entries} entries (the cap is {})",
            ctx.limits.max_archive_entries
        ));
    }
    let Some(_directory) = ctx.budget.reserve(entries * BYTES_PER_ENTRY) else {
        ctx.problem(
            ProblemKind::FileTooLarge,
            location,
            "no memory budget left to open the archive",
        );
        return Ok(());
    };
    let mut zip =
        zip::ZipArchive::new(Cursor::new(data)).map_err(|e| format!("not a zip archive: {e}"))?;
    for i in 0..zip.len() {
        let mut entry = match zip.by_index(i) {
            Ok(entry) => entry,
            Err(e) => {
                ctx.problem(
                    ProblemKind::MalformedFile,
                    location,
                    format!("entry {i}: {e}"),
                );
                continue;
            }
        };
        if entry.is_dir() {
            continue;
        }
        let name = match entry.name() {
            Ok(name) => name.to_string(),
            Err(_) => continue,
        };
        if name.starts_with("META-INF/maven/") && name.ends_with("/pom.properties") {
            let mut text = String::new();
            if (&mut entry)
                .take(MAX_PROPERTIES)
                .read_to_string(&mut text)
                .is_err()
            {
                ctx.problem(
                    ProblemKind::MalformedFile,
                    location,
                    format!("{name}: unreadable"),
                );
                continue;
            }
            if let Some(package) = pom_properties(&text) {
                let mut package = package;
                package.location = location.to_string();
                found.push(package);
            }
        } else if is_archive(&name) {
            let nested = format!("{location}!/{name}");
            let size = entry.size();
            let reservation = if size <= ctx.limits.max_file_size {
                ctx.budget.reserve(size)
            } else {
                None
            };
            if reservation.is_none() {
                ctx.problem(
                    ProblemKind::FileTooLarge,
                    &nested,
                    format!(
                        "a nested archive of {size} bytes is over the cap or the memory budget"
                    ),
                );
                continue;
            }
            let mut bytes = Vec::with_capacity(size as usize);
            // The declared size is trusted only as a cap.
            if let Err(e) = (&mut entry).take(size).read_to_end(&mut bytes) {
                ctx.problem(
                    ProblemKind::MalformedFile,
                    &nested,
                    format!("unreadable: {e}"),
                );
                continue;
            }
            drop(entry);
            if let Err(e) = archive(ctx, &nested, &bytes, depth + 1, found) {
                ctx.problem(ProblemKind::MalformedFile, &nested, e);
            }
        }
    }
    Ok(())
}

/// `groupId`, `artifactId` and `version` of a pom.properties file (Java
/// properties: `key=value` or `key: value`, `#` and `!` comments).
fn pom_properties(text: &str) -> Option<Package> {
    let (mut group, mut artifact, mut version) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with(['#', '!']) {
            continue;
        }
        let Some(split) = line.find(['=', ':']) else {
            continue;
        };
        let (key, value) = (line[..split].trim(), line[split + 1..].trim());
        match key {
            "groupId" => group = Some(value),
            "artifactId" => artifact = Some(value),
            "version" => version = Some(value),
            _ => {}
        }
    }
    let (group, artifact, version) = (group?, artifact?, version?);
    if group.is_empty() || artifact.is_empty() || version.is_empty() {
        return None;
    }
    Some(Package::new(
        PackageKind::Maven,
        format!("{group}:{artifact}"),
        version,
    ))
}

/// The number of entries the archive's end-of-central-directory record
/// declares (its ZIP64 record when the classic one is saturated).
fn central_directory_entries(data: &[u8]) -> Result<u64, String> {
    const EOCD: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    const ZIP64_LOCATOR: [u8; 4] = [0x50, 0x4b, 0x06, 0x07];
    const ZIP64_EOCD: [u8; 4] = [0x50, 0x4b, 0x06, 0x06];
    // The record is 22 bytes plus a comment of up to 65535.
    let search_from = data.len().saturating_sub(22 + 65535);
    let at = memchr::memmem::rfind(&data[search_from..], &EOCD)
        .map(|at| search_from + at)
        .ok_or("no end of central directory")?;
    let record = data
        .get(at..at + 22)
        .ok_or("a truncated end of central directory")?;
    let entries = u16::from_le_bytes([record[10], record[11]]) as u64;
    if entries != 0xffff {
        return Ok(entries);
    }
    let locator = at
        .checked_sub(20)
        .and_then(|l| data.get(l..l + 20))
        .filter(|l| l[..4] == ZIP64_LOCATOR)
        .ok_or("a saturated entry count without a ZIP64 record")?;
    let offset = u64::from_le_bytes(locator[8..16].try_into().map_err(|_| "bad locator")?) as usize;
    let record = data
        .get(offset..offset.saturating_add(56))
        .filter(|r| r[..4] == ZIP64_EOCD)
        .ok_or("a bad ZIP64 end of central directory")?;
    Ok(u64::from_le_bytes(
        record[32..40].try_into().map_err(|_| "bad ZIP64 record")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pom_properties_files() {
        let text = "#Generated by Maven\n#Tue Jan 26 07:00:00 UTC 2021\ngroupId=com.example\nartifactId=web-app\nversion=1.0-SNAPSHOT\n";
        let p = pom_properties(text).unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str()),
            ("com.example:web-app", "1.0-SNAPSHOT")
        );
        assert!(pom_properties("groupId=a\nversion=1\n").is_none());
    }

    #[test]
    fn entry_counts() {
        let mut eocd = vec![0u8; 10];
        eocd.extend_from_slice(&[
            0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 7, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        assert_eq!(central_directory_entries(&eocd), Ok(7));
        assert!(central_directory_entries(b"not a zip").is_err());
    }
}
