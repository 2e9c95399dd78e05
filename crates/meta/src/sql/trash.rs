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

/// Brings the entry of `root` back: its manifests become live, its trash
/// row goes (with its kept tags), and with `with_tags` each kept tag is
/// recreated where its name is free and its manifest live, or else
/// reported in `restored.conflicts`. Records `manifest.restored` for each
/// manifest and `tag.moved` for each tag. Returns the manifests, `root`
/// first.
async fn bring_back_entry(
    tx: &mut Tx,
    repository: &RepoName,
    repository_id: i64,
    root: &str,
    with_tags: bool,
    restored: &mut RestoredImage,
) -> Result<Vec<String>, MetaError> {
    let now = tx.at()?;
    let members = entry_members(tx, repository_id, root).await?;
    query(
        "UPDATE manifests SET trashed_at = NULL, trash_root = NULL \
         WHERE repository_id = $1 AND trash_root = $2",
    )
    .bind(repository_id)
    .bind(root)
    .execute(&mut *tx)
    .await
    .map_err(database("restoring manifests"))?;
    for member in &members {
        tx.record(
            NewEvent::repository(EventKind::ManifestRestored, repository)
                .digest(member)
                .detail(serde_json::json!({ "root": root })),
        )?;
    }
    let kept = if with_tags {
        query(
            "SELECT name, manifest_digest FROM trashed_tags \
             WHERE repository_id = $1 AND root_digest = $2 ORDER BY name",
        )
        .bind(repository_id)
        .bind(root)
        .fetch_all(&mut *tx)
        .await
        .map_err(database("listing a trash entry's tags"))?
    } else {
        Vec::new()
    };
    for row in &kept {
        let tag = parse_tag(&row.get::<String>("name")?)?;
        let target: String = row.get("manifest_digest")?;
        // A tag comes back only where its name is free and its manifest is
        // live: a concurrent push that created the name keeps it (on
        // PostgreSQL the insert waits for that push and then does nothing).
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
        .execute(&mut *tx)
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
                .fetch_optional(&mut *tx)
                .await
                .map_err(database("looking up a tag"))?
                .map(|row| parse_digest(&row.first::<String>()?))
                .transpose()?;
        restored.conflicts.push(TagConflict { tag, current });
    }
    query("DELETE FROM trash WHERE repository_id = $1 AND digest = $2")
        .bind(repository_id)
        .bind(root)
        .execute(&mut *tx)
        .await
        .map_err(database("removing a trash entry"))?;
    Ok(members)
}

/// Brings back every manifest in the trash that an index of `parents`
/// lists (its whole entry, tags included, when it is its entry's own
/// manifest), and theirs in turn: a live index never lists a manifest in
/// the trash. Adds them to `restored.children`.
async fn bring_back_children(
    tx: &mut Tx,
    repository: &RepoName,
    repository_id: i64,
    parents: Vec<String>,
    restored: &mut RestoredImage,
) -> Result<(), MetaError> {
    let mut queue = parents;
    // Each round brings back at least one manifest, so the rounds are
    // bounded by the repository's manifests; the cap is a backstop.
    for _ in 0..1_000_000 {
        let Some(parent) = queue.pop() else {
            return Ok(());
        };
        let children = query(
            "SELECT c.child_digest, m.trash_root FROM manifest_children c \
             JOIN manifests m ON m.repository_id = c.repository_id AND m.digest = c.child_digest \
             WHERE c.repository_id = $1 AND c.parent_digest = $2 AND m.trashed_at IS NOT NULL \
             ORDER BY c.child_digest",
        )
        .bind(repository_id)
        .bind(parent.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(database("listing an index's trashed children"))?;
        for row in &children {
            let child: String = row.get("child_digest")?;
            let root: Option<String> = row.get("trash_root")?;
            if root.as_deref() == Some(child.as_str()) {
                let members =
                    bring_back_entry(tx, repository, repository_id, &child, true, restored).await?;
                for member in &members {
                    restored.children.push(parse_digest(member)?);
                }
                queue.extend(members);
            } else {
                revive_one(tx, repository, repository_id, &child, root.as_deref()).await?;
                restored.children.push(parse_digest(&child)?);
                queue.push(child);
            }
        }
    }
    Err(MetaError::Corrupt(
        "bringing back an index's children did not end".to_string(),
    ))
}

/// Brings one manifest of an entry back, leaving the rest of the entry in
/// the trash.
async fn revive_one(
    tx: &mut Tx,
    repository: &RepoName,
    repository_id: i64,
    digest: &str,
    root: Option<&str>,
) -> Result<(), MetaError> {
    query(
        "UPDATE manifests SET trashed_at = NULL, trash_root = NULL \
         WHERE repository_id = $1 AND digest = $2",
    )
    .bind(repository_id)
    .bind(digest)
    .execute(&mut *tx)
    .await
    .map_err(database("bringing a manifest back"))?;
    tx.record(
        NewEvent::repository(EventKind::ManifestRestored, repository)
            .digest(digest)
            .detail(serde_json::json!({ "root": root })),
    )?;
    Ok(())
}

/// Brings a trashed manifest back because it was pushed again: when it is
/// its entry's own manifest, the whole entry (with the referrers deleted
/// with it, but not its old tags: the push names the tag it wants);
/// otherwise the manifest alone, leaving its entry in the trash. An index
/// brings back its children in the trash.
pub(crate) async fn revive_pushed(
    tx: &mut Tx,
    repository: &RepoName,
    repository_id: i64,
    digest: &str,
    root: &str,
) -> Result<(), MetaError> {
    let mut restored = RestoredImage::default();
    let revived = if root == digest {
        bring_back_entry(tx, repository, repository_id, digest, false, &mut restored).await?
    } else {
        revive_one(tx, repository, repository_id, digest, Some(root)).await?;
        vec![digest.to_string()]
    };
    bring_back_children(tx, repository, repository_id, revived, &mut restored).await
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
        let doomed = deletion_set(&mut tx, repository_id, digest, with_referrers, true).await?;
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
        let mut restored = RestoredImage::default();
        let members = bring_back_entry(
            &mut tx,
            repository,
            repository_id,
            digest.as_str(),
            true,
            &mut restored,
        )
        .await?;
        restored.manifests = members
            .iter()
            .map(|member| parse_digest(member))
            .collect::<Result<_, _>>()?;
        bring_back_children(&mut tx, repository, repository_id, members, &mut restored).await?;
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
        // An index in the trash still lists its children there; the entry
        // waits for that index to expire first (it was trashed no later).
        let listed = format!(
            "SELECT 1 FROM manifest_children WHERE repository_id = $1 \
             AND child_digest IN (SELECT l.value FROM {list}) \
             AND parent_digest NOT IN (SELECT l.value FROM {list}) LIMIT 1",
            list = tx.dialect().list(2)
        );
        let still_listed = query(&listed)
            .bind(repository_id)
            .bind(members.iter().map(String::as_str).collect::<Vec<_>>())
            .fetch_optional(&mut tx)
            .await
            .map_err(database("looking for indexes listing a trash entry"))?;
        if still_listed.is_some() {
            return Ok(None);
        }
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
