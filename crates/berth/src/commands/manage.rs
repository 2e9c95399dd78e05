//! `berth namespace|member|token|user …`: the management API
//! (`/api/v1`) of a registry, with the login `berth login` stored. Each
//! command asks for a token with the scope it needs (the management scopes
//! of ARCHITECTURE.md); a scope it did not foresee is asked for when the
//! API names it (`client::session`).

use std::collections::BTreeSet;

use berth_auth::password::generate_password;
use berth_auth::{Expiry, Secret, TokenScope};
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::{
    ClientArgs, ClientMemberCommand, ClientNamespaceCommand, ClientTokenAdd, ClientTokenCommand,
    ClientUserCommand,
};
use crate::client::docker_config::kubernetes_secret;
use crate::client::error::ClientError;
use crate::client::output::{json_line, or_dash, Output, OutputFormat};
use crate::client::session::{segment, Session};
use crate::client::{
    CreatedToken, Member, MemberList, Namespace, NamespaceList, Profile, Token, TokenList, User,
    UserList,
};
use crate::config::Environment;

/// The session and output of a client command.
fn open(args: &ClientArgs, env: &Environment) -> Result<(Session, Output), ClientError> {
    let profile = Profile::load(env)?;
    let session = profile.session(args.registry.as_deref())?;
    Ok((
        session,
        Output::new(args.output, args.quiet, args.format.as_deref(), env)?,
    ))
}

/// Listing what a registry-wide listing shows: the catalog scope, which
/// grants seeing whatever the policy lets the caller see.
const LISTING: &str = "registry:catalog:*";

/// Namespaces asked for per page (the API's maximum), and pages read at most
/// by `berth namespace list`: a bound on the loop.
const NAMESPACE_PAGE: usize = 1000;
const NAMESPACE_PAGES: usize = 10_000;

pub fn namespace(
    args: ClientArgs,
    command: ClientNamespaceCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    let (mut session, output) = open(&args, env)?;
    match command {
        ClientNamespaceCommand::Add { name, public } => {
            let visibility = if public { "public" } else { "private" };
            let created: Namespace = session.call_as(
                Method::POST,
                "/api/v1/namespaces",
                Some(&json!({ "name": name, "visibility": visibility })),
                &[format!("namespace:{name}:create")],
                "creating namespaces",
            )?;
            output.done(
                &created,
                &format!("Created namespace {} ({visibility}).", created.name),
            );
        }
        ClientNamespaceCommand::List { limit } => {
            let limit = limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
            let mut namespaces = Vec::new();
            let mut cursor: Option<String> = None;
            // Bounded: far above any registry's namespaces at 1000 a page.
            for _ in 0..NAMESPACE_PAGES {
                let page_size = (limit - namespaces.len()).min(NAMESPACE_PAGE);
                let mut path = format!("/api/v1/namespaces?limit={page_size}");
                if let Some(cursor) = &cursor {
                    path.push_str(&format!("&cursor={}", segment(cursor)));
                }
                let page: NamespaceList = session.call_as(
                    Method::GET,
                    &path,
                    None,
                    &[LISTING.into()],
                    "listing namespaces",
                )?;
                namespaces.extend(page.namespaces);
                namespaces.truncate(limit);
                match page.next_cursor {
                    Some(next) if namespaces.len() < limit => cursor = Some(next),
                    _ => break,
                }
            }
            output.list(
                &namespaces,
                &["namespace", "visibility", "role", "created"],
                |n, o| {
                    vec![
                        n.name.clone(),
                        n.visibility.clone(),
                        or_dash(n.role.as_deref()),
                        o.ago(n.created_at),
                    ]
                },
                |n| n.name.as_str(),
            )?;
        }
        ClientNamespaceCommand::Rm { name, force } => {
            let query = if force { "?force=true" } else { "" };
            let deleted = session.call(
                Method::DELETE,
                &format!("/api/v1/namespaces/{}{query}", segment(&name)),
                None,
                &[format!("namespace:{name}:manage_settings")],
                "removing namespaces",
            )?;
            let repositories = deleted["repositories"].as_array().map_or(0, Vec::len);
            let sentence = if repositories == 1 {
                format!("Removed namespace {name} and its repository.")
            } else if repositories > 1 {
                format!("Removed namespace {name} and its {repositories} repositories.")
            } else {
                format!("Removed namespace {name}.")
            };
            output.done(
                &json!({ "name": name, "removed": true, "repositories": deleted["repositories"] }),
                &sentence,
            );
        }
    }
    Ok(())
}

