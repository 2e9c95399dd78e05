//! Failed-login throttling, per (account, source) and per source.
//!
//! Each key counts consecutive failures. The first few are free; after that
//! each failure locks the key for a window that doubles with every further
//! failure, up to a maximum. While a key is locked, the server refuses
//! logins for it without checking the password, so a locked key cannot be
//! guessed at, and the argon2 cost is not spent.
//!
//! The keys:
//! - **(account, source)**: guesses at one account from one client address.
//!   Counting per account alone let anyone lock any user or robot out with a
//!   wrong guess every few minutes (issue 11); keyed with the source, a
//!   guesser locks only their own attempts, and the account's owner logs in
//!   from wherever they are.
//! - **source**: everything tried from one client address, with more free
//!   failures (many people share an office NAT), so one address spraying
//!   guesses at many accounts is slowed too.
//!
//! High-entropy secrets (access tokens, refresh tokens: 256 bits) cannot be
//! guessed, so their logins are keyed by source only (`account: None`);
//! throttling them by account would only lock CI robots and pull secrets
//! out. A success clears the (account, source) count, not the source's: one
//! good login from an address spraying guesses at many accounts should not
//! reset it.
//!
//! Accounts are throttled whether or not they exist, so throttling does not
//! reveal which names are real. IPv6 addresses are grouped by /64, since one
//! client usually holds a whole /64. The source is the client's address as
//! the server resolved it (through trusted proxies, `berth_server`'s
//! `origin` module), never a header the client chose.
//!
//! Memory is bounded: idle keys are forgotten after `forget_after`, and when a
//! table is full the oldest entries are evicted. Eviction can only *lower* a
//! count, i.e. it errs towards letting a login be tried, never towards locking
//! someone out. Time is a parameter (`now`), so tests use fake time.
//!
//! The limiter is per process; in a cluster each node throttles on its own,
//! which multiplies an attacker's rate by the number of nodes but keeps the
//! login path free of shared state.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Limits for one kind of key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Consecutive failures allowed before the first lockout.
    pub free_failures: u32,
    /// The first lockout window; each further failure doubles it.
    pub base_lockout: Duration,
    /// The longest lockout window.
    pub max_lockout: Duration,
}

/// Throttling settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Per (account, source): 5 free failures, then 1 s, 2 s, 4 s … up to
    /// 15 minutes.
    pub account: Limits,
    /// Per source address: more free failures (many people share an office
    /// NAT), same growth.
    pub address: Limits,
    /// A key with no failure for this long (and not locked) is forgotten.
    pub forget_after: Duration,
    /// Most keys kept per table ((account, source) pairs, sources).
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            account: Limits {
                free_failures: 5,
                base_lockout: Duration::from_secs(1),
                max_lockout: Duration::from_secs(15 * 60),
            },
            address: Limits {
                free_failures: 20,
                base_lockout: Duration::from_secs(1),
                max_lockout: Duration::from_secs(15 * 60),
            },
            forget_after: Duration::from_secs(60 * 60),
            max_entries: 10_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// The limiter. Not internally synchronized: the server keeps it behind a
