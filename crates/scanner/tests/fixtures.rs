//! Package detection against other tools' fixtures and their expected
//! lists, read from the installed Go test files at test time:
//!
//! - the lockfiles, metadata files, Java archives and Go binaries of
//!   Debian's `golang-github-aquasecurity-go-dep-parser-dev` (Trivy's
//!   former dependency parser), with the lists its tests expect;
//! - the BerkeleyDB rpm databases of `golang-github-knqyf263-go-rpmdb-dev`,
//!   with the `rpm -qa` lists its tests expect.
//!
//! Each fixture is put at a path its analyzer reads, in a layer, and the
//! whole indexer runs on it. Precision and recall are printed per fixture
//! (`SCORE` lines) and required to be 1.0, except where a line says why.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use berth_scanner::PackageKind;
use support::{go_var, go_want, index, report, require_path, LayerBuilder, Score};

const DEP_PARSER: &str = "/usr/share/gocode/src/github.com/aquasecurity/go-dep-parser/pkg";
const RPMDB: &str = "/usr/share/gocode/src/github.com/knqyf263/go-rpmdb/pkg";

/// One fixture: where it comes from, where it goes in the layer, and how
/// its expectations are found.
struct Case {
    /// The Go package directory under go-dep-parser's `pkg`.
    package: &'static str,
    /// The fixture, relative to the package directory.
    fixture: &'static str,
    /// Where the fixture is put in the layer.
    layer_path: &'static str,
    executable: bool,
    kind: PackageKind,
}

const CASES: &[Case] = &[
    case(
        "nodejs/npm",
        "testdata/package-lock_normal.json",
        "srv/a/package-lock.json",
        PackageKind::Npm,
    ),
    case(
        "nodejs/npm",
        "testdata/package-lock_react.json",
        "srv/b/package-lock.json",
        PackageKind::Npm,
    ),
    case(
        "nodejs/npm",
        "testdata/package-lock_with_dev.json",
        "srv/c/package-lock.json",
        PackageKind::Npm,
    ),
    case(
        "nodejs/npm",
        "testdata/package-lock_many.json",
        "srv/d/package-lock.json",
        PackageKind::Npm,
    ),
    case(
        "nodejs/npm",
        "testdata/package-lock_nested.json",
        "srv/e/package-lock.json",
        PackageKind::Npm,
    ),
    case(
        "rust/cargo",
        "testdata/cargo_normal.lock",
        "src/a/Cargo.lock",
        PackageKind::Cargo,
    ),
    case(
        "rust/cargo",
        "testdata/cargo_many.lock",
        "src/b/Cargo.lock",
        PackageKind::Cargo,
    ),
    case(
        "rust/cargo",
        "testdata/cargo_nickel.lock",
        "src/c/Cargo.lock",
        PackageKind::Cargo,
    ),
    case(
        "php/composer",
        "testdata/composer_normal.lock",
        "var/www/a/composer.lock",
        PackageKind::Composer,
    ),
    case(
        "php/composer",
        "testdata/composer_laravel.lock",
        "var/www/b/composer.lock",
        PackageKind::Composer,
    ),
    case(
        "php/composer",
        "testdata/composer_symfony.lock",
        "var/www/c/composer.lock",
        PackageKind::Composer,
    ),
    case(
        "php/composer",
        "testdata/composer_with_dev.lock",
        "var/www/d/composer.lock",
        PackageKind::Composer,
    ),
    case(
        "python/packaging",
        "testdata/setuptools-51.3.3-py3.8.egg-info.PKG-INFO",
        "usr/lib/python3.8/site-packages/setuptools-51.3.3-py3.8.egg-info/PKG-INFO",
        PackageKind::Python,
    ),
    case(
        "python/packaging",
        "testdata/distlib-0.3.1-py3.9.egg-info",
        "usr/lib/python3.9/site-packages/distlib-0.3.1-py3.9.egg-info",
        PackageKind::Python,
    ),
    case(
        "python/packaging",
        "testdata/simple-0.1.0.METADATA",
        "usr/lib/python3/dist-packages/simple-0.1.0.dist-info/METADATA",
        PackageKind::Python,
    ),
    case(
        "python/packaging",
        "testdata/distlib-0.3.1.METADATA",
        "usr/local/lib/python3.9/site-packages/distlib-0.3.1.dist-info/METADATA",
        PackageKind::Python,
    ),
    case(
        "ruby/gemspec",
        "testdata/normal00.gemspec",
        "usr/lib/ruby/gems/3.0.0/specifications/rake-13.0.3.gemspec",
        PackageKind::Gem,
    ),
    case(
        "ruby/gemspec",
        "testdata/normal01.gemspec",
        "usr/local/bundle/specifications/async-1.25.0.gemspec",
        PackageKind::Gem,
    ),
    case(
        "ruby/gemspec",
        "testdata/license.gemspec",
        "opt/gems/specifications/async-1.25.0.gemspec",
        PackageKind::Gem,
    ),
    case(
        "ruby/gemspec",
        "testdata/multiple_licenses.gemspec",
        "usr/lib/ruby/gems/3.0.0/specifications/test-unit-3.3.7.gemspec",
        PackageKind::Gem,
    ),
    case(
        "java/jar",
        "testdata/maven.war",
        "usr/local/tomcat/webapps/maven.war",
        PackageKind::Maven,
    ),
    case(
        "java/jar",
        "testdata/gradle.war",
        "usr/local/tomcat/webapps/gradle.war",
        PackageKind::Maven,
    ),
    case(
        "java/jar",
        "testdata/hadoop-shaded-guava-1.1.0-SNAPSHOT.jar",
        "opt/hadoop/lib/hadoop-shaded-guava-1.1.0-SNAPSHOT.jar",
        PackageKind::Maven,
    ),
    executable(
        "golang/binary",
        "testdata/test.elf",
        "usr/local/bin/test-elf",
        PackageKind::Go,
    ),
    executable(
        "golang/binary",
        "testdata/replace.elf",
        "usr/local/bin/replace-elf",
        PackageKind::Go,
    ),
    executable(
        "golang/binary",
        "testdata/test.exe",
        "usr/local/bin/test.exe",
        PackageKind::Go,
    ),
    executable(
        "golang/binary",
        "testdata/test.macho",
        "usr/local/bin/test-macho",
        PackageKind::Go,
    ),
];

