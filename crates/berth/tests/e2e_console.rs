//! The web console in a real browser: `berth serve --auth` on port 0, an
//! image pushed by docker, and `console/console_flows.py` driving Debian's
//! Chromium through Playwright: sign in, browse to the image, delete a tag,
//! set a retention policy (and preview it) and an immutable-tag rule,
//! delete the image and restore it from the trash, a refused CSRF form,
//! create a token, sign out everywhere, the administrator sets a quota and
//! opens the settings, a user who may not see a private namespace; axe-core
//! on every page, screenshots at phone and desktop width in
//! `target/console-screenshots/`, and the first load's bytes. Then real
//! clients check what the browser did: docker pulls with the digest
//! command read from the page and podman with the tag command, the deleted
//! tag is gone from `/v2/`, `berth` sees the quota, policy and rule, and
//! podman logs in with the token the page showed. One server, one dockerd
//! and one browser for all of it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::containers::ContainersEnv;
use support::dockerd::Dockerd;
use support::{record_skip, require_python_module, require_tool, run, TestRegistry};

const TEST: &str = "e2e_console";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Where `scripts/test.sh` installs axe-core (`npm install --prefix`).
fn axe_path() -> PathBuf {
    berth_test_support::target_dir().join("console-axe/node_modules/axe-core/axe.min.js")
}

