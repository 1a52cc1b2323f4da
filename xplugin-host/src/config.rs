//! Host settings (`--config FILE`): this host's version, where plugins are
//! installed, the trust store, the device identity source, import limits and
//! the development switch `allow_unlicensed`.
//!
//! The file is JSON with `//` and `/* */` comments. Default locations are
//! `/etc/xplugin/controller.json` and `/etc/xplugin/client.json`; a missing
//! default file means built-in defaults, a missing file given with `--config`
//! is an error. Unknown keys are refused (a typo must not silently fall back
//! to a default, e.g. `allow_unlicenced`).
//!
//! ```json
//! {
//!   "host_version": "3.0.2",                       // this HMI / controller version
//!   "root": "/var/lib/xplugin/controller",         // install root
//!   "trusted_keys_dir": "/etc/xplugin/trusted-keys",
//!   "device": { "machine_id_file": "/etc/machine-id" },   // or { "serial": "RC-123" }
//!   "allow_unlicensed": false,                      // development only; logged loudly
//!   "limits": { "max_total_uncompressed": 2147483648 },
//!   "controller_root": "/var/lib/xplugin/controller", // client only: offline mode (--controller-root)
//!   "controller_arch": "aarch64"                      // client only: the controller's CPU, for offline mode
//! }
//! ```

use crate::cycle::OverrunPolicy;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use xplugin_license::DeviceIdSource;
use xplugin_model::{Failure, Problem, ProblemCode, Problems};
use xplugin_package::Limits;

/// Which host a configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostSide {
    /// The robot controller (`xplugin-controller`).
    Controller,
    /// The teach pendant / HMI (`xplugin-client`).
    Client,
}

impl HostSide {
    /// Default configuration file.
    pub fn default_config_path(self) -> &'static Path {
        match self {
            HostSide::Controller => Path::new("/etc/xplugin/controller.json"),
            HostSide::Client => Path::new("/etc/xplugin/client.json"),
        }
    }

    /// Default install root.
    pub fn default_root(self) -> &'static Path {
        match self {
            HostSide::Controller => Path::new("/var/lib/xplugin/controller"),
            HostSide::Client => Path::new("/var/lib/xplugin/client"),
        }
    }

    /// Name of the host version in messages and flags.
    pub fn version_name(self) -> &'static str {
        match self {
            HostSide::Controller => "controller version",
            HostSide::Client => "HMI version",
        }
    }

    /// The command-line flag that sets the host version.
    pub fn version_flag(self) -> &'static str {
        match self {
            HostSide::Controller => "--controller-version",
            HostSide::Client => "--hmi-version",
        }
    }
}

/// How a committed generation reaches the running plugins (`--apply`,
/// config `apply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyPolicy {
    /// Stop the plugins now (reverse order), restart the host, boot the new
    /// set.
    Now,
    /// The same once no plugin holds the host busy (`set_busy`), with a
    /// timeout that reports who held it.
    #[default]
    WhenIdle,
    /// Leave the running set alone; the new set boots at the next start.
    NextBoot,
}

impl ApplyPolicy {
    /// The stable name (`when-idle`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyPolicy::Now => "now",
            ApplyPolicy::WhenIdle => "when-idle",
            ApplyPolicy::NextBoot => "next-boot",
        }
    }

    /// Parses `now`, `when-idle` or `next-boot`.
    pub fn parse(text: &str) -> Option<ApplyPolicy> {
        match text {
            "now" => Some(ApplyPolicy::Now),
            "when-idle" => Some(ApplyPolicy::WhenIdle),
            "next-boot" => Some(ApplyPolicy::NextBoot),
            _ => None,
        }
    }
}

impl std::fmt::Display for ApplyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where this device's identity comes from.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// A systemd machine-id file (default `/etc/machine-id`).
    pub machine_id_file: Option<PathBuf>,
    /// A serial number configured by the integrator; wins over the file.
    pub serial: Option<String>,
}

impl DeviceConfig {
    /// The identity source this configuration names.
    pub fn source(&self) -> DeviceIdSource {
        match (&self.serial, &self.machine_id_file) {
            (Some(s), _) => DeviceIdSource::Serial(s.clone()),
            (None, Some(f)) => DeviceIdSource::MachineIdFile(f.clone()),
            (None, None) => DeviceIdSource::MachineIdFile(PathBuf::from(
                xplugin_license::device::DEFAULT_MACHINE_ID_FILE,
            )),
        }
    }
}

