//! [`AuthStore`]: what the metadata store must provide for access control,
//! and the records it keeps. The SQL lives in `berth-meta`; this crate only
//! states the contract, so the policy and the server are written against it
//! without knowing the database.
//!
//! Conventions for every method:
//! - Names are validated before they get here (account names with
//!   [`crate::model::validate_account_name`]); the store does not re-validate.
//! - Secrets never reach the store: only [`SecretHash`]es and PHC strings.
//! - A method that changes one thing is atomic; "not found" is
//!   [`AuthStoreError::NotFound`] for changes and `Ok(None)` for reads.
//! - Listing methods return rows sorted by name, so output is stable.

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use crate::actor::Change;
use crate::error::AuthStoreError;
use crate::jwt::{PublicKey, SigningKey};
use crate::model::{Principal, Role, TokenScope, Visibility};
use crate::policy::NamespaceFacts;
use crate::secret::{generate_refresh_token, is_expired, SecretHash};
use crate::Secret;
pub use berth_meta::auth::RefreshRotation;
pub use berth_meta::NamespaceReach;

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    /// argon2id PHC string (see [`crate::password`]).
    pub password_hash: String,
    /// System administrators may do everything, in every namespace.
    pub is_admin: bool,
    pub created_at: OffsetDateTime,
    /// When the account was disabled: a disabled user cannot log in, and
    /// every credential of theirs (registry tokens, refresh tokens, the
    /// access tokens they created) stops working. `None` while enabled.
    pub disabled_at: Option<OffsetDateTime>,
}

impl UserRecord {
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

/// A namespace: the first path component of repository names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRecord {
    pub name: String,
    pub visibility: Visibility,
    pub created_at: OffsetDateTime,
}

/// A user's membership in a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    pub namespace: String,
    pub user: String,
    pub role: Role,
}

/// An access (robot) token. The secret itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessTokenRecord {
    /// Unique name; the login user name (`docker login -u NAME -p TOKEN`).
    pub name: String,
    pub secret_hash: SecretHash,
    /// What the token may do; see [`TokenScope`]. Never empty.
    pub scopes: Vec<TokenScope>,
    /// The user who created it. The token's rights are its scopes narrowed
    /// to its creator's rights at each use, and it stops working when its
    /// creator is disabled or deleted (`crate::robots`). `None` for tokens
    /// made by `berth admin` on the database.
    pub created_by: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    /// Updated (coarsely) on use, so operators can find unused tokens.
    pub last_used_at: Option<OffsetDateTime>,
    /// Revoked tokens are kept (for audit and so the name is not silently reused).
    pub revoked_at: Option<OffsetDateTime>,
}

impl AccessTokenRecord {
    /// Checks a presented secret against this record at `now` and, if it is
    /// valid, unexpired and unrevoked, returns the principal it proves.
    pub fn authenticate(&self, presented: &str, now: OffsetDateTime) -> Option<Principal> {
        // Compare first and always, so a revoked or expired token costs the
        // same time as a valid one.
        let matches = self.secret_hash.matches(presented);
        if !matches || self.revoked_at.is_some() || is_expired(self.expires_at, now) {
            return None;
        }
        Some(Principal::AccessToken {
            name: self.name.clone(),
            scopes: self.scopes.clone(),
            expires_at: self.expires_at,
            created_by: self.created_by.clone(),
        })
    }
}

/// A refresh token (the "identity token" `docker login` stores instead of the
/// password). Looked up by hash: it has no name, and since the secret is 256
/// random bits, knowing how a hash lookup is timed tells an attacker nothing usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub secret_hash: SecretHash,
    /// The user it stands for. Access is decided anew, from the user's current
    /// roles, each time it is exchanged for a registry JWT.
    pub user: String,
    /// The hash of the first token of the login this one descends from by
    /// rotation (its own hash for a fresh login).
    pub family: SecretHash,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl RefreshTokenRecord {
    /// Whether it may be exchanged at `now`.
    pub fn is_usable(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && !is_expired(self.expires_at, now)
    }
}

