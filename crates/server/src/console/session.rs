//! Console sessions: the cookie, what it stands for, and the checks every
//! form's POST passes.
//!
//! Signing in checks the password exactly as Basic authentication does
//! ([`crate::access::login`]: the same accounts, the same throttle, the same
//! hashing pool). It stores a session ([`berth_auth::store::SessionRecord`])
//! whose secret only the cookie holds; the database keeps its SHA-256. On
//! each request the cookie's session must be live (not signed out, within
//! its idle and absolute limits) and its user still enabled, read anew
//! ([`crate::access::principal_for_subject`]), so disabling or deleting a
//! user ends their sessions at once, on every node.
//!
//! CSRF: every form carries the session's token (derived from the secret,
//! [`berth_auth::secret::session_csrf_token`]) and every POST must come from
//! this site: `Sec-Fetch-Site` when the browser sends it, else `Origin`
//! against `Host`. The cookie is `SameSite=Strict` besides.

use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use berth_auth::secret::{looks_like_session_secret, session_csrf_matches, session_csrf_token};
use berth_auth::store::{issue_session, SessionRecord};
use berth_auth::{Principal, SecretHash};
use time::{Duration, OffsetDateTime};

use crate::access::{origin_of, principal_for_subject, AuthState};
use crate::api::error::ManagementError;

/// The cookie's name.
pub const COOKIE: &str = "berth_session";

/// A session not used for this long is over: a browser left open on a
/// shared machine does not stay signed in overnight.
pub const IDLE_LIMIT: Duration = Duration::hours(8);

/// However busy, a session ends this long after sign-in.
pub const ABSOLUTE_LIMIT: Duration = Duration::days(7);

/// The live session a request presented.
#[derive(Clone, Debug)]
pub struct Session {
    /// The cookie's secret, from which the CSRF token is derived. Never
    /// logged (only its hash is stored).
    secret: String,
    pub hash: SecretHash,
    pub user: String,
}

impl Session {
    /// The token every form of this session carries.
    pub fn csrf_token(&self) -> String {
        session_csrf_token(&self.secret)
    }

    /// Whether `presented` is this session's CSRF token.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        session_csrf_matches(&self.secret, presented)
    }
}

/// The session cookie's secret, if the request carries one shaped like it.
fn cookie_secret(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && looks_like_session_secret(value))
        .map(|(_, value)| value.to_string())
}

/// The caller a request's cookie stands for: a live session and its
/// enabled user, or nobody (no cookie, an unknown, expired or signed-out
/// session, a disabled or deleted user), who is then anonymous.
pub async fn resume(
    auth: &AuthState,
    parts: &Parts,
) -> Result<Option<(Session, Principal)>, ManagementError> {
    let Some(secret) = cookie_secret(parts) else {
        return Ok(None);
    };
    let hash = SecretHash::of(&secret);
    let now = OffsetDateTime::now_utc();
    let Some(record) = auth.store.get_session(&hash).await? else {
        return Ok(None);
    };
    if !record.is_live(now, IDLE_LIMIT) {
        return Ok(None);
    }
    let principal = principal_for_subject(auth.store.as_ref(), &auth.policy, &record.user, now)
        .await?
        .filter(|principal| matches!(principal, Principal::User { .. }));
    let Some(principal) = principal else {
        return Ok(None);
    };
    auth.store.touch_session(&hash, now).await?;
    Ok(Some((
        Session {
            secret,
            hash,
            user: record.user,
        },
        principal,
    )))
}

/// Starts a session for `user` and returns the `Set-Cookie` value that
/// hands it to the browser.
pub async fn start(
    auth: &AuthState,
    parts: &Parts,
    user: &str,
) -> Result<HeaderValue, ManagementError> {
    let now = OffsetDateTime::now_utc();
    let (secret, record): (_, SessionRecord) = issue_session(user, now, ABSOLUTE_LIMIT);
    auth.store.create_session(record, now - IDLE_LIMIT).await?;
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        secret.expose(),
        ABSOLUTE_LIMIT.whole_seconds(),
        secure_attribute(auth, parts)
    );
    HeaderValue::from_str(&cookie).map_err(|e| ManagementError::internal(&e))
}

