//! Configuration: one typed struct, layered from a TOML file, then `BERTH_*`
//! environment variables, then command-line flags (each overriding the last).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

/// The effective configuration of a Berth process.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Address the HTTP server binds. Loopback by default, so a first start
    /// never exposes an unauthenticated registry to the network.
    pub listen: SocketAddr,
    /// Where blobs (`blobs/`, `uploads/`) and the SQLite database (`berth.db`) live.
    pub data_dir: PathBuf,
    /// How long an upload session may stay idle before it and its data are purged.
    pub upload_ttl: Duration,
    /// How often the purge of expired upload sessions runs.
    pub upload_purge_interval: Duration,
    /// How often the server runs a garbage-collection pass. Passes read only
    /// candidates, so a frequent schedule is cheap.
    pub gc_interval: Duration,
    /// How long an unreferenced blob or link is kept before garbage
    /// collection removes it; a re-push or new manifest within it revives it.
    pub gc_grace_period: Duration,
    /// How often a pass also walks the blob store for objects the metadata
    /// does not know (left by crashes). This reads every stored object, so it
    /// runs rarely.
    pub gc_orphan_sweep_interval: Duration,
    /// Whether garbage collection also deletes untagged manifests (ones no
    /// index lists and that are not referrers of a stored manifest). Off by
    /// default, because untagged manifests are often pulled by digest.
    pub gc_untagged: bool,
    /// With `gc_untagged`, how old an untagged manifest must be.
    pub gc_untagged_age: Duration,
    /// Whether deleting a manifest deletes its referrers (signatures, SBOMs)
    /// with it, recursively.
    pub delete_referrers: bool,
    /// How many candidates a garbage-collection batch handles: bounds the
    /// pass's memory and the length of each metadata transaction.
    pub gc_batch_size: usize,
    /// How long events (the record of every change, read by `berth events
    /// tail` and the consumers) are kept before a background job deletes
    /// them. A consumer stopped for longer misses what was deleted.
    pub event_retention: Duration,
    /// The tracing filter, e.g. `info` or `berth=debug,tower_http=info`.
    pub log: String,
    /// `text` for people, `json` for log pipelines.
    pub log_format: LogFormat,
    /// Where metadata lives: SQLite in the data directory by default, or a
    /// shared PostgreSQL database for several nodes.
    pub database: DatabaseConfig,
    /// Where blob bytes live: the data directory by default, or an
    /// S3-compatible bucket shared by several nodes.
    pub storage: StorageConfig,
    /// Whether blob GETs answer with a redirect to a short-lived presigned URL
    /// of the object store (S3 only), so bytes bypass the registry nodes.
    pub redirect: bool,
    /// How long manifest and blob lookups may be served from a node's memory.
    /// Bounds how long a change made through another node can go unseen here.
    pub cache_ttl: Duration,
    /// Access control. Off by default so a first local start behaves like a
    /// plain registry; anything reachable by others should turn it on.
    pub auth: AuthConfig,
    /// Serve HTTPS with this certificate chain (PEM); requires `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

/// The blob storage backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConfig {
    /// `fs:///path` (default: the data directory).
    Fs(PathBuf),
    /// `s3://bucket/prefix`, with the connection settings beside it.
    S3(S3Settings),
}

/// Connection settings of an S3-compatible store.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key never reaches logs or `config check` output.
        f.debug_struct("S3Settings")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl StorageConfig {
    /// A one-line description without secrets.
    pub fn describe(&self) -> String {
        match self {
            StorageConfig::Fs(path) => format!("fs://{}", path.display()),
            StorageConfig::S3(s) => format!(
                "{} (endpoint {}, path-style {})",
                s.url,
                s.endpoint.as_deref().unwrap_or("AWS"),
                s.path_style
            ),
        }
    }
}

/// The metadata backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// `sqlite:///path/to/berth.db` (default: `<data_dir>/berth.db`).
    Sqlite(PathBuf),
    /// `postgres://user:password@host:port/db` (any URL sqlx accepts).
    Postgres(String),
}

