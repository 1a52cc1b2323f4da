//! Administration of an install root: list, enable, disable, remove, rollback.
//! Every change is a new generation committed atomically by the store.

use serde::Serialize;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use xplugin_model::manifest::Side;
use xplugin_model::Version;
use xplugin_store::{CommitPlan, Generation, Store, StoreError};

/// Why an administrative change was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The store failed (locked, unwritable, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such plugin installed.
    #[error("plugin \"{name}\" is not installed in {}", root.display())]
    NotInstalled {
        /// The name asked for.
        name: String,
        /// The root.
        root: PathBuf,
    },
    /// Other installed plugins depend on it.
    #[error("cannot remove \"{name}\": installed plugins depend on it: {}", .dependents.join(", "))]
    HasDependents {
        /// The plugin to remove.
        name: String,
        /// Its installed dependents (transitive).
        dependents: Vec<String>,
    },
}

/// One installed plugin in a listing.
#[derive(Debug, Clone, Serialize)]
pub struct ListedPlugin {
    /// Name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Enabled flag.
    pub enabled: bool,
    /// Its `depend` names, when the manifest parses.
    pub depend: Vec<String>,
}

/// What is installed in a root.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// The root.
    pub root: PathBuf,
    /// Current generation, if any.
    pub generation: Option<u64>,
    /// Generation a rollback would restore, if any.
    pub previous: Option<u64>,
    /// Installed plugins, by name.
    pub plugins: Vec<ListedPlugin>,
}

impl std::fmt::Display for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.generation {
            None => writeln!(f, "{}: nothing installed", self.root.display())?,
            Some(g) => writeln!(
                f,
                "{}: generation {g}{}",
                self.root.display(),
                self.previous.map_or(String::new(), |p| format!(
                    " (rollback restores generation {p})"
                ))
            )?,
        }
        for p in &self.plugins {
            writeln!(
                f,
                "  {:<20} {:<12} {:<9} {}",
                p.name,
                p.version,
                if p.enabled { "enabled" } else { "disabled" },
                if p.depend.is_empty() {
                    String::new()
                } else {
                    format!("depends on {}", p.depend.join(", "))
                }
            )?;
        }
        Ok(())
    }
}

/// Lists a root.
///
/// # Errors
/// [`StoreError`] if the root cannot be read.
pub fn list(root: &Path, side: Side) -> Result<Listing, StoreError> {
    let store = Store::open(root)?;
    let current = store.current()?;
    let previous = store.previous()?.map(|g| g.number);
    let manifests = current
        .as_ref()
        .map(|g| crate::checks::installed_manifests(g.plugin_dirs(), side))
        .unwrap_or_default();
    Ok(Listing {
        root: root.to_path_buf(),
        generation: current.as_ref().map(|g| g.number),
        previous,
        plugins: current
            .map(|g| g.plugins())
            .unwrap_or_default()
            .into_iter()
            .map(|p| ListedPlugin {
                depend: manifests
                    .get(&p.name)
                    .map(|m| m.depend.iter().map(|d| d.name.clone()).collect())
                    .unwrap_or_default(),
                name: p.name,
                version: p.version,
                enabled: p.enabled,
            })
            .collect(),
    })
}

/// Enables or disables an installed plugin (a new generation).
///
/// # Errors
/// [`AdminError::NotInstalled`], or the store's error.
pub fn set_enabled(root: &Path, name: &str, enabled: bool) -> Result<Generation, AdminError> {
    let store = Store::open(root)?;
    let lock = store.lock()?;
    let installed = store
        .current()?
        .is_some_and(|g| g.plugins().iter().any(|p| p.name == name));
    if !installed {
        return Err(AdminError::NotInstalled {
            name: name.to_string(),
            root: root.to_path_buf(),
        });
    }
    Ok(store.set_enabled(&lock, name, enabled)?)
}

/// Removes an installed plugin; with `cascade`, also every installed plugin
/// that depends on it (transitively). Returns the removed names.
///
/// # Errors
/// [`AdminError::HasDependents`] without `cascade` when others depend on it.
pub fn remove(
    root: &Path,
    side: Side,
    name: &str,
    cascade: bool,
) -> Result<Vec<String>, AdminError> {
    let store = Store::open(root)?;
    let lock = store.lock()?;
    let Some(current) = store.current()? else {
        return Err(AdminError::NotInstalled {
            name: name.to_string(),
            root: root.to_path_buf(),
        });
    };
    if !current.plugins().iter().any(|p| p.name == name) {
        return Err(AdminError::NotInstalled {
            name: name.to_string(),
            root: root.to_path_buf(),
        });
    }
    let manifests = crate::checks::installed_manifests(current.plugin_dirs(), side);
    let mut doomed = BTreeSet::from([name.to_string()]);
    loop {
        let more: Vec<String> = manifests
            .values()
            .filter(|m| {
                !doomed.contains(&m.name) && m.depend.iter().any(|d| doomed.contains(&d.name))
            })
            .map(|m| m.name.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        doomed.extend(more);
    }
    let dependents: Vec<String> = doomed.iter().filter(|n| *n != name).cloned().collect();
    if !dependents.is_empty() && !cascade {
        return Err(AdminError::HasDependents {
            name: name.to_string(),
            dependents,
        });
    }
    let removed: Vec<String> = doomed.into_iter().collect();
    store.commit(
        &lock,
        CommitPlan {
            add_or_replace: Vec::new(),
            remove: removed.clone(),
        },
    )?;
    Ok(removed)
}

/// Restores the previous generation (plugins, their enabled state and
/// their configuration values; a plugin whose configuration items are the
/// same in both keeps its current values, see
/// [`crate::plugin_config::carry_back_for_rollback`]).
///
/// # Errors
/// The store's error, e.g. when there is no previous generation.
pub fn rollback(root: &Path, side: Side) -> Result<Generation, StoreError> {
    let store = Store::open(root)?;
    let lock = store.lock()?;
    if store.previous()?.is_some() {
        crate::plugin_config::carry_back_for_rollback(&store, &lock, side)?;
    }
    store.rollback(&lock)
}

/// Plugins installed and enabled in a root (for a controller root: what will
/// run at its next boot), with versions. The offline pendant uses this as the
/// controller's running set.
pub fn enabled_versions(store: &Store) -> BTreeMap<String, Version> {
    let Ok(Some(g)) = store.current() else {
        return BTreeMap::new();
    };
    g.plugins()
        .into_iter()
        .filter(|p| p.enabled)
        .filter_map(|p| Some((p.name, p.version.parse().ok()?)))
        .collect()
}
