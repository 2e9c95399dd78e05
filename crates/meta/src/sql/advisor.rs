//! [`AdvisorStore`] in SQL.

use std::collections::{BTreeMap, BTreeSet};

use berth_oci::{Digest, RepoName};

use super::db::{database, query, write_error, Db, On, Row, Tx};
use super::events::NewEvent;
use super::jobs::LeasedQueue;
use super::{lock_digests, parse_digest, parse_repository, parse_size, SqlMetaStore};
use crate::advisor::{
    AdvisorStore, AdvisoryBatch, AdvisoryData, AdvisoryRow, ExemptionRow, FinishedScan,
    ImageIndexRow, ImportCounts, IndexState, PolicyMode, PolicyRow, ScanJob,
};
use crate::{Actor, Change, EventKind, MetaError, Timestamp};

/// Package keys per look-up statement, well within both databases' limits
/// on a statement's size.
const KEYS_PER_STATEMENT: usize = 500;

/// The lock imports take on PostgreSQL (through the digest locks' advisory
/// lock space), so two imports run one after the other and never race to
/// insert the same new advisory; SQLite's single writer does that anyway.
const IMPORT_LOCK: &str = "berth advisories import";

/// The images among `manifests` whose indexing finished (done, partial or
/// unsupported), read in `tx`, or without one on a reader connection of
/// `db`, a few hundred per statement: a batch costs one round trip, not
/// one per image.
async fn finished_among(
    manifests: &[&Digest],
    db: &Db,
    mut tx: Option<&mut Tx>,
) -> Result<BTreeSet<String>, MetaError> {
    let sql = format!(
        "SELECT manifest_digest, state FROM image_indexes \
         WHERE manifest_digest IN (SELECT l.value FROM {})",
        db.dialect().list(1)
    );
    let mut finished = BTreeSet::new();
    for chunk in manifests.chunks(KEYS_PER_STATEMENT) {
        let statement = query(&sql).bind(
            chunk
                .iter()
                .map(|digest| digest.as_str())
                .collect::<Vec<_>>(),
        );
        let rows = match tx.as_deref_mut() {
            Some(tx) => statement.fetch_all(tx).await,
            None => statement.fetch_all(db.reader()).await,
        }
        .map_err(database("reading image indexes"))?;
        for row in rows {
            let state: String = row.get("state")?;
            if IndexState::parse(&state, None).is_some_and(|state| state.is_finished()) {
                finished.insert(row.get("manifest_digest")?);
            }
        }
    }
    Ok(finished)
}

/// Records that image `manifest` is queued or being indexed (`state`,
/// without a reason), keeping the layers of an earlier indexing.
async fn mark_image(
    tx: &mut Tx,
    manifest: &Digest,
    state: &IndexState,
    now: Timestamp,
) -> Result<(), MetaError> {
    query(
        "INSERT INTO image_indexes (manifest_digest, state, updated_at) \
         VALUES ($1, $2, $3) ON CONFLICT (manifest_digest) DO UPDATE \
         SET state = excluded.state, reason = NULL, updated_at = excluded.updated_at",
    )
    .bind(manifest.as_str())
    .bind(state.as_str())
    .bind(now)
    .execute(tx)
    .await
    .map_err(database("recording an image's indexing state"))?;
    Ok(())
}

/// Stores the index of layer `layer` unless one is stored already;
/// returns whether this call stored it.
async fn insert_layer_index<'c>(
    on: impl Into<On<'c>>,
    layer: &Digest,
    format: i64,
    body: &str,
    now: Timestamp,
) -> Result<bool, MetaError> {
    let stored = query(
        "INSERT INTO layer_indexes (digest, format, body, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING",
    )
    .bind(layer.as_str())
    .bind(format)
    .bind(body)
    .bind(now)
    .execute(on)
    .await
    .map_err(database("storing a layer index"))?;
    Ok(stored > 0)
}

/// The scan queue: oldest first, a retried job once its `not_before` is due.
const SCAN_QUEUE: LeasedQueue = LeasedQueue {
    table: "scan_jobs",
    key: "manifest_digest",
    ready: "not_before <= $3",
    order: "enqueued_at, manifest_digest",
    returning: "manifest_digest, repository, attempts, enqueued_at",
    what: "taking a scan job",
};

