//! The edges of the token protocol, as plain strings in and out (the server
//! moves them in and out of HTTP):
//!
//! - [`Challenge`]: the `WWW-Authenticate` value of a 401 (or 403) from `/v2/`.
//! - [`Credentials`]: an `Authorization` header (`Basic` or `Bearer`).
//! - [`TokenGetRequest`]: the token endpoint's GET query (`service`, repeated
//!   `scope`, `account`, `client_id`, `offline_token`), as docker, podman,
//!   containerd and skopeo send it.
//! - [`TokenPostRequest`]: the OAuth2 form (`grant_type=password|refresh_token`),
//!   which `docker login` uses to obtain a refresh ("identity") token.
//! - [`TokenResponse`]: the JSON answer of both.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use crate::error::AuthError;
use crate::jwt::IssuedToken;
use crate::model::Secret;
use crate::scope::Scope;

/// The RFC 6750 error of a bearer challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeError {
    /// The token was malformed, expired or not ours: get a new one.
    InvalidToken,
    /// The token is fine but does not grant what this request needs.
    InsufficientScope,
}

impl ChallengeError {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeError::InvalidToken => "invalid_token",
            ChallengeError::InsufficientScope => "insufficient_scope",
        }
    }
}

/// A `Bearer` challenge: where to get a token, for which service and scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The token endpoint's absolute URL, e.g. `https://registry.example/token`.
    pub realm: String,
    pub service: String,
    /// What the failed request needed; clients ask the token endpoint for it.
    pub scopes: Vec<Scope>,
    pub error: Option<ChallengeError>,
}

impl Challenge {
    pub fn bearer(realm: impl Into<String>, service: impl Into<String>) -> Challenge {
        Challenge {
            realm: realm.into(),
            service: service.into(),
            scopes: Vec::new(),
            error: None,
        }
    }

    pub fn with_scope(mut self, scope: Scope) -> Challenge {
        self.scopes.push(scope);
        self
    }

    pub fn with_error(mut self, error: ChallengeError) -> Challenge {
        self.error = Some(error);
        self
    }

    /// The header value: `Bearer realm="…",service="…",scope="…",error="…"`.
    /// Several scopes are joined by spaces inside one `scope` parameter.
    pub fn render(&self) -> String {
        let mut out = format!(
            "Bearer realm={},service={}",
            quote(&self.realm),
            quote(&self.service)
        );
        if !self.scopes.is_empty() {
            let scopes: Vec<String> = self.scopes.iter().map(Scope::to_string).collect();
            out.push_str(&format!(",scope={}", quote(&scopes.join(" "))));
        }
        if let Some(error) = self.error {
            out.push_str(&format!(",error={}", quote(error.as_str())));
        }
        out
    }
}

/// A `Basic` challenge, for `/v2/` when a client should send a password
/// directly (the token flow is the default; this is for simple clients).
pub fn basic_challenge(realm: &str) -> String {
    format!("Basic realm={}", quote(realm))
}

/// An HTTP quoted-string: `"` and `\` are backslash-escaped.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Credentials from an `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

impl Credentials {
    /// Parses an `Authorization` header value; `None` when it is neither a
    /// well-formed `Basic` nor `Bearer` credential (the caller answers 401).
    pub fn parse(header: &str) -> Option<Credentials> {
        let (scheme, rest) = header.trim().split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD.decode(rest).ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (username, password) = decoded.split_once(':')?;
            if username.is_empty() {
                return None;
            }
            Some(Credentials::Basic {
                username: username.to_string(),
                password: Secret::new(password),
            })
        } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() && !rest.contains(' ') {
            Some(Credentials::Bearer(Secret::new(rest)))
        } else {
            None
        }
    }
}

/// Most scopes one token request may ask for, counted after splitting
/// space-separated lists. One operation needs a few (a push with mounts:
/// the target and a source or two); the cap bounds the lookups a request
/// costs and, with repository names at most 255 bytes, the token's size.
pub const MAX_SCOPES: usize = 32;

/// Adds the scopes of one `scope` value, refusing to go past [`MAX_SCOPES`].
fn add_scopes(scopes: &mut Vec<Scope>, value: &str) -> Result<(), AuthError> {
    for scope in Scope::parse_list(value)? {
        if scopes.len() == MAX_SCOPES {
            return Err(AuthError::TooManyScopes(MAX_SCOPES));
        }
        scopes.push(scope);
    }
    Ok(())
}

