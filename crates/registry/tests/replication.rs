//! Replication in the domain, without HTTP: the remote is another registry
//! behind a [`RemoteRegistry`] that counts uploads and mounts, and can
//! refuse deletes by tag (as Distribution does), corrupt blobs, or fail
//! manifest puts.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use berth_meta::{Direction, NewReplicationRule, ReplicationRule, RunStatus, RunTrigger};
use berth_oci::manifest::Descriptor;
use berth_oci::{Digest, Reference, RepoName, Tag};
use berth_registry::{
    ByteStream, Registry, RegistryError, RemoteConnector, RemoteRegistry, ReplicationOptions,
    Replicator, Upstream, UpstreamBlob, UpstreamError, UpstreamManifest,
};
use bytes::Bytes;
use futures::StreamExt;
use support::{actor, push_index, push_referrer, repo, tag, Harness};

/// A registry as a replication remote.
struct Remote {
    registry: Registry,
    uploads: AtomicUsize,
    mounts: AtomicUsize,
    /// Deletes by tag are refused while set, as Distribution refuses them.
    refuse_tag_deletes: bool,
    /// Blobs are served with a byte flipped while set.
    corrupt: Mutex<bool>,
    /// Manifest puts fail once this many more have succeeded.
    puts_left: Mutex<Option<usize>>,
    /// Manifest HEADs wait for a permit while set.
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// Deletes and manifest HEADs fail while set, as a remote that is down.
    down: Mutex<bool>,
}

impl Remote {
    fn new(registry: Registry, refuse_tag_deletes: bool) -> Arc<Remote> {
        Arc::new(Remote {
            registry,
            uploads: AtomicUsize::new(0),
            mounts: AtomicUsize::new(0),
            refuse_tag_deletes,
            corrupt: Mutex::new(false),
            puts_left: Mutex::new(None),
            gate: Mutex::new(None),
            down: Mutex::new(false),
        })
    }
}

fn not_found(error: RegistryError) -> UpstreamError {
    match error {
        RegistryError::ManifestUnknown
        | RegistryError::BlobUnknown
        | RegistryError::NameUnknown => UpstreamError::NotFound,
        other => UpstreamError::Failed(other.to_string()),
    }
}

#[async_trait::async_trait]
impl Upstream for Remote {
    async fn manifest_digest(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Digest>, UpstreamError> {
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.acquire().await.unwrap().forget();
        }
        let record = self
            .registry
            .get_manifest(repository, reference)
            .await
            .map_err(not_found)?;
        Ok(Some(record.digest.clone()))
    }

