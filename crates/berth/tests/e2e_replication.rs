//! End to end, replication: images pushed to Berth with skopeo (a
//! single-platform image with a signature as its referrer, and a
//! multi-platform index) are replicated by `berth replication` rules to a
//! real CNCF Distribution (`docker-registry`, which refuses deletes by
//! tag) and to another Berth with access control on (credentials from
//! `--creds-file`, the Bearer token flow). Both sides end identical (tag →
//! digest for every tag, the referrers on Berth); a new tag pushed to the
//! source appears on both targets through the on-push rule, a deleted tag
//! disappears from them, and a run after that copies nothing. A pull rule
//! copies an image Distribution holds into Berth, digests kept. Stopping
//! the Distribution target makes a run fail with the reason shown by
//! `berth replication status`; once it is back, the next run copies what
//! it missed.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::containers::ContainersEnv;
use support::distribution::Distribution;
use support::oci::{make_image, make_index, write_oci_layout, Blob};
use support::{is_external_registry, record_skip, require_tool, run, TestRegistry};

const TEST: &str = "e2e_replication";

const MANIFEST_ACCEPT: &str = concat!(
    "application/vnd.oci.image.index.v1+json, ",
    "application/vnd.oci.image.manifest.v1+json, ",
    "application/vnd.docker.distribution.manifest.list.v2+json, ",
    "application/vnd.docker.distribution.manifest.v2+json"
);

/// A registry as the test talks to it: its address and Basic credentials.
struct Side {
    addr: String,
    creds: Option<(String, String)>,
}

