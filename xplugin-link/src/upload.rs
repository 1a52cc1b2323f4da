//! The controller's upload area (`ROOT/state/link/uploads`): uploads are
//! addressed by their SHA-256, received into `<sha256>.part` and renamed to
//! `<sha256>.zip` once every byte is there and hashes to the address. A
//! dropped connection resumes where the `.part` file ends; an upload that
//! does not hash to its address is discarded whole. The quota (the package
//! limit, the area's own limit and the disk's free space) is checked before
//! the first byte is staged, and every chunk is held to the announced size.

use crate::key::hex;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use xplugin_model::{Problem, ProblemCode};

/// Where uploads live inside the controller root.
pub const UPLOADS_DIR: &str = "state/link/uploads";
/// Uploads untouched for this long are removed (a pendant that never came
/// back to resume).
pub const UPLOAD_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Free space left on the controller's disk after an upload, at least.
pub const FREE_SPACE_RESERVE: u64 = 64 << 20;

/// The upload area and its limits.
#[derive(Debug)]
pub struct Uploads {
    dir: PathBuf,
    /// Largest single upload (the controller's `max_package_bytes`).
    pub max_upload: u64,
    /// Largest total of the area (`upload_quota_bytes`).
    pub quota: u64,
    /// Serialises changes to the area between connections.
    lock: Mutex<()>,
}

/// An upload being received on one connection.
#[derive(Debug)]
pub struct Receiving {
    sha256: String,
    size: u64,
    file: File,
    offset: u64,
    /// The hash of the bytes so far (a resumed upload hashes what it
    /// holds first): the whole file is not read again at the end.
    hasher: Sha256,
}

/// A valid upload address: 64 lower-case hex digits.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn quota_problem(message: String) -> Problem {
    Problem::new(
        ProblemCode::LinkUploadQuota,
        "controller upload area",
        message,
        "free space on the controller, or raise max_package_bytes / upload_quota_bytes in its configuration if the package is genuine",
    )
}

fn io_problem(what: &str, path: &Path, e: &std::io::Error) -> Problem {
    Problem::new(
        ProblemCode::LinkUploadQuota,
        path.display().to_string(),
        format!("cannot {what}: {e}"),
        "check the controller's disk (space, permissions of ROOT/state/link)",
    )
}

impl Uploads {
    /// The area of controller root `root`.
    pub fn new(root: &Path, max_upload: u64, quota: u64) -> Uploads {
        Uploads {
            dir: root.join(UPLOADS_DIR),
            max_upload,
            quota,
            lock: Mutex::new(()),
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn part(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.part"))
    }

    /// Where a complete upload is.
    pub fn complete_path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.zip"))
    }

    /// Bytes held by files other than `except`'s, after removing those
    /// older than [`UPLOAD_RETENTION`].
    fn used_by_others(&self, except: &str) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut used = 0;
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            let old = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > UPLOAD_RETENTION);
            if old {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            if !e.file_name().to_string_lossy().starts_with(except) {
                used += meta.len();
            }
        }
        used
    }

    /// Starts or resumes upload `sha256` of `size` bytes: the quota is
    /// checked before anything is staged. Returns the receiver and the
    /// offset to continue from (`size`: it is complete already).
    ///
    /// # Errors
    /// A [`ProblemCode::LinkUploadQuota`] problem.
    pub fn begin(&self, sha256: &str, size: u64) -> Result<(Option<Receiving>, u64), Problem> {
        let _g = self.guard();
        if !valid_sha256(sha256) {
            return Err(Problem::new(
                ProblemCode::LinkBadFrame,
                "upload",
                format!(
                    "\"{}\" is not a SHA-256 (64 lower-case hex digits)",
                    sha256.chars().take(80).collect::<String>()
                ),
                "use an xplugin-client of a compatible release",
            ));
        }
        if let Ok(meta) = std::fs::metadata(self.complete_path(sha256)) {
            if meta.len() == size {
                return Ok((None, size));
            }
            let _ = std::fs::remove_file(self.complete_path(sha256));
        }
        if size > self.max_upload {
            return Err(quota_problem(format!(
                "the upload is {size} bytes, the controller accepts packages of at most {} bytes (max_package_bytes)",
                self.max_upload
            )));
        }
        crate::store_files::ensure_private_dir(&self.dir).map_err(|why| {
            io_problem(
                "create the upload area",
                &self.dir,
                &std::io::Error::other(why),
            )
        })?;
        let part = self.part(sha256);
        let have = std::fs::metadata(&part).map_or(0, |m| m.len());
        let have = if have > size { 0 } else { have };
        let used = self.used_by_others(sha256);
        if used.saturating_add(size) > self.quota {
            return Err(quota_problem(format!(
                "the upload of {size} bytes does not fit the upload quota: {used} of {} bytes are in use by other uploads (upload_quota_bytes)",
                self.quota
            )));
        }
        if let Some(free) = free_space(&self.dir) {
            let needed = (size - have).saturating_add(FREE_SPACE_RESERVE);
            if free < needed {
                return Err(quota_problem(format!(
                    "the controller's disk has {free} bytes free, the upload needs {} more plus a reserve of {FREE_SPACE_RESERVE}",
                    size - have
                )));
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(&part)
            .map_err(|e| io_problem("open the upload", &part, &e))?;
        file.set_len(have)
            .map_err(|e| io_problem("resume the upload", &part, &e))?;
        let hasher =
            hash_prefix(&mut file, have).map_err(|e| io_problem("resume the upload", &part, &e))?;
        Ok((
            Some(Receiving {
                sha256: sha256.to_string(),
                size,
                file,
                offset: have,
                hasher,
            }),
            have,
        ))
    }

    /// Writes one chunk at `offset`, which must be where the upload ends.
    ///
    /// # Errors
    /// A problem: a chunk out of place or past the announced size, or the
    /// disk failing.
    pub fn write(&self, r: &mut Receiving, offset: u64, bytes: &[u8]) -> Result<(), Problem> {
        if offset != r.offset || offset.saturating_add(bytes.len() as u64) > r.size {
            return Err(Problem::new(
                ProblemCode::LinkUploadMismatch,
                format!("upload {}", r.sha256),
                format!(
                    "a chunk of {} bytes at offset {offset} does not fit: the upload has {} of {} bytes",
                    bytes.len(),
                    r.offset,
                    r.size
                ),
                "import again",
            ));
        }
        r.file
            .write_all(bytes)
            .map_err(|e| io_problem("write the upload", &self.part(&r.sha256), &e))?;
        r.hasher.update(bytes);
        r.offset += bytes.len() as u64;
        Ok(())
    }

    /// Checks that the upload is whole and hashes to its address, then
    /// renames it to its address; a mismatch discards it. The bytes are not
    /// fsynced here: the install that takes the upload fsyncs what it
    /// stages, and an upload cut by a power loss fails its hash or the
    /// package reader and is sent again.
    ///
    /// # Errors
    /// A [`ProblemCode::LinkUploadMismatch`] problem, or the disk failing.
    pub fn finish(&self, r: Receiving) -> Result<PathBuf, Problem> {
        let _g = self.guard();
        let part = self.part(&r.sha256);
        let mismatch = |message: String| {
            let _ = std::fs::remove_file(&part);
            Problem::new(
                ProblemCode::LinkUploadMismatch,
                format!("upload {}", r.sha256),
                message,
                "import again; if it repeats, the network alters data",
            )
        };
        if r.offset != r.size {
            return Err(mismatch(format!(
                "the upload ended after {} of {} bytes",
                r.offset, r.size
            )));
        }
        drop(r.file);
        let digest = hex(&r.hasher.finalize());
        if digest != r.sha256 {
            return Err(mismatch(format!(
                "the {} bytes received hash to {digest}, not to the announced {}",
                r.size, r.sha256
            )));
        }
        let done = self.complete_path(&r.sha256);
        std::fs::rename(&part, &done).map_err(|e| io_problem("rename the upload", &part, &e))?;
        let _ = File::open(&self.dir).and_then(|d| d.sync_all());
        Ok(done)
    }
}

/// The hash of a file's first `len` bytes, leaving the file positioned at
/// `len`.
fn hash_prefix(file: &mut File, len: u64) -> std::io::Result<Sha256> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        file.read_exact(&mut buf[..want])?;
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(hasher)
}

