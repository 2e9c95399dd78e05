//! The shared suite of [`GcStore`](crate::GcStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] =
    &[("gc_reference_facts_follow_links_and_manifests", |store| {
        Box::pin(gc_reference_facts_follow_links_and_manifests(store))
    })];

/// The link candidates of `repo` at cut-off `at`.
async fn links_at(
    store: &dyn MetaStore,
    repo: &RepoName,
    at: Timestamp,
) -> Vec<crate::LinkCandidate> {
    let cutoffs = crate::GcCutoffs {
        unreferenced_before: at,
        never_referenced_before: at,
    };
    store
        .expired_links(cutoffs, None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| &c.repository == repo)
        .collect()
}

pub async fn gc_reference_facts_follow_links_and_manifests(store: &dyn MetaStore) {
    use crate::{GcCutoffs, ManifestCandidate};
    let repo = repository("suite-gc/app");
    let layer = digest_of("suite-gc layer");
    let loose = digest_of("suite-gc loose");
    let mine = |digest: &Digest| *digest == layer || *digest == loose;
    let cutoffs = |at: Timestamp| GcCutoffs {
        unreferenced_before: at,
        never_referenced_before: at,
    };

    // A pushed layer is a candidate link from its push; a manifest
    // referencing it clears that, and deleting the manifest sets it again.
    link(store, &repo, &layer, 5).await;
    link(store, &repo, &loose, 6).await;
    assert_eq!(links_at(store, &repo, NOW + 1).await.len(), 2);
    // A refused push takes nothing out of candidacy: the links it found were
    // marked referenced in the transaction its refusal rolled back.
    let absent = digest_of("suite-gc absent");
    let missing_one = image("suite-gc missing one", &[&layer, &absent]);
    let mut wrong_size = image("suite-gc wrong size", &[&layer]);
    wrong_size.blob_sizes = vec![(layer.clone(), 4)];
    for refused in [&missing_one, &wrong_size] {
        let result = store.put_manifest(&at(NOW), &repo, refused, None).await;
        assert!(
            matches!(
                result,
                Err(MetaError::MissingBlobs(_) | MetaError::BlobSizeMismatch(_))
            ),
            "{result:?}"
        );
        assert_eq!(links_at(store, &repo, NOW + 1).await.len(), 2);
    }
    let manifest = image("suite-gc image", &[&layer]);
    put(store, &repo, &manifest, None).await;
    let candidates = links_at(store, &repo, NOW + 1).await;
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0].digest, loose);
    let deleted = store
        .delete_manifest(&at(NOW + 10), &repo, &manifest.record.digest, true)
        .await
        .unwrap()
        .unwrap();
    assert!(deleted.referrers.is_empty());
    assert_eq!(
        links_at(store, &repo, NOW + 1).await.len(),
        1,
        "unreferenced from NOW + 10"
    );
    let candidates = links_at(store, &repo, NOW + 11).await;
    assert_eq!(candidates.len(), 2);

    // Removing the links orphans both blobs as of their links' times.
    let removed = store
        .remove_links(&at(NOW + 20), &candidates, cutoffs(NOW + 11))
        .await
        .unwrap();
    assert_eq!(removed.len(), 2);
    assert_eq!(store.linked_blob_size(&repo, &layer).await.unwrap(), None);
    let blobs: Vec<_> = store
        .expired_blobs(NOW + 11, None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|b| mine(&b.digest))
        .collect();
    assert_eq!(blobs.len(), 2);

    // A re-link clears a blob's candidacy; the deletion re-checks it.
    link(store, &repo, &loose, 6).await;
    let begun = store
        .begin_blob_deletions(&at(NOW + 30), &blobs, NOW + 11)
        .await
        .unwrap();
    assert_eq!(begun.len(), 1);
    assert_eq!(begun[0].digest, layer);
    assert_eq!(begun[0].size, 5);
    // While the deletion runs, the digest cannot be linked, and it is known.
    match store.link_blob(&at(NOW + 31), &repo, &layer, 5).await {
        Err(MetaError::BlobBeingDeleted) => {}
        other => panic!("expected BlobBeingDeleted, got {other:?}"),
    }
    assert!(store
        .pending_blob_deletions(usize::MAX)
        .await
        .unwrap()
        .iter()
        .any(|b| b.digest == layer));
    assert!(store
        .unknown_blobs(std::slice::from_ref(&layer))
        .await
        .unwrap()
        .is_empty());
    store.finish_blob_deletion(&layer).await.unwrap();
    assert_eq!(
        store
            .unknown_blobs(std::slice::from_ref(&layer))
            .await
            .unwrap(),
        vec![layer.clone()]
    );

    // The orphan sweep's marker is refused for a digest with a row.
    assert!(!store.begin_orphan_deletion(&loose, 6, NOW).await.unwrap());
    assert!(store.begin_orphan_deletion(&layer, 5, NOW).await.unwrap());
    assert!(!store.begin_orphan_deletion(&layer, 5, NOW).await.unwrap());
    store.finish_blob_deletion(&layer).await.unwrap();

    // Untagged manifests: listed by age; a tagged or index-listed one is not.
    let untagged = image("suite-gc untagged", &[&loose]);
    let tagged = image("suite-gc tagged", &[&loose]);
    put(store, &repo, &untagged, None).await;
    put(store, &repo, &tagged, Some(&tag("keep"))).await;
    let listed: Vec<ManifestCandidate> = store
        .expired_untagged_manifests(NOW + 1, None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.repository == repo)
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, untagged.record.digest);
    assert!(
        store
            .delete_untagged_manifest(&at(NOW + 40), &listed[0], NOW)
            .await
            .unwrap()
            .is_none(),
        "too young for that cut-off"
    );
    assert!(store
        .delete_untagged_manifest(&at(NOW + 40), &listed[0], NOW + 1)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        delete(store, &repo, &tagged.record.digest).await,
        tags(&["keep"])
    );
    assert!(store.unlink_blob(&at(NOW), &repo, &loose).await.unwrap());
    assert_clean(
        store,
        &repo,
        &[
            &manifest.record.digest,
            &untagged.record.digest,
            &tagged.record.digest,
        ],
    )
    .await;
}
