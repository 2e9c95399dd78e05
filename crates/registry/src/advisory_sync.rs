//! The scheduled advisory sync: every configured source (a URL of an OSV
//! `all.zip` or record) is downloaded once per interval, on one node of the
//! cluster at a time, and imported the way `berth advisories import` does
//! (incremental by `modified`, withdrawn records removed).
//!
//! - Which node syncs: before a pass a node takes the job lease
//!   [`SYNC_JOB`] in the metadata store and releases it after, so several
//!   nodes on one database never download together; a node that cannot take
//!   it leaves the pass to the holder.
//! - What is due: each source's last attempt is stored with its state, so a
//!   source is synced once per interval across restarts and nodes, and a
//!   failed source is retried at the next interval, not at once.
//! - Downloading is the binary's business ([`AdvisoryFetcher`]: HTTP lives
//!   outside this crate); it bounds the size and time of a download and
//!   sends the stored validators, so an unchanged source costs one request.

use std::sync::Arc;
use std::time::Duration;

use berth_meta::AdvisorySourceRow;
use berth_scanner::Advisory;
use tokio_util::sync::CancellationToken;

use crate::{Actor, Registry, RegistryError};

/// The job lease of the sync, one for every source.
pub const SYNC_JOB: &str = "advisory-sync";

/// The longest error kept with a source.
const MAX_ERROR: usize = 1000;

/// Record errors logged per source and sync at most.
const LOGGED_RECORD_ERRORS: usize = 10;

/// How often a node checks whether a source is due, at most: the interval
/// itself when shorter.
const MAX_POLL: Duration = Duration::from_secs(60);

/// The validators of what was last downloaded from a source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// What a fetch brought.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The source answered that it did not change since the validators.
    NotModified,
    /// The source's content, with its new validators.
    Body {
        bytes: Vec<u8>,
        validators: Validators,
    },
}

/// Downloads a source, bounded in size and time; the error says why it
/// could not, in words for the log and the source's status.
#[async_trait::async_trait]
pub trait AdvisoryFetcher: Send + Sync + 'static {
    async fn fetch(&self, url: &str, validators: &Validators) -> Result<Fetched, String>;
}

/// What one sync of one source did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceOutcome {
    pub url: String,
    /// Records added, updated or removed; `None` when the sync failed.
    pub changed: Option<u64>,
    /// Records of the download that could not be read.
    pub skipped: usize,
    /// Whether the source answered "not modified".
    pub not_modified: bool,
    pub error: Option<String>,
}

/// The scheduled sync of the configured advisory sources.
pub struct AdvisorySync {
    registry: Registry,
    fetcher: Arc<dyn AdvisoryFetcher>,
    urls: Vec<String>,
    interval: Duration,
    /// The lease lasts this long: longer than a download and an import
    /// take, so a pass never outlives it; a node that dies mid-pass hands
    /// the work on after it.
    lease: Duration,
    /// One pass at a time on this node (the lease renews for its own
    /// holder, so it does not keep two passes of one node apart).
    running: tokio::sync::Mutex<()>,
}

