//! A real Debian image: a bookworm root file system built with
//! `mmdebstrap` from the main archive, tarred into a gzip layer, indexed.
//!
//! - Packages: what indexing finds must be what `dpkg-query` lists from the
//!   same `var/lib/dpkg/status` (name, version, source and source version,
//!   architecture).
//! - Findings: the main archive lags bookworm-security, so some installed
//!   packages have newer versions there. Their `.deb` files (downloaded
//!   with `apt-get download`) carry Debian changelogs naming the CVEs each
//!   version fixes. From those, the test writes OSV-form Debian advisories
//!   (ecosystem `Debian:12`, the **source** package, `fixed` = the version
//!   whose changelog entry names the CVE) and expects one finding per CVE
//!   and installed binary package built from that source, with that fixed
//!   version; CVEs fixed at or below the installed version, and the same
//!   advisories under `Debian:11`, must not match.
//!
//! The root file system is cached under `target/` (building it takes a
//! minute and a half); the `.deb` downloads too.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use berth_scanner::osv;
use berth_scanner::version::dpkg;
use berth_scanner::{AdvisoryIndex, IndexReport, PackageKind};
use support::{cache_dir, digest_of, gzip, missing, report, require_tool, run};

/// Builds (or reuses) the root file system tar.
fn rootfs(test: &str) -> Option<PathBuf> {
    require_tool("mmdebstrap", test)?;
    let path = cache_dir().join("bookworm-minbase.tar");
    if path.exists() {
        return Some(path);
    }
    let partial = cache_dir().join("bookworm-minbase.tar.partial");
    run(Command::new("mmdebstrap")
        .args(["--variant=minbase", "--quiet", "--format=tar", "bookworm"])
        .arg(&partial)
        .arg("deb http://deb.debian.org/debian bookworm main"));
    std::fs::rename(&partial, &path).expect("keep the root file system");
    Some(path)
}

/// One installed package as dpkg-query prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Installed {
    name: String,
    version: String,
    source: String,
    source_version: String,
    arch: String,
}

/// `dpkg-query` over the status file extracted from the tar.
fn dpkg_query(rootfs: &Path, scratch: &Path) -> Vec<Installed> {
    let admin = scratch.join("var/lib/dpkg");
    std::fs::create_dir_all(&admin).expect("create the admin directory");
    run(Command::new("tar")
        .arg("-xf")
        .arg(rootfs)
        .arg("-C")
        .arg(scratch)
        .arg("./var/lib/dpkg/status"));
    run(Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .arg("-W")
        .arg("-f=${Package}\t${Version}\t${source:Package}\t${source:Version}\t${Architecture}\n"))
    .lines()
    .map(|line| {
        let f: Vec<&str> = line.split('\t').collect();
        Installed {
            name: f[0].into(),
            version: f[1].into(),
            source: f[2].into(),
            source_version: f[3].into(),
            arch: f[4].into(),
        }
    })
    .collect()
}

