//! Walking one zip archive (the outer package or an inner `client.zip` /
//! `controller.zip`): a metadata pass that checks every entry before a byte
//! is unpacked, then a streaming data pass that holds the decompressor to the
//! sizes and CRC the headers declared.

use super::entry_name::{collision_key, display_raw, parse_entry_name, EntryName};
use super::headers::{self, CentralRecord, Directory, HeaderError, LocalExtent, FLAG_ENCRYPTED};
use super::limits::Limits;
use crate::window::{Window, WindowReader};
use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use xplugin_model::{Problem, ProblemCode, Problems};

const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;
const METHOD_AES: u16 = 99;

/// Largest extra-field block plus comment accepted in one central record.
/// Real writers use a few dozen bytes (timestamps, Unix ids, zip64 sizes).
const MAX_RECORD_EXTRA: u64 = 4096;

/// Size of the fixed buffers used to copy and decompress; memory does not
/// grow with the package.
pub(crate) const COPY_BUFFER: usize = 64 * 1024;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFSOCK: u32 = 0o140_000;

/// How an entry's data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Stored,
    Deflated,
}

/// An entry that passed every metadata check.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: EntryName,
    /// `plugindemo.zip: client.zip: plugindemo/plugindemo.so`
    pub subject: String,
    pub method: Method,
    pub crc32: u32,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub data_start: u64,
    /// `__MACOSX/`, `.DS_Store`, `Thumbs.db`…: checked, never written.
    pub litter: bool,
}

impl Entry {
    fn new(
        name: EntryName,
        subject: String,
        record: &CentralRecord,
        extent: &LocalExtent,
        litter: bool,
    ) -> Entry {
        Entry {
            name,
            subject,
            method: if record.method == METHOD_STORED {
                Method::Stored
            } else {
                Method::Deflated
            },
            crc32: record.crc32,
            compressed_size: record.compressed_size,
            uncompressed_size: record.uncompressed_size,
            data_start: extent.data_start,
            litter,
        }
    }
}

/// An archive whose metadata was read; `entries` holds only the entries that
/// passed (the others are in the problems).
#[derive(Debug)]
pub(crate) struct Archive {
    pub file: Window,
    pub entries: Vec<Entry>,
}

/// A failure reading the package file itself (not the package's fault).
#[derive(Debug)]
pub(crate) struct ReadFailure(pub io::Error);

/// True for operating-system litter that zip tools add on their own.
pub(crate) fn is_litter(name: &EntryName) -> bool {
    name.components.first().map(String::as_str) == Some("__MACOSX")
        || name.components.last().is_some_and(|last| {
            matches!(last.as_str(), ".DS_Store" | "Thumbs.db" | "desktop.ini")
                || last.starts_with("._")
        })
}

const HINT_REBUILD: &str =
    "rebuild the package with a standard zip tool (e.g. `xplugin-pack pack`); do not install this file";

/// Reads and checks the metadata of the archive in `file` (a whole file,
/// or an inner zip stored in the package, read in place). Every problem goes
/// to `problems` with a subject starting with `label` (`plugindemo.zip` or
/// `plugindemo.zip: client.zip`). `total` accumulates the declared sizes of the
/// files that will be written, against [`Limits::max_total_uncompressed`].
///
/// In four passes, each bounding what the next may cost: our own end record
/// (the entry count), every record's size (before the zip crate holds them
/// in memory), the zip crate's reading, then record by record cross-checks.
///
/// Returns `Ok(None)` when the archive is unreadable as a whole (problem recorded).
pub(crate) fn scan(
    file: Window,
    label: &str,
    limits: &Limits,
    total: &mut u64,
    problems: &mut Problems,
) -> Result<Option<Archive>, ReadFailure> {
    let scan = Scan {
        file: &file,
        label,
        limits,
    };
    let Some(directory) = scan.directory(problems)? else {
        return Ok(None);
    };
    if !scan.record_sizes(&directory, problems)? {
        return Ok(None);
    }
    let Some(mut zip) = scan.zip_crate(problems) else {
        return Ok(None);
    };
    let errors_before = problems.errors().count();
    let mut records = Records::default();
    let mut offset = directory.start;
    for _ in 0..directory.entries {
        match scan.record(&mut zip, &directory, offset, &mut records, total, problems)? {
            Some(next) => offset = next,
            None => return Ok(None),
        }
    }
    if zip.len() as u64 != directory.entries && problems.errors().count() == errors_before {
        problems.push(scan.archive_problem(
            ProblemCode::PackageDuplicateEntry,
            format!(
                "the central directory has {} records but only {} distinct names",
                directory.entries,
                zip.len()
            ),
        ));
    }
    check_extents(
        &file,
        &mut records.extents,
        directory.start,
        label,
        problems,
    );
    Ok(Some(Archive {
        file,
        entries: records.entries,
    }))
}

