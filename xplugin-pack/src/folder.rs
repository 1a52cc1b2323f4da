//! A plugin folder on the vendor's disk (`NAME/` with `NAME.json`,
//! `NAME.lic`, libraries and data): its manifest and its files.

use crate::error::PackError;
use std::io::Read;
use std::path::{Path, PathBuf};
use xplugin_license::{code_kind, CodeKind};
use xplugin_model::{parse_manifest, Manifest, Problem, ProblemCode, Problems, Side};

/// Largest manifest read (the importer's own limit is lower).
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
/// Deepest sub-folder and most files walked in one plugin folder.
const MAX_DEPTH: usize = 8;
const MAX_FILES: usize = 10_000;

/// A plugin folder with a valid manifest.
#[derive(Debug, Clone)]
pub struct PluginFolder {
    /// Folder name = plugin name.
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// The parsed manifest.
    pub manifest: Manifest,
}

impl PluginFolder {
    /// `controller plugin "NAME"`.
    pub fn subject(&self) -> String {
        self.manifest.side.subject(&self.name)
    }
}

/// Operating-system litter that packing skips and importing ignores.
pub fn is_litter(name: &str) -> bool {
    matches!(name, ".DS_Store" | "Thumbs.db" | "desktop.ini" | "__MACOSX") || name.starts_with("._")
}

/// The folder's name as UTF-8.
///
/// # Errors
///
/// [`PackError::Usage`] when the path has no UTF-8 final component.
pub fn folder_name(dir: &Path) -> Result<String, PackError> {
    dir.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            PackError::Usage(format!(
                "{} does not name a plugin folder (expected a path ending in the plugin name)",
                dir.display()
            ))
        })
}

/// Reads `dir/NAME.json` and validates it for `side`, or for whichever side
/// the manifest declares when `side` is `None`.
///
/// # Errors
///
/// [`PackError::Io`] when the manifest cannot be read,
/// [`PackError::Refused`] with the manifest's problems.
pub fn read_plugin_folder(dir: &Path, side: Option<Side>) -> Result<PluginFolder, PackError> {
    let name = folder_name(dir)?;
    let path = dir.join(format!("{name}.json"));
    let file = std::fs::File::open(&path).map_err(PackError::io(
        "cannot read the plugin manifest",
        &path,
        "a plugin folder NAME/ must hold NAME.json (the folder name is the plugin name)",
    ))?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(PackError::io(
            "cannot read the plugin manifest",
            &path,
            "check the file's permissions",
        ))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(PackError::Refused {
            what: format!("cannot use plugin folder {}", dir.display()),
            problems: Problems(vec![Problem::new(
                ProblemCode::ManifestTooLarge,
                path.display().to_string(),
                format!("the manifest is larger than {MAX_MANIFEST_BYTES} bytes"),
                "a manifest is a small JSON file; check that this is the right file",
            )]),
        });
    }
    let sides = match side {
        Some(s) => vec![s],
        None => vec![Side::Controller, Side::Client],
    };
    let mut best: Option<Problems> = None;
    for s in sides {
        let outcome = parse_manifest(s, &name, &bytes);
        if let Some(manifest) = outcome.manifest {
            return Ok(PluginFolder {
                name,
                dir: dir.to_path_buf(),
                manifest,
            });
        }
        // Report the side whose key the manifest at least has (fewest errors).
        let errors = outcome.problems.errors().count();
        if best.as_ref().is_none_or(|b| errors < b.errors().count()) {
            best = Some(outcome.problems);
        }
    }
    Err(PackError::Refused {
        what: format!("the manifest {} is refused", path.display()),
        problems: best.unwrap_or_default(),
    })
}

