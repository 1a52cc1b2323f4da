//! Reading a plugin library's facts from the file, without loading it.
//!
//! `dlopen` runs constructors, so a library built for another ABI major,
//! another architecture or the other side (client vs controller) must be
//! refused before it is ever opened. ELF and PE headers give the machine type;
//! the exported `xplugin_abi` data symbol gives the ABI tag. Only the headers,
//! the symbol tables and the 16 bytes of the tag are read (through a read
//! cache), so inspecting a 2 MB library costs a few page reads.

use crate::window::Window;
use object::read::ReadCache;
use object::{Architecture, Object, ObjectKind, ObjectSection, ObjectSymbol};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use xplugin_abi::{
    kind_name, AbiTag, XPLUGIN_ABI_MAJOR, XPLUGIN_ABI_TAG_SYMBOL, XPLUGIN_ENTRY_SYMBOL,
    XPLUGIN_KIND_CLIENT, XPLUGIN_KIND_CONTROLLER, XPLUGIN_KIND_RUNTIME, XPLUGIN_MAGIC,
};
use xplugin_model::ProblemCode;

/// Container format of a library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BinaryFormat {
    /// Linux shared object.
    Elf,
    /// Windows DLL.
    Pe,
}

/// Processor architecture of a library or of this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64.
    X86_64,
    /// 32-bit x86.
    X86,
    /// AArch64 (arm64).
    Aarch64,
    /// 32-bit ARM (armv7).
    Arm,
    /// Anything else, by name.
    Other(String),
}

impl Arch {
    /// The architecture this program was built for.
    pub fn host() -> Arch {
        if cfg!(target_arch = "x86_64") {
            Arch::X86_64
        } else if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else if cfg!(target_arch = "arm") {
            Arch::Arm
        } else if cfg!(target_arch = "x86") {
            Arch::X86
        } else {
            Arch::Other(std::env::consts::ARCH.to_string())
        }
    }

    /// The architecture named `name` as [`Arch`]'s `Display` writes it
    /// (`x86_64`, `x86`, `aarch64`, `arm`; also `arm64`, `amd64`, `armv7`);
    /// other names stand for themselves.
    pub fn parse(name: &str) -> Arch {
        match name.trim().to_ascii_lowercase().as_str() {
            "x86_64" | "amd64" | "x86-64" => Arch::X86_64,
            "x86" | "i386" | "i686" => Arch::X86,
            "aarch64" | "arm64" => Arch::Aarch64,
            "arm" | "armv7" | "armhf" => Arch::Arm,
            other => Arch::Other(other.to_string()),
        }
    }

    fn from_object(a: Architecture) -> Arch {
        match a {
            Architecture::X86_64 => Arch::X86_64,
            Architecture::I386 => Arch::X86,
            Architecture::Aarch64 => Arch::Aarch64,
            Architecture::Arm => Arch::Arm,
            other => Arch::Other(format!("{other:?}").to_lowercase()),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arch::X86_64 => f.write_str("x86_64"),
            Arch::X86 => f.write_str("x86"),
            Arch::Aarch64 => f.write_str("aarch64"),
            Arch::Arm => f.write_str("arm"),
            Arch::Other(s) => f.write_str(s),
        }
    }
}

/// What the file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LibraryInfo {
    /// ELF or PE.
    pub format: BinaryFormat,
    /// Machine type.
    pub arch: Arch,
    /// The `xplugin_abi` tag, if the library exports a readable one.
    #[serde(serialize_with = "serialize_tag")]
    pub abi_tag: Option<AbiTag>,
    /// Whether `xplugin_entry` is exported.
    pub has_entry: bool,
}

impl LibraryInfo {
    /// `"1.0"` or `"none"`, for reports.
    pub fn abi_version(&self) -> String {
        match &self.abi_tag {
            Some(t) if t.magic == XPLUGIN_MAGIC => format!("{}.{}", t.abi_major, t.abi_minor),
            Some(_) => "bad magic".to_string(),
            None => "none".to_string(),
        }
    }
}

fn serialize_tag<S: serde::Serializer>(tag: &Option<AbiTag>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    match tag {
        None => s.serialize_none(),
        Some(t) => {
            let mut st = s.serialize_struct("AbiTag", 3)?;
            st.serialize_field("abi_major", &t.abi_major)?;
            st.serialize_field("abi_minor", &t.abi_minor)?;
            st.serialize_field("kind", kind_name(t.kind))?;
            st.end()
        }
    }
}

