//! The vendor's package format, checked per side on the entry names alone
//! (before any data is trusted): one folder per plugin, `NAME.json`,
//! `NAME.lic` and the libraries named after the folder, case-sensitively.

use super::archive::Entry;
use std::collections::{BTreeMap, BTreeSet};
use xplugin_model::manifest::Side;
use xplugin_model::{Problem, ProblemCode, Problems};

/// Which libraries a plugin folder holds (file names relative to the folder).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Libraries {
    /// `NAME.so`, the Linux build.
    pub so: Option<String>,
    /// `NAME.dll`, the Windows build (client plugins only).
    pub dll: Option<String>,
    /// The Linux ABI runtime, `xplugin.so` or `libxplugin.so`.
    pub runtime_so: Option<String>,
    /// The Windows ABI runtime, `xplugin.dll`.
    pub runtime_dll: Option<String>,
}

/// One plugin folder as found in an inner zip (paths filled in by the caller).
#[derive(Debug, Clone)]
pub(crate) struct FolderLayout {
    pub name: String,
    /// Files relative to the folder, `/`-separated, sorted.
    pub files: Vec<String>,
    pub libraries: Libraries,
}

const HINT_FORMAT: &str = "lay the package out as the vendor format requires: client.zip/NAME/{NAME.json, NAME.lic, NAME.so and/or NAME.dll, the xplugin runtime} and controller.zip/NAME/{NAME.json, NAME.lic, NAME.so}";

/// Checks the layout of one side; every problem goes to `problems`.
pub(crate) fn check_side(
    side: Side,
    label: &str,
    entries: &[Entry],
    problems: &mut Problems,
) -> Vec<FolderLayout> {
    let mut folders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in entries.iter().filter(|e| !e.litter) {
        let Some((folder, rest)) = entry.name.components.split_first() else {
            continue;
        };
        if rest.is_empty() && !entry.name.is_dir {
            problems.push(Problem::new(
                ProblemCode::LayoutFileOutsideFolder,
                entry.subject.clone(),
                "a file at the top of the archive, outside any plugin folder",
                format!("put every file inside its plugin's folder; {HINT_FORMAT}"),
            ));
            continue;
        }
        let files = folders.entry(folder.clone()).or_default();
        if !entry.name.is_dir && !rest.is_empty() {
            files.insert(rest.join("/"));
        }
    }
    if folders.is_empty() {
        problems.push(Problem::new(
            ProblemCode::LayoutNoPluginFolder,
            label,
            "the archive contains no plugin folder",
            HINT_FORMAT,
        ));
    }
    folders
        .into_iter()
        .map(|(name, files)| check_folder(side, label, name, files, problems))
        .collect()
}

fn check_folder(
    side: Side,
    label: &str,
    name: String,
    files: BTreeSet<String>,
    problems: &mut Problems,
) -> FolderLayout {
    let subject = format!("{label}: {name}/");
    // Only files directly in the folder count for the required ones.
    let top: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| !f.contains('/'))
        .collect();
    let find = |wanted: &str| top.contains(&wanted).then(|| wanted.to_string());
    let mut require = |extension: &str, why: &str| -> Option<String> {
        let wanted = format!("{name}.{extension}");
        if let Some(found) = find(&wanted) {
            return Some(found);
        }
        let same_ignoring_case = top.iter().find(|f| f.eq_ignore_ascii_case(&wanted));
        let same_extension: Vec<&&str> = top
            .iter()
            .filter(|f| {
                f.rsplit_once('.')
                    .is_some_and(|(_, ext)| ext.eq_ignore_ascii_case(extension))
            })
            .collect();
        let (code, message, hint) = match (same_ignoring_case, same_extension.as_slice()) {
            (Some(found), _) => (
                ProblemCode::LayoutWrongCase,
                format!("expected {wanted} ({why}), found {found}: names are case-sensitive"),
                format!("rename {found} to {wanted}"),
            ),
            (None, [found, ..]) => (
                ProblemCode::LayoutStemMismatch,
                format!(
                    "expected {wanted} ({why}), found {found}: the file stem must equal the folder name"
                ),
                format!("rename {found} to {wanted}, or the folder to match it"),
            ),
            (None, []) => (
                ProblemCode::LayoutMissingFile,
                format!("missing {wanted} ({why})"),
                HINT_FORMAT.to_string(),
            ),
        };
        problems.push(Problem::new(code, subject.clone(), message, hint));
        None
    };
    let _manifest = require("json", "the plugin manifest");
    let _license = require("lic", "the plugin license");
    let mut libraries = Libraries {
        runtime_so: find("xplugin.so").or_else(|| find("libxplugin.so")),
        runtime_dll: find("xplugin.dll"),
        ..Libraries::default()
    };
    match side {
        Side::Controller => {
            libraries.so = require("so", "the controller plugin library");
            libraries.dll = find(&format!("{name}.dll"));
        }
        Side::Client => {
            libraries.so = find(&format!("{name}.so"));
            libraries.dll = find(&format!("{name}.dll"));
            if libraries.so.is_none() && libraries.dll.is_none() {
                // Reported once, with the case/stem diagnosis for .so.
                let so = require("so", "the Linux build; or ship NAME.dll, the Windows build");
                libraries.so = so;
            }
            if libraries.so.is_some() && libraries.runtime_so.is_none() {
                problems.push(Problem::new(
                    ProblemCode::LayoutRuntimeMissing,
                    subject.clone(),
                    format!(
                        "{name}.so is present but the Linux ABI runtime is missing: expected xplugin.so or libxplugin.so next to it"
                    ),
                    "add the xplugin runtime the plugin was linked against to the plugin folder",
                ));
            }
            if libraries.dll.is_some() && libraries.runtime_dll.is_none() {
                problems.push(Problem::new(
                    ProblemCode::LayoutRuntimeMissing,
                    subject.clone(),
                    format!(
                        "{name}.dll is present but the Windows ABI runtime is missing: expected xplugin.dll next to it"
                    ),
                    "add the xplugin runtime the plugin was linked against to the plugin folder",
                ));
            }
        }
    }
    FolderLayout {
        name,
        files: files.into_iter().collect(),
        libraries,
    }
}
