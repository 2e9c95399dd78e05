//! Replication: copying images between Berth and another registry.
//!
//! A rule ([`berth_meta::ReplicationRule`]) names a remote registry, a
//! direction, a repository pattern ([`RepoPattern`]) and a tag pattern
//! ([`TagPattern`]). A run walks every matching repository and tag:
//!
//! - **push** (Berth → remote): the remote's digest for the tag (a HEAD) is
//!   compared with ours and the tag skipped when they are equal; otherwise
//!   an index's children are copied first, then the blobs (a HEAD first,
//!   skipping what the remote has; a cross-repository mount when the run
//!   copied the blob to another repository of the remote; else an upload
//!   streamed from storage), then the manifest with its tag. The referrers
//!   of every matching manifest (signatures, SBOMs) follow by digest.
//! - **pull** (remote → Berth): the mirror image, every manifest verified
//!   against its digest and every blob stored through
//!   [`Registry::upload_monolithic`] (which verifies it), then the manifest
//!   through [`Registry::put_manifest`], so what replication brings in is
//!   stored in the same transactions, with the same events, as a push.
//!
//! Nothing is remembered between runs but the history: a run that failed
//! half-way is resumed by the next, which skips what is already there.
//! Runs are bounded: one node runs a rule at a time (a job lease held for
//! at most [`ReplicationOptions::max_run_time`]), images are copied at
//! most [`ReplicationOptions::concurrency`] at a time, blobs are streamed,
//! never held whole, and manifests are capped at the size a push may have.
//!
//! **Architecture Invariant:** nothing fetched from a remote becomes
//! visible unverified: manifests are hashed before they are stored, blobs
//! become visible only through `finish_upload`, which verifies the digest.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_meta::{
    Actor, Change, Direction, Event, EventKind, ManifestRecord, PendingDelete, ReplicationRule,
    ReplicationRun, RunCounts, RunStatus, RunTrigger,
};
use berth_oci::manifest::{Descriptor, MAX_MANIFEST_SIZE};
use berth_oci::{Digest, ParsedManifest, Reference, RepoName, RepoPattern, Tag, TagPattern};
use berth_storage::ByteStream;
use futures::StreamExt;

use crate::events::{ConsumerError, EventConsumer};
use crate::proxy::{Upstream, UpstreamError, UpstreamManifest};
use crate::{Registry, RegistryError};

/// A remote registry, as replication uses it: the pull-through cache's
/// [`Upstream`] (manifest HEAD and GET, blob GET) and the rest of the
/// distribution API a copy in either direction needs.
///
/// Contract (beyond [`Upstream`]'s: every call bounded in time and memory,
/// credentials never in errors, nothing returned trusted): `NotFound` is
/// the remote's 404; a page of a listing holds at most `limit` names in the
/// remote's order, starting strictly after `after`.
#[async_trait::async_trait]
pub trait RemoteRegistry: Upstream {
    /// One page of the remote's `_catalog`. Registries without one (or
    /// that refuse it) answer `NotFound` or `Denied`.
    async fn catalog(
        &self,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, UpstreamError>;

    /// One page of `repository`'s tags; `NotFound` for a repository the
    /// remote does not know.
    async fn tags(
        &self,
        repository: &RepoName,
        after: Option<&Tag>,
        limit: usize,
    ) -> Result<Vec<Tag>, UpstreamError>;

    /// Whether the remote has the blob in `repository` (a HEAD).
    async fn has_blob(&self, repository: &RepoName, digest: &Digest)
        -> Result<bool, UpstreamError>;

    /// Asks the remote to mount the blob from `from` into `repository`;
    /// `false` when it would not (it then may have opened an upload, which
    /// it expires on its own).
    async fn mount_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool, UpstreamError>;

    /// Uploads the blob's `size` bytes from `body` (monolithic or chunked,
    /// as the implementation sees fit); the remote verifies the digest.
    async fn push_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        size: u64,
        body: ByteStream,
    ) -> Result<(), UpstreamError>;

    /// Stores a manifest under `reference` (a tag, or its digest).
    async fn put_manifest(
        &self,
        repository: &RepoName,
        reference: &Reference,
        media_type: &str,
        payload: &[u8],
    ) -> Result<(), UpstreamError>;

    /// The referrers of `subject` (the referrers API); an empty list when
    /// the remote has none or no referrers API.
    async fn referrers(
        &self,
        repository: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, UpstreamError>;

    /// Deletes a tag or (by digest) a manifest. `Failed` with the remote's
    /// words when it refuses (Distribution refuses deletes by tag).
    async fn delete_manifest(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<(), UpstreamError>;
}

/// Makes the client of a rule's remote: the binary's business, as it
/// holds the key that unseals the rule's credentials.
pub trait RemoteConnector: Send + Sync + 'static {
    fn connect(&self, rule: &ReplicationRule) -> Result<Arc<dyn RemoteRegistry>, String>;
}

/// How replication runs.
#[derive(Clone, Debug)]
pub struct ReplicationOptions {
    /// Images copied at once within a run.
    pub concurrency: usize,
    /// The longest a run may take; it fails when it takes longer (the next
    /// run resumes it), and its lease lasts this long plus a minute.
    pub max_run_time: Duration,
    /// Runs kept per rule in the history.
    pub history: usize,
    /// Tags one run considers at most (over every repository).
    pub max_images: usize,
}

impl Default for ReplicationOptions {
    fn default() -> Self {
        ReplicationOptions {
            concurrency: 4,
            max_run_time: Duration::from_secs(3600),
            history: 20,
            max_images: 100_000,
        }
    }
}

/// A listing page, remote or local.
const PAGE: usize = 1000;
/// Referrers copied per manifest at most.
const MAX_REFERRERS: usize = 1000;
/// How deep an index of indexes is followed.
const MAX_INDEX_DEPTH: usize = 2;
/// The longest error kept with a run.
const MAX_ERROR: usize = 1000;
/// Pending deletes a rule keeps at most (beyond, the oldest are dropped).
const MAX_PENDING_DELETES: usize = 10_000;
/// Pending deletes one run of a rule tries again at most.
const PENDING_RETRIES: usize = 1000;

/// The actor replication's writes are made as.
fn replication_actor() -> Actor {
    Actor::system("replication")
}

/// The job lease of rule `name`.
fn lease_job(name: &str) -> String {
    format!("replication/{name}")
}

/// A rule's patterns, parsed (they were validated when it was created).
struct Filter {
    repositories: RepoPattern,
    tags: Option<TagPattern>,
}

impl Filter {
    fn of(rule: &ReplicationRule) -> Result<Filter, String> {
        Ok(Filter {
            repositories: RepoPattern::parse(&rule.repositories).map_err(|e| e.to_string())?,
            tags: rule
                .tags
                .as_deref()
                .map(TagPattern::parse)
                .transpose()
                .map_err(|e| e.to_string())?,
        })
    }

