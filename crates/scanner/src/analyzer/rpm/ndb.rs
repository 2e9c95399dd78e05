//! rpm's own "ndb" database (`Packages.db`, SUSE), read from memory.
//!
//! The layout (rpm's `lib/backend/ndb/rpmpkg.c`, little-endian): a 32-byte
//! header (`RpmP` magic, version 0, generation, the number of 4 KiB slot
//! pages); the slot pages follow the header, 16-byte slots (`Slot` magic,
//! package index, block offset, block count) of which the header takes the
//! first two; a used slot's block offset times 16 is where its blob starts:
//! a 16-byte blob header (`BlbS` magic, package index, checksum, length)
//! and the rpm header itself.

use super::blob::{ByteSource, Slice};

const SLOT_PAGE: usize = 4096;
const SLOT: usize = 16;
const BLOCK: usize = 16;

/// Calls `value` with each package header; stops early if `value` returns
/// `false`.
pub(crate) fn values(
    file: &[u8],
    mut value: impl FnMut(&dyn ByteSource) -> bool,
) -> Result<(), String> {
    let le32 = |at: usize| -> Option<u32> {
        file.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if file.get(0..4) != Some(b"RpmP") || le32(4) != Some(0) {
        return Err("not an rpm ndb database".into());
    }
    let slot_pages = le32(12).unwrap_or(0) as usize;
    if slot_pages == 0 || slot_pages.saturating_mul(SLOT_PAGE) > file.len() {
        return Err("a bad slot page count".into());
    }
    for slot in 2..slot_pages * SLOT_PAGE / SLOT {
        let at = slot * SLOT;
        if file.get(at..at + 4) != Some(b"Slot") {
            return Err(format!("slot {slot} has a bad magic"));
        }
        let package = le32(at + 4).unwrap_or(0);
        if package == 0 {
            continue;
        }
        let offset = (le32(at + 8).unwrap_or(0) as usize).saturating_mul(BLOCK);
        if file.get(offset..offset + 4) != Some(b"BlbS") || le32(offset + 4) != Some(package) {
            return Err(format!("the blob of package {package} is missing"));
        }
        let length = le32(offset + 12).unwrap_or(0) as usize;
        let blob = file
            .get(offset + 16..(offset + 16).saturating_add(length))
            .ok_or_else(|| format!("the blob of package {package} runs past the file"))?;
        if !value(&Slice(blob)) {
            return Ok(());
        }
    }
    Ok(())
}
