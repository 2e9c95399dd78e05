//! Never a panic on hostile input, in every test run: the parsers the
//! fuzz targets (`fuzz/`) exercise at length are fed a few thousand
//! deterministic mutations (bit flips, byte runs, truncations, splices) of
//! real inputs of each kind. A panic anywhere fails the test with the
//! input that caused it.

mod support;

use std::io::Write;

use berth_scanner::fuzzing;
use berth_scanner::version::Scheme;
use support::LayerBuilder;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `input`.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if out.is_empty() {
            out.push(rng.next() as u8);
            continue;
        }
        match rng.below(6) {
            0 => {
                let at = rng.below(out.len());
                out[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(out.len());
                out[at] = [0, 0xff, 0x7f, 0x80, b'0', b'\n'][rng.below(6)];
            }
            2 => {
                let cut = rng.below(out.len());
                out.truncate(cut);
            }
            3 => {
                let at = rng.below(out.len());
                let len = rng.below(64).min(out.len() - at);
                let byte = rng.next() as u8;
                out[at..at + len].fill(byte);
            }
            4 => {
                // Splice a piece of the input elsewhere.
                let from = rng.below(out.len());
                let len = rng.below(256).min(out.len() - from);
                let piece = out[from..from + len].to_vec();
                let at = rng.below(out.len());
                out.splice(at..at, piece);
            }
            _ => {
                // A large number where one may be read.
                let at = rng.below(out.len());
                let len = 4.min(out.len() - at);
                out[at..at + len].fill(0xff);
            }
        }
    }
    out
}

/// Runs `f` on `rounds` mutations of each seed, reporting the first input
/// that panics.
fn hammer(name: &str, seeds: &[Vec<u8>], rounds: usize, f: impl Fn(&[u8])) {
    let mut rng = Rng(0x2545f4914f6cdd1d ^ name.len() as u64);
    for seed in seeds {
        for _ in 0..rounds {
            let input = mutate(&mut rng, seed);
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&input))).is_err() {
                let path = std::env::temp_dir().join(format!("berth-scanner-{name}-crash.bin"));
                let _ = std::fs::write(&path, &input);
                panic!("{name}: a panic on the input saved at {}", path.display());
            }
        }
    }
}

fn status() -> Vec<u8> {
    b"Package: libc6\nStatus: install ok installed\nSource: glibc (2.36-9)\nVersion: 2.36-9+deb12u10\nArchitecture: amd64\nDescription: x\n more\n\nPackage: bash\nVersion: 5.2\n\n".to_vec()
}

fn jar() -> Vec<u8> {
    let mut inner = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut inner);
        zip.start_file(
            "META-INF/maven/g/a/pom.properties",
            zip::write::SimpleFileOptions::default(),
        )
        .expect("entry");
        zip.write_all(b"groupId=g\nartifactId=a\nversion=1.0\n")
            .expect("write");
        zip.finish().expect("finish");
    }
    let inner = inner.into_inner();
    let mut outer = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut outer);
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file("META-INF/maven/o/w/pom.properties", options)
            .expect("entry");
        zip.write_all(b"groupId=o\nartifactId=w\nversion=2.0\n")
            .expect("write");
        zip.start_file("WEB-INF/lib/a.jar", options).expect("entry");
        zip.write_all(&inner).expect("write");
        zip.finish().expect("finish");
    }
    outer.into_inner()
}

#[test]
fn layers_survive_mutation() {
    let tar = LayerBuilder::new()
        .file("etc/os-release", b"ID=debian\nVERSION_ID=12\n")
        .file("var/lib/dpkg/status", &status())
        .file("srv/app.war", &jar())
        .symlink("etc/alt", "../usr/lib/os-release")
        .file("usr/lib/python3/dist-packages/.wh.gone", b"")
        .tar();
    let gz = support::gzip(&tar);
    let zst = zstd::encode_all(&tar[..], 3).expect("zstd");
    let indexer = berth_scanner::Indexer::default();
    // The indexer catches a panic itself (and calls it an internal
    // problem): that must never happen either.
    let index = |data: &[u8]| {
        let layer = indexer.index_layer_blocking(support::digest_of(data), None, data);
        assert!(
            layer
                .problems
                .iter()
                .all(|p| p.kind != berth_scanner::ProblemKind::Internal),
            "{:?}",
            layer.problems
        );
        let _ = berth_scanner::IndexReport::from_layers(&[layer]);
    };
    hammer("layer", &[tar.clone(), gz, zst], 300, index);
    hammer("tar", &[tar], 1000, fuzzing::tar);
}

