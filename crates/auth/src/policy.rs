//! The policy: one pure function, [`authorize`], decides every right.
//!
//! It takes what the server knows (the principal, facts about the namespace
//! read from the store, the configuration) and returns a [`Decision`]; it does
//! no IO and reads no clock, so the whole policy is one table test.
//!
//! The rules, in order:
//! 1. Administrators may do everything.
//! 2. Whoever may create a namespace is treated as its owner-to-be while it
//!    does not exist: pushing then creates it ([`Decision::AllowCreatingNamespace`]),
//!    and other actions are allowed so the registry can answer "not found".
//!    Users may create their personal namespace (named after them) and, if
//!    [`PolicyConfig::users_may_create_namespaces`] is set, any other.
//! 3. Members may do what their [`Role`] allows.
//! 4. Anyone, anonymous included, may pull from a public namespace.
//! 5. Access tokens (robots) may do exactly what their scopes say (narrowed
//!    to their creator's current rights by [`narrow_to_creator`] when they
//!    are authenticated, `crate::robots`), plus rule 4:
//!    a scope over a namespace covers its repositories and the namespace as a
//!    whole, a scope over a repository only that repository.
//!    They never create namespaces and never manage members or settings.
//!    Rule 4 applies to them because a Kubernetes `imagePullSecret` is sent for
//!    every image from this host, and a pull of a public image must not fail
//!    just because credentials were attached.
//! 6. Everything else is refused: with [`Denial::AuthenticationRequired`] when no
//!    credentials were given (so the client logs in and retries), otherwise
//!    [`Denial::Forbidden`]. A missing namespace and a private one look the same
//!    to those who may not see it, so names do not leak.
//!
//! A registry token (JWT) never grants more than its `access` claim: the
//! server checks both this policy and the claim. What the token endpoint puts
//! in the claim is decided here too, from the same rules: [`granted_actions`]
//! for repositories, [`granted_namespace_actions`] and
//! [`granted_registry_actions`] for the management API's scopes (see
//! [`crate::scope`]).

use berth_oci::{ErrorCode, RepoName};

use crate::model::{Action, Principal, Role, TokenScope, TokenTarget, Visibility};
use crate::scope::{NamespaceAction, RegistryResource};

/// Policy settings from the server configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Whether any logged-in user may create a namespace by pushing to it.
    /// Off by default: namespaces are usually handed out by an administrator,
    /// and personal namespaces need no flag.
    pub users_may_create_namespaces: bool,
    /// The longest expiry a new access token may have (`[auth]
    /// max_token_lifetime`); `None` for no limit, `never` included.
    pub max_token_lifetime: Option<time::Duration>,
}

/// What the store knows about a repository's namespace, from the point of view
/// of the principal asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceFacts {
    /// No such namespace.
    Missing,
    Exists {
        visibility: Visibility,
        /// The principal's role in it, if they are a user and a member. The
        /// policy ignores this for anonymous principals and access tokens.
        member_role: Option<Role>,
    },
}

/// The answer of [`authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed, and the namespace does not exist yet: the caller creates it,
    /// with the principal as its owner, before writing.
    AllowCreatingNamespace,
    Deny(Denial),
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        !matches!(self, Decision::Deny(_))
    }
}

/// Why a request was refused, which decides the status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No credentials: answer 401 with a challenge, so the client logs in.
    AuthenticationRequired,
    /// Credentials were fine but do not allow this: answer 403.
    Forbidden,
}

impl Denial {
    /// The spec error code: `UNAUTHORIZED` (401) or `DENIED` (403).
    pub fn code(self) -> ErrorCode {
        match self {
            Denial::AuthenticationRequired => ErrorCode::Unauthorized,
            Denial::Forbidden => ErrorCode::Denied,
        }
    }
}

/// Decides whether `principal` may perform `action` on `repository`, whose
/// namespace (its first path component) is described by `facts`.
pub fn authorize(
    principal: &Principal,
    config: &PolicyConfig,
    facts: NamespaceFacts,
    repository: &RepoName,
    action: Action,
) -> Decision {
    decide(
        principal,
        config,
        facts,
        repository.namespace(),
        Some(repository),
        action,
    )
}

