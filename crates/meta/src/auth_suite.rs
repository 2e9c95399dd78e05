//! The shared test suite every [`AuthMetaStore`] backend must pass, in the
//! pattern of [`crate::suite`]: each test is a `pub async fn` over
//! `&dyn AuthMetaStore` using names of its own (`as-<test>-…`), so
//! [`run_all`] can run them all on one store, and a backend's test file gets
//! one `#[tokio::test]` per test from [`auth_store_tests!`](crate::auth_store_tests).
//!
//! Signing keys are the exception to "names of its own": there is one
//! current key per database, whoever made it. So the first-key test expects
//! an empty table and runs before the rotation test, which works from
//! whatever key it finds and only looks at keys of its own afterwards.

use futures::future::{join_all, BoxFuture};

use crate::auth::{
    AccessTokenRow, AuthMetaError, AuthMetaStore, MemberRow, NamespaceRow, RefreshTokenRow,
    SigningKeyRow, UserRow,
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
    ("racing_first_signing_keys_leave_one_current_key", |s| {
        Box::pin(racing_first_signing_keys_leave_one_current_key(s))
    }),
    ("signing_keys_rotate_keeping_recently_retired_ones", |s| {
        Box::pin(signing_keys_rotate_keeping_recently_retired_ones(s))
    }),
];

/// Runs every test in turn on one store.
pub async fn run_all(store: &dyn AuthMetaStore) {
    for (_name, test) in TESTS {
        test(store).await;
    }
}

