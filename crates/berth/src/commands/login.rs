//! `berth login`, `berth logout`, `berth registry` and `berth info`: the
//! client's logins, kept in its configuration file (`client::config`).

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use berth_auth::Secret;
use serde::Serialize;

use crate::cli::{ClientArgs, LoginArgs, PasswdArgs, RegistryCommand};
use crate::client::config::Login;
use crate::client::docker_config;
use crate::client::error::ClientError;
use crate::client::host::RegistryAddr;
use crate::client::output::{Output, OutputFormat};
use crate::client::session::{Http, Session};
use crate::client::Profile;
use crate::config::Environment;

pub fn login(args: LoginArgs, env: &Environment) -> Result<(), ClientError> {
    let mut profile = Profile::load(env)?;
    let addr = match &args.host {
        Some(host) => RegistryAddr::parse(host)?,
        None => profile.registry(None).map_err(|_| {
            ClientError::Usage(
                "no registry given and no default registry: run berth login HOST".into(),
            )
        })?,
    };
    let previous = profile.config.registries.get(&addr.key).cloned();
    let interactive = std::io::stdin().is_terminal();
    let user = match (&args.username, &previous) {
        (Some(user), _) => user.clone(),
        (None, Some(previous)) if !interactive || args.password_stdin => previous.user.clone(),
        (None, _) if interactive && !args.password_stdin => prompt_line("Username: ")?,
        (None, _) => {
            return Err(ClientError::Usage(
                "no user name: pass -u USER (the password comes from standard input)".into(),
            ))
        }
    };
    if user.is_empty() {
        return Err(ClientError::Usage(
            "the user name is empty: pass -u USER".into(),
        ));
    }
    let password = if args.password_stdin {
        read_password_line()?
    } else if interactive {
        Secret::new(rpassword::prompt_password("Password: ").map_err(|e| {
            ClientError::Local(format!(
                "cannot read the password from the terminal: {e}: use --password-stdin"
            ))
        })?)
    } else {
        return Err(ClientError::Usage(
            "no password: pass --password-stdin and write it to standard input, or run berth login in a terminal".into(),
        ));
    };
    let http = Http::new(addr.clone())?;
    let refresh_token = http.login(&user, &password)?;
    let mut docker_files = previous.map(|p| p.docker_files).unwrap_or_default();
    if args.docker {
        // A refresh token of their own, so the docker files and the berth
        // configuration are independent credentials.
        let docker_token = http.login(&user, &password)?;
        for path in credential_files(env)? {
            docker_config::store_identity_token(&path, &addr.key, &user, &docker_token)?;
            eprintln!(
                "wrote the credentials for {} to {}",
                addr.key,
                path.display()
            );
            if !docker_files.contains(&path) {
                docker_files.push(path);
            }
        }
    }
    profile.config.registries.insert(
        addr.key.clone(),
        Login {
            url: addr.url.to_string(),
            user: user.clone(),
            refresh_token: refresh_token.expose().to_string(),
            docker_files,
        },
    );
    profile.config.default = Some(addr.key.clone());
    profile.save()?;
    println!(
        "Logged in to {} as {user}; it is the default registry.",
        addr.key
    );
    Ok(())
}

/// `berth passwd`: changes the logged-in user's password through
/// `PUT /api/v1/user/password`, then logs in again with the new one, since
/// the change revoked the refresh token this login kept.
pub fn passwd(args: PasswdArgs, env: &Environment) -> Result<(), ClientError> {
    let mut profile = Profile::load(env)?;
    let addr = profile.registry(args.host.as_deref())?;
    let mut session = profile.session(Some(&addr.key))?;
    let (current, new) = if args.password_stdin {
        let current = read_password_line()?;
        let new = read_password_line()?;
        (current, new)
    } else if std::io::stdin().is_terminal() {
        let prompt = |text: &str| {
            rpassword::prompt_password(text)
                .map(Secret::new)
                .map_err(|e| {
                    ClientError::Local(format!(
                        "cannot read the password from the terminal: {e}: use --password-stdin"
                    ))
                })
        };
        let current = prompt("Current password: ")?;
        let new = prompt("New password: ")?;
        if prompt("New password again: ")? != new {
            return Err(ClientError::Usage(
                "the new passwords differ; nothing was changed".into(),
            ));
        }
        (current, new)
    } else {
        return Err(ClientError::Usage(
            "no password: pass --password-stdin and write the current and the new password to standard input, one line each, or run berth passwd in a terminal".into(),
        ));
    };
    session.call(
        reqwest::Method::PUT,
        "/api/v1/user/password",
        Some(&serde_json::json!({
            "current_password": current.expose(),
            "new_password": new.expose(),
        })),
        &["registry:account:*".to_string()],
        "changing your password",
    )?;
    let login = profile
        .config
        .registries
        .get_mut(&addr.key)
        .ok_or_else(|| ClientError::NotLoggedIn {
            host: addr.key.clone(),
        })?;
    let user = login.user.clone();
    let http = Http::new(RegistryAddr {
        url: RegistryAddr::parse(&login.url)?.url,
        ..addr.clone()
    })?;
    let refresh_token = http.login(&user, &new)?;
    login.refresh_token = refresh_token.expose().to_string();
    profile.save()?;
    println!(
        "Changed the password of {user} on {}; logged in again. Other logins (docker login, other machines) must log in again.",
        addr.key
    );
    Ok(())
}

