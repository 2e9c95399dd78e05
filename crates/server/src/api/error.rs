//! The management API's errors: one shape, `{"code","message","detail"}`,
//! and the one mapping from domain and auth errors into it.
//!
//! These are not the OCI error codes of `/v2/` (`crate::error`): the API's
//! clients are people's tools and scripts, which branch on a small set of
//! stable codes, each with one status. 5xx details are logged, never sent.

use std::time::Duration;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_auth::admin::AdminError;
use berth_auth::{AuthStoreError, LoginError};
use berth_registry::{Dependency, RegistryError, Unavailability};
use serde::Serialize;
use utoipa::ToSchema;

/// What went wrong, as a client branches on it. Each code has one status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed: a bad name, an unknown field, bad JSON.
    InvalidRequest,
    /// 401: no credentials, wrong ones, or a token that does not grant this.
    Unauthorized,
    /// 403: the caller may not do this.
    Forbidden,
    /// 404: no such path, or no such thing (for callers who may know it exists).
    NotFound,
    /// 405: the path exists, for other methods (named in `Allow`).
    MethodNotAllowed,
    /// 409: the change conflicts with the current state (a name is taken,
    /// a namespace would lose its last owner).
    Conflict,
    /// 413: the request body is larger than the API accepts.
    PayloadTooLarge,
    /// 415: the request body is not `application/json`.
    UnsupportedMediaType,
    /// 429: too many failed logins; retry after `Retry-After` seconds.
    TooManyRequests,
    /// 500: the server failed; details are in its log.
    Internal,
    /// 503: a dependency is unavailable; retry later.
    Unavailable,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// A sentence for people, saying what was wrong and, where it helps,
    /// what to do.
    pub message: String,
    /// Structured facts for programs, or `null`: `scope` (the token scope
    /// to ask `/auth/token` for) on a 401, `retry_after_seconds` on a 429,
    /// `line` and `column` of a JSON syntax error.
    #[schema(value_type = Option<Object>, required = true)]
    pub detail: Option<serde_json::Value>,
}

/// An error answer of the management API.
#[derive(Debug)]
pub struct ManagementError {
    body: ErrorBody,
    /// Headers the answer needs: `WWW-Authenticate`, `Retry-After`, `Allow`.
    headers: Vec<(header::HeaderName, String)>,
    /// The quota refusal this answers, for the registry to record.
    quota_refusal: Option<Box<RegistryError>>,
}

