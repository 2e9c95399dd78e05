//! [`MemoryAuthStore`]: an in-memory [`AuthStore`], the executable reading of
//! the trait's contract. It backs this crate's login tests and lets server
//! tests run with access control but without a database. Not for production:
//! nothing is persisted.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::actor::{change_time, Change};
use crate::model::{Role, Visibility};
use crate::secret::SecretHash;
use crate::store::{
    AccessTokenRecord, AuthStore, AuthStoreError, KeyRotation, MemberRecord, NamespaceRecord,
    RefreshTokenRecord, SigningKeyRecord, UserRecord,
};

#[derive(Default)]
struct State {
    // BTreeMaps, so listings come out sorted by name as the contract asks.
    users: BTreeMap<String, UserRecord>,
    namespaces: BTreeMap<String, NamespaceRecord>,
    /// (namespace, user) → role.
    members: BTreeMap<(String, String), Role>,
    access_tokens: BTreeMap<String, AccessTokenRecord>,
    refresh_tokens: BTreeMap<[u8; 32], RefreshTokenRecord>,
    /// Oldest first, as listed.
    signing_keys: Vec<SigningKeyRecord>,
}

/// Puts keys in listing order: oldest first, then by kid.
fn sort_signing_keys(keys: &mut [SigningKeyRecord]) {
    keys.sort_by(|a, b| (a.created_at, a.kid()).cmp(&(b.created_at, b.kid())));
}

/// Refuses a key that is not current where the contract asks for one.
fn require_current(key: &SigningKeyRecord) -> Result<(), AuthStoreError> {
    if key.retired_at.is_some() || key.private_key.is_none() {
        return Err(AuthStoreError::Backend(
            format!("signing key {} must be current", key.kid()).into(),
        ));
    }
    Ok(())
}

/// An [`AuthStore`] in a mutex.
#[derive(Default)]
pub struct MemoryAuthStore {
    state: Mutex<State>,
}

