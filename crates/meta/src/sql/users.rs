//! [`UserStore`] in SQL.

use super::db::{database, query, write_error, Row, Tx};
use super::events::NewEvent;
use super::SqlMetaStore;
use crate::auth::{UserRow, UserStore};
use crate::{Change, EventKind, MetaError, Timestamp};

const USER_COLUMNS: &str = "name, password_hash, is_admin, created_at, disabled_at";

fn user_from_row(row: &Row) -> Result<UserRow, MetaError> {
    Ok(UserRow {
        name: row.get("name")?,
        password_hash: row.get("password_hash")?,
        // BOOLEAN on PostgreSQL, 0 or 1 on SQLite: both decode as `bool`.
        is_admin: row.get("is_admin")?,
        created_at: row.get("created_at")?,
        disabled_at: row.get("disabled_at")?,
    })
}

/// Refuses, within `tx` and before the change, a change that takes the
/// administrator role from `user` (demoting, disabling or deleting them)
/// when they are the only enabled administrator. The enabled
/// administrators' rows are locked (`FOR UPDATE` on PostgreSQL; SQLite's
/// write transactions are serial), so of two administrators demoting each
/// other at once, the second to lock finds the first's change made and is
/// refused: the registry is never left without one.
async fn keep_an_enabled_admin(tx: &mut Tx, user: &str) -> Result<(), MetaError> {
    let sql = format!(
        "SELECT name FROM users WHERE is_admin AND disabled_at IS NULL{}",
        tx.dialect().for_update()
    );
    let admins: Vec<String> = query(&sql)
        .fetch_all(&mut *tx)
        .await
        .map_err(database("reading the administrators"))?
        .iter()
        .map(|row| row.get("name"))
        .collect::<Result<_, _>>()?;
    if admins.len() == 1 && admins[0] == user {
        return Err(MetaError::LastAdmin);
    }
    Ok(())
}

/// Revokes every live refresh token and console session of `user` at
/// `at`, within `tx`: both are stored logins that a new password or a
/// disabled account must end.
async fn revoke_refresh_tokens(tx: &mut Tx, user: &str, at: Timestamp) -> Result<u64, MetaError> {
    let revoked = query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_name = $2 AND revoked_at IS NULL",
    )
    .bind(at)
    .bind(user)
    .execute(&mut *tx)
    .await
    .map_err(write_error("revoking a user's refresh tokens"))?;
    query(
        "UPDATE console_sessions SET revoked_at = $1 WHERE user_name = $2 AND revoked_at IS NULL",
    )
    .bind(at)
    .bind(user)
    .execute(&mut *tx)
    .await
    .map_err(write_error("revoking a user's console sessions"))?;
    Ok(revoked)
}

/// `NotFound` when an update touched no row.
pub(crate) fn require_one(rows: u64) -> Result<(), MetaError> {
    if rows == 0 {
        Err(MetaError::NotFound)
    } else {
        Ok(())
    }
}

#[async_trait::async_trait]
impl<B: 'static> UserStore for SqlMetaStore<B> {
    async fn create_user(&self, change: &Change, user: &UserRow) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        query(
            "INSERT INTO users (name, password_hash, is_admin, created_at, disabled_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.name)
        .bind(&user.password_hash)
        .bind(user.is_admin)
        .bind(user.created_at)
        .bind(user.disabled_at)
        .execute(&mut tx)
        .await
        .map_err(write_error("creating a user"))?;
        tx.record(NewEvent::new(
            EventKind::UserCreated,
            serde_json::json!({ "user": user.name, "admin": user.is_admin }),
        ))?;
        tx.commit().await.map_err(database("committing a user"))
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRow>, MetaError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1");
        query(&sql)
            .bind(name)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("reading a user"))?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn set_password_hash(
        &self,
        change: &Change,
        name: &str,
        hash: &str,
        keep_sessions: bool,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        let updated = query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(name)
            .execute(&mut tx)
            .await
            .map_err(write_error("setting a password"))?;
        require_one(updated)?;
        if !keep_sessions {
            // A new password logs out every stored login of the old one.
            revoke_refresh_tokens(&mut tx, name, change.at).await?;
        }
        // Never the hash itself: events are read by tools and people.
        tx.record(NewEvent::new(
            EventKind::UserUpdated,
            serde_json::json!({ "user": name, "password": "changed" }),
        ))?;
        tx.commit().await.map_err(database("committing a password"))
    }

    async fn set_disabled(
        &self,
        change: &Change,
        name: &str,
        disabled: bool,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        if disabled {
            keep_an_enabled_admin(&mut tx, name).await?;
        }
        // One conditional update decides whether anything changes, so two
        // concurrent calls record one event between them.
        let update = if disabled {
            query("UPDATE users SET disabled_at = $1 WHERE name = $2 AND disabled_at IS NULL")
                .bind(change.at)
                .bind(name)
        } else {
            query("UPDATE users SET disabled_at = NULL WHERE name = $1 AND disabled_at IS NOT NULL")
                .bind(name)
        };
        let changed = update
            .execute(&mut tx)
            .await
            .map_err(write_error("disabling a user"))?;
        if changed == 0 {
            let exists = query("SELECT name FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut tx)
                .await
                .map_err(database("reading a user"))?
                .is_some();
            if !exists {
                return Err(MetaError::NotFound);
            }
            // Already so: nothing changes and nothing is recorded.
            return tx.commit().await.map_err(database("committing a user"));
        }
        if disabled {
            revoke_refresh_tokens(&mut tx, name, change.at).await?;
        }
        tx.record(NewEvent::new(
            EventKind::UserUpdated,
            serde_json::json!({ "user": name, "disabled": disabled }),
        ))?;
        tx.commit().await.map_err(database("committing a user"))
    }

    async fn set_admin(
        &self,
        change: &Change,
        name: &str,
        is_admin: bool,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        if !is_admin {
            keep_an_enabled_admin(&mut tx, name).await?;
        }
        let updated = query("UPDATE users SET is_admin = $1 WHERE name = $2")
            .bind(is_admin)
            .bind(name)
            .execute(&mut tx)
            .await
            .map_err(write_error("setting the admin flag"))?;
        require_one(updated)?;
        tx.record(NewEvent::new(
            EventKind::UserUpdated,
            serde_json::json!({ "user": name, "admin": is_admin }),
        ))?;
        tx.commit()
            .await
            .map_err(database("committing the admin flag"))
    }

    async fn delete_user(&self, change: &Change, name: &str) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        keep_an_enabled_admin(&mut tx, name).await?;
        // Memberships and refresh tokens go with the user (`ON DELETE CASCADE`).
        let deleted = query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut tx)
            .await
            .map_err(write_error("deleting a user"))?;
        require_one(deleted)?;
        tx.record(NewEvent::new(
            EventKind::UserDeleted,
            serde_json::json!({ "user": name }),
        ))?;
        tx.commit()
            .await
            .map_err(database("committing a user deletion"))
    }

    async fn list_users(&self) -> Result<Vec<UserRow>, MetaError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
        query(&sql)
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing users"))?
            .iter()
            .map(user_from_row)
            .collect()
    }
}
