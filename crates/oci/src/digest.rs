//! Content digests: `algorithm ":" encoded`, as defined by the OCI image spec.
//!
//! Berth accepts the two registered algorithms, `sha256` and `sha512`. The encoded
//! part must be lowercase hex of exactly the algorithm's length, so a digest has
//! exactly one spelling and can be used as a key in storage and metadata.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A hash algorithm registered by the OCI image spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used before the colon in a digest string.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The number of hex characters in an encoded digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A fresh incremental hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Hashes a whole byte slice at once.
    pub fn digest_of(self, bytes: &[u8]) -> Digest {
        let mut hasher = self.hasher();
        hasher.update(bytes);
        hasher.finish()
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, DigestError> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other if is_valid_algorithm_grammar(other) => {
                Err(DigestError::UnsupportedAlgorithm(other.to_string()))
            }
            _ => Err(DigestError::Malformed),
        }
    }
}

/// The image spec's grammar for algorithm names: `[a-z0-9]+([+._-][a-z0-9]+)*`.
fn is_valid_algorithm_grammar(s: &str) -> bool {
    !s.is_empty()
        && s.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Why a string is not a digest Berth accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest is not of the form algorithm:hex")]
    Malformed,
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("digest has the wrong length or is not lowercase hex")]
    BadEncoding,
}

/// A validated content digest.
///
/// The string form is stored once so that formatting and hashing are free; the
/// type guarantees it is `sha256:` + 64 or `sha512:` + 128 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    text: Box<str>,
}

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (algorithm, encoded) = s.split_once(':').ok_or(DigestError::Malformed)?;
        let algorithm: Algorithm = algorithm.parse()?;
        if encoded.len() != algorithm.hex_len()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::BadEncoding);
        }
        Ok(Digest {
            algorithm,
            text: s.into(),
        })
    }

    /// Builds a digest from raw hash output.
    pub fn from_raw(algorithm: Algorithm, raw: &[u8]) -> Self {
        let text = format!("{}:{}", algorithm.as_str(), hex::encode(raw));
        Digest {
            algorithm,
            text: text.into_boxed_str(),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part after the colon.
    pub fn encoded(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    /// The full `algorithm:hex` form.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, DigestError> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher for one of the supported algorithms.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest::from_raw(Algorithm::Sha256, &h.finalize()[..]),
            Hasher::Sha512(h) => Digest::from_raw(Algorithm::Sha512, &h.finalize()[..]),
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hasher({})", self.algorithm().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_EMPTY: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_table() {
        let long512 = format!("sha512:{}", "a".repeat(128));
        let cases: Vec<(&str, Result<(), DigestError>)> = vec![
            (SHA256_EMPTY, Ok(())),
            (&long512, Ok(())),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                Err(DigestError::BadEncoding),
            ),
            ("sha256:e3b0", Err(DigestError::BadEncoding)),
            (
                "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                Err(DigestError::BadEncoding),
            ),
            ("sha256", Err(DigestError::Malformed)),
            ("", Err(DigestError::Malformed)),
            (":abc", Err(DigestError::Malformed)),
            ("SHA256:abc", Err(DigestError::Malformed)),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                Err(DigestError::UnsupportedAlgorithm("md5".into())),
            ),
            (
                "sha256+b64u:abc",
                Err(DigestError::UnsupportedAlgorithm("sha256+b64u".into())),
            ),
            ("sha256:zz", Err(DigestError::BadEncoding)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Digest::parse(input).map(|_| ()),
                expected,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn hashing_matches_known_values() {
        assert_eq!(Algorithm::Sha256.digest_of(b"").as_str(), SHA256_EMPTY);
        let d = Algorithm::Sha512.digest_of(b"abc");
        assert_eq!(
            d.encoded(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        let mut h = Algorithm::Sha256.hasher();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), Algorithm::Sha256.digest_of(b"abc"));
    }

    #[test]
    fn accessors_and_serde_round_trip() {
        let d = Digest::parse(SHA256_EMPTY).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.encoded().len(), 64);
        let json = serde_json::to_string(&d).unwrap();
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:nope\"").is_err());
    }
}

/// Hash states survive between requests (and between nodes) in serialized form,
/// so a chunked upload never has to re-read what it already hashed.
impl Hasher {
    /// Serializes the running state: one algorithm byte, then the hash core state.
    pub fn to_state(&self) -> Vec<u8> {
        use sha2::digest::common::hazmat::SerializableState;
        match self {
            Hasher::Sha256(h) => {
                let mut out = vec![1u8];
                out.extend_from_slice(&h.serialize()[..]);
                out
            }
            Hasher::Sha512(h) => {
                let mut out = vec![2u8];
                out.extend_from_slice(&h.serialize()[..]);
                out
            }
        }
    }

    /// Restores a state written by [`Hasher::to_state`]; `None` if it is corrupt.
    pub fn from_state(state: &[u8]) -> Option<Hasher> {
        use sha2::digest::common::hazmat::SerializableState;
        let (&tag, rest) = state.split_first()?;
        match tag {
            1 => {
                let array = rest.try_into().ok()?;
                sha2::Sha256::deserialize(array).ok().map(Hasher::Sha256)
            }
            2 => {
                let array = rest.try_into().ok()?;
                sha2::Sha512::deserialize(array).ok().map(Hasher::Sha512)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn state_round_trip_continues_the_hash() {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut first = algorithm.hasher();
            first.update(b"hello ");
            let state = first.to_state();
            let mut resumed = Hasher::from_state(&state).expect("state restores");
            resumed.update(b"world");
            assert_eq!(resumed.finish(), algorithm.digest_of(b"hello world"));
        }
        assert!(Hasher::from_state(&[]).is_none());
        assert!(Hasher::from_state(&[1, 2, 3]).is_none());
        assert!(Hasher::from_state(&[9; 105]).is_none());
    }
}
