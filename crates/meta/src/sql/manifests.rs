//! [`ManifestStore`] in SQL, and the manifest deletion that garbage
//! collection shares.

use berth_oci::{Digest, RepoName, Tag};

use super::db::{database, query, Dialect, Row, Tx};
use super::events::NewEvent;
use super::immutable::{immutable_violation, parse_tags};
use super::quotas::check_storage;
use super::trash::revive_pushed;
use super::{
    destination, distinct, limit_to_i64, lock_digests, mark_blob_if_orphaned,
    mark_link_if_unreferenced, parse_digest, parse_size, parse_tag, repository_id, to_i64,
    Destination, SqlMetaStore,
};
use crate::{
    Change, DeletedManifest, EventKind, ManifestRecord, ManifestStore, MetaError, NewManifest,
    Referrer, SizeMismatch,
};

/// The manifest columns [`manifest_from_row`] reads, prefixed by table alias
/// `m`: a macro so that statements can be `concat!`-ed at compile time.
macro_rules! manifest_columns {
    () => {
        "m.digest, m.media_type, m.artifact_type, m.subject, m.annotations, m.payload"
    };
}

fn manifest_from_row(row: &Row) -> Result<ManifestRecord, MetaError> {
    let subject: Option<String> = row.get("subject")?;
    Ok(ManifestRecord {
        digest: parse_digest(&row.get::<String>("digest")?)?,
        media_type: row.get("media_type")?,
        artifact_type: row.get("artifact_type")?,
        subject: subject.as_deref().map(parse_digest).transpose()?,
        annotations: row.get("annotations")?,
        payload: row.get("payload")?,
    })
}

/// Returns the items of `children` (each once, in their first order) that
/// are not live manifests of the repository. On PostgreSQL the rows it
/// finds stay locked `FOR SHARE` until the transaction ends, so a deletion
/// of them waits for this one (see `postgres.rs`).
async fn missing_children(
    tx: &mut Tx,
    repository_id: i64,
    children: &[Digest],
) -> Result<Vec<Digest>, MetaError> {
    let wanted = distinct(children);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let dialect = tx.dialect();
    // A manifest in the trash is missing to a push: it cannot become an
    // index's child, which would pin it there.
    let sql = format!(
        "SELECT digest FROM manifests WHERE repository_id = $1 \
         AND digest IN (SELECT l.value FROM {}) AND trashed_at IS NULL{}",
        dialect.list(2),
        dialect.for_share()
    );
    let found: Vec<String> = query(&sql)
        .bind(repository_id)
        .bind(wanted.clone())
        .fetch_all(tx)
        .await
        .map_err(database("checking an index's manifests"))?
        .iter()
        .map(Row::first)
        .collect::<Result<_, _>>()?;
    wanted
        .into_iter()
        .filter(|digest| !found.iter().any(|present| present == digest))
        .map(parse_digest)
        .collect()
}

/// Takes the manifest's links in the repository out of garbage-collection
/// candidacy and returns the ones it found, each with its blob's size, in
/// one statement: the links a new manifest references are checked, and
/// marked referenced, together (a refused push rolls the marking back with
/// everything else). On PostgreSQL the update also locks the links it finds
/// until the transaction ends, so an unlink waits for this push.
async fn reference_links(
    tx: &mut Tx,
    repository_id: i64,
    blobs: &[Digest],
) -> Result<Vec<(String, u64)>, MetaError> {
    let wanted = distinct(blobs);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE repository_blobs SET unreferenced_since = NULL, was_referenced = 1 \
         WHERE repository_id = $1 AND digest IN (SELECT l.value FROM {}) \
         RETURNING digest, (SELECT b.size FROM blobs b WHERE b.digest = repository_blobs.digest) AS size",
        tx.dialect().list(2)
    );
    let rows = query(&sql)
        .bind(repository_id)
        .bind(wanted)
        .fetch_all(tx)
        .await
        .map_err(database("checking a manifest's blobs"))?;
    let mut linked = Vec::with_capacity(rows.len());
    for row in &rows {
        linked.push((row.get::<String>("digest")?, parse_size(row.get("size")?)?));
    }
    Ok(linked)
}

