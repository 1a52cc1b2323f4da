//! Importing a vendor package (`plugindemo.zip`) on the pendant, offline:
//! unpack, verify everything ([`crate::verify`]: format, manifests,
//! licenses, compatibility, architecture and ABI, the dependency graph of
//! installed + incoming), then commit each side's install root atomically.
//! A refused package changes nothing on disk (a fresh root is not even
//! created); every problem is reported at once.
//!
//! In offline mode the controller part is installed into a local controller
//! root (`--controller-root`). The two roots are committed one after the
//! other (controller first, so that client `ctrlDepend`s exist when the
//! client commit lands); each commit is atomic, the pair is not. With the
//! pendant link the controller decides its own part in one transaction over
//! both computers.

use crate::progress::{ImportProgress, ImportStage};
use crate::verify::{verify_side_with_progress, Part, Policy, SideVerdict};
pub use crate::verify::{Action, PluginAction, SideHost, SideReport};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use xplugin_model::manifest::Side;
use xplugin_model::{Failure, Problem, ProblemCode, Problems, Version};
use xplugin_package::{unpack_package_with_progress, PackageError, SideTree};
use xplugin_store::{CommitPlan, StagingDir, Store, StoreError, StoreLock};

/// What an import needs.
pub struct ImportOptions<'a> {
    /// The package file.
    pub package: PathBuf,
    /// The pendant (client plugins).
    pub client: SideHost<'a>,
    /// The controller (controller plugins), if a controller root is known.
    pub controller: Option<SideHost<'a>>,
    /// Reinstall plugins whose version is already installed.
    pub force: bool,
    /// Accept older versions than the installed ones.
    pub allow_downgrade: bool,
    /// Told how the import advances ([`crate::progress::NoProgress`] for
    /// nothing).
    pub progress: &'a dyn ImportProgress,
}

/// Everything an import did or would have done.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The package.
    pub package: PathBuf,
    /// True if something was committed.
    pub committed: bool,
    /// Client side.
    pub client: Option<SideReport>,
    /// Controller side.
    pub controller: Option<SideReport>,
    /// Every problem found (errors refuse the whole package).
    pub problems: Vec<Problem>,
}

impl ImportReport {
    fn new(package: &Path) -> ImportReport {
        ImportReport {
            package: package.to_path_buf(),
            committed: false,
            client: None,
            controller: None,
            problems: Vec::new(),
        }
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.problems.iter().filter(|p| p.is_error()).count()
    }
}

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The package was checked and refused; nothing was changed. The report
    /// lists every problem.
    #[error("package {} refused, nothing was installed: {} problem(s) found", .report.package.display(), .report.error_count())]
    Refused {
        /// Full report.
        report: Box<ImportReport>,
    },
    /// An install root could not be used (locked, unwritable, full).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the package failed on our side (not the package's fault).
    #[error("cannot read package {}", package.display())]
    Package {
        /// The package.
        package: PathBuf,
        /// The error.
        #[source]
        source: PackageError,
    },
}

impl Failure for ImportError {
    fn problems(&self) -> Problems {
        match self {
            ImportError::Refused { report } => Problems(report.problems.clone()),
            ImportError::Store(e) => e.problems(),
            ImportError::Package { package, source } => match source {
                PackageError::Refused(problems) => problems.clone(),
                _ => Problems(vec![Problem::from_error(
                    ProblemCode::PackageUnreadable,
                    package.display().to_string(),
                    self,
                    "check that the file is readable and that the install root's filesystem has space and is writable",
                )]),
            },
        }
    }
}

/// `plugindemo.zip`: how problems name the package (as its entries do).
pub fn package_label(package: &Path) -> String {
    package
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| package.display().to_string())
}

/// Where a package is unpacked and verified: the client root's own staging
/// area when the root is already an install root (it is locked, so nothing
/// else writes it meanwhile), else a temporary directory outside it, so that
/// a refused package leaves a fresh root exactly as it was.
enum Scratch<'lock> {
    Staging(StagingDir<'lock>),
    Temp(tempfile::TempDir),
}

