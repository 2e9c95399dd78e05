//! The kinds of value a configuration key can hold, and how each is read
//! from a flag or environment variable (text) and from the TOML file, and
//! shown again by `berth config check`.
//!
//! A key's Rust type decides all of that through [`Setting`], so declaring a
//! key with an existing type needs nothing here; a new kind of value is one
//! `impl Setting`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// A value as it arrived, before parsing.
#[derive(Clone, Copy, Debug)]
pub enum Raw<'a> {
    /// From a flag or an environment variable.
    Text(&'a str),
    /// From the TOML file, already typed by TOML (a string, integer,
    /// boolean or array).
    Toml(&'a toml::Value),
}

/// A type a configuration key can have.
pub trait Setting: Sized {
    /// How a value is written in `--help` (`DURATION`, `ADDR`, …).
    const VALUE_NAME: &'static str;

    /// Parses the text of a flag or environment variable.
    fn parse_text(text: &str) -> Result<Self, String>;

    /// Parses a TOML value. Most kinds are written as TOML strings, parsed
    /// like a flag; kinds with a native TOML type (booleans, integers,
    /// arrays) override this.
    fn parse_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::String(text) => Self::parse_text(text),
            other => Err(format!("expected a string, found a {}", other.type_str())),
        }
    }

    /// The value of a key nobody set, from its declared default text. Kinds
    /// that can be unset (`Option`, lists) start unset, and their default
    /// text says what unset means; the others parse it, and a declared
    /// default that does not parse is a programming error, caught by the
    /// configuration tests, which load every default.
    fn from_default(text: &str) -> Self {
        Self::parse_text(text)
            .unwrap_or_else(|error| panic!("invalid declared default {text:?}: {error}"))
    }

    /// The value as a TOML literal (so `berth config check` prints a file
    /// that reads back), or `None` while it is unset.
    fn show(&self) -> Option<String>;

    /// Parses a value from either source.
    fn parse(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Text(text) => Self::parse_text(text),
            Raw::Toml(value) => Self::parse_toml(value),
        }
    }
}

/// A TOML basic string holding `text`.
pub fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

impl Setting for String {
    const VALUE_NAME: &'static str = "TEXT";

    fn parse_text(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }

    fn show(&self) -> Option<String> {
        Some(toml_string(self))
    }
}

impl Setting for PathBuf {
    const VALUE_NAME: &'static str = "PATH";

    fn parse_text(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a path must not be empty".into());
        }
        Ok(PathBuf::from(text))
    }

    fn show(&self) -> Option<String> {
        Some(toml_string(&self.display().to_string()))
    }
}

impl Setting for SocketAddr {
    const VALUE_NAME: &'static str = "ADDR";

    fn parse_text(text: &str) -> Result<Self, String> {
        text.parse()
            .map_err(|e| format!("{text:?} is not an address such as 127.0.0.1:5000 ({e})"))
    }

    fn show(&self) -> Option<String> {
        Some(toml_string(&self.to_string()))
    }
}

impl Setting for bool {
    const VALUE_NAME: &'static str = "BOOL";

    /// Only `true` and `false`, as clap accepted for these flags and
    /// variables before the configuration was declared in one place.
    fn parse_text(text: &str) -> Result<Self, String> {
        match text {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("expected true or false, found {other:?}")),
        }
    }

    fn parse_toml(value: &toml::Value) -> Result<Self, String> {
        value
            .as_bool()
            .ok_or_else(|| format!("expected true or false, found a {}", value.type_str()))
    }

    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Setting for usize {
    const VALUE_NAME: &'static str = "N";

    fn parse_text(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("expected a whole number, found {text:?}"))
    }

    fn parse_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Integer(n) => {
                usize::try_from(*n).map_err(|_| format!("expected a whole number, found {n}"))
            }
            other => Err(format!(
                "expected a whole number, found a {}",
                other.type_str()
            )),
        }
    }

    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

/// Durations are written as humantime spans: `30s`, `10m`, `1h 30m`, `7d`.
impl Setting for Duration {
    const VALUE_NAME: &'static str = "DURATION";

    fn parse_text(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is not a duration such as 30s, 10m or 24h ({e})"))
    }

    fn show(&self) -> Option<String> {
        Some(toml_string(&humantime::format_duration(*self).to_string()))
    }
}

