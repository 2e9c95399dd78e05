//! The shared `MetaStore` suite against SQLite database files, plus what only
//! SQLite has: reopening a file, and the connection settings.

use std::path::Path;

use berth_meta::sqlite::SqliteMetaStore;
use berth_meta::{ManifestRecord, MetaError, MetaStore, NewManifest, UploadRecord};
use berth_oci::{Algorithm, RepoName, Tag};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tempfile::TempDir;

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
    let repo = RepoName::parse("reopen/app").unwrap();
    let latest = Tag::parse("latest").unwrap();
    let layer = Algorithm::Sha256.digest_of(b"reopen layer");
    let payload = b"reopen manifest".to_vec();
    let manifest = NewManifest {
        record: ManifestRecord {
            digest: Algorithm::Sha256.digest_of(&payload),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
            artifact_type: None,
            subject: None,
            annotations: None,
            payload,
        },
        blobs: vec![layer.clone()],
        blob_sizes: Vec::new(),
        children: Vec::new(),
    };
    let upload = UploadRecord {
        id: "reopen-upload".to_string(),
        repository: repo.clone(),
        created_at: 1,
        updated_at: 2,
        progress: "{}".to_string(),
        principal: None,
    };

    let store = SqliteMetaStore::open(&path).await.unwrap();
    store.link_blob(&repo, &layer, 12, 1).await.unwrap();
    store
        .put_manifest(&repo, &manifest, Some(&latest), 1)
        .await
        .unwrap();
    store.create_upload(&upload).await.unwrap();
    store.close().await;

    // Twice, so that a second run over an up-to-date schema is also checked.
    for _ in 0..2 {
        let store = SqliteMetaStore::open(&path).await.unwrap();
        assert_eq!(
            store.linked_blob_size(&repo, &layer).await.unwrap(),
            Some(12)
        );
        assert_eq!(
            store.manifest_by_tag(&repo, &latest).await.unwrap(),
            Some(manifest.record.clone())
        );
        assert_eq!(
            store.get_upload(&repo, &upload.id).await.unwrap(),
            Some(upload.clone())
        );
        assert_eq!(
            store.list_repositories(None, 10).await.unwrap(),
            vec![repo.clone()]
        );
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
    first.link_blob(&repo, &blob, 3, 1).await.unwrap();
    assert_eq!(
        second.linked_blob_size(&repo, &blob).await.unwrap(),
        Some(3)
    );
    assert!(second.unlink_blob(&repo, &blob, 1).await.unwrap());
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

berth_meta::auth_store_tests!(fresh_store);

#[tokio::test]
async fn whole_auth_suite_shares_one_file_store() {
    let (_dir, store) = fresh_store().await;
    berth_meta::auth_suite::run_all(&store).await;
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
    store.link_blob(&repo, &blob, 4, 1).await.unwrap();

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
    let refused = store.link_blob(&repo, &other, 5, 2).await;
    assert!(
        matches!(refused, Err(MetaError::Unavailable(_))),
        "got {refused:?}"
    );
    assert_eq!(store.linked_blob_size(&repo, &blob).await.unwrap(), Some(4));
    let ready = store.check_ready().await;
    assert!(
        matches!(ready, Err(MetaError::Unavailable(_))),
        "got {ready:?}"
    );

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    store.check_ready().await.unwrap();
    store.link_blob(&repo, &other, 5, 3).await.unwrap();
    assert_eq!(
        store.linked_blob_size(&repo, &other).await.unwrap(),
        Some(5)
    );
}
