//! The PostgreSQL backend, for several registry nodes sharing one database.
//!
//! The schema is SQLite's, table for table (`migrations/postgres/`), and every
//! method behaves exactly as [`SqliteMetaStore`](crate::sqlite::SqliteMetaStore)'s
//! does; the shared suite checks both.
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
//!   against a concurrent `unlink_blob` or `delete_manifest`: the check reads
//!   those rows `FOR SHARE`, so the deletion waits for the push to commit (and
//!   then deletes the link, which the manifest no longer needs), or the push
//!   waits for the deletion and finds the row gone.
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
//! - Upload and job leases: one conditional `UPDATE`/upsert whose `WHERE`
//!   states who may take the lease; PostgreSQL re-evaluates it against the
//!   newest row version when writers collide, so exactly one wins.
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

use berth_oci::{Digest, RepoName, Tag};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Postgres, Row, Transaction};

use crate::common::{
    database, limit_to_i64, parse_digest, parse_repository, parse_size, parse_tag, size_mismatches,
    to_i64, EmbeddedMigrations,
};
use crate::{
    BlobCandidate, DeletedManifest, GcCutoffs, LinkCandidate, LiveUploads, ManifestCandidate,
    ManifestRecord, MetaError, MetaStore, NewManifest, Referrer, Timestamp, UploadRecord,
};

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
];

/// The metadata store on PostgreSQL.
#[derive(Clone, Debug)]
pub struct PostgresMetaStore {
    /// Every query and transaction borrows a connection from here; there is
    /// no separate writer, because PostgreSQL handles concurrent writers.
    pub(crate) pool: PgPool,
}

impl PostgresMetaStore {
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
        Ok(PostgresMetaStore { pool })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a transaction at PostgreSQL's default isolation, `READ
    /// COMMITTED`; the module documentation explains why that and row locks
    /// rather than `SERIALIZABLE`.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Postgres>, MetaError> {
        self.pool
            .begin()
            .await
            .map_err(database("starting a transaction"))
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

/// Reads a column, reporting a missing or mistyped column as corruption.
fn column<'r, T>(row: &'r PgRow, name: &str) -> Result<T, MetaError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name)
        .map_err(|error| MetaError::Corrupt(format!("column {name}: {error}")))
}

/// The manifest columns [`manifest_from_row`] reads, prefixed by table alias `m`.
const MANIFEST_COLUMNS: &str =
    "m.digest, m.media_type, m.artifact_type, m.subject, m.annotations, m.payload";

fn manifest_from_row(row: &PgRow) -> Result<ManifestRecord, MetaError> {
    let subject: Option<String> = column(row, "subject")?;
    Ok(ManifestRecord {
        digest: parse_digest(&column::<String>(row, "digest")?)?,
        media_type: column(row, "media_type")?,
        artifact_type: column(row, "artifact_type")?,
        subject: subject.as_deref().map(parse_digest).transpose()?,
        annotations: column(row, "annotations")?,
        payload: column(row, "payload")?,
    })
}

/// The upload columns [`upload_from_row`] reads, with table aliases `u` and `r`.
const UPLOAD_COLUMNS: &str = "u.id, r.name, u.created_at, u.updated_at, u.progress, u.principal";

fn upload_from_row(row: &PgRow) -> Result<UploadRecord, MetaError> {
    Ok(UploadRecord {
        id: column(row, "id")?,
        repository: parse_repository(&column::<String>(row, "name")?)?,
        created_at: column(row, "created_at")?,
        updated_at: column(row, "updated_at")?,
        progress: column(row, "progress")?,
        principal: column(row, "principal")?,
    })
}

/// Returns the digests' text, each once, in their first order.
fn distinct(digests: &[Digest]) -> Vec<&str> {
    let mut texts: Vec<&str> = Vec::with_capacity(digests.len());
    for digest in digests {
        if !texts.contains(&digest.as_str()) {
            texts.push(digest.as_str());
        }
    }
    texts
}

/// Returns the repository's id, creating the repository if needed.
async fn ensure_repository(
    tx: &mut Transaction<'static, Postgres>,
    repository: &RepoName,
    now: Timestamp,
) -> Result<i64, MetaError> {
    // If another transaction is creating the same repository, the insert
    // waits for it; once it commits, the insert does nothing and the lookup,
    // a new statement, sees its row.
    let created: Option<i64> = sqlx::query_scalar(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) \
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(repository.as_str())
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .map_err(database("creating a repository"))?;
    if let Some(id) = created {
        return Ok(id);
    }
    repository_id(tx, repository)
        .await?
        .ok_or_else(|| MetaError::Corrupt(format!("repository {repository} vanished")))
}

