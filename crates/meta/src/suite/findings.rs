//! The shared suite of [`FindingCountStore`](crate::FindingCountStore).

use super::*;
use crate::{ImageFindings, NamespaceFindings, SeverityCounts};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    (
        "finding_counts_are_summed_per_namespace_for_live_images",
        |store| {
            Box::pin(finding_counts_are_summed_per_namespace_for_live_images(
                store,
            ))
        },
    ),
    (
        "finding_counts_follow_their_images_into_the_trash_out_of_it_and_away",
        |store| {
            Box::pin(finding_counts_follow_their_images_into_the_trash_out_of_it_and_away(store))
        },
    ),
];

fn counts(critical: u64, high: u64, medium: u64, low: u64, unknown: u64) -> SeverityCounts {
    SeverityCounts {
        critical,
        high,
        medium,
        low,
        unknown,
    }
}

/// Rows are replaced per repository and image; only images with findings
/// that are stored and not in the trash count; the namespace filter and
/// staleness (another generation, or invalidated) work.
pub async fn finding_counts_are_summed_per_namespace_for_live_images(store: &dyn MetaStore) {
    let app = repository("suite-findings-a/app");
    let web = repository("suite-findings-a/web");
    let other = repository("suite-findings-b/app");
    let layer = digest_of("suite-findings layer");
    let mut images = Vec::new();
    for (repo, payload) in [
        (&app, "suite-findings one"),
        (&app, "suite-findings two"),
        (&web, "suite-findings three"),
        (&other, "suite-findings four"),
        (&app, "suite-findings trashed"),
    ] {
        link(store, repo, &layer, 7).await;
        let manifest = image(payload, &[&layer]);
        put(store, repo, &manifest, None).await;
        images.push(manifest.record.digest);
    }
    let row = |repo: &RepoName, digest: &Digest, generation, counts| ImageFindings {
        repository: repo.clone(),
        manifest: digest.clone(),
        generation,
        counts,
        assessed_at: NOW,
    };
    for finding in [
        // Replaced by the next row of the same image.
        row(&app, &images[0], 1, counts(9, 9, 9, 9, 9)),
        row(&app, &images[0], 2, counts(1, 2, 0, 0, 0)),
        // No findings: not counted.
        row(&app, &images[1], 2, counts(0, 0, 0, 0, 0)),
        row(&web, &images[2], 2, counts(0, 1, 3, 0, 1)),
        row(&other, &images[3], 2, counts(0, 0, 0, 4, 0)),
        row(&app, &images[4], 2, counts(5, 0, 0, 0, 0)),
        // An image that is not stored (deleted since): not counted.
        row(
            &app,
            &digest_of("suite-findings gone"),
            2,
            counts(1, 0, 0, 0, 0),
        ),
    ] {
        store.record_image_findings(&finding).await.unwrap();
    }
    store
        .trash_manifest(&at(NOW), &app, &images[4], true)
        .await
        .unwrap();
    let ours = |rows: Vec<NamespaceFindings>| -> Vec<NamespaceFindings> {
        rows.into_iter()
            .filter(|r| r.namespace.starts_with("suite-findings-"))
            .collect()
    };
    let a = NamespaceFindings {
        namespace: "suite-findings-a".into(),
        images: 2,
        counts: counts(1, 3, 3, 0, 1),
    };
    let b = NamespaceFindings {
        namespace: "suite-findings-b".into(),
        images: 1,
        counts: counts(0, 0, 0, 4, 0),
    };
    assert_eq!(
        ours(store.findings_by_namespace(None).await.unwrap()),
        vec![a.clone(), b.clone()]
    );
    let only_b = ["suite-findings-b".to_string(), "suite-absent".to_string()];
    assert_eq!(
        store.findings_by_namespace(Some(&only_b)).await.unwrap(),
        vec![b.clone()]
    );
    assert_eq!(
        store.findings_by_namespace(Some(&[])).await.unwrap(),
        vec![]
    );

    // Staleness: every row is of generation 2; invalidating namespace b
    // makes its row stale, and another generation makes them all stale.
    let stale = |rows: Vec<(RepoName, Digest)>| -> Vec<(RepoName, Digest)> {
        let mut rows: Vec<_> = rows
            .into_iter()
            .filter(|(repo, _)| repo.namespace().starts_with("suite-findings-"))
            .collect();
        rows.sort_by(|x, y| (x.0.as_str(), x.1.as_str()).cmp(&(y.0.as_str(), y.1.as_str())));
        rows
    };
    assert_eq!(
        stale(store.stale_image_findings(2, 100).await.unwrap()),
        vec![]
    );
    store
        .invalidate_image_findings(Some("suite-findings-b"))
        .await
        .unwrap();
    assert_eq!(
        stale(store.stale_image_findings(2, 100).await.unwrap()),
        vec![(other.clone(), images[3].clone())]
    );
    assert_eq!(
        stale(store.stale_image_findings(3, 100).await.unwrap()).len(),
        6
    );
    assert_eq!(store.stale_image_findings(3, 2).await.unwrap().len(), 2);

    // Forgetting a row removes it from the figures and from the stale ones.
    store
        .forget_image_findings(&other, &images[3])
        .await
        .unwrap();
    assert_eq!(
        ours(store.findings_by_namespace(None).await.unwrap()),
        vec![a]
    );
    assert_eq!(
        stale(store.stale_image_findings(2, 100).await.unwrap()),
        vec![]
    );
    store.invalidate_image_findings(None).await.unwrap();
    assert_eq!(
        stale(store.stale_image_findings(2, 100).await.unwrap()).len(),
        5
    );

    for (repo, digest) in [
        (&app, &images[0]),
        (&app, &images[1]),
        (&web, &images[2]),
        (&other, &images[3]),
        (&app, &digest_of("suite-findings gone")),
        (&app, &images[4]),
    ] {
        store.forget_image_findings(repo, digest).await.unwrap();
    }
    for (repo, digest) in [
        (&app, &images[0]),
        (&app, &images[1]),
        (&web, &images[2]),
        (&other, &images[3]),
    ] {
        delete(store, repo, digest).await;
    }
}

