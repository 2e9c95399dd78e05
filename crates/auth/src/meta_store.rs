//! [`MetaAuthStore`]: the [`AuthStore`] over the metadata store's
//! access-control tables ([`berth_meta::auth::AuthMetaStore`]).
//!
//! `berth-meta` stores plain rows (strings and epoch seconds) so it needs none
//! of this crate's vocabulary; this adapter is the one place where rows become
//! records and back: roles by name, scopes as JSON, hashes as hex, signing
//! keys as PEM (checked against their kid on the way in). Namespaces are the
//! registry's ([`berth_meta::NamespaceStore`]): their existence and
//! visibility are read from there, and only the mapping of the visibility to
//! this crate's [`Visibility`] happens here.

use std::sync::Arc;

use async_trait::async_trait;
use berth_meta::auth::{
    AccessTokenRow, AuthMetaStore, MemberRow, RefreshTokenRow, SigningKeyRow, UserRow,
};
use berth_meta::SessionRow;
use berth_meta::{MetaError, Namespace};
use time::OffsetDateTime;

use crate::actor::Change;
use crate::error::AuthStoreError;
use crate::jwt::{PublicKey, SigningKey};
use crate::key_encryption::{is_sealed, unseal, KeyEncryptionKey};
use crate::model::{Role, TokenScope, Visibility};
use crate::policy::NamespaceFacts;
use crate::secret::SecretHash;
use crate::store::{
    AccessTokenRecord, AuthStore, KeyRotation, MemberRecord, NamespaceRecord, RefreshRotation,
    RefreshTokenRecord, SessionRecord, SigningKeyRecord, UserRecord,
};

/// An [`AuthStore`] backed by any [`AuthMetaStore`] (SQLite, PostgreSQL).
#[derive(Clone)]
pub struct MetaAuthStore {
    inner: Arc<dyn AuthMetaStore>,
    /// Seals the signing keys' private halves on their way into the store
    /// and opens them on their way out, when configured.
    key_encryption: Option<Arc<KeyEncryptionKey>>,
}

impl MetaAuthStore {
    pub fn new(inner: Arc<dyn AuthMetaStore>) -> MetaAuthStore {
        MetaAuthStore {
            inner,
            key_encryption: None,
        }
    }

    /// The store, sealing signing keys with `key` when one is given (see
    /// [`crate::key_encryption`]).
    pub fn with_key_encryption(mut self, key: Option<KeyEncryptionKey>) -> MetaAuthStore {
        self.key_encryption = key.map(Arc::new);
        self
    }

    /// Seals every signing key stored in plain text, when a key-encryption
    /// key is configured; returns how many it sealed. Run at start, so an
    /// install that configures a key-encryption key has its keys encrypted
    /// from then on. Safe for nodes starting together: each replacement is
    /// conditional on the plain value, so a key is sealed once.
    pub async fn seal_signing_keys(&self) -> Result<usize, AuthStoreError> {
        let Some(key) = &self.key_encryption else {
            return Ok(0);
        };
        let mut sealed = 0;
        for row in self.inner.list_signing_keys().await.map_err(store_error)? {
            let Some(plain) = row.private_key_pem.filter(|pem| !is_sealed(pem)) else {
                continue;
            };
            let replaced = self
                .inner
                .replace_signing_private_key(&row.kid, &plain, &key.seal(&row.kid, &plain))
                .await
                .map_err(store_error)?;
            sealed += usize::from(replaced);
        }
        Ok(sealed)
    }

    /// A store on a private in-memory SQLite database, for this crate's
    /// tests: the real SQL of the default backend, with nothing on disk.
    #[cfg(test)]
    pub(crate) async fn in_memory() -> MetaAuthStore {
        let sqlite = berth_meta::sqlite::SqliteMetaStore::open_in_memory()
            .await
            .expect("an in-memory SQLite database opens");
        MetaAuthStore::new(Arc::new(sqlite))
    }
}