pub fn member(
    args: ClientArgs,
    command: ClientMemberCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    let (mut session, output) = open(&args, env)?;
    let scope = |namespace: &str| vec![format!("namespace:{namespace}:manage_members")];
    let path = |namespace: &str| format!("/api/v1/namespaces/{}/members", segment(namespace));
    match command {
        ClientMemberCommand::Add {
            namespace,
            user,
            role,
        } => {
            let member: Member = session.call_as(
                Method::PUT,
                &format!("{}/{}", path(&namespace), segment(&user)),
                Some(&json!({ "role": role })),
                &scope(&namespace),
                "setting members",
            )?;
            output.done(
                &member,
                &format!(
                    "{} is {} of {namespace}.",
                    member.user,
                    article(&member.role)
                ),
            );
        }
        ClientMemberCommand::List { namespace } => {
            let list: MemberList = session.call_as(
                Method::GET,
                &path(&namespace),
                None,
                &scope(&namespace),
                "listing members",
            )?;
            output.list(
                &list.members,
                &["user", "role"],
                |m, _| vec![m.user.clone(), m.role.clone()],
                |m| m.user.as_str(),
            )?;
        }
        ClientMemberCommand::Rm { namespace, user } => {
            session.call(
                Method::DELETE,
                &format!("{}/{}", path(&namespace), segment(&user)),
                None,
                &scope(&namespace),
                "removing members",
            )?;
            output.done(
                &json!({ "namespace": namespace, "user": user, "removed": true }),
                &format!("{user} is no longer a member of {namespace}."),
            );
        }
    }
    Ok(())
}

/// "a reader", "an owner".
fn article(role: &str) -> String {
    if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {role}")
    } else {
        format!("a {role}")
    }
}

const TOKENS: &str = "registry:tokens:*";

pub fn token(
    args: ClientArgs,
    command: ClientTokenCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    // Check the values before anything is sent (misuse exits 2).
    if let ClientTokenCommand::Add(add) = &command {
        token_scopes(add)?;
    }
    let (mut session, output) = open(&args, env)?;
    match command {
        ClientTokenCommand::Add(add) => {
            let namespaces = token_scopes(&add)?;
            let created: CreatedToken = session.call_as(
                Method::POST,
                "/api/v1/tokens",
                Some(&json!({ "name": add.name, "scopes": add.scopes, "expires": add.expires })),
                &namespaces
                    .iter()
                    .map(|ns| format!("namespace:{ns}:manage_members"))
                    .collect::<Vec<_>>(),
                "creating access tokens",
            )?;
            let secret = Secret::new(created.token.clone());
            match (&add.k8s_secret, output.format) {
                (Some(name), _) => print!(
                    "{}",
                    kubernetes_secret(
                        name,
                        add.k8s_namespace.as_deref(),
                        &session.http.addr.key,
                        &created.name,
                        &secret
                    )
                ),
                (None, OutputFormat::Json) => print!("{}", json_line(&created)),
                (None, OutputFormat::Table) => {
                    if !output.quiet {
                        eprintln!(
                            "Created token {}; its secret is printed once, below. Log in with \
                             docker login -u {} {}",
                            created.name, created.name, session.http.addr.key
                        );
                    }
                    println!("{}", secret.expose());
                }
            }
        }
        ClientTokenCommand::List { namespace } => {
            let list: TokenList = match &namespace {
                None => session.call_as(
                    Method::GET,
                    "/api/v1/tokens",
                    None,
                    &[TOKENS.into()],
                    "listing access tokens",
                )?,
                Some(namespace) => session.call_as(
                    Method::GET,
                    &format!("/api/v1/namespaces/{}/tokens", segment(namespace)),
                    None,
                    &[format!("namespace:{namespace}:manage_members")],
                    "listing a namespace's access tokens",
                )?,
            };
            output.list(
                &list.tokens,
                &[
                    "name",
                    "scopes",
                    "state",
                    "expires",
                    "last used",
                    "created by",
                ],
                |t, o| {
                    vec![
                        t.name.clone(),
                        t.scopes.join(" "),
                        token_state(t, o).into(),
                        t.expires_at.map_or("never".into(), |at| o.ago(at)),
                        t.last_used_at.map_or("never".into(), |at| o.ago(at)),
                        or_dash(t.created_by.as_deref()),
                    ]
                },
                |t| t.name.as_str(),
            )?;
        }
        ClientTokenCommand::Rm { name } => {
            session.call(
                Method::DELETE,
                &format!("/api/v1/tokens/{}", segment(&name)),
                None,
                &[TOKENS.into()],
                "revoking access tokens",
            )?;
            output.done(
                &json!({ "name": name, "revoked": true }),
                &format!("Revoked token {name}; it no longer works."),
            );
        }
    }
    Ok(())
}

