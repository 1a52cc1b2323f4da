//! Which files of a plugin folder a license must cover.
//!
//! A license lists the SHA-256 of the plugin's manifest and of **every file
//! that can hold code, whatever its name**: a file is code when its first
//! bytes are an ELF, PE (`MZ` with a `PE\0\0` header), Mach-O (thin or fat)
//! or WebAssembly header, or a `#!` script line; or when its name is a
//! library name (`.so`, `.so.N`, `.dll`, `.dylib`, in any case), even if its
//! content is not (yet) recognised. So an ELF file called `helper.bin` is
//! covered exactly like `x.so`, and swapping it is refused.
//!
//! Data files (icons, translations, JSON other than the manifest, models)
//! are **not** covered: they are installed with the plugin but not
//! integrity-protected by the license, so a vendor can ship and re-ship
//! them without re-licensing every device, and a device does not hash
//! megabytes of images at every boot. A plugin that interprets a data file
//! as code (a script without `#!`, say) must protect it itself.
//! `xplugin-pack license` lists the files it does not cover as warnings.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Why a file counts as code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// An ELF file (Linux shared object, executable, object file).
    Elf,
    /// A PE file (Windows DLL or executable).
    Pe,
    /// A Mach-O file (macOS), thin or universal.
    MachO,
    /// A WebAssembly module.
    Wasm,
    /// A script with a `#!` interpreter line.
    Script,
    /// Not recognised by content, but named like a library.
    LibraryName,
}

impl CodeKind {
    /// "an ELF file", "a library (by its name)", ... for messages.
    pub fn describe(self) -> &'static str {
        match self {
            CodeKind::Elf => "an ELF file",
            CodeKind::Pe => "a PE (Windows) file",
            CodeKind::MachO => "a Mach-O file",
            CodeKind::Wasm => "a WebAssembly module",
            CodeKind::Script => "a #! script",
            CodeKind::LibraryName => "a library (by its name)",
        }
    }
}

/// True for a file name that is loadable code: `.so` (also versioned
/// `.so.N`), `.dll`, `.dylib`, in any case.
pub fn is_library_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".so")
        || lower.ends_with(".dll")
        || lower.ends_with(".dylib")
        || lower.contains(".so.")
}

/// The kind of code in `bytes`, the first bytes of a file (64 are enough
/// for everything but the PE header, which [`code_kind`] reads where the
/// DOS header points).
fn kind_of_header(bytes: &[u8]) -> Option<CodeKind> {
    const MACH_O: [[u8; 4]; 5] = [
        [0xfe, 0xed, 0xfa, 0xce],
        [0xfe, 0xed, 0xfa, 0xcf],
        [0xce, 0xfa, 0xed, 0xfe],
        [0xcf, 0xfa, 0xed, 0xfe],
        [0xca, 0xfe, 0xba, 0xbe],
    ];
    let magic = bytes.get(..4)?;
    if magic == b"\x7fELF" {
        Some(CodeKind::Elf)
    } else if MACH_O.iter().any(|m| m == magic) {
        Some(CodeKind::MachO)
    } else if magic == b"\0asm" {
        Some(CodeKind::Wasm)
    } else if magic.starts_with(b"#!") {
        Some(CodeKind::Script)
    } else {
        None
    }
}

/// Whether the open file `file` is a PE file: `MZ`, and `PE\0\0` at the
/// offset the DOS header gives (bounded by the file's length).
fn is_pe(file: &mut File, header: &[u8], len: u64) -> io::Result<bool> {
    if header.get(..2) != Some(b"MZ".as_slice()) {
        return Ok(false);
    }
    let Some(offset) = header.get(0x3c..0x40) else {
        return Ok(false);
    };
    let offset = u64::from(u32::from_le_bytes([
        offset[0], offset[1], offset[2], offset[3],
    ]));
    if offset.saturating_add(4) > len {
        return Ok(false);
    }
    let mut signature = [0u8; 4];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut signature)?;
    Ok(&signature == b"PE\0\0")
}

/// Whether the file at `path` (named `name`) can hold code, and why. Reads
/// at most 68 bytes of it.
///
/// # Errors
///
/// The I/O error of opening or reading the file.
pub fn code_kind(path: &Path, name: &str) -> io::Result<Option<CodeKind>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut header = Vec::with_capacity(64);
    (&mut file).take(64).read_to_end(&mut header)?;
    if let Some(kind) = kind_of_header(&header) {
        return Ok(Some(kind));
    }
    if is_pe(&mut file, &header, len)? {
        return Ok(Some(CodeKind::Pe));
    }
    Ok(is_library_name(name).then_some(CodeKind::LibraryName))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(bytes: &[u8], name: &str) -> Option<CodeKind> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        code_kind(&path, name).expect("read")
    }

    fn pe(offset: u32, signature: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; offset as usize + 8];
        bytes[..2].copy_from_slice(b"MZ");
        bytes[0x3c..0x40].copy_from_slice(&offset.to_le_bytes());
        bytes[offset as usize..offset as usize + signature.len()].copy_from_slice(signature);
        bytes
    }

    #[test]
    fn code_is_recognised_by_content_whatever_its_name() {
        assert_eq!(
            kind(b"\x7fELF\x02\x01\x01", "helper.bin"),
            Some(CodeKind::Elf)
        );
        assert_eq!(kind(&pe(0x80, b"PE\0\0"), "tool.dat"), Some(CodeKind::Pe));
        assert_eq!(kind(&pe(300, b"PE\0\0"), "x"), Some(CodeKind::Pe));
        assert_eq!(
            kind(&[0xcf, 0xfa, 0xed, 0xfe, 7], "a"),
            Some(CodeKind::MachO)
        );
        assert_eq!(kind(b"\0asm\x01\0\0\0", "m.data"), Some(CodeKind::Wasm));
        assert_eq!(kind(b"#!/bin/sh\necho", "run"), Some(CodeKind::Script));
    }

    #[test]
    fn data_is_not_code_but_library_names_are() {
        assert_eq!(kind(b"\x89PNG\r\n", "icon.png"), None);
        assert_eq!(kind(b"MZ but no PE header", "readme.txt"), None);
        assert_eq!(kind(&pe(0x80, b"NE\0\0"), "old.exe"), None);
        // An MZ header pointing past the end of the file is not PE.
        assert_eq!(kind(&pe(0x40, b"")[..0x40], "cut"), None);
        assert_eq!(kind(b"", "empty"), None);
        assert_eq!(kind(b"not elf", "libx.so.1"), Some(CodeKind::LibraryName));
    }

    #[test]
    fn library_names() {
        for yes in ["a.so", "libxplugin.so", "X.DLL", "libfoo.so.1", "a.dylib"] {
            assert!(is_library_name(yes), "{yes}");
        }
        for no in ["a.json", "a.lic", "icon.png", "solo.txt"] {
            assert!(!is_library_name(no), "{no}");
        }
    }
}
