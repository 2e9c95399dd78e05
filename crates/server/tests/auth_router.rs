//! Access control through `app(state).oneshot(...)`, without sockets: the
//! challenge flow, 401 versus 403, the token endpoint's GET and POST, Basic
//! credentials on `/v2/`, catalog filtering, cross-repository mounts,
//! namespace creation on first push, and tokens accepted across nodes that
//! share a store while its signing key rotates.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use berth_auth::admin;
use berth_auth::jwt::DEFAULT_TOKEN_LIFETIME;
use berth_auth::{
    AuthStore, Expiry, HashingPool, KeySet, LoginGuards, LoginThrottle, MetaAuthStore,
    PolicyConfig, Role, Secret, SigningKey, ThrottleConfig, TokenAuthority, TokenScope, Visibility,
};
use berth_meta::sqlite::SqliteMetaStore;
use berth_oci::Algorithm;
use berth_registry::{Registry, RegistryConfig};
use berth_server::{app, AppState, AuthState};
use berth_storage::fs::FsBlobStore;
use http_body_util::BodyExt;
use time::OffsetDateTime;
use tower::ServiceExt;

const PASSWORD: &str = "router-password";
const HOST: &str = "registry.test";

struct Harness {
    _dir: tempfile::TempDir,
    state: AppState,
    robot: String,
}