fn store_error(error: MetaError) -> AuthStoreError {
    match error {
        MetaError::AlreadyExists => AuthStoreError::AlreadyExists,
        MetaError::NotFound => AuthStoreError::NotFound,
        MetaError::LastAdmin => AuthStoreError::LastAdmin,
        MetaError::LastOwner => AuthStoreError::LastOwner,
        MetaError::Unavailable(detail) => AuthStoreError::Unavailable(detail),
        other => AuthStoreError::Backend(Box::new(other)),
    }
}

fn corrupt(what: String) -> AuthStoreError {
    AuthStoreError::Backend(what.into())
}

fn seconds(at: OffsetDateTime) -> i64 {
    at.unix_timestamp()
}

fn instant(seconds: i64) -> Result<OffsetDateTime, AuthStoreError> {
    OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|e| corrupt(format!("timestamp {seconds}: {e}")))
}

fn optional_instant(seconds: Option<i64>) -> Result<Option<OffsetDateTime>, AuthStoreError> {
    seconds.map(instant).transpose()
}

fn parse_role(text: &str) -> Result<Role, AuthStoreError> {
    text.parse().map_err(|_| corrupt(format!("role {text:?}")))
}

fn visibility(stored: berth_meta::Visibility) -> Visibility {
    match stored {
        berth_meta::Visibility::Public => Visibility::Public,
        berth_meta::Visibility::Private => Visibility::Private,
    }
}

fn stored_visibility(visibility: Visibility) -> berth_meta::Visibility {
    match visibility {
        Visibility::Public => berth_meta::Visibility::Public,
        Visibility::Private => berth_meta::Visibility::Private,
    }
}

fn parse_hash(text: &str) -> Result<SecretHash, AuthStoreError> {
    SecretHash::from_hex(text).ok_or_else(|| corrupt("secret hash".to_string()))
}

fn user_record(row: UserRow) -> Result<UserRecord, AuthStoreError> {
    Ok(UserRecord {
        name: row.name,
        password_hash: row.password_hash,
        is_admin: row.is_admin,
        created_at: instant(row.created_at)?,
        disabled_at: optional_instant(row.disabled_at)?,
    })
}

fn namespace_record(row: Namespace) -> Result<NamespaceRecord, AuthStoreError> {
    Ok(NamespaceRecord {
        visibility: visibility(row.visibility),
        name: row.name,
        created_at: instant(row.created_at)?,
    })
}

fn access_token_record(row: AccessTokenRow) -> Result<AccessTokenRecord, AuthStoreError> {
    let scopes: Vec<TokenScope> = serde_json::from_str(&row.scopes)
        .map_err(|e| corrupt(format!("scopes of token {:?}: {e}", row.name)))?;
    Ok(AccessTokenRecord {
        secret_hash: parse_hash(&row.secret_hash)?,
        scopes,
        created_by: row.created_by,
        created_at: instant(row.created_at)?,
        expires_at: optional_instant(row.expires_at)?,
        last_used_at: optional_instant(row.last_used_at)?,
        revoked_at: optional_instant(row.revoked_at)?,
        name: row.name,
    })
}

fn refresh_token_record(row: RefreshTokenRow) -> Result<RefreshTokenRecord, AuthStoreError> {
    Ok(RefreshTokenRecord {
        secret_hash: parse_hash(&row.secret_hash)?,
        family: parse_hash(&row.family)?,
        user: row.user,
        created_at: instant(row.created_at)?,
        expires_at: optional_instant(row.expires_at)?,
        revoked_at: optional_instant(row.revoked_at)?,
    })
}

fn session_record(row: SessionRow) -> Result<SessionRecord, AuthStoreError> {
    Ok(SessionRecord {
        secret_hash: parse_hash(&row.secret_hash)?,
        user: row.user,
        created_at: instant(row.created_at)?,
        last_seen_at: instant(row.last_seen_at)?,
        expires_at: instant(row.expires_at)?,
        revoked_at: optional_instant(row.revoked_at)?,
    })
}

