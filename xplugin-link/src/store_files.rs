//! The link's small state files (identity, peers, the pendant's journal):
//! JSON, at most [`MAX_STATE_FILE`] bytes, replaced atomically and durably
//! in a directory only this host's user can enter.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// Largest state file read.
pub const MAX_STATE_FILE: u64 = 1 << 20;

/// Reads and parses `path` (at most [`MAX_STATE_FILE`] bytes).
///
/// # Errors
/// The reason as text: unreadable, too large, not the JSON expected.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_STATE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_STATE_FILE {
        return Err(format!("larger than {MAX_STATE_FILE} bytes"));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("not valid: {e}"))
}

/// Writes `value` to `path` atomically and durably with file `mode`,
/// creating its directory (0700) if needed.
///
/// # Errors
/// The reason as text.
pub fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), String> {
    let bytes = json_in_private_dir(path, value)?;
    xplugin_store::replace_file_with_mode(path, &bytes, mode).map_err(|e| e.to_string())
}

/// `value` as the bytes of state file `path`, whose directory (0700) is
/// created if needed.
fn json_in_private_dir<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, String> {
    if let Some(dir) = path.parent() {
        ensure_private_dir(dir)?;
    }
    serde_json::to_vec_pretty(value).map_err(|e| e.to_string())
}

/// Writes `value` to `path` with file `mode`, atomically and durably, only
/// if `path` does not exist yet (creating its directory, 0700, if needed):
/// of several processes making the same file at once, one writes it and
/// the others get `false` and read that one.
///
/// # Errors
/// The reason as text.
pub fn create_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<bool, String> {
    let bytes = json_in_private_dir(path, value)?;
    xplugin_store::create_file_durably(path, &bytes, mode).map_err(|e| e.to_string())
}

/// Creates `dir` (and its parents) with mode 0700 if it is missing.
///
/// # Errors
/// The reason as text.
pub fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The parents as they come (inheriting their ACLs), `dir` itself with an
/// owner-only ACL, Windows' 0700 (`xplugin_store::private_acl`).
#[cfg(windows)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match xplugin_store::private_acl::create_private_dir(dir) {
        // Made meanwhile by another process: as on Unix, it is used as it is.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}
