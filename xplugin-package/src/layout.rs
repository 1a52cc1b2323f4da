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
    let folder = Folder {
        subject: format!("{label}: {name}/"),
        // Only files directly in the folder count for the required ones.
        top: files
            .iter()
            .map(String::as_str)
            .filter(|f| !f.contains('/'))
            .collect(),
        name: &name,
    };
    let _manifest = folder.require("json", "the plugin manifest", problems);
    let _license = folder.require("lic", "the plugin license", problems);
    let mut libraries = Libraries {
        runtime_so: folder
            .find("xplugin.so")
            .or_else(|| folder.find("libxplugin.so")),
        runtime_dll: folder.find("xplugin.dll"),
        ..Libraries::default()
    };
    match side {
        Side::Controller => {
            libraries.so = folder.require("so", "the controller plugin library", problems);
            libraries.dll = folder.find(&format!("{name}.dll"));
        }
        Side::Client => folder.client_libraries(&mut libraries, problems),
    }
    FolderLayout {
        name,
        files: files.into_iter().collect(),
        libraries,
    }
}

/// One plugin folder's top-level files, for the checks of the format.
struct Folder<'a> {
    name: &'a str,
    subject: String,
    top: Vec<&'a str>,
}

impl Folder<'_> {
    fn find(&self, wanted: &str) -> Option<String> {
        self.top.contains(&wanted).then(|| wanted.to_string())
    }

    /// `NAME.extension`, or a problem saying what was found instead (the
    /// same name in other case, or another stem with that extension).
    fn require(&self, extension: &str, why: &str, problems: &mut Problems) -> Option<String> {
        let wanted = format!("{}.{extension}", self.name);
        if let Some(found) = self.find(&wanted) {
            return Some(found);
        }
        let same_ignoring_case = self.top.iter().find(|f| f.eq_ignore_ascii_case(&wanted));
        let same_extension = self.top.iter().find(|f| {
            f.rsplit_once('.')
                .is_some_and(|(_, ext)| ext.eq_ignore_ascii_case(extension))
        });
        let (code, message, hint) = match (same_ignoring_case, same_extension) {
            (Some(found), _) => (
                ProblemCode::LayoutWrongCase,
                format!("expected {wanted} ({why}), found {found}: names are case-sensitive"),
                format!("rename {found} to {wanted}"),
            ),
            (None, Some(found)) => (
                ProblemCode::LayoutStemMismatch,
                format!(
                    "expected {wanted} ({why}), found {found}: the file stem must equal the folder name"
                ),
                format!("rename {found} to {wanted}, or the folder to match it"),
            ),
            (None, None) => (
                ProblemCode::LayoutMissingFile,
                format!("missing {wanted} ({why})"),
                HINT_FORMAT.to_string(),
            ),
        };
        problems.push(Problem::new(code, self.subject.clone(), message, hint));
        None
    }

    /// A client plugin: NAME.so and/or NAME.dll, each with its ABI runtime.
    fn client_libraries(&self, libraries: &mut Libraries, problems: &mut Problems) {
        let name = self.name;
        libraries.so = self.find(&format!("{name}.so"));
        libraries.dll = self.find(&format!("{name}.dll"));
        if libraries.so.is_none() && libraries.dll.is_none() {
            // Reported once, with the case/stem diagnosis for .so.
            libraries.so = self.require(
                "so",
                "the Linux build; or ship NAME.dll, the Windows build",
                problems,
            );
        }
        let missing_runtime = |library: &str, runtimes: &str| {
            Problem::new(
                ProblemCode::LayoutRuntimeMissing,
                self.subject.clone(),
                format!("{library} is present but the {runtimes} next to it"),
                "add the xplugin runtime the plugin was linked against to the plugin folder",
            )
        };
        if libraries.so.is_some() && libraries.runtime_so.is_none() {
            problems.push(missing_runtime(
                &format!("{name}.so"),
                "Linux ABI runtime is missing: expected xplugin.so or libxplugin.so",
            ));
        }
        if libraries.dll.is_some() && libraries.runtime_dll.is_none() {
            problems.push(missing_runtime(
                &format!("{name}.dll"),
                "Windows ABI runtime is missing: expected xplugin.dll",
            ));
        }
    }
}
