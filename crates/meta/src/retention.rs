//! [`RetentionStore`]: retention policies, and the images a retention pass
//! weighs.

use berth_oci::{Digest, RepoName, Tag, TagRegex};

use crate::{Change, MetaError, Timestamp};

/// What a retention policy does with images no tag points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UntaggedImages {
    /// Untagged images stay (only the tagged ones beyond the newest N go).
    Keep,
    /// Untagged images go (once older than the minimum age).
    Delete,
}

impl UntaggedImages {
    pub fn as_str(self) -> &'static str {
        match self {
            UntaggedImages::Keep => "keep",
            UntaggedImages::Delete => "delete",
        }
    }

    pub fn parse(text: &str) -> Option<UntaggedImages> {
        match text {
            "keep" => Some(UntaggedImages::Keep),
            "delete" => Some(UntaggedImages::Delete),
            _ => None,
        }
    }
}

/// A namespace's retention policy: in each of its repositories, the newest
/// `keep` tagged images stay, untagged images stay or go as `untagged`
/// says, no image younger than `min_age` seconds goes, and an image with a
/// tag `keep_tags` matches always stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub namespace: String,
    pub keep: u32,
    pub untagged: UntaggedImages,
    /// Seconds.
    pub min_age: u64,
    pub keep_tags: Option<TagRegex>,
    /// Who set it last (a user name, or how the actor is shown).
    pub author: String,
    pub updated_at: Timestamp,
}

/// A live manifest of a namespace as a retention pass sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionCandidate {
    pub repository: RepoName,
    pub digest: Digest,
    pub media_type: String,
    /// The manifest it refers to, for a referrer.
    pub subject: Option<Digest>,
    /// When it was first stored in its repository.
    pub pushed_at: Timestamp,
    /// What `ImageStore::set_image_facts` stored for it, if anything yet.
    pub facts: Option<String>,
    /// The tags pointing at it, in byte order.
    pub tags: Vec<Tag>,
    /// The manifests it lists (an index's children), by digest.
    pub children: Vec<Digest>,
    /// Whether a live index of its repository lists it.
    pub listed: bool,
}

/// Retention policies, one per namespace at most, and the read a retention
/// pass makes. The store keeps policies; the registry evaluates them and
/// deletes through the trash (`TrashStore::trash_manifest`), whose
/// transaction re-checks everything that may have changed since the read.
#[async_trait::async_trait]
pub trait RetentionStore: Send + Sync + 'static {
    /// Sets the namespace's policy, replacing any. Fails with `NotFound`
    /// when the namespace does not exist. Event: `retention_policy.set`.
    async fn set_retention_policy(
        &self,
        change: &Change,
        policy: &RetentionPolicy,
    ) -> Result<(), MetaError>;

    /// Removes the namespace's policy; returns it, or `None` when there was
    /// none (and records nothing). Event: `retention_policy.removed`.
    async fn remove_retention_policy(
        &self,
        change: &Change,
        namespace: &str,
    ) -> Result<Option<RetentionPolicy>, MetaError>;

    /// The policies, of one namespace or of all, by namespace.
    async fn list_retention_policies(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<RetentionPolicy>, MetaError>;

    /// Every live (not trashed) manifest of the namespace's repositories,
    /// by repository then digest, with its tags and children. Three index
    /// range reads whatever the namespace holds (manifests, tags, index
    /// children), never one per image; they are not one snapshot, so a
    /// caller acting on the answer relies on the write re-checking.
    async fn retention_candidates(
        &self,
        namespace: &str,
    ) -> Result<Vec<RetentionCandidate>, MetaError>;
}
