//! A SQLite connection whose statements run on the calling thread.
//!
//! sqlx's SQLite driver gives every connection a worker thread and hands
//! each statement to it and each result back: two wake-ups of a sleeping
//! thread per statement, usually on the other processor. A statement of
//! the push path takes SQLite 2 to 30 µs; the hand-offs around it cost more
//! than that (docs/performance.md, "Statements on the calling thread"), and
//! a pushed image runs about forty of them. Here a statement runs where the
//! request's task runs, with `rusqlite`, and no thread is woken.
//!
//! Running on the runtime's thread is safe only for work that cannot wait
//! long, so nothing here waits for a lock: the busy timeout is zero, and a
//! statement that finds the database locked by another process
//! (`SQLITE_BUSY`) is tried again after an asynchronous sleep, until the
//! connection's busy timeout has passed. A statement that failed with
//! `SQLITE_BUSY` changed nothing, so trying it again is safe. Commits do
//! not wait for the disk: in WAL mode with `synchronous = NORMAL` a commit
//! appends to the log without an fsync (`sqlite.rs`). The exception is the
//! commit that takes the log past SQLite's automatic checkpoint (1,000
//! pages): it copies the log into the database and syncs both, on its
//! thread. That is one commit in hundreds of images, and `push_small`'s
//! slowest image still finishes in half the time it took with sqlx's
//! worker threads (docs/performance.md). Statements read pages from the
//! operating system's cache, as the blob handlers' file metadata calls do.
//!
//! Errors are handed on as `sqlx::Error`, the type the rest of the SQL
//! layer and the PostgreSQL driver share: SQLite's own failures as
//! [`SqliteFailure`], a database error with SQLite's extended result code,
//! so unique and foreign-key violations and unavailability are recognised
//! as for PostgreSQL (`db.rs`).

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use super::db::Arg;

/// Prepared statements kept per connection. The metadata store has a few
/// hundred distinct statements, of which a busy registry runs a few dozen
/// over and over; sqlx kept 100 per connection.
const STATEMENT_CACHE: usize = 128;

/// The first pause before a statement that found the database locked is
/// tried again; it doubles up to [`MAX_BUSY_PAUSE`].
const FIRST_BUSY_PAUSE: Duration = Duration::from_millis(1);
const MAX_BUSY_PAUSE: Duration = Duration::from_millis(50);

/// A statement that runs longer than this holds its runtime thread long
/// enough to delay other requests, and is logged as a warning.
const SLOW_STATEMENT: Duration = Duration::from_millis(100);

/// Sets SQLite's process-wide options, once, before the first connection
/// (SQLite takes them only before it initializes itself).
///
/// The one option set turns off SQLite's memory statistics, which no part
/// of Berth reads: while they are on, every allocation and free SQLite
/// makes, on every connection, takes one process-wide mutex to count it,
/// and the readers on the runtime's threads and the writer take turns for
/// it. Counted during `push_small`, the server took 3,460 mutexes per image
/// with them on and 1,100 with them off (docs/performance.md, "SQLite's
/// memory statistics"). SQLite's own documentation recommends this setting
/// for speed. If SQLite was initialized already (something in the process
/// used it first), the call changes nothing and SQLite goes on as before.
pub(crate) fn configure_process() {
    static CONFIGURED: std::sync::Once = std::sync::Once::new();
    CONFIGURED.call_once(|| {
        // SAFETY: `sqlite3_config` is safe to call before SQLite is
        // initialized, which the `Once` and the callers (before their first
        // connection) see to; after that it returns `SQLITE_MISUSE` without
        // changing anything. The option takes one `int`.
        let _ = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::os::raw::c_int,
            )
        };
    });
}

/// How to open a connection, again after a failure too.
#[derive(Clone, Debug)]
pub(crate) struct SqliteOptions {
    /// The database file; `None` for a private in-memory database.
    path: Option<PathBuf>,
    read_only: bool,
    /// Whether this is the writing connection, which sets the durability
    /// and temporary-storage pragmas (see `sqlite.rs`).
    writer: bool,
    /// How long a statement keeps trying while another process holds the
    /// lock it needs.
    busy_timeout: Duration,
}

impl SqliteOptions {
    /// The writing connection to the file at `path` (created if missing).
    pub(crate) fn writer(path: PathBuf, busy_timeout: Duration) -> SqliteOptions {
        SqliteOptions {
            path: Some(path),
            read_only: false,
            writer: true,
            busy_timeout,
        }
    }

