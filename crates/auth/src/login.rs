//! Login: turning presented credentials into a [`Principal`], over an
//! [`AuthStore`] and the [`LoginThrottle`]. This is the one path every
//! credential takes (Basic on `/v2/`, the token endpoint's GET and its OAuth2
//! POST), so the order of checks is decided once:
//!
//! 1. The throttle, before any hashing: a locked (account, address) pair or
//!    address is refused without looking at the password. A secret shaped
//!    like an access token is 256 bits of randomness, which nobody guesses,
//!    so it is throttled by address only and its name cannot be locked out
//!    by others (`crate::throttle`).
//! 2. A password shaped like an access token (`berth_at_…`) is checked against
//!    the access token of that name; anything else against the user's argon2
//!    hash. An unknown user still costs one argon2 verification, so timing
//!    does not reveal which accounts exist.
//! 3. Failures are counted; a success clears the account's count, records the
//!    token's use, and upgrades a password hash made with weaker parameters.
//!
//! Every failure is the same [`LoginError::InvalidCredentials`]: the client is
//! never told whether the name or the secret was wrong.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::actor::{change_at, Actor};
use crate::error::AuthStoreError;
use crate::model::{Principal, Secret};
use crate::password::{dummy_verify, hash_password, verify_password, PasswordCheck};
use crate::secret::{looks_like_access_token, looks_like_refresh_token, SecretHash};
use crate::store::AuthStore;
use crate::throttle::LoginThrottle;

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Too many failures: try again after this long (answer 429 or 401).
    #[error("too many failed logins; retry after {0:?}")]
    Throttled(Duration),
    /// Wrong name or secret, expired or revoked token (answer 401).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The store failed (answer 500; details to the log).
    #[error(transparent)]
    Store(#[from] AuthStoreError),
}

/// Where and when a login happens: the client's address for throttling, the
/// wall-clock time for expiry, and a monotonic instant for the throttle.
#[derive(Clone, Copy, Debug)]
pub struct LoginContext {
    pub address: IpAddr,
    pub now: OffsetDateTime,
    pub instant: Instant,
}

