//! End to end for the `berth` client commands: the real binary as a user
//! runs it, against the real `berth serve --auth` on port 0, with its
//! configuration in a throw-away home directory. Images are pushed and
//! pulled by skopeo and podman, with credentials from `berth login --docker`
//! and from the Kubernetes secret `berth token add --k8s-secret` prints.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use support::containers::ContainersEnv;
use support::oci::{make_image, write_oci_layout};
use support::{record_skip, require_tool, run, TestRegistry};

/// What one `berth` run did.
#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// A user of the client: a home directory of their own, so their
/// configuration and docker credentials are theirs alone.
struct User {
    home: tempfile::TempDir,
    /// Extra environment (podman's auth file, for `--docker`).
    env: Vec<(String, PathBuf)>,
}

impl User {
    fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    fn config_file(&self) -> PathBuf {
        self.home.path().join(".config/berth/config.json")
    }

    fn berth(&self, args: &[&str], stdin: Option<&str>) -> Outcome {
        let mut command = Command::new(support::berth_binary());
        command
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("NO_COLOR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("run berth");
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
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `berth ARGS` and insists on success.
    fn ok(&self, args: &[&str]) -> Outcome {
        let outcome = self.berth(args, None);
        assert_eq!(outcome.code, 0, "berth {args:?}: {outcome:?}");
        outcome
    }

    fn login(&self, registry: &TestRegistry, user: &str, password: &str, extra: &[&str]) {
        let mut args = vec![
            "login",
            registry.addr.as_str(),
            "-u",
            user,
            "--password-stdin",
        ];
        args.extend_from_slice(extra);
        let outcome = self.berth(&args, Some(&format!("{password}\n")));
        assert_eq!(outcome.code, 0, "login as {user}: {outcome:?}");
    }
}

/// A registry with access control on, where users may create namespaces,
/// and its generated administrator password.
fn registry() -> Option<(TestRegistry, String)> {
    // Pull statistics flushed every second, so a test sees a pull soon.
    registry_with(&["--pull-stats-interval", "1s"])
}

/// [`registry`] with other extra arguments.
fn registry_with(extra: &[&str]) -> Option<(TestRegistry, String)> {
    if support::is_external_registry() {
        record_skip(
            "e2e_cli",
            "needs a local registry with a known administrator",
        );
        return None;
    }
    let mut args = vec!["--auth", "--users-may-create-namespaces"];
    args.extend_from_slice(extra);
    let registry = TestRegistry::start_with(&args);
    let file = registry
        .data_dir
        .as_ref()
        .unwrap()
        .path()
        .join("initial-admin-password");
    let password = std::fs::read_to_string(file).unwrap().trim().to_string();
    Some((registry, password))
}

/// The administrator creates `name` with `password` (and its personal
/// namespace) through `berth user add`.
fn add_user(admin: &User, name: &str, password: &str) {
    let outcome = admin.berth(
        &["user", "add", name, "--password-stdin", "-o", "json"],
        Some(&format!("{password}\n")),
    );
    assert_eq!(outcome.code, 0, "{outcome:?}");
    let user = outcome.json();
    assert_eq!(user["name"], name);
    assert_eq!(user["admin"], false);
    assert!(
        user.get("password").is_none(),
        "a given password is not echoed"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn login_keeps_a_refresh_token_and_never_the_password() {
    let Some((registry, password)) = registry() else {
        return;
    };
    let admin = User::new();
    admin.login(&registry, "admin", &password, &[]);
    let file = admin.config_file();
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&password), "the password is stored: {text}");
    let config: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["default"], registry.addr.as_str());
    let login = &config["registries"][registry.addr.as_str()];
    assert_eq!(login["user"], "admin");
    assert_eq!(login["url"], format!("http://{}/", registry.addr));
    assert!(login["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("berth_rt_"));

    // The stored login works, and `info` and `registry` say so.
    let info = admin.ok(&["info", "-o", "json"]).json();
    assert_eq!(info["default"], registry.addr.as_str());
    assert_eq!(info["registries"][0]["status"], "ok");
    assert_eq!(info["registries"][0]["user"], "admin");
    assert_eq!(admin.ok(&["registry"]).stdout.trim(), registry.addr);
    let listed = admin.ok(&["namespace", "list", "-q"]);
    assert_eq!(listed.stdout, "admin\n");

    // After logout every command says how to log in again.
    admin.ok(&["logout"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("berth_rt_"), "{text}");
    let refused = admin.berth(&["namespace", "list"], None);
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.stderr,
        format!(
            "error: not logged in to {0}: run berth login {0}\n",
            registry.addr
        )
    );
}

#[test]
fn namespaces_members_tokens_and_users() {
    let Some((registry, password)) = registry() else {
        return;
    };
    let admin = User::new();
    admin.login(&registry, "admin", &password, &[]);
    add_user(&admin, "alice", "alice-password-1");
    add_user(&admin, "bob", "bob-password-1");
    // A generated password is printed once, and it logs in.
    let carol = admin.ok(&["user", "add", "carol", "-o", "json"]).json();
    let carol_password = carol["password"].as_str().unwrap().to_string();
    User::new().login(&registry, "carol", &carol_password, &[]);
    let users = admin.ok(&["user", "list", "-o", "json"]).json();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "alice", "bob", "carol"]);

    let alice = User::new();
    alice.login(&registry, "alice", "alice-password-1", &[]);
    // Alice creates a namespace and owns it; she sees it and her own.
    let created = alice
        .ok(&["namespace", "add", "team-a", "-o", "json"])
        .json();
    assert_eq!(created["name"], "team-a");
    assert_eq!(created["visibility"], "private");
    let listed = alice.ok(&["namespace", "list", "-o", "json"]).json();
    let seen: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n["role"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [("alice", "owner"), ("team-a", "owner")]);
    let table = alice.ok(&["namespace", "list"]).stdout;
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAMESPACE", "VISIBILITY", "ROLE", "CREATED"]
    );
    assert!(lines.next().unwrap().starts_with("alice "), "{table}");

    // Members.
    alice.ok(&["member", "add", "team-a", "bob", "reader"]);
    let members = alice.ok(&["member", "list", "team-a", "-o", "json"]).json();
    assert_eq!(
        members,
        serde_json::json!([{"user": "alice", "role": "owner"}, {"user": "bob", "role": "reader"}])
    );
    let bob = User::new();
    bob.login(&registry, "bob", "bob-password-1", &[]);
    assert_eq!(bob.ok(&["namespace", "list", "-q"]).stdout, "bob\nteam-a\n");
    // A reader may not manage members: 403, with what to do.
    let refused = bob.berth(&["member", "list", "team-a"], None);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("(HTTP 403)"), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("ask an administrator, or the namespace's owner"),
        "{refused:?}"
    );
    alice.ok(&["member", "rm", "team-a", "bob"]);
    // Issue 11 (Low): `berth admin member remove` took a namespace's last
    // owner away, where the API refuses; now both keep the rule.
    let data_dir = registry.data_dir.as_ref().unwrap().path().to_str().unwrap();
    let last_owner = alice.berth(
        &[
            "admin",
            "member",
            "remove",
            "team-a",
            "alice",
            "--data-dir",
            data_dir,
        ],
        None,
    );
    assert_ne!(last_owner.code, 0, "{last_owner:?}");
    assert!(last_owner.stderr.contains("last owner"), "{last_owner:?}");
    assert_eq!(bob.ok(&["namespace", "list", "-q"]).stdout, "bob\n");

    // Tokens: created with its secret once, listed without it, revoked.
    let token = alice
        .ok(&[
            "token",
            "add",
            "ci",
            "--scope",
            "team-a:pull,push",
            "--expires",
            "30d",
            "-o",
            "json",
        ])
        .json();
    assert_eq!(token["name"], "ci");
    assert_eq!(token["scopes"], serde_json::json!(["team-a:pull,push"]));
    assert!(token["token"].as_str().unwrap().starts_with("berth_at_"));
    assert!(token["expires_at"].is_string());
    let listed = alice.ok(&["token", "list", "-o", "json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // Every owner of team-a sees the tokens that reach it (issue 11).
    let in_namespace = admin
        .ok(&["token", "list", "--namespace", "team-a", "-q"])
        .stdout;
    assert_eq!(in_namespace, "ci\n");
    assert_eq!(listed[0]["name"], "ci");
    assert_eq!(listed[0]["created_by"], "alice");
    assert!(listed[0].get("token").is_none(), "no secret in a listing");
    assert!(listed[0]["revoked_at"].is_null());
    // Bob owns nothing in team-a, so he cannot mint tokens for it.
    let refused = bob.berth(&["token", "add", "x", "--scope", "team-a:pull"], None);
    assert_eq!(refused.code, 1, "{refused:?}");
    alice.ok(&["token", "rm", "ci"]);
    let listed = alice.ok(&["token", "list", "-o", "json"]).json();
    assert!(listed[0]["revoked_at"].is_string(), "{listed}");
    let table = alice.ok(&["token", "list"]).stdout;
    assert!(
        table.lines().nth(1).unwrap().contains(" revoked "),
        "{table}"
    );

    // Users are for administrators only.
    let refused = alice.berth(&["user", "list"], None);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("(HTTP 403)"), "{refused:?}");

    // Issue 11: credentials after creation. Bob changes his password; berth
    // logs him in again with it, and the old one no longer logs in.
    let wrong = bob.berth(
        &["passwd", "--password-stdin"],
        Some("not bob's password\nbob-password-2\n"),
    );
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(wrong.stderr.contains("(HTTP 403)"), "{wrong:?}");
    let changed = bob.berth(
        &["passwd", "--password-stdin"],
        Some("bob-password-1\nbob-password-2\n"),
    );
    assert_eq!(changed.code, 0, "{changed:?}");
    assert_eq!(bob.ok(&["namespace", "list", "-q"]).stdout, "bob\n");
    let old = User::new().berth(
        &["login", &registry.addr, "-u", "bob", "--password-stdin"],
        Some("bob-password-1\n"),
    );
    assert_eq!(old.code, 1, "{old:?}");
    // An administrator disables him on the database: his stored login stops
    // working at once; enabled again, he logs in anew.
    let admin_user = |args: &[&str]| {
        let mut all = vec!["admin", "user"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--data-dir", data_dir]);
        admin.berth(&all, None)
    };
    assert_eq!(admin_user(&["disable", "bob"]).code, 0);
    let listed = admin_user(&["list"]).stdout;
    assert!(listed.contains("bob\tuser\tdisabled"), "{listed}");
    let disabled = bob.berth(&["namespace", "list"], None);
    assert_ne!(disabled.code, 0, "{disabled:?}");
    assert_eq!(admin_user(&["enable", "bob"]).code, 0);
    bob.login(&registry, "bob", "bob-password-2", &[]);
    assert_eq!(bob.ok(&["namespace", "list", "-q"]).stdout, "bob\n");
    // The last enabled administrator stays one.
    let demoted = admin_user(&["set-admin", "admin", "false"]);
    assert_ne!(demoted.code, 0, "{demoted:?}");
    assert!(
        demoted.stderr.contains("last enabled administrator"),
        "{demoted:?}"
    );
    // The same changes through the API with the client: disabling carol
    // refuses her login, enabling lets her in again; a password set by the
    // administrator (generated, shown once) replaces hers.
    let disabled = admin.ok(&["user", "disable", "carol", "-o", "json"]).json();
    assert_eq!(disabled["disabled"], true, "{disabled}");
    let table = admin.ok(&["user", "list"]).stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("carol ") && l.contains(" disabled ")),
        "{table}"
    );
    let refused = User::new().berth(
        &["login", &registry.addr, "-u", "carol", "--password-stdin"],
        Some(&format!("{carol_password}\n")),
    );
    assert_eq!(refused.code, 1, "{refused:?}");
    admin.ok(&["user", "enable", "carol"]);
    User::new().login(&registry, "carol", &carol_password, &[]);
    let reset = admin
        .ok(&["user", "set-password", "carol", "-o", "json"])
        .json();
    let new_password = reset["password"].as_str().unwrap();
    assert_ne!(new_password, carol_password);
    assert_eq!(reset["logins_revoked"], true);
    User::new().login(&registry, "carol", new_password, &[]);
    let promoted = admin
        .ok(&["user", "set-admin", "alice", "true", "-o", "json"])
        .json();
    assert_eq!(promoted["admin"], true, "{promoted}");
    assert_eq!(alice.ok(&["user", "list", "-q"]).stdout.lines().count(), 4);
    admin.ok(&["user", "set-admin", "alice", "false"]);
    let refused = alice.berth(&["user", "list"], None);
    assert_eq!(refused.code, 1, "{refused:?}");
    // `berth user rm` deletes a user through the API.
    admin.ok(&["user", "rm", "carol"]);
    let users = admin.ok(&["user", "list", "-q"]).stdout;
    assert_eq!(users, "admin\nalice\nbob\n");
}

