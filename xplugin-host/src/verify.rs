//! Verifying one side of a package (its unpacked plugin folders) against one
//! host: every check of every plugin folder ([`crate::checks`]), what each
//! plugin's install would do (install, upgrade, reinstall, downgrade), and
//! the dependency graph of the installed set merged with the incoming one.
//! Nothing is written and no lock is needed: the verdict is taken against a
//! given base generation, and whoever commits it checks that the base is
//! still current.
//!
//! The pendant's import ([`crate::import`]) and the controller's install
//! transactions ([`crate::install`]) both decide with this.
//!
//! Upgrade policy: same name and newer version upgrades; the same version is
//! left alone unless `force`; an older version is refused unless
//! `allow_downgrade`. An install that would stop an installed plugin from
//! loading is refused, naming the broken chain. A plugin's enabled flag is
//! taken from its manifest on first install and kept across upgrades; its
//! configuration values are migrated from the base generation's
//! ([`crate::plugin_config::migrate_install`]), each item's fate reported.

use crate::checks::{
    check_plugin_folders, subject, CheckContext, HostFacts, LicenseStatus, Origin, PluginCheck,
};
use crate::config::HostConfig;
use crate::plugin_config;
use crate::progress::{ImportProgress, NoProgress};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use xplugin_model::config_schema::MigrationChange;
use xplugin_model::graph::{merge_installed, resolve, BlockReason, Node, Resolution, ResolveInput};
use xplugin_model::manifest::{Manifest, Side};
use xplugin_model::{Problem, ProblemCode, Version};
use xplugin_package::binary::Arch;
use xplugin_package::SideTree;
use xplugin_store::{Generation, StagedPlugin, TransactionPlugin, ValuesFile};

/// The facts of one side's host.
pub struct SideHost<'a> {
    /// Install root.
    pub root: PathBuf,
    /// Host version (HMI or controller).
    pub host_version: Option<Version>,
    /// Host settings of that side (trust store, device identity, dev mode).
    pub config: &'a HostConfig,
    /// The architecture its libraries must be built for; `None`: this
    /// computer's (a host checking its own plugins). The pendant checking a
    /// controller part offline sets the configured `controller_arch`.
    pub arch: Option<Arch>,
}

/// The install policy switches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Reinstall plugins whose version is already installed.
    pub force: bool,
    /// Accept older versions than the installed ones.
    pub allow_downgrade: bool,
}

/// What happens to one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

impl Action {
    /// The name printed in reports (`install`, `refused_downgrade`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Install => "install",
            Action::Upgrade => "upgrade",
            Action::Reinstall => "reinstall",
            Action::Downgrade => "downgrade",
            Action::Unchanged => "unchanged",
            Action::RefusedDowngrade => "refused_downgrade",
        }
    }
}

/// One plugin's line in a report.
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
    pub license: LicenseStatus,
    /// What happens to each configuration value (kept, reset, dropped,
    /// added; passwords masked). Empty when nothing is installed or the
    /// plugin has no configuration items.
    pub config: Vec<MigrationChange>,
}

/// One side's verdict.
pub struct SideVerdict {
    /// Which side.
    pub side: Side,
    /// The generation the verdict was taken against.
    pub base: Option<Generation>,
    /// Every plugin folder's checks, in folder order.
    pub checks: Vec<PluginCheck>,
    /// What happens to each plugin whose manifest parsed.
    pub actions: Vec<PluginAction>,
    /// The resolution of installed + incoming (`None` when the host version
    /// was unknown and nothing could be checked).
    pub after: Option<Resolution>,
    /// Installed merged with incoming: the set `after` resolved.
    merged: Vec<Manifest>,
    /// The host facts the checks used; the clock mark is recorded from them
    /// after a commit.
    facts: Option<HostFacts>,
    /// The configuration values each changed plugin gets (migrated from the
    /// base generation's), as the file to stage.
    values: BTreeMap<String, Option<ValuesFile>>,
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Client => "client",
        Side::Controller => "controller",
    }
}

