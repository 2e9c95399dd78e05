//! End-to-end tests with the docker client: a private dockerd (started by the
//! test, see `support/dockerd.rs`) pushes to and pulls from the registry under
//! test, and every round trip is checked by digest and by content.
//!
//! Images are made offline: `docker import` of a static busybox root
//! filesystem, then a classic `docker build` that adds one file on top.

mod support;

use std::path::PathBuf;

use berth_oci::digest::Algorithm;
use support::cutting_proxy::{CuttingProxy, Exchange};
use support::distribution::Distribution;
use support::dockerd::Dockerd;
use support::{images, run, wire, TestRegistry};

/// A repository name made unique for this run. A fresh Berth starts empty
/// for every test, but a registry given in `BERTH_E2E_REGISTRY` keeps what
/// earlier runs pushed, and a layer already present in the target repository
/// would hide the cross-repository mount this suite checks.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{name}-{:x}", nanos & 0xffff_ffff)
}

/// The binaries one docker test needs, or `None` after a recorded skip.
struct DockerTools {
    dockerd: PathBuf,
    docker: PathBuf,
}

fn require_docker(test: &str) -> Option<DockerTools> {
    let dockerd = support::require_tool("dockerd", test)?;
    let docker = support::require_tool("docker", test)?;
    support::require_tool("runc", test)?;
    images::require_static_busybox(test)?;
    if !support::daemon::require_root(test) {
        return None;
    }
    Some(DockerTools { dockerd, docker })
}

/// Starts the registry first (dockerd must be told its port) and then a
/// private dockerd that treats it as an insecure registry.
///
/// The registry sends blobs by `sendfile` to this loopback client, as it
/// does by default to clients on other machines, so that a real client
/// pulls through that path too; podman, containerd and oras pull through
/// the default's copying path for loopback clients.
fn start(tools: &DockerTools) -> (TestRegistry, Dockerd) {
    let registry = TestRegistry::start_with(&["--sendfile", "true"]);
    let dockerd = Dockerd::start(&tools.dockerd, &tools.docker, &[&registry.addr]);
    (registry, dockerd)
}

/// Imports a busybox root filesystem as the local image `base` and builds
/// `image` from it with one more layer holding `/file` with `contents`.
fn build_image(dockerd: &Dockerd, base: &str, image: &str, contents: &str) {
    let context = dockerd
        .dir()
        .join(format!("context-{}", image.replace(['/', ':', '.'], "-")));
    std::fs::create_dir_all(&context).expect("create build context");
    let rootfs = images::busybox_rootfs_tar(&context, "rootfs", &[]);
    run(dockerd.docker().arg("import").arg(&rootfs).arg(base));
    // The tarball must not be part of the build context, or the COPY layer's
    // context upload grows for nothing; it already lives in the base image.
    std::fs::remove_file(&rootfs).expect("remove rootfs tarball");
    std::fs::remove_dir_all(context.join("rootfs-rootfs")).expect("remove rootfs directory");
    std::fs::write(context.join("file"), contents).expect("write file");
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {base}\nCOPY file /file\nCMD [\"cat\", \"/file\"]\n"),
    )
    .expect("write Dockerfile");
    run(dockerd
        .docker()
        .arg("build")
        .arg("--quiet")
        .arg("--tag")
        .arg(image)
        .arg(&context));
}

/// `docker push` and the digest it reports on its last line
/// (`TAG: digest: sha256:… size: N`).
fn push(dockerd: &Dockerd, image: &str) -> (String, String) {
    let output = run(dockerd.docker().arg("push").arg(image));
    let digest = output
        .lines()
        .find_map(|line| line.split("digest: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{output}"))
        .to_string();
    (digest, output)
}

/// A field of `docker image inspect` rendered as JSON.
fn inspect(dockerd: &Dockerd, image: &str, field: &str) -> serde_json::Value {
    let text = run(dockerd
        .docker()
        .args(["image", "inspect", "--format"])
        .arg(format!("{{{{json {field}}}}}"))
        .arg(image));
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("bad JSON from docker inspect ({e}): {text}"))
}

/// Removes every local image and checks that none is left, so that the next
/// pull must fetch every layer from the registry.
fn remove_all_images(dockerd: &Dockerd) {
    // Prune rather than `rmi ID…`: removing a child image also removes its
    // untagged parents, after which naming them again would fail.
    run(dockerd
        .docker()
        .args(["image", "prune", "--all", "--force"]));
    let left = run(dockerd.docker().args(["image", "ls", "--all", "--quiet"]));
    assert!(
        left.trim().is_empty(),
        "images left after docker rmi: {left}"
    );
}

