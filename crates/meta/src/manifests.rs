//! [`ManifestStore`]: manifests with their references, tags and referrers.

use berth_oci::{Digest, RepoName, Tag};

use crate::{Change, MetaError};

/// A manifest as stored: its bytes plus what was parsed from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    /// The artifact type the referrers API reports (see `ParsedManifest::artifact_type`).
    pub artifact_type: Option<String>,
    /// The manifest's `subject`, if it refers to another manifest.
    pub subject: Option<Digest>,
    /// The manifest's annotations as a JSON object, for the referrers API.
    pub annotations: Option<String>,
    /// The exact bytes pushed; `digest` is their digest.
    pub payload: Vec<u8>,
}

/// A manifest to store, with everything it references inside its repository.
#[derive(Clone, Debug)]
pub struct NewManifest {
    pub record: ManifestRecord,
    /// Blobs (config and distributable layers) that must be linked to the repository.
    pub blobs: Vec<Digest>,
    /// The size the manifest's descriptors give each of `blobs` (a digest
    /// the manifest lists twice with two sizes appears twice): each must be
    /// the stored blob's size. Empty when the caller declares none.
    pub blob_sizes: Vec<(Digest, u64)>,
    /// Child manifests (of an index) that must exist in the repository.
    pub children: Vec<Digest>,
}

/// A blob a manifest gives the wrong size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeMismatch {
    pub digest: Digest,
    /// The size the manifest's descriptor gives.
    pub declared: u64,
    /// The size of the blob as stored.
    pub stored: u64,
}

/// One entry of the referrers list; `annotations` is `None` when the
/// manifest has none or more than the caller's cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// What a manifest deletion removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletedManifest {
    /// Tags that pointed at the manifest and are gone with it.
    pub tags: Vec<Tag>,
    /// Referrers (manifests whose subject was a deleted manifest, recursively)
    /// deleted with it, sorted by digest.
    pub referrers: Vec<Digest>,
}

/// Manifests, tags and referrers.
///
/// A manifest lives in one repository and may reference blobs linked there
/// and (an index) other manifests stored there; those references are
/// checked when it is stored and kept for as long as it lives, so neither
/// can disappear under it. A tag names one manifest of its repository.
#[async_trait::async_trait]
pub trait ManifestStore: Send + Sync + 'static {
    /// Stores a manifest in `repository` (creating the repository) and points
    /// `tag` at it if given, replacing the tag's previous target. Fails with
    /// `MissingBlobs`/`MissingManifests` (storing nothing) unless every blob in
    /// `manifest.blobs` is linked to the repository and every child manifest is
    /// stored in it, and then with `BlobSizeMismatch` (storing nothing, listing
    /// mismatches in the order of `manifest.blob_sizes`) unless every size in
    /// `manifest.blob_sizes` is its blob's, all checked in the same
    /// transaction as the insert. Storing a manifest that exists already only
    /// updates the tag. The blob links it
    /// references stop being garbage-collection candidates. Events:
    /// `manifest.stored` when the manifest is new, `tag.moved` (with the
    /// previous digest) when the tag is created or moved.
    async fn put_manifest(
        &self,
        change: &Change,
        repository: &RepoName,
        manifest: &NewManifest,
        tag: Option<&Tag>,
    ) -> Result<(), MetaError>;

    /// Fetches a manifest by digest.
    async fn manifest_by_digest(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetaError>;

    /// Fetches the manifest a tag points at.
    async fn manifest_by_tag(
        &self,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>, MetaError>;

    /// Deletes a manifest and every tag pointing at it, and with
    /// `with_referrers` every manifest of the repository whose subject is a
    /// deleted one (recursively) with their tags, all in one transaction.
    /// Returns `None` if it was not stored. Fails with `ManifestReferenced`,
    /// deleting nothing, if an index in the same repository (other than one
    /// being deleted) lists any manifest to be deleted. Blobs and links that
    /// lose their last reference become garbage-collection candidates as of
    /// the change. Events: `tag.deleted` for each tag and `manifest.deleted`
    /// for each manifest deleted.
    async fn delete_manifest(
        &self,
        change: &Change,
        repository: &RepoName,
        digest: &Digest,
        with_referrers: bool,
    ) -> Result<Option<DeletedManifest>, MetaError>;

    /// Deletes a tag, leaving the manifest. Returns whether the tag existed
    /// (and wrote a `tag.deleted` event).
    async fn delete_tag(
        &self,
        change: &Change,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<bool, MetaError>;

    /// Lists tags of the repository in byte order, strictly after `after`, at
    /// most `limit`. Returns `None` if the repository does not exist.
    async fn list_tags(
        &self,
        repository: &RepoName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<Tag>>, MetaError>;

    /// Lists manifests in `repository` whose subject is `subject`, optionally
    /// only those of one artifact type, sorted by digest, strictly after
    /// `after`, at most `limit`. The subject need not be stored: the spec
    /// lets referrers be pushed before their subject. Annotations longer
    /// than `max_annotation_bytes` (as stored JSON text) come back as `None`
    /// and are never read out of the database, so a page costs at most
    /// `limit` times that much memory however large the stored annotations
    /// are.
    async fn referrers(
        &self,
        repository: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        limit: usize,
        max_annotation_bytes: usize,
    ) -> Result<Vec<Referrer>, MetaError>;
}
