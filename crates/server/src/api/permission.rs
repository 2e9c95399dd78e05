//! Who may call what: the permission table of the management API and the
//! one authorization step that enforces it before any handler runs.
//!
//! **Architecture Invariant:** every endpoint's permission is one row of
//! [`required`], and [`authorize`] is the only place that checks it, in
//! `api::dispatch`, before the handler. Handlers never decide rights; a
//! listing asks the [`Authorized`] value this step returns what the caller
//! may see. The decisions themselves are `berth_auth::policy`'s.
//!
//! A right needs two things: the policy must allow it for the caller as
//! they stand now, and, when the caller presented a registry token (a JWT
//! from `/auth/token`), the token's `access` claim must grant it too. A
//! token grants on `/api/v1` only what its claim names (Docker token
//! specification; RFC 8725 §3.11), through the management scopes of
//! `berth_auth::scope` (`namespace:team-a:manage_members`,
//! `registry:users:*`, …); Basic credentials (a password, or an access
//! token's secret) carry no claim and are bounded by the policy alone.
//!
//! How refusals are answered:
//! - no credentials: 401 with a `Bearer` challenge naming the scope needed;
//! - a token whose claim lacks the scope the policy would grant: 401
//!   `insufficient_scope`, naming the scope, with `detail.scope` set, so a
//!   client fetches a token for it and retries;
//! - the policy refuses: 403, whether or not the thing exists, so names do
//!   not leak; 404 only to callers who would be allowed to act on it.

use axum::http::header;
use axum::http::request::Parts;
use berth_auth::policy::{
    authorize as authorize_repository, authorize_namespace, may_create_namespace,
    may_grant_token_scope, may_see_namespace,
};
use berth_auth::store::AccessTokenRecord;
use berth_auth::{
    Action, Challenge, ChallengeError, Claims, Decision, LoginError, NamespaceAction,
    NamespaceFacts, PolicyConfig, Principal, RegistryResource, Scope, TokenScope,
};
use berth_oci::RepoName;

use super::endpoint::Endpoint;
use super::error::{ErrorCode, ManagementError};
use super::types::Name;
use crate::access::{create_namespace_for, user_name, AuthState, AuthenticationFailure, Caller};

/// What an endpoint needs of its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Nothing: anonymous callers too.
    Anyone,
    /// Valid credentials of anyone but an anonymous caller. What such an
    /// endpoint answers is filtered by [`Authorized`] (listings).
    LoggedIn,
    /// An administrator; a token needs `registry:users:*`.
    Administrator,
    /// A person (not a robot) managing their own access tokens; a token
    /// needs `registry:tokens:*`.
    OwnTokens,
    /// A person (not a robot) managing their own account; a token needs
    /// `registry:account:*`.
    OwnAccount,
    /// The creator of the access token named, or an administrator; a token
    /// needs `registry:tokens:*`.
    TokenCreator(Name),
    /// Seeing the namespace (what the caller could pull from it); a token
    /// needs `pull` on it or on a repository in it.
    SeeNamespace(Name),
    /// A namespace-wide action; a token needs `namespace:NS:ACTION`.
    Namespace(Name, Action),
    /// Creating the namespace; a token needs `namespace:NS:create`.
    CreateNamespace(Name),
    /// Actions on repositories, as `/v2/` decides them (a token needs
    /// `repository:NAME:ACTION` for each): what the caller could not pull
    /// is refused 403 whether or not it exists.
    Repositories(Vec<(RepoName, Action)>),
    /// Creating an access token with these scopes: the caller may grant
    /// each (an owner of its namespace, or an administrator); a token needs
    /// `namespace:NS:manage_members` for each namespace.
    GrantTokenScopes(Vec<TokenScope>),
}

