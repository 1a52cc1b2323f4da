//! Pure model of a plugin set: manifests, versions, compatibility and the
//! dependency graph resolver. No I/O: the loaders feed it bytes and host facts.
#![deny(missing_docs)]

pub mod jsonc;
pub mod manifest;
pub mod problem;
pub mod version;

pub use manifest::{
    check_name, parse_manifest, Dependency, Manifest, ManifestOutcome, NameError, Side,
};
pub use problem::{Problem, Problems, Severity};
pub use version::{Version, VersionError, VersionReq, VersionReqError};
