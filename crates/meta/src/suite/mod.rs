//! The shared test suite every [`MetaStore`] backend must pass: one module
//! per trait, each test a `pub async fn` taking `&dyn MetaStore`.
//!
//! A backend's test file runs them all with
//! [`meta_store_tests!`](crate::meta_store_tests) (one `#[tokio::test]` per
//! suite test, each on a fresh store, in a module named after its suite)
//! and [`run_all`] (every test in turn on one store).
//!
//! Because `run_all` shares one store between tests, every test works in its
//! own repositories and names (`suite-<test>/...`, `as-<test>-...`), deletes
//! the manifests, tags and uploads it created, and checks that they are gone.
//! Repositories cannot be deleted through the traits, so they stay; tests
//! that list repositories, users or namespaces only look at names under their
//! own prefix. Signing keys are the exception to "names of its own": there
//! is one current key per database, whoever made it. So the first-key test
//! expects an empty table and runs before the rotation test, which works from
//! whatever key it finds and only looks at keys of its own afterwards.

use futures::future::{join_all, BoxFuture};

use berth_oci::{Algorithm, Digest, RepoName, Tag};

use crate::auth::{
    AccessTokenRow, MemberRow, RefreshRotation, RefreshTokenRow, SigningKeyRow, UserRow,
};
use crate::{
    Actor, Change, ManifestRecord, MetaError, MetaStore, Namespace, NewManifest, Referrer,
    RepositoryDeletion, Timestamp, UploadRecord, Visibility,
};

pub mod advisor;
pub mod advisory_sync;
pub mod audit;
pub mod blobs;
pub mod events;
pub mod findings;
pub mod gc;
pub mod images;
pub mod immutable;
pub mod jobs;
pub mod keys;
pub mod manifests;
pub mod members;
pub mod namespaces;
pub mod pulls;
pub mod quotas;
pub mod replication;
pub mod repositories;
pub mod retention;
pub mod sessions;
pub mod store;
pub mod tokens;
pub mod trash;
pub mod upgrade;
pub mod uploads;
pub mod usage;
pub mod users;
pub mod webhooks;

/// A suite test as a plain function, so tests can be listed and run in a loop.
pub type SuiteTest = for<'a> fn(&'a dyn MetaStore) -> BoxFuture<'a, ()>;

/// Every suite with its tests, in the order [`run_all`] runs them.
pub const SUITES: &[(&str, &[(&str, SuiteTest)])] = &[
    ("store", store::TESTS),
    ("repositories", repositories::TESTS),
    ("blobs", blobs::TESTS),
    ("manifests", manifests::TESTS),
    ("images", images::TESTS),
    ("pulls", pulls::TESTS),
    ("uploads", uploads::TESTS),
    ("jobs", jobs::TESTS),
    ("gc", gc::TESTS),
    ("events", events::TESTS),
    ("users", users::TESTS),
    ("namespaces", namespaces::TESTS),
    ("members", members::TESTS),
    ("tokens", tokens::TESTS),
    ("keys", keys::TESTS),
    ("advisor", advisor::TESTS),
    ("advisory_sync", advisory_sync::TESTS),
    ("immutable", immutable::TESTS),
    ("webhooks", webhooks::TESTS),
    ("audit", audit::TESTS),
    ("trash", trash::TESTS),
    ("retention", retention::TESTS),
    ("quotas", quotas::TESTS),
    ("sessions", sessions::TESTS),
    ("replication", replication::TESTS),
    ("findings", findings::TESTS),
    ("usage", usage::TESTS),
];

/// Runs every suite test in turn against one store, which also shows that
/// the tests do not disturb each other.
pub async fn run_all(store: &dyn MetaStore) {
    for (_suite, tests) in SUITES {
        for (_name, test) in *tests {
            test(store).await;
        }
    }
}

