//! `xplugin-client run --until-stopped`: the client plugins run (idle
//! rounds) until SIGTERM or SIGINT. The runner records itself in
//! `ROOT/state/link/runner.json`; an import that commits a new client
//! generation records an apply request and sends SIGHUP. The runner then
//! applies it the way the controller's daemon does: `now` stops the plugins
//! in reverse order and re-executes itself to boot the new set (libraries
//! are never unloaded), `when-idle` does so once no plugin holds the pendant
//! busy, `next-boot` leaves the running set alone.
//!
//! On Windows: Ctrl+C, Ctrl+Break and closing the console stop it (there are
//! no signals); nothing wakes it, it looks for an apply request every second;
//! and every policy acts as `next-boot`, since a program cannot replace
//! itself in place there (docs/windows.md).

use crate::PROGRAM;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use xplugin_cli::report_boot;
use xplugin_host::boot::{BootOptions, Booted};
use xplugin_host::config::ApplyPolicy;
use xplugin_host::remote_import::{
    ApplyRequest, LinkTarget, Runner, APPLY_REQUEST_FILE, RUNNER_FILE,
};

static STOP: AtomicBool = AtomicBool::new(false);
static WAKE: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_stop(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

#[cfg(unix)]
extern "C" fn on_wake(_: nix::libc::c_int) {
    WAKE.store(true, Ordering::SeqCst);
}

/// Ctrl+C, Ctrl+Break, closing the console, logoff and shutdown stop the
/// runner (handled: TRUE; the handler runs on a thread of its own).
#[cfg(windows)]
unsafe extern "system" fn on_console(_event: u32) -> windows_sys::core::BOOL {
    STOP.store(true, Ordering::SeqCst);
    1
}

#[cfg(windows)]
fn install_handlers() {
    use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
    // SAFETY: the handler only stores to a lock-free `AtomicBool` and has
    // the PHANDLER_ROUTINE signature; it stays valid for the process.
    if unsafe { SetConsoleCtrlHandler(Some(on_console), 1) } == 0 {
        log::warn!(
            "cannot install a console control handler: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(unix)]
fn install_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let handlers: [(Signal, extern "C" fn(nix::libc::c_int)); 3] = [
        (Signal::SIGTERM, on_stop),
        (Signal::SIGINT, on_stop),
        (Signal::SIGHUP, on_wake),
    ];
    for (s, handler) in handlers {
        let action = SigAction::new(
            SigHandler::Handler(handler),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: the handlers only store to a lock-free `AtomicBool`, which
        // is async-signal-safe; nothing else in this program installs
        // handlers for these signals.
        if let Err(e) = unsafe { sigaction(s, &action) } {
            log::warn!("cannot install a handler for {s}: {e}");
        }
    }
}

/// Time between idle rounds.
const IDLE_PERIOD: Duration = Duration::from_millis(100);

/// Runs the booted client plugins until stopped; applies new generations.
/// With `bridge` (`--controller`), plugin messages cross to and from the
/// controller while they run.
pub fn serve(
    mut booted: Booted,
    opts: &BootOptions<'_>,
    bridge: Option<LinkTarget>,
    json: bool,
) -> ExitCode {
    install_handlers();
    let mut bridge = bridge.and_then(|t| crate::bridge::start(&booted, t));
    let root = &opts.root;
    let running = booted.report.generation;
    let me = Runner {
        pid: std::process::id(),
        generation: running,
    };
    let runner_file = root.join(RUNNER_FILE);
    if let Some(d) = runner_file.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    if let Ok(bytes) = serde_json::to_vec(&me) {
        if let Err(e) = xplugin_store::replace_file_with_mode(&runner_file, &bytes, 0o644) {
            log::warn!(
                "cannot record this runner in {}: {e}",
                runner_file.display()
            );
        }
    }
    log::info!(
        "client plugins running (generation {running:?}) until {}",
        if cfg!(windows) { "Ctrl+C" } else { "SIGTERM" }
    );
    let mut last_look = Instant::now();
    let mut said_next_boot = None;
    loop {
        if STOP.load(Ordering::SeqCst) {
            break;
        }
        for (name, status) in booted.idle_all() {
            log::warn!(
                "plugin \"{name}\" idle returned {}",
                xplugin_abi::status_name(status)
            );
        }
        if WAKE.swap(false, Ordering::SeqCst) || last_look.elapsed() > Duration::from_secs(1) {
            last_look = Instant::now();
            if let Some(req) = apply_request(root) {
                if Some(req.generation) != running {
                    let policy = req.policy.or(opts.config.apply).unwrap_or_default();
                    let policy = applicable(policy);
                    let go = match policy {
                        ApplyPolicy::Now => true,
                        ApplyPolicy::WhenIdle => booted.busy().is_empty(),
                        ApplyPolicy::NextBoot => {
                            if said_next_boot != Some(req.generation) {
                                log::info!(
                                    "client generation {} is committed; it runs from the next start",
                                    req.generation
                                );
                                said_next_boot = Some(req.generation);
                            }
                            false
                        }
                    };
                    if go {
                        log::info!(
                            "applying client generation {} ({policy}): stopping the plugins, then restarting",
                            req.generation
                        );
                        stop_bridge(bridge.take());
                        let report = booted.shutdown();
                        log::info!("stopped for the apply:\n{report}");
                        let e = reexec();
                        log::error!(
                            "{PROGRAM}: cannot restart to apply generation {}: {e}",
                            req.generation
                        );
                        return ExitCode::from(3);
                    }
                }
            }
        }
        std::thread::sleep(IDLE_PERIOD);
    }
    let _ = std::fs::remove_file(&runner_file);
    stop_bridge(bridge.take());
    report_boot(&booted.shutdown(), json)
}

/// Ends the bridge before the plugins stop (they hear the link go down)
/// and logs what crossed.
fn stop_bridge(bridge: Option<crate::bridge::PendantBridge>) {
    if let Some(b) = bridge {
        let stats = b.stop();
        for (name, p) in &stats.plugins {
            log::info!(
                "plugin message bridge: {name}: sent {}, received {}, dropped rate {} queue {} too large {} no link {}, refused {}",
                p.sent,
                p.received,
                p.dropped_rate,
                p.dropped_queue,
                p.dropped_too_large,
                p.dropped_no_link,
                p.refused
            );
        }
    }
}

fn apply_request(root: &std::path::Path) -> Option<ApplyRequest> {
    let bytes = std::fs::read(root.join(APPLY_REQUEST_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The policy this platform can carry out.
#[cfg(unix)]
fn applicable(policy: ApplyPolicy) -> ApplyPolicy {
    policy
}

/// `next-boot` whatever was asked: applying at once means re-executing,
/// which Windows cannot do (see [`reexec`]).
#[cfg(windows)]
fn applicable(policy: ApplyPolicy) -> ApplyPolicy {
    if policy != ApplyPolicy::NextBoot {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            log::warn!("apply policy {policy} acts as next-boot on Windows (a running program cannot replace itself in place)");
        });
    }
    ApplyPolicy::NextBoot
}

/// Never called on Windows ([`applicable`] always says `next-boot`).
#[cfg(windows)]
fn reexec() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "a running program cannot replace itself in place on Windows; start it again",
    )
}

#[cfg(unix)]
fn reexec() -> std::io::Error {
    use std::ffi::OsString;
    use std::os::unix::process::CommandExt;
    let argv: Vec<OsString> = std::env::args_os().collect();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some((first, rest)) = argv.split_first() {
        cmd.arg0(first).args(rest);
    }
    cmd.env("XPLUGIN_REEXEC", "1").exec()
}
