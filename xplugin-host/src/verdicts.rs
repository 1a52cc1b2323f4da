//! Folder verdicts: what the full check of an installed plugin folder found,
//! kept in the digest record ([`crate::digests`]) so that a boot finding
//! the folder unchanged need not check it all again.
//!
//! A full check reads the license, verifies its signature, walks the folder
//! for unlicensed code and reads the library's headers (architecture, ABI
//! tag, kind). When all of it passed, the verdict keeps the key (device,
//! inode, size, mtime and ctime in nanoseconds, [`FileKey`]) of the folder
//! and of every entry under it, the verified license content and the public
//! key that verified it, and what the library headers said. A later boot
//! reuses it only when every one of those keys is unchanged:
//!
//! * a file written, truncated or touched through the file system has
//!   another ctime; a file put in place by rename or copy is another inode;
//! * a file added, removed or renamed in the folder or any folder under it
//!   changes that folder's mtime and ctime, and every folder is keyed.
//!
//! What is *not* reused is checked every time, as a full check does: the
//! manifest (read and parsed at every boot) and compatibility, the license
//! against this boot's facts ([`xplugin_license::reverify`]: the signing
//! key still trusted under its id, plugin, side, version, device, dates
//! against this clock), the library's headers against this computer's
//! architecture and the plugin's kind, and each licensed file's digest
//! against the license (from the record, for the background pass to re-read
//! from the media). A verdict only ever accepts: anything that does not
//! match sends the folder to the full check, whose refusal gives the
//! reasons. Bytes changed below the file system change no key; the
//! background pass catches them, as for the digests.
//!
//! A verdict is kept only if the walk of the folder before the full check
//! and the walk after it found the same keys, so a folder changed while it
//! was being checked is not recorded.

use crate::checks::{CheckContext, CheckedLibrary};
use crate::digests::{DigestRecord, FileKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use xplugin_abi::AbiTag;
use xplugin_license::{
    join_relative, LicensePayload, TrustStore, VerifiedLicense, VerifyContext, MAX_WALK_DEPTH,
    MAX_WALK_ENTRIES,
};
use xplugin_package::binary::{check_library_for, Arch, BinaryFormat, LibraryInfo};

/// What a passed full check of one plugin folder found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderVerdict {
    /// The folder (`""`) and every entry under it, by `/`-separated path.
    entries: BTreeMap<String, Walked>,
    /// The verified license content.
    #[serde(with = "recorded_payload")]
    payload: LicensePayload,
    /// The public key (hex) that verified its signature.
    signer: String,
    /// The plugin's library, as its headers said.
    library: RecordedLibrary,
    /// The client ABI runtime next to it (client plugins).
    runtime: Option<RecordedLibrary>,
}

/// A [`LicensePayload`] as a verdict holds it: every field written, always
/// in this order. The record's encoding (postcard) is not self-describing,
/// so the payload's own form, which leaves out absent times, would not read
/// back. Converted field by field, without `..`: a field added to the
/// payload does not compile until it is added here (and the record's
/// format number raised).
mod recorded_payload {
    use super::LicensePayload;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;
    use xplugin_model::Side;

    #[derive(Serialize, Deserialize)]
    struct Recorded {
        format: u32,
        key_id: String,
        license_id: String,
        plugin: String,
        side: Side,
        versions: String,
        devices: Vec<String>,
        issued_at: u64,
        not_before: Option<u64>,
        expires: Option<u64>,
        features: Vec<String>,
        files: BTreeMap<String, String>,
    }

    impl From<LicensePayload> for Recorded {
        fn from(p: LicensePayload) -> Recorded {
            let LicensePayload {
                format,
                key_id,
                license_id,
                plugin,
                side,
                versions,
                devices,
                issued_at,
                not_before,
                expires,
                features,
                files,
            } = p;
            Recorded {
                format,
                key_id,
                license_id,
                plugin,
                side,
                versions,
                devices,
                issued_at,
                not_before,
                expires,
                features,
                files,
            }
        }
    }

    impl From<Recorded> for LicensePayload {
        fn from(r: Recorded) -> LicensePayload {
            let Recorded {
                format,
                key_id,
                license_id,
                plugin,
                side,
                versions,
                devices,
                issued_at,
                not_before,
                expires,
                features,
                files,
            } = r;
            LicensePayload {
                format,
                key_id,
                license_id,
                plugin,
                side,
                versions,
                devices,
                issued_at,
                not_before,
                expires,
                features,
                files,
            }
        }
    }

