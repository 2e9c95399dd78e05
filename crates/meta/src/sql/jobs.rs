//! [`JobLeaseStore`] in SQL.

use super::db::{database, query, Db, Dialect, Row, Tx};
use super::{limit_to_i64, SqlMetaStore};
use crate::{JobLeaseStore, MetaError, Timestamp};

/// A work queue whose rows are taken under a lease, one or a few at a time: every
/// such table has `holder`, `lease_expires` and `attempts` columns, and a
/// row is free when nobody holds it or its lease has run out. The scan
/// queue and the webhook deliveries are two.
pub(crate) struct LeasedQueue {
    pub table: &'static str,
    /// The primary key.
    pub key: &'static str,
    /// What else makes a row ready, with the time as `$3`.
    pub ready: &'static str,
    /// Which ready row goes first.
    pub order: &'static str,
    /// The columns the taken row is returned with.
    pub returning: &'static str,
    /// What taking is, for errors ("taking a scan job").
    pub what: &'static str,
}

impl LeasedQueue {
    /// Whether a row is ready and free at `now`, read on a reader
    /// connection. Workers poll their queue, and most polls of a quiet or
    /// just-emptied queue find nothing; asking first spares them a turn on
    /// SQLite's one writer (a `BEGIN IMMEDIATE` rolled back), which every
    /// push queues for. A row that becomes free after the read is taken by
    /// the next poll, as if it had come after the take.
    pub(crate) async fn any_free(&self, db: &Db, now: Timestamp) -> Result<bool, MetaError> {
        let LeasedQueue {
            table, ready, what, ..
        } = *self;
        // The time is `$3` in `ready`, for the take's parameters; this
        // statement has no other.
        let ready = ready.replace("$3", "$1");
        let sql = format!(
            "SELECT 1 AS free FROM {table} \
             WHERE {ready} AND (holder IS NULL OR lease_expires <= $1) LIMIT 1"
        );
        Ok(query(&sql)
            .bind(now)
            .fetch_optional(db.reader())
            .await
            .map_err(database(what))?
            .is_some())
    }

    /// Takes the first ready, free row for `holder` until `now + lease_secs`,
    /// counting the attempt, and returns it (see [`LeasedQueue::take_many`]).
    pub(crate) async fn take(
        &self,
        tx: &mut Tx,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<Option<Row>, MetaError> {
        Ok(self.take_many(tx, holder, now, lease_secs, 1).await?.pop())
    }

    /// Takes the first `limit` ready, free rows for `holder` until
    /// `now + lease_secs`, counting an attempt on each, and returns them (in
    /// no particular order). On PostgreSQL concurrent takers skip each
    /// other's locked rows, so each takes different rows, and the outer
    /// condition is checked again on the locked rows; SQLite's single
    /// writer takes turns anyway.
    pub(crate) async fn take_many(
        &self,
        tx: &mut Tx,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
        limit: usize,
    ) -> Result<Vec<Row>, MetaError> {
        let skip_locked = match tx.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let LeasedQueue {
            table,
            key,
            ready,
            order,
            returning,
            what,
        } = self;
        let free = format!("{ready} AND (holder IS NULL OR lease_expires <= $3)");
        // The picked keys are a materialized CTE: PostgreSQL may run a
        // subquery under `IN` again for each row it compares, taking more
        // than `limit` rows (and locking others as it goes).
        let sql = format!(
            "WITH picked AS MATERIALIZED (SELECT {key} FROM {table} WHERE {free} \
                 ORDER BY {order} LIMIT $4{skip_locked}) \
             UPDATE {table} SET holder = $1, lease_expires = $2, attempts = attempts + 1 \
             WHERE {key} IN (SELECT {key} FROM picked) AND {free} \
             RETURNING {returning}"
        );
        query(&sql)
            .bind(holder)
            .bind(now.saturating_add(lease_secs))
            .bind(now)
            .bind(limit_to_i64(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(database(what))
    }
}

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
