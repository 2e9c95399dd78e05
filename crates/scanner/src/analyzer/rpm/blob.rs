//! Values stored in pieces of a database file (a header on a chain of
//! overflow pages), read where they lie instead of being assembled: a
//! header of several megabytes costs a list of page offsets, not a copy.

/// Bytes that can be read at any offset.
pub(crate) trait ByteSource {
    fn len(&self) -> usize;

    /// Fills `buf` from `offset`; `false` if that runs past the end.
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool;
}

/// Bytes in one piece.
pub(crate) struct Slice<'a>(pub(crate) &'a [u8]);

impl ByteSource for Slice<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        match offset
            .checked_add(buf.len())
            .and_then(|end| self.0.get(offset..end))
        {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

/// A byte string made of ranges of a file, in order.
pub(crate) struct Segments<'a> {
    file: &'a [u8],
    /// (start in the file, length) of each piece.
    parts: Vec<(usize, usize)>,
    /// The offset, within the string, where each piece ends.
    ends: Vec<usize>,
}

impl<'a> Segments<'a> {
    pub(crate) fn new(file: &'a [u8]) -> Self {
        Segments {
            file,
            parts: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Appends the file's bytes `start..start + len`.
    pub(crate) fn push(&mut self, start: usize, len: usize) -> Result<(), String> {
        let end = start.checked_add(len).ok_or("a piece past the file")?;
        if end > self.file.len() {
            return Err("a piece past the end of the file".into());
        }
        if len == 0 {
            return Ok(());
        }
        let total = ByteSource::len(self) + len;
        self.parts.push((start, len));
        self.ends.push(total);
        Ok(())
    }

    /// A window of `len` bytes from `offset`.
    pub(crate) fn view(&self, offset: usize, len: usize) -> Option<View<'_, 'a>> {
        (offset.checked_add(len)? <= ByteSource::len(self)).then_some(View {
            segments: self,
            offset,
            len,
        })
    }
}

impl ByteSource for Segments<'_> {
    fn len(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        if offset
            .checked_add(buf.len())
            .is_none_or(|end| end > ByteSource::len(self))
        {
            return false;
        }
        // The first piece holding `offset`.
        let mut part = self.ends.partition_point(|&end| end <= offset);
        let mut at = offset;
        let mut filled = 0;
        while filled < buf.len() {
            let Some(&(start, len)) = self.parts.get(part) else {
                return false;
            };
            let piece_start = self.ends[part] - len;
            let within = at - piece_start;
            let take = (len - within).min(buf.len() - filled);
            buf[filled..filled + take]
                .copy_from_slice(&self.file[start + within..start + within + take]);
            filled += take;
            at += take;
            part += 1;
        }
        true
    }
}

/// A window of [`Segments`].
pub(crate) struct View<'s, 'a> {
    segments: &'s Segments<'a>,
    offset: usize,
    len: usize,
}

impl ByteSource for View<'_, '_> {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        if offset
            .checked_add(buf.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        self.segments.read(self.offset + offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_read_as_one() {
        let file = b"0123456789abcdefghij";
        let mut s = Segments::new(file);
        s.push(10, 5).unwrap(); // abcde
        s.push(0, 3).unwrap(); // 012
        s.push(18, 2).unwrap(); // ij
        assert_eq!(ByteSource::len(&s), 10);
        let mut buf = [0u8; 10];
        assert!(s.read(0, &mut buf));
        assert_eq!(&buf, b"abcde012ij");
        let mut buf = [0u8; 4];
        assert!(s.read(3, &mut buf));
        assert_eq!(&buf, b"de01");
        assert!(!s.read(8, &mut buf));
        let view = s.view(4, 5).unwrap();
        let mut buf = [0u8; 5];
        assert!(view.read(0, &mut buf));
        assert_eq!(&buf, b"e012i");
        assert!(s.view(8, 3).is_none());
        assert!(s.push(19, 2).is_err());
    }
}
