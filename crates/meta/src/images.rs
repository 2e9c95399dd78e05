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

/// How a repository's tags are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagSort {
    /// By name, ascending (byte order).
    Name,
    /// The tag pushed or moved most recently first (then name, descending).
    Newest,
    /// The tag pushed or moved longest ago first (then name, ascending).
    Oldest,
    /// The largest image first (then its digest, then the tag's name,
    /// descending).
    Size,
}

/// Where a page of tags starts: strictly after this tag in the listing's
/// order. `key` is its sort value: 0 by name, the tag's `updated_at` by
/// age, its image's size by size; `digest` is its image's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagCursor {
    pub key: i64,
    pub digest: Digest,
    pub name: Tag,
}

/// Which tags of a repository a listing shows, and how.
#[derive(Clone, Debug)]
pub struct TagQuery {
    /// Only tags whose name contains this text.
    pub contains: Option<String>,
    pub sort: TagSort,
    pub after: Option<TagCursor>,
    pub limit: usize,
}

/// A tag and the image it names, as a tag listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaggedImage {
    pub tag: Tag,
    /// When the tag was created or last moved.
    pub updated_at: Timestamp,
    /// The image; its `tags` are left empty (the listing is of tags).
    pub image: ImageSummary,
}

impl TaggedImage {
    /// The cursor of the page that starts after this tag under `sort`.
    pub fn cursor(&self, sort: TagSort) -> TagCursor {
        TagCursor {
            key: match sort {
                TagSort::Name => 0,
                TagSort::Newest | TagSort::Oldest => self.updated_at,
                TagSort::Size => i64::try_from(self.image.size).unwrap_or(i64::MAX),
            },
            digest: self.image.digest.clone(),
            name: self.tag.clone(),
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

    /// Lists the tags of `repository` with the images they name, as
    /// `query` says, strictly after its cursor, at most its limit. Returns
    /// `None` if the repository does not exist. Every sort reads one index
    /// range in order (the tags' primary key by name, `tags_by_update` by
    /// age, `manifests_by_size` by size), so a page costs its rows however
    /// many tags the repository has; a `contains` filter reads on past the
    /// tags that do not match.
    async fn list_tagged_images(
        &self,
        repository: &RepoName,
        query: &TagQuery,
    ) -> Result<Option<Vec<TaggedImage>>, MetaError>;

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