/// Decodes a `kubernetes.io/dockerconfigjson` Secret and returns the user
/// name and password it holds for `host`.
fn secret_credentials(yaml: &str, host: &str) -> (String, String) {
    assert!(
        yaml.contains("type: kubernetes.io/dockerconfigjson\n"),
        "{yaml}"
    );
    let encoded = yaml
        .lines()
        .find_map(|line| line.trim().strip_prefix(".dockerconfigjson: "))
        .unwrap_or_else(|| panic!("no .dockerconfigjson in {yaml}"));
    let config: Value = serde_json::from_slice(&STANDARD.decode(encoded).unwrap()).unwrap();
    let entry = &config["auths"][host];
    let user = entry["username"].as_str().unwrap().to_string();
    let password = entry["password"].as_str().unwrap().to_string();
    assert_eq!(
        entry["auth"].as_str().unwrap(),
        STANDARD.encode(format!("{user}:{password}"))
    );
    (user, password)
}

/// Writes a small random image as an OCI layout tagged `v1`.
fn image_layout() -> tempfile::TempDir {
    let image = make_image("amd64", &[2048, 4096], &[]);
    let dir = tempfile::tempdir().unwrap();
    let blobs = image.all_blobs();
    write_oci_layout(dir.path(), "v1", &image.manifest, blobs.values());
    dir
}

fn skopeo(env: &ContainersEnv, tool: &Path) -> Command {
    let mut cmd = env.command(tool);
    cmd.arg("--policy").arg(env.policy());
    cmd
}

#[test]
fn a_pull_secret_from_token_add_lets_podman_pull() {
    let test = "a_pull_secret_from_token_add_lets_podman_pull";
    let Some(podman) = require_tool("podman", test) else {
        return;
    };
    let Some(skopeo_tool) = require_tool("skopeo", test) else {
        return;
    };
    let Some((registry, password)) = registry() else {
        return;
    };
    let addr = registry.addr.as_str();
    let admin = User::new();
    admin.login(&registry, "admin", &password, &[]);
    add_user(&admin, "alice", "alice-password-1");
    let alice = User::new();
    alice.login(&registry, "alice", "alice-password-1", &[]);
    alice.ok(&["namespace", "add", "team-a"]);

    let env = ContainersEnv::new(addr);
    let layout = image_layout();
    run(skopeo(&env, &skopeo_tool).args([
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:alice-password-1",
        &format!("oci:{}:v1", layout.path().display()),
        &format!("docker://{addr}/team-a/app:v1"),
    ]));

    let yaml = alice
        .ok(&[
            "token",
            "add",
            "cluster-pull",
            "--scope",
            "team-a:pull",
            "--k8s-secret",
            "regcred",
            "--k8s-namespace",
            "apps",
        ])
        .stdout;
    assert!(
        yaml.contains("  name: regcred\n  namespace: apps\n"),
        "{yaml}"
    );
    let (user, secret) = secret_credentials(&yaml, addr);
    assert_eq!(user, "cluster-pull");
    // podman logs in with exactly what the cluster would use, and pulls.
    run(env.command(&podman).args([
        "login",
        "--tls-verify=false",
        "-u",
        &user,
        "-p",
        &secret,
        addr,
    ]));
    run(env.storage_command(&podman).args([
        "pull",
        "--tls-verify=false",
        &format!("{addr}/team-a/app:v1"),
    ]));
    // The robot may pull only: a push with its credentials is refused.
    let push = skopeo(&env, &skopeo_tool)
        .args([
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", layout.path().display()),
            &format!("docker://{addr}/team-a/app:v2"),
        ])
        .output()
        .unwrap();
    assert!(!push.status.success(), "a pull token pushed");
    // Revoked, it pulls no more.
    alice.ok(&["token", "rm", "cluster-pull"]);
    let pull = skopeo(&env, &skopeo_tool)
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{addr}/team-a/app:v1"),
        ])
        .output()
        .unwrap();
    assert!(!pull.status.success(), "a revoked token pulled");
}

#[test]
fn login_docker_lets_skopeo_and_podman_push_without_their_own_login() {
    let test = "login_docker_lets_skopeo_and_podman_push_without_their_own_login";
    let Some(podman) = require_tool("podman", test) else {
        return;
    };
    let Some(skopeo_tool) = require_tool("skopeo", test) else {
        return;
    };
    let Some((registry, password)) = registry() else {
        return;
    };
    let addr = registry.addr.as_str();
    let admin = User::new();
    admin.login(&registry, "admin", &password, &[]);
    add_user(&admin, "alice", "alice-password-1");

    let env = ContainersEnv::new(addr);
    let mut alice = User::new();
    alice
        .env
        .push(("REGISTRY_AUTH_FILE".into(), env.path("auth.json")));
    alice.login(&registry, "alice", "alice-password-1", &["--docker"]);
    // Both files hold an identity token (a refresh token), not the password.
    let docker_file = alice.home.path().join(".docker/config.json");
    for file in [&docker_file, &env.path("auth.json")] {
        assert_eq!(mode(file), 0o600, "{}", file.display());
        let text = std::fs::read_to_string(file).unwrap();
        assert!(!text.contains("alice-password-1"), "{text}");
        let config: Value = serde_json::from_str(&text).unwrap();
        assert!(config["auths"][addr]["identitytoken"]
            .as_str()
            .unwrap()
            .starts_with("berth_rt_"));
    }

    // skopeo pushes into alice's private namespace and podman pulls it back,
    // neither logged in by itself.
    let layout = image_layout();
    run(skopeo(&env, &skopeo_tool).args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.path().display()),
        &format!("docker://{addr}/alice/app:v1"),
    ]));
    run(env.storage_command(&podman).args([
        "pull",
        "--tls-verify=false",
        &format!("{addr}/alice/app:v1"),
    ]));
    // With docker's file alone (podman's own emptied), skopeo still reads it.
    std::fs::write(env.path("auth.json"), r#"{"auths":{}}"#).unwrap();
    let inspect = |env: &ContainersEnv| {
        skopeo(env, &skopeo_tool)
            .env("HOME", alice.home.path())
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{addr}/alice/app:v1"),
            ])
            .output()
            .unwrap()
    };
    let read = inspect(&env);
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );

    // Logout takes the entries away again.
    alice.ok(&["logout"]);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(&docker_file).unwrap()).unwrap();
    assert!(config["auths"].get(addr).is_none(), "{config}");
    assert!(
        !inspect(&env).status.success(),
        "still logged in after logout"
    );
}