impl Scratch<'_> {
    fn path(&self) -> &Path {
        match self {
            Scratch::Staging(s) => s.path(),
            Scratch::Temp(t) => t.path(),
        }
    }
}

/// An install root that exists already, opened and locked.
struct Locked {
    store: Store,
    lock: StoreLock,
}

fn open_existing(root: &Path) -> Result<Option<Locked>, StoreError> {
    match Store::existing(root)? {
        Some(store) => {
            let lock = store.lock()?;
            Ok(Some(Locked { store, lock }))
        }
        None => Ok(None),
    }
}

/// Creates and locks a fresh install root for the commit of a verified
/// package.
fn create_root(root: &Path) -> Result<Locked, StoreError> {
    let store = Store::open(root)?;
    let lock = store.lock()?;
    if store.current()?.is_some() {
        // Another import initialised the root meanwhile: what was verified
        // against an empty root no longer holds.
        return Err(StoreError::Busy {
            pid: None,
            root: store.root().to_path_buf(),
        });
    }
    Ok(Locked { store, lock })
}

/// Imports a package. On success returns the report of what was committed.
///
/// The package is read and verified completely before anything is created
/// in an install root; a refused package changes nothing on disk.
///
/// # Errors
/// [`ImportError::Refused`] with every problem when the package is refused
/// (nothing changed); [`ImportError::Store`] when a root cannot be used.
pub fn import(opts: &ImportOptions<'_>) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::new(&opts.package);
    // Lock order is fixed (client, then controller) so two importers cannot
    // deadlock; a second importer is told who holds the lock.
    let client = open_existing(&opts.client.root)?;
    let controller = match &opts.controller {
        Some(c) => open_existing(&c.root)?,
        None => None,
    };
    let scratch = match &client {
        Some(l) => Scratch::Staging(l.store.staging(&l.lock)?),
        None => Scratch::Temp(
            tempfile::Builder::new()
                .prefix("xplugin-import-")
                .tempdir()
                .map_err(|e| StoreError::Io {
                    action: "create a temporary directory for the import in",
                    path: std::env::temp_dir(),
                    source: e,
                    hint: "check free space in the temporary directory (TMPDIR)".into(),
                })?,
        ),
    };
    let label = package_label(&opts.package);
    opts.progress.stage(ImportStage::Unpacking);
    let unpacked = match unpack_package_with_progress(
        &opts.package,
        scratch.path(),
        &opts.client.config.limits,
        &[Side::Client, Side::Controller],
        opts.progress,
    ) {
        Ok(u) => u,
        Err(PackageError::Refused(problems)) => {
            report.problems = problems.0;
            return Err(ImportError::Refused {
                report: Box::new(report),
            });
        }
        Err(source) => {
            return Err(ImportError::Package {
                package: opts.package.clone(),
                source,
            })
        }
    };
    report.problems.extend(unpacked.warnings.0.iter().cloned());
    // The disk starts on the unpacked bytes while they are checked (the
    // licenses hash every file): the commit's fsyncs then find most of
    // them written instead of waiting for all of them.
    let staged: Vec<PathBuf> = [&unpacked.client, &unpacked.controller]
        .into_iter()
        .flatten()
        .flat_map(|tree| &tree.plugins)
        .flat_map(|p| p.files.iter().map(|f| p.dir.join(f)))
        .collect();
    xplugin_store::start_writeback(&staged);
    let policy = Policy {
        force: opts.force,
        allow_downgrade: opts.allow_downgrade,
    };

    opts.progress.stage(ImportStage::Checking);
    let mut sides: Vec<(SideVerdict, &SideHost<'_>, &SideTree)> = Vec::new();
    if let Some(tree) = &unpacked.controller {
        match &opts.controller {
            Some(host) => {
                let base = controller
                    .as_ref()
                    .map(|l| l.store.current())
                    .transpose()?
                    .flatten();
                let part = Part {
                    side: Side::Controller,
                    tree,
                    base,
                    controller_running: None,
                };
                let v = verify_side_with_progress(
                    host,
                    part,
                    policy,
                    &label,
                    &mut report.problems,
                    opts.progress,
                );
                sides.push((v, host, tree));
            }
            None => report.problems.push(Problem::new(
                ProblemCode::ImportNoControllerRoot,
                format!("{label}: controller.zip"),
                "the package has a controller part but no controller is known",
                "import with --controller ADDR:PORT (or --controller-root DIR in offline mode)",
            )),
        }
    }
    // The controller plugins that will run after this import, for ctrlDepend.
    let controller_running: Option<BTreeMap<String, Version>> = match sides.first() {
        Some((v, _, _)) => Some(v.running_set()),
        None => match (&controller, &opts.controller) {
            (Some(l), _) => Some(crate::admin::enabled_versions(&l.store)),
            // A controller root given but still empty: nothing runs there.
            (None, Some(_)) => Some(BTreeMap::new()),
            (None, None) => None,
        },
    };
    if let Some(tree) = &unpacked.client {
        let base = client
            .as_ref()
            .map(|l| l.store.current())
            .transpose()?
            .flatten();
        let part = Part {
            side: Side::Client,
            tree,
            base,
            controller_running,
        };
        let v = verify_side_with_progress(
            &opts.client,
            part,
            policy,
            &label,
            &mut report.problems,
            opts.progress,
        );
        sides.push((v, &opts.client, tree));
    }
    for (v, host, _) in &sides {
        let r = Some(v.report(&host.root));
        match v.side {
            Side::Client => report.client = r,
            Side::Controller => report.controller = r,
        }
    }
    if report.error_count() > 0 {
        // Nothing of it will load: a load order would only mislead.
        for r in [&mut report.client, &mut report.controller]
            .into_iter()
            .flatten()
        {
            r.load_order.clear();
        }
        return Err(ImportError::Refused {
            report: Box::new(report),
        });
    }

    // Commit: controller first (so client ctrlDepends exist when the client
    // commit lands), then client. Each root's commit is atomic; the pair is
    // one transaction only with the pendant link (`--controller ADDR`).
    opts.progress.stage(ImportStage::Installing);
    let (mut fresh_client, mut fresh_controller) = (None, None);
    for (v, host, tree) in &mut sides {
        if v.changed().is_empty() {
            continue;
        }
        let (existing, fresh) = match v.side {
            Side::Client => (client.as_ref(), &mut fresh_client),
            Side::Controller => (controller.as_ref(), &mut fresh_controller),
        };
        let locked: &Locked = match existing {
            Some(l) => l,
            None => fresh.insert(create_root(&host.root)?),
        };
        let staging = locked.store.staging(&locked.lock)?;
        for a in v.changed() {
            move_tree(&tree.dir.join(&a.name), &staging.path().join(&a.name)).map_err(
                |source| StoreError::Io {
                    action: "move the verified plugin into",
                    path: staging.path().to_path_buf(),
                    source,
                    hint: "check free space and permissions of the install root".into(),
                },
            )?;
        }
        let plan = CommitPlan {
            add_or_replace: v.staged_plugins(staging.path()),
            remove: Vec::new(),
        };
        let gen = locked.store.commit(&locked.lock, plan)?;
        drop(staging);
        report.committed = true;
        let r = match v.side {
            Side::Client => report.client.as_mut(),
            Side::Controller => report.controller.as_mut(),
        };
        if let Some(r) = r {
            r.new_generation = Some(gen.number);
        }
        v.record_clock();
    }
    drop(scratch);
    Ok(report)
}

/// Moves a staged plugin folder into another root's staging area: a rename
/// when both roots share a filesystem (the usual case: no data is copied),
/// else a copy. The source is in the pendant's staging, removed afterwards
/// either way.
pub(crate) fn move_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    match std::fs::rename(src, dst) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => copy_tree(src, dst),
        Err(e) => Err(e),
    }
}

/// Copies a staged plugin folder (regular files and directories only).
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if ft.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else if ft.is_file() {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "package {}", self.package.display())?;
        for r in [&self.controller, &self.client].into_iter().flatten() {
            write!(f, "{r}")?;
        }
        let problems = Problems(self.problems.clone());
        if !problems.is_empty() {
            write!(f, "{problems}")?;
        }
        Ok(())
    }
}