/// The permission table: what each endpoint needs. Adding an endpoint is
/// adding its row here (the compiler insists).
pub fn required(endpoint: &Endpoint) -> Permission {
    use Permission::*;
    match endpoint {
        Endpoint::OpenApi => Anyone,
        Endpoint::ListUsers
        | Endpoint::CreateUser(_)
        | Endpoint::UpdateUser(..)
        | Endpoint::DeleteUser(_)
        | Endpoint::SetUserPassword(..) => Administrator,
        Endpoint::ChangeOwnPassword(_) => OwnAccount,
        Endpoint::ListNamespaces(_) => LoggedIn,
        Endpoint::ListRepositories(listing) => match &listing.namespace {
            Some(namespace) => SeeNamespace(namespace.clone()),
            None => LoggedIn,
        },
        Endpoint::DeleteNamespace(namespace, _) => {
            Namespace(namespace.clone(), Action::ManageSettings)
        }
        Endpoint::CreateNamespace(new) => CreateNamespace(new.name.clone()),
        Endpoint::GetNamespace(namespace) => SeeNamespace(namespace.clone()),
        Endpoint::UpdateNamespace(namespace, _) => {
            Namespace(namespace.clone(), Action::ManageSettings)
        }
        Endpoint::ListMembers(namespace)
        | Endpoint::ListNamespaceTokens(namespace)
        | Endpoint::SetMember(namespace, ..)
        | Endpoint::RemoveMember(namespace, _) => {
            Namespace(namespace.clone(), Action::ManageMembers)
        }
        Endpoint::ListTokens => OwnTokens,
        Endpoint::CreateToken(new) => {
            GrantTokenScopes(new.scopes.iter().map(|s| s.0.clone()).collect())
        }
        Endpoint::RevokeToken(name) => TokenCreator(name.clone()),
        Endpoint::ListImages(repository, _)
        | Endpoint::ListTags(repository, _)
        | Endpoint::GetImage(repository, _) => {
            Repositories(vec![(repository.0.clone(), Action::Pull)])
        }
        Endpoint::DeleteImage(repository, _) | Endpoint::UntagImage(repository, _) => {
            Repositories(vec![(repository.0.clone(), Action::Delete)])
        }
        Endpoint::TagImage(repository, _, request) => Repositories(vec![
            (request.source_repository.0.clone(), Action::Pull),
            (repository.0.clone(), Action::Push),
        ]),
        Endpoint::GetVulnerabilityReport(image) | Endpoint::GetSbom(image, _) => {
            SeeNamespace(image.namespace.clone())
        }
        Endpoint::GetVulnerabilityPolicy(namespace) => SeeNamespace(namespace.clone()),
        Endpoint::SetVulnerabilityPolicy(namespace, _) => {
            Namespace(namespace.clone(), Action::ManageSettings)
        }
        // One namespace's figures are seen by those who may see it;
        // without one, the summary adds up the namespaces the caller may
        // see (as the namespace listing shows them).
        Endpoint::GetVulnerabilitySummary(query) => match &query.namespace {
            Some(namespace) => SeeNamespace(namespace.clone()),
            None => LoggedIn,
        },
        // One namespace's exemptions are seen by those who may see it;
        // without one, the page keeps what the caller may see.
        Endpoint::ListExemptions(listing) => match &listing.namespace {
            Some(namespace) => SeeNamespace(namespace.clone()),
            None => LoggedIn,
        },
        Endpoint::ListVulnerabilityPolicies | Endpoint::GetAdvisoryData => LoggedIn,
        // An exemption in a namespace is one of its settings; one for the
        // whole registry is an administrator's.
        Endpoint::AddExemption(new) => exemption_scope(&new.scope),
        Endpoint::RemoveExemption(scope, _) => exemption_scope(scope),
        // Source URLs are the operator's configuration (and may carry a
        // mirror's credentials): administrators only, like importing.
        Endpoint::ImportAdvisories(_)
        | Endpoint::ListAdvisorySources
        | Endpoint::SyncAdvisorySources => Administrator,
        Endpoint::ListImmutableRules => LoggedIn,
        Endpoint::AddImmutableRule(new) => {
            Namespace(new.scope.namespace.clone(), Action::ManageSettings)
        }
        Endpoint::RemoveImmutableRule(scope, _) => {
            Namespace(scope.namespace.clone(), Action::ManageSettings)
        }
        // Listings show the webhooks the caller may manage.
        Endpoint::ListWebhooks => LoggedIn,
        // A namespace's webhooks are among its settings; registry-wide
        // ones see every event, so they are an administrator's.
        Endpoint::CreateWebhook(new) => webhook_scope(&new.scope),
        Endpoint::DeleteWebhook(scope, _) | Endpoint::ListWebhookDeliveries(scope, _) => {
            webhook_scope(scope)
        }
        // The trail spans every namespace and shows client addresses.
        Endpoint::ListAudit(_) => Administrator,
        // The trash of a namespace is seen by those who may see the
        // namespace; without one, the listing keeps the entries of the
        // namespaces the caller may see.
        Endpoint::ListTrash(listing) => match &listing.namespace {
            Some(namespace) => SeeNamespace(namespace.clone()),
            None => LoggedIn,
        },
        // Undoing a deletion takes the right that made it.
        Endpoint::RestoreImage(repository, _) => {
            Repositories(vec![(repository.0.clone(), Action::Delete)])
        }
        // A policy is one of the namespace's settings; running it deletes
        // what the policy its owners set selects.
        Endpoint::ListRetentionPolicies => LoggedIn,
        Endpoint::SetRetentionPolicy(namespace, _)
        | Endpoint::RemoveRetentionPolicy(namespace)
        | Endpoint::RunRetentionPolicy(namespace, _) => {
            Namespace(namespace.clone(), Action::ManageSettings)
        }
        // A namespace's usage is seen by those who may see the namespace;
        // the listing keeps those. Limits are the registry operator's: a
        // namespace's owners raising their own would defeat them.
        Endpoint::ListQuotas => LoggedIn,
        Endpoint::GetQuota(namespace) | Endpoint::GetUsageHistory(namespace, _) => {
            SeeNamespace(namespace.clone())
        }
        Endpoint::SetQuota(..) | Endpoint::RecomputeQuotas => Administrator,
        // A rule reads or writes every repository its pattern matches,
        // across namespaces, and calls out to a URL: an administrator's.
        Endpoint::ListReplications
        | Endpoint::CreateReplication(_)
        | Endpoint::GetReplication(_)
        | Endpoint::RunReplication(_)
        | Endpoint::DeleteReplication(_) => Administrator,
    }
}

