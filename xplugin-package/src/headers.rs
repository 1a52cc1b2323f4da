//! Our own reading of the zip headers, to cross-check the `zip` crate.
//!
//! The `zip` crate finds the central directory and walks it; it trusts the
//! central directory and never looks at a local header unless asked. Other
//! tools (streaming unzippers, the vendor's own importer) read the local
//! headers instead, so an archive whose two headers disagree ("zip cloaking")
//! shows different files to different readers. Here every central record is
//! re-read and compared with its local header and, for streamed entries,
//! with the data descriptor after the data. Any disagreement refuses the
//! entry.
//!
//! Each fixed-size header (APPNOTE.TXT 4.3) is read once into a plain struct
//! ([`CentralFixed`], [`LocalFixed`], [`EndRecord`], [`Zip64Locator`],
//! [`Zip64EndRecord`]) by a bounds-checked little-endian [`Reader`], in the
//! style of the `object` crate; the checks then work on named fields. Nothing
//! here can panic on hostile bytes: short input is `None`, then a refusal.

use crate::window::Window;
use std::fs::File;
use std::io;
use xplugin_model::ProblemCode;

const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const DESCRIPTOR_SIGNATURE: u32 = 0x0807_4b50;
const EOCD_SIGNATURE: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIGNATURE: u32 = 0x0606_4b50;
const ZIP64_EXTRA_ID: u16 = 0x0001;
const U16_MAX: u16 = 0xFFFF;
const U32_MAX: u32 = 0xFFFF_FFFF;

/// General-purpose flag bit 3: sizes and CRC follow the data in a descriptor.
pub(crate) const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
/// Flag bits 0 (encrypted) and 6 (strong encryption).
pub(crate) const FLAG_ENCRYPTED: u16 = 1 | (1 << 6);

/// Little-endian cursor over bytes already in memory; out of range reads
/// return `None` instead of panicking.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

/// Declares a fixed-size header: a struct of little-endian integer fields in
/// file order, its length (checked against the fields at compile time) and
/// `parse`, which reads it from the start of a byte slice.
macro_rules! fixed_header {
    ($(#[$meta:meta])* $name:ident, $len:literal { $($(#[$field_meta:meta])* $field:ident: $ty:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl $name {
            /// Bytes on disk.
            pub const LEN: usize = $len;

            /// Reads the header from the start of `bytes`; `None` if they
            /// are too short.
            pub fn parse(bytes: &[u8]) -> Option<Self> {
                let mut r = Reader::new(bytes);
                Some($name { $($field: r.$ty()?,)* })
            }
        }

        const _: () = assert!($len == 0 $(+ std::mem::size_of::<$ty>())*);
    };
}

fixed_header! {
    /// The fixed part of a central directory record (4.3.12).
    CentralFixed, 46 {
        signature: u32,
        _version_made_by: u16,
        _version_needed: u16,
        flags: u16,
        method: u16,
        _time: u16,
        _date: u16,
        crc32: u32,
        compressed_size: u32,
        uncompressed_size: u32,
        name_len: u16,
        extra_len: u16,
        comment_len: u16,
        disk_start: u16,
        _internal_attributes: u16,
        external_attributes: u32,
        local_header_offset: u32,
    }
}

fixed_header! {
    /// The fixed part of a local file header (4.3.7).
    LocalFixed, 30 {
        signature: u32,
        _version_needed: u16,
        flags: u16,
        method: u16,
        _time: u16,
        _date: u16,
        crc32: u32,
        compressed_size: u32,
        uncompressed_size: u32,
        name_len: u16,
        extra_len: u16,
    }
}

fixed_header! {
    /// The end of central directory record, without its comment (4.3.16).
    EndRecord, 22 {
        signature: u32,
        disk: u16,
        directory_disk: u16,
        entries_on_disk: u16,
        entries: u16,
        directory_size: u32,
        directory_offset: u32,
        comment_len: u16,
    }
}

fixed_header! {
    /// The zip64 end of central directory locator (4.3.15).
    Zip64Locator, 20 {
        signature: u32,
        _end_record_disk: u32,
        end_record_offset: u64,
        _disks: u32,
    }
}

