//! Filesystem steps with the store's durability and permission rules:
//! fixed modes, fsync of files and directories, hard links with a copy
//! fallback, removal that does not trip over read-only leftovers.

//!
//! On Windows a mode is not applied as such (a file's access there is its
//! ACL): a private mode (nothing for group and others, e.g. 0600, 0700)
//! creates the file or directory with an owner-only ACL
//! ([`crate::private_acl`]); any other inherits the ACL of its parent, in
//! the end the install root's (docs/windows.md). A directory is made
//! durable by flushing its handle ([`fsync_dir`]).

use std::fs::{self, File, OpenOptions};
use std::io;
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every installed file. Never taken from the package or staging.
pub const FILE_MODE: u32 = 0o644;
/// Mode of every installed directory and of the layout directories.
pub const DIR_MODE: u32 = 0o755;
/// Mode of a plugin's persistent data directory: private to the host user.
pub const DATA_DIR_MODE: u32 = 0o700;

/// fsyncs a directory so that entries created, renamed or removed in it are
/// durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    if super::failpoint::skip_dir_fsync() {
        return Ok(()); // a power-loss negative control (test builds only)
    }
    open_dir_for_sync(dir)?.sync_all()
}

/// An existing file opened so that `sync_all` may flush it (Windows'
/// `FlushFileBuffers` needs write access; reading is enough for `fsync`).
pub fn open_for_sync(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        File::open(path)
    }
    #[cfg(windows)]
    {
        OpenOptions::new().read(true).write(true).open(path)
    }
}

#[cfg(unix)]
fn open_dir_for_sync(dir: &Path) -> io::Result<File> {
    File::open(dir)
}

/// A directory handle that `FlushFileBuffers` (what `sync_all` calls)
/// accepts: directories open only with `FILE_FLAG_BACKUP_SEMANTICS`, and
/// flushing needs write access.
#[cfg(windows)]
fn open_dir_for_sync(dir: &Path) -> io::Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    use windows_sys::Win32::Storage::FileSystem::FILE_FLAG_BACKUP_SEMANTICS;
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(dir)
}

/// Creates one directory and sets `mode` explicitly (the umask does not
/// decide installed modes). Fails if it exists.
#[cfg(unix)]
pub fn create_dir_with_mode(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::DirBuilder::new().mode(mode).create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Creates one directory. Fails if it exists. A private `mode` (e.g.
/// 0700) gives it an owner-only ACL; otherwise it inherits its parent's.
#[cfg(windows)]
pub fn create_dir_with_mode(path: &Path, mode: u32) -> io::Result<()> {
    if is_private(mode) {
        crate::private_acl::create_private_dir(path)
    } else {
        fs::create_dir(path)
    }
}

/// A mode that gives group and others nothing: on Windows, an owner-only
/// ACL.
#[cfg(windows)]
fn is_private(mode: u32) -> bool {
    mode & 0o077 == 0
}

/// Creates a directory (and missing parents) if it is missing; an existing
/// directory is left as it is. Newly created ones get `mode`.
pub fn ensure_dir(path: &Path, mode: u32) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists but is not a directory",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                if !parent.as_os_str().is_empty() {
                    ensure_dir(parent, mode)?;
                }
            }
            match create_dir_with_mode(path, mode) {
                // Lost a race with another process creating it: fine.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            }
        }
        Err(e) => Err(e),
    }
}

/// How a file got into a new generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Hard link to the source inode.
    Linked,
    /// Copied (other filesystem, or the source inode is shared elsewhere).
    Copied,
}

