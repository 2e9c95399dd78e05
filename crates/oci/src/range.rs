//! Byte ranges as the spec uses them.
//!
//! - Blob GET takes an RFC 9110 `Range: bytes=first-last` header (one range only;
//!   `bytes=first-` and the suffix form `bytes=-count` included).
//! - Upload PATCH takes `Content-Range: first-last` (inclusive, no unit, as the
//!   spec writes it); the RFC form `bytes first-last/total` is accepted as well
//!   because some clients send it.

/// A half-open byte range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The header is syntactically wrong or asks for several ranges.
    #[error("malformed range header")]
    Malformed,
    /// The range does not overlap the content: HTTP 416.
    #[error("range not satisfiable")]
    NotSatisfiable,
}

/// Parses a `Range` header of a blob GET against a blob of `size` bytes.
///
/// Returns the satisfiable part of the range, clamped to the blob as RFC 9110
/// requires (`bytes=0-999999` on a 10-byte blob yields `[0, 10)`).
pub fn parse_range_header(value: &str, size: u64) -> Result<ByteRange, RangeError> {
    let spec = value
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::Malformed)?;
    if spec.contains(',') {
        return Err(RangeError::Malformed);
    }
    let (first, last) = spec.split_once('-').ok_or(RangeError::Malformed)?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix form: the last `count` bytes.
        let count: u64 = parse_u64(last)?;
        if count == 0 || size == 0 {
            return Err(RangeError::NotSatisfiable);
        }
        return Ok(ByteRange {
            start: size.saturating_sub(count),
            end: size,
        });
    }
    let start = parse_u64(first)?;
    let end_inclusive = if last.is_empty() {
        None
    } else {
        Some(parse_u64(last)?)
    };
    if let Some(end) = end_inclusive {
        if end < start {
            return Err(RangeError::Malformed);
        }
    }
    if start >= size {
        return Err(RangeError::NotSatisfiable);
    }
    let end = end_inclusive.map_or(size, |e| e.saturating_add(1).min(size));
    Ok(ByteRange { start, end })
}

/// Parses the `Content-Range` header of an upload PATCH into a range.
pub fn parse_content_range(value: &str) -> Result<ByteRange, RangeError> {
    let mut spec = value.trim();
    if let Some(rest) = spec.strip_prefix("bytes") {
        spec = rest.trim_start_matches([' ', '=']);
    }
    // Drop an RFC-style "/total" suffix; the spec's form has none.
    let spec = spec.split_once('/').map_or(spec, |(range, _)| range);
    let (first, last) = spec.split_once('-').ok_or(RangeError::Malformed)?;
    let start = parse_u64(first.trim())?;
    let last = parse_u64(last.trim())?;
    if last < start {
        return Err(RangeError::Malformed);
    }
    // The last byte's offset plus one: no upload reaches 2^64 bytes, and
    // the sum must not wrap (the fuzzer found `0-18446744073709551615`
    // panicking in debug builds and wrapping to an empty range otherwise).
    let end = last.checked_add(1).ok_or(RangeError::Malformed)?;
    Ok(ByteRange { start, end })
}

fn parse_u64(s: &str) -> Result<u64, RangeError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::Malformed);
    }
    s.parse().map_err(|_| RangeError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn range_header_table() {
        let cases: &[(&str, u64, Result<ByteRange, RangeError>)] = &[
            ("bytes=0-9", 10, Ok(r(0, 10))),
            ("bytes=0-0", 10, Ok(r(0, 1))),
            ("bytes=5-", 10, Ok(r(5, 10))),
            ("bytes=2-4", 10, Ok(r(2, 5))),
            ("bytes=0-999", 10, Ok(r(0, 10))),
            ("bytes=-3", 10, Ok(r(7, 10))),
            ("bytes=-30", 10, Ok(r(0, 10))),
            ("bytes=10-", 10, Err(RangeError::NotSatisfiable)),
            ("bytes=10-20", 10, Err(RangeError::NotSatisfiable)),
            ("bytes=-0", 10, Err(RangeError::NotSatisfiable)),
            ("bytes=0-", 0, Err(RangeError::NotSatisfiable)),
            ("bytes=5-2", 10, Err(RangeError::Malformed)),
            ("bytes=0-1,3-4", 10, Err(RangeError::Malformed)),
            ("items=0-1", 10, Err(RangeError::Malformed)),
            ("bytes=a-b", 10, Err(RangeError::Malformed)),
            ("bytes=+1-2", 10, Err(RangeError::Malformed)),
            ("bytes=", 10, Err(RangeError::Malformed)),
        ];
        for (header, size, expected) in cases {
            assert_eq!(
                &parse_range_header(header, *size),
                expected,
                "{header} on {size}"
            );
        }
    }

    #[test]
    fn content_range_table() {
        let cases: &[(&str, Result<ByteRange, RangeError>)] = &[
            ("0-99", Ok(r(0, 100))),
            ("100-199", Ok(r(100, 200))),
            ("bytes 0-99/100", Ok(r(0, 100))),
            ("bytes=0-99", Ok(r(0, 100))),
            ("0-0", Ok(r(0, 1))),
            ("5-4", Err(RangeError::Malformed)),
            // Found by fuzzing: the end's offset plus one overflowed.
            ("0-18446744073709551615", Err(RangeError::Malformed)),
            ("18446744073709551614-18446744073709551614", Ok(r(u64::MAX - 1, u64::MAX))),
            ("5", Err(RangeError::Malformed)),
            ("-5", Err(RangeError::Malformed)),
            ("a-b", Err(RangeError::Malformed)),
            ("", Err(RangeError::Malformed)),
        ];
        for (header, expected) in cases {
            assert_eq!(&parse_content_range(header), expected, "{header}");
        }
    }
}
