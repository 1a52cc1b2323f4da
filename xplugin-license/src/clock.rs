//! Clock plausibility for time-limited licenses.
//!
//! A robot is often offline and its clock can be wrong or set back on
//! purpose to keep an expired license alive. Perpetual licenses never look
//! at the clock. For licenses with `expires` or `not_before` the verifier
//! refuses:
//!
//! * a clock more than [`ISSUE_SKEW_SECS`] (1 hour) before the license's
//!   issue time: "the system clock is behind: set it";
//! * a clock more than [`HIGH_WATER_TOLERANCE_SECS`] (1 day) behind the
//!   high-water mark, the latest time this device has recorded (the day
//!   allows for NTP corrections and time-zone mistakes);
//! * a clock more than [`FAR_FUTURE_SECS`] (10 years) after the issue time
//!   or the high-water mark: suspicious, probably a dead RTC battery or a
//!   typo, and recording it would poison the high-water mark.
//!
//! The high-water mark lives in one small file (e.g. `ROOT/state/clock-hwm`)
//! holding `xplugin-clock-hwm-v1 <unix seconds>`, replaced atomically
//! (temporary file, fsync, rename, fsync of the directory). The mark moves
//! in steps of [`RECORD_STEP_SECS`] (1 hour): rewriting it durably at every
//! boot cost two fsyncs each time (10–20 ms here) for a mark that only has
//! to be good to within the day of tolerance. So the mark may trail the
//! clock by up to an hour: a clock set back by between 24 and 25 hours can
//! pass, which the day of tolerance already makes a matter of degree.

use crate::timestamp::{format_rfc3339, system_time, unix_seconds};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use xplugin_model::{Failure, Problem, ProblemCode, Problems};

/// Tolerated clock skew before a license's issue time (vendor clock ahead).
pub const ISSUE_SKEW_SECS: u64 = 60 * 60;
/// How far the clock may be behind the high-water mark.
pub const HIGH_WATER_TOLERANCE_SECS: u64 = 24 * 60 * 60;
/// How far after the issue time or high-water mark a clock is suspicious.
pub const FAR_FUTURE_SECS: u64 = 10 * 365 * 24 * 60 * 60 + 3 * 24 * 60 * 60;

/// How far the clock must have moved past the mark before the mark is
/// rewritten (see the module documentation).
pub const RECORD_STEP_SECS: u64 = 60 * 60;

const HEADER: &str = "xplugin-clock-hwm-v1";

/// A problem with the high-water mark file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClockError {
    /// The file cannot be read or written.
    #[error("{action} the clock high-water mark file {}", path.display())]
    Io {
        /// "cannot read" / "cannot write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not hold a high-water mark.
    #[error("the clock high-water mark file {} is damaged: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl ClockError {
    /// The problem code.
    pub fn code(&self) -> ProblemCode {
        match self {
            ClockError::Io { .. } => ProblemCode::ClockIo,
            ClockError::Corrupt { .. } => ProblemCode::ClockCorrupt,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            ClockError::Io { .. } => "check that the state directory exists and is writable by the loader",
            ClockError::Corrupt { .. } => "delete it (time-limited licenses then lose their protection against a clock set back until the next start records the time again)",
        }
    }
}

impl Failure for ClockError {
    fn problems(&self) -> Problems {
        let (ClockError::Io { path, .. } | ClockError::Corrupt { path, .. }) = self;
        Problems(vec![Problem::from_error(
            self.code(),
            path.display().to_string(),
            self,
            self.hint(),
        )])
    }
}

/// How the current clock compares with the high-water mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockStatus {
    /// No high-water mark has been recorded yet.
    NoHistory,
    /// The clock is plausible.
    Plausible,
    /// The clock is more than a day behind the high-water mark.
    BehindHighWater {
        /// The high-water mark.
        high_water: SystemTime,
    },
    /// The clock is more than 10 years after the high-water mark.
    FarFuture {
        /// The high-water mark.
        high_water: SystemTime,
    },
}

/// The persisted high-water mark of this device's clock.
#[derive(Debug, Clone)]
pub struct ClockGuard {
    path: PathBuf,
    high_water: Option<u64>,
}

