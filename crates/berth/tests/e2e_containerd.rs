//! End-to-end tests with containerd's `ctr` client against a containerd
//! started by the test (see `support/containerd.rs`). The image is an OCI
//! image layout archive built offline from a static busybox, so the test
//! knows every digest in advance and checks each one after the round trip.

mod support;

use std::path::PathBuf;

use support::containerd::Containerd;
use support::cutting_proxy::{CuttingProxy, Exchange};
use support::distribution::Distribution;
use support::images::{self, OciImage};
use support::{run, wire, TestRegistry};

/// The binaries one containerd test needs, or `None` after a recorded skip.
struct ContainerdTools {
    containerd: PathBuf,
    ctr: PathBuf,
}

fn require_containerd(test: &str) -> Option<ContainerdTools> {
    let containerd = support::require_tool("containerd", test)?;
    let ctr = support::require_tool("ctr", test)?;
    // `ctr run` starts the container through containerd's runc shim.
    support::require_tool("containerd-shim-runc-v2", test)?;
    support::require_tool("runc", test)?;
    images::require_static_busybox(test)?;
    if !support::daemon::require_root(test) {
        return None;
    }
    Some(ContainerdTools { containerd, ctr })
}

/// A repository name made unique for this run, because a registry given in
/// `BERTH_E2E_REGISTRY` keeps what earlier runs pushed.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{name}-{:x}", nanos & 0xffff_ffff)
}

/// The manifest digest `ctr images ls` shows for `reference`, if the image
/// exists. The table's columns are REF, TYPE, DIGEST, SIZE, PLATFORMS, LABELS.
fn image_digest(containerd: &Containerd, reference: &str) -> Option<String> {
    let table = run(containerd.ctr().args(["images", "ls"]));
    table.lines().skip(1).find_map(|line| {
        let mut columns = line.split_whitespace();
        (columns.next() == Some(reference))
            .then(|| columns.nth(1).expect("digest column").to_string())
    })
}

/// Digests in containerd's content store.
fn content_digests(containerd: &Containerd) -> Vec<String> {
    let table = run(containerd.ctr().args(["content", "ls", "--quiet"]));
    table.lines().map(str::to_string).collect()
}

/// Removes an image and lets containerd's garbage collector delete its
/// content and snapshots before returning, so that the next pull has to
/// fetch every blob from the registry.
fn remove_image(containerd: &Containerd, reference: &str, image: &OciImage) {
    run(containerd
        .ctr()
        .args(["images", "rm", "--sync"])
        .arg(reference));
    let left = content_digests(containerd);
    for digest in [
        &image.manifest_digest,
        &image.config_digest,
        &image.layer_digest,
    ] {
        assert!(
            !left.contains(&digest.to_string()),
            "{digest} still in the content store after rm --sync: {left:?}"
        );
    }
}

/// Checks that the registry serves the manifest under `reference` byte for
/// byte as built, and holds its config and layer in `name`.
fn assert_registry_holds(addr: &str, name: &str, reference: &str, image: &OciImage) {
    let response = wire::get_manifest(addr, name, reference);
    assert_eq!(
        response.status,
        200,
        "GET manifest {name}:{reference}: {}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(
        response.body == image.manifest,
        "the registry changed the manifest bytes of {name}:{reference}"
    );
    assert_eq!(
        response.header("docker-content-digest"),
        Some(image.manifest_digest.as_str())
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    for digest in [&image.config_digest, &image.layer_digest] {
        let head = wire::head_blob(addr, name, digest.as_str());
        assert_eq!(head.status, 200, "HEAD {digest} in {name}");
        assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));
    }
}

/// Runs `cat /file` in a container of `reference`. containerd gives the
/// container a network namespace of its own with no interfaces configured,
/// so it has no network, like `docker run --network none`.
fn run_file(containerd: &Containerd, reference: &str, container_id: &str) -> String {
    run(containerd
        .ctr()
        .args(["run", "--rm"])
        .arg(reference)
        .arg(container_id)
        .args(["cat", "/file"]))
}

