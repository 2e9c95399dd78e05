//! Deletion semantics and the reference accounting of garbage collection,
//! through the registry API on SQLite and the filesystem, with a fixed clock.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use berth_meta::{Change, GcStore, JobLeaseStore};
use berth_oci::{Algorithm, ByteRange, Digest, ErrorCode, UploadId};
use berth_registry::{Clock, GcOptions, Registry, RegistryConfig, RegistryError};
use berth_storage::fs::FsBlobStore;
use berth_storage::{
    BlobBody, BlobStore, ByteStream, StorageError, StoredBlob, StoredUpload, UploadProgress,
};
use support::{
    actor, by_digest, config, push_index, push_referrer, repo, tag, Harness, GRACE, START,
    UPLOAD_TTL,
};

/// Past the grace period for everything, including links no manifest ever
/// referenced.
const LONG_AFTER: i64 = UPLOAD_TTL + GRACE + 1;

#[tokio::test]
async fn layers_shared_by_manifests_live_until_the_last_one_goes() {
    let h = Harness::new().await;
    let app = repo("team/app");
    let a = h
        .push_image(&app, &tag("a"), "a", &[b"shared layer", b"only in a"])
        .await;
    let b = h
        .push_image(&app, &tag("b"), "b", &[b"shared layer", b"only in b"])
        .await;

    h.registry
        .delete_manifest(&actor(), &app, &by_digest(&a.digest))
        .await
        .unwrap();
    // Within the grace period nothing is collected.
    h.advance(GRACE - 1);
    let report = h.gc().await;
    assert_eq!(report.objects_removed(), 0, "{report}");
    for blob in &a.blobs {
        assert!(h.stored(blob).await);
    }

    h.advance(2);
    let report = h.gc().await;
    // a's config and its own layer go; the shared layer stays for b.
    assert_eq!(report.blobs_removed, 2, "{report}");
    assert_eq!(report.links_removed, 2, "{report}");
    assert_eq!(
        report.bytes_reclaimed,
        (r#"{"image":"a"}"#.len() + b"only in a".len()) as u64
    );
    assert!(!h.stored(&a.blobs[0]).await);
    assert!(h.stored(&a.blobs[1]).await, "the shared layer survives");
    assert!(!h.stored(&a.blobs[2]).await);
    let pulled = h.pull(&app, &tag("b")).await;
    assert_eq!(pulled.blobs, b.blobs);

    h.registry
        .delete_manifest(&actor(), &app, &by_digest(&b.digest))
        .await
        .unwrap();
    h.advance(GRACE + 1);
    let report = h.gc().await;
    assert_eq!(report.blobs_removed, 3, "{report}");
    assert!(
        h.all_stored().await.is_empty(),
        "nothing is left in storage"
    );
    // A second pass finds nothing: the work was done and recorded.
    assert_eq!(h.gc().await.objects_removed(), 0);
    h.no_pending_deletions().await;
}

#[tokio::test]
async fn deleting_a_tag_keeps_the_manifest_and_its_blobs() {
    let h = Harness::new().await;
    let app = repo("team/app");
    let image = h.push_image(&app, &tag("v1"), "v1", &[b"layer"]).await;
    h.registry
        .delete_manifest(&actor(), &app, &tag("v1"))
        .await
        .unwrap();
    assert!(matches!(
        h.registry.get_manifest(&app, &tag("v1")).await,
        Err(RegistryError::ManifestUnknown)
    ));
    h.advance(LONG_AFTER);
    assert_eq!(h.gc().await.objects_removed(), 0);
    let pulled = h.pull(&app, &by_digest(&image.digest)).await;
    assert_eq!(pulled.blobs, image.blobs);
}

#[tokio::test]
async fn untagged_manifests_are_collected_only_when_configured() {
    let h = Harness::with_config(RegistryConfig {
        gc_untagged_age: Some(std::time::Duration::from_secs(600)),
        ..config()
    })
    .await;
    let app = repo("team/app");
    let old = h
        .push_image(&app, &tag("old"), "old", &[b"old layer"])
        .await;
    let kept = h
        .push_image(&app, &tag("kept"), "kept", &[b"kept layer"])
        .await;
    // A signature of the tagged image is untagged too, but lives with it.
    let signature = push_referrer(&h.registry, &app, &kept.digest, b"sig of kept").await;
    h.registry
        .delete_manifest(&actor(), &app, &tag("old"))
        .await
        .unwrap();

    h.advance(601);
    let report = h.gc().await;
    assert_eq!(report.manifests_removed, 1, "{report}");
    assert!(h
        .registry
        .get_manifest(&app, &by_digest(&old.digest))
        .await
        .is_err());
    h.pull(&app, &by_digest(&signature.digest)).await;
    // The old image's blobs follow one grace period later.
    assert!(h.stored(&old.blobs[1]).await);
    h.advance(GRACE + 1);
    let report = h.gc().await;
    assert_eq!(report.blobs_removed, 2, "{report}");
    assert!(!h.stored(&old.blobs[1]).await);
    h.pull(&app, &tag("kept")).await;
}

#[tokio::test]
async fn index_children_live_while_the_index_does() {
    let h = Harness::new().await;
    let app = repo("team/multi");
    let amd64 = h
        .push_image(&app, &by_digest_placeholder(), "amd64", &[b"amd64 layer"])
        .await;
    let arm64 = h
        .push_image(&app, &by_digest_placeholder(), "arm64", &[b"arm64 layer"])
        .await;
    let index = push_index(
        &h.registry,
        &app,
        &tag("latest"),
        &[&amd64.digest, &arm64.digest],
    )
    .await;

    // An untagged child an index still lists cannot be deleted, and the
    // error names the index.
    let refused = h
        .registry
        .delete_manifest(&actor(), &app, &by_digest(&amd64.digest))
        .await
        .unwrap_err();
    assert!(matches!(&refused, RegistryError::ManifestReferenced(d) if *d == index));
    assert_eq!(refused.code(), ErrorCode::Denied);
    assert!(refused.to_string().contains(index.as_str()), "{refused}");
    assert!(refused.to_string().contains("delete that index first"));

    h.advance(LONG_AFTER);
    assert_eq!(h.gc().await.objects_removed(), 0);
    h.pull(&app, &by_digest(&amd64.digest)).await;

    h.registry
        .delete_manifest(&actor(), &app, &by_digest(&index))
        .await
        .unwrap();
    for child in [&amd64, &arm64] {
        h.registry
            .delete_manifest(&actor(), &app, &by_digest(&child.digest))
            .await
            .unwrap();
    }
    h.advance(GRACE + 1);
    let report = h.gc().await;
    assert_eq!(report.blobs_removed, 4, "{report}");
    assert!(h.all_stored().await.is_empty());
}

/// Children are pushed by tag first (as clients push by digest, which is the
/// same for the accounting); the tag is then moved by the next push.
fn by_digest_placeholder() -> berth_oci::Reference {
    tag("building")
}

#[tokio::test]
async fn referrers_are_deleted_with_their_subject_when_configured() {
    let h = Harness::new().await;
    let app = repo("team/signed");
    let image = h
        .push_image(&app, &tag("v1"), "v1", &[b"signed layer"])
        .await;
    let signature = push_referrer(&h.registry, &app, &image.digest, b"signature").await;
    // A signature of the signature goes too: the deletion is recursive.
    let counter = push_referrer(&h.registry, &app, &signature.digest, b"countersig").await;
    // The same subject digest in another repository is a different manifest.
    let other = repo("team/other");
    let elsewhere = h
        .push_image(&other, &tag("v1"), "v1", &[b"signed layer"])
        .await;
    assert_eq!(elsewhere.digest, image.digest);
    let foreign = push_referrer(&h.registry, &other, &image.digest, b"signature").await;

    h.registry
        .delete_manifest(&actor(), &app, &by_digest(&image.digest))
        .await
        .unwrap();
    for gone in [&signature.digest, &counter.digest] {
        assert!(matches!(
            h.registry.get_manifest(&app, &by_digest(gone)).await,
            Err(RegistryError::ManifestUnknown)
        ));
    }
    h.pull(&other, &by_digest(&foreign.digest)).await;

    h.advance(GRACE + 1);
    let report = h.gc().await;
    // The signature blobs are shared with the other repository's copy.
    assert_eq!(report.links_removed, 5, "{report}");
    h.pull(&other, &tag("v1")).await;
    let countersig_layer = Algorithm::Sha256.digest_of(b"countersig");
    assert!(!h.stored(&countersig_layer).await);
    assert!(h.stored(&signature.blobs[1]).await);
}

#[tokio::test]
async fn referrers_stay_when_cascading_is_off() {
    let h = Harness::with_config(RegistryConfig {
        delete_referrers: false,
        ..config()
    })
    .await;
    let app = repo("team/signed");
    let image = h
        .push_image(&app, &tag("v1"), "v1", &[b"signed layer"])
        .await;
    let signature = push_referrer(&h.registry, &app, &image.digest, b"signature").await;
    h.registry
        .delete_manifest(&actor(), &app, &by_digest(&image.digest))
        .await
        .unwrap();
    h.advance(LONG_AFTER);
    h.gc().await;
    h.pull(&app, &by_digest(&signature.digest)).await;
}

#[tokio::test]
async fn a_blob_mounted_into_another_repository_lives_while_either_uses_it() {
    let h = Harness::new().await;
    let source = repo("team/base");
    let target = repo("team/derived");
    let base = h
        .push_image(&source, &tag("v1"), "base", &[b"base layer"])
        .await;
    let mounted = h
        .registry
        .mount_blob(&actor(), &target, &source, &base.blobs[1])
        .await
        .unwrap();
    assert_eq!(mounted, Some(b"base layer".len() as u64));
    let derived = h
        .push_image(
            &target,
            &tag("v1"),
            "derived",
            &[b"base layer", b"top layer"],
        )
        .await;

    h.registry
        .delete_manifest(&actor(), &source, &by_digest(&base.digest))
        .await
        .unwrap();
    h.advance(LONG_AFTER);
    let report = h.gc().await;
    assert_eq!(report.blobs_removed, 1, "only base's config goes: {report}");
    let pulled = h.pull(&target, &tag("v1")).await;
    assert_eq!(pulled.blobs, derived.blobs);
    // The source repository no longer serves it, so it cannot be mounted
    // from there any more.
    assert_eq!(
        h.registry
            .mount_blob(&actor(), &repo("team/third"), &source, &base.blobs[1])
            .await
            .unwrap(),
        None
    );

    h.registry
        .delete_manifest(&actor(), &target, &by_digest(&derived.digest))
        .await
        .unwrap();
    h.advance(GRACE + 1);
    h.gc().await;
    assert!(h.all_stored().await.is_empty());
}

#[tokio::test]
async fn a_re_push_during_the_grace_period_keeps_the_blob() {
    let h = Harness::new().await;
    let app = repo("team/app");
    let image = h.push_image(&app, &tag("v1"), "v1", &[b"layer"]).await;
    h.registry
        .delete_manifest(&actor(), &app, &by_digest(&image.digest))
        .await
        .unwrap();
    h.advance(GRACE / 2);
    // A client pushes the same layer again (its manifest still to come): the
    // link's clock restarts, and as a fresh push it is kept at least as
    // long as an upload session may live.
    h.push_blob(&app, b"layer").await;
    h.advance(GRACE);
    let report = h.gc().await;
    assert!(h.stored(&image.blobs[1]).await, "{report}");
    assert!(
        !h.stored(&image.blobs[0]).await,
        "the config was not re-pushed"
    );
    // Re-pushing the config too lets the same manifest in again.
    let again = h.push_image(&app, &tag("v1"), "v1", &[b"layer"]).await;
    assert_eq!(again.digest, image.digest);
    h.pull(&app, &tag("v1")).await;
}

#[tokio::test]
async fn a_blob_deleted_from_a_repository_is_kept_by_another_repository_push() {
    let h = Harness::new().await;
    let one = repo("team/one");
    let two = repo("team/two");
    let digest = h.push_blob(&one, b"lonely blob").await;
    h.registry
        .delete_blob(&actor(), &one, &digest)
        .await
        .unwrap();
    h.advance(GRACE - 10);
    // Re-pushed elsewhere during the grace period: the candidacy is cleared.
    h.push_blob(&two, b"lonely blob").await;
    h.advance(20);
    h.gc().await;
    assert!(h.stored(&digest).await);
    assert_eq!(h.registry.blob_size(&two, &digest).await.unwrap(), 11);
    // Without it, the blob goes once the grace period has passed.
    h.registry
        .delete_blob(&actor(), &two, &digest)
        .await
        .unwrap();
    h.advance(GRACE + 1);
    let report = h.gc().await;
    assert_eq!(report.blobs_removed, 1, "{report}");
    assert!(!h.stored(&digest).await);
}

#[tokio::test]
async fn a_layer_pushed_ahead_of_its_manifest_survives_the_grace_period() {
    let h = Harness::new().await;
    let app = repo("team/slow");
    let layer = h.push_blob(&app, b"early layer").await;
    h.advance(GRACE + 1);
    h.gc().await;
    assert!(h.stored(&layer).await, "kept for at least the upload TTL");
    h.push_image(&app, &tag("v1"), "slow", &[b"early layer"])
        .await;
    // An abandoned push is collected once the upload TTL has passed too.
    let abandoned = h.push_blob(&app, b"abandoned layer").await;
    h.advance(UPLOAD_TTL + 1);
    let report = h.gc().await;
    assert_eq!(report.blobs_removed, 1, "{report}");
    assert!(!h.stored(&abandoned).await);
    h.pull(&app, &tag("v1")).await;
}

#[tokio::test]
async fn a_push_racing_the_final_delete_is_refused_and_then_succeeds() {
    let h = Harness::new().await;
    let app = repo("team/race");
    let digest = h.push_blob(&app, b"contested").await;
    h.registry
        .delete_blob(&actor(), &app, &digest)
        .await
        .unwrap();
    h.advance(GRACE + 1);
    // A collection has taken the blob's row and is about to delete the
    // bytes (as if it were paused between the two steps).
    let candidates = h
        .meta
        .expired_blobs(h.now() - GRACE, None, 10)
        .await
        .unwrap();
    let begun = h
        .meta
        .begin_blob_deletions(&Change::new(actor(), h.now()), &candidates, h.now() - GRACE)
        .await
        .unwrap();
    assert_eq!(begun.len(), 1);
    // A push of the same bytes finds them stored, but may not link them.
    let refused = support::try_push_blob(&h.registry, &app, b"contested")
        .await
        .unwrap_err();
    assert!(matches!(refused, RegistryError::BlobBeingCollected));
    assert_eq!(refused.code(), ErrorCode::BlobUploadInvalid);
    assert!(matches!(
        h.registry.blob_size(&app, &digest).await,
        Err(RegistryError::BlobUnknown)
    ));
    // Mounting is refused the same way (the caller then uploads).
    // The next pass finishes the deletion; then the push goes through and
    // stores the bytes afresh.
    let report = h.gc().await;
    assert_eq!(report.blobs_removed, 1, "{report}");
    assert!(!h.stored(&digest).await);
    h.push_blob(&app, b"contested").await;
    assert!(h.stored(&digest).await);
    h.advance(GRACE + 1);
    h.gc().await;
    assert!(
        h.stored(&digest).await,
        "a fresh push is kept for the upload TTL"
    );
}

/// A blob store that, when armed, deletes a blob right after storing it:
/// a collection that deleted the bytes between a push's storage step and its
/// link (the storage half of the race the deletion markers close).
struct VanishingStore {
    inner: FsBlobStore,
    armed: AtomicBool,
}

#[async_trait::async_trait]
impl BlobStore for VanishingStore {
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        self.inner.blob_size(digest).await
    }
    async fn read_blob(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody, StorageError> {
        self.inner.read_blob(digest, range).await
    }
    async fn delete_blob(&self, digest: &Digest) -> Result<(), StorageError> {
        self.inner.delete_blob(digest).await
    }
    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        self.inner.list_blobs(after, limit).await
    }
    async fn list_uploads(
        &self,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<StoredUpload>, StorageError> {
        self.inner.list_uploads(after, limit).await
    }
    async fn begin_upload(&self, id: &UploadId) -> Result<UploadProgress, StorageError> {
        self.inner.begin_upload(id).await
    }
    async fn write_chunk(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        data: ByteStream,
    ) -> Result<UploadProgress, StorageError> {
        self.inner.write_chunk(id, progress, data).await
    }
    async fn finish_upload(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        expected: &Digest,
    ) -> Result<u64, StorageError> {
        let size = self.inner.finish_upload(id, progress, expected).await?;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.inner.delete_blob(expected).await?;
        }
        Ok(size)
    }
    async fn abort_upload(
        &self,
        id: &UploadId,
        progress: Option<&UploadProgress>,
    ) -> Result<(), StorageError> {
        self.inner.abort_upload(id, progress).await
    }
    async fn check_ready(&self) -> Result<(), StorageError> {
        self.inner.check_ready().await
    }
}

