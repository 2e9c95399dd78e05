//! Test images made offline: random tar layers, image configs, manifests,
//! indexes, and OCI image layouts on disk. Every piece keeps its exact bytes,
//! so a test can compare what a client got back with what was pushed byte
//! for byte, by digest.

use std::collections::BTreeMap;
use std::path::Path;

use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest media type a test accepts when it reads a manifest back
/// raw; a registry must then answer with the type the manifest was pushed as.
pub const ALL_MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    data
}

/// A short random lowercase hex string, used to keep repository names of
/// concurrent tests apart when they share one external registry.
pub fn random_suffix() -> String {
    hex::encode(random_bytes(4))
}

/// A repository name unique to this run of a test, nested to exercise
/// multi-component names: `e2e/<prefix>-<random>`.
pub fn unique_repo(prefix: &str) -> String {
    format!("e2e/{prefix}-{}", random_suffix())
}

/// A blob with its exact bytes, media type and digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    /// The OCI descriptor of this blob.
    pub fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

/// A single-platform image: config, layers, and the manifest naming them.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub architecture: String,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Blob,
}

impl TestImage {
    /// Every blob and the manifest, keyed by digest.
    pub fn all_blobs(&self) -> BTreeMap<String, Blob> {
        let mut all = BTreeMap::new();
        for blob in self.layers.iter().chain([&self.config, &self.manifest]) {
            all.insert(blob.digest.clone(), blob.clone());
        }
        all
    }
}

/// A multi-platform image: its platform images and the index naming them.
#[derive(Clone, Debug)]
pub struct TestIndex {
    pub images: Vec<TestImage>,
    pub index: Blob,
}

impl TestIndex {
    pub fn all_blobs(&self) -> BTreeMap<String, Blob> {
        let mut all = BTreeMap::new();
        for image in &self.images {
            all.extend(image.all_blobs());
        }
        all.insert(self.index.digest.clone(), self.index.clone());
        all
    }
}

/// An uncompressed ustar archive holding regular files. Written by hand so
/// the tests need neither a tar crate nor the `tar` tool to make layers.
pub fn tar_archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        assert!(
            name.len() < 100,
            "tar_archive supports names under 100 bytes"
        );
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..108].copy_from_slice(b"0000644\0");
        header[108..116].copy_from_slice(b"0000000\0");
        header[116..124].copy_from_slice(b"0000000\0");
        header[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        header[136..148].copy_from_slice(b"00000000000\0");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        // The checksum is computed with its own field read as spaces.
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| b as u32).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// The regular files of an uncompressed tar archive, by name (a leading
/// `./` or `/` stripped). Handles the ustar prefix field and GNU long names,
/// which is what buildah and podman write.
pub fn tar_entries(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut entries = BTreeMap::new();
    let mut offset = 0;
    let mut long_name: Option<String> = None;
    while offset + 512 <= archive.len() {
        let header = &archive[offset..offset + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let field = |range: std::ops::Range<usize>| {
            let raw = &header[range];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).into_owned()
        };
        let size = usize::from_str_radix(field(124..136).trim(), 8).unwrap_or(0);
        let type_flag = header[156];
        let data_start = offset + 512;
        let data = &archive[data_start..data_start + size];
        let mut name = field(0..100);
        let prefix = field(345..500);
        if &header[257..262] == b"ustar" && !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
        if let Some(long) = long_name.take() {
            name = long;
        }
        match type_flag {
            b'L' => {
                long_name = Some(
                    String::from_utf8_lossy(data)
                        .trim_end_matches('\0')
                        .to_string(),
                )
            }
            b'0' | 0 => {
                let clean = name
                    .trim_start_matches("./")
                    .trim_start_matches('/')
                    .to_string();
                entries.insert(clean, data.to_vec());
            }
            _ => {}
        }
        offset = data_start + size.div_ceil(512) * 512;
    }
    entries
}

/// Decompresses a layer according to its media type, with the system's
/// `gzip` and `zstd` tools (the clients under test need them anyway).
pub fn decompress_layer(media_type: &str, data: &[u8]) -> Vec<u8> {
    // Both the OCI (`...tar+gzip`) and Docker (`...tar.gzip`) names end so.
    let tool = if media_type.ends_with("gzip") {
        "gzip"
    } else if media_type.ends_with("zstd") {
        "zstd"
    } else {
        return data.to_vec();
    };
    pipe_through(std::process::Command::new(tool).arg("-dc"), data)
}

