//! The install store: one install root per side (the pendant's client plugins,
//! the controller's plugins), holding immutable generations and switching
//! between them atomically.
//!
//! # Layout
//!
//! ```text
//! ROOT/.lock                         flock(2) lock; the holder's pid is written into it
//! ROOT/current -> generations/<N>    the ONE switch: a relative symlink, replaced by rename
//!                                    (on Windows a small file holding `generations/<N>`)
//! ROOT/current.tmp                   the next `current` while it is being swapped in
//! ROOT/generations/<N>/state.json    GenerationState: number, previous, plugins (version, enabled)
//! ROOT/generations/<N>/plugins/<NAME>/...   the installed files, immutable (0644 files, 0755 dirs)
//! ROOT/generations/<N>.tmp/          a generation being built
//! ROOT/generations/<N>.trash/        a generation being removed
//! ROOT/staging/<unique>/             where an import unpacks and verifies (same filesystem)
//! ROOT/data/<NAME>/                  a plugin's persistent data (0700), kept across upgrades and rollbacks
//! ROOT/transactions/<ID>/           an install transaction: record.json, staged/, config/ (see [`transaction`])
//! ROOT/state/config/<N>/<NAME>.json  the configuration values generation N runs with (0600, see [`values`])
//! ROOT/state/                        other host state (not written by the store)
//! ```
//!
//! # Commit protocol
//!
//! A commit builds `generations/<N>.tmp` (carried-over plugins hard-linked from
//! the current generation, falling back to copies; staged plugins linked or
//! copied in with fixed modes), fsyncs every new file and directory, writes
//! `state.json`, renames the directory to `generations/<N>`, fsyncs
//! `generations/`, points `current.tmp` at it, renames `current.tmp` over
//! `current` and fsyncs the root. That rename is the commit point: before it
//! the old generation is current, after it the new one.
//!
//! # Retention
//!
//! After a commit the store keeps exactly the new generation and the one it
//! replaced (its `previous`), so one [`Store::rollback`] is always possible
//! after a commit. A rollback switches back to the previous generation and
//! removes the one rolled back from; the restored generation's own
//! `previous` was already removed, so a second rollback in a row is refused.
//! Generation numbers are `max(existing) + 1`, so the number of a
//! rolled-back generation is used again by the next commit.
//!
//! # Recovery
//!
//! Taking the lock ([`Store::lock`], [`Store::lock_wait`]) first removes every
//! leftover of an interrupted operation (see [`recovery`]), so after `kill -9`
//! or a power loss at any instant the root holds exactly the old or the new
//! installation.
//!
//! Power loss is covered by fsync discipline (files, then directories, then
//! the rename, then the root). The crash test kills the process; the
//! power-loss test (`tests/tests/it/powerloss.rs`) cuts power on a FUSE file
//! system that forgets what was not fsynced, after every fsync and rename.
//!
//! # Windows
//!
//! The same protocol with the switch as a file: `current.tmp` is written with
//! `generations/<N>`, flushed (`FlushFileBuffers`) and moved over `current`
//! with `MoveFileExW(MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)`;
//! the lock is `LockFileEx`. What that does and does not promise is in
//! docs/windows.md.

#![deny(missing_docs)]

mod build;
mod error;
pub mod failpoint;
mod fsutil;
mod generation;
mod lock;
mod plan;
#[cfg(windows)]
pub mod private_acl;
pub mod recovery;
pub mod transaction;
pub mod values;

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use error::StoreError;
pub use fsutil::{
    create_file_durably, replace_file, replace_file_with_mode, start_writeback, DATA_DIR_MODE,
    DIR_MODE, FILE_MODE,
};
pub use generation::{Generation, GenerationState, InstalledPlugin, PluginRecord};
pub use lock::{StoreLock, LOCK_FILE};
pub use plan::{plugin_name_problem, CommitPlan, StagedPlugin};
pub use recovery::RecoveryReport;
pub use transaction::{Transaction, TransactionPlugin, TransactionRecord, TransactionState};
pub use values::ValuesFile;

use build::Origin;
use error::HINT_DISK;
use failpoint::hit;
use generation::{PLUGINS_DIR, TMP_SUFFIX};
use values::ValuesSource;