impl ManagementError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ManagementError {
        ManagementError {
            body: ErrorBody {
                code,
                message: message.into(),
                detail: None,
            },
            headers: Vec::new(),
            quota_refusal: None,
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> ManagementError {
        self.body.detail = Some(detail);
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: String) -> ManagementError {
        self.headers.push((name, value));
        self
    }

    /// The refusal over a quota this error answers, if it does.
    pub fn quota_refusal(&self) -> Option<&RegistryError> {
        self.quota_refusal.as_deref()
    }

    pub fn invalid_request(message: impl Into<String>) -> ManagementError {
        ManagementError::new(ErrorCode::InvalidRequest, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ManagementError {
        ManagementError::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> ManagementError {
        ManagementError::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> ManagementError {
        ManagementError::new(ErrorCode::Conflict, message)
    }

    /// A 405 for a path that exists for `allowed` methods.
    pub fn method_not_allowed(allowed: &[Method]) -> ManagementError {
        let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        ManagementError::new(
            ErrorCode::MethodNotAllowed,
            format!("this path accepts {}", allowed.join(", ")),
        )
        .with_header(header::ALLOW, allowed.join(", "))
    }

    /// The one answer of the API when a dependency cannot serve: 503
    /// saying which and why (never hosts or files), with `Retry-After`
    /// when waiting helps (a dependency that does not answer, not a full
    /// disk), as `/v2/` answers.
    pub fn unavailable(dependency: Dependency, reason: Unavailability) -> ManagementError {
        let refusal = ManagementError::new(
            ErrorCode::Unavailable,
            crate::error::unavailable_message(dependency, reason),
        );
        match reason {
            Unavailability::NotAnswering => refusal.with_header(
                header::RETRY_AFTER,
                crate::error::RETRY_AFTER_SECS.to_string(),
            ),
            Unavailability::Full | Unavailability::ReadOnly => refusal,
        }
    }

    /// A 429 after too many failed logins.
    pub fn throttled(wait: Duration) -> ManagementError {
        let seconds = wait.as_secs().max(1);
        ManagementError::new(
            ErrorCode::TooManyRequests,
            "too many failed logins; try again later",
        )
        .with_detail(serde_json::json!({ "retry_after_seconds": seconds }))
        .with_header(header::RETRY_AFTER, seconds.to_string())
    }

    /// A 429 when too many logins are hashing at once (not a failed login).
    pub fn busy(wait: Duration) -> ManagementError {
        let seconds = wait.as_secs().max(1);
        ManagementError::new(
            ErrorCode::TooManyRequests,
            "too many logins at once; try again shortly",
        )
        .with_detail(serde_json::json!({ "retry_after_seconds": seconds }))
        .with_header(header::RETRY_AFTER, seconds.to_string())
    }

    /// A 500 whose cause goes to the log only: it names files, queries and
    /// backends, which are nobody's business outside.
    pub fn internal(cause: &dyn std::fmt::Display) -> ManagementError {
        tracing::error!(error = %cause, "management API request failed");
        ManagementError::new(ErrorCode::Internal, "internal server error")
    }

    pub fn code(&self) -> ErrorCode {
        self.body.code
    }

    pub fn message(&self) -> &str {
        &self.body.message
    }

    pub fn status(&self) -> StatusCode {
        self.body.code.status()
    }
}

impl IntoResponse for ManagementError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(&self.body)).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

// The one mapping from the errors below the API.

impl From<AdminError> for ManagementError {
    fn from(error: AdminError) -> ManagementError {
        match error {
            AdminError::Invalid(e) => ManagementError::invalid_request(e.to_string()),
            AdminError::AlreadyExists(what) => {
                ManagementError::conflict(format!("{what} already exists"))
            }
            AdminError::NotFound(what) => ManagementError::not_found(format!("{what} not found")),
            last_owner @ AdminError::LastOwner { .. } => {
                ManagementError::conflict(last_owner.to_string())
            }
            last_admin @ AdminError::LastAdmin(_) => {
                ManagementError::conflict(last_admin.to_string())
            }
            AdminError::Store(e) => e.into(),
        }
    }
}

impl From<AuthStoreError> for ManagementError {
    fn from(error: AuthStoreError) -> ManagementError {
        match error {
            AuthStoreError::Unavailable(detail) => {
                tracing::warn!(detail, "database unavailable");
                ManagementError::unavailable(Dependency::Database, Unavailability::NotAnswering)
            }
            // The administration layer names who is the last one; the
            // store's own words are the fallback.
            AuthStoreError::LastAdmin | AuthStoreError::LastOwner => {
                ManagementError::conflict(error.to_string())
            }
            // Callers that expect these map them to what they mean first;
            // one reaching here is a fault of the server's.
            AuthStoreError::AlreadyExists
            | AuthStoreError::NotFound
            | AuthStoreError::Backend(_) => ManagementError::internal(&error),
        }
    }
}

impl From<LoginError> for ManagementError {
    fn from(error: LoginError) -> ManagementError {
        match error {
            LoginError::Throttled(wait) => ManagementError::throttled(wait),
            LoginError::Busy(wait) => ManagementError::busy(wait),
            LoginError::InvalidCredentials => {
                ManagementError::new(ErrorCode::Unauthorized, "invalid credentials")
            }
            LoginError::Store(e) => e.into(),
        }
    }
}

impl From<RegistryError> for ManagementError {
    fn from(error: RegistryError) -> ManagementError {
        if error.is_internal() {
            return ManagementError::internal(&error);
        }
        // The details name hosts and files: logged, not sent.
        if let RegistryError::Unavailable {
            dependency, reason, ..
        } = &error
        {
            tracing::warn!(%error, "dependency unavailable");
            return ManagementError::unavailable(*dependency, *reason);
        }
        let code = match crate::error::registry_status(&error).as_u16() {
            400 => ErrorCode::InvalidRequest,
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            413 => ErrorCode::PayloadTooLarge,
            429 => ErrorCode::TooManyRequests,
            503 => ErrorCode::Unavailable,
            // 409, and 416 for an upload another request is writing.
            _ => ErrorCode::Conflict,
        };
        let refusal = ManagementError::new(code, error.to_string());
        match &error {
            // The rule, for clients to say what would have to change.
            RegistryError::ImmutableTag { tag, rule } => refusal
                .with_detail(serde_json::json!({ "tag": tag.as_str(), "immutable_rule": rule })),
            RegistryError::StorageQuotaExceeded(_) | RegistryError::TrafficQuotaExceeded { .. } => {
                ManagementError {
                    quota_refusal: Some(Box::new(error)),
                    ..refusal
                }
            }
            _ => refusal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_auth::AuthError;

    #[test]
    fn domain_errors_map_to_one_code_each() {
        let mut table: Vec<(ManagementError, ErrorCode)> = vec![
            (
                AdminError::Invalid(AuthError::InvalidName("A".into())).into(),
                ErrorCode::InvalidRequest,
            ),
            (
                AdminError::AlreadyExists("user \"a\"".into()).into(),
                ErrorCode::Conflict,
            ),
            (AdminError::NotFound("x".into()).into(), ErrorCode::NotFound),
            (
                AdminError::LastOwner {
                    namespace: "a".into(),
                    user: "a".into(),
                }
                .into(),
                ErrorCode::Conflict,
            ),
            (AuthStoreError::NotFound.into(), ErrorCode::Internal),
            (
                LoginError::Throttled(Duration::from_millis(10)).into(),
                ErrorCode::TooManyRequests,
            ),
            (
                LoginError::Busy(Duration::from_secs(1)).into(),
                ErrorCode::TooManyRequests,
            ),
            (
                LoginError::InvalidCredentials.into(),
                ErrorCode::Unauthorized,
            ),
            (RegistryError::NameUnknown.into(), ErrorCode::NotFound),
            (
                RegistryError::BlobBeingCollected.into(),
                ErrorCode::Unavailable,
            ),
            (
                RegistryError::InvalidParameter("n".into()).into(),
                ErrorCode::InvalidRequest,
            ),
        ];
        let unavailable = ManagementError::from(RegistryError::Unavailable {
            dependency: berth_registry::Dependency::Database,
            reason: berth_registry::Unavailability::NotAnswering,
            detail: "db.internal:5432 refused".into(),
        });
        assert!(
            !unavailable.body.message.contains("db.internal"),
            "the detail stays in the log: {}",
            unavailable.body.message
        );
        let has_retry_after = |error: &ManagementError| {
            error
                .headers
                .iter()
                .any(|(name, _)| *name == header::RETRY_AFTER)
        };
        assert!(
            has_retry_after(&unavailable),
            "a database that does not answer"
        );
        table.push((unavailable, ErrorCode::Unavailable));
        // The auth store's unavailable database: the same answer, once.
        let store_down = ManagementError::from(AuthStoreError::Unavailable(
            "db.internal:5432 refused".into(),
        ));
        assert!(has_retry_after(&store_down));
        assert!(!store_down.body.message.contains("db.internal"));
        table.push((store_down, ErrorCode::Unavailable));
        let login_store_down = ManagementError::from(LoginError::Store(
            AuthStoreError::Unavailable("pool timed out".into()),
        ));
        table.push((login_store_down, ErrorCode::Unavailable));
        let full = ManagementError::from(RegistryError::Unavailable {
            dependency: berth_registry::Dependency::Storage,
            reason: berth_registry::Unavailability::Full,
            detail: "/data: no space".into(),
        });
        assert!(!has_retry_after(&full), "waiting does not empty a disk");
        for (error, code) in table {
            assert_eq!(error.code(), code, "{error:?}");
            assert_eq!(error.status(), code.status());
        }
        let throttled = ManagementError::throttled(Duration::from_millis(10));
        assert_eq!(throttled.body.detail.unwrap()["retry_after_seconds"], 1);
    }
}
