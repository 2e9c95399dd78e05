//! End to end with skopeo: OCI layouts made by the test are copied into the
//! registry, back out, between repositories, synced, inspected, listed and
//! deleted, and every manifest and blob is compared byte for byte by digest.
//!
//! skopeo 1.9 uploads each blob as POST, one streamed PATCH without
//! `Content-Range`, then PUT with `?digest=`; it has no option for chunked
//! uploads, so chunked pushes are covered by the oci-client tests instead.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::containers::ContainersEnv;
use support::oci::{
    assert_blobs_match, make_image, make_index, oci_layout_descriptor, read_oci_layout_blobs,
    tar_archive, unique_repo, write_oci_layout, Blob, TestImage, TestIndex, OCI_LAYER_TAR,
};
use support::registry_http::RegistryHttp;
use support::{is_external_registry, record_skip, require_tool, run, run_bytes, TestRegistry};

/// skopeo with the test's private configuration and signature policy. TLS
/// verification is also turned off per command, because that is how users
/// point skopeo at a plain-HTTP registry.
fn skopeo(env: &ContainersEnv, skopeo: &Path) -> Command {
    let mut cmd = env.command(skopeo);
    cmd.arg("--policy").arg(env.policy());
    cmd
}

/// A multi-arch index over two images with several random layers each; one
/// layer is shared by both so that deduplication is exercised too. The
/// amd64 image has a 5 MiB layer so that uploads span many reads.
fn multi_arch_index() -> TestIndex {
    let shared = Blob::new(
        OCI_LAYER_TAR,
        tar_archive(&[("shared.txt", b"shared by both platforms\n")]),
    );
    let amd64 = make_image(
        "amd64",
        &[1024, 300 * 1024, 5 * 1024 * 1024],
        std::slice::from_ref(&shared),
    );
    let arm64 = make_image("arm64", &[2048, 100 * 1024], &[shared]);
    make_index(vec![amd64, arm64])
}

/// Writes `index` as an OCI layout in a new temp dir, tagged `tag`.
fn index_layout(index: &TestIndex, tag: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let blobs = index.all_blobs();
    write_oci_layout(dir.path(), tag, &index.index, blobs.values());
    dir
}

fn image_layout(image: &TestImage, tag: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let blobs = image.all_blobs();
    write_oci_layout(dir.path(), tag, &image.manifest, blobs.values());
    dir
}

fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// Copies `src` to `dest` with every platform of an index and digests kept
/// exactly (`--preserve-digests` makes skopeo fail rather than rewrite a
/// manifest, so a digest mismatch surfaces as an error, not a silent edit).
fn copy_all(env: &ContainersEnv, tool: &Path, src: &str, dest: &str) {
    run(skopeo(env, tool).args([
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        src,
        dest,
    ]));
}

fn setup(test: &str) -> Option<(PathBuf, TestRegistry, ContainersEnv, RegistryHttp)> {
    let tool = require_tool("skopeo", test)?;
    // Blobs by `sendfile`, as to a client on another machine (the default
    // copies them to loopback clients): skopeo pulls through that path.
    let registry = TestRegistry::start_with(&["--sendfile", "true"]);
    let env = ContainersEnv::new(&registry.addr);
    let http = RegistryHttp::new(&registry.addr);
    Some((tool, registry, env, http))
}