/// What managing a webhook of `scope` needs.
fn webhook_scope(scope: &super::webhooks::WebhookScope) -> Permission {
    match scope.namespace() {
        Some(namespace) => Permission::Namespace(namespace.clone(), Action::ManageSettings),
        None => Permission::Administrator,
    }
}

/// What changing an exemption in `scope` needs (the web console's
/// exemption forms use this row too).
pub fn exemption_scope(scope: &super::vulnerabilities::ExemptionScope) -> Permission {
    match scope.namespace() {
        Some(namespace) => Permission::Namespace(namespace.clone(), Action::ManageSettings),
        None => Permission::Administrator,
    }
}

/// A caller the authorization step let through, and what it knows about
/// them; handlers read the principal and filter listings through it.
#[derive(Clone, Debug)]
pub struct Authorized {
    pub principal: Principal,
    /// The claims of the caller's registry token, when they presented one:
    /// listings show only what it grants.
    claims: Option<Claims>,
}

impl Authorized {
    /// The user whose memberships count for the caller.
    pub fn user_name(&self) -> Option<&str> {
        user_name(&self.principal)
    }

    pub fn is_admin(&self) -> bool {
        matches!(self.principal, Principal::User { is_admin: true, .. })
    }

    /// Whether every repository that exists is the caller's to list: an
    /// administrator (the policy lets them pull from every existing
    /// namespace) whose token, if any, holds the catalog scope. A listing
    /// then needs no namespace facts at all.
    pub fn sees_every_repository(&self) -> bool {
        self.is_admin()
            && self
                .claims
                .as_ref()
                .is_none_or(|claims| claims.allows_listing())
    }

    /// Whether a listing shows `namespace` (described by `facts`) to the
    /// caller: the policy allows it and the caller's token, if any, holds
    /// the catalog scope (list everything the policy allows) or pull in it.
    pub fn may_see_namespace(&self, facts: NamespaceFacts, namespace: &str) -> bool {
        may_see_namespace(&self.principal, facts, namespace)
            && self.claims.as_ref().is_none_or(|claims| {
                claims.allows_listing() || claims.allows_seeing_namespace(namespace)
            })
    }

    /// Whether a listing shows the repository to the caller: the policy
    /// lets them pull from it (as on `/v2/`), and their token, if any,
    /// holds the catalog scope or pull on the repository or its namespace.
    pub fn may_pull_repository(
        &self,
        policy: &PolicyConfig,
        facts: NamespaceFacts,
        repository: &RepoName,
    ) -> bool {
        facts != NamespaceFacts::Missing
            && authorize_repository(&self.principal, policy, facts, repository, Action::Pull)
                .is_allowed()
            && self.claims.as_ref().is_none_or(|claims| {
                claims.allows_listing()
                    || claims.allows("repository", repository.as_str(), "pull")
                    || claims.allows("namespace", repository.namespace(), "pull")
            })
    }

