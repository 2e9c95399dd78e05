//! The shared test suite every [`AuthMetaStore`] backend must pass, in the
//! pattern of [`crate::suite`]: each test is a `pub async fn` over
//! `&dyn AuthMetaStore` using names of its own (`as-<test>-…`), so
//! [`run_all`] can run them all on one store, and a backend's test file gets
//! one `#[tokio::test]` per test from [`auth_store_tests!`](crate::auth_store_tests).

use futures::future::BoxFuture;

use crate::auth::{
    AccessTokenRow, AuthMetaError, AuthMetaStore, MemberRow, NamespaceRow, RefreshTokenRow, UserRow,
};
use crate::Timestamp;

/// A suite test as a plain function.
pub type AuthSuiteTest = for<'a> fn(&'a dyn AuthMetaStore) -> BoxFuture<'a, ()>;

/// Every test of the suite, by name, in the order [`run_all`] runs them.
pub const TESTS: &[(&str, AuthSuiteTest)] = &[
    ("users_are_created_once_and_updated", |s| {
        Box::pin(users_are_created_once_and_updated(s))
    }),
    ("namespaces_are_created_with_their_owner", |s| {
        Box::pin(namespaces_are_created_with_their_owner(s))
    }),
    ("members_are_added_changed_and_removed", |s| {
        Box::pin(members_are_added_changed_and_removed(s))
    }),
    ("access_tokens_are_used_and_revoked", |s| {
        Box::pin(access_tokens_are_used_and_revoked(s))
    }),
    ("refresh_tokens_are_revoked_one_by_one_or_per_user", |s| {
        Box::pin(refresh_tokens_are_revoked_one_by_one_or_per_user(s))
    }),
];

/// Runs every test in turn on one store.
pub async fn run_all(store: &dyn AuthMetaStore) {
    for (_name, test) in TESTS {
        test(store).await;
    }
}

/// One `#[tokio::test]` per auth suite test; `$fresh` as for `meta_store_tests!`.
#[macro_export]
macro_rules! auth_store_tests {
    ($fresh:path) => {
        $crate::auth_store_tests!(@each $fresh;
            users_are_created_once_and_updated,
            namespaces_are_created_with_their_owner,
            members_are_added_changed_and_removed,
            access_tokens_are_used_and_revoked,
            refresh_tokens_are_revoked_one_by_one_or_per_user,
        );
    };
    (@each $fresh:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (_guard, store) = $fresh().await;
                $crate::auth_suite::$name(&store).await;
            }
        )*

        #[test]
        fn auth_suite_macro_lists_every_test() {
            let listed: Vec<&str> = vec![$(stringify!($name)),*];
            let known: Vec<&str> =
                $crate::auth_suite::TESTS.iter().map(|(name, _)| *name).collect();
            assert_eq!(listed, known);
        }
    };
}

const NOW: Timestamp = 1_700_000_000;

fn user(name: &str) -> UserRow {
    UserRow {
        name: name.to_string(),
        password_hash: format!("$argon2id$fake${name}"),
        is_admin: false,
        created_at: NOW,
    }
}

fn namespace(name: &str, visibility: &str) -> NamespaceRow {
    NamespaceRow {
        name: name.to_string(),
        visibility: visibility.to_string(),
        created_at: NOW,
    }
}

