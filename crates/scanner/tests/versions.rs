//! Version order per ecosystem, checked against each ecosystem's own tool.
//!
//! The tables under `tests/data/versions/` list, for a set of versions per
//! ecosystem, how the real tool orders every pair (`generate.py` there
//! regenerates them from dpkg, rpm, packaging, npm's semver, Go's
//! x/mod/semver, Maven's ComparableVersion, RubyGems and Composer). Two
//! tables are written by hand because their tools are not packaged here
//! (apk-tools, NuGet); their headers say where their facts come from.
//! Cargo's order is checked live against the `semver` crate Cargo uses.

use std::cmp::Ordering;
use std::path::Path;

use berth_scanner::version::Scheme;

struct Table {
    invalid: Vec<String>,
    pairs: Vec<(String, Ordering, String)>,
}

fn load(name: &str) -> Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/versions")
        .join(format!("{name}.tsv"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut table = Table {
        invalid: Vec::new(),
        pairs: Vec::new(),
    };
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["invalid", version] => table.invalid.push(version.to_string()),
            [a, op, b] => {
                let order = match *op {
                    "<" => Ordering::Less,
                    "=" => Ordering::Equal,
                    ">" => Ordering::Greater,
                    other => panic!("{name}: bad operator {other:?}"),
                };
                table.pairs.push((a.to_string(), order, b.to_string()));
            }
            _ => panic!("{name}: bad line {line:?}"),
        }
    }
    assert!(!table.pairs.is_empty(), "{name}: empty table");
    table
}

/// Checks every pair both ways round, and that the versions the tool
/// refuses are refused (for schemes that can refuse).
fn check(name: &str, scheme: Scheme) {
    let table = load(name);
    let mut failures = Vec::new();
    for (a, expected, b) in &table.pairs {
        let got = scheme.compare(a, b);
        if got != Some(*expected) {
            failures.push(format!("{a} {expected:?} {b}: got {got:?}"));
        }
        let reverse = scheme.compare(b, a);
        if reverse != Some(expected.reverse()) {
            failures.push(format!("{b} {:?} {a}: got {reverse:?}", expected.reverse()));
        }
    }
    for version in &table.invalid {
        // OSV writes Go versions without the `v` that Go requires; the
        // scanner accepts both spellings on purpose.
        if scheme == Scheme::Go && scheme.compare(&format!("v{version}"), "v1.0.0").is_some() {
            continue;
        }
        if let Some(order) = scheme.compare(version, "1.0.0") {
            failures.push(format!(
                "{version} is invalid for the tool, but compared {order:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} pairs differ from the tool:\n{}",
        failures.len(),
        table.pairs.len(),
        failures.join("\n")
    );
}

#[test]
fn dpkg_matches_dpkg_compare_versions() {
    check("dpkg", Scheme::Dpkg);
}

#[test]
fn rpm_matches_rpm_vercmp() {
    check("rpm", Scheme::Rpm);
}

#[test]
fn pep440_matches_packaging() {
    check("pep440", Scheme::Pep440);
}

#[test]
fn npm_matches_node_semver() {
    check("npm", Scheme::Npm);
}

#[test]
fn go_matches_x_mod_semver() {
    check("go", Scheme::Go);
}

#[test]
fn maven_matches_comparable_version() {
    check("maven", Scheme::Maven);
}

#[test]
fn rubygems_matches_gem_version() {
    check("rubygems", Scheme::RubyGems);
}

#[test]
fn composer_matches_composer_semver() {
    check("composer", Scheme::Composer);
}

#[test]
fn apk_follows_alpine_rules() {
    check("apk", Scheme::Apk);
}

#[test]
fn nuget_follows_nuget_precedence() {
    check("nuget", Scheme::NuGet);
}

/// Cargo orders crate versions with the `semver` crate's precedence; every
/// version of the npm and Go lists that Cargo accepts is compared with
/// every other both ways.
#[test]
fn cargo_matches_the_semver_crate() {
    let mut versions: Vec<String> = Vec::new();
    for name in ["npm", "go"] {
        let table = load(name);
        for (a, _, b) in table.pairs {
            versions.push(a);
            versions.push(b);
        }
    }
    versions.extend(["0.2.54", "1.0.130", "1.0.0-alpha.1", "1.0.0-alpha.beta"].map(String::from));
    versions.sort();
    versions.dedup();
    let mut checked = 0;
    for a in &versions {
        for b in &versions {
            let oracle = match (semver::Version::parse(a), semver::Version::parse(b)) {
                (Ok(x), Ok(y)) => Some(x.cmp_precedence(&y)),
                _ => None,
            };
            assert_eq!(Scheme::Cargo.compare(a, b), oracle, "{a} vs {b}");
            checked += usize::from(oracle.is_some());
        }
    }
    assert!(
        checked > 400,
        "only {checked} pairs were valid Cargo versions"
    );
}
