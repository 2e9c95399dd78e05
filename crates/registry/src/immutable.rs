//! Immutable-tag rules: kept and enforced by the metadata store (the tag
//! writes check them in the transaction that moves or deletes the tag);
//! the registry adds, removes and lists them, and checks a whole
//! repository before deleting it, so that a deletion the store would stop
//! midway is refused before it starts.

use berth_meta::{Actor, ImmutableRule};
use berth_oci::{RepoName, TagPattern};

use crate::{Registry, RegistryError};

impl Registry {
    /// Adds a rule: `NamespaceUnknown` when its namespace does not exist,
    /// `RuleExists` when its scope has the same pattern already.
    pub async fn add_immutable_rule(
        &self,
        actor: &Actor,
        rule: &ImmutableRule,
    ) -> Result<(), RegistryError> {
        match self
            .meta()
            .add_immutable_rule(&self.change(actor), rule)
            .await
        {
            Err(berth_meta::MetaError::NotFound) => Err(RegistryError::NamespaceUnknown),
            Err(berth_meta::MetaError::AlreadyExists) => Err(RegistryError::RuleExists),
            other => Ok(other?),
        }
    }

    /// Removes the rule of `pattern` in `namespace` (or only in
    /// `repository`); the rule removed, if there was one.
    pub async fn remove_immutable_rule(
        &self,
        actor: &Actor,
        namespace: &str,
        repository: Option<&RepoName>,
        pattern: &TagPattern,
    ) -> Result<Option<ImmutableRule>, RegistryError> {
        Ok(self
            .meta()
            .remove_immutable_rule(&self.change(actor), namespace, repository, pattern)
            .await?)
    }

    /// Refuses (`ImmutableTag`) deleting `repositories` of `namespace` when
    /// a tag in one of them is covered by an immutable-tag rule; checked
    /// before a repository or namespace deletion starts, so it does not
    /// stop midway (the deletion's own steps check again, in their
    /// transactions, for tags created meanwhile). Costs one read when the
    /// namespace has no rules; otherwise reads the covered repositories'
    /// tags a page at a time.
    pub(crate) async fn refuse_deleting_immutable_tags(
        &self,
        namespace: &str,
        repositories: &[RepoName],
    ) -> Result<(), RegistryError> {
        const PAGE: usize = 1000;
        let rules = self.meta().list_immutable_rules(Some(namespace)).await?;
        if rules.is_empty() {
            return Ok(());
        }
        for repository in repositories {
            let applicable: Vec<&ImmutableRule> = rules
                .iter()
                .filter(|rule| rule.repository.as_ref().is_none_or(|r| r == repository))
                .collect();
            if applicable.is_empty() {
                continue;
            }
            let mut after: Option<String> = None;
            // Bounded by the repository's tags; each page moves strictly on.
            loop {
                let Some(tags) = self
                    .meta()
                    .list_tags(repository, after.as_deref(), PAGE)
                    .await?
                else {
                    break;
                };
                for tag in &tags {
                    if let Some(rule) = applicable.iter().find(|r| r.pattern.matches(tag.as_str()))
                    {
                        return Err(RegistryError::ImmutableTag {
                            tag: tag.clone(),
                            rule: rule.to_string(),
                        });
                    }
                }
                if tags.len() < PAGE {
                    break;
                }
                after = tags.last().map(|tag| tag.as_str().to_string());
            }
        }
        Ok(())
    }

    /// The rules of one namespace, or of all.
    pub async fn immutable_rules(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<ImmutableRule>, RegistryError> {
        Ok(self.meta().list_immutable_rules(namespace).await?)
    }
}
