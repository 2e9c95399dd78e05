//! Access-control records: users, namespace members, access (robot)
//! tokens, refresh tokens and the registry token signing keys, behind
//! [`UserStore`], [`MemberStore`], [`TokenStore`] and [`SigningKeyStore`];
//! [`AuthMetaStore`] is everything access control needs, namespaces
//! ([`NamespaceStore`]) included.
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
//!   [`MetaError::NotFound`] for changes and `Ok(None)` for reads; a create
//!   that collides with an existing name is [`MetaError::AlreadyExists`].
//! - Listings are sorted by name (byte order), so output is stable; signing
//!   keys, which have no name to speak of, by age.

use crate::namespaces::NamespaceStore;
use crate::sessions::SessionStore;
use crate::{Change, MetaError, Timestamp};

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: Timestamp,
    /// When the account was disabled; `None` while it is enabled.
    pub disabled_at: Option<Timestamp>,
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
    /// The hash of the first token of the login this one was rotated from
    /// (its own hash for a fresh login); reuse of a rotated token revokes
    /// every token of the family.
    pub family: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// What [`TokenStore::rotate_refresh_token`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshRotation {
    /// The presented token was live: it is revoked and the new one stored.
    Rotated,
    /// The presented token had been revoked already (rotated away, or
    /// revoked with its user's credentials): every token of its family is
    /// revoked now, and nothing was stored.
    Reused,
    /// No such token, or it has expired: nothing changed.
    Unusable,
}

/// A registry token signing key. Every node of a deployment signs with the
/// current key and verifies with all of them, so they live in the shared
/// database rather than on each node's disk.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    /// The key's id, derived from the public key by the auth crate.
    pub kid: String,
    /// The private key (PKCS#8 PEM). Present for the current key; erased
    /// when a key retires, because a retired key never signs again.
    pub private_key_pem: Option<String>,
    /// The public key (SPKI PEM), which verifies the key's tokens.
    pub public_key_pem: String,
    pub created_at: Timestamp,
    /// When the key stopped signing; `None` for the current key.
    pub retired_at: Option<Timestamp>,
}

/// Written by hand so that the private key never reaches a log.
impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// What [`AuthMetaStore::rotate_signing_key`] changed besides adding the new key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SigningKeyRotation {
    /// The key that was current until the rotation, if there was one.
    pub retired: Option<String>,
    /// Retired keys deleted because their tokens have expired, by kid.
    pub dropped: Vec<String>,
}

/// Refuses a key that is not current where the contract asks for one: a
/// caller's bug, reported before anything is written.
pub(crate) fn require_current(key: &SigningKeyRow) -> Result<(), MetaError> {
    if key.retired_at.is_some() || key.private_key_pem.is_none() {
        return Err(MetaError::Database(format!(
            "signing key {} must be current and have its private key",
            key.kid
        )));
    }
    Ok(())
}

/// User accounts.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Creates a user (`user.created`); `AlreadyExists` if the name is taken.
    async fn create_user(&self, change: &Change, user: &UserRow) -> Result<(), MetaError>;
    async fn get_user(&self, name: &str) -> Result<Option<UserRow>, MetaError>;
    /// `NotFound` if no such user; writes `user.updated`. Every live refresh
    /// token and console session of the user is revoked in the same
    /// transaction, unless `keep_sessions` (a hash upgraded at login, which
    /// is no new password).
    async fn set_password_hash(
        &self,
        change: &Change,
        name: &str,
        hash: &str,
        keep_sessions: bool,
    ) -> Result<(), MetaError>;
    /// Disables (at the change's time) or enables a user; `NotFound` if no
    /// such user. Disabling revokes every live refresh token and console
    /// session of the user in the same transaction. Writes `user.updated` (detail `disabled`) when
    /// the state changed, nothing when it did not.
    async fn set_disabled(
        &self,
        change: &Change,
        name: &str,
        disabled: bool,
    ) -> Result<(), MetaError>;
    /// `NotFound` if no such user; writes `user.updated`.
    async fn set_admin(&self, change: &Change, name: &str, is_admin: bool)
        -> Result<(), MetaError>;
    /// Deletes a user with their memberships and refresh tokens
    /// (`user.deleted`); their personal namespace and what they created stay.
    /// `NotFound` if no such user.
    async fn delete_user(&self, change: &Change, name: &str) -> Result<(), MetaError>;
    /// Every user, by name.
    async fn list_users(&self) -> Result<Vec<UserRow>, MetaError>;
}

/// Users' roles in namespaces.
#[async_trait::async_trait]
pub trait MemberStore: Send + Sync + 'static {
    /// Adds a member or changes their role (`member.set`); `NotFound` if
    /// the namespace or the user does not exist.
    async fn set_member(
        &self,
        change: &Change,
        namespace: &str,
        user: &str,
        role: &str,
    ) -> Result<(), MetaError>;
    /// `NotFound` if the membership did not exist; writes `member.removed`.
    async fn remove_member(
        &self,
        change: &Change,
        namespace: &str,
        user: &str,
    ) -> Result<(), MetaError>;
    /// Members by user name; empty if the namespace does not exist.
    async fn list_members(&self, namespace: &str) -> Result<Vec<MemberRow>, MetaError>;
    async fn member_role(&self, namespace: &str, user: &str) -> Result<Option<String>, MetaError>;
    /// Every membership of `user`, by namespace name, in one read (what a
    /// listing across namespaces needs, instead of one read per namespace).
    async fn memberships_of(&self, user: &str) -> Result<Vec<MemberRow>, MetaError>;
}

