//! Signed `.lic` licenses for xplugin packages: the file format, Ed25519
//! signing and strict verification, the device's trust store of vendor
//! keys, device identity and clock plausibility.
//!
//! A loader checks a plugin folder before opening any of its libraries:
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::SystemTime;
//! use xplugin_license::{device_id, verify_plugin_dir, ClockGuard, DeviceIdSource, Side, TrustStore, VerifyContext};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let trust = TrustStore::load(Path::new("/etc/xplugin/trusted-keys"))?;
//! let device = device_id(&DeviceIdSource::default())?;
//! let mut clock = ClockGuard::load(Path::new("/var/lib/xplugin/state/clock-hwm"))?;
//! let version = xplugin_model::Version::parse("1.0.2")?;
//! let ctx = VerifyContext {
//!     plugin: "plugindemo",
//!     side: Side::Controller,
//!     plugin_version: &version,
//!     device_id: &device,
//!     now: SystemTime::now(),
//!     high_water_mark: clock.high_water_mark(),
//! };
//! let license = verify_plugin_dir(Path::new("/var/lib/xplugin/plugins/plugindemo"), &trust, &ctx)?;
//! clock.record(ctx.now)?;
//! # let _ = license;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod armor;
pub mod clock;
pub mod device;
pub mod error;
pub mod keys;
pub mod payload;
mod strict_json;
pub mod timestamp;
pub mod verify;

pub use armor::{LICENSE_DOMAIN, MAX_LICENSE_BYTES};
pub use clock::{ClockError, ClockGuard, ClockStatus};
pub use device::{device_id, normalize_device_id, DeviceIdError, DeviceIdSource, ANY_DEVICE};
pub use error::LicenseError;
pub use keys::{
    generate_keypair, read_private_key, read_public_key, write_key_files, KeyError, KeyFiles,
    TrustStore, DEFAULT_TRUST_DIR,
};
pub use payload::{is_library_name, new_license_id, LicensePayload, Side, PAYLOAD_FORMAT};
pub use verify::{
    check_files, check_signature, issue, read_license_file, sha256_file, verify, verify_files,
    verify_plugin_dir, VerifiedLicense, VerifyContext,
};