const fn case(
    package: &'static str,
    fixture: &'static str,
    layer_path: &'static str,
    kind: PackageKind,
) -> Case {
    Case {
        package,
        fixture,
        layer_path,
        executable: false,
        kind,
    }
}

const fn executable(
    package: &'static str,
    fixture: &'static str,
    layer_path: &'static str,
    kind: PackageKind,
) -> Case {
    Case {
        package,
        fixture,
        layer_path,
        executable: true,
        kind,
    }
}

/// The Go test file of a package.
fn test_file(package: &str) -> PathBuf {
    let dir = Path::new(DEP_PARSER).join(package);
    for name in ["parse_test.go", "binary_test.go"] {
        if dir.join(name).exists() {
            return dir.join(name);
        }
    }
    panic!("no test file in {}", dir.display())
}

#[test]
fn go_dep_parser_fixtures() {
    let test = "fixtures::go_dep_parser_fixtures";
    if require_path(
        DEP_PARSER,
        "golang-github-aquasecurity-go-dep-parser-dev",
        test,
    )
    .is_none()
    {
        return;
    }
    // All fixtures in one layer: every analyzer must also leave the
    // others' files alone.
    let mut layer = LayerBuilder::new();
    for case in CASES {
        let data = std::fs::read(Path::new(DEP_PARSER).join(case.package).join(case.fixture))
            .expect("read a fixture");
        layer = if case.executable {
            layer.executable(case.layer_path, &data)
        } else {
            layer.file(case.layer_path, &data)
        };
    }
    let (layers, report_) = index(&[layer.gzip()]);
    assert!(layers[0].problems.is_empty(), "{:?}", layers[0].problems);

    let mut total = Score::of::<()>(&BTreeSet::new(), &BTreeSet::new());
    for case in CASES {
        let expected: BTreeSet<(String, String)> = go_want(&test_file(case.package), case.fixture)
            .into_iter()
            .map(|e| {
                (
                    e.get("Name", 0).expect("a name").to_string(),
                    e.get("Version", 1).expect("a version").to_string(),
                )
            })
            .collect();
        let found: BTreeSet<(String, String)> = report_
            .packages
            .iter()
            .filter(|p| {
                p.location == case.layer_path
                    || p.location.starts_with(&format!("{}!/", case.layer_path))
            })
            .inspect(|p| assert_eq!(p.kind, case.kind, "{p:?}"))
            // The standard library is reported as a package (Go's
            // vulnerability database names it); go-dep-parser's lists
            // predate that.
            .filter(|p| p.name != "stdlib")
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        let score = report(case.fixture, &expected, &found);
        assert_eq!(
            (score.precision(), score.recall()),
            (1.0, 1.0),
            "{}",
            case.fixture
        );
        total = total.add(score);
    }
    eprintln!("SCORE go-dep-parser fixtures, all: {total}");

    // The Go binaries also carry their Go version: the standard library.
    let stdlib: Vec<_> = report_
        .packages
        .iter()
        .filter(|p| p.name == "stdlib")
        .collect();
    assert_eq!(stdlib.len(), 4, "{stdlib:?}");
    assert!(stdlib.iter().all(|p| p.version.starts_with("v1.")));
}