/// Returns the repository's id, or `None` if it does not exist.
async fn repository_id(
    tx: &mut Transaction<'static, Postgres>,
    repository: &RepoName,
) -> Result<Option<i64>, MetaError> {
    sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
        .bind(repository.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(database("looking up a repository"))
}

/// Returns the items of `wanted` (each once, in their first order) for which
/// `sql` finds no row, locking the rows it does find until the transaction
/// ends. `sql` takes the repository id and an array of digests, and returns
/// the digests it found.
async fn missing(
    tx: &mut Transaction<'static, Postgres>,
    sql: &'static str,
    repository_id: i64,
    wanted: &[Digest],
    context: &'static str,
) -> Result<Vec<Digest>, MetaError> {
    let wanted_texts = distinct(wanted);
    if wanted_texts.is_empty() {
        return Ok(Vec::new());
    }
    let found: Vec<String> = sqlx::query_scalar(sql)
        .bind(repository_id)
        .bind(&wanted_texts)
        .fetch_all(&mut **tx)
        .await
        .map_err(database(context))?;
    wanted_texts
        .into_iter()
        .filter(|digest| !found.iter().any(|present| present == digest))
        .map(parse_digest)
        .collect()
}

/// Locks the manifest row against deletion until the transaction ends and
/// returns whether it exists.
async fn lock_manifest_for_share(
    tx: &mut Transaction<'static, Postgres>,
    repository_id: i64,
    digest: &Digest,
) -> Result<bool, MetaError> {
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2 FOR SHARE",
    )
    .bind(repository_id)
    .bind(digest.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(database("looking up a manifest"))?;
    Ok(found.is_some())
}

/// Takes this transaction's lock on each digest (held until it ends), in one
/// global order so that two transactions never wait on each other in a
/// cycle. Every transaction that adds or removes a reference to a blob (a
/// link, a manifest's reference, a blob row or a deletion marker) takes it
/// before reading the references it decides on, so on PostgreSQL, as under
/// SQLite's single writer, such decisions about one digest run one at a
/// time and each sees the others' committed results (a new statement in
/// `READ COMMITTED` takes a new snapshot). Manifest row locks, when a
/// transaction needs them, are taken before these, and link row locks after.
async fn lock_digests(
    tx: &mut Transaction<'static, Postgres>,
    digests: &[&str],
) -> Result<(), MetaError> {
    if digests.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM ( \
             SELECT DISTINCT hashtextextended(d, 0) AS k FROM UNNEST($1::TEXT[]) AS d \
             ORDER BY k) AS keys",
    )
    .bind(digests)
    .execute(&mut **tx)
    .await
    .map_err(database("locking digests"))?;
    Ok(())
}

/// Makes the link a garbage candidate as of `now` if no manifest of its
/// repository references the blob any more (keeping an earlier time).
async fn mark_link_if_unreferenced(
    tx: &mut Transaction<'static, Postgres>,
    repository_id: i64,
    digest: &str,
    now: Timestamp,
) -> Result<(), MetaError> {
    sqlx::query(
        "UPDATE repository_blobs SET unreferenced_since = COALESCE(unreferenced_since, $1) \
         WHERE repository_id = $2 AND digest = $3 AND NOT EXISTS ( \
             SELECT 1 FROM manifest_blobs mb \
             WHERE mb.repository_id = $2 AND mb.blob_digest = $3)",
    )
    .bind(now)
    .bind(repository_id)
    .bind(digest)
    .execute(&mut **tx)
    .await
    .map_err(database("marking a link unreferenced"))?;
    Ok(())
}

/// Makes the blob a garbage candidate as of `now` if nothing links or
/// references it (keeping an earlier time).
async fn mark_blob_if_orphaned(
    tx: &mut Transaction<'static, Postgres>,
    digest: &str,
    now: Timestamp,
) -> Result<(), MetaError> {
    sqlx::query(
        "UPDATE blobs SET orphaned_at = COALESCE(orphaned_at, $1) \
         WHERE digest = $2 \
         AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = $2) \
         AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = $2)",
    )
    .bind(now)
    .bind(digest)
    .execute(&mut **tx)
    .await
    .map_err(database("marking a blob orphaned"))?;
    Ok(())
}

/// As in the SQLite backend: the manifest and, with `with_referrers`, its
/// referrers recursively; refused if an index outside the set lists one.
/// Every member's row is locked `FOR UPDATE` first (see the module docs).
async fn deletion_set(
    tx: &mut Transaction<'static, Postgres>,
    repository_id: i64,
    digest: &Digest,
    with_referrers: bool,
) -> Result<Vec<String>, MetaError> {
    let mut doomed = vec![digest.as_str().to_string()];
    let mut next = 0;
    while with_referrers && next < doomed.len() {
        let referrers: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM manifests WHERE repository_id = $1 AND subject = $2 \
             ORDER BY digest FOR UPDATE",
        )
        .bind(repository_id)
        .bind(&doomed[next])
        .fetch_all(&mut **tx)
        .await
        .map_err(database("listing a manifest's referrers"))?;
        for referrer in referrers {
            if !doomed.contains(&referrer) {
                doomed.push(referrer);
            }
        }
        next += 1;
    }
    for member in &doomed {
        let parents: Vec<String> = sqlx::query_scalar(
            "SELECT parent_digest FROM manifest_children \
             WHERE repository_id = $1 AND child_digest = $2 ORDER BY parent_digest",
        )
        .bind(repository_id)
        .bind(member)
        .fetch_all(&mut **tx)
        .await
        .map_err(database("looking for indexes listing a manifest"))?;
        if let Some(parent) = parents.iter().find(|parent| !doomed.contains(parent)) {
            return Err(MetaError::ManifestReferenced(parse_digest(parent)?));
        }
    }
    Ok(doomed)
}