    /// A copy: only a verdict made by a full check is written, not the
    /// reused ones.
    pub(super) fn serialize<S: Serializer>(p: &LicensePayload, s: S) -> Result<S::Ok, S::Error> {
        Recorded::from(p.clone()).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LicensePayload, D::Error> {
        Recorded::deserialize(d).map(Into::into)
    }
}

/// One entry of a walked folder. Written as one tuple, `(key, kind)`: a
/// boot reads the record of every folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(FileKey, EntryKind)", into = "(FileKey, EntryKind)")]
pub(crate) struct Walked {
    key: FileKey,
    kind: EntryKind,
}

impl From<(FileKey, EntryKind)> for Walked {
    fn from((key, kind): (FileKey, EntryKind)) -> Walked {
        Walked { key, kind }
    }
}

impl From<Walked> for (FileKey, EntryKind) {
    fn from(w: Walked) -> (FileKey, EntryKind) {
        (w.key, w.kind)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum EntryKind {
    #[serde(rename = "f")]
    File,
    #[serde(rename = "d")]
    Dir,
    /// A symlink or anything else: neither followed nor read, but keyed.
    #[serde(rename = "o")]
    Other,
}

/// A library's checked headers ([`LibraryInfo`]) and its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RecordedLibrary {
    /// File name in the folder.
    file: String,
    /// The `XPLUGIN_KIND_*` it was checked to be.
    kind: u32,
    format: BinaryFormat,
    arch: Arch,
    /// The ABI tag: magic, major, minor, kind, reserved.
    tag: Option<(u32, u16, u16, u32, u32)>,
    has_entry: bool,
}

impl RecordedLibrary {
    fn of(lib: &CheckedLibrary) -> Option<RecordedLibrary> {
        let info = lib.info();
        Some(RecordedLibrary {
            file: lib.path().file_name()?.to_str()?.to_string(),
            kind: lib.kind(),
            format: info.format,
            arch: info.arch.clone(),
            tag: info
                .abi_tag
                .map(|t| (t.magic, t.abi_major, t.abi_minor, t.kind, t.reserved)),
            has_entry: info.has_entry,
        })
    }

