//! Why a license is refused, phrased for a support engineer: each message
//! names the plugin and says what the license says; [`LicenseError::hint`]
//! says what to do, [`LicenseError::code`] which problem it is, and
//! [`LicenseError::to_problems`] adds what this device is (its id and its
//! clock) to every reason that does not already show them, as the
//! specification asks of every license refusal.

use crate::payload::Side;
use crate::timestamp::{format_rfc3339, unix_seconds};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use xplugin_model::{error_chain, Failure, Problem, ProblemCode, Problems};

fn t(secs: &u64) -> String {
    format_rfc3339(*secs)
}

fn ids(list: &[String]) -> String {
    if list.is_empty() {
        "(none)".to_string()
    } else {
        list.join(", ")
    }
}

fn trusted(known: &[String], dir: &Option<PathBuf>) -> String {
    let place = dir
        .as_ref()
        .map(|d| format!(" in {}", d.display()))
        .unwrap_or_default();
    if known.is_empty() {
        format!("this device trusts no vendor key{place}")
    } else {
        format!("keys trusted{place}: {}", known.join(", "))
    }
}

fn install_place(dir: &Option<PathBuf>) -> String {
    dir.as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "the trust-store directory".to_string())
}

fn prefix(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

fn far_note(far: &bool) -> &'static str {
    if *far {
        "; that clock is more than 10 years after the license was issued, so it is probably wrong"
    } else {
        ""
    }
}

/// The file name of a license file: the folder it lies in may be a staging
/// folder that is gone once the command returns, so messages name the file.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn list(errors: &[LicenseError]) -> String {
    let mut out = String::new();
    for e in errors {
        let _ = write!(out, "\n- {}", error_chain(e).replace('\n', "\n  "));
    }
    out
}

/// This device as license refusals show it: its id and its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThisDevice<'a> {
    /// This device's id (what licenses are bound to).
    pub id: &'a str,
    /// This device's clock at the check.
    pub now: SystemTime,
}

