//! Recovery, run every time the install lock is taken: brings the root back to
//! exactly the state `current` names by removing everything an interrupted
//! commit, rollback or removal can leave behind.
//!
//! Because the only switch is the atomic rename of `current`, whatever a
//! crash left is either referenced by `current` (and complete) or garbage:
//! `current.tmp`, `staging/*`, `generations/<N>.tmp`, `generations/<N>.trash`,
//! and every `generations/<N>` that is neither current nor current's
//! `previous` (a generation renamed into place before the swap, a rolled-back
//! generation, or one older than the rollback target), with its
//! configuration values (`state/config/<N>`, see [`crate::values`]). Install
//! transactions are settled too (see [`crate::transaction`]). Running it again after
//! a crash in the middle of it is safe: each step only removes garbage.

use std::path::{Path, PathBuf};

use xplugin_model::{Problem, ProblemCode, Problems};

use super::error::StoreError;
use super::failpoint::hit;
use super::fsutil;
use super::generation::{self, GenerationEntry, TRASH_SUFFIX};
use super::Store;

/// What recovery removed, and what it could not remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Leftovers removed, as paths.
    pub removed: Vec<PathBuf>,
    /// Leftovers that could not be removed (warnings: the installation is
    /// still consistent, the next recovery tries again).
    pub problems: Problems,
}

impl RecoveryReport {
    /// True if there was nothing to clean.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.problems.is_empty()
    }

    pub(crate) fn remove(&mut self, path: &Path) {
        match fsutil::remove_tree(path) {
            Ok(()) => self.removed.push(path.to_path_buf()),
            Err(e) => self.problems.push(Problem::new(
                ProblemCode::StoreLeftoverNotRemoved,
                path.display().to_string(),
                format!("could not remove a leftover of an interrupted operation: {e}"),
                "remove it by hand; the installed set is not affected",
            )),
        }
    }

    pub(crate) fn warn(&mut self, path: &Path, message: &str) {
        self.problems.push(Problem::new(
            ProblemCode::StoreTransactionRecordFailed,
            path.display().to_string(),
            message,
            "check the disk; recovery tries again at the next start",
        ));
    }

    pub(crate) fn fsync(&mut self, dir: &Path) {
        if let Err(e) = fsutil::fsync_dir(dir) {
            self.problems.push(Problem::new(
                ProblemCode::StoreSyncFailed,
                dir.display().to_string(),
                format!("could not fsync the directory after cleaning it: {e}"),
                "check the disk; the installed set is not affected",
            ));
        }
    }
}

/// Runs recovery on `store`. The caller holds the lock.
///
/// # Errors
/// Fails only if `current` itself is unusable (then nothing is removed, since
/// what is garbage cannot be decided) or `generations/` cannot be listed.
pub(crate) fn recover(store: &Store) -> Result<RecoveryReport, StoreError> {
    let mut report = RecoveryReport::default();
    let root = store.root();

    let tmp_link = store.current_tmp_link();
    if std::fs::symlink_metadata(&tmp_link).is_ok() {
        report.remove(&tmp_link);
        report.fsync(root);
    }
    hit("recovery", "after-tmp-symlink-removed");

    let staging = store.staging_root();
    match std::fs::read_dir(&staging) {
        Ok(entries) => {
            let mut any = false;
            for entry in entries.flatten() {
                report.remove(&entry.path());
                any = true;
            }
            if any {
                report.fsync(&staging);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => report.problems.push(Problem::new(
            ProblemCode::StoreLeftoverNotRemoved,
            staging.display().to_string(),
            format!("could not list the staging area: {e}"),
            "check permissions of the install root",
        )),
    }
    hit("recovery", "after-staging-cleared");

    let generations_dir = store.generations_root();
    let mut any = false;
    for (kind, name) in generation::list(&generations_dir)? {
        if matches!(
            kind,
            GenerationEntry::Building(_) | GenerationEntry::Trash(_)
        ) {
            report.remove(&generations_dir.join(name));
            any = true;
        }
    }
    if any {
        report.fsync(&generations_dir);
    }
    hit("recovery", "after-tmp-removed");

    // Only now look at `current`: if it is broken, stop before deciding that
    // any complete generation is garbage.
    let keep = match store.current()? {
        Some(current) => {
            let mut keep = vec![current.number];
            keep.extend(current.state.previous);
            keep
        }
        None => Vec::new(),
    };
    prune(store, "recovery", &keep, &mut report)?;
    store.recover_transactions(&mut report);
    hit("recovery", "after-cleanup");
    Ok(report)
}

/// Removes every complete generation not in `keep`: first renamed to
/// `<N>.trash` (so a crash never leaves a half-removed `<N>`), then deleted.
/// Hits `<operation>-after-trash-rename` after the renames.
pub(crate) fn prune(
    store: &Store,
    operation: &str,
    keep: &[u64],
    report: &mut RecoveryReport,
) -> Result<(), StoreError> {
    let generations_dir = store.generations_root();
    let mut trashed = Vec::new();
    for (kind, name) in generation::list(&generations_dir)? {
        if let GenerationEntry::Complete(n) = kind {
            if keep.contains(&n) {
                continue;
            }
            let from = generations_dir.join(&name);
            let to = generations_dir.join(format!("{name}{TRASH_SUFFIX}"));
            match std::fs::rename(&from, &to) {
                Ok(()) => trashed.push(to),
                Err(e) => report.problems.push(Problem::new(
                    ProblemCode::StoreLeftoverNotRemoved,
                    from.display().to_string(),
                    format!("could not move an unused generation out of the way: {e}"),
                    "remove it by hand; the installed set is not affected",
                )),
            }
        }
    }
    if !trashed.is_empty() {
        report.fsync(&generations_dir);
    }
    hit(operation, "after-trash-rename");
    for path in &trashed {
        report.remove(path);
    }
    if !trashed.is_empty() {
        report.fsync(&generations_dir);
    }
    // The configuration values of a generation go with it.
    store.prune_values(keep, report);
    Ok(())
}