    /// A read-only connection to the file at `path`.
    pub(crate) fn reader(path: PathBuf, busy_timeout: Duration) -> SqliteOptions {
        SqliteOptions {
            path: Some(path),
            read_only: true,
            writer: false,
            busy_timeout,
        }
    }

    /// A private in-memory database, which lives as long as its connection.
    pub(crate) fn in_memory() -> SqliteOptions {
        SqliteOptions {
            path: None,
            read_only: false,
            writer: false,
            busy_timeout: Duration::ZERO,
        }
    }

    fn open_blocking(&self) -> rusqlite::Result<Connection> {
        configure_process();
        let connection = match &self.path {
            Some(path) => {
                let access = if self.read_only {
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                } else {
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
                };
                Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)?
            }
            None => Connection::open_in_memory()?,
        };
        // Waiting for another process's lock is done asynchronously
        // ([`SqliteConn::run`]); SQLite's own wait would hold the thread.
        connection.busy_timeout(Duration::ZERO)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        connection.execute_batch("PRAGMA foreign_keys = ON")?;
        if self.writer {
            // In WAL mode NORMAL syncs the log at checkpoints rather than at
            // every commit (`sqlite.rs` says why that is enough). The group
            // commit's savepoints (`sqlite_writer.rs`) keep the pages each
            // member changes first in a sub-journal, a temporary file by
            // default, written page by page; a member changes a few pages,
            // which in memory cost no system call. The migrations, whose
            // index builds may sort more than memory should hold, run on a
            // connection of their own without it.
            connection.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY")?;
        }
        Ok(connection)
    }
}

/// One connection; see the module documentation.
#[derive(Debug)]
pub(crate) struct SqliteConn {
    connection: Connection,
    busy_timeout: Duration,
}

/// A row, copied out of SQLite: its statement's column names and values.
#[derive(Debug)]
pub(crate) struct SqliteRow {
    columns: Arc<[Box<str>]>,
    values: Vec<Value>,
}

impl SqliteRow {
    /// The value of the column called `name`, if there is one.
    pub(crate) fn named(&self, name: &str) -> Option<&Value> {
        let index = self.columns.iter().position(|column| &**column == name)?;
        self.values.get(index)
    }

    /// The value of the first column, if there is one.
    pub(crate) fn first(&self) -> Option<&Value> {
        self.values.first()
    }
}

impl SqliteConn {
    /// Opens a connection. Opening reads the file's header, so it runs on
    /// the blocking pool.
    pub(crate) async fn open(options: &SqliteOptions) -> Result<SqliteConn, sqlx::Error> {
        let opening = options.clone();
        let connection = tokio::task::spawn_blocking(move || opening.open_blocking())
            .await
            .map_err(|_| sqlx::Error::WorkerCrashed)?
            .map_err(to_sqlx)?;
        Ok(SqliteConn {
            connection,
            busy_timeout: options.busy_timeout,
        })
    }

