//! OSV records and assessment: parsing (JSON, YAML, `all.zip`), the
//! incremental store, CVSS base scores, and matching against
//! release-qualified and language ecosystems with the records under
//! `tests/data/osv/` (facts of published advisories; see its README).

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_scanner::osv;
use berth_scanner::{
    assess, assess_with, Advisory, AdvisoryIndex, AdvisorySource, Change, Distribution,
    IndexReport, Package, PackageKind, SeverityLevel,
};
use support::{index, report, require_path, LayerBuilder};

fn data(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/osv")
        .join(dir)
}

/// Every record of a directory, parsed.
fn records(dir: &str) -> Vec<Advisory> {
    let mut out = Vec::new();
    osv::read_path(&data(dir), |name, result| {
        out.push(result.unwrap_or_else(|e| panic!("{name}: {e}")));
    })
    .expect("read the records");
    out
}

fn store(dirs: &[&str]) -> AdvisoryIndex {
    let mut index = AdvisoryIndex::new();
    for dir in dirs {
        for advisory in records(dir) {
            assert_eq!(index.upsert(advisory), Change::Added);
        }
    }
    index
}

#[test]
fn records_parse_in_every_format() {
    let pypi = records("pypi");
    let crates = records("crates");
    let alma = records("almalinux");
    let npm = records("npm");
    assert_eq!(
        (pypi.len(), crates.len(), alma.len(), npm.len()),
        (24, 32, 33, 3)
    );

    // GIT ranges are dropped; ECOSYSTEM and SEMVER ranges kept.
    let requests = pypi
        .iter()
        .find(|a| a.id == "PYSEC-2018-28")
        .expect("PYSEC-2018-28");
    assert_eq!(requests.aliases, ["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"]);
    assert_eq!(requests.affected[0].ranges.len(), 1);
    assert_eq!(
        requests.affected[0].ranges[0].kind,
        berth_scanner::RangeKind::Ecosystem
    );
    let smallvec = crates
        .iter()
        .find(|a| a.id == "RUSTSEC-2019-0009")
        .expect("RUSTSEC-2019-0009");
    assert_eq!(
        smallvec.affected[0].ranges[0].kind,
        berth_scanner::RangeKind::Semver
    );
    // Release-qualified ecosystems are split.
    let alsa = alma
        .iter()
        .find(|a| a.id == "ALSA-2024:6783")
        .expect("ALSA-2024:6783");
    assert_eq!(
        (
            alsa.affected[0].ecosystem.as_str(),
            alsa.affected[0].release.as_deref()
        ),
        ("AlmaLinux", Some("9"))
    );
    // Severities: CVSS scores computed; words where there is no vector.
    let score = |a: &Advisory| a.severity.as_ref().and_then(|s| s.score);
    assert_eq!(score(smallvec), Some(9.8));
    assert_eq!(
        alsa.severity.as_ref().map(|s| s.level),
        Some(SeverityLevel::Medium)
    );
    let minimist = npm
        .iter()
        .find(|a| a.id == "GHSA-xvch-5gv4-984h")
        .expect("minimist");
    assert_eq!(score(minimist), Some(9.8));

    // The same records from an all.zip archive, as osv.dev publishes them.
    let mut zip_bytes = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut zip_bytes);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for entry in std::fs::read_dir(data("crates")).expect("list the records") {
            let path = entry.expect("an entry").path();
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            zip.start_file(name, options).expect("start a zip entry");
            zip.write_all(&std::fs::read(&path).expect("read a record"))
                .expect("write a zip entry");
        }
        zip.finish().expect("finish the zip");
    }
    let mut from_zip = Vec::new();
    osv::read_zip(
        std::io::Cursor::new(zip_bytes.into_inner()),
        |name, result| {
            from_zip.push(result.unwrap_or_else(|e| panic!("{name}: {e}")));
        },
    )
    .expect("read the zip");
    from_zip.sort_by(|a, b| a.id.cmp(&b.id));
    let mut from_files = crates;
    from_files.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(from_zip, from_files);
}

