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
//! 2. A password to hash waits for a turn in the [`HashingPool`] (argon2 runs
//!    on the blocking pool, a bounded number at once); with no turn free
//!    within the bound the attempt is refused as [`LoginError::Busy`], and
//!    not counted as a failure.
//! 3. A password shaped like an access token (`berth_at_…`) is checked against
//!    the access token of that name; anything else against the user's argon2
//!    hash, unless the same password was verified against the same stored
//!    hash in the last few minutes ([`crate::verified`]). An unknown user still costs one argon2 verification, so timing
//!    does not reveal which accounts exist.
//! 4. Failures are counted; a success clears the account's count, records the
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
use crate::hashing::{Busy, HashingPool};
use crate::model::{Principal, Secret};
use crate::password::{dummy_verify, hash_password, verify_password, PasswordCheck};
use crate::secret::{looks_like_access_token, looks_like_refresh_token, SecretHash};
use crate::store::{issue_refresh_token, AuthStore, RefreshRotation};
use crate::throttle::LoginThrottle;
use crate::verified::VerifiedPasswords;

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Too many failures: try again after this long (answer 429 or 401).
    #[error("too many failed logins; retry after {0:?}")]
    Throttled(Duration),
    /// Too many logins are hashing or waiting to: try again after this long
    /// (answer 429 with `Retry-After`). Not a failed login.
    #[error("too many logins at once; retry after {0:?}")]
    Busy(Duration),
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

impl From<Busy> for LoginError {
    fn from(Busy(wait): Busy) -> LoginError {
        LoginError::Busy(wait)
    }
}

/// What bounds logins, shared by every login of a server: the failed-login
/// throttle and the password-hashing pool.
#[derive(Debug)]
pub struct LoginGuards {
    pub throttle: Mutex<LoginThrottle>,
    pub hashing: HashingPool,
    /// Passwords verified in the last few minutes, checked without hashing.
    pub verified: VerifiedPasswords,
}

impl LoginGuards {
    pub fn new(throttle: LoginThrottle, hashing: HashingPool) -> LoginGuards {
        LoginGuards {
            throttle: Mutex::new(throttle),
            hashing,
            verified: VerifiedPasswords::default(),
        }
    }
}