/// Access (robot) tokens and refresh tokens.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Stores a token (`token.created`); `AlreadyExists` if the name is
    /// taken by a live or revoked token.
    async fn create_access_token(
        &self,
        change: &Change,
        token: &AccessTokenRow,
    ) -> Result<(), MetaError>;
    async fn get_access_token(&self, name: &str) -> Result<Option<AccessTokenRow>, MetaError>;
    /// Records a use; `NotFound` if no such token. Coarse on purpose: a use
    /// within a minute of the recorded one is not written, so a busy token
    /// does not cost a write per request.
    async fn touch_access_token(&self, name: &str, at: Timestamp) -> Result<(), MetaError>;
    /// Marks a token revoked as of the change (`token.revoked`), keeping the
    /// first revocation time; `NotFound` if no such token.
    async fn revoke_access_token(&self, change: &Change, name: &str) -> Result<(), MetaError>;
    /// All tokens, revoked ones included, by name.
    async fn list_access_tokens(&self) -> Result<Vec<AccessTokenRow>, MetaError>;

    /// `NotFound` if the user does not exist.
    async fn create_refresh_token(&self, token: &RefreshTokenRow) -> Result<(), MetaError>;
    async fn get_refresh_token(
        &self,
        secret_hash: &str,
    ) -> Result<Option<RefreshTokenRow>, MetaError>;
    /// `NotFound` if unknown; keeps the first revocation time.
    async fn revoke_refresh_token(&self, secret_hash: &str, at: Timestamp)
        -> Result<(), MetaError>;
    /// Exchanges the live refresh token `presented` (a hash) for `new`, in
    /// one transaction: `presented` is revoked at `at` and `new` stored in
    /// its family (`new.family` is ignored). A presented token that exists
    /// but is revoked revokes its whole family instead ([`RefreshRotation::Reused`]);
    /// an unknown or expired one changes nothing. Two concurrent rotations
    /// of one token: one rotates, the other finds it revoked.
    async fn rotate_refresh_token(
        &self,
        presented: &str,
        new: &RefreshTokenRow,
        at: Timestamp,
    ) -> Result<RefreshRotation, MetaError>;
    /// Revokes every live refresh token of `user`; returns how many.
    async fn revoke_refresh_tokens_of_user(
        &self,
        user: &str,
        at: Timestamp,
    ) -> Result<u64, MetaError>;
}

/// The registry token signing keys, shared by every node.
#[async_trait::async_trait]
pub trait SigningKeyStore: Send + Sync + 'static {
    /// Every stored signing key, the current one included, oldest first (by
    /// creation time, then kid).
    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRow>, MetaError>;

    /// Stores `key` (which must be current: no `retired_at`) if there is no
    /// current key yet, and returns whether it did. The check and the insert
    /// are one transaction serialized with every other key change, so nodes
    /// starting together on an empty database end with exactly one current
    /// key: the first one stored; the others get `false` and adopt it.
    async fn insert_first_signing_key(&self, key: &SigningKeyRow) -> Result<bool, MetaError>;

    /// Makes `key` (current, created at `key.created_at`) the signing key, in
    /// one transaction serialized with every other key change: the current
    /// key, if any, retires at `key.created_at` and loses its private half;
    /// keys retired before `drop_retired_before` are deleted (never the one
    /// this rotation retires). Concurrent rotations run one after the other,
    /// each retiring the key the previous one made. `AlreadyExists` (changing
    /// nothing) if the kid is taken.
    async fn rotate_signing_key(
        &self,
        key: &SigningKeyRow,
        drop_retired_before: Timestamp,
    ) -> Result<SigningKeyRotation, MetaError>;

    /// Replaces the stored private half of key `kid` with `new`, only if it
    /// is `expected` now (the auth crate encrypting a plain key at start):
    /// returns whether it did. Another node that did the same first, or a
    /// rotation that erased the private half meanwhile, leaves it `false`.
    async fn replace_signing_private_key(
        &self,
        kid: &str,
        expected: &str,
        new: &str,
    ) -> Result<bool, MetaError>;
}

/// Everything access control reads and writes: users, namespaces, members,
/// tokens, signing keys and console sessions. Implemented for every type that implements the
/// parts; same concurrency contract as [`crate::MetaStore`].
pub trait AuthMetaStore:
    UserStore + NamespaceStore + MemberStore + TokenStore + SigningKeyStore + SessionStore
{
}

impl<T> AuthMetaStore for T where
    T: UserStore + NamespaceStore + MemberStore + TokenStore + SigningKeyStore + SessionStore
{
}
