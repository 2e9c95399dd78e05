//! Opaque secrets: access tokens (robots), refresh tokens and console sessions.
//!
//! A secret is a recognizable prefix plus 43 random base62 characters (about
//! 256 bits): `berth_at_…` for access tokens, `berth_rt_…` for refresh tokens,
//! `berth_cs_…` for the web console's session cookies.
//! The prefix lets secret scanners and people recognize a leaked Berth token,
//! and lets the server tell a token from a password at login.
//!
//! Only the SHA-256 of a secret is stored ([`SecretHash`]). A slow password
//! hash like argon2 exists to make guessing a *low-entropy* password from its
//! hash expensive; a 256-bit random secret cannot be guessed however fast the
//! hash is, so one SHA-256 is enough, and it keeps every token check cheap
//! (robots authenticate on every token request, not once per session).
//! Comparisons of hashes are constant-time ([`SecretHash::matches`]).

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use crate::error::AuthError;
use crate::model::Secret;

/// Prefix of access (robot) tokens.
pub const ACCESS_TOKEN_PREFIX: &str = "berth_at_";
/// Prefix of refresh tokens.
pub const REFRESH_TOKEN_PREFIX: &str = "berth_rt_";
/// Prefix of console session secrets (the cookie's value).
pub const SESSION_PREFIX: &str = "berth_cs_";
/// Random characters after the prefix: 43 × log2(62) ≈ 256 bits.
const RANDOM_CHARS: usize = 43;

/// The SHA-256 of a secret: what the store keeps instead of the secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    pub fn of(secret: &str) -> SecretHash {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether `presented` is the secret this is the hash of, compared in
    /// constant time so response timing reveals nothing about the stored hash.
    pub fn matches(&self, presented: &str) -> bool {
        SecretHash::of(presented).0.ct_eq(&self.0).into()
    }

    /// Lowercase hex, for storage.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<SecretHash> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).ok()?;
        Some(SecretHash(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A hash is not secret, but a short form keeps logs readable.
        write!(f, "SecretHash({}…)", &self.to_hex()[..8])
    }
}

/// Generates a new access token: the secret, to show once, and its hash, to store.
pub fn generate_access_token() -> (Secret, SecretHash) {
    generate(ACCESS_TOKEN_PREFIX)
}

/// Generates a new refresh token: the secret, to send once, and its hash, to store.
pub fn generate_refresh_token() -> (Secret, SecretHash) {
    generate(REFRESH_TOKEN_PREFIX)
}

/// Generates a new console session secret: the cookie's value, sent once,
/// and its hash, to store.
pub fn generate_session_secret() -> (Secret, SecretHash) {
    generate(SESSION_PREFIX)
}

/// Whether a cookie value is shaped like a console session secret, so
/// anything else is refused before the store is asked.
pub fn looks_like_session_secret(s: &str) -> bool {
    looks_like(s, SESSION_PREFIX)
}

/// The CSRF token of the console session whose cookie holds `secret`:
/// derived from the secret, so it needs no storage and dies with the
/// session, and one way, so a page that shows it reveals nothing of the
/// cookie.
pub fn session_csrf_token(secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"berth console csrf\0");
    hasher.update(secret.as_bytes());
    hex::encode(hasher.finalize())
}

/// Whether `presented` is the CSRF token of the session of `secret`,
/// compared in constant time.
pub fn session_csrf_matches(secret: &str, presented: &str) -> bool {
    let expected = session_csrf_token(secret);
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

fn generate(prefix: &str) -> (Secret, SecretHash) {
    // ThreadRng is a CSPRNG seeded from the operating system.
    let secret = format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::rng(), RANDOM_CHARS)
    );
    let hash = SecretHash::of(&secret);
    (Secret::new(secret), hash)
}

/// Whether a presented password is shaped like an access token, so the login
/// path checks it against tokens rather than user passwords.
pub fn looks_like_access_token(s: &str) -> bool {
    looks_like(s, ACCESS_TOKEN_PREFIX)
}