#[test]
fn malformed_records_are_refused() {
    for (json, why) in [
        (r#"{"id": "X-1"}"#, "no modified"),
        (
            r#"{"id": "", "modified": "2024-01-01T00:00:00Z"}"#,
            "empty id",
        ),
        (r#"{"id": "X-1", "modified": "yesterday"}"#, "bad timestamp"),
        (
            r#"{"id": "X-1", "modified": "2024-01-01T00:00:00Z", "affected": "no"}"#,
            "affected not a list",
        ),
        ("[1, 2", "not JSON"),
    ] {
        assert!(osv::parse_json(json.as_bytes()).is_err(), "{why}");
    }
    assert!(osv::parse_yaml(b"id: [unclosed").is_err());
}

/// Base scores of the CVSS specifications' own examples: v3.1 from the
/// "CVSS v3.1 Examples" document, v4.0 from FIRST's calculator.
#[test]
fn cvss_base_scores() {
    for (vector, score, level) in [
        (
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N",
            6.1,
            SeverityLevel::Medium,
        ), // CVE-2013-1937
        (
            "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N",
            6.4,
            SeverityLevel::Medium,
        ), // CVE-2013-0375
        (
            "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N",
            3.1,
            SeverityLevel::Low,
        ), // CVE-2014-3566
        (
            "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H",
            9.9,
            SeverityLevel::Critical,
        ), // CVE-2012-1516
        (
            "CVSS:3.1/AV:L/AC:L/PR:H/UI:N/S:U/C:L/I:L/A:L",
            4.2,
            SeverityLevel::Medium,
        ), // CVE-2009-0783
        (
            "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
            8.8,
            SeverityLevel::High,
        ), // CVE-2012-0384
        (
            "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H",
            7.8,
            SeverityLevel::High,
        ), // CVE-2015-1098
        (
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
            7.5,
            SeverityLevel::High,
        ), // CVE-2014-0160
        (
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            9.8,
            SeverityLevel::Critical,
        ), // CVE-2014-6271
        (
            "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:C/C:N/I:H/A:N",
            6.8,
            SeverityLevel::Medium,
        ), // CVE-2008-1447
        (
            "CVSS:3.1/AV:P/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            6.8,
            SeverityLevel::Medium,
        ), // CVE-2014-2005
        (
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:L/I:N/A:N",
            5.8,
            SeverityLevel::Medium,
        ), // CVE-2010-0467
        (
            "CVSS:3.1/AV:A/AC:L/PR:N/UI:N/S:C/C:N/I:H/A:N",
            7.4,
            SeverityLevel::High,
        ), // adjacent, scope changed
        (
            "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            9.8,
            SeverityLevel::Critical,
        ),
        (
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            9.3,
            SeverityLevel::Critical,
        ),
        (
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H",
            10.0,
            SeverityLevel::Critical,
        ),
        (
            "CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            8.5,
            SeverityLevel::High,
        ),
    ] {
        let severity = osv::cvss_score(vector).unwrap_or_else(|| panic!("{vector} did not parse"));
        assert_eq!(
            (severity.score, severity.level),
            (Some(score), level),
            "{vector}"
        );
    }
    for bad in [
        "CVSS:3.1/AV:X",
        "AV:N/AC:L/Au:N/C:P/I:P/A:P",
        "CVSS:4.0/AV:N",
    ] {
        assert!(osv::cvss_score(bad).is_none(), "{bad}");
    }
}

#[test]
fn incremental_updates_and_withdrawals() {
    let base = |modified: &str, withdrawn: Option<&str>, fixed: &str| {
        let mut json = serde_json::json!({
            "id": "GHSA-test-0001",
            "modified": modified,
            "affected": [{"package": {"ecosystem": "npm", "name": "left-pad"},
                          "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
        });
        if let Some(w) = withdrawn {
            json["withdrawn"] = serde_json::json!(w);
        }
        osv::parse_json(json.to_string().as_bytes()).expect("a valid record")
    };
    let image = IndexReport {
        packages: vec![Package {
            purl: "pkg:npm/left-pad@1.1.0".into(),
            location: "app/node_modules/left-pad/package.json".into(),
            ..Package::new(PackageKind::Npm, "left-pad", "1.1.0")
        }],
        ..Default::default()
    };
    let mut store = AdvisoryIndex::new();
    let fixed = |store: &AdvisoryIndex| -> Vec<Option<String>> {
        let advisories: Vec<Arc<Advisory>> =
            store.lookup(&[berth_scanner::PackageKey::new("npm", "left-pad")]);
        assess_with(&image, &advisories)
            .into_iter()
            .map(|f| f.fixed_version)
            .collect()
    };
    assert_eq!(fixed(&store), Vec::<Option<String>>::new());
    assert_eq!(
        store.upsert(base("2024-01-01T00:00:00Z", None, "1.0.0")),
        Change::Added
    );
    assert_eq!(fixed(&store), Vec::<Option<String>>::new());
    // A newer version of the record changes the verdict without re-indexing.
    assert_eq!(
        store.upsert(base("2024-02-01T00:00:00Z", None, "1.3.0")),
        Change::Updated
    );
    assert_eq!(fixed(&store), vec![Some("1.3.0".to_string())]);
    // An older one changes nothing.
    assert_eq!(
        store.upsert(base("2023-12-01T00:00:00Z", None, "1.0.0")),
        Change::Unchanged
    );
    assert_eq!(fixed(&store), vec![Some("1.3.0".to_string())]);
    // Withdrawn: gone.
    assert_eq!(
        store.upsert(base(
            "2024-03-01T00:00:00Z",
            Some("2024-03-01T00:00:00Z"),
            "1.3.0"
        )),
        Change::Removed
    );
    assert_eq!(fixed(&store), Vec::<Option<String>>::new());
    assert!(store.is_empty());
}

/// A synthetic AlmaLinux 9 image (the rpm databases themselves are tested
/// in `tests/rpm.rs`) against every AlmaLinux 9 advisory naming its
/// packages, and the same packages on AlmaLinux 8.
#[tokio::test]
async fn almalinux_release_qualified_matching() {
    let store = store(&["almalinux"]);
    let image = |version: &str| IndexReport {
        distribution: Some(Distribution {
            id: "almalinux".into(),
            version_id: Some(version.into()),
            ..Default::default()
        }),
        packages: [
            ("openssl-libs", "1:3.0.7-27.el9"),
            ("bash", "5.1.8-6.el9_1"),
            ("glibc", "2.34-100.el9_4.2"),
        ]
        .into_iter()
        .map(|(name, version)| Package {
            location: "var/lib/rpm/rpmdb.sqlite".into(),
            ..Package::new(PackageKind::Rpm, name, version)
        })
        .collect(),
        ..Default::default()
    };
    // Worked out with rpm's own rpm.vercmp (see tests/data/osv/README.md).
    let expected: BTreeSet<(String, String, String)> = [
        ("ALSA-2024:6783", "openssl-libs", "1:3.0.7-28.el9_4"),
        ("ALSA-2024:9333", "openssl-libs", "1:3.2.2-6.el9_5"),
        ("ALSA-2025:1330", "openssl-libs", "1:3.2.2-6.el9_5.1"),
        ("ALSA-2025:21255", "openssl-libs", "1:3.5.1-4.el9_7"),
        ("ALSA-2025:4244", "glibc", "2.34-125.el9_5.8.alma.1"),
        ("ALSA-2025:8655", "glibc", "2.34-168.el9_6.19"),
        ("ALSA-2025:9877", "glibc", "2.34-168.el9_6.20"),
        ("ALSA-2026:1473", "openssl-libs", "1:3.5.1-7.el9_7"),
        ("ALSA-2026:19218", "openssl-libs", "1:3.5.5-2.el9_8"),
        ("ALSA-2026:20597", "glibc", "2.34-270.el9_8"),
        ("ALSA-2026:22312", "openssl-libs", "1:3.5.5-3.el9_8"),
        ("ALSA-2026:25239", "openssl-libs", "1:3.5.5-4.el9_8"),
        ("ALSA-2026:2786", "glibc", "2.34-231.el9_7.10"),
        ("ALSA-2026:33226", "glibc", "2.34-272.el9_8"),
        ("ALSA-2026:42952", "glibc", "2.34-274.el9_8"),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    let findings = assess(&image("9.4"), &store).await.expect("assess");
    let found: BTreeSet<(String, String, String)> = findings
        .iter()
        .map(|f| {
            (
                f.advisory.clone(),
                f.package.name.clone(),
                f.fixed_version.clone().unwrap_or_default(),
            )
        })
        .collect();
    let score = report("AlmaLinux 9 findings (rpm.vercmp)", &expected, &found);
    assert_eq!((score.precision(), score.recall()), (1.0, 1.0));
    // Every AlmaLinux erratum names its CVEs among the related ids.
    assert!(findings
        .iter()
        .all(|f| f.aliases.iter().any(|a| a.starts_with("CVE-"))));
    // The same packages on AlmaLinux 8: no AlmaLinux 9 advisory applies,
    // and the AlmaLinux 8 ones name versions these packages are above.
    let on_8 = assess(&image("8.9"), &store).await.expect("assess");
    assert!(
        on_8.iter()
            .all(|f| !expected.iter().any(|(id, _, _)| id == &f.advisory)),
        "{on_8:?}"
    );
    // An unknown distribution gets no OS findings at all.
    let mut unknown = image("9.4");
    unknown.distribution = Some(Distribution {
        id: "plan9".into(),
        ..Default::default()
    });
    assert!(assess(&unknown, &store).await.expect("assess").is_empty());
}

/// go-dep-parser's `cargo_many.lock` against every RustSec advisory naming
/// one of its crates (SEMVER ranges).
#[tokio::test]
async fn rustsec_advisories_against_a_cargo_lock() {
    let test = "advisories::rustsec_advisories_against_a_cargo_lock";
    let Some(lock) = require_path(
        "/usr/share/gocode/src/github.com/aquasecurity/go-dep-parser/pkg/rust/cargo/testdata/cargo_many.lock",
        "golang-github-aquasecurity-go-dep-parser-dev",
        test,
    ) else {
        return;
    };
    let layer = LayerBuilder::new()
        .file(
            "src/app/Cargo.lock",
            &std::fs::read(lock).expect("read the lock"),
        )
        .gzip();
    let (_, image) = index(&[layer]);
    let store = store(&["crates"]);
    let findings = assess(&image, &store).await.expect("assess");
    // Worked out from the records' events in SemVer order.
    let expected: BTreeSet<(String, String, String, String)> = [
        ("RUSTSEC-2018-0018", "smallvec", "0.6.9", "0.6.13"),
        ("RUSTSEC-2019-0009", "smallvec", "0.6.9", "0.6.10"),
        ("RUSTSEC-2019-0012", "smallvec", "0.6.9", "0.6.10"),
        ("RUSTSEC-2019-0035", "rand_core", "0.4.0", "0.4.2"),
        ("RUSTSEC-2020-0027", "traitobject", "0.1.0", ""),
        ("RUSTSEC-2020-0028", "rocket", "0.4.0", "0.4.5"),
        ("RUSTSEC-2020-0071", "time", "0.1.42", "0.2.0"),
        ("RUSTSEC-2020-0146", "generic-array", "0.12.0", "0.12.4"),
        ("RUSTSEC-2021-0003", "smallvec", "0.6.9", "0.6.14"),
        ("RUSTSEC-2021-0044", "rocket", "0.4.0", "0.4.7"),
        ("RUSTSEC-2021-0078", "hyper", "0.10.16", "0.14.10"),
        ("RUSTSEC-2021-0079", "hyper", "0.10.16", "0.14.10"),
        ("RUSTSEC-2021-0144", "traitobject", "0.1.0", ""),
        ("RUSTSEC-2022-0006", "thread_local", "0.3.6", "1.1.4"),
        ("RUSTSEC-2022-0013", "regex", "1.1.6", "1.5.5"),
        ("RUSTSEC-2022-0022", "hyper", "0.10.16", "0.14.12"),
        ("RUSTSEC-2023-0081", "safemem", "0.3.0", ""),
        ("RUSTSEC-2024-0421", "idna", "0.1.5", "1.0.0"),
        ("RUSTSEC-2025-0009", "ring", "0.13.5", "0.17.12"),
        ("RUSTSEC-2025-0010", "ring", "0.13.5", "0.17.0"),
        ("RUSTSEC-2025-0124", "rand_os", "0.1.3", ""),
    ]
    .into_iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
    .collect();
    let found: BTreeSet<(String, String, String, String)> = findings
        .iter()
        .map(|f| {
            (
                f.advisory.clone(),
                f.package.name.clone(),
                f.package.version.clone(),
                f.fixed_version.clone().unwrap_or_default(),
            )
        })
        .collect();
    let score = report("RustSec findings for cargo_many.lock", &expected, &found);
    assert_eq!((score.precision(), score.recall()), (1.0, 1.0));
    // Findings come in a stable order: by package, then advisory.
    let order: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| (f.package.name.as_str(), f.advisory.as_str()))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    // The data version moves with every change.
    let version = store.data_version().await.expect("a version");
    assert!(!version.is_empty());
}

/// Go's standard library and modules: OSV writes `1.21.5`, binaries
/// `v1.21.3`; Maven names are `group:artifact`; PyPI names normalize.
#[test]
fn language_ecosystem_names_and_versions() {
    let record = |ecosystem: &str, name: &str, kind: &str, introduced: &str, fixed: &str| {
        osv::parse_json(
            serde_json::json!({
                "id": format!("TEST-{ecosystem}-{name}"),
                "modified": "2024-01-01T00:00:00Z",
                "affected": [{"package": {"ecosystem": ecosystem, "name": name},
                              "ranges": [{"type": kind, "events": [{"introduced": introduced}, {"fixed": fixed}]}]}],
            })
            .to_string()
            .as_bytes(),
        )
        .expect("a record")
    };
    let advisories: Vec<Arc<Advisory>> = vec![
        record("Go", "stdlib", "SEMVER", "1.21.0-0", "1.21.5"),
        record("Go", "golang.org/x/net", "SEMVER", "0", "0.17.0"),
        record(
            "Maven",
            "org.apache.logging.log4j:log4j-core",
            "ECOSYSTEM",
            "2.0-beta9",
            "2.15.0",
        ),
        record("PyPI", "PyYAML", "ECOSYSTEM", "0", "5.4"),
        record("NuGet", "newtonsoft.json", "ECOSYSTEM", "0", "13.0.1"),
        record("RubyGems", "rack", "ECOSYSTEM", "2.0.0", "2.2.6.3"),
        record(
            "Packagist",
            "symfony/http-kernel",
            "ECOSYSTEM",
            "4.0.0",
            "4.4.50",
        ),
    ]
    .into_iter()
    .map(Arc::new)
    .collect();
    let package = |kind, name: &str, version: &str| Package {
        location: "x".into(),
        ..Package::new(kind, name, version)
    };
    let image = IndexReport {
        packages: vec![
            package(PackageKind::Go, "stdlib", "v1.21.3"),
            package(
                PackageKind::Go,
                "golang.org/x/net",
                "v0.0.0-20210226172049-e18ecbb05110",
            ),
            package(PackageKind::Go, "golang.org/x/net", "v0.17.0"),
            package(
                PackageKind::Maven,
                "org.apache.logging.log4j:log4j-core",
                "2.14.1",
            ),
            package(
                PackageKind::Maven,
                "org.apache.logging.log4j:log4j-core",
                "2.17.1",
            ),
            package(PackageKind::Python, "pyyaml", "5.3.1"),
            package(PackageKind::NuGet, "Newtonsoft.Json", "12.0.3"),
            package(PackageKind::Gem, "rack", "2.2.6.2"),
            package(PackageKind::Composer, "symfony/http-kernel", "v4.4.49"),
        ],
        ..Default::default()
    };
    let found: BTreeSet<(String, String)> = assess_with(&image, &advisories)
        .into_iter()
        .map(|f| (f.package.name, f.package.version))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("stdlib", "v1.21.3"),
        ("golang.org/x/net", "v0.0.0-20210226172049-e18ecbb05110"),
        ("org.apache.logging.log4j:log4j-core", "2.14.1"),
        ("pyyaml", "5.3.1"),
        ("Newtonsoft.Json", "12.0.3"),
        ("rack", "2.2.6.2"),
        ("symfony/http-kernel", "v4.4.49"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(found, expected);
}