struct Answer {
    status: u16,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    fn challenge(&self) -> String {
        self.headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// alice: writer of team-a and pub; bob: only his personal namespace;
/// pub is public, team-a private; robot `puller` may pull team-a.
async fn harness(policy: PolicyConfig) -> Harness {
    harness_with(policy, RegistryConfig::default()).await
}

async fn harness_with(policy: PolicyConfig, config: RegistryConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FsBlobStore::open(dir.path().join("data")).unwrap();
    let meta = Arc::new(
        SqliteMetaStore::open(&dir.path().join("berth.db"))
            .await
            .unwrap(),
    );
    let registry = Registry::new(Arc::new(blobs), meta.clone(), config);
    // Access control keeps its tables in the registry's database, as the
    // binary wires it.
    let store = Arc::new(MetaAuthStore::new(meta));
    let now = berth_auth::change_at(
        &berth_auth::Actor::system("test"),
        OffsetDateTime::now_utc(),
    );
    let password = Secret::new(PASSWORD);
    for user in ["alice", "bob"] {
        admin::create_user(store.as_ref(), user, &password, false, &now)
            .await
            .unwrap();
    }
    admin::create_namespace(store.as_ref(), "pub", Visibility::Public, None, &now)
        .await
        .unwrap();
    admin::create_namespace(store.as_ref(), "team-a", Visibility::Private, None, &now)
        .await
        .unwrap();
    for namespace in ["pub", "team-a"] {
        store
            .set_member(&now, namespace, "alice", Role::Writer)
            .await
            .unwrap();
    }
    let robot = admin::create_access_token(
        store.as_ref(),
        "puller",
        vec![TokenScope::parse("team-a:pull").unwrap()],
        Expiry::Never,
        None,
        None,
        &now,
    )
    .await
    .unwrap();
    let auth = node_auth(store, policy).await;
    Harness {
        _dir: dir,
        state: AppState::new(registry).with_auth(auth),
        robot: robot.expose().to_string(),
    }
}

/// Access control for one node on `store`, with the store's signing keys
/// (made on first use), as `berth serve --auth` builds it.
async fn node_auth(store: Arc<dyn AuthStore>, policy: PolicyConfig) -> AuthState {
    let (keys, _) =
        berth_auth::keys::load_or_create(store.as_ref(), OffsetDateTime::now_utc(), || Ok(None))
            .await
            .unwrap();
    AuthState {
        store,
        authority: TokenAuthority::new(keys, "berth", "berth"),
        login: LoginGuards::new(
            LoginThrottle::new(ThrottleConfig::default()),
            HashingPool::for_this_machine(),
        ),
        policy,
        realm: None,
        tls: false,
        refresh_token_lifetime: berth_auth::store::REFRESH_TOKEN_LIFETIME,
    }
}

impl Harness {
    fn auth(&self) -> &AuthState {
        self.state.auth.as_deref().expect("access control is on")
    }

    /// A second node: the same registry and auth store, its own key state.
    async fn another_node(&self) -> Harness {
        let auth = node_auth(Arc::clone(&self.auth().store), self.auth().policy).await;
        Harness {
            _dir: tempfile::tempdir().unwrap(),
            state: AppState::new(self.state.registry.clone()).with_auth(auth),
            robot: self.robot.clone(),
        }
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", HOST);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .header("content-length", body.len())
            .body(Body::from(body))
            .unwrap();
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes().to_vec(),
        }
    }

    async fn get(&self, uri: &str, authorization: Option<&str>) -> Answer {
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        self.call("GET", uri, &headers, Vec::new()).await
    }

    /// Pushes `data` as a blob in one POST; returns the status.
    async fn push_blob(&self, repo: &str, data: &[u8], authorization: &str) -> u16 {
        let digest = Algorithm::Sha256.digest_of(data);
        self.call(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            &[
                ("authorization", authorization),
                ("content-type", "application/octet-stream"),
            ],
            data.to_vec(),
        )
        .await
        .status
    }

    async fn token(&self, query: &str, authorization: Option<&str>) -> String {
        let answer = self
            .get(&format!("/auth/token?{query}"), authorization)
            .await;
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()["token"].as_str().unwrap().to_string()
    }
}

fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn anonymous_clients_are_challenged_and_get_public_pull_tokens() {
    let h = harness(PolicyConfig::default()).await;
    let base = h.get("/v2/", None).await;
    assert_eq!(base.status, 401);
    assert_eq!(base.code(), "UNAUTHORIZED");
    assert_eq!(
        base.challenge(),
        "Bearer realm=\"http://registry.test/auth/token\",service=\"berth\""
    );
    let private = h.get("/v2/team-a/app/tags/list", None).await;
    assert_eq!(private.status, 401);
    assert!(private
        .challenge()
        .ends_with(",scope=\"repository:team-a/app:pull\""));

    let token = h
        .token(
            "service=berth&scope=repository:pub/app:pull&scope=repository:team-a/app:pull",
            None,
        )
        .await;
    assert_eq!(
        claims(&token)["access"],
        serde_json::json!([{"type": "repository", "name": "pub/app", "actions": ["pull"]}])
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(h.get("/v2/", Some(&bearer)).await.status, 200);
    // Allowed, but the repository is empty.
    assert_eq!(
        h.get("/v2/pub/app/tags/list", Some(&bearer)).await.status,
        404
    );
    let refused = h.get("/v2/team-a/app/tags/list", Some(&bearer)).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.code(), "UNAUTHORIZED");

    let bad = h.get("/v2/", Some("Bearer not.a.token")).await;
    assert_eq!(bad.status, 401);
    assert!(bad.challenge().contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn logged_in_callers_without_rights_are_denied_not_challenged() {
    let h = harness(PolicyConfig::default()).await;
    let bob = basic("bob", PASSWORD);
    let denied = h.get("/v2/team-a/app/tags/list", Some(&bob)).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.code(), "DENIED");
    assert_eq!(h.push_blob("pub/app", b"bob's layer", &bob).await, 403);

    let robot = basic("puller", &h.robot);
    assert_eq!(h.push_blob("team-a/app", b"robot layer", &robot).await, 403);
    assert_eq!(
        h.get("/v2/pub/app/tags/list", Some(&robot)).await.status,
        404
    );

    // A bearer token lacking a right the policy would grant asks for more
    // (401 insufficient_scope); one the policy refuses is 403.
    let alice = basic("alice", PASSWORD);
    let pull_only = h
        .token(
            "service=berth&scope=repository:team-a/app:pull",
            Some(&alice),
        )
        .await;
    let more = h
        .call(
            "POST",
            "/v2/team-a/app/blobs/uploads/",
            &[("authorization", &format!("Bearer {pull_only}"))],
            Vec::new(),
        )
        .await;
    assert_eq!(more.status, 401);
    assert!(more.challenge().contains("error=\"insufficient_scope\""));
    assert!(more
        .challenge()
        .contains("scope=\"repository:team-a/app:pull,push\""));

    let wrong = h.get("/v2/", Some(&basic("alice", "wrong password"))).await;
    assert_eq!(wrong.status, 401);
}

#[tokio::test]
async fn basic_credentials_push_and_pull_on_v2() {
    let h = harness(PolicyConfig::default()).await;
    let alice = basic("alice", PASSWORD);
    assert_eq!(h.get("/v2/", Some(&alice)).await.status, 200);
    assert_eq!(h.push_blob("team-a/app", b"layer", &alice).await, 201);
    let digest = Algorithm::Sha256.digest_of(b"layer");
    let robot = basic("puller", &h.robot);
    let pulled = h
        .get(&format!("/v2/team-a/app/blobs/{digest}"), Some(&robot))
        .await;
    assert_eq!(pulled.status, 200);
    assert_eq!(pulled.body, b"layer");
}

#[tokio::test]
async fn token_endpoint_get_and_oauth_post() {
    let h = harness(PolicyConfig::default()).await;
    let alice = basic("alice", PASSWORD);
    let answer = h
        .get(
            "/auth/token?service=berth&account=alice&offline_token=true&scope=repository:team-a/app:pull,push,delete",
            Some(&alice),
        )
        .await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    assert!(body["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("berth_rt_"));
    assert_eq!(body["token"], body["access_token"]);
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    assert!(body["issued_at"].is_string());
    assert_eq!(
        claims(body["token"].as_str().unwrap())["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );
    assert_eq!(
        h.get("/auth/token?service=other", Some(&alice))
            .await
            .status,
        400
    );
    assert_eq!(
        h.get("/auth/token?service=berth", Some(&basic("alice", "nope")))
            .await
            .status,
        401
    );

    let form = |body: &str| {
        h.call(
            "POST",
            "/auth/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            body.as_bytes().to_vec(),
        )
    };
    let login = form(&format!(
        "grant_type=password&username=alice&password={PASSWORD}&client_id=docker&access_type=offline&service=berth&scope=repository%3Ateam-a%2Fapp%3Apull"
    ))
    .await;
    assert_eq!(login.status, 200);
    let refresh = login.json()["refresh_token"].as_str().unwrap().to_string();
    assert!(login.json()["access_token"].is_string());
    let refreshed = form(&format!(
        "grant_type=refresh_token&refresh_token={refresh}&client_id=docker&service=berth&scope=repository%3Ateam-a%2Fapp%3Apull"
    ))
    .await;
    assert_eq!(refreshed.status, 200);
    assert_eq!(
        claims(refreshed.json()["access_token"].as_str().unwrap())["sub"],
        "alice"
    );
    let wrong = form("grant_type=password&username=alice&password=wrong&client_id=docker").await;
    assert_eq!(wrong.status, 401);
    let unsupported = form("grant_type=client_credentials&client_id=docker").await;
    assert_eq!(unsupported.status, 400);
    assert_eq!(unsupported.json()["error"], "unsupported_grant_type");
}

/// Issue 11: an anonymous token request with 1,500 scopes cost 1,500
/// lookups and returned a 238 KB token. A request may ask for at most 32
/// scopes (more is 400 with a message saying so, on GET and POST), and 32
/// scopes of the longest repository names still make a token under 16 KiB.
#[tokio::test]
async fn token_requests_are_capped_at_32_scopes() {
    let h = harness(PolicyConfig::default()).await;
    let alice = basic("alice", PASSWORD);
    // team-a/ plus 248 characters: the longest repository names there are.
    let scopes = |count: usize| -> Vec<String> {
        (0..count)
            .map(|n| format!("scope=repository:team-a/{:0>248}:pull,push", n))
            .collect()
    };
    let within = h
        .get(
            &format!("/auth/token?service=berth&{}", scopes(32).join("&")),
            Some(&alice),
        )
        .await;
    assert_eq!(within.status, 200);
    let token = within.json()["token"].as_str().unwrap().to_string();
    assert_eq!(claims(&token)["access"].as_array().unwrap().len(), 32);
    assert!(token.len() < 16 * 1024, "a token of {} bytes", token.len());

    for who in [None, Some(alice.as_str())] {
        let refused = h
            .get(
                &format!("/auth/token?service=berth&{}", scopes(33).join("&")),
                who,
            )
            .await;
        assert_eq!(refused.status, 400, "{who:?}");
        let message = refused.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains("at most 32 scopes"), "{message}");
    }
    // Several scopes in one parameter count one by one.
    let packed = (0..33)
        .map(|n| format!("repository:pub/r{n}:pull"))
        .collect::<Vec<_>>()
        .join("%20");
    assert_eq!(
        h.get(&format!("/auth/token?scope={packed}"), None)
            .await
            .status,
        400
    );
    let form = format!(
        "grant_type=password&username=alice&password={PASSWORD}&service=berth&scope={packed}"
    );
    let refused = h
        .call(
            "POST",
            "/auth/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            form.into_bytes(),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "invalid_scope");
    assert!(refused.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("at most 32 scopes"));
}

#[tokio::test]
async fn catalog_lists_only_what_the_caller_may_pull() {
    let h = harness(PolicyConfig::default()).await;
    let alice = basic("alice", PASSWORD);
    let bob = basic("bob", PASSWORD);
    assert_eq!(h.push_blob("team-a/app", b"a", &alice).await, 201);
    assert_eq!(h.push_blob("pub/app", b"p", &alice).await, 201);
    assert_eq!(h.push_blob("bob/app", b"b", &bob).await, 201);
    let list = |answer: Answer| answer.json()["repositories"].clone();
    assert_eq!(
        list(h.get("/v2/_catalog", None).await),
        serde_json::json!(["pub/app"])
    );
    assert_eq!(
        list(h.get("/v2/_catalog", Some(&bob)).await),
        serde_json::json!(["bob/app", "pub/app"])
    );
    assert_eq!(
        list(h.get("/v2/_catalog", Some(&alice)).await),
        serde_json::json!(["pub/app", "team-a/app"])
    );
    // Paging fills pages from visible names only.
    let page = h.get("/v2/_catalog?n=1", Some(&alice)).await;
    assert_eq!(list(page), serde_json::json!(["pub/app"]));
}

#[tokio::test]
async fn mounts_need_pull_on_the_source_else_fall_back_to_an_upload() {
    let h = harness(PolicyConfig::default()).await;
    let alice = basic("alice", PASSWORD);
    let bob = basic("bob", PASSWORD);
    assert_eq!(
        h.push_blob("team-a/src", b"secret layer", &alice).await,
        201
    );
    let digest = Algorithm::Sha256.digest_of(b"secret layer");
    let mount_uri =
        |repo: &str| format!("/v2/{repo}/blobs/uploads/?mount={digest}&from=team-a/src");
    let mounted = h
        .call(
            "POST",
            &mount_uri("team-a/dst"),
            &[("authorization", &alice)],
            Vec::new(),
        )
        .await;
    assert_eq!(mounted.status, 201);
    let fallback = h
        .call(
            "POST",
            &mount_uri("bob/app"),
            &[("authorization", &bob)],
            Vec::new(),
        )
        .await;
    assert_eq!(fallback.status, 202, "an upload session, not a mount");
    assert!(fallback.headers.get("location").is_some());
    assert_eq!(
        h.get(&format!("/v2/bob/app/blobs/{digest}"), Some(&bob))
            .await
            .status,
        404
    );
}

/// OCI 1.1's mount without `from`: the blob is mounted from some repository
/// holding it that the caller may pull, with the same visibility rule as a
/// mount with `from`; when there is none the caller gets an ordinary upload
/// session, which does not reveal whether the blob exists elsewhere.
#[tokio::test]
async fn mounts_without_from_use_only_sources_the_caller_may_pull() {
    let h = harness(PolicyConfig::default()).await;
    let alice = basic("alice", PASSWORD);
    let bob = basic("bob", PASSWORD);
    // A blob only in team-a (private: bob may not pull it), and one in pub.
    assert_eq!(
        h.push_blob("team-a/src", b"private layer", &alice).await,
        201
    );
    assert_eq!(h.push_blob("pub/base", b"public layer", &alice).await, 201);
    let private = Algorithm::Sha256.digest_of(b"private layer");
    let public = Algorithm::Sha256.digest_of(b"public layer");
    let mount = |repo: &str, digest: &berth_oci::Digest| {
        format!("/v2/{repo}/blobs/uploads/?mount={digest}")
    };

    let refused = h
        .call(
            "POST",
            &mount("bob/app", &private),
            &[("authorization", &bob)],
            Vec::new(),
        )
        .await;
    assert_eq!(refused.status, 202, "an upload session, not a mount");
    assert!(refused.headers.get("location").is_some());
    let blob = |repo: &str, digest: &berth_oci::Digest| format!("/v2/{repo}/blobs/{digest}");
    assert_eq!(
        h.get(&blob("bob/app", &private), Some(&bob)).await.status,
        404
    );

    let mounted = h
        .call(
            "POST",
            &mount("bob/app", &public),
            &[("authorization", &bob)],
            Vec::new(),
        )
        .await;
    assert_eq!(mounted.status, 201);
    assert_eq!(
        mounted.headers.get("location").unwrap().to_str().unwrap(),
        blob("bob/app", &public)
    );
    assert_eq!(
        h.get(&blob("bob/app", &public), Some(&bob)).await.status,
        200
    );

    // alice may pull team-a, so the private blob mounts for her.
    let mounted = h
        .call(
            "POST",
            &mount("pub/app", &private),
            &[("authorization", &alice)],
            Vec::new(),
        )
        .await;
    assert_eq!(mounted.status, 201);
    assert_eq!(
        h.get(&blob("pub/app", &private), Some(&alice)).await.status,
        200
    );
}

/// Open upload sessions are capped per authenticated principal across
/// repositories (user or access token): the next start is refused with 429
/// `TOOMANYREQUESTS`, while other principals are not affected.
#[tokio::test]
async fn open_uploads_are_capped_per_principal() {
    let config = RegistryConfig {
        max_uploads_per_principal: 2,
        ..RegistryConfig::default()
    };
    let h = harness_with(PolicyConfig::default(), config).await;
    let alice = basic("alice", PASSWORD);
    let bob = basic("bob", PASSWORD);
    let start = |repo: &str, who: &str| {
        let uri = format!("/v2/{repo}/blobs/uploads/");
        let who = who.to_string();
        let h = &h;
        async move {
            h.call("POST", &uri, &[("authorization", &who)], Vec::new())
                .await
        }
    };
    assert_eq!(start("pub/one", &alice).await.status, 202);
    assert_eq!(start("team-a/two", &alice).await.status, 202);
    let refused = start("alice/three", &alice).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.code(), "TOOMANYREQUESTS");
    assert!(
        String::from_utf8_lossy(&refused.body).contains("alice"),
        "the message names the principal"
    );
    assert_eq!(start("bob/one", &bob).await.status, 202);
}

#[tokio::test]
async fn pushing_creates_a_namespace_only_when_allowed() {
    let closed = harness(PolicyConfig::default()).await;
    let alice = basic("alice", PASSWORD);
    assert_eq!(closed.push_blob("new-team/app", b"x", &alice).await, 403);

    let open = harness(PolicyConfig {
        users_may_create_namespaces: true,
        ..PolicyConfig::default()
    })
    .await;
    assert_eq!(open.push_blob("new-team/app", b"x", &alice).await, 201);
    let auth = open.state.auth.as_ref().unwrap();
    assert_eq!(
        auth.store.member_role("new-team", "alice").await.unwrap(),
        Some(Role::Owner)
    );
    let robot = basic("puller", &open.robot);
    assert_eq!(open.push_blob("robot-team/app", b"x", &robot).await, 403);
}

#[tokio::test]
async fn management_api_manages_namespaces_members_and_tokens() {
    let h = harness(PolicyConfig::default()).await;
    let alice = basic("alice", PASSWORD);
    let bob = basic("bob", PASSWORD);
    let json = |value: serde_json::Value| serde_json::to_vec(&value).unwrap();
    let call = |method: &'static str, uri: &'static str, who: String, body: Vec<u8>| {
        let h = &h;
        async move {
            h.call(
                method,
                uri,
                &[
                    ("authorization", &who),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
        }
    };
    // alice owns her personal namespace: she may publish it and add bob.
    let public = call(
        "PATCH",
        "/api/v1/namespaces/alice",
        alice.clone(),
        json(serde_json::json!({"visibility": "public"})),
    )
    .await;
    assert_eq!(public.status, 200);
    assert_eq!(
        call(
            "PUT",
            "/api/v1/namespaces/alice/members/bob",
            alice.clone(),
            json(serde_json::json!({"role": "reader"}))
        )
        .await
        .status,
        200
    );
    let members = call(
        "GET",
        "/api/v1/namespaces/alice/members",
        alice.clone(),
        Vec::new(),
    )
    .await;
    assert_eq!(
        members.json()["members"],
        serde_json::json!([{"user": "alice", "role": "owner"}, {"user": "bob", "role": "reader"}])
    );
    // bob may not manage alice's namespace, nor create namespaces.
    assert_eq!(
        call(
            "GET",
            "/api/v1/namespaces/alice/members",
            bob.clone(),
            Vec::new()
        )
        .await
        .status,
        403
    );
    assert_eq!(
        call(
            "POST",
            "/api/v1/namespaces",
            bob.clone(),
            json(serde_json::json!({"name": "bobs-team"}))
        )
        .await
        .status,
        403
    );
    // alice makes a CI token for her namespace, but not for team-a (a writer only).
    let created = call(
        "POST",
        "/api/v1/tokens",
        alice.clone(),
        json(serde_json::json!({"name": "alice-ci", "scopes": ["alice:pull,push"], "expires": "30d"})),
    )
    .await;
    assert_eq!(created.status, 201);
    let secret = created.json()["token"].as_str().unwrap().to_string();
    assert_eq!(
        h.push_blob("alice/app", b"ci", &basic("alice-ci", &secret))
            .await,
        201
    );
    assert_eq!(
        call(
            "POST",
            "/api/v1/tokens",
            alice.clone(),
            json(serde_json::json!({"name": "team-ci", "scopes": ["team-a:pull"]}))
        )
        .await
        .status,
        403
    );
    let tokens = call("GET", "/api/v1/tokens", alice.clone(), Vec::new()).await;
    assert_eq!(tokens.json()["tokens"][0]["name"], "alice-ci");
    assert_eq!(
        call(
            "DELETE",
            "/api/v1/tokens/alice-ci",
            alice.clone(),
            Vec::new()
        )
        .await
        .status,
        204
    );
    assert_eq!(
        h.push_blob("alice/app", b"ci2", &basic("alice-ci", &secret))
            .await,
        401
    );
    // Anonymous callers are kept out; robots see what they may pull and
    // manage nothing. Refusals are the management API's error shape.
    let anonymous = h.get("/api/v1/namespaces", None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["code"], "unauthorized");
    let robot = basic("puller", &h.robot);
    let listed = h.get("/api/v1/namespaces", Some(&robot)).await;
    assert_eq!(listed.status, 200);
    let names: Vec<String> = listed.json()["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    // alice's namespace was made public above.
    assert_eq!(names, ["alice", "pub", "team-a"]);
    assert_eq!(h.get("/api/v1/tokens", Some(&robot)).await.status, 403);
    let users = h.get("/api/v1/users", Some(&alice)).await;
    assert_eq!(users.status, 403);
    assert_eq!(users.json()["code"], "forbidden");
}

fn kid(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn nodes_sharing_a_store_accept_each_others_tokens_across_a_rotation() {
    let a = harness(PolicyConfig::default()).await;
    let b = a.another_node().await;
    let alice = basic("alice", PASSWORD);
    let query = "service=berth&scope=repository:team-a/app:pull";
    let bearer = |token: &str| format!("Bearer {token}");

    // Both nodes loaded the one key in the store, so either accepts the
    // other's tokens.
    let old = a.token(query, Some(&alice)).await;
    assert_eq!(b.get("/v2/", Some(&bearer(&old))).await.status, 200);
    let from_b = b.token(query, Some(&alice)).await;
    assert_eq!(kid(&from_b), kid(&old));
    assert_eq!(a.get("/v2/", Some(&bearer(&from_b))).await.status, 200);

    // A rotation in the store (what `berth admin keys rotate` does): node A
    // reloads and signs with the new key; node B has not reloaded yet, and
    // reloads when a token names the key it does not know.
    let rotation = berth_auth::keys::rotate(
        a.auth().store.as_ref(),
        OffsetDateTime::now_utc(),
        DEFAULT_TOKEN_LIFETIME,
    )
    .await
    .unwrap();
    assert_eq!(rotation.retired, Some(kid(&old)));
    a.auth().reload_keys().await.unwrap();
    let new = a.token(query, Some(&alice)).await;
    assert_eq!(kid(&new), rotation.current);
    assert_eq!(
        b.auth().authority.keys().current().kid(),
        kid(&old),
        "B still has the old keys"
    );
    assert_eq!(b.get("/v2/", Some(&bearer(&new))).await.status, 200);
    assert_eq!(b.auth().authority.keys().current().kid(), rotation.current);
    assert_eq!(kid(&b.token(query, Some(&alice)).await), rotation.current);
    // The retired key still verifies the tokens it signed, on both nodes.
    for node in [&a, &b] {
        assert_eq!(node.get("/v2/", Some(&bearer(&old))).await.status, 200);
    }

    // A token under a key no node has is refused; its reload is skipped,
    // since B reloaded moments ago.
    let stranger = TokenAuthority::new(KeySet::new(SigningKey::generate()), "berth", "berth")
        .issue(Some("alice"), Vec::new(), OffsetDateTime::now_utc(), None)
        .unwrap();
    assert!(!b
        .auth()
        .authority
        .may_reload_for_unknown_key(std::time::Instant::now()));
    let refused = b.get("/v2/", Some(&bearer(stranger.token.expose()))).await;
    assert_eq!(refused.status, 401);
    assert!(refused.challenge().contains("error=\"invalid_token\""));
}

/// A rotation made through another node (or `berth admin keys rotate`)
/// reaches a node at its next reload. The store is real SQLite, which
/// answers from a thread of its own, so the test runs on the real clock
/// (tokio's paused clock would leap past every timeout while SQLite works)
/// with a short reload interval, and waits, bounded, for the reload.
#[tokio::test]
async fn keys_rotated_elsewhere_are_picked_up_at_the_next_reload() {
    use std::time::{Duration, Instant};

    let sqlite = SqliteMetaStore::open_in_memory().await.unwrap();
    let store: Arc<dyn AuthStore> = Arc::new(MetaAuthStore::new(Arc::new(sqlite)));
    let auth = Arc::new(node_auth(store.clone(), PolicyConfig::default()).await);
    let first = auth.authority.keys().current().kid().to_string();
    let rotation = berth_auth::keys::rotate(
        store.as_ref(),
        OffsetDateTime::now_utc(),
        DEFAULT_TOKEN_LIFETIME,
    )
    .await
    .unwrap();

    // Until it reloads, the node keeps signing with the old key...
    assert_eq!(auth.authority.keys().current().kid(), first);
    let cancel = tokio_util::sync::CancellationToken::new();
    let reloads = {
        let auth = Arc::clone(&auth);
        let cancel = cancel.clone();
        tokio::spawn(async move { auth.run_key_reload(Duration::from_millis(50), cancel).await })
    };
    // ...and after a reload, with the new one, still verifying the old one's tokens.
    let deadline = Instant::now() + Duration::from_secs(10);
    while auth.authority.keys().current().kid() == first {
        assert!(Instant::now() < deadline, "no reload within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let keys = auth.authority.keys();
    assert_eq!(keys.current().kid(), rotation.current);
    assert_eq!(keys.kids().len(), 2);
    assert!(keys.kids().contains(&first.as_str()));

    cancel.cancel();
    reloads.await.unwrap();
}