    /// The library in `dir`, checked again as the full check does (for
    /// architecture `arch` and kind `kind`) on its recorded headers.
    fn checked(&self, dir: &Path, file: &str, kind: u32, arch: &Arch) -> Option<CheckedLibrary> {
        if self.file != file || self.kind != kind {
            return None;
        }
        let info = LibraryInfo {
            format: self.format,
            arch: self.arch.clone(),
            abi_tag: self
                .tag
                .map(|(magic, abi_major, abi_minor, kind, reserved)| AbiTag {
                    magic,
                    abi_major,
                    abi_minor,
                    kind,
                    reserved,
                }),
            has_entry: self.has_entry,
        };
        let path = dir.join(file);
        check_library_for(&path, &info, kind, arch).ok()?;
        Some(CheckedLibrary::recorded(path, kind, info))
    }
}

/// What a reused verdict gives the check of a folder.
pub(crate) struct Reused {
    pub license: VerifiedLicense,
    pub library: CheckedLibrary,
    pub runtime: Option<CheckedLibrary>,
}

/// The keys of plugin folder `dir` and of everything under it (symlinks
/// are keyed, not followed), bounded in entries and depth.
///
/// # Errors
/// The I/O error of a metadata read or a listing, or `Other` past the
/// bounds.
pub(crate) fn walk(dir: &Path) -> std::io::Result<BTreeMap<String, Walked>> {
    let folder = Folder::open(dir)?;
    let mut out = BTreeMap::new();
    out.insert(String::new(), folder.key("")?);
    walk_into(&folder, dir, "", 0, &mut out)?;
    Ok(out)
}

/// A plugin folder whose entries are keyed relative to it: one path
/// lookup of the folder, not one per entry (the boot keys every entry of
/// every folder).
struct Folder {
    #[cfg(target_os = "linux")]
    fd: std::fs::File,
    #[cfg(not(target_os = "linux"))]
    dir: std::path::PathBuf,
}

/// The key and kind of `relative` under directory descriptor `dirfd`
/// (`""`: the descriptor's own file), a final symlink not followed. The
/// same fields as [`FileKey::of`] takes from the standard library's
/// `statx`, so a key made here matches the digest record's.
#[cfg(target_os = "linux")]
fn statx_key(dirfd: std::os::fd::RawFd, relative: &str) -> std::io::Result<Walked> {
    use nix::libc;
    let path = std::ffi::CString::new(relative)?;
    let mut flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_SYNC_AS_STAT;
    if relative.is_empty() {
        flags |= libc::AT_EMPTY_PATH;
    }
    // SAFETY: an all-zero statx is a valid value of the plain C struct.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the caller's descriptor is open for the call's duration,
    // `path` is NUL-terminated and outlives it, and `st` is a valid statx
    // buffer the kernel writes.
    let rc = unsafe {
        libc::statx(
            dirfd,
            path.as_ptr(),
            flags,
            libc::STATX_BASIC_STATS,
            &mut st,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let ns =
        |t: libc::statx_timestamp| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
    let mode = u32::from(st.stx_mode) & libc::S_IFMT;
    Ok(Walked {
        key: FileKey::new(
            libc::makedev(st.stx_dev_major, st.stx_dev_minor),
            st.stx_ino,
            st.stx_size,
            ns(st.stx_mtime),
            ns(st.stx_ctime),
        ),
        kind: match mode {
            libc::S_IFREG => EntryKind::File,
            libc::S_IFDIR => EntryKind::Dir,
            _ => EntryKind::Other,
        },
    })
}

impl Folder {
    /// Opens `dir` for keying its entries (a symlink is refused).
    #[cfg(target_os = "linux")]
    fn open(dir: &Path) -> std::io::Result<Folder> {
        use std::os::unix::fs::OpenOptionsExt;
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_PATH | nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
            .open(dir)?;
        Ok(Folder { fd })
    }

    #[cfg(not(target_os = "linux"))]
    fn open(dir: &Path) -> std::io::Result<Folder> {
        Ok(Folder {
            dir: dir.to_path_buf(),
        })
    }

    /// The key and kind of `relative` (`/`-separated, `""` for the folder
    /// itself), a final symlink not followed. The same fields as
    /// [`FileKey::of`] takes from the standard library's `statx`, so a key
    /// made here matches the digest record's.
    #[cfg(target_os = "linux")]
    fn key(&self, relative: &str) -> std::io::Result<Walked> {
        use std::os::fd::AsRawFd;
        statx_key(self.fd.as_raw_fd(), relative)
    }

    /// The bytes of the file `relative` in the folder (a final symlink not
    /// followed), at most `limit`, and the key of the open file taken
    /// after reading it: bytes and key describe the same file, so a key
    /// that matches a record says the bytes are the recorded ones. `size`
    /// is the size expected (one read when it is right).
    #[cfg(target_os = "linux")]
    fn read(&self, relative: &str, size: u64, limit: u64) -> std::io::Result<(Vec<u8>, Walked)> {
        use nix::libc;
        use std::io::Read;
        use std::os::fd::{AsRawFd, FromRawFd};
        let path = std::ffi::CString::new(relative)?;
        // SAFETY: the folder's descriptor is open for the call, `path` is
        // NUL-terminated and outlives it.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                path.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NOCTTY,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        let want = size.min(limit);
        let mut buf = vec![0u8; usize::try_from(want).unwrap_or(0) + 1];
        // One read of one byte more than expected: a regular file gives
        // all it has up to that; fewer bytes than expected, or more, and
        // it is read to its end (bounded) like any other.
        let n = (&file).read(&mut buf)?;
        buf.truncate(n);
        if n as u64 != want {
            (&file).take(limit + 1 - n as u64).read_to_end(&mut buf)?;
        }
        if buf.len() as u64 > limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("file is larger than {limit} bytes"),
            ));
        }
        let key = statx_key(file.as_raw_fd(), "")?;
        Ok((buf, key))
    }

    #[cfg(not(target_os = "linux"))]
    fn read(&self, relative: &str, _size: u64, limit: u64) -> std::io::Result<(Vec<u8>, Walked)> {
        let path = join_relative(&self.dir, relative);
        let bytes = crate::checks::read_bounded(&path, limit)?;
        Ok((bytes, self.key(relative)?))
    }

