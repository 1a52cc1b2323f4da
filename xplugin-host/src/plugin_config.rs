//! Plugin configuration on a host: the values each installed plugin runs
//! with, where they are kept, how an install carries them to a new version,
//! and `config show` / `config set` without a daemon. The items and every
//! check of a value are the model's ([`xplugin_model::config_schema`]);
//! the files are the store's ([`xplugin_store::values`]).
//!
//! # Where values live
//!
//! `ROOT/state/config/<N>/<NAME>.json` holds the values generation `N`'s
//! plugin `NAME` runs with, as
//! `{"plugin": NAME, "version": V, "values": {ITEM: VALUE, ...}}` (mode
//! 0600: values may hold passwords). Values are bound to a generation, not
//! to the plugin alone, so that a plugin never runs with values written for
//! another version's items:
//!
//! * **First install**: every item gets its default, written with the
//!   commit that installs the plugin.
//! * **Upgrade, downgrade, reinstall**: the values of the generation being
//!   replaced are migrated to the new version's items
//!   ([`xplugin_model::config_schema::migrate`]: kept, reset, dropped,
//!   added; every change is in the import or install report) and staged
//!   with the commit: in the import's commit, or inside the install
//!   transaction (`transactions/<ID>/config/`), migrated again from the
//!   latest values right before the commit ([`restage_transaction`]) so a
//!   `config set` between prepare and commit is not lost. The store writes
//!   them durably before it switches `current`, and keeps the replaced
//!   generation's own values untouched: a crash between the switch and
//!   anything else, or a rollback, always pairs plugins with their own
//!   values.
//! * **Plugins the commit does not touch** (and every plugin on enable,
//!   disable, remove) keep their values: the store copies them.
//! * **Rollback** restores the previous generation with its values; for a
//!   plugin whose items are identical in both generations the current values
//!   are carried back first ([`carry_back_for_rollback`]), so undoing an
//!   install does not undo an unrelated `config set`.
//! * **`config set`** (no daemon): validated against the items (all at
//!   once), then written atomically into the current generation's values;
//!   the plugin gets them at its next start. With a daemon the change goes
//!   through the admin socket (the live path: [`prepare_change`], then the
//!   plugin's `reconfigure`, then [`commit_values`]).
//! * **Boot** reads the values of the generation it boots and checks them
//!   against the items ([`values_for`]); a plugin whose stored values do not
//!   fit (a damaged or hand-edited file) does not load, with a
//!   `config.values_unreadable` problem naming the file. A generation
//!   without stored values (committed before values existed) runs with the
//!   defaults.
//!
//! Passwords are never printed: every report, `config show`, `--json` and
//! every message shows [`MASK`].

use crate::checks::{read_bounded, subject};
use crate::lifecycle::Reconfigured;
use serde::Serialize;
use std::path::{Path, PathBuf};
use xplugin_model::config_schema::{
    migrate, parse_assignments, Assignment, ConfigItem, ConfigSchema, ConfigValues, Migration,
    MigrationAction, MigrationChange, PreparedChange, ValueChange, MASK,
};
use xplugin_model::manifest::{parse_manifest, Manifest, Side};
use xplugin_model::{Failure, Problem, ProblemCode, Problems};
use xplugin_store::{Generation, Store, StoreError, StoreLock, ValuesFile};

// A plugin's values and the file's envelope always fit what the store reads.
const _: () = assert!(
    xplugin_model::config_schema::MAX_TOTAL_BYTES + 64 * 1024
        <= xplugin_store::values::MAX_VALUES_BYTES
);

/// The contents of a values file.
#[derive(Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ValuesDoc {
    plugin: String,
    version: String,
    values: ConfigValues,
}

/// The values file of `manifest`'s plugin holding `values`.
pub fn values_file(manifest: &Manifest, values: &ConfigValues) -> ValuesFile {
    let doc = ValuesDoc {
        plugin: manifest.name.clone(),
        version: manifest.version.to_string(),
        values: values.clone(),
    };
    // Serialising a map of JSON values cannot fail.
    ValuesFile(serde_json::to_vec(&doc).unwrap_or_default())
}

