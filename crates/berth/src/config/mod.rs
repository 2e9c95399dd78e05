//! Configuration: every key declared once (`keys.rs`), read from layered
//! sources into one typed [`Config`].
//!
//! # Layout
//!
//! - `keys.rs`: the declaration, section by section. The only file to edit
//!   to add a key.
//! - `declare.rs`: the macro that turns it into the section structs and
//!   [`KEYS`].
//! - `values.rs`: the kinds of value ([`values::Setting`]): durations,
//!   sizes, addresses, URLs, lists, secrets.
//! - `reference.rs`: what is derived for people: the `berth config check`
//!   listing and the README's table (a test keeps the README in step).
//! - here: the sources and their order, the TOML reader, the flags, and
//!   the checks that involve several keys.
//!
//! # Sources
//!
//! From lowest to highest precedence: the declared default; standard
//! variables of other tools for the few keys that name some (`AWS_REGION`);
//! the TOML file (`--config`, `BERTH_CONFIG`); `BERTH_*` environment
//! variables; flags. Every source's value is parsed and checked, even one a
//! higher source overrides, so a broken file is reported while a flag hides
//! it. The environment is handed in as an [`Environment`], captured once by
//! `main`, so that nothing below reads the process environment and tests
//! can give any.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches};

#[macro_use]
mod declare;
mod keys;
pub mod reference;
pub mod upstream;
pub mod values;

#[cfg(test)]
mod tests;

pub use keys::{Config, KEYS, SECTIONS};
use values::{ByteSize, DatabaseUrl, Raw, StorageUrl};

/// A section of the file (`[server]`).
pub struct Section {
    pub name: &'static str,
    /// The `--help` heading of its flags.
    pub heading: &'static str,
    /// What the section holds, from its doc comment.
    pub doc: &'static str,
}

/// What a key may do beyond the common case; see `keys.rs`.
#[derive(Debug)]
pub enum KeyOption {
    /// The key existed before sections: its top-level spelling is accepted.
    Legacy,
    /// The flag takes no value.
    Switch,
    /// Standard variables of other tools that supply the value, below the
    /// file in precedence.
    FallbackEnv(&'static [&'static str]),
}

/// One configuration key, as declared in `keys.rs`.
pub struct Key {
    pub section: &'static str,
    /// The name inside its section.
    pub name: &'static str,
    /// The flag without its dashes; the variable and the flat TOML name
    /// derive from it.
    pub flag: &'static str,
    /// The default as written in a file, or for keys that start unset, what
    /// unset means.
    pub default: &'static str,
    /// The doc comment, one line per source line.
    pub doc: &'static str,
    /// How a value is written in `--help`.
    pub value_name: &'static str,
    pub options: &'static [KeyOption],
    /// Parses a value into the key's field.
    pub set: fn(&mut Config, Raw<'_>) -> Result<(), String>,
    /// The field's value as a TOML literal, `None` while unset.
    pub show: fn(&Config) -> Option<String>,
}

impl Key {
    /// `section.name`, how messages name the key.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }

    /// The top-level TOML spelling of files from before sections.
    pub fn flat_name(&self) -> String {
        self.flag.replace('-', "_")
    }

    /// The `BERTH_*` environment variable.
    pub fn env_var(&self) -> String {
        format!("BERTH_{}", self.flat_name().to_ascii_uppercase())
    }

    pub fn is_legacy(&self) -> bool {
        self.options.iter().any(|o| matches!(o, KeyOption::Legacy))
    }

    pub fn is_switch(&self) -> bool {
        self.options.iter().any(|o| matches!(o, KeyOption::Switch))
    }

    /// Other tools' variables that supply the value, in order of preference.
    pub fn fallback_env(&self) -> &'static [&'static str] {
        self.options
            .iter()
            .find_map(|o| match o {
                KeyOption::FallbackEnv(names) => Some(*names),
                _ => None,
            })
            .unwrap_or(&[])
    }

