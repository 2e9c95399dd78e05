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
    /// The change would leave the registry without an enabled
    /// administrator: nobody could manage users through the API any more.
    #[error("{0:?} is the last enabled administrator; make someone else administrator first")]
    LastAdmin(String),
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
                disabled_at: None,
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
    store
        .set_member(change, namespace, user, role)
        .await
        .map_err(member_error(
            namespace,
            user,
            format!("namespace {namespace:?} or user {user:?}"),
        ))
}

/// Removes a member. Removing the namespace's last owner is refused
/// ([`AdminError::LastOwner`]).
pub async fn remove_member(
    store: &dyn AuthStore,
    namespace: &str,
    user: &str,
    change: &Change,
) -> Result<(), AdminError> {
    store
        .remove_member(change, namespace, user)
        .await
        .map_err(member_error(
            namespace,
            user,
            format!("member {user:?} of namespace {namespace:?}"),
        ))
}

/// The error of a change to `user`'s membership of `namespace`:
/// [`AdminError::LastOwner`] when the store refused to take the namespace's
/// last owner's role (it checks in the change's own transaction, so two
/// owners demoting each other at once cannot both succeed).
/// `what` names the missing thing for [`AdminError::NotFound`].
fn member_error(
    namespace: &str,
    user: &str,
    what: String,
) -> impl FnOnce(AuthStoreError) -> AdminError {
    let (namespace, user) = (namespace.to_string(), user.to_string());
    move |error| match error {
        AuthStoreError::LastOwner => AdminError::LastOwner { namespace, user },
        other => store_error(what)(other),
    }
}

/// Creates an access token and returns its secret, to be shown once. With
/// `max_lifetime` (`[auth] max_token_lifetime`), an expiry beyond it, or
/// none, is refused.
pub async fn create_access_token(
    store: &dyn AuthStore,
    name: &str,
    scopes: Vec<TokenScope>,
    expiry: Expiry,
    created_by: Option<&str>,
    max_lifetime: Option<time::Duration>,
    change: &Change,
) -> Result<Secret, AdminError> {
    let now = change_time(change);
    validate_account_name(name)?;
    if let Some(max) = max_lifetime {
        let within = matches!(expiry, Expiry::After(lifetime) if lifetime <= max);
        if !within {
            return Err(AuthError::ExpiryBeyondMaximum(max.whole_seconds()).into());
        }
    }
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

/// Sets a user's password (an administrator's reset, or the user's own
/// change once their current password is checked). Every refresh token of
/// the user is revoked with it, so stored logins of the old password end.
pub async fn set_password(
    store: &dyn AuthStore,
    name: &str,
    password: &Secret,
    change: &Change,
) -> Result<(), AdminError> {
    validate_new_password(password.expose())?;
    let password_hash = hash_password(password.expose())?;
    store
        .set_password_hash(change, name, &password_hash, false)
        .await
        .map_err(store_error(format!("user {name:?}")))
}

/// Disables or enables a user. A disabled user cannot log in and every
/// credential of theirs stops working at its next check: refresh tokens
/// are revoked, registry tokens are refused because their subject is
/// disabled, and the access tokens they created are refused because their
/// creator is. Disabling the last enabled administrator is refused.
pub async fn set_disabled(
    store: &dyn AuthStore,
    name: &str,
    disabled: bool,
    change: &Change,
) -> Result<(), AdminError> {
    store
        .set_disabled(change, name, disabled)
        .await
        .map_err(user_error(name))
}

/// Grants or withdraws the administrator flag. Withdrawing it from the last
/// enabled administrator is refused.
pub async fn set_admin(
    store: &dyn AuthStore,
    name: &str,
    is_admin: bool,
    change: &Change,
) -> Result<(), AdminError> {
    store
        .set_admin(change, name, is_admin)
        .await
        .map_err(user_error(name))
}

/// Deletes a user with their memberships and refresh tokens; their personal
/// namespace stays (an administrator may delete it), and the access tokens
/// they created stop working, because their creator is gone. Deleting the
/// last enabled administrator is refused.
pub async fn delete_user(
    store: &dyn AuthStore,
    name: &str,
    change: &Change,
) -> Result<(), AdminError> {
    store
        .delete_user(change, name)
        .await
        .map_err(user_error(name))
}

/// The error of a change to user `name`: [`AdminError::LastAdmin`] when the
/// store refused to take the last enabled administrator's role (it checks
/// in the change's own transaction, so two administrators demoting each
/// other at once cannot both succeed).
fn user_error(name: &str) -> impl FnOnce(AuthStoreError) -> AdminError {
    let name = name.to_string();
    move |error| match error {
        AuthStoreError::LastAdmin => AdminError::LastAdmin(name),
        other => store_error(format!("user {name:?}"))(other),
    }
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
            create_access_token(
                &store,
                "alice",
                scopes.clone(),
                Expiry::Never,
                None,
                None,
                &now
            )
            .await,
            Err(AdminError::AlreadyExists(_))
        ));
        let day = time::Duration::days(1);
        for (expiry, max) in [(Expiry::Never, day), (Expiry::After(day * 2), day)] {
            assert!(matches!(
                create_access_token(
                    &store,
                    "capped",
                    scopes.clone(),
                    expiry,
                    None,
                    Some(max),
                    &now
                )
                .await,
                Err(AdminError::Invalid(AuthError::ExpiryBeyondMaximum(86_400)))
            ));
        }
        create_access_token(
            &store,
            "capped",
            scopes.clone(),
            Expiry::After(day),
            None,
            Some(day),
            &now,
        )
        .await
        .unwrap();
        let secret = create_access_token(&store, "ci", scopes, Expiry::Never, None, None, &now)
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