/// Import a locally built OCI archive, push it with `ctr images push
/// --plain-http`, delete it locally, pull it back by tag and by digest, and
/// run it; then push it under a second repository. Every step checks the
/// digests and bytes that were built.
#[test]
fn containerd_import_push_pull_round_trip() {
    let test = "containerd_import_push_pull_round_trip";
    let Some(tools) = require_containerd(test) else {
        return;
    };
    let registry = TestRegistry::start();
    let containerd = Containerd::start(&tools.containerd, &tools.ctr);
    let repo = unique("e2e/containerd-round-trip");
    let reference = format!("{}/{repo}:v1", registry.addr);
    let contents = "pushed by ctr, pulled back by ctr\n";
    let image = images::oci_image_archive(
        containerd.dir(),
        "ctr-image",
        &reference,
        &[("file", contents.as_bytes())],
    );

    let imported = run(containerd
        .ctr()
        .args(["images", "import"])
        .arg(&image.archive));
    assert_eq!(
        image_digest(&containerd, &reference).as_deref(),
        Some(image.manifest_digest.as_str()),
        "ctr images import named the built manifest:\n{imported}"
    );

    run(containerd
        .ctr()
        .args(["images", "push", "--plain-http"])
        .arg(&reference));
    assert_registry_holds(&registry.addr, &repo, "v1", &image);
    assert_registry_holds(
        &registry.addr,
        &repo,
        image.manifest_digest.as_str(),
        &image,
    );

    remove_image(&containerd, &reference, &image);
    run(containerd
        .ctr()
        .args(["images", "pull", "--plain-http"])
        .arg(&reference));
    assert_eq!(
        image_digest(&containerd, &reference).as_deref(),
        Some(image.manifest_digest.as_str())
    );
    let layer = containerd
        .ctr()
        .args(["content", "get"])
        .arg(image.layer_digest.as_str())
        .output()
        .expect("ctr");
    assert!(
        layer.status.success(),
        "ctr content get: {}",
        String::from_utf8_lossy(&layer.stderr)
    );
    assert!(
        layer.stdout == image.layer,
        "the pulled layer differs from the pushed one"
    );
    assert_eq!(
        run_file(&containerd, &reference, "berth-e2e-by-tag"),
        contents
    );

    // A pull by digest asks for /v2/NAME/manifests/sha256:…, and containerd
    // verifies the bytes against that digest itself.
    remove_image(&containerd, &reference, &image);
    let by_digest = format!("{}/{repo}@{}", registry.addr, image.manifest_digest);
    run(containerd
        .ctr()
        .args(["images", "pull", "--plain-http"])
        .arg(&by_digest));
    assert_eq!(
        image_digest(&containerd, &by_digest).as_deref(),
        Some(image.manifest_digest.as_str())
    );
    assert_eq!(
        run_file(&containerd, &by_digest, "berth-e2e-by-digest"),
        contents
    );

    // The same image under a second repository: containerd checks each blob
    // with HEAD in the new repository and uploads what is missing (or mounts
    // it, where it knows the source repository).
    let second_repo = unique("e2e/containerd-second");
    let second = format!("{}/{second_repo}:v2", registry.addr);
    run(containerd
        .ctr()
        .args(["images", "tag"])
        .arg(&by_digest)
        .arg(&second));
    run(containerd
        .ctr()
        .args(["images", "push", "--plain-http"])
        .arg(&second));
    assert_registry_holds(&registry.addr, &second_repo, "v2", &image);
}

