//! End to end with access control on (`berth serve --auth`): real clients
//! log in, push and pull; anonymous and robot callers are refused where they
//! must be, with the right status, `WWW-Authenticate` and spec error code.
//! Users, namespaces and tokens are made with `berth admin` on the live data
//! directory, as an operator would.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use support::containers::ContainersEnv;
use support::dockerd::Dockerd;
use support::http::{request, HttpResponse, RequestBody};
use support::oci::{make_image, write_oci_layout};
use support::{images, record_skip, require_tool, run, TestRegistry};

const ALICE_PASSWORD: &str = "alice-password-1";

/// Runs `berth admin ARGS --data-dir DIR` and returns its stdout.
fn admin(registry: &TestRegistry, args: &[&str]) -> String {
    admin_with_stdin(registry, args, None)
}

fn admin_with_stdin(registry: &TestRegistry, args: &[&str], stdin: Option<&str>) -> String {
    let dir = registry.data_dir.as_ref().expect("a local registry").path();
    let mut command = Command::new(support::berth_binary());
    command
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run berth admin");
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

/// A registry with auth on, user alice (writer of team-a and pub), a public
/// namespace `pub`, private `team-a` and `team-b`, and a robot token `puller`
/// that may pull team-a only. Returns the robot's secret.
fn registry_with_accounts() -> Option<(TestRegistry, String)> {
    if support::is_external_registry() {
        record_skip("e2e_auth", "needs a local registry it can administer");
        return None;
    }
    let registry = TestRegistry::start_with(&["--auth"]);
    admin_with_stdin(
        &registry,
        &["user", "create", "alice", "--password-stdin"],
        Some(ALICE_PASSWORD),
    );
    admin(&registry, &["namespace", "create", "pub", "--public"]);
    admin(&registry, &["namespace", "create", "team-a"]);
    admin(&registry, &["namespace", "create", "team-b", "--private"]);
    admin(&registry, &["member", "add", "team-a", "alice", "writer"]);
    admin(&registry, &["member", "add", "pub", "alice", "writer"]);
    admin(&registry, &["member", "add", "team-b", "alice", "writer"]);
    let token = admin(
        &registry,
        &[
            "token",
            "create",
            "--name",
            "puller",
            "--scope",
            "team-a:pull",
            "--expires",
            "30d",
        ],
    )
    .trim()
    .to_string();
    assert!(token.starts_with("berth_at_"), "{token}");
    Some((registry, token))
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn get(registry: &TestRegistry, path: &str, authorization: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    request(&registry.addr, "GET", path, &headers, RequestBody::Empty)
}

fn error_code(response: &HttpResponse) -> String {
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn assert_unauthorized(response: &HttpResponse, scope: Option<&str>) {
    assert_eq!(
        response.status,
        401,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(error_code(response), "UNAUTHORIZED");
    let challenge = response.header("www-authenticate").expect("a challenge");
    assert!(
        challenge.starts_with("Bearer realm=\"http://"),
        "{challenge}"
    );
    assert!(
        challenge.contains("/auth/token\",service=\"berth\""),
        "{challenge}"
    );
    if let Some(scope) = scope {
        assert!(
            challenge.contains(&format!("scope=\"{scope}\"")),
            "{challenge}"
        );
    }
}

fn assert_denied(response: &HttpResponse) {
    assert_eq!(
        response.status,
        403,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(error_code(response), "DENIED");
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

fn skopeo_succeeds(env: &ContainersEnv, tool: &Path, args: &[&str]) -> bool {
    skopeo(env, tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn skopeo_robot_tokens_and_anonymous_access() {
    let test = "skopeo_robot_tokens_and_anonymous_access";
    let Some(tool) = require_tool("skopeo", test) else {
        return;
    };
    let Some((registry, robot)) = registry_with_accounts() else {
        return;
    };
    let env = ContainersEnv::new(&registry.addr);
    let layout = image_layout();
    let source = format!("oci:{}:v1", layout.path().display());
    let alice = format!("alice:{ALICE_PASSWORD}");
    let addr = &registry.addr;
    for repo in ["team-a/app", "pub/app", "team-b/app"] {
        run(skopeo(&env, &tool).args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &alice,
            &source,
            &format!("docker://{addr}/{repo}:v1"),
        ]));
    }

    // Anonymous: the public image pulls, the private one is refused with a
    // challenge naming the scope to ask for.
    let inspect = |repo: &str, creds: &[&str]| {
        let image = format!("docker://{addr}/{repo}:v1");
        let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
        args.extend_from_slice(creds);
        args.push(&image);
        skopeo_succeeds(&env, &tool, &args)
    };
    assert!(inspect("pub/app", &[]), "anonymous pull of a public image");
    assert!(
        !inspect("team-a/app", &[]),
        "anonymous pull of a private image"
    );
    assert_unauthorized(
        &get(&registry, "/v2/team-a/app/manifests/v1", None),
        Some("repository:team-a/app:pull"),
    );
    assert_unauthorized(&get(&registry, "/v2/", None), None);

    // The robot pulls team-a, and nothing else.
    let robot_creds = format!("puller:{robot}");
    assert!(inspect("team-a/app", &["--creds", &robot_creds]));
    assert!(!inspect("team-b/app", &["--creds", &robot_creds]));
    assert!(!skopeo_succeeds(
        &env,
        &tool,
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &robot_creds,
            &source,
            &format!("docker://{addr}/team-a/robot-push:v1"),
        ]
    ));
    let robot_basic = basic("puller", &robot);
    assert_eq!(
        get(&registry, "/v2/team-a/app/manifests/v1", Some(&robot_basic)).status,
        200
    );
    assert_denied(&get(
        &registry,
        "/v2/team-b/app/manifests/v1",
        Some(&robot_basic),
    ));
    assert_denied(&request(
        addr,
        "POST",
        "/v2/team-a/app/blobs/uploads/",
        &[("Authorization", &robot_basic)],
        RequestBody::Empty,
    ));

    // A registry token fetched from the token endpoint works with
    // --registry-token, and carries only what was granted.
    let answer = get(
        &registry,
        "/auth/token?service=berth&scope=repository:team-a/app:pull,push&scope=repository:team-b/app:pull",
        Some(&robot_basic),
    );
    assert_eq!(answer.status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let jwt = answer["token"].as_str().unwrap().to_string();
    let claims = jwt.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "team-a/app", "actions": ["pull"]}])
    );
    assert!(inspect("team-a/app", &["--registry-token", &jwt]));
    assert!(!inspect("team-b/app", &["--registry-token", &jwt]));
    let bearer = format!("Bearer {jwt}");
    assert_denied(&get(
        &registry,
        "/v2/team-b/app/manifests/v1",
        Some(&bearer),
    ));

    // Catalog: each caller sees what they may pull.
    let catalog = |authorization: Option<&str>| -> serde_json::Value {
        let response = get(&registry, "/v2/_catalog", authorization);
        assert_eq!(response.status, 200);
        serde_json::from_slice::<serde_json::Value>(&response.body).unwrap()["repositories"].clone()
    };
    assert_eq!(catalog(None), serde_json::json!(["pub/app"]));
    assert_eq!(
        catalog(Some(&robot_basic)),
        serde_json::json!(["pub/app", "team-a/app"])
    );
    assert_eq!(
        catalog(Some(&basic("alice", ALICE_PASSWORD))),
        serde_json::json!(["pub/app", "team-a/app", "team-b/app"])
    );

    // Revocation takes effect at once, for the secret and for tokens
    // already issued from it.
    admin(&registry, &["token", "revoke", "puller"]);
    assert!(!inspect("team-a/app", &["--creds", &robot_creds]));
    assert_unauthorized(
        &get(&registry, "/v2/team-a/app/manifests/v1", Some(&robot_basic)),
        None,
    );
    assert_unauthorized(
        &get(&registry, "/v2/team-a/app/manifests/v1", Some(&bearer)),
        None,
    );

    // An expired token is refused like a wrong one.
    let expired = expired_token(&registry, "old-robot");
    assert_unauthorized(
        &get(
            &registry,
            "/v2/team-a/app/manifests/v1",
            Some(&basic("old-robot", &expired)),
        ),
        None,
    );
}

/// Stores a token that expired a minute ago, straight into the database
/// (the CLI refuses lifetimes in the past), and returns its secret.
fn expired_token(registry: &TestRegistry, name: &str) -> String {
    use berth_auth::store::AccessTokenRecord;
    use berth_auth::{AuthStore, MetaAuthStore, TokenScope};
    let dir = registry.data_dir.as_ref().unwrap().path().to_path_buf();
    let name = name.to_string();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let meta = berth_meta::sqlite::SqliteMetaStore::open(&dir.join("berth.db"))
                .await
                .unwrap();
            let store = MetaAuthStore::new(std::sync::Arc::new(meta));
            let (secret, secret_hash) = berth_auth::secret::generate_access_token();
            let now = time::OffsetDateTime::now_utc();
            let change = berth_auth::change_at(&berth_auth::Actor::system("test"), now);
            store
                .create_access_token(
                    &change,
                    AccessTokenRecord {
                        name,
                        secret_hash,
                        scopes: vec![TokenScope::parse("team-a:pull").unwrap()],
                        created_by: None,
                        created_at: now - time::Duration::days(2),
                        expires_at: Some(now - time::Duration::minutes(1)),
                        last_used_at: None,
                        revoked_at: None,
                    },
                )
                .await
                .unwrap();
            secret.expose().to_string()
        })
}

