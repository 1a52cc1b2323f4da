//! Installing on the controller itself, in install transactions: the
//! controller receives a package (a `plugindemo.zip`, or a bare
//! `controller.zip`), verifies everything against its own device id, trust
//! store, version, architecture and installed plugins ([`crate::verify`]),
//! stages the plugins it changes, and prepares a transaction
//! ([`xplugin_store::transaction`]) that is committed at once or later
//! (`xplugin-controller install --prepare`, `commit ID`, `abort ID`; the
//! pendant's two-computer install; Mender).
//!
//! Nothing the sender checked is trusted: this is the only place the
//! controller's plugins are decided.

use crate::config::HostConfig;
use crate::plugin_config::{restage_transaction, PluginMigration};
use crate::verify::{verify_side, Part, Policy, SideHost, SideReport};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use xplugin_model::manifest::Side;
use xplugin_model::{Problem, ProblemCode, Problems, Version};
use xplugin_package::{unpack_package, PackageError, UnpackedPackage};
use xplugin_store::{Store, StoreError, Transaction, TransactionRecord, TransactionState};

/// The controller an install is for.
pub struct InstallHost<'a> {
    /// The controller's install root.
    pub root: PathBuf,
    /// The controller's version.
    pub host_version: Version,
    /// The controller's settings (trust store, device id, limits).
    pub config: &'a HostConfig,
}

/// How an install is asked for.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// Who prepares it, recorded in the transaction (`admin uid 0`, ...).
    pub holder: String,
    /// Upgrade policy.
    pub policy: Policy,
    /// How long a prepared transaction waits for its decision.
    pub timeout: Duration,
    /// What the package is called in messages (its file name).
    pub label: String,
}

/// What an install did: the transaction and the controller's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// The transaction id.
    pub transaction: String,
    /// Where it stands (`prepared`, `committed`, `aborted`).
    pub state: TransactionState,
    /// Who prepared it.
    pub holder: String,
    /// The generation it was prepared against.
    pub base_generation: Option<u64>,
    /// The generation its commit made current (or kept, when nothing
    /// changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_generation: Option<u64>,
    /// When an open transaction is aborted if undecided (unix seconds).
    pub expires_unix: u64,
    /// Why it was aborted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The controller's verdict on the package (when it was verified here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<SideReport>,
    /// A commit of a transaction prepared earlier: the configuration values
    /// migrated again from the latest values right before the switch, per
    /// plugin (the prepare's report said what they were then).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<PluginMigration>,
    /// Every problem found.
    pub problems: Vec<Problem>,
    /// The controller plugins (name -> version) that load once this
    /// transaction is committed: what a pendant checks its client plugins'
    /// `ctrlDepend` against during a two-computer install.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub prepared_set: BTreeMap<String, String>,
}

impl InstallReport {
    fn from_record(record: &TransactionRecord) -> InstallReport {
        InstallReport {
            transaction: record.id.clone(),
            state: record.state,
            holder: record.holder.clone(),
            base_generation: record.base_generation,
            new_generation: record.new_generation,
            expires_unix: record.expires_unix,
            reason: record.reason.clone(),
            controller: None,
            config: Vec::new(),
            problems: Vec::new(),
            prepared_set: BTreeMap::new(),
        }
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.problems.iter().filter(|p| p.is_error()).count()
    }
}

impl std::fmt::Display for InstallReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "transaction {}: {}", self.transaction, self.state)?;
        match (self.state, self.new_generation) {
            (TransactionState::Committed, Some(g)) => write!(f, ", generation {g}")?,
            (TransactionState::Prepared, _) => write!(
                f,
                " against generation {}; decide with `xplugin-controller commit {id}` or `abort {id}` before {} (unix time)",
                self.base_generation.map_or("none".into(), |g| g.to_string()),
                self.expires_unix,
                id = self.transaction
            )?,
            _ => {}
        }
        if let Some(r) = &self.reason {
            write!(f, " ({r})")?;
        }
        writeln!(f)?;
        if let Some(c) = &self.controller {
            write!(f, "{c}")?;
        }
        for p in &self.config {
            for line in crate::plugin_config::migration_lines(false, &p.changes) {
                writeln!(f, "  {}: {line}", p.name)?;
            }
        }
        let problems = Problems(self.problems.clone());
        if !problems.is_empty() {
            write!(f, "{problems}")?;
        }
        Ok(())
    }
}

