//! `berth admin …`: user, namespace, member, token and signing-key
//! administration on the database directly (the server need not run; on
//! PostgreSQL, every node sees the change). Secrets are printed once, on
//! stdout, and never logged.

use std::io::Read;
use std::process::ExitCode;

use berth_auth::admin::{self, AdminError};
use berth_auth::jwt::DEFAULT_TOKEN_LIFETIME;
use berth_auth::keys::{retired_key_retention, KEY_RELOAD_INTERVAL};
use berth_auth::password::generate_password;
use berth_auth::{AuthStore, Expiry, MetaAuthStore, Role, Secret, TokenScope, Visibility};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::cli::{
    AdminCommand, KeysCommand, MemberCommand, NamespaceCommand, TokenCommand, UserCommand,
};
use crate::client::docker_config::kubernetes_secret;
use crate::config::{Config, Environment};
use crate::wiring;

/// Runs one admin command on a runtime of its own.
pub fn run(command: AdminCommand, env: &Environment) -> ExitCode {
    let config = command.config().clone();
    super::run_offline(&config, env, |loaded| async move {
        execute(command, &loaded.config).await
    })
}

/// Opens the auth store of the configured database, SQLite or PostgreSQL
/// (running its migrations, as `serve` would).
async fn open_store(config: &Config) -> Result<MetaAuthStore, String> {
    let databases = wiring::open_database(config).await?;
    Ok(MetaAuthStore::new(databases.auth).with_key_encryption(wiring::key_encryption_key(config)?))
}

/// The first line of standard input with `password_stdin`, else a
/// generated password (the flag says which: `true` when generated).
fn read_or_generate_password(password_stdin: bool) -> Result<(Secret, bool), String> {
    if !password_stdin {
        return Ok((generate_password(), true));
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("reading the password: {e}"))?;
    let line = text.lines().next().unwrap_or("").to_string();
    Ok((Secret::new(line), false))
}

/// `[auth] max_token_lifetime`, which `berth admin token create` obeys as
/// the API does.
fn max_token_lifetime(config: &Config) -> Result<Option<time::Duration>, String> {
    config
        .auth
        .max_token_lifetime
        .map(time::Duration::try_from)
        .transpose()
        .map_err(|e| format!("auth.max_token_lifetime: {e}"))
}

fn admin_error(e: AdminError) -> String {
    e.to_string()
}

fn time_text(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// Runs one admin command on the configured database.
async fn execute(command: AdminCommand, config: &Config) -> Result<(), String> {
    let store = open_store(config).await?;
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
                let (password, generated) = read_or_generate_password(password_stdin)?;
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
                    let state = if user.is_disabled() { "\tdisabled" } else { "" };
                    println!("{}\t{role}{state}", user.name);
                }
            }
            UserCommand::SetPassword {
                name,
                password_stdin,
                ..
            } => {
                let (password, generated) = read_or_generate_password(password_stdin)?;
                admin::set_password(&store, &name, &password, &change)
                    .await
                    .map_err(admin_error)?;
                if generated {
                    println!(
                        "set the password of {name}; password (shown once): {}",
                        password.expose()
                    );
                } else {
                    println!("set the password of {name}");
                }
                println!("{name}'s stored logins (refresh tokens) are revoked");
            }
            UserCommand::Disable { name, .. } => {
                admin::set_disabled(&store, &name, true, &change)
                    .await
                    .map_err(admin_error)?;
                println!("disabled {name}: every credential of theirs stops working");
            }
            UserCommand::Enable { name, .. } => {
                admin::set_disabled(&store, &name, false, &change)
                    .await
                    .map_err(admin_error)?;
                println!("enabled {name}");
            }
            UserCommand::Delete { name, .. } => {
                admin::delete_user(&store, &name, &change)
                    .await
                    .map_err(admin_error)?;
                println!("deleted user {name}; namespace {name} stays");
            }
            UserCommand::SetAdmin { name, admin, .. } => {
                admin::set_admin(&store, &name, admin, &change)
                    .await
                    .map_err(admin_error)?;
                if admin {
                    println!("{name} is now an administrator");
                } else {
                    println!("{name} is no longer an administrator");
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
                // The same rule as the management API: a namespace keeps
                // its last owner.
                admin::remove_member(&store, &namespace, &user, &change)
                    .await
                    .map_err(admin_error)?;
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
                let secret = admin::create_access_token(
                    &store,
                    &create.name,
                    scopes,
                    expiry,
                    None,
                    max_token_lifetime(config)?,
                    &change,
                )
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
                            .or(config.server.public_host.clone())
                            .unwrap_or_else(|| config.server.listen.to_string());
                        print!(
                            "{}",
                            kubernetes_secret(secret_name, None, &host, &create.name, &secret)
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

/// Who `berth admin` changes are made by.
fn admin_actor() -> berth_auth::Actor {
    berth_auth::Actor::system("admin")
}
