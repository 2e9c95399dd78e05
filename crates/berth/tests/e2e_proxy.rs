//! End to end, the pull-through cache: a real CNCF Distribution
//! (`docker-registry`) is the upstream, once open and once behind htpasswd
//! (Basic) authentication, and another Berth with access control on (the
//! Bearer token flow); an image pushed to them with skopeo is pulled
//! through Berth (`--upstream`, and `[[upstream]]` tables) by tag and by
//! digest with the digests kept. A small fault-injecting HTTP proxy sits
//! between Berth and the open upstream: it counts requests (20 concurrent
//! pulls of one uncached blob make one upstream fetch; a HEAD of an
//! uncached blob fetches nothing), answers 429 and 500, corrupts or cuts
//! blobs (never cached), and holds answers back (slower than an upstream's
//! `read_timeout` counts as down). Finally the upstream
//! is stopped: cached images still pull, a multi-platform one too (a tag
//! checked past its `tag_ttl` carries `Warning: 110`), skopeo configured
//! with Berth as a
//! `registries.conf` mirror of the stopped upstream pulls through it, an
//! uncached image is a spec error, and pushes into a proxy namespace are
//! refused.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::containers::ContainersEnv;
use support::distribution::Distribution;
use support::oci::{make_image, make_index, sha256_digest, write_oci_layout, Blob, TestImage};
use support::{is_external_registry, record_skip, require_tool, run, TestRegistry};

const TEST: &str = "e2e_proxy";

/// What the fault proxy does to each exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Pass,
    /// Answers 429 with `Retry-After: 7`, asking nothing upstream.
    TooManyRequests,
    /// Answers 500, asking nothing upstream.
    ServerError,
    /// Flips a byte in the middle of every blob answer.
    CorruptBlobs,
    /// Sends half of every blob answer, then closes.
    CutBlobs,
    /// Holds every request back until the fault changes, then passes it.
    Slow,
}

/// A loopback HTTP proxy in front of the upstream: one exchange per
/// connection (`Connection: close` both ways), every request line logged.
struct FaultProxy {
    addr: String,
    fault: Arc<Mutex<Fault>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (shared_fault, shared_requests) = (fault.clone(), requests.clone());
        let upstream = upstream.to_string();
        // The acceptor lives as long as the test process; each exchange
        // has its own thread and ends with its connection.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let fault = *shared_fault.lock().unwrap();
                let (requests, upstream) = (shared_requests.clone(), upstream.clone());
                let current = shared_fault.clone();
                std::thread::spawn(move || {
                    // Bounded: the test ends the fault, and a minute is
                    // past every timeout involved.
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while fault == Fault::Slow
                        && *current.lock().unwrap() == Fault::Slow
                        && Instant::now() < deadline
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    exchange(client, &upstream, fault, &requests)
                });
            }
        });
        FaultProxy {
            addr,
            fault,
            requests,
        }
    }

    fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// How many requests so far contained `needle` in their request line.
    fn count(&self, needle: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }
}

fn exchange(mut client: TcpStream, upstream: &str, fault: Fault, requests: &Mutex<Vec<String>>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let request_line = head.lines().next().unwrap_or_default().to_string();
    requests.lock().unwrap().push(request_line.clone());
    let canned = match fault {
        Fault::TooManyRequests => Some("429 Too Many Requests\r\nRetry-After: 7"),
        Fault::ServerError => Some("500 Internal Server Error"),
        _ => None,
    };
    if let Some(status) = canned {
        let _ = client.write_all(
            format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        return;
    }
    let forwarded: String = head
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .filter(|line| !line.is_empty())
        .map(|line| format!("{line}\r\n"))
        .collect::<String>()
        + "Connection: close\r\n\r\n";
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let _ = server.set_read_timeout(Some(Duration::from_secs(30)));
    if server.write_all(forwarded.as_bytes()).is_err() {
        return;
    }
    let mut answer = Vec::new();
    let _ = server.read_to_end(&mut answer);
    let body_start = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |i| i + 4);
    let blob = request_line.starts_with("GET ")
        && request_line.contains("/blobs/")
        && answer.starts_with(b"HTTP/1.1 200");
    let body_len = answer.len() - body_start;
    match fault {
        Fault::CorruptBlobs if blob && body_len > 0 => {
            answer[body_start + body_len / 2] ^= 0xff;
        }
        Fault::CutBlobs if blob => answer.truncate(body_start + body_len / 2),
        _ => {}
    }
    let _ = client.write_all(&answer);
    let _ = client.shutdown(Shutdown::Both);
}