/// What one [`scan`] works on.
struct Scan<'a> {
    file: &'a Window,
    label: &'a str,
    limits: &'a Limits,
}

/// What the record pass of a [`scan`] collects.
#[derive(Default)]
struct Records {
    /// Entries that passed every check.
    entries: Vec<Entry>,
    /// Byte ranges of every entry with a sound local header, for
    /// [`check_extents`].
    extents: Vec<(u64, u64, String)>,
    /// Collision keys seen so far ([`check_collisions`]).
    seen: HashMap<String, (String, bool)>,
}

impl<'a> Scan<'a> {
    fn archive_problem(&self, code: ProblemCode, message: String) -> Problem {
        Problem::new(code, self.label, message, HINT_REBUILD)
    }

    fn entry_subject(&self, raw_name: &[u8]) -> String {
        format!("{}: {}", self.label, display_raw(raw_name))
    }

    /// A header refusal about the whole archive, or our own read failure.
    fn refuse(
        &self,
        e: HeaderError,
        truncated: ProblemCode,
        context: impl FnOnce(String) -> String,
        problems: &mut Problems,
    ) -> Result<(), ReadFailure> {
        let (code, message) = e.refusal(truncated).map_err(ReadFailure)?;
        problems.push(self.archive_problem(code, context(message)));
        Ok(())
    }

    /// Pass 1: our own end record, so the entry count is bounded before the
    /// zip crate builds its index.
    fn directory(&self, problems: &mut Problems) -> Result<Option<Directory>, ReadFailure> {
        let file_len = self.file.len();
        let directory = match headers::read_directory(self.file, file_len) {
            Ok(d) => d,
            Err(e) => {
                let context = |m| format!("not a readable zip archive: {m}");
                self.refuse(e, ProblemCode::PackageNotAZip, context, problems)?;
                return Ok(None);
            }
        };
        if directory.entries > self.limits.max_entries {
            problems.push(Problem::new(
                ProblemCode::PackageTooManyEntries,
                self.label,
                format!(
                    "the archive has {} entries, the limit is {}",
                    directory.entries, self.limits.max_entries
                ),
                "split the package or raise max_entries in the host configuration",
            ));
            return Ok(None);
        }
        if directory.entries == 0 {
            problems.push(self.archive_problem(
                ProblemCode::PackageEmptyArchive,
                "the archive is empty".into(),
            ));
            return Ok(None);
        }
        Ok(Some(directory))
    }

