//! Pairing: the keys each side pins. The controller keeps the pendants it
//! authorises, each with a role (`ROOT/state/identity/pendants.json`); the
//! pendant keeps the controllers it talks to, each with the address where
//! to find it (`ROOT/state/identity/controllers.json`). Peers are identified
//! by key; an address is only where to look for one. Both files are read
//! at every connection, so pairing takes effect without a restart.

use crate::error::LinkError;
use crate::identity::identity_dir;
use crate::key::PublicKey;
use crate::store_files::{read_json, write_json};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The controller's list of authorised pendants.
pub const PENDANTS_FILE: &str = "pendants.json";
/// The pendant's list of paired controllers.
pub const CONTROLLERS_FILE: &str = "controllers.json";

/// What a paired pendant may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Only look: hello, status, outcome.
    Status,
    /// Also upload, prepare, commit, abort (the default).
    #[default]
    Install,
}

impl Role {
    /// `status` or `install`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Status => "status",
            Role::Install => "install",
        }
    }

    /// Parses `status` or `install`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "status" => Some(Role::Status),
            "install" => Some(Role::Install),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One pendant the controller authorises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorisedPendant {
    /// Its public key.
    pub key: PublicKey,
    /// What it may do.
    pub role: Role,
    /// When it was paired (unix seconds).
    pub paired_unix: u64,
}

/// One controller the pendant is paired with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedController {
    /// Where to find it (`ADDR:PORT`).
    pub address: String,
    /// Its public key.
    pub key: PublicKey,
    /// When it was paired (unix seconds).
    pub paired_unix: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PendantsFile {
    pendants: Vec<AuthorisedPendant>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ControllersFile {
    controllers: Vec<PairedController>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn load<T: Default + serde::de::DeserializeOwned>(path: &Path) -> Result<T, LinkError> {
    if !path.exists() {
        return Ok(T::default());
    }
    read_json(path).map_err(|why| LinkError::Identity {
        path: path.to_path_buf(),
        why,
    })
}

fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), LinkError> {
    write_json(path, value, 0o600).map_err(|why| LinkError::Identity {
        path: path.to_path_buf(),
        why,
    })
}

fn pendants_path(root: &Path) -> PathBuf {
    identity_dir(root).join(PENDANTS_FILE)
}

fn controllers_path(root: &Path) -> PathBuf {
    identity_dir(root).join(CONTROLLERS_FILE)
}

/// The pendants controller root `root` authorises.
///
/// # Errors
/// [`LinkError::Identity`] when the file is unreadable.
pub fn pendants(root: &Path) -> Result<Vec<AuthorisedPendant>, LinkError> {
    Ok(load::<PendantsFile>(&pendants_path(root))?.pendants)
}

/// Authorises pendant `key` with `role` (replacing its role if it was
/// paired); returns the role it had before.
///
/// # Errors
/// [`LinkError::Identity`] when the file cannot be read or written.
pub fn pair_pendant(root: &Path, key: PublicKey, role: Role) -> Result<Option<Role>, LinkError> {
    let path = pendants_path(root);
    let mut file: PendantsFile = load(&path)?;
    let before = file.pendants.iter().find(|p| p.key == key).map(|p| p.role);
    file.pendants.retain(|p| p.key != key);
    file.pendants.push(AuthorisedPendant {
        key,
        role,
        paired_unix: now_unix(),
    });
    save(&path, &file)?;
    Ok(before)
}

/// Withdraws pendant `key`; returns what it was.
///
/// # Errors
/// As [`pair_pendant`].
pub fn unpair_pendant(root: &Path, key: PublicKey) -> Result<Option<AuthorisedPendant>, LinkError> {
    let path = pendants_path(root);
    let mut file: PendantsFile = load(&path)?;
    let found = file.pendants.iter().find(|p| p.key == key).cloned();
    if found.is_some() {
        file.pendants.retain(|p| p.key != key);
        save(&path, &file)?;
    }
    Ok(found)
}

/// The controllers pendant root `root` is paired with.
///
/// # Errors
/// [`LinkError::Identity`] when the file is unreadable.
pub fn controllers(root: &Path) -> Result<Vec<PairedController>, LinkError> {
    Ok(load::<ControllersFile>(&controllers_path(root))?.controllers)
}

/// The controller paired at `address` (normalised), if any.
///
/// # Errors
/// As [`controllers`].
pub fn controller_at(root: &Path, address: &str) -> Result<Option<PairedController>, LinkError> {
    Ok(controllers(root)?
        .into_iter()
        .find(|c| c.address == address))
}

/// Pins controller `key` at `address`: the key is what identifies it, so a
/// key paired before at another address moves to this one, and another key
/// paired at this address is replaced. Returns the entries it replaced.
///
/// # Errors
/// As [`pair_pendant`].
pub fn pair_controller(
    root: &Path,
    address: &str,
    key: PublicKey,
) -> Result<Vec<PairedController>, LinkError> {
    let path = controllers_path(root);
    let mut file: ControllersFile = load(&path)?;
    let replaced: Vec<PairedController> = file
        .controllers
        .iter()
        .filter(|c| c.key == key || c.address == address)
        .cloned()
        .collect();
    file.controllers
        .retain(|c| c.key != key && c.address != address);
    file.controllers.push(PairedController {
        address: address.to_string(),
        key,
        paired_unix: now_unix(),
    });
    save(&path, &file)?;
    Ok(replaced)
}

/// Forgets the controller paired at `address`; returns it.
///
/// # Errors
/// As [`pair_pendant`].
pub fn unpair_controller(
    root: &Path,
    address: &str,
) -> Result<Option<PairedController>, LinkError> {
    let path = controllers_path(root);
    let mut file: ControllersFile = load(&path)?;
    let found = file
        .controllers
        .iter()
        .find(|c| c.address == address)
        .cloned();
    if found.is_some() {
        file.controllers.retain(|c| c.address != address);
        save(&path, &file)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_pins_by_key_and_unpairing_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        assert_eq!(pair_pendant(dir.path(), a, Role::Status).unwrap(), None);
        assert_eq!(
            pair_pendant(dir.path(), a, Role::Install).unwrap(),
            Some(Role::Status)
        );
        assert_eq!(pendants(dir.path()).unwrap().len(), 1);
        assert!(unpair_pendant(dir.path(), a).unwrap().is_some());
        assert!(unpair_pendant(dir.path(), a).unwrap().is_none());
        pair_controller(dir.path(), "10.0.0.1:7411", a).unwrap();
        // The same key found at another address moves there.
        let replaced = pair_controller(dir.path(), "10.0.0.2:7411", a).unwrap();
        assert_eq!(replaced.len(), 1);
        assert!(controller_at(dir.path(), "10.0.0.1:7411")
            .unwrap()
            .is_none());
        pair_controller(dir.path(), "10.0.0.2:7411", b).unwrap();
        assert_eq!(
            controller_at(dir.path(), "10.0.0.2:7411")
                .unwrap()
                .map(|c| c.key),
            Some(b)
        );
        assert!(unpair_controller(dir.path(), "10.0.0.2:7411")
            .unwrap()
            .is_some());
        assert!(controllers(dir.path()).unwrap().is_empty());
    }
}
