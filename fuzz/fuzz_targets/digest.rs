//! Digests, from paths, `?digest=` and manifests: parsing never panics, and
//! a digest is its input in canonical form (known algorithm, lowercase hex
//! of exactly the algorithm's length).
#![no_main]

use berth_oci::Digest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let Ok(digest) = Digest::parse(input) else {
        return;
    };
    assert_eq!(digest.as_str(), input);
    let algorithm = digest.algorithm();
    assert_eq!(
        input,
        format!("{}:{}", algorithm.as_str(), digest.encoded())
    );
    assert_eq!(digest.encoded().len(), algorithm.hex_len());
    assert!(digest
        .encoded()
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(Digest::parse(digest.as_str()).ok(), Some(digest));
});
