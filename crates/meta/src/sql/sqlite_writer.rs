//! SQLite's one writing connection and the group commit of the
//! transactions that queue for it.
//!
//! SQLite takes one writer at a time, so this process writes through one
//! connection and writers queue for it here, first come first served
//! (tokio's mutex is fair), for at most the acquire timeout. Statements run
//! on the borrower's thread (`sqlite_conn.rs`); a lending costs no
//! hand-off, and no check of the connection that would find out nothing.
//!
//! A transaction is `BEGIN IMMEDIATE` … `COMMIT` on the lent connection
//! ([`WriteTx`]). One dropped before it commits (an error, or a request
//! whose client went away) is rolled back by a task that keeps the
//! connection lent until the rollback has run, so the next writer never
//! finds a transaction of its own open. A connection whose rollback or
//! commit failed is closed, which rolls back whatever it held, and a new
//! one is opened for the next writer; an in-memory database cannot be
//! reopened, so its one connection is kept.
//!
//! # Group commit
//!
//! Every commit writes each page its transaction changed to the log, and
//! the transactions of a busy registry change the same pages over and over
//! (a namespace's usage, a repository's figures, the end of the event
//! table and of its indexes). So a transaction that finishes while other
//! writers wait does not commit by itself: it leaves its work in the open
//! transaction (a *batch*) and lends the connection to the next writer,
//! which works inside a savepoint of the batch (`SAVEPOINT member` …
//! `RELEASE member`; a member that fails or is dropped is rolled back to
//! it, and the others' work stays). A flusher task queued for the
//! connection when the first member left the batch open commits it once
//! the writers that were waiting before it have had their turn, or the
//! first writer that finds no one waiting behind it commits it itself. A
//! statement of its own ([`SqliteWriter::acquire`]) joins an open batch
//! too: one statement is atomic by itself, and [`Writer::settle`] hands its
//! result back when the batch is committed. Each member's
//! [`WriteTx::commit`] returns only when the batch is committed, with its
//! outcome: a batch whose `COMMIT` fails fails every member, and none of
//! their work stays. So no caller ever learns of a write before it is
//! committed, and readers see a batch's members together. A batch holds at
//! most [`MAX_BATCH`] members; a lone writer commits at once, as before.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex, OwnedMutexGuard};

use super::sqlite_conn::{SqliteConn, SqliteOptions};

/// The most transactions one batch holds: enough to share the hot pages
/// among all the writers a busy node has queued, few enough that the first
/// of them is not kept waiting long.
const MAX_BATCH: usize = 32;

/// The writing connection; see the module documentation.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    /// How to open the connection again, `None` for an in-memory database
    /// (which lives as long as its connection).
    reopen: Option<SqliteOptions>,
    /// `None` while closed after a failure, or for good after
    /// [`SqliteWriter::close`].
    /// The connection, the writers waiting for it (not flushers: whether a
    /// finishing transaction should leave its batch open for them) and the
    /// `COMMIT`s run (for the tests of batching).
    shared: Shared,
    acquire_timeout: Duration,
}

#[derive(Debug)]
struct Slot {
    connection: Option<SqliteConn>,
    closed: bool,
    /// The batch left open between writers, if any.
    open: Option<Batch>,
    /// The number the next batch opened gets.
    next_batch: u64,
}

/// A transaction left open with the work of `members` finished writers,
/// whose outcome they wait for.
#[derive(Debug)]
struct Batch {
    /// Tells this batch from the ones opened after it: a flusher commits
    /// the open batch only if it is still the one it was queued for.
    number: u64,
    members: usize,
    outcome: Arc<watch::Sender<Option<Outcome>>>,
}

/// How a batch ended: committed, or not, with the error's text (every
/// member reports it).
type Outcome = Result<(), String>;

impl Slot {
    /// Ends the open batch, if any, with `outcome`.
    fn end_batch(&mut self, outcome: Outcome) {
        if let Some(batch) = self.open.take() {
            batch.outcome.send_replace(Some(outcome));
        }
    }

