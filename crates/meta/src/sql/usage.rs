//! [`UsageHistoryStore`] in SQL, and the daily additions the pull and
//! traffic batches make.

use super::db::{database, query, Tx};
use super::{parse_size, SqlMetaStore};
use crate::usage::{DailyUsage, UsageHistoryStore};
use crate::{MetaError, Timestamp};

/// Adds `pulls` and `pull_bytes` to `namespace`'s row of `day` in `tx`,
/// creating it with the namespace's storage now; nothing for a namespace
/// that does not exist.
pub(crate) async fn add_daily(
    tx: &mut Tx,
    namespace: &str,
    day: Timestamp,
    pulls: i64,
    pull_bytes: i64,
) -> Result<(), MetaError> {
    query(
        "INSERT INTO namespace_usage_daily (namespace, day, storage_bytes, pulls, pull_bytes) \
         SELECT namespace, $2, storage_bytes, $3, $4 FROM namespace_quotas WHERE namespace = $1 \
         ON CONFLICT (namespace, day) DO UPDATE \
         SET pulls = namespace_usage_daily.pulls + excluded.pulls, \
             pull_bytes = namespace_usage_daily.pull_bytes + excluded.pull_bytes",
    )
    .bind(namespace)
    .bind(day)
    .bind(pulls)
    .bind(pull_bytes)
    .execute(&mut *tx)
    .await
    .map_err(database("adding to a namespace's daily usage"))?;
    Ok(())
}

#[async_trait::async_trait]
impl<B: 'static> UsageHistoryStore for SqlMetaStore<B> {
    async fn snapshot_storage(&self, day: Timestamp) -> Result<u64, MetaError> {
        let mut tx = self.db.begin_write().await?;
        let written = query(
            "INSERT INTO namespace_usage_daily (namespace, day, storage_bytes, pulls, pull_bytes) \
             SELECT namespace, $1, storage_bytes, 0, 0 FROM namespace_quotas WHERE true \
             ON CONFLICT (namespace, day) DO UPDATE \
             SET storage_bytes = excluded.storage_bytes",
        )
        .bind(day)
        .execute(&mut tx)
        .await
        .map_err(database("snapshotting namespaces' storage"))?;
        tx.commit()
            .await
            .map_err(database("committing the storage snapshot"))?;
        Ok(written)
    }

    async fn prune_usage_history(&self, before: Timestamp) -> Result<u64, MetaError> {
        let mut tx = self.db.begin_write().await?;
        let deleted = query("DELETE FROM namespace_usage_daily WHERE day < $1")
            .bind(before)
            .execute(&mut tx)
            .await
            .map_err(database("pruning the daily usage"))?;
        tx.commit()
            .await
            .map_err(database("committing the daily usage"))?;
        Ok(deleted)
    }

    async fn usage_history(
        &self,
        namespace: &str,
        from: Timestamp,
    ) -> Result<Vec<DailyUsage>, MetaError> {
        query(
            "SELECT day, storage_bytes, pulls, pull_bytes FROM namespace_usage_daily \
             WHERE namespace = $1 AND day >= $2 ORDER BY day",
        )
        .bind(namespace)
        .bind(from)
        .fetch_all(self.db.reader())
        .await
        .map_err(database("reading a namespace's daily usage"))?
        .iter()
        .map(|row| {
            Ok(DailyUsage {
                day: row.get("day")?,
                storage_bytes: parse_size(row.get("storage_bytes")?)?,
                pulls: parse_size(row.get("pulls")?)?,
                pull_bytes: parse_size(row.get("pull_bytes")?)?,
            })
        })
        .collect()
    }
}
