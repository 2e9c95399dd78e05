//! [`AuditStore`] in SQL.

use super::db::{database, query, Row};
use super::{limit_to_i64, SqlMetaStore};
use crate::audit::{AuditQuery, AuditRecord, AuditStore, NewAuditRecord};
use crate::{MetaError, Timestamp};

fn record_from_row(row: &Row) -> Result<AuditRecord, MetaError> {
    let detail: String = row.get("detail")?;
    Ok(AuditRecord {
        id: row.get("id")?,
        record: NewAuditRecord {
            at: row.get("at")?,
            actor_kind: row.get("actor_kind")?,
            actor_name: row.get("actor_name")?,
            actor_address: row.get("actor_address")?,
            action: row.get("action")?,
            namespace: row.get("namespace")?,
            resource: row.get("resource")?,
            outcome: row.get("outcome")?,
            detail: serde_json::from_str(&detail)
                .map_err(|e| MetaError::Corrupt(format!("an audit record's detail: {e}")))?,
            event_position: row.get("event_position")?,
        },
    })
}

/// Audit records per insert statement, ten parameters each. Small on
/// purpose: binding looks each parameter's name up in a list as long as the
/// statement's parameters (`sqlite3_bind_parameter_name`), so a statement's
/// binding cost grows with the square of its rows; at 100 rows a `perf`
/// profile of a push showed it (0.8% of the server's samples), at 16 it
/// costs a few percent of the round trip each statement saves.
const AUDIT_RECORDS_PER_STATEMENT: usize = 16;

#[async_trait::async_trait]
impl<B: 'static> AuditStore for SqlMetaStore<B> {
    async fn record_audit(&self, records: &[NewAuditRecord]) -> Result<u64, MetaError> {
        if records.is_empty() {
            return Ok(0);
        }
        // Rows go in multi-row inserts: the audit consumer stores every
        // event's record, and one statement per record was a round trip
        // to SQLite's writer thread each, about seven per pushed image.
        let mut tx = self.db.begin_write().await?;
        let mut stored = 0;
        for chunk in records.chunks(AUDIT_RECORDS_PER_STATEMENT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = 1 + 10 * i;
                    let params: Vec<String> = (p..p + 10).map(|n| format!("${n}")).collect();
                    format!("({})", params.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO audit_records (at, actor_kind, actor_name, actor_address, action, \
                     namespace, resource, outcome, detail, event_position) \
                 VALUES {} ON CONFLICT (event_position) DO NOTHING",
                rows.join(", ")
            );
            let mut statement = query(&sql);
            for record in chunk {
                statement = statement
                    .bind(record.at)
                    .bind(record.actor_kind.as_str())
                    .bind(&record.actor_name)
                    .bind(&record.actor_address)
                    .bind(record.action.as_str())
                    .bind(&record.namespace)
                    .bind(&record.resource)
                    .bind(record.outcome.as_str())
                    .bind(record.detail.to_string())
                    .bind(record.event_position);
            }
            stored += statement
                .execute(&mut tx)
                .await
                .map_err(database("recording audit records"))?;
        }
        tx.commit()
            .await
            .map_err(database("committing audit records"))?;
        Ok(stored)
    }

    async fn list_audit(&self, audit: &AuditQuery) -> Result<Vec<AuditRecord>, MetaError> {
        query(
            "SELECT id, at, actor_kind, actor_name, actor_address, action, namespace, resource, \
                 outcome, detail, event_position FROM audit_records \
             WHERE ($1 IS NULL OR at >= $1) AND ($2 IS NULL OR actor_name = $2) \
               AND ($3 IS NULL OR namespace = $3) AND ($4 IS NULL OR action = $4) \
               AND ($5 IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6",
        )
        .bind(audit.since)
        .bind(audit.actor.as_deref())
        .bind(audit.namespace.as_deref())
        .bind(audit.action.as_deref())
        .bind(audit.before_id)
        .bind(limit_to_i64(audit.limit))
        .fetch_all(self.db.reader())
        .await
        .map_err(database("reading the audit trail"))?
        .iter()
        .map(record_from_row)
        .collect()
    }

    async fn delete_audit_before(&self, before: Timestamp, limit: usize) -> Result<u64, MetaError> {
        query(
            "DELETE FROM audit_records WHERE id IN ( \
                 SELECT id FROM audit_records WHERE at < $1 ORDER BY id LIMIT $2)",
        )
        .bind(before)
        .bind(limit_to_i64(limit))
        .execute(self.db.writer())
        .await
        .map_err(database("deleting old audit records"))
    }
}
