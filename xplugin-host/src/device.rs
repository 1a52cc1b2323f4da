//! This host's identity facts for license checks: the device id and the
//! trusted vendor keys, from the host configuration.

use crate::config::HostConfig;
use xplugin_license::TrustStore;

/// This device's id as licenses name it, or why it cannot be determined.
///
/// # Errors
/// A message naming the identity source and what to configure.
pub fn device_identity(config: &HostConfig) -> Result<String, String> {
    xplugin_license::device_id(&config.device.source()).map_err(|e| e.to_string())
}

/// The trusted vendor keys from `trusted_keys_dir`, or why there are none.
pub fn trust_store(config: &HostConfig) -> (Option<TrustStore>, Option<String>) {
    match TrustStore::load(&config.trusted_keys_dir) {
        Ok(t) if t.is_empty() => (
            None,
            Some(format!(
                "no *.pub key in {}; install the vendor's public key there",
                config.trusted_keys_dir.display()
            )),
        ),
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(e.to_string())),
    }
}
