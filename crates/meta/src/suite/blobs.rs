//! The shared suite of [`BlobLinkStore`](crate::BlobLinkStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] =
    &[("blob_links_are_idempotent_and_per_repository", |store| {
        Box::pin(blob_links_are_idempotent_and_per_repository(store))
    })];

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