    /// Drops the connection, which rolls back whatever it held: an open
    /// batch fails.
    fn drop_connection(&mut self) {
        self.connection = None;
        self.end_batch(Err("the database connection was closed".to_string()));
    }
}

/// The writing connection, lent until this is dropped.
pub(crate) struct Writer {
    guard: OwnedMutexGuard<Slot>,
    reopen: bool,
    shared: Shared,
}

/// What a lent connection needs of its writer to join or end a batch.
#[derive(Clone, Debug)]
struct Shared {
    slot: Arc<Mutex<Slot>>,
    waiting: Arc<AtomicUsize>,
    commits: Arc<AtomicU64>,
}

/// Counts a writer as waiting until it has the connection or gives up.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(counter: &Arc<AtomicUsize>) -> Waiting {
        counter.fetch_add(1, Ordering::SeqCst);
        Waiting(counter.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SqliteWriter {
    /// Takes `connection` as the writer; `reopen` says how to open another
    /// after a failure (`None`: never, for an in-memory database).
    pub(crate) fn new(
        connection: SqliteConn,
        reopen: Option<SqliteOptions>,
        acquire_timeout: Duration,
    ) -> SqliteWriter {
        SqliteWriter {
            reopen,
            shared: Shared {
                slot: Arc::new(Mutex::new(Slot {
                    connection: Some(connection),
                    closed: false,
                    open: None,
                    next_batch: 0,
                })),
                waiting: Arc::new(AtomicUsize::new(0)),
                commits: Arc::new(AtomicU64::new(0)),
            },
            acquire_timeout,
        }
    }

    /// The connection once the writers before have returned it, opened
    /// again if a failure closed it. An open batch stays open.
    async fn lend(&self) -> Result<Writer, sqlx::Error> {
        let waiting = Waiting::new(&self.shared.waiting);
        let mut guard =
            tokio::time::timeout(self.acquire_timeout, self.shared.slot.clone().lock_owned())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?;
        drop(waiting);
        if guard.closed {
            return Err(sqlx::Error::PoolClosed);
        }
        if guard.connection.is_none() {
            let options = self.reopen.as_ref().ok_or(sqlx::Error::WorkerCrashed)?;
            guard.connection = Some(SqliteConn::open(options).await?);
        }
        Ok(Writer {
            guard,
            reopen: self.reopen.is_some(),
            shared: self.shared.clone(),
        })
    }

    /// Lends the connection once the writers before have returned it, for
    /// statements of the borrower's own, whose results [`Writer::settle`]
    /// hands back. With a batch left open they run in it: one statement is
    /// atomic by itself (SQLite undoes a failed one alone), and it is
    /// committed with the batch.
    pub(crate) async fn acquire(&self) -> Result<Writer, sqlx::Error> {
        self.lend().await
    }

    /// Starts a write transaction: `BEGIN IMMEDIATE` (the write lock is
    /// taken up front, see `sqlite.rs`), or a savepoint of the batch a
    /// finished writer left open.
    pub(crate) async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        let mut writer = self.lend().await?;
        if writer.guard.open.is_some() {
            let begun = writer.connection().execute("SAVEPOINT member", &[]).await;
            writer.kept_if_ok(begun)?;
            return Ok(WriteTx::new(writer, true));
        }
        let mut begun = writer.connection().execute("BEGIN IMMEDIATE", &[]).await;
        // A rollback task that never ran (its runtime shut down first) can
        // leave a transaction open; nothing else is using it, so it goes.
        if matches!(&begun, Err(sqlx::Error::Database(db))
            if db.message().contains("within a transaction"))
        {
            let _ = writer.connection().execute("ROLLBACK", &[]).await;
            begun = writer.connection().execute("BEGIN IMMEDIATE", &[]).await;
        }
        writer.kept_if_ok(begun)?;
        Ok(WriteTx::new(writer, false))
    }

    /// Waits for the connection to come back, commits a batch left open,
    /// closes the connection and lends it no more. It waits as a writer
    /// does, counted among the waiting, so a writer that finishes before it
    /// leaves its batch open for it to commit.
    pub(crate) async fn close(&self) {
        let waiting = Waiting::new(&self.shared.waiting);
        let guard = self.shared.slot.clone().lock_owned().await;
        drop(waiting);
        let mut writer = Writer {
            guard,
            reopen: self.reopen.is_some(),
            shared: self.shared.clone(),
        };
        if writer.guard.open.is_some() {
            commit_batch(&mut writer).await;
        }
        writer.guard.closed = true;
        // Dropping the connection closes the database handle.
        writer.guard.connection = None;
    }

    /// How many `COMMIT`s have run.
    #[cfg(test)]
    fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::SeqCst)
    }
}

