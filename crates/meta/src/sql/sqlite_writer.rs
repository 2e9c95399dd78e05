//! SQLite's one writing connection, lent without sqlx's pool.
//!
//! SQLite takes one writer at a time, so this process writes through one
//! connection and writers queue for it here, first come first served
//! (tokio's mutex is fair), for at most the acquire timeout. sqlx's pool
//! would ping the connection before lending it and again, from a task it
//! spawns, when it comes back: two round trips to the connection's worker
//! thread per write that find out nothing, during which no other write can
//! start ([`super::sqlite_readers`] measures the same for reads).
//!
//! A transaction is `BEGIN IMMEDIATE` … `COMMIT` on the lent connection
//! ([`WriteTx`]). One dropped before it commits (an error, or a request
//! whose client went away) is rolled back by a task that keeps the
//! connection lent until `ROLLBACK` has run, so the next writer never finds
//! a transaction open. A connection whose rollback or commit failed is
//! closed, which rolls back whatever it held, and a new one is opened for
//! the next writer; an in-memory database cannot be reopened, so its one
//! connection is kept.

use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The writing connection; see the module documentation.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    /// How to open the connection again, `None` for an in-memory database
    /// (which lives as long as its connection).
    reopen: Option<SqliteConnectOptions>,
    /// `None` while closed after a failure, or for good after
    /// [`SqliteWriter::close`].
    connection: Arc<Mutex<Slot>>,
    acquire_timeout: Duration,
}

#[derive(Debug)]
struct Slot {
    connection: Option<SqliteConnection>,
    closed: bool,
}

/// The writing connection, lent until this is dropped.
pub(crate) struct Writer {
    guard: OwnedMutexGuard<Slot>,
    reopen: bool,
}

impl SqliteWriter {
    /// Takes `connection` as the writer; `reopen` says how to open another
    /// after a failure (`None`: never, for an in-memory database).
    pub(crate) fn new(
        connection: SqliteConnection,
        reopen: Option<SqliteConnectOptions>,
        acquire_timeout: Duration,
    ) -> SqliteWriter {
        SqliteWriter {
            reopen,
            connection: Arc::new(Mutex::new(Slot {
                connection: Some(connection),
                closed: false,
            })),
            acquire_timeout,
        }
    }