/// A number of bytes, written as a plain number or with a unit: `8MiB`,
/// `512 KiB`, `1GB` (binary units are powers of 1024, decimal ones of 1000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Units from the largest, so `show` picks the largest exact one.
    const UNITS: &'static [(&'static str, u64)] = berth_registry::quotas::SIZE_UNITS;
}

impl Setting for ByteSize {
    const VALUE_NAME: &'static str = "SIZE";

    fn parse_text(text: &str) -> Result<Self, String> {
        berth_registry::quotas::parse_size(text).map(ByteSize)
    }

    fn parse_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Integer(n) => u64::try_from(*n)
                .map(ByteSize)
                .map_err(|_| format!("a size must not be negative, found {n}")),
            toml::Value::String(text) => Self::parse_text(text),
            other => Err(format!("expected a size, found a {}", other.type_str())),
        }
    }

    fn show(&self) -> Option<String> {
        let (name, factor) = Self::UNITS
            .iter()
            .find(|(_, factor)| self.0 != 0 && self.0.is_multiple_of(*factor))
            .copied()
            .unwrap_or(("B", 1));
        Some(toml_string(&format!("{}{name}", self.0 / factor)))
    }
}

/// An optional value: unset unless a source gives it.
impl<T: Setting> Setting for Option<T> {
    const VALUE_NAME: &'static str = T::VALUE_NAME;

    fn parse_text(text: &str) -> Result<Self, String> {
        T::parse_text(text).map(Some)
    }

    fn parse_toml(value: &toml::Value) -> Result<Self, String> {
        T::parse_toml(value).map(Some)
    }

    fn from_default(_text: &str) -> Self {
        None
    }

    fn show(&self) -> Option<String> {
        self.as_ref().and_then(Setting::show)
    }
}

/// A list: a TOML array, or comma-separated text in a flag or variable.
/// Empty (unset) unless a source gives it.
impl<T: Setting> Setting for Vec<T> {
    const VALUE_NAME: &'static str = "LIST";

    fn parse_text(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(T::parse_text)
            .collect()
    }

    fn parse_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Array(items) => items.iter().map(T::parse_toml).collect(),
            other => Err(format!("expected an array, found a {}", other.type_str())),
        }
    }

    fn from_default(_text: &str) -> Self {
        Vec::new()
    }

    fn show(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let items: Option<Vec<String>> = self.iter().map(Setting::show).collect();
        Some(format!("[{}]", items?.join(", ")))
    }
}

/// The URL of an advisory source: `http` or `https` only. A password in it
/// is shown as `***`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvisoryUrl(pub url::Url);

impl AdvisoryUrl {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Setting for AdvisoryUrl {
    const VALUE_NAME: &'static str = "URL";

    fn parse_text(text: &str) -> Result<Self, String> {
        let url =
            url::Url::parse(text.trim()).map_err(|e| format!("{text:?} is not a URL ({e})"))?;
        match url.scheme() {
            "http" | "https" if url.has_host() => Ok(AdvisoryUrl(url)),
            _ => Err(format!(
                "{text:?} is not an http or https URL (import files with `berth advisories import PATH`)"
            )),
        }
    }

    fn show(&self) -> Option<String> {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        Some(toml_string(shown.as_str()))
    }
}

/// A network given as `ADDR/BITS`, or a single address (`10.0.0.5`, which
/// is `10.0.0.5/32`).
impl Setting for ipnet::IpNet {
    const VALUE_NAME: &'static str = "CIDR";

    fn parse_text(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let invalid = || format!("{text:?} is not an address or network such as 10.0.0.0/8");
        if text.contains('/') {
            text.parse::<ipnet::IpNet>()
                .map(|net| net.trunc())
                .map_err(|_| invalid())
        } else {
            text.parse::<IpAddr>()
                .map(ipnet::IpNet::from)
                .map_err(|_| invalid())
        }
    }

    fn show(&self) -> Option<String> {
        Some(toml_string(&self.to_string()))
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: one line per event, coloured on a terminal.
    Text,
    /// For log pipelines: one JSON object per line.
    Json,
}

impl Setting for LogFormat {
    const VALUE_NAME: &'static str = "text|json";

    fn parse_text(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected text or json, found {other:?}")),
        }
    }

    fn show(&self) -> Option<String> {
        Some(toml_string(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }))
    }
}

