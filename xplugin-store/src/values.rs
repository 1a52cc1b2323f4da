//! Plugin configuration values bound to a generation: the files that say
//! with which values each plugin of a generation runs. They live outside
//! the generation (a user changes them without installing anything) but
//! switch with it, so that plugins never run with the values of another
//! version's items.
//!
//! # Layout
//!
//! ```text
//! ROOT/state/config/<N>/<NAME>.json          the values generation N's plugin NAME runs with
//! ROOT/state/config/<N>.tmp/                 values of generation N being written by a commit
//! ROOT/transactions/<ID>/config/<NAME>.json  values staged by an install transaction
//! ```
//!
//! Files are 0600 and directories 0700: values may hold passwords. The
//! store does not read their contents (the host writes and parses them);
//! it copies, switches and removes them.
//!
//! # Protocol
//!
//! A commit of generation `N` (import, install transaction, enable,
//! disable, remove) writes `state/config/<N>.tmp/`: the values each staged
//! plugin brings ([`StagedPlugin::values`](crate::StagedPlugin)), a copy of
//! the current generation's file for every plugin carried over; fsyncs the
//! files and the directory, renames it to `<N>` and fsyncs `state/config/`
//! — all before the generation itself is renamed into place and long before
//! `current` is switched. So when `current` names `N`, `N`'s values are
//! durable; before that, the values of the generation being replaced are
//! untouched.
//!
//! Retention follows the generations: the values of the current generation
//! and of its `previous` are kept (a rollback finds its old values), every
//! other `<N>` and every `<N>.tmp` is removed with the generations by the
//! commit, the rollback and recovery. A values file changed by the user
//! (`config set`, [`Store::write_values`]) is replaced atomically
//! (temporary file, fsync, rename, fsync of the directory).
//!
//! A generation without a values directory (committed before this existed)
//! simply has no stored values; the host gives its plugins their defaults.

use std::path::{Path, PathBuf};

use super::error::{StoreError, HINT_DISK};
use super::failpoint::hit;
use super::fsutil;
use super::generation::{Generation, TMP_SUFFIX};
use super::recovery::RecoveryReport;
use super::{Store, StoreLock, STATE_DIR};

/// Directory of the values inside `ROOT/state/`.
pub const VALUES_DIR: &str = "config";
/// Mode of a values file: values may hold passwords.
pub const VALUES_FILE_MODE: u32 = 0o600;
/// Mode of the values directories.
pub const VALUES_DIR_MODE: u32 = 0o700;
/// Largest values file read or written.
pub const MAX_VALUES_BYTES: usize = 1 << 20;

/// The contents of one plugin's values file, as the host wrote them.
/// `Debug` shows the length only: the bytes may hold passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct ValuesFile(pub Vec<u8>);

impl std::fmt::Debug for ValuesFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ValuesFile({} bytes)", self.0.len())
    }
}

/// Where the values of a plugin of a new generation come from.
#[derive(Debug, Clone)]
pub(crate) enum ValuesSource {
    /// The current generation's file (may be missing).
    Carried(PathBuf),
    /// Given by the commit.
    Staged(ValuesFile),
}

fn file_name(name: &str) -> String {
    format!("{name}.json")
}

fn too_large(path: &Path) -> StoreError {
    StoreError::io(
        "read configuration values",
        path,
        std::io::Error::other(format!("the file is larger than {MAX_VALUES_BYTES} bytes")),
        "the file was replaced by hand; delete it to return the plugin to its defaults",
    )
}