/// Checks a user name and password (or access-token name and secret).
pub async fn login_with_password(
    store: &dyn AuthStore,
    throttle: &Mutex<LoginThrottle>,
    username: &str,
    password: &Secret,
    context: LoginContext,
) -> Result<Principal, LoginError> {
    let lock = || {
        throttle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    let token_login = looks_like_access_token(password.expose());
    let account = (!token_login).then_some(username);
    lock()
        .check(account, context.address, context.instant)
        .map_err(LoginError::Throttled)?;

    let principal = if token_login {
        match store.get_access_token(username).await? {
            Some(record) => record.authenticate(password.expose(), context.now),
            None => None,
        }
    } else {
        match store.get_user(username).await? {
            Some(user) => match verify_password(password.expose(), &user.password_hash) {
                PasswordCheck::Valid { needs_rehash } => {
                    if needs_rehash {
                        // Best effort: the login succeeds even if the upgrade fails.
                        if let Ok(hash) = hash_password(password.expose()) {
                            // The user's own login stores the stronger hash.
                            let actor =
                                Actor::user(user.name.clone()).from_address(context.address);
                            let change = change_at(&actor, context.now);
                            let _ = store.set_password_hash(&change, &user.name, &hash).await;
                        }
                    }
                    Some(Principal::User {
                        name: user.name,
                        is_admin: user.is_admin,
                    })
                }
                PasswordCheck::Invalid => None,
            },
            None => {
                dummy_verify(password.expose());
                None
            }
        }
    };

    match principal {
        Some(principal) => {
            lock().record_success(account, context.address, context.instant);
            if let Principal::AccessToken { name, .. } = &principal {
                // Advisory; a failure to record use must not fail the login.
                let _ = store.touch_access_token(name, context.now).await;
            }
            Ok(principal)
        }
        None => {
            lock().record_failure(account, context.address, context.instant);
            Err(LoginError::InvalidCredentials)
        }
    }
}

/// Exchanges a refresh token (OAuth2 `grant_type=refresh_token`) for the user
/// it stands for. Refresh tokens are 256-bit random, so guessing them is not
/// throttled per account; the caller may still count failures per address.
pub async fn login_with_refresh_token(
    store: &dyn AuthStore,
    refresh_token: &Secret,
    now: OffsetDateTime,
) -> Result<Principal, LoginError> {
    if !looks_like_refresh_token(refresh_token.expose()) {
        return Err(LoginError::InvalidCredentials);
    }
    let record = store
        .get_refresh_token(&SecretHash::of(refresh_token.expose()))
        .await?
        .filter(|record| record.is_usable(now))
        .ok_or(LoginError::InvalidCredentials)?;
    let user = store
        .get_user(&record.user)
        .await?
        .ok_or(LoginError::InvalidCredentials)?;
    Ok(Principal::User {
        name: user.name,
        is_admin: user.is_admin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta_store::MetaAuthStore;
    use crate::model::{TokenScope, Visibility};
    use crate::policy::NamespaceFacts;
    use crate::secret::generate_access_token;
    use crate::store::{
        issue_refresh_token, AccessTokenRecord, NamespaceRecord, UserRecord, REFRESH_TOKEN_LIFETIME,
    };
    use crate::throttle::ThrottleConfig;
    use crate::Role;

    fn context() -> LoginContext {
        LoginContext {
            address: "192.0.2.1".parse().unwrap(),
            now: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            instant: Instant::now(),
        }
    }

    async fn store_with_alice() -> MetaAuthStore {
        let store = MetaAuthStore::in_memory().await;
        store
            .create_user(
                &crate::actor::test_change(),
                UserRecord {
                    name: "alice".into(),
                    password_hash: hash_password("correct horse").unwrap(),
                    is_admin: false,
                    created_at: context().now,
                },
            )
            .await
            .unwrap();
        store
    }

    #[tokio::test]
    async fn passwords_and_throttling() {
        let store = store_with_alice().await;
        let throttle = Mutex::new(LoginThrottle::new(ThrottleConfig::default()));
        let ctx = context();
        let principal = login_with_password(
            &store,
            &throttle,
            "alice",
            &Secret::new("correct horse"),
            ctx,
        )
        .await
        .unwrap();
        assert_eq!(
            principal,
            Principal::User {
                name: "alice".into(),
                is_admin: false
            }
        );
        for name in [
            "nobody", "alice", "alice", "alice", "alice", "alice", "alice",
        ] {
            let result =
                login_with_password(&store, &throttle, name, &Secret::new("wrong password"), ctx)
                    .await;
            assert!(
                matches!(result, Err(LoginError::InvalidCredentials)),
                "{name}"
            );
        }
        // Six failures for alice: locked, even with the right password.
        let locked = login_with_password(
            &store,
            &throttle,
            "alice",
            &Secret::new("correct horse"),
            ctx,
        )
        .await;
        assert!(matches!(locked, Err(LoginError::Throttled(_))));
        let later = LoginContext {
            instant: ctx.instant + Duration::from_secs(2),
            ..ctx
        };
        login_with_password(
            &store,
            &throttle,
            "alice",
            &Secret::new("correct horse"),
            later,
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn access_tokens_log_in_by_name() {
        let store = store_with_alice().await;
        let throttle = Mutex::new(LoginThrottle::new(ThrottleConfig::default()));
        let ctx = context();
        let (secret, secret_hash) = generate_access_token();
        store
            .create_access_token(
                &crate::actor::test_change(),
                AccessTokenRecord {
                    name: "ci".into(),
                    secret_hash,
                    scopes: vec![TokenScope::parse("team-a:pull").unwrap()],
                    created_by: Some("alice".into()),
                    created_at: ctx.now,
                    expires_at: None,
                    last_used_at: None,
                    revoked_at: None,
                },
            )
            .await
            .unwrap();
        let principal = login_with_password(&store, &throttle, "ci", &secret, ctx)
            .await
            .unwrap();
        assert!(matches!(principal, Principal::AccessToken { ref name, .. } if name == "ci"));
        assert_eq!(
            store
                .get_access_token("ci")
                .await
                .unwrap()
                .unwrap()
                .last_used_at,
            Some(ctx.now)
        );
        // The token is not alice's password, and revoked tokens stop working.
        assert!(
            login_with_password(&store, &throttle, "alice", &secret, ctx)
                .await
                .is_err()
        );
        store
            .revoke_access_token(
                &crate::actor::change_at(&crate::actor::Actor::system("test"), ctx.now),
                "ci",
            )
            .await
            .unwrap();
        assert!(login_with_password(&store, &throttle, "ci", &secret, ctx)
            .await
            .is_err());
    }

    /// Issue 11: wrong guesses at a robot's secret locked the robot out
    /// (CI and pull secrets stopped working). Token-shaped secrets are
    /// throttled by address only, so the robot goes on working, even from
    /// the guesser's address until that address itself is locked.
    #[tokio::test]
    async fn access_token_logins_are_not_locked_by_name() {
        let store = store_with_alice().await;
        let throttle = Mutex::new(LoginThrottle::new(ThrottleConfig::default()));
        let ctx = context();
        let (secret, secret_hash) = generate_access_token();
        store
            .create_access_token(
                &crate::actor::test_change(),
                AccessTokenRecord {
                    name: "ci".into(),
                    secret_hash,
                    scopes: vec![TokenScope::parse("team-a:pull").unwrap()],
                    created_by: Some("alice".into()),
                    created_at: ctx.now,
                    expires_at: None,
                    last_used_at: None,
                    revoked_at: None,
                },
            )
            .await
            .unwrap();
        for _ in 0..10 {
            let (guess, _) = generate_access_token();
            let result = login_with_password(&store, &throttle, "ci", &guess, ctx).await;
            assert!(matches!(result, Err(LoginError::InvalidCredentials)));
        }
        login_with_password(&store, &throttle, "ci", &secret, ctx)
            .await
            .unwrap();
        assert_eq!(throttle.lock().unwrap().tracked(), (0, 1));
    }

    #[tokio::test]
    async fn refresh_tokens() {
        let store = store_with_alice().await;
        let ctx = context();
        let (secret, record) = issue_refresh_token("alice", ctx.now, REFRESH_TOKEN_LIFETIME);
        store.create_refresh_token(record).await.unwrap();
        let principal = login_with_refresh_token(&store, &secret, ctx.now)
            .await
            .unwrap();
        assert_eq!(principal.subject(), Some("alice"));
        assert!(
            login_with_refresh_token(&store, &Secret::new("berth_rt_nope"), ctx.now)
                .await
                .is_err()
        );
        assert_eq!(
            store
                .revoke_refresh_tokens_of_user("alice", ctx.now)
                .await
                .unwrap(),
            1
        );
        assert!(login_with_refresh_token(&store, &secret, ctx.now)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn namespace_facts_from_the_store() {
        let store = store_with_alice().await;
        let now = context().now;
        assert_eq!(
            store.namespace_facts("alice", Some("alice")).await.unwrap(),
            NamespaceFacts::Missing
        );
        store
            .create_namespace(
                &crate::actor::test_change(),
                NamespaceRecord {
                    name: "alice".into(),
                    visibility: Visibility::Private,
                    created_at: now,
                },
                Some("alice"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.namespace_facts("alice", Some("alice")).await.unwrap(),
            NamespaceFacts::Exists {
                visibility: Visibility::Private,
                member_role: Some(Role::Owner)
            }
        );
        assert_eq!(
            store.namespace_facts("alice", None).await.unwrap(),
            NamespaceFacts::Exists {
                visibility: Visibility::Private,
                member_role: None
            }
        );
        let again = NamespaceRecord {
            name: "alice".into(),
            visibility: Visibility::Public,
            created_at: now,
        };
        assert!(matches!(
            store
                .create_namespace(&crate::actor::test_change(), again, None)
                .await,
            Err(AuthStoreError::AlreadyExists)
        ));
    }
}