impl Writer {
    /// The connection, for statements.
    pub(crate) fn connection(&mut self) -> &mut SqliteConn {
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
                self.guard.drop_connection();
            }
        }
        result
    }

    /// Ends a lending from [`SqliteWriter::acquire`] with the result of the
    /// borrower's statement, handed back once it is committed: at once if
    /// it ran by itself, with the batch if it ran in one (a read, too: it
    /// may have seen the batch's work, which is not to be reported before
    /// it is committed). A statement that failed changed nothing, and the
    /// batch goes on without it.
    pub(crate) async fn settle<T>(
        mut self,
        result: Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let value = self.kept_if_ok(result)?;
        if self.guard.open.is_some() {
            join_batch(self).await?;
        }
        Ok(value)
    }
}

/// Adds the work done on `writer`'s connection to the open batch (or opens
/// one with it), then leaves the batch open for the writers waiting, with a
/// flusher queued behind them, or commits it; returns its outcome once it
/// has one.
async fn join_batch(mut writer: Writer) -> Result<(), sqlx::Error> {
    let slot = &mut *writer.guard;
    let batch = match &mut slot.open {
        Some(batch) => batch,
        open @ None => {
            slot.next_batch += 1;
            open.insert(Batch {
                number: slot.next_batch,
                members: 0,
                outcome: Arc::new(watch::channel(None).0),
            })
        }
    };
    batch.members += 1;
    let number = batch.number;
    let waiting = writer.shared.waiting.load(Ordering::SeqCst);
    let leave_open = waiting > 0 && batch.members < MAX_BATCH;
    // Subscribed while the connection is still lent, so the outcome cannot
    // be sent before.
    let mut outcome = batch.outcome.subscribe();
    if leave_open {
        // The flusher waits its turn behind the writers waiting now, then
        // commits the batch unless one of them did. So an open batch always
        // has a flusher on its way, whatever its members' callers do
        // meanwhile.
        let shared = writer.shared.clone();
        let reopen = writer.reopen;
        drop(writer);
        tokio::spawn(async move {
            let guard = shared.slot.clone().lock_owned().await;
            let mut writer = Writer {
                guard,
                reopen,
                shared,
            };
            let ours = writer
                .guard
                .open
                .as_ref()
                .is_some_and(|open| open.number == number);
            if ours {
                commit_batch(&mut writer).await;
            }
        });
    } else {
        // Committed by a task of its own, so that a caller that goes away
        // meanwhile cannot leave the batch half done.
        tokio::spawn(async move { commit_batch(&mut writer).await });
    }
    let ended = outcome
        .wait_for(Option::is_some)
        .await
        .map_err(|_| sqlx::Error::WorkerCrashed)?;
    match ended.as_ref().expect("waited for an outcome") {
        Ok(()) => Ok(()),
        Err(message) => Err(sqlx::Error::Protocol(format!(
            "committing a write transaction failed: {message}"
        ))),
    }
}

/// Commits the batch open on `writer`'s connection and tells its members
/// how it went. A failed commit is rolled back (or the connection closed,
/// which does the same).
async fn commit_batch(writer: &mut Writer) {
    let committed = writer.connection().execute("COMMIT", &[]).await;
    writer.shared.commits.fetch_add(1, Ordering::SeqCst);
    match committed {
        Ok(_) => writer.guard.end_batch(Ok(())),
        Err(error) => {
            writer.guard.end_batch(Err(error.to_string()));
            roll_back_all(writer).await;
        }
    }
}

