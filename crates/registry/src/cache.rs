//! A small in-process cache of lookups, so the hottest requests of a
//! registry (a manifest read by tag and blob HEADs when many nodes or pods
//! start at once) do not reach the database every time.
//!
//! Entries live at most `ttl`. Changes made through this process remove the
//! repository's entries at once; changes made through another node are
//! announced by the database (PostgreSQL `NOTIFY`, sent by the committing
//! transaction) and remove them when the notice arrives
//! (`Registry::run_cache_invalidation`). The caches serve only while that
//! holds: a [`Gate`] is open while this node is subscribed to the notices
//! (or needs none, on SQLite's single node) and shut otherwise, and every
//! invalidation advances its generation, so a value read from the database
//! before an invalidation is never stored after it. Misses are never
//! cached, so a new push is visible immediately everywhere.
//!
//! That leaves the time between a commit and the other nodes acting on its
//! notice: a client told "deleted" by one node could ask another node
//! before that node had forgotten its entry. So a change that can make
//! other nodes' entries stale (a deletion, a tag put) is answered only
//! once every other subscribed node has acknowledged a fence the changing
//! node sent after the commit ([`Fences`]): notices arrive in commit order,
//! and a node acknowledges a fence only after acting on every notice before
//! it. The wait is bounded by the TTL, after which no entry from before the
//! change can be served anyway.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_meta::ManifestRecord;
use berth_oci::{Reference, RepoName};

/// Independent locks, so that concurrent readers rarely wait on each other.
const SHARDS: usize = 16;

/// Whether the caches may serve, and the generation of their contents,
/// shared by every cache of a registry.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// Open while every change another node makes reaches this node as a
    /// notice (or none needs to); shut before the subscription starts, after
    /// it breaks, and in processes that never subscribe.
    open: AtomicBool,
    /// Advanced by every invalidation: a value read before one is stale.
    generation: AtomicU64,
    /// Whether other nodes' changes arrive as notices (PostgreSQL), so that
    /// this node's own changes wait for a fence before they are answered.
    fenced: AtomicBool,
}

impl Gate {
    pub(crate) fn set_open(&self, open: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.open.store(open, Ordering::Release);
    }

