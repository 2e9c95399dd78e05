//! Pull statistics: every manifest GET counted in this node's memory and
//! added to the metadata store in batches.
//!
//! A pull costs a lock and two hash lookups, never a database write; the
//! flush job ([`Registry::run_pull_stats`]) hands the counts over every few
//! seconds, an early flush is asked for when many images are pending, and
//! the server flushes once more after its last request
//! ([`Registry::flush_pulls`]). The counts are additive, so several nodes
//! flushing into one database sum to the same figures. What a node counted
//! since its last flush is lost if the process is killed: statistics, not
//! records.
//!
//! Each image's pulls are counted per puller (a user, an access token, or
//! anonymous), so that the `image.pulled` events a flush writes (when
//! `RegistryConfig::pull_events` is on) say who pulled, for webhooks and the
//! audit trail.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use berth_meta::{Actor, PullCount, Timestamp};
use berth_oci::{Digest, RepoName};
use tokio_util::sync::CancellationToken;

use crate::{Registry, RegistryError};

/// Most distinct (image, puller) pairs counted between two flushes. At
/// ~250 bytes each this bounds the counter's memory to ~25 MB; pulls of
/// further pairs are dropped (and logged) until the next flush, which is
/// asked for early at half of this.
pub const MAX_PENDING_IMAGES: usize = 100_000;

struct Pending {
    pulls: u64,
    last: Timestamp,
    /// The puller, with the address of their newest pull.
    actor: Actor,
    /// The newest vulnerability warning one of these pulls was served with.
    warning: Option<String>,
}

/// Longest warning kept with a pull count; the policy's messages are far
/// shorter, and the bound keeps the counter's memory bounded whatever.
const MAX_WARNING_BYTES: usize = 1024;

fn bounded_warning(warning: &str) -> String {
    let mut end = warning.len().min(MAX_WARNING_BYTES);
    while !warning.is_char_boundary(end) {
        end -= 1;
    }
    warning[..end].to_string()
}

/// The pulls counted since the last flush.
#[derive(Default)]
pub(crate) struct PullCounter {
    pending: Mutex<Counts>,
    /// Pulls not counted because [`MAX_PENDING_IMAGES`] were pending.
    dropped: AtomicU64,
    /// Woken when the pending images pass half the bound.
    early: tokio::sync::Notify,
}

#[derive(Default)]
struct Counts {
    /// By repository, then digest, then puller (an image has few pullers
    /// between two flushes, so a short list), so that counting a pull of a
    /// pair already pending allocates nothing.
    images: HashMap<RepoName, HashMap<Digest, Vec<Pending>>>,
    len: usize,
}

impl Counts {
    fn add(
        &mut self,
        repository: &RepoName,
        digest: &Digest,
        actor: &Actor,
        warning: Option<&str>,
        pulls: u64,
        last: Timestamp,
    ) -> bool {
        let pullers = self
            .images
            .get_mut(repository)
            .and_then(|digests| digests.get_mut(digest));
        let same = |p: &&mut Pending| p.actor.kind == actor.kind && p.actor.name == actor.name;
        if let Some(pending) = pullers.and_then(|pullers| pullers.iter_mut().find(same)) {
            pending.pulls = pending.pulls.saturating_add(pulls);
            if last >= pending.last {
                pending.last = last;
                pending.actor.address = actor.address;
            }
            if let Some(warning) = warning {
                if pending.warning.as_deref() != Some(warning) {
                    pending.warning = Some(bounded_warning(warning));
                }
            }
            return true;
        }
        if self.len >= MAX_PENDING_IMAGES {
            return false;
        }
        self.images
            .entry(repository.clone())
            .or_default()
            .entry(digest.clone())
            .or_default()
            .push(Pending {
                pulls,
                last,
                actor: actor.clone(),
                warning: warning.map(bounded_warning),
            });
        self.len += 1;
        true
    }
}