/// Why a license does not allow a plugin to be installed or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LicenseError {
    /// The `.lic` file cannot be read (missing, permissions).
    #[error(
        "plugin \"{plugin}\": cannot read its license file {}",
        file_name(path)
    )]
    Unreadable {
        /// The plugin.
        plugin: String,
        /// The license file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `.lic` file is empty (or only white space).
    #[error("plugin \"{plugin}\": its license file {} is empty ({size} bytes{})", file_name(path), if *size > 0 { ", all white space" } else { "" })]
    Empty {
        /// The plugin.
        plugin: String,
        /// The license file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// The license text is larger than any license this format produces.
    #[error("license of plugin \"{plugin}\" is {size} bytes, more than the {limit}-byte limit of a .lic file: it is not an xplugin license")]
    Oversized {
        /// The plugin.
        plugin: String,
        /// The size found.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The text is not a license (armor lines, base64, JSON).
    #[error("license of plugin \"{plugin}\" is malformed: {reason}")]
    Malformed {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        reason: String,
    },
    /// Signed with a key this device does not trust.
    #[error("license of plugin \"{plugin}\" is signed with key \"{key_id}\", which this device does not trust ({})", trusted(known, trust_dir))]
    UnknownKey {
        /// The plugin.
        plugin: String,
        /// The key id the license names.
        key_id: String,
        /// The trusted key ids.
        known: Vec<String>,
        /// The trust-store directory, if loaded from one.
        trust_dir: Option<PathBuf>,
    },
    /// The signature has fewer (or more) than 64 bytes.
    #[error("license of plugin \"{plugin}\" has a truncated signature: {found} bytes, an Ed25519 signature has 64")]
    TruncatedSignature {
        /// The plugin.
        plugin: String,
        /// The key id the license names.
        key_id: String,
        /// Signature bytes found.
        found: usize,
    },
    /// The signature does not verify with the trusted key.
    #[error("license of plugin \"{plugin}\" does not verify against the trusted key \"{key_id}\": the license was altered after signing, or was signed by a different key under that name")]
    BadSignature {
        /// The plugin.
        plugin: String,
        /// The key id the license names.
        key_id: String,
    },
    /// The signed JSON repeats a key, so it could be read two ways.
    #[error("license of plugin \"{plugin}\" is refused: its signed content repeats the key {key}, so it can be read two ways")]
    DuplicateKey {
        /// The plugin.
        plugin: String,
        /// The repeated key, with its path.
        key: String,
    },
    /// Signed, but its content breaks the format.
    #[error("license of plugin \"{plugin}\" is signed but its content is invalid: {}", problems.join("; "))]
    InvalidPayload {
        /// The plugin.
        plugin: String,
        /// Each problem.
        problems: Vec<String>,
    },
    /// The license is for another plugin.
    #[error(
        "the license in plugin \"{plugin}\" is for plugin \"{licensed}\", not for \"{plugin}\""
    )]
    WrongPlugin {
        /// The plugin being checked.
        plugin: String,
        /// The plugin the license names.
        licensed: String,
    },
    /// The license is for the other side (client vs controller).
    #[error("license of plugin \"{plugin}\" is for a {licensed} plugin, but the plugin is installed as a {expected} plugin")]
    WrongSide {
        /// The plugin.
        plugin: String,
        /// The side the license names.
        licensed: Side,
        /// The side being installed or loaded.
        expected: Side,
    },
    /// The plugin's version is outside the licensed range.
    #[error("license of plugin \"{plugin}\" covers versions \"{versions}\", but the plugin is version {plugin_version}")]
    VersionOutOfRange {
        /// The plugin.
        plugin: String,
        /// The licensed range.
        versions: String,
        /// The plugin's version.
        plugin_version: String,
    },
    /// The license is bound to other devices.
    #[error(
        "license of plugin \"{plugin}\" is bound to device(s) {}; this device is {device_id}",
        ids(licensed)
    )]
    WrongDevice {
        /// The plugin.
        plugin: String,
        /// The device ids the license names.
        licensed: Vec<String>,
        /// This device's id.
        device_id: String,
    },
    /// The expiry has passed.
    #[error("license of plugin \"{plugin}\" expired on {}; this device's clock says {} (device {device_id}){}", t(expires), t(now), far_note(far_future))]
    Expired {
        /// The plugin.
        plugin: String,
        /// Expiry, unix seconds.
        expires: u64,
        /// This device's clock, unix seconds.
        now: u64,
        /// This device's id.
        device_id: String,
        /// The clock is implausibly far ahead.
        far_future: bool,
    },
    /// The not-before time has not come yet.
    #[error("license of plugin \"{plugin}\" is valid only from {}; this device's clock says {} (device {device_id})", t(not_before), t(now))]
    NotYetValid {
        /// The plugin.
        plugin: String,
        /// Not-before, unix seconds.
        not_before: u64,
        /// This device's clock, unix seconds.
        now: u64,
        /// This device's id.
        device_id: String,
    },
    /// The clock is before the issue time of the license.
    #[error("license of plugin \"{plugin}\" was issued at {}, but this device's clock says {} (device {device_id}): the system clock is behind: set it", t(issued_at), t(now))]
    ClockBehindIssue {
        /// The plugin.
        plugin: String,
        /// Issue time, unix seconds.
        issued_at: u64,
        /// This device's clock, unix seconds.
        now: u64,
        /// This device's id.
        device_id: String,
    },
    /// The clock is far behind the latest time this device has seen.
    #[error("license of plugin \"{plugin}\" has a time limit, and this device's clock says {}, more than 1 day before the latest time this device has already seen ({}) (device {device_id}): the clock was set back", t(now), t(high_water))]
    ClockBehindHighWater {
        /// The plugin.
        plugin: String,
        /// The high-water mark, unix seconds.
        high_water: u64,
        /// This device's clock, unix seconds.
        now: u64,
        /// This device's id.
        device_id: String,
    },
    /// The clock is implausibly far in the future.
    #[error("license of plugin \"{plugin}\" has a time limit, and this device's clock says {}, more than 10 years after {reference_kind} ({}) (device {device_id}): the clock is suspicious", t(now), t(reference))]
    ClockFarFuture {
        /// The plugin.
        plugin: String,
        /// This device's clock, unix seconds.
        now: u64,
        /// The time compared against, unix seconds.
        reference: u64,
        /// "the license's issue time" or "the latest time this device has seen".
        reference_kind: &'static str,
        /// This device's id.
        device_id: String,
    },
    /// A licensed file is missing from the plugin folder.
    #[error(
        "plugin \"{plugin}\": its license covers {file}, which is missing from the plugin folder"
    )]
    FileMissing {
        /// The plugin.
        plugin: String,
        /// The file, relative to the plugin folder.
        file: String,
        /// The plugin folder.
        dir: PathBuf,
    },
    /// A licensed file's content differs from what was licensed.
    #[error("plugin \"{plugin}\": {file} does not match its license (licensed SHA-256 {}..., found {}...): the file was changed or swapped", prefix(expected), prefix(actual))]
    FileHashMismatch {
        /// The plugin.
        plugin: String,
        /// The file, relative to the plugin folder.
        file: String,
        /// The licensed hash (hex).
        expected: String,
        /// The hash found (hex).
        actual: String,
    },
    /// A library in the plugin folder that the license does not cover.
    #[error("plugin \"{plugin}\": {file} is {what} but is not covered by its license")]
    FileNotLicensed {
        /// The plugin.
        plugin: String,
        /// The file, relative to the plugin folder.
        file: String,
        /// Why it must be covered: "a library (by its name)", "an ELF
        /// file", "a PE file"...
        what: String,
    },
    /// A licensed file is not a regular file or cannot be read.
    #[error("plugin \"{plugin}\": cannot check {file}: {reason}")]
    FileUnreadable {
        /// The plugin.
        plugin: String,
        /// The file, relative to the plugin folder (`.` for the folder).
        file: String,
        /// What went wrong, without the I/O error (that is the source).
        reason: String,
        /// The I/O error, if any.
        #[source]
        source: Option<std::io::Error>,
    },
    /// Several reasons at once, all listed.
    #[error("license of plugin \"{plugin}\" is refused for {} reasons:{}", errors.len(), list(errors))]
    Multiple {
        /// The plugin.
        plugin: String,
        /// Each reason.
        errors: Vec<LicenseError>,
    },
}

