//! Install transactions: an install that is prepared (received, verified and
//! staged, durably) now and decided — committed or aborted — later, by the
//! same or another process. The controller uses them for
//! `xplugin-controller install --prepare` / `commit ID` / `abort ID`, for the
//! pendant's two-computer install and for fleet tools (Mender).
//!
//! # Layout
//!
//! ```text
//! ROOT/transactions/<ID>/record.json   the TransactionRecord, replaced atomically
//! ROOT/transactions/<ID>/package.zip   the package as received (while open)
//! ROOT/transactions/<ID>/unpack/...         where the package is unpacked and verified (while preparing)
//! ROOT/transactions/<ID>/staged/<NAME>/...   verified plugin folders to install (while open)
//! ROOT/transactions/<ID>/config/<NAME>.json  the values they get (while open; the host migrates
//!                                            them from the base generation's, see [`crate::values`])
//! ```
//!
//! The commit carries the staged values into the new generation's values
//! with the same switch, so the plugins and their values change together.
//!
//! # States and durability
//!
//! `preparing` (created by [`Store::begin_transaction`]) → `prepared`
//! ([`Store::mark_prepared`]: every staged file and directory is fsynced
//! before the record says so) → `committed` ([`Store::commit_transaction`])
//! or `aborted` ([`Store::abort_transaction`], a timeout, an interrupted
//! prepare, or a base generation that changed). Each record is written to a
//! temporary file, fsynced, renamed over `record.json` and the directory is
//! fsynced, so a crash leaves the old record or the new one.
//!
//! The commit point is the store's own: the switch of `current` to a
//! generation whose `state.json` names the transaction. A crash between that
//! switch and the `committed` record is repaired by recovery, which sees the
//! current generation carry the transaction's id. So asking for a
//! transaction's outcome after a crash always gets the truth.
//!
//! # One open transaction per root
//!
//! A transaction is prepared against the generation current at that moment
//! (its base). While one is open (`preparing` or `prepared`, not expired), a
//! second [`Store::begin_transaction`] is refused naming the holder. A
//! prepared transaction not decided within its timeout is aborted (by the
//! daemon's housekeeping or the next recovery). Decided transactions keep
//! their record for [`DECIDED_RETENTION`] so a caller that lost its
//! connection can ask what happened.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::{StoreError, HINT_DISK};
use super::failpoint::hit;
use super::fsutil;
use super::plan::{CommitPlan, StagedPlugin};
use super::values::{self, ValuesFile};
use super::{Store, StoreLock};

/// Directory of the transactions inside a root.
pub const TRANSACTIONS_DIR: &str = "transactions";
/// The record's file name.
pub const RECORD_FILE: &str = "record.json";
/// The received package's file name.
pub const PACKAGE_FILE: &str = "package.zip";
/// Directory of the staged plugin folders.
pub const STAGED_DIR: &str = "staged";
/// Scratch directory where the received package is unpacked and verified
/// before the plugins it changes move to `staged/`.
pub const UNPACK_DIR: &str = "unpack";
/// Directory of the configuration values the staged plugins get
/// (`config/<NAME>.json`, 0600; see [`crate::values`]).
pub const VALUES_DIR: &str = "config";
/// How long a decided transaction's outcome is kept.
pub const DECIDED_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Default time a prepared transaction waits for its decision.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransactionState {
    /// Created; the package is being received or verified.
    Preparing,
    /// Verified and staged durably; waiting for commit or abort.
    Prepared,
    /// Committed: its generation was made current.
    Committed,
    /// Aborted; see the reason.
    Aborted,
}

impl TransactionState {
    /// True for `preparing` and `prepared`.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            TransactionState::Preparing | TransactionState::Prepared
        )
    }

    /// The stable name (`prepared`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionState::Preparing => "preparing",
            TransactionState::Prepared => "prepared",
            TransactionState::Committed => "committed",
            TransactionState::Aborted => "aborted",
        }
    }
}

impl std::fmt::Display for TransactionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One plugin a transaction installs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionPlugin {
    /// Plugin name (its folder under `staged/`).
    pub name: String,
    /// Version being installed.
    pub version: String,
    /// Enabled flag it gets (the manifest's on first install, the installed
    /// one on upgrade), decided at prepare against the base generation.
    pub enabled: bool,
}

