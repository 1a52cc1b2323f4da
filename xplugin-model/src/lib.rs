//! Pure model of a plugin set: manifests, versions, compatibility and the
//! dependency graph resolver. No I/O: the loaders feed it bytes and host facts.
#![deny(missing_docs)]

pub mod compat;
pub mod graph;
pub mod jsonc;
pub mod manifest;
pub mod problem;
pub mod version;

pub use compat::{check as check_compat, CompatRule, Incompatible};
pub use graph::{
    broken_by_import, dependents_of, merge_installed, resolve, BlockReason, Blocked, Node,
    Resolution, ResolveInput,
};
pub use manifest::{
    check_name, parse_manifest, Dependency, Manifest, ManifestOutcome, NameError, Side,
};
pub use problem::{Problem, Problems, Severity};
pub use version::{Version, VersionError, VersionReq, VersionReqError};
