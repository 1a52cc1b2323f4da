//! The service manager's notify protocol (`sd_notify(3)`), spoken by hand:
//! one datagram of `KEY=VALUE` lines to the socket named by `NOTIFY_SOCKET`
//! (a path, or `@name` for the abstract namespace). Without `NOTIFY_SOCKET`
//! nothing is sent and every call here is a no-op, so the daemon runs the
//! same outside systemd.
//!
//! What the daemon says, and when (packaging/systemd/xplugin-controller.service
//! is `Type=notify`):
//!
//! | when | message |
//! |---|---|
//! | plugins started and the admin socket serves | `READY=1`, `STATUS=` generation and plugin counts |
//! | each half `WATCHDOG_USEC`, only if the cycle advanced | `WATCHDOG=1` |
//! | SIGHUP | `RELOADING=1` + `MONOTONIC_USEC=`, then `READY=1` when re-read |
//! | applying a generation (stop, re-exec) | `RELOADING=1` + `MONOTONIC_USEC=` + `WATCHDOG=1`; the new process sends `READY=1` |
//! | SIGTERM | `STOPPING=1` before the plugins stop |
//!
//! Why not `Type=notify-reload`: it needs systemd 253, and Debian bookworm
//! ships 252. The unit is `Type=notify` with `ExecReload=kill -HUP
//! $MAINPID`; the daemon still sends `RELOADING=1` with `MONOTONIC_USEC`
//! (which `notify-reload` requires and older systemd ignores), so `systemctl
//! status` shows the reload and the unit can move to `notify-reload` later
//! without a daemon change.
//!
//! Why by hand: the `sd-notify` crate (0.5) connects to `NOTIFY_SOCKET` as a
//! file path, so an abstract socket (`@...`, what systemd uses in
//! containers and what `systemd-run --user` may hand out) does not work;
//! the protocol itself is one `sendto`.
//!
//! The watchdog: systemd sets `WATCHDOG_USEC` (and `WATCHDOG_PID`, the
//! process it is meant for) from the unit's `WatchdogSec=`. The daemon pings
//! at half that interval, but only while the real-time cycle is healthy:
//! its cycle counter ([`CycleStats::cycles`]) advanced since the previous
//! check and the cycle thread has not left its loop. A hung cycle (a plugin's
//! step that never returns) or a hung main loop therefore stops the pings,
//! and systemd kills and restarts the service (`Restart=on-failure`).
//! `NOTIFY_SOCKET` and the watchdog variables are kept in the environment on
//! purpose: applying a generation re-executes the daemon in the same
//! process, and the new image must be able to say `READY=1`.
//!
//! Stopping: [`STOP_TIMEOUT`] is the bound the unit's `TimeoutStopSec=`
//! states (a test checks they agree): SIGTERM → `STOPPING=1` → the cycle
//! stops → plugins stop in reverse order → exit 0. A plugin whose `stop`
//! does not return within that time is the supervisor's to contain; past it
//! systemd sends SIGKILL to the whole unit.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use xplugin_host::boot::{BootReport, BootState};
use xplugin_host::cycle::CycleStats;

/// How long the daemon may take from SIGTERM to exit (the unit's
/// `TimeoutStopSec=`, in seconds).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest `NOTIFY_SOCKET` path: `sun_path` holds 108 bytes with its NUL.
const MAX_SOCKET_PATH: usize = 107;

/// The daemon's side of the notify protocol.
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Watchdog>,
}

struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// As given, for messages.
    name: String,
    /// A send failed and was logged; later failures are not (the manager
    /// went away, the journal need not fill with it).
    failed: bool,
}

/// The watchdog's bookkeeping.
struct Watchdog {
    every: Duration,
    last_check: Instant,
    /// The cycle counter at the last check (`None`: no check yet).
    seen: Option<u64>,
    /// The last check withheld the ping (logged once per episode).
    withheld: bool,
}

