//! The one implementation of every metadata trait, over SQLite or PostgreSQL.
//!
//! # Layout
//!
//! - [`SqlMetaStore`]: the store; [`crate::sqlite`] and [`crate::postgres`]
//!   open it on their database.
//! - `db`: statements, transactions and rows on either database, and the
//!   few [`Dialect`](db::Dialect) spellings that differ.
//! - One file per trait (`repositories`, `blobs`, `manifests`, `uploads`,
//!   `jobs`, `gc`, `namespaces`, `users`, `members`, `tokens`, `keys`,
//!   `advisor`, `webhooks`, `audit`),
//!   holding its SQL once.
//!
//! Both backends run the same statements and keep the same guarantees:
//! SQLite by running one write transaction at a time, PostgreSQL with the
//! row and advisory locks `postgres.rs` describes; where a statement takes
//! such a lock it is spelled so that it is a no-op on SQLite
//! ([`Dialect::for_share`](db::Dialect::for_share), [`lock_digests`]).

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use berth_oci::{Digest, RepoName, Tag};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType};

use crate::{EventKind, MetaError, MetaStore, Timestamp};

pub(crate) mod db;

mod advisor;
mod advisory_sync;
mod audit;
mod blobs;
pub(crate) mod events;
mod findings;
mod gc;
mod images;
mod immutable;
mod jobs;
mod keys;
mod manifests;
mod members;
mod namespaces;
mod pulls;
pub(crate) mod quotas;
mod replication;
mod repositories;
mod retention;
mod sessions;
pub(crate) mod sqlite_conn;
pub(crate) mod sqlite_readers;
pub(crate) mod sqlite_writer;
mod tokens;
mod trash;
mod uploads;
pub(crate) mod usage;
mod users;
mod webhooks;

use db::{database, query, Db, Dialect, Tx};
use events::NewEvent;

/// The metadata store on a SQL database. `B` is the database (`sqlx::Sqlite`
/// or `sqlx::Postgres`): it names the type ([`crate::sqlite::SqliteMetaStore`],
/// [`crate::postgres::PostgresMetaStore`]) and chooses the constructor; the
/// methods are the same code for both.
pub struct SqlMetaStore<B> {
    pub(crate) db: Db,
    /// The storage limit of namespaces without one of their own (`None`:
    /// unlimited), which the quota check applies inside the transaction.
    pub(crate) default_storage_limit: Option<u64>,
    backend: PhantomData<fn() -> B>,
}

impl<B> Clone for SqlMetaStore<B> {
    fn clone(&self) -> Self {
        SqlMetaStore::new(self.db.clone()).with_default_storage_limit(self.default_storage_limit)
    }
}

impl<B> std::fmt::Debug for SqlMetaStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlMetaStore")
            .field("dialect", &self.db.dialect())
            .finish_non_exhaustive()
    }
}

impl<B> SqlMetaStore<B> {
    pub(crate) fn new(db: Db) -> Self {
        SqlMetaStore {
            db,
            default_storage_limit: None,
            backend: PhantomData,
        }
    }

    /// Sets the storage limit of namespaces that have none of their own
    /// (the server's `[quota] default_storage`); `None`, the default, is
    /// unlimited. Configuration is read by the binary, never here: it hands
    /// the value over when it opens the store.
    pub fn with_default_storage_limit(mut self, limit: Option<u64>) -> Self {
        self.default_storage_limit = limit;
        self
    }

    /// Closes the connections, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.db.close().await;
    }
}

#[async_trait::async_trait]
impl<B: 'static> MetaStore for SqlMetaStore<B> {
    async fn check_ready(&self) -> Result<(), MetaError> {
        query("SELECT 1")
            .execute(self.db.reader())
            .await
            .map_err(database("checking the database"))?;
        self.db.probe_write_lock().await
    }
}

/// Embedded migrations, (version, description, SQL) in order, as a source
/// sqlx's migrator understands.
///
/// They are embedded with `include_str!` rather than `sqlx::migrate!` because
/// that macro needs sqlx's `macros` feature (a proc-macro crate that compiles
/// its own copy of SQLite), which nothing else in the workspace needs. The
/// layout (`NNNN_name.sql`) and the `_sqlx_migrations` bookkeeping table are
/// the same, so switching to the macro later changes nothing on disk.
///
/// An applied migration's text must never change: the migrator stores its
/// checksum and refuses to start on a database whose history differs.
/// Public so that upgrade tests can build a database at an older schema
/// (`Migrator::new(EmbeddedMigrations(&MIGRATIONS[..n]))`).
#[derive(Debug)]
pub struct EmbeddedMigrations(pub &'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(std::future::ready(Ok(migrations)))
    }
}

