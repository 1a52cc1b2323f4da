//! Whether a plugin may run on this host version.
//!
//! * Client plugins: the HMI version must be at least `min_hmi_version`, or
//!   be listed in `custom_hmi_version` (a listed version is accepted even
//!   below the minimum). Without a minimum, every HMI version is accepted.
//! * Controller plugins: when `must_controller_version` is non-empty the
//!   controller version must be one of those (the minimum is then ignored);
//!   otherwise it must be at least `min_controller_version`, if given.
//!
//! Versions compare as in [`crate::version`]: `3.0` equals `3.0.0`.

use crate::code::ProblemCode;
use crate::manifest::{Manifest, Side};
use crate::problem::Problem;
use crate::version::Version;
use serde::Serialize;
use std::fmt;

/// Which rule refused the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CompatRule {
    /// Client: below `min_hmi_version` and not in `custom_hmi_version`.
    BelowMinimumNotListed,
    /// Controller: below `min_controller_version` (no exact list).
    BelowMinimum,
    /// Controller: not in the non-empty `must_controller_version`.
    NotInRequiredList,
}

/// A plugin that may not run on this host version. Displays as one
/// sentence naming the plugin, the required versions, the host version and
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incompatible {
    /// Client or controller.
    pub side: Side,
    /// Plugin name.
    pub plugin: String,
    /// Plugin version.
    pub plugin_version: Version,
    /// This host's version.
    pub host_version: Version,
    /// `min_hmi_version` / `min_controller_version`, if set.
    pub min_version: Option<Version>,
    /// `custom_hmi_version` / `must_controller_version`.
    pub listed_versions: Vec<Version>,
    /// The rule that refused it.
    pub rule: CompatRule,
}

fn join(versions: &[Version]) -> String {
    versions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Incompatible {
    /// The manifest field that decides the refusal.
    pub fn field(&self) -> &'static str {
        match (self.side, self.rule) {
            (Side::Controller, CompatRule::NotInRequiredList) => "must_controller_version",
            (Side::Controller, _) => "min_controller_version",
            (Side::Client, _) => "min_hmi_version",
        }
    }

    /// What is wrong (without the hint).
    pub fn message(&self) -> String {
        let who = format!(
            "{} \"{}\" {}",
            self.side.plugin_label(),
            self.plugin,
            self.plugin_version
        );
        let host = self.side.host_label();
        let this = format!("this {host} is {}", self.host_version);
        match self.rule {
            CompatRule::NotInRequiredList => {
                let mut s = format!(
                    "{who} runs only on {host} version(s) {} (must_controller_version); {this}",
                    join(&self.listed_versions)
                );
                if let Some(min) = &self.min_version {
                    if &self.host_version >= min {
                        s.push_str(&format!(
                            " (min_controller_version {min} does not apply when must_controller_version is set)"
                        ));
                    }
                }
                s
            }
            CompatRule::BelowMinimum | CompatRule::BelowMinimumNotListed => {
                let min = self
                    .min_version
                    .as_ref()
                    .map_or_else(|| "?".to_string(), ToString::to_string);
                let also = if self.listed_versions.is_empty() {
                    String::new()
                } else {
                    format!(" (or exactly one of: {})", join(&self.listed_versions))
                };
                format!("{who} needs {host} version {min} or newer{also}; {this}")
            }
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        let host = self.side.host_label();
        let upgrade = match self.rule {
            CompatRule::NotInRequiredList => format!("switch the {host} to one of those versions"),
            _ => format!("upgrade the {host}"),
        };
        format!(
            "Install a plugin version built for {} or {upgrade}.",
            self.host_version
        )
    }

    /// The problem code of the rule that refused the plugin.
    pub fn code(&self) -> ProblemCode {
        match self.rule {
            CompatRule::NotInRequiredList => ProblemCode::CompatHostNotListed,
            CompatRule::BelowMinimum | CompatRule::BelowMinimumNotListed => {
                ProblemCode::CompatHostTooOld
            }
        }
    }

    /// The same refusal as a [`Problem`] about the plugin.
    pub fn to_problem(&self) -> Problem {
        Problem::new(
            self.code(),
            self.side.subject(&self.plugin),
            self.message(),
            self.hint(),
        )
        .with_field(self.field())
    }
}

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}. {}", self.message(), self.hint())
    }
}

impl std::error::Error for Incompatible {}