    async fn manifest(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<UpstreamManifest, UpstreamError> {
        let record = self
            .registry
            .get_manifest(repository, reference)
            .await
            .map_err(not_found)?;
        Ok(UpstreamManifest {
            media_type: record.media_type.clone(),
            payload: record.payload.clone(),
        })
    }

    async fn blob_size(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, UpstreamError> {
        let size = self
            .registry
            .blob_size(repository, digest)
            .await
            .map_err(not_found)?;
        Ok(Some(size))
    }

    async fn blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<UpstreamBlob, UpstreamError> {
        let body = self
            .registry
            .read_blob(repository, digest, None)
            .await
            .map_err(not_found)?;
        let corrupt = *self.corrupt.lock().unwrap();
        let stream: ByteStream = Box::pin(body.stream.map(move |piece| {
            let piece = piece?;
            if !corrupt {
                return Ok(piece);
            }
            let mut bytes = piece.to_vec();
            bytes[0] ^= 0xff;
            Ok(Bytes::from(bytes))
        }));
        Ok(UpstreamBlob {
            len: Some(body.len),
            stream,
        })
    }
}

#[async_trait::async_trait]
impl RemoteRegistry for Remote {
    async fn catalog(
        &self,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, UpstreamError> {
        self.registry.catalog(after, limit).await.map_err(not_found)
    }

    async fn tags(
        &self,
        repository: &RepoName,
        after: Option<&Tag>,
        limit: usize,
    ) -> Result<Vec<Tag>, UpstreamError> {
        let after = after.map(|t| t.to_string());
        self.registry
            .list_tags(repository, after.as_deref(), limit)
            .await
            .map_err(not_found)
    }

    async fn has_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<bool, UpstreamError> {
        match self.registry.blob_size(repository, digest).await {
            Ok(_) => Ok(true),
            Err(RegistryError::BlobUnknown) => Ok(false),
            Err(e) => Err(not_found(e)),
        }
    }

    async fn mount_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool, UpstreamError> {
        let mounted = self
            .registry
            .mount_blob(&actor(), repository, from, digest)
            .await
            .map_err(not_found)?
            .is_some();
        if mounted {
            self.mounts.fetch_add(1, Ordering::SeqCst);
        }
        Ok(mounted)
    }

    async fn push_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        _size: u64,
        body: ByteStream,
    ) -> Result<(), UpstreamError> {
        self.uploads.fetch_add(1, Ordering::SeqCst);
        self.registry
            .upload_monolithic(&actor(), repository, digest, body)
            .await
            .map_err(not_found)?;
        Ok(())
    }

    async fn put_manifest(
        &self,
        repository: &RepoName,
        reference: &Reference,
        media_type: &str,
        payload: &[u8],
    ) -> Result<(), UpstreamError> {
        if let Some(left) = self.puts_left.lock().unwrap().as_mut() {
            if *left == 0 {
                return Err(UpstreamError::Failed("the remote went away".into()));
            }
            *left -= 1;
        }
        self.registry
            .put_manifest(
                &actor(),
                repository,
                reference,
                &[],
                Some(media_type),
                payload.to_vec(),
            )
            .await
            .map_err(not_found)?;
        Ok(())
    }

    async fn referrers(
        &self,
        repository: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, UpstreamError> {
        let page = self
            .registry
            .referrers(repository, subject, None, None)
            .await
            .map_err(not_found)?;
        Ok(page
            .descriptors
            .iter()
            .map(|bytes| serde_json::from_slice(bytes).unwrap())
            .collect())
    }

    async fn delete_manifest(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<(), UpstreamError> {
        if *self.down.lock().unwrap() {
            return Err(UpstreamError::Failed("connection refused".into()));
        }
        if self.refuse_tag_deletes && matches!(reference, Reference::Tag(_)) {
            return Err(UpstreamError::Failed(
                "the upstream answered 405 Method Not Allowed".into(),
            ));
        }
        self.registry
            .delete_manifest(&actor(), repository, reference)
            .await
            .map_err(not_found)
    }
}

struct Connector(Arc<Remote>);

impl RemoteConnector for Connector {
    fn connect(&self, _rule: &ReplicationRule) -> Result<Arc<dyn RemoteRegistry>, String> {
        Ok(self.0.clone())
    }
}

fn rule(
    name: &str,
    direction: Direction,
    repositories: &str,
    tags: Option<&str>,
) -> NewReplicationRule {
    NewReplicationRule {
        name: name.into(),
        direction,
        remote_url: "https://remote.example".into(),
        credentials: None,
        repositories: repositories.into(),
        tags: tags.map(Into::into),
        on_push: direction == Direction::Push,
        interval_secs: None,
        enabled: true,
        created_by: "user:tester".into(),
    }
}

/// Every tag of `repository` with the digest it points at.
async fn tag_map(registry: &Registry, repository: &str) -> Vec<(String, Digest)> {
    let repository = repo(repository);
    let tags = match registry.list_tags(&repository, None, 1000).await {
        Ok(tags) => tags,
        Err(RegistryError::NameUnknown) => Vec::new(),
        Err(e) => panic!("{e}"),
    };
    let mut map = Vec::new();
    for t in tags {
        let record = registry
            .get_manifest(&repository, &Reference::Tag(t.clone()))
            .await
            .unwrap();
        map.push((t.to_string(), record.digest.clone()));
    }
    map
}

async fn referrer_digests(registry: &Registry, repository: &str, subject: &Digest) -> Vec<String> {
    registry
        .referrers(&repo(repository), subject, None, None)
        .await
        .unwrap()
        .descriptors
        .iter()
        .map(|bytes| {
            let descriptor: Descriptor = serde_json::from_slice(bytes).unwrap();
            descriptor.digest.to_string()
        })
        .collect()
}

/// Source `team/app` (v1, v2, an index `multi` of two platforms, a
/// signature of v1), `team/web` sharing a layer with `team/app`, and
/// `other/x`, which the rule's pattern leaves out.
async fn populate(source: &Harness) -> Digest {
    let app = repo("team/app");
    let v1 = source
        .push_image(&app, &tag("v1"), "app-1", &[b"shared layer", b"app one"])
        .await;
    source
        .push_image(&app, &tag("v2"), "app-2", &[b"shared layer", b"app two"])
        .await;
    let amd = source
        .push_image(&app, &by_digest_placeholder(), "amd", &[b"amd layer"])
        .await;
    let arm = source
        .push_image(&app, &by_digest_placeholder(), "arm", &[b"arm layer"])
        .await;
    push_index(
        &source.registry,
        &app,
        &tag("multi"),
        &[&amd.digest, &arm.digest],
    )
    .await;
    push_referrer(&source.registry, &app, &v1.digest, b"signature of v1").await;
    source
        .push_image(
            &repo("team/web"),
            &tag("v1"),
            "web",
            &[b"shared layer", b"web"],
        )
        .await;
    source
        .push_image(&repo("other/x"), &tag("v1"), "x", &[b"x layer"])
        .await;
    v1.digest
}

/// Children of an index are pushed by tag here (a tag the rule's pattern
/// excludes), as the harness pushes images by reference.
fn by_digest_placeholder() -> Reference {
    tag("platform-child")
}

#[tokio::test]
async fn push_rules_copy_images_indexes_and_referrers_and_skip_them_next_time() {
    let source = Harness::new().await;
    let target = Harness::new().await;
    let signed = populate(&source).await;
    let remote = Remote::new(target.registry.clone(), true);
    // One image at a time, so that `team/web` comes after `team/app` has
    // put the shared layer on the remote, and mounts it.
    let replicator = Replicator::new(
        source.registry.clone(),
        Arc::new(Connector(remote.clone())),
        ReplicationOptions {
            concurrency: 1,
            ..ReplicationOptions::default()
        },
    );
    source
        .registry
        .create_replication_rule(
            &actor(),
            &rule("to-remote", Direction::Push, "team/**", Some("v*")),
        )
        .await
        .unwrap();
    // `multi` is not matched by `v*`: a second rule copies it.
    source
        .registry
        .create_replication_rule(
            &actor(),
            &rule("multi", Direction::Push, "team/app", Some("multi")),
        )
        .await
        .unwrap();

    let run = replicator
        .run_rule("to-remote", RunTrigger::Manual)
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.last_error);
    assert_eq!(
        (run.counts.images_copied, run.counts.images_skipped),
        (3, 0)
    );
    let run = replicator
        .run_rule("multi", RunTrigger::Manual)
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.last_error);
    assert_eq!(run.counts.images_copied, 1);

    let wanted = |map: Vec<(String, Digest)>| -> Vec<(String, Digest)> {
        map.into_iter()
            .filter(|(t, _)| t != "platform-child")
            .collect()
    };
    assert_eq!(
        tag_map(&target.registry, "team/app").await,
        wanted(tag_map(&source.registry, "team/app").await)
    );
    assert_eq!(
        tag_map(&target.registry, "team/web").await,
        tag_map(&source.registry, "team/web").await
    );
    assert_eq!(tag_map(&target.registry, "other/x").await, vec![]);
    assert_eq!(
        referrer_digests(&target.registry, "team/app", &signed).await,
        referrer_digests(&source.registry, "team/app", &signed).await
    );
    assert_eq!(
        referrer_digests(&target.registry, "team/app", &signed)
            .await
            .len(),
        1
    );
    // The shared layer went to the remote once: `team/web` mounted it.
    assert!(remote.mounts.load(Ordering::SeqCst) >= 1);

    // Again: everything is there, nothing is uploaded.
    let uploads = remote.uploads.load(Ordering::SeqCst);
    let again = replicator
        .run_rule("to-remote", RunTrigger::Schedule)
        .await
        .unwrap();
    assert_eq!(again.status, RunStatus::Succeeded);
    assert_eq!(
        (again.counts.images_copied, again.counts.images_skipped),
        (0, 3)
    );
    assert_eq!(again.counts.blobs_copied, 0);
    assert_eq!(remote.uploads.load(Ordering::SeqCst), uploads);

    // On push: a new tag is copied, a deleted one deleted on the remote
    // (by digest, as this remote refuses deletes by tag).
    let app = repo("team/app");
    source
        .push_image(&app, &tag("v3"), "app-3", &[b"app three"])
        .await;
    let v3 = Tag::parse("v3").unwrap();
    let v2 = Tag::parse("v2").unwrap();
    source
        .registry
        .delete_manifest(&actor(), &app, &Reference::Tag(v2.clone()))
        .await
        .unwrap();
    replicator
        .handle_changes(&[(app.clone(), v3.clone())], &[(app.clone(), v2.clone())])
        .await
        .unwrap();
    assert_eq!(
        tag_map(&target.registry, "team/app").await,
        wanted(tag_map(&source.registry, "team/app").await)
    );
    let history = source
        .registry
        .replication_runs(
            source
                .registry
                .replication_rule("to-remote")
                .await
                .unwrap()
                .id,
            10,
        )
        .await
        .unwrap();
    let triggers: Vec<RunTrigger> = history.iter().map(|r| r.trigger).collect();
    assert_eq!(
        triggers,
        vec![RunTrigger::Push, RunTrigger::Schedule, RunTrigger::Manual]
    );
}

#[tokio::test]
async fn pull_rules_verify_what_they_fetch_and_resume_after_a_failure() {
    let remote_side = Harness::new().await;
    let local = Harness::new().await;
    let signed = populate(&remote_side).await;
    let remote = Remote::new(remote_side.registry.clone(), false);
    let replicator = Replicator::new(
        local.registry.clone(),
        Arc::new(Connector(remote.clone())),
        ReplicationOptions::default(),
    );
    local
        .registry
        .create_replication_rule(
            &actor(),
            &rule("from-remote", Direction::Pull, "team/*", None),
        )
        .await
        .unwrap();

    // Corrupt blobs are refused: the run fails and nothing is stored.
    *remote.corrupt.lock().unwrap() = true;
    let failed = replicator
        .run_rule("from-remote", RunTrigger::Manual)
        .await
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("digest"),
        "{:?}",
        failed.last_error
    );
    assert_eq!(tag_map(&local.registry, "team/app").await, vec![]);

    *remote.corrupt.lock().unwrap() = false;
    let run = replicator
        .run_rule("from-remote", RunTrigger::Manual)
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.last_error);
    for repository in ["team/app", "team/web"] {
        assert_eq!(
            tag_map(&local.registry, repository).await,
            tag_map(&remote_side.registry, repository).await,
            "{repository}"
        );
    }
    assert_eq!(tag_map(&local.registry, "other/x").await, vec![]);
    assert_eq!(
        referrer_digests(&local.registry, "team/app", &signed)
            .await
            .len(),
        1
    );
    let again = replicator
        .run_rule("from-remote", RunTrigger::Manual)
        .await
        .unwrap();
    assert_eq!(again.counts.images_copied, 0);
    assert_eq!(again.counts.blobs_copied, 0);
}

