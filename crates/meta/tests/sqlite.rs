//! The shared suites against SQLite database files, plus what only SQLite
//! has: reopening a file, and the connection settings.

use std::path::Path;

use berth_meta::sqlite::SqliteMetaStore;
use berth_meta::{BlobLinkStore, MetaError};
use berth_oci::{Algorithm, RepoName};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tempfile::TempDir;

/// A change made by the test at `time`.
fn at(time: i64) -> berth_meta::Change {
    berth_meta::Change::new(berth_meta::Actor::system("test"), time)
}

/// A new database in its own temporary directory, which lives as long as the
/// returned guard.
async fn fresh_store() -> (TempDir, SqliteMetaStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteMetaStore::open(&dir.path().join("meta.db"))
        .await
        .expect("a new database opens");
    (dir, store)
}

berth_meta::meta_store_tests!(fresh_store);

#[tokio::test]
async fn the_default_storage_limit_applies_to_links_and_manifests() {
    let (_dir, store) = fresh_store().await;
    let store = store.with_default_storage_limit(Some(100));
    berth_meta::suite::quotas::the_default_storage_limit_applies_to_links_and_manifests(&store)
        .await;
}

#[tokio::test]
async fn whole_suite_shares_one_file_store() {
    let (_dir, store) = fresh_store().await;
    berth_meta::suite::run_all(&store).await;
}

#[tokio::test]
async fn whole_suite_runs_in_memory() {
    let store = SqliteMetaStore::open_in_memory()
        .await
        .expect("an in-memory database opens");
    berth_meta::suite::run_all(&store).await;
}

/// Reads the file with a plain connection, to see what the store cannot show.
async fn inspect(path: &Path, sql: &str) -> Vec<String> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(path).read_only(true))
        .await
        .expect("the database opens for inspection");
    let values: Vec<String> = sqlx::query_scalar(sql)
        .fetch_all(&pool)
        .await
        .expect("the inspection query runs");
    pool.close().await;
    values
}

#[tokio::test]
async fn reopening_keeps_data_and_applies_migrations_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let rows = berth_meta::suite::upgrade::Reopened::default();
    let store = SqliteMetaStore::open(&path).await.unwrap();
    rows.write(&store).await;
    store.close().await;

    // Twice, so that a second run over an up-to-date schema is also checked.
    for _ in 0..2 {
        let store = SqliteMetaStore::open(&path).await.unwrap();
        rows.check(&store).await;
        store.close().await;
    }

    let applied = inspect(&path, "SELECT CAST(version AS TEXT) FROM _sqlx_migrations").await;
    let expected: Vec<String> = berth_meta::sqlite::MIGRATIONS
        .iter()
        .map(|(version, _, _)| version.to_string())
        .collect();
    assert_eq!(applied, expected);
    assert_eq!(
        inspect(&path, "PRAGMA journal_mode").await,
        vec!["wal".to_string()]
    );
}

#[tokio::test]
async fn two_stores_on_one_file_see_each_others_writes() {
    // Two stores stand for two processes sharing the database.
    let (dir, first) = fresh_store().await;
    let second = SqliteMetaStore::open(&dir.path().join("meta.db"))
        .await
        .unwrap();
    let repo = RepoName::parse("shared/app").unwrap();
    let blob = Algorithm::Sha256.digest_of(b"shared blob");
    first.link_blob(&at(1), &repo, &blob, 3).await.unwrap();
    assert_eq!(
        second.linked_blob_size(&repo, &blob).await.unwrap(),
        Some(3)
    );
    assert!(second.unlink_blob(&at(1), &repo, &blob).await.unwrap());
    assert_eq!(first.linked_blob_size(&repo, &blob).await.unwrap(), None);
}

#[tokio::test]
async fn opening_in_a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let result = SqliteMetaStore::open(&dir.path().join("absent").join("meta.db")).await;
    assert!(
        matches!(result, Err(MetaError::Database(_))),
        "got {result:?}"
    );
}

/// A data directory written by the released schema (migrations 0001–0006)
/// opens with this code and loses nothing; see `berth_meta::suite::upgrade`.
#[tokio::test]
async fn a_database_of_the_released_schema_upgrades_without_loss() {
    use berth_meta::suite::upgrade::{old_rows, old_rows_survive, RELEASED_SCHEMA};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let hex = |bytes: &[u8]| -> String {
        let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("X'{digits}'")
    };
    database_at(&path, RELEASED_SCHEMA, old_rows(hex)).await;
    let store = SqliteMetaStore::open(&path).await.unwrap();
    old_rows_survive(&store).await;
}

