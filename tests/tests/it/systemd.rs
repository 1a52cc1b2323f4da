//! The daemon under a service manager's notify protocol, with a real
//! datagram socket standing where systemd's would (`NOTIFY_SOCKET` names a
//! socket the test binds): `READY=1` only once the plugins run and the admin
//! socket answers, `WATCHDOG=1` while the cycle advances and none while it
//! hangs, `RELOADING=1` and `READY=1` around SIGHUP, `STOPPING=1` on SIGTERM
//! (exit 0). And the shipped unit file, checked by `systemd-analyze verify`
//! where systemd is installed (scripts/test installs it).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::{Duration, Instant};
use xplugin_tests::build::{bin_path, c_fixture, workspace_root};
use xplugin_tests::daemon::{ready_timeout, Daemon};
use xplugin_tests::scenario::{run_program, Scenario};

/// The service manager's end: every datagram the daemon sent, in order.
struct Manager {
    socket: UnixDatagram,
    /// What `NOTIFY_SOCKET` is set to.
    address: String,
    seen: Vec<String>,
}

impl Manager {
    fn at_path(path: &Path) -> Manager {
        let socket = UnixDatagram::bind(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Manager::with(socket, path.to_string_lossy().into_owned())
    }

    fn abstract_named(name: &str) -> Manager {
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).expect("bind an abstract socket");
        Manager::with(socket, format!("@{name}"))
    }

    fn with(socket: UnixDatagram, address: String) -> Manager {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Manager {
            socket,
            address,
            seen: Vec::new(),
        }
    }

    /// Receives what arrives within `within` and keeps it.
    fn collect(&mut self, within: Duration) -> Vec<String> {
        let start = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while start.elapsed() < within {
            if let Ok(n) = self.socket.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        self.seen.extend(got.iter().cloned());
        got
    }

    /// Waits for a datagram with the line `line`; returns that datagram.
    fn wait_for(&mut self, line: &str, timeout: Duration, d: &Daemon) -> String {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(m.clone());
                if m.lines().any(|l| l == line) {
                    return m;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "no {line} within {timeout:?}; received {:?}\n--- daemon log\n{}",
                self.seen,
                d.log_text()
            );
        }
    }

    fn count(&self, line: &str) -> usize {
        self.seen
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }
}

/// 200 ms watchdog: the daemon pings every 100 ms while healthy.
const WATCHDOG_USEC: &str = "200000";

fn start(s: &Scenario, manager: &Manager) -> Daemon {
    start_with(s, &s.controller_config, manager)
}

fn start_with(s: &Scenario, config: &Path, manager: &Manager) -> Daemon {
    Daemon::start_env(
        s,
        config,
        &[],
        &[
            ("NOTIFY_SOCKET", manager.address.as_str()),
            ("WATCHDOG_USEC", WATCHDOG_USEC),
        ],
        false,
    )
}

/// A scenario with the example plugins installed (generation 1).
fn installed() -> Scenario {
    let s = Scenario::new();
    s.license_all();
    s.import(&s.pack("v1"), &[]).ok();
    s
}

fn cycles(d: &Daemon) -> u64 {
    d.status().ok().json()["timing"]["cycles"]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no timing.cycles"))
}

#[test]
fn the_daemon_is_ready_after_its_plugins_start_pings_while_cycling_and_says_stopping_on_sigterm() {
    let s = installed();
    let dir = tempfile::tempdir().unwrap();
    let mut manager = Manager::at_path(&dir.path().join("notify.sock"));
    let d = start(&s, &manager);

    let ready = manager.wait_for("READY=1", ready_timeout(), &d);
    // READY=1 comes after the admin socket serves and the plugins started.
    let status = d.status().ok().json();
    let plugins = status["plugins"].as_array().cloned().unwrap_or_default();
    assert!(!plugins.is_empty(), "{status}");
    assert!(
        plugins.iter().all(|p| p["state"] == "running"),
        "READY=1 before every plugin ran: {status}"
    );
    assert!(
        ready.contains(&format!(
            "STATUS=generation 1: {n} of {n} plugins running",
            n = plugins.len()
        )),
        "{ready}"
    );

    // The cycle runs: pings come, and only after READY=1.
    manager.wait_for("WATCHDOG=1", ready_timeout(), &d);
    manager.wait_for("WATCHDOG=1", ready_timeout(), &d);
    let first_ready = manager.seen.iter().position(|m| m.contains("READY=1"));
    let first_ping = manager.seen.iter().position(|m| m.contains("WATCHDOG=1"));
    assert!(first_ready < first_ping, "{:?}", manager.seen);

    // SIGHUP: RELOADING=1 with the monotonic clock, then READY=1 again.
    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let reloading = manager.wait_for("RELOADING=1", ready_timeout(), &d);
    assert!(
        reloading.lines().any(|l| l
            .strip_prefix("MONOTONIC_USEC=")
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|n| n > 0))),
        "{reloading}"
    );
    let readies = manager.count("READY=1");
    manager.wait_for("READY=1", ready_timeout(), &d);
    assert_eq!(manager.count("READY=1"), readies + 1);

    // SIGTERM: STOPPING=1, then the plugins stop and the daemon exits 0.
    let log = d.log.clone();
    assert_eq!(
        d.stop(),
        0,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    manager.collect(Duration::from_millis(300));
    assert_eq!(manager.count("STOPPING=1"), 1, "{:?}", manager.seen);
    let last = manager.seen.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("STOPPING=1\n"),
        "STOPPING=1 is the last word: {:?}",
        manager.seen
    );
}

