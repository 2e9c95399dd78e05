//! The shared suite of [`MemberStore`](crate::MemberStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("members_are_added_changed_and_removed", |store| {
        Box::pin(members_are_added_changed_and_removed(store))
    }),
    ("the_last_owner_stays_one", |store| {
        Box::pin(the_last_owner_stays_one(store))
    }),
];

/// Two owners taking each other's role at once (one demoted, the other
/// removed, in the same instant) never leave the namespace without one:
/// the check is made in each change's transaction.
pub async fn the_last_owner_stays_one(store: &dyn MetaStore) {
    let (ns, x, y) = ("as-mem-owned", "as-mem-owner-x", "as-mem-owner-y");
    for name in [x, y] {
        store.create_user(&at(NOW), &user(name)).await.unwrap();
    }
    store
        .create_namespace(&at(NOW), &namespace(ns, Visibility::Private), None)
        .await
        .unwrap();
    let owners = || async {
        let members = store.list_members(ns).await.unwrap();
        members
            .into_iter()
            .filter(|m| m.role == "owner")
            .map(|m| m.user)
            .collect::<Vec<_>>()
    };
    for round in 0..5 {
        for name in [x, y] {
            store.set_member(&at(NOW), ns, name, "owner").await.unwrap();
        }
        let change = at(NOW);
        let (demoted, removed) = tokio::join!(
            store.set_member(&change, ns, x, "reader"),
            store.remove_member(&change, ns, y)
        );
        let refused = [&demoted, &removed]
            .iter()
            .filter(|outcome| matches!(outcome, Err(MetaError::LastOwner)))
            .count();
        assert_eq!(refused, 1, "round {round}: {demoted:?}, {removed:?}");
        assert_eq!(owners().await.len(), 1, "round {round}");
    }
    // The one owner left can be neither demoted nor removed; another
    // member can.
    let last = owners().await.remove(0);
    assert!(matches!(
        store.set_member(&at(NOW), ns, &last, "writer").await,
        Err(MetaError::LastOwner)
    ));
    assert!(matches!(
        store.remove_member(&at(NOW), ns, &last).await,
        Err(MetaError::LastOwner)
    ));
}

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
    store
        .create_namespace(&at(NOW), &namespace("as-mem-ms", Visibility::Public), None)
        .await
        .unwrap();
    store
        .set_member(&at(NOW), "as-mem-ms", "as-mem-b", "owner")
        .await
        .unwrap();
    assert_eq!(
        store.memberships_of("as-mem-b").await.unwrap(),
        vec![
            MemberRow {
                namespace: "as-mem-ms".into(),
                user: "as-mem-b".into(),
                role: "owner".into()
            },
            MemberRow {
                namespace: "as-mem-ns".into(),
                user: "as-mem-b".into(),
                role: "maintainer".into()
            },
        ]
    );
    assert!(store
        .memberships_of("as-mem-nobody")
        .await
        .unwrap()
        .is_empty());
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