#[tokio::test]
async fn bytes_that_vanish_before_linking_are_not_linked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(VanishingStore {
        inner: FsBlobStore::open(dir.path().join("blobs")).unwrap(),
        armed: AtomicBool::new(true),
    });
    let meta = Arc::new(
        berth_meta::sqlite::SqliteMetaStore::open(&dir.path().join("berth.db"))
            .await
            .unwrap(),
    );
    let registry = Registry::with_clock(
        store.clone(),
        meta.clone(),
        config(),
        Clock::Fixed(Arc::new(AtomicI64::new(START))),
    );
    let app = repo("team/vanish");
    let digest = Algorithm::Sha256.digest_of(b"vanishing");
    let refused = support::try_push_blob(&registry, &app, b"vanishing")
        .await
        .unwrap_err();
    assert!(matches!(refused, RegistryError::BlobBeingCollected));
    assert!(
        matches!(
            registry.blob_size(&app, &digest).await,
            Err(RegistryError::BlobUnknown)
        ),
        "a link to bytes that are gone is taken back"
    );
    // The client's retry stores the bytes again and links them.
    support::try_push_blob(&registry, &app, b"vanishing")
        .await
        .unwrap();
    assert_eq!(registry.blob_size(&app, &digest).await.unwrap(), 9);
    assert!(store.blob_size(&digest).await.unwrap().is_some());
}