/// The contents of `record.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRecord {
    /// The transaction id (16 hex digits).
    pub id: String,
    /// Where it stands.
    pub state: TransactionState,
    /// Who prepared it (`admin uid 0`, `pendant 3f2a...`, `mender`).
    pub holder: String,
    /// The generation current when it began (`None`: empty root).
    pub base_generation: Option<u64>,
    /// When it began, seconds since the Unix epoch (this device's clock).
    pub created_unix: u64,
    /// When an open transaction is aborted if undecided.
    pub expires_unix: u64,
    /// When it was committed or aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_unix: Option<u64>,
    /// The generation its commit made current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_generation: Option<u64>,
    /// Why it was aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The plugins it installs (set when prepared).
    #[serde(default)]
    pub plugins: Vec<TransactionPlugin>,
    /// Set when the preparing process decides it itself before it releases
    /// the install lock (an install that commits at once): if recovery finds
    /// it still open, that process died, and the transaction is aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_pid: Option<u32>,
}

impl TransactionRecord {
    /// True if it is open and its deadline has passed at `now_unix`.
    pub fn expired(&self, now_unix: u64) -> bool {
        self.state.is_open() && now_unix >= self.expires_unix
    }
}

/// An open transaction being prepared by this process.
#[derive(Debug)]
pub struct Transaction {
    dir: PathBuf,
    record: TransactionRecord,
}

impl Transaction {
    /// The transaction id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// Its record as last written.
    pub fn record(&self) -> &TransactionRecord {
        &self.record
    }

    /// Where to put the received package.
    pub fn package_path(&self) -> PathBuf {
        self.dir.join(PACKAGE_FILE)
    }

    /// Where the plugin folders to install go, one per plugin
    /// (`staged/<name>`; created by [`Store::begin_transaction`]).
    pub fn staged_dir(&self) -> PathBuf {
        self.dir.join(STAGED_DIR)
    }

    /// An empty directory to unpack and verify the package in (created by
    /// [`Store::begin_transaction`], removed when prepared or decided).
    pub fn unpack_dir(&self) -> PathBuf {
        self.dir.join(UNPACK_DIR)
    }

