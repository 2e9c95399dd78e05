//! Administration over an [`AuthStore`]: creating users (with their personal
//! namespace), namespaces, members and access tokens, with the checks every
//! caller needs (names, password strength, name collisions, a namespace
//! keeping its last owner). The `berth admin`
//! command line and the `/api/v1` management API both call these, so the
//! rules are written once; who may call them is the caller's decision, and
//! who is calling travels in the [`Change`] each takes.

use crate::actor::{change_time, Change};
use crate::error::{AuthError, AuthStoreError};
use crate::model::{validate_account_name, Role, Secret, TokenScope, Visibility};
use crate::password::{hash_password, validate_new_password};
use crate::secret::{generate_access_token, Expiry};
use crate::store::{AccessTokenRecord, AuthStore, NamespaceRecord, UserRecord};

/// Why an administrative change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A name, password, scope or expiry is malformed.
    #[error(transparent)]
    Invalid(#[from] AuthError),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The change would leave a namespace that has an owner without one:
    /// nobody but administrators could manage it any more.
    #[error(
        "{user:?} is the last owner of namespace {namespace:?}; make someone else owner first"
    )]
    LastOwner { namespace: String, user: String },
    #[error(transparent)]
    Store(AuthStoreError),
}

fn store_error(what: impl Into<String>) -> impl FnOnce(AuthStoreError) -> AdminError {
    let what = what.into();
    move |error| match error {
        AuthStoreError::AlreadyExists => AdminError::AlreadyExists(what),
        AuthStoreError::NotFound => AdminError::NotFound(what),
        other => AdminError::Store(other),
    }
}

/// Creates a user and their personal namespace (private, the user as owner).
/// Refused when a namespace or access token already has the name, so nobody
/// inherits a team's namespace by registering its name and a bearer token's
/// subject always names one principal.
pub async fn create_user(
    store: &dyn AuthStore,
    name: &str,
    password: &Secret,
    is_admin: bool,
    change: &Change,
) -> Result<(), AdminError> {
    let now = change_time(change);
    validate_account_name(name)?;
    validate_new_password(password.expose())?;
    let taken = store
        .get_namespace(name)
        .await
        .map_err(AdminError::Store)?
        .is_some()
        || store
            .get_access_token(name)
            .await
            .map_err(AdminError::Store)?
            .is_some();
    if taken {
        return Err(AdminError::AlreadyExists(format!("name {name:?}")));
    }
    let password_hash = hash_password(password.expose())?;
    store
        .create_user(
            change,
            UserRecord {
                name: name.to_string(),
                password_hash,
                is_admin,
                created_at: now,
            },
        )
        .await
        .map_err(store_error(format!("user {name:?}")))?;
    store
        .create_namespace(
            change,
            NamespaceRecord {
                name: name.to_string(),
                visibility: Visibility::Private,
                created_at: now,
            },
            Some(name),
        )
        .await
        .map_err(store_error(format!("namespace {name:?}")))
}

/// Creates a namespace, owned by `owner` if given.
pub async fn create_namespace(
    store: &dyn AuthStore,
    name: &str,
    visibility: Visibility,
    owner: Option<&str>,
    change: &Change,
) -> Result<(), AdminError> {
    validate_account_name(name)?;
    store
        .create_namespace(
            change,
            NamespaceRecord {
                name: name.to_string(),
                visibility,
                created_at: change_time(change),
            },
            owner,
        )
        .await
        .map_err(store_error(format!("namespace {name:?} (or its owner)")))
}

/// Adds a member or changes their role. Demoting the namespace's last owner
/// is refused ([`AdminError::LastOwner`]).
pub async fn set_member(
    store: &dyn AuthStore,
    namespace: &str,
    user: &str,
    role: Role,
    change: &Change,
) -> Result<(), AdminError> {
    if role != Role::Owner {
        keep_an_owner(store, namespace, user).await?;
    }
    store
        .set_member(change, namespace, user, role)
        .await
        .map_err(store_error(format!(
            "namespace {namespace:?} or user {user:?}"
        )))
}

/// Removes a member. Removing the namespace's last owner is refused
/// ([`AdminError::LastOwner`]).
pub async fn remove_member(
    store: &dyn AuthStore,
    namespace: &str,
    user: &str,
    change: &Change,
) -> Result<(), AdminError> {
    keep_an_owner(store, namespace, user).await?;
    store
        .remove_member(change, namespace, user)
        .await
        .map_err(store_error(format!(
            "member {user:?} of namespace {namespace:?}"
        )))
}