#[cfg(any(test, feature = "test-suite"))]
impl<B> SqlMetaStore<B> {
    /// Makes image `manifest` look indexed before the store kept package
    /// keys (migration 0025): its keys go and they are not recorded. For
    /// tests of the backfill only.
    pub async fn forget_image_packages(&self, manifest: &Digest) -> Result<(), MetaError> {
        let mut tx = self.db.begin_write().await?;
        query("DELETE FROM image_packages WHERE manifest_digest = $1")
            .bind(manifest.as_str())
            .execute(&mut tx)
            .await
            .map_err(database("forgetting an image's package keys"))?;
        query("UPDATE image_indexes SET packages_recorded = FALSE WHERE manifest_digest = $1")
            .bind(manifest.as_str())
            .execute(&mut tx)
            .await
            .map_err(database("forgetting an image's package keys"))?;
        tx.commit()
            .await
            .map_err(database("committing forgotten package keys"))
    }

    /// Forgets the stored index of layer `layer`, as if it had never been
    /// indexed. For tests of the backfill only.
    pub async fn forget_layer_index(&self, layer: &Digest) -> Result<(), MetaError> {
        query("DELETE FROM layer_indexes WHERE digest = $1")
            .bind(layer.as_str())
            .execute(self.db.writer())
            .await
            .map_err(database("forgetting a layer index"))?;
        Ok(())
    }
}

fn image_index_from_row(row: &Row) -> Result<ImageIndexRow, MetaError> {
    let state: String = row.get("state")?;
    let reason: Option<String> = row.get("reason")?;
    let layers: Option<String> = row.get("layers")?;
    let layers: Vec<String> = match layers {
        Some(text) => serde_json::from_str(&text)
            .map_err(|error| MetaError::Corrupt(format!("image layers: {error}")))?,
        None => Vec::new(),
    };
    Ok(ImageIndexRow {
        manifest: parse_digest(&row.get::<String>("manifest_digest")?)?,
        state: IndexState::parse(&state, reason)
            .ok_or_else(|| MetaError::Corrupt(format!("index state {state:?}")))?,
        layers: layers
            .iter()
            .map(|digest| parse_digest(digest))
            .collect::<Result<_, _>>()?,
        updated_at: row.get("updated_at")?,
    })
}

fn exemption_from_row(row: &Row) -> Result<ExemptionRow, MetaError> {
    Ok(ExemptionRow {
        scope: row.get("scope")?,
        advisory: row.get("advisory")?,
        reason: row.get("reason")?,
        author: row.get("author")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
    })
}

fn policy_from_row(row: &Row) -> Result<PolicyRow, MetaError> {
    let mode: String = row.get("mode")?;
    Ok(PolicyRow {
        namespace: row.get("namespace")?,
        mode: PolicyMode::parse(&mode)
            .ok_or_else(|| MetaError::Corrupt(format!("policy mode {mode:?}")))?,
        severity: row.get("severity")?,
        block_unscanned: row.get("block_unscanned")?,
        attach_sbom: row.get("attach_sbom")?,
        updated_at: row.get("updated_at")?,
    })
}

/// Inserts the aliases and package keys of an advisory stored in `tx`.
/// (`WHERE true` tells SQLite's parser that `ON CONFLICT` belongs to the
/// insert, not to the select's join.)
async fn insert_keys(tx: &mut Tx, advisory: &AdvisoryRow) -> Result<(), MetaError> {
    let list = tx.dialect().list(1);
    for (table, key, values, what) in [
        (
            "advisory_aliases",
            "alias",
            &advisory.aliases,
            "storing advisory aliases",
        ),
        (
            "advisory_packages",
            "package_key",
            &advisory.packages,
            "storing advisory packages",
        ),
    ] {
        let sql = format!(
            "INSERT INTO {table} ({key}, advisory_id) \
             SELECT DISTINCT l.value, $2 FROM {list} WHERE true ON CONFLICT DO NOTHING"
        );
        query(&sql)
            .bind(values.iter().map(String::as_str).collect::<Vec<_>>())
            .bind(&advisory.id)
            .execute(&mut *tx)
            .await
            .map_err(database(what))?;
    }
    Ok(())
}

/// What storing one advisory did.
enum Stored {
    Added,
    Updated,
    Unchanged,
}

