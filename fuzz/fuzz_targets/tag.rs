//! Tags, from `/v2/<name>/manifests/<tag>` and tag list paging: parsing
//! never panics, and a tag is the input itself, at most 128 characters,
//! starting with a word character.
#![no_main]

use berth_oci::Tag;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let Ok(tag) = Tag::parse(input) else {
        return;
    };
    assert_eq!(tag.as_str(), input);
    assert!(!input.is_empty() && input.len() <= 128);
    let first = input.as_bytes()[0];
    assert!(first.is_ascii_alphanumeric() || first == b'_', "{input:?}");
    assert!(input
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')));
    assert_eq!(Tag::parse(tag.as_str()).ok(), Some(tag));
});