/// Name of the symlink naming the current generation.
pub const CURRENT_LINK: &str = "current";
/// Name of the symlink being swapped in as `current`.
pub const CURRENT_TMP_LINK: &str = "current.tmp";
/// Directory of the generations.
pub const GENERATIONS_DIR: &str = "generations";
/// Directory of the staging areas.
pub const STAGING_DIR: &str = "staging";
/// Directory of the plugins' persistent data.
pub const DATA_DIR: &str = "data";
/// Directory of host state (not written by the store).
pub const STATE_DIR: &str = "state";

/// Most entries of the data root one [`Store::listed_data_dirs`] lists.
pub const MAX_LISTED_DATA_DIRS: usize = 100_000;

/// The names of the directories found in the data root by
/// [`Store::listed_data_dirs`].
#[derive(Debug, Clone, Default)]
pub struct DataDirs(std::collections::BTreeSet<String>);

/// One install root. Cheap to open; reading needs no lock, every change needs
/// a [`StoreLock`] from [`Store::lock`] or [`Store::lock_wait`].
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// When this process runs as root on a root owned by another user (the
    /// daemon's), that owner: what this process creates is given to it, so
    /// the daemon can read and later remove it.
    owner: Option<(u32, u32)>,
}

impl Store {
    /// Opens the install root at `root`, creating the directory layout if it
    /// is missing (a fresh root is an empty installation). Does not lock and
    /// does not change any installed file.
    ///
    /// # Errors
    /// [`StoreError::Io`] if the root or its layout directories cannot be
    /// created or resolved.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let hint = "check that the parent directory exists and that this user may write it, or use another install root";
        // The root itself may be a symlink to a directory (e.g. onto a data
        // partition); the layout directories inside it may not.
        if !root.is_dir() {
            fsutil::ensure_dir(root, DIR_MODE)
                .map_err(|e| StoreError::io("create install root", root, e, hint))?;
        }
        let root = root
            .canonicalize()
            .map_err(|e| StoreError::io("resolve install root", root, e, hint))?;
        for dir in [GENERATIONS_DIR, STAGING_DIR, DATA_DIR, STATE_DIR] {
            let path = root.join(dir);
            fsutil::ensure_dir(&path, DIR_MODE)
                .map_err(|e| StoreError::io("create directory", &path, e, hint))?;
        }
        let owner = fsutil::foreign_owner(&root);
        let store = Store { root, owner };
        #[cfg(unix)]
        for dir in [GENERATIONS_DIR, STAGING_DIR, DATA_DIR, STATE_DIR] {
            // The layout directories (made now or by an earlier root run).
            if let Some((uid, _)) = store.owner {
                use std::os::unix::fs::MetadataExt;
                let path = store.root.join(dir);
                if std::fs::metadata(&path).is_ok_and(|m| m.uid() != uid) {
                    store.adopt(&path);
                }
            }
        }
        Ok(store)
    }

    /// Opens `root` only if it is an install root already (its
    /// `generations/` exists); creates nothing. `None` for a missing or
    /// empty directory, which [`Store::open`] would initialise.
    ///
    /// # Errors
    /// As [`Store::open`] for a root that exists.
    pub fn existing(root: &Path) -> Result<Option<Store>, StoreError> {
        if root.join(GENERATIONS_DIR).is_dir() {
            Store::open(root).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Gives `path` (recursively) to the root's owner when this process
    /// runs as root on a root owned by another user; does nothing otherwise.
    /// Best effort: a file that cannot be given is logged.
    pub fn adopt(&self, path: &Path) {
        if let Some(owner) = self.owner {
            give(path, owner);
        }
    }

    /// As [`Store::adopt`] for `path` alone (a directory whose entries are
    /// given one by one as they are made).
    pub(crate) fn adopt_one(&self, path: &Path) {
        #[cfg(unix)]
        if let Some((uid, gid)) = self.owner {
            if let Err(e) = std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
                log::warn!(
                    "cannot give {} to the install root's owner (uid {uid}): {e}",
                    path.display()
                );
            }
        }
        #[cfg(not(unix))]
        let _ = path;
    }

    /// The (canonical) install root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the install lock without waiting, then runs recovery.
    ///
    /// The lock belongs to one open file: a second `lock()` in the same
    /// process while the first [`StoreLock`] lives is refused as
    /// [`StoreError::Busy`] with this process's own pid.
    ///
    /// # Errors
    /// [`StoreError::Busy`] (with the holder's pid when known) if another
    /// process holds it; [`StoreError::Inconsistent`] or
    /// [`StoreError::StateJson`] if `current` is unusable (recovery then
    /// removes nothing); [`StoreError::Io`] if the lock file cannot be used.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        let lock = lock::try_lock(&self.root)?;
        self.recover_under(lock)
    }

    /// Takes the install lock, waiting up to `timeout` for another holder
    /// (a boot that starts during an import waits for it), then runs recovery.
    ///
    /// # Errors
    /// As [`Store::lock`]; [`StoreError::Busy`] once `timeout` has passed.
    pub fn lock_wait(&self, timeout: Duration) -> Result<StoreLock, StoreError> {
        let lock = lock::lock_wait(&self.root, timeout)?;
        self.recover_under(lock)
    }

    fn recover_under(&self, mut lock: StoreLock) -> Result<StoreLock, StoreError> {
        self.adopt(&self.root.join(LOCK_FILE));
        let report = recovery::recover(self)?;
        lock.set_recovery(report);
        Ok(lock)
    }

    /// The current generation, or `None` for an empty installation.
    ///
    /// # Errors
    /// [`StoreError::Inconsistent`] if `current` is not a symlink to
    /// `generations/<N>` or names a missing generation;
    /// [`StoreError::StateJson`] if its `state.json` is unreadable.
    pub fn current(&self) -> Result<Option<Generation>, StoreError> {
        let link = self.current_link();
        let Some(number) = read_current(&link)? else {
            return Ok(None);
        };
        if !self.generations_root().join(number.to_string()).is_dir() {
            return Err(StoreError::Inconsistent {
                path: link,
                expected: format!("generations/{number} to exist"),
                found: "it is missing".into(),
                hint: "the generation was removed by hand; point `current` at a complete generation or restore from backup".into(),
            });
        }
        Generation::load(&self.generations_root(), number).map(Some)
    }

    /// Generation `number`, if it is on disk.
    ///
    /// # Errors
    /// [`StoreError::StateJson`] if its `state.json` is unreadable.
    pub fn generation(&self, number: u64) -> Result<Option<Generation>, StoreError> {
        if !self.generations_root().join(number.to_string()).is_dir() {
            return Ok(None);
        }
        Generation::load(&self.generations_root(), number).map(Some)
    }

    /// The generation a [`Store::rollback`] would restore, if it is on disk.
    ///
    /// # Errors
    /// As [`Store::current`].
    pub fn previous(&self) -> Result<Option<Generation>, StoreError> {
        let Some(previous) = self.current()?.and_then(|c| c.state.previous) else {
            return Ok(None);
        };
        if !self.generations_root().join(previous.to_string()).is_dir() {
            return Ok(None);
        }
        Generation::load(&self.generations_root(), previous).map(Some)
    }

    /// A fresh, empty staging directory under `ROOT/staging/`, removed when
    /// the returned value is dropped (after a commit its files live on as
    /// links in the generation). It cannot outlive the lock.
    ///
    /// # Errors
    /// [`StoreError::WrongLock`] for a lock of another root;
    /// [`StoreError::Io`] if it cannot be created.
    pub fn staging<'lock>(&self, lock: &'lock StoreLock) -> Result<StagingDir<'lock>, StoreError> {
        self.check_lock(lock)?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = self
                .staging_root()
                .join(format!("{}-{nanos}-{n}", std::process::id()));
            match fsutil::create_dir_with_mode(&path, DIR_MODE) {
                Ok(()) => {
                    return Ok(StagingDir {
                        path,
                        _lock: PhantomData,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(StoreError::io(
                        "create staging directory",
                        &path,
                        e,
                        HINT_DISK,
                    ))
                }
            }
        }
    }

    /// Commits `plan` as a new generation and makes it current, atomically.
    /// Plugins of the current generation not named in the plan are carried
    /// over (hard links) with their enabled flag. Afterwards only the new
    /// generation and the one it replaced are kept.
    ///
    /// # Errors
    /// [`StoreError::InvalidPlan`] listing every problem (bad names,
    /// duplicates, removal of something not installed, staged files outside
    /// the staging area, symlinks or special files in a staged tree) before
    /// anything is written; [`StoreError::Io`] if writing fails, in which case
    /// the previous generation stays current. An error from the final fsync
    /// of the root says so: the new generation is then active but may not
    /// survive a power loss.
    pub fn commit(&self, lock: &StoreLock, plan: CommitPlan) -> Result<Generation, StoreError> {
        self.commit_from(lock, plan, &self.staging_root(), None)
    }

    /// [`Store::commit`] of a plan whose staged folders live under
    /// `staging_root`, recording `transaction` in the new generation.
    pub(crate) fn commit_from(
        &self,
        lock: &StoreLock,
        plan: CommitPlan,
        staging_root: &Path,
        transaction: Option<&str>,
    ) -> Result<Generation, StoreError> {
        self.check_lock(lock)?;
        let current = self.current()?;
        let problems = plan::check(&plan, current.as_ref(), staging_root);
        if problems.has_errors() {
            return Err(StoreError::InvalidPlan { problems });
        }
        let mut plugins = current
            .as_ref()
            .map(|c| c.state.plugins.clone())
            .unwrap_or_default();
        for name in &plan.remove {
            plugins.remove(name);
        }
        let mut sources = Vec::new();
        let mut values = Vec::new();
        if let Some(current) = &current {
            for name in plugins.keys() {
                if !plan.add_or_replace.iter().any(|s| &s.name == name) {
                    sources.push((
                        name.clone(),
                        current.dir.join(PLUGINS_DIR).join(name),
                        Origin::Carried,
                    ));
                    values.push((name.clone(), self.carried_values(current, name)));
                }
            }
        }
        for staged in plan.add_or_replace {
            plugins.insert(
                staged.name.clone(),
                PluginRecord {
                    version: staged.version,
                    enabled: staged.enabled,
                },
            );
            if let Some(file) = staged.values {
                values.push((staged.name.clone(), ValuesSource::Staged(file)));
            }
            sources.push((staged.name, staged.dir, Origin::Staged));
        }
        self.build_generation(current.as_ref(), plugins, &sources, &values, transaction)
    }

    /// Enables or disables an installed plugin: a new generation with the same
    /// files (hard links), so [`Store::rollback`] restores the old flag. If
    /// the flag already has that value nothing is written and the current
    /// generation is returned.
    ///
    /// # Errors
    /// [`StoreError::NotInstalled`] if `name` is not in the current
    /// generation; otherwise as [`Store::commit`].
    pub fn set_enabled(
        &self,
        lock: &StoreLock,
        name: &str,
        enabled: bool,
    ) -> Result<Generation, StoreError> {
        self.check_lock(lock)?;
        let not_installed = || StoreError::NotInstalled {
            name: name.to_string(),
            root: self.root.clone(),
            hint: "list installed plugins and check the name".into(),
        };
        let current = self.current()?.ok_or_else(not_installed)?;
        let mut plugins = current.state.plugins.clone();
        let entry = plugins.get_mut(name).ok_or_else(not_installed)?;
        if entry.enabled == enabled {
            return Ok(current);
        }
        entry.enabled = enabled;
        let sources: Vec<_> = plugins
            .keys()
            .map(|n| {
                (
                    n.clone(),
                    current.dir.join(PLUGINS_DIR).join(n),
                    Origin::Carried,
                )
            })
            .collect();
        let values: Vec<_> = plugins
            .keys()
            .map(|n| (n.clone(), self.carried_values(&current, n)))
            .collect();
        self.build_generation(Some(&current), plugins, &sources, &values, None)
    }

    /// Switches `current` back to the previous generation (its plugins and
    /// their enabled/disabled state) and removes the generation rolled back
    /// from.
    ///
    /// # Errors
    /// [`StoreError::NoPreviousGeneration`] if the root is empty, the current
    /// generation is the first one, or its previous generation was already
    /// removed (only one step back is kept); [`StoreError::Io`] if the switch
    /// fails (the current generation then stays current).
    pub fn rollback(&self, lock: &StoreLock) -> Result<Generation, StoreError> {
        self.check_lock(lock)?;
        let no_previous = |reason: String| {
            StoreError::NoPreviousGeneration {
            root: self.root.clone(),
            reason,
            hint: "only the generation before the last commit is kept; reinstall the wanted package instead".into(),
        }
        };
        let current = self
            .current()?
            .ok_or_else(|| no_previous("nothing is installed".into()))?;
        let previous_number = current.state.previous.ok_or_else(|| {
            no_previous(format!("generation {} is the first one", current.number))
        })?;
        if !self
            .generations_root()
            .join(previous_number.to_string())
            .is_dir()
        {
            return Err(no_previous(format!(
                "generation {previous_number} (before generation {}) was already removed",
                current.number
            )));
        }
        let previous = Generation::load(&self.generations_root(), previous_number)?;
        self.swap_current("rollback", previous.number)?;
        let mut keep = vec![previous.number];
        keep.extend(previous.state.previous);
        // The switch is done; what prune cannot remove, recovery will.
        let mut ignored = RecoveryReport::default();
        let _ = recovery::prune(self, "rollback", &keep, &mut ignored);
        hit("rollback", "after-cleanup");
        Ok(previous)
    }

    /// The persistent data directory of plugin `name` (`ROOT/data/<name>`),
    /// created with mode 0700 if missing. It survives upgrades, removals and
    /// rollbacks; the store never deletes it.
    ///
    /// # Errors
    /// [`StoreError::InvalidPluginName`] if `name` cannot be a directory name;
    /// [`StoreError::Io`] if it cannot be created.
    pub fn data_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        self.data_dir_in(name, &DataDirs::default())
    }

    /// The directories already in the data root (`ROOT/data`), by one
    /// listing of it, for [`Store::data_dir_in`]: a boot asks for the data
    /// directory of every plugin, and a name listed as a directory (not a
    /// symlink: the entry's own type) needs no metadata read of its own.
    /// Unreadable or missing, or larger than [`MAX_LISTED_DATA_DIRS`]
    /// entries: what was listed so far, the rest checked one by one.
    pub fn listed_data_dirs(&self) -> DataDirs {
        let mut dirs = DataDirs::default();
        let Ok(entries) = std::fs::read_dir(self.data_root()) else {
            return dirs;
        };
        for entry in entries.take(MAX_LISTED_DATA_DIRS).flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if let Ok(name) = entry.file_name().into_string() {
                    dirs.0.insert(name);
                }
            }
        }
        dirs
    }

    /// [`Store::data_dir`], which needs no metadata read when `listed`
    /// (from [`Store::listed_data_dirs`]) holds `name`.
    ///
    /// # Errors
    /// As [`Store::data_dir`].
    pub fn data_dir_in(&self, name: &str, listed: &DataDirs) -> Result<PathBuf, StoreError> {
        if let Some(reason) = plugin_name_problem(name) {
            return Err(StoreError::InvalidPluginName {
                name: name.to_string(),
                reason,
                hint: "plugin names are single directory names".into(),
            });
        }
        let path = self.data_root().join(name);
        if !listed.0.contains(name) {
            fsutil::ensure_dir(&path, DATA_DIR_MODE)
                .map_err(|e| StoreError::io("create data directory", &path, e, HINT_DISK))?;
        }
        self.adopt(&path);
        Ok(path)
    }

    pub(crate) fn generations_root(&self) -> PathBuf {
        self.root.join(GENERATIONS_DIR)
    }

    pub(crate) fn staging_root(&self) -> PathBuf {
        self.root.join(STAGING_DIR)
    }

    fn data_root(&self) -> PathBuf {
        self.root.join(DATA_DIR)
    }

    fn current_link(&self) -> PathBuf {
        self.root.join(CURRENT_LINK)
    }

    pub(crate) fn current_tmp_link(&self) -> PathBuf {
        self.root.join(CURRENT_TMP_LINK)
    }

    pub(crate) fn check_lock(&self, lock: &StoreLock) -> Result<(), StoreError> {
        if lock.root() == self.root {
            Ok(())
        } else {
            Err(StoreError::WrongLock {
                lock_root: lock.root().to_path_buf(),
                store_root: self.root.clone(),
            })
        }
    }

    /// The next generation number: above every number in `generations/`
    /// (complete, building or trash) and above `current`.
    fn next_number(&self, current: Option<&Generation>) -> Result<u64, StoreError> {
        let highest = generation::list(&self.generations_root())?
            .iter()
            .map(|(kind, _)| kind.number())
            .chain(current.map(|c| c.number))
            .max();
        match highest {
            None => Ok(1),
            Some(n) => n
                .checked_add(1)
                .ok_or_else(|| StoreError::GenerationOverflow {
                    root: self.root.clone(),
                    hint: "move the installation to a fresh root".into(),
                }),
        }
    }

    /// Builds, renames into place and switches to a new generation, with
    /// the configuration values of its plugins (`values`, written before
    /// the generation is renamed into place: see [`values`]).
    fn build_generation(
        &self,
        current: Option<&Generation>,
        plugins: BTreeMap<String, PluginRecord>,
        sources: &[(String, PathBuf, Origin)],
        values: &[(String, ValuesSource)],
        transaction: Option<&str>,
    ) -> Result<Generation, StoreError> {
        let number = self.next_number(current)?;
        let generations = self.generations_root();
        let tmp = generations.join(format!("{number}{TMP_SUFFIX}"));
        let state = GenerationState {
            generation: number,
            previous: current.map(|c| c.number),
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            plugins,
            transaction: transaction.map(str::to_string),
        };
        let built = build::fill_tmp_generation(&tmp, &state, sources)
            .and_then(|()| self.build_values(number, values));
        if let Err(e) = built {
            // Nothing refers to it; recovery would remove it too.
            let _ = fsutil::remove_tree(&tmp);
            return Err(e);
        }
        self.adopt(&tmp);

        let dir = generations.join(number.to_string());
        std::fs::rename(&tmp, &dir).map_err(|e| {
            let _ = fsutil::remove_tree(&tmp);
            StoreError::io("rename new generation into place", &tmp, e, HINT_DISK)
        })?;
        fsutil::fsync_dir(&generations)
            .map_err(|e| StoreError::io("fsync directory", &generations, e, HINT_DISK))?;
        hit("commit", "after-gen-rename");

        self.swap_current("commit", number)?;

        let mut keep = vec![number];
        keep.extend(state.previous);
        // The commit is done; what prune cannot remove, recovery will.
        let mut ignored = RecoveryReport::default();
        let _ = recovery::prune(self, "commit", &keep, &mut ignored);
        hit("commit", "after-cleanup");
        Ok(Generation { number, dir, state })
    }

    /// Points `current` at `generations/<number>` with one atomic rename.
    fn swap_current(&self, operation: &str, number: u64) -> Result<(), StoreError> {
        let tmp_link = self.current_tmp_link();
        fsutil::remove_tree(&tmp_link)
            .map_err(|e| StoreError::io("remove stale symlink", &tmp_link, e, HINT_DISK))?;
        write_current_tmp(&tmp_link, number)?;
        self.adopt(&tmp_link);
        hit(operation, "after-tmp-symlink");
        let link = self.current_link();
        fsutil::rename_durably(&tmp_link, &link).map_err(|e| {
            let _ = std::fs::remove_file(&tmp_link);
            StoreError::io("switch", &link, e, HINT_DISK)
        })?;
        fsutil::fsync_dir(&self.root).map_err(|e| {
            StoreError::io(
                "fsync install root after switching",
                &self.root,
                e,
                format!("generation {number} is active but may not survive a power loss; check the disk"),
            )
        })?;
        hit(operation, "after-swap");
        Ok(())
    }
}

