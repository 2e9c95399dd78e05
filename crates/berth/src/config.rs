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
    /// The tracing filter, e.g. `info` or `berth=debug,tower_http=info`.
    pub log: String,
    /// `text` for people, `json` for log pipelines.
    pub log_format: LogFormat,
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
            log: "info".to_string(),
            log_format: LogFormat::Text,
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
    log: Option<String>,
    log_format: Option<LogFormat>,
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
    /// Log filter (tracing's EnvFilter syntax), e.g. info or debug.
    #[arg(long, env = "BERTH_LOG")]
    pub log: Option<String>,
    /// Log format.
    #[arg(long, env = "BERTH_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
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
        config.validate()?;
        Ok(config)
    }
}

impl Config {
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
        for (key, value) in [
            ("gc_interval", self.gc_interval),
            ("gc_grace_period", self.gc_grace_period),
            ("gc_orphan_sweep_interval", self.gc_orphan_sweep_interval),
            ("gc_untagged_age", self.gc_untagged_age),
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

        let args = ConfigArgs {
            config: Some(path),
            listen: Some("127.0.0.1:7000".into()),
            ..Default::default()
        };
        assert_eq!(args.load().unwrap().listen.to_string(), "127.0.0.1:7000");
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
