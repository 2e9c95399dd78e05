//! The shared suite of [`SessionStore`](crate::SessionStore).

use super::*;
use crate::SessionRow;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("sessions_are_created_touched_and_revoked", |store| {
        Box::pin(sessions_are_created_touched_and_revoked(store))
    }),
    ("ended_sessions_are_deleted_at_the_next_sign_in", |store| {
        Box::pin(ended_sessions_are_deleted_at_the_next_sign_in(store))
    }),
];

fn session(hash: &str, user: &str, created_at: Timestamp) -> SessionRow {
    SessionRow {
        secret_hash: hash.repeat(32),
        user: user.to_string(),
        created_at,
        last_seen_at: created_at,
        expires_at: created_at + 3600,
        revoked_at: None,
    }
}

pub async fn sessions_are_created_touched_and_revoked(store: &dyn MetaStore) {
    let name = "as-sessions-touch";
    let first = session("a1", name, NOW);
    assert!(
        matches!(
            store.create_session(&first, NOW - 60).await,
            Err(MetaError::NotFound)
        ),
        "a session needs its user"
    );
    store.create_user(&at(NOW), &user(name)).await.unwrap();
    store.create_session(&first, NOW - 60).await.unwrap();
    assert!(matches!(
        store.create_session(&first, NOW - 60).await,
        Err(MetaError::AlreadyExists)
    ));
    assert_eq!(
        store.get_session(&first.secret_hash).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.get_session(&"ff".repeat(32)).await.unwrap(), None);

    // A use within a minute of the recorded one writes nothing; a later one
    // moves the idle clock.
    store
        .touch_session(&first.secret_hash, NOW + 30)
        .await
        .unwrap();
    let seen = |row: Option<SessionRow>| row.unwrap().last_seen_at;
    assert_eq!(
        seen(store.get_session(&first.secret_hash).await.unwrap()),
        NOW
    );
    store
        .touch_session(&first.secret_hash, NOW + 90)
        .await
        .unwrap();
    assert_eq!(
        seen(store.get_session(&first.secret_hash).await.unwrap()),
        NOW + 90
    );
    // Touching a session that does not exist is no error.
    store
        .touch_session(&"ee".repeat(32), NOW + 90)
        .await
        .unwrap();

    store
        .revoke_session(&first.secret_hash, NOW + 100)
        .await
        .unwrap();
    store
        .revoke_session(&first.secret_hash, NOW + 200)
        .await
        .unwrap();
    let revoked = store
        .get_session(&first.secret_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        revoked.revoked_at,
        Some(NOW + 100),
        "the first sign-out counts"
    );
    // A revoked session's use is not recorded.
    store
        .touch_session(&first.secret_hash, NOW + 500)
        .await
        .unwrap();
    assert_eq!(
        seen(store.get_session(&first.secret_hash).await.unwrap()),
        NOW + 90
    );
    assert!(matches!(
        store.revoke_session(&"ee".repeat(32), NOW).await,
        Err(MetaError::NotFound)
    ));

    // Signing out everywhere revokes the live ones only.
    let second = session("a2", name, NOW + 10);
    let third = session("a3", name, NOW + 20);
    store.create_session(&second, NOW - 60).await.unwrap();
    store.create_session(&third, NOW - 60).await.unwrap();
    assert_eq!(
        store
            .revoke_sessions_of_user(name, NOW + 300)
            .await
            .unwrap(),
        2
    );
    for hash in [&second.secret_hash, &third.secret_hash] {
        let row = store.get_session(hash).await.unwrap().unwrap();
        assert_eq!(row.revoked_at, Some(NOW + 300));
    }
    assert_eq!(
        store
            .revoke_sessions_of_user(name, NOW + 400)
            .await
            .unwrap(),
        0
    );

    // A new password, and disabling the user, sign every session out.
    for (i, disable) in [false, true].into_iter().enumerate() {
        let live = session(&format!("c{i}"), name, NOW + 500);
        store.create_session(&live, NOW).await.unwrap();
        if disable {
            store
                .set_disabled(&at(NOW + 600), name, true)
                .await
                .unwrap();
            store
                .set_disabled(&at(NOW + 601), name, false)
                .await
                .unwrap();
        } else {
            store
                .set_password_hash(&at(NOW + 600), name, "$argon2id$new", false)
                .await
                .unwrap();
        }
        let row = store.get_session(&live.secret_hash).await.unwrap().unwrap();
        assert_eq!(row.revoked_at, Some(NOW + 600), "disable: {disable}");
    }
    // A hash upgraded at sign-in is no new password: sessions stay.
    let kept = session("c9", name, NOW + 700);
    store.create_session(&kept, NOW).await.unwrap();
    store
        .set_password_hash(&at(NOW + 800), name, "$argon2id$upgraded", true)
        .await
        .unwrap();
    let row = store.get_session(&kept.secret_hash).await.unwrap().unwrap();
    assert_eq!(row.revoked_at, None);

    // Deleting the user deletes their sessions.
    store.delete_user(&at(NOW), name).await.unwrap();
    assert_eq!(store.get_session(&second.secret_hash).await.unwrap(), None);
}

pub async fn ended_sessions_are_deleted_at_the_next_sign_in(store: &dyn MetaStore) {
    let name = "as-sessions-ended";
    let other = "as-sessions-other";
    store.create_user(&at(NOW), &user(name)).await.unwrap();
    store.create_user(&at(NOW), &user(other)).await.unwrap();
    let revoked = session("b1", name, NOW);
    let expired = SessionRow {
        expires_at: NOW + 10,
        ..session("b2", name, NOW)
    };
    let idle = session("b3", name, NOW);
    let live = session("b4", name, NOW + 500);
    let others = SessionRow {
        expires_at: NOW + 10,
        ..session("b5", other, NOW)
    };
    for row in [&revoked, &expired, &idle, &live, &others] {
        store.create_session(row, NOW - 3600).await.unwrap();
    }
    store
        .revoke_session(&revoked.secret_hash, NOW + 1)
        .await
        .unwrap();

    // At NOW + 600, with an idle limit that ends what was not seen since
    // NOW + 100: the revoked, the expired and the idle one go; the live one
    // and the other user's stay.
    let fresh = session("b6", name, NOW + 600);
    store.create_session(&fresh, NOW + 100).await.unwrap();
    for (row, kept) in [
        (&revoked, false),
        (&expired, false),
        (&idle, false),
        (&live, true),
        (&fresh, true),
        (&others, true),
    ] {
        assert_eq!(
            store.get_session(&row.secret_hash).await.unwrap().is_some(),
            kept,
            "{}",
            &row.secret_hash[..2]
        );
    }
    store.delete_user(&at(NOW), name).await.unwrap();
    store.delete_user(&at(NOW), other).await.unwrap();
}
