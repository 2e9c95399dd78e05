//! [`TokenStore`] in SQL.

use super::db::{database, query, write_error, Row};
use super::events::NewEvent;
use super::users::require_one;
use super::SqlMetaStore;
use crate::auth::{AccessTokenRow, RefreshRotation, RefreshTokenRow, TokenStore};
use crate::{Change, EventKind, MetaError, Timestamp};

const ACCESS_TOKEN_COLUMNS: &str = "name, secret_hash, scopes, created_by, created_at, \
     expires_at, last_used_at, revoked_at";
const REFRESH_TOKEN_COLUMNS: &str =
    "secret_hash, user_name, family, created_at, expires_at, revoked_at";

/// How recent a recorded use must be for a new use not to be written.
const TOUCH_INTERVAL_SECS: i64 = 60;

fn access_token_from_row(row: &Row) -> Result<AccessTokenRow, MetaError> {
    Ok(AccessTokenRow {
        name: row.get("name")?,
        secret_hash: row.get("secret_hash")?,
        scopes: row.get("scopes")?,
        created_by: row.get("created_by")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        last_used_at: row.get("last_used_at")?,
        revoked_at: row.get("revoked_at")?,
    })
}

fn refresh_token_from_row(row: &Row) -> Result<RefreshTokenRow, MetaError> {
    let secret_hash: String = row.get("secret_hash")?;
    // The migration gave older rows their own hash as family; a missing
    // one is read the same way.
    let family: Option<String> = row.get("family")?;
    Ok(RefreshTokenRow {
        family: family.unwrap_or_else(|| secret_hash.clone()),
        secret_hash,
        user: row.get("user_name")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        revoked_at: row.get("revoked_at")?,
    })
}

