//! Encryption of the signing keys' private halves at rest.
//!
//! With a key-encryption key configured (`[auth] key_encryption_key_file`,
//! or `BERTH_KEY_ENCRYPTION_KEY`), the store holds each private key sealed
//! with XChaCha20-Poly1305 under that key, the key's kid as associated data
//! (so a sealed key copied into another row does not open), as
//! `berth-sealed-v1:` followed by the base64 of the 24-byte random nonce and
//! the ciphertext. A copy of the database (a backup, a replica, a dump
//! attached to a ticket) then signs nothing without the key-encryption key,
//! which lives elsewhere (a file mounted from a secret store, the
//! environment).
//!
//! Keys stored in plain text before a key-encryption key was configured are
//! read as they are and sealed at the next start (`MetaAuthStore::seal_signing_keys`).
//! A sealed key with no key-encryption key configured, or with another one,
//! is a clear error naming the setting, never a panic.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// What a sealed private key starts with; the version names the cipher and
/// layout, so a later one can be read next to this one.
pub const SEALED_PREFIX: &str = "berth-sealed-v1:";

const NONCE_BYTES: usize = 24;

/// Why a stored private key could not be read, or a key-encryption key
/// not parsed. Messages name the setting to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyEncryptionError {
    #[error(
        "signing key {0} is stored encrypted, and no key-encryption key is configured: \
         set [auth] key_encryption_key_file or BERTH_KEY_ENCRYPTION_KEY to the key it was encrypted with"
    )]
    NoKey(String),
    #[error(
        "signing key {0} does not decrypt with the configured key-encryption key \
         ([auth] key_encryption_key_file or BERTH_KEY_ENCRYPTION_KEY): it was encrypted with another \
         key, or the stored value is damaged"
    )]
    WrongKey(String),
    #[error(
        "the key-encryption key must be 32 bytes written as 64 hex digits or in base64 \
         (make one with `openssl rand -hex 32`)"
    )]
    BadKey,
}

/// The key that seals the signing keys' private halves. Its `Debug` never
/// shows it.
#[derive(Clone)]
pub struct KeyEncryptionKey([u8; 32]);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(***)")
    }
}

impl KeyEncryptionKey {
    /// Reads a key written as 64 hex digits or as base64 of 32 bytes
    /// (surrounding whitespace, such as a file's final newline, ignored).
    pub fn parse(text: &str) -> Result<KeyEncryptionKey, KeyEncryptionError> {
        let text = text.trim();
        let bytes = if text.len() == 64 {
            hex::decode(text).ok()
        } else {
            STANDARD.decode(text).ok()
        };
        bytes
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
            .map(KeyEncryptionKey)
            .ok_or(KeyEncryptionError::BadKey)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// Seals the private key `plain` of key `kid` for storage.
    pub fn seal(&self, kid: &str, plain: &str) -> String {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: kid.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message that fits in memory");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(bytes))
    }

    /// Opens a value [`KeyEncryptionKey::seal`] made for key `kid`.
    fn open(&self, kid: &str, sealed: &str) -> Result<String, KeyEncryptionError> {
        let wrong = || KeyEncryptionError::WrongKey(kid.to_string());
        let bytes = STANDARD.decode(sealed).map_err(|_| wrong())?;
        if bytes.len() < NONCE_BYTES {
            return Err(wrong());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let plain = self
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| wrong())?;
        String::from_utf8(plain).map_err(|_| wrong())
    }
}

/// Whether a stored private key is sealed (else it is plain PKCS#8 PEM).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// The plain private key of `kid` from what the store holds: a sealed
/// value opened with `key`, a plain one as it is.
pub fn unseal(
    key: Option<&KeyEncryptionKey>,
    kid: &str,
    stored: &str,
) -> Result<String, KeyEncryptionError> {
    match (stored.strip_prefix(SEALED_PREFIX), key) {
        (None, _) => Ok(stored.to_string()),
        (Some(_), None) => Err(KeyEncryptionError::NoKey(kid.to_string())),
        (Some(sealed), Some(key)) => key.open(kid, sealed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_parse_from_hex_or_base64_and_nothing_else() {
        let from_hex = KeyEncryptionKey::parse(&format!("  {HEX}\n")).unwrap();
        let base64 = STANDARD.encode(hex::decode(HEX).unwrap());
        let from_base64 = KeyEncryptionKey::parse(&base64).unwrap();
        assert_eq!(from_hex.0, from_base64.0);
        for bad in [
            "",
            "short",
            &HEX[..62],
            &format!("{HEX}00"),
            &"zz".repeat(32),
        ] {
            assert_eq!(
                KeyEncryptionKey::parse(bad).unwrap_err(),
                KeyEncryptionError::BadKey,
                "{bad:?}"
            );
        }
        assert_eq!(format!("{from_hex:?}"), "KeyEncryptionKey(***)");
    }

    #[test]
    fn sealed_keys_open_only_with_their_key_and_kid() {
        let key = KeyEncryptionKey::parse(HEX).unwrap();
        let other = KeyEncryptionKey::parse(&"ab".repeat(32)).unwrap();
        let plain = "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n";
        let sealed = key.seal("kid-1", plain);
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("secret"));
        assert_ne!(sealed, key.seal("kid-1", plain), "a fresh nonce each time");
        assert_eq!(unseal(Some(&key), "kid-1", &sealed).unwrap(), plain);
        // (key, kid, stored, expected error)
        let table = [
            (
                Some(&other),
                "kid-1",
                sealed.clone(),
                KeyEncryptionError::WrongKey("kid-1".into()),
            ),
            (
                Some(&key),
                "kid-2",
                sealed.clone(),
                KeyEncryptionError::WrongKey("kid-2".into()),
            ),
            (
                None,
                "kid-1",
                sealed.clone(),
                KeyEncryptionError::NoKey("kid-1".into()),
            ),
            (
                Some(&key),
                "kid-1",
                format!("{SEALED_PREFIX}not base64!"),
                KeyEncryptionError::WrongKey("kid-1".into()),
            ),
            (
                Some(&key),
                "kid-1",
                format!("{SEALED_PREFIX}AAAA"),
                KeyEncryptionError::WrongKey("kid-1".into()),
            ),
        ];
        for (key, kid, stored, expected) in table {
            assert_eq!(
                unseal(key, kid, &stored).unwrap_err(),
                expected,
                "{kid} {stored}"
            );
        }
        // Plain keys read as they are, with or without a key.
        assert_eq!(unseal(None, "kid-1", plain).unwrap(), plain);
        assert_eq!(unseal(Some(&key), "kid-1", plain).unwrap(), plain);
        assert!(KeyEncryptionError::NoKey("k".into())
            .to_string()
            .contains("key_encryption_key_file"));
    }
}
