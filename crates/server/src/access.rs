//! Access control on the HTTP edge: who is calling (credentials to a
//! [`Principal`], shared by every surface: [`authenticate_caller`]), what
//! each `/v2/` endpoint needs, and how a refusal is answered there. The
//! decisions themselves are `berth_auth::authorize`'s; this module only
//! gathers the facts and renders the answer. The management API's own
//! authorization step is `crate::api::permission`.
//!
//! **Architecture Invariant:** authorization happens once, in
//! [`authorize_request`], before `v2` dispatches to a handler; handlers only
//! read the [`Caller`] it leaves in the request's extensions (to filter the
//! catalog) and the [`MountDenied`] marker. Credentials and tokens are never
//! logged: they travel as `berth_auth::Secret`, whose `Debug` hides them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{header, Method};
use berth_auth::policy::may_create_namespace;
use berth_auth::store::NamespaceRecord;
use berth_auth::{
    authorize, AuthError, AuthStore, AuthStoreError, Challenge, ChallengeError, Claims,
    Credentials, Decision, Denial, LoginContext, LoginError, LoginGuards, NamespaceFacts,
    PolicyConfig, Principal, Scope, TokenAuthority, TokenRejection, Visibility,
};
use berth_auth::{change_at, login_with_password, Action, Actor};
use berth_oci::{ErrorCode, RepoName};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::origin::ClientOrigin;

/// The path of the token endpoint, relative to the registry's origin.
pub const TOKEN_PATH: &str = "/auth/token";

/// Everything access control needs, built once by the binary. Absent from
/// [`crate::AppState`] when access control is off.
pub struct AuthState {
    /// Users, namespaces, members and tokens.
    pub store: Arc<dyn AuthStore>,
    /// Signs and verifies registry bearer tokens, with the keys of `store`
    /// as last loaded (see [`AuthState::reload_keys`]).
    pub authority: TokenAuthority,
    /// Failed-login counts per (account, address) and per address, and the
    /// bound on password hashing, shared by every login path.
    pub login: LoginGuards,
    pub policy: PolicyConfig,
    /// The token endpoint's absolute URL for challenges; when unset it is
    /// derived from each request's `Host`, so one configuration works behind
    /// whatever name clients use.
    pub realm: Option<String>,
    /// Whether the listener speaks TLS, for the scheme of a derived realm.
    pub tls: bool,
    /// How long a refresh token issued at login (or by rotation) lives
    /// (`[auth] refresh_token_lifetime`).
    pub refresh_token_lifetime: time::Duration,
}

impl AuthState {
    /// The realm for a request: configured, or `scheme://host/auth/token`
    /// from the request's [`ClientOrigin`]: the scheme and host a trusted
    /// proxy forwarded, else the listener's scheme and a valid `Host`. A
    /// missing or malformed `Host` is never reflected: `localhost` stands
    /// in (only loopback listeners may run without a configured realm,
    /// TLS or trusted proxies; see `berth`'s `exposure_problem`).
    pub fn realm(&self, parts: &Parts) -> String {
        if let Some(realm) = &self.realm {
            return realm.clone();
        }
        let origin = origin_of(parts);
        let host = origin.host.as_deref().unwrap_or("localhost");
        let scheme = if origin.https(self.tls) {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}{TOKEN_PATH}")
    }

    /// A 401 `UNAUTHORIZED` with a bearer challenge for `scope`.
    pub fn unauthorized(
        &self,
        parts: &Parts,
        scope: Option<Scope>,
        error: Option<ChallengeError>,
        message: &str,
    ) -> ApiError {
        let mut challenge = Challenge::bearer(self.realm(parts), &self.authority.service);
        if let Some(scope) = scope {
            challenge = challenge.with_scope(scope);
        }
        if let Some(error) = error {
            challenge = challenge.with_error(error);
        }
        ApiError::new(ErrorCode::Unauthorized, message)
            .with_header("www-authenticate", challenge.render())
    }

    /// Turns a login failure into an answer.
    pub fn login_error(&self, parts: &Parts, error: LoginError) -> ApiError {
        match error {
            LoginError::Throttled(wait) => ApiError::new(
                ErrorCode::TooManyRequests,
                "too many failed logins; try again later",
            )
            .with_header("retry-after", wait.as_secs().max(1).to_string()),
            LoginError::Busy(wait) => ApiError::new(
                ErrorCode::TooManyRequests,
                "too many logins at once; try again shortly",
            )
            .with_header("retry-after", wait.as_secs().max(1).to_string()),
            LoginError::InvalidCredentials => {
                self.unauthorized(parts, None, None, "invalid credentials")
            }
            LoginError::Store(e) => store_failure(e),
        }
    }