/// Puts `src` at `dst` as a hard link, or as a fresh 0644 copy when linking is
/// impossible (other filesystem, filesystem without hard links) or not wanted
/// (`allow_link == false`). The result always has mode 0644.
pub fn link_or_copy(src: &Path, dst: &Path, allow_link: bool) -> io::Result<Placed> {
    if allow_link {
        match fs::hard_link(src, dst) {
            Ok(()) => {
                #[cfg(unix)]
                {
                    let meta = fs::symlink_metadata(dst)?;
                    if meta.mode() & 0o7777 != FILE_MODE {
                        fs::set_permissions(dst, fs::Permissions::from_mode(FILE_MODE))?;
                    }
                }
                return Ok(Placed::Linked);
            }
            Err(e) if link_unsupported(&e) => {}
            Err(e) => return Err(e),
        }
    }
    copy_file(src, dst)?;
    Ok(Placed::Copied)
}

fn link_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EXDEV | libc_errno::EPERM | libc_errno::EMLINK | libc_errno::EOPNOTSUPP)
    )
}

/// The errno values that mean "this filesystem will not hard-link this".
#[cfg(unix)]
mod libc_errno {
    pub const EXDEV: i32 = nix::errno::Errno::EXDEV as i32;
    pub const EPERM: i32 = nix::errno::Errno::EPERM as i32;
    pub const EMLINK: i32 = nix::errno::Errno::EMLINK as i32;
    pub const EOPNOTSUPP: i32 = nix::errno::Errno::EOPNOTSUPP as i32;
}

/// The Win32 errors that mean "this filesystem will not hard-link this"
/// (under the names of the Unix ones, so [`link_unsupported`] reads the same):
/// another volume, no hard links (FAT), too many links to the file.
#[cfg(windows)]
mod libc_errno {
    use windows_sys::Win32::Foundation;
    pub const EXDEV: i32 = Foundation::ERROR_NOT_SAME_DEVICE as i32;
    pub const EPERM: i32 = Foundation::ERROR_INVALID_FUNCTION as i32;
    pub const EMLINK: i32 = Foundation::ERROR_TOO_MANY_LINKS as i32;
    pub const EOPNOTSUPP: i32 = Foundation::ERROR_NOT_SUPPORTED as i32;
}

/// A new file for writing: fails if `path` exists; on Unix created with
/// `mode` (and the mode set again, the umask may have taken bits off); on
/// Windows with an owner-only ACL for a private mode, else the parent's.
fn create_new_with_mode(path: &Path, mode: u32) -> io::Result<File> {
    #[cfg(windows)]
    if is_private(mode) {
        return crate::private_acl::create_private_file(path);
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(mode);
    let file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Copies the bytes of `src` into a new file `dst` with mode 0644 (the
/// caller fsyncs it). Never copies permissions, owner or timestamps.
pub fn copy_file(src: &Path, dst: &Path) -> io::Result<()> {
    let mut input = File::open(src)?;
    let mut output = create_new_with_mode(dst, FILE_MODE)?;
    io::copy(&mut input, &mut output)?;
    Ok(())
}

/// Writes `bytes` into a new file `dst` (mode 0644) and fsyncs it.
pub fn write_new_file(dst: &Path, bytes: &[u8]) -> io::Result<()> {
    write_new_file_with_mode(dst, bytes, FILE_MODE)
}

/// Writes `bytes` into a new file `dst` with `mode` (set at creation, so
/// the bytes are never readable with a wider mode) and fsyncs it.
pub fn write_new_file_with_mode(dst: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    let mut output = create_new_with_mode(dst, mode)?;
    output.write_all(bytes)?;
    output.sync_all()
}

/// Replaces `path` with `bytes` atomically and durably: writes
/// `<path>.tmp`, fsyncs it, renames it over `path` and fsyncs the parent
/// directory. A crash leaves the old contents or the new ones.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_file_with_mode(path, bytes, FILE_MODE)
}

/// [`replace_file`] with the new file's `mode` (the temporary file has it
/// from its creation on).
pub fn replace_file_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    // A leftover of an interrupted replace may have another mode: start
    // from a new file.
    ignore_not_found(fs::remove_file(&tmp))?;
    write_new_file_with_mode(&tmp, bytes, mode)?;
    rename_durably(&tmp, path)?;
    fsync_parent(path)
}

/// Fsyncs the directory holding `path` (the current one for a bare name).
fn fsync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fsync_dir(dir),
        _ => fsync_dir(Path::new(".")),
    }
}