#[test]
fn misuse_and_failures_name_cause_and_fix() {
    let Some((registry, password)) = registry() else {
        return;
    };
    let addr = registry.addr.as_str();
    let user = User::new();
    // (arguments, standard input, exit status, what stderr must say)
    let before_login: &[(&[&str], Option<&str>, i32, &str)] = &[
        (
            &["namespace", "list"],
            None,
            2,
            "no registry given and no default registry: run berth login HOST",
        ),
        (
            &["namespace", "list", "--registry", addr],
            None,
            1,
            &format!("not logged in to {addr}: run berth login {addr}"),
        ),
        (
            &["login", addr, "-u", "admin", "--password-stdin"],
            Some("wrong-password\n"),
            1,
            &format!(
                "{addr} refused the user name or password of admin: check them and run berth \
                 login {addr} again"
            ),
        ),
        (
            &["login", "127.0.0.1:1", "-u", "admin", "--password-stdin"],
            Some("x\n"),
            1,
            "cannot reach http://127.0.0.1:1/: ",
        ),
        (
            &[
                "login",
                "ftp://registry.example",
                "-u",
                "admin",
                "--password-stdin",
            ],
            Some("x\n"),
            2,
            "is not a registry address",
        ),
        (
            &["login", addr, "-u", "admin"],
            None,
            2,
            "no password: pass --password-stdin",
        ),
        (&["token", "add", "ci"], None, 2, "--scope <SCOPE>"),
        (&["frobnicate"], None, 2, "unrecognized subcommand"),
    ];
    for (args, stdin, code, message) in before_login {
        let outcome = user.berth(args, *stdin);
        assert_eq!(outcome.code, *code, "{args:?}: {outcome:?}");
        assert!(outcome.stderr.contains(message), "{args:?}: {outcome:?}");
    }
    // Nothing was stored by the failed logins.
    assert!(!user.config_file().exists());

    user.login(&registry, "admin", &password, &[]);
    let after_login: &[(&[&str], i32, &str)] = &[
        (
            &["token", "add", "ci", "--scope", "team-a"],
            2,
            "--scope team-a: ",
        ),
        (
            &[
                "token",
                "add",
                "ci",
                "--scope",
                "admin:pull",
                "--expires",
                "soon",
            ],
            2,
            "--expires soon: ",
        ),
        (
            &["member", "list", "no-such-namespace"],
            1,
            "(HTTP 404): check the name",
        ),
        (
            &["namespace", "add", "admin"],
            1,
            "(HTTP 409): it conflicts with what exists: choose another name",
        ),
        (
            &["namespace", "add", "Bad_Name"],
            1,
            "(HTTP 400): correct the value named",
        ),
    ];
    for (args, code, message) in after_login {
        let outcome = user.berth(args, None);
        assert_eq!(outcome.code, *code, "{args:?}: {outcome:?}");
        assert!(
            outcome.stderr.starts_with("error: "),
            "{args:?}: {outcome:?}"
        );
        assert!(outcome.stderr.contains(message), "{args:?}: {outcome:?}");
        assert_eq!(outcome.stderr.lines().count(), 1, "one line: {outcome:?}");
    }

    // A revoked login (here: a refresh token the server never issued).
    let file = user.config_file();
    let text = std::fs::read_to_string(&file).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    config["registries"][addr]["refresh_token"] = "berth_rt_forged".into();
    std::fs::write(&file, config.to_string()).unwrap();
    let outcome = user.berth(&["namespace", "list"], None);
    assert_eq!(outcome.code, 1, "{outcome:?}");
    assert!(
        outcome.stderr.contains(&format!(
            "your login to {addr} has expired or was revoked: run berth login {addr}"
        )),
        "{outcome:?}"
    );
}

#[test]
fn a_registry_without_access_control_says_so() {
    if support::is_external_registry() {
        record_skip("e2e_cli", "needs a local registry");
        return;
    }
    let registry = TestRegistry::start();
    let outcome = User::new().berth(
        &["login", &registry.addr, "-u", "admin", "--password-stdin"],
        Some("x\n"),
    );
    assert_eq!(outcome.code, 1, "{outcome:?}");
    assert!(
        outcome.stderr.contains("has no access control"),
        "{outcome:?}"
    );
}

#[test]
fn completion_scripts_name_the_client_commands() {
    let user = User::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = user.ok(&["completion", shell]).stdout;
        for command in ["login", "namespace", "token", "member"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
}

/// `berth image …` against images skopeo pushed: a single-platform image
/// and a two-platform index from OCI layouts the test writes. The listing
/// shows exactly the digests, sizes and platforms pushed; a tag into
/// another namespace is pulled back by skopeo, children too; untag, rm,
/// and `namespace rm` (refused while it holds repositories, then forced).
#[test]
fn images_pushed_by_skopeo_are_listed_inspected_tagged_untagged_and_removed() {
    let test = "images_pushed_by_skopeo_are_listed_inspected_tagged_untagged_and_removed";
    let Some(skopeo_tool) = require_tool("skopeo", test) else {
        return;
    };
    let Some((registry, password)) = registry() else {
        return;
    };
    let addr = registry.addr.as_str();
    let admin = User::new();
    admin.login(&registry, "admin", &password, &[]);
    add_user(&admin, "alice", "alice-password-1");
    let alice = User::new();
    alice.login(&registry, "alice", "alice-password-1", &[]);
    alice.ok(&["namespace", "add", "team-a"]);
    alice.ok(&["namespace", "add", "prod"]);

    let single = make_image("amd64", &[2048, 4096], &[]);
    let shared = support::oci::Blob::new(
        "application/vnd.oci.image.layer.v1.tar",
        support::oci::tar_archive(&[("shared.txt", b"shared\n")]),
    );
    let index = support::oci::make_index(vec![
        make_image("amd64", &[1024], std::slice::from_ref(&shared)),
        make_image("arm64", &[3000], &[shared]),
    ]);
    let env = ContainersEnv::new(addr);
    let push = |top: &support::oci::Blob, blobs: Vec<support::oci::Blob>, tag: &str| {
        let dir = tempfile::tempdir().unwrap();
        write_oci_layout(dir.path(), tag, top, blobs.iter());
        run(skopeo(&env, &skopeo_tool).args([
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:alice-password-1",
            &format!("oci:{}:{tag}", dir.path().display()),
            &format!("docker://{addr}/team-a/app:{tag}"),
        ]));
    };
    push(
        &single.manifest,
        single.all_blobs().into_values().collect(),
        "v1",
    );
    push(
        &index.index,
        index.all_blobs().into_values().collect(),
        "multi",
    );

    // Sizes: config and distinct layers; an index's children's, each once.
    let image_size = |image: &support::oci::TestImage| -> u64 {
        let mut blobs = std::collections::BTreeMap::new();
        for blob in image.layers.iter().chain([&image.config]) {
            blobs.insert(blob.digest.clone(), blob.bytes.len() as u64);
        }
        blobs.values().sum()
    };
    let mut index_blobs = std::collections::BTreeMap::new();
    for image in &index.images {
        for blob in image.layers.iter().chain([&image.config]) {
            index_blobs.insert(blob.digest.clone(), blob.bytes.len() as u64);
        }
    }
    let index_size: u64 = index_blobs.values().sum();

    let listed = alice
        .ok(&["image", "list", "--restrict", "team-a", "-o", "json"])
        .json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let find = |digest: &str| {
        listed
            .iter()
            .find(|i| i["digest"] == digest)
            .unwrap_or_else(|| panic!("{digest} not listed: {listed:?}"))
    };
    let one = find(&single.manifest.digest);
    assert_eq!(one["tags"], serde_json::json!(["v1"]));
    assert_eq!(one["size"], image_size(&single));
    assert_eq!(one["created"], "2024-01-01T00:00:00Z");
    assert_eq!(
        one["platforms"],
        serde_json::json!([{"os": "linux", "architecture": "amd64"}])
    );
    let multi = find(&index.index.digest);
    assert_eq!(multi["size"], index_size);
    let platforms: Vec<(String, String)> = multi["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["architecture"].as_str().unwrap().to_string(),
                p["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        index
            .images
            .iter()
            .map(|i| (i.architecture.clone(), i.manifest.digest.clone()))
            .collect::<Vec<_>>()
    );
    // Untagged children show with --include-untagged, as NAME@DIGEST.
    let quiet = alice
        .ok(&[
            "image",
            "list",
            "--restrict",
            "team-a/app",
            "--include-untagged",
            "-q",
        ])
        .stdout;
    let mut lines: Vec<&str> = quiet.lines().collect();
    lines.sort();
    let mut expected = vec!["team-a/app:multi".to_string(), "team-a/app:v1".to_string()];
    for image in &index.images {
        expected.push(format!("team-a/app@{}", image.manifest.digest));
    }
    expected.sort();
    assert_eq!(lines, expected);
    // --format: one line per image from its JSON fields.
    let formatted = alice
        .ok(&[
            "image",
            "list",
            "--restrict",
            "team-a/app",
            "--format",
            "{{ digest }} {{ tags | join(',') }} {{ size }}",
        ])
        .stdout;
    let mut lines: Vec<&str> = formatted.lines().collect();
    lines.sort();
    let mut expected = vec![
        format!("{} multi {index_size}", index.index.digest),
        format!("{} v1 {}", single.manifest.digest, image_size(&single)),
    ];
    expected.sort();
    assert_eq!(lines, expected);
    let misspelt = alice.berth(&["image", "list", "--format", "{{ digets }}"], None);
    assert_eq!(misspelt.code, 2, "{misspelt:?}");
    assert!(misspelt.stderr.contains("-o json"), "{misspelt:?}");
    let table = alice.ok(&["image", "list", "--show-type"]).stdout;
    assert!(table.starts_with("REPOSITORY   TAG"), "{table}");
    assert!(table.contains("index"), "{table}");
    assert!(table.contains("linux/amd64,linux/arm64"), "{table}");

    let inspected = alice.ok(&["image", "inspect", "team-a/app:v1"]).json();
    assert_eq!(inspected[0]["digest"], single.manifest.digest.as_str());
    assert_eq!(inspected[0]["config"]["cmd"], serde_json::json!(["/hello"]));
    assert_eq!(
        inspected[0]["layers"].as_array().unwrap().len(),
        single.layers.len()
    );
    let manifest = alice
        .ok(&["manifest", "inspect", "team-a/app:multi"])
        .json();
    let pushed: Value = serde_json::from_slice(&index.index.bytes).unwrap();
    assert_eq!(manifest, pushed);

    // Tagged into another namespace, server-side; skopeo pulls it there.
    alice.ok(&["image", "tag", "team-a/app:multi", "prod/app:1.0"]);
    let inspect_raw = |reference: &str| {
        skopeo(&env, &skopeo_tool)
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                "alice:alice-password-1",
                &format!("docker://{addr}/{reference}"),
            ])
            .output()
            .unwrap()
    };
    let pulled = inspect_raw("prod/app:1.0");
    assert!(pulled.status.success(), "{pulled:?}");
    assert_eq!(pulled.stdout, index.index.bytes);
    let copy = tempfile::tempdir().unwrap();
    run(skopeo(&env, &skopeo_tool).args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--src-creds",
        "alice:alice-password-1",
        &format!("docker://{addr}/prod/app:1.0"),
        &format!("oci:{}:copy", copy.path().display()),
    ]));
    // skopeo fetched the index (inspect, copy) and each child (copy): the
    // server counted those pulls and `image digests` shows them once the
    // node has flushed them (every second here).
    let children: Vec<&str> = index
        .images
        .iter()
        .map(|image| image.manifest.digest.as_str())
        .collect();
    let mut counted = Vec::new();
    for _ in 0..100 {
        let listed = alice
            .ok(&[
                "image",
                "digests",
                "--restrict",
                "prod/app",
                "--include-untagged",
                "-o",
                "json",
            ])
            .json();
        counted = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["digest"].as_str().unwrap().to_string(),
                    i["pull_count"].as_u64().unwrap(),
                    i["last_pulled"].is_string(),
                )
            })
            .collect::<Vec<_>>();
        if counted.iter().all(|(_, pulls, _)| *pulls > 0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(counted.len(), 1 + children.len(), "{counted:?}");
    for (digest, pulls, last_pulled) in &counted {
        let least = if digest == &index.index.digest { 2 } else { 1 };
        assert!(*pulls >= least && *last_pulled, "{digest}: {counted:?}");
        assert!(
            digest == &index.index.digest || children.contains(&digest.as_str()),
            "{digest}"
        );
    }
    let table = alice
        .ok(&["image", "digests", "--restrict", "prod/app"])
        .stdout;
    assert!(table.lines().next().unwrap().contains("PULLS"), "{table}");
    alice.ok(&["image", "untag", "prod/app:1.0"]);
    assert!(!inspect_raw("prod/app:1.0").status.success(), "untagged");

    alice.ok(&["image", "rm", "team-a/app:v1"]);
    let after = alice
        .ok(&["image", "digests", "--restrict", "team-a", "-o", "json"])
        .json();
    let digests: Vec<&str> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [index.index.digest.as_str()]);

    // The removed image waits in the trash and comes back with its tag;
    // removed again, it stays in the trash for the namespace deletion.
    let trashed = alice
        .ok(&["trash", "list", "--restrict", "team-a", "-o", "json"])
        .json();
    let entries = trashed.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{trashed}");
    assert_eq!(entries[0]["tags"], serde_json::json!(["v1"]), "{trashed}");
    let removed = entries[0]["digest"].as_str().unwrap().to_string();
    let restored = alice
        .ok(&["image", "restore", &format!("team-a/app@{removed}")])
        .stdout;
    assert_eq!(
        restored,
        format!("Restored team-a/app@{removed} with tags v1.\n")
    );
    assert!(inspect_raw("team-a/app:v1").status.success(), "restored");
    alice.ok(&["image", "rm", "team-a/app:v1"]);

    let refused = alice.berth(&["namespace", "rm", "team-a"], None);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("force"), "{refused:?}");
    alice.ok(&["namespace", "rm", "team-a", "--force"]);
    let namespaces = alice.ok(&["namespace", "list", "-q"]).stdout;
    assert!(!namespaces.lines().any(|n| n == "team-a"), "{namespaces}");
}