impl PullCounter {
    fn record(
        &self,
        repository: &RepoName,
        digest: &Digest,
        actor: &Actor,
        warning: Option<&str>,
        at: Timestamp,
    ) {
        let mut counts = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !counts.add(repository, digest, actor, warning, 1, at) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if counts.len == MAX_PENDING_IMAGES / 2 {
            self.early.notify_one();
        }
    }

    /// Takes everything pending, leaving the counter empty.
    fn take(&self) -> Vec<PullCount> {
        let counts = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut batch = Vec::with_capacity(counts.len);
        for (repository, digests) in counts.images {
            for (digest, pullers) in digests {
                for pending in pullers {
                    batch.push(PullCount {
                        repository: repository.clone(),
                        digest: digest.clone(),
                        pulls: pending.pulls,
                        last_pulled_at: pending.last,
                        actor: pending.actor,
                        warning: pending.warning,
                    });
                }
            }
        }
        batch
    }

    /// Puts back a batch that could not be stored, so the next flush tries
    /// again (within the same bound).
    fn restore(&self, batch: Vec<PullCount>) {
        let mut counts = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for count in batch {
            if !counts.add(
                &count.repository,
                &count.digest,
                &count.actor,
                count.warning.as_deref(),
                count.pulls,
                count.last_pulled_at,
            ) {
                self.dropped.fetch_add(count.pulls, Ordering::Relaxed);
            }
        }
    }
}

/// Images per transaction of a flush, so that no transaction grows with
/// the traffic between two flushes.
const FLUSH_BATCH: usize = 500;

impl Registry {
    /// Counts one pull (a manifest GET that was answered) of `digest` in
    /// `repository` by `actor`, served with the vulnerability policy's
    /// `warning` if it had one. HEAD requests are not pulls.
    pub fn record_pull(
        &self,
        repository: &RepoName,
        digest: &Digest,
        actor: &Actor,
        warning: Option<&str>,
    ) {
        self.inner
            .pulls
            .record(repository, digest, actor, warning, self.now());
    }

