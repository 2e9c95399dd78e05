//! The one place where errors become HTTP responses.
//!
//! Every failure a handler returns is an [`ApiError`]: a spec error code, a
//! status and a message. 5xx details are logged here and replaced by a
//! generic message, so nothing about the server's internals leaks.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_oci::ErrorCode;
use berth_registry::{Dependency, RegistryError, Unavailability};

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    code: Option<ErrorCode>,
    status: StatusCode,
    message: String,
    /// Extra headers (such as `Range` on a 416 for an upload).
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        let status = StatusCode::from_u16(code.default_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            code: Some(code),
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn name_invalid(detail: String) -> ApiError {
        ApiError::new(
            ErrorCode::NameInvalid,
            format!("invalid repository name: {detail}"),
        )
    }

    pub fn digest_invalid(detail: String) -> ApiError {
        ApiError::new(
            ErrorCode::DigestInvalid,
            format!("invalid digest: {detail}"),
        )
    }

    pub fn manifest_invalid_reference(detail: String) -> ApiError {
        ApiError::new(
            ErrorCode::ManifestInvalid,
            format!("invalid reference: {detail}"),
        )
    }

    pub fn upload_unknown() -> ApiError {
        ApiError::new(ErrorCode::BlobUploadUnknown, "upload unknown to registry")
    }

    pub fn unsupported_method() -> ApiError {
        ApiError::new(
            ErrorCode::Unsupported,
            "the method is not supported on this resource",
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
    }

    pub fn not_found() -> ApiError {
        ApiError {
            code: None,
            status: StatusCode::NOT_FOUND,
            message: "not found".into(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(code, message).with_status(StatusCode::BAD_REQUEST)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code's wire text (`NOT_FOUND` for a path outside the API).
    pub fn code_str(&self) -> &'static str {
        self.code.map_or("NOT_FOUND", ErrorCode::as_str)
    }
}

/// How long a client is asked to wait (`Retry-After`, seconds) before
/// retrying after a dependency stopped answering: about what a database or
/// object store restart takes.
pub const RETRY_AFTER_SECS: u32 = 5;

/// The answer when a dependency cannot serve: `503 UNAVAILABLE` saying
/// which one and why in words a client may show, with `Retry-After` when
/// waiting helps (a dependency that does not answer, not a full disk).
/// The details name hosts and files, so they go to the log only.
fn unavailable(dependency: Dependency, reason: Unavailability, detail: &str) -> ApiError {
    tracing::warn!(%dependency, %reason, detail, "dependency unavailable");
    let message = match (dependency, reason) {
        (Dependency::Storage, Unavailability::Full) => "the registry's storage is full",
        (Dependency::Storage, Unavailability::ReadOnly) => {
            "the registry's storage does not accept writes"
        }
        (Dependency::Storage, Unavailability::NotAnswering) => {
            "the registry's storage does not answer; retry later"
        }
        (Dependency::Database, _) => "the registry's database does not answer; retry later",
    };
    let api = ApiError::new(ErrorCode::Unavailable, message);
    match reason {
        Unavailability::NotAnswering => {
            api.with_header("retry-after", RETRY_AFTER_SECS.to_string())
        }
        Unavailability::Full | Unavailability::ReadOnly => api,
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        if let RegistryError::Unavailable {
            dependency,
            reason,
            detail,
        } = &e
        {
            return unavailable(*dependency, *reason, detail);
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if e.is_internal() {
            // The details name files, queries and backends: log them, do not send them.
            tracing::error!(error = %e, "internal error");
            return ApiError::new(ErrorCode::Internal, "internal server error").with_status(status);
        }
        let mut api = ApiError::new(e.code(), e.to_string()).with_status(status);
        if let RegistryError::ChunkOutOfOrder { expected, .. } = e {
            api = api.with_header("range", upload_range(expected));
        }
        api
    }
}

/// The `Range` header value of an upload holding `size` bytes.
pub fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{
                "code": self.code_str(),
                "message": self.message,
                "detail": serde_json::Value::Null,
            }]
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
        response
    }
}