/// The problem of a stored values file that cannot be used.
fn unreadable(subject: &str, path: &Path, why: &str) -> Problem {
    Problem::new(
        ProblemCode::ConfigValuesUnreadable,
        subject,
        format!(
            "the stored configuration values in {} cannot be used: {why}",
            path.display()
        ),
        format!(
            "delete {} to return the plugin to its defaults, then set what is needed with `config set`",
            path.display()
        ),
    )
}

/// The values stored for plugin `name` in `generation` (unchecked against
/// its items); `None` when none are stored.
///
/// # Errors
/// A `config.values_unreadable` problem naming the file when it cannot be
/// read or parsed.
pub fn stored_values(
    store: &Store,
    generation: u64,
    side: Side,
    name: &str,
) -> Result<Option<ConfigValues>, Problem> {
    let subject = subject(side, name);
    let path = store
        .values_path(generation, name)
        .map_err(|e| Problem::from_error(e.code(), &subject, &e, e.hint()))?;
    let bytes = match store.read_values(generation, name) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) => return Err(unreadable(&subject, &path, &xplugin_model::error_chain(&e))),
    };
    let doc: ValuesDoc = serde_json::from_slice(&bytes)
        .map_err(|e| unreadable(&subject, &path, &format!("it is not a values file ({e})")))?;
    if doc.plugin != name {
        return Err(unreadable(
            &subject,
            &path,
            &format!("it holds the values of plugin \"{}\"", doc.plugin),
        ));
    }
    Ok(Some(doc.values))
}

/// The values `manifest`'s plugin runs with in `generation`: the stored
/// ones checked against its items (missing items at their default), or
/// the defaults when none are stored.
///
/// # Errors
/// `config.values_unreadable` problems: the file cannot be read, or values
/// in it do not fit their items (each named).
pub fn values_for(
    store: &Store,
    generation: u64,
    manifest: &Manifest,
) -> Result<ConfigValues, Problems> {
    if manifest.config.is_empty() {
        return Ok(ConfigValues::default());
    }
    let stored = stored_values(store, generation, manifest.side, &manifest.name)
        .map_err(|p| Problems(vec![p]))?;
    match stored {
        None => Ok(manifest.config.defaults()),
        Some(stored) => manifest
            .config
            .resolve(&manifest.subject(), &stored)
            .map_err(|mut problems| {
                let file = store
                    .values_path(generation, &manifest.name)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                for p in &mut problems.0 {
                    p.message = format!("{} (in {file})", p.message);
                }
                problems
            }),
    }
}

/// The installed manifest of `name` in `generation`, if it parses.
fn installed_manifest(generation: &Generation, side: Side, name: &str) -> Option<Manifest> {
    let dir = generation.plugin_dir(name)?;
    let bytes = read_bounded(&dir.join(format!("{name}.json")), 1 << 20).ok()?;
    parse_manifest(side, name, &bytes).manifest
}

/// The migration of `new`'s plugin from what `base` (the generation being
/// replaced, in `store`) runs: its installed items and its stored values (or
/// their defaults when none are stored). A first install when `base` does
/// not hold the plugin.
pub fn migrate_install(
    store: Option<&Store>,
    base: Option<&Generation>,
    new: &Manifest,
) -> Migration {
    let old = base.and_then(|g| installed_manifest(g, new.side, &new.name));
    let Some(old) = old else {
        return migrate(None, None, &new.config);
    };
    let stored = match (store, base) {
        (Some(store), Some(g)) => stored_values(store, g.number, new.side, &new.name),
        _ => Ok(None),
    };
    match stored {
        Ok(Some(values)) => migrate(Some(&old.config), Some(&values), &new.config),
        Ok(None) => migrate(Some(&old.config), Some(&old.config.defaults()), &new.config),
        Err(p) => {
            log::warn!("{p}");
            migrate(Some(&old.config), None, &new.config)
        }
    }
}

/// The values file a migration stages (none for a plugin without items).
pub fn migrated_file(manifest: &Manifest, migration: &Migration) -> Option<ValuesFile> {
    (!manifest.config.is_empty()).then(|| values_file(manifest, &migration.values))
}

/// One plugin's migration in a commit report.
#[derive(Debug, Clone, Serialize)]
pub struct PluginMigration {
    /// Plugin name.
    pub name: String,
    /// Every item's fate.
    pub changes: Vec<MigrationChange>,
}

