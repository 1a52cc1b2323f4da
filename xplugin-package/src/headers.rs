//! Our own reading of the zip headers, to cross-check the `zip` crate.
//!
//! The `zip` crate finds the central directory and walks it; it trusts the
//! central directory and never looks at a local header unless asked. Other
//! tools (streaming unzippers, the vendor's own importer) read the local
//! headers instead, so an archive whose two headers disagree ("zip cloaking")
//! shows different files to different readers. Here every central record is
//! re-read byte by byte and compared with its local header and, for streamed
//! entries, with the data descriptor after the data. Any disagreement refuses
//! the entry.

use std::fs::File;
use std::io;

const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const DESCRIPTOR_SIGNATURE: u32 = 0x0807_4b50;
const CENTRAL_FIXED_LEN: usize = 46;
const LOCAL_FIXED_LEN: usize = 30;
const ZIP64_EXTRA_ID: u16 = 0x0001;
const U32_MAX: u64 = 0xFFFF_FFFF;

/// General-purpose flag bit 3: sizes and CRC follow the data in a descriptor.
pub(crate) const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
/// Flag bits 0 (encrypted) and 6 (strong encryption).
pub(crate) const FLAG_ENCRYPTED: u16 = 1 | (1 << 6);

/// One central directory record as the bytes say, zip64 fields resolved.
#[derive(Debug, Clone)]
pub(crate) struct CentralRecord {
    pub raw_name: Vec<u8>,
    pub flags: u16,
    pub method: u16,
    pub crc32: u32,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub external_attributes: u32,
    pub local_header_offset: u64,
    pub disk_start: u32,
}

/// Where an entry's bytes are, once its local header agreed with the central record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalExtent {
    /// First byte of the local header.
    pub header_start: u64,
    /// First byte of the compressed data.
    pub data_start: u64,
    /// One past the last byte of the entry (data and data descriptor).
    pub end: u64,
}

/// Why the bytes of a header cannot be trusted.
#[derive(Debug)]
pub(crate) enum HeaderError {
    /// The archive is malformed or lies (a refusal of the entry).
    Bad(String),
    /// Reading the package file failed.
    Io(io::Error),
}

impl From<io::Error> for HeaderError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            HeaderError::Bad("the header runs past the end of the archive (truncated)".into())
        } else {
            HeaderError::Io(e)
        }
    }
}

fn bad<T>(msg: impl Into<String>) -> Result<T, HeaderError> {
    Err(HeaderError::Bad(msg.into()))
}

