//! The digest record: the SHA-256 of each installed file as last verified,
//! keyed by what any change of the file through the file system changes, so
//! that a boot need not read every library byte again.
//!
//! `ROOT/state/digests` maps a file (by its path under the root) to its
//! device, inode, size, mtime and ctime in nanoseconds and its digest. A boot
//! ([`DigestRecord`], a [`FileDigests`] for the license check) answers from
//! the record when the file's key is unchanged and hashes the file
//! otherwise; the licensed digest is compared with the answer either way, so
//! a library changed after install is refused before it is loaded. What
//! each key field catches:
//!
//! * a write, truncation or `utime` through the file system changes the
//!   ctime, which user space cannot set (only the clock it is taken from);
//! * a file put in place by rename or copy is another inode;
//! * a file system mounted in its place is another device.
//!
//! Bytes changed *below* the file system (media corruption, a write to the
//! block device) change none of these. [`background_check`] re-hashes the
//! files answered from the record after start, at the lowest CPU priority
//! and reading the media itself (`O_DIRECT`, past the page cache); a
//! mismatch quarantines the plugin for the next boot and is logged as an
//! error. `verify = full` ([`VerifyMode::Full`]) re-hashes everything at boot.
//!
//! The record is a cache: it is replaced atomically but not synced (a lost
//! or damaged record costs one full verification), and a digest is recorded
//! only when the file's key was the same before and after reading it (a file
//! changed while it was hashed is not recorded).
//!
//! Trust: the record is as trustworthy as `ROOT/state`, which only the
//! host's user may write (0755 or tighter). Whoever can write it can also replace
//! the host binaries; against that the background pass is the remaining
//! check. Docs: docs/verification.md.

use crate::verdicts::FolderVerdict;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;
use xplugin_license::FileDigests;

/// File name under `ROOT/state/`.
pub const DIGESTS_FILE: &str = "digests";
/// Largest record read (about 20 000 plugin folders of three files each,
/// with their verdicts).
const MAX_RECORD_BYTES: u64 = 32 << 20;
/// 2: files as arrays, folder verdicts. 3: the times of a key as 64-bit
/// nanoseconds (a 128-bit number parses at half the speed). 4: binary
/// (postcard after [`MAGIC`]), no longer JSON: a boot decodes it and the
/// folder verdicts in a fraction of the time.
const FORMAT: u32 = 4;
/// What a record of format 4 or later starts with, then its format (a
/// postcard varint) and the rest of its body. Records of formats 1 to 3
/// are JSON objects (`{`).
const MAGIC: &[u8; 8] = b"XPDIGEST";

/// How a boot verifies the installed files (configuration `verify`,
/// `--verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum VerifyMode {
    /// Digests of unchanged files come from the record; the background
    /// pass re-reads them after start.
    #[default]
    Record,
    /// Every byte of every licensed file is hashed at boot (and the record
    /// refreshed).
    Full,
}

impl VerifyMode {
    /// Parses `record` or `full`.
    pub fn parse(s: &str) -> Option<VerifyMode> {
        match s {
            "record" => Some(VerifyMode::Record),
            "full" => Some(VerifyMode::Full),
            _ => None,
        }
    }
}

/// What changes when a file changes through the file system. Written as
/// one tuple, `(dev, ino, size, mtime_ns, ctime_ns)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "KeyParts", into = "KeyParts")]
pub struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// Device, inode, size, mtime and ctime (ns), as written: 64-bit times,
/// which hold the years 1678 to 2262. A time outside them is written
/// clamped to them, so that the key read back never equals the live key of
/// that file (whose time is not clamped): such a file is always hashed.
type KeyParts = (u64, u64, u64, i64, i64);

impl From<KeyParts> for FileKey {
    fn from((dev, ino, size, mtime_ns, ctime_ns): KeyParts) -> FileKey {
        FileKey {
            dev,
            ino,
            size,
            mtime_ns: i128::from(mtime_ns),
            ctime_ns: i128::from(ctime_ns),
        }
    }
}

impl From<FileKey> for KeyParts {
    fn from(k: FileKey) -> KeyParts {
        let clamp = |t: i128| i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX });
        (k.dev, k.ino, k.size, clamp(k.mtime_ns), clamp(k.ctime_ns))
    }
}

