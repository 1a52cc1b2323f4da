//! The install lock: `flock(2)` on `ROOT/.lock`, serialising imports, removals,
//! rollbacks and boot. The holder writes its pid into the lock file so a
//! second importer can say who is running.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
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
    file: Option<Flock<File>>,
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
            let _ = file.set_len(0);
            drop(file);
        }
    }
}

/// Tries once to take the lock without blocking.
pub(crate) fn try_lock(root: &Path) -> Result<StoreLock, StoreError> {
    let path = root.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(|e| StoreError::io("open lock file", &path, e, HINT_DISK))?;
    let mut locked =
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
                &path,
                std::io::Error::from(errno),
                "the filesystem must support flock(2); keep the install root on a local filesystem",
            )),
        };
    let write_pid = |file: &mut File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        writeln!(file, "{}", std::process::id())
    };
    write_pid(&mut locked).map_err(|e| StoreError::io("write pid into", &path, e, HINT_DISK))?;
    Ok(StoreLock {
        file: Some(locked),
        root: root.to_path_buf(),
        recovery: RecoveryReport::default(),
    })
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

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    // The holder writes a few digits; a bigger file is not ours to trust.
    Read::take(&mut *file, 32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