/// Decides a namespace-wide action (managing members or settings) outside
/// any particular repository.
pub fn authorize_namespace(
    principal: &Principal,
    config: &PolicyConfig,
    facts: NamespaceFacts,
    namespace: &str,
    action: Action,
) -> Decision {
    decide(principal, config, facts, namespace, None, action)
}

/// The part of a robot's `scopes` its `creator` may exercise now: each
/// scope keeps the actions the policy allows the creator on its target
/// (`facts` describes each namespace for the creator), and a scope left
/// without actions is dropped. This is the creator rule: a robot's rights
/// are its scopes intersected with its creator's current rights.
pub fn narrow_to_creator(
    creator: &Principal,
    config: &PolicyConfig,
    scopes: &[TokenScope],
    facts: impl Fn(&str) -> NamespaceFacts,
) -> Vec<TokenScope> {
    scopes
        .iter()
        .filter_map(|scope| {
            let namespace = scope.namespace();
            let facts = facts(namespace);
            let repository = match &scope.target {
                TokenTarget::Namespace(_) => None,
                TokenTarget::Repository(name) => Some(RepoName::parse(name).ok()?),
            };
            let actions: Vec<Action> = scope
                .actions
                .iter()
                .copied()
                .filter(|action| {
                    decide(
                        creator,
                        config,
                        facts,
                        namespace,
                        repository.as_ref(),
                        *action,
                    )
                    .is_allowed()
                })
                .collect();
            (!actions.is_empty()).then(|| TokenScope {
                target: scope.target.clone(),
                actions,
            })
        })
        .collect()
}

/// Whether `principal` may create `namespace` (when it does not exist yet).
pub fn may_create_namespace(principal: &Principal, config: &PolicyConfig, namespace: &str) -> bool {
    match principal {
        Principal::User { is_admin: true, .. } => true,
        Principal::User { name, .. } => name == namespace || config.users_may_create_namespaces,
        Principal::Anonymous | Principal::AccessToken { .. } => false,
    }
}

/// Whether `creator` may create an access token with `scope`, given the facts
/// of the scope's namespace: administrators always, namespace owners for their
/// namespace. This is what keeps a robot from ever exceeding its creator's
/// rights at creation time; after that the token stands on its own.
pub fn may_grant_token_scope(
    creator: &Principal,
    facts: NamespaceFacts,
    scope: &TokenScope,
) -> bool {
    let _ = scope; // The namespace was resolved into `facts` by the caller.
    match (creator, facts) {
        (Principal::User { is_admin: true, .. }, _) => true,
        (Principal::User { .. }, NamespaceFacts::Exists { member_role, .. }) => {
            member_role == Some(Role::Owner)
        }
        _ => false,
    }
}

/// Whether `principal` may see `namespace` (find it in a listing, read its
/// settings): whether they may pull anything from it. Members of any role,
/// administrators, everyone for a public namespace, and robots with a pull
/// scope anywhere in it. A missing namespace is seen by nobody.
pub fn may_see_namespace(principal: &Principal, facts: NamespaceFacts, namespace: &str) -> bool {
    let NamespaceFacts::Exists {
        visibility,
        member_role,
    } = facts
    else {
        return false;
    };
    visibility == Visibility::Public
        || match principal {
            Principal::Anonymous => false,
            Principal::User { is_admin, .. } => *is_admin || member_role.is_some(),
            Principal::AccessToken { scopes, .. } => scopes.iter().any(|scope| {
                scope.namespace() == namespace && scope.actions.contains(&Action::Pull)
            }),
        }
}

/// The actions of a requested `namespace:NAME:…` scope that are granted,
/// by name, in [`NamespaceAction::ALL`] order. `*` is expanded; unknown
/// actions are never granted. Namespace-wide actions follow
/// [`authorize_namespace`]; `create` follows [`may_create_namespace`].
pub fn granted_namespace_actions(
    principal: &Principal,
    config: &PolicyConfig,
    facts: NamespaceFacts,
    namespace: &str,
    requested: &[String],
) -> Vec<String> {
    NamespaceAction::ALL
        .into_iter()
        .filter(|action| {
            requested
                .iter()
                .any(|name| NamespaceAction::expand(name).contains(action))
        })
        .filter(|action| match action {
            NamespaceAction::Action(action) => {
                authorize_namespace(principal, config, facts, namespace, *action).is_allowed()
            }
            NamespaceAction::Create => may_create_namespace(principal, config, namespace),
        })
        .map(|action| action.as_str().to_string())
        .collect()
}