#[test]
fn bookworm_packages_and_security_findings() {
    let test = "debian::bookworm_packages_and_security_findings";
    let Some(rootfs) = rootfs(test) else {
        return;
    };
    for tool in ["dpkg-query", "apt-cache", "apt-get", "dpkg-deb"] {
        if require_tool(tool, test).is_none() {
            return;
        }
    }
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let installed = dpkg_query(&rootfs, scratch.path());
    assert!(installed.len() > 80, "{} packages", installed.len());

    // Index the root file system as a gzip layer (compressed once, kept).
    let compressed = rootfs.with_extension("tar.gz");
    if !compressed.exists() {
        let tar = std::fs::read(&rootfs).expect("read the root file system");
        std::fs::write(&compressed, gzip(&tar)).expect("keep the compressed layer");
    }
    let layer = std::fs::read(&compressed).expect("read the layer");
    let indexer = berth_scanner::Indexer::default();
    let started = std::time::Instant::now();
    let index = indexer.index_layer_blocking(
        digest_of(&layer),
        Some("application/vnd.oci.image.layer.v1.tar+gzip"),
        &layer[..],
    );
    assert!(index.problems.is_empty(), "{:?}", index.problems);
    eprintln!(
        "indexed {} compressed bytes in {:?}",
        index.stats.compressed_bytes,
        started.elapsed()
    );
    let image = IndexReport::from_layers(std::slice::from_ref(&index));
    let distribution = image.distribution.clone().expect("a distribution");
    assert_eq!(
        (distribution.id.as_str(), distribution.version_id.as_deref()),
        ("debian", Some("12"))
    );

    // Packages against dpkg-query.
    let expected: BTreeSet<Installed> = installed.iter().cloned().collect();
    let found: BTreeSet<Installed> = image
        .packages
        .iter()
        .map(|p| {
            assert_eq!(p.kind, PackageKind::Dpkg);
            assert_eq!(p.location, "var/lib/dpkg/status");
            assert_eq!(p.layer.as_ref(), Some(&index.layer));
            Installed {
                name: p.name.clone(),
                version: p.version.clone(),
                source: p.source_name().to_string(),
                source_version: p.source_version().to_string(),
                arch: p.arch.clone().unwrap_or_default(),
            }
        })
        .collect();
    let score = report("bookworm minbase packages (dpkg-query)", &expected, &found);
    assert_eq!((score.precision(), score.recall()), (1.0, 1.0));

    // Newer versions in bookworm-security, per source package.
    let mut updates: BTreeMap<String, (String, String)> = BTreeMap::new(); // source -> (binary, version)
    let madison = run(Command::new("apt-cache")
        .arg("madison")
        .args(installed.iter().map(|p| &p.name)));
    for line in madison.lines() {
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        if fields.len() < 3
            || !fields[2].contains("bookworm-security")
            || !fields[2].ends_with("Packages")
        {
            continue;
        }
        let version = fields[1];
        for package in installed.iter().filter(|p| p.name == fields[0]) {
            if dpkg::compare(version, &package.version).is_gt() {
                let entry = updates
                    .entry(package.source.clone())
                    .or_insert((package.name.clone(), version.to_string()));
                if dpkg::compare(version, &entry.1).is_gt() {
                    *entry = (package.name.clone(), version.to_string());
                }
            }
        }
    }
    if updates.is_empty() {
        missing(
            test,
            "bookworm-security in apt's package lists (run apt-get update)",
        );
        return;
    }

    // Their changelogs: the CVEs each version names.
    let downloads = cache_dir().join("bookworm-security-debs");
    std::fs::create_dir_all(&downloads).expect("create the download directory");
    let mut fixes: Vec<(String, String, String)> = Vec::new(); // (cve, source, fixed version)
    let mut already_fixed: Vec<(String, String, String)> = Vec::new();
    for (source, (binary, version)) in &updates {
        let installed_source_version = installed
            .iter()
            .find(|p| &p.source == source)
            .map(|p| p.source_version.clone())
            .expect("an installed package of the source");
        let changelog = changelog(&downloads, source, binary, version, &installed);
        for (entry_version, cves) in changelog {
            for cve in cves {
                let record = (cve, source.clone(), entry_version.clone());
                if dpkg::compare(&entry_version, &installed_source_version).is_gt() {
                    fixes.push(record);
                } else {
                    already_fixed.push(record);
                }
            }
        }
    }
    // A CVE named by several entries above the installed version is fixed
    // by the first of them.
    fixes.sort_by(|a, b| {
        (&a.0, &a.1)
            .cmp(&(&b.0, &b.1))
            .then_with(|| dpkg::compare(&a.2, &b.2))
    });
    fixes.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    assert!(
        !fixes.is_empty(),
        "no CVE named by the security updates {updates:?}"
    );
    eprintln!("security updates: {updates:?}");

    // OSV records: one per (CVE, source) fixed above the installed version,
    // the same under Debian:11 (must not match), and the CVEs already fixed
    // below the installed version (must not match either).
    let mut index_ = AdvisoryIndex::new();
    let mut records = 0;
    for (cve, source, fixed) in fixes.iter().chain(already_fixed.iter().take(40)) {
        for release in ["12", "11"] {
            let json = serde_json::json!({
                "schema_version": "1.6.0",
                "id": format!("DEBIAN-{cve}-{source}-{release}"),
                "aliases": [cve],
                "modified": "2025-05-20T00:00:00Z",
                "summary": format!("{cve} in {source}"),
                "affected": [{
                    "package": {"ecosystem": format!("Debian:{release}"), "name": source},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
                    "ecosystem_specific": {"urgency": "medium"},
                }],
            });
            let advisory = osv::parse_json(json.to_string().as_bytes()).expect("a valid record");
            index_.upsert(advisory);
            records += 1;
        }
    }
    let advisories: Vec<Arc<berth_scanner::Advisory>> = index_.lookup(
        &image
            .packages
            .iter()
            .map(|p| berth_scanner::PackageKey::new("Debian", p.source_name()))
            .collect::<Vec<_>>(),
    );
    let findings = berth_scanner::assess_with(&image, &advisories);

    let expected: BTreeSet<(String, String, String)> = fixes
        .iter()
        .flat_map(|(cve, source, fixed)| {
            installed
                .iter()
                .filter(move |p| &p.source == source)
                .map(move |p| {
                    (
                        format!("DEBIAN-{cve}-{source}-12"),
                        p.name.clone(),
                        fixed.clone(),
                    )
                })
        })
        .collect();
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
    eprintln!(
        "{records} advisories ({} CVE fixes above the installed versions, {} at or below), {} expected findings",
        fixes.len(),
        already_fixed.len().min(40),
        expected.len()
    );
    for (cve, source, fixed) in &fixes {
        eprintln!("  {cve} {source} fixed in {fixed}");
    }
    let score = report(
        "bookworm findings from bookworm-security changelogs",
        &expected,
        &found,
    );
    assert_eq!((score.precision(), score.recall()), (1.0, 1.0));
    // Every finding says its CVE and its severity.
    for finding in &findings {
        assert!(
            finding.aliases.iter().any(|a| a.starts_with("CVE-")),
            "{finding:?}"
        );
        assert_eq!(
            finding.severity.as_ref().map(|s| s.level),
            Some(berth_scanner::SeverityLevel::Medium)
        );
    }
}

