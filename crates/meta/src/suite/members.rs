//! The shared suite of [`MemberStore`](crate::MemberStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[("members_are_added_changed_and_removed", |store| {
    Box::pin(members_are_added_changed_and_removed(store))
})];

pub async fn members_are_added_changed_and_removed(store: &dyn MetaStore) {
    store
        .create_user(&at(NOW), &user("as-mem-a"))
        .await
        .unwrap();
    store
        .create_user(&at(NOW), &user("as-mem-b"))
        .await
        .unwrap();
    store
        .create_namespace(&at(NOW), &namespace("as-mem-ns", Visibility::Private), None)
        .await
        .unwrap();
    store
        .set_member(&at(NOW), "as-mem-ns", "as-mem-b", "reader")
        .await
        .unwrap();
    store
        .set_member(&at(NOW), "as-mem-ns", "as-mem-a", "writer")
        .await
        .unwrap();
    store
        .set_member(&at(NOW), "as-mem-ns", "as-mem-b", "maintainer")
        .await
        .unwrap();
    assert_eq!(
        store.list_members("as-mem-ns").await.unwrap(),
        vec![
            MemberRow {
                namespace: "as-mem-ns".into(),
                user: "as-mem-a".into(),
                role: "writer".into()
            },
            MemberRow {
                namespace: "as-mem-ns".into(),
                user: "as-mem-b".into(),
                role: "maintainer".into()
            },
        ]
    );
    assert!(matches!(
        store
            .set_member(&at(NOW), "as-mem-ns", "as-mem-nobody", "reader")
            .await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        store
            .set_member(&at(NOW), "as-mem-none", "as-mem-a", "reader")
            .await,
        Err(MetaError::NotFound)
    ));
    store
        .remove_member(&at(NOW), "as-mem-ns", "as-mem-a")
        .await
        .unwrap();
    assert!(matches!(
        store.remove_member(&at(NOW), "as-mem-ns", "as-mem-a").await,
        Err(MetaError::NotFound)
    ));
    assert_eq!(
        store.member_role("as-mem-ns", "as-mem-a").await.unwrap(),
        None
    );
    assert!(store.list_members("as-mem-none").await.unwrap().is_empty());
}