fn skopeo(env: &ContainersEnv, tool: &Path) -> Command {
    let mut cmd = env.command(tool);
    cmd.arg("--policy").arg(env.policy());
    cmd
}

/// Pushes `image` to `dest` (`docker://…`) with skopeo, digests kept.
fn push(env: &ContainersEnv, tool: &Path, image: &TestImage, dest: &str, creds: Option<&str>) {
    push_layout(env, tool, &image.manifest, &image.all_blobs(), dest, creds);
}

/// Pushes a manifest (an index with every platform) and its blobs.
fn push_layout(
    env: &ContainersEnv,
    tool: &Path,
    manifest: &Blob,
    blobs: &BTreeMap<String, Blob>,
    dest: &str,
    creds: Option<&str>,
) {
    let dir = tempfile::tempdir().unwrap();
    write_oci_layout(dir.path(), "v1", manifest, blobs.values());
    let mut cmd = skopeo(env, tool);
    cmd.args([
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ]);
    if let Some(creds) = creds {
        cmd.arg("--dest-creds").arg(creds);
    }
    run(cmd
        .arg(format!("oci:{}:v1", dir.path().display()))
        .arg(dest));
}

/// Copies `src` (`docker://…`, every platform of an index) into a fresh
/// OCI layout and returns the digest of the manifest skopeo wrote.
fn pull_digest(env: &ContainersEnv, tool: &Path, src: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    run(skopeo(env, tool).args([
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        src,
        &format!("oci:{}:pulled", dir.path().display()),
    ]));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits (bounded) until Berth has stored `repo:tag`, which happens in the
/// background once its blobs are cached.
fn wait_for_tag(berth: &str, repo: &str, tag: &str) {
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = client
            .get(format!("http://{berth}/v2/{repo}/tags/list"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
            .and_then(|r| r.json::<serde_json::Value>().ok());
        let found = listed.is_some_and(|list| {
            list["tags"]
                .as_array()
                .is_some_and(|tags| tags.iter().any(|t| t == tag))
        });
        if found {
            return;
        }
        assert!(Instant::now() < deadline, "{repo}:{tag} was never stored");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn htpasswd_entry(user: &str, password: &str) -> Option<String> {
    let htpasswd = require_tool("htpasswd", TEST)?;
    let output = Command::new(htpasswd)
        .args(["-nbB", user, password])
        .output()
        .unwrap();
    assert!(output.status.success());
    Some(String::from_utf8(output.stdout).unwrap())
}

/// The spec error code of an error answer.
fn error_code(response: reqwest::blocking::Response) -> String {
    let body: serde_json::Value = response.json().unwrap();
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn pull_through_cache_of_a_distribution_registry() {
    if is_external_registry() {
        record_skip(TEST, "needs its own berth serve with upstreams");
        return;
    }
    let Some(registry_binary) = require_tool("docker-registry", TEST) else {
        return;
    };
    let Some(skopeo_tool) = require_tool("skopeo", TEST) else {
        return;
    };
    let Some(entry) = htpasswd_entry("puller", "upstream secret") else {
        return;
    };
    let mut open = Distribution::start(&registry_binary, None);
    let locked = Distribution::start(&registry_binary, Some(&entry));
    let proxy = FaultProxy::start(&open.addr);
    // Another Berth with access control on: its challenge sends the cache
    // to its token endpoint (the Bearer flow), as Docker Hub's does.
    let secured = TestRegistry::start_with(&["--auth"]);
    let admin_password_file = secured
        .data_dir
        .as_ref()
        .unwrap()
        .path()
        .join("initial-admin-password");
    let admin_password = std::fs::read_to_string(&admin_password_file).unwrap();

    let work = tempfile::tempdir().unwrap();
    let password_file: PathBuf = work.path().join("upstream-password");
    std::fs::write(&password_file, "upstream secret\n").unwrap();
    let config = work.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[[upstream]]\nnamespace = \"fresh\"\nurl = \"http://{}\"\ntag_ttl = \"0s\"\n\n\
             [[upstream]]\nnamespace = \"quick\"\nurl = \"http://{}\"\ntag_ttl = \"0s\"\n\
             read_timeout = \"1s\"\n\n\
             [[upstream]]\nnamespace = \"locked\"\nurl = \"http://{}\"\nusername = \"puller\"\n\
             password_file = \"{}\"\n\n\
             [[upstream]]\nnamespace = \"tokens\"\nurl = \"http://{}\"\nusername = \"admin\"\n\
             password_file = \"{}\"\n",
            proxy.addr,
            proxy.addr,
            locked.addr,
            password_file.display(),
            secured.addr,
            admin_password_file.display()
        ),
    )
    .unwrap();
    let upstream_flag = format!("cache=http://{}", proxy.addr);
    let berth = TestRegistry::start_with(&[
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        &upstream_flag,
    ]);
    let env = ContainersEnv::new(&berth.addr);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // The images: one with a 4 MiB layer for the concurrent pulls, and
    // small ones for the faults.
    let app = make_image("amd64", &[1024, 4 * 1024 * 1024], &[]);
    let corrupt = make_image("amd64", &[300 * 1024], &[]);
    let cut = make_image("amd64", &[300 * 1024], &[]);
    push(
        &env,
        &skopeo_tool,
        &app,
        &format!("docker://{}/team/app:v1", open.addr),
        None,
    );
    push(
        &env,
        &skopeo_tool,
        &corrupt,
        &format!("docker://{}/team/corrupt:v1", open.addr),
        None,
    );
    push(
        &env,
        &skopeo_tool,
        &cut,
        &format!("docker://{}/team/cut:v1", open.addr),
        None,
    );
    push(
        &env,
        &skopeo_tool,
        &app,
        &format!("docker://{}/team/app:v1", locked.addr),
        Some("puller:upstream secret"),
    );
    push(
        &env,
        &skopeo_tool,
        &app,
        &format!("docker://{}/team/app:v1", secured.addr),
        Some(&format!("admin:{}", admin_password.trim())),
    );

    // 20 concurrent GETs of one uncached blob: one upstream fetch, and
    // every client gets the right bytes.
    let big = app.layers[1].clone();
    let url = format!(
        "http://{}/v2/cache/team/app/blobs/{}",
        berth.addr, big.digest
    );
    let readers: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            std::thread::spawn(move || {
                let response = client.get(&url).send().unwrap();
                assert_eq!(response.status(), 200);
                sha256_digest(&response.bytes().unwrap())
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), big.digest);
    }
    assert_eq!(
        proxy.count(&format!("GET /v2/team/app/blobs/{}", big.digest)),
        1
    );
    // Cached now: served without asking upstream again.
    let again = client.get(&url).send().unwrap();
    assert_eq!(sha256_digest(&again.bytes().unwrap()), big.digest);
    assert_eq!(
        proxy.count(&format!("GET /v2/team/app/blobs/{}", big.digest)),
        1
    );

    // skopeo pulls by tag and by digest through the cache, digests kept.
    let pulled = pull_digest(
        &env,
        &skopeo_tool,
        &format!("docker://{}/cache/team/app:v1", berth.addr),
    );
    assert_eq!(pulled, app.manifest.digest);
    let by_digest = pull_digest(
        &env,
        &skopeo_tool,
        &format!(
            "docker://{}/cache/team/app@{}",
            berth.addr, app.manifest.digest
        ),
    );
    assert_eq!(by_digest, app.manifest.digest);
    wait_for_tag(&berth.addr, "cache/team/app", "v1");

    // Through Basic authentication on the upstream.
    let locked_pull = pull_digest(
        &env,
        &skopeo_tool,
        &format!("docker://{}/locked/team/app:v1", berth.addr),
    );
    assert_eq!(locked_pull, app.manifest.digest);
    // Through the token flow of an upstream Berth.
    let token_pull = pull_digest(
        &env,
        &skopeo_tool,
        &format!("docker://{}/tokens/team/app:v1", berth.addr),
    );
    assert_eq!(token_pull, app.manifest.digest);

    // A corrupt blob reaches the client broken and is never cached: the
    // next GET asks upstream again and gets the right bytes.
    for (image, fault, name) in [
        (&corrupt, Fault::CorruptBlobs, "corrupt"),
        (&cut, Fault::CutBlobs, "cut"),
    ] {
        let layer = &image.layers[0];
        let url = format!(
            "http://{}/v2/cache/team/{name}/blobs/{}",
            berth.addr, layer.digest
        );
        proxy.set(fault);
        let broken = client.get(&url).send().and_then(|r| r.bytes());
        assert!(
            broken.map_or(true, |bytes| sha256_digest(&bytes) != layer.digest),
            "{name}: the broken fetch was served whole"
        );
        proxy.set(Fault::Pass);
        let fetched = client.get(&url).send().unwrap();
        assert_eq!(fetched.status(), 200, "{name}");
        assert_eq!(
            sha256_digest(&fetched.bytes().unwrap()),
            layer.digest,
            "{name}"
        );
        let asked = proxy.count(&format!("GET /v2/team/{name}/blobs/{}", layer.digest));
        assert_eq!(asked, 2, "{name}: the broken fetch was cached");
    }

    // With nothing cached, the upstream's 429 is passed on with its
    // Retry-After, and a 500 is a 502.
    let uncached = format!("http://{}/v2/cache/team/corrupt/manifests/v1", berth.addr);
    proxy.set(Fault::TooManyRequests);
    let limited = client.get(&uncached).send().unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert_eq!(error_code(limited), "TOOMANYREQUESTS");
    proxy.set(Fault::ServerError);
    let failed = client.get(&uncached).send().unwrap();
    assert_eq!(failed.status(), 502);
    assert_eq!(error_code(failed), "UNAVAILABLE");
    proxy.set(Fault::Pass);

    // A HEAD of an uncached blob is answered from upstream's HEAD: the
    // size, nothing fetched, nothing cached (a second HEAD asks again);
    // its errors are translated as a GET's; a GET still fetches it.
    let config = &cut.config;
    let head_url = format!(
        "http://{}/v2/cache/team/cut/blobs/{}",
        berth.addr, config.digest
    );
    let upstream_get = format!("GET /v2/team/cut/blobs/{}", config.digest);
    let upstream_head = format!("HEAD /v2/team/cut/blobs/{}", config.digest);
    for round in 1..=2 {
        let head = client.head(&head_url).send().unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(
            head.headers()["content-length"],
            config.bytes.len().to_string().as_str()
        );
        assert_eq!(
            head.headers()["docker-content-digest"],
            config.digest.as_str()
        );
        assert_eq!(proxy.count(&upstream_head), round);
    }
    let missing = format!(
        "http://{}/v2/cache/team/cut/blobs/sha256:{}",
        berth.addr,
        "0".repeat(64)
    );
    assert_eq!(client.head(&missing).send().unwrap().status(), 404);
    proxy.set(Fault::TooManyRequests);
    let limited = client.head(&head_url).send().unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    proxy.set(Fault::ServerError);
    assert_eq!(client.head(&head_url).send().unwrap().status(), 502);
    proxy.set(Fault::Pass);
    assert_eq!(proxy.count(&upstream_get), 0, "a HEAD fetched the blob");
    let fetched = client.get(&head_url).send().unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(sha256_digest(&fetched.bytes().unwrap()), config.digest);
    assert_eq!(proxy.count(&upstream_get), 1);

    // An upstream slower than its `read_timeout` (1s for `quick`, against
    // the default 30s) counts as down: the cached manifest is served stale
    // and an uncached one is a spec error, long before the held answers
    // would come.
    let quick = format!("http://{}/v2/quick/team/corrupt/manifests/v1", berth.addr);
    assert_eq!(client.get(&quick).send().unwrap().status(), 200);
    wait_for_tag(&berth.addr, "quick/team/corrupt", "v1");
    proxy.set(Fault::Slow);
    let slow = client
        .get(&quick)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    assert_eq!(slow.status(), 200);
    assert_eq!(slow.headers()["warning"], "110 - \"response is stale\"");
    let slow_uncached = client
        .get(format!(
            "http://{}/v2/quick/team/never/manifests/v1",
            berth.addr
        ))
        .send()
        .unwrap();
    assert_eq!(slow_uncached.status(), 502);
    assert_eq!(error_code(slow_uncached), "UNAVAILABLE");
    proxy.set(Fault::Pass);

    // Cached in the namespace whose tags are checked on every pull.
    let fresh = pull_digest(
        &env,
        &skopeo_tool,
        &format!("docker://{}/fresh/team/app:v1", berth.addr),
    );
    assert_eq!(fresh, app.manifest.digest);
    wait_for_tag(&berth.addr, "fresh/team/app", "v1");
    // A multi-platform image: its index is cached with every platform.
    let multi = make_index(vec![
        make_image("amd64", &[2048], &[]),
        make_image("arm64", &[4096], &[]),
    ]);
    push_layout(
        &env,
        &skopeo_tool,
        &multi.index,
        &multi.all_blobs(),
        &format!("docker://{}/team/multi:v1", open.addr),
        None,
    );
    let multi_pull = pull_digest(
        &env,
        &skopeo_tool,
        &format!("docker://{}/fresh/team/multi:v1", berth.addr),
    );
    assert_eq!(multi_pull, multi.index.digest);
    wait_for_tag(&berth.addr, "fresh/team/multi", "v1");

    // The upstream stops.
    open.stop();
    let stale = client
        .get(format!(
            "http://{}/v2/fresh/team/app/manifests/v1",
            berth.addr
        ))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.headers()["warning"], "110 - \"response is stale\"");
    for repo in ["cache", "fresh"] {
        let pulled = pull_digest(
            &env,
            &skopeo_tool,
            &format!("docker://{}/{repo}/team/app:v1", berth.addr),
        );
        assert_eq!(pulled, app.manifest.digest, "{repo}");
    }
    let multi_stale = pull_digest(
        &env,
        &skopeo_tool,
        &format!("docker://{}/fresh/team/multi:v1", berth.addr),
    );
    assert_eq!(multi_stale, multi.index.digest);
    // The containers tools configured with Berth as a mirror of the
    // (stopped) upstream pull through it unchanged.
    std::fs::write(
        env.path("registries.conf"),
        format!(
            "unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n\n\
             [[registry]]\nlocation = \"{}\"\ninsecure = true\n\
             mirror = [{{ location = \"{}/cache\", insecure = true }}]\n\n\
             [[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            open.addr, berth.addr, berth.addr
        ),
    )
    .unwrap();
    // skopeo 1.9 reads registries.conf from its flag, not the variable.
    let mirrored_dir = tempfile::tempdir().unwrap();
    run(skopeo(&env, &skopeo_tool)
        .arg("--registries-conf")
        .arg(env.path("registries.conf"))
        .args(["copy", "--preserve-digests"])
        .arg(format!("docker://{}/team/app:v1", open.addr))
        .arg(format!("oci:{}:pulled", mirrored_dir.path().display())));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(mirrored_dir.path().join("index.json")).unwrap())
            .unwrap();
    let mirrored = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(mirrored, app.manifest.digest);

    let gone = client
        .get(format!(
            "http://{}/v2/cache/team/never/manifests/v1",
            berth.addr
        ))
        .send()
        .unwrap();
    assert_eq!(gone.status(), 502);
    assert_eq!(error_code(gone), "UNAVAILABLE");

    // Read-only to pushes.
    let upload = client
        .post(format!(
            "http://{}/v2/cache/team/mine/blobs/uploads/",
            berth.addr
        ))
        .send()
        .unwrap();
    assert_eq!(upload.status(), 403);
    assert_eq!(error_code(upload), "DENIED");
    let tag_delete = client
        .delete(format!(
            "http://{}/v2/cache/team/app/manifests/v1",
            berth.addr
        ))
        .send()
        .unwrap();
    assert_eq!(tag_delete.status(), 403);
    let mut refused = skopeo(&env, &skopeo_tool);
    let dir = tempfile::tempdir().unwrap();
    write_oci_layout(dir.path(), "v1", &cut.manifest, cut.all_blobs().values());
    let status = refused
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", dir.path().display()))
        .arg(format!("docker://{}/cache/team/mine:v1", berth.addr))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        !status.success(),
        "a push into a proxy namespace went through"
    );
}