/// What `generations/<N>` names, from the `current` symlink; `None` when
/// there is none (an empty installation).
#[cfg(unix)]
fn read_current(link: &Path) -> Result<Option<u64>, StoreError> {
    let target = match std::fs::read_link(link) {
        Ok(target) => target,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINVAL as i32) => {
            return Err(StoreError::Inconsistent {
                path: link.to_path_buf(),
                expected: "a symlink to generations/<N>".into(),
                found: "something that is not a symlink".into(),
                hint: "it was replaced by hand; point it at the newest complete generation with `ln -sfn generations/<N> current`".into(),
            })
        }
        Err(e) => return Err(StoreError::io("read symlink", link, e, HINT_DISK)),
    };
    parse_current_target(&target)
        .map(Some)
        .ok_or_else(|| StoreError::Inconsistent {
            path: link.to_path_buf(),
            expected: "a symlink to generations/<N>".into(),
            found: format!("a symlink to {}", target.display()),
            hint: "it was changed by hand; point it at the newest complete generation with `ln -sfn generations/<N> current`".into(),
        })
}

/// Makes `current.tmp` a symlink to `generations/<number>`.
#[cfg(unix)]
fn write_current_tmp(tmp_link: &Path, number: u64) -> Result<(), StoreError> {
    let target = Path::new(GENERATIONS_DIR).join(number.to_string());
    std::os::unix::fs::symlink(&target, tmp_link)
        .map_err(|e| StoreError::io("create symlink", tmp_link, e, HINT_DISK))
}