/// Parses a stored key, checking that both halves belong to the kid they
/// are stored under, so a mixed-up row cannot make a node sign with a key
/// its tokens do not name.
fn signing_key_record(
    row: SigningKeyRow,
    key_encryption: Option<&KeyEncryptionKey>,
) -> Result<SigningKeyRecord, AuthStoreError> {
    let public_key = PublicKey::from_spki_pem(&row.public_key_pem)
        .map_err(|e| corrupt(format!("public key {:?}: {e}", row.kid)))?;
    let private_pem = row
        .private_key_pem
        .as_deref()
        .map(|stored| unseal(key_encryption, &row.kid, stored))
        .transpose()
        .map_err(|e| AuthStoreError::Backend(Box::new(e)))?;
    let private_key = private_pem
        .as_deref()
        .map(SigningKey::from_pkcs8_pem)
        .transpose()
        .map_err(|e| corrupt(format!("private key {:?}: {e}", row.kid)))?;
    let halves_match = private_key.as_ref().is_none_or(|key| key.kid() == row.kid);
    if public_key.kid() != row.kid || !halves_match {
        return Err(corrupt(format!(
            "signing key {:?} does not match its kid",
            row.kid
        )));
    }
    Ok(SigningKeyRecord {
        public_key,
        private_key,
        created_at: instant(row.created_at)?,
        retired_at: optional_instant(row.retired_at)?,
    })
}

fn signing_key_row(
    record: &SigningKeyRecord,
    key_encryption: Option<&KeyEncryptionKey>,
) -> SigningKeyRow {
    let kid = record.kid();
    SigningKeyRow {
        kid: kid.to_string(),
        private_key_pem: record.private_key.as_ref().map(|key| {
            let pem = key.to_pkcs8_pem();
            match key_encryption {
                Some(sealer) => sealer.seal(kid, pem.expose()),
                None => pem.expose().to_string(),
            }
        }),
        public_key_pem: record.public_key.to_spki_pem(),
        created_at: seconds(record.created_at),
        retired_at: record.retired_at.map(seconds),
    }
}