/// Migrates, again and from the latest values, the values of every plugin
/// prepared transaction `id` installs, and stages them, right before its
/// commit: a `config set` between prepare and commit is carried over. Does
/// nothing (returns nothing) when the transaction is not prepared or its base
/// is no longer current (the commit then refuses).
///
/// # Errors
/// The store's error when reading the transaction or staging fails.
pub fn restage_transaction(
    store: &Store,
    lock: &StoreLock,
    id: &str,
    side: Side,
) -> Result<Vec<PluginMigration>, StoreError> {
    let record = store.transaction(id)?;
    let current = store.current()?;
    if record.state != xplugin_store::TransactionState::Prepared
        || current.as_ref().map(|g| g.number) != record.base_generation
    {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for p in &record.plugins {
        let Some(dir) = store.transaction_plugin_dir(id, &p.name)? else {
            continue;
        };
        let Ok(bytes) = read_bounded(&dir.join(format!("{}.json", p.name)), 1 << 20) else {
            continue;
        };
        let Some(manifest) = parse_manifest(side, &p.name, &bytes).manifest else {
            continue;
        };
        let migration = migrate_install(Some(store), current.as_ref(), &manifest);
        let file = migrated_file(&manifest, &migration);
        store.stage_transaction_values(lock, id, &p.name, file.as_ref().map(|f| f.0.as_slice()))?;
        if !migration.changes.is_empty() {
            out.push(PluginMigration {
                name: p.name.clone(),
                changes: migration.changes,
            });
        }
    }
    Ok(out)
}

/// Before a rollback to the previous generation: for every plugin whose
/// items are identical in both generations, the current values become the
/// previous generation's too (they fit, the items being the same), so that
/// undoing an install keeps unrelated configuration changes. Plugins whose
/// items differ keep the previous generation's own values.
///
/// # Errors
/// The store's error when writing fails (nothing was switched yet; the
/// values written so far fit their generation).
pub fn carry_back_for_rollback(
    store: &Store,
    lock: &StoreLock,
    side: Side,
) -> Result<(), StoreError> {
    let (Some(current), Some(previous)) = (store.current()?, store.previous()?) else {
        return Ok(());
    };
    for (name, _) in current.plugin_dirs() {
        let (Some(now), Some(then)) = (
            installed_manifest(&current, side, &name),
            installed_manifest(&previous, side, &name),
        ) else {
            continue;
        };
        if now.config.is_empty() || now.config != then.config {
            continue;
        }
        let Ok(Some(values)) = stored_values(store, current.number, side, &name) else {
            continue;
        };
        store.write_values(lock, previous.number, &name, &values_file(&then, &values).0)?;
    }
    Ok(())
}

/// Validates a change of several items of `manifest`'s plugin (all of
/// them, every problem at once) against its items and `current` values: the
/// first step of every `config set`, locally or through the daemon. The
/// result is the full set of new values; nothing is stored.
///
/// # Errors
/// The problems, each with its `config.*` code and the item as field.
pub fn prepare_change(
    manifest: &Manifest,
    current: &ConfigValues,
    assignments: &[Assignment],
) -> Result<PreparedChange, Problems> {
    manifest
        .config
        .prepare_change(&manifest.subject(), current, assignments)
}

/// Stores `values` as the values `manifest`'s plugin runs with in
/// `generation`, atomically (the last step of a `config set`).
///
/// # Errors
/// The store's error; the old values then stay.
pub fn commit_values(
    store: &Store,
    lock: &StoreLock,
    generation: u64,
    manifest: &Manifest,
    values: &ConfigValues,
) -> Result<(), StoreError> {
    store.write_values(
        lock,
        generation,
        &manifest.name,
        &values_file(manifest, values).0,
    )
}

/// Why `config show` or `config set` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The install root cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The plugin is not installed.
    #[error("plugin \"{name}\" is not installed in {}", root.display())]
    NotInstalled {
        /// The name asked for.
        name: String,
        /// The root.
        root: PathBuf,
    },
    /// The installed manifest does not parse (the root was changed by
    /// hand).
    #[error("the installed manifest of plugin \"{name}\" cannot be read")]
    Manifest {
        /// The plugin.
        name: String,
        /// What is wrong with it.
        problems: Problems,
    },
    /// The change or the stored values were refused; nothing changed.
    #[error("configuration of plugin \"{name}\" not changed: {} problem(s)", .problems.len())]
    Refused {
        /// The plugin.
        name: String,
        /// Every problem.
        problems: Problems,
    },
}

