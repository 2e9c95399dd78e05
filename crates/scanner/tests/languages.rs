//! Layers with language packages installed by their own tools: pinned old
//! Python packages installed by `pip install --target`, and pinned old npm
//! packages installed by `npm install`, each put in a layer as `COPY`
//! would. Indexing must find what `pip list` and `npm ls` list, and the
//! advisories under `tests/data/osv/` (facts of pypa's and GitHub's
//! records) must give the findings worked out from those records.
//!
//! The installed trees are cached under `target/` (PyPI and npm are
//! reached once).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_scanner::{assess, osv, AdvisoryIndex, PackageKind};
use support::{cache_dir, index, report, require_tool, run, LayerBuilder};

const PYTHON_PINS: &[&str] = &[
    "requests==2.19.0",
    "urllib3==1.23",
    "idna==2.7",
    "chardet==3.0.4",
    "certifi==2018.4.16",
    "Jinja2==2.10",
    "MarkupSafe==2.1.5",
];
const NPM_PINS: &[&str] = &["lodash@4.17.15", "minimist@1.2.5"];

fn python_tree(test: &str) -> Option<PathBuf> {
    let python = require_tool("python3", test)?;
    let dir = cache_dir().join("pip-target-1");
    if dir.join(".done").exists() {
        return Some(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&dir)
        .args(PYTHON_PINS));
    std::fs::write(dir.join(".done"), b"").expect("mark the tree done");
    Some(dir)
}

fn npm_tree(test: &str) -> Option<PathBuf> {
    let npm = require_tool("npm", test)?;
    let dir = cache_dir().join("npm-prefix-1");
    if dir.join(".done").exists() {
        return Some(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the npm prefix");
    std::fs::write(
        dir.join("package.json"),
        br#"{"name": "berth-fixture-app", "version": "1.0.0", "private": true}"#,
    )
    .expect("write package.json");
    run(Command::new(npm)
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--save-exact",
            "--prefix",
        ])
        .arg(&dir)
        .args(NPM_PINS));
    std::fs::write(dir.join(".done"), b"").expect("mark the tree done");
    Some(dir)
}

/// `pip list --path` as (normalized name, version).
fn pip_list(dir: &Path) -> BTreeSet<(String, String)> {
    let out = run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "list",
            "--format",
            "json",
            "--disable-pip-version-check",
            "--path",
        ])
        .arg(dir));
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).expect("pip's JSON");
    list.iter()
        .map(|p| {
            (
                berth_scanner::normalize_pypi_name(p["name"].as_str().expect("a name")),
                p["version"].as_str().expect("a version").to_string(),
            )
        })
        .collect()
}

/// `npm ls --all --json` as (name, version), the whole tree.
fn npm_ls(dir: &Path) -> BTreeSet<(String, String)> {
    let out = run(Command::new("npm")
        .args(["ls", "--all", "--json", "--prefix"])
        .arg(dir));
    let tree: serde_json::Value = serde_json::from_str(&out).expect("npm's JSON");
    let mut found = BTreeSet::new();
    let mut stack = vec![&tree];
    while let Some(node) = stack.pop() {
        if let Some(dependencies) = node.get("dependencies").and_then(|d| d.as_object()) {
            for (name, dependency) in dependencies {
                if let Some(version) = dependency.get("version").and_then(|v| v.as_str()) {
                    found.insert((name.clone(), version.to_string()));
                }
                stack.push(dependency);
            }
        }
    }
    found
}

fn advisories(dirs: &[&str]) -> AdvisoryIndex {
    let mut index = AdvisoryIndex::new();
    for dir in dirs {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/osv")
            .join(dir);
        osv::read_path(&path, |name, result| {
            index.upsert(result.unwrap_or_else(|e| panic!("{name}: {e}")));
        })
        .expect("read the records");
    }
    index
}