/// The token endpoint's GET request. Credentials come separately, from the
/// `Authorization` header; `account` is only a hint and must match them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TokenGetRequest {
    pub service: Option<String>,
    /// Every `scope` parameter, each of which may hold several space-separated scopes.
    pub scopes: Vec<Scope>,
    pub account: Option<String>,
    pub client_id: Option<String>,
    /// `offline_token=true`: the client wants a refresh token too.
    pub offline_token: bool,
}

impl TokenGetRequest {
    /// Parses the query string (without `?`). Unknown parameters are ignored;
    /// a malformed scope is an error (400), as in Distribution.
    pub fn parse(query: &str) -> Result<TokenGetRequest, AuthError> {
        let pairs = form_pairs(query)?;
        let mut request = TokenGetRequest::default();
        for (key, value) in pairs {
            match key.as_str() {
                "service" => request.service = Some(value),
                "scope" => add_scopes(&mut request.scopes, &value)?,
                "account" => request.account = Some(value),
                "client_id" => request.client_id = Some(value),
                "offline_token" => request.offline_token = value == "true",
                _ => {}
            }
        }
        Ok(request)
    }
}

/// How the client proves who it is in the OAuth2 form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    Password { username: String, password: Secret },
    RefreshToken { refresh_token: Secret },
}

/// The token endpoint's OAuth2 POST request
/// (`application/x-www-form-urlencoded`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPostRequest {
    pub grant: Grant,
    pub service: Option<String>,
    /// Required by the spec; docker sends `docker`. Kept for logs only, and
    /// optional here because some clients omit it.
    pub client_id: Option<String>,
    pub scopes: Vec<Scope>,
    /// `access_type=offline`: with the password grant, issue a refresh
    /// token; with the refresh grant, rotate the presented one (the answer
    /// carries its successor, and it stops working).
    pub offline: bool,
}

impl TokenPostRequest {
    pub fn parse(body: &str) -> Result<TokenPostRequest, AuthError> {
        let mut fields = std::collections::HashMap::new();
        let mut scopes = Vec::new();
        for (key, value) in form_pairs(body)? {
            if key == "scope" {
                add_scopes(&mut scopes, &value)?;
            } else {
                // The first value of a repeated field wins.
                fields.entry(key).or_insert(value);
            }
        }
        let mut take = |name: &str| fields.remove(name);
        let required = |value: Option<String>, name: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| AuthError::InvalidRequest(format!("missing {name}")))
        };
        let grant_type = required(take("grant_type"), "grant_type")?;
        let grant = match grant_type.as_str() {
            "password" => Grant::Password {
                username: required(take("username"), "username")?,
                password: Secret::new(required(take("password"), "password")?),
            },
            "refresh_token" => Grant::RefreshToken {
                refresh_token: Secret::new(required(take("refresh_token"), "refresh_token")?),
            },
            other => return Err(AuthError::UnsupportedGrantType(other.to_string())),
        };
        let offline = take("access_type").as_deref() == Some("offline");
        Ok(TokenPostRequest {
            grant,
            service: take("service"),
            client_id: take("client_id"),
            scopes,
            offline,
        })
    }
}

fn form_pairs(input: &str) -> Result<Vec<(String, String)>, AuthError> {
    serde_urlencoded::from_str(input).map_err(|e| AuthError::InvalidRequest(e.to_string()))
}

