//! What indexing finds: per layer ([`LayerIndex`], reusable by content
//! address: a layer shared by a thousand images is read once) and per
//! image ([`IndexReport`], the layers coalesced in order with whiteouts
//! applied).

use std::collections::BTreeMap;

use berth_oci::Digest;
use serde::{Deserialize, Serialize};

use crate::purl;
use crate::version::Scheme;

/// Where a package comes from: the package manager (and so the version
/// order and the purl type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageKind {
    /// Debian and Ubuntu (`var/lib/dpkg`).
    Dpkg,
    /// Alpine (`lib/apk/db/installed`).
    Apk,
    /// Red Hat family, SUSE (rpmdb).
    Rpm,
    /// PyPI distributions (`.dist-info`, `.egg-info`).
    Python,
    /// npm packages (`node_modules`, `package-lock.json`).
    Npm,
    /// Rust crates (`Cargo.lock`, cargo-auditable data in binaries).
    Cargo,
    /// Go modules (build information in binaries).
    Go,
    /// Maven artifacts (`pom.properties` inside Java archives).
    Maven,
    /// Ruby gems (`specifications/*.gemspec`).
    Gem,
    /// PHP Composer packages (`composer.lock`).
    Composer,
    /// .NET NuGet packages (`*.deps.json`).
    NuGet,
}

impl PackageKind {
    /// Whether packages of this kind are the operating system's.
    pub fn is_os(self) -> bool {
        matches!(
            self,
            PackageKind::Dpkg | PackageKind::Apk | PackageKind::Rpm
        )
    }

    /// The version order of this kind's packages.
    pub fn scheme(self) -> Scheme {
        match self {
            PackageKind::Dpkg => Scheme::Dpkg,
            PackageKind::Apk => Scheme::Apk,
            PackageKind::Rpm => Scheme::Rpm,
            PackageKind::Python => Scheme::Pep440,
            PackageKind::Npm => Scheme::Npm,
            PackageKind::Cargo => Scheme::Cargo,
            PackageKind::Go => Scheme::Go,
            PackageKind::Maven => Scheme::Maven,
            PackageKind::Gem => Scheme::RubyGems,
            PackageKind::Composer => Scheme::Composer,
            PackageKind::NuGet => Scheme::NuGet,
        }
    }

    /// The OSV ecosystem of language packages (OS packages take theirs from
    /// the distribution).
    pub fn language_ecosystem(self) -> Option<&'static str> {
        Some(match self {
            PackageKind::Python => "PyPI",
            PackageKind::Npm => "npm",
            PackageKind::Cargo => "crates.io",
            PackageKind::Go => "Go",
            PackageKind::Maven => "Maven",
            PackageKind::Gem => "RubyGems",
            PackageKind::Composer => "Packagist",
            PackageKind::NuGet => "NuGet",
            PackageKind::Dpkg | PackageKind::Apk | PackageKind::Rpm => return None,
        })
    }
}

/// The package a binary package was built from, when the package manager
/// records one (dpkg `Source:`, apk `origin`, rpm `SOURCERPM`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourcePackage {
    pub name: String,
    pub version: String,
}

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub kind: PackageKind,
    /// The name as the package manager writes it (a Maven package is
    /// `group:artifact`, a Go module its path, an npm package may be
    /// `@scope/name`).
    pub name: String,
    /// The version as the package manager writes it (an rpm version is
    /// `[epoch:]version-release`).
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourcePackage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The package URL (package-url spec). Empty inside a [`LayerIndex`]:
    /// an OS package's purl names the distribution, which a layer alone
    /// may not know; [`IndexReport::from_layers`] fills it in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub purl: String,
    /// The file the package was found in, relative to the image root
    /// (a path inside an archive is `outer.war!/WEB-INF/lib/inner.jar`).
    pub location: String,
    /// The layer (its digest) that installed this version of the package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Digest>,
}

impl Package {
    /// A package found by an analyzer, before it has a layer or a purl.
    pub fn new(kind: PackageKind, name: impl Into<String>, version: impl Into<String>) -> Self {
        Package {
            kind,
            name: name.into(),
            version: version.into(),
            source: None,
            arch: None,
            purl: String::new(),
            location: String::new(),
            layer: None,
        }
    }