#[cfg(test)]
mod credential_tests {
    use super::*;
    use crate::meta_store::MetaAuthStore;
    use crate::password::{verify_password, PasswordCheck};
    use crate::store::{issue_refresh_token, REFRESH_TOKEN_LIFETIME};

    #[tokio::test]
    async fn passwords_disabling_demotion_and_deletion() {
        let store = MetaAuthStore::in_memory().await;
        let change = crate::actor::test_change();
        let now = change_time(&change);
        let password = Secret::new("long enough password");
        for (user, admin) in [("root", true), ("alice", false)] {
            create_user(&store, user, &password, admin, &change)
                .await
                .unwrap();
        }
        let (_, record) = issue_refresh_token("alice", now, REFRESH_TOKEN_LIFETIME);
        let hash = record.secret_hash;
        store.create_refresh_token(record).await.unwrap();

        // A new password replaces the hash and revokes stored logins.
        assert!(matches!(
            set_password(&store, "alice", &Secret::new("short"), &change).await,
            Err(AdminError::Invalid(_))
        ));
        let new = Secret::new("another long password");
        set_password(&store, "alice", &new, &change).await.unwrap();
        let alice = store.get_user("alice").await.unwrap().unwrap();
        assert!(matches!(
            verify_password(new.expose(), &alice.password_hash),
            PasswordCheck::Valid { .. }
        ));
        let refresh = store.get_refresh_token(&hash).await.unwrap().unwrap();
        assert!(!refresh.is_usable(now));
        assert!(matches!(
            set_password(&store, "nobody", &new, &change).await,
            Err(AdminError::NotFound(_))
        ));

        // The last enabled administrator stays one.
        let last_admin = |result| matches!(result, Err(AdminError::LastAdmin(_)));
        assert!(last_admin(set_admin(&store, "root", false, &change).await));
        assert!(last_admin(
            set_disabled(&store, "root", true, &change).await
        ));
        assert!(last_admin(delete_user(&store, "root", &change).await));
        set_admin(&store, "alice", true, &change).await.unwrap();
        set_disabled(&store, "root", true, &change).await.unwrap();
        // A disabled administrator does not count: alice is the last one now.
        assert!(last_admin(set_admin(&store, "alice", false, &change).await));
        set_disabled(&store, "root", false, &change).await.unwrap();
        set_admin(&store, "alice", false, &change).await.unwrap();
        assert!(!store.get_user("alice").await.unwrap().unwrap().is_admin);

        set_disabled(&store, "alice", true, &change).await.unwrap();
        assert!(store
            .get_user("alice")
            .await
            .unwrap()
            .unwrap()
            .is_disabled());
        delete_user(&store, "alice", &change).await.unwrap();
        assert_eq!(store.get_user("alice").await.unwrap(), None);
        assert!(matches!(
            delete_user(&store, "alice", &change).await,
            Err(AdminError::NotFound(_))
        ));
        assert!(matches!(
            set_disabled(&store, "alice", false, &change).await,
            Err(AdminError::NotFound(_))
        ));
    }
}
