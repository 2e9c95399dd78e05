//! The PostgreSQL backend, for several registry nodes sharing one database.
//!
//! The schema is SQLite's, table for table (`migrations/postgres/`), and the
//! methods are [`SqlMetaStore`]'s, the same statements as on SQLite; this
//! module connects, holds the migrations and says how the guarantees of
//! SQLite's single writer are kept with concurrent writers. The shared suite
//! checks both.
//!
//! # Concurrency
//!
//! SQLite runs one write transaction at a time (`BEGIN IMMEDIATE`), so every
//! check-then-write is trivially atomic. PostgreSQL runs writers in parallel,
//! and this backend keeps the same outcomes with PostgreSQL's default `READ
//! COMMITTED` isolation plus explicit row locks on exactly the rows a decision
//! depends on, rather than with `SERIALIZABLE`:
//!
//! - `SERIALIZABLE` would make every transaction retryable: writers pushing
//!   into the same repository (the common case during a multi-layer push)
//!   would abort each other on predicate-lock conflicts, and every method
//!   would need a retry loop. Row locks instead make the one conflicting
//!   writer wait for the other, which is what SQLite's single writer does, and
//!   leave unrelated writers running side by side.
//! - In `READ COMMITTED` each statement sees the rows committed before it
//!   began, and a `SELECT … FOR SHARE`/`FOR UPDATE` that had to wait for
//!   another transaction re-reads the row as that transaction left it (or
//!   skips it if it was deleted). So a check that locks its rows and the
//!   writes after it behave as if the competing transaction ran entirely
//!   before or entirely after.
//!
//! The conflicts that matter, and the lock that settles each:
//!
//! - `put_manifest`'s check that its blobs are linked and its children stored
//!   against a concurrent `unlink_blob` or `delete_manifest`: the links are
//!   checked by the `UPDATE` that marks them referenced, which locks their
//!   rows, and the children are read `FOR SHARE`, so the deletion waits for
//!   the push to commit (and then deletes the link, which the manifest no
//!   longer needs), or the push waits for the deletion and finds the row
//!   gone.
//! - `delete_manifest` against a concurrent push of an index listing the
//!   manifest, or a re-push that moves a tag onto it: the deletion locks the
//!   manifest row `FOR UPDATE` before looking for parents, and pushes lock it
//!   `FOR SHARE`, so one of them runs first and the other sees its result.
//! - Two pushes of the same new manifest: the insert is `ON CONFLICT DO
//!   NOTHING`, so the second waits for the first and then treats the manifest
//!   as already stored, as it would have on SQLite.
//! - Reference decisions about one blob (a link made or removed, a manifest
//!   referencing it stored or deleted, garbage collection re-checking and
//!   deleting it, a deletion marker): each such transaction first takes a
//!   transaction-scoped advisory lock per digest (`lock_digests`, in one
//!   global order, after any manifest row lock and before any link row
//!   lock), so they run one at a time per digest, as on SQLite, and a
//!   collection's `NOT EXISTS` re-check sees every reference committed
//!   before it.
//! - Rows that many kinds of writes update (a manifest's, its repository's,
//!   whose figures triggers keep): a manifest's row is always taken before
//!   its repository's. Pushes and deletions do so through the triggers, and
//!   a flush of pull statistics updates its images before their
//!   repositories for the same reason (the test
//!   `pull_statistics_and_a_tag_push_take_rows_in_one_order`).
//! - Upload and job leases: one conditional `UPDATE`/upsert whose `WHERE`
//!   states who may take the lease; PostgreSQL re-evaluates it against the
//!   newest row version when writers collide, so exactly one wins.
//! - Access-control writes are mostly one statement, whose conflicts surface
//!   as constraint violations (a taken name is `AlreadyExists`, a member or
//!   token naming a missing user or namespace `NotFound`); a namespace and
//!   its owner are inserted in one transaction. Signing-key changes read
//!   before they write and take one advisory lock (`sql/keys.rs`).
//!
//! Repositories are created with `INSERT … ON CONFLICT DO NOTHING` followed by
//! a lookup, which sees a repository another transaction created and committed
//! meanwhile. In each conflict above one side takes a single lock that the
//! other holds or wants, so the two wait rather than deadlock. Should
//! PostgreSQL still detect a deadlock (or lose the connection), the method
//! fails with `MetaError::Database` having changed nothing, as a SQLite write
//! fails after its busy timeout, and the client retries the request.
//!
//! # Migrations
//!
//! [`PostgresMetaStore::connect`] applies `migrations/postgres/` (embedded in
//! the binary) before anything else. sqlx's migrator holds a session-level
//! advisory lock (`pg_advisory_lock`, keyed by the database name) from before
//! it creates its bookkeeping table until it has applied everything, so nodes
//! starting together take turns: the first migrates, the others then find
//! nothing left to do.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Postgres};

use crate::sql::db::{database, Db};
use crate::sql::{EmbeddedMigrations, SqlMetaStore};
use crate::MetaError;

/// Connections per node. Metadata queries are short; a registry node's time
/// goes into blob IO. Sixteen lets a busy node run that many queries at once
/// while a handful of nodes stay well inside PostgreSQL's default limit of
/// 100 connections.
const POOL_CONNECTIONS: u32 = 16;

/// How long a query waits for a pooled connection, including making a new
/// one. A server that is down refuses connections at once, but the pool
/// keeps retrying until this runs out: it is what bounds a request's wait
/// (and turns it into `Unavailable`, a `503`) while PostgreSQL is gone.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// PostgreSQL's `statement_timeout` for the pool's connections: a query
/// stuck behind a lock or running away is cancelled (`57014`, reported as
/// `Unavailable`) instead of holding a request and a connection forever.
/// Migrations run on a connection of their own without it.
const STATEMENT_TIMEOUT: &str = "30s";

