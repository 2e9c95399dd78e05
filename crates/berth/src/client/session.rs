//! Talking to a registry: logging in with a password (once, at `berth
//! login`), and the management API calls of every other command.
//!
//! A command never sends the password: it exchanges the stored refresh
//! token at `POST /auth/token` (`grant_type=refresh_token`) for a registry
//! token carrying the scopes it needs, and when the API answers 401 with
//! `detail.scope` (the token's claim lacks a right the policy would grant)
//! asks again for that scope and retries once, as docker does for `/v2/`.
//! Tokens live minutes and hold only what one command needs.

use std::time::Duration;

use berth_auth::Secret;
use reqwest::blocking::{Client, Response};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::error::{fix_for_status, ClientError};
use super::host::RegistryAddr;

/// The `client_id` the token endpoint logs for this client.
const CLIENT_ID: &str = "berth-cli";

/// How long a request may take before the command gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The token endpoint's answer (the fields this client reads).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// The management API's error body.
#[derive(Deserialize)]
struct ErrorBody {
    message: String,
    #[serde(default)]
    detail: Option<Value>,
}

/// An HTTP client for one registry.
pub struct Http {
    pub addr: RegistryAddr,
    client: Client,
}

impl Http {
    pub fn new(addr: RegistryAddr) -> Result<Http, ClientError> {
        let client = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Local(format!("cannot set up HTTPS: {e}: report this")))?;
        Ok(Http { addr, client })
    }

    fn unreachable(&self, error: reqwest::Error) -> ClientError {
        // The innermost cause says what actually failed (refused, DNS, TLS).
        let mut cause: &dyn std::error::Error = &error;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        ClientError::Unreachable {
            url: self.addr.url.to_string(),
            cause: cause.to_string(),
        }
    }

    /// Logs `user` in with `password` and returns a refresh token.
    pub fn login(&self, user: &str, password: &Secret) -> Result<Secret, ClientError> {
        let form = [
            ("grant_type", "password"),
            ("username", user),
            ("password", password.expose()),
            ("access_type", "offline"),
            ("client_id", CLIENT_ID),
        ];
        let answer = self.token_request(&form, || ClientError::WrongPassword {
            host: self.addr.key.clone(),
            user: user.to_string(),
        })?;
        answer
            .refresh_token
            .map(Secret::new)
            .ok_or_else(|| ClientError::Protocol {
                host: self.addr.key.clone(),
                what: "the login".into(),
                cause: "no refresh token in the answer".into(),
            })
    }

    /// Exchanges `refresh_token` for a registry token with `scopes`.
    pub fn token(&self, refresh_token: &Secret, scopes: &[String]) -> Result<Secret, ClientError> {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", CLIENT_ID),
        ];
        for scope in scopes {
            form.push(("scope", scope.as_str()));
        }
        let answer = self.token_request(&form, || ClientError::LoginExpired {
            host: self.addr.key.clone(),
        })?;
        Ok(Secret::new(answer.access_token))
    }

    fn token_request(
        &self,
        form: &[(&str, &str)],
        refused: impl FnOnce() -> ClientError,
    ) -> Result<TokenAnswer, ClientError> {
        let response = self
            .client
            .post(self.addr.join("/auth/token"))
            .form(form)
            .send()
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        match status {
            StatusCode::OK => self.json(response, "the login"),
            StatusCode::UNAUTHORIZED => Err(refused()),
            StatusCode::BAD_REQUEST => {
                // `invalid_grant` is how OAuth2 servers may refuse a refresh
                // token; any other 400 names what was wrong with the form.
                let body: Value = response.json().unwrap_or(Value::Null);
                match body["error"].as_str() {
                    Some("invalid_grant") | None => Err(refused()),
                    Some(code) => Err(ClientError::Api {
                        host: self.addr.key.clone(),
                        status: status.as_u16(),
                        message: body["error_description"]
                            .as_str()
                            .unwrap_or(code)
                            .to_string(),
                        fix: fix_for_status(status.as_u16()).into(),
                    }),
                }
            }
            StatusCode::NOT_FOUND => Err(ClientError::NoAccessControl {
                host: self.addr.key.clone(),
            }),
            _ => Err(self.api_error(response, "the login")),
        }
    }

    fn json<T: DeserializeOwned>(&self, response: Response, what: &str) -> Result<T, ClientError> {
        let text = response.text().map_err(|e| self.unreachable(e))?;
        serde_json::from_str(&text).map_err(|e| ClientError::Protocol {
            host: self.addr.key.clone(),
            what: what.into(),
            cause: e.to_string(),
        })
    }

    /// The error a refusal or failure of the API becomes.
    fn api_error(&self, response: Response, what: &str) -> ClientError {
        let status = response.status().as_u16();
        let body: Option<ErrorBody> = response.json().ok();
        let Some(body) = body else {
            return ClientError::Protocol {
                host: self.addr.key.clone(),
                what: what.into(),
                cause: format!("HTTP {status} without the API's error body"),
            };
        };
        // An unknown path or method means the registry predates the
        // endpoint, not that the thing named is missing.
        if status == 405 || (status == 404 && body.message == "no such API path") {
            return ClientError::Unsupported {
                host: self.addr.key.clone(),
                what: what.into(),
                status,
            };
        }
        // A refusal by an immutable-tag rule is not about the caller's
        // rights: the rule, not a role, would have to change.
        let immutable = body
            .detail
            .as_ref()
            .and_then(|detail| detail["immutable_rule"].as_str());
        let fix = match immutable {
            Some(rule) => format!(
                "push under a new tag, or remove the rule first (berth immutable rm {rule})"
            ),
            None => fix_for_status(status).into(),
        };
        ClientError::Api {
            host: self.addr.key.clone(),
            status,
            message: body.message,
            fix,
        }
    }
}