/// Runs a command with `input` on stdin and returns its stdout.
pub fn pipe_through(cmd: &mut std::process::Command, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // Writing from another thread keeps a large input from deadlocking
    // against the child's full stdout pipe.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("wait for child");
    writer.join().expect("writer thread").expect("write stdin");
    assert!(out.status.success(), "{cmd:?} failed with {}", out.status);
    out.stdout
}

/// Makes an image for `linux/<architecture>`: one random layer per entry of
/// `layer_sizes` (each a tar holding one file of that many random bytes),
/// `extra_layers` appended after them (to share layers between images), a
/// config with labels and environment, and an OCI manifest.
pub fn make_image(architecture: &str, layer_sizes: &[usize], extra_layers: &[Blob]) -> TestImage {
    let mut layers: Vec<Blob> = layer_sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let content = random_bytes(size);
            let name = format!("layer-{i}-{architecture}.bin");
            Blob::new(OCI_LAYER_TAR, tar_archive(&[(name.as_str(), &content)]))
        })
        .collect();
    layers.extend(extra_layers.iter().cloned());
    let config = json!({
        "architecture": architecture,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/bin", format!("BERTH_TEST_ARCH={architecture}")],
            "Labels": { "org.berth.test": "e2e", "org.berth.arch": architecture },
            "Cmd": ["/hello"]
        },
        // The layers are uncompressed, so their diff ids are their digests.
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>() },
        "history": layers.iter().map(|_| json!({ "created": "2024-01-01T00:00:00Z", "created_by": "berth e2e" })).collect::<Vec<_>>()
    });
    let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        "annotations": { "org.opencontainers.image.title": format!("berth e2e {architecture}") }
    });
    // Pretty-printed on purpose: a registry must keep a manifest's exact
    // bytes, whitespace included, or its digest changes.
    let manifest = Blob::new(OCI_MANIFEST, serde_json::to_vec_pretty(&manifest).unwrap());
    TestImage {
        architecture: architecture.to_string(),
        config,
        layers,
        manifest,
    }
}

/// Makes an index over images, each entry carrying its image's platform.
pub fn make_index(images: Vec<TestImage>) -> TestIndex {
    let manifests: Vec<Value> = images
        .iter()
        .map(|image| {
            let mut descriptor = image.manifest.descriptor();
            descriptor["platform"] = json!({ "architecture": image.architecture, "os": "linux" });
            descriptor
        })
        .collect();
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    TestIndex {
        images,
        index: Blob::new(OCI_INDEX, serde_json::to_vec_pretty(&index).unwrap()),
    }
}

/// Writes an OCI image layout holding `blobs`, with `top` (a manifest or an
/// index) named `tag` in its `index.json`.
pub fn write_oci_layout<'a>(
    dir: &Path,
    tag: &str,
    top: &'a Blob,
    blobs: impl IntoIterator<Item = &'a Blob>,
) {
    let blob_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir).unwrap();
    for blob in blobs.into_iter().chain([top]) {
        let hex = blob.digest.strip_prefix("sha256:").unwrap();
        std::fs::write(blob_dir.join(hex), &blob.bytes).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descriptor = top.descriptor();
    descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor] });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec_pretty(&index).unwrap(),
    )
    .unwrap();
}

/// Every blob of an OCI image layout (manifests included), keyed by
/// digest, after checking that each file's content matches its name.
pub fn read_oci_layout_blobs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut blobs = BTreeMap::new();
    for algorithm in std::fs::read_dir(dir.join("blobs")).unwrap() {
        let algorithm = algorithm.unwrap();
        for entry in std::fs::read_dir(algorithm.path()).unwrap() {
            let entry = entry.unwrap();
            let digest = format!(
                "{}:{}",
                algorithm.file_name().to_string_lossy(),
                entry.file_name().to_string_lossy()
            );
            let bytes = std::fs::read(entry.path()).unwrap();
            if digest.starts_with("sha256:") {
                assert_eq!(
                    sha256_digest(&bytes),
                    digest,
                    "layout blob content does not match its name"
                );
            }
            blobs.insert(digest, bytes);
        }
    }
    blobs
}

/// The descriptor `index.json` of an OCI layout gives for `tag`.
pub fn oci_layout_descriptor(dir: &Path, tag: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("tag {tag} not in {}", dir.display()))
        .clone()
}

/// Asserts that `got` holds every blob of `expected` with identical bytes.
pub fn assert_blobs_match(expected: &BTreeMap<String, Blob>, got: &BTreeMap<String, Vec<u8>>) {
    for (digest, blob) in expected {
        let bytes = got
            .get(digest)
            .unwrap_or_else(|| panic!("blob {digest} ({}) is missing", blob.media_type));
        assert!(
            bytes == &blob.bytes,
            "blob {digest} ({}) differs",
            blob.media_type
        );
    }
}
