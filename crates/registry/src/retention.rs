//! Retention policies: per namespace, which images of each repository stay
//! and which go to the trash.
//!
//! A pass reads the namespace's live manifests in three range reads
//! (`RetentionStore::retention_candidates`), turns them into images
//! ([`images_of`]: an index is one image with its untagged children,
//! referrers and listed children are not images of their own), and
//! [`evaluate`]s the policy over them, a pure function. A dry run stops
//! there; a real run deletes each selected image through the same path as
//! any deletion (`Registry::delete_manifest`: into the trash, with its
//! events in the same transaction), so both select the same set.
//!
//! An image's age comes from its configuration's `created` (read from the
//! config blob the first time and kept with the manifest as its facts, as
//! the image listing does), or its push time when it has none; an index's
//! is its newest child's.

use std::collections::HashMap;
use std::time::Duration;

use berth_meta::{Actor, ImmutableRule, RetentionCandidate, RetentionPolicy, Timestamp};
use berth_oci::{Digest, Reference, RepoName, Tag};
use tokio_util::sync::CancellationToken;

use crate::{Registry, RegistryError};

/// The job lease that lets one node at a time run the scheduled passes.
const RETENTION_JOB: &str = "retention";

/// Where an image's age comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgeSource {
    /// The image configuration's `created` (an index: its newest child's).
    Created,
    /// When it was pushed: it says nothing of its creation.
    Pushed,
}

impl AgeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AgeSource::Created => "created",
            AgeSource::Pushed => "pushed",
        }
    }
}

/// An image as a policy weighs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionImage {
    pub repository: RepoName,
    pub digest: Digest,
    /// Its tags, in byte order; an image with several counts once.
    pub tags: Vec<Tag>,
    /// When it was created (seconds since the epoch), as `age_from` says.
    pub created: Timestamp,
    pub age_from: AgeSource,
    pub pushed_at: Timestamp,
    /// For an index, the children that go with it: those no tag points at
    /// (a tagged child is an image someone names, and stays).
    pub children: Vec<Digest>,
}

/// Why a policy deletes an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionReason {
    /// A tagged image older than the newest `keep` of its repository.
    BeyondNewest { keep: u32 },
    /// An untagged image, under `--untagged delete`.
    Untagged,
}

impl std::fmt::Display for RetentionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetentionReason::BeyondNewest { keep } => {
                write!(f, "not among the newest {keep} tagged images")
            }
            RetentionReason::Untagged => f.write_str("untagged"),
        }
    }
}

/// An image a policy deletes, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionVerdict {
    pub image: RetentionImage,
    pub reason: RetentionReason,
}

/// An image a policy would delete but that stays, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionSkip {
    pub verdict: RetentionVerdict,
    pub why: String,
}

/// What a policy decides for a namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// The images that go, by repository, then newest first.
    pub delete: Vec<RetentionVerdict>,
    /// Images the policy selects that an immutable-tag rule keeps: a
    /// deletion would be refused, so they are reported and left alone.
    pub protected: Vec<RetentionSkip>,
    /// How many images stay.
    pub kept: usize,
}

/// What a retention run did (or, in a dry run, would do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionReport {
    pub namespace: String,
    pub dry_run: bool,
    /// When the policy was evaluated (seconds since the epoch): the ages
    /// are as of then.
    pub at: Timestamp,
    /// The images that went to the trash (would go, in a dry run).
    pub removed: Vec<RetentionVerdict>,
    /// Images selected but left alone: protected by an immutable tag, or
    /// changed since the read (the deletion's own checks refused them).
    pub skipped: Vec<RetentionSkip>,
    /// How many images the policy keeps.
    pub kept: usize,
}

/// Parses an image configuration's `created` (RFC 3339) into seconds.
fn parse_created(text: &str) -> Option<Timestamp> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

