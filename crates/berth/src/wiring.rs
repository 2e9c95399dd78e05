//! Wiring: the concrete backends the configuration names, opened, checked
//! and handed on as trait objects.
//!
//! **Architecture Invariant:** this module is the only place that names
//! concrete backends (`FsBlobStore`, `S3BlobStore`, `SqliteMetaStore`,
//! `PostgresMetaStore`). Every failure to open one is reported with the
//! setting that chose it and where that setting came from, so a
//! misconfiguration stops the start with a message saying what to fix.

use std::sync::Arc;
use std::time::Duration;

use berth_auth::keys::KeyOrigin;
use berth_auth::{AuthStore, Secret};
use berth_meta::auth::AuthMetaStore;
use berth_meta::sqlite::SqliteMetaStore;
use berth_meta::MetaStore;
use berth_oci::Algorithm;
use berth_oci::UploadId;
use berth_registry::advisor::{ScanOptions, ScanWorkers};
use berth_registry::{Registry, RegistryConfig};
use berth_server::ServerSettings;
use berth_storage::fs::FsBlobStore;
use berth_storage::{BlobStore, ByteStream};
use bytes::Bytes;
use futures::StreamExt;

use crate::config::values::{DatabaseUrl, StorageUrl};
use crate::config::{Config, Environment, Loaded};
use crate::{files, legacy_signing_key};

/// How long a presigned blob URL stays valid: long enough for a slow client
/// to start the download, short enough that a leaked URL soon expires.
const REDIRECT_EXPIRY: Duration = Duration::from_secs(300);

/// The metadata store and its access-control tables: one database, seen
/// through two traits.
pub struct Databases {
    pub meta: Arc<dyn MetaStore>,
    pub auth: Arc<dyn AuthMetaStore>,
}

/// What `serve` and `gc` work on.
pub struct Opened {
    pub registry: Registry,
    pub auth_meta: Arc<dyn AuthMetaStore>,
}

/// Whether opening the registry also proves that storage works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageCheck {
    /// Write, read and delete a probe blob ([`check_storage`]): what
    /// `berth serve` does before it listens.
    Probe,
    /// Only open the store (`berth gc`, whose first operations show soon
    /// enough whether storage works).
    OpenOnly,
}

/// Opens storage and the database and builds the registry on them, under
/// `node_name` (a random one if `None`: `berth gc`, whose leases no later
/// process needs to recognise).
pub async fn open_registry(
    loaded: &Loaded,
    check: StorageCheck,
    node_name: Option<String>,
) -> Result<Opened, String> {
    let config = &loaded.config;
    let blobs = open_storage(loaded)?;
    if check == StorageCheck::Probe {
        check_storage(loaded, blobs.as_ref()).await?;
    }
    let databases = open_database_described(loaded).await?;
    let mut registry_config = registry_config(config);
    if let Some(node_name) = node_name {
        registry_config.node_name = node_name;
    }
    let registry = Registry::new(blobs, databases.meta, registry_config);
    Ok(Opened {
        registry,
        auth_meta: databases.auth,
    })
}

/// The domain's settings, from the configuration.
fn registry_config(config: &Config) -> RegistryConfig {
    RegistryConfig {
        upload_ttl: config.storage.upload_ttl,
        gc_grace_period: config.gc.grace_period,
        gc_untagged_age: config.gc.untagged.then_some(config.gc.untagged_age),
        delete_referrers: config.gc.delete_referrers,
        gc_batch_size: config.gc.batch_size,
        manifest_cache_ttl: config.server.cache_ttl,
        redirect_expiry: config.storage.redirect.then_some(REDIRECT_EXPIRY),
        event_retention: config.events.retention,
        pull_events: config.events.pulls,
        trash_retention: config.lifecycle.trash_retention,
        default_storage_limit: config.quota.default_storage.map(|size| size.0),
        default_traffic_limit: config.quota.default_traffic.map(|size| size.0),
        ..RegistryConfig::default()
    }
}

