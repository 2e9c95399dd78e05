//! [`AuthError`], the crate's one error type, [`TokenRejection`], why a
//! bearer token was refused, and [`AuthStoreError`], what an
//! [`crate::AuthStore`] fails with (kept here, below every other module, so
//! that no two modules of the crate import each other). Callers map these to protocol answers with
//! [`AuthError::code`], never from `Display`.

use berth_oci::ErrorCode;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A scope string does not follow `type[(class)]:name:actions`.
    #[error("invalid scope {0:?}")]
    InvalidScope(String),
    /// A token request asks for more scopes than one request may.
    #[error("too many scopes: a token request may ask for at most {0} scopes")]
    TooManyScopes(usize),
    /// An access-token scope (`namespace[/repo]:pull,push`) is malformed.
    #[error("invalid token scope {0:?}: {1}")]
    InvalidTokenScope(String, &'static str),
    /// An expiry such as `30d` could not be parsed.
    #[error("invalid expiry {0:?}: expected a number followed by m, h, d or w, or \"never\"")]
    InvalidExpiry(String),
    /// An access token's expiry lies beyond `[auth] max_token_lifetime`
    /// (`never` included), which is given in whole seconds.
    #[error("an access token may live at most {0} seconds here ([auth] max_token_lifetime): pass a shorter expiry")]
    ExpiryBeyondMaximum(i64),
    /// A user or namespace name does not match the repository component grammar.
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// A new password is refused (too short or too long).
    #[error("password refused: {0}")]
    WeakPassword(&'static str),
    /// The token endpoint's request is malformed (OAuth2 `invalid_request`).
    #[error("invalid token request: {0}")]
    InvalidRequest(String),
    /// The OAuth2 grant type is not one we support.
    #[error("unsupported grant_type {0:?}")]
    UnsupportedGrantType(String),
    /// A bearer token was refused.
    #[error("token rejected: {0}")]
    Token(#[from] TokenRejection),
    /// A signing key could not be read, parsed or written, or the store
    /// holds no usable one.
    #[error("signing key: {0}")]
    Key(String),
    /// The store failed while loading or changing signing keys.
    #[error("auth store: {0}")]
    Store(#[from] AuthStoreError),
    /// Hashing failed (out of memory, bad parameters): a server fault.
    #[error("hashing failed: {0}")]
    Hashing(String),
}

impl AuthError {
    /// The spec error code this error answers with on `/v2/`.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Token(_) => ErrorCode::Unauthorized,
            AuthError::InvalidScope(_)
            | AuthError::TooManyScopes(_)
            | AuthError::InvalidTokenScope(..)
            | AuthError::InvalidExpiry(_)
            | AuthError::ExpiryBeyondMaximum(_)
            | AuthError::InvalidName(_)
            | AuthError::WeakPassword(_)
            | AuthError::InvalidRequest(_)
            | AuthError::UnsupportedGrantType(_) => ErrorCode::Unsupported,
            AuthError::Key(_) | AuthError::Store(_) | AuthError::Hashing(_) => ErrorCode::Internal,
        }
    }
}

/// Why a registry bearer token was refused. Each variant is tested in `jwt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("malformed token")]
    Malformed,
    /// The header names an algorithm other than the one we sign with,
    /// including `none` and `HS256` (the classic public-key-as-HMAC-secret attack).
    #[error("unexpected algorithm")]
    WrongAlgorithm,
    /// No `kid`, or a `kid` not in the key set.
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("wrong audience")]
    WrongAudience,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    /// `exp` lies further from `iat` or `nbf` than the lifetime of the
    /// tokens this registry issues.
    #[error("lifetime longer than issued tokens have")]
    LifetimeTooLong,
    /// The token is valid but does not grant the action asked for.
    #[error("insufficient scope")]
    InsufficientScope,
}

/// Errors of an [`crate::AuthStore`].
#[derive(Debug, thiserror::Error)]
pub enum AuthStoreError {
    /// A create collided with an existing name (user, namespace, token).
    #[error("already exists")]
    AlreadyExists,
    /// A change named something that does not exist.
    #[error("not found")]
    NotFound,
    /// The change would leave the registry without an enabled
    /// administrator; checked in the change's own transaction.
    #[error("the last enabled administrator")]
    LastAdmin,
    /// The change would leave a namespace without an owner; checked in the
    /// change's own transaction.
    #[error("the namespace's last owner")]
    LastOwner,
    /// The database failed; details are for the log, not the client.
    #[error("store backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database does not answer (down, unreachable, or its write lock
    /// held elsewhere past the busy timeout): retrying later may work, so
    /// the edge answers 503 with `Retry-After`. The detail is for the log.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}
