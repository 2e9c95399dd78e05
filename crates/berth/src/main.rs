//! The `berth` binary: configuration, wiring of concrete backends, signals
//! and the command line.
//!
//! **Architecture Invariant:** this is the only crate that names concrete
//! backends (`FsBlobStore`, `SqliteMetaStore`, `PostgresMetaStore`,
//! `S3BlobStore`) and the only one that installs signal handlers or reads
//! the environment.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use berth_auth::keys::KeyOrigin;
use berth_meta::auth::AuthMetaStore;
use berth_meta::sqlite::SqliteMetaStore;
use berth_meta::MetaStore;
use berth_registry::{GcOptions, Registry, RegistryConfig};
use berth_server::AppState;
use berth_storage::fs::FsBlobStore;
use berth_storage::BlobStore;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

mod admin;
mod config;
mod events;

use config::{Config, ConfigArgs, DatabaseConfig, LogFormat, StorageConfig};

/// Berth: an OCI container registry.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the registry server.
    Serve(ConfigArgs),
    /// Administer users, namespaces, members, tokens and signing keys on the
    /// database directly.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Run one garbage-collection pass and print what it removed. Safe while
    /// servers run on the same data: it takes the same job lease they do.
    Gc(GcArgs),
    /// Read the event stream (every change, in order) on the database
    /// directly; servers may be running.
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(clap::Args, Debug)]
struct GcArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Report what would be removed, and remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also sweep the blob store for objects the metadata does not know.
    #[arg(long)]
    sweep_orphans: bool,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate the configuration (file, environment and flags) and print it.
    Check(ConfigArgs),
}