/// Checks a new token's scopes and expiry, and returns the namespaces its
/// scopes name (the caller must own each).
fn token_scopes(add: &ClientTokenAdd) -> Result<BTreeSet<String>, ClientError> {
    Expiry::parse(&add.expires).map_err(|e| {
        ClientError::Usage(format!(
            "--expires {}: {e}: use e.g. 90m, 12h, 30d, 4w or never",
            add.expires
        ))
    })?;
    let mut namespaces = BTreeSet::new();
    for scope in &add.scopes {
        TokenScope::parse(scope).map_err(|e| {
            ClientError::Usage(format!(
                "--scope {scope}: {e}: use NAMESPACE[/REPO]:pull[,push[,delete]], e.g. team-a:pull"
            ))
        })?;
        let target = scope.rsplit_once(':').map_or(scope.as_str(), |(t, _)| t);
        let namespace = target.split('/').next().unwrap_or(target);
        namespaces.insert(namespace.to_string());
    }
    Ok(namespaces)
}

fn token_state(token: &Token, output: &Output) -> &'static str {
    if token.revoked_at.is_some() {
        "revoked"
    } else if token.expires_at.is_some_and(|at| at <= output.now) {
        "expired"
    } else {
        "active"
    }
}

const USERS: &str = "registry:users:*";