impl MemoryAuthStore {
    pub fn new() -> MemoryAuthStore {
        MemoryAuthStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

#[async_trait]
impl AuthStore for MemoryAuthStore {
    async fn create_user(&self, _change: &Change, user: UserRecord) -> Result<(), AuthStoreError> {
        self.with(|s| {
            if s.users.contains_key(&user.name) {
                return Err(AuthStoreError::AlreadyExists);
            }
            s.users.insert(user.name.clone(), user);
            Ok(())
        })
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, AuthStoreError> {
        Ok(self.with(|s| s.users.get(name).cloned()))
    }

    async fn set_password_hash(
        &self,
        _change: &Change,
        name: &str,
        password_hash: &str,
    ) -> Result<(), AuthStoreError> {
        self.with(|s| {
            let user = s.users.get_mut(name).ok_or(AuthStoreError::NotFound)?;
            user.password_hash = password_hash.to_string();
            Ok(())
        })
    }

    async fn set_admin(
        &self,
        _change: &Change,
        name: &str,
        is_admin: bool,
    ) -> Result<(), AuthStoreError> {
        self.with(|s| {
            s.users
                .get_mut(name)
                .ok_or(AuthStoreError::NotFound)?
                .is_admin = is_admin;
            Ok(())
        })
    }

    async fn delete_user(&self, _change: &Change, name: &str) -> Result<(), AuthStoreError> {
        self.with(|s| {
            s.users.remove(name).ok_or(AuthStoreError::NotFound)?;
            s.members.retain(|(_, user), _| user != name);
            s.refresh_tokens.retain(|_, token| token.user != name);
            Ok(())
        })
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, AuthStoreError> {
        Ok(self.with(|s| s.users.values().cloned().collect()))
    }

    async fn create_namespace(
        &self,
        _change: &Change,
        namespace: NamespaceRecord,
        owner: Option<&str>,
    ) -> Result<(), AuthStoreError> {
        self.with(|s| {
            if s.namespaces.contains_key(&namespace.name) {
                return Err(AuthStoreError::AlreadyExists);
            }
            if let Some(owner) = owner {
                if !s.users.contains_key(owner) {
                    return Err(AuthStoreError::NotFound);
                }
                s.members
                    .insert((namespace.name.clone(), owner.to_string()), Role::Owner);
            }
            s.namespaces.insert(namespace.name.clone(), namespace);
            Ok(())
        })
    }

    async fn get_namespace(&self, name: &str) -> Result<Option<NamespaceRecord>, AuthStoreError> {
        Ok(self.with(|s| s.namespaces.get(name).cloned()))
    }

    async fn set_visibility(
        &self,
        _change: &Change,
        name: &str,
        visibility: Visibility,
    ) -> Result<(), AuthStoreError> {
        self.with(|s| {
            s.namespaces
                .get_mut(name)
                .ok_or(AuthStoreError::NotFound)?
                .visibility = visibility;
            Ok(())
        })
    }

    async fn list_namespaces(&self) -> Result<Vec<NamespaceRecord>, AuthStoreError> {
        Ok(self.with(|s| s.namespaces.values().cloned().collect()))
    }

    async fn set_member(
        &self,
        _change: &Change,
        namespace: &str,
        user: &str,
        role: Role,
    ) -> Result<(), AuthStoreError> {
        self.with(|s| {
            if !s.namespaces.contains_key(namespace) || !s.users.contains_key(user) {
                return Err(AuthStoreError::NotFound);
            }
            s.members
                .insert((namespace.to_string(), user.to_string()), role);
            Ok(())
        })
    }

    async fn remove_member(
        &self,
        _change: &Change,
        namespace: &str,
        user: &str,
    ) -> Result<(), AuthStoreError> {
        self.with(|s| {
            s.members
                .remove(&(namespace.to_string(), user.to_string()))
                .map(|_| ())
                .ok_or(AuthStoreError::NotFound)
        })
    }

    async fn list_members(&self, namespace: &str) -> Result<Vec<MemberRecord>, AuthStoreError> {
        Ok(self.with(|s| {
            s.members
                .iter()
                .filter(|((ns, _), _)| ns == namespace)
                .map(|((ns, user), role)| MemberRecord {
                    namespace: ns.clone(),
                    user: user.clone(),
                    role: *role,
                })
                .collect()
        }))
    }

    async fn member_role(
        &self,
        namespace: &str,
        user: &str,
    ) -> Result<Option<Role>, AuthStoreError> {
        Ok(self.with(|s| {
            s.members
                .get(&(namespace.to_string(), user.to_string()))
                .copied()
        }))
    }

    async fn create_access_token(
        &self,
        _change: &Change,
        token: AccessTokenRecord,
    ) -> Result<(), AuthStoreError> {
        self.with(|s| {
            if s.access_tokens.contains_key(&token.name) {
                return Err(AuthStoreError::AlreadyExists);
            }
            s.access_tokens.insert(token.name.clone(), token);
            Ok(())
        })
    }

    async fn get_access_token(
        &self,
        name: &str,
    ) -> Result<Option<AccessTokenRecord>, AuthStoreError> {
        Ok(self.with(|s| s.access_tokens.get(name).cloned()))
    }

    async fn touch_access_token(
        &self,
        name: &str,
        at: OffsetDateTime,
    ) -> Result<(), AuthStoreError> {
        self.with(|s| {
            s.access_tokens
                .get_mut(name)
                .ok_or(AuthStoreError::NotFound)?
                .last_used_at = Some(at);
            Ok(())
        })
    }

    async fn revoke_access_token(&self, change: &Change, name: &str) -> Result<(), AuthStoreError> {
        let at = change_time(change);
        self.with(|s| {
            let token = s
                .access_tokens
                .get_mut(name)
                .ok_or(AuthStoreError::NotFound)?;
            token.revoked_at.get_or_insert(at);
            Ok(())
        })
    }

    async fn list_access_tokens(&self) -> Result<Vec<AccessTokenRecord>, AuthStoreError> {
        Ok(self.with(|s| s.access_tokens.values().cloned().collect()))
    }

    async fn create_refresh_token(&self, token: RefreshTokenRecord) -> Result<(), AuthStoreError> {
        self.with(|s| {
            if !s.users.contains_key(&token.user) {
                return Err(AuthStoreError::NotFound);
            }
            s.refresh_tokens
                .insert(*token.secret_hash.as_bytes(), token);
            Ok(())
        })
    }

    async fn get_refresh_token(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<RefreshTokenRecord>, AuthStoreError> {
        Ok(self.with(|s| s.refresh_tokens.get(hash.as_bytes()).cloned()))
    }

    async fn revoke_refresh_token(
        &self,
        hash: &SecretHash,
        at: OffsetDateTime,
    ) -> Result<(), AuthStoreError> {
        self.with(|s| {
            let token = s
                .refresh_tokens
                .get_mut(hash.as_bytes())
                .ok_or(AuthStoreError::NotFound)?;
            token.revoked_at.get_or_insert(at);
            Ok(())
        })
    }

    async fn revoke_refresh_tokens_of_user(
        &self,
        user: &str,
        at: OffsetDateTime,
    ) -> Result<u64, AuthStoreError> {
        Ok(self.with(|s| {
            let mut revoked = 0;
            for token in s
                .refresh_tokens
                .values_mut()
                .filter(|t| t.user == user && t.revoked_at.is_none())
            {
                token.revoked_at = Some(at);
                revoked += 1;
            }
            revoked
        }))
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, AuthStoreError> {
        Ok(self.with(|s| s.signing_keys.clone()))
    }

    async fn insert_first_signing_key(
        &self,
        key: SigningKeyRecord,
    ) -> Result<bool, AuthStoreError> {
        require_current(&key)?;
        Ok(self.with(|s| {
            if s.signing_keys.iter().any(|k| k.retired_at.is_none()) {
                return false;
            }
            s.signing_keys.push(key);
            sort_signing_keys(&mut s.signing_keys);
            true
        }))
    }

    async fn rotate_signing_key(
        &self,
        key: SigningKeyRecord,
        drop_retired_before: OffsetDateTime,
    ) -> Result<KeyRotation, AuthStoreError> {
        require_current(&key)?;
        self.with(|s| {
            if s.signing_keys.iter().any(|k| k.kid() == key.kid()) {
                return Err(AuthStoreError::AlreadyExists);
            }
            let mut dropped = Vec::new();
            s.signing_keys.retain(|k| match k.retired_at {
                Some(at) if at < drop_retired_before => {
                    dropped.push(k.kid().to_string());
                    false
                }
                _ => true,
            });
            dropped.sort();
            let mut retired = None;
            for old in s.signing_keys.iter_mut().filter(|k| k.retired_at.is_none()) {
                old.retired_at = Some(key.created_at);
                old.private_key = None;
                retired = Some(old.kid().to_string());
            }
            let current = key.kid().to_string();
            s.signing_keys.push(key);
            sort_signing_keys(&mut s.signing_keys);
            Ok(KeyRotation {
                current,
                retired,
                dropped,
            })
        })
    }
}
