//! A host's link identity: its static key pair, kept in
//! `ROOT/state/identity/identity.json` (mode 0600, directory 0700), made on
//! first use. The file records the device id it was made on: a host whose
//! device id changed (a disk image copied to another robot) makes a new
//! identity instead of using the copied key, so two robots never share one.

use crate::error::LinkError;
use crate::key::{hex, unhex, PublicKey};
use crate::store_files::{create_json, read_json, write_json};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The identity directory inside an install root.
pub const IDENTITY_DIR: &str = "state/identity";
/// The key pair's file in it.
pub const IDENTITY_FILE: &str = "identity.json";

/// The Noise protocol the link speaks (see docs/link.md for why).
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// Where a root keeps its identity and its paired peers.
pub fn identity_dir(root: &Path) -> PathBuf {
    root.join(IDENTITY_DIR)
}

#[derive(Serialize, Deserialize)]
struct IdentityFile {
    format: u32,
    public: String,
    private: String,
    #[serde(default)]
    device_id: Option<String>,
    created_unix: u64,
}

/// This host's key pair.
pub struct Identity {
    /// The public key peers pin.
    pub public: PublicKey,
    private: Vec<u8>,
    /// When it was made (unix seconds).
    pub created_unix: u64,
    /// The device id it was made on, if that was known.
    pub device_id: Option<String>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("Identity")
            .field("public", &self.public)
            .field("created_unix", &self.created_unix)
            .finish()
    }
}

/// Why an identity was made now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Made {
    /// The existing one is used.
    Existing,
    /// None existed: first use.
    FirstUse,
    /// The stored one was made on another device (the disk was cloned).
    DeviceChanged {
        /// The device id in the copied file.
        was: String,
        /// This device's id.
        now: String,
    },
    /// `identity --rotate`.
    Rotated {
        /// The key it replaces.
        previous: PublicKey,
    },
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Identity {
    /// The private key, for the handshake.
    pub(crate) fn private(&self) -> &[u8] {
        &self.private
    }

    /// Loads the identity of install root `root`, making one on first use,
    /// and a new one when the stored one was made on another device
    /// (`device_id` is this device's, when known).
    ///
    /// # Errors
    /// [`LinkError::Identity`] when the file cannot be read, parsed or
    /// written, or is readable by others.
    pub fn load_or_create(
        root: &Path,
        device_id: Option<&str>,
    ) -> Result<(Identity, Made), LinkError> {
        let path = identity_dir(root).join(IDENTITY_FILE);
        match Identity::load(&path)? {
            Some(id) => match (&id.device_id, device_id) {
                (Some(was), Some(now)) if was != now => {
                    let made = Made::DeviceChanged {
                        was: was.clone(),
                        now: now.to_string(),
                    };
                    log::warn!(
                        "link identity {} was made on device {was}, this is device {now} (a cloned disk?): making a new identity; its peers must pair again",
                        id.public.fingerprint()
                    );
                    Ok((Identity::replace(root, device_id)?, made))
                }
                _ => Ok((id, Made::Existing)),
            },
            // Another process (the daemon starting while an operator runs
            // `identity`) may make it at the same moment: the first one
            // written is the identity, and every process reports that one.
            None => match Identity::create_if_absent(root, device_id)? {
                Some(id) => Ok((id, Made::FirstUse)),
                None => match Identity::load(&path)? {
                    Some(id) => Ok((id, Made::Existing)),
                    None => Err(LinkError::Identity {
                        path,
                        why: "made by another process and removed again at once".into(),
                    }),
                },
            },
        }
    }

    /// Replaces the identity of `root` with a new key pair.
    ///
    /// # Errors
    /// As [`Identity::load_or_create`].
    pub fn rotate(root: &Path, device_id: Option<&str>) -> Result<(Identity, Made), LinkError> {
        let path = identity_dir(root).join(IDENTITY_FILE);
        let previous = Identity::load(&path)?.map(|i| i.public);
        let id = Identity::replace(root, device_id)?;
        let made = match previous {
            Some(previous) => Made::Rotated { previous },
            None => Made::FirstUse,
        };
        Ok((id, made))
    }

    fn load(path: &Path) -> Result<Option<Identity>, LinkError> {
        let ident = |why: String| LinkError::Identity {
            path: path.to_path_buf(),
            why,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ident(e.to_string())),
        };
        only_owner_reads(path, &meta).map_err(ident)?;
        let file: IdentityFile = read_json(path).map_err(ident)?;
        let public = PublicKey::parse(&file.public).map_err(|e| ident(e.to_string()))?;
        let private = unhex(&file.private)
            .filter(|p| p.len() == crate::key::KEY_LEN)
            .ok_or_else(|| ident("the private key is not 32 bytes of hex".into()))?;
        Ok(Some(Identity {
            public,
            private,
            created_unix: file.created_unix,
            device_id: file.device_id,
        }))
    }

    /// A new key pair for `root`, and the file that stores it.
    fn generate(
        root: &Path,
        device_id: Option<&str>,
    ) -> Result<(Identity, IdentityFile, PathBuf), LinkError> {
        let path = identity_dir(root).join(IDENTITY_FILE);
        let ident = |why: String| LinkError::Identity {
            path: path.clone(),
            why,
        };
        let keypair = crate::noise::generate_keypair().map_err(ident)?;
        let public =
            PublicKey::from_slice(&keypair.public).ok_or_else(|| ident("bad key length".into()))?;
        let id = Identity {
            public,
            private: keypair.private,
            created_unix: now_unix(),
            device_id: device_id.map(str::to_string),
        };
        let file = IdentityFile {
            format: 1,
            public: public.to_string(),
            private: hex(&id.private),
            device_id: id.device_id.clone(),
            created_unix: id.created_unix,
        };
        Ok((id, file, path))
    }

    /// A new identity, written over the one there (rotation, a cloned disk).
    fn replace(root: &Path, device_id: Option<&str>) -> Result<Identity, LinkError> {
        let (id, file, path) = Identity::generate(root, device_id)?;
        write_json(&path, &file, 0o600).map_err(|why| LinkError::Identity { path, why })?;
        log::info!("link identity {} made", id.public.fingerprint());
        Ok(id)
    }

    /// A new identity where there is none; `None` when another process
    /// wrote one meanwhile.
    fn create_if_absent(
        root: &Path,
        device_id: Option<&str>,
    ) -> Result<Option<Identity>, LinkError> {
        let (id, file, path) = Identity::generate(root, device_id)?;
        if !create_json(&path, &file, 0o600).map_err(|why| LinkError::Identity { path, why })? {
            return Ok(None);
        }
        log::info!("link identity {} made", id.public.fingerprint());
        Ok(Some(id))
    }
}