fn only_prefixed<T>(rows: Vec<T>, name: impl Fn(&T) -> &str, prefix: &str) -> Vec<String> {
    rows.iter()
        .map(|row| name(row).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

pub async fn users_are_created_once_and_updated(store: &dyn AuthMetaStore) {
    let alice = user("as-users-alice");
    store.create_user(&user("as-users-bob")).await.unwrap();
    store.create_user(&alice).await.unwrap();
    assert!(matches!(
        store.create_user(&alice).await,
        Err(AuthMetaError::AlreadyExists)
    ));
    assert_eq!(
        store.get_user("as-users-alice").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.get_user("as-users-nobody").await.unwrap(), None);
    store
        .set_password_hash("as-users-alice", "$argon2id$new")
        .await
        .unwrap();
    store.set_admin("as-users-alice", true).await.unwrap();
    let updated = store.get_user("as-users-alice").await.unwrap().unwrap();
    assert_eq!(updated.password_hash, "$argon2id$new");
    assert!(updated.is_admin);
    assert!(matches!(
        store.set_admin("as-users-nobody", true).await,
        Err(AuthMetaError::NotFound)
    ));
    assert!(matches!(
        store.set_password_hash("as-users-nobody", "x").await,
        Err(AuthMetaError::NotFound)
    ));
    let names = only_prefixed(store.list_users().await.unwrap(), |u| &u.name, "as-users-");
    assert_eq!(names, vec!["as-users-alice", "as-users-bob"]);
}

pub async fn namespaces_are_created_with_their_owner(store: &dyn AuthMetaStore) {
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
        Err(AuthMetaError::AlreadyExists)
    ));
    // An unknown owner creates nothing, not even the namespace.
    assert!(matches!(
        store
            .create_namespace(&namespace("as-ns-orphan", "private"), Some("as-ns-nobody"))
            .await,
        Err(AuthMetaError::NotFound)
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
        Err(AuthMetaError::NotFound)
    ));
    let names = only_prefixed(
        store.list_namespaces().await.unwrap(),
        |n| &n.name,
        "as-ns-",
    );
    assert_eq!(names, vec!["as-ns-free", "as-ns-team"]);
}

pub async fn members_are_added_changed_and_removed(store: &dyn AuthMetaStore) {
    store.create_user(&user("as-mem-a")).await.unwrap();
    store.create_user(&user("as-mem-b")).await.unwrap();
    store
        .create_namespace(&namespace("as-mem-ns", "private"), None)
        .await
        .unwrap();
    store
        .set_member("as-mem-ns", "as-mem-b", "reader")
        .await
        .unwrap();
    store
        .set_member("as-mem-ns", "as-mem-a", "writer")
        .await
        .unwrap();
    store
        .set_member("as-mem-ns", "as-mem-b", "maintainer")
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
            .set_member("as-mem-ns", "as-mem-nobody", "reader")
            .await,
        Err(AuthMetaError::NotFound)
    ));
    assert!(matches!(
        store.set_member("as-mem-none", "as-mem-a", "reader").await,
        Err(AuthMetaError::NotFound)
    ));
    store.remove_member("as-mem-ns", "as-mem-a").await.unwrap();
    assert!(matches!(
        store.remove_member("as-mem-ns", "as-mem-a").await,
        Err(AuthMetaError::NotFound)
    ));
    assert_eq!(
        store.member_role("as-mem-ns", "as-mem-a").await.unwrap(),
        None
    );
    assert!(store.list_members("as-mem-none").await.unwrap().is_empty());
}

pub async fn access_tokens_are_used_and_revoked(store: &dyn AuthMetaStore) {
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
    store.create_access_token(&token).await.unwrap();
    assert!(matches!(
        store.create_access_token(&token).await,
        Err(AuthMetaError::AlreadyExists)
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
        Err(AuthMetaError::NotFound)
    ));
    store
        .revoke_access_token("as-tok-ci", NOW + 20)
        .await
        .unwrap();
    store
        .revoke_access_token("as-tok-ci", NOW + 30)
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
        store.revoke_access_token("as-tok-none", NOW).await,
        Err(AuthMetaError::NotFound)
    ));
    let names = only_prefixed(
        store.list_access_tokens().await.unwrap(),
        |t| &t.name,
        "as-tok-",
    );
    assert_eq!(names, vec!["as-tok-ci"]);
}

pub async fn refresh_tokens_are_revoked_one_by_one_or_per_user(store: &dyn AuthMetaStore) {
    store.create_user(&user("as-rt-user")).await.unwrap();
    let row = |hash: &str| RefreshTokenRow {
        secret_hash: hash.to_string(),
        user: "as-rt-user".into(),
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
        Err(AuthMetaError::NotFound)
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
        Err(AuthMetaError::NotFound)
    ));
    assert_eq!(
        store
            .revoke_refresh_tokens_of_user("as-rt-nobody", NOW)
            .await
            .unwrap(),
        0
    );
}
