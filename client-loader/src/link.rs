//! The pendant's side of the pendant link: `pair`, `unpair`,
//! `controller-status`, `import --controller` (one install across both
//! computers, [`xplugin_host::remote_import`]) and what `run --controller`
//! needs. Every link command first settles an install left undecided by an
//! earlier import that stopped half-way.

use crate::PROGRAM;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use xplugin_cli::{emit, fail};
use xplugin_host::config::{ApplyPolicy, HostConfig};
use xplugin_host::remote_import::{
    import_remote, settle, LinkTarget, Linked, RemoteImport, RemoteImportError, RemoteImportReport,
    Settled,
};
use xplugin_host::verify::{Policy, SideHost};
use xplugin_link::message::{ConfigReply, ControllerStatus, Hello};
use xplugin_link::peers::{pair_controller, unpair_controller};
use xplugin_link::PublicKey;
use xplugin_model::{Failure, Problem, ProblemCode, Problems, Version};

/// How long the pendant keeps reconnecting after a lost connection.
const RETRY: Duration = Duration::from_secs(60);

/// What the pendant says about itself in hello.
fn hello(config: &HostConfig, hmi: Option<&Version>) -> Hello {
    Hello::this_host(
        PROGRAM,
        hmi.map(ToString::to_string)
            .or_else(|| config.host_version.clone()),
        xplugin_host::device::device_identity(config).ok(),
    )
}

/// The link to the controller at `address` for pendant root `root`.
///
/// # Errors
/// A bad address.
pub fn target(
    root: &Path,
    config: &HostConfig,
    address: &str,
    hmi: Option<&Version>,
) -> Result<LinkTarget, xplugin_link::LinkError> {
    Ok(LinkTarget {
        root: root.to_path_buf(),
        address: xplugin_link::address::normalize(address)?,
        device_id: xplugin_host::device::device_identity(config).ok(),
        hello: hello(config, hmi),
        retry: RETRY,
    })
}

#[derive(Serialize)]
struct PairReport {
    address: String,
    key: PublicKey,
    fingerprint: String,
    replaced: Vec<String>,
    pendant_key: PublicKey,
    message: String,
}

impl fmt::Display for PairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.message)
    }
}