    /// Runs a statement (or several, separated by semicolons, without
    /// parameters) and returns how many rows it changed.
    pub(crate) async fn execute(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<u64, sqlx::Error> {
        self.run(sql, |connection| {
            step(connection, sql, args, None)?;
            Ok(connection.changes())
        })
        .await
    }

    /// Runs a statement and returns its rows, at most `limit` of them.
    pub(crate) async fn fetch(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        limit: Option<usize>,
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        self.run(sql, |connection| {
            step(connection, sql, args, Some(limit.unwrap_or(usize::MAX)))
        })
        .await
    }

    /// Runs `work` on the connection, again after a pause while another
    /// process holds the lock it needs, until the busy timeout has passed.
    /// Each run is logged at debug level (the statement's text, never its
    /// parameters), and one that held the thread long as a warning.
    async fn run<T>(
        &mut self,
        sql: &str,
        work: impl Fn(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, sqlx::Error> {
        let started = Instant::now();
        let mut pause = FIRST_BUSY_PAUSE;
        loop {
            let began = Instant::now();
            let done = work(&self.connection);
            let took = began.elapsed();
            if took >= SLOW_STATEMENT {
                tracing::warn!(
                    statement = summary(sql),
                    elapsed_ms = took.as_millis() as u64,
                    "a SQLite statement held its thread long"
                );
            } else {
                tracing::debug!(
                    statement = summary(sql),
                    elapsed_us = took.as_micros() as u64,
                    "SQLite statement"
                );
            }
            match done {
                Err(error) if is_busy(&error) && started.elapsed() < self.busy_timeout => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_BUSY_PAUSE);
                }
                done => return done.map_err(to_sqlx),
            }
        }
    }

    /// Runs `work` with the raw connection, for the migrations of an
    /// in-memory database.
    pub(crate) fn with_raw<T>(
        &mut self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, sqlx::Error> {
        work(&self.connection).map_err(to_sqlx)
    }
}

/// The start of a statement's text, for the log: its first words, on one
/// line.
fn summary(sql: &str) -> String {
    let mut words = String::new();
    for word in sql.split_whitespace() {
        if words.len() + word.len() > 80 {
            words.push_str(" …");
            break;
        }
        if !words.is_empty() {
            words.push(' ');
        }
        words.push_str(word);
    }
    words
}

/// Prepares (or takes from the cache) and binds the statement, steps
/// through it and collects up to `rows` rows (`None`: none, and the
/// statement may be several, run in turn without parameters).
fn step(
    connection: &Connection,
    sql: &str,
    args: &[Arg<'_>],
    rows: Option<usize>,
) -> rusqlite::Result<Vec<SqliteRow>> {
    if is_batch(sql) {
        // A prepared statement runs only the first of several, silently;
        // a script with neither parameters nor rows runs as a batch, and
        // anything else is a bug to be told about.
        if rows.is_some() || !args.is_empty() {
            return Err(rusqlite::Error::MultipleStatement);
        }
        connection.execute_batch(sql)?;
        return Ok(Vec::new());
    }
    let mut statement = connection.prepare_cached(sql)?;
    for index in 1..=statement.parameter_count() {
        // `$n` names the n-th argument, wherever and however often it
        // appears; SQLite numbers parameters by first appearance instead.
        let number = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$').or_else(|| name.strip_prefix('?')))
            .and_then(|digits| digits.parse::<usize>().ok())
            .unwrap_or(index);
        let arg = args
            .get(number.wrapping_sub(1))
            .ok_or_else(|| rusqlite::Error::InvalidParameterCount(number, args.len()))?;
        match arg {
            Arg::Int(value) => statement.raw_bind_parameter(index, value)?,
            Arg::Text(value) => statement.raw_bind_parameter(index, value.as_deref())?,
            Arg::Bytes(value) => statement.raw_bind_parameter(index, value)?,
            Arg::Bool(value) => statement.raw_bind_parameter(index, i64::from(*value))?,
            Arg::TextList(items) => statement.raw_bind_parameter(
                index,
                serde_json::to_string(items).expect("strings serialize"),
            )?,
        }
    }
    let limit = rows.unwrap_or(0);
    let columns: Option<Arc<[Box<str>]>> = (limit > 0).then(|| {
        statement
            .column_names()
            .into_iter()
            .map(Box::from)
            .collect()
    });
    let count = statement.column_count();
    let mut stepping = statement.raw_query();
    let mut collected = Vec::new();
    while let Some(row) = stepping.next()? {
        if let Some(columns) = columns.as_ref().filter(|_| collected.len() < limit) {
            let mut values = Vec::with_capacity(count);
            for index in 0..count {
                values.push(Value::from(row.get_ref(index)?));
            }
            collected.push(SqliteRow {
                columns: columns.clone(),
                values,
            });
        } else if rows.is_some() && collected.len() >= limit {
            // A caller that wants one row stops at it, as sqlx did.
            break;
        }
    }
    Ok(collected)
}

/// Whether `sql` holds more than one statement (a schema script): one
/// that ends at its only semicolon has one. A semicolon inside a string
/// literal counts too, which makes such a statement fail loudly rather
/// than run in part.
fn is_batch(sql: &str) -> bool {
    let trimmed = sql.trim_end().trim_end_matches(';');
    trimmed.contains(';')
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(failure, _)
        if matches!(failure.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// SQLite's failure of a statement: its extended result code and message.
#[derive(Debug)]
pub(crate) struct SqliteFailure {
    code: i32,
    message: String,
}

impl SqliteFailure {
    /// SQLite's extended result code; its low byte is the primary code.
    pub(crate) fn code(&self) -> i32 {
        self.code
    }
}

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteFailure {}

impl sqlx::error::DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use sqlx::error::ErrorKind;
        // SQLITE_CONSTRAINT_UNIQUE, _PRIMARYKEY, _FOREIGNKEY, _NOTNULL,
        // _CHECK.
        match self.code {
            2067 | 1555 => ErrorKind::UniqueViolation,
            787 => ErrorKind::ForeignKeyViolation,
            1299 => ErrorKind::NotNullViolation,
            275 => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

/// Hands a `rusqlite` error on as the SQL layer's error type.
fn to_sqlx(error: rusqlite::Error) -> sqlx::Error {
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            sqlx::Error::Database(Box::new(SqliteFailure {
                code: failure.extended_code,
                message: message.unwrap_or_else(|| failure.to_string()),
            }))
        }
        other => sqlx::Error::Protocol(format!("SQLite: {other}")),
    }
}

/// A Rust type read from a SQLite value, converted as SQLite's own
/// `sqlite3_value_*` functions (and sqlx before) convert: an integer read
/// as text is its decimal digits, text read as an integer its leading
/// number. NULL is an error unless the type is an `Option`.
pub(crate) trait FromSqlite: Sized {
    fn from_sqlite(value: &Value) -> Result<Self, String>;
}

fn unexpected_null() -> String {
    "unexpected NULL".to_string()
}

impl FromSqlite for i64 {
    fn from_sqlite(value: &Value) -> Result<Self, String> {
        match value {
            Value::Integer(integer) => Ok(*integer),
            Value::Real(real) => Ok(*real as i64),
            Value::Text(text) => Ok(leading_integer(text)),
            Value::Blob(bytes) => Ok(leading_integer(&String::from_utf8_lossy(bytes))),
            Value::Null => Err(unexpected_null()),
        }
    }
}

impl FromSqlite for i32 {
    fn from_sqlite(value: &Value) -> Result<Self, String> {
        let wide = i64::from_sqlite(value)?;
        i32::try_from(wide).map_err(|_| format!("{wide} is out of range"))
    }
}

impl FromSqlite for f64 {
    fn from_sqlite(value: &Value) -> Result<Self, String> {
        match value {
            Value::Integer(integer) => Ok(*integer as f64),
            Value::Real(real) => Ok(*real),
            Value::Text(text) => Ok(text.trim().parse().unwrap_or(0.0)),
            Value::Blob(_) => Ok(0.0),
            Value::Null => Err(unexpected_null()),
        }
    }
}

impl FromSqlite for bool {
    fn from_sqlite(value: &Value) -> Result<Self, String> {
        Ok(i64::from_sqlite(value)? != 0)
    }
}

impl FromSqlite for String {
    fn from_sqlite(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => Ok(text.clone()),
            Value::Integer(integer) => Ok(integer.to_string()),
            Value::Real(real) => Ok(real.to_string()),
            Value::Blob(bytes) => String::from_utf8(bytes.clone()).map_err(|e| e.to_string()),
            Value::Null => Err(unexpected_null()),
        }
    }
}

impl FromSqlite for Vec<u8> {
    fn from_sqlite(value: &Value) -> Result<Self, String> {
        match value {
            Value::Blob(bytes) => Ok(bytes.clone()),
            Value::Text(text) => Ok(text.as_bytes().to_vec()),
            Value::Null => Err(unexpected_null()),
            other => Ok(String::from_sqlite(other)?.into_bytes()),
        }
    }
}

impl<T: FromSqlite> FromSqlite for Option<T> {
    fn from_sqlite(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            value => T::from_sqlite(value).map(Some),
        }
    }
}

/// The integer at the start of `text`, as SQLite reads one (0 if none).
fn leading_integer(text: &str) -> i64 {
    let text = text.trim_start();
    let end = text
        .char_indices()
        .find(|&(at, c)| !(c.is_ascii_digit() || (at == 0 && (c == '-' || c == '+'))))
        .map_or(text.len(), |(at, _)| at);
    text[..end].parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value, and what it reads as an integer, as text and as a flag.
    type Case = (Value, Option<i64>, Option<String>, Option<bool>);

    #[test]
    fn values_convert_as_sqlite_converts_them() {
        let cases: Vec<Case> = vec![
            (Value::Integer(7), Some(7), Some("7".into()), Some(true)),
            (Value::Integer(0), Some(0), Some("0".into()), Some(false)),
            (
                Value::Text("12ab".into()),
                Some(12),
                Some("12ab".into()),
                Some(true),
            ),
            (
                Value::Text("-3".into()),
                Some(-3),
                Some("-3".into()),
                Some(true),
            ),
            (
                Value::Text("x".into()),
                Some(0),
                Some("x".into()),
                Some(false),
            ),
            (Value::Real(2.5), Some(2), Some("2.5".into()), Some(true)),
            (Value::Null, None, None, None),
        ];
        for (value, integer, text, flag) in cases {
            assert_eq!(i64::from_sqlite(&value).ok(), integer, "{value:?}");
            assert_eq!(String::from_sqlite(&value).ok(), text, "{value:?}");
            assert_eq!(bool::from_sqlite(&value).ok(), flag, "{value:?}");
            assert_eq!(
                Option::<i64>::from_sqlite(&value).unwrap(),
                integer,
                "{value:?}"
            );
        }
    }

    async fn memory() -> SqliteConn {
        let mut connection = SqliteConn::open(&SqliteOptions::in_memory()).await.unwrap();
        connection
            .execute(
                "CREATE TABLE t (a INTEGER, b TEXT); CREATE TABLE u (x INTEGER)",
                &[],
            )
            .await
            .unwrap();
        connection
    }

    #[test]
    fn a_statement_is_logged_by_its_first_words_on_one_line() {
        assert_eq!(summary("SELECT a,\n   b FROM t"), "SELECT a, b FROM t");
        let long = format!("SELECT {} FROM t", "column, ".repeat(20));
        let logged = summary(&long);
        assert!(logged.ends_with(" …") && logged.len() <= 90, "{logged}");
    }

    #[tokio::test]
    async fn numbered_parameters_bind_by_number_wherever_they_appear() {
        let mut connection = memory().await;
        let args = [Arg::Text(Some("b".into())), Arg::Int(Some(4))];
        // `$2` appears first and `$1` twice: SQLite's own numbering would
        // swap them.
        let changed = connection
            .execute("INSERT INTO t (a, b) SELECT $2, $1 WHERE $1 = 'b'", &args)
            .await
            .unwrap();
        assert_eq!(changed, 1);
        let rows = connection
            .fetch("SELECT a, b FROM t WHERE b = $1", &args[..1], None)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].named("a"), Some(&Value::Integer(4)));
        assert_eq!(rows[0].named("b"), Some(&Value::Text("b".into())));
        assert_eq!(rows[0].named("c"), None);
    }

