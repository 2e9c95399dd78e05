//! The registry token signing keys of a deployment, kept in the store
//! ([`AuthStore`], i.e. the metadata database) so that every node signs with
//! the same current key and verifies with the same keys: a token issued by
//! one node is accepted by all of them.
//!
//! The life of a key:
//!
//! 1. The first node to start with access control on stores the first key
//!    ([`load_or_create`]). Nodes starting together race for it; the store
//!    keeps one and the others load it. The caller may supply that first
//!    key: the binary imports the key file of an install from before keys
//!    moved to the database, so the tokens it signed keep verifying through
//!    the upgrade. Files are the binary's business, not this crate's.
//! 2. `berth admin keys rotate` ([`rotate`]) makes a new current key. The old
//!    one retires: it no longer signs (its private half is erased) but still
//!    verifies, for [`retired_key_retention`], until every token it signed
//!    has expired; a later rotation then deletes it.
//! 3. Nodes pick a rotation up by reloading ([`load`]) every
//!    [`KEY_RELOAD_INTERVAL`], and at once (rate-limited, see
//!    [`crate::TokenAuthority::may_reload_for_unknown_key`]) when a token
//!    names a key they do not know. Until a node reloads it keeps signing
//!    with the retired key, which is why retention counts the reload
//!    interval too.

use time::{Duration, OffsetDateTime};

use crate::error::AuthError;
use crate::jwt::{KeySet, SigningKey, LEEWAY};
use crate::store::{AuthStore, KeyRotation, SigningKeyRecord};

/// How often a node reloads the keys from the store, which bounds how long
/// it keeps signing with a key rotated out elsewhere.
pub const KEY_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a retired key must keep verifying: a node may sign with it until
/// it next reloads (up to [`KEY_RELOAD_INTERVAL`] after the rotation), and
/// such a token is accepted for `token_lifetime` plus the clock [`LEEWAY`].
pub fn retired_key_retention(token_lifetime: Duration) -> Duration {
    token_lifetime + LEEWAY + Duration::seconds(KEY_RELOAD_INTERVAL.as_secs() as i64)
}

/// Where the keys a node starts with came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The store had them (another node, or an earlier start, made them).
    Store,
    /// The store had none; this node stored the key its caller supplied.
    Supplied,
    /// The store had none and there was no key file; this node made one.
    Generated,
}

/// The keys in the store, as a [`KeySet`]: the current key signs, every
/// stored key verifies. Fails with [`AuthError::Key`] if the store has no
/// current key.
pub async fn load(store: &dyn AuthStore) -> Result<KeySet, AuthError> {
    key_set(store.list_signing_keys().await?)
}

/// The keys in the store, storing a first key if there is none: the one
/// `first_key` supplies if it supplies one, else a new one. `first_key` is
/// called only when the store has no current key, so an error it reports
/// (an unreadable key file) stops only a start that needed it. Safe for
/// nodes starting together: the store keeps one first key and every node
/// returns the keys the store holds afterwards.
pub async fn load_or_create(
    store: &dyn AuthStore,
    now: OffsetDateTime,
    first_key: impl FnOnce() -> Result<Option<SigningKey>, String>,
) -> Result<(KeySet, KeyOrigin), AuthError> {
    let stored = store.list_signing_keys().await?;
    if stored.iter().any(|key| key.retired_at.is_none()) {
        return Ok((key_set(stored)?, KeyOrigin::Store));
    }
    let (candidate, origin) = match first_key().map_err(AuthError::Key)? {
        Some(key) => (key, KeyOrigin::Supplied),
        None => (SigningKey::generate(), KeyOrigin::Generated),
    };
    let inserted = store
        .insert_first_signing_key(SigningKeyRecord::current(candidate, now))
        .await?;
    let origin = if inserted { origin } else { KeyOrigin::Store };
    Ok((load(store).await?, origin))
}

/// Makes a new current signing key at `now`, retiring the current one and
/// dropping keys retired longer ago than [`retired_key_retention`] of
/// `token_lifetime`.
pub async fn rotate(
    store: &dyn AuthStore,
    now: OffsetDateTime,
    token_lifetime: Duration,
) -> Result<KeyRotation, AuthError> {
    let key = SigningKeyRecord::current(SigningKey::generate(), now);
    let drop_retired_before = now - retired_key_retention(token_lifetime);
    Ok(store.rotate_signing_key(key, drop_retired_before).await?)
}