    /// Whether a listing shows what only those who manage `namespace`'s
    /// settings may see (its webhooks): the policy allows `manage_settings`
    /// there and the caller's token, if any, grants it or holds the catalog
    /// scope (list everything the policy allows).
    pub fn may_manage_settings(
        &self,
        policy: &PolicyConfig,
        facts: NamespaceFacts,
        namespace: &str,
    ) -> bool {
        facts != NamespaceFacts::Missing
            && authorize_namespace(
                &self.principal,
                policy,
                facts,
                namespace,
                Action::ManageSettings,
            )
            .is_allowed()
            && self.claims.as_ref().is_none_or(|claims| {
                claims.allows_listing() || claims.allows("namespace", namespace, "manage_settings")
            })
    }

    /// Whether a listing shows what only administrators manage (the
    /// registry-wide webhooks): the caller is one and their token, if any,
    /// grants what administration needs or holds the catalog scope.
    pub fn may_administer(&self) -> bool {
        self.is_admin()
            && self.claims.as_ref().is_none_or(|claims| {
                claims.allows_listing() || claims.allows("registry", "users", "*")
            })
    }

    /// Whether a listing shows the access token `record` to the caller:
    /// its creator's, and every token to administrators.
    pub fn may_see_token(&self, record: &AccessTokenRecord) -> bool {
        self.is_admin()
            || self
                .user_name()
                .is_some_and(|user| record.created_by.as_deref() == Some(user))
    }
}

/// The one authorization step: checks `permission` for `caller` and
/// returns what the handler may rely on, or the refusal to answer with.
pub async fn authorize(
    auth: &AuthState,
    caller: Caller,
    permission: &Permission,
    parts: &Parts,
) -> Result<Authorized, ManagementError> {
    let check = Check {
        auth,
        caller: &caller,
        parts,
    };
    if *permission != Permission::Anyone && caller.principal == Principal::Anonymous {
        return Err(check.challenge(needed_scopes(permission), None, "authentication required"));
    }
    authorize_policy(auth, caller, permission, parts).await
}

/// The authorization step without the API's first rule (an anonymous
/// caller is asked to log in before anything else is looked at): the
/// policy decides for anonymous callers as for everyone else. The web
/// console authorizes its pages with it, so that anonymous visitors see
/// public namespaces, and a refusal sends them to sign in.
pub async fn authorize_policy(
    auth: &AuthState,
    caller: Caller,
    permission: &Permission,
    parts: &Parts,
) -> Result<Authorized, ManagementError> {
    let check = Check {
        auth,
        caller: &caller,
        parts,
    };
    match permission {
        Permission::Anyone | Permission::LoggedIn => {}
        Permission::Administrator => {
            check.policy(check.is_admin(), "administrators only")?;
            check.claim(&needed_scopes(permission))?;
        }
        Permission::OwnTokens => {
            check.policy(check.is_user(), "only users have access tokens")?;
            check.claim(&needed_scopes(permission))?;
        }
        Permission::OwnAccount => {
            check.policy(check.is_user(), "only users have an account")?;
            check.claim(&needed_scopes(permission))?;
        }
        Permission::TokenCreator(name) => {
            check.policy(check.is_user(), "only users manage access tokens")?;
            check.claim(&needed_scopes(permission))?;
            let token = auth.store.get_access_token(name.as_str()).await?;
            // Only users reach here, so the caller has a user name.
            let caller_user = user_name(&caller.principal);
            let is_creator = token
                .as_ref()
                .is_some_and(|t| t.created_by.as_deref() == caller_user);
            match token {
                None if check.is_admin() => {
                    return Err(ManagementError::not_found(format!(
                        "no access token {name}"
                    )))
                }
                Some(_) if check.is_admin() || is_creator => {}
                _ => {
                    return Err(ManagementError::forbidden(format!(
                        "no access token {name} of yours"
                    )))
                }
            }
        }
        Permission::SeeNamespace(namespace) => {
            let facts = check.facts(namespace.as_str()).await?;
            if facts == NamespaceFacts::Missing {
                check.missing_namespace(namespace, NamespaceAction::Action(Action::Pull))?;
            }
            check.policy(
                may_see_namespace(&caller.principal, facts, namespace.as_str()),
                "requested access to the namespace is denied",
            )?;
            // Pull on the namespace or on any repository in it will do.
            if let Some(claims) = &caller.bearer {
                if !claims.allows_seeing_namespace(namespace.as_str()) {
                    return Err(check.insufficient(needed_scopes(permission)));
                }
            }
        }
        Permission::Namespace(namespace, action) => {
            let facts = check.facts(namespace.as_str()).await?;
            let decision = authorize_namespace(
                &caller.principal,
                &auth.policy,
                facts,
                namespace.as_str(),
                *action,
            );
            check.policy(
                decision.is_allowed(),
                "requested access to the namespace is denied",
            )?;
            check.claim(&needed_scopes(permission))?;
            if facts == NamespaceFacts::Missing {
                return Err(ManagementError::not_found(format!(
                    "no namespace {namespace}"
                )));
            }
        }
        Permission::CreateNamespace(namespace) => {
            check.policy(
                may_create_namespace(&caller.principal, &auth.policy, namespace.as_str()),
                "may not create this namespace",
            )?;
            check.claim(&needed_scopes(permission))?;
        }
        Permission::Repositories(wanted) => {
            // The policy first for each, then the token's claim for all at
            // once (so one challenge names every scope needed), then what
            // each allowed action finds.
            let mut decided = Vec::with_capacity(wanted.len());
            for (repository, action) in wanted {
                decided.push(check.repository_policy(repository, *action).await?);
            }
            check.claim(&needed_scopes(permission))?;
            for ((repository, action), (facts, decision)) in wanted.iter().zip(decided) {
                check
                    .repository_outcome(repository, *action, facts, decision)
                    .await?;
            }
        }
        Permission::GrantTokenScopes(scopes) => {
            check.policy(check.is_user(), "only users create access tokens")?;
            for scope in scopes {
                let namespace = scope.namespace();
                let facts = check.facts(namespace).await?;
                check.policy(
                    may_grant_token_scope(&caller.principal, facts, scope),
                    &format!("may not grant {scope}: only owners of {namespace} may"),
                )?;
            }
            check.claim(&needed_scopes(permission))?;
        }
    }
    Ok(Authorized {
        principal: caller.principal,
        claims: caller.bearer,
    })
}