/// Default refresh token lifetime (`[auth] refresh_token_lifetime`): 30
/// days, after which `docker login` is needed again. The token is revocable
/// and stands only for a user whose rights are re-checked on every exchange.
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::days(30);

/// The longest refresh token lifetime the configuration may ask for: a
/// stolen, unnoticed refresh token works at most this long.
pub const MAX_REFRESH_TOKEN_LIFETIME: Duration = Duration::days(365);

/// Issues a refresh token for `user`: the secret to send to the client once,
/// and the record to store with [`AuthStore::create_refresh_token`].
pub fn issue_refresh_token(
    user: &str,
    now: OffsetDateTime,
    lifetime: Duration,
) -> (Secret, RefreshTokenRecord) {
    let (secret, secret_hash) = generate_refresh_token();
    let record = RefreshTokenRecord {
        family: secret_hash,
        secret_hash,
        user: user.to_string(),
        created_at: now,
        expires_at: Some(now + lifetime),
        revoked_at: None,
    };
    (secret, record)
}

/// A web console session, looked up by the hash of the secret its cookie
/// carries. It stands for a user whose rights are read anew on every
/// request, as a refresh token does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub secret_hash: SecretHash,
    pub user: String,
    pub created_at: OffsetDateTime,
    /// The last recorded use (recorded at most once a minute).
    pub last_seen_at: OffsetDateTime,
    /// The absolute limit.
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

impl SessionRecord {
    /// Whether the session may be used at `now`, when a session not used
    /// for `idle` is over: not signed out, not past its absolute limit, and
    /// used within the idle limit.
    pub fn is_live(&self, now: OffsetDateTime, idle: Duration) -> bool {
        self.revoked_at.is_none() && now < self.expires_at && now < self.last_seen_at + idle
    }
}

/// Starts a console session for `user` at `now`, ending at `now +
/// lifetime` at the latest: the cookie's secret, to send once, and the
/// record to store with [`AuthStore::create_session`].
pub fn issue_session(
    user: &str,
    now: OffsetDateTime,
    lifetime: Duration,
) -> (Secret, SessionRecord) {
    let (secret, secret_hash) = crate::secret::generate_session_secret();
    let record = SessionRecord {
        secret_hash,
        user: user.to_string(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + lifetime,
        revoked_at: None,
    };
    (secret, record)
}

/// A registry token signing key as stored, shared by every node.
#[derive(Clone, Debug)]
pub struct SigningKeyRecord {
    /// Verifies the key's tokens; its kid names the key.
    pub public_key: PublicKey,
    /// Signs tokens. Present for the current key only: a retired key never
    /// signs again, so the store erases its private half.
    pub private_key: Option<SigningKey>,
    pub created_at: OffsetDateTime,
    /// When the key stopped signing; `None` for the current key.
    pub retired_at: Option<OffsetDateTime>,
}

impl SigningKeyRecord {
    /// A new current key, created at `now`.
    pub fn current(key: SigningKey, now: OffsetDateTime) -> SigningKeyRecord {
        SigningKeyRecord {
            public_key: key.public_key(),
            private_key: Some(key),
            created_at: now,
            retired_at: None,
        }
    }

    pub fn kid(&self) -> &str {
        self.public_key.kid()
    }
}

/// What rotating the signing key changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRotation {
    /// The new current key.
    pub current: String,
    /// The key that was current until the rotation, if there was one.
    pub retired: Option<String>,
    /// Retired keys deleted because every token they signed has expired.
    pub dropped: Vec<String>,
}

