//! Fault containment with real processes: C plugins that segfault,
//! `abort()`, `exit(3)` and hang in `init`, `start`, `step` and `stop`. The
//! first boot dies (or the supervisor stops it with its own status), the
//! next boot quarantines exactly that plugin and runs the others,
//! `quarantine clear` loads it again; a plugin crashing at random cycles is
//! quarantined after K crashes; repeated deaths with nothing to blame start
//! safe mode.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;
use xplugin_tests::build::{c_fixture, controller_manifest, plugin_folder, runner_prefix};
use xplugin_tests::daemon::Daemon;
use xplugin_tests::scenario::{Run, Scenario};

/// How a crash ends the process.
#[derive(Debug, Clone, Copy)]
enum How {
    Segv,
    Abort,
    Exit,
    Hang,
}

impl How {
    fn define(self) -> &'static str {
        match self {
            How::Segv => "FIXTURE_CRASH_HOW=1",
            How::Abort => "FIXTURE_CRASH_HOW=2",
            How::Exit => "FIXTURE_CRASH_HOW=3",
            How::Hang => "FIXTURE_CRASH_HOW=4",
        }
    }
}

const STAGES: [&str; 4] = ["init", "start", "step", "stop"];
const HOWS: [How; 4] = [How::Segv, How::Abort, How::Exit, How::Hang];

/// A controller with `crashy` (crashing as asked), `after` (depends on
/// crashy) and `bystander` (unrelated), and a configuration with short
/// timeouts and a step-crash limit of 2.
fn crash_scenario(stage: &str, how: How, extra: &[&str]) -> (Scenario, PathBuf) {
    let s = Scenario::new();
    std::fs::remove_dir_all(s.plugins.join("controller")).unwrap();
    std::fs::remove_dir_all(s.plugins.join("client")).unwrap();
    let controller = s.plugins.join("controller");
    let point = match stage {
        "init" => "FIXTURE_CRASH_INIT".to_string(),
        "start" => "FIXTURE_CRASH_START".to_string(),
        "stop" => "FIXTURE_CRASH_STOP".to_string(),
        _ => "FIXTURE_CRASH_STEP=5".to_string(),
    };
    let mut defines = vec!["FIXTURE_STEP".to_string(), how.define().to_string(), point];
    defines.extend(extra.iter().map(|d| d.to_string()));
    let refs: Vec<&str> = defines.iter().map(String::as_str).collect();
    plugin_folder(
        &controller,
        "crashy",
        &c_fixture("crashy", &refs),
        &controller_manifest("crashy", "0.1.0", &[], None),
    );
    plugin_folder(
        &controller,
        "after",
        &c_fixture("after", &["FIXTURE_STEP"]),
        &controller_manifest("after", "0.1.0", &["crashy"], None),
    );
    plugin_folder(
        &controller,
        "bystander",
        &c_fixture("bystander", &["FIXTURE_STEP"]),
        &controller_manifest("bystander", "0.1.0", &[], None),
    );
    s.license_all();
    s.import(&s.pack("crash"), &[]).ok();
    let cfg = fault_config(&s, 2);
    (s, cfg)
}

/// A configuration with short timeouts, `step_crashes` and a crash-loop
/// limit of 2.
fn fault_config(s: &Scenario, step_crashes: usize) -> PathBuf {
    let cfg = s.tmp.path().join("faults.json");
    let body = serde_json::json!({
        "trusted_keys_dir": s.trust.to_string_lossy(),
        "device": { "machine_id_file": s.machine_id.to_string_lossy() },
        "faults": {
            "step_crashes": step_crashes,
            "crash_loop_limit": 2,
            "init_timeout_s": 1,
            "start_timeout_s": 1,
            "stop_timeout_s": 1,
            "step_timeout_ms": 300
        }
    });
    std::fs::write(&cfg, serde_json::to_vec_pretty(&body).unwrap()).unwrap();
    cfg
}

fn boot(s: &Scenario, cfg: &std::path::Path) -> (std::process::ExitStatus, Run) {
    let out =
        xplugin_tests::build::target_command(&xplugin_tests::build::bin_path("xplugin-controller"))
            .args([
                "boot",
                "--controller-version",
                "2.1.0",
                "--cycles",
                "30",
                "--cycle-us",
                "1000",
                "--json",
            ])
            .arg("--config")
            .arg(cfg)
            .arg("--root")
            .arg(&s.controller_root)
            .output()
            .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (out.status, run)
}

fn expect_death(how: How, status: std::process::ExitStatus, run: &Run, what: &str) {
    let ok = match how {
        How::Segv => status.signal() == Some(nix::libc::SIGSEGV),
        How::Abort => status.signal() == Some(nix::libc::SIGABRT),
        How::Exit => status.code() == Some(3),
        How::Hang => status.code() == Some(4),
    };
    assert!(
        ok,
        "{what}: expected a {how:?} end, got {status}\n{}",
        run.all()
    );
}