/// Expands to one `#[tokio::test]` per suite test, in one module per suite,
/// plus a check that the lists below match [`SUITES`](crate::suite::SUITES).
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
    ($fresh:ident) => {
        $crate::meta_store_tests!(@suites required $fresh);
    };
    (skippable $fresh:ident) => {
        $crate::meta_store_tests!(@suites skippable $fresh);
    };
    (@suites $mode:ident $fresh:ident) => {
        $crate::meta_store_tests!(@expand $mode $fresh;
            store: [store_is_ready, concurrent_writers_all_succeed],
            repositories: [repositories_are_listed_in_byte_order_and_paged, repositories_are_deleted_step_by_step],
            blobs: [blob_links_are_idempotent_and_per_repository, repositories_with_a_blob_are_listed_and_paged],
            manifests: [put_manifest_with_missing_references_stores_nothing, put_manifest_with_wrong_blob_sizes_stores_nothing, manifests_are_found_by_tag_and_digest, re_putting_a_manifest_only_moves_the_tag, delete_manifest_removes_its_tags, index_children_cannot_be_deleted_while_listed, delete_tag_leaves_the_manifest, tags_are_listed_in_byte_order_and_paged, referrers_are_filtered_by_subject_and_artifact_type, racing_reference_checks_and_deletions_never_both_win, racing_pushes_of_one_manifest_all_succeed],
            images: [images_are_listed_newest_first_with_tags_and_sizes, image_facts_are_stored_once, repositories_are_summarized_sorted_searched_and_paged, tags_are_listed_sorted_searched_and_paged],
            pulls: [
                pulls_add_up_per_image_and_repository,
                pulls_become_events_per_image_and_puller_when_asked,
            ],
            uploads: [upload_leases_exclude_other_holders_until_expiry, a_node_releases_the_upload_leases_of_its_earlier_life, uploads_are_claimed_unless_another_lease_runs, uploads_without_records_are_reported, expired_uploads_are_listed_oldest_first, live_uploads_are_counted_per_repository_and_principal],
            jobs: [job_leases_exclude_other_holders_until_expiry, racing_job_lease_takers_have_one_winner],
            gc: [gc_reference_facts_follow_links_and_manifests],
            events: [registry_changes_write_their_events, access_control_changes_write_their_events, refused_changes_write_no_events, events_are_read_in_pages_after_a_cursor, consumers_hold_leases_and_keep_their_position, old_events_are_deleted_in_batches, subscribers_hear_of_committed_changes],
            users: [users_are_created_once_and_updated, disabling_a_user_revokes_their_refresh_tokens, the_last_enabled_administrator_stays_one],
            namespaces: [namespaces_are_created_with_their_owner, repositories_create_their_namespace, namespaces_are_listed_in_byte_order_and_paged, namespace_pages_hold_what_their_reach_covers, namespace_usage_counts_each_blob_once, namespaces_are_deleted_only_when_empty],
            members: [members_are_added_changed_and_removed, the_last_owner_stays_one],
            tokens: [access_tokens_are_used_and_revoked, refresh_tokens_are_revoked_one_by_one_or_per_user, refresh_tokens_rotate_and_reuse_revokes_the_family],
            keys: [racing_first_signing_keys_leave_one_current_key, signing_keys_rotate_keeping_recently_retired_ones, a_private_key_is_replaced_only_as_expected],
            advisor: [layer_indexes_are_stored_once_per_digest, scan_jobs_are_queued_once_and_leased, racing_scan_takers_take_distinct_jobs, racing_scan_batches_and_finishes_all_succeed, scan_batches_queue_each_image_once, advisories_are_imported_incrementally, exemptions_are_set_listed_and_removed, exemptions_are_paged_per_namespace, policies_are_set_per_namespace, images_are_found_by_package_and_told_of_changes],
            advisory_sync: [advisory_sources_record_attempts_successes_and_validators],
            immutable: [immutable_rules_are_added_listed_and_removed, immutable_tags_are_created_but_never_moved_or_deleted, racing_pushes_of_a_new_immutable_tag_have_one_winner],
            webhooks: [webhooks_are_created_listed_and_deleted, deliveries_are_queued_once_and_leased, deliveries_are_taken_and_finished_in_batches],
            audit: [audit_records_are_stored_once_filtered_and_expired],
            trash: [trashed_manifests_are_hidden_and_restored_with_their_tags, a_trashed_manifest_pushed_again_comes_back_with_its_new_tag, children_of_a_trashed_index_are_trashed_after_it_and_come_back_with_it, expired_trash_is_deleted_for_good_and_its_blobs_become_candidates],
            retention: [retention_policies_are_set_replaced_and_removed, retention_candidates_are_a_namespaces_live_manifests],
            quotas: [storage_usage_counts_each_holding_once_and_follows_every_write, writes_beyond_the_storage_limit_are_refused_and_change_nothing, traffic_adds_up_per_namespace_and_month, refused_requests_over_a_quota_are_recorded_as_events],
            sessions: [sessions_are_created_touched_and_revoked, ended_sessions_are_deleted_at_the_next_sign_in],
            replication: [replication_rules_are_created_listed_and_deleted, replication_runs_are_recorded_and_bounded, pending_deletes_are_counted_bounded_and_cleared],
            findings: [finding_counts_are_summed_per_namespace_for_live_images, finding_counts_follow_their_images_into_the_trash_out_of_it_and_away],
            usage: [daily_usage_adds_pulls_and_bytes_and_snapshots_storage],
        );
    };
    (@expand $mode:ident $fresh:ident; $($suite:ident: [$($name:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $suite {
                use super::$fresh;
                $(
                    #[tokio::test]
                    async fn $name() {
                        $crate::meta_store_tests!(@fresh $mode $fresh, $name, _guard, store);
                        $crate::suite::$suite::$name(&store).await;
                    }
                )*
            }
        )*

        #[test]
        fn suite_macro_lists_every_test() {
            let listed: Vec<(&str, Vec<&str>)> =
                vec![$((stringify!($suite), vec![$(stringify!($name)),*])),*];
            let known: Vec<(&str, Vec<&str>)> = $crate::suite::SUITES
                .iter()
                .map(|(suite, tests)| (*suite, tests.iter().map(|(name, _)| *name).collect()))
                .collect();
            assert_eq!(listed, known);
        }
    };
    // The guard and store names come from the caller so that the test body,
    // expanded at the call site, can see them.
    (@fresh required $fresh:ident, $name:ident, $guard:ident, $store:ident) => {
        let ($guard, $store) = $fresh().await;
    };
    (@fresh skippable $fresh:ident, $name:ident, $guard:ident, $store:ident) => {
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

/// The change every suite write makes: by the test suite, at `time`.
fn at(time: Timestamp) -> Change {
    Change::new(Actor::system("suite"), time)
}

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
        .put_manifest(&at(NOW), repo, manifest, tag)
        .await
        .expect("put_manifest succeeds");
}

async fn link(store: &dyn MetaStore, repo: &RepoName, digest: &Digest, size: u64) {
    store
        .link_blob(&at(NOW), repo, digest, size)
        .await
        .expect("link_blob succeeds");
}

async fn delete(store: &dyn MetaStore, repo: &RepoName, digest: &Digest) -> Vec<Tag> {
    store
        .delete_manifest(&at(NOW), repo, digest, false)
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

fn user(name: &str) -> UserRow {
    UserRow {
        name: name.to_string(),
        password_hash: format!("$argon2id$fake${name}"),
        is_admin: false,
        created_at: NOW,
        disabled_at: None,
    }
}

fn namespace(name: &str, visibility: Visibility) -> Namespace {
    Namespace {
        name: name.to_string(),
        visibility,
        created_at: NOW,
    }
}

/// Deletes a repository step by step, as the registry does, and returns
/// the sessions the last step removed. Bounded, like every loop here.
async fn delete_repository(store: &dyn MetaStore, repo: &RepoName) -> Vec<UploadRecord> {
    for _ in 0..1000 {
        match store
            .delete_repository_step(&at(NOW), repo, 100)
            .await
            .unwrap()
        {
            RepositoryDeletion::Progress { .. } => {}
            RepositoryDeletion::Deleted { uploads } => return uploads,
            RepositoryDeletion::Missing => panic!("{repo} does not exist"),
        }
    }
    panic!("deleting {repo} did not finish");
}

fn only_prefixed<T>(rows: Vec<T>, name: impl Fn(&T) -> &str, prefix: &str) -> Vec<String> {
    rows.iter()
        .map(|row| name(row).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}