/// Makes the configured upstreams' namespaces proxy namespaces of
/// `registry` (each with its HTTP client, its password read now), and
/// creates those namespaces that do not exist yet, private unless the
/// upstream says `public = true`. An existing namespace keeps its
/// visibility: an administrator may have changed it.
pub async fn attach_upstreams(loaded: &Loaded, registry: &Registry) -> Result<(), String> {
    if loaded.upstreams.is_empty() {
        return Ok(());
    }
    let mut settings = Vec::new();
    for upstream in &loaded.upstreams {
        let client = crate::upstream::HttpUpstream::new(upstream)?;
        settings.push(berth_registry::ProxySettings {
            namespace: upstream.namespace.clone(),
            tag_ttl: upstream.tag_ttl,
            docker_hub: upstream.is_docker_hub(),
            max_size: upstream.max_size.map(|size| size.0),
            root: upstream.root,
            upstream: Arc::new(client),
        });
        let visibility = if upstream.public {
            berth_registry::Visibility::Public
        } else {
            berth_registry::Visibility::Private
        };
        let actor = berth_registry::Actor::system("proxy");
        match registry
            .create_namespace(&actor, &upstream.namespace, visibility, None)
            .await
        {
            Ok(_) | Err(berth_registry::RegistryError::NamespaceExists) => {}
            Err(e) => {
                return Err(format!(
                    "cannot create the namespace {} of upstream {}: {e}",
                    upstream.namespace, upstream.url
                ))
            }
        }
        tracing::info!(namespace = %upstream.namespace, url = %upstream.url, "mirroring an upstream registry");
    }
    registry.attach_upstreams(settings);
    Ok(())
}

/// The scan workers of this node, with the `[scanner]` settings.
pub fn scan_workers(config: &Config, registry: Registry) -> ScanWorkers {
    let limits = berth_scanner::Limits {
        max_decompressed_bytes: config.scanner.max_layer_bytes.0,
        max_file_size: config.scanner.max_file_size.0,
        ..berth_scanner::Limits::default()
    };
    let options = ScanOptions {
        workers: config.scanner.workers,
        lease: config.scanner.lease,
        attach_sbom: config.scanner.attach_sbom,
        ..ScanOptions::default()
    };
    ScanWorkers::new(registry, berth_scanner::Indexer::new(limits), options)
}

/// The scheduled sync of the `[scanner]` advisory sources, downloading
/// with the bounded HTTP client.
pub fn advisory_sync(
    config: &Config,
    registry: Registry,
) -> Result<berth_registry::advisory_sync::AdvisorySync, String> {
    let fetcher = crate::advisory_fetch::HttpFetcher::new(Default::default())?;
    Ok(berth_registry::advisory_sync::AdvisorySync::new(
        registry,
        Arc::new(fetcher),
        advisory_urls(config),
        config.scanner.advisory_sync_interval,
    ))
}

/// The configured advisory sources, as text.
pub fn advisory_urls(config: &Config) -> Vec<String> {
    config
        .scanner
        .advisory_urls
        .iter()
        .map(|url| url.as_str().to_string())
        .collect()
}

/// The HTTP layer's settings, from the configuration.
pub fn server_settings(config: &Config) -> ServerSettings {
    ServerSettings {
        trusted_proxies: config.server.trusted_proxies.clone(),
        idle_timeout: config.server.idle_timeout,
        header_timeout: config.server.header_timeout,
        body_timeout: config.server.body_timeout,
        max_connections: config.server.max_connections,
        max_connections_per_address: config.server.max_connections_per_address,
        sendfile: config.server.sendfile,
    }
}