// --- conversions between SQL values and `berth_oci` types ---

/// Converts a count or size for storage; SQL integers are signed.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, MetaError> {
    i64::try_from(value).map_err(|_| MetaError::Database(format!("{what} {value} is too large")))
}

/// Converts a page limit; anything beyond `i64::MAX` means "no limit".
pub(crate) fn limit_to_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(crate) fn parse_digest(text: &str) -> Result<Digest, MetaError> {
    Digest::parse(text).map_err(|error| MetaError::Corrupt(format!("digest {text:?}: {error}")))
}

pub(crate) fn parse_repository(text: &str) -> Result<RepoName, MetaError> {
    RepoName::parse(text)
        .map_err(|error| MetaError::Corrupt(format!("repository name {text:?}: {error}")))
}

pub(crate) fn parse_tag(text: &str) -> Result<Tag, MetaError> {
    Tag::parse(text).map_err(|error| MetaError::Corrupt(format!("tag {text:?}: {error}")))
}

pub(crate) fn parse_size(size: i64) -> Result<u64, MetaError> {
    u64::try_from(size).map_err(|_| MetaError::Corrupt(format!("negative size {size}")))
}

/// Returns the digests' text, each once, in their first order.
pub(crate) fn distinct(digests: &[Digest]) -> Vec<&str> {
    let mut texts: Vec<&str> = Vec::with_capacity(digests.len());
    for digest in digests {
        if !texts.contains(&digest.as_str()) {
            texts.push(digest.as_str());
        }
    }
    texts
}

// --- statements several traits share ---

/// Returns the repository's id, or `None` if it does not exist.
pub(crate) async fn repository_id(
    tx: &mut Tx,
    repository: &RepoName,
) -> Result<Option<i64>, MetaError> {
    query("SELECT id FROM repositories WHERE name = $1")
        .bind(repository.as_str())
        .fetch_optional(tx)
        .await
        .map_err(database("looking up a repository"))?
        .map(|row| row.first())
        .transpose()
}

/// What a blob link and a manifest push read before they write: the
/// repository they write to and whether a storage limit applies to its
/// namespace (see [`destination`]).
pub(crate) struct Destination {
    /// The repository's id; the repository is created if it was new.
    pub(crate) repository_id: i64,
    /// Whether the registry-wide default or the namespace's own storage
    /// limit applies, so that the caller's quota check must run. A limit
    /// set after this read applies to the writes that start after it
    /// committed.
    pub(crate) limited: bool,
}

/// The columns [`destination`] reads: `$1` is the repository, `$2` its
/// namespace.
macro_rules! destination_columns {
    () => {
        "(SELECT id FROM repositories WHERE name = $1) AS repository_id, \
         (SELECT storage_limit FROM namespace_quotas WHERE namespace = $2) AS storage_limit"
    };
}

/// Reads where a write to `repository` goes, creating the repository if
/// needed. The repository and its namespace's own limit come in one
/// statement (on SQLite one round trip to the writer), so that without any
/// limit the quota check costs no statement of its own. With `unless_deleting`
/// the same statement also asks whether garbage collection is deleting that
/// blob, and the write is refused with [`MetaError::BlobBeingDeleted`]: a link
/// would point at bytes about to vanish, so the caller stores them again and
/// retries.
pub(crate) async fn destination(
    tx: &mut Tx,
    default_storage_limit: Option<u64>,
    repository: &RepoName,
    unless_deleting: Option<&Digest>,
) -> Result<Destination, MetaError> {
    const PLAIN: &str = concat!("SELECT ", destination_columns!());
    const UNLESS_DELETING: &str = concat!(
        "SELECT EXISTS (SELECT 1 FROM blob_deletions WHERE digest = $3) AS deleting, ",
        destination_columns!()
    );
    let statement = query(match unless_deleting {
        Some(_) => UNLESS_DELETING,
        None => PLAIN,
    })
    .bind(repository.as_str())
    .bind(repository.namespace());
    let row = match unless_deleting {
        Some(digest) => statement.bind(digest.as_str()),
        None => statement,
    }
    .fetch_one(&mut *tx)
    .await
    .map_err(database("looking up a repository"))?;
    if unless_deleting.is_some() && row.get::<bool>("deleting")? {
        return Err(MetaError::BlobBeingDeleted);
    }
    let repository_id = match row.get::<Option<i64>>("repository_id")? {
        Some(id) => id,
        None => ensure_repository(tx, repository).await?,
    };
    let limited =
        default_storage_limit.is_some() || row.get::<Option<i64>>("storage_limit")?.is_some();
    Ok(Destination {
        repository_id,
        limited,
    })
}

