//! The client's configuration file: the registries the user logged in to,
//! each with its URL, user name and **refresh token** (never the password),
//! and the default registry. It lives at `$XDG_CONFIG_HOME/berth/config.json`
//! (else `~/.config/berth/config.json`), is written whole to a temporary
//! file and renamed over the old one (so a crash leaves the old or the new
//! file, never half of one), and is mode 0600 in a 0700 directory because
//! a refresh token logs its holder in for 90 days.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::ClientError;
use crate::config::Environment;
use crate::files::{private_directory, FILE_MODE};

/// The file's contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// The `host[:port]` key of the registry commands use when no
    /// `--registry` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// The registries logged in to, by `host[:port]`.
    #[serde(default)]
    pub registries: BTreeMap<String, Login>,
}

/// One registry logged in to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// The base URL (scheme decided at login).
    pub url: String,
    pub user: String,
    /// The refresh token from `POST /auth/token` (`access_type=offline`).
    pub refresh_token: String,
    /// Docker/podman credential files `berth login --docker` wrote an entry
    /// to, so that `berth logout` removes it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_files: Vec<PathBuf>,
}

impl std::fmt::Debug for Login {
    // The refresh token is a credential: never printed, even in a debug line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("docker_files", &self.docker_files)
            .finish_non_exhaustive()
    }
}

/// Where the file is: `$XDG_CONFIG_HOME/berth/config.json`, else
/// `$HOME/.config/berth/config.json`.
pub fn config_path(env: &Environment) -> Result<PathBuf, ClientError> {
    let base = match (env.get("XDG_CONFIG_HOME"), env.get("HOME")) {
        (Some(xdg), _) => PathBuf::from(xdg),
        (None, Some(home)) => Path::new(home).join(".config"),
        (None, None) => {
            return Err(ClientError::Local(
                "neither XDG_CONFIG_HOME nor HOME is set, so there is no place for the login: \
                 set HOME"
                    .into(),
            ))
        }
    };
    Ok(base.join("berth").join("config.json"))
}

impl ClientConfig {
    /// Reads the file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<ClientConfig, ClientError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ClientConfig::default())
            }
            Err(e) => {
                return Err(ClientError::Local(format!(
                    "cannot read {}: {e}: check its permissions",
                    path.display()
                )))
            }
        };
        serde_json::from_str(&text).map_err(|e| {
            ClientError::Local(format!(
                "{} is not a berth configuration ({e}): fix it, or remove it and run berth login",
                path.display()
            ))
        })
    }

    /// Writes the file atomically with mode 0600, its directory 0700.
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let text = serde_json::to_string_pretty(self).expect("the configuration serializes");
        write_private(path, text.as_bytes())
    }
}

/// Writes `bytes` to `path` through a temporary file renamed over it, mode
/// 0600, creating the directory (0700) if needed. Shared by the
/// configuration and the docker/podman credential files.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let failed = |e: String| {
        ClientError::Local(format!(
            "cannot write {}: {e}: check that its directory is writable",
            path.display()
        ))
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        private_directory(dir).map_err(failed)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&temporary)?;
        // An existing temporary file keeps its mode through `open`.
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        failed(e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_found_as_xdg_says() {
        // (variables, where the file is, or None when nowhere)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            (
                &[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")],
                Some("/x/berth/config.json"),
            ),
            (&[("HOME", "/h")], Some("/h/.config/berth/config.json")),
            // An empty variable counts as unset.
            (
                &[("XDG_CONFIG_HOME", ""), ("HOME", "/h")],
                Some("/h/.config/berth/config.json"),
            ),
            (&[], None),
        ];
        for (vars, expected) in cases {
            let env = Environment::from_pairs(vars.iter().copied());
            let found = config_path(&env).ok();
            assert_eq!(found.as_deref(), expected.map(Path::new), "{vars:?}");
        }
    }

    #[test]
    fn saving_writes_0600_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth").join("config.json");
        let mut config = ClientConfig {
            default: Some("reg.example".into()),
            ..ClientConfig::default()
        };
        config.registries.insert(
            "reg.example".into(),
            Login {
                url: "https://reg.example/".into(),
                user: "alice".into(),
                refresh_token: "berth_rt_x".into(),
                docker_files: Vec::new(),
            },
        );
        config.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(ClientConfig::load(&path).unwrap(), config);
        assert!(!format!("{:?}", config).contains("berth_rt_x"));
        assert_eq!(
            ClientConfig::load(&dir.path().join("missing.json")).unwrap(),
            ClientConfig::default()
        );
    }
}