#[tokio::test]
async fn a_push_run_cut_short_is_resumed_by_the_next() {
    let source = Harness::new().await;
    let target = Harness::new().await;
    populate(&source).await;
    let remote = Remote::new(target.registry.clone(), false);
    let replicator = Replicator::new(
        source.registry.clone(),
        Arc::new(Connector(remote.clone())),
        ReplicationOptions {
            concurrency: 1,
            ..ReplicationOptions::default()
        },
    );
    source
        .registry
        .create_replication_rule(
            &actor(),
            &rule("cut", Direction::Push, "team/**", Some("v*")),
        )
        .await
        .unwrap();
    *remote.puts_left.lock().unwrap() = Some(1);
    let cut = replicator
        .run_rule("cut", RunTrigger::Manual)
        .await
        .unwrap();
    assert_eq!(cut.status, RunStatus::Failed);
    assert!(cut.counts.images_copied < 3);
    let blobs_before = cut.counts.blobs_copied;

    *remote.puts_left.lock().unwrap() = None;
    let resumed = replicator
        .run_rule("cut", RunTrigger::Manual)
        .await
        .unwrap();
    assert_eq!(
        resumed.status,
        RunStatus::Succeeded,
        "{:?}",
        resumed.last_error
    );
    assert_eq!(
        resumed.counts.images_copied + resumed.counts.images_skipped,
        3
    );
    // What the first run uploaded is not uploaded again.
    assert!(blobs_before > 0);
    assert_eq!(
        remote.uploads.load(Ordering::SeqCst) as u64,
        blobs_before + resumed.counts.blobs_copied
    );
    assert_eq!(
        tag_map(&target.registry, "team/web").await,
        tag_map(&source.registry, "team/web").await
    );

    // A rule that is running refuses a second run; an unknown one is named.
    assert!(matches!(
        replicator.run_rule("nope", RunTrigger::Manual).await,
        Err(RegistryError::ReplicationRuleUnknown(_))
    ));
    assert_eq!(
        source
            .registry
            .delete_replication_rule(&actor(), "cut")
            .await
            .unwrap()
            .name,
        "cut"
    );
}