/// Reads a values file; `None` if it does not exist.
pub(crate) fn read_file(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_file() => {
            return Err(StoreError::Inconsistent {
                path: path.to_path_buf(),
                expected: "a regular file of configuration values".into(),
                found: "something else (a link, a directory or a device)".into(),
                hint: "remove it; the plugin then runs with its defaults".into(),
            })
        }
        Ok(meta) if meta.len() > MAX_VALUES_BYTES as u64 => return Err(too_large(path)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StoreError::io(
                "read configuration values",
                path,
                e,
                HINT_DISK,
            ))
        }
    }
    let bytes = std::fs::read(path)
        .map_err(|e| StoreError::io("read configuration values", path, e, HINT_DISK))?;
    if bytes.len() > MAX_VALUES_BYTES {
        return Err(too_large(path));
    }
    Ok(Some(bytes))
}

impl Store {
    /// `ROOT/state/config`.
    pub fn values_root(&self) -> PathBuf {
        self.root().join(STATE_DIR).join(VALUES_DIR)
    }

    /// `ROOT/state/config/<generation>/<name>.json`: where the values
    /// generation `generation`'s plugin `name` runs with are stored.
    ///
    /// # Errors
    /// [`StoreError::InvalidPluginName`] if `name` cannot be a file name.
    pub fn values_path(&self, generation: u64, name: &str) -> Result<PathBuf, StoreError> {
        if let Some(reason) = super::plugin_name_problem(name) {
            return Err(StoreError::InvalidPluginName {
                name: name.to_string(),
                reason,
                hint: "plugin names are single file names".into(),
            });
        }
        Ok(self
            .values_root()
            .join(generation.to_string())
            .join(file_name(name)))
    }

    /// The stored values of plugin `name` in generation `generation`, as
    /// written; `None` when none are stored. Needs no lock (files are
    /// replaced atomically).
    ///
    /// # Errors
    /// [`StoreError::Io`] if the file cannot be read or is over
    /// [`MAX_VALUES_BYTES`]; [`StoreError::Inconsistent`] if it is not a
    /// regular file.
    pub fn read_values(&self, generation: u64, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        read_file(&self.values_path(generation, name)?)
    }

    /// Replaces the stored values of plugin `name` in generation
    /// `generation` (the current one, or the one a rollback restores),
    /// atomically and durably, mode 0600.
    ///
    /// # Errors
    /// [`StoreError::NotInstalled`] if that generation is not on disk or
    /// does not hold `name`; [`StoreError::Io`] if writing fails (the old
    /// values then stay).
    pub fn write_values(
        &self,
        lock: &StoreLock,
        generation: u64,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.check_lock(lock)?;
        let path = self.values_path(generation, name)?;
        let installed = self
            .generations_root()
            .join(generation.to_string())
            .is_dir()
            && Generation::load(&self.generations_root(), generation)?
                .state
                .plugins
                .contains_key(name);
        if !installed {
            return Err(StoreError::NotInstalled {
                name: name.to_string(),
                root: self.root().to_path_buf(),
                hint: format!("generation {generation} does not hold it; list installed plugins"),
            });
        }
        if bytes.len() > MAX_VALUES_BYTES {
            return Err(StoreError::io(
                "write configuration values",
                &path,
                std::io::Error::other(format!("they are larger than {MAX_VALUES_BYTES} bytes")),
                "this is a bug in the caller; report it",
            ));
        }
        let dir = self.values_root().join(generation.to_string());
        self.ensure_values_dir(&dir)?;
        fsutil::replace_file_with_mode(&path, bytes, VALUES_FILE_MODE)
            .map_err(|e| StoreError::io("write configuration values", &path, e, HINT_DISK))?;
        self.adopt(&path);
        Ok(())
    }

    /// Creates `dir` (a values directory) and `state/config/` if missing,
    /// making each new entry durable.
    fn ensure_values_dir(&self, dir: &Path) -> Result<(), StoreError> {
        let root = self.values_root();
        for (path, parent) in [
            (root.clone(), self.root().join(STATE_DIR)),
            (dir.to_path_buf(), root),
        ] {
            if path.is_dir() {
                continue;
            }
            fsutil::ensure_dir(&path, VALUES_DIR_MODE)
                .map_err(|e| StoreError::io("create directory", &path, e, HINT_DISK))?;
            self.adopt_one(&path);
            fsutil::fsync_dir(&parent)
                .map_err(|e| StoreError::io("fsync directory", &parent, e, HINT_DISK))?;
        }
        Ok(())
    }

