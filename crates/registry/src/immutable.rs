//! Immutable-tag rules: kept and enforced by the metadata store (the tag
//! writes check them in the transaction that moves or deletes the tag);
//! the registry only adds, removes and lists them.

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

    /// The rules of one namespace, or of all.
    pub async fn immutable_rules(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<ImmutableRule>, RegistryError> {
        Ok(self.meta().list_immutable_rules(namespace).await?)
    }
}
