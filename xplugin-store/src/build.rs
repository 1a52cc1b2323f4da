//! Building a new generation in `generations/<N>.tmp`: plugin trees placed
//! with fixed modes, then everything new made durable.
//!
//! Files are placed first and fsynced afterwards in one pass, then the
//! directories deepest first. On journaling filesystems the first fsync
//! commits the journal for all of them, so the rest are cheap; interleaving
//! "write, fsync, write, fsync" would cost one journal commit per file.

use std::path::{Path, PathBuf};

use super::error::{StoreError, HINT_DISK};
use super::failpoint::hit;
use super::fsutil::{self, DIR_MODE};
use super::generation::{Generation, GenerationState, PLUGINS_DIR};

/// Where a plugin tree of a new generation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The current generation (already durable, already fixed modes).
    Carried,
    /// The staging area (written by an importer: fsync and fix modes).
    Staged,
}

/// What still has to be fsynced before the generation may be renamed into
/// place.
#[derive(Debug, Default)]
struct Unsynced {
    files: Vec<PathBuf>,
    /// Directories in post-order (children before parents).
    dirs: Vec<PathBuf>,
}

/// Fills `tmp` (which must not exist) with the plugin trees of `sources` and
/// `state.json`, and makes all of it durable.
pub(crate) fn fill_tmp_generation(
    tmp: &Path,
    state: &GenerationState,
    sources: &[(String, PathBuf, Origin)],
) -> Result<(), StoreError> {
    if std::fs::symlink_metadata(tmp).is_ok() {
        fsutil::remove_tree(tmp)
            .map_err(|e| StoreError::io("remove stale directory", tmp, e, HINT_DISK))?;
    }
    fsutil::create_dir_with_mode(tmp, DIR_MODE)
        .map_err(|e| StoreError::io("create directory", tmp, e, HINT_DISK))?;
    let plugins_dir = tmp.join(PLUGINS_DIR);
    fsutil::create_dir_with_mode(&plugins_dir, DIR_MODE)
        .map_err(|e| StoreError::io("create directory", &plugins_dir, e, HINT_DISK))?;
    hit("commit", "after-tmp-created");

    let mut unsynced = Unsynced::default();
    for (name, src, _) in sources.iter().filter(|s| s.2 == Origin::Carried) {
        place_tree(src, &plugins_dir.join(name), Origin::Carried, &mut unsynced)?;
    }
    hit("commit", "after-carry-over");
    for (name, src, _) in sources.iter().filter(|s| s.2 == Origin::Staged) {
        place_tree(src, &plugins_dir.join(name), Origin::Staged, &mut unsynced)?;
        hit("commit", "after-staged-plugin");
    }
    fsutil::fsync_files(&unsynced.files)
        .map_err(|(file, e)| StoreError::io("fsync file", &file, e, HINT_DISK))?;
    for dir in unsynced.dirs.iter().chain([&plugins_dir]) {
        fsutil::fsync_dir(dir).map_err(|e| StoreError::io("fsync directory", dir, e, HINT_DISK))?;
    }
    hit("commit", "after-files-fsynced");

    Generation::write_state(tmp, state)?;
    fsutil::fsync_dir(tmp).map_err(|e| StoreError::io("fsync directory", tmp, e, HINT_DISK))?;
    hit("commit", "after-state-written");
    Ok(())
}

/// Recreates the tree `src` at `dst`: directories 0755, files hard-linked (or
/// copied) with mode 0644. Records what needs an fsync: every directory, and
/// every staged or copied file (carried-over links point at inodes that are
/// durable since their own commit). Anything but regular files and
/// directories is refused (the plan check already refused them; this catches
/// a staging area changed in between).
fn place_tree(
    src: &Path,
    dst: &Path,
    origin: Origin,
    unsynced: &mut Unsynced,
) -> Result<(), StoreError> {
    fsutil::create_dir_with_mode(dst, DIR_MODE)
        .map_err(|e| StoreError::io("create directory", dst, e, HINT_DISK))?;
    let list_err = |e| {
        StoreError::io(
            "list directory",
            src,
            e,
            "the staging area was changed while importing; run the import again",
        )
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(src).map_err(list_err)? {
        entries.push(entry.map_err(list_err)?);
    }
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from)
            .map_err(|e| StoreError::io("read metadata of", &from, e, HINT_DISK))?;
        if meta.is_dir() {
            place_tree(&from, &to, origin, unsynced)?;
        } else if meta.is_file() {
            // A staged inode shared with something outside the store is
            // copied, so fixing its mode cannot touch a file that is not ours.
            let allow_link = origin == Origin::Carried || single_link(&meta);
            let placed = fsutil::link_or_copy(&from, &to, allow_link)
                .map_err(|e| StoreError::io("install file", &to, e, HINT_DISK))?;
            if origin == Origin::Staged || placed == fsutil::Placed::Copied {
                unsynced.files.push(to);
            }
        } else {
            return Err(StoreError::Inconsistent {
                path: from,
                expected: "a regular file or directory".into(),
                found: format!("{:?}", meta.file_type()),
                hint: "the staging area was changed while importing; run the import again".into(),
            });
        }
    }
    unsynced.dirs.push(dst.to_path_buf());
    Ok(())
}

/// True if the file has no other name (a staged file linked from somewhere
/// else must not be linked into the store).
#[cfg(unix)]
fn single_link(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.nlink() == 1
}

/// Stable Rust does not give the link count on Windows, so staged files are
/// always copied there (slower, never wrong).
#[cfg(windows)]
fn single_link(_meta: &std::fs::Metadata) -> bool {
    false
}
