//! [`QuotaStore`] in SQL, and the storage check the writes that add bytes
//! share. Usage itself is kept by migration 0017's triggers.

use std::collections::BTreeMap;

use super::db::{database, query, write_error, Dialect, Row, Tx};
use super::events::NewEvent;
use super::{limit_to_i64, parse_size, to_i64, SqlMetaStore};
use crate::quotas::{
    QuotaExceeded, QuotaRow, QuotaStore, QuotaUpdate, StorageDrift, TrafficCount, TrafficRow,
};
use crate::{Change, EventKind, MetaError, Timestamp};

/// Refuses the write in `tx` with [`MetaError::QuotaExceeded`] if adding
/// `held` (digest and size of each thing it will store) to `namespace`
/// would take its usage beyond its limit (its own, else `default`).
///
/// Called after the caller's digest locks and before its inserts. On
/// PostgreSQL it locks the namespace's usage row, which the triggers that
/// change usage lock first too, so the usage and the digest counts read
/// here stay as they are until this transaction ends: two writers adding
/// bytes to one namespace decide one after the other, each on the other's
/// committed result. Without any limit it costs one statement, which a
/// blob link and a manifest push save by reading the namespace's own limit
/// with the facts they read anyway ([`super::destination`]) and calling
/// this only when some limit applies.
pub(crate) async fn check_storage(
    tx: &mut Tx,
    default: Option<u64>,
    namespace: &str,
    held: &[(&str, u64)],
) -> Result<(), MetaError> {
    let sql = format!(
        "SELECT storage_bytes, storage_limit FROM namespace_quotas WHERE namespace = $1{}",
        tx.dialect().for_update()
    );
    let Some(row) = query(&sql)
        .bind(namespace)
        .fetch_optional(&mut *tx)
        .await
        .map_err(database("reading a namespace's storage usage"))?
    else {
        return Ok(());
    };
    let own: Option<i64> = row.get("storage_limit")?;
    let Some(limit) = own.map(parse_size).transpose()?.or(default) else {
        return Ok(());
    };
    let usage = parse_size(row.get("storage_bytes")?)?;
    let digests: Vec<&str> = held.iter().map(|(digest, _)| *digest).collect();
    let sql = format!(
        "SELECT l.value FROM {} WHERE NOT EXISTS (SELECT 1 FROM namespace_blob_refs nb \
         WHERE nb.namespace = $2 AND nb.digest = l.value)",
        tx.dialect().list(1)
    );
    let new: Vec<String> = query(&sql)
        .bind(digests)
        .bind(namespace)
        .fetch_all(&mut *tx)
        .await
        .map_err(database("looking up what a namespace holds"))?
        .iter()
        .map(Row::first)
        .collect::<Result<_, _>>()?;
    // Each digest once, even if the write names it twice.
    let adding: u64 = held
        .iter()
        .filter(|(digest, _)| new.iter().any(|n| n == digest))
        .map(|(digest, size)| (*digest, *size))
        .collect::<BTreeMap<_, _>>()
        .values()
        .sum();
    if adding > 0 && usage.saturating_add(adding) > limit {
        return Err(MetaError::QuotaExceeded(Box::new(QuotaExceeded {
            namespace: namespace.to_owned(),
            usage,
            limit,
            adding,
        })));
    }
    Ok(())
}

/// The columns of a [`QuotaRow`], with the traffic of month `$1`.
const QUOTA_COLUMNS: &str = "q.namespace, q.storage_bytes, q.storage_limit, q.traffic_limit, \
     COALESCE((SELECT t.bytes FROM namespace_traffic t \
         WHERE t.namespace = q.namespace AND t.month = $1), 0) AS traffic_bytes";

fn limit_from(row: &Row, column: &str) -> Result<Option<u64>, MetaError> {
    row.get::<Option<i64>>(column)?.map(parse_size).transpose()
}

fn quota_from_row(row: &Row) -> Result<QuotaRow, MetaError> {
    Ok(QuotaRow {
        namespace: row.get("namespace")?,
        storage_bytes: parse_size(row.get("storage_bytes")?)?,
        storage_limit: limit_from(row, "storage_limit")?,
        traffic_limit: limit_from(row, "traffic_limit")?,
        traffic_bytes: parse_size(row.get("traffic_bytes")?)?,
    })
}

fn stored_limit(limit: Option<u64>) -> Result<Option<i64>, MetaError> {
    limit.map(|l| to_i64(l, "quota limit")).transpose()
}

