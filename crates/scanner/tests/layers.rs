//! Layer reading: compression by magic bytes, whiteouts and opaque
//! directories across layers, links, and hostile layers: every cap stops
//! the reading with the reason recorded, what was read before still
//! counts, and nothing panics.

mod support;

use std::io::Write;

use berth_scanner::{
    FileContents, IndexReport, Indexer, LayerIndex, Limits, PackageKind, ProblemKind,
};
use support::{digest_of, gzip, index, LayerBuilder};

fn dpkg_status(packages: &[(&str, &str)]) -> Vec<u8> {
    let mut text = String::new();
    for (name, version) in packages {
        text.push_str(&format!(
            "Package: {name}\nStatus: install ok installed\nVersion: {version}\nArchitecture: amd64\n\n"
        ));
    }
    text.into_bytes()
}

fn metadata(name: &str, version: &str) -> Vec<u8> {
    format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA description.\n")
        .into_bytes()
}

fn package_json(name: &str, version: &str) -> Vec<u8> {
    format!(r#"{{"name": "{name}", "version": "{version}"}}"#).into_bytes()
}

fn names(report: &IndexReport, kind: PackageKind) -> Vec<(String, String)> {
    report
        .packages
        .iter()
        .filter(|p| p.kind == kind)
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect()
}

fn index_with(limits: Limits, blob: &[u8]) -> LayerIndex {
    Indexer::new(limits).index_layer_blocking(digest_of(blob), None, blob)
}

fn kinds(index: &LayerIndex) -> Vec<ProblemKind> {
    index.problems.iter().map(|p| p.kind).collect()
}

#[test]
fn whiteouts_and_opaque_directories_apply_in_layer_order() {
    let site = "usr/lib/python3/dist-packages";
    let bottom = LayerBuilder::new()
        .file("usr/lib/os-release", b"ID=debian\nVERSION_ID=\"12\"\n")
        .symlink("etc/os-release", "../usr/lib/os-release")
        .file(
            "var/lib/dpkg/status",
            &dpkg_status(&[("base-files", "12.4"), ("old", "1.0")]),
        )
        .file(
            &format!("{site}/foo-1.0.dist-info/METADATA"),
            &metadata("foo", "1.0"),
        )
        .file(
            &format!("{site}/bar-2.0.dist-info/METADATA"),
            &metadata("bar", "2.0"),
        )
        .file(
            "opt/app/node_modules/x/package.json",
            &package_json("x", "1.0.0"),
        )
        .gzip();
    let top = LayerBuilder::new()
        // The package database rewritten: base-files unchanged, old
        // removed, new added.
        .file(
            "var/lib/dpkg/status",
            &dpkg_status(&[("base-files", "12.4"), ("new", "2.0")]),
        )
        // A deleted distribution.
        .file(&format!("{site}/.wh.foo-1.0.dist-info"), b"")
        // An opaque directory: nothing of the lower layers under opt, but
        // what this layer puts there stays.
        .file("opt/.wh..wh..opq", b"")
        .file(
            "opt/new/node_modules/y/package.json",
            &package_json("y", "2.0.0"),
        )
        .gzip();
    let (layers, report) = index(&[bottom, top]);
    assert!(layers.iter().all(|l| l.problems.is_empty()));
    assert_eq!(
        report.distribution.as_ref().map(|d| d.id.as_str()),
        Some("debian")
    );
    assert_eq!(
        names(&report, PackageKind::Dpkg),
        [
            ("base-files".to_string(), "12.4".to_string()),
            ("new".to_string(), "2.0".to_string())
        ]
    );
    assert_eq!(
        names(&report, PackageKind::Python),
        [("bar".to_string(), "2.0".to_string())]
    );
    assert_eq!(
        names(&report, PackageKind::Npm),
        [("y".to_string(), "2.0.0".to_string())]
    );
    // The layer that installed each package: base-files survives the
    // rewrite of the database and keeps the bottom layer.
    let layer_of = |name: &str| {
        report
            .packages
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.layer.clone())
    };
    assert_eq!(layer_of("base-files"), Some(layers[0].layer.clone()));
    assert_eq!(layer_of("new"), Some(layers[1].layer.clone()));
    assert_eq!(layer_of("bar"), Some(layers[0].layer.clone()));
    assert_eq!(layers[1].whiteouts, [format!("{site}/foo-1.0.dist-info")]);
    assert_eq!(layers[1].opaque_dirs, ["opt"]);
    // Every package has a purl naming the distribution where it is an OS
    // package.
    assert!(report.packages.iter().all(|p| !p.purl.is_empty()
        && (p.kind != PackageKind::Dpkg || p.purl.contains("distro=debian-12"))));
}

