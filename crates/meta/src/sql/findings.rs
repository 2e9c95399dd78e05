//! [`FindingCountStore`] in SQL.

use berth_oci::{Digest, RepoName};

use super::db::{database, query, Row};
use super::{limit_to_i64, parse_digest, parse_repository, parse_size, to_i64, SqlMetaStore};
use crate::{FindingCountStore, ImageFindings, MetaError, NamespaceFindings, SeverityCounts};

fn counts_from(row: &Row) -> Result<SeverityCounts, MetaError> {
    Ok(SeverityCounts {
        critical: parse_size(row.get("critical")?)?,
        high: parse_size(row.get("high")?)?,
        medium: parse_size(row.get("medium")?)?,
        low: parse_size(row.get("low")?)?,
        unknown: parse_size(row.get("unknown")?)?,
    })
}

#[async_trait::async_trait]
impl<B: 'static> FindingCountStore for SqlMetaStore<B> {
    async fn record_image_findings(&self, row: &ImageFindings) -> Result<(), MetaError> {
        let c = &row.counts;
        let mut tx = self.db.begin_write().await?;
        // Whether the image is live, as migration 0028's triggers keep it
        // afterwards. On PostgreSQL the manifest row is held `FOR SHARE`
        // until commit, so a trash, restore or delete either waits for this
        // row (and its trigger then updates it) or commits first (and the
        // upsert, a later statement, sees it); SQLite's writes are serial.
        let live = query(&format!(
            "SELECT trashed_at FROM manifests \
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) \
               AND digest = $2{}",
            tx.dialect().for_share()
        ))
        .bind(row.repository.as_str())
        .bind(row.manifest.as_str())
        .fetch_optional(&mut tx)
        .await
        .map_err(database("looking up an image's state"))?
        .map(|found| found.get::<Option<i64>>("trashed_at"))
        .transpose()?
        .is_some_and(|trashed_at| trashed_at.is_none());
        query(
            "INSERT INTO image_findings (repository, manifest_digest, namespace, generation, \
               critical, high, medium, low, unknown, total, assessed_at, live) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (repository, manifest_digest) DO UPDATE SET \
               generation = excluded.generation, critical = excluded.critical, \
               high = excluded.high, medium = excluded.medium, low = excluded.low, \
               unknown = excluded.unknown, total = excluded.total, \
               assessed_at = excluded.assessed_at, live = excluded.live",
        )
        .bind(row.repository.as_str())
        .bind(row.manifest.as_str())
        .bind(row.repository.namespace())
        .bind(row.generation)
        .bind(to_i64(c.critical, "a finding count")?)
        .bind(to_i64(c.high, "a finding count")?)
        .bind(to_i64(c.medium, "a finding count")?)
        .bind(to_i64(c.low, "a finding count")?)
        .bind(to_i64(c.unknown, "a finding count")?)
        .bind(to_i64(c.total(), "a finding count")?)
        .bind(row.assessed_at)
        .bind(live)
        .execute(&mut tx)
        .await
        .map_err(database("recording an image's findings"))?;
        tx.commit()
            .await
            .map_err(database("committing an image's findings"))
    }

    async fn forget_image_findings(
        &self,
        repository: &RepoName,
        manifest: &Digest,
    ) -> Result<(), MetaError> {
        // Most calls find no row: the advisor forgets the counts of every
        // image it cannot assess, and a new image of an unknown system never
        // had any. A read on a reader connection tells that without a turn
        // on SQLite's one writer, which every push queues for. A row
        // recorded after the read is one a later assessment wrote, which
        // the delete would as well have preceded; the delete is one
        // statement, atomic by itself.
        let present = query(
            "SELECT 1 AS present FROM image_findings WHERE repository = $1 AND manifest_digest = $2",
        )
        .bind(repository.as_str())
        .bind(manifest.as_str())
        .fetch_optional(self.db.reader())
        .await
        .map_err(database("looking up an image's findings"))?
        .is_some();
        if !present {
            return Ok(());
        }
        query("DELETE FROM image_findings WHERE repository = $1 AND manifest_digest = $2")
            .bind(repository.as_str())
            .bind(manifest.as_str())
            .execute(self.db.writer())
            .await
            .map_err(database("forgetting an image's findings"))?;
        Ok(())
    }

    async fn invalidate_image_findings(&self, namespace: Option<&str>) -> Result<(), MetaError> {
        let mut tx = self.db.begin_write().await?;
        // Generation -1 is never the advisory data's (it starts at 0 and
        // only grows), so every such row is stale.
        query(
            "UPDATE image_findings SET generation = -1 \
             WHERE ($1 IS NULL OR namespace = $1) AND generation <> -1",
        )
        .bind(namespace)
        .execute(&mut tx)
        .await
        .map_err(database("marking images' findings stale"))?;
        tx.commit()
            .await
            .map_err(database("committing images' findings"))
    }

    async fn stale_image_findings(
        &self,
        generation: i64,
        limit: usize,
    ) -> Result<Vec<(RepoName, Digest)>, MetaError> {
        query(
            "SELECT repository, manifest_digest FROM image_findings \
             WHERE generation <> $1 LIMIT $2",
        )
        .bind(generation)
        .bind(limit_to_i64(limit))
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing stale findings"))?
        .iter()
        .map(|row| {
            Ok((
                parse_repository(&row.get::<String>("repository")?)?,
                parse_digest(&row.get::<String>("manifest_digest")?)?,
            ))
        })
        .collect()
    }

    async fn findings_by_namespace(
        &self,
        namespaces: Option<&[String]>,
    ) -> Result<Vec<NamespaceFindings>, MetaError> {
        let filter = match namespaces {
            Some(_) => format!(
                "AND f.namespace IN (SELECT l.value FROM {})",
                self.db.dialect().list(1)
            ),
            None => String::new(),
        };
        // `total > 0 AND live` is migration 0028's covering partial index:
        // the rows with findings of live images, namespace and severities
        // read from the index alone, nothing joined.
        let sql = format!(
            "SELECT f.namespace AS namespace, COUNT(*) AS images, \
               CAST(SUM(f.critical) AS BIGINT) AS critical, CAST(SUM(f.high) AS BIGINT) AS high, \
               CAST(SUM(f.medium) AS BIGINT) AS medium, CAST(SUM(f.low) AS BIGINT) AS low, \
               CAST(SUM(f.unknown) AS BIGINT) AS unknown \
             FROM image_findings f \
             WHERE f.total > 0 AND f.live {filter} \
             GROUP BY f.namespace ORDER BY f.namespace"
        );
        let mut statement = query(&sql);
        if let Some(names) = namespaces {
            statement = statement.bind(names.iter().map(String::as_str).collect::<Vec<_>>());
        }
        statement
            .fetch_all(self.db.reader())
            .await
            .map_err(database("counting images with findings"))?
            .iter()
            .map(|row| {
                Ok(NamespaceFindings {
                    namespace: row.get("namespace")?,
                    images: parse_size(row.get("images")?)?,
                    counts: counts_from(row)?,
                })
            })
            .collect()
    }
}
