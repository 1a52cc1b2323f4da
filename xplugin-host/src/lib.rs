//! The host library both loaders embed: reading packages, the install store,
//! inspecting libraries before loading, checks, import, boot and the plugin
//! lifecycle.
//!
//! The hostile-input boundary (reading packages, inspecting libraries) is
//! `xplugin-package`; install roots are `xplugin-store`; command-line glue is
//! `xplugin-cli`. Everything a daemon needs (boot loading, import, reports)
//! lives here.
//!
//! | module | concept |
//! |---|---|
//! | [`checks`] | every check of a plugin folder before its code may run |
//! | [`verify`] | one side of a package against one host: checks, actions, graph |
//! | [`import`] | the pendant's import: unpack, check, resolve, commit |
//! | [`install`] | the controller's own install transactions: prepare, commit, abort |
//! | [`remote_import`] | the pendant's import over the link: one install across two computers |
//! | [`boot`] | verify, resolve, load, init, start an installed set |
//! | [`loader`] | dlopen and descriptor validation |
//! | [`cycle`] | the real-time cycle thread that steps controller plugins |
//! | [`lifecycle`] | init/start/stop/destroy with failure isolation |
//! | [`services`] | the host services table given to plugins |
//! | [`delivery`] | message deliveries in flight; unsubscribe without deadlock |
//! | [`bridge`] | plugin messages across the pendant link: routes, bounds, counters |
//! | [`admin`] | list, enable, disable, remove, rollback |
//! | [`os`] | the few system calls outside the controller-only modules, Unix and Windows |
#![deny(missing_docs)]

pub mod admin;
pub mod boot;
pub mod bridge;
pub mod checks;
pub mod config;
pub mod cycle;
pub mod delivery;
pub mod device;
pub mod diagnostics;
pub mod digests;
mod failures;
#[cfg(unix)]
pub mod fault;
#[cfg(windows)]
#[path = "fault_windows.rs"]
pub mod fault;
pub mod import;
pub mod install;
pub mod journal;
pub mod lifecycle;
pub mod loader;
pub mod os;
pub mod plugin_config;
pub mod progress;
pub mod quarantine;
pub mod remote_import;
pub mod services;
pub mod stage;
pub mod supervisor;
pub mod verdicts;
pub mod verify;
