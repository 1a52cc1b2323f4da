//! Entry names: the only part of an archive that decides where bytes land.
//!
//! A name is accepted only if it is a plain relative path made of ordinary
//! components that mean the same thing on Linux and on Windows (teach-pendant
//! HMI PCs run Windows), so nothing can escape the staging directory or land
//! somewhere other than what a reviewer reading the listing would expect.
//!
//! Collisions: two names collide when they are equal after Unicode NFC
//! normalisation and lower-casing. That catches `A.so`/`a.so` (the same file on
//! Windows and on macOS-formatted media) and NFD/NFC spellings of the same
//! accented name (macOS writes NFD), which would otherwise overwrite each other
//! or be installed twice depending on the filesystem.

use super::limits::Limits;
use unicode_normalization::UnicodeNormalization;
use xplugin_model::ProblemCode;

/// A validated entry name, split into its components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryName {
    /// The name exactly as stored (valid UTF-8, `/`-separated).
    pub text: String,
    /// The path components, without the trailing empty one of a directory.
    pub components: Vec<String>,
    /// Names ending in `/` are directory entries.
    pub is_dir: bool,
}

/// Why a name is refused: what was found and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameRefusal {
    pub code: ProblemCode,
    pub message: String,
    pub hint: String,
}

fn refuse(code: ProblemCode, message: impl Into<String>, hint: impl Into<String>) -> NameRefusal {
    NameRefusal {
        code,
        message: message.into(),
        hint: hint.into(),
    }
}

const REPACK: &str =
    "rebuild the package with plain relative file names (letters, digits, '.', '-', '_', '/')";