    #[cfg(not(target_os = "linux"))]
    fn key(&self, relative: &str) -> std::io::Result<Walked> {
        let path = if relative.is_empty() {
            self.dir.clone()
        } else {
            join_relative(&self.dir, relative)
        };
        let meta = std::fs::symlink_metadata(path)?;
        let t = meta.file_type();
        Ok(Walked {
            key: FileKey::of(&meta),
            kind: if t.is_file() {
                EntryKind::File
            } else if t.is_dir() {
                EntryKind::Dir
            } else {
                EntryKind::Other
            },
        })
    }
}

fn walk_into(
    folder: &Folder,
    dir: &Path,
    prefix: &str,
    depth: usize,
    out: &mut BTreeMap<String, Walked>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if out.len() >= MAX_WALK_ENTRIES {
            return Err(std::io::Error::other("too many entries"));
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            // A name the record cannot hold: no verdict for this folder.
            return Err(std::io::Error::other("a file name that is not UTF-8"));
        };
        let relative = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let w = folder.key(&relative)?;
        out.insert(relative.clone(), w);
        if w.kind == EntryKind::Dir {
            if depth + 1 > MAX_WALK_DEPTH {
                return Err(std::io::Error::other("folders nested too deep"));
            }
            walk_into(folder, &entry.path(), &relative, depth + 1, out)?;
        }
    }
    Ok(())
}

/// What a folder's check expects of its libraries: the plugin's library
/// file and `XPLUGIN_KIND_*`, and for a client plugin the runtime's
/// possible names (empty for a controller plugin).
pub(crate) struct Expected<'a> {
    pub lib_file: &'a str,
    pub kind: u32,
    pub runtimes: &'a [&'a str],
}

/// The previous verdict on plugin folder `dir` whose manifest is the file
/// `manifest`, when every entry the verdict recorded but the manifest still
/// has its key; `None` sends the folder to the full check.
pub(crate) fn keyed(record: &DigestRecord, dir: &Path, manifest: &str) -> Option<Keyed> {
    let relative = record.relative(dir)?;
    let verdict = record.old_verdict(&relative)?;
    // Every key first: one metadata read per entry, nothing read. The
    // manifest's is taken from the file as it is read.
    let folder = Folder::open(dir).ok()?;
    for (path, w) in &verdict.entries {
        if path != manifest && folder.key(path).ok()? != *w {
            return None;
        }
    }
    Some(Keyed {
        relative,
        verdict,
        folder,
    })
}

/// A previous verdict on a plugin folder whose every entry still has the
/// key the verdict recorded, except the manifest, read by
/// [`Keyed::read_manifest`]: what [`reuse`] then checks again.
pub(crate) struct Keyed {
    relative: String,
    verdict: FolderVerdict,
    folder: Folder,
}

impl Keyed {
    /// The bytes of the manifest `file` (at most `limit`), read through
    /// the folder, when the file read still has the verdict's key: else
    /// `None`, and the folder gets the full check.
    pub(crate) fn read_manifest(&self, file: &str, limit: u64) -> Option<Vec<u8>> {
        let w = self.verdict.entries.get(file)?;
        if w.kind != EntryKind::File {
            return None;
        }
        let (bytes, found) = self.folder.read(file, w.key.size(), limit).ok()?;
        (found == *w).then_some(bytes)
    }
}

/// The previous verdict on `dir` (keyed, its manifest read: [`keyed`]),
/// reused (and kept for the next boot) when everything else it rests on
/// still holds (see the module documentation): the license against this
/// boot's trust store and clock ([`xplugin_license::reverify`]), the
/// recorded library headers against this architecture, and each licensed
/// file's digest from the record under its key.
pub(crate) fn reuse(
    record: &DigestRecord,
    dir: &Path,
    keyed: Keyed,
    expected: &Expected<'_>,
    trust: &TrustStore,
    vctx: &VerifyContext<'_>,
    ctx: &CheckContext<'_>,
) -> Option<Reused> {
    let Keyed {
        relative, verdict, ..
    } = keyed;
    let license = xplugin_license::reverify(verdict.payload, &verdict.signer, trust, vctx)?;
    let library = verdict
        .library
        .checked(dir, expected.lib_file, expected.kind, &ctx.arch)?;
    let runtime = match (&verdict.runtime, expected.runtimes.is_empty()) {
        (None, true) => None,
        (Some(rt), false) if expected.runtimes.contains(&rt.file.as_str()) => {
            Some(rt.checked(dir, &rt.file, xplugin_abi::XPLUGIN_KIND_RUNTIME, &ctx.arch)?)
        }
        _ => return None,
    };
    // Last, the licensed digests, from the record under the keys just
    // checked (a file the record does not answer for: the full check):
    // each one what the license says.
    for (file, expected) in &license.payload().files {
        let w = verdict.entries.get(file.as_str())?;
        if w.kind != EntryKind::File {
            return None;
        }
        if &record.recorded_sha256(&join_relative(dir, file), w.key)? != expected {
            return None;
        }
    }
    record.keep_old_verdict(&relative);
    Some(Reused {
        license,
        library,
        runtime,
    })
}