    /// Loads the signing keys from the store and makes them the ones in
    /// use, so a rotation made through another node or `berth admin keys
    /// rotate` takes effect here. On failure the keys in use stay.
    pub async fn reload_keys(&self) -> Result<(), AuthError> {
        let keys = berth_auth::keys::load(self.store.as_ref()).await?;
        self.authority.set_keys(keys);
        Ok(())
    }

    /// Verifies a registry bearer token. A token naming a key this node has
    /// not loaded yet, most likely one another node started signing with
    /// after a rotation, makes it reload its keys and try again (at most
    /// once per `berth_auth::jwt::UNKNOWN_KEY_RELOAD_INTERVAL`, so made-up
    /// kids cannot turn every request into a query).
    pub async fn verify_bearer(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Claims, TokenRejection> {
        match self.authority.verify(token, now) {
            Err(TokenRejection::UnknownKey)
                if self.authority.may_reload_for_unknown_key(Instant::now()) =>
            {
                if let Err(error) = self.reload_keys().await {
                    tracing::warn!(%error, "reloading signing keys for an unknown kid failed");
                }
                self.authority.verify(token, now)
            }
            other => other,
        }
    }

    /// Reloads the signing keys every `interval` until `cancel`, so this
    /// node starts signing with a key rotated elsewhere and stops trusting
    /// keys dropped elsewhere. A failed reload is logged and retried at the
    /// next tick; the keys in use stay meanwhile.
    pub async fn run_key_reload(&self, interval: std::time::Duration, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once; the keys were just loaded.
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticks.tick() => {
                    if let Err(error) = self.reload_keys().await {
                        tracing::warn!(%error, "reloading signing keys failed");
                    }
                }
            }
        }
    }

    /// The facts the policy needs about `namespace` for `principal`.
    pub async fn facts(
        &self,
        principal: &Principal,
        namespace: &str,
    ) -> Result<NamespaceFacts, ApiError> {
        self.store
            .namespace_facts(namespace, user_name(principal))
            .await
            .map_err(store_failure)
    }
}

/// The authenticated caller of a request, left in its extensions.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    /// The verified claims when the caller presented a bearer token.
    pub bearer: Option<Claims>,
    /// Whether any credentials were presented.
    pub presented_credentials: bool,
}

/// Marks an upload start whose `mount` must be ignored because the caller
/// may not pull from `from`: the spec's fallback is an ordinary upload, and
/// answering "denied" would reveal that the source exists.
#[derive(Clone, Copy, Debug)]
pub struct MountDenied;

/// Left in a request's extensions when `/v2/` serves it from the upstream
/// answering at the root (`Registry::root_mirror`): the name the client
/// asked for. The policy decides on the name served; a token's access claim
/// and the challenge's scope use this one, the name the client knows.
#[derive(Clone, Debug)]
pub struct ClientName(pub RepoName);

/// The answer to a store failure: 503 with `Retry-After` when the
/// database does not answer (as the registry's own reads answer), else a
/// 500; details to the log only.
pub fn store_failure(error: AuthStoreError) -> ApiError {
    if let AuthStoreError::Unavailable(detail) = &error {
        return crate::error::unavailable(
            berth_registry::Dependency::Database,
            berth_registry::Unavailability::NotAnswering,
            detail,
        );
    }
    tracing::error!(error = %error, "auth store failed");
    ApiError::internal()
}

/// The user name whose memberships count for `principal`.
pub fn user_name(principal: &Principal) -> Option<&str> {
    match principal {
        Principal::User { name, .. } => Some(name),
        Principal::Anonymous | Principal::AccessToken { .. } => None,
    }
}

/// The request's [`ClientOrigin`], as [`crate::origin::resolve_origin`]
/// left it; resolved here without trusted proxies if the middleware did
/// not run (a handler called outside [`crate::app`]).
pub fn origin_of(parts: &Parts) -> ClientOrigin {
    match parts.extensions.get::<ClientOrigin>() {
        Some(origin) => origin.clone(),
        None => {
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip());
            ClientOrigin::resolve(peer, &parts.headers, &[])
        }
    }
}

