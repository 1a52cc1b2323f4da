//! The install lock: `flock(2)` on `ROOT/.lock` (on Windows `LockFileEx`),
//! serialising imports, removals, rollbacks and boot. The holder writes its
//! pid into the lock file so a second importer can say who is running.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[cfg(unix)]
use nix::errno::Errno;
#[cfg(unix)]
use nix::fcntl::{Flock, FlockArg};

use super::error::{StoreError, HINT_DISK};
use super::fsutil::FILE_MODE;
use super::recovery::RecoveryReport;

/// File name of the lock file in the install root.
pub const LOCK_FILE: &str = ".lock";

/// Proof that this process holds the install lock of one root. Every writing
/// store operation takes it. The lock is released when this is dropped (and
/// by the kernel if the process dies, so a killed importer never leaves the
/// root locked).
#[derive(Debug)]
pub struct StoreLock {
    file: Option<Locked>,
    root: PathBuf,
    recovery: RecoveryReport,
}

impl StoreLock {
    /// The install root this lock protects.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the recovery run when the lock was taken cleaned up (leftovers
    /// of an interrupted import). Worth logging when not empty.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub(crate) fn set_recovery(&mut self, report: RecoveryReport) {
        self.recovery = report;
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Clear the pid before unlocking so nobody reports a finished
            // holder as running. Failure only makes a later message stale.
            let mut file = file;
            let _ = write_pid_field(&mut file, None);
            drop(file);
        }
    }
}

#[cfg(unix)]
type Locked = Flock<File>;

/// Tries once to take the lock without blocking.
pub(crate) fn try_lock(root: &Path) -> Result<StoreLock, StoreError> {
    let path = root.join(LOCK_FILE);
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    options.mode(FILE_MODE);
    #[cfg(not(unix))]
    let _ = FILE_MODE;
    let file = options
        .open(&path)
        .map_err(|e| StoreError::io("open lock file", &path, e, HINT_DISK))?;
    let mut locked = lock_file(file, root, &path)?;
    write_pid_field(&mut locked, Some(std::process::id()))
        .map_err(|e| StoreError::io("write pid into", &path, e, HINT_DISK))?;
    Ok(StoreLock {
        file: Some(locked),
        root: root.to_path_buf(),
        recovery: RecoveryReport::default(),
    })
}

#[cfg(unix)]
fn lock_file(file: File, root: &Path, path: &Path) -> Result<Locked, StoreError> {
    let locked =
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                return Err(StoreError::Busy {
                    pid: read_pid(&mut file),
                    root: root.to_path_buf(),
                })
            }
            Err((_, errno)) => return Err(StoreError::io(
                "lock",
                path,
                std::io::Error::from(errno),
                "the filesystem must support flock(2); keep the install root on a local filesystem",
            )),
        };
    Ok(locked)
}

/// The lock file, locked with `LockFileEx`: Windows releases the lock when
/// the handle is closed, also when the process dies, as `flock` does.
#[cfg(windows)]
#[derive(Debug)]
struct Locked(File);

#[cfg(windows)]
impl std::ops::Deref for Locked {
    type Target = File;
    fn deref(&self) -> &File {
        &self.0
    }
}

#[cfg(windows)]
impl std::ops::DerefMut for Locked {
    fn deref_mut(&mut self) -> &mut File {
        &mut self.0
    }
}

/// The byte locked: Windows byte-range locks are mandatory (a locked range
/// cannot be read by others), so the lock covers one byte far past the pid
/// the holder writes at the start, which others must be able to read.
#[cfg(windows)]
const LOCKED_OFFSET: u64 = 1 << 62;