/// SHA-256 of a file from its start, as hex.
///
/// # Errors
/// The read error.
pub fn hash_file(file: &mut File) -> std::io::Result<String> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Free bytes for an unprivileged writer on the file system of `dir`.
#[cfg(unix)]
fn free_space(dir: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    #[allow(clippy::useless_conversion)] // the field types differ by target
    Some(u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size())))
}

/// Free bytes for this user on the volume of `dir` (`GetDiskFreeSpaceExW`,
/// which counts quotas).
#[cfg(windows)]
fn free_space(dir: &Path) -> Option<u64> {
    use std::os::windows::ffi::OsStrExt;
    use windows_sys::Win32::Storage::FileSystem::GetDiskFreeSpaceExW;
    let wide: Vec<u16> = dir.as_os_str().encode_wide().chain(Some(0)).collect();
    let mut available = 0u64;
    // SAFETY: `wide` is NUL-terminated and lives across the call; the one
    // out-pointer is a writable u64, the others may be null.
    let ok = unsafe {
        GetDiskFreeSpaceExW(
            wide.as_ptr(),
            &mut available,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    (ok != 0).then_some(available)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    #[test]
    fn uploads_resume_verify_and_respect_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let up = Uploads::new(dir.path(), 1000, 1500);
        let data = vec![7u8; 600];
        let s = sha(&data);
        let (r, at) = up.begin(&s, 600).unwrap();
        assert_eq!(at, 0);
        let mut r = r.unwrap();
        up.write(&mut r, 0, &data[..100]).unwrap();
        // Out of place: refused.
        assert!(up.write(&mut r, 50, &data[..10]).is_err());
        drop(r);
        // Resumed after a drop: continues at 100.
        let (r, at) = up.begin(&s, 600).unwrap();
        assert_eq!(at, 100);
        let mut r = r.unwrap();
        up.write(&mut r, 100, &data[100..]).unwrap();
        let path = up.finish(r).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // Complete already.
        assert_eq!(up.begin(&s, 600).unwrap().1, 600);
        // Over the package limit, over the quota: refused before staging.
        assert_eq!(
            up.begin(&sha(b"x"), 1001).unwrap_err().code,
            ProblemCode::LinkUploadQuota
        );
        assert_eq!(
            up.begin(&sha(b"y"), 901).unwrap_err().code,
            ProblemCode::LinkUploadQuota
        );
        // Bytes that do not hash to the address: discarded.
        let (r, _) = up.begin(&sha(b"z"), 3).unwrap();
        let mut r = r.unwrap();
        up.write(&mut r, 0, b"abc").unwrap();
        assert_eq!(
            up.finish(r).unwrap_err().code,
            ProblemCode::LinkUploadMismatch
        );
        assert!(!up.part(&sha(b"z")).exists());
    }
}
