//! The controller daemon (`xplugin-controller run`) and its admin socket,
//! with real processes: status, admin commands through the socket,
//! install transactions (prepare, commit, abort, a second preparer, the
//! timeout), applying (`now`, `when-idle` with a busy plugin), access
//! control, and SIGKILL at every named durability boundary of an install,
//! each ending with the old or the new installation.

use std::path::PathBuf;
use std::time::Duration;
use xplugin_tests::build::c_fixture;
use xplugin_tests::daemon::Daemon;
use xplugin_tests::link::seeded;
use xplugin_tests::problems::codes;
use xplugin_tests::scenario::{run_program, Run, Scenario, TEST_FAULTS};

/// A controller configuration for `s` with `extra` keys.
fn config_with(s: &Scenario, name: &str, extra: serde_json::Value) -> PathBuf {
    let mut cfg = serde_json::json!({
        "trusted_keys_dir": s.trust.to_string_lossy(),
        "device": { "machine_id_file": s.machine_id.to_string_lossy() },
        "faults": serde_json::from_str::<serde_json::Value>(TEST_FAULTS).unwrap(),
    });
    if let (Some(m), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            match (m.get_mut(k), v) {
                // faults: the test's settings over the scenario's.
                (Some(serde_json::Value::Object(base)), serde_json::Value::Object(more)) => {
                    base.extend(more.clone());
                }
                _ => {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
    }
    let path = s.tmp.path().join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    path
}

/// A scenario with generation 1 installed on the controller (and pendant).
fn installed() -> Scenario {
    let s = Scenario::new();
    s.license_all();
    s.import(&s.pack("v1"), &[]).ok();
    s
}

fn running(d: &Daemon) -> (Option<u64>, Vec<(String, String)>) {
    d.running()
}

#[test]
fn the_daemon_serves_status_and_list_refuses_direct_writes_and_stops_on_sigterm() {
    let s = installed();
    let d = Daemon::start(&s, &[]);
    let (generation, plugins) = running(&d);
    assert_eq!(generation, Some(1));
    assert!(
        plugins.iter().all(|(_, state)| state == "running"),
        "{plugins:?}"
    );
    let status = d.status().ok().json();
    assert!(status["timing"]["cycles"].as_u64().is_some(), "{status}");
    assert_eq!(status["generation"]["committed"].as_u64(), Some(1));
    // Through the socket, in the same words as without a daemon.
    let list = d.cli(&["list"]).ok();
    assert!(list.stdout.contains("motionlog"), "{}", list.all());
    // Loading the root a second time, or a second daemon, is refused.
    let boot = s.controller(&["boot", "--controller-version", "2.1.0", "--json"]);
    assert_eq!(boot.code, 1, "{}", boot.all());
    assert_eq!(codes(&boot), ["daemon.running"], "{}", boot.all());
    let second = d.cli(&["run", "--controller-version", "2.1.0"]);
    assert_ne!(second.code, 0, "{}", second.all());
    assert!(
        second.stderr.contains("another xplugin-controller daemon"),
        "{}",
        second.all()
    );
    let socket = d.socket.clone();
    assert_eq!(d.stop(), 0, "SIGTERM must exit 0");
    // No daemon: status fails clearly.
    let r = run_program(
        "xplugin-controller",
        &[
            "status",
            "--json",
            "--admin-socket",
            socket.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(codes(&r), ["daemon.not_running"], "{}", r.all());
    // Without a daemon the admin commands act on the root again.
    s.controller(&["disable", "motionlog"]).ok();
}

#[test]
fn an_install_through_the_daemon_is_applied_now_and_reported_back() {
    let s = installed();
    let d = Daemon::start(&s, &[]);
    let pid = d.pid();
    let pkg = s.pack("v2");
    let r = d.cli(&[
        "install",
        pkg.to_str().unwrap(),
        "--force",
        "--apply",
        "now",
        "--json",
    ]);
    let v = r.json();
    assert_eq!(r.code, 0, "{}\n{}", r.all(), d.log_text());
    assert_eq!(v["state"], "committed", "{v}");
    assert_eq!(
        v["applied"]["generation"]["running"].as_u64(),
        Some(2),
        "{v}"
    );
    assert_eq!(
        v["applied"]["pid"].as_u64(),
        Some(u64::from(pid)),
        "re-executed in place"
    );
    let (generation, plugins) = running(&d);
    assert_eq!(generation, Some(2));
    assert!(plugins.iter().all(|(_, st)| st == "running"), "{plugins:?}");
    assert_eq!(d.stop(), 0);
}

#[test]
fn prepared_transactions_are_committed_aborted_and_exclusive() {
    let s = installed();
    let d = Daemon::start(&s, &[]);
    let pkg = s.pack("v2");
    let p = pkg.to_str().unwrap();
    let prepared = d
        .cli(&["install", p, "--force", "--prepare", "--json"])
        .ok()
        .json();
    let id = prepared["transaction"].as_str().unwrap().to_string();
    assert_eq!(prepared["state"], "prepared", "{prepared}");
    // A second preparer is refused, naming who holds the open one.
    let second = d.cli(&["install", p, "--force", "--prepare", "--json"]);
    assert_eq!(second.code, 1, "{}", second.all());
    assert_eq!(
        codes(&second),
        ["store.transaction_open"],
        "{}",
        second.all()
    );
    assert!(
        second.stderr.contains(&id) && second.stderr.contains("admin"),
        "{}",
        second.all()
    );
    let status = d.status().ok().json();
    assert_eq!(
        status["generation"]["prepared"]["id"].as_str(),
        Some(id.as_str())
    );
    // Abort it; nothing changed.
    let aborted = d.cli(&["abort", &id, "--json"]).ok().json();
    assert_eq!(aborted["state"], "aborted", "{aborted}");
    assert_eq!(running(&d).0, Some(1));
    let again = d.cli(&["commit", &id, "--json"]);
    assert_eq!(
        codes(&again),
        ["store.transaction_decided"],
        "{}",
        again.all()
    );
    // Prepare again and commit for the next boot.
    let id = d
        .cli(&["install", p, "--force", "--prepare", "--json"])
        .ok()
        .json()["transaction"]
        .as_str()
        .unwrap()
        .to_string();
    let committed = d
        .cli(&["commit", &id, "--apply", "next-boot", "--json"])
        .ok()
        .json();
    assert_eq!(committed["state"], "committed", "{committed}");
    assert_eq!(committed["apply"]["state"], "next-boot", "{committed}");
    let status = d.status().ok().json();
    assert_eq!(status["generation"]["running"].as_u64(), Some(1));
    assert_eq!(status["generation"]["committed"].as_u64(), Some(2));
    assert_eq!(status["generation"]["pending_apply"], true);
    assert_eq!(d.stop(), 0);
    // The next start boots it.
    let d = Daemon::start(&s, &[]);
    assert_eq!(running(&d).0, Some(2));
    assert_eq!(d.stop(), 0);
}

#[test]
fn an_undecided_transaction_is_aborted_after_its_timeout() {
    let s = installed();
    let cfg = config_with(
        &s,
        "short.json",
        serde_json::json!({ "transaction_timeout_s": 1 }),
    );
    let d = Daemon::start_with(&s, &cfg, &[]);
    let pkg = s.pack("v2");
    let id = d
        .cli(&[
            "install",
            pkg.to_str().unwrap(),
            "--force",
            "--prepare",
            "--json",
        ])
        .ok()
        .json()["transaction"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(2500));
    let late = d.cli(&["commit", &id, "--json"]);
    assert_eq!(late.code, 1, "{}", late.all());
    assert_eq!(
        codes(&late),
        ["store.transaction_decided"],
        "{}",
        late.all()
    );
    assert!(late.stderr.contains("deadline"), "{}", late.all());
    assert_eq!(running(&d).0, Some(1));
    assert_eq!(d.stop(), 0);
}

/// A controller plugin that holds the controller busy (`set_busy`) until
/// `clears_after` steps (never, for `None`).
fn add_busy_plugin(s: &Scenario, clears_after: Option<u64>) {
    let mut defines = vec!["FIXTURE_BUSY".to_string(), "FIXTURE_STEP".to_string()];
    if let Some(n) = clears_after {
        defines.push(format!("FIXTURE_BUSY_STEPS={n}"));
    }
    let refs: Vec<&str> = defines.iter().map(String::as_str).collect();
    s.add_controller_fixture("busy", &c_fixture("busy", &refs), "0.1.0", &[]);
}

#[test]
fn when_idle_gives_up_naming_the_plugin_that_held_the_controller_busy() {
    let s = Scenario::new();
    add_busy_plugin(&s, None);
    s.license_all();
    s.import(&s.pack("v1"), &[]).ok();
    let cfg = config_with(&s, "idle.json", serde_json::json!({ "apply_timeout_s": 2 }));
    let d = Daemon::start_with(&s, &cfg, &[]);
    let pkg = s.pack("v2");
    let r = d.cli(&[
        "install",
        pkg.to_str().unwrap(),
        "--force",
        "--apply",
        "when-idle",
        "--json",
    ]);
    assert_eq!(r.code, 1, "{}\n{}", r.all(), d.log_text());
    assert_eq!(codes(&r), ["daemon.apply_timeout"], "{}", r.all());
    assert!(r.stdout.contains("busy"), "{}", r.all());
    let status = d.status().ok().json();
    assert_eq!(status["generation"]["running"].as_u64(), Some(1));
    assert_eq!(status["generation"]["pending_apply"], true);
    assert!(
        status["apply"]["last_failure"]
            .as_str()
            .unwrap_or("")
            .contains("busy"),
        "{status}"
    );
    // `now` does not wait for it.
    let r = d.cli(&["rollback", "--apply", "now", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(d.stop(), 0);
}

#[test]
fn when_idle_applies_once_the_busy_plugin_is_done() {
    let s = Scenario::new();
    // 2 ms cycles: busy for about half a second after each start.
    add_busy_plugin(&s, Some(250));
    s.license_all();
    s.import(&s.pack("v1"), &[]).ok();
    let d = Daemon::start(&s, &[]);
    let pkg = s.pack("v2");
    let r = d.cli(&[
        "install",
        pkg.to_str().unwrap(),
        "--force",
        "--apply",
        "when-idle",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.all(), d.log_text());
    assert_eq!(
        r.json()["applied"]["generation"]["running"].as_u64(),
        Some(2)
    );
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_caller_without_admin_rights_may_read_but_not_change() {
    let s = installed();
    // A directory nobody (uid 65534) can traverse, for the socket and a
    // copy of the configuration.
    let open = tempfile::Builder::new()
        .prefix("xplugin-socket")
        .tempdir()
        .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cfg = config_with(
        &s,
        "access.json",
        serde_json::json!({ "admin_group": "65534" }),
    );
    let public_cfg = open.path().join("controller.json");
    std::fs::copy(&cfg, &public_cfg).unwrap();
    let socket = open.path().join("admin.sock");
    let log = s.tmp.path().join("access.log");
    let mut child = Daemon::spawn(&s, &cfg, &socket, &log, &[], &[]);
    let as_nobody = |args: &[&str]| {
        use std::os::unix::process::CommandExt;
        let mut cmd = xplugin_tests::build::target_command(&xplugin_tests::build::bin_path(
            "xplugin-controller",
        ));
        cmd.args(args)
            .arg("--config")
            .arg(&public_cfg)
            .arg("--admin-socket")
            .arg(&socket)
            .arg("--root")
            .arg(&s.controller_root)
            .uid(65534)
            .gid(65534);
        let out = cmd.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let start = std::time::Instant::now();
    loop {
        let r = as_nobody(&["status", "--json"]);
        if r.code == 0 {
            break;
        }
        assert!(
            start.elapsed() < xplugin_tests::daemon::ready_timeout(),
            "{}\n{}",
            r.all(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = as_nobody(&["disable", "motionlog", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(codes(&r), ["daemon.access_denied"], "{}", r.all());
    assert!(r.stderr.contains("uid 65534"), "{}", r.all());
    let _ = child.kill();
    let _ = child.wait();
}

/// The transaction ids in the controller root.
fn transaction_ids(s: &Scenario) -> Vec<String> {
    std::fs::read_dir(s.controller_root.join("transactions"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Where a kill leaves the controller, after the next start's recovery;
/// `before` are the transactions that existed before the killed install.
fn outcome_after_recovery(s: &Scenario, before: &[String]) -> u64 {
    let d = Daemon::start(s, &[]);
    let (generation, plugins) = running(&d);
    // Every installed file re-verified against its license at boot: a mix
    // of old and new files cannot run.
    assert!(
        plugins.iter().all(|(_, st)| st == "running"),
        "after recovery: {plugins:?}\n{}",
        d.log_text()
    );
    // The killed install's transaction is decided, and agrees with what runs.
    for id in transaction_ids(s)
        .into_iter()
        .filter(|id| !before.contains(id))
    {
        let dir = s.controller_root.join("transactions").join(&id);
        let record = std::fs::read_to_string(dir.join("record.json")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&record).unwrap_or_default();
        let state = v["state"].as_str().unwrap_or("");
        assert!(
            matches!(state, "committed" | "aborted"),
            "transaction left {state}: {record}"
        );
        if state == "committed" {
            assert_eq!(v["new_generation"].as_u64(), generation, "{record}");
        }
        assert!(
            !dir.join("staged").exists(),
            "staged files left in {}",
            dir.display()
        );
    }
    assert_eq!(d.stop(), 0);
    generation.unwrap_or(0)
}

/// The named durability boundaries of an install: the transaction's own
/// and the commit's.
fn install_boundaries() -> Vec<&'static str> {
    xplugin_store::failpoint::FAILPOINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("txn-") || p.starts_with("commit-"))
        .collect()
}

#[test]
fn killing_the_daemon_at_every_install_boundary_leaves_old_or_new() {
    let s = installed();
    // Every point kills the daemon: many unclean stops in a row, which the
    // crash-loop guard would (rightly) answer with safe mode.
    config_with(
        &s,
        "controller.json",
        serde_json::json!({ "faults": { "crash_loop_limit": 1000 } }),
    );
    let pkg = s.pack("v2");
    let points = seeded(install_boundaries(), 6, 0x5eed_0001);
    let (mut old, mut new) = (0, 0);
    for point in &points {
        let before = transaction_ids(&s);
        let d = Daemon::start_env(
            &s,
            &s.controller_config,
            &[],
            &[("XPLUGIN_FAILPOINT", point)],
            true,
        );
        let r = d.cli(&[
            "install",
            pkg.to_str().unwrap(),
            "--force",
            "--apply",
            "next-boot",
        ]);
        let exit = d.wait_exit(Duration::from_secs(120));
        assert!(
            exit.code().is_none(),
            "{point}: the daemon was not killed ({exit}): {}",
            r.all()
        );
        match outcome_after_recovery(&s, &before) {
            1 => old += 1,
            _ => new += 1,
        }
        // Back to generation 1 for the next point (the outcome was checked).
        let current = std::fs::read_link(s.controller_root.join("current")).unwrap();
        if current.ends_with("1") {
            continue;
        }
        s.controller(&["rollback"]).ok();
    }
    eprintln!(
        "daemon killed at {} boundaries ({}): {old} old, {new} new",
        points.len(),
        points.join(", ")
    );
    assert!(
        old > 0 && (new > 0 || points.len() < 4),
        "old {old}, new {new}"
    );
}

#[test]
fn killing_the_installing_command_at_every_boundary_leaves_old_or_new() {
    let s = installed();
    let pkg = s.pack("v2");
    let points = seeded(install_boundaries(), 14, 0x5eed_0002);
    let (mut old, mut new) = (0, 0);
    for point in &points {
        // No daemon: the command does the install itself.
        let r = xplugin_tests::build::target_command(&xplugin_tests::build::bin_path(
            "xplugin-controller",
        ))
        .env("XPLUGIN_FAILPOINT", point)
        .args([
            "install",
            pkg.to_str().unwrap(),
            "--force",
            "--controller-version",
            "2.1.0",
        ])
        .arg("--root")
        .arg(&s.controller_root)
        .arg("--config")
        .arg(&s.controller_config)
        .output()
        .unwrap();
        assert!(
            r.status.code().is_none(),
            "{point}: not killed: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        // Recovery and re-verification by the next boot.
        let boot = s.boot();
        let v = boot.json();
        assert_eq!(boot.code, 0, "{point}: {}", boot.all());
        match v["generation"].as_u64() {
            Some(1) => old += 1,
            Some(2) => {
                new += 1;
                s.controller(&["rollback"]).ok();
            }
            other => panic!("{point}: generation {other:?}"),
        }
    }
    eprintln!(
        "installing command killed at {} boundaries: {old} old, {new} new",
        points.len()
    );
    assert!(
        old > 0 && (new > 0 || points.len() < 4),
        "old {old}, new {new}"
    );
}

#[test]
fn a_pendant_that_drops_its_install_request_does_not_break_it() {
    // The installing command dies after handing the package over: the
    // daemon finishes the install on its own.
    let s = installed();
    let d = Daemon::start(&s, &[]);
    let pkg = s.pack("v2");
    let mut child =
        xplugin_tests::build::target_command(&xplugin_tests::build::bin_path("xplugin-controller"))
            .args([
                "install",
                pkg.to_str().unwrap(),
                "--force",
                "--apply",
                "next-boot",
            ])
            .arg("--root")
            .arg(&s.controller_root)
            .arg("--config")
            .arg(&s.controller_config)
            .arg("--admin-socket")
            .arg(&d.socket)
            .spawn()
            .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    // Wait for the daemon's install to finish, then for its outcome.
    let start = std::time::Instant::now();
    loop {
        let st = d.status().ok().json();
        if st["generation"]["committed"].as_u64() == Some(2) {
            break;
        }
        if st["generation"]["prepared"].is_null() && start.elapsed() > Duration::from_secs(5) {
            // The kill came before the request was sent: nothing happened.
            assert_eq!(st["generation"]["committed"].as_u64(), Some(1), "{st}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.stop(), 0);
}

#[test]
fn what_a_root_command_writes_belongs_to_the_root_s_owner() {
    use std::os::unix::fs::MetadataExt;
    let s = installed();
    // The install root belongs to the daemon's user (here: nobody).
    fn chown_all(p: &std::path::Path) {
        std::os::unix::fs::lchown(p, Some(65534), Some(65534)).unwrap();
        if std::fs::symlink_metadata(p).unwrap().is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                chown_all(&e.unwrap().path());
            }
        }
    }
    chown_all(&s.controller_root);
    // Root installs and prepares without a daemon.
    let pkg = s.pack("v2");
    s.controller(&[
        "install",
        pkg.to_str().unwrap(),
        "--force",
        "--controller-version",
        "2.1.0",
    ])
    .ok();
    s.controller(&[
        "install",
        pkg.to_str().unwrap(),
        "--force",
        "--prepare",
        "--controller-version",
        "2.1.0",
    ])
    .ok();
    let mut foreign = Vec::new();
    fn walk(p: &std::path::Path, out: &mut Vec<String>) {
        let m = std::fs::symlink_metadata(p).unwrap();
        if m.uid() != 65534 {
            out.push(format!("{} (uid {})", p.display(), m.uid()));
        }
        if m.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), out);
            }
        }
    }
    walk(&s.controller_root, &mut foreign);
    assert!(
        foreign.is_empty(),
        "files not given to the root's owner: {foreign:#?}"
    );
}
