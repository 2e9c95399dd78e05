//! The shared suite of [`QuotaStore`](crate::QuotaStore), and of the
//! storage check the writes that add bytes make.

use super::*;
use crate::{QuotaExceeded, QuotaUpdate, TrafficCount};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    (
        "storage_usage_counts_each_holding_once_and_follows_every_write",
        |store| Box::pin(storage_usage_counts_each_holding_once_and_follows_every_write(store)),
    ),
    (
        "writes_beyond_the_storage_limit_are_refused_and_change_nothing",
        |store| Box::pin(writes_beyond_the_storage_limit_are_refused_and_change_nothing(store)),
    ),
    ("traffic_adds_up_per_namespace_and_month", |store| {
        Box::pin(traffic_adds_up_per_namespace_and_month(store))
    }),
    (
        "refused_requests_over_a_quota_are_recorded_as_events",
        |store| Box::pin(refused_requests_over_a_quota_are_recorded_as_events(store)),
    ),
];

/// A refusal over a quota is an event of its own, as the refused caller,
/// about the namespace, with the figures.
pub async fn refused_requests_over_a_quota_are_recorded_as_events(store: &dyn MetaStore) {
    let before = store.last_event_position().await.unwrap();
    let detail = serde_json::json!({ "quota": "storage", "usage": 90, "limit": 100, "adding": 20 });
    store
        .record_quota_exceeded(
            &Change::new(crate::Actor::robot("suite-quota-ci"), NOW),
            "suite-quota-events",
            detail.clone(),
        )
        .await
        .unwrap();
    let events: Vec<_> = super::events::events_after(store, before)
        .await
        .into_iter()
        .filter(|e| e.namespace.as_deref() == Some("suite-quota-events"))
        .map(|e| (e.kind, e.actor.name, e.at, e.repository, e.detail))
        .collect();
    assert_eq!(
        events,
        vec![(
            crate::EventKind::QuotaExceeded,
            Some("suite-quota-ci".to_string()),
            NOW,
            None,
            detail
        )]
    );
}

async fn usage(store: &dyn MetaStore, namespace: &str) -> u64 {
    store
        .quota(namespace, 0)
        .await
        .unwrap()
        .expect("the namespace exists")
        .storage_bytes
}

/// Recounts usage and asserts that nothing had drifted, anywhere: every
/// write the suite has made so far kept usage exact.
pub async fn assert_no_drift(store: &dyn MetaStore) {
    let figures = store.recompute_storage(&at(NOW)).await.unwrap();
    let drifted: Vec<_> = figures.iter().filter(|d| d.recorded != d.actual).collect();
    assert!(drifted.is_empty(), "usage drifted: {drifted:?}");
}

