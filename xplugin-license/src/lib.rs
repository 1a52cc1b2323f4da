//! Signed `.lic` licenses for xplugin packages: the file format, Ed25519
//! signing and strict verification, the device's trust store of vendor
//! keys, device identity and clock plausibility.
//!
//! A loader checks each plugin folder before opening any of its libraries:
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::SystemTime;
//! use xplugin_license::{DeviceIdSource, LicenseChecker, Side};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut licenses = LicenseChecker::open(
//!     Path::new("/etc/xplugin/trusted-keys"),
//!     &DeviceIdSource::default(),              // /etc/machine-id
//!     Path::new("/var/lib/xplugin/state/clock-hwm"),
//!     SystemTime::now(),
//! )?;
//! let version = xplugin_model::Version::parse("1.0.2")?;
//! match licenses.check_plugin_dir(
//!     Path::new("/var/lib/xplugin/plugins/plugindemo"),
//!     "plugindemo",
//!     Side::Controller,
//!     &version,
//! ) {
//!     Ok(license) => println!("licensed, expires {:?}", license.expires()),
//!     Err(refusal) => eprintln!(
//!         "{}",
//!         refusal.to_problems("controller plugin \"plugindemo\"", &licenses.this_device())
//!     ),
//! }
//! licenses.record_clock()?;
//! # Ok(()) }
//! ```
//!
//! Formats and thresholds are documented where they live: [`armor`] (the
//! `.lic` text), [`payload`] (the signed JSON), [`keys`] (key files and the
//! trust store), [`device`] (device ids), [`clock`] (clock checks).
#![deny(missing_docs)]

pub mod armor;
pub mod checker;
pub mod clock;
pub mod coverage;
pub mod device;
pub mod error;
pub mod keys;
pub mod payload;
mod strict_json;
pub mod timestamp;
pub mod verify;

pub use armor::{LICENSE_DOMAIN, MAX_LICENSE_BYTES};
pub use checker::{LicenseChecker, LicenseSetupError};
pub use clock::{ClockError, ClockGuard, ClockStatus};
pub use coverage::{code_kind, is_library_name, CodeKind};
pub use device::{device_id, normalize_device_id, DeviceIdError, DeviceIdSource, ANY_DEVICE};
pub use error::{LicenseError, ThisDevice};
pub use keys::{
    generate_keypair, read_private_key, read_public_key, write_key_files, KeyError, KeyFiles,
    TrustStore, DEFAULT_TRUST_DIR,
};
pub use payload::{new_license_id, LicensePayload, Side, PAYLOAD_FORMAT};
pub use verify::{
    check_files, check_files_with, check_signature, check_signature_with, issue, join_relative,
    lower_hex, read_license_file, reverify, sha256_file, sha256_reader, signer_key, verify,
    verify_files, verify_plugin_dir, verify_plugin_dir_with, verify_with, FileDigests, Rehash,
    VerifiedLicense, VerifyContext, MAX_WALK_DEPTH, MAX_WALK_ENTRIES,
};
