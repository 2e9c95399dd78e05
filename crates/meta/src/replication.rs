//! [`ReplicationStore`]: replication rules and the history of their runs.
//!
//! A rule copies images between Berth and another registry: `push` copies
//! local repositories to the remote, `pull` copies the remote's into Berth.
//! The registry (`berth_registry::replication`) does the copying; this store
//! keeps the rules, and a bounded history of runs per rule so that status
//! pages show what happened last. One node runs a rule at a time through a
//! job lease ([`JobLeaseStore`](crate::JobLeaseStore), job name
//! `replication/<rule>`), so no second lease table is needed here.
//!
//! A push rule also deletes on its remote the tags deleted here; a deletion
//! the remote did not take (down, refusing) is kept as a pending delete of
//! the rule and tried again by the rule's next runs until it is done, so a
//! replica does not keep a deleted tag for ever.

use berth_oci::{RepoName, Tag};

use crate::{Change, MetaError, Timestamp};

/// Which way a rule copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Berth → the remote registry.
    Push,
    /// The remote registry → Berth.
    Pull,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Push => "push",
            Direction::Pull => "pull",
        }
    }

    pub fn parse(text: &str) -> Option<Direction> {
        [Direction::Push, Direction::Pull]
            .into_iter()
            .find(|direction| direction.as_str() == text)
    }
}

/// A rule to create. Patterns and URL are validated by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReplicationRule {
    /// Unique among rules; how people and scripts name it.
    pub name: String,
    pub direction: Direction,
    /// The other registry's base URL (`https://host[:port]`).
    pub remote_url: String,
    /// The credentials as stored (sealed by the caller when a key-encryption
    /// key is configured), `None` for anonymous access. Never shown.
    pub credentials: Option<String>,
    /// The repository glob (`team/**`).
    pub repositories: String,
    /// The tag glob (`v*`); `None` for every tag.
    pub tags: Option<String>,
    /// Whether a push to Berth (or a tag deletion) replicates at once
    /// (push rules only).
    pub on_push: bool,
    /// Seconds between scheduled runs; `None` for no schedule.
    pub interval_secs: Option<i64>,
    pub enabled: bool,
    /// Who created it (how the actor is shown).
    pub created_by: String,
}

/// A stored rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationRule {
    pub id: i64,
    pub name: String,
    pub direction: Direction,
    pub remote_url: String,
    /// As stored (see [`NewReplicationRule::credentials`]); never shown.
    pub credentials: Option<String>,
    pub repositories: String,
    pub tags: Option<String>,
    pub on_push: bool,
    pub interval_secs: Option<i64>,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: Timestamp,
}

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunTrigger {
    /// Someone asked (`berth replication run`, the API).
    Manual,
    /// A push or tag deletion in Berth (on-push rules).
    Push,
    /// The rule's interval elapsed.
    Schedule,
}

impl RunTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Manual => "manual",
            RunTrigger::Push => "push",
            RunTrigger::Schedule => "schedule",
        }
    }

    pub fn parse(text: &str) -> Option<RunTrigger> {
        [RunTrigger::Manual, RunTrigger::Push, RunTrigger::Schedule]
            .into_iter()
            .find(|trigger| trigger.as_str() == text)
    }
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        [RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Tags whose image was copied (the target lacked it or had another).
    pub images_copied: u64,
    /// Tags the target already had with the same digest.
    pub images_skipped: u64,
    /// Blobs copied (those the target had, or mounted, are not counted).
    pub blobs_copied: u64,
    /// Bytes of blobs and manifests copied.
    pub bytes: u64,
}

/// A run as the history shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationRun {
    pub id: i64,
    pub rule_id: i64,
    pub trigger: RunTrigger,
    pub started_at: Timestamp,
    /// `None` while it runs.
    pub finished_at: Option<Timestamp>,
    pub status: RunStatus,
    pub counts: RunCounts,
    /// Why it failed, or the last of the errors it went past (bounded by
    /// the caller).
    pub last_error: Option<String>,
}

