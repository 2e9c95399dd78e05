//! [`SessionStore`] in SQL.

use super::db::{database, query, write_error, Row};
use super::users::require_one;
use super::SqlMetaStore;
use crate::sessions::{SessionRow, SessionStore};
use crate::{MetaError, Timestamp};

const SESSION_COLUMNS: &str =
    "secret_hash, user_name, created_at, last_seen_at, expires_at, revoked_at";

/// How recent a recorded use must be for a new use not to be written.
const TOUCH_INTERVAL_SECS: i64 = 60;

fn session_from_row(row: &Row) -> Result<SessionRow, MetaError> {
    Ok(SessionRow {
        secret_hash: row.get("secret_hash")?,
        user: row.get("user_name")?,
        created_at: row.get("created_at")?,
        last_seen_at: row.get("last_seen_at")?,
        expires_at: row.get("expires_at")?,
        revoked_at: row.get("revoked_at")?,
    })
}

#[async_trait::async_trait]
impl<B: 'static> SessionStore for SqlMetaStore<B> {
    async fn create_session(
        &self,
        session: &SessionRow,
        idle_since: Timestamp,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_write().await?;
        query(
            "DELETE FROM console_sessions WHERE user_name = $1 \
             AND (revoked_at IS NOT NULL OR expires_at <= $2 OR last_seen_at <= $3)",
        )
        .bind(&session.user)
        .bind(session.created_at)
        .bind(idle_since)
        .execute(&mut tx)
        .await
        .map_err(write_error("deleting ended console sessions"))?;
        query(
            "INSERT INTO console_sessions (secret_hash, user_name, created_at, last_seen_at, \
             expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&session.secret_hash)
        .bind(&session.user)
        .bind(session.created_at)
        .bind(session.last_seen_at)
        .bind(session.expires_at)
        .bind(session.revoked_at)
        .execute(&mut tx)
        .await
        .map_err(write_error("creating a console session"))?;
        tx.commit()
            .await
            .map_err(database("committing a console session"))?;
        Ok(())
    }

    async fn get_session(&self, secret_hash: &str) -> Result<Option<SessionRow>, MetaError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM console_sessions WHERE secret_hash = $1");
        query(&sql)
            .bind(secret_hash)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("reading a console session"))?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn touch_session(&self, secret_hash: &str, at: Timestamp) -> Result<(), MetaError> {
        query(
            "UPDATE console_sessions SET last_seen_at = $1 \
             WHERE secret_hash = $2 AND revoked_at IS NULL AND last_seen_at < $3",
        )
        .bind(at)
        .bind(secret_hash)
        .bind(at - TOUCH_INTERVAL_SECS)
        .execute(self.db.writer())
        .await
        .map_err(write_error("recording a console session's use"))?;
        Ok(())
    }

    async fn revoke_session(&self, secret_hash: &str, at: Timestamp) -> Result<(), MetaError> {
        let updated = query(
            "UPDATE console_sessions SET revoked_at = COALESCE(revoked_at, $1) \
             WHERE secret_hash = $2",
        )
        .bind(at)
        .bind(secret_hash)
        .execute(self.db.writer())
        .await
        .map_err(write_error("revoking a console session"))?;
        require_one(updated)
    }

    async fn revoke_sessions_of_user(&self, user: &str, at: Timestamp) -> Result<u64, MetaError> {
        query(
            "UPDATE console_sessions SET revoked_at = $1 \
             WHERE user_name = $2 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(user)
        .execute(self.db.writer())
        .await
        .map_err(write_error("revoking a user's console sessions"))
    }
}