/// Returns the repository's id, creating the repository (and its namespace,
/// private and without members) if needed.
///
/// The common case, an existing repository, costs one statement (on SQLite
/// one round trip to the writer). A new one is inserted with `ON CONFLICT
/// DO NOTHING`: on PostgreSQL a concurrent transaction may be creating the
/// same repository or namespace, in which case the insert waits for it and,
/// once it committed, inserts nothing; the second lookup, a new statement,
/// then sees its row. On SQLite the caller's write transaction excludes that
/// race.
pub(crate) async fn ensure_repository(
    tx: &mut Tx,
    repository: &RepoName,
) -> Result<i64, MetaError> {
    if let Some(id) = repository_id(tx, repository).await? {
        return Ok(id);
    }
    let now = tx.at()?;
    let namespace = repository.namespace();
    let created = query(
        "INSERT INTO namespaces (name, visibility, created_at) VALUES ($1, 'private', $2) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(namespace)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(database("creating a namespace"))?;
    if created > 0 {
        tx.record(NewEvent::namespace(
            EventKind::NamespaceCreated,
            namespace,
            serde_json::json!({"visibility": "private", "implicit": true}),
        ))?;
    }
    let created = query(
        "INSERT INTO repositories (name, namespace, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(repository.as_str())
    .bind(namespace)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(database("creating a repository"))?;
    if let Some(row) = created {
        tx.record(NewEvent::repository(
            EventKind::RepositoryCreated,
            repository,
        ))?;
        return row.first();
    }
    repository_id(tx, repository)
        .await?
        .ok_or_else(|| MetaError::Corrupt(format!("repository {repository} vanished")))
}

/// Takes this transaction's lock on each digest (held until it ends), in one
/// global order so that two transactions never wait on each other in a
/// cycle: on PostgreSQL, transaction-scoped advisory locks; on SQLite
/// nothing, since its write transactions run one at a time anyway.
///
/// Every transaction that adds or removes a reference to a blob (a link, a
/// manifest's reference, a blob row or a deletion marker) takes it before
/// reading the references it decides on, so on PostgreSQL, as under
/// SQLite's single writer, such decisions about one digest run one at a
/// time and each sees the others' committed results (a new statement in
/// `READ COMMITTED` takes a new snapshot). Manifest row locks, when a
/// transaction needs them, are taken before these, and link row locks after.
pub(crate) async fn lock_digests(tx: &mut Tx, digests: Vec<&str>) -> Result<(), MetaError> {
    if digests.is_empty() || tx.dialect() == Dialect::Sqlite {
        return Ok(());
    }
    query(
        "SELECT pg_advisory_xact_lock(k) FROM ( \
             SELECT DISTINCT hashtextextended(d, 0) AS k FROM UNNEST($1::TEXT[]) AS d \
             ORDER BY k) AS keys",
    )
    .bind(digests)
    .execute(tx)
    .await
    .map_err(database("locking digests"))?;
    Ok(())
}

/// Makes the link a garbage candidate as of `now` if no manifest of its
/// repository references the blob any more (keeping an earlier time).
pub(crate) async fn mark_link_if_unreferenced(
    tx: &mut Tx,
    repository_id: i64,
    digest: &str,
    now: Timestamp,
) -> Result<(), MetaError> {
    query(
        "UPDATE repository_blobs SET unreferenced_since = COALESCE(unreferenced_since, $1) \
         WHERE repository_id = $2 AND digest = $3 AND NOT EXISTS ( \
             SELECT 1 FROM manifest_blobs mb \
             WHERE mb.repository_id = $2 AND mb.blob_digest = $3)",
    )
    .bind(now)
    .bind(repository_id)
    .bind(digest)
    .execute(tx)
    .await
    .map_err(database("marking a link unreferenced"))?;
    Ok(())
}

/// Makes the blob a garbage candidate as of `now` if no repository links it
/// and no manifest references it (keeping an earlier time).
pub(crate) async fn mark_blob_if_orphaned(
    tx: &mut Tx,
    digest: &str,
    now: Timestamp,
) -> Result<(), MetaError> {
    query(
        "UPDATE blobs SET orphaned_at = COALESCE(orphaned_at, $1) \
         WHERE digest = $2 \
         AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = $2) \
         AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = $2)",
    )
    .bind(now)
    .bind(digest)
    .execute(tx)
    .await
    .map_err(database("marking a blob orphaned"))?;
    Ok(())
}