/// A user's temporary home for the `berth` client.
fn berth(home: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(support::berth_binary())
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "berth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_newcomer_signs_in_browses_deletes_a_tag_and_makes_a_token() {
    if support::is_external_registry() {
        record_skip(TEST, "needs a local registry with a known administrator");
        return;
    }
    let Some(python) = require_python_module("playwright", TEST) else {
        return;
    };
    if !Path::new(CHROMIUM).exists() {
        berth_test_support::skip::tool_missing("chromium (Debian package)", TEST);
        return;
    }
    if !axe_path().exists() {
        berth_test_support::skip::tool_missing(
            "axe-core (npm, installed by scripts/test.sh)",
            TEST,
        );
        return;
    }
    let Some(skopeo) = require_tool("skopeo", TEST) else {
        return;
    };
    let (Some(dockerd), Some(docker), Some(podman)) = (
        require_tool("dockerd", TEST),
        require_tool("docker", TEST),
        require_tool("podman", TEST),
    ) else {
        return;
    };
    if !support::daemon::require_root(TEST) {
        return;
    }

    let registry = TestRegistry::start_with(&["--auth"]);
    let addr = registry.addr.clone();
    let admin_password = std::fs::read_to_string(
        registry
            .data_dir
            .as_ref()
            .unwrap()
            .path()
            .join("initial-admin-password"),
    )
    .unwrap()
    .trim()
    .to_string();
    let admin_home = tempfile::tempdir().unwrap();
    berth(
        admin_home.path(),
        &["login", &addr, "-u", "admin", "--password-stdin"],
        &format!("{admin_password}\n"),
    );
    let (alice, bob) = (("alice", "alice-password-1"), ("bob", "bob-password-1"));
    for (user, password) in [alice, bob] {
        berth(
            admin_home.path(),
            &["user", "add", user, "--password-stdin"],
            &format!("{password}\n"),
        );
    }

    // alice pushes one image under two tags into her own namespace, with
    // docker (an imported root filesystem: one layer, no build needed).
    let env = ContainersEnv::new(&addr);
    let skopeo_command = || {
        let mut command = env.command(&skopeo);
        command.arg("--policy").arg(env.policy());
        command
    };
    let daemon = Dockerd::start(&dockerd, &docker, &[&addr]);
    let rootfs = daemon.dir().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(
        rootfs.join("etc/console-test"),
        "made in the console test\n",
    )
    .unwrap();
    let archive = daemon.dir().join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    let repository = format!("{addr}/alice/app");
    run(daemon.docker().args([
        "import",
        archive.to_str().unwrap(),
        &format!("{repository}:v1"),
    ]));
    run(daemon.docker().args([
        "tag",
        &format!("{repository}:v1"),
        &format!("{repository}:v2"),
    ]));
    run(daemon
        .docker()
        .args(["login", &addr, "-u", alice.0, "-p", alice.1]));
    for tag in ["v1", "v2"] {
        run(daemon
            .docker()
            .args(["push", &format!("{repository}:{tag}")]));
    }
    let creds = format!("{}:{}", alice.0, alice.1);

    // The browser.
    let shots = berth_test_support::target_dir().join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/console_flows.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("BERTH_URL", format!("http://{addr}/"))
        .env("ALICE_USER", alice.0)
        .env("ALICE_PASSWORD", alice.1)
        .env("BOB_USER", bob.0)
        .env("BOB_PASSWORD", bob.1)
        .env("ADMIN_USER", "admin")
        .env("ADMIN_PASSWORD", &admin_password)
        .env("SCREENSHOT_DIR", &shots)
        .env("AXE_PATH", axe_path())
        .stderr(Stdio::inherit())
        .output()
        .expect("run the browser script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the browser script failed: {stdout}");
    let result: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("no result from the browser script ({e}): {stdout}"));
    let failures = result["failures"].as_array().unwrap();
    assert!(failures.is_empty(), "in the browser: {failures:#?}");

    // The first load (the anonymous overview with everything it fetched).
    let first_load = result["first_load_bytes"].as_u64().unwrap();
    assert!(
        (1..=200 * 1024).contains(&first_load),
        "first load {first_load} bytes"
    );
    eprintln!("{TEST}: the first load transferred {first_load} bytes");

    // The pull commands the page showed pull the image: podman's by tag
    // (after podman logs in as alice), docker's by digest (after docker
    // forgot the image).
    let command = result["pull_command"].as_str().unwrap();
    let reference = command
        .strip_prefix("podman pull ")
        .unwrap_or_else(|| panic!("not a pull command: {command}"));
    assert_eq!(reference, format!("{addr}/alice/app:v2"));
    let podman_command = |args: &[&str]| {
        let mut command = env.storage_command(&podman);
        command.args(args);
        command
    };
    run(&mut podman_command(&[
        "login",
        "--tls-verify=false",
        "-u",
        alice.0,
        "-p",
        alice.1,
        &addr,
    ]));
    run(&mut podman_command(&[
        "pull",
        "--tls-verify=false",
        reference,
    ]));
    run(&mut podman_command(&["logout", &addr]));
    let by_digest = result["digest_command"].as_str().unwrap();
    let digest_reference = by_digest
        .strip_prefix("docker pull ")
        .unwrap_or_else(|| panic!("not a docker pull command: {by_digest}"));
    assert!(digest_reference.starts_with(&format!("{addr}/alice/app@sha256:")));
    for tag in ["v1", "v2"] {
        run(daemon
            .docker()
            .args(["rmi", &format!("{repository}:{tag}")]));
    }
    run(daemon.docker().args(["pull", digest_reference]));

    // The tag deleted in the browser is gone from /v2/.
    let gone = skopeo_command()
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{addr}/alice/app:v1"),
        ])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "v1 is still there");

    // What the forms set is what `berth` sees: the quota, the retention
    // policy and the immutable rule.
    let quota: Value = serde_json::from_str(&berth(
        admin_home.path(),
        &["quota", "alice", "-o", "json"],
        "",
    ))
    .unwrap();
    let quota = if quota.is_array() {
        quota[0].clone()
    } else {
        quota
    };
    assert_eq!(quota["storage"]["limit"], 10_000_000_000u64, "{quota}");
    assert_eq!(quota["traffic"]["limit"], Value::Null, "{quota}");
    // The usage history the namespace page charts, from the CLI.
    let history: Value = serde_json::from_str(&berth(
        admin_home.path(),
        &["quota", "history", "alice", "--days", "7", "-o", "json"],
        "",
    ))
    .unwrap();
    let days = history["days"].as_array().unwrap();
    assert_eq!(days.len(), 7, "{history}");
    assert!(days[6]["storage_bytes"].as_u64().unwrap() > 0, "{history}");
    let table = berth(admin_home.path(), &["quota", "history", "alice"], "");
    assert!(table.starts_with("DATE"), "{table}");
    assert_eq!(table.lines().count(), 31, "{table}");
    let policies = berth(admin_home.path(), &["retention", "list", "-o", "json"], "");
    assert!(
        policies.contains("\"keep\":5") || policies.contains("\"keep\": 5"),
        "{policies}"
    );
    let rules = berth(admin_home.path(), &["immutable", "list", "-o", "json"], "");
    assert!(rules.contains("release-*"), "{rules}");

    // The token the page showed logs podman in, and it pulls.
    let (token_name, token_secret) = (
        result["token_name"].as_str().unwrap(),
        result["token_secret"].as_str().unwrap(),
    );
    run(&mut podman_command(&[
        "login",
        "--tls-verify=false",
        "-u",
        token_name,
        "-p",
        token_secret,
        &addr,
    ]));
    run(&mut podman_command(&[
        "pull",
        "--tls-verify=false",
        &format!("{addr}/alice/app:v2"),
    ]));
}