/// Checks `manifest` against this host's version (HMI version for client
/// plugins, controller version for controller plugins).
///
/// # Errors
///
/// [`Incompatible`] when the plugin's version rules exclude `host_version`.
// The error carries every version a support engineer needs to read; it is
// built once per refused plugin, so its size does not matter.
#[allow(clippy::result_large_err)]
pub fn check(manifest: &Manifest, host_version: &Version) -> Result<(), Incompatible> {
    let (listed, rule) = match manifest.side {
        Side::Client => {
            let listed = &manifest.custom_hmi_versions;
            let ok = manifest
                .min_host_version
                .as_ref()
                .is_none_or(|min| host_version >= min)
                || listed.contains(host_version);
            if ok {
                return Ok(());
            }
            (listed, CompatRule::BelowMinimumNotListed)
        }
        Side::Controller => {
            let listed = &manifest.must_controller_versions;
            if !listed.is_empty() {
                if listed.contains(host_version) {
                    return Ok(());
                }
                (listed, CompatRule::NotInRequiredList)
            } else {
                let ok = manifest
                    .min_host_version
                    .as_ref()
                    .is_none_or(|min| host_version >= min);
                if ok {
                    return Ok(());
                }
                (listed, CompatRule::BelowMinimum)
            }
        }
    };
    Err(Incompatible {
        side: manifest.side,
        plugin: manifest.name.clone(),
        plugin_version: manifest.version.clone(),
        host_version: host_version.clone(),
        min_version: manifest.min_host_version.clone(),
        listed_versions: listed.clone(),
        rule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn manifest(side: Side, min: Option<&str>, list: &[&str]) -> Manifest {
        let list: Vec<Version> = list.iter().map(|s| v(s)).collect();
        let (custom, must) = match side {
            Side::Client => (list, Vec::new()),
            Side::Controller => (Vec::new(), list),
        };
        Manifest {
            side,
            name: "x".into(),
            version: v("1.2.0"),
            enable: true,
            depend: Vec::new(),
            ctrl_depend: Vec::new(),
            min_host_version: min.map(v),
            custom_hmi_versions: custom,
            must_controller_versions: must,
            author: None,
            description: None,
            config: Default::default(),
            cycle_budget_us: None,
            bridge: Default::default(),
        }
    }

    #[test]
    fn client_minimum_or_custom_list() {
        let m = manifest(Side::Client, Some("3.1.0"), &["3.0.2", "3.0.5"]);
        assert!(check(&m, &v("3.1")).is_ok());
        assert!(check(&m, &v("3.2.0.1")).is_ok());
        assert!(check(&m, &v("3.0.2")).is_ok(), "listed below the minimum");
        assert!(check(&m, &v("3.0.2.0")).is_ok(), "missing parts are zero");
        let err = check(&m, &v("3.0.1"))
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(
            err.to_string(),
            "client plugin \"x\" 1.2.0 needs HMI version 3.1.0 or newer (or exactly one of: 3.0.2, 3.0.5); \
             this HMI is 3.0.1. Install a plugin version built for 3.0.1 or upgrade the HMI."
        );
        assert_eq!(err.field(), "min_hmi_version");
        assert!(
            check(&m, &v("3.1.0-rc.1")).is_err(),
            "pre-release is below the minimum"
        );
    }

    #[test]
    fn client_without_minimum_accepts_everything() {
        assert!(check(&manifest(Side::Client, None, &[]), &v("0.1")).is_ok());
        assert!(check(&manifest(Side::Client, None, &["3.0"]), &v("0.1")).is_ok());
    }

    #[test]
    fn controller_exact_list_overrides_minimum() {
        let m = manifest(Side::Controller, Some("3.0"), &["3.0.2", "3.0.5"]);
        assert!(check(&m, &v("3.0.5")).is_ok());
        let err = check(&m, &v("3.1"))
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(err.rule, CompatRule::NotInRequiredList);
        assert_eq!(err.field(), "must_controller_version");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "controller plugin \"x\" 1.2.0 runs only on controller version(s) 3.0.2, 3.0.5 \
                 (must_controller_version); this controller is 3.1"
            ),
            "{text}"
        );
        assert!(
            text.contains("min_controller_version 3.0 does not apply"),
            "{text}"
        );
        assert!(
            text.ends_with("switch the controller to one of those versions."),
            "{text}"
        );
    }

    #[test]
    fn controller_minimum() {
        let m = manifest(Side::Controller, Some("3.1.0"), &[]);
        assert!(check(&m, &v("3.1.0")).is_ok());
        let err = check(&m, &v("3.0.2"))
            .err()
            .unwrap_or_else(|| panic!("accepted"));
        assert_eq!(
            err.to_string(),
            "controller plugin \"x\" 1.2.0 needs controller version 3.1.0 or newer; this controller \
             is 3.0.2. Install a plugin version built for 3.0.2 or upgrade the controller."
        );
        let p = err.to_problem();
        assert_eq!(p.subject, "controller plugin \"x\"");
        assert_eq!(p.field.as_deref(), Some("min_controller_version"));
        assert!(check(&manifest(Side::Controller, None, &[]), &v("1")).is_ok());
    }
}
