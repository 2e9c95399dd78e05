//! The shared suite of [`UserStore`](crate::UserStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[("users_are_created_once_and_updated", |store| {
    Box::pin(users_are_created_once_and_updated(store))
})];

pub async fn users_are_created_once_and_updated(store: &dyn MetaStore) {
    let alice = user("as-users-alice");
    store
        .create_user(&at(NOW), &user("as-users-bob"))
        .await
        .unwrap();
    store.create_user(&at(NOW), &alice).await.unwrap();
    assert!(matches!(
        store.create_user(&at(NOW), &alice).await,
        Err(MetaError::AlreadyExists)
    ));
    assert_eq!(
        store.get_user("as-users-alice").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.get_user("as-users-nobody").await.unwrap(), None);
    store
        .set_password_hash(&at(NOW), "as-users-alice", "$argon2id$new")
        .await
        .unwrap();
    store
        .set_admin(&at(NOW), "as-users-alice", true)
        .await
        .unwrap();
    let updated = store.get_user("as-users-alice").await.unwrap().unwrap();
    assert_eq!(updated.password_hash, "$argon2id$new");
    assert!(updated.is_admin);
    assert!(matches!(
        store.set_admin(&at(NOW), "as-users-nobody", true).await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        store
            .set_password_hash(&at(NOW), "as-users-nobody", "x")
            .await,
        Err(MetaError::NotFound)
    ));
    let names = only_prefixed(store.list_users().await.unwrap(), |u| &u.name, "as-users-");
    assert_eq!(names, vec!["as-users-alice", "as-users-bob"]);
}
