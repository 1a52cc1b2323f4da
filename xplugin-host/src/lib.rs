//! The host library both loaders embed: reading packages, the install store,
//! inspecting libraries before loading, loading and the plugin lifecycle.
//!
//! The command-line programs are thin: everything a future daemon needs
//! (boot loading, import, reports) lives here.
#![deny(missing_docs)]

pub mod binary;
pub mod lifecycle;
pub mod loader;
pub mod services;