impl FileKey {
    /// The key of device `dev`, inode `ino`, `size` bytes and the times
    /// (nanoseconds since the epoch).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // Linux's statx keys
    pub(crate) fn new(dev: u64, ino: u64, size: u64, mtime_ns: i128, ctime_ns: i128) -> FileKey {
        FileKey {
            dev,
            ino,
            size,
            mtime_ns,
            ctime_ns,
        }
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The key of a file with metadata `m`.
    #[cfg(unix)]
    pub fn of(m: &std::fs::Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        FileKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    /// The key of a file with metadata `m`: size and modification time only
    /// (Windows has no inode number in stable Rust and no change time that
    /// user space cannot set), so on Windows the record never answers
    /// ([`RECORD_ANSWERS`]); the key only tells whether a file changed
    /// while it was hashed.
    #[cfg(windows)]
    pub fn of(m: &std::fs::Metadata) -> FileKey {
        let mtime_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        FileKey {
            dev: 0,
            ino: 0,
            size: m.len(),
            mtime_ns,
            ctime_ns: 0,
        }
    }
}

/// Whether a boot may take a digest from the record instead of hashing the
/// file. Not on Windows: the key there ([`FileKey::of`]) can be restored by
/// whoever changes the file, so every boot hashes every file (as
/// [`VerifyMode::Full`]); see docs/windows.md.
const RECORD_ANSWERS: bool = cfg!(unix);

/// A recorded file: written as one tuple, `(key, sha256)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(FileKey, String)", into = "(FileKey, String)")]
struct Entry {
    key: FileKey,
    sha256: String,
}

impl From<(FileKey, String)> for Entry {
    fn from((key, sha256): (FileKey, String)) -> Entry {
        Entry { key, sha256 }
    }
}

impl From<Entry> for (FileKey, String) {
    fn from(e: Entry) -> (FileKey, String) {
        (e.key, e.sha256)
    }
}

/// A folder verdict as the record holds it: its own encoding (postcard),
/// decoded only when a check asks for that folder's
/// ([`DigestRecord::old_verdict`]).
type RawVerdict = serde_bytes::ByteBuf;

#[derive(Debug, Default, Serialize, Deserialize)]
struct RecordFile {
    format: u32,
    files: BTreeMap<String, Entry>,
    /// Fingerprints (hex) of license signatures that verified
    /// ([`FileDigests::signature_verified`]).
    #[serde(default)]
    signatures: std::collections::BTreeSet<String>,
    /// What the full check of each plugin folder (by its path under the
    /// root) found ([`crate::verdicts`]).
    #[serde(default)]
    folders: BTreeMap<String, RawVerdict>,
}

/// [`RecordFile`] as it is written, borrowing the record's state.
#[derive(Serialize)]
struct RecordFileRef<'a> {
    format: u32,
    files: &'a BTreeMap<String, Entry>,
    signatures: &'a std::collections::BTreeSet<String>,
    folders: &'a BTreeMap<String, RawVerdict>,
}

/// A file whose digest came from the record at this boot, for
/// [`background_check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The file.
    pub path: PathBuf,
    /// Its path under the root (the record's key).
    pub relative: String,
    /// The digest the record gave (the licensed one, or the file would
    /// have been refused).
    pub sha256: String,
}

/// The record of one root for one boot: answers [`FileDigests`] and
/// collects what to save and what to re-check in the background.
///
/// What the previous record held is kept as it was read, sorted by path;
/// a boot marks what it confirmed (one atomic flag per entry, no lock, no
/// copy) and collects only what is new. The record saved after the boot
/// is the confirmed old entries and the new ones: files and verdicts not
/// asked about are dropped.
#[derive(Debug)]
pub struct DigestRecord {
    root: PathBuf,
    mode: VerifyMode,
    old: Vec<(String, Entry)>,
    /// Per entry of `old`: [`UNSEEN`], [`CONFIRMED`] or [`ANSWERED`].
    old_seen: Vec<AtomicU8>,
    old_signatures: std::collections::BTreeSet<String>,
    old_folders: Vec<(String, RawVerdict)>,
    /// Per entry of `old_folders`: whether this boot reused it, or made
    /// the same verdict again (kept in the next record either way).
    old_folder_kept: Vec<AtomicBool>,
    /// Folders whose previous verdict was reused.
    reused: AtomicU64,
    /// Files answered from the record.
    answered: AtomicU64,
    /// Whether [`DigestRecord::from_record`] was called.
    from_record_taken: AtomicBool,
    state: Mutex<State>,
}

/// An old entry no check asked about (dropped from the next record).
const UNSEEN: u8 = 0;
/// An old entry a check hashed again and found as recorded.
const CONFIRMED: u8 = 1;
/// An old entry a check took from the record (for the background pass).
const ANSWERED: u8 = 2;

#[derive(Debug, Default)]
struct State {
    /// Files hashed at this boot that the old record did not hold as they
    /// are (new, or changed).
    new: BTreeMap<String, Entry>,
    /// Every signature verified (or remembered) at this boot.
    signatures: std::collections::BTreeSet<String>,
    /// Folder verdicts made at this boot.
    folders: BTreeMap<String, RawVerdict>,
    hashed: u64,
}