#[test]
fn skopeo_copies_a_multi_arch_layout_into_the_registry_and_back_byte_for_byte() {
    let Some((tool, registry, env, http)) =
        setup("skopeo_copies_a_multi_arch_layout_into_the_registry_and_back")
    else {
        return;
    };
    let index = multi_arch_index();
    let layout = index_layout(&index, "v1");
    let repo = unique_repo("skopeo-copy");
    let remote = format!("docker://{}/{repo}:v1", registry.addr);

    copy_all(&env, &tool, &oci_ref(layout.path(), "v1"), &remote);
    http.assert_index(&repo, "v1", &index);

    // Out again into a fresh layout: every blob and manifest must come back
    // with identical bytes, and the tag must name the same index digest.
    let out = tempfile::tempdir().unwrap();
    copy_all(&env, &tool, &remote, &oci_ref(out.path(), "v1"));
    assert_blobs_match(&index.all_blobs(), &read_oci_layout_blobs(out.path()));
    let descriptor = oci_layout_descriptor(out.path(), "v1");
    assert_eq!(descriptor["digest"], index.index.digest.as_str());
    assert_eq!(descriptor["mediaType"], index.index.media_type.as_str());

    // `inspect --raw` returns the stored manifest bytes unchanged, for the
    // index by tag and for a platform manifest by digest.
    let raw =
        run_bytes(skopeo(&env, &tool).args(["inspect", "--raw", "--tls-verify=false", &remote]));
    assert!(
        raw == index.index.bytes,
        "inspect --raw of the index differs from what was pushed"
    );
    let arm64 = &index.images[1];
    let by_digest = format!(
        "docker://{}/{repo}@{}",
        registry.addr, arm64.manifest.digest
    );
    let raw =
        run_bytes(skopeo(&env, &tool).args(["inspect", "--raw", "--tls-verify=false", &by_digest]));
    assert!(
        raw == arm64.manifest.bytes,
        "inspect --raw of the arm64 manifest differs"
    );

    // `inspect --config --raw` resolves the index to a platform and returns
    // that platform's config blob unchanged.
    let config = run_bytes(skopeo(&env, &tool).args([
        "--override-arch",
        "arm64",
        "--override-os",
        "linux",
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &remote,
    ]));
    assert!(
        config == arm64.config.bytes,
        "inspect --config --raw differs from the pushed config"
    );

    // Plain `inspect` reads the config and reports its fields.
    let inspected: serde_json::Value = serde_json::from_str(&run(skopeo(&env, &tool).args([
        "--override-arch",
        "arm64",
        "--override-os",
        "linux",
        "inspect",
        "--tls-verify=false",
        &remote,
    ])))
    .unwrap();
    assert_eq!(inspected["Architecture"], "arm64");
    assert_eq!(inspected["Os"], "linux");
    assert_eq!(inspected["Labels"]["org.berth.arch"], "arm64");
    assert!(inspected["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "BERTH_TEST_ARCH=arm64"));
    let layers: Vec<&str> = inspected["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let expected: Vec<&str> = arm64.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(layers, expected);
    assert_eq!(inspected["RepoTags"], serde_json::json!(["v1"]));
}

#[test]
fn skopeo_copies_between_two_repositories_of_the_registry() {
    let Some((tool, registry, env, http)) =
        setup("skopeo_copies_between_two_repositories_of_the_registry")
    else {
        return;
    };
    let index = multi_arch_index();
    let layout = index_layout(&index, "v1");
    let source = unique_repo("skopeo-source");
    let destination = unique_repo("skopeo-destination");
    let addr = &registry.addr;
    copy_all(
        &env,
        &tool,
        &oci_ref(layout.path(), "v1"),
        &format!("docker://{addr}/{source}:v1"),
    );

    // The whole index, under a different tag in another repository. skopeo
    // offers the registry a cross-repository mount for each blob it knows
    // is in the source repository.
    copy_all(
        &env,
        &tool,
        &format!("docker://{addr}/{source}:v1"),
        &format!("docker://{addr}/{destination}:v2"),
    );
    http.assert_index(&destination, "v2", &index);
    assert_eq!(http.tags(&destination), vec!["v2".to_string()]);

    // Only one platform, picked from the index: the destination gets the
    // platform manifest itself, unchanged.
    let single = unique_repo("skopeo-single");
    run(skopeo(&env, &tool).args([
        "--override-arch",
        "amd64",
        "--override-os",
        "linux",
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{addr}/{source}:v1"),
        &format!("docker://{addr}/{single}:amd64"),
    ]));
    http.assert_image(&single, "amd64", &index.images[0]);
    // The source is untouched by copies out of it.
    http.assert_index(&source, "v1", &index);
}

#[test]
fn skopeo_lists_tags_and_deletes_manifests() {
    let Some((tool, registry, env, http)) = setup("skopeo_lists_tags_and_deletes_manifests") else {
        return;
    };
    let addr = &registry.addr;
    let repo = unique_repo("skopeo-delete");
    let first = make_image("amd64", &[4096, 1024], &[]);
    let second = make_image("amd64", &[2048], &[]);
    let first_layout = image_layout(&first, "x");
    let second_layout = image_layout(&second, "x");
    for tag in ["v1", "v3"] {
        copy_all(
            &env,
            &tool,
            &oci_ref(first_layout.path(), "x"),
            &format!("docker://{addr}/{repo}:{tag}"),
        );
    }
    copy_all(
        &env,
        &tool,
        &oci_ref(second_layout.path(), "x"),
        &format!("docker://{addr}/{repo}:v2"),
    );

    let list_tags = |expected: &[&str]| {
        let listed: serde_json::Value = serde_json::from_str(&run(skopeo(&env, &tool).args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{addr}/{repo}"),
        ])))
        .unwrap();
        assert_eq!(listed["Repository"], format!("{addr}/{repo}"));
        let mut tags: Vec<String> = listed["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        tags.sort();
        assert_eq!(tags, expected);
    };
    list_tags(&["v1", "v2", "v3"]);

    // `skopeo delete` by tag resolves the tag to a digest and deletes the
    // manifest by digest; the tag pointing at it goes with it.
    run(skopeo(&env, &tool).args([
        "delete",
        "--tls-verify=false",
        &format!("docker://{addr}/{repo}:v2"),
    ]));
    http.get_manifest(&repo, &second.manifest.digest)
        .expect_status(404, "deleted manifest by digest");
    http.get_manifest(&repo, "v2")
        .expect_status(404, "tag of the deleted manifest");
    list_tags(&["v1", "v3"]);
    // Deleting one manifest leaves another that shares nothing with it intact.
    http.assert_image(&repo, "v1", &first);

    // Deleting by digest removes every tag that names the manifest.
    run(skopeo(&env, &tool).args([
        "delete",
        "--tls-verify=false",
        &format!("docker://{addr}/{repo}@{}", first.manifest.digest),
    ]));
    for reference in ["v1", "v3", first.manifest.digest.as_str()] {
        http.get_manifest(&repo, reference)
            .expect_status(404, &format!("{reference} after delete by digest"));
    }
}

#[test]
fn skopeo_syncs_a_repository_to_a_mirror_and_to_disk() {
    let Some((tool, registry, env, http)) =
        setup("skopeo_syncs_a_repository_to_a_mirror_and_to_disk")
    else {
        return;
    };
    let addr = &registry.addr;
    let index = multi_arch_index();
    let image = make_image("amd64", &[8192, 512], &[]);
    let index_dir = index_layout(&index, "x");
    let image_dir = image_layout(&image, "x");
    // `sync` names destinations by the last component of the source
    // repository, so the source ends in a fixed name.
    let source_parent = unique_repo("skopeo-sync");
    let source = format!("{source_parent}/app");
    copy_all(
        &env,
        &tool,
        &oci_ref(index_dir.path(), "x"),
        &format!("docker://{addr}/{source}:multi"),
    );
    copy_all(
        &env,
        &tool,
        &oci_ref(image_dir.path(), "x"),
        &format!("docker://{addr}/{source}:single"),
    );

    // Registry to registry: every tag of the repository (found through the
    // tag list) is copied to the mirror with digests preserved.
    let mirror = unique_repo("skopeo-mirror");
    run(skopeo(&env, &tool).args([
        "sync",
        "--all",
        "--preserve-digests",
        "--src",
        "docker",
        "--dest",
        "docker",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("{addr}/{source}"),
        &format!("{addr}/{mirror}"),
    ]));
    http.assert_index(&format!("{mirror}/app"), "multi", &index);
    http.assert_image(&format!("{mirror}/app"), "single", &image);
    let mut tags = http.tags(&format!("{mirror}/app"));
    tags.sort();
    assert_eq!(tags, ["multi", "single"]);

    // Registry to disk: skopeo writes one `dir:` image per tag, holding the
    // manifest and every blob under its hex digest.
    let disk = tempfile::tempdir().unwrap();
    run(skopeo(&env, &tool).args([
        "sync",
        "--all",
        "--preserve-digests",
        "--src",
        "docker",
        "--dest",
        "dir",
        "--src-tls-verify=false",
        &format!("{addr}/{source}:single"),
        disk.path().to_str().unwrap(),
    ]));
    let image_out = disk.path().join("app:single");
    let manifest = std::fs::read(image_out.join("manifest.json")).unwrap();
    assert!(manifest == image.manifest.bytes, "synced manifest differs");
    for blob in image.layers.iter().chain([&image.config]) {
        let bytes =
            std::fs::read(image_out.join(blob.digest.strip_prefix("sha256:").unwrap())).unwrap();
        assert!(bytes == blob.bytes, "synced blob {} differs", blob.digest);
    }
}

#[test]
fn skopeo_pulls_back_what_it_pushed_after_a_registry_restart() {
    let test = "skopeo_pulls_back_what_it_pushed_after_a_registry_restart";
    if is_external_registry() {
        record_skip(
            test,
            "BERTH_E2E_REGISTRY names an external registry, which the test cannot restart",
        );
        return;
    }
    let Some((tool, mut registry, env, _)) = setup(test) else {
        return;
    };
    let index = multi_arch_index();
    let layout = index_layout(&index, "v1");
    let repo = unique_repo("skopeo-restart");
    copy_all(
        &env,
        &tool,
        &oci_ref(layout.path(), "v1"),
        &format!("docker://{}/{repo}:v1", registry.addr),
    );

    // The restarted server listens on a new port; everything it confirmed
    // before the restart must still be there, byte for byte.
    registry.restart(&[]);
    let env = ContainersEnv::new(&registry.addr);
    RegistryHttp::new(&registry.addr).assert_index(&repo, "v1", &index);
    let out = tempfile::tempdir().unwrap();
    copy_all(
        &env,
        &tool,
        &format!("docker://{}/{repo}:v1", registry.addr),
        &oci_ref(out.path(), "v1"),
    );
    assert_blobs_match(&index.all_blobs(), &read_oci_layout_blobs(out.path()));
    assert_eq!(
        oci_layout_descriptor(out.path(), "v1")["digest"],
        index.index.digest.as_str()
    );
}
