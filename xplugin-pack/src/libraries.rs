//! The libraries of a plugin folder, inspected from their headers and
//! checked the way a device checks them before loading: the plugin's own
//! library (`NAME.so`, `NAME.dll`) must be an xplugin plugin of the folder's
//! side built against this ABI major, with an entry point; the client ABI
//! runtime (`xplugin.so`, `libxplugin.so`, `xplugin.dll`) must be a runtime.
//! With a declared architecture (`--controller-arch`, `--client-arch`) the
//! Linux (ELF) libraries must be built for it; Windows (PE) libraries are
//! checked for kind and ABI only (a client plugin may ship an aarch64 `.so`
//! for a Linux pendant and an x86-64 `.dll` for a Windows HMI). Other code
//! files (helpers) are shown, not checked: no device loads them itself.

use crate::folder::join;
use serde::Serialize;
use std::path::Path;
use xplugin_abi::{XPLUGIN_KIND_CLIENT, XPLUGIN_KIND_CONTROLLER, XPLUGIN_KIND_RUNTIME};
use xplugin_license::{code_kind, CodeKind};
use xplugin_model::{Problem, Problems, Side};
use xplugin_package::binary::{check_library_for, inspect_library, Arch, BinaryFormat};

/// What a report says about one library.
#[derive(Debug, Serialize)]
pub struct LibraryReport {
    /// The file, relative to the plugin folder.
    pub file: String,
    /// `plugin`, `runtime` or `helper`.
    pub role: &'static str,
    /// `ELF` or `PE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The architecture the file is built for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The ABI version of its tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abi: Option<String>,
    /// Whether `xplugin_entry` is exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<bool>,
    /// Why it could not be inspected, or why a device refuses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `XPLUGIN_KIND_*` a device requires of `file` in a plugin folder
/// `name` of `side`, or `None` for a helper it does not load itself.
fn required_kind(file: &str, name: &str, side: Side) -> Option<u32> {
    let plugin_kind = match side {
        Side::Client => XPLUGIN_KIND_CLIENT,
        Side::Controller => XPLUGIN_KIND_CONTROLLER,
    };
    if file == format!("{name}.so") || file == format!("{name}.dll") {
        Some(plugin_kind)
    } else if side == Side::Client && matches!(file, "xplugin.so" | "libxplugin.so" | "xplugin.dll")
    {
        Some(XPLUGIN_KIND_RUNTIME)
    } else {
        None
    }
}

/// Inspects every library of plugin folder `dir` (named `name`, on `side`,
/// its relative `files` as [`crate::folder::list_files`] gives them) and
/// checks the plugin's library and runtime as a device does, for `arch` when
/// declared. Problems name each file as `subject_prefix` + its path.
pub fn check_libraries(
    dir: &Path,
    name: &str,
    side: Side,
    files: &[String],
    arch: Option<&Arch>,
    subject_prefix: &str,
) -> (Vec<LibraryReport>, Problems) {
    let mut reports = Vec::new();
    let mut problems = Problems::default();
    for file in files {
        let path = join(dir, file);
        let leaf = file.rsplit('/').next().unwrap_or(file);
        // Libraries by content or name; scripts and Wasm are code, but not
        // libraries a host inspects.
        if !matches!(
            code_kind(&path, leaf),
            Ok(Some(
                CodeKind::Elf | CodeKind::Pe | CodeKind::MachO | CodeKind::LibraryName
            ))
        ) {
            continue;
        }
        let kind = required_kind(file, name, side);
        let mut report = LibraryReport {
            file: file.clone(),
            role: match kind {
                Some(XPLUGIN_KIND_RUNTIME) => "runtime",
                Some(_) => "plugin",
                None => "helper",
            },
            format: None,
            arch: None,
            abi: None,
            entry_point: None,
            error: None,
        };
        let checked = inspect_library(&path).and_then(|info| {
            report.format = Some(match info.format {
                BinaryFormat::Elf => "ELF".to_string(),
                BinaryFormat::Pe => "PE".to_string(),
            });
            report.arch = Some(info.arch.to_string());
            report.abi = Some(info.abi_version());
            report.entry_point = Some(info.has_entry);
            let Some(kind) = kind else { return Ok(()) };
            // PE files are for Windows HMIs: their architecture is shown, not checked.
            let target = match (arch, info.format) {
                (Some(declared), BinaryFormat::Elf) => declared.clone(),
                _ => info.arch.clone(),
            };
            check_library_for(&path, &info, kind, &target)
        });
        if let Err(e) = checked {
            report.error = Some(e.to_string());
            // A helper that is not a library this host reads is no refusal.
            if kind.is_some() {
                problems.push(Problem::from_error(
                    e.code(),
                    format!("{subject_prefix}{file}"),
                    &e,
                    e.hint(),
                ));
            }
        }
        reports.push(report);
    }
    (reports, problems)
}