/// A tag deleted here that the rule's remote still has to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingDelete {
    pub repository: RepoName,
    pub tag: Tag,
    /// When the first attempt failed.
    pub since: Timestamp,
    /// Attempts that failed so far.
    pub attempts: u64,
    /// The remote's answer to the last attempt (bounded by the caller).
    pub last_error: String,
}

/// Replication rules and their runs.
///
/// Rules are decisions of people: creating and removing one takes a
/// [`Change`] and writes its event (`replication_rule.created`,
/// `replication_rule.deleted`; `detail`: `name`, `direction`,
/// `repositories`, `tags`; neither the URL, which may carry a token, nor
/// the credentials). A finished run writes `replication.finished`
/// (`detail`: `rule`, `run`, `status`, the counts, `error`).
#[async_trait::async_trait]
pub trait ReplicationStore: Send + Sync + 'static {
    /// Creates a rule and returns it with its new id (ids are never
    /// reused). Fails with `AlreadyExists` when a rule has its name.
    async fn create_replication_rule(
        &self,
        change: &Change,
        rule: &NewReplicationRule,
    ) -> Result<ReplicationRule, MetaError>;

    /// The rule named `name`, if there is one.
    async fn replication_rule(&self, name: &str) -> Result<Option<ReplicationRule>, MetaError>;

    /// Every rule, by name.
    async fn list_replication_rules(&self) -> Result<Vec<ReplicationRule>, MetaError>;

    /// Deletes the rule `name` and its runs; returns it, or `None` when
    /// there was none.
    async fn delete_replication_rule(
        &self,
        change: &Change,
        name: &str,
    ) -> Result<Option<ReplicationRule>, MetaError>;

    /// Records that a run of rule `rule_id` started at `now` (status
    /// `running`), and deletes the rule's oldest finished runs beyond the
    /// newest `keep`, so the history stays bounded. Fails with `NotFound`
    /// when the rule does not exist (it was deleted meanwhile).
    async fn start_replication_run(
        &self,
        rule_id: i64,
        trigger: RunTrigger,
        now: Timestamp,
        keep: usize,
    ) -> Result<ReplicationRun, MetaError>;

    /// Finishes the running run `run_id` with `status` (not `Running`),
    /// its counts and error, at `change.at`, writing `replication.finished`
    /// in the same transaction. Returns it; `None`, changing nothing, when
    /// there is no such running run (its rule was deleted, or it finished).
    async fn finish_replication_run(
        &self,
        change: &Change,
        run_id: i64,
        status: RunStatus,
        counts: RunCounts,
        error: Option<&str>,
    ) -> Result<Option<ReplicationRun>, MetaError>;

    /// Rule `rule_id`'s runs, newest first, at most `limit`.
    async fn list_replication_runs(
        &self,
        rule_id: i64,
        limit: usize,
    ) -> Result<Vec<ReplicationRun>, MetaError>;

    /// Records that deleting `tag` of `repository` on rule `rule_id`'s
    /// remote failed at `now` with `error`: a new pending delete, or the
    /// existing one with one more attempt and this error. A rule keeps at
    /// most `max` of them: beyond, its oldest are dropped (and logged by
    /// the caller). Nothing happens when the rule does not exist (it was
    /// deleted meanwhile; its pending deletes went with it).
    async fn record_pending_delete(
        &self,
        rule_id: i64,
        repository: &RepoName,
        tag: &Tag,
        error: &str,
        now: Timestamp,
        max: usize,
    ) -> Result<(), MetaError>;

    /// Rule `rule_id`'s pending deletes, oldest first, at most `limit`.
    async fn pending_deletes(
        &self,
        rule_id: i64,
        limit: usize,
    ) -> Result<Vec<PendingDelete>, MetaError>;

    /// How many pending deletes rule `rule_id` has.
    async fn count_pending_deletes(&self, rule_id: i64) -> Result<u64, MetaError>;

    /// Forgets a pending delete (the remote took it, or the tag is back
    /// here); nothing when there is none.
    async fn clear_pending_delete(
        &self,
        rule_id: i64,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<(), MetaError>;
}
