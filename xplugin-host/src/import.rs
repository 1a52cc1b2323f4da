//! Importing a vendor package (`plugindemo.zip`) on the pendant: unpack into
//! staging, check everything (format, manifests, licenses, compatibility,
//! architecture and ABI, the dependency graph of installed + incoming), then
//! commit each side's install root atomically. A refused package changes
//! nothing on disk; every problem is reported at once.
//!
//! Upgrade policy: same name and newer version upgrades; the same version is
//! left alone unless `force`; an older version is refused unless
//! `allow_downgrade`. An import that would stop an installed plugin from
//! loading is refused, naming the broken chain. A plugin's enabled flag is
//! taken from its manifest on first install and kept across upgrades.
//!
//! Until the pendant talks to the controller, the controller part is
//! installed into a local controller root. The two roots are committed one
//! after the other (controller first, so that client `ctrlDepend`s exist when
//! the client commit lands); each commit is atomic, the pair is not (a
//! two-phase commit across pendant and controller comes with the network link).

use crate::checks::{check_plugin_folder, subject, HostFacts, Origin, PluginCheck};
use crate::config::HostConfig;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use xplugin_model::graph::{resolve, BlockReason, Node, Resolution, ResolveInput};
use xplugin_model::manifest::{Manifest, Side};
use xplugin_model::{Failure, Problem, ProblemCode, Problems, Version};
use xplugin_package::{unpack_package, PackageError, SideTree};
use xplugin_store::{CommitPlan, Generation, StagedPlugin, Store, StoreError, StoreLock};

/// The facts of one side's host for an import.
pub struct SideHost<'a> {
    /// Install root.
    pub root: PathBuf,
    /// Host version (HMI or controller).
    pub host_version: Option<Version>,
    /// Host settings of that side (trust store, device identity, dev mode).
    pub config: &'a HostConfig,
}

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
}

/// What happens to one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Not installed before.
    Install,
    /// Newer version replaces the installed one.
    Upgrade,
    /// Same version reinstalled (`--force`).
    Reinstall,
    /// Older version replaces the installed one (`--allow-downgrade`).
    Downgrade,
    /// Same version already installed: nothing done.
    Unchanged,
    /// Older version, refused.
    RefusedDowngrade,
}

/// One plugin's line in the import report.
#[derive(Debug, Clone, Serialize)]
pub struct PluginAction {
    /// Plugin name.
    pub name: String,
    /// Installed version before, if any.
    pub from: Option<String>,
    /// Version in the package.
    pub to: String,
    /// What happens.
    pub action: Action,
    /// License outcome.
    pub license: crate::checks::LicenseStatus,
}

/// One side's part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    /// Which side.
    pub side: Side,
    /// Install root.
    pub root: PathBuf,
    /// Plugins in the package.
    pub plugins: Vec<PluginAction>,
    /// Generation before the import.
    pub previous_generation: Option<u64>,
    /// Generation after the import (None if refused or nothing changed).
    pub new_generation: Option<u64>,
    /// Load order of the resulting installed set; empty when the import is
    /// refused (nothing changes, and the order would list refused plugins).
    pub load_order: Vec<String>,
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
fn package_label(package: &Path) -> String {
    package
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| package.display().to_string())
}

struct SideWork<'a> {
    side: Side,
    host: &'a SideHost<'a>,
    store: &'a Store,
    lock: &'a StoreLock,
    current: Option<Generation>,
    checks: Vec<PluginCheck>,
    actions: Vec<PluginAction>,
    installed: Vec<Manifest>,
    after: Option<Resolution>,
    /// Installed merged with incoming: the set `after` resolved.
    merged: Vec<Manifest>,
    /// The host facts the checks used; the clock mark is recorded from them
    /// after the commit.
    facts: Option<HostFacts>,
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Client => "client",
        Side::Controller => "controller",
    }
}

