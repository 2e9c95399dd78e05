use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, FromArgMatches};

use super::values::{ByteSize, DatabaseUrl, Setting, StorageUrl};
use super::*;

/// Parses a command line of configuration flags the way every command does.
fn flags(args: &[&str]) -> ConfigArgs {
    let command = ConfigArgs::augment_args(clap::Command::new("berth"));
    let matches = command
        .try_get_matches_from(std::iter::once("berth").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    ConfigArgs::from_arg_matches(&matches).unwrap()
}

/// Writes `text` as a file in `dir` and returns its path.
fn file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("berth.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn load(path: Option<&Path>, env: &[(&str, &str)], args: &[&str]) -> Result<Loaded, ConfigError> {
    let mut config_args = flags(args);
    if let Some(path) = path {
        config_args.file = Some(path.to_path_buf());
    }
    config_args.load(&Environment::from_pairs(env.iter().copied()))
}

/// Environment variables of a case.
type Vars<'a> = &'a [(&'a str, &'a str)];

fn show(loaded: &Loaded, qualified: &str) -> Option<String> {
    (KEYS[key_index(qualified)].show)(&loaded.config)
}

#[test]
fn defaults_are_the_declared_ones() {
    let loaded = load(None, &[], &[]).unwrap();
    assert_eq!(loaded.config, Config::default());
    assert!(loaded.sources.iter().all(|s| *s == Source::Default));
    assert!(loaded.warnings.is_empty());
    let config = &loaded.config;
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:5000");
    assert_eq!(config.server.data_dir, PathBuf::from("./berth-data"));
    assert_eq!(config.storage.upload_ttl, Duration::from_secs(86400));
    assert_eq!(config.gc.grace_period, Duration::from_secs(3600));
    assert_eq!(config.server.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(config.server.header_timeout, Duration::from_secs(10));
    assert_eq!(config.server.max_connections, 10_000);
    assert_eq!(config.storage.s3_part_size, ByteSize(8 << 20));
    assert!(!config.gc.untagged);
    assert!(config.gc.delete_referrers);
    assert!(!config.auth.enabled);
    assert_eq!(
        config.database_url(),
        DatabaseUrl::Sqlite(PathBuf::from("./berth-data/berth.db"))
    );
    assert_eq!(
        config.storage_url(),
        StorageUrl::Fs(PathBuf::from("./berth-data"))
    );
}

#[test]
fn every_key_is_documented_and_has_a_unique_flag() {
    let mut flags_seen = std::collections::BTreeSet::new();
    for key in KEYS {
        assert!(
            !key.description().is_empty(),
            "{} has no doc",
            key.qualified()
        );
        assert!(
            flags_seen.insert(key.flag),
            "--{} is declared twice",
            key.flag
        );
        assert_ne!(key.flag, CONFIG_FILE_ARG, "--config is the file");
        assert!(SECTIONS.iter().any(|s| s.name == key.section));
    }
}

/// The keys of the release before sections, by their top-level TOML name:
/// each keeps that spelling, its flag and its `BERTH_*` variable.
#[test]
fn every_earlier_key_keeps_its_names() {
    const EARLIER: &[&str] = &[
        "listen",
        "data_dir",
        "upload_ttl",
        "upload_purge_interval",
        "gc_interval",
        "gc_grace_period",
        "gc_orphan_sweep_interval",
        "gc_untagged",
        "gc_untagged_age",
        "delete_referrers",
        "gc_batch_size",
        "log",
        "log_format",
        "database",
        "cache_ttl",
        "storage",
        "s3_endpoint",
        "s3_region",
        "s3_path_style",
        "s3_access_key_id",
        "s3_secret_access_key",
        "redirect",
        "auth",
        "auth_realm",
        "auth_service",
        "auth_issuer",
        "users_may_create_namespaces",
        "public_host",
        "tls_cert",
        "tls_key",
    ];
    for name in EARLIER {
        let key = KEYS
            .iter()
            .find(|key| key.is_legacy() && key.flat_name() == *name)
            .unwrap_or_else(|| panic!("`{name}` lost its top-level spelling"));
        assert_eq!(key.flag, name.replace('_', "-"));
        assert_eq!(
            key.env_var(),
            format!("BERTH_{}", name.to_ascii_uppercase())
        );
    }
    let legacy = KEYS.iter().filter(|key| key.is_legacy()).count();
    assert_eq!(
        legacy,
        EARLIER.len(),
        "only keys of that release are Legacy"
    );
}

/// Three distinct values for a kind of value, as (TOML literal for the
/// file, text for the variable, text for the flag). Several candidates for
/// kinds shared by keys of different types (URLs); the first the key
/// accepts is used.
fn samples(value_name: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    match value_name {
        "ADDR" => &[("\"0.0.0.0:6000\"", "127.0.0.1:6001", "[::1]:6002")],
        "PATH" => &[("\"/from/file\"", "/from/env", "/from/flag")],
        "TEXT" => &[("\"from-file\"", "from-env", "from-flag")],
        "SECRET" => &[("\"file-secret\"", "env-secret", "flag-secret")],
        "BOOL" => &[("true", "false", "true")],
        "N" => &[("11", "12", "13")],
        // Minutes, because some durations must be at least a minute.
        "DURATION" => &[("\"11m\"", "12m", "13m")],
        "SIZE" => &[("\"6MiB\"", "7MiB", "9437184")],
        "LIST" => &[
            (
                "[\"10.0.0.0/8\", \"192.168.1.1\"]",
                "10.1.0.0/16",
                "10.2.0.1, fd00::/8",
            ),
            (
                "[\"https://file.example/all.zip\", \"http://mirror/a.json\"]",
                "https://env.example/all.zip",
                "https://flag.example/a.zip, https://flag.example/b.zip",
            ),
        ],
        "text|json" => &[("\"json\"", "text", "json")],
        "auto|true|false" => &[("false", "true", "auto")],
        "FILTER" => &[("\"debug\"", "warn", "berth_server=debug,info")],
        "URL" => &[
            (
                "\"s3://file-bucket/a\"",
                "s3://env-bucket/b",
                "s3://flag-bucket/c",
            ),
            (
                "\"sqlite:///from/file.db\"",
                "postgres://berth@env/berth",
                "sqlite:///flag.db",
            ),
        ],
        other => panic!("no samples for values of kind {other}: add some here"),
    }
}

/// Settings that keep the cross-key checks satisfied whatever single key a
/// test varies (the TLS pair, the S3 key pair, and S3 storage for redirects).
const COMPANIONS: &[(&str, &str)] = &[
    ("server.tls_cert", "\"/tls/cert.pem\""),
    ("server.tls_key", "\"/tls/key.pem\""),
    ("storage.url", "\"s3://companion-bucket/berth\""),
    ("storage.s3_access_key_id", "\"companion-id\""),
    ("storage.s3_secret_access_key", "\"companion-secret\""),
];

/// A file holding `value` for `key` and the companions, in sections or
/// (`flat`) in the older top-level spelling, which every companion has.
fn file_text(key: &Key, value: &str, flat: bool) -> String {
    let mut entries: Vec<(&Key, &str)> = COMPANIONS
        .iter()
        .map(|(qualified, companion)| (&KEYS[key_index(qualified)], *companion))
        .filter(|(companion, _)| companion.qualified() != key.qualified())
        .collect();
    entries.push((key, value));
    if flat {
        return entries
            .iter()
            .map(|(key, value)| format!("{} = {value}\n", key.flat_name()))
            .collect();
    }
    let mut text = String::new();
    for section in SECTIONS {
        let lines: Vec<String> = entries
            .iter()
            .filter(|(key, _)| key.section == section.name)
            .map(|(key, value)| format!("{} = {value}\n", key.name))
            .collect();
        if !lines.is_empty() {
            text.push_str(&format!("[{}]\n{}", section.name, lines.concat()));
        }
    }
    text
}

/// What `key` shows after being set from `raw` alone.
fn expected_show(key: &Key, raw: values::Raw<'_>) -> Option<String> {
    let mut config = Config::default();
    (key.set)(&mut config, raw).unwrap();
    (key.show)(&config)
}

/// For every key of every section: the file's value stands over the
/// default, a `BERTH_*` variable over the file, a flag over both, and
/// `config check` names each source.
#[test]
fn precedence_default_file_env_flag_for_every_key() {
    let dir = tempfile::tempdir().unwrap();
    for key in KEYS {
        let key_name = key.qualified();
        let (file_value, env_value, flag_value) = samples(key.value_name)
            .iter()
            .copied()
            .find(|(file_value, env_value, flag_value)| {
                let toml: toml::Value = toml::from_str::<toml::Table>(&format!("v = {file_value}"))
                    .unwrap()
                    .remove("v")
                    .unwrap();
                let mut config = Config::default();
                (key.set)(&mut config, values::Raw::Toml(&toml)).is_ok()
                    && (key.set)(&mut config, values::Raw::Text(env_value)).is_ok()
                    && (key.set)(&mut config, values::Raw::Text(flag_value)).is_ok()
            })
            .unwrap_or_else(|| panic!("no sample fits {key_name}"));
        let path = file(dir.path(), &file_text(key, file_value, false));
        let env_var = key.env_var();
        let flag = format!("--{}", key.flag);
        let flag_args: Vec<&str> = if key.is_switch() {
            vec![&flag]
        } else {
            vec![&flag, flag_value]
        };

        let from_file = load(Some(&path), &[], &[]).unwrap_or_else(|e| panic!("{key_name}: {e}"));
        assert_eq!(
            *from_file.source(&key_name),
            Source::File(path.clone()),
            "{key_name}"
        );
        let parsed: toml::Table = toml::from_str(&format!("v = {file_value}")).unwrap();
        assert_eq!(
            show(&from_file, &key_name),
            expected_show(key, values::Raw::Toml(&parsed["v"])),
            "{key_name}"
        );

        let from_env = load(Some(&path), &[(&env_var, env_value)], &[]).unwrap();
        assert_eq!(*from_env.source(&key_name), Source::Env(env_var.clone()));
        assert_eq!(
            show(&from_env, &key_name),
            expected_show(key, values::Raw::Text(env_value)),
            "{key_name}"
        );

        let from_flag = load(Some(&path), &[(&env_var, env_value)], &flag_args).unwrap();
        assert_eq!(*from_flag.source(&key_name), Source::Flag(flag.clone()));
        assert_eq!(
            show(&from_flag, &key_name),
            expected_show(key, values::Raw::Text(flag_value)),
            "{key_name}"
        );
        if key.value_name != "SECRET" {
            assert_ne!(
                show(&from_file, &key_name),
                show(&from_env, &key_name),
                "{key_name}"
            );
            assert_ne!(
                show(&from_env, &key_name),
                show(&from_flag, &key_name),
                "{key_name}"
            );
        }
        let listing = reference::check_listing(&from_flag);
        assert!(
            listing
                .lines()
                .any(|line| line.starts_with(&format!("{} = ", key.name))
                    && line.ends_with(&format!("# flag {flag}"))),
            "{key_name} in:\n{listing}"
        );
    }
}

/// The flat spelling of files from before sections gives the same
/// configuration as the sectioned one, for every key that had it, with one
/// warning naming the preferred spelling.
#[test]
fn flat_legacy_keys_are_accepted_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let flat = file(
        dir.path(),
        "listen = \"0.0.0.0:6000\"\ndata_dir = \"/srv/berth\"\nstorage = \"s3://bucket/berth\"\n\
         s3_endpoint = \"http://127.0.0.1:8333\"\ns3_path_style = true\nredirect = true\n\
         database = \"postgres://berth:pw@db/berth\"\nauth = true\nauth_realm = \"https://r/auth/token\"\n\
         users_may_create_namespaces = true\ngc_interval = \"10m\"\ngc_untagged = true\n\
         delete_referrers = false\nupload_ttl = \"2h\"\nlog_format = \"json\"\n",
    );
    let from_flat = load(Some(&flat), &[], &[]).unwrap();
    assert_eq!(from_flat.warnings.len(), 1, "{:?}", from_flat.warnings);
    assert!(from_flat.warnings[0].contains("`s3_endpoint` → [storage] s3_endpoint"));
    assert!(from_flat.warnings[0].contains("`auth` → [auth] enabled"));
    let dir2 = tempfile::tempdir().unwrap();
    let sectioned = file(
        dir2.path(),
        "[server]\nlisten = \"0.0.0.0:6000\"\ndata_dir = \"/srv/berth\"\nlog_format = \"json\"\n\
         [storage]\nurl = \"s3://bucket/berth\"\ns3_endpoint = \"http://127.0.0.1:8333\"\n\
         s3_path_style = true\nredirect = true\nupload_ttl = \"2h\"\n\
         [database]\nurl = \"postgres://berth:pw@db/berth\"\n\
         [auth]\nenabled = true\nrealm = \"https://r/auth/token\"\nusers_may_create_namespaces = true\n\
         [gc]\ninterval = \"10m\"\nuntagged = true\ndelete_referrers = false\n",
    );
    let from_sections = load(Some(&sectioned), &[], &[]).unwrap();
    assert!(from_sections.warnings.is_empty());
    assert_eq!(from_flat.config, from_sections.config);
    assert!(from_flat.config.auth.enabled);
    assert_eq!(
        from_flat.config.storage.s3_endpoint.as_deref(),
        Some("http://127.0.0.1:8333")
    );

    // Each legacy key alone, flat, equals the same key in its section.
    for key in KEYS.iter().filter(|key| key.is_legacy()) {
        let (value, _, _) = samples(key.value_name)
            .iter()
            .copied()
            .find(|(value, _, _)| {
                let table: toml::Table = toml::from_str(&format!("v = {value}")).unwrap();
                (key.set)(&mut Config::default(), values::Raw::Toml(&table["v"])).is_ok()
            })
            .unwrap();
        let sectioned = load(
            Some(&file(dir.path(), &file_text(key, value, false))),
            &[],
            &[],
        )
        .unwrap();
        let flat_text = file_text(key, value, true);
        let flat = load(Some(&file(dir.path(), &flat_text)), &[], &[])
            .unwrap_or_else(|e| panic!("{}: {e}\n{flat_text}", key.qualified()));
        assert_eq!(flat.config, sectioned.config, "{}", key.qualified());
    }
}

#[test]
fn newer_keys_have_no_flat_spelling_and_keys_are_set_once() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "shutdown_timeout = \"5s\"",
            "it belongs in a section: [server] shutdown_timeout",
        ),
        (
            "trusted_proxies = [\"10.0.0.1\"]",
            "[server] trusted_proxies",
        ),
        (
            "listen = \"127.0.0.1:1\"\n[server]\nlisten = \"127.0.0.1:2\"",
            "set twice",
        ),
        // TOML itself refuses a key that is both a value and a table.
        ("auth = true\n[auth]\nenabled = false", "duplicate key"),
    ];
    for (text, expected) in cases {
        let err = load(Some(&file(dir.path(), text)), &[], &[]).unwrap_err();
        assert!(err.to_string().contains(expected), "{text}: {err}");
    }
}

