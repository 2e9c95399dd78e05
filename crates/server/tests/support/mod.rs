//! A registry with access control for the management API's router tests,
//! called through `app(state).oneshot(...)`, without sockets.
//!
//! The cast: `root` (administrator); `reader`, `writer`, `maintainer` and
//! `owner`, members with those roles of `pub` (public) and `priv`
//! (private); `stranger`, a user in neither; `bystander`, the user whose
//! membership the tests change; and `robot`, an access token with every
//! registry action on both namespaces.

#![allow(dead_code)]

pub mod blob_http;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use berth_auth::{
    admin, AuthStore, Expiry, HashingPool, LoginGuards, LoginThrottle, MetaAuthStore, PolicyConfig,
    Role, Secret, ThrottleConfig, TokenAuthority, TokenScope, Visibility,
};
use berth_meta::sqlite::SqliteMetaStore;
use berth_registry::{Registry, RegistryConfig};
use berth_server::{app, AppState, AuthState};
use berth_storage::fs::FsBlobStore;
use http_body_util::BodyExt;
use time::OffsetDateTime;
use tower::ServiceExt;

pub const PASSWORD: &str = "router-password";
pub const HOST: &str = "registry.test";
pub const MEMBERS: [(&str, Role); 4] = [
    ("reader", Role::Reader),
    ("writer", Role::Writer),
    ("maintainer", Role::Maintainer),
    ("owner", Role::Owner),
];

pub struct Harness {
    _dir: tempfile::TempDir,
    pub state: AppState,
    /// The robot's secret.
    pub robot: String,
}

/// An answer, with its body read.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    /// Checks that the answer is a management API error of `code`: the
    /// JSON shape `{"code","message","detail"}` and nothing else.
    pub fn assert_error(&self, code: &str, context: &str) {
        let body = self.json();
        let object = body.as_object().unwrap_or_else(|| {
            panic!(
                "{context}: error body is not a JSON object: {}",
                self.text()
            )
        });
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["code", "detail", "message"],
            "{context}: {}",
            self.text()
        );
        assert_eq!(body["code"], code, "{context}: {}", self.text());
        assert!(
            !body["message"].as_str().unwrap_or_default().is_empty(),
            "{context}: a message"
        );
        assert!(
            body["detail"].is_null() || body["detail"].is_object(),
            "{context}: detail is null or an object"
        );
        assert_eq!(self.header("content-type"), "application/json", "{context}");
    }
}

pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The access-token scopes of the JWT `token` (its `access` claim).
pub fn access_claim(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["access"].clone()
}

