//! End to end through the three programs: license, pack, import, boot, run,
//! and the refusals an integrator meets. Real example plugins, real keys.

use xplugin_tests::build::{c_fixture, cdylib_path};
use xplugin_tests::problems::problems_with;
use xplugin_tests::scenario::Scenario;

fn plugin<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["plugins"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in {report:#}"))
}

#[test]
fn import_then_boot_then_run_the_examples() {
    let s = Scenario::new();
    s.license_all();
    let pkg = s.pack("plugindemo");
    let r = s.import(&pkg, &["--json"]).ok();
    let report = r.json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["committed"], true);
    assert_eq!(
        report["controller"]["load_order"],
        serde_json::json!(["plugindemo", "motionlog"])
    );
    assert_eq!(
        report["client"]["load_order"],
        serde_json::json!(["uikit", "plugindemo"])
    );

    let boot = s.boot().ok().json();
    assert_eq!(
        boot["load_order"],
        serde_json::json!(["plugindemo", "motionlog"])
    );
    assert_eq!(
        boot["stop_order"],
        serde_json::json!(["motionlog", "plugindemo"])
    );
    for name in ["plugindemo", "motionlog"] {
        let p = plugin(&boot, name);
        assert_eq!(p["state"], "stopped", "{boot:#}");
        assert_eq!(p["license"]["status"], "verified", "{boot:#}");
    }

    let croot = s.controller_root.to_string_lossy().into_owned();
    let run = s
        .client(&[
            "run",
            "--hmi-version",
            "3.0.2",
            "--controller-root",
            &croot,
            "--idle",
            "3",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(
        run["load_order"],
        serde_json::json!(["uikit", "plugindemo"])
    );
    assert_eq!(plugin(&run, "plugindemo")["state"], "stopped", "{run:#}");
    // The vendor's client stages, each reported: init, after-init, render
    // (plugindemo has one; uikit does not), idle rounds, detach.
    let stages = |name: &str| -> Vec<(String, u64, bool)> {
        plugin(&run, name)["stages"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no stages in {run:#}"))
            .iter()
            .map(|s| {
                (
                    s["vendor_stage"].as_str().unwrap_or("?").to_string(),
                    s["calls"].as_u64().unwrap_or(0),
                    s["provided"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    };
    let staged = |v: &[(&str, u64, bool)]| -> Vec<(String, u64, bool)> {
        v.iter().map(|(s, n, p)| (s.to_string(), *n, *p)).collect()
    };
    assert_eq!(
        stages("plugindemo"),
        staged(&[
            ("init", 1, true),
            ("after-init", 1, true),
            ("render", 1, true),
            ("idle", 3, true),
            ("detach", 1, true),
            ("detach", 1, true),
        ]),
        "{run:#}"
    );
    assert_eq!(
        stages("uikit")[2],
        ("render".to_string(), 0, false),
        "{run:#}"
    );
    let text = s
        .client(&["run", "--hmi-version", "3.0.2", "--controller-root", &croot])
        .ok()
        .stdout;
    assert!(
        text.contains("stages: init ok, after-init ok, render ok, idle ok, detach (stop) ok, detach (destroy) ok"),
        "{text}"
    );

    // Listing shows both plugins, enabled.
    let list = s.client(&["list", "--json"]).ok().json();
    assert_eq!(
        list["plugins"].as_array().map(Vec::len),
        Some(2),
        "{list:#}"
    );
}

#[test]
fn an_unlicensed_package_is_refused_and_changes_nothing() {
    let s = Scenario::new();
    s.license_all();
    s.import(&s.pack("good"), &[]).ok();
    let before = s.roots_digest();
    // A plugin without a valid license: remove one .lic, pack anyway by
    // writing an invalid one (pack refuses folders without NAME.lic).
    let lic = s.folder("controller", "motionlog").join("motionlog.lic");
    std::fs::write(&lic, "not a license\n").unwrap();
    let bad = s.pack("bad");
    let r = s.import(&bad, &["--force"]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("controller plugin \"motionlog\""),
        "{}",
        r.all()
    );
    // Nothing changes, so no load order is shown: it would list motionlog.
    assert!(!r.stdout.contains("load order"), "{}", r.all());
    let r = s.import(&bad, &["--force", "--json"]);
    assert_ne!(r.code, 0, "{}", r.all());
    let report = r.json();
    let malformed = problems_with(&report, "license.malformed");
    assert_eq!(malformed.len(), 1, "{report:#}");
    assert_eq!(malformed[0]["subject"], "controller plugin \"motionlog\"");
    assert_eq!(malformed[0]["field"], "license");
    assert!(!malformed[0]["hint"].as_str().unwrap_or("").is_empty());
    assert_eq!(report["controller"]["load_order"], serde_json::json!([]));
    assert_eq!(
        s.roots_digest(),
        before,
        "a refused import changed the install roots"
    );
}

#[test]
fn an_elf_helper_outside_the_license_is_refused_at_import_and_a_swapped_one_too() {
    let s = Scenario::new();
    s.license_all();
    s.import(&s.pack("good"), &[]).ok();
    let before = s.roots_digest();
    // Real code under a data-looking name, added after licensing.
    let helper = s.folder("controller", "motionlog").join("helper.bin");
    std::fs::copy(cdylib_path("uikit_client"), &helper).unwrap();
    let r = s.import(&s.pack("helper"), &["--force", "--json"]);
    assert_ne!(r.code, 0, "{}", r.all());
    let report = r.json();
    let uncovered = problems_with(&report, "license.file_not_covered");
    assert_eq!(uncovered.len(), 1, "{report:#}");
    assert!(
        uncovered[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("helper.bin is an ELF file"),
        "{report:#}"
    );

    // Licensed with the helper (xplugin-pack covers it by content), then
    // the helper's content swapped: refused as a changed file.
    s.license("controller", "motionlog", &[]).ok();
    std::fs::copy(
        s.folder("controller", "plugindemo").join("plugindemo.so"),
        &helper,
    )
    .unwrap();
    let r = s.import(&s.pack("swapped"), &["--force", "--json"]);
    xplugin_tests::problems::assert_one_hash_mismatch(&r, "helper.bin");
    assert_eq!(s.roots_digest(), before);
}

#[test]
fn a_library_refusal_names_the_package_entry_not_a_staging_path() {
    use xplugin_tests::hostile::raw::{RawEntry, RawZip};
    let s = Scenario::new();
    // A client plugin's library where the controller plugin's belongs,
    // licensed as such. xplugin-pack refuses to pack it, so the package is
    // written directly.
    let dir = s.folder("controller", "motionlog");
    std::fs::copy(cdylib_path("uikit_client"), dir.join("motionlog.so")).unwrap();
    s.license("controller", "motionlog", &[]).ok();
    let entries = ["motionlog.json", "motionlog.lic", "motionlog.so"]
        .iter()
        .map(|f| {
            RawEntry::deflated(
                &format!("motionlog/{f}"),
                &std::fs::read(dir.join(f)).unwrap(),
            )
        })
        .collect();
    let pkg = xplugin_tests::hostile::write_package(
        s.tmp.path(),
        "kind",
        None,
        Some(RawZip::new(entries)),
        Vec::new(),
    )
    .unwrap();
    let r = s.import(&pkg, &["--json"]);
    assert_ne!(r.code, 0, "{}", r.all());
    let report = r.json();
    let wrong = problems_with(&report, "library.wrong_kind");
    assert_eq!(wrong.len(), 1, "{report:#}");
    assert_eq!(
        wrong[0]["subject"], "kind.zip: controller.zip: motionlog/motionlog.so",
        "{report:#}"
    );
    let message = wrong[0]["message"].as_str().unwrap_or("");
    assert!(message.contains("this is a client plugin"), "{message}");
    let text = s.import(&pkg, &[]);
    assert!(!text.all().contains("/staging"), "{}", text.all());
}

#[test]
fn a_swapped_library_is_refused_at_import_and_caught_at_boot() {
    let s = Scenario::new();
    s.license_all();
    s.import(&s.pack("good"), &[]).ok();
    // Swap the installed motionlog.so on disk behind the store's back.
    let gen_dir = std::fs::canonicalize(s.controller_root.join("current")).unwrap();
    let installed = gen_dir.join("plugins/motionlog/motionlog.so");
    let other = gen_dir.join("plugins/plugindemo/plugindemo.so");
    std::fs::remove_file(&installed).unwrap();
    std::fs::copy(&other, &installed).unwrap();
    let boot = s.boot();
    assert_eq!(boot.code, 2, "{}", boot.all());
    let report = boot.json();
    let m = plugin(&report, "motionlog");
    assert_eq!(m["state"], "blocked", "{report:#}");
    assert!(
        m["reason"].as_str().unwrap_or("").contains("motionlog.so"),
        "{report:#}"
    );
    // The unrelated plugin still ran.
    assert_eq!(
        plugin(&report, "plugindemo")["state"],
        "stopped",
        "{report:#}"
    );
}

#[test]
fn a_license_for_another_device_names_both_ids() {
    let s = Scenario::new();
    s.license_all();
    let key = s.keys.join("demo.key");
    let dir = s.folder("controller", "motionlog");
    xplugin_tests::scenario::run_program(
        "xplugin-pack",
        &[
            "license",
            "--key",
            key.to_str().unwrap(),
            "--plugin-dir",
            dir.to_str().unwrap(),
            "--side",
            "controller",
            "--devices",
            "ffffffffffffffffffffffffffffffff",
            "--versions",
            ">=0.1",
        ],
    )
    .ok();
    let r = s.import(&s.pack("otherdevice"), &[]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains(&s.device_id),
        "this device's id must be shown: {}",
        r.all()
    );
}

#[test]
fn every_problem_of_a_package_is_reported_at_once() {
    let s = Scenario::new();
    s.license_all();
    // Two independent problems: a plugin needing a newer HMI, and a broken license.
    let m = s.folder("client", "uikit").join("uikit.json");
    let text = std::fs::read_to_string(&m).unwrap();
    let text = text.replace(
        "\"min_hmi_version\":\"3.0.1\"",
        "\"min_hmi_version\":\"9.0\"",
    );
    std::fs::write(&m, text).unwrap();
    s.license("client", "uikit", &[]).ok();
    std::fs::write(
        s.folder("controller", "motionlog").join("motionlog.lic"),
        "garbage",
    )
    .unwrap();
    let r = s.import(&s.pack("twoproblems"), &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("client plugin \"uikit\""), "{}", r.all());
    assert!(r.stderr.contains("9.0"), "{}", r.all());
    assert!(
        r.stderr.contains("controller plugin \"motionlog\""),
        "{}",
        r.all()
    );
}

#[test]
fn upgrade_same_version_and_downgrade_policy() {
    let s = Scenario::new();
    s.license_all();
    let v1 = s.pack("v1");
    s.import(&v1, &[]).ok();
    // Same version again: nothing to do.
    let again = s.import(&v1, &["--json"]).ok().json();
    assert_eq!(again["committed"], false, "{again:#}");
    // --force reinstalls.
    let forced = s.import(&v1, &["--force", "--json"]).ok().json();
    assert_eq!(forced["committed"], true, "{forced:#}");

    // A newer motionlog (the C fixture under that name cannot serve; bump the manifest only).
    let m = s.folder("controller", "motionlog").join("motionlog.json");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, text.replace("\"0.9.0\"", "\"0.8.0\"")).unwrap();
    s.license("controller", "motionlog", &[]).ok();
    let older = s.pack("older");
    let r = s.import(&older, &[]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("--allow-downgrade"), "{}", r.all());
}

#[test]
fn an_import_that_would_break_an_installed_plugin_is_refused() {
    let s = Scenario::new();
    s.license_all();
    s.import(&s.pack("full"), &[]).ok();
    // A package bringing plugindemo 3.0.0 for the controller breaks motionlog,
    // which needs plugindemo >=1.0, <2.
    let m = s.folder("controller", "plugindemo").join("plugindemo.json");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, text.replace("\"1.0.0\"", "\"3.0.0\"")).unwrap();
    std::fs::remove_dir_all(s.folder("controller", "motionlog")).unwrap();
    std::fs::remove_dir_all(s.plugins.join("client")).unwrap();
    s.license("controller", "plugindemo", &[]).ok();
    let r = s.import(&s.pack("breaking"), &[]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("motionlog"), "{}", r.all());
    assert!(r.stderr.contains("break"), "{}", r.all());
}

#[test]
fn remove_refuses_dependencies_unless_cascade_and_rollback_restores() {
    let s = Scenario::new();
    s.license_all();
    s.import(&s.pack("p"), &[]).ok();
    let r = s.client(&["remove", "uikit"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("plugindemo") && r.stderr.contains("--cascade"),
        "{}",
        r.all()
    );
    s.client(&["remove", "uikit", "--cascade"]).ok();
    let list = s.client(&["list", "--json"]).ok().json();
    assert_eq!(
        list["plugins"].as_array().map(Vec::len),
        Some(0),
        "{list:#}"
    );
    s.client(&["rollback"]).ok();
    let list = s.client(&["list", "--json"]).ok().json();
    assert_eq!(
        list["plugins"].as_array().map(Vec::len),
        Some(2),
        "{list:#}"
    );
}

#[test]
fn disabled_controller_plugin_is_not_loaded_and_blocks_its_dependents() {
    let s = Scenario::new();
    s.license_all();
    s.import(&s.pack("p"), &[]).ok();
    s.controller(&["disable", "plugindemo"]).ok();
    let boot = s.boot();
    let report = boot.json();
    assert_eq!(
        plugin(&report, "plugindemo")["state"],
        "disabled",
        "{report:#}"
    );
    assert_eq!(
        plugin(&report, "motionlog")["state"],
        "blocked",
        "{report:#}"
    );
    assert!(plugin(&report, "motionlog")["reason"]
        .as_str()
        .unwrap_or("")
        .contains("plugindemo"));
}

#[test]
fn a_failing_plugin_does_not_stop_the_others_at_boot() {
    let s = Scenario::new();
    let failing = c_fixture("cli_failinit", &["FIXTURE_FAIL_INIT"]);
    s.add_controller_fixture("cli_failinit", &failing, "0.1.0", &[]);
    s.license_all();
    s.import(&s.pack("p"), &[]).ok();
    let boot = s.boot();
    assert_eq!(boot.code, 2, "{}", boot.all());
    let report = boot.json();
    let f = plugin(&report, "cli_failinit");
    assert_eq!(f["state"], "failed", "{report:#}");
    assert!(f["reason"]
        .as_str()
        .unwrap_or("")
        .contains("deliberate failure in init"));
    assert_eq!(
        plugin(&report, "motionlog")["state"],
        "stopped",
        "{report:#}"
    );
}

#[test]
fn a_cycle_is_refused_at_import_naming_it() {
    let s = Scenario::new();
    let a = c_fixture("cyc_a", &[]);
    let b = c_fixture("cyc_b", &[]);
    s.add_controller_fixture("cyc_a", &a, "0.1.0", &["cyc_b"]);
    s.add_controller_fixture("cyc_b", &b, "0.1.0", &["cyc_a"]);
    s.license_all();
    let r = s.import(&s.pack("cycle"), &[]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("cyc_a -> cyc_b -> cyc_a"), "{}", r.all());
}

#[test]
fn development_mode_loads_unlicensed_plugins_and_says_so() {
    let s = Scenario::new();
    // No licenses at all; the configuration allows it.
    for cfg in [&s.client_config, &s.controller_config] {
        let text = std::fs::read_to_string(cfg).unwrap();
        std::fs::write(
            cfg,
            text.replacen('{', "{\n  \"allow_unlicensed\": true,", 1),
        )
        .unwrap();
    }
    for side in ["client", "controller"] {
        for e in std::fs::read_dir(s.plugins.join(side)).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            std::fs::write(e.path().join(format!("{name}.lic")), "unlicensed\n").unwrap();
        }
    }
    s.import(&s.pack("dev"), &[]).ok();
    let boot = s.boot();
    assert_eq!(boot.code, 0, "{}", boot.all());
    assert!(boot.stderr.contains("DEVELOPMENT MODE"), "{}", boot.all());
    assert_eq!(boot.json()["development_mode"], true);
}

#[test]
fn a_second_importer_is_told_who_holds_the_lock() {
    let s = Scenario::new();
    s.license_all();
    let pkg = s.pack("p");
    s.import(&pkg, &[]).ok();
    // Hold the client root's lock from this process.
    let store = xplugin_store::Store::open(&s.client_root).unwrap();
    let _lock = store.lock().unwrap();
    let r = s.import(&pkg, &["--force"]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("another import is running (pid"),
        "{}",
        r.all()
    );
}

/// Kills the real importer (`xplugin-client import`) with SIGKILL at every
/// step of its commit (the store's failpoints) and checks, after the next
/// start's recovery, that the pendant holds exactly the old or the new
/// installation: `run` re-verifies every installed file against its license,
/// so a mix of old and new files cannot pass.
#[test]
fn killing_the_importer_at_every_commit_step_leaves_old_or_new() {
    use xplugin_store::failpoint::{FAILPOINTS, FAILPOINT_ENV};
    use xplugin_tests::build::{bin_path, runner_prefix, target_command};
    let s = Scenario::new();
    s.license_all();
    s.import(&s.pack("v1"), &[]).ok();
    // The new installation: the client part reinstalled (`--force`), which
    // makes generation 2; the old one is generation 1.
    std::fs::remove_dir_all(s.plugins.join("controller")).unwrap();
    let v2 = s.pack("v2");
    let mut points: Vec<&str> = FAILPOINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("commit-"))
        .collect();
    if !runner_prefix().is_empty() {
        // Under emulation every program start costs seconds: a third of the steps.
        points = points.into_iter().step_by(3).collect();
    }
    let (mut old, mut new) = (0, 0);
    for point in points {
        let out = target_command(&bin_path("xplugin-client"))
            .env(FAILPOINT_ENV, point)
            .arg("import")
            .arg(&v2)
            .args(["--force", "--hmi-version", "3.0.2", "--config"])
            .arg(&s.client_config)
            .arg("--root")
            .arg(&s.client_root)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{point}: the importer was not killed"
        );
        let run = s
            .client(&[
                "run",
                "--hmi-version",
                "3.0.2",
                "--controller-running",
                "plugindemo=1.0.0",
                "--json",
            ])
            .ok()
            .json();
        let generation = run["generation"].as_u64().unwrap_or(0);
        for name in ["uikit", "plugindemo"] {
            assert_eq!(plugin(&run, name)["state"], "stopped", "{point}: {run:#}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(s.client_root.join("staging"))
            .unwrap()
            .collect();
        assert!(
            leftovers.is_empty(),
            "{point}: staging not cleaned: {leftovers:?}"
        );
        match generation {
            1 => old += 1,
            2 => {
                new += 1;
                s.client(&["rollback"]).ok();
            }
            g => panic!("{point}: generation {g}: {run:#}"),
        }
    }
    assert!(
        old > 0 && new > 0,
        "expected both outcomes over the commit steps: old {old}, new {new}"
    );
}

#[test]
fn a_failing_command_reports_problems_with_codes_and_one_hint_convention() {
    let s = Scenario::new();
    // Not installed: one problem, its code in --json, its hint on stderr.
    let r = s.client(&["remove", "nosuch", "--json"]);
    assert_ne!(r.code, 0, "{}", r.all());
    let doc = r.json();
    assert_eq!(doc["ok"], false, "{doc:#}");
    let problems = doc["problems"].as_array().cloned().unwrap_or_default();
    assert_eq!(problems.len(), 1, "{doc:#}");
    assert_eq!(problems[0]["code"], "store.not_installed", "{doc:#}");
    for key in ["subject", "field", "message", "hint"] {
        assert!(problems[0].get(key).is_some(), "{key} missing: {doc:#}");
    }
    assert!(
        r.stderr.contains(
            "xplugin-client: error: plugin \"nosuch\": plugin \"nosuch\" is not installed"
        ),
        "{}",
        r.all()
    );
    assert!(r.stderr.contains("\n  what to do: "), "{}", r.all());

    // An unreadable configuration: the OS error appears once, as the cause.
    let r = xplugin_tests::scenario::run_program(
        "xplugin-client",
        &["list", "--config", "/nonexistent/client.json", "--json"],
    );
    assert_ne!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["problems"][0]["code"], "config.unreadable");
    assert_eq!(r.stderr.matches("No such file").count(), 1, "{}", r.all());
}

/// `xplugin-controller identity | head -n 1` (docs/link.md: the key is the
/// first line): the reader closes the pipe, the program must end quietly
/// (it panicked with a backtrace and exit 101 on EPIPE); a real write error
/// (`> /dev/full`) still fails, with a message.
#[test]
fn output_into_a_closed_pipe_ends_quietly_and_a_full_disk_fails() {
    use std::process::Stdio;
    use xplugin_tests::build::{bin_path, target_command};
    let s = Scenario::new();
    for (program, config, root) in [
        (
            "xplugin-controller",
            &s.controller_config,
            &s.controller_root,
        ),
        ("xplugin-client", &s.client_config, &s.client_root),
    ] {
        for json in [false, true] {
            let command = |stdout: Stdio| {
                let mut cmd = target_command(&bin_path(program));
                cmd.arg("identity")
                    .arg("--config")
                    .arg(config)
                    .arg("--root")
                    .arg(root);
                if json {
                    cmd.arg("--json");
                }
                cmd.stdout(stdout)
                    .stderr(Stdio::piped())
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
            };
            let (reader, writer) = std::io::pipe().expect("a pipe");
            drop(reader);
            let out = command(Stdio::from(writer));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{program} identity (json {json}) into a closed pipe: {stderr}"
            );
            assert!(
                !stderr.contains("panicked"),
                "{program} identity (json {json}) panicked: {stderr}"
            );

            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full");
            let out = command(Stdio::from(full));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{program} identity (json {json}) > /dev/full: {stderr}"
            );
            assert!(
                stderr.contains("cannot write the output to stdout")
                    && !stderr.contains("panicked"),
                "{program} identity (json {json}) > /dev/full: {stderr}"
            );
        }
    }
}

/// On a terminal the import draws its progress bar (bytes and plugins) on
/// stderr; piped, as in every other test here, and with `--json`, it draws
/// nothing.
#[test]
fn import_on_a_terminal_shows_progress_and_piped_shows_none() {
    // `script` (util-linux) gives the import a pseudo-terminal; under an
    // emulator runner the program is not the binary itself, so skip there.
    let script = std::path::Path::new("/usr/bin/script");
    if !script.exists() || !xplugin_tests::build::runner_prefix().is_empty() {
        eprintln!("skipped: needs /usr/bin/script and a native build");
        return;
    }
    let s = Scenario::new();
    s.license_all();
    let pkg = s.pack("plugindemo");
    let quote = |p: &std::path::Path| format!("'{}'", p.display());
    let command = format!(
        "{} import {} --controller-root {} --controller-config {} --hmi-version 3.0.2 --controller-version 2.1.0 --config {} --root {}",
        quote(&xplugin_tests::build::bin_path("xplugin-client")),
        quote(&pkg),
        quote(&s.controller_root),
        quote(&s.controller_config),
        quote(&s.client_config),
        quote(&s.client_root),
    );
    let out = std::process::Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run script: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // The first frame at least: a small package is imported faster than
    // the bar's refresh rate, so later stages may never be drawn.
    assert!(
        text.contains("unpacking") && text.contains("plugins checked"),
        "no progress bar: {text}"
    );
    assert!(text.contains("load order:"), "no report: {text}");

    let piped = Scenario::new();
    piped.license_all();
    let pkg = piped.pack("plugindemo");
    for extra in [&[][..], &["--json"][..]] {
        let r = piped.import(&pkg, extra);
        assert!(
            !r.stdout.contains("plugins checked") && !r.stderr.contains("plugins checked"),
            "{}",
            r.all()
        );
    }
}