/// The actions of a requested `registry:NAME:…` scope that are granted:
/// `*` (the whole resource) or nothing. The catalog goes to anyone who
/// logged in (listing is filtered per caller); user administration to
/// administrators; managing one's own access tokens to users (people, not
/// robots: a robot never makes or revokes tokens).
pub fn granted_registry_actions(
    principal: &Principal,
    resource: RegistryResource,
    requested: &[String],
) -> Vec<String> {
    let granted = !requested.is_empty()
        && match resource {
            RegistryResource::Catalog => principal.subject().is_some(),
            RegistryResource::Users => matches!(principal, Principal::User { is_admin: true, .. }),
            RegistryResource::Tokens | RegistryResource::Account => {
                matches!(principal, Principal::User { .. })
            }
        };
    if granted {
        vec!["*".to_string()]
    } else {
        Vec::new()
    }
}

/// The actions of a requested Docker scope that are granted, as scope action
/// names (`pull`, `push`, `delete`), in that order. `*` is expanded; unknown
/// actions are never granted. This is what a registry JWT's `access` carries.
pub fn granted_actions(
    principal: &Principal,
    config: &PolicyConfig,
    facts: NamespaceFacts,
    repository: &RepoName,
    requested: &[String],
) -> Vec<String> {
    Action::REGISTRY
        .into_iter()
        .filter(|action| {
            requested
                .iter()
                .any(|name| Action::from_scope_name(name).contains(action))
        })
        .filter(|action| authorize(principal, config, facts, repository, *action).is_allowed())
        .filter_map(|action| action.scope_name().map(str::to_string))
        .collect()
}