/// Keeps the verdict of a full check of `dir` that passed with `license`
/// (verified by `trust`), `library` and `runtime`, when the folder's keys
/// after the check (walked now) are `before`, the keys walked before it.
pub(crate) fn keep(
    record: &DigestRecord,
    dir: &Path,
    before: BTreeMap<String, Walked>,
    license: &VerifiedLicense,
    trust: &TrustStore,
    library: &CheckedLibrary,
    runtime: Option<&CheckedLibrary>,
) {
    let Some(relative) = record.relative(dir) else {
        return;
    };
    if walk(dir).ok().as_ref() != Some(&before) {
        // Changed while it was checked: the next boot checks it in full.
        return;
    }
    let (Some(signer), Some(library)) = (
        xplugin_license::signer_key(license, trust),
        RecordedLibrary::of(library),
    ) else {
        return;
    };
    let runtime = match runtime.map(RecordedLibrary::of) {
        None => None,
        Some(Some(r)) => Some(r),
        Some(None) => return,
    };
    record.keep_verdict(
        relative,
        &FolderVerdict {
            entries: before,
            payload: license.payload().clone(),
            signer,
            library,
            runtime,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digests::VerifyMode;
    use xplugin_model::Side;

    fn verdict(not_before: Option<u64>, expires: Option<u64>, arch: Arch) -> FolderVerdict {
        let key = |n: u64| FileKey::new(1, n, 10 * n, 1_700_000_000_123_456_789, -5);
        let file = |n| Walked {
            key: key(n),
            kind: EntryKind::File,
        };
        FolderVerdict {
            entries: [
                (
                    String::new(),
                    Walked {
                        key: key(1),
                        kind: EntryKind::Dir,
                    },
                ),
                ("demo.json".to_string(), file(2)),
                ("demo.so".to_string(), file(3)),
                (
                    "link".to_string(),
                    Walked {
                        key: key(4),
                        kind: EntryKind::Other,
                    },
                ),
            ]
            .into_iter()
            .collect(),
            payload: LicensePayload {
                format: 1,
                key_id: "vendor".into(),
                license_id: "L-1".into(),
                plugin: "demo".into(),
                side: Side::Controller,
                versions: ">=1.0, <2".into(),
                devices: vec!["*".into()],
                issued_at: 1_700_000_000,
                not_before,
                expires,
                features: vec!["extra".into()],
                files: [("demo.json", "a"), ("demo.so", "b")]
                    .into_iter()
                    .map(|(f, h)| (f.to_string(), h.repeat(64)))
                    .collect(),
            },
            signer: "c".repeat(64),
            library: RecordedLibrary {
                file: "demo.so".into(),
                kind: 1,
                format: BinaryFormat::Elf,
                arch,
                tag: Some((0x5850_4c47, 1, 2, 1, 0)),
                has_entry: true,
            },
            runtime: None,
        }
    }

    /// The record's encoding is not self-describing: every optional part
    /// of a verdict (absent times, a named architecture) must read back as
    /// written, through a saved and reloaded record.
    #[test]
    fn a_kept_verdict_reads_back_from_the_saved_record_whatever_it_leaves_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join(xplugin_store::STATE_DIR)).expect("state");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let cases = [
            ("plugins/a", verdict(None, None, Arch::X86_64)),
            ("plugins/b", verdict(Some(5), None, Arch::Aarch64)),
            (
                "plugins/c",
                verdict(None, Some(9), Arch::Other("riscv".into())),
            ),
            ("plugins/d", verdict(Some(5), Some(9), Arch::Arm)),
        ];
        let record = DigestRecord::load(&root, VerifyMode::Record);
        for (relative, v) in &cases {
            record.keep_verdict(relative.to_string(), v);
        }
        record.save();
        let again = DigestRecord::load(&root, VerifyMode::Record);
        for (relative, v) in &cases {
            assert_eq!(again.old_verdict(relative).as_ref(), Some(v), "{relative}");
        }
        assert_eq!(again.old_verdict("plugins/none"), None);
    }
}
