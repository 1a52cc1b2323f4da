//! Generations: immutable installed sets under `ROOT/generations/<N>`, their
//! `state.json`, and the names used in `generations/` while building or
//! removing one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{StoreError, HINT_DISK};
use super::fsutil;

/// File name of a generation's state inside its directory.
pub const STATE_FILE: &str = "state.json";
/// Directory holding the plugin trees inside a generation.
pub const PLUGINS_DIR: &str = "plugins";
/// Suffix of a generation being built (`generations/<N>.tmp`).
pub const TMP_SUFFIX: &str = ".tmp";
/// Suffix of a generation being removed (`generations/<N>.trash`); renaming
/// to it first makes removal atomic from the point of view of a listing.
pub const TRASH_SUFFIX: &str = ".trash";

/// The contents of `generations/<N>/state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationState {
    /// This generation's number `N`.
    pub generation: u64,
    /// The generation that was current when this one was committed, if any.
    /// It is kept on disk for [`Store::rollback`](super::Store::rollback)
    /// until the next commit.
    pub previous: Option<u64>,
    /// When it was committed, seconds since the Unix epoch (device clock).
    pub created_unix: u64,
    /// Installed plugins by name.
    pub plugins: BTreeMap<String, PluginRecord>,
    /// The install transaction that committed this generation, if any (how
    /// recovery knows a transaction committed when the process died between
    /// the switch and its record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
}

/// One plugin's record in [`GenerationState::plugins`] (what `state.json`
/// stores about it; the lifecycle state of a loaded plugin is another thing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// The installed version, as the package declared it.
    pub version: String,
    /// Whether the loaders load it.
    pub enabled: bool,
}

/// One installed plugin, as listed by [`Generation::plugins`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPlugin {
    /// Plugin name (also its directory name under `plugins/`).
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Whether the loaders load it.
    pub enabled: bool,
}

/// A committed generation: its number, its directory and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The generation number `N`.
    pub number: u64,
    /// `ROOT/generations/<N>`.
    pub dir: PathBuf,
    /// The parsed `state.json`.
    pub state: GenerationState,
}

impl Generation {
    /// The directory of an installed plugin (`<dir>/plugins/<name>`), or
    /// `None` if this generation does not contain `name`. Only names from the
    /// state are joined, so the result never leaves the generation.
    pub fn plugin_dir(&self, name: &str) -> Option<PathBuf> {
        self.state
            .plugins
            .contains_key(name)
            .then(|| self.dir.join(PLUGINS_DIR).join(name))
    }

    /// Every installed plugin's name and directory, sorted by name.
    pub fn plugin_dirs(&self) -> Vec<(String, PathBuf)> {
        self.state
            .plugins
            .keys()
            .map(|name| (name.clone(), self.dir.join(PLUGINS_DIR).join(name)))
            .collect()
    }

    /// Every installed plugin's version, by name.
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.state
            .plugins
            .iter()
            .map(|(name, p)| (name.clone(), p.version.clone()))
            .collect()
    }

    /// The installed plugins, sorted by name.
    pub fn plugins(&self) -> Vec<InstalledPlugin> {
        self.state
            .plugins
            .iter()
            .map(|(name, p)| InstalledPlugin {
                name: name.clone(),
                version: p.version.clone(),
                enabled: p.enabled,
            })
            .collect()
    }

    /// Reads and checks `generations_dir/<number>/state.json`.
    pub(crate) fn load(generations_dir: &Path, number: u64) -> Result<Generation, StoreError> {
        let dir = generations_dir.join(number.to_string());
        let state_path = dir.join(STATE_FILE);
        let bytes = std::fs::read(&state_path).map_err(|e| {
            StoreError::io(
                "read generation state",
                &state_path,
                e,
                "the generation is incomplete or was removed by hand; run the import again or restore from backup",
            )
        })?;
        let state: GenerationState =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::StateJson {
                path: state_path.clone(),
                source: e,
                hint: "state.json was modified outside xplugin; restore it or run the import again"
                    .into(),
            })?;
        if state.generation != number {
            return Err(StoreError::Inconsistent {
                path: state_path,
                expected: format!("\"generation\": {number}"),
                found: format!("\"generation\": {}", state.generation),
                hint: "state.json was copied or edited by hand; restore the original".into(),
            });
        }
        // Names are joined to paths later: one edited by hand must not lead
        // outside the generation.
        if let Some((name, reason)) = state
            .plugins
            .keys()
            .find_map(|n| super::plan::plugin_name_problem(n).map(|r| (n, r)))
        {
            return Err(StoreError::Inconsistent {
                path: state_path,
                expected: "plugin names that are single directory names".into(),
                found: format!("{name:?} ({reason})"),
                hint: "state.json was edited by hand; restore the original".into(),
            });
        }
        Ok(Generation { number, dir, state })
    }

    /// Writes `state` as `dir/state.json` (new file, mode 0644, fsynced).
    pub(crate) fn write_state(dir: &Path, state: &GenerationState) -> Result<(), StoreError> {
        let path = dir.join(STATE_FILE);
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::StateJson {
            path: path.clone(),
            source: e,
            hint: "this is a bug in xplugin; report it".into(),
        })?;
        fsutil::write_new_file(&path, &bytes)
            .map_err(|e| StoreError::io("write generation state", &path, e, HINT_DISK))
    }
}

/// What an entry of `generations/` is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationEntry {
    /// `<N>`: a complete generation.
    Complete(u64),
    /// `<N>.tmp`: a generation being built (garbage after a crash).
    Building(u64),
    /// `<N>.trash`: a generation being removed (garbage after a crash).
    Trash(u64),
}

impl GenerationEntry {
    /// Classifies a file name; `None` for names the store never creates.
    pub fn parse(name: &str) -> Option<GenerationEntry> {
        if let Some(n) = name.strip_suffix(TMP_SUFFIX) {
            parse_number(n).map(GenerationEntry::Building)
        } else if let Some(n) = name.strip_suffix(TRASH_SUFFIX) {
            parse_number(n).map(GenerationEntry::Trash)
        } else {
            parse_number(name).map(GenerationEntry::Complete)
        }
    }

    /// The generation number in the name.
    pub fn number(self) -> u64 {
        match self {
            GenerationEntry::Complete(n)
            | GenerationEntry::Building(n)
            | GenerationEntry::Trash(n) => n,
        }
    }
}

/// A canonical decimal (no sign, no leading zeros) as written by the store.
pub fn parse_number(s: &str) -> Option<u64> {
    let n: u64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

/// Lists `generations/` as (entry kind, file name) pairs, ignoring names the
/// store never creates.
pub(crate) fn list(generations_dir: &Path) -> Result<Vec<(GenerationEntry, String)>, StoreError> {
    let read = |e| StoreError::io("list generations in", generations_dir, e, HINT_DISK);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(generations_dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some(kind) = GenerationEntry::parse(&name) {
            out.push((kind, name));
        }
    }
    out.sort_by_key(|(kind, _)| kind.number());
    Ok(out)
}
