//! Docker token scopes, as clients send them to the token endpoint and as the
//! registry names them in `WWW-Authenticate`:
//!
//! ```text
//! scope        := resourcescope [ ' ' resourcescope ]*
//! resourcescope:= resourcetype ":" resourcename ":" action [ ',' action ]*
//! resourcetype := name [ '(' class ')' ]        e.g. repository(plugin)
//! resourcename := [ hostname '/' ] component [ '/' component ]*
//! ```
//!
//! A resource name may itself contain `:` (a hostname with a port), so the type
//! is everything before the first `:` and the actions everything after the
//! last. Unknown resource types and actions are kept, not refused: a client
//! may ask for more than we understand, and the answer is simply to grant none
//! of it.
//!
//! Besides Docker's `repository` and `registry:catalog`, Berth knows the
//! resources of its management API (`/api/v1`), so that a registry token
//! grants there, too, only what its `access` claim names:
//!
//! | scope | grants |
//! |---|---|
//! | `namespace:NS:pull`, `push`, `delete` | that action on every repository of `NS`, and (`pull`) seeing `NS` itself |
//! | `namespace:NS:manage_members` | listing and changing `NS`'s members, creating access tokens scoped to `NS` |
//! | `namespace:NS:manage_settings` | changing `NS`'s settings (visibility) |
//! | `namespace:NS:create` | creating `NS` |
//! | `registry:users:*` | user administration (administrators only) |
//! | `registry:tokens:*` | listing and revoking the caller's own access tokens |
//! | `registry:account:*` | the caller's own account (password change; users only) |
//!
//! What the token endpoint grants of each is [`crate::policy`]'s decision.

use std::fmt;
use std::str::FromStr;

use crate::error::AuthError;
use crate::model::Action;

/// The resource type of a scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// `repository`: pull, push, delete on one repository.
    Repository,
    /// `registry`: registry-wide resources ([`RegistryResource`]);
    /// `registry:catalog:*` lists repositories.
    Registry,
    /// `namespace`: one namespace as a whole, for the management API
    /// ([`NamespaceAction`]).
    Namespace,
    /// Anything else, kept verbatim so it renders back unchanged.
    Other(String),
}

impl ResourceType {
    pub fn as_str(&self) -> &str {
        match self {
            ResourceType::Repository => "repository",
            ResourceType::Registry => "registry",
            ResourceType::Namespace => "namespace",
            ResourceType::Other(other) => other,
        }
    }

    fn parse(s: &str) -> ResourceType {
        match s {
            "repository" => ResourceType::Repository,
            "registry" => ResourceType::Registry,
            "namespace" => ResourceType::Namespace,
            other => ResourceType::Other(other.to_string()),
        }
    }
}

/// The registry-wide resources a `registry:NAME:*` scope can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegistryResource {
    /// `registry:catalog:*`: `GET /v2/_catalog` (filtered per caller).
    Catalog,
    /// `registry:users:*`: user administration on the management API.
    Users,
    /// `registry:tokens:*`: the caller's own access tokens on the
    /// management API (listing and revoking them; creating one also needs
    /// `manage_members` on each namespace it is scoped to).
    Tokens,
    /// `registry:account:*`: the caller's own account on the management API
    /// (changing their password, which also needs the current one).
    Account,
}

impl RegistryResource {
    pub const ALL: [RegistryResource; 4] = [
        RegistryResource::Catalog,
        RegistryResource::Users,
        RegistryResource::Tokens,
        RegistryResource::Account,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RegistryResource::Catalog => "catalog",
            RegistryResource::Users => "users",
            RegistryResource::Tokens => "tokens",
            RegistryResource::Account => "account",
        }
    }

    pub fn parse(name: &str) -> Option<RegistryResource> {
        RegistryResource::ALL
            .into_iter()
            .find(|resource| resource.as_str() == name)
    }
}

/// What a `namespace:NS:ACTION` scope can grant: a namespace-wide
/// [`Action`], or creating the namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamespaceAction {
    Action(Action),
    /// Creating the namespace (`POST /api/v1/namespaces`).
    Create,
}

impl NamespaceAction {
    /// Every namespace action, in the order tokens list them.
    pub const ALL: [NamespaceAction; 6] = [
        NamespaceAction::Action(Action::Pull),
        NamespaceAction::Action(Action::Push),
        NamespaceAction::Action(Action::Delete),
        NamespaceAction::Action(Action::ManageMembers),
        NamespaceAction::Action(Action::ManageSettings),
        NamespaceAction::Create,
    ];