/// Every file under `dir` (any depth) as `/`-separated relative paths,
/// sorted, skipping OS litter.
///
/// # Errors
///
/// [`PackError::Io`] on read errors, [`PackError::Refused`] for symlinks,
/// special files, too deep or too many files.
pub fn list_files(dir: &Path) -> Result<Vec<String>, PackError> {
    let mut out = Vec::new();
    let mut problems = Problems::default();
    walk(dir, "", 0, &mut out, &mut problems)?;
    if problems.has_errors() {
        return Err(PackError::Refused {
            what: format!("plugin folder {} cannot be packed", dir.display()),
            problems,
        });
    }
    out.sort();
    Ok(out)
}

fn walk(
    dir: &Path,
    prefix: &str,
    depth: usize,
    out: &mut Vec<String>,
    problems: &mut Problems,
) -> Result<(), PackError> {
    let read = PackError::io("cannot list folder", dir, "check the folder's permissions");
    let entries = std::fs::read_dir(dir).map_err(read)?;
    for entry in entries {
        let entry = entry.map_err(PackError::io(
            "cannot list folder",
            dir,
            "check the folder's permissions",
        ))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            problems.push(Problem::new(
                ProblemCode::PackUnusableFile,
                entry.path().display().to_string(),
                "the file name is not UTF-8",
                "rename the file",
            ));
            continue;
        };
        if is_litter(&name) {
            continue;
        }
        let relative = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type().map_err(PackError::io(
            "cannot read",
            entry.path(),
            "check the file's permissions",
        ))?;
        if kind.is_dir() {
            if depth + 1 > MAX_DEPTH {
                problems.push(Problem::new(
                    ProblemCode::PackUnusableFile,
                    entry.path().display().to_string(),
                    format!("folders are nested deeper than {MAX_DEPTH} levels"),
                    "flatten the plugin folder",
                ));
                continue;
            }
            walk(&entry.path(), &relative, depth + 1, out, problems)?;
        } else if kind.is_file() {
            out.push(relative);
            if out.len() > MAX_FILES {
                problems.push(Problem::new(
                    ProblemCode::PackUnusableFile,
                    dir.display().to_string(),
                    format!("more than {MAX_FILES} files"),
                    "a plugin folder holds a plugin, not a file tree",
                ));
                return Ok(());
            }
        } else {
            problems.push(Problem::new(
                ProblemCode::PackUnusableFile,
                entry.path().display().to_string(),
                "a symlink or special file; packages hold only regular files and folders",
                "replace the link with a copy of the file it points to",
            ));
        }
    }
    Ok(())
}

/// How a license treats each file of a plugin folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// The files a license covers: `NAME.json` and every file that can hold
    /// code ([`xplugin_license::coverage`]), with why.
    pub covered: Vec<(String, Option<CodeKind>)>,
    /// Data files, installed but not integrity-protected.
    pub not_covered: Vec<String>,
}

/// Sorts `files` of `folder` (relative paths from [`list_files`]) into what
/// a license covers and what it does not, as devices check it (the `.lic`
/// itself is neither).
///
/// # Errors
///
/// [`PackError::Io`] when a file cannot be read.
pub fn coverage(folder: &PluginFolder, files: &[String]) -> Result<Coverage, PackError> {
    let manifest = format!("{}.json", folder.name);
    let license = format!("{}.lic", folder.name);
    let mut out = Coverage::default();
    for f in files.iter().filter(|f| **f != license) {
        let path = join(&folder.dir, f);
        let name = f.rsplit('/').next().unwrap_or(f);
        let kind = code_kind(&path, name).map_err(PackError::io(
            "cannot read",
            &path,
            "check the file's permissions",
        ))?;
        if *f == manifest || kind.is_some() {
            out.covered.push((f.clone(), kind));
        } else {
            out.not_covered.push(f.clone());
        }
    }
    Ok(out)
}

/// Joins a `/`-separated relative path to `dir`.
pub fn join(dir: &Path, relative: &str) -> PathBuf {
    relative
        .split('/')
        .fold(dir.to_path_buf(), |p, c| p.join(c))
}