/// Deletes the manifests of `doomed` with their tags and references, and
/// turns what lost its last reference into candidates.
async fn delete_manifests(
    tx: &mut Transaction<'static, Postgres>,
    repository_id: i64,
    root: &Digest,
    doomed: &[String],
    now: Timestamp,
) -> Result<DeletedManifest, MetaError> {
    let mut tags: Vec<Tag> = Vec::new();
    let mut blobs: Vec<String> = Vec::new();
    for member in doomed {
        let referenced: Vec<String> = sqlx::query_scalar(
            "SELECT blob_digest FROM manifest_blobs \
             WHERE repository_id = $1 AND manifest_digest = $2",
        )
        .bind(repository_id)
        .bind(member)
        .fetch_all(&mut **tx)
        .await
        .map_err(database("listing a manifest's blobs"))?;
        blobs.extend(referenced);
    }
    blobs.sort();
    blobs.dedup();
    let blob_refs: Vec<&str> = blobs.iter().map(String::as_str).collect();
    lock_digests(tx, &blob_refs).await?;
    for member in doomed {
        let names: Vec<String> = sqlx::query_scalar(
            "DELETE FROM tags WHERE repository_id = $1 AND manifest_digest = $2 RETURNING name",
        )
        .bind(repository_id)
        .bind(member)
        .fetch_all(&mut **tx)
        .await
        .map_err(database("deleting a manifest's tags"))?;
        if member == root.as_str() {
            tags = names
                .iter()
                .map(|name| parse_tag(name))
                .collect::<Result<Vec<_>, _>>()?;
        }
    }
    for (sql, context) in [
        (
            "DELETE FROM manifest_blobs WHERE repository_id = $1 AND manifest_digest = $2",
            "deleting a manifest's blob references",
        ),
        (
            "DELETE FROM manifest_children WHERE repository_id = $1 AND parent_digest = $2",
            "deleting an index's manifest references",
        ),
        (
            "DELETE FROM manifests WHERE repository_id = $1 AND digest = $2",
            "deleting a manifest",
        ),
    ] {
        for member in doomed {
            sqlx::query(sql)
                .bind(repository_id)
                .bind(member)
                .execute(&mut **tx)
                .await
                .map_err(database(context))?;
        }
    }
    for blob in &blobs {
        mark_link_if_unreferenced(tx, repository_id, blob, now).await?;
        mark_blob_if_orphaned(tx, blob, now).await?;
    }
    // `RETURNING` has no order, so the names are sorted here, by bytes.
    tags.sort_by(|a, b| a.as_str().as_bytes().cmp(b.as_str().as_bytes()));
    let mut referrers = doomed[1..]
        .iter()
        .map(|digest| parse_digest(digest))
        .collect::<Result<Vec<_>, _>>()?;
    referrers.sort();
    Ok(DeletedManifest { tags, referrers })
}

/// The condition under which a manifest `m` is untagged garbage, with the
/// cut-off as `$1`.
const UNTAGGED_CONDITION: &str = "m.created_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM tags t \
         WHERE t.repository_id = m.repository_id AND t.manifest_digest = m.digest) \
     AND NOT EXISTS (SELECT 1 FROM manifest_children c \
         WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest) \
     AND (m.subject IS NULL OR NOT EXISTS (SELECT 1 FROM manifests s \
         WHERE s.repository_id = m.repository_id AND s.digest = m.subject))";