fixed_header! {
    /// The fixed part of the zip64 end of central directory record (4.3.14).
    Zip64EndRecord, 56 {
        signature: u32,
        record_size: u64,
        _version_made_by: u16,
        _version_needed: u16,
        disk: u32,
        directory_disk: u32,
        entries_on_disk: u64,
        entries: u64,
        directory_size: u64,
        directory_offset: u64,
    }
}

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
    /// The whole record: fixed part, name, extra field, comment.
    pub record_len: u64,
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
    /// The archive is malformed or lies: a refusal with its problem code.
    Bad(ProblemCode, String),
    /// The header runs past the end of the archive or of the region it must
    /// lie in; the caller says which problem that is where it reads.
    Truncated,
    /// Reading the package file failed.
    Io(io::Error),
}

impl HeaderError {
    /// The refusal, with `truncated` as the code of a header cut short.
    /// Our own read failures stay errors.
    pub fn refusal(self, truncated: ProblemCode) -> Result<(ProblemCode, String), io::Error> {
        match self {
            HeaderError::Bad(code, message) => Ok((code, message)),
            HeaderError::Truncated => Ok((
                truncated,
                "the header runs past the end of the archive (truncated)".into(),
            )),
            HeaderError::Io(e) => Err(e),
        }
    }
}

impl From<io::Error> for HeaderError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            HeaderError::Truncated
        } else {
            HeaderError::Io(e)
        }
    }
}

