//! The `[[upstream]]` tables and `--upstream NS=URL`: the registries the
//! pull-through cache mirrors, each into a namespace of its own.
//!
//! Their entries are records, not keys, so they are read here rather than
//! declared in `keys.rs`: the file's tables come first, then the flags
//! (`BERTH_UPSTREAM` is not read: a list of records does not fit one
//! variable). A namespace given twice is refused, whichever sources.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::values::{toml_string, ByteSize, Setting};
use super::{ConfigError, Source};

/// How long a tag's upstream digest is believed when `tag_ttl` is not given.
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(300);
/// How long connecting to an upstream may take when `connect_timeout` is
/// not given.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait for an answer's head or its next bytes when
/// `read_timeout` is not given: beyond it, the upstream counts as down.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One upstream registry and the namespace that mirrors it.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamConfig {
    /// The proxy namespace (`hub` in `hub/alpine`).
    pub namespace: String,
    /// The upstream's base URL, `http://` or `https://` (`/v2/` is added).
    pub url: url::Url,
    /// The user name for the upstream (Basic, or the token endpoint).
    pub username: Option<String>,
    /// A file holding the upstream password (or token); read at start, so
    /// the secret itself is never part of the configuration.
    pub password_file: Option<PathBuf>,
    /// How long a tag's digest is believed before upstream is asked again.
    pub tag_ttl: Duration,
    /// How long connecting to the upstream may take.
    pub connect_timeout: Duration,
    /// The longest wait for an answer's head or its next bytes; a slower
    /// upstream counts as down (stale content is served).
    pub read_timeout: Duration,
    /// The most bytes the namespace may hold; beyond it the
    /// least-recently-pulled images are evicted (docs/proxy.md).
    pub max_size: Option<ByteSize>,
    /// Whether anyone may pull from the namespace (with access control on);
    /// private, the default, means members only.
    pub public: bool,
    /// Whether the upstream also answers at the registry's root: pulls of
    /// names outside every namespace are served from this one, as docker's
    /// `registry-mirrors` needs (it sends a mirror Docker Hub's own names).
    /// At most one upstream says so.
    pub root: bool,
    /// Where it was given.
    pub origin: Source,
}

impl UpstreamConfig {
    fn new(namespace: &str, url: &str, origin: Source) -> Result<UpstreamConfig, String> {
        Ok(UpstreamConfig {
            namespace: check_namespace(namespace)?,
            url: check_url(url)?,
            username: None,
            password_file: None,
            tag_ttl: DEFAULT_TAG_TTL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_size: None,
            public: false,
            root: false,
            origin,
        })
    }

    /// Whether the upstream is Docker Hub, whose one-component names mean
    /// `library/NAME`.
    pub fn is_docker_hub(&self) -> bool {
        matches!(
            self.url.host_str(),
            Some(
                "docker.io"
                    | "index.docker.io"
                    | "registry-1.docker.io"
                    | "registry.hub.docker.com"
            )
        )
    }

    /// The URL requests go to: Docker Hub's API host for its other names.
    pub fn api_url(&self) -> url::Url {
        let mut url = self.url.clone();
        if self.is_docker_hub() {
            let _ = url.set_host(Some("registry-1.docker.io"));
        }
        url
    }
}

fn check_namespace(name: &str) -> Result<String, String> {
    match berth_oci::RepoName::parse(name) {
        Ok(parsed) if parsed.namespace() == name => Ok(name.to_string()),
        _ => Err(format!(
            "{name:?} is not a namespace name (one lowercase path component such as `hub`)"
        )),
    }
}

fn check_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text)
        .map_err(|e| format!("{text:?} is not an http:// or https:// URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{text:?}: an upstream URL is http:// or https:// with a host"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{}: give credentials with `username` and `password_file`, not in the URL",
            url.host_str().unwrap_or_default()
        ));
    }
    Ok(url)
}

/// Reads `--upstream NS=URL`.
pub fn parse_flag(text: &str) -> Result<UpstreamConfig, String> {
    let (namespace, url) = text.split_once('=').ok_or_else(|| {
        format!("{text:?}: write NAMESPACE=URL, as in hub=https://registry-1.docker.io")
    })?;
    UpstreamConfig::new(namespace, url, Source::Flag("--upstream".into()))
}