/// The client's address for throttling: resolved through the trusted
/// proxies when served by [`crate::run`], unspecified in router tests.
pub fn client_address(parts: &Parts) -> IpAddr {
    origin_of(parts)
        .address
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Who makes the change a request asks for, as the event stream records
/// it: the caller access control identified (anonymous when it is off or
/// none was presented), from the client's address when served by
/// [`crate::run`].
pub fn actor(parts: &Parts) -> Actor {
    match parts.extensions.get::<Caller>() {
        Some(caller) => actor_of(&caller.principal, parts),
        None => actor_of(&Principal::Anonymous, parts),
    }
}

/// `principal` as the actor of the changes `parts` asks for, with the
/// client's address (through trusted proxies) when served by [`crate::run`].
pub fn actor_of(principal: &Principal, parts: &Parts) -> Actor {
    principal.actor(origin_of(parts).address)
}

/// A login context at the current time.
pub fn login_context(parts: &Parts) -> LoginContext {
    LoginContext {
        address: client_address(parts),
        now: OffsetDateTime::now_utc(),
        instant: Instant::now(),
    }
}

/// Why a request's credentials were not accepted. Each surface (`/v2/`,
/// the management API) renders it in its own error shape.
#[derive(Debug)]
pub enum AuthenticationFailure {
    /// The `Authorization` header is neither Basic nor Bearer.
    MalformedHeader,
    /// A bearer token that is malformed, badly signed or expired, or whose
    /// subject no longer exists.
    InvalidToken,
    /// A Basic login failed: wrong credentials, throttled, or the store failed.
    Login(LoginError),
    /// The store failed while resolving a bearer token's subject.
    Store(AuthStoreError),
}

/// Checks the `Authorization` header, if any, and returns the caller, with
/// refusals in `/v2/`'s error shape.
pub async fn authenticate(auth: &AuthState, parts: &Parts) -> Result<Caller, ApiError> {
    authenticate_caller(auth, parts)
        .await
        .map_err(|failure| match failure {
            AuthenticationFailure::MalformedHeader => {
                auth.unauthorized(parts, None, None, "malformed Authorization header")
            }
            AuthenticationFailure::InvalidToken => auth.unauthorized(
                parts,
                None,
                Some(ChallengeError::InvalidToken),
                "invalid or expired token",
            ),
            AuthenticationFailure::Login(error) => auth.login_error(parts, error),
            AuthenticationFailure::Store(error) => store_failure(error),
        })
}

/// Checks the `Authorization` header, if any, and returns the caller.
pub async fn authenticate_caller(
    auth: &AuthState,
    parts: &Parts,
) -> Result<Caller, AuthenticationFailure> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(Caller {
            principal: Principal::Anonymous,
            bearer: None,
            presented_credentials: false,
        });
    };
    let credentials = value.to_str().ok().and_then(Credentials::parse);
    match credentials {
        None => Err(AuthenticationFailure::MalformedHeader),
        Some(Credentials::Basic { username, password }) => {
            let principal = login(auth, parts, &username, &password)
                .await
                .map_err(AuthenticationFailure::Login)?;
            Ok(Caller {
                principal,
                bearer: None,
                presented_credentials: true,
            })
        }
        Some(Credentials::Bearer(token)) => {
            let now = OffsetDateTime::now_utc();
            let claims = auth
                .verify_bearer(token.expose(), now)
                .await
                .map_err(|_| AuthenticationFailure::InvalidToken)?;
            let principal =
                principal_for_subject(auth.store.as_ref(), &auth.policy, &claims.sub, now)
                    .await
                    .map_err(AuthenticationFailure::Store)?
                    .ok_or(AuthenticationFailure::InvalidToken)?;
            Ok(Caller {
                principal,
                bearer: Some(claims),
                presented_credentials: true,
            })
        }
    }
}

