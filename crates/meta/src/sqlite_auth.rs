//! [`AuthMetaStore`] on SQLite: the tables of migrations `0003_auth.sql` and
//! `0005_signing_keys.sql`. Writes go through the single writer connection
//! like every other write; signing-key changes, which read before they
//! write, run in `BEGIN IMMEDIATE` transactions, so two processes changing
//! keys at once take turns.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::auth::{
    require_current, AccessTokenRow, AuthMetaError, AuthMetaStore, MemberRow, NamespaceRow,
    RefreshTokenRow, SigningKeyRotation, SigningKeyRow, UserRow,
};
use crate::common::{read_error, require_one, write_error};
use crate::sqlite::SqliteMetaStore;
use crate::{MetaError, Timestamp};

fn get<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T, AuthMetaError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(name)
        .map_err(|error| AuthMetaError::Meta(MetaError::Corrupt(format!("column {name}: {error}"))))
}

fn user_from_row(row: &SqliteRow) -> Result<UserRow, AuthMetaError> {
    Ok(UserRow {
        name: get(row, "name")?,
        password_hash: get(row, "password_hash")?,
        is_admin: get::<i64>(row, "is_admin")? != 0,
        created_at: get(row, "created_at")?,
    })
}

fn namespace_from_row(row: &SqliteRow) -> Result<NamespaceRow, AuthMetaError> {
    Ok(NamespaceRow {
        name: get(row, "name")?,
        visibility: get(row, "visibility")?,
        created_at: get(row, "created_at")?,
    })
}

fn access_token_from_row(row: &SqliteRow) -> Result<AccessTokenRow, AuthMetaError> {
    Ok(AccessTokenRow {
        name: get(row, "name")?,
        secret_hash: get(row, "secret_hash")?,
        scopes: get(row, "scopes")?,
        created_by: get(row, "created_by")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
        last_used_at: get(row, "last_used_at")?,
        revoked_at: get(row, "revoked_at")?,
    })
}

fn refresh_token_from_row(row: &SqliteRow) -> Result<RefreshTokenRow, AuthMetaError> {
    Ok(RefreshTokenRow {
        secret_hash: get(row, "secret_hash")?,
        user: get(row, "user_name")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
        revoked_at: get(row, "revoked_at")?,
    })
}

fn signing_key_from_row(row: &SqliteRow) -> Result<SigningKeyRow, AuthMetaError> {
    Ok(SigningKeyRow {
        kid: get(row, "kid")?,
        private_key_pem: get(row, "private_key_pem")?,
        public_key_pem: get(row, "public_key_pem")?,
        created_at: get(row, "created_at")?,
        retired_at: get(row, "retired_at")?,
    })
}

const ACCESS_TOKEN_COLUMNS: &str = "name, secret_hash, scopes, created_by, created_at, \
     expires_at, last_used_at, revoked_at";
const REFRESH_TOKEN_COLUMNS: &str = "secret_hash, user_name, created_at, expires_at, revoked_at";
const SIGNING_KEY_COLUMNS: &str = "kid, private_key_pem, public_key_pem, created_at, retired_at";

