//! The execution layer under the one SQL implementation: a statement with
//! its parameters, run on either database's pool or transaction, and the
//! rows it returns.
//!
//! This is a small enum dispatch rather than code generic over
//! `sqlx::Database`: generic query code needs a dozen trait bounds repeated
//! on every function (sqlx's bounds are not implied), and sqlx's own `Any`
//! driver converts every argument and row value on the way, which the push
//! path would pay for. Here a query collects its parameters as [`Arg`]s and
//! binds them, unconverted, when it learns where it runs; a [`Row`] is the
//! driver's own row (on SQLite, its values copied out by
//! `sqlite_conn.rs`), decoded by column with one type ([`Column`]).
//!
//! Query text is shared: `$n` names the n-th parameter on both databases
//! (`sqlite_conn.rs` binds it so), so one statement serves both unless a
//! dialect spelling differs ([`Dialect`]). Errors are `sqlx::Error` on
//! both; `sqlite_conn.rs` hands SQLite's on as database errors.

use std::borrow::Cow;

#[cfg(feature = "postgres")]
use sqlx::postgres::{PgArguments, PgPool, PgRow, Postgres};
#[cfg(feature = "postgres")]
use sqlx::Row as _;
#[cfg(feature = "postgres")]
use sqlx::Transaction;

use super::events::{append, NewEvent};
use super::sqlite_conn::{FromSqlite, SqliteRow};
use super::sqlite_readers::SqliteReaders;
use super::sqlite_writer::{SqliteWriter, WriteTx};
use crate::{Change, MetaError, Timestamp};

/// How long the readiness probe waits for SQLite's write lock. Shorter than
/// the server's readiness deadline, longer than any of this process's own
/// write transactions, so only a lock someone else keeps reads as busy.
const READY_PROBE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// What differs in the SQL the two databases accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Appended to a `SELECT` whose rows a decision depends on, so that a
    /// concurrent deletion of them waits for this transaction. SQLite needs
    /// none: its one writer runs write transactions one at a time.
    pub(crate) fn for_share(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR SHARE",
        }
    }

    /// Appended to a `SELECT` of rows this transaction is about to delete,
    /// so that transactions depending on them wait for it.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// The values of `expr` over a group's rows joined with single spaces
    /// (for names that cannot hold one), in no particular order.
    pub(crate) fn space_joined(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("group_concat({expr}, ' ')"),
            Dialect::Postgres => format!("string_agg({expr}, ' ')"),
        }
    }

    /// A table expression with one row per item of the list bound (with
    /// [`Bind`] on a `Vec<&str>`) as parameter `$n`, aliased `l`, with the
    /// item as `l.value` and its position in the list as `l.key`. SQLite
    /// receives the list as a JSON array, PostgreSQL as a `TEXT[]`.
    pub(crate) fn list(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("json_each(${n}) AS l"),
            Dialect::Postgres => format!("UNNEST(${n}::TEXT[]) WITH ORDINALITY AS l(value, key)"),
        }
    }
}

/// The database a store talks to: its pools, and through them its dialect.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite {
        /// Read-only connections, lent one statement at a time; never used
        /// inside a write transaction. `None` for an in-memory database,
        /// whose one connection reads and writes.
        read: Option<std::sync::Arc<SqliteReaders>>,
        /// The one connection that writes, so writers queue here rather than
        /// contend for SQLite's lock.
        write: std::sync::Arc<SqliteWriter>,
        /// The database file, for the readiness probe's own connection;
        /// `None` for an in-memory database.
        path: Option<std::path::PathBuf>,
    },
    /// Every query and transaction borrows a connection from here; there is
    /// no separate writer, because PostgreSQL handles concurrent writers.
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
}