impl DatabaseConfig {
    fn parse(value: &str) -> Result<DatabaseConfig, ConfigError> {
        if let Some(path) = value.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "database",
                    message: "sqlite:// needs a path, e.g. sqlite:///var/lib/berth/berth.db".into(),
                });
            }
            Ok(DatabaseConfig::Sqlite(PathBuf::from(path)))
        } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Ok(DatabaseConfig::Postgres(value.to_string()))
        } else {
            Err(ConfigError::Invalid {
                key: "database",
                message: "expected sqlite:///PATH or postgres://…".into(),
            })
        }
    }

    /// The URL with any password replaced, for logs and `config check`.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseConfig::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseConfig::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    let userinfo = &url[scheme + 3..at];
                    let user = userinfo.split(':').next().unwrap_or("");
                    format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
                }
                _ => url.clone(),
            },
        }
    }
}

/// Access-control settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthConfig {
    /// Whether access control is on.
    pub enabled: bool,
    /// The token endpoint URL put in challenges. Unset: derived from each
    /// request's `Host` (`http(s)://HOST/auth/token`), which is right unless a
    /// proxy rewrites the host.
    pub realm: Option<String>,
    /// The `service` of challenges and the `aud` of registry tokens.
    pub service: String,
    /// The `iss` of registry tokens.
    pub issuer: String,
    /// Whether any user may create a namespace by pushing to it (personal
    /// namespaces are always allowed). Off: namespaces are handed out.
    pub users_may_create_namespaces: bool,
    /// The host (and port) clients use for this registry, for the
    /// Kubernetes secrets `berth admin token create --k8s-secret` prints.
    /// Unset: the listen address.
    pub public_host: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            realm: None,
            service: "berth".to_string(),
            issuer: "berth".to_string(),
            users_may_create_namespaces: false,
            public_host: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir: PathBuf::from("./berth-data"),
            upload_ttl: Duration::from_secs(24 * 3600),
            upload_purge_interval: Duration::from_secs(600),
            gc_interval: Duration::from_secs(3600),
            gc_grace_period: Duration::from_secs(3600),
            gc_orphan_sweep_interval: Duration::from_secs(7 * 24 * 3600),
            gc_untagged: false,
            gc_untagged_age: Duration::from_secs(24 * 3600),
            delete_referrers: true,
            gc_batch_size: 500,
            event_retention: Duration::from_secs(7 * 24 * 3600),
            log: "info".to_string(),
            log_format: LogFormat::Text,
            database: DatabaseConfig::Sqlite(PathBuf::from("./berth-data/berth.db")),
            storage: StorageConfig::Fs(PathBuf::from("./berth-data")),
            redirect: false,
            cache_ttl: Duration::from_secs(1),
            auth: AuthConfig::default(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// The TOML file's shape: every key optional, unknown keys refused so a typo
/// is reported rather than silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    upload_ttl: Option<String>,
    upload_purge_interval: Option<String>,
    gc_interval: Option<String>,
    gc_grace_period: Option<String>,
    gc_orphan_sweep_interval: Option<String>,
    gc_untagged: Option<bool>,
    gc_untagged_age: Option<String>,
    delete_referrers: Option<bool>,
    gc_batch_size: Option<usize>,
    event_retention: Option<String>,
    log: Option<String>,
    log_format: Option<LogFormat>,
    database: Option<String>,
    cache_ttl: Option<String>,
    storage: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_path_style: Option<bool>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    redirect: Option<bool>,
    auth: Option<bool>,
    auth_realm: Option<String>,
    auth_service: Option<String>,
    auth_issuer: Option<String>,
    users_may_create_namespaces: Option<bool>,
    public_host: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

/// Flags shared by every subcommand that reads the configuration. Each also
/// reads its `BERTH_*` environment variable (clap does that layering).
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// A TOML configuration file.
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:5000 or 0.0.0.0:5000.
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<String>,
    /// Directory for blobs and the metadata database.
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Idle time after which an upload session expires, e.g. 24h or 90m.
    #[arg(long, env = "BERTH_UPLOAD_TTL")]
    pub upload_ttl: Option<String>,
    /// How often expired upload sessions are purged, e.g. 10m.
    #[arg(long, env = "BERTH_UPLOAD_PURGE_INTERVAL")]
    pub upload_purge_interval: Option<String>,
    /// How often garbage collection runs in the server, e.g. 1h.
    #[arg(long, env = "BERTH_GC_INTERVAL")]
    pub gc_interval: Option<String>,
    /// How long unreferenced blobs are kept before collection, e.g. 1h.
    #[arg(long, env = "BERTH_GC_GRACE_PERIOD")]
    pub gc_grace_period: Option<String>,
    /// How often collection also sweeps storage for unknown objects, e.g. 7d.
    #[arg(long, env = "BERTH_GC_ORPHAN_SWEEP_INTERVAL")]
    pub gc_orphan_sweep_interval: Option<String>,
    /// Also collect untagged manifests (true or false).
    #[arg(long, env = "BERTH_GC_UNTAGGED")]
    pub gc_untagged: Option<bool>,
    /// Age after which untagged manifests are collected, e.g. 24h.
    #[arg(long, env = "BERTH_GC_UNTAGGED_AGE")]
    pub gc_untagged_age: Option<String>,
    /// Delete referrers with their subject manifest (true or false).
    #[arg(long, env = "BERTH_DELETE_REFERRERS")]
    pub delete_referrers: Option<bool>,
    /// Candidates per garbage-collection batch, e.g. 500.
    #[arg(long, env = "BERTH_GC_BATCH_SIZE")]
    pub gc_batch_size: Option<usize>,
    /// How long events are kept, e.g. 7d.
    #[arg(long, env = "BERTH_EVENT_RETENTION")]
    pub event_retention: Option<String>,
    /// Log filter (tracing's EnvFilter syntax), e.g. info or debug.
    #[arg(long, env = "BERTH_LOG")]
    pub log: Option<String>,
    /// Log format.
    #[arg(long, env = "BERTH_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Metadata database: sqlite:///PATH (default: DATA_DIR/berth.db) or postgres://…
    #[arg(long, env = "BERTH_DATABASE")]
    pub database: Option<String>,
    /// How long a node may serve manifest and blob lookups from memory, e.g. 1s; 0s disables.
    #[arg(long, env = "BERTH_CACHE_TTL")]
    pub cache_ttl: Option<String>,
    /// Blob storage: fs:///PATH (default: DATA_DIR) or s3://BUCKET/PREFIX.
    #[arg(long, env = "BERTH_STORAGE")]
    pub storage: Option<String>,
    /// S3 endpoint URL for stores other than AWS, e.g. http://127.0.0.1:8333.
    #[arg(long, env = "BERTH_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default us-east-1).
    #[arg(long, env = "BERTH_S3_REGION")]
    pub s3_region: Option<String>,
    /// Address buckets as ENDPOINT/BUCKET (most self-hosted stores need this).
    #[arg(long, env = "BERTH_S3_PATH_STYLE")]
    pub s3_path_style: Option<bool>,
    /// S3 access key id (default: the usual AWS_* variables).
    #[arg(long, env = "BERTH_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key (default: the usual AWS_* variables).
    #[arg(long, env = "BERTH_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Answer blob GETs with a redirect to a presigned object-store URL.
    #[arg(long, env = "BERTH_REDIRECT")]
    pub redirect: Option<bool>,
    /// Turn access control on (users, namespaces, tokens).
    #[arg(long, env = "BERTH_AUTH")]
    pub auth: bool,
    /// Token endpoint URL for challenges (default: derived from the request's Host).
    #[arg(long, env = "BERTH_AUTH_REALM")]
    pub auth_realm: Option<String>,
    /// Token service name (challenge `service`, token audience); default berth.
    #[arg(long, env = "BERTH_AUTH_SERVICE")]
    pub auth_service: Option<String>,
    /// Token issuer; default berth.
    #[arg(long, env = "BERTH_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// Let any user create namespaces by pushing to them.
    #[arg(long, env = "BERTH_USERS_MAY_CREATE_NAMESPACES")]
    pub users_may_create_namespaces: bool,
    /// The host[:port] clients use for this registry (for printed Kubernetes secrets).
    #[arg(long, env = "BERTH_PUBLIC_HOST")]
    pub public_host: Option<String>,
    /// TLS certificate chain (PEM); serves HTTPS together with --tls-key.
    #[arg(long, env = "BERTH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "BERTH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl ConfigArgs {
    /// Builds the effective configuration: defaults, then the file, then the
    /// environment and flags (which clap has already merged).
    pub fn load(&self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut config = Config::default();
        if let Some(v) = self.listen.as_deref().or(file.listen.as_deref()) {
            config.listen = parse_listen(v)?;
        }
        if let Some(v) = self.data_dir.clone().or(file.data_dir) {
            config.data_dir = v;
        }
        if let Some(v) = self.upload_ttl.as_deref().or(file.upload_ttl.as_deref()) {
            config.upload_ttl = parse_duration("upload_ttl", v)?;
        }
        if let Some(v) = self
            .upload_purge_interval
            .as_deref()
            .or(file.upload_purge_interval.as_deref())
        {
            config.upload_purge_interval = parse_duration("upload_purge_interval", v)?;
        }
        for (key, flag, value, target) in [
            (
                "gc_interval",
                &self.gc_interval,
                &file.gc_interval,
                &mut config.gc_interval,
            ),
            (
                "gc_grace_period",
                &self.gc_grace_period,
                &file.gc_grace_period,
                &mut config.gc_grace_period,
            ),
            (
                "gc_orphan_sweep_interval",
                &self.gc_orphan_sweep_interval,
                &file.gc_orphan_sweep_interval,
                &mut config.gc_orphan_sweep_interval,
            ),
            (
                "gc_untagged_age",
                &self.gc_untagged_age,
                &file.gc_untagged_age,
                &mut config.gc_untagged_age,
            ),
            (
                "event_retention",
                &self.event_retention,
                &file.event_retention,
                &mut config.event_retention,
            ),
        ] {
            if let Some(v) = flag.as_deref().or(value.as_deref()) {
                *target = parse_duration(key, v)?;
            }
        }
        if let Some(v) = self.gc_untagged.or(file.gc_untagged) {
            config.gc_untagged = v;
        }
        if let Some(v) = self.delete_referrers.or(file.delete_referrers) {
            config.delete_referrers = v;
        }
        if let Some(v) = self.gc_batch_size.or(file.gc_batch_size) {
            config.gc_batch_size = v;
        }
        if let Some(v) = self.log.clone().or(file.log) {
            config.log = v;
        }
        if let Some(v) = self.log_format.or(file.log_format) {
            config.log_format = v;
        }
        // The default database follows the data directory.
        config.database = DatabaseConfig::Sqlite(config.data_dir.join("berth.db"));
        if let Some(v) = self.database.as_deref().or(file.database.as_deref()) {
            config.database = DatabaseConfig::parse(v)?;
        }
        if let Some(v) = self.cache_ttl.as_deref().or(file.cache_ttl.as_deref()) {
            config.cache_ttl = parse_duration("cache_ttl", v)?;
        }
        config.storage = StorageConfig::Fs(config.data_dir.clone());
        if let Some(v) = self.storage.as_deref().or(file.storage.as_deref()) {
            config.storage = if let Some(path) = v.strip_prefix("fs://") {
                if path.is_empty() {
                    return Err(ConfigError::Invalid {
                        key: "storage",
                        message: "fs:// needs a path, e.g. fs:///var/lib/berth".into(),
                    });
                }
                StorageConfig::Fs(PathBuf::from(path))
            } else if v.starts_with("s3://") {
                StorageConfig::S3(S3Settings {
                    url: v.to_string(),
                    endpoint: self.s3_endpoint.clone().or(file.s3_endpoint),
                    region: self.s3_region.clone().or(file.s3_region),
                    path_style: self.s3_path_style.or(file.s3_path_style).unwrap_or(false),
                    access_key_id: self.s3_access_key_id.clone().or(file.s3_access_key_id),
                    secret_access_key: self
                        .s3_secret_access_key
                        .clone()
                        .or(file.s3_secret_access_key),
                })
            } else {
                return Err(ConfigError::Invalid {
                    key: "storage",
                    message: "expected fs:///PATH or s3://BUCKET/PREFIX".into(),
                });
            };
        }
        if let Some(v) = self.redirect.or(file.redirect) {
            config.redirect = v;
        }
        if config.redirect && !matches!(config.storage, StorageConfig::S3(_)) {
            return Err(ConfigError::Invalid {
                key: "redirect",
                message: "redirects need s3:// storage".into(),
            });
        }
        // Boolean flags can only turn a setting on, so the file's `true`
        // stands unless the flag is given too.
        config.auth.enabled = self.auth || file.auth.unwrap_or(false);
        config.auth.users_may_create_namespaces =
            self.users_may_create_namespaces || file.users_may_create_namespaces.unwrap_or(false);
        config.auth.realm = self.auth_realm.clone().or(file.auth_realm);
        if let Some(v) = self.auth_service.clone().or(file.auth_service) {
            config.auth.service = v;
        }
        if let Some(v) = self.auth_issuer.clone().or(file.auth_issuer) {
            config.auth.issuer = v;
        }
        config.auth.public_host = self.public_host.clone().or(file.public_host);
        config.tls_cert = self.tls_cert.clone().or(file.tls_cert);
        config.tls_key = self.tls_key.clone().or(file.tls_key);
        config.validate()?;
        Ok(config)
    }
}