#[test]
fn analyzers_survive_mutation() {
    let mut seeds: Vec<(usize, Vec<u8>)> = vec![
        (0, b"ID=debian\nVERSION_ID=\"12\"\n".to_vec()),
        (1, b"AlmaLinux release 9.4 (Seafoam Ocelot)\n".to_vec()),
        (2, status()),
        (3, b"P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\n".to_vec()),
        (5, b"Metadata-Version: 2.1\nName: x\nVersion: 1.0\n\nbody".to_vec()),
        (6, br#"{"name": "x", "version": "1.0.0"}"#.to_vec()),
        (7, br#"{"lockfileVersion": 3, "packages": {"": {}, "node_modules/a": {"version": "1.0.0", "dev": false}}}"#.to_vec()),
        (7, br#"{"dependencies": {"a": {"version": "1.0.0", "dependencies": {"b": {"version": "2.0.0"}}}}}"#.to_vec()),
        (8, b"[[package]]\nname = \"libc\"\nversion = \"0.2.1\"\n".to_vec()),
        (10, jar()),
        (11, b"Gem::Specification.new do |s|\n  s.name = \"rake\".freeze\n  s.version = \"13.0.3\"\nend\n".to_vec()),
        (12, br#"{"packages": [{"name": "a/b", "version": "1.0"}]}"#.to_vec()),
        (13, br#"{"libraries": {"A/1.0": {"type": "package"}}}"#.to_vec()),
    ];
    // Real databases and binaries, where the fixture packages are
    // installed.
    for (selector, path) in [
        (4, "/usr/share/gocode/src/github.com/knqyf263/go-rpmdb/pkg/testdata/centos5-plain/Packages"),
        (9, "/usr/share/gocode/src/github.com/aquasecurity/go-dep-parser/pkg/golang/binary/testdata/test.elf"),
        (9, "/usr/share/gocode/src/github.com/aquasecurity/go-dep-parser/pkg/golang/binary/testdata/test.macho"),
    ] {
        if let Ok(bytes) = std::fs::read(path) {
            seeds.push((selector, bytes));
        }
    }
    for (selector, seed) in seeds {
        let rounds = if seed.len() > 100_000 { 40 } else { 400 };
        hammer(
            &format!("analyzer-{selector}"),
            &[seed],
            rounds,
            move |data| fuzzing::analyze(selector as u8, data),
        );
    }
}

#[test]
fn osv_records_and_versions_survive_mutation() {
    let records: Vec<Vec<u8>> = [
        "npm/GHSA-xvch-5gv4-984h.json",
        "pypi/PYSEC-2023-192.yaml",
        "crates/RUSTSEC-2019-0009.json",
    ]
    .iter()
    .map(|p| {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/osv")
                .join(p),
        )
        .expect("a record")
    })
    .collect();
    hammer("osv", &records, 500, |data| {
        let parsed = [
            berth_scanner::osv::parse_json(data),
            berth_scanner::osv::parse_yaml(data),
        ];
        for advisory in parsed.into_iter().flatten() {
            for affected in &advisory.affected {
                if let Some(scheme) = Scheme::for_osv_ecosystem(&affected.ecosystem) {
                    let _ = berth_scanner::matcher::affects(affected, scheme, "1.2.3");
                }
            }
        }
    });
    let versions: Vec<Vec<u8>> = [
        "1:2.36-9+deb12u10|2.36-9",
        "1.0_rc1-r5|1.0.02",
        "v1.2.3-pre.1+meta|1.2.3",
        "1.0a1.post2.dev3+local|1!2.0",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    hammer("versions", &versions, 2000, |data| {
        let text = String::from_utf8_lossy(data);
        let (a, b) = text.split_once('|').unwrap_or((&text, "1.0"));
        for scheme in [
            Scheme::Dpkg,
            Scheme::Apk,
            Scheme::Rpm,
            Scheme::Pep440,
            Scheme::Npm,
            Scheme::Cargo,
            Scheme::Go,
            Scheme::Maven,
            Scheme::RubyGems,
            Scheme::Composer,
            Scheme::NuGet,
            Scheme::SemVer,
        ] {
            assert_eq!(
                scheme.compare(a, b).map(|o| o.reverse()),
                scheme.compare(b, a),
                "{scheme:?} {a:?} {b:?}"
            );
        }
    });
}
