//! [`NamespaceStore`]: namespaces, the first path component of repository
//! names, with their visibility.
//!
//! Every repository belongs to the namespace its name starts with: a write
//! that creates a repository creates its namespace too if needed (private,
//! without members), and a namespace cannot be deleted while it holds a
//! repository. Access control reads a namespace's existence and visibility
//! from here and keeps only its members.

use crate::{Change, MetaError, Timestamp};

/// Who may see a namespace without being a member. What that means for a
/// request is access control's business; the registry keeps the value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Visibility {
    Public,
    /// The default, for namespaces created implicitly too: publishing must
    /// be a decision, never an accident.
    #[default]
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }

    /// Parses the stored text; `None` for anything else.
    pub fn parse(text: &str) -> Option<Visibility> {
        match text {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }
}

/// A namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub visibility: Visibility,
    pub created_at: Timestamp,
}

/// What a namespace holds, counted when asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NamespaceUsage {
    pub repositories: u64,
    /// Manifests (images and indexes, each stored manifest of each
    /// repository once).
    pub images: u64,
    pub tags: u64,
    /// Bytes the namespace holds, as its storage quota counts them: the
    /// blobs its repositories link or their manifests reference and the
    /// manifests themselves, each once however many of its repositories
    /// hold it (trashed images until the trash expires them).
    pub storage_bytes: u64,
    /// Manifest pulls counted in its repositories, as their pull
    /// statistics add them up (kept per repository, so this reads its
    /// repositories, not its images).
    pub pulls: u64,
}

/// Which namespaces a page of [`NamespaceStore::namespace_page`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceReach<'a> {
    /// Every namespace (what an administrator, or a robot whose scopes are
    /// checked by the caller, may list).
    All,
    /// The public namespaces and those this user is a member of; `None`
    /// (anonymous): the public ones.
    PublicOrMemberOf(Option<&'a str>),
}

/// A namespace in a page, with the role the asking user holds in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceEntry {
    pub namespace: Namespace,
    /// The user's role by name (as [`MemberStore`](crate::auth::MemberStore)
    /// stores it), if they are a member.
    pub role: Option<String>,
}

/// Namespaces.
#[async_trait::async_trait]
pub trait NamespaceStore: Send + Sync + 'static {
    /// Creates a namespace and, if `owner` is given, makes that user its
    /// owner, in one transaction (`namespace.created`, `member.set`).
    /// `AlreadyExists` if the name is taken, `NotFound` (creating nothing)
    /// if `owner` is not a user.
    async fn create_namespace(
        &self,
        change: &Change,
        namespace: &Namespace,
        owner: Option<&str>,
    ) -> Result<(), MetaError>;

    async fn get_namespace(&self, name: &str) -> Result<Option<Namespace>, MetaError>;

    /// Lists namespaces by name, strictly after `after`, at most `limit`.
    async fn list_namespaces(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Namespace>, MetaError>;

    /// The namespace `name` with `user`'s role in it (`None` for anonymous
    /// and robots), in one statement: what access control reads on every
    /// request. `None` if no such namespace.
    async fn namespace_with_role(
        &self,
        name: &str,
        user: Option<&str>,
    ) -> Result<Option<NamespaceEntry>, MetaError>;

    /// At most `limit` namespaces that `reach` covers, by name (byte order),
    /// strictly after `after`, each with `user`'s role in it (`None` for
    /// anonymous and robots). Reads the page through indexes: the name for
    /// [`NamespaceReach::All`], and for [`NamespaceReach::PublicOrMemberOf`]
    /// the public namespaces by name and the user's memberships by name,
    /// `limit` of each at most, however many namespaces there are.
    async fn namespace_page(
        &self,
        reach: NamespaceReach<'_>,
        user: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<NamespaceEntry>, MetaError>;

    /// `NotFound` if no such namespace. Writes `namespace.updated` when the
    /// visibility changes.
    async fn set_visibility(
        &self,
        change: &Change,
        name: &str,
        visibility: Visibility,
    ) -> Result<(), MetaError>;

    /// Deletes an empty namespace with its memberships. `NotFound` if no
    /// such namespace, `NamespaceNotEmpty` (deleting nothing) while it holds
    /// a repository: a repository's contents go first
    /// ([`RepositoryStore::delete_repository_step`](crate::RepositoryStore::delete_repository_step)).
    /// Writes `namespace.deleted`.
    async fn delete_namespace(&self, change: &Change, name: &str) -> Result<(), MetaError>;

    /// Counts what the namespace holds, from one snapshot; `None` if no
    /// such namespace. Costs in proportion to the namespace's size.
    async fn namespace_usage(&self, name: &str) -> Result<Option<NamespaceUsage>, MetaError>;

    /// [`NamespaceStore::namespace_usage`] of each of `names` that exists,
    /// by name, from one snapshot in one statement: what a listing of
    /// namespaces shows, without a query per namespace.
    async fn namespaces_usage(
        &self,
        names: &[&str],
    ) -> Result<Vec<(String, NamespaceUsage)>, MetaError>;
}