    /// The doc comment as one line of text.
    pub fn description(&self) -> String {
        self.doc
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether an unset value is a state of its own (the default text then
    /// describes it) rather than a value.
    pub fn starts_unset(&self) -> bool {
        (self.show)(&Config::default()).is_none()
    }
}

/// The index in [`KEYS`] of the key named `section.name`.
///
/// # Panics
///
/// If there is no such key: callers name keys in code, and the tests call
/// every such place.
pub fn key_index(qualified: &str) -> usize {
    KEYS.iter()
        .position(|key| key.qualified() == qualified)
        .unwrap_or_else(|| panic!("no configuration key {qualified}"))
}

/// Where a key's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    /// An environment variable, `BERTH_*` or a fallback such as `AWS_REGION`.
    Env(String),
    /// A flag, with its dashes.
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// The process environment, captured once by `main` and handed down.
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The variables of this process (those whose name and value are UTF-8).
    pub fn from_process() -> Environment {
        Environment {
            vars: std::env::vars_os()
                .filter_map(|(name, value)| {
                    Some((name.into_string().ok()?, value.into_string().ok()?))
                })
                .collect(),
        }
    }

    /// An environment of exactly these variables (tests, the fuzz target).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Environment {
        Environment {
            vars: pairs
                .into_iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        }
    }

    /// A variable's value; an empty variable counts as unset, as shells and
    /// container runtimes often set variables they mean to leave out.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }
}

/// Values may be secrets, so only the names are shown.
impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: unknown key `{key}`{hint}")]
    UnknownKey {
        path: PathBuf,
        key: String,
        /// A suggestion, starting with `; ` (or empty).
        hint: String,
    },
    #[error("{path}: `{key}` is set twice, as `{first}` and as `{second}`")]
    Duplicate {
        path: PathBuf,
        key: String,
        first: String,
        second: String,
    },
    #[error("invalid {key} ({origin}): {message}")]
    Invalid {
        key: String,
        /// Where the bad value came from (not called `source`, which
        /// thiserror takes for the underlying error).
        origin: Source,
        message: String,
    },
}

/// The name of the `--config` argument.
const CONFIG_FILE_ARG: &str = "config";

/// The name of the `--upstream` argument.
const UPSTREAM_ARG: &str = "upstream";

/// The configuration flags every command that reads the configuration
/// takes (`#[command(flatten)]`): `--config FILE` and one flag per key.
///
/// This implements clap's `Args` by hand because the flags come from
/// [`KEYS`], not from a struct's fields.
#[derive(Clone, Debug, Default)]
pub struct ConfigArgs {
    /// `--config FILE` (`BERTH_CONFIG` is read by [`ConfigArgs::load`]).
    pub file: Option<PathBuf>,
    /// The flags given, as (index in [`KEYS`], value); a switch's value is
    /// `true`.
    pub flags: Vec<(usize, String)>,
    /// `--upstream NS=URL`, in the order given.
    pub upstreams: Vec<String>,
}

impl clap::Args for ConfigArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        let mut command = command.arg(
            Arg::new(CONFIG_FILE_ARG)
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("A TOML configuration file [env: BERTH_CONFIG]"),
        );
        command = command.arg(
            Arg::new(UPSTREAM_ARG)
                .long("upstream")
                .value_name("NS=URL")
                .action(ArgAction::Append)
                .help(
                    "Mirror the registry at URL in namespace NS (a pull-through cache; \
                     repeatable; `[[upstream]]` tables in the file take more settings, \
                     see docs/proxy.md)",
                ),
        );
        for key in KEYS {
            let mut help = key.description();
            if !key.starts_unset() {
                help.push_str(&format!(" [default: {}]", key.default));
            }
            help.push_str(&format!(" [env: {}]", key.env_var()));
            let arg = Arg::new(key.flag)
                .long(key.flag)
                .help(help)
                .help_heading(section(key.section).heading);
            let arg = if key.is_switch() {
                arg.action(ArgAction::SetTrue)
            } else {
                arg.action(ArgAction::Set).value_name(key.value_name)
            };
            command = command.arg(arg);
        }
        command
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

/// The section named `name`.
fn section(name: &str) -> &'static Section {
    SECTIONS
        .iter()
        .find(|section| section.name == name)
        .expect("every key's section is declared")
}