    /// Pass 2: every record's size, before the zip crate holds them all in
    /// memory: extra fields and comments are bounded per record, names by
    /// the name limit, and the records must fill the directory exactly.
    /// False when the archive is refused.
    fn record_sizes(
        &self,
        directory: &Directory,
        problems: &mut Problems,
    ) -> Result<bool, ReadFailure> {
        let mut offset = directory.start;
        let mut oversized = false;
        for _ in 0..directory.entries {
            let lengths = match headers::central_record_lengths(self.file, offset, directory.end) {
                Ok(l) => l,
                Err(e) => {
                    let malformed = ProblemCode::PackageMalformedDirectory;
                    self.refuse(e, malformed, |m| m, problems)?;
                    return Ok(false);
                }
            };
            let subject = || {
                let name = headers::read_name(self.file, offset, lengths, directory.end);
                self.entry_subject(&name.unwrap_or_default())
            };
            if lengths.extra + lengths.comment > MAX_RECORD_EXTRA {
                problems.push(Problem::new(
                    ProblemCode::PackageOversizedExtra,
                    subject(),
                    format!(
                        "the entry carries {} bytes of extra fields and comment; at most {MAX_RECORD_EXTRA} are accepted",
                        lengths.extra + lengths.comment
                    ),
                    HINT_REBUILD,
                ));
                oversized = true;
            }
            if lengths.name > self.limits.max_name_len {
                // Refusing here keeps a directory of 64 KiB names out of memory.
                problems.push(Problem::new(
                    ProblemCode::PackageNameTooLong,
                    subject(),
                    format!(
                        "the name is {} bytes long, the limit is {}",
                        lengths.name, self.limits.max_name_len
                    ),
                    "shorten the file or folder names (or raise max_name_len in the host configuration)",
                ));
                oversized = true;
            }
            offset += lengths.total();
        }
        if offset != directory.end {
            problems.push(self.archive_problem(
                ProblemCode::PackageMalformedDirectory,
                format!(
                    "the central directory records end at offset {offset}, the directory ends at {}: there are records the entry count hides",
                    directory.end
                ),
            ));
            return Ok(false);
        }
        Ok(!oversized)
    }

    /// Pass 3: the zip crate's reading of the central directory.
    fn zip_crate(&self, problems: &mut Problems) -> Option<zip::ZipArchive<WindowReader<'a>>> {
        let zip = match zip::ZipArchive::new(self.file.reader()) {
            Ok(z) => z,
            Err(e) => {
                problems.push(self.archive_problem(
                    ProblemCode::PackageNotAZip,
                    format!("not a readable zip archive (corrupt or truncated): {e}"),
                ));
                return None;
            }
        };
        if zip.offset() != 0 {
            problems.push(self.archive_problem(
                ProblemCode::PackagePrependedData,
                format!(
                    "{} bytes of other data come before the archive (a self-extractor or a polyglot file)",
                    zip.offset()
                ),
            ));
            return None;
        }
        Some(zip)
    }

    /// Pass 4, one record: our reading cross-checked with the zip crate's,
    /// the name, attributes, local header, sizes and collisions. Returns
    /// the offset of the next record, or `None` when the directory itself
    /// is unreadable (the archive is refused).
    fn record(
        &self,
        zip: &mut zip::ZipArchive<WindowReader<'_>>,
        directory: &Directory,
        offset: u64,
        records: &mut Records,
        total: &mut u64,
        problems: &mut Problems,
    ) -> Result<Option<u64>, ReadFailure> {
        let record = match headers::read_central_record(self.file, offset, directory.end) {
            Ok(r) => r,
            Err(e) => {
                let context = |m| format!("central directory record at offset {offset}: {m}");
                self.refuse(e, ProblemCode::PackageMalformedDirectory, context, problems)?;
                return Ok(None);
            }
        };
        let next = offset.saturating_add(record.record_len);
        let shown = display_raw(&record.raw_name);
        let subject = self.entry_subject(&record.raw_name);
        let before = problems.len();
        let entry_problem =
            |code, msg: String, hint: &str| Problem::new(code, subject.clone(), msg, hint);

        if let Err((code, msg)) = cross_check_with_zip_crate(zip, &record, offset) {
            problems.push(entry_problem(code, msg, HINT_REBUILD));
        }
        let name = match parse_entry_name(&record.raw_name, self.limits) {
            Ok(n) => Some(n),
            Err(refusal) => {
                problems.push(entry_problem(refusal.code, refusal.message, &refusal.hint));
                None
            }
        };
        check_attributes(&record, name.as_ref(), &subject, problems);
        let extent = match headers::check_local_header(self.file, &record, directory.start) {
            Ok(extent) => extent,
            Err(e) => {
                let (code, msg) = e
                    .refusal(ProblemCode::PackageMalformedEntry)
                    .map_err(ReadFailure)?;
                problems.push(entry_problem(code, msg, HINT_REBUILD));
                return Ok(Some(next));
            }
        };
        records
            .extents
            .push((extent.header_start, extent.end, shown));
        let Some(name) = name else {
            return Ok(Some(next));
        };
        let litter = is_litter(&name);
        check_sizes(
            &record,
            &name,
            litter,
            &subject,
            self.limits,
            total,
            problems,
        );
        if !litter {
            check_collisions(&name, &mut records.seen, &subject, problems);
        }
        if problems.len() == before {
            records
                .entries
                .push(Entry::new(name, subject, &record, &extent, litter));
        }
        Ok(Some(next))
    }
}