impl LicenseError {
    /// The problem code of this reason ([`LicenseError::Multiple`] has the
    /// code of its first reason; [`LicenseError::to_problems`] gives each
    /// reason its own).
    pub fn code(&self) -> ProblemCode {
        match self {
            LicenseError::Unreadable { .. } => ProblemCode::LicenseUnreadable,
            LicenseError::Empty { .. } => ProblemCode::LicenseEmpty,
            LicenseError::Oversized { .. } => ProblemCode::LicenseOversized,
            LicenseError::Malformed { .. } => ProblemCode::LicenseMalformed,
            LicenseError::UnknownKey { .. } => ProblemCode::LicenseUnknownKey,
            LicenseError::TruncatedSignature { .. } => ProblemCode::LicenseTruncatedSignature,
            LicenseError::BadSignature { .. } => ProblemCode::LicenseBadSignature,
            LicenseError::DuplicateKey { .. } => ProblemCode::LicenseDuplicateJsonKey,
            LicenseError::InvalidPayload { .. } => ProblemCode::LicenseInvalidPayload,
            LicenseError::WrongPlugin { .. } => ProblemCode::LicensePluginMismatch,
            LicenseError::WrongSide { .. } => ProblemCode::LicenseSideMismatch,
            LicenseError::VersionOutOfRange { .. } => ProblemCode::LicenseVersionMismatch,
            LicenseError::WrongDevice { .. } => ProblemCode::LicenseDeviceMismatch,
            LicenseError::Expired { .. } => ProblemCode::LicenseExpired,
            LicenseError::NotYetValid { .. } => ProblemCode::LicenseNotYetValid,
            LicenseError::ClockBehindIssue { .. } => ProblemCode::LicenseClockBehindIssue,
            LicenseError::ClockBehindHighWater { .. } => ProblemCode::LicenseClockSetBack,
            LicenseError::ClockFarFuture { .. } => ProblemCode::LicenseClockFarFuture,
            LicenseError::FileMissing { .. } => ProblemCode::LicenseFileMissing,
            LicenseError::FileHashMismatch { .. } => ProblemCode::LicenseFileHashMismatch,
            LicenseError::FileNotLicensed { .. } => ProblemCode::LicenseFileNotCovered,
            LicenseError::FileUnreadable { .. } => ProblemCode::LicenseFileUnreadable,
            LicenseError::Multiple { errors, .. } => errors
                .first()
                .map_or(ProblemCode::LicenseInvalidPayload, LicenseError::code),
        }
    }