fn run_file(dockerd: &Dockerd, image: &str) -> String {
    run(dockerd
        .docker()
        .args(["run", "--rm", "--network", "none"])
        .arg(image)
        .args(["cat", "/file"]))
}

/// Checks what the registry serves for `name:reference`: the bytes hash to
/// `digest`, `Docker-Content-Digest` says the same, and the manifest's
/// config is the image docker has locally. Returns the parsed manifest.
fn assert_registry_manifest(
    addr: &str,
    name: &str,
    reference: &str,
    digest: &str,
) -> serde_json::Value {
    let response = wire::get_manifest(addr, name, reference);
    assert_eq!(
        response.status,
        200,
        "GET manifest {name}:{reference}: {}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(
        Algorithm::Sha256.digest_of(&response.body).as_str(),
        digest,
        "manifest bytes of {name}:{reference}"
    );
    assert_eq!(
        response.header("docker-content-digest"),
        Some(digest),
        "Docker-Content-Digest of {name}:{reference}"
    );
    serde_json::from_slice(&response.body).expect("manifest is JSON")
}

/// Push a locally built image, remove every local image, pull it back by tag
/// and by digest, and run it: the digest docker records must be the one the
/// push reported, and the container must print the file the build added.
#[test]
fn docker_push_rmi_pull_and_run_round_trip() {
    let test = "docker_push_rmi_pull_and_run_round_trip";
    let Some(tools) = require_docker(test) else {
        return;
    };
    let (registry, dockerd) = start(&tools);
    let repo = unique("e2e/docker-round-trip");
    let image = format!("{}/{repo}:v1", registry.addr);
    let contents = "pushed by docker, pulled back by docker\n";
    build_image(&dockerd, "berth-e2e-base:round-trip", &image, contents);
    let image_id = inspect(&dockerd, &image, ".Id");

    let (digest, _) = push(&dockerd, &image);
    let repo_digests = inspect(&dockerd, &image, ".RepoDigests");
    let expected = format!("{}/{repo}@{digest}", registry.addr);
    assert_eq!(
        repo_digests,
        serde_json::json!([expected]),
        "RepoDigests after push"
    );

    // The registry must store the manifest byte for byte: its digest is the
    // one docker computed, and it names the local image's config (docker's
    // image ID is the config digest) and two layers (base and COPY).
    let manifest = assert_registry_manifest(&registry.addr, &repo, "v1", &digest);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["digest"], image_id,
        "config digest is the image ID"
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2, "base layer and COPY layer: {manifest}");
    for layer in layers {
        let blob_digest = layer["digest"].as_str().expect("layer digest");
        let head = wire::head_blob(&registry.addr, &repo, blob_digest);
        assert_eq!(head.status, 200, "HEAD layer {blob_digest}");
        assert_eq!(
            head.header("content-length"),
            Some(layer["size"].to_string().as_str()),
            "layer size"
        );
    }

    remove_all_images(&dockerd);
    let pulled = run(dockerd.docker().arg("pull").arg(&image));
    assert!(
        pulled.contains(&format!("Digest: {digest}")),
        "pull reports the pushed digest:\n{pulled}"
    );
    assert!(
        !pulled.contains("Already exists"),
        "every layer came from the registry:\n{pulled}"
    );
    assert_eq!(
        inspect(&dockerd, &image, ".Id"),
        image_id,
        "image ID after pull"
    );
    assert_eq!(
        inspect(&dockerd, &image, ".RepoDigests"),
        serde_json::json!([expected])
    );
    assert_eq!(run_file(&dockerd, &image), contents);

    // Pulling by digest goes through GET /v2/NAME/manifests/sha256:…, which
    // must answer the same bytes as the tag did.
    remove_all_images(&dockerd);
    let by_digest = format!("{}/{repo}@{digest}", registry.addr);
    run(dockerd.docker().arg("pull").arg(&by_digest));
    assert_eq!(
        inspect(&dockerd, &by_digest, ".Id"),
        image_id,
        "image ID after pull by digest"
    );
    assert_eq!(
        inspect(&dockerd, &by_digest, ".RepoDigests"),
        serde_json::json!([expected])
    );
    assert_eq!(run_file(&dockerd, &by_digest), contents);
}

