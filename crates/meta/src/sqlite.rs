//! The SQLite backend: one database file, opened in WAL mode.
//!
//! SQLite allows one writer at a time. Writes therefore go through a pool of
//! exactly one connection, where they queue in-process instead of retrying on
//! `SQLITE_BUSY`, and every write transaction starts with `BEGIN IMMEDIATE`,
//! which takes the write lock up front so that a transaction that reads before
//! it writes cannot fail halfway when another process holds the lock (the busy
//! timeout covers that wait instead). Reads go through a separate small pool of
//! read-only connections, which WAL lets run alongside the writer.
//!
//! The schema lives in `migrations/sqlite/`, is embedded into the binary and is
//! applied on open; see [`MIGRATIONS`].

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use berth_oci::{Digest, RepoName, Tag};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::common::{
    database, limit_to_i64, parse_digest, parse_repository, parse_size, parse_tag, size_mismatches,
    to_i64, EmbeddedMigrations,
};
use crate::{
    BlobCandidate, DeletedManifest, GcCutoffs, LinkCandidate, LiveUploads, ManifestCandidate,
    ManifestRecord, MetaError, MetaStore, NewManifest, Referrer, Timestamp, UploadRecord,
};

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

/// How long the readiness probe waits for the write lock. Shorter than
/// the server's readiness deadline, longer than any of this process's own
/// write transactions, so only a lock someone else keeps reads as busy.
const READY_PROBE_BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// Read connections. Reads are short and WAL lets them run in parallel with
/// each other and with the writer; a handful is enough for a registry whose
/// heavy lifting is blob IO, not metadata.
const READ_CONNECTIONS: u32 = 4;

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
];

/// The metadata store on SQLite.
#[derive(Clone, Debug)]
pub struct SqliteMetaStore {
    /// Read-only connections; never used inside a write transaction.
    pub(crate) read: SqlitePool,
    /// The one connection that writes, so writers queue here rather than
    /// contend for SQLite's lock.
    pub(crate) write: SqlitePool,
    /// The database file, for the readiness probe's own connection; `None`
    /// for an in-memory database.
    path: Option<std::path::PathBuf>,
}

impl SqliteMetaStore {
    /// Opens (creating if needed) the database file at `path` and brings its
    /// schema up to date.
    pub async fn open(path: &Path) -> Result<Self, MetaError> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let write_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode, NORMAL syncs the log at checkpoints rather than at
            // every commit: a power loss may lose the last commits but never
            // corrupts the database, and a registry client whose push was
            // lost simply pushes again. FULL would cost an fsync per commit.
            .synchronous(SqliteSynchronous::Normal);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // Keeping the writer open keeps the WAL and shared-memory files in
            // place, which the read-only connections need to open the file.
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(write_options)
            .await
            .map_err(database("opening the database for writing"))?;
        migrate(&write).await?;
        // The journal mode is stored in the file, so readers need not (and,
        // being read-only, could not) set it.
        let read = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(base.read_only(true))
            .await
            .map_err(database("opening the database for reading"))?;
        Ok(SqliteMetaStore {
            read,
            write,
            path: Some(path.to_path_buf()),
        })
    }

    /// Opens a private in-memory database, for tests.
    ///
    /// An in-memory database lives as long as its one connection, so reads and
    /// writes share that connection and it is never closed for idleness.
    pub async fn open_in_memory() -> Result<Self, MetaError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(database("parsing in-memory options"))?
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(database("opening an in-memory database"))?;
        migrate(&pool).await?;
        Ok(SqliteMetaStore {
            read: pool.clone(),
            write: pool,
            path: None,
        })
    }

    /// Closes both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Starts a write transaction holding SQLite's write lock from the start.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, MetaError> {
        self.write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(database("starting a write transaction"))
    }

    /// Starts a read transaction, so multi-statement reads see one snapshot.
    async fn begin_read(&self) -> Result<Transaction<'static, Sqlite>, MetaError> {
        self.read
            .begin()
            .await
            .map_err(database("starting a read transaction"))
    }
}

/// Applies the embedded migrations that the database has not seen yet.
async fn migrate(pool: &SqlitePool) -> Result<(), MetaError> {
    let migrator = Migrator::new(EmbeddedMigrations(MIGRATIONS))
        .await
        .map_err(|error| MetaError::Database(format!("loading migrations: {error}")))?;
    migrator
        .run(pool)
        .await
        .map_err(|error| MetaError::Database(format!("applying migrations: {error}")))
}

/// Reads a column, reporting a missing or mistyped column as corruption.
fn column<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T, MetaError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(name)
        .map_err(|error| MetaError::Corrupt(format!("column {name}: {error}")))
}