#[tokio::test]
async fn pip_and_npm_layers() {
    let test = "languages::pip_and_npm_layers";
    let (Some(python), Some(node)) = (python_tree(test), npm_tree(test)) else {
        return;
    };
    let site = "usr/local/lib/python3.11/site-packages";
    let python_layer = LayerBuilder::new().directory(site, &python).gzip();
    let node_layer = LayerBuilder::new().directory("srv/app", &node).gzip();
    let (layers, image) = index(&[python_layer, node_layer]);
    for layer in &layers {
        assert!(layer.problems.is_empty(), "{:?}", layer.problems);
    }

    // Python packages against pip.
    let expected = pip_list(&python);
    assert_eq!(expected.len(), PYTHON_PINS.len());
    let found: BTreeSet<(String, String)> = image
        .packages
        .iter()
        .filter(|p| p.kind == PackageKind::Python)
        .map(|p| {
            (
                berth_scanner::normalize_pypi_name(&p.name),
                p.version.clone(),
            )
        })
        .collect();
    let score = report("pip --target layer (pip list)", &expected, &found);
    assert_eq!((score.precision(), score.recall()), (1.0, 1.0));
    assert!(image
        .packages
        .iter()
        .filter(|p| p.kind == PackageKind::Python)
        .all(|p| p.layer.as_ref() == Some(&layers[0].layer) && p.location.starts_with(site)));

    // npm packages against npm, from node_modules and from the lockfile.
    let expected = npm_ls(&node);
    assert_eq!(expected.len(), NPM_PINS.len());
    for (what, from_lock) in [("node_modules", false), ("package-lock.json", true)] {
        let found: BTreeSet<(String, String)> = image
            .packages
            .iter()
            .filter(|p| {
                p.kind == PackageKind::Npm && p.location.ends_with("package-lock.json") == from_lock
            })
            .filter(|p| p.name != "berth-fixture-app")
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        let score = report(
            &format!("npm install layer, {what} (npm ls)"),
            &expected,
            &found,
        );
        assert_eq!((score.precision(), score.recall()), (1.0, 1.0));
    }

    // Findings: worked out from the records (tests/data/osv/README.md).
    let store = advisories(&["pypi", "npm"]);
    let findings = assess(&image, &store).await.expect("assess");
    let expected: BTreeSet<(String, String, String)> = [
        ("PYSEC-2018-28", "requests", "2.20.0"),
        ("PYSEC-2023-74", "requests", "2.31.0"),
        ("PYSEC-2019-132", "urllib3", "1.24.3"),
        ("PYSEC-2019-133", "urllib3", "1.24.2"),
        ("PYSEC-2020-148", "urllib3", "1.25.9"),
        ("PYSEC-2021-108", "urllib3", "1.26.5"),
        ("PYSEC-2023-192", "urllib3", "1.26.17"),
        ("PYSEC-2023-207", "urllib3", "1.24.2"),
        ("PYSEC-2023-212", "urllib3", "1.26.18"),
        ("PYSEC-2019-217", "jinja2", "2.10.1"),
        ("PYSEC-2021-66", "jinja2", "2.11.3"),
        ("PYSEC-2022-42986", "certifi", "2022.12.7"),
        ("PYSEC-2023-135", "certifi", "2023.7.22"),
        ("PYSEC-2024-60", "idna", "3.7"),
        ("GHSA-p6mc-m468-83gw", "lodash", "4.17.20"),
        ("GHSA-35jh-r3h4-6jhm", "lodash", "4.17.21"),
        ("GHSA-xvch-5gv4-984h", "minimist", "1.2.6"),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    // npm packages are found twice (installed and locked): one finding
    // each, same advisory.
    let found: BTreeSet<(String, String, String)> = findings
        .iter()
        .map(|f| {
            (
                f.advisory.clone(),
                berth_scanner::normalize_pypi_name(&f.package.name),
                f.fixed_version.clone().unwrap_or_default(),
            )
        })
        .collect();
    let score = report("pip and npm layer findings", &expected, &found);
    assert_eq!((score.precision(), score.recall()), (1.0, 1.0));
    assert_eq!(findings.len(), 14 + 2 * 3);
}