/// The file name of `path`, for messages: where the file lies (a staging
/// folder, an install root) is the caller's to say.
fn file(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Why a library file could not be inspected or was refused. Messages name
/// the file (its name, not its folder) and say what was expected and found;
/// [`BinaryError::hint`] says what to do, [`BinaryError::code`] which
/// problem it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BinaryError {
    /// The file could not be opened.
    #[error("cannot open library {}", file(path))]
    Open {
        /// The library.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not an ELF or PE shared library.
    #[error("{} is not a shared library this host can read ({detail})", file(path))]
    NotALibrary {
        /// The library.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// Built for another processor than this host (or than declared).
    #[error("{} is built for {found}, expected {expected}", file(path))]
    WrongArch {
        /// The library.
        path: PathBuf,
        /// The architecture it must have (this host's, or the declared one).
        expected: Arch,
        /// The library's architecture.
        found: Arch,
    },
    /// No `xplugin_abi` tag.
    #[error("{} does not export the data symbol `xplugin_abi`, so it is not an xplugin plugin or was built against a pre-release header", file(path))]
    NoAbiTag {
        /// The library.
        path: PathBuf,
    },
    /// The tag's magic number is wrong: not an xplugin tag.
    #[error("{}: the `xplugin_abi` tag has magic {found:#010x}, expected XPLG: the tag is damaged or not an xplugin tag", file(path))]
    BadAbiTag {
        /// The library.
        path: PathBuf,
        /// The magic found.
        found: u32,
    },
    /// Built against another ABI major version.
    #[error("{} is built against xplugin ABI {found_major}.{found_minor}, this host supports ABI {expected_major}.x", file(path))]
    AbiMajor {
        /// The library.
        path: PathBuf,
        /// The ABI major this host supports.
        expected_major: u16,
        /// The tag's major.
        found_major: u16,
        /// The tag's minor.
        found_minor: u16,
    },
    /// A library of another kind than its place needs (a client plugin in
    /// controller.zip, a plugin where the runtime belongs, ...).
    #[error("{} is a {}, but a {} is expected here: this is a {}", file(path), kind_name(*found), kind_name(*expected), kind_name(*found))]
    WrongKind {
        /// The library.
        path: PathBuf,
        /// The `XPLUGIN_KIND_*` expected.
        expected: u32,
        /// The `XPLUGIN_KIND_*` of its tag.
        found: u32,
    },
    /// No `xplugin_entry` export.
    #[error("{} exports no `xplugin_entry` function", file(path))]
    NoEntry {
        /// The library.
        path: PathBuf,
    },
}

impl BinaryError {
    /// The problem code of this refusal.
    pub fn code(&self) -> ProblemCode {
        match self {
            BinaryError::Open { .. } => ProblemCode::LibraryUnreadable,
            BinaryError::NotALibrary { .. } => ProblemCode::LibraryNotALibrary,
            BinaryError::WrongArch { .. } => ProblemCode::LibraryWrongArch,
            BinaryError::NoAbiTag { .. } => ProblemCode::LibraryNoAbiTag,
            BinaryError::BadAbiTag { .. } => ProblemCode::LibraryBadAbiTag,
            BinaryError::AbiMajor { .. } => ProblemCode::LibraryAbiMajor,
            BinaryError::WrongKind { .. } => ProblemCode::LibraryWrongKind,
            BinaryError::NoEntry { .. } => ProblemCode::LibraryNoEntry,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            BinaryError::Open { .. } => {
                "re-import the package; if it persists, ask the vendor for a new build".into()
            }
            BinaryError::NotALibrary { .. } => {
                "rebuild it as a shared library (.so for Linux, .dll for Windows)".into()
            }
            BinaryError::WrongArch { expected, .. } => format!(
                "rebuild the plugin for {expected} (e.g. cargo build --target {expected}-unknown-linux-gnu) and re-import"
            ),
            BinaryError::NoAbiTag { .. } => {
                "build it with XPLUGIN_DEFINE_ABI_TAG (C) or xplugin_abi::export_plugin! (Rust)"
                    .into()
            }
            BinaryError::BadAbiTag { .. } => {
                "rebuild the plugin against xplugin.h / xplugin-abi".into()
            }
            BinaryError::AbiMajor { expected_major, .. } => {
                format!("rebuild the plugin against xplugin ABI {expected_major}.x and re-import")
            }
            BinaryError::WrongKind {
                expected, found, ..
            } => match (*expected, *found) {
                (XPLUGIN_KIND_CONTROLLER, XPLUGIN_KIND_CLIENT) => {
                    "put client plugins into client.zip, not controller.zip".into()
                }
                (XPLUGIN_KIND_CLIENT, XPLUGIN_KIND_CONTROLLER) => {
                    "put controller plugins into controller.zip, not client.zip".into()
                }
                (XPLUGIN_KIND_RUNTIME, _) => {
                    "ship the xplugin runtime library (libxplugin.so / xplugin.dll) under the runtime's name".into()
                }
                _ => "ship the plugin's own library under the plugin's name".into(),
            },
            BinaryError::NoEntry { .. } => "build it with xplugin_abi::export_plugin! or export `const xplugin_descriptor *xplugin_entry(void)`".into(),
        }
    }

    /// The library concerned.
    pub fn path(&self) -> &Path {
        match self {
            BinaryError::Open { path, .. }
            | BinaryError::NotALibrary { path, .. }
            | BinaryError::WrongArch { path, .. }
            | BinaryError::NoAbiTag { path }
            | BinaryError::BadAbiTag { path, .. }
            | BinaryError::AbiMajor { path, .. }
            | BinaryError::WrongKind { path, .. }
            | BinaryError::NoEntry { path } => path,
        }
    }
}

/// Reads format, architecture and ABI tag of `path` without loading it.
///
/// # Errors
/// [`BinaryError::Open`] or [`BinaryError::NotALibrary`].
pub fn inspect_library(path: &Path) -> Result<LibraryInfo, BinaryError> {
    let file = File::open(path).map_err(|source| BinaryError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    // Positional reads through a window: through the file's own `Read +
    // Seek`, object's cache issued an `lseek` before each of the dozen
    // reads a library's headers take.
    let window = Window::whole(file).map_err(|source| BinaryError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let cache = ReadCache::new(window.reader());
    let obj = object::File::parse(&cache).map_err(|e| BinaryError::NotALibrary {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let format = match obj.format() {
        object::BinaryFormat::Elf => BinaryFormat::Elf,
        object::BinaryFormat::Pe => BinaryFormat::Pe,
        other => {
            return Err(BinaryError::NotALibrary {
                path: path.to_path_buf(),
                detail: format!("{other:?} object files are not supported"),
            })
        }
    };
    if obj.kind() != ObjectKind::Dynamic {
        return Err(BinaryError::NotALibrary {
            path: path.to_path_buf(),
            detail: format!("it is a {:?} object, not a shared library", obj.kind()),
        });
    }
    let arch = Arch::from_object(obj.architecture());
    let little_endian = obj.is_little_endian();

    // Exported addresses: ELF dynamic symbols, PE export table.
    let mut tag_addr = None;
    let mut has_entry = false;
    match format {
        BinaryFormat::Elf => {
            for sym in obj.dynamic_symbols() {
                if sym.is_undefined() {
                    continue;
                }
                match sym.name_bytes() {
                    Ok(n) if n == XPLUGIN_ABI_TAG_SYMBOL.as_bytes() => {
                        tag_addr = Some(sym.address())
                    }
                    Ok(n) if n == XPLUGIN_ENTRY_SYMBOL.as_bytes() => has_entry = true,
                    _ => {}
                }
            }
        }
        BinaryFormat::Pe => {
            if let Ok(exports) = obj.exports() {
                for e in exports.into_iter().flatten() {
                    let object::NameOrOrdinal::Name(name) = e.name() else {
                        continue;
                    };
                    if name == XPLUGIN_ABI_TAG_SYMBOL.as_bytes() {
                        if let object::ExportTarget::Address { address } = e.target() {
                            tag_addr = Some(address);
                        }
                    } else if name == XPLUGIN_ENTRY_SYMBOL.as_bytes() {
                        has_entry = true;
                    }
                }
            }
        }
    }
    let abi_tag = tag_addr.and_then(|addr| read_tag(&obj, &cache, addr, little_endian));
    Ok(LibraryInfo {
        format,
        arch,
        abi_tag,
        has_entry,
    })
}

fn read_tag<'d, R: object::ReadRef<'d>>(
    obj: &object::File<'d, R>,
    data: R,
    addr: u64,
    little_endian: bool,
) -> Option<AbiTag> {
    let size = AbiTag::SIZE as u64;
    for section in obj.sections() {
        let start = section.address();
        let end = start.checked_add(section.size())?;
        if addr >= start && addr.checked_add(size)? <= end {
            // Only the tag's bytes: `data_range` would read the whole
            // section, and a vendor's .rodata may be megabytes. A tag in a
            // NOBITS section (.bss) has no bytes in the file: None.
            let (offset, len) = section.file_range()?;
            let within = addr - start;
            if within.checked_add(size)? > len {
                return None;
            }
            let bytes = data.read_bytes_at(offset.checked_add(within)?, size).ok()?;
            return AbiTag::from_bytes(bytes, little_endian);
        }
    }
    None
}

/// Checks that `info` (from [`inspect_library`]) is a loadable xplugin library
/// of `expected_kind` (`XPLUGIN_KIND_*`) for this host's architecture.
///
/// # Errors
/// The first refusal, as [`check_library_for`].
pub fn check_library(
    path: &Path,
    info: &LibraryInfo,
    expected_kind: u32,
) -> Result<(), BinaryError> {
    check_library_for(path, info, expected_kind, &Arch::host())
}

/// Checks that `info` is a loadable xplugin library of `expected_kind` for
/// architecture `arch` (the vendor tool checks for the architecture a
/// package declares, a device for its own).
///
/// # Errors
/// The first refusal, in this order: architecture, missing tag, wrong magic,
/// ABI major, kind, no entry (the runtime library, kind RUNTIME, needs no
/// entry).
pub fn check_library_for(
    path: &Path,
    info: &LibraryInfo,
    expected_kind: u32,
    arch: &Arch,
) -> Result<(), BinaryError> {
    let path = || path.to_path_buf();
    if &info.arch != arch {
        return Err(BinaryError::WrongArch {
            path: path(),
            expected: arch.clone(),
            found: info.arch.clone(),
        });
    }
    let tag = info
        .abi_tag
        .ok_or_else(|| BinaryError::NoAbiTag { path: path() })?;
    if tag.magic != XPLUGIN_MAGIC {
        return Err(BinaryError::BadAbiTag {
            path: path(),
            found: tag.magic,
        });
    }
    if tag.abi_major != XPLUGIN_ABI_MAJOR {
        return Err(BinaryError::AbiMajor {
            path: path(),
            expected_major: XPLUGIN_ABI_MAJOR,
            found_major: tag.abi_major,
            found_minor: tag.abi_minor,
        });
    }
    if tag.kind != expected_kind {
        return Err(BinaryError::WrongKind {
            path: path(),
            expected: expected_kind,
            found: tag.kind,
        });
    }
    if expected_kind != XPLUGIN_KIND_RUNTIME && !info.has_entry {
        return Err(BinaryError::NoEntry { path: path() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: u32, major: u16) -> LibraryInfo {
        LibraryInfo {
            format: BinaryFormat::Elf,
            arch: Arch::host(),
            abi_tag: Some(AbiTag {
                magic: XPLUGIN_MAGIC,
                abi_major: major,
                abi_minor: 3,
                kind,
                reserved: 0,
            }),
            has_entry: true,
        }
    }

    #[test]
    fn kind_and_major_are_told_apart() {
        let p = Path::new("x/alpha.so");
        let kind =
            check_library(p, &info(XPLUGIN_KIND_CLIENT, 1), XPLUGIN_KIND_CONTROLLER).unwrap_err();
        assert_eq!(kind.code(), ProblemCode::LibraryWrongKind);
        let text = kind.to_string();
        assert!(text.contains("this is a client plugin"), "{text}");
        assert!(!text.contains("ABI"), "{text}");
        assert!(kind.hint().contains("client.zip"), "{}", kind.hint());
        let major = check_library(
            p,
            &info(XPLUGIN_KIND_CONTROLLER, 7),
            XPLUGIN_KIND_CONTROLLER,
        )
        .unwrap_err();
        assert_eq!(major.code(), ProblemCode::LibraryAbiMajor);
        assert!(major.to_string().contains("ABI 7.3"), "{major}");
        let other = if Arch::host() == Arch::Aarch64 {
            Arch::X86_64
        } else {
            Arch::Aarch64
        };
        let arch = check_library_for(
            p,
            &info(XPLUGIN_KIND_CONTROLLER, 1),
            XPLUGIN_KIND_CONTROLLER,
            &other,
        )
        .unwrap_err();
        assert_eq!(arch.code(), ProblemCode::LibraryWrongArch);
        assert!(check_library(
            p,
            &info(XPLUGIN_KIND_CONTROLLER, 1),
            XPLUGIN_KIND_CONTROLLER
        )
        .is_ok());
    }

    #[test]
    fn architecture_names() {
        assert_eq!(Arch::parse("arm64"), Arch::Aarch64);
        assert_eq!(Arch::parse("aarch64").to_string(), "aarch64");
        assert_eq!(Arch::parse("x86_64"), Arch::X86_64);
        assert_eq!(Arch::parse("riscv64"), Arch::Other("riscv64".into()));
    }

    #[test]
    fn a_text_file_is_not_a_library() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.so");
        std::fs::write(&p, b"hello").unwrap();
        let e = inspect_library(&p).unwrap_err();
        assert_eq!(e.code(), ProblemCode::LibraryNotALibrary, "{e}");
        assert!(e.to_string().contains("x.so"));
    }

    #[test]
    fn the_test_binary_is_an_executable_not_a_library() {
        let exe = std::env::current_exe().unwrap();
        // Test binaries are PIE executables; object reports them as Dynamic
        // or Executable depending on flags. Either way inspection must not panic.
        let _ = inspect_library(&exe);
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = inspect_library(Path::new("/nonexistent/plugin.so")).unwrap_err();
        assert_eq!(e.code(), ProblemCode::LibraryUnreadable);
        assert!(e.to_string().contains("plugin.so"), "{e}");
        assert_eq!(e.path(), Path::new("/nonexistent/plugin.so"));
    }
}
