//! End to end with podman and buildah, each test on private `vfs` image
//! stores in temp dirs: images built offline with `buildah from scratch`,
//! pushed, pulled into a second empty store, tagged and pushed again, a
//! multi-arch manifest list pushed with `podman manifest push --all`, and a
//! zstd-compressed push. The registry's copy is checked independently of
//! podman: every layer must hash to its descriptor's digest and decompress
//! to the config's `diff_ids`, and hold the files the test put in.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::containers::ContainersEnv;
use support::oci::{
    decompress_layer, random_bytes, random_suffix, read_oci_layout_blobs, sha256_digest,
    tar_entries, unique_repo, OCI_INDEX, OCI_LAYER_ZSTD, OCI_MANIFEST,
};
use support::registry_http::RegistryHttp;
use support::{is_root, record_skip, require_tool, run, TestRegistry};

/// podman and buildah sharing one private image store.
struct Store {
    env: ContainersEnv,
    podman: PathBuf,
    buildah: PathBuf,
}

impl Store {
    fn new(registry: &TestRegistry, podman: &Path, buildah: &Path) -> Store {
        Store {
            env: ContainersEnv::new(&registry.addr),
            podman: podman.into(),
            buildah: buildah.into(),
        }
    }

    fn podman(&self, args: &[&str]) -> String {
        run(self.env.storage_command(&self.podman).args(args))
    }

    fn buildah(&self, args: &[&str]) -> String {
        run(self.env.storage_command(&self.buildah).args(args))
    }

    /// Builds `name` from scratch (or on top of `base`) with one new layer
    /// holding `files`, for `linux/<architecture>`, as an OCI image.
    fn build(&self, name: &str, base: Option<&str>, architecture: &str, files: &[(&str, &[u8])]) {
        let container = self
            .buildah(&["from", "--quiet", base.unwrap_or("scratch")])
            .trim()
            .to_string();
        let context = tempfile::tempdir().unwrap();
        for (path, content) in files {
            std::fs::write(context.path().join(path), content).unwrap();
            self.buildah(&[
                "copy",
                &container,
                context.path().join(path).to_str().unwrap(),
                &format!("/{path}"),
            ]);
        }
        self.buildah(&[
            "config",
            "--arch",
            architecture,
            "--os",
            "linux",
            "--label",
            "org.berth.test=podman",
            "--env",
            &format!("BERTH_TEST_ARCH={architecture}"),
            &container,
        ]);
        self.buildah(&["commit", "--quiet", "--format", "oci", &container, name]);
        self.buildah(&["rm", &container]);
    }

    /// Pushes with `podman push` and returns the manifest digest podman
    /// reports through `--digestfile`.
    fn push(&self, source: &str, destination: &str, extra: &[&str]) -> String {
        let digest_file = self.env.path("push-digest");
        let mut args = vec!["push", "--quiet", "--tls-verify=false", "--digestfile"];
        args.push(digest_file.to_str().unwrap());
        args.extend_from_slice(extra);
        args.extend_from_slice(&[source, destination]);
        self.podman(&args);
        std::fs::read_to_string(digest_file)
            .unwrap()
            .trim()
            .to_string()
    }

    /// The files in the image `name` as this store holds it, read from a
    /// `podman save` OCI layout with every layer applied in order.
    fn files_in(&self, name: &str) -> BTreeMap<String, Vec<u8>> {
        let out = tempfile::tempdir().unwrap();
        let layout = out.path().join("layout");
        self.podman(&[
            "save",
            "--quiet",
            "--format",
            "oci-dir",
            "-o",
            layout.to_str().unwrap(),
            name,
        ]);
        let blobs = read_oci_layout_blobs(&layout);
        let index: Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let manifest: Value =
            serde_json::from_slice(&blobs[index["manifests"][0]["digest"].as_str().unwrap()])
                .unwrap();
        let mut files = BTreeMap::new();
        for layer in manifest["layers"].as_array().unwrap() {
            let data = &blobs[layer["digest"].as_str().unwrap()];
            files.extend(tar_entries(&decompress_layer(
                layer["mediaType"].as_str().unwrap(),
                data,
            )));
        }
        files
    }
}

/// Finds both tools and checks privileges; podman and buildah on `vfs`
/// need root for `buildah from scratch` and for the store's ownership.
fn tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let podman = require_tool("podman", test)?;
    let buildah = require_tool("buildah", test)?;
    if !is_root() {
        record_skip(
            test,
            "podman and buildah on a private vfs store need root here",
        );
        return None;
    }
    Some((podman, buildah))
}

