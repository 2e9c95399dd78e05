//! User passwords: argon2id hashes in PHC string form
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), which carry their own
//! parameters, so raising the cost later only affects new hashes and
//! [`PasswordCheck::Valid::needs_rehash`] tells when to upgrade an old one.
//!
//! Parameters: argon2id, 19 MiB of memory, 2 passes, 1 lane, 16-byte random salt,
//! 32-byte output: the OWASP password-storage recommendation. It costs tens of
//! milliseconds and 19 MiB per login on one core, which a 2-core server can
//! afford for interactive logins (clients log in once and then use tokens),
//! while making each offline guess as expensive. Login throttling
//! ([`crate::throttle`]) keeps online guessing from turning that cost into a
//! denial of service.

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use rand::distr::{Alphanumeric, SampleString};

use crate::error::AuthError;
use crate::model::Secret;

/// Memory cost in KiB (19 MiB).
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Number of passes over the memory.
pub const ITERATIONS: u32 = 2;
/// Degree of parallelism. One lane: concurrent logins already use the cores.
pub const PARALLELISM: u32 = 1;

/// Shortest password accepted for a new password (NIST SP 800-63B's minimum).
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted: a bound so a request cannot make us hash megabytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Length of generated passwords: 24 base62 characters, about 143 bits.
const GENERATED_PASSWORD_LEN: usize = 24;

/// The outcome of [`verify_password`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The password matches. If `needs_rehash`, the stored hash uses weaker
    /// parameters than today's, and the caller should store [`hash_password`]'s
    /// result for the same password.
    Valid { needs_rehash: bool },
    /// Wrong password, or a stored hash we cannot read (never a match).
    Invalid,
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with a fresh random salt into a PHC string.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    hasher()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

/// Checks a password against a stored PHC string. The comparison inside
/// argon2 is constant-time.
pub fn verify_password(password: &str, stored: &str) -> PasswordCheck {
    if password.len() > MAX_PASSWORD_LEN {
        return PasswordCheck::Invalid;
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return PasswordCheck::Invalid;
    };
    if hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return PasswordCheck::Invalid;
    }
    let needs_rehash = parsed.algorithm.as_str() != "argon2id"
        || match Params::try_from(&parsed) {
            Ok(params) => {
                params.m_cost() < MEMORY_KIB
                    || params.t_cost() < ITERATIONS
                    || params.p_cost() < PARALLELISM
            }
            Err(_) => true,
        };
    PasswordCheck::Valid { needs_rehash }
}

/// Spends the time of one verification without a real hash, for logins to
/// unknown accounts, so response time does not reveal which accounts exist.
pub fn dummy_verify(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash_password("berth-dummy-password").unwrap_or_default());
    let _ = verify_password(password, stored);
}

/// Checks a new password before hashing it.
pub fn validate_new_password(password: &str) -> Result<(), AuthError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AuthError::WeakPassword("shorter than 8 characters"));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AuthError::WeakPassword("longer than 1024 bytes"));
    }
    Ok(())
}

/// A random password for the first administrator when none is configured:
/// printed once at first start, then only its hash is kept.
pub fn generate_password() -> Secret {
    Secret::new(Alphanumeric.sample_string(&mut rand::rng(), GENERATED_PASSWORD_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let stored = hash_password("correct horse").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert_eq!(
            verify_password("correct horse", &stored),
            PasswordCheck::Valid {
                needs_rehash: false
            }
        );
        assert_eq!(
            verify_password("correct horsf", &stored),
            PasswordCheck::Invalid
        );
        assert_eq!(verify_password("", &stored), PasswordCheck::Invalid);
        // Salts are random, so the same password hashes differently.
        assert_ne!(stored, hash_password("correct horse").unwrap());
    }

    #[test]
    fn weaker_hashes_verify_and_ask_for_rehash() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw")
        .unwrap()
        .to_string();
        assert_eq!(
            verify_password("pw", &weak),
            PasswordCheck::Valid { needs_rehash: true }
        );
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(MEMORY_KIB, 2, 1, None).unwrap(),
        )
        .hash_password(b"pw")
        .unwrap()
        .to_string();
        assert_eq!(
            verify_password("pw", &argon2i),
            PasswordCheck::Valid { needs_rehash: true }
        );
    }

    #[test]
    fn garbage_hashes_never_match() {
        for stored in [
            "",
            "plain",
            "$argon2id$v=19$m=19456,t=2,p=1$bad",
            "$2b$12$abcdefghijklmnopqrstuv",
        ] {
            assert_eq!(
                verify_password("plain", stored),
                PasswordCheck::Invalid,
                "{stored}"
            );
        }
        dummy_verify("anything");
    }

    #[test]
    fn new_password_rules_and_generation() {
        assert!(validate_new_password("short").is_err());
        assert!(validate_new_password(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
        validate_new_password("long enough").unwrap();
        let generated = generate_password();
        assert_eq!(generated.expose().len(), GENERATED_PASSWORD_LEN);
        assert!(generated
            .expose()
            .chars()
            .all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(generated, generate_password());
        validate_new_password(generated.expose()).unwrap();
    }
}