    /// The source package's name, or the package's own when it has none
    /// (Debian builds `libc6` from `glibc`; `bash` from `bash`).
    pub fn source_name(&self) -> &str {
        self.source.as_ref().map_or(&self.name, |s| &s.name)
    }

    /// The source package's version, or the package's own.
    pub fn source_version(&self) -> &str {
        self.source.as_ref().map_or(&self.version, |s| &s.version)
    }

    /// The identity used to follow a package across layers: the same
    /// package at the same version in the same file.
    fn identity(&self) -> (PackageKind, &str, &str, Option<&str>) {
        (self.kind, &self.name, &self.version, self.arch.as_deref())
    }
}

/// The operating system of an image, from `os-release` and friends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Distribution {
    /// `ID` of os-release, lowercase (`debian`, `ubuntu`, `alpine`,
    /// `almalinux`, `rocky`, `rhel`, `centos`, `fedora`, …).
    pub id: String,
    /// `VERSION_ID` (`12`, `3.20.3`, `9.4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// `VERSION_CODENAME` (`bookworm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_codename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
}

impl Distribution {
    /// The OSV ecosystem and release this distribution's packages are
    /// matched under (`Debian`, `12`), if the scanner knows it.
    pub fn osv_ecosystem(&self) -> Option<(&'static str, String)> {
        let version = self.version_id.as_deref().unwrap_or("");
        let major = version.split('.').next().unwrap_or("");
        let major_minor = version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
        Some(match self.id.as_str() {
            "debian" => ("Debian", major.to_string()),
            "ubuntu" => ("Ubuntu", version.to_string()),
            "alpine" => ("Alpine", format!("v{major_minor}")),
            "almalinux" => ("AlmaLinux", major.to_string()),
            "rocky" => ("Rocky Linux", major.to_string()),
            "wolfi" => ("Wolfi", String::new()),
            "chainguard" => ("Chainguard", String::new()),
            "opensuse-leap" => ("openSUSE", format!("Leap {version}")),
            _ => return None,
        })
    }

    /// The purl namespace of this distribution's packages (`debian`).
    pub fn purl_namespace(&self) -> &str {
        &self.id
    }
}

/// Why a result is partial: what could not be read, and where.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The layer, when the problem is a layer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Digest>,
    /// The file, when the problem is a file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What went wrong, for people.
    pub detail: String,
}

/// The kinds of [`Problem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The layer is not a readable (compressed) tar stream from some point.
    MalformedArchive,
    /// A file some analyzer wanted could not be parsed.
    MalformedFile,
    /// A file was larger than the size cap, or the memory budget was spent.
    FileTooLarge,
    /// The layer decompressed to more than the cap.
    DecompressedLimit,
    /// The layer decompressed at a ratio above the cap (a bomb).
    CompressionRatio,
    /// The layer had more entries than the cap.
    TooManyEntries,
    /// The layer had more packages than the cap; the rest are not listed.
    TooManyPackages,
    /// Archives were nested deeper than the cap.
    ArchiveDepth,
    /// Reading the layer failed (the blob store's error).
    Read,
    /// A bug in the scanner, caught before it could take the server down.
    Internal,
}

/// What one file at one path in one layer holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum FileContents {
    /// The path holds something no analyzer could read a package from
    /// (a symbolic link, a replaced binary): it still hides what lower
    /// layers had at this path.
    Nothing,
    /// An OS release file.
    Distribution { distribution: Distribution },
    /// Packages.
    Packages { packages: Vec<Package> },
}

/// One analyzed path of a layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The path relative to the image root, without a leading `/`.
    pub path: String,
    pub contents: FileContents,
}

/// What one layer holds, independent of every other layer, so it can be
/// stored by the layer's digest and reused by every image that has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerIndex {
    /// The layer's digest (as the manifest names it).
    pub layer: Digest,
    /// The analyzed paths, sorted by path.
    pub files: Vec<FileRecord>,
    /// Paths this layer deletes from the layers below (`.wh.NAME`),
    /// sorted.
    pub whiteouts: Vec<String>,
    /// Directories this layer makes opaque (`.wh..wh..opq`): nothing below
    /// them in lower layers is visible. Sorted.
    pub opaque_dirs: Vec<String>,
    /// Why the index is partial; empty when the whole layer was read.
    pub problems: Vec<Problem>,
    pub stats: LayerStats,
}