/// Pulls counted since the last flush are stored when the server stops:
/// with a flush interval of an hour, two pulls by skopeo show in `berth
/// image digests` after a SIGTERM and a restart (the push's own manifest
/// check is a HEAD, which is not a pull).
#[test]
fn pulls_counted_before_a_shutdown_are_kept() {
    let test = "pulls_counted_before_a_shutdown_are_kept";
    let Some(skopeo_tool) = require_tool("skopeo", test) else {
        return;
    };
    let hourly = [
        "--auth",
        "--users-may-create-namespaces",
        "--pull-stats-interval",
        "1h",
    ];
    let Some((mut registry, password)) = registry_with(&hourly[2..]) else {
        return;
    };
    let layout = image_layout();
    let env = ContainersEnv::new(&registry.addr);
    let creds = format!("admin:{password}");
    run(skopeo(&env, &skopeo_tool).args([
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{}:v1", layout.path().display()),
        &format!("docker://{}/admin/app:v1", registry.addr),
    ]));
    for _ in 0..2 {
        run(skopeo(&env, &skopeo_tool).args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{}/admin/app:v1", registry.addr),
        ]));
    }
    registry.restart(&hourly);
    let admin = User::new();
    admin.login(&registry, "admin", &password, &[]);
    let listed = admin
        .ok(&["image", "digests", "--restrict", "admin/app", "-o", "json"])
        .json();
    let figures: Vec<(u64, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["pull_count"].as_u64().unwrap(),
                i["last_pulled"].is_string(),
            )
        })
        .collect();
    assert_eq!(figures, [(2, true)], "{listed}");
}