/// `pair ADDR:PORT KEY`.
pub fn pair(root: &Path, config: &HostConfig, address: &str, key: &str, json: bool) -> ExitCode {
    let parsed =
        xplugin_link::address::normalize(address).and_then(|a| Ok((a, PublicKey::parse(key)?)));
    let (address, key) = match parsed {
        Ok(x) => x,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    let own = match xplugin_cli::link::own_key(root, config) {
        Ok(k) => k,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    match pair_controller(root, &address, key) {
        Ok(replaced) => {
            let mut message = format!(
                "controller {key} (fingerprint {}) pinned at {address}",
                key.fingerprint()
            );
            for r in &replaced {
                if r.key != key {
                    message.push_str(&format!(
                        "\nit replaces key {} (fingerprint {}) paired at {}",
                        r.key,
                        r.key.fingerprint(),
                        r.address
                    ));
                }
            }
            message.push_str(&format!(
                "\nthe controller must authorise this pendant: `xplugin-controller pair {own}` (fingerprint {})",
                own.fingerprint()
            ));
            emit(
                &PairReport {
                    address,
                    key,
                    fingerprint: key.fingerprint(),
                    replaced: replaced.iter().map(|r| r.address.clone()).collect(),
                    pendant_key: own,
                    message,
                },
                json,
                true,
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(PROGRAM, &e, json),
    }
}

/// `unpair ADDR:PORT`.
pub fn unpair(root: &Path, address: &str, json: bool) -> ExitCode {
    let address = match xplugin_link::address::normalize(address) {
        Ok(a) => a,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    match unpair_controller(root, &address) {
        Ok(Some(c)) => {
            emit(
                &xplugin_cli::Message {
                    message: format!(
                        "controller {} (fingerprint {}) at {address} unpaired",
                        c.key,
                        c.key.fingerprint()
                    ),
                },
                json,
                true,
            );
            ExitCode::SUCCESS
        }
        Ok(None) => fail(
            PROGRAM,
            &xplugin_link::LinkError::NotPaired { address },
            json,
        ),
        Err(e) => fail(PROGRAM, &e, json),
    }
}

#[derive(Serialize)]
struct StatusReport {
    controller: String,
    #[serde(flatten)]
    status: ControllerStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    settled: Option<Settled>,
    problems: Vec<Problem>,
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.settled {
            write!(f, "{s}")?;
        }
        writeln!(f, "controller {}:", self.controller)?;
        write!(f, "{}", self.status.text)?;
        for p in &self.status.plugins {
            if let Some(h) = &p.library_sha256 {
                writeln!(f, "  {:<20} library sha256 {h}", p.name)?;
            }
        }
        let problems = Problems(self.problems.clone());
        if !problems.is_empty() {
            write!(f, "{problems}")?;
        }
        Ok(())
    }
}

/// Settles an undecided install with the controller at `target`'s
/// address (the journal's, if it names another), printing nothing.
fn settle_first(target: &LinkTarget) -> Result<Option<Settled>, RemoteImportError> {
    let settled = settle(target)?;
    if let Some(s) = &settled {
        log::warn!("{}", s.to_string().trim_end());
    }
    Ok(settled)
}

/// `controller-status --controller ADDR:PORT`.
pub fn controller_status(root: &Path, config: &HostConfig, address: &str, json: bool) -> ExitCode {
    let target = match target(root, config, address, None) {
        Ok(t) => t,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    let settled = match settle_first(&target) {
        Ok(s) => s,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    let mut link = Linked::new(&target);
    match link.status() {
        Ok(status) => {
            emit(
                &StatusReport {
                    controller: target.address.clone(),
                    status,
                    settled,
                    problems: link.warnings.clone(),
                },
                json,
                true,
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(PROGRAM, &e, json),
    }
}

/// `config show NAME --controller ADDR:PORT` and `config set NAME
/// KEY=VALUE... --controller ADDR:PORT`: a controller plugin's configuration
/// over the link. The controller parses, validates, offers and stores
/// (`assignments` `None` only shows).
pub fn controller_config(
    root: &Path,
    config: &HostConfig,
    address: &str,
    name: &str,
    assignments: Option<&[String]>,
    json: bool,
) -> ExitCode {
    let target = match target(root, config, address, None) {
        Ok(t) => t,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    if let Err(e) = settle_first(&target) {
        return fail(PROGRAM, &e, json);
    }
    let mut link = Linked::new(&target);
    let answer = match assignments {
        None => link.call(|c| c.config_show(name)),
        // Once: the controller may have applied it when the answer was lost.
        Some(a) => link.once(|c| c.config_set(name, a)),
    };
    match answer {
        Ok(reply) => {
            emit(
                &ConfigAnswer {
                    controller: target.address.clone(),
                    reply,
                },
                json,
                true,
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(PROGRAM, &e, json),
    }
}

/// The controller's answer to a configuration request, printed as its own
/// `config show|set` prints it.
struct ConfigAnswer {
    controller: String,
    reply: ConfigReply,
}

impl Serialize for ConfigAnswer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = self.reply.report.clone();
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("controller".into(), self.controller.clone().into());
        }
        v.serialize(s)
    }
}

impl fmt::Display for ConfigAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "controller {}: {}", self.controller, self.reply.text)
    }
}

/// The controller plugins that run now, for `run --controller`.
///
/// # Errors
/// The link's failure.
pub fn controller_running(
    root: &Path,
    config: &HostConfig,
    address: &str,
) -> Result<BTreeMap<String, Version>, Box<dyn Failure>> {
    let target =
        target(root, config, address, None).map_err(|e| Box::new(e) as Box<dyn Failure>)?;
    settle_first(&target).map_err(|e| Box::new(e) as Box<dyn Failure>)?;
    let mut link = Linked::new(&target);
    let status = link.status().map_err(|e| Box::new(e) as Box<dyn Failure>)?;
    Ok(xplugin_host::remote_import::running_set(&status))
}

/// Flags of `import --controller`.
pub struct OnlineFlags {
    /// `--controller`.
    pub address: String,
    /// `--apply`.
    pub apply: Option<ApplyPolicy>,
    /// `--yes`.
    pub yes: bool,
    /// `--force`, `--allow-downgrade`.
    pub policy: Policy,
}

/// Asks the operator on the terminal; without one (a script, a service)
/// nobody can answer, so the configured policy applies.
fn confirm(report: &RemoteImportReport, apply: &str) -> bool {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return true;
    }
    eprint!("{report}");
    eprint!("install this on both computers and apply it ({apply})? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if stdin.lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

/// `import PKG --controller ADDR:PORT`.
pub fn import(
    config: &HostConfig,
    root: PathBuf,
    package: PathBuf,
    hmi: Option<Version>,
    flags: OnlineFlags,
    json: bool,
) -> ExitCode {
    let target = match target(&root, config, &flags.address, hmi.as_ref()) {
        Ok(t) => t,
        Err(e) => return fail(PROGRAM, &e, json),
    };
    let apply_name = flags
        .apply
        .or(config.apply)
        .map_or("the controller's configured policy".to_string(), |a| {
            a.to_string()
        });
    let yes = flags.yes;
    let mut ask = move |r: &RemoteImportReport| yes || confirm(r, &apply_name);
    let wait = Duration::from_secs(config.apply_timeout_s.unwrap_or(300) + 60);
    let opts = RemoteImport {
        package,
        client: SideHost {
            root,
            host_version: hmi,
            config,
            arch: None,
        },
        target,
        policy: flags.policy,
        apply: flags.apply,
        confirm: &mut ask,
        apply_wait: wait,
    };
    match import_remote(opts) {
        Ok(report) => {
            emit(&report, json, true);
            ExitCode::SUCCESS
        }
        Err(RemoteImportError::Refused { report }) => xplugin_cli::refused(
            PROGRAM,
            &*report,
            &report.package,
            report.error_count(),
            " on either computer",
            json,
        ),
        Err(e) => fail(PROGRAM, &e, json),
    }
}

/// Refuses a change to the pendant's root while a two-computer install is
/// undecided.
///
/// # Errors
/// The problem naming the install and how to settle it.
pub fn refuse_if_undecided(root: &Path) -> Result<(), Problem> {
    match xplugin_host::remote_import::pending(root) {
        Some(p) => Err(xplugin_host::remote_import::undecided_problem(root, &p)),
        None => Ok(()),
    }
}

/// Parses `--apply`.
///
/// # Errors
/// A usage problem.
pub fn apply_flag(text: Option<&str>) -> Result<Option<ApplyPolicy>, Problem> {
    match text {
        None => Ok(None),
        Some(t) => ApplyPolicy::parse(t).map(Some).ok_or_else(|| {
            Problem::new(
                ProblemCode::UsageInvalidArgument,
                "--apply",
                format!("\"{t}\" is not an apply policy"),
                "use now, when-idle or next-boot",
            )
        }),
    }
}