/// What to check when storage cannot be opened or fails its probe.
fn storage_hint(loaded: &Loaded) -> String {
    match loaded.config.storage_url() {
        StorageUrl::Fs(_) => format!(
            "Check {} and {}: the directory must be writable by the user berth runs as",
            loaded.describe("storage.url"),
            loaded.describe("server.data_dir")
        ),
        StorageUrl::S3(_) => {
            let credentials = match loaded.source("storage.s3_access_key_id") {
                crate::config::Source::Default => {
                    "the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY variables".to_string()
                }
                _ => format!(
                    "{} and storage.s3_secret_access_key",
                    loaded.describe("storage.s3_access_key_id")
                ),
            };
            format!(
                "Check {}, that the bucket exists, {}, {}, {} and the credentials ({credentials})",
                loaded.describe("storage.url"),
                loaded.describe("storage.s3_endpoint"),
                loaded.describe("storage.s3_region"),
                loaded.describe("storage.s3_path_style"),
            )
        }
    }
}

/// Opens the configured blob store (without contacting a remote one; see
/// [`check_storage`]).
fn open_storage(loaded: &Loaded) -> Result<Arc<dyn BlobStore>, String> {
    let config = &loaded.config;
    let url = config.storage_url();
    let failed = |e: &dyn std::fmt::Display| {
        format!(
            "cannot open blob storage {}: {e}. {}",
            describe_storage(&url),
            storage_hint(loaded)
        )
    };
    match &url {
        StorageUrl::Fs(root) => {
            // The store's root is private like the data directory (see
            // `files`); FsBlobStore creates what is inside.
            files::private_directory(root).map_err(|e| failed(&e))?;
            FsBlobStore::open(root.clone())
                .map(|store| Arc::new(store) as Arc<dyn BlobStore>)
                .map_err(|e| failed(&e))
        }
        #[cfg(feature = "s3")]
        StorageUrl::S3(url) => {
            let s3 = s3_config(config, url).map_err(|e| failed(&e))?;
            berth_storage::s3::S3BlobStore::new(&s3)
                .map(|store| Arc::new(store) as Arc<dyn BlobStore>)
                .map_err(|e| failed(&e))
        }
        #[cfg(not(feature = "s3"))]
        StorageUrl::S3(_) => Err(format!(
            "{} names S3 storage, but this berth was built without S3 support (the `s3` \
             feature)",
            loaded.describe("storage.url")
        )),
    }
}

/// The S3 store's settings. Berth's own keys (with the standard AWS
/// variables as fallbacks for the endpoint and region, see `config/keys.rs`)
/// decide; without an access key, object_store reads the remaining `AWS_*`
/// variables (credentials, session token, web identity) itself.
#[cfg(feature = "s3")]
fn s3_config(config: &Config, url: &str) -> Result<berth_storage::s3::S3Config, String> {
    let storage = &config.storage;
    let mut s3 = berth_storage::s3::S3Config::from_url(url).map_err(|e| e.to_string())?;
    if let Some(endpoint) = &storage.s3_endpoint {
        // A plain-HTTP endpoint is allowed because it was written down as
        // such, in Berth's settings or in AWS_ENDPOINT_URL; object_store
        // would otherwise refuse every request to it (the AWS_ALLOW_HTTP it
        // reads from the environment is overridden by this setting).
        s3.allow_http = endpoint.starts_with("http://");
        s3.endpoint = Some(endpoint.clone());
    }
    s3.region = storage.s3_region.clone();
    s3.path_style = storage.s3_path_style;
    s3.access_key_id = storage.s3_access_key_id.clone();
    s3.secret_access_key = storage
        .s3_secret_access_key
        .as_ref()
        .map(|secret| secret.expose().to_string());
    s3.from_env = storage.s3_access_key_id.is_none();
    s3.part_size = usize::try_from(storage.s3_part_size.0).map_err(|e| e.to_string())?;
    s3.validate().map_err(|e| e.to_string())?;
    Ok(s3)
}

/// The storage URL for messages (no secrets in it).
fn describe_storage(url: &StorageUrl) -> String {
    match url {
        StorageUrl::Fs(path) => format!("fs://{}", path.display()),
        StorageUrl::S3(url) => url.clone(),
    }
}