/// Reads the file's `upstream` value: an array of tables.
pub fn parse_tables(path: &Path, value: &toml::Value) -> Result<Vec<UpstreamConfig>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "upstream".into(),
        origin: Source::File(path.into()),
        message,
    };
    let toml::Value::Array(entries) = value else {
        return Err(invalid(
            "write each upstream as an [[upstream]] table".into(),
        ));
    };
    let mut upstreams = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let toml::Value::Table(table) = entry else {
            return Err(invalid(
                "write each upstream as an [[upstream]] table".into(),
            ));
        };
        parse_table(path, table)
            .map(|upstream| upstreams.push(upstream))
            .map_err(|message| invalid(format!("entry {}: {message}", index + 1)))?;
    }
    Ok(upstreams)
}

fn parse_table(path: &Path, table: &toml::Table) -> Result<UpstreamConfig, String> {
    let text = |name: &str| -> Result<Option<&str>, String> {
        match table.get(name) {
            None => Ok(None),
            Some(toml::Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(format!(
                "`{name}` must be a string, not a {}",
                other.type_str()
            )),
        }
    };
    for name in table.keys() {
        if !FIELDS.contains(&name.as_str()) {
            return Err(format!(
                "unknown key `{name}` (known: {})",
                FIELDS.join(", ")
            ));
        }
    }
    let namespace = text("namespace")?.ok_or("`namespace` is required")?;
    check_namespace(namespace)?;
    let url = text("url")?.ok_or("`url` is required")?;
    let mut upstream = UpstreamConfig::new(namespace, url, Source::File(path.into()))?;
    upstream.username = text("username")?.map(str::to_string);
    upstream.password_file = text("password_file")?.map(PathBuf::from);
    if let Some(ttl) = table.get("tag_ttl") {
        upstream.tag_ttl = Duration::parse_toml(ttl).map_err(|e| format!("tag_ttl: {e}"))?;
    }
    for (name, field) in [
        ("connect_timeout", &mut upstream.connect_timeout),
        ("read_timeout", &mut upstream.read_timeout),
    ] {
        if let Some(value) = table.get(name) {
            let timeout = Duration::parse_toml(value).map_err(|e| format!("{name}: {e}"))?;
            // Zero would fail every request: refused rather than obeyed.
            if timeout.is_zero() {
                return Err(format!("{name}: must be longer than 0s"));
            }
            *field = timeout;
        }
    }
    if let Some(size) = table.get("max_size") {
        upstream.max_size = Some(ByteSize::parse_toml(size).map_err(|e| format!("max_size: {e}"))?);
    }
    if let Some(public) = table.get("public") {
        upstream.public = bool::parse_toml(public).map_err(|e| format!("public: {e}"))?;
    }
    if let Some(root) = table.get("root") {
        upstream.root = bool::parse_toml(root).map_err(|e| format!("root: {e}"))?;
    }
    if upstream.password_file.is_some() && upstream.username.is_none() {
        return Err("`password_file` needs a `username`".into());
    }
    Ok(upstream)
}

/// The keys of an `[[upstream]]` table.
const FIELDS: &[&str] = &[
    "namespace",
    "url",
    "username",
    "password_file",
    "tag_ttl",
    "connect_timeout",
    "read_timeout",
    "max_size",
    "public",
    "root",
];

/// Refuses a namespace mirrored twice, and two upstreams at the root.
pub fn check_unique(upstreams: &[UpstreamConfig]) -> Result<(), ConfigError> {
    for (index, upstream) in upstreams.iter().enumerate() {
        if let Some(first) = upstreams[..index]
            .iter()
            .find(|other| other.root && upstream.root)
        {
            return Err(ConfigError::Invalid {
                key: "upstream".into(),
                origin: upstream.origin.clone(),
                message: format!(
                    "namespaces {:?} and {:?} both say `root = true`; only one upstream can \
                     answer at the registry's root",
                    first.namespace, upstream.namespace
                ),
            });
        }
        if let Some(first) = upstreams[..index]
            .iter()
            .find(|other| other.namespace == upstream.namespace)
        {
            return Err(ConfigError::Invalid {
                key: "upstream".into(),
                origin: upstream.origin.clone(),
                message: format!(
                    "namespace {:?} mirrors two upstreams ({} and {}, {})",
                    upstream.namespace, first.url, upstream.url, first.origin
                ),
            });
        }
    }
    Ok(())
}

/// The `[[upstream]]` tables as `berth config check` prints them; the
/// password is never read here, and shown as `***` when a file gives one.
pub fn listing(upstreams: &[UpstreamConfig]) -> String {
    let mut out =
        String::from("\n# The registries the pull-through cache mirrors (docs/proxy.md).\n");
    if upstreams.is_empty() {
        out.push_str("\n# no [[upstream]] tables and no --upstream flags\n");
    }
    for upstream in upstreams {
        out.push_str(&format!("\n[[upstream]]  # {}\n", upstream.origin));
        out.push_str(&format!(
            "namespace = {}\n",
            toml_string(&upstream.namespace)
        ));
        out.push_str(&format!("url = {}\n", toml_string(upstream.url.as_str())));
        if let Some(username) = &upstream.username {
            out.push_str(&format!("username = {}\n", toml_string(username)));
        }
        if let Some(file) = &upstream.password_file {
            out.push_str(&format!(
                "password_file = {}  # password: ***\n",
                toml_string(&file.display().to_string())
            ));
        }
        out.push_str(&format!(
            "tag_ttl = {}\n",
            upstream.tag_ttl.show().unwrap_or_default()
        ));
        out.push_str(&format!(
            "connect_timeout = {}\nread_timeout = {}\n",
            upstream.connect_timeout.show().unwrap_or_default(),
            upstream.read_timeout.show().unwrap_or_default()
        ));
        if let Some(size) = &upstream.max_size {
            out.push_str(&format!("max_size = {}\n", size.show().unwrap_or_default()));
        }
        out.push_str(&format!("public = {}\n", upstream.public));
        if upstream.root {
            out.push_str("root = true\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<UpstreamConfig>, String> {
        let table: toml::Table = text.parse().unwrap();
        parse_tables(Path::new("berth.toml"), &table["upstream"]).map_err(|e| e.to_string())
    }

    #[test]
    fn tables_are_read_with_their_defaults() {
        let upstreams = parse(
            r#"
            [[upstream]]
            namespace = "hub"
            url = "https://docker.io"

            [[upstream]]
            namespace = "ghcr"
            url = "https://ghcr.io"
            username = "me"
            password_file = "/run/secrets/ghcr"
            tag_ttl = "1m"
            connect_timeout = "2s"
            read_timeout = "500ms"
            max_size = "10GiB"
            public = true
            root = true
            "#,
        )
        .unwrap();
        assert_eq!(upstreams.len(), 2);
        assert!(!upstreams[0].root && upstreams[1].root);
        let hub = &upstreams[0];
        assert_eq!(hub.tag_ttl, DEFAULT_TAG_TTL);
        assert_eq!(
            (hub.connect_timeout, hub.read_timeout),
            (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT)
        );
        assert!(!hub.public && hub.username.is_none() && hub.max_size.is_none());
        assert!(hub.is_docker_hub());
        assert_eq!(hub.api_url().host_str(), Some("registry-1.docker.io"));
        let ghcr = &upstreams[1];
        assert!(!ghcr.is_docker_hub());
        assert_eq!(ghcr.tag_ttl, Duration::from_secs(60));
        assert_eq!(
            (ghcr.connect_timeout, ghcr.read_timeout),
            (Duration::from_secs(2), Duration::from_millis(500))
        );
        assert_eq!(ghcr.max_size, Some(ByteSize(10 << 30)));
        assert!(ghcr.public);
        assert_eq!(ghcr.username.as_deref(), Some("me"));
    }

    #[test]
    fn bad_tables_are_refused_saying_why() {
        let cases = [
            (r#"namespace = "Hub""#, "not a namespace name"),
            (r#"namespace = "a/b""#, "not a namespace name"),
            (
                r#"namespace = "hub"
                url = "ftp://example.com""#,
                "http:// or https://",
            ),
            (
                r#"namespace = "hub"
                url = "https://u:p@example.com""#,
                "not in the URL",
            ),
            (
                r#"namespace = "hub"
                url = "https://example.com"
                tag_ttl = "soon""#,
                "tag_ttl",
            ),
            (
                r#"namespace = "hub"
                url = "https://example.com"
                read_timeout = "slow""#,
                "read_timeout",
            ),
            (
                r#"namespace = "hub"
                url = "https://example.com"
                connect_timeout = "0s""#,
                "connect_timeout: must be longer than 0s",
            ),
            (
                r#"namespace = "hub"
                url = "https://example.com"
                password_file = "/p""#,
                "needs a `username`",
            ),
            (
                r#"namespace = "hub"
                url = "https://example.com"
                passwd = "x""#,
                "unknown key `passwd`",
            ),
            (r#"url = "https://example.com""#, "`namespace` is required"),
            (
                r#"namespace = "hub"
                url = "https://example.com"
                root = "yes""#,
                "root",
            ),
        ];
        for (table, expected) in cases {
            let text = format!("[[upstream]]\n{table}\n");
            let error = parse(&text).unwrap_err();
            assert!(error.contains(expected), "{table}: {error}");
        }
    }

    #[test]
    fn flags_name_a_namespace_and_a_url() {
        let cases = [
            (
                "cache=http://127.0.0.1:5001",
                Ok(("cache", "http://127.0.0.1:5001/")),
            ),
            ("cache", Err("NAMESPACE=URL")),
            ("cache=127.0.0.1:5001", Err("http:// or https://")),
            ("=http://x", Err("not a namespace name")),
        ];
        for (flag, expected) in cases {
            let parsed = parse_flag(flag);
            match (parsed, expected) {
                (Ok(upstream), Ok((namespace, url))) => {
                    assert_eq!(upstream.namespace, namespace);
                    assert_eq!(upstream.url.as_str(), url);
                    assert_eq!(upstream.tag_ttl, DEFAULT_TAG_TTL);
                }
                (Err(error), Err(expected)) => assert!(error.contains(expected), "{flag}: {error}"),
                (parsed, expected) => panic!("{flag}: {parsed:?} vs {expected:?}"),
            }
        }
    }

    #[test]
    fn one_upstream_at_most_answers_at_the_root() {
        let upstreams = parse(
            r#"
            [[upstream]]
            namespace = "hub"
            url = "https://docker.io"
            root = true

            [[upstream]]
            namespace = "ghcr"
            url = "https://ghcr.io"
            root = true
            "#,
        )
        .unwrap();
        let error = check_unique(&upstreams).unwrap_err().to_string();
        assert!(error.contains("only one upstream"), "{error}");
        assert!(check_unique(&upstreams[..1]).is_ok());
    }

    #[test]
    fn a_namespace_mirrors_one_upstream() {
        let mut upstreams = parse(
            r#"
            [[upstream]]
            namespace = "hub"
            url = "https://docker.io"
            "#,
        )
        .unwrap();
        upstreams.push(parse_flag("hub=https://mirror.example.com").unwrap());
        let error = check_unique(&upstreams).unwrap_err().to_string();
        assert!(error.contains("two upstreams"), "{error}");
    }

    #[test]
    fn the_listing_never_shows_a_password() {
        let upstreams = parse(
            r#"
            [[upstream]]
            namespace = "ghcr"
            url = "https://ghcr.io"
            username = "me"
            password_file = "/run/secrets/ghcr"
            "#,
        )
        .unwrap();
        let listing = listing(&upstreams);
        assert!(listing.contains("password: ***"), "{listing}");
        assert!(listing.contains(r#"tag_ttl = "5m""#), "{listing}");
        assert!(listing.contains(r#"read_timeout = "30s""#), "{listing}");
    }
}
