//! Reading a layer: detecting its compression, decompressing it as a
//! stream under the caps, and walking its tar entries.

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use crate::limits::Limits;
use crate::report::ProblemKind;

pub(crate) mod tar;

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Decides from the blob's first bytes, which are authoritative; the
    /// media type only decides when the blob is too short to tell (an
    /// empty layer).
    pub fn detect(prefix: &[u8], media_type: Option<&str>) -> Compression {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            return Compression::Gzip;
        }
        if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Compression::Zstd;
        }
        if prefix.len() >= 4 {
            return Compression::None;
        }
        match media_type {
            Some(t) if t.ends_with("+gzip") || t.ends_with(".gzip") => Compression::Gzip,
            Some(t) if t.ends_with("+zstd") || t.ends_with(".zstd") => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// A cap crossed while reading, carried through `io::Error` so that it
/// survives the decompressor and the tar reader.
#[derive(Debug)]
pub(crate) struct CapExceeded {
    pub(crate) kind: ProblemKind,
    pub(crate) detail: String,
}

impl fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for CapExceeded {}

/// An error of the blob source itself (not of the data), marked so it is
/// reported as a read failure rather than a malformed layer.
#[derive(Debug)]
pub(crate) struct SourceError(pub(crate) io::Error);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reading the layer: {}", self.0)
    }
}

impl std::error::Error for SourceError {}

/// Classifies an error met while reading a layer.
pub(crate) fn classify(error: &io::Error) -> (ProblemKind, String) {
    if let Some(inner) = error.get_ref() {
        if let Some(cap) = inner.downcast_ref::<CapExceeded>() {
            return (cap.kind, cap.detail.clone());
        }
        if inner.downcast_ref::<SourceError>().is_some() {
            return (ProblemKind::Read, error.to_string());
        }
    }
    (
        ProblemKind::MalformedArchive,
        format!("decompressing: {error}"),
    )
}

/// Byte counts shared by the two ends of the decompressor.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) compressed: Cell<u64>,
    pub(crate) decompressed: Cell<u64>,
}

/// Counts the compressed bytes read from the source.
struct CountingReader<R> {
    inner: R,
    counters: Rc<Counters>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .inner
            .read(buf)
            .map_err(|e| io::Error::other(SourceError(e)))?;
        let c = &self.counters.compressed;
        c.set(c.get() + n as u64);
        Ok(n)
    }
}

/// Counts decompressed bytes and stops the stream at the decompressed-size
/// and ratio caps.
struct GuardedReader<R> {
    inner: R,
    counters: Rc<Counters>,
    max_decompressed: u64,
    max_ratio: u64,
    ratio_grace: u64,
}

impl<R: Read> Read for GuardedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.counters.decompressed.get() + n as u64;
        self.counters.decompressed.set(total);
        if total > self.max_decompressed {
            return Err(io::Error::other(CapExceeded {
                kind: ProblemKind::DecompressedLimit,
                detail: format!(
                    "the layer decompresses to more than {} bytes",
                    self.max_decompressed
                ),
            }));
        }
        let compressed = self.counters.compressed.get().max(1);
        if total > self.ratio_grace && total / compressed > self.max_ratio {
            return Err(io::Error::other(CapExceeded {
                kind: ProblemKind::CompressionRatio,
                detail: format!(
                    "the layer decompresses at more than {}:1 ({total} bytes from {compressed})",
                    self.max_ratio
                ),
            }));
        }
        Ok(n)
    }
}

/// The decompressed tar stream of a layer blob, with its counters.
pub(crate) struct Decompressed<'a> {
    pub(crate) reader: Box<dyn BufRead + 'a>,
    pub(crate) counters: Rc<Counters>,
}

