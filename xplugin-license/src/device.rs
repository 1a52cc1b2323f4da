//! Device identity: the id a vendor binds a license to.
//!
//! Derived from `/etc/machine-id` (systemd's per-installation id) or from a
//! serial number the integrator configures, never from a MAC address alone
//! (MACs are changed by software and shared by cloned images). The raw id is
//! hashed with a domain prefix, so the printed device id does not disclose
//! the machine id that other software uses as a secret-ish identifier:
//!
//! `device id = first 16 bytes of SHA-256("xplugin-device-v1\0" + kind + "\0" + value)`
//!
//! shown as 32 lowercase hex digits in four groups of eight
//! (`1a2b3c4d-5e6f7a8b-9c0d1e2f-3a4b5c6d`). Comparisons ignore case and the
//! separators, so a vendor may type the id with or without dashes.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;
use xplugin_model::{Failure, Problem, ProblemCode, Problems};

/// Where the raw identity of this device comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceIdSource {
    /// A systemd machine-id file (32 hex digits), normally `/etc/machine-id`.
    MachineIdFile(PathBuf),
    /// A serial number configured by the integrator (e.g. the robot's
    /// controller serial printed on its label).
    Serial(String),
}

impl Default for DeviceIdSource {
    fn default() -> Self {
        DeviceIdSource::MachineIdFile(PathBuf::from(DEFAULT_MACHINE_ID_FILE))
    }
}

/// The machine-id file used when nothing else is configured.
pub const DEFAULT_MACHINE_ID_FILE: &str = "/etc/machine-id";

/// The device id that stands for "any device" in a license.
pub const ANY_DEVICE: &str = "*";

/// Why this device's id cannot be determined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceIdError {
    /// The machine-id file cannot be read.
    #[error("cannot read the machine id file {path}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The machine-id file does not hold a machine id.
    #[error("the machine id file {path} does not hold a machine id (expected 32 hex digits, found {found})")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// A description of what was found (never the content itself).
        found: String,
    },
    /// The configured serial is empty or unusable.
    #[error("the configured device serial number {found} cannot be used: {reason}")]
    BadSerial {
        /// The serial as configured (quoted).
        found: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl DeviceIdError {
    /// The problem code.
    pub fn code(&self) -> ProblemCode {
        match self {
            DeviceIdError::Unreadable { .. } => ProblemCode::DeviceIdUnreadable,
            DeviceIdError::Malformed { .. } => ProblemCode::DeviceIdMalformed,
            DeviceIdError::BadSerial { .. } => ProblemCode::DeviceBadSerial,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            DeviceIdError::Unreadable { .. } => "check that the file exists (systemd creates it: `systemd-machine-id-setup`), or configure a serial number as the device identity",
            DeviceIdError::Malformed { .. } => "regenerate it with `systemd-machine-id-setup`, or configure a serial number as the device identity",
            DeviceIdError::BadSerial { .. } => "set a serial of 1 to 128 printable characters in the configuration",
        }
    }
}

impl Failure for DeviceIdError {
    fn problems(&self) -> Problems {
        Problems(vec![Problem::from_error(
            self.code(),
            "device id",
            self,
            self.hint(),
        )])
    }
}

/// This device's id from `source`.
///
/// # Errors
///
/// [`DeviceIdError`] when the machine-id file is unreadable or malformed,
/// or the serial is empty, too long or has control characters.
pub fn device_id(source: &DeviceIdSource) -> Result<String, DeviceIdError> {
    match source {
        DeviceIdSource::MachineIdFile(path) => {
            let file = std::fs::File::open(path).map_err(|source| DeviceIdError::Unreadable {
                path: path.clone(),
                source,
            })?;
            // A machine id is 33 bytes with its newline; read a little more
            // than that so an oversized file is reported, not loaded.
            let mut raw = Vec::with_capacity(64);
            file.take(256)
                .read_to_end(&mut raw)
                .map_err(|source| DeviceIdError::Unreadable {
                    path: path.clone(),
                    source,
                })?;
            let text = String::from_utf8_lossy(&raw);
            let id = text.trim();
            if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                let found = if id.is_empty() {
                    "an empty file".to_string()
                } else if id == "uninitialized" {
                    "\"uninitialized\"".to_string()
                } else {
                    format!("{} characters", id.chars().count())
                };
                return Err(DeviceIdError::Malformed {
                    path: path.clone(),
                    found,
                });
            }
            Ok(derive("machine-id", &id.to_ascii_lowercase()))
        }
        DeviceIdSource::Serial(serial) => {
            let s = serial.trim();
            let reason = if s.is_empty() {
                Some("it is empty")
            } else if s.chars().count() > 128 {
                Some("it is longer than 128 characters")
            } else if s.chars().any(char::is_control) {
                Some("it contains control characters")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(DeviceIdError::BadSerial {
                    found: format!("{serial:?}"),
                    reason: reason.to_string(),
                });
            }
            Ok(derive("serial", s))
        }
    }
}