/// The host settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// This host's HMI or controller version.
    pub host_version: Option<String>,
    /// Install root.
    pub root: Option<PathBuf>,
    /// Directory of trusted vendor public keys (`*.pub`).
    pub trusted_keys_dir: PathBuf,
    /// Device identity source.
    pub device: DeviceConfig,
    /// Accept plugins without a valid license. Development only.
    pub allow_unlicensed: bool,
    /// Limits for reading packages.
    pub limits: Limits,
    /// Client only: the local controller root the controller part of a
    /// package is installed into (offline mode, `--controller-root`).
    pub controller_root: Option<PathBuf>,
    /// Controller: the cycle period in microseconds (`--cycle-us`;
    /// default 1000, i.e. 1 kHz).
    pub cycle_us: Option<u64>,
    /// Controller: SCHED_FIFO priority of the cycle thread, 1..=99
    /// (`--rt-priority`); 0 or absent = normal scheduling.
    pub rt_priority: Option<u8>,
    /// Controller: pin the cycle thread to this CPU (`--cpu`).
    pub cpu: Option<usize>,
    /// Controller: what a cycle that ends after the next deadline does
    /// (`skip`, the default, or `catch-up`).
    pub overrun_policy: Option<OverrunPolicy>,
    /// Controller: consecutive steps over budget that take a plugin out of
    /// the cycle (default 3).
    pub overrun_limit: Option<u32>,
    /// Controller: step budget in microseconds of plugins whose manifest
    /// sets no `cycle_budget_us` (default: none).
    pub cycle_budget_us: Option<u64>,
    /// How a boot verifies the installed files: `record` (the default:
    /// unchanged files' digests from the digest record, re-read from the
    /// media in the background after start) or `full` (every byte hashed at
    /// every boot). `--verify` overrides it.
    pub verify: Option<crate::digests::VerifyMode>,
    /// Controller: the daemon's admin socket (`--admin-socket`; default
    /// `/run/xplugin/controller.sock`).
    pub admin_socket: Option<PathBuf>,
    /// Controller: the pendant link's `ADDR:PORT` (`--listen`); no network
    /// port is opened unless this is set.
    pub listen: Option<String>,
    /// How a committed generation is applied (default `when-idle`).
    pub apply: Option<ApplyPolicy>,
    /// Seconds `when-idle` waits for busy plugins before it gives up and
    /// reports who held the controller (default 300).
    pub apply_timeout_s: Option<u64>,
    /// Controller: the user (name or uid) who may change plugins through the
    /// admin socket, besides root and the daemon's own user.
    pub admin_user: Option<String>,
    /// Controller: the group (name or gid) whose members may read the
    /// daemon's status through the admin socket.
    pub admin_group: Option<String>,
    /// Seconds a prepared install transaction waits for its commit or abort
    /// before it is aborted (default 600).
    pub transaction_timeout_s: Option<u64>,
    /// Client only: the controller's CPU architecture (`aarch64`, `arm`,
    /// `x86_64`), what an offline import (`--controller-root`) checks the
    /// controller part's libraries against; default: this computer's.
    /// Online, the controller checks its own part.
    pub controller_arch: Option<String>,
    /// Controller: bytes the pendant link's upload area may hold (default
    /// twice `limits.max_package_bytes`).
    pub upload_quota_bytes: Option<u64>,
    /// Controller: fault containment (quarantine, timeouts of calls into
    /// plugins).
    pub faults: FaultConfig,
}

/// Controller: when a crash quarantines a plugin, and how long each call
/// into a plugin may take before the supervisor calls it hung.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Crashes in `step` within `window_s` that quarantine a plugin (3).
    pub step_crashes: Option<usize>,
    /// Crashes without a plugin to blame within `window_s` that start safe
    /// mode (5).
    pub crash_loop_limit: Option<usize>,
    /// The counting window in seconds (600).
    pub window_s: Option<u64>,
    /// Seconds `init` (and loading the library) may take (30).
    pub init_timeout_s: Option<u64>,
    /// Seconds `start` may take (30).
    pub start_timeout_s: Option<u64>,
    /// Seconds `stop` may take (10).
    pub stop_timeout_s: Option<u64>,
    /// Seconds `destroy` may take (10).
    pub destroy_timeout_s: Option<u64>,
    /// Seconds `reconfigure` may take (10).
    pub reconfigure_timeout_s: Option<u64>,
    /// Milliseconds the cycle may stand still inside one `step` before it
    /// is called hung (default: 20 periods, at least 100 ms).
    pub step_timeout_ms: Option<u64>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            host_version: None,
            root: None,
            trusted_keys_dir: PathBuf::from("/etc/xplugin/trusted-keys"),
            device: DeviceConfig::default(),
            allow_unlicensed: false,
            limits: Limits::default(),
            controller_root: None,
            cycle_us: None,
            rt_priority: None,
            cpu: None,
            overrun_policy: None,
            overrun_limit: None,
            cycle_budget_us: None,
            verify: None,
            admin_socket: None,
            listen: None,
            apply: None,
            apply_timeout_s: None,
            admin_user: None,
            admin_group: None,
            transaction_timeout_s: None,
            faults: FaultConfig::default(),
            controller_arch: None,
            upload_quota_bytes: None,
        }
    }
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("configuration {} is invalid", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ConfigParseError,
    },
}

