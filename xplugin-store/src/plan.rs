//! What a commit changes ([`CommitPlan`]), and the checks done on it and on
//! its staged files before anything is written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use xplugin_model::{Problem, ProblemCode, Problems};

use super::generation::Generation;
use super::values::ValuesFile;

/// One plugin to install (new) or replace (same name, any version), unpacked
/// and verified in a [`StagingDir`](super::StagingDir).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedPlugin {
    /// Plugin name; becomes the directory name under `plugins/`.
    pub name: String,
    /// The version being installed, recorded in `state.json`.
    pub version: String,
    /// Whether the loaders load it.
    pub enabled: bool,
    /// Its unpacked directory, inside the staging area of the same root.
    /// Only regular files and directories are accepted; modes are not taken
    /// from it (installed files are 0644, directories 0755).
    pub dir: PathBuf,
    /// The configuration values it runs with in the new generation (the
    /// host's file, see [`crate::values`]); `None`: none stored.
    pub values: Option<ValuesFile>,
}

/// The change one commit makes to the current generation. Every installed
/// plugin not named here is carried over unchanged (hard links) with its
/// enabled flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitPlan {
    /// Plugins to install or replace.
    pub add_or_replace: Vec<StagedPlugin>,
    /// Names of installed plugins to remove.
    pub remove: Vec<String>,
}

/// Why a name cannot be a plugin directory, or `None` if it can.
pub fn plugin_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("it is empty".into())
    } else if name == "." || name == ".." {
        Some("it is a relative directory reference".into())
    } else if name.len() > 255 {
        Some(format!(
            "it is {} bytes long, at most 255 fit in a file name",
            name.len()
        ))
    } else {
        name.chars()
            .find(|c| matches!(c, '/' | '\\') || c.is_control())
            .map(|c| format!("it contains {c:?}, which cannot be part of a directory name"))
    }
}

/// Checks `plan` against `current` and the staged trees; collects every
/// problem.
pub(crate) fn check(
    plan: &CommitPlan,
    current: Option<&Generation>,
    staging_root: &Path,
) -> Problems {
    let mut problems = Problems::default();
    let mut seen = BTreeSet::new();
    for staged in &plan.add_or_replace {
        let subject = format!("plugin \"{}\"", staged.name);
        if let Some(reason) = plugin_name_problem(&staged.name) {
            problems.push(Problem::new(
                ProblemCode::StoreInvalidPluginName,
                &subject,
                format!("the name cannot be installed: {reason}"),
                "fix \"name\" in the plugin manifest",
            ));
        }
        if !seen.insert(staged.name.as_str()) {
            problems.push(Problem::new(
                ProblemCode::StorePlanInvalid,
                &subject,
                "the plan installs this name twice",
                "a package may contain each plugin once; this is a bug in the caller",
            ));
        }
        if staged.version.trim().is_empty() {
            problems.push(Problem::new(
                ProblemCode::StorePlanInvalid,
                &subject,
                "the version is empty",
                "fix \"version\" in the plugin manifest",
            ));
        }
        check_staged_dir(&subject, &staged.dir, staging_root, &mut problems);
    }
    for name in &plan.remove {
        let subject = format!("plugin \"{name}\"");
        if !seen.insert(name.as_str()) {
            problems.push(Problem::new(
                ProblemCode::StorePlanInvalid,
                &subject,
                "the plan names this plugin twice (installed and removed, or removed twice)",
                "this is a bug in the caller",
            ));
        }
        let installed = current.is_some_and(|g| g.state.plugins.contains_key(name));
        if !installed {
            problems.push(Problem::new(
                ProblemCode::StoreNotInstalled,
                &subject,
                "cannot remove it: it is not installed",
                "list installed plugins and check the name",
            ));
        }
    }
    if plan.add_or_replace.is_empty() && plan.remove.is_empty() {
        problems.push(Problem::new(
            ProblemCode::StorePlanInvalid,
            "commit plan",
            "it changes nothing",
            "nothing to do; do not commit an empty plan",
        ));
    }
    problems
}

fn check_staged_dir(subject: &str, dir: &Path, staging_root: &Path, problems: &mut Problems) {
    let inside = dir
        .canonicalize()
        .map(|d| d.starts_with(staging_root) && d != staging_root);
    match inside {
        Ok(true) => {}
        Ok(false) => {
            problems.push(Problem::new(ProblemCode::StoreStagedOutside,
                subject,
                format!(
                    "its files are at {}, expected inside the staging area {}",
                    dir.display(),
                    staging_root.display()
                ),
                "unpack into a directory from Store::staging() so the commit stays on one filesystem",
            ));
            return;
        }
        Err(e) => {
            problems.push(Problem::new(
                ProblemCode::StoreStagedUnreadable,
                subject,
                format!(
                    "its staged directory {} cannot be opened: {e}",
                    dir.display()
                ),
                "unpack the plugin into the staging directory before committing",
            ));
            return;
        }
    }
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => scan_tree(subject, dir, dir, problems),
        Ok(_) => problems.push(Problem::new(
            ProblemCode::StoreStagedSpecialFile,
            subject,
            format!("{} is not a directory", dir.display()),
            "stage each plugin as a directory of regular files",
        )),
        Err(e) => problems.push(Problem::new(
            ProblemCode::StoreStagedUnreadable,
            subject,
            format!("its staged directory {} cannot be read: {e}", dir.display()),
            "unpack the plugin into the staging directory before committing",
        )),
    }
}

/// Every entry under `dir` must be a regular file or a directory: the store
/// never installs symlinks, devices, FIFOs or sockets.
fn scan_tree(subject: &str, top: &Path, dir: &Path, problems: &mut Problems) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(Problem::new(
                ProblemCode::StoreStagedUnreadable,
                subject,
                format!("staged directory {} cannot be listed: {e}", dir.display()),
                "the staging area was changed while importing; run the import again",
            ));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                problems.push(Problem::new(
                    ProblemCode::StoreStagedUnreadable,
                    subject,
                    format!("staged directory {} cannot be listed: {e}", dir.display()),
                    "the staging area was changed while importing; run the import again",
                ));
                continue;
            }
        };
        let path = entry.path();
        let shown = path
            .strip_prefix(top)
            .unwrap_or(&path)
            .display()
            .to_string();
        match entry.file_type() {
            Ok(t) if t.is_dir() => scan_tree(subject, top, &path, problems),
            Ok(t) if t.is_file() => {}
            Ok(t) => {
                let kind = special_kind(&t);
                problems.push(Problem::new(
                    ProblemCode::StoreStagedSpecialFile,
                    format!("{subject}: {shown}"),
                    format!("expected a regular file or directory, found {kind}"),
                    "remove it from the package; plugins are installed as plain files only",
                ));
            }
            Err(e) => problems.push(Problem::new(
                ProblemCode::StoreStagedUnreadable,
                format!("{subject}: {shown}"),
                format!("cannot read its type: {e}"),
                "the staging area was changed while importing; run the import again",
            )),
        }
    }
}

/// What a file type that is neither a regular file nor a directory is.
fn special_kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    use std::os::unix::fs::FileTypeExt;
    if t.is_symlink() {
        return "a symbolic link";
    }
    #[cfg(unix)]
    {
        if t.is_fifo() {
            return "a FIFO";
        } else if t.is_socket() {
            return "a socket";
        } else if t.is_block_device() || t.is_char_device() {
            return "a device file";
        }
    }
    "not a regular file"
}