/// Writes, reads back and deletes a probe blob through `blobs`, so that a
/// store that cannot do all three stops the start rather than failing the
/// first push with a 500.
///
/// The probe's content names a fresh upload id, so its digest is one no
/// repository can reference, and deleting it touches nothing else. A crash
/// between storing and deleting leaves an object the metadata does not
/// know, which the garbage collector's orphan sweep removes.
async fn check_storage(loaded: &Loaded, blobs: &dyn BlobStore) -> Result<(), String> {
    probe_storage(blobs).await.map_err(|e| {
        // Object stores put their XML error documents, line breaks and all,
        // in the error; one line reads better and greps.
        let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
        format!(
            "blob storage {} failed its start-up check (writing, reading and deleting a \
             probe blob): {e}. {}",
            describe_storage(&loaded.config.storage_url()),
            storage_hint(loaded)
        )
    })
}

async fn probe_storage(blobs: &dyn BlobStore) -> Result<(), String> {
    let id = UploadId::new_random();
    let content = Bytes::from(format!("berth start-up probe {id}\n"));
    let digest = Algorithm::Sha256.digest_of(&content);
    let started = blobs
        .begin_upload(&id)
        .await
        .map_err(|e| format!("starting an upload: {e}"))?;
    let body: ByteStream = Box::pin(futures::stream::iter([Ok(content.clone())]));
    let written = match blobs.write_chunk(&id, &started, body).await {
        Ok(progress) => progress,
        Err(e) => {
            let _ = blobs.abort_upload(&id, Some(&started)).await;
            return Err(format!("writing: {e}"));
        }
    };
    if let Err(e) = blobs.finish_upload(&id, &written, &digest).await {
        let _ = blobs.abort_upload(&id, Some(&written)).await;
        return Err(format!("storing: {e}"));
    }
    let read = async {
        let mut body = blobs.read_blob(&digest, None).await?;
        let mut bytes = Vec::new();
        while let Some(piece) = body.stream.next().await {
            bytes.extend_from_slice(&piece?);
        }
        Ok::<_, berth_storage::StorageError>(bytes)
    }
    .await;
    let deleted = blobs.delete_blob(&digest).await;
    match read {
        Ok(bytes) if bytes == content => {}
        Ok(_) => return Err("reading: the probe came back with other bytes".into()),
        Err(e) => return Err(format!("reading: {e}")),
    }
    deleted.map_err(|e| format!("deleting: {e}"))
}

/// Opens the configured metadata database, running its migrations, and
/// says which setting to fix when that fails.
async fn open_database_described(loaded: &Loaded) -> Result<Databases, String> {
    open_database(&loaded.config).await.map_err(|e| {
        let hint = match loaded.config.database_url() {
            DatabaseUrl::Sqlite(_) => {
                "the file's directory must be writable by the user berth runs as"
            }
            DatabaseUrl::Postgres(_) if cfg!(feature = "postgres") => {
                "PostgreSQL must be running and reachable, and the user must be allowed to \
                 connect and to create tables"
            }
            DatabaseUrl::Postgres(_) => "use a build with PostgreSQL, or a sqlite:// database",
        };
        format!("{e}. Check {}: {hint}", loaded.describe("database.url"))
    })
}

