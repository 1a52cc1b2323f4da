//! The pendant's import over the pendant link: one install across two
//! computers (`xplugin-client import PKG --controller ADDR:PORT`).
//!
//! Only the pendant opens connections, so the controller's durable commit
//! record is the commit point of the whole install. Each step is durable
//! before the next, and the pendant's journal
//! (`ROOT/state/link/pending.json`) says how far it got:
//!
//! ```text
//! unpack the client part here; leave the controller part packed
//! upload the controller part (resumable, addressed by SHA-256)
//! journal: preparing (request R)
//! prepare on the controller  -> transaction T (PREPARED there) or problems
//! journal: prepared (T)
//! verify the client part against T's prepared set (ctrlDepend)
//! prepare the client part here (a store transaction: staged, not switched)
//! journal: prepared (T, client transaction C)
//! [confirm]
//! journal: commit-sent
//! commit T on the controller   <- THE commit point; the controller applies by policy
//! commit C here (switch)
//! journal removed; a running `xplugin-client run` is told
//! ```
//!
//! Recovery ([`settle`], run first by every link command of the pendant):
//! ask the controller what became of T (looked up by R when T is not
//! known yet); an undecided T is aborted there (a recovering pendant never
//! commits on its own); then C follows the controller's decision. While a
//! journal exists, nothing else may change the pendant's install root
//! ([`pending`]), so C can always be committed when T was.

use crate::config::ApplyPolicy;
use crate::import::package_label;
use crate::verify::{verify_side, Part, Policy, SideHost, SideReport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xplugin_link::client::{connect, Connection};
use xplugin_link::failpoint::kill_point;
use xplugin_link::message::{unwire, ControllerStatus, Hello, TransactionReply};
use xplugin_link::LinkError;
use xplugin_model::manifest::Side;
use xplugin_model::{Failure, Problem, ProblemCode, Problems, Version};
use xplugin_package::{unpack_package_sides, PackageError};
use xplugin_store::{Store, StoreError, StoreLock, TransactionPlugin};

/// The journal inside the pendant's root.
pub const PENDING_FILE: &str = "state/link/pending.json";
/// Where the pendant tells a running `xplugin-client run` about a new
/// client generation.
pub const APPLY_REQUEST_FILE: &str = "state/link/apply-request.json";
/// Where a running `xplugin-client run` says it runs.
pub const RUNNER_FILE: &str = "state/link/runner.json";
/// The client part's transaction waits for the controller's decision, not
/// for a timeout: it is decided only by [`settle`] or the import itself.
const CLIENT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Attempts at preparing when the connection is lost in the middle.
const PREPARE_ATTEMPTS: u32 = 3;

/// How far a two-computer install got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The prepare request was (about to be) sent.
    Preparing,
    /// The controller prepared its transaction.
    Prepared,
    /// The commit was (about to be) sent.
    CommitSent,
}

/// The pendant's journal of an undecided two-computer install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingInstall {
    /// The controller's address.
    pub address: String,
    /// The package's name.
    pub package: String,
    /// The prepare request's id.
    pub request: String,
    /// How far it got.
    pub phase: Phase,
    /// The controller's transaction, once known.
    #[serde(default)]
    pub controller_transaction: Option<String>,
    /// This pendant's transaction of the client part, once prepared.
    #[serde(default)]
    pub client_transaction: Option<String>,
}

fn journal_path(root: &Path) -> PathBuf {
    root.join(PENDING_FILE)
}

fn write_journal(root: &Path, p: &PendingInstall) -> Result<(), RemoteImportError> {
    let path = journal_path(root);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| journal_error(&path, e))?;
    }
    let bytes =
        serde_json::to_vec_pretty(p).map_err(|e| journal_error(&path, std::io::Error::other(e)))?;
    xplugin_store::replace_file_with_mode(&path, &bytes, 0o600).map_err(|e| journal_error(&path, e))
}

fn clear_journal(root: &Path) -> Result<(), RemoteImportError> {
    let path = journal_path(root);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(journal_error(&path, e)),
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    kill_point("link-client-after-journal-cleared");
    Ok(())
}

fn journal_error(path: &Path, source: std::io::Error) -> RemoteImportError {
    RemoteImportError::Store(StoreError::Io {
        action: "write the link journal",
        path: path.to_path_buf(),
        source,
        hint: "check free space and permissions of the pendant's install root".into(),
    })
}