/// Why the notify socket or the watchdog settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` names no Unix socket this daemon can address.
    #[error("NOTIFY_SOCKET={value:?}: {why}")]
    BadSocket {
        /// The variable's value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The datagram socket could not be created.
    #[error("cannot create a datagram socket for NOTIFY_SOCKET: {0}")]
    Socket(#[source] io::Error),
    /// `WATCHDOG_USEC` is not a positive number of microseconds.
    #[error("WATCHDOG_USEC={0:?} is not a positive number of microseconds")]
    BadWatchdog(String),
}

/// Parses `NOTIFY_SOCKET`: an absolute path or `@abstract-name`.
///
/// # Errors
/// [`NotifyError::BadSocket`] for anything else (`vsock:` addresses
/// included: the daemon does not run in virtual machines' service managers).
pub fn parse_socket(value: &str) -> Result<SocketAddr, NotifyError> {
    let bad = |why| NotifyError::BadSocket {
        value: value.to_string(),
        why,
    };
    if let Some(name) = value.strip_prefix('@') {
        if name.len() > MAX_SOCKET_PATH - 1 {
            return Err(bad(
                "the abstract name is longer than a socket address holds",
            ));
        }
        return SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(|_| bad("not a valid abstract socket name"));
    }
    if !value.starts_with('/') {
        return Err(bad(
            "expected an absolute path or @abstract-name (other address kinds are not supported)",
        ));
    }
    if value.len() > MAX_SOCKET_PATH {
        return Err(bad("the path is longer than a socket address holds"));
    }
    SocketAddr::from_pathname(value).map_err(|_| bad("not a valid socket path"))
}

/// The ping interval from `WATCHDOG_USEC` and `WATCHDOG_PID`: half the
/// timeout, or `None` when no watchdog is meant for process `pid`.
///
/// # Errors
/// [`NotifyError::BadWatchdog`] for a value that is not a positive number.
pub fn watchdog_interval(
    usec: Option<&str>,
    watchdog_pid: Option<&str>,
    pid: u32,
) -> Result<Option<Duration>, NotifyError> {
    let Some(usec) = usec else { return Ok(None) };
    // A watchdog set for another process (a parent that exec'd a wrapper)
    // is not this one's to feed.
    if let Some(p) = watchdog_pid {
        if p.trim().parse::<u32>().ok() != Some(pid) {
            return Ok(None);
        }
    }
    match usec.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(Duration::from_micros(n) / 2)),
        _ => Err(NotifyError::BadWatchdog(usec.to_string())),
    }
}

/// True when the cycle is healthy: its counter advanced since the last
/// check (`before`) and it has not left its loop. Without a cycle the main
/// loop running is all there is to watch.
pub fn cycle_healthy(before: Option<u64>, now: Option<u64>, finished: bool) -> bool {
    match (before, now) {
        (_, None) => true,
        (Some(b), Some(n)) => n > b && !finished,
        (None, Some(_)) => !finished,
    }
}

/// A `STATUS=` value: one line (a newline would start another assignment).
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `MONOTONIC_USEC=`: CLOCK_MONOTONIC, which systemd compares its own
/// reload timestamps against.
fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64) * 1_000_000 + (t.tv_nsec() as u64) / 1_000
    })
}