    /// Writes the values of new generation `number` (see the module
    /// documentation): `<number>.tmp` filled and fsynced, then renamed to
    /// `<number>`, then `state/config/` fsynced.
    pub(crate) fn build_values(
        &self,
        number: u64,
        sources: &[(String, ValuesSource)],
    ) -> Result<(), StoreError> {
        let root = self.values_root();
        self.ensure_values_dir(&root)?;
        let dir = root.join(number.to_string());
        let tmp = root.join(format!("{number}{TMP_SUFFIX}"));
        // Leftovers of a generation number used before (a rolled-back
        // generation whose values recovery could not remove).
        for stale in [&dir, &tmp] {
            if std::fs::symlink_metadata(stale).is_ok() {
                fsutil::remove_tree(stale)
                    .map_err(|e| StoreError::io("remove stale directory", stale, e, HINT_DISK))?;
            }
        }
        let fail = |e: StoreError| {
            let _ = fsutil::remove_tree(&tmp);
            e
        };
        fsutil::create_dir_with_mode(&tmp, VALUES_DIR_MODE)
            .map_err(|e| fail(StoreError::io("create directory", &tmp, e, HINT_DISK)))?;
        for (name, source) in sources {
            let bytes = match source {
                ValuesSource::Staged(file) => Some(file.0.clone()),
                ValuesSource::Carried(path) => read_file(path).map_err(fail)?,
            };
            let Some(bytes) = bytes else { continue };
            let path = tmp.join(file_name(name));
            fsutil::write_new_file_with_mode(&path, &bytes, VALUES_FILE_MODE).map_err(|e| {
                fail(StoreError::io(
                    "write configuration values",
                    &path,
                    e,
                    HINT_DISK,
                ))
            })?;
        }
        // Written by a root command: the daemon's user must read them.
        self.adopt(&tmp);
        fsutil::fsync_dir(&tmp)
            .map_err(|e| fail(StoreError::io("fsync directory", &tmp, e, HINT_DISK)))?;
        hit("commit", "after-values-written");
        std::fs::rename(&tmp, &dir).map_err(|e| {
            fail(StoreError::io(
                "rename configuration values into place",
                &tmp,
                e,
                HINT_DISK,
            ))
        })?;
        fsutil::fsync_dir(&root)
            .map_err(|e| StoreError::io("fsync directory", &root, e, HINT_DISK))?;
        hit("commit", "after-values-renamed");
        Ok(())
    }

    /// The source of the values of carried-over plugin `name`: its file in
    /// the current generation.
    pub(crate) fn carried_values(&self, current: &Generation, name: &str) -> ValuesSource {
        ValuesSource::Carried(
            self.values_root()
                .join(current.number.to_string())
                .join(file_name(name)),
        )
    }

    /// Removes the values of every generation not in `keep`, and every
    /// values directory being built (the caller holds the lock).
    pub(crate) fn prune_values(&self, keep: &[u64], report: &mut RecoveryReport) {
        let root = self.values_root();
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        let mut any = false;
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            match super::generation::GenerationEntry::parse(&name) {
                Some(super::generation::GenerationEntry::Complete(n)) if keep.contains(&n) => {
                    // Kept: only an interrupted replacement's temporary
                    // files go.
                    remove_temporaries(&entry.path(), report);
                }
                Some(_) => {
                    report.remove(&entry.path());
                    any = true;
                }
                // Names the store never writes are left alone.
                None => {}
            }
        }
        if any {
            report.fsync(&root);
        }
    }
}

/// Removes `*.tmp` files (interrupted [`Store::write_values`]) in `dir`.
fn remove_temporaries(dir: &Path, report: &mut RecoveryReport) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            report.remove(&entry.path());
        }
    }
}