/// Reads exactly `buf.len()` bytes at `offset` without moving any cursor
/// (the `zip` crate shares the file handle and seeks it on its own).
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(
                file,
                &mut buf[done..],
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

fn read_vec(file: &File, len: usize, offset: u64, file_len: u64) -> Result<Vec<u8>, HeaderError> {
    if offset.saturating_add(len as u64) > file_len {
        return bad("the header runs past the end of the archive (truncated)");
    }
    let mut buf = vec![0u8; len];
    read_exact_at(file, &mut buf, offset)?;
    Ok(buf)
}

/// Little-endian cursor over a header already in memory; out of range reads
/// return `None` instead of panicking.
struct Bytes<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Bytes { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        let s = self.take(2)?;
        Some(u16::from_le_bytes([*s.first()?, *s.get(1)?]))
    }
    fn u32(&mut self) -> Option<u32> {
        let s = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(s);
        Some(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Option<u64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Some(u64::from_le_bytes(a))
    }
}

/// Finds the zip64 extended-information field in an extra block.
fn zip64_field(extra: &[u8]) -> Result<Option<&[u8]>, HeaderError> {
    let mut b = Bytes::new(extra);
    let mut found = None;
    while b.pos < extra.len() {
        let (Some(id), Some(len)) = (b.u16(), b.u16()) else {
            return bad("the extra field block is malformed (a field header is cut short)");
        };
        let Some(data) = b.take(usize::from(len)) else {
            return bad("the extra field block is malformed (a field runs past its end)");
        };
        if id == ZIP64_EXTRA_ID {
            if found.is_some() {
                return bad("the entry has two zip64 extra fields");
            }
            found = Some(data);
        }
    }
    Ok(found)
}

/// Reads and resolves the central record at `offset`.
pub(crate) fn read_central_record(
    file: &File,
    offset: u64,
    file_len: u64,
) -> Result<CentralRecord, HeaderError> {
    let fixed = read_vec(file, CENTRAL_FIXED_LEN, offset, file_len)?;
    let mut b = Bytes::new(&fixed);
    let field = |v: Option<u32>| v.ok_or_else(|| HeaderError::Bad("short central record".into()));
    if field(b.u32())? != CENTRAL_SIGNATURE {
        return bad("no central directory record at the offset the directory gives");
    }
    let short = || HeaderError::Bad("short central record".into());
    let _version_made_by = b.u16().ok_or_else(short)?;
    let _version_needed = b.u16().ok_or_else(short)?;
    let flags = b.u16().ok_or_else(short)?;
    let method = b.u16().ok_or_else(short)?;
    let _time = b.u16().ok_or_else(short)?;
    let _date = b.u16().ok_or_else(short)?;
    let crc32 = b.u32().ok_or_else(short)?;
    let csize32 = b.u32().ok_or_else(short)?;
    let usize32 = b.u32().ok_or_else(short)?;
    let name_len = b.u16().ok_or_else(short)?;
    let extra_len = b.u16().ok_or_else(short)?;
    let _comment_len = b.u16().ok_or_else(short)?;
    let disk16 = b.u16().ok_or_else(short)?;
    let _internal = b.u16().ok_or_else(short)?;
    let external_attributes = b.u32().ok_or_else(short)?;
    let offset32 = b.u32().ok_or_else(short)?;

    let var_start = offset + CENTRAL_FIXED_LEN as u64;
    let raw_name = read_vec(file, usize::from(name_len), var_start, file_len)?;
    let extra = read_vec(
        file,
        usize::from(extra_len),
        var_start + u64::from(name_len),
        file_len,
    )?;

    let mut uncompressed_size = u64::from(usize32);
    let mut compressed_size = u64::from(csize32);
    let mut local_header_offset = u64::from(offset32);
    let mut disk_start = u32::from(disk16);
    if let Some(z) = zip64_field(&extra)? {
        // Only the fields whose 32-bit value is saturated are present, in this order.
        let mut zb = Bytes::new(z);
        let missing = || {
            HeaderError::Bad(
                "the zip64 extra field is shorter than the fields it must carry".into(),
            )
        };
        if u64::from(usize32) == U32_MAX {
            uncompressed_size = zb.u64().ok_or_else(missing)?;
        }
        if u64::from(csize32) == U32_MAX {
            compressed_size = zb.u64().ok_or_else(missing)?;
        }
        if u64::from(offset32) == U32_MAX {
            local_header_offset = zb.u64().ok_or_else(missing)?;
        }
        if disk16 == 0xFFFF {
            disk_start = zb.u32().ok_or_else(missing)?;
        }
    }
    Ok(CentralRecord {
        raw_name,
        flags,
        method,
        crc32,
        compressed_size,
        uncompressed_size,
        external_attributes,
        local_header_offset,
        disk_start,
    })
}

/// Reads the local header of `central` and checks that it says the same thing,
/// and, for a streamed entry, that the data descriptor does too. `limit` is
/// where entry data must end (the start of the central directory).
pub(crate) fn check_local_header(
    file: &File,
    central: &CentralRecord,
    limit: u64,
) -> Result<LocalExtent, HeaderError> {
    let start = central.local_header_offset;
    if start.saturating_add(LOCAL_FIXED_LEN as u64) > limit {
        return bad(format!(
            "the local header offset {start} is outside the archive's data area (0..{limit})"
        ));
    }
    let fixed = read_vec(file, LOCAL_FIXED_LEN, start, limit)?;
    let mut b = Bytes::new(&fixed);
    let short = || HeaderError::Bad("short local header".into());
    if b.u32().ok_or_else(short)? != LOCAL_SIGNATURE {
        return bad(format!("no local file header at offset {start}"));
    }
    let _version_needed = b.u16().ok_or_else(short)?;
    let flags = b.u16().ok_or_else(short)?;
    let method = b.u16().ok_or_else(short)?;
    let _time = b.u16().ok_or_else(short)?;
    let _date = b.u16().ok_or_else(short)?;
    let crc32 = b.u32().ok_or_else(short)?;
    let csize32 = b.u32().ok_or_else(short)?;
    let usize32 = b.u32().ok_or_else(short)?;
    let name_len = b.u16().ok_or_else(short)?;
    let extra_len = b.u16().ok_or_else(short)?;
    let name_start = start + LOCAL_FIXED_LEN as u64;
    let name = read_vec(file, usize::from(name_len), name_start, limit)?;
    let extra = read_vec(
        file,
        usize::from(extra_len),
        name_start + u64::from(name_len),
        limit,
    )?;
    let data_start = name_start + u64::from(name_len) + u64::from(extra_len);

    let mut disagreements = Vec::new();
    if name != central.raw_name {
        disagreements.push(format!(
            "name: central directory \"{}\", local header \"{}\"",
            super::entry_name::display_raw(&central.raw_name),
            super::entry_name::display_raw(&name)
        ));
    }
    if flags != central.flags {
        disagreements.push(format!(
            "flags: central directory {:#06x}, local header {flags:#06x}",
            central.flags
        ));
    }
    if method != central.method {
        disagreements.push(format!(
            "compression method: central directory {}, local header {method}",
            central.method
        ));
    }

    let mut local_csize = u64::from(csize32);
    let mut local_usize = u64::from(usize32);
    let zip64 = zip64_field(&extra)?;
    if let Some(z) = zip64 {
        // In a local header the zip64 field carries both sizes.
        let mut zb = Bytes::new(z);
        if u64::from(usize32) == U32_MAX || u64::from(csize32) == U32_MAX {
            let missing = || HeaderError::Bad("the local zip64 extra field is too short".into());
            local_usize = zb.u64().ok_or_else(missing)?;
            local_csize = zb.u64().ok_or_else(missing)?;
        }
    }
    let streamed = flags & FLAG_DATA_DESCRIPTOR != 0;
    let compare = |what: &str, local: u64, central_value: u64, out: &mut Vec<String>| {
        // A streamed entry may leave its local fields zero; if set they must agree.
        if local != central_value && !(streamed && local == 0) {
            out.push(format!(
                "{what}: central directory {central_value}, local header {local}"
            ));
        }
    };
    compare(
        "CRC-32",
        u64::from(crc32),
        u64::from(central.crc32),
        &mut disagreements,
    );
    compare(
        "compressed size",
        local_csize,
        central.compressed_size,
        &mut disagreements,
    );
    compare(
        "uncompressed size",
        local_usize,
        central.uncompressed_size,
        &mut disagreements,
    );
    if !disagreements.is_empty() {
        return bad(format!(
            "the local file header disagrees with the central directory ({})",
            disagreements.join("; ")
        ));
    }

    let data_end = data_start
        .checked_add(central.compressed_size)
        .filter(|end| *end <= limit)
        .ok_or_else(|| {
            HeaderError::Bad(format!(
                "the entry's data ({} bytes from offset {data_start}) runs past the data area, which ends at {limit} (truncated or lying sizes)",
                central.compressed_size
            ))
        })?;
    let end = if streamed {
        data_end + check_descriptor(file, central, data_end, limit, zip64.is_some())?
    } else {
        data_end
    };
    Ok(LocalExtent {
        header_start: start,
        data_start,
        end,
    })
}

/// Checks the data descriptor after a streamed entry's data; returns its length.
fn check_descriptor(
    file: &File,
    central: &CentralRecord,
    at: u64,
    limit: u64,
    zip64: bool,
) -> Result<u64, HeaderError> {
    let available = limit.saturating_sub(at).min(24);
    let buf = read_vec(file, available as usize, at, limit)?;
    let mut b = Bytes::new(&buf);
    let truncated = || HeaderError::Bad("the data descriptor is cut short".into());
    let mut len = 0u64;
    let mut first = b.u32().ok_or_else(truncated)?;
    if first == DESCRIPTOR_SIGNATURE {
        len += 4;
        first = b.u32().ok_or_else(truncated)?;
    }
    let crc32 = first;
    let (csize, usize_) = if zip64 {
        len += 20;
        (
            b.u64().ok_or_else(truncated)?,
            b.u64().ok_or_else(truncated)?,
        )
    } else {
        len += 12;
        (
            u64::from(b.u32().ok_or_else(truncated)?),
            u64::from(b.u32().ok_or_else(truncated)?),
        )
    };
    if crc32 != central.crc32
        || csize != central.compressed_size
        || usize_ != central.uncompressed_size
    {
        return bad(format!(
            "the data descriptor disagrees with the central directory (CRC-32 {crc32:#010x}/{:#010x}, compressed {csize}/{}, uncompressed {usize_}/{})",
            central.crc32, central.compressed_size, central.uncompressed_size
        ));
    }
    Ok(len)
}

const EOCD_SIGNATURE: u32 = 0x0605_4b50;
const EOCD_LEN: u64 = 22;
const ZIP64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_SIGNATURE: u32 = 0x0606_4b50;
const ZIP64_EOCD_FIXED_LEN: usize = 56;

/// The end-of-central-directory facts, read before the `zip` crate is let
/// loose on the archive, so an absurd entry count is refused before anything
/// allocates memory per entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Directory {
    /// Entries the directory declares.
    pub entries: u64,
    /// Where the central directory starts (also where entry data must end).
    pub start: u64,
    /// Where it ends (the end record or the zip64 end record follows at once).
    pub end: u64,
}