/// `berth user add -o json`: the user, and the password when generated.
#[derive(Serialize)]
struct CreatedUser {
    #[serde(flatten)]
    user: User,
    /// Set only when berth generated it; shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

pub fn user(
    args: ClientArgs,
    command: ClientUserCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    let (mut session, output) = open(&args, env)?;
    match command {
        ClientUserCommand::Add {
            name,
            password_stdin,
            admin,
        } => {
            let (password, generated) = password_or_generated(password_stdin)?;
            let user: User = session.call_as(
                Method::POST,
                "/api/v1/users",
                Some(&json!({ "name": name, "password": password.expose(), "admin": admin })),
                &[USERS.into()],
                "creating users",
            )?;
            let sentence = if generated {
                format!(
                    "Created user {}; password (shown once): {}",
                    user.name,
                    password.expose()
                )
            } else {
                format!("Created user {}.", user.name)
            };
            let shown = CreatedUser {
                user,
                password: generated.then(|| password.expose().to_string()),
            };
            if output.quiet && generated && output.format == OutputFormat::Table {
                // The generated password is the output a pipe wants.
                println!("{}", password.expose());
            } else {
                output.done(&shown, &sentence);
            }
        }
        ClientUserCommand::List => {
            let list: UserList = session.call_as(
                Method::GET,
                "/api/v1/users",
                None,
                &[USERS.into()],
                "listing users",
            )?;
            output.list(
                &list.users,
                &["user", "admin", "status", "created"],
                |u, o| {
                    vec![
                        u.name.clone(),
                        if u.admin { "yes" } else { "no" }.into(),
                        if u.disabled { "disabled" } else { "active" }.into(),
                        o.ago(u.created_at),
                    ]
                },
                |u| u.name.as_str(),
            )?;
        }
        ClientUserCommand::Rm { name } => {
            session.call(
                Method::DELETE,
                &format!("/api/v1/users/{}", segment(&name)),
                None,
                &[USERS.into()],
                "removing users",
            )?;
            output.done(
                &json!({ "name": name, "removed": true }),
                &format!("Removed user {name}; namespace {name} stays."),
            );
        }
        ClientUserCommand::Disable { name } => {
            let user = update_user(&mut session, &name, json!({ "disabled": true }))?;
            output.done(
                &user,
                &format!("Disabled {name}: every credential of theirs stops working."),
            );
        }
        ClientUserCommand::Enable { name } => {
            let user = update_user(&mut session, &name, json!({ "disabled": false }))?;
            output.done(&user, &format!("Enabled {name}."));
        }
        ClientUserCommand::SetAdmin { name, admin } => {
            let user = update_user(&mut session, &name, json!({ "admin": admin }))?;
            let sentence = if admin {
                format!("{name} administers the registry.")
            } else {
                format!("{name} no longer administers the registry.")
            };
            output.done(&user, &sentence);
        }
        ClientUserCommand::SetPassword {
            name,
            password_stdin,
        } => {
            let (password, generated) = password_or_generated(password_stdin)?;
            session.call(
                Method::PUT,
                &format!("/api/v1/users/{}/password", segment(&name)),
                Some(&json!({ "password": password.expose() })),
                &[USERS.into()],
                "setting passwords",
            )?;
            let shown = json!({
                "name": name,
                "password": generated.then(|| password.expose().to_string()),
                "logins_revoked": true,
            });
            if output.quiet && generated && output.format == OutputFormat::Table {
                println!("{}", password.expose());
            } else if generated {
                output.done(
                    &shown,
                    &format!(
                        "Set the password of {name}; password (shown once): {}\n\
                         Their stored logins (refresh tokens) are revoked.",
                        password.expose()
                    ),
                );
            } else {
                output.done(
                    &shown,
                    &format!(
                        "Set the password of {name}; their stored logins (refresh tokens) are revoked."
                    ),
                );
            }
        }
    }
    Ok(())
}

/// `PATCH /api/v1/users/NAME` with one change; the user as it now is.
fn update_user(session: &mut Session, name: &str, change: Value) -> Result<User, ClientError> {
    session.call_as(
        Method::PATCH,
        &format!("/api/v1/users/{}", segment(name)),
        Some(&change),
        &[USERS.into()],
        "changing users",
    )
}

/// The password piped in with --password-stdin (one line, not empty), or a
/// generated one (then `true`: it is shown once).
fn password_or_generated(password_stdin: bool) -> Result<(Secret, bool), ClientError> {
    if password_stdin {
        Ok((super::login::read_password_line()?, false))
    } else {
        Ok((generate_password(), true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_scopes_are_checked_and_name_their_namespaces() {
        let add = |scopes: &[&str], expires: &str| ClientTokenAdd {
            name: "ci".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires: expires.into(),
            k8s_secret: None,
            k8s_namespace: None,
        };
        // (scopes, expiry, the namespaces named, or None when refused)
        type Case<'a> = (&'a [&'a str], &'a str, Option<&'a [&'a str]>);
        let cases: &[Case] = &[
            (&["team-a:pull"], "never", Some(&["team-a"])),
            (
                &["team-a/api:pull,push", "team-b:*", "team-a:pull"],
                "30d",
                Some(&["team-a", "team-b"]),
            ),
            (&["team-a"], "never", None),
            (&["Team:pull"], "never", None),
            (&["team-a:fly"], "never", None),
            (&["team-a:pull"], "soon", None),
        ];
        for (scopes, expires, expected) in cases {
            let result = token_scopes(&add(scopes, expires));
            match (result, expected) {
                (Ok(found), Some(namespaces)) => {
                    assert_eq!(
                        found.iter().map(String::as_str).collect::<Vec<_>>(),
                        *namespaces
                    )
                }
                (Err(e), None) => assert_eq!(e.exit_code(), 2, "{scopes:?}: {e}"),
                (other, _) => panic!(
                    "{scopes:?} {expires}: {:?}",
                    other.map_err(|e| e.to_string())
                ),
            }
        }
    }

    #[test]
    fn roles_read_as_english() {
        let cases = [
            ("reader", "a reader"),
            ("owner", "an owner"),
            ("writer", "a writer"),
        ];
        for (role, text) in cases {
            assert_eq!(article(role), text);
        }
    }
}