    /// Adds the pulls counted since the last flush to the metadata store,
    /// with their `image.pulled` events when `pull_events` is configured;
    /// returns how many (image, puller) counts were stored. Counts the
    /// store could not take are kept for the next flush.
    pub async fn flush_pulls(&self) -> Result<usize, RegistryError> {
        let dropped = self.inner.pulls.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                max_pending_images = MAX_PENDING_IMAGES,
                "pulls not counted: more distinct images were pulled between two flushes than the counter holds"
            );
        }
        let mut batch = self.inner.pulls.take();
        let total = batch.len();
        while !batch.is_empty() {
            let rest = batch.split_off(batch.len().min(FLUSH_BATCH));
            let events = self.config().pull_events;
            if let Err(error) = self.meta().record_pulls(&batch, events).await {
                batch.extend(rest);
                self.inner.pulls.restore(batch);
                return Err(error.into());
            }
            batch = rest;
        }
        Ok(total)
    }

    /// Flushes pull statistics every `interval`, and early when many images
    /// are pending, until `shutdown`. The final flush, after the last
    /// request, is the caller's ([`Registry::flush_pulls`]).
    pub async fn run_pull_stats(&self, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
                _ = self.inner.pulls.early.notified() => {}
            }
            if let Err(error) = self.flush_pulls().await {
                tracing::warn!(%error, "cannot store pull statistics; kept for the next flush");
            }
            // Blob traffic goes with them, and the traffic quotas are read
            // back (see `quotas.rs`).
            if let Err(error) = self.flush_traffic().await {
                tracing::warn!(%error, "cannot store blob traffic; kept for the next flush");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str) -> RepoName {
        RepoName::parse(name).unwrap()
    }

    fn digest(text: &str) -> Digest {
        berth_oci::Algorithm::Sha256.digest_of(text.as_bytes())
    }

    /// Pulls of one image are summed with their newest time; images are
    /// kept apart per repository; taking empties the counter; a restored
    /// batch is merged with what was counted since.
    #[test]
    fn pulls_are_summed_per_image_and_restored_after_a_failed_flush() {
        let counter = PullCounter::default();
        let (a, b) = (repo("ns/a"), repo("ns/b"));
        let (one, two) = (digest("one"), digest("two"));
        let anonymous = Actor::anonymous();
        for (r, d, at) in [(&a, &one, 5), (&a, &one, 3), (&a, &two, 4), (&b, &one, 9)] {
            counter.record(r, d, &anonymous, None, at);
        }
        let mut batch = counter.take();
        batch.sort_by(|x, y| (&x.repository, &x.digest).cmp(&(&y.repository, &y.digest)));
        let mut expected = vec![
            PullCount {
                repository: a.clone(),
                digest: one.clone(),
                pulls: 2,
                last_pulled_at: 5,
                actor: Actor::anonymous(),
                warning: None,
            },
            PullCount {
                repository: a.clone(),
                digest: two.clone(),
                pulls: 1,
                last_pulled_at: 4,
                actor: Actor::anonymous(),
                warning: None,
            },
            PullCount {
                repository: b.clone(),
                digest: one.clone(),
                pulls: 1,
                last_pulled_at: 9,
                actor: Actor::anonymous(),
                warning: None,
            },
        ];
        expected.sort_by(|x, y| (&x.repository, &x.digest).cmp(&(&y.repository, &y.digest)));
        assert_eq!(batch, expected);
        assert!(counter.take().is_empty());

        counter.record(&a, &one, &anonymous, None, 7);
        counter.restore(batch);
        let merged = counter.take();
        let a_one = merged
            .iter()
            .find(|c| c.repository == a && c.digest == one)
            .unwrap();
        assert_eq!((a_one.pulls, a_one.last_pulled_at), (3, 7));
        assert_eq!(merged.len(), 3);
    }

    /// Beyond the bound, pulls of new images are dropped and counted as
    /// dropped, while pulls of images already pending still count.
    #[test]
    fn the_counter_is_bounded() {
        let counter = PullCounter::default();
        let r = repo("ns/many");
        for i in 0..MAX_PENDING_IMAGES {
            counter.record(&r, &digest(&i.to_string()), &Actor::anonymous(), None, 1);
        }
        counter.record(&r, &digest("one too many"), &Actor::anonymous(), None, 1);
        counter.record(&r, &digest("0"), &Actor::anonymous(), None, 2);
        assert_eq!(counter.dropped.load(Ordering::Relaxed), 1);
        let batch = counter.take();
        assert_eq!(batch.len(), MAX_PENDING_IMAGES);
        let first = batch.iter().find(|c| c.digest == digest("0")).unwrap();
        assert_eq!((first.pulls, first.last_pulled_at), (2, 2));
    }

    /// Pulls of one image by two pullers are two counts; a puller is known
    /// by kind and name, and keeps the address of their newest pull and
    /// the warning a pull of theirs was served with.
    #[test]
    fn pulls_are_counted_per_puller() {
        let counter = PullCounter::default();
        let r = repo("ns/app");
        let d = digest("one");
        let at = |address: &str| Actor {
            address: Some(address.parse().unwrap()),
            ..Actor::robot("ci")
        };
        counter.record(&r, &d, &at("10.0.0.2"), None, 8);
        counter.record(&r, &d, &at("10.0.0.1"), Some("CVE-2024-1 (high)"), 5);
        counter.record(&r, &d, &Actor::user("ada"), None, 6);
        let mut batch = counter.take();
        batch.sort_by(|x, y| x.actor.name.cmp(&y.actor.name));
        let figures: Vec<_> = batch
            .iter()
            .map(|c| {
                (
                    c.actor.name.as_deref(),
                    c.pulls,
                    c.last_pulled_at,
                    c.actor.address,
                    c.warning.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            figures,
            vec![
                (Some("ada"), 1, 6, None, None),
                (
                    Some("ci"),
                    2,
                    8,
                    Some("10.0.0.2".parse().unwrap()),
                    Some("CVE-2024-1 (high)")
                ),
            ]
        );
    }
}