/// The manifest columns [`manifest_from_row`] reads, prefixed by table alias `m`.
const MANIFEST_COLUMNS: &str =
    "m.digest, m.media_type, m.artifact_type, m.subject, m.annotations, m.payload";

fn manifest_from_row(row: &SqliteRow) -> Result<ManifestRecord, MetaError> {
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

fn upload_from_row(row: &SqliteRow) -> Result<UploadRecord, MetaError> {
    Ok(UploadRecord {
        id: column(row, "id")?,
        repository: parse_repository(&column::<String>(row, "name")?)?,
        created_at: column(row, "created_at")?,
        updated_at: column(row, "updated_at")?,
        progress: column(row, "progress")?,
        principal: column(row, "principal")?,
    })
}

/// Returns the repository's id, creating the repository if needed.
///
/// Every write goes through the one writer connection, so each statement is
/// a round trip to its thread; the common case (the repository exists) costs
/// one, a new repository two. Callers hold a write transaction, so nothing
/// can create the repository between the look-up and the insert.
async fn ensure_repository(
    tx: &mut Transaction<'static, Sqlite>,
    repository: &RepoName,
    now: Timestamp,
) -> Result<i64, MetaError> {
    if let Some(id) = repository_id(tx, repository).await? {
        return Ok(id);
    }
    sqlx::query_scalar("INSERT INTO repositories (name, created_at) VALUES (?, ?) RETURNING id")
        .bind(repository.as_str())
        .bind(now)
        .fetch_one(&mut **tx)
        .await
        .map_err(database("creating a repository"))
}

/// Returns the repository's id, or `None` if it does not exist.
async fn repository_id(
    tx: &mut Transaction<'static, Sqlite>,
    repository: &RepoName,
) -> Result<Option<i64>, MetaError> {
    sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
        .bind(repository.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(database("looking up a repository"))
}

/// Returns the items of `wanted` that `table` (`repository_blobs` by
/// `digest`, or `manifests`) lacks in the repository, each once, in their
/// first order.
///
/// The digests travel as one JSON array, so a manifest with many layers costs
/// one round trip to the writer rather than one per layer.
async fn missing(
    tx: &mut Transaction<'static, Sqlite>,
    table: &'static str,
    repository_id: i64,
    wanted: &[Digest],
    context: &'static str,
) -> Result<Vec<Digest>, MetaError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT w.value FROM json_each(?2) AS w \
         WHERE NOT EXISTS (SELECT 1 FROM {table} t \
             WHERE t.repository_id = ?1 AND t.digest = w.value) \
         GROUP BY w.value ORDER BY MIN(w.key)"
    );
    let names: Vec<String> = sqlx::query_scalar(&sql)
        .bind(repository_id)
        .bind(digest_array(wanted))
        .fetch_all(&mut **tx)
        .await
        .map_err(database(context))?;
    names.iter().map(|name| parse_digest(name)).collect()
}

/// The digests as a JSON array of strings, for `json_each`.
fn digest_array(digests: &[Digest]) -> String {
    let names: Vec<&str> = digests.iter().map(Digest::as_str).collect();
    serde_json::to_string(&names).expect("a list of strings serializes")
}

async fn manifest_exists(
    tx: &mut Transaction<'static, Sqlite>,
    repository_id: i64,
    digest: &str,
) -> Result<bool, MetaError> {
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?")
            .bind(repository_id)
            .bind(digest)
            .fetch_optional(&mut **tx)
            .await
            .map_err(database("looking up a manifest"))?;
    Ok(exists.is_some())
}

/// Makes the link a garbage candidate as of `now` if no manifest of its
/// repository references the blob any more (keeping an earlier time).
async fn mark_link_if_unreferenced(
    tx: &mut Transaction<'static, Sqlite>,
    repository_id: i64,
    digest: &str,
    now: Timestamp,
) -> Result<(), MetaError> {
    sqlx::query(
        "UPDATE repository_blobs SET unreferenced_since = COALESCE(unreferenced_since, ?1) \
         WHERE repository_id = ?2 AND digest = ?3 AND NOT EXISTS ( \
             SELECT 1 FROM manifest_blobs mb \
             WHERE mb.repository_id = ?2 AND mb.blob_digest = ?3)",
    )
    .bind(now)
    .bind(repository_id)
    .bind(digest)
    .execute(&mut **tx)
    .await
    .map_err(database("marking a link unreferenced"))?;
    Ok(())
}