impl clap::FromArgMatches for ConfigArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = ConfigArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        if let Ok(Some(path)) = matches.try_get_one::<PathBuf>(CONFIG_FILE_ARG) {
            self.file = Some(path.clone());
        }
        if let Ok(Some(values)) = matches.try_get_many::<String>(UPSTREAM_ARG) {
            self.upstreams = values.cloned().collect();
        }
        for (index, key) in KEYS.iter().enumerate() {
            if matches.value_source(key.flag) != Some(ValueSource::CommandLine) {
                continue;
            }
            let value = if key.is_switch() {
                "true".to_string()
            } else {
                match matches.try_get_one::<String>(key.flag) {
                    Ok(Some(value)) => value.clone(),
                    _ => continue,
                }
            };
            self.flags.retain(|(given, _)| *given != index);
            self.flags.push((index, value));
        }
        Ok(())
    }
}

/// A configuration with where each value came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    /// The source of each key's value, indexed like [`KEYS`].
    pub sources: Vec<Source>,
    /// Things worth telling the operator that do not stop the start (the
    /// older top-level spelling in the file).
    pub warnings: Vec<String>,
    /// The upstream registries of the pull-through cache: the file's
    /// `[[upstream]]` tables, then `--upstream` flags.
    pub upstreams: Vec<upstream::UpstreamConfig>,
}

impl Loaded {
    /// Where the value of `section.name` came from.
    pub fn source(&self, qualified: &str) -> &Source {
        &self.sources[key_index(qualified)]
    }

    /// Names a setting for a message: the key and where its value came
    /// from, or for a default, how to set it, so the message says where to
    /// fix it.
    pub fn describe(&self, qualified: &str) -> String {
        let key = &KEYS[key_index(qualified)];
        match self.source(qualified) {
            Source::Default => format!(
                "{qualified} (default; set with --{}, {} or `{}` in [{}])",
                key.flag,
                key.env_var(),
                key.name,
                key.section
            ),
            source => format!("{qualified} ({source})"),
        }
    }
}