fn bad<T>(code: ProblemCode, msg: impl Into<String>) -> Result<T, HeaderError> {
    Err(HeaderError::Bad(code, msg.into()))
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

/// Reads `len` bytes at `offset`, refusing anything past `limit`.
fn read_vec(file: &Window, len: usize, offset: u64, limit: u64) -> Result<Vec<u8>, HeaderError> {
    if offset.saturating_add(len as u64) > limit {
        return Err(HeaderError::Truncated);
    }
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Reads the fixed header `T` at `offset` (before `limit`).
fn read_fixed<T>(
    file: &Window,
    offset: u64,
    limit: u64,
    len: usize,
    parse: fn(&[u8]) -> Option<T>,
) -> Result<T, HeaderError> {
    parse(&read_vec(file, len, offset, limit)?).ok_or(HeaderError::Truncated)
}

/// Finds the zip64 extended-information field in an extra block.
fn zip64_field(extra: &[u8]) -> Result<Option<&[u8]>, HeaderError> {
    let malformed = ProblemCode::PackageMalformedEntry;
    let mut r = Reader::new(extra);
    let mut found = None;
    while !r.at_end() {
        let (Some(id), Some(len)) = (r.u16(), r.u16()) else {
            return bad(
                malformed,
                "the extra field block is malformed (a field header is cut short)",
            );
        };
        let Some(data) = r.take(usize::from(len)) else {
            return bad(
                malformed,
                "the extra field block is malformed (a field runs past its end)",
            );
        };
        if id == ZIP64_EXTRA_ID {
            if found.is_some() {
                return bad(malformed, "the entry has two zip64 extra fields");
            }
            found = Some(data);
        }
    }
    Ok(found)
}

/// The fixed part of the central record at `offset`, which must lie before
/// `limit` (the end of the directory) with its name, extra and comment.
fn read_central_fixed(file: &Window, offset: u64, limit: u64) -> Result<CentralFixed, HeaderError> {
    let fixed = read_fixed(file, offset, limit, CentralFixed::LEN, CentralFixed::parse)?;
    if fixed.signature != CENTRAL_SIGNATURE {
        return bad(
            ProblemCode::PackageMalformedDirectory,
            format!(
                "no central directory record at offset {offset} (the entry count and the directory disagree)"
            ),
        );
    }
    let lengths = RecordLengths::of(&fixed);
    if offset.saturating_add(lengths.total()) > limit {
        return bad(
            ProblemCode::PackageMalformedDirectory,
            format!(
                "the central directory record at offset {offset} runs past the end of the directory"
            ),
        );
    }
    Ok(fixed)
}

/// Reads and resolves the central record at `offset`; `limit` is the end
/// of the central directory.
pub(crate) fn read_central_record(
    file: &Window,
    offset: u64,
    limit: u64,
) -> Result<CentralRecord, HeaderError> {
    let fixed = read_central_fixed(file, offset, limit)?;
    let var_start = offset + CentralFixed::LEN as u64;
    let raw_name = read_vec(file, usize::from(fixed.name_len), var_start, limit)?;
    let extra = read_vec(
        file,
        usize::from(fixed.extra_len),
        var_start + u64::from(fixed.name_len),
        limit,
    )?;

    let mut uncompressed_size = u64::from(fixed.uncompressed_size);
    let mut compressed_size = u64::from(fixed.compressed_size);
    let mut local_header_offset = u64::from(fixed.local_header_offset);
    let mut disk_start = u32::from(fixed.disk_start);
    if let Some(z) = zip64_field(&extra)? {
        // Only the fields whose 32-bit value is saturated are present, in this order.
        let mut zr = Reader::new(z);
        let missing = || {
            HeaderError::Bad(
                ProblemCode::PackageMalformedEntry,
                "the zip64 extra field is shorter than the fields it must carry".into(),
            )
        };
        if fixed.uncompressed_size == U32_MAX {
            uncompressed_size = zr.u64().ok_or_else(missing)?;
        }
        if fixed.compressed_size == U32_MAX {
            compressed_size = zr.u64().ok_or_else(missing)?;
        }
        if fixed.local_header_offset == U32_MAX {
            local_header_offset = zr.u64().ok_or_else(missing)?;
        }
        if fixed.disk_start == U16_MAX {
            disk_start = zr.u32().ok_or_else(missing)?;
        }
    }
    Ok(CentralRecord {
        raw_name,
        flags: fixed.flags,
        method: fixed.method,
        crc32: fixed.crc32,
        compressed_size,
        uncompressed_size,
        external_attributes: fixed.external_attributes,
        local_header_offset,
        disk_start,
        record_len: RecordLengths::of(&fixed).total(),
    })
}

/// Reads the local header of `central` and checks that it says the same thing,
/// and, for a streamed entry, that the data descriptor does too. `limit` is
/// where entry data must end (the start of the central directory).
pub(crate) fn check_local_header(
    file: &Window,
    central: &CentralRecord,
    limit: u64,
) -> Result<LocalExtent, HeaderError> {
    let malformed = ProblemCode::PackageMalformedEntry;
    let start = central.local_header_offset;
    if start.saturating_add(LocalFixed::LEN as u64) > limit {
        return bad(
            malformed,
            format!(
                "the local header offset {start} is outside the archive's data area (0..{limit})"
            ),
        );
    }
    let local = read_fixed(file, start, limit, LocalFixed::LEN, LocalFixed::parse)?;
    if local.signature != LOCAL_SIGNATURE {
        return bad(malformed, format!("no local file header at offset {start}"));
    }
    let name_start = start + LocalFixed::LEN as u64;
    let name = read_vec(file, usize::from(local.name_len), name_start, limit)?;
    let extra_start = name_start + u64::from(local.name_len);
    let extra = read_vec(file, usize::from(local.extra_len), extra_start, limit)?;
    let data_start = extra_start + u64::from(local.extra_len);

    let zip64 = zip64_field(&extra)?.is_some();
    let disagreements = local_disagreements(central, &local, &name, &extra)?;
    if !disagreements.is_empty() {
        return bad(
            ProblemCode::PackageHeaderMismatch,
            format!(
                "the local file header disagrees with the central directory ({})",
                disagreements.join("; ")
            ),
        );
    }

    let data_end = data_start
        .checked_add(central.compressed_size)
        .filter(|end| *end <= limit)
        .ok_or_else(|| {
            HeaderError::Bad(
                malformed,
                format!(
                    "the entry's data ({} bytes from offset {data_start}) runs past the data area, which ends at {limit} (truncated or lying sizes)",
                    central.compressed_size
                ),
            )
        })?;
    let end = if local.flags & FLAG_DATA_DESCRIPTOR != 0 {
        data_end + check_descriptor(file, central, data_end, limit, zip64)?
    } else {
        data_end
    };
    Ok(LocalExtent {
        header_start: start,
        data_start,
        end,
    })
}

/// What the local header (with its `name` and `extra` field) says
/// differently from the central record, one phrase per field.
fn local_disagreements(
    central: &CentralRecord,
    local: &LocalFixed,
    name: &[u8],
    extra: &[u8],
) -> Result<Vec<String>, HeaderError> {
    let mut out = Vec::new();
    if name != central.raw_name {
        out.push(format!(
            "name: central directory \"{}\", local header \"{}\"",
            super::entry_name::display_raw(&central.raw_name),
            super::entry_name::display_raw(name)
        ));
    }
    if local.flags != central.flags {
        out.push(format!(
            "flags: central directory {:#06x}, local header {:#06x}",
            central.flags, local.flags
        ));
    }
    if local.method != central.method {
        out.push(format!(
            "compression method: central directory {}, local header {}",
            central.method, local.method
        ));
    }
    let mut local_csize = u64::from(local.compressed_size);
    let mut local_usize = u64::from(local.uncompressed_size);
    if let Some(z) = zip64_field(extra)? {
        // In a local header the zip64 field carries both sizes.
        if local.uncompressed_size == U32_MAX || local.compressed_size == U32_MAX {
            let mut zr = Reader::new(z);
            let missing = || {
                HeaderError::Bad(
                    ProblemCode::PackageMalformedEntry,
                    "the local zip64 extra field is too short".into(),
                )
            };
            local_usize = zr.u64().ok_or_else(missing)?;
            local_csize = zr.u64().ok_or_else(missing)?;
        }
    }
    let streamed = local.flags & FLAG_DATA_DESCRIPTOR != 0;
    let fields = [
        ("CRC-32", u64::from(local.crc32), u64::from(central.crc32)),
        ("compressed size", local_csize, central.compressed_size),
        ("uncompressed size", local_usize, central.uncompressed_size),
    ];
    for (what, local_value, central_value) in fields {
        // A streamed entry may leave its local fields zero; if set they must agree.
        if local_value != central_value && !(streamed && local_value == 0) {
            out.push(format!(
                "{what}: central directory {central_value}, local header {local_value}"
            ));
        }
    }
    Ok(out)
}

/// Checks the data descriptor after a streamed entry's data; returns its length.
fn check_descriptor(
    file: &Window,
    central: &CentralRecord,
    at: u64,
    limit: u64,
    zip64: bool,
) -> Result<u64, HeaderError> {
    let available = limit.saturating_sub(at).min(24);
    let buf = read_vec(file, available as usize, at, limit)?;
    let mut r = Reader::new(&buf);
    let truncated = || {
        HeaderError::Bad(
            ProblemCode::PackageMalformedEntry,
            "the data descriptor is cut short".into(),
        )
    };
    let mut len = 0u64;
    let mut first = r.u32().ok_or_else(truncated)?;
    if first == DESCRIPTOR_SIGNATURE {
        len += 4;
        first = r.u32().ok_or_else(truncated)?;
    }
    let crc32 = first;
    let (csize, usize_) = if zip64 {
        len += 20;
        (
            r.u64().ok_or_else(truncated)?,
            r.u64().ok_or_else(truncated)?,
        )
    } else {
        len += 12;
        (
            u64::from(r.u32().ok_or_else(truncated)?),
            u64::from(r.u32().ok_or_else(truncated)?),
        )
    };
    if crc32 != central.crc32
        || csize != central.compressed_size
        || usize_ != central.uncompressed_size
    {
        return bad(
            ProblemCode::PackageHeaderMismatch,
            format!(
                "the data descriptor disagrees with the central directory (CRC-32 {crc32:#010x}/{:#010x}, compressed {csize}/{}, uncompressed {usize_}/{})",
                central.crc32, central.compressed_size, central.uncompressed_size
            ),
        );
    }
    Ok(len)
}

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
pub(crate) fn read_directory(file: &Window, file_len: u64) -> Result<Directory, HeaderError> {
    let (eocd_pos, end) = find_end_record(file, file_len)?;
    if end.disk != 0 || end.directory_disk != 0 || end.entries_on_disk != end.entries {
        return bad(
            ProblemCode::PackageMultiDisk,
            "the archive claims to span several disks, which is not supported",
        );
    }
    let (directory, size) = match read_zip64_end(file, file_len, eocd_pos)? {
        Some((eocd64_pos, end64)) => {
            check_zip64_agrees(&end, &end64)?;
            let directory = Directory {
                entries: end64.entries,
                start: end64.directory_offset,
                end: eocd64_pos,
            };
            (directory, end64.directory_size)
        }
        None if end.entries == U16_MAX
            || end.directory_size == U32_MAX
            || end.directory_offset == U32_MAX =>
        {
            return bad(
                ProblemCode::PackageMalformedDirectory,
                "the end record needs a zip64 end record, and there is none (truncated?)",
            )
        }
        None => {
            let directory = Directory {
                entries: u64::from(end.entries),
                start: u64::from(end.directory_offset),
                end: eocd_pos,
            };
            (directory, u64::from(end.directory_size))
        }
    };
    if directory.start.checked_add(size) != Some(directory.end) {
        return bad(
            ProblemCode::PackageMalformedDirectory,
            format!(
                "the central directory ({size} bytes from offset {}) does not end where the end record begins (offset {}): bytes are hidden or missing",
                directory.start, directory.end
            ),
        );
    }
    Ok(directory)
}

/// The end record whose comment reaches exactly the end of the file, and
/// its offset. There must be exactly one: an end record hidden in the
/// comment of another makes readers disagree about which directory is real.
fn find_end_record(file: &Window, file_len: u64) -> Result<(u64, EndRecord), HeaderError> {
    let len = EndRecord::LEN as u64;
    if file_len < len {
        return bad(
            ProblemCode::PackageNotAZip,
            format!("the file is {file_len} bytes, too short to be a zip archive (truncated?)"),
        );
    }
    let window_start = file_len.saturating_sub(len + u64::from(U16_MAX));
    let tail = read_vec(
        file,
        (file_len - window_start) as usize,
        window_start,
        file_len,
    )?;
    let mut found = None;
    for pos in (0..=tail.len().saturating_sub(EndRecord::LEN)).rev() {
        let Some(end) = tail.get(pos..).and_then(EndRecord::parse) else {
            continue;
        };
        let ends_file = pos as u64 + len + u64::from(end.comment_len) == tail.len() as u64;
        if end.signature != EOCD_SIGNATURE || !ends_file {
            continue;
        }
        if found.is_some() {
            return bad(
                ProblemCode::PackageAmbiguousDirectory,
                "two end-of-central-directory records both end the file (one hides in the other's comment): readers would disagree about the contents",
            );
        }
        found = Some((window_start + pos as u64, end));
    }
    found.map_or_else(
        || {
            bad(
                ProblemCode::PackageNotAZip,
                "no end-of-central-directory record at the end of the file: not a zip archive, truncated, or followed by extra bytes",
            )
        },
        Ok,
    )
}

/// The zip64 end record and its offset, when a locator precedes the end
/// record at `eocd_pos`.
fn read_zip64_end(
    file: &Window,
    file_len: u64,
    eocd_pos: u64,
) -> Result<Option<(u64, Zip64EndRecord)>, HeaderError> {
    let malformed = ProblemCode::PackageMalformedDirectory;
    let Some(locator_pos) = eocd_pos.checked_sub(Zip64Locator::LEN as u64) else {
        return Ok(None);
    };
    let locator = read_fixed(
        file,
        locator_pos,
        file_len,
        Zip64Locator::LEN,
        Zip64Locator::parse,
    )?;
    if locator.signature != ZIP64_LOCATOR_SIGNATURE {
        return Ok(None);
    }
    let eocd64_pos = locator.end_record_offset;
    if eocd64_pos.saturating_add(Zip64EndRecord::LEN as u64) > locator_pos {
        return bad(
            malformed,
            "the zip64 end record offset points past its locator",
        );
    }
    let end64 = read_fixed(
        file,
        eocd64_pos,
        file_len,
        Zip64EndRecord::LEN,
        Zip64EndRecord::parse,
    )?;
    if end64.signature != ZIP64_EOCD_SIGNATURE {
        return bad(malformed, "no zip64 end record where the locator points");
    }
    // The size field counts the record after its first 12 bytes.
    if eocd64_pos
        .checked_add(12)
        .and_then(|p| p.checked_add(end64.record_size))
        != Some(locator_pos)
    {
        return bad(
            malformed,
            "the zip64 end record does not end where its locator begins",
        );
    }
    if end64.disk != 0 || end64.directory_disk != 0 || end64.entries_on_disk != end64.entries {
        return bad(
            ProblemCode::PackageMultiDisk,
            "the archive claims to span several disks, which is not supported",
        );
    }
    Ok(Some((eocd64_pos, end64)))
}

/// Readers that ignore zip64 use the 32-bit values: where those are not
/// saturated they must say the same thing as the zip64 record.
fn check_zip64_agrees(end: &EndRecord, end64: &Zip64EndRecord) -> Result<(), HeaderError> {
    let agrees = |small: u64, saturated: u64, big: u64| small == saturated || small == big;
    if agrees(u64::from(end.entries), u64::from(U16_MAX), end64.entries)
        && agrees(
            u64::from(end.directory_size),
            u64::from(U32_MAX),
            end64.directory_size,
        )
        && agrees(
            u64::from(end.directory_offset),
            u64::from(U32_MAX),
            end64.directory_offset,
        )
    {
        Ok(())
    } else {
        bad(
            ProblemCode::PackageAmbiguousDirectory,
            "the end record and the zip64 end record disagree about the central directory",
        )
    }
}

/// The variable-length parts of a central record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordLengths {
    pub name: u64,
    pub extra: u64,
    pub comment: u64,
}

impl RecordLengths {
    fn of(fixed: &CentralFixed) -> RecordLengths {
        RecordLengths {
            name: u64::from(fixed.name_len),
            extra: u64::from(fixed.extra_len),
            comment: u64::from(fixed.comment_len),
        }
    }

    /// The whole record: fixed part, name, extra, comment.
    pub fn total(self) -> u64 {
        CentralFixed::LEN as u64 + self.name + self.extra + self.comment
    }
}

/// Reads the lengths of the central record at `offset`, for walking the
/// directory record by record without reading the records themselves.
pub(crate) fn central_record_lengths(
    file: &Window,
    offset: u64,
    limit: u64,
) -> Result<RecordLengths, HeaderError> {
    Ok(RecordLengths::of(&read_central_fixed(file, offset, limit)?))
}

/// The raw name of the central record at `offset`, for messages.
pub(crate) fn read_name(
    file: &Window,
    offset: u64,
    lengths: RecordLengths,
    limit: u64,
) -> Result<Vec<u8>, HeaderError> {
    // Shown in a message: the first 512 bytes are enough to identify it.
    read_vec(
        file,
        lengths.name.min(512) as usize,
        offset + CentralFixed::LEN as u64,
        limit,
    )
}

/// The name a local header at `start` declares, if the bytes `start..end`
/// begin with one (at most 512 bytes of it), for naming hidden entries.
pub(crate) fn local_header_name(file: &Window, start: u64, end: u64) -> Option<Vec<u8>> {
    let local = read_fixed(file, start, end, LocalFixed::LEN, LocalFixed::parse).ok()?;
    if local.signature != LOCAL_SIGNATURE {
        return None;
    }
    let name_start = start + LocalFixed::LEN as u64;
    let shown = u64::from(local.name_len)
        .min(end.saturating_sub(name_start))
        .min(512);
    read_vec(file, shown as usize, name_start, end).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_headers_parse_in_file_order_and_refuse_short_input() {
        let mut bytes = vec![0u8; EndRecord::LEN];
        bytes[..4].copy_from_slice(&EOCD_SIGNATURE.to_le_bytes());
        bytes[10..12].copy_from_slice(&3u16.to_le_bytes());
        bytes[20..22].copy_from_slice(&7u16.to_le_bytes());
        let end = EndRecord::parse(&bytes).expect("22 bytes");
        assert_eq!(end.signature, EOCD_SIGNATURE);
        assert_eq!(end.entries, 3);
        assert_eq!(end.comment_len, 7);
        assert_eq!(EndRecord::parse(&bytes[..21]), None);
        assert_eq!(CentralFixed::parse(&[0u8; 45]), None);
        assert!(CentralFixed::parse(&[0u8; 46]).is_some());
        assert_eq!(LocalFixed::parse(b"PK\x03\x04"), None);
    }
}
