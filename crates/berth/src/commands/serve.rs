//! `berth serve`: check everything the server will need, then listen; on
//! SIGINT or SIGTERM stop within `shutdown_timeout`.
//!
//! The order matters for what an operator sees. Every check that can fail
//! on a misconfiguration runs before the listener is bound: the
//! configuration (loaded by the caller), the exposure rule for access
//! control, the data directory's permissions, the TLS certificate, blob
//! storage (a probe blob written, read and deleted), the database
//! (connected and migrated) and the signing keys. A failure stops the
//! process with one message naming the setting, never a 500 on some later
//! request.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use berth_registry::advisor::ScanOnPush;
use berth_registry::{
    AuditTrail, ConsumerOptions, ConsumerRunner, ReplicationOptions, ReplicationTrigger,
    Replicator, WebhookFanout, WebhookOptions,
};

/// How often each node looks for replication rules whose schedule is due.
const REPLICATION_SCHEDULE_CHECK: std::time::Duration = std::time::Duration::from_secs(10);
use berth_server::AppState;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigArgs, Environment, Loaded};
use crate::tasks::TaskSet;
use crate::{files, logging, wiring};

pub fn run(args: &ConfigArgs, env: &Environment) -> ExitCode {
    let loaded = match super::load_config(args, env) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if let Some(problem) = loaded.config.exposure_problem() {
        eprintln!("error: refusing to start: {problem}");
        return ExitCode::from(super::EXIT_CONFIG);
    }
    logging::init(&loaded.config, env);
    logging::report_warnings(&loaded);
    let runtime = match super::runtime(true) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(serve(&loaded, env));
    // Connections cut off by the shutdown deadline may still have work on
    // the blocking pool (a chunk being written); it gets a moment, then the
    // process exits regardless.
    runtime.shutdown_timeout(BLOCKING_WORK_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => super::fail(error),
    }
}

/// How often the scan queue's depth and the advisory data's age are read
/// for the metrics.
const SCANNER_METRICS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// How often proxy namespaces are checked against their `max_size`.
const PROXY_EVICTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// How long the runtime waits at exit for blocking work still running.
const BLOCKING_WORK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

