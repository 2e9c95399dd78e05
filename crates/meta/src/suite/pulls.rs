//! The shared suite of [`PullStatsStore`](crate::PullStatsStore).

use super::events::events_after;
use super::*;
use crate::{Actor, EventKind, PullCount, RepositoryQuery, RepositorySort, TaggedFilter};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("pulls_add_up_per_image_and_repository", |store| {
        Box::pin(pulls_add_up_per_image_and_repository(store))
    }),
    (
        "pulls_become_events_per_image_and_puller_when_asked",
        |store| Box::pin(pulls_become_events_per_image_and_puller_when_asked(store)),
    ),
];

/// Batches (as two nodes would flush them, out of order and overlapping)
/// add up per image and per repository; last-pulled times only move
/// forward; counts for what no longer exists are dropped without failing
/// the batch; the repository listing sorts by pulls.
pub async fn pulls_add_up_per_image_and_repository(store: &dyn MetaStore) {
    let busy = repository("suite-pulls/busy");
    let quiet = repository("suite-pulls/quiet");
    let gone = repository("suite-pulls/never-created");
    let layer = digest_of("suite-pulls layer");
    let mut images = Vec::new();
    for (repo, payload) in [
        (&busy, "suite-pulls one"),
        (&busy, "suite-pulls two"),
        (&quiet, "suite-pulls three"),
    ] {
        link(store, repo, &layer, 7).await;
        let manifest = image(payload, &[&layer]);
        put(store, repo, &manifest, None).await;
        images.push(manifest.record.digest);
    }
    let count = |repo: &RepoName, digest: &Digest, pulls, at| PullCount {
        repository: repo.clone(),
        digest: digest.clone(),
        pulls,
        last_pulled_at: at,
        actor: Actor::anonymous(),
        warning: None,
    };
    // Node A's batch, then node B's, whose times are partly older.
    store
        .record_pulls(
            &[
                count(&busy, &images[1], 2, NOW + 5),
                count(&busy, &images[0], 3, NOW + 10),
                count(&quiet, &images[2], 1, NOW + 2),
            ],
            false,
        )
        .await
        .unwrap();
    store
        .record_pulls(
            &[
                count(&busy, &images[0], 4, NOW + 7),
                count(&busy, &images[0], 1, NOW + 8),
                count(&gone, &images[0], 9, NOW + 20),
                count(&busy, &digest_of("suite-pulls absent"), 9, NOW + 20),
            ],
            false,
        )
        .await
        .unwrap();
    store.record_pulls(&[], true).await.unwrap();

    let listed = store
        .list_images(&busy, TaggedFilter::Any, None, 10)
        .await
        .unwrap()
        .unwrap();
    // (image, pulls, last pulled)
    let expected = [
        (&images[0], 3 + 4 + 1, Some(NOW + 10)),
        (&images[1], 2, Some(NOW + 5)),
    ];
    for (digest, pulls, last) in expected {
        let found = listed.iter().find(|i| &i.digest == digest).unwrap();
        assert_eq!(
            (found.pulls, found.last_pulled_at),
            (pulls, last),
            "{digest}"
        );
        let one = store.image(&busy, digest).await.unwrap().unwrap();
        assert_eq!((one.pulls, one.last_pulled_at), (pulls, last), "{digest}");
    }
    let quiet_image = store.image(&quiet, &images[2]).await.unwrap().unwrap();
    assert_eq!(
        (quiet_image.pulls, quiet_image.last_pulled_at),
        (1, Some(NOW + 2))
    );

    let summaries = store
        .list_repository_summaries(&RepositoryQuery {
            namespaces: Some(vec!["suite-pulls".to_string()]),
            contains: None,
            sort: RepositorySort::Pulls,
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    let figures: Vec<(&str, u64, Option<Timestamp>)> = summaries
        .iter()
        .map(|r| (r.name.as_str(), r.pulls, r.last_pull))
        .collect();
    assert_eq!(
        figures,
        vec![
            ("suite-pulls/busy", 3 + 4 + 1 + 2 + 9, Some(NOW + 20)),
            ("suite-pulls/quiet", 1, Some(NOW + 2)),
        ],
        "a repository counts every pull recorded for it, even of a digest it no longer holds"
    );
    let second_page = store
        .list_repository_summaries(&RepositoryQuery {
            namespaces: Some(vec!["suite-pulls".to_string()]),
            contains: None,
            sort: RepositorySort::Pulls,
            after: Some(crate::RepositoryCursor {
                key: summaries[0].sort_key(RepositorySort::Pulls),
                name: summaries[0].name.clone(),
            }),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(second_page, summaries[1..].to_vec());

    for (repo, digest) in [
        (&busy, &images[0]),
        (&busy, &images[1]),
        (&quiet, &images[2]),
    ] {
        delete(store, repo, digest).await;
    }
}

/// With events asked for, a batch writes one `image.pulled` per image and
/// puller, as that puller, at their newest pull, with their count; counts
/// of images that do not exist write none; without, no event at all.
pub async fn pulls_become_events_per_image_and_puller_when_asked(store: &dyn MetaStore) {
    let repo = repository("suite-pull-events/app");
    let layer = digest_of("suite-pull-events layer");
    link(store, &repo, &layer, 7).await;
    let manifest = image("suite-pull-events one", &[&layer]);
    put(store, &repo, &manifest, None).await;
    let digest = manifest.record.digest;
    let count = |actor: Actor, pulls, at| PullCount {
        repository: repo.clone(),
        digest: digest.clone(),
        pulls,
        last_pulled_at: at,
        actor,
        warning: None,
    };
    let before = store.last_event_position().await.unwrap();
    store
        .record_pulls(&[count(Actor::user("suite-quiet"), 1, NOW)], false)
        .await
        .unwrap();
    store
        .record_pulls(
            &[
                count(Actor::robot("suite-ci"), 3, NOW + 4),
                PullCount {
                    warning: Some("CVE-2024-1 (high) in openssl 3.0.1".to_string()),
                    ..count(Actor::anonymous(), 2, NOW + 6)
                },
                PullCount {
                    digest: digest_of("suite-pull-events absent"),
                    ..count(Actor::user("suite-ghost"), 5, NOW + 8)
                },
            ],
            true,
        )
        .await
        .unwrap();
    let mut pulled: Vec<(Option<String>, i64, serde_json::Value, Option<Digest>)> =
        events_after(store, before)
            .await
            .into_iter()
            .filter(|e| e.namespace.as_deref() == Some("suite-pull-events"))
            .map(|e| {
                assert_eq!(e.kind, EventKind::ImagePulled);
                assert_eq!(e.repository.as_ref(), Some(&repo));
                (e.actor.name, e.at, e.detail, e.digest)
            })
            .collect();
    pulled.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        pulled,
        vec![
            (
                None,
                NOW + 6,
                serde_json::json!({ "count": 2, "warning": "CVE-2024-1 (high) in openssl 3.0.1" }),
                Some(digest.clone())
            ),
            (
                Some("suite-ci".to_string()),
                NOW + 4,
                serde_json::json!({ "count": 3 }),
                Some(digest.clone())
            ),
        ]
    );
    let stored = store.image(&repo, &digest).await.unwrap().unwrap();
    assert_eq!(stored.pulls, 1 + 3 + 2);
    delete(store, &repo, &digest).await;
}