/// What access control needs from the metadata store. Every method that
/// changes a record takes the [`Change`] it is part of (when, and by whom),
/// which the store records with it for the event stream.
#[async_trait]
pub trait AuthStore: Send + Sync + 'static {
    // Users.

    /// Creates a user. `AlreadyExists` if the name is taken by a user. The
    /// caller creates the personal namespace separately (with
    /// [`AuthStore::create_namespace`] and the user as owner), and refuses a
    /// user name equal to an existing namespace so nobody inherits a team's
    /// namespace by registering its name.
    async fn create_user(&self, change: &Change, user: UserRecord) -> Result<(), AuthStoreError>;

    /// The user named `name`, if any.
    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, AuthStoreError>;

    /// Replaces a user's password hash. `NotFound` if no such user. Unless
    /// `keep_sessions` (a stronger hash of the same password, stored at
    /// login), every refresh token of the user is revoked in the same
    /// change, so a new password logs out every stored `docker login`.
    async fn set_password_hash(
        &self,
        change: &Change,
        name: &str,
        password_hash: &str,
        keep_sessions: bool,
    ) -> Result<(), AuthStoreError>;

    /// Disables (as of the change) or enables a user. Disabling revokes
    /// their refresh tokens in the same change. Doing what is already so
    /// changes nothing. `NotFound` if no such user.
    async fn set_disabled(
        &self,
        change: &Change,
        name: &str,
        disabled: bool,
    ) -> Result<(), AuthStoreError>;

    /// Grants or withdraws the administrator flag. `NotFound` if no such user.
    async fn set_admin(
        &self,
        change: &Change,
        name: &str,
        is_admin: bool,
    ) -> Result<(), AuthStoreError>;

    /// Deletes a user with their memberships and refresh tokens; their
    /// personal namespace and the tokens they created stay. `NotFound` if no
    /// such user.
    async fn delete_user(&self, change: &Change, name: &str) -> Result<(), AuthStoreError>;

    /// All users, by name.
    async fn list_users(&self) -> Result<Vec<UserRecord>, AuthStoreError>;

    // Namespaces and members.

    /// Creates a namespace and, if `owner` is given, makes that user its owner,
    /// in one transaction (a namespace nobody owns can only be managed by
    /// admins). `AlreadyExists` if the name is taken; `NotFound` if `owner`
    /// is not a user.
    async fn create_namespace(
        &self,
        change: &Change,
        namespace: NamespaceRecord,
        owner: Option<&str>,
    ) -> Result<(), AuthStoreError>;

    /// The namespace named `name`, if any.
    async fn get_namespace(&self, name: &str) -> Result<Option<NamespaceRecord>, AuthStoreError>;

    /// Changes a namespace's visibility. `NotFound` if no such namespace.
    async fn set_visibility(
        &self,
        change: &Change,
        name: &str,
        visibility: Visibility,
    ) -> Result<(), AuthStoreError>;

    /// All namespaces, by name. Filtering by what a caller may see is the
    /// policy's job, not the store's.
    async fn list_namespaces(&self) -> Result<Vec<NamespaceRecord>, AuthStoreError>;

    /// Adds `user` to `namespace` with `role`, or changes their role if
    /// already a member. `NotFound` if the namespace or the user does not exist.
    async fn set_member(
        &self,
        change: &Change,
        namespace: &str,
        user: &str,
        role: Role,
    ) -> Result<(), AuthStoreError>;

    /// Removes a membership. `NotFound` if it did not exist. (Whether the last
    /// owner may leave is decided by the caller.)
    async fn remove_member(
        &self,
        change: &Change,
        namespace: &str,
        user: &str,
    ) -> Result<(), AuthStoreError>;

    /// The members of a namespace, by user name; empty if it does not exist.
    async fn list_members(&self, namespace: &str) -> Result<Vec<MemberRecord>, AuthStoreError>;

    /// `user`'s role in `namespace`, if they are a member.
    async fn member_role(
        &self,
        namespace: &str,
        user: &str,
    ) -> Result<Option<Role>, AuthStoreError>;

    /// The facts the policy needs about `namespace` for `user` (`None` for
    /// anonymous and robots). Provided in terms of the methods above; a backend
    /// may override it with a single query, as it runs on every request.
    async fn namespace_facts(
        &self,
        namespace: &str,
        user: Option<&str>,
    ) -> Result<NamespaceFacts, AuthStoreError> {
        let Some(record) = self.get_namespace(namespace).await? else {
            return Ok(NamespaceFacts::Missing);
        };
        let member_role = match user {
            Some(user) => self.member_role(namespace, user).await?,
            None => None,
        };
        Ok(NamespaceFacts::Exists {
            visibility: record.visibility,
            member_role,
        })
    }

    /// Every namespace, by name, with the facts the policy needs about it
    /// for `user` (`None` for anonymous and robots): what a listing across
    /// namespaces filters through, in a fixed number of reads however many
    /// namespaces there are (never one per namespace).
    async fn namespaces_with_facts(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<(NamespaceRecord, NamespaceFacts)>, AuthStoreError>;

    /// At most `limit` of the namespaces `reach` covers, by name, strictly
    /// after `after`, with the facts the policy needs about each for `user`
    /// (`None` for anonymous and robots): one page of a namespace listing,
    /// read through indexes in one query (see
    /// [`berth_meta::NamespaceStore::namespace_page`]).
    async fn namespace_page(
        &self,
        reach: NamespaceReach<'_>,
        user: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(NamespaceRecord, NamespaceFacts)>, AuthStoreError>;

    // Access tokens.

    /// Stores a new access token. `AlreadyExists` if the name is taken, by a
    /// live or a revoked token.
    async fn create_access_token(
        &self,
        change: &Change,
        token: AccessTokenRecord,
    ) -> Result<(), AuthStoreError>;

    /// The token named `name`, revoked or not (the caller checks with
    /// [`AccessTokenRecord::authenticate`]).
    async fn get_access_token(
        &self,
        name: &str,
    ) -> Result<Option<AccessTokenRecord>, AuthStoreError>;

    /// Records a use at `at`. May be skipped or coalesced by the backend (it
    /// is advisory, and writing on every request would be costly); `NotFound`
    /// only if no such token.
    async fn touch_access_token(
        &self,
        name: &str,
        at: OffsetDateTime,
    ) -> Result<(), AuthStoreError>;

    /// Marks a token revoked at the change's time; it stops working at once.
    /// Revoking a revoked token keeps the first time. `NotFound` if no such
    /// token.
    async fn revoke_access_token(&self, change: &Change, name: &str) -> Result<(), AuthStoreError>;

    /// All access tokens, revoked ones included, by name.
    async fn list_access_tokens(&self) -> Result<Vec<AccessTokenRecord>, AuthStoreError>;

    // Refresh tokens.

    /// Stores a refresh token. `NotFound` if the user does not exist.
    async fn create_refresh_token(&self, token: RefreshTokenRecord) -> Result<(), AuthStoreError>;

    /// The refresh token with this hash, revoked or not (the caller checks
    /// [`RefreshTokenRecord::is_usable`] and that the user still exists).
    async fn get_refresh_token(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<RefreshTokenRecord>, AuthStoreError>;

    /// Exchanges the live refresh token `presented` for `new` atomically:
    /// `presented` is revoked at `at` and `new` joins its family (and its
    /// user). A revoked `presented` revokes its whole family instead
    /// ([`RefreshRotation::Reused`]); an unknown or expired one changes
    /// nothing ([`RefreshRotation::Unusable`]).
    async fn rotate_refresh_token(
        &self,
        presented: &SecretHash,
        new: RefreshTokenRecord,
        at: OffsetDateTime,
    ) -> Result<RefreshRotation, AuthStoreError>;

    /// Revokes one refresh token at `at`. `NotFound` if unknown.
    async fn revoke_refresh_token(
        &self,
        hash: &SecretHash,
        at: OffsetDateTime,
    ) -> Result<(), AuthStoreError>;

    // Console sessions.

    /// Stores a new session. `NotFound` if the user does not exist. The
    /// user's sessions that are over (signed out, past their absolute
    /// limit, or not used since `idle_since`) are deleted with it.
    async fn create_session(
        &self,
        session: SessionRecord,
        idle_since: OffsetDateTime,
    ) -> Result<(), AuthStoreError>;

    /// The session with this hash, live or not (the caller checks
    /// [`SessionRecord::is_live`] and that the user is still enabled).
    async fn get_session(&self, hash: &SecretHash)
        -> Result<Option<SessionRecord>, AuthStoreError>;

    /// Records a use of the session at `at` (written at most once a minute).
    async fn touch_session(
        &self,
        hash: &SecretHash,
        at: OffsetDateTime,
    ) -> Result<(), AuthStoreError>;

    /// Signs the session out at `at`. `NotFound` if unknown.
    async fn revoke_session(
        &self,
        hash: &SecretHash,
        at: OffsetDateTime,
    ) -> Result<(), AuthStoreError>;

    /// Signs every live session of `user` out at `at` (the user's own "sign
    /// out everywhere", or an administrator's); returns how many. Unknown
    /// users have none.
    async fn revoke_sessions_of_user(
        &self,
        user: &str,
        at: OffsetDateTime,
    ) -> Result<u64, AuthStoreError>;

    /// Revokes every refresh token of `user` (password change, account
    /// disabled). Returns how many were revoked; unknown users revoke none.
    async fn revoke_refresh_tokens_of_user(
        &self,
        user: &str,
        at: OffsetDateTime,
    ) -> Result<u64, AuthStoreError>;

    // Signing keys (see [`crate::keys`]).

    /// Every stored signing key, the current one included, oldest first.
    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, AuthStoreError>;

    /// Stores `key` (a current key, with its private half) unless the store
    /// has a current key already, atomically with respect to every other
    /// key change, and returns whether it did. Nodes starting together on an
    /// empty store thus end with one key, which the others then load.
    async fn insert_first_signing_key(&self, key: SigningKeyRecord)
        -> Result<bool, AuthStoreError>;

    /// Makes `key` (a current key) the signing key in one atomic change: the
    /// current key retires at `key.created_at` and loses its private half,
    /// and keys retired before `drop_retired_before` are deleted (never the
    /// one retiring now). Concurrent rotations take turns. `AlreadyExists` if
    /// the kid is taken.
    async fn rotate_signing_key(
        &self,
        key: SigningKeyRecord,
        drop_retired_before: OffsetDateTime,
    ) -> Result<KeyRotation, AuthStoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::generate_access_token;

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
    }

    #[test]
    fn access_token_authentication() {
        let (secret, secret_hash) = generate_access_token();
        let mut record = AccessTokenRecord {
            name: "ci".to_string(),
            secret_hash,
            scopes: vec![TokenScope::parse("team-a:pull").unwrap()],
            created_by: Some("alice".to_string()),
            created_at: now(),
            expires_at: Some(now() + Duration::days(30)),
            last_used_at: None,
            revoked_at: None,
        };
        let principal = record.authenticate(secret.expose(), now()).unwrap();
        assert_eq!(principal.subject(), Some("ci"));
        assert!(
            matches!(principal, Principal::AccessToken { ref scopes, .. } if scopes.len() == 1)
        );
        assert_eq!(record.authenticate("berth_at_wrong", now()), None);
        assert_eq!(
            record.authenticate(secret.expose(), now() + Duration::days(30)),
            None,
            "expired"
        );
        record.revoked_at = Some(now());
        assert_eq!(record.authenticate(secret.expose(), now()), None, "revoked");
    }

    #[test]
    fn refresh_token_issuance() {
        let (secret, mut record) = issue_refresh_token("alice", now(), REFRESH_TOKEN_LIFETIME);
        assert!(crate::secret::looks_like_refresh_token(secret.expose()));
        assert!(record.secret_hash.matches(secret.expose()));
        assert_eq!(record.user, "alice");
        assert_eq!(
            record.family, record.secret_hash,
            "a fresh login starts a family"
        );
        assert!(record.is_usable(now() + Duration::days(29)));
        assert!(!record.is_usable(now() + Duration::days(30)));
        record.revoked_at = Some(now());
        assert!(!record.is_usable(now()));
    }
}
