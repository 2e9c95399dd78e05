//! Berkeley DB hash databases (rpm's `Packages` up to RHEL 8 / CentOS 8),
//! read from memory: every hash page's values are rpm headers, stored on
//! the page or, when large, on a chain of overflow pages.
//!
//! The layout (Berkeley DB's `db_page.h`, little-endian databases only):
//! page 0 is the hash metadata (magic `0x061561` at offset 12, page size at
//! 20, last page number at 32); every page starts with a 26-byte header
//! (next page at 16, entry count at 20, "high free offset" at 22, type at
//! 25); a hash page's entries are 2-byte offsets of items, keys and values
//! alternating; a value item of type 3 (`H_OFFPAGE`) names the first
//! overflow page of the value and its length, and an overflow page holds
//! its share of the value after the header (the "high free offset" field
//! says how much on the last page).

use std::collections::HashSet;

use super::blob::{ByteSource, Segments, Slice};

const HASH_MAGIC: u32 = 0x061561;
const PAGE_HEADER: usize = 26;
const HASH_UNSORTED: u8 = 2;
const OVERFLOW: u8 = 7;
const HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;

/// Calls `value` with each value of the database (rpm headers), read where
/// it lies; stops early if `value` returns `false`.
pub(crate) fn values(
    file: &[u8],
    mut value: impl FnMut(&dyn ByteSource) -> bool,
) -> Result<(), String> {
    let meta = file.get(..512).ok_or("too short for a Berkeley DB")?;
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let magic = le32(meta, 12);
    if magic != HASH_MAGIC {
        return Err(if magic.swap_bytes() == HASH_MAGIC {
            "a big-endian Berkeley DB (not supported)".into()
        } else {
            "not a Berkeley DB hash database".into()
        });
    }
    if meta[24] != 0 {
        return Err("an encrypted Berkeley DB".into());
    }
    let page_size = le32(meta, 20) as usize;
    if !page_size.is_power_of_two() || !(512..=65536).contains(&page_size) {
        return Err(format!("a bad page size {page_size}"));
    }
    let pages = file.len() / page_size;
    let last = (le32(meta, 32) as usize).min(pages.saturating_sub(1));
    let page = |n: usize| file.get(n * page_size..(n + 1) * page_size);
    for number in 1..=last {
        let Some(page_data) = page(number) else { break };
        let kind = page_data[25];
        if kind != HASH && kind != HASH_UNSORTED {
            continue;
        }
        let entries = u16::from_le_bytes([page_data[20], page_data[21]]) as usize;
        let offset_at = |i: usize| -> Option<usize> {
            let at = PAGE_HEADER + 2 * i;
            page_data
                .get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        };
        // Values are the odd entries.
        for i in (1..entries).step_by(2) {
            let Some(start) = offset_at(i) else { break };
            let Some(&item_type) = page_data.get(start) else {
                return Err(format!("page {number}: an item past the page"));
            };
            let keep_going = match item_type {
                H_OFFPAGE => {
                    let item = page_data
                        .get(start..start + 12)
                        .ok_or_else(|| format!("page {number}: a truncated off-page item"))?;
                    let first = le32(item, 4) as usize;
                    let length = le32(item, 8) as usize;
                    let data = overflow(file, page_size, first, length)?;
                    value(&data)
                }
                H_KEYDATA => {
                    // Items fill the page from its end down: this one ends
                    // where the previous one starts.
                    let end = if i == 0 {
                        page_size
                    } else {
                        offset_at(i - 1).unwrap_or(page_size)
                    };
                    match page_data.get(start + 1..end) {
                        // rpm keeps a 4-byte counter (the next package
                        // number) under key 0: not a header.
                        Some(data) if data.len() <= 8 => true,
                        Some(data) => value(&Slice(data)),
                        None => return Err(format!("page {number}: a bad item")),
                    }
                }
                _ => true,
            };
            if !keep_going {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A value's overflow chain as pieces of the file, each page used once.
fn overflow(
    file: &[u8],
    page_size: usize,
    first: usize,
    length: usize,
) -> Result<Segments<'_>, String> {
    if length > file.len() {
        return Err("an overflow value longer than the file".into());
    }
    let mut data = Segments::new(file);
    let mut seen = HashSet::new();
    let mut number = first;
    while number != 0 && ByteSource::len(&data) < length {
        if !seen.insert(number) {
            return Err("an overflow chain that loops".into());
        }
        let start = number
            .checked_mul(page_size)
            .ok_or("a page past the file")?;
        let page = file
            .get(start..start + page_size)
            .ok_or("an overflow page past the end of the file")?;
        if page[25] != OVERFLOW {
            return Err(format!("page {number} is not an overflow page"));
        }
        let next = u32::from_le_bytes([page[16], page[17], page[18], page[19]]) as usize;
        let used = u16::from_le_bytes([page[22], page[23]]) as usize;
        let take = if next == 0 {
            used
        } else {
            page_size - PAGE_HEADER
        }
        .min(page_size - PAGE_HEADER)
        .min(length - ByteSource::len(&data));
        data.push(start + PAGE_HEADER, take)?;
        number = next;
    }
    Ok(data)
}
