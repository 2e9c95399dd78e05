//! Passwords verified recently, so that a client sending Basic credentials
//! on every request (the management API's callers, `curl`, some CI tools)
//! costs one argon2 verification per few minutes instead of one per request.
//! At the OWASP parameters ([`crate::password`]) a verification is ~40 ms of
//! one core, so without this a 2-core node answers at most ~50 such requests
//! a second.
//!
//! What is remembered is a keyed hash (HMAC-SHA256 under a random key made
//! when the process starts, never stored) of the name and password, and the
//! stored password hash (PHC string) the password was verified against. A
//! hit needs both: the same name and password, and the user's password hash
//! still the one it was checked against. Changing or resetting a password
//! stores a new hash (a new salt), so the old password stops matching at
//! once, on every node; a disabled account is refused after the check, as
//! before. Only successes are remembered: a wrong password always costs a
//! full verification, and the throttle runs before any of this.
//!
//! The table is bounded ([`CAPACITY`] entries) and each entry lives at most
//! [`LIFETIME`], which bounds how long a process's memory holds something
//! cheaper to test guesses against than the argon2 hash in the database.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// How many verified passwords are remembered at most.
pub const CAPACITY: usize = 4096;
/// How long a verification is remembered.
pub const LIFETIME: Duration = Duration::from_secs(300);

type Key = [u8; 32];

/// Recently verified (name, password) pairs; see the module documentation.
#[derive(Debug)]
pub struct VerifiedPasswords {
    key: [u8; 32],
    entries: Mutex<HashMap<Key, Entry>>,
    capacity: usize,
    lifetime: Duration,
}

#[derive(Debug)]
struct Entry {
    /// The stored password hash the password was verified against.
    stored: String,
    at: Instant,
}

impl Default for VerifiedPasswords {
    fn default() -> VerifiedPasswords {
        VerifiedPasswords::new(CAPACITY, LIFETIME)
    }
}

impl VerifiedPasswords {
    pub fn new(capacity: usize, lifetime: Duration) -> VerifiedPasswords {
        VerifiedPasswords {
            key: rand::random(),
            entries: Mutex::new(HashMap::new()),
            capacity,
            lifetime,
        }
    }

    /// The entry key of a name and password: the name's length first, so
    /// that no two different pairs run together into the same input.
    fn key_of(&self, name: &str, password: &str) -> Key {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(&(name.len() as u64).to_be_bytes());
        mac.update(name.as_bytes());
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `password` was verified for `name` against the stored hash
    /// `stored` within the lifetime, as of `now`.
    pub fn holds(&self, name: &str, password: &str, stored: &str, now: Instant) -> bool {
        let key = self.key_of(name, password);
        let mut entries = self.entries();
        match entries.get(&key) {
            Some(entry) if now.saturating_duration_since(entry.at) < self.lifetime => {
                // Plain equality is enough: the stored hash is not secret
                // from this process, and a caller who does not know the
                // password never reaches an entry.
                entry.stored == stored
            }
            Some(_) => {
                entries.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Remembers that `password` is `name`'s, verified against `stored` at
    /// `now`. When the table is full, expired entries go first; if it is
    /// still full, nothing is remembered (the next login verifies again).
    pub fn remember(&self, name: &str, password: &str, stored: &str, now: Instant) {
        let key = self.key_of(name, password);
        let lifetime = self.lifetime;
        let mut entries = self.entries();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, entry| now.saturating_duration_since(entry.at) < lifetime);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(
            key,
            Entry {
                stored: stored.to_string(),
                at: now,
            },
        );
    }

    /// How many entries the table holds (expired ones included).
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verification_holds_for_its_name_password_and_stored_hash_within_its_lifetime() {
        let verified = VerifiedPasswords::new(8, Duration::from_secs(60));
        let t0 = Instant::now();
        verified.remember("alice", "correct horse", "$argon2id$one", t0);
        // (name, password, stored hash, seconds later, holds)
        let cases: &[(&str, &str, &str, u64, bool)] = &[
            ("alice", "correct horse", "$argon2id$one", 0, true),
            ("alice", "correct horse", "$argon2id$one", 59, true),
            // Expired.
            ("alice", "correct horse", "$argon2id$one", 60, false),
            // Another password, another name, names and passwords run together.
            ("alice", "wrong horse", "$argon2id$one", 1, false),
            ("bob", "correct horse", "$argon2id$one", 1, false),
            ("alicecorrect", " horse", "$argon2id$one", 1, false),
            // The password was changed: the stored hash is another.
            ("alice", "correct horse", "$argon2id$two", 1, false),
        ];
        for &(name, password, stored, later, holds) in cases {
            let fresh = VerifiedPasswords::new(8, Duration::from_secs(60));
            fresh.remember("alice", "correct horse", "$argon2id$one", t0);
            let now = t0 + Duration::from_secs(later);
            assert_eq!(
                fresh.holds(name, password, stored, now),
                holds,
                "{name:?} {password:?} {stored:?} +{later}s"
            );
        }
        // An expired entry is dropped when it is found.
        assert!(!verified.holds(
            "alice",
            "correct horse",
            "$argon2id$one",
            t0 + Duration::from_secs(61)
        ));
        assert!(verified.is_empty());
    }

    #[test]
    fn the_table_never_grows_past_its_capacity() {
        let verified = VerifiedPasswords::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..10 {
            verified.remember(&format!("user-{i}"), "pw", "$h", t0);
            assert!(verified.len() <= 3);
        }
        // Full of live entries: a new one is not remembered, the old ones stay.
        assert!(verified.holds("user-0", "pw", "$h", t0));
        assert!(!verified.holds("user-9", "pw", "$h", t0));
        // Once they expire, room is made for new ones.
        let later = t0 + Duration::from_secs(61);
        verified.remember("user-9", "pw", "$h", later);
        assert!(verified.holds("user-9", "pw", "$h", later));
        assert_eq!(verified.len(), 1);
    }

    #[test]
    fn two_processes_key_their_tables_differently() {
        let (one, two) = (VerifiedPasswords::default(), VerifiedPasswords::default());
        assert_ne!(one.key_of("alice", "pw"), two.key_of("alice", "pw"));
    }
}