/// The images among a namespace's live manifests: every manifest that is
/// neither a referrer (it goes with its subject) nor listed by a live
/// index (it goes with the index). `created` holds the configuration's
/// `created` of the manifests that have one, by repository and digest.
pub fn images_of(
    candidates: &[RetentionCandidate],
    created: &HashMap<(RepoName, Digest), Timestamp>,
) -> Vec<RetentionImage> {
    let tagged: HashMap<(&RepoName, &Digest), bool> = candidates
        .iter()
        .map(|c| ((&c.repository, &c.digest), !c.tags.is_empty()))
        .collect();
    candidates
        .iter()
        .filter(|c| c.subject.is_none() && !c.listed)
        .map(|c| {
            let own = created
                .get(&(c.repository.clone(), c.digest.clone()))
                .copied();
            // An index says nothing of its creation; its newest child does.
            let from_children = c
                .children
                .iter()
                .filter_map(|child| created.get(&(c.repository.clone(), child.clone())))
                .max()
                .copied();
            let (created, age_from) = match own.or(from_children) {
                Some(at) => (at, AgeSource::Created),
                None => (c.pushed_at, AgeSource::Pushed),
            };
            RetentionImage {
                repository: c.repository.clone(),
                digest: c.digest.clone(),
                tags: c.tags.clone(),
                created,
                age_from,
                pushed_at: c.pushed_at,
                children: c
                    .children
                    .iter()
                    .filter(|child| tagged.get(&(&c.repository, *child)) == Some(&false))
                    .cloned()
                    .collect(),
            }
        })
        .collect()
}

/// The first tag of `image` an immutable-tag rule covers, with the rule.
fn immutable_tag<'a>(
    image: &'a RetentionImage,
    rules: &'a [ImmutableRule],
) -> Option<(&'a Tag, &'a ImmutableRule)> {
    image.tags.iter().find_map(|tag| {
        rules
            .iter()
            .filter(|rule| {
                rule.namespace == image.repository.namespace()
                    && rule
                        .repository
                        .as_ref()
                        .is_none_or(|repository| *repository == image.repository)
            })
            .find(|rule| rule.pattern.matches(tag.as_str()))
            .map(|rule| (tag, rule))
    })
}

/// Decides what `policy` deletes among `images` at time `now`.
///
/// In each repository, images are ranked newest first by `created`, ties
/// broken by push time, then by digest (descending), so the answer never
/// depends on the order they come in. Then:
/// - an image with a tag `keep_tags` matches stays, and does not take one
///   of the `keep` places;
/// - the newest `keep` other tagged images stay, the older ones go;
/// - untagged images go under `untagged: delete`, and stay otherwise;
/// - an image created or pushed less than `min_age` ago stays whatever the
///   rules above say;
/// - an image that would go but has a tag an immutable-tag rule covers
///   stays, and is reported in `protected` (its deletion would be refused).
pub fn evaluate(
    policy: &RetentionPolicy,
    rules: &[ImmutableRule],
    mut images: Vec<RetentionImage>,
    now: Timestamp,
) -> RetentionPlan {
    images.sort_by(|a, b| {
        a.repository
            .as_str()
            .cmp(b.repository.as_str())
            .then(b.created.cmp(&a.created))
            .then(b.pushed_at.cmp(&a.pushed_at))
            .then(b.digest.cmp(&a.digest))
    });
    let min_age = i64::try_from(policy.min_age).unwrap_or(i64::MAX);
    let mut plan = RetentionPlan::default();
    let mut repository: Option<RepoName> = None;
    let mut kept_tagged = 0u32;
    for image in images {
        if repository.as_ref() != Some(&image.repository) {
            repository = Some(image.repository.clone());
            kept_tagged = 0;
        }
        let reason = if image.tags.is_empty() {
            match policy.untagged {
                berth_meta::UntaggedImages::Keep => None,
                berth_meta::UntaggedImages::Delete => Some(RetentionReason::Untagged),
            }
        } else if policy
            .keep_tags
            .as_ref()
            .is_some_and(|keep| image.tags.iter().any(|tag| keep.matches(tag.as_str())))
        {
            None
        } else if kept_tagged < policy.keep {
            kept_tagged += 1;
            None
        } else {
            Some(RetentionReason::BeyondNewest { keep: policy.keep })
        };
        let young = now.saturating_sub(image.created.max(image.pushed_at)) < min_age;
        let Some(reason) = reason.filter(|_| !young) else {
            plan.kept += 1;
            continue;
        };
        let protection = immutable_tag(&image, rules)
            .map(|(tag, rule)| format!("tag {tag} is immutable (rule {rule})"));
        let verdict = RetentionVerdict { image, reason };
        match protection {
            Some(why) => {
                plan.kept += 1;
                plan.protected.push(RetentionSkip { verdict, why });
            }
            None => plan.delete.push(verdict),
        }
    }
    plan
}