/// Creates `path` holding `bytes` with `mode`, atomically and durably,
/// unless it exists. The bytes go to a temporary file of this process and
/// call (`NAME.PID.N.tmp`), which is then hard-linked to `path`: a link is
/// refused when `path` exists, so of several processes making the same
/// file at once exactly one succeeds, and the others find its file
/// complete. (A shared temporary name, as [`replace_file_with_mode`] uses
/// under the store lock, lets one writer remove or rename another's.)
///
/// Returns `false`, having written nothing that stays, when `path` already
/// existed.
///
/// # Errors
/// Creating, writing or syncing the temporary file, the link, or the fsync
/// of the directory.
pub fn create_file_durably(path: &Path, bytes: &[u8], mode: u32) -> io::Result<bool> {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp_name);
    // A leftover of an earlier process with this pid.
    ignore_not_found(fs::remove_file(&tmp))?;
    if let Err(e) = write_new_file_with_mode(&tmp, bytes, mode) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    match fs::hard_link(&tmp, path) {
        Ok(()) => ignore_not_found(fs::remove_file(&tmp))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_file(&tmp);
            return Ok(false);
        }
        // A file system without hard links (FAT, some network and FUSE
        // ones): where it is still missing, the temporary file is renamed
        // into place. Two makers racing there can both succeed, the last
        // one's file staying, but neither removes the other's file midway.
        Err(_) if !path.exists() => rename_durably(&tmp, path)?,
        // Made meanwhile by another process.
        Err(_) => {
            let _ = fs::remove_file(&tmp);
            return Ok(false);
        }
    }
    fsync_parent(path)?;
    Ok(true)
}

/// Most threads [`fsync_files`] issues fsyncs from.
const SYNC_THREADS: usize = 8;