impl Config {
    /// A human-readable listing of the effective settings, secrets redacted.
    pub fn summary(&self) -> String {
        format!(
            "listen = {}\ndata_dir = {}\nstorage = {}\nredirect = {}\ndatabase = {}\nupload_ttl = {}\nupload_purge_interval = {}\ncache_ttl = {}\nevent_retention = {}\nlog = {}\nlog_format = {:?}\nauth = {}\nauth_service = {}\nauth_issuer = {}\nauth_realm = {}\nusers_may_create_namespaces = {}\ntls = {}\n",
            self.listen,
            self.data_dir.display(),
            self.storage.describe(),
            self.redirect,
            self.database.redacted(),
            humantime::format_duration(self.upload_ttl),
            humantime::format_duration(self.upload_purge_interval),
            humantime::format_duration(self.cache_ttl),
            humantime::format_duration(self.event_retention),
            self.log,
            self.log_format,
            self.auth.enabled,
            self.auth.service,
            self.auth.issuer,
            self.auth.realm.as_deref().unwrap_or("(from the request's Host)"),
            self.auth.users_may_create_namespaces,
            self.tls_cert.is_some(),
        )
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.upload_ttl < Duration::from_secs(60) {
            return Err(ConfigError::Invalid {
                key: "upload_ttl",
                message: "must be at least 1m".into(),
            });
        }
        if self.upload_purge_interval < Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                key: "upload_purge_interval",
                message: "must be at least 1s".into(),
            });
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                key: "tls_cert",
                message: "tls_cert and tls_key must be given together".into(),
            });
        }
        if self.auth.service.is_empty() || self.auth.issuer.is_empty() {
            return Err(ConfigError::Invalid {
                key: "auth_service",
                message: "the token service and issuer must not be empty".into(),
            });
        }
        for (key, value) in [
            ("gc_interval", self.gc_interval),
            ("gc_grace_period", self.gc_grace_period),
            ("gc_orphan_sweep_interval", self.gc_orphan_sweep_interval),
            ("gc_untagged_age", self.gc_untagged_age),
            ("event_retention", self.event_retention),
        ] {
            if value < Duration::from_secs(1) {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1s".into(),
                });
            }
        }
        if self.gc_batch_size == 0 {
            return Err(ConfigError::Invalid {
                key: "gc_batch_size",
                message: "must be at least 1".into(),
            });
        }
        tracing_subscriber::EnvFilter::try_new(&self.log).map_err(|e| ConfigError::Invalid {
            key: "log",
            message: e.to_string(),
        })?;
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string(),
    })
}