/// Signs the session out and returns the `Set-Cookie` value that removes
/// the cookie.
pub async fn end(
    auth: &AuthState,
    parts: &Parts,
    session: &Session,
) -> Result<HeaderValue, ManagementError> {
    match auth
        .store
        .revoke_session(&session.hash, OffsetDateTime::now_utc())
        .await
    {
        // Gone already (its user was deleted): signed out all the same.
        Err(berth_auth::AuthStoreError::NotFound) | Ok(()) => {}
        Err(other) => return Err(other.into()),
    }
    Ok(removal(auth, parts))
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn removal(auth: &AuthState, parts: &Parts) -> HeaderValue {
    let cookie = format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        secure_attribute(auth, parts)
    );
    HeaderValue::from_str(&cookie).unwrap_or(HeaderValue::from_static("berth_session=; Max-Age=0"))
}

/// `; Secure` when the browser reached the server over HTTPS (directly or
/// through a trusted proxy), so the cookie never travels in clear.
fn secure_attribute(auth: &AuthState, parts: &Parts) -> &'static str {
    if origin_of(parts).https(auth.tls) {
        "; Secure"
    } else {
        ""
    }
}

/// Whether a POST comes from a page of this site: the browser's
/// `Sec-Fetch-Site` says `same-origin`, or, from browsers that do not send
/// it, `Origin` names this host. A request with neither is refused: every
/// browser that runs the console sends one of them with a form.
pub fn same_site(parts: &Parts) -> bool {
    let mut sites = parts.headers.get_all("sec-fetch-site").iter();
    if let Some(site) = sites.next() {
        // One value, and that one: a second would be no browser's.
        return site.as_bytes() == b"same-origin" && sites.next().is_none();
    }
    let Some(origin) = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return false;
    };
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let expected = origin_of(parts).host;
    matches!((host, expected.as_deref()), (Some(host), Some(expected)) if host == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::builder().uri("/sign-out").method("POST");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn posts_must_come_from_this_site() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("sec-fetch-site", "same-origin")], true),
            (&[("sec-fetch-site", "cross-site")], false),
            (&[("sec-fetch-site", "same-site")], false),
            (&[("sec-fetch-site", "none")], false),
            (
                &[
                    ("host", "registry.example"),
                    ("origin", "https://registry.example"),
                ],
                true,
            ),
            (
                &[
                    ("host", "registry.example"),
                    ("origin", "https://evil.example"),
                ],
                false,
            ),
            (&[("host", "registry.example"), ("origin", "null")], false),
            (&[("host", "registry.example")], false),
            // The browser's own word wins over a matching Origin.
            (
                &[
                    ("host", "registry.example"),
                    ("origin", "https://registry.example"),
                    ("sec-fetch-site", "cross-site"),
                ],
                false,
            ),
        ];
        for (headers, expected) in cases {
            assert_eq!(same_site(&parts(headers)), *expected, "{headers:?}");
        }
    }

    #[test]
    fn only_cookies_shaped_like_a_session_are_read() {
        let (secret, _) = berth_auth::secret::generate_session_secret();
        let cookie = format!("theme=dark; {COOKIE}={}; other=1", secret.expose());
        assert_eq!(
            cookie_secret(&parts(&[("cookie", &cookie)])).as_deref(),
            Some(secret.expose())
        );
        for cookie in [
            format!("{COOKIE}=berth_cs_short"),
            format!("{COOKIE}=berth_at_{}", "a".repeat(43)),
            format!("x{COOKIE}={}", secret.expose()),
        ] {
            assert_eq!(
                cookie_secret(&parts(&[("cookie", &cookie)])),
                None,
                "{cookie}"
            );
        }
    }
}