/// Pushing an image that is already in one repository to a second one makes
/// docker try a cross-repository mount (`POST /v2/NEW/blobs/uploads/?mount=
/// DIGEST&from=OLD`) for each layer it knows to be in the old repository. A
/// registry that answers 201 makes docker print "Mounted from OLD"; one that
/// answers 202 makes it upload the layer again ("Pushed"). Berth mounts, so
/// the test insists on "Mounted from".
#[test]
fn docker_push_to_second_repository_mounts_layers() {
    let test = "docker_push_to_second_repository_mounts_layers";
    let Some(tools) = require_docker(test) else {
        return;
    };
    let (registry, dockerd) = start(&tools);
    let source_repo = unique("e2e/docker-mount-source");
    let target_repo = unique("e2e/docker-mount-target/nested");
    let first = format!("{}/{source_repo}:v1", registry.addr);
    let second = format!("{}/{target_repo}:v1", registry.addr);
    build_image(
        &dockerd,
        "berth-e2e-base:mount",
        &first,
        "mounted, not uploaded twice\n",
    );
    let (first_digest, _) = push(&dockerd, &first);

    run(dockerd.docker().arg("tag").arg(&first).arg(&second));
    let (second_digest, output) = push(&dockerd, &second);
    assert_eq!(
        second_digest, first_digest,
        "the same manifest has the same digest in both repositories"
    );
    let mounted = output
        .lines()
        .filter(|line| line.contains(&format!("Mounted from {source_repo}")))
        .count();
    assert_eq!(
        mounted, 2,
        "both layers are mounted from the first repository:\n{output}"
    );

    // The mounted blobs must now be served by the second repository itself.
    let manifest = assert_registry_manifest(&registry.addr, &target_repo, "v1", &second_digest);
    let mut blobs = vec![manifest["config"].clone()];
    blobs.extend(
        manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .cloned(),
    );
    for blob in blobs {
        let blob_digest = blob["digest"].as_str().expect("digest");
        let head = wire::head_blob(&registry.addr, &target_repo, blob_digest);
        assert_eq!(
            head.status, 200,
            "HEAD {blob_digest} in the second repository"
        );
        assert_eq!(head.header("docker-content-digest"), Some(blob_digest));
    }

    remove_all_images(&dockerd);
    run(dockerd.docker().arg("pull").arg(&second));
    assert_eq!(run_file(&dockerd, &second), "mounted, not uploaded twice\n");
}

/// The Debian/Go name of this machine's architecture, as docker records it
/// in the images it imports.
fn native_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `docker manifest create/annotate/push` makes a multi-platform manifest
/// list out of two pushed images; docker then pulls it by digest and must
/// pick the entry for this machine's platform.
#[test]
fn docker_manifest_list_push_and_pull_by_digest() {
    let test = "docker_manifest_list_push_and_pull_by_digest";
    let Some(tools) = require_docker(test) else {
        return;
    };
    let (registry, dockerd) = start(&tools);
    let list_repo = unique("e2e/docker-list");
    let native = format!("{}/{list_repo}-native:v1", registry.addr);
    let foreign = format!("{}/{list_repo}-foreign:v1", registry.addr);
    let list = format!("{}/{list_repo}:v1", registry.addr);
    let native_arch = native_architecture();
    let foreign_arch = if native_arch == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    build_image(
        &dockerd,
        "berth-e2e-base:list",
        &native,
        &format!("built for {native_arch}\n"),
    );
    build_image(
        &dockerd,
        "berth-e2e-base:list",
        &foreign,
        &format!("labelled {foreign_arch}\n"),
    );
    let (native_digest, _) = push(&dockerd, &native);
    let (foreign_digest, _) = push(&dockerd, &foreign);

    // `docker manifest` talks to the registry from the client itself, not
    // through dockerd, so it needs its own `--insecure` for plain HTTP.
    run(dockerd
        .docker()
        .args(["manifest", "create", "--insecure"])
        .arg(&list)
        .arg(&native)
        .arg(&foreign));
    run(dockerd
        .docker()
        .args([
            "manifest",
            "annotate",
            "--os",
            "linux",
            "--arch",
            foreign_arch,
        ])
        .arg(&list)
        .arg(&foreign));
    let pushed = run(dockerd
        .docker()
        .args(["manifest", "push", "--insecure", "--purge"])
        .arg(&list));
    // The last line of `docker manifest push` is the digest of the list.
    let list_digest = pushed.lines().last().unwrap_or_default().trim().to_string();
    assert!(
        list_digest.starts_with("sha256:"),
        "no list digest in:\n{pushed}"
    );

    let index = assert_registry_manifest(&registry.addr, &list_repo, "v1", &list_digest);
    assert_eq!(
        index["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let mut entries: Vec<(String, String)> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|entry| {
            (
                entry["digest"].as_str().expect("digest").to_string(),
                entry["platform"]["architecture"]
                    .as_str()
                    .expect("architecture")
                    .to_string(),
            )
        })
        .collect();
    // `docker manifest push` orders the entries by its own rules, not by the
    // command line, so compare them as a set.
    entries.sort();
    let mut expected_entries = vec![
        (native_digest.clone(), native_arch.to_string()),
        (foreign_digest.clone(), foreign_arch.to_string()),
    ];
    expected_entries.sort();
    assert_eq!(entries, expected_entries);
    // docker pushes each platform manifest into the list's repository (by
    // digest) before the list itself, so the registry can check that the
    // list only names manifests it holds.
    assert_registry_manifest(&registry.addr, &list_repo, &native_digest, &native_digest);
    assert_registry_manifest(&registry.addr, &list_repo, &foreign_digest, &foreign_digest);

    remove_all_images(&dockerd);
    let by_digest = format!("{}/{list_repo}@{list_digest}", registry.addr);
    run(dockerd.docker().arg("pull").arg(&by_digest));
    assert_eq!(
        inspect(&dockerd, &by_digest, ".RepoDigests"),
        serde_json::json!([by_digest.clone()]),
        "docker records the digest it pulled by: the list's"
    );
    assert_eq!(inspect(&dockerd, &by_digest, ".Architecture"), native_arch);
    assert_eq!(
        run_file(&dockerd, &by_digest),
        format!("built for {native_arch}\n")
    );
}

