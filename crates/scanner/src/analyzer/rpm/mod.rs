//! Red Hat family packages: the rpm database in any of its three formats,
//! told apart by their first bytes, not their names:
//!
//! - SQLite `rpmdb.sqlite` (RHEL 9, Fedora 33+, Amazon Linux 2023),
//! - Berkeley DB `Packages` (RHEL/CentOS 5 to 8, Amazon Linux 2),
//! - ndb `Packages.db` (SUSE),
//!
//! under `var/lib/rpm/` or `usr/lib/sysimage/rpm/`. Each database holds one
//! rpm header per package; [`header`] reads the tags a package needs.
//! `gpg-pubkey` entries are imported signing keys, not software, and are
//! left out.

use super::{packages, AnalyzeError, Analyzed, Analyzer, Candidate, Context};
use crate::report::{Package, PackageKind, ProblemKind, SourcePackage};

pub(crate) mod bdb;
pub(crate) mod blob;
pub(crate) mod header;
pub(crate) mod ndb;
pub(crate) mod sqlite;

pub(crate) struct Rpm;

const DIRECTORIES: [&str; 2] = ["var/lib/rpm/", "usr/lib/sysimage/rpm/"];
const FILES: [&str; 3] = ["Packages", "Packages.db", "rpmdb.sqlite"];

impl Analyzer for Rpm {
    fn wants(&self, file: &Candidate<'_>) -> bool {
        DIRECTORIES.iter().any(|dir| {
            file.path
                .strip_prefix(dir)
                .is_some_and(|name| FILES.contains(&name))
        })
    }

    /// The database and its headers are read in place (a header spread
    /// over overflow pages is read from them, never assembled).
    fn memory_factor(&self) -> u64 {
        1
    }

    fn analyze(&self, ctx: &mut Context<'_>, path: &str, data: &[u8]) -> Analyzed {
        let mut found = Vec::new();
        let mut bad_headers = 0usize;
        let mut on_header = |blob: &dyn blob::ByteSource| {
            match header::Header::parse(blob).and_then(|h| package(&h)) {
                Ok(Some(package)) => found.push(package),
                Ok(None) => {}
                Err(_) => bad_headers += 1,
            }
            true
        };
        let result = if data.starts_with(b"SQLite format 3\0") {
            sqlite::table_blobs(data, "Packages", &mut on_header)
        } else if data.starts_with(b"RpmP") {
            ndb::values(data, &mut on_header)
        } else if data.len() >= 16 && data[12..16] == [0x61, 0x15, 0x06, 0x00] {
            bdb::values(data, &mut on_header)
        } else if data.is_empty() {
            Ok(())
        } else {
            Err("not an rpm database (SQLite, Berkeley DB or ndb)".to_string())
        };
        if bad_headers > 0 {
            ctx.problem(
                ProblemKind::MalformedFile,
                path,
                format!("{bad_headers} package headers could not be read"),
            );
        }
        match result {
            Ok(()) => Ok(packages(found)),
            // What was read before the database broke still counts.
            Err(e) if !found.is_empty() => {
                ctx.problem(ProblemKind::MalformedFile, path, e);
                Ok(packages(found))
            }
            Err(e) => Err(AnalyzeError::malformed(e)),
        }
    }
}

/// The package a header describes; `None` for signing keys.
fn package(h: &header::Header<'_>) -> Result<Option<Package>, String> {
    let name = h.string(header::NAME).ok_or("no name")?;
    let name = name.as_str();
    if name == "gpg-pubkey" {
        return Ok(None);
    }
    let version = h.string(header::VERSION).ok_or("no version")?;
    let release = h.string(header::RELEASE).ok_or("no release")?;
    let evr = match h.int32(header::EPOCH) {
        Some(epoch) if epoch != 0 => format!("{epoch}:{version}-{release}"),
        _ => format!("{version}-{release}"),
    };
    let mut package = Package::new(PackageKind::Rpm, name, evr);
    package.arch = h.string(header::ARCH);
    if let Some((source_name, source_version)) =
        h.string(header::SOURCERPM).and_then(|s| source_rpm(&s))
    {
        let source_version = match h.int32(header::EPOCH) {
            Some(epoch) if epoch != 0 => format!("{epoch}:{source_version}"),
            _ => source_version,
        };
        package.source = Some(SourcePackage {
            name: source_name,
            version: source_version,
        });
    }
    Ok(Some(package))
}

/// `openssl-3.0.7-27.el9.src.rpm` → (`openssl`, `3.0.7-27.el9`).
fn source_rpm(file: &str) -> Option<(String, String)> {
    let stem = file
        .strip_suffix(".src.rpm")
        .or_else(|| file.strip_suffix(".nosrc.rpm"))?;
    let (rest, release) = stem.rsplit_once('-')?;
    let (name, version) = rest.rsplit_once('-')?;
    Some((name.to_string(), format!("{version}-{release}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_rpm_names() {
        assert_eq!(
            source_rpm("openssl-3.0.7-27.el9.src.rpm"),
            Some(("openssl".into(), "3.0.7-27.el9".into()))
        );
        assert_eq!(
            source_rpm("python3.11-3.11.5-1.el9_3.src.rpm"),
            Some(("python3.11".into(), "3.11.5-1.el9_3".into()))
        );
        assert_eq!(source_rpm("(none)"), None);
    }
}