    #[tokio::test]
    async fn a_limited_fetch_stops_at_its_limit_and_a_missing_argument_fails() {
        let mut connection = memory().await;
        for value in 0..5 {
            connection
                .execute("INSERT INTO u (x) VALUES ($1)", &[Arg::Int(Some(value))])
                .await
                .unwrap();
        }
        let rows = connection
            .fetch("SELECT x FROM u ORDER BY x", &[], Some(1))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].first(), Some(&Value::Integer(0)));
        let all = connection
            .fetch("SELECT x FROM u", &[], None)
            .await
            .unwrap();
        assert_eq!(all.len(), 5);
        assert!(connection
            .execute("INSERT INTO u (x) VALUES ($1)", &[])
            .await
            .is_err());
    }

    #[tokio::test]
    async fn constraint_failures_keep_their_kind() {
        let mut connection = memory().await;
        connection
            .execute(
                "CREATE TABLE k (id INTEGER PRIMARY KEY, n TEXT UNIQUE)",
                &[],
            )
            .await
            .unwrap();
        connection
            .execute("INSERT INTO k (n) VALUES ('a')", &[])
            .await
            .unwrap();
        let error = connection
            .execute("INSERT INTO k (n) VALUES ('a')", &[])
            .await
            .unwrap_err();
        assert!(
            error.as_database_error().unwrap().is_unique_violation(),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_statement_waits_out_another_process_lock_and_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let options = SqliteOptions::writer(path.clone(), Duration::from_millis(300));
        let mut connection = SqliteConn::open(&options).await.unwrap();
        connection
            .execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)", &[])
            .await
            .unwrap();
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        // Released while the statement waits: it then succeeds.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            holder.execute_batch("ROLLBACK").unwrap();
            holder
        });
        connection
            .execute("INSERT INTO t VALUES (1)", &[])
            .await
            .unwrap();
        let holder = release.join().unwrap();
        // Held throughout: the statement fails once the timeout passed.
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = Instant::now();
        let error = connection
            .execute("INSERT INTO t VALUES (2)", &[])
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(super::super::db::is_unavailability(&error), "{error}");
    }
}
