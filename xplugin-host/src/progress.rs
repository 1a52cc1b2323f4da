//! How far an import has got, for a display: the unpack's bytes
//! ([`UnpackProgress`]), then each plugin as it is checked, then the
//! install. The library only reports; a program renders it (the client's
//! progress bar on a terminal) or ignores it ([`NoProgress`]).

use xplugin_model::manifest::Side;
pub use xplugin_package::progress::{NoProgress, UnpackProgress};

/// The parts of an import, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportStage {
    /// Reading the package into staging.
    Unpacking,
    /// Checking every plugin (manifest, license, hashes, libraries) and the
    /// dependency graph.
    Checking,
    /// Moving the checked plugins into the install roots and committing
    /// them (the durable writes).
    Installing,
}

impl ImportStage {
    /// A word for a display: `unpacking`, `checking`, `installing`.
    pub fn label(self) -> &'static str {
        match self {
            ImportStage::Unpacking => "unpacking",
            ImportStage::Checking => "checking",
            ImportStage::Installing => "installing",
        }
    }
}

/// Told how an import advances; every method has an empty default.
pub trait ImportProgress: UnpackProgress {
    /// The import entered `stage`.
    fn stage(&self, stage: ImportStage) {
        let _ = stage;
    }

    /// Plugin `name` of `side` was checked (whether it passed or not).
    fn plugin_checked(&self, side: Side, name: &str) {
        let _ = (side, name);
    }
}

impl ImportProgress for NoProgress {}