/// Compares our reading of a central record with the zip crate's.
fn cross_check_with_zip_crate(
    zip: &mut zip::ZipArchive<WindowReader<'_>>,
    record: &CentralRecord,
    record_start: u64,
) -> Result<(), (ProblemCode, String)> {
    let Some(index) = zip.index_for_name_raw(&record.raw_name) else {
        return Err((
            ProblemCode::PackageAmbiguousDirectory,
            "the zip library knows this entry under another name (an Info-ZIP Unicode path extra field renames it): two tools would unpack different files"
                .into(),
        ));
    };
    let theirs = zip.by_index_data(index).map_err(|e| {
        (
            ProblemCode::PackageMalformedEntry,
            format!("the zip library cannot read this entry: {e}"),
        )
    })?;
    if theirs.central_header_start() != record_start {
        return Err((
            ProblemCode::PackageDuplicateEntry,
            "another entry has the same name (duplicate entries: which one wins depends on the tool)"
                .into(),
        ));
    }
    let mut diffs = Vec::new();
    if theirs.compressed_size() != record.compressed_size {
        diffs.push("compressed size");
    }
    if theirs.size() != record.uncompressed_size {
        diffs.push("uncompressed size");
    }
    if theirs.crc32() != record.crc32 {
        diffs.push("CRC-32");
    }
    if theirs.header_start() != record.local_header_offset {
        diffs.push("local header offset");
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err((
            ProblemCode::PackageAmbiguousDirectory,
            format!(
                "the central record is ambiguous: the zip library reads a different {} (conflicting zip64 fields?)",
                diffs.join(", ")
            ),
        ))
    }
}

/// Encryption, compression method, file type from the external attributes.
fn check_attributes(
    record: &CentralRecord,
    name: Option<&EntryName>,
    subject: &str,
    problems: &mut Problems,
) {
    if record.flags & FLAG_ENCRYPTED != 0 || record.method == METHOD_AES {
        problems.push(Problem::new(
            ProblemCode::PackageEncrypted,
            subject,
            "the entry is encrypted",
            "packages must not be encrypted; rebuild it without a password",
        ));
    } else if record.method != METHOD_STORED && record.method != METHOD_DEFLATED {
        let known = match record.method {
            9 => " (Deflate64)",
            12 => " (bzip2)",
            14 => " (LZMA)",
            93 => " (Zstandard)",
            95 => " (XZ)",
            98 => " (PPMd)",
            _ => "",
        };
        problems.push(Problem::new(
            ProblemCode::PackageUnsupportedMethod,
            subject,
            format!(
                "unsupported compression method {}{known}; expected 0 (stored) or 8 (deflate)",
                record.method
            ),
            "rebuild the package with plain deflate compression",
        ));
    }
    if record.disk_start != 0 {
        problems.push(Problem::new(
            ProblemCode::PackageMultiDisk,
            subject,
            "the entry claims to start on another disk of a multi-part archive",
            HINT_REBUILD,
        ));
    }
    // The upper 16 bits are the Unix st_mode when a Unix tool wrote the entry;
    // checked whatever the "made by" system says, since only the type matters.
    let mode = record.external_attributes >> 16;
    let special = ProblemCode::PackageSpecialFile;
    let kind = match mode & S_IFMT {
        0 | S_IFREG => None,
        S_IFDIR if name.is_some_and(|n| n.is_dir) => None,
        S_IFDIR => Some((special, "a directory mode on a file name")),
        S_IFLNK => Some((ProblemCode::PackageSymlink, "a symbolic link")),
        S_IFCHR => Some((special, "a character device")),
        S_IFBLK => Some((special, "a block device")),
        S_IFIFO => Some((special, "a FIFO (named pipe)")),
        S_IFSOCK => Some((special, "a socket")),
        _ => Some((special, "an unknown file type")),
    };
    if let Some((code, kind)) = kind {
        problems.push(Problem::new(
            code,
            subject,
            format!(
                "the entry is {kind} (mode {mode:o}); only regular files and folders are allowed"
            ),
            "replace links and special files by regular files and rebuild the package",
        ));
    }
    if name.is_some_and(|n| n.is_dir) && record.uncompressed_size != 0 {
        problems.push(Problem::new(
            ProblemCode::PackageMalformedEntry,
            subject,
            format!(
                "a folder entry carries {} bytes of data",
                record.uncompressed_size
            ),
            HINT_REBUILD,
        ));
    }
}