#[tokio::test]
async fn deletions_the_remote_misses_are_kept_and_done_by_the_next_run() {
    let source = Harness::new().await;
    let target = Harness::new().await;
    populate(&source).await;
    let remote = Remote::new(target.registry.clone(), false);
    let replicator = Replicator::new(
        source.registry.clone(),
        Arc::new(Connector(remote.clone())),
        ReplicationOptions::default(),
    );
    let created = source
        .registry
        .create_replication_rule(&actor(), &rule("deletes", Direction::Push, "team/**", None))
        .await
        .unwrap();
    let first = replicator
        .run_rule("deletes", RunTrigger::Manual)
        .await
        .unwrap();
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.last_error);
    let app = repo("team/app");
    let v2 = Tag::parse("v2").unwrap();
    assert!(tag_map(&target.registry, "team/app")
        .await
        .iter()
        .any(|(tag, _)| tag == "v2"));

    // The remote is down when the tag is deleted here: the deletion is
    // kept, and a run while it is still down says it is pending.
    *remote.down.lock().unwrap() = true;
    source
        .registry
        .delete_manifest(&actor(), &app, &Reference::Tag(v2.clone()))
        .await
        .unwrap();
    replicator
        .handle_changes(&[], &[(app.clone(), v2.clone())])
        .await
        .unwrap();
    let (count, pending) = source
        .registry
        .replication_pending_deletes(created.id, 10)
        .await
        .unwrap();
    assert_eq!(count, 1);
    assert_eq!((&pending[0].repository, &pending[0].tag), (&app, &v2));
    assert!(pending[0].last_error.contains("connection refused"));
    let while_down = replicator
        .run_rule("deletes", RunTrigger::Manual)
        .await
        .unwrap();
    assert_eq!(while_down.status, RunStatus::Failed);
    let reported = while_down.last_error.unwrap_or_default();
    assert!(reported.contains("still pending"), "{reported}");
    let (_, pending) = source
        .registry
        .replication_pending_deletes(created.id, 10)
        .await
        .unwrap();
    assert_eq!(pending[0].attempts, 2);

    // Back up: the next run deletes it, and the replica is identical.
    *remote.down.lock().unwrap() = false;
    let recovered = replicator
        .run_rule("deletes", RunTrigger::Manual)
        .await
        .unwrap();
    assert_eq!(
        recovered.status,
        RunStatus::Succeeded,
        "{:?}",
        recovered.last_error
    );
    assert_eq!(
        source
            .registry
            .replication_pending_deletes(created.id, 10)
            .await
            .unwrap(),
        (0, Vec::new())
    );
    assert_eq!(
        tag_map(&target.registry, "team/app").await,
        tag_map(&source.registry, "team/app").await
    );
}

