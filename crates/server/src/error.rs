//! The one place where errors become HTTP responses.
//!
//! Every failure a handler returns is an [`ApiError`]: a spec error code, a
//! status and a message. The status comes from this file only: from the
//! code's usual status ([`status_of`]), or, for the few refusals the spec
//! answers differently (a chunk at the wrong offset is 416, a manifest still
//! listed by an index 409), from the domain error itself in
//! `From<RegistryError>` or a named constructor here. Other crates name codes
//! and domain facts, never statuses. 5xx details are logged here and replaced
//! by a generic message, so nothing about the server's internals leaks.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_oci::ErrorCode;
use berth_registry::{Dependency, RegistryError, Unavailability};

/// The status the spec (or Docker's registry, where the spec is silent)
/// pairs with `code`.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BlobUnknown
        | ErrorCode::BlobUploadUnknown
        | ErrorCode::ManifestUnknown
        | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
        ErrorCode::BlobUploadInvalid
        | ErrorCode::DigestInvalid
        | ErrorCode::ManifestBlobUnknown
        | ErrorCode::ManifestInvalid
        | ErrorCode::NameInvalid
        | ErrorCode::SizeInvalid => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Denied => StatusCode::FORBIDDEN,
        ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The status of a registry refusal: its code's usual one, except where
/// the spec (or what clients expect) answers that refusal differently. The
/// one place a registry refusal gets a status, for `/v2/` and for any other
/// surface that reports registry refusals.
pub fn registry_status(error: &RegistryError) -> StatusCode {
    match error {
        // The spec's answer to a chunk that does not continue the upload;
        // a chunk that another request is writing is the same conflict.
        RegistryError::ChunkOutOfOrder { .. }
        | RegistryError::ChunkSizeMismatch { .. }
        | RegistryError::UploadBusy => StatusCode::RANGE_NOT_SATISFIABLE,
        RegistryError::ManifestTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        RegistryError::ManifestReferenced(_)
        | RegistryError::NamespaceExists
        | RegistryError::RuleExists
        | RegistryError::ReplicationBusy(_)
        | RegistryError::AdvisorySyncBusy
        | RegistryError::NamespaceNotEmpty => StatusCode::CONFLICT,
        // A retryable condition: clients retry a push on 503.
        RegistryError::BlobBeingCollected => StatusCode::SERVICE_UNAVAILABLE,
        // The upstream of a proxy namespace failed: a gateway's answer.
        RegistryError::UpstreamFailed(_) => StatusCode::BAD_GATEWAY,
        RegistryError::InvalidParameter(_) => StatusCode::BAD_REQUEST,
        other => status_of(other.code()),
    }
}

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    code: Option<ErrorCode>,
    status: StatusCode,
    message: String,
    /// Extra headers (such as `Range` on a 416 for an upload).
    headers: Vec<(&'static str, String)>,
    /// The error's `detail` (JSON), `null` unless set.
    detail: serde_json::Value,
    /// The quota refusal this answers, for the registry to record
    /// ([`ApiError::quota_refusal`]).
    quota_refusal: Option<Box<RegistryError>>,
}

