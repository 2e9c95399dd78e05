//! SQLite's read-only connections, lent one statement at a time.
//!
//! A connection is lent for one statement and taken back at once; its
//! statement runs on the borrower's thread (`sqlite_conn.rs`), so a lending
//! costs no hand-off. A connection is opened when none is idle and fewer
//! than the maximum exist; waiting is first come, first served (tokio's
//! semaphore is fair), bounded by the acquire timeout, and answered with
//! [`sqlx::Error::PoolTimedOut`] as sqlx's pool would. A connection whose
//! statement failed is closed rather than lent again, so the next borrower
//! starts from a fresh one. These connections are read-only and never hold
//! a transaction, and a statement runs to its end (or its limit) before
//! the connection goes back, so no state survives a statement.
//!
//! sqlx's pool, used before, sent a `ping` to a connection before lending
//! it and again, from a task it spawned, when it came back: a third of the
//! server's CPU on the management API's listings (docs/performance.md,
//! "Read connections without pings").

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::sqlite_conn::{SqliteConn, SqliteOptions};

/// Read-only connections to one database file; see the module documentation.
#[derive(Debug)]
pub(crate) struct SqliteReaders {
    options: SqliteOptions,
    /// Connections not lent out. At most `permits`' size exist at once.
    idle: Mutex<Vec<SqliteConn>>,
    /// One permit per connection that may exist.
    permits: Semaphore,
    acquire_timeout: Duration,
}

/// A connection lent for one statement; it goes back when this is dropped.
pub(crate) struct Reader<'a> {
    readers: &'a SqliteReaders,
    connection: Option<SqliteConn>,
    /// Dropped after the connection is back among the idle ones, so a
    /// waiter woken by it finds it there.
    _permit: SemaphorePermit<'a>,
}

impl SqliteReaders {
    /// Opens the first connection now, so that a database that cannot be
    /// read fails at start-up rather than at the first request.
    pub(crate) async fn open(
        options: SqliteOptions,
        connections: usize,
        acquire_timeout: Duration,
    ) -> Result<SqliteReaders, sqlx::Error> {
        let first = SqliteConn::open(&options).await?;
        Ok(SqliteReaders {
            options,
            idle: Mutex::new(vec![first]),
            permits: Semaphore::new(connections),
            acquire_timeout,
        })
    }

    /// Lends a connection, opening one if none is idle.
    pub(crate) async fn acquire(&self) -> Result<Reader<'_>, sqlx::Error> {
        let permit = tokio::time::timeout(self.acquire_timeout, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => SqliteConn::open(&self.options).await?,
        };
        Ok(Reader {
            readers: self,
            connection: Some(connection),
            _permit: permit,
        })
    }

    /// Closes the idle connections and lends no more; connections lent out
    /// are closed as they come back.
    pub(crate) async fn close(&self) {
        self.permits.close();
        // Dropping a connection closes its database handle.
        drop(std::mem::take(
            &mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()),
        ));
    }
}

impl Reader<'_> {
    /// The connection, for one statement.
    pub(crate) fn connection(&mut self) -> &mut SqliteConn {
        self.connection
            .as_mut()
            .expect("a lent connection is present until it is dropped")
    }

    /// Closes the connection instead of lending it again (its statement
    /// failed, and a fresh connection starts from a known state).
    pub(crate) fn discard(&mut self) {
        self.connection = None;
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            if self.readers.permits.is_closed() {
                // Dropping the connection closes the database handle.
                return;
            }
            self.readers
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(connection);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn readers(connections: usize, timeout: Duration) -> (tempfile::TempDir, SqliteReaders) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let options = SqliteOptions::reader(path, Duration::from_secs(1));
        let readers = SqliteReaders::open(options, connections, timeout)
            .await
            .unwrap();
        (dir, readers)
    }

    #[tokio::test]
    async fn a_connection_is_lent_again_after_its_statement() {
        let (_dir, readers) = readers(2, Duration::from_secs(1)).await;
        for _ in 0..5 {
            let mut reader = readers.acquire().await.unwrap();
            reader
                .connection()
                .fetch("SELECT COUNT(*) FROM t", &[], Some(1))
                .await
                .unwrap();
        }
        // One connection served every statement: none was opened beside it.
        assert_eq!(readers.idle.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn no_more_than_the_maximum_are_lent_and_a_waiter_times_out() {
        let (_dir, readers) = readers(2, Duration::from_millis(50)).await;
        let first = readers.acquire().await.unwrap();
        let second = readers.acquire().await.unwrap();
        assert!(matches!(
            readers.acquire().await,
            Err(sqlx::Error::PoolTimedOut)
        ));
        drop(first);
        let third = readers.acquire().await.unwrap();
        drop((second, third));
        assert_eq!(readers.idle.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_discarded_connection_is_not_lent_again_and_closing_stops_lending() {
        let (_dir, readers) = readers(2, Duration::from_secs(1)).await;
        let mut reader = readers.acquire().await.unwrap();
        reader.discard();
        drop(reader);
        assert!(readers.idle.lock().unwrap().is_empty());
        let mut reader = readers.acquire().await.unwrap();
        reader
            .connection()
            .fetch("SELECT 1", &[], Some(1))
            .await
            .unwrap();
        drop(reader);
        readers.close().await;
        assert!(readers.idle.lock().unwrap().is_empty());
        assert!(matches!(
            readers.acquire().await,
            Err(sqlx::Error::PoolClosed)
        ));
    }
}