#[test]
fn replaced_files_and_links() {
    let bottom = LayerBuilder::new()
        .file("etc/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n")
        .file("usr/lib/os-release", b"ID=alpine\nVERSION_ID=3.19.1\n")
        .file(
            "lib/apk/db/installed",
            b"P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\nP:libcrypto3\nV:3.1.4-r1\nA:x86_64\no:openssl\n\n",
        )
        .file("app/a/node_modules/z/package.json", &package_json("z", "1.0.0"))
        .gzip();
    // An upgrade: the release file rewritten, the old os-release replaced
    // by a link; a hard link duplicates a package file.
    let top = LayerBuilder::new()
        .file("usr/lib/os-release", b"ID=alpine\nVERSION_ID=3.20.3\n")
        .symlink("etc/os-release", "../usr/lib/os-release")
        .file(
            "app/b/node_modules/w/package.json",
            &package_json("w", "3.0.0"),
        )
        .hardlink(
            "app/c/node_modules/w/package.json",
            "app/b/node_modules/w/package.json",
        )
        .gzip();
    let (_, report) = index(&[bottom, top]);
    let distribution = report.distribution.expect("a distribution");
    assert_eq!(distribution.version_id.as_deref(), Some("3.20.3"));
    assert_eq!(
        distribution.osv_ecosystem(),
        Some(("Alpine", "v3.20".to_string()))
    );
    let openssl = report
        .packages
        .iter()
        .find(|p| p.name == "libcrypto3")
        .expect("libcrypto3");
    assert_eq!(openssl.source_name(), "openssl");
    assert_eq!(
        openssl.purl,
        "pkg:apk/alpine/libcrypto3@3.1.4-r1?arch=x86_64&distro=alpine-3.20.3&upstream=openssl"
    );
    let locations: Vec<&str> = report
        .packages
        .iter()
        .filter(|p| p.kind == PackageKind::Npm)
        .map(|p| p.location.as_str())
        .collect();
    assert_eq!(
        locations,
        [
            "app/b/node_modules/w/package.json",
            "app/c/node_modules/w/package.json",
            "app/a/node_modules/z/package.json"
        ]
    );
}