#[tokio::test]
async fn a_dry_run_reports_and_removes_nothing() {
    let h = Harness::new().await;
    let app = repo("team/app");
    let digest = h.push_blob(&app, b"doomed").await;
    h.registry
        .delete_blob(&actor(), &app, &digest)
        .await
        .unwrap();
    h.advance(GRACE + 1);
    let report = h
        .registry
        .collect_garbage(&GcOptions {
            dry_run: true,
            ..GcOptions::default()
        })
        .await
        .unwrap();
    assert!(report.dry_run);
    assert_eq!((report.blobs_removed, report.bytes_reclaimed), (1, 6));
    assert!(report.to_string().starts_with("would remove"), "{report}");
    assert!(h.stored(&digest).await);
    let report = h.gc().await;
    assert_eq!((report.blobs_removed, report.bytes_reclaimed), (1, 6));
    assert!(!h.stored(&digest).await);
}

#[tokio::test]
async fn a_crash_between_row_and_bytes_is_finished_by_the_next_pass() {
    let h = Harness::new().await;
    let app = repo("team/crash");
    let digest = h.push_blob(&app, b"half deleted").await;
    h.registry
        .delete_blob(&actor(), &app, &digest)
        .await
        .unwrap();
    h.advance(GRACE + 1);
    let candidates = h.meta.expired_blobs(h.now(), None, 10).await.unwrap();
    h.meta
        .begin_blob_deletions(&Change::new(actor(), h.now()), &candidates, h.now() - GRACE)
        .await
        .unwrap();
    // The process dies here: the row is gone, the bytes and marker remain.
    let dir = h.dir;
    let reopened = Harness::open(dir, config(), START + 2 * GRACE).await;
    assert!(reopened.stored(&digest).await);
    let report = reopened.gc().await;
    assert_eq!((report.blobs_removed, report.bytes_reclaimed), (1, 12));
    assert!(!reopened.stored(&digest).await);
    reopened.no_pending_deletions().await;
}