fn main() -> ExitCode {
    fix_malloc_mmap_threshold();
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check(args),
        } => match args.load() {
            Ok(config) => {
                println!("configuration is valid");
                print!("{}", config.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Admin { command } => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(admin::run(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Events { command } => events::main(command),
        Command::Gc(args) => {
            let config = match args.config.load() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            init_tracing(&config);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(gc(config, args.dry_run, args.sweep_orphans)) {
                Ok(code) => code,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve(args) => {
            let config = match args.load() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            init_tracing(&config);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(&config.log);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Opens the configured backends and builds the registry on them; also
/// returns the database's access-control tables.
async fn open_registry(config: &Config) -> Result<(Registry, Arc<dyn AuthMetaStore>), String> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let blobs = open_storage(&config.storage)?;
    let (meta, auth_meta) = open_database(&config.database).await?;
    let registry_config = RegistryConfig {
        upload_ttl: config.upload_ttl,
        gc_grace_period: config.gc_grace_period,
        gc_untagged_age: config.gc_untagged.then_some(config.gc_untagged_age),
        delete_referrers: config.delete_referrers,
        gc_batch_size: config.gc_batch_size,
        manifest_cache_ttl: config.cache_ttl,
        redirect_expiry: config.redirect.then_some(REDIRECT_EXPIRY),
        event_retention: config.event_retention,
        ..RegistryConfig::default()
    };
    let registry = Registry::new(blobs, meta, registry_config);
    Ok((registry, auth_meta))
}

/// `berth gc`: one pass, its report on stdout. Exits with 3 when another
/// process holds the garbage-collection lease.
async fn gc(config: Config, dry_run: bool, sweep_orphans: bool) -> Result<ExitCode, String> {
    let (registry, _) = open_registry(&config).await?;
    let cancel = CancellationToken::new();
    let interrupt = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            cancel.cancel();
        })
    };
    let options = GcOptions {
        dry_run,
        sweep_orphans,
        cancel,
    };
    let report = registry
        .collect_garbage(&options)
        .await
        .map_err(|e| format!("garbage collection failed: {e}"))?;
    interrupt.abort();
    println!("{report}");
    Ok(if report.lease_busy {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

async fn serve(config: Config) -> Result<(), String> {
    let (registry, auth_meta) = open_registry(&config).await?;
    let mut state = AppState::new(registry.clone());
    if config.auth.enabled {
        state = state.with_auth(auth_state(&config, auth_meta).await?);
    }

    // Read before binding, so a bad certificate fails the start, not a request.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(berth_server::tls::server_config(cert, key)?),
        _ => None,
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Tests and scripts read this one line from stdout to learn the port
    // when listening on port 0; logs go to stderr.
    println!("listening on {local}");
    let _ = std::io::stdout().flush();
    tracing::info!(address = %local, data_dir = %config.data_dir.display(), "berth is serving");

    let shutdown = CancellationToken::new();
    let purge = {
        let registry = registry.clone();
        let token = shutdown.clone();
        let interval = config.upload_purge_interval;
        tokio::spawn(async move { registry.run_upload_purge(interval, token).await })
    };
    let gc = {
        let registry = registry.clone();
        let token = shutdown.clone();
        let metrics = state.metrics.clone();
        let interval = config.gc_interval;
        let sweep_interval = config.gc_orphan_sweep_interval;
        tokio::spawn(async move {
            registry
                .run_gc(interval, sweep_interval, token, move |report| {
                    metrics.record_gc(report)
                })
                .await
        })
    };
    // Every node reloads the signing keys from the database now and then,
    // so a rotation made anywhere reaches all of them.
    let key_reload = state.auth.clone().map(|auth| {
        let token = shutdown.clone();
        tokio::spawn(async move {
            auth.run_key_reload(berth_auth::keys::KEY_RELOAD_INTERVAL, token)
                .await
        })
    });
    let event_retention = {
        let registry = registry.clone();
        let token = shutdown.clone();
        tokio::spawn(async move {
            registry
                .run_event_retention(EVENT_RETENTION_INTERVAL, token)
                .await
        })
    };
    let trim = {
        let token = shutdown.clone();
        tokio::spawn(async move { return_freed_memory(token).await })
    };
    let signal = {
        let token = shutdown.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
            token.cancel();
        }
    };
    let result = match tls {
        Some(tls) => berth_server::run_tls(listener, tls, state, signal).await,
        None => berth_server::run(listener, state, signal).await,
    };
    shutdown.cancel();
    let _ = purge.await;
    let _ = gc.await;
    let _ = event_retention.await;
    let _ = trim.await;
    if let Some(key_reload) = key_reload {
        let _ = key_reload.await;
    }
    result.map_err(|e| format!("server error: {e}"))
}

/// How often old events are deleted: retention is counted in days, so an
/// hourly pass keeps the table within an hour of it.
const EVENT_RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long a presigned blob URL stays valid: long enough for a slow client
/// to start the download, short enough that a leaked URL soon expires.
const REDIRECT_EXPIRY: std::time::Duration = std::time::Duration::from_secs(300);

/// Opens the configured blob storage backend.
fn open_storage(storage: &StorageConfig) -> Result<Arc<dyn BlobStore>, String> {
    match storage {
        StorageConfig::Fs(root) => FsBlobStore::open(root.clone())
            .map(|s| Arc::new(s) as Arc<dyn BlobStore>)
            .map_err(|e| format!("cannot open blob storage {}: {e}", root.display())),
        #[cfg(feature = "s3")]
        StorageConfig::S3(settings) => {
            use berth_storage::s3::{S3BlobStore, S3Config};
            let mut s3 = S3Config::from_url(&settings.url).map_err(|e| format!("storage: {e}"))?;
            if let Some(endpoint) = &settings.endpoint {
                s3.allow_http = endpoint.starts_with("http://");
                s3.endpoint = Some(endpoint.clone());
            }
            if let Some(region) = &settings.region {
                s3.region = region.clone();
            }
            s3.path_style = settings.path_style;
            s3.access_key_id = settings.access_key_id.clone();
            s3.secret_access_key = settings.secret_access_key.clone();
            // Without explicit keys the usual AWS_* variables (and instance
            // credentials) apply; explicit settings always win.
            s3.from_env = settings.access_key_id.is_none();
            s3.validate().map_err(|e| format!("storage: {e}"))?;
            S3BlobStore::new(&s3)
                .map(|s| Arc::new(s) as Arc<dyn BlobStore>)
                .map_err(|e| format!("cannot open S3 storage {}: {e}", settings.url))
        }
        #[cfg(not(feature = "s3"))]
        StorageConfig::S3(_) => Err("this build has no S3 support (feature s3)".into()),
    }
}

/// Builds access control: the auth store over the metadata database, the
/// first administrator, and the token signing keys, which live in the
/// database so that every node shares them (on the first start they are
/// imported from `<data_dir>/keys`, where older versions kept them, or
/// generated).
async fn auth_state(
    config: &Config,
    meta: Arc<dyn AuthMetaStore>,
) -> Result<berth_server::AuthState, String> {
    let store = Arc::new(berth_auth::MetaAuthStore::new(meta));
    // Read here, not in the configuration, so the password never appears in
    // `berth config check` output or in a config struct's Debug.
    let password = std::env::var("BERTH_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .map(berth_auth::Secret::new);
    admin::seed_admin(store.as_ref(), password).await?;
    let key_dir = config.data_dir.join("keys");
    let (keys, origin) =
        berth_auth::keys::load_or_create(store.as_ref(), &key_dir, time::OffsetDateTime::now_utc())
            .await
            .map_err(|e| format!("cannot load or create the signing keys: {e}"))?;
    let kid = keys.current().kid().to_string();
    match origin {
        KeyOrigin::Store => tracing::info!(%kid, "loaded the token signing keys"),
        KeyOrigin::Imported(path) => tracing::info!(
            %kid,
            path = %path.display(),
            "imported the token signing key into the database; the file is no longer needed"
        ),
        KeyOrigin::Generated => tracing::info!(%kid, "created the token signing key"),
    }
    let authority =
        berth_auth::TokenAuthority::new(keys, &config.auth.issuer, &config.auth.service);
    Ok(berth_server::AuthState {
        store,
        authority,
        throttle: std::sync::Mutex::new(berth_auth::LoginThrottle::new(
            berth_auth::ThrottleConfig::default(),
        )),
        policy: berth_auth::PolicyConfig {
            users_may_create_namespaces: config.auth.users_may_create_namespaces,
        },
        realm: config.auth.realm.clone(),
        tls: config.tls_cert.is_some(),
    })
}

/// The metadata store and its access-control tables: one database, seen
/// through the two traits.
type Databases = (Arc<dyn MetaStore>, Arc<dyn AuthMetaStore>);

/// Opens the configured metadata backend, running its migrations.
pub(crate) async fn open_database(database: &DatabaseConfig) -> Result<Databases, String> {
    let failed = |e: berth_meta::MetaError| {
        format!("cannot open metadata database {}: {e}", database.redacted())
    };
    match database {
        DatabaseConfig::Sqlite(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            let store = Arc::new(SqliteMetaStore::open(path).await.map_err(failed)?);
            Ok((store.clone(), store))
        }
        #[cfg(feature = "postgres")]
        DatabaseConfig::Postgres(url) => {
            let store = Arc::new(
                berth_meta::postgres::PostgresMetaStore::connect(url)
                    .await
                    .map_err(failed)?,
            );
            Ok((store.clone(), store))
        }
        #[cfg(not(feature = "postgres"))]
        DatabaseConfig::Postgres(_) => {
            Err("this build has no PostgreSQL support (feature postgres)".into())
        }
    }
}

/// Makes glibc serve every allocation of 1 MiB or more with its own memory
/// map, returned to the system when freed.
///
/// By default glibc raises that threshold each time such a block is freed
/// (up to 32 MiB), after which large buffers come from the heap and stay
/// resident: after a burst of concurrent uploads the server kept hundreds of
/// megabytes it no longer used. Large allocations are rare on the request
/// path (request bodies arrive in 64 KiB reads), so the system calls this
/// costs are few.
fn fix_malloc_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called first
    // thing in `main`, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

/// Every ten seconds, hands memory the allocator holds but no longer uses
/// back to the system (`malloc_trim`), until `token` is cancelled.
///
/// Request bodies arrive in 64 KiB pieces, which glibc serves from its heaps;
/// after a burst of concurrent uploads (each holding up to one S3 part of
/// such pieces) the freed pieces are scattered through the heaps, and glibc
/// only shrinks a heap from its top, so the server would keep its peak
/// memory indefinitely. `malloc_trim` releases free pages anywhere in the
/// heaps; it takes the allocator's locks briefly, so it runs on the blocking
/// pool and rarely.
async fn return_freed_memory(token: CancellationToken) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(10));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = token.cancelled() => return,
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim has no preconditions; it only returns free
        // pages to the system.
        let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
    }
}

/// Completes on SIGINT or SIGTERM.
async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