/// Opens the configured metadata database, running its migrations. SQLite
/// files are created and kept private (see `files`).
pub async fn open_database(config: &Config) -> Result<Databases, String> {
    let url = config.database_url();
    let failed = |e: &dyn std::fmt::Display| {
        format!("cannot open metadata database {}: {e}", url.redacted())
    };
    // The store enforces the default storage quota inside the transaction
    // that adds bytes, so it is handed the value here.
    let default_storage = config.quota.default_storage.map(|size| size.0);
    match &url {
        DatabaseUrl::Sqlite(path) => {
            files::private_sqlite_file(path).map_err(|e| failed(&e))?;
            let store = Arc::new(
                SqliteMetaStore::open(path)
                    .await
                    .map_err(|e| failed(&e))?
                    .with_default_storage_limit(default_storage),
            );
            Ok(Databases {
                meta: store.clone(),
                auth: store,
            })
        }
        #[cfg(feature = "postgres")]
        DatabaseUrl::Postgres(url) => {
            let store = Arc::new(
                berth_meta::postgres::PostgresMetaStore::connect(url)
                    .await
                    .map_err(|e| failed(&e))?
                    .with_default_storage_limit(default_storage),
            );
            Ok(Databases {
                meta: store.clone(),
                auth: store,
            })
        }
        #[cfg(not(feature = "postgres"))]
        DatabaseUrl::Postgres(_) => Err(failed(
            &"this berth was built without PostgreSQL support (the `postgres` feature)",
        )),
    }
}

/// The file a generated administrator password is written to, in the data
/// directory.
pub const INITIAL_ADMIN_PASSWORD_FILE: &str = "initial-admin-password";

/// Builds access control: the auth store over the metadata database, the
/// first administrator, and the token signing keys, which live in the
/// database so that every node shares them (on the first start they are
/// imported from an older install's key file, or generated).
pub async fn auth_state(
    config: &Config,
    meta: Arc<dyn AuthMetaStore>,
    env: &Environment,
) -> Result<berth_server::AuthState, String> {
    let store = Arc::new(
        berth_auth::MetaAuthStore::new(meta).with_key_encryption(key_encryption_key(config)?),
    );
    let sealed = store
        .seal_signing_keys()
        .await
        .map_err(|e| format!("cannot encrypt the stored signing keys: {e}"))?;
    if sealed > 0 {
        tracing::info!(
            sealed,
            "encrypted the signing keys stored in plain text with the key-encryption key"
        );
    }
    // Read here, not in the configuration, so the password never appears in
    // `berth config check` output or in a config struct's Debug.
    let password = env.get("BERTH_ADMIN_PASSWORD").map(Secret::new);
    seed_admin(store.as_ref(), password, &config.server.data_dir).await?;
    let data_dir = config.server.data_dir.clone();
    let (keys, origin) =
        berth_auth::keys::load_or_create(store.as_ref(), time::OffsetDateTime::now_utc(), || {
            legacy_signing_key::read(&data_dir)
        })
        .await
        .map_err(|e| format!("cannot load or create the signing keys: {e}"))?;
    let kid = keys.current().kid().to_string();
    match origin {
        KeyOrigin::Store => tracing::info!(%kid, "loaded the token signing keys"),
        KeyOrigin::Supplied => tracing::info!(
            %kid,
            path = %legacy_signing_key::key_file(&data_dir).display(),
            "imported the token signing key into the database; the file is no longer needed"
        ),
        KeyOrigin::Generated => tracing::info!(%kid, "created the token signing key"),
    }
    let authority =
        berth_auth::TokenAuthority::new(keys, &config.auth.issuer, &config.auth.service);
    Ok(berth_server::AuthState {
        store,
        authority,
        login: berth_auth::LoginGuards::new(
            berth_auth::LoginThrottle::new(berth_auth::ThrottleConfig::default()),
            berth_auth::HashingPool::for_this_machine(),
        ),
        policy: berth_auth::PolicyConfig {
            users_may_create_namespaces: config.auth.users_may_create_namespaces,
            max_token_lifetime: config
                .auth
                .max_token_lifetime
                .map(time::Duration::try_from)
                .transpose()
                .map_err(|e| format!("auth.max_token_lifetime: {e}"))?,
        },
        realm: config.auth.realm.clone(),
        tls: config.server.tls_cert.is_some(),
        refresh_token_lifetime: time::Duration::try_from(config.auth.refresh_token_lifetime)
            .map_err(|e| format!("auth.refresh_token_lifetime: {e}"))?,
    })
}