/// Imports a package. On success returns the report of what was committed.
///
/// # Errors
/// [`ImportError::Refused`] with every problem when the package is refused
/// (nothing changed); [`ImportError::Store`] when a root cannot be used.
pub fn import(opts: &ImportOptions<'_>) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::new(&opts.package);
    let client_store = Store::open(&opts.client.root)?;
    // Lock order is fixed (client, then controller) so two importers cannot
    // deadlock; a second importer is told who holds the lock.
    let client_lock = client_store.lock()?;
    let controller_store = match &opts.controller {
        Some(c) => {
            let s = Store::open(&c.root)?;
            let l = s.lock()?;
            Some((s, l))
        }
        None => None,
    };
    let controller_store = controller_store.as_ref();

    let staging = client_store.staging(&client_lock)?;
    let unpacked = match unpack_package(&opts.package, staging.path(), &opts.client.config.limits) {
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

    let mut sides: Vec<(SideWork<'_>, &SideTree)> = Vec::new();
    if let Some(tree) = &unpacked.controller {
        match (&opts.controller, controller_store) {
            (Some(host), Some((store, lock))) => {
                let mut work =
                    check_side(Side::Controller, host, store, lock, tree, opts, &mut report)?;
                resolve_side(&mut work, None, opts, &mut report);
                sides.push((work, tree));
            }
            _ => report.problems.push(Problem::new(
                ProblemCode::ImportNoControllerRoot,
                format!("{}: controller.zip", package_label(&opts.package)),
                "the package has a controller part but no controller root is known",
                "pass --controller-root DIR (or set controller_root in the client configuration)",
            )),
        }
    }
    // The controller plugins that will run after this import, for ctrlDepend.
    let controller_running: Option<BTreeMap<String, Version>> = match sides.first() {
        Some((w, _)) if w.side == Side::Controller => Some(running_set(w)),
        _ => match controller_store {
            Some((store, _)) => Some(crate::admin::enabled_versions(store)),
            _ => None,
        },
    };
    if let Some(tree) = &unpacked.client {
        let mut work = check_side(
            Side::Client,
            &opts.client,
            &client_store,
            &client_lock,
            tree,
            opts,
            &mut report,
        )?;
        resolve_side(&mut work, controller_running.clone(), opts, &mut report);
        sides.push((work, tree));
    }

    let refused = report.error_count() > 0;
    for (w, _) in &sides {
        let side_report = side_report(w, refused);
        match w.side {
            Side::Client => report.client = Some(side_report),
            Side::Controller => report.controller = Some(side_report),
        }
    }
    if refused {
        return Err(ImportError::Refused {
            report: Box::new(report),
        });
    }

    // Commit: controller first, then client.
    for (w, tree) in &mut sides {
        let Some(generation) = commit_side(w, tree)? else {
            continue;
        };
        report.committed = true;
        let r = match w.side {
            Side::Client => report.client.as_mut(),
            Side::Controller => report.controller.as_mut(),
        };
        if let Some(r) = r {
            r.new_generation = Some(generation);
        }
        if let Some(facts) = w.facts.as_mut() {
            facts.record_clock();
        }
    }
    drop(staging);
    Ok(report)
}

/// One side's line of the report. A refused import shows no load order:
/// nothing changes, and the order would list the plugins it refused.
fn side_report(w: &SideWork<'_>, refused: bool) -> SideReport {
    SideReport {
        side: w.side,
        root: w.host.root.clone(),
        plugins: w.actions.clone(),
        previous_generation: w.current.as_ref().map(|g| g.number),
        new_generation: None,
        load_order: match (&w.after, refused) {
            (Some(after), false) => after.load_order.clone(),
            _ => Vec::new(),
        },
    }
}

/// Commits the changed plugins of one side; returns the new generation, or
/// `None` when nothing changed.
fn commit_side(w: &mut SideWork<'_>, tree: &SideTree) -> Result<Option<u64>, ImportError> {
    let changed: Vec<&PluginAction> = w
        .actions
        .iter()
        .filter(|a| !matches!(a.action, Action::Unchanged))
        .collect();
    if changed.is_empty() {
        return Ok(None);
    }
    // Staged files must be inside the root's own staging area.
    let side_staging;
    let base: PathBuf = if w.side == Side::Client {
        tree.dir.clone()
    } else {
        side_staging = w.store.staging(w.lock)?;
        for a in &changed {
            move_tree(&tree.dir.join(&a.name), &side_staging.path().join(&a.name)).map_err(
                |source| StoreError::Io {
                    action: "move the staged controller plugin into",
                    path: side_staging.path().to_path_buf(),
                    source,
                    hint: "check free space and permissions of the controller root".into(),
                },
            )?;
        }
        side_staging.path().to_path_buf()
    };
    let enabled_before = enabled_flags(w.current.as_ref());
    let plan = CommitPlan {
        add_or_replace: changed
            .iter()
            .map(|a| {
                let manifest_enable = w
                    .checks
                    .iter()
                    .find(|c| c.name == a.name)
                    .and_then(|c| c.manifest.as_ref())
                    .is_none_or(|m| m.enable);
                StagedPlugin {
                    name: a.name.clone(),
                    version: a.to.clone(),
                    enabled: enabled_before
                        .get(&a.name)
                        .copied()
                        .unwrap_or(manifest_enable),
                    dir: base.join(&a.name),
                }
            })
            .collect(),
        remove: Vec::new(),
    };
    Ok(Some(w.store.commit(w.lock, plan)?.number))
}

/// The enabled flag of each plugin of `generation`.
fn enabled_flags(generation: Option<&Generation>) -> BTreeMap<String, bool> {
    generation
        .map(|g| {
            g.plugins()
                .into_iter()
                .map(|p| (p.name, p.enabled))
                .collect()
        })
        .unwrap_or_default()
}

/// What happens to an incoming plugin of `version` when `installed` (if
/// any) is there.
fn action_for(version: &Version, installed: Option<&str>, opts: &ImportOptions<'_>) -> Action {
    match installed.map(str::parse::<Version>) {
        None => Action::Install,
        Some(Err(_)) => Action::Upgrade,
        Some(Ok(old)) if *version > old => Action::Upgrade,
        Some(Ok(old)) if *version == old && opts.force => Action::Reinstall,
        Some(Ok(old)) if *version == old => Action::Unchanged,
        Some(Ok(_)) if opts.allow_downgrade => Action::Downgrade,
        Some(Ok(_)) => Action::RefusedDowngrade,
    }
}

fn check_side<'a>(
    side: Side,
    host: &'a SideHost<'a>,
    store: &'a Store,
    lock: &'a StoreLock,
    tree: &SideTree,
    opts: &ImportOptions<'_>,
    report: &mut ImportReport,
) -> Result<SideWork<'a>, ImportError> {
    let current = store.current()?;
    let mut work = SideWork {
        side,
        host,
        store,
        lock,
        current,
        checks: Vec::new(),
        actions: Vec::new(),
        installed: Vec::new(),
        after: None,
        merged: Vec::new(),
        facts: None,
    };
    let label = format!("{}: {}", package_label(&opts.package), side.archive_name());
    let Some(host_version) = host.host_version.clone() else {
        let flag = match side {
            Side::Client => "--hmi-version",
            Side::Controller => "--controller-version",
        };
        report.problems.push(Problem::new(
            ProblemCode::ImportHostVersionUnknown,
            label,
            format!(
                "this host's {} version is unknown, so compatibility cannot be checked",
                side_name(side)
            ),
            format!(
                "pass {flag} V or set host_version in the {} configuration",
                side_name(side)
            ),
        ));
        return Ok(work);
    };
    let facts = HostFacts::gather(host.config, &host.root);
    let ctx = crate::checks::CheckContext {
        origin: Origin::Package { label: &label },
        ..facts.context(&host_version)
    };
    if let Err(e) = &facts.device {
        if !host.config.allow_unlicensed {
            report.problems.push(Problem::new(
                ProblemCode::ImportDeviceIdUnknown,
                format!("{} host", side_name(side)),
                format!(
                    "this device's id cannot be determined: {}",
                    xplugin_model::error_chain(e)
                ),
                e.hint(),
            ));
        }
    }
    let installed_versions: BTreeMap<String, String> = work
        .current
        .as_ref()
        .map(|g| {
            g.plugins()
                .into_iter()
                .map(|p| (p.name, p.version))
                .collect()
        })
        .unwrap_or_default();
    for folder in &tree.plugins {
        let check = check_plugin_folder(&folder.dir, &folder.name, side, &ctx);
        report.problems.extend(check.problems.0.iter().cloned());
        if let Some(m) = &check.manifest {
            let from = installed_versions.get(&m.name).cloned();
            let action = action_for(&m.version, from.as_deref(), opts);
            if action == Action::RefusedDowngrade {
                report.problems.push(Problem::new(
                    ProblemCode::ImportDowngrade,
                    subject(side, &m.name),
                    format!(
                        "the package brings version {} but {} is installed",
                        m.version,
                        from.as_deref().unwrap_or("?")
                    ),
                    "this is a downgrade: pass --allow-downgrade to install it anyway",
                ));
            }
            work.actions.push(PluginAction {
                name: m.name.clone(),
                from,
                to: m.version.to_string(),
                action,
                license: check.license.clone(),
            });
        }
        work.checks.push(check);
    }
    work.facts = Some(facts);
    // Installed manifests (for the graph of installed + incoming).
    if let Some(g) = &work.current {
        work.installed = crate::checks::installed_manifests(g.plugin_dirs(), side)
            .into_values()
            .collect();
    }
    Ok(work)
}

