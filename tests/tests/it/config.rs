//! Plugin configuration end to end, through the real programs: typed items
//! declared in manifests, defaults at the first install, values kept, reset
//! and dropped across an upgrade with changed items (each reported),
//! rollback restoring the old values, `config show` / `config set` with
//! every validation refusal by its code, read-only items, passwords never
//! printed, the 0600 state file, and values reaching a Rust plugin
//! (plugindemo's `last_start.json`) and a C plugin (the fixture's trace of
//! the configuration JSON it got in `init`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use xplugin_tests::build::{c_fixture, controller_manifest, plugin_folder, runner_prefix};
use xplugin_tests::daemon::Daemon;
use xplugin_tests::hostile::raw::{RawEntry, RawZip};
use xplugin_tests::hostile::write_package;
use xplugin_tests::problems::problems_with;
use xplugin_tests::scenario::{Run, Scenario};

/// The C plugin's items in version 1.0.0.
const TUNER_V1: &str = r#"{
    "gain": {"type": "float", "default": 1.0, "minimum": 0.0, "maximum": 4.0, "step": 0.5,
             "description": "amplifier gain"},
    "retries": {"type": "integer", "default": 3, "minimum": 1, "maximum": 9,
                "description": "attempts per command"},
    "mode": {"type": "enumeration", "options": ["fast", "safe", "eco"], "default": "safe",
             "description": "motion profile"},
    "label": {"type": "string", "default": "arm", "length": 8, "mandatory": true,
              "description": "name shown on the pendant"},
    "pin": {"type": "password", "default": "0000", "description": "service PIN"},
    "joints": {"type": "list", "items": "integer", "default": [1, 2], "minimum": 1,
               "maximum": 7, "listSize": 7, "description": "joints it drives"},
    "legacy": {"type": "boolean", "default": false, "description": "old protocol"},
    "serial": {"type": "string", "default": "SN-1", "readonly": true,
               "description": "factory serial"}
}"#;

/// Version 1.1.0: `gain` narrowed, `retries` became a string, the option
/// `eco` removed, `legacy` removed, `speed` added; the rest unchanged.
const TUNER_V2: &str = r#"{
    "gain": {"type": "float", "default": 1.0, "minimum": 0.0, "maximum": 2.0, "step": 0.5,
             "description": "amplifier gain"},
    "retries": {"type": "string", "default": "three", "description": "attempts per command"},
    "mode": {"type": "enumeration", "options": ["fast", "safe"], "default": "safe",
             "description": "motion profile"},
    "label": {"type": "string", "default": "arm", "length": 8, "mandatory": true,
              "description": "name shown on the pendant"},
    "pin": {"type": "password", "default": "0000", "description": "service PIN"},
    "joints": {"type": "list", "items": "integer", "default": [1, 2], "minimum": 1,
               "maximum": 7, "listSize": 7, "description": "joints it drives"},
    "speed": {"type": "integer", "default": 50, "minimum": 0, "maximum": 100,
              "description": "percent of the maximum speed"},
    "serial": {"type": "string", "default": "SN-2", "readonly": true,
               "description": "factory serial"}
}"#;

/// Lays out the C fixture `tuner` at `version` with `items`, recording its
/// lifecycle and configuration into its data directory's trace.log.
fn add_tuner(s: &Scenario, version: &str, items: &str) {
    add_tuner_with(s, version, items, &[]);
}

/// As [`add_tuner`], with more fixture defines.
fn add_tuner_with(s: &Scenario, version: &str, items: &str, extra: &[&str]) {
    let v = format!("FIXTURE_VERSION=\"{version}\"");
    let mut defines = vec![v.as_str(), "FIXTURE_RECORD", "FIXTURE_RECORD_CONFIG"];
    defines.extend_from_slice(extra);
    let lib = c_fixture("tuner", &defines);
    let dir = s.plugins.join("controller");
    let _ = std::fs::remove_dir_all(dir.join("tuner"));
    plugin_folder(
        &dir,
        "tuner",
        &lib,
        &controller_manifest("tuner", version, &[], Some(items)),
    );
    s.license("controller", "tuner", &[]).ok();
}

/// Lays out `tuner` 1.0.0 with `items` without licensing it.
fn add_tuner_unlicensed(s: &Scenario, items: &str) {
    let lib = c_fixture("tuner", &["FIXTURE_VERSION=\"1.0.0\"", "FIXTURE_RECORD"]);
    let dir = s.plugins.join("controller");
    let _ = std::fs::remove_dir_all(dir.join("tuner"));
    plugin_folder(
        &dir,
        "tuner",
        &lib,
        &controller_manifest("tuner", "1.0.0", &[], Some(items)),
    );
}

/// Only the controller part: `tuner` at `version` and the examples.
fn package(s: &Scenario, name: &str, version: &str, items: &str) -> PathBuf {
    add_tuner(s, version, items);
    s.pack(name)
}

