//! The `Range` header of a blob GET, against a blob of any size: parsing
//! never panics, and a part it serves is non-empty and lies within the
//! blob, so reading it can neither overflow nor run past the end; an empty
//! blob has no part to serve.
//!
//! Input: the blob size in decimal, a newline, then the header value.
#![no_main]

use berth_oci::range::{parse_range_header, RangeRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let (size, header) = input.split_once('\n').unwrap_or(("", input));
    let size = size.parse::<u64>().unwrap_or(input.len() as u64);
    if let RangeRequest::Part(range) = parse_range_header(header, size) {
        assert!(range.start < range.end, "{header:?} on {size}: {range:?}");
        assert!(range.end <= size, "{header:?} on {size}: {range:?}");
        assert_eq!(range.len(), range.end - range.start);
    }
});