/// A write transaction on the writing connection: the batch's first, or a
/// member of a batch left open ([`WriteTx::member`]). Dropping it without
/// [`WriteTx::commit`] rolls it back (see the module documentation).
pub(crate) struct WriteTx {
    /// `None` once committed.
    writer: Option<Writer>,
    /// Whether it runs in a savepoint of a batch another writer left open.
    member: bool,
}

impl WriteTx {
    fn new(writer: Writer, member: bool) -> WriteTx {
        WriteTx {
            writer: Some(writer),
            member,
        }
    }

    /// The connection, for the transaction's statements.
    pub(crate) fn connection(&mut self) -> &mut SqliteConn {
        self.writer
            .as_mut()
            .expect("an open transaction holds the writer")
            .connection()
    }

    /// Commits, with the batch it joins (see the module documentation).
    /// A failed commit leaves nothing of this transaction.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let mut writer = self.writer.take().expect("a transaction commits once");
        if self.member {
            let released = writer.connection().execute("RELEASE member", &[]).await;
            if let Err(error) = released {
                roll_back_member(writer).await;
                return Err(error);
            }
        }
        join_batch(writer).await
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
                if self.member {
                    runtime.spawn(roll_back_member(writer));
                } else {
                    runtime.spawn(async move { roll_back_all(&mut writer).await });
                }
            }
            // No runtime to run it on (the process is ending): closing the
            // connection rolls the transaction back.
            Err(_) => {
                if writer.reopen {
                    writer.guard.drop_connection();
                }
            }
        }
    }
}

/// Rolls a member back to its savepoint; the batch it joined stays open
/// for its other members, whose flusher commits it.
async fn roll_back_member(mut writer: Writer) {
    if writer.guard.connection.is_none() {
        // Closed after a failure, which rolled back everything it held.
        return;
    }
    let rolled_back = writer.connection().execute("ROLLBACK TO member", &[]).await;
    let released = match rolled_back {
        Ok(_) => writer
            .connection()
            .execute("RELEASE member", &[])
            .await
            .map(|_| ()),
        Err(error) => Err(error),
    };
    if let Err(error) = released {
        tracing::warn!(%error, "rolling back a write transaction failed; reopening the database");
        if writer.reopen {
            writer.guard.drop_connection();
        } else {
            roll_back_all(&mut writer).await;
        }
    }
}

