//! What `xplugin-controller status` shows: which generation runs and since
//! when, which is committed but not applied, the open transaction, every
//! plugin's state, the apply in progress, the real-time settings and timing.

use serde::Serialize;
use std::path::PathBuf;
use xplugin_host::boot::BootState;
use xplugin_host::config::ApplyPolicy;
use xplugin_host::cycle::TimingReport;
use xplugin_store::TransactionRecord;

/// The generations of the root as the daemon sees them.
#[derive(Debug, Clone, Serialize)]
pub struct Generations {
    /// The generation whose plugins run now.
    pub running: Option<u64>,
    /// When it started running (unix seconds).
    pub running_since_unix: u64,
    /// The generation `current` names (what the next start boots).
    pub committed: Option<u64>,
    /// True when a committed generation is not running yet.
    pub pending_apply: bool,
    /// The open install transaction, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepared: Option<TransactionRecord>,
}

/// One plugin in the status.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// Name.
    pub name: String,
    /// Version.
    pub version: Option<String>,
    /// State (`running`, `failed`, `disabled`, ...).
    pub state: BootState,
    /// Why it is not running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An apply waiting for the plugins to be idle.
#[derive(Debug, Clone, Serialize)]
pub struct PendingApply {
    /// The generation to apply.
    pub generation: u64,
    /// How.
    pub policy: ApplyPolicy,
    /// Since when it waits (unix seconds).
    pub since_unix: u64,
    /// When it gives up (unix seconds).
    pub deadline_unix: u64,
    /// The plugins holding the controller busy at the last look.
    pub busy: Vec<String>,
}

/// Applying committed generations.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyStatus {
    /// The configured policy.
    pub policy: ApplyPolicy,
    /// An apply waiting for idle plugins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingApply>,
    /// What the last apply that did not happen said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// The whole status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The daemon's pid.
    pub pid: u32,
    /// Its install root.
    pub root: PathBuf,
    /// When this daemon process started (unix seconds).
    pub started_unix: u64,
    /// The controller version it reports.
    pub host_version: String,
    /// Generations.
    pub generation: Generations,
    /// Every installed plugin of the running generation.
    pub plugins: Vec<PluginStatus>,
    /// Quarantined plugins (not loaded), with the evidence.
    pub quarantine: std::collections::BTreeMap<String, xplugin_host::quarantine::Entry>,
    /// Why no plugin runs, in safe mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safe_mode: Option<String>,
    /// How the previous run ended, when it did not stop cleanly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_end: Option<String>,
    /// Applying.
    pub apply: ApplyStatus,
    /// The real-time cycle's timing and settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<TimingReport>,
    /// True when licenses are not enforced (`allow_unlicensed`).
    pub development_mode: bool,
    /// The plugin message bridge to the pendant (when the link serves).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<xplugin_host::bridge::BridgeStats>,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = &self.generation;
        let gen = |n: Option<u64>| n.map_or("none".to_string(), |n| n.to_string());
        writeln!(
            f,
            "xplugin-controller {} (pid {}) on {}: generation {} running since {} (unix time)",
            self.host_version,
            self.pid,
            self.root.display(),
            gen(g.running),
            g.running_since_unix
        )?;
        if g.pending_apply {
            writeln!(
                f,
                "generation {} is committed but not applied yet (policy {})",
                gen(g.committed),
                self.apply.policy
            )?;
        }
        if let Some(t) = &g.prepared {
            writeln!(
                f,
                "install transaction {} is {} (held by {}, until {} unix time)",
                t.id, t.state, t.holder, t.expires_unix
            )?;
        }
        if let Some(p) = &self.apply.pending {
            writeln!(
                f,
                "applying generation {} when idle, waiting since {} for: {}",
                p.generation,
                p.since_unix,
                if p.busy.is_empty() {
                    "nothing".to_string()
                } else {
                    p.busy.join(", ")
                }
            )?;
        }
        if let Some(why) = &self.apply.last_failure {
            writeln!(f, "last apply: {why}")?;
        }
        if let Some(why) = &self.safe_mode {
            writeln!(f, "SAFE MODE: {why}")?;
        }
        if let Some(end) = &self.previous_end {
            writeln!(f, "{end}")?;
        }
        for (name, q) in &self.quarantine {
            writeln!(
                f,
                "quarantined: {name} {} {} in {}",
                q.version, q.how, q.stage
            )?;
        }
        if self.development_mode {
            writeln!(
                f,
                "DEVELOPMENT MODE: allow_unlicensed is on; licenses are not enforced"
            )?;
        }
        for p in &self.plugins {
            write!(
                f,
                "  {:<20} {:<10} {:<20}",
                p.name,
                p.version.as_deref().unwrap_or("?"),
                p.state
            )?;
            if let Some(r) = &p.reason {
                write!(f, "\n      reason: {r}")?;
            }
            writeln!(f)?;
        }
        if let Some(b) = &self.bridge {
            write_bridge(f, b)?;
        }
        if let Some(t) = &self.timing {
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

/// The bridge's lines of `status` (and of the pendant's report).
pub fn write_bridge(
    f: &mut std::fmt::Formatter<'_>,
    b: &xplugin_host::bridge::BridgeStats,
) -> std::fmt::Result {
    match &b.peer {
        Some(peer) if b.connected => writeln!(
            f,
            "plugin message bridge: connected to {peer}, {} route(s), {} session(s) so far",
            b.routes.len(),
            b.sessions
        )?,
        _ => writeln!(
            f,
            "plugin message bridge: no pendant connected ({} session(s) so far)",
            b.sessions
        )?,
    }
    for (name, p) in &b.plugins {
        writeln!(
            f,
            "  bridge {name}: sent {}, received {}, dropped {} (rate {}, queue {}, too large {}, no link {}), refused {}",
            p.sent,
            p.received,
            p.dropped_rate + p.dropped_queue + p.dropped_too_large + p.dropped_no_link,
            p.dropped_rate,
            p.dropped_queue,
            p.dropped_too_large,
            p.dropped_no_link,
            p.refused
        )?;
    }
    Ok(())
}
