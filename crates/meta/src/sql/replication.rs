//! [`ReplicationStore`] in SQL.

use super::db::{database, query, write_error, Row};
use super::events::NewEvent;
use super::{limit_to_i64, parse_repository, parse_tag, to_i64, SqlMetaStore};
use crate::replication::{
    Direction, NewReplicationRule, PendingDelete, ReplicationRule, ReplicationRun,
    ReplicationStore, RunCounts, RunStatus, RunTrigger,
};
use berth_oci::{RepoName, Tag};

use crate::{Change, EventKind, MetaError, Timestamp};

const RULE_COLUMNS: &str = "id, name, direction, remote_url, credentials, repositories, tags, \
     on_push, interval_secs, enabled, created_by, created_at";

const RUN_COLUMNS: &str = "id, rule_id, trigger_kind, started_at, finished_at, status, \
     images_copied, images_skipped, blobs_copied, bytes, last_error";

fn rule_from_row(row: &Row) -> Result<ReplicationRule, MetaError> {
    let direction: String = row.get("direction")?;
    Ok(ReplicationRule {
        id: row.get("id")?,
        name: row.get("name")?,
        direction: Direction::parse(&direction).ok_or_else(|| {
            MetaError::Corrupt(format!("a replication rule's direction {direction:?}"))
        })?,
        remote_url: row.get("remote_url")?,
        credentials: row.get("credentials")?,
        repositories: row.get("repositories")?,
        tags: row.get("tags")?,
        on_push: row.get::<bool>("on_push")?,
        interval_secs: row.get("interval_secs")?,
        enabled: row.get::<bool>("enabled")?,
        created_by: row.get("created_by")?,
        created_at: row.get("created_at")?,
    })
}

fn count(row: &Row, column: &str) -> Result<u64, MetaError> {
    let value: i64 = row.get(column)?;
    u64::try_from(value).map_err(|_| MetaError::Corrupt(format!("a replication run's {column}")))
}

fn run_from_row(row: &Row) -> Result<ReplicationRun, MetaError> {
    let trigger: String = row.get("trigger_kind")?;
    let status: String = row.get("status")?;
    Ok(ReplicationRun {
        id: row.get("id")?,
        rule_id: row.get("rule_id")?,
        trigger: RunTrigger::parse(&trigger).ok_or_else(|| {
            MetaError::Corrupt(format!("a replication run's trigger {trigger:?}"))
        })?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| MetaError::Corrupt(format!("a replication run's status {status:?}")))?,
        counts: RunCounts {
            images_copied: count(row, "images_copied")?,
            images_skipped: count(row, "images_skipped")?,
            blobs_copied: count(row, "blobs_copied")?,
            bytes: count(row, "bytes")?,
        },
        last_error: row.get("last_error")?,
    })
}

/// The event detail of a rule's creation or removal: no URL, which may
/// carry a token, and no credentials.
fn rule_event(kind: EventKind, rule: &ReplicationRule) -> NewEvent {
    NewEvent::new(
        kind,
        serde_json::json!({
            "name": rule.name,
            "direction": rule.direction.as_str(),
            "repositories": rule.repositories,
            "tags": rule.tags,
        }),
    )
}

