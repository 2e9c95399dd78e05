//! [`AdvisorySyncStore`] in SQL.

use super::db::{database, query, Row};
use super::SqlMetaStore;
use crate::{AdvisorySourceRow, AdvisorySyncStore, MetaError, Timestamp};

fn source(row: Row) -> Result<AdvisorySourceRow, MetaError> {
    Ok(AdvisorySourceRow {
        url: row.get("url")?,
        last_attempt_at: row.get("last_attempt_at")?,
        last_success_at: row.get("last_success_at")?,
        records_changed: u64::try_from(row.get::<i64>("records_changed")?).unwrap_or(0),
        last_error: row.get("last_error")?,
        etag: row.get("etag")?,
        last_modified: row.get("last_modified")?,
    })
}

#[async_trait::async_trait]
impl<B: 'static> AdvisorySyncStore for SqlMetaStore<B> {
    async fn record_advisory_sync_success(
        &self,
        url: &str,
        now: Timestamp,
        records_changed: u64,
        validators: Option<(Option<&str>, Option<&str>)>,
    ) -> Result<(), MetaError> {
        let changed = i64::try_from(records_changed).unwrap_or(i64::MAX);
        let (replace, etag, last_modified) = match validators {
            Some((etag, last_modified)) => (true, etag, last_modified),
            None => (false, None, None),
        };
        query(
            "INSERT INTO advisory_sources \
             (url, last_attempt_at, last_success_at, records_changed, last_error, etag, last_modified) \
             VALUES ($1, $2, $2, $3, NULL, $5, $6) ON CONFLICT (url) DO UPDATE \
             SET last_attempt_at = excluded.last_attempt_at, \
             last_success_at = excluded.last_success_at, \
             records_changed = excluded.records_changed, last_error = NULL, \
             etag = CASE WHEN $4 THEN excluded.etag ELSE advisory_sources.etag END, \
             last_modified = CASE WHEN $4 THEN excluded.last_modified \
                 ELSE advisory_sources.last_modified END",
        )
        .bind(url)
        .bind(now)
        .bind(changed)
        .bind(replace)
        .bind(etag)
        .bind(last_modified)
        .execute(self.db.writer())
        .await
        .map_err(database("recording an advisory sync"))?;
        Ok(())
    }

    async fn record_advisory_sync_failure(
        &self,
        url: &str,
        now: Timestamp,
        error: &str,
    ) -> Result<(), MetaError> {
        query(
            "INSERT INTO advisory_sources (url, last_attempt_at, records_changed, last_error) \
             VALUES ($1, $2, 0, $3) ON CONFLICT (url) DO UPDATE \
             SET last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error",
        )
        .bind(url)
        .bind(now)
        .bind(error)
        .execute(self.db.writer())
        .await
        .map_err(database("recording a failed advisory sync"))?;
        Ok(())
    }

    async fn advisory_sources(&self) -> Result<Vec<AdvisorySourceRow>, MetaError> {
        query(
            "SELECT url, last_attempt_at, last_success_at, records_changed, last_error, \
             etag, last_modified FROM advisory_sources ORDER BY url",
        )
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing advisory sources"))?
        .into_iter()
        .map(source)
        .collect()
    }
}
