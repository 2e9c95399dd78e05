//! npm packages: every `node_modules/NAME/package.json` and
//! `node_modules/@SCOPE/NAME/package.json` (installed packages, global or
//! local), and `package-lock.json` files outside `node_modules` (an
//! application's locked tree, lockfile versions 1 to 3). Development
//! dependencies of a lockfile are left out: they are not installed in a
//! production image (`npm ci --omit=dev`), and including them would report
//! packages the image does not have.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::{packages, AnalyzeError, Analyzed, Analyzer, Candidate, Context};
use crate::report::{Package, PackageKind};

pub(crate) struct Npm;

impl Analyzer for Npm {
    fn wants(&self, file: &Candidate<'_>) -> bool {
        if !file.regular {
            return false;
        }
        let parts: Vec<&str> = file.path.rsplit('/').take(4).collect();
        match parts.as_slice() {
            ["package.json", name, "node_modules", ..] => {
                !name.starts_with('@') && !name.starts_with('.')
            }
            ["package.json", _, scope, "node_modules"] => scope.starts_with('@'),
            ["package-lock.json", ..] => !file.path.split('/').any(|p| p == "node_modules"),
            _ => false,
        }
    }

    fn analyze(&self, _ctx: &mut Context<'_>, path: &str, data: &[u8]) -> Analyzed {
        if path.ends_with("package-lock.json") {
            return lockfile(data).map(packages);
        }
        // Only the two fields are materialized: a large package.json costs
        // no tree.
        #[derive(Deserialize)]
        struct Manifest {
            #[serde(default)]
            name: Option<Value>,
            #[serde(default)]
            version: Option<Value>,
        }
        let manifest: Manifest = serde_json::from_slice(data)
            .map_err(|e| AnalyzeError::malformed(format!("not JSON: {e}")))?;
        let name = manifest.name.as_ref().and_then(Value::as_str);
        let version = manifest.version.as_ref().and_then(Value::as_str);
        match (name, version) {
            (Some(name), Some(version)) if !name.is_empty() && !version.is_empty() => Ok(packages(
                vec![Package::new(PackageKind::Npm, name, version)],
            )),
            // A package.json without a name or version is not an
            // installed package (a test fixture, a workspace root).
            _ => Ok(packages(Vec::new())),
        }
    }
}

/// A lockfile v2/v3 entry (keys are install paths).
#[derive(Deserialize)]
struct Installed {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    dev: bool,
    #[serde(default)]
    link: bool,
}

/// A lockfile v1 entry, nested.
#[derive(Deserialize)]
struct Locked {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    dev: bool,
    #[serde(default)]
    dependencies: BTreeMap<String, Locked>,
}

/// The non-development packages of a lockfile, parsed into only the fields
/// needed (a lockfile is read twice rather than kept as a tree: once to see
/// which format it is, once for its packages).
pub(crate) fn lockfile(data: &[u8]) -> Result<Vec<Package>, AnalyzeError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        packages: Option<IgnoredAny>,
    }
    #[derive(Deserialize)]
    struct V2 {
        packages: BTreeMap<String, Installed>,
    }
    #[derive(Deserialize)]
    struct V1 {
        #[serde(default)]
        dependencies: BTreeMap<String, Locked>,
    }
    let bad =
        |e: serde_json::Error| AnalyzeError::malformed(format!("not a package-lock.json: {e}"));
    let probe: Probe = serde_json::from_slice(data).map_err(bad)?;
    let mut found = Vec::new();
    if probe.packages.is_some() {
        let lock: V2 = serde_json::from_slice(data).map_err(bad)?;
        for (key, entry) in lock.packages {
            let Some(install_path) = key.rsplit_once("node_modules/").map(|(_, name)| name) else {
                continue;
            };
            if entry.dev || entry.link {
                continue;
            }
            let name = entry.name.as_deref().unwrap_or(install_path);
            if let Some(version) = entry.version {
                found.push(Package::new(PackageKind::Npm, name, version));
            }
        }
    } else {
        let lock: V1 = serde_json::from_slice(data).map_err(bad)?;
        let mut stack: Vec<BTreeMap<String, Locked>> = vec![lock.dependencies];
        while let Some(level) = stack.pop() {
            for (name, entry) in level {
                if entry.dev {
                    continue;
                }
                if let Some(version) = &entry.version {
                    // `file:` and `git+` versions are not registry versions.
                    if !version.contains(':') {
                        found.push(Package::new(
                            PackageKind::Npm,
                            name.as_str(),
                            version.as_str(),
                        ));
                    }
                }
                stack.push(entry.dependencies);
            }
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}