impl Side {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let request = client.request(method, format!("http://{}{path}", self.addr));
        match &self.creds {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// The digest `repo:tag` points at, or `None` when there is no such tag.
    fn digest(&self, repo: &str, tag: &str) -> Option<String> {
        let response = self
            .request(
                reqwest::Method::HEAD,
                &format!("/v2/{repo}/manifests/{tag}"),
            )
            .header("Accept", MANIFEST_ACCEPT)
            .send()
            .unwrap();
        if response.status() == 404 {
            return None;
        }
        assert!(response.status().is_success(), "{repo}:{tag}: {response:?}");
        Some(
            response.headers()["docker-content-digest"]
                .to_str()
                .unwrap()
                .to_string(),
        )
    }

    /// Every tag of `repo` with its digest.
    fn tags(&self, repo: &str) -> Vec<(String, String)> {
        let response = self
            .request(reqwest::Method::GET, &format!("/v2/{repo}/tags/list"))
            .send()
            .unwrap();
        if response.status() == 404 {
            return Vec::new();
        }
        let list: Value = response.json().unwrap();
        let mut tags: Vec<String> = list["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        tags.sort();
        tags.into_iter()
            .filter_map(|tag| self.digest(repo, &tag).map(|digest| (tag, digest)))
            .collect()
    }

    /// The digests of the referrers of `subject` in `repo`.
    fn referrers(&self, repo: &str, subject: &str) -> Vec<String> {
        let index: Value = self
            .request(
                reqwest::Method::GET,
                &format!("/v2/{repo}/referrers/{subject}"),
            )
            .send()
            .unwrap()
            .json()
            .unwrap();
        let mut digests: Vec<String> = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d["digest"].as_str().unwrap().to_string())
            .collect();
        digests.sort();
        digests
    }
}

/// A Berth with access control on (and, for the source, outbound calls to
/// loopback allowed), with its administrator's password.
fn berth(extra: &[&str]) -> (TestRegistry, String) {
    // The scanner is off: it would attach SBOMs of its own as referrers on
    // each side, which is not what this test compares.
    let mut args = vec!["--auth", "--scanner-enabled", "false"];
    args.extend_from_slice(extra);
    let registry = TestRegistry::start_with(&args);
    let file = registry
        .data_dir
        .as_ref()
        .unwrap()
        .path()
        .join("initial-admin-password");
    let password = std::fs::read_to_string(file).unwrap().trim().to_string();
    (registry, password)
}

/// `berth` client commands run with a home directory of their own.
struct Cli {
    home: tempfile::TempDir,
}

impl Cli {
    fn berth(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut child = Command::new(support::berth_binary())
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("DOCKER_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.berth(args, None);
        assert_eq!(code, 0, "berth {args:?}: {stdout}{stderr}");
        stdout
    }

    /// `berth replication run NAME --wait -o json`, again while an on-push
    /// run of the rule holds it (409), for at most 30 s.
    fn run_rule(&self, name: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, stdout, stderr) =
                self.berth(&["replication", "run", name, "--wait", "-o", "json"], None);
            if code == 0 {
                return serde_json::from_str(&stdout).unwrap();
            }
            assert!(
                stderr.contains("running already") && Instant::now() < deadline,
                "run {name}: {stdout}{stderr}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}

/// Pushes `manifest` and `blobs` to `dest` with skopeo, digests kept.
fn push(
    env: &ContainersEnv,
    skopeo: &Path,
    manifest: &Blob,
    blobs: impl Iterator<Item = Blob>,
    dest: &str,
    creds: Option<&str>,
) {
    let dir = tempfile::tempdir().unwrap();
    let blobs: Vec<Blob> = blobs.collect();
    write_oci_layout(dir.path(), "v1", manifest, blobs.iter());
    let mut cmd = env.command(skopeo);
    cmd.arg("--policy").arg(env.policy()).args([
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

/// Pushes a signature (an artifact manifest whose subject is `subject`)
/// by digest, with the empty config as its one layer; returns its digest.
fn push_signature(side: &Side, repo: &str, subject: &Blob) -> String {
    let empty = Blob::new("application/vnd.oci.empty.v1+json", b"{}".to_vec());
    let uploaded = side
        .request(
            reqwest::Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={}", empty.digest),
        )
        .header("Content-Type", "application/octet-stream")
        .body(empty.bytes.clone())
        .send()
        .unwrap();
    assert_eq!(uploaded.status(), 201, "{uploaded:?}");
    let descriptor = serde_json::json!({
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": empty.digest,
        "size": 2,
    });
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": descriptor,
        "layers": [descriptor],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.bytes.len(),
        },
    }))
    .unwrap();
    let signature = Blob::new("application/vnd.oci.image.manifest.v1+json", manifest);
    let put = side
        .request(
            reqwest::Method::PUT,
            &format!("/v2/{repo}/manifests/{}", signature.digest),
        )
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(signature.bytes.clone())
        .send()
        .unwrap();
    assert_eq!(put.status(), 201, "{put:?}");
    signature.digest
}

/// Waits (bounded) until `check` holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn rules_keep_distribution_and_another_berth_identical_through_pushes_and_deletes() {
    if is_external_registry() {
        record_skip(TEST, "needs its own berth serve instances");
        return;
    }
    let Some(registry_binary) = require_tool("docker-registry", TEST) else {
        return;
    };
    let Some(skopeo) = require_tool("skopeo", TEST) else {
        return;
    };
    let mut distribution = Distribution::start(&registry_binary, None);
    let (target_berth, target_password) = berth(&[]);
    let (source_berth, source_password) = berth(&["--outbound-allow-private"]);
    let source = Side {
        addr: source_berth.addr.clone(),
        creds: Some(("admin".into(), source_password.clone())),
    };
    let dist = Side {
        addr: distribution.addr.clone(),
        creds: None,
    };
    let target = Side {
        addr: target_berth.addr.clone(),
        creds: Some(("admin".into(), target_password.clone())),
    };
    let env = ContainersEnv::new(&source.addr);
    let source_creds = format!("admin:{source_password}");

    // The source's images: an image with a signature, an index of two
    // platforms, and a repository the rules leave out.
    let app = make_image("amd64", &[1024, 200 * 1024], &[]);
    let multi = make_index(vec![
        make_image("amd64", &[2048], &[]),
        make_image("arm64", &[4096], &[]),
    ]);
    let other = make_image("amd64", &[512], &[]);
    for (manifest, blobs, dest) in [
        (&app.manifest, app.all_blobs(), "team/app:v1"),
        (&multi.index, multi.all_blobs(), "team/multi:v1"),
        (&other.manifest, other.all_blobs(), "other/skip:v1"),
    ] {
        push(
            &env,
            &skopeo,
            manifest,
            blobs.into_values(),
            &format!("docker://{}/{dest}", source.addr),
            Some(&source_creds),
        );
    }
    let signature = push_signature(&source, "team/app", &app.manifest);
    // An image that only Distribution has, for the pull rule.
    let base = make_image("amd64", &[3000], &[]);
    push(
        &env,
        &skopeo,
        &base.manifest,
        base.all_blobs().into_values(),
        &format!("docker://{}/mirror/base:v1", dist.addr),
        None,
    );

    let cli = Cli {
        home: tempfile::tempdir().unwrap(),
    };
    let (code, out, err) = cli.berth(
        &["login", &source.addr, "-u", "admin", "--password-stdin"],
        Some(&format!("{source_password}\n")),
    );
    assert_eq!(code, 0, "{out}{err}");
    let creds_file = cli.home.path().join("target-creds");
    std::fs::write(&creds_file, format!("admin:{target_password}\n")).unwrap();
    let dist_url = format!("http://{}", dist.addr);
    let target_url = format!("http://{}", target.addr);
    cli.ok(&[
        "replication",
        "add",
        "to-dist",
        "--target",
        &dist_url,
        "--repos",
        "team/**",
        "--on-push",
    ]);
    let added = cli.json(&[
        "replication",
        "add",
        "to-berth",
        "--target",
        &target_url,
        "--creds-file",
        creds_file.to_str().unwrap(),
        "--repos",
        "team/*",
        "--on-push",
    ]);
    assert_eq!(added["authenticated"], true);
    assert!(!added.to_string().contains(&target_password));
    cli.ok(&[
        "replication",
        "add",
        "from-dist",
        "--source",
        &dist_url,
        "--repos",
        "mirror/**",
        "--tags",
        "v*",
    ]);
    let listed = cli.ok(&["replication", "list"]);
    for name in ["to-dist", "to-berth", "from-dist"] {
        assert!(listed.contains(name), "{listed}");
    }
    assert!(!listed.contains(&target_password));

    // First runs: everything matched is copied, both ways.
    for rule in ["to-dist", "to-berth", "from-dist"] {
        let run = cli.run_rule(rule);
        assert_eq!(run["status"], "succeeded", "{rule}: {run}");
    }
    let same = |repo: &str| {
        let expected = source.tags(repo);
        assert!(!expected.is_empty(), "{repo}");
        assert_eq!(dist.tags(repo), expected, "{repo} on Distribution");
        assert_eq!(target.tags(repo), expected, "{repo} on the other Berth");
    };
    same("team/app");
    same("team/multi");
    assert_eq!(dist.tags("other/skip"), vec![]);
    assert_eq!(target.tags("other/skip"), vec![]);
    assert_eq!(
        target.referrers("team/app", &app.manifest.digest),
        vec![signature.clone()]
    );
    assert_eq!(
        source.tags("mirror/base"),
        vec![("v1".to_string(), base.manifest.digest.clone())]
    );

    // On push: a new tag reaches both targets; a deleted one leaves them.
    let app2 = make_image("amd64", &[1500], &[]);
    push(
        &env,
        &skopeo,
        &app2.manifest,
        app2.all_blobs().into_values(),
        &format!("docker://{}/team/app:v2", source.addr),
        Some(&source_creds),
    );
    eventually("v2 on both targets", || {
        dist.digest("team/app", "v2").as_deref() == Some(app2.manifest.digest.as_str())
            && target.digest("team/app", "v2").as_deref() == Some(app2.manifest.digest.as_str())
    });
    let deleted = source
        .request(reqwest::Method::DELETE, "/v2/team/app/manifests/v1")
        .send()
        .unwrap();
    assert_eq!(deleted.status(), 202, "{deleted:?}");
    eventually("v1 gone from both targets", || {
        dist.digest("team/app", "v1").is_none() && target.digest("team/app", "v1").is_none()
    });
    same("team/app");

    // Nothing left to copy.
    let again = cli.run_rule("to-berth");
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(again["images_copied"], 0, "{again}");
    assert_eq!(again["blobs_copied"], 0, "{again}");
    assert_eq!(again["images_skipped"], 2, "{again}");
    let status = cli.ok(&["replication", "status", "to-berth"]);
    assert!(
        status.contains("push") && status.contains("manual"),
        "{status}"
    );

    // A target that is down: a push meanwhile reaches the other target,
    // the run fails and says why; once the target is back, the next run
    // copies what it missed.
    distribution.stop();
    let app3 = make_image("amd64", &[1800], &[]);
    push(
        &env,
        &skopeo,
        &app3.manifest,
        app3.all_blobs().into_values(),
        &format!("docker://{}/team/app:v3", source.addr),
        Some(&source_creds),
    );
    eventually("v3 on the Berth target", || {
        target.digest("team/app", "v3").as_deref() == Some(app3.manifest.digest.as_str())
    });
    // A tag deleted meanwhile leaves the Berth target at once; the
    // Distribution target's deletion is kept pending, shown by the status.
    let deleted = source
        .request(reqwest::Method::DELETE, "/v2/team/app/manifests/v2")
        .send()
        .unwrap();
    assert_eq!(deleted.status(), 202, "{deleted:?}");
    eventually("v2 gone from the Berth target", || {
        target.digest("team/app", "v2").is_none()
    });
    eventually("the deletion pending for the Distribution target", || {
        cli.json(&["replication", "status", "to-dist"])["pending_deletes"] == 1
    });
    let status = cli.json(&["replication", "status", "to-dist"]);
    assert_eq!(status["oldest_pending_deletes"][0]["tag"], "v2", "{status}");
    let table = cli.ok(&["replication", "status", "to-dist"]);
    assert!(
        table.contains("not yet deleted on the remote") && table.contains("team/app:v2"),
        "{table}"
    );
    // (An on-push run of the rule may hold it for a moment: 409, again.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, out, err) = loop {
        let (code, out, err) = cli.berth(&["replication", "run", "to-dist", "--wait"], None);
        if !err.contains("running already") || Instant::now() > deadline {
            break (code, out, err);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("failed"), "{err}");
    let status = cli.json(&["replication", "status", "to-dist"]);
    assert_eq!(status["runs"][0]["status"], "failed", "{status}");
    assert!(
        status["runs"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("connect")),
        "{status}"
    );
    distribution.restart();
    let resumed = cli.run_rule("to-dist");
    assert_eq!(resumed["status"], "succeeded", "{resumed}");
    // v3 was pushed while the target was down: this run (or the on-push
    // run the event started, if it came after the restart) copied it, and
    // the deletion of v2 it missed is done.
    let resumed_count =
        resumed["images_copied"].as_u64().unwrap() + resumed["images_skipped"].as_u64().unwrap();
    assert_eq!(resumed_count, 2, "{resumed}");
    assert_eq!(
        dist.digest("team/app", "v3").as_deref(),
        Some(app3.manifest.digest.as_str())
    );
    assert_eq!(dist.digest("team/app", "v2"), None);
    assert_eq!(
        cli.json(&["replication", "status", "to-dist"])["pending_deletes"],
        0
    );
    same("team/app");
    cli.ok(&["replication", "rm", "to-dist"]);
    let listed = cli.ok(&["replication", "list", "-q"]);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["from-dist", "to-berth"]
    );
}
