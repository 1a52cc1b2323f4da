//! Writing into the caller's staging directory, and only there.
//!
//! Paths are created component by component under the staging root from
//! names that [`super::entry_name`] already validated; a component that
//! exists as anything but a real directory (a symlink planted by a racing
//! process) stops the import. Files are created with `O_EXCL` (and
//! `O_NOFOLLOW`) and get fixed modes whatever the archive says. Durability
//! is the commit's job: the store fsyncs every staged file it installs
//! before switching generations.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Mode of every unpacked file: no exec bits (a `.so` does not need them to
/// be loaded), no setuid, whatever the archive's external attributes say.
/// (Unix only: on Windows a file's access is its inherited ACL.)
#[cfg(unix)]
pub(crate) const FILE_MODE: u32 = 0o644;
/// Mode of every created directory.
#[cfg(unix)]
pub(crate) const DIR_MODE: u32 = 0o755;

/// An I/O failure with the path it concerns.
#[derive(Debug)]
pub(crate) struct WriteFailure {
    pub path: PathBuf,
    pub source: io::Error,
}

fn failure(path: &Path, source: io::Error) -> WriteFailure {
    WriteFailure {
        path: path.to_path_buf(),
        source,
    }
}

/// What this import created under the staging root, so a refusal can remove
/// exactly that and nothing else.
#[derive(Debug)]
pub(crate) struct Staging {
    root: PathBuf,
    /// Top-level names created directly under `root`.
    created_top: BTreeSet<String>,
}

impl Staging {
    /// Takes the caller's staging directory, which must exist, be a real
    /// directory (not a symlink) and be empty.
    pub(crate) fn open(root: &Path) -> Result<Staging, WriteFailure> {
        let meta = fs::symlink_metadata(root).map_err(|e| failure(root, e))?;
        if !meta.is_dir() {
            return Err(failure(
                root,
                io::Error::other("the staging path is not a directory (or is a symlink)"),
            ));
        }
        let mut listing = fs::read_dir(root).map_err(|e| failure(root, e))?;
        if listing.next().is_some() {
            return Err(failure(
                root,
                io::Error::other("the staging directory is not empty"),
            ));
        }
        Ok(Staging {
            root: root.to_path_buf(),
            created_top: BTreeSet::new(),
        })
    }

    /// Creates (or reuses a directory this import created) `components` under
    /// the root, one component at a time; returns the full path.
    pub(crate) fn make_dirs(&mut self, components: &[&str]) -> Result<PathBuf, WriteFailure> {
        let mut path = self.root.clone();
        for (i, component) in components.iter().enumerate() {
            path.push(component);
            match create_dir(&path) {
                Ok(()) => {
                    if i == 0 {
                        self.created_top.insert((*component).to_string());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let meta = fs::symlink_metadata(&path).map_err(|e| failure(&path, e))?;
                    if !meta.is_dir() {
                        return Err(failure(
                            &path,
                            io::Error::other(
                                "exists and is not a directory (a symlink or file appeared in staging)",
                            ),
                        ));
                    }
                }
                Err(e) => return Err(failure(&path, e)),
            }
        }
        Ok(path)
    }

    /// Creates a new file at `components` (the last one is the file name);
    /// its folders are created as needed.
    pub(crate) fn create_file(
        &mut self,
        components: &[&str],
    ) -> Result<(File, PathBuf), WriteFailure> {
        let Some((file_name, dirs)) = components.split_last() else {
            return Err(failure(&self.root, io::Error::other("empty file path")));
        };
        let dir = self.make_dirs(dirs)?;
        let path = dir.join(file_name);
        let file = create_new_file(&path).map_err(|e| failure(&path, e))?;
        if dirs.is_empty() {
            self.created_top.insert((*file_name).to_string());
        }
        Ok((file, path))
    }

    /// Removes a file this import created (a spool file, or a file whose data
    /// turned out bad).
    pub(crate) fn remove_file(&mut self, path: &Path) -> Result<(), WriteFailure> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(failure(path, e)),
        }
    }

    /// Removes everything this import created under the root (the root stays).
    pub(crate) fn remove_all(&mut self) -> Result<(), WriteFailure> {
        let mut first_error = None;
        for name in std::mem::take(&mut self.created_top) {
            let path = self.root.join(&name);
            let result = match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
                Ok(_) => fs::remove_file(&path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                first_error.get_or_insert(failure(&path, e));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(unix)]
fn create_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new().mode(DIR_MODE).create(path)?;
    // The umask may have removed bits; the mode is fixed, not inherited.
    fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
}

#[cfg(not(unix))]
fn create_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().create(path)
}

#[cfg(unix)]
fn create_new_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(nofollow_flag())
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

#[cfg(not(unix))]
fn create_new_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn nofollow_flag() -> i32 {
    // Redundant with O_EXCL (which already refuses an existing symlink), kept
    // so that a future change to the open mode cannot follow one.
    libc::O_NOFOLLOW
}