fn states(run: &Run) -> Vec<(String, String)> {
    xplugin_tests::daemon::plugin_states(&run.json())
}

fn state_of(run: &Run, name: &str) -> String {
    states(run)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

/// The combinations to run: all natively, a seeded few under emulation.
fn combinations() -> Vec<(&'static str, How)> {
    let all: Vec<(&'static str, How)> = STAGES
        .iter()
        .flat_map(|s| HOWS.iter().map(move |h| (*s, *h)))
        .collect();
    if runner_prefix().is_empty() {
        all
    } else {
        // One per stage and one per way of dying.
        vec![
            ("init", How::Segv),
            ("start", How::Exit),
            ("step", How::Abort),
            ("stop", How::Hang),
        ]
    }
}

#[test]
fn a_plugin_that_crashes_or_hangs_is_quarantined_and_the_others_run() {
    let mut covered = Vec::new();
    for (stage, how) in combinations() {
        let what = format!("{how:?} in {stage}");
        let (s, cfg) = crash_scenario(stage, how, &[]);
        // A crash in step quarantines after 2 crashes (the configured K);
        // every other stage, and any hang, at once.
        let deaths = if stage == "step" && !matches!(how, How::Hang) {
            2
        } else {
            1
        };
        for n in 0..deaths {
            let (status, run) = boot(&s, &cfg);
            expect_death(how, status, &run, &format!("{what}, death {}", n + 1));
        }
        let (status, run) = boot(&s, &cfg);
        assert_eq!(
            status.code(),
            Some(2),
            "{what}: the boot after must run the others\n{}",
            run.all()
        );
        assert_eq!(
            state_of(&run, "crashy"),
            "quarantined",
            "{what}: {:?}",
            states(&run)
        );
        assert_eq!(
            state_of(&run, "after"),
            "blocked",
            "{what}: {:?}",
            states(&run)
        );
        assert_eq!(
            state_of(&run, "bystander"),
            "stopped",
            "{what}: {:?}",
            states(&run)
        );
        let v = run.json();
        let q = &v["quarantine"]["crashy"];
        assert_eq!(q["stage"], stage, "{what}: {q}");
        let evidence = q["how"].as_str().unwrap_or("");
        let expected = match how {
            How::Segv => "SIGSEGV",
            How::Abort => "SIGABRT",
            How::Exit => "exit()",
            How::Hang => "hung",
        };
        assert!(evidence.contains(expected), "{what}: {q}");
        assert!(
            v["previous_end"].as_str().unwrap_or("").contains("crashy"),
            "{what}: {v}"
        );
        // Listed; cleared, it loads again (and dies again).
        let list = s.controller(&["quarantine", "list", "--json"]).ok().json();
        assert!(list["quarantine"]["crashy"].is_object(), "{what}: {list}");
        s.controller(&["quarantine", "clear", "crashy"]).ok();
        let (status, run) = boot(&s, &cfg);
        expect_death(how, status, &run, &format!("{what}, after clear"));
        covered.push(what);
    }
    eprintln!("quarantined after: {}", covered.join(", "));
}

#[test]
fn a_crash_in_plugin_code_reached_through_another_plugin_is_blamed_on_the_code() {
    // `caller` calls `provider`'s service in every step; the provider's
    // service function segfaults on its 5th call. The call in progress is
    // caller's step; the faulting instruction is in provider's library.
    let s = Scenario::new();
    std::fs::remove_dir_all(s.plugins.join("controller")).unwrap();
    std::fs::remove_dir_all(s.plugins.join("client")).unwrap();
    let controller = s.plugins.join("controller");
    plugin_folder(
        &controller,
        "provider",
        &c_fixture(
            "provider",
            &[
                "FIXTURE_REGISTER_SERVICE=\"poke.svc\"",
                "FIXTURE_SERVICE_CRASHES",
                How::Segv.define(),
            ],
        ),
        &controller_manifest("provider", "0.1.0", &[], None),
    );
    plugin_folder(
        &controller,
        "caller",
        &c_fixture(
            "caller",
            &[
                "FIXTURE_REQUIRE_SERVICE=\"poke.svc\"",
                "FIXTURE_STEP",
                "FIXTURE_STEP_POKES",
            ],
        ),
        &controller_manifest("caller", "0.1.0", &["provider"], None),
    );
    s.license_all();
    s.import(&s.pack("blame"), &[]).ok();
    let cfg = fault_config(&s, 1);
    let (status, run) = boot(&s, &cfg);
    expect_death(How::Segv, status, &run, "segv in the provider's service");
    let (_, run) = boot(&s, &cfg);
    let v = run.json();
    assert_eq!(state_of(&run, "provider"), "quarantined", "{v}");
    assert_eq!(state_of(&run, "caller"), "blocked", "{v}");
    let q = &v["quarantine"]["provider"];
    assert!(
        q["pc"].as_str().unwrap_or("").contains("address 0x0"),
        "{q}"
    );
    assert!(
        v["quarantine"]["caller"].is_null(),
        "the caller is not to blame: {v}"
    );
}

#[test]
fn a_plugin_crashing_at_random_cycles_is_quarantined_after_k_crashes() {
    let (s, cfg) = crash_scenario("step", How::Abort, &["FIXTURE_CRASH_RANDOM"]);
    let mut deaths = 0;
    for _ in 0..5 {
        let (status, run) = boot(&s, &cfg);
        if status.signal() == Some(nix::libc::SIGABRT) {
            deaths += 1;
            continue;
        }
        assert_eq!(state_of(&run, "crashy"), "quarantined", "{}", run.all());
        break;
    }
    assert_eq!(deaths, 2, "quarantined after the configured 2 crashes");
}

#[test]
fn a_daemon_dying_repeatedly_with_nothing_to_blame_boots_in_safe_mode() {
    let (s, cfg) = crash_scenario("init", How::Segv, &[]);
    // Nothing crashes here: kill the daemon from outside while it cycles.
    s.controller(&["disable", "crashy"]).ok();
    for _ in 0..2 {
        let d = Daemon::start_with(&s, &cfg, &[]);
        let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = d.wait_exit(Duration::from_secs(30));
    }
    let d = Daemon::start_with(&s, &cfg, &[]);
    let status = d.status().ok().json();
    assert!(
        status["safe_mode"]
            .as_str()
            .unwrap_or("")
            .contains("without a plugin to blame"),
        "{status}"
    );
    assert!(
        status["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] != "running"),
        "{status}"
    );
    d.cli(&["quarantine", "clear", "--all"]).ok();
    assert_eq!(d.stop(), 0);
    let d = Daemon::start_with(&s, &cfg, &[]);
    let status = d.status().ok().json();
    assert!(status["safe_mode"].is_null(), "{status}");
    assert_eq!(d.stop(), 0);
}

#[test]
fn diagnostics_holds_the_crash_record_quarantine_and_logs() {
    let (s, cfg) = crash_scenario("start", How::Abort, &[]);
    let (status, run) = boot(&s, &cfg);
    expect_death(How::Abort, status, &run, "abort in start");
    let (_, _) = boot(&s, &cfg);
    let d = Daemon::start_with(&s, &cfg, &[]);
    let out = s.tmp.path().join("diag.zip");
    d.cli(&["diagnostics", "-o", out.to_str().unwrap()]).ok();
    let file = std::fs::File::open(&out).unwrap();
    let mut zip = zip_reader(file);
    let names: Vec<String> = zip
        .file_names()
        .filter_map(Result::ok)
        .map(|n| n.into_owned())
        .collect();
    for want in [
        "versions.json",
        "config.json",
        "status.json",
        "last-run.json",
        "quarantine.json",
        "timing.json",
        "log/controller.log",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    let read = |zip: &mut zip::ZipArchive<std::fs::File>, name: &str| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut zip.by_name(name).unwrap(), &mut text).unwrap();
        text
    };
    let q = read(&mut zip, "quarantine.json");
    assert!(q.contains("crashy") && q.contains("SIGABRT"), "{q}");
    let status = read(&mut zip, "status.json");
    assert!(status.contains("quarantined"), "{status}");
    assert_eq!(d.stop(), 0);
}

fn zip_reader(file: std::fs::File) -> zip::ZipArchive<std::fs::File> {
    zip::ZipArchive::new(file).unwrap()
}

/// The journal header's offsets this test reads and writes (see
/// `xplugin-host/src/journal.rs`): the kernel boot id and the flag that
/// says lifecycle calls were not made durable.
const JOURNAL_BOOT_ID: std::ops::Range<usize> = 24..40;
const JOURNAL_LAZY_CALLS: usize = 56;

/// Starts a guarded boot whose `crashy` hangs in `init` (no supervisor
/// timeout soon), waits until the journal shows the call, kills the process
/// with SIGKILL and pretends the machine went down with it: the journal's
/// boot id is replaced by another kernel's. Returns the journal's "lazy
/// calls" flag as the killed run left it.
fn lose_the_machine_during_init(s: &Scenario, cfg: &std::path::Path) -> u32 {
    let journal = s.controller_root.join("state/journal");
    let mut child =
        xplugin_tests::build::target_command(&xplugin_tests::build::bin_path("xplugin-controller"))
            .args(["boot", "--controller-version", "2.1.0", "--config"])
            .arg(cfg)
            .arg("--root")
            .arg(&s.controller_root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    // The slot of the main thread says "init" once the plugin hangs in it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let in_init = loop {
        let inside = std::fs::read(&journal)
            .ok()
            .filter(|b| b.len() > 256 + 256 * 64 + 12 && b[24..40] == own_boot_id());
        if let Some(b) = inside {
            // Header 256, names 256 x 64, main slot first: active, plugin, stage.
            let slot = 256 + 256 * 64;
            let active = u32::from_le_bytes(b[slot..slot + 4].try_into().unwrap());
            let plugin = u32::from_le_bytes(b[slot + 4..slot + 8].try_into().unwrap()) as usize;
            let stage = u32::from_le_bytes(b[slot + 8..slot + 12].try_into().unwrap());
            // `bystander` is initialised before `crashy` (name order): on a
            // slow machine (qemu) the poll can see its init too, so the slot
            // must name crashy.
            let name = b.get(256 + plugin * 64..256 + plugin * 64 + 7);
            if active == 1 && stage == 1 && name == Some(&b"crashy\0"[..]) {
                break true;
            }
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(in_init, "the boot never entered crashy's init");
    let mut b = std::fs::read(&journal).unwrap();
    b[JOURNAL_BOOT_ID].copy_from_slice(&[0xab; 16]);
    std::fs::write(&journal, &b).unwrap();
    u32::from_le_bytes(
        b[JOURNAL_LAZY_CALLS..JOURNAL_LAZY_CALLS + 4]
            .try_into()
            .unwrap(),
    )
}

fn own_boot_id() -> Vec<u8> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_machine_lost_during_boot_makes_the_next_boot_record_each_call_and_a_repeat_is_blamed() {
    let (s, _) = crash_scenario("init", How::Hang, &[]);
    let cfg = s.tmp.path().join("slow-faults.json");
    let body = serde_json::json!({
        "trusted_keys_dir": s.trust.to_string_lossy(),
        "device": { "machine_id_file": s.machine_id.to_string_lossy() },
        "faults": { "init_timeout_s": 600 }
    });
    std::fs::write(&cfg, serde_json::to_vec_pretty(&body).unwrap()).unwrap();

    // A normal boot does not make each call durable, so after the machine
    // is lost its slots prove nothing: no plugin is blamed, and the next
    // boot records each call.
    assert_eq!(
        lose_the_machine_during_init(&s, &cfg),
        1,
        "a normal run is lazy"
    );
    let careful = lose_the_machine_during_init(&s, &cfg);
    assert_eq!(
        careful, 0,
        "the boot after an unexplained loss makes every lifecycle call durable"
    );
    let list = s.controller(&["quarantine", "list", "--json"]).ok().json();
    assert!(
        list["quarantine"].as_object().unwrap().is_empty(),
        "the first loss blames nobody: {list}"
    );
    // The careful run's record is durable: the repeat names the plugin.
    let (_, run) = boot(&s, &cfg);
    assert_eq!(state_of(&run, "crashy"), "quarantined", "{}", run.all());
    assert_eq!(state_of(&run, "bystander"), "stopped", "{}", run.all());
    assert!(
        run.stderr.contains("ended in plugin \"crashy\" init"),
        "{}",
        run.all()
    );
}

/// The journal comes up beside the manifest reading, before the data
/// directories are made: a boot refused there (a file where plugindemo's data
/// directory belongs) ran no plugin, and must leave the journal saying so, or
/// the next boot would report an unclean end and look for someone to blame.
#[test]
fn a_boot_refused_before_any_plugin_ran_leaves_a_clean_journal() {
    let s = Scenario::new();
    s.license_all();
    s.import(&s.pack("clean"), &[]).ok();
    s.boot().ok();
    let data = s.controller_root.join("data").join("plugindemo");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::write(&data, b"not a directory").unwrap();
    let refused = s.boot();
    assert_ne!(
        refused.code,
        0,
        "a boot without plugindemo's data directory must be refused\n{}",
        refused.all()
    );
    assert!(
        refused.all().contains("plugindemo"),
        "the refusal names the plugin\n{}",
        refused.all()
    );
    std::fs::remove_file(&data).unwrap();
    let next = s.boot().ok();
    let v = next.json();
    assert!(
        v["previous_end"].is_null(),
        "the refused boot ran no plugin, yet the next boot reports: {}",
        v["previous_end"]
    );
    assert!(
        v["quarantine"].as_object().is_none_or(|q| q.is_empty()),
        "{v}"
    );
}
