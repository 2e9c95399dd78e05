//! The error codes of the OCI Distribution Spec.
//!
//! This is the registered table of codes every crate names its refusals
//! with; the server's `error.rs` pairs each with its HTTP status and renders
//! the JSON body `{"errors":[{"code","message","detail"}]}` from a code and a
//! message, never from an error's `Display` alone.

/// An error code from the spec's table (plus Docker's `TOOMANYREQUESTS` and
/// `RANGE_INVALID`, which the spec's table lacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// A `Range` the blob cannot satisfy (Docker's registry's code; the spec
    /// names none).
    RangeInvalid,
    /// Docker's registry's code for a dependency (database, storage) that
    /// cannot serve now; the spec names none. Retry later.
    Unavailable,
    /// Not in the spec's table: used for 5xx answers whose details are logged only.
    Internal,
}

impl ErrorCode {
    /// The code string used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL_ERROR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        let all = [
            (ErrorCode::BlobUnknown, "BLOB_UNKNOWN"),
            (ErrorCode::BlobUploadInvalid, "BLOB_UPLOAD_INVALID"),
            (ErrorCode::BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN"),
            (ErrorCode::DigestInvalid, "DIGEST_INVALID"),
            (ErrorCode::ManifestBlobUnknown, "MANIFEST_BLOB_UNKNOWN"),
            (ErrorCode::ManifestInvalid, "MANIFEST_INVALID"),
            (ErrorCode::ManifestUnknown, "MANIFEST_UNKNOWN"),
            (ErrorCode::NameInvalid, "NAME_INVALID"),
            (ErrorCode::NameUnknown, "NAME_UNKNOWN"),
            (ErrorCode::SizeInvalid, "SIZE_INVALID"),
            (ErrorCode::Unauthorized, "UNAUTHORIZED"),
            (ErrorCode::Denied, "DENIED"),
            (ErrorCode::Unsupported, "UNSUPPORTED"),
            (ErrorCode::TooManyRequests, "TOOMANYREQUESTS"),
            (ErrorCode::RangeInvalid, "RANGE_INVALID"),
            (ErrorCode::Unavailable, "UNAVAILABLE"),
            (ErrorCode::Internal, "INTERNAL_ERROR"),
        ];
        for (code, text) in all {
            assert_eq!(code.as_str(), text);
        }
    }
}