/// Whether a row counts follows its image in the transaction that trashes,
/// restores or deletes it, whichever way the row was written: a trashed
/// image leaves the count, a restored one returns, a deleted one's row is
/// gone, and a row written for a trashed image does not count.
pub async fn finding_counts_follow_their_images_into_the_trash_out_of_it_and_away(
    store: &dyn MetaStore,
) {
    let repo = repository("suite-live-findings/app");
    let layer = digest_of("suite-live-findings layer");
    link(store, &repo, &layer, 7).await;
    let mut images = Vec::new();
    for payload in [
        "suite-live-findings x",
        "suite-live-findings y",
        "suite-live-findings z",
    ] {
        let manifest = image(payload, &[&layer]);
        put(store, &repo, &manifest, None).await;
        images.push(manifest.record.digest);
    }
    let (x, y, z) = (&images[0], &images[1], &images[2]);
    let record = |digest: &Digest, counts: SeverityCounts| {
        let row = ImageFindings {
            repository: repo.clone(),
            manifest: digest.clone(),
            generation: 1,
            counts,
            assessed_at: NOW,
        };
        async move { store.record_image_findings(&row).await.unwrap() }
    };
    // (images, critical, high) of the namespace; none is no row at all.
    let figures = || async {
        store
            .findings_by_namespace(Some(&["suite-live-findings".to_string()]))
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.images, row.counts.critical, row.counts.high))
            .next()
    };
    record(x, counts(1, 0, 0, 0, 0)).await;
    record(y, counts(0, 2, 0, 0, 0)).await;
    assert_eq!(figures().await, Some((2, 1, 2)));

    store
        .trash_manifest(&at(NOW), &repo, x, false)
        .await
        .unwrap()
        .expect("x was stored");
    assert_eq!(figures().await, Some((1, 0, 2)), "x is in the trash");
    store
        .restore_manifest(&at(NOW + 1), &repo, x)
        .await
        .unwrap()
        .expect("x was in the trash");
    assert_eq!(figures().await, Some((2, 1, 2)), "x is back");

    // Rows written while the image is in the trash, new or replacing one.
    store
        .trash_manifest(&at(NOW + 2), &repo, y, false)
        .await
        .unwrap()
        .expect("y was stored");
    store
        .trash_manifest(&at(NOW + 2), &repo, z, false)
        .await
        .unwrap()
        .expect("z was stored");
    record(y, counts(0, 3, 0, 0, 0)).await;
    record(z, counts(4, 0, 0, 0, 0)).await;
    assert_eq!(figures().await, Some((1, 1, 0)), "y and z are in the trash");
    store
        .restore_manifest(&at(NOW + 3), &repo, y)
        .await
        .unwrap()
        .expect("y was in the trash");
    assert_eq!(
        figures().await,
        Some((2, 1, 3)),
        "y is back with its new row"
    );

    // Deleting an image deletes its row: nothing is left to refresh.
    delete(store, &repo, x).await;
    assert_eq!(figures().await, Some((1, 0, 3)), "x is deleted");
    let stale: Vec<Digest> = store
        .stale_image_findings(2, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|(r, _)| r == &repo)
        .map(|(_, digest)| digest)
        .collect();
    assert!(!stale.contains(x), "x's row is gone: {stale:?}");
    assert_eq!(stale.len(), 2);

    store
        .restore_manifest(&at(NOW + 4), &repo, z)
        .await
        .unwrap()
        .expect("z was in the trash");
    assert_eq!(figures().await, Some((2, 4, 3)), "z is back");
    delete(store, &repo, y).await;
    delete(store, &repo, z).await;
    assert_eq!(figures().await, None, "every image is deleted");
    assert!(store
        .stale_image_findings(2, 100)
        .await
        .unwrap()
        .iter()
        .all(|(r, _)| r != &repo));
}
