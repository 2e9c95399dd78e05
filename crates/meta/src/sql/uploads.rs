//! [`UploadStore`] in SQL.

use berth_oci::{Digest, RepoName};

use super::blobs::link;
use super::db::{database, query, Row};
use super::events::NewEvent;
use super::{ensure_repository, limit_to_i64, parse_repository, parse_size, to_i64, SqlMetaStore};
use crate::{
    Change, EventKind, LiveUploads, MetaError, Timestamp, UploadCaps, UploadOpening, UploadRecord,
    UploadStore,
};

/// The upload columns [`upload_from_row`] reads, with table aliases `u` and `r`.
const UPLOAD_COLUMNS: &str = "u.id, r.name, u.created_at, u.updated_at, u.progress, u.principal";

fn upload_from_row(row: &Row) -> Result<UploadRecord, MetaError> {
    upload_record(row, &parse_repository(&row.get::<String>("name")?)?)
}

impl<B: 'static> SqlMetaStore<B> {
    /// Inserts a session's record unless `caps` (when given) refuse it. The
    /// caps are checked in the insert itself, so starting a blob of a push
    /// into an existing repository is one round trip; only a refusal or a
    /// new repository costs more.
    async fn insert_upload(
        &self,
        change: &Change,
        upload: &UploadRecord,
        caps: Option<&UploadCaps>,
    ) -> Result<UploadOpening, MetaError> {
        // A cap beyond i64 is as good as none.
        let cap = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let per_repository = caps.map(|c| cap(c.per_repository));
        let per_principal = caps.map(|c| cap(c.per_principal));
        let since = caps.map_or(0, |c| c.since);
        let inserted = query(
            "INSERT INTO uploads (id, repository_id, created_at, updated_at, progress, principal) \
             SELECT $1, r.id, $2, $3, $4, $5 FROM repositories r WHERE r.name = $6 \
             AND ($7 IS NULL OR (SELECT count(*) FROM uploads \
                 WHERE repository_id = r.id AND updated_at >= $9) < $7) \
             AND ($5 IS NULL OR $8 IS NULL OR (SELECT count(*) FROM uploads \
                 WHERE principal = $5 AND updated_at >= $9) < $8)",
        )
        .bind(upload.id.as_str())
        .bind(upload.created_at)
        .bind(upload.updated_at)
        .bind(upload.progress.as_str())
        .bind(&upload.principal)
        .bind(upload.repository.as_str())
        .bind(per_repository)
        .bind(per_principal)
        .bind(since)
        .execute(self.db.writer())
        .await
        .map_err(database("creating an upload"))?;
        if inserted > 0 {
            return Ok(UploadOpening::Opened);
        }
        // Either a cap is reached or the repository is new; the counts tell.
        if let Some(caps) = caps {
            let live = self
                .count_live_uploads(&upload.repository, upload.principal.as_deref(), caps.since)
                .await?;
            let principal_full =
                upload.principal.is_some() && live.of_principal >= caps.per_principal;
            if live.in_repository >= caps.per_repository || principal_full {
                return Ok(UploadOpening::Full(live));
            }
        }
        let mut tx = self.db.begin_change(change).await?;
        let repository_id = ensure_repository(&mut tx, &upload.repository).await?;
        query(
            "INSERT INTO uploads (id, repository_id, created_at, updated_at, progress, principal) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(upload.id.as_str())
        .bind(repository_id)
        .bind(upload.created_at)
        .bind(upload.updated_at)
        .bind(upload.progress.as_str())
        .bind(&upload.principal)
        .execute(&mut tx)
        .await
        .map_err(database("creating an upload"))?;
        tx.commit()
            .await
            .map_err(database("committing an upload"))?;
        Ok(UploadOpening::Opened)
    }

    /// Tells why an upload's lease or progress could not be taken or
    /// stored: `UploadBusy` if the upload exists, `UploadNotFound` if not.
    async fn busy_or_missing(&self, id: &str) -> Result<MetaError, MetaError> {
        let exists = query("SELECT 1 FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("looking up an upload"))?;
        Ok(match exists {
            Some(_) => MetaError::UploadBusy,
            None => MetaError::UploadNotFound,
        })
    }
}

#[async_trait::async_trait]
impl<B: 'static> UploadStore for SqlMetaStore<B> {
    async fn create_upload(&self, change: &Change, upload: &UploadRecord) -> Result<(), MetaError> {
        match self.insert_upload(change, upload, None).await? {
            UploadOpening::Opened => Ok(()),
            // Without caps nothing refuses the session.
            UploadOpening::Full(_) => unreachable!("an uncapped upload was refused"),
        }
    }

    async fn open_upload(
        &self,
        change: &Change,
        upload: &UploadRecord,
        caps: &UploadCaps,
    ) -> Result<UploadOpening, MetaError> {
        self.insert_upload(change, upload, Some(caps)).await
    }

    async fn count_live_uploads(
        &self,
        repository: &RepoName,
        principal: Option<&str>,
        since: Timestamp,
    ) -> Result<LiveUploads, MetaError> {
        let row = query(
            "SELECT \
             (SELECT count(*) FROM uploads u JOIN repositories r ON r.id = u.repository_id \
              WHERE r.name = $1 AND u.updated_at >= $3) AS in_repository, \
             (SELECT count(*) FROM uploads \
              WHERE $2 IS NOT NULL AND principal = $2 AND updated_at >= $3) AS of_principal",
        )
        .bind(repository.as_str())
        .bind(principal)
        .bind(since)
        .fetch_one(self.db.reader())
        .await
        .map_err(database("counting open uploads"))?;
        Ok(LiveUploads {
            in_repository: parse_size(row.get("in_repository")?)?,
            of_principal: parse_size(row.get("of_principal")?)?,
        })
    }

    async fn finish_upload(
        &self,
        change: &Change,
        repository: &RepoName,
        id: &str,
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
        tx.record(
            NewEvent::repository(EventKind::UploadFinished, repository)
                .digest(digest.as_str())
                .detail(serde_json::json!({ "size": to_i64(size, "blob size")?, "upload": id })),
        )?;
        tx.commit()
            .await
            .map_err(database("committing a finished upload"))
    }

    async fn get_upload(
        &self,
        repository: &RepoName,
        id: &str,
    ) -> Result<Option<UploadRecord>, MetaError> {
        let sql = format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads u JOIN repositories r ON r.id = u.repository_id \
             WHERE r.name = $1 AND u.id = $2"
        );
        let row = query(&sql)
            .bind(repository.as_str())
            .bind(id)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("fetching an upload"))?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn lock_upload(
        &self,
        repository: &RepoName,
        id: &str,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<UploadRecord, MetaError> {
        // One conditional update takes the lease when it is free, expired or
        // our own: one round trip to SQLite's writer. When two holders
        // collide on PostgreSQL, the condition is re-checked against the
        // winner's row, so the loser updates nothing.
        let taken = query(
            "UPDATE uploads SET lease_holder = $1, lease_expires = $2 \
             WHERE id = $3 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $4) \
             AND (lease_holder IS NULL OR lease_holder = $1 OR lease_expires <= $5) \
             RETURNING id, created_at, updated_at, progress, principal",
        )
        .bind(holder)
        .bind(now.saturating_add(lease_secs))
        .bind(id)
        .bind(repository.as_str())
        .bind(now)
        .fetch_optional(self.db.writer())
        .await
        .map_err(database("taking an upload's lease"))?;
        if let Some(row) = taken {
            return upload_record(&row, repository);
        }
        // Nothing was updated: tell a busy upload from an absent one (or one
        // of another repository, which is absent from this one).
        Err(self.busy_or_absent(repository, id).await?)
    }

    async fn claim_upload(
        &self,
        repository: &RepoName,
        id: &str,
        now: Timestamp,
    ) -> Result<UploadRecord, MetaError> {
        // The lease condition is the one `lock_upload` takes a lease under,
        // so a claim and a lease exclude each other in the same way.
        let claimed = query(
            "DELETE FROM uploads \
             WHERE id = $1 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $2) \
             AND (lease_holder IS NULL OR lease_expires <= $3) \
             RETURNING id, created_at, updated_at, progress, principal",
        )
        .bind(id)
        .bind(repository.as_str())
        .bind(now)
        .fetch_optional(self.db.writer())
        .await
        .map_err(database("claiming an upload"))?;
        if let Some(row) = claimed {
            return upload_record(&row, repository);
        }
        Err(self.busy_or_absent(repository, id).await?)
    }

    async fn update_upload(
        &self,
        id: &str,
        holder: &str,
        progress: &str,
        now: Timestamp,
    ) -> Result<(), MetaError> {
        // A holder whose lease expired but was not taken still holds it: no
        // one else wrote in between, so its progress is still right.
        let updated = query(
            "UPDATE uploads SET progress = $1, updated_at = $2, lease_holder = NULL, \
             lease_expires = NULL WHERE id = $3 AND lease_holder = $4",
        )
        .bind(progress)
        .bind(now)
        .bind(id)
        .bind(holder)
        .execute(self.db.writer())
        .await
        .map_err(database("updating an upload"))?;
        if updated > 0 {
            return Ok(());
        }
        Err(self.busy_or_missing(id).await?)
    }

    async fn unlock_upload(&self, id: &str, holder: &str) -> Result<(), MetaError> {
        // Only the holder's own lease is released; if it was lost to another
        // holder (or the upload is gone) there is nothing of ours to release,
        // and the caller, already handling a failed write, needs no new error.
        query(
            "UPDATE uploads SET lease_holder = NULL, lease_expires = NULL \
             WHERE id = $1 AND lease_holder = $2",
        )
        .bind(id)
        .bind(holder)
        .execute(self.db.writer())
        .await
        .map_err(database("releasing an upload's lease"))?;
        Ok(())
    }

    async fn delete_upload(&self, id: &str) -> Result<bool, MetaError> {
        let deleted = query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(self.db.writer())
            .await
            .map_err(database("deleting an upload"))?;
        Ok(deleted > 0)
    }

    async fn release_upload_leases(&self, holder_prefix: &str) -> Result<u64, MetaError> {
        // `substr` and `length` count characters on both databases, so this
        // compares the holder's first characters with the whole prefix, with
        // no pattern syntax to escape (as `LIKE` would need for `_` and `%`).
        query(
            "UPDATE uploads SET lease_holder = NULL, lease_expires = NULL \
             WHERE lease_holder IS NOT NULL AND substr(lease_holder, 1, length($1)) = $1",
        )
        .bind(holder_prefix)
        .execute(self.db.writer())
        .await
        .map_err(database("releasing a node's upload leases"))
    }

    async fn unknown_uploads(&self, ids: &[String]) -> Result<Vec<String>, MetaError> {
        let mut texts: Vec<&str> = Vec::with_capacity(ids.len());
        for id in ids {
            if !texts.contains(&id.as_str()) {
                texts.push(id);
            }
        }
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let list = self.db.dialect().list(1);
        let sql = format!("SELECT id FROM uploads WHERE id IN (SELECT l.value FROM {list})");
        let known: Vec<String> = query(&sql)
            .bind(texts.clone())
            .fetch_all(self.db.reader())
            .await
            .map_err(database("looking up uploads"))?
            .iter()
            .map(Row::first)
            .collect::<Result<_, _>>()?;
        Ok(texts
            .into_iter()
            .filter(|id| !known.iter().any(|k| k == id))
            .map(String::from)
            .collect())
    }

    async fn expired_uploads(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<UploadRecord>, MetaError> {
        let sql = format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads u JOIN repositories r ON r.id = u.repository_id \
             WHERE u.updated_at < $1 ORDER BY u.updated_at, u.id LIMIT $2"
        );
        let rows = query(&sql)
            .bind(before)
            .bind(limit_to_i64(limit))
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing expired uploads"))?;
        rows.iter().map(upload_from_row).collect()
    }
}

/// An upload's record from a row of `id, created_at, updated_at, progress,
/// principal`.
pub(super) fn upload_record(row: &Row, repository: &RepoName) -> Result<UploadRecord, MetaError> {
    Ok(UploadRecord {
        id: row.get("id")?,
        repository: repository.clone(),
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        progress: row.get("progress")?,
        principal: row.get("principal")?,
    })
}

impl<B> SqlMetaStore<B> {
    /// Why a lease or a claim found nothing to take: the upload is busy
    /// (another request holds it) or absent (or of another repository,
    /// which is absent from this one).
    async fn busy_or_absent(
        &self,
        repository: &RepoName,
        id: &str,
    ) -> Result<MetaError, MetaError> {
        let exists = query(
            "SELECT 1 FROM uploads u JOIN repositories r ON r.id = u.repository_id \
             WHERE r.name = $1 AND u.id = $2",
        )
        .bind(repository.as_str())
        .bind(id)
        .fetch_optional(self.db.reader())
        .await
        .map_err(database("looking up an upload"))?;
        Ok(match exists {
            Some(_) => MetaError::UploadBusy,
            None => MetaError::UploadNotFound,
        })
    }
}
