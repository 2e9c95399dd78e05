//! What follows `/manifests/`: a tag or a digest. Parsing never panics, and
//! the two readings agree with the tag and digest parsers on their own.
#![no_main]

use berth_oci::{Digest, Reference, Tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    match Reference::parse(input) {
        Ok(Reference::Digest(digest)) => {
            assert_eq!(digest.as_str(), input);
            assert_eq!(Digest::parse(input).ok(), Some(digest));
        }
        Ok(Reference::Tag(tag)) => {
            assert_eq!(tag.as_str(), input);
            assert_eq!(Tag::parse(input).ok(), Some(tag));
            assert!(Digest::parse(input).is_err());
        }
        Err(_) => {
            assert!(Tag::parse(input).is_err() || input.contains(':'));
        }
    }
});