    /// The action's name in a scope: an [`Action`]'s name, or `create`.
    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceAction::Action(action) => action.as_str(),
            NamespaceAction::Create => "create",
        }
    }

    /// Expands one requested action: `*` means all of them; an unknown name
    /// expands to nothing (it can never be granted).
    pub fn expand(name: &str) -> Vec<NamespaceAction> {
        NamespaceAction::ALL
            .into_iter()
            .filter(|action| name == "*" || action.as_str() == name)
            .collect()
    }
}

/// One resource scope, e.g. `repository:team-a/api:pull,push`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    pub resource_type: ResourceType,
    /// The optional class in `repository(plugin)`; kept so it round-trips.
    pub class: Option<String>,
    /// The resource name: a repository name, or `catalog` for the registry type.
    /// Not validated here: the caller parses it into a `RepoName` when it
    /// needs one, and grants nothing when that fails.
    pub name: String,
    /// Actions as sent, in order, without duplicates. Empty is allowed by the
    /// grammar (and grants nothing).
    pub actions: Vec<String>,
}

impl Scope {
    /// A repository scope, as the registry asks for it in a challenge.
    pub fn repository(name: &str, actions: &[&str]) -> Scope {
        Scope {
            resource_type: ResourceType::Repository,
            class: None,
            name: name.to_string(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// `registry:catalog:*`, the scope of `GET /v2/_catalog`.
    pub fn catalog() -> Scope {
        Scope::registry(RegistryResource::Catalog)
    }

    /// `registry:NAME:*`, a registry-wide resource.
    pub fn registry(resource: RegistryResource) -> Scope {
        Scope {
            resource_type: ResourceType::Registry,
            class: None,
            name: resource.as_str().to_string(),
            actions: vec!["*".to_string()],
        }
    }

    /// `namespace:NAME:ACTION`, as the management API asks for it in a challenge.
    pub fn namespace(name: &str, action: NamespaceAction) -> Scope {
        Scope {
            resource_type: ResourceType::Namespace,
            class: None,
            name: name.to_string(),
            actions: vec![action.as_str().to_string()],
        }
    }

    /// Parses one resource scope.
    pub fn parse(s: &str) -> Result<Scope, AuthError> {
        let bad = || AuthError::InvalidScope(s.to_string());
        let (type_part, rest) = s.split_once(':').ok_or_else(bad)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(bad)?;
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        let (type_name, class) = match type_part.split_once('(') {
            Some((type_name, class)) => {
                let class = class.strip_suffix(')').ok_or_else(bad)?;
                if class.is_empty() || !is_word(class) {
                    return Err(bad());
                }
                (type_name, Some(class.to_string()))
            }
            None => (type_part, None),
        };
        if !is_word(type_name) {
            return Err(bad());
        }
        let mut parsed: Vec<String> = Vec::new();
        if !actions.is_empty() {
            for action in actions.split(',') {
                if !(action == "*" || (!action.is_empty() && is_word(action))) {
                    return Err(bad());
                }
                if !parsed.iter().any(|a| a == action) {
                    parsed.push(action.to_string());
                }
            }
        }
        Ok(Scope {
            resource_type: ResourceType::parse(type_name),
            class,
            name: name.to_string(),
            actions: parsed,
        })
    }

    /// Parses a space-separated list of scopes (the OAuth2 form's `scope`, or
    /// one `scope` query parameter that holds several).
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, AuthError> {
        s.split_ascii_whitespace().map(Scope::parse).collect()
    }

    /// Whether the scope names `action` (or `*`).
    pub fn has_action(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action || a == "*")
    }
}

/// Letters, digits, `_` and `-`: what a type, class or action may be made of.
fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.resource_type.as_str())?;
        if let Some(class) = &self.class {
            write!(f, "({class})")?;
        }
        write!(f, ":{}:{}", self.name, self.actions.join(","))
    }
}

