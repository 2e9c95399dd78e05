//! [`RepositoryStore`] in SQL.

use berth_oci::RepoName;

use super::db::{database, query, Row};
use super::events::NewEvent;
use super::immutable::{immutable_violation, parse_tags};
use super::manifests::delete_manifests;
use super::{
    limit_to_i64, lock_digests, mark_blob_if_orphaned, parse_digest, parse_repository,
    repository_id, SqlMetaStore,
};
use crate::{Change, EventKind, MetaError, RepositoryDeletion, RepositoryStore};

fn names(rows: Vec<Row>) -> Result<Vec<RepoName>, MetaError> {
    rows.iter()
        .map(|row| parse_repository(&row.first::<String>()?))
        .collect()
}

#[async_trait::async_trait]
impl<B: 'static> RepositoryStore for SqlMetaStore<B> {
    async fn list_repositories(
        &self,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, MetaError> {
        // Every name is longer than "", so the first page starts after "".
        // `$1 IS NULL OR name > $1` would make SQLite scan from the first
        // name on every page; a plain range is an index seek on both. Names
        // compare in byte order: SQLite's default collation is BINARY, and
        // PostgreSQL's column is `COLLATE "C"`.
        let rows = query("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
            .bind(after.map_or("", RepoName::as_str))
            .bind(limit_to_i64(limit))
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing repositories"))?;
        names(rows)
    }

    async fn list_namespace_repositories(
        &self,
        namespace: &str,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, MetaError> {
        let rows = query(
            "SELECT name FROM repositories WHERE namespace = $1 AND name > $2 \
             ORDER BY name LIMIT $3",
        )
        .bind(namespace)
        .bind(after.map_or("", RepoName::as_str))
        .bind(limit_to_i64(limit))
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing a namespace's repositories"))?;
        names(rows)
    }

    async fn delete_repository_step(
        &self,
        change: &Change,
        repository: &RepoName,
        limit: usize,
    ) -> Result<RepositoryDeletion, MetaError> {
        let limit = limit.max(1);
        let now = change.at;
        let mut tx = self.db.begin_change(change).await?;
        let dialect = tx.dialect();
        let Some(repository_id) = repository_id(&mut tx, repository).await? else {
            return Ok(RepositoryDeletion::Missing);
        };

        // Manifests no index of the repository lists: deleting them never
        // leaves an index without a child. Their children are listed by
        // nothing once they are gone, so a later step takes them.
        let sql = format!(
            "SELECT digest FROM manifests m WHERE repository_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM manifest_children c \
                 WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest) \
             ORDER BY digest LIMIT $2{}",
            dialect.for_update()
        );
        let doomed: Vec<String> = query(&sql)
            .bind(repository_id)
            .bind(limit_to_i64(limit))
            .fetch_all(&mut tx)
            .await
            .map_err(database("listing a repository's manifests"))?
            .iter()
            .map(Row::first)
            .collect::<Result<_, _>>()?;
        if !doomed.is_empty() {
            // The tags these manifests take with them: refused, with nothing
            // deleted in this step, when an immutable-tag rule covers one
            // (the rule every other tag deletion obeys; the domain checks
            // the whole repository first, so a deletion rarely stops midway).
            let sql = format!(
                "SELECT name FROM tags WHERE repository_id = $1 \
                 AND manifest_digest IN (SELECT l.value FROM {}) ORDER BY name",
                dialect.list(2)
            );
            let names: Vec<String> = query(&sql)
                .bind(repository_id)
                .bind(doomed.iter().map(String::as_str).collect::<Vec<_>>())
                .fetch_all(&mut tx)
                .await
                .map_err(database("listing the tags of deleted manifests"))?
                .iter()
                .map(Row::first)
                .collect::<Result<_, _>>()?;
            if let Some(refusal) =
                immutable_violation(&mut tx, repository, &parse_tags(&names)?).await?
            {
                return Err(refusal);
            }
            let root = parse_digest(&doomed[0])?;
            delete_manifests(&mut tx, repository, repository_id, &root, &doomed).await?;
            tx.commit()
                .await
                .map_err(database("committing a repository's deleted manifests"))?;
            return Ok(RepositoryDeletion::Progress {
                manifests: doomed
                    .iter()
                    .map(|digest| parse_digest(digest))
                    .collect::<Result<_, _>>()?,
                links: Vec::new(),
            });
        }

        // Then the links, which no manifest of the repository references
        // any more.
        let links: Vec<String> = query(
            "SELECT digest FROM repository_blobs WHERE repository_id = $1 \
             ORDER BY digest LIMIT $2",
        )
        .bind(repository_id)
        .bind(limit_to_i64(limit))
        .fetch_all(&mut tx)
        .await
        .map_err(database("listing a repository's links"))?
        .iter()
        .map(Row::first)
        .collect::<Result<_, _>>()?;
        if !links.is_empty() {
            let texts: Vec<&str> = links.iter().map(String::as_str).collect();
            lock_digests(&mut tx, texts.clone()).await?;
            let sql = format!(
                "DELETE FROM repository_blobs WHERE repository_id = $1 \
                 AND digest IN (SELECT l.value FROM {})",
                dialect.list(2)
            );
            query(&sql)
                .bind(repository_id)
                .bind(texts)
                .execute(&mut tx)
                .await
                .map_err(database("removing a repository's links"))?;
            for digest in &links {
                mark_blob_if_orphaned(&mut tx, digest, now).await?;
                tx.record(
                    NewEvent::repository(EventKind::BlobUnlinked, repository).digest(digest),
                )?;
            }
            tx.commit()
                .await
                .map_err(database("committing a repository's removed links"))?;
            return Ok(RepositoryDeletion::Progress {
                manifests: Vec::new(),
                links: links
                    .iter()
                    .map(|digest| parse_digest(digest))
                    .collect::<Result<_, _>>()?,
            });
        }

        // Empty: the sessions and the repository itself.
        let uploads = query(
            "DELETE FROM uploads WHERE repository_id = $1 \
             RETURNING id, created_at, updated_at, progress, principal",
        )
        .bind(repository_id)
        .fetch_all(&mut tx)
        .await
        .map_err(database("deleting a repository's uploads"))?
        .iter()
        .map(|row| super::uploads::upload_record(row, repository))
        .collect::<Result<Vec<_>, MetaError>>()?;
        match query("DELETE FROM repositories WHERE id = $1")
            .bind(repository_id)
            .execute(&mut tx)
            .await
        {
            Ok(_) => {}
            // On PostgreSQL a push may have added to the repository since the
            // checks above; the next step deletes what it added.
            Err(error)
                if error
                    .as_database_error()
                    .is_some_and(|db| db.is_foreign_key_violation()) =>
            {
                return Ok(RepositoryDeletion::Progress {
                    manifests: Vec::new(),
                    links: Vec::new(),
                });
            }
            Err(error) => return Err(database("deleting a repository")(error)),
        }
        tx.record(NewEvent::repository(
            EventKind::RepositoryDeleted,
            repository,
        ))?;
        tx.commit()
            .await
            .map_err(database("committing a repository deletion"))?;
        Ok(RepositoryDeletion::Deleted { uploads })
    }
}
