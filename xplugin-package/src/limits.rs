//! Bounds on what an untrusted package may make us read, write and hold.
//!
//! Every bound is checked against the sizes the archive *declares* before a
//! byte is decompressed, and the decompressor is then held to those declared
//! sizes, so a lying archive is caught as soon as it produces one byte more.

use serde::Deserialize;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Import limits. The host configuration file sets them (all fields optional,
/// in bytes where they are sizes); [`Limits::default`] is sane for a teach
/// pendant with a few GiB of flash.
///
/// Disk used in the staging directory at the peak of an import is at most
/// `max_package_bytes` (one spooled inner zip at a time) plus
/// `max_total_uncompressed` (the unpacked files).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Size of the package file itself, and of each inner `client.zip` /
    /// `controller.zip` once spooled. Default 2 GiB.
    pub max_package_bytes: u64,
    /// Entries in one archive (the outer one and each inner one, counted
    /// separately; directories and ignored litter count). Default 4096.
    pub max_entries: u64,
    /// Sum of the declared sizes of all files unpacked, both sides together.
    /// Default 2 GiB.
    pub max_total_uncompressed: u64,
    /// Declared size of one entry. Default 1 GiB.
    pub max_entry_uncompressed: u64,
    /// Largest allowed uncompressed/compressed size ratio of one entry.
    /// Default 200 (ordinary libraries and text compress 2–20 times).
    pub max_ratio: u64,
    /// Entries smaller than this are exempt from the ratio check: a small file
    /// of zeros compresses very well and cannot hurt. Default 1 MiB.
    pub ratio_check_min_bytes: u64,
    /// Size of any `*.json` entry (manifests are parsed in memory). Default 1 MiB.
    pub max_json_bytes: u64,
    /// Length in bytes of an entry name (the whole path inside its archive).
    /// Default 255.
    pub max_name_len: u64,
    /// Path components of an entry name (`plugindemo/res/icon.png` is 3).
    /// Default 16.
    pub max_depth: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_package_bytes: 2 * GIB,
            max_entries: 4096,
            max_total_uncompressed: 2 * GIB,
            max_entry_uncompressed: GIB,
            max_ratio: 200,
            ratio_check_min_bytes: MIB,
            max_json_bytes: MIB,
            max_name_len: 255,
            max_depth: 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_may_set_some_limits_and_keep_the_rest() {
        let limits: Limits =
            serde_json::from_str(r#"{"max_entries": 10, "max_ratio": 50}"#).unwrap();
        assert_eq!(limits.max_entries, 10);
        assert_eq!(limits.max_ratio, 50);
        assert_eq!(limits.max_json_bytes, Limits::default().max_json_bytes);
    }

    #[test]
    fn unknown_limit_names_are_refused() {
        let err = serde_json::from_str::<Limits>(r#"{"max_entrys": 10}"#).unwrap_err();
        assert!(err.to_string().contains("max_entrys"));
    }
}