/// Whether a string is shaped like a refresh token.
pub fn looks_like_refresh_token(s: &str) -> bool {
    looks_like(s, REFRESH_TOKEN_PREFIX)
}

fn looks_like(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == RANDOM_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// How long a token lives, as given on the command line: `90m`, `12h`, `30d`,
/// `4w`, or `never`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    Never,
    After(Duration),
}

impl Expiry {
    pub fn parse(s: &str) -> Result<Expiry, AuthError> {
        let bad = || AuthError::InvalidExpiry(s.to_string());
        if s == "never" {
            return Ok(Expiry::Never);
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = s.split_at(split);
        let number: i64 = number.parse().map_err(|_| bad())?;
        if number == 0 {
            return Err(bad());
        }
        let unit_seconds: i64 = match unit {
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(bad()),
        };
        // Beyond ~100 years an expiry is a typo, and the bound keeps the
        // arithmetic far from overflow.
        let seconds = number
            .checked_mul(unit_seconds)
            .filter(|s| *s <= 100 * 366 * 86_400)
            .ok_or_else(bad)?;
        Ok(Expiry::After(Duration::seconds(seconds)))
    }

    /// The expiry instant for a token created at `now`.
    pub fn expires_at(self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        match self {
            Expiry::Never => None,
            Expiry::After(duration) => Some(now + duration),
        }
    }
}

/// Whether something expiring at `expires_at` is expired at `now`. The expiry
/// instant itself is already expired.
pub fn is_expired(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    expires_at.is_some_and(|at| now >= at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_prefix_entropy_and_hash() {
        let (secret, hash) = generate_access_token();
        let s = secret.expose();
        assert!(s.starts_with("berth_at_") && s.len() == 9 + 43, "{s}");
        assert!(looks_like_access_token(s));
        assert!(!looks_like_refresh_token(s));
        assert!(hash.matches(s));
        assert!(!hash.matches(&s[..s.len() - 1]));
        assert!(!hash.matches(""));
        assert_ne!(generate_access_token().0, secret);
        let (refresh, refresh_hash) = generate_refresh_token();
        assert!(looks_like_refresh_token(refresh.expose()));
        assert!(refresh_hash.matches(refresh.expose()));
        assert!(!looks_like_access_token("berth_at_short"));
        assert!(!looks_like_access_token("hunter2"));
    }

    #[test]
    fn hashes_round_trip_as_hex() {
        let hash = SecretHash::of("abc");
        assert_eq!(
            hash.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(SecretHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(SecretHash::from_hex("zz"), None);
        assert_eq!(format!("{hash:?}"), "SecretHash(ba7816bf…)");
    }

    #[test]
    fn expiry_table() {
        let table: &[(&str, Option<Expiry>)] = &[
            ("30d", Some(Expiry::After(Duration::days(30)))),
            ("12h", Some(Expiry::After(Duration::hours(12)))),
            ("90m", Some(Expiry::After(Duration::minutes(90)))),
            ("2w", Some(Expiry::After(Duration::weeks(2)))),
            ("never", Some(Expiry::Never)),
            ("0d", None),
            ("30", None),
            ("d", None),
            ("30s", None),
            ("-1d", None),
            ("1.5d", None),
            ("30 d", None),
            ("99999999999999999999d", None),
            ("40000d", None),
            ("", None),
        ];
        for (input, expected) in table {
            assert_eq!(Expiry::parse(input).ok(), *expected, "{input:?}");
        }
    }

    #[test]
    fn expiry_instants() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(1000);
        assert_eq!(Expiry::Never.expires_at(now), None);
        let at = Expiry::parse("1h").unwrap().expires_at(now);
        assert_eq!(at, Some(now + Duration::hours(1)));
        assert!(!is_expired(at, now));
        assert!(!is_expired(at, now + Duration::minutes(59)));
        assert!(is_expired(at, now + Duration::hours(1)));
        assert!(!is_expired(None, now + Duration::weeks(5000)));
    }
}