/// The items of `blobs` (each once, in their first order) missing from
/// `linked`.
fn missing_links(blobs: &[Digest], linked: &[(String, u64)]) -> Vec<Digest> {
    let mut missing: Vec<Digest> = Vec::new();
    for digest in blobs {
        if !missing.contains(digest) && !linked.iter().any(|(d, _)| d == digest.as_str()) {
            missing.push(digest.clone());
        }
    }
    missing
}

/// The sizes in `declared` (a manifest's `blob_sizes`) that differ from the
/// linked blobs' (`linked`), in declaration order. Digests not linked are
/// skipped: the link check before this one reports them.
fn size_mismatches(declared: &[(Digest, u64)], linked: &[(String, u64)]) -> Vec<SizeMismatch> {
    declared
        .iter()
        .filter_map(|(digest, size)| {
            let (_, found) = linked.iter().find(|(d, _)| d == digest.as_str())?;
            (found != size).then(|| SizeMismatch {
                digest: digest.clone(),
                declared: *size,
                stored: *found,
            })
        })
        .collect()
}

/// Whether the manifest is stored, locking its row until the transaction
/// ends: `FOR SHARE` against deletion while a push relies on it, `FOR
/// UPDATE` when about to delete it (PostgreSQL; SQLite needs neither).
async fn lock_manifest(
    tx: &mut Tx,
    repository_id: i64,
    digest: &str,
    lock: &str,
) -> Result<bool, MetaError> {
    let sql = format!("SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2{lock}");
    let found = query(&sql)
        .bind(repository_id)
        .bind(digest)
        .fetch_optional(tx)
        .await
        .map_err(database("looking up a manifest"))?;
    Ok(found.is_some())
}

/// Like [`lock_manifest`], but for a manifest in the trash answers whether
/// it is there and under which entry: `None` when there is no row,
/// `Some(None)` when it is live, `Some(Some(root))` when it is in the trash
/// with the entry of `root`.
async fn lock_manifest_state(
    tx: &mut Tx,
    repository_id: i64,
    digest: &str,
    lock: &str,
) -> Result<Option<Option<String>>, MetaError> {
    let sql =
        format!("SELECT trash_root FROM manifests WHERE repository_id = $1 AND digest = $2{lock}");
    let found = query(&sql)
        .bind(repository_id)
        .bind(digest)
        .fetch_optional(tx)
        .await
        .map_err(database("looking up a manifest"))?;
    found.map(|row| row.first::<Option<String>>()).transpose()
}

/// Whether a live (not trashed) manifest is stored, locking its row as
/// [`lock_manifest`] does.
pub(crate) async fn lock_live_manifest(
    tx: &mut Tx,
    repository_id: i64,
    digest: &str,
    lock: &str,
) -> Result<bool, MetaError> {
    Ok(matches!(
        lock_manifest_state(tx, repository_id, digest, lock).await?,
        Some(None)
    ))
}