/// Counters of one layer's indexing, for metrics and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerStats {
    pub compressed_bytes: u64,
    pub decompressed_bytes: u64,
    pub entries: u64,
    /// Files read into memory to be parsed.
    pub files_read: u64,
    /// The most bytes held at once by file buffers.
    pub peak_buffered_bytes: u64,
}

/// An image's packages and distribution: its layers' indexes coalesced in
/// order, with whiteouts and opaque directories applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Distribution>,
    /// Sorted by kind, name, version, then location.
    pub packages: Vec<Package>,
    /// The layers, bottom first.
    pub layers: Vec<Digest>,
    /// Why the report is partial; empty when every layer was read whole.
    pub problems: Vec<Problem>,
}

/// The os-release files in order of preference.
const DISTRIBUTION_FILES: [&str; 8] = [
    "etc/os-release",
    "usr/lib/os-release",
    "etc/alpine-release",
    "etc/debian_version",
    "etc/redhat-release",
    "etc/centos-release",
    "etc/almalinux-release",
    "etc/rocky-release",
];

/// A path's current record during the coalescing, its packages each with
/// the layer that first installed them.
struct Visible {
    contents: FileContents,
}

impl IndexReport {
    /// Coalesces the layers of an image, bottom layer first: each layer's
    /// whiteouts and opaque directories hide what the layers below had, and
    /// its files replace theirs at the same paths. A package keeps the
    /// layer that installed it as long as each later rewrite of its file
    /// (a package database rewritten by a later install) still lists it at
    /// the same version.
    pub fn from_layers(layers: &[LayerIndex]) -> IndexReport {
        let mut visible: BTreeMap<String, Visible> = BTreeMap::new();
        let mut problems = Vec::new();
        for layer in layers {
            for dir in &layer.opaque_dirs {
                remove_below(&mut visible, dir);
            }
            for path in &layer.whiteouts {
                visible.remove(path);
                remove_below(&mut visible, path);
            }
            for record in &layer.files {
                let mut contents = record.contents.clone();
                if let FileContents::Packages { packages } = &mut contents {
                    let earlier = match visible.get(&record.path) {
                        Some(Visible {
                            contents: FileContents::Packages { packages },
                        }) => packages
                            .iter()
                            .map(|p| (p.identity(), p.layer.clone()))
                            .collect::<BTreeMap<_, _>>(),
                        _ => BTreeMap::new(),
                    };
                    for package in packages.iter_mut() {
                        package.layer = match earlier.get(&package.identity()) {
                            Some(layer) => layer.clone(),
                            None => Some(layer.layer.clone()),
                        };
                        package.location = if package.location.is_empty() {
                            record.path.clone()
                        } else {
                            package.location.clone()
                        };
                    }
                }
                // A plain file replacing a directory hides the directory's
                // contents too.
                remove_below(&mut visible, &record.path);
                visible.insert(record.path.clone(), Visible { contents });
            }
            problems.extend(layer.problems.iter().cloned());
        }

        let distribution = DISTRIBUTION_FILES
            .iter()
            .find_map(|path| match visible.get(*path) {
                Some(Visible {
                    contents: FileContents::Distribution { distribution },
                }) => Some(distribution.clone()),
                _ => None,
            });
        let mut packages: Vec<Package> = visible
            .into_values()
            .filter_map(|v| match v.contents {
                FileContents::Packages { packages } => Some(packages),
                _ => None,
            })
            .flatten()
            .collect();
        for package in &mut packages {
            package.purl = purl::for_package(package, distribution.as_ref());
        }
        packages.sort_by(|a, b| {
            (a.kind, &a.name, &a.version, &a.location).cmp(&(
                b.kind,
                &b.name,
                &b.version,
                &b.location,
            ))
        });
        packages.dedup();
        problems.sort();
        problems.dedup();
        IndexReport {
            distribution,
            packages,
            layers: layers.iter().map(|l| l.layer.clone()).collect(),
            problems,
        }
    }

    /// Whether every layer was read whole.
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Removes every path strictly below `dir`.
fn remove_below(visible: &mut BTreeMap<String, Visible>, dir: &str) {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let below: Vec<String> = visible
        .range(prefix.clone()..)
        .take_while(|(path, _)| path.starts_with(&prefix))
        .map(|(path, _)| path.clone())
        .collect();
    for path in below {
        visible.remove(&path);
    }
}