/// A registry on the filesystem and SQLite in `dir`, as `berth serve`
/// builds one on its defaults, and its metadata store (which access control
/// shares in the binary).
pub async fn local_registry(dir: &std::path::Path) -> (Registry, Arc<SqliteMetaStore>) {
    let blobs = FsBlobStore::open(dir.join("data")).unwrap();
    let meta = Arc::new(SqliteMetaStore::open(&dir.join("berth.db")).await.unwrap());
    let registry = Registry::new(Arc::new(blobs), meta.clone(), RegistryConfig::default());
    (registry, meta)
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::with_policy(PolicyConfig::default()).await
    }

    pub async fn with_policy(policy: PolicyConfig) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        // The registry and access control share one database, as in the binary.
        let (registry, meta) = local_registry(dir.path()).await;
        let store = Arc::new(MetaAuthStore::new(meta));
        let now = OffsetDateTime::now_utc();
        let change = berth_auth::change_at(&berth_auth::Actor::system("test"), now);
        let password = Secret::new(PASSWORD);
        admin::create_user(store.as_ref(), "root", &password, true, &change)
            .await
            .unwrap();
        for (user, _) in MEMBERS {
            admin::create_user(store.as_ref(), user, &password, false, &change)
                .await
                .unwrap();
        }
        for user in ["stranger", "bystander"] {
            admin::create_user(store.as_ref(), user, &password, false, &change)
                .await
                .unwrap();
        }
        for (namespace, visibility) in [("pub", Visibility::Public), ("priv", Visibility::Private)]
        {
            admin::create_namespace(store.as_ref(), namespace, visibility, None, &change)
                .await
                .unwrap();
            for (user, role) in MEMBERS {
                store
                    .set_member(&change, namespace, user, role)
                    .await
                    .unwrap();
            }
        }
        let robot = admin::create_access_token(
            store.as_ref(),
            "robot",
            vec![
                TokenScope::parse("pub:*").unwrap(),
                TokenScope::parse("priv:*").unwrap(),
            ],
            Expiry::Never,
            None,
            None,
            &change,
        )
        .await
        .unwrap();
        let (keys, _) = berth_auth::keys::load_or_create(store.as_ref(), now, || Ok(None))
            .await
            .unwrap();
        // The defaults' limits, but a first lockout of a minute instead of
        // a second: a test that checks a guesser is still locked must not
        // outlive the lock on a loaded machine (argon2 on a debug build
        // under load took the 1 s lock past its end).
        let mut throttle = ThrottleConfig::default();
        throttle.account.base_lockout = std::time::Duration::from_secs(60);
        throttle.address.base_lockout = std::time::Duration::from_secs(60);
        let auth = AuthState {
            store,
            authority: TokenAuthority::new(keys, "berth", "berth"),
            login: LoginGuards::new(
                LoginThrottle::new(throttle),
                HashingPool::for_this_machine(),
            ),
            policy,
            realm: None,
            tls: false,
            refresh_token_lifetime: berth_auth::store::REFRESH_TOKEN_LIFETIME,
        };
        Harness {
            _dir: dir,
            state: AppState::new(registry).with_auth(auth),
            robot: robot.expose().to_string(),
        }
    }

    /// The same registry served without access control.
    pub fn without_access_control(mut self) -> Harness {
        self.state = self.state.without_auth();
        self
    }

    pub fn store(&self) -> &Arc<dyn AuthStore> {
        &self
            .state
            .auth
            .as_ref()
            .expect("access control is on")
            .store
    }

    /// Sends a request; `body` is sent as JSON when it is not empty.
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> Answer {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", HOST);
        if let Some(authorization) = authorization {
            builder = builder.header("authorization", authorization);
        }
        if !body.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        self.send(builder.body(Body::from(body.to_string())).unwrap())
            .await
    }

    /// Sends a request as if it came from `peer` (the socket's address,
    /// which [`berth_server::run`] attaches), with extra `headers` (a
    /// `host` among them replaces the usual one).
    pub async fn call_from(
        &self,
        peer: &str,
        method: &str,
        uri: &str,
        authorization: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut builder = Request::builder().method(method).uri(uri);
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            builder = builder.header("host", HOST);
        }
        if let Some(authorization) = authorization {
            builder = builder.header("authorization", authorization);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(Body::empty()).unwrap();
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        self.send(request).await
    }

    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes().to_vec(),
        }
    }

    /// Pushes a small image (a config naming `seed`, one layer) through
    /// `/v2/` as the administrator, tagged `tag`; returns its digest.
    pub async fn push_image(&self, repository: &str, tag: &str, seed: &str) -> String {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","created":"2026-01-02T03:04:05Z","config":{{"Cmd":["{seed}"]}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        let layer = format!("layer of {seed}");
        let mut descriptors = Vec::new();
        for (blob, media_type) in [
            (&config, "application/vnd.oci.image.config.v1+json"),
            (&layer, "application/vnd.oci.image.layer.v1.tar"),
        ] {
            let digest = berth_oci::Algorithm::Sha256.digest_of(blob.as_bytes());
            let answer = self
                .send_raw(
                    "POST",
                    &format!("/v2/{repository}/blobs/uploads/?digest={digest}"),
                    "application/octet-stream",
                    blob.as_bytes().to_vec(),
                )
                .await;
            assert_eq!(answer.status, 201, "blob upload: {}", answer.text());
            descriptors.push(serde_json::json!({
                "mediaType": media_type, "digest": digest.as_str(), "size": blob.len(),
            }));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptors[0],
            "layers": [descriptors[1]],
        });
        let manifest = serde_json::to_vec(&manifest).unwrap();
        self.push_manifest(
            repository,
            tag,
            "application/vnd.oci.image.manifest.v1+json",
            manifest,
        )
        .await
    }

    /// Pushes a manifest through `/v2/` as the administrator; returns its digest.
    pub async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        manifest: Vec<u8>,
    ) -> String {
        let digest = berth_oci::Algorithm::Sha256.digest_of(&manifest);
        let answer = self
            .send_raw(
                "PUT",
                &format!("/v2/{repository}/manifests/{reference}"),
                media_type,
                manifest,
            )
            .await;
        assert_eq!(answer.status, 201, "manifest push: {}", answer.text());
        digest.to_string()
    }

    /// Sends `body` as `content_type` with the administrator's password.
    pub async fn send_raw(
        &self,
        method: &str,
        uri: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", HOST)
            .header("authorization", basic("root", PASSWORD))
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    /// A registry token for `user` (Basic login) with `scopes`.
    pub async fn token(&self, user: &str, scopes: &[&str]) -> String {
        let mut query = "service=berth".to_string();
        for scope in scopes {
            query.push_str("&scope=");
            query.push_str(&scope.replace(' ', "%20"));
        }
        let answer = self
            .call(
                "GET",
                &format!("/auth/token?{query}"),
                Some(&basic(user, PASSWORD)),
                "",
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()["token"].as_str().unwrap().to_string()
    }
}

/// Bytes that differ at every offset a window could start at, so a region
/// sent from the wrong offset cannot pass for the right one.
pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// Reads a response's head off a socket, up to the blank line that ends
/// it (which it leaves out).
pub async fn read_head<R: tokio::io::AsyncBufRead + Unpin>(connection: &mut R) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = connection.read_line(&mut line).await.unwrap();
        assert!(n > 0, "the connection closed mid-head: {head:?}");
        if line == "\r\n" {
            return head;
        }
        head.push_str(&line);
    }
}

/// The `Content-Length` of a response head read off a socket (0 when it
/// has none), for the tests that speak HTTP/1 by hand.
pub fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| {
                value
                    .trim()
                    .parse::<usize>()
                    .expect("a numeric Content-Length")
            })
        })
        .unwrap_or(0)
}

/// A registry in a fresh directory, its state with `settings`, and a
/// listener on a free loopback port: what the tests that speak to a real
/// socket hand to `berth_server::run`, each with its own shutdown.
pub async fn listening(
    settings: berth_server::ServerSettings,
) -> (tempfile::TempDir, AppState, tokio::net::TcpListener) {
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = local_registry(dir.path()).await;
    let state = AppState::new(registry).with_settings(settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    (dir, state, listener)
}
