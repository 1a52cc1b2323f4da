//! Pure model of a plugin set: manifests, versions, compatibility and the
//! dependency graph resolver. No I/O: the loaders feed it bytes and host facts.
#![deny(missing_docs)]

pub mod problem;
pub mod version;

pub use problem::{Problem, Problems, Severity};
pub use version::{Version, VersionError, VersionReq, VersionReqError};
