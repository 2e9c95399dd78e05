//! [`PullStatsStore`]: how often, and when last, each image and repository
//! was pulled.

use berth_oci::{Digest, RepoName};

use crate::{Actor, MetaError, Timestamp};

/// Pulls of one image counted by a node since its last flush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullCount {
    pub repository: RepoName,
    /// The manifest that was fetched (an index and the child a client picks
    /// from it are two pulls, as two fetches).
    pub digest: Digest,
    /// How many times, at least 1.
    pub pulls: u64,
    /// When the newest of them happened.
    pub last_pulled_at: Timestamp,
    /// Who pulled (a node counts each puller of an image apart), from the
    /// address of their newest pull.
    pub actor: Actor,
    /// The vulnerability policy's warning a pull of theirs was served with
    /// (the newest such), if any: the audit of the pull says why.
    pub warning: Option<String>,
}

/// Pull statistics. Nodes count pulls in memory and hand them over in
/// batches (see `berth_registry::pulls`), so a pull costs no write of its
/// own; the counts are additive, so batches from several nodes, in any
/// order, sum to the same figures.
///
/// Pulls are statistics, not changes anyone made to the registry, but
/// webhooks (`pull`) and the audit trail want to hear of them: when asked,
/// a batch also writes one `image.pulled` event per image and puller, with
/// the count, so the event stream grows with the images pulled per flush
/// interval, not with the pulls.
#[async_trait::async_trait]
pub trait PullStatsStore: Send + Sync + 'static {
    /// Adds each count to its image's and its repository's totals and moves
    /// their last-pulled times forward to `last_pulled_at` (never back), in
    /// one transaction. Counts of images or repositories that no longer
    /// exist are dropped. Rows are locked in one order (repository, then
    /// digest) whatever the batch's order, so two nodes flushing at once
    /// cannot deadlock.
    ///
    /// With `events`, the same transaction also writes an `image.pulled`
    /// event for each count whose image exists (`detail`: `count`, and
    /// `warning` when it has one), as its puller, at its `last_pulled_at`.
    async fn record_pulls(&self, pulls: &[PullCount], events: bool) -> Result<(), MetaError>;
}