impl Db {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite { .. } => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Whether a write could start now. Reads go on while another process
    /// holds SQLite's write lock (a `sqlite3` shell in a transaction), but
    /// every push stops; the probe takes and drops the lock on a connection
    /// of its own, so it neither queues behind this process's writer nor
    /// holds it up. PostgreSQL has no such lock: answering is enough.
    pub(crate) async fn probe_write_lock(&self) -> Result<(), MetaError> {
        let path = match self {
            Db::Sqlite {
                path: Some(path), ..
            } => path,
            _ => return Ok(()),
        };
        use sqlx::{ConnectOptions, Connection};
        let mut probe = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(READY_PROBE_BUSY_TIMEOUT)
            .connect()
            .await
            .map_err(database("opening the database to check it"))?;
        let locked = sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut probe)
            .await
            .map_err(database("taking the write lock to check the database"));
        if locked.is_ok() {
            sqlx::query("ROLLBACK")
                .execute(&mut probe)
                .await
                .map_err(database("checking the database"))?;
        }
        let _ = probe.close().await;
        locked.map(|_| ())
    }

    /// Where a single read statement runs.
    pub(crate) fn reader(&self) -> On<'_> {
        match self {
            Db::Sqlite {
                read: Some(read), ..
            } => On::SqliteReaders(read),
            Db::Sqlite { write, .. } => On::SqliteWriter(write),
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => On::PgPool(pool),
        }
    }

    /// Where a single write statement runs (on SQLite, the one writer).
    pub(crate) fn writer(&self) -> On<'_> {
        match self {
            Db::Sqlite { write, .. } => On::SqliteWriter(write),
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => On::PgPool(pool),
        }
    }

    /// Starts a write transaction that records no event. On SQLite it takes
    /// the write lock up front (`BEGIN IMMEDIATE`), so a transaction that
    /// reads before it writes cannot fail halfway when another process
    /// holds the lock. On PostgreSQL it runs at the default `READ
    /// COMMITTED`, with the row and advisory locks `postgres.rs` describes.
    pub(crate) async fn begin_write(&self) -> Result<Tx, MetaError> {
        self.begin(None).await
    }

    /// Starts a write transaction making `change`: the events it records
    /// are inserted with it when it commits.
    pub(crate) async fn begin_change(&self, change: &Change) -> Result<Tx, MetaError> {
        self.begin(Some(change)).await
    }

    async fn begin(&self, change: Option<&Change>) -> Result<Tx, MetaError> {
        let tx = match self {
            Db::Sqlite { write, .. } => write.begin().await.map(DbTx::Sqlite),
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => pool.begin().await.map(DbTx::Postgres),
        };
        Ok(Tx::new(
            tx.map_err(database("starting a write transaction"))?,
            change,
        ))
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub(crate) async fn close(&self) {
        match self {
            Db::Sqlite { read, write, .. } => {
                if let Some(read) = read {
                    read.close().await;
                }
                write.close().await;
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// A driver's transaction.
pub(crate) enum DbTx {
    Sqlite(WriteTx),
    #[cfg(feature = "postgres")]
    Postgres(Transaction<'static, Postgres>),
}

/// A transaction on either database, and the events of the change it
/// makes. Dropping it without [`Tx::commit`] rolls it back, events and all.
pub(crate) struct Tx {
    pub(crate) db: DbTx,
    /// When and by whom the change is made; `None` for transactions that
    /// record no event (leases, upload progress, signing keys).
    change: Option<Change>,
    /// Events recorded so far, inserted by [`Tx::commit`] in the same
    /// transaction.
    events: Vec<NewEvent>,
}

impl Tx {
    fn new(db: DbTx, change: Option<&Change>) -> Tx {
        Tx {
            db,
            change: change.cloned(),
            events: Vec::new(),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self.db {
            DbTx::Sqlite(_) => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            DbTx::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The change this transaction makes. Only transactions begun with
    /// [`Db::begin_change`] have one; asking another is a bug.
    pub(crate) fn change(&self) -> Result<&Change, MetaError> {
        self.change.as_ref().ok_or_else(|| {
            MetaError::Database("an event was recorded outside a change".to_string())
        })
    }

    /// The time of the change this transaction makes.
    pub(crate) fn at(&self) -> Result<Timestamp, MetaError> {
        Ok(self.change()?.at)
    }

    /// Records an event, to be inserted when the transaction commits.
    pub(crate) fn record(&mut self, event: NewEvent) -> Result<(), MetaError> {
        self.change()?;
        self.events.push(event);
        Ok(())
    }

    /// Inserts the recorded events, then commits.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let events = std::mem::take(&mut self.events);
        if let (Some(change), false) = (self.change.take(), events.is_empty()) {
            append(&mut self, &change, &events).await?;
        }
        match self.db {
            DbTx::Sqlite(tx) => tx.commit().await,
            #[cfg(feature = "postgres")]
            DbTx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// Where one statement runs: on a pool (by itself) or in a transaction.
pub(crate) enum On<'c> {
    SqliteWriter(&'c SqliteWriter),
    SqliteReaders(&'c SqliteReaders),
    #[cfg(feature = "postgres")]
    PgPool(&'c PgPool),
    Tx(&'c mut Tx),
}

impl<'c> From<&'c mut Tx> for On<'c> {
    fn from(tx: &'c mut Tx) -> On<'c> {
        On::Tx(tx)
    }
}

/// A statement parameter, kept as the caller's value until the statement
/// knows which driver binds it.
pub(crate) enum Arg<'q> {
    Int(Option<i64>),
    Text(Option<Cow<'q, str>>),
    Bytes(&'q [u8]),
    Bool(bool),
    /// A list of strings, read in SQL through [`Dialect::list`].
    TextList(Vec<&'q str>),
}

/// Values that can be bound as a statement parameter on both databases.
pub(crate) trait Bind<'q> {
    fn arg(self) -> Arg<'q>;
}

impl<'q> Bind<'q> for i64 {
    fn arg(self) -> Arg<'q> {
        Arg::Int(Some(self))
    }
}

impl<'q> Bind<'q> for Option<i64> {
    fn arg(self) -> Arg<'q> {
        Arg::Int(self)
    }
}

impl<'q> Bind<'q> for &'q str {
    fn arg(self) -> Arg<'q> {
        Arg::Text(Some(Cow::Borrowed(self)))
    }
}

impl<'q> Bind<'q> for Option<&'q str> {
    fn arg(self) -> Arg<'q> {
        Arg::Text(self.map(Cow::Borrowed))
    }
}

impl<'q> Bind<'q> for &'q String {
    fn arg(self) -> Arg<'q> {
        Arg::Text(Some(Cow::Borrowed(self)))
    }
}

impl<'q> Bind<'q> for &'q Option<String> {
    fn arg(self) -> Arg<'q> {
        Arg::Text(self.as_deref().map(Cow::Borrowed))
    }
}

impl<'q> Bind<'q> for String {
    fn arg(self) -> Arg<'q> {
        Arg::Text(Some(Cow::Owned(self)))
    }
}

impl<'q> Bind<'q> for bool {
    fn arg(self) -> Arg<'q> {
        Arg::Bool(self)
    }
}

impl<'q> Bind<'q> for &'q [u8] {
    fn arg(self) -> Arg<'q> {
        Arg::Bytes(self)
    }
}

