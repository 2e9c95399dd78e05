//! The shared suite of [`TrashStore`](crate::TrashStore), and of the reads
//! of [`ManifestStore`](crate::ManifestStore) and
//! [`ImageStore`](crate::ImageStore) that skip the trash.

use super::events::events_after;
use super::*;
use crate::{EventKind, GcCutoffs, TagConflict, TaggedFilter, TrashEntry};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    (
        "trashed_manifests_are_hidden_and_restored_with_their_tags",
        |store| {
            Box::pin(trashed_manifests_are_hidden_and_restored_with_their_tags(
                store,
            ))
        },
    ),
    (
        "a_trashed_manifest_pushed_again_comes_back_with_its_new_tag",
        |store| {
            Box::pin(a_trashed_manifest_pushed_again_comes_back_with_its_new_tag(
                store,
            ))
        },
    ),
    (
        "children_of_a_trashed_index_are_trashed_after_it_and_come_back_with_it",
        |store| {
            Box::pin(children_of_a_trashed_index_are_trashed_after_it_and_come_back_with_it(store))
        },
    ),
    (
        "expired_trash_is_deleted_for_good_and_its_blobs_become_candidates",
        |store| Box::pin(expired_trash_is_deleted_for_good_and_its_blobs_become_candidates(store)),
    ),
];

/// Every link candidate, whatever its age.
async fn link_candidates(store: &dyn MetaStore, repo: &RepoName) -> Vec<Digest> {
    let cutoffs = GcCutoffs {
        unreferenced_before: Timestamp::MAX,
        never_referenced_before: Timestamp::MAX,
    };
    store
        .expired_links(cutoffs, None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|candidate| &candidate.repository == repo)
        .map(|candidate| candidate.digest)
        .collect()
}

async fn trash(store: &dyn MetaStore, repo: &RepoName, digest: &Digest, time: Timestamp) {
    store
        .trash_manifest(&at(time), repo, digest, true)
        .await
        .expect("trash_manifest succeeds")
        .expect("the manifest was live");
}

async fn trash_of(store: &dyn MetaStore, namespace: &str) -> Vec<TrashEntry> {
    store
        .list_trash(Some(namespace), None, usize::MAX)
        .await
        .expect("list_trash succeeds")
}

/// Expires every entry of the namespace, leaving nothing behind.
async fn empty_trash(store: &dyn MetaStore, namespace: &str) {
    for entry in trash_of(store, namespace).await {
        store
            .expire_trash(&at(NOW), &entry.repository, &entry.digest, Timestamp::MAX)
            .await
            .unwrap()
            .expect("the entry expires");
    }
    assert_eq!(trash_of(store, namespace).await, vec![]);
}

