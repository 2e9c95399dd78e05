//! rpm databases written by the real rpm: a spec with a few hundred
//! subpackages (some with epochs, some with headers larger than an SQLite
//! page, so the reader follows overflow chains and interior pages) is
//! built with `rpmbuild`, installed with `rpm --justdb` into an SQLite
//! database, and listed with `rpm -qa`: that list is what indexing the
//! database must give.
//!
//! Debian's rpm cannot write the other two formats. BerkeleyDB is covered
//! by go-rpmdb's fixtures (`tests/fixtures.rs`); ndb is written here from
//! the same package headers (read out of the SQLite database by Python's
//! sqlite3 module, the reference SQLite) in rpm's documented ndb layout.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{cache_dir, index, report, require_tool, run, LayerBuilder};

const SUBPACKAGES: usize = 240;

/// Builds (or reuses) the SQLite rpm database; returns its directory. The
/// tests of this file share it, so building it is serialized.
fn sqlite_database(test: &str) -> Option<PathBuf> {
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    require_tool("rpmbuild", test)?;
    require_tool("rpm", test)?;
    let dir = cache_dir().join(format!("rpm-sqlite-{SUBPACKAGES}"));
    let db = dir.join("db");
    if db.join("rpmdb.sqlite").exists() && dir.join("expected.txt").exists() {
        return Some(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&db).expect("create the rpm directory");
    let mut spec = String::from(
        "Name: berth-fixture\nVersion: 1.0\nRelease: 1.el9\nSummary: fixture\nLicense: MIT\nBuildArch: noarch\n%description\nA fixture.\n\n",
    );
    for n in 0..SUBPACKAGES {
        spec.push_str(&format!(
            "%package -n berth-sub-{n}\nSummary: subpackage {n}\nVersion: {}.{}.{}\nRelease: {n}.el9_{}\n",
            n % 7,
            n % 13,
            n,
            n % 3
        ));
        if n % 3 == 0 {
            spec.push_str(&format!("Epoch: {}\n", n % 5 + 1));
        }
        // Every fifth header is larger than an SQLite page.
        let description =
            "A long description line for an rpm header. ".repeat(if n % 5 == 0 { 150 } else { 2 });
        spec.push_str(&format!(
            "%description -n berth-sub-{n}\n{description}\n%files -n berth-sub-{n}\n\n"
        ));
    }
    spec.push_str("%files\n");
    std::fs::write(dir.join("fixture.spec"), spec).expect("write the spec");
    let top = dir.join("top");
    run(Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("-bb")
        .arg(dir.join("fixture.spec")));
    let rpms: Vec<PathBuf> = std::fs::read_dir(top.join("RPMS/noarch"))
        .expect("the built packages")
        .map(|e| e.expect("an entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("berth-sub-"))
        })
        .collect();
    assert_eq!(rpms.len(), SUBPACKAGES);
    let dbpath = format!("{}", db.display());
    run(Command::new("rpm").args([
        "--dbpath",
        &dbpath,
        "--define",
        "_db_backend sqlite",
        "--initdb",
    ]));
    run(Command::new("rpm")
        .args([
            "--dbpath",
            &dbpath,
            "--define",
            "_db_backend sqlite",
            "-i",
            "--justdb",
            "--nodeps",
            "--noscripts",
            "--nosignature",
        ])
        .args(&rpms));
    let expected = run(Command::new("rpm").args([
        "--dbpath",
        &dbpath,
        "--define",
        "_db_backend sqlite",
        "-qa",
        "--qf",
        "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH}\n",
    ]));
    std::fs::write(dir.join("expected.txt"), expected).expect("write the expected list");
    let _ = std::fs::remove_dir_all(&top);
    Some(dir)
}

/// `rpm -qa`'s list as (name, [epoch:]version-release, arch).
fn expected(dir: &Path) -> BTreeSet<(String, String, String)> {
    std::fs::read_to_string(dir.join("expected.txt"))
        .expect("read the expected list")
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let evr = fields[1]
                .strip_prefix("0:")
                .unwrap_or(fields[1])
                .to_string();
            (fields[0].to_string(), evr, fields[2].to_string())
        })
        .collect()
}

