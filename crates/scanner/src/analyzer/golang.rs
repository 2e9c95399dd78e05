//! Go modules compiled into a binary, from the build information the Go
//! toolchain embeds (what `go version -m` prints).
//!
//! The build information starts with the 14-byte magic `\xff Go buildinf:`
//! at a 16-byte aligned offset (in `.go.buildinfo` on ELF, in the data
//! section elsewhere), then a pointer size and flags. Since Go 1.18 the Go
//! version and the module information follow the 32-byte header inline,
//! each a length-prefixed string; before that, the header holds two
//! pointers to Go string headers elsewhere in the binary, which need the
//! binary's sections to translate addresses to file offsets. The module
//! information is text between two 16-byte sentinels: `path`, `mod` (the
//! main module), `dep` (dependencies) and `=>` (a replacement of the
//! dependency above) lines, tab-separated.
//!
//! Each dependency becomes a package, as does the main module when it has
//! a version, and the standard library as `stdlib` at the Go version
//! (Go's vulnerability database names it so).

use crate::report::{Package, PackageKind};

pub(crate) const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER: usize = 32;
const FLAG_BIG_ENDIAN: u8 = 1;
const FLAG_INLINE: u8 = 2;

/// Where a build-information header was found and what it says.
pub(crate) enum BuildInfo<'a> {
    /// Go 1.18+: everything inline.
    Inline {
        version: &'a [u8],
        modinfo: &'a [u8],
    },
    /// Before Go 1.18: two addresses of string headers.
    Pointers {
        pointer_size: usize,
        big_endian: bool,
        version_address: u64,
        modinfo_address: u64,
    },
}

/// Finds the build-information header in a buffer (16-byte aligned, as
/// the toolchain places it). `offset` is the buffer's offset in the file,
/// so alignment is judged on file offsets.
pub(crate) fn find(buffer: &[u8], offset: u64) -> Option<usize> {
    let finder = memchr::memmem::Finder::new(MAGIC);
    let mut from = 0;
    while let Some(at) = finder.find(&buffer[from..]) {
        let position = from + at;
        if (offset + position as u64).is_multiple_of(16) {
            return Some(position);
        }
        from = position + 1;
    }
    None
}

/// Decodes the header at the start of `data` (which begins with the magic).
pub(crate) fn header(data: &[u8]) -> Option<BuildInfo<'_>> {
    let head = data.get(..HEADER)?;
    let pointer_size = head[14] as usize;
    let flags = head[15];
    if flags & FLAG_INLINE != 0 {
        let (version, rest) = length_prefixed(&data[HEADER..])?;
        let (modinfo, _) = length_prefixed(rest)?;
        return Some(BuildInfo::Inline { version, modinfo });
    }
    if pointer_size != 4 && pointer_size != 8 {
        return None;
    }
    let big_endian = flags & FLAG_BIG_ENDIAN != 0;
    let version_address = read_pointer(&head[16..], pointer_size, big_endian)?;
    let modinfo_address = read_pointer(&head[16 + pointer_size..], pointer_size, big_endian)?;
    Some(BuildInfo::Pointers {
        pointer_size,
        big_endian,
        version_address,
        modinfo_address,
    })
}

pub(crate) fn read_pointer(bytes: &[u8], size: usize, big_endian: bool) -> Option<u64> {
    let bytes = bytes.get(..size)?;
    let mut value: u64 = 0;
    for i in 0..size {
        let b = if big_endian {
            bytes[i]
        } else {
            bytes[size - 1 - i]
        };
        value = (value << 8) | b as u64;
    }
    Some(value)
}

/// A uvarint-length-prefixed string and what follows it.
fn length_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut length: u64 = 0;
    let mut used = 0;
    for (i, &b) in data.iter().enumerate().take(10) {
        length |= ((b & 0x7f) as u64) << (7 * i);
        used = i + 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    if used == 0 || data.get(used - 1).is_some_and(|b| b & 0x80 != 0) {
        return None;
    }
    let length = usize::try_from(length).ok()?;
    let end = used.checked_add(length)?;
    Some((data.get(used..end)?, data.get(end..)?))
}

