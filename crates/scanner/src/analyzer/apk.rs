//! Alpine packages: `lib/apk/db/installed`.
//!
//! Records separated by empty lines, one `X:value` line per field: `P`
//! name, `V` version, `A` architecture, `o` origin (the aports package it
//! was built from, which Alpine's advisories name). Per-file lines (`F`,
//! `R`, `Z`, …) are skipped.

use super::{packages, text, AnalyzeError, Analyzed, Analyzer, Candidate, Context};
use crate::report::{Package, PackageKind, SourcePackage};

pub(crate) struct Apk;

impl Analyzer for Apk {
    fn wants(&self, file: &Candidate<'_>) -> bool {
        file.path == "lib/apk/db/installed"
    }

    fn analyze(&self, _ctx: &mut Context<'_>, _path: &str, data: &[u8]) -> Analyzed {
        let text = text(data);
        let found = parse(&text);
        if found.is_empty() && !text.trim().is_empty() {
            return Err(AnalyzeError::malformed("no package records"));
        }
        Ok(packages(found))
    }
}

pub(crate) fn parse(text: &str) -> Vec<Package> {
    let mut found = Vec::new();
    let mut record = Record::default();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let Some(package) = std::mem::take(&mut record).into_package() {
                found.push(package);
            }
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "P" => record.name = Some(value.to_string()),
            "V" => record.version = Some(value.to_string()),
            "A" => record.arch = Some(value.to_string()),
            "o" => record.origin = Some(value.to_string()),
            _ => {}
        }
    }
    found
}

#[derive(Default)]
struct Record {
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    origin: Option<String>,
}

impl Record {
    fn into_package(self) -> Option<Package> {
        let name = self.name?;
        let version = self.version?;
        let mut package = Package::new(PackageKind::Apk, name.clone(), version.clone());
        package.arch = self.arch;
        package.source = Some(SourcePackage {
            name: self.origin.unwrap_or(name),
            version,
        });
        Some(package)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_records() {
        let db = "C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nS:383152\nT:the musl c library\no:musl\nF:lib\nR:ld-musl-x86_64.so.1\n\nP:libcrypto3\nV:3.3.2-r0\nA:x86_64\no:openssl\n\nP:broken\n";
        let found = parse(db);
        let got: Vec<_> = found
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.source_name()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("musl", "1.2.5-r0", "musl"),
                ("libcrypto3", "3.3.2-r0", "openssl")
            ]
        );
    }
}