impl<'q> Bind<'q> for &'q Vec<u8> {
    fn arg(self) -> Arg<'q> {
        Arg::Bytes(self)
    }
}

impl<'q> Bind<'q> for Vec<&'q str> {
    fn arg(self) -> Arg<'q> {
        Arg::TextList(self)
    }
}

/// A statement and its parameters.
pub(crate) struct Query<'q> {
    sql: &'q str,
    args: Vec<Arg<'q>>,
}

/// Starts a statement. Prepared statements are cached per connection by
/// their text, as with `sqlx::query`.
pub(crate) fn query(sql: &str) -> Query<'_> {
    Query {
        sql,
        args: Vec::new(),
    }
}

impl<'q> Query<'q> {
    /// Binds the next parameter (`$1`, `$2`, … in order).
    pub(crate) fn bind(mut self, value: impl Bind<'q>) -> Query<'q> {
        self.args.push(value.arg());
        self
    }

    #[cfg(feature = "postgres")]
    fn postgres(self) -> sqlx::query::Query<'q, Postgres, PgArguments> {
        let mut query = sqlx::query(self.sql);
        for arg in self.args {
            query = match arg {
                Arg::Int(value) => query.bind(value),
                Arg::Text(value) => query.bind(value),
                Arg::Bytes(value) => query.bind(value),
                Arg::Bool(value) => query.bind(value),
                Arg::TextList(items) => query.bind(items),
            };
        }
        query
    }