#[tokio::test]
async fn the_orphan_sweep_removes_old_objects_the_metadata_does_not_know() {
    // Storage stamps objects with the real time, so the clock starts there.
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(dir, config(), real_now).await;
    let app = repo("team/app");
    let kept = h.push_image(&app, &tag("v1"), "v1", &[b"kept layer"]).await;
    // Bytes stored by a push that crashed before linking them.
    let orphan = Algorithm::Sha256.digest_of(b"orphan");
    let id = UploadId::new_random();
    let progress = h.blobs.begin_upload(&id).await.unwrap();
    let progress = h
        .blobs
        .write_chunk(&id, &progress, support::stream(b"orphan".to_vec()))
        .await
        .unwrap();
    h.blobs
        .finish_upload(&id, &progress, &orphan)
        .await
        .unwrap();

    let sweep = GcOptions {
        sweep_orphans: true,
        ..GcOptions::default()
    };
    // Young objects are left alone: they may be a push about to link.
    let report = h.registry.collect_garbage(&sweep).await.unwrap();
    assert_eq!(report.orphans_removed, 0, "{report}");
    // The stored objects carry the wall clock, which has moved on while the
    // harness opened and pushed (seconds on a slow machine), so the step past
    // the grace period leaves a generous margin rather than one second.
    h.advance(GRACE + 600);
    // Without the sweep the orphan is invisible to collection.
    assert_eq!(h.gc().await.objects_removed(), 0);
    let report = h.registry.collect_garbage(&sweep).await.unwrap();
    assert_eq!((report.orphans_removed, report.bytes_reclaimed), (1, 6));
    assert!(!h.stored(&orphan).await);
    let expected: BTreeSet<Digest> = kept.blobs.iter().cloned().collect();
    assert_eq!(h.all_stored().await, expected);
    h.pull(&app, &tag("v1")).await;
    h.no_pending_deletions().await;
}