/// The scopes a token needs for `permission`, which a challenge names.
fn needed_scopes(permission: &Permission) -> Vec<Scope> {
    let namespace = |name: &Name, action| vec![Scope::namespace(name.as_str(), action)];
    match permission {
        Permission::Anyone | Permission::LoggedIn => Vec::new(),
        Permission::Administrator => vec![Scope::registry(RegistryResource::Users)],
        Permission::OwnTokens | Permission::TokenCreator(_) => {
            vec![Scope::registry(RegistryResource::Tokens)]
        }
        Permission::OwnAccount => vec![Scope::registry(RegistryResource::Account)],
        Permission::SeeNamespace(name) => namespace(name, NamespaceAction::Action(Action::Pull)),
        Permission::Namespace(name, action) => namespace(name, NamespaceAction::Action(*action)),
        Permission::CreateNamespace(name) => namespace(name, NamespaceAction::Create),
        Permission::Repositories(wanted) => wanted
            .iter()
            .map(|(repository, action)| repository_scope(repository, *action))
            .collect(),
        // `manage_members` on each namespace the new token reaches, once.
        Permission::GrantTokenScopes(scopes) => {
            let mut needed: Vec<Scope> = Vec::new();
            for scope in scopes {
                let manage = Scope::namespace(
                    scope.namespace(),
                    NamespaceAction::Action(Action::ManageMembers),
                );
                if !needed.contains(&manage) {
                    needed.push(manage);
                }
            }
            needed
        }
    }
}

/// The token scope that grants `action` on `repository`.
fn repository_scope(repository: &RepoName, action: Action) -> Scope {
    Scope::repository(
        repository.as_str(),
        &[action.scope_name().unwrap_or("pull")],
    )
}

/// One authorization's facts and its ways of refusing.
struct Check<'a> {
    auth: &'a AuthState,
    caller: &'a Caller,
    parts: &'a Parts,
}