/// Builds the key set of stored keys: the current key signs, all verify.
fn key_set(records: Vec<SigningKeyRecord>) -> Result<KeySet, AuthError> {
    let current = records
        .iter()
        .filter(|record| record.retired_at.is_none())
        .find_map(|record| record.private_key.clone())
        .ok_or_else(|| AuthError::Key("the store has no current signing key".to_string()))?;
    let mut keys = KeySet::new(current);
    for record in &records {
        keys.add_public_key(&record.public_key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{TokenAuthority, DEFAULT_TOKEN_LIFETIME};
    use crate::meta_store::MetaAuthStore;
    use crate::TokenRejection;
    use std::sync::Arc;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn authority(keys: KeySet) -> TokenAuthority {
        TokenAuthority::new(keys, "berth", "registry.example")
    }

    /// The metadata store's implementation on SQLite (the meta crate's
    /// suite covers PostgreSQL).
    async fn stores() -> Vec<Arc<dyn AuthStore>> {
        vec![Arc::new(MetaAuthStore::in_memory().await)]
    }

    #[tokio::test]
    async fn the_first_start_generates_and_later_starts_load() {
        for store in stores().await {
            assert!(matches!(load(store.as_ref()).await, Err(AuthError::Key(_))));
            let (first, origin) = load_or_create(store.as_ref(), now(), || Ok(None))
                .await
                .unwrap();
            assert_eq!(origin, KeyOrigin::Generated);
            // Another node, with a key of its own to supply, adopts the
            // stored key and is not even asked for its own.
            let (second, origin) = load_or_create(store.as_ref(), now(), || {
                panic!("a store with a current key needs no first key")
            })
            .await
            .unwrap();
            assert_eq!(origin, KeyOrigin::Store);
            assert_eq!(second.current().kid(), first.current().kid());
            assert_eq!(second.kids(), first.kids());
        }
    }

    #[tokio::test]
    async fn a_supplied_first_key_is_stored_so_its_tokens_keep_verifying() {
        for store in stores().await {
            let old = SigningKey::generate();
            let before = authority(KeySet::new(old.clone()));
            let token = before.issue(Some("alice"), vec![], now(), None).unwrap();

            let (keys, origin) = load_or_create(store.as_ref(), now(), || Ok(Some(old.clone())))
                .await
                .unwrap();
            assert_eq!(origin, KeyOrigin::Supplied);
            assert_eq!(keys.current().kid(), old.kid());
            authority(keys).verify(token.token.expose(), now()).unwrap();
        }
    }

    #[tokio::test]
    async fn a_first_key_that_cannot_be_supplied_fails_the_start() {
        for store in stores().await {
            let result = load_or_create(store.as_ref(), now(), || {
                Err("keys/signing.pem: not a key".into())
            })
            .await;
            assert!(matches!(result, Err(AuthError::Key(_))), "{result:?}");
            assert!(store.list_signing_keys().await.unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn rotation_keeps_old_tokens_valid_until_their_keys_are_dropped() {
        for store in stores().await {
            let (keys, _) = load_or_create(store.as_ref(), now(), || Ok(None))
                .await
                .unwrap();
            let first_kid = keys.current().kid().to_string();
            let node = authority(keys);
            let old_token = node.issue(Some("alice"), vec![], now(), None).unwrap();

            let rotated_at = now() + Duration::seconds(10);
            let rotation = rotate(store.as_ref(), rotated_at, DEFAULT_TOKEN_LIFETIME)
                .await
                .unwrap();
            assert_eq!(rotation.retired.as_deref(), Some(first_kid.as_str()));
            assert!(rotation.dropped.is_empty());
            assert_ne!(rotation.current, first_kid);
            let stored = store.list_signing_keys().await.unwrap();
            assert_eq!(stored[0].kid(), first_kid);
            assert_eq!(stored[0].retired_at, Some(rotated_at));
            assert!(
                stored[0].private_key.is_none(),
                "a retired key's private half is erased"
            );

            // Until it reloads, the node signs with the old key, and a node
            // that has reloaded accepts those tokens.
            let late_token = node.issue(Some("alice"), vec![], now(), None).unwrap();
            node.set_keys(load(store.as_ref()).await.unwrap());
            assert_eq!(node.keys().current().kid(), rotation.current);
            for token in [&old_token, &late_token] {
                node.verify(token.token.expose(), now()).unwrap();
            }
            let new_token = node.issue(Some("alice"), vec![], now(), None).unwrap();

            // A rotation within the retention keeps the first key; one after
            // it drops it, and tokens it signed are refused (they would have
            // expired by then anyway).
            let soon = now() + Duration::minutes(1);
            let rotation = rotate(store.as_ref(), soon, DEFAULT_TOKEN_LIFETIME)
                .await
                .unwrap();
            assert!(rotation.dropped.is_empty());
            let later = soon + retired_key_retention(DEFAULT_TOKEN_LIFETIME);
            let rotation = rotate(store.as_ref(), later, DEFAULT_TOKEN_LIFETIME)
                .await
                .unwrap();
            assert_eq!(rotation.dropped, vec![first_kid.clone()]);
            node.set_keys(load(store.as_ref()).await.unwrap());
            assert_eq!(node.keys().kids().len(), 3, "{:?}", node.keys().kids());
            assert_eq!(
                node.verify(old_token.token.expose(), now()),
                Err(TokenRejection::UnknownKey)
            );
            node.verify(new_token.token.expose(), now()).unwrap();
        }
    }
}