#[tokio::test]
async fn only_the_lease_holder_collects() {
    let h = Harness::new().await;
    let app = repo("team/app");
    let digest = h.push_blob(&app, b"leased").await;
    h.registry
        .delete_blob(&actor(), &app, &digest)
        .await
        .unwrap();
    h.advance(GRACE + 1);
    assert!(h
        .meta
        .acquire_job_lease("gc", "another-node", h.now(), 60)
        .await
        .unwrap());
    let report = h.gc().await;
    assert!(report.lease_busy);
    assert!(h.stored(&digest).await);
    h.advance(61);
    assert_eq!(h.gc().await.blobs_removed, 1);
}

/// The trash's part of the collection argument: a blob that only a trashed
/// image references is kept, through any number of passes, for as long as
/// the image is restorable; once the trash expires it, the blob is garbage
/// like after any deletion.
#[tokio::test]
async fn a_blob_held_only_by_a_trashed_image_survives_gc_until_the_trash_expires() {
    const RETENTION: i64 = 30 * 24 * 3600;
    let h = Harness::with_config(RegistryConfig {
        trash_retention: std::time::Duration::from_secs(RETENTION as u64),
        ..config()
    })
    .await;
    let app = repo("team/app");
    let kept = h
        .push_image(&app, &tag("v1"), "kept", &[b"trashed layer"])
        .await;
    let restored = h
        .push_image(&app, &tag("v2"), "restored", &[b"restored layer"])
        .await;
    for image in [&kept, &restored] {
        h.registry
            .delete_manifest(&actor(), &app, &by_digest(&image.digest))
            .await
            .unwrap();
        // Gone from the registry at once.
        let gone = h
            .registry
            .get_manifest(&app, &by_digest(&image.digest))
            .await;
        assert!(
            matches!(gone, Err(RegistryError::ManifestUnknown)),
            "{gone:?}"
        );
    }
    assert_eq!(h.registry.list_tags(&app, None, 10).await.unwrap(), vec![]);

    // Long past the grace period, but inside the retention: nothing goes.
    h.advance(LONG_AFTER);
    let report = h.gc().await;
    assert_eq!(report.objects_removed(), 0, "{report}");
    for blob in kept.blobs.iter().chain(&restored.blobs) {
        assert!(h.stored(blob).await);
    }
    assert_eq!(h.registry.expire_trash().await.unwrap(), 0);

    // A restore brings the image back with its tag, bytes and all.
    let back = h
        .registry
        .restore_image(&actor(), &app, &restored.digest)
        .await
        .unwrap();
    assert_eq!(back.tags.len(), 1);
    assert_eq!(
        h.registry
            .get_manifest(&app, &tag("v2"))
            .await
            .unwrap()
            .digest,
        restored.digest
    );

    // Past the retention the other expires; its blobs become candidates as
    // of the expiry and go after the grace period.
    h.advance(RETENTION);
    assert_eq!(h.registry.expire_trash().await.unwrap(), 1);
    let nothing = h.registry.restore_image(&actor(), &app, &kept.digest).await;
    assert!(
        matches!(nothing, Err(RegistryError::ManifestUnknown)),
        "{nothing:?}"
    );
    assert_eq!(
        h.gc().await.objects_removed(),
        0,
        "the grace period still runs"
    );
    h.advance(LONG_AFTER);
    let report = h.gc().await;
    assert_eq!(report.blobs_removed, kept.blobs.len() as u64, "{report}");
    for blob in &kept.blobs {
        assert!(!h.stored(blob).await);
    }
    for blob in &restored.blobs {
        assert!(h.stored(blob).await, "the restored image keeps its blobs");
    }
}

