//! Test content: pseudo-random blobs, their digests, and small OCI images.
//!
//! Content is pseudo-random so that no layer of the stack (filesystem,
//! network, a registry that compresses) gets an unrealistic shortcut, and it
//! is derived from a seed so that setup data is identical on every run (a
//! second run finds it already pushed) while measured pushes use a fresh seed
//! (a second run cannot be answered by deduplication).

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A blob and its digest, computed once before any measurement.
#[derive(Clone)]
pub struct Blob {
    pub data: Bytes,
    /// `sha256:<hex>`, the form used in URLs and manifests.
    pub digest: String,
}

impl Blob {
    pub fn new(data: Bytes) -> Blob {
        let digest = sha256_digest(&data);
        Blob { data, digest }
    }

    /// A blob of `length` pseudo-random bytes determined by `seed`.
    pub fn random(length: usize, seed: u64) -> Blob {
        Blob::new(Bytes::from(random_bytes(length, seed)))
    }
}

/// A complete single-layer image: layer, config and the manifest naming both.
pub struct Image {
    pub layer: Blob,
    pub config: Blob,
    pub manifest: Blob,
}

impl Image {
    /// A small image whose layer has `layer_length` bytes. Different seeds give
    /// images that share no blob, as distinct CI builds would.
    pub fn small(layer_length: usize, seed: u64) -> Image {
        let layer = Blob::random(layer_length, seed);
        let config_json = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "berth-bench.seed": seed.to_string() } },
            "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
        });
        let config = Blob::new(Bytes::from(config_json.to_string()));
        let manifest_json = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": config.digest,
                "size": config.data.len(),
            },
            "layers": [{
                "mediaType": OCI_LAYER,
                "digest": layer.digest,
                "size": layer.data.len(),
            }],
        });
        let manifest = Blob::new(Bytes::from(manifest_json.to_string()));
        Image {
            layer,
            config,
            manifest,
        }
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", to_hex(&Sha256::digest(data)))
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[(byte >> 4) as usize] as char);
        text.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    text
}

/// Fills a buffer with xorshift64* output. It runs at several GB/s, so even
/// the 512 MiB blobs cost well under a second to make, and it needs no
/// dependency.
pub fn random_bytes(length: usize, seed: u64) -> Vec<u8> {
    // splitmix64 is a bijection, so distinct seeds give distinct streams; a
    // zero state would make xorshift emit zeros forever, hence the fallback.
    let mut state = match splitmix64(seed) {
        0 => 1,
        state => state,
    };
    let mut data = vec![0u8; length];
    for chunk in data.chunks_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    data
}

/// Combines several numbers (run nonce, scenario, index) into one seed.
pub fn seed(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x5EED, |accumulated, part| splitmix64(accumulated ^ part))
}

/// The finalizer of SplitMix64: a cheap bijective mixing of 64 bits.
fn splitmix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn same_seed_gives_same_image_and_different_seeds_share_nothing() {
        let first = Image::small(4096, 7);
        let again = Image::small(4096, 7);
        let other = Image::small(4096, 8);
        assert_eq!(first.manifest.digest, again.manifest.digest);
        assert_ne!(first.layer.digest, other.layer.digest);
        assert_ne!(first.config.digest, other.config.digest);
        assert_eq!(random_bytes(13, 1).len(), 13);
    }
}
