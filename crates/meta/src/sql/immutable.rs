//! [`ImmutabilityStore`] in SQL, and the check the tag writes share.

use berth_oci::{RepoName, Tag, TagPattern};

use super::db::{database, query, write_error, Row, Tx};
use super::events::NewEvent;
use super::{parse_repository, parse_tag, SqlMetaStore};
use crate::{Change, EventKind, ImmutabilityStore, ImmutableRule, MetaError};

fn rule_from_row(row: &Row) -> Result<ImmutableRule, MetaError> {
    let repository: String = row.get("repository")?;
    let pattern: String = row.get("pattern")?;
    Ok(ImmutableRule {
        namespace: row.get("namespace")?,
        repository: if repository.is_empty() {
            None
        } else {
            Some(parse_repository(&repository)?)
        },
        pattern: TagPattern::parse(&pattern)
            .map_err(|e| MetaError::Corrupt(format!("an immutable rule: {e}")))?,
        author: row.get("author")?,
        created_at: row.get("created_at")?,
    })
}

fn rule_detail(rule: &ImmutableRule) -> serde_json::Value {
    serde_json::json!({ "scope": rule.scope(), "pattern": rule.pattern.as_str() })
}

/// The first of `tags` (in their order) that a rule of `repository` makes
/// immutable, with that rule (the namespace's rules before the
/// repository's, each by pattern): what refuses a write that would move or
/// delete it. Reads the rules in the caller's transaction, so the answer
/// and the write it guards are one decision.
pub(crate) async fn immutable_violation(
    tx: &mut Tx,
    repository: &RepoName,
    tags: &[Tag],
) -> Result<Option<MetaError>, MetaError> {
    if tags.is_empty() {
        return Ok(None);
    }
    let rules = query(
        "SELECT namespace, repository, pattern, author, created_at FROM immutable_rules \
         WHERE namespace = $1 AND (repository = '' OR repository = $2) \
         ORDER BY repository, pattern",
    )
    .bind(repository.namespace())
    .bind(repository.as_str())
    .fetch_all(tx)
    .await
    .map_err(database("reading immutable-tag rules"))?
    .iter()
    .map(rule_from_row)
    .collect::<Result<Vec<_>, _>>()?;
    for tag in tags {
        if let Some(rule) = rules.iter().find(|rule| rule.pattern.matches(tag.as_str())) {
            return Ok(Some(MetaError::ImmutableTag {
                tag: tag.clone(),
                rule: Box::new(rule.clone()),
            }));
        }
    }
    Ok(None)
}

/// Parses tag names read from the database.
pub(crate) fn parse_tags(names: &[String]) -> Result<Vec<Tag>, MetaError> {
    names.iter().map(|name| parse_tag(name)).collect()
}

#[async_trait::async_trait]
impl<B: 'static> ImmutabilityStore for SqlMetaStore<B> {
    async fn add_immutable_rule(
        &self,
        change: &Change,
        rule: &ImmutableRule,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        query(
            "INSERT INTO immutable_rules (namespace, repository, pattern, author, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&rule.namespace)
        .bind(rule.repository.as_ref().map_or("", RepoName::as_str))
        .bind(rule.pattern.as_str())
        .bind(&rule.author)
        .bind(rule.created_at)
        .execute(&mut tx)
        .await
        .map_err(write_error("adding an immutable-tag rule"))?;
        tx.record(NewEvent::namespace(
            EventKind::ImmutableRuleAdded,
            &rule.namespace,
            rule_detail(rule),
        ))?;
        tx.commit()
            .await
            .map_err(database("committing an immutable-tag rule"))
    }

    async fn remove_immutable_rule(
        &self,
        change: &Change,
        namespace: &str,
        repository: Option<&RepoName>,
        pattern: &TagPattern,
    ) -> Result<Option<ImmutableRule>, MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        let removed = query(
            "DELETE FROM immutable_rules \
             WHERE namespace = $1 AND repository = $2 AND pattern = $3 \
             RETURNING namespace, repository, pattern, author, created_at",
        )
        .bind(namespace)
        .bind(repository.map_or("", RepoName::as_str))
        .bind(pattern.as_str())
        .fetch_optional(&mut tx)
        .await
        .map_err(database("removing an immutable-tag rule"))?
        .as_ref()
        .map(rule_from_row)
        .transpose()?;
        let Some(rule) = removed else {
            return Ok(None);
        };
        tx.record(NewEvent::namespace(
            EventKind::ImmutableRuleRemoved,
            &rule.namespace,
            rule_detail(&rule),
        ))?;
        tx.commit()
            .await
            .map_err(database("committing an immutable-tag rule's removal"))?;
        Ok(Some(rule))
    }

    async fn list_immutable_rules(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<ImmutableRule>, MetaError> {
        query(
            "SELECT namespace, repository, pattern, author, created_at FROM immutable_rules \
             WHERE $1 IS NULL OR namespace = $1 ORDER BY namespace, repository, pattern",
        )
        .bind(namespace)
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing immutable-tag rules"))?
        .iter()
        .map(rule_from_row)
        .collect()
    }
}