fn parse_listen(value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
            key: "listen",
            message: format!("{value:?}: {e}"),
        })
}

fn parse_duration(key: &'static str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value).map_err(|e| ConfigError::Invalid {
        key,
        message: format!("{value:?}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let config = ConfigArgs::default().load().unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(
            config.database,
            DatabaseConfig::Sqlite(PathBuf::from("./berth-data/berth.db"))
        );
        assert_eq!(config.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(config.data_dir, PathBuf::from("./berth-data"));
        assert_eq!(config.upload_ttl, Duration::from_secs(86400));
        assert_eq!(config.gc_grace_period, Duration::from_secs(3600));
        assert!(!config.gc_untagged);
        assert!(config.delete_referrers);
    }

    #[test]
    fn gc_settings_layer_like_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "gc_interval = \"10m\"\ngc_grace_period = \"2h\"\ngc_untagged = true\n\
             gc_untagged_age = \"3d\"\ndelete_referrers = false\n\
             gc_orphan_sweep_interval = \"1d\"\n",
        )
        .unwrap();
        let config = ConfigArgs {
            config: Some(path.clone()),
            ..Default::default()
        }
        .load()
        .unwrap();
        assert_eq!(config.gc_interval, Duration::from_secs(600));
        assert_eq!(config.gc_grace_period, Duration::from_secs(7200));
        assert!(config.gc_untagged);
        assert_eq!(config.gc_untagged_age, Duration::from_secs(3 * 86400));
        assert!(!config.delete_referrers);
        assert_eq!(config.gc_orphan_sweep_interval, Duration::from_secs(86400));
        let config = ConfigArgs {
            config: Some(path),
            gc_grace_period: Some("5s".into()),
            delete_referrers: Some(true),
            ..Default::default()
        }
        .load()
        .unwrap();
        assert_eq!(config.gc_grace_period, Duration::from_secs(5));
        assert!(config.delete_referrers);
    }

    #[test]
    fn layering_file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:6000\"\ndata_dir = \"/srv/berth\"\nupload_ttl = \"2h\"\nlog = \"debug\"\n").unwrap();
        let args = ConfigArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let config = args.load().unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:6000");
        assert_eq!(config.data_dir, PathBuf::from("/srv/berth"));
        assert_eq!(config.upload_ttl, Duration::from_secs(7200));
        assert_eq!(config.log, "debug");

        assert_eq!(
            config.database,
            DatabaseConfig::Sqlite(PathBuf::from("/srv/berth/berth.db"))
        );

        let args = ConfigArgs {
            config: Some(path),
            listen: Some("127.0.0.1:7000".into()),
            ..Default::default()
        };
        assert_eq!(args.load().unwrap().listen.to_string(), "127.0.0.1:7000");
    }

    #[test]
    fn auth_and_tls_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "auth = true\nauth_service = \"registry.example\"\nusers_may_create_namespaces = true\npublic_host = \"registry.example:5000\"\n",
        )
        .unwrap();
        let config = ConfigArgs {
            config: Some(path),
            auth_realm: Some("https://registry.example/auth/token".into()),
            ..Default::default()
        }
        .load()
        .unwrap();
        assert!(config.auth.enabled);
        assert!(config.auth.users_may_create_namespaces);
        assert_eq!(config.auth.service, "registry.example");
        assert_eq!(config.auth.issuer, "berth");
        assert_eq!(
            config.auth.realm.as_deref(),
            Some("https://registry.example/auth/token")
        );
        assert_eq!(
            config.auth.public_host.as_deref(),
            Some("registry.example:5000")
        );
        let half_tls = ConfigArgs {
            tls_cert: Some("cert.pem".into()),
            ..Default::default()
        };
        assert!(half_tls.load().is_err());
    }

    #[test]
    fn errors_table() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &str)] = &[
            ("listen = \"nonsense\"", "listen"),
            ("upload_ttl = \"forever\"", "upload_ttl"),
            ("upload_ttl = \"5s\"", "upload_ttl"),
            ("unknown_key = 1", "unknown field"),
            ("listen = ", "berth.toml"),
            ("log = \"[[[\"", "log"),
            ("gc_interval = \"0s\"", "gc_interval"),
            ("gc_grace_period = \"soon\"", "gc_grace_period"),
            ("gc_untagged = \"yes\"", "gc_untagged"),
            ("database = \"mysql://x\"", "database"),
            ("database = \"sqlite://\"", "database"),
            ("cache_ttl = \"often\"", "cache_ttl"),
            ("storage = \"gs://bucket\"", "storage"),
            ("redirect = true", "redirect"),
        ];
        for (text, expected) in cases {
            let path = dir.path().join("berth.toml");
            std::fs::write(&path, text).unwrap();
            let err = ConfigArgs {
                config: Some(path),
                ..Default::default()
            }
            .load()
            .unwrap_err();
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
        let missing = ConfigArgs {
            config: Some(dir.path().join("absent.toml")),
            ..Default::default()
        };
        assert!(matches!(missing.load(), Err(ConfigError::Read { .. })));
    }
}

#[cfg(test)]
mod database_tests {
    use super::*;

    #[test]
    fn database_urls_table() {
        let cases: &[(&str, Option<DatabaseConfig>, &str)] = &[
            (
                "sqlite:///var/lib/berth/meta.db",
                Some(DatabaseConfig::Sqlite("/var/lib/berth/meta.db".into())),
                "sqlite:///var/lib/berth/meta.db",
            ),
            (
                "postgres://berth:s3cret@db:5432/berth",
                Some(DatabaseConfig::Postgres(
                    "postgres://berth:s3cret@db:5432/berth".into(),
                )),
                "postgres://berth:***@db:5432/berth",
            ),
            (
                "postgresql://db/berth",
                Some(DatabaseConfig::Postgres("postgresql://db/berth".into())),
                "postgresql://db/berth",
            ),
            ("mysql://db", None, ""),
            ("berth.db", None, ""),
        ];
        for (input, expected, redacted) in cases {
            let got = DatabaseConfig::parse(input).ok();
            assert_eq!(&got, expected, "{input}");
            if let Some(db) = got {
                assert_eq!(db.redacted(), *redacted);
            }
        }
    }
}