/// What is wrong with configuration text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigParseError {
    /// Not JSON (comments allowed).
    #[error(transparent)]
    Syntax(#[from] xplugin_model::jsonc::JsoncError),
    /// A key appears twice, so it could be read two ways.
    #[error("key \"{0}\" appears more than once")]
    DuplicateKey(String),
    /// Valid JSON, but an unknown key or a value of the wrong type.
    #[error(transparent)]
    Schema(#[from] serde_json::Error),
}

impl ConfigError {
    /// The problem code.
    pub fn code(&self) -> ProblemCode {
        match self {
            ConfigError::Read { .. } => ProblemCode::ConfigUnreadable,
            ConfigError::Invalid { .. } => ProblemCode::ConfigInvalid,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "check the path given with --config",
            ConfigError::Invalid { .. } => {
                "fix the file; see the example in the README (section Configuration)"
            }
        }
    }
}

impl Failure for ConfigError {
    fn problems(&self) -> Problems {
        let (ConfigError::Read { path, .. } | ConfigError::Invalid { path, .. }) = self;
        Problems(vec![Problem::from_error(
            self.code(),
            path.display().to_string(),
            self,
            self.hint(),
        )])
    }
}

/// Largest configuration file accepted.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl HostConfig {
    /// Loads `path`, or the side's default file if `path` is `None` (missing
    /// default file = defaults).
    ///
    /// # Errors
    /// [`ConfigError`] naming the file.
    pub fn load(path: Option<&Path>, side: HostSide) -> Result<HostConfig, ConfigError> {
        let (path, must_exist) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (side.default_config_path().to_path_buf(), false),
        };
        let read = std::fs::metadata(&path).and_then(|m| {
            if m.len() > MAX_CONFIG_BYTES {
                Err(std::io::Error::other(format!(
                    "file is {} bytes, more than the {MAX_CONFIG_BYTES} allowed",
                    m.len()
                )))
            } else {
                std::fs::read(&path)
            }
        });
        let bytes = match read {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(HostConfig::default())
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::parse(&bytes).map_err(|source| ConfigError::Invalid { path, source })
    }

    /// Parses configuration text (JSON with comments).
    ///
    /// # Errors
    /// [`ConfigParseError`]: the first problem found.
    pub fn parse(bytes: &[u8]) -> Result<HostConfig, ConfigParseError> {
        let parsed = xplugin_model::jsonc::parse(bytes)?;
        if let Some(dup) = parsed.duplicate_keys.first() {
            return Err(ConfigParseError::DuplicateKey(dup.clone()));
        }
        Ok(serde_json::from_value(parsed.value)?)
    }

    /// Applies the command-line overrides `--trusted-keys` and
    /// `--allow-unlicensed`.
    pub fn apply_flags(&mut self, trusted_keys: Option<&Path>, allow_unlicensed: bool) {
        if let Some(dir) = trusted_keys {
            self.trusted_keys_dir = dir.to_path_buf();
        }
        if allow_unlicensed {
            self.allow_unlicensed = true;
        }
    }

    /// The install root: `--root` wins, then the file, then the default.
    pub fn root_or(&self, flag: Option<&Path>, side: HostSide) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| self.root.clone())
            .unwrap_or_else(|| side.default_root().to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_config_parses() {
        let c = HostConfig::parse(
            br#"{
            // the pendant
            "host_version": "3.0.2",
            "device": { "serial": "RC-1" },
            "allow_unlicensed": true
        }"#,
        )
        .unwrap();
        assert_eq!(c.host_version.as_deref(), Some("3.0.2"));
        assert!(c.allow_unlicensed);
        assert!(matches!(c.device.source(), DeviceIdSource::Serial(s) if s == "RC-1"));
    }

    #[test]
    fn typos_are_refused() {
        let e = HostConfig::parse(br#"{"allow_unlicenced": true}"#).unwrap_err();
        assert!(matches!(e, ConfigParseError::Schema(_)), "{e}");
        assert!(e.to_string().contains("allow_unlicenced"), "{e}");
    }

    #[test]
    fn missing_default_file_means_defaults_but_missing_given_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let e = HostConfig::load(Some(&missing), HostSide::Client).unwrap_err();
        let problems = e.problems();
        assert_eq!(problems.0[0].code, ProblemCode::ConfigUnreadable);
        // The OS error is shown once: as the cause, not also in the text.
        assert_eq!(
            problems.0[0].message.matches("No such file").count(),
            1,
            "{problems}"
        );
    }
}
