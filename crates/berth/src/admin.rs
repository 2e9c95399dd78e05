//! `berth admin …`: user, namespace, member, token and signing-key
//! administration on the database directly (the server need not run; on
//! PostgreSQL, every node sees the change). Secrets are printed once, on
//! stdout, and never logged.

use std::io::Read;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use berth_auth::admin::{self, AdminError};
use berth_auth::jwt::DEFAULT_TOKEN_LIFETIME;
use berth_auth::keys::{retired_key_retention, KEY_RELOAD_INTERVAL};
use berth_auth::password::generate_password;
use berth_auth::{AuthStore, Expiry, MetaAuthStore, Role, Secret, TokenScope, Visibility};
use clap::{Args, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::{Config, ConfigArgs};

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage namespaces.
    Namespace {
        #[command(subcommand)]
        command: NamespaceCommand,
    },
    /// Manage namespace members.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Manage access (robot) tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the keys that sign registry tokens, shared by every node.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user and their personal namespace. Without --password-stdin a
    /// password is generated and printed once.
    Create {
        name: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Make the user a system administrator.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List users.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum NamespaceCommand {
    /// Create a namespace (private unless --public).
    Create {
        name: String,
        #[arg(long, conflicts_with = "private")]
        public: bool,
        #[arg(long)]
        private: bool,
        /// Make this user the namespace's owner.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Make a namespace public or private.
    SetVisibility {
        name: String,
        #[arg(value_parser = ["public", "private"])]
        visibility: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List namespaces.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add a member (or change their role): reader, writer, maintainer or owner.
    Add {
        namespace: String,
        user: String,
        #[arg(value_parser = ["reader", "writer", "maintainer", "owner"])]
        role: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Remove a member.
    Remove {
        namespace: String,
        user: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Args, Debug)]
pub struct TokenCreate {
    /// The token's name: the user name for `docker login -u NAME`.
    #[arg(long)]
    name: String,
    /// NAMESPACE[/REPO]:pull[,push[,delete]]; repeat for several.
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// Lifetime, e.g. 90m, 12h, 30d, 4w, or never.
    #[arg(long, default_value = "never")]
    expires: String,
    /// Print a kubernetes.io/dockerconfigjson Secret of this name instead.
    #[arg(long)]
    k8s_secret: Option<String>,
    /// The registry host[:port] for the Kubernetes secret (default: the
    /// configured public_host, else the listen address).
    #[arg(long)]
    registry: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create(TokenCreate),
    /// Revoke a token; it stops working at once.
    Revoke {
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List the signing keys: the current one, and retired ones that still
    /// verify the tokens they signed.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Make a new current signing key. The old one keeps verifying until its
    /// tokens have expired; every node signs with the new one within
    /// 30 seconds.
    Rotate {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// Opens the auth store of the configured database, SQLite or PostgreSQL
/// (running its migrations, as `serve` would).
pub async fn open_store(config: &Config) -> Result<MetaAuthStore, String> {
    let (_meta, auth_meta) = crate::open_database(&config.database).await?;
    Ok(MetaAuthStore::new(auth_meta))
}

fn admin_error(e: AdminError) -> String {
    e.to_string()
}

fn config_of(command: &AdminCommand) -> &ConfigArgs {
    match command {
        AdminCommand::User { command } => match command {
            UserCommand::Create { config, .. } | UserCommand::List { config } => config,
        },
        AdminCommand::Namespace { command } => match command {
            NamespaceCommand::Create { config, .. }
            | NamespaceCommand::SetVisibility { config, .. }
            | NamespaceCommand::List { config } => config,
        },
        AdminCommand::Member { command } => match command {
            MemberCommand::Add { config, .. } | MemberCommand::Remove { config, .. } => config,
        },
        AdminCommand::Token { command } => match command {
            TokenCommand::Create(create) => &create.config,
            TokenCommand::Revoke { config, .. } | TokenCommand::List { config } => config,
        },
        AdminCommand::Keys { command } => match command {
            KeysCommand::List { config } | KeysCommand::Rotate { config } => config,
        },
    }
}

fn time_text(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// Runs one admin command.
pub async fn run(command: AdminCommand) -> Result<(), String> {
    let config = config_of(&command).load().map_err(|e| e.to_string())?;
    let store = open_store(&config).await?;
    let now = OffsetDateTime::now_utc();
    // Changes made on the database directly are the registry's own, as the
    // event stream records them.
    let change = berth_auth::change_at(&admin_actor(), now);
    match command {
        AdminCommand::User { command } => match command {
            UserCommand::Create {
                name,
                password_stdin,
                admin,
                ..
            } => {
                let (password, generated) = if password_stdin {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .map_err(|e| format!("reading the password: {e}"))?;
                    let line = text.lines().next().unwrap_or("").to_string();
                    (Secret::new(line), false)
                } else {
                    (generate_password(), true)
                };
                admin::create_user(&store, &name, &password, admin, &change)
                    .await
                    .map_err(admin_error)?;
                if generated {
                    println!(
                        "created user {name}; password (shown once): {}",
                        password.expose()
                    );
                } else {
                    println!("created user {name}");
                }
            }
            UserCommand::List { .. } => {
                for user in store.list_users().await.map_err(|e| e.to_string())? {
                    let role = if user.is_admin { "admin" } else { "user" };
                    println!("{}\t{role}", user.name);
                }
            }
        },
        AdminCommand::Namespace { command } => match command {
            NamespaceCommand::Create {
                name,
                public,
                owner,
                ..
            } => {
                let visibility = if public {
                    Visibility::Public
                } else {
                    Visibility::Private
                };
                admin::create_namespace(&store, &name, visibility, owner.as_deref(), &change)
                    .await
                    .map_err(admin_error)?;
                println!("created {} namespace {name}", visibility.as_str());
            }
            NamespaceCommand::SetVisibility {
                name, visibility, ..
            } => {
                let visibility: Visibility = visibility.parse().map_err(|e| format!("{e}"))?;
                store
                    .set_visibility(&change, &name, visibility)
                    .await
                    .map_err(|e| format!("namespace {name:?}: {e}"))?;
                println!("namespace {name} is now {}", visibility.as_str());
            }
            NamespaceCommand::List { .. } => {
                for namespace in store.list_namespaces().await.map_err(|e| e.to_string())? {
                    println!("{}\t{}", namespace.name, namespace.visibility.as_str());
                }
            }
        },
        AdminCommand::Member { command } => match command {
            MemberCommand::Add {
                namespace,
                user,
                role,
                ..
            } => {
                let role: Role = role.parse().map_err(|e| format!("{e}"))?;
                admin::set_member(&store, &namespace, &user, role, &change)
                    .await
                    .map_err(admin_error)?;
                println!("{user} is now {role} of {namespace}");
            }
            MemberCommand::Remove {
                namespace, user, ..
            } => {
                store
                    .remove_member(&change, &namespace, &user)
                    .await
                    .map_err(|e| format!("member {user:?} of {namespace:?}: {e}"))?;
                println!("{user} is no longer a member of {namespace}");
            }
        },
        AdminCommand::Token { command } => match command {
            TokenCommand::Create(create) => {
                let scopes = create
                    .scopes
                    .iter()
                    .map(|s| TokenScope::parse(s))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                let expiry = Expiry::parse(&create.expires).map_err(|e| e.to_string())?;
                let secret =
                    admin::create_access_token(&store, &create.name, scopes, expiry, None, &change)
                        .await
                        .map_err(admin_error)?;
                match &create.k8s_secret {
                    None => {
                        eprintln!(
                            "created token {}; its secret is printed once, below",
                            create.name
                        );
                        println!("{}", secret.expose());
                    }
                    Some(secret_name) => {
                        let host = create
                            .registry
                            .clone()
                            .or(config.auth.public_host.clone())
                            .unwrap_or_else(|| config.listen.to_string());
                        print!(
                            "{}",
                            kubernetes_secret(secret_name, &host, &create.name, &secret)
                        );
                    }
                }
            }
            TokenCommand::Revoke { name, .. } => {
                store
                    .revoke_access_token(&change, &name)
                    .await
                    .map_err(|e| format!("token {name:?}: {e}"))?;
                println!("revoked token {name}");
            }
            TokenCommand::List { .. } => {
                for token in store
                    .list_access_tokens()
                    .await
                    .map_err(|e| e.to_string())?
                {
                    let scopes: Vec<String> =
                        token.scopes.iter().map(ToString::to_string).collect();
                    let state = if token.revoked_at.is_some() {
                        "revoked"
                    } else if berth_auth::secret::is_expired(token.expires_at, now) {
                        "expired"
                    } else {
                        "active"
                    };
                    println!("{}\t{state}\t{}", token.name, scopes.join(" "));
                }
            }
        },
        AdminCommand::Keys { command } => match command {
            KeysCommand::List { .. } => {
                let keys = store.list_signing_keys().await.map_err(|e| e.to_string())?;
                if keys.is_empty() {
                    eprintln!(
                        "no signing keys yet: the first `berth serve --auth` on this database \
                         creates one"
                    );
                }
                for key in keys {
                    let created = time_text(key.created_at);
                    match key.retired_at {
                        None => println!("{}\tcurrent\tcreated {created}", key.kid()),
                        Some(retired) => println!(
                            "{}\tretired\tcreated {created}\tretired {}",
                            key.kid(),
                            time_text(retired)
                        ),
                    }
                }
            }
            KeysCommand::Rotate { .. } => {
                let rotation = berth_auth::keys::rotate(&store, now, DEFAULT_TOKEN_LIFETIME)
                    .await
                    .map_err(|e| format!("rotating the signing key: {e}"))?;
                println!("{} is the current signing key", rotation.current);
                if let Some(retired) = &rotation.retired {
                    println!(
                        "{retired} is retired: it signs no more tokens and verifies those it \
                         signed for {}s",
                        retired_key_retention(DEFAULT_TOKEN_LIFETIME).whole_seconds()
                    );
                }
                for dropped in &rotation.dropped {
                    println!("{dropped} is dropped: every token it signed has expired");
                }
                eprintln!(
                    "every node signs with the new key within {}s (sooner on a token it \
                     does not know)",
                    KEY_RELOAD_INTERVAL.as_secs()
                );
            }
        },
    }
    store_close(store).await;
    Ok(())
}

async fn store_close(_store: MetaAuthStore) {
    // Dropping the store closes its pools; nothing else to flush.
}

/// A `kubernetes.io/dockerconfigjson` Secret for `imagePullSecrets`.
pub fn kubernetes_secret(secret_name: &str, host: &str, user: &str, token: &Secret) -> String {
    let auth = STANDARD.encode(format!("{user}:{}", token.expose()));
    let config = serde_json::json!({
        "auths": { host: { "username": user, "password": token.expose(), "auth": auth } }
    });
    let encoded = STANDARD.encode(config.to_string());
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {secret_name}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {encoded}\n"
    )
}

/// Creates the first administrator (`admin`) when the database has no
/// administrator (users made with `berth admin` before the first start do not count):
/// with `password` when given (from `BERTH_ADMIN_PASSWORD`), else with a
/// generated one printed once to stderr.
pub async fn seed_admin(store: &dyn AuthStore, password: Option<Secret>) -> Result<(), String> {
    if has_admin(store).await? {
        return Ok(());
    }
    let (password, generated) = match password {
        Some(password) => (password, false),
        None => (generate_password(), true),
    };
    let change = berth_auth::change_at(&admin_actor(), OffsetDateTime::now_utc());
    match admin::create_user(store, "admin", &password, true, &change).await {
        Ok(()) => {}
        // Nodes sharing a database that start together race to create the
        // administrator; the ones that lose find it made by the winner.
        Err(AdminError::AlreadyExists(_)) if has_admin(store).await? => return Ok(()),
        Err(e) => return Err(format!("creating the administrator: {e}")),
    }
    if generated {
        eprintln!(
            "berth: created administrator \"admin\" with password {} (shown once; set BERTH_ADMIN_PASSWORD to choose it)",
            password.expose()
        );
    }
    tracing::info!("created the administrator account \"admin\"");
    Ok(())
}

async fn has_admin(store: &dyn AuthStore) -> Result<bool, String> {
    Ok(store
        .list_users()
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .any(|user| user.is_admin))
}

/// Who `berth admin` changes are made by.
fn admin_actor() -> berth_auth::Actor {
    berth_auth::Actor::system("admin")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_secret_holds_a_docker_config() {
        let yaml = kubernetes_secret(
            "pull",
            "registry.example:5000",
            "ci",
            &Secret::new("berth_at_x"),
        );
        assert!(yaml.contains("type: kubernetes.io/dockerconfigjson"));
        let encoded = yaml
            .lines()
            .last()
            .unwrap()
            .trim()
            .strip_prefix(".dockerconfigjson: ")
            .unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&STANDARD.decode(encoded).unwrap()).unwrap();
        let entry = &config["auths"]["registry.example:5000"];
        assert_eq!(entry["username"], "ci");
        assert_eq!(entry["auth"], STANDARD.encode("ci:berth_at_x"));
    }
}