/// Finds and checks the end record: exactly at the end of the file (after its
/// comment), single disk, and a central directory that ends where the end
/// records begin, so no bytes hide between or after them.
pub(crate) fn read_directory(file: &File, file_len: u64) -> Result<Directory, HeaderError> {
    if file_len < EOCD_LEN {
        return bad(format!(
            "the file is {file_len} bytes, too short to be a zip archive (truncated?)"
        ));
    }
    let window_start = file_len.saturating_sub(EOCD_LEN + 0xFFFF);
    let tail = read_vec(
        file,
        (file_len - window_start) as usize,
        window_start,
        file_len,
    )?;
    // A signature whose comment length reaches exactly the end of the file.
    // There must be exactly one: an end record hidden in the comment of
    // another makes readers disagree about which directory is the real one.
    let mut found = None;
    for pos in (0..=tail.len().saturating_sub(EOCD_LEN as usize)).rev() {
        let Some(rec) = tail.get(pos..pos + EOCD_LEN as usize) else {
            continue;
        };
        let mut b = Bytes::new(rec);
        if b.u32() != Some(EOCD_SIGNATURE) {
            continue;
        }
        let comment_len = rec.get(20..22).map(|c| u16::from_le_bytes([c[0], c[1]]));
        if comment_len.map(|c| pos as u64 + EOCD_LEN + u64::from(c)) == Some(tail.len() as u64) {
            if found.is_some() {
                return bad("two end-of-central-directory records both end the file (one hides in the other's comment): readers would disagree about the contents");
            }
            found = Some((window_start + pos as u64, rec));
        }
    }
    let Some((eocd_pos, rec)) = found else {
        return bad("no end-of-central-directory record at the end of the file: not a zip archive, truncated, or followed by extra bytes");
    };
    let mut b = Bytes::new(rec);
    let short = || HeaderError::Bad("short end record".into());
    let _sig = b.u32().ok_or_else(short)?;
    let disk = b.u16().ok_or_else(short)?;
    let cd_disk = b.u16().ok_or_else(short)?;
    let entries_here = b.u16().ok_or_else(short)?;
    let entries16 = b.u16().ok_or_else(short)?;
    let size32 = b.u32().ok_or_else(short)?;
    let offset32 = b.u32().ok_or_else(short)?;
    if disk != 0 || cd_disk != 0 || entries_here != entries16 {
        return bad("the archive claims to span several disks, which is not supported");
    }
    let mut directory = Directory {
        entries: u64::from(entries16),
        start: u64::from(offset32),
        end: eocd_pos,
    };
    let mut size = u64::from(size32);
    let locator_pos = eocd_pos.checked_sub(ZIP64_LOCATOR_LEN);
    let locator = match locator_pos {
        Some(pos) => {
            let l = read_vec(file, ZIP64_LOCATOR_LEN as usize, pos, file_len)?;
            (Bytes::new(&l).u32() == Some(ZIP64_LOCATOR_SIGNATURE)).then_some((pos, l))
        }
        None => None,
    };
    if let Some((locator_pos, l)) = locator {
        let mut lb = Bytes::new(&l);
        let _sig = lb.u32().ok_or_else(short)?;
        let _disk = lb.u32().ok_or_else(short)?;
        let eocd64_pos = lb.u64().ok_or_else(short)?;
        if eocd64_pos.saturating_add(ZIP64_EOCD_FIXED_LEN as u64) > locator_pos {
            return bad("the zip64 end record offset points past its locator");
        }
        let r = read_vec(file, ZIP64_EOCD_FIXED_LEN, eocd64_pos, file_len)?;
        let mut rb = Bytes::new(&r);
        if rb.u32() != Some(ZIP64_EOCD_SIGNATURE) {
            return bad("no zip64 end record where the locator points");
        }
        let record_size = rb.u64().ok_or_else(short)?;
        if eocd64_pos
            .checked_add(12)
            .and_then(|p| p.checked_add(record_size))
            != Some(locator_pos)
        {
            return bad("the zip64 end record does not end where its locator begins");
        }
        let _made_by = rb.u16().ok_or_else(short)?;
        let _needed = rb.u16().ok_or_else(short)?;
        let disk64 = rb.u32().ok_or_else(short)?;
        let cd_disk64 = rb.u32().ok_or_else(short)?;
        let entries_here64 = rb.u64().ok_or_else(short)?;
        let entries64 = rb.u64().ok_or_else(short)?;
        let size64 = rb.u64().ok_or_else(short)?;
        let offset64 = rb.u64().ok_or_else(short)?;
        if disk64 != 0 || cd_disk64 != 0 || entries_here64 != entries64 {
            return bad("the archive claims to span several disks, which is not supported");
        }
        // Readers that ignore zip64 use the 32-bit values: where those are
        // not saturated they must say the same thing.
        let agrees = |small: u64, saturated: u64, big: u64| small == saturated || small == big;
        if !agrees(u64::from(entries16), 0xFFFF, entries64)
            || !agrees(u64::from(size32), U32_MAX, size64)
            || !agrees(u64::from(offset32), U32_MAX, offset64)
        {
            return bad(
                "the end record and the zip64 end record disagree about the central directory",
            );
        }
        directory.entries = entries64;
        directory.start = offset64;
        directory.end = eocd64_pos;
        size = size64;
    } else if entries16 == 0xFFFF || size32 == 0xFFFF_FFFF || offset32 == 0xFFFF_FFFF {
        return bad("the end record needs a zip64 end record, and there is none (truncated?)");
    }
    if directory.start.checked_add(size) != Some(directory.end) {
        return bad(format!(
            "the central directory ({size} bytes from offset {}) does not end where the end record begins (offset {}): bytes are hidden or missing",
            directory.start, directory.end
        ));
    }
    Ok(directory)
}

