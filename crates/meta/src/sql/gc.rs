//! [`GcStore`] in SQL.

use berth_oci::Digest;

use super::db::{database, query, Row};
use super::events::NewEvent;
use super::manifests::{delete_manifests, deletion_set};
use super::{
    distinct, limit_to_i64, lock_digests, mark_blob_if_orphaned, parse_digest, parse_repository,
    parse_size, repository_id, to_i64, SqlMetaStore,
};
use crate::{
    BlobCandidate, Change, DeletedManifest, EventKind, GcCutoffs, GcStore, LinkCandidate,
    ManifestCandidate, MetaError, Timestamp,
};

/// The condition under which a manifest `m` is untagged garbage, given the
/// cut-off as `$1`.
/// Manifests in the trash are not: trash expiry deletes them.
const UNTAGGED_CONDITION: &str = "m.created_at < $1 AND m.trashed_at IS NULL \
     AND NOT EXISTS (SELECT 1 FROM tags t \
         WHERE t.repository_id = m.repository_id AND t.manifest_digest = m.digest) \
     AND NOT EXISTS (SELECT 1 FROM manifest_children c \
         WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest) \
     AND (m.subject IS NULL OR NOT EXISTS (SELECT 1 FROM manifests s \
         WHERE s.repository_id = m.repository_id AND s.digest = m.subject))";

fn blob_candidate(row: &Row, since: &str) -> Result<BlobCandidate, MetaError> {
    Ok(BlobCandidate {
        digest: parse_digest(&row.get::<String>("digest")?)?,
        size: parse_size(row.get("size")?)?,
        since: row.get(since)?,
    })
}