/// Checks a user name and password (or access-token name and secret).
pub async fn login_with_password(
    store: &dyn AuthStore,
    guards: &LoginGuards,
    username: &str,
    password: &Secret,
    context: LoginContext,
) -> Result<Principal, LoginError> {
    let lock = || {
        guards
            .throttle
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
            Some(user) => {
                let stored = &user.password_hash;
                let check =
                    if guards
                        .verified
                        .holds(username, password.expose(), stored, context.instant)
                    {
                        PasswordCheck::Valid {
                            needs_rehash: false,
                        }
                    } else {
                        let (given, against) = (password.clone(), stored.clone());
                        let check = guards
                            .hashing
                            .run(move || verify_password(given.expose(), &against))
                            .await?;
                        // A hash due for an upgrade is about to be replaced;
                        // remembering it would only miss next time.
                        if check
                            == (PasswordCheck::Valid {
                                needs_rehash: false,
                            })
                        {
                            guards.verified.remember(
                                username,
                                password.expose(),
                                stored,
                                context.instant,
                            );
                        }
                        check
                    };
                match check {
                    // A disabled account is refused like a wrong password,
                    // after the same hashing, so the answer does not tell
                    // which accounts are disabled.
                    PasswordCheck::Valid { .. } if user.is_disabled() => None,
                    PasswordCheck::Valid { needs_rehash } => {
                        if needs_rehash {
                            upgrade_hash(store, guards, &user.name, password, context).await;
                        }
                        Some(Principal::User {
                            name: user.name,
                            is_admin: user.is_admin,
                        })
                    }
                    PasswordCheck::Invalid => None,
                }
            }
            None => {
                let given = password.clone();
                guards
                    .hashing
                    .run(move || dummy_verify(given.expose()))
                    .await?;
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

/// Stores a stronger hash of a user's correct password, best effort: the
/// login succeeds even if the upgrade fails or no turn to hash is free.
async fn upgrade_hash(
    store: &dyn AuthStore,
    guards: &LoginGuards,
    user: &str,
    password: &Secret,
    context: LoginContext,
) {
    let given = password.clone();
    let Ok(Ok(hash)) = guards
        .hashing
        .run(move || hash_password(given.expose()))
        .await
    else {
        return;
    };
    // The user's own login stores the stronger hash.
    let actor = Actor::user(user.to_string()).from_address(context.address);
    let change = change_at(&actor, context.now);
    let _ = store.set_password_hash(&change, user, &hash, true).await;
}

/// Exchanges a refresh token (OAuth2 `grant_type=refresh_token`) for the user
/// it stands for. Refresh tokens are 256-bit random, so guessing them is not
/// throttled per account; the caller may still count failures per address.
///
/// With `rotate` (the lifetime of the new token), the presented token is
/// exchanged for a new one, returned with the principal: the presented one
/// stops working as the new one is stored, and presenting it again
/// afterwards revokes every token descended from the same login (one of
/// its holders is not its owner). Without `rotate` the token stays as it
/// is: `docker` and `berth` keep the token they stored at login and present
/// it again for every registry token, and only a client that asks for a new
/// refresh token (`access_type=offline`) will store one.
pub async fn login_with_refresh_token(
    store: &dyn AuthStore,
    refresh_token: &Secret,
    now: OffsetDateTime,
    rotate: Option<time::Duration>,
) -> Result<(Principal, Option<Secret>), LoginError> {
    if !looks_like_refresh_token(refresh_token.expose()) {
        return Err(LoginError::InvalidCredentials);
    }
    let presented = SecretHash::of(refresh_token.expose());
    let record = store
        .get_refresh_token(&presented)
        .await?
        .ok_or(LoginError::InvalidCredentials)?;
    let user = store
        .get_user(&record.user)
        .await?
        .filter(|user| !user.is_disabled())
        .ok_or(LoginError::InvalidCredentials)?;
    let principal = Principal::User {
        name: user.name,
        is_admin: user.is_admin,
    };
    let Some(lifetime) = rotate else {
        return if record.is_usable(now) {
            Ok((principal, None))
        } else {
            Err(LoginError::InvalidCredentials)
        };
    };
    // Rotation decides usability itself, atomically: of two requests
    // presenting one token, one gets the new token and the other finds it
    // revoked (and so revokes the family).
    //
    // The new token ends when the login does: rotation never extends a
    // login past `refresh_token_lifetime` after its password was given, so
    // a stolen token that its thief keeps rotating still dies on time.
    let (secret, mut new) = issue_refresh_token(&record.user, now, lifetime);
    new.expires_at = match (record.expires_at, new.expires_at) {
        (Some(login_ends), Some(fresh)) => Some(login_ends.min(fresh)),
        (login_ends, fresh) => login_ends.or(fresh),
    };
    match store.rotate_refresh_token(&presented, new, now).await? {
        RefreshRotation::Rotated => Ok((principal, Some(secret))),
        RefreshRotation::Reused | RefreshRotation::Unusable => Err(LoginError::InvalidCredentials),
    }
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
    use std::sync::Arc;

    fn guards() -> LoginGuards {
        LoginGuards::new(
            LoginThrottle::new(ThrottleConfig::default()),
            HashingPool::new(2, 8, Duration::from_secs(30)),
        )
    }

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
                    disabled_at: None,
                },
            )
            .await
            .unwrap();
        store
    }

    #[tokio::test]
    async fn a_remembered_password_stops_working_when_changed_or_the_user_disabled() {
        let store = store_with_alice().await;
        let guards = guards();
        let ctx = context();
        let login = |password: &'static str| {
            let (store, guards) = (&store, &guards);
            async move { login_with_password(store, guards, "alice", &Secret::new(password), ctx).await }
        };
        login("correct horse").await.unwrap();
        assert_eq!(guards.verified.len(), 1, "a success is remembered");
        login("correct horse").await.unwrap();
        assert!(matches!(
            login("wrong horse").await,
            Err(LoginError::InvalidCredentials)
        ));

        // A new password: the remembered old one no longer matches the
        // stored hash, so it is verified again, and fails.
        let change = crate::actor::test_change();
        let new_hash = hash_password("battery staple").unwrap();
        store
            .set_password_hash(&change, "alice", &new_hash, false)
            .await
            .unwrap();
        assert!(matches!(
            login("correct horse").await,
            Err(LoginError::InvalidCredentials)
        ));
        login("battery staple").await.unwrap();

        // Disabled: refused although the password is remembered.
        store.set_disabled(&change, "alice", true).await.unwrap();
        assert!(matches!(
            login("battery staple").await,
            Err(LoginError::InvalidCredentials)
        ));
        store.set_disabled(&change, "alice", false).await.unwrap();
        login("battery staple").await.unwrap();
    }

    #[tokio::test]
    async fn passwords_and_throttling() {
        let store = store_with_alice().await;
        let guards = guards();
        let ctx = context();
        let principal =
            login_with_password(&store, &guards, "alice", &Secret::new("correct horse"), ctx)
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
                login_with_password(&store, &guards, name, &Secret::new("wrong password"), ctx)
                    .await;
            assert!(
                matches!(result, Err(LoginError::InvalidCredentials)),
                "{name}"
            );
        }
        // Six failures for alice: locked, even with the right password.
        let locked =
            login_with_password(&store, &guards, "alice", &Secret::new("correct horse"), ctx).await;
        assert!(matches!(locked, Err(LoginError::Throttled(_))));
        let later = LoginContext {
            instant: ctx.instant + Duration::from_secs(2),
            ..ctx
        };
        login_with_password(
            &store,
            &guards,
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
        let guards = guards();
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
        let principal = login_with_password(&store, &guards, "ci", &secret, ctx)
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
        assert!(login_with_password(&store, &guards, "alice", &secret, ctx)
            .await
            .is_err());
        store
            .revoke_access_token(
                &crate::actor::change_at(&crate::actor::Actor::system("test"), ctx.now),
                "ci",
            )
            .await
            .unwrap();
        assert!(login_with_password(&store, &guards, "ci", &secret, ctx)
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
        let guards = guards();
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
            let result = login_with_password(&store, &guards, "ci", &guess, ctx).await;
            assert!(matches!(result, Err(LoginError::InvalidCredentials)));
        }
        login_with_password(&store, &guards, "ci", &secret, ctx)
            .await
            .unwrap();
        assert_eq!(guards.throttle.lock().unwrap().tracked(), (0, 1));
    }

    /// Issue 11 (Medium): argon2 ran on the async worker threads, so a few
    /// concurrent logins stalled every other request on them. On a
    /// single-threaded runtime the login must leave the thread free while
    /// it hashes: another task runs before the login is done.
    #[tokio::test(flavor = "current_thread")]
    async fn hashing_leaves_the_async_thread_free() {
        let store = Arc::new(store_with_alice().await);
        let guards = Arc::new(guards());
        let login = tokio::spawn({
            let (store, guards) = (Arc::clone(&store), Arc::clone(&guards));
            async move {
                let wrong = Secret::new("wrong password");
                login_with_password(store.as_ref(), &guards, "alice", &wrong, context()).await
            }
        });
        // While the login's hash is in flight this task runs: the hash is
        // not on this (the only) thread. Polled with a bound.
        let mut seen_hashing = false;
        for _ in 0..10_000 {
            if guards.hashing.in_flight() == 1 {
                seen_hashing = true;
                break;
            }
            assert!(
                !login.is_finished(),
                "the login finished without hashing off the thread"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(seen_hashing);
        assert!(matches!(
            login.await.unwrap(),
            Err(LoginError::InvalidCredentials)
        ));
        assert_eq!(guards.hashing.in_flight(), 0);
    }

    /// With no turn to hash free, a login is refused at once as busy (429),
    /// before its password is checked, and not counted as a failure.
    #[tokio::test]
    async fn logins_beyond_the_hashing_bound_are_busy() {
        let store = store_with_alice().await;
        let guards = LoginGuards::new(
            LoginThrottle::new(ThrottleConfig::default()),
            HashingPool::new(1, 0, Duration::from_secs(30)),
        );
        let (finish, wait) = std::sync::mpsc::channel::<()>();
        let held = guards.hashing.run(move || {
            let _ = wait.recv();
        });
        let ctx = context();
        let busy = async {
            // Let the held job take the only turn first.
            tokio::task::yield_now().await;
            let result =
                login_with_password(&store, &guards, "alice", &Secret::new("correct horse"), ctx)
                    .await;
            finish.send(()).unwrap();
            result
        };
        let (held, busy) = tokio::join!(held, busy);
        held.unwrap();
        assert!(matches!(busy, Err(LoginError::Busy(_))), "{busy:?}");
        assert_eq!(guards.throttle.lock().unwrap().tracked(), (0, 0));
        login_with_password(&store, &guards, "alice", &Secret::new("correct horse"), ctx)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn refresh_tokens() {
        let store = store_with_alice().await;
        let ctx = context();
        let (secret, record) = issue_refresh_token("alice", ctx.now, REFRESH_TOKEN_LIFETIME);
        store.create_refresh_token(record).await.unwrap();
        let (principal, rotated) = login_with_refresh_token(&store, &secret, ctx.now, None)
            .await
            .unwrap();
        assert_eq!(principal.subject(), Some("alice"));
        assert_eq!(rotated, None, "no new token unless asked for");
        assert!(
            login_with_refresh_token(&store, &Secret::new("berth_rt_nope"), ctx.now, None)
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
        assert!(login_with_refresh_token(&store, &secret, ctx.now, None)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_and_reuse_logs_the_family_out() {
        let store = store_with_alice().await;
        let ctx = context();
        let rotate = Some(REFRESH_TOKEN_LIFETIME);
        let (first, record) = issue_refresh_token("alice", ctx.now, REFRESH_TOKEN_LIFETIME);
        store.create_refresh_token(record).await.unwrap();
        let exchange = |secret: Secret, rotate| {
            let store = store.clone();
            async move { login_with_refresh_token(&store, &secret, ctx.now, rotate).await }
        };
        let (_, second) = exchange(first.clone(), rotate).await.unwrap();
        let second = second.expect("a rotation returns the new token");
        assert_ne!(second, first);
        // The old token stops working once the new one is issued.
        assert!(exchange(first.clone(), None).await.is_err());
        let (_, third) = exchange(second.clone(), rotate).await.unwrap();
        let third = third.unwrap();
        exchange(third.clone(), None).await.unwrap();
        // Presenting a rotated token again revokes the whole family, the
        // newest token included.
        assert!(exchange(second, rotate).await.is_err());
        assert!(matches!(
            exchange(third, None).await,
            Err(LoginError::InvalidCredentials)
        ));
    }

    /// A login lasts `refresh_token_lifetime` from its password, however
    /// often its token is rotated: each rotation's token ends when the
    /// first one did, and none is usable after that.
    #[tokio::test]
    async fn rotation_never_extends_a_login() {
        let store = store_with_alice().await;
        let start = context().now;
        let hour = time::Duration::hours(1);
        let (mut token, record) = issue_refresh_token("alice", start, hour);
        let login_ends = record.expires_at;
        store.create_refresh_token(record).await.unwrap();
        for minutes in [10, 30, 50] {
            let now = start + time::Duration::minutes(minutes);
            let (_, rotated) = login_with_refresh_token(&store, &token, now, Some(hour))
                .await
                .unwrap();
            token = rotated.unwrap();
            let stored = store
                .get_refresh_token(&crate::secret::SecretHash::of(token.expose()))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(stored.expires_at, login_ends, "rotated at +{minutes} min");
        }
        let after = start + time::Duration::minutes(61);
        assert!(login_with_refresh_token(&store, &token, after, None)
            .await
            .is_err());
        assert!(login_with_refresh_token(&store, &token, after, Some(hour))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_disabled_user_cannot_log_in_by_password_or_refresh_token() {
        let store = store_with_alice().await;
        let guards = guards();
        let ctx = context();
        let (refresh, record) = issue_refresh_token("alice", ctx.now, REFRESH_TOKEN_LIFETIME);
        store.create_refresh_token(record).await.unwrap();
        let change = crate::actor::test_change();
        store.set_disabled(&change, "alice", true).await.unwrap();
        let password = Secret::new("correct horse");
        assert!(matches!(
            login_with_password(&store, &guards, "alice", &password, ctx).await,
            Err(LoginError::InvalidCredentials)
        ));
        assert!(login_with_refresh_token(&store, &refresh, ctx.now, None)
            .await
            .is_err());
        // Enabling lets the password in again; the refresh tokens revoked
        // by disabling stay revoked.
        store.set_disabled(&change, "alice", false).await.unwrap();
        login_with_password(&store, &guards, "alice", &password, ctx)
            .await
            .unwrap();
        assert!(login_with_refresh_token(&store, &refresh, ctx.now, None)
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