fn nodes(manifests: &[Manifest], enabled: &BTreeMap<String, bool>, side: Side) -> Vec<Node> {
    manifests
        .iter()
        .map(|m| {
            let mut n = Node::from_manifest(m);
            if side == Side::Controller {
                if let Some(e) = enabled.get(&m.name) {
                    n.load = *e;
                }
            }
            n
        })
        .collect()
}

fn resolve_side(
    w: &mut SideWork<'_>,
    controller_running: Option<BTreeMap<String, Version>>,
    opts: &ImportOptions<'_>,
    report: &mut ImportReport,
) {
    let enabled = enabled_flags(w.current.as_ref());
    let incoming: Vec<Manifest> = w.checks.iter().filter_map(|c| c.manifest.clone()).collect();
    let incoming_names: BTreeSet<String> = incoming.iter().map(|m| m.name.clone()).collect();
    let before = resolve(&ResolveInput {
        plugins: nodes(&w.installed, &enabled, w.side),
        running_controller: controller_running.clone(),
    });
    let merged = xplugin_model::graph::merge_installed(w.installed.clone(), incoming);
    let after = resolve(&ResolveInput {
        plugins: nodes(&merged, &enabled, w.side),
        running_controller: controller_running.clone(),
    });
    let pkg = opts.package.display().to_string();
    for (name, blocked) in &after.blocked {
        let subj = subject(w.side, name);
        let benign = matches!(
            blocked.reason,
            BlockReason::Disabled | BlockReason::DependencyDisabled { .. }
        );
        if incoming_names.contains(name) {
            if benign {
                report.problems.push(Problem::new(
                    blocked.reason.code(),
                    subj,
                    format!("will not load after this import: {}", blocked.message),
                    "enable the disabled plugin if this one is needed",
                ));
            } else if matches!(blocked.reason, BlockReason::ControllerStateUnknown { .. }) {
                report.problems.push(Problem::new(
                    blocked.reason.code(),
                    subj,
                    format!("ctrlDepend not checked: {}", blocked.message),
                    "pass --controller-root so the controller's plugins can be checked",
                ));
            } else {
                report.problems.push(Problem::new(
                    blocked.reason.code(),
                    subj,
                    format!("would not load after this import: {}", blocked.message),
                    format!("add the missing or fixed dependency to {pkg}, or install it first"),
                ));
            }
        } else if !before.blocked.contains_key(name) && !benign {
            report.problems.push(Problem::new(ProblemCode::ImportBreaksInstalled,
                subj,
                format!("this import would break the installed plugin: {}", blocked.message),
                "import a package that keeps its dependencies satisfied, or remove the plugin first",
            ));
        }
    }
    w.after = Some(after);
    w.merged = merged;
}