#[test]
fn unknown_keys_are_refused_with_the_closest_known_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "lisen = \"127.0.0.1:1\"",
            "unknown key `lisen`; did you mean `listen`?",
        ),
        ("s3_endpiont = \"http://x\"", "did you mean `s3_endpoint`?"),
        (
            "[server]\nlistn = \"127.0.0.1:1\"",
            "unknown key `server.listn`; did you mean `listen`?",
        ),
        ("[server]\ninterval = \"1h\"", "`interval` belongs in [gc]"),
        (
            "[server]\nurl = \"s3://b\"",
            "`url` belongs in [storage] or [database]",
        ),
        (
            "url = \"s3://b\"",
            "it belongs in a section: [storage] url or [database] url",
        ),
        ("[gc]\ngrace = \"1h\"", "did you mean `grace_period`?"),
        ("[auth]\nenable = true", "did you mean `enabled`?"),
        (
            "[srever]\nlisten = \"127.0.0.1:1\"",
            "did you mean `server`?",
        ),
        (
            "[storage]\nshutdown_timout = \"1s\"",
            "[storage] has no such key",
        ),
        ("completely_unrelated = 1", "see `berth config check`"),
    ];
    for (text, expected) in cases {
        let err = load(Some(&file(dir.path(), text)), &[], &[]).unwrap_err();
        assert!(
            matches!(err, ConfigError::UnknownKey { .. }),
            "{text}: {err}"
        );
        assert!(err.to_string().contains(expected), "{text}: {err}");
    }
}