fn derive(kind: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"xplugin-device-v1\0");
    h.update(kind.as_bytes());
    h.update(b"\0");
    h.update(value.as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(35);
    for (i, b) in digest.iter().take(16).enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The canonical grouped form of a device id typed by a person (any case,
/// with or without `-`, `:` or spaces), or `None` if it is not 32 hex digits.
/// [`ANY_DEVICE`] is returned as is.
pub fn normalize_device_id(text: &str) -> Option<String> {
    if text.trim() == ANY_DEVICE {
        return Some(ANY_DEVICE.to_string());
    }
    let digits = device_digits(text)?;
    let mut out = String::with_capacity(35);
    for (i, d) in digits.iter().enumerate() {
        if i > 0 && i % 8 == 0 {
            out.push('-');
        }
        out.push(char::from(*d));
    }
    Some(out)
}

/// The 32 hex digits of a device id, lower-case, with the separators
/// (`-`, `:`, space) left out; `None` unless there are exactly 32 digits
/// and nothing else. No allocation: a boot compares each license's
/// devices with this one.
fn device_digits(text: &str) -> Option<[u8; 32]> {
    let mut digits = [0u8; 32];
    let mut n = 0;
    for b in text.trim().bytes() {
        if matches!(b, b'-' | b':' | b' ') {
            continue;
        }
        if !b.is_ascii_hexdigit() || n == digits.len() {
            return None;
        }
        digits[n] = b.to_ascii_lowercase();
        n += 1;
    }
    (n == digits.len()).then_some(digits)
}

/// True when `licensed` (an entry of a license's device list) covers the
/// device `this`.
pub fn device_matches(licensed: &str, this: &str) -> bool {
    if licensed.trim() == ANY_DEVICE {
        return true;
    }
    match (device_digits(licensed), device_digits(this)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_is_hashed_and_grouped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("machine-id");
        let raw = "0123456789abcdef0123456789abcdef";
        std::fs::write(&path, format!("{raw}\n")).expect("write");
        let id = device_id(&DeviceIdSource::MachineIdFile(path.clone())).expect("device id");
        assert_eq!(id.len(), 35);
        assert_eq!(id.matches('-').count(), 3);
        assert!(!id.replace('-', "").contains(raw));
        // Upper case machine ids give the same device id.
        std::fs::write(&path, raw.to_uppercase()).expect("write");
        let again = device_id(&DeviceIdSource::MachineIdFile(path.clone())).expect("device id");
        assert_eq!(id, again);
        // A serial with the same text is a different identity.
        let serial = device_id(&DeviceIdSource::Serial(raw.into())).expect("device id");
        assert_ne!(id, serial);
        assert!(device_matches(&id.to_uppercase().replace('-', ""), &id));
        assert!(device_matches("*", &id));
        assert!(!device_matches(&serial, &id));
    }

    #[test]
    fn refuses_bad_sources() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("machine-id");
        std::fs::write(&path, "uninitialized\n").expect("write");
        let err = device_id(&DeviceIdSource::MachineIdFile(path.clone()));
        assert!(matches!(err, Err(DeviceIdError::Malformed { .. })));
        let missing = device_id(&DeviceIdSource::MachineIdFile(dir.path().join("nope")));
        assert!(matches!(missing, Err(DeviceIdError::Unreadable { .. })));
        assert!(matches!(
            device_id(&DeviceIdSource::Serial("  ".into())),
            Err(DeviceIdError::BadSerial { .. })
        ));
    }
}
