//! Upgrade safety: a database written by the released schema (migrations
//! 0001–0006, before namespaces became a domain concept and before the
//! event stream) opens with this code and loses nothing.
//!
//! A backend's test builds such a database itself: it applies the
//! migrations up to [`RELEASED_SCHEMA`] alone, runs [`old_rows`] (written
//! against that schema, in SQL both databases accept), then opens the store,
//! which applies the rest, and hands it to [`old_rows_survive`].

use super::*;
use crate::advisor::package_key;
use crate::{AdvisoryBatch, AdvisoryRow};

/// The newest schema version a released Berth wrote.
pub const RELEASED_SCHEMA: i64 = 6;

/// The manifest stored by [`old_rows`].
const OLD_MANIFEST: &str = r#"{"schemaVersion":2,"old":"manifest"}"#;

/// The statements that fill a database at [`RELEASED_SCHEMA`] with one of
/// everything, as the released code wrote it. `bytes` spells a byte-string
/// literal in the backend's dialect (`X'…'` on SQLite, `'\x…'::bytea` on
/// PostgreSQL), the one spelling the two do not share.
pub fn old_rows(bytes: fn(&[u8]) -> String) -> Vec<String> {
    let config = digest_of("upgrade config");
    let layer = digest_of("upgrade layer");
    let manifest = digest_of(OLD_MANIFEST);
    let media_type = IMAGE_MEDIA_TYPE;
    let payload = bytes(OLD_MANIFEST.as_bytes());
    let size = OLD_MANIFEST.len();
    // Repository ids are generated (an identity column on PostgreSQL).
    let app = "(SELECT id FROM repositories WHERE name = 'team/app')";
    let tool = "(SELECT id FROM repositories WHERE name = 'legacy/tool')";
    vec![
        "INSERT INTO users (name, password_hash, is_admin, created_at) VALUES \
         ('alice', '$argon2id$old-alice', FALSE, 100), \
         ('root', '$argon2id$old-root', TRUE, 100)"
            .to_string(),
        "INSERT INTO namespaces (name, visibility, created_at) VALUES \
         ('alice', 'private', 100), ('team', 'public', 101)"
            .to_string(),
        "INSERT INTO namespace_members (namespace, user_name, role) VALUES \
         ('alice', 'alice', 'owner'), ('team', 'alice', 'maintainer')"
            .to_string(),
        "INSERT INTO access_tokens (name, secret_hash, scopes, created_by, created_at, \
         expires_at, last_used_at, revoked_at) VALUES \
         ('ci', 'old-token-hash', '[\"team:pull\"]', 'alice', 102, 9000000000, 103, NULL)"
            .to_string(),
        "INSERT INTO refresh_tokens (secret_hash, user_name, created_at, expires_at, \
         revoked_at) VALUES ('old-refresh-hash', 'alice', 104, 9000000000, NULL)"
            .to_string(),
        "INSERT INTO signing_keys (kid, private_key_pem, public_key_pem, created_at, \
         retired_at) VALUES ('old-kid', 'OLD PRIVATE PEM', 'OLD PUBLIC PEM', 105, NULL)"
            .to_string(),
        // `team/app` in a namespace access control knew; `legacy/tool` in
        // one it never heard of (pushed with access control off).
        "INSERT INTO repositories (name, created_at) VALUES \
         ('team/app', 110), ('legacy/tool', 111)"
            .to_string(),
        format!(
            "INSERT INTO blobs (digest, size, created_at) VALUES \
             ('{config}', 2, 110), ('{layer}', 5, 110)"
        ),
        format!(
            "INSERT INTO repository_blobs (repository_id, digest, created_at, \
             unreferenced_since, was_referenced) VALUES \
             ({app}, '{config}', 110, NULL, 1), ({app}, '{layer}', 110, NULL, 1)"
        ),
        format!(
            "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, \
             subject, annotations, payload, size, created_at) VALUES \
             ({app}, '{manifest}', '{media_type}', NULL, NULL, NULL, {payload}, {size}, 112)"
        ),
        format!(
            "INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest) VALUES \
             ({app}, '{manifest}', '{config}'), ({app}, '{manifest}', '{layer}')"
        ),
        format!(
            "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) VALUES \
             ({app}, 'v1', '{manifest}', 112)"
        ),
        format!(
            "INSERT INTO uploads (id, repository_id, created_at, updated_at, progress, \
             lease_holder, lease_expires, principal) VALUES \
             ('old-upload', {tool}, 113, 114, '{{\"offset\":0}}', NULL, NULL, 'alice')"
        ),
    ]
}

