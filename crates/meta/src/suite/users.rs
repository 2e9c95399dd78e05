//! The shared suite of [`UserStore`](crate::UserStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("users_are_created_once_and_updated", |store| {
        Box::pin(users_are_created_once_and_updated(store))
    }),
    ("disabling_a_user_revokes_their_refresh_tokens", |store| {
        Box::pin(disabling_a_user_revokes_their_refresh_tokens(store))
    }),
    ("the_last_enabled_administrator_stays_one", |store| {
        Box::pin(the_last_enabled_administrator_stays_one(store))
    }),
];

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
        .set_password_hash(&at(NOW), "as-users-alice", "$argon2id$new", false)
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
            .set_password_hash(&at(NOW), "as-users-nobody", "x", false)
            .await,
        Err(MetaError::NotFound)
    ));
    let names = only_prefixed(store.list_users().await.unwrap(), |u| &u.name, "as-users-");
    assert_eq!(names, vec!["as-users-alice", "as-users-bob"]);
}

/// When the refresh token stored under `hash` was revoked.
async fn revoked_at(store: &dyn MetaStore, hash: &str) -> Option<Timestamp> {
    store
        .get_refresh_token(hash)
        .await
        .unwrap()
        .expect("the refresh token is stored")
        .revoked_at
}

pub async fn disabling_a_user_revokes_their_refresh_tokens(store: &dyn MetaStore) {
    let name = "as-users-carol";
    store.create_user(&at(NOW), &user(name)).await.unwrap();
    let token = |hash: &str| RefreshTokenRow {
        secret_hash: hash.to_string(),
        user: name.into(),
        family: hash.to_string(),
        created_at: NOW,
        expires_at: Some(NOW + 86_400),
        revoked_at: None,
    };
    let (one, two, three) = ("c1".repeat(32), "c2".repeat(32), "c3".repeat(32));
    store.create_refresh_token(&token(&one)).await.unwrap();

    store.set_disabled(&at(NOW + 5), name, true).await.unwrap();
    let disabled = store.get_user(name).await.unwrap().unwrap();
    assert_eq!(disabled.disabled_at, Some(NOW + 5));
    assert_eq!(revoked_at(store, &one).await, Some(NOW + 5));
    // Disabling again keeps the first time.
    store.set_disabled(&at(NOW + 6), name, true).await.unwrap();
    assert_eq!(
        store.get_user(name).await.unwrap().unwrap().disabled_at,
        Some(NOW + 5)
    );
    store.set_disabled(&at(NOW + 7), name, false).await.unwrap();
    assert_eq!(
        store.get_user(name).await.unwrap().unwrap().disabled_at,
        None
    );

    // A new password revokes the stored logins; an upgraded hash does not.
    store.create_refresh_token(&token(&two)).await.unwrap();
    store
        .set_password_hash(&at(NOW + 8), name, "$argon2id$stronger", true)
        .await
        .unwrap();
    assert_eq!(revoked_at(store, &two).await, None);
    store
        .set_password_hash(&at(NOW + 9), name, "$argon2id$changed", false)
        .await
        .unwrap();
    assert_eq!(revoked_at(store, &two).await, Some(NOW + 9));
    store.create_refresh_token(&token(&three)).await.unwrap();
    assert_eq!(revoked_at(store, &three).await, None);

    assert!(matches!(
        store.set_disabled(&at(NOW), "as-users-nobody", true).await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        store.set_disabled(&at(NOW), "as-users-nobody", false).await,
        Err(MetaError::NotFound)
    ));
}

/// The names of the enabled administrators.
async fn enabled_admins(store: &dyn MetaStore) -> Vec<String> {
    let users = store.list_users().await.unwrap();
    users
        .into_iter()
        .filter(|u| u.is_admin && u.disabled_at.is_none())
        .map(|u| u.name)
        .collect()
}

/// Two administrators taking each other's role at once (one demoted, the
/// other disabled, in the same instant) never leave the registry without
/// one: the check is made in each change's transaction. Run with the
/// whole suite on one store, other tests' administrators exist and both
/// changes may pass; the registry still keeps one.
pub async fn the_last_enabled_administrator_stays_one(store: &dyn MetaStore) {
    let (x, y) = ("as-users-admin-x", "as-users-admin-y");
    let others = enabled_admins(store).await;
    for name in [x, y] {
        store.create_user(&at(NOW), &user(name)).await.unwrap();
    }
    for round in 0..5 {
        for name in [x, y] {
            store.set_admin(&at(NOW), name, true).await.unwrap();
            store.set_disabled(&at(NOW), name, false).await.unwrap();
        }
        let change = at(NOW);
        let (demoted, disabled) = tokio::join!(
            store.set_admin(&change, x, false),
            store.set_disabled(&change, y, true)
        );
        let remaining = enabled_admins(store).await;
        assert!(
            !remaining.is_empty(),
            "round {round}: no administrator left"
        );
        if others.is_empty() {
            let refused = [&demoted, &disabled]
                .iter()
                .filter(|outcome| matches!(outcome, Err(MetaError::LastAdmin)))
                .count();
            assert_eq!(refused, 1, "round {round}: {demoted:?}, {disabled:?}");
            assert_eq!(remaining.len(), 1, "round {round}: {remaining:?}");
        } else {
            demoted.unwrap();
            disabled.unwrap();
        }
    }
    if others.is_empty() {
        // The one left can be neither demoted, disabled nor deleted.
        let last = enabled_admins(store).await.remove(0);
        assert!(matches!(
            store.set_admin(&at(NOW), &last, false).await,
            Err(MetaError::LastAdmin)
        ));
        assert!(matches!(
            store.set_disabled(&at(NOW), &last, true).await,
            Err(MetaError::LastAdmin)
        ));
        assert!(matches!(
            store.delete_user(&at(NOW), &last).await,
            Err(MetaError::LastAdmin)
        ));
        assert_eq!(enabled_admins(store).await, vec![last]);
    }
}