pub async fn trashed_manifests_are_hidden_and_restored_with_their_tags(store: &dyn MetaStore) {
    let name = "suite-trash-restore";
    let repo = repository("suite-trash-restore/app");
    let layer = digest_of("suite-trash-restore layer");
    link(store, &repo, &layer, 4).await;
    let app = image("suite-trash-restore image", &[&layer]);
    let signature = referrer(
        "suite-trash-restore sig",
        &app.record.digest,
        SIGNATURE_TYPE,
    );
    let other = image("suite-trash-restore other", &[&layer]);
    put(store, &repo, &app, Some(&tag("v1"))).await;
    put(store, &repo, &app, Some(&tag("latest"))).await;
    put(store, &repo, &signature, Some(&tag("sig"))).await;
    let from = store.last_event_position().await.unwrap();

    let deleted = store
        .trash_manifest(&at(NOW + 5), &repo, &app.record.digest, true)
        .await
        .unwrap()
        .expect("the manifest was live");
    assert_eq!(deleted.tags, tags(&["latest", "v1"]));
    assert_eq!(deleted.referrers, vec![signature.record.digest.clone()]);

    // Gone from every read that serves clients.
    for digest in [&app.record.digest, &signature.record.digest] {
        assert_eq!(store.manifest_by_digest(&repo, digest).await.unwrap(), None);
        assert_eq!(store.image(&repo, digest).await.unwrap(), None);
    }
    assert_eq!(
        store.manifest_by_tag(&repo, &tag("v1")).await.unwrap(),
        None
    );
    assert_eq!(list_tags(store, &repo).await, Some(Vec::new()));
    let referrers = store
        .referrers(&repo, &app.record.digest, None, None, 10, 1024)
        .await
        .unwrap();
    assert_eq!(referrers, vec![]);
    let images = store
        .list_images(&repo, TaggedFilter::Any, None, 10)
        .await
        .unwrap();
    assert_eq!(images, Some(vec![]));
    // A trashed manifest cannot become an index's child, nor be deleted or
    // trashed again.
    let listing = index("suite-trash-restore index", &[&app.record.digest]);
    let refused = store.put_manifest(&at(NOW), &repo, &listing, None).await;
    assert!(
        matches!(&refused, Err(MetaError::MissingManifests(missing)) if missing == &vec![app.record.digest.clone()]),
        "got {refused:?}"
    );
    for with_referrers in [false, true] {
        let again = store
            .trash_manifest(&at(NOW), &repo, &app.record.digest, with_referrers)
            .await
            .unwrap();
        assert_eq!(again, None);
    }
    assert_eq!(
        store
            .delete_manifest(&at(NOW), &repo, &app.record.digest, true)
            .await
            .unwrap(),
        None
    );
    // Its blob stays referenced: the link is no collection candidate.
    assert_eq!(link_candidates(store, &repo).await, vec![]);

    let entries = trash_of(store, name).await;
    assert_eq!(
        entries,
        vec![TrashEntry {
            repository: repo.clone(),
            digest: app.record.digest.clone(),
            trashed_at: NOW + 5,
            trashed_by: "system:suite".to_string(),
            tags: tags(&["latest", "sig", "v1"]),
            referrers: vec![signature.record.digest.clone()],
        }]
    );
    assert_eq!(trash_of(store, "suite-trash-elsewhere").await, vec![]);

    // Meanwhile `latest` names another image: the restore leaves it there.
    put(store, &repo, &other, Some(&tag("latest"))).await;
    let restored = store
        .restore_manifest(&at(NOW + 9), &repo, &app.record.digest)
        .await
        .unwrap()
        .expect("the entry is in the trash");
    assert_eq!(
        restored.manifests,
        vec![app.record.digest.clone(), signature.record.digest.clone()]
    );
    assert_eq!(restored.tags, tags(&["sig", "v1"]));
    assert_eq!(
        restored.conflicts,
        vec![TagConflict {
            tag: tag("latest"),
            current: Some(other.record.digest.clone()),
        }]
    );
    assert_eq!(
        store.manifest_by_tag(&repo, &tag("v1")).await.unwrap(),
        Some(app.record.clone())
    );
    assert_eq!(
        store
            .referrers(&repo, &app.record.digest, None, None, 10, 1024)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(trash_of(store, name).await, vec![]);
    assert_eq!(
        store
            .restore_manifest(&at(NOW), &repo, &app.record.digest)
            .await
            .unwrap(),
        None,
        "an entry is restored once"
    );

    let events: Vec<(EventKind, String, Option<String>)> = events_after(store, from)
        .await
        .into_iter()
        .filter(|e| e.kind != EventKind::ManifestStored)
        .map(|e| {
            (
                e.kind,
                e.digest.map(|d| d.to_string()).unwrap_or_default(),
                e.tag.map(|t| t.to_string()),
            )
        })
        .collect();
    let (a, s, o) = (
        app.record.digest.to_string(),
        signature.record.digest.to_string(),
        other.record.digest.to_string(),
    );
    let event =
        |kind, digest: &str, tag: Option<&str>| (kind, digest.to_string(), tag.map(str::to_string));
    assert_eq!(
        events,
        vec![
            event(EventKind::TagDeleted, &a, Some("latest")),
            event(EventKind::TagDeleted, &a, Some("v1")),
            event(EventKind::TagDeleted, &s, Some("sig")),
            event(EventKind::ManifestTrashed, &a, None),
            event(EventKind::ManifestTrashed, &s, None),
            event(EventKind::TagMoved, &o, Some("latest")),
            event(EventKind::ManifestRestored, &a, None),
            event(EventKind::ManifestRestored, &s, None),
            event(EventKind::TagMoved, &s, Some("sig")),
            event(EventKind::TagMoved, &a, Some("v1")),
        ]
    );

    for digest in [
        &signature.record.digest,
        &app.record.digest,
        &other.record.digest,
    ] {
        delete(store, &repo, digest).await;
    }
    assert_clean(
        store,
        &repo,
        &[
            &app.record.digest,
            &signature.record.digest,
            &other.record.digest,
        ],
    )
    .await;
}

pub async fn a_trashed_manifest_pushed_again_comes_back_with_its_new_tag(store: &dyn MetaStore) {
    let name = "suite-trash-repush";
    let repo = repository("suite-trash-repush/app");
    let layer = digest_of("suite-trash-repush layer");
    link(store, &repo, &layer, 4).await;
    let app = image("suite-trash-repush image", &[&layer]);
    let signature = referrer("suite-trash-repush sig", &app.record.digest, SIGNATURE_TYPE);
    put(store, &repo, &app, Some(&tag("old"))).await;
    put(store, &repo, &signature, None).await;
    trash(store, &repo, &app.record.digest, NOW).await;
    let from = store.last_event_position().await.unwrap();

    put(store, &repo, &app, Some(&tag("new"))).await;
    assert_eq!(
        store.manifest_by_tag(&repo, &tag("new")).await.unwrap(),
        Some(app.record.clone())
    );
    // Its referrers come back with it, its old tags do not.
    assert_eq!(list_tags(store, &repo).await, Some(tags(&["new"])));
    assert!(store
        .manifest_by_digest(&repo, &signature.record.digest)
        .await
        .unwrap()
        .is_some());
    assert_eq!(trash_of(store, name).await, vec![]);
    let kinds: Vec<EventKind> = events_after(store, from)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::ManifestRestored,
            EventKind::ManifestRestored,
            EventKind::TagMoved
        ],
        "no manifest.stored: the manifest was never gone"
    );

    // A referrer trashed with its subject and pushed again comes back
    // alone; the rest of its entry stays in the trash.
    trash(store, &repo, &app.record.digest, NOW).await;
    put(store, &repo, &signature, None).await;
    assert_eq!(
        store
            .manifest_by_digest(&repo, &app.record.digest)
            .await
            .unwrap(),
        None
    );
    let entries = trash_of(store, name).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].referrers, vec![]);

    delete(store, &repo, &signature.record.digest).await;
    empty_trash(store, name).await;
    assert_clean(
        store,
        &repo,
        &[&app.record.digest, &signature.record.digest],
    )
    .await;
}

