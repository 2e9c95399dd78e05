//! [`SigningKeyStore`] in SQL.
//!
//! Signing-key changes read before they write (is there a current key?
//! which one is it?), so each runs in a write transaction that first takes
//! [`lock_signing_keys`]: on SQLite the write transaction (`BEGIN
//! IMMEDIATE`) already excludes every other writer; on PostgreSQL a
//! transaction-scoped advisory lock makes key changes run one at a time,
//! and in `READ COMMITTED` each statement after the lock sees what the
//! previous holder committed. The unique index on the current key
//! (`signing_keys_one_current`) backs this up: even a writer that skipped
//! the lock could not leave two current keys.

use super::db::{database, query, write_error, Dialect, Row, Tx};
use super::SqlMetaStore;
use crate::auth::{require_current, SigningKeyRotation, SigningKeyRow, SigningKeyStore};
use crate::{MetaError, Timestamp};

const SIGNING_KEY_COLUMNS: &str = "kid, private_key_pem, public_key_pem, created_at, retired_at";

/// The advisory lock every signing-key change takes on PostgreSQL, as the
/// two 32-bit keys of `pg_advisory_xact_lock(int, int)`. That form's key
/// space is separate from the one-`bigint` form's, which sqlx's migrator
/// and the digest locks use, so the lock can collide with neither. The
/// first key is "bert" in ASCII, marking the lock as Berth's in `pg_locks`.
const SIGNING_KEYS_LOCK: (i32, i32) = (0x6265_7274, 1);

fn signing_key_from_row(row: &Row) -> Result<SigningKeyRow, MetaError> {
    Ok(SigningKeyRow {
        kid: row.get("kid")?,
        private_key_pem: row.get("private_key_pem")?,
        public_key_pem: row.get("public_key_pem")?,
        created_at: row.get("created_at")?,
        retired_at: row.get("retired_at")?,
    })
}

/// Serializes key changes (see the module documentation).
async fn lock_signing_keys(tx: &mut Tx) -> Result<(), MetaError> {
    if tx.dialect() == Dialect::Sqlite {
        return Ok(());
    }
    let (class, key) = SIGNING_KEYS_LOCK;
    query(&format!("SELECT pg_advisory_xact_lock({class}, {key})"))
        .execute(tx)
        .await
        .map_err(database("locking the signing keys"))?;
    Ok(())
}

async fn insert_signing_key(tx: &mut Tx, key: &SigningKeyRow) -> Result<(), MetaError> {
    query(
        "INSERT INTO signing_keys (kid, private_key_pem, public_key_pem, created_at, \
         retired_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&key.kid)
    .bind(&key.private_key_pem)
    .bind(&key.public_key_pem)
    .bind(key.created_at)
    .bind(key.retired_at)
    .execute(tx)
    .await
    .map_err(write_error("storing a signing key"))?;
    Ok(())
}

#[async_trait::async_trait]
impl<B: 'static> SigningKeyStore for SqlMetaStore<B> {
    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRow>, MetaError> {
        let sql =
            format!("SELECT {SIGNING_KEY_COLUMNS} FROM signing_keys ORDER BY created_at, kid");
        query(&sql)
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing signing keys"))?
            .iter()
            .map(signing_key_from_row)
            .collect()
    }

    async fn insert_first_signing_key(&self, key: &SigningKeyRow) -> Result<bool, MetaError> {
        require_current(key)?;
        let mut tx = self.db.begin_write().await?;
        lock_signing_keys(&mut tx).await?;
        // A new statement after the lock: it sees a key committed by
        // whoever held the lock before.
        let current = query("SELECT 1 FROM signing_keys WHERE retired_at IS NULL")
            .fetch_optional(&mut tx)
            .await
            .map_err(database("looking for the current signing key"))?;
        if current.is_some() {
            return Ok(false);
        }
        insert_signing_key(&mut tx, key).await?;
        tx.commit()
            .await
            .map_err(write_error("committing the first signing key"))?;
        Ok(true)
    }

    async fn replace_signing_private_key(
        &self,
        kid: &str,
        expected: &str,
        new: &str,
    ) -> Result<bool, MetaError> {
        // One conditional update: no lock needed, it changes the row only
        // as it was read.
        let replaced = query(
            "UPDATE signing_keys SET private_key_pem = $1 \
             WHERE kid = $2 AND private_key_pem = $3",
        )
        .bind(new)
        .bind(kid)
        .bind(expected)
        .execute(self.db.writer())
        .await
        .map_err(write_error("replacing a signing key's private half"))?;
        Ok(replaced == 1)
    }

    async fn rotate_signing_key(
        &self,
        key: &SigningKeyRow,
        drop_retired_before: Timestamp,
    ) -> Result<SigningKeyRotation, MetaError> {
        require_current(key)?;
        let mut tx = self.db.begin_write().await?;
        lock_signing_keys(&mut tx).await?;
        // Dropped before the current key retires, so the key this rotation
        // retires is never among them, whatever the cut-off.
        let mut dropped: Vec<String> = query(
            "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < $1 \
             RETURNING kid",
        )
        .bind(drop_retired_before)
        .fetch_all(&mut tx)
        .await
        .map_err(write_error("dropping expired signing keys"))?
        .iter()
        .map(Row::first)
        .collect::<Result<_, _>>()?;
        // `RETURNING` has no order, so the kids are sorted here.
        dropped.sort();
        let retired: Option<String> = query(
            "UPDATE signing_keys SET retired_at = $1, private_key_pem = NULL \
             WHERE retired_at IS NULL RETURNING kid",
        )
        .bind(key.created_at)
        .fetch_optional(&mut tx)
        .await
        .map_err(write_error("retiring the current signing key"))?
        .map(|row| row.first())
        .transpose()?;
        insert_signing_key(&mut tx, key).await?;
        tx.commit()
            .await
            .map_err(write_error("committing a key rotation"))?;
        Ok(SigningKeyRotation { retired, dropped })
    }
}