/// The Vulnerability Advisor as a user works it: an image with old Python
/// packages pushed by skopeo is indexed on push, `berth advisories import`
/// (on the running server's database) brings the committed PyPI advisories,
/// `berth va` shows the findings with their fixed versions, an exemption
/// takes one out, and a `block` policy makes skopeo's pull fail with the
/// message naming the findings and the command that exempts them.
#[test]
fn the_vulnerability_advisor_from_push_to_blocked_pull() {
    let test = "the_vulnerability_advisor_from_push_to_blocked_pull";
    let Some(skopeo_tool) = require_tool("skopeo", test) else {
        return;
    };
    let Some((registry, password)) = registry() else {
        return;
    };
    let addr = registry.addr.as_str();
    let admin = User::new();
    admin.login(&registry, "admin", &password, &[]);
    admin.ok(&["namespace", "add", "team"]);

    // One layer: an OS release and Jinja2 2.10 as pip installs it.
    let layer = support::oci::Blob::new(
        "application/vnd.oci.image.layer.v1.tar",
        support::oci::tar_archive(&[
            (
                "etc/os-release",
                b"NAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID=\"12\"\n",
            ),
            (
                "usr/local/lib/python3.11/site-packages/Jinja2-2.10.dist-info/METADATA",
                b"Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.10\n",
            ),
        ]),
    );
    let image = make_image("amd64", &[], &[layer]);
    let env = ContainersEnv::new(addr);
    let dir = tempfile::tempdir().unwrap();
    let blobs = image.all_blobs();
    write_oci_layout(dir.path(), "v1", &image.manifest, blobs.values());
    let creds = format!("admin:{password}");
    run(skopeo(&env, &skopeo_tool).args([
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{}:v1", dir.path().display()),
        &format!("docker://{addr}/team/py:v1"),
    ]));

    let advisories = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scanner/tests/data/osv/pypi");
    let data_dir = registry.data_dir.as_ref().unwrap().path();
    let imported = admin.ok(&[
        "advisories",
        "import",
        "--data-dir",
        data_dir.to_str().unwrap(),
        advisories.to_str().unwrap(),
    ]);
    assert!(imported.stdout.contains("added"), "{imported:?}");

    // Indexed off the push's path: asked until it is (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let report = loop {
        let report = admin.ok(&["va", "team/py:v1", "-o", "json"]).json();
        if report["images"][0]["findings"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            break report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not indexed: {report}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let findings = |report: &Value| -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = report["images"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["advisory"].as_str().unwrap().to_string(),
                    f["fixed_version"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        found.sort();
        found
    };
    // The two Jinja2 advisories of the committed subset that 2.10 is in.
    let expected = [
        ("PYSEC-2019-217".to_string(), "2.10.1".to_string()),
        ("PYSEC-2021-66".to_string(), "2.11.3".to_string()),
    ];
    assert_eq!(findings(&report), expected, "{report}");
    assert_eq!(report["images"][0]["os"], "debian 12", "{report}");

    // The image's SBOM is attached to it as a referrer (right after the
    // index is recorded, so asked until it is, bounded): listed by the
    // referrers API with the CycloneDX artifact type, as `oras discover`
    // asks, and a CycloneDX document naming the image's packages.
    let sbom_type = "application/vnd.cyclonedx+json";
    let digest = report["digest"].as_str().unwrap().to_string();
    let basic = format!("Basic {}", STANDARD.encode(&creds));
    let get = |path: &str| {
        let answer = support::http::request(
            addr,
            "GET",
            path,
            &[
                ("authorization", basic.as_str()),
                (
                    "accept",
                    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
                ),
            ],
            support::http::RequestBody::Empty,
        );
        let body = String::from_utf8_lossy(&answer.body).into_owned();
        assert_eq!(answer.status, 200, "GET {path}: {body}");
        serde_json::from_str::<Value>(&body).unwrap_or(Value::String(body))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let referrers = loop {
        // `+` in a query is a space: the type is sent percent-encoded.
        let index = get(&format!(
            "/v2/team/py/referrers/{digest}?artifactType={}",
            sbom_type.replace('+', "%2B")
        ));
        if index["manifests"].as_array().is_some_and(|m| !m.is_empty()) {
            break index;
        }
        assert!(std::time::Instant::now() < deadline, "no SBOM: {index}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let sbom = &referrers["manifests"][0];
    assert_eq!(sbom["artifactType"], sbom_type, "{referrers}");
    let manifest = get(&format!(
        "/v2/team/py/manifests/{}",
        sbom["digest"].as_str().unwrap()
    ));
    assert_eq!(manifest["subject"]["digest"], digest.as_str(), "{manifest}");
    let document = get(&format!(
        "/v2/team/py/blobs/{}",
        manifest["layers"][0]["digest"].as_str().unwrap()
    ));
    assert_eq!(document["bomFormat"], "CycloneDX", "{document}");
    assert!(
        document["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "Jinja2" && c["version"] == "2.10"),
        "{document}"
    );
    let inspected = admin
        .ok(&["image", "inspect", "team/py:v1", "-o", "json"])
        .json();
    assert_eq!(
        inspected[0]["referrers"][sbom_type][0]["digest"], sbom["digest"],
        "{inspected}"
    );
    let table = admin.ok(&["va", "team/py:v1"]).stdout;
    assert!(
        table.contains("CVE-2019-10906") && table.contains("2.10.1"),
        "{table}"
    );

    // `berth va summary`: the image counted with its two findings once the
    // background assessment has stored them (asked until it has, bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let summary = loop {
        let summary = admin.ok(&["va", "summary", "-o", "json"]).json();
        if summary["images_with_issues"] == 1 {
            break summary;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not counted: {summary}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(summary["total_findings"], 2, "{summary}");
    let by_severity: u64 = ["critical", "high", "medium", "low", "unknown"]
        .iter()
        .map(|s| summary["findings"][s].as_u64().unwrap())
        .sum();
    assert_eq!(by_severity, 2, "{summary}");
    assert_eq!(summary["namespaces"][0]["namespace"], "team", "{summary}");
    assert_eq!(
        summary["namespaces"][0]["images_with_issues"], 1,
        "{summary}"
    );
    let table = admin.ok(&["va", "summary", "team"]).stdout;
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].starts_with("NAMESPACE")
            && rows[1].starts_with("team ")
            && rows[2].starts_with("total "),
        "{table}"
    );
    assert_eq!(admin.ok(&["va", "summary", "-q"]).stdout, "team\n");

    // An exemption by alias takes its finding out.
    admin.ok(&[
        "exemption",
        "add",
        "--scope",
        "team/py",
        "--issue",
        "CVE-2019-10906",
        "--reason",
        "not reachable",
    ]);
    let report = admin.ok(&["va", "team/py:v1", "-o", "json"]).json();
    assert_eq!(findings(&report), expected[1..], "{report}");
    // Listed in its scope (the namespace's page of the API) and in all.
    for args in [
        &["exemption", "list", "--scope", "team/py", "-o", "json"][..],
        &["exemption", "list", "-o", "json"][..],
    ] {
        let listed = admin.ok(args).json();
        assert_eq!(
            listed.as_array().map(Vec::len),
            Some(1),
            "{args:?}: {listed}"
        );
        assert_eq!(listed[0]["issue"], "CVE-2019-10906", "{args:?}: {listed}");
    }
    let other = admin
        .ok(&["exemption", "list", "--scope", "team/other", "-o", "json"])
        .json();
    assert_eq!(other, serde_json::json!([]), "{other}");

    // A block policy stops the pull and says why and what to do.
    admin.ok(&[
        "va",
        "policy",
        "set",
        "team",
        "--mode",
        "block",
        "--severity",
        "any",
    ]);
    let policies = admin.ok(&["va", "policy", "list", "-o", "json"]).json();
    assert_eq!(policies[0]["mode"], "block", "{policies}");
    let pulled = tempfile::tempdir().unwrap();
    let refused = skopeo(&env, &skopeo_tool)
        .args([
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &format!("docker://{addr}/team/py:v1"),
            &format!("oci:{}:v1", pulled.path().display()),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("CVE-2020-28493") && stderr.contains("berth exemption add"),
        "{stderr}"
    );
    // A warn policy lets the pull through, and the audit of the pull (its
    // `image.pulled` record, written with the next flush of the pull
    // statistics, each second here) says why it was warned.
    admin.ok(&[
        "va",
        "policy",
        "set",
        "team",
        "--mode",
        "warn",
        "--severity",
        "any",
    ]);
    run(skopeo(&env, &skopeo_tool).args([
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("docker://{addr}/team/py:v1"),
        &format!("oci:{}:v1", pulled.path().display()),
    ]));
    let mut warned = Value::Null;
    for _ in 0..60 {
        let records = admin
            .ok(&[
                "audit",
                "--namespace",
                "team",
                "--action",
                "image.pulled",
                "-o",
                "json",
            ])
            .json();
        if let Some(record) = records
            .as_array()
            .unwrap()
            .iter()
            .find(|r| !r["detail"]["warning"].is_null())
        {
            warned = record.clone();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(
        warned["detail"]["warning"]
            .as_str()
            .is_some_and(|w| w.contains("CVE-2020-28493")),
        "{warned}"
    );
    assert_eq!(warned["actor"]["name"], "admin", "{warned}");
    admin.ok(&["va", "policy", "set", "team", "--mode", "off"]);
    run(skopeo(&env, &skopeo_tool).args([
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("docker://{addr}/team/py:v1"),
        &format!("oci:{}:v1", pulled.path().display()),
    ]));
}

/// Immutable tags refuse a skopeo (and podman) push that would move them;
/// then, on the same server, a storage quota refuses a skopeo push that
/// would exceed it, through `berth quota`, `quota set` and `quota
/// recompute`.
/// An advisory source in the test: serves `/all.zip` (whatever body it
/// holds now, with an ETag, and `304 Not Modified` to a request naming
/// that ETag) and answers 404 to every other path. Counts the full
/// downloads of `/all.zip`.
struct AdvisorySource {
    addr: String,
    body: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    downloads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl AdvisorySource {
    fn start(body: Vec<u8>) -> AdvisorySource {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let body = std::sync::Arc::new(std::sync::Mutex::new(body));
        let downloads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, counter) = (body.clone(), downloads.clone());
        std::thread::spawn(move || {
            // Bounded: the test makes a handful of requests.
            for stream in listener.incoming().take(100) {
                let Ok(mut stream) = stream else { return };
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut path, mut if_none_match) = (String::new(), None);
                for _ in 0..100 {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(rest) = line.strip_prefix("GET ") {
                        path = rest.split(' ').next().unwrap_or("").to_string();
                    } else if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("if-none-match") {
                            if_none_match = Some(value.trim().to_string());
                        }
                    }
                }
                let body = served.lock().unwrap().clone();
                let etag = format!("\"{}\"", &support::oci::sha256_digest(&body)[7..23]);
                let head = if path != "/all.zip" {
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_string()
                } else if if_none_match.as_deref() == Some(etag.as_str()) {
                    format!(
                        "HTTP/1.1 304 Not Modified\r\netag: {etag}\r\nconnection: close\r\n\r\n"
                    )
                } else {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/zip\r\ncontent-length: {}\r\netag: {etag}\r\nconnection: close\r\n\r\n",
                        body.len()
                    )
                };
                let _ = stream.write_all(head.as_bytes());
                if head.starts_with("HTTP/1.1 200") {
                    let _ = stream.write_all(&body);
                }
            }
        });
        AdvisorySource {
            addr,
            body,
            downloads,
        }
    }

    fn serve(&self, body: Vec<u8>) {
        *self.body.lock().unwrap() = body;
    }

    fn downloads(&self) -> usize {
        self.downloads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An OSV `all.zip` as osv.dev publishes one: a JSON file per record.
fn osv_zip(records: &[Value]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for record in records {
        zip.start_file(format!("{}.json", record["id"].as_str().unwrap()), options)
            .unwrap();
        zip.write_all(&serde_json::to_vec(record).unwrap()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// The value of the metric `name` (a counter or a histogram's `_count`,
/// without labels) in the registry's `/metrics`.
fn metric(addr: &str, name: &str) -> f64 {
    let answer = support::http::request(
        addr,
        "GET",
        "/metrics",
        &[],
        support::http::RequestBody::Empty,
    );
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// The scheduled advisory sync, as an operator sets it up: `berth serve`
/// with `[scanner] advisory_urls` naming a local HTTP server that serves an
/// OSV all.zip built from the committed npm subset (and one URL that
/// answers 404). The first sync runs at start and its advisories reach the
/// verdict of a pushed image; the failing source's error is recorded and
/// shown by `berth advisories status`, and the server goes on. Then the
/// source serves a newer zip (one record modified, one withdrawn), an
/// administrator triggers a sync through the API, and the image's verdict
/// changes without its layers being read again, and a
/// `vulnerabilities.changed` event names the image; a sync with nothing new
/// costs one conditional request and tells nothing.
#[test]
fn advisories_sync_from_configured_sources_and_change_verdicts() {
    let npm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scanner/tests/data/osv/npm");
    let mut records: Vec<Value> = std::fs::read_dir(&npm)
        .unwrap()
        .map(|entry| {
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap()
        })
        .collect();
    records.sort_by_key(|record| record["id"].as_str().unwrap().to_string());
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "GHSA-35jh-r3h4-6jhm",
            "GHSA-p6mc-m468-83gw",
            "GHSA-xvch-5gv4-984h"
        ]
    );
    let source = AdvisorySource::start(osv_zip(&records));
    let good = format!("http://{}/all.zip", source.addr);
    let bad = format!("http://{}/missing.zip", source.addr);
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[scanner]\nadvisory_urls = [\"{good}\", \"{bad}\"]\nadvisory_sync_interval = \"1h\"\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let Some((registry, password)) = registry_with(&["--config", config]) else {
        return;
    };
    let addr = registry.addr.as_str();
    let data_dir = registry.data_dir.as_ref().unwrap().path().to_str().unwrap();
    let admin = User::new();
    admin.login(&registry, "admin", &password, &[]);
    admin.ok(&["namespace", "add", "team"]);
    let basic = format!("Basic {}", STANDARD.encode(format!("admin:{password}")));
    let api = |method: &str, path: &str| -> Value {
        let answer = support::http::request(
            addr,
            method,
            path,
            &[("authorization", basic.as_str())],
            support::http::RequestBody::Empty,
        );
        let body = String::from_utf8_lossy(&answer.body).into_owned();
        assert_eq!(answer.status, 200, "{method} {path}: {body}");
        serde_json::from_str(&body).unwrap()
    };

    // An image with lodash 4.17.15, which both lodash advisories affect.
    let layer = support::oci::tar_archive(&[
        ("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n"),
        (
            "usr/lib/node_modules/lodash/package.json",
            br#"{"name":"lodash","version":"4.17.15"}"#,
        ),
    ]);
    push_layer_with_password(addr, "team/web", "v1", "admin", &password, layer);

    // The first sync runs when the server starts: asked until it ran
    // (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let sources = loop {
        let sources = api("GET", "/api/v1/advisories/sources");
        if sources[0]["last_success_at"].is_i64() && sources[1]["last_attempt_at"].is_i64() {
            break sources;
        }
        assert!(std::time::Instant::now() < deadline, "no sync: {sources}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(sources[0]["url"], good.as_str(), "{sources}");
    assert_eq!(sources[0]["records_changed"], 3, "{sources}");
    assert!(sources[0]["last_error"].is_null(), "{sources}");
    assert!(sources[1]["last_success_at"].is_null(), "{sources}");
    assert!(
        sources[1]["last_error"].as_str().unwrap().contains("404"),
        "{sources}"
    );
    assert_eq!(api("GET", "/api/v1/advisories")["count"], 3);
    // The same state from the database, as the operator's command shows it.
    let status = admin
        .ok(&[
            "advisories",
            "status",
            "--config",
            config,
            "--data-dir",
            data_dir,
            "-o",
            "json",
        ])
        .json();
    for (shown, listed) in status
        .as_array()
        .unwrap()
        .iter()
        .zip(sources.as_array().unwrap())
    {
        for field in ["url", "records_changed", "last_error"] {
            assert_eq!(shown[field], listed[field], "{status} {sources}");
        }
        // Times in RFC 3339, as every `-o json` of the CLI.
        assert!(
            shown["last_attempt_at"].as_str().unwrap().ends_with('Z'),
            "{status}"
        );
    }
    assert_eq!(status.as_array().unwrap().len(), 2, "{status}");
    let table = admin
        .ok(&[
            "advisories",
            "status",
            "--config",
            config,
            "--data-dir",
            data_dir,
        ])
        .stdout;
    assert!(
        table.contains("LAST SUCCESS") && table.contains(&bad),
        "{table}"
    );

    let findings = || -> Vec<(String, String)> {
        let report = admin.ok(&["va", "team/web:v1", "-o", "json"]).json();
        let mut found: Vec<(String, String)> = report["images"][0]["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                (
                    f["advisory"].as_str().unwrap().to_string(),
                    f["fixed_version"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        found.sort();
        found
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while findings().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never indexed");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        findings(),
        [
            ("GHSA-35jh-r3h4-6jhm".to_string(), "4.17.21".to_string()),
            ("GHSA-p6mc-m468-83gw".to_string(), "4.17.20".to_string()),
        ]
    );
    // The worker records the image's findings before it attaches the SBOM
    // and times the scan, so the metric may lag the findings a moment.
    while metric(addr, "berth_scan_duration_seconds_count") < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the scan was never timed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let scans = metric(addr, "berth_scan_duration_seconds_count");
    assert_eq!(scans, 1.0);
    // The events of the stream from here on, of one kind, as the operator
    // reads them.
    let events = |kind: &str| -> Vec<Value> {
        admin
            .ok(&[
                "events",
                "tail",
                "--data-dir",
                data_dir,
                "--since",
                "0",
                "-o",
                "json",
            ])
            .stdout
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|event| event["kind"] == kind)
            .collect()
    };
    let told_before = events("vulnerabilities.changed").len();

    // Newer data: one record modified (a later fixed version, made up for
    // the test) and one withdrawn.
    let mut newer = records.clone();
    newer[0]["modified"] = "2026-01-01T00:00:00Z".into();
    for affected in newer[0]["affected"].as_array_mut().unwrap() {
        affected["ranges"][0]["events"][1]["fixed"] = "4.17.22".into();
    }
    newer[1]["modified"] = "2026-01-01T00:00:00Z".into();
    newer[1]["withdrawn"] = "2026-01-01T00:00:00Z".into();
    source.serve(osv_zip(&newer));
    let synced = api("POST", "/api/v1/advisories/sources/sync");
    assert_eq!(synced[0]["changed"], 2, "{synced}");
    assert_eq!(synced[0]["not_modified"], false, "{synced}");
    assert!(
        synced[1]["error"].as_str().unwrap().contains("404"),
        "{synced}"
    );
    assert_eq!(api("GET", "/api/v1/advisories")["count"], 2);
    assert_eq!(
        findings(),
        [("GHSA-35jh-r3h4-6jhm".to_string(), "4.17.22".to_string())]
    );
    assert_eq!(
        metric(addr, "berth_scan_duration_seconds_count"),
        scans,
        "the verdict changed without indexing the image again"
    );
    // The change is told: one event for the image, naming the two
    // advisories whose findings in it changed.
    let told = events("vulnerabilities.changed");
    assert_eq!(told.len(), told_before + 1, "{told:#?}");
    let event = told.last().unwrap();
    assert_eq!(event["repository"], "team/web", "{event}");
    assert_eq!(
        event["detail"]["advisories"],
        serde_json::json!(["GHSA-35jh-r3h4-6jhm", "GHSA-p6mc-m468-83gw"]),
        "{event}"
    );
    assert_eq!(event["detail"]["advisory_count"], 2, "{event}");

    // Nothing new: the source answers 304 to the stored ETag.
    let downloads = source.downloads();
    assert_eq!(downloads, 2);
    let synced = api("POST", "/api/v1/advisories/sources/sync");
    assert_eq!(synced[0]["not_modified"], true, "{synced}");
    assert_eq!(synced[0]["changed"], 0, "{synced}");
    assert_eq!(source.downloads(), downloads);
    assert_eq!(events("vulnerabilities.changed").len(), told_before + 1);
}

#[test]
fn immutable_tags_refuse_a_skopeo_push_that_would_move_them() {
    let test = "immutable_tags_refuse_a_skopeo_push_that_would_move_them";
    let Some(skopeo_tool) = require_tool("skopeo", test) else {
        return;
    };
    let Some((registry, password)) = registry() else {
        return;
    };
    lifecycle_through_the_cli(test, &registry, &password, &skopeo_tool, true);
}

/// The same lifecycle (immutable tags, retention into the trash, quotas)
/// on the scaled-out backends: PostgreSQL and S3 (SeaweedFS), with blob
/// GETs answered by redirects to presigned URLs, whose bytes count as the
/// namespace's pull traffic as served ones do.
#[test]
fn the_lifecycle_works_on_postgresql_and_s3_and_redirects_count_as_traffic() {
    let test = "the_lifecycle_works_on_postgresql_and_s3_and_redirects_count_as_traffic";
    let Some(skopeo_tool) = require_tool("skopeo", test) else {
        return;
    };
    if support::is_external_registry() {
        record_skip(test, "starts its own registry on PostgreSQL and S3");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(database) = runtime.block_on(berth_test_support::postgres::fresh_database(test))
    else {
        return;
    };
    let Some(weed) = berth_test_support::seaweedfs::weed(test) else {
        return;
    };
    let bucket = runtime.block_on(weed.new_bucket());
    let mut args = vec!["--database".to_string(), database.url.clone()];
    args.extend(support::s3_flags(&bucket, &weed.endpoint));
    args.extend(["--redirect".to_string(), "true".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some((registry, password)) = registry_with(&args) else {
        return;
    };
    lifecycle_through_the_cli(test, &registry, &password, &skopeo_tool, false);

    // A blob GET is a redirect to the object store, and the namespace's
    // pull traffic grows by the blob's size: the bytes leave from the
    // store, but they are the namespace's pulls all the same.
    let alice = User::new();
    alice.login(&registry, "alice", "alice-password-1", &[]);
    let traffic = |alice: &User| {
        alice.ok(&["quota", "team-a", "-o", "json"]).json()["traffic"]["used"]
            .as_u64()
            .unwrap()
    };
    let before = traffic(&alice);
    let image = alice
        .ok(&["image", "inspect", "team-a/app:v1", "-o", "json"])
        .json();
    let layer = &image[0]["layers"][0];
    let (digest, size) = (
        layer["digest"].as_str().unwrap(),
        layer["size"].as_u64().unwrap(),
    );
    let answer = support::http::request(
        &registry.addr,
        "GET",
        &format!("/v2/team-a/app/blobs/{digest}"),
        &[(
            "authorization",
            &format!("Basic {}", STANDARD.encode("alice:alice-password-1")),
        )],
        support::http::RequestBody::Empty,
    );
    let said = String::from_utf8_lossy(&answer.body);
    assert_eq!(answer.status, 307, "{said}");
    assert!(answer.header("location").is_some(), "{:?}", answer.headers);
    assert_eq!(traffic(&alice), before + size);
}

/// Immutable tags, retention into the trash and quotas through the CLI
/// against `registry` (`podman`: also push with podman when installed).
fn lifecycle_through_the_cli(
    test: &str,
    registry: &TestRegistry,
    password: &str,
    skopeo_tool: &Path,
    podman: bool,
) {
    let addr = registry.addr.as_str();
    let admin = User::new();
    admin.login(registry, "admin", password, &[]);
    add_user(&admin, "alice", "alice-password-1");
    add_user(&admin, "bob", "bob-password-1");
    let alice = User::new();
    alice.login(registry, "alice", "alice-password-1", &[]);
    alice.ok(&["namespace", "add", "team-a"]);

    let added = alice.ok(&["immutable", "add", "team-a", "--tags", "v*"]);
    assert_eq!(
        added.stdout,
        "Tags matching v* in team-a are immutable now.\n"
    );
    alice.ok(&["immutable", "add", "team-a/app", "--tags", "stable"]);
    let twice = alice.berth(&["immutable", "add", "team-a", "--tags", "v*"], None);
    assert_eq!(twice.code, 1, "{twice:?}");
    let bad = alice.berth(&["immutable", "add", "team-a", "--tags", "v[0-9]"], None);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("tags"), "{bad:?}");
    // Someone without a say in team-a's settings cannot add one.
    let bob = User::new();
    bob.login(registry, "bob", "bob-password-1", &[]);
    let refused = bob.berth(&["immutable", "add", "team-a", "--tags", "x*"], None);
    assert_eq!(refused.code, 1, "{refused:?}");

    let listed = alice.ok(&["immutable", "list", "-o", "json"]).json();
    let rules: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| {
            (
                rule["scope"].as_str().unwrap().to_string(),
                rule["tags"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        vec![
            ("team-a".to_string(), "v*".to_string()),
            ("team-a/app".to_string(), "stable".to_string()),
        ]
    );
    let table = alice.ok(&["immutable", "list"]).stdout;
    assert!(
        table.starts_with("SCOPE") && table.contains("team-a/app") && table.contains("alice"),
        "{table}"
    );

    let env = ContainersEnv::new(addr);
    let push = |seed: u64, tag: &str| {
        let image = make_image("amd64", &[1024 + seed as usize], &[]);
        let dir = tempfile::tempdir().unwrap();
        let blobs = image.all_blobs();
        write_oci_layout(dir.path(), tag, &image.manifest, blobs.values());
        skopeo(&env, skopeo_tool)
            .args([
                "copy",
                "--preserve-digests",
                "--dest-tls-verify=false",
                "--dest-creds",
                "alice:alice-password-1",
                &format!("oci:{}:{tag}", dir.path().display()),
                &format!("docker://{addr}/team-a/app:{tag}"),
            ])
            .output()
            .unwrap()
    };
    let first = make_image("amd64", &[1024], &[]);
    let dir = tempfile::tempdir().unwrap();
    write_oci_layout(
        dir.path(),
        "v1",
        &first.manifest,
        first.all_blobs().values(),
    );
    let copy_first = || {
        run(skopeo(&env, skopeo_tool).args([
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:alice-password-1",
            &format!("oci:{}:v1", dir.path().display()),
            &format!("docker://{addr}/team-a/app:v1"),
        ]))
    };
    // The first push creates the tag; the same image again is fine.
    copy_first();
    copy_first();
    // Another image under v1 is refused, and skopeo says why.
    let moved = push(1, "v1");
    let stderr = String::from_utf8_lossy(&moved.stderr);
    assert!(!moved.status.success(), "the push moved v1");
    assert!(
        stderr.contains("denied") && stderr.contains("team-a --tags v*"),
        "{stderr}"
    );
    // A mutable tag moves freely.
    assert!(push(1, "latest").status.success());
    assert!(push(2, "latest").status.success());
    // podman, pushing another image it pulled under v1, is refused alike
    // (when podman is installed; skopeo above already showed the refusal).
    if let Some(podman) = podman.then(|| require_tool("podman", test)).flatten() {
        let latest = format!("{addr}/team-a/app:latest");
        let v1 = format!("{addr}/team-a/app:v1");
        run(env.storage_command(&podman).args([
            "pull",
            "--creds",
            "alice:alice-password-1",
            &latest,
        ]));
        run(env.storage_command(&podman).args(["tag", &latest, &v1]));
        let pushed = env
            .storage_command(&podman)
            .args(["push", "--creds", "alice:alice-password-1", &v1])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&pushed.stderr);
        assert!(!pushed.status.success(), "podman moved v1");
        assert!(
            stderr.contains("denied") && stderr.contains("team-a --tags v*"),
            "{stderr}"
        );
    }

    // A retention policy keeping no tagged image and no untagged one
    // selects latest and the image it left untagged, but not v1: its tag
    // is immutable, so the run skips it and says why. The dry run lists
    // exactly what the run then moves to the trash.
    let set = alice.ok(&[
        "retention",
        "set",
        "team-a",
        "--keep",
        "0",
        "--untagged",
        "delete",
        "--min-age",
        "0s",
    ]);
    assert!(
        set.stdout.starts_with("team-a keeps the newest 0"),
        "{set:?}"
    );
    let policies = alice.ok(&["retention", "list", "-o", "json"]).json();
    assert_eq!(policies[0]["untagged"], "delete", "{policies}");
    let dry = alice.ok(&["retention", "run", "team-a", "--dry-run", "-q"]);
    let mut listed: Vec<&str> = dry.stdout.lines().collect();
    listed.sort();
    assert_eq!(listed.len(), 2, "{dry:?}");
    let table = alice.ok(&["retention", "run", "team-a", "--dry-run"]);
    assert!(table.stdout.starts_with("IMAGE"), "{table:?}");
    assert!(
        table.stderr.contains("immutable") && table.stderr.contains("Dry run: 2 images"),
        "{table:?}"
    );
    let run = alice
        .ok(&["retention", "run", "team-a", "-o", "json"])
        .json();
    let mut went: Vec<String> = run["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| format!("team-a/app@{}", item["digest"].as_str().unwrap()))
        .collect();
    went.sort();
    assert_eq!(went, listed, "{run}");
    assert_eq!(
        run["skipped"][0]["tags"],
        serde_json::json!(["v1"]),
        "{run}"
    );
    let trashed = alice
        .ok(&["trash", "list", "--restrict", "team-a", "-o", "json"])
        .json();
    assert_eq!(trashed.as_array().unwrap().len(), 2, "{trashed}");
    alice.ok(&["retention", "rm", "team-a"]);

    // The client cannot remove the tag or its image either.
    for args in [
        vec!["image", "untag", "team-a/app:v1"],
        vec!["image", "rm", "team-a/app:v1"],
    ] {
        let refused = alice.berth(&args, None);
        assert_eq!(refused.code, 1, "{args:?}: {refused:?}");
        assert!(
            refused
                .stderr
                .contains("remove the rule first (berth immutable rm team-a --tags v*)"),
            "{refused:?}"
        );
    }

    // Without the rule, v1 moves.
    let removed = alice.ok(&["immutable", "rm", "team-a", "--tags", "v*"]);
    assert_eq!(removed.stdout, "Removed the rule team-a --tags v*.\n");
    let missing = alice.berth(&["immutable", "rm", "team-a", "--tags", "v*"], None);
    assert_eq!(missing.code, 1, "{missing:?}");
    let moved = push(1, "v1");
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );

    // Quotas, on the same server. team-a holds what skopeo pushed, each
    // layer once; without limits nothing is refused.
    let quota = alice.ok(&["quota", "team-a", "-o", "json"]).json();
    let used = quota["storage"]["used"].as_u64().unwrap();
    assert!(used > 3 * 1024, "{quota}");
    assert_eq!(quota["storage"]["limit"], Value::Null, "{quota}");
    // Limits are the administrator's.
    let refused = alice.berth(&["quota", "set", "team-a", "--storage", "1GB"], None);
    assert_eq!(refused.code, 1, "{refused:?}");
    let bad = admin.berth(&["quota", "set", "team-a", "--storage", "lots"], None);
    assert_eq!(bad.code, 2, "{bad:?}");
    let set = admin.ok(&[
        "quota",
        "set",
        "team-a",
        "--storage",
        &format!("{}B", used + 100),
    ]);
    assert!(set.stdout.starts_with("team-a: storage limit "), "{set:?}");
    // A push whose new layer does not fit is refused, and skopeo says why.
    let refused = push(3, "big");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "the push went beyond the quota");
    assert!(
        stderr.contains("denied") && stderr.contains("storage quota exceeded"),
        "{stderr}"
    );
    // The refusal is an event (for webhooks subscribed to `quota`), which
    // the audit trail copies within a second or two.
    let mut exceeded = Value::Null;
    for _ in 0..60 {
        let records = admin
            .ok(&["audit", "--namespace", "team-a", "-o", "json"])
            .json();
        if let Some(record) = records
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["action"] == "quota.exceeded")
        {
            exceeded = record.clone();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(exceeded["detail"]["quota"], "storage", "{exceeded}");
    assert_eq!(
        exceeded["detail"]["limit"].as_u64(),
        Some(used + 100),
        "{exceeded}"
    );
    let table = admin.ok(&["quota", "team-a"]).stdout;
    assert!(
        table.starts_with("NAMESPACE") && table.contains("team-a") && table.contains('%'),
        "{table}"
    );
    // Every namespace (each user has a personal one), for the administrator.
    assert_eq!(
        admin.ok(&["quota", "-q"]).stdout,
        "admin\nalice\nbob\nteam-a\n"
    );
    let recount = admin.ok(&["quota", "recompute"]).stdout;
    assert_eq!(recount, "Recounted 4 namespaces: no drift.\n");
    // Exempt from any default, the push goes through; back to the default
    // (unlimited here), the limit reads as none.
    let unlimited = admin.ok(&["quota", "set", "team-a", "--storage", "unlimited"]);
    assert!(
        unlimited
            .stdout
            .starts_with("team-a: storage limit unlimited"),
        "{unlimited:?}"
    );
    assert!(push(3, "big").status.success());
    admin.ok(&["quota", "set", "team-a", "--storage", "default"]);
    let quota = admin.ok(&["quota", "team-a", "-o", "json"]).json();
    assert_eq!(quota["storage"]["limit"], Value::Null, "{quota}");
}

/// A webhook endpoint in the test: accepts one request on `listener`,
/// answers 204 and hands over the request's head (lower-cased header names)
/// and body.
fn receive_one(
    listener: std::net::TcpListener,
) -> std::sync::mpsc::Receiver<(std::collections::HashMap<String, String>, Vec<u8>)> {
    use std::io::{BufRead, BufReader, Read};
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("a delivery connects");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut headers = std::collections::HashMap::new();
        // The request line, then headers up to the empty line (bounded).
        for _ in 0..100 {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            } else {
                headers.insert(":request".to_string(), line.to_string());
            }
        }
        let length: usize = headers["content-length"].parse().unwrap();
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        let _ = sender.send((headers, body));
    });
    receiver
}

/// Pushes a one-layer image to `ADDR/REPO:TAG` with Basic credentials.
fn push_with_password(addr: &str, repository: &str, tag: &str, user: &str, password: &str) {
    let layer = support::oci::tar_archive(&[("file", &support::oci::random_bytes(512))]);
    push_layer_with_password(addr, repository, tag, user, password, layer);
}

/// Pushes an image of the one layer `layer` (a tar) to `ADDR/REPO:TAG` with
/// Basic credentials.
fn push_layer_with_password(
    addr: &str,
    repository: &str,
    tag: &str,
    user: &str,
    password: &str,
    layer: Vec<u8>,
) {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = oci_client::Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..Default::default()
        });
        let image = format!("{addr}/{repository}:{tag}").parse().unwrap();
        let layers = vec![ImageLayer::oci_v1(layer, None)];
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layers[0].sha256_digest()]},
        });
        let config = Config::oci_v1(serde_json::to_vec(&config).unwrap(), None);
        let auth = oci_client::secrets::RegistryAuth::Basic(user.to_string(), password.to_string());
        client
            .push(&image, &layers, config, &auth, None)
            .await
            .expect("push");
    });
}

/// Pulls the manifest of `ADDR/REFERENCE` with Basic credentials, as a
/// client pulling the image would first; returns its digest.
fn pull_manifest_with_password(addr: &str, reference: &str, user: &str, password: &str) -> String {
    use oci_client::client::{ClientConfig, ClientProtocol};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = oci_client::Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..Default::default()
        });
        let image = format!("{addr}/{reference}").parse().unwrap();
        let auth = oci_client::secrets::RegistryAuth::Basic(user.to_string(), password.to_string());
        let (_, digest) = client
            .pull_manifest(&image, &auth)
            .await
            .expect("pull the manifest");
        digest
    })
}

