//! [`FindingCountStore`]: how many vulnerability findings each assessed
//! image has, by severity, so that the console's overview can count images
//! with findings without assessing every image on every page view.

use berth_oci::{Digest, RepoName};

use crate::{MetaError, Timestamp};

/// Fixable findings of one image (a platform manifest) in one repository,
/// not counting exempted ones, by severity, as the advisor last assessed
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFindings {
    pub repository: RepoName,
    pub manifest: Digest,
    /// The advisory data generation the assessment used
    /// ([`crate::AdvisoryData::generation`]); a row of another generation
    /// is stale.
    pub generation: i64,
    pub counts: SeverityCounts,
    pub assessed_at: Timestamp,
}

/// Findings by severity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeverityCounts {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub unknown: u64,
}

impl SeverityCounts {
    pub fn total(&self) -> u64 {
        self.critical
            .saturating_add(self.high)
            .saturating_add(self.medium)
            .saturating_add(self.low)
            .saturating_add(self.unknown)
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &SeverityCounts) {
        self.critical = self.critical.saturating_add(other.critical);
        self.high = self.high.saturating_add(other.high);
        self.medium = self.medium.saturating_add(other.medium);
        self.low = self.low.saturating_add(other.low);
        self.unknown = self.unknown.saturating_add(other.unknown);
    }
}

/// One namespace's images with findings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceFindings {
    pub namespace: String,
    /// Images (platform manifests, each counted once per repository) with
    /// at least one finding.
    pub images: u64,
    /// Their findings, summed.
    pub counts: SeverityCounts,
}

/// The stored finding counts. They are derived data, like the advisor's
/// image states: written without a `Change` and without events.
#[async_trait::async_trait]
pub trait FindingCountStore: Send + Sync + 'static {
    /// Stores `row`, replacing the one of its repository and manifest,
    /// counted by [`findings_by_namespace`](Self::findings_by_namespace)
    /// only while its image is stored and not in the trash: that is read
    /// here, in the write's transaction, and kept up to date by the
    /// transactions that trash, restore or delete the image (which also
    /// deletes the row).
    async fn record_image_findings(&self, row: &ImageFindings) -> Result<(), MetaError>;

    /// Removes the row of `manifest` in `repository`, if any (the image is
    /// gone, or nothing the advisor can assess).
    async fn forget_image_findings(
        &self,
        repository: &RepoName,
        manifest: &Digest,
    ) -> Result<(), MetaError>;

    /// Marks the rows of `namespace` (every row with `None`) stale, so that
    /// the next refresh assesses them again (an exemption changed what
    /// counts).
    async fn invalidate_image_findings(&self, namespace: Option<&str>) -> Result<(), MetaError>;

    /// Up to `limit` rows (repository and manifest) whose generation is
    /// not `generation`, in no particular order.
    async fn stale_image_findings(
        &self,
        generation: i64,
        limit: usize,
    ) -> Result<Vec<(RepoName, Digest)>, MetaError>;

    /// Per namespace of `namespaces` (every namespace with `None`) that
    /// has any: the images with at least one finding that are stored and
    /// not in the trash, and their findings summed; sorted by namespace.
    /// Costs one index range over the rows with findings of live images,
    /// read from the index alone, not a scan of every image nor a join.
    async fn findings_by_namespace(
        &self,
        namespaces: Option<&[String]>,
    ) -> Result<Vec<NamespaceFindings>, MetaError>;
}