    /// Lends the connection once the writers before have returned it.
    pub(crate) async fn acquire(&self) -> Result<Writer, sqlx::Error> {
        let mut guard =
            tokio::time::timeout(self.acquire_timeout, self.connection.clone().lock_owned())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?;
        if guard.closed {
            return Err(sqlx::Error::PoolClosed);
        }
        if guard.connection.is_none() {
            let options = self.reopen.as_ref().ok_or(sqlx::Error::WorkerCrashed)?;
            guard.connection = Some(options.connect().await?);
        }
        Ok(Writer {
            guard,
            reopen: self.reopen.is_some(),
        })
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`: the write lock is
    /// taken up front, see `sqlite.rs`).
    pub(crate) async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        let mut writer = self.acquire().await?;
        let mut begun = sqlx::query("BEGIN IMMEDIATE")
            .execute(writer.connection())
            .await;
        // A rollback task that never ran (its runtime shut down first) can
        // leave a transaction open; nothing else is using it, so it goes.
        if matches!(&begun, Err(sqlx::Error::Database(db))
            if db.message().contains("within a transaction"))
        {
            let _ = sqlx::query("ROLLBACK").execute(writer.connection()).await;
            begun = sqlx::query("BEGIN IMMEDIATE")
                .execute(writer.connection())
                .await;
        }
        writer.kept_if_ok(begun)?;
        Ok(WriteTx {
            writer: Some(writer),
        })
    }

    /// Waits for the connection to come back, closes it and lends it no more.
    pub(crate) async fn close(&self) {
        let mut slot = self.connection.lock().await;
        slot.closed = true;
        if let Some(connection) = slot.connection.take() {
            let _ = connection.close().await;
        }
    }
}

impl Writer {
    /// The connection, for statements.
    pub(crate) fn connection(&mut self) -> &mut SqliteConnection {
        self.guard
            .connection
            .as_mut()
            .expect("a lent writer holds its connection")
    }

    /// Passes a statement's result on; a failure that may have left the
    /// connection unusable closes it (a new one is opened for the next
    /// writer) unless it cannot be reopened.
    pub(crate) fn kept_if_ok<T>(
        &mut self,
        result: Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        if let Err(error) = &result {
            if self.reopen && !matches!(error, sqlx::Error::Database(_)) {
                self.guard.connection = None;
            }
        }
        result
    }
}

/// A write transaction on the writing connection. Dropping it without
/// [`WriteTx::commit`] rolls it back (see the module documentation).
pub(crate) struct WriteTx {
    /// `None` once committed.
    writer: Option<Writer>,
}

impl WriteTx {
    /// The connection, for the transaction's statements.
    pub(crate) fn connection(&mut self) -> &mut SqliteConnection {
        self.writer
            .as_mut()
            .expect("an open transaction holds the writer")
            .connection()
    }

    /// Commits. A failed commit leaves nothing open: the transaction is
    /// rolled back (or its connection closed, which does the same).
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let mut writer = self.writer.take().expect("a transaction commits once");
        let committed = sqlx::query("COMMIT").execute(writer.connection()).await;
        match committed {
            Ok(_) => Ok(()),
            Err(error) => {
                roll_back(writer).await;
                Err(error)
            }
        }
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            // The writer stays lent until the rollback has run.
            Ok(runtime) => {
                runtime.spawn(roll_back(writer));
            }
            // No runtime to run it on (the process is ending): closing the
            // connection rolls the transaction back.
            Err(_) => {
                if writer.reopen {
                    writer.guard.connection = None;
                }
            }
        }
    }
}

/// Rolls back the transaction open on `writer`'s connection; if that fails,
/// closes the connection (which rolls back) when it can be reopened.
async fn roll_back(mut writer: Writer) {
    let rolled_back = sqlx::query("ROLLBACK").execute(writer.connection()).await;
    if let Err(error) = rolled_back {
        // SQLite ends a transaction itself on some errors (a full disk);
        // then there is nothing to roll back and the connection is fine.
        let none_open = matches!(&error, sqlx::Error::Database(db)
            if db.message().contains("no transaction is active"));
        if !none_open && writer.reopen {
            tracing::warn!(%error, "rolling back a write transaction failed; reopening the database");
            writer.guard.connection = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn writer(timeout: Duration) -> (tempfile::TempDir, SqliteWriter) {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("db"))
            .create_if_missing(true);
        let mut connection = options.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut connection)
            .await
            .unwrap();
        (dir, SqliteWriter::new(connection, Some(options), timeout))
    }

    async fn count(writer: &SqliteWriter) -> i64 {
        let mut lent = writer.acquire().await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(lent.connection())
            .await
            .unwrap()
    }

    async fn insert(tx: &mut WriteTx) {
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(tx.connection())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_committed_transaction_stays_and_a_dropped_one_is_rolled_back() {
        let (_dir, writer) = writer(Duration::from_secs(2)).await;
        let mut tx = writer.begin().await.unwrap();
        insert(&mut tx).await;
        tx.commit().await.unwrap();
        let mut tx = writer.begin().await.unwrap();
        insert(&mut tx).await;
        drop(tx);
        // The next writer waits for the rollback, then finds no
        // transaction open (BEGIN inside one would fail).
        let mut tx = writer.begin().await.unwrap();
        insert(&mut tx).await;
        tx.commit().await.unwrap();
        assert_eq!(count(&writer).await, 2);
    }

    #[tokio::test]
    async fn a_transaction_left_open_is_ended_by_the_next_writer() {
        let (_dir, writer) = writer(Duration::from_secs(2)).await;
        {
            let mut lent = writer.acquire().await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(lent.connection())
                .await
                .unwrap();
            sqlx::query("INSERT INTO t VALUES (1)")
                .execute(lent.connection())
                .await
                .unwrap();
        }
        let mut tx = writer.begin().await.unwrap();
        insert(&mut tx).await;
        tx.commit().await.unwrap();
        assert_eq!(count(&writer).await, 1);
    }

    #[tokio::test]
    async fn writers_wait_their_turn_and_time_out() {
        let (_dir, writer) = writer(Duration::from_millis(50)).await;
        let tx = writer.begin().await.unwrap();
        assert!(matches!(
            writer.acquire().await.err(),
            Some(sqlx::Error::PoolTimedOut)
        ));
        tx.commit().await.unwrap();
        writer.acquire().await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_commit_leaves_no_transaction_open() {
        let (_dir, writer) = writer(Duration::from_secs(2)).await;
        {
            let mut lent = writer.acquire().await.unwrap();
            sqlx::query("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
                .execute(lent.connection())
                .await
                .unwrap();
            sqlx::query(
                "CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
            )
            .execute(lent.connection())
            .await
            .unwrap();
            sqlx::query("PRAGMA foreign_keys = ON")
                .execute(lent.connection())
                .await
                .unwrap();
        }
        let mut tx = writer.begin().await.unwrap();
        sqlx::query("INSERT INTO child VALUES (7)")
            .execute(tx.connection())
            .await
            .unwrap();
        // A deferred foreign key fails at COMMIT.
        assert!(tx.commit().await.is_err());
        let mut tx = writer.begin().await.unwrap();
        insert(&mut tx).await;
        tx.commit().await.unwrap();
        assert_eq!(count(&writer).await, 1);
    }

    #[tokio::test]
    async fn a_closed_writer_lends_no_more() {
        let (_dir, writer) = writer(Duration::from_secs(2)).await;
        writer.close().await;
        assert!(matches!(
            writer.acquire().await.err(),
            Some(sqlx::Error::PoolClosed)
        ));
    }
}
