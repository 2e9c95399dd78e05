//! The vocabulary of access control: roles, visibility, actions, principals,
//! and the scopes an access token is limited to.

use std::fmt;
use std::str::FromStr;

use berth_oci::RepoName;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::AuthError;

/// A member's role in a namespace. Roles are ordered: each one may do
/// everything the one before it may, plus more, so `role >= Role::Writer`
/// reads as "at least a writer".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pulls.
    Reader,
    /// Pulls and pushes (which includes moving tags by pushing).
    Writer,
    /// Also deletes manifests, tags and blobs.
    Maintainer,
    /// Also manages members and the namespace's settings (visibility).
    Owner,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reader, Role::Writer, Role::Maintainer, Role::Owner];

    /// The least role that may perform `action`. This table is the whole
    /// definition of what roles mean.
    pub fn least_for(action: Action) -> Role {
        match action {
            Action::Pull => Role::Reader,
            Action::Push => Role::Writer,
            Action::Delete => Role::Maintainer,
            Action::ManageMembers | Action::ManageSettings => Role::Owner,
        }
    }

    pub fn allows(self, action: Action) -> bool {
        self >= Role::least_for(action)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Maintainer => "maintainer",
            Role::Owner => "owner",
        }
    }
}

impl FromStr for Role {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| AuthError::InvalidName(s.to_string()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may see a namespace without being a member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Anyone, even anonymous clients, may pull, and it is listed to everyone.
    Public,
    /// Only members (and administrators). The default, because publishing
    /// must be a decision, never an accident.
    #[default]
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }
}

impl FromStr for Visibility {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        match s {
            "public" => Ok(Visibility::Public),
            "private" => Ok(Visibility::Private),
            _ => Err(AuthError::InvalidName(s.to_string())),
        }
    }
}

/// Something a principal may ask to do. The first three are registry actions
/// that appear in Docker token scopes; the last two exist only in the
/// management API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read manifests, blobs, tag lists, referrers.
    Pull,
    /// Upload blobs, put manifests (and so create or move tags), mount blobs in.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
    /// Add, change and remove namespace members.
    ManageMembers,
    /// Change namespace settings such as visibility.
    ManageSettings,
}

impl Action {
    /// The actions a Docker token scope can name, in the order we render them.
    pub const REGISTRY: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];
    pub const ALL: [Action; 5] = [
        Action::Pull,
        Action::Push,
        Action::Delete,
        Action::ManageMembers,
        Action::ManageSettings,
    ];

    /// The action's name: in a `namespace` scope, in the management API's
    /// documents and in logs (the same as its serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::ManageMembers => "manage_members",
            Action::ManageSettings => "manage_settings",
        }
    }

    /// The action's name in a Docker `repository` scope, for the registry actions.
    pub fn scope_name(self) -> Option<&'static str> {
        match self {
            Action::Pull => Some("pull"),
            Action::Push => Some("push"),
            Action::Delete => Some("delete"),
            Action::ManageMembers | Action::ManageSettings => None,
        }
    }

    /// Expands one action of a Docker scope: `*` means every registry action;
    /// an unknown action expands to nothing (it can never be granted).
    pub fn from_scope_name(name: &str) -> &'static [Action] {
        match name {
            "pull" => &[Action::Pull],
            "push" => &[Action::Push],
            "delete" => &[Action::Delete],
            "*" => &Action::REGISTRY,
            _ => &[],
        }
    }
}

/// Who is asking. Built by the server after checking credentials; nothing
/// here checks credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// No credentials were presented.
    Anonymous,
    /// A person who logged in with a password (or a refresh token issued to them).
    User { name: String, is_admin: bool },
    /// A robot: a named access token. Its rights are its scopes, narrowed
    /// to what its creator may do at the time of each use (see
    /// [`crate::robots`]), so a robot never outlives its creator's rights.
    AccessToken {
        name: String,
        scopes: Vec<TokenScope>,
        /// Carried so that a registry JWT issued to the robot never outlives it.
        expires_at: Option<OffsetDateTime>,
        /// The user who created it; `None` for tokens made by `berth admin`
        /// on the database, which stand for the registry's operator.
        created_by: Option<String>,
    },
}