/// When a layer download breaks off, dockerd keeps what it received and, on
/// its retry (five seconds later), asks for the rest with `Range: bytes=N-`.
/// It accepts only `206 Partial Content` whose `Content-Range` starts at N; a
/// registry that answers `200` makes it start over. A proxy between dockerd
/// and the registry cuts the largest layer in half once, and the test checks
/// the resumed request, the registry's ranged answer, and the pulled image.
#[test]
fn docker_pull_resumes_broken_layer_download_with_range() {
    let test = "docker_pull_resumes_broken_layer_download_with_range";
    let Some(tools) = require_docker(test) else {
        return;
    };
    let registry = TestRegistry::start();
    let proxy = CuttingProxy::start(&registry.addr);
    let dockerd = Dockerd::start(
        &tools.dockerd,
        &tools.docker,
        &[&registry.addr, &proxy.addr],
    );
    let repo = unique("e2e/docker-range");
    let direct = format!("{}/{repo}:v1", registry.addr);
    let contents = "resumed with a range request\n";
    build_image(&dockerd, "berth-e2e-base:range", &direct, contents);
    let image_id = inspect(&dockerd, &direct, ".Id");
    let (digest, _) = push(&dockerd, &direct);

    let manifest = assert_registry_manifest(&registry.addr, &repo, "v1", &digest);
    let largest = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .max_by_key(|layer| layer["size"].as_u64().expect("size"))
        .expect("a layer")
        .clone();
    let layer_digest = largest["digest"].as_str().expect("digest").to_string();
    let layer_size = largest["size"].as_u64().expect("size");

    remove_all_images(&dockerd);
    proxy.cut_next_get(&format!("/v2/{repo}/blobs/{layer_digest}"));
    let through_proxy = format!("{}/{repo}:v1", proxy.addr);
    run(dockerd.docker().arg("pull").arg(&through_proxy));

    let downloads: Vec<Exchange> = proxy
        .exchanges()
        .into_iter()
        .filter(|exchange| exchange.method == "GET" && exchange.path.ends_with(&layer_digest))
        .collect();
    assert!(
        downloads.len() >= 2 && downloads[0].cut,
        "one cut download, then a retry: {downloads:#?}"
    );
    let resumed = downloads.last().expect("the retry");
    let offset: u64 = resumed
        .range
        .as_deref()
        .and_then(|range| range.strip_prefix("bytes="))
        .and_then(|range| range.strip_suffix('-'))
        .and_then(|start| start.parse().ok())
        .unwrap_or_else(|| {
            panic!("the retry asks for the rest with Range: bytes=N-: {resumed:#?}")
        });
    assert!(
        offset > 0 && offset < layer_size,
        "the retry resumes inside the layer: {resumed:#?}"
    );
    assert_eq!(
        resumed.status, 206,
        "the registry answers a ranged blob GET with 206: {resumed:#?}"
    );
    assert_eq!(
        resumed.content_range,
        Some(format!("bytes {offset}-{}/{layer_size}", layer_size - 1))
    );

    assert_eq!(
        inspect(&dockerd, &through_proxy, ".Id"),
        image_id,
        "image ID after the resumed pull"
    );
    assert_eq!(run_file(&dockerd, &through_proxy), contents);
}