/// The key that encrypts the signing keys at rest, from
/// `[auth] key_encryption_key_file` or `key_encryption_key`
/// (`BERTH_KEY_ENCRYPTION_KEY`), if either is set.
pub fn key_encryption_key(
    config: &Config,
) -> Result<Option<berth_auth::key_encryption::KeyEncryptionKey>, String> {
    use berth_auth::key_encryption::KeyEncryptionKey;
    if let Some(path) = &config.auth.key_encryption_key_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "auth.key_encryption_key_file: cannot read {}: {e}",
                path.display()
            )
        })?;
        return KeyEncryptionKey::parse(&text)
            .map(Some)
            .map_err(|e| format!("auth.key_encryption_key_file ({}): {e}", path.display()));
    }
    match &config.auth.key_encryption_key {
        Some(text) => KeyEncryptionKey::parse(text.expose())
            .map(Some)
            .map_err(|e| format!("auth.key_encryption_key (BERTH_KEY_ENCRYPTION_KEY): {e}")),
        None => Ok(None),
    }
}

/// Creates the first administrator (`admin`) when the database has no
/// administrator (users made with `berth admin` before the first start do
/// not count): with `password` when given (from `BERTH_ADMIN_PASSWORD`),
/// else with a generated one written to [`INITIAL_ADMIN_PASSWORD_FILE`]
/// (mode 0600) in `data_dir`. The password never reaches the logs: log
/// streams are collected, shipped and kept where a password must not be.
async fn seed_admin(
    store: &dyn AuthStore,
    password: Option<Secret>,
    data_dir: &std::path::Path,
) -> Result<(), String> {
    if has_admin(store).await? {
        return Ok(());
    }
    let (password, generated) = match password {
        Some(password) => (password, false),
        None => (berth_auth::password::generate_password(), true),
    };
    // The registry itself makes the first administrator, as `berth admin`
    // changes are made, and the event stream records it so.
    let change = berth_auth::change_at(
        &berth_auth::Actor::system("admin"),
        time::OffsetDateTime::now_utc(),
    );
    match berth_auth::admin::create_user(store, "admin", &password, true, &change).await {
        Ok(()) => {}
        // Nodes sharing a database that start together race to create the
        // administrator; the ones that lose find it made by the winner.
        Err(berth_auth::admin::AdminError::AlreadyExists(_)) if has_admin(store).await? => {
            return Ok(())
        }
        Err(e) => return Err(format!("creating the administrator: {e}")),
    }
    if generated {
        let path = data_dir.join(INITIAL_ADMIN_PASSWORD_FILE);
        files::write_private_file(&path, &format!("{}\n", password.expose()))?;
        eprintln!(
            "berth: created the administrator \"admin\"; its generated password is in {} \
             (readable only by this user). Delete the file once you have it; set \
             BERTH_ADMIN_PASSWORD before the first start to choose the password instead.",
            path.display()
        );
    }
    tracing::info!("created the administrator account \"admin\"");
    Ok(())
}