fn found(report: &berth_scanner::IndexReport) -> BTreeSet<(String, String, String)> {
    report
        .packages
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.version.clone(),
                p.arch.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn sqlite_database_written_by_rpm() {
    let test = "rpm::sqlite_database_written_by_rpm";
    let Some(dir) = sqlite_database(test) else {
        return;
    };
    let db = std::fs::read(dir.join("db/rpmdb.sqlite")).expect("read the database");
    let layer = LayerBuilder::new()
        .file("usr/lib/sysimage/rpm/rpmdb.sqlite", &db)
        .file("etc/os-release", b"ID=almalinux\nVERSION_ID=\"9.4\"\n")
        .gzip();
    let (layers, report_) = index(&[layer]);
    assert!(layers[0].problems.is_empty(), "{:?}", layers[0].problems);
    let expected = expected(&dir);
    assert_eq!(expected.len(), SUBPACKAGES);
    let score = report("rpm sqlite database (rpm -qa)", &expected, &found(&report_));
    assert_eq!((score.precision(), score.recall()), (1.0, 1.0));
    // The purl names the distribution and carries the epoch apart.
    let with_epoch = report_
        .packages
        .iter()
        .find(|p| p.name == "berth-sub-3")
        .expect("berth-sub-3");
    assert_eq!(
        with_epoch.purl,
        "pkg:rpm/almalinux/berth-sub-3@3.3.3-3.el9_0?arch=noarch&distro=almalinux-9.4&epoch=4&upstream=berth-fixture"
    );
}

#[test]
fn ndb_database_from_rpm_headers() {
    let test = "rpm::ndb_database_from_rpm_headers";
    let Some(dir) = sqlite_database(test) else {
        return;
    };
    let Some(python) = require_tool("python3", test) else {
        return;
    };
    // The headers as the reference SQLite reads them.
    let blobs_file = dir.join("headers.bin");
    run(Command::new(python).arg("-c").arg(format!(
        "import sqlite3,struct\nc=sqlite3.connect('file:{}?mode=ro',uri=True)\nout=open('{}','wb')\nfor hnum,blob in c.execute('select hnum, blob from Packages order by hnum'):\n    out.write(struct.pack('<II',hnum,len(blob)))\n    out.write(blob)\n",
        dir.join("db/rpmdb.sqlite").display(),
        blobs_file.display()
    )));
    let raw = std::fs::read(&blobs_file).expect("read the headers");
    let mut headers = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let index = u32::from_le_bytes(raw[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(raw[at + 4..at + 8].try_into().unwrap()) as usize;
        headers.push((index, raw[at + 8..at + 8 + len].to_vec()));
        at += 8 + len;
    }
    assert_eq!(headers.len(), SUBPACKAGES);
    let db = ndb(&headers);
    let layer = LayerBuilder::new()
        .file("var/lib/rpm/Packages.db", &db)
        .gzip();
    let (layers, report_) = index(&[layer]);
    assert!(layers[0].problems.is_empty(), "{:?}", layers[0].problems);
    let score = report(
        "rpm ndb database (rpm -qa)",
        &expected(&dir),
        &found(&report_),
    );
    assert_eq!((score.precision(), score.recall()), (1.0, 1.0));
}

/// rpm's ndb layout (lib/backend/ndb/rpmpkg.c): a 32-byte header (`RpmP`,
/// version 0, generation, slot page count), 16-byte slots (`Slot`,
/// package index, block offset, block count) in 4 KiB slot pages after it,
/// and each package's blob (`BlbS`, package index, checksum, length, the
/// header, padding to 16-byte blocks) at its slot's block offset.
fn ndb(headers: &[(u32, Vec<u8>)]) -> Vec<u8> {
    const SLOT_PAGE: usize = 4096;
    let slots_needed = headers.len() + 2;
    let slot_pages = slots_needed.div_ceil(SLOT_PAGE / 16);
    let mut file = vec![0u8; slot_pages * SLOT_PAGE];
    file[0..4].copy_from_slice(b"RpmP");
    file[8..12].copy_from_slice(&1u32.to_le_bytes());
    file[12..16].copy_from_slice(&(slot_pages as u32).to_le_bytes());
    for slot in 2..slot_pages * SLOT_PAGE / 16 {
        file[slot * 16..slot * 16 + 4].copy_from_slice(b"Slot");
    }
    for (n, (index, header)) in headers.iter().enumerate() {
        let block = file.len() / 16;
        let blocks = (16 + header.len() + 16).div_ceil(16);
        let slot = (n + 2) * 16;
        file[slot + 4..slot + 8].copy_from_slice(&index.to_le_bytes());
        file[slot + 8..slot + 12].copy_from_slice(&(block as u32).to_le_bytes());
        file[slot + 12..slot + 16].copy_from_slice(&(blocks as u32).to_le_bytes());
        let mut blob = Vec::new();
        blob.extend_from_slice(b"BlbS");
        blob.extend_from_slice(&index.to_le_bytes());
        blob.extend_from_slice(&0u32.to_le_bytes());
        blob.extend_from_slice(&(header.len() as u32).to_le_bytes());
        blob.extend_from_slice(header);
        blob.resize(blocks * 16, 0);
        file.extend_from_slice(&blob);
    }
    file
}
