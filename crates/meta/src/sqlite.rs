//! The SQLite backend: one database file, opened in WAL mode. The methods
//! are [`SqlMetaStore`]'s, shared with PostgreSQL; this module opens the
//! file and holds the migrations.
//!
//! SQLite allows one writer at a time. Writes therefore go through exactly
//! one connection, where they queue in-process instead of retrying on
//! `SQLITE_BUSY`, and every write transaction starts with `BEGIN IMMEDIATE`,
//! which takes the write lock up front so that a transaction that reads before
//! it writes cannot fail halfway when another process holds the lock (the busy
//! timeout covers that wait instead). Reads go through a separate small set of
//! read-only connections, which WAL lets run alongside the writer, lent one
//! statement at a time (`sql::sqlite_readers`). Statements run on the calling
//! thread (`sql::sqlite_conn` says why); the migrations run through sqlx's
//! migrator on a connection of their own, closed once they are applied.
//!
//! The schema lives in `migrations/sqlite/`, is embedded into the binary and is
//! applied on open; see [`MIGRATIONS`].

use std::path::Path;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Sqlite};

use crate::sql::db::{database, Db};
use crate::sql::sqlite_conn::{SqliteConn, SqliteOptions};
use crate::sql::sqlite_readers::SqliteReaders;
use crate::sql::sqlite_writer::SqliteWriter;
use crate::sql::{EmbeddedMigrations, SqlMetaStore};
use crate::MetaError;

/// How long a connection waits for another process's write lock before
/// failing with `Unavailable` (a `503` the client retries). Writes are
/// milliseconds long, `berth gc` and `berth admin` transactions a fraction
/// of a second, so a lock held longer than this is stuck, not busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a request waits for a connection: the writer is one
/// connection, so this bounds the queue behind a writer that waits out
/// [`BUSY_TIMEOUT`], and a request gets its `503` within about two seconds
/// instead of queueing without end.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Read connections. Reads are short and WAL lets them run in parallel with
/// each other and with the writer; a handful is enough for a registry whose
/// heavy lifting is blob IO, not metadata.
const READ_CONNECTIONS: usize = 4;

/// The embedded migrations, in order: (version, description, SQL). They are
/// embedded in the binary rather than read from disk at start-up; the shared
/// `EmbeddedMigrations` source says why not with `sqlx::migrate!`.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "job leases",
        include_str!("../migrations/sqlite/0002_job_leases.sql"),
    ),
    (
        3,
        "auth",
        include_str!("../migrations/sqlite/0003_auth.sql"),
    ),
    (
        4,
        "garbage collection",
        include_str!("../migrations/sqlite/0004_gc.sql"),
    ),
    (
        5,
        "signing keys",
        include_str!("../migrations/sqlite/0005_signing_keys.sql"),
    ),
    (
        6,
        "upload principals",
        include_str!("../migrations/sqlite/0006_upload_principals.sql"),
    ),
    (
        7,
        "namespaces",
        include_str!("../migrations/sqlite/0007_namespaces.sql"),
    ),
    (
        8,
        "events",
        include_str!("../migrations/sqlite/0008_events.sql"),
    ),
    (
        9,
        "images",
        include_str!("../migrations/sqlite/0009_images.sql"),
    ),
    (
        10,
        "vulnerability advisor",
        include_str!("../migrations/sqlite/0010_vulnerability_advisor.sql"),
    ),
    (
        11,
        "credentials",
        include_str!("../migrations/sqlite/0011_credentials.sql"),
    ),
    (
        12,
        "lifecycle",
        include_str!("../migrations/sqlite/0012_lifecycle.sql"),
    ),
    (
        13,
        "pull statistics",
        include_str!("../migrations/sqlite/0013_pull_statistics.sql"),
    ),
    (
        14,
        "trash",
        include_str!("../migrations/sqlite/0014_trash.sql"),
    ),
    (
        15,
        "webhooks",
        include_str!("../migrations/sqlite/0015_webhooks.sql"),
    ),
    (
        16,
        "retention",
        include_str!("../migrations/sqlite/0016_retention.sql"),
    ),
    (
        17,
        "quotas",
        include_str!("../migrations/sqlite/0017_quotas.sql"),
    ),
    (
        18,
        "console_sessions",
        include_str!("../migrations/sqlite/0018_console_sessions.sql"),
    ),
    (
        20,
        "repository figures",
        include_str!("../migrations/sqlite/0020_repository_figures.sql"),
    ),
    (
        21,
        "replication",
        include_str!("../migrations/sqlite/0021_replication.sql"),
    ),
    (
        22,
        "tag listing",
        include_str!("../migrations/sqlite/0022_tag_listing.sql"),
    ),
    (
        23,
        "webhook envelope",
        include_str!("../migrations/sqlite/0023_webhook_envelope.sql"),
    ),
    (
        24,
        "sbom referrers",
        include_str!("../migrations/sqlite/0024_sbom_referrers.sql"),
    ),
    (
        25,
        "advisory sync",
        include_str!("../migrations/sqlite/0025_advisory_sync.sql"),
    ),
    (
        26,
        "console figures",
        include_str!("../migrations/sqlite/0026_console_figures.sql"),
    ),
    (
        27,
        "namespace pages",
        include_str!("../migrations/sqlite/0027_namespace_pages.sql"),
    ),
    (
        28,
        "live image findings",
        include_str!("../migrations/sqlite/0028_live_image_findings.sql"),
    ),
    (
        29,
        "replication pending deletes",
        include_str!("../migrations/sqlite/0029_replication_pending_deletes.sql"),
    ),
    (
        30,
        "image package backfill",
        include_str!("../migrations/sqlite/0030_image_package_backfill.sql"),
    ),
    (
        31,
        "namespace figures index",
        include_str!("../migrations/sqlite/0031_namespace_figures_index.sql"),
    ),
    (
        32,
        "advisory data state",
        include_str!("../migrations/sqlite/0032_advisory_data_state.sql"),
    ),
];

