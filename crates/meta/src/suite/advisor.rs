//! The shared suite of [`AdvisorStore`](crate::AdvisorStore).
//!
//! Layer indexes and image states cannot be deleted through the trait (they
//! are derived data, kept by content address), so the tests use digests of
//! their own; advisories are removed by withdrawing them, exemptions and
//! policies (with their namespace) by the test that made them.

use super::events::events_after;
use super::*;
use crate::advisor::{package_key, scope_namespace};
use crate::{
    AdvisoryBatch, AdvisoryRow, EventKind, ExemptionRow, FinishedScan, ImportCounts, IndexState,
    LayerIndexRow, PolicyMode, PolicyRow,
};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("layer_indexes_are_stored_once_per_digest", |store| {
        Box::pin(layer_indexes_are_stored_once_per_digest(store))
    }),
    ("scan_jobs_are_queued_once_and_leased", |store| {
        Box::pin(scan_jobs_are_queued_once_and_leased(store))
    }),
    ("racing_scan_takers_take_distinct_jobs", |store| {
        Box::pin(racing_scan_takers_take_distinct_jobs(store))
    }),
    ("racing_scan_batches_and_finishes_all_succeed", |store| {
        Box::pin(racing_scan_batches_and_finishes_all_succeed(store))
    }),
    ("scan_batches_queue_each_image_once", |store| {
        Box::pin(scan_batches_queue_each_image_once(store))
    }),
    ("advisories_are_imported_incrementally", |store| {
        Box::pin(advisories_are_imported_incrementally(store))
    }),
    ("exemptions_are_set_listed_and_removed", |store| {
        Box::pin(exemptions_are_set_listed_and_removed(store))
    }),
    ("exemptions_are_paged_per_namespace", |store| {
        Box::pin(exemptions_are_paged_per_namespace(store))
    }),
    ("policies_are_set_per_namespace", |store| {
        Box::pin(policies_are_set_per_namespace(store))
    }),
    ("images_are_found_by_package_and_told_of_changes", |store| {
        Box::pin(images_are_found_by_package_and_told_of_changes(store))
    }),
];