#[async_trait]
impl AuthStore for MetaAuthStore {
    async fn create_user(&self, change: &Change, user: UserRecord) -> Result<(), AuthStoreError> {
        self.inner
            .create_user(
                change,
                &UserRow {
                    name: user.name,
                    password_hash: user.password_hash,
                    is_admin: user.is_admin,
                    created_at: seconds(user.created_at),
                    disabled_at: user.disabled_at.map(seconds),
                },
            )
            .await
            .map_err(store_error)
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, AuthStoreError> {
        let row = self.inner.get_user(name).await.map_err(store_error)?;
        row.map(user_record).transpose()
    }

    async fn set_password_hash(
        &self,
        change: &Change,
        name: &str,
        password_hash: &str,
        keep_sessions: bool,
    ) -> Result<(), AuthStoreError> {
        self.inner
            .set_password_hash(change, name, password_hash, keep_sessions)
            .await
            .map_err(store_error)
    }

    async fn set_disabled(
        &self,
        change: &Change,
        name: &str,
        disabled: bool,
    ) -> Result<(), AuthStoreError> {
        self.inner
            .set_disabled(change, name, disabled)
            .await
            .map_err(store_error)
    }

    async fn set_admin(
        &self,
        change: &Change,
        name: &str,
        is_admin: bool,
    ) -> Result<(), AuthStoreError> {
        self.inner
            .set_admin(change, name, is_admin)
            .await
            .map_err(store_error)
    }

    async fn delete_user(&self, change: &Change, name: &str) -> Result<(), AuthStoreError> {
        self.inner
            .delete_user(change, name)
            .await
            .map_err(store_error)
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, AuthStoreError> {
        let rows = self.inner.list_users().await.map_err(store_error)?;
        rows.into_iter().map(user_record).collect()
    }

    async fn create_namespace(
        &self,
        change: &Change,
        namespace: NamespaceRecord,
        owner: Option<&str>,
    ) -> Result<(), AuthStoreError> {
        self.inner
            .create_namespace(
                change,
                &Namespace {
                    name: namespace.name,
                    visibility: stored_visibility(namespace.visibility),
                    created_at: seconds(namespace.created_at),
                },
                owner,
            )
            .await
            .map_err(store_error)
    }

    async fn get_namespace(&self, name: &str) -> Result<Option<NamespaceRecord>, AuthStoreError> {
        let row = self.inner.get_namespace(name).await.map_err(store_error)?;
        row.map(namespace_record).transpose()
    }

    async fn set_visibility(
        &self,
        change: &Change,
        name: &str,
        visibility: Visibility,
    ) -> Result<(), AuthStoreError> {
        self.inner
            .set_visibility(change, name, stored_visibility(visibility))
            .await
            .map_err(store_error)
    }

    async fn list_namespaces(&self) -> Result<Vec<NamespaceRecord>, AuthStoreError> {
        // Every namespace, a page at a time.
        const PAGE: usize = 1000;
        let mut namespaces = Vec::new();
        loop {
            let after = namespaces.last().map(|n: &NamespaceRecord| n.name.clone());
            let page = self
                .inner
                .list_namespaces(after.as_deref(), PAGE)
                .await
                .map_err(store_error)?;
            let full = page.len() == PAGE;
            for row in page {
                namespaces.push(namespace_record(row)?);
            }
            if !full {
                return Ok(namespaces);
            }
        }
    }

    async fn set_member(
        &self,
        change: &Change,
        namespace: &str,
        user: &str,
        role: Role,
    ) -> Result<(), AuthStoreError> {
        self.inner
            .set_member(change, namespace, user, role.as_str())
            .await
            .map_err(store_error)
    }

    async fn remove_member(
        &self,
        change: &Change,
        namespace: &str,
        user: &str,
    ) -> Result<(), AuthStoreError> {
        self.inner
            .remove_member(change, namespace, user)
            .await
            .map_err(store_error)
    }

    async fn list_members(&self, namespace: &str) -> Result<Vec<MemberRecord>, AuthStoreError> {
        let rows = self
            .inner
            .list_members(namespace)
            .await
            .map_err(store_error)?;
        rows.into_iter()
            .map(|row: MemberRow| {
                Ok(MemberRecord {
                    role: parse_role(&row.role)?,
                    namespace: row.namespace,
                    user: row.user,
                })
            })
            .collect()
    }

    async fn member_role(
        &self,
        namespace: &str,
        user: &str,
    ) -> Result<Option<Role>, AuthStoreError> {
        let role = self
            .inner
            .member_role(namespace, user)
            .await
            .map_err(store_error)?;
        role.as_deref().map(parse_role).transpose()
    }

    async fn namespaces_with_facts(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<(NamespaceRecord, NamespaceFacts)>, AuthStoreError> {
        let namespaces = self.list_namespaces().await?;
        let mut roles = std::collections::HashMap::new();
        if let Some(user) = user {
            for row in self.inner.memberships_of(user).await.map_err(store_error)? {
                roles.insert(row.namespace, parse_role(&row.role)?);
            }
        }
        Ok(namespaces
            .into_iter()
            .map(|record| {
                let facts = NamespaceFacts::Exists {
                    visibility: record.visibility,
                    member_role: roles.get(&record.name).copied(),
                };
                (record, facts)
            })
            .collect())
    }

    async fn namespace_page(
        &self,
        reach: berth_meta::NamespaceReach<'_>,
        user: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(NamespaceRecord, NamespaceFacts)>, AuthStoreError> {
        let page = self
            .inner
            .namespace_page(reach, user, after, limit)
            .await
            .map_err(store_error)?;
        page.into_iter()
            .map(|entry| {
                let record = namespace_record(entry.namespace)?;
                let facts = NamespaceFacts::Exists {
                    visibility: record.visibility,
                    member_role: entry.role.as_deref().map(parse_role).transpose()?,
                };
                Ok((record, facts))
            })
            .collect()
    }

    async fn namespace_facts(
        &self,
        namespace: &str,
        user: Option<&str>,
    ) -> Result<NamespaceFacts, AuthStoreError> {
        // One statement: this runs on every authorized request.
        let Some(entry) = self
            .inner
            .namespace_with_role(namespace, user)
            .await
            .map_err(store_error)?
        else {
            return Ok(NamespaceFacts::Missing);
        };
        let record = namespace_record(entry.namespace)?;
        Ok(NamespaceFacts::Exists {
            visibility: record.visibility,
            member_role: entry.role.as_deref().map(parse_role).transpose()?,
        })
    }

    async fn create_access_token(
        &self,
        change: &Change,
        token: AccessTokenRecord,
    ) -> Result<(), AuthStoreError> {
        let scopes = serde_json::to_string(&token.scopes)
            .map_err(|e| corrupt(format!("serializing scopes: {e}")))?;
        self.inner
            .create_access_token(
                change,
                &AccessTokenRow {
                    name: token.name,
                    secret_hash: token.secret_hash.to_hex(),
                    scopes,
                    created_by: token.created_by,
                    created_at: seconds(token.created_at),
                    expires_at: token.expires_at.map(seconds),
                    last_used_at: token.last_used_at.map(seconds),
                    revoked_at: token.revoked_at.map(seconds),
                },
            )
            .await
            .map_err(store_error)
    }

    async fn get_access_token(
        &self,
        name: &str,
    ) -> Result<Option<AccessTokenRecord>, AuthStoreError> {
        let row = self
            .inner
            .get_access_token(name)
            .await
            .map_err(store_error)?;
        row.map(access_token_record).transpose()
    }

    async fn touch_access_token(
        &self,
        name: &str,
        at: OffsetDateTime,
    ) -> Result<(), AuthStoreError> {
        self.inner
            .touch_access_token(name, seconds(at))
            .await
            .map_err(store_error)
    }

    async fn revoke_access_token(&self, change: &Change, name: &str) -> Result<(), AuthStoreError> {
        self.inner
            .revoke_access_token(change, name)
            .await
            .map_err(store_error)
    }

    async fn list_access_tokens(&self) -> Result<Vec<AccessTokenRecord>, AuthStoreError> {
        let rows = self.inner.list_access_tokens().await.map_err(store_error)?;
        rows.into_iter().map(access_token_record).collect()
    }

    async fn create_refresh_token(&self, token: RefreshTokenRecord) -> Result<(), AuthStoreError> {
        self.inner
            .create_refresh_token(&RefreshTokenRow {
                secret_hash: token.secret_hash.to_hex(),
                user: token.user,
                family: token.family.to_hex(),
                created_at: seconds(token.created_at),
                expires_at: token.expires_at.map(seconds),
                revoked_at: token.revoked_at.map(seconds),
            })
            .await
            .map_err(store_error)
    }

    async fn get_refresh_token(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<RefreshTokenRecord>, AuthStoreError> {
        let row = self
            .inner
            .get_refresh_token(&hash.to_hex())
            .await
            .map_err(store_error)?;
        row.map(refresh_token_record).transpose()
    }

    async fn rotate_refresh_token(
        &self,
        presented: &SecretHash,
        new: RefreshTokenRecord,
        at: OffsetDateTime,
    ) -> Result<RefreshRotation, AuthStoreError> {
        self.inner
            .rotate_refresh_token(
                &presented.to_hex(),
                &RefreshTokenRow {
                    secret_hash: new.secret_hash.to_hex(),
                    user: new.user,
                    family: new.family.to_hex(),
                    created_at: seconds(new.created_at),
                    expires_at: new.expires_at.map(seconds),
                    revoked_at: None,
                },
                seconds(at),
            )
            .await
            .map_err(store_error)
    }

    async fn revoke_refresh_token(
        &self,
        hash: &SecretHash,
        at: OffsetDateTime,
    ) -> Result<(), AuthStoreError> {
        self.inner
            .revoke_refresh_token(&hash.to_hex(), seconds(at))
            .await
            .map_err(store_error)
    }

    async fn create_session(
        &self,
        session: SessionRecord,
        idle_since: OffsetDateTime,
    ) -> Result<(), AuthStoreError> {
        self.inner
            .create_session(
                &SessionRow {
                    secret_hash: session.secret_hash.to_hex(),
                    user: session.user,
                    created_at: seconds(session.created_at),
                    last_seen_at: seconds(session.last_seen_at),
                    expires_at: seconds(session.expires_at),
                    revoked_at: session.revoked_at.map(seconds),
                },
                seconds(idle_since),
            )
            .await
            .map_err(store_error)
    }

    async fn get_session(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<SessionRecord>, AuthStoreError> {
        let row = self
            .inner
            .get_session(&hash.to_hex())
            .await
            .map_err(store_error)?;
        row.map(session_record).transpose()
    }

    async fn touch_session(
        &self,
        hash: &SecretHash,
        at: OffsetDateTime,
    ) -> Result<(), AuthStoreError> {
        self.inner
            .touch_session(&hash.to_hex(), seconds(at))
            .await
            .map_err(store_error)
    }

    async fn revoke_session(
        &self,
        hash: &SecretHash,
        at: OffsetDateTime,
    ) -> Result<(), AuthStoreError> {
        self.inner
            .revoke_session(&hash.to_hex(), seconds(at))
            .await
            .map_err(store_error)
    }

    async fn revoke_sessions_of_user(
        &self,
        user: &str,
        at: OffsetDateTime,
    ) -> Result<u64, AuthStoreError> {
        self.inner
            .revoke_sessions_of_user(user, seconds(at))
            .await
            .map_err(store_error)
    }

    async fn revoke_refresh_tokens_of_user(
        &self,
        user: &str,
        at: OffsetDateTime,
    ) -> Result<u64, AuthStoreError> {
        self.inner
            .revoke_refresh_tokens_of_user(user, seconds(at))
            .await
            .map_err(store_error)
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, AuthStoreError> {
        let rows = self.inner.list_signing_keys().await.map_err(store_error)?;
        rows.into_iter()
            .map(|row| signing_key_record(row, self.key_encryption.as_deref()))
            .collect()
    }

    async fn insert_first_signing_key(
        &self,
        key: SigningKeyRecord,
    ) -> Result<bool, AuthStoreError> {
        self.inner
            .insert_first_signing_key(&signing_key_row(&key, self.key_encryption.as_deref()))
            .await
            .map_err(store_error)
    }

    async fn rotate_signing_key(
        &self,
        key: SigningKeyRecord,
        drop_retired_before: OffsetDateTime,
    ) -> Result<KeyRotation, AuthStoreError> {
        let rotation = self
            .inner
            .rotate_signing_key(
                &signing_key_row(&key, self.key_encryption.as_deref()),
                seconds(drop_retired_before),
            )
            .await
            .map_err(store_error)?;
        Ok(KeyRotation {
            current: key.kid().to_string(),
            retired: rotation.retired,
            dropped: rotation.dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::generate_access_token;
    use crate::store::issue_refresh_token;

    #[tokio::test]
    async fn signing_keys_are_sealed_at_rest_when_a_key_is_configured() {
        use crate::key_encryption::{KeyEncryptionKey, SEALED_PREFIX};
        let sqlite = berth_meta::sqlite::SqliteMetaStore::open_in_memory()
            .await
            .unwrap();
        let inner: Arc<dyn AuthMetaStore> = Arc::new(sqlite);
        let key = KeyEncryptionKey::parse(&"42".repeat(32)).unwrap();
        let plain = MetaAuthStore::new(inner.clone());
        let sealing = MetaAuthStore::new(inner.clone()).with_key_encryption(Some(key.clone()));
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let stored = |inner: Arc<dyn AuthMetaStore>| async move {
            inner
                .list_signing_keys()
                .await
                .unwrap()
                .into_iter()
                .filter_map(|row| row.private_key_pem)
                .collect::<Vec<_>>()
        };

        // A key made before any key-encryption key is plain; the next start
        // with one seals it, once, and it still signs.
        let (keys, _) = crate::keys::load_or_create(&plain, now, || Ok(None))
            .await
            .unwrap();
        let kid = keys.current().kid().to_string();
        assert!(stored(inner.clone()).await[0].starts_with("-----BEGIN"));
        assert_eq!(sealing.seal_signing_keys().await.unwrap(), 1);
        assert_eq!(sealing.seal_signing_keys().await.unwrap(), 0);
        assert!(stored(inner.clone()).await[0].starts_with(SEALED_PREFIX));
        let loaded = crate::keys::load(&sealing).await.unwrap();
        assert_eq!(loaded.current().kid(), kid);

        // Without the key, or with another, loading fails naming the setting.
        let missing = crate::keys::load(&plain).await.unwrap_err().to_string();
        assert!(missing.contains("key_encryption_key_file"), "{missing}");
        let other = MetaAuthStore::new(inner.clone())
            .with_key_encryption(Some(KeyEncryptionKey::parse(&"17".repeat(32)).unwrap()));
        let wrong = crate::keys::load(&other).await.unwrap_err().to_string();
        assert!(wrong.contains("does not decrypt"), "{wrong}");

        // A rotation through the sealing store stores the new key sealed.
        crate::keys::rotate(&sealing, now, time::Duration::minutes(5))
            .await
            .unwrap();
        let private_halves = stored(inner.clone()).await;
        assert_eq!(
            private_halves.len(),
            1,
            "the retired key lost its private half"
        );
        assert!(private_halves[0].starts_with(SEALED_PREFIX));
        crate::keys::load(&sealing).await.unwrap();
    }
    use berth_meta::sqlite::SqliteMetaStore;
    use time::Duration;

    #[tokio::test]
    async fn records_round_trip_through_sqlite() {
        let sqlite = SqliteMetaStore::open_in_memory().await.unwrap();
        let store = MetaAuthStore::new(Arc::new(sqlite));
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        store
            .create_user(
                &crate::actor::test_change(),
                UserRecord {
                    name: "alice".into(),
                    password_hash: "$argon2id$x".into(),
                    is_admin: false,
                    created_at: now,
                    disabled_at: None,
                },
            )
            .await
            .unwrap();
        store
            .create_namespace(
                &crate::actor::test_change(),
                NamespaceRecord {
                    name: "team".into(),
                    visibility: Visibility::Public,
                    created_at: now,
                },
                Some("alice"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.namespace_facts("team", Some("alice")).await.unwrap(),
            NamespaceFacts::Exists {
                visibility: Visibility::Public,
                member_role: Some(Role::Owner)
            }
        );
        let (secret, secret_hash) = generate_access_token();
        let record = AccessTokenRecord {
            name: "ci".into(),
            secret_hash,
            scopes: vec![TokenScope::parse("team/api:pull,push").unwrap()],
            created_by: Some("alice".into()),
            created_at: now,
            expires_at: Some(now + Duration::days(1)),
            last_used_at: None,
            revoked_at: None,
        };
        store
            .create_access_token(&crate::actor::test_change(), record.clone())
            .await
            .unwrap();
        let stored = store.get_access_token("ci").await.unwrap().unwrap();
        assert_eq!(stored, record);
        assert!(stored.authenticate(secret.expose(), now).is_some());
        let (refresh, refresh_record) = issue_refresh_token("alice", now, Duration::days(1));
        store
            .create_refresh_token(refresh_record.clone())
            .await
            .unwrap();
        assert_eq!(
            store
                .get_refresh_token(&SecretHash::of(refresh.expose()))
                .await
                .unwrap(),
            Some(refresh_record)
        );
    }
}