/// `auto`, or a boolean as the key was before `auto` existed: `true` for
/// every client, `false` for none.
impl Setting for berth_server::Sendfile {
    const VALUE_NAME: &'static str = "auto|true|false";

    fn parse_text(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(berth_server::Sendfile::Auto),
            "true" => Ok(berth_server::Sendfile::Always),
            "false" => Ok(berth_server::Sendfile::Never),
            other => Err(format!("expected auto, true or false, found {other:?}")),
        }
    }

    fn parse_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Boolean(true) => Ok(berth_server::Sendfile::Always),
            toml::Value::Boolean(false) => Ok(berth_server::Sendfile::Never),
            toml::Value::String(text) if text == "auto" => Ok(berth_server::Sendfile::Auto),
            toml::Value::String(text) => {
                Err(format!("expected \"auto\", true or false, found {text:?}"))
            }
            other => Err(format!(
                "expected \"auto\", true or false, found a {}",
                other.type_str()
            )),
        }
    }

    fn show(&self) -> Option<String> {
        Some(match self {
            berth_server::Sendfile::Auto => toml_string("auto"),
            berth_server::Sendfile::Always => "true".to_string(),
            berth_server::Sendfile::Never => "false".to_string(),
        })
    }
}

/// A tracing filter (`info`, `berth_server=debug,info`), checked when read
/// so that a typo stops the start instead of silencing the logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFilter(pub String);

impl Setting for LogFilter {
    const VALUE_NAME: &'static str = "FILTER";

    fn parse_text(text: &str) -> Result<Self, String> {
        tracing_subscriber::EnvFilter::try_new(text)
            .map(|_| LogFilter(text.to_string()))
            .map_err(|e| {
                format!("{text:?} is not a log filter such as info or berth_server=debug ({e})")
            })
    }

    fn show(&self) -> Option<String> {
        Some(toml_string(&self.0))
    }
}

/// A secret (a password or key): read like text, never shown or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    /// The secret itself, for handing to what needs it (the S3 backend,
    /// the signing keys' encryption).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(***)")
    }
}

impl Setting for SecretText {
    const VALUE_NAME: &'static str = "SECRET";

    fn parse_text(text: &str) -> Result<Self, String> {
        Ok(SecretText(text.to_string()))
    }

    fn show(&self) -> Option<String> {
        Some(toml_string("***"))
    }
}

/// Where blob bytes live: `fs:///PATH` or `s3://BUCKET/PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageUrl {
    Fs(PathBuf),
    S3(String),
}

impl Setting for StorageUrl {
    const VALUE_NAME: &'static str = "URL";

    fn parse_text(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("fs://") {
            if path.is_empty() {
                return Err("fs:// needs a path, e.g. fs:///var/lib/berth".into());
            }
            Ok(StorageUrl::Fs(PathBuf::from(path)))
        } else if let Some(rest) = text.strip_prefix("s3://") {
            if rest.split('/').next().unwrap_or("").is_empty() {
                return Err("s3:// needs a bucket, e.g. s3://registry-bucket/berth".into());
            }
            Ok(StorageUrl::S3(text.to_string()))
        } else {
            Err(format!(
                "expected fs:///PATH or s3://BUCKET/PREFIX, found {text:?}"
            ))
        }
    }

    fn show(&self) -> Option<String> {
        Some(toml_string(&match self {
            StorageUrl::Fs(path) => format!("fs://{}", path.display()),
            StorageUrl::S3(url) => url.clone(),
        }))
    }
}

/// Where metadata lives: `sqlite:///PATH` or a PostgreSQL URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    /// The URL with any password replaced, for messages and `config check`.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    let userinfo = &url[scheme + 3..at];
                    match userinfo.split_once(':') {
                        Some((user, _password)) => {
                            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
                        }
                        None => url.clone(),
                    }
                }
                _ => url.clone(),
            },
        }
    }
}

impl Setting for DatabaseUrl {
    const VALUE_NAME: &'static str = "URL";

    fn parse_text(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a path, e.g. sqlite:///var/lib/berth/berth.db".into());
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(text.to_string()))
        } else {
            // The text is not echoed: a mistyped URL may hold a password.
            Err("expected sqlite:///PATH or postgres://…".into())
        }
    }

    fn show(&self) -> Option<String> {
        Some(toml_string(&self.redacted()))
    }
}
