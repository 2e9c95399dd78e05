//! [`TrashStore`] in SQL.

use berth_oci::{Digest, RepoName, Tag};

use super::db::{database, query, Row, Tx};
use super::events::NewEvent;
use super::manifests::{delete_manifests, deletion_set, lock_live_manifest, refuse_immutable_tags};
use super::{limit_to_i64, parse_digest, parse_repository, parse_tag, repository_id, SqlMetaStore};
use crate::{
    Change, DeletedManifest, EventKind, MetaError, RestoredImage, TagConflict, Timestamp,
    TrashCursor, TrashEntry, TrashStore,
};

/// How an actor is shown in the trash: who, without the address.
fn trashed_by(change: &Change) -> String {
    match &change.actor.name {
        Some(name) => format!("{}:{name}", change.actor.kind.as_str()),
        None => change.actor.kind.as_str().to_string(),
    }
}

/// The manifests of the entry of `root`, its own first, then by digest.
async fn entry_members(
    tx: &mut Tx,
    repository_id: i64,
    root: &str,
) -> Result<Vec<String>, MetaError> {
    let mut members: Vec<String> = query(
        "SELECT digest FROM manifests WHERE repository_id = $1 AND trash_root = $2 \
         ORDER BY digest",
    )
    .bind(repository_id)
    .bind(root)
    .fetch_all(&mut *tx)
    .await
    .map_err(database("listing a trash entry's manifests"))?
    .iter()
    .map(Row::first)
    .collect::<Result<_, _>>()?;
    members.sort_by_key(|member| member != root);
    Ok(members)
}

/// Whether the entry of `root` is in the trash (trashed before `before`,
/// when given), locking its row until the transaction ends.
async fn lock_entry(
    tx: &mut Tx,
    repository_id: i64,
    root: &str,
    before: Option<Timestamp>,
) -> Result<Option<Timestamp>, MetaError> {
    let sql = format!(
        "SELECT trashed_at FROM trash WHERE repository_id = $1 AND digest = $2 \
         AND ($3 IS NULL OR trashed_at < $3){}",
        tx.dialect().for_update()
    );
    query(&sql)
        .bind(repository_id)
        .bind(root)
        .bind(before)
        .fetch_optional(&mut *tx)
        .await
        .map_err(database("looking up a trash entry"))?
        .map(|row| row.first())
        .transpose()
}