/// The index of `key` in `entries` (sorted by key, as a record's maps are).
fn find<T>(entries: &[(String, T)], key: &str) -> Option<usize> {
    entries.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()
}

/// `n` flags, all clear.
fn flags<T: Default>(n: usize) -> Vec<T> {
    (0..n).map(|_| T::default()).collect()
}

fn record_path(root: &Path) -> PathBuf {
    root.join(xplugin_store::STATE_DIR).join(DIGESTS_FILE)
}

impl DigestRecord {
    /// Reads the record of `root` (an unreadable or damaged one is empty and
    /// logged: it costs one full verification).
    pub fn load(root: &Path, mode: VerifyMode) -> DigestRecord {
        let path = record_path(root);
        let old = match crate::checks::read_bounded(&path, MAX_RECORD_BYTES) {
            Ok(bytes) => match record_format(&bytes) {
                Some(FORMAT) => match decode(&bytes) {
                    Ok(r) if r.format == FORMAT => r,
                    parsed => {
                        log::warn!(
                            "{}: unusable ({}): every file is hashed",
                            path.display(),
                            parsed.err().map_or_else(String::new, |e| e.to_string())
                        );
                        RecordFile::default()
                    }
                },
                // Another version's record (an upgrade), not damage.
                Some(f) => {
                    log::info!(
                        "{}: record format {f} is not {FORMAT}: every file is hashed",
                        path.display()
                    );
                    RecordFile::default()
                }
                None => {
                    log::warn!(
                        "{}: unusable (not a digest record): every file is hashed",
                        path.display()
                    );
                    RecordFile::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RecordFile::default(),
            Err(e) => {
                log::warn!("{}: unreadable ({e}): every file is hashed", path.display());
                RecordFile::default()
            }
        };
        DigestRecord {
            // The files checked are named from the store's root, which is
            // canonical: a relative or symlinked `root` given here would
            // match none of them, and every file would be hashed.
            root: std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
            mode,
            old_seen: flags(old.files.len()),
            old: old.files.into_iter().collect(),
            old_signatures: old.signatures,
            old_folder_kept: flags(old.folders.len()),
            reused: AtomicU64::new(0),
            old_folders: old.folders.into_iter().collect(),
            answered: AtomicU64::new(0),
            from_record_taken: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data: keep using it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The path of `path` under the root, the record's key for it (`None`
    /// outside the root or not UTF-8).
    pub(crate) fn relative(&self, path: &Path) -> Option<String> {
        // The paths asked about are joined onto the (canonical) root, so
        // their bytes start with the root's and a separator: no component
        // walk (`strip_prefix`'s) for the few hundred a boot asks about.
        // Anything else goes the component-wise way.
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let (p, r) = (
                path.as_os_str().as_bytes(),
                self.root.as_os_str().as_bytes(),
            );
            if let Some(rest) = p.strip_prefix(r).and_then(|t| t.strip_prefix(b"/")) {
                let plain = !rest.is_empty()
                    && rest
                        .split(|&b| b == b'/')
                        .all(|c| !c.is_empty() && c != b"." && c != b"..");
                if plain {
                    return std::str::from_utf8(rest).ok().map(str::to_string);
                }
            }
        }
        path.strip_prefix(&self.root)
            .ok()
            .and_then(Path::to_str)
            .map(str::to_string)
    }

    /// The verdict the previous boot left for the folder at `relative`,
    /// when this boot may use the record at all (one that does not parse
    /// is none).
    pub(crate) fn old_verdict(&self, relative: &str) -> Option<FolderVerdict> {
        if !self.answers() {
            return None;
        }
        let (_, raw) = self.old_folders.get(find(&self.old_folders, relative)?)?;
        postcard::from_bytes(raw).ok()
    }

    /// Keeps the previous boot's verdict for the folder at `relative`
    /// (reused at this boot) in the record saved after this boot.
    pub(crate) fn keep_old_verdict(&self, relative: &str) {
        if let Some(kept) =
            find(&self.old_folders, relative).and_then(|i| self.old_folder_kept.get(i))
        {
            kept.store(true, Relaxed);
            self.reused.fetch_add(1, Relaxed);
        }
    }

    /// The digest of the file at `path` (`relative` under the root) from
    /// the record, when its key there is `key` and this boot may use the
    /// record; kept for the next record and for [`background_check`].
    fn answer(&self, relative: &str, key: FileKey) -> Option<String> {
        if !self.answers() {
            return None;
        }
        let i = find(&self.old, relative)?;
        let (_, e) = self.old.get(i).filter(|(_, e)| e.key == key)?;
        self.old_seen.get(i)?.store(ANSWERED, Relaxed);
        self.answered.fetch_add(1, Relaxed);
        Some(e.sha256.clone())
    }

    /// [`DigestRecord::answer`] for the file at `path` whose key is `key`,
    /// `None` when the record does not answer for it.
    pub(crate) fn recorded_sha256(&self, path: &Path, key: FileKey) -> Option<String> {
        self.answer(&self.relative(path)?, key)
    }

    /// Plugin folders whose previous verdict was reused at this boot.
    pub fn verdicts_reused(&self) -> u64 {
        self.reused.load(Relaxed)
    }

    /// Whether this boot takes digests and verdicts from the record: in
    /// `record` mode, and not on Windows ([`RECORD_ANSWERS`]).
    fn answers(&self) -> bool {
        self.mode == VerifyMode::Record && RECORD_ANSWERS
    }

    /// Whether this record keeps folder verdicts at all (not on Windows,
    /// where it never answers).
    pub(crate) fn keeps_verdicts(&self) -> bool {
        RECORD_ANSWERS
    }

    /// Keeps `verdict` for the folder at `relative` in the record saved
    /// after this boot. Not on Windows, where the record never answers.
    pub(crate) fn keep_verdict(&self, relative: String, verdict: &FolderVerdict) {
        if !RECORD_ANSWERS {
            return;
        }
        match postcard::to_allocvec(verdict) {
            Ok(raw) => {
                let same = find(&self.old_folders, &relative).filter(|&i| {
                    self.old_folders
                        .get(i)
                        .is_some_and(|(_, old)| old.as_slice() == raw.as_slice())
                });
                if let Some(kept) = same.and_then(|i| self.old_folder_kept.get(i)) {
                    // As recorded (`verify = full`): the record need not
                    // be written again.
                    kept.store(true, Relaxed);
                    return;
                }
                self.state()
                    .folders
                    .insert(relative, serde_bytes::ByteBuf::from(raw));
            }
            Err(e) => log::debug!("folder verdict of {relative} not kept: {e}"),
        }
    }

    /// Files answered from the record (for [`background_check`]), by
    /// path, taken: a second call returns none.
    pub fn from_record(&self) -> Vec<Recorded> {
        if self.from_record_taken.swap(true, Relaxed) {
            return Vec::new();
        }
        self.old
            .iter()
            .zip(&self.old_seen)
            .filter(|(_, seen)| seen.load(Relaxed) == ANSWERED)
            .map(|((relative, e), _)| Recorded {
                path: self.root.join(relative),
                relative: relative.clone(),
                sha256: e.sha256.clone(),
            })
            .collect()
    }

    /// (files answered from the record, files hashed).
    pub fn counts(&self) -> (u64, u64) {
        (self.answered.load(Relaxed), self.state().hashed)
    }

    /// Replaces the record with the files verified at this boot, if it
    /// changed. Not synced: the record is a cache.
    pub fn save(&self) {
        // Compared and written in place: at a boot this runs on the thread
        // that loads the plugins, and a record that did not change (every
        // boot after the first) costs one comparison, no copy.
        let s = self.state();
        let all_seen = self.old_seen.iter().all(|e| e.load(Relaxed) != UNSEEN);
        let all_kept = self.old_folder_kept.iter().all(|k| k.load(Relaxed));
        if s.new.is_empty()
            && s.folders.is_empty()
            && all_seen
            && all_kept
            && s.signatures == self.old_signatures
        {
            return;
        }
        // The confirmed old entries and the new ones (which replace an old
        // one of the same path).
        let mut files: BTreeMap<String, Entry> = self
            .old
            .iter()
            .zip(&self.old_seen)
            .filter(|(_, seen)| seen.load(Relaxed) != UNSEEN)
            .map(|((k, e), _)| (k.clone(), e.clone()))
            .collect();
        files.extend(s.new.iter().map(|(k, e)| (k.clone(), e.clone())));
        let mut folders: BTreeMap<String, RawVerdict> = self
            .old_folders
            .iter()
            .zip(&self.old_folder_kept)
            .filter(|(_, kept)| kept.load(Relaxed))
            .map(|((k, v), _)| (k.clone(), v.clone()))
            .collect();
        folders.extend(s.folders.iter().map(|(k, v)| (k.clone(), v.clone())));
        let path = record_path(&self.root);
        let body = RecordFileRef {
            format: FORMAT,
            files: &files,
            signatures: &s.signatures,
            folders: &folders,
        };
        let bytes = encode(&body);
        drop(s);
        let result = bytes
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_unsynced(&path, &bytes));
        if let Err(e) = result {
            log::warn!(
                "cannot write the digest record {}: {e} (the next boot hashes every file)",
                path.display()
            );
        }
    }
}

/// A record of this [`FORMAT`] (`bytes` after [`MAGIC`]).
fn decode(bytes: &[u8]) -> postcard::Result<RecordFile> {
    postcard::from_bytes(bytes.get(MAGIC.len()..).unwrap_or_default())
}

/// The bytes of `body`: [`MAGIC`], then its postcard encoding (whose first
/// field is the format).
fn encode(body: &RecordFileRef<'_>) -> postcard::Result<Vec<u8>> {
    postcard::to_extend(body, MAGIC.to_vec())
}

/// The `format` of a record whose body may be another version's: after
/// [`MAGIC`] (format 4 on), or the `format` of a JSON record (1 to 3).
/// `None`: neither, a damaged file.
fn record_format(bytes: &[u8]) -> Option<u32> {
    if let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) {
        return postcard::take_from_bytes::<u32>(body).ok().map(|(f, _)| f);
    }
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    serde_json::from_slice::<Format>(bytes)
        .ok()
        .map(|f| f.format)
}

fn write_unsynced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

impl FileDigests for DigestRecord {
    fn signature_verified_before(&self, fingerprint: &[u8; 32]) -> bool {
        self.mode == VerifyMode::Record
            && self
                .old_signatures
                .contains(&xplugin_license::lower_hex(fingerprint))
    }

