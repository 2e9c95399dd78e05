//! [`NamespaceStore`]: namespaces, the first path component of repository
//! names, and their visibility.

use crate::{MetaError, Timestamp};

/// A namespace: the first path component of repository names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRow {
    pub name: String,
    /// `public` or `private`.
    pub visibility: String,
    pub created_at: Timestamp,
}

/// Namespaces.
#[async_trait::async_trait]
pub trait NamespaceStore: Send + Sync + 'static {
    /// Creates a namespace and, if `owner` is given, makes that user its
    /// owner, in one transaction. `AlreadyExists` if the name is taken,
    /// `NotFound` (creating nothing) if `owner` is not a user.
    async fn create_namespace(
        &self,
        namespace: &NamespaceRow,
        owner: Option<&str>,
    ) -> Result<(), MetaError>;

    async fn get_namespace(&self, name: &str) -> Result<Option<NamespaceRow>, MetaError>;

    /// `NotFound` if no such namespace.
    async fn set_visibility(&self, name: &str, visibility: &str) -> Result<(), MetaError>;

    /// Every namespace, by name.
    async fn list_namespaces(&self) -> Result<Vec<NamespaceRow>, MetaError>;
}
