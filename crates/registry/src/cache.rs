//! A small in-process cache of lookups, so the hottest requests of a
//! registry (a manifest read by tag and blob HEADs when many nodes or pods
//! start at once) do not reach the database every time.
//!
//! Entries live at most `ttl`: that bounds how long a change made through
//! another node (or another process sharing the database) can go unseen.
//! Changes made through this process remove the repository's entries at once.
//! Misses are never cached, so a new push is visible immediately everywhere.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_meta::ManifestRecord;
use berth_oci::{Reference, RepoName};

/// Independent locks, so that concurrent readers rarely wait on each other.
const SHARDS: usize = 16;

/// A cache keyed by repository and one more key (a reference or a digest).
pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
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
    pub(crate) fn new(ttl: Duration, capacity: usize) -> TtlCache<K, V> {
        TtlCache {
            ttl,
            shard_capacity: (capacity / SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero()
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

    pub(crate) fn insert(&self, repository: &RepoName, key: &K, value: V) {
        if !self.enabled() {
            return;
        }
        if let Ok(mut shard) = self.shard(repository).lock() {
            if shard.len() >= self.shard_capacity {
                shard.clear();
            }
            shard.insert((repository.clone(), key.clone()), (Instant::now(), value));
        }
    }

    /// Forgets every entry of `repository`, after any change to what it holds.
    pub(crate) fn invalidate(&self, repository: &RepoName) {
        if !self.enabled() {
            return;
        }
        if let Ok(mut shard) = self.shard(repository).lock() {
            shard.retain(|(repo, _), _| repo != repository);
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

    #[test]
    fn hit_miss_invalidate_and_disable() {
        let cache: ManifestCache = TtlCache::new(Duration::from_secs(60), 64);
        let repo = RepoName::parse("a/b").unwrap();
        let other = RepoName::parse("c").unwrap();
        let latest = Reference::parse("latest").unwrap();
        assert!(cache.get(&repo, &latest).is_none());
        cache.insert(&repo, &latest, record(1));
        cache.insert(&other, &latest, record(2));
        assert_eq!(cache.get(&repo, &latest).unwrap().payload, vec![1]);
        cache.invalidate(&repo);
        assert!(cache.get(&repo, &latest).is_none());
        assert_eq!(cache.get(&other, &latest).unwrap().payload, vec![2]);

        let off: ManifestCache = TtlCache::new(Duration::ZERO, 64);
        off.insert(&repo, &latest, record(1));
        assert!(off.get(&repo, &latest).is_none());
    }

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let cache: ManifestCache = TtlCache::new(Duration::from_millis(1), SHARDS);
        let repo = RepoName::parse("r").unwrap();
        let tag = Reference::parse("t").unwrap();
        cache.insert(&repo, &tag, record(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            cache.get(&repo, &tag).is_none(),
            "expired entries are not served"
        );

        let cache: ManifestCache = TtlCache::new(Duration::from_secs(60), SHARDS);
        for i in 0..100u8 {
            cache.insert(
                &repo,
                &Reference::parse(&format!("t{i}")).unwrap(),
                record(i),
            );
        }
        let held: usize = cache.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= SHARDS, "held {held}");
    }
}