/// Most bytes a Windows `current` file may hold (`generations/<N>` and a
/// newline is at most 33).
#[cfg(windows)]
const CURRENT_FILE_MAX: u64 = 64;

/// What generation the Windows `current` file names: one line,
/// `generations/<N>`; `None` when there is no such file.
#[cfg(windows)]
fn read_current(link: &Path) -> Result<Option<u64>, StoreError> {
    use std::io::Read;
    let hint =
        "it was changed by hand; write `generations/<N>` (the newest complete generation) into it";
    let mut text = String::new();
    match std::fs::File::open(link)
        .and_then(|f| f.take(CURRENT_FILE_MAX + 1).read_to_string(&mut text))
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(StoreError::Inconsistent {
                path: link.to_path_buf(),
                expected: "a file holding generations/<N>".into(),
                found: "a file that is not text".into(),
                hint: hint.into(),
            })
        }
        Err(e) => return Err(StoreError::io("read", link, e, HINT_DISK)),
    }
    let line = text.strip_suffix('\n').unwrap_or(&text);
    parse_current_target(Path::new(line))
        .filter(|_| text.len() as u64 <= CURRENT_FILE_MAX && !line.contains(['\\', '\n', '\r']))
        .map(Some)
        .ok_or_else(|| StoreError::Inconsistent {
            path: link.to_path_buf(),
            expected: "a file holding generations/<N>".into(),
            found: format!(
                "{:?}",
                text.chars()
                    .take(CURRENT_FILE_MAX as usize)
                    .collect::<String>()
            ),
            hint: hint.into(),
        })
}