impl<B> SqlMetaStore<B> {
    /// A page of the trash: restricted to a namespace and/or to entries
    /// trashed before a time, each a range of one of the trash's indexes.
    async fn trash_page(
        &self,
        namespace: Option<&str>,
        before: Option<Timestamp>,
        after: Option<&TrashCursor>,
        limit: usize,
        with_details: bool,
    ) -> Result<Vec<TrashEntry>, MetaError> {
        // The cursor carries the repository's name; its id (what the index
        // sorts by) is looked up, and a repository deleted meanwhile has no
        // entries left to skip.
        let rows = query(
            "SELECT r.name, t.repository_id, t.digest, t.trashed_at, t.trashed_by \
             FROM trash t JOIN repositories r ON r.id = t.repository_id \
             WHERE ($1 IS NULL OR t.namespace = $1) AND ($2 IS NULL OR t.trashed_at < $2) \
             AND ($3 IS NULL OR (t.trashed_at, t.repository_id, t.digest) > \
                 ($3, COALESCE((SELECT id FROM repositories WHERE name = $4), 0), $5)) \
             ORDER BY t.trashed_at, t.repository_id, t.digest LIMIT $6",
        )
        .bind(namespace)
        .bind(before)
        .bind(after.map(|a| a.trashed_at))
        .bind(after.map(|a| a.repository.as_str()))
        .bind(after.map(|a| a.digest.as_str()))
        .bind(limit_to_i64(limit))
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing the trash"))?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let repository_id: i64 = row.get("repository_id")?;
            let digest: String = row.get("digest")?;
            let mut entry = TrashEntry {
                repository: parse_repository(&row.get::<String>("name")?)?,
                digest: parse_digest(&digest)?,
                trashed_at: row.get("trashed_at")?,
                trashed_by: row.get("trashed_by")?,
                tags: Vec::new(),
                referrers: Vec::new(),
            };
            if with_details {
                // Two index lookups per entry: a page costs its own rows.
                let tags = query(
                    "SELECT name FROM trashed_tags WHERE repository_id = $1 AND root_digest = $2 \
                     ORDER BY name",
                )
                .bind(repository_id)
                .bind(digest.as_str())
                .fetch_all(self.db.reader())
                .await
                .map_err(database("listing a trash entry's tags"))?;
                entry.tags = tags
                    .iter()
                    .map(|row| parse_tag(&row.first::<String>()?))
                    .collect::<Result<_, _>>()?;
                let referrers = query(
                    "SELECT digest FROM manifests WHERE repository_id = $1 AND trash_root = $2 \
                     AND digest <> $2 ORDER BY digest",
                )
                .bind(repository_id)
                .bind(digest.as_str())
                .fetch_all(self.db.reader())
                .await
                .map_err(database("listing a trash entry's referrers"))?;
                entry.referrers = referrers
                    .iter()
                    .map(|row| parse_digest(&row.first::<String>()?))
                    .collect::<Result<_, _>>()?;
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}

#[async_trait::async_trait]
impl<B: 'static> TrashStore for SqlMetaStore<B> {
    async fn trash_manifest(
        &self,
        change: &Change,
        repository: &RepoName,
        digest: &Digest,
        with_referrers: bool,
    ) -> Result<Option<DeletedManifest>, MetaError> {
        let now = change.at;
        let mut tx = self.db.begin_change(change).await?;
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(None);
        };
        // Locked first, as a deletion locks it (see `delete_manifest`).
        let for_update = tx.dialect().for_update();
        if !lock_live_manifest(&mut tx, repository_id, digest.as_str(), for_update).await? {
            return Ok(None);
        }
        let doomed = deletion_set(&mut tx, repository_id, digest, with_referrers).await?;
        refuse_immutable_tags(&mut tx, repository, repository_id, &doomed).await?;
        query(
            "INSERT INTO trash (repository_id, digest, namespace, trashed_at, trashed_by) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(repository_id)
        .bind(digest.as_str())
        .bind(repository.namespace())
        .bind(now)
        .bind(trashed_by(change))
        .execute(&mut tx)
        .await
        .map_err(database("putting a manifest in the trash"))?;
        let mut tags: Vec<Tag> = Vec::new();
        for member in &doomed {
            // The tags move aside, so `/v2/` stops serving them at once.
            let names = query(
                "DELETE FROM tags WHERE repository_id = $1 AND manifest_digest = $2 \
                 RETURNING name",
            )
            .bind(repository_id)
            .bind(member.as_str())
            .fetch_all(&mut tx)
            .await
            .map_err(database("taking a trashed manifest's tags"))?;
            let mut removed = names
                .iter()
                .map(|row| parse_tag(&row.first::<String>()?))
                .collect::<Result<Vec<_>, _>>()?;
            removed.sort_by(|a, b| a.as_str().as_bytes().cmp(b.as_str().as_bytes()));
            for tag in &removed {
                query(
                    "INSERT INTO trashed_tags (repository_id, root_digest, name, manifest_digest) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(repository_id)
                .bind(digest.as_str())
                .bind(tag.as_str())
                .bind(member.as_str())
                .execute(&mut tx)
                .await
                .map_err(database("keeping a trashed tag"))?;
                tx.record(
                    NewEvent::repository(EventKind::TagDeleted, repository)
                        .digest(member)
                        .tag(tag),
                )?;
            }
            if member == digest.as_str() {
                tags = removed;
            }
        }
        let update = format!(
            "UPDATE manifests SET trashed_at = $3, trash_root = $4 \
             WHERE repository_id = $1 AND digest IN (SELECT l.value FROM {})",
            tx.dialect().list(2)
        );
        query(&update)
            .bind(repository_id)
            .bind(doomed.iter().map(String::as_str).collect::<Vec<_>>())
            .bind(now)
            .bind(digest.as_str())
            .execute(&mut tx)
            .await
            .map_err(database("marking manifests trashed"))?;
        for member in &doomed {
            tx.record(
                NewEvent::repository(EventKind::ManifestTrashed, repository)
                    .digest(member)
                    .detail(serde_json::json!({ "root": digest.as_str() })),
            )?;
        }
        tx.commit()
            .await
            .map_err(database("committing a manifest to the trash"))?;
        let mut referrers = doomed[1..]
            .iter()
            .map(|member| parse_digest(member))
            .collect::<Result<Vec<_>, _>>()?;
        referrers.sort();
        Ok(Some(DeletedManifest { tags, referrers }))
    }

    async fn list_trash(
        &self,
        namespace: Option<&str>,
        after: Option<&TrashCursor>,
        limit: usize,
    ) -> Result<Vec<TrashEntry>, MetaError> {
        self.trash_page(namespace, None, after, limit, true).await
    }

    async fn restore_manifest(
        &self,
        change: &Change,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<RestoredImage>, MetaError> {
        let now = change.at;
        let mut tx = self.db.begin_change(change).await?;
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(None);
        };
        // The manifest row first, as every writer of manifests locks it, so
        // a push of the same digest and this restore take turns.
        let for_update = tx.dialect().for_update();
        let sql =
            format!("SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2{for_update}");
        let found = query(&sql)
            .bind(repository_id)
            .bind(digest.as_str())
            .fetch_optional(&mut tx)
            .await
            .map_err(database("looking up a manifest"))?;
        if found.is_none()
            || lock_entry(&mut tx, repository_id, digest.as_str(), None)
                .await?
                .is_none()
        {
            return Ok(None);
        }
        let members = entry_members(&mut tx, repository_id, digest.as_str()).await?;
        query(
            "UPDATE manifests SET trashed_at = NULL, trash_root = NULL \
             WHERE repository_id = $1 AND trash_root = $2",
        )
        .bind(repository_id)
        .bind(digest.as_str())
        .execute(&mut tx)
        .await
        .map_err(database("restoring manifests"))?;
        for member in &members {
            tx.record(
                NewEvent::repository(EventKind::ManifestRestored, repository)
                    .digest(member)
                    .detail(serde_json::json!({ "root": digest.as_str() })),
            )?;
        }
        let kept = query(
            "SELECT name, manifest_digest FROM trashed_tags \
             WHERE repository_id = $1 AND root_digest = $2 ORDER BY name",
        )
        .bind(repository_id)
        .bind(digest.as_str())
        .fetch_all(&mut tx)
        .await
        .map_err(database("listing a trash entry's tags"))?;
        let mut restored = RestoredImage {
            manifests: members
                .iter()
                .map(|member| parse_digest(member))
                .collect::<Result<_, _>>()?,
            ..RestoredImage::default()
        };
        for row in &kept {
            let tag = parse_tag(&row.get::<String>("name")?)?;
            let target: String = row.get("manifest_digest")?;
            // A tag comes back only where its name is free and its manifest
            // is live: a concurrent push that created the name keeps it (on
            // PostgreSQL the insert waits for that push and then does
            // nothing).
            let created = query(
                "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) \
                 SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM manifests \
                     WHERE repository_id = $1 AND digest = $3 AND trashed_at IS NULL) \
                 ON CONFLICT (repository_id, name) DO NOTHING",
            )
            .bind(repository_id)
            .bind(tag.as_str())
            .bind(target.as_str())
            .bind(now)
            .execute(&mut tx)
            .await
            .map_err(database("restoring a tag"))?;
            if created == 1 {
                tx.record(
                    NewEvent::repository(EventKind::TagMoved, repository)
                        .digest(&target)
                        .tag(&tag)
                        .detail(serde_json::json!({ "previous": null, "restored": true })),
                )?;
                restored.tags.push(tag);
                continue;
            }
            let current =
                query("SELECT manifest_digest FROM tags WHERE repository_id = $1 AND name = $2")
                    .bind(repository_id)
                    .bind(tag.as_str())
                    .fetch_optional(&mut tx)
                    .await
                    .map_err(database("looking up a tag"))?
                    .map(|row| parse_digest(&row.first::<String>()?))
                    .transpose()?;
            restored.conflicts.push(TagConflict { tag, current });
        }
        // The entry's row goes, and its kept tags with it.
        query("DELETE FROM trash WHERE repository_id = $1 AND digest = $2")
            .bind(repository_id)
            .bind(digest.as_str())
            .execute(&mut tx)
            .await
            .map_err(database("removing a trash entry"))?;
        tx.commit()
            .await
            .map_err(database("committing a restore"))?;
        Ok(Some(restored))
    }

    async fn expired_trash(
        &self,
        before: Timestamp,
        after: Option<&TrashCursor>,
        limit: usize,
    ) -> Result<Vec<TrashEntry>, MetaError> {
        self.trash_page(None, Some(before), after, limit, false)
            .await
    }

    async fn expire_trash(
        &self,
        change: &Change,
        repository: &RepoName,
        digest: &Digest,
        before: Timestamp,
    ) -> Result<Option<DeletedManifest>, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(None);
        };
        let for_update = tx.dialect().for_update();
        let sql = format!(
            "SELECT 1 FROM manifests WHERE repository_id = $1 AND trash_root = $2 \
             ORDER BY digest{for_update}"
        );
        query(&sql)
            .bind(repository_id)
            .bind(digest.as_str())
            .fetch_all(&mut tx)
            .await
            .map_err(database("locking a trash entry's manifests"))?;
        let Some(trashed_at) =
            lock_entry(&mut tx, repository_id, digest.as_str(), Some(before)).await?
        else {
            return Ok(None);
        };
        let members = entry_members(&mut tx, repository_id, digest.as_str()).await?;
        if members.first().map(String::as_str) != Some(digest.as_str()) {
            return Err(MetaError::Corrupt(format!(
                "trash entry {repository}@{digest} has no manifest"
            )));
        }
        tx.record(
            NewEvent::repository(EventKind::TrashExpired, repository)
                .digest(digest.as_str())
                .detail(serde_json::json!({ "trashed_at": trashed_at })),
        )?;
        let deleted =
            delete_manifests(&mut tx, repository, repository_id, digest, &members).await?;
        tx.commit()
            .await
            .map_err(database("committing a trash expiry"))?;
        Ok(Some(deleted))
    }
}
