//! The pull-through cache's HTTP client: [`HttpUpstream`] implements the
//! registry's [`Upstream`] over the distribution API.
//!
//! Authentication follows the upstream's challenge: a `401` with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` sends us to the
//! token endpoint (with Basic credentials when configured, anonymously
//! otherwise), and the bearer token is kept per scope until shortly before
//! it expires; a `Basic` challenge is answered with the credentials. The
//! password is read from its file once, at start, kept in memory only, and
//! never logged or put in an error.
//!
//! Bounds: connect and read timeouts on every request, a total timeout on
//! manifest and token requests (blobs may take long, but never stall),
//! manifests capped at the size a push may have, token answers capped, and
//! redirects followed only for blob GETs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_oci::manifest::{media_types, MAX_MANIFEST_SIZE};
use berth_oci::{Digest, Reference, RepoName};
use berth_registry::{ByteStream, Upstream, UpstreamBlob, UpstreamError, UpstreamManifest};
use reqwest::header::{
    HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};

use crate::config::upstream::UpstreamConfig;

/// The longest a manifest or token request may take in all, unless the
/// connect and read timeouts together allow longer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Redirects a blob GET follows at most.
const MAX_BLOB_REDIRECTS: usize = 5;
/// The largest token endpoint answer read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// A token is renewed this long before the expiry the endpoint gave.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// The lifetime of a token whose answer names none (the spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens kept at most (one per repository scope).
const MAX_TOKENS: usize = 4096;

/// Every manifest media type Berth stores, for the `Accept` header.
const MANIFEST_ACCEPT: &str = concat!(
    "application/vnd.oci.image.index.v1+json, ",
    "application/vnd.oci.image.manifest.v1+json, ",
    "application/vnd.docker.distribution.manifest.list.v2+json, ",
    "application/vnd.docker.distribution.manifest.v2+json"
);

/// How long an upstream may take before it counts as down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting (TCP and TLS).
    pub connect: Duration,
    /// The longest wait for an answer's head or its next bytes.
    pub read: Duration,
}

impl Default for Timeouts {
    /// The `[[upstream]]` defaults, which replication uses too.
    fn default() -> Timeouts {
        Timeouts {
            connect: crate::config::upstream::DEFAULT_CONNECT_TIMEOUT,
            read: crate::config::upstream::DEFAULT_READ_TIMEOUT,
        }
    }
}

/// What a client authenticates with; never logged (no `Debug`).
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    /// A bearer token sent up front instead of answering challenges.
    pub token: Option<String>,
}

impl Credentials {
    /// `user:password`, or a token (a line without `:`), as a replication
    /// rule's credentials file holds them.
    pub fn parse(text: &str) -> Credentials {
        let text = text.trim_end_matches(['\n', '\r']);
        match text.split_once(':') {
            Some((username, password)) => Credentials {
                username: Some(username.to_string()),
                password: Some(password.to_string()),
                token: None,
            },
            None => Credentials {
                token: Some(text.to_string()),
                ..Credentials::default()
            },
        }
    }
}