/// Why an install did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The controller refused the package; the transaction was aborted and
    /// nothing was installed. The report lists every problem.
    #[error("package {} refused by the controller, nothing was installed: {} problem(s) found", .report.transaction, .report.error_count())]
    Refused {
        /// Full report.
        report: Box<InstallReport>,
    },
    /// The install root could not be used, or the transaction asked for
    /// does not exist or is not prepared.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Receiving or reading the package failed on our side.
    #[error("cannot receive the package into {}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl xplugin_model::Failure for InstallError {
    fn problems(&self) -> Problems {
        match self {
            InstallError::Refused { report } => Problems(report.problems.clone()),
            InstallError::Store(e) => xplugin_model::Failure::problems(e),
            InstallError::Io { path, .. } => Problems(vec![Problem::from_error(
                ProblemCode::PackageUnreadable,
                path.display().to_string(),
                self,
                "check that the package is readable and that the controller's install root has space",
            )]),
        }
    }
}

/// How long an install waits for another holder of the root's lock (a boot
/// or an admin command) before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Receives a package from `source` (at most the configured package size),
/// verifies it as this controller and prepares a transaction. With
/// `commit`, commits it at once.
///
/// # Errors
/// [`InstallError::Refused`] with every problem (the transaction is
/// aborted); [`InstallError::Store`] for a busy or unusable root or another
/// open transaction; [`InstallError::Io`] when receiving fails.
pub fn install(
    host: &InstallHost<'_>,
    source: &mut dyn Read,
    request: &InstallRequest,
    commit: bool,
) -> Result<InstallReport, InstallError> {
    install_from(host, Source::Reader(source), request, commit)
}

/// [`install`] of a package file inside the controller's root (the pendant
/// link's upload area): the file is moved into the transaction, not copied.
///
/// # Errors
/// As [`install`].
pub fn install_file(
    host: &InstallHost<'_>,
    package: &Path,
    request: &InstallRequest,
    commit: bool,
) -> Result<InstallReport, InstallError> {
    install_from(host, Source::File(package), request, commit)
}