/// A blob counts once per namespace however many repositories link it or
/// manifests reference it; a manifest counts its own bytes once; the bytes
/// leave only with the last holder; a trashed image still holds its blobs
/// until the trash expires; another namespace counts for itself; and a
/// recount agrees with the incremental figures at every step.
pub async fn storage_usage_counts_each_holding_once_and_follows_every_write(store: &dyn MetaStore) {
    let one = repository("suite-quota-usage/one");
    let two = repository("suite-quota-usage/two");
    let other = repository("suite-quota-usage-other/one");
    let (layer, config) = (
        digest_of("suite-quota-usage layer"),
        digest_of("suite-quota-usage config"),
    );
    link(store, &one, &layer, 1000).await;
    link(store, &one, &config, 10).await;
    link(store, &two, &layer, 1000).await;
    link(store, &two, &config, 10).await;
    link(store, &other, &layer, 1000).await;
    assert_eq!(usage(store, "suite-quota-usage").await, 1010);
    assert_eq!(usage(store, "suite-quota-usage-other").await, 1000);

    let manifest = image("suite-quota-usage image", &[&layer, &config]);
    let manifest_size = manifest.record.payload.len() as u64;
    put(store, &one, &manifest, Some(&tag("v1"))).await;
    // The same manifest in a second repository adds nothing more.
    put(store, &two, &manifest, None).await;
    assert_eq!(
        usage(store, "suite-quota-usage").await,
        1010 + manifest_size
    );
    assert_no_drift(store).await;

    // Unlinked from `one`, the layer is still referenced by its manifest
    // there and linked in `two`.
    assert!(store.unlink_blob(&at(NOW), &one, &layer).await.unwrap());
    assert!(store.unlink_blob(&at(NOW), &two, &layer).await.unwrap());
    assert!(store.unlink_blob(&at(NOW), &two, &config).await.unwrap());
    assert_eq!(
        usage(store, "suite-quota-usage").await,
        1010 + manifest_size
    );

    // In the trash, the image still holds everything.
    delete(store, &two, &manifest.record.digest).await;
    store
        .trash_manifest(&at(NOW), &one, &manifest.record.digest, true)
        .await
        .unwrap()
        .expect("the manifest was stored");
    assert_eq!(
        usage(store, "suite-quota-usage").await,
        1010 + manifest_size
    );
    assert_no_drift(store).await;

    // Expired, the manifest's bytes and its layer (no longer linked
    // anywhere in the namespace) go; the config is still linked.
    store
        .expire_trash(&at(NOW + 1), &one, &manifest.record.digest, NOW + 1)
        .await
        .unwrap()
        .expect("the entry expires");
    assert_eq!(usage(store, "suite-quota-usage").await, 10);
    assert!(store.unlink_blob(&at(NOW), &one, &config).await.unwrap());
    assert_eq!(usage(store, "suite-quota-usage").await, 0);
    assert_eq!(usage(store, "suite-quota-usage-other").await, 1000);
    assert!(store.unlink_blob(&at(NOW), &other, &layer).await.unwrap());
    assert_eq!(usage(store, "suite-quota-usage-other").await, 0);
    assert_no_drift(store).await;
    assert_clean(store, &one, &[&manifest.record.digest]).await;
}