/// Pushes an image whose configuration says it was created `created`
/// (RFC 3339), under `reference`.
async fn push_created(
    h: &Harness,
    app: &berth_oci::RepoName,
    reference: &berth_oci::Reference,
    created: &str,
) -> Digest {
    let config = format!(r#"{{"created":"{created}","os":"linux","architecture":"amd64"}}"#);
    let config_digest = h.push_blob(app, config.as_bytes()).await;
    let layer = h.push_blob(app, created.as_bytes()).await;
    let payload = support::manifest_json((&config_digest, config.len()), &[(layer, created.len())]);
    h.registry
        .put_manifest(
            &actor(),
            app,
            reference,
            &[],
            Some("application/vnd.oci.image.manifest.v1+json"),
            payload,
        )
        .await
        .unwrap()
        .digest
}

#[tokio::test]
async fn retention_trashes_exactly_what_its_dry_run_lists() {
    use berth_oci::{TagPattern, TagRegex};
    use berth_registry::{ImmutableRule, RetentionPolicy, UntaggedImages};

    let h = Harness::with_config(RegistryConfig {
        trash_retention: std::time::Duration::from_secs(86_400),
        ..config()
    })
    .await;
    let app = repo("team/app");
    // Pushed newest first, so push order and creation order disagree.
    let v3 = push_created(&h, &app, &tag("v3"), "2026-01-03T00:00:00Z").await;
    h.registry
        .put_manifest(
            &actor(),
            &app,
            &tag("latest"),
            &[],
            None,
            h.registry
                .get_manifest(&app, &tag("v3"))
                .await
                .unwrap()
                .payload
                .clone(),
        )
        .await
        .unwrap();
    let v2 = push_created(&h, &app, &tag("v2"), "2026-01-02T00:00:00Z").await;
    let v1 = push_created(&h, &app, &tag("v1"), "2026-01-01T00:00:00Z").await;
    let amd = push_created(&h, &app, &tag("amd64"), "2025-12-01T00:00:00Z").await;
    let arm = push_created(&h, &app, &tag("arm-only"), "2025-11-01T00:00:00Z").await;
    let multi = push_index(&h.registry, &app, &tag("multi"), &[&amd, &arm]).await;
    h.registry
        .delete_manifest(&actor(), &app, &tag("amd64"))
        .await
        .unwrap();
    let stable = push_created(&h, &app, &tag("stable-1"), "2020-01-01T00:00:00Z").await;
    let replaced = push_created(&h, &app, &tag("dev"), "2025-01-01T00:00:00Z").await;
    let dev = push_created(&h, &app, &tag("dev"), "2026-01-04T00:00:00Z").await;
    h.registry
        .add_immutable_rule(
            &actor(),
            &ImmutableRule {
                namespace: "team".to_string(),
                repository: None,
                pattern: TagPattern::parse("v1").unwrap(),
                author: "tester".to_string(),
                created_at: h.now(),
            },
        )
        .await
        .unwrap();
    let policy = RetentionPolicy {
        namespace: "team".to_string(),
        keep: 2,
        untagged: UntaggedImages::Delete,
        min_age: 0,
        keep_tags: Some(TagRegex::parse("^stable-").unwrap()),
        author: "tester".to_string(),
        updated_at: h.now(),
    };
    h.registry
        .set_retention_policy(&actor(), &policy)
        .await
        .unwrap();

    let dry = h
        .registry
        .run_retention(&actor(), "team", true)
        .await
        .unwrap()
        .expect("team has a policy");
    let listed: Vec<(Digest, String)> = dry
        .removed
        .iter()
        .map(|v| (v.image.digest.clone(), v.reason.to_string()))
        .collect();
    // dev and v3 (with latest, counted once) are the newest two, by their
    // configurations' `created` (they were pushed in the other order);
    // stable-1 is kept by its tag; v1 is immutable; the index is as old as
    // its newest child; arm-only, a child the live index lists, goes with
    // the index or not at all, and being tagged, not with it.
    assert_eq!(
        listed,
        vec![
            (
                v2.clone(),
                "not among the newest 2 tagged images".to_string()
            ),
            (
                multi.clone(),
                "not among the newest 2 tagged images".to_string()
            ),
            (replaced.clone(), "untagged".to_string()),
        ]
    );
    let skipped: Vec<&Digest> = dry
        .skipped
        .iter()
        .map(|s| &s.verdict.image.digest)
        .collect();
    assert_eq!(skipped, vec![&v1]);
    assert_eq!(dry.kept, 4, "dev, v3, stable-1 and v1");
    // The index's untagged child goes with it; its tagged one is an image.
    assert_eq!(dry.removed[1].image.children, vec![amd.clone()]);
    // A dry run changes nothing.
    assert!(h.registry.get_manifest(&app, &by_digest(&v2)).await.is_ok());

    let real = h
        .registry
        .run_retention(&berth_meta::Actor::system("retention"), "team", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(real.removed, dry.removed);
    assert_eq!(real.skipped, dry.skipped);
    for gone in [&v2, &multi, &replaced, &amd] {
        let found = h.registry.get_manifest(&app, &by_digest(gone)).await;
        assert!(
            matches!(found, Err(RegistryError::ManifestUnknown)),
            "{gone}: {found:?}"
        );
    }
    for kept in [&v3, &v1, &stable, &dev, &arm] {
        assert!(h
            .registry
            .get_manifest(&app, &by_digest(kept))
            .await
            .is_ok());
    }
    let trash = h.registry.trash(Some("team"), None, 100).await.unwrap();
    assert_eq!(
        trash.len(),
        4,
        "each image and the index's child: {trash:?}"
    );
    assert!(trash
        .iter()
        .all(|entry| entry.trashed_by == "system:retention"));
    // The next pass sees arm-only as an image of its own, no index listing
    // it any more, and too old; then there is nothing more to do.
    let again = h
        .registry
        .run_retention(&actor(), "team", false)
        .await
        .unwrap()
        .unwrap();
    let removed: Vec<&Digest> = again.removed.iter().map(|v| &v.image.digest).collect();
    assert_eq!(removed, vec![&arm]);
    let last = h
        .registry
        .run_retention(&actor(), "team", true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.removed, vec![]);
    // Restoring the index brings back its children in the trash: the one
    // that went with it, and the one the second pass took.
    let back = h
        .registry
        .restore_image(&actor(), &app, &multi)
        .await
        .unwrap();
    let mut children = back.children.clone();
    children.sort();
    let mut expected = vec![amd.clone(), arm.clone()];
    expected.sort();
    assert_eq!(children, expected);
    assert_eq!(
        h.registry
            .run_retention(&actor(), "nobody", true)
            .await
            .unwrap(),
        None
    );
}
