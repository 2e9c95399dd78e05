//! [`ImmutabilityStore`]: immutable-tag rules.

use berth_oci::{RepoName, TagPattern};

use crate::{Change, MetaError, Timestamp};

/// A rule making tags immutable: in every repository of `namespace`, or
/// only in `repository`, a tag whose name `pattern` matches may be created
/// but never moved to another manifest nor deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImmutableRule {
    pub namespace: String,
    /// `None` for every repository of the namespace.
    pub repository: Option<RepoName>,
    pub pattern: TagPattern,
    /// Who added it (a user name, or how the actor is shown).
    pub author: String,
    pub created_at: Timestamp,
}

impl ImmutableRule {
    /// Where the rule applies, as written: `NS` or `NS/REPO`.
    pub fn scope(&self) -> &str {
        match &self.repository {
            Some(repository) => repository.as_str(),
            None => &self.namespace,
        }
    }
}

impl std::fmt::Display for ImmutableRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} --tags {}", self.scope(), self.pattern)
    }
}

/// Immutable-tag rules, and the one place they are enforced: the
/// [`crate::ManifestStore`] writes that move or delete a tag check them in
/// their own transaction, after locking the tag, so two pushes racing
/// through two nodes cannot both see the tag free and the second move it.
/// Those writes fail with [`MetaError::ImmutableTag`], changing nothing,
/// when `put_manifest` would point an existing tag a rule matches at
/// another manifest (pointing it at the manifest it names already is a
/// no-op and succeeds), or `delete_tag`/`delete_manifest` would remove such
/// a tag, as would a [`crate::RepositoryStore::delete_repository_step`]
/// that takes such a tag with its manifest. Creating a tag is never
/// refused. The rules are read only when an
/// existing tag would move or go, so a push of new tags costs nothing.
#[async_trait::async_trait]
pub trait ImmutabilityStore: Send + Sync + 'static {
    /// Adds a rule. Fails with `NotFound` when the namespace does not
    /// exist, `AlreadyExists` when the same scope has the same pattern
    /// already. Event: `immutable_rule.added` (`detail`: `scope`, `pattern`).
    async fn add_immutable_rule(
        &self,
        change: &Change,
        rule: &ImmutableRule,
    ) -> Result<(), MetaError>;

    /// Removes the rule of `pattern` in `namespace` (every repository when
    /// `repository` is `None`); returns it, or `None` when there was none.
    /// Event: `immutable_rule.removed` (`detail`: `scope`, `pattern`).
    async fn remove_immutable_rule(
        &self,
        change: &Change,
        namespace: &str,
        repository: Option<&RepoName>,
        pattern: &TagPattern,
    ) -> Result<Option<ImmutableRule>, MetaError>;

    /// The rules, of one namespace or of all, by namespace, then
    /// repository (namespace-wide rules first), then pattern.
    async fn list_immutable_rules(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<ImmutableRule>, MetaError>;
}
