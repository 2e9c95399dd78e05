//! Byte ranges as the spec uses them.
//!
//! - Blob GET takes an RFC 9110 `Range` header ([`parse_range_header`]). One
//!   satisfiable `bytes` range is served (`bytes=first-last`, `bytes=first-`
//!   and the suffix form `bytes=-count`, the end clamped to the blob); a range
//!   starting past the end or ending before its start is refused; what
//!   RFC 9110 §14.2 lets a server ignore (another unit, several ranges, a
//!   malformed specifier) is ignored and the whole blob is served.
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

/// A malformed `Content-Range` header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("malformed range header")]
    Malformed,
}

/// What a blob GET's `Range` header asks for, against a blob of known size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// Serve the whole blob (200): no range, or one the server ignores.
    Whole,
    /// Serve this part (206), already clamped to the blob.
    Part(ByteRange),
    /// A `bytes` range that starts at or past the end (416).
    NotSatisfiable,
}

/// Reads a `Range` header of a blob GET against a blob of `size` bytes.
///
/// One `bytes` range is answered: its end is clamped to the blob, however
/// large (`bytes=0-99999999999999999999` on a 10-byte blob is `[0, 10)`), and
/// a range that starts at or past the end, or the empty suffix `bytes=-0`, is
/// [`RangeRequest::NotSatisfiable`], and so is an invalid range whose last
/// position precedes its first (`bytes=5-2`), which RFC 9110 §14.2 lets a
/// server reject. What it lets a server ignore otherwise is
/// [`RangeRequest::Whole`]: a unit other than `bytes` (which it must
/// ignore), several ranges, and a malformed specifier. Multipart answers are
/// not worth their cost for blobs, and no registry client asks for them.
pub fn parse_range_header(value: &str, size: u64) -> RangeRequest {
    let Some((unit, spec)) = value.split_once('=') else {
        return RangeRequest::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix form: the last `count` bytes.
        let Some(count) = position(last) else {
            return RangeRequest::Whole;
        };
        if count == 0 || size == 0 {
            return RangeRequest::NotSatisfiable;
        }
        return RangeRequest::Part(ByteRange {
            start: size.saturating_sub(count),
            end: size,
        });
    }
    let Some(start) = position(first) else {
        return RangeRequest::Whole;
    };
    let end_inclusive = if last.is_empty() {
        None
    } else {
        match position(last) {
            Some(end) if end >= start => Some(end),
            // A last position before the first is an invalid range, which
            // RFC 9110 lets a server ignore or reject; clients (and the OCI
            // conformance program) expect a 416.
            Some(_) => return RangeRequest::NotSatisfiable,
            None => return RangeRequest::Whole,
        }
    };
    if start >= size {
        return RangeRequest::NotSatisfiable;
    }
    let end = end_inclusive.map_or(size, |e| e.saturating_add(1).min(size));
    RangeRequest::Part(ByteRange { start, end })
}

/// A byte position: ASCII digits only. A position too large for `u64`
/// saturates, since every use compares it with a size that fits.
fn position(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
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
    // `last` is inclusive; a last position of 2^64 - 1 has no exclusive end.
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
        use RangeRequest::{NotSatisfiable, Whole};
        let part = |start, end| RangeRequest::Part(r(start, end));
        let cases: &[(&str, u64, RangeRequest)] = &[
            ("bytes=0-9", 10, part(0, 10)),
            ("bytes=0-0", 10, part(0, 1)),
            ("bytes=5-", 10, part(5, 10)),
            ("bytes=2-4", 10, part(2, 5)),
            ("bytes=0-999", 10, part(0, 10)),
            ("bytes=-3", 10, part(7, 10)),
            ("bytes=-30", 10, part(0, 10)),
            ("BYTES = 2 - 4 ", 10, part(2, 5)),
            // Positions beyond 2^64 saturate instead of failing.
            ("bytes=3-99999999999999999999999", 10, part(3, 10)),
            ("bytes=-99999999999999999999999", 10, part(0, 10)),
            ("bytes=0-18446744073709551615", 10, part(0, 10)),
            ("bytes=99999999999999999999999-", 10, NotSatisfiable),
            ("bytes=10-", 10, NotSatisfiable),
            ("bytes=10-20", 10, NotSatisfiable),
            ("bytes=-0", 10, NotSatisfiable),
            ("bytes=0-", 0, NotSatisfiable),
            ("bytes=-5", 0, NotSatisfiable),
            // Ignored, so the whole blob is served.
            ("bytes=5-2", 10, NotSatisfiable),
            ("bytes=5-4", 10, NotSatisfiable),
            ("bytes=0-1,3-4", 10, Whole),
            ("bytes=20-30, 40-", 10, Whole),
            ("items=0-1", 10, Whole),
            ("bytes 0-1", 10, Whole),
            ("bytes=a-b", 10, Whole),
            ("bytes=+1-2", 10, Whole),
            ("bytes=1", 10, Whole),
            ("bytes=-", 10, Whole),
            ("bytes=", 10, Whole),
            ("", 10, Whole),
        ];
        for (header, size, expected) in cases {
            assert_eq!(
                parse_range_header(header, *size),
                *expected,
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
            ("0-18446744073709551614", Ok(r(0, u64::MAX))),
            ("0-18446744073709551615", Err(RangeError::Malformed)),
            ("0-99999999999999999999", Err(RangeError::Malformed)),
            ("5-4", Err(RangeError::Malformed)),
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
