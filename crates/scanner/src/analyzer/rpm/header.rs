//! rpm package headers as stored in the databases (rpm's `header.c`
//! on-disk format): a count of index entries and the data size (both
//! big-endian 32-bit), the index entries (tag, type, offset, count), then
//! the data. Only the tags a package needs are read, each checked against
//! the data's bounds.

pub(crate) const NAME: u32 = 1000;
pub(crate) const VERSION: u32 = 1001;
pub(crate) const RELEASE: u32 = 1002;
pub(crate) const EPOCH: u32 = 1003;
pub(crate) const ARCH: u32 = 1022;
pub(crate) const SOURCERPM: u32 = 1044;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// The largest header rpm itself accepts.
const MAX_HEADER: usize = 256 << 20;

/// A header's index and data.
pub(crate) struct Header<'a> {
    index: &'a [u8],
    data: &'a [u8],
}

impl<'a> Header<'a> {
    pub(crate) fn parse(blob: &'a [u8]) -> Result<Self, String> {
        let be32 = |at: usize| -> Option<u32> {
            blob.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let entries = be32(0).ok_or("a truncated header")? as usize;
        let data_len = be32(4).ok_or("a truncated header")? as usize;
        if entries == 0 {
            return Err("a header without tags".into());
        }
        let index_end = entries
            .checked_mul(16)
            .and_then(|n| n.checked_add(8))
            .ok_or("a bad header size")?;
        let end = index_end.checked_add(data_len).ok_or("a bad header size")?;
        if end > blob.len() || end > MAX_HEADER {
            return Err("a header larger than its blob".into());
        }
        Ok(Header {
            index: &blob[8..index_end],
            data: &blob[index_end..end],
        })
    }

    /// The last entry with this tag (later "dribble" entries override the
    /// immutable region's): its type, data offset and count.
    fn entry(&self, tag: u32) -> Option<(u32, usize, u32)> {
        self.index
            .chunks_exact(16)
            .filter(|e| u32::from_be_bytes([e[0], e[1], e[2], e[3]]) == tag)
            .next_back()
            .map(|e| {
                let kind = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                let offset = u32::from_be_bytes([e[8], e[9], e[10], e[11]]) as usize;
                let count = u32::from_be_bytes([e[12], e[13], e[14], e[15]]);
                (kind, offset, count)
            })
    }

    /// A string tag (the first string of an array or i18n table).
    pub(crate) fn string(&self, tag: u32) -> Option<&'a str> {
        let (kind, offset, _) = self.entry(tag)?;
        if !matches!(kind, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return None;
        }
        let bytes = self.data.get(offset..)?;
        let end = bytes.iter().position(|&b| b == 0)?;
        let s = std::str::from_utf8(&bytes[..end]).ok()?;
        (!s.is_empty() && s != "(none)").then_some(s)
    }

    /// The first value of an INT32 tag.
    pub(crate) fn int32(&self, tag: u32) -> Option<u32> {
        let (kind, offset, count) = self.entry(tag)?;
        if kind != TYPE_INT32 || count == 0 {
            return None;
        }
        let b = self.data.get(offset..offset.checked_add(4)?)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a header with the given (tag, type, data) entries.
    fn build(entries: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, kind, bytes) in entries {
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&kind.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(bytes);
        }
        let mut blob = Vec::new();
        blob.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        blob.extend(index);
        blob.extend(data);
        blob
    }

    #[test]
    fn reads_tags_within_bounds() {
        let blob = build(&[
            (NAME, TYPE_STRING, b"bash\0"),
            (EPOCH, TYPE_INT32, &2u32.to_be_bytes()),
            (SOURCERPM, TYPE_STRING, b"(none)\0"),
            (ARCH, TYPE_STRING, b"x86_64"),
        ]);
        let h = Header::parse(&blob).unwrap();
        assert_eq!(h.string(NAME), Some("bash"));
        assert_eq!(h.int32(EPOCH), Some(2));
        assert_eq!(h.string(SOURCERPM), None);
        // No terminating NUL within the data: refused.
        assert_eq!(h.string(ARCH), None);
        assert_eq!(h.string(VERSION), None);
        assert!(Header::parse(&blob[..20]).is_err());
        assert!(Header::parse(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).is_err());
    }
}
