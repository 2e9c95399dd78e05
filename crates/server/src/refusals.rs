//! Refused requests into the audit trail: every answer 403, and every
//! answer 401 to a request that presented credentials (a wrong password,
//! an expired or forged token), on any surface. A 401 without credentials
//! is the first step of every client's login (the challenge), not a
//! refusal worth recording.
//!
//! The record names the user the credentials claimed (Basic), marked as
//! claimed in its detail, since a refused request proved nothing; the
//! client's address as resolved through trusted proxies; the method and
//! path; and the status. Records are buffered by the registry and written
//! in batches (`Registry::record_access`), so refusals cost no write each.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use berth_registry::NewAuditRecord;

use crate::origin::ClientOrigin;
use crate::AppState;

/// What credentials a request presented: their kind and the name claimed.
fn credentials(headers: &HeaderMap) -> (&'static str, Option<String>) {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return ("none", None);
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let user = STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.split_once(':').map(|(user, _)| user.to_string()))
            .filter(|user| !user.is_empty() && user.len() <= 255);
        ("basic", user)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        ("bearer", None)
    } else {
        ("other", None)
    }
}

/// The namespace a path is about, when it says: `/v2/NS/…` and
/// `/api/v1/namespaces/NS…`.
fn namespace_of(path: &str) -> Option<String> {
    let rest = path
        .strip_prefix("/v2/")
        .filter(|rest| rest.contains('/'))
        .or_else(|| path.strip_prefix("/api/v1/namespaces/"))?;
    let namespace = rest.split('/').next()?;
    (!namespace.is_empty() && namespace.len() <= 255).then(|| namespace.to_string())
}

/// Records the request in the audit trail when it was refused.
pub async fn audit_refusals(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.auth.is_none() {
        // Without access control nothing is refused for who the caller is.
        return next.run(request).await;
    }
    let (kind, claimed) = credentials(request.headers());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let address = request
        .extensions()
        .get::<ClientOrigin>()
        .and_then(|origin| origin.address);
    let response = next.run(request).await;
    let status = response.status();
    let refused =
        status == StatusCode::FORBIDDEN || (status == StatusCode::UNAUTHORIZED && kind != "none");
    if refused {
        state.registry.record_access(NewAuditRecord {
            at: time::OffsetDateTime::now_utc().unix_timestamp(),
            actor_kind: if claimed.is_some() {
                "user"
            } else {
                "anonymous"
            }
            .to_string(),
            actor_name: claimed,
            actor_address: address.map(|a| a.to_string()),
            action: "request.refused".to_string(),
            namespace: namespace_of(&path),
            resource: Some(format!("{method} {}", truncate(&path, 1024))),
            outcome: format!("refused {}", status.as_u16()),
            // The name, if any, is what the credentials claimed.
            detail: serde_json::json!({ "credentials": kind, "status": status.as_u16() }),
            event_position: None,
        });
    }
    response
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_namespace() {
        for (path, namespace) in [
            ("/v2/team-a/app/manifests/v1", Some("team-a")),
            ("/v2/", None),
            ("/v2/_catalog", None),
            ("/api/v1/namespaces/team-a/members", Some("team-a")),
            ("/api/v1/namespaces/team-a", Some("team-a")),
            ("/api/v1/users", None),
        ] {
            assert_eq!(namespace_of(path).as_deref(), namespace, "{path}");
        }
    }

    #[test]
    fn basic_credentials_name_their_user() {
        let mut headers = HeaderMap::new();
        assert_eq!(credentials(&headers), ("none", None));
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode("alice:wrong"))
                .parse()
                .unwrap(),
        );
        assert_eq!(credentials(&headers), ("basic", Some("alice".to_string())));
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(credentials(&headers), ("bearer", None));
    }
}