/// Controller plugins that will load after this import, with versions
/// (from the resolution [`resolve_side`] made of the controller side).
fn running_set(w: &SideWork<'_>) -> BTreeMap<String, Version> {
    let Some(after) = &w.after else {
        return BTreeMap::new();
    };
    w.merged
        .iter()
        .filter(|m| after.loads(&m.name))
        .map(|m| (m.name.clone(), m.version.clone()))
        .collect()
}

/// Moves a staged plugin folder into another root's staging area: a rename
/// when both roots share a filesystem (the usual case: no data is copied),
/// else a copy. The source is in the pendant's staging, removed afterwards
/// either way.
fn move_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
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
            writeln!(
                f,
                "{} root {}: generation {} -> {}",
                side_name(r.side),
                r.root.display(),
                r.previous_generation
                    .map_or("none".into(), |g| g.to_string()),
                r.new_generation
                    .map_or("unchanged".into(), |g| g.to_string()),
            )?;
            for p in &r.plugins {
                let lic = &p.license;
                writeln!(
                    f,
                    "  {:<20} {:>10} -> {:<10} {:<18} {lic}",
                    p.name,
                    p.from.as_deref().unwrap_or("-"),
                    p.to,
                    format!("{:?}", p.action).to_lowercase(),
                )?;
            }
            if !r.load_order.is_empty() {
                writeln!(f, "  load order: {}", r.load_order.join(" -> "))?;
            }
        }
        let problems = Problems(self.problems.clone());
        if !problems.is_empty() {
            write!(f, "{problems}")?;
        }
        Ok(())
    }
}