/// What the daemon runs, for `STATUS=`.
pub fn describe(report: &BootReport) -> String {
    let running = report
        .plugins
        .iter()
        .filter(|p| p.state == BootState::Running)
        .count();
    let generation = report
        .generation
        .map_or("no generation installed".to_string(), |g| {
            format!("generation {g}")
        });
    format!(
        "{generation}: {running} of {} plugins running",
        report.plugins.len()
    )
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`; what is
    /// unusable is logged and left out (the daemon runs on without it).
    pub fn from_env() -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET").ok();
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        Notifier::new(socket.as_deref(), usec.as_deref(), pid.as_deref())
    }

    /// As [`Notifier::from_env`] with the values given.
    pub fn new(socket: Option<&str>, usec: Option<&str>, watchdog_pid: Option<&str>) -> Notifier {
        let target = match socket.filter(|s| !s.is_empty()).map(Target::open) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                log::warn!("{e}; the service manager is not told when the daemon is ready");
                None
            }
        };
        let every = if target.is_some() {
            match watchdog_interval(usec, watchdog_pid, std::process::id()) {
                Ok(every) => every,
                Err(e) => {
                    log::warn!("{e}; no watchdog pings are sent (check WatchdogSec= of the unit)");
                    None
                }
            }
        } else {
            None
        };
        Notifier {
            target,
            watchdog: every.map(|every| Watchdog {
                every,
                last_check: Instant::now(),
                seen: None,
                withheld: false,
            }),
        }
    }

    /// True when a service manager listens.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The ping interval, when a watchdog is set for this process.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.as_ref().map(|w| w.every)
    }

    /// Sends `lines` as one datagram.
    fn send(&mut self, lines: &[String]) {
        let Some(t) = self.target.as_mut() else {
            return;
        };
        let mut message = lines.join("\n");
        message.push('\n');
        match t.socket.send_to_addr(message.as_bytes(), &t.addr) {
            Ok(_) => t.failed = false,
            Err(e) if !t.failed => {
                t.failed = true;
                log::warn!("cannot notify the service manager on {}: {e}", t.name);
            }
            Err(_) => {}
        }
    }

    /// `READY=1`: the plugins started and the admin socket serves.
    pub fn ready(&mut self, report: &BootReport) {
        self.send(&[
            "READY=1".into(),
            format!("STATUS={}", one_line(&describe(report))),
        ]);
    }

    /// `STATUS=...` alone.
    pub fn status(&mut self, text: &str) {
        self.send(&[format!("STATUS={}", one_line(text))]);
    }

    /// `RELOADING=1` before the configuration is re-read.
    pub fn reloading(&mut self) {
        self.send(&[
            "RELOADING=1".into(),
            format!("MONOTONIC_USEC={}", monotonic_usec()),
            "STATUS=re-reading the configuration (SIGHUP)".into(),
        ]);
    }

    /// `READY=1` after the configuration was re-read.
    pub fn reloaded(&mut self, report: &BootReport) {
        self.ready(report);
    }

    /// Applying `generation`: the plugins stop and the daemon re-executes;
    /// a fresh ping gives the stop and the new boot the whole watchdog
    /// interval, and the new process says `READY=1`.
    pub fn applying(&mut self, generation: u64) {
        let mut lines = vec![
            "RELOADING=1".into(),
            format!("MONOTONIC_USEC={}", monotonic_usec()),
            format!(
                "STATUS=applying generation {generation}: stopping the plugins, then re-executing"
            ),
        ];
        if self.watchdog.is_some() {
            lines.push("WATCHDOG=1".into());
        }
        self.send(&lines);
    }

    /// `STOPPING=1`: SIGTERM, the plugins stop in reverse order.
    pub fn stopping(&mut self) {
        self.send(&[
            "STOPPING=1".into(),
            "STATUS=stopping: plugins stop in reverse order".into(),
        ]);
    }

    /// Called from the main loop on every turn: every half watchdog
    /// interval, `WATCHDOG=1` if the cycle advanced since the last check,
    /// nothing (and a warning, once) if it did not.
    pub fn tick(&mut self, cycle: Option<&CycleStats>) {
        let Some(w) = self.watchdog.as_mut() else {
            return;
        };
        let now = cycle.map(|c| c.cycles.load(Ordering::Relaxed));
        let finished = cycle.is_some_and(|c| c.finished.load(Ordering::Relaxed));
        if w.seen.is_none() && now.is_some() {
            // The first turn sets the baseline the first check compares to.
            w.seen = now;
            w.last_check = Instant::now();
            return;
        }
        if w.last_check.elapsed() < w.every {
            return;
        }
        w.last_check = Instant::now();
        let healthy = cycle_healthy(w.seen, now, finished);
        w.seen = now;
        if healthy {
            w.withheld = false;
            self.send(&["WATCHDOG=1".into()]);
        } else if !w.withheld {
            w.withheld = true;
            log::error!(
                "the real-time cycle did not advance in {} ms (cycle {}{}): withholding the watchdog ping, so the service manager restarts the daemon",
                w.every.as_millis(),
                now.unwrap_or(0),
                if finished { ", the cycle thread has stopped" } else { "" }
            );
        }
    }
}

impl Target {
    fn open(value: &str) -> Result<Target, NotifyError> {
        let addr = parse_socket(value)?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        Ok(Target {
            socket,
            addr,
            name: value.to_string(),
            failed: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(listener: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = listener.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn listener_at(path: &std::path::Path) -> UnixDatagram {
        let l = UnixDatagram::bind(path).expect("bind");
        l.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        l
    }

    #[test]
    fn without_notify_socket_nothing_is_sent_and_no_watchdog_runs() {
        let mut n = Notifier::new(None, Some("1000000"), None);
        assert!(!n.enabled());
        assert_eq!(n.watchdog_every(), None);
        n.stopping();
        n.tick(None);
        let n = Notifier::new(Some(""), None, None);
        assert!(!n.enabled());
    }

    #[test]
    fn messages_reach_a_path_socket_as_one_datagram_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let l = listener_at(&path);
        let mut n = Notifier::new(path.to_str(), None, None);
        assert!(n.enabled());
        n.status("line one\nWATCHDOG=1");
        assert_eq!(receive(&l), "STATUS=line one WATCHDOG=1\n");
        n.reloading();
        let m = receive(&l);
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines[0], "RELOADING=1");
        let usec: u64 = lines[1]
            .strip_prefix("MONOTONIC_USEC=")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{m}"));
        assert!(usec > 0 && usec <= monotonic_usec(), "{m}");
        n.stopping();
        assert!(receive(&l).starts_with("STOPPING=1\n"));
    }

    #[test]
    fn an_abstract_socket_works() {
        let name = format!("xplugin-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let l = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        l.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut n = Notifier::new(Some(&format!("@{name}")), None, None);
        n.stopping();
        assert!(receive(&l).starts_with("STOPPING=1\n"));
    }

    #[test]
    fn unusable_addresses_are_refused_with_the_reason() {
        for bad in [
            "relative/path",
            "vsock:2:1234",
            &format!("/{}", "x".repeat(200)),
        ] {
            let e = parse_socket(bad).unwrap_err().to_string();
            assert!(e.contains("NOTIFY_SOCKET"), "{e}");
        }
        assert!(!Notifier::new(Some("relative"), None, None).enabled());
    }

    #[test]
    fn the_watchdog_pings_at_half_the_interval_only_for_this_process() {
        let me = std::process::id();
        let other = (me + 1).to_string();
        assert_eq!(
            watchdog_interval(Some("2000000"), None, me).unwrap(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some(&me.to_string()), me).unwrap(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some(&other), me).unwrap(),
            None
        );
        assert_eq!(watchdog_interval(None, None, me).unwrap(), None);
        for bad in ["0", "-5", "soon"] {
            assert!(watchdog_interval(Some(bad), None, me).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cycle_is_healthy_only_while_its_counter_advances() {
        assert!(cycle_healthy(Some(10), Some(11), false));
        assert!(!cycle_healthy(Some(10), Some(10), false));
        assert!(!cycle_healthy(Some(10), Some(12), true));
        assert!(cycle_healthy(None, None, false));
        assert!(cycle_healthy(Some(3), None, false));
    }

    /// The shipped unit, as the package installs it.
    const UNIT: &str = include_str!("../../packaging/systemd/xplugin-controller.service");

    fn unit_value(key: &str) -> Vec<&'static str> {
        UNIT.lines()
            .filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .collect()
    }

    #[test]
    fn the_unit_states_what_the_daemon_does() {
        assert_eq!(unit_value("Type"), ["notify"]);
        assert_eq!(
            unit_value("TimeoutStopSec"),
            [format!("{}s", STOP_TIMEOUT.as_secs()).as_str()],
            "TimeoutStopSec must be notify::STOP_TIMEOUT"
        );
        assert_eq!(unit_value("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
        assert_eq!(unit_value("Restart"), ["on-failure"]);
        assert_eq!(unit_value("WatchdogSec").len(), 1);
        assert_eq!(unit_value("StartLimitBurst").len(), 1);
        assert_eq!(unit_value("User"), ["xplugin"]);
        assert_eq!(
            unit_value("AmbientCapabilities"),
            ["CAP_SYS_NICE CAP_IPC_LOCK"]
        );
        assert_eq!(unit_value("LimitRTPRIO"), ["99"]);
        assert_eq!(unit_value("LimitMEMLOCK"), ["infinity"]);
        assert_eq!(unit_value("StateDirectory"), ["xplugin/controller"]);
    }
}