impl Registry {
    /// Sets a namespace's retention policy, replacing any;
    /// `NamespaceUnknown` when the namespace does not exist.
    pub async fn set_retention_policy(
        &self,
        actor: &Actor,
        policy: &RetentionPolicy,
    ) -> Result<(), RegistryError> {
        match self
            .meta()
            .set_retention_policy(&self.change(actor), policy)
            .await
        {
            Err(berth_meta::MetaError::NotFound) => Err(RegistryError::NamespaceUnknown),
            other => Ok(other?),
        }
    }

    /// Removes a namespace's retention policy; the one removed, if any.
    pub async fn remove_retention_policy(
        &self,
        actor: &Actor,
        namespace: &str,
    ) -> Result<Option<RetentionPolicy>, RegistryError> {
        Ok(self
            .meta()
            .remove_retention_policy(&self.change(actor), namespace)
            .await?)
    }

    /// The retention policies, of one namespace or of all, by namespace.
    pub async fn retention_policies(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<RetentionPolicy>, RegistryError> {
        Ok(self.meta().list_retention_policies(namespace).await?)
    }

    /// What `policy` deletes now. Reads the namespace's manifests once;
    /// the config blob of an image whose facts were never read is read
    /// once here and its facts kept, so later passes read the store only.
    pub async fn plan_retention(
        &self,
        policy: &RetentionPolicy,
        now: Timestamp,
    ) -> Result<RetentionPlan, RegistryError> {
        let candidates = self.meta().retention_candidates(&policy.namespace).await?;
        let mut created = HashMap::new();
        for candidate in candidates.iter().filter(|c| c.subject.is_none()) {
            let facts = self
                .facts_of(
                    &candidate.repository,
                    &candidate.digest,
                    candidate.facts.as_deref(),
                )
                .await?;
            if let Some(at) = facts
                .and_then(|facts| facts.created)
                .and_then(|text| parse_created(&text))
            {
                created.insert((candidate.repository.clone(), candidate.digest.clone()), at);
            }
        }
        let rules = self
            .meta()
            .list_immutable_rules(Some(&policy.namespace))
            .await?;
        Ok(evaluate(
            policy,
            &rules,
            images_of(&candidates, &created),
            now,
        ))
    }

    /// Runs the retention policy of `namespace`: lists what goes (a dry
    /// run) or moves it to the trash, each image with its untagged index
    /// children, through the deletion every path uses. `None` when the
    /// namespace has no policy.
    pub async fn run_retention(
        &self,
        actor: &Actor,
        namespace: &str,
        dry_run: bool,
    ) -> Result<Option<RetentionReport>, RegistryError> {
        let Some(policy) = self
            .meta()
            .list_retention_policies(Some(namespace))
            .await?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let at = self.now();
        let plan = self.plan_retention(&policy, at).await?;
        let mut report = RetentionReport {
            namespace: namespace.to_string(),
            dry_run,
            at,
            removed: Vec::new(),
            skipped: plan.protected,
            kept: plan.kept,
        };
        if dry_run {
            report.removed = plan.delete;
            return Ok(Some(report));
        }
        for verdict in plan.delete {
            let image = &verdict.image;
            let deleted = self
                .delete_manifest(
                    actor,
                    &image.repository,
                    &Reference::Digest(image.digest.clone()),
                )
                .await;
            match deleted {
                Ok(()) => {}
                // Changed since the read: the deletion's own checks, in
                // its transaction, have the last word.
                Err(
                    error @ (RegistryError::ImmutableTag { .. }
                    | RegistryError::ManifestReferenced(_)
                    | RegistryError::ManifestUnknown),
                ) => {
                    report.skipped.push(RetentionSkip {
                        verdict,
                        why: error.to_string(),
                    });
                    continue;
                }
                Err(other) => return Err(other),
            }
            for child in &image.children {
                // A child another live index lists, or one gone meanwhile,
                // stays as it is.
                match self
                    .delete_manifest(actor, &image.repository, &Reference::Digest(child.clone()))
                    .await
                {
                    Ok(())
                    | Err(
                        RegistryError::ManifestReferenced(_)
                        | RegistryError::ManifestUnknown
                        | RegistryError::ImmutableTag { .. },
                    ) => {}
                    Err(other) => return Err(other),
                }
            }
            report.removed.push(verdict);
        }
        Ok(Some(report))
    }

    /// Runs every namespace's policy once, as `system:retention`; returns
    /// how many images went. A namespace that fails is logged and the
    /// others still run.
    pub async fn run_all_retention(&self) -> Result<usize, RegistryError> {
        let actor = Actor::system("retention");
        let mut removed = 0;
        for policy in self.meta().list_retention_policies(None).await? {
            match self.run_retention(&actor, &policy.namespace, false).await {
                Ok(Some(report)) => {
                    if !report.removed.is_empty() || !report.skipped.is_empty() {
                        tracing::info!(
                            namespace = %policy.namespace,
                            removed = report.removed.len(),
                            skipped = report.skipped.len(),
                            "retention policy applied"
                        );
                    }
                    removed += report.removed.len();
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(namespace = %policy.namespace, %error, "retention pass failed")
                }
            }
        }
        Ok(removed)
    }

    /// Runs [`Registry::run_all_retention`] every `interval` until
    /// `shutdown` fires, on one node at a time (the `retention` job lease).
    pub async fn run_retention_schedule(&self, interval: Duration, shutdown: CancellationToken) {
        self.every_interval_under_lease(RETENTION_JOB, "retention", interval, shutdown, || async {
            if let Err(error) = self.run_all_retention().await {
                tracing::warn!(%error, "retention failed");
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::UntaggedImages;
    use berth_oci::{Algorithm, TagPattern, TagRegex};

    const NOW: Timestamp = 1_000_000;
    const DAY: u64 = 86_400;

    fn digest(name: &str) -> Digest {
        Algorithm::Sha256.digest_of(name.as_bytes())
    }

    fn repo(name: &str) -> RepoName {
        RepoName::parse(name).unwrap()
    }

    /// An image of `team/app` named `name` (its digest is the name's),
    /// with `tags`, created `created` seconds before `NOW` and pushed
    /// `pushed` seconds before it.
    fn img(name: &str, tags: &[&str], created: i64, pushed: i64) -> RetentionImage {
        RetentionImage {
            repository: repo(if name.starts_with("web-") {
                "team/web"
            } else {
                "team/app"
            }),
            digest: digest(name),
            tags: tags.iter().map(|t| Tag::parse(t).unwrap()).collect(),
            created: NOW - created,
            age_from: AgeSource::Created,
            pushed_at: NOW - pushed,
            children: Vec::new(),
        }
    }

    fn policy(
        keep: u32,
        untagged: UntaggedImages,
        min_age: u64,
        keep_tags: Option<&str>,
    ) -> RetentionPolicy {
        RetentionPolicy {
            namespace: "team".to_string(),
            keep,
            untagged,
            min_age,
            keep_tags: keep_tags.map(|text| TagRegex::parse(text).unwrap()),
            author: "test".to_string(),
            updated_at: 0,
        }
    }

    /// The names of images in `names` whose digests are `digests`, in order.
    fn names(digests: &[&Digest], by_name: &[&str]) -> Vec<String> {
        digests
            .iter()
            .map(|d| {
                by_name
                    .iter()
                    .find(|n| digest(n) == **d)
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| d.to_string())
            })
            .collect()
    }

    #[test]
    fn policies_select_what_they_say() {
        use UntaggedImages::{Delete, Keep};
        let day = DAY as i64;
        struct Case {
            what: &'static str,
            policy: RetentionPolicy,
            rules: Vec<&'static str>,
            images: Vec<RetentionImage>,
            deleted: Vec<&'static str>,
            protected: Vec<&'static str>,
            kept: usize,
        }
        let cases = vec![
            Case {
                what: "the newest N tagged images stay, oldest go first",
                policy: policy(2, Keep, 0, None),
                rules: vec![],
                images: vec![
                    img("a", &["1"], 40 * day, day),
                    img("b", &["2"], 30 * day, day),
                    img("c", &["3"], 20 * day, day),
                    img("d", &["4"], 10 * day, day),
                ],
                deleted: vec!["b", "a"],
                protected: vec![],
                kept: 2,
            },
            Case {
                what: "an image with several tags counts once",
                policy: policy(2, Keep, 0, None),
                rules: vec![],
                images: vec![
                    img("a", &["latest", "v3", "stable"], 10 * day, day),
                    img("b", &["v2"], 20 * day, day),
                    img("c", &["v1"], 30 * day, day),
                ],
                deleted: vec!["c"],
                protected: vec![],
                kept: 2,
            },
            Case {
                what: "untagged images stay under keep, whatever N",
                policy: policy(0, Keep, 0, None),
                rules: vec![],
                images: vec![
                    img("a", &[], 10 * day, day),
                    img("b", &["x"], 10 * day, day),
                ],
                deleted: vec!["b"],
                protected: vec![],
                kept: 1,
            },
            Case {
                what: "untagged images go under delete, and do not take places",
                policy: policy(1, Delete, 0, None),
                rules: vec![],
                images: vec![
                    img("a", &[], day, day),
                    img("b", &["x"], 10 * day, day),
                    img("c", &[], 20 * day, day),
                ],
                deleted: vec!["a", "c"],
                protected: vec![],
                kept: 1,
            },
            Case {
                what: "nothing younger than the minimum age goes, by creation or push",
                policy: policy(0, Delete, 7 * DAY, None),
                rules: vec![],
                images: vec![
                    img("new", &["x"], day, day),
                    img("rebuilt-long-ago-pushed-now", &[], 90 * day, day),
                    img("old", &["y"], 8 * day, 8 * day),
                ],
                deleted: vec!["old"],
                protected: vec![],
                kept: 2,
            },
            Case {
                what: "kept tags stay and take no place among the N",
                policy: policy(1, Keep, 0, Some("^v[0-9]+$")),
                rules: vec![],
                images: vec![
                    img("latest", &["latest"], day, day),
                    img("v2", &["v2"], 2 * day, day),
                    img("dev", &["dev"], 3 * day, day),
                    img("v1", &["v1", "old"], 4 * day, day),
                ],
                deleted: vec!["dev"],
                protected: vec![],
                kept: 3,
            },
            Case {
                what: "equal ages are ranked by push time, then digest",
                policy: policy(1, Keep, 0, None),
                rules: vec![],
                images: vec![
                    img("p", &["p"], 5 * day, 2 * day),
                    img("q", &["q"], 5 * day, 3 * day),
                    img("r", &["r"], 5 * day, 3 * day),
                ],
                // p was pushed last; q and r tie, the larger digest ranks first.
                deleted: if digest("q") > digest("r") {
                    vec!["q", "r"]
                } else {
                    vec!["r", "q"]
                },
                protected: vec![],
                kept: 1,
            },
            Case {
                what: "each repository keeps its own N",
                policy: policy(1, Keep, 0, None),
                rules: vec![],
                images: vec![
                    img("a", &["1"], day, day),
                    img("web-a", &["1"], 3 * day, day),
                    img("b", &["2"], 2 * day, day),
                    img("web-b", &["2"], 4 * day, day),
                ],
                deleted: vec!["b", "web-b"],
                protected: vec![],
                kept: 2,
            },
            Case {
                what: "an immutable tag protects an image the policy selects",
                policy: policy(0, Delete, 0, None),
                rules: vec!["v*"],
                images: vec![
                    img("a", &["dev"], day, day),
                    img("b", &["v1", "old"], 2 * day, day),
                    img("c", &[], 3 * day, day),
                ],
                deleted: vec!["a", "c"],
                protected: vec!["b"],
                kept: 1,
            },
        ];
        for case in cases {
            let rules: Vec<ImmutableRule> = case
                .rules
                .iter()
                .map(|pattern| ImmutableRule {
                    namespace: "team".to_string(),
                    repository: None,
                    pattern: TagPattern::parse(pattern).unwrap(),
                    author: "test".to_string(),
                    created_at: 0,
                })
                .collect();
            let all_names: Vec<&str> = [
                "a",
                "b",
                "c",
                "d",
                "new",
                "old",
                "rebuilt-long-ago-pushed-now",
                "latest",
                "v2",
                "dev",
                "v1",
                "p",
                "q",
                "r",
                "web-a",
                "web-b",
            ]
            .to_vec();
            // The order images come in never matters.
            let mut reversed = case.images.clone();
            reversed.reverse();
            for images in [case.images.clone(), reversed] {
                let plan = evaluate(&case.policy, &rules, images, NOW);
                let deleted: Vec<&Digest> = plan.delete.iter().map(|v| &v.image.digest).collect();
                let protected: Vec<&Digest> = plan
                    .protected
                    .iter()
                    .map(|s| &s.verdict.image.digest)
                    .collect();
                assert_eq!(names(&deleted, &all_names), case.deleted, "{}", case.what);
                assert_eq!(
                    names(&protected, &all_names),
                    case.protected,
                    "{}",
                    case.what
                );
                assert_eq!(plan.kept, case.kept, "{}", case.what);
            }
        }
    }

    #[test]
    fn verdicts_say_why() {
        let plan = evaluate(
            &policy(1, UntaggedImages::Delete, 0, None),
            &[],
            vec![
                img("a", &["new"], DAY as i64, 0),
                img("b", &["old"], 2 * DAY as i64, 0),
                img("c", &[], 3 * DAY as i64, 0),
            ],
            NOW,
        );
        let reasons: Vec<String> = plan.delete.iter().map(|v| v.reason.to_string()).collect();
        assert_eq!(
            reasons,
            vec!["not among the newest 1 tagged images", "untagged"]
        );
        let protected = evaluate(
            &policy(0, UntaggedImages::Keep, 0, None),
            &[ImmutableRule {
                namespace: "team".to_string(),
                repository: Some(repo("team/app")),
                pattern: TagPattern::parse("release-*").unwrap(),
                author: "test".to_string(),
                created_at: 0,
            }],
            vec![img("a", &["release-1"], 0, 0)],
            NOW,
        );
        assert_eq!(
            protected.protected[0].why,
            "tag release-1 is immutable (rule team/app --tags release-*)"
        );
    }

    fn candidate(name: &str, tags: &[&str], pushed: Timestamp) -> RetentionCandidate {
        RetentionCandidate {
            repository: repo("team/app"),
            digest: digest(name),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
            subject: None,
            pushed_at: pushed,
            facts: None,
            tags: tags.iter().map(|t| Tag::parse(t).unwrap()).collect(),
            children: Vec::new(),
            listed: false,
        }
    }

    #[test]
    fn indexes_are_one_image_and_referrers_none() {
        let amd = RetentionCandidate {
            listed: true,
            ..candidate("amd64", &[], 10)
        };
        let arm = RetentionCandidate {
            listed: true,
            ..candidate("arm64", &["arm-only"], 10)
        };
        let index = RetentionCandidate {
            children: vec![digest("amd64"), digest("arm64")],
            ..candidate("index", &["v1"], 30)
        };
        let plain = candidate("plain", &[], 40);
        let signature = RetentionCandidate {
            subject: Some(digest("index")),
            ..candidate("signature", &[], 50)
        };
        let built = candidate("built", &["b"], 60);
        let candidates = vec![amd, arm, index, plain, signature, built];
        let created: HashMap<(RepoName, Digest), Timestamp> = [
            ((repo("team/app"), digest("amd64")), 5),
            ((repo("team/app"), digest("arm64")), 7),
            ((repo("team/app"), digest("built")), 1),
        ]
        .into_iter()
        .collect();
        let images = images_of(&candidates, &created);
        let summary: Vec<(Digest, Timestamp, AgeSource, Vec<Digest>)> = images
            .into_iter()
            .map(|i| (i.digest, i.created, i.age_from, i.children))
            .collect();
        assert_eq!(
            summary,
            vec![
                // The index is as old as its newest child; its tagged child
                // is an image someone names and does not go with it.
                (
                    digest("index"),
                    7,
                    AgeSource::Created,
                    vec![digest("amd64")]
                ),
                // No configuration `created`: the push time.
                (digest("plain"), 40, AgeSource::Pushed, vec![]),
                (digest("built"), 1, AgeSource::Created, vec![]),
            ]
        );
    }

    #[test]
    fn created_is_read_as_rfc3339() {
        assert_eq!(parse_created("1970-01-02T00:00:00Z"), Some(86_400));
        assert_eq!(
            parse_created("2026-01-02T03:04:05.123456789+01:00"),
            Some(1_767_319_445)
        );
        assert_eq!(parse_created("yesterday"), None);
    }
}