impl ConfigArgs {
    /// Builds the configuration from the declared defaults, the fallback
    /// variables, the file, the `BERTH_*` variables in `env` and the flags.
    pub fn load(&self, env: &Environment) -> Result<Loaded, ConfigError> {
        let file_path = self
            .file
            .clone()
            .or_else(|| env.get("BERTH_CONFIG").map(PathBuf::from));
        let text = match &file_path {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        self.load_from(env, file_path.as_deref().zip(text.as_deref()))
    }

    /// [`ConfigArgs::load`] with the file, if any, already read: its path
    /// (for messages) and its text. The config fuzz target starts here.
    pub fn load_from(
        &self,
        env: &Environment,
        file: Option<(&Path, &str)>,
    ) -> Result<Loaded, ConfigError> {
        let file_path = file.map(|(path, _)| path.to_path_buf());
        let mut file = match file {
            Some((path, text)) => parse_file(path, text)?,
            None => FileValues::default(),
        };
        let mut config = Config::default();
        let mut sources = vec![Source::Default; KEYS.len()];
        for (index, key) in KEYS.iter().enumerate() {
            let mut layers: Vec<(Raw<'_>, Source)> = Vec::new();
            if let Some((name, value)) = key
                .fallback_env()
                .iter()
                .find_map(|name| Some((*name, env.get(name)?)))
            {
                layers.push((Raw::Text(value), Source::Env(name.to_string())));
            }
            if let (Some(value), Some(path)) = (file.values.get(&index), &file_path) {
                layers.push((Raw::Toml(value), Source::File(path.clone())));
            }
            let variable = key.env_var();
            if let Some(value) = env.get(&variable) {
                layers.push((Raw::Text(value), Source::Env(variable)));
            }
            if let Some((_, value)) = self.flags.iter().find(|(given, _)| *given == index) {
                layers.push((Raw::Text(value), Source::Flag(format!("--{}", key.flag))));
            }
            for (raw, source) in layers {
                (key.set)(&mut config, raw).map_err(|message| ConfigError::Invalid {
                    key: key.qualified(),
                    origin: source.clone(),
                    message,
                })?;
                sources[index] = source;
            }
        }
        let mut upstreams = std::mem::take(&mut file.upstreams);
        for flag in &self.upstreams {
            upstreams.push(
                upstream::parse_flag(flag).map_err(|message| ConfigError::Invalid {
                    key: "upstream".into(),
                    origin: Source::Flag("--upstream".into()),
                    message,
                })?,
            );
        }
        upstream::check_unique(&upstreams)?;
        let loaded = Loaded {
            config,
            sources,
            warnings: file.warnings(file_path.as_deref()),
            upstreams,
        };
        if let Err((key, message)) = loaded.config.validate() {
            return Err(ConfigError::Invalid {
                origin: loaded.source(key).clone(),
                key: key.to_string(),
                message,
            });
        }
        Ok(loaded)
    }
}

/// The values a file gives, by index in [`KEYS`].
#[derive(Debug, Default)]
struct FileValues {
    values: BTreeMap<usize, toml::Value>,
    /// Keys written in the older top-level spelling, by index.
    flat: Vec<usize>,
    /// The `[[upstream]]` tables.
    upstreams: Vec<upstream::UpstreamConfig>,
}

impl FileValues {
    fn warnings(&self, path: Option<&Path>) -> Vec<String> {
        let (Some(path), false) = (path, self.flat.is_empty()) else {
            return Vec::new();
        };
        let moves: Vec<String> = self
            .flat
            .iter()
            .map(|&index| {
                let key = &KEYS[index];
                format!("`{}` → [{}] {}", key.flat_name(), key.section, key.name)
            })
            .collect();
        vec![format!(
            "{}: top-level keys are the older spelling, still accepted; prefer sections: {}",
            path.display(),
            moves.join(", ")
        )]
    }
}

/// Reads a file's keys: `[section]` tables of keys, and for keys that
/// existed before sections, their top-level spelling. Anything else is
/// refused with the closest known key suggested, so a typo is reported
/// rather than silently ignored.
fn parse_file(path: &Path, text: &str) -> Result<FileValues, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
    let mut file = FileValues::default();
    let mut spelled: BTreeMap<usize, String> = BTreeMap::new();
    let mut put = |index: usize, value: &toml::Value, spelling: String, flat: bool| {
        if let Some(first) = spelled.get(&index) {
            return Err(ConfigError::Duplicate {
                path: path.into(),
                key: KEYS[index].qualified(),
                first: first.clone(),
                second: spelling,
            });
        }
        spelled.insert(index, spelling);
        file.values.insert(index, value.clone());
        if flat {
            file.flat.push(index);
        }
        Ok(())
    };
    let mut upstreams = Vec::new();
    for (top, value) in &table {
        if top == UPSTREAM_ARG {
            upstreams = upstream::parse_tables(path, value)?;
            continue;
        }
        let section = SECTIONS.iter().find(|section| section.name == top);
        match (section, value) {
            (Some(section), toml::Value::Table(entries)) => {
                for (name, value) in entries {
                    let index = KEYS
                        .iter()
                        .position(|key| key.section == section.name && key.name == name)
                        .ok_or_else(|| ConfigError::UnknownKey {
                            path: path.into(),
                            key: format!("{top}.{name}"),
                            hint: hint_in_section(section.name, name),
                        })?;
                    put(index, value, format!("[{top}] {name}"), false)?;
                }
            }
            _ => {
                let index = KEYS
                    .iter()
                    .position(|key| key.is_legacy() && key.flat_name() == *top)
                    .ok_or_else(|| ConfigError::UnknownKey {
                        path: path.into(),
                        key: top.clone(),
                        hint: hint_at_top(top),
                    })?;
                put(index, value, top.clone(), true)?;
            }
        }
    }
    file.upstreams = upstreams;
    Ok(file)
}

/// How alike two names must be (Jaro-Winkler, 0 to 1) to suggest one for
/// the other; clap uses about the same for mistyped flags.
const SUGGESTION_SIMILARITY: f64 = 0.8;

/// The candidate most like `given`, if any is alike enough.
fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(given, candidate), candidate))
        .filter(|(similarity, _)| *similarity >= SUGGESTION_SIMILARITY)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// The hint for an unknown `name` in `[section]`: a key of that name in
