//! [`RepositoryStore`]: the repositories themselves.

use berth_oci::RepoName;

use crate::MetaError;

/// Repositories. A repository exists once anything (a blob link, a
/// manifest, an upload) was created in it; writes create it implicitly.
#[async_trait::async_trait]
pub trait RepositoryStore: Send + Sync + 'static {
    /// Lists repository names in byte order, strictly after `after`, at most
    /// `limit`.
    async fn list_repositories(
        &self,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, MetaError>;
}
