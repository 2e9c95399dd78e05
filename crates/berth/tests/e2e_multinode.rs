//! Several stateless `berth` nodes on one PostgreSQL and one S3-compatible
//! store (SeaweedFS), driven by a real client: what is pushed through one
//! node is pulled through another at once, a chunked upload hops between
//! nodes, a client whose node dies mid-upload succeeds through another, and
//! with access control on, accounts, tokens and signing keys are shared:
//! a token from one node works on the others, through a key rotation.
//!
//! The PostgreSQL and SeaweedFS harnesses are the metadata and storage
//! crates' own, so every suite starts the services the same way.

mod support;

use berth_test_support::{postgres, seaweedfs};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use support::containers::ContainersEnv;
use support::http::{request, HttpResponse, PatternReader, RequestBody};
use support::oci::{make_image, read_oci_layout_blobs, write_oci_layout};
use support::TestRegistry;

/// A PostgreSQL database and an S3 bucket shared by the nodes of one test.
struct Shared {
    args: Vec<String>,
    /// The bucket, to look at what the nodes left in it.
    bucket: String,
    database: postgres::TestDatabase,
}

async fn shared_services(test: &str) -> Option<Shared> {
    if support::is_external_registry() {
        support::record_skip(test, "starts its own nodes");
        return None;
    }
    let database = postgres::fresh_database(test).await?;
    let weed = seaweedfs::weed(test)?;
    let bucket = weed.new_bucket().await;
    let mut args = vec!["--database".to_string(), database.url.clone()];
    args.extend(support::s3_flags(&bucket, &weed.endpoint));
    Some(Shared {
        args,
        bucket,
        database,
    })
}

fn start_node(shared: &Shared) -> TestRegistry {
    start_node_with(shared, &[])
}

fn start_node_with(shared: &Shared, extra: &[&str]) -> TestRegistry {
    let mut args: Vec<&str> = shared.args.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    TestRegistry::start_with(&args)
}

/// skopeo pushes through node A; nodes B and C serve the same bytes at once.
#[tokio::test(flavor = "multi_thread")]
async fn push_through_one_node_pull_through_others() {
    const TEST: &str = "push_through_one_node_pull_through_others";
    let Some(skopeo) = support::require_tool("skopeo", TEST) else {
        return;
    };
    let Some(shared) = shared_services(TEST).await else {
        return;
    };
    let nodes: Vec<TestRegistry> = (0..3).map(|_| start_node(&shared)).collect();

    let image = make_image("amd64", &[300_000, 2_000_000, 50], &[]);
    let layout = tempfile::tempdir().unwrap();
    let mut blobs = vec![&image.config];
    blobs.extend(image.layers.iter());
    write_oci_layout(layout.path(), "v1", &image.manifest, blobs);

    let reference = |node: &TestRegistry| format!("docker://{}/multi/app:v1", node.addr);
    support::run(
        Command::new(&skopeo)
            .args(["copy", "--dest-tls-verify=false", "--preserve-digests"])
            .arg(format!("oci:{}:v1", layout.path().display()))
            .arg(reference(&nodes[0])),
    );
    for node in &nodes[1..] {
        let raw = support::run(
            Command::new(&skopeo)
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(reference(node)),
        );
        assert_eq!(
            raw.as_bytes(),
            image.manifest.bytes.as_slice(),
            "manifest via {}",
            node.addr
        );
        let out = tempfile::tempdir().unwrap();
        support::run(
            Command::new(&skopeo)
                .args(["copy", "--src-tls-verify=false", "--preserve-digests"])
                .arg(reference(node))
                .arg(format!("oci:{}:v1", out.path().display())),
        );
        support::oci::assert_blobs_match(&image.all_blobs(), &read_oci_layout_blobs(out.path()));
    }
}