    /// What to do about it ([`LicenseError::Multiple`]: see each reason).
    pub fn hint(&self) -> String {
        match self {
            LicenseError::Unreadable { .. } => "every plugin folder needs the NAME.lic file from the vendor; copy it from the vendor's package".into(),
            LicenseError::Empty { .. } => "the .lic file was not copied completely; copy it again from the vendor's package, or ask the vendor for it".into(),
            LicenseError::Oversized { .. } => "ask the vendor for the plugin's .lic file made by xplugin-pack".into(),
            LicenseError::Malformed { .. } => "the .lic file is damaged or not an xplugin license; copy it again from the vendor's package or ask the vendor for a new one".into(),
            LicenseError::UnknownKey { key_id, trust_dir, .. } => format!("if you trust this vendor, install its public key file {key_id}.pub in {}; otherwise ask the vendor for a license signed with a key this device trusts", install_place(trust_dir)),
            LicenseError::TruncatedSignature { .. } => "the .lic file was cut or edited; copy the original file from the vendor's package".into(),
            LicenseError::BadSignature { .. } => "do not use this file; get the original .lic from the vendor".into(),
            LicenseError::DuplicateKey { .. } => "ask the vendor for a license made by xplugin-pack".into(),
            LicenseError::InvalidPayload { .. } => "ask the vendor to issue it again with xplugin-pack".into(),
            LicenseError::WrongPlugin { plugin, .. } => format!("the .lic file belongs to another plugin; ask the vendor for the license of \"{plugin}\""),
            LicenseError::WrongSide { plugin, expected, .. } => format!("ask the vendor for a {expected} license for \"{plugin}\""),
            LicenseError::VersionOutOfRange { plugin_version, .. } => format!("ask the vendor for a license covering version {plugin_version}, or install a version the license covers"),
            LicenseError::WrongDevice { .. } => "send this device id (shown by `xplugin-controller device-id` or `xplugin-client device-id`) to the vendor and ask for a license for it".into(),
            LicenseError::Expired { .. } => "renew the license with the vendor; if the clock is wrong, set it".into(),
            LicenseError::NotYetValid { .. } => "wait until then, or if the clock is wrong, set it".into(),
            LicenseError::ClockBehindIssue { .. } => "set the system clock to the correct time (NTP, or `timedatectl set-time`), then retry".into(),
            LicenseError::ClockBehindHighWater { .. } => "set the system clock to the correct time, then retry; if the clock is right and the recorded time is wrong (the clock was once set ahead), delete the loader's clock high-water mark file (state/clock-hwm under its root)".into(),
            LicenseError::ClockFarFuture { .. } => "set the system clock to the correct time; time-limited licenses are not accepted with this clock".into(),
            LicenseError::FileMissing { .. } | LicenseError::FileUnreadable { .. } => "reinstall the plugin from the vendor's package".into(),
            LicenseError::FileHashMismatch { .. } => "reinstall the plugin from the vendor's original package; a rebuilt plugin needs a new license from the vendor".into(),
            LicenseError::FileNotLicensed { .. } => "remove the file, or have the vendor license the plugin folder as shipped".into(),
            LicenseError::Multiple { .. } => "fix each reason listed".into(),
        }
    }