/// A logged-in conversation with one registry's management API.
pub struct Session {
    pub http: Http,
    refresh_token: Secret,
    /// The current registry token and the scopes it was asked for.
    token: Option<(Vec<String>, Secret)>,
}

impl Session {
    pub fn new(http: Http, refresh_token: Secret) -> Session {
        Session {
            http,
            refresh_token,
            token: None,
        }
    }

    /// A token for `scopes`, reusing the current one when it was asked for
    /// the same scopes.
    fn token_for(&mut self, scopes: &[String]) -> Result<Secret, ClientError> {
        if let Some((asked, token)) = &self.token {
            if asked == scopes {
                return Ok(token.clone());
            }
        }
        let token = self.http.token(&self.refresh_token, scopes)?;
        self.token = Some((scopes.to_vec(), token.clone()));
        Ok(token)
    }

    /// Checks that the refresh token still works.
    pub fn check(&mut self) -> Result<(), ClientError> {
        self.token_for(&[]).map(drop)
    }

    /// Calls `method path` with `body`, under a token for `scopes`, and
    /// returns the answer's JSON (`Value::Null` for an empty answer).
    /// `what` names the operation in errors ("listing namespaces").
    pub fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        scopes: &[String],
        what: &str,
    ) -> Result<Value, ClientError> {
        let mut scopes = scopes.to_vec();
        let mut retried = false;
        loop {
            let token = self.token_for(&scopes)?;
            let mut request = self
                .http
                .client
                .request(method.clone(), self.http.addr.join(path))
                .bearer_auth(token.expose());
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().map_err(|e| self.http.unreachable(e))?;
            let status = response.status();
            if status.is_success() {
                let text = response.text().map_err(|e| self.http.unreachable(e))?;
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_str(&text).map_err(|e| ClientError::Protocol {
                    host: self.http.addr.key.clone(),
                    what: what.into(),
                    cause: e.to_string(),
                });
            }
            if status == StatusCode::UNAUTHORIZED && !retried {
                let text = response.text().unwrap_or_default();
                let needed = serde_json::from_str::<ErrorBody>(&text)
                    .ok()
                    .and_then(|body| body.detail)
                    .and_then(|detail| detail["scope"].as_str().map(str::to_string));
                if let Some(needed) = needed {
                    // Ask for what was named on top of what was asked, once.
                    for scope in needed.split(' ').filter(|s| !s.is_empty()) {
                        if !scopes.iter().any(|s| s == scope) {
                            scopes.push(scope.to_string());
                        }
                    }
                    retried = true;
                    continue;
                }
                return Err(ClientError::Api {
                    host: self.http.addr.key.clone(),
                    status: 401,
                    message: serde_json::from_str::<ErrorBody>(&text)
                        .map(|b| b.message)
                        .unwrap_or_else(|_| "unauthorized".into()),
                    fix: fix_for_status(401).into(),
                });
            }
            return Err(self.http.api_error(response, what));
        }
    }

    /// [`Session::call`] and the answer parsed into `T`.
    pub fn call_as<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        scopes: &[String],
        what: &str,
    ) -> Result<T, ClientError> {
        let value = self.call(method, path, body, scopes, what)?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol {
            host: self.http.addr.key.clone(),
            what: what.into(),
            cause: e.to_string(),
        })
    }

    /// Every item of a paged listing: `GET path` (with or without its own
    /// query) a page of [`PAGE_SIZE`] at a time, following `next_cursor`
    /// to the last page, gathering each page's array `key` as `T`s.
    /// Bounded by [`MAX_PAGES`], far beyond any registry's listing.
    pub fn all_pages<T: DeserializeOwned>(
        &mut self,
        path: &str,
        key: &str,
        scopes: &[String],
        what: &str,
    ) -> Result<Vec<T>, ClientError> {
        let joiner = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut page_path = format!("{path}{joiner}limit={PAGE_SIZE}");
            if let Some(cursor) = &cursor {
                page_path.push_str(&format!("&cursor={}", segment(cursor)));
            }
            let mut page = self.call(Method::GET, &page_path, None, scopes, what)?;
            let list = page.get_mut(key).map(Value::take).unwrap_or_default();
            let list: Vec<T> = serde_json::from_value(list).map_err(|e| ClientError::Protocol {
                host: self.http.addr.key.clone(),
                what: what.into(),
                cause: format!("{key}: {e}"),
            })?;
            items.extend(list);
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        Ok(items)
    }
}

/// The page size [`Session::all_pages`] asks for (the API's largest).
pub const PAGE_SIZE: usize = 1000;
/// The most pages [`Session::all_pages`] reads.
pub const MAX_PAGES: usize = 10_000;

/// Percent-encodes one path segment (names are validated by the server;
/// this keeps a stray `/` or `?` from changing the path).
pub fn segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