/// Declared sizes against the limits.
fn check_sizes(
    record: &CentralRecord,
    name: &EntryName,
    litter: bool,
    subject: &str,
    limits: &Limits,
    total: &mut u64,
    problems: &mut Problems,
) {
    let size = record.uncompressed_size;
    if record.method == METHOD_STORED && record.compressed_size != size {
        problems.push(Problem::new(ProblemCode::PackageMalformedEntry,
            subject,
            format!(
                "a stored entry must have equal sizes; it declares {} compressed and {size} uncompressed",
                record.compressed_size
            ),
            HINT_REBUILD,
        ));
    }
    if litter {
        return;
    }
    check_entry_size(record, subject, limits, problems);
    let is_json = name
        .components
        .last()
        .is_some_and(|n| n.to_ascii_lowercase().ends_with(".json"));
    if is_json && size > limits.max_json_bytes {
        problems.push(Problem::new(
            ProblemCode::PackageJsonTooLarge,
            subject,
            format!(
                "the JSON file is {size} bytes, the limit is {}",
                limits.max_json_bytes
            ),
            "manifests are small; remove embedded data or raise max_json_bytes",
        ));
    }
    if !name.is_dir {
        match total.checked_add(size) {
            Some(t) if t <= limits.max_total_uncompressed => *total = t,
            _ => {
                problems.push(Problem::new(ProblemCode::PackageTotalTooLarge,
                    subject,
                    format!(
                        "with this entry the package unpacks to more than {} bytes in total",
                        limits.max_total_uncompressed
                    ),
                    "raise max_total_uncompressed in the host configuration if the package is genuine",
                ));
                *total = u64::MAX;
            }
        }
    }
}

/// One entry's unpacked size and compression ratio against the limits.
fn check_entry_size(
    record: &CentralRecord,
    subject: &str,
    limits: &Limits,
    problems: &mut Problems,
) {
    let size = record.uncompressed_size;
    if size > limits.max_entry_uncompressed {
        problems.push(Problem::new(
            ProblemCode::PackageEntryTooLarge,
            subject,
            format!(
                "the entry unpacks to {size} bytes, the limit for one file is {}",
                limits.max_entry_uncompressed
            ),
            "raise max_entry_uncompressed in the host configuration if this file is genuine",
        ));
    }
    if size >= limits.ratio_check_min_bytes {
        let ratio_too_high = match size.checked_div(record.compressed_size) {
            Some(ratio) => ratio > limits.max_ratio,
            None => true,
        };
        if ratio_too_high {
            problems.push(Problem::new(ProblemCode::PackageCompressionRatio,
                subject,
                format!(
                    "the entry unpacks to {size} bytes from {} compressed bytes, a ratio above the limit of {} (a zip bomb?)",
                    record.compressed_size, limits.max_ratio
                ),
                "raise max_ratio in the host configuration if this file is genuine",
            ));
        }
    }
}