    /// The plugin the license was checked for.
    pub fn plugin(&self) -> &str {
        match self {
            LicenseError::Unreadable { plugin, .. }
            | LicenseError::Empty { plugin, .. }
            | LicenseError::Oversized { plugin, .. }
            | LicenseError::Malformed { plugin, .. }
            | LicenseError::UnknownKey { plugin, .. }
            | LicenseError::TruncatedSignature { plugin, .. }
            | LicenseError::BadSignature { plugin, .. }
            | LicenseError::DuplicateKey { plugin, .. }
            | LicenseError::InvalidPayload { plugin, .. }
            | LicenseError::WrongPlugin { plugin, .. }
            | LicenseError::WrongSide { plugin, .. }
            | LicenseError::VersionOutOfRange { plugin, .. }
            | LicenseError::WrongDevice { plugin, .. }
            | LicenseError::Expired { plugin, .. }
            | LicenseError::NotYetValid { plugin, .. }
            | LicenseError::ClockBehindIssue { plugin, .. }
            | LicenseError::ClockBehindHighWater { plugin, .. }
            | LicenseError::ClockFarFuture { plugin, .. }
            | LicenseError::FileMissing { plugin, .. }
            | LicenseError::FileHashMismatch { plugin, .. }
            | LicenseError::FileNotLicensed { plugin, .. }
            | LicenseError::FileUnreadable { plugin, .. }
            | LicenseError::Multiple { plugin, .. } => plugin,
        }
    }

    /// What the message already says about this device: `(id, clock)`.
    fn shows_device(&self) -> (bool, bool) {
        match self {
            LicenseError::Expired { .. }
            | LicenseError::NotYetValid { .. }
            | LicenseError::ClockBehindIssue { .. }
            | LicenseError::ClockBehindHighWater { .. }
            | LicenseError::ClockFarFuture { .. } => (true, true),
            LicenseError::WrongDevice { .. } => (true, false),
            _ => (false, false),
        }
    }

    /// The single reasons (the members of [`LicenseError::Multiple`], or
    /// this error itself).
    pub fn causes(&self) -> Vec<&LicenseError> {
        match self {
            LicenseError::Multiple { errors, .. } => {
                errors.iter().flat_map(LicenseError::causes).collect()
            }
            other => vec![other],
        }
    }

    /// Wraps several errors: `None` when empty, the error itself when one,
    /// [`LicenseError::Multiple`] otherwise.
    pub fn combine(plugin: &str, mut errors: Vec<LicenseError>) -> Option<LicenseError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(LicenseError::Multiple {
                plugin: plugin.to_string(),
                errors,
            }),
        }
    }

    /// The reasons as shared [`Problem`]s about `subject` (e.g.
    /// `controller plugin "plugindemo"`), with the field `license`, each with
    /// its own code and hint. Every message shows this device's id and clock
    /// (`device`), added where the reason does not show them itself.
    pub fn to_problems(&self, subject: &str, device: &ThisDevice<'_>) -> Problems {
        self.causes()
            .into_iter()
            .map(|cause| {
                let mut message = error_chain(cause);
                let clock = format_rfc3339(unix_seconds(device.now));
                match cause.shows_device() {
                    (true, true) => {}
                    (true, false) => {
                        let _ = write!(message, " (this device's clock says {clock})");
                    }
                    _ => {
                        let _ = write!(
                            message,
                            " (this device is {}, its clock says {clock})",
                            device.id
                        );
                    }
                }
                Problem::new(cause.code(), subject, message, cause.hint()).with_field("license")
            })
            .collect()
    }
}

/// Without the device facts (tools that check a license text alone): one
/// problem per reason about the plugin.
impl Failure for LicenseError {
    fn problems(&self) -> Problems {
        self.causes()
            .into_iter()
            .map(|cause| {
                let plugin = cause.plugin();
                Problem::from_error(
                    cause.code(),
                    format!("plugin \"{plugin}\""),
                    cause,
                    cause.hint(),
                )
                .with_field("license")
            })
            .collect()
    }
}