/// Checks the image `digest` in `repo` independently of podman: the
/// manifest hashes to its digest, every layer hashes to its descriptor and
/// decompresses to the config's diff id; returns the manifest, the config
/// and the files of all layers applied in order.
fn check_image(
    http: &RegistryHttp,
    repo: &str,
    digest: &str,
) -> (Value, Value, BTreeMap<String, Vec<u8>>) {
    let reply = http
        .get_manifest(repo, digest)
        .expect_status(200, "GET pushed manifest");
    assert_eq!(sha256_digest(&reply.body), digest);
    let manifest = reply.json();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config_reply = http
        .get_blob(repo, config_digest)
        .expect_status(200, "GET config");
    assert_eq!(sha256_digest(&config_reply.body), config_digest);
    let config = config_reply.json();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    let mut files = BTreeMap::new();
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let layer_digest = layer["digest"].as_str().unwrap();
        let blob = http
            .get_blob(repo, layer_digest)
            .expect_status(200, "GET layer");
        assert_eq!(sha256_digest(&blob.body), layer_digest);
        assert_eq!(blob.body.len() as u64, layer["size"].as_u64().unwrap());
        let tar = decompress_layer(layer["mediaType"].as_str().unwrap(), &blob.body);
        assert_eq!(
            sha256_digest(&tar),
            diff_id.as_str().unwrap(),
            "layer does not decompress to its diff id"
        );
        files.extend(tar_entries(&tar));
    }
    (manifest, config, files)
}

#[test]
fn podman_pushes_pulls_tags_and_pushes_again() {
    let test = "podman_pushes_pulls_tags_and_pushes_again";
    let Some((podman, buildah)) = tools(test) else {
        return;
    };
    let registry = TestRegistry::start();
    let http = RegistryHttp::new(&registry.addr);
    let builder = Store::new(&registry, &podman, &buildah);
    let hello = b"hello from berth e2e\n".to_vec();
    let data = random_bytes(300 * 1024);
    builder.build(
        "localhost/e2e/base:v1",
        None,
        "amd64",
        &[("hello.txt", &hello)],
    );
    builder.build(
        "localhost/e2e/app:v1",
        Some("localhost/e2e/base:v1"),
        "amd64",
        &[("data.bin", &data)],
    );

    let repo = unique_repo("podman");
    let remote = format!("{}/{repo}:v1", registry.addr);
    let digest = builder.push("localhost/e2e/app:v1", &format!("docker://{remote}"), &[]);
    let (manifest, config, files) = check_image(&http, &repo, &digest);
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        2,
        "base layer and app layer"
    );
    assert_eq!(config["config"]["Labels"]["org.berth.test"], "podman");
    assert!(
        files["hello.txt"] == hello && files["data.bin"] == data,
        "pushed layers lack the built files"
    );
    let by_tag = http
        .get_manifest(&repo, "v1")
        .expect_status(200, "GET manifest by tag");
    assert_eq!(
        sha256_digest(&by_tag.body),
        digest,
        "the tag names another manifest than podman pushed"
    );

    // A second, empty store pulls the image: same digest, same files.
    let puller = Store::new(&registry, &podman, &buildah);
    puller.podman(&["pull", "--quiet", "--tls-verify=false", &remote]);
    let pulled_digest = puller.podman(&["image", "inspect", "--format", "{{.Digest}}", &remote]);
    assert_eq!(pulled_digest.trim(), digest);
    let pulled = puller.files_in(&remote);
    assert!(
        pulled["hello.txt"] == hello && pulled["data.bin"] == data,
        "pulled image lacks the built files"
    );

    // Tag the pulled image into another repository and push it: podman
    // reuses the compressed layers it pulled, so the second repository gets
    // the same config and layers (offered as cross-repository mounts).
    let other = unique_repo("podman-tagged");
    let retagged = format!("{}/{other}:v2", registry.addr);
    puller.podman(&["tag", &remote, &retagged]);
    let second_digest = puller.push(&retagged, &format!("docker://{retagged}"), &[]);
    let (second, _, second_files) = check_image(&http, &other, &second_digest);
    assert_eq!(second["config"]["digest"], manifest["config"]["digest"]);
    assert_eq!(second_files, files);
    assert_eq!(http.tags(&other), ["v2"]);
}