/// A bad value is reported with its key and the source that gave it; a bad
/// value is reported even where a higher source overrides it.
#[test]
fn invalid_values_name_the_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, Vars, &[&str], &str)] = &[
        (
            "[server]\nlisten = \"nonsense\"",
            &[],
            &[],
            "invalid server.listen (file ",
        ),
        (
            "",
            &[("BERTH_LISTEN", "nonsense")],
            &[],
            "invalid server.listen (env BERTH_LISTEN)",
        ),
        (
            "",
            &[],
            &["--listen", "nonsense"],
            "invalid server.listen (flag --listen)",
        ),
        (
            "[server]\nlisten = \"nonsense\"",
            &[],
            &["--listen", "127.0.0.1:1"],
            "server.listen (file",
        ),
        ("upload_ttl = \"forever\"", &[], &[], "storage.upload_ttl"),
        (
            "upload_ttl = \"5s\"",
            &[],
            &[],
            "invalid storage.upload_ttl (file",
        ),
        ("", &[], &["--upload-ttl", "5s"], "must be at least 1m"),
        ("listen = ", &[], &[], "berth.toml"),
        ("log = \"[[[\"", &[], &[], "server.log"),
        ("[gc]\ninterval = \"0s\"", &[], &[], "gc.interval"),
        (
            "[scanner]\nadvisory_sync_interval = \"10s\"",
            &[],
            &[],
            "scanner.advisory_sync_interval",
        ),
        (
            "[scanner]\nadvisory_urls = [\"file:///osv/all.zip\"]",
            &[],
            &[],
            "not an http or https URL",
        ),
        ("gc_untagged = \"yes\"", &[], &[], "expected true or false"),
        (
            "",
            &[("BERTH_AUTH", "yes")],
            &[],
            "auth.enabled (env BERTH_AUTH)",
        ),
        ("[gc]\nbatch_size = -1", &[], &[], "gc.batch_size"),
        ("[gc]\nbatch_size = 0", &[], &[], "must be at least 1"),
        (
            "database = \"mysql://u:secret@x\"",
            &[],
            &[],
            "database.url",
        ),
        ("database = \"sqlite://\"", &[], &[], "database.url"),
        ("cache_ttl = \"often\"", &[], &[], "server.cache_ttl"),
        ("storage = \"gs://bucket\"", &[], &[], "storage.url"),
        ("redirect = true", &[], &[], "redirects need s3:// storage"),
        (
            "[server]\ntls_cert = \"c.pem\"",
            &[],
            &[],
            "tls_cert and tls_key",
        ),
        (
            "[storage]\ns3_part_size = \"1MiB\"",
            &[],
            &[],
            "at least 5MiB",
        ),
        (
            "[storage]\ns3_access_key_id = \"id\"",
            &[],
            &[],
            "must be given together",
        ),
        (
            "[server]\ntrusted_proxies = \"10.0.0.1\"",
            &[],
            &[],
            "expected an array",
        ),
        (
            "[server]\ntrusted_proxies = [\"proxy.example\"]",
            &[],
            &[],
            "server.trusted_proxies",
        ),
        ("[auth]\nservice = \"\"", &[], &[], "auth.service"),
    ];
    for (text, env, args, expected) in cases {
        let err = load(Some(&file(dir.path(), text)), env, args).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(expected),
            "{text} {env:?} {args:?}: {message}"
        );
        assert!(!message.contains("u:secret"), "a secret in {message}");
    }
    let missing = load(Some(&dir.path().join("absent.toml")), &[], &[]);
    assert!(matches!(missing, Err(ConfigError::Read { .. })));
}