/// Windows device names that open a device instead of a file, whatever the extension.
const WINDOWS_DEVICES: &[&str] = &[
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// Shows a raw name in a message whatever it contains: invalid UTF-8 is
/// replaced and control characters are escaped, so a hostile name cannot
/// forge lines in a report or a terminal.
pub(crate) fn display_raw(raw: &[u8]) -> String {
    escape_controls(&String::from_utf8_lossy(raw))
}

fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || is_invisible_or_bidi(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that change how a name is displayed without being seen:
/// bidirectional overrides and isolates (`evil\u{202E}gnp.so` shows as
/// `evilos.png`), zero-width characters and the byte-order mark.
fn is_invisible_or_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Validates one raw entry name.
pub(crate) fn parse_entry_name(raw: &[u8], limits: &Limits) -> Result<EntryName, NameRefusal> {
    if raw.is_empty() {
        return Err(refuse(
            ProblemCode::PackageBadName,
            "the entry has an empty name",
            REPACK,
        ));
    }
    if raw.len() as u64 > limits.max_name_len {
        return Err(refuse(
            ProblemCode::PackageNameTooLong,
            format!(
                "the name is {} bytes long, the limit is {}",
                raw.len(),
                limits.max_name_len
            ),
            "shorten the file or folder names (or raise max_name_len in the host configuration)",
        ));
    }
    let text = std::str::from_utf8(raw).map_err(|_| {
        refuse(
            ProblemCode::PackageNameNotUtf8,
            "the name is not valid UTF-8",
            "rebuild the package with a zip tool that stores UTF-8 file names",
        )
    })?;
    check_characters(text)?;
    let (body, is_dir) = match text.strip_suffix('/') {
        Some(body) => (body, true),
        None => (text, false),
    };
    let mut components = Vec::new();
    for component in body.split('/') {
        check_component(component)?;
        components.push(component.to_string());
    }
    if components.len() as u64 > limits.max_depth {
        return Err(refuse(
            ProblemCode::PackageTooDeep,
            format!(
                "the name is {} folders deep, the limit is {}",
                components.len(),
                limits.max_depth
            ),
            "flatten the folder structure (or raise max_depth in the host configuration)",
        ));
    }
    Ok(EntryName {
        text: text.to_string(),
        components,
        is_dir,
    })
}

/// Characters a name may not hold anywhere: control and invisible
/// characters, and the separators and drive or stream markers of other
/// systems.
fn check_characters(text: &str) -> Result<(), NameRefusal> {
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        let what = if c == '\0' {
            "a NUL byte".to_string()
        } else {
            format!("the control character {}", c.escape_default())
        };
        return Err(refuse(
            ProblemCode::PackageNameControlCharacter,
            format!("the name contains {what}"),
            REPACK,
        ));
    }
    if let Some(c) = text.chars().find(|c| is_invisible_or_bidi(*c)) {
        return Err(refuse(
            ProblemCode::PackageNameInvisibleCharacter,
            format!(
                "the name contains the invisible or text-direction character U+{:04X}, which makes a name look like another",
                u32::from(c)
            ),
            REPACK,
        ));
    }
    if text.contains('\\') {
        return Err(refuse(
            ProblemCode::PackageBackslashInName,
            "the name contains a backslash ('\\'), a path separator on Windows (and the '..\\' traversal trick)",
            "use '/' as the folder separator; rebuild the package with a standard zip tool",
        ));
    }
    if text.starts_with('/') {
        return Err(refuse(
            ProblemCode::PackageAbsolutePath,
            "the name is an absolute path (starts with '/', or '//' for a UNC path)",
            REPACK,
        ));
    }
    if text.contains(':') {
        return Err(refuse(
            ProblemCode::PackageDriveOrStream,
            "the name contains ':' (a Windows drive letter like 'C:' or an alternate data stream)",
            REPACK,
        ));
    }
    Ok(())
}

fn check_component(component: &str) -> Result<(), NameRefusal> {
    match component {
        "" => Err(refuse(
            ProblemCode::PackageBadName,
            "the name has an empty path component ('//')",
            REPACK,
        )),
        "." | ".." => Err(refuse(
            ProblemCode::PackagePathTraversal,
            format!("the name contains a '{component}' component (path traversal)"),
            "a package must never refer outside its own folders; rebuild it",
        )),
        _ => {
            if let Some(c) = component.chars().find(|c| "<>\"|?*".contains(*c)) {
                return Err(refuse(
                    ProblemCode::PackageNameNotPortable,
                    format!("the name contains '{c}', which Windows does not allow in file names"),
                    REPACK,
                ));
            }
            if component.ends_with('.') || component.ends_with(' ') {
                return Err(refuse(
                    ProblemCode::PackageNameNotPortable,
                    format!(
                        "the component \"{component}\" ends with a dot or a space, which Windows silently strips"
                    ),
                    REPACK,
                ));
            }
            let stem = component
                .split('.')
                .next()
                .unwrap_or(component)
                .to_ascii_lowercase();
            if WINDOWS_DEVICES.contains(&stem.as_str()) {
                return Err(refuse(
                    ProblemCode::PackageNameNotPortable,
                    format!("the component \"{component}\" is a Windows device name"),
                    REPACK,
                ));
            }
            Ok(())
        }
    }
}

/// The key under which two names collide: NFC-normalised, then lower-cased.
pub(crate) fn collision_key(path: &str) -> String {
    let nfc: String = path.nfc().collect();
    nfc.to_lowercase().nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str) -> Result<EntryName, NameRefusal> {
        parse_entry_name(name.as_bytes(), &Limits::default())
    }

    #[test]
    fn plain_names_are_split() {
        let n = parse("plugindemo/res/icon.png").unwrap();
        assert_eq!(n.components, ["plugindemo", "res", "icon.png"]);
        assert!(!n.is_dir);
        let d = parse("plugindemo/").unwrap();
        assert_eq!(d.components, ["plugindemo"]);
        assert!(d.is_dir);
    }

    #[test]
    fn escapes_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "..\\x",
            "/etc/passwd",
            "//server/share/x",
            "C:/x",
            "C:x",
            "a\0b",
            "a\nb",
            "a//b",
            "./a",
            "a/./b",
            "a/con.txt",
            "a/b.",
            "a/b ",
            "a/evil\u{202E}gnp.so",
            "a/zero\u{200B}width",
            "a?b",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_entry_name(b"a\xffb", &Limits::default()).is_err());
    }

    #[test]
    fn limits_apply() {
        let limits = Limits {
            max_name_len: 10,
            max_depth: 2,
            ..Limits::default()
        };
        assert!(parse_entry_name(b"a/b", &limits).is_ok());
        assert!(parse_entry_name(b"a/b/c", &limits).is_err());
        assert!(parse_entry_name(b"abcdefghijk", &limits).is_err());
    }

    #[test]
    fn collisions_fold_case_and_normalisation() {
        assert_eq!(collision_key("P/A.so"), collision_key("p/a.SO"));
        // "é" precomposed (NFC) and as e + combining acute (NFD).
        assert_eq!(collision_key("p/caf\u{e9}"), collision_key("p/cafe\u{301}"));
        assert_ne!(collision_key("p/a"), collision_key("p/b"));
    }

    #[test]
    fn display_escapes_controls() {
        assert_eq!(display_raw(b"a\nb"), "a\\nb");
        assert_eq!(display_raw("a\u{202E}b".as_bytes()), "a\\u{202e}b");
    }
}