/// The principal a bearer token's `sub` names, as it stands now: an enabled
/// user (with their current admin flag) or a still-valid access token
/// (its scopes narrowed to its creator's current rights).
/// `None` when neither exists any more, or the user is disabled, so
/// deleting or disabling a user or revoking a token takes effect at once
/// rather than when the token expires. User and token names
/// never collide: each is refused when the other exists.
pub async fn principal_for_subject(
    store: &dyn AuthStore,
    policy: &PolicyConfig,
    subject: &str,
    now: OffsetDateTime,
) -> Result<Option<Principal>, AuthStoreError> {
    if subject.is_empty() {
        return Ok(Some(Principal::Anonymous));
    }
    if let Some(user) = store.get_user(subject).await? {
        // A disabled user's registry tokens are refused from the next
        // request on, as if the user were gone.
        if user.is_disabled() {
            return Ok(None);
        }
        return Ok(Some(Principal::User {
            name: user.name,
            is_admin: user.is_admin,
        }));
    }
    let token = store.get_access_token(subject).await?;
    let Some(robot) = token
        .filter(|t| t.revoked_at.is_none() && !berth_auth::secret::is_expired(t.expires_at, now))
        .map(|t| Principal::AccessToken {
            name: t.name,
            scopes: t.scopes,
            expires_at: t.expires_at,
            created_by: t.created_by,
        })
    else {
        return Ok(None);
    };
    // The creator rule, as for a Basic login: the robot's rights as of now.
    berth_auth::robots::as_of_now(store, policy, robot).await
}

/// Logs in with a password or an access token's secret (Basic on `/v2/`
/// and `/api/v1`, the token endpoint's GET and password grant), and holds
/// a robot to its creator's current rights (`berth_auth::robots`): a robot
/// whose creator is disabled or deleted is refused like a wrong secret.
pub async fn login(
    auth: &AuthState,
    parts: &Parts,
    username: &str,
    password: &berth_auth::Secret,
) -> Result<Principal, LoginError> {
    let principal = login_with_password(
        auth.store.as_ref(),
        &auth.login,
        username,
        password,
        login_context(parts),
    )
    .await?;
    berth_auth::robots::as_of_now(auth.store.as_ref(), &auth.policy, principal)
        .await?
        .ok_or(LoginError::InvalidCredentials)
}

/// What a `/v2/` request needs.
enum Needs {
    /// Any valid credentials, or none (`/v2/` answers 401 to anonymous callers
    /// so clients learn where to log in).
    Login,
    /// Nothing up front; the handler filters by [`may_pull`].
    Catalog,
    Repository(RepoName, Action),
}

fn needs(endpoint: &Endpoint, method: &Method) -> Needs {
    let write = |repo: &RepoName| Needs::Repository(repo.clone(), Action::Push);
    let read = |repo: &RepoName| Needs::Repository(repo.clone(), Action::Pull);
    let delete = |repo: &RepoName| Needs::Repository(repo.clone(), Action::Delete);
    match endpoint {
        Endpoint::Base => Needs::Login,
        Endpoint::Catalog => Needs::Catalog,
        Endpoint::Tags(repo) | Endpoint::Referrers(repo, _) => read(repo),
        Endpoint::Manifest(repo, _) | Endpoint::Blob(repo, _) => match *method {
            Method::PUT | Method::POST | Method::PATCH => write(repo),
            Method::DELETE => delete(repo),
            _ => read(repo),
        },
        Endpoint::UploadStart(repo) | Endpoint::Upload(repo, _) => write(repo),
    }
}

/// The scope a challenge names for `action` on `repository`. Pushing clients
/// always need to read too (to check what exists), so a push challenge asks
/// for both, as Distribution does.
fn challenge_scope(repository: &RepoName, action: Action) -> Scope {
    let actions: &[&str] = match action {
        Action::Push => &["pull", "push"],
        Action::Delete => &["delete"],
        _ => &["pull"],
    };
    Scope::repository(repository.as_str(), actions)
}

/// The one authorization step of `/v2/`: authenticates the caller, checks
/// what `endpoint` needs, creates a namespace a permitted push is the first
/// to use, and leaves the [`Caller`] (and [`MountDenied`]) in `parts`.
pub async fn authorize_request(
    auth: &AuthState,
    endpoint: &Endpoint,
    parts: &mut Parts,
) -> Result<(), ApiError> {
    let caller = authenticate(auth, parts).await?;
    match needs(endpoint, &parts.method) {
        Needs::Login => {
            if !caller.presented_credentials {
                return Err(auth.unauthorized(parts, None, None, "authentication required"));
            }
        }
        Needs::Catalog => {}
        Needs::Repository(repository, action) => {
            check(auth, &caller, parts, &repository, action).await?;
            if let Endpoint::UploadStart(_) = endpoint {
                if let Some(from) = mount_source(parts) {
                    if !may_pull(auth, &caller, &from, &mut HashMap::new()).await? {
                        parts.extensions.insert(MountDenied);
                    }
                }
            }
        }
    }
    parts.extensions.insert(caller);
    Ok(())
}