/// The packages of decoded build information.
pub(crate) fn packages(version: &[u8], modinfo: &[u8]) -> Vec<Package> {
    let mut found = Vec::new();
    let modinfo = strip_sentinels(modinfo);
    let text = String::from_utf8_lossy(modinfo);
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["mod", path, version, ..] if is_release(version) => {
                found.push(Package::new(PackageKind::Go, *path, *version));
            }
            ["dep", path, version, ..] => {
                found.push(Package::new(PackageKind::Go, *path, *version));
            }
            // A replacement of the dependency above: the code in the
            // binary is the replacement's (a local directory has no
            // version, and the dependency is then reported as declared).
            ["=>", path, version, ..] if is_release(version) => {
                if let Some(last) = found.last_mut() {
                    last.name = path.to_string();
                    last.version = version.to_string();
                }
            }
            _ => {}
        }
    }
    if let Some(version) = stdlib_version(&String::from_utf8_lossy(version)) {
        found.push(Package::new(PackageKind::Go, "stdlib", version));
    }
    found.retain(|p| !p.version.is_empty());
    found
}

fn is_release(version: &str) -> bool {
    !version.is_empty() && version != "(devel)"
}

/// The module information sits between two 16-byte sentinels when it is
/// long enough to have them.
fn strip_sentinels(modinfo: &[u8]) -> &[u8] {
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    }
}

/// `go1.21.3` → `v1.21.3`; `go1.22rc1` → `v1.22.0-rc.1`; `go1.21` →
/// `v1.21.0`. Development toolchains (`devel …`) have no version.
pub(crate) fn stdlib_version(go: &str) -> Option<String> {
    let rest = go.trim().strip_prefix("go")?;
    // Experiments and build flags follow a space or `X:`.
    let rest = rest.split([' ', '+']).next()?;
    let (release, pre) = match rest.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => (&rest[..at], Some(&rest[at..])),
        None => (rest, None),
    };
    let mut parts: Vec<&str> = release.split('.').collect();
    if parts.is_empty()
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    while parts.len() < 3 {
        parts.push("0");
    }
    let mut version = format!("v{}", parts.join("."));
    if let Some(pre) = pre {
        let digits = pre.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let label = &pre[..pre.len() - digits.len()];
        version.push_str(&format!("-{label}.{digits}"));
    }
    Some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_versions() {
        for (go, want) in [
            ("go1.21.3", Some("v1.21.3")),
            ("go1.21", Some("v1.21.0")),
            ("go1.22rc1", Some("v1.22.0-rc.1")),
            ("go1.20.1 X:boringcrypto", Some("v1.20.1")),
            ("devel go1.22-abc", None),
        ] {
            assert_eq!(stdlib_version(go).as_deref(), want, "{go}");
        }
    }

    #[test]
    fn inline_build_info() {
        let modinfo = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgolang.org/x/text\tv0.3.7\th1:abc=\ndep\tgithub.com/a/b\tv1.0.0\th1:def=\n=>\tgithub.com/c/b\tv1.1.0\th1:ghi=\nbuild\t-compiler=gc\n";
        let mut wrapped = vec![0x30u8; 16];
        wrapped.extend_from_slice(modinfo.as_bytes());
        wrapped.extend_from_slice(&[0xf9; 16]);
        let len = wrapped.len() as u32;
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&[8, FLAG_INLINE]);
        blob.resize(HEADER, 0);
        blob.push(8);
        blob.extend_from_slice(b"go1.21.3");
        // A two-byte uvarint length.
        blob.push((len & 0x7f) as u8 | 0x80);
        blob.push((len >> 7) as u8);
        blob.extend_from_slice(&wrapped);
        let mut file = vec![0u8; 48];
        file.extend_from_slice(&blob);
        let at = find(&file, 0).unwrap();
        assert_eq!(at, 48);
        let Some(BuildInfo::Inline { version, modinfo }) = header(&file[at..]) else {
            panic!("not inline")
        };
        let found = packages(version, modinfo);
        let got: Vec<(&str, &str)> = found
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("golang.org/x/text", "v0.3.7"),
                ("github.com/c/b", "v1.1.0"),
                ("stdlib", "v1.21.3"),
            ]
        );
        // Not 16-byte aligned: not build information.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&file);
        assert!(find(&shifted, 0).is_none());
    }
}
