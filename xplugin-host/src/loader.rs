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

/// `dlopen(path, RTLD_NOW | RTLD_LOCAL)` (`LoadLibraryW` on Windows).
///
/// # Safety
/// Runs the library's constructors (and those of what it links against) with
/// the host's privileges: `path` must have passed every package check.
#[cfg(unix)]
unsafe fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: libloading's only requirement is that running the library's
    // initialisers is sound, which our caller guarantees (the checks passed).
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map(Into::into)
}

/// `LoadLibraryW(path)`.
///
/// # Safety
/// As the Unix version: `path` must have passed every package check.
#[cfg(windows)]
unsafe fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    // SAFETY: as for the Unix version: our caller guarantees the checks.
    unsafe { libloading::Library::new(path) }
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
    // SAFETY: `lib` is a checked runtime library (ABI tag of kind runtime,
    // architecture), and our caller guarantees the package checks.
    let l = unsafe { open_library(lib.path()) }.map_err(|source| LoadError::Open {
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
    // SAFETY: `lib` is a `CheckedLibrary` (architecture, ABI tag, kind read
    // from the file) and our caller guarantees the other package checks.
    let library = unsafe { open_library(&path) }.map_err(|source| LoadError::Open {
        path: path.clone(),
        source,
    })?;
    let library = ManuallyDrop::new(library);
    // SAFETY: the ABI declares `xplugin_entry` as `xplugin_entry_fn`, which
    // `EntryFn` mirrors; the check before loading found it exported as a
    // function. The copied pointer stays valid because the library is never
    // unloaded (`ManuallyDrop`).
    let entry: EntryFn = *unsafe { library.get::<EntryFn>(XPLUGIN_ENTRY_SYMBOL.as_bytes()) }
        .map_err(|source| LoadError::NoEntry {
            path: path.clone(),
            source,
        })?;
    let bad = |problem: String| LoadError::BadDescriptor {
        path: path.clone(),
        problem,
    };
    // SAFETY: `entry` is the library's `xplugin_entry` (above); the ABI says
    // it takes no arguments, does not allocate or start threads, and
    // returns NULL or a pointer to a static descriptor.
    let raw = unsafe { entry() };
    if raw.is_null() {
        return Err(bad("xplugin_entry returned NULL".into()));
    }
    /// The leading fields every ABI version puts first, read before the
    /// descriptor's size is known.
    struct Head {
        magic: u32,
        abi_major: u16,
        struct_size: u32,
    }
    // SAFETY: `raw` is non-NULL and, per the ABI, points to the plugin's
    // static descriptor, which lives as long as the never-unloaded library.
    // Only the leading fields (the first 12 bytes of any version) are read,
    // by value through the raw pointer, so no reference to a possibly
    // shorter struct exists before `struct_size` is checked.
    let d = unsafe {
        Head {
            magic: (*raw).magic,
            abi_major: (*raw).abi_major,
            struct_size: (*raw).struct_size,
        }
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
    // SAFETY: `struct_size` says the plugin's descriptor holds every 1.0
    // field, and it lives for 'static (static data of a library that is
    // never unloaded); the host never writes to it.
    let d: &'static Descriptor = unsafe { &*raw };
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
    // SAFETY: the ABI requires `name` to be NULL or a static NUL-terminated
    // string; the magic and ABI major checked above say this is a 1.x
    // descriptor, so the field holds what the plugin put there.
    let name = unsafe { d.name_str() }.unwrap_or("<missing or not UTF-8>");
    if name != expected_name {
        return Err(LoadError::Mismatch {
            path,
            field: "name",
            expected: expected_name.to_string(),
            found: name.to_string(),
        });
    }
    // SAFETY: as for `name`: NULL or a static NUL-terminated string.
    let version = unsafe { d.version_str() }.unwrap_or("<missing or not UTF-8>");
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
