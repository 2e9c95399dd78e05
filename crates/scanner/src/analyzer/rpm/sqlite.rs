//! Just enough of the SQLite file format to read one table's rows from a
//! database held in memory: `rpmdb.sqlite`'s `Packages (hnum INTEGER
//! PRIMARY KEY, blob BLOB)`.
//!
//! A read-only walk of the table's b-tree (interior and leaf table pages,
//! overflow chains), bounded by the file: every page is visited at most
//! once, so a hostile file with cycles ends. Uncommitted changes still in
//! a `-wal` file are not seen (rpm checkpoints on close). Written here
//! rather than linking SQLite because the file is untrusted input held in
//! memory: a few hundred lines of bounds-checked Rust that the fuzzer
//! covers, instead of a second copy of a C library next to sqlx's.

use std::collections::HashSet;

use super::blob::{ByteSource, Segments};

/// Calls `row` with the first BLOB column of each row of `table`, in rowid
/// order, read where it lies; stops early if `row` returns `false`.
pub(crate) fn table_blobs(
    file: &[u8],
    table: &str,
    mut row: impl FnMut(&dyn ByteSource) -> bool,
) -> Result<(), String> {
    let db = Database::open(file)?;
    // Page 1 holds the schema: `type, name, tbl_name, rootpage, sql`.
    let mut root = None;
    let mut visited = HashSet::new();
    db.walk(1, &mut visited, 0, &mut |payload| {
        let columns = record(payload)?;
        let text = |i: usize| match columns.get(i) {
            Some(Column::Text(offset, len)) if *len <= 256 => {
                let mut buf = vec![0u8; *len];
                payload.read(*offset, &mut buf).then_some(buf)
            }
            _ => None,
        };
        if let (Some(kind), Some(name), Some(Column::Integer(page))) =
            (text(0), text(1), columns.get(3))
        {
            if kind == b"table" && name.eq_ignore_ascii_case(table.as_bytes()) {
                root = Some(*page);
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    let root = root.ok_or_else(|| format!("no table {table}"))?;
    let root = u32::try_from(root).map_err(|_| "a bad root page".to_string())?;
    let mut visited = HashSet::new();
    db.walk(root, &mut visited, 0, &mut |payload| {
        for column in record(payload)? {
            if let Column::Blob(offset, len) = column {
                let view = payload
                    .view(offset, len)
                    .ok_or("a column past its record")?;
                return Ok(row(&view));
            }
        }
        Ok(true)
    })?;
    Ok(())
}

struct Database<'a> {
    file: &'a [u8],
    page_size: usize,
    /// Bytes of each page usable for content (page size minus reserved).
    usable: usize,
}

impl<'a> Database<'a> {
    fn open(file: &'a [u8]) -> Result<Self, String> {
        if file.len() < 100 || !file.starts_with(b"SQLite format 3\0") {
            return Err("not an SQLite database".into());
        }
        let page_size = match u16::from_be_bytes([file[16], file[17]]) {
            1 => 65536,
            n => n as usize,
        };
        if !page_size.is_power_of_two() || !(512..=65536).contains(&page_size) {
            return Err(format!("a bad page size {page_size}"));
        }
        let reserved = file[20] as usize;
        if reserved >= page_size - 480 {
            return Err("a bad reserved size".into());
        }
        if file[56..60] != [0, 0, 0, 1] && file[56..60] != [0, 0, 0, 0] {
            return Err("a text encoding other than UTF-8".into());
        }
        Ok(Database {
            file,
            page_size,
            usable: page_size - reserved,
        })
    }

    fn page(&self, number: u32) -> Result<&'a [u8], String> {
        let start = (number as usize)
            .checked_sub(1)
            .and_then(|n| n.checked_mul(self.page_size))
            .ok_or("page 0")?;
        self.file
            .get(start..start + self.page_size)
            .ok_or_else(|| format!("page {number} is past the end of the file"))
    }

    /// Visits the rows of the table b-tree rooted at `number`, depth first
    /// (so in rowid order), each page at most once.
    fn walk(
        &self,
        number: u32,
        visited: &mut HashSet<u32>,
        depth: u32,
        row: &mut dyn FnMut(&Segments<'a>) -> Result<bool, String>,
    ) -> Result<bool, String> {
        if depth > 64 || !visited.insert(number) {
            return Err(format!("page {number} is reached twice"));
        }
        let page = self.page(number)?;
        let header = if number == 1 { 100 } else { 0 };
        let kind = page[header];
        let cells = u16::from_be_bytes([page[header + 3], page[header + 4]]) as usize;
        let (pointers, interior) = match kind {
            0x0d => (header + 8, false),
            0x05 => (header + 12, true),
            other => return Err(format!("page {number} has type {other}, not a table page")),
        };
        for i in 0..cells {
            let at = pointers + 2 * i;
            let offset = page
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                .ok_or("a cell pointer past the page")?;
            let cell = page.get(offset..).ok_or("a cell past the page")?;
            if interior {
                let child = cell.get(0..4).ok_or("a truncated cell")?;
                let child = u32::from_be_bytes([child[0], child[1], child[2], child[3]]);
                if !self.walk(child, visited, depth + 1, row)? {
                    return Ok(false);
                }
            } else {
                let payload = self.leaf_payload(page, offset)?;
                if !row(&payload)? {
                    return Ok(false);
                }
            }
        }
        if interior {
            let right = &page[header + 8..header + 12];
            let right = u32::from_be_bytes([right[0], right[1], right[2], right[3]]);
            return self.walk(right, visited, depth + 1, row);
        }
        Ok(true)
    }

    /// A table leaf cell's payload (the cell at `offset` of `page`), as
    /// pieces of the file: the part in the cell, then its overflow chain.
    fn leaf_payload(&self, page: &'a [u8], offset: usize) -> Result<Segments<'a>, String> {
        let cell = page.get(offset..).ok_or("a cell past the page")?;
        let (size, n1) = varint(cell).ok_or("a truncated cell")?;
        let (_rowid, n2) = varint(&cell[n1..]).ok_or("a truncated cell")?;
        let size = usize::try_from(size).map_err(|_| "a bad payload size")?;
        if size > self.file.len() {
            return Err("a payload larger than the file".into());
        }
        let usable = self.usable;
        let max_local = usable - 35;
        let local = if size <= max_local {
            size
        } else {
            let min_local = (usable - 12) * 32 / 255 - 23;
            let k = min_local + (size - min_local) % (usable - 4);
            if k <= max_local {
                k
            } else {
                min_local
            }
        };
        // Where the cell's body is in the file.
        let page_start = page.as_ptr() as usize - self.file.as_ptr() as usize;
        let body = page_start + offset + n1 + n2;
        let mut payload = Segments::new(self.file);
        if body + local > page_start + page.len() {
            return Err("a cell past the page".into());
        }
        payload.push(body, local)?;
        if local < size {
            let next = self
                .file
                .get(body + local..body + local + 4)
                .ok_or("a truncated overflow pointer")?;
            let mut next = u32::from_be_bytes([next[0], next[1], next[2], next[3]]);
            let mut seen = HashSet::new();
            while ByteSource::len(&payload) < size {
                if next == 0 || !seen.insert(next) {
                    return Err("a broken overflow chain".into());
                }
                let overflow = self.page(next)?;
                let start = overflow.as_ptr() as usize - self.file.as_ptr() as usize;
                next = u32::from_be_bytes([overflow[0], overflow[1], overflow[2], overflow[3]]);
                let take = (size - ByteSource::len(&payload)).min(usable - 4);
                payload.push(start + 4, take)?;
            }
        }
        Ok(payload)
    }
}

/// One column of a record: where its bytes are within the payload.
enum Column {
    Null,
    Integer(i64),
    Text(usize, usize),
    Blob(usize, usize),
    Other,
}

/// The longest record header read (a few bytes per column).
const MAX_RECORD_HEADER: usize = 64 << 10;

/// Decodes a record's header (its serial types) and locates its columns.
fn record(payload: &dyn ByteSource) -> Result<Vec<Column>, String> {
    let bad = || "a malformed record".to_string();
    let mut head = vec![0u8; payload.len().min(9)];
    if !payload.read(0, &mut head) {
        return Err(bad());
    }
    let (header_size, mut at) = varint(&head).ok_or_else(bad)?;
    let header_size = usize::try_from(header_size).map_err(|_| bad())?;
    if header_size > payload.len() || header_size < at || header_size > MAX_RECORD_HEADER {
        return Err(bad());
    }
    let mut header = vec![0u8; header_size];
    if !payload.read(0, &mut header) {
        return Err(bad());
    }
    let mut body = header_size;
    let mut columns = Vec::new();
    while at < header_size {
        let (serial, n) = varint(&header[at..header_size]).ok_or_else(bad)?;
        at += n;
        let len = match serial {
            0 | 8 | 9 => 0,
            1..=6 => [0, 1, 2, 3, 4, 6, 8][serial as usize],
            7 => 8,
            n if n >= 12 => usize::try_from((n - 12) / 2).map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        let end = body
            .checked_add(len)
            .filter(|&end| end <= payload.len())
            .ok_or_else(bad)?;
        columns.push(match serial {
            0 => Column::Null,
            1..=6 => {
                let mut bytes = [0u8; 8];
                if !payload.read(body, &mut bytes[..len]) {
                    return Err(bad());
                }
                let negative = bytes[0] & 0x80 != 0;
                let mut n: i64 = if negative { -1 } else { 0 };
                for &b in &bytes[..len] {
                    n = (n << 8) | b as i64;
                }
                Column::Integer(n)
            }
            8 => Column::Integer(0),
            9 => Column::Integer(1),
            n if n >= 12 && n % 2 == 0 => Column::Blob(body, len),
            n if n >= 13 => Column::Text(body, len),
            _ => Column::Other,
        });
        body = end;
    }
    Ok(columns)
}

/// SQLite's variable-length integer: up to 9 bytes, big-endian, 7 bits per
/// byte, all 8 bits of the ninth.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(9) {
        if i == 8 {
            return Some(((value << 8) | b as u64, 9));
        }
        value = (value << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        assert_eq!(varint(&[0x05]), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(varint(&[0xff; 9]), Some((u64::MAX, 9)));
        assert_eq!(varint(&[0x81]), None);
        assert_eq!(varint(&[]), None);
    }

    #[test]
    fn rejects_what_is_not_a_database() {
        assert!(table_blobs(b"not a database", "Packages", |_| true).is_err());
        let mut file = vec![0u8; 1024];
        file[..16].copy_from_slice(b"SQLite format 3\0");
        file[16..18].copy_from_slice(&512u16.to_be_bytes());
        file[56..60].copy_from_slice(&[0, 0, 0, 1]);
        // Page 1 of type 0 is no table page.
        assert!(table_blobs(&file, "Packages", |_| true).is_err());
    }
}