impl Failure for ConfigError {
    fn problems(&self) -> Problems {
        match self {
            ConfigError::Store(e) => e.problems(),
            ConfigError::NotInstalled { name, root } => Problems(vec![Problem::new(
                ProblemCode::StoreNotInstalled,
                format!("plugin \"{name}\""),
                format!("no plugin of that name is installed in {}", root.display()),
                "`list` shows what is installed; check the name",
            )]),
            ConfigError::Manifest { problems, .. } | ConfigError::Refused { problems, .. } => {
                problems.clone()
            }
        }
    }
}

/// One item in `config show`.
#[derive(Debug, Clone, Serialize)]
pub struct ShownItem {
    /// The item (its default masked for a password).
    #[serde(flatten)]
    pub item: ConfigItem,
    /// Its value (masked for a password).
    pub value: serde_json::Value,
    /// Why the stored value does not fit the item, if it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
}

/// `config show NAME`.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigShow {
    /// Plugin name.
    pub plugin: String,
    /// Which side.
    pub side: Side,
    /// Installed version.
    pub version: String,
    /// The generation whose values these are (the current one).
    pub generation: u64,
    /// Where they are stored.
    pub file: PathBuf,
    /// False when none are stored yet (every item at its default).
    pub stored: bool,
    /// Every item's value by name (passwords masked), for scripts.
    pub values: serde_json::Map<String, serde_json::Value>,
    /// The items, in display order, with their values.
    pub items: Vec<ShownItem>,
}

/// An installed plugin's manifest and where its values are, for show and
/// set.
struct Target {
    store: Store,
    generation: Generation,
    manifest: Manifest,
}

fn open(root: &Path, name: &str) -> Result<Store, ConfigError> {
    Store::existing(root)?.ok_or_else(|| ConfigError::NotInstalled {
        name: name.to_string(),
        root: root.to_path_buf(),
    })
}

fn target(store: Store, side: Side, name: &str) -> Result<Target, ConfigError> {
    let Some(generation) = store.current()? else {
        return Err(ConfigError::NotInstalled {
            name: name.to_string(),
            root: store.root().to_path_buf(),
        });
    };
    target_in(store, generation, side, name)
}

fn target_in(
    store: Store,
    generation: Generation,
    side: Side,
    name: &str,
) -> Result<Target, ConfigError> {
    let not_installed = || ConfigError::NotInstalled {
        name: name.to_string(),
        root: store.root().to_path_buf(),
    };
    let dir = generation.plugin_dir(name).ok_or_else(not_installed)?;
    let path = dir.join(format!("{name}.json"));
    let outcome = match read_bounded(&path, 1 << 20) {
        Ok(bytes) => parse_manifest(side, name, &bytes),
        Err(e) => {
            return Err(ConfigError::Manifest {
                name: name.to_string(),
                problems: Problems(vec![Problem::from_error(
                    ProblemCode::ManifestUnreadable,
                    subject(side, name),
                    &e,
                    "re-import the plugin's package",
                )]),
            })
        }
    };
    let manifest = outcome.manifest.ok_or_else(|| ConfigError::Manifest {
        name: name.to_string(),
        problems: outcome.problems,
    })?;
    Ok(Target {
        store,
        generation,
        manifest,
    })
}

