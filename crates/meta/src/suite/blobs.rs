//! The shared suite of [`BlobLinkStore`](crate::BlobLinkStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("blob_links_are_idempotent_and_per_repository", |store| {
        Box::pin(blob_links_are_idempotent_and_per_repository(store))
    }),
    ("repositories_with_a_blob_are_listed_and_paged", |store| {
        Box::pin(repositories_with_a_blob_are_listed_and_paged(store))
    }),
];

pub async fn blob_links_are_idempotent_and_per_repository(store: &dyn MetaStore) {
    let one = repository("suite-blobs/one");
    let two = repository("suite-blobs/two");
    let blob = digest_of("suite-blobs layer");

    assert_eq!(store.linked_blob_size(&one, &blob).await.unwrap(), None);
    assert!(
        !store.unlink_blob(&at(NOW), &one, &blob).await.unwrap(),
        "nothing to unlink yet"
    );

    link(store, &one, &blob, 17).await;
    link(store, &one, &blob, 17).await;
    assert_eq!(store.linked_blob_size(&one, &blob).await.unwrap(), Some(17));
    assert_eq!(
        store.linked_blob_size(&two, &blob).await.unwrap(),
        None,
        "a link in one repository is invisible from another"
    );
    assert!(!store.unlink_blob(&at(NOW), &two, &blob).await.unwrap());

    link(store, &two, &blob, 17).await;
    assert!(store.unlink_blob(&at(NOW), &one, &blob).await.unwrap());
    assert!(
        !store.unlink_blob(&at(NOW), &one, &blob).await.unwrap(),
        "unlinking twice is harmless"
    );
    assert_eq!(store.linked_blob_size(&one, &blob).await.unwrap(), None);
    assert_eq!(
        store.linked_blob_size(&two, &blob).await.unwrap(),
        Some(17),
        "unlinking from one repository leaves the other's link"
    );
    assert!(store.unlink_blob(&at(NOW), &two, &blob).await.unwrap());
    assert_eq!(store.linked_blob_size(&two, &blob).await.unwrap(), None);

    // A link creates the repository, and unlinking does not remove it.
    assert_eq!(list_tags(store, &one).await, Some(Vec::new()));
}

pub async fn repositories_with_a_blob_are_listed_and_paged(store: &dyn MetaStore) {
    let blob = digest_of("suite-holders blob");
    let other = digest_of("suite-holders other blob");
    let names = [
        "suite-holders/b",
        "suite-holders/a/x",
        "suite-holders/a",
        "suite-holders/a-b",
    ];
    for name in names {
        link(store, &repository(name), &blob, 4).await;
    }
    link(store, &repository("suite-holders/c"), &other, 6).await;
    let listed = |names: Vec<RepoName>| -> Vec<String> {
        names.iter().map(|n| n.as_str().to_string()).collect()
    };
    // Byte order: '-' (0x2d) < '/' (0x2f) < letters.
    let sorted = [
        "suite-holders/a",
        "suite-holders/a-b",
        "suite-holders/a/x",
        "suite-holders/b",
    ];
    assert_eq!(
        listed(store.repositories_with_blob(&blob, None, 10).await.unwrap()),
        sorted
    );
    let first = store.repositories_with_blob(&blob, None, 3).await.unwrap();
    assert_eq!(listed(first.clone()), sorted[..3]);
    let rest = store
        .repositories_with_blob(&blob, first.last(), 3)
        .await
        .unwrap();
    assert_eq!(listed(rest), sorted[3..]);
    // An unlinked repository is no longer a holder; an unknown blob has none.
    assert!(store
        .unlink_blob(&at(NOW), &repository("suite-holders/a-b"), &blob)
        .await
        .unwrap());
    assert_eq!(
        listed(store.repositories_with_blob(&blob, None, 10).await.unwrap()),
        ["suite-holders/a", "suite-holders/a/x", "suite-holders/b"]
    );
    let unknown = digest_of("suite-holders unknown");
    assert!(store
        .repositories_with_blob(&unknown, None, 10)
        .await
        .unwrap()
        .is_empty());

    for name in names.iter().chain(&["suite-holders/c"]) {
        delete_repository(store, &repository(name)).await;
    }
    store
        .delete_namespace(&at(NOW), "suite-holders")
        .await
        .unwrap();
}