pub async fn expired_trash_is_deleted_for_good_and_its_blobs_become_candidates(
    store: &dyn MetaStore,
) {
    let name = "suite-trash-expiry";
    let repo = repository("suite-trash-expiry/app");
    let layers: Vec<Digest> = (0..3)
        .map(|n| digest_of(&format!("suite-trash-expiry layer {n}")))
        .collect();
    let images: Vec<NewManifest> = (0..3)
        .map(|n| image(&format!("suite-trash-expiry image {n}"), &[&layers[n]]))
        .collect();
    for (n, image) in images.iter().enumerate() {
        link(store, &repo, &layers[n], 4).await;
        put(store, &repo, image, Some(&tag(&format!("v{n}")))).await;
    }
    // Trashed at three times, the last two at the same second.
    trash(store, &repo, &images[0].record.digest, NOW).await;
    trash(store, &repo, &images[1].record.digest, NOW + 10).await;
    trash(store, &repo, &images[2].record.digest, NOW + 10).await;

    // Listed oldest first, a page at a time.
    let first = store.list_trash(Some(name), None, 2).await.unwrap();
    let rest = store
        .list_trash(Some(name), Some(&first[1].cursor()), 2)
        .await
        .unwrap();
    let mut second_time: Vec<Digest> = vec![first[1].digest.clone(), rest[0].digest.clone()];
    second_time.sort();
    let mut expected: Vec<Digest> = vec![
        images[1].record.digest.clone(),
        images[2].record.digest.clone(),
    ];
    expected.sort();
    assert_eq!(first[0].digest, images[0].record.digest);
    assert_eq!(second_time, expected);
    assert_eq!(rest.len(), 1);

    // Only entries trashed strictly before the cut-off expire.
    let due = store.expired_trash(NOW + 10, None, 10).await.unwrap();
    let due: Vec<&Digest> = due
        .iter()
        .filter(|entry| entry.repository == repo)
        .map(|entry| &entry.digest)
        .collect();
    assert_eq!(due, vec![&images[0].record.digest]);
    let early = store
        .expire_trash(&at(NOW + 20), &repo, &images[1].record.digest, NOW + 10)
        .await
        .unwrap();
    assert_eq!(early, None, "not expired yet");
    assert_eq!(link_candidates(store, &repo).await, vec![]);

    let from = store.last_event_position().await.unwrap();
    let expired = store
        .expire_trash(&at(NOW + 20), &repo, &images[0].record.digest, NOW + 10)
        .await
        .unwrap();
    assert!(expired.is_some());
    let kinds: Vec<EventKind> = events_after(store, from)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![EventKind::TrashExpired, EventKind::ManifestDeleted]
    );
    // Its blob's link is a candidate now, as after any deletion; the others
    // are still held by their trashed images.
    assert_eq!(link_candidates(store, &repo).await, vec![layers[0].clone()]);
    // Gone for good: nothing to restore.
    assert_eq!(
        store
            .restore_manifest(&at(NOW), &repo, &images[0].record.digest)
            .await
            .unwrap(),
        None
    );
    // A restored entry does not expire.
    store
        .restore_manifest(&at(NOW + 30), &repo, &images[1].record.digest)
        .await
        .unwrap()
        .expect("still in the trash");
    assert_eq!(
        store
            .expire_trash(
                &at(NOW + 40),
                &repo,
                &images[1].record.digest,
                Timestamp::MAX
            )
            .await
            .unwrap(),
        None
    );

    delete(store, &repo, &images[1].record.digest).await;
    empty_trash(store, name).await;
    let digests: Vec<&Digest> = images.iter().map(|image| &image.record.digest).collect();
    assert_clean(store, &repo, &digests).await;
    // Trash and tags of a deleted repository go with it.
    let again = image("suite-trash-expiry again", &[&layers[0]]);
    link(store, &repo, &layers[0], 4).await;
    put(store, &repo, &again, Some(&tag("again"))).await;
    trash(store, &repo, &again.record.digest, NOW).await;
    delete_repository(store, &repo).await;
    assert_eq!(trash_of(store, name).await, vec![]);
}

