//! The `Content-Range` header of an upload PATCH: parsing never panics, and
//! a range it accepts is non-empty and does not wrap around.
#![no_main]

use berth_oci::range::parse_content_range;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|header: &str| {
    if let Ok(range) = parse_content_range(header) {
        assert!(range.start < range.end, "{header:?}: {range:?}");
        assert_eq!(range.len(), range.end - range.start);
    }
});