fn mount_source(parts: &Parts) -> Option<RepoName> {
    let query = parts.uri.query()?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    if !pairs.iter().any(|(k, _)| k == "mount") {
        return None;
    }
    pairs
        .into_iter()
        .find(|(k, _)| k == "from")
        .and_then(|(_, v)| RepoName::parse(&v).ok())
}

async fn check(
    auth: &AuthState,
    caller: &Caller,
    parts: &Parts,
    repository: &RepoName,
    action: Action,
) -> Result<(), ApiError> {
    let facts = auth
        .facts(&caller.principal, repository.namespace())
        .await?;
    let decision = authorize(&caller.principal, &auth.policy, facts, repository, action);
    let asked = parts
        .extensions
        .get::<ClientName>()
        .map_or(repository, |client| &client.0);
    let token_grants = caller.bearer.as_ref().is_none_or(|claims| {
        action
            .scope_name()
            .is_some_and(|name| claims.allows("repository", asked.as_str(), name))
    });
    let scope = challenge_scope(asked, action);
    match decision {
        Decision::Deny(Denial::AuthenticationRequired) => {
            Err(auth.unauthorized(parts, Some(scope), None, "authentication required"))
        }
        Decision::Deny(Denial::Forbidden) => Err(ApiError::new(
            ErrorCode::Denied,
            "requested access to the resource is denied",
        )),
        // Allowed by the policy but not by this token: the client asks the
        // token endpoint again with the scope named here.
        _ if !token_grants => Err(auth.unauthorized(
            parts,
            Some(scope),
            Some(ChallengeError::InsufficientScope),
            "the token does not grant this action",
        )),
        Decision::AllowCreatingNamespace => {
            let actor = actor_of(&caller.principal, parts);
            create_namespace_for(auth, &caller.principal, &actor, repository).await
        }
        Decision::Allow => Ok(()),
    }
}

/// Creates the namespace of `repository` with `principal` as its owner, as
/// the first permitted push into it. A concurrent creation is not an error.
pub(crate) async fn create_namespace_for(
    auth: &AuthState,
    principal: &Principal,
    actor: &Actor,
    repository: &RepoName,
) -> Result<(), ApiError> {
    let namespace = repository.namespace();
    if !may_create_namespace(principal, &auth.policy, namespace) {
        return Err(ApiError::new(ErrorCode::Denied, "may not create namespace"));
    }
    let now = OffsetDateTime::now_utc();
    let record = NamespaceRecord {
        name: namespace.to_string(),
        visibility: Visibility::Private,
        created_at: now,
    };
    match auth
        .store
        .create_namespace(&change_at(actor, now), record, user_name(principal))
        .await
    {
        Ok(()) => {
            tracing::info!(namespace, "namespace created by first push");
            Ok(())
        }
        Err(AuthStoreError::AlreadyExists) => Ok(()),
        Err(e) => Err(store_failure(e)),
    }
}

/// Whether `caller` may pull from `repository`, by the policy alone (a bearer
/// token's scopes name what it was issued for, not what may be listed).
/// `cache` holds namespace facts across calls of one request.
pub async fn may_pull(
    auth: &AuthState,
    caller: &Caller,
    repository: &RepoName,
    cache: &mut HashMap<String, NamespaceFacts>,
) -> Result<bool, ApiError> {
    let namespace = repository.namespace();
    let facts = match cache.get(namespace) {
        Some(facts) => *facts,
        None => {
            let facts = auth.facts(&caller.principal, namespace).await?;
            cache.insert(namespace.to_string(), facts);
            facts
        }
    };
    // A missing namespace holds nothing to list, whoever may create it.
    if facts == NamespaceFacts::Missing {
        return Ok(matches!(
            caller.principal,
            Principal::User { is_admin: true, .. }
        ));
    }
    Ok(authorize(
        &caller.principal,
        &auth.policy,
        facts,
        repository,
        Action::Pull,
    )
    .is_allowed())
}
