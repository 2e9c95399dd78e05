//! The shared suite of [`NamespaceStore`](crate::NamespaceStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[("namespaces_are_created_with_their_owner", |store| {
    Box::pin(namespaces_are_created_with_their_owner(store))
})];

pub async fn namespaces_are_created_with_their_owner(store: &dyn MetaStore) {
    store.create_user(&user("as-ns-owner")).await.unwrap();
    store
        .create_namespace(&namespace("as-ns-team", "private"), Some("as-ns-owner"))
        .await
        .unwrap();
    store
        .create_namespace(&namespace("as-ns-free", "public"), None)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_namespace(&namespace("as-ns-team", "public"), None)
            .await,
        Err(MetaError::AlreadyExists)
    ));
    // An unknown owner creates nothing, not even the namespace.
    assert!(matches!(
        store
            .create_namespace(&namespace("as-ns-orphan", "private"), Some("as-ns-nobody"))
            .await,
        Err(MetaError::NotFound)
    ));
    assert_eq!(store.get_namespace("as-ns-orphan").await.unwrap(), None);
    assert_eq!(
        store
            .member_role("as-ns-team", "as-ns-owner")
            .await
            .unwrap()
            .as_deref(),
        Some("owner")
    );
    store.set_visibility("as-ns-team", "public").await.unwrap();
    assert_eq!(
        store
            .get_namespace("as-ns-team")
            .await
            .unwrap()
            .unwrap()
            .visibility,
        "public"
    );
    assert!(matches!(
        store.set_visibility("as-ns-nothing", "public").await,
        Err(MetaError::NotFound)
    ));
    let names = only_prefixed(
        store.list_namespaces().await.unwrap(),
        |n| &n.name,
        "as-ns-",
    );
    assert_eq!(names, vec!["as-ns-free", "as-ns-team"]);
}