/// Checks that everything [`old_rows`] wrote is there and works, then that
/// the new code writes on top of it (namespaces, events, the open upload
/// finished).
pub async fn old_rows_survive(store: &dyn MetaStore) {
    // Access control.
    let alice = store.get_user("alice").await.unwrap().unwrap();
    assert_eq!(alice.password_hash, "$argon2id$old-alice");
    assert!(!alice.is_admin);
    assert!(store.get_user("root").await.unwrap().unwrap().is_admin);
    assert_eq!(
        store
            .member_role("alice", "alice")
            .await
            .unwrap()
            .as_deref(),
        Some("owner")
    );
    assert_eq!(
        store.member_role("team", "alice").await.unwrap().as_deref(),
        Some("maintainer")
    );
    let token = store.get_access_token("ci").await.unwrap().unwrap();
    assert_eq!(token.secret_hash, "old-token-hash");
    assert_eq!(token.scopes, r#"["team:pull"]"#);
    assert_eq!(token.created_by.as_deref(), Some("alice"));
    assert_eq!(token.last_used_at, Some(103));
    let refresh = store
        .get_refresh_token("old-refresh-hash")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((refresh.user.as_str(), refresh.revoked_at), ("alice", None));
    let keys = store.list_signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].kid, "old-kid");
    assert_eq!(keys[0].private_key_pem.as_deref(), Some("OLD PRIVATE PEM"));
    assert_eq!(keys[0].retired_at, None);

    // Namespaces: the known ones keep their visibility; one that only a
    // repository named is created, private.
    let visibility = |name: &'static str| async move {
        store
            .get_namespace(name)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("namespace {name} is missing"))
            .visibility
    };
    assert_eq!(visibility("team").await, Visibility::Public);
    assert_eq!(visibility("alice").await, Visibility::Private);
    assert_eq!(visibility("legacy").await, Visibility::Private);

    // Images.
    let app = repository("team/app");
    let tool = repository("legacy/tool");
    let repositories = store.list_repositories(None, 10).await.unwrap();
    assert_eq!(repositories, vec![tool.clone(), app.clone()]);
    let manifest = store
        .manifest_by_tag(&app, &tag("v1"))
        .await
        .unwrap()
        .expect("the tagged manifest is there");
    assert_eq!(manifest.payload, OLD_MANIFEST.as_bytes());
    assert_eq!(manifest.digest, digest_of(OLD_MANIFEST));
    let layer = digest_of("upgrade layer");
    assert_eq!(store.linked_blob_size(&app, &layer).await.unwrap(), Some(5));
    // The image listing's size (config and layers, filled in by the
    // migration for manifests stored before it) and tags.
    let images = store
        .list_images(&app, crate::TaggedFilter::Any, None, 10)
        .await
        .unwrap()
        .expect("the repository is there");
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].digest, manifest.digest);
    assert_eq!(images[0].size, 2 + 5);
    assert_eq!(images[0].tags, vec![tag("v1")]);
    let usage = store.namespace_usage("team").await.unwrap().unwrap();
    assert_eq!(
        (
            usage.repositories,
            usage.images,
            usage.tags,
            usage.storage_bytes
        ),
        (1, 1, 1, 7 + OLD_MANIFEST.len() as u64)
    );
    // The quota migration counted what was there: the blobs once, and the
    // manifest's own bytes; a recount agrees.
    let quota = store.quota("team", 0).await.unwrap().unwrap();
    assert_eq!(
        (quota.storage_bytes, quota.storage_limit),
        (7 + OLD_MANIFEST.len() as u64, None)
    );
    let figures = store.recompute_storage(&at(NOW)).await.unwrap();
    assert!(
        figures.iter().all(|d| d.recorded == d.actual),
        "{figures:?}"
    );

    // The open upload is still open, and finishes.
    let upload = store
        .get_upload(&tool, "old-upload")
        .await
        .unwrap()
        .expect("the open upload is there");
    assert_eq!(upload.principal.as_deref(), Some("alice"));
    assert_eq!(upload.progress, r#"{"offset":0}"#);
    let pushed = digest_of("upgrade pushed");
    let before = store.last_event_position().await.unwrap();
    assert!(store.delete_upload("old-upload").await.unwrap());
    store
        .finish_upload(&at(NOW), &tool, "old-upload", &pushed, 9)
        .await
        .unwrap();
    assert_eq!(
        store.linked_blob_size(&tool, &pushed).await.unwrap(),
        Some(9)
    );
    assert!(
        store.last_event_position().await.unwrap() > before,
        "changes after the upgrade write events"
    );

    // Writes on the old rows work: a tag moved, the manifest deleted.
    put(store, &app, &image(OLD_MANIFEST, &[]), Some(&tag("v2"))).await;
    assert_eq!(
        delete(store, &app, &manifest.digest).await,
        tags(&["v1", "v2"])
    );
}

