//! The shared test suite every [`MetaStore`] backend must pass.
//!
//! Each test is a `pub async fn` taking `&dyn MetaStore`, so a backend's test
//! file runs them all with [`meta_store_tests!`](crate::meta_store_tests) (one
//! `#[tokio::test]` per suite test, each on a fresh store) and [`run_all`]
//! (every test in turn on one store).
//!
//! Because `run_all` shares one store between tests, every test works in its
//! own repositories (named `suite-<test>/...`), deletes the manifests, tags
//! and uploads it created, and checks that they are gone. Repositories cannot
//! be deleted through the trait, so they stay; tests that list repositories
//! only look at names under their own prefix.

use futures::future::{join_all, BoxFuture};

use berth_oci::{Algorithm, Digest, RepoName, Tag};

use crate::{
    LiveUploads, ManifestRecord, MetaError, MetaStore, NewManifest, Referrer, Timestamp,
    UploadRecord,
};

/// A suite test as a plain function, so tests can be listed and run in a loop.
pub type SuiteTest = for<'a> fn(&'a dyn MetaStore) -> BoxFuture<'a, ()>;

/// Every test of the suite, by name, in the order [`run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("store_is_ready", |store| Box::pin(store_is_ready(store))),
    ("blob_links_are_idempotent_and_per_repository", |store| {
        Box::pin(blob_links_are_idempotent_and_per_repository(store))
    }),
    ("repositories_with_a_blob_are_listed_and_paged", |store| {
        Box::pin(repositories_with_a_blob_are_listed_and_paged(store))
    }),
    (
        "put_manifest_with_missing_references_stores_nothing",
        |store| Box::pin(put_manifest_with_missing_references_stores_nothing(store)),
    ),
    (
        "put_manifest_with_wrong_blob_sizes_stores_nothing",
        |store| Box::pin(put_manifest_with_wrong_blob_sizes_stores_nothing(store)),
    ),
    ("manifests_are_found_by_tag_and_digest", |store| {
        Box::pin(manifests_are_found_by_tag_and_digest(store))
    }),
    ("re_putting_a_manifest_only_moves_the_tag", |store| {
        Box::pin(re_putting_a_manifest_only_moves_the_tag(store))
    }),
    ("delete_manifest_removes_its_tags", |store| {
        Box::pin(delete_manifest_removes_its_tags(store))
    }),
    ("index_children_cannot_be_deleted_while_listed", |store| {
        Box::pin(index_children_cannot_be_deleted_while_listed(store))
    }),
    ("delete_tag_leaves_the_manifest", |store| {
        Box::pin(delete_tag_leaves_the_manifest(store))
    }),
    ("tags_are_listed_in_byte_order_and_paged", |store| {
        Box::pin(tags_are_listed_in_byte_order_and_paged(store))
    }),
    ("repositories_are_listed_in_byte_order_and_paged", |store| {
        Box::pin(repositories_are_listed_in_byte_order_and_paged(store))
    }),
    (
        "referrers_are_filtered_by_subject_and_artifact_type",
        |store| Box::pin(referrers_are_filtered_by_subject_and_artifact_type(store)),
    ),
    (
        "upload_leases_exclude_other_holders_until_expiry",
        |store| Box::pin(upload_leases_exclude_other_holders_until_expiry(store)),
    ),
    (
        "a_node_releases_the_upload_leases_of_its_earlier_life",
        |store| Box::pin(a_node_releases_the_upload_leases_of_its_earlier_life(store)),
    ),
    ("uploads_without_records_are_reported", |store| {
        Box::pin(uploads_without_records_are_reported(store))
    }),
    ("expired_uploads_are_listed_oldest_first", |store| {
        Box::pin(expired_uploads_are_listed_oldest_first(store))
    }),
    (
        "live_uploads_are_counted_per_repository_and_principal",
        |store| Box::pin(live_uploads_are_counted_per_repository_and_principal(store)),
    ),
    ("concurrent_writers_all_succeed", |store| {
        Box::pin(concurrent_writers_all_succeed(store))
    }),
    (
        "racing_reference_checks_and_deletions_never_both_win",
        |store| Box::pin(racing_reference_checks_and_deletions_never_both_win(store)),
    ),
    ("racing_pushes_of_one_manifest_all_succeed", |store| {
        Box::pin(racing_pushes_of_one_manifest_all_succeed(store))
    }),
    ("gc_reference_facts_follow_links_and_manifests", |store| {
        Box::pin(gc_reference_facts_follow_links_and_manifests(store))
    }),
    ("job_leases_exclude_other_holders_until_expiry", |store| {
        Box::pin(job_leases_exclude_other_holders_until_expiry(store))
    }),
    ("racing_job_lease_takers_have_one_winner", |store| {
        Box::pin(racing_job_lease_takers_have_one_winner(store))
    }),
];

/// Runs every suite test in turn against one store, which also shows that
/// the tests do not disturb each other.
pub async fn run_all(store: &dyn MetaStore) {
    for (_name, test) in TESTS {
        test(store).await;
    }
}

/// Expands to one `#[tokio::test]` per suite test, plus a check that the list
/// below matches [`TESTS`](crate::suite::TESTS).
///
/// `meta_store_tests!(fresh)`: `fresh` names an async function returning
/// `(guard, store)`: a new empty store, and whatever must live as long as it
/// (a temporary directory, a database server).
///
/// `meta_store_tests!(skippable fresh)`, for backends that need a server the
/// machine may lack: `fresh` takes the test's name and returns
/// `Option<(guard, store)>`, where `None` means it has recorded why the test
/// is skipped, and the test then passes without running.
///
/// The caller's crate must depend on `tokio`.
#[macro_export]
macro_rules! meta_store_tests {
    ($fresh:path) => {
        $crate::meta_store_tests!(@list required $fresh);
    };
    (skippable $fresh:path) => {
        $crate::meta_store_tests!(@list skippable $fresh);
    };
    (@list $mode:ident $fresh:path) => {
        $crate::meta_store_tests!(@each $mode $fresh;
            store_is_ready,
            blob_links_are_idempotent_and_per_repository,
            repositories_with_a_blob_are_listed_and_paged,
            put_manifest_with_missing_references_stores_nothing,
            put_manifest_with_wrong_blob_sizes_stores_nothing,
            manifests_are_found_by_tag_and_digest,
            re_putting_a_manifest_only_moves_the_tag,
            delete_manifest_removes_its_tags,
            index_children_cannot_be_deleted_while_listed,
            delete_tag_leaves_the_manifest,
            tags_are_listed_in_byte_order_and_paged,
            repositories_are_listed_in_byte_order_and_paged,
            referrers_are_filtered_by_subject_and_artifact_type,
            upload_leases_exclude_other_holders_until_expiry,
            a_node_releases_the_upload_leases_of_its_earlier_life,
            uploads_without_records_are_reported,
            expired_uploads_are_listed_oldest_first,
            live_uploads_are_counted_per_repository_and_principal,
            concurrent_writers_all_succeed,
            racing_reference_checks_and_deletions_never_both_win,
            racing_pushes_of_one_manifest_all_succeed,
            gc_reference_facts_follow_links_and_manifests,
            job_leases_exclude_other_holders_until_expiry,
            racing_job_lease_takers_have_one_winner,
        );
    };
    (@each $mode:ident $fresh:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::meta_store_tests!(@fresh $mode $fresh, $name, _guard, store);
                $crate::suite::$name(&store).await;
            }
        )*

        #[test]
        fn suite_macro_lists_every_test() {
            let listed: Vec<&str> = vec![$(stringify!($name)),*];
            let known: Vec<&str> = $crate::suite::TESTS.iter().map(|(name, _)| *name).collect();
            assert_eq!(listed, known);
        }
    };
    // The guard and store names come from the caller so that the test body,
    // expanded at the call site, can see them.
    (@fresh required $fresh:path, $name:ident, $guard:ident, $store:ident) => {
        let ($guard, $store) = $fresh().await;
    };
    (@fresh skippable $fresh:path, $name:ident, $guard:ident, $store:ident) => {
        let Some(($guard, $store)) = $fresh(stringify!($name)).await else {
            return;
        };
    };
}

// --- fixtures ---

/// A fixed "now", far from zero so that `now - 1` and lease arithmetic stay
/// ordinary numbers.
const NOW: Timestamp = 1_700_000_000;

const IMAGE_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const SIGNATURE_TYPE: &str = "application/vnd.example.signature";
const SBOM_TYPE: &str = "application/vnd.example.sbom";

fn repository(name: &str) -> RepoName {
    RepoName::parse(name).expect("test repository names are valid")
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).expect("test tags are valid")
}