    /// Where the staged plugins' configuration values go
    /// ([`Store::stage_transaction_values`]).
    pub fn values_dir(&self) -> PathBuf {
        self.dir.join(VALUES_DIR)
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 16 random hex digits.
fn new_id() -> String {
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if random.is_err() {
        // No /dev/urandom: time and pid still make ids unique per root (the
        // directory is created exclusively, a collision is retried).
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (t ^ (u64::from(std::process::id()) << 40)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True if `id` looks like a transaction id (so it can be joined to a path).
pub fn valid_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Store {
    pub(crate) fn transactions_root(&self) -> PathBuf {
        self.root().join(TRANSACTIONS_DIR)
    }

    fn transaction_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        if !valid_id(id) {
            return Err(StoreError::TransactionNotFound {
                id: id.to_string(),
                root: self.root().to_path_buf(),
            });
        }
        Ok(self.transactions_root().join(id))
    }

    /// Every transaction whose record is readable, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Io`] if the directory cannot be listed.
    pub fn transactions(&self) -> Result<Vec<TransactionRecord>, StoreError> {
        let dir = self.transactions_root();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("list transactions in", &dir, e, HINT_DISK)),
        };
        let mut records: Vec<TransactionRecord> = entries
            .flatten()
            .filter_map(|e| read_record(&e.path().join(RECORD_FILE)).ok())
            .collect();
        records.sort_by(|a, b| (a.created_unix, &a.id).cmp(&(b.created_unix, &b.id)));
        Ok(records)
    }

    /// The record of transaction `id` (its outcome once decided).
    ///
    /// # Errors
    /// [`StoreError::TransactionNotFound`] if there is none (never existed or
    /// decided longer than [`DECIDED_RETENTION`] ago).
    pub fn transaction(&self, id: &str) -> Result<TransactionRecord, StoreError> {
        let dir = self.transaction_dir(id)?;
        read_record(&dir.join(RECORD_FILE)).map_err(|_| StoreError::TransactionNotFound {
            id: id.to_string(),
            root: self.root().to_path_buf(),
        })
    }

    /// The open transaction, if any (not expired).
    ///
    /// # Errors
    /// As [`Store::transactions`].
    pub fn open_transaction(&self) -> Result<Option<TransactionRecord>, StoreError> {
        let now = now_unix();
        Ok(self
            .transactions()?
            .into_iter()
            .find(|r| r.state.is_open() && !r.expired(now)))
    }

    /// Begins a transaction against the current generation: creates its
    /// directory and a durable `preparing` record. With `decided_here`, this
    /// process commits or aborts it before it releases `lock` (an install
    /// that commits at once), so recovery aborts it if it is found open.
    ///
    /// # Errors
    /// [`StoreError::TransactionOpen`] naming the holder while another one is
    /// open; [`StoreError::Io`] if the directory or record cannot be written.
    pub fn begin_transaction(
        &self,
        lock: &StoreLock,
        holder: &str,
        timeout: Duration,
        decided_here: bool,
    ) -> Result<Transaction, StoreError> {
        self.check_lock(lock)?;
        if let Some(open) = self.open_transaction()? {
            return Err(StoreError::TransactionOpen {
                id: open.id,
                holder: open.holder,
                state: open.state,
                expires_unix: open.expires_unix,
            });
        }
        let base = self.current()?.map(|g| g.number);
        let root = self.transactions_root();
        let first = !root.is_dir();
        fsutil::ensure_dir(&root, fsutil::DIR_MODE)
            .map_err(|e| StoreError::io("create directory", &root, e, HINT_DISK))?;
        if first {
            // The root's entry for `transactions/` must be durable too, or a
            // power cut loses a transaction already reported prepared (found
            // by tests/tests/it/powerloss.rs, case txn-prepare).
            fsutil::fsync_dir(self.root())
                .map_err(|e| StoreError::io("fsync directory", self.root(), e, HINT_DISK))?;
        }
        self.adopt_one(&root);
        let (id, dir) = loop {
            let id = new_id();
            let dir = root.join(&id);
            match fsutil::create_dir_with_mode(&dir, fsutil::DIR_MODE) {
                Ok(()) => break (id, dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::io("create transaction", &dir, e, HINT_DISK)),
            }
        };
        for sub in [STAGED_DIR, UNPACK_DIR] {
            let path = dir.join(sub);
            fsutil::create_dir_with_mode(&path, fsutil::DIR_MODE)
                .map_err(|e| StoreError::io("create directory", &path, e, HINT_DISK))?;
        }
        let created = now_unix();
        let record = TransactionRecord {
            id,
            state: TransactionState::Preparing,
            holder: holder.to_string(),
            base_generation: base,
            created_unix: created,
            expires_unix: created.saturating_add(timeout.as_secs().max(1)),
            decided_unix: None,
            new_generation: None,
            reason: None,
            plugins: Vec::new(),
            holder_pid: decided_here.then(std::process::id),
        };
        write_record(&dir, &record)?;
        self.adopt(&dir);
        fsutil::fsync_dir(&root)
            .map_err(|e| StoreError::io("fsync directory", &root, e, HINT_DISK))?;
        hit("txn", "after-begin");
        Ok(Transaction { dir, record })
    }

    /// Marks a transaction prepared with the plugins it installs (each one's
    /// verified folder is `staged/<name>`): fsyncs every staged file and
    /// directory, then writes the `prepared` record.
    ///
    /// # Errors
    /// [`StoreError::Io`] if fsync or the record write fails (the
    /// transaction then stays `preparing` and is aborted by recovery).
    pub fn mark_prepared(
        &self,
        lock: &StoreLock,
        txn: &mut Transaction,
        plugins: Vec<TransactionPlugin>,
    ) -> Result<(), StoreError> {
        self.check_lock(lock)?;
        // What the preparing process unpacked belongs to the root's owner.
        for dir in [txn.staged_dir(), txn.values_dir()] {
            if dir.is_dir() {
                self.adopt(&dir);
                fsync_tree(&dir)
                    .map_err(|e| StoreError::io("fsync staged files in", &dir, e, HINT_DISK))?;
            }
        }
        // The package and the rest of the unpacked tree are not needed any
        // more: the staged folders are what gets installed.
        let _ = std::fs::remove_file(txn.package_path());
        let _ = fsutil::remove_tree(&txn.unpack_dir());
        hit("txn", "after-staged-fsync");
        let mut record = txn.record.clone();
        record.state = TransactionState::Prepared;
        record.plugins = plugins;
        write_record(&txn.dir, &record)?;
        self.adopt(&txn.dir.join(RECORD_FILE));
        txn.record = record;
        hit("txn", "after-prepared");
        Ok(())
    }

    /// Stages the configuration values plugin `name` gets with open
    /// transaction `id` (replacing what was staged before; `None` stages
    /// none), durably, mode 0600. The host calls it while preparing, and
    /// again before the commit if the base generation's values changed in
    /// between.
    ///
    /// # Errors
    /// [`StoreError::TransactionNotFound`]; [`StoreError::TransactionDecided`]
    /// if it is not open; [`StoreError::Io`] if writing fails.
    pub fn stage_transaction_values(
        &self,
        lock: &StoreLock,
        id: &str,
        name: &str,
        bytes: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.check_lock(lock)?;
        let dir = self.transaction_dir(id)?;
        let record = self.transaction(id)?;
        if !record.state.is_open() {
            return Err(StoreError::TransactionDecided {
                record: Box::new(record),
            });
        }
        if let Some(reason) = super::plugin_name_problem(name) {
            return Err(StoreError::InvalidPluginName {
                name: name.to_string(),
                reason,
                hint: "fix \"name\" in the plugin manifest".into(),
            });
        }
        let values_dir = dir.join(VALUES_DIR);
        let path = values_dir.join(format!("{name}.json"));
        match bytes {
            None => fsutil::remove_tree(&path)
                .and_then(|()| match values_dir.is_dir() {
                    true => fsutil::fsync_dir(&values_dir),
                    false => Ok(()),
                })
                .map_err(|e| StoreError::io("remove staged values", &path, e, HINT_DISK)),
            Some(bytes) => {
                if !values_dir.is_dir() {
                    fsutil::create_dir_with_mode(&values_dir, values::VALUES_DIR_MODE).map_err(
                        |e| StoreError::io("create directory", &values_dir, e, HINT_DISK),
                    )?;
                    fsutil::fsync_dir(&dir)
                        .map_err(|e| StoreError::io("fsync directory", &dir, e, HINT_DISK))?;
                }
                fsutil::replace_file_with_mode(&path, bytes, values::VALUES_FILE_MODE)
                    .map_err(|e| StoreError::io("write staged values", &path, e, HINT_DISK))
            }
        }
    }

    /// The staged folder of plugin `name` of open transaction `id`
    /// (`staged/<name>`), if the transaction installs it.
    ///
    /// # Errors
    /// [`StoreError::TransactionNotFound`].
    pub fn transaction_plugin_dir(
        &self,
        id: &str,
        name: &str,
    ) -> Result<Option<PathBuf>, StoreError> {
        let dir = self.transaction_dir(id)?;
        let record = self.transaction(id)?;
        Ok(record
            .plugins
            .iter()
            .any(|p| p.name == name)
            .then(|| dir.join(STAGED_DIR).join(name)))
    }

    /// Commits prepared transaction `id`: its staged plugins become a new
    /// generation (carrying over the other installed plugins), made current
    /// atomically, and the record says `committed`. Committing a committed
    /// transaction again returns its generation (idempotent, for callers that
    /// lost the answer).
    ///
    /// # Errors
    /// [`StoreError::TransactionNotFound`]; [`StoreError::TransactionDecided`]
    /// if it was aborted or is not prepared; [`StoreError::TransactionBaseChanged`]
    /// (and the transaction is aborted) if the current generation is no
    /// longer the one it was prepared against; otherwise as [`Store::commit`].
    pub fn commit_transaction(
        &self,
        lock: &StoreLock,
        id: &str,
    ) -> Result<TransactionRecord, StoreError> {
        self.check_lock(lock)?;
        let dir = self.transaction_dir(id)?;
        let mut record = self.transaction(id)?;
        match record.state {
            TransactionState::Prepared => {}
            TransactionState::Committed => return Ok(record),
            _ => {
                return Err(StoreError::TransactionDecided {
                    record: Box::new(record),
                })
            }
        }
        let current = self.current()?.map(|g| g.number);
        if current != record.base_generation {
            let reason = format!(
                "the installation changed since it was prepared (prepared against generation {}, now {})",
                gen_name(record.base_generation),
                gen_name(current)
            );
            self.decide(
                &dir,
                &mut record,
                TransactionState::Aborted,
                Some(reason),
                None,
            )?;
            return Err(StoreError::TransactionBaseChanged {
                record: Box::new(record),
            });
        }
        if record.plugins.is_empty() {
            // Nothing of this side changes (the package brought what is
            // installed): committed without a new generation, so a two-part
            // install can still commit as one.
            self.decide(
                &dir,
                &mut record,
                TransactionState::Committed,
                None,
                current,
            )?;
            return Ok(record);
        }
        let staged = dir.join(STAGED_DIR);
        let plan = CommitPlan {
            add_or_replace: record
                .plugins
                .iter()
                .map(|p| {
                    let values =
                        values::read_file(&dir.join(VALUES_DIR).join(format!("{}.json", p.name)))?
                            .map(ValuesFile);
                    Ok(StagedPlugin {
                        name: p.name.clone(),
                        version: p.version.clone(),
                        enabled: p.enabled,
                        dir: staged.join(&p.name),
                        values,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
            remove: Vec::new(),
        };
        let generation = self.commit_from(lock, plan, &staged, Some(id))?;
        hit("txn", "after-commit-switch");
        self.decide(
            &dir,
            &mut record,
            TransactionState::Committed,
            None,
            Some(generation.number),
        )?;
        Ok(record)
    }

    /// Aborts open transaction `id` with `reason`; an aborted one is
    /// returned as it is.
    ///
    /// # Errors
    /// [`StoreError::TransactionNotFound`]; [`StoreError::TransactionDecided`]
    /// if it was already committed.
    pub fn abort_transaction(
        &self,
        lock: &StoreLock,
        id: &str,
        reason: &str,
    ) -> Result<TransactionRecord, StoreError> {
        self.check_lock(lock)?;
        let dir = self.transaction_dir(id)?;
        let mut record = self.transaction(id)?;
        match record.state {
            TransactionState::Aborted => Ok(record),
            TransactionState::Committed => Err(StoreError::TransactionDecided {
                record: Box::new(record),
            }),
            _ => {
                self.decide(
                    &dir,
                    &mut record,
                    TransactionState::Aborted,
                    Some(reason.to_string()),
                    None,
                )?;
                Ok(record)
            }
        }
    }

    /// Aborts every open transaction whose deadline has passed; returns
    /// them.
    ///
    /// # Errors
    /// As [`Store::transactions`], or a record write failing.
    pub fn expire_transactions(
        &self,
        lock: &StoreLock,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        self.check_lock(lock)?;
        let now = now_unix();
        let mut expired = Vec::new();
        for mut r in self.transactions()? {
            if r.expired(now) {
                let dir = self.transaction_dir(&r.id)?;
                let reason = format!(
                    "not decided before its deadline ({} s after it began)",
                    r.expires_unix.saturating_sub(r.created_unix)
                );
                self.decide(&dir, &mut r, TransactionState::Aborted, Some(reason), None)?;
                expired.push(r);
            }
        }
        Ok(expired)
    }

    /// Writes the decided record durably, then removes the staged files.
    fn decide(
        &self,
        dir: &Path,
        record: &mut TransactionRecord,
        state: TransactionState,
        reason: Option<String>,
        new_generation: Option<u64>,
    ) -> Result<(), StoreError> {
        record.state = state;
        record.reason = reason;
        record.new_generation = new_generation;
        record.decided_unix = Some(now_unix());
        write_record(dir, record)?;
        self.adopt(&dir.join(RECORD_FILE));
        hit("txn", "after-decided-record");
        // What is left is garbage now; recovery removes it if this fails.
        let _ = fsutil::remove_tree(&dir.join(STAGED_DIR));
        let _ = fsutil::remove_tree(&dir.join(UNPACK_DIR));
        let _ = fsutil::remove_tree(&dir.join(VALUES_DIR));
        let _ = std::fs::remove_file(dir.join(PACKAGE_FILE));
        Ok(())
    }

    /// Recovery of the transactions (the caller holds the lock): an
    /// interrupted prepare is aborted, a prepared transaction whose
    /// generation is current is marked committed (a crash after the switch),
    /// an expired one is aborted, leftovers of decided ones are removed, and
    /// decided records older than [`DECIDED_RETENTION`] are forgotten.
    pub(crate) fn recover_transactions(&self, report: &mut super::RecoveryReport) {
        let root = self.transactions_root();
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        let current = self.current().ok().flatten();
        let now = now_unix();
        for entry in entries.flatten() {
            let dir = entry.path();
            let Ok(mut record) = read_record(&dir.join(RECORD_FILE)) else {
                // Created but no record yet (or an unreadable one): nobody
                // can refer to it.
                report.remove(&dir);
                continue;
            };
            let committed_here = current
                .as_ref()
                .is_some_and(|g| g.state.transaction.as_deref() == Some(record.id.as_str()));
            let outcome = match record.state {
                TransactionState::Preparing | TransactionState::Prepared if committed_here => {
                    Some((
                        TransactionState::Committed,
                        None,
                        current.as_ref().map(|g| g.number),
                    ))
                }
                TransactionState::Preparing => Some((
                    TransactionState::Aborted,
                    Some("interrupted while it was being prepared".to_string()),
                    None,
                )),
                // Its holder meant to decide it under the lock recovery now
                // holds: it died in between.
                TransactionState::Prepared if record.holder_pid.is_some() => Some((
                    TransactionState::Aborted,
                    Some(format!(
                        "the process that prepared it (pid {}) stopped before committing it",
                        record.holder_pid.unwrap_or_default()
                    )),
                    None,
                )),
                TransactionState::Prepared if record.expired(now) => Some((
                    TransactionState::Aborted,
                    Some("not decided before its deadline".to_string()),
                    None,
                )),
                _ => None,
            };
            if let Some((state, reason, generation)) = outcome {
                if let Err(e) = self.decide(&dir, &mut record, state, reason, generation) {
                    report.warn(
                        &dir,
                        &format!(
                            "could not record the outcome of transaction {}: {e}",
                            record.id
                        ),
                    );
                }
                continue;
            }
            if record.state == TransactionState::Prepared {
                for leftover in [dir.join(UNPACK_DIR), dir.join(PACKAGE_FILE)] {
                    if std::fs::symlink_metadata(&leftover).is_ok() {
                        report.remove(&leftover);
                    }
                }
            }
            if !record.state.is_open() {
                let decided = record.decided_unix.unwrap_or(record.created_unix);
                if now.saturating_sub(decided) > DECIDED_RETENTION.as_secs() {
                    report.remove(&dir);
                } else {
                    for leftover in [
                        dir.join(STAGED_DIR),
                        dir.join(UNPACK_DIR),
                        dir.join(VALUES_DIR),
                        dir.join(PACKAGE_FILE),
                    ] {
                        if std::fs::symlink_metadata(&leftover).is_ok() {
                            report.remove(&leftover);
                        }
                    }
                }
            }
        }
    }
}

fn gen_name(g: Option<u64>) -> String {
    g.map_or("none".to_string(), |g| g.to_string())
}

fn read_record(path: &Path) -> Result<TransactionRecord, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() > 1 << 20 {
        return Err("record larger than 1 MiB".into());
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Replaces `dir/record.json` atomically and durably.
fn write_record(dir: &Path, record: &TransactionRecord) -> Result<(), StoreError> {
    let path = dir.join(RECORD_FILE);
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| {
        StoreError::io(
            "serialise transaction record",
            &path,
            std::io::Error::other(e),
            "this is a bug; report it",
        )
    })?;
    fsutil::replace_file(&path, &bytes).map_err(|e| StoreError::io("write", &path, e, HINT_DISK))
}

/// fsyncs every regular file and directory under `dir` (and `dir`): the
/// files batched ([`fsutil::fsync_files`]), then the directories, deepest
/// first.
fn fsync_tree(dir: &Path) -> std::io::Result<()> {
    fn collect(
        dir: &Path,
        files: &mut Vec<PathBuf>,
        dirs: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let ft = entry.file_type()?;
            if ft.is_dir() {
                collect(&entry.path(), files, dirs)?;
            } else if ft.is_file() {
                files.push(entry.path());
            }
        }
        dirs.push(dir.to_path_buf());
        Ok(())
    }
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    collect(dir, &mut files, &mut dirs)?;
    fsutil::fsync_files(&files).map_err(|(_, e)| e)?;
    for d in &dirs {
        fsutil::fsync_dir(d)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(txn: &Transaction, name: &str, body: &str) -> TransactionPlugin {
        let dir = txn.staged_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.json")), body).unwrap();
        TransactionPlugin {
            name: name.into(),
            version: "1.0.0".into(),
            enabled: true,
        }
    }

    fn prepared(store: &Store, lock: &StoreLock, holder: &str) -> String {
        let mut txn = store
            .begin_transaction(lock, holder, DEFAULT_TIMEOUT, false)
            .unwrap();
        let p = stage(&txn, "alpha", "{}");
        store.mark_prepared(lock, &mut txn, vec![p]).unwrap();
        txn.id().to_string()
    }

    #[test]
    fn prepare_commit_is_recorded_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lock = store.lock().unwrap();
        let id = prepared(&store, &lock, "test");
        assert_eq!(
            store.transaction(&id).unwrap().state,
            TransactionState::Prepared
        );
        let committed = store.commit_transaction(&lock, &id).unwrap();
        let g = store.current().unwrap().unwrap();
        assert_eq!(g.state.transaction.as_deref(), Some(id.as_str()));
        assert!(g.plugin_dir("alpha").unwrap().join("alpha.json").is_file());
        let r = store.transaction(&id).unwrap();
        assert_eq!(r, committed);
        assert_eq!(
            (r.state, r.new_generation),
            (TransactionState::Committed, Some(g.number))
        );
        let txn_dir = dir.path().join(TRANSACTIONS_DIR).join(&id);
        assert!(!txn_dir.join(STAGED_DIR).exists());
        // Again: the same outcome, nothing new.
        assert_eq!(store.commit_transaction(&lock, &id).unwrap(), committed);
    }

    #[test]
    fn a_second_preparer_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lock = store.lock().unwrap();
        let id = prepared(&store, &lock, "pendant 3f2a");
        match store.begin_transaction(&lock, "mender", DEFAULT_TIMEOUT, false) {
            Err(StoreError::TransactionOpen {
                id: open, holder, ..
            }) => {
                assert_eq!(
                    (open.as_str(), holder.as_str()),
                    (id.as_str(), "pendant 3f2a")
                )
            }
            other => panic!("{other:?}"),
        }
        let aborted = store.abort_transaction(&lock, &id, "operator").unwrap();
        assert_eq!(aborted.state, TransactionState::Aborted);
        assert!(store
            .begin_transaction(&lock, "mender", DEFAULT_TIMEOUT, false)
            .is_ok());
    }

    #[test]
    fn a_changed_base_aborts_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lock = store.lock().unwrap();
        let first = prepared(&store, &lock, "a");
        store.commit_transaction(&lock, &first).unwrap();
        let id = prepared(&store, &lock, "b");
        // Something else changes the installation meanwhile.
        store.set_enabled(&lock, "alpha", false).unwrap();
        match store.commit_transaction(&lock, &id) {
            Err(StoreError::TransactionBaseChanged { record }) => {
                assert_eq!(record.state, TransactionState::Aborted)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store.transaction(&id).unwrap().state,
            TransactionState::Aborted
        );
    }

    #[test]
    fn recovery_settles_interrupted_expired_and_switched_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Interrupted prepare.
        let preparing = {
            let lock = store.lock().unwrap();
            let txn = store
                .begin_transaction(&lock, "a", DEFAULT_TIMEOUT, false)
                .unwrap();
            txn.id().to_string()
        };
        let lock = store.lock().unwrap();
        let r = store.transaction(&preparing).unwrap();
        assert_eq!(r.state, TransactionState::Aborted, "{r:?}");
        // Expired.
        let id = prepared(&store, &lock, "b");
        let rec_dir = dir.path().join(TRANSACTIONS_DIR).join(&id);
        let mut r = store.transaction(&id).unwrap();
        r.expires_unix = 1;
        write_record(&rec_dir, &r).unwrap();
        drop(lock);
        let lock = store.lock().unwrap();
        assert_eq!(
            store.transaction(&id).unwrap().state,
            TransactionState::Aborted
        );
        // Switched but the record still says prepared (crash after the switch).
        let id = prepared(&store, &lock, "c");
        let before = store.transaction(&id).unwrap();
        let g = store.commit_transaction(&lock, &id).unwrap().new_generation;
        write_record(&rec_dir.with_file_name(&id), &before).unwrap();
        drop(lock);
        let _lock = store.lock().unwrap();
        let r = store.transaction(&id).unwrap();
        assert_eq!(
            (r.state, r.new_generation),
            (TransactionState::Committed, g)
        );
    }
}
