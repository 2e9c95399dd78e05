//! [`AuthMetaStore`] on PostgreSQL: the tables of migrations `0003_auth.sql`
//! and `0005_signing_keys.sql`, with the same behaviour as the SQLite
//! implementation (`sqlite_auth.rs`); the shared auth suite checks both.
//!
//! # Concurrency
//!
//! Most methods are one statement, which PostgreSQL runs atomically, and
//! conflicts surface as constraint violations: a taken name is a unique
//! violation (`AlreadyExists`), a member or refresh token naming a missing
//! user or namespace a foreign-key violation (`NotFound`). A namespace and
//! its owner are inserted in one transaction, so an unknown owner leaves no
//! namespace behind.
//!
//! Signing-key changes read before they write (is there a current key? which
//! one is it?), so each runs in a transaction that first takes one
//! transaction-scoped advisory lock, [`SIGNING_KEYS_LOCK`]. They therefore run
//! one at a time, as SQLite's single writer runs them, and in `READ
//! COMMITTED` each statement after the lock sees what the previous holder
//! committed: of two nodes storing a first key on an empty database, the
//! second finds the first's key and stores nothing, and two rotations retire
//! one key after the other. The unique index on the current key
//! (`signing_keys_one_current`) backs this up: even a writer that skipped the
//! lock could not leave two current keys.

use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use crate::auth::{
    require_current, AccessTokenRow, AuthMetaError, AuthMetaStore, MemberRow, NamespaceRow,
    RefreshTokenRow, SigningKeyRotation, SigningKeyRow, UserRow,
};
use crate::common::{read_error, require_one, write_error};
use crate::postgres::PostgresMetaStore;
use crate::{MetaError, Timestamp};

/// The advisory lock every signing-key change takes, as the two 32-bit keys
/// of `pg_advisory_xact_lock(int, int)`. That form's key space is separate
/// from the one-`bigint` form's, which sqlx's migrator and the digest locks
/// of the `postgres` module use, so the lock can collide with neither.
/// The first key is "bert" in ASCII, marking the lock as Berth's in
/// `pg_locks`.
const SIGNING_KEYS_LOCK: (i32, i32) = (0x6265_7274, 1);

fn get<'r, T>(row: &'r PgRow, name: &str) -> Result<T, AuthMetaError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name)
        .map_err(|error| AuthMetaError::Meta(MetaError::Corrupt(format!("column {name}: {error}"))))
}

fn user_from_row(row: &PgRow) -> Result<UserRow, AuthMetaError> {
    Ok(UserRow {
        name: get(row, "name")?,
        password_hash: get(row, "password_hash")?,
        is_admin: get(row, "is_admin")?,
        created_at: get(row, "created_at")?,
    })
}

fn namespace_from_row(row: &PgRow) -> Result<NamespaceRow, AuthMetaError> {
    Ok(NamespaceRow {
        name: get(row, "name")?,
        visibility: get(row, "visibility")?,
        created_at: get(row, "created_at")?,
    })
}

fn access_token_from_row(row: &PgRow) -> Result<AccessTokenRow, AuthMetaError> {
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

fn refresh_token_from_row(row: &PgRow) -> Result<RefreshTokenRow, AuthMetaError> {
    Ok(RefreshTokenRow {
        secret_hash: get(row, "secret_hash")?,
        user: get(row, "user_name")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
        revoked_at: get(row, "revoked_at")?,
    })
}

fn signing_key_from_row(row: &PgRow) -> Result<SigningKeyRow, AuthMetaError> {
    Ok(SigningKeyRow {
        kid: get(row, "kid")?,
        private_key_pem: get(row, "private_key_pem")?,
        public_key_pem: get(row, "public_key_pem")?,
        created_at: get(row, "created_at")?,
        retired_at: get(row, "retired_at")?,
    })
}

const USER_COLUMNS: &str = "name, password_hash, is_admin, created_at";
const ACCESS_TOKEN_COLUMNS: &str = "name, secret_hash, scopes, created_by, created_at, \
     expires_at, last_used_at, revoked_at";
const REFRESH_TOKEN_COLUMNS: &str = "secret_hash, user_name, created_at, expires_at, revoked_at";
const SIGNING_KEY_COLUMNS: &str = "kid, private_key_pem, public_key_pem, created_at, retired_at";

impl PostgresMetaStore {
    /// Starts a transaction holding [`SIGNING_KEYS_LOCK`] until it ends.
    async fn begin_key_change(&self) -> Result<Transaction<'static, Postgres>, AuthMetaError> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(SIGNING_KEYS_LOCK.0)
            .bind(SIGNING_KEYS_LOCK.1)
            .execute(&mut *tx)
            .await
            .map_err(read_error("locking the signing keys"))?;
        Ok(tx)
    }
}