/// The undecided two-computer install of pendant root `root`, if any.
pub fn pending(root: &Path) -> Option<PendingInstall> {
    let bytes = std::fs::read(journal_path(root)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The refusal of a change to the pendant's root while `p` is undecided.
pub fn undecided_problem(root: &Path, p: &PendingInstall) -> Problem {
    Problem::new(
        ProblemCode::LinkInstallUndecided,
        root.display().to_string(),
        format!(
            "the install of {} with the controller at {} (controller transaction {}) is not decided yet; the pendant's plugins may not change until it is",
            p.package,
            p.address,
            p.controller_transaction.as_deref().unwrap_or("not known yet")
        ),
        format!(
            "reach the controller: `xplugin-client controller-status --controller {}` settles it first",
            p.address
        ),
    )
}

/// What a pendant needs to reach its controller.
#[derive(Debug, Clone)]
pub struct LinkTarget {
    /// The pendant's install root (its identity, pairings and journal).
    pub root: PathBuf,
    /// The controller's address (normalised).
    pub address: String,
    /// This device's id.
    pub device_id: Option<String>,
    /// What the pendant says about itself.
    pub hello: Hello,
    /// How long to keep reconnecting after a lost connection.
    pub retry: Duration,
}

/// A connection to the controller that reconnects after a loss, for the
/// requests that may be repeated.
pub struct Linked<'a> {
    target: &'a LinkTarget,
    conn: Option<Connection>,
    /// Warnings of the hello (a clock skew).
    pub warnings: Vec<Problem>,
}

impl<'a> Linked<'a> {
    /// Not connected yet.
    pub fn new(target: &'a LinkTarget) -> Linked<'a> {
        Linked {
            target,
            conn: None,
            warnings: Vec::new(),
        }
    }

    fn connection(&mut self, deadline: Instant) -> Result<&mut Connection, LinkError> {
        if self.conn.is_none() {
            let c = loop {
                match connect(
                    &self.target.root,
                    &self.target.address,
                    self.target.device_id.as_deref(),
                    self.target.hello.clone(),
                ) {
                    Ok(c) => break c,
                    Err(e) if e.is_connection_lost() && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(250));
                    }
                    Err(e) => return Err(e),
                }
            };
            if self.warnings.is_empty() {
                self.warnings = c.warnings.clone();
            }
            self.conn = Some(c);
        }
        self.conn.as_mut().ok_or_else(|| LinkError::NotPaired {
            address: self.target.address.clone(),
        })
    }

    /// Runs `f`, reconnecting and running it again after a lost
    /// connection, for up to the retry window: only for requests that may
    /// be repeated (status, upload, outcome, lookup, abort, commit).
    ///
    /// # Errors
    /// The last [`LinkError`].
    pub fn call<T>(
        &mut self,
        mut f: impl FnMut(&mut Connection) -> Result<T, LinkError>,
    ) -> Result<T, LinkError> {
        let deadline = Instant::now() + self.target.retry;
        loop {
            let result = self.connection(deadline).and_then(&mut f);
            match result {
                Err(e) if e.is_connection_lost() && Instant::now() < deadline => {
                    self.conn = None;
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => {
                    if e.is_connection_lost() {
                        self.conn = None;
                    }
                    return Err(e);
                }
                Ok(v) => return Ok(v),
            }
        }
    }

    /// Runs `f` once (a request that must not be repeated blindly).
    ///
    /// # Errors
    /// Its [`LinkError`] (the connection is dropped after a loss).
    pub fn once<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<T, LinkError>,
    ) -> Result<T, LinkError> {
        let deadline = Instant::now() + self.target.retry;
        let result = self.connection(deadline).and_then(f);
        if result.as_ref().is_err_and(LinkError::is_connection_lost) {
            self.conn = None;
        }
        result
    }

    /// The controller's status.
    ///
    /// # Errors
    /// [`LinkError`].
    pub fn status(&mut self) -> Result<ControllerStatus, LinkError> {
        self.call(|c| c.status())
    }
}

/// How a previously undecided install ended.
#[derive(Debug, Clone, Serialize)]
pub struct Settled {
    /// The journal that was settled.
    pub install: PendingInstall,
    /// `committed` or `aborted`, on both computers.
    pub outcome: &'static str,
    /// The pendant's new generation, when committed.
    pub client_generation: Option<u64>,
    /// Warnings (an outcome the controller had forgotten).
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for Settled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "the earlier install of {} with {} was settled: {} on both computers",
            self.install.package, self.install.address, self.outcome
        )
    }
}

fn is_not_found(e: &LinkError) -> bool {
    matches!(e, LinkError::Remote { problems, .. }
        if problems.iter().any(|p| p.code == ProblemCode::StoreTransactionNotFound))
}