/// Files the analyzers must refuse as malformed, with the reason recorded
/// (and nothing invented).
#[test]
fn go_dep_parser_malformed_fixtures() {
    let test = "fixtures::go_dep_parser_malformed_fixtures";
    if require_path(
        DEP_PARSER,
        "golang-github-aquasecurity-go-dep-parser-dev",
        test,
    )
    .is_none()
    {
        return;
    }
    let read = |p: &str| std::fs::read(Path::new(DEP_PARSER).join(p)).expect("read a fixture");
    let layer = LayerBuilder::new()
        .file(
            "usr/lib/ruby/gems/3.0.0/specifications/bad0.gemspec",
            &read("ruby/gemspec/testdata/malformed00.gemspec"),
        )
        .file(
            "usr/lib/ruby/gems/3.0.0/specifications/bad1.gemspec",
            &read("ruby/gemspec/testdata/malformed01.gemspec"),
        )
        .file(
            "usr/lib/python3/dist-packages/bad.dist-info/METADATA",
            &read("python/packaging/testdata/invalid.json"),
        )
        .file(
            "srv/x/package-lock.json",
            &read("nodejs/packagejson/testdata/invalid_package.json"),
        )
        .executable(
            "usr/local/bin/dummy",
            &[read("golang/binary/testdata/dummy"), vec![0; 2048]].concat(),
        )
        .gzip();
    let (layers, report_) = index(&[layer]);
    assert!(report_.packages.is_empty(), "{:?}", report_.packages);
    let bad: BTreeSet<&str> = layers[0]
        .problems
        .iter()
        .filter_map(|p| p.path.as_deref())
        .collect();
    assert_eq!(
        bad,
        BTreeSet::from([
            "usr/lib/ruby/gems/3.0.0/specifications/bad0.gemspec",
            "usr/lib/ruby/gems/3.0.0/specifications/bad1.gemspec",
            "usr/lib/python3/dist-packages/bad.dist-info/METADATA",
            "srv/x/package-lock.json",
        ])
    );
}

#[test]
fn go_rpmdb_berkeley_db_fixtures() {
    let test = "fixtures::go_rpmdb_berkeley_db_fixtures";
    if require_path(RPMDB, "golang-github-knqyf263-go-rpmdb-dev", test).is_none() {
        return;
    }
    let test_go = std::fs::read_to_string(Path::new(RPMDB).join("rpmdb_test.go"))
        .expect("read rpmdb_test.go");
    // The cases of TestPackageList: `file: "testdata/X/Packages", pkgList: Var`.
    let mut cases = Vec::new();
    for chunk in test_go.split("file:").skip(1) {
        let file = chunk.split('"').nth(1).expect("a file");
        let Some(list) = chunk.split("pkgList:").nth(1) else {
            continue;
        };
        let var: String = list
            .trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if file.ends_with("/Packages") && !var.is_empty() {
            cases.push((file.to_string(), var));
        }
    }
    assert!(cases.len() >= 10, "{cases:?}");
    let mut total = Score::of::<()>(&BTreeSet::new(), &BTreeSet::new());
    for (file, var) in cases {
        // PackageInfo literals: {Epoch, Name, Version, Release, Arch,
        // SourceRpm, ...}. Imported signing keys are not packages.
        let expected: BTreeSet<(String, String, String, String)> = go_var(Path::new(RPMDB), &var)
            .into_iter()
            .filter(|e| e.positional[1] != "gpg-pubkey")
            .map(|e| {
                let p = &e.positional;
                let evr = match p[0].as_str() {
                    "0" => format!("{}-{}", p[2], p[3]),
                    epoch => format!("{epoch}:{}-{}", p[2], p[3]),
                };
                let source = p[5].strip_suffix(".src.rpm").unwrap_or(&p[5]).to_string();
                (p[1].clone(), evr, p[4].clone(), source)
            })
            .collect();
        let db = std::fs::read(Path::new(RPMDB).join(&file)).expect("read the database");
        let layer = LayerBuilder::new().file("var/lib/rpm/Packages", &db).gzip();
        let (layers, report_) = index(&[layer]);
        assert!(
            layers[0].problems.is_empty(),
            "{file}: {:?}",
            layers[0].problems
        );
        let found: BTreeSet<(String, String, String, String)> = report_
            .packages
            .iter()
            .map(|p| {
                let source = p
                    .source
                    .as_ref()
                    .map(|s| {
                        let version = s
                            .version
                            .split_once(':')
                            .map_or(s.version.as_str(), |(_, v)| v);
                        format!("{}-{version}", s.name)
                    })
                    .unwrap_or_default();
                (
                    p.name.clone(),
                    p.version.clone(),
                    p.arch.clone().unwrap_or_default(),
                    source,
                )
            })
            .collect();
        let score = report(&file, &expected, &found);
        assert_eq!((score.precision(), score.recall()), (1.0, 1.0), "{file}");
        total = total.add(score);
    }
    eprintln!("SCORE go-rpmdb BerkeleyDB fixtures, all: {total}");
}