/// Writes `current.tmp` as a new file holding `generations/<number>` and
/// flushes it (`FlushFileBuffers`), so the move that follows can only make
/// complete contents current.
#[cfg(windows)]
fn write_current_tmp(tmp_link: &Path, number: u64) -> Result<(), StoreError> {
    let text = format!("{GENERATIONS_DIR}/{number}\n");
    fsutil::write_new_file(tmp_link, text.as_bytes())
        .map_err(|e| StoreError::io("write", tmp_link, e, HINT_DISK))
}

/// `generations/<N>` exactly, as written by [`Store::swap_current`].
fn parse_current_target(target: &Path) -> Option<u64> {
    let mut components = target.components();
    let (Some(Component::Normal(dir)), Some(Component::Normal(n)), None) =
        (components.next(), components.next(), components.next())
    else {
        return None;
    };
    if dir != GENERATIONS_DIR {
        return None;
    }
    generation::parse_number(n.to_str()?)
}

/// A fresh directory under `ROOT/staging/` for one import to unpack into.
/// Removed (with everything in it) when dropped. Borrowing the lock makes it
/// impossible to keep staging after the lock is released (recovery by the
/// next holder would delete it anyway).
#[derive(Debug)]
pub struct StagingDir<'lock> {
    path: PathBuf,
    _lock: PhantomData<&'lock StoreLock>,
}

