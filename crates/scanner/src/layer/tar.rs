//! A streaming tar reader with explicit caps.
//!
//! It reads POSIX ustar, GNU (long names and links, base-256 sizes) and PAX
//! (`path`, `linkpath`, `size`) headers from a non-seekable stream, one
//! 512-byte block at a time, and never buffers more than one header
//! extension, itself capped. (The `tar` crate would do the reading, but it
//! reads GNU long names and PAX records into memory whatever their
//! declared size, which a hostile layer can set to gigabytes.)

use std::io::{self, BufRead};

const BLOCK: usize = 512;

/// The kind of a tar entry, as far as indexing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryKind {
    File,
    Directory,
    Symlink,
    Hardlink,
    /// Devices, FIFOs, sparse files and anything else: never analyzed.
    Other,
}

/// One entry's header, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The path as written in the archive (not yet normalized).
    pub(crate) path: String,
    pub(crate) kind: EntryKind,
    /// Bytes of data that follow the header.
    pub(crate) size: u64,
    pub(crate) mode: u32,
    /// The target of a link.
    pub(crate) link: String,
}

/// Why the stream is not a tar archive from some point on.
#[derive(Debug)]
pub(crate) enum TarError {
    /// The underlying stream failed (or a cap on it was hit).
    Io(io::Error),
    Malformed(String),
}

impl From<io::Error> for TarError {
    fn from(e: io::Error) -> Self {
        TarError::Io(e)
    }
}

/// Reads entries and their data in order.
pub(crate) struct TarReader<R> {
    inner: R,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    max_extension: u64,
    finished: bool,
}

/// Header extensions waiting for the entry they describe.
#[derive(Default)]
struct Pending {
    path: Option<String>,
    link: Option<String>,
    size: Option<u64>,
    sparse: bool,
}

impl<R: BufRead> TarReader<R> {
    pub(crate) fn new(inner: R, max_extension: u64) -> Self {
        TarReader {
            inner,
            remaining: 0,
            padding: 0,
            max_extension,
            finished: false,
        }
    }

    /// The next entry, skipping what is left of the current one; `None` at
    /// the end of the archive.
    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.finished {
            return Ok(None);
        }
        self.skip(self.remaining + self.padding)?;
        self.remaining = 0;
        self.padding = 0;
        let mut pending = Pending::default();
        loop {
            let mut header = [0u8; BLOCK];
            if !self.read_block(&mut header)? {
                // The stream ended at a block boundary without the two zero
                // blocks: many writers omit them, so this is a normal end.
                self.finished = true;
                return Ok(None);
            }
            if header.iter().all(|&b| b == 0) {
                self.finished = true;
                return Ok(None);
            }
            verify_checksum(&header)?;
            let typeflag = header[156];
            let header_size = parse_number(&header[124..136])
                .ok_or_else(|| TarError::Malformed("bad size field".into()))?;
            let size = match typeflag {
                b'x' | b'g' | b'L' | b'K' => header_size,
                _ => pending.size.unwrap_or(header_size),
            };
            match typeflag {
                b'x' => {
                    let data = self.read_extension(size)?;
                    parse_pax(&data, &mut pending)?;
                    continue;
                }
                b'g' => {
                    // Global PAX headers set defaults no path of interest
                    // depends on.
                    self.skip(padded(size))?;
                    continue;
                }
                b'L' => {
                    let data = self.read_extension(size)?;
                    pending.path = Some(c_string(&data));
                    continue;
                }
                b'K' => {
                    let data = self.read_extension(size)?;
                    pending.link = Some(c_string(&data));
                    continue;
                }
                _ => {}
            }
            let ustar = &header[257..263] == b"ustar\0";
            let path = match pending.path.take() {
                Some(path) => path,
                None => {
                    let name = c_string(&header[0..100]);
                    let prefix = if ustar {
                        c_string(&header[345..500])
                    } else {
                        String::new()
                    };
                    if prefix.is_empty() {
                        name
                    } else {
                        format!("{prefix}/{name}")
                    }
                }
            };
            let link = pending
                .link
                .take()
                .unwrap_or_else(|| c_string(&header[157..257]));
            let kind = if pending.sparse {
                EntryKind::Other
            } else {
                match typeflag {
                    b'0' | 0 | b'7' => EntryKind::File,
                    b'1' => EntryKind::Hardlink,
                    b'2' => EntryKind::Symlink,
                    b'5' => EntryKind::Directory,
                    _ => EntryKind::Other,
                }
            };
            // Old archives mark directories with a trailing slash only.
            let kind = if kind == EntryKind::File && path.ends_with('/') {
                EntryKind::Directory
            } else {
                kind
            };
            let mode = parse_number(&header[100..108]).unwrap_or(0) as u32;
            self.remaining = size;
            self.padding = padded(size) - size;
            return Ok(Some(Entry {
                path,
                kind,
                size,
                mode,
                link,
            }));
        }
    }

    /// Reads the current entry's data.
    pub(crate) fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside an entry",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }

    /// Reads a whole block; `false` if the stream ended before its first
    /// byte.
    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut filled = 0;
        while filled < BLOCK {
            let n = match self.inner.read(&mut block[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return if filled == 0 {
                    Ok(false)
                } else {
                    Err(TarError::Malformed(
                        "the archive ends inside a header".into(),
                    ))
                };
            }
            filled += n;
        }
        Ok(true)
    }

    /// Skips `bytes` of the stream by consuming them where the reader
    /// buffered them: most of a layer is skipped, and copying it out only
    /// to drop it cost a memory copy of every skipped byte.
    fn skip(&mut self, mut bytes: u64) -> Result<(), TarError> {
        while bytes > 0 {
            let available = match self.inner.fill_buf() {
                Ok(buffered) => buffered.len(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if available == 0 {
                return Err(TarError::Malformed(
                    "the archive ends inside an entry".into(),
                ));
            }
            let n = available.min(bytes.min(usize::MAX as u64) as usize);
            self.inner.consume(n);
            bytes -= n as u64;
        }
        Ok(())
    }

    /// Reads a header extension's data (and its padding), refusing one
    /// larger than the cap.
    fn read_extension(&mut self, size: u64) -> Result<Vec<u8>, TarError> {
        if size > self.max_extension {
            return Err(TarError::Malformed(format!(
                "a header extension of {size} bytes (the cap is {})",
                self.max_extension
            )));
        }
        let mut data = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < data.len() {
            let n = self.inner.read(&mut data[filled..])?;
            if n == 0 {
                return Err(TarError::Malformed(
                    "the archive ends inside a header extension".into(),
                ));
            }
            filled += n;
        }
        self.skip(padded(size) - size)?;
        Ok(data)
    }
}

/// `size` rounded up to whole blocks.
fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

/// The bytes up to the first NUL, as text (paths that are not UTF-8 are
/// kept readable; none of the paths analyzers want are).
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A numeric field: octal ASCII (space or NUL terminated), or GNU base-256
/// when the first byte's high bit is set.
fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        // Base-256, big-endian; a negative number (0xff) is refused.
        if field[0] == 0xff {
            return None;
        }
        let mut value: u64 = (field[0] & 0x7f) as u64;
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(value);
    }
    let text = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| b != 0 && b != b' ');
    let mut value: u64 = 0;
    let mut any = false;
    for &b in text {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        value = value.checked_mul(8)?.checked_add((b - b'0') as u64)?;
        any = true;
    }
    // An empty field is 0 (some writers leave mode or size blank).
    let _ = any;
    Some(value)
}