/// `--config` and `BERTH_CONFIG` name the file; the flag wins.
#[test]
fn the_file_comes_from_the_flag_or_berth_config() {
    let dir = tempfile::tempdir().unwrap();
    let by_env = dir.path().join("env.toml");
    std::fs::write(&by_env, "[server]\nlisten = \"127.0.0.1:6001\"\n").unwrap();
    let by_flag = dir.path().join("flag.toml");
    std::fs::write(&by_flag, "[server]\nlisten = \"127.0.0.1:6002\"\n").unwrap();
    let env = [("BERTH_CONFIG", by_env.to_str().unwrap())];
    let loaded = load(None, &env, &[]).unwrap();
    assert_eq!(loaded.config.server.listen.port(), 6001);
    let loaded = load(None, &env, &["--config", by_flag.to_str().unwrap()]).unwrap();
    assert_eq!(loaded.config.server.listen.port(), 6002);
}

/// Switches (`--auth`) take no value; their variables take true or false,
/// and an explicit false overrides the file.
#[test]
fn switches_and_their_variables() {
    let dir = tempfile::tempdir().unwrap();
    let on = file(dir.path(), "[auth]\nenabled = true\n");
    let cases: &[(Option<&Path>, Vars, &[&str], bool)] = &[
        (None, &[], &[], false),
        (None, &[], &["--auth"], true),
        (None, &[("BERTH_AUTH", "true")], &[], true),
        (Some(&on), &[], &[], true),
        (Some(&on), &[("BERTH_AUTH", "false")], &[], false),
        (Some(&on), &[("BERTH_AUTH", "false")], &["--auth"], true),
        // An empty variable counts as unset.
        (Some(&on), &[("BERTH_AUTH", "")], &[], true),
    ];
    for (path, env, args, expected) in cases {
        let loaded = load(*path, env, args).unwrap();
        assert_eq!(
            loaded.config.auth.enabled, *expected,
            "{path:?} {env:?} {args:?}"
        );
    }
    assert!(
        flags(&["--auth", "--users-may-create-namespaces"])
            .flags
            .len()
            == 2
    );
}

