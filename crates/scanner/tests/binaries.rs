//! Executables and .NET manifests made by their own tools at test time:
//!
//! - a Go module built by Debian's Go toolchain (Go 1.18+ build
//!   information, inline), indexed whole and, with a small size cap, as a
//!   stream; `go version -m` is what it must give;
//! - a cargo-auditable section (`.dep-v0`, zlib-compressed JSON in
//!   cargo-auditable's format) added to a real ELF executable with
//!   binutils' `objcopy`;
//! - a `*.deps.json` in the shape `dotnet publish` writes.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;

use berth_scanner::{Indexer, Limits, PackageKind};
use support::{digest_of, index, report, require_path, require_tool, run, LayerBuilder};

/// Builds a Go module with one dependency replaced by a local directory.
fn go_binary(test: &str, dir: &std::path::Path) -> Option<Vec<u8>> {
    let go = require_path("/usr/bin/go", "golang-go", test)?;
    std::fs::create_dir_all(dir.join("lib")).expect("create the module");
    let files = [
        ("go.mod", "module example.com/app\n\ngo 1.19\n\nrequire example.com/lib v1.2.3\n\nreplace example.com/lib => ./lib\n"),
        ("main.go", "package main\n\nimport \"example.com/lib\"\n\nfunc main() { println(lib.Hello()) }\n"),
        ("lib/go.mod", "module example.com/lib\n\ngo 1.19\n"),
        ("lib/lib.go", "package lib\n\nfunc Hello() string { return \"hello\" }\n"),
    ];
    for (path, text) in files {
        std::fs::write(dir.join(path), text).expect("write the module");
    }
    run(Command::new(&go)
        .args(["build", "-o", "app", "."])
        .current_dir(dir)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath")));
    Some(std::fs::read(dir.join("app")).expect("read the binary"))
}

/// `go version -m`: (module, version) of the dependencies (replacements by
/// local directories keep the required version) and the standard library.
fn go_version_m(dir: &std::path::Path) -> BTreeSet<(String, String)> {
    let out = run(Command::new("/usr/bin/go")
        .args(["version", "-m"])
        .arg(dir.join("app")));
    let mut found = BTreeSet::new();
    for line in out.lines() {
        let fields: Vec<&str> = line.trim().split('\t').collect();
        if let ["dep", path, version, ..] = fields.as_slice() {
            found.insert((path.to_string(), version.to_string()));
        }
        if let Some(go) = line.strip_prefix(&format!("{}: go", dir.join("app").display())) {
            found.insert(("stdlib".to_string(), format!("v{}", go.trim())));
        }
    }
    found
}

#[test]
fn go_build_information_whole_and_streamed() {
    let test = "binaries::go_build_information_whole_and_streamed";
    let dir = tempfile::tempdir().expect("a directory");
    let Some(binary) = go_binary(test, dir.path()) else {
        return;
    };
    let expected = go_version_m(dir.path());
    assert_eq!(expected.len(), 2, "{expected:?}");
    let blob = LayerBuilder::new()
        .executable("usr/local/bin/app", &binary)
        .tar();
    for (what, limits) in [
        ("whole", Limits::default()),
        (
            "as a stream",
            Limits {
                max_file_size: 64 << 10,
                ..Limits::default()
            },
        ),
    ] {
        let layer = Indexer::new(limits).index_layer_blocking(digest_of(&blob), None, &blob[..]);
        assert!(layer.problems.is_empty(), "{what}: {:?}", layer.problems);
        let image = berth_scanner::IndexReport::from_layers(std::slice::from_ref(&layer));
        let found: BTreeSet<(String, String)> = image
            .packages
            .iter()
            .inspect(|p| assert_eq!(p.kind, PackageKind::Go))
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        let score = report(
            &format!("Go 1.19 binary, {what} (go version -m)"),
            &expected,
            &found,
        );
        assert_eq!((score.precision(), score.recall()), (1.0, 1.0));
    }
}

#[test]
fn cargo_auditable_section_in_an_elf_executable() {
    let test = "binaries::cargo_auditable_section_in_an_elf_executable";
    let Some(objcopy) = require_tool("objcopy", test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("a directory");
    // cargo-auditable's format: the root crate, runtime dependencies
    // (`kind` left out), a build dependency.
    let json = br#"{"packages":[{"name":"app","version":"0.1.0","source":"local","dependencies":[1,2,3],"root":true},{"name":"libc","version":"0.2.150","source":"crates.io"},{"name":"serde","version":"1.0.193","source":"crates.io","dependencies":[4]},{"name":"cc","version":"1.0.83","source":"crates.io","kind":"build"},{"name":"serde_derive","version":"1.0.193","source":"crates.io"}]}"#;
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zlib.write_all(json).expect("compress");
    std::fs::write(
        dir.path().join("deps.zlib"),
        zlib.finish().expect("compress"),
    )
    .expect("write the section");
    let input = std::fs::read("/bin/true").expect("a real ELF executable");
    std::fs::write(dir.path().join("in"), &input).expect("copy the executable");
    run(Command::new(objcopy).current_dir(dir.path()).args([
        "--add-section",
        ".dep-v0=deps.zlib",
        "--set-section-flags",
        ".dep-v0=noload,readonly",
        "in",
        "out",
    ]));
    let binary = std::fs::read(dir.path().join("out")).expect("read the executable");
    let (layers, image) = index(&[LayerBuilder::new().executable("usr/bin/app", &binary).tar()]);
    assert!(layers[0].problems.is_empty(), "{:?}", layers[0].problems);
    let found: BTreeSet<(String, String)> = image
        .packages
        .iter()
        .inspect(|p| assert_eq!(p.kind, PackageKind::Cargo))
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("libc", "0.2.150"),
        ("serde", "1.0.193"),
        ("serde_derive", "1.0.193"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(found, expected);
    assert!(image
        .packages
        .iter()
        .all(|p| p.purl.starts_with("pkg:cargo/")));
}

#[test]
fn dotnet_deps_json() {
    // The shape `dotnet publish` writes, with its byte-order mark.
    let deps = "\u{feff}{
  \"runtimeTarget\": {\"name\": \".NETCoreApp,Version=v8.0\", \"signature\": \"\"},
  \"compilationOptions\": {},
  \"targets\": {
    \".NETCoreApp,Version=v8.0\": {
      \"webapp/1.0.0\": {\"dependencies\": {\"Newtonsoft.Json\": \"12.0.3\"}, \"runtime\": {\"webapp.dll\": {}}},
      \"Newtonsoft.Json/12.0.3\": {\"runtime\": {\"lib/netstandard2.0/Newtonsoft.Json.dll\": {\"assemblyVersion\": \"12.0.0.0\"}}},
      \"System.Text.Encodings.Web/4.5.0\": {}
    }
  },
  \"libraries\": {
    \"webapp/1.0.0\": {\"type\": \"project\", \"serviceable\": false, \"sha512\": \"\"},
    \"Newtonsoft.Json/12.0.3\": {\"type\": \"package\", \"serviceable\": true, \"sha512\": \"sha512-x\", \"path\": \"newtonsoft.json/12.0.3\"},
    \"System.Text.Encodings.Web/4.5.0\": {\"type\": \"package\", \"serviceable\": true, \"sha512\": \"sha512-y\"}
  }
}";
    let (_, image) = index(&[LayerBuilder::new()
        .file("app/webapp.deps.json", deps.as_bytes())
        .tar()]);
    let found: Vec<(&str, &str, &str)> = image
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.purl.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "Newtonsoft.Json",
                "12.0.3",
                "pkg:nuget/Newtonsoft.Json@12.0.3"
            ),
            (
                "System.Text.Encodings.Web",
                "4.5.0",
                "pkg:nuget/System.Text.Encodings.Web@4.5.0"
            ),
        ]
    );
}