impl Principal {
    /// The JWT `sub` and log name; `None` for anonymous.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::User { name, .. } | Principal::AccessToken { name, .. } => Some(name),
        }
    }
}

/// What an access-token scope covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenTarget {
    /// Every repository in the namespace, present and future.
    Namespace(String),
    /// Exactly one repository. Kept as a validated string so scopes serialize
    /// (the store may keep them as JSON) without names needing serde.
    Repository(String),
}

/// One scope of an access token: `team-a:pull` or `team-a/api:pull,push`.
///
/// Grammar: `NAMESPACE[/REPO…]:ACTION[,ACTION…]` where a target without a `/`
/// is a whole namespace and a target with one is exactly that repository.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenScope {
    pub target: TokenTarget,
    /// Only registry actions: robots never manage members or settings.
    pub actions: Vec<Action>,
}

impl TokenScope {
    pub fn parse(s: &str) -> Result<TokenScope, AuthError> {
        let bad = |why| AuthError::InvalidTokenScope(s.to_string(), why);
        let (target, actions) = s.rsplit_once(':').ok_or(bad("expected TARGET:ACTIONS"))?;
        let repo = RepoName::parse(target).map_err(|_| bad("target is not a valid name"))?;
        let target = if target.contains('/') {
            TokenTarget::Repository(repo.as_str().to_string())
        } else {
            TokenTarget::Namespace(repo.as_str().to_string())
        };
        let mut parsed = Vec::new();
        for name in actions.split(',') {
            let expanded = Action::from_scope_name(name);
            if expanded.is_empty() {
                return Err(bad("actions are pull, push, delete or *"));
            }
            parsed.extend_from_slice(expanded);
        }
        parsed.sort();
        parsed.dedup();
        Ok(TokenScope {
            target,
            actions: parsed,
        })
    }

    /// Whether this scope lets its holder do `action` on `repository`.
    pub fn covers(&self, repository: &RepoName, action: Action) -> bool {
        let target_matches = match &self.target {
            TokenTarget::Namespace(namespace) => repository.namespace() == namespace,
            TokenTarget::Repository(name) => repository.as_str() == name,
        };
        target_matches && self.actions.contains(&action)
    }

    /// Whether this scope lets its holder do `action` on `namespace` as a
    /// whole: only a scope over the whole namespace does, never one over a
    /// repository in it.
    pub fn covers_namespace(&self, namespace: &str, action: Action) -> bool {
        matches!(&self.target, TokenTarget::Namespace(target) if target == namespace)
            && self.actions.contains(&action)
    }

    /// The namespace the scope lives in.
    pub fn namespace(&self) -> &str {
        match &self.target {
            TokenTarget::Namespace(namespace) => namespace,
            TokenTarget::Repository(name) => name.split('/').next().unwrap_or(name),
        }
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            TokenTarget::Namespace(name) | TokenTarget::Repository(name) => f.write_str(name)?,
        }
        f.write_str(":")?;
        let names: Vec<&str> = self.actions.iter().filter_map(|a| a.scope_name()).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for TokenScope {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        TokenScope::parse(s)
    }
}

/// A secret string (password, token) whose `Debug` and `Display` never show
/// it, so it cannot end up in a log by accident. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