/// The checksum is the sum of the header's bytes with the checksum field
/// read as spaces; old writers summed signed bytes, so either sum passes.
fn verify_checksum(header: &[u8; BLOCK]) -> Result<(), TarError> {
    let stored = parse_number(&header[148..156])
        .ok_or_else(|| TarError::Malformed("bad checksum field".into()))?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in header.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as u64;
        signed += b as i8 as i64;
    }
    if stored == unsigned || stored as i64 == signed {
        Ok(())
    } else {
        Err(TarError::Malformed(
            "a header checksum does not match".into(),
        ))
    }
}

/// PAX records: `LENGTH KEY=VALUE\n`, LENGTH counting the whole record.
fn parse_pax(mut data: &[u8], pending: &mut Pending) -> Result<(), TarError> {
    let bad = || TarError::Malformed("a malformed PAX record".into());
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let length: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if length <= space + 1 || length > data.len() || data[length - 1] != b'\n' {
            return Err(bad());
        }
        let record = &data[space + 1..length - 1];
        data = &data[length..];
        let equals = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let (key, value) = (&record[..equals], &record[equals + 1..]);
        match key {
            b"path" => pending.path = Some(String::from_utf8_lossy(value).into_owned()),
            b"linkpath" => pending.link = Some(String::from_utf8_lossy(value).into_owned()),
            b"size" => {
                let size = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad)?;
                pending.size = Some(size);
            }
            key if key.starts_with(b"GNU.sparse.") => pending.sparse = true,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for (field, want) in [
            (&b"0000644\0"[..], Some(0o644)),
            (b"   644 \0", Some(0o644)),
            (b"\0\0\0\0\0\0\0\0", Some(0)),
            (b"00000001000\0", Some(512)),
            (b"\x80\0\0\0\0\0\0\x01\0\0\0\0", Some(1 << 32)),
            (b"\xff\xff\xff\xff\xff\xff\xff\xff", None),
            (b"0009", None),
            (b"\x80\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", None),
        ] {
            assert_eq!(parse_number(field), want, "{field:?}");
        }
    }

    #[test]
    fn pax_records() {
        let mut pending = Pending::default();
        parse_pax(b"30 path=a/very/long/path/name\n11 size=42\n", &mut pending).unwrap();
        assert_eq!(pending.path.as_deref(), Some("a/very/long/path/name"));
        assert_eq!(pending.size, Some(42));
        for bad in [
            &b"5 a=b\n"[..],
            b"x path=a\n",
            b"100 path=a\n",
            b"9 pathab\n",
        ] {
            assert!(parse_pax(bad, &mut Pending::default()).is_err(), "{bad:?}");
        }
    }
}