    fn signature_verified(&self, fingerprint: [u8; 32]) {
        self.state()
            .signatures
            .insert(xplugin_license::lower_hex(&fingerprint));
    }

    fn sha256(&self, path: &Path, meta: &std::fs::Metadata) -> std::io::Result<String> {
        let key = FileKey::of(meta);
        let Some(relative) = self.relative(path) else {
            self.state().hashed += 1;
            return xplugin_license::sha256_file(path);
        };
        if let Some(sha256) = self.answer(&relative, key) {
            return Ok(sha256);
        }
        let (sha256, unchanged) = hash_checked(path, key)?;
        let old = find(&self.old, &relative).filter(|&i| {
            self.old
                .get(i)
                .is_some_and(|(_, e)| e.key == key && e.sha256 == sha256)
        });
        if let (true, Some(seen)) = (unchanged, old.and_then(|i| self.old_seen.get(i))) {
            // As recorded (`verify = full`, or a record that may not answer):
            // kept, and the record need not be written again.
            let _ = seen.compare_exchange(UNSEEN, CONFIRMED, Relaxed, Relaxed);
            self.state().hashed += 1;
            return Ok(sha256);
        }
        let mut s = self.state();
        s.hashed += 1;
        if unchanged {
            s.new.insert(
                relative,
                Entry {
                    key,
                    sha256: sha256.clone(),
                },
            );
        }
        Ok(sha256)
    }
}

/// Hashes the file at `path` and says whether its key was `key` both when
/// it was opened and after the last byte was read.
fn hash_checked(path: &Path, key: FileKey) -> std::io::Result<(String, bool)> {
    let mut file = std::fs::File::open(path)?;
    let before = FileKey::of(&file.metadata()?);
    let sha256 = xplugin_license::sha256_reader(&mut file)?;
    let after = FileKey::of(&file.metadata()?);
    Ok((sha256, before == key && after == key))
}

/// Block alignment `O_DIRECT` needs for the buffer (and offsets).
const DIRECT_ALIGN: usize = 4096;
/// Small reads: a process that exits waits for a direct read in flight.
const DIRECT_CHUNK: usize = 256 << 10;

/// The SHA-256 of the file at `path` as its bytes are on the media: read
/// with `O_DIRECT`, past the page cache (which may still hold what the file
/// said before the media changed). Falls back to a normal read after asking
/// the kernel to drop the file's cached pages, where `O_DIRECT` is refused
/// (tmpfs, some FUSE file systems).
///
/// # Errors
/// The I/O error.
pub fn sha256_from_media(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let direct = open_direct(path);
    let mut file = match direct {
        Ok(f) => f,
        Err(_) => return sha256_uncached(path),
    };
    // An aligned window of a plain buffer: O_DIRECT wants the memory, the
    // file offset and the length aligned to the logical block size.
    let mut storage = vec![0u8; DIRECT_CHUNK + DIRECT_ALIGN];
    let skip = storage.as_ptr().align_offset(DIRECT_ALIGN);
    let Some(buf) = storage.get_mut(skip..skip + DIRECT_CHUNK) else {
        return sha256_uncached(path);
    };
    let mut hasher = Sha256::new();
    loop {
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(buf.get(..n).unwrap_or_default()),
            // The file system takes O_DIRECT opens but not reads.
            Err(e) if e.raw_os_error() == Some(DIRECT_REFUSED) => return sha256_uncached(path),
            Err(e) => return Err(e),
        }
    }
    Ok(xplugin_license::lower_hex(&hasher.finalize()))
}