/// Fails with `ImmutableTag` when a rule covers a tag of one of `doomed`,
/// manifests about to be deleted or trashed (locked, so no tag can move
/// onto them before the caller's transaction ends).
pub(crate) async fn refuse_immutable_tags(
    tx: &mut Tx,
    repository: &RepoName,
    repository_id: i64,
    doomed: &[String],
) -> Result<(), MetaError> {
    let sql = format!(
        "SELECT name FROM tags WHERE repository_id = $1 \
         AND manifest_digest IN (SELECT l.value FROM {}) ORDER BY name",
        tx.dialect().list(2)
    );
    let doomed_refs: Vec<&str> = doomed.iter().map(String::as_str).collect();
    let names: Vec<String> = query(&sql)
        .bind(repository_id)
        .bind(doomed_refs)
        .fetch_all(&mut *tx)
        .await
        .map_err(database("listing the tags of manifests to delete"))?
        .iter()
        .map(Row::first)
        .collect::<Result<_, _>>()?;
    match immutable_violation(tx, repository, &parse_tags(&names)?).await? {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

/// The manifest and, with `with_referrers`, every manifest of the repository
/// whose subject is in the set, recursively: what deleting `digest` removes.
/// Refuses with `ManifestReferenced` if an index outside the set lists a
/// member: any index for a deletion, a live one for a move to the trash
/// (`trashing`), since an index in the trash is gone to clients and its
/// children with it (a restore of the index brings them back). The root
/// comes first. On PostgreSQL every referrer's row is locked `FOR UPDATE`
/// as it is found.
pub(crate) async fn deletion_set(
    tx: &mut Tx,
    repository_id: i64,
    digest: &Digest,
    with_referrers: bool,
    trashing: bool,
) -> Result<Vec<String>, MetaError> {
    let referrers_sql = format!(
        "SELECT digest FROM manifests WHERE repository_id = $1 AND subject = $2 \
         AND trashed_at IS NULL ORDER BY digest{}",
        tx.dialect().for_update()
    );
    let mut doomed = vec![digest.as_str().to_string()];
    let mut next = 0;
    while with_referrers && next < doomed.len() {
        let referrers = query(&referrers_sql)
            .bind(repository_id)
            .bind(doomed[next].as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(database("listing a manifest's referrers"))?;
        for row in referrers {
            let referrer: String = row.first()?;
            if !doomed.contains(&referrer) {
                doomed.push(referrer);
            }
        }
        next += 1;
    }
    for member in &doomed {
        // The smallest parent digest is reported so the answer is stable.
        let parents = query(
            "SELECT c.parent_digest FROM manifest_children c \
             JOIN manifests p ON p.repository_id = c.repository_id AND p.digest = c.parent_digest \
             WHERE c.repository_id = $1 AND c.child_digest = $2 \
             AND ($3 = FALSE OR p.trashed_at IS NULL) ORDER BY c.parent_digest",
        )
        .bind(repository_id)
        .bind(member.as_str())
        .bind(trashing)
        .fetch_all(&mut *tx)
        .await
        .map_err(database("looking for indexes listing a manifest"))?;
        for row in parents {
            let parent: String = row.first()?;
            if !doomed.contains(&parent) {
                return Err(MetaError::ManifestReferenced(parse_digest(&parent)?));
            }
        }
    }
    Ok(doomed)
}

/// Deletes the manifests of `doomed` (from [`deletion_set`]) of `repository`
/// with their tags and references, turns what lost its last reference into
/// candidates, and records `tag.deleted` and `manifest.deleted` events.
pub(crate) async fn delete_manifests(
    tx: &mut Tx,
    repository: &RepoName,
    repository_id: i64,
    root: &Digest,
    doomed: &[String],
) -> Result<DeletedManifest, MetaError> {
    let now = tx.at()?;
    let mut blobs: Vec<String> = Vec::new();
    for member in doomed {
        let referenced = query(
            "SELECT blob_digest FROM manifest_blobs \
             WHERE repository_id = $1 AND manifest_digest = $2",
        )
        .bind(repository_id)
        .bind(member.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(database("listing a manifest's blobs"))?;
        for row in referenced {
            blobs.push(row.first()?);
        }
    }
    blobs.sort();
    blobs.dedup();
    lock_digests(tx, blobs.iter().map(String::as_str).collect()).await?;
    // Rows that reference a manifest go first, each kind for every member
    // before the manifests themselves, so the foreign keys hold at every
    // statement even when one member is an index listing another.
    let mut tags: Vec<Tag> = Vec::new();
    for member in doomed {
        let names = query(
            "DELETE FROM tags WHERE repository_id = $1 AND manifest_digest = $2 RETURNING name",
        )
        .bind(repository_id)
        .bind(member.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(database("deleting a manifest's tags"))?;
        let mut removed = names
            .iter()
            .map(|row| parse_tag(&row.first::<String>()?))
            .collect::<Result<Vec<_>, _>>()?;
        removed.sort_by(|a, b| a.as_str().as_bytes().cmp(b.as_str().as_bytes()));
        for tag in &removed {
            tx.record(
                NewEvent::repository(EventKind::TagDeleted, repository)
                    .digest(member)
                    .tag(tag),
            )?;
        }
        if member == root.as_str() {
            tags = removed;
        }
    }
    for (sql, context) in [
        // A trash entry names its manifest: it goes first (with its tags),
        // when the manifest is deleted for good by expiry or with its
        // repository.
        (
            "DELETE FROM trash WHERE repository_id = $1 AND digest = $2",
            "deleting a trash entry",
        ),
        (
            "DELETE FROM manifest_blobs WHERE repository_id = $1 AND manifest_digest = $2",
            "deleting a manifest's blob references",
        ),
        (
            "DELETE FROM manifest_children WHERE repository_id = $1 AND parent_digest = $2",
            "deleting an index's manifest references",
        ),
        (
            "DELETE FROM manifests WHERE repository_id = $1 AND digest = $2",
            "deleting a manifest",
        ),
    ] {
        for member in doomed {
            query(sql)
                .bind(repository_id)
                .bind(member.as_str())
                .execute(&mut *tx)
                .await
                .map_err(database(context))?;
        }
    }
    for blob in &blobs {
        mark_link_if_unreferenced(tx, repository_id, blob, now).await?;
        mark_blob_if_orphaned(tx, blob, now).await?;
    }
    for member in doomed {
        tx.record(NewEvent::repository(EventKind::ManifestDeleted, repository).digest(member))?;
    }
    let mut referrers = doomed[1..]
        .iter()
        .map(|digest| parse_digest(digest))
        .collect::<Result<Vec<_>, _>>()?;
    referrers.sort();
    Ok(DeletedManifest { tags, referrers })
}

impl<B> SqlMetaStore<B> {
    /// Runs a manifest lookup by repository and one key (a digest or a tag).
    async fn one_manifest(
        &self,
        sql: &str,
        repository: &RepoName,
        key: &str,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let row = query(sql)
            .bind(repository.as_str())
            .bind(key)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("fetching a manifest"))?;
        row.as_ref().map(manifest_from_row).transpose()
    }
}

#[async_trait::async_trait]
impl<B: 'static> ManifestStore for SqlMetaStore<B> {
    async fn put_manifest(
        &self,
        change: &Change,
        repository: &RepoName,
        manifest: &NewManifest,
        tag: Option<&Tag>,
    ) -> Result<(), MetaError> {
        let record = &manifest.record;
        let now = change.at;
        let size = to_i64(record.payload.len() as u64, "manifest size")?;
        let mut tx = self.db.begin_change(change).await?;
        let dialect = tx.dialect();
        let Destination {
            repository_id,
            limited,
        } = destination(&mut tx, self.default_storage_limit, repository, None).await?;
        // Locked so that a concurrent deletion cannot remove the manifest
        // between this check and the tag that will point at it.
        let state = lock_manifest_state(
            &mut tx,
            repository_id,
            record.digest.as_str(),
            dialect.for_share(),
        )
        .await?;
        let mut exists = state.is_some();
        if let Some(Some(root)) = &state {
            // Pushed again while in the trash: it simply comes back. Its
            // references were kept, so there is nothing to check again.
            revive_pushed(
                &mut tx,
                repository,
                repository_id,
                record.digest.as_str(),
                root,
            )
            .await?;
        }
        if !exists {
            // Reference decisions about these blobs (garbage collection's
            // among them) wait for this push, and it for them.
            lock_digests(&mut tx, distinct(&manifest.blobs)).await?;
            // Returning early drops the transaction, which rolls back the
            // repository it may have created: a refused push leaves no trace.
            let linked = reference_links(&mut tx, repository_id, &manifest.blobs).await?;
            let missing_blobs = missing_links(&manifest.blobs, &linked);
            if !missing_blobs.is_empty() {
                return Err(MetaError::MissingBlobs(missing_blobs));
            }
            let mismatches = size_mismatches(&manifest.blob_sizes, &linked);
            if !mismatches.is_empty() {
                return Err(MetaError::BlobSizeMismatch(mismatches));
            }
            let missing_children =
                missing_children(&mut tx, repository_id, &manifest.children).await?;
            if !missing_children.is_empty() {
                return Err(MetaError::MissingManifests(missing_children));
            }
            if limited {
                check_storage(
                    &mut tx,
                    self.default_storage_limit,
                    repository.namespace(),
                    &[(record.digest.as_str(), parse_size(size)?)],
                )
                .await?;
            }
            // An image's size is its blobs', each once (see migration 0009),
            // known from the link check; an index's also counts its
            // children's blobs, which `record_references` adds up from the
            // rows it writes.
            let total_size = match manifest.children.is_empty() {
                true => Some(to_i64(
                    linked
                        .iter()
                        .fold(0u64, |sum, (_, size)| sum.saturating_add(*size)),
                    "image size",
                )?),
                false => None,
            };
            let inserted = query(
                "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, \
                 subject, annotations, payload, size, created_at, total_size) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (repository_id, digest) DO NOTHING",
            )
            .bind(repository_id)
            .bind(record.digest.as_str())
            .bind(&record.media_type)
            .bind(&record.artifact_type)
            .bind(record.subject.as_ref().map(Digest::as_str))
            .bind(&record.annotations)
            .bind(&record.payload)
            .bind(size)
            .bind(now)
            .bind(total_size)
            .execute(&mut tx)
            .await
            .map_err(database("storing a manifest"))?;
            if inserted == 0 {
                // A concurrent push of the same manifest committed first (on
                // PostgreSQL; SQLite's one writer ran it entirely before).
                // This push only moves the tag; the lock keeps the row.
                exists = lock_manifest(
                    &mut tx,
                    repository_id,
                    record.digest.as_str(),
                    dialect.for_share(),
                )
                .await?;
                if !exists {
                    return Err(MetaError::Corrupt(format!(
                        "manifest {} vanished while being stored",
                        record.digest
                    )));
                }
            }
        }
        if !exists {
            record_references(&mut tx, repository_id, manifest).await?;
            let mut detail = serde_json::json!({
                "media_type": record.media_type,
                "size": size,
            });
            if let Some(subject) = &record.subject {
                detail["subject"] = subject.as_str().into();
            }
            if let Some(artifact_type) = &record.artifact_type {
                detail["artifact_type"] = artifact_type.as_str().into();
            }
            tx.record(
                NewEvent::repository(EventKind::ManifestStored, repository)
                    .digest(record.digest.as_str())
                    .detail(detail),
            )?;
        }
        if let Some(tag) = tag {
            point_tag(&mut tx, repository, repository_id, tag, &record.digest).await?;
        }
        tx.commit().await.map_err(database("committing a manifest"))
    }

    async fn manifest_by_digest(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            manifest_columns!(),
            " FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.digest = $2 AND m.trashed_at IS NULL"
        );
        self.one_manifest(SQL, repository, digest.as_str()).await
    }

    async fn manifest_by_tag(
        &self,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            manifest_columns!(),
            " FROM tags t JOIN repositories r ON r.id = t.repository_id \
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest \
             WHERE r.name = $1 AND t.name = $2 AND m.trashed_at IS NULL"
        );
        self.one_manifest(SQL, repository, tag.as_str()).await
    }

    async fn delete_manifest(
        &self,
        change: &Change,
        repository: &RepoName,
        digest: &Digest,
        with_referrers: bool,
    ) -> Result<Option<DeletedManifest>, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(None);
        };
        // Locked before anything is checked: on PostgreSQL a push that lists
        // this manifest as a child, or moves a tag onto it, holds it `FOR
        // SHARE`, so this waits for that push and the checks below then see
        // its rows; a push arriving later waits for this deletion and finds
        // the manifest gone.
        let for_update = tx.dialect().for_update();
        if !lock_live_manifest(&mut tx, repository_id, digest.as_str(), for_update).await? {
            return Ok(None);
        }
        let doomed = deletion_set(&mut tx, repository_id, digest, with_referrers, false).await?;
        refuse_immutable_tags(&mut tx, repository, repository_id, &doomed).await?;
        let deleted = delete_manifests(&mut tx, repository, repository_id, digest, &doomed).await?;
        tx.commit()
            .await
            .map_err(database("committing a manifest deletion"))?;
        Ok(Some(deleted))
    }

    async fn delete_tag(
        &self,
        change: &Change,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<bool, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        let deleted = query(
            "DELETE FROM tags \
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND name = $2 \
             RETURNING manifest_digest",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .fetch_optional(&mut tx)
        .await
        .map_err(database("deleting a tag"))?;
        let Some(row) = deleted else {
            return Ok(false);
        };
        let digest: String = row.first()?;
        // Dropping the transaction undoes the deletion.
        if let Some(refusal) =
            immutable_violation(&mut tx, repository, std::slice::from_ref(tag)).await?
        {
            return Err(refusal);
        }
        tx.record(
            NewEvent::repository(EventKind::TagDeleted, repository)
                .digest(&digest)
                .tag(tag),
        )?;
        tx.commit()
            .await
            .map_err(database("committing a tag deletion"))?;
        Ok(true)
    }

    async fn list_tags(
        &self,
        repository: &RepoName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<Tag>>, MetaError> {
        // One statement, so existence and the page come from one snapshot;
        // tags are never empty, so "" stands for "from the first tag" and
        // every page is an index range seek (see `list_repositories`). The
        // page is a limited subquery per repository, which the two
        // databases spell differently.
        let sql = match self.db.dialect() {
            // One row: SQLite has no lateral join, so the page is
            // aggregated into a JSON array by a scalar subquery, and an
            // absent repository gives no row.
            Dialect::Sqlite => {
                "SELECT (SELECT json_group_array(name ORDER BY name) FROM ( \
                     SELECT name FROM tags \
                     WHERE repository_id = r.id AND name > $2 \
                     ORDER BY name LIMIT $3)) AS page \
                 FROM repositories r WHERE r.name = $1"
            }
            // Rows: the left join yields one row with a NULL tag for a
            // repository without tags, and no row for an absent repository.
            Dialect::Postgres => {
                "SELECT t.name FROM repositories r \
                 LEFT JOIN LATERAL ( \
                     SELECT name FROM tags \
                     WHERE repository_id = r.id AND name > $2 \
                     ORDER BY name LIMIT $3 \
                 ) t ON TRUE \
                 WHERE r.name = $1 \
                 ORDER BY t.name"
            }
        };
        let rows = query(sql)
            .bind(repository.as_str())
            .bind(after.unwrap_or(""))
            .bind(limit_to_i64(limit))
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing tags"))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let names: Vec<String> = match self.db.dialect() {
            Dialect::Sqlite => {
                let page: String = rows[0].first()?;
                serde_json::from_str(&page).map_err(|e| {
                    MetaError::Corrupt(format!("a tag page is not a JSON array: {e}"))
                })?
            }
            Dialect::Postgres => rows
                .iter()
                .map(|row| row.first::<Option<String>>())
                .filter_map(Result::transpose)
                .collect::<Result<_, _>>()?,
        };
        let tags = names
            .iter()
            .map(|name| parse_tag(name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(tags))
    }

    async fn referrers(
        &self,
        repository: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        limit: usize,
        max_annotation_bytes: usize,
    ) -> Result<Vec<Referrer>, MetaError> {
        // Every digest sorts after "", so the first page needs no special
        // case; digests compare in byte order on both databases (SQLite's
        // BINARY, PostgreSQL's `COLLATE "C"` column). `octet_length` counts
        // bytes on both, where SQLite's `length` of TEXT counts characters.
        let rows = query(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, \
             CASE WHEN octet_length(m.annotations) <= $5 THEN m.annotations END \
             AS annotations \
             FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.subject = $2 AND ($3 IS NULL OR m.artifact_type = $3) \
             AND m.digest > $4 AND m.trashed_at IS NULL \
             ORDER BY m.digest LIMIT $6",
        )
        .bind(repository.as_str())
        .bind(subject.as_str())
        .bind(artifact_type)
        .bind(after.map_or("", Digest::as_str))
        .bind(limit_to_i64(max_annotation_bytes))
        .bind(limit_to_i64(limit))
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing referrers"))?;
        rows.iter()
            .map(|row| {
                Ok(Referrer {
                    digest: parse_digest(&row.get::<String>("digest")?)?,
                    media_type: row.get("media_type")?,
                    size: parse_size(row.get("size")?)?,
                    artifact_type: row.get("artifact_type")?,
                    annotations: row.get("annotations")?,
                })
            })
            .collect()
    }
}

/// Points `tag` at `digest` (stored in the repository) and records
/// `tag.moved` when that changes where it points. Refuses with
/// `ImmutableTag` to move an existing tag an immutable-tag rule matches.
///
/// The tag's row is read `FOR UPDATE` (PostgreSQL), so two pushes moving one
/// tag take turns and each event says what it replaced. A tag that does not
/// exist yet has no row to lock: it is created with an insert that does
/// nothing on a conflict, and when a concurrent push created it first (the
/// insert waits for that push to commit), the tag is read again, locked,
/// and moved like any existing tag: so of two pushes racing to create an
/// immutable tag, the second is refused rather than silently moving it.
async fn point_tag(
    tx: &mut Tx,
    repository: &RepoName,
    repository_id: i64,
    tag: &Tag,
    digest: &Digest,
) -> Result<(), MetaError> {
    let now = tx.at()?;
    let sql = format!(
        "SELECT manifest_digest FROM tags WHERE repository_id = $1 AND name = $2{}",
        tx.dialect().for_update()
    );
    let mut previous: Option<String> = None;
    // Two rounds at most: a tag found missing and then created by someone
    // else exists in the second.
    for _ in 0..2 {
        previous = query(&sql)
            .bind(repository_id)
            .bind(tag.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(database("looking up a tag"))?
            .map(|row| row.first())
            .transpose()?;
        if previous.is_some() {
            break;
        }
        let created = query(
            "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (repository_id, name) DO NOTHING",
        )
        .bind(repository_id)
        .bind(tag.as_str())
        .bind(digest.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(database("creating a tag"))?;
        if created == 1 {
            tx.record(
                NewEvent::repository(EventKind::TagMoved, repository)
                    .digest(digest.as_str())
                    .tag(tag)
                    .detail(serde_json::json!({ "previous": null })),
            )?;
            return Ok(());
        }
    }
    let Some(previous) = previous else {
        return Err(MetaError::Corrupt(format!(
            "tag {tag} neither exists nor can be created"
        )));
    };
    if previous != digest.as_str() {
        // Moving an existing tag: refused, with nothing stored, when a rule
        // makes it immutable. The row is locked, so a concurrent push of the
        // same tag waits for this decision.
        if let Some(refusal) =
            immutable_violation(tx, repository, std::slice::from_ref(tag)).await?
        {
            return Err(refusal);
        }
        tx.record(
            NewEvent::repository(EventKind::TagMoved, repository)
                .digest(digest.as_str())
                .tag(tag)
                .detail(serde_json::json!({ "previous": previous })),
        )?;
    }
    query("UPDATE tags SET manifest_digest = $3, updated_at = $4 WHERE repository_id = $1 AND name = $2")
        .bind(repository_id)
        .bind(tag.as_str())
        .bind(digest.as_str())
        .bind(now)
        .execute(tx)
        .await
        .map_err(database("pointing a tag"))?;
    Ok(())
}

/// Inserts one `(repository, manifest, referenced digest)` row per distinct
/// digest into `target`, a reference table with its three columns named
/// (always a constant of this module, never input). The `WHERE true` tells
/// SQLite's parser that `ON CONFLICT` belongs to the insert, not the select.
async fn insert_references(
    tx: &mut Tx,
    target: &str,
    repository_id: i64,
    digest: &str,
    referenced: &[Digest],
    what: &'static str,
) -> Result<(), MetaError> {
    let sql = format!(
        "INSERT INTO {target} SELECT $1, $2, l.value FROM {} WHERE true ON CONFLICT DO NOTHING",
        tx.dialect().list(3)
    );
    query(&sql)
        .bind(repository_id)
        .bind(digest)
        .bind(distinct(referenced))
        .execute(&mut *tx)
        .await
        .map_err(database(what))?;
    Ok(())
}

/// Records what a newly stored manifest references: one statement per kind
/// of reference, however many there are (the links were marked referenced
/// when they were checked, by `reference_links`). A manifest may list the
/// same blob or child twice, and one row per pair is enough. An index's
/// size is added up here, from the rows just written: each distinct blob of
/// the index and of its children once (see migration 0009).
async fn record_references(
    tx: &mut Tx,
    repository_id: i64,
    manifest: &NewManifest,
) -> Result<(), MetaError> {
    let digest = manifest.record.digest.as_str();
    if !manifest.blobs.is_empty() {
        insert_references(
            tx,
            "manifest_blobs (repository_id, manifest_digest, blob_digest)",
            repository_id,
            digest,
            &manifest.blobs,
            "recording a manifest's blobs",
        )
        .await?;
    }
    if manifest.children.is_empty() {
        return Ok(());
    }
    insert_references(
        tx,
        "manifest_children (repository_id, parent_digest, child_digest)",
        repository_id,
        digest,
        &manifest.children,
        "recording an index's manifests",
    )
    .await?;
    query(
        "UPDATE manifests SET total_size = ( \
             SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN ( \
                 SELECT mb.blob_digest FROM manifest_blobs mb \
                 WHERE mb.repository_id = $1 \
                   AND (mb.manifest_digest = $2 OR mb.manifest_digest IN ( \
                       SELECT c.child_digest FROM manifest_children c \
                       WHERE c.repository_id = $1 AND c.parent_digest = $2)))) \
         WHERE repository_id = $1 AND digest = $2",
    )
    .bind(repository_id)
    .bind(digest)
    .execute(tx)
    .await
    .map_err(database("recording an index's size"))?;
    Ok(())
}
