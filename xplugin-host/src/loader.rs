//! Opening a plugin library and validating its descriptor.
//!
//! Libraries are opened with `RTLD_NOW | RTLD_LOCAL`: every undefined symbol is
//! resolved at load time (a missing symbol is a load error now, not a crash in
//! the middle of a motion cycle), and a plugin's symbols never satisfy another
//! plugin's undefined references by accident.
//!
//! Libraries are never unloaded. `dlclose` of a library that registered
//! thread-local destructors (every Rust cdylib that touched a `thread_local!`,
//! many C++ libraries) leaves the C runtime holding pointers into unmapped
//! code; glibc makes such libraries `NODELETE` anyway, and the service tables
//! and callbacks a plugin handed out would dangle. A host process loads a
//! plugin set once per boot, so keeping the mappings costs nothing.

pub use crate::checks::CheckedLibrary;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use xplugin_abi::{
    kind_name, Descriptor, EntryFn, XPLUGIN_ABI_MAJOR, XPLUGIN_ENTRY_SYMBOL, XPLUGIN_MAGIC,
};
use xplugin_package::binary::BinaryError;

/// Why a library could not be opened or its descriptor was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The pre-load file check failed (architecture, ABI tag, kind).
    #[error(transparent)]
    Binary(#[from] BinaryError),
    /// The dynamic loader refused the file.
    #[error("cannot load {path}: {source}; check that every library it links against is installed for this architecture (ldd {path})")]
    Open {
        /// The library.
        path: PathBuf,
        /// What dlopen said.
        #[source]
        source: libloading::Error,
    },
    /// `xplugin_entry` could not be resolved.
    #[error("{path}: no `xplugin_entry` symbol: {source}")]
    NoEntry {
        /// The library.
        path: PathBuf,
        /// What dlsym said.
        #[source]
        source: libloading::Error,
    },
    /// The descriptor is unusable.
    #[error("{path}: invalid plugin descriptor: {problem}; rebuild the plugin against xplugin.h / xplugin-abi {XPLUGIN_ABI_MAJOR}.x")]
    BadDescriptor {
        /// The library.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The descriptor describes a different plugin than the manifest.
    #[error("{path}: the library says it is {field} \"{found}\" but the manifest says \"{expected}\"; rebuild the library or fix the manifest so they agree")]
    Mismatch {
        /// The library.
        path: PathBuf,
        /// `name` or `version`.
        field: &'static str,
        /// From the manifest.
        expected: String,
        /// From the descriptor.
        found: String,
    },
}

/// An opened plugin library and its validated descriptor. Never unloaded (see
/// the module documentation).
pub struct LoadedPlugin {
    path: PathBuf,
    descriptor: &'static Descriptor,
    _library: ManuallyDrop<libloading::Library>,
}

impl LoadedPlugin {
    /// The validated descriptor.
    pub fn descriptor(&self) -> &'static Descriptor {
        self.descriptor
    }

    /// The library file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .finish()
    }
}

#[cfg(unix)]
unsafe fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    Library::open(Some(path), RTLD_NOW | RTLD_LOCAL).map(Into::into)
}

#[cfg(windows)]
unsafe fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    libloading::Library::new(path)
}

/// Opens the client-side ABI runtime library so that client plugins linking
/// against it (`DT_NEEDED libxplugin.so`) resolve to this verified copy.
///
/// # Safety
/// Runs the library's constructors: call only after the package checks
/// (license, ABI tag of the runtime) passed.
///
/// # Errors
/// [`LoadError::Open`].
pub unsafe fn open_runtime(lib: &CheckedLibrary) -> Result<(), LoadError> {
    let l = open_library(lib.path()).map_err(|source| LoadError::Open {
        path: lib.path().to_path_buf(),
        source,
    })?;
    std::mem::forget(l);
    Ok(())
}

/// Opens a checked plugin library, resolves `xplugin_entry` and validates the
/// descriptor against the manifest's `name` and `version`.
///
/// # Safety
/// Loading runs the library's constructors with the host's privileges. Call
/// only after every check of the package passed: format, license,
/// compatibility, architecture and ABI ([`check_plugin_file`] guarantees the
/// last two).
///
/// # Errors
/// [`LoadError`] naming the library and the problem.
pub unsafe fn open_plugin(
    lib: &CheckedLibrary,
    expected_name: &str,
    expected_version: &str,
) -> Result<LoadedPlugin, LoadError> {
    let path = lib.path().to_path_buf();
    let library = open_library(&path).map_err(|source| LoadError::Open {
        path: path.clone(),
        source,
    })?;
    let library = ManuallyDrop::new(library);
    let entry: EntryFn = *library
        .get::<EntryFn>(XPLUGIN_ENTRY_SYMBOL.as_bytes())
        .map_err(|source| LoadError::NoEntry {
            path: path.clone(),
            source,
        })?;
    let bad = |problem: String| LoadError::BadDescriptor {
        path: path.clone(),
        problem,
    };
    let raw = entry();
    let Some(d) = raw.as_ref() else {
        return Err(bad("xplugin_entry returned NULL".into()));
    };
    if d.magic != XPLUGIN_MAGIC {
        return Err(bad(format!("magic is {:#010x}, expected XPLG", d.magic)));
    }
    if d.abi_major != XPLUGIN_ABI_MAJOR {
        return Err(bad(format!(
            "ABI major is {}, this host speaks {}",
            d.abi_major, XPLUGIN_ABI_MAJOR
        )));
    }
    // Append-only evolution: any 1.x descriptor holds at least the 1.0 fields.
    let min = std::mem::size_of::<Descriptor>();
    if (d.struct_size as usize) < min {
        return Err(bad(format!(
            "struct_size is {}, an ABI 1.x descriptor has at least {min} bytes",
            d.struct_size
        )));
    }
    if d.kind != lib.kind() {
        return Err(bad(format!(
            "it is a {}, expected a {}",
            kind_name(d.kind),
            kind_name(lib.kind())
        )));
    }
    let missing: Vec<&str> = [
        ("init", d.init.is_none()),
        ("start", d.start.is_none()),
        ("stop", d.stop.is_none()),
        ("destroy", d.destroy.is_none()),
    ]
    .iter()
    .filter(|(_, m)| *m)
    .map(|(n, _)| *n)
    .collect();
    if !missing.is_empty() {
        return Err(bad(format!(
            "required functions are NULL: {}",
            missing.join(", ")
        )));
    }
    let name = d.name_str().unwrap_or("<missing or not UTF-8>");
    if name != expected_name {
        return Err(LoadError::Mismatch {
            path,
            field: "name",
            expected: expected_name.to_string(),
            found: name.to_string(),
        });
    }
    let version = d.version_str().unwrap_or("<missing or not UTF-8>");
    if !versions_agree(version, expected_version) {
        return Err(LoadError::Mismatch {
            path,
            field: "version",
            expected: expected_version.to_string(),
            found: version.to_string(),
        });
    }
    Ok(LoadedPlugin {
        path,
        descriptor: d,
        _library: library,
    })
}

/// `1.0` and `1.0.0` are the same version; compare numerically when both
/// parse, textually otherwise.
fn versions_agree(a: &str, b: &str) -> bool {
    match (
        a.parse::<xplugin_model::version::Version>(),
        b.parse::<xplugin_model::version::Version>(),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
