//! rpm package headers as stored in the databases (rpm's `header.c`
//! on-disk format): a count of index entries and the data size (both
//! big-endian 32-bit), the index entries (tag, type, offset, count), then
//! the data. Only the tags a package needs are read, each checked against
//! the data's bounds, from wherever the header lies ([`ByteSource`]).

use super::blob::ByteSource;

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
/// More tags than any package has.
const MAX_TAGS: usize = 65_536;
/// The longest string read from a header (names, versions, file names of
/// source packages are short).
const MAX_STRING: usize = 64 << 10;

/// A header's index, read into memory, and its data, read where it lies.
pub(crate) struct Header<'a> {
    source: &'a dyn ByteSource,
    index: Vec<u8>,
    data_start: usize,
    data_len: usize,
}

impl<'a> Header<'a> {
    pub(crate) fn parse(source: &'a dyn ByteSource) -> Result<Self, String> {
        let mut counts = [0u8; 8];
        if !source.read(0, &mut counts) {
            return Err("a truncated header".into());
        }
        let entries = u32::from_be_bytes([counts[0], counts[1], counts[2], counts[3]]) as usize;
        let data_len = u32::from_be_bytes([counts[4], counts[5], counts[6], counts[7]]) as usize;
        if entries == 0 || entries > MAX_TAGS {
            return Err(format!("a header with {entries} tags"));
        }
        let data_start = 8 + entries * 16;
        let end = data_start
            .checked_add(data_len)
            .ok_or("a bad header size")?;
        if end > source.len() || end > MAX_HEADER {
            return Err("a header larger than its blob".into());
        }
        let mut index = vec![0u8; entries * 16];
        if !source.read(8, &mut index) {
            return Err("a truncated header index".into());
        }
        Ok(Header {
            source,
            index,
            data_start,
            data_len,
        })
    }

    /// The last entry with this tag (later "dribble" entries override the
    /// immutable region's): its type, data offset and count.
    fn entry(&self, tag: u32) -> Option<(u32, usize, u32)> {
        self.index
            .chunks_exact(16)
            .rfind(|e| u32::from_be_bytes([e[0], e[1], e[2], e[3]]) == tag)
            .map(|e| {
                let kind = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                let offset = u32::from_be_bytes([e[8], e[9], e[10], e[11]]) as usize;
                let count = u32::from_be_bytes([e[12], e[13], e[14], e[15]]);
                (kind, offset, count)
            })
    }

    /// A string tag (the first string of an array or i18n table), read up
    /// to its NUL within the data.
    pub(crate) fn string(&self, tag: u32) -> Option<String> {
        let (kind, offset, _) = self.entry(tag)?;
        if !matches!(kind, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING)
            || offset >= self.data_len
        {
            return None;
        }
        let available = (self.data_len - offset).min(MAX_STRING);
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        while out.len() < available {
            let take = chunk.len().min(available - out.len());
            if !self
                .source
                .read(self.data_start + offset + out.len(), &mut chunk[..take])
            {
                return None;
            }
            match chunk[..take].iter().position(|&b| b == 0) {
                Some(nul) => {
                    out.extend_from_slice(&chunk[..nul]);
                    let s = String::from_utf8(out).ok()?;
                    return (!s.is_empty() && s != "(none)").then_some(s);
                }
                None => out.extend_from_slice(&chunk[..take]),
            }
        }
        // No NUL within the data (or the cap): not a string.
        None
    }

    /// The first value of an INT32 tag.
    pub(crate) fn int32(&self, tag: u32) -> Option<u32> {
        let (kind, offset, count) = self.entry(tag)?;
        if kind != TYPE_INT32 || count == 0 || offset.checked_add(4)? > self.data_len {
            return None;
        }
        let mut b = [0u8; 4];
        self.source
            .read(self.data_start + offset, &mut b)
            .then_some(())?;
        Some(u32::from_be_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::rpm::blob::Slice;

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
        let slice = Slice(&blob);
        let h = Header::parse(&slice).unwrap();
        assert_eq!(h.string(NAME).as_deref(), Some("bash"));
        assert_eq!(h.int32(EPOCH), Some(2));
        assert_eq!(h.string(SOURCERPM), None);
        // No terminating NUL within the data: refused.
        assert_eq!(h.string(ARCH), None);
        assert_eq!(h.string(VERSION), None);
        assert!(Header::parse(&Slice(&blob[..20])).is_err());
        assert!(Header::parse(&Slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])).is_err());
    }
}