/// A scenario with the examples and tuner 1.0.0 imported.
fn installed() -> Scenario {
    let s = Scenario::new();
    s.license_all();
    let pkg = package(&s, "v1", "1.0.0", TUNER_V1);
    s.import(&pkg, &[]).ok();
    s
}

/// The configuration JSON tuner got in its last `init`.
fn tuner_init_config(s: &Scenario) -> serde_json::Value {
    let trace = s.controller_root.join("data/tuner/trace.log");
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let line = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("tuner:config-init "))
        .unwrap_or_else(|| panic!("no config-init in {}:\n{text}", trace.display()));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The speed override plugindemo (Rust) started with.
fn plugindemo_speed(s: &Scenario) -> serde_json::Value {
    let path = s.controller_root.join("data/plugindemo/last_start.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let record: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    record["speed_override"].clone()
}

fn boot_ok(s: &Scenario) -> serde_json::Value {
    let boot = s.boot().ok().json();
    for p in boot["plugins"].as_array().into_iter().flatten() {
        assert_eq!(p["state"], "stopped", "{boot:#}");
    }
    boot
}

fn show(s: &Scenario, name: &str) -> serde_json::Value {
    s.controller(&["config", "show", name, "--json"])
        .ok()
        .json()
}

fn value<'a>(shown: &'a serde_json::Value, item: &str) -> &'a serde_json::Value {
    shown["items"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == item))
        .map(|i| &i["value"])
        .unwrap_or_else(|| panic!("no item {item} in {shown:#}"))
}

fn set(s: &Scenario, args: &[&str]) -> Run {
    let mut all = vec!["config", "set"];
    all.extend_from_slice(args);
    s.controller(&all)
}

