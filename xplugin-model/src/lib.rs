//! Pure model of a plugin set: manifests, versions, compatibility, the
//! dependency graph resolver and plugin configuration (typed items, value
//! checks, changes and migration across versions, [`config_schema`]). No
//! I/O: the loaders feed it bytes and host facts.
//!
//! How a loader uses it, per side:
//!
//! 1. [`parse_manifest`] each plugin folder's `NAME.json` (all problems
//!    collected; a [`Manifest`] only when there is no error).
//! 2. [`check_compat`] each manifest against the host version; turn a
//!    refusal into a pre-failure with [`Node::with_failure`] (as for license
//!    or architecture failures found elsewhere).
//! 3. [`merge_installed`] what is installed with what a package brings,
//!    [`resolve`] the result, and refuse an import when
//!    [`broken_by_import`] reports an installed plugin it would break.
//! 4. Load in [`Resolution::load_order`], stop in
//!    [`Resolution::stop_order`], and report [`Resolution::blocked`].
//!
//! ```
//! use xplugin_model::{check_compat, parse_manifest, resolve, Node, ResolveInput, Side, Version};
//!
//! let json = br#"{"controller_plugin": {"plugindemo": {
//!     "name": "plugindemo", "enable": true, "version": "1.0.2.6",
//!     "depend": [{"name": "base", "version": ">=1.2, <2"}], // JSONC comments are fine
//!     "min_controller_version": "3.0"}}}"#;
//! let outcome = parse_manifest(Side::Controller, "plugindemo", json);
//! let manifest = outcome.manifest.expect("valid manifest");
//! assert!(check_compat(&manifest, &Version::parse("3.0.2").unwrap()).is_ok());
//!
//! let resolution = resolve(&ResolveInput {
//!     plugins: vec![Node::from_manifest(&manifest)],
//!     running_controller: None,
//! });
//! assert_eq!(
//!     resolution.blocked["plugindemo"].message(),
//!     "plugindemo cannot load: depends on base, which is not installed"
//! );
//! ```
#![deny(missing_docs)]

pub mod code;
pub mod compat;
pub mod config_schema;
pub mod graph;
pub mod jsonc;
pub mod manifest;
pub mod problem;
pub mod version;

pub use code::ProblemCode;
pub use compat::{check as check_compat, CompatRule, Incompatible};
pub use config_schema::{ConfigSchema, ConfigValues};
pub use graph::{
    broken_by_import, dependents_of, merge_installed, resolve, BlockReason, Blocked,
    BlockedPlugins, Node, PluginOrder, Resolution, ResolveInput,
};
pub use manifest::{
    check_name, parse_manifest, Dependency, Manifest, ManifestOutcome, NameError, Side,
};
pub use problem::{
    error_chain, failure_json, failure_text, Failure, Problem, Problems, Severity, HINT_SEPARATOR,
};
pub use version::{Version, VersionError, VersionReq, VersionReqError};