/// The changelog entries of a package's newer version: (version, CVEs)
/// per entry, newest first. Tries each installed binary of the source
/// (some binaries' documentation is a link to another package's).
fn changelog(
    downloads: &Path,
    source: &str,
    first_binary: &str,
    version: &str,
    installed: &[Installed],
) -> Vec<(String, Vec<String>)> {
    let mut binaries: Vec<&str> = vec![first_binary];
    binaries.extend(
        installed
            .iter()
            .filter(|p| p.source == source)
            .map(|p| p.name.as_str()),
    );
    for binary in binaries {
        let Some(deb) = download(downloads, binary, version) else {
            continue;
        };
        // Native packages (apt) have no Debian revision and name their
        // changelog changelog.gz.
        for name in ["changelog.Debian.gz", "changelog.gz"] {
            let member = format!("./usr/share/doc/{binary}/{name}");
            let output = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "dpkg-deb --fsys-tarfile '{}' | tar -xO '{member}' | gzip -dc",
                    deb.display()
                ))
                .output()
                .expect("run dpkg-deb");
            if output.status.success() && !output.stdout.is_empty() {
                return parse_changelog(&String::from_utf8_lossy(&output.stdout));
            }
        }
    }
    panic!("no changelog for {source} {version}")
}

/// `apt-get download BINARY=VERSION`, cached.
fn download(downloads: &Path, binary: &str, version: &str) -> Option<PathBuf> {
    let find = || {
        std::fs::read_dir(downloads).ok()?.find_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_string_lossy().into_owned();
            // apt names files NAME_VERSION_ARCH.deb with `:` as `%3a`.
            let wanted = format!("{binary}_{}_", version.replace(':', "%3a"));
            name.starts_with(&wanted).then_some(path)
        })
    };
    if let Some(path) = find() {
        return Some(path);
    }
    let status = Command::new("apt-get")
        .args(["download", "-q"])
        .arg(format!("{binary}={version}"))
        .current_dir(downloads)
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    find()
}

/// Entries of a Debian changelog: `source (version) dist; urgency=…`
/// headers, then lines that may name CVEs.
fn parse_changelog(text: &str) -> Vec<(String, Vec<String>)> {
    let mut entries: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') && line.contains(" (") && line.contains("urgency=") {
            let version = line
                .split('(')
                .nth(1)
                .and_then(|r| r.split(')').next())
                .unwrap_or_default();
            entries.push((version.to_string(), Vec::new()));
            continue;
        }
        let Some((_, cves)) = entries.last_mut() else {
            continue;
        };
        let mut rest = line;
        while let Some(at) = rest.find("CVE-") {
            let candidate: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let parts: Vec<&str> = candidate.split('-').collect();
            if parts.len() >= 3
                && parts[1].len() == 4
                && parts[1].bytes().all(|c| c.is_ascii_digit())
                && parts[2].len() >= 4
                && parts[2].bytes().all(|c| c.is_ascii_digit())
            {
                let cve = format!("CVE-{}-{}", parts[1], parts[2]);
                if !cves.contains(&cve) {
                    cves.push(cve);
                }
            }
            rest = &rest[at + 4..];
        }
    }
    entries
}

#[test]
fn changelog_entries() {
    let text = "perl (5.36.0-7+deb12u4) bookworm-security; urgency=medium\n\n  * Fix CVE-2024-56406: heap overflow.\n  * Also (CVE-2023-47038, CVE-2023-47039).\n\n -- Someone <a@b>  Mon, 01 Jan 2025 00:00:00 +0000\n\nperl (5.36.0-7+deb12u3) bookworm; urgency=medium\n\n  * Nothing CVE-less. CVE-20-1 is no id.\n";
    assert_eq!(
        parse_changelog(text),
        vec![
            (
                "5.36.0-7+deb12u4".to_string(),
                vec![
                    "CVE-2024-56406".to_string(),
                    "CVE-2023-47038".to_string(),
                    "CVE-2023-47039".to_string()
                ]
            ),
            ("5.36.0-7+deb12u3".to_string(), vec![]),
        ]
    );
}
