//! Node caches across nodes: two registries on one PostgreSQL database and
//! one blob store, each caching lookups (with a TTL far longer than the
//! test, so that only an invalidation can explain a fresh answer), each
//! subscribed to the database's notices of committed changes as `berth
//! serve` subscribes them. A tag moved, a manifest deleted or a blob
//! deleted through one node is seen through the other without waiting for
//! the TTL.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_meta::postgres::PostgresMetaStore;
use berth_registry::{Registry, RegistryConfig, RegistryError};
use berth_storage::fs::FsBlobStore;
use support::{actor, repo, tag, try_push_image};
use tokio_util::sync::CancellationToken;

/// How long a notice may take before the test calls it lost. The test waits
/// only as long as it takes; this bound only turns a lost notice into a
/// failure instead of a hang. It is far below the cache TTL.
const NOTICE_BOUND: Duration = Duration::from_secs(10);

struct Node {
    registry: Registry,
}

async fn node(url: &str, blobs: Arc<FsBlobStore>, cancel: &CancellationToken) -> Node {
    let meta = Arc::new(PostgresMetaStore::connect(url).await.unwrap());
    let config = RegistryConfig {
        manifest_cache_ttl: Duration::from_secs(3600),
        ..support::config()
    };
    let registry = Registry::new(blobs, meta, config);
    let subscribed = registry.clone();
    let cancel = cancel.clone();
    tokio::spawn(async move { subscribed.run_cache_invalidation(cancel).await });
    Node { registry }
}

/// Waits, bounded, until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + NOTICE_BOUND;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not seen within {NOTICE_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn changes_through_one_node_reach_the_other_nodes_cache() {
    let Some(database) = berth_test_support::postgres::fresh_database("cache_invalidation").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let blobs = Arc::new(FsBlobStore::open(dir.path().join("blobs")).unwrap());
    let cancel = CancellationToken::new();
    let a = node(&database.url, blobs.clone(), &cancel).await;
    let b = node(&database.url, blobs, &cancel).await;

    let repository = repo("team/app");
    let latest = tag("latest");
    let first = try_push_image(&a.registry, &repository, &latest, "one", &[b"layer one"])
        .await
        .unwrap();
    // B learns the tag, and keeps asking until its cache is live and holds it
    // (a subscription that is not yet live serves from the database).
    for _ in 0..3 {
        let seen = b.registry.get_manifest(&repository, &latest).await.unwrap();
        assert_eq!(seen.digest, first.digest);
    }
    let size = b
        .registry
        .blob_size(&repository, &first.blobs[1])
        .await
        .unwrap();
    assert_eq!(size, b"layer one".len() as u64);

    // The tag moves through A: B sees the new image, long before its TTL.
    let second = try_push_image(&a.registry, &repository, &latest, "two", &[b"layer two"])
        .await
        .unwrap();
    eventually("a tag moved through another node", || async {
        b.registry
            .get_manifest(&repository, &latest)
            .await
            .unwrap()
            .digest
            == second.digest
    })
    .await;

    // The tag is deleted through A: B answers unknown.
    a.registry
        .delete_manifest(&actor(), &repository, &latest)
        .await
        .unwrap();
    eventually("a tag deleted through another node", || async {
        matches!(
            b.registry.get_manifest(&repository, &latest).await,
            Err(RegistryError::ManifestUnknown)
        )
    })
    .await;

    // A blob unlinked through A is unknown through B.
    a.registry
        .delete_blob(&actor(), &repository, &first.blobs[1])
        .await
        .unwrap();
    eventually("a blob deleted through another node", || async {
        matches!(
            b.registry.blob_size(&repository, &first.blobs[1]).await,
            Err(RegistryError::BlobUnknown)
        )
    })
    .await;
    cancel.cancel();
}
