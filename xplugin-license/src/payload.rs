//! The signed payload of a license: a JSON object with exactly these fields.
//!
//! ```json
//! {
//!   "format": 1,
//!   "key_id": "acme-2026",
//!   "license_id": "9f0c...",
//!   "plugin": "plugindemo",
//!   "side": "controller",
//!   "versions": ">=1.0, <2",
//!   "devices": ["1a2b3c4d-5e6f7a8b-9c0d1e2f-3a4b5c6d"],
//!   "issued_at": 1795000000,
//!   "not_before": 1795000000,
//!   "expires": 1826536000,
//!   "features": ["vision"],
//!   "files": {"plugindemo.json": "<sha256 hex>", "plugindemo.so": "<sha256 hex>"}
//! }
//! ```
//!
//! Times are unix seconds (UTC). `not_before` and `expires` are optional; a
//! license without `expires` is perpetual. `devices` is a list of device ids
//! or `["*"]` for any device. `files` maps paths relative to the plugin
//! folder (`/`-separated) to lowercase hex SHA-256; it must cover
//! `PLUGIN.json` and every file of the folder that can hold code
//! ([`crate::coverage`]). Unknown fields are refused: a newer format gets a
//! new `format` number.

use crate::device::{normalize_device_id, ANY_DEVICE};
use crate::keys::validate_key_id;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
pub use xplugin_model::Side;
use xplugin_model::VersionReq;

/// The payload format this crate reads and writes.
pub const PAYLOAD_FORMAT: u32 = 1;

/// The content of a license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicensePayload {
    /// Always [`PAYLOAD_FORMAT`].
    pub format: u32,
    /// The id of the vendor key that signs the license.
    pub key_id: String,
    /// A unique id for support and revocation lists.
    pub license_id: String,
    /// The plugin name (folder name and manifest `name`).
    pub plugin: String,
    /// Client or controller plugin.
    pub side: Side,
    /// The plugin versions covered, in `xplugin_model::version::VersionReq`
    /// syntax (e.g. `>=1.0, <2`).
    pub versions: String,
    /// Device ids (canonical grouped form) or `["*"]` for any device.
    pub devices: Vec<String>,
    /// When the license was issued, unix seconds UTC.
    pub issued_at: u64,
    /// Not valid before this time (unix seconds UTC), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    /// Not valid from this time on (unix seconds UTC); absent = perpetual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// Features the plugin may enable.
    #[serde(default)]
    pub features: Vec<String>,
    /// Relative path -> lowercase hex SHA-256 of the licensed files.
    pub files: BTreeMap<String, String>,
}

impl LicensePayload {
    /// True when the license has neither an expiry nor a not-before time,
    /// so the clock plays no part in verifying it.
    pub fn is_perpetual(&self) -> bool {
        self.expires.is_none() && self.not_before.is_none()
    }

    /// True when the license is bound to any device (`["*"]`).
    pub fn any_device(&self) -> bool {
        self.devices.iter().any(|d| d.trim() == ANY_DEVICE)
    }

    /// Everything wrong with the payload's own content (independent of the
    /// device it is checked on), as sentences. Empty when it is well formed.
    pub fn problems(&self) -> Vec<String> {
        self.problems_given(&VersionReq::parse(&self.versions))
    }