/// Settles the undecided install of pendant root `root` with the
/// controller it was made with (`target` names this pendant; the
/// journal's address is used): the controller's decision is applied to
/// the client part, an undecided controller transaction is aborted.
/// Returns `None` when nothing was undecided.
///
/// # Errors
/// [`RemoteImportError::Link`] when the controller cannot be reached (the
/// install stays undecided), [`RemoteImportError::Store`].
pub fn settle(target: &LinkTarget) -> Result<Option<Settled>, RemoteImportError> {
    let Some(p) = pending(&target.root) else {
        return Ok(None);
    };
    let journal_target = LinkTarget {
        address: p.address.clone(),
        ..target.clone()
    };
    let mut link = Linked::new(&journal_target);
    let mut problems = Vec::new();
    let id = match &p.controller_transaction {
        Some(id) => Some(id.clone()),
        None => match link.call(|c| c.lookup(&p.request)) {
            Ok(r) => Some(r.transaction),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e.into()),
        },
    };
    let committed = match &id {
        None => false,
        Some(id) => match link.call(|c| c.outcome(id)) {
            Ok(r) if r.state == "committed" => true,
            Ok(r) if r.state == "aborted" => false,
            Ok(_) => {
                // Undecided: the pendant that prepared it stopped before it
                // committed (or its commit never arrived). Never commit on
                // recovery: abort, and follow what the controller says.
                let reason =
                    "the pendant's import stopped before it committed; its recovery aborts";
                match link.call(|c| c.abort(id, reason)) {
                    Ok(r) => r.state == "committed",
                    Err(e) => match link.call(|c| c.outcome(id)) {
                        Ok(r) => r.state == "committed",
                        Err(_) => return Err(e.into()),
                    },
                }
            }
            Err(e) if is_not_found(&e) => {
                // Forgotten (decided longer ago than the controller keeps
                // outcomes): committed if its generation is the committed one.
                let status = link.status()?;
                let yes = p.phase == Phase::CommitSent
                    && status.committed_transaction.as_deref() == Some(id.as_str());
                problems.push(Problem::new(
                    ProblemCode::LinkOutcomeUnknown,
                    format!("controller transaction {id}"),
                    format!(
                        "the controller at {} no longer knows transaction {id}; its committed generation {} it, so the pendant's part was {}",
                        p.address,
                        if yes { "comes from" } else { "does not come from" },
                        if yes { "committed" } else { "discarded" }
                    ),
                    ProblemCode::LinkOutcomeUnknown.what_to_do(),
                ));
                yes
            }
            Err(e) => return Err(e.into()),
        },
    };
    let store = Store::open(&target.root)?;
    let lock = store.lock_wait(Duration::from_secs(60))?;
    let mut client_generation = None;
    // The client part: the journal names it, unless the pendant stopped
    // between preparing it and writing that down; its holder names the
    // controller's transaction either way.
    let client_txn = p.client_transaction.clone().or_else(|| {
        let mark = format!(" with controller transaction {} at ", id.as_deref()?);
        store
            .transactions()
            .ok()?
            .into_iter()
            .find(|r| r.state.is_open() && r.holder.contains(&mark))
            .map(|r| r.id)
    });
    if let Some(c) = &client_txn {
        if committed {
            let r = store.commit_transaction(&lock, c)?;
            client_generation = r.new_generation;
        } else if store.transaction(c).is_ok_and(|r| r.state.is_open()) {
            store.abort_transaction(&lock, c, "the controller did not commit its part")?;
        }
    } else if committed && p.phase != Phase::Preparing {
        log::warn!(
            "controller transaction {} was committed but the pendant had not prepared its part: import the package again",
            id.as_deref().unwrap_or("?")
        );
    }
    clear_journal(&target.root)?;
    drop(lock);
    Ok(Some(Settled {
        install: p,
        outcome: if committed { "committed" } else { "aborted" },
        client_generation,
        problems,
    }))
}

/// What an online import needs.
pub struct RemoteImport<'a> {
    /// The package file.
    pub package: PathBuf,
    /// The pendant (client plugins).
    pub client: SideHost<'a>,
    /// The controller.
    pub target: LinkTarget,
    /// Upgrade policy (both computers).
    pub policy: Policy,
    /// How the controller and a running `xplugin-client run` apply the new
    /// set (`None`: each computer's configured policy).
    pub apply: Option<ApplyPolicy>,
    /// Asked once both parts are prepared, before anything is committed
    /// (the terminal's confirmation); `false` aborts both.
    pub confirm: &'a mut dyn FnMut(&RemoteImportReport) -> bool,
    /// How long to wait for the controller to report the applied
    /// generation running.
    pub apply_wait: Duration,
}

