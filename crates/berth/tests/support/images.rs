//! Test images built offline: a root filesystem holding a static busybox
//! (from Debian's `busybox-static` package), packed either as a plain tarball
//! for `docker import` or as an OCI image layout archive for `ctr images
//! import`. The machines that run these tests have no internet, so nothing
//! here may pull a base image.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_oci::digest::{Algorithm, Digest};

use super::{record_skip, run};

/// Where Debian's `busybox-static` package installs its binary.
const BUSYBOX: &str = "/bin/busybox";

/// The busybox applets linked into the test root filesystem: enough for a
/// shell and for `cat` to print the file the tests check.
const APPLETS: &[&str] = &["sh", "cat", "ls", "echo", "true"];

/// Finds a statically linked busybox. A dynamically linked one (Debian's
/// plain `busybox` package installs the same path) cannot run inside a root
/// filesystem without a C library, so it counts as missing. Like
/// `require_tool`, a missing busybox is a loud skip outside CI and a failure
/// inside it.
pub fn require_static_busybox(test: &str) -> Option<PathBuf> {
    let path = PathBuf::from(BUSYBOX);
    let is_static = std::fs::read(&path)
        .map(|bytes| !contains(&bytes, b"/lib64/ld-linux") && !contains(&bytes, b"/lib/ld-linux"))
        .unwrap_or(false);
    if is_static {
        return Some(path);
    }
    if in_ci() {
        panic!("{test}: a static {BUSYBOX} (Debian package busybox-static) is required (CI=true)");
    }
    record_skip(
        test,
        "a static /bin/busybox is missing (apt-get install busybox-static)",
    );
    None
}

/// Whether the tests run in CI (`CI=true`), where every client and daemon is
/// installed, so whatever is missing is a failure rather than a skip. This is
/// the same rule `require_tool` applies.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Writes a root filesystem into `dir/rootfs` (busybox, its applet links and
/// the given extra files) and packs it into the uncompressed tarball
/// `dir/NAME.tar`, which is returned. Owners and times are fixed so that the
/// same inputs give the same bytes, and so the same layer digest.
pub fn busybox_rootfs_tar(dir: &Path, name: &str, extra_files: &[(&str, &[u8])]) -> PathBuf {
    let rootfs = dir.join(format!("{name}-rootfs"));
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).expect("create rootfs/bin");
    std::fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox into the rootfs");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("link busybox applet");
    }
    for (path, contents) in extra_files {
        let target = rootfs.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().expect("file has a parent"))
            .expect("create parent");
        std::fs::write(&target, contents).expect("write extra rootfs file");
    }
    let tarball = dir.join(format!("{name}.tar"));
    run(Command::new("tar")
        .arg("--create")
        .arg("--file")
        .arg(&tarball)
        .arg("--directory")
        .arg(&rootfs)
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            ".",
        ]));
    tarball
}

/// An OCI image built by `oci_image_archive`, with the digests that a round
/// trip through a registry must preserve.
pub struct OciImage {
    /// The `oci-archive` tarball (an OCI image layout packed with tar).
    pub archive: PathBuf,
    /// The image manifest, byte for byte as written into the layout.
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// The gzip-compressed layer, byte for byte.
    pub layer: Vec<u8>,
    pub layer_digest: Digest,
}

/// Builds a one-layer linux/amd64 OCI image from a busybox root filesystem
/// with the given extra files, and packs its image layout into
/// `dir/NAME.oci.tar`. The index entry carries the reference `image_name` in
/// the annotation containerd reads to name what it imports
/// (`io.containerd.image.name`) and in the standard OCI one.
pub fn oci_image_archive(
    dir: &Path,
    name: &str,
    image_name: &str,
    extra_files: &[(&str, &[u8])],
) -> OciImage {
    let rootfs_tar = busybox_rootfs_tar(dir, name, extra_files);
    let uncompressed = std::fs::read(&rootfs_tar).expect("read rootfs tar");
    let diff_id = Algorithm::Sha256.digest_of(&uncompressed);
    // `gzip -n` leaves out the name and time stamp, so the layer digest is
    // stable for the same root filesystem.
    let gzip = Command::new("gzip")
        .args(["-n", "-c"])
        .arg(&rootfs_tar)
        .output()
        .expect("run gzip");
    assert!(
        gzip.status.success(),
        "gzip failed: {}",
        String::from_utf8_lossy(&gzip.stderr)
    );
    let layer = gzip.stdout;
    let layer_digest = Algorithm::Sha256.digest_of(&layer);

    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/bin/sh"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id.as_str()] },
    }))
    .expect("encode config");
    let config_digest = Algorithm::Sha256.digest_of(&config);

    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.as_str(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest.as_str(),
            "size": layer.len(),
        }],
    }))
    .expect("encode manifest");
    let manifest_digest = Algorithm::Sha256.digest_of(&manifest);

    let tag = image_name
        .rsplit_once(':')
        .map(|(_, tag)| tag)
        .unwrap_or("latest");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest.as_str(),
            "size": manifest.len(),
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": image_name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .expect("encode index");

    let layout = dir.join(format!("{name}-layout"));
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("create layout blobs");
    for (digest, bytes) in [
        (&config_digest, &config),
        (&layer_digest, &layer),
        (&manifest_digest, &manifest),
    ] {
        std::fs::write(blobs.join(digest.encoded()), bytes).expect("write blob");
    }
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");
    std::fs::write(layout.join("index.json"), &index).expect("write index.json");

    let archive = dir.join(format!("{name}.oci.tar"));
    run(Command::new("tar")
        .arg("--create")
        .arg("--file")
        .arg(&archive)
        .arg("--directory")
        .arg(&layout)
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            ".",
        ]));
    OciImage {
        archive,
        manifest,
        manifest_digest,
        config_digest,
        layer,
        layer_digest,
    }
}