    /// [`LicensePayload::problems`], with `versions` already parsed from
    /// `self.versions` (a boot checks the range twice: here and against the
    /// plugin's version).
    pub(crate) fn problems_given(
        &self,
        versions: &Result<VersionReq, xplugin_model::VersionReqError>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        if self.format != PAYLOAD_FORMAT {
            out.push(format!(
                "\"format\" is {}, this program reads format {PAYLOAD_FORMAT}",
                self.format
            ));
        }
        if let Err(e) = validate_key_id(&self.key_id) {
            out.push(format!("\"key_id\": {e}"));
        }
        if self.license_id.trim().is_empty() {
            out.push("\"license_id\" is empty".to_string());
        }
        if let Err(e) = xplugin_model::check_name(&self.plugin) {
            out.push(format!("\"plugin\": {e}"));
        }
        if let Err(e) = versions {
            out.push(format!("\"versions\": {e}"));
        }
        if self.devices.is_empty() {
            out.push("\"devices\" is empty; use [\"*\"] for any device".to_string());
        }
        if self.any_device() && self.devices.len() > 1 {
            out.push(
                "\"devices\" holds \"*\" and other ids; use either [\"*\"] or a list of ids"
                    .to_string(),
            );
        }
        for d in &self.devices {
            if normalize_device_id(d).is_none() {
                out.push(format!(
                    "\"devices\": \"{d}\" is not a device id (32 hex digits) or \"*\""
                ));
            }
        }
        if let (Some(nb), Some(exp)) = (self.not_before, self.expires) {
            if exp <= nb {
                out.push("\"expires\" is not after \"not_before\"".to_string());
            }
        }
        if let Some(exp) = self.expires {
            if exp <= self.issued_at {
                out.push("\"expires\" is not after \"issued_at\"".to_string());
            }
        }
        // Looked up without spelling the names out: every boot checks the
        // payload of every plugin, and the text is only for a refusal.
        let covers = |ext: &str| {
            self.files
                .keys()
                .any(|f| f.strip_prefix(self.plugin.as_str()) == Some(ext))
        };
        if !covers(".json") {
            out.push(format!(
                "\"files\" does not cover the manifest {}.json",
                self.plugin
            ));
        }
        if !covers(".so") && !covers(".dll") {
            out.push(format!(
                "\"files\" covers neither {0}.so nor {0}.dll",
                self.plugin
            ));
        }
        for (name, hash) in &self.files {
            if let Err(e) = check_relative_path(name) {
                out.push(format!("\"files\": \"{name}\" {e}"));
            }
            if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                out.push(format!(
                    "\"files\": the hash of \"{name}\" is not 64 lowercase hex digits"
                ));
            }
        }
        out
    }
}

/// A new random license id: 32 lowercase hex digits from the operating
/// system's generator.
pub fn new_license_id() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        s.push_str(&format!("{b:02x}"));
        s
    })
}

/// Checks a `/`-separated path relative to a plugin folder.
fn check_relative_path(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 255 {
        return Err("is empty or longer than 255 bytes");
    }
    if name.starts_with('/') || name.contains('\\') || name.contains('\0') || name.contains(':') {
        return Err("is not a relative path inside the plugin folder");
    }
    if name
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("has an empty, '.' or '..' path component");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LicensePayload {
        LicensePayload {
            format: 1,
            key_id: "k".into(),
            license_id: "l1".into(),
            plugin: "demo".into(),
            side: Side::Controller,
            versions: "*".into(),
            devices: vec!["*".into()],
            issued_at: 100,
            not_before: None,
            expires: None,
            features: vec![],
            files: [
                ("demo.json".to_string(), "a".repeat(64)),
                ("demo.so".to_string(), "b".repeat(64)),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn sample_is_well_formed() {
        assert_eq!(sample().problems(), Vec::<String>::new());
        assert!(sample().is_perpetual());
    }

    #[test]
    fn reports_every_problem() {
        let mut p = sample();
        p.format = 2;
        p.devices = vec!["*".into(), "nonsense".into()];
        p.files.remove("demo.json");
        p.files.insert("../evil.so".into(), "C".repeat(64));
        p.expires = Some(50);
        let problems = p.problems();
        assert_eq!(problems.len(), 7, "{problems:#?}");
        assert!(problems.contains(&"\"files\" does not cover the manifest demo.json".to_string()));
    }

    #[test]
    fn the_library_may_be_a_so_or_a_dll_of_the_plugins_name_only() {
        let mut p = sample();
        p.files.remove("demo.so");
        p.files.insert("demo.dll".into(), "b".repeat(64));
        assert_eq!(p.problems(), Vec::<String>::new());
        p.files.remove("demo.dll");
        // Names that only start or end like the plugin's library.
        p.files.insert("demo.so.1".into(), "b".repeat(64));
        p.files.insert("xdemo.so".into(), "b".repeat(64));
        p.files.insert("demo".into(), "b".repeat(64));
        assert_eq!(
            p.problems(),
            ["\"files\" covers neither demo.so nor demo.dll"]
        );
    }
}