#[async_trait::async_trait]
impl AuthMetaStore for SqliteMetaStore {
    async fn create_user(&self, user: &UserRow) -> Result<(), AuthMetaError> {
        sqlx::query(
            "INSERT INTO users (name, password_hash, is_admin, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&user.name)
        .bind(&user.password_hash)
        .bind(i64::from(user.is_admin))
        .bind(user.created_at)
        .execute(&self.write)
        .await
        .map_err(write_error("creating a user"))?;
        Ok(())
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRow>, AuthMetaError> {
        sqlx::query("SELECT name, password_hash, is_admin, created_at FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(read_error("reading a user"))?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn set_password_hash(&self, name: &str, hash: &str) -> Result<(), AuthMetaError> {
        let result = sqlx::query("UPDATE users SET password_hash = ? WHERE name = ?")
            .bind(hash)
            .bind(name)
            .execute(&self.write)
            .await
            .map_err(write_error("setting a password"))?;
        require_one(result.rows_affected())
    }

    async fn set_admin(&self, name: &str, is_admin: bool) -> Result<(), AuthMetaError> {
        let result = sqlx::query("UPDATE users SET is_admin = ? WHERE name = ?")
            .bind(i64::from(is_admin))
            .bind(name)
            .execute(&self.write)
            .await
            .map_err(write_error("setting the admin flag"))?;
        require_one(result.rows_affected())
    }

    async fn list_users(&self) -> Result<Vec<UserRow>, AuthMetaError> {
        sqlx::query(
            "SELECT name, password_hash, is_admin, created_at FROM users \
             ORDER BY name COLLATE BINARY",
        )
        .fetch_all(&self.read)
        .await
        .map_err(read_error("listing users"))?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceRow,
        owner: Option<&str>,
    ) -> Result<(), AuthMetaError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO namespaces (name, visibility, created_at) VALUES (?, ?, ?)")
            .bind(&namespace.name)
            .bind(&namespace.visibility)
            .bind(namespace.created_at)
            .execute(&mut *tx)
            .await
            .map_err(write_error("creating a namespace"))?;
        if let Some(owner) = owner {
            sqlx::query(
                "INSERT INTO namespace_members (namespace, user_name, role) VALUES (?, ?, 'owner')",
            )
            .bind(&namespace.name)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(write_error("adding a namespace owner"))?;
        }
        tx.commit()
            .await
            .map_err(write_error("committing a namespace"))?;
        Ok(())
    }

    async fn get_namespace(&self, name: &str) -> Result<Option<NamespaceRow>, AuthMetaError> {
        sqlx::query("SELECT name, visibility, created_at FROM namespaces WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(read_error("reading a namespace"))?
            .as_ref()
            .map(namespace_from_row)
            .transpose()
    }

    async fn set_visibility(&self, name: &str, visibility: &str) -> Result<(), AuthMetaError> {
        let result = sqlx::query("UPDATE namespaces SET visibility = ? WHERE name = ?")
            .bind(visibility)
            .bind(name)
            .execute(&self.write)
            .await
            .map_err(write_error("setting visibility"))?;
        require_one(result.rows_affected())
    }

    async fn list_namespaces(&self) -> Result<Vec<NamespaceRow>, AuthMetaError> {
        sqlx::query(
            "SELECT name, visibility, created_at FROM namespaces ORDER BY name COLLATE BINARY",
        )
        .fetch_all(&self.read)
        .await
        .map_err(read_error("listing namespaces"))?
        .iter()
        .map(namespace_from_row)
        .collect()
    }

    async fn set_member(
        &self,
        namespace: &str,
        user: &str,
        role: &str,
    ) -> Result<(), AuthMetaError> {
        sqlx::query(
            "INSERT INTO namespace_members (namespace, user_name, role) VALUES (?, ?, ?) \
             ON CONFLICT (namespace, user_name) DO UPDATE SET role = excluded.role",
        )
        .bind(namespace)
        .bind(user)
        .bind(role)
        .execute(&self.write)
        .await
        .map_err(write_error("setting a member"))?;
        Ok(())
    }

    async fn remove_member(&self, namespace: &str, user: &str) -> Result<(), AuthMetaError> {
        let result =
            sqlx::query("DELETE FROM namespace_members WHERE namespace = ? AND user_name = ?")
                .bind(namespace)
                .bind(user)
                .execute(&self.write)
                .await
                .map_err(write_error("removing a member"))?;
        require_one(result.rows_affected())
    }

    async fn list_members(&self, namespace: &str) -> Result<Vec<MemberRow>, AuthMetaError> {
        let rows = sqlx::query(
            "SELECT namespace, user_name, role FROM namespace_members WHERE namespace = ? \
             ORDER BY user_name COLLATE BINARY",
        )
        .bind(namespace)
        .fetch_all(&self.read)
        .await
        .map_err(read_error("listing members"))?;
        rows.iter()
            .map(|row| {
                Ok(MemberRow {
                    namespace: get(row, "namespace")?,
                    user: get(row, "user_name")?,
                    role: get(row, "role")?,
                })
            })
            .collect()
    }

    async fn member_role(
        &self,
        namespace: &str,
        user: &str,
    ) -> Result<Option<String>, AuthMetaError> {
        sqlx::query_scalar(
            "SELECT role FROM namespace_members WHERE namespace = ? AND user_name = ?",
        )
        .bind(namespace)
        .bind(user)
        .fetch_optional(&self.read)
        .await
        .map_err(read_error("reading a member's role"))
    }

    async fn create_access_token(&self, token: &AccessTokenRow) -> Result<(), AuthMetaError> {
        sqlx::query(
            "INSERT INTO access_tokens (name, secret_hash, scopes, created_by, created_at, \
             expires_at, last_used_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&token.name)
        .bind(&token.secret_hash)
        .bind(&token.scopes)
        .bind(&token.created_by)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.last_used_at)
        .bind(token.revoked_at)
        .execute(&self.write)
        .await
        .map_err(write_error("creating an access token"))?;
        Ok(())
    }

    async fn get_access_token(&self, name: &str) -> Result<Option<AccessTokenRow>, AuthMetaError> {
        sqlx::query(&format!(
            "SELECT {ACCESS_TOKEN_COLUMNS} FROM access_tokens WHERE name = ?"
        ))
        .bind(name)
        .fetch_optional(&self.read)
        .await
        .map_err(read_error("reading an access token"))?
        .as_ref()
        .map(access_token_from_row)
        .transpose()
    }

    async fn touch_access_token(&self, name: &str, at: Timestamp) -> Result<(), AuthMetaError> {
        // Coarse on purpose: at most one write per token per minute.
        let exists: Option<Option<i64>> =
            sqlx::query_scalar("SELECT last_used_at FROM access_tokens WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.read)
                .await
                .map_err(read_error("reading a token's last use"))?;
        match exists {
            None => Err(AuthMetaError::NotFound),
            Some(Some(last)) if at - last < 60 && at >= last => Ok(()),
            Some(_) => {
                sqlx::query("UPDATE access_tokens SET last_used_at = ? WHERE name = ?")
                    .bind(at)
                    .bind(name)
                    .execute(&self.write)
                    .await
                    .map_err(write_error("recording a token's use"))?;
                Ok(())
            }
        }
    }

    async fn revoke_access_token(&self, name: &str, at: Timestamp) -> Result<(), AuthMetaError> {
        let result = sqlx::query(
            "UPDATE access_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?",
        )
        .bind(at)
        .bind(name)
        .execute(&self.write)
        .await
        .map_err(write_error("revoking an access token"))?;
        require_one(result.rows_affected())
    }

    async fn list_access_tokens(&self) -> Result<Vec<AccessTokenRow>, AuthMetaError> {
        sqlx::query(&format!(
            "SELECT {ACCESS_TOKEN_COLUMNS} FROM access_tokens ORDER BY name COLLATE BINARY"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(read_error("listing access tokens"))?
        .iter()
        .map(access_token_from_row)
        .collect()
    }

    async fn create_refresh_token(&self, token: &RefreshTokenRow) -> Result<(), AuthMetaError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (secret_hash, user_name, created_at, expires_at, \
             revoked_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&token.secret_hash)
        .bind(&token.user)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.revoked_at)
        .execute(&self.write)
        .await
        .map_err(write_error("creating a refresh token"))?;
        Ok(())
    }

    async fn get_refresh_token(
        &self,
        secret_hash: &str,
    ) -> Result<Option<RefreshTokenRow>, AuthMetaError> {
        sqlx::query(&format!(
            "SELECT {REFRESH_TOKEN_COLUMNS} FROM refresh_tokens WHERE secret_hash = ?"
        ))
        .bind(secret_hash)
        .fetch_optional(&self.read)
        .await
        .map_err(read_error("reading a refresh token"))?
        .as_ref()
        .map(refresh_token_from_row)
        .transpose()
    }

    async fn revoke_refresh_token(
        &self,
        secret_hash: &str,
        at: Timestamp,
    ) -> Result<(), AuthMetaError> {
        let result = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE secret_hash = ?",
        )
        .bind(at)
        .bind(secret_hash)
        .execute(&self.write)
        .await
        .map_err(write_error("revoking a refresh token"))?;
        require_one(result.rows_affected())
    }

    async fn revoke_refresh_tokens_of_user(
        &self,
        user: &str,
        at: Timestamp,
    ) -> Result<u64, AuthMetaError> {
        let result = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE user_name = ? AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(user)
        .execute(&self.write)
        .await
        .map_err(write_error("revoking a user's refresh tokens"))?;
        Ok(result.rows_affected())
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRow>, AuthMetaError> {
        sqlx::query(&format!(
            "SELECT {SIGNING_KEY_COLUMNS} FROM signing_keys \
             ORDER BY created_at, kid COLLATE BINARY"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(read_error("listing signing keys"))?
        .iter()
        .map(signing_key_from_row)
        .collect()
    }

    async fn insert_first_signing_key(&self, key: &SigningKeyRow) -> Result<bool, AuthMetaError> {
        require_current(key)?;
        // BEGIN IMMEDIATE holds the write lock from the check to the commit,
        // so another process cannot store its own first key in between.
        let mut tx = self.begin_write().await?;
        let current: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys WHERE retired_at IS NULL")
                .fetch_one(&mut *tx)
                .await
                .map_err(read_error("looking for the current signing key"))?;
        if current > 0 {
            return Ok(false);
        }
        insert_signing_key(&mut tx, key).await?;
        tx.commit()
            .await
            .map_err(write_error("committing the first signing key"))?;
        Ok(true)
    }

    async fn rotate_signing_key(
        &self,
        key: &SigningKeyRow,
        drop_retired_before: Timestamp,
    ) -> Result<SigningKeyRotation, AuthMetaError> {
        require_current(key)?;
        let mut tx = self.begin_write().await?;
        // Dropped before the current key retires, so the key this rotation
        // retires is never among them, whatever the cut-off.
        let mut dropped: Vec<String> = sqlx::query_scalar(
            "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ? \
             RETURNING kid",
        )
        .bind(drop_retired_before)
        .fetch_all(&mut *tx)
        .await
        .map_err(write_error("dropping expired signing keys"))?;
        // `RETURNING` has no order, so the kids are sorted here.
        dropped.sort();
        let retired: Option<String> = sqlx::query_scalar(
            "UPDATE signing_keys SET retired_at = ?, private_key_pem = NULL \
             WHERE retired_at IS NULL RETURNING kid",
        )
        .bind(key.created_at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(write_error("retiring the current signing key"))?;
        insert_signing_key(&mut tx, key).await?;
        tx.commit()
            .await
            .map_err(write_error("committing a key rotation"))?;
        Ok(SigningKeyRotation { retired, dropped })
    }
}

async fn insert_signing_key(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    key: &SigningKeyRow,
) -> Result<(), AuthMetaError> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, private_key_pem, public_key_pem, created_at, \
         retired_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&key.kid)
    .bind(&key.private_key_pem)
    .bind(&key.public_key_pem)
    .bind(key.created_at)
    .bind(key.retired_at)
    .execute(&mut **tx)
    .await
    .map_err(write_error("storing a signing key"))?;
    Ok(())
}