// Unix: these check modes and symlinks (the Windows counterpart of the
// modes, owner-only ACLs, is tested in `private_acl`).
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::{CommitPlan, StagedPlugin, TransactionPlugin};
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn staged(store: &Store, lock: &StoreLock, name: &str, values: Option<&str>) -> CommitPlan {
        let staging = store.staging(lock).unwrap();
        let dir = staging.plugin_dir(name).unwrap();
        std::fs::write(dir.join(format!("{name}.json")), "{}").unwrap();
        // The staging directory must outlive the commit: leak its removal
        // to recovery (the next lock).
        std::mem::forget(staging);
        CommitPlan {
            add_or_replace: vec![StagedPlugin {
                name: name.into(),
                version: "1.0.0".into(),
                enabled: true,
                dir,
                values: values.map(|v| ValuesFile(v.as_bytes().to_vec())),
            }],
            remove: Vec::new(),
        }
    }

    fn read(store: &Store, generation: u64, name: &str) -> Option<String> {
        store
            .read_values(generation, name)
            .unwrap()
            .map(|b| String::from_utf8(b).unwrap())
    }

    fn numbers(store: &Store) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(store.values_root())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn values_switch_with_their_generation_and_follow_its_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lock = store.lock().unwrap();
        let first = store
            .commit(&lock, staged(&store, &lock, "a", Some("a1")))
            .unwrap()
            .number;
        let second = store
            .commit(&lock, staged(&store, &lock, "b", Some("b1")))
            .unwrap()
            .number;
        assert_eq!(read(&store, first, "a").as_deref(), Some("a1"));
        assert_eq!(read(&store, second, "a").as_deref(), Some("a1"), "carried");
        assert_eq!(read(&store, second, "b").as_deref(), Some("b1"));
        let file = store.values_path(second, "a").unwrap();
        assert_eq!(mode(&file), VALUES_FILE_MODE);
        assert_eq!(mode(file.parent().unwrap()), VALUES_DIR_MODE);
        assert_eq!(mode(&store.values_root()), VALUES_DIR_MODE);
        // The user changes a's values; an upgrade of a brings migrated ones.
        store.write_values(&lock, second, "a", b"a2").unwrap();
        assert_eq!(mode(&file), VALUES_FILE_MODE);
        let third = store
            .commit(&lock, staged(&store, &lock, "a", Some("a3")))
            .unwrap()
            .number;
        assert_eq!(read(&store, third, "a").as_deref(), Some("a3"));
        assert_eq!(
            read(&store, second, "a").as_deref(),
            Some("a2"),
            "previous kept"
        );
        assert_eq!(numbers(&store), [second.to_string(), third.to_string()]);
        // Rollback: the previous generation runs with its own values; the
        // rolled-back generation's values go with it.
        let back = store.rollback(&lock).unwrap();
        assert_eq!(back.number, second);
        assert_eq!(read(&store, second, "a").as_deref(), Some("a2"));
        assert_eq!(numbers(&store), [second.to_string()]);
        // A new generation reusing the rolled-back number starts clean;
        // enable/disable carries every plugin's values.
        let fourth = store.set_enabled(&lock, "b", false).unwrap().number;
        assert_eq!(fourth, third);
        assert_eq!(read(&store, fourth, "a").as_deref(), Some("a2"));
        assert_eq!(read(&store, fourth, "b").as_deref(), Some("b1"));
        // A staged plugin without values has none; removal drops them.
        let fifth = store
            .commit(&lock, staged(&store, &lock, "a", None))
            .unwrap()
            .number;
        assert_eq!(read(&store, fifth, "a"), None);
        let sixth = store
            .commit(
                &lock,
                CommitPlan {
                    add_or_replace: Vec::new(),
                    remove: vec!["b".into()],
                },
            )
            .unwrap()
            .number;
        assert_eq!(read(&store, sixth, "b"), None);
    }

    #[test]
    fn write_values_needs_the_plugin_in_that_generation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lock = store.lock().unwrap();
        let g = store
            .commit(&lock, staged(&store, &lock, "a", None))
            .unwrap()
            .number;
        for (generation, name) in [(g, "b"), (g + 7, "a")] {
            assert!(matches!(
                store.write_values(&lock, generation, name, b"x"),
                Err(StoreError::NotInstalled { .. })
            ));
        }
        assert!(matches!(
            store.write_values(&lock, g, "../a", b"x"),
            Err(StoreError::InvalidPluginName { .. })
        ));
        // A generation committed without values gets its directory on the
        // first write.
        store.write_values(&lock, g, "a", b"x").unwrap();
        assert_eq!(read(&store, g, "a").as_deref(), Some("x"));
    }

    #[test]
    fn recovery_removes_unfinished_and_unkept_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let g = {
            let lock = store.lock().unwrap();
            store
                .commit(&lock, staged(&store, &lock, "a", Some("a1")))
                .unwrap()
                .number
        };
        let root = store.values_root();
        std::fs::create_dir(root.join(format!("{}.tmp", g + 1))).unwrap();
        std::fs::create_dir(root.join((g + 5).to_string())).unwrap();
        std::fs::write(root.join(g.to_string()).join("a.json.tmp"), "half").unwrap();
        std::fs::create_dir(root.join("notes")).unwrap();
        let _lock = store.lock().unwrap();
        assert_eq!(numbers(&store), [g.to_string(), "notes".to_string()]);
        assert!(!root.join(g.to_string()).join("a.json.tmp").exists());
        assert_eq!(read(&store, g, "a").as_deref(), Some("a1"));
    }

    #[test]
    fn reading_refuses_what_the_store_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.values_root().join("1");
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("a.json")).unwrap();
        assert!(matches!(
            store.read_values(1, "a"),
            Err(StoreError::Inconsistent { .. })
        ));
        std::fs::write(d.join("b.json"), vec![b' '; MAX_VALUES_BYTES + 1]).unwrap();
        assert!(matches!(
            store.read_values(1, "b"),
            Err(StoreError::Io { .. })
        ));
        assert_eq!(store.read_values(1, "c").unwrap(), None);
    }

    #[test]
    fn a_transaction_stages_values_and_its_commit_switches_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lock = store.lock().unwrap();
        let mut txn = store
            .begin_transaction(&lock, "test", crate::transaction::DEFAULT_TIMEOUT, false)
            .unwrap();
        let plugin = txn.staged_dir().join("a");
        std::fs::create_dir_all(&plugin).unwrap();
        std::fs::write(plugin.join("a.json"), "{}").unwrap();
        store
            .stage_transaction_values(&lock, txn.id(), "a", Some(b"old"))
            .unwrap();
        store
            .stage_transaction_values(&lock, txn.id(), "a", Some(b"staged"))
            .unwrap();
        assert_eq!(mode(&txn.values_dir().join("a.json")), VALUES_FILE_MODE);
        let id = txn.id().to_string();
        store
            .mark_prepared(
                &lock,
                &mut txn,
                vec![TransactionPlugin {
                    name: "a".into(),
                    version: "1.0.0".into(),
                    enabled: true,
                }],
            )
            .unwrap();
        assert_eq!(
            store.transaction_plugin_dir(&id, "a").unwrap(),
            Some(plugin)
        );
        assert_eq!(store.transaction_plugin_dir(&id, "b").unwrap(), None);
        let record = store.commit_transaction(&lock, &id).unwrap();
        let g = record.new_generation.unwrap();
        assert_eq!(read(&store, g, "a").as_deref(), Some("staged"));
        assert!(!txn.values_dir().exists(), "staged values left behind");
        // Decided: nothing more may be staged.
        assert!(matches!(
            store.stage_transaction_values(&lock, &id, "a", Some(b"x")),
            Err(StoreError::TransactionDecided { .. })
        ));
    }
}