impl Check<'_> {
    fn is_admin(&self) -> bool {
        matches!(
            self.caller.principal,
            Principal::User { is_admin: true, .. }
        )
    }

    fn is_user(&self) -> bool {
        matches!(self.caller.principal, Principal::User { .. })
    }

    /// What the policy needs to know about `namespace` for this caller.
    async fn facts(&self, namespace: &str) -> Result<NamespaceFacts, ManagementError> {
        Ok(self
            .auth
            .store
            .namespace_facts(namespace, user_name(&self.caller.principal))
            .await?)
    }

    /// What the policy says of `action` on `repository`: a 403 when it
    /// refuses, else the facts and the decision for [`Check::repository_outcome`].
    async fn repository_policy(
        &self,
        repository: &RepoName,
        action: Action,
    ) -> Result<(NamespaceFacts, Decision), ManagementError> {
        let facts = self.facts(repository.namespace()).await?;
        let decision = authorize_repository(
            &self.caller.principal,
            &self.auth.policy,
            facts,
            repository,
            action,
        );
        self.policy(
            decision.is_allowed(),
            "requested access to the repository is denied",
        )?;
        Ok((facts, decision))
    }

    /// What an allowed action on `repository` finds: a namespace that does
    /// not exist holds nothing (404: only those the policy allowed get
    /// here), except that a push the policy lets create it creates it as
    /// the first `/v2/` push would, with the caller as its owner.
    async fn repository_outcome(
        &self,
        repository: &RepoName,
        action: Action,
        facts: NamespaceFacts,
        decision: Decision,
    ) -> Result<(), ManagementError> {
        match decision {
            Decision::AllowCreatingNamespace if action == Action::Push => {
                let actor = self.caller.principal.actor(None);
                create_namespace_for(self.auth, &self.caller.principal, &actor, repository)
                    .await
                    .map_err(|_| ManagementError::forbidden("may not create the namespace"))
            }
            _ if facts == NamespaceFacts::Missing => Err(ManagementError::not_found(format!(
                "no repository {repository}"
            ))),
            _ => Ok(()),
        }
    }

    /// A 403 unless the policy allows.
    fn policy(&self, allowed: bool, message: &str) -> Result<(), ManagementError> {
        if allowed {
            Ok(())
        } else {
            Err(ManagementError::forbidden(message))
        }
    }

    /// A 401 `insufficient_scope` unless the caller's token (if any) grants
    /// every scope of `needed`.
    fn claim(&self, needed: &[Scope]) -> Result<(), ManagementError> {
        let Some(claims) = &self.caller.bearer else {
            return Ok(());
        };
        let missing: Vec<Scope> = needed
            .iter()
            .filter(|scope| {
                !scope
                    .actions
                    .iter()
                    .all(|action| claims.allows(scope.resource_type.as_str(), &scope.name, action))
            })
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(self.insufficient(missing))
        }
    }

    /// The answer for a missing namespace the caller asked `action` of: 404
    /// to those who could create it (they learn nothing they could not by
    /// trying), 403 to the others, as for a private namespace.
    fn missing_namespace(
        &self,
        namespace: &Name,
        action: NamespaceAction,
    ) -> Result<(), ManagementError> {
        let may_create = may_create_namespace(
            &self.caller.principal,
            &self.auth.policy,
            namespace.as_str(),
        );
        self.policy(may_create, "requested access to the namespace is denied")?;
        self.claim(&[Scope::namespace(namespace.as_str(), action)])?;
        Err(ManagementError::not_found(format!(
            "no namespace {namespace}"
        )))
    }

    fn insufficient(&self, scopes: Vec<Scope>) -> ManagementError {
        self.challenge(
            scopes,
            Some(ChallengeError::InsufficientScope),
            "the token does not grant this; ask /auth/token for the scope in detail.scope",
        )
    }

    fn challenge(
        &self,
        scopes: Vec<Scope>,
        error: Option<ChallengeError>,
        message: &str,
    ) -> ManagementError {
        challenge(self.auth, self.parts, scopes, error, message)
    }
}

/// A 401 with a `Bearer` challenge naming `scopes` (and, for programs, the
/// same scopes in `detail.scope`).
fn challenge(
    auth: &AuthState,
    parts: &Parts,
    scopes: Vec<Scope>,
    error: Option<ChallengeError>,
    message: &str,
) -> ManagementError {
    let mut challenge = Challenge::bearer(auth.realm(parts), &auth.authority.service);
    let names: Vec<String> = scopes.iter().map(Scope::to_string).collect();
    for scope in scopes {
        challenge = challenge.with_scope(scope);
    }
    if let Some(error) = error {
        challenge = challenge.with_error(error);
    }
    let mut refusal = ManagementError::new(ErrorCode::Unauthorized, message)
        .with_header(header::WWW_AUTHENTICATE, challenge.render());
    if !names.is_empty() {
        refusal = refusal.with_detail(serde_json::json!({ "scope": names.join(" ") }));
    }
    refusal
}