#[async_trait::async_trait]
impl<B: 'static> TokenStore for SqlMetaStore<B> {
    async fn create_access_token(
        &self,
        change: &Change,
        token: &AccessTokenRow,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        query(
            "INSERT INTO access_tokens (name, secret_hash, scopes, created_by, created_at, \
             expires_at, last_used_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&token.name)
        .bind(&token.secret_hash)
        .bind(&token.scopes)
        .bind(&token.created_by)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.last_used_at)
        .bind(token.revoked_at)
        .execute(&mut tx)
        .await
        .map_err(write_error("creating an access token"))?;
        // The scopes are the access control's JSON; they go into the event
        // as JSON, and the secret's hash does not go at all.
        let scopes: serde_json::Value = serde_json::from_str(&token.scopes)
            .unwrap_or_else(|_| serde_json::Value::String(token.scopes.clone()));
        tx.record(NewEvent::new(
            EventKind::TokenCreated,
            serde_json::json!({
                "token": token.name,
                "scopes": scopes,
                "expires_at": token.expires_at,
            }),
        ))?;
        tx.commit().await.map_err(database("committing a token"))
    }

    async fn get_access_token(&self, name: &str) -> Result<Option<AccessTokenRow>, MetaError> {
        let sql = format!("SELECT {ACCESS_TOKEN_COLUMNS} FROM access_tokens WHERE name = $1");
        query(&sql)
            .bind(name)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("reading an access token"))?
            .as_ref()
            .map(access_token_from_row)
            .transpose()
    }

    async fn touch_access_token(&self, name: &str, at: Timestamp) -> Result<(), MetaError> {
        // Read first, on a reader: a token used again within the interval
        // (every request of a busy robot) costs no write at all, which on
        // SQLite keeps it off the one writer.
        let row = query("SELECT last_used_at FROM access_tokens WHERE name = $1")
            .bind(name)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("reading a token's last use"))?
            .ok_or(MetaError::NotFound)?;
        let last: Option<Timestamp> = row.first()?;
        if last.is_some_and(|last| at >= last && at - last < TOUCH_INTERVAL_SECS) {
            return Ok(());
        }
        query("UPDATE access_tokens SET last_used_at = $1 WHERE name = $2")
            .bind(at)
            .bind(name)
            .execute(self.db.writer())
            .await
            .map_err(write_error("recording a token's use"))?;
        Ok(())
    }

    async fn revoke_access_token(&self, change: &Change, name: &str) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        let revoked = query(
            "UPDATE access_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(change.at)
        .bind(name)
        .execute(&mut tx)
        .await
        .map_err(write_error("revoking an access token"))?;
        if revoked == 0 {
            // Revoked already (keeping the first time), or unknown.
            let exists = query("SELECT 1 FROM access_tokens WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut tx)
                .await
                .map_err(database("looking up a token"))?;
            return require_one(u64::from(exists.is_some()));
        }
        tx.record(NewEvent::new(
            EventKind::TokenRevoked,
            serde_json::json!({ "token": name }),
        ))?;
        tx.commit()
            .await
            .map_err(database("committing a token's revocation"))
    }

    async fn list_access_tokens(&self) -> Result<Vec<AccessTokenRow>, MetaError> {
        let sql = format!("SELECT {ACCESS_TOKEN_COLUMNS} FROM access_tokens ORDER BY name");
        query(&sql)
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing access tokens"))?
            .iter()
            .map(access_token_from_row)
            .collect()
    }

    async fn create_refresh_token(&self, token: &RefreshTokenRow) -> Result<(), MetaError> {
        query(
            "INSERT INTO refresh_tokens (secret_hash, user_name, family, created_at, \
             expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token.secret_hash)
        .bind(&token.user)
        .bind(&token.family)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.revoked_at)
        .execute(self.db.writer())
        .await
        .map_err(write_error("creating a refresh token"))?;
        Ok(())
    }

    async fn get_refresh_token(
        &self,
        secret_hash: &str,
    ) -> Result<Option<RefreshTokenRow>, MetaError> {
        let sql =
            format!("SELECT {REFRESH_TOKEN_COLUMNS} FROM refresh_tokens WHERE secret_hash = $1");
        query(&sql)
            .bind(secret_hash)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("reading a refresh token"))?
            .as_ref()
            .map(refresh_token_from_row)
            .transpose()
    }

    async fn revoke_refresh_token(
        &self,
        secret_hash: &str,
        at: Timestamp,
    ) -> Result<(), MetaError> {
        let updated = query(
            "UPDATE refresh_tokens SET revoked_at = COALESCE(revoked_at, $1) \
             WHERE secret_hash = $2",
        )
        .bind(at)
        .bind(secret_hash)
        .execute(self.db.writer())
        .await
        .map_err(write_error("revoking a refresh token"))?;
        require_one(updated)
    }

    async fn rotate_refresh_token(
        &self,
        presented: &str,
        new: &RefreshTokenRow,
        at: Timestamp,
    ) -> Result<RefreshRotation, MetaError> {
        let mut tx = self.db.begin_write().await?;
        // The conditional revocation is the claim: of two concurrent
        // rotations of one token, only one changes its row.
        let claimed = query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE secret_hash = $2 \
             AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(at)
        .bind(presented)
        .execute(&mut tx)
        .await
        .map_err(write_error("rotating a refresh token"))?;
        let row = query(&format!(
            "SELECT {REFRESH_TOKEN_COLUMNS} FROM refresh_tokens WHERE secret_hash = $1"
        ))
        .bind(presented)
        .fetch_optional(&mut tx)
        .await
        .map_err(database("reading a refresh token"))?
        .as_ref()
        .map(refresh_token_from_row)
        .transpose()?;
        let Some(old) = row else {
            return Ok(RefreshRotation::Unusable);
        };
        if claimed == 1 {
            query(
                "INSERT INTO refresh_tokens (secret_hash, user_name, family, created_at, \
                 expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL)",
            )
            .bind(&new.secret_hash)
            .bind(&old.user)
            .bind(&old.family)
            .bind(new.created_at)
            .bind(new.expires_at)
            .execute(&mut tx)
            .await
            .map_err(write_error("storing a rotated refresh token"))?;
            tx.commit()
                .await
                .map_err(database("committing a refresh token rotation"))?;
            return Ok(RefreshRotation::Rotated);
        }
        if old.revoked_at.is_none() {
            // Live but expired: nothing to rotate and nothing stolen.
            return Ok(RefreshRotation::Unusable);
        }
        query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(&old.family)
            .execute(&mut tx)
            .await
            .map_err(write_error("revoking a refresh token family"))?;
        tx.commit()
            .await
            .map_err(database("committing a refresh token family revocation"))?;
        Ok(RefreshRotation::Reused)
    }

    async fn revoke_refresh_tokens_of_user(
        &self,
        user: &str,
        at: Timestamp,
    ) -> Result<u64, MetaError> {
        query(
            "UPDATE refresh_tokens SET revoked_at = $1 \
             WHERE user_name = $2 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(user)
        .execute(self.db.writer())
        .await
        .map_err(write_error("revoking a user's refresh tokens"))
    }
}