#[test]
fn compression_is_detected_from_the_bytes() {
    let tar = LayerBuilder::new()
        .file(
            "var/lib/dpkg/status",
            &dpkg_status(&[("a", "1"), ("b", "2")]),
        )
        .tar();
    let zstd = zstd::encode_all(&tar[..], 3).expect("zstd");
    let indexer = Indexer::default();
    let mut results = Vec::new();
    for (blob, media_type) in [
        (tar.clone(), None),
        (gzip(&tar), None),
        (zstd.clone(), None),
        // A wrong media type does not fool the detection.
        (zstd, Some("application/vnd.oci.image.layer.v1.tar+gzip")),
        (gzip(&tar), Some("application/vnd.oci.image.layer.v1.tar")),
    ] {
        let layer = indexer.index_layer_blocking(digest_of(&blob), media_type, &blob[..]);
        assert!(layer.problems.is_empty(), "{:?}", layer.problems);
        results.push(layer.files);
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    // An empty blob is an empty layer.
    let empty = indexer.index_layer_blocking(
        digest_of(b""),
        Some("application/vnd.oci.image.layer.v1.tar+gzip"),
        &b""[..],
    );
    assert!(empty.files.is_empty());
    assert_eq!(kinds(&empty), [ProblemKind::MalformedArchive]);
}

#[tokio::test]
async fn async_readers_are_indexed_off_the_runtime() {
    let blob = LayerBuilder::new()
        .file("var/lib/dpkg/status", &dpkg_status(&[("a", "1")]))
        .gzip();
    let indexer = std::sync::Arc::new(Indexer::default());
    let layer = indexer
        .index_layer(digest_of(&blob), None, std::io::Cursor::new(blob.clone()))
        .await;
    assert!(layer.problems.is_empty());
    assert_eq!(layer.files.len(), 1);
    assert_eq!(layer.stats.compressed_bytes, blob.len() as u64);
}

/// A raw tar header with any size field, for archives a tar library would
/// refuse to write.
fn raw_header(name: &str, typeflag: u8, size_field: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..124 + size_field.len()].copy_from_slice(size_field);
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

#[test]
fn hostile_layers_stop_at_the_caps() {
    let small = Limits {
        ratio_grace_bytes: 1 << 20,
        max_compression_ratio: 100,
        ..Limits::default()
    };
    // A zip bomb: 64 MiB of zeros behind a useful file.
    let mut bomb = tar::Builder::new(Vec::new());
    let status = dpkg_status(&[("early", "1.0")]);
    let mut header = tar::Header::new_gnu();
    header.set_size(status.len() as u64);
    header.set_mode(0o644);
    bomb.append_data(&mut header, "var/lib/dpkg/status", &status[..])
        .expect("append");
    let mut header = tar::Header::new_gnu();
    header.set_size(64 << 20);
    header.set_mode(0o644);
    bomb.append_data(
        &mut header,
        "zeros",
        std::io::repeat(0).take_bytes(64 << 20),
    )
    .expect("append");
    let bomb = gzip(&bomb.into_inner().expect("tar"));
    let layer = index_with(small.clone(), &bomb);
    assert_eq!(kinds(&layer), [ProblemKind::CompressionRatio]);
    // What came before the bomb still counts.
    assert_eq!(layer.files.len(), 1);

    // The decompressed size cap.
    let plain = LayerBuilder::new()
        .file("var/lib/dpkg/status", &dpkg_status(&[("a", "1")]))
        .file("big", &vec![7u8; 3 << 20])
        .tar();
    let layer = index_with(
        Limits {
            max_decompressed_bytes: 1 << 20,
            ..Limits::default()
        },
        &plain,
    );
    assert_eq!(kinds(&layer), [ProblemKind::DecompressedLimit]);

    // The entry cap.
    let mut many = LayerBuilder::new();
    for i in 0..50 {
        many = many.file(&format!("f{i}"), b"x");
    }
    let layer = index_with(
        Limits {
            max_entries: 20,
            ..Limits::default()
        },
        &many.tar(),
    );
    assert_eq!(kinds(&layer), [ProblemKind::TooManyEntries]);

    // The package cap.
    let layer = index_with(
        Limits {
            max_packages: 3,
            ..Limits::default()
        },
        &LayerBuilder::new()
            .file(
                "var/lib/dpkg/status",
                &dpkg_status(&[("a", "1"), ("b", "1")]),
            )
            .file("lib/apk/db/installed", b"P:c\nV:1\n\nP:d\nV:1\n\n")
            .tar(),
    );
    assert_eq!(kinds(&layer), [ProblemKind::TooManyPackages]);
    let report = IndexReport::from_layers(std::slice::from_ref(&layer));
    assert_eq!(report.packages.len(), 3);

    // A PAX header and a GNU long name claiming a gigabyte.
    for typeflag in [b'x', b'L'] {
        let mut archive = Vec::new();
        archive.extend_from_slice(&raw_header("././@LongLink", typeflag, b"10000000000\0"));
        archive.extend_from_slice(&[b'a'; 4096]);
        let layer = index_with(Limits::default(), &archive);
        assert_eq!(
            kinds(&layer),
            [ProblemKind::MalformedArchive],
            "{}",
            typeflag as char
        );
    }

    // A wanted file over the size cap is skipped, named, and the walk goes
    // on.
    let layer = LayerBuilder::new()
        .file(
            "usr/lib/python3/dist-packages/huge-1.0.dist-info/METADATA",
            &vec![b'x'; 2 << 20],
        )
        .file("var/lib/dpkg/status", &dpkg_status(&[("after", "1")]))
        .tar();
    let index = index_with(
        Limits {
            max_file_size: 1 << 20,
            ..Limits::default()
        },
        &layer,
    );
    assert_eq!(kinds(&index), [ProblemKind::FileTooLarge]);
    assert!(index.files.iter().any(|f| f.path == "var/lib/dpkg/status"
        && matches!(&f.contents, FileContents::Packages { packages } if packages.len() == 1)));

    // Truncated, corrupt and foreign streams.
    let good = LayerBuilder::new()
        .file("var/lib/dpkg/status", &dpkg_status(&[("a", "1")]))
        .file("filler", &vec![1u8; 200_000])
        .gzip();
    let truncated = &good[..good.len() / 2];
    let layer = index_with(Limits::default(), truncated);
    assert_eq!(kinds(&layer), [ProblemKind::MalformedArchive]);
    assert_eq!(layer.files.len(), 1, "the file before the cut is kept");
    let mut corrupt = good.clone();
    for byte in corrupt.iter_mut().skip(200).step_by(97) {
        *byte ^= 0x55;
    }
    let layer = index_with(Limits::default(), &corrupt);
    assert!(!layer.problems.is_empty());
    let layer = index_with(
        Limits::default(),
        b"this is not an archive at all, just text that goes on for a while.......",
    );
    assert_eq!(kinds(&layer), [ProblemKind::MalformedArchive]);
    let mut bad_checksum = raw_header("etc/os-release", b'0', b"00000000000\0");
    bad_checksum[150] = b'7';
    let layer = index_with(Limits::default(), &bad_checksum);
    assert_eq!(kinds(&layer), [ProblemKind::MalformedArchive]);

    // A zstd frame asking for a window over the cap.
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 19).expect("zstd");
    encoder.long_distance_matching(true).expect("ldm");
    encoder.window_log(27).expect("window");
    encoder.write_all(&vec![3u8; 1 << 20]).expect("write");
    let large_window = encoder.finish().expect("finish");
    let layer = index_with(Limits::default(), &large_window);
    assert_eq!(kinds(&layer), [ProblemKind::MalformedArchive]);
}