impl ClockGuard {
    /// Loads the mark from `path`; a missing file means no history.
    ///
    /// # Errors
    ///
    /// [`ClockError::Io`] when the file exists but cannot be read,
    /// [`ClockError::Corrupt`] when it does not hold a mark.
    pub fn load(path: &Path) -> Result<ClockGuard, ClockError> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ClockGuard {
                    path: path.to_path_buf(),
                    high_water: None,
                })
            }
            Err(source) => {
                return Err(ClockError::Io {
                    action: "cannot read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let mut raw = Vec::new();
        file.take(256)
            .read_to_end(&mut raw)
            .map_err(|source| ClockError::Io {
                action: "cannot read",
                path: path.to_path_buf(),
                source,
            })?;
        let corrupt = |reason: &str| ClockError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let text = std::str::from_utf8(&raw).map_err(|_| corrupt("it is not text"))?;
        let value = text
            .trim()
            .strip_prefix(HEADER)
            .ok_or_else(|| corrupt("it does not start with \"xplugin-clock-hwm-v1\""))?;
        let secs = value
            .trim()
            .parse::<u64>()
            .map_err(|_| corrupt("the time is not a number of seconds"))?;
        Ok(ClockGuard {
            path: path.to_path_buf(),
            high_water: Some(secs),
        })
    }

    /// The latest time recorded, if any.
    pub fn high_water_mark(&self) -> Option<SystemTime> {
        self.high_water.map(system_time)
    }

    /// The file the mark lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How `now` compares with the mark.
    pub fn check(&self, now: SystemTime) -> ClockStatus {
        let Some(hwm) = self.high_water else {
            return ClockStatus::NoHistory;
        };
        let now = unix_seconds(now);
        if now.saturating_add(HIGH_WATER_TOLERANCE_SECS) < hwm {
            ClockStatus::BehindHighWater {
                high_water: system_time(hwm),
            }
        } else if now > hwm.saturating_add(FAR_FUTURE_SECS) {
            ClockStatus::FarFuture {
                high_water: system_time(hwm),
            }
        } else {
            ClockStatus::Plausible
        }
    }

    /// Records `now` as the new mark if it is at least
    /// [`RECORD_STEP_SECS`] later than the current one, atomically, and
    /// returns whether it did. Does nothing when `now` is not that much
    /// later, or is more than [`FAR_FUTURE_SECS`] after the current mark
    /// (such a clock is wrong, and recording it would make every later,
    /// correct clock look "set back").
    ///
    /// # Errors
    ///
    /// [`ClockError::Io`] when the file cannot be written.
    pub fn record(&mut self, now: SystemTime) -> Result<bool, ClockError> {
        let now = unix_seconds(now);
        if let Some(h) = self.high_water {
            if now < h.saturating_add(RECORD_STEP_SECS) || now > h.saturating_add(FAR_FUTURE_SECS) {
                return Ok(false);
            }
        }
        let io = |source| ClockError::Io {
            action: "cannot write",
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "clock-hwm".to_string());
        let tmp = dir.join(format!(".{name}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            writeln!(f, "{HEADER} {now}").map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        #[cfg(unix)]
        if let Ok(d) = std::fs::File::open(&dir) {
            // Makes the rename durable; a failure here only risks losing the
            // newest mark on power loss, the old one stays valid.
            let _ = d.sync_all();
        }
        self.high_water = Some(now);
        Ok(true)
    }
}

impl std::fmt::Display for ClockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.high_water {
            Some(h) => write!(f, "latest time seen {}", format_rfc3339(h)),
            None => f.write_str("no time recorded yet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::system_time;

    #[test]
    fn records_only_forward_and_survives_reload() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("clock-hwm");
        let mut g = ClockGuard::load(&path).expect("load missing");
        assert_eq!(g.check(system_time(1_000_000)), ClockStatus::NoHistory);
        assert!(g.record(system_time(2_000_000)).expect("record"));
        assert!(!g.record(system_time(1_000_000)).expect("record older"));
        assert!(
            !g.record(system_time(2_000_000 + RECORD_STEP_SECS - 1))
                .expect("record within the step"),
            "a mark less than a step old is not rewritten"
        );
        assert!(!g
            .record(system_time(2_000_000 + FAR_FUTURE_SECS + 1))
            .expect("record far future"));
        let g = ClockGuard::load(&path).expect("reload");
        assert_eq!(g.high_water_mark(), Some(system_time(2_000_000)));
        let mut g = g;
        assert!(g
            .record(system_time(2_000_000 + RECORD_STEP_SECS))
            .expect("record a step later"));
        let g = ClockGuard::load(&path).expect("reload");
        assert_eq!(
            g.high_water_mark(),
            Some(system_time(2_000_000 + RECORD_STEP_SECS))
        );
        let g = {
            std::fs::write(&path, format!("{HEADER} 2000000\n")).expect("rewrite");
            ClockGuard::load(&path).expect("reload")
        };
        assert_eq!(
            g.check(system_time(2_000_000 - 3600)),
            ClockStatus::Plausible
        );
        assert!(matches!(
            g.check(system_time(2_000_000 - 2 * 86_400)),
            ClockStatus::BehindHighWater { .. }
        ));
        assert!(matches!(
            g.check(system_time(2_000_000 + FAR_FUTURE_SECS + 1)),
            ClockStatus::FarFuture { .. }
        ));
        assert!(!dir.path().join(".clock-hwm.tmp").exists());
    }

    #[test]
    fn corrupt_file_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("clock-hwm");
        std::fs::write(&path, "garbage").expect("write");
        assert!(matches!(
            ClockGuard::load(&path),
            Err(ClockError::Corrupt { .. })
        ));
    }
}