#[cfg(windows)]
fn lock_file(file: File, root: &Path, path: &Path) -> Result<Locked, StoreError> {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Foundation::{ERROR_LOCK_VIOLATION, HANDLE};
    use windows_sys::Win32::Storage::FileSystem::{
        LockFileEx, LOCKFILE_EXCLUSIVE_LOCK, LOCKFILE_FAIL_IMMEDIATELY,
    };
    use windows_sys::Win32::System::IO::OVERLAPPED;
    // SAFETY: OVERLAPPED is plain data; all zero is its documented initial
    // state (no event), then the offset of the range is set.
    let mut overlapped: OVERLAPPED = unsafe { std::mem::zeroed() };
    overlapped.Anonymous.Anonymous.Offset = LOCKED_OFFSET as u32;
    overlapped.Anonymous.Anonymous.OffsetHigh = (LOCKED_OFFSET >> 32) as u32;
    // SAFETY: the handle is the open file's and outlives the call; the
    // OVERLAPPED lives on this stack frame until the call returns (with
    // LOCKFILE_FAIL_IMMEDIATELY on a synchronous handle it does not pend).
    let ok = unsafe {
        LockFileEx(
            file.as_raw_handle() as HANDLE,
            LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY,
            0,
            1,
            0,
            &mut overlapped,
        )
    };
    if ok != 0 {
        return Ok(Locked(file));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(ERROR_LOCK_VIOLATION as i32) {
        let mut file = file;
        return Err(StoreError::Busy {
            pid: read_pid(&mut file),
            root: root.to_path_buf(),
        });
    }
    Err(StoreError::io(
        "lock",
        path,
        e,
        "the filesystem must support LockFileEx; keep the install root on a local NTFS volume",
    ))
}

/// Takes the lock, retrying until `timeout` has passed.
pub(crate) fn lock_wait(root: &Path, timeout: Duration) -> Result<StoreLock, StoreError> {
    const POLL: Duration = Duration::from_millis(50);
    let start = Instant::now();
    loop {
        match try_lock(root) {
            Err(StoreError::Busy { .. }) if start.elapsed() < timeout => {
                std::thread::sleep(POLL.min(timeout.saturating_sub(start.elapsed())));
            }
            other => return other,
        }
    }
}

/// Width of the pid field at the start of the lock file: a `u32` in
/// decimal, padded with spaces, and a newline.
const PID_FIELD: usize = 11;

/// Writes the holder's pid (`None`: no holder, blanks) over the start of
/// the lock file, in place. Never truncated: the lock is taken at every
/// boot, and truncating then writing made the file system free the file's
/// block and allocate one again each time (two metadata changes for a few
/// bytes).
fn write_pid_field(file: &mut File, pid: Option<u32>) -> std::io::Result<()> {
    let mut field = [b' '; PID_FIELD];
    field[PID_FIELD - 1] = b'\n';
    if let Some(pid) = pid {
        let digits = pid.to_string();
        let n = digits.len().min(PID_FIELD - 1);
        field[..n].copy_from_slice(&digits.as_bytes()[..n]);
    }
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&field)
}

/// The holder's pid: the first line of the lock file (blank: none). An
/// earlier version wrote the pid alone and truncated the file when done.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    // The holder writes a few digits; a bigger file is not ours to trust.
    Read::take(&mut *file, 32).read_to_string(&mut text).ok()?;
    text.lines().next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_field_is_written_in_place_and_read_back_as_earlier_versions_wrote_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .expect("open");
        // An earlier version: the pid alone.
        file.write_all(b"4242\n").expect("write");
        assert_eq!(read_pid(&mut file), Some(4242));
        write_pid_field(&mut file, Some(u32::MAX)).expect("write");
        assert_eq!(read_pid(&mut file), Some(u32::MAX));
        write_pid_field(&mut file, Some(7)).expect("write");
        assert_eq!(read_pid(&mut file), Some(7));
        assert_eq!(std::fs::read(&path).expect("read").len(), PID_FIELD);
        write_pid_field(&mut file, None).expect("write");
        assert_eq!(read_pid(&mut file), None, "no holder");
        // Taken and released: the pid is there while held, gone after.
        let store_root = dir.path();
        let lock = try_lock(store_root).expect("lock");
        let mut reader = File::open(&path).expect("open");
        assert_eq!(read_pid(&mut reader), Some(std::process::id()));
        drop(lock);
        assert_eq!(read_pid(&mut reader), None);
    }
}