/// Archives nested deeper than the cap: the outer ones are still read.
#[test]
fn nested_java_archives_stop_at_the_depth_cap() {
    fn jar(group: &str, inner: Option<(&str, Vec<u8>)>) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut out);
            let options = zip::write::SimpleFileOptions::default();
            zip.start_file(
                format!("META-INF/maven/{group}/lib/pom.properties"),
                options,
            )
            .expect("entry");
            zip.write_all(format!("groupId={group}\nartifactId=lib\nversion=1.0\n").as_bytes())
                .expect("write");
            if let Some((name, bytes)) = inner {
                zip.start_file(name, options).expect("entry");
                zip.write_all(&bytes).expect("write");
            }
            zip.finish().expect("finish");
        }
        out.into_inner()
    }
    let level4 = jar("d", None);
    let level3 = jar("c", Some(("lib/d.jar", level4)));
    let level2 = jar("b", Some(("lib/c.jar", level3)));
    let level1 = jar("a", Some(("WEB-INF/lib/b.jar", level2)));
    let blob = LayerBuilder::new().file("srv/app.war", &level1).tar();
    let layer = index_with(Limits::default(), &blob);
    let report = IndexReport::from_layers(std::slice::from_ref(&layer));
    let found: Vec<(&str, &str)> = report
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.location.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("a:lib", "srv/app.war"),
            ("b:lib", "srv/app.war!/WEB-INF/lib/b.jar"),
            ("c:lib", "srv/app.war!/WEB-INF/lib/b.jar!/lib/c.jar"),
        ]
    );
    assert_eq!(kinds(&layer), [ProblemKind::ArchiveDepth]);
}

/// Package databases that are not what their names say.
#[test]
fn malformed_databases_are_partial_not_fatal() {
    let blob = LayerBuilder::new()
        .file(
            "var/lib/rpm/rpmdb.sqlite",
            b"SQLite format 3\0 but nothing else of a database",
        )
        .file("var/lib/rpm/Packages", &[0u8; 4096])
        .file(
            "usr/lib/sysimage/rpm/Packages.db",
            b"RpmP\0\0\0\0\0\0\0\0\xff\xff\xff\x7f",
        )
        .file("app/Cargo.lock", b"[[package]]\nname = 1\n")
        .file("app/composer.lock", b"{\"packages\": 7}")
        .file("app/x.deps.json", b"{")
        .file("srv/broken.jar", b"PK\x03\x04 not really")
        .file("lib/apk/db/installed", b"\x00\x01\x02")
        .file("var/lib/dpkg/status", b"\xff\xfe garbage")
        .file("var/lib/dpkg/status.d/base", &dpkg_status(&[("fine", "1")]))
        .tar();
    let layer = index_with(Limits::default(), &blob);
    let report = IndexReport::from_layers(std::slice::from_ref(&layer));
    assert_eq!(
        names(&report, PackageKind::Dpkg),
        [("fine".to_string(), "1".to_string())]
    );
    let bad: std::collections::BTreeSet<&str> = layer
        .problems
        .iter()
        .filter_map(|p| p.path.as_deref())
        .collect();
    assert_eq!(bad.len(), 9, "{:?}", layer.problems);
    assert!(layer
        .problems
        .iter()
        .all(|p| p.kind == ProblemKind::MalformedFile));
}

trait TakeBytes: std::io::Read + Sized {
    fn take_bytes(self, n: u64) -> std::io::Take<Self> {
        std::io::Read::take(self, n)
    }
}

impl<R: std::io::Read> TakeBytes for R {}
