//! [`RepositoryStore`]: the repositories themselves.

use berth_oci::{Digest, RepoName};

use crate::uploads::UploadRecord;
use crate::{Change, MetaError};

/// What one step of a repository deletion did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepositoryDeletion {
    /// The repository does not exist (any more).
    Missing,
    /// Some of its contents were removed; the deletion goes on with the next
    /// step.
    Progress {
        /// Manifests deleted, with their tags and references.
        manifests: Vec<Digest>,
        /// Blob links removed.
        links: Vec<Digest>,
    },
    /// The repository, empty by then, was deleted with its upload sessions,
    /// whose stored data the caller removes.
    Deleted { uploads: Vec<UploadRecord> },
}

/// Repositories. A repository exists once anything (a blob link, a
/// manifest, an upload) was created in it: writes create it implicitly,
/// together with its namespace (see [`crate::namespaces`]), and then write
/// `repository.created` (and `namespace.created`) events too.
#[async_trait::async_trait]
pub trait RepositoryStore: Send + Sync + 'static {
    /// Lists repository names in byte order, strictly after `after`, at most
    /// `limit`.
    async fn list_repositories(
        &self,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, MetaError>;

    /// Lists the repositories of one namespace, as [`RepositoryStore::list_repositories`].
    async fn list_namespace_repositories(
        &self,
        namespace: &str,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, MetaError>;

    /// Takes one step, one transaction, of deleting a repository: first its
    /// manifests (with their tags and references; those no index lists
    /// first, so an index always goes before what it lists), then its blob
    /// links, at most `limit` of either per step, and finally, once it is
    /// empty, the repository itself with its upload sessions. Whatever loses
    /// its last reference becomes a garbage-collection candidate as of the
    /// change. Events: as [`ManifestStore::delete_manifest`](crate::ManifestStore::delete_manifest)
    /// and [`BlobLinkStore::unlink_blob`](crate::BlobLinkStore::unlink_blob)
    /// for what each step removes, and `repository.deleted` at the end.
    /// A step that would delete a tag an immutable-tag rule covers fails
    /// with [`MetaError::ImmutableTag`] and deletes nothing.
    /// A deletion is repeated until it answers `Deleted` (or `Missing`);
    /// writes made meanwhile are deleted by later steps. Steps are bounded so
    /// that no transaction, and no set of locks, grows with the repository.
    async fn delete_repository_step(
        &self,
        change: &Change,
        repository: &RepoName,
        limit: usize,
    ) -> Result<RepositoryDeletion, MetaError>;
}