/// Everything an online import did.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteImportReport {
    /// The package.
    pub package: PathBuf,
    /// The controller's address.
    pub controller_address: String,
    /// True once committed on both computers.
    pub committed: bool,
    /// The controller's transaction.
    pub controller_transaction: Option<String>,
    /// The pendant's transaction of its client part.
    pub client_transaction: Option<String>,
    /// The controller's report of its part (its `--json` document).
    pub controller: Option<serde_json::Value>,
    /// The controller's report in words.
    #[serde(skip)]
    pub controller_text: String,
    /// The client part.
    pub client: Option<SideReport>,
    /// What applying on the controller said.
    pub apply: Option<serde_json::Value>,
    /// The controller's status once it applied (when it applied now).
    pub applied: Option<serde_json::Value>,
    /// What a running `xplugin-client run` was told.
    pub client_apply: Option<String>,
    /// An earlier undecided install settled first.
    pub settled: Option<Settled>,
    /// Where each upload of the controller part started (more than one
    /// after a lost connection; above 0 when it resumed).
    pub uploads: Vec<u64>,
    /// Every problem found, on both computers.
    pub problems: Vec<Problem>,
}

impl RemoteImportReport {
    fn new(opts: &RemoteImport<'_>) -> RemoteImportReport {
        RemoteImportReport {
            package: opts.package.clone(),
            controller_address: opts.target.address.clone(),
            committed: false,
            controller_transaction: None,
            client_transaction: None,
            controller: None,
            controller_text: String::new(),
            client: None,
            apply: None,
            applied: None,
            client_apply: None,
            settled: None,
            uploads: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.problems.iter().filter(|p| p.is_error()).count()
    }
}

impl std::fmt::Display for RemoteImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = &self.settled {
            write!(f, "{s}")?;
        }
        writeln!(
            f,
            "package {} (controller {})",
            self.package.display(),
            self.controller_address
        )?;
        if !self.controller_text.is_empty() {
            write!(f, "controller: {}", self.controller_text)?;
        }
        // The text above is the controller's answer to prepare; say what the
        // commit and the apply made of it.
        if self.committed {
            if let Some(c) = &self.controller {
                let generation = c["new_generation"]
                    .as_u64()
                    .map_or("unchanged".to_string(), |g| g.to_string());
                let apply = self
                    .apply
                    .as_ref()
                    .and_then(|a| a["state"].as_str())
                    .unwrap_or("by its policy");
                writeln!(
                    f,
                    "controller: committed transaction {}: generation {generation}, apply {apply}",
                    self.controller_transaction.as_deref().unwrap_or("-"),
                )?;
            }
            if let Some(running) = self.applied.as_ref().and_then(|a| a["running"].as_u64()) {
                writeln!(f, "controller: now running generation {running}")?;
            }
        }
        if let Some(c) = &self.client {
            write!(f, "{c}")?;
        }
        if let Some(a) = &self.client_apply {
            writeln!(f, "{a}")?;
        }
        let problems = Problems(self.problems.clone());
        if !problems.is_empty() {
            write!(f, "{problems}")?;
        }
        Ok(())
    }
}

