//! The shared suite of [`SigningKeyStore`](crate::SigningKeyStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("racing_first_signing_keys_leave_one_current_key", |store| {
        Box::pin(racing_first_signing_keys_leave_one_current_key(store))
    }),
    (
        "signing_keys_rotate_keeping_recently_retired_ones",
        |store| Box::pin(signing_keys_rotate_keeping_recently_retired_ones(store)),
    ),
    ("a_private_key_is_replaced_only_as_expected", |store| {
        Box::pin(a_private_key_is_replaced_only_as_expected(store))
    }),
];

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

pub async fn racing_first_signing_keys_leave_one_current_key(store: &dyn MetaStore) {
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
        Err(MetaError::Database(_))
    ));
    assert_eq!(
        store.list_signing_keys().await.unwrap(),
        vec![winner.clone()]
    );
}

pub async fn signing_keys_rotate_keeping_recently_retired_ones(store: &dyn MetaStore) {
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
        Err(MetaError::AlreadyExists)
    ));
    assert!(matches!(
        store
            .rotate_signing_key(&retired(signing_key("as-rot-x", T + 400), T + 400), T)
            .await,
        Err(MetaError::Database(_))
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

pub async fn a_private_key_is_replaced_only_as_expected(store: &dyn MetaStore) {
    // Its own kid, so the suite's other key tests are not disturbed; the
    // store may hold a current key of theirs, so this one goes in retired
    // rows' way: inserted first only on an empty store.
    let kid = "suite-replace";
    let key = signing_key(kid, 50);
    if !store.insert_first_signing_key(&key).await.unwrap() {
        // A current key exists already (another test of a shared store):
        // rotate to ours, which makes it current.
        store.rotate_signing_key(&key, 0).await.unwrap();
    }
    let plain = key.private_key_pem.clone().unwrap();
    assert!(!store
        .replace_signing_private_key(kid, "not what is stored", "sealed")
        .await
        .unwrap());
    assert!(store
        .replace_signing_private_key(kid, &plain, "sealed")
        .await
        .unwrap());
    assert!(
        !store
            .replace_signing_private_key(kid, &plain, "sealed again")
            .await
            .unwrap(),
        "a second node finds it replaced"
    );
    let stored = store.list_signing_keys().await.unwrap();
    let ours = stored.iter().find(|k| k.kid == kid).unwrap();
    assert_eq!(ours.private_key_pem.as_deref(), Some("sealed"));
    assert!(!store
        .replace_signing_private_key("suite-nobody", &plain, "x")
        .await
        .unwrap());
}
