//! npm packages: every `node_modules/NAME/package.json` and
//! `node_modules/@SCOPE/NAME/package.json` (installed packages, global or
//! local), and `package-lock.json` files outside `node_modules` (an
//! application's locked tree, lockfile versions 1 to 3). Development
//! dependencies of a lockfile are left out: they are not installed in a
//! production image (`npm ci --omit=dev`), and including them would report
//! packages the image does not have.

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
        let json: Value = serde_json::from_slice(data)
            .map_err(|e| AnalyzeError::malformed(format!("not JSON: {e}")))?;
        if path.ends_with("package-lock.json") {
            return Ok(packages(lockfile(&json)));
        }
        let name = json.get("name").and_then(Value::as_str);
        let version = json.get("version").and_then(Value::as_str);
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

/// The non-development packages of a lockfile.
pub(crate) fn lockfile(json: &Value) -> Vec<Package> {
    let mut found = Vec::new();
    if let Some(entries) = json.get("packages").and_then(Value::as_object) {
        // Lockfile v2 and v3: keys are install paths.
        for (key, entry) in entries {
            let Some(install_path) = key.rsplit_once("node_modules/").map(|(_, name)| name) else {
                continue;
            };
            if is_dev(entry) || entry.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(install_path);
            if let Some(version) = entry.get("version").and_then(Value::as_str) {
                found.push(Package::new(PackageKind::Npm, name, version));
            }
        }
    } else if let Some(dependencies) = json.get("dependencies").and_then(Value::as_object) {
        // Lockfile v1: nested `dependencies`, bounded by the JSON itself.
        let mut stack: Vec<&serde_json::Map<String, Value>> = vec![dependencies];
        while let Some(level) = stack.pop() {
            for (name, entry) in level {
                if is_dev(entry) {
                    continue;
                }
                if let Some(version) = entry.get("version").and_then(Value::as_str) {
                    // `file:` and `git+` versions are not registry versions.
                    if !version.contains(':') {
                        found.push(Package::new(PackageKind::Npm, name.as_str(), version));
                    }
                }
                if let Some(nested) = entry.get("dependencies").and_then(Value::as_object) {
                    stack.push(nested);
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn is_dev(entry: &Value) -> bool {
    entry.get("dev").and_then(Value::as_bool) == Some(true)
}