#[async_trait::async_trait]
impl<B: 'static> ReplicationStore for SqlMetaStore<B> {
    async fn create_replication_rule(
        &self,
        change: &Change,
        rule: &NewReplicationRule,
    ) -> Result<ReplicationRule, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        let sql = format!(
            "INSERT INTO replication_rules (name, direction, remote_url, credentials, \
                 repositories, tags, on_push, interval_secs, enabled, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {RULE_COLUMNS}"
        );
        let created = query(&sql)
            .bind(rule.name.as_str())
            .bind(rule.direction.as_str())
            .bind(rule.remote_url.as_str())
            .bind(rule.credentials.as_deref())
            .bind(rule.repositories.as_str())
            .bind(rule.tags.as_deref())
            .bind(rule.on_push)
            .bind(rule.interval_secs)
            .bind(rule.enabled)
            .bind(rule.created_by.as_str())
            .bind(change.at)
            .fetch_one(&mut tx)
            .await
            .map_err(write_error("creating a replication rule"))?;
        let created = rule_from_row(&created)?;
        tx.record(rule_event(EventKind::ReplicationRuleCreated, &created))?;
        tx.commit()
            .await
            .map_err(database("committing a replication rule"))?;
        Ok(created)
    }

    async fn replication_rule(&self, name: &str) -> Result<Option<ReplicationRule>, MetaError> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM replication_rules WHERE name = $1");
        query(&sql)
            .bind(name)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("reading a replication rule"))?
            .as_ref()
            .map(rule_from_row)
            .transpose()
    }

    async fn list_replication_rules(&self) -> Result<Vec<ReplicationRule>, MetaError> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM replication_rules ORDER BY name");
        query(&sql)
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing replication rules"))?
            .iter()
            .map(rule_from_row)
            .collect()
    }

    async fn delete_replication_rule(
        &self,
        change: &Change,
        name: &str,
    ) -> Result<Option<ReplicationRule>, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        // Its runs go with it (`ON DELETE CASCADE`).
        let sql = format!("DELETE FROM replication_rules WHERE name = $1 RETURNING {RULE_COLUMNS}");
        let Some(deleted) = query(&sql)
            .bind(name)
            .fetch_optional(&mut tx)
            .await
            .map_err(database("deleting a replication rule"))?
        else {
            return Ok(None);
        };
        let deleted = rule_from_row(&deleted)?;
        tx.record(rule_event(EventKind::ReplicationRuleDeleted, &deleted))?;
        tx.commit()
            .await
            .map_err(database("committing a replication rule's removal"))?;
        Ok(Some(deleted))
    }

    async fn start_replication_run(
        &self,
        rule_id: i64,
        trigger: RunTrigger,
        now: Timestamp,
        keep: usize,
    ) -> Result<ReplicationRun, MetaError> {
        let mut tx = self.db.begin_write().await?;
        let sql = format!(
            "INSERT INTO replication_runs (rule_id, trigger_kind, started_at, status) \
             VALUES ($1, $2, $3, 'running') RETURNING {RUN_COLUMNS}"
        );
        let run = query(&sql)
            .bind(rule_id)
            .bind(trigger.as_str())
            .bind(now)
            .fetch_one(&mut tx)
            .await
            .map_err(write_error("starting a replication run"))?;
        let run = run_from_row(&run)?;
        // The history is bounded: finished runs older than the newest
        // `keep` go (a run still marked running stays, to be seen).
        query(
            "DELETE FROM replication_runs WHERE rule_id = $1 AND status <> 'running' \
             AND id NOT IN (SELECT id FROM replication_runs WHERE rule_id = $1 \
                            ORDER BY id DESC LIMIT $2)",
        )
        .bind(rule_id)
        .bind(limit_to_i64(keep))
        .execute(&mut tx)
        .await
        .map_err(database("trimming a replication rule's runs"))?;
        tx.commit()
            .await
            .map_err(database("committing a replication run"))?;
        Ok(run)
    }

    async fn finish_replication_run(
        &self,
        change: &Change,
        run_id: i64,
        status: RunStatus,
        counts: RunCounts,
        error: Option<&str>,
    ) -> Result<Option<ReplicationRun>, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        let sql = format!(
            "UPDATE replication_runs SET status = $1, finished_at = $2, images_copied = $3, \
                 images_skipped = $4, blobs_copied = $5, bytes = $6, last_error = $7 \
             WHERE id = $8 AND status = 'running' RETURNING {RUN_COLUMNS}"
        );
        let Some(run) = query(&sql)
            .bind(status.as_str())
            .bind(change.at)
            .bind(to_i64(counts.images_copied, "images copied")?)
            .bind(to_i64(counts.images_skipped, "images skipped")?)
            .bind(to_i64(counts.blobs_copied, "blobs copied")?)
            .bind(to_i64(counts.bytes, "bytes copied")?)
            .bind(error)
            .bind(run_id)
            .fetch_optional(&mut tx)
            .await
            .map_err(database("finishing a replication run"))?
        else {
            return Ok(None);
        };
        let run = run_from_row(&run)?;
        let rule = query("SELECT name FROM replication_rules WHERE id = $1")
            .bind(run.rule_id)
            .fetch_one(&mut tx)
            .await
            .map_err(database("reading a replication run's rule"))?;
        let name: String = rule.get("name")?;
        tx.record(NewEvent::new(
            EventKind::ReplicationFinished,
            serde_json::json!({
                "rule": name,
                "run": run.id,
                "trigger": run.trigger.as_str(),
                "status": run.status.as_str(),
                "images_copied": run.counts.images_copied,
                "images_skipped": run.counts.images_skipped,
                "blobs_copied": run.counts.blobs_copied,
                "bytes": run.counts.bytes,
                "error": run.last_error,
            }),
        ))?;
        tx.commit()
            .await
            .map_err(database("committing a finished replication run"))?;
        Ok(Some(run))
    }

    async fn list_replication_runs(
        &self,
        rule_id: i64,
        limit: usize,
    ) -> Result<Vec<ReplicationRun>, MetaError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM replication_runs WHERE rule_id = $1 \
             ORDER BY id DESC LIMIT $2"
        );
        query(&sql)
            .bind(rule_id)
            .bind(limit_to_i64(limit))
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing replication runs"))?
            .iter()
            .map(run_from_row)
            .collect()
    }

    async fn record_pending_delete(
        &self,
        rule_id: i64,
        repository: &RepoName,
        tag: &Tag,
        error: &str,
        now: Timestamp,
        max: usize,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_write().await?;
        // INSERT … SELECT so that a rule deleted meanwhile inserts nothing
        // (rather than failing on the foreign key); `WHERE EXISTS` also
        // tells SQLite's parser that `ON CONFLICT` belongs to the INSERT.
        query(
            "INSERT INTO replication_pending_deletes \
                 (rule_id, repository, tag, since, attempts, last_error) \
             SELECT $1, $2, $3, $4, 1, $5 \
             WHERE EXISTS (SELECT 1 FROM replication_rules WHERE id = $1) \
             ON CONFLICT (rule_id, repository, tag) DO UPDATE \
             SET attempts = replication_pending_deletes.attempts + 1, last_error = $5",
        )
        .bind(rule_id)
        .bind(repository.as_str())
        .bind(tag.as_str())
        .bind(now)
        .bind(error)
        .execute(&mut tx)
        .await
        .map_err(write_error("recording a pending replicated delete"))?;
        // Bounded per rule: the oldest beyond `max` go.
        query(
            "DELETE FROM replication_pending_deletes WHERE rule_id = $1 \
             AND (since, repository, tag) NOT IN \
                 (SELECT since, repository, tag FROM replication_pending_deletes \
                  WHERE rule_id = $1 ORDER BY since DESC, repository DESC, tag DESC LIMIT $2)",
        )
        .bind(rule_id)
        .bind(limit_to_i64(max))
        .execute(&mut tx)
        .await
        .map_err(database("bounding a rule's pending deletes"))?;
        tx.commit()
            .await
            .map_err(database("committing a pending replicated delete"))
    }

    async fn pending_deletes(
        &self,
        rule_id: i64,
        limit: usize,
    ) -> Result<Vec<PendingDelete>, MetaError> {
        query(
            "SELECT repository, tag, since, attempts, last_error \
             FROM replication_pending_deletes WHERE rule_id = $1 \
             ORDER BY since, repository, tag LIMIT $2",
        )
        .bind(rule_id)
        .bind(limit_to_i64(limit))
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing pending replicated deletes"))?
        .iter()
        .map(|row| {
            Ok(PendingDelete {
                repository: parse_repository(&row.get::<String>("repository")?)?,
                tag: parse_tag(&row.get::<String>("tag")?)?,
                since: row.get("since")?,
                attempts: count(row, "attempts")?,
                last_error: row.get("last_error")?,
            })
        })
        .collect()
    }

    async fn count_pending_deletes(&self, rule_id: i64) -> Result<u64, MetaError> {
        let row = query("SELECT COUNT(*) FROM replication_pending_deletes WHERE rule_id = $1")
            .bind(rule_id)
            .fetch_one(self.db.reader())
            .await
            .map_err(database("counting pending replicated deletes"))?;
        let count: i64 = row.first()?;
        u64::try_from(count).map_err(|_| MetaError::Corrupt("a pending delete count".into()))
    }

    async fn clear_pending_delete(
        &self,
        rule_id: i64,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<(), MetaError> {
        query(
            "DELETE FROM replication_pending_deletes \
             WHERE rule_id = $1 AND repository = $2 AND tag = $3",
        )
        .bind(rule_id)
        .bind(repository.as_str())
        .bind(tag.as_str())
        .execute(self.db.writer())
        .await
        .map_err(write_error("clearing a pending replicated delete"))?;
        Ok(())
    }
}