/// Writes a database at `path` with the embedded migrations up to
/// `version` alone, then runs `statements` on it, as code of that version
/// would have written them.
async fn database_at(path: &std::path::Path, version: i64, statements: Vec<String>) {
    use berth_meta::sql::EmbeddedMigrations;
    use sqlx::migrate::Migrator;

    let last = berth_meta::sqlite::MIGRATIONS
        .iter()
        .position(|(number, _, _)| *number == version)
        .unwrap();
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .foreign_keys(true),
        )
        .await
        .unwrap();
    Migrator::new(EmbeddedMigrations(&berth_meta::sqlite::MIGRATIONS[..=last]))
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for statement in statements {
        sqlx::query(&statement)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    pool.close().await;
}

/// A database whose advisories were imported before migration 0032 kept
/// their count reads the count the migration made and moves it on.
#[tokio::test]
async fn advisories_imported_before_the_count_was_kept_are_counted() {
    use berth_meta::suite::upgrade::{
        advisories_are_counted, advisories_before_count, BEFORE_ADVISORY_COUNT,
    };

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    database_at(&path, BEFORE_ADVISORY_COUNT, advisories_before_count()).await;
    let store = SqliteMetaStore::open(&path).await.unwrap();
    advisories_are_counted(&store).await;
}

/// Another process holding SQLite's write lock (here: a connection of the
/// test's own, in a transaction) makes writes fail with `Unavailable` after
/// the busy timeout, not hang and not look like a bug, while reads go on;
/// the readiness check says so; and writes work again once the lock is gone.
#[tokio::test]
async fn a_write_lock_held_elsewhere_makes_writes_unavailable_until_released() {
    use sqlx::{ConnectOptions, Connection};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let store = SqliteMetaStore::open(&path).await.unwrap();
    let repo = RepoName::parse("busy/app").unwrap();
    let blob = Algorithm::Sha256.digest_of(b"busy");
    store.link_blob(&at(1), &repo, &blob, 4).await.unwrap();

    let mut holder = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();

    let other = Algorithm::Sha256.digest_of(b"waits");
    let refused = store.link_blob(&at(2), &repo, &other, 5).await;
    assert!(
        matches!(refused, Err(MetaError::Unavailable(_))),
        "got {refused:?}"
    );
    assert_eq!(store.linked_blob_size(&repo, &blob).await.unwrap(), Some(4));
    let ready = berth_meta::MetaStore::check_ready(&store).await;
    assert!(
        matches!(ready, Err(MetaError::Unavailable(_))),
        "got {ready:?}"
    );

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    berth_meta::MetaStore::check_ready(&store).await.unwrap();
    store.link_blob(&at(3), &repo, &other, 5).await.unwrap();
    assert_eq!(
        store.linked_blob_size(&repo, &other).await.unwrap(),
        Some(5)
    );
}

/// Two stores on one file (two nodes' pools) racing links into one
/// namespace never take it beyond its storage limit.
#[tokio::test]
async fn racing_links_through_two_stores_never_exceed_the_storage_limit() {
    let (dir, a) = fresh_store().await;
    let b = SqliteMetaStore::open(&dir.path().join("meta.db"))
        .await
        .unwrap();
    berth_meta::suite::quotas::racing_links_never_exceed_the_limit(&a, &b).await;
}

/// Usage changed behind the store's back (by hand, here) is reported by a
/// recount with both figures, corrected, and written as an event; a second
/// recount finds nothing.
#[tokio::test]
async fn a_recount_reports_and_fixes_usage_drift() {
    use berth_meta::suite::quotas as suite;
    let (dir, store) = fresh_store().await;
    suite::link_before_drift(&store).await;
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(dir.path().join("meta.db")))
        .await
        .unwrap();
    sqlx::query("UPDATE namespace_quotas SET storage_bytes = $1 WHERE namespace = $2")
        .bind(suite::DRIFTED_USAGE as i64)
        .bind(suite::DRIFT_NAMESPACE)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    suite::a_recount_reports_and_fixes_drift(&store).await;
    let kinds = inspect(
        &dir.path().join("meta.db"),
        "SELECT kind FROM events WHERE kind = 'quota.recomputed'",
    )
    .await;
    assert_eq!(kinds.len(), 1);
}

/// Images indexed before package keys were kept are found until their keys
/// are recorded; see `berth_meta::suite::advisor`.
#[tokio::test]
async fn images_without_package_keys_are_listed_until_recorded() {
    let (_dir, store) = fresh_store().await;
    berth_meta::suite::advisor::images_without_package_keys_are_listed_until_recorded(&store).await;
}
