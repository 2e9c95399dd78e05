//! Several stateless `berth` nodes on one PostgreSQL and one S3-compatible
//! store (SeaweedFS), driven by a real client: what is pushed through one
//! node is pulled through another at once, a chunked upload hops between
//! nodes, and a client whose node dies mid-upload succeeds through another.
//!
//! The PostgreSQL and SeaweedFS harnesses are the metadata and storage
//! crates' own, so every suite starts the services the same way.

mod support;

#[path = "../../meta/tests/support/mod.rs"]
mod meta_support;
#[path = "../../storage/tests/support/mod.rs"]
mod storage_support;

use std::process::Command;

use support::http::{request, PatternReader, RequestBody};
use support::oci::{make_image, read_oci_layout_blobs, write_oci_layout};
use support::TestRegistry;

/// A PostgreSQL database and an S3 bucket shared by the nodes of one test.
struct Shared {
    args: Vec<String>,
    _database: meta_support::postgres::TestDatabase,
}

async fn shared_services(test: &str) -> Option<Shared> {
    if support::is_external_registry() {
        support::record_skip(test, "starts its own nodes");
        return None;
    }
    let database = meta_support::postgres::fresh_database(test).await?;
    let weed = storage_support::weed(test)?;
    let bucket = weed.new_bucket().await;
    let args = vec![
        "--database".to_string(),
        database.url.clone(),
        "--storage".to_string(),
        format!("s3://{bucket}/berth"),
        "--s3-endpoint".to_string(),
        weed.endpoint.clone(),
        "--s3-path-style".to_string(),
        "true".to_string(),
        "--s3-region".to_string(),
        storage_support::REGION.to_string(),
        "--s3-access-key-id".to_string(),
        storage_support::ACCESS_KEY.to_string(),
        "--s3-secret-access-key".to_string(),
        storage_support::SECRET_KEY.to_string(),
    ];
    Some(Shared {
        args,
        _database: database,
    })
}

fn start_node(shared: &Shared) -> TestRegistry {
    let args: Vec<&str> = shared.args.iter().map(String::as_str).collect();
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
