//! Manifests and indexes as pushed: any bytes under any of the content types
//! clients send. Parsing and validation never panic, and what is accepted
//! has the shape of its kind.
//!
//! Input: one byte choosing the `Content-Type` (the ASCII digits `0` to `7`
//! choose entries 0 to 7 of the list below), then the manifest's bytes.
#![no_main]

use berth_oci::{ManifestKind, ParsedManifest};
use libfuzzer_sys::fuzz_target;

/// The `Content-Type` a push may carry, chosen by the input's first byte.
const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/json"),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    Some("text/plain"),
];

fuzz_target!(|input: &[u8]| {
    let Some((&choice, bytes)) = input.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[choice as usize % CONTENT_TYPES.len()];
    let Ok(parsed) = ParsedManifest::parse(bytes, content_type) else {
        return;
    };
    assert_eq!(ManifestKind::from_media_type(parsed.media_type), Some(parsed.kind));
    if parsed.kind.is_index() {
        assert!(parsed.config.is_none() && parsed.layers.is_empty());
    } else {
        assert!(parsed.config.is_some() && parsed.manifests.is_empty());
        assert!(parsed.required_blobs().count() <= parsed.layers.len() + 1);
    }
});