#[async_trait::async_trait]
impl MetaStore for PostgresMetaStore {
    async fn list_repositories(
        &self,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, MetaError> {
        // `name` is COLLATE "C", so comparison and order are byte order.
        // Every name is longer than "", so the first page starts after "";
        // a plain `name > $1` (no `IS NULL OR`) lets each page start with an
        // index seek instead of a scan from the first name.
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM repositories \
             WHERE name > $1 \
             ORDER BY name LIMIT $2",
        )
        .bind(after.map_or("", RepoName::as_str))
        .bind(limit_to_i64(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(database("listing repositories"))?;
        names.iter().map(|name| parse_repository(name)).collect()
    }

    async fn link_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        size: u64,
        now: Timestamp,
    ) -> Result<(), MetaError> {
        let size = to_i64(size, "blob size")?;
        let mut tx = self.begin().await?;
        lock_digests(&mut tx, &[digest.as_str()]).await?;
        let deleting: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM blob_deletions WHERE digest = $1")
                .bind(digest.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(database("looking for a blob deletion"))?;
        if deleting.is_some() {
            return Err(MetaError::BlobBeingDeleted);
        }
        let repository_id = ensure_repository(&mut tx, repository, now).await?;
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (digest) DO UPDATE SET orphaned_at = NULL",
        )
        .bind(digest.as_str())
        .bind(size)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(database("recording a blob"))?;
        let referenced: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM manifest_blobs WHERE repository_id = $1 AND blob_digest = $2 LIMIT 1",
        )
        .bind(repository_id)
        .bind(digest.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(database("looking for a manifest referencing a blob"))?;
        // As on SQLite: an unreferenced link is a candidate from now, and a
        // re-push restarts its clock; a referenced link stays as it is.
        sqlx::query(
            "INSERT INTO repository_blobs \
             (repository_id, digest, created_at, unreferenced_since, was_referenced) \
             VALUES ($1, $2, $3, CASE WHEN $4 THEN NULL ELSE $3 END, $5) \
             ON CONFLICT (repository_id, digest) DO UPDATE SET \
             was_referenced = CASE WHEN repository_blobs.unreferenced_since IS NULL \
                 THEN repository_blobs.was_referenced ELSE 0 END, \
             unreferenced_since = CASE WHEN repository_blobs.unreferenced_since IS NULL \
                 THEN NULL ELSE excluded.unreferenced_since END",
        )
        .bind(repository_id)
        .bind(digest.as_str())
        .bind(now)
        .bind(referenced.is_some())
        .bind(i32::from(referenced.is_some()))
        .execute(&mut *tx)
        .await
        .map_err(database("linking a blob"))?;
        tx.commit()
            .await
            .map_err(database("committing a blob link"))
    }

    async fn linked_blob_size(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM blobs b \
             JOIN repository_blobs rb ON rb.digest = b.digest \
             JOIN repositories r ON r.id = rb.repository_id \
             WHERE r.name = $1 AND b.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(database("looking up a linked blob"))?;
        size.map(parse_size).transpose()
    }

    async fn repositories_with_blob(
        &self,
        digest: &Digest,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, MetaError> {
        // `name` is COLLATE "C": byte order, as on SQLite.
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT r.name FROM repository_blobs rb \
             JOIN repositories r ON r.id = rb.repository_id \
             WHERE rb.digest = $1 AND r.name > $2 \
             ORDER BY r.name LIMIT $3",
        )
        .bind(digest.as_str())
        .bind(after.map_or("", RepoName::as_str))
        .bind(limit_to_i64(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(database("listing repositories holding a blob"))?;
        names.iter().map(|name| parse_repository(name)).collect()
    }

    async fn unlink_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        now: Timestamp,
    ) -> Result<bool, MetaError> {
        let mut tx = self.begin().await?;
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(false);
        };
        lock_digests(&mut tx, &[digest.as_str()]).await?;
        // A push checking this link holds it `FOR SHARE`; the delete waits
        // for that push to commit.
        let removed =
            sqlx::query("DELETE FROM repository_blobs WHERE repository_id = $1 AND digest = $2")
                .bind(repository_id)
                .bind(digest.as_str())
                .execute(&mut *tx)
                .await
                .map_err(database("unlinking a blob"))?
                .rows_affected()
                > 0;
        if removed {
            mark_blob_if_orphaned(&mut tx, digest.as_str(), now).await?;
        }
        tx.commit()
            .await
            .map_err(database("committing a blob unlink"))?;
        Ok(removed)
    }

    async fn put_manifest(
        &self,
        repository: &RepoName,
        manifest: &NewManifest,
        tag: Option<&Tag>,
        now: Timestamp,
    ) -> Result<(), MetaError> {
        let record = &manifest.record;
        let size = to_i64(record.payload.len() as u64, "manifest size")?;
        let mut tx = self.begin().await?;
        let repository_id = ensure_repository(&mut tx, repository, now).await?;
        // Locked so that a concurrent deletion cannot remove the manifest
        // between this check and the tag that will point at it.
        let mut exists = lock_manifest_for_share(&mut tx, repository_id, &record.digest).await?;
        if !exists {
            // Reference decisions about these blobs (garbage collection's
            // among them) wait for this push, and it for them.
            lock_digests(&mut tx, &distinct(&manifest.blobs)).await?;
            // Returning early drops the transaction, which rolls back the
            // repository it may have created: a refused push leaves no trace.
            // The rows found are locked `FOR SHARE` until commit, so an unlink
            // or deletion of them waits for this push (see the module docs).
            let missing_blobs = missing(
                &mut tx,
                "SELECT digest FROM repository_blobs \
                 WHERE repository_id = $1 AND digest = ANY($2) FOR SHARE",
                repository_id,
                &manifest.blobs,
                "checking a manifest's blobs",
            )
            .await?;
            if !missing_blobs.is_empty() {
                return Err(MetaError::MissingBlobs(missing_blobs));
            }
            if !manifest.blob_sizes.is_empty() {
                let digests: Vec<Digest> = manifest
                    .blob_sizes
                    .iter()
                    .map(|(digest, _)| digest.clone())
                    .collect();
                let stored: Vec<(String, i64)> =
                    sqlx::query_as("SELECT digest, size FROM blobs WHERE digest = ANY($1)")
                        .bind(distinct(&digests))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(database("checking a manifest's blob sizes"))?;
                let mismatches = size_mismatches(&manifest.blob_sizes, &stored)?;
                if !mismatches.is_empty() {
                    return Err(MetaError::BlobSizeMismatch(mismatches));
                }
            }
            let missing_children = missing(
                &mut tx,
                "SELECT digest FROM manifests \
                 WHERE repository_id = $1 AND digest = ANY($2) FOR SHARE",
                repository_id,
                &manifest.children,
                "checking an index's manifests",
            )
            .await?;
            if !missing_children.is_empty() {
                return Err(MetaError::MissingManifests(missing_children));
            }
            let inserted = sqlx::query(
                "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, \
                 subject, annotations, payload, size, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (repository_id, digest) DO NOTHING",
            )
            .bind(repository_id)
            .bind(record.digest.as_str())
            .bind(&record.media_type)
            .bind(record.artifact_type.as_deref())
            .bind(record.subject.as_ref().map(Digest::as_str))
            .bind(record.annotations.as_deref())
            .bind(&record.payload)
            .bind(size)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(database("storing a manifest"))?
            .rows_affected();
            if inserted == 0 {
                // A concurrent push of the same manifest committed first. As
                // on SQLite, where it would simply have run first, this push
                // only moves the tag; the lock keeps the row until then.
                exists = lock_manifest_for_share(&mut tx, repository_id, &record.digest).await?;
                if !exists {
                    return Err(MetaError::Corrupt(format!(
                        "manifest {} vanished while being stored",
                        record.digest
                    )));
                }
            }
        }
        if !exists {
            // One statement per kind of reference, however many there are; a
            // manifest may list the same blob or child twice, and one row per
            // pair is enough.
            sqlx::query(
                "INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest) \
                 SELECT $1, $2, blob FROM UNNEST($3::TEXT[]) AS blob ON CONFLICT DO NOTHING",
            )
            .bind(repository_id)
            .bind(record.digest.as_str())
            .bind(distinct(&manifest.blobs))
            .execute(&mut *tx)
            .await
            .map_err(database("recording a manifest's blobs"))?;
            // The links are referenced now, so they are no garbage candidates.
            sqlx::query(
                "UPDATE repository_blobs SET unreferenced_since = NULL, was_referenced = 1 \
                 WHERE repository_id = $1 AND digest = ANY($2)",
            )
            .bind(repository_id)
            .bind(distinct(&manifest.blobs))
            .execute(&mut *tx)
            .await
            .map_err(database("marking links referenced"))?;
            sqlx::query(
                "INSERT INTO manifest_children (repository_id, parent_digest, child_digest) \
                 SELECT $1, $2, child FROM UNNEST($3::TEXT[]) AS child ON CONFLICT DO NOTHING",
            )
            .bind(repository_id)
            .bind(record.digest.as_str())
            .bind(distinct(&manifest.children))
            .execute(&mut *tx)
            .await
            .map_err(database("recording an index's manifests"))?;
        }
        if let Some(tag) = tag {
            sqlx::query(
                "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (repository_id, name) DO UPDATE \
                 SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
            )
            .bind(repository_id)
            .bind(tag.as_str())
            .bind(record.digest.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(database("pointing a tag"))?;
        }
        tx.commit().await.map_err(database("committing a manifest"))
    }

    async fn manifest_by_digest(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let sql = format!(
            "SELECT {MANIFEST_COLUMNS} FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.digest = $2"
        );
        let row = sqlx::query(&sql)
            .bind(repository.as_str())
            .bind(digest.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(database("fetching a manifest by digest"))?;
        row.as_ref().map(manifest_from_row).transpose()
    }

    async fn manifest_by_tag(
        &self,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let sql = format!(
            "SELECT {MANIFEST_COLUMNS} FROM tags t \
             JOIN repositories r ON r.id = t.repository_id \
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest \
             WHERE r.name = $1 AND t.name = $2"
        );
        let row = sqlx::query(&sql)
            .bind(repository.as_str())
            .bind(tag.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(database("fetching a manifest by tag"))?;
        row.as_ref().map(manifest_from_row).transpose()
    }

    async fn delete_manifest(
        &self,
        repository: &RepoName,
        digest: &Digest,
        with_referrers: bool,
        now: Timestamp,
    ) -> Result<Option<DeletedManifest>, MetaError> {
        let mut tx = self.begin().await?;
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(None);
        };
        // Locked before anything is checked: a push that lists this manifest
        // as a child, or moves a tag onto it, holds it `FOR SHARE`, so this
        // waits for that push and the checks below then see its rows; a push
        // arriving later waits for this deletion and finds the manifest gone.
        let exists: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2 FOR UPDATE",
        )
        .bind(repository_id)
        .bind(digest.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(database("looking up a manifest"))?;
        if exists.is_none() {
            return Ok(None);
        }
        let doomed = deletion_set(&mut tx, repository_id, digest, with_referrers).await?;
        let deleted = delete_manifests(&mut tx, repository_id, digest, &doomed, now).await?;
        tx.commit()
            .await
            .map_err(database("committing a manifest deletion"))?;
        Ok(Some(deleted))
    }

    async fn delete_tag(&self, repository: &RepoName, tag: &Tag) -> Result<bool, MetaError> {
        let result = sqlx::query(
            "DELETE FROM tags \
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND name = $2",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .execute(&self.pool)
        .await
        .map_err(database("deleting a tag"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn list_tags(
        &self,
        repository: &RepoName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<Tag>>, MetaError> {
        // One statement, so existence and the list come from one snapshot:
        // the left join yields one row with a NULL tag for a repository
        // without tags, and no row at all for an absent repository.
        let rows: Vec<(Option<String>,)> = sqlx::query_as(
            "SELECT t.name FROM repositories r \
             LEFT JOIN LATERAL ( \
                 SELECT name FROM tags \
                 WHERE repository_id = r.id AND name > $2 \
                 ORDER BY name LIMIT $3 \
             ) t ON TRUE \
             WHERE r.name = $1 \
             ORDER BY t.name",
        )
        .bind(repository.as_str())
        // Tags are never empty, so "" stands for "from the first tag" and
        // every page is an index range seek (see `list_repositories`).
        .bind(after.unwrap_or(""))
        .bind(limit_to_i64(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(database("listing tags"))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let tags = rows
            .iter()
            .filter_map(|(name,)| name.as_deref())
            .map(parse_tag)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(tags))
    }

    async fn referrers(
        &self,
        repository: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        limit: usize,
        max_annotation_bytes: usize,
    ) -> Result<Vec<Referrer>, MetaError> {
        // `digest` is COLLATE "C": byte order, as on SQLite. Every digest
        // sorts after "", so the first page needs no special case.
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, \
             CASE WHEN octet_length(m.annotations) <= $5 THEN m.annotations END \
             AS annotations \
             FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.subject = $2 \
             AND ($3::TEXT IS NULL OR m.artifact_type = $3) \
             AND m.digest > $4 \
             ORDER BY m.digest LIMIT $6",
        )
        .bind(repository.as_str())
        .bind(subject.as_str())
        .bind(artifact_type)
        .bind(after.map_or("", Digest::as_str))
        .bind(limit_to_i64(max_annotation_bytes))
        .bind(limit_to_i64(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(database("listing referrers"))?;
        rows.iter()
            .map(|row| {
                Ok(Referrer {
                    digest: parse_digest(&column::<String>(row, "digest")?)?,
                    media_type: column(row, "media_type")?,
                    size: parse_size(column(row, "size")?)?,
                    artifact_type: column(row, "artifact_type")?,
                    annotations: column(row, "annotations")?,
                })
            })
            .collect()
    }

    async fn create_upload(&self, upload: &UploadRecord) -> Result<(), MetaError> {
        let mut tx = self.begin().await?;
        let repository_id =
            ensure_repository(&mut tx, &upload.repository, upload.created_at).await?;
        sqlx::query(
            "INSERT INTO uploads (id, repository_id, created_at, updated_at, progress, principal) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&upload.id)
        .bind(repository_id)
        .bind(upload.created_at)
        .bind(upload.updated_at)
        .bind(&upload.progress)
        .bind(upload.principal.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(database("creating an upload"))?;
        tx.commit().await.map_err(database("committing an upload"))
    }

    async fn count_live_uploads(
        &self,
        repository: &RepoName,
        principal: Option<&str>,
        since: Timestamp,
    ) -> Result<LiveUploads, MetaError> {
        let (in_repository, of_principal): (i64, i64) = sqlx::query_as(
            "SELECT \
             (SELECT count(*) FROM uploads u JOIN repositories r ON r.id = u.repository_id \
              WHERE r.name = $1 AND u.updated_at >= $3), \
             (SELECT count(*) FROM uploads \
              WHERE $2::TEXT IS NOT NULL AND principal = $2 AND updated_at >= $3)",
        )
        .bind(repository.as_str())
        .bind(principal)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(database("counting open uploads"))?;
        Ok(LiveUploads {
            in_repository: parse_size(in_repository)?,
            of_principal: parse_size(of_principal)?,
        })
    }

    async fn get_upload(
        &self,
        repository: &RepoName,
        id: &str,
    ) -> Result<Option<UploadRecord>, MetaError> {
        let sql = format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads u JOIN repositories r ON r.id = u.repository_id \
             WHERE r.name = $1 AND u.id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(repository.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(database("fetching an upload"))?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn lock_upload(
        &self,
        repository: &RepoName,
        id: &str,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<UploadRecord, MetaError> {
        // The lease is taken by one conditional update: free, expired (a
        // lease runs until, not including, its expiry second) or our own. When
        // two holders collide, PostgreSQL re-checks the condition against the
        // winner's row, so the loser updates nothing.
        let sql = format!(
            "UPDATE uploads u SET lease_holder = $3, lease_expires = $4 \
             FROM repositories r \
             WHERE r.id = u.repository_id AND r.name = $1 AND u.id = $2 \
             AND (u.lease_holder IS NULL OR u.lease_holder = $3 OR u.lease_expires <= $5) \
             RETURNING {UPLOAD_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(repository.as_str())
            .bind(id)
            .bind(holder)
            .bind(now.saturating_add(lease_secs))
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(database("taking an upload's lease"))?;
        if let Some(row) = row {
            return upload_from_row(&row);
        }
        // Nothing was updated: tell a busy upload from an absent one.
        let exists: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM uploads u JOIN repositories r ON r.id = u.repository_id \
             WHERE r.name = $1 AND u.id = $2",
        )
        .bind(repository.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(database("looking up an upload"))?;
        Err(match exists {
            Some(_) => MetaError::UploadBusy,
            None => MetaError::UploadNotFound,
        })
    }

    async fn update_upload(
        &self,
        id: &str,
        holder: &str,
        progress: &str,
        now: Timestamp,
    ) -> Result<(), MetaError> {
        // A holder whose lease expired but was not taken still holds it: no
        // one else wrote in between, so its progress is still right.
        let updated = sqlx::query(
            "UPDATE uploads SET progress = $1, updated_at = $2, lease_holder = NULL, \
             lease_expires = NULL WHERE id = $3 AND lease_holder = $4",
        )
        .bind(progress)
        .bind(now)
        .bind(id)
        .bind(holder)
        .execute(&self.pool)
        .await
        .map_err(database("updating an upload"))?
        .rows_affected();
        if updated > 0 {
            return Ok(());
        }
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(database("looking up an upload"))?;
        Err(match exists {
            Some(_) => MetaError::UploadBusy,
            None => MetaError::UploadNotFound,
        })
    }

    async fn unlock_upload(&self, id: &str, holder: &str) -> Result<(), MetaError> {
        // Only the holder's own lease is released; if it was lost to another
        // holder (or the upload is gone) there is nothing of ours to release,
        // and the caller, already handling a failed write, needs no new error.
        sqlx::query(
            "UPDATE uploads SET lease_holder = NULL, lease_expires = NULL \
             WHERE id = $1 AND lease_holder = $2",
        )
        .bind(id)
        .bind(holder)
        .execute(&self.pool)
        .await
        .map_err(database("releasing an upload's lease"))?;
        Ok(())
    }

    async fn release_upload_leases(&self, holder_prefix: &str) -> Result<u64, MetaError> {
        // `left` and `length` both count characters, so this compares the
        // holder's first characters with the whole prefix, with no pattern
        // syntax to escape (as `LIKE` would need for `_` and `%`).
        let released = sqlx::query(
            "UPDATE uploads SET lease_holder = NULL, lease_expires = NULL \
             WHERE lease_holder IS NOT NULL AND left(lease_holder, length($1)) = $1",
        )
        .bind(holder_prefix)
        .execute(&self.pool)
        .await
        .map_err(database("releasing a node's upload leases"))?;
        Ok(released.rows_affected())
    }

    async fn delete_upload(&self, id: &str) -> Result<bool, MetaError> {
        let result = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(database("deleting an upload"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn unknown_uploads(&self, ids: &[String]) -> Result<Vec<String>, MetaError> {
        let mut texts: Vec<&str> = Vec::with_capacity(ids.len());
        for id in ids {
            if !texts.contains(&id.as_str()) {
                texts.push(id);
            }
        }
        let known: Vec<String> = sqlx::query_scalar("SELECT id FROM uploads WHERE id = ANY($1)")
            .bind(&texts)
            .fetch_all(&self.pool)
            .await
            .map_err(database("looking up uploads"))?;
        Ok(texts
            .into_iter()
            .filter(|id| !known.iter().any(|k| k == id))
            .map(String::from)
            .collect())
    }

    async fn expired_uploads(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, MetaError> {
        let sql = format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads u JOIN repositories r ON r.id = u.repository_id \
             WHERE u.updated_at < $1 ORDER BY u.updated_at, u.id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(before)
            .bind(limit_to_i64(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(database("listing expired uploads"))?;
        rows.iter().map(upload_from_row).collect()
    }

    async fn acquire_job_lease(
        &self,
        job: &str,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<bool, MetaError> {
        // One statement decides and writes, as on SQLite. Racing inserts of a
        // new job wait on its primary key and then take the update path, whose
        // `WHERE` is re-checked against the winner's row; `RETURNING` yields a
        // row only when the lease was inserted or updated, i.e. taken.
        let taken: Option<String> = sqlx::query_scalar(
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
        .fetch_optional(&self.pool)
        .await
        .map_err(database("taking a job lease"))?;
        Ok(taken.is_some())
    }

    async fn release_job_lease(&self, job: &str, holder: &str) -> Result<(), MetaError> {
        sqlx::query("DELETE FROM job_leases WHERE job = $1 AND holder = $2")
            .bind(job)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(database("releasing a job lease"))?;
        Ok(())
    }

    async fn expired_links(
        &self,
        cutoffs: GcCutoffs,
        after: Option<&LinkCandidate>,
        limit: usize,
    ) -> Result<Vec<LinkCandidate>, MetaError> {
        let rows = sqlx::query(
            "SELECT r.name, rb.digest, rb.unreferenced_since FROM repository_blobs rb \
             JOIN repositories r ON r.id = rb.repository_id \
             WHERE rb.unreferenced_since IS NOT NULL \
             AND rb.unreferenced_since < GREATEST($1, $2) \
             AND rb.unreferenced_since < CASE WHEN rb.was_referenced = 1 THEN $1 ELSE $2 END \
             AND ($3::BIGINT IS NULL OR (rb.unreferenced_since, r.name, rb.digest) > ($3, $4, $5)) \
             ORDER BY rb.unreferenced_since, r.name, rb.digest LIMIT $6",
        )
        .bind(cutoffs.unreferenced_before)
        .bind(cutoffs.never_referenced_before)
        .bind(after.map(|a| a.since))
        .bind(after.map(|a| a.repository.as_str()))
        .bind(after.map(|a| a.digest.as_str()))
        .bind(limit_to_i64(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(database("listing expired links"))?;
        rows.iter()
            .map(|row| {
                Ok(LinkCandidate {
                    repository: parse_repository(&column::<String>(row, "name")?)?,
                    digest: parse_digest(&column::<String>(row, "digest")?)?,
                    since: column(row, "unreferenced_since")?,
                })
            })
            .collect()
    }

    async fn remove_links(
        &self,
        links: &[LinkCandidate],
        cutoffs: GcCutoffs,
        now: Timestamp,
    ) -> Result<Vec<LinkCandidate>, MetaError> {
        let mut tx = self.begin().await?;
        let digests: Vec<&str> = links.iter().map(|l| l.digest.as_str()).collect();
        lock_digests(&mut tx, &digests).await?;
        let mut removed = Vec::new();
        for link in links {
            let Some(repository_id) = repository_id(&mut tx, &link.repository).await? else {
                continue;
            };
            let since: Option<i64> = sqlx::query_scalar(
                "DELETE FROM repository_blobs WHERE repository_id = $1 AND digest = $2 \
                 AND unreferenced_since IS NOT NULL \
                 AND unreferenced_since < CASE WHEN was_referenced = 1 THEN $3 ELSE $4 END \
                 AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb \
                     WHERE mb.repository_id = $1 AND mb.blob_digest = $2) \
                 RETURNING unreferenced_since",
            )
            .bind(repository_id)
            .bind(link.digest.as_str())
            .bind(cutoffs.unreferenced_before)
            .bind(cutoffs.never_referenced_before)
            .fetch_optional(&mut *tx)
            .await
            .map_err(database("removing an expired link"))?;
            if let Some(since) = since {
                mark_blob_if_orphaned(&mut tx, link.digest.as_str(), since.min(now)).await?;
                removed.push(link.clone());
            }
        }
        tx.commit()
            .await
            .map_err(database("committing removed links"))?;
        Ok(removed)
    }

    async fn expired_blobs(
        &self,
        before: Timestamp,
        after: Option<&BlobCandidate>,
        limit: usize,
    ) -> Result<Vec<BlobCandidate>, MetaError> {
        let rows = sqlx::query(
            "SELECT digest, size, orphaned_at FROM blobs \
             WHERE orphaned_at IS NOT NULL AND orphaned_at < $1 \
             AND ($2::BIGINT IS NULL OR (orphaned_at, digest) > ($2, $3)) \
             ORDER BY orphaned_at, digest LIMIT $4",
        )
        .bind(before)
        .bind(after.map(|a| a.since))
        .bind(after.map(|a| a.digest.as_str()))
        .bind(limit_to_i64(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(database("listing expired blobs"))?;
        rows.iter()
            .map(|row| {
                Ok(BlobCandidate {
                    digest: parse_digest(&column::<String>(row, "digest")?)?,
                    size: parse_size(column(row, "size")?)?,
                    since: column(row, "orphaned_at")?,
                })
            })
            .collect()
    }

    async fn begin_blob_deletions(
        &self,
        blobs: &[BlobCandidate],
        before: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<BlobCandidate>, MetaError> {
        let mut tx = self.begin().await?;
        let digests: Vec<&str> = blobs.iter().map(|b| b.digest.as_str()).collect();
        lock_digests(&mut tx, &digests).await?;
        let mut begun = Vec::new();
        for blob in blobs {
            let size: Option<i64> = sqlx::query_scalar(
                "DELETE FROM blobs WHERE digest = $1 \
                 AND orphaned_at IS NOT NULL AND orphaned_at < $2 \
                 AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = $1) \
                 AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = $1) \
                 RETURNING size",
            )
            .bind(blob.digest.as_str())
            .bind(before)
            .fetch_optional(&mut *tx)
            .await
            .map_err(database("deleting a blob's row"))?;
            let Some(size) = size else {
                continue;
            };
            sqlx::query(
                "INSERT INTO blob_deletions (digest, size, started_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(blob.digest.as_str())
            .bind(size)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(database("recording a blob deletion"))?;
            begun.push(BlobCandidate {
                digest: blob.digest.clone(),
                size: parse_size(size)?,
                since: now,
            });
        }
        tx.commit()
            .await
            .map_err(database("committing blob deletions"))?;
        Ok(begun)
    }

    async fn begin_orphan_deletion(
        &self,
        digest: &Digest,
        size: u64,
        now: Timestamp,
    ) -> Result<bool, MetaError> {
        let size = to_i64(size, "blob size")?;
        let mut tx = self.begin().await?;
        lock_digests(&mut tx, &[digest.as_str()]).await?;
        let inserted = sqlx::query(
            "INSERT INTO blob_deletions (digest, size, started_at) \
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM blobs WHERE digest = $1) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.as_str())
        .bind(size)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(database("recording an orphan deletion"))?
        .rows_affected();
        tx.commit()
            .await
            .map_err(database("committing an orphan deletion"))?;
        Ok(inserted > 0)
    }

    async fn pending_blob_deletions(&self, limit: usize) -> Result<Vec<BlobCandidate>, MetaError> {
        let rows = sqlx::query(
            "SELECT digest, size, started_at FROM blob_deletions \
             ORDER BY started_at, digest LIMIT $1",
        )
        .bind(limit_to_i64(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(database("listing blob deletions"))?;
        rows.iter()
            .map(|row| {
                Ok(BlobCandidate {
                    digest: parse_digest(&column::<String>(row, "digest")?)?,
                    size: parse_size(column(row, "size")?)?,
                    since: column(row, "started_at")?,
                })
            })
            .collect()
    }

    async fn finish_blob_deletion(&self, digest: &Digest) -> Result<(), MetaError> {
        sqlx::query("DELETE FROM blob_deletions WHERE digest = $1")
            .bind(digest.as_str())
            .execute(&self.pool)
            .await
            .map_err(database("finishing a blob deletion"))?;
        Ok(())
    }

    async fn unknown_blobs(&self, digests: &[Digest]) -> Result<Vec<Digest>, MetaError> {
        let texts = distinct(digests);
        let known: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM blobs WHERE digest = ANY($1) \
             UNION SELECT digest FROM blob_deletions WHERE digest = ANY($1)",
        )
        .bind(&texts)
        .fetch_all(&self.pool)
        .await
        .map_err(database("looking up stored objects"))?;
        texts
            .into_iter()
            .filter(|digest| !known.iter().any(|k| k == digest))
            .map(parse_digest)
            .collect()
    }

    async fn expired_untagged_manifests(
        &self,
        before: Timestamp,
        after: Option<&ManifestCandidate>,
        limit: usize,
    ) -> Result<Vec<ManifestCandidate>, MetaError> {
        let sql = format!(
            "SELECT r.name, m.digest, m.created_at FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id \
             WHERE {UNTAGGED_CONDITION} \
             AND ($2::BIGINT IS NULL OR (m.created_at, r.name, m.digest) > ($2, $3, $4)) \
             ORDER BY m.created_at, r.name, m.digest LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(before)
            .bind(after.map(|a| a.created_at))
            .bind(after.map(|a| a.repository.as_str()))
            .bind(after.map(|a| a.digest.as_str()))
            .bind(limit_to_i64(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(database("listing untagged manifests"))?;
        rows.iter()
            .map(|row| {
                Ok(ManifestCandidate {
                    repository: parse_repository(&column::<String>(row, "name")?)?,
                    digest: parse_digest(&column::<String>(row, "digest")?)?,
                    created_at: column(row, "created_at")?,
                })
            })
            .collect()
    }

    async fn delete_untagged_manifest(
        &self,
        candidate: &ManifestCandidate,
        before: Timestamp,
        now: Timestamp,
    ) -> Result<Option<DeletedManifest>, MetaError> {
        let mut tx = self.begin().await?;
        let Some(repository_id) = repository_id(&mut tx, &candidate.repository).await? else {
            return Ok(None);
        };
        // Locked first, so a tag or index pushed meanwhile is either seen by
        // the check below or waits for this deletion (see the module docs).
        let sql = format!(
            "SELECT 1 FROM manifests m WHERE m.repository_id = $2 AND m.digest = $3 \
             AND {UNTAGGED_CONDITION} FOR UPDATE"
        );
        let qualifies: Option<i32> = sqlx::query_scalar(&sql)
            .bind(before)
            .bind(repository_id)
            .bind(candidate.digest.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(database("checking an untagged manifest"))?;
        if qualifies.is_none() {
            return Ok(None);
        }
        let doomed = match deletion_set(&mut tx, repository_id, &candidate.digest, true).await {
            Ok(doomed) => doomed,
            Err(MetaError::ManifestReferenced(_)) => return Ok(None),
            Err(error) => return Err(error),
        };
        let tagged: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM tags WHERE repository_id = $1 AND manifest_digest = ANY($2) LIMIT 1",
        )
        .bind(repository_id)
        .bind(&doomed)
        .fetch_optional(&mut *tx)
        .await
        .map_err(database("looking for tags of a referrer"))?;
        if tagged.is_some() {
            return Ok(None);
        }
        let deleted =
            delete_manifests(&mut tx, repository_id, &candidate.digest, &doomed, now).await?;
        tx.commit()
            .await
            .map_err(database("committing an untagged manifest deletion"))?;
        Ok(Some(deleted))
    }

    async fn check_ready(&self) -> Result<(), MetaError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(database("checking the database"))?;
        Ok(())
    }
}
