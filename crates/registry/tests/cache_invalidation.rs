//! Node caches across nodes: two registries on one PostgreSQL database and
//! one blob store, each caching lookups (with a TTL far longer than the
//! test, so that only an invalidation can explain a fresh answer), each
//! subscribed to the database's notices of committed changes as `berth
//! serve` subscribes them. A tag moved, a manifest deleted or a blob
//! deleted through one node is seen through the other as soon as the call
//! that made the change has returned: the changing node waits until the
//! other has acted on the change's notice.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_meta::postgres::PostgresMetaStore;
use berth_registry::{Registry, RegistryConfig, RegistryError};
use berth_storage::fs::FsBlobStore;
use support::{actor, repo, tag, try_push_image};
use tokio_util::sync::CancellationToken;

/// How long the nodes may take to subscribe. The test waits only as long as
/// it takes; this bound only turns a subscription that never comes into a
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
    eventually("both nodes subscribed", || async {
        a.registry.hears_other_nodes() && b.registry.hears_other_nodes()
    })
    .await;

    let repository = repo("team/app");
    let latest = tag("latest");
    let first = try_push_image(&a.registry, &repository, &latest, "one", &[b"layer one"])
        .await
        .unwrap();
    // B learns the tag; its cache holds it from the first read on.
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
    let seen = b.registry.get_manifest(&repository, &latest).await.unwrap();
    assert_eq!(
        seen.digest, second.digest,
        "a tag moved through another node"
    );

    // The tag is deleted through A: B answers unknown.
    a.registry
        .delete_manifest(&actor(), &repository, &latest)
        .await
        .unwrap();
    assert!(
        matches!(
            b.registry.get_manifest(&repository, &latest).await,
            Err(RegistryError::ManifestUnknown)
        ),
        "a tag deleted through another node"
    );

    // A blob unlinked through A is unknown through B.
    a.registry
        .delete_blob(&actor(), &repository, &first.blobs[1])
        .await
        .unwrap();
    assert!(
        matches!(
            b.registry.blob_size(&repository, &first.blobs[1]).await,
            Err(RegistryError::BlobUnknown)
        ),
        "a blob deleted through another node"
    );
    cancel.cancel();
}