/// An upstream registry over HTTP.
pub struct HttpUpstream {
    /// The base URL; paths `/v2/…` are joined to it.
    base: url::Url,
    /// For manifests and tokens: no redirects, a total timeout.
    client: reqwest::Client,
    /// For blobs: a few redirects (to object storage), no total timeout.
    blob_client: reqwest::Client,
    username: Option<String>,
    /// Read from `password_file`; never logged (no `Debug`).
    password: Option<String>,
    /// A bearer token sent as it is (a replication rule's credentials
    /// without a user name); never logged.
    token: Option<String>,
    /// Bearer tokens by scope, with when to stop using them.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// Whether the upstream asked for Basic credentials, which are then
    /// sent up front.
    basic: std::sync::atomic::AtomicBool,
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value (one challenge; the parameters'
/// values quoted or not, commas inside quotes kept).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params: HashMap<String, String> = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                val.push(*c);
                chars.next();
            }
        }
        params.insert(name.trim().to_ascii_lowercase(), val.trim().to_string());
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// A send error with its causes, for the log and the client (no
/// credentials are in URLs or headers reqwest reports).
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "the upstream did not answer in time".to_string()
    } else if error.is_connect() {
        "cannot connect to the upstream".to_string()
    } else {
        "the request to the upstream failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

/// The error an unsuccessful status stands for.
fn status_error(status: StatusCode, headers: &HeaderMap) -> UpstreamError {
    match status {
        StatusCode::NOT_FOUND => UpstreamError::NotFound,
        StatusCode::TOO_MANY_REQUESTS => UpstreamError::TooManyRequests {
            retry_after: retry_after(headers),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            UpstreamError::Denied(format!("the upstream answered {status}"))
        }
        other => UpstreamError::Failed(format!("the upstream answered {other}")),
    }
}

impl HttpUpstream {
    /// A client for `config`'s upstream, with its password read from
    /// `password_file`.
    pub fn new(config: &UpstreamConfig) -> Result<HttpUpstream, String> {
        let password = match &config.password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        format!(
                            "cannot read the password file {} of upstream {}: {e}",
                            path.display(),
                            config.namespace
                        )
                    })?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            ),
            None => None,
        };
        HttpUpstream::build(
            config.api_url(),
            Credentials {
                username: config.username.clone(),
                password,
                token: None,
            },
            "berth-proxy",
            Timeouts {
                connect: config.connect_timeout,
                read: config.read_timeout,
            },
            None,
        )
    }

    /// A client of the registry at `base` (a replication remote).
    /// `public_only` refuses every host that resolves to a private address
    /// (the outbound-call safety of `[server] outbound_allow_private`).
    pub fn build(
        base: url::Url,
        credentials: Credentials,
        agent: &str,
        timeouts: Timeouts,
        public_only: Option<std::sync::Arc<crate::webhooks::PublicOnlyResolver>>,
    ) -> Result<HttpUpstream, String> {
        let builder = || {
            let builder = reqwest::Client::builder()
                .connect_timeout(timeouts.connect)
                .read_timeout(timeouts.read)
                .user_agent(format!("{agent}/{}", env!("CARGO_PKG_VERSION")));
            match &public_only {
                // Proxies from the environment would reach what the
                // address check refuses.
                Some(resolver) => builder.dns_resolver(resolver.clone()).no_proxy(),
                None => builder,
            }
        };
        let client = builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT.max(timeouts.connect + timeouts.read))
            .build()
            .map_err(|e| format!("the upstream HTTP client: {e}"))?;
        let blob_client = builder()
            .redirect(reqwest::redirect::Policy::limited(MAX_BLOB_REDIRECTS))
            .build()
            .map_err(|e| format!("the upstream HTTP client: {e}"))?;
        let mut base = base;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(HttpUpstream {
            base,
            client,
            blob_client,
            username: credentials.username,
            password: credentials.password,
            token: credentials.token,
            tokens: Mutex::default(),
            basic: Default::default(),
        })
    }

    pub(crate) fn base(&self) -> &url::Url {
        &self.base
    }

    /// The client for streamed blob uploads: no total timeout (a large blob
    /// takes long), but connect and read timeouts.
    pub(crate) fn blob_put_client(&self) -> &reqwest::Client {
        &self.blob_client
    }

    /// What authenticates a request under `scope` now (after an earlier
    /// request answered the challenge).
    pub(crate) fn authorization_for(&self, scope: &str) -> Option<String> {
        self.known_authorization(scope)
    }

    pub(crate) fn url(&self, path: &str) -> Result<url::Url, UpstreamError> {
        self.base
            .join(path)
            .map_err(|e| UpstreamError::Failed(format!("cannot build the upstream URL: {e}")))
    }

    /// Sends a request to `path` with what authenticates it, answering one
    /// challenge if the upstream makes one. Returns the answer whatever its
    /// status after that.
    async fn send(
        &self,
        method: Method,
        path: &str,
        repository: &RepoName,
        accept: Option<&str>,
        blob: bool,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = self.url(path)?;
        self.send_to(method, url, &pull_scope(repository), accept, None, blob)
            .await
    }

    /// [`HttpUpstream::send`] to a whole URL (on the upstream's host),
    /// under `scope` (`repository:NAME:pull,push` for writes), with an
    /// optional body and its content type.
    pub(crate) async fn send_to(
        &self,
        method: Method,
        url: url::Url,
        scope: &str,
        accept: Option<&str>,
        body: Option<(&str, bytes::Bytes)>,
        blob: bool,
    ) -> Result<reqwest::Response, UpstreamError> {
        let client = if blob {
            &self.blob_client
        } else {
            &self.client
        };
        let build = |authorization: Option<String>| {
            let mut request = client.request(method.clone(), url.clone());
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(authorization) = authorization {
                request = request.header(AUTHORIZATION, authorization);
            }
            if let Some((content_type, bytes)) = &body {
                request = request
                    .header(CONTENT_TYPE, *content_type)
                    .body(bytes.clone());
            }
            request
        };
        let response = build(self.known_authorization(scope))
            .send()
            .await
            .map_err(|e| UpstreamError::Failed(describe(&e)))?;
        if response.status() != StatusCode::UNAUTHORIZED || self.token.is_some() {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_challenge);
        let authorization = match challenge {
            Some(Challenge::Basic) => {
                self.basic.store(true, std::sync::atomic::Ordering::Relaxed);
                self.basic_authorization().ok_or_else(|| {
                    UpstreamError::Denied(
                        "the upstream asks for credentials; none are configured".into(),
                    )
                })?
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope: asked,
            }) => {
                let scope = asked.unwrap_or_else(|| scope.to_string());
                let token = self.fetch_token(&realm, service.as_deref(), &scope).await?;
                format!("Bearer {token}")
            }
            None => return Ok(response),
        };
        build(Some(authorization))
            .send()
            .await
            .map_err(|e| UpstreamError::Failed(describe(&e)))
    }

    fn basic_authorization(&self) -> Option<String> {
        use base64::Engine;
        let username = self.username.as_deref()?;
        let password = self.password.as_deref().unwrap_or_default();
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        ))
    }

    /// What authenticates a request before any challenge: a live token for
    /// the scope, or Basic credentials for an upstream that asked for them.
    fn known_authorization(&self, scope: &str) -> Option<String> {
        if let Some(token) = &self.token {
            return Some(format!("Bearer {token}"));
        }
        if self.basic.load(std::sync::atomic::Ordering::Relaxed) {
            return self.basic_authorization();
        }
        let tokens = self.tokens.lock().expect("token cache");
        let (token, until) = tokens.get(scope)?;
        (Instant::now() < *until).then(|| format!("Bearer {token}"))
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, UpstreamError> {
        let mut url = url::Url::parse(realm)
            .map_err(|e| UpstreamError::Failed(format!("the upstream's token realm: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UpstreamError::Failed(
                "the upstream's token realm is not http(s)".into(),
            ));
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
        }
        let mut request = self.client.get(url);
        if let Some(authorization) = self.basic_authorization() {
            request = request.header(AUTHORIZATION, authorization);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| UpstreamError::Failed(describe(&e)))?;
        if !response.status().is_success() {
            return Err(match status_error(response.status(), response.headers()) {
                UpstreamError::NotFound => {
                    UpstreamError::Failed("the upstream's token endpoint answered 404".into())
                }
                other => other,
            });
        }
        let body = read_capped(&mut response, MAX_TOKEN_RESPONSE).await?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Failed(format!("the upstream's token answer: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                UpstreamError::Failed("the upstream's token answer has no token".into())
            })?;
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        let mut tokens = self.tokens.lock().expect("token cache");
        if tokens.len() >= MAX_TOKENS {
            tokens.retain(|_, (_, until)| Instant::now() < *until);
            if tokens.len() >= MAX_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(scope.to_string(), (token.clone(), until));
        // A token for pulls and pushes serves pulls too.
        if let Some(pull) = scope
            .strip_suffix(",push")
            .or_else(|| scope.strip_suffix(":push"))
        {
            let pull = if pull.ends_with(":pull") {
                pull.to_string()
            } else {
                format!("{pull}:pull")
            };
            tokens.insert(pull, (token.clone(), until));
        }
        Ok(token)
    }
}

/// The body, or `Failed` when it is longer than `cap`.
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, UpstreamError> {
    if response
        .content_length()
        .is_some_and(|len| len > cap as u64)
    {
        return Err(UpstreamError::Failed(format!(
            "the upstream's answer is larger than the {cap} bytes allowed"
        )));
    }
    let mut body = Vec::new();
    while let Some(piece) = response
        .chunk()
        .await
        .map_err(|e| UpstreamError::Failed(describe(&e)))?
    {
        if body.len() + piece.len() > cap {
            return Err(UpstreamError::Failed(format!(
                "the upstream's answer is larger than the {cap} bytes allowed"
            )));
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

fn pull_scope(repository: &RepoName) -> String {
    format!("repository:{repository}:pull")
}

pub(crate) fn manifest_path(repository: &RepoName, reference: &Reference) -> String {
    let reference = match reference {
        Reference::Tag(tag) => tag.to_string(),
        Reference::Digest(digest) => digest.to_string(),
    };
    format!("v2/{repository}/manifests/{reference}")
}

#[async_trait::async_trait]
impl Upstream for HttpUpstream {
    async fn manifest_digest(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Digest>, UpstreamError> {
        let path = manifest_path(repository, reference);
        let response = self
            .send(
                Method::HEAD,
                &path,
                repository,
                Some(MANIFEST_ACCEPT),
                false,
            )
            .await?;
        if !response.status().is_success() {
            return Err(status_error(response.status(), response.headers()));
        }
        Ok(response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| Digest::parse(value).ok()))
    }

    async fn manifest(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<UpstreamManifest, UpstreamError> {
        let path = manifest_path(repository, reference);
        let mut response = self
            .send(Method::GET, &path, repository, Some(MANIFEST_ACCEPT), false)
            .await?;
        if !response.status().is_success() {
            return Err(status_error(response.status(), response.headers()));
        }
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or(value).trim().to_string())
            .unwrap_or_else(|| media_types::OCI_MANIFEST.to_string());
        let payload = read_capped(&mut response, MAX_MANIFEST_SIZE).await?;
        Ok(UpstreamManifest {
            media_type,
            payload,
        })
    }

    async fn blob_size(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, UpstreamError> {
        let path = format!("v2/{repository}/blobs/{digest}");
        // Without following redirects: a HEAD of a URL presigned for GETs
        // fails, and the caller fetches the blob when we say nothing.
        let response = self
            .send(Method::HEAD, &path, repository, None, false)
            .await?;
        let status = response.status();
        if status.is_redirection() {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(status_error(status, response.headers()));
        }
        let named = response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok());
        if named.is_some_and(|named| named != digest.as_str()) {
            return Err(UpstreamError::Failed(
                "the upstream answered a blob HEAD with another digest".into(),
            ));
        }
        // The header itself: the length of an answer to a HEAD is zero.
        Ok(response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse().ok()))
    }

    async fn blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<UpstreamBlob, UpstreamError> {
        let path = format!("v2/{repository}/blobs/{digest}");
        let response = self
            .send(Method::GET, &path, repository, None, true)
            .await?;
        if !response.status().is_success() {
            return Err(status_error(response.status(), response.headers()));
        }
        let len = response.content_length();
        let stream: ByteStream = Box::pin(futures::stream::unfold(
            Some(response),
            |response| async move {
                let mut response = response?;
                match response.chunk().await {
                    Ok(Some(piece)) => Some((Ok(piece), Some(response))),
                    Ok(None) => None,
                    Err(error) => Some((Err(std::io::Error::other(describe(&error))), None)),
                }
            },
        ));
        Ok(UpstreamBlob { len, stream })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed() {
        let bearer = |realm: &str, service: Option<&str>, scope: Option<&str>| {
            Some(Challenge::Bearer {
                realm: realm.into(),
                service: service.map(Into::into),
                scope: scope.map(Into::into),
            })
        };
        let cases = [
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
                bearer(
                    "https://auth.docker.io/token",
                    Some("registry.docker.io"),
                    Some("repository:library/alpine:pull"),
                ),
            ),
            (
                r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull,push""#,
                bearer(
                    "https://ghcr.io/token",
                    Some("ghcr.io"),
                    Some("repository:a/b:pull,push"),
                ),
            ),
            (
                r#"bearer realm=https://r.example/t, service=reg"#,
                bearer("https://r.example/t", Some("reg"), None),
            ),
            (
                r#"Bearer realm="https://r.example/t\"x""#,
                bearer("https://r.example/t\"x", None, None),
            ),
            (r#"Basic realm="Registry Realm""#, Some(Challenge::Basic)),
            (r#"Bearer service="no realm""#, None),
            ("Negotiate", None),
            ("", None),
        ];
        for (header, expected) in cases {
            assert_eq!(parse_challenge(header), expected, "{header}");
        }
    }

    #[test]
    fn unsuccessful_statuses_become_upstream_errors() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "17".parse().unwrap());
        let cases = [
            (StatusCode::NOT_FOUND, UpstreamError::NotFound),
            (
                StatusCode::TOO_MANY_REQUESTS,
                UpstreamError::TooManyRequests {
                    retry_after: Some(17),
                },
            ),
            (
                StatusCode::FORBIDDEN,
                UpstreamError::Denied("the upstream answered 403 Forbidden".into()),
            ),
            (
                StatusCode::BAD_GATEWAY,
                UpstreamError::Failed("the upstream answered 502 Bad Gateway".into()),
            ),
        ];
        for (status, expected) in cases {
            assert_eq!(status_error(status, &headers), expected, "{status}");
        }
    }
}
