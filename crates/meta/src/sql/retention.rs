//! [`RetentionStore`] in SQL.

use std::collections::HashMap;

use berth_oci::TagRegex;

use super::db::{database, query, write_error, Row};
use super::events::NewEvent;
use super::{parse_digest, parse_repository, parse_tag, SqlMetaStore};
use crate::{
    Change, EventKind, MetaError, RetentionCandidate, RetentionPolicy, RetentionStore,
    UntaggedImages,
};

const POLICY_COLUMNS: &str =
    "namespace, keep_images, untagged, min_age, keep_tags, author, updated_at";

fn policy_from_row(row: &Row) -> Result<RetentionPolicy, MetaError> {
    let corrupt = |what: &str| MetaError::Corrupt(format!("a retention policy's {what}"));
    let untagged: String = row.get("untagged")?;
    let keep_tags: Option<String> = row.get("keep_tags")?;
    Ok(RetentionPolicy {
        namespace: row.get("namespace")?,
        keep: u32::try_from(row.get::<i64>("keep_images")?).map_err(|_| corrupt("count"))?,
        untagged: UntaggedImages::parse(&untagged).ok_or_else(|| corrupt("untagged rule"))?,
        min_age: u64::try_from(row.get::<i64>("min_age")?).map_err(|_| corrupt("minimum age"))?,
        keep_tags: keep_tags
            .map(|text| TagRegex::parse(&text).map_err(|e| MetaError::Corrupt(e.to_string())))
            .transpose()?,
        author: row.get("author")?,
        updated_at: row.get("updated_at")?,
    })
}

fn policy_detail(policy: &RetentionPolicy) -> serde_json::Value {
    serde_json::json!({
        "keep": policy.keep,
        "untagged": policy.untagged.as_str(),
        "min_age": policy.min_age,
        "keep_tags": policy.keep_tags.as_ref().map(TagRegex::as_str),
    })
}

#[async_trait::async_trait]
impl<B: 'static> RetentionStore for SqlMetaStore<B> {
    async fn set_retention_policy(
        &self,
        change: &Change,
        policy: &RetentionPolicy,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        query(
            "INSERT INTO retention_policies \
             (namespace, keep_images, untagged, min_age, keep_tags, author, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (namespace) DO UPDATE SET keep_images = excluded.keep_images, \
             untagged = excluded.untagged, min_age = excluded.min_age, \
             keep_tags = excluded.keep_tags, author = excluded.author, \
             updated_at = excluded.updated_at",
        )
        .bind(&policy.namespace)
        .bind(i64::from(policy.keep))
        .bind(policy.untagged.as_str())
        .bind(i64::try_from(policy.min_age).unwrap_or(i64::MAX))
        .bind(policy.keep_tags.as_ref().map(TagRegex::as_str))
        .bind(&policy.author)
        .bind(policy.updated_at)
        .execute(&mut tx)
        .await
        .map_err(write_error("setting a retention policy"))?;
        tx.record(NewEvent::namespace(
            EventKind::RetentionPolicySet,
            &policy.namespace,
            policy_detail(policy),
        ))?;
        tx.commit()
            .await
            .map_err(database("committing a retention policy"))
    }

    async fn remove_retention_policy(
        &self,
        change: &Change,
        namespace: &str,
    ) -> Result<Option<RetentionPolicy>, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        let sql = format!(
            "DELETE FROM retention_policies WHERE namespace = $1 RETURNING {POLICY_COLUMNS}"
        );
        let removed = query(&sql)
            .bind(namespace)
            .fetch_optional(&mut tx)
            .await
            .map_err(database("removing a retention policy"))?
            .as_ref()
            .map(policy_from_row)
            .transpose()?;
        let Some(policy) = removed else {
            return Ok(None);
        };
        tx.record(NewEvent::namespace(
            EventKind::RetentionPolicyRemoved,
            &policy.namespace,
            policy_detail(&policy),
        ))?;
        tx.commit()
            .await
            .map_err(database("committing a retention policy's removal"))?;
        Ok(Some(policy))
    }

    async fn list_retention_policies(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<RetentionPolicy>, MetaError> {
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM retention_policies \
             WHERE $1 IS NULL OR namespace = $1 ORDER BY namespace"
        );
        query(&sql)
            .bind(namespace)
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing retention policies"))?
            .iter()
            .map(policy_from_row)
            .collect()
    }

    async fn retention_candidates(
        &self,
        namespace: &str,
    ) -> Result<Vec<RetentionCandidate>, MetaError> {
        // Each read is one range of `repositories_by_namespace` joined to
        // the rows of those repositories.
        let manifests = query(
            "SELECT r.id, r.name, m.digest, m.media_type, m.subject, m.created_at, m.facts \
             FROM repositories r JOIN manifests m ON m.repository_id = r.id \
             WHERE r.namespace = $1 AND m.trashed_at IS NULL ORDER BY r.name, m.digest",
        )
        .bind(namespace)
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing a namespace's manifests"))?;
        let mut candidates = Vec::with_capacity(manifests.len());
        let mut by_key: HashMap<(i64, String), usize> = HashMap::with_capacity(manifests.len());
        for row in &manifests {
            let id: i64 = row.get("id")?;
            let digest: String = row.get("digest")?;
            let subject: Option<String> = row.get("subject")?;
            candidates.push(RetentionCandidate {
                repository: parse_repository(&row.get::<String>("name")?)?,
                digest: parse_digest(&digest)?,
                media_type: row.get("media_type")?,
                subject: subject.as_deref().map(parse_digest).transpose()?,
                pushed_at: row.get("created_at")?,
                facts: row.get("facts")?,
                tags: Vec::new(),
                children: Vec::new(),
                listed: false,
            });
            by_key.insert((id, digest), candidates.len() - 1);
        }
        let tags = query(
            "SELECT t.repository_id, t.manifest_digest, t.name FROM repositories r \
             JOIN tags t ON t.repository_id = r.id WHERE r.namespace = $1",
        )
        .bind(namespace)
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing a namespace's tags"))?;
        for row in &tags {
            let key = (row.get("repository_id")?, row.get("manifest_digest")?);
            if let Some(&at) = by_key.get(&key) {
                candidates[at]
                    .tags
                    .push(parse_tag(&row.get::<String>("name")?)?);
            }
        }
        let children = query(
            "SELECT c.repository_id, c.parent_digest, c.child_digest FROM repositories r \
             JOIN manifest_children c ON c.repository_id = r.id \
             JOIN manifests p ON p.repository_id = c.repository_id AND p.digest = c.parent_digest \
             WHERE r.namespace = $1 AND p.trashed_at IS NULL",
        )
        .bind(namespace)
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing a namespace's index children"))?;
        for row in &children {
            let id: i64 = row.get("repository_id")?;
            let parent: String = row.get("parent_digest")?;
            let child: String = row.get("child_digest")?;
            if let Some(&at) = by_key.get(&(id, child.clone())) {
                candidates[at].listed = true;
            }
            if let Some(&at) = by_key.get(&(id, parent)) {
                candidates[at].children.push(parse_digest(&child)?);
            }
        }
        for candidate in &mut candidates {
            candidate
                .tags
                .sort_by(|a, b| a.as_str().as_bytes().cmp(b.as_str().as_bytes()));
            candidate.children.sort();
        }
        Ok(candidates)
    }
}