/// `config show NAME`: the current generation's values of an installed
/// plugin with its items. Needs no lock.
///
/// # Errors
/// [`ConfigError`]: not installed, unreadable manifest or values file.
pub fn show(root: &Path, side: Side, name: &str) -> Result<ConfigShow, ConfigError> {
    let t = target(open(root, name)?, side, name)?;
    let number = t.generation.number;
    let stored = stored_values(&t.store, number, side, name).map_err(|p| ConfigError::Refused {
        name: name.to_string(),
        problems: Problems(vec![p]),
    })?;
    let schema: &ConfigSchema = &t.manifest.config;
    let items: Vec<ShownItem> = schema
        .ordered()
        .into_iter()
        .map(|item| {
            let value = match (&stored, item.readonly) {
                (Some(s), false) => s.get(&item.name).cloned(),
                _ => None,
            }
            .unwrap_or_else(|| item.default.clone());
            ShownItem {
                invalid: item.check(&value).err().map(|e| e.to_string()),
                value: item.shown(&value),
                item: item.clone(),
            }
        })
        .collect();
    Ok(ConfigShow {
        plugin: name.to_string(),
        side,
        version: t.manifest.version.to_string(),
        generation: number,
        file: t.store.values_path(number, name)?,
        stored: stored.is_some(),
        values: items
            .iter()
            .map(|i| (i.item.name.clone(), i.value.clone()))
            .collect(),
        items,
    })
}

impl std::fmt::Display for ConfigShow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} {}, generation {}",
            subject(self.side, &self.plugin),
            self.version,
            self.generation
        )?;
        if self.items.is_empty() {
            return writeln!(f, "  no configuration items");
        }
        if self.stored {
            writeln!(f, "  values stored in {}", self.file.display())?;
        } else {
            writeln!(
                f,
                "  no values stored yet: every item has its default ({} once set)",
                self.file.display()
            )?;
        }
        for i in &self.items {
            let item = &i.item;
            let mut flags = Vec::new();
            for (on, flag) in [
                (item.readonly, "read-only"),
                (item.mandatory, "mandatory"),
                (item.deprecated, "deprecated"),
            ] {
                if on {
                    flags.push(flag);
                }
            }
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", flags.join(", "))
            };
            writeln!(f, "  {} = {}{flags}", item.name, item.describe(&i.value))?;
            writeln!(
                f,
                "      {}; default {}",
                item.expected(),
                item.describe(&item.default)
            )?;
            if let Some(d) = item.description.as_deref().or(item.display_name.as_deref()) {
                writeln!(f, "      {d}")?;
            }
            if let Some(why) = &i.invalid {
                writeln!(f, "      THE STORED VALUE DOES NOT FIT: {why}")?;
            }
        }
        Ok(())
    }
}

/// What `config set` did.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigSetReport {
    /// Plugin name.
    pub plugin: String,
    /// Which side.
    pub side: Side,
    /// The generation whose values changed.
    pub generation: u64,
    /// Where they are stored.
    pub file: PathBuf,
    /// The items whose value changed (masked for passwords).
    pub changes: Vec<ValueChange>,
    /// When the plugin gets them: `now` (the running plugin took them
    /// through `reconfigure`) or `next-start`.
    pub applies: &'static str,
    /// Why `next-start` (no daemon, the plugin has no `reconfigure`, it is
    /// not running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// With `now`: the plugin's steps skipped while its `reconfigure` ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_steps: Option<u64>,
    /// A committed generation that does not run yet and got the same
    /// values (it boots with them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub also_generation: Option<u64>,
}

impl std::fmt::Display for ConfigSetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = subject(self.side, &self.plugin);
        if self.changes.is_empty() {
            return writeln!(f, "{who}: nothing changed (the values were already so)");
        }
        for c in &self.changes {
            let show = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) if s == MASK => MASK.to_string(),
                other => other.to_string(),
            };
            writeln!(f, "{who}: {} {} -> {}", c.item, show(&c.from), show(&c.to))?;
        }
        if let Some(g) = self.also_generation {
            writeln!(
                f,
                "also stored for generation {g}, which runs from the next start"
            )?;
        }
        match (self.applies, self.paused_steps) {
            ("now", Some(0)) => writeln!(
                f,
                "applied to the running plugin between two of its steps and stored in {}",
                self.file.display()
            ),
            ("now", Some(n)) => writeln!(
                f,
                "applied to the running plugin ({n} of its steps skipped while it reconfigured) and stored in {}",
                self.file.display()
            ),
            ("now", None) => writeln!(
                f,
                "applied to the running plugin and stored in {}",
                self.file.display()
            ),
            _ => writeln!(
                f,
                "stored in {}; {}: {} gets the new values at its next start",
                self.file.display(),
                self.why.as_deref().unwrap_or("no daemon applies it now"),
                self.plugin
            ),
        }
    }
}