/// Refuses a change that takes the owner role from `user` when they are
/// the only owner of `namespace`.
///
/// The check reads before the change writes, so two owners demoting each
/// other at the same instant could both pass it; the store offers no
/// conditional write to close that window, and an administrator can always
/// name a new owner.
async fn keep_an_owner(
    store: &dyn AuthStore,
    namespace: &str,
    user: &str,
) -> Result<(), AdminError> {
    let members = store
        .list_members(namespace)
        .await
        .map_err(AdminError::Store)?;
    let owners = members.iter().filter(|m| m.role == Role::Owner);
    let is_owner = members
        .iter()
        .any(|m| m.user == user && m.role == Role::Owner);
    if is_owner && owners.count() == 1 {
        return Err(AdminError::LastOwner {
            namespace: namespace.to_string(),
            user: user.to_string(),
        });
    }
    Ok(())
}

/// Creates an access token and returns its secret, to be shown once.
pub async fn create_access_token(
    store: &dyn AuthStore,
    name: &str,
    scopes: Vec<TokenScope>,
    expiry: Expiry,
    created_by: Option<&str>,
    change: &Change,
) -> Result<Secret, AdminError> {
    let now = change_time(change);
    validate_account_name(name)?;
    if scopes.is_empty() {
        return Err(
            AuthError::InvalidTokenScope(String::new(), "at least one scope is needed").into(),
        );
    }
    if store
        .get_user(name)
        .await
        .map_err(AdminError::Store)?
        .is_some()
    {
        return Err(AdminError::AlreadyExists(format!("user {name:?}")));
    }
    let (secret, secret_hash) = generate_access_token();
    store
        .create_access_token(
            change,
            AccessTokenRecord {
                name: name.to_string(),
                secret_hash,
                scopes,
                created_by: created_by.map(str::to_string),
                created_at: now,
                expires_at: expiry.expires_at(now),
                last_used_at: None,
                revoked_at: None,
            },
        )
        .await
        .map_err(store_error(format!("token {name:?}")))?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta_store::MetaAuthStore;

    #[tokio::test]
    async fn users_tokens_and_namespaces_do_not_collide() {
        let store = MetaAuthStore::in_memory().await;
        let now = crate::actor::test_change();
        let password = Secret::new("long enough password");
        create_user(&store, "alice", &password, false, &now)
            .await
            .unwrap();
        assert_eq!(
            store.member_role("alice", "alice").await.unwrap(),
            Some(Role::Owner)
        );
        create_namespace(&store, "team", Visibility::Public, None, &now)
            .await
            .unwrap();
        assert!(matches!(
            create_user(&store, "team", &password, false, &now).await,
            Err(AdminError::AlreadyExists(_))
        ));
        assert!(matches!(
            create_user(&store, "bob", &Secret::new("short"), false, &now).await,
            Err(AdminError::Invalid(_))
        ));
        let scopes = vec![TokenScope::parse("team:pull").unwrap()];
        assert!(matches!(
            create_access_token(&store, "alice", scopes.clone(), Expiry::Never, None, &now).await,
            Err(AdminError::AlreadyExists(_))
        ));
        let secret = create_access_token(&store, "ci", scopes, Expiry::Never, None, &now)
            .await
            .unwrap();
        assert!(crate::secret::looks_like_access_token(secret.expose()));
        assert!(matches!(
            create_user(&store, "ci", &password, false, &now).await,
            Err(AdminError::AlreadyExists(_))
        ));
    }

    #[tokio::test]
    async fn a_namespace_keeps_its_last_owner() {
        let store = MetaAuthStore::in_memory().await;
        let now = crate::actor::test_change();
        let password = Secret::new("long enough password");
        for user in ["alice", "bob"] {
            create_user(&store, user, &password, false, &now)
                .await
                .unwrap();
        }
        let last_owner = |result| matches!(result, Err(AdminError::LastOwner { .. }));
        assert!(last_owner(
            set_member(&store, "alice", "alice", Role::Maintainer, &now).await
        ));
        assert!(last_owner(
            remove_member(&store, "alice", "alice", &now).await
        ));
        // Re-asserting the role is no demotion.
        set_member(&store, "alice", "alice", Role::Owner, &now)
            .await
            .unwrap();
        // With a second owner, either may step down, and then the other is the last.
        set_member(&store, "alice", "bob", Role::Owner, &now)
            .await
            .unwrap();
        set_member(&store, "alice", "alice", Role::Reader, &now)
            .await
            .unwrap();
        assert!(last_owner(
            remove_member(&store, "alice", "bob", &now).await
        ));
        remove_member(&store, "alice", "alice", &now).await.unwrap();
        assert!(matches!(
            remove_member(&store, "alice", "alice", &now).await,
            Err(AdminError::NotFound(_))
        ));
        // A namespace nobody owned (made by an administrator) has no owner to keep.
        create_namespace(&store, "team", Visibility::Private, None, &now)
            .await
            .unwrap();
        set_member(&store, "team", "bob", Role::Writer, &now)
            .await
            .unwrap();
        remove_member(&store, "team", "bob", &now).await.unwrap();
    }
}