#[test]
fn podman_pushes_a_multi_arch_manifest_list() {
    let test = "podman_pushes_a_multi_arch_manifest_list";
    let Some((podman, buildah)) = tools(test) else {
        return;
    };
    let registry = TestRegistry::start();
    let http = RegistryHttp::new(&registry.addr);
    let builder = Store::new(&registry, &podman, &buildah);
    let mut contents = BTreeMap::new();
    for architecture in ["amd64", "arm64"] {
        let content = format!("built for {architecture} {}", random_suffix()).into_bytes();
        builder.build(
            &format!("localhost/e2e/multi:{architecture}"),
            None,
            architecture,
            &[("arch.txt", &content)],
        );
        contents.insert(architecture.to_string(), content);
    }
    builder.podman(&["manifest", "create", "localhost/e2e/list:v1"]);
    for architecture in ["amd64", "arm64"] {
        builder.podman(&[
            "manifest",
            "add",
            "localhost/e2e/list:v1",
            &format!("containers-storage:localhost/e2e/multi:{architecture}"),
        ]);
    }
    let repo = unique_repo("podman-list");
    let remote = format!("{}/{repo}:v1", registry.addr);
    let digest_file = builder.env.path("list-digest");
    builder.podman(&[
        "manifest",
        "push",
        "--all",
        "--quiet",
        "--tls-verify=false",
        "--digestfile",
        digest_file.to_str().unwrap(),
        "localhost/e2e/list:v1",
        &format!("docker://{remote}"),
    ]);
    let digest = std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_string();

    // The index by tag is the one podman reports, and each platform entry
    // names a complete image for that platform in the same repository.
    let reply = http
        .get_manifest(&repo, "v1")
        .expect_status(200, "GET index");
    assert_eq!(sha256_digest(&reply.body), digest);
    assert_eq!(
        reply.header("docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    let index = reply.json();
    assert_eq!(index["mediaType"], OCI_INDEX);
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for entry in entries {
        let architecture = entry["platform"]["architecture"].as_str().unwrap();
        assert_eq!(entry["platform"]["os"], "linux");
        let (manifest, config, files) =
            check_image(&http, &repo, entry["digest"].as_str().unwrap());
        assert_eq!(entry["mediaType"], manifest["mediaType"]);
        assert_eq!(config["architecture"], architecture);
        assert!(
            files["arch.txt"] == contents[architecture],
            "{architecture} image has the wrong file"
        );
    }

    // Pulling for arm64 from an empty store resolves the index to arm64.
    let puller = Store::new(&registry, &podman, &buildah);
    puller.podman(&[
        "pull",
        "--quiet",
        "--tls-verify=false",
        "--arch",
        "arm64",
        &remote,
    ]);
    let architecture =
        puller.podman(&["image", "inspect", "--format", "{{.Architecture}}", &remote]);
    assert_eq!(architecture.trim(), "arm64");
    assert!(
        puller.files_in(&remote)["arch.txt"] == contents["arm64"],
        "pulled arm64 image has the wrong file"
    );
}

#[test]
fn podman_pushes_and_pulls_zstd_compressed_layers() {
    let test = "podman_pushes_and_pulls_zstd_compressed_layers";
    let Some((podman, buildah)) = tools(test) else {
        return;
    };
    let registry = TestRegistry::start();
    let http = RegistryHttp::new(&registry.addr);
    let builder = Store::new(&registry, &podman, &buildah);
    // Content never pushed before: podman 4.3 reuses any compressed variant
    // of a layer it already pushed (its blob-info cache remembers them), so
    // only new content is guaranteed to be compressed with zstd now.
    let data = random_bytes(200 * 1024);
    builder.build(
        "localhost/e2e/zstd:v1",
        None,
        "amd64",
        &[("data.bin", &data)],
    );
    let repo = unique_repo("podman-zstd");
    let remote = format!("{}/{repo}:v1", registry.addr);
    let digest = builder.push(
        "localhost/e2e/zstd:v1",
        &format!("docker://{remote}"),
        &["--format", "oci", "--compression-format", "zstd"],
    );

    let (manifest, _, files) = check_image(&http, &repo, &digest);
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(layer["mediaType"], OCI_LAYER_ZSTD);
        let blob = http.get_blob(&repo, layer["digest"].as_str().unwrap()).body;
        assert_eq!(
            &blob[..4],
            &[0x28, 0xb5, 0x2f, 0xfd],
            "layer is not a zstd frame"
        );
    }
    assert!(files["data.bin"] == data, "zstd layer lacks the built file");

    let puller = Store::new(&registry, &podman, &buildah);
    puller.podman(&["pull", "--quiet", "--tls-verify=false", &remote]);
    assert_eq!(
        puller
            .podman(&["image", "inspect", "--format", "{{.Digest}}", &remote])
            .trim(),
        digest
    );
    assert!(
        puller.files_in(&remote)["data.bin"] == data,
        "pulled zstd image lacks the built file"
    );
}
