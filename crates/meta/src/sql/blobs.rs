//! [`BlobLinkStore`] in SQL, and the link that finishing an upload shares.

use berth_oci::{Digest, RepoName};

use super::db::{database, query, Tx};
use super::events::NewEvent;
use super::quotas::check_storage;
use super::{
    destination, limit_to_i64, lock_digests, mark_blob_if_orphaned, parse_repository, parse_size,
    repository_id, to_i64, Destination, SqlMetaStore,
};
use crate::{BlobLinkStore, Change, EventKind, MetaError};

/// Links `digest` into `repository` in `tx` (see [`BlobLinkStore::link_blob`]).
pub(crate) async fn link(
    tx: &mut Tx,
    default_storage_limit: Option<u64>,
    repository: &RepoName,
    digest: &Digest,
    size: u64,
) -> Result<(), MetaError> {
    let size = to_i64(size, "blob size")?;
    let now = tx.at()?;
    lock_digests(tx, vec![digest.as_str()]).await?;
    let Destination {
        repository_id,
        limited,
    } = destination(tx, default_storage_limit, repository, Some(digest)).await?;
    if limited {
        check_storage(
            tx,
            default_storage_limit,
            repository.namespace(),
            &[(digest.as_str(), parse_size(size)?)],
        )
        .await?;
    }
    // A digest names its content, so a blob already recorded keeps its
    // row (and size); it only stops being a garbage candidate.
    query(
        "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (digest) DO UPDATE SET orphaned_at = NULL",
    )
    .bind(digest.as_str())
    .bind(size)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(database("recording a blob"))?;
    // A link no manifest references yet belongs to a push whose manifest
    // is still to come: it is a candidate from now, and pushing the blob
    // again restarts that clock. A referenced link stays as it is.
    query(
        "INSERT INTO repository_blobs \
         (repository_id, digest, created_at, unreferenced_since, was_referenced) \
         VALUES ($1, $2, $3, \
             CASE WHEN EXISTS (SELECT 1 FROM manifest_blobs \
                 WHERE repository_id = $1 AND blob_digest = $2) THEN NULL ELSE $3 END, \
             CASE WHEN EXISTS (SELECT 1 FROM manifest_blobs \
                 WHERE repository_id = $1 AND blob_digest = $2) THEN 1 ELSE 0 END) \
         ON CONFLICT (repository_id, digest) DO UPDATE SET \
         was_referenced = CASE WHEN repository_blobs.unreferenced_since IS NULL \
             THEN repository_blobs.was_referenced ELSE 0 END, \
         unreferenced_since = CASE WHEN repository_blobs.unreferenced_since IS NULL \
             THEN NULL ELSE excluded.unreferenced_since END",
    )
    .bind(repository_id)
    .bind(digest.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(database("linking a blob"))?;
    tx.record(
        NewEvent::repository(EventKind::BlobLinked, repository)
            .digest(digest.as_str())
            .detail(serde_json::json!({ "size": size })),
    )
}

#[async_trait::async_trait]
impl<B: 'static> BlobLinkStore for SqlMetaStore<B> {
    async fn link_blob(
        &self,
        change: &Change,
        repository: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        link(
            &mut tx,
            self.default_storage_limit,
            repository,
            digest,
            size,
        )
        .await?;
        tx.commit()
            .await
            .map_err(database("committing a blob link"))
    }

    async fn linked_blob_size(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let row = query(
            "SELECT b.size FROM blobs b \
             JOIN repository_blobs rb ON rb.digest = b.digest \
             JOIN repositories r ON r.id = rb.repository_id \
             WHERE r.name = $1 AND b.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.as_str())
        .fetch_optional(self.db.reader())
        .await
        .map_err(database("looking up a linked blob"))?;
        row.map(|row| parse_size(row.first()?)).transpose()
    }

    async fn repositories_with_blob(
        &self,
        digest: &Digest,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, MetaError> {
        // Names compare in byte order on both databases (SQLite's BINARY,
        // PostgreSQL's `COLLATE "C"` column).
        let rows = query(
            "SELECT r.name FROM repository_blobs rb \
             JOIN repositories r ON r.id = rb.repository_id \
             WHERE rb.digest = $1 AND r.name > $2 \
             ORDER BY r.name LIMIT $3",
        )
        .bind(digest.as_str())
        .bind(after.map_or("", RepoName::as_str))
        .bind(limit_to_i64(limit))
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing repositories holding a blob"))?;
        rows.iter()
            .map(|row| parse_repository(&row.first::<String>()?))
            .collect()
    }

    async fn unlink_blob(
        &self,
        change: &Change,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<bool, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(false);
        };
        lock_digests(&mut tx, vec![digest.as_str()]).await?;
        // On PostgreSQL a push checking this link holds its row (the update
        // that marks it referenced); the delete waits for that push to
        // commit.
        let removed =
            query("DELETE FROM repository_blobs WHERE repository_id = $1 AND digest = $2")
                .bind(repository_id)
                .bind(digest.as_str())
                .execute(&mut tx)
                .await
                .map_err(database("unlinking a blob"))?
                > 0;
        if removed {
            mark_blob_if_orphaned(&mut tx, digest.as_str(), change.at).await?;
            tx.record(
                NewEvent::repository(EventKind::BlobUnlinked, repository).digest(digest.as_str()),
            )?;
        }
        tx.commit()
            .await
            .map_err(database("committing a blob unlink"))?;
        Ok(removed)
    }
}