/// The file opened for reads past the cache: `O_DIRECT`.
#[cfg(unix)]
fn open_direct(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(path)
}

/// The file opened for reads past the cache: `FILE_FLAG_NO_BUFFERING`
/// (the same alignment rules as `O_DIRECT`, for sectors up to 4096 bytes).
#[cfg(windows)]
fn open_direct(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::windows::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(windows_sys::Win32::Storage::FileSystem::FILE_FLAG_NO_BUFFERING)
        .open(path)
}

/// The error a read past the cache fails with where the file system does
/// not support it.
#[cfg(unix)]
const DIRECT_REFUSED: i32 = nix::libc::EINVAL;
#[cfg(windows)]
const DIRECT_REFUSED: i32 = windows_sys::Win32::Foundation::ERROR_INVALID_PARAMETER as i32;

fn sha256_uncached(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; advice only, any result is fine.
        unsafe {
            nix::libc::posix_fadvise(file.as_raw_fd(), 0, 0, nix::libc::POSIX_FADV_DONTNEED);
        }
    }
    // (Windows has no advice to drop a file's cached pages: this read may
    // be answered from the cache.)
    xplugin_license::sha256_reader(&mut file)
}

/// What [`background_check`] found wrong with one plugin's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The plugin whose folder holds the file.
    pub plugin: String,
    /// The file.
    pub path: PathBuf,
    /// The digest the record (and the license) expect.
    pub expected: String,
    /// What the media holds now, or why it could not be read.
    pub found: Result<String, String>,
}