/// One of each kind of row a node writes (a blob link, a tagged manifest, an
/// open upload), for a backend's reopen test: [`Reopened::write`] stores
/// them, the test closes the store and opens the same database again (twice,
/// so a second run over an up-to-date schema is checked too), and
/// [`Reopened::check`] finds them all. How a backend closes and reopens is
/// its own; what must survive is the same for every backend.
pub struct Reopened {
    repo: RepoName,
    latest: Tag,
    layer: Digest,
    manifest: NewManifest,
    upload: UploadRecord,
}

impl Default for Reopened {
    fn default() -> Self {
        let payload = b"reopen manifest".to_vec();
        let repo = RepoName::parse("reopen/app").unwrap();
        Reopened {
            latest: Tag::parse("latest").unwrap(),
            layer: Algorithm::Sha256.digest_of(b"reopen layer"),
            manifest: NewManifest {
                record: ManifestRecord {
                    digest: Algorithm::Sha256.digest_of(&payload),
                    media_type: IMAGE_MEDIA_TYPE.to_string(),
                    artifact_type: None,
                    subject: None,
                    annotations: None,
                    payload,
                },
                blobs: vec![Algorithm::Sha256.digest_of(b"reopen layer")],
                blob_sizes: Vec::new(),
                children: Vec::new(),
            },
            upload: UploadRecord {
                id: "reopen-upload".to_string(),
                repository: repo.clone(),
                created_at: 1,
                updated_at: 2,
                progress: "{}".to_string(),
                principal: None,
            },
            repo,
        }
    }
}

impl Reopened {
    /// Stores the rows in a fresh database.
    pub async fn write(&self, store: &dyn MetaStore) {
        store
            .link_blob(&at(1), &self.repo, &self.layer, 12)
            .await
            .unwrap();
        store
            .put_manifest(&at(1), &self.repo, &self.manifest, Some(&self.latest))
            .await
            .unwrap();
        store.create_upload(&at(1), &self.upload).await.unwrap();
    }

    /// Finds every row [`Reopened::write`] stored, unchanged.
    pub async fn check(&self, store: &dyn MetaStore) {
        assert_eq!(
            store
                .linked_blob_size(&self.repo, &self.layer)
                .await
                .unwrap(),
            Some(12)
        );
        assert_eq!(
            store
                .manifest_by_tag(&self.repo, &self.latest)
                .await
                .unwrap(),
            Some(self.manifest.record.clone())
        );
        assert_eq!(
            store.get_upload(&self.repo, &self.upload.id).await.unwrap(),
            Some(self.upload.clone())
        );
        assert_eq!(
            store.list_repositories(None, 10).await.unwrap(),
            vec![self.repo.clone()]
        );
    }
}

/// The schema version before the advisory count was kept beside the
/// generation (migration 0032).
pub const BEFORE_ADVISORY_COUNT: i64 = 31;

/// Statements that store three imported advisories in a database at
/// [`BEFORE_ADVISORY_COUNT`], as an import wrote them then.
pub fn advisories_before_count() -> Vec<String> {
    vec![
        "INSERT INTO advisories (id, modified_ns, body, imported_at) VALUES \
         ('GHSA-old-1', 100, '{}', 10), ('GHSA-old-2', 300, '{}', 10), \
         ('GHSA-old-3', 200, '{}', 10)"
            .to_string(),
        "INSERT INTO advisory_data (singleton, generation, imported_at) VALUES (1, 7, 10)"
            .to_string(),
    ]
}

/// After migration 0032 the advisories of [`advisories_before_count`] are
/// counted, their newest modification found and the generation kept; the
/// next import moves the count from there.
pub async fn advisories_are_counted(store: &dyn MetaStore) {
    let data = store.advisory_data().await.unwrap();
    assert_eq!(
        (data.count, data.newest_modified_ns, data.generation),
        (3, Some(300), 7)
    );
    let advisory = AdvisoryRow {
        id: "GHSA-new-1".to_string(),
        modified_ns: 400,
        aliases: Vec::new(),
        packages: vec![package_key("PyPI", "example")],
        body: "{}".to_string(),
    };
    let batch = AdvisoryBatch {
        advisories: std::slice::from_ref(&advisory),
        withdrawn: &["GHSA-old-1".to_string()],
        ..AdvisoryBatch::default()
    };
    store
        .import_advisories(&at(20), &batch)
        .await
        .unwrap()
        .expect("imported");
    let data = store.advisory_data().await.unwrap();
    assert_eq!((data.count, data.newest_modified_ns), (3, Some(400)));
}
