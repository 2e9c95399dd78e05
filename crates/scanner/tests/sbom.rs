//! SBOMs from an index report, checked by the formats' own validators:
//! CycloneDX 1.6 against the official JSON schema (as bundled and applied
//! by CycloneDX's Python library, `cyclonedx-python-lib[json-validation]`)
//! and SPDX 2.3 by the SPDX project's `pyspdxtools` (`spdx-tools`), both
//! from PyPI; plus the references inside each document.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use berth_scanner::sbom::{self, Subject};
use berth_scanner::IndexReport;
use support::{index, missing, LayerBuilder};
use time::macros::datetime;

/// An image with every kind of name the formats split or encode.
fn image() -> IndexReport {
    let layer = LayerBuilder::new()
        .file("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
        .file(
            "var/lib/dpkg/status",
            b"Package: libc6\nStatus: install ok installed\nSource: glibc\nVersion: 2.36-9+deb12u10\nArchitecture: amd64\n\nPackage: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\nArchitecture: amd64\n",
        )
        .file(
            "usr/lib/python3/dist-packages/Jinja2-2.10.dist-info/METADATA",
            b"Name: Jinja2\nVersion: 2.10\n",
        )
        .file("srv/app/node_modules/@babel/core/package.json", br#"{"name": "@babel/core", "version": "7.0.0"}"#)
        .file("srv/app/node_modules/lodash/package.json", br#"{"name": "lodash", "version": "4.17.15"}"#)
        .file(
            "srv/app/package-lock.json",
            br#"{"lockfileVersion": 3, "packages": {"node_modules/lodash": {"version": "4.17.15"}}}"#,
        )
        .file(
            "var/www/composer.lock",
            br#"{"packages": [{"name": "pear/log", "version": "1.13.1"}]}"#,
        )
        .gzip();
    let (_, report) = index(&[layer]);
    assert_eq!(report.packages.len(), 7);
    report
}

fn subject() -> Subject {
    Subject {
        name: "registry.example/team/app:1.0".into(),
        digest: Some(
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        ),
    }
}

#[test]
fn cyclonedx_is_valid_and_complete() {
    let test = "sbom::cyclonedx_is_valid_and_complete";
    let report = image();
    let now = datetime!(2025-05-20 10:11:12.5 UTC);
    let document = sbom::cyclonedx(&report, &subject(), now, "0.1.0");
    // Deterministic: the same report gives the same document.
    assert_eq!(document, sbom::cyclonedx(&report, &subject(), now, "0.1.0"));
    assert_eq!(document["specVersion"], "1.6");
    assert_eq!(document["metadata"]["timestamp"], "2025-05-20T10:11:12Z");

    // References: every bom-ref unique, every dependency known, every
    // package's purl present.
    let components = document["components"].as_array().expect("components");
    assert_eq!(components.len(), report.packages.len() + 1);
    let refs: BTreeSet<&str> = components
        .iter()
        .map(|c| c["bom-ref"].as_str().expect("a bom-ref"))
        .collect();
    assert_eq!(refs.len(), components.len());
    let depends: BTreeSet<&str> = document["dependencies"][0]["dependsOn"]
        .as_array()
        .expect("dependsOn")
        .iter()
        .map(|r| r.as_str().expect("a ref"))
        .collect();
    assert_eq!(depends, refs);
    let purls: BTreeSet<&str> = components
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    for package in &report.packages {
        assert!(purls.contains(package.purl.as_str()), "{}", package.purl);
    }
    let babel = components
        .iter()
        .find(|c| c["name"] == "core")
        .expect("@babel/core");
    assert_eq!(
        (babel["group"].as_str(), babel["purl"].as_str()),
        (Some("@babel"), Some("pkg:npm/%40babel/core@7.0.0"))
    );

    let Some(validation) = python_check(
        test,
        "cyclonedx",
        "import sys\nfrom cyclonedx.schema import SchemaVersion\nfrom cyclonedx.validation.json import JsonStrictValidator\nerror = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\nif error:\n    print(error)\n    sys.exit(1)\n",
        &document,
    ) else {
        return;
    };
    assert!(
        validation.status.success(),
        "{}",
        String::from_utf8_lossy(&validation.stdout)
    );
}

#[test]
fn spdx_is_valid_and_complete() {
    let test = "sbom::spdx_is_valid_and_complete";
    let report = image();
    let document = sbom::spdx(
        &report,
        &subject(),
        datetime!(2025-05-20 10:11:12 UTC),
        "0.1.0",
    );
    let packages = document["packages"].as_array().expect("packages");
    // The image, the operating system, the packages.
    assert_eq!(packages.len(), report.packages.len() + 2);
    let ids: BTreeSet<&str> = packages
        .iter()
        .map(|p| p["SPDXID"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids.len(), packages.len());
    for relationship in document["relationships"].as_array().expect("relationships") {
        let related = relationship["relatedSpdxElement"]
            .as_str()
            .expect("an element");
        assert!(ids.contains(related), "{related}");
    }

    let Some(pyspdxtools) = support::require_tool("pyspdxtools", test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("image.spdx.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&document).expect("serialize"),
    )
    .expect("write the document");
    let validation = Command::new(pyspdxtools)
        .arg("-i")
        .arg(&path)
        .output()
        .expect("run pyspdxtools");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&validation.stdout),
        String::from_utf8_lossy(&validation.stderr)
    );
    assert!(
        validation.status.success() && !output.contains("invalid"),
        "{output}"
    );
}

/// Runs a Python check on a document written to a file; `None` (after a
/// loud skip, or a failure in CI) when the Python module is missing.
fn python_check(
    test: &str,
    module: &str,
    script: &str,
    document: &serde_json::Value,
) -> Option<std::process::Output> {
    let python = support::require_tool("python3", test)?;
    let importable = Command::new(&python)
        .arg("-c")
        .arg(format!("import {module}.validation.json"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !importable {
        missing(
            test,
            "the Python package cyclonedx-python-lib[json-validation]",
        );
        return None;
    }
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("document.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(document).expect("serialize"),
    )
    .expect("write the document");
    Some(
        Command::new(python)
            .arg("-c")
            .arg(script)
            .arg(&path)
            .output()
            .expect("run python"),
    )
}