/// A finished scan records the image's package keys (replacing earlier
/// ones); images are found by package key, each once, in digest order and
/// paged; advisories are read by id; a change is told once per repository
/// holding the image, none for an image nobody holds, in the import's own
/// transaction: a batch computed from stale versions stores nothing and
/// tells nothing.
pub async fn images_are_found_by_package_and_told_of_changes(store: &dyn MetaStore) {
    let left = repository("suite-vulnchange/left");
    let right = repository("suite-vulnchange/right");
    let layer = digest_of("suite-vulnchange layer");
    let one = image("suite-vulnchange one", &[&layer]);
    let two = image("suite-vulnchange two", &[&layer]);
    for repo in [&left, &right] {
        link(store, repo, &layer, 5).await;
    }
    put(store, &left, &one, None).await;
    put(store, &right, &one, None).await;
    put(store, &left, &two, None).await;
    let (one, two) = (one.record.digest, two.record.digest);
    let nobody = digest_of("suite-vulnchange held by nobody");
    let lodash = package_key("npm", "suite-vulnchange-lodash");
    let openssl = package_key("Debian", "suite-vulnchange-openssl");
    let zlib = package_key("Debian", "suite-vulnchange-zlib");
    let scans = [
        (&one, vec![lodash.clone(), openssl.clone()]),
        (&two, vec![openssl.clone(), openssl.clone()]),
        (&nobody, vec![lodash.clone()]),
    ];
    for (manifest, keys) in &scans {
        assert!(store
            .enqueue_scan(&left, manifest, NOW, false)
            .await
            .unwrap());
        let job = store.take_scan("suite", NOW, 30).await.unwrap().unwrap();
        assert_eq!(&&job.manifest, manifest);
        store
            .finish_scan(
                "suite",
                manifest,
                &FinishedScan {
                    state: &IndexState::Done,
                    layers: std::slice::from_ref(&layer),
                    package_keys: keys,
                    new_layer_indexes: &[],
                },
                NOW,
            )
            .await
            .unwrap();
    }
    let mut sorted = vec![one.clone(), two.clone()];
    sorted.sort();
    let found = |keys: Vec<String>, after: Option<Digest>, limit| async move {
        store
            .images_with_packages(&keys, after.as_ref(), limit)
            .await
            .unwrap()
    };
    assert_eq!(found(vec![openssl.clone()], None, 10).await, sorted);
    assert_eq!(
        found(vec![openssl.clone(), zlib.clone()], None, 1).await,
        sorted[..1]
    );
    assert_eq!(
        found(vec![openssl.clone()], Some(sorted[0].clone()), 10).await,
        sorted[1..]
    );
    let mut with_lodash = vec![one.clone(), nobody.clone()];
    with_lodash.sort();
    assert_eq!(found(vec![lodash.clone()], None, 10).await, with_lodash);
    assert_eq!(
        found(vec![zlib.clone()], None, 10).await,
        Vec::<Digest>::new()
    );

    // Indexed again, `two` has other packages: the old keys go.
    assert!(store.enqueue_scan(&left, &two, NOW, true).await.unwrap());
    store.take_scan("suite", NOW, 30).await.unwrap().unwrap();
    store
        .finish_scan(
            "suite",
            &two,
            &FinishedScan {
                state: &IndexState::Done,
                layers: &[],
                package_keys: std::slice::from_ref(&zlib),
                new_layer_indexes: &[],
            },
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(
        found(vec![openssl.clone()], None, 10).await,
        vec![one.clone()]
    );
    assert_eq!(found(vec![zlib.clone()], None, 10).await, vec![two.clone()]);

    let rows: Vec<AdvisoryRow> = ["SUITE-VC-2", "SUITE-VC-1"]
        .iter()
        .map(|id| AdvisoryRow {
            id: id.to_string(),
            modified_ns: 7,
            aliases: Vec::new(),
            packages: vec![lodash.clone()],
            body: format!("{{\"id\":\"{id}\"}}"),
        })
        .collect();
    import(store, NOW, &rows, &[]).await;
    let ids = ["SUITE-VC-1", "SUITE-VC-2", "SUITE-VC-absent"].map(String::from);
    assert_eq!(
        store.advisories_by_id(&ids, true).await.unwrap(),
        vec![
            (
                "SUITE-VC-1".to_string(),
                7,
                r#"{"id":"SUITE-VC-1"}"#.to_string()
            ),
            (
                "SUITE-VC-2".to_string(),
                7,
                r#"{"id":"SUITE-VC-2"}"#.to_string()
            ),
        ]
    );
    assert_eq!(
        store.advisories_by_id(&ids[1..], false).await.unwrap(),
        vec![("SUITE-VC-2".to_string(), 7, String::new())]
    );

    // The images an import batch affects are told in the batch's own
    // transaction: a batch computed from versions another import has
    // replaced since changes nothing, and writes no event either.
    let vulnerability_events = |from| async move {
        events_after(store, from)
            .await
            .into_iter()
            .filter(|e| e.kind == EventKind::VulnerabilitiesChanged)
            .map(|e| (e.repository, e.digest, e.detail))
            .collect::<Vec<(Option<RepoName>, Option<Digest>, serde_json::Value)>>()
    };
    let newer: Vec<AdvisoryRow> = rows
        .iter()
        .map(|row| AdvisoryRow {
            modified_ns: 8,
            ..row.clone()
        })
        .collect();
    let detail = serde_json::json!({"advisories": ["SUITE-VC-1"], "advisory_count": 1});
    let verdicts = [
        (one.clone(), detail.clone()),
        (nobody.clone(), detail.clone()),
    ];
    let from = store.last_event_position().await.unwrap();
    let stale = store
        .import_advisories(
            &at(NOW + 2),
            &AdvisoryBatch {
                advisories: &newer,
                seen: Some(&[]),
                verdicts: &verdicts,
                ..AdvisoryBatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stale, None);
    assert_eq!(
        store.advisories_by_id(&ids[..2], false).await.unwrap(),
        vec![
            ("SUITE-VC-1".to_string(), 7, String::new()),
            ("SUITE-VC-2".to_string(), 7, String::new()),
        ]
    );
    assert_eq!(events_after(store, from).await, Vec::new());

    let seen = [("SUITE-VC-2".to_string(), 7), ("SUITE-VC-1".to_string(), 7)];
    let counts = store
        .import_advisories(
            &at(NOW + 2),
            &AdvisoryBatch {
                advisories: &newer,
                seen: Some(&seen),
                verdicts: &verdicts,
                ..AdvisoryBatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counts.updated, 2);
    assert_eq!(
        store.advisories_by_id(&ids[..1], false).await.unwrap(),
        vec![("SUITE-VC-1".to_string(), 8, String::new())]
    );
    assert_eq!(
        vulnerability_events(from).await,
        vec![
            (Some(left.clone()), Some(one.clone()), detail.clone()),
            (Some(right.clone()), Some(one.clone()), detail),
        ]
    );
    let imported: Vec<EventKind> = events_after(store, from)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        imported,
        [
            EventKind::AdvisoriesImported,
            EventKind::VulnerabilitiesChanged,
            EventKind::VulnerabilitiesChanged,
        ]
    );
    let withdrawn = ["SUITE-VC-1", "SUITE-VC-2"].map(String::from);
    store
        .import_advisories(
            &at(NOW + 4),
            &AdvisoryBatch {
                withdrawn: &withdrawn,
                ..AdvisoryBatch::default()
            },
        )
        .await
        .unwrap();
}

/// Imports a batch that tells of no image.
async fn import(
    store: &dyn MetaStore,
    now: Timestamp,
    advisories: &[AdvisoryRow],
    withdrawn: &[String],
) -> ImportCounts {
    store
        .import_advisories(
            &at(now),
            &AdvisoryBatch {
                advisories,
                withdrawn,
                ..AdvisoryBatch::default()
            },
        )
        .await
        .unwrap()
        .expect("an unchecked batch is stored")
}

pub async fn layer_indexes_are_stored_once_per_digest(store: &dyn MetaStore) {
    let layer = digest_of("suite-advisor layer");
    assert_eq!(store.layer_index(&layer).await.unwrap(), None);
    assert!(store
        .put_layer_index(&layer, 1, r#"{"first":true}"#, NOW)
        .await
        .unwrap());
    // A second index of the same bytes is not stored: the first stays.
    assert!(!store
        .put_layer_index(&layer, 2, r#"{"second":true}"#, NOW + 1)
        .await
        .unwrap());
    assert_eq!(
        store.layer_index(&layer).await.unwrap(),
        Some((1, r#"{"first":true}"#.to_string()))
    );
    let other = digest_of("suite-advisor other layer");
    assert_eq!(store.layer_index(&other).await.unwrap(), None);
}

pub async fn scan_jobs_are_queued_once_and_leased(store: &dyn MetaStore) {
    let repo = repository("suite-advisor/queue");
    let first = digest_of("suite-advisor queue first");
    let second = digest_of("suite-advisor queue second");
    let layers = [
        digest_of("suite-advisor queue layer a"),
        digest_of("suite-advisor queue layer b"),
    ];
    let depth = store.scan_queue_depth().await.unwrap();
    assert_eq!(store.image_index(&first).await.unwrap(), None);

    assert!(store.enqueue_scan(&repo, &first, NOW, false).await.unwrap());
    // Queued once, however often it is pushed or tagged.
    assert!(!store.enqueue_scan(&repo, &first, NOW, false).await.unwrap());
    assert!(!store.enqueue_scan(&repo, &first, NOW, true).await.unwrap());
    assert!(store
        .enqueue_scan(&repo, &second, NOW + 1, false)
        .await
        .unwrap());
    assert_eq!(store.scan_queue_depth().await.unwrap(), depth + 2);
    let queued = store.image_index(&first).await.unwrap().unwrap();
    assert_eq!(queued.state, IndexState::Queued);
    assert_eq!(queued.layers, Vec::<Digest>::new());

    // The oldest job goes first; a second taker gets the next one, then none.
    let taken = store
        .take_scan("alice", NOW + 2, 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&taken.manifest, &taken.repository, taken.attempts),
        (&first, &repo, 1)
    );
    assert_eq!(
        store.image_index(&first).await.unwrap().unwrap().state,
        IndexState::Indexing
    );
    let next = store.take_scan("bob", NOW + 2, 30).await.unwrap().unwrap();
    assert_eq!(next.manifest, second);
    assert_eq!(store.take_scan("carol", NOW + 3, 30).await.unwrap(), None);

    // Alice's node dies; at her lease's expiry Carol takes the job over, and
    // Alice, back, can no longer finish it.
    assert_eq!(store.take_scan("carol", NOW + 31, 30).await.unwrap(), None);
    let over = store
        .take_scan("carol", NOW + 32, 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&over.manifest, over.attempts), (&first, 2));
    let from = store.last_event_position().await.unwrap();
    // The finish stores the layer indexes its indexing read, with the
    // image's state: none after a lost lease, and a layer indexed before
    // keeps its first index.
    store
        .put_layer_index(&layers[1], 1, r#"{"earlier":true}"#, NOW + 20)
        .await
        .unwrap();
    let read = |body: &str| {
        layers
            .iter()
            .map(|layer| LayerIndexRow {
                layer: layer.clone(),
                format: 1,
                body: body.to_string(),
            })
            .collect::<Vec<_>>()
    };
    let (alice, carol) = (read("alice"), read("carol"));
    let mut finished = FinishedScan::state_only(&IndexState::Done);
    finished.layers = &layers;
    finished.new_layer_indexes = &alice;
    let lost = store
        .finish_scan("alice", &first, &finished, NOW + 33)
        .await;
    assert!(matches!(lost, Err(MetaError::LeaseLost)), "got {lost:?}");
    assert_eq!(store.layer_index(&layers[0]).await.unwrap(), None);
    finished.new_layer_indexes = &carol;
    store
        .finish_scan("carol", &first, &finished, NOW + 34)
        .await
        .unwrap();
    assert_eq!(
        store.layer_index(&layers[0]).await.unwrap(),
        Some((1, "carol".to_string()))
    );
    assert_eq!(
        store.layer_index(&layers[1]).await.unwrap(),
        Some((1, r#"{"earlier":true}"#.to_string()))
    );
    // The finished scan, and only it, is an event of the stream, written
    // with it: the job's repository, the manifest and the state.
    let finished: Vec<(Option<RepoName>, Option<Digest>, serde_json::Value)> =
        events_after(store, from)
            .await
            .into_iter()
            .filter(|e| e.kind == EventKind::ScanFinished)
            .map(|e| (e.repository, e.digest, e.detail))
            .collect();
    assert_eq!(
        finished,
        vec![(
            Some(repo.clone()),
            Some(first.clone()),
            serde_json::json!({"state": "done"})
        )]
    );
    let done = store.image_index(&first).await.unwrap().unwrap();
    assert_eq!(done.state, IndexState::Done);
    assert_eq!(done.layers, layers.to_vec());
    assert_eq!(done.updated_at, NOW + 34);

    // A finished image is not queued again unless asked.
    assert!(!store
        .enqueue_scan(&repo, &first, NOW + 35, false)
        .await
        .unwrap());
    assert!(store
        .enqueue_scan(&repo, &first, NOW + 35, true)
        .await
        .unwrap());
    let again = store.image_index(&first).await.unwrap().unwrap();
    assert_eq!(again.state, IndexState::Queued);
    // The previous layers stay until the new indexing finishes.
    assert_eq!(again.layers, layers.to_vec());

    // Bob's job fails for a passing reason: it returns, due later.
    let lost = store.retry_scan("alice", &second, NOW + 100).await;
    assert!(matches!(lost, Err(MetaError::LeaseLost)), "got {lost:?}");
    store.retry_scan("bob", &second, NOW + 100).await.unwrap();
    let retaken = store
        .take_scan("bob", NOW + 36, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retaken.manifest, first);
    assert_eq!(store.take_scan("bob", NOW + 99, 30).await.unwrap(), None);
    let due = store
        .take_scan("bob", NOW + 100, 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&due.manifest, due.attempts), (&second, 2));

    // Partial and unsupported keep their reasons.
    let partial = IndexState::Partial("rpmdb unreadable".to_string());
    store
        .finish_scan(
            "bob",
            &second,
            &FinishedScan {
                state: &partial,
                layers: &layers[..1],
                package_keys: &[],
                new_layer_indexes: &[],
            },
            NOW + 101,
        )
        .await
        .unwrap();
    let unsupported = IndexState::Unsupported("not an image".to_string());
    store
        .finish_scan(
            "bob",
            &first,
            &FinishedScan {
                state: &unsupported,
                layers: &[],
                package_keys: &[],
                new_layer_indexes: &[],
            },
            NOW + 102,
        )
        .await
        .unwrap();
    assert_eq!(
        store.image_index(&second).await.unwrap().unwrap().state,
        partial
    );
    assert_eq!(
        store.image_index(&first).await.unwrap().unwrap().state,
        unsupported
    );
    assert_eq!(store.scan_queue_depth().await.unwrap(), depth);
}

pub async fn racing_scan_takers_take_distinct_jobs(store: &dyn MetaStore) {
    const JOBS: usize = 4;
    const TAKERS: usize = 10;
    let repo = repository("suite-advisor/race");
    let manifests: Vec<Digest> = (0..JOBS)
        .map(|job| digest_of(&format!("suite-advisor race {job}")))
        .collect();
    for manifest in &manifests {
        assert!(store
            .enqueue_scan(&repo, manifest, NOW, false)
            .await
            .unwrap());
    }
    let holders: Vec<String> = (0..TAKERS).map(|n| format!("racer {n}")).collect();
    let results = join_all(
        holders
            .iter()
            .map(|holder| store.take_scan(holder, NOW + 1, 30)),
    )
    .await;
    let mut taken: Vec<(String, Digest)> = holders
        .iter()
        .zip(results)
        .filter_map(|(holder, job)| job.unwrap().map(|job| (holder.clone(), job.manifest)))
        .collect();
    // Every job is taken exactly once (jobs of other tests are not queued).
    let mut digests: Vec<Digest> = taken.iter().map(|(_, d)| d.clone()).collect();
    digests.sort();
    let mut expected = manifests.clone();
    expected.sort();
    assert_eq!(digests, expected);
    for (holder, manifest) in taken.drain(..) {
        store
            .finish_scan(
                &holder,
                &manifest,
                &FinishedScan {
                    state: &IndexState::Done,
                    layers: &[],
                    package_keys: &[],
                    new_layer_indexes: &[],
                },
                NOW + 2,
            )
            .await
            .unwrap();
    }
}

/// Batches of images queued at once in opposite orders, and scans that
/// finish at once storing the indexes of layers their images share in
/// opposite orders, all succeed: neither waits on the other in a cycle.
pub async fn racing_scan_batches_and_finishes_all_succeed(store: &dyn MetaStore) {
    const ROUNDS: usize = 12;
    const LAYERS: usize = 24;
    let repo = repository("suite-advisor/finishes");
    for round in 0..ROUNDS {
        let batch: Vec<(RepoName, Digest)> = (0..LAYERS)
            .map(|image| {
                let digest = digest_of(&format!("suite-advisor batch {round} image {image}"));
                (repo.clone(), digest)
            })
            .collect();
        let reversed: Vec<(RepoName, Digest)> = batch.iter().rev().cloned().collect();
        let (forward, backward) = futures::join!(
            store.enqueue_scans(&batch, NOW, false),
            store.enqueue_scans(&reversed, NOW, false)
        );
        let (forward, mut backward) = (forward.unwrap(), backward.unwrap());
        backward.reverse();
        for (one, other) in forward.iter().zip(&backward) {
            assert!(one ^ other, "each image is queued once");
        }
        while store.take_scan("suite", NOW, 30).await.unwrap().is_some() {}
        for (_, image) in &batch {
            let scan = FinishedScan::state_only(&IndexState::Done);
            store.finish_scan("suite", image, &scan, NOW).await.unwrap();
        }

        let layers: Vec<LayerIndexRow> = (0..LAYERS)
            .map(|layer| LayerIndexRow {
                layer: digest_of(&format!("suite-advisor finishes {round} layer {layer}")),
                format: 1,
                body: format!("{{\"layer\":{layer}}}"),
            })
            .collect();
        let reversed: Vec<LayerIndexRow> = layers.iter().rev().cloned().collect();
        let images = ["forward", "backward"]
            .map(|name| digest_of(&format!("suite-advisor finishes {round} {name}")));
        for image in &images {
            assert!(store.enqueue_scan(&repo, image, NOW, false).await.unwrap());
            assert!(store.take_scan("suite", NOW, 30).await.unwrap().is_some());
        }
        let state = IndexState::Done;
        let finish = |image: &Digest, rows: &[LayerIndexRow]| {
            let digests: Vec<Digest> = rows.iter().map(|row| row.layer.clone()).collect();
            let (image, rows) = (image.clone(), rows.to_vec());
            let state = &state;
            async move {
                let scan = FinishedScan {
                    state,
                    layers: &digests,
                    package_keys: &[],
                    new_layer_indexes: &rows,
                };
                store.finish_scan("suite", &image, &scan, NOW + 1).await
            }
        };
        let (forward, backward) =
            futures::join!(finish(&images[0], &layers), finish(&images[1], &reversed));
        forward.unwrap();
        backward.unwrap();
        for row in &layers {
            assert!(store.layer_index(&row.layer).await.unwrap().is_some());
        }
    }
}

/// A batch queues each image once, for the first repository given with it,
/// leaves finished images alone unless asked, answers in the order given,
/// and commits nothing when it queues nothing.
pub async fn scan_batches_queue_each_image_once(store: &dyn MetaStore) {
    let left = repository("suite-advisor/batch-left");
    let right = repository("suite-advisor/batch-right");
    let [one, two, done, held] = ["one", "two", "done", "held"]
        .map(|name| digest_of(&format!("suite-advisor batch {name}")));
    // `done` is indexed already; `held` is queued and taken.
    assert!(store.enqueue_scan(&left, &done, NOW, false).await.unwrap());
    let job = store.take_scan("suite", NOW, 30).await.unwrap().unwrap();
    assert_eq!(job.manifest, done);
    let finished = FinishedScan::state_only(&IndexState::Done);
    store
        .finish_scan("suite", &done, &finished, NOW)
        .await
        .unwrap();
    assert!(store.enqueue_scan(&left, &held, NOW, false).await.unwrap());
    assert!(store.take_scan("suite", NOW, 30).await.unwrap().is_some());
    let depth = store.scan_queue_depth().await.unwrap();

    let batch = [
        (right.clone(), two.clone()),
        (left.clone(), one.clone()),
        (left.clone(), two.clone()),
        (left.clone(), done.clone()),
        (right.clone(), held.clone()),
    ];
    let queued = store.enqueue_scans(&batch, NOW + 1, false).await.unwrap();
    assert_eq!(queued, [true, true, false, false, false]);
    assert_eq!(store.scan_queue_depth().await.unwrap(), depth + 2);
    for image in [&one, &two] {
        let row = store.image_index(image).await.unwrap().unwrap();
        assert_eq!((row.state, row.updated_at), (IndexState::Queued, NOW + 1));
    }
    assert_eq!(
        store.image_index(&done).await.unwrap().unwrap().state,
        IndexState::Done
    );
    assert_eq!(
        store.image_index(&held).await.unwrap().unwrap().state,
        IndexState::Indexing
    );
    // The jobs are the batch's, oldest first (by digest within one
    // second): `two` for the repository given first with it.
    let mut taken = Vec::new();
    while let Some(job) = store.take_scan("suite", NOW + 2, 30).await.unwrap() {
        taken.push((job.manifest, job.repository));
    }
    let mut expected = vec![(one.clone(), left.clone()), (two.clone(), right.clone())];
    expected.sort();
    assert_eq!(taken, expected);

    // Asked again, the finished image is queued; a batch that queues
    // nothing changes nothing.
    let again = [(right.clone(), done.clone()), (left.clone(), held.clone())];
    assert_eq!(
        store.enqueue_scans(&again, NOW + 3, true).await.unwrap(),
        [true, false]
    );
    assert_eq!(
        store.enqueue_scans(&again, NOW + 4, false).await.unwrap(),
        [false, false]
    );
    assert_eq!(
        store.image_index(&done).await.unwrap().unwrap().updated_at,
        NOW + 3
    );
    assert_eq!(
        store.enqueue_scans(&[], NOW + 4, true).await.unwrap(),
        Vec::<bool>::new()
    );

    // A batch larger than one statement's list: an image indexed already
    // is found wherever it falls (here last, in digest order).
    let mut many: Vec<(RepoName, Digest)> = (0..600)
        .map(|image| {
            let digest = digest_of(&format!("suite-advisor large batch {image}"));
            (left.clone(), digest)
        })
        .collect();
    many.sort_by(|a, b| a.1.cmp(&b.1));
    let last = many.last().unwrap().1.clone();
    while store
        .take_scan("suite", NOW + 5, 30)
        .await
        .unwrap()
        .is_some()
    {}
    assert!(store
        .enqueue_scan(&left, &last, NOW + 5, false)
        .await
        .unwrap());
    store
        .take_scan("suite", NOW + 5, 30)
        .await
        .unwrap()
        .unwrap();
    store
        .finish_scan("suite", &last, &finished, NOW + 5)
        .await
        .unwrap();
    let queued = store.enqueue_scans(&many, NOW + 6, false).await.unwrap();
    assert_eq!(queued.iter().filter(|queued| **queued).count(), 599);
    assert!(!queued[599]);
}

/// An advisory of the suite, affecting `packages` (ecosystem, name).
fn advisory(
    id: &str,
    modified_ns: i64,
    aliases: &[&str],
    packages: &[(&str, &str)],
) -> AdvisoryRow {
    AdvisoryRow {
        id: id.to_string(),
        modified_ns,
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        packages: packages
            .iter()
            .map(|(ecosystem, name)| package_key(ecosystem, name))
            .collect(),
        body: format!(r#"{{"id":"{id}","modified":{modified_ns}}}"#),
    }
}

pub async fn advisories_are_imported_incrementally(store: &dyn MetaStore) {
    let before = store.advisory_data().await.unwrap();
    let from = store.last_event_position().await.unwrap();
    let openssl = package_key("Debian:12", "suite-openssl");
    let zlib = package_key("Debian:12", "suite-zlib");
    let flask = package_key("PyPI", "suite-flask");

    let first = vec![
        advisory(
            "SUITE-1",
            100,
            &["CVE-SUITE-1"],
            &[("Debian:12", "suite-openssl")],
        ),
        advisory(
            "SUITE-2",
            100,
            &["CVE-SUITE-2", "GHSA-suite-2"],
            &[("Debian:12", "suite-zlib"), ("PyPI", "suite-flask")],
        ),
    ];
    let counts = import(store, NOW, &first, &[]).await;
    assert_eq!((counts.added, counts.updated, counts.unchanged), (2, 0, 0));
    let after_first = store.advisory_data().await.unwrap();
    assert_eq!(after_first.count, before.count + 2);
    assert_eq!(after_first.generation, before.generation + 1);
    assert_eq!(after_first.imported_at, Some(NOW));

    // Look-ups by package key, each advisory once.
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (vec![openssl.clone()], vec!["SUITE-1"]),
        (vec![zlib.clone(), flask.clone()], vec!["SUITE-2"]),
        (
            vec![openssl.clone(), flask.clone()],
            vec!["SUITE-1", "SUITE-2"],
        ),
        (vec![package_key("PyPI", "suite-openssl")], vec![]),
        (vec![], vec![]),
    ];
    for (keys, expected) in cases {
        let bodies = store.advisories_for_packages(&keys).await.unwrap();
        let expected: Vec<String> = expected
            .iter()
            .map(|id| format!(r#"{{"id":"{id}","modified":100}}"#))
            .collect();
        assert_eq!(bodies, expected, "keys {keys:?}");
    }
    assert_eq!(
        store.advisory_ids_named("GHSA-suite-2").await.unwrap(),
        vec!["SUITE-2"]
    );
    assert_eq!(
        store.advisory_ids_named("SUITE-1").await.unwrap(),
        vec!["SUITE-1"]
    );
    assert_eq!(
        store.advisory_ids_named("CVE-SUITE-404").await.unwrap(),
        Vec::<String>::new()
    );

    // Re-importing the same records changes nothing and writes no event;
    // an older record does not replace a newer one; a newer one replaces
    // it with its new keys.
    let counts = import(store, NOW + 1, &first, &[]).await;
    assert_eq!((counts.added, counts.updated, counts.unchanged), (0, 0, 2));
    assert!(!counts.changed());
    assert_eq!(
        store.advisory_data().await.unwrap().generation,
        after_first.generation
    );
    let older = advisory("SUITE-1", 50, &[], &[("Debian:12", "suite-zlib")]);
    let newer = advisory("SUITE-2", 200, &["CVE-SUITE-2"], &[("PyPI", "suite-flask")]);
    let counts = import(store, NOW + 2, &[older, newer.clone()], &[]).await;
    assert_eq!((counts.added, counts.updated, counts.unchanged), (0, 1, 1));
    assert_eq!(
        store
            .advisories_for_packages(std::slice::from_ref(&zlib))
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store
            .advisories_for_packages(std::slice::from_ref(&flask))
            .await
            .unwrap(),
        vec![newer.body.clone()]
    );
    assert_eq!(
        store.advisory_ids_named("GHSA-suite-2").await.unwrap(),
        Vec::<String>::new()
    );
    let data = store.advisory_data().await.unwrap();
    assert_eq!(data.generation, after_first.generation + 1);
    assert!(data.newest_modified_ns >= Some(200));

    // Withdrawn records are removed with their keys.
    let counts = import(
        store,
        NOW + 3,
        &[],
        &[
            "SUITE-1".to_string(),
            "SUITE-2".to_string(),
            "SUITE-404".to_string(),
        ],
    )
    .await;
    assert_eq!(counts.removed, 2);
    assert_eq!(
        store
            .advisories_for_packages(&[openssl, flask])
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(store.advisory_data().await.unwrap().count, before.count);

    let imports: Vec<(i64, serde_json::Value)> = events_after(store, from)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::AdvisoriesImported)
        .map(|e| (e.at, e.detail))
        .collect();
    let generation = after_first.generation;
    assert_eq!(
        imports,
        vec![
            (
                NOW,
                serde_json::json!({"added": 2, "updated": 0, "removed": 0, "generation": generation})
            ),
            (
                NOW + 2,
                serde_json::json!({"added": 0, "updated": 1, "removed": 0, "generation": generation + 1})
            ),
            (
                NOW + 3,
                serde_json::json!({"added": 0, "updated": 0, "removed": 2, "generation": generation + 2})
            ),
        ]
    );
}

fn exemption(scope: &str, advisory: &str, expires_at: Option<Timestamp>) -> ExemptionRow {
    ExemptionRow {
        scope: scope.to_string(),
        advisory: advisory.to_string(),
        reason: format!("{advisory} does not apply to {scope}"),
        author: "suite".to_string(),
        created_at: NOW,
        expires_at,
    }
}

/// Every page of `exemption_page` for `namespace`, `limit` at a time, of
/// this suite's rows (those whose advisory starts with `CVE-PAGE`).
async fn paged_exemptions(
    store: &dyn MetaStore,
    namespace: Option<&str>,
    limit: usize,
) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let mut after: Option<(String, String)> = None;
    // Bounded: the suite's rows and whatever other tests left, a page at
    // a time.
    for _ in 0..1000 {
        let page = store
            .exemption_page(
                namespace,
                after.as_ref().map(|(s, a)| (s.as_str(), a.as_str())),
                limit,
            )
            .await
            .unwrap();
        assert!(page.len() <= limit);
        let Some(last) = page.last() else { break };
        after = Some((last.scope.clone(), last.advisory.clone()));
        let full = page.len() == limit;
        seen.extend(
            page.into_iter()
                .filter(|row| row.advisory.starts_with("CVE-PAGE"))
                .map(|row| (row.scope, row.advisory)),
        );
        if !full {
            break;
        }
    }
    seen
}

/// A namespace's page holds the registry-wide exemptions and those of the
/// namespace, its repositories and images, by scope then advisory, and
/// none of a namespace whose name merely starts with its name; pages
/// continue after their last row.
pub async fn exemptions_are_paged_per_namespace(store: &dyn MetaStore) {
    let rows = [
        ("*", "CVE-PAGE-ALL"),
        ("suite-expage", "CVE-PAGE-A1"),
        ("suite-expage", "CVE-PAGE-A2"),
        ("suite-expage/app", "CVE-PAGE-B1"),
        ("suite-expage/app:1.0", "CVE-PAGE-C1"),
        ("suite-expage-x", "CVE-PAGE-X1"),
        ("suite-expage-x/app", "CVE-PAGE-X2"),
        ("suite-expage0/app", "CVE-PAGE-Y1"),
        ("suite-expage_/app", "CVE-PAGE-Z1"),
    ];
    for (scope, advisory) in rows {
        store
            .set_exemption(&at(NOW), &exemption(scope, advisory, None))
            .await
            .unwrap();
    }
    let pair = |(s, a): &(&str, &str)| (s.to_string(), a.to_string());
    let ours: Vec<(String, String)> = rows[..5].iter().map(pair).collect();
    for limit in [1, 2, 3, 100] {
        assert_eq!(
            paged_exemptions(store, Some("suite-expage"), limit).await,
            ours,
            "limit {limit}"
        );
    }
    let mut every: Vec<(String, String)> = rows.iter().map(pair).collect();
    every.sort();
    assert_eq!(paged_exemptions(store, None, 2).await, every);
    assert_eq!(
        paged_exemptions(store, Some("suite-expage-x"), 2).await,
        vec![pair(&rows[0]), pair(&rows[5]), pair(&rows[6])]
    );
    for (scope, advisory) in rows {
        assert!(store
            .remove_exemption(&at(NOW + 1), scope, advisory)
            .await
            .unwrap());
    }
}

pub async fn exemptions_are_set_listed_and_removed(store: &dyn MetaStore) {
    let from = store.last_event_position().await.unwrap();
    let scopes = [
        "suite-exempt",
        "suite-exempt/app",
        "suite-exempt/app:1.0",
        "suite-exempt/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ];
    for scope in scopes {
        store
            .set_exemption(&at(NOW), &exemption(scope, "CVE-SUITE-1", None))
            .await
            .unwrap();
    }
    // Setting the same scope and advisory again replaces it.
    let replaced = exemption("suite-exempt", "CVE-SUITE-1", Some(NOW + 60));
    store.set_exemption(&at(NOW + 1), &replaced).await.unwrap();
    store
        .set_exemption(&at(NOW + 1), &exemption("suite-exempt", "GHSA-suite", None))
        .await
        .unwrap();

    let mine = |rows: Vec<ExemptionRow>| -> Vec<(String, String, Option<Timestamp>)> {
        rows.into_iter()
            .filter(|row| row.scope.starts_with("suite-exempt"))
            .map(|row| (row.scope, row.advisory, row.expires_at))
            .collect()
    };
    let all = mine(store.list_exemptions(None).await.unwrap());
    assert_eq!(
        all,
        vec![
            ("suite-exempt".into(), "CVE-SUITE-1".into(), Some(NOW + 60)),
            ("suite-exempt".into(), "GHSA-suite".into(), None),
            ("suite-exempt/app".into(), "CVE-SUITE-1".into(), None),
            ("suite-exempt/app:1.0".into(), "CVE-SUITE-1".into(), None),
            (scopes[3].into(), "CVE-SUITE-1".into(), None),
        ]
    );
    let one_scope = store.list_exemptions(Some("suite-exempt")).await.unwrap();
    assert_eq!(one_scope.len(), 2);
    assert_eq!(one_scope[0], replaced);
    assert!(replaced.is_active(NOW + 59));
    assert!(!replaced.is_active(NOW + 60));

    // Removing: once, then nothing left to remove.
    assert!(store
        .remove_exemption(&at(NOW + 2), "suite-exempt/app", "CVE-SUITE-1")
        .await
        .unwrap());
    assert!(!store
        .remove_exemption(&at(NOW + 2), "suite-exempt/app", "CVE-SUITE-1")
        .await
        .unwrap());
    for (scope, advisory) in [
        ("suite-exempt", "CVE-SUITE-1"),
        ("suite-exempt", "GHSA-suite"),
        ("suite-exempt/app:1.0", "CVE-SUITE-1"),
        (scopes[3], "CVE-SUITE-1"),
    ] {
        assert!(store
            .remove_exemption(&at(NOW + 3), scope, advisory)
            .await
            .unwrap());
    }
    assert_eq!(mine(store.list_exemptions(None).await.unwrap()), vec![]);

    let events: Vec<(EventKind, Option<String>)> = events_after(store, from)
        .await
        .into_iter()
        .filter(|e| e.namespace.as_deref() == Some("suite-exempt"))
        .map(|e| (e.kind, e.detail["scope"].as_str().map(str::to_string)))
        .collect();
    assert_eq!(events.len(), 6 + 5, "{events:?}");
    assert!(events[..6]
        .iter()
        .all(|(kind, _)| *kind == EventKind::ExemptionSet));
    assert!(events[6..]
        .iter()
        .all(|(kind, _)| *kind == EventKind::ExemptionRemoved));
    assert_eq!(scope_namespace("*"), None);
    assert_eq!(scope_namespace(scopes[2]), Some("suite-exempt"));
}

pub async fn policies_are_set_per_namespace(store: &dyn MetaStore) {
    let from = store.last_event_position().await.unwrap();
    let name = "suite-policy";
    let policy = |mode, severity: &str, block_unscanned, at| PolicyRow {
        namespace: name.to_string(),
        mode,
        severity: severity.to_string(),
        block_unscanned,
        attach_sbom: true,
        updated_at: at,
    };
    // No namespace, no policy.
    let missing = store
        .set_policy(&at(NOW), &policy(PolicyMode::Block, "high", false, NOW))
        .await;
    assert!(
        matches!(missing, Err(MetaError::NotFound)),
        "got {missing:?}"
    );
    store
        .create_namespace(&at(NOW), &namespace(name, Visibility::Private), None)
        .await
        .unwrap();
    assert_eq!(store.policy(name).await.unwrap(), None);

    let steps = [
        policy(PolicyMode::Warn, "any", false, NOW + 1),
        // The same settings again: nothing changes, no event.
        policy(PolicyMode::Warn, "any", false, NOW + 2),
        policy(PolicyMode::Block, "high", true, NOW + 3),
        // Only the SBOM setting changes: a change, with its event.
        PolicyRow {
            attach_sbom: false,
            ..policy(PolicyMode::Block, "high", true, NOW + 4)
        },
    ];
    for step in &steps {
        store.set_policy(&at(step.updated_at), step).await.unwrap();
    }
    assert_eq!(store.policy(name).await.unwrap(), Some(steps[3].clone()));
    let listed: Vec<PolicyRow> = store
        .list_policies()
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.namespace == name)
        .collect();
    assert_eq!(listed, vec![steps[3].clone()]);

    let events: Vec<serde_json::Value> = events_after(store, from)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::VulnerabilityPolicySet)
        .filter(|e| e.namespace.as_deref() == Some(name))
        .map(|e| e.detail)
        .collect();
    assert_eq!(
        events,
        vec![
            serde_json::json!({"mode": "warn", "severity": "any", "block_unscanned": false, "attach_sbom": true, "previous": null}),
            serde_json::json!({"mode": "block", "severity": "high", "block_unscanned": true, "attach_sbom": true, "previous": "warn"}),
            serde_json::json!({"mode": "block", "severity": "high", "block_unscanned": true, "attach_sbom": false, "previous": "block"}),
        ]
    );

    // The policy goes with its namespace.
    store.delete_namespace(&at(NOW + 5), name).await.unwrap();
    assert_eq!(store.policy(name).await.unwrap(), None);
}

/// Images indexed before the store kept package keys (simulated by
/// forgetting an image's keys, as migration 0030 finds such images) are
/// listed with a repository holding them, in digest order and paged, until
/// their keys are recorded, once; a finished indexing records them too, and
/// the backfill does not record keys of an image queued again. Needs the
/// SQL store itself, to forget keys: each backend's tests run it.
pub async fn images_without_package_keys_are_listed_until_recorded<B: 'static>(
    sql: &crate::sql::SqlMetaStore<B>,
) where
    crate::sql::SqlMetaStore<B>: MetaStore,
{
    let store: &dyn MetaStore = sql;
    let left = repository("suite-backfill/left");
    let layer = digest_of("suite-backfill layer");
    let one = image("suite-backfill one", &[&layer]);
    let two = image("suite-backfill two", &[&layer]);
    link(store, &left, &layer, 5).await;
    put(store, &left, &one, None).await;
    put(store, &left, &two, None).await;
    let (one, two) = (one.record.digest, two.record.digest);
    let nobody = digest_of("suite-backfill held by nobody");
    let lodash = package_key("npm", "suite-backfill-lodash");
    for manifest in [&one, &two, &nobody] {
        assert!(store
            .enqueue_scan(&left, manifest, NOW, false)
            .await
            .unwrap());
        store.take_scan("suite", NOW, 30).await.unwrap().unwrap();
        store
            .finish_scan(
                "suite",
                manifest,
                &FinishedScan {
                    state: &IndexState::Done,
                    layers: std::slice::from_ref(&layer),
                    package_keys: std::slice::from_ref(&lodash),
                    new_layer_indexes: &[],
                },
                NOW,
            )
            .await
            .unwrap();
    }
    let listed = |after: Option<Digest>, limit| async move {
        store
            .images_without_package_keys(after.as_ref(), limit)
            .await
            .unwrap()
            .into_iter()
            .map(|(row, repository)| (row.manifest, row.layers, repository))
            .collect::<Vec<_>>()
    };
    assert_eq!(listed(None, 10).await, Vec::new());

    for manifest in [&one, &two, &nobody] {
        sql.forget_image_packages(manifest).await.unwrap();
    }
    let found = |keys: Vec<String>| async move {
        store.images_with_packages(&keys, None, 10).await.unwrap()
    };
    assert_eq!(found(vec![lodash.clone()]).await, Vec::new());
    let mut expected = vec![
        (one.clone(), vec![layer.clone()], Some(left.clone())),
        (two.clone(), vec![layer.clone()], Some(left.clone())),
        (nobody.clone(), vec![layer.clone()], None),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(listed(None, 10).await, expected);
    assert_eq!(listed(None, 2).await, expected[..2]);
    assert_eq!(listed(Some(expected[1].0.clone()), 2).await, expected[2..]);

    // Recorded once: the image is found by its packages and leaves the list.
    assert!(store
        .record_image_packages(&one, std::slice::from_ref(&lodash))
        .await
        .unwrap());
    assert!(!store
        .record_image_packages(&one, std::slice::from_ref(&lodash))
        .await
        .unwrap());
    assert_eq!(found(vec![lodash.clone()]).await, vec![one.clone()]);
    let rest: Vec<Digest> = listed(None, 10).await.into_iter().map(|e| e.0).collect();
    assert!(!rest.contains(&one) && rest.contains(&two) && rest.contains(&nobody));

    // Queued again, an image is left to its indexing, which records its
    // keys when it finishes.
    assert!(store
        .enqueue_scan(&left, &two, NOW + 1, true)
        .await
        .unwrap());
    assert!(!store
        .record_image_packages(&two, std::slice::from_ref(&lodash))
        .await
        .unwrap());
    assert_eq!(
        listed(None, 10).await,
        vec![(nobody.clone(), vec![layer.clone()], None)]
    );
    store
        .take_scan("suite", NOW + 1, 30)
        .await
        .unwrap()
        .unwrap();
    store
        .finish_scan(
            "suite",
            &two,
            &FinishedScan {
                state: &IndexState::Done,
                layers: std::slice::from_ref(&layer),
                package_keys: std::slice::from_ref(&lodash),
                new_layer_indexes: &[],
            },
            NOW + 1,
        )
        .await
        .unwrap();
    let mut both = vec![one.clone(), two.clone()];
    both.sort();
    assert_eq!(found(vec![lodash.clone()]).await, both);
    assert_eq!(listed(None, 10).await.len(), 1);
}
