//! The client side of the `berth` binary: what the client commands (`berth
//! login`, `berth namespace list`, …) share to talk to a running registry
//! over HTTP, as any client would. The commands themselves are in
//! `commands/` beside the server's.
//!
//! - `host`: a registry address typed by the user, parsed (HTTPS unless
//!   `http://` or loopback).
//! - `config`: the per-user file of logins (refresh tokens, never
//!   passwords), mode 0600.
//! - `session`: the token exchange and management API calls.
//! - `output`: tables, JSON and `-q`.
//! - `docker_config`: docker's credential format, for Kubernetes pull
//!   secrets and `berth login --docker`.
//! - `error`: `ClientError`, each message naming cause and fix, and the
//!   exit status.
//!
//! Nothing here runs for the server commands, so `berth serve` starts and
//! idles exactly as before.

pub mod config;
pub mod docker_config;
pub mod error;
pub mod host;
pub mod output;
pub mod reference;
pub mod session;

use std::path::PathBuf;

use berth_auth::Secret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use self::config::{config_path, ClientConfig};
use self::error::ClientError;
use self::host::RegistryAddr;
use self::session::{Http, Session};
use crate::config::Environment;

/// The configuration file and what it holds.
pub struct Profile {
    pub path: PathBuf,
    pub config: ClientConfig,
}

impl Profile {
    pub fn load(env: &Environment) -> Result<Profile, ClientError> {
        let path = config_path(env)?;
        let config = ClientConfig::load(&path)?;
        Ok(Profile { path, config })
    }

    pub fn save(&self) -> Result<(), ClientError> {
        self.config.save(&self.path)
    }

    /// The registry a command talks to: `--registry HOST`, else the default.
    pub fn registry(&self, given: Option<&str>) -> Result<RegistryAddr, ClientError> {
        match given {
            Some(host) => RegistryAddr::parse(host),
            None => {
                let key = self
                    .config
                    .default
                    .as_deref()
                    .ok_or(ClientError::NoRegistry)?;
                match self.config.registries.get(key) {
                    Some(login) => RegistryAddr::parse(&login.url),
                    None => RegistryAddr::parse(key),
                }
            }
        }
    }

    /// A session with the registry a command names (or the default), from
    /// its stored login.
    pub fn session(&self, given: Option<&str>) -> Result<Session, ClientError> {
        let addr = self.registry(given)?;
        let login =
            self.config
                .registries
                .get(&addr.key)
                .ok_or_else(|| ClientError::NotLoggedIn {
                    host: addr.key.clone(),
                })?;
        // The scheme chosen at login stands (`http://` given then).
        let addr = RegistryAddr {
            url: RegistryAddr::parse(&login.url)?.url,
            ..addr
        };
        Ok(Session::new(
            Http::new(addr)?,
            Secret::new(login.refresh_token.clone()),
        ))
    }
}

// The management API's resources as the client prints them. Their JSON is
// the stable `-o json` schema of docs/cli.md: fields are added, never
// renamed or removed.

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    pub visibility: String,
    /// The caller's role in it, if a member.
    pub role: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Member {
    pub user: String,
    pub role: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub admin: bool,
    /// Absent from registries older than the user-disabling change.
    #[serde(default)]
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Token {
    pub name: String,
    pub scopes: Vec<String>,
    pub created_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A token just created: its secret, shown once.
#[derive(Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    pub name: String,
    pub token: String,
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// A platform of an image or of an index's child.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Platform {
    /// `linux/arm64/v8`.
    pub fn name(&self) -> String {
        match &self.variant {
            Some(variant) => format!("{}/{}/{variant}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// An image in a listing (`GET /api/v1/repositories/R/images`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Image {
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub platforms: Vec<Platform>,
    /// As the image configuration says (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub pushed_at: OffsetDateTime,
    pub size: u64,
    pub manifest_size: u64,
    /// Absent from servers older than pull statistics, read as 0.
    #[serde(default)]
    pub pull_count: u64,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_pulled: Option<OffsetDateTime>,
}

/// A repository in a listing (`GET /api/v1/repositories`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Repository {
    pub name: String,
}

#[derive(Deserialize)]
pub struct NamespaceList {
    pub namespaces: Vec<Namespace>,
    /// Absent from registries before namespace paging: all in one page.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct MemberList {
    pub members: Vec<Member>,
}

#[derive(Deserialize)]
pub struct UserList {
    pub users: Vec<User>,
}

#[derive(Deserialize)]
pub struct TokenList {
    pub tokens: Vec<Token>,
}