/// `config set NAME KEY=VALUE ...` without a daemon: parses and validates
/// every assignment against the plugin's items and stored values (nothing
/// is stored unless all of them are valid), then stores the new values of
/// the current generation atomically. The plugin gets them at its next
/// start.
///
/// # Errors
/// [`ConfigError::Refused`] with every problem (nothing changed); the
/// store's error (locked root, disk).
pub fn set_local(
    root: &Path,
    side: Side,
    name: &str,
    args: &[String],
) -> Result<ConfigSetReport, ConfigError> {
    let store = open(root, name)?;
    let lock = store.lock()?;
    let t = target(store, side, name)?;
    let refused = |problems: Problems| ConfigError::Refused {
        name: name.to_string(),
        problems,
    };
    let assignments = parse_assignments(&t.manifest.subject(), args).map_err(refused)?;
    let number = t.generation.number;
    let stored = stored_values(&t.store, number, side, name)
        .map_err(|p| refused(Problems(vec![p])))?
        .unwrap_or_else(|| t.manifest.config.defaults());
    let change = prepare_change(&t.manifest, &stored, &assignments).map_err(refused)?;
    let file = t.store.values_path(number, name)?;
    if !change.changes.is_empty() || !file.exists() {
        commit_values(&t.store, &lock, number, &t.manifest, &change.values)?;
    }
    Ok(ConfigSetReport {
        plugin: name.to_string(),
        side,
        generation: number,
        file,
        changes: change.changes,
        applies: "next-start",
        why: None,
        paused_steps: None,
        also_generation: None,
    })
}

/// How the daemon's main thread answered a live change (see [`set_live`]).
pub type LiveAnswer = Result<crate::boot::LiveReconfigure, String>;