/// Re-hashes `files` (each with the plugin owning it) from the media at the
/// lowest CPU and I/O priority (`SCHED_IDLE` and the idle I/O class on the
/// calling thread), after waiting `delay` (so that it does not compete with
/// the start itself), and for every mismatch calls `on_mismatch`. Returns
/// how many files were checked; stops early when `stop` is set.
pub fn background_check(
    files: &[(String, Recorded)],
    delay: std::time::Duration,
    stop: &std::sync::atomic::AtomicBool,
    mut on_mismatch: impl FnMut(Mismatch),
) -> usize {
    let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed);
    let until = std::time::Instant::now() + delay;
    while !stopped() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    lowest_priority();
    let mut checked = 0;
    for (plugin, file) in files {
        if stopped() {
            break;
        }
        let found = sha256_from_media(&file.path).map_err(|e| e.to_string());
        checked += 1;
        if found.as_ref() != Ok(&file.sha256) {
            on_mismatch(Mismatch {
                plugin: plugin.clone(),
                path: file.path.clone(),
                expected: file.sha256.clone(),
                found,
            });
        }
    }
    checked
}

/// The calling thread's CPU and I/O priority at background level
/// (`THREAD_MODE_BACKGROUND_BEGIN` lowers both).
#[cfg(windows)]
fn lowest_priority() {
    use windows_sys::Win32::System::Threading::{
        GetCurrentThread, SetThreadPriority, THREAD_MODE_BACKGROUND_BEGIN,
    };
    // SAFETY: GetCurrentThread returns a pseudo-handle for the calling thread;
    // the mode is a documented constant.
    let ok = unsafe { SetThreadPriority(GetCurrentThread(), THREAD_MODE_BACKGROUND_BEGIN) };
    if ok == 0 {
        log::debug!(
            "background verification runs at normal priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(unix)]
fn lowest_priority() {
    // SAFETY: a zeroed sched_param is valid for SCHED_IDLE (priority 0);
    // pid 0 is the calling thread.
    let rc = unsafe {
        let param: nix::libc::sched_param = std::mem::zeroed();
        nix::libc::sched_setscheduler(0, nix::libc::SCHED_IDLE, &param)
    };
    if rc != 0 {
        log::debug!(
            "background verification runs at normal CPU priority: {}",
            std::io::Error::last_os_error()
        );
    }
    // ioprio_set(IOPRIO_WHO_PROCESS, this thread, class IDLE): honoured by
    // the BFQ scheduler, ignored by the others (no wrapper in libc).
    const IOPRIO_WHO_PROCESS: nix::libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: nix::libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: nix::libc::c_long = 13;
    // SAFETY: a plain system call with integer arguments; who 0 is the
    // calling thread.
    let _ = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as nix::libc::c_long,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
}

/// Drops the record's entry for `relative` (a file found changed on the
/// media), so the next boot hashes it.
pub fn forget(root: &Path, relative: &str) {
    let path = record_path(root);
    let Ok(bytes) = crate::checks::read_bounded(&path, MAX_RECORD_BYTES) else {
        return;
    };
    if record_format(&bytes) != Some(FORMAT) {
        return;
    }
    let Ok(mut r) = decode(&bytes) else {
        return;
    };
    // The verdict of the folder holding the file goes too.
    let folders = r.folders.len();
    r.folders
        .retain(|dir, _| !Path::new(relative).starts_with(Path::new(dir)));
    if r.files.remove(relative).is_some() || r.folders.len() != folders {
        let body = RecordFileRef {
            format: FORMAT,
            files: &r.files,
            signatures: &r.signatures,
            folders: &r.folders,
        };
        if let Ok(bytes) = encode(&body) {
            let _ = write_unsynced(&path, &bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with_file(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join(xplugin_store::STATE_DIR)).expect("state");
        let file = dir.path().join("lib.so");
        std::fs::write(&file, content).expect("write");
        (dir, file)
    }

    fn ask(record: &DigestRecord, file: &Path) -> String {
        let meta = std::fs::symlink_metadata(file).expect("meta");
        record.sha256(file, &meta).expect("digest")
    }

    #[test]
    fn an_unchanged_file_is_answered_from_the_record_and_a_rewritten_one_is_hashed() {
        let (dir, file) = root_with_file(b"original library bytes");
        let first = DigestRecord::load(dir.path(), VerifyMode::Record);
        let digest = ask(&first, &file);
        assert_eq!(first.counts(), (0, 1));
        first.save();

        let second = DigestRecord::load(dir.path(), VerifyMode::Record);
        assert_eq!(ask(&second, &file), digest);
        assert_eq!(second.counts(), (1, 0), "answered from the record");
        assert_eq!(second.from_record()[0].relative, "lib.so");

        // Same length, mtime put back: the ctime still changes.
        let mtime = std::fs::metadata(&file)
            .expect("meta")
            .modified()
            .expect("mtime");
        std::fs::write(&file, b"tampered library bytes").expect("write");
        let f = std::fs::File::options()
            .write(true)
            .open(&file)
            .expect("open");
        f.set_modified(mtime).expect("set mtime");
        drop(f);
        let third = DigestRecord::load(dir.path(), VerifyMode::Record);
        let now = ask(&third, &file);
        assert_ne!(now, digest, "the rewritten file was hashed again");
        assert_eq!(third.counts(), (0, 1));
    }

    #[cfg(unix)]
    #[test]
    fn a_root_named_through_a_symlink_is_answered_like_its_canonical_path() {
        // The store names the files from its canonical root; the record of
        // a root given as another path to the same directory (relative, or
        // through a symlink) must still match them.
        let (dir, file) = root_with_file(b"library bytes");
        let canonical = std::fs::canonicalize(&file).expect("canonical");
        let link = dir.path().with_extension("link");
        std::os::unix::fs::symlink(dir.path(), &link).expect("symlink");
        let first = DigestRecord::load(&link, VerifyMode::Record);
        let digest = ask(&first, &canonical);
        first.save();
        let second = DigestRecord::load(&link, VerifyMode::Record);
        assert_eq!(ask(&second, &canonical), digest);
        assert_eq!(second.counts(), (1, 0), "answered from the record");
        std::fs::remove_file(&link).expect("remove the link");
    }

    /// The inode of the record file: a save that writes replaces it.
    #[cfg(unix)]
    fn record_inode(root: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(record_path(root)).expect("record").ino()
    }

    #[test]
    #[cfg(unix)]
    fn an_unchanged_record_is_not_written_and_files_not_asked_about_are_dropped() {
        let (dir, file) = root_with_file(b"bytes");
        let other = dir.path().join("other.so");
        std::fs::write(&other, b"other").expect("write");
        let first = DigestRecord::load(dir.path(), VerifyMode::Record);
        ask(&first, &file);
        ask(&first, &other);
        first.save();
        let written = record_inode(dir.path());
        // Answered from the record, or hashed again to the same digest
        // (`full`): nothing to write.
        for mode in [VerifyMode::Record, VerifyMode::Full] {
            let again = DigestRecord::load(dir.path(), mode);
            ask(&again, &file);
            ask(&again, &other);
            again.save();
            assert_eq!(record_inode(dir.path()), written, "{mode:?}");
        }
        // A boot that asks only about `file`: `other` leaves the record.
        let one = DigestRecord::load(dir.path(), VerifyMode::Record);
        ask(&one, &file);
        one.save();
        assert_ne!(record_inode(dir.path()), written);
        let after = DigestRecord::load(dir.path(), VerifyMode::Record);
        ask(&after, &file);
        ask(&after, &other);
        assert_eq!(after.counts(), (1, 1), "other.so was hashed");
        let recorded: Vec<String> = after
            .from_record()
            .into_iter()
            .map(|r| r.relative)
            .collect();
        assert_eq!(recorded, ["lib.so"]);
        assert!(after.from_record().is_empty(), "taken once");
    }

    #[test]
    fn full_mode_hashes_every_file_and_a_damaged_record_is_empty() {
        let (dir, file) = root_with_file(b"bytes");
        let first = DigestRecord::load(dir.path(), VerifyMode::Record);
        ask(&first, &file);
        first.save();
        let full = DigestRecord::load(dir.path(), VerifyMode::Full);
        ask(&full, &file);
        assert_eq!(full.counts(), (0, 1));

        std::fs::write(record_path(dir.path()), b"{not json").expect("damage");
        let damaged = DigestRecord::load(dir.path(), VerifyMode::Record);
        ask(&damaged, &file);
        assert_eq!(damaged.counts(), (0, 1));

        // A record of this format cut short, and one whose body is noise.
        first.save();
        let whole = std::fs::read(record_path(dir.path())).expect("read");
        assert_eq!(record_format(&whole), Some(FORMAT));
        let mut noise = MAGIC.to_vec();
        noise.extend_from_slice(&[FORMAT as u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f, 1]);
        for bytes in [&whole[..whole.len() - 3], &noise[..]] {
            std::fs::write(record_path(dir.path()), bytes).expect("damage");
            let damaged = DigestRecord::load(dir.path(), VerifyMode::Record);
            ask(&damaged, &file);
            assert_eq!(damaged.counts(), (0, 1));
        }
    }

    #[test]
    fn a_key_whose_time_does_not_fit_64_bits_never_matches_once_written() {
        let live = FileKey::from((1, 2, 3, 0, 0));
        let far = FileKey {
            mtime_ns: i128::from(i64::MAX) + 1,
            ..live
        };
        let written: KeyParts = far.into();
        assert_eq!(written.3, i64::MAX);
        assert_ne!(FileKey::from(written), far, "a clamped key must not match");
        let round: KeyParts = live.into();
        assert_eq!(FileKey::from(round), live);
    }

    #[test]
    fn a_record_of_the_previous_format_is_ignored_then_replaced() {
        let (dir, file) = root_with_file(b"bytes");
        let meta = std::fs::symlink_metadata(&file).expect("meta");
        let key = FileKey::of(&meta);
        let (dev, ino, size, mtime, ctime): KeyParts = key.into();
        // Format 1: an object per key.
        let old = serde_json::json!({
            "format": 1,
            "files": { "lib.so": {
                "key": { "dev": dev, "ino": ino, "size": size,
                         "mtime_ns": mtime, "ctime_ns": ctime },
                "sha256": "0".repeat(64) } },
            "signatures": []
        });
        std::fs::write(record_path(dir.path()), old.to_string()).expect("write");
        assert_eq!(
            record_format(&std::fs::read(record_path(dir.path())).expect("read")),
            Some(1)
        );
        let first = DigestRecord::load(dir.path(), VerifyMode::Record);
        let digest = ask(&first, &file);
        assert_ne!(
            digest,
            "0".repeat(64),
            "hashed, not taken from the old record"
        );
        assert_eq!(first.counts(), (0, 1));
        first.save();
        let bytes = std::fs::read(record_path(dir.path())).expect("read");
        assert_eq!(record_format(&bytes), Some(FORMAT));
        let second = DigestRecord::load(dir.path(), VerifyMode::Record);
        assert_eq!(ask(&second, &file), digest);
        assert_eq!(second.counts(), (1, 0), "answered from the new record");
    }

    #[test]
    fn the_media_digest_is_the_files_digest() {
        let (_dir, file) = root_with_file(&vec![7u8; 3 * DIRECT_CHUNK / 2 + 5]);
        let expected = xplugin_license::sha256_file(&file).expect("hash");
        assert_eq!(sha256_from_media(&file).expect("media"), expected);
    }

    #[test]
    fn the_background_check_reports_a_mismatch() {
        let (_dir, file) = root_with_file(b"bytes");
        let files = vec![(
            "demo".to_string(),
            Recorded {
                path: file.clone(),
                relative: "lib.so".into(),
                sha256: "0".repeat(64),
            },
        )];
        let mut found = Vec::new();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let n = background_check(&files, std::time::Duration::ZERO, &stop, |m| found.push(m));
        assert_eq!(n, 1);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].plugin, "demo");
    }
}