/// another section, or the closest key of this one.
fn hint_in_section(section: &str, name: &str) -> String {
    let homes: Vec<String> = KEYS
        .iter()
        .filter(|key| key.name == name)
        .map(|key| format!("[{}]", key.section))
        .collect();
    if !homes.is_empty() {
        return format!("; `{name}` belongs in {}", homes.join(" or "));
    }
    let names = KEYS
        .iter()
        .filter(|key| key.section == section)
        .map(|key| key.name);
    match closest(name, names) {
        Some(name) => format!("; did you mean `{name}`?"),
        None => format!("; [{section}] has no such key (see `berth config check`)"),
    }
}

/// The hint for an unknown top-level `name`: the section of a key of that
/// name, or the closest section, key or older top-level spelling.
fn hint_at_top(name: &str) -> String {
    let homes: Vec<String> = KEYS
        .iter()
        .filter(|key| key.name == name)
        .map(|key| format!("[{}] {name}", key.section))
        .collect();
    if !homes.is_empty() {
        return format!("; it belongs in a section: {}", homes.join(" or "));
    }
    let flat: Vec<String> = KEYS
        .iter()
        .filter(|key| key.is_legacy())
        .map(Key::flat_name)
        .collect();
    let sectioned: Vec<(String, &Key)> = KEYS
        .iter()
        .map(|key| (format!("{}.{}", key.section, key.name), key))
        .collect();
    let candidates = SECTIONS
        .iter()
        .map(|section| section.name)
        .chain(flat.iter().map(String::as_str))
        .chain(KEYS.iter().map(|key| key.name))
        .chain(sectioned.iter().map(|(name, _)| name.as_str()));
    match closest(name, candidates) {
        Some(found) => {
            if let Some(key) = KEYS
                .iter()
                .find(|key| key.name == found && !key.is_legacy())
            {
                format!("; did you mean [{}] {found}?", key.section)
            } else {
                format!("; did you mean `{found}`?")
            }
        }
        None => "; see `berth config check` for every key".to_string(),
    }
}

/// The smallest S3 part S3 accepts (but for the last part of an upload).
const MIN_S3_PART_SIZE: ByteSize = ByteSize(5 * 1024 * 1024);

impl Config {
    /// Where blob bytes live: `storage.url`, or the data directory.
    pub fn storage_url(&self) -> StorageUrl {
        self.storage
            .url
            .clone()
            .unwrap_or_else(|| StorageUrl::Fs(self.server.data_dir.clone()))
    }

    /// Where metadata lives: `database.url`, or `berth.db` in the data
    /// directory.
    pub fn database_url(&self) -> DatabaseUrl {
        self.database
            .url
            .clone()
            .unwrap_or_else(|| DatabaseUrl::Sqlite(self.server.data_dir.join("berth.db")))
    }