#[test]
fn podman_login_and_pull() {
    let test = "podman_login_and_pull";
    let Some(podman) = require_tool("podman", test) else {
        return;
    };
    let Some(skopeo_tool) = require_tool("skopeo", test) else {
        return;
    };
    let Some((registry, _robot)) = registry_with_accounts() else {
        return;
    };
    let env = ContainersEnv::new(&registry.addr);
    let addr = &registry.addr;
    let layout = image_layout();
    run(skopeo(&env, &skopeo_tool).args([
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("alice:{ALICE_PASSWORD}"),
        &format!("oci:{}:v1", layout.path().display()),
        &format!("docker://{addr}/team-a/podman:v1"),
    ]));
    let wrong = env
        .command(&podman)
        .args([
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "-p",
            "wrong-password",
            addr,
        ])
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "a wrong password must not log in");
    run(env.command(&podman).args([
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        ALICE_PASSWORD,
        addr,
    ]));
    // skopeo reads the credentials podman stored in the shared auth file.
    run(skopeo(&env, &skopeo_tool).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{addr}/team-a/podman:v1"),
    ]));
    run(env.command(&podman).args(["logout", addr]));
}

#[test]
fn docker_login_push_and_pull_private_namespace() {
    let test = "docker_login_push_and_pull_private_namespace";
    let Some(dockerd) = require_tool("dockerd", test) else {
        return;
    };
    let Some(docker) = require_tool("docker", test) else {
        return;
    };
    if images::require_static_busybox(test).is_none() || !support::daemon::require_root(test) {
        return;
    }
    let Some((registry, _robot)) = registry_with_accounts() else {
        return;
    };
    let addr = registry.addr.clone();
    let daemon = Dockerd::start(&dockerd, &docker, &[&addr]);
    let context = daemon.dir().join("auth-context");
    std::fs::create_dir_all(&context).unwrap();
    let rootfs = images::busybox_rootfs_tar(&context, "rootfs", &[("hello.txt", b"hello\n")]);
    let image = format!("{addr}/team-a/busybox:v1");
    run(daemon.docker().arg("import").arg(&rootfs).arg(&image));

    // Without logging in, the push is refused.
    let refused = daemon.docker().arg("push").arg(&image).output().unwrap();
    assert!(!refused.status.success(), "push without login");

    let mut login = daemon.docker();
    login
        .args(["login", "-u", "alice", "--password-stdin", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = login.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ALICE_PASSWORD.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker login: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log_tail(40)
    );
    // docker keeps an identity (refresh) token from the OAuth2 POST flow,
    // not the password.
    let config = std::fs::read_to_string(daemon.dir().join("client/config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let identity = config["auths"][addr.as_str()]["identitytoken"]
        .as_str()
        .unwrap_or_default();
    assert!(identity.starts_with("berth_rt_"), "config.json: {config}");

    run(daemon.docker().arg("push").arg(&image));

    // With `v*` immutable in team-a, docker pushing another image under v1
    // is refused, and docker shows the rule; the same image again is not.
    let password = std::fs::read_to_string(
        registry
            .data_dir
            .as_ref()
            .unwrap()
            .path()
            .join("initial-admin-password"),
    )
    .unwrap();
    let authorization = basic("admin", password.trim());
    let rule = request(
        &registry.addr,
        "POST",
        "/api/v1/immutable-rules",
        &[
            ("authorization", authorization.as_str()),
            ("content-type", "application/json"),
        ],
        RequestBody::Bytes(br#"{"scope":"team-a","tags":"v*"}"#),
    );
    assert_eq!(rule.status, 201, "{}", String::from_utf8_lossy(&rule.body));
    run(daemon.docker().arg("push").arg(&image));
    let other = images::busybox_rootfs_tar(&context, "other", &[("hello.txt", b"other\n")]);
    run(daemon.docker().arg("import").arg(&other).arg(&image));
    let moved = daemon.docker().arg("push").arg(&image).output().unwrap();
    let stderr = String::from_utf8_lossy(&moved.stderr);
    assert!(!moved.status.success(), "docker moved an immutable tag");
    assert!(
        stderr.contains("denied") && stderr.contains("team-a --tags v*"),
        "{stderr}"
    );

    run(daemon.docker().args(["image", "rm", &image]));
    run(daemon.docker().arg("pull").arg(&image));

    run(daemon.docker().args(["logout", &addr]));
    run(daemon.docker().args(["image", "rm", &image]));
    let anonymous = daemon.docker().arg("pull").arg(&image).output().unwrap();
    assert!(
        !anonymous.status.success(),
        "anonymous pull of a private image"
    );
}

/// Generates a CA and a server certificate for 127.0.0.1 with the openssl CLI.
fn test_ca(dir: &Path) {
    let openssl = |args: &[&str]| {
        run(Command::new("openssl").current_dir(dir).args(args));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=berth test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[test]
fn tls_with_a_test_ca() {
    let test = "tls_with_a_test_ca";
    let Some(_openssl) = require_tool("openssl", test) else {
        return;
    };
    let Some(curl) = require_tool("curl", test) else {
        return;
    };
    let Some(skopeo_tool) = require_tool("skopeo", test) else {
        return;
    };
    if support::is_external_registry() {
        record_skip(test, "needs a local registry");
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    test_ca(certs.path());
    let cert = certs.path().join("server.crt");
    let key = certs.path().join("server.key");
    let registry = TestRegistry::start_with(&[
        "--auth",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    admin_with_stdin(
        &registry,
        &["user", "create", "alice", "--password-stdin"],
        Some(ALICE_PASSWORD),
    );
    admin(&registry, &["namespace", "create", "pub", "--public"]);
    let addr = &registry.addr;
    let ca = certs.path().join("ca.crt");

    // curl verifies the chain against the test CA, and the challenge's realm
    // is https.
    let out = run(Command::new(&curl).args([
        "-s",
        "-i",
        "--cacert",
        ca.to_str().unwrap(),
        &format!("https://{addr}/v2/"),
    ]));
    assert!(
        out.starts_with("HTTP/2 401") || out.starts_with("HTTP/1.1 401"),
        "{out}"
    );
    assert!(
        out.contains(&format!("realm=\"https://{addr}/auth/token\"")),
        "{out}"
    );
    // Without the CA, verification fails.
    let unverified = Command::new(&curl)
        .args(["-s", "-o", "/dev/null", &format!("https://{addr}/v2/")])
        .status()
        .unwrap();
    assert!(!unverified.success());

    // skopeo pushes and pulls over verified TLS with a cert dir holding the CA.
    let env = ContainersEnv::new("unused.invalid");
    let cert_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&ca, cert_dir.path().join("ca.crt")).unwrap();
    let cert_dir = cert_dir.path().to_str().unwrap().to_string();
    let layout = image_layout();
    run(skopeo(&env, &skopeo_tool).args([
        "copy",
        "--dest-cert-dir",
        &cert_dir,
        "--dest-creds",
        &format!("alice:{ALICE_PASSWORD}"),
        &format!("oci:{}:v1", layout.path().display()),
        &format!("docker://{addr}/alice/app:v1"),
    ]));
    run(skopeo(&env, &skopeo_tool).args([
        "inspect",
        "--raw",
        "--cert-dir",
        &cert_dir,
        "--creds",
        &format!("alice:{ALICE_PASSWORD}"),
        &format!("docker://{addr}/alice/app:v1"),
    ]));
    // Without the CA skopeo refuses the server.
    assert!(!skopeo_succeeds(
        &env,
        &skopeo_tool,
        &["inspect", "--raw", &format!("docker://{addr}/alice/app:v1")]
    ));
}
