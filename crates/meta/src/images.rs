//! [`ImageStore`]: manifests seen as images, for the management API's
//! listings and inspection.

use berth_oci::{Digest, RepoName, Tag};

use crate::{MetaError, Timestamp};

/// Which images a listing shows, by whether a tag points at them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaggedFilter {
    /// Only images at least one tag points at.
    Tagged,
    /// Only images no tag points at (an index's children, superseded pushes,
    /// referrers).
    Untagged,
    /// Every manifest of the repository.
    Any,
}

/// Where a page of images starts: strictly after this image in the
/// listing's order (newest push first, then digest descending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageCursor {
    pub pushed_at: Timestamp,
    pub digest: Digest,
}

/// A manifest of a repository as an image listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// The tags pointing at it, in byte order.
    pub tags: Vec<Tag>,
    /// Its config and distinct layers; for an index, the distinct blobs of
    /// all its children.
    pub size: u64,
    /// The size of the manifest's own bytes.
    pub manifest_size: u64,
    /// When it was first stored in this repository.
    pub pushed_at: Timestamp,
    /// What [`ImageStore::set_image_facts`] stored for it, as given.
    pub facts: Option<String>,
    /// How often it was pulled (fetched by GET) in this repository, as of
    /// the nodes' last flush (see [`crate::PullStatsStore`]).
    pub pulls: u64,
    /// When it was last pulled; `None` if never.
    pub last_pulled_at: Option<Timestamp>,
}

/// How a repository listing is ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepositorySort {
    /// By name, ascending.
    Name,
    /// Most recent push first (then name, descending).
    LastPush,
    /// Largest first (then name, descending).
    Size,
    /// Most pulled first (then name, descending).
    Pulls,
}

/// Where a page of repositories starts: strictly after this repository in
/// the listing's order. `key` is its sort value (0 when sorting by name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryCursor {
    pub key: i64,
    pub name: RepoName,
}

/// Which repositories a listing shows, and how.
#[derive(Clone, Debug)]
pub struct RepositoryQuery {
    /// Only repositories of these namespaces; `None` for every namespace.
    pub namespaces: Option<Vec<String>>,
    /// Only names containing this text.
    pub contains: Option<String>,
    pub sort: RepositorySort,
    pub after: Option<RepositoryCursor>,
    pub limit: usize,
}

/// A repository as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositorySummary {
    pub name: RepoName,
    pub tags: u64,
    /// Manifests stored (images, indexes and their children, artifacts).
    pub images: u64,
    /// Bytes of the blobs linked to it, each once.
    pub size: u64,
    /// When a manifest was last stored or a tag last moved; `None` when
    /// nothing was ever pushed.
    pub last_push: Option<Timestamp>,
    /// How often its images were pulled (see [`crate::PullStatsStore`]).
    pub pulls: u64,
    /// When one of them was last pulled; `None` if never.
    pub last_pull: Option<Timestamp>,
}

impl RepositorySummary {
    /// The value the listing sorts by under `sort`, as its cursor keeps it.
    pub fn sort_key(&self, sort: RepositorySort) -> i64 {
        match sort {
            RepositorySort::Name => 0,
            RepositorySort::LastPush => self.last_push.unwrap_or(0),
            RepositorySort::Size => i64::try_from(self.size).unwrap_or(i64::MAX),
            RepositorySort::Pulls => i64::try_from(self.pulls).unwrap_or(i64::MAX),
        }
    }
}

/// Images: manifests with their tags, sizes and the facts of their image
/// configuration.
///
/// Sizes are computed when a manifest is stored (from the stored blobs'
/// sizes), so listings read neither the blob store nor every layer; the
/// facts are written once by the caller (which reads the config blob) and
/// read back with every listing.
#[async_trait::async_trait]
pub trait ImageStore: Send + Sync + 'static {
    /// Lists the images of `repository` chosen by `filter`, newest push
    /// first (then by digest, descending), strictly after `after`, at most
    /// `limit`. Returns `None` if the repository does not exist. A page
    /// costs one index range plus one lookup of its tags.
    async fn list_images(
        &self,
        repository: &RepoName,
        filter: TaggedFilter,
        after: Option<&ImageCursor>,
        limit: usize,
    ) -> Result<Option<Vec<ImageSummary>>, MetaError>;

    /// One image by digest, or `None` if the repository does not hold it.
    async fn image(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ImageSummary>, MetaError>;

    /// Lists repositories with their tag and image counts, size and last
    /// push, as `query` says.
    async fn list_repository_summaries(
        &self,
        query: &RepositoryQuery,
    ) -> Result<Vec<RepositorySummary>, MetaError>;

    /// Stores the facts of an image's configuration (opaque text, JSON by
    /// convention), once: an image that has facts keeps them. Returns
    /// whether they were stored. Records no event: facts are derived from
    /// content that never changes, not a change anyone made.
    async fn set_image_facts(
        &self,
        repository: &RepoName,
        digest: &Digest,
        facts: &str,
    ) -> Result<bool, MetaError>;
}
