//! The shared suite of [`TokenStore`](crate::TokenStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("access_tokens_are_used_and_revoked", |store| {
        Box::pin(access_tokens_are_used_and_revoked(store))
    }),
    (
        "refresh_tokens_are_revoked_one_by_one_or_per_user",
        |store| Box::pin(refresh_tokens_are_revoked_one_by_one_or_per_user(store)),
    ),
    (
        "refresh_tokens_rotate_and_reuse_revokes_the_family",
        |store| Box::pin(refresh_tokens_rotate_and_reuse_revokes_the_family(store)),
    ),
];

pub async fn access_tokens_are_used_and_revoked(store: &dyn MetaStore) {
    let token = AccessTokenRow {
        name: "as-tok-ci".into(),
        secret_hash: "ab".repeat(32),
        scopes: r#"[{"target":{"namespace":"a"},"actions":["pull"]}]"#.into(),
        created_by: Some("someone".into()),
        created_at: NOW,
        expires_at: Some(NOW + 3600),
        last_used_at: None,
        revoked_at: None,
    };
    store.create_access_token(&at(NOW), &token).await.unwrap();
    assert!(matches!(
        store.create_access_token(&at(NOW), &token).await,
        Err(MetaError::AlreadyExists)
    ));
    assert_eq!(
        store.get_access_token("as-tok-ci").await.unwrap(),
        Some(token.clone())
    );
    store
        .touch_access_token("as-tok-ci", NOW + 10)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_access_token("as-tok-ci")
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(NOW + 10)
    );
    assert!(matches!(
        store.touch_access_token("as-tok-none", NOW).await,
        Err(MetaError::NotFound)
    ));
    store
        .revoke_access_token(&at(NOW + 20), "as-tok-ci")
        .await
        .unwrap();
    store
        .revoke_access_token(&at(NOW + 30), "as-tok-ci")
        .await
        .unwrap();
    assert_eq!(
        store
            .get_access_token("as-tok-ci")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(NOW + 20),
        "revoking twice keeps the first time"
    );
    assert!(matches!(
        store.revoke_access_token(&at(NOW), "as-tok-none").await,
        Err(MetaError::NotFound)
    ));
    let names = only_prefixed(
        store.list_access_tokens().await.unwrap(),
        |t| &t.name,
        "as-tok-",
    );
    assert_eq!(names, vec!["as-tok-ci"]);
}

pub async fn refresh_tokens_are_revoked_one_by_one_or_per_user(store: &dyn MetaStore) {
    store
        .create_user(&at(NOW), &user("as-rt-user"))
        .await
        .unwrap();
    let row = |hash: &str| RefreshTokenRow {
        secret_hash: hash.to_string(),
        user: "as-rt-user".into(),
        family: hash.to_string(),
        created_at: NOW,
        expires_at: Some(NOW + 86_400),
        revoked_at: None,
    };
    let (one, two, three) = ("1".repeat(64), "2".repeat(64), "3".repeat(64));
    for hash in [&one, &two, &three] {
        store.create_refresh_token(&row(hash)).await.unwrap();
    }
    assert!(matches!(
        store
            .create_refresh_token(&RefreshTokenRow {
                user: "as-rt-nobody".into(),
                ..row(&"4".repeat(64))
            })
            .await,
        Err(MetaError::NotFound)
    ));
    assert_eq!(
        store.get_refresh_token(&one).await.unwrap(),
        Some(row(&one))
    );
    store.revoke_refresh_token(&one, NOW + 1).await.unwrap();
    assert_eq!(
        store
            .get_refresh_token(&one)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(NOW + 1)
    );
    assert_eq!(
        store
            .revoke_refresh_tokens_of_user("as-rt-user", NOW + 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .get_refresh_token(&three)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(NOW + 2)
    );
    assert!(matches!(
        store.revoke_refresh_token(&"5".repeat(64), NOW).await,
        Err(MetaError::NotFound)
    ));
    assert_eq!(
        store
            .revoke_refresh_tokens_of_user("as-rt-nobody", NOW)
            .await
            .unwrap(),
        0
    );
}

pub async fn refresh_tokens_rotate_and_reuse_revokes_the_family(store: &dyn MetaStore) {
    let name = "as-rot-user";
    store.create_user(&at(NOW), &user(name)).await.unwrap();
    let token = |hash: &str, expires_at| RefreshTokenRow {
        secret_hash: hash.to_string(),
        user: name.into(),
        family: hash.to_string(),
        created_at: NOW,
        expires_at: Some(expires_at),
        revoked_at: None,
    };
    let revoked = |hash: String| async move {
        store
            .get_refresh_token(&hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
    };
    let hash = |n: u8| format!("{n:02x}").repeat(32);
    let (first, second, third) = (hash(0xa1), hash(0xa2), hash(0xa3));
    // Another login of the same user: a family of its own, untouched below.
    let other = hash(0xb1);
    let later = NOW + 86_400;
    store
        .create_refresh_token(&token(&first, later))
        .await
        .unwrap();
    store
        .create_refresh_token(&token(&other, later))
        .await
        .unwrap();

    // Rotating a live token revokes it and stores the new one in its family
    // (whatever family the caller wrote).
    let rotated = store
        .rotate_refresh_token(&first, &token(&second, later), NOW + 1)
        .await
        .unwrap();
    assert_eq!(rotated, RefreshRotation::Rotated);
    assert_eq!(revoked(first.clone()).await, Some(NOW + 1));
    let stored = store.get_refresh_token(&second).await.unwrap().unwrap();
    assert_eq!(
        (stored.family.as_str(), stored.revoked_at),
        (first.as_str(), None)
    );
    assert_eq!(stored.user, name);
    assert_eq!(
        store
            .rotate_refresh_token(&second, &token(&third, later), NOW + 2)
            .await
            .unwrap(),
        RefreshRotation::Rotated
    );

    // Presenting the first token again revokes the whole family, and stores
    // nothing.
    let fourth = hash(0xa4);
    assert_eq!(
        store
            .rotate_refresh_token(&first, &token(&fourth, later), NOW + 3)
            .await
            .unwrap(),
        RefreshRotation::Reused
    );
    assert_eq!(revoked(third.clone()).await, Some(NOW + 3));
    assert_eq!(revoked(second.clone()).await, Some(NOW + 2));
    assert_eq!(store.get_refresh_token(&fourth).await.unwrap(), None);
    assert_eq!(revoked(other.clone()).await, None);

    // Unknown and expired tokens change nothing.
    assert_eq!(
        store
            .rotate_refresh_token(&hash(0xe1), &token(&fourth, later), NOW)
            .await
            .unwrap(),
        RefreshRotation::Unusable
    );
    let expired = hash(0xe2);
    store
        .create_refresh_token(&token(&expired, NOW + 10))
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate_refresh_token(&expired, &token(&fourth, later), NOW + 10)
            .await
            .unwrap(),
        RefreshRotation::Unusable
    );
    assert_eq!(revoked(expired).await, None);
    assert_eq!(store.get_refresh_token(&fourth).await.unwrap(), None);
}