/// The answer to credentials that were not accepted (before any
/// permission is looked at).
pub fn refuse_credentials(
    auth: &AuthState,
    parts: &Parts,
    failure: AuthenticationFailure,
) -> ManagementError {
    match failure {
        AuthenticationFailure::MalformedHeader => challenge(
            auth,
            parts,
            Vec::new(),
            None,
            "malformed Authorization header",
        ),
        AuthenticationFailure::InvalidToken => challenge(
            auth,
            parts,
            Vec::new(),
            Some(ChallengeError::InvalidToken),
            "invalid or expired token",
        ),
        AuthenticationFailure::Login(LoginError::InvalidCredentials) => {
            challenge(auth, parts, Vec::new(), None, "invalid credentials")
        }
        AuthenticationFailure::Login(other) => other.into(),
        AuthenticationFailure::Store(error) => error.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::route::{PathParams, Route};

    /// A valid request body for each route that takes one.
    fn sample_body(route: Route) -> &'static str {
        match route {
            Route::CreateUser => r#"{"name":"x","password":"long enough"}"#,
            Route::UpdateUser => r#"{"disabled":true}"#,
            Route::SetUserPassword => r#"{"password":"long enough"}"#,
            Route::ChangeOwnPassword => {
                r#"{"current_password":"long enough","new_password":"longer still"}"#
            }
            Route::CreateNamespace => r#"{"name":"x"}"#,
            Route::UpdateNamespace => r#"{"visibility":"public"}"#,
            Route::SetMember => r#"{"role":"reader"}"#,
            Route::CreateToken => r#"{"name":"x","scopes":["x:pull"]}"#,
            Route::TagImage => r#"{"source_repository":"x/y","source_reference":"latest"}"#,
            Route::SetVulnerabilityPolicy => r#"{"mode":"block"}"#,
            Route::AddExemption => r#"{"scope":"x/app","issue":"CVE-1"}"#,
            Route::AddImmutableRule => r#"{"scope":"x/app","tags":"v*"}"#,
            Route::ImportAdvisories => r#"{"records":[]}"#,
            Route::CreateWebhook => r#"{"scope":"x","url":"https://h.example/","events":["push"]}"#,
            Route::SetRetentionPolicy => r#"{"keep":3}"#,
            Route::RunRetentionPolicy => r#"{"dry_run":true}"#,
            Route::SetQuota => r#"{"storage":1000}"#,
            Route::CreateReplication => {
                r#"{"name":"x","direction":"push","url":"https://r.example","repositories":"x/**"}"#
            }
            _ => "",
        }
    }

    /// The routes anonymous callers reach before any body is read are
    /// exactly those the permission table opens to anyone.
    #[test]
    fn public_routes_are_the_anyone_rows() {
        for route in Route::ALL {
            let (method, template) = route.method_and_path();
            // Parameters become `x…`, except the SBOM format, which is a
            // word, a digest, which has a form of its own, and a webhook's
            // id, which is a number.
            let digest = format!("sha256:{}", "0".repeat(64));
            let path = template
                .replace("{format}", "spdx")
                .replace("{digest}", &digest)
                .replace("{id}", "7")
                .replace('{', "x")
                .replace('}', "");
            let (found, params): (Route, PathParams) = Route::find(&method, &path).unwrap();
            assert_eq!(found, route);
            let endpoint = Endpoint::parse(route, &params, sample_body(route).as_bytes())
                .unwrap_or_else(|e| panic!("{route:?}: {e:?}"));
            assert_eq!(
                required(&endpoint) == Permission::Anyone,
                route.is_public(),
                "{route:?}"
            );
            assert_eq!(
                route.takes_body(),
                !sample_body(route).is_empty(),
                "{route:?}"
            );
        }
    }

    #[test]
    fn a_new_token_needs_to_manage_each_namespace_it_reaches_once() {
        let scopes = ["a:pull", "a/app:push", "b:*"].map(|s| TokenScope::parse(s).unwrap());
        let needed: Vec<String> = needed_scopes(&Permission::GrantTokenScopes(scopes.to_vec()))
            .iter()
            .map(Scope::to_string)
            .collect();
        assert_eq!(
            needed,
            ["namespace:a:manage_members", "namespace:b:manage_members"]
        );
    }
}
