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
    kind_name, Descriptor, EntryFn, Module, ModuleList, ModulesFn, DESCRIPTOR_SIZE_1_0,
    XPLUGIN_ABI_MAJOR, XPLUGIN_ENTRY_SYMBOL, XPLUGIN_MAGIC, XPLUGIN_MAX_MODULES,
    XPLUGIN_MODULES_SYMBOL,
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

/// One entry module of an opened plugin: its name, priority and validated
/// descriptor (the host's copy; see [`read_descriptor`]).
#[derive(Debug)]
pub struct LoadedModule {
    /// Module name: the plugin's name for a library without a module list.
    pub name: String,
    /// Priority (higher runs first).
    pub priority: i32,
    /// The descriptor, as far as the plugin's `struct_size` covers it
    /// (fields beyond it read as NULL).
    pub descriptor: Descriptor,
}

/// An opened plugin library and its validated entry modules. Never unloaded
/// (see the module documentation).
pub struct LoadedPlugin {
    path: PathBuf,
    modules: Vec<LoadedModule>,
    listed: bool,
    _library: ManuallyDrop<libloading::Library>,
    load_bias: Option<usize>,
}

impl LoadedPlugin {
    /// The first module's descriptor (the only one of a library without a
    /// module list).
    pub fn descriptor(&self) -> &Descriptor {
        &self.modules[0].descriptor
    }

    /// The entry modules in start order: higher priority first, then name.
    /// Never empty.
    pub fn modules(&self) -> &[LoadedModule] {
        &self.modules
    }

    /// Whether the library lists its modules (`xplugin_modules`, ABI 1.1).
    pub fn has_module_list(&self) -> bool {
        self.listed
    }

    /// The library file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the loader placed it (`dl_iterate_phdr`'s `dlpi_addr`), where
    /// the loader says (glibc); `None` elsewhere.
    pub fn load_bias(&self) -> Option<usize> {
        self.load_bias
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("modules", &self.modules.len())
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

/// `library` and the address the loader placed it at (the `l_addr` of its
/// link map, what `dl_iterate_phdr` reports as `dlpi_addr`), where glibc
/// says it (`dlinfo(RTLD_DI_LINKMAP)`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn with_load_bias(library: libloading::Library) -> (libloading::Library, Option<usize>) {
    use libloading::os::unix::Library;
    use nix::libc;
    let handle = Library::from(library).into_raw();
    let mut map: *mut libc::c_void = std::ptr::null_mut();
    // SAFETY: `handle` is a live handle from dlopen (taken out of the
    // library just above and put back below); RTLD_DI_LINKMAP writes one
    // pointer to `map`.
    let rc = unsafe {
        libc::dlinfo(
            handle,
            libc::RTLD_DI_LINKMAP,
            (&mut map as *mut *mut libc::c_void).cast(),
        )
    };
    let bias = (rc == 0 && !map.is_null()).then(|| {
        // SAFETY: glibc's `struct link_map` (<link.h>, a public ABI) starts
        // with `ElfW(Addr) l_addr`, a pointer-sized integer; the map lives as
        // long as the library, which is never unloaded.
        unsafe { *map.cast::<usize>() }
    });
    // SAFETY: `handle` came from `into_raw` above and is not used elsewhere.
    let library = unsafe { Library::from_raw(handle) };
    (library.into(), bias)
}

/// Elsewhere the load address is not asked for (crash attribution finds
/// the library by its path).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn with_load_bias(library: libloading::Library) -> (libloading::Library, Option<usize>) {
    (library, None)
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
    let (library, load_bias) = with_load_bias(library);
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
    let expect = Expected {
        path: &path,
        kind: lib.kind(),
        name: expected_name,
        version: expected_version,
    };
    // SAFETY: `entry` is the library's `xplugin_entry` (above); the ABI says
    // it takes no arguments, does not allocate or start threads, and
    // returns NULL or a pointer to a static descriptor.
    let raw = unsafe { entry() };
    if raw.is_null() {
        return Err(expect.bad("xplugin_entry returned NULL".into()));
    }
    // SAFETY: non-NULL, and per the ABI a static descriptor of the
    // never-unloaded library.
    let main = unsafe { read_descriptor(raw, &expect) }?;
    // SAFETY: the ABI declares `xplugin_modules` as `xplugin_modules_fn`,
    // which `ModulesFn` mirrors. It is optional: absent, the library is one
    // module. The copied pointer stays valid (the library is never
    // unloaded).
    let list = unsafe { library.get::<ModulesFn>(XPLUGIN_MODULES_SYMBOL.as_bytes()) }
        .ok()
        .map(|f| *f);
    let (modules, listed) = match list {
        None => (
            vec![LoadedModule {
                name: expected_name.to_string(),
                priority: 0,
                descriptor: main,
            }],
            false,
        ),
        // SAFETY: the library's `xplugin_modules` (above): no arguments,
        // returns NULL or static data (the ABI).
        Some(f) => (unsafe { read_modules(f(), &expect) }?, true),
    };
    Ok(LoadedPlugin {
        path,
        modules,
        listed,
        _library: library,
        load_bias,
    })
}