async fn serve(loaded: &Loaded, env: &Environment) -> Result<(), String> {
    let config = &loaded.config;
    let data_dir = &config.server.data_dir;
    let tightened = files::private_directory(data_dir)
        .map_err(|e| format!("{e}. Check {}", loaded.describe("server.data_dir")))?;
    if tightened {
        tracing::info!(
            path = %data_dir.display(),
            "restricted the data directory to its owner (mode 0700)"
        );
    }
    // Read first, so a bad certificate fails the start (not a request), and
    // before anything is opened.
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => {
            Some(berth_server::tls::server_config(cert, key).map_err(|e| {
                format!(
                    "{e}. Check {} and {}",
                    loaded.describe("server.tls_cert"),
                    loaded.describe("server.tls_key")
                )
            })?)
        }
        _ => None,
    };
    let node = crate::node::claim(config)?;
    let opened =
        wiring::open_registry(loaded, wiring::StorageCheck::Probe, Some(node.name.clone())).await?;
    let registry = opened.registry;
    wiring::attach_upstreams(loaded, &registry).await?;
    if node.owns_earlier_leases {
        let released = registry
            .release_dead_upload_leases()
            .await
            .map_err(|e| format!("cannot release this node's earlier upload leases: {e}"))?;
        if released > 0 {
            tracing::info!(
                released,
                node = %node.name,
                "released the upload leases this node held when it stopped"
            );
        }
    }
    let mut state = AppState::new(registry.clone())
        .with_settings(wiring::server_settings(config))
        .with_outbound(berth_server::OutboundSettings {
            key_encryption: wiring::key_encryption_key(config)?,
            allow_private: config.server.outbound_allow_private,
        })
        .with_configuration_listing(crate::config::reference::check_listing(loaded));
    // Replication: rules run on demand (the API), on push (the consumer
    // below) and on their schedules (the task below), one node per rule.
    let replicator = Replicator::new(
        registry.clone(),
        Arc::new(crate::replication::HttpConnector {
            key: wiring::key_encryption_key(config)?,
            allow_private: config.server.outbound_allow_private,
        }),
        ReplicationOptions::default(),
    );
    state = state.with_replicator(replicator.clone());
    // The advisory sync: on a schedule (the task below) and on demand (the
    // API), one node per pass; it does nothing without configured sources.
    let advisory_sync = Arc::new(wiring::advisory_sync(config, registry.clone())?);
    state = state.with_advisory_sync(advisory_sync.clone());
    if config.auth.enabled {
        state = state.with_auth(wiring::auth_state(config, opened.auth_meta, env).await?);
    }
    let mut signals = super::ShutdownSignals::install()?;
    // Before the first connection: each one is a file descriptor.
    if let Some(limit) = crate::limits::raise_open_file_limit(config.server.max_connections) {
        tracing::debug!(open_file_limit = limit, "open-file limit");
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {}: {e}. Check {}",
                config.server.listen,
                loaded.describe("server.listen")
            )
        })?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Tests and scripts read this one line from stdout to learn the port
    // when listening on port 0; logs go to stderr.
    println!("listening on {local}");
    // The web console's address, for people; the line above stays exactly
    // as it is for the programs that read it. Programs that read that one
    // line may close the pipe at once, so a failed write is not an error.
    let scheme = if tls.is_some() { "https" } else { "http" };
    let _ = writeln!(
        std::io::stdout(),
        "web console at {scheme}://{}/",
        console_host(local)
    );
    let _ = std::io::stdout().flush();
    tracing::info!(address = %local, data_dir = %data_dir.display(), "berth is serving");

    let mut tasks = TaskSet::default();
    {
        let registry = registry.clone();
        let interval = config.storage.upload_purge_interval;
        tasks.spawn("upload purge", move |cancel| async move {
            registry.run_upload_purge(interval, cancel).await
        });
    }
    {
        let registry = registry.clone();
        let metrics = state.metrics.clone();
        let interval = config.gc.interval;
        let sweep_interval = config.gc.orphan_sweep_interval;
        tasks.spawn("garbage collection", move |cancel| async move {
            registry
                .run_gc(interval, sweep_interval, cancel, move |report| {
                    metrics.record_gc(report)
                })
                .await
        });
    }
    // Every node reloads the signing keys from the database now and then,
    // so a rotation made anywhere reaches all of them.
    if let Some(auth) = state.auth.clone() {
        tasks.spawn("signing key reload", move |cancel| async move {
            auth.run_key_reload(berth_auth::keys::KEY_RELOAD_INTERVAL, cancel)
                .await
        });
    }
    {
        let registry = registry.clone();
        tasks.spawn("event retention", move |cancel| async move {
            registry
                .run_event_retention(EVENT_RETENTION_INTERVAL, cancel)
                .await
        });
    }
    {
        // Expiry deletes what has been in the trash for `trash_retention`;
        // the hour between passes only delays it, never shortens it.
        let registry = registry.clone();
        tasks.spawn("trash expiry", move |cancel| async move {
            registry
                .run_trash_expiry(TRASH_EXPIRY_INTERVAL, cancel)
                .await
        });
    }
    {
        // Every namespace's storage into today's row of its daily usage,
        // on one node at a time; pulls reach it with the pull statistics.
        let registry = registry.clone();
        tasks.spawn("usage snapshot", move |cancel| async move {
            registry
                .run_usage_snapshots(berth_registry::usage::USAGE_SNAPSHOT_INTERVAL, cancel)
                .await
        });
    }
    let retention_interval = config.lifecycle.retention_interval;
    if !retention_interval.is_zero() {
        // Every namespace's retention policy, on one node at a time; what
        // it selects goes to the trash like any deletion.
        let registry = registry.clone();
        tasks.spawn("retention", move |cancel| async move {
            registry
                .run_retention_schedule(retention_interval, cancel)
                .await
        });
    }
    if loaded
        .upstreams
        .iter()
        .any(|upstream| upstream.max_size.is_some())
    {
        // Proxy namespaces over their max_size lose their least-recently
        // pulled images, on one node at a time.
        let registry = registry.clone();
        tasks.spawn("proxy eviction", move |cancel| async move {
            registry
                .run_proxy_eviction_schedule(PROXY_EVICTION_INTERVAL, cancel)
                .await
        });
    }
    {
        let registry = registry.clone();
        tasks.spawn("cache invalidation", move |cancel| async move {
            registry.run_cache_invalidation(cancel).await
        });
    }
    if config.scanner.enabled {
        // Scan on push: a consumer queues every tagged image, the workers
        // index them off the request path. A new consumer starts at the
        // oldest event kept, so images pushed shortly before scanning was
        // turned on are indexed too.
        let consumer = Arc::new(ScanOnPush::new(registry.clone()));
        let runner = ConsumerRunner::new(
            registry.clone(),
            ScanOnPush::NAME,
            consumer,
            ConsumerOptions::default(),
        );
        tasks.spawn("scan on push", move |cancel| async move {
            runner.run(cancel).await
        });
        let metrics = state.metrics.clone();
        let workers = wiring::scan_workers(config, registry.clone())
            .with_observer(Arc::new(move |record| metrics.record_scan(record)));
        tasks.spawn("scan workers", move |cancel| async move {
            workers.run(cancel).await
        });
        let registry = registry.clone();
        let metrics = state.metrics.clone();
        tasks.spawn("scanner metrics", move |cancel| async move {
            loop {
                if let Ok((depth, age)) = registry.advisor_state().await {
                    metrics.record_advisor_state(depth, age);
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(SCANNER_METRICS_INTERVAL) => {}
                }
            }
        });
    }
    {
        // Webhooks: a consumer queues a delivery for every event a webhook
        // wants (from now on, for a registry that never ran it, so old
        // events are not sent to webhooks made later), and the workers
        // send them, one node per delivery.
        let start_after = registry
            .last_event_position()
            .await
            .map_err(|e| format!("reading the event stream: {e}"))?;
        let fanout = Arc::new(WebhookFanout::new(registry.clone(), webhook_source(config)));
        let runner = ConsumerRunner::new(
            registry.clone(),
            WebhookFanout::NAME,
            fanout,
            ConsumerOptions {
                start_after,
                ..ConsumerOptions::default()
            },
        );
        tasks.spawn("webhook events", move |cancel| async move {
            runner.run(cancel).await
        });
        let options = WebhookOptions {
            retry_delay: config.webhooks.retry_delay,
            max_attempts: u32::try_from(config.webhooks.max_attempts).unwrap_or(u32::MAX),
            ..WebhookOptions::default()
        };
        let worker = crate::webhooks::DeliveryWorker::new(
            registry.clone(),
            wiring::key_encryption_key(config)?,
            config.server.outbound_allow_private,
            options,
            config.webhooks.poll_interval,
        )?;
        tasks.spawn("webhook deliveries", move |cancel| async move {
            worker.run(cancel).await
        });
        // On-push replication starts from now on too: a rule made later
        // copies what exists with its first run, not by replaying events.
        let runner = ConsumerRunner::new(
            registry.clone(),
            ReplicationTrigger::NAME,
            Arc::new(ReplicationTrigger::new(replicator.clone())),
            ConsumerOptions {
                start_after,
                ..ConsumerOptions::default()
            },
        );
        tasks.spawn("replication on push", move |cancel| async move {
            runner.run(cancel).await
        });
        let scheduled = replicator.clone();
        tasks.spawn("replication schedules", move |cancel| async move {
            scheduled
                .run_schedules(REPLICATION_SCHEDULE_CHECK, cancel)
                .await
        });
        // The audit trail copies every event, from the oldest kept, so a
        // registry that starts it keeps what its events still hold.
        let runner = ConsumerRunner::new(
            registry.clone(),
            AuditTrail::NAME,
            Arc::new(AuditTrail::new(registry.clone())),
            ConsumerOptions::default(),
        );
        tasks.spawn("audit trail", move |cancel| async move {
            runner.run(cancel).await
        });
        let flushing = registry.clone();
        tasks.spawn("audit of refused requests", move |cancel| async move {
            flushing
                .run_audit_flush(std::time::Duration::from_secs(1), cancel)
                .await
        });
        let registry = registry.clone();
        let retention = config.webhooks.log_retention;
        let audit_retention = config.audit.retention;
        tasks.spawn(
            "webhook log and audit retention",
            move |cancel| async move {
                registry
                    .run_log_retention(EVENT_RETENTION_INTERVAL, retention, audit_retention, cancel)
                    .await
            },
        );
    }
    {
        let registry = registry.clone();
        let interval = config.server.pull_stats_interval;
        tasks.spawn("pull statistics", move |cancel| async move {
            // The traffic quotas as they stand, before the first interval.
            if let Err(error) = registry.flush_traffic().await {
                tracing::warn!(%error, "cannot read blob traffic; traffic quotas apply after the next flush");
            }
            registry.run_pull_stats(interval, cancel).await
        });
    }
    if !advisory_sync.urls().is_empty() {
        tasks.spawn("advisory sync", move |cancel| async move {
            advisory_sync.run(cancel).await
        });
    }
    tasks.spawn("memory return", crate::memory::return_freed_memory);

    let stop_accepting = CancellationToken::new();
    let server_shutdown = {
        let token = stop_accepting.clone();
        async move { token.cancelled().await }
    };
    let mut server = tokio::spawn(async move {
        match tls {
            Some(tls) => berth_server::run_tls(listener, tls, state, server_shutdown).await,
            None => berth_server::run(listener, state, server_shutdown).await,
        }
    });

    let timeout = config.server.shutdown_timeout;
    let (served, deadline) = tokio::select! {
        // The accept loop ends on its own only when it fails.
        served = &mut server => (served, Instant::now() + timeout),
        () = signals.recv() => {
            let deadline = Instant::now() + timeout;
            tracing::info!(
                timeout = %humantime::format_duration(timeout),
                "shutting down: finishing requests in flight"
            );
            stop_accepting.cancel();
            tasks.cancel();
            match tokio::time::timeout_at(deadline, &mut server).await {
                Ok(served) => (served, deadline),
                Err(_) => {
                    tracing::warn!(
                        timeout = %humantime::format_duration(timeout),
                        "requests still in flight after shutdown_timeout; exiting without them"
                    );
                    server.abort();
                    (Ok(Ok(())), deadline)
                }
            }
        }
    };
    stop_accepting.cancel();
    let unfinished = tasks.shutdown(deadline).await;
    if !unfinished.is_empty() {
        tracing::warn!(jobs = ?unfinished, "background jobs did not stop by the shutdown deadline");
    }
    // After the last request: the pulls counted since the last flush.
    if let Err(error) = registry.flush_pulls().await {
        tracing::warn!(%error, "pull statistics since the last flush are lost");
    }
    if let Err(error) = registry.flush_traffic().await {
        tracing::warn!(%error, "blob traffic since the last flush is lost");
    }
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("server error: {e}")),
        Err(e) => Err(format!("server task failed: {e}")),
    }
}

/// How often old events are deleted: retention is counted in days, so an
/// hourly pass keeps the table within an hour of it.
const EVENT_RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The CloudEvents `source` of this registry's events: the origin of the
/// configured token realm (the registry's public address) when there is
/// one, else a fixed name.
fn webhook_source(config: &crate::config::Config) -> String {
    config
        .auth
        .realm
        .as_deref()
        .and_then(|realm| url::Url::parse(realm).ok())
        .map(|realm| realm.origin().ascii_serialization())
        .filter(|origin| origin != "null")
        .unwrap_or_else(|| "/berth".to_string())
}
/// How often the trash expiry looks for entries past `trash_retention`.
const TRASH_EXPIRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The host a browser reaches the console at for a listener on `local`:
/// a wildcard address is reachable on loopback.
fn console_host(local: std::net::SocketAddr) -> String {
    let port = local.port();
    match local.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => format!("127.0.0.1:{port}"),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => format!("[::1]:{port}"),
        _ => local.to_string(),
    }
}