/// Rolls back the transaction open on `writer`'s connection (a lone
/// transaction, or a batch whose commit failed); if that fails, closes the
/// connection (which rolls back) when it can be reopened.
async fn roll_back_all(writer: &mut Writer) {
    if writer.guard.connection.is_none() {
        // Closed after a failure, which rolled back everything it held.
        writer
            .guard
            .end_batch(Err("the database connection was closed".to_string()));
        return;
    }
    let rolled_back = writer.connection().execute("ROLLBACK", &[]).await;
    writer
        .guard
        .end_batch(Err("the transaction was rolled back".to_string()));
    if let Err(error) = rolled_back {
        // SQLite ends a transaction itself on some errors (a full disk);
        // then there is nothing to roll back and the connection is fine.
        let none_open = matches!(&error, sqlx::Error::Database(db)
            if db.message().contains("no transaction is active"));
        if !none_open && writer.reopen {
            tracing::warn!(%error, "rolling back a write transaction failed; reopening the database");
            writer.guard.drop_connection();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::sqlite_conn::FromSqlite;

    async fn writer(timeout: Duration) -> (tempfile::TempDir, SqliteWriter) {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions::writer(dir.path().join("db"), Duration::from_secs(1));
        let mut connection = SqliteConn::open(&options).await.unwrap();
        connection
            .execute("CREATE TABLE t (x INTEGER)", &[])
            .await
            .unwrap();
        (dir, SqliteWriter::new(connection, Some(options), timeout))
    }

    async fn count(writer: &SqliteWriter) -> i64 {
        let mut lent = writer.acquire().await.unwrap();
        let counted = lent
            .connection()
            .fetch("SELECT COUNT(*) FROM t", &[], Some(1))
            .await;
        let rows = lent.settle(counted).await.unwrap();
        i64::from_sqlite(rows[0].first().unwrap()).unwrap()
    }

    async fn insert(tx: &mut WriteTx) {
        tx.connection()
            .execute("INSERT INTO t VALUES (1)", &[])
            .await
            .unwrap();
    }

    /// A transaction that inserts a row and commits.
    async fn insert_and_commit(writer: &SqliteWriter) {
        let mut tx = writer.begin().await.unwrap();
        insert(&mut tx).await;
        tx.commit().await.unwrap();
    }

    /// A task that begins a transaction, inserts a row and commits,
    /// returning the commit's outcome.
    fn spawn_insert_and_commit(
        writer: &Arc<SqliteWriter>,
    ) -> tokio::task::JoinHandle<Result<(), sqlx::Error>> {
        let writer = writer.clone();
        tokio::spawn(async move {
            let mut tx = writer.begin().await.unwrap();
            insert(&mut tx).await;
            tx.commit().await
        })
    }

    /// The rows of `t` in the database file, read by a connection of its
    /// own (what a restarted process would find).
    async fn rows_in_file(dir: &tempfile::TempDir) -> i64 {
        let connection = rusqlite::Connection::open(dir.path().join("db")).unwrap();
        connection
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    /// Returns once `n` writers wait for the connection.
    async fn until_waiting(writer: &SqliteWriter, n: usize) {
        while writer.shared.waiting.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_committed_transaction_stays_and_a_dropped_one_is_rolled_back() {
        let (_dir, writer) = writer(Duration::from_secs(2)).await;
        insert_and_commit(&writer).await;
        let mut tx = writer.begin().await.unwrap();
        insert(&mut tx).await;
        drop(tx);
        // The next writer waits for the rollback, then finds no
        // transaction open (BEGIN inside one would fail).
        insert_and_commit(&writer).await;
        assert_eq!(count(&writer).await, 2);
    }

    #[tokio::test]
    async fn a_transaction_left_open_is_ended_by_the_next_writer() {
        let (_dir, writer) = writer(Duration::from_secs(2)).await;
        {
            let mut lent = writer.acquire().await.unwrap();
            lent.connection()
                .execute("BEGIN IMMEDIATE", &[])
                .await
                .unwrap();
            lent.connection()
                .execute("INSERT INTO t VALUES (1)", &[])
                .await
                .unwrap();
        }
        insert_and_commit(&writer).await;
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
            lent.connection()
                .execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)", &[])
                .await
                .unwrap();
            lent.connection().execute("CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)", &[])
            .await
            .unwrap();
            lent.connection()
                .execute("PRAGMA foreign_keys = ON", &[])
                .await
                .unwrap();
        }
        let mut tx = writer.begin().await.unwrap();
        tx.connection()
            .execute("INSERT INTO child VALUES (7)", &[])
            .await
            .unwrap();
        // A deferred foreign key fails at COMMIT.
        assert!(tx.commit().await.is_err());
        insert_and_commit(&writer).await;
        assert_eq!(count(&writer).await, 1);
    }

    /// Ten writers queued while the connection is lent elsewhere; once it
    /// comes back, each begins, inserts a row and commits, except
    /// `dropped`, which lets its transaction go after the insert, and the
    /// sixth, which inserts its row by a statement of its own
    /// ([`SqliteWriter::acquire`]). Returns the rows there are afterwards
    /// and the `COMMIT`s that ran.
    async fn queued_writers(dropped: Option<usize>) -> (i64, u64) {
        let (_dir, writer) = writer(Duration::from_secs(5)).await;
        let writer = Arc::new(writer);
        let held = writer.acquire().await.unwrap();
        let before = writer.commits();
        let mut tasks = Vec::new();
        for i in 0..10 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                if i == 5 {
                    let mut lent = writer.acquire().await.unwrap();
                    let inserted = lent
                        .connection()
                        .execute("INSERT INTO t VALUES (1)", &[])
                        .await;
                    lent.settle(inserted).await.unwrap();
                    return;
                }
                let mut tx = writer.begin().await.unwrap();
                insert(&mut tx).await;
                if Some(i) != dropped {
                    tx.commit().await.unwrap();
                }
            }));
        }
        until_waiting(&writer, 10).await;
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        (count(&writer).await, writer.commits() - before)
    }

    #[tokio::test]
    async fn writers_that_queue_commit_together() {
        assert_eq!(queued_writers(None).await, (10, 1));
    }

    #[tokio::test]
    async fn a_dropped_member_is_rolled_back_alone() {
        // The first transaction of the batch, one in the middle, the last.
        for dropped in [0, 4, 9] {
            assert_eq!(queued_writers(Some(dropped)).await, (9, 1), "{dropped}");
        }
    }

    #[tokio::test]
    async fn a_batch_whose_commit_fails_fails_every_member() {
        let (_dir, writer) = writer(Duration::from_secs(5)).await;
        let writer = Arc::new(writer);
        {
            let mut lent = writer.acquire().await.unwrap();
            for statement in [
                "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
                "CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
                "PRAGMA foreign_keys = ON",
            ] {
                lent.connection().execute(statement, &[])
                    .await
                    .unwrap();
            }
        }
        let held = writer.acquire().await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..3 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = writer.begin().await.unwrap();
                // The second one breaks a deferred foreign key, which only
                // the batch's COMMIT finds.
                let statement = match i {
                    1 => "INSERT INTO child VALUES (7)",
                    _ => "INSERT INTO t VALUES (1)",
                };
                tx.connection().execute(statement, &[]).await.unwrap();
                tx.commit().await
            }));
        }
        until_waiting(&writer, 3).await;
        drop(held);
        for task in tasks {
            assert!(task.await.unwrap().is_err());
        }
        assert_eq!(count(&writer).await, 0);
        insert_and_commit(&writer).await;
        assert_eq!(count(&writer).await, 1);
    }

    /// A writer waits behind the first, so the first leaves its batch
    /// open; the second joins it, inserts a row and gives up. The batch is
    /// committed by its flusher, or, with `closing`, by `close`, which then
    /// waits for the connection before the flusher does. Either way the
    /// first's commit returns once the batch is committed, and its row, not
    /// the second's, is in the file.
    async fn a_member_gives_up(closing: bool) {
        let (dir, writer) = writer(Duration::from_secs(5)).await;
        let writer = Arc::new(writer);
        let held = writer.acquire().await.unwrap();
        let first = spawn_insert_and_commit(&writer);
        until_waiting(&writer, 1).await;
        let second = {
            let writer = writer.clone();
            tokio::spawn(async move {
                let mut tx = writer.begin().await.unwrap();
                insert(&mut tx).await;
            })
        };
        until_waiting(&writer, 2).await;
        let close = closing.then(|| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.close().await })
        });
        if closing {
            until_waiting(&writer, 3).await;
        }
        let before = writer.commits();
        drop(held);
        second.await.unwrap();
        // Bounded, so that a batch nobody commits fails the test instead of
        // hanging it.
        tokio::time::timeout(Duration::from_secs(10), first)
            .await
            .expect("the first member's commit returns")
            .unwrap()
            .unwrap();
        match close {
            Some(close) => close.await.unwrap(),
            None => writer.close().await,
        }
        assert_eq!(writer.commits() - before, 1);
        assert_eq!(rows_in_file(&dir).await, 1);
    }

    #[tokio::test]
    async fn a_batch_is_committed_though_its_last_member_gives_up() {
        a_member_gives_up(false).await;
    }

    #[tokio::test]
    async fn closing_commits_a_batch_left_open() {
        a_member_gives_up(true).await;
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