/// Every namespace's usage recounted from the data: each digest a
/// namespace's links, manifest references and manifests hold, once.
const ACTUAL_REFS: &str = "SELECT namespace, digest, MAX(size) AS size, COUNT(*) AS refs FROM ( \
       SELECT r.namespace AS namespace, rb.digest AS digest, b.size AS size \
         FROM repository_blobs rb \
         JOIN repositories r ON r.id = rb.repository_id \
         JOIN blobs b ON b.digest = rb.digest \
       UNION ALL \
       SELECT r.namespace, mb.blob_digest, b.size \
         FROM manifest_blobs mb \
         JOIN repositories r ON r.id = mb.repository_id \
         JOIN blobs b ON b.digest = mb.blob_digest \
       UNION ALL \
       SELECT r.namespace, m.digest, m.size \
         FROM manifests m \
         JOIN repositories r ON r.id = m.repository_id \
     ) AS holders GROUP BY namespace, digest";

#[async_trait::async_trait]
impl<B: 'static> QuotaStore for SqlMetaStore<B> {
    async fn quota(
        &self,
        namespace: &str,
        month: Timestamp,
    ) -> Result<Option<QuotaRow>, MetaError> {
        let sql = format!("SELECT {QUOTA_COLUMNS} FROM namespace_quotas q WHERE q.namespace = $2");
        query(&sql)
            .bind(month)
            .bind(namespace)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("reading a namespace's quota"))?
            .as_ref()
            .map(quota_from_row)
            .transpose()
    }

    async fn list_quotas(
        &self,
        after: Option<&str>,
        limit: usize,
        month: Timestamp,
    ) -> Result<Vec<QuotaRow>, MetaError> {
        let sql = format!(
            "SELECT {QUOTA_COLUMNS} FROM namespace_quotas q WHERE q.namespace > $2 \
             ORDER BY q.namespace LIMIT $3"
        );
        query(&sql)
            .bind(month)
            .bind(after.unwrap_or(""))
            .bind(limit_to_i64(limit))
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing quotas"))?
            .iter()
            .map(quota_from_row)
            .collect()
    }

    async fn set_quota(
        &self,
        change: &Change,
        namespace: &str,
        update: &QuotaUpdate,
        month: Timestamp,
    ) -> Result<QuotaRow, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        let sql = format!(
            "SELECT {QUOTA_COLUMNS} FROM namespace_quotas q WHERE q.namespace = $2{}",
            tx.dialect().for_update()
        );
        let previous = query(&sql)
            .bind(month)
            .bind(namespace)
            .fetch_optional(&mut tx)
            .await
            .map_err(database("reading a namespace's quota"))?
            .as_ref()
            .map(quota_from_row)
            .transpose()?
            .ok_or(MetaError::NotFound)?;
        let mut next = previous.clone();
        if let Some(storage) = update.storage_limit {
            next.storage_limit = storage;
        }
        if let Some(traffic) = update.traffic_limit {
            next.traffic_limit = traffic;
        }
        if next == previous {
            return Ok(previous);
        }
        query(
            "UPDATE namespace_quotas SET storage_limit = $1, traffic_limit = $2 \
             WHERE namespace = $3",
        )
        .bind(stored_limit(next.storage_limit)?)
        .bind(stored_limit(next.traffic_limit)?)
        .bind(namespace)
        .execute(&mut tx)
        .await
        .map_err(write_error("setting a quota"))?;
        tx.record(NewEvent::namespace(
            EventKind::QuotaSet,
            namespace,
            serde_json::json!({
                "storage_limit": next.storage_limit,
                "traffic_limit": next.traffic_limit,
                "previous": {
                    "storage_limit": previous.storage_limit,
                    "traffic_limit": previous.traffic_limit,
                },
            }),
        ))?;
        tx.commit().await.map_err(database("committing a quota"))?;
        Ok(next)
    }

    async fn recompute_storage(&self, change: &Change) -> Result<Vec<StorageDrift>, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        // Every usage row, in name order (the order any other multi-row
        // lock would take): writes that would change usage wait until the
        // recount commits.
        let sql = format!(
            "SELECT namespace FROM namespace_quotas ORDER BY namespace{}",
            tx.dialect().for_update()
        );
        query(&sql)
            .fetch_all(&mut tx)
            .await
            .map_err(database("locking usage"))?;
        // The per-digest counts are rebuilt whatever the totals say: a
        // count off by some holders would make a later removal free bytes
        // too early or never.
        query("DELETE FROM namespace_blob_refs")
            .execute(&mut tx)
            .await
            .map_err(database("clearing usage counts"))?;
        let sql = format!(
            "INSERT INTO namespace_blob_refs (namespace, digest, size, refs) \
             SELECT namespace, digest, size, refs FROM ({ACTUAL_REFS}) AS a WHERE true"
        );
        query(&sql)
            .execute(&mut tx)
            .await
            .map_err(database("recounting usage counts"))?;
        let figures = query(
            "SELECT q.namespace, q.storage_bytes AS recorded, \
                 CAST(COALESCE((SELECT SUM(nb.size) FROM namespace_blob_refs nb \
                     WHERE nb.namespace = q.namespace), 0) AS BIGINT) AS actual \
             FROM namespace_quotas q ORDER BY q.namespace",
        )
        .fetch_all(&mut tx)
        .await
        .map_err(database("recounting usage"))?
        .iter()
        .map(|row| {
            Ok(StorageDrift {
                namespace: row.get("namespace")?,
                recorded: parse_size(row.get("recorded")?)?,
                actual: parse_size(row.get("actual")?)?,
            })
        })
        .collect::<Result<Vec<_>, MetaError>>()?;
        for drift in figures.iter().filter(|d| d.recorded != d.actual) {
            query("UPDATE namespace_quotas SET storage_bytes = $1 WHERE namespace = $2")
                .bind(to_i64(drift.actual, "usage")?)
                .bind(&drift.namespace)
                .execute(&mut tx)
                .await
                .map_err(database("correcting usage"))?;
            tx.record(NewEvent::namespace(
                EventKind::QuotaRecomputed,
                &drift.namespace,
                serde_json::json!({ "recorded": drift.recorded, "actual": drift.actual }),
            ))?;
        }
        tx.commit()
            .await
            .map_err(database("committing a usage recount"))?;
        Ok(figures)
    }

    async fn record_quota_exceeded(
        &self,
        change: &Change,
        namespace: &str,
        detail: serde_json::Value,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        if tx.dialect() == Dialect::Postgres {
            // An event row names its transaction's id, which a transaction
            // that writes nothing else has only once asked for it.
            query("SELECT pg_current_xact_id()")
                .execute(&mut tx)
                .await
                .map_err(database("starting a quota event"))?;
        }
        tx.record(NewEvent::namespace(
            EventKind::QuotaExceeded,
            namespace,
            detail,
        ))?;
        tx.commit()
            .await
            .map_err(database("committing a quota event"))
    }

    async fn record_traffic(&self, counts: &[TrafficCount]) -> Result<(), MetaError> {
        if counts.is_empty() {
            return Ok(());
        }
        // Summed per row first, in a sorted map: each row updated once, in
        // one order.
        let mut sums: BTreeMap<(&str, Timestamp), u64> = BTreeMap::new();
        let mut days: BTreeMap<(&str, Timestamp), u64> = BTreeMap::new();
        for count in counts {
            let sum = sums.entry((&count.namespace, count.month)).or_default();
            *sum = sum.saturating_add(count.bytes);
            let sum = days.entry((&count.namespace, count.day)).or_default();
            *sum = sum.saturating_add(count.bytes);
        }
        let mut tx = self.db.begin_write().await?;
        // The daily rows first, sorted, as `record_pulls` takes them.
        for ((namespace, day), bytes) in days {
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            super::usage::add_daily(&mut tx, namespace, day, 0, bytes).await?;
        }
        for ((namespace, month), bytes) in sums {
            query(
                "INSERT INTO namespace_traffic (namespace, month, bytes) \
                 SELECT name, $2, $3 FROM namespaces WHERE name = $1 \
                 ON CONFLICT (namespace, month) DO UPDATE \
                 SET bytes = namespace_traffic.bytes + excluded.bytes",
            )
            .bind(namespace)
            .bind(month)
            .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
            .execute(&mut tx)
            .await
            .map_err(database("recording traffic"))?;
        }
        tx.commit().await.map_err(database("committing traffic"))
    }

    async fn traffic(&self, month: Timestamp) -> Result<Vec<TrafficRow>, MetaError> {
        query(
            "SELECT q.namespace, COALESCE(t.bytes, 0) AS bytes, q.traffic_limit \
             FROM namespace_quotas q \
             LEFT JOIN namespace_traffic t ON t.namespace = q.namespace AND t.month = $1 \
             WHERE t.bytes IS NOT NULL OR q.traffic_limit IS NOT NULL \
             ORDER BY q.namespace",
        )
        .bind(month)
        .fetch_all(self.db.reader())
        .await
        .map_err(database("reading traffic"))?
        .iter()
        .map(|row| {
            Ok(TrafficRow {
                namespace: row.get("namespace")?,
                bytes: parse_size(row.get("bytes")?)?,
                limit: limit_from(row, "traffic_limit")?,
            })
        })
        .collect()
    }
}
