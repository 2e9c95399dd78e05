//! Rust crates: `Cargo.lock` files (every `[[package]]`), and the
//! dependency lists cargo-auditable embeds in binaries (read by
//! [`crate::analyzer::binary`], parsed here).

use serde::Deserialize;

use super::{packages, AnalyzeError, Analyzed, Analyzer, Candidate, Context};
use crate::report::{Package, PackageKind};

pub(crate) struct CargoLock;

impl Analyzer for CargoLock {
    fn wants(&self, file: &Candidate<'_>) -> bool {
        file.regular && file.file_name() == "Cargo.lock"
    }

    fn analyze(&self, _ctx: &mut Context<'_>, _path: &str, data: &[u8]) -> Analyzed {
        #[derive(Deserialize)]
        struct Lock {
            #[serde(default)]
            package: Vec<LockedPackage>,
        }
        #[derive(Deserialize)]
        struct LockedPackage {
            name: String,
            version: String,
        }
        let text = std::str::from_utf8(data).map_err(|_| AnalyzeError::malformed("not UTF-8"))?;
        let lock: Lock = toml::from_str(text)
            .map_err(|e| AnalyzeError::malformed(format!("not a Cargo.lock: {e}")))?;
        Ok(packages(
            lock.package
                .into_iter()
                .map(|p| Package::new(PackageKind::Cargo, p.name, p.version))
                .collect(),
        ))
    }
}

/// The crates recorded by cargo-auditable (the JSON inside the binary's
/// `.dep-v0` section, already decompressed): `{"packages": [{"name",
/// "version", "source", "kind", "root"}]}`. The root package (the binary's
/// own crate) and build-time dependencies are left out: only crates linked
/// into the binary can carry its vulnerabilities.
pub(crate) fn auditable(json: &[u8]) -> Result<Vec<Package>, String> {
    #[derive(Deserialize)]
    struct Info {
        packages: Vec<Dependency>,
    }
    #[derive(Deserialize)]
    struct Dependency {
        name: String,
        version: String,
        #[serde(default)]
        kind: Option<String>,
        #[serde(default)]
        root: bool,
    }
    let info: Info =
        serde_json::from_slice(json).map_err(|e| format!("bad cargo-auditable data: {e}"))?;
    Ok(info
        .packages
        .into_iter()
        .filter(|d| {
            !d.root
                && !d
                    .kind
                    .as_deref()
                    .is_some_and(|k| k.eq_ignore_ascii_case("build"))
        })
        .map(|d| Package::new(PackageKind::Cargo, d.name, d.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auditable_packages() {
        let json = br#"{"packages":[{"name":"app","version":"0.1.0","source":"local","root":true,"dependencies":[1,2]},{"name":"libc","version":"0.2.150","source":"crates.io"},{"name":"cc","version":"1.0.83","source":"crates.io","kind":"build"}]}"#;
        let found = auditable(json).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].name.as_str(), found[0].version.as_str()),
            ("libc", "0.2.150")
        );
        assert!(auditable(b"{}").is_err());
    }
}