/// Opens a layer blob: detects its compression from its first bytes (or
/// the media type for an empty blob) and wraps it in the decompressor and
/// the caps.
pub(crate) fn open<'a, R: Read + 'a>(
    source: R,
    media_type: Option<&str>,
    limits: &Limits,
) -> io::Result<Decompressed<'a>> {
    let counters = Rc::new(Counters::default());
    let mut buffered = BufReader::with_capacity(
        64 << 10,
        CountingReader {
            inner: source,
            counters: counters.clone(),
        },
    );
    let compression = Compression::detect(buffered.fill_buf()?, media_type);
    let decoder: Box<dyn Read + 'a> = match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(buffered)?;
            decoder.window_log_max(limits.zstd_window_log_max)?;
            Box::new(decoder)
        }
        Compression::None => Box::new(buffered),
    };
    // The tar reader asks for 512-byte headers and file data and skips
    // the rest inside this buffer; the decompressors are fastest filling
    // large buffers, so one sits between.
    let guarded = GuardedReader {
        inner: decoder,
        counters: counters.clone(),
        max_decompressed: limits.max_decompressed_bytes,
        max_ratio: limits.max_compression_ratio,
        ratio_grace: limits.ratio_grace_bytes,
    };
    Ok(Decompressed {
        reader: Box::new(BufReader::with_capacity(256 << 10, guarded)),
        counters,
    })
}

/// Normalizes a path from a tar header to the form the indexes use:
/// relative to the root, no leading `/` or `./`, no `.` or empty
/// components, `..` resolved and clamped at the root (as extracting the
/// layer onto a root file system would). `None` for the root itself.
pub(crate) fn normalize_path(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

/// What a whiteout entry deletes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Whiteout {
    /// `.wh.NAME`: the path `NAME` next to it.
    Path(String),
    /// `.wh..wh..opq`: everything below its directory in lower layers.
    Opaque(String),
}

/// Recognizes an OCI whiteout entry by its (normalized) path.
pub(crate) fn whiteout(path: &str) -> Option<Whiteout> {
    let (dir, base) = match path.rsplit_once('/') {
        Some((dir, base)) => (dir, base),
        None => ("", path),
    };
    let name = base.strip_prefix(".wh.")?;
    if name == ".wh..opq" {
        return Some(Whiteout::Opaque(dir.to_string()));
    }
    if name.is_empty() {
        return None;
    }
    Some(Whiteout::Path(if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_by_magic_then_media_type() {
        let gz = [0x1f, 0x8b, 8, 0];
        let zst = [0x28, 0xb5, 0x2f, 0xfd];
        for (prefix, media_type, want) in [
            (&gz[..], None, Compression::Gzip),
            (
                &zst[..],
                Some("application/vnd.oci.image.layer.v1.tar+gzip"),
                Compression::Zstd,
            ),
            (
                b"etc/",
                Some("application/vnd.oci.image.layer.v1.tar+zstd"),
                Compression::None,
            ),
            (
                b"",
                Some("application/vnd.oci.image.layer.v1.tar+zstd"),
                Compression::Zstd,
            ),
            (
                b"",
                Some("application/vnd.docker.image.rootfs.diff.tar.gzip"),
                Compression::Gzip,
            ),
            (b"", None, Compression::None),
        ] {
            assert_eq!(Compression::detect(prefix, media_type), want);
        }
    }

    #[test]
    fn paths_normalize() {
        for (path, want) in [
            ("./etc/os-release", Some("etc/os-release")),
            ("/usr//lib/./os-release", Some("usr/lib/os-release")),
            ("usr/lib/", Some("usr/lib")),
            ("../../etc/passwd", Some("etc/passwd")),
            ("a/../../b", Some("b")),
            ("./", None),
            ("", None),
        ] {
            assert_eq!(normalize_path(path).as_deref(), want, "{path}");
        }
    }

    #[test]
    fn whiteouts() {
        for (path, want) in [
            ("etc/.wh.passwd", Some(Whiteout::Path("etc/passwd".into()))),
            (".wh.opt", Some(Whiteout::Path("opt".into()))),
            (
                "var/lib/.wh..wh..opq",
                Some(Whiteout::Opaque("var/lib".into())),
            ),
            (".wh..wh..opq", Some(Whiteout::Opaque(String::new()))),
            ("etc/.wh.", None),
            ("etc/wh.passwd", None),
        ] {
            assert_eq!(whiteout(path), want, "{path}");
        }
    }
}
