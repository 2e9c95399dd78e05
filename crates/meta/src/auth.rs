//! Access-control records: users, namespaces and their members, access
//! (robot) tokens and refresh tokens, behind [`AuthMetaStore`].
//!
//! The rows are plain data (names, strings, seconds since the epoch): what
//! they mean (roles, scopes, hashing) is decided by `berth-auth`, which sits
//! above this crate and adapts [`AuthMetaStore`] to its own `AuthStore`
//! trait. Keeping the vocabulary out of here keeps the dependency direction
//! (`auth → meta`) and lets every backend store the same values.
//!
//! Conventions for every method:
//! - Names are validated by the caller; the store does not re-validate.
//! - Secrets never reach the store: only hashes (a PHC string for passwords,
//!   lowercase hex SHA-256 for tokens).
//! - A method that changes one thing is atomic; "not found" is
//!   [`AuthMetaError::NotFound`] for changes and `Ok(None)` for reads.
//! - Listings are sorted by name (byte order), so output is stable.

use crate::{MetaError, Timestamp};

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: Timestamp,
}

/// A namespace: the first path component of repository names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRow {
    pub name: String,
    /// `public` or `private`.
    pub visibility: String,
    pub created_at: Timestamp,
}

/// A user's membership in a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    pub namespace: String,
    pub user: String,
    /// `reader`, `writer`, `maintainer` or `owner`.
    pub role: String,
}

/// An access (robot) token; the secret itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessTokenRow {
    pub name: String,
    /// Lowercase hex SHA-256 of the secret.
    pub secret_hash: String,
    /// The scopes as a JSON array, written and read by the auth crate.
    pub scopes: String,
    pub created_by: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A refresh token, looked up by the hash of its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshTokenRow {
    /// Lowercase hex SHA-256 of the secret.
    pub secret_hash: String,
    pub user: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// Errors of the access-control methods.
#[derive(Debug, thiserror::Error)]
pub enum AuthMetaError {
    /// A create collided with an existing name.
    #[error("already exists")]
    AlreadyExists,
    /// A change named something that does not exist.
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// The access-control tables. Same concurrency contract as `MetaStore`.
#[async_trait::async_trait]
pub trait AuthMetaStore: Send + Sync + 'static {
    /// Creates a user; `AlreadyExists` if the name is taken.
    async fn create_user(&self, user: &UserRow) -> Result<(), AuthMetaError>;
    async fn get_user(&self, name: &str) -> Result<Option<UserRow>, AuthMetaError>;
    /// `NotFound` if no such user.
    async fn set_password_hash(&self, name: &str, hash: &str) -> Result<(), AuthMetaError>;
    /// `NotFound` if no such user.
    async fn set_admin(&self, name: &str, is_admin: bool) -> Result<(), AuthMetaError>;
    async fn list_users(&self) -> Result<Vec<UserRow>, AuthMetaError>;

    /// Creates a namespace and, if `owner` is given, makes that user its
    /// owner, in one transaction. `AlreadyExists` if the name is taken,
    /// `NotFound` (creating nothing) if `owner` is not a user.
    async fn create_namespace(
        &self,
        namespace: &NamespaceRow,
        owner: Option<&str>,
    ) -> Result<(), AuthMetaError>;
    async fn get_namespace(&self, name: &str) -> Result<Option<NamespaceRow>, AuthMetaError>;
    /// `NotFound` if no such namespace.
    async fn set_visibility(&self, name: &str, visibility: &str) -> Result<(), AuthMetaError>;
    async fn list_namespaces(&self) -> Result<Vec<NamespaceRow>, AuthMetaError>;

    /// Adds a member or changes their role; `NotFound` if the namespace or
    /// the user does not exist.
    async fn set_member(
        &self,
        namespace: &str,
        user: &str,
        role: &str,
    ) -> Result<(), AuthMetaError>;
    /// `NotFound` if the membership did not exist.
    async fn remove_member(&self, namespace: &str, user: &str) -> Result<(), AuthMetaError>;
    /// Members by user name; empty if the namespace does not exist.
    async fn list_members(&self, namespace: &str) -> Result<Vec<MemberRow>, AuthMetaError>;
    async fn member_role(
        &self,
        namespace: &str,
        user: &str,
    ) -> Result<Option<String>, AuthMetaError>;

    /// `AlreadyExists` if the name is taken by a live or revoked token.
    async fn create_access_token(&self, token: &AccessTokenRow) -> Result<(), AuthMetaError>;
    async fn get_access_token(&self, name: &str) -> Result<Option<AccessTokenRow>, AuthMetaError>;
    /// Records a use; `NotFound` if no such token.
    async fn touch_access_token(&self, name: &str, at: Timestamp) -> Result<(), AuthMetaError>;
    /// Marks a token revoked, keeping the first revocation time; `NotFound`
    /// if no such token.
    async fn revoke_access_token(&self, name: &str, at: Timestamp) -> Result<(), AuthMetaError>;
    /// All tokens, revoked ones included.
    async fn list_access_tokens(&self) -> Result<Vec<AccessTokenRow>, AuthMetaError>;

    /// `NotFound` if the user does not exist.
    async fn create_refresh_token(&self, token: &RefreshTokenRow) -> Result<(), AuthMetaError>;
    async fn get_refresh_token(
        &self,
        secret_hash: &str,
    ) -> Result<Option<RefreshTokenRow>, AuthMetaError>;
    /// `NotFound` if unknown; keeps the first revocation time.
    async fn revoke_refresh_token(
        &self,
        secret_hash: &str,
        at: Timestamp,
    ) -> Result<(), AuthMetaError>;
    /// Revokes every live refresh token of `user`; returns how many.
    async fn revoke_refresh_tokens_of_user(
        &self,
        user: &str,
        at: Timestamp,
    ) -> Result<u64, AuthMetaError>;
}