fn decide(
    principal: &Principal,
    config: &PolicyConfig,
    facts: NamespaceFacts,
    namespace: &str,
    repository: Option<&RepoName>,
    action: Action,
) -> Decision {
    let missing_namespace = |may_create: bool| {
        if !may_create {
            Decision::Deny(Denial::Forbidden)
        } else if action == Action::Push {
            Decision::AllowCreatingNamespace
        } else {
            Decision::Allow
        }
    };
    let public_pull = matches!(
        facts,
        NamespaceFacts::Exists {
            visibility: Visibility::Public,
            ..
        }
    ) && action == Action::Pull;

    match principal {
        Principal::Anonymous => {
            if public_pull {
                Decision::Allow
            } else {
                Decision::Deny(Denial::AuthenticationRequired)
            }
        }
        Principal::User { .. } => match facts {
            NamespaceFacts::Missing => {
                missing_namespace(may_create_namespace(principal, config, namespace))
            }
            NamespaceFacts::Exists { .. }
                if matches!(principal, Principal::User { is_admin: true, .. }) =>
            {
                Decision::Allow
            }
            NamespaceFacts::Exists { member_role, .. } => {
                if member_role.is_some_and(|role| role.allows(action)) || public_pull {
                    Decision::Allow
                } else {
                    Decision::Deny(Denial::Forbidden)
                }
            }
        },
        Principal::AccessToken { scopes, .. } => {
            let in_scope = matches!(facts, NamespaceFacts::Exists { .. })
                && match repository {
                    Some(repo) => scopes.iter().any(|s| s.covers(repo, action)),
                    None => scopes.iter().any(|s| s.covers_namespace(namespace, action)),
                };
            if in_scope || public_pull {
                Decision::Allow
            } else {
                Decision::Deny(Denial::Forbidden)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TokenScope;

    fn user(name: &str) -> Principal {
        Principal::User {
            name: name.to_string(),
            is_admin: false,
        }
    }

    fn robot(scopes: &[&str]) -> Principal {
        Principal::AccessToken {
            name: "ci".to_string(),
            scopes: scopes
                .iter()
                .map(|s| TokenScope::parse(s).unwrap())
                .collect(),
            expires_at: None,
            created_by: None,
        }
    }

    #[test]
    fn robots_never_exceed_their_creator() {
        let config = PolicyConfig::default();
        let scopes: Vec<TokenScope> = [
            "team:pull,push,delete",
            "team/app:push",
            "open:pull",
            "other:pull",
        ]
        .iter()
        .map(|s| TokenScope::parse(s).unwrap())
        .collect();
        let facts = |role: Option<Role>| {
            move |namespace: &str| match namespace {
                "team" => exists(Visibility::Private, role),
                "open" => exists(Visibility::Public, None),
                _ => NamespaceFacts::Missing,
            }
        };
        let render = |scopes: Vec<TokenScope>| -> Vec<String> {
            scopes.iter().map(TokenScope::to_string).collect()
        };
        // (creator's role in `team`, what the robot keeps)
        let table: &[(Option<Role>, &[&str])] = &[
            (
                Some(Role::Owner),
                &["team:pull,push,delete", "team/app:push", "open:pull"],
            ),
            (
                Some(Role::Writer),
                &["team:pull,push", "team/app:push", "open:pull"],
            ),
            (Some(Role::Reader), &["team:pull", "open:pull"]),
            (None, &["open:pull"]),
        ];
        for (role, kept) in table {
            let narrowed = narrow_to_creator(&user("alice"), &config, &scopes, facts(*role));
            assert_eq!(render(narrowed), *kept, "{role:?}");
        }
        let admin = Principal::User {
            name: "root".into(),
            is_admin: true,
        };
        let narrowed = narrow_to_creator(&admin, &config, &scopes, facts(None));
        assert_eq!(
            render(narrowed),
            [
                "team:pull,push,delete",
                "team/app:push",
                "open:pull",
                "other:pull"
            ],
            "administrators keep everything that exists, and may create `other`"
        );
    }

    const PUBLIC: Visibility = Visibility::Public;
    const PRIVATE: Visibility = Visibility::Private;

    fn exists(visibility: Visibility, member_role: Option<Role>) -> NamespaceFacts {
        NamespaceFacts::Exists {
            visibility,
            member_role,
        }
    }

    /// The policy table of issue 4: principal × role × visibility × action.
    /// Each expectation string lists, for Pull, Push, Delete, ManageMembers,
    /// ManageSettings: `A` allow, `C` allow creating the namespace,
    /// `U` deny as unauthenticated (401), `F` deny as forbidden (403).
    #[test]
    fn policy_table() {
        let admin = Principal::User {
            name: "root".to_string(),
            is_admin: true,
        };
        let missing = NamespaceFacts::Missing;
        let open = PolicyConfig {
            users_may_create_namespaces: true,
            ..PolicyConfig::default()
        };
        let closed = PolicyConfig::default();
        use Role::*;
        #[rustfmt::skip]
        let table: Vec<(&str, Principal, PolicyConfig, NamespaceFacts, &str, &str)> = vec![
            // label, principal, config, facts of team-a, repository, expected
            ("anon public",         Principal::Anonymous, closed, exists(PUBLIC, None), "team-a/api", "AUUUU"),
            ("anon private",        Principal::Anonymous, closed, exists(PRIVATE, None), "team-a/api", "UUUUU"),
            ("anon missing",        Principal::Anonymous, open, missing, "team-a/api", "UUUUU"),
            ("anon ignores role",   Principal::Anonymous, closed, exists(PRIVATE, Some(Owner)), "team-a/api", "UUUUU"),
            ("stranger public",     user("bob"), closed, exists(PUBLIC, None), "team-a/api", "AFFFF"),
            ("stranger private",    user("bob"), closed, exists(PRIVATE, None), "team-a/api", "FFFFF"),
            ("reader private",      user("bob"), closed, exists(PRIVATE, Some(Reader)), "team-a/api", "AFFFF"),
            ("reader public",       user("bob"), closed, exists(PUBLIC, Some(Reader)), "team-a/api", "AFFFF"),
            ("writer private",      user("bob"), closed, exists(PRIVATE, Some(Writer)), "team-a/api", "AAFFF"),
            ("writer public",       user("bob"), closed, exists(PUBLIC, Some(Writer)), "team-a/api", "AAFFF"),
            ("maintainer private",  user("bob"), closed, exists(PRIVATE, Some(Maintainer)), "team-a/api", "AAAFF"),
            ("maintainer public",   user("bob"), closed, exists(PUBLIC, Some(Maintainer)), "team-a/api", "AAAFF"),
            ("owner private",       user("bob"), closed, exists(PRIVATE, Some(Owner)), "team-a/api", "AAAAA"),
            ("owner public",        user("bob"), closed, exists(PUBLIC, Some(Owner)), "team-a/api", "AAAAA"),
            ("owner nested repo",   user("bob"), closed, exists(PRIVATE, Some(Owner)), "team-a/x/y", "AAAAA"),
            ("user missing closed", user("bob"), closed, missing, "team-a/api", "FFFFF"),
            ("user missing open",   user("bob"), open, missing, "team-a/api", "ACAAA"),
            ("personal missing",    user("bob"), closed, missing, "bob/api", "ACAAA"),
            ("personal prefix",     user("bob"), closed, missing, "bobby/api", "FFFFF"),
            ("admin private",       admin.clone(), closed, exists(PRIVATE, None), "team-a/api", "AAAAA"),
            ("admin public",        admin.clone(), closed, exists(PUBLIC, Some(Reader)), "team-a/api", "AAAAA"),
            ("admin missing",       admin.clone(), closed, missing, "team-a/api", "ACAAA"),
            ("robot ns pull",       robot(&["team-a:pull"]), closed, exists(PRIVATE, None), "team-a/api", "AFFFF"),
            ("robot ns pull,push",  robot(&["team-a:pull,push"]), closed, exists(PRIVATE, None), "team-a/api", "AAFFF"),
            ("robot ns *",          robot(&["team-a:*"]), closed, exists(PRIVATE, None), "team-a/api", "AAAFF"),
            ("robot push only",     robot(&["team-a:push"]), closed, exists(PRIVATE, None), "team-a/api", "FAFFF"),
            ("robot repo",          robot(&["team-a/api:pull,push"]), closed, exists(PRIVATE, None), "team-a/api", "AAFFF"),
            ("robot other repo",    robot(&["team-a/api:pull,push"]), closed, exists(PRIVATE, None), "team-a/web", "FFFFF"),
            ("robot other public",  robot(&["team-a/api:pull,push"]), closed, exists(PUBLIC, None), "team-a/web", "AFFFF"),
            ("robot other ns",      robot(&["team-b:pull"]), closed, exists(PRIVATE, None), "team-a/api", "FFFFF"),
            ("robot public",        robot(&["team-b:pull"]), closed, exists(PUBLIC, None), "team-a/api", "AFFFF"),
            ("robot ignores role",  robot(&["team-b:pull"]), closed, exists(PRIVATE, Some(Owner)), "team-a/api", "FFFFF"),
            ("robot missing",       robot(&["team-a:*"]), open, missing, "team-a/api", "FFFFF"),
            ("robot two scopes",    robot(&["team-b:pull", "team-a/api:delete"]), closed, exists(PRIVATE, None), "team-a/api", "FFAFF"),
        ];
        for (label, principal, config, facts, repository, expected) in table {
            let repository = RepoName::parse(repository).unwrap();
            let got: String = Action::ALL
                .into_iter()
                .map(|action| {
                    let decision =
                        if matches!(action, Action::ManageMembers | Action::ManageSettings) {
                            authorize_namespace(
                                &principal,
                                &config,
                                facts,
                                repository.namespace(),
                                action,
                            )
                        } else {
                            authorize(&principal, &config, facts, &repository, action)
                        };
                    match decision {
                        Decision::Allow => 'A',
                        Decision::AllowCreatingNamespace => 'C',
                        Decision::Deny(Denial::AuthenticationRequired) => 'U',
                        Decision::Deny(Denial::Forbidden) => 'F',
                    }
                })
                .collect();
            assert_eq!(got, expected, "{label}");
        }
    }

    #[test]
    fn granted_actions_carry_only_what_is_allowed() {
        let repo = RepoName::parse("team-a/api").unwrap();
        let config = PolicyConfig::default();
        let requested = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let writer = exists(PRIVATE, Some(Role::Writer));
        assert_eq!(
            granted_actions(
                &user("bob"),
                &config,
                writer,
                &repo,
                &requested(&["push", "pull"])
            ),
            ["pull", "push"]
        );
        assert_eq!(
            granted_actions(&user("bob"), &config, writer, &repo, &requested(&["*"])),
            ["pull", "push"]
        );
        assert_eq!(
            granted_actions(
                &user("bob"),
                &config,
                writer,
                &repo,
                &requested(&["delete", "frobnicate"])
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            granted_actions(
                &Principal::Anonymous,
                &config,
                exists(PUBLIC, None),
                &repo,
                &requested(&["pull", "push"])
            ),
            ["pull"]
        );
        // Push to a namespace the user may create is granted; the handler creates it.
        let personal = RepoName::parse("bob/api").unwrap();
        assert_eq!(
            granted_actions(
                &user("bob"),
                &config,
                NamespaceFacts::Missing,
                &personal,
                &requested(&["push"])
            ),
            ["push"]
        );
    }

    #[test]
    fn token_scope_grants() {
        let scope = TokenScope::parse("team-a:pull").unwrap();
        let admin = Principal::User {
            name: "root".to_string(),
            is_admin: true,
        };
        assert!(may_grant_token_scope(
            &admin,
            NamespaceFacts::Missing,
            &scope
        ));
        assert!(may_grant_token_scope(
            &user("bob"),
            exists(PRIVATE, Some(Role::Owner)),
            &scope
        ));
        assert!(!may_grant_token_scope(
            &user("bob"),
            exists(PRIVATE, Some(Role::Maintainer)),
            &scope
        ));
        assert!(!may_grant_token_scope(
            &user("bob"),
            NamespaceFacts::Missing,
            &scope
        ));
        assert!(!may_grant_token_scope(
            &robot(&["team-a:*"]),
            exists(PRIVATE, Some(Role::Owner)),
            &scope
        ));
        assert!(!may_grant_token_scope(
            &Principal::Anonymous,
            exists(PUBLIC, None),
            &scope
        ));
    }

    /// Namespace-wide decisions for robots: only a scope over the whole
    /// namespace covers it, and never for managing it.
    #[test]
    fn robots_on_a_whole_namespace() {
        let config = PolicyConfig::default();
        let private = exists(PRIVATE, None);
        let table: &[(&[&str], Action, bool)] = &[
            (&["team-a:pull"], Action::Pull, true),
            (&["team-a:pull"], Action::Push, false),
            (&["team-a:*"], Action::Delete, true),
            (&["team-a:*"], Action::ManageMembers, false),
            (&["team-a:*"], Action::ManageSettings, false),
            (&["team-a/api:pull"], Action::Pull, false),
            (&["team-b:pull"], Action::Pull, false),
        ];
        for (scopes, action, allowed) in table {
            let decision = authorize_namespace(&robot(scopes), &config, private, "team-a", *action);
            assert_eq!(decision.is_allowed(), *allowed, "{scopes:?} {action:?}");
        }
    }

    #[test]
    fn who_sees_a_namespace() {
        let admin = Principal::User {
            name: "root".to_string(),
            is_admin: true,
        };
        // (label, principal, facts, expected)
        let table: Vec<(&str, Principal, NamespaceFacts, bool)> = vec![
            (
                "anonymous public",
                Principal::Anonymous,
                exists(PUBLIC, None),
                true,
            ),
            (
                "anonymous private",
                Principal::Anonymous,
                exists(PRIVATE, None),
                false,
            ),
            (
                "stranger private",
                user("bob"),
                exists(PRIVATE, None),
                false,
            ),
            (
                "reader private",
                user("bob"),
                exists(PRIVATE, Some(Role::Reader)),
                true,
            ),
            ("admin private", admin.clone(), exists(PRIVATE, None), true),
            ("admin missing", admin, NamespaceFacts::Missing, false),
            (
                "robot namespace pull",
                robot(&["team-a:pull"]),
                exists(PRIVATE, None),
                true,
            ),
            (
                "robot repository pull",
                robot(&["team-a/api:pull"]),
                exists(PRIVATE, None),
                true,
            ),
            (
                "robot push only",
                robot(&["team-a:push"]),
                exists(PRIVATE, None),
                false,
            ),
            (
                "robot elsewhere",
                robot(&["team-b:pull"]),
                exists(PRIVATE, None),
                false,
            ),
            (
                "robot public",
                robot(&["team-b:pull"]),
                exists(PUBLIC, None),
                true,
            ),
        ];
        for (label, principal, facts, expected) in table {
            assert_eq!(
                may_see_namespace(&principal, facts, "team-a"),
                expected,
                "{label}"
            );
        }
    }

    #[test]
    fn granted_management_scopes() {
        let config = PolicyConfig::default();
        let requested = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let admin = Principal::User {
            name: "root".to_string(),
            is_admin: true,
        };
        let owner = exists(PRIVATE, Some(Role::Owner));
        let reader = exists(PRIVATE, Some(Role::Reader));
        // (label, principal, facts of "team-a", requested, expected)
        #[rustfmt::skip]
        type Row<'a> = (&'a str, Principal, NamespaceFacts, &'a [&'a str], &'a [&'a str]);
        let table: Vec<Row> = vec![
            (
                "owner all",
                user("bob"),
                owner,
                &["*"],
                &[
                    "pull",
                    "push",
                    "delete",
                    "manage_members",
                    "manage_settings",
                ],
            ),
            ("reader asks all", user("bob"), reader, &["*"], &["pull"]),
            (
                "reader asks manage",
                user("bob"),
                reader,
                &["manage_members", "manage_settings"],
                &[],
            ),
            (
                "stranger public",
                user("bob"),
                exists(PUBLIC, None),
                &["pull", "push"],
                &["pull"],
            ),
            (
                "unknown action",
                user("bob"),
                owner,
                &["manage", "admin"],
                &[],
            ),
            ("create taken name", user("bob"), owner, &["create"], &[]),
            (
                "admin create",
                admin.clone(),
                NamespaceFacts::Missing,
                &["create"],
                &["create"],
            ),
            (
                "robot all",
                robot(&["team-a:*"]),
                exists(PRIVATE, None),
                &["*"],
                &["pull", "push", "delete"],
            ),
            (
                "robot repo scope",
                robot(&["team-a/api:pull"]),
                exists(PRIVATE, None),
                &["pull"],
                &[],
            ),
            (
                "anonymous public",
                Principal::Anonymous,
                exists(PUBLIC, None),
                &["*"],
                &["pull"],
            ),
        ];
        for (label, principal, facts, asked, expected) in table {
            assert_eq!(
                granted_namespace_actions(&principal, &config, facts, "team-a", &requested(asked)),
                expected,
                "{label}"
            );
        }
        // A user may create their personal namespace, and others only when configured.
        assert_eq!(
            granted_namespace_actions(
                &user("bob"),
                &config,
                NamespaceFacts::Missing,
                "bob",
                &requested(&["create"])
            ),
            ["create"]
        );
        let open = PolicyConfig {
            users_may_create_namespaces: true,
            ..PolicyConfig::default()
        };
        assert_eq!(
            granted_namespace_actions(
                &user("bob"),
                &open,
                NamespaceFacts::Missing,
                "new",
                &requested(&["create"])
            ),
            ["create"]
        );

        let star = requested(&["*"]);
        // (label, principal, catalog, users, tokens)
        let table: Vec<(&str, Principal, bool, bool, bool)> = vec![
            ("anonymous", Principal::Anonymous, false, false, false),
            ("user", user("bob"), true, false, true),
            ("admin", admin, true, true, true),
            ("robot", robot(&["team-a:*"]), true, false, false),
        ];
        for (label, principal, catalog, users, tokens) in table {
            let granted =
                |resource| !granted_registry_actions(&principal, resource, &star).is_empty();
            assert_eq!(
                granted(RegistryResource::Catalog),
                catalog,
                "{label} catalog"
            );
            assert_eq!(granted(RegistryResource::Users), users, "{label} users");
            assert_eq!(granted(RegistryResource::Tokens), tokens, "{label} tokens");
            assert!(granted_registry_actions(&principal, RegistryResource::Tokens, &[]).is_empty());
        }
    }

    #[test]
    fn denials_map_to_spec_codes() {
        assert_eq!(
            Denial::AuthenticationRequired.code(),
            ErrorCode::Unauthorized
        );
        assert_eq!(Denial::Forbidden.code(), ErrorCode::Denied);
        assert!(Decision::AllowCreatingNamespace.is_allowed());
        assert!(!Decision::Deny(Denial::Forbidden).is_allowed());
    }
}