impl StagingDir<'_> {
    /// The staging directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates (if missing) and returns `<staging>/<name>`, the directory to
    /// unpack plugin `name` into for a [`StagedPlugin`].
    ///
    /// # Errors
    /// [`StoreError::InvalidPluginName`] if `name` cannot be a directory name;
    /// [`StoreError::Io`] if it cannot be created.
    pub fn plugin_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        if let Some(reason) = plugin_name_problem(name) {
            return Err(StoreError::InvalidPluginName {
                name: name.to_string(),
                reason,
                hint: "fix \"name\" in the plugin manifest".into(),
            });
        }
        let path = self.path.join(name);
        match fsutil::create_dir_with_mode(&path, DIR_MODE) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(StoreError::io(
                "create staging directory",
                &path,
                e,
                HINT_DISK,
            )),
            _ => Ok(path),
        }
    }
}

impl Drop for StagingDir<'_> {
    fn drop(&mut self) {
        // Best effort: the next recovery removes whatever is left.
        let _ = fsutil::remove_tree(&self.path);
    }
}

/// Gives `path` (recursively) to the owner of install root `root` when this
/// process runs as root on a root owned by another user (the daemon's);
/// does nothing otherwise. For files the host writes into a root outside a
/// [`Store`] (the clock mark). Best effort: a failure is logged.
pub fn adopt_into(root: &Path, path: &Path) {
    if let Some(owner) = fsutil::foreign_owner(root) {
        give(path, owner);
    }
}

fn give(path: &Path, (uid, gid): (u32, u32)) {
    if let Err(e) = fsutil::chown_tree(path, uid, gid) {
        log::warn!(
            "cannot give {} to the install root's owner (uid {uid}): {e}; the daemon may not be able to read it",
            path.display()
        );
    }
}