async fn store_advisory(
    tx: &mut Tx,
    advisory: &AdvisoryRow,
    now: Timestamp,
) -> Result<Stored, MetaError> {
    let sql = format!(
        "SELECT modified_ns FROM advisories WHERE id = $1{}",
        tx.dialect().for_update()
    );
    let stored: Option<i64> = query(&sql)
        .bind(&advisory.id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(database("reading an advisory"))?
        .map(|row| row.first())
        .transpose()?;
    let outcome = match stored {
        Some(modified) if modified >= advisory.modified_ns => return Ok(Stored::Unchanged),
        Some(_) => {
            query(
                "UPDATE advisories SET modified_ns = $1, body = $2, imported_at = $3 WHERE id = $4",
            )
            .bind(advisory.modified_ns)
            .bind(&advisory.body)
            .bind(now)
            .bind(&advisory.id)
            .execute(&mut *tx)
            .await
            .map_err(database("updating an advisory"))?;
            for table in ["advisory_aliases", "advisory_packages"] {
                query(&format!("DELETE FROM {table} WHERE advisory_id = $1"))
                    .bind(&advisory.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(database("replacing an advisory's keys"))?;
            }
            Stored::Updated
        }
        None => {
            query(
                "INSERT INTO advisories (id, modified_ns, body, imported_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&advisory.id)
            .bind(advisory.modified_ns)
            .bind(&advisory.body)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(database("storing an advisory"))?;
            Stored::Added
        }
    };
    insert_keys(tx, advisory).await?;
    Ok(outcome)
}

/// Replaces the package keys of image `manifest` in `tx`.
async fn write_package_keys(
    tx: &mut Tx,
    manifest: &Digest,
    package_keys: &[String],
) -> Result<(), MetaError> {
    query("DELETE FROM image_packages WHERE manifest_digest = $1")
        .bind(manifest.as_str())
        .execute(&mut *tx)
        .await
        .map_err(database("replacing an image's package keys"))?;
    let mut keys: Vec<&str> = package_keys.iter().map(String::as_str).collect();
    keys.sort_unstable();
    keys.dedup();
    let insert = format!(
        "INSERT INTO image_packages (package_key, manifest_digest) \
             SELECT l.value, $2 FROM {}",
        tx.dialect().list(1)
    );
    for keys in keys.chunks(KEYS_PER_STATEMENT) {
        query(&insert)
            .bind(keys.to_vec())
            .bind(manifest.as_str())
            .execute(&mut *tx)
            .await
            .map_err(database("recording an image's package keys"))?;
    }
    Ok(())
}

/// Whether the batch's ids are stored exactly as `seen` says (the same
/// ids, with the same `modified`), read in `tx` after the import lock.
async fn still_stored(
    tx: &mut Tx,
    batch: &AdvisoryBatch<'_>,
    seen: &[(String, i64)],
) -> Result<bool, MetaError> {
    let ids: Vec<&str> = batch
        .advisories
        .iter()
        .map(|advisory| advisory.id.as_str())
        .chain(batch.withdrawn.iter().map(String::as_str))
        .collect();
    let sql = format!(
        "SELECT id, modified_ns FROM advisories WHERE id IN (SELECT l.value FROM {})",
        tx.dialect().list(1)
    );
    let mut stored = Vec::new();
    for ids in ids.chunks(KEYS_PER_STATEMENT) {
        let rows = query(&sql)
            .bind(ids.to_vec())
            .fetch_all(&mut *tx)
            .await
            .map_err(database("reading the stored versions of advisories"))?;
        for row in rows {
            stored.push((row.get::<String>("id")?, row.get::<i64>("modified_ns")?));
        }
    }
    stored.sort_unstable();
    stored.dedup();
    let mut seen = seen.to_vec();
    seen.sort_unstable();
    seen.dedup();
    Ok(stored == seen)
}

/// Records in `tx` that the findings of each image of `changes` (a
/// manifest digest and the event's detail) changed at the change's time,
/// with a `vulnerabilities.changed` event in every repository holding it.
async fn record_vulnerability_changes(
    tx: &mut Tx,
    change: &Change,
    changes: &[(Digest, serde_json::Value)],
) -> Result<(), MetaError> {
    for (manifest, detail) in changes {
        query("UPDATE image_indexes SET findings_changed_at = $2 WHERE manifest_digest = $1")
            .bind(manifest.as_str())
            .bind(change.at)
            .execute(&mut *tx)
            .await
            .map_err(database("recording that an image's findings changed"))?;
        let rows = query(
            "SELECT r.name FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE m.digest = $1 AND m.trashed_at IS NULL ORDER BY r.name",
        )
        .bind(manifest.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(database("finding the repositories of an image"))?;
        for row in rows {
            let repository = parse_repository(&row.first::<String>()?)?;
            tx.record(
                NewEvent::repository(EventKind::VulnerabilitiesChanged, &repository)
                    .digest(manifest.as_str())
                    .detail(detail.clone()),
            )?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl<B: 'static> AdvisorStore for SqlMetaStore<B> {
    async fn put_layer_index(
        &self,
        layer: &Digest,
        format: i64,
        body: &str,
        now: Timestamp,
    ) -> Result<bool, MetaError> {
        insert_layer_index(self.db.writer(), layer, format, body, now).await
    }

    async fn layer_index(&self, layer: &Digest) -> Result<Option<(i64, String)>, MetaError> {
        query("SELECT format, body FROM layer_indexes WHERE digest = $1")
            .bind(layer.as_str())
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("reading a layer index"))?
            .map(|row| Ok((row.get("format")?, row.get("body")?)))
            .transpose()
    }

    async fn image_index(&self, manifest: &Digest) -> Result<Option<ImageIndexRow>, MetaError> {
        query(
            "SELECT manifest_digest, state, reason, layers, updated_at FROM image_indexes \
             WHERE manifest_digest = $1",
        )
        .bind(manifest.as_str())
        .fetch_optional(self.db.reader())
        .await
        .map_err(database("reading an image index"))?
        .as_ref()
        .map(image_index_from_row)
        .transpose()
    }

    async fn enqueue_scans(
        &self,
        images: &[(RepoName, Digest)],
        now: Timestamp,
        again: bool,
    ) -> Result<Vec<bool>, MetaError> {
        let mut queued = vec![false; images.len()];
        // Each image once, the first repository given with it, in digest
        // order: two nodes queueing overlapping batches on PostgreSQL take
        // the rows' locks in one order, so neither waits on the other in a
        // cycle.
        let mut pending: BTreeMap<&Digest, (usize, &RepoName)> = BTreeMap::new();
        for (at, (repository, manifest)) in images.iter().enumerate() {
            pending.entry(manifest).or_insert((at, repository));
        }
        // An image pushed again under another tag is indexed already, and
        // a read on a reader connection tells that without a turn on
        // SQLite's one writer; the transaction asks again, since the image
        // may have been queued again (`again`) in between.
        if !again {
            let digests: Vec<&Digest> = pending.keys().copied().collect();
            let finished = finished_among(&digests, &self.db, None).await?;
            pending.retain(|manifest, _| !finished.contains(manifest.as_str()));
        }
        if pending.is_empty() {
            return Ok(queued);
        }
        let mut tx = self.db.begin_write().await?;
        let finished = match again {
            true => BTreeSet::new(),
            false => {
                let digests: Vec<&Digest> = pending.keys().copied().collect();
                finished_among(&digests, &self.db, Some(&mut tx)).await?
            }
        };
        let mut any = false;
        for (manifest, (at, repository)) in pending {
            if finished.contains(manifest.as_str()) {
                continue;
            }
            // A job already queued or held stays as it is: the image is
            // indexed once, by whoever holds it.
            let inserted = query(
                "INSERT INTO scan_jobs (manifest_digest, repository, enqueued_at, not_before) \
                 VALUES ($1, $2, $3, $3) ON CONFLICT (manifest_digest) DO NOTHING",
            )
            .bind(manifest.as_str())
            .bind(repository.as_str())
            .bind(now)
            .execute(&mut tx)
            .await
            .map_err(database("queueing a scan"))?;
            if inserted == 0 {
                continue;
            }
            // The layers of an earlier indexing stay until the new one
            // finishes.
            mark_image(&mut tx, manifest, &IndexState::Queued, now).await?;
            queued[at] = true;
            any = true;
        }
        if any {
            tx.commit()
                .await
                .map_err(database("committing queued scans"))?;
        }
        Ok(queued)
    }

    async fn take_scan(
        &self,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<Option<ScanJob>, MetaError> {
        if !SCAN_QUEUE.any_free(&self.db, now).await? {
            return Ok(None);
        }
        let mut tx = self.db.begin_write().await?;
        let Some(row) = SCAN_QUEUE.take(&mut tx, holder, now, lease_secs).await? else {
            return Ok(None);
        };
        let manifest: String = row.get("manifest_digest")?;
        let attempts: i64 = row.get("attempts")?;
        let job = ScanJob {
            manifest: parse_digest(&manifest)?,
            repository: parse_repository(&row.get::<String>("repository")?)?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            enqueued_at: row.get("enqueued_at")?,
        };
        mark_image(&mut tx, &job.manifest, &IndexState::Indexing, now).await?;
        tx.commit()
            .await
            .map_err(database("committing a taken scan job"))?;
        Ok(Some(job))
    }

    async fn finish_scan(
        &self,
        holder: &str,
        manifest: &Digest,
        scan: &FinishedScan<'_>,
        now: Timestamp,
    ) -> Result<(), MetaError> {
        let FinishedScan {
            state,
            layers,
            package_keys,
            new_layer_indexes,
        } = *scan;
        let change = Change::new(Actor::system("scanner"), now);
        let mut tx = self.db.begin_change(&change).await?;
        let removed = query(
            "DELETE FROM scan_jobs WHERE manifest_digest = $1 AND holder = $2 RETURNING repository",
        )
        .bind(manifest.as_str())
        .bind(holder)
        .fetch_optional(&mut tx)
        .await
        .map_err(database("removing a finished scan job"))?;
        let Some(removed) = removed else {
            return Err(MetaError::LeaseLost);
        };
        let repository = parse_repository(&removed.get::<String>("repository")?)?;
        let mut detail = serde_json::json!({ "state": state.as_str() });
        if let Some(reason) = state.reason() {
            detail["reason"] = reason.into();
        }
        tx.record(
            NewEvent::repository(EventKind::ScanFinished, &repository)
                .digest(manifest.as_str())
                .detail(detail),
        )?;
        let layers: Vec<&str> = layers.iter().map(Digest::as_str).collect();
        let layers = serde_json::to_string(&layers)
            .map_err(|error| MetaError::Database(format!("encoding layers: {error}")))?;
        query(
            "INSERT INTO image_indexes \
             (manifest_digest, state, reason, layers, updated_at, packages_recorded) \
             VALUES ($1, $2, $3, $4, $5, TRUE) ON CONFLICT (manifest_digest) DO UPDATE \
             SET state = excluded.state, reason = excluded.reason, layers = excluded.layers, \
             updated_at = excluded.updated_at, packages_recorded = TRUE",
        )
        .bind(manifest.as_str())
        .bind(state.as_str())
        .bind(state.reason())
        .bind(layers)
        .bind(now)
        .execute(&mut tx)
        .await
        .map_err(database("recording an image index"))?;
        write_package_keys(&mut tx, manifest, package_keys).await?;
        // In digest order: two scans of images sharing layers in another
        // order take the rows' locks on PostgreSQL in one order, so neither
        // waits on the other in a cycle.
        let mut new_layer_indexes: Vec<_> = new_layer_indexes.iter().collect();
        new_layer_indexes.sort_by(|a, b| a.layer.cmp(&b.layer));
        for index in new_layer_indexes {
            insert_layer_index(&mut tx, &index.layer, index.format, &index.body, now).await?;
        }
        tx.commit()
            .await
            .map_err(database("committing a finished scan"))
    }

    async fn images_with_packages(
        &self,
        package_keys: &[String],
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Digest>, MetaError> {
        let sql = format!(
            "SELECT DISTINCT manifest_digest FROM image_packages \
             WHERE package_key IN (SELECT l.value FROM {}) AND manifest_digest > $2 \
             ORDER BY manifest_digest LIMIT $3",
            self.db.dialect().list(1)
        );
        let limit_bound = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut found = std::collections::BTreeSet::new();
        for keys in package_keys.chunks(KEYS_PER_STATEMENT) {
            let rows = query(&sql)
                .bind(keys.iter().map(String::as_str).collect::<Vec<_>>())
                .bind(after.map_or("", Digest::as_str))
                .bind(limit_bound)
                .fetch_all(self.db.reader())
                .await
                .map_err(database("looking up images by package"))?;
            for row in rows {
                found.insert(row.first::<String>()?);
            }
        }
        found
            .into_iter()
            .take(limit)
            .map(|digest| parse_digest(&digest))
            .collect()
    }

    async fn images_without_package_keys(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<(ImageIndexRow, Option<RepoName>)>, MetaError> {
        let rows = query(
            "SELECT i.manifest_digest, i.state, i.reason, i.layers, i.updated_at, \
             (SELECT MIN(r.name) FROM manifests m JOIN repositories r ON r.id = m.repository_id \
               WHERE m.digest = i.manifest_digest AND m.trashed_at IS NULL) AS repository \
             FROM image_indexes i \
             WHERE NOT i.packages_recorded AND i.state IN ('done', 'partial') \
             AND i.manifest_digest > $1 ORDER BY i.manifest_digest LIMIT $2",
        )
        .bind(after.map_or("", Digest::as_str))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing images without package keys"))?;
        rows.iter()
            .map(|row| {
                let repository = row
                    .get::<Option<String>>("repository")?
                    .map(|name| parse_repository(&name))
                    .transpose()?;
                Ok((image_index_from_row(row)?, repository))
            })
            .collect()
    }

    async fn record_image_packages(
        &self,
        manifest: &Digest,
        package_keys: &[String],
    ) -> Result<bool, MetaError> {
        let mut tx = self.db.begin_write().await?;
        let marked = query(
            "UPDATE image_indexes SET packages_recorded = TRUE \
             WHERE manifest_digest = $1 AND NOT packages_recorded \
             AND state IN ('done', 'partial')",
        )
        .bind(manifest.as_str())
        .execute(&mut tx)
        .await
        .map_err(database("marking an image's package keys recorded"))?;
        if marked == 0 {
            return Ok(false);
        }
        write_package_keys(&mut tx, manifest, package_keys).await?;
        tx.commit()
            .await
            .map_err(database("committing an image's package keys"))?;
        Ok(true)
    }

    async fn retry_scan(
        &self,
        holder: &str,
        manifest: &Digest,
        not_before: Timestamp,
    ) -> Result<(), MetaError> {
        let returned = query(
            "UPDATE scan_jobs SET holder = NULL, lease_expires = NULL, not_before = $1 \
             WHERE manifest_digest = $2 AND holder = $3",
        )
        .bind(not_before)
        .bind(manifest.as_str())
        .bind(holder)
        .execute(self.db.writer())
        .await
        .map_err(database("returning a scan job"))?;
        if returned == 0 {
            return Err(MetaError::LeaseLost);
        }
        Ok(())
    }

    async fn scan_queue_depth(&self) -> Result<u64, MetaError> {
        let count: i64 = query("SELECT COUNT(*) FROM scan_jobs")
            .fetch_one(self.db.reader())
            .await
            .map_err(database("counting scan jobs"))?
            .first()?;
        parse_size(count)
    }

    async fn import_advisories(
        &self,
        change: &Change,
        batch: &AdvisoryBatch<'_>,
    ) -> Result<Option<ImportCounts>, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        lock_digests(&mut tx, vec![IMPORT_LOCK]).await?;
        if let Some(seen) = batch.seen {
            if !still_stored(&mut tx, batch, seen).await? {
                return Ok(None);
            }
        }
        let mut counts = ImportCounts::default();
        for advisory in batch.advisories {
            match store_advisory(&mut tx, advisory, change.at).await? {
                Stored::Added => counts.added += 1,
                Stored::Updated => counts.updated += 1,
                Stored::Unchanged => counts.unchanged += 1,
            }
        }
        for id in batch.withdrawn {
            // The aliases and package keys go with it (ON DELETE CASCADE).
            counts.removed += query("DELETE FROM advisories WHERE id = $1")
                .bind(id)
                .execute(&mut tx)
                .await
                .map_err(database("removing a withdrawn advisory"))?;
        }
        let step = i64::from(counts.changed());
        // The count moves with the rows in this transaction, so that reading
        // the data's state never counts every advisory (migration 0032).
        let added = i64::try_from(counts.added).unwrap_or(i64::MAX);
        let removed = i64::try_from(counts.removed).unwrap_or(i64::MAX);
        let generation: i64 = query(
            "INSERT INTO advisory_data (singleton, generation, imported_at, advisory_count) \
             VALUES (1, $1, $2, $3) \
             ON CONFLICT (singleton) DO UPDATE \
             SET generation = advisory_data.generation + $1, imported_at = excluded.imported_at, \
             advisory_count = advisory_data.advisory_count + $3 \
             RETURNING generation",
        )
        .bind(step)
        .bind(change.at)
        .bind(added - removed)
        .fetch_one(&mut tx)
        .await
        .map_err(database("recording an advisory import"))?
        .first()?;
        if counts.changed() {
            tx.record(NewEvent::new(
                EventKind::AdvisoriesImported,
                serde_json::json!({
                    "added": counts.added,
                    "updated": counts.updated,
                    "removed": counts.removed,
                    "generation": generation,
                }),
            ))?;
        }
        record_vulnerability_changes(&mut tx, change, batch.verdicts).await?;
        tx.commit()
            .await
            .map_err(database("committing an advisory import"))?;
        Ok(Some(counts))
    }

    async fn advisories_for_packages(
        &self,
        package_keys: &[String],
    ) -> Result<Vec<String>, MetaError> {
        let sql = format!(
            "SELECT DISTINCT a.id, a.body FROM advisories a \
             JOIN advisory_packages p ON p.advisory_id = a.id \
             WHERE p.package_key IN (SELECT l.value FROM {})",
            self.db.dialect().list(1)
        );
        let mut found = BTreeMap::new();
        for keys in package_keys.chunks(KEYS_PER_STATEMENT) {
            let rows = query(&sql)
                .bind(keys.iter().map(String::as_str).collect::<Vec<_>>())
                .fetch_all(self.db.reader())
                .await
                .map_err(database("looking up advisories"))?;
            for row in rows {
                found.insert(row.get::<String>("id")?, row.get::<String>("body")?);
            }
        }
        Ok(found.into_values().collect())
    }

    async fn advisories_by_id(
        &self,
        ids: &[String],
        bodies: bool,
    ) -> Result<Vec<(String, i64, String)>, MetaError> {
        let body = if bodies { "body" } else { "'' AS body" };
        let sql = format!(
            "SELECT id, modified_ns, {body} FROM advisories WHERE id IN (SELECT l.value FROM {})",
            self.db.dialect().list(1)
        );
        let mut found = BTreeMap::new();
        for ids in ids.chunks(KEYS_PER_STATEMENT) {
            let rows = query(&sql)
                .bind(ids.iter().map(String::as_str).collect::<Vec<_>>())
                .fetch_all(self.db.reader())
                .await
                .map_err(database("reading advisories by id"))?;
            for row in rows {
                found.insert(
                    row.get::<String>("id")?,
                    (row.get::<i64>("modified_ns")?, row.get::<String>("body")?),
                );
            }
        }
        Ok(found
            .into_iter()
            .map(|(id, (modified, body))| (id, modified, body))
            .collect())
    }

    async fn advisory_ids_named(&self, name: &str) -> Result<Vec<String>, MetaError> {
        query(
            "SELECT id FROM advisories WHERE id = $1 \
             UNION SELECT advisory_id FROM advisory_aliases WHERE alias = $1 ORDER BY 1",
        )
        .bind(name)
        .fetch_all(self.db.reader())
        .await
        .map_err(database("looking up an advisory by name"))?
        .iter()
        .map(|row| row.first())
        .collect()
    }

    async fn advisory_data(&self) -> Result<AdvisoryData, MetaError> {
        // One row and one index lookup, however many advisories are stored
        // (migration 0032): this runs for every scanned image.
        let row = query(
            "SELECT (SELECT advisory_count FROM advisory_data) AS count, \
             (SELECT MAX(modified_ns) FROM advisories) AS newest, \
             (SELECT generation FROM advisory_data) AS generation, \
             (SELECT imported_at FROM advisory_data) AS imported_at",
        )
        .fetch_one(self.db.reader())
        .await
        .map_err(database("reading the advisory data's state"))?;
        Ok(AdvisoryData {
            count: parse_size(row.get::<Option<i64>>("count")?.unwrap_or(0))?,
            generation: row.get::<Option<i64>>("generation")?.unwrap_or(0),
            imported_at: row.get("imported_at")?,
            newest_modified_ns: row.get("newest")?,
        })
    }

    async fn set_exemption(
        &self,
        change: &Change,
        exemption: &ExemptionRow,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        query(
            "INSERT INTO vulnerability_exemptions \
             (scope, advisory, reason, author, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, advisory) DO UPDATE \
             SET reason = excluded.reason, author = excluded.author, \
             created_at = excluded.created_at, expires_at = excluded.expires_at",
        )
        .bind(&exemption.scope)
        .bind(&exemption.advisory)
        .bind(&exemption.reason)
        .bind(&exemption.author)
        .bind(exemption.created_at)
        .bind(exemption.expires_at)
        .execute(&mut tx)
        .await
        .map_err(write_error("storing an exemption"))?;
        let detail = serde_json::json!({
            "scope": exemption.scope,
            "advisory": exemption.advisory,
            "expires_at": exemption.expires_at,
        });
        tx.record(exemption_event(
            EventKind::ExemptionSet,
            &exemption.scope,
            detail,
        ))?;
        tx.commit()
            .await
            .map_err(database("committing an exemption"))
    }

    async fn remove_exemption(
        &self,
        change: &Change,
        scope: &str,
        advisory: &str,
    ) -> Result<bool, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        let removed =
            query("DELETE FROM vulnerability_exemptions WHERE scope = $1 AND advisory = $2")
                .bind(scope)
                .bind(advisory)
                .execute(&mut tx)
                .await
                .map_err(database("removing an exemption"))?;
        if removed == 0 {
            return Ok(false);
        }
        tx.record(exemption_event(
            EventKind::ExemptionRemoved,
            scope,
            serde_json::json!({ "scope": scope, "advisory": advisory }),
        ))?;
        tx.commit()
            .await
            .map_err(database("committing an exemption's removal"))?;
        Ok(true)
    }

    async fn list_exemptions(&self, scope: Option<&str>) -> Result<Vec<ExemptionRow>, MetaError> {
        query(
            "SELECT scope, advisory, reason, author, created_at, expires_at \
             FROM vulnerability_exemptions WHERE $1 IS NULL OR scope = $1 \
             ORDER BY scope, advisory",
        )
        .bind(scope)
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing exemptions"))?
        .iter()
        .map(exemption_from_row)
        .collect()
    }

    async fn exemption_page(
        &self,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<ExemptionRow>, MetaError> {
        // A namespace's scopes are `NS` and those from `NS/` up to (not
        // including) `NS0`, `0` being the character after `/`: two key
        // ranges, not a pattern, so `_` and `.` in a name match only
        // themselves and the primary key serves both.
        let (within, beyond) = match namespace {
            Some(namespace) => (Some(format!("{namespace}/")), Some(format!("{namespace}0"))),
            None => (None, None),
        };
        let (after_scope, after_advisory) = after.unzip();
        query(
            "SELECT scope, advisory, reason, author, created_at, expires_at \
             FROM vulnerability_exemptions \
             WHERE ($1 IS NULL OR scope = '*' OR scope = $1 OR (scope >= $2 AND scope < $3)) \
             AND ($4 IS NULL OR scope > $4 OR (scope = $4 AND advisory > $5)) \
             ORDER BY scope, advisory LIMIT $6",
        )
        .bind(namespace)
        .bind(within.as_deref())
        .bind(beyond.as_deref())
        .bind(after_scope)
        .bind(after_advisory)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing a page of exemptions"))?
        .iter()
        .map(exemption_from_row)
        .collect()
    }

    async fn set_policy(&self, change: &Change, policy: &PolicyRow) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        // The namespace row is locked on PostgreSQL so that two changes of
        // one policy take turns and each event says what it replaced.
        let sql = format!(
            "SELECT name FROM namespaces WHERE name = $1{}",
            tx.dialect().for_update()
        );
        query(&sql)
            .bind(&policy.namespace)
            .fetch_optional(&mut tx)
            .await
            .map_err(database("looking up a namespace"))?
            .ok_or(MetaError::NotFound)?;
        let previous = query(
            "SELECT namespace, mode, severity, block_unscanned, attach_sbom, updated_at \
             FROM vulnerability_policies WHERE namespace = $1",
        )
        .bind(&policy.namespace)
        .fetch_optional(&mut tx)
        .await
        .map_err(database("reading a policy"))?
        .as_ref()
        .map(policy_from_row)
        .transpose()?;
        let same = previous.as_ref().is_some_and(|previous| {
            previous.mode == policy.mode
                && previous.severity == policy.severity
                && previous.block_unscanned == policy.block_unscanned
                && previous.attach_sbom == policy.attach_sbom
        });
        if same {
            return Ok(());
        }
        query(
            "INSERT INTO vulnerability_policies \
             (namespace, mode, severity, block_unscanned, attach_sbom, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (namespace) DO UPDATE \
             SET mode = excluded.mode, severity = excluded.severity, \
             block_unscanned = excluded.block_unscanned, attach_sbom = excluded.attach_sbom, \
             updated_at = excluded.updated_at",
        )
        .bind(&policy.namespace)
        .bind(policy.mode.as_str())
        .bind(&policy.severity)
        .bind(policy.block_unscanned)
        .bind(policy.attach_sbom)
        .bind(policy.updated_at)
        .execute(&mut tx)
        .await
        .map_err(write_error("storing a policy"))?;
        tx.record(NewEvent::namespace(
            EventKind::VulnerabilityPolicySet,
            &policy.namespace,
            serde_json::json!({
                "mode": policy.mode.as_str(),
                "severity": policy.severity,
                "block_unscanned": policy.block_unscanned,
                "attach_sbom": policy.attach_sbom,
                "previous": previous.map(|previous| previous.mode.as_str()),
            }),
        ))?;
        tx.commit().await.map_err(database("committing a policy"))
    }

    async fn policy(&self, namespace: &str) -> Result<Option<PolicyRow>, MetaError> {
        query(
            "SELECT namespace, mode, severity, block_unscanned, attach_sbom, updated_at \
             FROM vulnerability_policies WHERE namespace = $1",
        )
        .bind(namespace)
        .fetch_optional(self.db.reader())
        .await
        .map_err(database("reading a policy"))?
        .as_ref()
        .map(policy_from_row)
        .transpose()
    }

    async fn list_policies(&self) -> Result<Vec<PolicyRow>, MetaError> {
        query(
            "SELECT namespace, mode, severity, block_unscanned, attach_sbom, updated_at \
             FROM vulnerability_policies ORDER BY namespace",
        )
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing policies"))?
        .iter()
        .map(policy_from_row)
        .collect()
    }
}

/// The event of an exemption change: about the scope's namespace, or about
/// nothing in particular for the whole registry.
fn exemption_event(kind: EventKind, scope: &str, detail: serde_json::Value) -> NewEvent {
    match crate::advisor::scope_namespace(scope) {
        Some(namespace) => NewEvent::namespace(kind, namespace, detail),
        None => NewEvent::new(kind, detail),
    }
}