impl FromStr for Scope {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        Scope::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        // (input, expected (type, class, name, actions) or None, rendered form)
        type Expected<'a> = Option<(&'a str, Option<&'a str>, &'a str, &'a [&'a str])>;
        let table: &[(&str, Expected)] = &[
            (
                "repository:team-a/api:pull",
                Some(("repository", None, "team-a/api", &["pull"])),
            ),
            (
                "repository:team-a/api:pull,push",
                Some(("repository", None, "team-a/api", &["pull", "push"])),
            ),
            (
                "repository:alpine:push,pull,push",
                Some(("repository", None, "alpine", &["push", "pull"])),
            ),
            (
                "repository:a/b/c:*",
                Some(("repository", None, "a/b/c", &["*"])),
            ),
            (
                "registry:catalog:*",
                Some(("registry", None, "catalog", &["*"])),
            ),
            (
                "repository(plugin):vieux/sshfs:pull",
                Some(("repository", Some("plugin"), "vieux/sshfs", &["pull"])),
            ),
            (
                "repository:localhost:5000/a/b:pull",
                Some(("repository", None, "localhost:5000/a/b", &["pull"])),
            ),
            (
                "repository:team-a/api:",
                Some(("repository", None, "team-a/api", &[])),
            ),
            (
                "helm:chart/x:fetch",
                Some(("helm", None, "chart/x", &["fetch"])),
            ),
            (
                "repository:Team/API:pull",
                Some(("repository", None, "Team/API", &["pull"])),
            ),
            ("repository", None),
            ("repository:team-a", None),
            ("repository::pull", None),
            (":team-a:pull", None),
            ("repository(:team-a:pull", None),
            ("repository():team-a:pull", None),
            ("repository:team-a:pull,,push", None),
            ("repository:team-a:pu ll", None),
            ("repo sitory:team-a:pull", None),
            ("", None),
        ];
        for (input, expected) in table {
            let parsed = Scope::parse(input);
            match expected {
                None => assert!(
                    parsed.is_err(),
                    "{input:?} should be refused, got {parsed:?}"
                ),
                Some((type_name, class, name, actions)) => {
                    let scope = parsed.unwrap_or_else(|e| panic!("{input:?}: {e}"));
                    assert_eq!(scope.resource_type.as_str(), *type_name, "{input}");
                    assert_eq!(scope.class.as_deref(), *class, "{input}");
                    assert_eq!(scope.name, *name, "{input}");
                    assert_eq!(scope.actions, *actions, "{input}");
                    if !input.contains("push,pull,push") {
                        assert_eq!(scope.to_string(), *input, "round trip");
                    }
                }
            }
        }
    }

    #[test]
    fn known_and_unknown_types() {
        assert_eq!(
            Scope::parse("repository:a:pull").unwrap().resource_type,
            ResourceType::Repository
        );
        assert_eq!(
            Scope::catalog(),
            Scope::parse("registry:catalog:*").unwrap()
        );
        assert_eq!(Scope::catalog().to_string(), "registry:catalog:*");
        assert_eq!(
            Scope::parse("helm:x:pull").unwrap().resource_type,
            ResourceType::Other("helm".to_string())
        );
        assert_eq!(
            Scope::parse("namespace:team-a:manage_members").unwrap(),
            Scope::namespace("team-a", NamespaceAction::Action(Action::ManageMembers))
        );
        assert_eq!(
            Scope::registry(RegistryResource::Users).to_string(),
            "registry:users:*"
        );
        for resource in RegistryResource::ALL {
            assert_eq!(RegistryResource::parse(resource.as_str()), Some(resource));
        }
        assert_eq!(RegistryResource::parse("blobs"), None);
    }

    #[test]
    fn namespace_actions_expand() {
        assert_eq!(NamespaceAction::expand("*"), NamespaceAction::ALL);
        assert_eq!(
            NamespaceAction::expand("manage_settings"),
            [NamespaceAction::Action(Action::ManageSettings)]
        );
        assert_eq!(NamespaceAction::expand("create"), [NamespaceAction::Create]);
        assert!(NamespaceAction::expand("manage").is_empty());
        assert!(NamespaceAction::expand("").is_empty());
    }

    #[test]
    fn lists_and_actions() {
        let scopes = Scope::parse_list(" repository:a/b:pull  repository:c:push,pull ").unwrap();
        assert_eq!(scopes.len(), 2);
        assert!(scopes[1].has_action("pull"));
        assert!(!scopes[0].has_action("push"));
        assert!(Scope::catalog().has_action("anything"));
        assert!(Scope::parse_list("repository:a:pull bogus").is_err());
        assert_eq!(Scope::parse_list("").unwrap(), vec![]);
        assert_eq!(
            Scope::repository("a/b", &["pull", "push"]).to_string(),
            "repository:a/b:pull,push"
        );
    }
}