fn values_file(s: &Scenario, generation: u64, name: &str) -> PathBuf {
    s.controller_root
        .join("state/config")
        .join(generation.to_string())
        .join(format!("{name}.json"))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The config changes of `plugin` in an import report's controller part.
fn config_changes(report: &serde_json::Value, plugin: &str) -> Vec<(String, String)> {
    report["controller"]["plugins"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == plugin))
        .and_then(|p| p["config"].as_array())
        .unwrap_or_else(|| panic!("no config of {plugin} in {report:#}"))
        .iter()
        .map(|c| {
            (
                c["item"].as_str().unwrap_or("").to_string(),
                c["action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn first_install_gives_every_item_its_default_in_a_private_file() {
    let s = Scenario::new();
    s.license_all();
    let pkg = package(&s, "v1", "1.0.0", TUNER_V1);
    let report = s.import(&pkg, &["--json"]).ok().json();
    let changes = config_changes(&report, "tuner");
    assert_eq!(changes.len(), 8, "{changes:?}");
    assert!(changes.iter().all(|(_, a)| a == "added"), "{changes:?}");
    assert_eq!(
        config_changes(&report, "plugindemo"),
        [("speed_override".to_string(), "added".to_string())]
    );
    // motionlog has no items: no values, no file.
    assert_eq!(config_changes(&report, "motionlog"), []);
    let file = values_file(&s, 1, "tuner");
    assert_eq!(mode(&file), 0o600, "{}", file.display());
    assert_eq!(mode(file.parent().unwrap_or(&file)), 0o700);
    assert!(!values_file(&s, 1, "motionlog").exists());

    let shown = show(&s, "tuner");
    assert_eq!(shown["stored"], true, "{shown:#}");
    assert_eq!(shown["generation"], 1);
    assert_eq!(value(&shown, "gain"), 1.0);
    assert_eq!(value(&shown, "joints"), &serde_json::json!([1, 2]));
    assert_eq!(value(&shown, "pin"), "********");
    assert_eq!(shown["values"]["retries"], 3, "{shown:#}");
    assert_eq!(shown["values"]["pin"], "********", "{shown:#}");

    boot_ok(&s);
    assert_eq!(
        tuner_init_config(&s),
        serde_json::json!({"gain": 1.0, "retries": 3, "mode": "safe", "label": "arm",
            "pin": "0000", "joints": [1, 2], "legacy": false, "serial": "SN-1"})
    );
    assert_eq!(plugindemo_speed(&s), 1.0);
}

#[test]
fn config_set_stores_several_items_at_once_for_the_next_start() {
    let s = installed();
    let r = set(
        &s,
        &[
            "tuner",
            "gain=2.5",
            "mode=fast",
            "joints=[1,3,7]",
            "label=left",
        ],
    )
    .ok();
    assert!(
        r.stdout
            .contains("controller plugin \"tuner\": gain 1.0 -> 2.5"),
        "{}",
        r.all()
    );
    assert!(
        r.stdout.contains("gets the new values at its next start"),
        "{}",
        r.all()
    );
    let r = set(&s, &["plugindemo", "speed_override=0.25", "--json"]).ok();
    let doc = r.json();
    assert_eq!(doc["applies"], "next-start", "{doc:#}");
    assert_eq!(doc["changes"][0]["to"], 0.25, "{doc:#}");
    assert_eq!(mode(&values_file(&s, 1, "tuner")), 0o600);

    boot_ok(&s);
    let got = tuner_init_config(&s);
    assert_eq!(got["gain"], 2.5);
    assert_eq!(got["mode"], "fast");
    assert_eq!(got["joints"], serde_json::json!([1, 3, 7]));
    assert_eq!(got["label"], "left");
    assert_eq!(got["retries"], 3);
    assert_eq!(plugindemo_speed(&s), 0.25);

    // Setting what is already set changes nothing.
    let r = set(&s, &["tuner", "gain=2.5"]).ok();
    assert!(r.stdout.contains("nothing changed"), "{}", r.all());
}

#[test]
fn every_validation_refusal_has_its_code_and_changes_nothing() {
    let s = installed();
    let file = values_file(&s, 1, "tuner");
    let before = std::fs::read(&file).unwrap_or_default();
    let cases = [
        (&["gain=loud"][..], "config.wrong_type", "config.gain"),
        (&["retries=2.5"], "config.wrong_type", "config.retries"),
        (&["legacy=yes"], "config.wrong_type", "config.legacy"),
        (&["joints=1,2"], "config.wrong_type", "config.joints"),
        (&["gain=4.5"], "config.out_of_range", "config.gain"),
        (&["retries=0"], "config.out_of_range", "config.retries"),
        (&["joints=[8]"], "config.out_of_range", "config.joints"),
        (&["gain=0.7"], "config.off_step", "config.gain"),
        (&["mode=turbo"], "config.not_an_option", "config.mode"),
        (&["label=much-too-long"], "config.too_long", "config.label"),
        (&["label="], "config.mandatory_blank", "config.label"),
        (&["serial=SN-9"], "config.readonly", "config.serial"),
        (&["colour=red"], "config.unknown_item", "config.colour"),
        (&["gain"], "config.bad_assignment", ""),
        (
            &["gain=1.5", "gain=2.0"],
            "config.bad_assignment",
            "config.gain",
        ),
        // One bad item refuses the whole change: gain is not applied.
        (
            &["gain=1.5", "mode=turbo"],
            "config.not_an_option",
            "config.mode",
        ),
    ];
    // Under emulation every program start costs seconds: every other case
    // (the model's tests check each refusal anyway).
    let emulated = !runner_prefix().is_empty();
    for (i, (args, code, field)) in cases.into_iter().enumerate() {
        if emulated && i % 2 == 1 {
            continue;
        }
        let mut all = vec!["tuner"];
        all.extend_from_slice(args);
        all.push("--json");
        let r = set(&s, &all);
        assert_eq!(r.code, 1, "{args:?}: {}", r.all());
        let doc = r.json();
        let found = problems_with(&doc, code);
        assert_eq!(found.len(), 1, "{args:?}: {doc:#}");
        let field_found = found[0]["field"].as_str().unwrap_or("");
        assert_eq!(field_found, field, "{args:?}: {doc:#}");
        assert_eq!(
            found[0]["subject"], "controller plugin \"tuner\"",
            "{doc:#}"
        );
        assert!(
            !found[0]["hint"].as_str().unwrap_or("").is_empty(),
            "{doc:#}"
        );
        assert!(r.stderr.contains("what to do"), "{}", r.all());
        assert_eq!(
            std::fs::read(&file).unwrap_or_default(),
            before,
            "{args:?} changed the values"
        );
    }
    // What the messages say, for the people reading them.
    let r = set(&s, &["tuner", "gain=4.5"]);
    assert!(
        r.stderr.contains("4.5 is above the maximum 4.0"),
        "{}",
        r.all()
    );
    assert!(
        r.stderr
            .contains("a number from 0.0 to 4.0 in steps of 0.5"),
        "{}",
        r.all()
    );
    let r = set(&s, &["tuner", "serial=SN-9"]);
    assert!(r.stderr.contains("read-only"), "{}", r.all());
    let r = set(&s, &["nosuch", "a=1", "--json"]);
    assert_eq!(
        problems_with(&r.json(), "store.not_installed").len(),
        1,
        "{}",
        r.all()
    );
    boot_ok(&s);
    assert_eq!(tuner_init_config(&s)["gain"], 1.0);
}

#[test]
fn passwords_are_never_printed() {
    let s = installed();
    let secret = "hunter2-secret";
    let r = set(&s, &["tuner", &format!("pin={secret}"), "-vv"]).ok();
    assert!(r.stdout.contains("pin ******** -> ********"), "{}", r.all());
    assert!(!r.all().contains(secret), "{}", r.all());
    let r = set(&s, &["tuner", &format!("pin={secret}x"), "--json", "-vv"]).ok();
    assert!(!r.all().contains(secret), "{}", r.all());
    for args in [
        &["config", "show", "tuner"][..],
        &["config", "show", "tuner", "--json"],
    ] {
        let r = s.controller(args).ok();
        assert!(r.stdout.contains("********"), "{}", r.all());
        assert!(!r.all().contains(secret), "{}", r.all());
    }
    // A refused change naming the password item does not show the value.
    let long = "x".repeat(70_000);
    let r = set(&s, &["tuner", &format!("pin={long}"), "--json"]);
    assert_eq!(r.code, 1);
    assert!(
        !r.all().contains(&long[..100]),
        "the value is in the refusal"
    );
    // Nor does the report of an upgrade, nor the boot report.
    let pkg = package(&s, "v2", "1.1.0", TUNER_V2);
    let r = s.import(&pkg, &["-vv"]).ok();
    assert!(!r.all().contains(secret), "{}", r.all());
    let r = s.import(&pkg, &["--force", "--json"]).ok();
    assert!(!r.all().contains(secret), "{}", r.all());
    let r = s.boot().ok();
    assert!(!r.all().contains(secret), "{}", r.all());
    // The plugin itself gets it, and the file holding it is private.
    assert_eq!(tuner_init_config(&s)["pin"], format!("{secret}x"));
    assert_eq!(mode(&values_file(&s, 3, "tuner")), 0o600);
}

#[test]
fn an_upgrade_keeps_resets_and_drops_values_and_reports_each() {
    let s = installed();
    set(
        &s,
        &[
            "tuner",
            "gain=3.5",
            "retries=7",
            "mode=eco",
            "label=left",
            "pin=4711",
            "joints=[2,4]",
            "legacy=true",
        ],
    )
    .ok();
    let pkg = package(&s, "v2", "1.1.0", TUNER_V2);
    let r = s.import(&pkg, &["--json"]).ok();
    let report = r.json();
    let mut changes = config_changes(&report, "tuner");
    changes.sort();
    let expected: Vec<(String, String)> = [
        ("gain", "reset"),
        ("joints", "kept"),
        ("label", "kept"),
        ("legacy", "dropped"),
        ("mode", "reset"),
        ("pin", "kept"),
        ("retries", "reset"),
        ("serial", "reset"),
        ("speed", "added"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(changes, expected, "{report:#}");
    let tuner = report["controller"]["plugins"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "tuner"))
        .cloned()
        .unwrap_or_default();
    let line = |item: &str| {
        tuner["config"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["item"] == item))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(line("gain")["previous"], 3.5);
    assert_eq!(line("gain")["value"], 1.0);
    for (item, reason) in [
        ("gain", "3.5 is above the maximum 2.0"),
        ("retries", "type changed from integer to string"),
        ("mode", "not one of the options"),
    ] {
        let why = line(item)["reason"].as_str().unwrap_or("").to_string();
        assert!(why.contains(reason), "{item}: {tuner:#}");
    }
    assert_eq!(line("legacy")["previous"], true);
    assert_eq!(line("pin")["value"], "********");
    // The text report says the same (the same upgrade again, after a
    // rollback restored the old version and its values).
    s.controller(&["rollback"]).ok();
    let r = s.import(&pkg, &[]).ok();
    for text in [
        "config gain: reset to the default 1.0 (it was 3.5)",
        "config legacy: dropped",
        "config speed: added with its default 50",
        "config: 3 value(s) kept",
    ] {
        assert!(r.stdout.contains(text), "{text}:\n{}", r.all());
    }

    boot_ok(&s);
    let got = tuner_init_config(&s);
    assert_eq!(
        got,
        serde_json::json!({"gain": 1.0, "retries": "three", "mode": "safe", "label": "left",
            "pin": "4711", "joints": [2, 4], "speed": 50, "serial": "SN-2"})
    );
    let shown = show(&s, "tuner");
    assert_eq!(value(&shown, "speed"), 50);
    assert_eq!(shown["version"], "1.1.0");
}

#[test]
fn a_rollback_restores_the_old_values_and_keeps_unrelated_changes() {
    let s = installed();
    set(&s, &["tuner", "gain=3.5", "legacy=true"]).ok();
    s.import(&package(&s, "v2", "1.1.0", TUNER_V2), &[]).ok();
    assert_eq!(value(&show(&s, "tuner"), "gain"), 1.0);
    // Changed after the upgrade: tuner (other items than before) and
    // plugindemo (same items in both generations).
    set(&s, &["tuner", "gain=2.0"]).ok();
    set(&s, &["plugindemo", "speed_override=0.5"]).ok();

    let r = s.controller(&["rollback"]).ok();
    assert!(
        r.stdout.contains("rolled back to generation 1"),
        "{}",
        r.all()
    );
    let shown = show(&s, "tuner");
    assert_eq!(shown["version"], "1.0.0");
    assert_eq!(value(&shown, "gain"), 3.5);
    assert_eq!(value(&shown, "legacy"), true);
    assert_eq!(value(&shown, "retries"), 3);
    boot_ok(&s);
    let got = tuner_init_config(&s);
    assert_eq!(
        (got["gain"].clone(), got["legacy"].clone()),
        (3.5.into(), true.into())
    );
    assert!(got.get("speed").is_none(), "{got}");
    assert_eq!(plugindemo_speed(&s), 0.5, "an unrelated change was undone");
    // The rolled-back generation's values went with it.
    assert!(!s.controller_root.join("state/config/2").exists());
}

#[test]
fn a_prepared_install_takes_the_values_set_before_its_commit() {
    let s = installed();
    let pkg = package(&s, "v2", "1.1.0", TUNER_V2);
    let r = s
        .controller(&[
            "install",
            pkg.to_str().unwrap_or(""),
            "--prepare",
            "--controller-version",
            "2.1.0",
            "--json",
        ])
        .ok();
    let doc = r.json();
    let id = doc["transaction"].as_str().unwrap_or("").to_string();
    let staged = s
        .controller_root
        .join("transactions")
        .join(&id)
        .join("config/tuner.json");
    assert_eq!(mode(&staged), 0o600, "{}", staged.display());
    assert!(!config_changes(&doc, "tuner").is_empty(), "{doc:#}");
    // Between prepare and commit the operator changes a value.
    set(&s, &["tuner", "label=right", "joints=[5]"]).ok();
    let r = s.controller(&["commit", &id, "--json"]).ok();
    let doc = r.json();
    assert_eq!(doc["state"], "committed", "{doc:#}");
    assert!(
        doc["config"].as_array().is_some_and(|a| !a.is_empty()),
        "{doc:#}"
    );
    let shown = show(&s, "tuner");
    assert_eq!(shown["version"], "1.1.0");
    assert_eq!(value(&shown, "label"), "right");
    assert_eq!(value(&shown, "joints"), &serde_json::json!([5]));
    assert!(!staged.exists(), "staged values left behind");
}

#[test]
fn damaged_stored_values_block_only_their_plugin_until_set() {
    let s = installed();
    let file = values_file(&s, 1, "tuner");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    std::fs::write(&file, text.replace("\"gain\":1.0", "\"gain\":9.0")).unwrap_or_default();
    let boot = s.boot().json();
    let tuner = boot["plugins"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "tuner"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(tuner["state"], "blocked", "{boot:#}");
    let found = problems_with(&boot, "config.values_unreadable");
    assert_eq!(found.len(), 1, "{boot:#}");
    assert!(
        found[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("9.0 is above the maximum 4.0"),
        "{boot:#}"
    );
    for p in boot["plugins"].as_array().into_iter().flatten() {
        if p["name"] != "tuner" {
            assert_eq!(p["state"], "stopped", "{boot:#}");
        }
    }
    // show says what is wrong; a change that leaves the bad value is
    // refused, one that fixes it applies.
    let r = s.controller(&["config", "show", "tuner"]).ok();
    assert!(
        r.stdout.contains("THE STORED VALUE DOES NOT FIT"),
        "{}",
        r.all()
    );
    let r = set(&s, &["tuner", "mode=fast", "--json"]);
    assert_eq!(
        problems_with(&r.json(), "config.values_unreadable").len(),
        1,
        "{}",
        r.all()
    );
    set(&s, &["tuner", "gain=2.0"]).ok();
    boot_ok(&s);
    assert_eq!(tuner_init_config(&s)["gain"], 2.0);
    // A file that is not even JSON.
    std::fs::write(&file, "{not json").unwrap_or_default();
    let r = s.controller(&["config", "show", "tuner", "--json"]);
    assert_eq!(r.code, 1);
    let doc = r.json();
    let found = problems_with(&doc, "config.values_unreadable");
    assert!(
        found[0]["hint"].as_str().unwrap_or("").contains("delete"),
        "{}",
        r.all()
    );
}

#[test]
fn a_schema_that_is_wrong_refuses_the_package_naming_plugin_and_item() {
    let s = Scenario::new();
    s.license_all();
    let bad = r#"{
        "gain": {"type": "float", "default": 5.0, "maximum": 4.0, "description": "g"},
        "mode": {"type": "enumeration", "default": "x", "description": "m"},
        "check": {"type": "integer", "default": 1, "rule": "value > 0", "description": "c"}
    }"#;
    // The vendor tool refuses to license it already, for the same reasons.
    add_tuner_unlicensed(&s, bad);
    let r = s.license("controller", "tuner", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("config.gain.default"), "{}", r.all());
    // A package built by other means: a licensed folder whose manifest is
    // replaced afterwards.
    add_tuner(&s, "1.0.0", TUNER_V1);
    let folder = s.folder("controller", "tuner");
    let entries = vec![
        RawEntry::deflated(
            "tuner/tuner.json",
            controller_manifest("tuner", "1.0.0", &[], Some(bad)).as_bytes(),
        ),
        RawEntry::stored_file("tuner/tuner.lic", &folder.join("tuner.lic"))
            .unwrap_or_else(|e| panic!("{e}")),
        RawEntry::stored_file("tuner/tuner.so", &folder.join("tuner.so"))
            .unwrap_or_else(|e| panic!("{e}")),
    ];
    let pkg = write_package(
        s.tmp.path(),
        "bad",
        None,
        Some(RawZip::new(entries)),
        Vec::new(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let before = s.roots_digest();
    let r = s.import(&pkg, &["--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let doc = r.json();
    let default = problems_with(&doc, "config.bad_default");
    assert_eq!(default.len(), 1, "{doc:#}");
    assert_eq!(default[0]["subject"], "controller plugin \"tuner\"");
    assert_eq!(default[0]["field"], "config.gain.default");
    assert_eq!(
        problems_with(&doc, "config.missing_property").len(),
        1,
        "{doc:#}"
    );
    let rule = problems_with(&doc, "config.unknown_property");
    assert_eq!(rule[0]["severity"], "warning", "{doc:#}");
    assert!(
        rule[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("never evaluates"),
        "{doc:#}"
    );
    assert_eq!(
        s.roots_digest(),
        before,
        "a refused package changed the roots"
    );
}

#[test]
fn the_pendant_has_the_same_commands_for_client_plugins() {
    let s = Scenario::new();
    let lib = c_fixture(
        "panel",
        &[
            "FIXTURE_KIND=XPLUGIN_KIND_CLIENT",
            "FIXTURE_RECORD",
            "FIXTURE_RECORD_CONFIG",
        ],
    );
    let manifest = r#"{"client_plugin": {"name": "panel", "enable": true, "version": "0.1.0",
        "config": {"theme": {"type": "enumeration", "options": ["dark", "light"],
                             "default": "dark", "description": "colours"}}}}"#;
    plugin_folder(&s.plugins.join("client"), "panel", &lib, manifest);
    s.license_all();
    s.import(&s.pack("p"), &[]).ok();
    let r = s.client(&["config", "set", "panel", "theme=light"]).ok();
    assert!(
        r.stdout.contains("theme \"dark\" -> \"light\""),
        "{}",
        r.all()
    );
    let r = s.client(&["config", "set", "panel", "theme=blue", "--json"]);
    assert_eq!(
        problems_with(&r.json(), "config.not_an_option").len(),
        1,
        "{}",
        r.all()
    );
    let shown = s.client(&["config", "show", "panel", "--json"]).ok().json();
    assert_eq!(value(&shown, "theme"), "light");
    assert_eq!(shown["side"], "client");
    let croot = s.controller_root.to_string_lossy().into_owned();
    s.client(&["run", "--hmi-version", "3.0.2", "--controller-root", &croot])
        .ok();
    let trace =
        std::fs::read_to_string(s.client_root.join("data/panel/trace.log")).unwrap_or_default();
    assert!(
        trace.contains("panel:config-init {\"theme\":\"light\"}"),
        "{trace}"
    );
}

/// The examples and a stepping tuner 1.0.0 that watches for overlapping
/// calls (`extra`: more fixture defines), imported.
fn installed_stepping(extra: &[&str]) -> Scenario {
    let s = Scenario::new();
    s.license_all();
    let mut defines = vec!["FIXTURE_STEP", "FIXTURE_STEP_OBSERVE"];
    defines.extend_from_slice(extra);
    add_tuner_with(&s, "1.0.0", TUNER_V1, &defines);
    s.import(&s.pack("v1"), &[]).ok();
    s
}

fn tuner_trace(s: &Scenario) -> String {
    std::fs::read_to_string(s.controller_root.join("data/tuner/trace.log")).unwrap_or_default()
}

#[test]
fn a_running_daemon_applies_a_multi_item_change_between_two_steps() {
    // Each step takes 200 µs and each reconfigure 5 ms: at a 2 ms period a
    // reconfigure spans several of the plugin's turns, so calls that could
    // overlap would (the fixture records any overlap from either side).
    let s = installed_stepping(&[
        "FIXTURE_STEP_SPIN_US=200",
        "FIXTURE_RECONFIGURE_SLEEP_US=5000",
    ]);
    let d = Daemon::start(&s, &[]);
    let shown = d.cli(&["config", "show", "tuner", "--json"]).ok().json();
    assert_eq!(value(&shown, "pin"), "********");
    assert_eq!(value(&shown, "gain"), 1.0);
    let changes = [
        ["gain=2.0", "retries=5", "joints=[3,4]"],
        ["gain=3.5", "retries=7", "joints=[5]"],
        ["gain=0.5", "retries=1", "joints=[1,2,7]"],
    ];
    for (n, change) in changes.iter().enumerate() {
        let mut args = vec!["config", "set", "tuner"];
        args.extend_from_slice(change);
        args.push("--json");
        let r = d.cli(&args).ok();
        let report = r.json();
        assert_eq!(report["applies"], "now", "{report:#}");
        assert_eq!(
            report["changes"].as_array().map(Vec::len),
            Some(3),
            "{report:#}"
        );
        assert!(
            report["paused_steps"].as_u64().is_some_and(|p| p > 0),
            "a 5 ms reconfigure at a 1 ms period skips the plugin's turns: {report:#}"
        );
        // Stored, for the next start too.
        let shown = d.cli(&["config", "show", "tuner", "--json"]).ok().json();
        let gain: f64 = change[0]["gain=".len()..].parse().unwrap();
        assert_eq!(value(&shown, "gain"), gain, "{shown:#}");
        // The plugin got all three items in one call, then stepped on.
        let trace = tuner_trace(&s);
        let got: serde_json::Value = trace
            .lines()
            .filter_map(|l| l.strip_prefix("tuner:config-reconfigure "))
            .nth(n)
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no reconfigure {n} in\n{trace}"));
        assert_eq!(got["gain"], gain, "{got}");
        let retries: u64 = change[1]["retries=".len()..].parse().unwrap();
        assert_eq!(got["retries"], retries, "{got}");
        assert_eq!(
            got["joints"].to_string(),
            change[2]["joints=".len()..],
            "{got}"
        );
        assert_eq!(
            got["pin"], "0000",
            "the plugin gets its real password: {got}"
        );
        let seen = format!("tuner:step-sees-config {}", n + 1);
        let start = std::time::Instant::now();
        while !tuner_trace(&s).contains(&seen) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no step after reconfigure {}:\n{}",
                n + 1,
                tuner_trace(&s)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let trace = tuner_trace(&s);
    assert!(!trace.contains("OVERLAP"), "{trace}");
    // The cycle kept running for everyone, tuner included.
    let status = d.status().ok().json();
    let timing = &status["timing"]["plugins"]["tuner"];
    assert!(
        timing["paused_steps"].as_u64().is_some_and(|p| p >= 3),
        "{status:#}"
    );
    assert_eq!(d.stop(), 0);
    // The next start gets the last values through init.
    boot_ok(&s);
    assert_eq!(tuner_init_config(&s)["gain"], 0.5);
}

#[test]
fn a_running_plugin_that_refuses_a_change_keeps_its_values_and_nothing_is_stored() {
    let s = installed_stepping(&["FIXTURE_RECONFIGURE_REFUSE=\"eco\""]);
    let d = Daemon::start(&s, &[]);
    let before = std::fs::read(values_file(&s, 1, "tuner")).unwrap_or_default();
    let r = d.cli(&["config", "set", "tuner", "mode=eco", "gain=2.0", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(
        problems_with(&r.json(), "config.refused_by_plugin").len(),
        1,
        "{}",
        r.all()
    );
    assert!(
        r.stderr.contains("refuses a configuration holding eco"),
        "{}",
        r.all()
    );
    assert_eq!(
        std::fs::read(values_file(&s, 1, "tuner")).unwrap_or_default(),
        before
    );
    let shown = d.cli(&["config", "show", "tuner", "--json"]).ok().json();
    assert_eq!(value(&shown, "mode"), "safe");
    assert_eq!(value(&shown, "gain"), 1.0);
    // The host's own checks come first: an invalid value never reaches it.
    let calls = tuner_trace(&s).matches("config-reconfigure").count();
    let r = d.cli(&["config", "set", "tuner", "gain=9", "--json"]);
    assert_eq!(
        problems_with(&r.json(), "config.out_of_range").len(),
        1,
        "{}",
        r.all()
    );
    assert_eq!(tuner_trace(&s).matches("config-reconfigure").count(), calls);
    // Without --admin-socket the command finds the daemon and goes
    // through it: never behind its back.
    let r = set(&s, &["tuner", "gain=2.0", "--json"]).ok();
    let report = r.json();
    assert_eq!(report["applies"], "now", "{}", r.all());
    assert_eq!(
        report["changes"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.all()
    );
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_plugin_without_reconfigure_gets_a_live_change_at_its_next_start() {
    let s = installed_stepping(&["FIXTURE_NO_RECONFIGURE"]);
    let d = Daemon::start(&s, &[]);
    let r = d.cli(&["config", "set", "tuner", "gain=2.5"]).ok();
    assert!(r.stdout.contains("no reconfigure"), "{}", r.all());
    assert!(r.stdout.contains("next start"), "{}", r.all());
    let r = d
        .cli(&["config", "set", "tuner", "gain=3.0", "--json"])
        .ok();
    assert_eq!(r.json()["applies"], "next-start", "{}", r.all());
    assert_eq!(d.stop(), 0);
    let d = Daemon::start(&s, &[]);
    assert_eq!(tuner_init_config(&s)["gain"], 3.0);
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_rust_plugin_takes_a_live_change_through_reconfigure() {
    let s = installed();
    let d = Daemon::start(&s, &[]);
    let r = d
        .cli(&[
            "config",
            "set",
            "plugindemo",
            "speed_override=0.5",
            "--json",
        ])
        .ok();
    assert_eq!(r.json()["applies"], "now", "{}", r.all());
    let start = std::time::Instant::now();
    while !d
        .log_text()
        .contains("plugindemo: reconfigured, speed override 0.5")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A value off its step is the host's refusal, before the plugin.
    let r = d.cli(&[
        "config",
        "set",
        "plugindemo",
        "speed_override=0.33",
        "--json",
    ]);
    assert_eq!(
        problems_with(&r.json(), "config.off_step").len(),
        1,
        "{}",
        r.all()
    );
    assert_eq!(d.stop(), 0);
    boot_ok(&s);
    assert_eq!(plugindemo_speed(&s), 0.5);
}

/// plugindemo's manifest (Rust) with `items` as its `config` (the license
/// covers the manifest: license it afterwards).
fn plugindemo_with(s: &Scenario, items: &str) {
    let path = s.folder("controller", "plugindemo").join("plugindemo.json");
    std::fs::write(
        &path,
        controller_manifest("plugindemo", "1.0.0", &[], Some(items)),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[test]
fn a_rust_plugin_reinstalled_with_changed_items_gets_migrated_values() {
    let s = Scenario::new();
    plugindemo_with(
        &s,
        r#"{"speed_override": {"type": "float", "default": 1.0, "minimum": 0.0, "maximum": 1.0,
                               "description": "factor"},
            "legacy_mode": {"type": "boolean", "default": false, "description": "old"}}"#,
    );
    s.license_all();
    s.import(&s.pack("v1"), &[]).ok();
    set(
        &s,
        &["plugindemo", "speed_override=0.8", "legacy_mode=true"],
    )
    .ok();
    boot_ok(&s);
    assert_eq!(plugindemo_speed(&s), 0.8);

    plugindemo_with(
        &s,
        r#"{"speed_override": {"type": "float", "default": 0.5, "minimum": 0.0, "maximum": 0.5,
                               "description": "factor"},
            "ramp_ms": {"type": "integer", "default": 200, "minimum": 0, "description": "ramp"}}"#,
    );
    s.license("controller", "plugindemo", &[]).ok();
    let report = s.import(&s.pack("v2"), &["--force", "--json"]).ok().json();
    let mut changes = config_changes(&report, "plugindemo");
    changes.sort();
    assert_eq!(
        changes,
        [
            ("legacy_mode".to_string(), "dropped".to_string()),
            ("ramp_ms".to_string(), "added".to_string()),
            ("speed_override".to_string(), "reset".to_string()),
        ],
        "{report:#}"
    );
    boot_ok(&s);
    assert_eq!(plugindemo_speed(&s), 0.5);
    let shown = show(&s, "plugindemo");
    assert_eq!(value(&shown, "ramp_ms"), 200);
}

#[test]
fn the_pendant_shows_and_changes_a_controller_plugin_over_the_link() {
    use xplugin_tests::link::{daemon, free_port, identity, pair};
    use xplugin_tests::problems::codes;
    let s = installed_stepping(&[]);
    let address = format!("127.0.0.1:{}", free_port());
    let d = daemon(&s, &address, &[]);
    pair(&s, &address, "install");
    let over_link = |args: &[&str]| {
        let mut all = vec!["config"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--controller", &address, "--json"]);
        s.client(&all)
    };
    // Shown as the controller shows it: its schema, its values, passwords masked.
    let shown = over_link(&["show", "tuner"]).ok().json();
    assert_eq!(shown["controller"], address.as_str(), "{shown:#}");
    assert_eq!(value(&shown, "pin"), "********");
    assert_eq!(value(&shown, "gain"), 1.0);
    // Changed live: the running plugin takes it between two steps.
    let set = over_link(&["set", "tuner", "gain=2.5", "retries=4"])
        .ok()
        .json();
    assert_eq!(set["applies"], "now", "{set:#}");
    let trace = tuner_trace(&s);
    assert!(
        trace.contains("tuner:config-reconfigure ") && trace.contains("\"gain\":2.5"),
        "{trace}"
    );
    let shown = d.cli(&["config", "show", "tuner", "--json"]).ok().json();
    assert_eq!(value(&shown, "gain"), 2.5, "stored on the controller");
    // The controller validates with its own schema: refused, nothing changes.
    let before = std::fs::read(values_file(&s, 1, "tuner")).unwrap_or_default();
    let refused = over_link(&["set", "tuner", "gain=4.5"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert_eq!(
        codes(&refused),
        ["config.out_of_range"],
        "{}",
        refused.all()
    );
    assert_eq!(
        std::fs::read(values_file(&s, 1, "tuner")).unwrap_or_default(),
        before
    );
    // A pendant paired to look may show but not change.
    let pk = identity(&s, "xplugin-client");
    s.controller(&["pair", &pk, "--role", "status"]).ok();
    over_link(&["show", "tuner"]).ok();
    let denied = over_link(&["set", "tuner", "gain=3.0"]);
    assert_eq!(denied.code, 1, "{}", denied.all());
    assert_eq!(codes(&denied), ["link.role_denied"], "{}", denied.all());
    // --controller is the pendant's.
    let wrong = s.controller(&[
        "config",
        "show",
        "tuner",
        "--controller",
        &address,
        "--json",
    ]);
    assert_eq!(codes(&wrong), ["usage.invalid_argument"], "{}", wrong.all());
    assert_eq!(d.stop(), 0);
}