/// The metadata store on SQLite.
pub type SqliteMetaStore = SqlMetaStore<Sqlite>;

impl SqlMetaStore<Sqlite> {
    /// Opens (creating if needed) the database file at `path` and brings its
    /// schema up to date.
    pub async fn open(path: &Path) -> Result<Self, MetaError> {
        // Before sqlx's migrator, whose connection would initialize SQLite.
        super::sql::sqlite_conn::configure_process();
        let migrate_options = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode, NORMAL syncs the log at checkpoints rather than at
            // every commit: a power loss may lose the last commits but never
            // corrupts the database, and a registry client whose push was
            // lost simply pushes again. FULL would cost an fsync per commit.
            .synchronous(SqliteSynchronous::Normal);
        // The schema is brought up to date through sqlx's migrator, which
        // also puts the file in WAL mode (stored in the file); the store's
        // own connections run their statements on the calling thread
        // (`sql/sqlite_conn.rs`).
        let mut migrating = migrate_options
            .connect()
            .await
            .map_err(database("opening the database for writing"))?;
        migrate(&mut migrating).await?;
        // The writer stays open (reopened only after a failure), which keeps
        // the WAL and shared-memory files in place: the read-only
        // connections need them to open the file.
        let write_options = SqliteOptions::writer(path.to_path_buf(), BUSY_TIMEOUT);
        let connection = SqliteConn::open(&write_options)
            .await
            .map_err(database("opening the database for writing"))?;
        let _ = migrating.close().await;
        let write = SqliteWriter::new(connection, Some(write_options), ACQUIRE_TIMEOUT);
        // The journal mode is stored in the file, so readers need not (and,
        // being read-only, could not) set it.
        let read = SqliteReaders::open(
            SqliteOptions::reader(path.to_path_buf(), BUSY_TIMEOUT),
            READ_CONNECTIONS,
            ACQUIRE_TIMEOUT,
        )
        .await
        .map_err(database("opening the database for reading"))?;
        Ok(SqlMetaStore::new(Db::Sqlite {
            read: Some(std::sync::Arc::new(read)),
            write: std::sync::Arc::new(write),
            path: Some(path.to_path_buf()),
        }))
    }

    /// Opens a private in-memory database, for tests.
    ///
    /// An in-memory database lives as long as its one connection, so reads and
    /// writes share that connection and it is never closed for idleness.
    pub async fn open_in_memory() -> Result<Self, MetaError> {
        let mut connection = SqliteConn::open(&SqliteOptions::in_memory())
            .await
            .map_err(database("opening an in-memory database"))?;
        // A private in-memory database cannot be shared with sqlx's
        // migrator, and a new one has seen no migration: each is applied in
        // order, in one transaction.
        connection
            .with_raw(|raw| {
                let tx = raw.unchecked_transaction()?;
                for (_, _, sql) in MIGRATIONS {
                    tx.execute_batch(sql)?;
                }
                tx.commit()
            })
            .map_err(database("migrating an in-memory database"))?;
        Ok(SqlMetaStore::new(Db::Sqlite {
            read: None,
            write: std::sync::Arc::new(SqliteWriter::new(connection, None, ACQUIRE_TIMEOUT)),
            path: None,
        }))
    }
}

/// Applies the embedded migrations that the database has not seen yet.
async fn migrate(connection: &mut sqlx::SqliteConnection) -> Result<(), MetaError> {
    let migrator = Migrator::new(EmbeddedMigrations(MIGRATIONS))
        .await
        .map_err(|error| MetaError::Database(format!("loading migrations: {error}")))?;
    migrator
        .run(connection)
        .await
        .map_err(|error| MetaError::Database(format!("applying migrations: {error}")))
}
