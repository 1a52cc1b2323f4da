//! The host library both loaders embed: reading packages, the install store,
//! inspecting libraries before loading, checks, import, boot and the plugin
//! lifecycle.
//!
//! The command-line programs are thin: everything a future daemon needs
//! (boot loading, import, reports) lives here.
//!
//! | module | concept |
//! |---|---|
//! | [`package`] | reading an untrusted `plugindemo.zip` into staging |
//! | [`store`] | install roots: generations, atomic commit, lock, rollback |
//! | [`binary`] | architecture and ABI tag of a library, read without loading |
//! | [`checks`] | every check of a plugin folder before its code may run |
//! | [`import`] | the pendant's import: unpack, check, resolve, commit |
//! | [`boot`] | verify, resolve, load, init, start an installed set |
//! | [`loader`] | dlopen and descriptor validation |
//! | [`lifecycle`] | init/start/stop/destroy with failure isolation |
//! | [`services`] | the host services table given to plugins |
//! | [`admin`] | list, enable, disable, remove, rollback |
#![deny(missing_docs)]

pub mod admin;
pub mod binary;
pub mod boot;
pub mod checks;
pub mod cli;
pub mod config;
pub mod device;
pub mod import;
pub mod lifecycle;
pub mod loader;
pub mod logging;
pub mod package;
pub mod plugin_config;
pub mod services;
pub mod store;
