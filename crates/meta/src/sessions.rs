//! [`SessionStore`]: the web console's sign-in sessions.

use crate::{MetaError, Timestamp};

/// A console session, looked up by the hash of the secret its cookie
/// carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    /// Lowercase hex SHA-256 of the cookie's secret; the secret itself is
    /// never stored.
    pub secret_hash: String,
    /// The user signed in.
    pub user: String,
    pub created_at: Timestamp,
    /// When the session was last used, as [`SessionStore::touch_session`]
    /// recorded it (at most once a minute): the idle limit counts from here.
    pub last_seen_at: Timestamp,
    /// The absolute limit: the session ends then however busy it is.
    pub expires_at: Timestamp,
    /// When it was signed out, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// Console sessions. Like refresh tokens, they are credentials rather than
/// registry state, so their writes record no events; signing in and out is
/// in the audit trail through the server's log of refusals and the user's
/// own actions. The store keeps the rows and the times; whether a session
/// is still good (idle limit, absolute limit, revocation, the user
/// disabled) is the server's decision on what these methods return.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session. `NotFound` when its user does not exist;
    /// `AlreadyExists` when the hash is taken (never, for random secrets).
    /// In the same transaction it deletes the user's sessions that are over
    /// by `dead_before`: revoked, or past their absolute limit, or not seen
    /// since `idle_since`, so the table holds each user's live sessions and
    /// not every sign-in ever made.
    async fn create_session(
        &self,
        session: &SessionRow,
        idle_since: Timestamp,
    ) -> Result<(), MetaError>;

    /// The session of `secret_hash`, live or not; `None` when there is none.
    async fn get_session(&self, secret_hash: &str) -> Result<Option<SessionRow>, MetaError>;

    /// Records that the session was used at `at`. Writes only when the
    /// recorded use is more than a minute older, so a busy page costs no
    /// write per request; a missing or revoked session is left as it is.
    async fn touch_session(&self, secret_hash: &str, at: Timestamp) -> Result<(), MetaError>;

    /// Revokes the session (sign-out); a second revocation keeps the first
    /// time. `NotFound` when there is no such session.
    async fn revoke_session(&self, secret_hash: &str, at: Timestamp) -> Result<(), MetaError>;

    /// Revokes every live session of `user` (the user's own "sign out
    /// everywhere", or an administrator's); returns how many.
    async fn revoke_sessions_of_user(&self, user: &str, at: Timestamp) -> Result<u64, MetaError>;
}