/// `config set NAME KEY=VALUE ...` for a controller plugin running in the
/// daemon, whose boot runs generation `running`:
///
/// 1. validates every assignment against the items and stored values of
///    the running generation (nothing happens unless all are valid);
/// 2. when another generation is committed but not running yet, checks
///    that its items for the plugin are the same (else refuses with
///    `config.pending_generation`: the change would be lost at its start);
/// 3. offers the whole new configuration to the running plugin through
///    `offer` (the daemon hands it to its main thread, which calls
///    `reconfigure` between two of the plugin's steps);
/// 4. stores the values (of both generations) only when the plugin took
///    them, or when it cannot take them live (no `reconfigure`, not
///    running: it gets them at its next start). Should storing fail after
///    the plugin took them, the old configuration is offered back.
///
/// The store lock is held throughout, so no install or other change runs
/// in between.
///
/// # Errors
/// [`ConfigError::Refused`] for invalid assignments,
/// `config.refused_by_plugin`, `config.pending_generation` and
/// `config.live_unavailable` (nothing changed); the store's error.
pub fn set_live(
    root: &Path,
    name: &str,
    args: &[String],
    running: u64,
    offer: &mut dyn FnMut(&str) -> LiveAnswer,
) -> Result<ConfigSetReport, ConfigError> {
    let side = Side::Controller;
    let store = open(root, name)?;
    let lock = store.lock_wait(std::time::Duration::from_secs(10))?;
    let current = store.current()?.map(|g| g.number);
    let who = subject(side, name);
    let refuse = |code: ProblemCode, message: String, hint: &str| ConfigError::Refused {
        name: name.to_string(),
        problems: Problems(vec![Problem::new(code, who.clone(), message, hint)]),
    };
    let Some(generation) = store.generation(running)? else {
        return Err(refuse(
            ProblemCode::ConfigPendingGeneration,
            format!("generation {running}, which the daemon runs, is no longer kept in the root"),
            "restart the controller (systemctl restart xplugin-controller) so the committed generation runs, then change the values",
        ));
    };
    let t = target_in(store, generation, side, name)?;
    let refused = |problems: Problems| ConfigError::Refused {
        name: name.to_string(),
        problems,
    };
    let assignments = parse_assignments(&t.manifest.subject(), args).map_err(refused)?;
    let stored = values_for(&t.store, running, &t.manifest).map_err(refused)?;
    let change = prepare_change(&t.manifest, &stored, &assignments).map_err(refused)?;
    let file = t.store.values_path(running, name)?;
    // A generation committed after the running one boots with its own copy
    // of the values: it gets the change too, if its items are the same.
    let mut also = None;
    if let Some(next) = current.filter(|&c| c != running) {
        let next_gen = t.store.generation(next)?;
        if let Some(g) = next_gen.filter(|g| g.plugin_dir(name).is_some()) {
            let m = installed_manifest(&g, side, name);
            if m.as_ref().map(|m| &m.config) != Some(&t.manifest.config) {
                return Err(refuse(
                    ProblemCode::ConfigPendingGeneration,
                    format!(
                        "generation {next} is committed and runs from the next start with other configuration items for this plugin; a change now would not reach it"
                    ),
                    "restart the controller (systemctl restart xplugin-controller) so that generation runs, then change the values",
                ));
            }
            also = m.map(|m| (next, m));
        }
    }
    let mut report = ConfigSetReport {
        plugin: name.to_string(),
        side,
        generation: running,
        file,
        changes: change.changes.clone(),
        applies: "now",
        why: None,
        paused_steps: None,
        also_generation: also.as_ref().map(|(n, _)| *n),
    };
    if change.changes.is_empty() {
        return Ok(report);
    }
    let answer = offer(&change.values.to_json().to_string()).map_err(|why| {
        refuse(
            ProblemCode::ConfigLiveUnavailable,
            format!("the daemon could not offer the change to the running plugin: {why}"),
            "try again; if it persists, see the daemon's log",
        )
    })?;
    match &answer.outcome {
        Reconfigured::Applied => report.paused_steps = Some(answer.paused_steps),
        Reconfigured::Refused(why) if answer.unreachable => {
            return Err(refuse(
                ProblemCode::ConfigLiveUnavailable,
                format!("the change was not offered to the running plugin: {why}"),
                "see the daemon's log for the plugin's step; try again once it steps normally",
            ))
        }
        Reconfigured::Refused(why) => return Err(refuse(
            ProblemCode::ConfigRefusedByPlugin,
            format!("the running plugin refused the new configuration: {why}; nothing was changed"),
            "change the values as the plugin's message says (its vendor documents what it accepts)",
        )),
        Reconfigured::NotSupported => {
            report.applies = "next-start";
            report.why = Some(
                "the running plugin cannot take new values while it runs (it has no reconfigure)"
                    .into(),
            );
        }
        Reconfigured::NotRunning => {
            report.applies = "next-start";
            report.why = Some("the plugin is not running".into());
        }
    }
    let stored_now =
        commit_values(&t.store, &lock, running, &t.manifest, &change.values).and_then(|()| {
            match &also {
                Some((next, m)) => commit_values(&t.store, &lock, *next, m, &change.values),
                None => Ok(()),
            }
        });
    if let Err(e) = stored_now {
        if answer.outcome == Reconfigured::Applied {
            // Keep what runs and what is stored the same.
            match offer(&stored.to_json().to_string()) {
                Ok(a) if a.outcome == Reconfigured::Applied => {}
                other => log::error!(
                    "plugin \"{name}\" runs with values that could not be stored, and taking them back failed: {other:?}"
                ),
            }
        }
        return Err(e.into());
    }
    Ok(report)
}

/// The lines of an import or install report for one plugin's migration:
/// resets, drops, additions and notes, and how many values were kept.
pub fn migration_lines(action_is_install: bool, changes: &[MigrationChange]) -> Vec<String> {
    if changes.is_empty() {
        return Vec::new();
    }
    if action_is_install {
        let all: Vec<String> = changes
            .iter()
            .map(|c| {
                let v = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                format!("{} = {v}", c.item)
            })
            .collect();
        return vec![format!(
            "config: every item at its default: {}",
            all.join(", ")
        )];
    }
    let mut out: Vec<String> = changes
        .iter()
        .filter(|c| c.action != MigrationAction::Kept || c.reason.is_some())
        .map(|c| format!("config {c}"))
        .collect();
    let kept = changes
        .iter()
        .filter(|c| c.action == MigrationAction::Kept)
        .count();
    if kept > 0 {
        out.push(format!("config: {kept} value(s) kept"));
    }
    out
}
