//! SQLite's process-wide settings, which the store sets before its first
//! connection. They hold only if nothing in the process used SQLite first,
//! so this test binary holds this one test and nothing else.

use berth_meta::sqlite::SqliteMetaStore;
use berth_meta::BlobLinkStore;
use berth_oci::{Algorithm, RepoName};

#[tokio::test]
async fn sqlite_keeps_no_memory_statistics_in_a_process_that_opened_a_store() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The file store: its migrations run through sqlx's connection first,
    // which would initialize SQLite with the statistics on.
    let store = SqliteMetaStore::open(&dir.path().join("meta.db"))
        .await
        .expect("a new database opens");
    let repository = RepoName::parse("team/app").expect("a repository name");
    let change = berth_meta::Change::new(berth_meta::Actor::system("test"), 1);
    for index in 0..50u64 {
        let digest = Algorithm::Sha256.digest_of(&index.to_be_bytes());
        store
            .link_blob(&change, &repository, &digest, index)
            .await
            .expect("a blob is linked");
    }
    // With the statistics on, SQLite counts every allocation under one
    // process-wide mutex, and a store that linked blobs has allocated
    // plenty: this reads 100 KiB and more then.
    // SAFETY: reading SQLite's counter takes no pointer of ours.
    let counted = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    assert_eq!(counted, 0, "SQLite counts its memory (statistics on)");
    store.close().await;
}