/// What a descriptor must say: the manifest's plugin, of the host's side.
struct Expected<'a> {
    path: &'a Path,
    kind: u32,
    name: &'a str,
    version: &'a str,
}

impl Expected<'_> {
    fn bad(&self, problem: String) -> LoadError {
        LoadError::BadDescriptor {
            path: self.path.to_path_buf(),
            problem,
        }
    }
}

/// Copies and validates a descriptor: magic, ABI major, a `struct_size`
/// covering every 1.0 field, kind, the required functions, name and
/// version. Fields the plugin's `struct_size` does not cover read as NULL in
/// the copy, so the host never reads past the plugin's struct.
///
/// # Safety
/// `raw` is non-NULL and points to a descriptor of at least the 12 leading
/// bytes, and of `struct_size` bytes if its magic and major are right,
/// valid for as long as the library (static data, never unloaded).
unsafe fn read_descriptor(
    raw: *const Descriptor,
    expect: &Expected<'_>,
) -> Result<Descriptor, LoadError> {
    // SAFETY: only the leading fields (the first 12 bytes of any version)
    // are read, by value through the raw pointer, so no reference to a
    // possibly shorter struct exists before `struct_size` is checked.
    let (magic, abi_major, struct_size) =
        unsafe { ((*raw).magic, (*raw).abi_major, (*raw).struct_size) };
    if magic != XPLUGIN_MAGIC {
        return Err(expect.bad(format!("magic is {magic:#010x}, expected XPLG")));
    }
    if abi_major != XPLUGIN_ABI_MAJOR {
        return Err(expect.bad(format!(
            "ABI major is {abi_major}, this host speaks {XPLUGIN_ABI_MAJOR}"
        )));
    }
    // Append-only evolution: any 1.x descriptor holds at least the 1.0 fields.
    if (struct_size as usize) < DESCRIPTOR_SIZE_1_0 {
        return Err(expect.bad(format!(
            "struct_size is {struct_size}, an ABI 1.x descriptor has at least {DESCRIPTOR_SIZE_1_0} bytes"
        )));
    }
    // Whole fields only: a size between two fields covers the earlier ones.
    let covered = if struct_size as usize >= std::mem::size_of::<Descriptor>() {
        std::mem::size_of::<Descriptor>()
    } else {
        DESCRIPTOR_SIZE_1_0
    };
    // SAFETY: every field of `Descriptor` is an integer, a raw pointer or an
    // `Option` of a function pointer, for which all-zero bytes are valid
    // (0, NULL, `None`).
    let mut d: Descriptor = unsafe { std::mem::zeroed() };
    // SAFETY: the plugin's struct holds `struct_size` >= `covered` bytes
    // (the ABI; checked above), `d` is a distinct local of at least
    // `covered` bytes, and `covered` ends on a field boundary, so the copy
    // leaves every field whole: the plugin's value or zero.
    unsafe {
        std::ptr::copy_nonoverlapping(
            raw.cast::<u8>(),
            (&mut d as *mut Descriptor).cast::<u8>(),
            covered,
        )
    };
    if d.kind != expect.kind {
        return Err(expect.bad(format!(
            "it is a {}, expected a {}",
            kind_name(d.kind),
            kind_name(expect.kind)
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
        return Err(expect.bad(format!(
            "required functions are NULL: {}",
            missing.join(", ")
        )));
    }
    // SAFETY: the ABI requires `name` to be NULL or a static NUL-terminated
    // string; the magic and ABI major checked above say this is a 1.x
    // descriptor, so the field holds what the plugin put there.
    let name = unsafe { d.name_str() }.unwrap_or("<missing or not UTF-8>");
    if name != expect.name {
        return Err(LoadError::Mismatch {
            path: expect.path.to_path_buf(),
            field: "name",
            expected: expect.name.to_string(),
            found: name.to_string(),
        });
    }
    // SAFETY: as for `name`: NULL or a static NUL-terminated string.
    let version = unsafe { d.version_str() }.unwrap_or("<missing or not UTF-8>");
    if !versions_agree(version, expect.version) {
        return Err(LoadError::Mismatch {
            path: expect.path.to_path_buf(),
            field: "version",
            expected: expect.version.to_string(),
            found: version.to_string(),
        });
    }
    Ok(d)
}

/// Reads and validates a module list; returns the modules in start order
/// (higher priority first, then name).
///
/// # Safety
/// `raw` is what the library's `xplugin_modules` returned: NULL or static
/// data laid out as the ABI says, valid for as long as the library.
unsafe fn read_modules(
    raw: *const ModuleList,
    expect: &Expected<'_>,
) -> Result<Vec<LoadedModule>, LoadError> {
    if raw.is_null() {
        return Err(expect.bad("xplugin_modules returned NULL".into()));
    }
    // SAFETY: the three leading fields (12 bytes) of any version, read by
    // value before `struct_size` is known.
    let (magic, abi_major, struct_size) =
        unsafe { ((*raw).magic, (*raw).abi_major, (*raw).struct_size) };
    if magic != XPLUGIN_MAGIC || abi_major != XPLUGIN_ABI_MAJOR {
        return Err(expect.bad(format!(
            "the module list has magic {magic:#010x} and ABI major {abi_major}, expected XPLG and {XPLUGIN_ABI_MAJOR}"
        )));
    }
    if (struct_size as usize) < std::mem::size_of::<ModuleList>() {
        return Err(expect.bad(format!(
            "the module list's struct_size is {struct_size}, expected at least {}",
            std::mem::size_of::<ModuleList>()
        )));
    }
    // SAFETY: `struct_size` covers the whole 1.1 list (checked above).
    let (count, entries) = unsafe { ((*raw).count, (*raw).modules) };
    if count == 0 || count > XPLUGIN_MAX_MODULES || entries.is_null() {
        return Err(expect.bad(format!(
            "the module list has {count} modules (at {entries:p}); expected 1 to {XPLUGIN_MAX_MODULES}"
        )));
    }
    let mut modules: Vec<LoadedModule> = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        // SAFETY: `entries` holds `count` pointers (the ABI), `i < count`.
        let m = unsafe { *entries.add(i) };
        if m.is_null() {
            return Err(expect.bad(format!("module {} of {count} is NULL", i + 1)));
        }
        // SAFETY: non-NULL; the leading field of any version.
        let size = unsafe { (*m).struct_size } as usize;
        if size < std::mem::size_of::<Module>() {
            return Err(expect.bad(format!(
                "module {} has struct_size {size}, expected at least {}",
                i + 1,
                std::mem::size_of::<Module>()
            )));
        }
        // SAFETY: `struct_size` covers the whole 1.1 module.
        let (priority, name_ptr, descriptor) =
            unsafe { ((*m).priority, (*m).name, (*m).descriptor) };
        let name = if name_ptr.is_null() {
            None
        } else {
            // SAFETY: non-NULL and, per the ABI, a static NUL-terminated
            // string.
            unsafe { std::ffi::CStr::from_ptr(name_ptr) }.to_str().ok()
        };
        let name = match name {
            Some(n) if module_name_ok(n) => n.to_string(),
            other => {
                return Err(expect.bad(format!(
                "module {} has the name {:?}; a module name is 1 to 64 bytes of A-Z a-z 0-9 _ . -",
                i + 1,
                other.unwrap_or("<missing or not UTF-8>")
            )))
            }
        };
        if modules.iter().any(|o| o.name == name) {
            return Err(expect.bad(format!("two modules are named \"{name}\"")));
        }
        if descriptor.is_null() {
            return Err(expect.bad(format!("module \"{name}\" has no descriptor")));
        }
        // SAFETY: non-NULL and static per the ABI (a module's descriptor
        // follows the rules of `xplugin_entry`'s).
        let descriptor = unsafe { read_descriptor(descriptor, expect) }.map_err(|e| match e {
            LoadError::BadDescriptor { path, problem } => LoadError::BadDescriptor {
                path,
                problem: format!("module \"{name}\": {problem}"),
            },
            other => other,
        })?;
        modules.push(LoadedModule {
            name,
            priority,
            descriptor,
        });
    }
    modules.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(modules)
}

fn module_name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
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