/// One side of a package to verify.
pub struct Part<'a> {
    /// Which side.
    pub side: Side,
    /// Its unpacked plugin folders.
    pub tree: &'a SideTree,
    /// The generation to verify against (what is installed now).
    pub base: Option<Generation>,
    /// What client plugins' `ctrlDepend` is checked against (`None`:
    /// unknown, reported as a warning).
    pub controller_running: Option<BTreeMap<String, Version>>,
}

/// Verifies one side of a package (`part`) for `host`. Every problem is
/// appended to `problems`; `label` names the package in subjects.
pub fn verify_side(
    host: &SideHost<'_>,
    part: Part<'_>,
    policy: Policy,
    label: &str,
    problems: &mut Vec<Problem>,
) -> SideVerdict {
    verify_side_with_progress(host, part, policy, label, problems, &NoProgress)
}

/// [`verify_side`], telling `progress` of each plugin once it is checked.
pub fn verify_side_with_progress(
    host: &SideHost<'_>,
    part: Part<'_>,
    policy: Policy,
    label: &str,
    problems: &mut Vec<Problem>,
    progress: &dyn ImportProgress,
) -> SideVerdict {
    let Part {
        side,
        tree,
        base,
        controller_running,
    } = part;
    let mut v = SideVerdict {
        side,
        base,
        checks: Vec::new(),
        actions: Vec::new(),
        after: None,
        merged: Vec::new(),
        facts: None,
        values: BTreeMap::new(),
    };
    let Some(host_version) = host.host_version.clone() else {
        let flag = match side {
            Side::Client => "--hmi-version",
            Side::Controller => "--controller-version",
        };
        problems.push(Problem::new(
            ProblemCode::ImportHostVersionUnknown,
            format!("{label}: {}", side.archive_name()),
            format!(
                "this host's {} version is unknown, so compatibility cannot be checked",
                side_name(side)
            ),
            format!(
                "pass {flag} V or set host_version in the {} configuration",
                side_name(side)
            ),
        ));
        return v;
    };
    let facts = HostFacts::gather(host.config, &host.root);
    // Files are named by their package entry, never by the staging path.
    let origin_label = format!("{label}: {}", side.archive_name());
    let arch_hint = format!(
        "the controller's architecture is controller_arch in this pendant's configuration: {}",
        host.arch
            .as_ref()
            .map_or_else(String::new, |a| a.to_string())
    );
    let ctx = CheckContext {
        origin: Origin::Package {
            label: &origin_label,
        },
        arch: host.arch.clone().unwrap_or_else(Arch::host),
        arch_hint: host.arch.as_ref().map(|_| arch_hint.as_str()),
        ..facts.context(&host_version)
    };
    if let Err(e) = &facts.device {
        if !host.config.allow_unlicensed {
            problems.push(Problem::new(
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
    let installed_versions = v
        .base
        .as_ref()
        .map(xplugin_store::Generation::versions)
        .unwrap_or_default();
    // The base's stored configuration values, read (never written) for the
    // migration of every changed plugin.
    let base_store = match &v.base {
        Some(_) => xplugin_store::Store::existing(&host.root).ok().flatten(),
        None => None,
    };
    let folders: Vec<(&Path, &str)> = tree
        .plugins
        .iter()
        .map(|f| (f.dir.as_path(), f.name.as_str()))
        .collect();
    let checks = check_plugin_folders(&folders, side, &ctx, |i| {
        progress.plugin_checked(side, folders[i].1);
    });
    for check in checks {
        problems.extend(check.problems.0.iter().cloned());
        if let Some(m) = &check.manifest {
            let from = installed_versions.get(&m.name).cloned();
            let action = match from.as_deref().map(str::parse::<Version>) {
                None => Action::Install,
                Some(Err(_)) => Action::Upgrade,
                Some(Ok(old)) if m.version > old => Action::Upgrade,
                Some(Ok(old)) if m.version == old && policy.force => Action::Reinstall,
                Some(Ok(old)) if m.version == old => Action::Unchanged,
                Some(Ok(_)) if policy.allow_downgrade => Action::Downgrade,
                Some(Ok(_)) => Action::RefusedDowngrade,
            };
            if action == Action::RefusedDowngrade {
                problems.push(Problem::new(
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
            let mut config = Vec::new();
            if !matches!(action, Action::Unchanged | Action::RefusedDowngrade) {
                let migration =
                    plugin_config::migrate_install(base_store.as_ref(), v.base.as_ref(), m);
                v.values
                    .insert(m.name.clone(), plugin_config::migrated_file(m, &migration));
                config = migration.changes;
            }
            v.actions.push(PluginAction {
                name: m.name.clone(),
                from,
                to: m.version.to_string(),
                action,
                license: check.license.clone(),
                config,
            });
        }
        v.checks.push(check);
    }
    v.facts = Some(facts);
    let installed: Vec<Manifest> = v
        .base
        .as_ref()
        .map(|g| {
            crate::checks::installed_manifests(g.plugin_dirs(), side)
                .into_values()
                .collect()
        })
        .unwrap_or_default();
    v.resolve(installed, controller_running, label, problems);
    v
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

impl SideVerdict {
    fn enabled_before(&self) -> BTreeMap<String, bool> {
        self.base
            .as_ref()
            .map(|g| {
                g.plugins()
                    .into_iter()
                    .map(|p| (p.name, p.enabled))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn resolve(
        &mut self,
        installed: Vec<Manifest>,
        controller_running: Option<BTreeMap<String, Version>>,
        label: &str,
        problems: &mut Vec<Problem>,
    ) {
        let enabled = self.enabled_before();
        // Incoming plugins that failed a check are failures in the graph, so
        // they are not in the load order and their dependents say why.
        let failed: BTreeMap<String, String> = self
            .checks
            .iter()
            .filter_map(|c| Some((c.manifest.as_ref()?.name.clone(), c.failure()?)))
            .collect();
        let incoming: Vec<Manifest> = self
            .checks
            .iter()
            .filter_map(|c| c.manifest.clone())
            .collect();
        let incoming_names: BTreeSet<String> = incoming.iter().map(|m| m.name.clone()).collect();
        let before = resolve(&ResolveInput {
            plugins: nodes(&installed, &enabled, self.side),
            running_controller: controller_running.clone(),
        });
        let merged = merge_installed(installed, incoming);
        let mut after_nodes = nodes(&merged, &enabled, self.side);
        for n in &mut after_nodes {
            if let Some(f) = failed.get(&n.name) {
                n.failure = Some(f.clone());
            }
        }
        let after = resolve(&ResolveInput {
            plugins: after_nodes,
            running_controller: controller_running,
        });
        for (name, blocked) in &after.blocked {
            if failed.contains_key(name) {
                // Its own check failure is reported already.
                continue;
            }
            let subj = subject(self.side, name);
            // Rendered once here: a `Blocked` builds its texts on demand.
            let reason = blocked.reason();
            let benign = matches!(
                reason,
                BlockReason::Disabled | BlockReason::DependencyDisabled { .. }
            );
            if incoming_names.contains(name) {
                let blocked_message = blocked.message();
                let (message, hint) = if benign {
                    (
                        format!("will not load after this import: {}", blocked_message),
                        "enable the disabled plugin if this one is needed".to_string(),
                    )
                } else if matches!(reason, BlockReason::ControllerStateUnknown { .. }) {
                    (
                        format!("ctrlDepend not checked: {}", blocked_message),
                        "import with --controller ADDR (or --controller-root) so the controller's plugins can be checked".to_string(),
                    )
                } else {
                    (
                        format!("would not load after this import: {}", blocked_message),
                        format!(
                            "add the missing or fixed dependency to {label}, or install it first"
                        ),
                    )
                };
                problems.push(Problem::new(reason.code(), subj, message, hint));
            } else if !before.blocked.contains_key(name) && !benign {
                problems.push(Problem::new(
                    ProblemCode::ImportBreaksInstalled,
                    subj,
                    format!("this import would break the installed plugin: {}", blocked.message()),
                    "import a package that keeps its dependencies satisfied, or remove the plugin first",
                ));
            }
        }
        self.after = Some(after);
        self.merged = merged;
    }

    /// Plugins of this side that will load after the install, with
    /// versions (for a controller side: what client plugins' `ctrlDepend`
    /// is checked against).
    pub fn running_set(&self) -> BTreeMap<String, Version> {
        let Some(after) = &self.after else {
            return BTreeMap::new();
        };
        self.merged
            .iter()
            .filter(|m| after.loads(&m.name))
            .map(|m| (m.name.clone(), m.version.clone()))
            .collect()
    }

    /// The plugins the install changes (everything but `unchanged`).
    pub fn changed(&self) -> Vec<&PluginAction> {
        self.actions
            .iter()
            .filter(|a| a.action != Action::Unchanged)
            .collect()
    }

    /// The enabled flag a changed plugin gets: the installed one on upgrade,
    /// the manifest's on first install.
    fn enabled_after(&self, name: &str, before: &BTreeMap<String, bool>) -> bool {
        before.get(name).copied().unwrap_or_else(|| {
            self.checks
                .iter()
                .find(|c| c.name == name)
                .and_then(|c| c.manifest.as_ref())
                .is_none_or(|m| m.enable)
        })
    }

    /// The changed plugins as a commit plan's staged entries, their folders
    /// under `dir` (`dir/<name>`).
    pub fn staged_plugins(&self, dir: &Path) -> Vec<StagedPlugin> {
        let before = self.enabled_before();
        self.changed()
            .into_iter()
            .map(|a| StagedPlugin {
                name: a.name.clone(),
                version: a.to.clone(),
                enabled: self.enabled_after(&a.name, &before),
                dir: dir.join(&a.name),
                values: self.values_file(&a.name).cloned(),
            })
            .collect()
    }

    /// The configuration values changed plugin `name` gets, as the file to
    /// stage (`None`: the plugin has no configuration items).
    pub fn values_file(&self, name: &str) -> Option<&ValuesFile> {
        self.values.get(name).and_then(Option::as_ref)
    }

    /// The changed plugins as an install transaction's plugin list.
    pub fn transaction_plugins(&self) -> Vec<TransactionPlugin> {
        let before = self.enabled_before();
        self.changed()
            .into_iter()
            .map(|a| TransactionPlugin {
                name: a.name.clone(),
                version: a.to.clone(),
                enabled: self.enabled_after(&a.name, &before),
            })
            .collect()
    }

    /// Records the time of the checks as the clock high-water mark (after a
    /// commit).
    pub fn record_clock(&mut self) {
        if let Some(facts) = self.facts.as_mut() {
            facts.record_clock();
        }
    }

    /// This side's part of a report, before anything is committed.
    pub fn report(&self, root: &Path) -> SideReport {
        SideReport {
            side: self.side,
            root: root.to_path_buf(),
            plugins: self.actions.clone(),
            previous_generation: self.base.as_ref().map(|g| g.number),
            new_generation: None,
            load_order: self
                .after
                .as_ref()
                .map(|r| r.load_order.to_vec())
                .unwrap_or_default(),
        }
    }
}

/// One side's part of an import or install report.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    /// Which side.
    pub side: Side,
    /// Install root.
    pub root: PathBuf,
    /// Plugins in the package.
    pub plugins: Vec<PluginAction>,
    /// Generation before.
    pub previous_generation: Option<u64>,
    /// Generation after (None if refused or nothing changed).
    pub new_generation: Option<u64>,
    /// Load order of the resulting installed set (refused plugins are not
    /// in it).
    pub load_order: Vec<String>,
}

impl std::fmt::Display for SideReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} root {}: generation {} -> {}",
            side_name(self.side),
            self.root.display(),
            self.previous_generation
                .map_or("none".into(), |g| g.to_string()),
            self.new_generation
                .map_or("unchanged".into(), |g| g.to_string()),
        )?;
        for p in &self.plugins {
            let lic = &p.license;
            writeln!(
                f,
                "  {:<20} {:>10} -> {:<10} {:<18} {lic}",
                p.name,
                p.from.as_deref().unwrap_or("-"),
                p.to,
                p.action.as_str(),
            )?;
            for line in plugin_config::migration_lines(p.action == Action::Install, &p.config) {
                writeln!(f, "      {line}")?;
            }
        }
        if !self.load_order.is_empty() {
            writeln!(f, "  load order: {}", self.load_order.join(" -> "))?;
        }
        Ok(())
    }
}