/// Issue 16: docker configured with Berth as its `registry-mirrors` pulls
/// Docker Hub's names through Berth's pull-through cache unchanged. The
/// "Docker Hub" is a CNCF Distribution (Debian's `docker-registry`) holding
/// `library/mirrored:v1`; Berth (access control on) mirrors it into the
/// public namespace `hub` with `root = true`, because docker sends a mirror
/// Hub's own names (`/v2/library/mirrored/…`) and takes no path prefix.
/// Docker's anonymous token flow asks for `repository:library/mirrored:pull`,
/// which Berth decides as `hub/library/mirrored`. With the upstream stopped,
/// the image pulled once before still pulls and runs.
#[test]
fn docker_pulls_through_berth_as_its_registry_mirror() {
    let test = "docker_pulls_through_berth_as_its_registry_mirror";
    if support::is_external_registry() {
        support::record_skip(test, "needs its own berth serve with an upstream");
        return;
    }
    let Some(tools) = require_docker(test) else {
        return;
    };
    let Some(distribution) = support::require_tool("docker-registry", test) else {
        return;
    };
    let mut upstream = Distribution::start(&distribution, None);
    let work = tempfile::tempdir().expect("temp dir");
    let config = work.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[[upstream]]\nnamespace = \"hub\"\nurl = \"http://{}\"\npublic = true\nroot = true\n\
             tag_ttl = \"0s\"\n",
            upstream.addr
        ),
    )
    .expect("write berth.toml");
    let berth = TestRegistry::start_with(&["--auth", "--config", config.to_str().unwrap()]);
    let mirror = format!("http://{}", berth.addr);
    let dockerd = Dockerd::start_with_mirrors(
        &tools.dockerd,
        &tools.docker,
        &[&upstream.addr, &berth.addr],
        &[&mirror],
    );

    // The image "on Docker Hub".
    let at_upstream = format!("{}/library/mirrored:v1", upstream.addr);
    let contents = "pulled through the mirror\n";
    build_image(&dockerd, "berth-e2e-base:mirror", &at_upstream, contents);
    let image_id = inspect(&dockerd, &at_upstream, ".Id");
    let (digest, _) = push(&dockerd, &at_upstream);

    // `mirrored:v1` is `docker.io/library/mirrored:v1`: Docker Hub itself
    // cannot be reached from the test, so a pull that works came through
    // the mirror.
    let pulled_name = "mirrored:v1";
    for round in ["upstream running", "upstream stopped"] {
        remove_all_images(&dockerd);
        let pulled = run(dockerd.docker().arg("pull").arg(pulled_name));
        assert!(
            pulled.contains(&format!("Digest: {digest}")),
            "{round}: the pull reports the pushed digest:\n{pulled}"
        );
        assert_eq!(inspect(&dockerd, pulled_name, ".Id"), image_id, "{round}");
        assert_eq!(run_file(&dockerd, pulled_name), contents, "{round}");
        upstream.stop();
    }
    // Berth holds it under the proxy namespace (read here with the
    // administrator's password, which `/v2/` takes as Basic credentials).
    let admin_password = std::fs::read_to_string(
        berth
            .data_dir
            .as_ref()
            .expect("a data dir")
            .path()
            .join("initial-admin-password"),
    )
    .expect("the initial administrator password");
    let cached = reqwest::blocking::Client::new()
        .get(format!(
            "http://{}/v2/hub/library/mirrored/manifests/v1",
            berth.addr
        ))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .basic_auth("admin", Some(admin_password.trim()))
        .send()
        .expect("GET the cached manifest");
    assert_eq!(cached.status(), 200);
    assert_eq!(cached.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(
        cached.headers()["warning"],
        "110 - \"response is stale\"",
        "the upstream is stopped and the tag is always checked"
    );
}