pub async fn children_of_a_trashed_index_are_trashed_after_it_and_come_back_with_it(
    store: &dyn MetaStore,
) {
    let name = "suite-trash-index";
    let repo = repository("suite-trash-index/app");
    let layer = digest_of("suite-trash-index layer");
    link(store, &repo, &layer, 4).await;
    let child = image("suite-trash-index child", &[&layer]);
    let listing = index("suite-trash-index index", &[&child.record.digest]);
    put(store, &repo, &child, Some(&tag("amd64"))).await;
    put(store, &repo, &listing, Some(&tag("v1"))).await;

    // A live index keeps its child; one in the trash does not.
    let refused = store
        .trash_manifest(&at(NOW), &repo, &child.record.digest, true)
        .await;
    assert!(
        matches!(&refused, Err(MetaError::ManifestReferenced(by)) if by == &listing.record.digest),
        "got {refused:?}"
    );
    trash(store, &repo, &listing.record.digest, NOW).await;
    trash(store, &repo, &child.record.digest, NOW).await;
    // A final deletion of the child still waits for the index.
    let hard = store
        .delete_manifest(&at(NOW), &repo, &child.record.digest, true)
        .await;
    assert_eq!(hard.unwrap(), None, "the child is in the trash");

    // Restoring the index brings the child back, tags and all.
    let restored = store
        .restore_manifest(&at(NOW + 1), &repo, &listing.record.digest)
        .await
        .unwrap()
        .expect("the index is in the trash");
    assert_eq!(restored.children, vec![child.record.digest.clone()]);
    assert_eq!(restored.tags, tags(&["v1", "amd64"]));
    assert_eq!(trash_of(store, name).await, vec![]);
    assert!(store
        .manifest_by_digest(&repo, &child.record.digest)
        .await
        .unwrap()
        .is_some());

    // Both trashed again: the child's entry waits for the index's expiry.
    trash(store, &repo, &listing.record.digest, NOW + 2).await;
    trash(store, &repo, &child.record.digest, NOW + 2).await;
    let early = store
        .expire_trash(&at(NOW + 5), &repo, &child.record.digest, Timestamp::MAX)
        .await
        .unwrap();
    assert_eq!(early, None, "its index still lists it");
    // Pushed again, the index brings its child back too: the index with
    // the push's tag only, the child's own entry whole, with its tag.
    put(store, &repo, &listing, Some(&tag("v2"))).await;
    assert_eq!(list_tags(store, &repo).await, Some(tags(&["amd64", "v2"])));
    assert!(store
        .manifest_by_digest(&repo, &child.record.digest)
        .await
        .unwrap()
        .is_some());
    assert_eq!(trash_of(store, name).await, vec![]);

    // Expired in order: the index first, then its child.
    trash(store, &repo, &listing.record.digest, NOW + 3).await;
    trash(store, &repo, &child.record.digest, NOW + 3).await;
    for entry in [
        &child.record.digest,
        &listing.record.digest,
        &child.record.digest,
    ] {
        store
            .expire_trash(&at(NOW + 9), &repo, entry, Timestamp::MAX)
            .await
            .unwrap();
    }
    assert_eq!(trash_of(store, name).await, vec![]);
    assert_clean(
        store,
        &repo,
        &[&child.record.digest, &listing.record.digest],
    )
    .await;
}
