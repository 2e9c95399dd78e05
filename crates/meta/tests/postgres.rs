//! The shared suites against a real
//! PostgreSQL that the tests start themselves (see `berth_test_support::postgres`),
//! plus what only a server database has: several nodes migrating, working
//! and storing their first signing key on one database.
//!
//! Without PostgreSQL installed these tests record a loud skip, except under
//! `CI=true`, where they fail.

use berth_meta::auth::SigningKeyRow;
use berth_meta::postgres::PostgresMetaStore;
use berth_meta::sqlite::SqliteMetaStore;
use berth_meta::{
    BlobLinkStore, EventCursor, EventStore, JobLeaseStore, ManifestStore, MetaError,
    PullStatsStore, SigningKeyStore, UploadRecord, UploadStore,
};
use berth_oci::{Algorithm, RepoName};
use berth_test_support::postgres::{fresh_database, TestDatabase};
use sqlx::{Connection, PgConnection};

/// A change made by the test at `time`.
fn at(time: i64) -> berth_meta::Change {
    berth_meta::Change::new(berth_meta::Actor::system("test"), time)
}

/// A new, empty database with a store connected to it (and so migrated).
async fn fresh_store(test: &str) -> Option<(TestDatabase, PostgresMetaStore)> {
    let database = fresh_database(test).await?;
    let store = PostgresMetaStore::connect(&database.url)
        .await
        .expect("connecting to a new database");
    Some((database, store))
}

berth_meta::meta_store_tests!(skippable fresh_store);

#[tokio::test]
async fn the_default_storage_limit_applies_to_links_and_manifests() {
    let Some((_database, store)) = fresh_store("default_storage_limit").await else {
        return;
    };
    let store = store.with_default_storage_limit(Some(100));
    berth_meta::suite::quotas::the_default_storage_limit_applies_to_links_and_manifests(&store)
        .await;
}

/// Runs a query returning one text column on a plain connection, to see
/// what the store cannot show.
async fn inspect(url: &str, sql: &str) -> Vec<String> {
    let mut connection = PgConnection::connect(url)
        .await
        .expect("connecting for inspection");
    let values: Vec<String> = sqlx::query_scalar(sql)
        .fetch_all(&mut connection)
        .await
        .expect("the inspection query runs");
    connection.close().await.ok();
    values
}

fn applied_versions_expected() -> Vec<String> {
    berth_meta::postgres::MIGRATIONS
        .iter()
        .map(|(version, _, _)| version.to_string())
        .collect()
}

const APPLIED_VERSIONS: &str =
    "SELECT version::TEXT FROM _sqlx_migrations WHERE success ORDER BY _sqlx_migrations.version";

#[tokio::test]
async fn whole_suite_shares_one_database() {
    let Some((_database, store)) = fresh_store("whole_suite_shares_one_database").await else {
        return;
    };
    berth_meta::suite::run_all(&store).await;
}