/// The token endpoint's JSON answer. `token` and `access_token` carry the same
/// JWT: the GET spec names the first, OAuth2 the second, and clients read either.
/// No `Debug`, so it cannot be logged whole.
#[derive(Clone, Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    pub expires_in: i64,
    /// RFC 3339.
    pub issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl TokenResponse {
    pub fn new(issued: &IssuedToken, refresh_token: Option<&Secret>) -> TokenResponse {
        TokenResponse {
            token: issued.token.expose().to_string(),
            access_token: issued.token.expose().to_string(),
            expires_in: issued.expires_in.whole_seconds(),
            issued_at: issued.issued_at.format(&Rfc3339).unwrap_or_default(),
            refresh_token: refresh_token.map(|s| s.expose().to_string()),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a token response always serializes")
    }
}

/// The OAuth2 error code for a token-endpoint failure (RFC 6749 §5.2), for the
/// `{"error": …}` body of a 400/401 answer to the POST form.
pub fn oauth_error_code(error: &AuthError) -> &'static str {
    match error {
        AuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
        AuthError::InvalidScope(_) | AuthError::TooManyScopes(_) => "invalid_scope",
        AuthError::Token(_) => "invalid_grant",
        _ => "invalid_request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Duration, OffsetDateTime};

    #[test]
    fn challenge_rendering() {
        let base = Challenge::bearer("https://reg.example/token", "reg.example");
        assert_eq!(
            base.render(),
            r#"Bearer realm="https://reg.example/token",service="reg.example""#
        );
        let scoped = base
            .clone()
            .with_scope(Scope::repository("team-a/api", &["pull", "push"]));
        assert_eq!(
            scoped.render(),
            r#"Bearer realm="https://reg.example/token",service="reg.example",scope="repository:team-a/api:pull,push""#
        );
        let insufficient = scoped
            .with_scope(Scope::repository("team-b/base", &["pull"]))
            .with_error(ChallengeError::InsufficientScope);
        assert_eq!(
            insufficient.render(),
            r#"Bearer realm="https://reg.example/token",service="reg.example",scope="repository:team-a/api:pull,push repository:team-b/base:pull",error="insufficient_scope""#
        );
        let catalog = base
            .clone()
            .with_scope(Scope::catalog())
            .with_error(ChallengeError::InvalidToken);
        assert!(catalog
            .render()
            .ends_with(r#"scope="registry:catalog:*",error="invalid_token""#));
        let odd = Challenge::bearer(r#"https://x/"t\"#, "s");
        assert_eq!(
            odd.render(),
            r#"Bearer realm="https://x/\"t\\",service="s""#
        );
        assert_eq!(basic_challenge("berth"), r#"Basic realm="berth""#);
    }

    #[test]
    fn authorization_headers() {
        let basic = |s: &str| format!("Basic {}", STANDARD.encode(s));
        let table: &[(String, Option<Credentials>)] = &[
            (
                basic("alice:s3cret"),
                Some(Credentials::Basic {
                    username: "alice".into(),
                    password: Secret::new("s3cret"),
                }),
            ),
            (
                basic("ci:pass:with:colons"),
                Some(Credentials::Basic {
                    username: "ci".into(),
                    password: Secret::new("pass:with:colons"),
                }),
            ),
            (
                basic("alice:"),
                Some(Credentials::Basic {
                    username: "alice".into(),
                    password: Secret::new(""),
                }),
            ),
            (
                format!("basic  {}", STANDARD.encode("a:b")),
                Some(Credentials::Basic {
                    username: "a".into(),
                    password: Secret::new("b"),
                }),
            ),
            (
                "Bearer abc.def.ghi".into(),
                Some(Credentials::Bearer(Secret::new("abc.def.ghi"))),
            ),
            (
                "bearer abc".into(),
                Some(Credentials::Bearer(Secret::new("abc"))),
            ),
            (basic(":nouser"), None),
            (basic("nocolon"), None),
            ("Basic !!!".into(), None),
            ("Bearer ".into(), None),
            ("Bearer a b".into(), None),
            ("Digest x".into(), None),
            ("Basic".into(), None),
            ("".into(), None),
        ];
        for (header, expected) in table {
            assert_eq!(Credentials::parse(header), *expected, "{header:?}");
        }
        let parsed = Credentials::parse(&basic("alice:s3cret")).unwrap();
        assert!(!format!("{parsed:?}").contains("s3cret"));
    }

    #[test]
    fn get_requests() {
        let request = TokenGetRequest::parse(
            "account=alice&client_id=docker&offline_token=true&service=reg.example\
             &scope=repository%3Ateam-a%2Fapi%3Apull%2Cpush&scope=repository:team-b/base:pull%20registry:catalog:*&x=1",
        )
        .unwrap();
        assert_eq!(request.service.as_deref(), Some("reg.example"));
        assert_eq!(request.account.as_deref(), Some("alice"));
        assert_eq!(request.client_id.as_deref(), Some("docker"));
        assert!(request.offline_token);
        let scopes: Vec<String> = request.scopes.iter().map(Scope::to_string).collect();
        assert_eq!(
            scopes,
            [
                "repository:team-a/api:pull,push",
                "repository:team-b/base:pull",
                "registry:catalog:*"
            ]
        );
        assert_eq!(
            TokenGetRequest::parse("").unwrap(),
            TokenGetRequest::default()
        );
        assert!(TokenGetRequest::parse("scope=bogus").is_err());
    }

    #[test]
    fn scope_count_is_capped() {
        let scopes = |count: usize, per_parameter: usize| -> String {
            let names: Vec<String> = (0..count)
                .map(|n| format!("repository:team/r{n}:pull"))
                .collect();
            names
                .chunks(per_parameter)
                .map(|chunk| format!("scope={}", chunk.join("%20")))
                .collect::<Vec<_>>()
                .join("&")
        };
        for per_parameter in [1, 5, 40] {
            let within = TokenGetRequest::parse(&scopes(MAX_SCOPES, per_parameter)).unwrap();
            assert_eq!(within.scopes.len(), MAX_SCOPES);
            let over = TokenGetRequest::parse(&scopes(MAX_SCOPES + 1, per_parameter)).unwrap_err();
            assert!(matches!(over, AuthError::TooManyScopes(MAX_SCOPES)));
            assert!(over.to_string().contains("at most 32 scopes"), "{over}");
            let form = format!(
                "grant_type=password&username=a&password=b&{}",
                scopes(MAX_SCOPES + 1, per_parameter)
            );
            let over = TokenPostRequest::parse(&form).unwrap_err();
            assert_eq!(oauth_error_code(&over), "invalid_scope");
        }
    }

    #[test]
    fn post_requests() {
        let request = TokenPostRequest::parse(
            "grant_type=password&username=alice&password=p%40ss&service=reg.example&client_id=docker\
             &access_type=offline&scope=repository%3Ateam-a%2Fapi%3Apull+repository%3Ateam-b%2Fx%3Apush",
        )
        .unwrap();
        assert_eq!(
            request.grant,
            Grant::Password {
                username: "alice".into(),
                password: Secret::new("p@ss")
            }
        );
        assert!(request.offline);
        assert_eq!(request.scopes.len(), 2);
        assert_eq!(request.client_id.as_deref(), Some("docker"));

        let refresh = TokenPostRequest::parse(
            "grant_type=refresh_token&refresh_token=berth_rt_x&service=s&access_type=offline",
        )
        .unwrap();
        assert_eq!(
            refresh.grant,
            Grant::RefreshToken {
                refresh_token: Secret::new("berth_rt_x")
            }
        );
        assert!(
            refresh.offline,
            "offline with a refresh grant asks for the token's rotation"
        );
        assert!(refresh.scopes.is_empty());

        let errors: &[(&str, &str)] = &[
            ("username=a&password=b", "invalid_request"),
            ("grant_type=password&username=a", "invalid_request"),
            ("grant_type=password&password=b", "invalid_request"),
            ("grant_type=refresh_token", "invalid_request"),
            (
                "grant_type=authorization_code&code=x",
                "unsupported_grant_type",
            ),
            (
                "grant_type=password&username=a&password=b&scope=nonsense",
                "invalid_scope",
            ),
        ];
        for (body, code) in errors {
            let error = TokenPostRequest::parse(body).unwrap_err();
            assert_eq!(oauth_error_code(&error), *code, "{body}");
        }
    }

    #[test]
    fn responses() {
        let issued = IssuedToken {
            token: Secret::new("a.b.c"),
            expires_in: Duration::minutes(5),
            issued_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
        };
        let json: serde_json::Value =
            serde_json::from_str(&TokenResponse::new(&issued, None).to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"token": "a.b.c", "access_token": "a.b.c", "expires_in": 300, "issued_at": "2027-01-15T08:00:00Z"})
        );
        let with_refresh = TokenResponse::new(&issued, Some(&Secret::new("berth_rt_x")));
        assert!(with_refresh
            .to_json()
            .contains(r#""refresh_token":"berth_rt_x""#));
    }
}