/// With a limit (the namespace's own), a link or a manifest that would add
/// bytes beyond it is refused with the usage, the limit and what it would
/// add, and changes nothing; holding again what the namespace already holds
/// adds nothing and passes even at the limit; limits are set, reported,
/// returned to the default, and written as `quota.set` events.
pub async fn writes_beyond_the_storage_limit_are_refused_and_change_nothing(store: &dyn MetaStore) {
    let ns = "suite-quota-limit";
    let one = repository("suite-quota-limit/one");
    let two = repository("suite-quota-limit/two");
    let (small, big) = (
        digest_of("suite-quota-limit small"),
        digest_of("suite-quota-limit big"),
    );
    link(store, &one, &small, 60).await;
    assert!(matches!(
        store
            .set_quota(&at(NOW), "suite-quota-nowhere", &QuotaUpdate::default(), 0)
            .await,
        Err(MetaError::NotFound)
    ));
    let position = store.last_event_position().await.unwrap();
    let set = store
        .set_quota(
            &at(NOW),
            ns,
            &QuotaUpdate {
                storage_limit: Some(Some(100)),
                traffic_limit: Some(Some(5000)),
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        (set.storage_bytes, set.storage_limit, set.traffic_limit),
        (60, Some(100), Some(5000))
    );

    let refused = store.link_blob(&at(NOW), &one, &big, 41).await;
    let expected = QuotaExceeded {
        namespace: ns.to_string(),
        usage: 60,
        limit: 100,
        adding: 41,
    };
    match refused {
        Err(MetaError::QuotaExceeded(exceeded)) => assert_eq!(*exceeded, expected),
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(store.linked_blob_size(&one, &big).await.unwrap(), None);
    // Up to the limit exactly is allowed.
    link(store, &one, &big, 40).await;
    assert_eq!(usage(store, ns).await, 100);
    // The namespace already holds `small`: linking it elsewhere adds
    // nothing and passes at the limit.
    link(store, &two, &small, 60).await;
    let manifest = image("suite-quota-limit image", &[&small]);
    match store
        .put_manifest(&at(NOW), &two, &manifest, Some(&tag("v1")))
        .await
    {
        Err(MetaError::QuotaExceeded(exceeded)) => {
            assert_eq!(exceeded.usage, 100);
            assert_eq!(exceeded.adding, manifest.record.payload.len() as u64);
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(list_tags(store, &two).await, Some(Vec::new()));
    assert_eq!(usage(store, ns).await, 100);

    // Back to the default (unlimited here): the manifest goes in.
    let cleared = store
        .set_quota(
            &at(NOW),
            ns,
            &QuotaUpdate {
                storage_limit: Some(None),
                traffic_limit: None,
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        (cleared.storage_limit, cleared.traffic_limit),
        (None, Some(5000))
    );
    put(store, &two, &manifest, Some(&tag("v1"))).await;
    assert_eq!(
        usage(store, ns).await,
        100 + manifest.record.payload.len() as u64
    );
    let listed = store
        .list_quotas(Some("suite-quota-limia"), 1, 0)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].namespace, ns);

    let events = super::events::events_after(store, position)
        .await
        .into_iter()
        .filter(|e| e.kind == crate::EventKind::QuotaSet)
        .collect::<Vec<_>>();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].namespace.as_deref(), Some(ns));
    assert_eq!(events[1].detail["storage_limit"], serde_json::Value::Null);
    assert_eq!(events[1].detail["previous"]["storage_limit"], 100);

    delete(store, &two, &manifest.record.digest).await;
    for (repo, digest) in [(&one, &small), (&one, &big), (&two, &small)] {
        assert!(store.unlink_blob(&at(NOW), repo, digest).await.unwrap());
    }
    assert_eq!(usage(store, ns).await, 0);
    assert_clean(store, &two, &[&manifest.record.digest]).await;
}

/// Traffic batches (as several nodes flush them, overlapping) add up per
/// namespace and month; months stay apart; counts for a namespace that
/// does not exist are dropped; the traffic listing shows namespaces that
/// served bytes or have a limit.
pub async fn traffic_adds_up_per_namespace_and_month(store: &dyn MetaStore) {
    let repo = repository("suite-quota-traffic/one");
    link(store, &repo, &digest_of("suite-quota-traffic"), 1).await;
    let (march, april) = (1_709_251_200, 1_711_929_600);
    let count = |namespace: &str, month, bytes| TrafficCount {
        namespace: namespace.to_string(),
        month,
        day: month,
        bytes,
    };
    store
        .record_traffic(&[
            count("suite-quota-traffic", march, 100),
            count("suite-quota-traffic", april, 7),
            count("suite-quota-traffic", march, 5),
        ])
        .await
        .unwrap();
    store
        .record_traffic(&[
            count("suite-quota-traffic", march, 20),
            count("suite-quota-traffic-missing", march, 1000),
        ])
        .await
        .unwrap();
    store.record_traffic(&[]).await.unwrap();
    let row = |rows: Vec<crate::TrafficRow>| {
        rows.into_iter()
            .find(|r| r.namespace == "suite-quota-traffic")
            .map(|r| (r.bytes, r.limit))
    };
    assert_eq!(row(store.traffic(march).await.unwrap()), Some((125, None)));
    assert_eq!(row(store.traffic(april).await.unwrap()), Some((7, None)));
    assert_eq!(row(store.traffic(0).await.unwrap()), None);
    assert_eq!(
        store
            .quota("suite-quota-traffic", march)
            .await
            .unwrap()
            .map(|q| q.traffic_bytes),
        Some(125)
    );
    assert!(store
        .traffic(march)
        .await
        .unwrap()
        .iter()
        .all(|r| r.namespace != "suite-quota-traffic-missing"));
}

/// Many writers linking distinct blobs into one namespace at once, half
/// through `a` and half through `b` (two nodes' pools on one database),
/// never take usage beyond the limit: exactly as many fit as the limit
/// allows, the rest are refused, and usage equals a recount.
pub async fn racing_links_never_exceed_the_limit(a: &dyn MetaStore, b: &dyn MetaStore) {
    let ns = "suite-quota-race";
    let repo = repository("suite-quota-race/one");
    link(a, &repo, &digest_of("suite-quota-race seed"), 1).await;
    a.set_quota(
        &at(NOW),
        ns,
        &QuotaUpdate {
            storage_limit: Some(Some(1 + 10 * 100)),
            traffic_limit: None,
        },
        0,
    )
    .await
    .unwrap();
    let writers = (0..32).map(|i| {
        let store = if i % 2 == 0 { a } else { b };
        let repo = repository(&format!("suite-quota-race/r{}", i % 4));
        async move {
            store
                .link_blob(
                    &at(NOW),
                    &repo,
                    &digest_of(&format!("suite-quota-race {i}")),
                    100,
                )
                .await
        }
    });
    let results = join_all(writers).await;
    let linked = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(MetaError::QuotaExceeded(_))))
        .count();
    assert_eq!((linked, refused), (10, 22), "{results:?}");
    assert_eq!(usage(a, ns).await, 1 + 10 * 100);
    assert_no_drift(a).await;
}