    /// The checks that involve more than one key or a bound; returns the
    /// key to blame and why.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let second = Duration::from_secs(1);
        let millisecond = Duration::from_millis(1);
        let minimum_durations = [
            (
                "storage.upload_ttl",
                self.storage.upload_ttl,
                Duration::from_secs(60),
            ),
            (
                "storage.upload_purge_interval",
                self.storage.upload_purge_interval,
                second,
            ),
            ("gc.interval", self.gc.interval, second),
            ("gc.grace_period", self.gc.grace_period, second),
            (
                "gc.orphan_sweep_interval",
                self.gc.orphan_sweep_interval,
                second,
            ),
            ("gc.untagged_age", self.gc.untagged_age, second),
            ("events.retention", self.events.retention, second),
            ("server.idle_timeout", self.server.idle_timeout, millisecond),
            (
                "server.header_timeout",
                self.server.header_timeout,
                millisecond,
            ),
            ("server.body_timeout", self.server.body_timeout, millisecond),
            (
                "auth.refresh_token_lifetime",
                self.auth.refresh_token_lifetime,
                Duration::from_secs(60),
            ),
            // Sources are polled for being due at most once a minute, and
            // an interval shorter than that would only hammer them.
            (
                "scanner.advisory_sync_interval",
                self.scanner.advisory_sync_interval,
                Duration::from_secs(60),
            ),
        ];
        for (key, value, minimum) in minimum_durations {
            if value < minimum {
                return Err((
                    key,
                    format!("must be at least {}", humantime::format_duration(minimum)),
                ));
            }
        }
        // A stolen refresh token works until it expires, unless someone
        // notices and revokes it: the lifetime has a hard ceiling.
        let refresh_ceiling = berth_auth::store::MAX_REFRESH_TOKEN_LIFETIME.unsigned_abs();
        if self.auth.refresh_token_lifetime > refresh_ceiling {
            return Err((
                "auth.refresh_token_lifetime",
                format!(
                    "must be at most {}",
                    humantime::format_duration(refresh_ceiling)
                ),
            ));
        }
        if self.auth.key_encryption_key.is_some() && self.auth.key_encryption_key_file.is_some() {
            return Err((
                "auth.key_encryption_key",
                "give the key-encryption key once: in auth.key_encryption_key_file or in \
                 auth.key_encryption_key (BERTH_KEY_ENCRYPTION_KEY), not both"
                    .into(),
            ));
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err((
                "server.tls_cert",
                "tls_cert and tls_key must be given together".into(),
            ));
        }
        if let Some(name) = &self.server.node_name {
            if !crate::node::is_valid_name(name) {
                return Err((
                    "server.node_name",
                    format!(
                        "{name:?}: use 1 to {} letters, digits, '.', '_' or '-'",
                        crate::node::MAX_NAME_LEN
                    ),
                ));
            }
        }
        if self.auth.service.is_empty() {
            return Err(("auth.service", "must not be empty".into()));
        }
        if self.auth.issuer.is_empty() {
            return Err(("auth.issuer", "must not be empty".into()));
        }
        if self.gc.batch_size == 0 {
            return Err(("gc.batch_size", "must be at least 1".into()));
        }
        if self.server.max_connections == 0 {
            return Err(("server.max_connections", "must be at least 1".into()));
        }
        if self.server.max_connections_per_address == 0 {
            return Err((
                "server.max_connections_per_address",
                "must be at least 1".into(),
            ));
        }
        if self.storage.s3_part_size < MIN_S3_PART_SIZE
            || usize::try_from(self.storage.s3_part_size.0).is_err()
        {
            return Err(("storage.s3_part_size", "must be at least 5MiB".into()));
        }
        if self.storage.s3_access_key_id.is_some() != self.storage.s3_secret_access_key.is_some() {
            return Err((
                "storage.s3_access_key_id",
                "s3_access_key_id and s3_secret_access_key must be given together".into(),
            ));
        }
        if self.storage.redirect && !matches!(self.storage_url(), StorageUrl::S3(_)) {
            return Err(("storage.redirect", "redirects need s3:// storage".into()));
        }
        Ok(())
    }

    /// Why `berth serve` must not start with this configuration although
    /// each key is valid, or `None`.
    ///
    /// With access control on, a listener other clients can reach must not
    /// speak plain HTTP with challenges derived from the request: passwords
    /// would cross the network in clear, and a forged `Host` would choose
    /// the realm clients send them to. Any of TLS, an explicit realm (the
    /// URL of the TLS-terminating proxy in front) or trusted proxies (whose
    /// forwarded headers say the scheme and host) is the operator saying
    /// how clients reach the registry safely.
    pub fn exposure_problem(&self) -> Option<String> {
        let exposed = !self.server.listen.ip().is_loopback();
        let safe = self.server.tls_cert.is_some()
            || self.auth.realm.is_some()
            || !self.server.trusted_proxies.is_empty();
        (self.auth.enabled && exposed && !safe).then(|| {
            format!(
                "access control is on and {} is reachable from other machines over plain HTTP, \
                 so passwords would cross the network in clear. Do one of: serve HTTPS \
                 (server.tls_cert and server.tls_key: --tls-cert/--tls-key); set auth.realm \
                 (--auth-realm) to the https:// token URL of the TLS-terminating proxy in front; \
                 or set server.trusted_proxies (--trusted-proxies) to that proxy's addresses; \
                 or listen on a loopback address",
                self.server.listen
            )
        })
    }
}