    /// Runs the statement; returns how many rows it changed.
    pub(crate) async fn execute<'c>(self, on: impl Into<On<'c>>) -> Result<u64, sqlx::Error> {
        let done = match on.into() {
            On::SqliteWriter(writer) => {
                let mut writer = writer.acquire().await?;
                let done = writer.connection().execute(self.sql, &self.args).await;
                writer.settle(done).await?
            }
            On::SqliteReaders(readers) => {
                let mut reader = readers.acquire().await?;
                let done = reader.connection().execute(self.sql, &self.args).await;
                kept_if_ok(&mut reader, done)?
            }
            #[cfg(feature = "postgres")]
            On::PgPool(pool) => self.postgres().execute(pool).await?.rows_affected(),
            On::Tx(tx) => match &mut tx.db {
                DbTx::Sqlite(tx) => tx.connection().execute(self.sql, &self.args).await?,
                #[cfg(feature = "postgres")]
                DbTx::Postgres(tx) => self.postgres().execute(&mut **tx).await?.rows_affected(),
            },
        };
        Ok(done)
    }

    /// Runs the statement and returns every row.
    pub(crate) async fn fetch_all<'c>(
        self,
        on: impl Into<On<'c>>,
    ) -> Result<Vec<Row>, sqlx::Error> {
        let rows = match on.into() {
            #[cfg(feature = "postgres")]
            On::PgPool(pool) => wrap(self.postgres().fetch_all(pool).await?, Row::Postgres),
            #[cfg(feature = "postgres")]
            On::Tx(Tx {
                db: DbTx::Postgres(tx),
                ..
            }) => wrap(self.postgres().fetch_all(&mut **tx).await?, Row::Postgres),
            on => wrap(self.fetch_sqlite(on, None).await?, Row::Sqlite),
        };
        Ok(rows)
    }

    /// Runs the statement and returns its first row, if any.
    pub(crate) async fn fetch_optional<'c>(
        self,
        on: impl Into<On<'c>>,
    ) -> Result<Option<Row>, sqlx::Error> {
        let row = match on.into() {
            #[cfg(feature = "postgres")]
            On::PgPool(pool) => self
                .postgres()
                .fetch_optional(pool)
                .await?
                .map(Row::Postgres),
            #[cfg(feature = "postgres")]
            On::Tx(Tx {
                db: DbTx::Postgres(tx),
                ..
            }) => self
                .postgres()
                .fetch_optional(&mut **tx)
                .await?
                .map(Row::Postgres),
            on => self
                .fetch_sqlite(on, Some(1))
                .await?
                .into_iter()
                .next()
                .map(Row::Sqlite),
        };
        Ok(row)
    }

    /// Runs the statement on SQLite and returns at most `limit` rows
    /// (`None`: all of them). Only SQLite's places are passed.
    async fn fetch_sqlite(
        self,
        on: On<'_>,
        limit: Option<usize>,
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        match on {
            On::SqliteWriter(writer) => {
                let mut writer = writer.acquire().await?;
                let rows = writer.connection().fetch(self.sql, &self.args, limit).await;
                writer.settle(rows).await
            }
            On::SqliteReaders(readers) => {
                let mut reader = readers.acquire().await?;
                let rows = reader.connection().fetch(self.sql, &self.args, limit).await;
                kept_if_ok(&mut reader, rows)
            }
            On::Tx(Tx {
                db: DbTx::Sqlite(tx),
                ..
            }) => tx.connection().fetch(self.sql, &self.args, limit).await,
            #[cfg(feature = "postgres")]
            On::PgPool(_)
            | On::Tx(Tx {
                db: DbTx::Postgres(_),
                ..
            }) => Err(sqlx::Error::Protocol(
                "a PostgreSQL statement was sent to SQLite".to_string(),
            )),
        }
    }

    /// Runs the statement and returns its first row, which must exist.
    pub(crate) async fn fetch_one<'c>(self, on: impl Into<On<'c>>) -> Result<Row, sqlx::Error> {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

/// Passes a statement's result on, closing the connection it ran on if it
/// failed (see [`SqliteReaders`]).
fn kept_if_ok<T>(
    reader: &mut super::sqlite_readers::Reader<'_>,
    result: Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    if result.is_err() {
        reader.discard();
    }
    result
}

fn wrap<R>(rows: Vec<R>, each: fn(R) -> Row) -> Vec<Row> {
    rows.into_iter().map(each).collect()
}

/// A row of either driver.
pub(crate) enum Row {
    /// A row SQLite returned, copied out of it.
    Sqlite(SqliteRow),
    #[cfg(feature = "postgres")]
    Postgres(PgRow),
}

/// A Rust type both drivers decode from a column (with the `postgres`
/// feature off, SQLite alone).
pub(crate) trait Column: FromSqlite + PostgresColumn {}

impl<T> Column for T where T: FromSqlite + PostgresColumn {}

#[cfg(feature = "postgres")]
pub(crate) trait PostgresColumn:
    for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>
{
}

#[cfg(feature = "postgres")]
impl<T> PostgresColumn for T where T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres> {}

#[cfg(not(feature = "postgres"))]
pub(crate) trait PostgresColumn {}

#[cfg(not(feature = "postgres"))]
impl<T> PostgresColumn for T {}

impl Row {
    /// Reads a column by name, reporting a missing or mistyped column as
    /// corruption.
    pub(crate) fn get<T: Column>(&self, name: &str) -> Result<T, MetaError> {
        let value = match self {
            Row::Sqlite(row) => row
                .named(name)
                .ok_or_else(|| "no such column".to_string())
                .and_then(T::from_sqlite),
            #[cfg(feature = "postgres")]
            Row::Postgres(row) => row.try_get(name).map_err(|error| error.to_string()),
        };
        value.map_err(|error| MetaError::Corrupt(format!("column {name}: {error}")))
    }

    /// Reads the first column.
    pub(crate) fn first<T: Column>(&self) -> Result<T, MetaError> {
        let value = match self {
            Row::Sqlite(row) => row
                .first()
                .ok_or_else(|| "no columns".to_string())
                .and_then(T::from_sqlite),
            #[cfg(feature = "postgres")]
            Row::Postgres(row) => row.try_get(0).map_err(|error| error.to_string()),
        };
        value.map_err(|error| MetaError::Corrupt(format!("first column: {error}")))
    }
}

/// Maps a sqlx error to `MetaError`, saying what was being done: a
/// condition outside the request (see [`is_unavailability`]) becomes
/// `Unavailable`, anything else `Database`.
pub(crate) fn database(context: &'static str) -> impl FnOnce(sqlx::Error) -> MetaError {
    move |error| {
        if is_unavailability(&error) {
            MetaError::Unavailable(format!("{context}: {error}"))
        } else {
            MetaError::Database(format!("{context}: {error}"))
        }
    }
}

/// Whether an error says the database cannot serve now, rather than that
/// the request or the data is wrong: no connection (refused, reset, none
/// free in time), SQLite's lock held by another process, a full or
/// read-only disk, a PostgreSQL server shutting down, out of resources, or
/// cancelling a statement that ran too long, or a transaction that lost a
/// deadlock or serialization conflict. Each may clear up on its own, and
/// the client is told to retry (`503`).
pub(crate) fn is_unavailability(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            // Primary result codes (the low byte of extended ones): BUSY,
            // LOCKED, READONLY, IOERR, FULL. The readiness probe and the
            // migrations still connect through sqlx.
            let sqlite_code = db
                .try_downcast_ref::<super::sqlite_conn::SqliteFailure>()
                .map(|failure| failure.code())
                .or_else(|| {
                    use sqlx::error::DatabaseError as _;
                    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()
                        .and_then(|sqlite| sqlite.code())
                        .and_then(|code| code.parse::<i32>().ok())
                });
            if let Some(code) = sqlite_code {
                return matches!(code & 0xff, 5 | 6 | 8 | 10 | 13);
            }
            #[cfg(feature = "postgres")]
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                // SQLSTATE classes 08 (connection), 53 (insufficient
                // resources, disk full among them), 57 (operator
                // intervention: shutdown, statement timeout), 58 (system
                // error); and the retryable conflicts 40001, 40P01, 55P03.
                let code = pg.code();
                return ["08", "53", "57", "58"]
                    .iter()
                    .any(|class| code.starts_with(class))
                    || matches!(code, "40001" | "40P01" | "55P03");
            }
            false
        }
        _ => false,
    }
}

/// Maps a write error: unique violations become `AlreadyExists`, foreign-key
/// violations `NotFound` (the row named a user or namespace that is absent).
pub(crate) fn write_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> MetaError {
    move |error| {
        if let Some(db) = error.as_database_error() {
            if db.is_unique_violation() {
                return MetaError::AlreadyExists;
            }
            if db.is_foreign_key_violation() {
                return MetaError::NotFound;
            }
        }
        database(context)(error)
    }
}