/// Whether only the owner may read the key file: on Unix its mode gives
/// group and others nothing (0600).
#[cfg(unix)]
fn only_owner_reads(_path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "the private key is readable by others (mode {mode:o}); it must be 0600"
        ));
    }
    Ok(())
}

/// Whether only the owner may read the key file: on Windows its DACL
/// grants access to no one but this user, SYSTEM and Administrators
/// (written owner-only, see `xplugin_store::private_acl`).
#[cfg(windows)]
fn only_owner_reads(path: &Path, _meta: &std::fs::Metadata) -> Result<(), String> {
    xplugin_store::private_acl::check_private(path).map_err(|why| {
        format!("the private key may be read by others: {why}; remove the file (a new identity is made, peers pair again) or restrict its ACL to this user")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix: the file modes (Windows' owner-only ACLs are checked by
    /// xplugin-store's `private_acl` tests).
    #[cfg(unix)]
    #[test]
    fn identity_is_made_once_kept_and_remade_on_another_device() {
        let dir = tempfile::tempdir().unwrap();
        let (a, made) = Identity::load_or_create(dir.path(), Some("dev-1")).unwrap();
        assert_eq!(made, Made::FirstUse);
        let path = identity_dir(dir.path()).join(IDENTITY_FILE);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, made) = Identity::load_or_create(dir.path(), Some("dev-1")).unwrap();
        assert_eq!((b.public, made), (a.public, Made::Existing));
        let (c, made) = Identity::load_or_create(dir.path(), Some("dev-2")).unwrap();
        assert_ne!(c.public, a.public);
        assert!(matches!(made, Made::DeviceChanged { .. }), "{made:?}");
        let (d, made) = Identity::rotate(dir.path(), Some("dev-2")).unwrap();
        assert_ne!(d.public, c.public);
        assert_eq!(made, Made::Rotated { previous: c.public });
        // Readable by others: refused, not used.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Identity::load_or_create(dir.path(), Some("dev-2")).unwrap_err();
        assert!(e.to_string().contains("0600"), "{e}");
    }

    /// The daemon starting while an operator runs `identity`: both make the
    /// identity on first use at once. With one shared temporary file, one
    /// failed ("No such file or directory") or reported a key that was not
    /// the one stored; now exactly one is made and all report it.
    #[test]
    fn identities_made_at_once_agree_on_the_one_stored() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let barrier = std::sync::Barrier::new(8);
            let results: Vec<(PublicKey, Made)> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            let (id, made) = Identity::load_or_create(dir.path(), None).unwrap();
                            (id.public, made)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let (stored, _) = Identity::load_or_create(dir.path(), None).unwrap();
            assert!(results.iter().all(|(k, _)| *k == stored.public));
            let first = results.iter().filter(|(_, m)| *m == Made::FirstUse).count();
            assert_eq!(first, 1, "{results:?}");
            let left: Vec<_> = std::fs::read_dir(identity_dir(dir.path()))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(left, [std::ffi::OsString::from(IDENTITY_FILE)]);
        }
    }
}
