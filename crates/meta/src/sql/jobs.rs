//! [`JobLeaseStore`] in SQL.

use super::db::{database, query};
use super::SqlMetaStore;
use crate::{JobLeaseStore, MetaError, Timestamp};

#[async_trait::async_trait]
impl<B: 'static> JobLeaseStore for SqlMetaStore<B> {
    async fn acquire_job_lease(
        &self,
        job: &str,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<bool, MetaError> {
        // One statement decides and writes: the upsert's `WHERE` leaves a
        // running lease of another holder untouched, and `RETURNING` yields a
        // row only when the lease was inserted or updated, i.e. taken. On
        // PostgreSQL racing inserts of a new job wait on its primary key and
        // then take the update path, whose `WHERE` is re-checked against the
        // winner's row.
        let taken = query(
            "INSERT INTO job_leases (job, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (job) DO UPDATE \
             SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE job_leases.holder = excluded.holder OR job_leases.expires_at <= $4 \
             RETURNING holder",
        )
        .bind(job)
        .bind(holder)
        .bind(now.saturating_add(lease_secs))
        .bind(now)
        .fetch_optional(self.db.writer())
        .await
        .map_err(database("taking a job lease"))?;
        Ok(taken.is_some())
    }

    async fn release_job_lease(&self, job: &str, holder: &str) -> Result<(), MetaError> {
        query("DELETE FROM job_leases WHERE job = $1 AND holder = $2")
            .bind(job)
            .bind(holder)
            .execute(self.db.writer())
            .await
            .map_err(database("releasing a job lease"))?;
        Ok(())
    }
}