/// One `#[tokio::test]` per auth suite test, plus a check that the list
/// matches [`TESTS`]. `$fresh` as for `meta_store_tests!`, including the
/// `skippable` form for backends that need a server the machine may lack.
#[macro_export]
macro_rules! auth_store_tests {
    ($fresh:path) => {
        $crate::auth_store_tests!(@list required $fresh);
    };
    (skippable $fresh:path) => {
        $crate::auth_store_tests!(@list skippable $fresh);
    };
    (@list $mode:ident $fresh:path) => {
        $crate::auth_store_tests!(@each $mode $fresh;
            users_are_created_once_and_updated,
            namespaces_are_created_with_their_owner,
            members_are_added_changed_and_removed,
            access_tokens_are_used_and_revoked,
            refresh_tokens_are_revoked_one_by_one_or_per_user,
            racing_first_signing_keys_leave_one_current_key,
            signing_keys_rotate_keeping_recently_retired_ones,
        );
    };
    (@each $mode:ident $fresh:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::meta_store_tests!(@fresh $mode $fresh, $name, _guard, store);
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

/// A current key as the meta layer sees it: the PEM texts are opaque here.
fn signing_key(kid: &str, created_at: Timestamp) -> SigningKeyRow {
    SigningKeyRow {
        kid: kid.to_string(),
        private_key_pem: Some(format!("private key of {kid}")),
        public_key_pem: format!("public key of {kid}"),
        created_at,
        retired_at: None,
    }
}

/// `key` as it looks once retired at `at`.
fn retired(key: SigningKeyRow, at: Timestamp) -> SigningKeyRow {
    SigningKeyRow {
        private_key_pem: None,
        retired_at: Some(at),
        ..key
    }
}

fn current_keys(keys: &[SigningKeyRow]) -> Vec<&SigningKeyRow> {
    keys.iter().filter(|key| key.retired_at.is_none()).collect()
}

pub async fn racing_first_signing_keys_leave_one_current_key(store: &dyn AuthMetaStore) {
    assert_eq!(
        store.list_signing_keys().await.unwrap(),
        Vec::new(),
        "a new database has no signing key"
    );
    // Nodes starting together on an empty database each offer a key of
    // their own; exactly one is stored, and the others adopt it.
    let candidates: Vec<SigningKeyRow> = (0..8)
        .map(|node| signing_key(&format!("as-first-{node}"), NOW))
        .collect();
    let stored: Vec<bool> = join_all(
        candidates
            .iter()
            .map(|key| store.insert_first_signing_key(key)),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    assert_eq!(stored.iter().filter(|s| **s).count(), 1, "{stored:?}");
    let winner = &candidates[stored.iter().position(|s| *s).unwrap()];
    assert_eq!(
        store.list_signing_keys().await.unwrap(),
        vec![winner.clone()]
    );
    // Once there is a key, a later start stores nothing.
    assert!(!store
        .insert_first_signing_key(&signing_key("as-first-late", NOW + 10))
        .await
        .unwrap());
    // Only a current key with its private half can be the first.
    assert!(matches!(
        store
            .insert_first_signing_key(&retired(signing_key("as-first-retired", NOW), NOW))
            .await,
        Err(AuthMetaError::Meta(_))
    ));
    assert_eq!(
        store.list_signing_keys().await.unwrap(),
        vec![winner.clone()]
    );
}

pub async fn signing_keys_rotate_keeping_recently_retired_ones(store: &dyn AuthMetaStore) {
    const T: Timestamp = NOW + 1_000;
    // Keys of other tests (run_all) are left out of every comparison.
    let own = |keys: Vec<SigningKeyRow>| -> Vec<SigningKeyRow> {
        keys.into_iter()
            .filter(|key| key.kid.starts_with("as-rot-"))
            .collect()
    };
    let own_kids = |kids: Vec<String>| -> Vec<String> {
        kids.into_iter()
            .filter(|kid| kid.starts_with("as-rot-"))
            .collect()
    };
    // Start from a current key of this test's own, retiring whatever key
    // the database had and dropping every key retired before.
    let first = signing_key("as-rot-1", T);
    if !store.insert_first_signing_key(&first).await.unwrap() {
        store.rotate_signing_key(&first, T).await.unwrap();
    }

    // A rotation retires the current key (erasing its private half) and
    // keeps it, since tokens it signed may still be in use.
    let second = signing_key("as-rot-2", T + 100);
    let rotation = store.rotate_signing_key(&second, T - 300).await.unwrap();
    assert_eq!(rotation.retired.as_deref(), Some("as-rot-1"));
    assert_eq!(own_kids(rotation.dropped), Vec::<String>::new());
    assert_eq!(
        own(store.list_signing_keys().await.unwrap()),
        vec![retired(first.clone(), T + 100), second.clone()]
    );

    // The next rotation drops keys retired before its cut-off.
    let third = signing_key("as-rot-3", T + 200);
    let rotation = store.rotate_signing_key(&third, T + 150).await.unwrap();
    assert_eq!(rotation.retired.as_deref(), Some("as-rot-2"));
    assert_eq!(own_kids(rotation.dropped), vec!["as-rot-1".to_string()]);
    assert_eq!(
        own(store.list_signing_keys().await.unwrap()),
        vec![retired(second.clone(), T + 200), third.clone()]
    );

    // A cut-off later than the rotation itself never drops the key the
    // rotation retires.
    let fourth = signing_key("as-rot-4", T + 300);
    let rotation = store.rotate_signing_key(&fourth, T + 10_000).await.unwrap();
    assert_eq!(rotation.retired.as_deref(), Some("as-rot-3"));
    assert_eq!(own_kids(rotation.dropped), vec!["as-rot-2".to_string()]);
    let after_fourth = vec![retired(third.clone(), T + 300), fourth.clone()];
    assert_eq!(own(store.list_signing_keys().await.unwrap()), after_fourth);

    // A taken kid changes nothing.
    assert!(matches!(
        store
            .rotate_signing_key(&signing_key("as-rot-4", T + 400), T)
            .await,
        Err(AuthMetaError::AlreadyExists)
    ));
    assert!(matches!(
        store
            .rotate_signing_key(&retired(signing_key("as-rot-x", T + 400), T + 400), T)
            .await,
        Err(AuthMetaError::Meta(_))
    ));
    assert_eq!(own(store.list_signing_keys().await.unwrap()), after_fourth);

    // Racing rotations (an operator on two machines) run one after the
    // other: all succeed, each retires the key the one before made, and one
    // key is current at the end.
    let racers: Vec<SigningKeyRow> = (0..4)
        .map(|i| signing_key(&format!("as-rot-race-{i}"), T + 500))
        .collect();
    let rotations = join_all(
        racers
            .iter()
            .map(|key| store.rotate_signing_key(key, T + 450)),
    )
    .await;
    let mut retired_kids: Vec<String> = rotations
        .into_iter()
        .map(|rotation| rotation.unwrap().retired.expect("a key to retire"))
        .collect();
    retired_kids.sort();
    let keys = store.list_signing_keys().await.unwrap();
    let current = current_keys(&keys);
    assert_eq!(current.len(), 1, "{keys:?}");
    let mut expected: Vec<String> = racers.iter().map(|key| key.kid.clone()).collect();
    expected.retain(|kid| *kid != current[0].kid);
    expected.push("as-rot-4".to_string());
    expected.sort();
    assert_eq!(retired_kids, expected);
    let mut kids: Vec<String> = own(keys).into_iter().map(|key| key.kid).collect();
    kids.sort();
    let mut all: Vec<String> = racers.iter().map(|key| key.kid.clone()).collect();
    all.push("as-rot-4".to_string());
    all.sort();
    assert_eq!(kids, all, "as-rot-3 dropped, every racer kept");
    assert!(!store
        .insert_first_signing_key(&signing_key("as-rot-late", T + 600))
        .await
        .unwrap());
}