/// When a layer download breaks off, containerd keeps what it received in
/// its content store's ingest area and at once asks for the rest with
/// `Range: bytes=N-`, within the same pull. A proxy between containerd and
/// the registry cuts the layer download once; the test checks the resumed
/// request, the registry's `206` answer and the layer's bytes.
#[test]
fn containerd_pull_resumes_broken_layer_download_with_range() {
    let test = "containerd_pull_resumes_broken_layer_download_with_range";
    let Some(tools) = require_containerd(test) else {
        return;
    };
    let registry = TestRegistry::start();
    let proxy = CuttingProxy::start(&registry.addr);
    let containerd = Containerd::start(&tools.containerd, &tools.ctr);
    let repo = unique("e2e/containerd-range");
    let direct = format!("{}/{repo}:v1", registry.addr);
    let contents = "resumed by containerd\n";
    let image = images::oci_image_archive(
        containerd.dir(),
        "ctr-range",
        &direct,
        &[("file", contents.as_bytes())],
    );
    run(containerd
        .ctr()
        .args(["images", "import"])
        .arg(&image.archive));
    run(containerd
        .ctr()
        .args(["images", "push", "--plain-http"])
        .arg(&direct));
    remove_image(&containerd, &direct, &image);

    let through_proxy = format!("{}/{repo}:v1", proxy.addr);
    proxy.cut_next_get(&format!("/v2/{repo}/blobs/{}", image.layer_digest));
    run(containerd
        .ctr()
        .args(["images", "pull", "--plain-http"])
        .arg(&through_proxy));

    let downloads: Vec<Exchange> = proxy
        .exchanges()
        .into_iter()
        .filter(|exchange| {
            exchange.method == "GET" && exchange.path.ends_with(image.layer_digest.as_str())
        })
        .collect();
    assert!(
        downloads.len() >= 2 && downloads[0].cut,
        "one cut download, then a retry: {downloads:#?}"
    );
    let resumed = downloads.last().expect("the retry");
    let size = image.layer.len() as u64;
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
        offset > 0 && offset < size,
        "the retry resumes inside the layer: {resumed:#?}"
    );
    assert_eq!(
        resumed.status, 206,
        "the registry answers a ranged blob GET with 206: {resumed:#?}"
    );
    assert_eq!(
        resumed.content_range,
        Some(format!("bytes {offset}-{}/{size}", size - 1))
    );

    assert_eq!(
        image_digest(&containerd, &through_proxy).as_deref(),
        Some(image.manifest_digest.as_str())
    );
    let layer = containerd
        .ctr()
        .args(["content", "get"])
        .arg(image.layer_digest.as_str())
        .output()
        .expect("ctr");
    assert!(
        layer.stdout == image.layer,
        "the resumed layer differs from the pushed one"
    );
    assert_eq!(
        run_file(&containerd, &through_proxy, "berth-e2e-range"),
        contents
    );
}

/// Issue 16: containerd configured with Berth as a mirror in a `hosts.toml`
/// (`override_path`, so the mirror's path names the proxy namespace) pulls
/// an upstream's image through Berth's pull-through cache unchanged. The
/// upstream is a CNCF Distribution (Debian's `docker-registry`); once it is
/// stopped, the image pulled before still pulls, from Berth's cache.
#[test]
fn containerd_pulls_through_berth_as_a_hosts_toml_mirror() {
    let test = "containerd_pulls_through_berth_as_a_hosts_toml_mirror";
    if support::is_external_registry() {
        support::record_skip(test, "needs its own berth serve with an upstream");
        return;
    }
    let Some(tools) = require_containerd(test) else {
        return;
    };
    let Some(distribution) = support::require_tool("docker-registry", test) else {
        return;
    };
    let mut upstream = Distribution::start(&distribution, None);
    let berth =
        TestRegistry::start_with(&["--upstream", &format!("cache=http://{}", upstream.addr)]);
    let containerd = Containerd::start(&tools.containerd, &tools.ctr);
    let reference = format!("{}/team/app:v1", upstream.addr);
    let contents = "pulled through a hosts.toml mirror\n";
    let image = images::oci_image_archive(
        containerd.dir(),
        "ctr-mirror",
        &reference,
        &[("file", contents.as_bytes())],
    );
    run(containerd
        .ctr()
        .args(["images", "import"])
        .arg(&image.archive));
    run(containerd
        .ctr()
        .args(["images", "push", "--plain-http"])
        .arg(&reference));

    // containerd's per-registry configuration: the mirror first, then the
    // registry itself.
    let hosts = containerd.dir().join("hosts.d");
    let dir = hosts.join(&upstream.addr);
    std::fs::create_dir_all(&dir).expect("create hosts dir");
    std::fs::write(
        dir.join("hosts.toml"),
        format!(
            "server = \"http://{}\"\n\n[host.\"http://{}/v2/cache\"]\n  \
             capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n",
            upstream.addr, berth.addr
        ),
    )
    .expect("write hosts.toml");
    for round in ["upstream running", "upstream stopped"] {
        remove_image(&containerd, &reference, &image);
        run(containerd
            .ctr()
            .args(["images", "pull", "--hosts-dir"])
            .arg(&hosts)
            .arg(&reference));
        assert_eq!(
            image_digest(&containerd, &reference).as_deref(),
            Some(image.manifest_digest.as_str()),
            "{round}"
        );
        assert_eq!(
            run_file(&containerd, &reference, "berth-e2e-mirror"),
            contents,
            "{round}"
        );
        upstream.stop();
    }
    // What containerd pulled is in the proxy namespace.
    assert_registry_holds(&berth.addr, "cache/team/app", "v1", &image);
}