impl AdvisorySync {
    /// The sync of `urls` every `interval`, with `fetcher`'s downloads.
    pub fn new(
        registry: Registry,
        fetcher: Arc<dyn AdvisoryFetcher>,
        urls: Vec<String>,
        interval: Duration,
    ) -> AdvisorySync {
        AdvisorySync {
            registry,
            fetcher,
            urls,
            interval,
            lease: Duration::from_secs(3600),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The configured sources, in configuration order.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Each configured source with its stored state (an empty state for a
    /// source never synced), in configuration order.
    pub async fn status(&self) -> Result<Vec<AdvisorySourceRow>, RegistryError> {
        source_status(&self.registry, &self.urls).await
    }

    /// Syncs every source now, due or not, unless a pass runs already
    /// (here or on another node): then `AdvisorySyncBusy`.
    pub async fn sync_now(&self) -> Result<Vec<SourceOutcome>, RegistryError> {
        let Ok(_running) = self.running.try_lock() else {
            return Err(RegistryError::AdvisorySyncBusy);
        };
        if !self.take_lease().await? {
            return Err(RegistryError::AdvisorySyncBusy);
        }
        let lease = LeaseGuard::new(&self.registry);
        let outcomes = self.sync_sources(&self.urls).await;
        lease.release().await;
        Ok(outcomes)
    }

    /// Syncs the sources that are due (never attempted, or last attempted
    /// an interval ago or more), if this node takes the lease; returns what
    /// it did (nothing when no source was due or another node holds the
    /// lease).
    pub async fn sync_due(&self) -> Result<Vec<SourceOutcome>, RegistryError> {
        let Ok(_running) = self.running.try_lock() else {
            return Ok(Vec::new());
        };
        let due = self.due().await?;
        if due.is_empty() || !self.take_lease().await? {
            return Ok(Vec::new());
        }
        // Read again under the lease: the node that held it a moment ago
        // may have synced them meanwhile.
        let lease = LeaseGuard::new(&self.registry);
        let due = self.due().await?;
        let outcomes = self.sync_sources(&due).await;
        lease.release().await;
        Ok(outcomes)
    }

    /// Syncs the due sources now and then every time one comes due, until
    /// `shutdown` fires (which cuts a pass short between two transactions
    /// of its import; the next pass on any node does it again).
    pub async fn run(&self, shutdown: CancellationToken) {
        if self.urls.is_empty() {
            return;
        }
        let poll = self.interval.min(MAX_POLL);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                result = self.sync_due() => {
                    if let Err(error) = result {
                        tracing::warn!(%error, "advisory sync failed");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    async fn due(&self) -> Result<Vec<String>, RegistryError> {
        let now = self.registry.now();
        let interval = i64::try_from(self.interval.as_secs()).unwrap_or(i64::MAX);
        Ok(self
            .status()
            .await?
            .into_iter()
            .filter(|source| {
                source
                    .last_attempt_at
                    .is_none_or(|at| now.saturating_sub(at) >= interval)
            })
            .map(|source| source.url)
            .collect())
    }

    async fn take_lease(&self) -> Result<bool, RegistryError> {
        let lease = i64::try_from(self.lease.as_secs()).unwrap_or(i64::MAX);
        Ok(self
            .registry
            .meta()
            .acquire_job_lease(
                SYNC_JOB,
                &self.registry.config().node_name,
                self.registry.now(),
                lease,
            )
            .await?)
    }

    async fn sync_sources(&self, urls: &[String]) -> Vec<SourceOutcome> {
        let mut outcomes = Vec::new();
        for (n, url) in urls.iter().enumerate() {
            // Renewed before each source, so a pass of many sources never
            // outlives its lease (each download is bounded in time); a
            // node that lost it (it expired, another took it) stops.
            if n > 0 && !matches!(self.take_lease().await, Ok(true)) {
                tracing::warn!("the advisory sync lease was lost; the pass stops here");
                break;
            }
            let outcome = self.sync_source(url).await;
            match &outcome.error {
                Some(error) => tracing::warn!(%url, %error, "advisory sync of a source failed"),
                None => tracing::info!(
                    %url,
                    changed = outcome.changed.unwrap_or(0),
                    skipped = outcome.skipped,
                    not_modified = outcome.not_modified,
                    "synced advisories"
                ),
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Downloads and imports one source and records the outcome; an error
    /// is recorded with the source, never returned.
    async fn sync_source(&self, url: &str) -> SourceOutcome {
        let meta = self.registry.meta();
        let started = self.registry.now();
        let mut outcome = SourceOutcome {
            url: url.to_string(),
            changed: None,
            skipped: 0,
            not_modified: false,
            error: None,
        };
        let stored = match meta.advisory_sources().await {
            Ok(rows) => rows.into_iter().find(|row| row.url == url),
            Err(error) => {
                outcome.error = Some(format!("reading the source's state: {error}"));
                return outcome;
            }
        };
        let validators = stored
            .map(|row| Validators {
                etag: row.etag,
                last_modified: row.last_modified,
            })
            .unwrap_or_default();
        let result = self
            .download_and_import(url, &validators, &mut outcome)
            .await;
        let recorded = match result {
            Ok(new_validators) => {
                let changed = outcome.changed.unwrap_or(0);
                meta.record_advisory_sync_success(
                    url,
                    started,
                    changed,
                    new_validators
                        .as_ref()
                        .map(|v| (v.etag.as_deref(), v.last_modified.as_deref())),
                )
                .await
            }
            Err(error) => {
                let error = bounded(&error);
                outcome.changed = None;
                outcome.error = Some(error.clone());
                meta.record_advisory_sync_failure(url, started, &error)
                    .await
            }
        };
        if let Err(error) = recorded {
            tracing::warn!(%url, %error, "cannot record an advisory sync");
        }
        outcome
    }

    /// Returns the validators to store (`None`: keep the stored ones).
    async fn download_and_import(
        &self,
        url: &str,
        validators: &Validators,
        outcome: &mut SourceOutcome,
    ) -> Result<Option<Validators>, String> {
        let (bytes, new_validators) = match self.fetcher.fetch(url, validators).await? {
            Fetched::NotModified => {
                outcome.not_modified = true;
                outcome.changed = Some(0);
                return Ok(None);
            }
            Fetched::Body { bytes, validators } => (bytes, validators),
        };
        // Reading an all.zip of tens of thousands of records is seconds of
        // CPU: off the async threads.
        let name = url.to_string();
        let (advisories, problems) =
            tokio::task::spawn_blocking(move || parse_source(&name, &bytes))
                .await
                .map_err(|error| format!("reading the download: {error}"))??;
        outcome.skipped = problems.len();
        for (record, problem) in problems.iter().take(LOGGED_RECORD_ERRORS) {
            tracing::warn!(%url, %record, %problem, "skipped an advisory record");
        }
        let counts = self
            .registry
            .import_advisories(&Actor::system("advisory-sync"), &advisories)
            .await
            .map_err(|error| format!("storing advisories: {error}"))?;
        outcome.changed = Some(counts.added + counts.updated + counts.removed);
        Ok(Some(new_validators))
    }
}

/// The sync's lease while a pass runs on this node: released when the pass
/// ends, and also when the pass is dropped half-way (the server shuts down,
/// or the client of a "sync now" hangs up), so other nodes need not wait
/// for it to expire.
struct LeaseGuard {
    registry: Option<Registry>,
}

impl LeaseGuard {
    fn new(registry: &Registry) -> LeaseGuard {
        LeaseGuard {
            registry: Some(registry.clone()),
        }
    }

    async fn release(mut self) {
        if let Some(registry) = self.registry.take() {
            release_lease(&registry).await;
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { release_lease(&registry).await });
            }
        }
    }
}

async fn release_lease(registry: &Registry) {
    let holder = &registry.config().node_name;
    if let Err(error) = registry.meta().release_job_lease(SYNC_JOB, holder).await {
        tracing::warn!(%error, "cannot release the advisory sync lease");
    }
}

/// Each of `urls` with its stored state (an empty state for a source never
/// synced), in the given order: what `berth advisories status` shows.
pub async fn source_status(
    registry: &Registry,
    urls: &[String],
) -> Result<Vec<AdvisorySourceRow>, RegistryError> {
    let stored = registry.meta().advisory_sources().await?;
    Ok(urls
        .iter()
        .map(|url| {
            stored
                .iter()
                .find(|row| &row.url == url)
                .cloned()
                .unwrap_or_else(|| AdvisorySourceRow {
                    url: url.clone(),
                    ..AdvisorySourceRow::default()
                })
        })
        .collect())
}

/// Records that could not be read: (record name, why).
pub type Skipped = Vec<(String, String)>;

/// The records a download holds: an OSV `all.zip` (recognized by its
/// signature, whatever the URL says) or one JSON/YAML record. Records that
/// cannot be read are returned with the reason, by name.
pub fn parse_source(name: &str, bytes: &[u8]) -> Result<(Vec<Advisory>, Skipped), String> {
    let mut advisories = Vec::new();
    let mut problems = Vec::new();
    let mut record =
        |name: &str, result: Result<Advisory, berth_scanner::osv::OsvError>| match result {
            Ok(advisory) => advisories.push(advisory),
            Err(error) => problems.push((name.to_string(), error.to_string())),
        };
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        berth_scanner::osv::read_zip(std::io::Cursor::new(bytes), &mut record)
            .map_err(|error| format!("reading {name}: {error}"))?;
    } else {
        record(name, berth_scanner::osv::parse_file(name, bytes));
    }
    Ok((advisories, problems))
}

/// `text` cut to [`MAX_ERROR`] bytes at a character boundary.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_ERROR {
        return text.to_string();
    }
    let mut end = MAX_ERROR;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