#[async_trait::async_trait]
impl<B: 'static> GcStore for SqlMetaStore<B> {
    async fn expired_links(
        &self,
        cutoffs: GcCutoffs,
        after: Option<&LinkCandidate>,
        limit: usize,
    ) -> Result<Vec<LinkCandidate>, MetaError> {
        // `$6`, the later cut-off, bounds the index range; the `CASE` then
        // applies each link's own cut-off.
        let rows = query(
            "SELECT r.name, rb.digest, rb.unreferenced_since FROM repository_blobs rb \
             JOIN repositories r ON r.id = rb.repository_id \
             WHERE rb.unreferenced_since IS NOT NULL AND rb.unreferenced_since < $6 \
             AND rb.unreferenced_since < CASE WHEN rb.was_referenced = 1 THEN $1 ELSE $2 END \
             AND ($3 IS NULL OR (rb.unreferenced_since, r.name, rb.digest) > ($3, $4, $5)) \
             ORDER BY rb.unreferenced_since, r.name, rb.digest LIMIT $7",
        )
        .bind(cutoffs.unreferenced_before)
        .bind(cutoffs.never_referenced_before)
        .bind(after.map(|a| a.since))
        .bind(after.map(|a| a.repository.as_str()))
        .bind(after.map(|a| a.digest.as_str()))
        .bind(
            cutoffs
                .unreferenced_before
                .max(cutoffs.never_referenced_before),
        )
        .bind(limit_to_i64(limit))
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing expired links"))?;
        rows.iter()
            .map(|row| {
                Ok(LinkCandidate {
                    repository: parse_repository(&row.get::<String>("name")?)?,
                    digest: parse_digest(&row.get::<String>("digest")?)?,
                    since: row.get("unreferenced_since")?,
                })
            })
            .collect()
    }

    async fn remove_links(
        &self,
        change: &Change,
        links: &[LinkCandidate],
        cutoffs: GcCutoffs,
    ) -> Result<Vec<LinkCandidate>, MetaError> {
        let now = change.at;
        let mut tx = self.db.begin_change(change).await?;
        lock_digests(&mut tx, links.iter().map(|l| l.digest.as_str()).collect()).await?;
        let mut removed = Vec::new();
        for link in links {
            let Some(repository_id) = repository_id(&mut tx, &link.repository).await? else {
                continue;
            };
            // The candidate is checked again here, in the transaction that
            // deletes it: a manifest or a re-push since the listing keeps it.
            let deleted = query(
                "DELETE FROM repository_blobs WHERE repository_id = $1 AND digest = $2 \
                 AND unreferenced_since IS NOT NULL \
                 AND unreferenced_since < CASE WHEN was_referenced = 1 THEN $3 ELSE $4 END \
                 AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb \
                     WHERE mb.repository_id = $1 AND mb.blob_digest = $2) \
                 RETURNING unreferenced_since",
            )
            .bind(repository_id)
            .bind(link.digest.as_str())
            .bind(cutoffs.unreferenced_before)
            .bind(cutoffs.never_referenced_before)
            .fetch_optional(&mut tx)
            .await
            .map_err(database("removing an expired link"))?;
            if let Some(row) = deleted {
                let since: Timestamp = row.first()?;
                // The blob has been unreferenced since the link was: its
                // grace period has run already (a later re-push re-links).
                mark_blob_if_orphaned(&mut tx, link.digest.as_str(), since.min(now)).await?;
                tx.record(
                    NewEvent::repository(EventKind::BlobUnlinked, &link.repository)
                        .digest(link.digest.as_str())
                        .detail(serde_json::json!({ "unreferenced_since": since })),
                )?;
                removed.push(link.clone());
            }
        }
        tx.commit()
            .await
            .map_err(database("committing removed links"))?;
        Ok(removed)
    }

    async fn expired_blobs(
        &self,
        before: Timestamp,
        after: Option<&BlobCandidate>,
        limit: usize,
    ) -> Result<Vec<BlobCandidate>, MetaError> {
        let rows = query(
            "SELECT digest, size, orphaned_at FROM blobs \
             WHERE orphaned_at IS NOT NULL AND orphaned_at < $1 \
             AND ($2 IS NULL OR (orphaned_at, digest) > ($2, $3)) \
             ORDER BY orphaned_at, digest LIMIT $4",
        )
        .bind(before)
        .bind(after.map(|a| a.since))
        .bind(after.map(|a| a.digest.as_str()))
        .bind(limit_to_i64(limit))
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing expired blobs"))?;
        rows.iter()
            .map(|row| blob_candidate(row, "orphaned_at"))
            .collect()
    }

    async fn begin_blob_deletions(
        &self,
        change: &Change,
        blobs: &[BlobCandidate],
        before: Timestamp,
    ) -> Result<Vec<BlobCandidate>, MetaError> {
        let now = change.at;
        let mut tx = self.db.begin_change(change).await?;
        lock_digests(&mut tx, blobs.iter().map(|b| b.digest.as_str()).collect()).await?;
        let mut begun = Vec::new();
        for blob in blobs {
            // Checked again in the deleting transaction: a link or manifest
            // reference made since the listing cleared `orphaned_at`.
            let deleted = query(
                "DELETE FROM blobs WHERE digest = $1 \
                 AND orphaned_at IS NOT NULL AND orphaned_at < $2 \
                 AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = $1) \
                 AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = $1) \
                 RETURNING size",
            )
            .bind(blob.digest.as_str())
            .bind(before)
            .fetch_optional(&mut tx)
            .await
            .map_err(database("deleting a blob's row"))?;
            let Some(row) = deleted else {
                continue;
            };
            let size: i64 = row.first()?;
            query(
                "INSERT INTO blob_deletions (digest, size, started_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(blob.digest.as_str())
            .bind(size)
            .bind(now)
            .execute(&mut tx)
            .await
            .map_err(database("recording a blob deletion"))?;
            tx.record(
                NewEvent::new(EventKind::BlobDeleted, serde_json::json!({ "size": size }))
                    .digest(blob.digest.as_str()),
            )?;
            begun.push(BlobCandidate {
                digest: blob.digest.clone(),
                size: parse_size(size)?,
                since: now,
            });
        }
        tx.commit()
            .await
            .map_err(database("committing blob deletions"))?;
        Ok(begun)
    }

    async fn begin_orphan_deletion(
        &self,
        digest: &Digest,
        size: u64,
        now: Timestamp,
    ) -> Result<bool, MetaError> {
        let size = to_i64(size, "blob size")?;
        let mut tx = self.db.begin_write().await?;
        lock_digests(&mut tx, vec![digest.as_str()]).await?;
        let inserted = query(
            "INSERT INTO blob_deletions (digest, size, started_at) \
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM blobs WHERE digest = $1) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.as_str())
        .bind(size)
        .bind(now)
        .execute(&mut tx)
        .await
        .map_err(database("recording an orphan deletion"))?;
        tx.commit()
            .await
            .map_err(database("committing an orphan deletion"))?;
        Ok(inserted > 0)
    }

    async fn pending_blob_deletions(&self, limit: usize) -> Result<Vec<BlobCandidate>, MetaError> {
        let rows = query(
            "SELECT digest, size, started_at FROM blob_deletions \
             ORDER BY started_at, digest LIMIT $1",
        )
        .bind(limit_to_i64(limit))
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing blob deletions"))?;
        rows.iter()
            .map(|row| blob_candidate(row, "started_at"))
            .collect()
    }

    async fn finish_blob_deletion(&self, digest: &Digest) -> Result<(), MetaError> {
        query("DELETE FROM blob_deletions WHERE digest = $1")
            .bind(digest.as_str())
            .execute(self.db.writer())
            .await
            .map_err(database("finishing a blob deletion"))?;
        Ok(())
    }

    async fn unknown_blobs(&self, digests: &[Digest]) -> Result<Vec<Digest>, MetaError> {
        let texts = distinct(digests);
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let list = self.db.dialect().list(1);
        let sql = format!(
            "SELECT digest FROM blobs WHERE digest IN (SELECT l.value FROM {list}) \
             UNION SELECT digest FROM blob_deletions WHERE digest IN (SELECT l.value FROM {list})"
        );
        let known: Vec<String> = query(&sql)
            .bind(texts.clone())
            .fetch_all(self.db.reader())
            .await
            .map_err(database("looking up stored objects"))?
            .iter()
            .map(Row::first)
            .collect::<Result<_, _>>()?;
        texts
            .into_iter()
            .filter(|digest| !known.iter().any(|k| k == digest))
            .map(parse_digest)
            .collect()
    }

    async fn expired_untagged_manifests(
        &self,
        before: Timestamp,
        after: Option<&ManifestCandidate>,
        limit: usize,
    ) -> Result<Vec<ManifestCandidate>, MetaError> {
        let sql = format!(
            "SELECT r.name, m.digest, m.created_at FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id \
             WHERE {UNTAGGED_CONDITION} \
             AND ($2 IS NULL OR (m.created_at, r.name, m.digest) > ($2, $3, $4)) \
             ORDER BY m.created_at, r.name, m.digest LIMIT $5"
        );
        let rows = query(&sql)
            .bind(before)
            .bind(after.map(|a| a.created_at))
            .bind(after.map(|a| a.repository.as_str()))
            .bind(after.map(|a| a.digest.as_str()))
            .bind(limit_to_i64(limit))
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing untagged manifests"))?;
        rows.iter()
            .map(|row| {
                Ok(ManifestCandidate {
                    repository: parse_repository(&row.get::<String>("name")?)?,
                    digest: parse_digest(&row.get::<String>("digest")?)?,
                    created_at: row.get("created_at")?,
                })
            })
            .collect()
    }

    async fn delete_untagged_manifest(
        &self,
        change: &Change,
        candidate: &ManifestCandidate,
        before: Timestamp,
    ) -> Result<Option<DeletedManifest>, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        let Some(repository_id) = repository_id(&mut tx, &candidate.repository).await? else {
            return Ok(None);
        };
        // Checked and (on PostgreSQL) locked first, so a tag or index pushed
        // meanwhile is either seen by the check below or waits for this
        // deletion.
        let sql = format!(
            "SELECT 1 FROM manifests m WHERE m.repository_id = $2 AND m.digest = $3 \
             AND {UNTAGGED_CONDITION}{}",
            tx.dialect().for_update()
        );
        let qualifies = query(&sql)
            .bind(before)
            .bind(repository_id)
            .bind(candidate.digest.as_str())
            .fetch_optional(&mut tx)
            .await
            .map_err(database("checking an untagged manifest"))?;
        if qualifies.is_none() {
            return Ok(None);
        }
        let doomed =
            match deletion_set(&mut tx, repository_id, &candidate.digest, true, false).await {
                Ok(doomed) => doomed,
                // A referrer listed by an index keeps the whole group alive.
                Err(MetaError::ManifestReferenced(_)) => return Ok(None),
                Err(error) => return Err(error),
            };
        // A tagged referrer was pushed to be kept; it keeps its subject too.
        let sql = format!(
            "SELECT 1 FROM tags WHERE repository_id = $1 \
             AND manifest_digest IN (SELECT l.value FROM {}) LIMIT 1",
            tx.dialect().list(2)
        );
        let tagged = query(&sql)
            .bind(repository_id)
            .bind(doomed.iter().map(String::as_str).collect::<Vec<_>>())
            .fetch_optional(&mut tx)
            .await
            .map_err(database("looking for tags of a referrer"))?;
        if tagged.is_some() {
            return Ok(None);
        }
        let deleted = delete_manifests(
            &mut tx,
            &candidate.repository,
            repository_id,
            &candidate.digest,
            &doomed,
        )
        .await?;
        tx.commit()
            .await
            .map_err(database("committing an untagged manifest deletion"))?;
        Ok(Some(deleted))
    }
}