    pub(crate) fn set_fenced(&self, fenced: bool) {
        self.fenced.store(fenced, Ordering::Release);
    }

    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// The generation to hand back to [`TtlCache::insert`] with a value
    /// read from the database after this call.
    pub(crate) fn ticket(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn advance(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// The fences this node has sent and not yet seen acknowledged by every
/// other node (see the module documentation): tokens unique to this
/// process, each with the task waiting for it.
pub(crate) struct Fences {
    /// Random per process, so that no other node's token matches ours.
    origin: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<String, Waiter>>,
}

struct Waiter {
    acks: usize,
    /// How many acknowledgements to wait for, once the fence is sent.
    expected: Option<usize>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Waiter {
    fn wake_if_done(&mut self) {
        if self.expected.is_some_and(|expected| self.acks >= expected) {
            if let Some(done) = self.done.take() {
                let _ = done.send(());
            }
        }
    }
}

impl Default for Fences {
    fn default() -> Fences {
        let origin = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Fences {
            origin: format!("{origin:016x}-"),
            next: AtomicU64::new(0),
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

impl Fences {
    /// A new token and what resolves once [`Fences::expect`] and
    /// [`Fences::acked`] together say every other node has acknowledged it.
    pub(crate) fn register(&self) -> (String, tokio::sync::oneshot::Receiver<()>) {
        let token = format!(
            "{}{}",
            self.origin,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let (done, receiver) = tokio::sync::oneshot::channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            let waiter = Waiter {
                acks: 0,
                expected: None,
                done: Some(done),
            };
            waiting.insert(token.clone(), waiter);
        }
        (token, receiver)
    }

    /// Whether `token` is one of this process's fences (which it does not
    /// acknowledge itself).
    pub(crate) fn is_own(&self, token: &str) -> bool {
        token.starts_with(&self.origin)
    }

    /// The fence was sent and `nodes` other nodes will acknowledge it
    /// (acknowledgements may already have arrived).
    pub(crate) fn expect(&self, token: &str, nodes: usize) {
        if let Ok(mut waiting) = self.waiting.lock() {
            if let Some(waiter) = waiting.get_mut(token) {
                waiter.expected = Some(nodes);
                waiter.wake_if_done();
            }
        }
    }

    /// Another node acknowledged a fence; counts it if the fence is ours.
    pub(crate) fn acked(&self, token: &str) {
        if let Ok(mut waiting) = self.waiting.lock() {
            if let Some(waiter) = waiting.get_mut(token) {
                waiter.acks += 1;
                waiter.wake_if_done();
            }
        }
    }

    /// Stops tracking `token` (acknowledged, sent in vain, or waited for
    /// too long), so that the table stays as small as the writes in flight.
    pub(crate) fn forget(&self, token: &str) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.remove(token);
        }
    }
}

/// A cache keyed by repository and one more key (a reference or a digest).
pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
    gate: Arc<Gate>,
    /// Entries per shard before the shard is emptied; a crude bound that keeps
    /// memory flat without per-entry bookkeeping on the read path.
    shard_capacity: usize,
    shards: Vec<Mutex<Shard<K, V>>>,
    hasher: std::collections::hash_map::RandomState,
}

type Shard<K, V> = HashMap<(RepoName, K), (Instant, V)>;

/// Manifest lookups by tag or digest.
pub(crate) type ManifestCache = TtlCache<Reference, Arc<ManifestRecord>>;

/// Sizes of blobs linked into a repository.
pub(crate) type BlobCache = TtlCache<berth_oci::Digest, u64>;

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(ttl: Duration, capacity: usize, gate: Arc<Gate>) -> TtlCache<K, V> {
        TtlCache {
            ttl,
            gate,
            shard_capacity: (capacity / SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.gate.is_open()
    }

    fn shard(&self, repository: &RepoName) -> &Mutex<Shard<K, V>> {
        // Sharding by repository keeps all of one repository's entries in one
        // shard, so invalidating a repository touches one lock.
        &self.shards[(self.hasher.hash_one(repository) as usize) % SHARDS]
    }

    pub(crate) fn get(&self, repository: &RepoName, key: &K) -> Option<V> {
        if !self.enabled() {
            return None;
        }
        let shard = self.shard(repository).lock().ok()?;
        let (stored, value) = shard.get(&(repository.clone(), key.clone()))?;
        (stored.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Stores `value`, read from the database after `ticket` was taken
    /// ([`Gate::ticket`]), unless an invalidation came in between.
    pub(crate) fn insert(&self, repository: &RepoName, key: &K, value: V, ticket: u64) {
        if !self.enabled() {
            return;
        }
        if let Ok(mut shard) = self.shard(repository).lock() {
            // Checked under the shard's lock, which `invalidate` takes after
            // advancing the generation: either this sees the new generation,
            // or the invalidation runs after the insert and removes it.
            if self.gate.ticket() != ticket {
                return;
            }
            if shard.len() >= self.shard_capacity {
                shard.clear();
            }
            shard.insert((repository.clone(), key.clone()), (Instant::now(), value));
        }
    }

    /// Forgets every entry of `repository`, after any change to what it holds.
    pub(crate) fn invalidate(&self, repository: &RepoName) {
        self.gate.advance();
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut shard) = self.shard(repository).lock() {
            shard.retain(|(repo, _), _| repo != repository);
        }
    }

    /// Forgets everything (notices may have been lost).
    pub(crate) fn clear(&self) {
        self.gate.advance();
        for shard in &self.shards {
            if let Ok(mut shard) = shard.lock() {
                shard.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8) -> Arc<ManifestRecord> {
        Arc::new(ManifestRecord {
            digest: berth_oci::Algorithm::Sha256.digest_of(&[n]),
            media_type: "m".into(),
            artifact_type: None,
            subject: None,
            annotations: None,
            payload: vec![n],
        })
    }

    fn open_gate() -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        gate.set_open(true);
        gate
    }

    #[test]
    fn hit_miss_invalidate_and_disable() {
        let gate = open_gate();
        let cache: ManifestCache = TtlCache::new(Duration::from_secs(60), 64, gate.clone());
        let repo = RepoName::parse("a/b").unwrap();
        let other = RepoName::parse("c").unwrap();
        let latest = Reference::parse("latest").unwrap();
        assert!(cache.get(&repo, &latest).is_none());
        cache.insert(&repo, &latest, record(1), gate.ticket());
        cache.insert(&other, &latest, record(2), gate.ticket());
        assert_eq!(cache.get(&repo, &latest).unwrap().payload, vec![1]);
        cache.invalidate(&repo);
        assert!(cache.get(&repo, &latest).is_none());
        assert_eq!(cache.get(&other, &latest).unwrap().payload, vec![2]);

        let off: ManifestCache = TtlCache::new(Duration::ZERO, 64, gate.clone());
        off.insert(&repo, &latest, record(1), gate.ticket());
        assert!(off.get(&repo, &latest).is_none());
    }

    #[test]
    fn a_shut_gate_serves_nothing_and_stale_reads_are_not_stored() {
        let gate = Arc::new(Gate::default());
        let cache: ManifestCache = TtlCache::new(Duration::from_secs(60), 64, gate.clone());
        let repo = RepoName::parse("a/b").unwrap();
        let other = RepoName::parse("c").unwrap();
        let latest = Reference::parse("latest").unwrap();
        // Shut (not subscribed yet): nothing is stored or served.
        cache.insert(&repo, &latest, record(1), gate.ticket());
        assert!(cache.get(&repo, &latest).is_none());

        gate.set_open(true);
        cache.insert(&repo, &latest, record(1), gate.ticket());
        assert!(cache.get(&repo, &latest).is_some());
        // A value read before any invalidation (here, of another repository)
        // is not stored after it: it may be older than the change.
        let ticket = gate.ticket();
        cache.invalidate(&other);
        cache.insert(&repo, &latest, record(2), ticket);
        assert_eq!(cache.get(&repo, &latest).unwrap().payload, vec![1]);
        // Clearing forgets everything; shutting the gate stops serving.
        cache.clear();
        assert!(cache.get(&repo, &latest).is_none());
        cache.insert(&repo, &latest, record(3), gate.ticket());
        gate.set_open(false);
        assert!(cache.get(&repo, &latest).is_none());
    }

    #[tokio::test]
    async fn a_fence_is_done_when_every_other_node_acknowledged_it() {
        let fences = Fences::default();
        let (first, mut first_done) = fences.register();
        let (second, mut second_done) = fences.register();
        assert_ne!(first, second);
        assert!(fences.is_own(&first));
        let foreign = "another-process-0".to_string();
        assert!(!fences.is_own(&foreign));

        // An acknowledgement may come before the sender knows how many to
        // expect; it counts all the same.
        fences.acked(&first);
        assert!(first_done.try_recv().is_err(), "not done before expect");
        fences.expect(&first, 2);
        assert!(first_done.try_recv().is_err(), "one of two");
        fences.acked(&second); // another fence's acknowledgement
        fences.acked(&foreign); // someone else's fence
        assert!(first_done.try_recv().is_err(), "still one of two");
        fences.acked(&first);
        first_done.await.expect("done after both nodes");

        // No other node: done as soon as it is sent.
        fences.expect(&second, 0);
        second_done.try_recv().expect("done with no other node");
        fences.forget(&first);
        fences.forget(&second);
        assert!(fences.waiting.lock().unwrap().is_empty());
    }

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let gate = open_gate();
        let cache: ManifestCache = TtlCache::new(Duration::from_millis(1), SHARDS, gate.clone());
        let repo = RepoName::parse("r").unwrap();
        let tag = Reference::parse("t").unwrap();
        cache.insert(&repo, &tag, record(1), gate.ticket());
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            cache.get(&repo, &tag).is_none(),
            "expired entries are not served"
        );

        let cache: ManifestCache = TtlCache::new(Duration::from_secs(60), SHARDS, gate.clone());
        for i in 0..100u8 {
            cache.insert(
                &repo,
                &Reference::parse(&format!("t{i}")).unwrap(),
                record(i),
                gate.ticket(),
            );
        }
        let held: usize = cache.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= SHARDS, "held {held}");
    }
}