/// Polls `berth webhook deliveries ID` (at most 60 times, half a second
/// apart) until `done` holds for one of the deliveries; returns it.
fn wait_for_delivery(admin: &User, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..60 {
        last = admin
            .ok(&["webhook", "deliveries", id, "-o", "json"])
            .json();
        if let Some(delivery) = last.as_array().into_iter().flatten().find(|d| done(d)) {
            return delivery.clone();
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("no delivery became as expected; the log: {last:#}");
}

#[test]
fn webhooks_deliver_signed_cloud_events_and_retry_until_the_endpoint_answers() {
    let flags = [
        "--outbound-allow-private",
        "--webhook-retry-delay",
        "1s",
        "--webhook-poll-interval",
        "200ms",
        "--pull-stats-interval",
        "500ms",
    ];
    let Some((mut registry, password)) = registry_with(&flags) else {
        return;
    };
    let admin = User::new();
    admin.login(&registry, "admin", &password, &[]);
    admin.ok(&["namespace", "add", "hooks"]);

    // The endpoint is down: its port is known, nothing listens on it yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let created = admin
        .ok(&[
            "webhook",
            "add",
            "hooks",
            &url,
            "--events",
            "push,delete",
            "--secret",
            "s3cret",
            "-o",
            "json",
        ])
        .json();
    let id = created["id"].to_string();
    assert_eq!(created["signed"], true);
    let listed = admin.ok(&["webhook", "list", "-o", "json"]);
    assert!(!listed.stdout.contains("s3cret"), "{listed:?}");
    assert_eq!(listed.json()[0]["url"], url.as_str(), "{listed:?}");
    assert_eq!(listed.json()[0]["envelope"], "cloudevents", "{listed:?}");

    // A second endpoint, up from the start, asks for Distribution's
    // notification envelope, as consumers written against it expect.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let notify_url = format!("http://{}/notify", listener.local_addr().unwrap());
    let notify = admin
        .ok(&[
            "webhook",
            "add",
            "hooks",
            &notify_url,
            "--events",
            "push",
            "--envelope",
            "distribution",
            "-o",
            "json",
        ])
        .json();
    assert_eq!(notify["envelope"], "distribution", "{notify}");
    let notified = receive_one(listener);

    push_with_password(&registry.addr, "hooks/app", "v1", "admin", &password);
    let (headers, body) = notified
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the notification arrives");
    assert_eq!(
        headers["content-type"],
        "application/vnd.docker.distribution.events.v1+json"
    );
    let envelope: Value = serde_json::from_slice(&body).unwrap();
    let notification = &envelope["events"][0];
    assert_eq!(notification["action"], "push", "{envelope}");
    assert_eq!(notification["actor"]["name"], "admin", "{envelope}");
    let target = &notification["target"];
    assert_eq!(
        (&target["repository"], &target["tag"]),
        (&Value::from("hooks/app"), &Value::from("v1")),
        "{envelope}"
    );
    assert!(
        target["mediaType"]
            .as_str()
            .is_some_and(|t| t.contains("manifest")),
        "{envelope}"
    );
    assert!(target["size"].as_u64() > Some(0), "{envelope}");
    admin.ok(&["webhook", "rm", &notify["id"].to_string()]);

    // Pulls reach a webhook subscribed to them, counted per image and
    // puller between two flushes of the pull statistics, as the puller.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pulls_url = format!("http://{}/pulls", listener.local_addr().unwrap());
    let pulls = admin
        .ok(&[
            "webhook", "add", "hooks", &pulls_url, "--events", "pull", "-o", "json",
        ])
        .json();
    let pulled = receive_one(listener);
    let pulled_digest =
        pull_manifest_with_password(&registry.addr, "hooks/app:v1", "admin", &password);
    let (_, body) = pulled
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the pull is delivered");
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["type"], "io.berth.image.pulled", "{event}");
    assert_eq!(event["data"]["actor"]["name"], "admin", "{event}");
    assert_eq!(event["data"]["digest"], pulled_digest.as_str(), "{event}");
    assert_eq!(event["data"]["detail"]["count"], 1, "{event}");
    admin.ok(&["webhook", "rm", &pulls["id"].to_string()]);
    let failed = wait_for_delivery(&admin, &id, |d| {
        d["attempts"].as_u64() >= Some(1) && !d["last_error"].is_null()
    });
    assert_eq!(failed["state"], "pending", "{failed}");
    assert_eq!(failed["event_kind"], "tag.moved");

    // A restart while the delivery is pending loses nothing: the queue is
    // in the database.
    let mut restart_flags = vec!["--auth", "--users-may-create-namespaces"];
    restart_flags.extend(flags);
    registry.restart(&restart_flags);
    admin.login(&registry, "admin", &password, &[]);

    // The endpoint comes up: the retry arrives, signed.
    let received = receive_one(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    let (headers, body) = received
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the delivery is retried");
    assert!(
        headers[":request"].starts_with("POST /hook "),
        "{headers:?}"
    );
    assert_eq!(
        headers["content-type"],
        "application/cloudevents+json; charset=utf-8"
    );
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(&body);
    assert_eq!(
        headers["x-berth-signature-256"],
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "io.berth.image.pushed");
    assert_eq!(event["subject"], "hooks/app:v1");
    assert_eq!(event["id"], failed["event"].to_string().as_str());
    assert_eq!(event["data"]["actor"]["name"], "admin");
    assert!(event["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    // Both envelopes name the same image.
    assert_eq!(event["data"]["digest"], target["digest"], "{envelope}");

    let delivered = wait_for_delivery(&admin, &id, |d| d["state"] == "delivered");
    assert_eq!(delivered["last_status"], 204);
    assert!(delivered["attempts"].as_u64() >= Some(2), "{delivered}");

    admin.ok(&["webhook", "rm", &id]);
    assert_eq!(
        admin.ok(&["webhook", "list", "-o", "json"]).json(),
        serde_json::json!([])
    );

    // The audit trail says who pushed the tag and who managed the webhook,
    // from where (polled: the audit consumer copies events every second).
    let mut actions = Vec::new();
    for _ in 0..60 {
        let records = admin
            .ok(&[
                "audit",
                "--since",
                "1h",
                "--actor",
                "admin",
                "--namespace",
                "hooks",
                "-o",
                "json",
            ])
            .json();
        let records = records.as_array().unwrap().clone();
        // Logins (registry tokens the client asked for) are recorded as
        // they happen, flushed a second later; the changes are what this
        // order is about.
        actions = records
            .iter()
            .map(|r| r["action"].as_str().unwrap().to_string())
            .filter(|action| action != "token.issued")
            .collect();
        if actions.first().map(String::as_str) == Some("webhook.deleted") {
            let pushed = records
                .iter()
                .find(|r| r["action"] == "tag.moved")
                .expect("the push is in the trail");
            assert_eq!(pushed["resource"], "hooks/app:v1");
            assert_eq!(pushed["actor"]["address"], "127.0.0.1");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(
        actions.first().map(String::as_str),
        Some("webhook.deleted"),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"webhook.created".to_string()),
        "{actions:?}"
    );

    // The trail exports as JSON lines: the objects of `-o json`, newest
    // first, every page. The pusher's login (the registry token its client
    // asked for) is among them, filed under the namespace it named.
    let listed = admin
        .ok(&[
            "audit",
            "--namespace",
            "hooks",
            "--limit",
            "1000",
            "-o",
            "json",
        ])
        .json();
    let exported = admin.ok(&["audit", "--namespace", "hooks", "--export"]);
    let lines: Vec<Value> = exported
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let listed = listed.as_array().unwrap();
    // Records may have arrived between the two calls: the export holds
    // every listed record, in the same order, after any newer ones.
    assert!(lines.len() >= listed.len(), "{lines:?}");
    assert_eq!(&lines[lines.len() - listed.len()..], &listed[..]);
    assert!(
        lines
            .iter()
            .any(|r| r["action"] == "token.issued" && r["actor"]["name"] == "admin"),
        "{lines:?}"
    );
    let two = admin.ok(&["audit", "--export", "--limit", "2"]);
    assert_eq!(two.stdout.lines().count(), 2, "{two:?}");
    let refused = admin.berth(&["audit", "--limit", "1001"], None);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("--export"), "{refused:?}");
}

#[test]
fn webhooks_to_loopback_addresses_are_refused_by_default() {
    let Some((registry, password)) = registry_with(&[
        "--webhook-max-attempts",
        "1",
        "--webhook-poll-interval",
        "200ms",
    ]) else {
        return;
    };
    let admin = User::new();
    admin.login(&registry, "admin", &password, &[]);
    admin.ok(&["namespace", "add", "hooks"]);
    // Something listens there: only the address check can stop the call.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let created = admin
        .ok(&[
            "webhook", "add", "*", &url, "--events", "push", "-o", "json",
        ])
        .json();
    let id = created["id"].to_string();
    assert_eq!(created["scope"], "*");
    push_with_password(&registry.addr, "hooks/app", "v1", "admin", &password);
    let refused = wait_for_delivery(&admin, &id, |d| d["state"] == "failed");
    assert!(
        refused["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("private address")),
        "{refused}"
    );
    assert!(refused["last_status"].is_null());
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "nothing connected to the endpoint"
    );
}