/// The embedded migrations, in order: (version, description, SQL). Versions
/// match SQLite's (`crate::sqlite::MIGRATIONS`) one for one, so a schema
/// version means the same tables on both backends.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "job leases",
        include_str!("../migrations/postgres/0002_job_leases.sql"),
    ),
    (
        3,
        "auth",
        include_str!("../migrations/postgres/0003_auth.sql"),
    ),
    (
        4,
        "garbage collection",
        include_str!("../migrations/postgres/0004_gc.sql"),
    ),
    (
        5,
        "signing keys",
        include_str!("../migrations/postgres/0005_signing_keys.sql"),
    ),
    (
        6,
        "upload principals",
        include_str!("../migrations/postgres/0006_upload_principals.sql"),
    ),
    (
        7,
        "namespaces",
        include_str!("../migrations/postgres/0007_namespaces.sql"),
    ),
    (
        8,
        "events",
        include_str!("../migrations/postgres/0008_events.sql"),
    ),
    (
        9,
        "images",
        include_str!("../migrations/postgres/0009_images.sql"),
    ),
    (
        10,
        "vulnerability advisor",
        include_str!("../migrations/postgres/0010_vulnerability_advisor.sql"),
    ),
    (
        11,
        "credentials",
        include_str!("../migrations/postgres/0011_credentials.sql"),
    ),
    (
        12,
        "lifecycle",
        include_str!("../migrations/postgres/0012_lifecycle.sql"),
    ),
    (
        13,
        "pull statistics",
        include_str!("../migrations/postgres/0013_pull_statistics.sql"),
    ),
    (
        14,
        "trash",
        include_str!("../migrations/postgres/0014_trash.sql"),
    ),
    (
        15,
        "webhooks",
        include_str!("../migrations/postgres/0015_webhooks.sql"),
    ),
    (
        16,
        "retention",
        include_str!("../migrations/postgres/0016_retention.sql"),
    ),
    (
        17,
        "quotas",
        include_str!("../migrations/postgres/0017_quotas.sql"),
    ),
    (
        18,
        "console_sessions",
        include_str!("../migrations/postgres/0018_console_sessions.sql"),
    ),
    (
        20,
        "repository figures",
        include_str!("../migrations/postgres/0020_repository_figures.sql"),
    ),
    (
        21,
        "replication",
        include_str!("../migrations/postgres/0021_replication.sql"),
    ),
    (
        22,
        "tag listing",
        include_str!("../migrations/postgres/0022_tag_listing.sql"),
    ),
    (
        23,
        "webhook envelope",
        include_str!("../migrations/postgres/0023_webhook_envelope.sql"),
    ),
    (
        24,
        "sbom referrers",
        include_str!("../migrations/postgres/0024_sbom_referrers.sql"),
    ),
    (
        25,
        "advisory sync",
        include_str!("../migrations/postgres/0025_advisory_sync.sql"),
    ),
    (
        26,
        "console figures",
        include_str!("../migrations/postgres/0026_console_figures.sql"),
    ),
    (
        27,
        "namespace pages",
        include_str!("../migrations/postgres/0027_namespace_pages.sql"),
    ),
    (
        28,
        "live image findings",
        include_str!("../migrations/postgres/0028_live_image_findings.sql"),
    ),
    (
        29,
        "replication pending deletes",
        include_str!("../migrations/postgres/0029_replication_pending_deletes.sql"),
    ),
    (
        30,
        "image package backfill",
        include_str!("../migrations/postgres/0030_image_package_backfill.sql"),
    ),
    (
        31,
        "namespace figures index",
        include_str!("../migrations/postgres/0031_namespace_figures_index.sql"),
    ),
    (
        32,
        "advisory data state",
        include_str!("../migrations/postgres/0032_advisory_data_state.sql"),
    ),
];

/// The metadata store on PostgreSQL.
pub type PostgresMetaStore = SqlMetaStore<Postgres>;

impl SqlMetaStore<Postgres> {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`,
    /// with the usual `sslmode` and other libpq parameters) and brings its
    /// schema up to date. The database must exist; its tables are created.
    pub async fn connect(url: &str) -> Result<Self, MetaError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(database("parsing the PostgreSQL connection URL"))?;
        migrate(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.options([("statement_timeout", STATEMENT_TIMEOUT)]))
            .await
            .map_err(database("connecting to PostgreSQL"))?;
        Ok(SqlMetaStore::new(Db::Postgres(pool)))
    }
}

/// Applies the embedded migrations the database has not seen yet, on a
/// connection of its own.
///
/// A dedicated connection, closed afterwards, guarantees that the migrator's
/// session-level advisory lock ends with it even when a migration fails
/// (sqlx releases the lock only on success); on a pooled connection the lock
/// could outlive the failure and block every other node's start-up.
async fn migrate(options: &PgConnectOptions) -> Result<(), MetaError> {
    let migrator = Migrator::new(EmbeddedMigrations(MIGRATIONS))
        .await
        .map_err(|error| MetaError::Database(format!("loading migrations: {error}")))?;
    let mut connection = options
        .connect()
        .await
        .map_err(database("connecting to PostgreSQL to migrate"))?;
    let result = migrator
        .run(&mut connection)
        .await
        .map_err(|error| MetaError::Database(format!("applying migrations: {error}")));
    // Closing politely is best effort: if it fails, dropping the connection
    // still ends the session and with it the lock.
    let _ = connection.close().await;
    result
}