/// The standard AWS variables supply the S3 endpoint and region below the
/// file; Berth's own settings win over them.
#[test]
fn aws_variables_are_fallbacks_for_the_s3_settings() {
    let dir = tempfile::tempdir().unwrap();
    let aws = [
        ("AWS_ENDPOINT_URL", "http://aws-endpoint:8333"),
        ("AWS_ENDPOINT", "http://older-variable:8333"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
    ];
    let loaded = load(None, &aws, &[]).unwrap();
    assert_eq!(
        loaded.config.storage.s3_endpoint.as_deref(),
        Some("http://aws-endpoint:8333")
    );
    assert_eq!(
        *loaded.source("storage.s3_endpoint"),
        Source::Env("AWS_ENDPOINT_URL".into())
    );
    assert_eq!(loaded.config.storage.s3_region, "eu-west-1");
    let with_region = [
        ("AWS_REGION", "eu-central-1"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
    ];
    assert_eq!(
        load(None, &with_region, &[])
            .unwrap()
            .config
            .storage
            .s3_region,
        "eu-central-1"
    );

    let path = file(dir.path(), "[storage]\ns3_region = \"us-west-2\"\n");
    let loaded = load(Some(&path), &aws, &[]).unwrap();
    assert_eq!(loaded.config.storage.s3_region, "us-west-2");
    let loaded = load(
        Some(&path),
        &[
            ("AWS_ENDPOINT_URL", "http://aws:1"),
            ("BERTH_S3_ENDPOINT", "http://berth:2"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(
        loaded.config.storage.s3_endpoint.as_deref(),
        Some("http://berth:2")
    );
}

#[test]
fn durations_table() {
    let cases: &[(&str, Option<Duration>)] = &[
        ("30s", Some(Duration::from_secs(30))),
        ("10m", Some(Duration::from_secs(600))),
        ("1h 30m", Some(Duration::from_secs(5400))),
        ("7d", Some(Duration::from_secs(7 * 86400))),
        ("250ms", Some(Duration::from_millis(250))),
        ("0s", Some(Duration::ZERO)),
        ("soon", None),
        ("10", None),
        ("", None),
    ];
    for (text, expected) in cases {
        assert_eq!(Duration::parse_text(text).ok(), *expected, "{text:?}");
        if let Some(duration) = expected {
            let shown = duration.show().unwrap();
            let table: toml::Table = toml::from_str(&format!("v = {shown}")).unwrap();
            assert_eq!(Duration::parse_toml(&table["v"]).unwrap(), *duration);
        }
    }
    let number: toml::Table = toml::from_str("v = 30").unwrap();
    assert!(Duration::parse_toml(&number["v"])
        .unwrap_err()
        .contains("expected a string"));
}

#[test]
fn sizes_table() {
    let cases: &[(&str, Option<u64>, &str)] = &[
        ("8MiB", Some(8 << 20), "\"8MiB\""),
        ("512 KiB", Some(512 << 10), "\"512KiB\""),
        ("1gib", Some(1 << 30), "\"1GiB\""),
        ("1GB", Some(1_000_000_000), "\"1GB\""),
        ("1500", Some(1500), "\"1500B\""),
        ("2048", Some(2048), "\"2KiB\""),
        ("0", Some(0), "\"0B\""),
        ("1.5MiB", None, ""),
        ("-1", None, ""),
        ("8 MiBs", None, ""),
        ("MiB", None, ""),
        ("99999999999TiB", None, ""),
    ];
    for (text, expected, shown) in cases {
        let parsed = ByteSize::parse_text(text).ok().map(|size| size.0);
        assert_eq!(parsed, *expected, "{text:?}");
        if let Some(bytes) = expected {
            assert_eq!(ByteSize(*bytes).show().unwrap(), *shown, "{text:?}");
        }
    }
    let table: toml::Table = toml::from_str("a = 1048576\nb = \"1MiB\"\nc = -5\nd = true").unwrap();
    assert_eq!(ByteSize::parse_toml(&table["a"]), Ok(ByteSize(1 << 20)));
    assert_eq!(ByteSize::parse_toml(&table["b"]), Ok(ByteSize(1 << 20)));
    assert!(ByteSize::parse_toml(&table["c"]).is_err());
    assert!(ByteSize::parse_toml(&table["d"]).is_err());
}

#[test]
fn trusted_proxy_networks_table() {
    let cases: &[(&str, Option<&str>)] = &[
        ("10.0.0.0/8", Some("10.0.0.0/8")),
        ("10.1.2.3/8", Some("10.0.0.0/8")),
        ("192.168.1.7", Some("192.168.1.7/32")),
        ("::1", Some("::1/128")),
        ("fd00::/8", Some("fd00::/8")),
        ("proxy.example", None),
        ("10.0.0.0/33", None),
    ];
    for (text, expected) in cases {
        let parsed = ipnet::IpNet::parse_text(text)
            .ok()
            .map(|net| net.to_string());
        assert_eq!(parsed.as_deref(), *expected, "{text}");
    }
}

#[test]
fn sendfile_values_table() {
    use berth_server::Sendfile;
    let texts: &[(&str, Option<Sendfile>)] = &[
        ("auto", Some(Sendfile::Auto)),
        ("true", Some(Sendfile::Always)),
        ("false", Some(Sendfile::Never)),
        ("always", None),
        ("", None),
    ];
    for (text, expected) in texts {
        assert_eq!(Sendfile::parse_text(text).ok(), *expected, "{text:?}");
    }
    let files: &[(&str, Option<Sendfile>)] = &[
        ("\"auto\"", Some(Sendfile::Auto)),
        ("true", Some(Sendfile::Always)),
        ("false", Some(Sendfile::Never)),
        ("\"true\"", None),
        ("1", None),
    ];
    for (literal, expected) in files {
        let value: toml::Value =
            toml::from_str::<toml::Table>(&format!("v = {literal}")).unwrap()["v"].clone();
        let parsed = Sendfile::parse_toml(&value);
        assert_eq!(
            parsed.as_ref().ok(),
            expected.as_ref(),
            "{literal}: {parsed:?}"
        );
        if let Ok(parsed) = parsed {
            let shown = parsed.show().unwrap();
            let again: toml::Value =
                toml::from_str::<toml::Table>(&format!("v = {shown}")).unwrap()["v"].clone();
            assert_eq!(
                Sendfile::parse_toml(&again),
                Ok(parsed),
                "{literal} shown as {shown}"
            );
        }
    }
}

#[test]
fn database_urls_table() {
    let cases: &[(&str, Option<DatabaseUrl>, &str)] = &[
        (
            "sqlite:///var/lib/berth/meta.db",
            Some(DatabaseUrl::Sqlite("/var/lib/berth/meta.db".into())),
            "sqlite:///var/lib/berth/meta.db",
        ),
        (
            "postgres://berth:s3cret@db:5432/berth",
            Some(DatabaseUrl::Postgres(
                "postgres://berth:s3cret@db:5432/berth".into(),
            )),
            "postgres://berth:***@db:5432/berth",
        ),
        (
            "postgresql://db/berth",
            Some(DatabaseUrl::Postgres("postgresql://db/berth".into())),
            "postgresql://db/berth",
        ),
        (
            "postgres://berth@db/berth",
            Some(DatabaseUrl::Postgres("postgres://berth@db/berth".into())),
            "postgres://berth@db/berth",
        ),
        ("mysql://db", None, ""),
        ("berth.db", None, ""),
    ];
    for (input, expected, redacted) in cases {
        let got = DatabaseUrl::parse_text(input).ok();
        assert_eq!(&got, expected, "{input}");
        if let Some(url) = got {
            assert_eq!(url.redacted(), *redacted);
        }
    }
}

/// With access control on, a listener reachable from other machines needs
/// TLS, an explicit realm or trusted proxies.
#[test]
fn exposure_table() {
    let cases: &[(&str, bool, &str, bool)] = &[
        // (listen, auth, one extra setting, refused)
        ("127.0.0.1:5000", true, "", false),
        ("[::1]:5000", true, "", false),
        ("0.0.0.0:5000", false, "", false),
        ("0.0.0.0:5000", true, "", true),
        ("10.0.0.5:5000", true, "", true),
        ("[::]:5000", true, "", true),
        ("0.0.0.0:5000", true, "tls", false),
        ("0.0.0.0:5000", true, "realm", false),
        ("0.0.0.0:5000", true, "proxies", false),
    ];
    for (listen, auth, extra, refused) in cases {
        let mut config = Config::default();
        config.server.listen = listen.parse().unwrap();
        config.auth.enabled = *auth;
        match *extra {
            "tls" => {
                config.server.tls_cert = Some("c.pem".into());
                config.server.tls_key = Some("k.pem".into());
            }
            "realm" => config.auth.realm = Some("https://registry.example/auth/token".into()),
            "proxies" => {
                config.server.trusted_proxies = vec![ipnet::IpNet::parse_text("10.0.0.1").unwrap()]
            }
            _ => {}
        }
        let problem = config.exposure_problem();
        assert_eq!(problem.is_some(), *refused, "{listen} {auth} {extra}");
        if let Some(message) = problem {
            for way_out in ["--tls-cert", "--auth-realm", "--trusted-proxies"] {
                assert!(message.contains(way_out), "{message}");
            }
        }
    }
}

/// `berth config check` prints every key; read back as a file, its output
/// gives the same configuration (secrets aside, which it never shows).
#[test]
fn the_check_listing_reads_back_as_the_same_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        dir.path(),
        "[server]\nlisten = \"0.0.0.0:6000\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
         shutdown_timeout = \"1m 30s\"\n[storage]\nurl = \"s3://bucket/berth\"\n\
         s3_part_size = \"16MiB\"\ns3_access_key_id = \"id\"\ns3_secret_access_key = \"very-secret\"\n\
         [database]\nurl = \"postgres://berth:hunter2@db/berth\"\n[gc]\nuntagged = true\n",
    );
    let loaded = load(Some(&path), &[("BERTH_GC_BATCH_SIZE", "42")], &["--auth"]).unwrap();
    let listing = reference::check_listing(&loaded);
    assert!(!listing.contains("very-secret"), "{listing}");
    assert!(!listing.contains("hunter2"), "{listing}");
    assert!(listing.contains("# env BERTH_GC_BATCH_SIZE"), "{listing}");
    assert!(listing.contains("# flag --auth"), "{listing}");
    assert!(listing.contains("# tls_cert is unset: none"), "{listing}");
    for key in KEYS {
        assert!(
            listing.contains(&format!("\n{} = ", key.name))
                || listing.contains(&format!("# {} is unset", key.name)),
            "{} missing from\n{listing}",
            key.qualified()
        );
    }
    let reread = load(Some(&file(dir.path(), &listing)), &[], &[]).unwrap();
    // Secrets read back as what was shown in their place.
    assert_eq!(
        reread.config.database.url,
        Some(DatabaseUrl::Postgres(
            "postgres://berth:***@db/berth".into()
        ))
    );
    assert_eq!(
        reread
            .config
            .storage
            .s3_secret_access_key
            .as_ref()
            .map(|s| s.expose()),
        Some("***")
    );
    let mut expected = loaded.config.clone();
    expected.storage.s3_secret_access_key = reread.config.storage.s3_secret_access_key.clone();
    expected.database.url = reread.config.database.url.clone();
    assert_eq!(reread.config, expected);
}

/// README.md's configuration tables are generated from the declaration, so
/// they cannot drift from it. `BERTH_UPDATE_README=1` rewrites them.
#[test]
fn readme_configuration_tables_match_the_declaration() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let begin = readme
        .find(reference::README_BEGIN)
        .expect("README.md has the configuration table's begin marker");
    let end = readme
        .find(reference::README_END)
        .expect("README.md has the configuration table's end marker");
    let start = begin + reference::README_BEGIN.len();
    let generated = format!("\n{}\n", reference::readme_tables().trim());
    if readme[start..end] == generated {
        return;
    }
    if std::env::var_os("BERTH_UPDATE_README").is_some() {
        let updated = format!("{}{generated}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "README.md's configuration tables differ from crates/berth/src/config/keys.rs; \
         run `BERTH_UPDATE_README=1 cargo test -p berth readme` and commit README.md"
    );
}
