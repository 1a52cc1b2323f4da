//! Everything a loader needs to check licenses during one import or one
//! boot, opened once from its configuration: the trust store, this
//! device's id, and the clock with its high-water mark.

use crate::clock::{ClockError, ClockGuard, ClockStatus};
use crate::device::{device_id, DeviceIdError, DeviceIdSource};
use crate::error::LicenseError;
use crate::keys::{KeyError, TrustStore};
use crate::payload::Side;
use crate::verify::{verify_plugin_dir, VerifiedLicense, VerifyContext};
use std::path::Path;
use std::time::SystemTime;
use xplugin_model::Version;

/// Why license checking cannot start at all (configuration problems, as
/// opposed to a refused license).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LicenseSetupError {
    /// The trust store cannot be loaded.
    #[error(transparent)]
    Trust(#[from] KeyError),
    /// This device's id cannot be determined.
    #[error(transparent)]
    Device(#[from] DeviceIdError),
    /// The clock high-water mark file cannot be read.
    #[error(transparent)]
    Clock(#[from] ClockError),
}

impl xplugin_model::Failure for LicenseSetupError {
    fn problems(&self) -> xplugin_model::Problems {
        match self {
            LicenseSetupError::Trust(e) => e.problems(),
            LicenseSetupError::Device(e) => e.problems(),
            LicenseSetupError::Clock(e) => e.problems(),
        }
    }
}

/// Checks plugin folders against their licenses for one import or boot.
#[derive(Debug)]
pub struct LicenseChecker {
    trust: TrustStore,
    device_id: String,
    clock: ClockGuard,
    now: SystemTime,
}

impl LicenseChecker {
    /// Opens the trust store in `trust_dir`, derives the device id from
    /// `device` and loads the clock high-water mark from `clock_file`
    /// (missing = no history). `now` is the clock reading used for every
    /// check of this run.
    ///
    /// # Errors
    ///
    /// [`LicenseSetupError`] naming the file or directory and what to do.
    pub fn open(
        trust_dir: &Path,
        device: &DeviceIdSource,
        clock_file: &Path,
        now: SystemTime,
    ) -> Result<LicenseChecker, LicenseSetupError> {
        Ok(LicenseChecker {
            trust: TrustStore::load(trust_dir)?,
            device_id: device_id(device)?,
            clock: ClockGuard::load(clock_file)?,
            now,
        })
    }

    /// A checker from parts (tests, tools).
    pub fn new(trust: TrustStore, device_id: String, clock: ClockGuard, now: SystemTime) -> Self {
        LicenseChecker {
            trust,
            device_id,
            clock,
            now,
        }
    }

    /// This device's id (for messages and `device-id` commands).
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// This device's id and the clock of this run, for refusals
    /// ([`LicenseError::to_problems`]).
    pub fn this_device(&self) -> crate::error::ThisDevice<'_> {
        crate::error::ThisDevice {
            id: &self.device_id,
            now: self.now,
        }
    }

    /// The trusted key ids.
    pub fn trusted_keys(&self) -> Vec<String> {
        self.trust.key_ids()
    }

    /// How the clock compares with the high-water mark; a loader logs a
    /// warning for anything but `Plausible` / `NoHistory`.
    pub fn clock_status(&self) -> ClockStatus {
        self.clock.check(self.now)
    }

    /// Verifies `plugin_dir/NAME.lic` for the plugin `name` on `side` at
    /// `version`, and the folder's files against it. Call before any library
    /// of the plugin is opened.
    ///
    /// # Errors
    ///
    /// Any [`LicenseError`]; [`LicenseError::to_problems`] turns it into
    /// the shared problem list.
    pub fn check_plugin_dir(
        &self,
        plugin_dir: &Path,
        name: &str,
        side: Side,
        version: &Version,
    ) -> Result<VerifiedLicense, LicenseError> {
        let ctx = VerifyContext {
            plugin: name,
            side,
            plugin_version: version,
            device_id: &self.device_id,
            now: self.now,
            high_water_mark: self.clock.high_water_mark(),
        };
        verify_plugin_dir(plugin_dir, &self.trust, &ctx)
    }

    /// Records this run's clock as the new high-water mark, unless the
    /// clock is implausible (far behind the mark, or far ahead of it, which
    /// would poison it). Returns whether it was recorded.
    ///
    /// # Errors
    ///
    /// [`ClockError::Io`] when the mark file cannot be written.
    pub fn record_clock(&mut self) -> Result<bool, ClockError> {
        match self.clock.check(self.now) {
            ClockStatus::NoHistory | ClockStatus::Plausible => self.clock.record(self.now),
            ClockStatus::BehindHighWater { .. } | ClockStatus::FarFuture { .. } => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::system_time;

    #[test]
    fn records_only_plausible_clocks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("clock-hwm");
        let mut first = LicenseChecker::new(
            TrustStore::new(),
            "x".into(),
            ClockGuard::load(&path).expect("load"),
            system_time(1_800_000_000),
        );
        assert_eq!(first.clock_status(), ClockStatus::NoHistory);
        assert_eq!(first.record_clock().ok(), Some(true));
        let mut set_back = LicenseChecker::new(
            TrustStore::new(),
            "x".into(),
            ClockGuard::load(&path).expect("load"),
            system_time(1_700_000_000),
        );
        assert!(matches!(
            set_back.clock_status(),
            ClockStatus::BehindHighWater { .. }
        ));
        assert_eq!(set_back.record_clock().ok(), Some(false));
        let reloaded = ClockGuard::load(&path).expect("load");
        assert_eq!(reloaded.high_water_mark(), Some(system_time(1_800_000_000)));
    }
}