/// The variable-length parts of a central record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordLengths {
    pub name: u64,
    pub extra: u64,
    pub comment: u64,
}

impl RecordLengths {
    /// The whole record: fixed part, name, extra, comment.
    pub fn total(self) -> u64 {
        CENTRAL_FIXED_LEN as u64 + self.name + self.extra + self.comment
    }
}

/// Reads the lengths of the central record at `offset`, for walking the
/// directory record by record without reading the records themselves.
pub(crate) fn central_record_lengths(
    file: &File,
    offset: u64,
    limit: u64,
) -> Result<RecordLengths, HeaderError> {
    let fixed = read_vec(file, CENTRAL_FIXED_LEN, offset, limit)?;
    if Bytes::new(&fixed).u32() != Some(CENTRAL_SIGNATURE) {
        return bad(format!(
            "no central directory record at offset {offset} (the entry count and the directory disagree)"
        ));
    }
    let len = |at: usize| {
        fixed
            .get(at..at + 2)
            .map(|c| u64::from(u16::from_le_bytes([c[0], c[1]])))
            .unwrap_or(0)
    };
    let lengths = RecordLengths {
        name: len(28),
        extra: len(30),
        comment: len(32),
    };
    if offset.saturating_add(lengths.total()) > limit {
        return bad(format!(
            "the central directory record at offset {offset} runs past the end of the directory"
        ));
    }
    Ok(lengths)
}

/// The raw name of the central record at `offset`, for messages.
pub(crate) fn read_name(
    file: &File,
    offset: u64,
    lengths: RecordLengths,
    limit: u64,
) -> Result<Vec<u8>, HeaderError> {
    // Shown in a message: the first 512 bytes are enough to identify it.
    read_vec(
        file,
        lengths.name.min(512) as usize,
        offset + CENTRAL_FIXED_LEN as u64,
        limit,
    )
}
