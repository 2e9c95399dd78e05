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
}

impl Gate {
    pub(crate) fn set_open(&self, open: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.open.store(open, Ordering::Release);
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