/// Starts writing the data of `files` to the device without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`; Linux only, nothing
/// elsewhere). Makes nothing durable: a later fsync does, and finds less to
/// wait for. Files that cannot be opened are skipped.
pub fn start_writeback(files: &[std::path::PathBuf]) {
    #[cfg(target_os = "linux")]
    for file in files {
        use std::os::fd::AsRawFd;
        if let Ok(f) = File::open(file) {
            // SAFETY: a valid open descriptor and integer arguments; the
            // call reads no memory of ours.
            let _ = unsafe {
                nix::libc::sync_file_range(f.as_raw_fd(), 0, 0, nix::libc::SYNC_FILE_RANGE_WRITE)
            };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = files;
}

/// Makes every file of `files` durable, as an fsync of each would, but
/// batched: first the write-back of all of them is started
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, Linux), so the device gets
/// the data of every file at once instead of one file per flush, then the
/// fsyncs are issued from up to [`SYNC_THREADS`] threads, so the file
/// system can commit them in a few journal transactions instead of one per
/// file. Returns when every file is durable, or with the first file that
/// failed (all are still attempted).
///
/// # Errors
/// The first file whose open or fsync failed, and its error.
pub fn fsync_files(files: &[std::path::PathBuf]) -> Result<(), (std::path::PathBuf, io::Error)> {
    if super::failpoint::skip_file_fsync() {
        return Ok(()); // a power-loss negative control (test builds only)
    }
    // A hint only: the fsyncs below are what make the files durable.
    start_writeback(files);
    // With failpoints (the power-loss harness), one thread: the harness
    // enumerates cut points in the order the file system sees the fsyncs,
    // which must be the same on every run. A cut inside the batch leaves
    // some of its files durable and nothing after it done, which is what
    // the harness's prefixes of that order are checked for.
    let threads = if cfg!(feature = "failpoints") {
        1
    } else {
        files.len().clamp(1, SYNC_THREADS)
    };
    if threads == 1 {
        let mut first = None;
        for file in files {
            if let Err(e) = open_for_sync(file).and_then(|f| f.sync_all()) {
                first.get_or_insert((file.clone(), e));
            }
        }
        return first.map_or(Ok(()), Err);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures: std::sync::Mutex<Vec<(usize, io::Error)>> = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(file) = files.get(i) else { break };
                if let Err(e) = open_for_sync(file).and_then(|f| f.sync_all()) {
                    if let Ok(mut v) = failures.lock() {
                        v.push((i, e));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    failures.sort_by_key(|(i, _)| *i);
    match failures.into_iter().next() {
        Some((i, e)) => Err((files.get(i).cloned().unwrap_or_default(), e)),
        None => Ok(()),
    }
}

/// Removes a file, symlink or directory tree. A missing path is not an error.
/// Directories that deny writing or listing (leftovers of a hostile or
/// interrupted unpack) are made accessible to their owner first. Symlinks are
/// removed, never followed.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return ignore_not_found(fs::remove_file(path));
    }
    #[cfg(unix)]
    if meta.mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    for entry in fs::read_dir(path)? {
        remove_tree(&entry?.path())?;
    }
    ignore_not_found(fs::remove_dir(path))
}

fn ignore_not_found(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The owner of `root` when this process is root and `root` belongs to
/// someone else (the daemon's user): `(uid, gid)`.
#[cfg(unix)]
pub fn foreign_owner(root: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let meta = fs::metadata(root).ok()?;
    (meta.uid() != 0).then(|| (meta.uid(), meta.gid()))
}

/// Never on Windows: no process there writes into a root on behalf of
/// another user (the Unix case is root writing into the daemon's root).
#[cfg(windows)]
pub fn foreign_owner(_root: &Path) -> Option<(u32, u32)> {
    None
}

/// `lchown -R path uid:gid` (symlinks themselves, never followed).
#[cfg(unix)]
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Windows has no owners to give; [`foreign_owner`] is always `None` there,
/// so this is never called.
#[cfg(windows)]
pub fn chown_tree(_path: &Path, _uid: u32, _gid: u32) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "changing owners is not supported on Windows",
    ))
}

/// Renames `from` over `to` (replacing it), the one atomic step of every
/// replace. On Unix `rename(2)`; the caller fsyncs the directory. On
/// Windows `MoveFileExW(MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)`,
/// which returns only once the move is on disk.
pub fn rename_durably(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::rename(from, to)
    }
    #[cfg(windows)]
    {
        use std::os::windows::ffi::OsStrExt;
        use windows_sys::Win32::Storage::FileSystem::{
            MoveFileExW, MOVEFILE_REPLACE_EXISTING, MOVEFILE_WRITE_THROUGH,
        };
        let wide = |p: &Path| -> Vec<u16> {
            p.as_os_str()
                .encode_wide()
                .chain(std::iter::once(0))
                .collect()
        };
        let (from_w, to_w) = (wide(from), wide(to));
        // SAFETY: both arguments are NUL-terminated UTF-16 strings that
        // live until the call returns; MoveFileExW only reads them.
        let ok = unsafe {
            MoveFileExW(
                from_w.as_ptr(),
                to_w.as_ptr(),
                MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH,
            )
        };
        if ok == 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_fsyncs_cover_every_file_and_name_the_first_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files: Vec<std::path::PathBuf> = (0..40)
            .map(|i| {
                let p = dir.path().join(format!("f{i}"));
                fs::write(&p, vec![i as u8; 4096]).expect("write");
                p
            })
            .collect();
        fsync_files(&files).expect("all durable");
        let mut with_missing = files.clone();
        with_missing.insert(7, dir.path().join("missing-a"));
        with_missing.push(dir.path().join("missing-b"));
        let (path, e) = fsync_files(&with_missing).expect_err("a missing file fails");
        assert_eq!(path, dir.path().join("missing-a"));
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