/// Duplicate and colliding names, including a file that is also used as a
/// folder by another entry (`a/b` and `a/b/c`).
fn check_collisions(
    name: &EntryName,
    seen: &mut HashMap<String, (String, bool)>,
    subject: &str,
    problems: &mut Problems,
) {
    let mut prefix = String::new();
    let count = name.components.len();
    for (i, component) in name.components.iter().enumerate() {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(component);
        let is_last = i + 1 == count;
        let is_dir = !is_last || name.is_dir;
        let key = collision_key(&prefix);
        match seen.get(&key) {
            None => {
                seen.insert(key, (prefix.clone(), is_dir));
            }
            Some((other, other_is_dir)) => {
                if is_dir && *other_is_dir {
                    if other != &prefix {
                        problems.push(Problem::new(ProblemCode::PackageNameCollision,
                            subject,
                            format!(
                                "the folder \"{prefix}\" collides with \"{other}\" (same name ignoring case or Unicode normalisation)"
                            ),
                            "use one spelling for each folder and rebuild the package",
                        ));
                        return;
                    }
                    if is_last {
                        // A second folder entry for an existing folder.
                        problems.push(Problem::new(
                            ProblemCode::PackageDuplicateEntry,
                            subject,
                            "duplicate folder entry",
                            "rebuild the package with a standard zip tool",
                        ));
                        return;
                    }
                } else {
                    let (code, what) = if other == &prefix && !is_dir && !*other_is_dir {
                        (
                            ProblemCode::PackageDuplicateEntry,
                            "duplicate entry: another entry has the same name".to_string(),
                        )
                    } else if other == &prefix {
                        (
                            ProblemCode::PackageNameCollision,
                            format!("\"{prefix}\" is used both as a file and as a folder"),
                        )
                    } else {
                        (
                            ProblemCode::PackageNameCollision,
                            format!(
                                "\"{prefix}\" collides with \"{other}\" (same name ignoring case or Unicode normalisation; one would overwrite the other on Windows or macOS)"
                            ),
                        )
                    };
                    problems.push(Problem::new(
                        code,
                        subject,
                        what,
                        "give every file a distinct name and rebuild the package",
                    ));
                    return;
                }
            }
        }
    }
}

/// Every byte before the central directory must belong to exactly one entry:
/// no overlaps (a "zip bomb" reusing the same data, or a header hidden in
/// another entry's data) and no gaps (hidden local headers that only a
/// streaming reader would see).
fn check_extents(
    file: &Window,
    extents: &mut [(u64, u64, String)],
    data_end: u64,
    label: &str,
    problems: &mut Problems,
) {
    extents.sort();
    let mut cursor = 0u64;
    let mut previous: Option<&str> = None;
    for (start, end, name) in extents.iter() {
        if *start < cursor {
            problems.push(Problem::new(
                ProblemCode::PackageOverlappingEntries,
                format!("{label}: {name}"),
                format!(
                    "the entry (bytes {start}..{end}) overlaps {} (which ends at {cursor})",
                    previous.map_or_else(|| "another entry".to_string(), |p| format!("\"{p}\""))
                ),
                HINT_REBUILD,
            ));
        } else if *start > cursor {
            problems.push(Problem::new(ProblemCode::PackageHiddenData,
                format!("{label}: {name}"),
                format!(
                    "{} unlisted bytes come before this entry (offsets {cursor}..{start}): data not in the central directory{}",
                    start - cursor,
                    hidden_header_note(file, cursor, *start)
                ),
                HINT_REBUILD,
            ));
        }
        if *end > cursor {
            cursor = *end;
            previous = Some(name);
        }
    }
    if cursor < data_end {
        problems.push(Problem::new(ProblemCode::PackageHiddenData,
            label,
            format!(
                "{} unlisted bytes lie between the last entry and the central directory (offsets {cursor}..{data_end}){}",
                data_end - cursor,
                hidden_header_note(file, cursor, data_end)
            ),
            HINT_REBUILD,
        ));
    }
}

/// If unlisted bytes start with a local file header, names the entry it
/// hides (what a streaming unzipper would extract).
fn hidden_header_note(file: &Window, start: u64, end: u64) -> String {
    match headers::local_header_name(file, start, end) {
        Some(name) => format!(
            ", holding a hidden local header for \"{}\"",
            display_raw(&name)
        ),
        None => String::new(),
    }
}

/// Why an entry's data was refused, or our own I/O failed.
#[derive(Debug)]
pub(crate) enum DataError {
    /// The data is bad: the message for the entry.
    Bad(String),
    /// Reading the package failed.
    Read(io::Error),
    /// Writing the output failed.
    Write(io::Error),
}