#[test]
fn a_hung_cycle_gets_no_watchdog_pings() {
    let s = Scenario::new();
    // Its step busy-waits ten minutes: the cycle's first turn never ends
    // while the test looks, even under emulation (the counter moves at the
    // end of a turn).
    let spin = c_fixture(
        "spinner",
        &[
            "FIXTURE_NAME=\"spinner\"",
            "FIXTURE_STEP",
            "FIXTURE_STEP_SPIN_US=600000000",
        ],
    );
    s.add_controller_fixture("spinner", &spin, "0.1.0", &[]);
    s.license_all();
    s.import(&s.pack("hung"), &[]).ok();
    let name = format!("xplugin-it-notify-{}", std::process::id());
    let mut manager = Manager::abstract_named(&name);
    let config = leaving_hangs_to_the_watchdog(&s);
    let d = start_with(&s, &config, &manager);
    manager.wait_for("READY=1", ready_timeout(), &d);
    assert_eq!(cycles(&d), 0, "the spinner's first step should still run");
    // Ten ping intervals with a cycle that did not move.
    manager.collect(Duration::from_secs(1));
    assert_eq!(cycles(&d), 0, "the spinner's first step should still run");
    assert_eq!(
        manager.count("WATCHDOG=1"),
        0,
        "pinged while the cycle hung: {:?}",
        manager.seen
    );
    let log = d.log_text();
    assert!(log.contains("withholding the watchdog ping"), "{log}");
    // The daemon is killed when `d` drops: its cycle would not stop before
    // the spin ends, which is what systemd's watchdog handles.
}

/// The scenario's controller configuration with the fault supervisor's step
/// timeout (`faults.step_timeout_ms`, where this build has it) far beyond
/// the test, so the hung step is the watchdog's to notice. A build without
/// that setting refuses the key; then the configuration goes without it.
fn leaving_hangs_to_the_watchdog(s: &Scenario) -> std::path::PathBuf {
    let path = s.tmp.path().join("watchdog.json");
    let mut cfg = serde_json::json!({
        "trusted_keys_dir": s.trust.to_string_lossy(),
        "device": { "machine_id_file": s.machine_id.to_string_lossy() },
        "faults": { "step_timeout_ms": 3_600_000 },
    });
    std::fs::write(&path, cfg.to_string()).unwrap();
    let root = s.controller_root.to_string_lossy().into_owned();
    let probe = run_program(
        "xplugin-controller",
        &["list", "--config", &path.to_string_lossy(), "--root", &root],
    );
    if probe.code != 0 {
        assert!(probe.all().contains("faults"), "{}", probe.all());
        if let Some(m) = cfg.as_object_mut() {
            m.remove("faults");
        }
        std::fs::write(&path, cfg.to_string()).unwrap();
    }
    path
}

#[test]
fn without_notify_socket_the_daemon_runs_and_sends_nothing() {
    let s = installed();
    // A socket nobody names: nothing may reach it.
    let dir = tempfile::tempdir().unwrap();
    let mut manager = Manager::at_path(&dir.path().join("notify.sock"));
    let d = Daemon::start_env(
        &s,
        &s.controller_config,
        &[],
        &[("WATCHDOG_USEC", WATCHDOG_USEC)],
        true,
    );
    manager.collect(Duration::from_millis(500));
    assert_eq!(d.stop(), 0);
    assert!(manager.seen.is_empty(), "{:?}", manager.seen);
}

fn unit_path() -> std::path::PathBuf {
    workspace_root().join("packaging/systemd/xplugin-controller.service")
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(unit_path()).expect("the unit file");
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing on CI: scripts/test installs Debian's systemd"
        );
        eprintln!("SKIPPED: systemd-analyze is not installed (apt-get install systemd); the unit file was not verified");
        return;
    };
    assert!(out.status.success());
    // verify checks that ExecStart's program exists: point it at the built
    // one, the rest of the unit as shipped.
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_path("xplugin-controller");
    let text = unit.replace("/usr/bin/xplugin-controller", &bin.to_string_lossy());
    assert_ne!(text, unit, "ExecStart names /usr/bin/xplugin-controller");
    let copy = dir.path().join("xplugin-controller.service");
    std::fs::write(&copy, text).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let complaints: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("xplugin-controller.service"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}
