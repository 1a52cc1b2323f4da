//! This host's identity facts for license checks: the device id and the
//! trusted vendor keys, from the host configuration.

use crate::config::HostConfig;
use std::path::PathBuf;
use xplugin_license::{DeviceIdError, KeyError, TrustStore};
use xplugin_model::{Failure, Problem, ProblemCode, Problems};

/// This device's id as licenses name it.
///
/// # Errors
/// [`DeviceIdError`] naming the identity source (its hint says what to
/// configure).
pub fn device_identity(config: &HostConfig) -> Result<String, DeviceIdError> {
    xplugin_license::device_id(&config.device.source())
}

/// Why this device has no usable trust store: no license can verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustStoreError {
    /// The directory holds no `*.pub` key.
    #[error("no *.pub key in {}", dir.display())]
    Empty {
        /// The trusted-keys directory.
        dir: PathBuf,
    },
    /// The directory or a key file in it cannot be used.
    #[error(transparent)]
    Unusable(#[from] KeyError),
}

impl TrustStoreError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            TrustStoreError::Empty { dir } => format!(
                "install the vendor's public key file (KEYID.pub) in {}",
                dir.display()
            ),
            TrustStoreError::Unusable(e) => e.hint(),
        }
    }
}

impl Failure for TrustStoreError {
    fn problems(&self) -> Problems {
        match self {
            TrustStoreError::Empty { dir } => Problems(vec![Problem::new(
                ProblemCode::LicenseNoTrustedKeys,
                dir.display().to_string(),
                self.to_string(),
                self.hint(),
            )]),
            TrustStoreError::Unusable(e) => e.problems(),
        }
    }
}

/// The trusted vendor keys from `trusted_keys_dir`.
///
/// # Errors
/// [`TrustStoreError`] when the directory holds no key or cannot be read.
pub fn trust_store(config: &HostConfig) -> Result<TrustStore, TrustStoreError> {
    let trust = TrustStore::load(&config.trusted_keys_dir)?;
    if trust.is_empty() {
        return Err(TrustStoreError::Empty {
            dir: config.trusted_keys_dir.clone(),
        });
    }
    Ok(trust)
}
