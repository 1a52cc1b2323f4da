//! Reading a plugin library's facts from the file, without loading it.
//!
//! `dlopen` runs constructors, so a library built for another ABI major,
//! another architecture or the other side (client vs controller) must be
//! refused before it is ever opened. ELF and PE headers give the machine type;
//! the exported `xplugin_abi` data symbol gives the ABI tag. Only the headers,
//! the symbol tables and the 16 bytes of the tag are read (through a read
//! cache), so inspecting a 2 MB library costs a few page reads.

use object::read::ReadCache;
use object::{Architecture, Object, ObjectKind, ObjectSection, ObjectSymbol};
use serde::Serialize;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use xplugin_abi::{
    kind_name, AbiTag, XPLUGIN_ABI_MAJOR, XPLUGIN_ABI_TAG_SYMBOL, XPLUGIN_ENTRY_SYMBOL,
    XPLUGIN_MAGIC,
};
use xplugin_model::ProblemCode;

/// Container format of a library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BinaryFormat {
    /// Linux shared object.
    Elf,
    /// Windows DLL.
    Pe,
}

/// Processor architecture of a library or of this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// Why a library file could not be inspected or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BinaryError {
    /// The file could not be opened.
    #[error("cannot open library {path}: {source}")]
    Open {
        /// The library.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not an ELF or PE shared library.
    #[error("{path} is not a shared library this host can read ({detail}); rebuild it as a shared library (.so for Linux, .dll for Windows)")]
    NotALibrary {
        /// The library.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// Built for another processor.
    #[error("{path} is built for {found}, this host is {expected}; rebuild the plugin for {expected} (e.g. cargo build --target {expected}-unknown-linux-gnu)")]
    WrongArch {
        /// The library.
        path: PathBuf,
        /// This host's architecture.
        expected: Arch,
        /// The library's architecture.
        found: Arch,
    },
    /// No `xplugin_abi` tag.
    #[error("{path} does not export the data symbol `xplugin_abi`, so it is not an xplugin plugin or was built against a pre-release header; build it with XPLUGIN_DEFINE_ABI_TAG (C) or xplugin_abi::export_plugin! (Rust)")]
    NoAbiTag {
        /// The library.
        path: PathBuf,
    },
    /// The tag is there but wrong.
    #[error("{path}: ABI tag says {found}, expected {expected}; rebuild the plugin against xplugin ABI {XPLUGIN_ABI_MAJOR}.x")]
    AbiMismatch {
        /// The library.
        path: PathBuf,
        /// What this host accepts.
        expected: String,
        /// What the tag says.
        found: String,
    },
    /// No `xplugin_entry` export.
    #[error("{path} exports no `xplugin_entry` function; build it with xplugin_abi::export_plugin! or export `const xplugin_descriptor *xplugin_entry(void)`")]
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
            BinaryError::AbiMismatch { .. } => ProblemCode::LibraryAbiMajor,
            BinaryError::NoEntry { .. } => ProblemCode::LibraryNoEntry,
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
    let cache = ReadCache::new(file);
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
    let abi_tag = tag_addr.and_then(|addr| read_tag(&obj, addr, little_endian));
    Ok(LibraryInfo {
        format,
        arch,
        abi_tag,
        has_entry,
    })
}

fn read_tag<'d, R: object::ReadRef<'d>>(
    obj: &object::File<'d, R>,
    addr: u64,
    little_endian: bool,
) -> Option<AbiTag> {
    let size = AbiTag::SIZE as u64;
    for section in obj.sections() {
        let start = section.address();
        let end = start.checked_add(section.size())?;
        if addr >= start && addr.checked_add(size)? <= end {
            // A tag in a NOBITS section (.bss) has no bytes in the file: None.
            let bytes = section.data_range(addr, size).ok()??;
            return AbiTag::from_bytes(bytes, little_endian);
        }
    }
    None
}

/// Checks that `info` (from [`inspect_library`]) is a loadable xplugin library
/// of `expected_kind` (`XPLUGIN_KIND_*`) for this host's architecture.
///
/// # Errors
/// The first refusal: architecture, missing or wrong tag, wrong kind, no entry
/// (the runtime library, kind RUNTIME, needs no entry).
pub fn check_library(
    path: &Path,
    info: &LibraryInfo,
    expected_kind: u32,
) -> Result<(), BinaryError> {
    let host = Arch::host();
    if info.arch != host {
        return Err(BinaryError::WrongArch {
            path: path.to_path_buf(),
            expected: host,
            found: info.arch.clone(),
        });
    }
    let tag = info.abi_tag.ok_or_else(|| BinaryError::NoAbiTag {
        path: path.to_path_buf(),
    })?;
    let expected = format!(
        "magic XPLG, ABI {XPLUGIN_ABI_MAJOR}.x, {}",
        kind_name(expected_kind)
    );
    if tag.magic != XPLUGIN_MAGIC || tag.abi_major != XPLUGIN_ABI_MAJOR || tag.kind != expected_kind
    {
        let magic = if tag.magic == XPLUGIN_MAGIC {
            "XPLG".to_string()
        } else {
            format!("{:#010x}", tag.magic)
        };
        return Err(BinaryError::AbiMismatch {
            path: path.to_path_buf(),
            expected,
            found: format!(
                "magic {magic}, ABI {}.{}, {}",
                tag.abi_major,
                tag.abi_minor,
                kind_name(tag.kind)
            ),
        });
    }
    if expected_kind != xplugin_abi::XPLUGIN_KIND_RUNTIME && !info.has_entry {
        return Err(BinaryError::NoEntry {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_file_is_not_a_library() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.so");
        std::fs::write(&p, b"hello").unwrap();
        let e = inspect_library(&p).unwrap_err();
        assert!(matches!(e, BinaryError::NotALibrary { .. }), "{e}");
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
        assert!(e.to_string().contains("/nonexistent/plugin.so"));
    }
}