/// The docker and podman credential files `--docker` writes: docker's
/// (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, which
/// podman, skopeo and buildah read too) and podman's own when its location
/// is known (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`),
/// so that an entry of podman's own for the host does not shadow the new one.
fn credential_files(env: &Environment) -> Result<Vec<PathBuf>, ClientError> {
    let docker =
        match (env.get("DOCKER_CONFIG"), env.get("HOME")) {
            (Some(dir), _) => Path::new(dir).join("config.json"),
            (None, Some(home)) => Path::new(home).join(".docker").join("config.json"),
            (None, None) => return Err(ClientError::Local(
                "neither DOCKER_CONFIG nor HOME is set, so docker's credentials have no place: \
                 set HOME"
                    .into(),
            )),
        };
    let mut files = vec![docker];
    if let Some(file) = env.get("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(file));
    } else if let Some(runtime) = env.get("XDG_RUNTIME_DIR") {
        files.push(Path::new(runtime).join("containers").join("auth.json"));
    }
    Ok(files)
}

fn prompt_line(prompt: &str) -> Result<String, ClientError> {
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| {
        ClientError::Local(format!("cannot read from the terminal: {e}: pass -u USER"))
    })?;
    Ok(line.trim().to_string())
}

/// One line of standard input as a password, without its line ending;
/// an empty line is refused (`--password-stdin` of every command).
pub(super) fn read_password_line() -> Result<Secret, ClientError> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| {
        ClientError::Local(format!(
            "cannot read the password from standard input: {e}: pipe it in"
        ))
    })?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(ClientError::Usage(
            "the password on standard input is empty: write it, one line, with --password-stdin"
                .into(),
        ));
    }
    Ok(Secret::new(password))
}

pub fn logout(host: Option<String>, env: &Environment) -> Result<(), ClientError> {
    let mut profile = Profile::load(env)?;
    let addr = profile.registry(host.as_deref())?;
    let login =
        profile
            .config
            .registries
            .remove(&addr.key)
            .ok_or_else(|| ClientError::NotLoggedIn {
                host: addr.key.clone(),
            })?;
    for path in &login.docker_files {
        if docker_config::remove_entry(path, &addr.key)? {
            eprintln!(
                "removed the credentials for {} from {}",
                addr.key,
                path.display()
            );
        }
    }
    profile.save()?;
    println!("Logged out of {}.", addr.key);
    Ok(())
}

pub fn registry(command: Option<RegistryCommand>, env: &Environment) -> Result<(), ClientError> {
    let mut profile = Profile::load(env)?;
    match command {
        None => {
            let key = profile.config.default.as_deref().ok_or_else(|| {
                ClientError::Local(
                    "no default registry: run berth login HOST, or berth registry set HOST".into(),
                )
            })?;
            println!("{key}");
        }
        Some(RegistryCommand::Set { host }) => {
            let addr = RegistryAddr::parse(&host)?;
            if !profile.config.registries.contains_key(&addr.key) {
                eprintln!(
                    "not logged in to {0} yet: run berth login {0} before other commands",
                    addr.key
                );
            }
            profile.config.default = Some(addr.key.clone());
            profile.save()?;
            println!("{} is the default registry.", addr.key);
        }
    }
    Ok(())
}

/// `berth info -o json`: one entry per registry logged in to.
#[derive(Serialize)]
struct Info {
    config_file: String,
    default: Option<String>,
    registries: Vec<RegistryInfo>,
}

#[derive(Serialize)]
struct RegistryInfo {
    registry: String,
    url: String,
    user: String,
    default: bool,
    /// `ok`, or the error the login check met.
    status: String,
}

pub fn info(args: ClientArgs, env: &Environment) -> Result<(), ClientError> {
    let profile = Profile::load(env)?;
    let only = args
        .registry
        .as_deref()
        .map(RegistryAddr::parse)
        .transpose()?;
    let mut registries = Vec::new();
    for (key, login) in &profile.config.registries {
        if only.as_ref().is_some_and(|addr| &addr.key != key) {
            continue;
        }
        let status = match check(&profile, key) {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        registries.push(RegistryInfo {
            registry: key.clone(),
            url: login.url.clone(),
            user: login.user.clone(),
            default: profile.config.default.as_deref() == Some(key),
            status,
        });
    }
    if let Some(addr) = &only {
        if registries.is_empty() {
            return Err(ClientError::NotLoggedIn {
                host: addr.key.clone(),
            });
        }
    }
    let output = Output::new(args.output, args.quiet, args.format.as_deref(), env)?;
    let info = Info {
        config_file: profile.path.display().to_string(),
        default: profile.config.default.clone(),
        registries,
    };
    if output.format == OutputFormat::Json {
        print!("{}", crate::client::output::json_line(&info));
        return Ok(());
    }
    if !output.quiet {
        println!("Configuration: {}", info.config_file);
        if info.registries.is_empty() {
            println!("Not logged in to any registry: run berth login HOST.");
            return Ok(());
        }
    }
    output.list(
        &info.registries,
        &["registry", "user", "default", "url", "status"],
        |r, _| {
            vec![
                r.registry.clone(),
                r.user.clone(),
                if r.default { "*".into() } else { String::new() },
                r.url.clone(),
                r.status.clone(),
            ]
        },
        |r| r.registry.as_str(),
    )?;
    Ok(())
}

/// Whether the login to `key` still works (its refresh token is accepted).
fn check(profile: &Profile, key: &str) -> Result<(), ClientError> {
    let mut session: Session = profile.session(Some(key))?;
    session.check()
}