#[tokio::test]
async fn a_rule_runs_once_at_a_time_and_a_run_now_goes_on_in_the_background() {
    let source = Harness::new().await;
    let target = Harness::new().await;
    populate(&source).await;
    let remote = Remote::new(target.registry.clone(), false);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *remote.gate.lock().unwrap() = Some(gate.clone());
    let replicator = Replicator::new(
        source.registry.clone(),
        Arc::new(Connector(remote.clone())),
        ReplicationOptions::default(),
    );
    source
        .registry
        .create_replication_rule(
            &actor(),
            &rule("once", Direction::Push, "team/**", Some("v*")),
        )
        .await
        .unwrap();
    let started = replicator
        .start_rule("once", RunTrigger::Manual)
        .await
        .unwrap();
    assert_eq!(started.status, RunStatus::Running);
    // The run waits at the remote: a second one is refused meanwhile.
    assert!(matches!(
        replicator.run_rule("once", RunTrigger::Manual).await,
        Err(RegistryError::ReplicationBusy(_))
    ));
    gate.add_permits(10_000);
    let id = source.registry.replication_rule("once").await.unwrap().id;
    let mut finished = None;
    for _ in 0..500 {
        let runs = source.registry.replication_runs(id, 1).await.unwrap();
        if runs[0].status != RunStatus::Running {
            finished = Some(runs[0].clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let finished = finished.expect("the run finishes");
    assert_eq!(finished.id, started.id);
    assert_eq!(
        finished.status,
        RunStatus::Succeeded,
        "{:?}",
        finished.last_error
    );
    assert_eq!(finished.counts.images_copied, 3);
    // Free again once the lease is released, which follows the run's
    // record (the run is marked finished first, under the lease).
    let mut again = None;
    for _ in 0..500 {
        match replicator.run_rule("once", RunTrigger::Manual).await {
            Err(RegistryError::ReplicationBusy(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            other => {
                again = Some(other.unwrap());
                break;
            }
        }
    }
    let again = again.expect("the lease is released after the run");
    assert_eq!(again.counts.images_skipped, 3);
}
