//! The per-root daemon lock: `ROOT/state/daemon.json`, held with an
//! exclusive open-file-description lock for the daemon's lifetime, and holding its pid and
//! admin socket path. Commands that would write the root directly look at it:
//! while a daemon holds it they refuse and point to the daemon; commands
//! without `--admin-socket` find the daemon's socket in it.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// File name under `ROOT/state/`.
pub const PRESENCE_FILE: &str = "daemon.json";

/// What the file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The daemon's pid.
    pub pid: u32,
    /// Where its admin socket is.
    pub admin_socket: PathBuf,
    /// When it started (unix seconds).
    pub started_unix: u64,
}

/// The held lock. Dropping it (or the process ending, or exec: the file is
/// close-on-exec) releases it.
#[derive(Debug)]
pub struct DaemonLock {
    file: File,
    path: PathBuf,
}

fn path_of(root: &Path) -> PathBuf {
    root.join(xplugin_store::STATE_DIR).join(PRESENCE_FILE)
}

/// Takes the exclusive open-file-description lock on the whole of `file`
/// without waiting. OFD locks (not `flock`) because [`running`] can then ask
/// who holds the lock (`F_OFD_GETLK`) without taking it: a probe that took a
/// shared lock, however briefly, would make a daemon starting at that moment
/// believe another one runs.
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    ofd_lock(file, nix::libc::F_OFD_SETLK, nix::libc::F_WRLCK as i16).map(|_| ())
}

/// True when another open file description holds a lock on `file`.
fn is_locked(file: &File) -> std::io::Result<bool> {
    ofd_lock(file, nix::libc::F_OFD_GETLK, nix::libc::F_WRLCK as i16)
        .map(|l| l.l_type != nix::libc::F_UNLCK as i16)
}

fn ofd_lock(file: &File, cmd: i32, kind: i16) -> std::io::Result<nix::libc::flock> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as i16;
    // l_start = l_len = 0: the whole file; l_pid must be 0 for OFD locks.
    // SAFETY: fcntl reads and (for GETLK) writes the `flock` we pass, which
    // lives across the call; `file` is open for the whole call.
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut lock) } == 0 {
        Ok(lock)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl DaemonLock {
    /// Takes the daemon lock of `root` and records this daemon.
    ///
    /// # Errors
    /// A message naming the running daemon (pid, socket) when another holds
    /// it, or the I/O error.
    pub fn acquire(root: &Path, admin_socket: &Path) -> Result<DaemonLock, String> {
        let path = path_of(root);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open the daemon lock {}: {e}", path.display()))?;
        if lock_exclusive(&file).is_err() {
            let other = read(&path);
            return Err(match other {
                Some(p) => format!(
                    "another xplugin-controller daemon (pid {}, admin socket {}) is running for {}; stop it first (systemctl stop xplugin-controller)",
                    p.pid,
                    p.admin_socket.display(),
                    root.display()
                ),
                None => format!("another xplugin-controller daemon is running for {}", root.display()),
            });
        }
        let presence = Presence {
            pid: std::process::id(),
            admin_socket: admin_socket.to_path_buf(),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let bytes = serde_json::to_vec_pretty(&presence).unwrap_or_default();
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(&bytes))
            .and_then(|()| file.flush());
        written.map_err(|e| format!("cannot write the daemon lock {}: {e}", path.display()))?;
        Ok(DaemonLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        // An empty file says nobody runs; the lock itself goes with the fd.
        let _ = self.file.set_len(0);
    }
}

/// The running daemon of `root`, if one holds its lock now.
pub fn running(root: &Path) -> Option<Presence> {
    let path = path_of(root);
    let file = File::open(&path).ok()?;
    // An unanswerable question counts as "nobody": the commands then go to
    // the root directly, and its store lock still keeps them apart.
    if !is_locked(&file).unwrap_or(false) {
        return None;
    }
    read(&path).or(Some(Presence {
        pid: 0,
        admin_socket: PathBuf::new(),
        started_unix: 0,
    }))
}

fn read(path: &Path) -> Option<Presence> {
    let mut bytes = Vec::new();
    File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut bytes)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_daemon_per_root_and_it_can_be_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        assert!(running(dir.path()).is_none());
        let lock = DaemonLock::acquire(dir.path(), Path::new("/run/x.sock")).unwrap();
        let p = running(dir.path()).unwrap();
        assert_eq!(
            (p.pid, p.admin_socket.as_path()),
            (std::process::id(), Path::new("/run/x.sock"))
        );
        let e = DaemonLock::acquire(dir.path(), Path::new("/run/y.sock")).unwrap_err();
        assert!(e.contains("/run/x.sock"), "{e}");
        drop(lock);
        assert!(running(dir.path()).is_none());
    }
}