    fn tag(&self, tag: &Tag) -> bool {
        self.tags.as_ref().is_none_or(|p| p.matches(tag.as_str()))
    }
}

/// What a run is asked to copy: everything its patterns match, or only
/// these tags (an on-push trigger).
#[derive(Clone, Debug, Default)]
pub struct RunScope {
    pub only: Option<Vec<(RepoName, Tag)>>,
}

/// The work of one run, shared by its concurrent copies.
struct RunState {
    remote: Arc<dyn RemoteRegistry>,
    images_copied: AtomicU64,
    images_skipped: AtomicU64,
    blobs_copied: AtomicU64,
    bytes: AtomicU64,
    /// The last error an image's copy met (the run goes on with the rest).
    error: Mutex<Option<String>>,
    /// Blobs this run put on the remote, and where: a later repository
    /// mounts them rather than uploading them again.
    remote_blobs: Mutex<HashMap<Digest, RepoName>>,
}

impl RunState {
    fn counts(&self) -> RunCounts {
        RunCounts {
            images_copied: self.images_copied.load(Ordering::Relaxed),
            images_skipped: self.images_skipped.load(Ordering::Relaxed),
            blobs_copied: self.blobs_copied.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    fn fail(&self, what: String) {
        *self.error.lock().expect("run error") = Some(bounded_error(what));
    }
}

/// An error text cut to [`MAX_ERROR`] bytes (on a character boundary).
fn bounded_error(mut text: String) -> String {
    if text.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn remote_error(what: &str, error: UpstreamError) -> String {
    format!("{what}: {error}")
}

/// Runs replication rules.
#[derive(Clone)]
pub struct Replicator {
    registry: Registry,
    connector: Arc<dyn RemoteConnector>,
    options: ReplicationOptions,
    /// Rules running on this node: the job lease renews for its own holder,
    /// so it keeps other nodes out, and this keeps a second run here out.
    running: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl Replicator {
    pub fn new(
        registry: Registry,
        connector: Arc<dyn RemoteConnector>,
        options: ReplicationOptions,
    ) -> Replicator {
        Replicator {
            registry,
            connector,
            options,
            running: Arc::default(),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn lease_secs(&self) -> i64 {
        self.options.max_run_time.as_secs() as i64 + 60
    }

    /// Takes rule `rule`'s lease and records a run: `ReplicationBusy` when
    /// another run holds the lease.
    async fn begin(
        &self,
        rule: &ReplicationRule,
        trigger: RunTrigger,
    ) -> Result<ReplicationRun, RegistryError> {
        let meta = self.registry.meta();
        let holder = &self.registry.config().node_name;
        let now = self.registry.now();
        if !self
            .running
            .lock()
            .expect("running rules")
            .insert(rule.name.clone())
        {
            return Err(RegistryError::ReplicationBusy(rule.name.clone()));
        }
        let acquired = meta
            .acquire_job_lease(&lease_job(&rule.name), holder, now, self.lease_secs())
            .await;
        if !matches!(acquired, Ok(true)) {
            self.running
                .lock()
                .expect("running rules")
                .remove(&rule.name);
            acquired?;
            return Err(RegistryError::ReplicationBusy(rule.name.clone()));
        }
        // With the lease held, a run still marked running was cut short
        // (its node stopped or died): it is recorded as failed.
        if let Err(error) = self.finish_stale_runs(rule, now).await {
            self.release(rule).await;
            return Err(error);
        }
        match meta
            .start_replication_run(rule.id, trigger, now, self.options.history)
            .await
        {
            Ok(run) => Ok(run),
            Err(error) => {
                self.release(rule).await;
                Err(match error {
                    berth_meta::MetaError::NotFound => {
                        RegistryError::ReplicationRuleUnknown(rule.name.clone())
                    }
                    other => other.into(),
                })
            }
        }
    }

    async fn finish_stale_runs(
        &self,
        rule: &ReplicationRule,
        now: berth_meta::Timestamp,
    ) -> Result<(), RegistryError> {
        let meta = self.registry.meta();
        for stale in meta
            .list_replication_runs(rule.id, self.options.history)
            .await?
            .into_iter()
            .filter(|run| run.status == RunStatus::Running)
        {
            let change = Change::new(replication_actor(), now);
            meta.finish_replication_run(
                &change,
                stale.id,
                RunStatus::Failed,
                stale.counts,
                Some("interrupted: the node running it stopped; the next run resumes it"),
            )
            .await?;
        }
        Ok(())
    }

    async fn release(&self, rule: &ReplicationRule) {
        let holder = &self.registry.config().node_name;
        if let Err(error) = self
            .registry
            .meta()
            .release_job_lease(&lease_job(&rule.name), holder)
            .await
        {
            tracing::warn!(rule = %rule.name, %error, "cannot release a replication lease");
        }
        self.running
            .lock()
            .expect("running rules")
            .remove(&rule.name);
    }

    /// Runs rule `name` now and waits for it: the finished run.
    pub async fn run_rule(
        &self,
        name: &str,
        trigger: RunTrigger,
    ) -> Result<ReplicationRun, RegistryError> {
        let rule = self.rule(name).await?;
        let run = self.begin(&rule, trigger).await?;
        Ok(self.execute(&rule, run, RunScope::default()).await)
    }

    /// Starts rule `name` in the background and returns its run (status
    /// `running`) at once: the API's "run now".
    pub async fn start_rule(
        &self,
        name: &str,
        trigger: RunTrigger,
    ) -> Result<ReplicationRun, RegistryError> {
        let rule = self.rule(name).await?;
        let run = self.begin(&rule, trigger).await?;
        let replicator = self.clone();
        let started = run.clone();
        tokio::spawn(async move {
            replicator.execute(&rule, run, RunScope::default()).await;
        });
        Ok(started)
    }

    async fn rule(&self, name: &str) -> Result<ReplicationRule, RegistryError> {
        self.registry
            .meta()
            .replication_rule(name)
            .await?
            .ok_or_else(|| RegistryError::ReplicationRuleUnknown(name.to_string()))
    }

    /// Copies what `scope` asks under the rule's lease (taken by `begin`),
    /// records the outcome and releases the lease.
    async fn execute(
        &self,
        rule: &ReplicationRule,
        run: ReplicationRun,
        scope: RunScope,
    ) -> ReplicationRun {
        let outcome = match self.connector.connect(rule) {
            Ok(remote) => {
                let state = Arc::new(RunState {
                    remote,
                    images_copied: AtomicU64::new(0),
                    images_skipped: AtomicU64::new(0),
                    blobs_copied: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                    error: Mutex::new(None),
                    remote_blobs: Mutex::default(),
                });
                let copied = tokio::time::timeout(
                    self.options.max_run_time,
                    self.copy(rule, &scope, &state),
                )
                .await;
                let mut error = match copied {
                    Ok(Ok(())) => state.error.lock().expect("run error").clone(),
                    Ok(Err(error)) => Some(error),
                    Err(_) => Some(format!(
                        "the run took longer than {}s; the next run resumes it",
                        self.options.max_run_time.as_secs()
                    )),
                };
                // Deletions the remote did not take before are tried again
                // by every run of a push rule, so the replica converges.
                if rule.direction == Direction::Push {
                    if let Some(pending) = self.retry_pending_deletes(rule, &state.remote).await {
                        error = error.or(Some(pending));
                    }
                }
                (state.counts(), error)
            }
            Err(error) => (RunCounts::default(), Some(error)),
        };
        let (counts, error) = outcome;
        let status = if error.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        let change = Change::new(replication_actor(), self.registry.now());
        let finished = self
            .registry
            .meta()
            .finish_replication_run(&change, run.id, status, counts, error.as_deref())
            .await;
        self.release(rule).await;
        match finished {
            Ok(Some(finished)) => {
                tracing::info!(rule = %rule.name, run = finished.id, status = status.as_str(),
                    copied = counts.images_copied, skipped = counts.images_skipped,
                    error = error.as_deref().unwrap_or(""), "replication run finished");
                finished
            }
            Ok(None) => run,
            Err(error) => {
                tracing::warn!(rule = %rule.name, %error, "cannot record a replication run");
                run
            }
        }
    }

    /// Lists what the run copies and copies it, `concurrency` images at a
    /// time. An image that fails is recorded and the others go on; a
    /// listing that fails ends the run.
    async fn copy(
        &self,
        rule: &ReplicationRule,
        scope: &RunScope,
        state: &Arc<RunState>,
    ) -> Result<(), String> {
        let filter = Filter::of(rule)?;
        let images = match &scope.only {
            Some(only) => only.clone(),
            None => match rule.direction {
                Direction::Push => self.local_images(&filter).await?,
                Direction::Pull => self.remote_images(&filter, state).await?,
            },
        };
        let direction = rule.direction;
        futures::stream::iter(images)
            .for_each_concurrent(self.options.concurrency.max(1), |(repository, tag)| {
                let state = state.clone();
                async move {
                    let copied = match direction {
                        Direction::Push => self.push_image(&state, &repository, &tag).await,
                        Direction::Pull => self.pull_image(&state, &repository, &tag).await,
                    };
                    match copied {
                        Ok(true) => state.images_copied.fetch_add(1, Ordering::Relaxed),
                        Ok(false) => state.images_skipped.fetch_add(1, Ordering::Relaxed),
                        Err(error) => {
                            tracing::warn!(%repository, %tag, %error, "replication of an image failed");
                            state.fail(format!("{repository}:{tag}: {error}"));
                            0
                        }
                    };
                }
            })
            .await;
        Ok(())
    }

    /// The local tags the rule matches, at most `max_images`.
    async fn local_images(&self, filter: &Filter) -> Result<Vec<(RepoName, Tag)>, String> {
        let mut images = Vec::new();
        let mut after: Option<RepoName> = None;
        loop {
            let page = self
                .registry
                .catalog(after.as_ref(), PAGE)
                .await
                .map_err(|e| format!("listing repositories: {e}"))?;
            let done = page.len() < PAGE;
            for repository in page {
                if filter.repositories.matches(repository.as_str()) {
                    let mut tag_after: Option<String> = None;
                    loop {
                        let tags = match self
                            .registry
                            .list_tags(&repository, tag_after.as_deref(), PAGE)
                            .await
                        {
                            Ok(tags) => tags,
                            Err(RegistryError::NameUnknown) => Vec::new(),
                            Err(e) => return Err(format!("listing tags of {repository}: {e}")),
                        };
                        let last = tags.len() < PAGE;
                        tag_after = tags.last().map(|t| t.to_string());
                        for tag in tags.into_iter().filter(|t| filter.tag(t)) {
                            if images.len() == self.options.max_images {
                                return Ok(images);
                            }
                            images.push((repository.clone(), tag));
                        }
                        if last {
                            break;
                        }
                    }
                }
                after = Some(repository);
            }
            if done {
                return Ok(images);
            }
        }
    }

    /// The remote's tags the rule matches, at most `max_images`. A remote
    /// without a catalog is asked for the one repository a pattern without
    /// wildcards names.
    async fn remote_images(
        &self,
        filter: &Filter,
        state: &RunState,
    ) -> Result<Vec<(RepoName, Tag)>, String> {
        let mut repositories = Vec::new();
        let mut after: Option<RepoName> = None;
        loop {
            let page =
                match state.remote.catalog(after.as_ref(), PAGE).await {
                    Ok(page) => page,
                    Err(UpstreamError::NotFound | UpstreamError::Denied(_)) if after.is_none() => {
                        let literal = filter.repositories.as_str();
                        match RepoName::parse(literal) {
                            Ok(name) if !literal.contains(['*', '?']) => vec![name],
                            _ => return Err(
                                "the remote has no catalog; name one repository without wildcards"
                                    .into(),
                            ),
                        }
                    }
                    Err(e) => return Err(remote_error("listing the remote's repositories", e)),
                };
            let done = page.len() < PAGE;
            after = page.last().cloned();
            repositories.extend(
                page.into_iter()
                    .filter(|r| filter.repositories.matches(r.as_str())),
            );
            if done || after.is_none() {
                break;
            }
        }
        let mut images = Vec::new();
        for repository in repositories {
            let mut after: Option<Tag> = None;
            loop {
                let tags = match state.remote.tags(&repository, after.as_ref(), PAGE).await {
                    Ok(tags) => tags,
                    Err(UpstreamError::NotFound) => Vec::new(),
                    Err(e) => {
                        return Err(remote_error(
                            &format!("listing the remote's tags of {repository}"),
                            e,
                        ))
                    }
                };
                let done = tags.len() < PAGE;
                after = tags.last().cloned();
                for tag in tags.into_iter().filter(|t| filter.tag(t)) {
                    if images.len() == self.options.max_images {
                        return Ok(images);
                    }
                    images.push((repository.clone(), tag));
                }
                if done || after.is_none() {
                    break;
                }
            }
        }
        Ok(images)
    }

    // --- push: Berth → remote ---

    /// Copies `repository:tag` to the remote unless it has that digest
    /// there already; then the manifest's referrers. Returns whether the
    /// image was copied.
    async fn push_image(
        &self,
        state: &RunState,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<bool, String> {
        let record = match self
            .registry
            .get_manifest(repository, &Reference::Tag(tag.clone()))
            .await
        {
            Ok(record) => record,
            // Deleted since it was listed: nothing to copy.
            Err(RegistryError::ManifestUnknown) => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        let remote_digest = match state
            .remote
            .manifest_digest(repository, &Reference::Tag(tag.clone()))
            .await
        {
            Ok(digest) => digest,
            Err(UpstreamError::NotFound) => None,
            Err(e) => return Err(remote_error("asking the remote for the tag", e)),
        };
        let copied = if remote_digest.as_ref() == Some(&record.digest) {
            false
        } else {
            self.push_manifest(state, repository, &record, Some(tag), 0)
                .await?;
            true
        };
        self.push_referrers(state, repository, &record.digest)
            .await?;
        Ok(copied)
    }

    /// Puts a manifest on the remote, after what it references: an index's
    /// children (those the remote lacks), then its blobs. With `tag`, it is
    /// put under the tag (one request: the remote hashes it with sha256,
    /// so a manifest of another digest algorithm is put by digest first).
    async fn push_manifest(
        &self,
        state: &RunState,
        repository: &RepoName,
        record: &ManifestRecord,
        tag: Option<&Tag>,
        depth: usize,
    ) -> Result<(), String> {
        let parsed = ParsedManifest::parse(&record.payload, Some(record.media_type.as_str()))
            .map_err(|e| format!("manifest {}: {e}", record.digest))?;
        if depth < MAX_INDEX_DEPTH {
            for child in &parsed.manifests {
                let reference = Reference::Digest(child.digest.clone());
                if self
                    .remote_has_manifest(state, repository, &child.digest)
                    .await?
                {
                    continue;
                }
                let child_record = match self.registry.get_manifest(repository, &reference).await {
                    Ok(found) => found,
                    // An index may list platforms that were never pushed.
                    Err(RegistryError::ManifestUnknown) => continue,
                    Err(e) => return Err(e.to_string()),
                };
                Box::pin(self.push_manifest(state, repository, &child_record, None, depth + 1))
                    .await?;
            }
        }
        for blob in parsed.required_blobs() {
            self.push_blob(state, repository, &blob.digest).await?;
        }
        let by_digest = tag.is_none() || record.digest.algorithm() != berth_oci::Algorithm::Sha256;
        if by_digest {
            state
                .remote
                .put_manifest(
                    repository,
                    &Reference::Digest(record.digest.clone()),
                    &record.media_type,
                    &record.payload,
                )
                .await
                .map_err(|e| remote_error(&format!("putting manifest {}", record.digest), e))?;
        }
        if let Some(tag) = tag {
            state
                .remote
                .put_manifest(
                    repository,
                    &Reference::Tag(tag.clone()),
                    &record.media_type,
                    &record.payload,
                )
                .await
                .map_err(|e| remote_error(&format!("putting tag {tag}"), e))?;
        }
        state
            .bytes
            .fetch_add(record.payload.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn remote_has_manifest(
        &self,
        state: &RunState,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<bool, String> {
        match state
            .remote
            .manifest_digest(repository, &Reference::Digest(digest.clone()))
            .await
        {
            Ok(_) => Ok(true),
            Err(UpstreamError::NotFound) => Ok(false),
            Err(e) => Err(remote_error(&format!("asking the remote for {digest}"), e)),
        }
    }

    /// Makes the remote hold blob `digest` in `repository`: nothing when it
    /// has it, a mount when this run put it in another repository, else an
    /// upload streamed from storage.
    async fn push_blob(
        &self,
        state: &RunState,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<(), String> {
        let blob_error = |e| remote_error(&format!("blob {digest}"), e);
        if state
            .remote
            .has_blob(repository, digest)
            .await
            .map_err(blob_error)?
        {
            return Ok(());
        }
        let source = state
            .remote_blobs
            .lock()
            .expect("remote blobs")
            .get(digest)
            .filter(|from| *from != repository)
            .cloned();
        if let Some(from) = source {
            if state
                .remote
                .mount_blob(repository, digest, &from)
                .await
                .map_err(blob_error)?
            {
                return Ok(());
            }
        }
        let body = self
            .registry
            .read_blob(repository, digest, None)
            .await
            .map_err(|e| format!("reading blob {digest}: {e}"))?;
        let size = body.len;
        state
            .remote
            .push_blob(repository, digest, size, body.stream)
            .await
            .map_err(blob_error)?;
        state.blobs_copied.fetch_add(1, Ordering::Relaxed);
        state.bytes.fetch_add(size, Ordering::Relaxed);
        let mut known = state.remote_blobs.lock().expect("remote blobs");
        if known.len() < 100_000 {
            known.insert(digest.clone(), repository.clone());
        }
        Ok(())
    }

    /// Copies the local referrers of `subject` the remote lacks.
    async fn push_referrers(
        &self,
        state: &RunState,
        repository: &RepoName,
        subject: &Digest,
    ) -> Result<(), String> {
        let referrers = self
            .registry
            .meta()
            .referrers(repository, subject, None, None, MAX_REFERRERS, 0)
            .await
            .map_err(|e| format!("listing referrers of {subject}: {e}"))?;
        for referrer in referrers {
            if self
                .remote_has_manifest(state, repository, &referrer.digest)
                .await?
            {
                continue;
            }
            let record = match self
                .registry
                .get_manifest(repository, &Reference::Digest(referrer.digest.clone()))
                .await
            {
                Ok(record) => record,
                Err(RegistryError::ManifestUnknown) => continue,
                Err(e) => return Err(e.to_string()),
            };
            self.push_manifest(state, repository, &record, None, 0)
                .await?;
        }
        Ok(())
    }

    // --- pull: remote → Berth ---

    /// Copies the remote's `repository:tag` into Berth unless the local tag
    /// has that digest already; then its referrers. Returns whether the
    /// image was copied.
    async fn pull_image(
        &self,
        state: &RunState,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<bool, String> {
        let reference = Reference::Tag(tag.clone());
        let remote_digest = match state.remote.manifest_digest(repository, &reference).await {
            Ok(digest) => digest,
            // Deleted since it was listed.
            Err(UpstreamError::NotFound) => return Ok(false),
            Err(e) => return Err(remote_error("asking the remote for the tag", e)),
        };
        let local = match self.registry.get_manifest(repository, &reference).await {
            Ok(record) => Some(record.digest.clone()),
            Err(RegistryError::ManifestUnknown | RegistryError::NameUnknown) => None,
            Err(e) => return Err(e.to_string()),
        };
        let digest = if remote_digest.is_some() && remote_digest == local {
            local.expect("equal to a digest")
        } else {
            // By digest when the remote named one, so that what is fetched
            // is checked against it; else by tag, hashed as a push is.
            let fetch_by = remote_digest
                .clone()
                .map_or(reference.clone(), Reference::Digest);
            let fetched = state
                .remote
                .manifest(repository, &fetch_by)
                .await
                .map_err(|e| remote_error("fetching the manifest", e))?;
            let digest = verified_digest(&fetched, remote_digest.as_ref())?;
            if Some(&digest) == local.as_ref() {
                self.pull_referrers(state, repository, &digest).await?;
                return Ok(false);
            }
            self.pull_manifest(state, repository, &digest, &fetched, Some(tag), 0)
                .await?;
            self.pull_referrers(state, repository, &digest).await?;
            return Ok(true);
        };
        self.pull_referrers(state, repository, &digest).await?;
        Ok(false)
    }

    /// Stores a verified remote manifest after what it references: an
    /// index's children (fetched and verified when missing here), then its
    /// blobs (fetched when missing, verified by the upload).
    async fn pull_manifest(
        &self,
        state: &RunState,
        repository: &RepoName,
        digest: &Digest,
        manifest: &UpstreamManifest,
        tag: Option<&Tag>,
        depth: usize,
    ) -> Result<(), String> {
        let parsed = ParsedManifest::parse(&manifest.payload, Some(manifest.media_type.as_str()))
            .map_err(|e| format!("the remote's manifest {digest}: {e}"))?;
        if depth < MAX_INDEX_DEPTH {
            for child in &parsed.manifests {
                let reference = Reference::Digest(child.digest.clone());
                if self
                    .registry
                    .get_manifest(repository, &reference)
                    .await
                    .is_ok()
                {
                    continue;
                }
                let fetched = match state.remote.manifest(repository, &reference).await {
                    Ok(fetched) => fetched,
                    Err(UpstreamError::NotFound) => continue,
                    Err(e) => return Err(remote_error(&format!("fetching {}", child.digest), e)),
                };
                let verified = verified_digest(&fetched, Some(&child.digest))?;
                Box::pin(self.pull_manifest(
                    state,
                    repository,
                    &verified,
                    &fetched,
                    None,
                    depth + 1,
                ))
                .await?;
            }
        }
        let actor = replication_actor();
        for blob in parsed.required_blobs() {
            match self.registry.blob_size(repository, &blob.digest).await {
                Ok(_) => continue,
                Err(RegistryError::BlobUnknown) => {}
                Err(e) => return Err(e.to_string()),
            }
            let fetched = state
                .remote
                .blob(repository, &blob.digest)
                .await
                .map_err(|e| remote_error(&format!("fetching blob {}", blob.digest), e))?;
            let size = self
                .registry
                .upload_monolithic(&actor, repository, &blob.digest, fetched.stream)
                .await
                .map_err(|e| format!("storing blob {}: {e}", blob.digest))?;
            state.blobs_copied.fetch_add(1, Ordering::Relaxed);
            state.bytes.fetch_add(size, Ordering::Relaxed);
        }
        let tags: Vec<Tag> = tag.into_iter().cloned().collect();
        self.registry
            .put_manifest(
                &actor,
                repository,
                &Reference::Digest(digest.clone()),
                &tags,
                Some(manifest.media_type.as_str()),
                manifest.payload.clone(),
            )
            .await
            .map_err(|e| format!("storing manifest {digest}: {e}"))?;
        state
            .bytes
            .fetch_add(manifest.payload.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Copies the remote's referrers of `subject` that Berth lacks.
    async fn pull_referrers(
        &self,
        state: &RunState,
        repository: &RepoName,
        subject: &Digest,
    ) -> Result<(), String> {
        let referrers = match state.remote.referrers(repository, subject).await {
            Ok(referrers) => referrers,
            Err(UpstreamError::NotFound) => return Ok(()),
            Err(e) => return Err(remote_error(&format!("listing referrers of {subject}"), e)),
        };
        for referrer in referrers.into_iter().take(MAX_REFERRERS) {
            let reference = Reference::Digest(referrer.digest.clone());
            if self
                .registry
                .get_manifest(repository, &reference)
                .await
                .is_ok()
            {
                continue;
            }
            let fetched = match state.remote.manifest(repository, &reference).await {
                Ok(fetched) => fetched,
                Err(UpstreamError::NotFound) => continue,
                Err(e) => return Err(remote_error(&format!("fetching {}", referrer.digest), e)),
            };
            let digest = verified_digest(&fetched, Some(&referrer.digest))?;
            self.pull_manifest(state, repository, &digest, &fetched, None, 0)
                .await?;
        }
        Ok(())
    }

    // --- on-push triggers ---

    /// Replicates tags that moved and deletes tags that were deleted, for
    /// every enabled push rule with `on_push` whose patterns match: one run
    /// per rule (trigger `push`) for the moved tags. `ReplicationBusy` when
    /// a rule is running (the caller offers the events again later).
    pub async fn handle_changes(
        &self,
        moved: &[(RepoName, Tag)],
        deleted: &[(RepoName, Tag)],
    ) -> Result<(), RegistryError> {
        if moved.is_empty() && deleted.is_empty() {
            return Ok(());
        }
        let rules = self.registry.meta().list_replication_rules().await?;
        for rule in rules
            .into_iter()
            .filter(|r| r.enabled && r.on_push && r.direction == Direction::Push)
        {
            let Ok(filter) = Filter::of(&rule) else {
                continue;
            };
            let wanted = |(repository, tag): &&(RepoName, Tag)| {
                filter.repositories.matches(repository.as_str()) && filter.tag(tag)
            };
            let moved: Vec<(RepoName, Tag)> = moved.iter().filter(wanted).cloned().collect();
            let deleted: Vec<(RepoName, Tag)> = deleted.iter().filter(wanted).cloned().collect();
            if !moved.is_empty() {
                let run = self.begin(&rule, RunTrigger::Push).await?;
                let scope = RunScope { only: Some(moved) };
                self.execute(&rule, run, scope).await;
            }
            if !deleted.is_empty() {
                self.delete_remote_tags(&rule, &deleted).await;
            }
        }
        Ok(())
    }

    /// Deletes tags on the rule's remote (see [`Replicator::delete_remote_tag`]).
    /// A deletion the remote does not take is kept as a pending delete of
    /// the rule, tried again by its next runs
    /// ([`Replicator::retry_pending_deletes`]).
    async fn delete_remote_tags(&self, rule: &ReplicationRule, deleted: &[(RepoName, Tag)]) {
        let remote = match self.connector.connect(rule) {
            Ok(remote) => remote,
            Err(error) => {
                tracing::warn!(rule = %rule.name, %error, "cannot reach a replication remote");
                for (repository, tag) in deleted {
                    self.keep_pending(rule, repository, tag, &error).await;
                }
                return;
            }
        };
        for (repository, tag) in deleted {
            self.delete_or_keep(rule, &remote, repository, tag).await;
        }
    }

    /// Tries a rule's pending deletes again, oldest first (at most
    /// [`PENDING_RETRIES`] a run): those done are forgotten, the others
    /// count one more attempt. Returns what the run reports when some are
    /// still pending.
    async fn retry_pending_deletes(
        &self,
        rule: &ReplicationRule,
        remote: &Arc<dyn RemoteRegistry>,
    ) -> Option<String> {
        let pending = match self
            .registry
            .meta()
            .pending_deletes(rule.id, PENDING_RETRIES)
            .await
        {
            Ok(pending) => pending,
            Err(error) => return Some(format!("cannot read the pending deletes: {error}")),
        };
        let mut failed = 0;
        let mut last = None;
        for entry in &pending {
            if let Some(error) = self
                .delete_or_keep(rule, remote, &entry.repository, &entry.tag)
                .await
            {
                failed += 1;
                last = Some(format!("{}:{}: {error}", entry.repository, entry.tag));
            }
        }
        last.map(|last| {
            bounded_error(format!(
                "{failed} deletion(s) on the remote still pending (tried again by the next \
                 run); the last: {last}"
            ))
        })
    }

    /// Deletes one tag on the remote, forgetting it as a pending delete
    /// when that works and keeping it when it does not. Returns the error.
    async fn delete_or_keep(
        &self,
        rule: &ReplicationRule,
        remote: &Arc<dyn RemoteRegistry>,
        repository: &RepoName,
        tag: &Tag,
    ) -> Option<String> {
        match self.delete_remote_tag(remote, repository, tag).await {
            Ok(()) => {
                if let Err(error) = self
                    .registry
                    .meta()
                    .clear_pending_delete(rule.id, repository, tag)
                    .await
                {
                    tracing::warn!(rule = %rule.name, %repository, %tag, %error,
                        "cannot clear a pending replicated delete");
                }
                None
            }
            Err(error) => {
                tracing::warn!(rule = %rule.name, %repository, %tag, %error,
                    "cannot delete a replicated tag on the remote; it is tried again by the \
                     rule's next run");
                self.keep_pending(rule, repository, tag, &error).await;
                Some(error)
            }
        }
    }

    async fn keep_pending(
        &self,
        rule: &ReplicationRule,
        repository: &RepoName,
        tag: &Tag,
        error: &str,
    ) {
        let kept = self
            .registry
            .meta()
            .record_pending_delete(
                rule.id,
                repository,
                tag,
                &bounded_error(error.to_string()),
                self.registry.now(),
                MAX_PENDING_DELETES,
            )
            .await;
        if let Err(error) = kept {
            tracing::warn!(rule = %rule.name, %repository, %tag, %error,
                "cannot keep a pending replicated delete");
        }
    }

    /// Deletes `tag` of `repository` on the remote, unless the tag is back
    /// here. A remote that refuses deletes by tag (Distribution) has the
    /// manifest deleted by digest instead, but only when no local tag of
    /// the repository still points at it, as that deletes every remote tag
    /// of the manifest.
    async fn delete_remote_tag(
        &self,
        remote: &Arc<dyn RemoteRegistry>,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<(), String> {
        // The tag may have come back since it was deleted.
        if self
            .registry
            .get_manifest(repository, &Reference::Tag(tag.clone()))
            .await
            .is_ok()
        {
            return Ok(());
        }
        let reference = Reference::Tag(tag.clone());
        // Whatever the answer, the tag is looked up again: registries
        // that refuse deletes by tag answer 400, 404 or 405.
        let _ = remote.delete_manifest(repository, &reference).await;
        match remote.manifest_digest(repository, &reference).await {
            Err(UpstreamError::NotFound) => Ok(()),
            Ok(_) => self.delete_remote_by_digest(remote, repository, tag).await,
            Err(e) => Err(e.to_string()),
        }
    }

    async fn delete_remote_by_digest(
        &self,
        remote: &Arc<dyn RemoteRegistry>,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<(), String> {
        let digest = match remote
            .manifest_digest(repository, &Reference::Tag(tag.clone()))
            .await
        {
            Ok(Some(digest)) => digest,
            Ok(None) => return Err("the remote names no digest for the tag".into()),
            Err(UpstreamError::NotFound) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let mut after: Option<String> = None;
        loop {
            let tags = match self
                .registry
                .list_tags(repository, after.as_deref(), PAGE)
                .await
            {
                Ok(tags) => tags,
                Err(RegistryError::NameUnknown) => Vec::new(),
                Err(e) => return Err(e.to_string()),
            };
            for other in &tags {
                if let Ok(record) = self
                    .registry
                    .get_manifest(repository, &Reference::Tag(other.clone()))
                    .await
                {
                    if record.digest == digest {
                        return Err(format!(
                            "the remote refuses deletes by tag, and local tag {other} still \
                             points at {digest}"
                        ));
                    }
                }
            }
            if tags.len() < PAGE {
                break;
            }
            after = tags.last().map(|t| t.to_string());
        }
        match remote
            .delete_manifest(repository, &Reference::Digest(digest))
            .await
        {
            Ok(()) | Err(UpstreamError::NotFound) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    // --- schedules ---

    /// Runs every enabled rule with an interval whose last run started at
    /// least that long ago (or that never ran), one after the other.
    /// Returns how many ran; a rule another node is running is skipped.
    pub async fn run_due(&self) -> Result<usize, RegistryError> {
        let now = self.registry.now();
        let mut ran = 0;
        for rule in self.registry.meta().list_replication_rules().await? {
            let Some(interval) = rule.interval_secs.filter(|_| rule.enabled) else {
                continue;
            };
            let last = self
                .registry
                .meta()
                .list_replication_runs(rule.id, 1)
                .await?;
            if last
                .first()
                .is_some_and(|run| run.started_at + interval > now)
            {
                continue;
            }
            match self.begin(&rule, RunTrigger::Schedule).await {
                Ok(run) => {
                    self.execute(&rule, run, RunScope::default()).await;
                    ran += 1;
                }
                Err(
                    RegistryError::ReplicationBusy(_) | RegistryError::ReplicationRuleUnknown(_),
                ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ran)
    }

    /// Runs [`Replicator::run_due`] every `interval` until `shutdown`.
    pub async fn run_schedules(
        &self,
        interval: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = self.run_due().await {
                tracing::warn!(%error, "scheduled replication failed");
            }
        }
    }
}

/// The digest of a fetched manifest: checked against `claimed` when the
/// remote named one (with its algorithm), else sha256 of the bytes, as a
/// push by tag is hashed. Too large or wrong bytes are refused.
fn verified_digest(fetched: &UpstreamManifest, claimed: Option<&Digest>) -> Result<Digest, String> {
    if fetched.payload.len() > MAX_MANIFEST_SIZE {
        return Err(format!(
            "the remote's manifest is larger than the {MAX_MANIFEST_SIZE} bytes allowed"
        ));
    }
    match claimed {
        Some(claimed) => {
            let computed = claimed.algorithm().digest_of(&fetched.payload);
            if &computed != claimed {
                return Err(format!(
                    "the remote's manifest hashes to {computed}, not {claimed}"
                ));
            }
            Ok(computed)
        }
        None => Ok(berth_oci::Algorithm::Sha256.digest_of(&fetched.payload)),
    }
}

/// The on-push trigger: the event consumer `replication`. A moved tag is
/// replicated by every on-push rule that matches it, a deleted tag deleted
/// on their remotes.
pub struct ReplicationTrigger {
    replicator: Replicator,
}

impl ReplicationTrigger {
    /// The consumer's name, which keys its position in the database.
    pub const NAME: &'static str = "replication";

    pub fn new(replicator: Replicator) -> ReplicationTrigger {
        ReplicationTrigger { replicator }
    }
}

#[async_trait::async_trait]
impl EventConsumer for ReplicationTrigger {
    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError> {
        // The last change of each tag in the batch decides: a tag moved
        // then deleted is deleted, deleted then pushed again is copied.
        let mut last: HashMap<(RepoName, Tag), EventKind> = HashMap::new();
        for event in events {
            if !matches!(event.kind, EventKind::TagMoved | EventKind::TagDeleted) {
                continue;
            }
            if let (Some(repository), Some(tag)) = (&event.repository, &event.tag) {
                last.insert((repository.clone(), tag.clone()), event.kind);
            }
        }
        let mut moved = BTreeSet::new();
        let mut deleted = BTreeSet::new();
        for (key, kind) in last {
            if kind == EventKind::TagMoved {
                moved.insert(key);
            } else {
                deleted.insert(key);
            }
        }
        let moved: Vec<_> = moved.into_iter().collect();
        let deleted: Vec<_> = deleted.into_iter().collect();
        self.replicator
            .handle_changes(&moved, &deleted)
            .await
            .map_err(|e| Box::new(e) as ConsumerError)
    }
}

impl Registry {
    /// Creates a replication rule (patterns and URL validated by the
    /// caller): `RuleExists` when one has its name.
    pub async fn create_replication_rule(
        &self,
        actor: &Actor,
        rule: &berth_meta::NewReplicationRule,
    ) -> Result<ReplicationRule, RegistryError> {
        match self
            .meta()
            .create_replication_rule(&self.change(actor), rule)
            .await
        {
            Err(berth_meta::MetaError::AlreadyExists) => Err(RegistryError::RuleExists),
            other => Ok(other?),
        }
    }

    /// The rule `name`: `ReplicationRuleUnknown` when there is none.
    pub async fn replication_rule(&self, name: &str) -> Result<ReplicationRule, RegistryError> {
        self.meta()
            .replication_rule(name)
            .await?
            .ok_or_else(|| RegistryError::ReplicationRuleUnknown(name.to_string()))
    }

    /// Every replication rule, by name.
    pub async fn replication_rules(&self) -> Result<Vec<ReplicationRule>, RegistryError> {
        Ok(self.meta().list_replication_rules().await?)
    }

    /// Deletes rule `name` with its history: `ReplicationRuleUnknown` when
    /// there is none. A run in progress finishes without being recorded.
    pub async fn delete_replication_rule(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<ReplicationRule, RegistryError> {
        self.meta()
            .delete_replication_rule(&self.change(actor), name)
            .await?
            .ok_or_else(|| RegistryError::ReplicationRuleUnknown(name.to_string()))
    }

    /// Rule `rule_id`'s last runs, newest first, at most `limit`.
    pub async fn replication_runs(
        &self,
        rule_id: i64,
        limit: usize,
    ) -> Result<Vec<ReplicationRun>, RegistryError> {
        Ok(self.meta().list_replication_runs(rule_id, limit).await?)
    }

    /// Rule `rule_id`'s deletions its remote has not taken yet: how many,
    /// and the oldest `limit` of them.
    pub async fn replication_pending_deletes(
        &self,
        rule_id: i64,
        limit: usize,
    ) -> Result<(u64, Vec<PendingDelete>), RegistryError> {
        let meta = self.meta();
        let count = meta.count_pending_deletes(rule_id).await?;
        let oldest = if count == 0 {
            Vec::new()
        } else {
            meta.pending_deletes(rule_id, limit).await?
        };
        Ok((count, oldest))
    }
}