async fn has_admin(store: &dyn AuthStore) -> Result<bool, String> {
    Ok(store
        .list_users()
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .any(|user| user.is_admin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigArgs;

    fn loaded_for(data_dir: &std::path::Path) -> Loaded {
        let env = Environment::from_pairs([("BERTH_DATA_DIR", data_dir.to_str().unwrap())]);
        ConfigArgs::default().load(&env).unwrap()
    }

    /// Issue 11: with a key-encryption key configured (here through
    /// `BERTH_KEY_ENCRYPTION_KEY`), a start seals the signing key an
    /// earlier start stored in plain text; a start without the key, or with
    /// another, fails naming the setting, and one with it works.
    #[tokio::test]
    async fn signing_keys_are_encrypted_at_rest_once_a_key_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_str().unwrap();
        let start = |key: Option<&'static str>| {
            let mut pairs = vec![
                ("BERTH_DATA_DIR", data_dir),
                ("BERTH_ADMIN_PASSWORD", "a long enough password"),
            ];
            if let Some(key) = key {
                pairs.push(("BERTH_KEY_ENCRYPTION_KEY", key));
            }
            let env = Environment::from_pairs(pairs);
            async move {
                let loaded = ConfigArgs::default().load(&env).unwrap();
                let databases = open_database(&loaded.config).await.unwrap();
                let state = auth_state(&loaded.config, databases.auth.clone(), &env).await;
                (state.map(|_| ()), databases.auth)
            }
        };
        let private_halves = |meta: Arc<dyn AuthMetaStore>| async move {
            meta.list_signing_keys()
                .await
                .unwrap()
                .into_iter()
                .filter_map(|row| row.private_key_pem)
                .collect::<Vec<_>>()
        };
        const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        const OTHER: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

        let (first, meta) = start(None).await;
        first.unwrap();
        assert!(private_halves(meta).await[0].contains("BEGIN PRIVATE KEY"));
        let (sealed, meta) = start(Some(KEY)).await;
        sealed.unwrap();
        let stored = private_halves(meta).await;
        assert!(
            stored[0].starts_with(berth_auth::key_encryption::SEALED_PREFIX),
            "sealed at start"
        );
        assert!(!stored[0].contains("PRIVATE KEY"));
        let (without, _) = start(None).await;
        let without = without.unwrap_err();
        assert!(without.contains("BERTH_KEY_ENCRYPTION_KEY"), "{without}");
        let (wrong, _) = start(Some(OTHER)).await;
        assert!(wrong.unwrap_err().contains("does not decrypt"));
        let (malformed, _) = start(Some("not a key")).await;
        assert!(malformed.unwrap_err().contains("openssl rand -hex 32"));
        let (again, _) = start(Some(KEY)).await;
        again.unwrap();
    }

    /// The server crate's defaults (used by its tests, which build no
    /// configuration) are the declared ones.
    #[test]
    fn server_settings_defaults_are_the_declared_ones() {
        assert_eq!(
            server_settings(&Config::default()),
            ServerSettings::default()
        );
    }

    #[tokio::test]
    async fn the_storage_probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded_for(dir.path());
        let blobs = open_storage(&loaded).unwrap();
        check_storage(&loaded, blobs.as_ref()).await.unwrap();
        assert!(blobs.list_blobs(None, 10).await.unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("uploads"))
                .unwrap()
                .count(),
            0
        );
    }

    /// A storage root that cannot be a directory stops the start with a
    /// message naming the setting, where it came from, and how to set it.
    #[test]
    fn unusable_storage_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let env = Environment::from_pairs([(
            "BERTH_STORAGE",
            &*format!("fs://{}", file.join("blobs").display()),
        )]);
        let loaded = ConfigArgs::default().load(&env).unwrap();
        let error = open_storage(&loaded)
            .err()
            .expect("a file cannot hold blobs");
        for expected in [
            "cannot open blob storage",
            "storage.url (env BERTH_STORAGE)",
            "server.data_dir (default; set with --data-dir, BERTH_DATA_DIR",
        ] {
            assert!(error.contains(expected), "{expected} in {error}");
        }
    }

    #[tokio::test]
    async fn the_generated_administrator_password_goes_to_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let databases = open_database(&loaded_for(dir.path()).config).await.unwrap();
        let store = berth_auth::MetaAuthStore::new(databases.auth);
        seed_admin(&store, None, dir.path()).await.unwrap();
        let path = dir.path().join(INITIAL_ADMIN_PASSWORD_FILE);
        let password = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // The end-to-end test logs in with it.
        assert!(password.trim_end().len() >= 16, "{password:?}");
        assert!(password.ends_with('\n'));

        // A second start finds the administrator and leaves the file alone.
        std::fs::remove_file(&path).unwrap();
        seed_admin(&store, None, dir.path()).await.unwrap();
        assert!(!path.exists());
    }
}