/// The namespace the drift test works in: the backend test links a blob
/// with [`link_before_drift`], sets this namespace's recorded usage to
/// [`DRIFTED_USAGE`] by hand, and then calls [`a_recount_reports_and_fixes_drift`].
pub const DRIFT_NAMESPACE: &str = "drift";
/// The usage the backend test records by hand.
pub const DRIFTED_USAGE: u64 = 7;

/// Links one 300-byte blob into [`DRIFT_NAMESPACE`].
pub async fn link_before_drift(store: &dyn MetaStore) {
    let repo = RepoName::parse("drift/app").unwrap();
    let blob = Algorithm::Sha256.digest_of(b"drift");
    store.link_blob(&at(1), &repo, &blob, 300).await.unwrap();
}

/// Usage changed behind the store's back is reported by a recount with both
/// figures and corrected; a second recount finds nothing.
pub async fn a_recount_reports_and_fixes_drift(store: &dyn MetaStore) {
    let figures = store.recompute_storage(&at(2)).await.unwrap();
    let drift = figures
        .iter()
        .find(|d| d.namespace == DRIFT_NAMESPACE)
        .unwrap();
    assert_eq!((drift.recorded, drift.actual), (DRIFTED_USAGE, 300));
    assert_eq!(
        store
            .quota(DRIFT_NAMESPACE, 0)
            .await
            .unwrap()
            .unwrap()
            .storage_bytes,
        300
    );
    let again = store.recompute_storage(&at(3)).await.unwrap();
    assert!(again.iter().all(|d| d.recorded == d.actual), "{again:?}");
}

/// A store built with a registry-wide default storage limit of 100 bytes
/// (`with_default_storage_limit(Some(100))`) applies it to a namespace
/// without a limit of its own, to blob links and manifest pushes alike, and
/// a namespace's own limit replaces it. Not in [`TESTS`]: the backends' test
/// files build the store it needs and call it.
pub async fn the_default_storage_limit_applies_to_links_and_manifests(store: &dyn MetaStore) {
    let ns = "suite-quota-default";
    let repo = repository("suite-quota-default/app");
    let first = digest_of("suite-quota-default first");
    let second = digest_of("suite-quota-default second");
    link(store, &repo, &first, 60).await;
    match store.link_blob(&at(NOW), &repo, &second, 41).await {
        Err(MetaError::QuotaExceeded(exceeded)) => assert_eq!(
            (exceeded.usage, exceeded.limit, exceeded.adding),
            (60, 100, 41)
        ),
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    link(store, &repo, &second, 30).await;
    assert_eq!(usage(store, ns).await, 90);
    // The manifest's own bytes would take the namespace past 100.
    let manifest = image(
        "suite-quota-default image, longer than ten bytes",
        &[&first],
    );
    match store
        .put_manifest(&at(NOW), &repo, &manifest, Some(&tag("v1")))
        .await
    {
        Err(MetaError::QuotaExceeded(exceeded)) => assert_eq!(
            (exceeded.usage, exceeded.limit, exceeded.adding),
            (90, 100, manifest.record.payload.len() as u64)
        ),
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(list_tags(store, &repo).await, Some(Vec::new()));
    store
        .set_quota(
            &at(NOW),
            ns,
            &QuotaUpdate {
                storage_limit: Some(Some(1000)),
                traffic_limit: None,
            },
            0,
        )
        .await
        .unwrap();
    put(store, &repo, &manifest, Some(&tag("v1"))).await;
    assert_eq!(
        usage(store, ns).await,
        90 + manifest.record.payload.len() as u64
    );
}