/// mutex, held only for these short, non-async calls.
///
/// `account` is `None` for a login with a high-entropy secret (an access
/// token), which is throttled by its source only.
#[derive(Debug)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    accounts: HashMap<(String, IpAddr), Entry>,
    addresses: HashMap<IpAddr, Entry>,
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> LoginThrottle {
        LoginThrottle {
            config,
            accounts: HashMap::new(),
            addresses: HashMap::new(),
        }
    }

    /// Whether a login for `account` from `address` may be tried at `now`;
    /// `Err(retry_after)` when the pair or the address is locked (the server
    /// answers 429 with `Retry-After`, or 401 without checking the password).
    pub fn check(
        &self,
        account: Option<&str>,
        address: IpAddr,
        now: Instant,
    ) -> Result<(), Duration> {
        let locked = |entry: Option<&Entry>| {
            entry
                .and_then(|e| e.locked_until)
                .filter(|until| *until > now)
                .map(|until| until - now)
        };
        let source = address_key(address);
        let pair = account.and_then(|account| self.accounts.get(&(account.to_string(), source)));
        let wait = locked(pair).max(locked(self.addresses.get(&source)));
        match wait {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Records a failed login.
    pub fn record_failure(&mut self, account: Option<&str>, address: IpAddr, now: Instant) {
        let config = self.config;
        let source = address_key(address);
        if let Some(account) = account {
            fail(
                &mut self.accounts,
                (account.to_string(), source),
                &config.account,
                &config,
                now,
            );
        }
        fail(&mut self.addresses, source, &config.address, &config, now);
    }

    /// Records a successful login: the account starts afresh from this source.
    pub fn record_success(&mut self, account: Option<&str>, address: IpAddr, _now: Instant) {
        if let Some(account) = account {
            self.accounts
                .remove(&(account.to_string(), address_key(address)));
        }
    }

    /// Number of ((account, source), source) keys remembered, for tests and
    /// metrics.
    pub fn tracked(&self) -> (usize, usize) {
        (self.accounts.len(), self.addresses.len())
    }
}

/// The key an address is counted under: IPv4 as is (also when mapped into
/// IPv6), IPv6 by its /64 prefix.
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

fn fail<K: Eq + Hash + Clone>(
    table: &mut HashMap<K, Entry>,
    key: K,
    limits: &Limits,
    config: &ThrottleConfig,
    now: Instant,
) {
    if !table.contains_key(&key) && table.len() >= config.max_entries {
        evict(table, config, now);
    }
    let entry = table.entry(key).or_insert(Entry {
        failures: 0,
        last_failure: now,
        locked_until: None,
    });
    if is_forgettable(entry, config, now) {
        *entry = Entry {
            failures: 0,
            last_failure: now,
            locked_until: None,
        };
    }
    entry.failures = entry.failures.saturating_add(1);
    entry.last_failure = now;
    if entry.failures > limits.free_failures {
        let doublings = (entry.failures - limits.free_failures - 1).min(31);
        let window = limits
            .base_lockout
            .saturating_mul(1 << doublings)
            .min(limits.max_lockout);
        entry.locked_until = Some(now + window);
    }
}

fn is_forgettable(entry: &Entry, config: &ThrottleConfig, now: Instant) -> bool {
    now.saturating_duration_since(entry.last_failure) >= config.forget_after
        && entry.locked_until.is_none_or(|until| until <= now)
}

/// Makes room in a full table: drops forgettable entries, then, if that was
/// not enough, the oldest quarter (so eviction work is amortized).
fn evict<K: Eq + Hash + Clone>(
    table: &mut HashMap<K, Entry>,
    config: &ThrottleConfig,
    now: Instant,
) {
    table.retain(|_, entry| !is_forgettable(entry, config, now));
    if table.len() < config.max_entries {
        return;
    }
    let mut by_age: Vec<(Instant, K)> = table
        .iter()
        .map(|(k, e)| (e.last_failure, k.clone()))
        .collect();
    by_age.sort_by_key(|(at, _)| *at);
    let drop = (config.max_entries / 4).max(1);
    for (_, key) in by_age.into_iter().take(drop) {
        table.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn small() -> ThrottleConfig {
        let limits = Limits {
            free_failures: 3,
            base_lockout: SECOND,
            max_lockout: 8 * SECOND,
        };
        ThrottleConfig {
            account: limits,
            address: Limits {
                free_failures: 5,
                ..limits
            },
            forget_after: 60 * SECOND,
            max_entries: 4,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let mut throttle = LoginThrottle::new(small());
        let t0 = Instant::now();
        let addr = ip("192.0.2.1");
        // Lockout after failure n (with 3 free): -, -, -, 1, 2, 4, 8, 8.
        let expected = [0, 0, 0, 1, 2, 4, 8, 8];
        let mut now = t0;
        for (i, seconds) in expected.into_iter().enumerate() {
            assert_eq!(
                throttle.check(Some("alice"), addr, now),
                Ok(()),
                "attempt {i} allowed"
            );
            throttle.record_failure(Some("alice"), addr, now);
            let wait = throttle
                .check(Some("alice"), addr, now)
                .err()
                .unwrap_or_default();
            assert_eq!(wait, seconds * SECOND, "after failure {}", i + 1);
            now += wait;
        }
        // Just before the window ends it is still locked; at its end it opens.
        throttle.record_failure(Some("alice"), addr, now);
        assert_eq!(
            throttle.check(Some("alice"), addr, now + 7 * SECOND),
            Err(SECOND)
        );
        assert_eq!(
            throttle.check(Some("alice"), addr, now + 8 * SECOND),
            Ok(())
        );
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let mut throttle = LoginThrottle::new(small());
        let now = Instant::now();
        let addr = ip("192.0.2.1");
        for _ in 0..4 {
            throttle.record_failure(Some("alice"), addr, now);
        }
        assert!(throttle.check(Some("alice"), addr, now).is_err());
        throttle.record_success(Some("alice"), addr, now + 5 * SECOND);
        assert_eq!(
            throttle.check(Some("alice"), addr, now + 5 * SECOND),
            Ok(())
        );
        // The address has 4 failures of its 5 free; two more lock it for everyone.
        throttle.record_failure(Some("bob"), addr, now + 5 * SECOND);
        throttle.record_failure(Some("carol"), addr, now + 5 * SECOND);
        assert_eq!(
            throttle.check(Some("dave"), addr, now + 5 * SECOND),
            Err(SECOND)
        );
        assert_eq!(
            throttle.check(Some("dave"), ip("192.0.2.2"), now + 5 * SECOND),
            Ok(())
        );
    }

    /// Issue 11: failures from one address used to lock the account from
    /// every address, so anyone could keep its owner out.
    #[test]
    fn an_account_is_locked_only_for_the_source_that_failed() {
        let mut throttle = LoginThrottle::new(small());
        let now = Instant::now();
        let attacker = ip("198.51.100.1");
        for _ in 0..4 {
            throttle.record_failure(Some("alice"), attacker, now);
        }
        assert_eq!(throttle.check(Some("alice"), attacker, now), Err(SECOND));
        assert_eq!(
            throttle.check(Some("alice"), ip("203.0.113.9"), now),
            Ok(())
        );
        assert_eq!(throttle.check(Some("bob"), attacker, now), Ok(()));
        // The victim's own success from elsewhere does not free the attacker.
        throttle.record_success(Some("alice"), ip("203.0.113.9"), now);
        assert_eq!(throttle.check(Some("alice"), attacker, now), Err(SECOND));
    }

    /// High-entropy secrets are throttled by source only: any number of
    /// failures for a robot's name leaves it usable from elsewhere, and
    /// the failures still count against their source.
    #[test]
    fn token_logins_count_against_their_source_only() {
        let mut throttle = LoginThrottle::new(small());
        let now = Instant::now();
        let attacker = ip("198.51.100.1");
        for _ in 0..5 {
            throttle.record_failure(None, attacker, now);
        }
        assert_eq!(throttle.check(None, attacker, now), Ok(()));
        assert_eq!(throttle.tracked(), (0, 1));
        throttle.record_failure(None, attacker, now);
        assert_eq!(throttle.check(None, attacker, now), Err(SECOND));
        assert_eq!(throttle.check(Some("ci"), attacker, now), Err(SECOND));
        assert_eq!(throttle.check(None, ip("203.0.113.9"), now), Ok(()));
    }

    #[test]
    fn ipv6_is_grouped_by_64_and_mapped_ipv4_is_ipv4() {
        let mut throttle = LoginThrottle::new(small());
        let now = Instant::now();
        for i in 0..6 {
            throttle.record_failure(
                Some(&format!("user{i}")),
                ip(&format!("2001:db8:1:2::{i}")),
                now,
            );
        }
        assert!(throttle
            .check(Some("x"), ip("2001:db8:1:2:ffff::1"), now)
            .is_err());
        assert_eq!(
            throttle.check(Some("x"), ip("2001:db8:1:3::1"), now),
            Ok(())
        );
        assert_eq!(address_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn idle_entries_are_forgotten() {
        let mut throttle = LoginThrottle::new(small());
        let now = Instant::now();
        for _ in 0..3 {
            throttle.record_failure(Some("alice"), ip("192.0.2.1"), now);
        }
        // After the idle period the count starts again: the next failure is free.
        let later = now + 61 * SECOND;
        throttle.record_failure(Some("alice"), ip("192.0.2.1"), later);
        assert_eq!(
            throttle.check(Some("alice"), ip("192.0.2.1"), later),
            Ok(())
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut throttle = LoginThrottle::new(small());
        let mut now = Instant::now();
        for i in 0..100 {
            now += SECOND;
            throttle.record_failure(Some(&format!("user{i}")), ip(&format!("192.0.2.{i}")), now);
            let (accounts, addresses) = throttle.tracked();
            assert!(accounts <= 4 && addresses <= 4, "{accounts} {addresses}");
        }
        // The newest key survives eviction.
        throttle.record_failure(Some("user99"), ip("192.0.2.99"), now);
        throttle.record_failure(Some("user99"), ip("192.0.2.99"), now);
        throttle.record_failure(Some("user99"), ip("192.0.2.99"), now);
        assert!(throttle
            .check(Some("user99"), ip("192.0.2.99"), now)
            .is_err());
        // Forgettable entries go first.
        let much_later = now + 3600 * SECOND;
        throttle.record_failure(Some("fresh"), ip("192.0.2.250"), much_later);
        assert_eq!(throttle.tracked(), (1, 1));
    }

    #[test]
    fn default_config_is_sane() {
        let config = ThrottleConfig::default();
        assert!(config.address.free_failures > config.account.free_failures);
        let mut throttle = LoginThrottle::new(config);
        let now = Instant::now();
        for _ in 0..5 {
            throttle.record_failure(Some("alice"), ip("192.0.2.1"), now);
        }
        assert_eq!(throttle.check(Some("alice"), ip("192.0.2.1"), now), Ok(()));
        throttle.record_failure(Some("alice"), ip("192.0.2.1"), now);
        assert_eq!(
            throttle.check(Some("alice"), ip("192.0.2.1"), now),
            Err(SECOND)
        );
    }
}