/// Why an online import did not install.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteImportError {
    /// Refused by the pendant's or the controller's checks: nothing was
    /// installed on either computer.
    #[error("package {} refused, nothing was installed on either computer: {} problem(s) found", .report.package.display(), .report.error_count())]
    Refused {
        /// Full report.
        report: Box<RemoteImportReport>,
    },
    /// The operator did not confirm: nothing was installed.
    #[error("not confirmed: nothing was installed on either computer")]
    NotConfirmed {
        /// What would have been installed.
        report: Box<RemoteImportReport>,
    },
    /// The controller aborted its transaction (its timeout, a change of
    /// its installation): the pendant discarded its part too.
    #[error("the controller aborted the install ({reason}); the pendant discarded its part: nothing was installed")]
    Aborted {
        /// The controller's reason.
        reason: String,
        /// Full report.
        report: Box<RemoteImportReport>,
    },
    /// The link failed. When it failed after the controller prepared, the
    /// install is undecided until [`settle`] reaches the controller.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The pendant's install root could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the package failed on our side.
    #[error("cannot read package {}", package.display())]
    Package {
        /// The package.
        package: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Failure for RemoteImportError {
    fn problems(&self) -> Problems {
        match self {
            RemoteImportError::Refused { report } => Problems(report.problems.clone()),
            RemoteImportError::NotConfirmed { report } => {
                let mut p = report.problems.clone();
                p.push(Problem::new(
                    ProblemCode::LinkNotConfirmed,
                    report.package.display().to_string(),
                    "the install was not confirmed; both computers keep what they had",
                    "import again and confirm, or pass --yes in scripts",
                ));
                Problems(p)
            }
            RemoteImportError::Aborted { report, .. } => {
                let mut p = report.problems.clone();
                p.push(Problem::from_error(
                    ProblemCode::StoreTransactionDecided,
                    report.package.display().to_string(),
                    self,
                    "import again",
                ));
                Problems(p)
            }
            RemoteImportError::Link(e) => e.problems(),
            RemoteImportError::Store(e) => e.problems(),
            RemoteImportError::Package { package, .. } => Problems(vec![Problem::from_error(
                ProblemCode::PackageUnreadable,
                package.display().to_string(),
                self,
                "check that the file is readable and that the pendant's install root has space",
            )]),
        }
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 8];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !ok {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (t ^ (u64::from(std::process::id()) << 40)).to_be_bytes();
    }
    xplugin_link::key::hex(&bytes)
}

/// The controller part as a package of its own: the outer package's
/// `controller.zip` entry copied as it is (no recompression), so the
/// controller reads it with the same hostile-package reader.
fn controller_part(package: &Path, out: &Path) -> std::io::Result<(String, u64)> {
    let mut outer =
        zip::ZipArchive::new(std::fs::File::open(package)?).map_err(std::io::Error::other)?;
    {
        let entry = outer
            .by_name_raw(b"controller.zip")
            .map_err(std::io::Error::other)?;
        let mut w = zip::ZipWriter::new(std::fs::File::create(out)?);
        w.raw_copy_file(entry).map_err(std::io::Error::other)?;
        w.finish().map_err(std::io::Error::other)?;
    }
    let mut f = std::fs::File::open(out)?;
    let sha = xplugin_link::upload::hash_file(&mut f)?;
    Ok((sha, f.metadata()?.len()))
}

/// The client's install root, opened and locked for the whole import
/// (created only once something is prepared in it).
struct ClientRoot {
    store: Option<(Store, StoreLock)>,
}

impl ClientRoot {
    fn open(root: &Path) -> Result<ClientRoot, StoreError> {
        Ok(ClientRoot {
            store: match Store::existing(root)? {
                Some(s) => {
                    let l = s.lock()?;
                    Some((s, l))
                }
                None => None,
            },
        })
    }

    fn get(&mut self, root: &Path) -> Result<&(Store, StoreLock), StoreError> {
        if self.store.is_none() {
            let s = Store::open(root)?;
            let l = s.lock()?;
            self.store = Some((s, l));
        }
        self.store.as_ref().ok_or_else(|| StoreError::Busy {
            pid: None,
            root: root.to_path_buf(),
        })
    }
}

fn versions(set: &BTreeMap<String, String>) -> BTreeMap<String, Version> {
    set.iter()
        .filter_map(|(n, v)| Some((n.clone(), v.parse().ok()?)))
        .collect()
}

/// The controller plugins that run now (for `ctrlDepend` when the package
/// brings no controller part, and for `xplugin-client run --controller`).
pub fn running_set(status: &ControllerStatus) -> BTreeMap<String, Version> {
    status
        .plugins
        .iter()
        .filter(|p| p.state == "running")
        .filter_map(|p| Some((p.name.clone(), p.version.as_deref()?.parse().ok()?)))
        .collect()
}

/// Imports a package over the pendant link as one transaction over both
/// computers (see the module documentation).
///
/// # Errors
/// [`RemoteImportError`]; after [`RemoteImportError::Link`] the install may
/// be undecided (the journal says so, and [`settle`] decides it).
pub fn import_remote(opts: RemoteImport<'_>) -> Result<RemoteImportReport, RemoteImportError> {
    let mut report = RemoteImportReport::new(&opts);
    let root = opts.client.root.clone();
    report.settled = settle(&opts.target)?;
    let mut link = Linked::new(&opts.target);
    let mut client_root = ClientRoot::open(&root)?;
    let scratch = tempfile::Builder::new()
        .prefix("xplugin-import-")
        .tempdir_in(match &client_root.store {
            Some((s, _)) => s.root().join(xplugin_store::STAGING_DIR),
            None => std::env::temp_dir(),
        })
        .map_err(|e| RemoteImportError::Package {
            package: opts.package.clone(),
            source: e,
        })?;
    let label = package_label(&opts.package);
    let unpack_dir = scratch.path().join("unpack");
    std::fs::create_dir(&unpack_dir).map_err(|e| RemoteImportError::Package {
        package: opts.package.clone(),
        source: e,
    })?;
    let unpacked = match unpack_package_sides(
        &opts.package,
        &unpack_dir,
        &opts.client.config.limits,
        &[Side::Client],
    ) {
        Ok(u) => u,
        Err(PackageError::Refused(problems)) => {
            report.problems = problems.0;
            return Err(RemoteImportError::Refused {
                report: Box::new(report),
            });
        }
        Err(PackageError::Io { source, .. }) => {
            return Err(RemoteImportError::Package {
                package: opts.package.clone(),
                source,
            })
        }
        Err(e) => {
            return Err(RemoteImportError::Package {
                package: opts.package.clone(),
                source: std::io::Error::other(e.to_string()),
            })
        }
    };
    report.problems.extend(unpacked.warnings.0.iter().cloned());
    let has_controller_part = unpacked.not_unpacked.contains(&Side::Controller);

    // The controller's part first: it decides the set ctrlDepend is
    // checked against.
    let mut journal = PendingInstall {
        address: opts.target.address.clone(),
        package: label.clone(),
        request: random_id(),
        phase: Phase::Preparing,
        controller_transaction: None,
        client_transaction: None,
    };
    let (controller_set, controller_reply) = if has_controller_part {
        let part = scratch.path().join("controller-part.zip");
        let (sha, size) =
            controller_part(&opts.package, &part).map_err(|e| RemoteImportError::Package {
                package: opts.package.clone(),
                source: e,
            })?;
        let upload = Upload {
            path: &part,
            sha: &sha,
            size,
            started: &mut report.uploads,
        };
        match prepare_remote(&mut link, &root, &mut journal, upload, &label, opts.policy) {
            Ok(r) => (versions(&r.prepared_set), Some(r)),
            Err(Prepared::Refused(problems)) => {
                clear_journal(&root)?;
                report.problems.extend(problems);
                // Every problem at once: the client part too, against what
                // the controller runs now.
                let running = link.status().ok().map(|s| running_set(&s));
                verify_client(&opts, &unpacked, running, &label, &mut report);
                return Err(RemoteImportError::Refused {
                    report: Box::new(report),
                });
            }
            Err(Prepared::Failed(e)) => return Err(e),
        }
    } else {
        (running_set(&link.status()?), None)
    };
    report.problems.extend(link.warnings.iter().cloned());
    if let Some(r) = &controller_reply {
        report.controller_transaction = Some(r.transaction.clone());
        report.controller = Some(r.report.clone());
        report.controller_text = r.text.clone();
        report.problems.extend(unwire(&r.problems));
    }

    let verdict = verify_client(&opts, &unpacked, Some(controller_set), &label, &mut report);
    if report.error_count() > 0 {
        if let Some(r) = &controller_reply {
            let why = format!(
                "the pendant refused the client part: {} problem(s)",
                report.error_count()
            );
            let _ = link.call(|c| c.abort(&r.transaction, &why));
            clear_journal(&root)?;
        }
        if let Some(c) = report.client.as_mut() {
            c.load_order.clear();
        }
        return Err(RemoteImportError::Refused {
            report: Box::new(report),
        });
    }

    // The client part: staged and verified, not switched.
    let client_txn = match &verdict {
        Some((v, tree_dir)) if !v.changed().is_empty() => {
            let (store, lock) = client_root.get(&root)?;
            let holder = format!(
                "xplugin-client import of {label} (pid {}) with controller transaction {} at {}",
                std::process::id(),
                journal.controller_transaction.as_deref().unwrap_or("none"),
                opts.target.address
            );
            // With a controller part the controller decides it (no timeout
            // of its own, settled through the journal); alone, this process
            // decides it before it lets go of the lock, and recovery aborts
            // it if the process stops in between.
            let alone = controller_reply.is_none();
            let mut txn =
                store.begin_transaction(lock, &holder, CLIENT_TRANSACTION_TIMEOUT, alone)?;
            for a in v.changed() {
                let from = tree_dir.join(&a.name);
                crate::import::move_tree(&from, &txn.staged_dir().join(&a.name)).map_err(|e| {
                    RemoteImportError::Package {
                        package: opts.package.clone(),
                        source: e,
                    }
                })?;
            }
            let plugins: Vec<TransactionPlugin> = v.transaction_plugins();
            store.mark_prepared(lock, &mut txn, plugins)?;
            Some(txn.id().to_string())
        }
        _ => None,
    };
    report.client_transaction = client_txn.clone();
    if controller_reply.is_some() {
        journal.client_transaction = client_txn.clone();
        write_journal(&root, &journal)?;
        kill_point("link-client-after-journal-prepared");
    }

    if !(opts.confirm)(&report) {
        if let Some(r) = &controller_reply {
            let _ = link.call(|c| c.abort(&r.transaction, "the operator did not confirm"));
        }
        if let (Some(id), Some((store, lock))) = (&client_txn, client_root.store.as_ref()) {
            store.abort_transaction(lock, id, "the operator did not confirm")?;
        }
        clear_journal(&root)?;
        return Err(RemoteImportError::NotConfirmed {
            report: Box::new(report),
        });
    }

    // The commit point: the controller's commit record.
    if let Some(r) = &controller_reply {
        journal.phase = Phase::CommitSent;
        write_journal(&root, &journal)?;
        kill_point("link-client-after-journal-commit-sent");
        let apply = opts.apply.map(|a| a.as_str().to_string());
        let answer = commit_remote(&mut link, &r.transaction, apply.as_deref())?;
        kill_point("link-client-after-commit-answer");
        if answer.state != "committed" {
            if let (Some(id), Some((store, lock))) = (&client_txn, client_root.store.as_ref()) {
                store.abort_transaction(lock, id, "the controller aborted its part")?;
            }
            clear_journal(&root)?;
            return Err(RemoteImportError::Aborted {
                reason: answer
                    .reason
                    .clone()
                    .unwrap_or_else(|| answer.state.clone()),
                report: Box::new(report),
            });
        }
        report.apply = answer.apply.clone();
        if let Some(c) = report.controller.as_mut() {
            c["state"] = "committed".into();
            c["new_generation"] = answer.new_generation.into();
        }
    }
    let mut client_generation = None;
    if let (Some(id), Some((store, lock))) = (&client_txn, client_root.store.as_ref()) {
        let r = store.commit_transaction(lock, id)?;
        client_generation = r.new_generation;
        kill_point("link-client-after-client-commit");
    }
    if controller_reply.is_some() {
        clear_journal(&root)?;
    }
    if let Some((mut v, _)) = verdict {
        v.record_clock();
        if let Some(c) = report.client.as_mut() {
            c.new_generation = client_generation;
        }
    }
    report.committed = true;
    drop(client_root);
    if let Some(g) = client_generation {
        report.client_apply = Some(tell_runner(&root, g, opts.apply));
    }
    // Applied on the controller: wait for it to report the new generation.
    if let Some(a) = &report.apply {
        if a["state"] == "scheduled" {
            if let Some(g) = a["generation"].as_u64() {
                report.applied = Some(wait_applied(&mut link, g, opts.apply_wait)?);
            }
        }
    }
    drop(scratch);
    Ok(report)
}

/// Verifies the client part (if any) against `running` and records its
/// report; returns the verdict and where its folders are.
fn verify_client(
    opts: &RemoteImport<'_>,
    unpacked: &xplugin_package::UnpackedPackage,
    running: Option<BTreeMap<String, Version>>,
    label: &str,
    report: &mut RemoteImportReport,
) -> Option<(crate::verify::SideVerdict, PathBuf)> {
    let tree = unpacked.client.as_ref()?;
    let base = Store::existing(&opts.client.root)
        .ok()
        .flatten()
        .and_then(|s| s.current().ok().flatten());
    let part = Part {
        side: Side::Client,
        tree,
        base,
        controller_running: running,
    };
    let v = verify_side(&opts.client, part, opts.policy, label, &mut report.problems);
    report.client = Some(v.report(&opts.client.root));
    Some((v, tree.dir.clone()))
}

enum Prepared {
    Refused(Vec<Problem>),
    Failed(RemoteImportError),
}

impl From<LinkError> for Prepared {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Remote { problems, .. } => Prepared::Refused(problems),
            e => Prepared::Failed(e.into()),
        }
    }
}