#[tokio::test]
async fn nodes_starting_together_agree_on_one_signing_key() {
    const NODES: usize = 4;
    let test = "nodes_starting_together_agree_on_one_signing_key";
    let Some(database) = fresh_database(test).await else {
        return;
    };
    // Separate stores, each with its own pool, as separate nodes have: each
    // offers the key it generated, at the same moment.
    let connects = (0..NODES).map(|_| PostgresMetaStore::connect(&database.url));
    let stores: Vec<PostgresMetaStore> = futures::future::join_all(connects)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let keys: Vec<SigningKeyRow> = (0..NODES)
        .map(|node| SigningKeyRow {
            kid: format!("node-{node}"),
            private_key_pem: Some(format!("private key of node {node}")),
            public_key_pem: format!("public key of node {node}"),
            created_at: 1_700_000_000,
            retired_at: None,
        })
        .collect();
    let stored: Vec<bool> = futures::future::join_all(
        stores
            .iter()
            .zip(&keys)
            .map(|(store, key)| store.insert_first_signing_key(key)),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    assert_eq!(stored.iter().filter(|s| **s).count(), 1, "{stored:?}");
    let winner = &keys[stored.iter().position(|s| *s).unwrap()];
    for store in &stores {
        assert_eq!(
            store.list_signing_keys().await.unwrap(),
            vec![winner.clone()]
        );
        store.close().await;
    }
}

#[tokio::test]
async fn nodes_starting_together_on_a_fresh_database_all_migrate_it_once() {
    const NODES: usize = 4;
    let test = "nodes_starting_together_on_a_fresh_database_all_migrate_it_once";
    let Some(database) = fresh_database(test).await else {
        return;
    };
    // Several nodes of one deployment start at the same moment against an
    // empty database; without the migrator's advisory lock they would race
    // to create the same tables and all but one would fail.
    let connects = (0..NODES).map(|_| PostgresMetaStore::connect(&database.url));
    let stores: Vec<PostgresMetaStore> = futures::future::join_all(connects)
        .await
        .into_iter()
        .enumerate()
        .map(|(node, result)| result.unwrap_or_else(|error| panic!("node {node}: {error}")))
        .collect();
    assert_eq!(
        inspect(&database.url, APPLIED_VERSIONS).await,
        applied_versions_expected()
    );
    // Every node works on the schema, and sees what the others wrote.
    let repo = RepoName::parse("racing/app").unwrap();
    for (node, store) in stores.iter().enumerate() {
        let blob = Algorithm::Sha256.digest_of(format!("node {node}").as_bytes());
        store.link_blob(&at(1), &repo, &blob, 1).await.unwrap();
    }
    for (node, store) in stores.iter().enumerate() {
        let blob = Algorithm::Sha256.digest_of(format!("node {node}").as_bytes());
        let reader = &stores[(node + 1) % NODES];
        assert_eq!(
            reader.linked_blob_size(&repo, &blob).await.unwrap(),
            Some(1)
        );
        let holder = format!("node {node}");
        let taken = store
            .acquire_job_lease("purge", &holder, 1, 60)
            .await
            .unwrap();
        assert_eq!(taken, node == 0, "only the first node runs the purge");
    }
    for store in &stores {
        store.close().await;
    }
}

#[tokio::test]
async fn reconnecting_keeps_data_and_applies_migrations_once() {
    let test = "reconnecting_keeps_data_and_applies_migrations_once";
    let Some(database) = fresh_database(test).await else {
        return;
    };
    let rows = berth_meta::suite::upgrade::Reopened::default();
    let store = PostgresMetaStore::connect(&database.url).await.unwrap();
    rows.write(&store).await;
    store.close().await;

    // Twice, so that a second run over an up-to-date schema is also checked.
    for _ in 0..2 {
        let store = PostgresMetaStore::connect(&database.url).await.unwrap();
        rows.check(&store).await;
        store.close().await;
    }
    assert_eq!(
        inspect(&database.url, APPLIED_VERSIONS).await,
        applied_versions_expected()
    );
}

#[tokio::test]
async fn two_nodes_on_one_database_share_writes_and_leases() {
    let test = "two_nodes_on_one_database_share_writes_and_leases";
    let Some((database, first)) = fresh_store(test).await else {
        return;
    };
    let second = PostgresMetaStore::connect(&database.url).await.unwrap();
    let repo = RepoName::parse("shared/app").unwrap();
    let blob = Algorithm::Sha256.digest_of(b"shared blob");
    first.link_blob(&at(1), &repo, &blob, 3).await.unwrap();
    assert_eq!(
        second.linked_blob_size(&repo, &blob).await.unwrap(),
        Some(3)
    );
    assert!(second.unlink_blob(&at(1), &repo, &blob).await.unwrap());
    assert_eq!(first.linked_blob_size(&repo, &blob).await.unwrap(), None);

    // An upload started through one node is locked against the other.
    let upload = UploadRecord {
        id: "shared-upload".to_string(),
        repository: repo.clone(),
        created_at: 10,
        updated_at: 10,
        progress: "{}".to_string(),
        principal: None,
    };
    first.create_upload(&at(1), &upload).await.unwrap();
    first
        .lock_upload(&repo, &upload.id, "node-1", 10, 30)
        .await
        .unwrap();
    assert!(matches!(
        second
            .lock_upload(&repo, &upload.id, "node-2", 11, 30)
            .await,
        Err(MetaError::UploadBusy)
    ));
    first
        .update_upload(&upload.id, "node-1", "chunk 1", 12)
        .await
        .unwrap();
    let record = second
        .lock_upload(&repo, &upload.id, "node-2", 13, 30)
        .await
        .unwrap();
    assert_eq!(record.progress, "chunk 1");

    // The purge job runs on one node at a time.
    assert!(first
        .acquire_job_lease("purge", "node-1", 20, 60)
        .await
        .unwrap());
    assert!(!second
        .acquire_job_lease("purge", "node-2", 21, 60)
        .await
        .unwrap());
    first.release_job_lease("purge", "node-1").await.unwrap();
    assert!(second
        .acquire_job_lease("purge", "node-2", 22, 60)
        .await
        .unwrap());
}

#[tokio::test]
async fn the_test_cluster_does_not_sort_in_byte_order_by_default() {
    // The suite's ordering tests only prove the schema's COLLATE "C" if the
    // server's own default would order differently, as a linguistic
    // collation does: it puts 'a' before 'B', byte order puts 'B' first.
    let test = "the_test_cluster_does_not_sort_in_byte_order_by_default";
    let Some(database) = fresh_database(test).await else {
        return;
    };
    let order = inspect(
        &database.url,
        "SELECT ('a' < 'B')::TEXT UNION ALL SELECT ('a' < 'B' COLLATE \"C\")::TEXT",
    )
    .await;
    assert_eq!(order, vec!["true".to_string(), "false".to_string()]);
}

#[tokio::test]
async fn the_schema_has_the_same_tables_and_columns_as_sqlite() {
    let test = "the_schema_has_the_same_tables_and_columns_as_sqlite";
    let Some((database, _store)) = fresh_store(test).await else {
        return;
    };
    let mut postgres = inspect(
        &database.url,
        "SELECT table_name || '.' || column_name FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .await;
    // The one column only PostgreSQL needs: the writing transaction's id,
    // which orders the event stream where commits do not follow positions
    // (crates/meta/src/events.rs).
    postgres.retain(|column| column != "events.xid");
    postgres.sort();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    SqliteMetaStore::open(&path).await.unwrap().close().await;
    let mut sqlite = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mut sqlite_columns: Vec<String> = sqlx::query_scalar(
        "SELECT m.name || '.' || p.name FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT IN ('_sqlx_migrations', 'sqlite_sequence')",
    )
    .fetch_all(&mut sqlite)
    .await
    .unwrap();
    sqlite.close().await.unwrap();
    sqlite_columns.sort();

    assert_eq!(postgres, sqlite_columns);
    assert_eq!(
        berth_meta::postgres::MIGRATIONS
            .iter()
            .map(|(version, description, _)| (version, description))
            .collect::<Vec<_>>(),
        berth_meta::sqlite::MIGRATIONS
            .iter()
            .map(|(version, description, _)| (version, description))
            .collect::<Vec<_>>(),
        "both backends number their migrations alike"
    );
}

#[tokio::test]
async fn connecting_to_a_missing_database_is_an_error() {
    let test = "connecting_to_a_missing_database_is_an_error";
    let Some(database) = fresh_database(test).await else {
        return;
    };
    let url = database.lease.url("berth_no_such_database");
    let result = PostgresMetaStore::connect(&url).await;
    assert!(
        matches!(result, Err(MetaError::Database(_))),
        "got {result:?}"
    );
    let result = PostgresMetaStore::connect("postgres://[not a url").await;
    assert!(
        matches!(result, Err(MetaError::Database(_))),
        "got {result:?}"
    );
}

/// Begins a transaction on its own connection that writes a change and then
/// its event, as the store's writers do, and keeps it open: a writer that
/// took its position first and commits last. Returns the connection and the
/// position it took.
async fn open_writer(url: &str, job: &str) -> (PgConnection, i64) {
    let mut connection = PgConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
    // The change comes first, so the transaction has its id before it takes
    // a position (crates/meta/src/events.rs).
    sqlx::query("INSERT INTO job_leases (job, holder, expires_at) VALUES ($1, 'slow', 0)")
        .bind(job)
        .execute(&mut connection)
        .await
        .unwrap();
    let position: i64 = sqlx::query_scalar(
        "INSERT INTO events (xid, at, kind, actor_kind, detail) \
         VALUES (pg_current_xact_id_if_assigned(), 1, 'user.created', 'system', '{}') \
         RETURNING position",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    (connection, position)
}

/// The positions of a page's ordered events and of its pending ones.
fn positions(page: &berth_meta::EventPage) -> (Vec<i64>, Vec<i64>) {
    (
        page.events.iter().map(|e| e.position).collect(),
        page.pending.iter().map(|e| e.position).collect(),
    )
}

#[tokio::test]
async fn a_reader_never_skips_an_earlier_event_that_commits_late() {
    let test = "a_reader_never_skips_an_earlier_event_that_commits_late";
    let Some((database, store)) = fresh_store(test).await else {
        return;
    };
    let repo = RepoName::parse("late/app").unwrap();
    let start = store.last_event_position().await.unwrap();

    // The earlier writer takes its position, a later one commits first.
    let (mut slow, early) = open_writer(&database.url, "slow-1").await;
    let blob = Algorithm::Sha256.digest_of(b"late blob");
    store.link_blob(&at(5), &repo, &blob, 1).await.unwrap();
    let later = store.last_event_position().await.unwrap();
    assert!(later > early);

    // The reader sees the later events but hands none of them out: the
    // earlier position may still commit. Reading again changes nothing
    // while that transaction runs.
    let mut cursor = EventCursor::after(start);
    for _ in 0..3 {
        let page = store.read_events(&cursor, 100).await.unwrap();
        let (events, pending) = positions(&page);
        assert_eq!(events, Vec::<i64>::new());
        assert_eq!(pending.last(), Some(&later));
        assert!(!pending.contains(&early));
        cursor = page.next;
    }

    // It commits: everything comes, in position order.
    sqlx::query("COMMIT").execute(&mut slow).await.unwrap();
    let mut page = store.read_events(&cursor, 100).await.unwrap();
    // As below: another test's open transaction may hold the page back.
    for _ in 0..200 {
        if positions(&page).0.last() == Some(&later) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        page = store.read_events(&cursor, 100).await.unwrap();
    }
    let (events, pending) = positions(&page);
    assert_eq!(events.first(), Some(&early));
    assert_eq!(events.last(), Some(&later));
    assert!(events.windows(2).all(|w| w[0] < w[1]));
    assert!(pending.is_empty());
    cursor = page.next;

    // A writer that rolls back leaves a hole the reader moves past once the
    // transactions it saw running have ended, and not before.
    let (mut doomed, hole) = open_writer(&database.url, "slow-2").await;
    let other = Algorithm::Sha256.digest_of(b"after the hole");
    store.link_blob(&at(6), &repo, &other, 1).await.unwrap();
    let after_hole = store.last_event_position().await.unwrap();
    let page = store.read_events(&cursor, 100).await.unwrap();
    assert_eq!(positions(&page).0, Vec::<i64>::new());
    cursor = page.next;
    sqlx::query("ROLLBACK").execute(&mut doomed).await.unwrap();
    // Transaction ids are cluster-wide, so a transaction another test holds
    // open on the same server can delay the move past the hole: read until
    // it comes, within a bound.
    let mut delivered = Vec::new();
    for _ in 0..200 {
        let page = store.read_events(&cursor, 100).await.unwrap();
        delivered.extend(positions(&page).0);
        cursor = page.next;
        if delivered.last() == Some(&after_hole) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!delivered.contains(&hole));
    assert_eq!(delivered.last(), Some(&after_hole));
    assert!(delivered.iter().all(|p| *p > hole));

    // An event insert in a transaction that has written nothing is refused:
    // its position could come before its transaction id.
    let mut careless = PgConnection::connect(&database.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut careless).await.unwrap();
    let refused = sqlx::query(
        "INSERT INTO events (xid, at, kind, actor_kind, detail) \
         VALUES (pg_current_xact_id_if_assigned(), 1, 'user.created', 'system', '{}')",
    )
    .execute(&mut careless)
    .await;
    assert!(refused.is_err(), "{refused:?}");
    careless.close().await.ok();
    slow.close().await.ok();
    doomed.close().await.ok();
    store.close().await;
}

/// A database written by the released schema (migrations 0001–0006) opens
/// with this code and loses nothing; see `berth_meta::suite::upgrade`.
#[tokio::test]
async fn a_database_of_the_released_schema_upgrades_without_loss() {
    use berth_meta::suite::upgrade::{old_rows, old_rows_survive, RELEASED_SCHEMA};

    let test = "a_database_of_the_released_schema_upgrades_without_loss";
    let Some(database) = fresh_database(test).await else {
        return;
    };
    let hex = |bytes: &[u8]| -> String {
        let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("'\\x{digits}'::BYTEA")
    };
    database_at(&database.url, RELEASED_SCHEMA, old_rows(hex)).await;
    let store = PostgresMetaStore::connect(&database.url).await.unwrap();
    old_rows_survive(&store).await;
}

/// A database whose advisories were imported before migration 0032 kept
/// their count reads the count the migration made and moves it on.
#[tokio::test]
async fn advisories_imported_before_the_count_was_kept_are_counted() {
    use berth_meta::suite::upgrade::{
        advisories_are_counted, advisories_before_count, BEFORE_ADVISORY_COUNT,
    };

    let test = "advisories_imported_before_the_count_was_kept_are_counted";
    let Some(database) = fresh_database(test).await else {
        return;
    };
    database_at(
        &database.url,
        BEFORE_ADVISORY_COUNT,
        advisories_before_count(),
    )
    .await;
    let store = PostgresMetaStore::connect(&database.url).await.unwrap();
    advisories_are_counted(&store).await;
}

/// Brings the database at `url` to `version` of the embedded migrations
/// alone, then runs `statements` on it, as code of that version would have
/// written them.
async fn database_at(url: &str, version: i64, statements: Vec<String>) {
    use berth_meta::sql::EmbeddedMigrations;
    use sqlx::migrate::Migrator;

    let last = berth_meta::postgres::MIGRATIONS
        .iter()
        .position(|(number, _, _)| *number == version)
        .unwrap();
    let mut connection = PgConnection::connect(url).await.unwrap();
    Migrator::new(EmbeddedMigrations(
        &berth_meta::postgres::MIGRATIONS[..=last],
    ))
    .await
    .unwrap()
    .run(&mut connection)
    .await
    .unwrap();
    for statement in statements {
        sqlx::query(&statement)
            .execute(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    connection.close().await.unwrap();
}

/// Two nodes' pools on one database racing links into one namespace never
/// take it beyond its storage limit: the usage row's lock makes them decide
/// one after the other.
#[tokio::test]
async fn racing_links_through_two_pools_never_exceed_the_storage_limit() {
    let Some((database, a)) =
        fresh_store("racing_links_through_two_pools_never_exceed_the_storage_limit").await
    else {
        return;
    };
    let b = PostgresMetaStore::connect(&database.url).await.unwrap();
    berth_meta::suite::quotas::racing_links_never_exceed_the_limit(&a, &b).await;
}

/// Usage changed behind the store's back (by hand, here) is reported by a
/// recount with both figures, corrected, and written as an event; a second
/// recount finds nothing.
#[tokio::test]
async fn a_recount_reports_and_fixes_usage_drift() {
    use berth_meta::suite::quotas as suite;
    let Some((database, store)) = fresh_store("a_recount_reports_and_fixes_usage_drift").await
    else {
        return;
    };
    suite::link_before_drift(&store).await;
    let mut connection = PgConnection::connect(&database.url).await.unwrap();
    sqlx::query("UPDATE namespace_quotas SET storage_bytes = $1 WHERE namespace = $2")
        .bind(suite::DRIFTED_USAGE as i64)
        .bind(suite::DRIFT_NAMESPACE)
        .execute(&mut connection)
        .await
        .unwrap();
    connection.close().await.ok();
    suite::a_recount_reports_and_fixes_drift(&store).await;
    let kinds = inspect(
        &database.url,
        "SELECT kind FROM events WHERE kind = 'quota.recomputed'",
    )
    .await;
    assert_eq!(kinds.len(), 1);
}

/// Images indexed before package keys were kept are found until their keys
/// are recorded; see `berth_meta::suite::advisor`.
#[tokio::test]
async fn images_without_package_keys_are_listed_until_recorded() {
    let Some((_database, store)) =
        fresh_store("images_without_package_keys_are_listed_until_recorded").await
    else {
        return;
    };
    berth_meta::suite::advisor::images_without_package_keys_are_listed_until_recorded(&store).await;
}

/// A flush of pull statistics and a push moving a tag onto a stored
/// manifest take the manifest's row and its repository's in one order, so
/// neither deadlocks the other. The two-node conformance run found the
/// push failing with "deadlock detected" when the flush took the
/// repository's row first.
#[tokio::test]
async fn pull_statistics_and_a_tag_push_take_rows_in_one_order() {
    let Some((database, store)) = fresh_store("pulls_and_tag_pushes").await else {
        return;
    };
    let store = std::sync::Arc::new(store);
    let repo = RepoName::parse("lock-order/app").unwrap();
    let payload = br#"{"schemaVersion":2,"lock-order":true}"#.to_vec();
    let digest = Algorithm::Sha256.digest_of(&payload);
    let manifest = berth_meta::NewManifest {
        record: berth_meta::ManifestRecord {
            digest: digest.clone(),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
            artifact_type: None,
            subject: None,
            annotations: None,
            payload,
        },
        blobs: Vec::new(),
        blob_sizes: Vec::new(),
        children: Vec::new(),
    };
    store
        .put_manifest(&at(1), &repo, &manifest, None)
        .await
        .unwrap();

    // The push as it runs on PostgreSQL: the stored manifest's row held
    // `FOR SHARE` (`lock_manifest_state`), later the repository's row
    // updated by the trigger on the new tag.
    let mut push = PgConnection::connect(&database.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut push).await.unwrap();
    sqlx::query(
        "SELECT 1 FROM manifests m JOIN repositories r ON r.id = m.repository_id \
         WHERE r.name = $1 AND m.digest = $2 FOR SHARE OF m",
    )
    .bind(repo.as_str())
    .bind(digest.as_str())
    .execute(&mut push)
    .await
    .unwrap();
    let flush = tokio::spawn({
        let store = store.clone();
        let pull = berth_meta::PullCount {
            repository: repo.clone(),
            digest: digest.clone(),
            pulls: 1,
            last_pulled_at: 2,
            actor: berth_meta::Actor::system("test"),
            warning: None,
        };
        async move { store.record_pulls(&[pull], false).await }
    });
    // Until the flush waits for a row the push holds.
    let mut waited = 0;
    while inspect(
        &database.url,
        "SELECT COUNT(*)::TEXT FROM pg_stat_activity \
         WHERE wait_event_type = 'Lock' AND datname = current_database()",
    )
    .await
        == ["0"]
    {
        waited += 1;
        assert!(waited < 500, "the flush never waited for the push's lock");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    sqlx::query("UPDATE repositories SET tag_count = tag_count + 1 WHERE name = $1")
        .bind(repo.as_str())
        .execute(&mut push)
        .await
        .expect("the push updates its repository without a deadlock");
    sqlx::query("COMMIT").execute(&mut push).await.unwrap();
    flush.await.unwrap().expect("the flush completes");
    assert_eq!(
        inspect(
            &database.url,
            "SELECT pull_count::TEXT FROM repositories WHERE name = 'lock-order/app'"
        )
        .await,
        ["1"]
    );
}
