//! [`TrashStore`]: deleted images kept restorable for a while.

use berth_oci::{Digest, RepoName, Tag};

use crate::{Change, DeletedManifest, MetaError, Timestamp};

/// One deletion waiting in the trash: the manifest deleted, and what went
/// with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrashEntry {
    pub repository: RepoName,
    /// The manifest whose deletion made the entry.
    pub digest: Digest,
    pub trashed_at: Timestamp,
    /// Who deleted it, as the actor is shown (`user:alice`, `system:retention`).
    pub trashed_by: String,
    /// The tags the entry's manifests had, by name; a restore gives them
    /// back where still free.
    pub tags: Vec<Tag>,
    /// Referrers deleted with it, by digest.
    pub referrers: Vec<Digest>,
}

/// Where a page of the trash ends: the next page starts strictly after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrashCursor {
    pub trashed_at: Timestamp,
    pub repository: RepoName,
    pub digest: Digest,
}

impl TrashEntry {
    /// The cursor that continues a listing after this entry.
    pub fn cursor(&self) -> TrashCursor {
        TrashCursor {
            trashed_at: self.trashed_at,
            repository: self.repository.clone(),
            digest: self.digest.clone(),
        }
    }
}

/// A tag a restore could not give back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagConflict {
    pub tag: Tag,
    /// The manifest the tag names now, or `None` when the tag is free but
    /// the manifest it named is no longer restorable with this entry (it
    /// came back on its own and went to the trash again).
    pub current: Option<Digest>,
}

/// What a restore brought back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoredImage {
    /// The manifests back in the registry: the entry's own first, then its
    /// referrers by digest.
    pub manifests: Vec<Digest>,
    /// Child manifests of a restored index that were in the trash too,
    /// brought back with it (a live index never lists a manifest in the
    /// trash).
    pub children: Vec<Digest>,
    /// Tags given back (of the entry, then of its children's entries).
    pub tags: Vec<Tag>,
    /// Tags not given back, by name.
    pub conflicts: Vec<TagConflict>,
}

/// The trash.
///
/// A trashed manifest keeps its rows and its references, so the blobs and
/// child manifests it references stay held exactly as while it was live
/// (garbage collection sees a stored manifest), but every read that serves
/// the registry's clients skips it: `ManifestStore::manifest_by_digest`,
/// `referrers`, the image listings, and the checks of `put_manifest`, for
/// which a trashed child manifest is missing. `put_manifest` of a trashed
/// manifest brings it back (with the referrers deleted with it when it is
/// an entry's own manifest) and records `manifest.restored`; its old tags
/// stay gone, the push's tag is the one it gets.
#[async_trait::async_trait]
pub trait TrashStore: Send + Sync + 'static {
    /// Deletes a manifest into the trash, as `ManifestStore::delete_manifest`
    /// would delete it (the same referrers, the same refusals:
    /// `ManifestReferenced` when an index lists one, `ImmutableTag` when a
    /// rule covers one of their tags), but keeps the manifests and their
    /// tags restorable. Returns `None` when no live manifest has that
    /// digest. Events: `tag.deleted` for each tag, `manifest.trashed` for
    /// each manifest.
    async fn trash_manifest(
        &self,
        change: &Change,
        repository: &RepoName,
        digest: &Digest,
        with_referrers: bool,
    ) -> Result<Option<DeletedManifest>, MetaError>;

    /// Lists trash entries, of one namespace or of all, oldest first (by
    /// time, repository id, digest), strictly after `after`, at most
    /// `limit`: one index range, whatever the trash holds.
    async fn list_trash(
        &self,
        namespace: Option<&str>,
        after: Option<&TrashCursor>,
        limit: usize,
    ) -> Result<Vec<TrashEntry>, MetaError>;

    /// Brings an entry back: its manifests become live again and each tag
    /// it had is recreated where no tag of that name exists now (the others
    /// are reported as conflicts). Returns `None` when `digest` is not an
    /// entry of the repository's trash. Events: `manifest.restored` for
    /// each manifest, `tag.moved` for each tag given back.
    async fn restore_manifest(
        &self,
        change: &Change,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<RestoredImage>, MetaError>;

    /// Entries trashed before `before`, oldest first, strictly after
    /// `after`, at most `limit` (their tags and referrers left empty).
    async fn expired_trash(
        &self,
        before: Timestamp,
        after: Option<&TrashCursor>,
        limit: usize,
    ) -> Result<Vec<TrashEntry>, MetaError>;

    /// Deletes an entry for good, through the manifest deletion garbage
    /// collection uses, if it is still in the trash and was trashed before
    /// `before`: blobs and links that lose their last reference become
    /// collection candidates as of the change. Returns `None` when it did
    /// nothing. Events: `trash.expired`, then `manifest.deleted` for each
    /// manifest.
    async fn expire_trash(
        &self,
        change: &Change,
        repository: &RepoName,
        digest: &Digest,
        before: Timestamp,
    ) -> Result<Option<DeletedManifest>, MetaError>;
}