async fn insert_signing_key(
    tx: &mut Transaction<'static, Postgres>,
    key: &SigningKeyRow,
) -> Result<(), AuthMetaError> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, private_key_pem, public_key_pem, created_at, \
         retired_at) VALUES ($1, $2, $3, $4, $5)",
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

#[async_trait::async_trait]
impl AuthMetaStore for PostgresMetaStore {
    async fn create_user(&self, user: &UserRow) -> Result<(), AuthMetaError> {
        sqlx::query(
            "INSERT INTO users (name, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&user.name)
        .bind(&user.password_hash)
        .bind(user.is_admin)
        .bind(user.created_at)
        .execute(&self.pool)
        .await
        .map_err(write_error("creating a user"))?;
        Ok(())
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRow>, AuthMetaError> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(read_error("reading a user"))?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn set_password_hash(&self, name: &str, hash: &str) -> Result<(), AuthMetaError> {
        let result = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(write_error("setting a password"))?;
        require_one(result.rows_affected())
    }

    async fn set_admin(&self, name: &str, is_admin: bool) -> Result<(), AuthMetaError> {
        let result = sqlx::query("UPDATE users SET is_admin = $1 WHERE name = $2")
            .bind(is_admin)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(write_error("setting the admin flag"))?;
        require_one(result.rows_affected())
    }

    async fn list_users(&self) -> Result<Vec<UserRow>, AuthMetaError> {
        // The name columns are `COLLATE "C"`, so this is byte order.
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
            .fetch_all(&self.pool)
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
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO namespaces (name, visibility, created_at) VALUES ($1, $2, $3)")
            .bind(&namespace.name)
            .bind(&namespace.visibility)
            .bind(namespace.created_at)
            .execute(&mut *tx)
            .await
            .map_err(write_error("creating a namespace"))?;
        if let Some(owner) = owner {
            sqlx::query(
                "INSERT INTO namespace_members (namespace, user_name, role) \
                 VALUES ($1, $2, 'owner')",
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
        sqlx::query("SELECT name, visibility, created_at FROM namespaces WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(read_error("reading a namespace"))?
            .as_ref()
            .map(namespace_from_row)
            .transpose()
    }

    async fn set_visibility(&self, name: &str, visibility: &str) -> Result<(), AuthMetaError> {
        let result = sqlx::query("UPDATE namespaces SET visibility = $1 WHERE name = $2")
            .bind(visibility)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(write_error("setting visibility"))?;
        require_one(result.rows_affected())
    }

    async fn list_namespaces(&self) -> Result<Vec<NamespaceRow>, AuthMetaError> {
        sqlx::query("SELECT name, visibility, created_at FROM namespaces ORDER BY name")
            .fetch_all(&self.pool)
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
            "INSERT INTO namespace_members (namespace, user_name, role) VALUES ($1, $2, $3) \
             ON CONFLICT (namespace, user_name) DO UPDATE SET role = excluded.role",
        )
        .bind(namespace)
        .bind(user)
        .bind(role)
        .execute(&self.pool)
        .await
        .map_err(write_error("setting a member"))?;
        Ok(())
    }

    async fn remove_member(&self, namespace: &str, user: &str) -> Result<(), AuthMetaError> {
        let result =
            sqlx::query("DELETE FROM namespace_members WHERE namespace = $1 AND user_name = $2")
                .bind(namespace)
                .bind(user)
                .execute(&self.pool)
                .await
                .map_err(write_error("removing a member"))?;
        require_one(result.rows_affected())
    }

    async fn list_members(&self, namespace: &str) -> Result<Vec<MemberRow>, AuthMetaError> {
        let rows = sqlx::query(
            "SELECT namespace, user_name, role FROM namespace_members WHERE namespace = $1 \
             ORDER BY user_name",
        )
        .bind(namespace)
        .fetch_all(&self.pool)
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
            "SELECT role FROM namespace_members WHERE namespace = $1 AND user_name = $2",
        )
        .bind(namespace)
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(read_error("reading a member's role"))
    }

    async fn create_access_token(&self, token: &AccessTokenRow) -> Result<(), AuthMetaError> {
        sqlx::query(
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
        .execute(&self.pool)
        .await
        .map_err(write_error("creating an access token"))?;
        Ok(())
    }

    async fn get_access_token(&self, name: &str) -> Result<Option<AccessTokenRow>, AuthMetaError> {
        sqlx::query(&format!(
            "SELECT {ACCESS_TOKEN_COLUMNS} FROM access_tokens WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(read_error("reading an access token"))?
        .as_ref()
        .map(access_token_from_row)
        .transpose()
    }

    async fn touch_access_token(&self, name: &str, at: Timestamp) -> Result<(), AuthMetaError> {
        // Coarse on purpose, as on SQLite: at most one write per token per
        // minute. The condition is in the UPDATE, so a busy token costs one
        // statement and never a row lock; only when nothing was written does
        // a second statement tell "recently used" from "no such token".
        let result = sqlx::query(
            "UPDATE access_tokens SET last_used_at = $1 WHERE name = $2 \
             AND (last_used_at IS NULL OR $1 - last_used_at >= 60 OR $1 < last_used_at)",
        )
        .bind(at)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(write_error("recording a token's use"))?;
        if result.rows_affected() > 0 {
            return Ok(());
        }
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM access_tokens WHERE name = $1)")
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .map_err(read_error("looking up a token"))?;
        if exists {
            Ok(())
        } else {
            Err(AuthMetaError::NotFound)
        }
    }

    async fn revoke_access_token(&self, name: &str, at: Timestamp) -> Result<(), AuthMetaError> {
        let result = sqlx::query(
            "UPDATE access_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE name = $2",
        )
        .bind(at)
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(write_error("revoking an access token"))?;
        require_one(result.rows_affected())
    }

    async fn list_access_tokens(&self) -> Result<Vec<AccessTokenRow>, AuthMetaError> {
        sqlx::query(&format!(
            "SELECT {ACCESS_TOKEN_COLUMNS} FROM access_tokens ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(read_error("listing access tokens"))?
        .iter()
        .map(access_token_from_row)
        .collect()
    }

    async fn create_refresh_token(&self, token: &RefreshTokenRow) -> Result<(), AuthMetaError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (secret_hash, user_name, created_at, expires_at, \
             revoked_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token.secret_hash)
        .bind(&token.user)
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.revoked_at)
        .execute(&self.pool)
        .await
        .map_err(write_error("creating a refresh token"))?;
        Ok(())
    }

    async fn get_refresh_token(
        &self,
        secret_hash: &str,
    ) -> Result<Option<RefreshTokenRow>, AuthMetaError> {
        sqlx::query(&format!(
            "SELECT {REFRESH_TOKEN_COLUMNS} FROM refresh_tokens WHERE secret_hash = $1"
        ))
        .bind(secret_hash)
        .fetch_optional(&self.pool)
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
            "UPDATE refresh_tokens SET revoked_at = COALESCE(revoked_at, $1) \
             WHERE secret_hash = $2",
        )
        .bind(at)
        .bind(secret_hash)
        .execute(&self.pool)
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
            "UPDATE refresh_tokens SET revoked_at = $1 \
             WHERE user_name = $2 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(write_error("revoking a user's refresh tokens"))?;
        Ok(result.rows_affected())
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRow>, AuthMetaError> {
        sqlx::query(&format!(
            "SELECT {SIGNING_KEY_COLUMNS} FROM signing_keys ORDER BY created_at, kid"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(read_error("listing signing keys"))?
        .iter()
        .map(signing_key_from_row)
        .collect()
    }

    async fn insert_first_signing_key(&self, key: &SigningKeyRow) -> Result<bool, AuthMetaError> {
        require_current(key)?;
        let mut tx = self.begin_key_change().await?;
        // A new statement after the lock: it sees a key committed by
        // whoever held the lock before.
        let current: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL)",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(read_error("looking for the current signing key"))?;
        if current {
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
        let mut tx = self.begin_key_change().await?;
        // Dropped before the current key retires, so the key this rotation
        // retires is never among them, whatever the cut-off.
        let mut dropped: Vec<String> = sqlx::query_scalar(
            "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1 \
             RETURNING kid",
        )
        .bind(drop_retired_before)
        .fetch_all(&mut *tx)
        .await
        .map_err(write_error("dropping expired signing keys"))?;
        // `RETURNING` has no order, so the kids are sorted here.
        dropped.sort();
        let retired: Option<String> = sqlx::query_scalar(
            "UPDATE signing_keys SET retired_at = $1, private_key_pem = NULL \
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