impl ApiError {
    /// An error with `code`'s usual status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code: Some(code),
            status: status_of(code),
            message: message.into(),
            headers: Vec::new(),
            detail: serde_json::Value::Null,
            quota_refusal: None,
        }
    }

    /// The refusal over a quota this error answers, if it does.
    pub fn quota_refusal(&self) -> Option<&RegistryError> {
        self.quota_refusal.as_deref()
    }

    /// Overrides the status. Kept for the management API, whose errors are
    /// not the distribution spec's; `/v2/` and the token endpoint use the
    /// named constructors below, so their statuses stay in this file.
    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// Sets the error's `detail`, facts a client may act on.
    pub fn with_detail(mut self, detail: serde_json::Value) -> ApiError {
        self.detail = detail;
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
            detail: serde_json::Value::Null,
            quota_refusal: None,
        }
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(code, message).with_status(StatusCode::BAD_REQUEST)
    }

    /// A request body larger than the endpoint accepts (413).
    pub fn payload_too_large(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(code, message).with_status(StatusCode::PAYLOAD_TOO_LARGE)
    }

    /// A query string longer than the endpoint accepts (414).
    pub fn uri_too_long(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(code, message).with_status(StatusCode::URI_TOO_LONG)
    }

    /// A malformed `Content-Range` on an upload chunk: the spec answers
    /// anything wrong with a chunk's range with 416.
    pub fn bad_content_range() -> ApiError {
        ApiError::new(
            ErrorCode::BlobUploadInvalid,
            "malformed Content-Range header",
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    }

    /// A blob GET's `Range` that starts at or past the end of a blob of
    /// `size` bytes: 416, with the blob's size in `Content-Range` as RFC 9110
    /// §15.5.17 asks.
    pub fn range_not_satisfiable(size: u64) -> ApiError {
        ApiError::new(
            ErrorCode::RangeInvalid,
            format!("requested range not satisfiable: the blob holds {size} bytes"),
        )
        .with_header("content-range", format!("bytes */{size}"))
    }

    /// A server fault whose details went to the log.
    pub fn internal() -> ApiError {
        ApiError::new(ErrorCode::Internal, "internal server error")
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
pub(crate) fn unavailable(
    dependency: Dependency,
    reason: Unavailability,
    detail: &str,
) -> ApiError {
    tracing::warn!(%dependency, %reason, detail, "dependency unavailable");
    let api = ApiError::new(
        ErrorCode::Unavailable,
        unavailable_message(dependency, reason),
    );
    match reason {
        Unavailability::NotAnswering => {
            api.with_header("retry-after", RETRY_AFTER_SECS.to_string())
        }
        Unavailability::Full | Unavailability::ReadOnly => api,
    }
}

/// What a client is told when `dependency` cannot serve for `reason`, on
/// every surface: which dependency and why, without hosts or files.
pub(crate) fn unavailable_message(dependency: Dependency, reason: Unavailability) -> &'static str {
    match (dependency, reason) {
        (Dependency::Storage, Unavailability::Full) => "the registry's storage is full",
        (Dependency::Storage, Unavailability::ReadOnly) => {
            "the registry's storage does not accept writes"
        }
        (Dependency::Storage, Unavailability::NotAnswering) => {
            "the registry's storage does not answer; retry later"
        }
        (Dependency::Database, _) => "the registry's database does not answer; retry later",
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
        if e.is_internal() {
            // The details name files, queries and backends: log them, do not send them.
            tracing::error!(error = %e, "internal error");
            return ApiError::internal();
        }
        let status = registry_status(&e);
        let mut api = ApiError::new(e.code(), e.to_string()).with_status(status);
        // Where the upload stands, so the client can resume from there.
        if let RegistryError::ChunkOutOfOrder { expected: size, .. }
        | RegistryError::ChunkSizeMismatch { size, .. } = e
        {
            api = api.with_header("range", upload_range(size));
        }
        match &e {
            // The figures, for clients and scripts to show or act on.
            RegistryError::StorageQuotaExceeded(exceeded) => {
                api = api.with_detail(serde_json::json!({
                    "namespace": exceeded.namespace,
                    "usage": exceeded.usage,
                    "limit": exceeded.limit,
                    "adding": exceeded.adding,
                }));
            }
            // Until the month ends, when the traffic quota starts again.
            RegistryError::TrafficQuotaExceeded {
                namespace,
                used,
                limit,
                retry_after,
            } => {
                api = api
                    .with_header("retry-after", retry_after.to_string())
                    .with_detail(serde_json::json!({
                        "namespace": namespace,
                        "used": used,
                        "limit": limit,
                    }));
            }
            // The upstream's own wait, passed on.
            RegistryError::UpstreamTooManyRequests {
                retry_after: Some(retry_after),
            } => {
                api = api.with_header("retry-after", retry_after.to_string());
            }
            _ => {}
        }
        if matches!(
            e,
            RegistryError::StorageQuotaExceeded(_) | RegistryError::TrafficQuotaExceeded { .. }
        ) {
            api.quota_refusal = Some(Box::new(e));
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
                "detail": self.detail,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_statuses() {
        let table = [
            (ErrorCode::BlobUnknown, 404),
            (ErrorCode::BlobUploadInvalid, 400),
            (ErrorCode::BlobUploadUnknown, 404),
            (ErrorCode::DigestInvalid, 400),
            (ErrorCode::ManifestBlobUnknown, 400),
            (ErrorCode::ManifestInvalid, 400),
            (ErrorCode::ManifestUnknown, 404),
            (ErrorCode::NameInvalid, 400),
            (ErrorCode::NameUnknown, 404),
            (ErrorCode::SizeInvalid, 400),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::Denied, 403),
            (ErrorCode::Unsupported, 405),
            (ErrorCode::TooManyRequests, 429),
            (ErrorCode::RangeInvalid, 416),
            (ErrorCode::Unavailable, 503),
            (ErrorCode::Internal, 500),
        ];
        for (code, status) in table {
            assert_eq!(status_of(code).as_u16(), status, "{}", code.as_str());
        }
    }

    #[test]
    fn registry_refusals() {
        let digest = berth_oci::Algorithm::Sha256.digest_of(b"x");
        let table: Vec<(RegistryError, u16, &str)> = vec![
            (RegistryError::BlobUnknown, 404, "BLOB_UNKNOWN"),
            (
                RegistryError::ChunkOutOfOrder {
                    given: 5,
                    expected: 3,
                },
                416,
                "BLOB_UPLOAD_INVALID",
            ),
            (RegistryError::UploadBusy, 416, "BLOB_UPLOAD_INVALID"),
            (
                RegistryError::ChunkSizeMismatch {
                    declared: 10,
                    size: 3,
                },
                416,
                "BLOB_UPLOAD_INVALID",
            ),
            (RegistryError::ManifestTooLarge(10), 413, "MANIFEST_INVALID"),
            (
                RegistryError::ManifestReferenced(digest.clone()),
                409,
                "DENIED",
            ),
            (
                RegistryError::BlobBeingCollected,
                503,
                "BLOB_UPLOAD_INVALID",
            ),
            (
                RegistryError::ImmutableTag {
                    tag: berth_oci::Tag::parse("v1").unwrap(),
                    rule: "team-a --tags v*".into(),
                },
                403,
                "DENIED",
            ),
            (RegistryError::RuleExists, 409, "DENIED"),
            (
                RegistryError::StorageQuotaExceeded(Box::new(berth_registry::QuotaExceeded {
                    namespace: "team-a".into(),
                    usage: 90,
                    limit: 100,
                    adding: 20,
                })),
                403,
                "DENIED",
            ),
            (
                RegistryError::TrafficQuotaExceeded {
                    namespace: "team-a".into(),
                    used: 100,
                    limit: 100,
                    retry_after: 60,
                },
                429,
                "TOOMANYREQUESTS",
            ),
            (
                RegistryError::InvalidParameter("n".into()),
                400,
                "UNSUPPORTED",
            ),
            (
                RegistryError::ManifestBlobUnknown(vec![digest]),
                400,
                "MANIFEST_BLOB_UNKNOWN",
            ),
            (RegistryError::NotAcceptable, 404, "MANIFEST_UNKNOWN"),
            (
                RegistryError::Meta(berth_meta::MetaError::Database("refused".into())),
                500,
                "INTERNAL_ERROR",
            ),
        ];
        for (error, status, code) in table {
            let text = format!("{error:?}");
            let api = ApiError::from(error);
            assert_eq!(api.status().as_u16(), status, "{text}");
            assert_eq!(api.code_str(), code, "{text}");
        }
    }

    /// A dependency that cannot serve is `503 UNAVAILABLE` naming it;
    /// `Retry-After` only when waiting helps (not on a full or read-only
    /// disk, which needs an operator); the detail (a path, a host) is never
    /// in the answer.
    #[test]
    fn unavailable_dependencies() {
        let table = [
            (
                Dependency::Database,
                Unavailability::NotAnswering,
                true,
                "database",
            ),
            (
                Dependency::Storage,
                Unavailability::NotAnswering,
                true,
                "storage",
            ),
            (Dependency::Storage, Unavailability::Full, false, "full"),
            (
                Dependency::Storage,
                Unavailability::ReadOnly,
                false,
                "writes",
            ),
        ];
        for (dependency, reason, retry, says) in table {
            let api = ApiError::from(RegistryError::Unavailable {
                dependency,
                reason,
                detail: "/secret/path on db.internal:5432".into(),
            });
            let label = format!("{dependency} {reason}");
            assert_eq!(api.status(), StatusCode::SERVICE_UNAVAILABLE, "{label}");
            assert_eq!(api.code_str(), "UNAVAILABLE", "{label}");
            assert!(api.message.contains(says), "{label}: {}", api.message);
            assert!(!api.message.contains("secret"), "{label}: {}", api.message);
            let has_retry = api.headers.iter().any(|(name, _)| *name == "retry-after");
            assert_eq!(has_retry, retry, "{label}");
        }
    }
}