/// One upload session, three nodes: POST on A, a chunk on B, a chunk on C,
/// the closing PUT with the last chunk on A; the blob is then read through B.
#[tokio::test(flavor = "multi_thread")]
async fn chunked_upload_hops_between_nodes() {
    const TEST: &str = "chunked_upload_hops_between_nodes";
    let Some(shared) = shared_services(TEST).await else {
        return;
    };
    let nodes: Vec<TestRegistry> = (0..3).map(|_| start_node(&shared)).collect();
    // Chunks straddle the S3 backend's part size, so parts and pending tails
    // are both handed from node to node.
    let data = support::oci::random_bytes(21 << 20);
    let digest = support::oci::sha256_digest(&data);
    let cuts = [0, 3 << 20, 12 << 20, data.len()];

    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let data_for_task = data.clone();
    let digest_for_task = digest.clone();
    let status = tokio::task::spawn_blocking(move || {
        let data = data_for_task;
        let r = request(
            &addrs[0],
            "POST",
            "/v2/hop/blobs/uploads/",
            &[],
            RequestBody::Empty,
        );
        assert_eq!(r.status, 202);
        let location = r.header("location").unwrap().to_string();
        for (i, node) in [1usize, 2].iter().enumerate() {
            let (start, end) = (cuts[i], cuts[i + 1]);
            let range = format!("{}-{}", start, end - 1);
            let r = request(
                &addrs[*node],
                "PATCH",
                &location,
                &[("Content-Range", &range)],
                RequestBody::Bytes(&data[start..end]),
            );
            assert_eq!(
                r.status,
                202,
                "chunk {i} via node {node}: {}",
                String::from_utf8_lossy(&r.body)
            );
            assert_eq!(r.header("range"), Some(format!("0-{}", end - 1).as_str()));
        }
        let r = request(
            &addrs[0],
            "PUT",
            &format!("{location}?digest={digest_for_task}"),
            &[],
            RequestBody::Bytes(&data[cuts[2]..]),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let r = request(
            &addrs[1],
            "GET",
            &format!("/v2/hop/blobs/{digest_for_task}"),
            &[],
            RequestBody::Empty,
        );
        (r.status, support::oci::sha256_digest(&r.body))
    })
    .await
    .unwrap();
    assert_eq!(status, (200, digest));
}

/// A node is killed while a client streams a blob through it; the client's
/// retry through another node succeeds and the blob is intact.
#[tokio::test(flavor = "multi_thread")]
async fn node_killed_mid_upload_retry_elsewhere() {
    const TEST: &str = "node_killed_mid_upload_retry_elsewhere";
    let Some(shared) = shared_services(TEST).await else {
        return;
    };
    let victim = start_node(&shared);
    let survivor = start_node(&shared);
    const LEN: u64 = 64 << 20;
    let digest = {
        use sha2::Digest as _;
        use std::io::Read;
        let mut reader = PatternReader::new(LEN, 7);
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    };

    // Stream the blob to the victim in a thread, and kill the victim once
    // part of it has arrived.
    let victim_addr = victim.addr.clone();
    let victim_pid = victim.pid().unwrap();
    let upload_digest = digest.clone();
    let client = std::thread::spawn(move || {
        let mut source = PatternReader::new(LEN, 7);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            request(
                &victim_addr,
                "POST",
                &format!("/v2/crash/blobs/uploads/?digest={upload_digest}"),
                &[],
                RequestBody::Stream(&mut source),
            )
            .status
        }))
        .ok()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    Command::new("kill")
        .args(["-KILL", &victim_pid.to_string()])
        .status()
        .unwrap();
    let first_attempt = client.join().unwrap();
    assert_ne!(
        first_attempt,
        Some(201),
        "the upload cannot have completed on a killed node"
    );

    let survivor_addr = survivor.addr.clone();
    let retry_digest = digest.clone();
    let (status, head_len) = tokio::task::spawn_blocking(move || {
        let mut source = PatternReader::new(LEN, 7);
        let r = request(
            &survivor_addr,
            "POST",
            &format!("/v2/crash/blobs/uploads/?digest={retry_digest}"),
            &[],
            RequestBody::Stream(&mut source),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let r = request(
            &survivor_addr,
            "HEAD",
            &format!("/v2/crash/blobs/{retry_digest}"),
            &[],
            RequestBody::Empty,
        );
        (r.status, r.header("content-length").map(str::to_string))
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(head_len, Some(LEN.to_string()));
    drop(victim);
}

/// Runs `berth admin ARGS` against the shared database, as an operator on
/// any machine would (no node's data directory involved), and returns its
/// stdout.
fn berth_admin(shared: &Shared, args: &[&str], stdin: Option<&str>) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let mut child = Command::new(support::berth_binary())
        .arg("admin")
        .args(args)
        .args(["--database", &shared.database.url, "--data-dir"])
        .arg(scratch.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth admin");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "berth admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn body_text(response: &HttpResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

fn json_request(addr: &str, method: &str, path: &str, auth: &str, body: &str) -> HttpResponse {
    request(
        addr,
        method,
        path,
        &[
            ("Authorization", auth),
            ("Content-Type", "application/json"),
        ],
        RequestBody::Bytes(body.as_bytes()),
    )
}

/// POSTs an OAuth2 form to the node's token endpoint and returns the answer.
fn token_post(addr: &str, form: &str) -> serde_json::Value {
    let response = request(
        addr,
        "POST",
        "/auth/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        RequestBody::Bytes(form.as_bytes()),
    );
    assert_eq!(response.status, 200, "{}", body_text(&response));
    serde_json::from_slice(&response.body).unwrap()
}

/// A registry token from the node's token endpoint (GET, Basic credentials).
fn token_get(addr: &str, scope: &str, authorization: &str) -> String {
    let response = request(
        addr,
        "GET",
        &format!("/auth/token?service=berth&scope={scope}"),
        &[("Authorization", authorization)],
        RequestBody::Empty,
    );
    assert_eq!(response.status, 200, "{}", body_text(&response));
    let answer: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    answer["token"].as_str().unwrap().to_string()
}

/// The `kid` a registry token names in its header.
fn kid(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_string()
}

/// The status of a manifest GET with a bearer token.
fn pull_status(addr: &str, reference: &str, token: &str) -> u16 {
    request(
        addr,
        "GET",
        &format!("/v2/{reference}"),
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Accept", "application/vnd.oci.image.manifest.v1+json"),
        ],
        RequestBody::Empty,
    )
    .status
}

/// Fetches tokens from `addr` until one is signed with `wanted_kid`: a node
/// takes up a key rotated elsewhere when it next reloads its keys (every
/// 30 s), so this waits a little longer than that at most.
fn token_signed_with(addr: &str, scope: &str, authorization: &str, wanted_kid: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let token = token_get(addr, scope, authorization);
        if kid(&token) == wanted_kid {
            return token;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} still signs with {} after the rotation to {wanted_kid}",
            kid(&token)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Access control on two nodes sharing PostgreSQL and S3: accounts made
/// through one node's management API, tokens from one node's token endpoint
/// used on the other by skopeo and by plain requests, a refresh token from
/// one node exchanged at the other, and `berth admin keys rotate` on the
/// shared database, after which old tokens still verify everywhere and new
/// ones from either node verify on the other.
#[tokio::test(flavor = "multi_thread")]
async fn auth_tokens_and_key_rotation_are_shared_by_nodes() {
    const TEST: &str = "auth_tokens_and_key_rotation_are_shared_by_nodes";
    const ROOT_PASSWORD: &str = "root-password-1";
    const ALICE_PASSWORD: &str = "alice-password-1";
    let Some(skopeo) = support::require_tool("skopeo", TEST) else {
        return;
    };
    let Some(shared) = shared_services(TEST).await else {
        return;
    };
    // The first administrator is made with `berth admin` on the database
    // before any node starts, so the nodes create none of their own.
    berth_admin(
        &shared,
        &["user", "create", "root", "--admin", "--password-stdin"],
        Some(ROOT_PASSWORD),
    );
    assert_eq!(
        berth_admin(&shared, &["keys", "list"], None),
        "",
        "no key before the first node starts"
    );
    let a = start_node_with(&shared, &["--auth"]);
    let b = start_node_with(&shared, &["--auth"]);
    let root = basic("root", ROOT_PASSWORD);
    let alice = basic("alice", ALICE_PASSWORD);

    // The administrator sets up alice and a private namespace through A's
    // management API, and makes alice a writer through B's.
    let response = json_request(
        &a.addr,
        "POST",
        "/api/v1/users",
        &root,
        &format!(r#"{{"name":"alice","password":"{ALICE_PASSWORD}"}}"#),
    );
    assert_eq!(response.status, 201, "{}", body_text(&response));
    let response = json_request(
        &a.addr,
        "POST",
        "/api/v1/namespaces",
        &root,
        r#"{"name":"team","visibility":"private"}"#,
    );
    assert_eq!(response.status, 201, "{}", body_text(&response));
    let response = json_request(
        &b.addr,
        "PUT",
        "/api/v1/namespaces/team/members/alice",
        &root,
        r#"{"role":"writer"}"#,
    );
    assert_eq!(response.status, 200, "{}", body_text(&response));
    let users = berth_admin(&shared, &["user", "list"], None);
    assert_eq!(users, "alice\tuser\nroot\tadmin\n");

    // Both nodes sign with the one key in the database.
    let keys = berth_admin(&shared, &["keys", "list"], None);
    let old_kid = keys.split('\t').next().unwrap().to_string();
    assert!(keys.starts_with(&format!("{old_kid}\tcurrent\t")), "{keys}");
    assert_eq!(keys.lines().count(), 1, "{keys}");

    // skopeo pushes through B with a token from A's token endpoint.
    let image = make_image("amd64", &[4096, 1024], &[]);
    let layout = tempfile::tempdir().unwrap();
    let blobs = image.all_blobs();
    write_oci_layout(layout.path(), "v1", &image.manifest, blobs.values());
    let push_scope = "repository:team/app:pull,push";
    let token_from_a = token_get(&a.addr, push_scope, &alice);
    assert_eq!(kid(&token_from_a), old_kid);
    let env = ContainersEnv::new(&b.addr);
    let skopeo_command = || {
        let mut command = env.command(&skopeo);
        command.arg("--policy").arg(env.policy());
        command
    };
    support::run(skopeo_command().args([
        "copy",
        "--dest-tls-verify=false",
        "--preserve-digests",
        "--dest-registry-token",
        &token_from_a,
        &format!("oci:{}:v1", layout.path().display()),
        &format!("docker://{}/team/app:v1", b.addr),
    ]));
    // ...and pulls through A with alice's password (A's own token flow).
    let raw = support::run_bytes(skopeo_command().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &format!("alice:{ALICE_PASSWORD}"),
        &format!("docker://{}/team/app:v1", a.addr),
    ]));
    assert_eq!(raw, image.manifest.bytes);
    // Without credentials the private image is refused on both nodes.
    for node in [&a, &b] {
        let anonymous = request(
            &node.addr,
            "GET",
            "/v2/team/app/manifests/v1",
            &[],
            RequestBody::Empty,
        );
        assert_eq!(anonymous.status, 401, "{}", body_text(&anonymous));
    }

    // A refresh token issued by A (the OAuth2 password grant docker login
    // uses) is exchanged at B.
    let answer = token_post(
        &a.addr,
        &format!(
            "grant_type=password&username=alice&password={ALICE_PASSWORD}&service=berth\
             &client_id=e2e&access_type=offline"
        ),
    );
    let refresh = answer["refresh_token"].as_str().unwrap().to_string();
    assert!(refresh.starts_with("berth_rt_"), "{answer}");
    let answer = token_post(
        &b.addr,
        &format!(
            "grant_type=refresh_token&refresh_token={refresh}&service=berth&client_id=e2e\
             &scope=repository%3Ateam%2Fapp%3Apull"
        ),
    );
    let from_refresh = answer["access_token"].as_str().unwrap().to_string();
    for node in [&a, &b] {
        assert_eq!(
            pull_status(&node.addr, "team/app/manifests/v1", &from_refresh),
            200
        );
    }

    // Rotation on the shared database, from an operator's machine.
    let pull_scope = "repository:team/app:pull";
    let old_token = token_get(&b.addr, pull_scope, &alice);
    let rotated = berth_admin(&shared, &["keys", "rotate"], None);
    let new_kid = rotated.split(' ').next().unwrap().to_string();
    assert!(
        rotated.starts_with(&format!(
            "{new_kid} is the current signing key\n{old_kid} is retired"
        )),
        "{rotated}"
    );
    assert_ne!(new_kid, old_kid);
    let keys = berth_admin(&shared, &["keys", "list"], None);
    let listed: Vec<(&str, &str)> = keys
        .lines()
        .map(|line| {
            let mut fields = line.split('\t');
            (fields.next().unwrap(), fields.next().unwrap())
        })
        .collect();
    assert_eq!(
        listed,
        vec![(old_kid.as_str(), "retired"), (new_kid.as_str(), "current")],
        "{keys}"
    );

    // Each node comes to sign with the new key, and what one signs the
    // other accepts, whether or not it has reloaded yet.
    let new_from_a = token_signed_with(&a.addr, pull_scope, &alice, &new_kid);
    assert_eq!(
        pull_status(&b.addr, "team/app/manifests/v1", &new_from_a),
        200
    );
    let new_from_b = token_signed_with(&b.addr, pull_scope, &alice, &new_kid);
    assert_eq!(
        pull_status(&a.addr, "team/app/manifests/v1", &new_from_b),
        200
    );
    // Tokens signed with the retired key still verify on both nodes, the
    // one skopeo pushed with included.
    for node in [&a, &b] {
        for token in [&old_token, &from_refresh, &token_from_a] {
            assert_eq!(kid(token), old_kid);
            assert_eq!(
                pull_status(&node.addr, "team/app/manifests/v1", token),
                200,
                "a token of the retired key via {}",
                node.addr
            );
        }
    }
    // The refresh token still works after the rotation: it is not a JWT.
    let answer = token_post(
        &a.addr,
        &format!(
            "grant_type=refresh_token&refresh_token={refresh}&service=berth&client_id=e2e\
             &scope=repository%3Ateam%2Fapp%3Apull"
        ),
    );
    let refreshed = answer["access_token"].as_str().unwrap();
    assert_eq!(kid(refreshed), new_kid);
    assert_eq!(
        pull_status(&b.addr, "team/app/manifests/v1", refreshed),
        200
    );
}

/// Garbage collection on a shared database and bucket: two `berth gc`
/// processes start at once while both nodes serve. The lease lets one pass
/// do the work (the other finds the lease held, or nothing left to do); what
/// the deleted image alone referenced leaves the bucket, and the image that
/// shares its layer still pulls intact through either node.
#[tokio::test(flavor = "multi_thread")]
async fn gc_on_shared_storage_runs_once_and_keeps_live_images() {
    const TEST: &str = "gc_on_shared_storage_runs_once_and_keeps_live_images";
    let Some(skopeo) = support::require_tool("skopeo", TEST) else {
        return;
    };
    let Some(shared) = shared_services(TEST).await else {
        return;
    };
    // Deletions are final here (no trash): this test is about what
    // collection does with them.
    let nodes: Vec<TestRegistry> = (0..2)
        .map(|_| start_node_with(&shared, &["--trash-retention", "0s"]))
        .collect();

    let common = support::oci::Blob::new(
        "application/vnd.oci.image.layer.v1.tar",
        support::oci::random_bytes(700_000),
    );
    let doomed = make_image("amd64", &[400_000], std::slice::from_ref(&common));
    let kept = make_image("arm64", &[500_000], std::slice::from_ref(&common));
    let repo = "multi/gc";
    for (tag, image) in [("doomed", &doomed), ("kept", &kept)] {
        let layout = tempfile::tempdir().unwrap();
        let mut blobs = vec![&image.config];
        blobs.extend(image.layers.iter());
        write_oci_layout(layout.path(), tag, &image.manifest, blobs);
        support::run(
            Command::new(&skopeo)
                .args(["copy", "--dest-tls-verify=false", "--preserve-digests"])
                .arg(format!("oci:{}:{tag}", layout.path().display()))
                .arg(format!("docker://{}/{repo}:{tag}", nodes[0].addr)),
        );
    }
    // Deleted through the other node: the manifest and its tag go at once.
    let addr = nodes[1].addr.clone();
    let path = format!("/v2/{repo}/manifests/{}", doomed.manifest.digest);
    let status = tokio::task::spawn_blocking(move || {
        request(&addr, "DELETE", &path, &[], RequestBody::Empty).status
    })
    .await
    .unwrap();
    assert_eq!(status, 202);

    // Past the grace period given to both passes.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let gc_passes: Vec<std::process::Child> = (0..2)
        .map(|_| {
            let data_dir = tempfile::tempdir().unwrap().keep();
            Command::new(support::berth_binary())
                .arg("gc")
                .args(&shared.args)
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--gc-grace-period", "1s"])
                .env("BERTH_LOG", "warn")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start berth gc")
        })
        .collect();
    let mut outcomes = Vec::new();
    for pass in gc_passes {
        let output = pass.wait_with_output().unwrap();
        let code = output.status.code();
        let text = format!(
            "exit {code:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // 3 is "another node holds the GC lease", a normal outcome.
        assert!(matches!(code, Some(0) | Some(3)), "{text}");
        outcomes.push(text);
    }
    assert!(
        outcomes.iter().any(|text| text.starts_with("exit Some(0)")),
        "no pass ran: {outcomes:?}"
    );

    // The bucket itself, not only the metadata, lost exactly the doomed
    // image's own blobs.
    let weed = seaweedfs::weed(TEST).expect("running");
    let store = berth_storage::s3::S3BlobStore::new(&berth_storage::s3::S3Config {
        endpoint: Some(weed.endpoint.clone()),
        path_style: true,
        allow_http: true,
        access_key_id: Some(seaweedfs::ACCESS_KEY.into()),
        secret_access_key: Some(seaweedfs::SECRET_KEY.into()),
        region: seaweedfs::REGION.into(),
        ..berth_storage::s3::S3Config::from_url(&format!("s3://{}/berth", shared.bucket))
            .expect("a valid URL")
    })
    .expect("store");
    use berth_storage::BlobStore as _;
    let stored = |digest: &str| {
        let digest = berth_oci::Digest::parse(digest).unwrap();
        let store = &store;
        async move { store.blob_size(&digest).await.unwrap().is_some() }
    };
    for gone in [&doomed.config.digest, &doomed.layers[0].digest] {
        assert!(!stored(gone).await, "{gone} should have been collected");
    }
    for live in [&common.digest, &kept.config.digest, &kept.layers[0].digest] {
        assert!(stored(live).await, "{live} must survive");
    }

    // The kept image, with the shared layer, pulls intact through both nodes.
    for node in &nodes {
        let out = tempfile::tempdir().unwrap();
        support::run(
            Command::new(&skopeo)
                .args(["copy", "--src-tls-verify=false", "--preserve-digests"])
                .arg(format!("docker://{}/{repo}:kept", node.addr))
                .arg(format!("oci:{}:kept", out.path().display())),
        );
        support::oci::assert_blobs_match(&kept.all_blobs(), &read_oci_layout_blobs(out.path()));
    }
}