/// Checks a user or namespace name: one repository path component
/// (`[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`), because a user's name is also the
/// name of their personal namespace.
pub fn validate_account_name(name: &str) -> Result<(), AuthError> {
    if name.contains('/') || name.len() > 64 || RepoName::parse(name).is_err() {
        return Err(AuthError::InvalidName(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_match_serde() {
        for action in Action::ALL {
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                serde_json::Value::from(action.as_str())
            );
        }
    }

    #[test]
    fn roles_are_cumulative() {
        let table = [
            (Role::Reader, [true, false, false, false, false]),
            (Role::Writer, [true, true, false, false, false]),
            (Role::Maintainer, [true, true, true, false, false]),
            (Role::Owner, [true, true, true, true, true]),
        ];
        for (role, expected) in table {
            for (action, allowed) in Action::ALL.into_iter().zip(expected) {
                assert_eq!(role.allows(action), allowed, "{role} {action:?}");
            }
        }
    }

    #[test]
    fn role_and_visibility_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("admin".parse::<Role>().is_err());
        assert_eq!("public".parse::<Visibility>().unwrap(), Visibility::Public);
        assert_eq!(Visibility::default(), Visibility::Private);
    }

    #[test]
    fn token_scopes_parse() {
        // (input, expected (target name, is a repository, actions) or None)
        type Expected<'a> = Option<(&'a str, bool, &'a [Action])>;
        let table: &[(&str, Expected)] = &[
            ("team-a:pull", Some(("team-a", false, &[Action::Pull]))),
            (
                "team-a/api:pull,push",
                Some(("team-a/api", true, &[Action::Pull, Action::Push])),
            ),
            (
                "team-a/x/y:push,pull,pull",
                Some(("team-a/x/y", true, &[Action::Pull, Action::Push])),
            ),
            ("team-a:*", Some(("team-a", false, &Action::REGISTRY))),
            ("team-a", None),
            ("team-a:", None),
            ("team-a:admin", None),
            ("Team-A:pull", None),
            (":pull", None),
            ("team-a/:pull", None),
        ];
        for (input, expected) in table {
            let parsed = TokenScope::parse(input);
            match expected {
                None => assert!(parsed.is_err(), "{input} should fail"),
                Some((name, is_repo, actions)) => {
                    let scope = parsed.unwrap_or_else(|e| panic!("{input}: {e}"));
                    let target = match &scope.target {
                        TokenTarget::Namespace(n) => (n.as_str(), false),
                        TokenTarget::Repository(n) => (n.as_str(), true),
                    };
                    assert_eq!(target, (*name, *is_repo), "{input}");
                    assert_eq!(scope.actions, *actions, "{input}");
                }
            }
        }
        assert_eq!(
            TokenScope::parse("team-a/api:push,pull")
                .unwrap()
                .to_string(),
            "team-a/api:pull,push"
        );
    }

    #[test]
    fn token_scope_coverage() {
        let repo = |s| RepoName::parse(s).unwrap();
        let ns = TokenScope::parse("team-a:pull").unwrap();
        assert!(ns.covers(&repo("team-a/api"), Action::Pull));
        assert!(ns.covers(&repo("team-a/x/y"), Action::Pull));
        assert!(!ns.covers(&repo("team-a/api"), Action::Push));
        assert!(!ns.covers(&repo("team-ab/api"), Action::Pull));
        let one = TokenScope::parse("team-a/api:pull").unwrap();
        assert!(one.covers(&repo("team-a/api"), Action::Pull));
        assert!(!one.covers(&repo("team-a/api2"), Action::Pull));
        assert!(!one.covers(&repo("team-a/api/sub"), Action::Pull));
        assert_eq!(one.namespace(), "team-a");
        assert!(ns.covers_namespace("team-a", Action::Pull));
        assert!(!ns.covers_namespace("team-a", Action::Push));
        assert!(!ns.covers_namespace("team-ab", Action::Pull));
        assert!(
            !one.covers_namespace("team-a", Action::Pull),
            "a repository scope"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn account_names() {
        for ok in ["alice", "team-a", "a.b", "a__b", "x1"] {
            validate_account_name(ok).unwrap();
        }
        for bad in ["", "Alice", "a/b", "-a", "a-", "a b", &"a".repeat(65)] {
            assert!(validate_account_name(bad).is_err(), "{bad}");
        }
    }
}