fn digest_of(text: &str) -> Digest {
    Algorithm::Sha256.digest_of(text.as_bytes())
}

/// A record whose digest really is the digest of its payload.
fn record(payload: &str, media_type: &str) -> ManifestRecord {
    ManifestRecord {
        digest: digest_of(payload),
        media_type: media_type.to_string(),
        artifact_type: None,
        subject: None,
        annotations: None,
        payload: payload.as_bytes().to_vec(),
    }
}

/// An image manifest referencing `blobs`.
fn image(payload: &str, blobs: &[&Digest]) -> NewManifest {
    NewManifest {
        record: record(payload, IMAGE_MEDIA_TYPE),
        blobs: blobs.iter().map(|&digest| digest.clone()).collect(),
        blob_sizes: Vec::new(),
        children: Vec::new(),
    }
}

/// An index listing `children`.
fn index(payload: &str, children: &[&Digest]) -> NewManifest {
    NewManifest {
        record: record(payload, INDEX_MEDIA_TYPE),
        blobs: Vec::new(),
        blob_sizes: Vec::new(),
        children: children.iter().map(|&digest| digest.clone()).collect(),
    }
}

/// An artifact manifest referring to `subject`.
fn referrer(payload: &str, subject: &Digest, artifact_type: &str) -> NewManifest {
    let mut manifest = image(payload, &[]);
    manifest.record.subject = Some(subject.clone());
    manifest.record.artifact_type = Some(artifact_type.to_string());
    manifest.record.annotations = Some(format!(r#"{{"test":"{payload}"}}"#));
    manifest
}

fn tags(names: &[&str]) -> Vec<Tag> {
    names.iter().map(|name| tag(name)).collect()
}

async fn put(store: &dyn MetaStore, repo: &RepoName, manifest: &NewManifest, tag: Option<&Tag>) {
    store
        .put_manifest(repo, manifest, tag, NOW)
        .await
        .expect("put_manifest succeeds");
}

async fn link(store: &dyn MetaStore, repo: &RepoName, digest: &Digest, size: u64) {
    store
        .link_blob(repo, digest, size, NOW)
        .await
        .expect("link_blob succeeds");
}

async fn delete(store: &dyn MetaStore, repo: &RepoName, digest: &Digest) -> Vec<Tag> {
    store
        .delete_manifest(repo, digest, false, NOW)
        .await
        .expect("delete_manifest succeeds")
        .expect("the manifest was stored")
        .tags
}

async fn list_tags(store: &dyn MetaStore, repo: &RepoName) -> Option<Vec<Tag>> {
    store
        .list_tags(repo, None, usize::MAX)
        .await
        .expect("list_tags succeeds")
}

/// Checks that a test left no tags and none of the given manifests behind.
async fn assert_clean(store: &dyn MetaStore, repo: &RepoName, manifests: &[&Digest]) {
    assert_eq!(
        list_tags(store, repo).await,
        Some(Vec::new()),
        "{repo} has tags left"
    );
    for digest in manifests {
        let found = store.manifest_by_digest(repo, digest).await.unwrap();
        assert_eq!(found, None, "{repo} still holds {digest}");
    }
}

fn upload(id: &str, repo: &RepoName, updated_at: Timestamp) -> UploadRecord {
    UploadRecord {
        id: id.to_string(),
        repository: repo.clone(),
        created_at: updated_at,
        updated_at,
        progress: format!(r#"{{"upload":"{id}","offset":0}}"#),
        principal: None,
    }
}

// --- tests ---

pub async fn store_is_ready(store: &dyn MetaStore) {
    store.check_ready().await.expect("a fresh store is ready");
}

pub async fn blob_links_are_idempotent_and_per_repository(store: &dyn MetaStore) {
    let one = repository("suite-blobs/one");
    let two = repository("suite-blobs/two");
    let blob = digest_of("suite-blobs layer");

    assert_eq!(store.linked_blob_size(&one, &blob).await.unwrap(), None);
    assert!(
        !store.unlink_blob(&one, &blob, NOW).await.unwrap(),
        "nothing to unlink yet"
    );

    link(store, &one, &blob, 17).await;
    link(store, &one, &blob, 17).await;
    assert_eq!(store.linked_blob_size(&one, &blob).await.unwrap(), Some(17));
    assert_eq!(
        store.linked_blob_size(&two, &blob).await.unwrap(),
        None,
        "a link in one repository is invisible from another"
    );
    assert!(!store.unlink_blob(&two, &blob, NOW).await.unwrap());

    link(store, &two, &blob, 17).await;
    assert!(store.unlink_blob(&one, &blob, NOW).await.unwrap());
    assert!(
        !store.unlink_blob(&one, &blob, NOW).await.unwrap(),
        "unlinking twice is harmless"
    );
    assert_eq!(store.linked_blob_size(&one, &blob).await.unwrap(), None);
    assert_eq!(
        store.linked_blob_size(&two, &blob).await.unwrap(),
        Some(17),
        "unlinking from one repository leaves the other's link"
    );
    assert!(store.unlink_blob(&two, &blob, NOW).await.unwrap());
    assert_eq!(store.linked_blob_size(&two, &blob).await.unwrap(), None);

    // A link creates the repository, and unlinking does not remove it.
    assert_eq!(list_tags(store, &one).await, Some(Vec::new()));
}

pub async fn repositories_with_a_blob_are_listed_and_paged(store: &dyn MetaStore) {
    let blob = digest_of("suite-holders blob");
    let other = digest_of("suite-holders other blob");
    let names = [
        "suite-holders/b",
        "suite-holders/a/x",
        "suite-holders/a",
        "suite-holders/a-b",
    ];
    for name in names {
        link(store, &repository(name), &blob, 4).await;
    }
    link(store, &repository("suite-holders/c"), &other, 6).await;
    let listed = |names: Vec<RepoName>| -> Vec<String> {
        names.iter().map(|n| n.as_str().to_string()).collect()
    };
    // Byte order: '-' (0x2d) < '/' (0x2f) < letters.
    let sorted = [
        "suite-holders/a",
        "suite-holders/a-b",
        "suite-holders/a/x",
        "suite-holders/b",
    ];
    assert_eq!(
        listed(store.repositories_with_blob(&blob, None, 10).await.unwrap()),
        sorted
    );
    let first = store.repositories_with_blob(&blob, None, 3).await.unwrap();
    assert_eq!(listed(first.clone()), sorted[..3]);
    let rest = store
        .repositories_with_blob(&blob, first.last(), 3)
        .await
        .unwrap();
    assert_eq!(listed(rest), sorted[3..]);
    // An unlinked repository is no longer a holder; an unknown blob has none.
    assert!(store
        .unlink_blob(&repository("suite-holders/a-b"), &blob, NOW)
        .await
        .unwrap());
    assert_eq!(
        listed(store.repositories_with_blob(&blob, None, 10).await.unwrap()),
        ["suite-holders/a", "suite-holders/a/x", "suite-holders/b"]
    );
    let unknown = digest_of("suite-holders unknown");
    assert!(store
        .repositories_with_blob(&unknown, None, 10)
        .await
        .unwrap()
        .is_empty());
    for name in ["suite-holders/a", "suite-holders/a/x", "suite-holders/b"] {
        assert!(store
            .unlink_blob(&repository(name), &blob, NOW)
            .await
            .unwrap());
    }
    assert!(store
        .unlink_blob(&repository("suite-holders/c"), &other, NOW)
        .await
        .unwrap());
}

pub async fn put_manifest_with_wrong_blob_sizes_stores_nothing(store: &dyn MetaStore) {
    let repo = repository("suite-sizes/app");
    let config = digest_of("suite-sizes config");
    let layer = digest_of("suite-sizes layer");
    link(store, &repo, &config, 3).await;
    link(store, &repo, &layer, 5).await;
    let sized = |payload: &str, sizes: &[(&Digest, u64)]| {
        let mut manifest = image(payload, &[&config, &layer]);
        manifest.blob_sizes = sizes.iter().map(|(d, s)| ((*d).clone(), *s)).collect();
        manifest
    };
    let latest = tag("latest");
    let mismatch = |digest: &Digest, declared, stored| crate::SizeMismatch {
        digest: digest.clone(),
        declared,
        stored,
    };
    // (manifest, the mismatches reported, in declaration order)
    let refused = [
        (
            sized("suite-sizes layer", &[(&config, 3), (&layer, 6)]),
            vec![mismatch(&layer, 6, 5)],
        ),
        (
            sized("suite-sizes both", &[(&config, 0), (&layer, u64::MAX)]),
            vec![mismatch(&config, 0, 3), mismatch(&layer, u64::MAX, 5)],
        ),
        (
            sized(
                "suite-sizes twice",
                &[(&config, 3), (&layer, 5), (&layer, 4)],
            ),
            vec![mismatch(&layer, 4, 5)],
        ),
    ];
    for (manifest, expected) in &refused {
        match store
            .put_manifest(&repo, manifest, Some(&latest), NOW)
            .await
        {
            Err(MetaError::BlobSizeMismatch(found)) => assert_eq!(&found, expected),
            other => panic!("expected BlobSizeMismatch, got {other:?}"),
        }
        assert_eq!(
            store
                .manifest_by_digest(&repo, &manifest.record.digest)
                .await
                .unwrap(),
            None,
            "a refused manifest is not stored"
        );
    }
    assert_eq!(store.manifest_by_tag(&repo, &latest).await.unwrap(), None);

    let right = sized("suite-sizes right", &[(&config, 3), (&layer, 5)]);
    put(store, &repo, &right, Some(&latest)).await;
    assert_eq!(
        delete(store, &repo, &right.record.digest).await,
        vec![latest]
    );
    assert!(store.unlink_blob(&repo, &config, NOW).await.unwrap());
    assert!(store.unlink_blob(&repo, &layer, NOW).await.unwrap());
}

pub async fn put_manifest_with_missing_references_stores_nothing(store: &dyn MetaStore) {
    let repo = repository("suite-missing/app");
    let elsewhere = repository("suite-missing/elsewhere");
    let config = digest_of("suite-missing config");
    let layer = digest_of("suite-missing layer");
    let manifest = image("suite-missing image", &[&config, &layer, &config]);
    let latest = tag("latest");

    // Nothing linked, in a repository that does not exist yet: both blobs are
    // reported, each once, and not even the repository is created.
    match store
        .put_manifest(&repo, &manifest, Some(&latest), NOW)
        .await
    {
        Err(MetaError::MissingBlobs(missing)) => {
            assert_eq!(missing, vec![config.clone(), layer.clone()])
        }
        other => panic!("expected MissingBlobs, got {other:?}"),
    }
    assert_eq!(
        list_tags(store, &repo).await,
        None,
        "a refused push creates no repository"
    );

    // A blob linked only in another repository does not count.
    link(store, &elsewhere, &layer, 5).await;
    link(store, &repo, &config, 3).await;
    match store
        .put_manifest(&repo, &manifest, Some(&latest), NOW)
        .await
    {
        Err(MetaError::MissingBlobs(missing)) => assert_eq!(missing, vec![layer.clone()]),
        other => panic!("expected MissingBlobs, got {other:?}"),
    }
    assert_eq!(
        store
            .manifest_by_digest(&repo, &manifest.record.digest)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.manifest_by_tag(&repo, &latest).await.unwrap(), None);
    assert_eq!(list_tags(store, &repo).await, Some(Vec::new()));

    link(store, &repo, &layer, 5).await;
    put(store, &repo, &manifest, Some(&latest)).await;

    // An index whose children are not all stored is refused the same way.
    let absent = digest_of("suite-missing absent child");
    let incomplete = index("suite-missing index", &[&manifest.record.digest, &absent]);
    let index_tag = tag("index");
    match store
        .put_manifest(&repo, &incomplete, Some(&index_tag), NOW)
        .await
    {
        Err(MetaError::MissingManifests(missing)) => assert_eq!(missing, vec![absent.clone()]),
        other => panic!("expected MissingManifests, got {other:?}"),
    }
    assert_eq!(
        store
            .manifest_by_digest(&repo, &incomplete.record.digest)
            .await
            .unwrap(),
        None
    );
    assert_eq!(list_tags(store, &repo).await, Some(tags(&["latest"])));

    // The refused index left no child rows behind: the image can be deleted.
    assert_eq!(
        delete(store, &repo, &manifest.record.digest).await,
        tags(&["latest"])
    );
    assert!(store.unlink_blob(&repo, &config, NOW).await.unwrap());
    assert!(store.unlink_blob(&repo, &layer, NOW).await.unwrap());
    assert!(store.unlink_blob(&elsewhere, &layer, NOW).await.unwrap());
    assert_clean(
        store,
        &repo,
        &[&manifest.record.digest, &incomplete.record.digest],
    )
    .await;
}

pub async fn manifests_are_found_by_tag_and_digest(store: &dyn MetaStore) {
    let repo = repository("suite-get/app");
    let other = repository("suite-get/other");
    let subject = digest_of("suite-get subject");
    let mut manifest = image("suite-get image", &[]);
    manifest.record.artifact_type = Some(SBOM_TYPE.to_string());
    manifest.record.subject = Some(subject);
    manifest.record.annotations = Some(r#"{"org.example":"yes"}"#.to_string());
    let v1 = tag("v1");
    put(store, &repo, &manifest, Some(&v1)).await;
    // The other repository exists but holds nothing under the same names.
    put(
        store,
        &other,
        &image("suite-get other image", &[]),
        Some(&tag("v2")),
    )
    .await;

    let digest = &manifest.record.digest;
    let v2 = tag("v2");
    let unknown = digest_of("suite-get unknown");
    let absent = repository("suite-get/absent");
    /// How a case looks the manifest up.
    #[derive(Debug)]
    enum Lookup<'a> {
        Tag(&'a Tag),
        Digest(&'a Digest),
    }
    let cases: Vec<(&RepoName, Lookup, Option<&ManifestRecord>)> = vec![
        (&repo, Lookup::Tag(&v1), Some(&manifest.record)),
        (&repo, Lookup::Digest(digest), Some(&manifest.record)),
        (&repo, Lookup::Tag(&v2), None),
        (&repo, Lookup::Digest(&unknown), None),
        (&other, Lookup::Tag(&v1), None),
        (&other, Lookup::Digest(digest), None),
        (&absent, Lookup::Tag(&v1), None),
        (&absent, Lookup::Digest(digest), None),
    ];
    for (repo, lookup, expected) in cases {
        let found = match lookup {
            Lookup::Tag(tag) => store.manifest_by_tag(repo, tag).await.unwrap(),
            Lookup::Digest(digest) => store.manifest_by_digest(repo, digest).await.unwrap(),
        };
        assert_eq!(found.as_ref(), expected, "{repo} {lookup:?}");
    }

    assert_eq!(delete(store, &repo, digest).await, tags(&["v1"]));
    let other_digest = digest_of("suite-get other image");
    assert_eq!(delete(store, &other, &other_digest).await, tags(&["v2"]));
    assert_clean(store, &repo, &[digest]).await;
    assert_clean(store, &other, &[&other_digest]).await;
}

pub async fn re_putting_a_manifest_only_moves_the_tag(store: &dyn MetaStore) {
    let repo = repository("suite-reput/app");
    let layer = digest_of("suite-reput layer");
    link(store, &repo, &layer, 9).await;
    let first = image("suite-reput first", &[&layer]);
    let second = image("suite-reput second", &[&layer]);
    let latest = tag("latest");

    put(store, &repo, &first, Some(&latest)).await;
    put(store, &repo, &second, Some(&latest)).await;
    assert_eq!(
        store.manifest_by_tag(&repo, &latest).await.unwrap(),
        Some(second.record.clone()),
        "the tag follows the newest push"
    );
    assert_eq!(
        store
            .manifest_by_digest(&repo, &first.record.digest)
            .await
            .unwrap(),
        Some(first.record.clone()),
        "moving a tag leaves the old manifest"
    );

    // Re-putting the first manifest moves the tag back and changes nothing
    // else: not the stored fields, and its references are not checked again.
    assert!(store.unlink_blob(&repo, &layer, NOW).await.unwrap());
    let mut again = first.clone();
    again.record.annotations = Some(r#"{"ignored":"true"}"#.to_string());
    put(store, &repo, &again, Some(&latest)).await;
    put(store, &repo, &again, None).await;
    assert_eq!(
        store.manifest_by_tag(&repo, &latest).await.unwrap(),
        Some(first.record.clone())
    );
    assert_eq!(list_tags(store, &repo).await, Some(tags(&["latest"])));

    assert_eq!(
        delete(store, &repo, &first.record.digest).await,
        tags(&["latest"])
    );
    assert_eq!(
        delete(store, &repo, &second.record.digest).await,
        Vec::<Tag>::new()
    );
    assert_clean(store, &repo, &[&first.record.digest, &second.record.digest]).await;
}

pub async fn delete_manifest_removes_its_tags(store: &dyn MetaStore) {
    let repo = repository("suite-delete/app");
    let other = repository("suite-delete/other");
    let layer = digest_of("suite-delete layer");
    link(store, &repo, &layer, 4).await;
    let doomed = image("suite-delete doomed", &[&layer]);
    let kept = image("suite-delete kept", &[&layer]);
    for name in ["b", "a", "c"] {
        put(store, &repo, &doomed, Some(&tag(name))).await;
    }
    put(store, &repo, &kept, Some(&tag("kept"))).await;
    // The same manifest in another repository is a separate copy.
    put(
        store,
        &other,
        &image("suite-delete doomed", &[]),
        Some(&tag("a")),
    )
    .await;

    assert_eq!(
        delete(store, &repo, &doomed.record.digest).await,
        tags(&["a", "b", "c"])
    );
    assert_eq!(list_tags(store, &repo).await, Some(tags(&["kept"])));
    assert_eq!(store.manifest_by_tag(&repo, &tag("a")).await.unwrap(), None);
    assert_eq!(
        store
            .manifest_by_digest(&repo, &doomed.record.digest)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.manifest_by_tag(&other, &tag("a")).await.unwrap(),
        Some(image("suite-delete doomed", &[]).record),
        "deleting in one repository leaves the other's copy"
    );
    assert_eq!(
        store.linked_blob_size(&repo, &layer).await.unwrap(),
        Some(4),
        "deleting a manifest leaves its blobs to garbage collection"
    );

    // Deleting what is not there is not an error.
    let absent = store
        .delete_manifest(&repo, &doomed.record.digest, false, NOW)
        .await
        .unwrap();
    assert_eq!(absent, None);
    let no_repository = store
        .delete_manifest(
            &repository("suite-delete/absent"),
            &doomed.record.digest,
            false,
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(no_repository, None);

    assert_eq!(
        delete(store, &repo, &kept.record.digest).await,
        tags(&["kept"])
    );
    assert_eq!(
        delete(store, &other, &doomed.record.digest).await,
        tags(&["a"])
    );
    assert!(store.unlink_blob(&repo, &layer, NOW).await.unwrap());
    assert_clean(store, &repo, &[&doomed.record.digest, &kept.record.digest]).await;
    assert_clean(store, &other, &[&doomed.record.digest]).await;
}

pub async fn index_children_cannot_be_deleted_while_listed(store: &dyn MetaStore) {
    let repo = repository("suite-index/app");
    let other = repository("suite-index/other");
    let amd64 = image("suite-index amd64", &[]);
    let arm64 = image("suite-index arm64", &[]);
    put(store, &repo, &amd64, None).await;
    put(store, &repo, &arm64, None).await;
    // The child listed twice (as some tools do for platform variants) is
    // stored once and still protected.
    let index = index(
        "suite-index index",
        &[
            &amd64.record.digest,
            &arm64.record.digest,
            &amd64.record.digest,
        ],
    );
    put(store, &repo, &index, Some(&tag("multi"))).await;
    assert_eq!(
        store.manifest_by_tag(&repo, &tag("multi")).await.unwrap(),
        Some(index.record.clone())
    );

    for child in [&amd64, &arm64] {
        match store
            .delete_manifest(&repo, &child.record.digest, false, NOW)
            .await
        {
            Err(MetaError::ManifestReferenced(parent)) => assert_eq!(parent, index.record.digest),
            other => panic!("expected ManifestReferenced, got {other:?}"),
        }
        assert_eq!(
            store
                .manifest_by_digest(&repo, &child.record.digest)
                .await
                .unwrap(),
            Some(child.record.clone()),
            "a refused deletion deletes nothing"
        );
    }

    // The same child in another repository is not protected by this index.
    put(store, &other, &amd64, Some(&tag("solo"))).await;
    assert_eq!(
        delete(store, &other, &amd64.record.digest).await,
        tags(&["solo"])
    );

    assert_eq!(
        delete(store, &repo, &index.record.digest).await,
        tags(&["multi"])
    );
    assert_eq!(
        delete(store, &repo, &amd64.record.digest).await,
        Vec::<Tag>::new()
    );
    assert_eq!(
        delete(store, &repo, &arm64.record.digest).await,
        Vec::<Tag>::new()
    );
    assert_clean(
        store,
        &repo,
        &[
            &index.record.digest,
            &amd64.record.digest,
            &arm64.record.digest,
        ],
    )
    .await;
}

pub async fn delete_tag_leaves_the_manifest(store: &dyn MetaStore) {
    let repo = repository("suite-untag/app");
    let manifest = image("suite-untag image", &[]);
    put(store, &repo, &manifest, Some(&tag("old"))).await;
    put(store, &repo, &manifest, Some(&tag("new"))).await;

    assert!(store.delete_tag(&repo, &tag("old")).await.unwrap());
    assert!(
        !store.delete_tag(&repo, &tag("old")).await.unwrap(),
        "the tag is gone already"
    );
    assert!(!store
        .delete_tag(&repository("suite-untag/absent"), &tag("new"))
        .await
        .unwrap());
    assert_eq!(list_tags(store, &repo).await, Some(tags(&["new"])));
    assert_eq!(
        store.manifest_by_tag(&repo, &tag("old")).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .manifest_by_digest(&repo, &manifest.record.digest)
            .await
            .unwrap(),
        Some(manifest.record.clone())
    );

    assert!(store.delete_tag(&repo, &tag("new")).await.unwrap());
    assert_eq!(
        store
            .manifest_by_digest(&repo, &manifest.record.digest)
            .await
            .unwrap(),
        Some(manifest.record.clone()),
        "an untagged manifest stays until it is deleted"
    );
    assert_eq!(
        delete(store, &repo, &manifest.record.digest).await,
        Vec::<Tag>::new()
    );
    assert_clean(store, &repo, &[&manifest.record.digest]).await;
}

pub async fn tags_are_listed_in_byte_order_and_paged(store: &dyn MetaStore) {
    let repo = repository("suite-tags/app");
    let manifest = image("suite-tags image", &[]);
    // Byte order puts digits, then upper case, then '_', then lower case;
    // within "a…", the separators '-' < '.' < '_' sort before letters.
    let sorted = ["0", "A", "B", "_x", "a", "a-b", "a.b", "a_b", "ab"];
    for name in ["ab", "B", "a.b", "_x", "a", "0", "a_b", "A", "a-b"] {
        put(store, &repo, &manifest, Some(&tag(name))).await;
    }

    let cases: &[(Option<&str>, usize, &[&str])] = &[
        (None, 100, &sorted),
        (None, usize::MAX, &sorted),
        (None, 3, &["0", "A", "B"]),
        (None, 0, &[]),
        (Some("B"), 2, &["_x", "a"]),
        // `after` need not be a tag that exists.
        (Some("Z"), 2, &["_x", "a"]),
        (Some("a"), 100, &["a-b", "a.b", "a_b", "ab"]),
        (Some("a."), 100, &["a.b", "a_b", "ab"]),
        (Some("ab"), 100, &[]),
        (Some("zzz"), 100, &[]),
    ];
    for &(after, limit, expected) in cases {
        let listed = store.list_tags(&repo, after, limit).await.unwrap();
        assert_eq!(
            listed,
            Some(tags(expected)),
            "after {after:?}, limit {limit}"
        );
    }

    // Paging two at a time visits every tag once, in order.
    let mut paged: Vec<Tag> = Vec::new();
    loop {
        let after = paged.last().map(|tag| tag.as_str().to_string());
        let page = store
            .list_tags(&repo, after.as_deref(), 2)
            .await
            .unwrap()
            .unwrap();
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged, tags(&sorted));

    assert_eq!(
        list_tags(store, &repository("suite-tags/absent")).await,
        None
    );
    let untagged = repository("suite-tags/untagged");
    put(store, &untagged, &manifest, None).await;
    assert_eq!(list_tags(store, &untagged).await, Some(Vec::new()));

    let mut removed = delete(store, &repo, &manifest.record.digest).await;
    removed.sort_by(|a, b| a.as_str().as_bytes().cmp(b.as_str().as_bytes()));
    assert_eq!(removed, tags(&sorted));
    assert_eq!(
        delete(store, &untagged, &manifest.record.digest).await,
        Vec::<Tag>::new()
    );
    assert_clean(store, &repo, &[&manifest.record.digest]).await;
}

pub async fn repositories_are_listed_in_byte_order_and_paged(store: &dyn MetaStore) {
    const PREFIX: &str = "suite-repos/";
    let sorted: Vec<String> = ["a", "a-b", "a.b", "a/b", "a0", "a__b", "a_b", "ab"]
        .iter()
        .map(|name| format!("{PREFIX}{name}"))
        .collect();
    // Repositories come into being through any of the three kinds of write.
    let blob = digest_of("suite-repos blob");
    let manifest = image("suite-repos image", &[]);
    for (position, name) in ["ab", "a/b", "a", "a_b", "a0", "a.b", "a__b", "a-b"]
        .iter()
        .enumerate()
    {
        let repo = repository(&format!("{PREFIX}{name}"));
        match position % 3 {
            0 => link(store, &repo, &blob, 1).await,
            1 => put(store, &repo, &manifest, None).await,
            _ => {
                let id = format!("suite-repos-{position}");
                store.create_upload(&upload(&id, &repo, NOW)).await.unwrap();
                assert!(store.delete_upload(&id).await.unwrap());
            }
        }
    }

    // Other tests' repositories may be present, so only names under the
    // prefix count, and listing starts at the prefix's first component.
    let start = repository("suite-repos");
    let under_prefix = |names: Vec<RepoName>| -> Vec<String> {
        names
            .into_iter()
            .map(|name| name.as_str().to_string())
            .take_while(|name| name.starts_with(PREFIX))
            .collect()
    };
    let all = store
        .list_repositories(Some(&start), usize::MAX)
        .await
        .unwrap();
    assert_eq!(under_prefix(all), sorted);

    let cases: &[(&str, usize, &[&str])] = &[
        ("a", 3, &["a-b", "a.b", "a/b"]),
        ("a/b", 2, &["a0", "a__b"]),
        ("a_b", 10, &["ab"]),
    ];
    for &(after, limit, expected) in cases {
        let after = repository(&format!("{PREFIX}{after}"));
        let listed = store.list_repositories(Some(&after), limit).await.unwrap();
        let expected: Vec<String> = expected
            .iter()
            .map(|name| format!("{PREFIX}{name}"))
            .collect();
        assert_eq!(
            under_prefix(listed),
            expected,
            "after {after}, limit {limit}"
        );
    }
    assert!(store.list_repositories(None, 0).await.unwrap().is_empty());

    // Paging three at a time visits every repository once, in order.
    let mut paged: Vec<String> = Vec::new();
    let mut after = start;
    loop {
        let page = store.list_repositories(Some(&after), 3).await.unwrap();
        let Some(last) = page.last().cloned() else {
            break;
        };
        let page_len = page.len();
        let mine = under_prefix(page);
        let done = mine.len() < page_len;
        paged.extend(mine);
        if done {
            break;
        }
        after = last;
    }
    assert_eq!(paged, sorted);

    for (position, name) in ["ab", "a/b", "a", "a_b", "a0", "a.b", "a__b", "a-b"]
        .iter()
        .enumerate()
    {
        let repo = repository(&format!("{PREFIX}{name}"));
        match position % 3 {
            0 => assert!(store.unlink_blob(&repo, &blob, NOW).await.unwrap()),
            1 => assert_eq!(
                delete(store, &repo, &manifest.record.digest).await,
                Vec::<Tag>::new()
            ),
            _ => {}
        }
        assert_clean(store, &repo, &[&manifest.record.digest]).await;
    }
}

pub async fn referrers_are_filtered_by_subject_and_artifact_type(store: &dyn MetaStore) {
    let repo = repository("suite-referrers/app");
    let other = repository("suite-referrers/other");
    let subject = image("suite-referrers subject", &[]);
    let subject_digest = &subject.record.digest;
    put(store, &repo, &subject, Some(&tag("v1"))).await;

    let signature = referrer("suite-referrers signature", subject_digest, SIGNATURE_TYPE);
    let second_signature = referrer(
        "suite-referrers signature 2",
        subject_digest,
        SIGNATURE_TYPE,
    );
    let sbom = referrer("suite-referrers sbom", subject_digest, SBOM_TYPE);
    // Noise: a referrer of another subject, and one of this subject in
    // another repository, which must not leak into this repository's list.
    let unrelated = referrer(
        "suite-referrers unrelated",
        &digest_of("elsewhere"),
        SIGNATURE_TYPE,
    );
    let foreign = referrer("suite-referrers foreign", subject_digest, SIGNATURE_TYPE);
    for manifest in [&signature, &second_signature, &sbom, &unrelated] {
        put(store, &repo, manifest, None).await;
    }
    put(store, &other, &foreign, None).await;

    let as_referrer = |manifest: &NewManifest| Referrer {
        digest: manifest.record.digest.clone(),
        media_type: manifest.record.media_type.clone(),
        size: manifest.record.payload.len() as u64,
        artifact_type: manifest.record.artifact_type.clone(),
        annotations: manifest.record.annotations.clone(),
    };
    let sorted = |manifests: &[&NewManifest]| {
        let mut referrers: Vec<Referrer> = manifests.iter().map(|m| as_referrer(m)).collect();
        referrers.sort_by(|a, b| a.digest.as_str().cmp(b.digest.as_str()));
        referrers
    };
    let absent = repository("suite-referrers/absent");
    let cases: Vec<(&RepoName, &Digest, Option<&str>, Vec<Referrer>)> = vec![
        (
            &repo,
            subject_digest,
            None,
            sorted(&[&signature, &second_signature, &sbom]),
        ),
        (
            &repo,
            subject_digest,
            Some(SIGNATURE_TYPE),
            sorted(&[&signature, &second_signature]),
        ),
        (&repo, subject_digest, Some(SBOM_TYPE), sorted(&[&sbom])),
        (
            &repo,
            subject_digest,
            Some("application/vnd.example.none"),
            Vec::new(),
        ),
        (&repo, &signature.record.digest, None, Vec::new()),
        (&other, subject_digest, None, sorted(&[&foreign])),
        (&absent, subject_digest, None, Vec::new()),
    ];
    let all = |repo, subject, artifact_type| {
        store.referrers(repo, subject, artifact_type, None, usize::MAX, usize::MAX)
    };
    for (repo, subject, artifact_type, expected) in cases {
        let listed = all(repo, subject, artifact_type).await.unwrap();
        assert_eq!(listed, expected, "{repo} {subject} {artifact_type:?}");
    }

    // Pages of two: each starts strictly after the last digest of the one
    // before, with and without the filter.
    for (artifact_type, expected) in [
        (None, sorted(&[&signature, &second_signature, &sbom])),
        (
            Some(SIGNATURE_TYPE),
            sorted(&[&signature, &second_signature]),
        ),
    ] {
        let mut paged = Vec::new();
        let mut after: Option<Digest> = None;
        for _ in 0..expected.len() + 1 {
            let page = store
                .referrers(
                    &repo,
                    subject_digest,
                    artifact_type,
                    after.as_ref(),
                    2,
                    usize::MAX,
                )
                .await
                .unwrap();
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            paged.extend(page);
        }
        assert_eq!(paged, expected, "{artifact_type:?}");
    }

    // Annotations longer than the cap are left out, nothing else is; the
    // stored annotations are `{"test":"<payload>"}`.
    let annotation_bytes =
        |manifest: &NewManifest| manifest.record.annotations.as_ref().unwrap().len();
    let cap = annotation_bytes(&signature);
    assert!(annotation_bytes(&sbom) < cap && annotation_bytes(&second_signature) > cap);
    let capped = store
        .referrers(&repo, subject_digest, None, None, usize::MAX, cap)
        .await
        .unwrap();
    let expected: Vec<Referrer> = sorted(&[&signature, &second_signature, &sbom])
        .into_iter()
        .map(|mut referrer| {
            if referrer.digest == second_signature.record.digest {
                referrer.annotations = None;
            }
            referrer
        })
        .collect();
    assert_eq!(capped, expected);
    // The cap counts bytes, not characters.
    let accented_subject = digest_of("suite-referrers accented subject");
    let accented = referrer("suite-referrers ééé", &accented_subject, SBOM_TYPE);
    put(store, &repo, &accented, None).await;
    let characters = accented
        .record
        .annotations
        .as_ref()
        .unwrap()
        .chars()
        .count();
    let listed = store
        .referrers(&repo, &accented_subject, None, None, usize::MAX, characters)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].annotations, None, "3 characters over in bytes");
    assert_eq!(
        delete(store, &repo, &accented.record.digest).await,
        Vec::<Tag>::new()
    );

    // Referrers may outlive their subject, as the spec allows.
    assert_eq!(delete(store, &repo, subject_digest).await, tags(&["v1"]));
    let orphans = all(&repo, subject_digest, None).await.unwrap();
    assert_eq!(orphans, sorted(&[&signature, &second_signature, &sbom]));

    for manifest in [&signature, &second_signature, &sbom, &unrelated] {
        assert_eq!(
            delete(store, &repo, &manifest.record.digest).await,
            Vec::<Tag>::new()
        );
    }
    assert_eq!(
        delete(store, &other, &foreign.record.digest).await,
        Vec::<Tag>::new()
    );
    assert!(all(&repo, subject_digest, None).await.unwrap().is_empty());
    assert_clean(store, &repo, &[subject_digest]).await;
}

pub async fn upload_leases_exclude_other_holders_until_expiry(store: &dyn MetaStore) {
    let repo = repository("suite-uploads/app");
    let other = repository("suite-uploads/other");
    let id = "suite-uploads-1";
    let created = upload(id, &repo, NOW);
    store.create_upload(&created).await.unwrap();

    assert_eq!(
        store.get_upload(&repo, id).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(
        store.get_upload(&other, id).await.unwrap(),
        None,
        "uploads belong to one repository"
    );
    assert_eq!(
        store
            .get_upload(&repo, "suite-uploads-absent")
            .await
            .unwrap(),
        None
    );

    // Steps of (holder, now, expected outcome) against a 30-second lease.
    #[derive(Debug)]
    enum Outcome {
        Locked,
        Busy,
    }
    let steps: &[(&str, Timestamp, Outcome)] = &[
        ("alice", NOW, Outcome::Locked),
        ("bob", NOW + 10, Outcome::Busy),
        // The holder may renew its own lease, which now runs to NOW + 40.
        ("alice", NOW + 10, Outcome::Locked),
        ("bob", NOW + 39, Outcome::Busy),
        // At the expiry second the lease is over and another holder takes it.
        ("bob", NOW + 40, Outcome::Locked),
        ("alice", NOW + 41, Outcome::Busy),
    ];
    for (holder, now, expected) in steps {
        let result = store.lock_upload(&repo, id, holder, *now, 30).await;
        match (expected, result) {
            (Outcome::Locked, Ok(record)) => assert_eq!(record, created),
            (Outcome::Busy, Err(MetaError::UploadBusy)) => {}
            (expected, result) => {
                panic!("{holder} at {now}: expected {expected:?}, got {result:?}")
            }
        }
    }

    // Alice lost the lease, so her write is refused and the progress kept.
    match store
        .update_upload(id, "alice", "alice's progress", NOW + 42)
        .await
    {
        Err(MetaError::UploadBusy) => {}
        other => panic!("expected UploadBusy, got {other:?}"),
    }
    // Alice releasing what she no longer holds leaves Bob's lease in place.
    store.unlock_upload(id, "alice").await.unwrap();
    assert!(matches!(
        store.lock_upload(&repo, id, "alice", NOW + 43, 30).await,
        Err(MetaError::UploadBusy)
    ));

    // Bob's update stores progress, moves `updated_at` and releases the lease.
    store
        .update_upload(id, "bob", "bob's progress", NOW + 44)
        .await
        .unwrap();
    let updated = store
        .get_upload(&repo, id)
        .await
        .unwrap()
        .expect("upload exists");
    assert_eq!(updated.progress, "bob's progress");
    assert_eq!(updated.updated_at, NOW + 44);
    assert_eq!(updated.created_at, NOW);
    match store.update_upload(id, "bob", "again", NOW + 45).await {
        Err(MetaError::UploadBusy) => {}
        other => panic!("an update without the lease must fail, got {other:?}"),
    }

    // A lease that expired but was not taken still lets its holder write.
    store
        .lock_upload(&repo, id, "alice", NOW + 50, 5)
        .await
        .unwrap();
    store
        .update_upload(id, "alice", "late but fine", NOW + 100)
        .await
        .unwrap();

    // Unlocking releases without touching progress.
    store
        .lock_upload(&repo, id, "alice", NOW + 101, 30)
        .await
        .unwrap();
    store.unlock_upload(id, "alice").await.unwrap();
    let record = store
        .lock_upload(&repo, id, "bob", NOW + 102, 30)
        .await
        .unwrap();
    assert_eq!(record.progress, "late but fine");
    assert_eq!(record.updated_at, NOW + 100);
    store.unlock_upload(id, "bob").await.unwrap();

    let absent = "suite-uploads-absent";
    assert!(matches!(
        store.lock_upload(&repo, absent, "bob", NOW, 30).await,
        Err(MetaError::UploadNotFound)
    ));
    assert!(matches!(
        store.lock_upload(&other, id, "bob", NOW, 30).await,
        Err(MetaError::UploadNotFound)
    ));
    assert!(matches!(
        store.update_upload(absent, "bob", "{}", NOW).await,
        Err(MetaError::UploadNotFound)
    ));
    store.unlock_upload(absent, "bob").await.unwrap();

    assert!(store.delete_upload(id).await.unwrap());
    assert!(!store.delete_upload(id).await.unwrap());
    assert_eq!(store.get_upload(&repo, id).await.unwrap(), None);
}

pub async fn a_node_releases_the_upload_leases_of_its_earlier_life(store: &dyn MetaStore) {
    let repo = repository("suite-release/app");
    // (upload, holder of its lease, released by the prefix "node-1/")
    let cases: &[(&str, Option<&str>, bool)] = &[
        ("suite-release-a", Some("node-1/a1"), true),
        ("suite-release-b", Some("node-1/b2"), true),
        // Another node whose name starts with the same characters.
        ("suite-release-c", Some("node-10/c3"), false),
        ("suite-release-d", Some("node-2/d4"), false),
        // Characters that `LIKE` would treat as patterns match themselves.
        ("suite-release-e", Some("node_1/e5"), false),
        ("suite-release-f", None, false),
    ];
    for (id, holder, _) in cases {
        store.create_upload(&upload(id, &repo, NOW)).await.unwrap();
        if let Some(holder) = holder {
            store
                .lock_upload(&repo, id, holder, NOW, 300)
                .await
                .unwrap();
        }
    }
    let expected = cases.iter().filter(|(_, _, released)| *released).count();
    assert_eq!(
        store.release_upload_leases("node-1/").await.unwrap(),
        expected as u64
    );
    for (id, holder, released) in cases {
        // The leases run for 300 seconds; only a released one (or none)
        // lets another holder in now.
        let taken = store.lock_upload(&repo, id, "other", NOW + 1, 30).await;
        match (holder, released, taken) {
            (None, _, Ok(_)) | (Some(_), true, Ok(_)) => {}
            (Some(_), false, Err(MetaError::UploadBusy)) => {}
            (holder, released, taken) => {
                panic!("{id} held by {holder:?} (released: {released}): lock gave {taken:?}")
            }
        }
        let record = store.get_upload(&repo, id).await.unwrap().expect("kept");
        assert_eq!(record, upload(id, &repo, NOW), "progress is untouched");
    }
    assert_eq!(store.release_upload_leases("node-1/").await.unwrap(), 0);
    for (id, _, _) in cases {
        assert!(store.delete_upload(id).await.unwrap());
    }
}

pub async fn uploads_without_records_are_reported(store: &dyn MetaStore) {
    let repo = repository("suite-unknown-uploads/app");
    let known = ["suite-unknown-uploads-a", "suite-unknown-uploads-b"];
    for id in known {
        store.create_upload(&upload(id, &repo, NOW)).await.unwrap();
    }
    let ids = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &[]),
        (&known, &[]),
        (
            &[
                "suite-unknown-uploads-y",
                "suite-unknown-uploads-a",
                "suite-unknown-uploads-x",
                "suite-unknown-uploads-y",
                "suite-unknown-uploads-b",
            ],
            &["suite-unknown-uploads-y", "suite-unknown-uploads-x"],
        ),
    ];
    for (asked, expected) in cases {
        assert_eq!(
            store.unknown_uploads(&ids(asked)).await.unwrap(),
            ids(expected),
            "asked {asked:?}"
        );
    }
    for id in known {
        assert!(store.delete_upload(id).await.unwrap());
    }
    assert_eq!(
        store.unknown_uploads(&ids(&known)).await.unwrap(),
        ids(&known)
    );
}

pub async fn expired_uploads_are_listed_oldest_first(store: &dyn MetaStore) {
    // Timestamps far before NOW, which every other test uses, so uploads
    // other tests might leave behind cannot appear here.
    let repo = repository("suite-expired/app");
    let other = repository("suite-expired/other");
    let uploads = [
        upload("suite-expired-b", &repo, 30),
        upload("suite-expired-a", &other, 10),
        upload("suite-expired-c", &repo, 20),
        upload("suite-expired-d", &repo, 20),
    ];
    for upload in &uploads {
        store.create_upload(upload).await.unwrap();
    }
    let [b, a, c, d] = &uploads;

    let cases: &[(Timestamp, usize, Vec<&UploadRecord>)] = &[
        (10, 100, vec![]),
        (11, 100, vec![a]),
        // Equal times are ordered by id, so pages are stable.
        (30, 100, vec![a, c, d]),
        (31, 100, vec![a, c, d, b]),
        (31, 2, vec![a, c]),
        (31, 0, vec![]),
    ];
    for (before, limit, expected) in cases {
        let listed = store.expired_uploads(*before, *limit).await.unwrap();
        let expected: Vec<UploadRecord> = expected.iter().map(|&upload| upload.clone()).collect();
        assert_eq!(listed, expected, "before {before}, limit {limit}");
    }

    for upload in &uploads {
        assert!(store.delete_upload(&upload.id).await.unwrap());
    }
    assert!(store.expired_uploads(31, 100).await.unwrap().is_empty());
}

pub async fn live_uploads_are_counted_per_repository_and_principal(store: &dyn MetaStore) {
    let one = repository("suite-live/one");
    let two = repository("suite-live/two");
    let opened = |id: &str, repo: &RepoName, updated_at: Timestamp, principal: Option<&str>| {
        let mut record = upload(id, repo, updated_at);
        record.principal = principal.map(str::to_string);
        record
    };
    let sessions = [
        opened("suite-live-1", &one, NOW, Some("alice")),
        opened("suite-live-2", &one, NOW - 10, Some("alice")),
        opened("suite-live-3", &one, NOW, None),
        opened("suite-live-4", &two, NOW, Some("alice")),
        opened("suite-live-5", &two, NOW, Some("bob")),
        // Older than the cut-off below: expired, so not counted.
        opened("suite-live-6", &one, NOW - 100, Some("alice")),
    ];
    for session in &sessions {
        store.create_upload(session).await.unwrap();
    }
    let stored = store
        .get_upload(&one, "suite-live-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.principal.as_deref(), Some("alice"));
    let count = |repo, principal, since| store.count_live_uploads(repo, principal, since);
    let live = |in_repository, of_principal| LiveUploads {
        in_repository,
        of_principal,
    };
    let since = NOW - 50;
    assert_eq!(count(&one, Some("alice"), since).await.unwrap(), live(3, 3));
    assert_eq!(count(&two, Some("bob"), since).await.unwrap(), live(2, 1));
    assert_eq!(count(&one, None, since).await.unwrap(), live(3, 0));
    assert_eq!(count(&one, Some("carol"), since).await.unwrap(), live(3, 0));
    assert_eq!(
        count(&one, Some("alice"), NOW - 100).await.unwrap(),
        live(4, 4)
    );
    assert_eq!(count(&one, Some("alice"), NOW).await.unwrap(), live(2, 2));
    let absent = repository("suite-live/absent");
    assert_eq!(
        count(&absent, Some("alice"), since).await.unwrap(),
        live(0, 3)
    );
    // A finished (deleted) session no longer counts.
    assert!(store.delete_upload("suite-live-4").await.unwrap());
    assert_eq!(count(&two, Some("alice"), since).await.unwrap(), live(1, 2));
    for session in &sessions[..] {
        store.delete_upload(&session.id).await.unwrap();
    }
    assert_eq!(count(&one, Some("alice"), 0).await.unwrap(), live(0, 0));
}

pub async fn concurrent_writers_all_succeed(store: &dyn MetaStore) {
    const WRITERS: usize = 20;
    let repos = [
        repository("suite-concurrent/one"),
        repository("suite-concurrent/two"),
    ];
    // Each writer links its own layer and a shared one, then pushes a manifest
    // referencing both, so writers contend for the same rows and the same lock.
    let shared = digest_of("suite-concurrent shared layer");
    let writer = |number: usize| {
        let repo = &repos[number % repos.len()];
        let shared = &shared;
        async move {
            let layer = digest_of(&format!("suite-concurrent layer {number}"));
            store.link_blob(repo, shared, 6, NOW).await?;
            store.link_blob(repo, &layer, 7, NOW).await?;
            let manifest = image(
                &format!("suite-concurrent image {number}"),
                &[shared, &layer],
            );
            let tag = tag(&format!("t{number:02}"));
            store.put_manifest(repo, &manifest, Some(&tag), NOW).await?;
            let found = store.manifest_by_tag(repo, &tag).await?;
            assert_eq!(
                found,
                Some(manifest.record),
                "writer {number} reads its own write"
            );
            Ok::<(), MetaError>(())
        }
    };
    let results = join_all((0..WRITERS).map(writer)).await;
    for (number, result) in results.into_iter().enumerate() {
        result.unwrap_or_else(|error| panic!("writer {number} failed: {error:?}"));
    }

    for (position, repo) in repos.iter().enumerate() {
        let expected: Vec<Tag> = (0..WRITERS)
            .filter(|number| number % repos.len() == position)
            .map(|number| tag(&format!("t{number:02}")))
            .collect();
        assert_eq!(list_tags(store, repo).await, Some(expected));
    }

    for number in 0..WRITERS {
        let repo = &repos[number % repos.len()];
        let manifest = digest_of(&format!("suite-concurrent image {number}"));
        assert_eq!(
            delete(store, repo, &manifest).await,
            tags(&[&format!("t{number:02}")])
        );
        let layer = digest_of(&format!("suite-concurrent layer {number}"));
        assert!(store.unlink_blob(repo, &layer, NOW).await.unwrap());
    }
    for repo in &repos {
        assert!(store.unlink_blob(repo, &shared, NOW).await.unwrap());
        assert_clean(store, repo, &[]).await;
    }
}

pub async fn racing_reference_checks_and_deletions_never_both_win(store: &dyn MetaStore) {
    // A push that checks its references races a deletion of one of them. The
    // two must behave as if one ran entirely before the other: either the push
    // wins (and the deletion is refused or merely unlinks), or the deletion
    // wins and the push is refused as incomplete. Anything else, such as a
    // database error from a constraint the check should have caught, fails.
    const ROUNDS: usize = 12;
    let repo = repository("suite-race/app");
    for round in 0..ROUNDS {
        // An index pushed while its only child is deleted.
        let child = image(&format!("suite-race child {round}"), &[]);
        put(store, &repo, &child, None).await;
        let parent = index(
            &format!("suite-race index {round}"),
            &[&child.record.digest],
        );
        let (pushed, deleted) = futures::join!(
            store.put_manifest(&repo, &parent, None, NOW),
            store.delete_manifest(&repo, &child.record.digest, false, NOW),
        );
        match (pushed, deleted) {
            (Ok(()), Err(MetaError::ManifestReferenced(by))) => {
                assert_eq!(by, parent.record.digest, "round {round}");
                assert_eq!(
                    delete(store, &repo, &parent.record.digest).await,
                    Vec::<Tag>::new()
                );
                assert_eq!(
                    delete(store, &repo, &child.record.digest).await,
                    Vec::<Tag>::new()
                );
            }
            (Err(MetaError::MissingManifests(missing)), Ok(Some(_))) => {
                assert_eq!(missing, vec![child.record.digest.clone()], "round {round}");
            }
            other => panic!("round {round}: index push against child deletion gave {other:?}"),
        }

        // An image pushed while its only layer is unlinked.
        let layer = digest_of(&format!("suite-race layer {round}"));
        link(store, &repo, &layer, 8).await;
        let manifest = image(&format!("suite-race image {round}"), &[&layer]);
        let (pushed, unlinked) = futures::join!(
            store.put_manifest(&repo, &manifest, None, NOW),
            store.unlink_blob(&repo, &layer, NOW),
        );
        assert!(
            unlinked.expect("unlink_blob succeeds"),
            "round {round}: the link existed"
        );
        match pushed {
            Ok(()) => assert_eq!(
                delete(store, &repo, &manifest.record.digest).await,
                Vec::<Tag>::new()
            ),
            Err(MetaError::MissingBlobs(missing)) => {
                assert_eq!(missing, vec![layer.clone()], "round {round}")
            }
            Err(other) => panic!("round {round}: image push against unlink gave {other:?}"),
        }
        assert_eq!(store.linked_blob_size(&repo, &layer).await.unwrap(), None);
        assert_clean(
            store,
            &repo,
            &[
                &child.record.digest,
                &parent.record.digest,
                &manifest.record.digest,
            ],
        )
        .await;
    }
}

pub async fn racing_pushes_of_one_manifest_all_succeed(store: &dyn MetaStore) {
    // Clients retrying a push, or several pushing the same image, store one
    // manifest at once under different tags: all succeed, as if in turn.
    const PUSHERS: usize = 8;
    let repo = repository("suite-same/app");
    let layer = digest_of("suite-same layer");
    link(store, &repo, &layer, 2).await;
    let manifest = image("suite-same image", &[&layer]);
    let names: Vec<String> = (0..PUSHERS).map(|number| format!("p{number}")).collect();
    let pushes = names.iter().map(|name| {
        let tag = tag(name);
        let (repo, manifest) = (&repo, &manifest);
        async move { store.put_manifest(repo, manifest, Some(&tag), NOW).await }
    });
    for (number, result) in join_all(pushes).await.into_iter().enumerate() {
        result.unwrap_or_else(|error| panic!("pusher {number} failed: {error:?}"));
    }
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(list_tags(store, &repo).await, Some(tags(&all)));
    assert_eq!(
        delete(store, &repo, &manifest.record.digest).await,
        tags(&all)
    );
    assert!(store.unlink_blob(&repo, &layer, NOW).await.unwrap());
    assert_clean(store, &repo, &[&manifest.record.digest]).await;
}

pub async fn job_leases_exclude_other_holders_until_expiry(store: &dyn MetaStore) {
    let purge = "suite-jobs purge";
    let collect = "suite-jobs collect";
    // Steps of (holder, job, now, expect taken) against 30-second leases.
    let steps: &[(&str, &str, Timestamp, bool)] = &[
        ("alice", purge, NOW, true),
        ("bob", purge, NOW + 10, false),
        // Leases are per job: Bob may hold another job meanwhile.
        ("bob", collect, NOW + 10, true),
        // The holder renews its own lease, which now runs to NOW + 41.
        ("alice", purge, NOW + 11, true),
        ("bob", purge, NOW + 40, false),
        // At the expiry second the lease is over and another holder takes it.
        ("bob", purge, NOW + 41, true),
        ("alice", purge, NOW + 42, false),
    ];
    for &(holder, job, now, expected) in steps {
        let taken = store.acquire_job_lease(job, holder, now, 30).await.unwrap();
        assert_eq!(taken, expected, "{holder} taking {job:?} at {now}");
    }

    // Alice releasing what she no longer holds leaves Bob's lease in place.
    store.release_job_lease(purge, "alice").await.unwrap();
    assert!(!store
        .acquire_job_lease(purge, "alice", NOW + 43, 30)
        .await
        .unwrap());
    // Once Bob releases it, Alice need not wait for the expiry.
    store.release_job_lease(purge, "bob").await.unwrap();
    assert!(store
        .acquire_job_lease(purge, "alice", NOW + 44, 30)
        .await
        .unwrap());

    // Releasing twice, or a job nobody holds, is harmless.
    store.release_job_lease(purge, "alice").await.unwrap();
    store.release_job_lease(purge, "alice").await.unwrap();
    store
        .release_job_lease("suite-jobs absent", "alice")
        .await
        .unwrap();
    store.release_job_lease(collect, "bob").await.unwrap();

    // Nothing is left behind: both jobs are free even at the earliest time.
    for job in [purge, collect] {
        assert!(store
            .acquire_job_lease(job, "carol", NOW, 30)
            .await
            .unwrap());
        store.release_job_lease(job, "carol").await.unwrap();
    }
}

pub async fn racing_job_lease_takers_have_one_winner(store: &dyn MetaStore) {
    const NODES: usize = 10;
    let job = "suite-jobs race";
    // First for a free lease, then for one that has just expired: whatever
    // the interleaving, exactly one node runs the job.
    for (round, now) in [NOW, NOW + 30].into_iter().enumerate() {
        let holders: Vec<String> = (0..NODES)
            .map(|node| format!("round {round} node {node}"))
            .collect();
        let results = join_all(
            holders
                .iter()
                .map(|holder| store.acquire_job_lease(job, holder, now, 30)),
        )
        .await;
        let winners: Vec<&String> = holders
            .iter()
            .zip(results)
            .filter_map(|(holder, taken)| taken.unwrap().then_some(holder))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
    }
    for node in 0..NODES {
        store
            .release_job_lease(job, &format!("round 1 node {node}"))
            .await
            .unwrap();
    }
    assert!(store
        .acquire_job_lease(job, "carol", NOW, 30)
        .await
        .unwrap());
    store.release_job_lease(job, "carol").await.unwrap();
}

/// The link candidates of `repo` at cut-off `at`.
async fn links_at(
    store: &dyn MetaStore,
    repo: &RepoName,
    at: Timestamp,
) -> Vec<crate::LinkCandidate> {
    let cutoffs = crate::GcCutoffs {
        unreferenced_before: at,
        never_referenced_before: at,
    };
    store
        .expired_links(cutoffs, None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| &c.repository == repo)
        .collect()
}

pub async fn gc_reference_facts_follow_links_and_manifests(store: &dyn MetaStore) {
    use crate::{GcCutoffs, ManifestCandidate};
    let repo = repository("suite-gc/app");
    let layer = digest_of("suite-gc layer");
    let loose = digest_of("suite-gc loose");
    let mine = |digest: &Digest| *digest == layer || *digest == loose;
    let cutoffs = |at: Timestamp| GcCutoffs {
        unreferenced_before: at,
        never_referenced_before: at,
    };

    // A pushed layer is a candidate link from its push; a manifest
    // referencing it clears that, and deleting the manifest sets it again.
    link(store, &repo, &layer, 5).await;
    link(store, &repo, &loose, 6).await;
    assert_eq!(links_at(store, &repo, NOW + 1).await.len(), 2);
    let manifest = image("suite-gc image", &[&layer]);
    put(store, &repo, &manifest, None).await;
    let candidates = links_at(store, &repo, NOW + 1).await;
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0].digest, loose);
    let deleted = store
        .delete_manifest(&repo, &manifest.record.digest, true, NOW + 10)
        .await
        .unwrap()
        .unwrap();
    assert!(deleted.referrers.is_empty());
    assert_eq!(
        links_at(store, &repo, NOW + 1).await.len(),
        1,
        "unreferenced from NOW + 10"
    );
    let candidates = links_at(store, &repo, NOW + 11).await;
    assert_eq!(candidates.len(), 2);

    // Removing the links orphans both blobs as of their links' times.
    let removed = store
        .remove_links(&candidates, cutoffs(NOW + 11), NOW + 20)
        .await
        .unwrap();
    assert_eq!(removed.len(), 2);
    assert_eq!(store.linked_blob_size(&repo, &layer).await.unwrap(), None);
    let blobs: Vec<_> = store
        .expired_blobs(NOW + 11, None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|b| mine(&b.digest))
        .collect();
    assert_eq!(blobs.len(), 2);

    // A re-link clears a blob's candidacy; the deletion re-checks it.
    link(store, &repo, &loose, 6).await;
    let begun = store
        .begin_blob_deletions(&blobs, NOW + 11, NOW + 30)
        .await
        .unwrap();
    assert_eq!(begun.len(), 1);
    assert_eq!(begun[0].digest, layer);
    assert_eq!(begun[0].size, 5);
    // While the deletion runs, the digest cannot be linked, and it is known.
    match store.link_blob(&repo, &layer, 5, NOW + 31).await {
        Err(MetaError::BlobBeingDeleted) => {}
        other => panic!("expected BlobBeingDeleted, got {other:?}"),
    }
    assert!(store
        .pending_blob_deletions(usize::MAX)
        .await
        .unwrap()
        .iter()
        .any(|b| b.digest == layer));
    assert!(store
        .unknown_blobs(std::slice::from_ref(&layer))
        .await
        .unwrap()
        .is_empty());
    store.finish_blob_deletion(&layer).await.unwrap();
    assert_eq!(
        store
            .unknown_blobs(std::slice::from_ref(&layer))
            .await
            .unwrap(),
        vec![layer.clone()]
    );

    // The orphan sweep's marker is refused for a digest with a row.
    assert!(!store.begin_orphan_deletion(&loose, 6, NOW).await.unwrap());
    assert!(store.begin_orphan_deletion(&layer, 5, NOW).await.unwrap());
    assert!(!store.begin_orphan_deletion(&layer, 5, NOW).await.unwrap());
    store.finish_blob_deletion(&layer).await.unwrap();

    // Untagged manifests: listed by age; a tagged or index-listed one is not.
    let untagged = image("suite-gc untagged", &[&loose]);
    let tagged = image("suite-gc tagged", &[&loose]);
    put(store, &repo, &untagged, None).await;
    put(store, &repo, &tagged, Some(&tag("keep"))).await;
    let listed: Vec<ManifestCandidate> = store
        .expired_untagged_manifests(NOW + 1, None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.repository == repo)
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, untagged.record.digest);
    assert!(
        store
            .delete_untagged_manifest(&listed[0], NOW, NOW + 40)
            .await
            .unwrap()
            .is_none(),
        "too young for that cut-off"
    );
    assert!(store
        .delete_untagged_manifest(&listed[0], NOW + 1, NOW + 40)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        delete(store, &repo, &tagged.record.digest).await,
        tags(&["keep"])
    );
    assert!(store.unlink_blob(&repo, &loose, NOW).await.unwrap());
    assert_clean(
        store,
        &repo,
        &[
            &manifest.record.digest,
            &untagged.record.digest,
            &tagged.record.digest,
        ],
    )
    .await;
}