/// Makes the blob a garbage candidate as of `now` if no repository links it
/// and no manifest references it (keeping an earlier time).
async fn mark_blob_if_orphaned(
    tx: &mut Transaction<'static, Sqlite>,
    digest: &str,
    now: Timestamp,
) -> Result<(), MetaError> {
    sqlx::query(
        "UPDATE blobs SET orphaned_at = COALESCE(orphaned_at, ?1) \
         WHERE digest = ?2 \
         AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = ?2) \
         AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = ?2)",
    )
    .bind(now)
    .bind(digest)
    .execute(&mut **tx)
    .await
    .map_err(database("marking a blob orphaned"))?;
    Ok(())
}

/// The manifest and, with `with_referrers`, every manifest of the repository
/// whose subject is in the set, recursively: what deleting `digest` removes.
/// Refuses with `ManifestReferenced` if an index outside the set lists a
/// member. The root comes first.
async fn deletion_set(
    tx: &mut Transaction<'static, Sqlite>,
    repository_id: i64,
    digest: &Digest,
    with_referrers: bool,
) -> Result<Vec<String>, MetaError> {
    let mut doomed = vec![digest.as_str().to_string()];
    let mut next = 0;
    while with_referrers && next < doomed.len() {
        let referrers: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM manifests WHERE repository_id = ? AND subject = ? \
             ORDER BY digest COLLATE BINARY",
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
        // The smallest parent digest is reported so the answer is stable.
        let parents: Vec<String> = sqlx::query_scalar(
            "SELECT parent_digest FROM manifest_children \
             WHERE repository_id = ? AND child_digest = ? \
             ORDER BY parent_digest COLLATE BINARY",
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

/// Deletes the manifests of `doomed` (from [`deletion_set`]) with their tags
/// and references, and turns what lost its last reference into candidates.
async fn delete_manifests(
    tx: &mut Transaction<'static, Sqlite>,
    repository_id: i64,
    root: &Digest,
    doomed: &[String],
    now: Timestamp,
) -> Result<DeletedManifest, MetaError> {
    let tag_names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM tags WHERE repository_id = ? AND manifest_digest = ? \
         ORDER BY name COLLATE BINARY",
    )
    .bind(repository_id)
    .bind(root.as_str())
    .fetch_all(&mut **tx)
    .await
    .map_err(database("listing a manifest's tags"))?;
    let tags = tag_names
        .iter()
        .map(|name| parse_tag(name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut blobs: Vec<String> = Vec::new();
    for member in doomed {
        let referenced: Vec<String> = sqlx::query_scalar(
            "SELECT blob_digest FROM manifest_blobs WHERE repository_id = ? AND manifest_digest = ?",
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
    // Rows that reference a manifest go first, each kind for every member
    // before the manifests themselves, so the foreign keys hold at every
    // statement even when one member is an index listing another.
    for (sql, context) in [
        (
            "DELETE FROM tags WHERE repository_id = ? AND manifest_digest = ?",
            "deleting a manifest's tags",
        ),
        (
            "DELETE FROM manifest_blobs WHERE repository_id = ? AND manifest_digest = ?",
            "deleting a manifest's blob references",
        ),
        (
            "DELETE FROM manifest_children WHERE repository_id = ? AND parent_digest = ?",
            "deleting an index's manifest references",
        ),
        (
            "DELETE FROM manifests WHERE repository_id = ? AND digest = ?",
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
    let mut referrers = doomed[1..]
        .iter()
        .map(|digest| parse_digest(digest))
        .collect::<Result<Vec<_>, _>>()?;
    referrers.sort();
    Ok(DeletedManifest { tags, referrers })
}

/// The condition under which a manifest `m` is untagged garbage, given the
/// cut-off as `?1`.
const UNTAGGED_CONDITION: &str = "m.created_at < ?1 \
     AND NOT EXISTS (SELECT 1 FROM tags t \
         WHERE t.repository_id = m.repository_id AND t.manifest_digest = m.digest) \
     AND NOT EXISTS (SELECT 1 FROM manifest_children c \
         WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest) \
     AND (m.subject IS NULL OR NOT EXISTS (SELECT 1 FROM manifests s \
         WHERE s.repository_id = m.repository_id AND s.digest = m.subject))";

#[async_trait::async_trait]
impl MetaStore for SqliteMetaStore {
    async fn list_repositories(
        &self,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, MetaError> {
        let names: Vec<String> = sqlx::query_scalar(
            // Every name is longer than "", so the first page starts after
            // "". `?1 IS NULL OR name > ?1` would make SQLite scan from the
            // first name on every page; a plain range is an index seek.
            "SELECT name FROM repositories \
             WHERE name > ?1 COLLATE BINARY \
             ORDER BY name COLLATE BINARY LIMIT ?2",
        )
        .bind(after.map_or("", RepoName::as_str))
        .bind(limit_to_i64(limit))
        .fetch_all(&self.read)
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
        let mut tx = self.begin_write().await?;
        // One round trip asks both things the link depends on.
        let (deleting, repository_id): (bool, Option<i64>) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM blob_deletions WHERE digest = ?), \
             (SELECT id FROM repositories WHERE name = ?)",
        )
        .bind(digest.as_str())
        .bind(repository.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(database("looking for a blob deletion"))?;
        // While garbage collection deletes the bytes, a link would point at
        // bytes about to vanish; the caller stores them again and retries.
        if deleting {
            return Err(MetaError::BlobBeingDeleted);
        }
        let repository_id = match repository_id {
            Some(id) => id,
            None => ensure_repository(&mut tx, repository, now).await?,
        };
        // A digest names its content, so a blob already recorded keeps its
        // row (and size); it only stops being a garbage candidate.
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (digest) DO UPDATE SET orphaned_at = NULL",
        )
        .bind(digest.as_str())
        .bind(size)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(database("recording a blob"))?;
        // A link no manifest references yet belongs to a push whose manifest
        // is still to come: it is a candidate from now, and pushing the blob
        // again restarts that clock. A referenced link stays as it is.
        sqlx::query(
            "INSERT INTO repository_blobs \
             (repository_id, digest, created_at, unreferenced_since, was_referenced) \
             VALUES (?1, ?2, ?3, \
                 CASE WHEN EXISTS (SELECT 1 FROM manifest_blobs \
                     WHERE repository_id = ?1 AND blob_digest = ?2) THEN NULL ELSE ?3 END, \
                 EXISTS (SELECT 1 FROM manifest_blobs \
                     WHERE repository_id = ?1 AND blob_digest = ?2)) \
             ON CONFLICT (repository_id, digest) DO UPDATE SET \
             was_referenced = CASE WHEN repository_blobs.unreferenced_since IS NULL \
                 THEN repository_blobs.was_referenced ELSE 0 END, \
             unreferenced_since = CASE WHEN repository_blobs.unreferenced_since IS NULL \
                 THEN NULL ELSE excluded.unreferenced_since END",
        )
        .bind(repository_id)
        .bind(digest.as_str())
        .bind(now)
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
             WHERE r.name = ? AND b.digest = ?",
        )
        .bind(repository.as_str())
        .bind(digest.as_str())
        .fetch_optional(&self.read)
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
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT r.name FROM repository_blobs rb \
             JOIN repositories r ON r.id = rb.repository_id \
             WHERE rb.digest = ?1 AND r.name > ?2 COLLATE BINARY \
             ORDER BY r.name COLLATE BINARY LIMIT ?3",
        )
        .bind(digest.as_str())
        .bind(after.map_or("", RepoName::as_str))
        .bind(limit_to_i64(limit))
        .fetch_all(&self.read)
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
        let mut tx = self.begin_write().await?;
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(false);
        };
        let removed =
            sqlx::query("DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?")
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
        let mut tx = self.begin_write().await?;
        let repository_id = ensure_repository(&mut tx, repository, now).await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?")
                .bind(repository_id)
                .bind(record.digest.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(database("looking up a manifest"))?;
        if exists.is_none() {
            // Returning early drops the transaction, which rolls back the
            // repository it may have created: a refused push leaves no trace.
            let missing_blobs = missing(
                &mut tx,
                "repository_blobs",
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
                let stored: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT digest, size FROM blobs \
                     WHERE digest IN (SELECT value FROM json_each(?1))",
                )
                .bind(digest_array(&digests))
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
                "manifests",
                repository_id,
                &manifest.children,
                "checking an index's manifests",
            )
            .await?;
            if !missing_children.is_empty() {
                return Err(MetaError::MissingManifests(missing_children));
            }
            sqlx::query(
                "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, \
                 subject, annotations, payload, size, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            .map_err(database("storing a manifest"))?;
            // A manifest may list the same blob or child twice (for instance
            // one layer used twice); one row per pair is enough. Each list
            // goes as one JSON array: one statement whatever its length. The
            // `WHERE true` tells SQLite's parser that `ON CONFLICT` belongs
            // to the insert, not to the select.
            if !manifest.blobs.is_empty() {
                let blobs = digest_array(&manifest.blobs);
                sqlx::query(
                    "INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest) \
                     SELECT ?1, ?2, value FROM json_each(?3) WHERE true ON CONFLICT DO NOTHING",
                )
                .bind(repository_id)
                .bind(record.digest.as_str())
                .bind(&blobs)
                .execute(&mut *tx)
                .await
                .map_err(database("recording a manifest's blobs"))?;
                // The links are referenced now, so they are no garbage
                // candidates.
                sqlx::query(
                    "UPDATE repository_blobs SET unreferenced_since = NULL, was_referenced = 1 \
                     WHERE repository_id = ?1 AND digest IN (SELECT value FROM json_each(?2))",
                )
                .bind(repository_id)
                .bind(&blobs)
                .execute(&mut *tx)
                .await
                .map_err(database("marking links referenced"))?;
            }
            if !manifest.children.is_empty() {
                sqlx::query(
                    "INSERT INTO manifest_children (repository_id, parent_digest, child_digest) \
                     SELECT ?1, ?2, value FROM json_each(?3) WHERE true ON CONFLICT DO NOTHING",
                )
                .bind(repository_id)
                .bind(record.digest.as_str())
                .bind(digest_array(&manifest.children))
                .execute(&mut *tx)
                .await
                .map_err(database("recording an index's manifests"))?;
            }
        }
        if let Some(tag) = tag {
            sqlx::query(
                "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) \
                 VALUES (?, ?, ?, ?) \
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
             WHERE r.name = ? AND m.digest = ?"
        );
        let row = sqlx::query(&sql)
            .bind(repository.as_str())
            .bind(digest.as_str())
            .fetch_optional(&self.read)
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
             WHERE r.name = ? AND t.name = ?"
        );
        let row = sqlx::query(&sql)
            .bind(repository.as_str())
            .bind(tag.as_str())
            .fetch_optional(&self.read)
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
        let mut tx = self.begin_write().await?;
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(None);
        };
        if !manifest_exists(&mut tx, repository_id, digest.as_str()).await? {
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
             WHERE repository_id = (SELECT id FROM repositories WHERE name = ?) AND name = ?",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .execute(&self.write)
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
        // One statement, so existence and the page come from one snapshot,
        // and one row: the page is aggregated into a JSON array inside
        // SQLite, because handing thousands of rows one by one across the
        // driver's thread boundary cost more than the query itself.
        let page: Option<String> = sqlx::query_scalar(
            "SELECT (SELECT json_group_array(name ORDER BY name COLLATE BINARY) FROM ( \
                 SELECT name FROM tags \
                 WHERE repository_id = r.id AND name > ?2 COLLATE BINARY \
                 ORDER BY name COLLATE BINARY LIMIT ?3)) \
             FROM repositories r WHERE r.name = ?1",
        )
        .bind(repository.as_str())
        // Tags are never empty, so "" stands for "from the first tag" and
        // each page is an index range seek (see `list_repositories`).
        .bind(after.unwrap_or(""))
        .bind(limit_to_i64(limit))
        .fetch_optional(&self.read)
        .await
        .map_err(database("listing tags"))?;
        let Some(page) = page else {
            return Ok(None);
        };
        let names: Vec<String> = serde_json::from_str(&page)
            .map_err(|e| MetaError::Corrupt(format!("a tag page is not a JSON array: {e}")))?;
        let tags = names
            .iter()
            .map(|name| parse_tag(name))
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
        // Every digest sorts after "", so the first page needs no special
        // case. `length` of a BLOB counts bytes (of TEXT, characters).
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, \
             CASE WHEN length(CAST(m.annotations AS BLOB)) <= ?5 THEN m.annotations END \
             AS annotations \
             FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = ?1 AND m.subject = ?2 AND (?3 IS NULL OR m.artifact_type = ?3) \
             AND m.digest > ?4 COLLATE BINARY \
             ORDER BY m.digest COLLATE BINARY LIMIT ?6",
        )
        .bind(repository.as_str())
        .bind(subject.as_str())
        .bind(artifact_type)
        .bind(after.map_or("", Digest::as_str))
        .bind(limit_to_i64(max_annotation_bytes))
        .bind(limit_to_i64(limit))
        .fetch_all(&self.read)
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
        // One statement (one round trip to the writer) when the repository
        // exists, which is every blob of a push after its first.
        let inserted = sqlx::query(
            "INSERT INTO uploads (id, repository_id, created_at, updated_at, progress, principal) \
             SELECT ?, id, ?, ?, ?, ? FROM repositories WHERE name = ?",
        )
        .bind(&upload.id)
        .bind(upload.created_at)
        .bind(upload.updated_at)
        .bind(&upload.progress)
        .bind(upload.principal.as_deref())
        .bind(upload.repository.as_str())
        .execute(&self.write)
        .await
        .map_err(database("creating an upload"))?
        .rows_affected();
        if inserted > 0 {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        let repository_id =
            ensure_repository(&mut tx, &upload.repository, upload.created_at).await?;
        sqlx::query(
            "INSERT INTO uploads (id, repository_id, created_at, updated_at, progress, principal) \
             VALUES (?, ?, ?, ?, ?, ?)",
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
              WHERE r.name = ?1 AND u.updated_at >= ?3), \
             (SELECT count(*) FROM uploads \
              WHERE ?2 IS NOT NULL AND principal = ?2 AND updated_at >= ?3)",
        )
        .bind(repository.as_str())
        .bind(principal)
        .bind(since)
        .fetch_one(&self.read)
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
             WHERE r.name = ? AND u.id = ?"
        );
        let row = sqlx::query(&sql)
            .bind(repository.as_str())
            .bind(id)
            .fetch_optional(&self.read)
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
        // The common case, a free or own or expired lease, is one statement:
        // one round trip to the writer instead of a transaction's four. A
        // lease runs until (not including) its expiry second, and the same
        // holder may take its own lease again, which renews it.
        let taken = sqlx::query(
            "UPDATE uploads SET lease_holder = ?1, lease_expires = ?2 \
             WHERE id = ?3 \
             AND repository_id = (SELECT id FROM repositories WHERE name = ?4) \
             AND (lease_holder IS NULL OR lease_expires IS NULL \
                  OR lease_holder = ?1 OR ?5 >= lease_expires) \
             RETURNING id, created_at, updated_at, progress, principal",
        )
        .bind(holder)
        .bind(now.saturating_add(lease_secs))
        .bind(id)
        .bind(repository.as_str())
        .bind(now)
        .fetch_optional(&self.write)
        .await
        .map_err(database("taking an upload's lease"))?;
        if let Some(row) = taken {
            return Ok(UploadRecord {
                id: column(&row, "id")?,
                repository: repository.clone(),
                created_at: column(&row, "created_at")?,
                updated_at: column(&row, "updated_at")?,
                progress: column(&row, "progress")?,
                principal: column(&row, "principal")?,
            });
        }
        // Not taken: find out why, under a transaction so the answer is
        // consistent (the lease may also have been freed meanwhile, which
        // the same checks then take).
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT {UPLOAD_COLUMNS}, u.lease_holder, u.lease_expires \
             FROM uploads u JOIN repositories r ON r.id = u.repository_id \
             WHERE r.name = ? AND u.id = ?"
        );
        let row = sqlx::query(&sql)
            .bind(repository.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(database("fetching an upload to lock"))?
            .ok_or(MetaError::UploadNotFound)?;
        let record = upload_from_row(&row)?;
        let lease_holder: Option<String> = column(&row, "lease_holder")?;
        let lease_expires: Option<i64> = column(&row, "lease_expires")?;
        // A lease runs until (not including) its expiry second. The same
        // holder may take its own lease again, which renews it.
        if let (Some(current), Some(expires)) = (lease_holder, lease_expires) {
            if current != holder && now < expires {
                return Err(MetaError::UploadBusy);
            }
        }
        sqlx::query("UPDATE uploads SET lease_holder = ?, lease_expires = ? WHERE id = ?")
            .bind(holder)
            .bind(now.saturating_add(lease_secs))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(database("taking an upload's lease"))?;
        tx.commit()
            .await
            .map_err(database("committing an upload lease"))?;
        Ok(record)
    }

    async fn update_upload(
        &self,
        id: &str,
        holder: &str,
        progress: &str,
        now: Timestamp,
    ) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        // A holder whose lease expired but was not taken still holds it: no
        // one else wrote in between, so its progress is still right.
        let updated = sqlx::query(
            "UPDATE uploads SET progress = ?, updated_at = ?, lease_holder = NULL, \
             lease_expires = NULL WHERE id = ? AND lease_holder = ?",
        )
        .bind(progress)
        .bind(now)
        .bind(id)
        .bind(holder)
        .execute(&mut *tx)
        .await
        .map_err(database("updating an upload"))?
        .rows_affected();
        if updated == 0 {
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM uploads WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(database("looking up an upload"))?;
            return Err(match exists {
                Some(_) => MetaError::UploadBusy,
                None => MetaError::UploadNotFound,
            });
        }
        tx.commit()
            .await
            .map_err(database("committing an upload update"))
    }

    async fn unlock_upload(&self, id: &str, holder: &str) -> Result<(), MetaError> {
        // Only the holder's own lease is released; if it was lost to another
        // holder (or the upload is gone) there is nothing of ours to release,
        // and the caller, already handling a failed write, needs no new error.
        sqlx::query(
            "UPDATE uploads SET lease_holder = NULL, lease_expires = NULL \
             WHERE id = ? AND lease_holder = ?",
        )
        .bind(id)
        .bind(holder)
        .execute(&self.write)
        .await
        .map_err(database("releasing an upload's lease"))?;
        Ok(())
    }

    async fn release_upload_leases(&self, holder_prefix: &str) -> Result<u64, MetaError> {
        // `substr` and `length` both count characters, so this compares the
        // holder's first characters with the whole prefix, with no pattern
        // syntax to escape (as `LIKE` would need for `_` and `%`).
        let released = sqlx::query(
            "UPDATE uploads SET lease_holder = NULL, lease_expires = NULL \
             WHERE lease_holder IS NOT NULL AND substr(lease_holder, 1, length(?1)) = ?1",
        )
        .bind(holder_prefix)
        .execute(&self.write)
        .await
        .map_err(database("releasing a node's upload leases"))?;
        Ok(released.rows_affected())
    }

    async fn delete_upload(&self, id: &str) -> Result<bool, MetaError> {
        let result = sqlx::query("DELETE FROM uploads WHERE id = ?")
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(database("deleting an upload"))?;
        Ok(result.rows_affected() > 0)
    }

    async fn unknown_uploads(&self, ids: &[String]) -> Result<Vec<String>, MetaError> {
        let mut tx = self.begin_read().await?;
        let mut unknown: Vec<String> = Vec::new();
        for id in ids {
            if unknown.contains(id) {
                continue;
            }
            let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM uploads WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(database("looking up an upload"))?;
            if known.is_none() {
                unknown.push(id.clone());
            }
        }
        tx.commit()
            .await
            .map_err(database("ending a read transaction"))?;
        Ok(unknown)
    }

    async fn expired_uploads(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, MetaError> {
        let sql = format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads u JOIN repositories r ON r.id = u.repository_id \
             WHERE u.updated_at < ? ORDER BY u.updated_at, u.id COLLATE BINARY LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(before)
            .bind(limit_to_i64(limit))
            .fetch_all(&self.read)
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
        // One statement decides and writes: the upsert's `WHERE` leaves a
        // running lease of another holder untouched, and `RETURNING` yields a
        // row only when the lease was inserted or updated, i.e. taken.
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO job_leases (job, holder, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (job) DO UPDATE \
             SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE job_leases.holder = excluded.holder OR job_leases.expires_at <= ?4 \
             RETURNING holder",
        )
        .bind(job)
        .bind(holder)
        .bind(now.saturating_add(lease_secs))
        .bind(now)
        .fetch_optional(&self.write)
        .await
        .map_err(database("taking a job lease"))?;
        Ok(taken.is_some())
    }

    async fn release_job_lease(&self, job: &str, holder: &str) -> Result<(), MetaError> {
        sqlx::query("DELETE FROM job_leases WHERE job = ? AND holder = ?")
            .bind(job)
            .bind(holder)
            .execute(&self.write)
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
             WHERE rb.unreferenced_since IS NOT NULL AND rb.unreferenced_since < max(?1, ?2) \
             AND rb.unreferenced_since < CASE WHEN rb.was_referenced = 1 THEN ?1 ELSE ?2 END \
             AND (?3 IS NULL OR (rb.unreferenced_since, r.name, rb.digest) > (?3, ?4, ?5)) \
             ORDER BY rb.unreferenced_since, r.name COLLATE BINARY, rb.digest COLLATE BINARY \
             LIMIT ?6",
        )
        .bind(cutoffs.unreferenced_before)
        .bind(cutoffs.never_referenced_before)
        .bind(after.map(|a| a.since))
        .bind(after.map(|a| a.repository.as_str()))
        .bind(after.map(|a| a.digest.as_str()))
        .bind(limit_to_i64(limit))
        .fetch_all(&self.read)
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
        let mut tx = self.begin_write().await?;
        let mut removed = Vec::new();
        for link in links {
            let Some(repository_id) = repository_id(&mut tx, &link.repository).await? else {
                continue;
            };
            // The candidate is checked again here, in the transaction that
            // deletes it: a manifest or a re-push since the listing keeps it.
            let since: Option<i64> = sqlx::query_scalar(
                "DELETE FROM repository_blobs WHERE repository_id = ?1 AND digest = ?2 \
                 AND unreferenced_since IS NOT NULL \
                 AND unreferenced_since < CASE WHEN was_referenced = 1 THEN ?3 ELSE ?4 END \
                 AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb \
                     WHERE mb.repository_id = ?1 AND mb.blob_digest = ?2) \
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
                // The blob has been unreferenced since the link was: its
                // grace period has run already (a later re-push re-links).
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
             WHERE orphaned_at IS NOT NULL AND orphaned_at < ?1 \
             AND (?2 IS NULL OR (orphaned_at, digest) > (?2, ?3)) \
             ORDER BY orphaned_at, digest COLLATE BINARY LIMIT ?4",
        )
        .bind(before)
        .bind(after.map(|a| a.since))
        .bind(after.map(|a| a.digest.as_str()))
        .bind(limit_to_i64(limit))
        .fetch_all(&self.read)
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
        let mut tx = self.begin_write().await?;
        let mut begun = Vec::new();
        for blob in blobs {
            // Checked again in the deleting transaction: a link or manifest
            // reference made since the listing cleared `orphaned_at`.
            let size: Option<i64> = sqlx::query_scalar(
                "DELETE FROM blobs WHERE digest = ?1 \
                 AND orphaned_at IS NOT NULL AND orphaned_at < ?2 \
                 AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = ?1) \
                 AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = ?1) \
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
                "INSERT INTO blob_deletions (digest, size, started_at) VALUES (?, ?, ?) \
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
        let inserted = sqlx::query(
            "INSERT INTO blob_deletions (digest, size, started_at) \
             SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM blobs WHERE digest = ?1) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.as_str())
        .bind(size)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(database("recording an orphan deletion"))?
        .rows_affected();
        Ok(inserted > 0)
    }

    async fn pending_blob_deletions(&self, limit: usize) -> Result<Vec<BlobCandidate>, MetaError> {
        let rows = sqlx::query(
            "SELECT digest, size, started_at FROM blob_deletions \
             ORDER BY started_at, digest COLLATE BINARY LIMIT ?",
        )
        .bind(limit_to_i64(limit))
        .fetch_all(&self.read)
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
        sqlx::query("DELETE FROM blob_deletions WHERE digest = ?")
            .bind(digest.as_str())
            .execute(&self.write)
            .await
            .map_err(database("finishing a blob deletion"))?;
        Ok(())
    }

    async fn unknown_blobs(&self, digests: &[Digest]) -> Result<Vec<Digest>, MetaError> {
        let mut tx = self.begin_read().await?;
        let mut unknown = Vec::new();
        for digest in digests {
            let known: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM blobs WHERE digest = ?1 \
                 UNION ALL SELECT 1 FROM blob_deletions WHERE digest = ?1 LIMIT 1",
            )
            .bind(digest.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(database("looking up a stored object"))?;
            if known.is_none() {
                unknown.push(digest.clone());
            }
        }
        tx.commit()
            .await
            .map_err(database("ending a read transaction"))?;
        Ok(unknown)
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
             AND (?2 IS NULL OR (m.created_at, r.name, m.digest) > (?2, ?3, ?4)) \
             ORDER BY m.created_at, r.name COLLATE BINARY, m.digest COLLATE BINARY LIMIT ?5"
        );
        let rows = sqlx::query(&sql)
            .bind(before)
            .bind(after.map(|a| a.created_at))
            .bind(after.map(|a| a.repository.as_str()))
            .bind(after.map(|a| a.digest.as_str()))
            .bind(limit_to_i64(limit))
            .fetch_all(&self.read)
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
        let mut tx = self.begin_write().await?;
        let Some(repository_id) = repository_id(&mut tx, &candidate.repository).await? else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT 1 FROM manifests m WHERE m.repository_id = ?2 AND m.digest = ?3 \
             AND {UNTAGGED_CONDITION}"
        );
        let qualifies: Option<i64> = sqlx::query_scalar(&sql)
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
            // A referrer listed by an index keeps the whole group alive.
            Err(MetaError::ManifestReferenced(_)) => return Ok(None),
            Err(error) => return Err(error),
        };
        // A tagged referrer was pushed to be kept; it keeps its subject too.
        for member in &doomed {
            let tagged: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM tags WHERE repository_id = ? AND manifest_digest = ? LIMIT 1",
            )
            .bind(repository_id)
            .bind(member)
            .fetch_optional(&mut *tx)
            .await
            .map_err(database("looking for tags of a referrer"))?;
            if tagged.is_some() {
                return Ok(None);
            }
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
            .execute(&self.read)
            .await
            .map_err(database("checking the database"))?;
        // Reads go on while another process holds the write lock (a
        // `sqlite3` shell in a transaction), but every push stops. The
        // probe takes and drops the lock on a connection of its own, so it
        // neither queues behind this process's writer nor holds it up.
        let Some(path) = &self.path else {
            return Ok(());
        };
        use sqlx::{ConnectOptions, Connection};
        let mut probe = SqliteConnectOptions::new()
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
}