impl From<RemoteImportError> for Prepared {
    fn from(e: RemoteImportError) -> Self {
        Prepared::Failed(e)
    }
}

/// The controller part to upload.
struct Upload<'a> {
    path: &'a Path,
    sha: &'a str,
    size: u64,
    /// Where each attempt started.
    started: &'a mut Vec<u64>,
}

/// Uploads and prepares the controller part; after a lost connection the
/// transaction is found by its request id (an undecided one is aborted
/// and prepared again: its prepared set was lost with the answer).
fn prepare_remote(
    link: &mut Linked<'_>,
    root: &Path,
    journal: &mut PendingInstall,
    upload: Upload<'_>,
    label: &str,
    policy: Policy,
) -> Result<TransactionReply, Prepared> {
    let Upload {
        path: part,
        sha,
        size,
        started,
    } = upload;
    let mut attempt = 0;
    loop {
        attempt += 1;
        link.call(|c| c.upload(part, sha, size, &mut |at| started.push(at)))?;
        journal.phase = Phase::Preparing;
        write_journal(root, journal)?;
        kill_point("link-client-after-journal-preparing");
        let request = journal.request.clone();
        let answer =
            link.once(|c| c.prepare(sha, label, policy.force, policy.allow_downgrade, &request));
        match answer {
            Ok(r) => {
                kill_point("link-client-after-prepare-answer");
                journal.controller_transaction = Some(r.transaction.clone());
                journal.phase = Phase::Prepared;
                write_journal(root, journal)?;
                return Ok(r);
            }
            Err(e) if e.is_connection_lost() && attempt < PREPARE_ATTEMPTS => {
                // Did the controller prepare it? Abort what it holds for
                // this request, then prepare anew.
                match link.call(|c| c.lookup(&request)) {
                    Ok(r) if r.state == "prepared" || r.state == "preparing" => {
                        link.call(|c| {
                            c.abort(
                                &r.transaction,
                                "the pendant lost the prepare answer; preparing again",
                            )
                        })?;
                    }
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
                journal.request = random_id();
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Commits the controller's transaction; after a lost connection asks its
/// outcome (commit may be repeated: committing a committed transaction
/// returns it).
fn commit_remote(
    link: &mut Linked<'_>,
    id: &str,
    apply: Option<&str>,
) -> Result<TransactionReply, RemoteImportError> {
    match link.call(|c| c.commit(id, apply)) {
        Ok(r) => Ok(r),
        Err(LinkError::Remote { problems, .. }) => {
            // Refused (decided already, its base changed): what is it now?
            match link.call(|c| c.outcome(id)) {
                Ok(r) => Ok(r),
                Err(_) => Err(LinkError::Remote {
                    peer: link.target.address.clone(),
                    problems,
                }
                .into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Waits until the controller runs `generation` or says why it will not.
fn wait_applied(
    link: &mut Linked<'_>,
    generation: u64,
    within: Duration,
) -> Result<serde_json::Value, RemoteImportError> {
    let start = Instant::now();
    loop {
        // The daemon re-executes to apply: the link goes away for a moment.
        if let Ok(s) = link.status() {
            let value = serde_json::to_value(&s).unwrap_or_default();
            if s.running == Some(generation) {
                return Ok(value);
            }
            if s.apply
                .get("pending")
                .is_none_or(serde_json::Value::is_null)
                && s.apply.get("last_failure").is_some_and(|f| !f.is_null())
            {
                return Ok(value);
            }
        }
        if start.elapsed() > within {
            return Err(LinkError::Remote {
                peer: link.target.address.clone(),
                problems: vec![Problem::new(
                    ProblemCode::DaemonApplyTimeout,
                    format!("generation {generation}"),
                    format!(
                        "the controller did not report generation {generation} running within {} s",
                        within.as_secs()
                    ),
                    "see `xplugin-client controller-status`; it runs from the controller's next start at the latest",
                )],
            }
            .into());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What a pendant tells a running `xplugin-client run` about a new client
/// generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The committed generation.
    pub generation: u64,
    /// How to apply it (`None`: the runner's configured policy).
    pub policy: Option<ApplyPolicy>,
}

/// A running `xplugin-client run`, as it records itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    /// Its pid.
    pub pid: u32,
    /// The generation it runs.
    pub generation: Option<u64>,
}

/// Records the apply request and wakes a running `xplugin-client run`
/// (SIGHUP); returns what was done, in words.
pub fn tell_runner(root: &Path, generation: u64, policy: Option<ApplyPolicy>) -> String {
    let req = ApplyRequest { generation, policy };
    let path = root.join(APPLY_REQUEST_FILE);
    let written = serde_json::to_vec(&req)
        .map_err(std::io::Error::other)
        .and_then(|b| {
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d)?;
            }
            xplugin_store::replace_file_with_mode(&path, &b, 0o644)
        });
    if let Err(e) = written {
        return format!("the pendant's new generation {generation} runs from the next `xplugin-client run` (cannot tell a running one: {e})");
    }
    let runner: Option<Runner> = std::fs::read(root.join(RUNNER_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match runner {
        Some(r) if alive(r.pid) => wake_runner(r.pid, generation, policy),
        _ => format!(
            "the pendant's new generation {generation} runs from the next `xplugin-client run`"
        ),
    }
}

fn alive(pid: u32) -> bool {
    crate::os::process_alive(pid)
}

/// Wakes the running `xplugin-client run` with SIGHUP; it reads the apply
/// request and applies the new generation by its policy.
#[cfg(unix)]
fn wake_runner(pid: u32, generation: u64, policy: Option<ApplyPolicy>) -> String {
    let target = nix::unistd::Pid::from_raw(pid as i32);
    match nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGHUP) {
        Ok(()) => format!(
            "the running xplugin-client run (pid {pid}) was told about generation {generation} ({})",
            policy.map_or("its configured policy".to_string(), |p| p.to_string())
        ),
        Err(e) => format!("cannot tell xplugin-client run (pid {pid}): {e}"),
    }
}

/// Windows has no SIGHUP to wake a running `xplugin-client run` with: it is
/// not told, and says so (the request stays on disk for its next start).
#[cfg(windows)]
fn wake_runner(pid: u32, generation: u64, _policy: Option<ApplyPolicy>) -> String {
    format!("the running xplugin-client run (pid {pid}) finds generation {generation} within a second (Windows has no signal to wake it) and runs it from its next start")
}