/// Streams the data of `entry` into `out`, never writing more than the
/// declared size, and checks size, CRC-32 and that the compressed stream is
/// consumed exactly. Memory: two fixed buffers.
pub(crate) fn copy_entry_data(
    file: &Window,
    entry: &Entry,
    out: &mut impl Write,
) -> Result<(), DataError> {
    let mut reader = file.reader();
    reader
        .seek(SeekFrom::Start(entry.data_start))
        .map_err(DataError::Read)?;
    let mut raw = reader.take(entry.compressed_size);
    let mut sink = Sink {
        out,
        crc: crc32fast::Hasher::new(),
        written: 0,
        declared: entry.uncompressed_size,
    };
    match entry.method {
        Method::Stored => copy_stored(&mut raw, &mut sink)?,
        Method::Deflated => copy_deflated(&mut raw, &mut sink, entry.compressed_size)?,
    }
    let (written, declared) = (sink.written, sink.declared);
    if written != declared {
        return Err(DataError::Bad(format!(
            "the entry unpacks to {written} bytes, its headers declare {declared} (truncated or lying sizes)"
        )));
    }
    let actual = sink.crc.finalize();
    if actual != entry.crc32 {
        return Err(DataError::Bad(format!(
            "CRC-32 mismatch: the headers declare {:#010x}, the data gives {actual:#010x} (corrupt or tampered)",
            entry.crc32
        )));
    }
    Ok(())
}

/// Where unpacked bytes go: held to the declared size, CRC-summed.
struct Sink<'o, W: Write> {
    out: &'o mut W,
    crc: crc32fast::Hasher,
    written: u64,
    declared: u64,
}

impl<W: Write> Sink<'_, W> {
    fn put(&mut self, chunk: &[u8]) -> Result<(), DataError> {
        if self.written + chunk.len() as u64 > self.declared {
            return Err(DataError::Bad(format!(
                "the entry unpacks to more than its declared {} bytes",
                self.declared
            )));
        }
        self.crc.update(chunk);
        self.out.write_all(chunk).map_err(DataError::Write)?;
        self.written += chunk.len() as u64;
        Ok(())
    }
}

fn copy_stored(raw: &mut impl Read, sink: &mut Sink<'_, impl Write>) -> Result<(), DataError> {
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = read_some(raw, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        sink.put(buf.get(..n).unwrap_or_default())?;
    }
}

/// Inflates `raw` (exactly `compressed_size` bytes) into `sink`: the stream
/// must end exactly where the compressed data does.
fn copy_deflated(
    raw: &mut impl Read,
    sink: &mut Sink<'_, impl Write>,
    compressed_size: u64,
) -> Result<(), DataError> {
    let mut in_buf = vec![0u8; COPY_BUFFER];
    let mut out_buf = vec![0u8; COPY_BUFFER];
    let mut inflater = flate2::Decompress::new(false);
    let (mut in_pos, mut in_len, mut input_done) = (0usize, 0usize, false);
    loop {
        if in_pos == in_len && !input_done {
            in_len = read_some(raw, &mut in_buf)?;
            in_pos = 0;
            input_done = in_len == 0;
        }
        let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
        let input = in_buf.get(in_pos..in_len).unwrap_or_default();
        let status = inflater
            .decompress(input, &mut out_buf, flate2::FlushDecompress::None)
            .map_err(|e| DataError::Bad(format!("the compressed data is corrupt: {e}")))?;
        let consumed = (inflater.total_in() - before_in) as usize;
        let produced = (inflater.total_out() - before_out) as usize;
        in_pos += consumed;
        sink.put(out_buf.get(..produced).unwrap_or_default())?;
        if status == flate2::Status::StreamEnd {
            break;
        }
        if consumed == 0 && produced == 0 {
            if input_done {
                return Err(DataError::Bad(format!(
                    "the compressed data ends before the deflate stream does (after {} of {} bytes): truncated or corrupt",
                    sink.written, sink.declared
                )));
            }
            if in_pos < in_len {
                return Err(DataError::Bad(
                    "the compressed data is corrupt (the decompressor makes no progress)".into(),
                ));
            }
        }
    }
    if inflater.total_in() != compressed_size {
        return Err(DataError::Bad(format!(
            "the deflate stream ends after {} of the {compressed_size} compressed bytes declared: other data is hidden after it",
            inflater.total_in(),
        )));
    }
    Ok(())
}

fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, DataError> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DataError::Read(e)),
        }
    }
}