/// Where the package comes from.
enum Source<'a> {
    /// A stream (the admin socket's passed descriptor).
    Reader(&'a mut dyn Read),
    /// A file on the root's file system, moved into the transaction.
    File(&'a Path),
}

fn install_from(
    host: &InstallHost<'_>,
    source: Source<'_>,
    request: &InstallRequest,
    commit: bool,
) -> Result<InstallReport, InstallError> {
    let store = Store::open(&host.root)?;
    let lock = store.lock_wait(LOCK_WAIT)?;
    let mut txn = store.begin_transaction(&lock, &request.holder, request.timeout, commit)?;
    let outcome = prepare_in(host, &store, &lock, &mut txn, source, request);
    let mut report = match outcome {
        Ok(report) => report,
        Err(Prepare::Refused(mut report)) => {
            let reason = format!("refused: {} problem(s)", report.error_count());
            let record = store.abort_transaction(&lock, txn.id(), &reason)?;
            report.state = record.state;
            report.reason = record.reason;
            return Err(InstallError::Refused { report });
        }
        Err(Prepare::Failed(e)) => {
            let _ = store.abort_transaction(&lock, txn.id(), &format!("failed: {e}"));
            return Err(e);
        }
    };
    if commit {
        let record = store.commit_transaction(&lock, txn.id())?;
        report.state = record.state;
        report.new_generation = record.new_generation;
        if let Some(c) = report.controller.as_mut() {
            c.new_generation = record.new_generation;
        }
    }
    Ok(report)
}

enum Prepare {
    Refused(Box<InstallReport>),
    Failed(InstallError),
}

impl From<InstallError> for Prepare {
    fn from(e: InstallError) -> Self {
        Prepare::Failed(e)
    }
}

impl From<StoreError> for Prepare {
    fn from(e: StoreError) -> Self {
        Prepare::Failed(InstallError::Store(e))
    }
}

fn prepare_in(
    host: &InstallHost<'_>,
    store: &Store,
    lock: &xplugin_store::StoreLock,
    txn: &mut Transaction,
    source: Source<'_>,
    request: &InstallRequest,
) -> Result<InstallReport, Prepare> {
    let mut report = InstallReport::from_record(txn.record());
    let package = txn.package_path();
    let limit = host.config.limits.max_package_bytes;
    match source {
        Source::Reader(r) => receive(r, &package, limit)?,
        Source::File(p) => take_file(p, &package, limit)?,
    }
    let unpack = txn.unpack_dir();
    let unpacked = match unpack_either(&package, &unpack, host, &request.label) {
        Ok(u) => u,
        Err(problems) => {
            report.problems = problems.0;
            return Err(Prepare::Refused(Box::new(report)));
        }
    };
    report.problems.extend(unpacked.warnings.0.iter().cloned());
    let Some(tree) = &unpacked.controller else {
        report.problems.push(Problem::new(
            ProblemCode::PackageNoSideArchive,
            request.label.as_str(),
            "the package has no controller part (controller.zip)",
            "install the package on the pendant; a controller installs only controller plugins",
        ));
        return Err(Prepare::Refused(Box::new(report)));
    };
    let side_host = SideHost {
        root: host.root.clone(),
        host_version: Some(host.host_version.clone()),
        config: host.config,
        // The controller checks its own part for its own CPU.
        arch: None,
    };
    let part = Part {
        side: Side::Controller,
        tree,
        base: store.current()?,
        controller_running: None,
    };
    let mut verdict = verify_side(
        &side_host,
        part,
        request.policy,
        &request.label,
        &mut report.problems,
    );
    report.controller = Some(verdict.report(&host.root));
    report.prepared_set = verdict
        .running_set()
        .into_iter()
        .map(|(name, version)| (name, version.to_string()))
        .collect();
    if report.error_count() > 0 {
        if let Some(c) = report.controller.as_mut() {
            c.load_order.clear();
        }
        return Err(Prepare::Refused(Box::new(report)));
    }
    let staged = txn.staged_dir();
    for a in verdict.changed() {
        let from = tree.dir.join(&a.name);
        std::fs::rename(&from, staged.join(&a.name)).map_err(|source| InstallError::Io {
            path: from.clone(),
            source,
        })?;
        // The values it gets, migrated from the base's, staged with it.
        let values = verdict.values_file(&a.name).map(|f| f.0.as_slice());
        store.stage_transaction_values(lock, txn.id(), &a.name, values)?;
    }
    store.mark_prepared(lock, txn, verdict.transaction_plugins())?;
    verdict.record_clock();
    report.state = txn.record().state;
    Ok(report)
}

/// Copies at most `limit` bytes of the package into `path`; more is a
/// refusal, not a truncation.
fn receive(source: &mut dyn Read, path: &Path, limit: u64) -> Result<(), Prepare> {
    let io = |source| {
        Prepare::Failed(InstallError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut file = std::fs::File::create(path).map_err(io)?;
    let copied = std::io::copy(&mut source.take(limit + 1), &mut file).map_err(io)?;
    if copied > limit {
        return Err(io(std::io::Error::other(format!(
            "the package is larger than the {limit} bytes allowed (max_package_bytes in the configuration)"
        ))));
    }
    file.flush().map_err(io)
}

/// Moves the package file at `from` to `to` (one file system: a rename),
/// refusing more than `limit` bytes.
fn take_file(from: &Path, to: &Path, limit: u64) -> Result<(), Prepare> {
    let io = |source| {
        Prepare::Failed(InstallError::Io {
            path: from.to_path_buf(),
            source,
        })
    };
    let len = std::fs::metadata(from).map_err(io)?.len();
    if len > limit {
        return Err(io(std::io::Error::other(format!(
            "the package is larger than the {limit} bytes allowed (max_package_bytes in the configuration)"
        ))));
    }
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            std::fs::copy(from, to).map_err(io)?;
            let _ = std::fs::remove_file(from);
            Ok(())
        }
        Err(e) => Err(io(e)),
    }
}

/// Unpacks `package` as a vendor package, or, when it holds neither
/// `client.zip` nor `controller.zip`, as a bare `controller.zip` (wrapped
/// into a package first so that the one hostile-input reader reads it).
fn unpack_either(
    package: &Path,
    dir: &Path,
    host: &InstallHost<'_>,
    label: &str,
) -> Result<UnpackedPackage, Problems> {
    let limits = &host.config.limits;
    let first = match unpack_package(package, dir, limits) {
        Ok(u) => return Ok(u),
        Err(PackageError::Refused(p)) => p,
        Err(e) => return Err(io_problem(label, &e)),
    };
    let bare = first
        .0
        .iter()
        .any(|p| p.code == ProblemCode::PackageNoSideArchive);
    if !bare {
        return Err(first);
    }
    let wrapped = package.with_extension("wrapped.zip");
    if let Err(e) = wrap_as_controller_part(package, &wrapped) {
        return Err(io_problem(label, &e));
    }
    let second = unpack_package(&wrapped, dir, limits);
    let _ = std::fs::remove_file(&wrapped);
    match second {
        Ok(u) => Ok(u),
        // Neither reading worked: say what is wrong with it as a package,
        // and as a bare controller part.
        Err(PackageError::Refused(mut p)) => {
            p.0.extend(first.0);
            Err(p)
        }
        Err(e) => Err(io_problem(label, &e)),
    }
}

fn io_problem(label: &str, e: &(dyn std::error::Error + '_)) -> Problems {
    Problems(vec![Problem::from_error(
        ProblemCode::PackageUnreadable,
        label,
        e,
        "check free space in the controller's install root and send the package again",
    )])
}

/// Writes a package holding `bare` (stored, not compressed again) as its
/// `controller.zip`.
fn wrap_as_controller_part(bare: &Path, out: &Path) -> std::io::Result<()> {
    let mut input = std::fs::File::open(bare)?;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(out)?);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(input.metadata()?.len() >= u64::from(u32::MAX));
    zip.start_file("controller.zip", options)
        .map_err(std::io::Error::other)?;
    std::io::copy(&mut input, &mut zip)?;
    zip.finish().map_err(std::io::Error::other)?;
    Ok(())
}

/// Commits prepared transaction `id`: first its plugins' configuration
/// values are migrated again from the latest values of the base generation
/// (a `config set` since the prepare is kept), then the store switches
/// plugins and values together.
///
/// # Errors
/// As [`Store::commit_transaction`].
pub fn commit(root: &Path, id: &str) -> Result<InstallReport, InstallError> {
    let store = Store::open(root)?;
    let lock = store.lock_wait(LOCK_WAIT)?;
    let config = restage_transaction(&store, &lock, id, Side::Controller)?;
    let record = store.commit_transaction(&lock, id)?;
    let mut report = InstallReport::from_record(&record);
    if record.state == TransactionState::Committed {
        report.config = config;
    }
    Ok(report)
}

/// Aborts open transaction `id`.
///
/// # Errors
/// As [`Store::abort_transaction`].
pub fn abort(root: &Path, id: &str, reason: &str) -> Result<InstallReport, InstallError> {
    let store = Store::open(root)?;
    let lock = store.lock_wait(LOCK_WAIT)?;
    let record = store.abort_transaction(&lock, id, reason)?;
    Ok(InstallReport::from_record(&record))
}

/// The outcome of transaction `id`, without changing anything.
///
/// # Errors
/// [`StoreError::TransactionNotFound`].
pub fn outcome(root: &Path, id: &str) -> Result<InstallReport, InstallError> {
    let store = Store::open(root)?;
    Ok(InstallReport::from_record(&store.transaction(id)?))
}
