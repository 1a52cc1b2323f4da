//! Loading real plugin libraries through `xplugin_host::lifecycle`: the Rust
//! examples, the C example and the C/Rust fixtures, built by the test helpers
//! (no mocks). Asserts the init/start/stop/destroy order the plugins observe
//! and failure isolation.

use std::path::{Path, PathBuf};
use xplugin_abi::{XPLUGIN_KIND_CLIENT, XPLUGIN_KIND_CONTROLLER};
use xplugin_host::checks::check_plugin_file;
use xplugin_host::cycle::{Cycle, CycleHooks, CyclePlugin, CycleSettings, TimingReport};
use xplugin_host::lifecycle::{Lifecycle, LifecycleState, PluginToLoad};
use xplugin_host::services::Bus;
use xplugin_host::stage::Stage;
use xplugin_package::binary::BinaryError;
use xplugin_tests::build::{c_fixture, cdylib_path, motionlog_path};

/// A plugin to load. Every `init_all` in this file loads only these: a
/// library the test helpers just built from this repository (Rust cdylib or C
/// fixture), passed through `check_plugin_file` here (architecture, ABI tag,
/// kind); the other package checks (license, compatibility) concern vendors'
/// packages, and these are not. That is what `init_all` requires.
fn spec(
    name: &str,
    lib: &Path,
    kind: u32,
    depend: &[&str],
    config: &str,
    data: &Path,
) -> PluginToLoad {
    PluginToLoad {
        name: name.to_string(),
        version: "0.1.0".to_string(),
        library: check_plugin_file(lib, kind).unwrap_or_else(|e| panic!("{name}: {e}")),
        config_json: config.to_string(),
        depend: depend.iter().map(|s| s.to_string()).collect(),
        data_dir: data.to_path_buf(),
        cycle_budget_ns: 0,
        enable: true,
    }
}

fn state(lc: &Lifecycle, name: &str) -> LifecycleState {
    lc.outcomes()
        .into_iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("{name} not in outcomes"))
        .state
}

/// Steps `plugins` (from `lc.cycle_plugins()`) for `cycles` cycles of
/// `period_ns` on the real cycle thread and returns its timing.
pub(crate) fn run_cycles(
    lc: &Lifecycle,
    plugins: Vec<CyclePlugin>,
    period_ns: u64,
    cycles: u64,
) -> TimingReport {
    let settings = CycleSettings {
        period_ns,
        cycles: Some(cycles),
        ..CycleSettings::default()
    };
    // SAFETY: the instances are the running plugins of `lc`, which the
    // caller shuts down only after this returned (the cycle is joined).
    let cycle = unsafe { Cycle::spawn(settings, plugins, lc.bus().clone(), CycleHooks::default()) }
        .unwrap();
    while !cycle.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    cycle.join()
}

fn trace_config(trace: &Path) -> String {
    serde_json::json!({ "trace_file": trace }).to_string()
}

fn recorder(name: &str, extra: &[&str]) -> PathBuf {
    let mut defines = vec!["FIXTURE_RECORD"];
    defines.extend_from_slice(extra);
    c_fixture(name, &defines)
}

#[test]
fn init_all_then_start_all_then_reverse_stop_and_destroy() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.log");
    let cfg = trace_config(&trace);
    let a = recorder("rec_a", &[]);
    let b = recorder("rec_b", &[]);
    let c = recorder("rec_c", &[]);
    let mut lc = Lifecycle::new("2.1.0", Bus::new());
    // SAFETY: every plugin comes from `spec` (see there).
    unsafe {
        lc.init_all(vec![
            spec("rec_a", &a, XPLUGIN_KIND_CONTROLLER, &[], &cfg, dir.path()),
            spec(
                "rec_b",
                &b,
                XPLUGIN_KIND_CONTROLLER,
                &["rec_a"],
                &cfg,
                dir.path(),
            ),
            spec(
                "rec_c",
                &c,
                XPLUGIN_KIND_CONTROLLER,
                &["rec_b"],
                &cfg,
                dir.path(),
            ),
        ])
    };
    lc.start_all();
    assert_eq!(lc.running(), ["rec_a", "rec_b", "rec_c"]);
    lc.shutdown();
    let lines: Vec<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        lines,
        [
            "rec_a:init",
            "rec_b:init",
            "rec_c:init",
            "rec_a:start",
            "rec_b:start",
            "rec_c:start",
            "rec_c:stop",
            "rec_b:stop",
            "rec_a:stop",
            "rec_c:destroy",
            "rec_b:destroy",
            "rec_a:destroy",
        ]
    );
}

#[test]
fn failing_init_skips_dependents_and_spares_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.log");
    let cfg = trace_config(&trace);
    let bad = recorder("failinit", &["FIXTURE_FAIL_INIT"]);
    let dependent = recorder("rec_dep", &[]);
    let unrelated = recorder("rec_free", &[]);
    let mut lc = Lifecycle::new("2.1.0", Bus::new());
    // SAFETY: every plugin comes from `spec` (see there).
    unsafe {
        lc.init_all(vec![
            spec(
                "failinit",
                &bad,
                XPLUGIN_KIND_CONTROLLER,
                &[],
                &cfg,
                dir.path(),
            ),
            spec(
                "rec_dep",
                &dependent,
                XPLUGIN_KIND_CONTROLLER,
                &["failinit"],
                &cfg,
                dir.path(),
            ),
            spec(
                "rec_free",
                &unrelated,
                XPLUGIN_KIND_CONTROLLER,
                &[],
                &cfg,
                dir.path(),
            ),
        ])
    };
    lc.start_all();
    match state(&lc, "failinit") {
        LifecycleState::Failed { stage, reason } => {
            assert_eq!(stage, Stage::Init);
            assert!(reason.contains("deliberate failure in init"), "{reason}");
            assert!(reason.contains("XPLUGIN_ERR_FAILED"), "{reason}");
        }
        s => panic!("{s:?}"),
    }
    match state(&lc, "rec_dep") {
        LifecycleState::Skipped { reason } => {
            assert!(
                reason.starts_with("depends on failinit, which failed: init failed"),
                "{reason}"
            )
        }
        s => panic!("{s:?}"),
    }
    assert_eq!(lc.running(), ["rec_free"]);
    lc.shutdown();
    let t = std::fs::read_to_string(&trace).unwrap();
    assert!(
        !t.contains("rec_dep:"),
        "a skipped plugin must not run any code: {t}"
    );
    // The failed plugin's init ran and failed; it is never started or stopped.
    assert!(
        !t.contains("failinit:start") && !t.contains("failinit:stop"),
        "{t}"
    );
}

#[test]
fn a_panicking_rust_plugin_is_marked_failed_and_the_host_survives() {
    let dir = tempfile::tempdir().unwrap();
    let lib = cdylib_path("panicky");
    let free = recorder("rec_after_panic", &[]);
    let cfg = trace_config(&dir.path().join("trace.log"));
    for (stage, config) in [
        ("init", r#"{"panic_in":"init"}"#),
        ("start", r#"{"panic_in":"start"}"#),
    ] {
        let mut lc = Lifecycle::new("2.1.0", Bus::new());
        let mut p = spec(
            "panicky",
            &lib,
            XPLUGIN_KIND_CONTROLLER,
            &[],
            config,
            dir.path(),
        );
        p.version = "0.0.1".into();
        // SAFETY: every plugin comes from `spec` (see there).
        unsafe {
            lc.init_all(vec![
                p,
                spec(
                    "rec_after_panic",
                    &free,
                    XPLUGIN_KIND_CONTROLLER,
                    &[],
                    &cfg,
                    dir.path(),
                ),
            ])
        };
        lc.start_all();
        match state(&lc, "panicky") {
            LifecycleState::Failed { stage: s, reason } => {
                assert_eq!(s.as_str(), stage);
                assert!(reason.contains("XPLUGIN_ERR_PANIC"), "{reason}");
                assert!(reason.contains("panicked"), "{reason}");
            }
            s => panic!("{stage}: {s:?}"),
        }
        assert_eq!(lc.running(), ["rec_after_panic"]);
        lc.shutdown();
    }
}

#[test]
fn wrong_abi_major_is_refused_before_loading() {
    let lib = c_fixture("abi2", &["FIXTURE_ABI_MAJOR=2"]);
    let e = check_plugin_file(&lib, XPLUGIN_KIND_CONTROLLER).unwrap_err();
    assert!(
        matches!(e, BinaryError::AbiMajor { found_major: 2, .. }),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains("ABI 2.") && msg.contains("ABI 1.x"), "{msg}");
}

#[test]
fn a_library_for_another_architecture_is_refused_before_loading() {
    // Take a real plugin and rewrite e_machine: an ELF for the "other" arch.
    let src = c_fixture("otherarch", &[]);
    let mut bytes = std::fs::read(&src).unwrap();
    // e_machine is at offset 18 in both ELF32 and ELF64 headers (little endian here).
    let other: u16 = if cfg!(target_arch = "aarch64") {
        62 /* EM_X86_64 */
    } else {
        183 /* EM_AARCH64 */
    };
    bytes[18..20].copy_from_slice(&other.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("otherarch.so");
    std::fs::write(&lib, bytes).unwrap();
    let e = check_plugin_file(&lib, XPLUGIN_KIND_CONTROLLER).unwrap_err();
    assert!(matches!(e, BinaryError::WrongArch { .. }), "{e}");
    assert!(e.to_string().contains("otherarch.so"), "{e}");
}

#[test]
fn a_client_plugin_is_refused_by_a_controller_host() {
    let lib = cdylib_path("uikit_client");
    let e = check_plugin_file(&lib, XPLUGIN_KIND_CONTROLLER).unwrap_err();
    assert_eq!(
        e.code(),
        xplugin_model::ProblemCode::LibraryWrongKind,
        "{e}"
    );
    // Wording matters here: the fix is moving the plugin, not rebuilding it.
    assert!(e.to_string().contains("this is a client plugin"), "{e}");
    assert!(!e.to_string().contains("rebuild"), "{e}");
    assert!(check_plugin_file(&lib, XPLUGIN_KIND_CLIENT).is_ok());
}

#[test]
fn descriptor_name_must_match_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let lib = c_fixture("realname", &[]);
    let mut lc = Lifecycle::new("2.1.0", Bus::new());
    // SAFETY: every plugin comes from `spec` (see there).
    unsafe {
        lc.init_all(vec![spec(
            "othername",
            &lib,
            XPLUGIN_KIND_CONTROLLER,
            &[],
            "{}",
            dir.path(),
        )])
    };
    match state(&lc, "othername") {
        LifecycleState::Failed { stage, reason } => {
            assert_eq!(stage, Stage::Load);
            assert!(
                reason.contains("realname") && reason.contains("othername"),
                "{reason}"
            );
        }
        s => panic!("{s:?}"),
    }
}

#[test]
fn c_plugin_uses_the_service_of_its_rust_dependency() {
    let dir = tempfile::tempdir().unwrap();
    let demo = cdylib_path("plugindemo_controller");
    let motionlog = motionlog_path();
    let mut lc = Lifecycle::new("2.1.0", Bus::new());
    let mut d = spec(
        "plugindemo",
        &demo,
        XPLUGIN_KIND_CONTROLLER,
        &[],
        "{}",
        dir.path(),
    );
    d.version = "1.0.0".into();
    let mut m = spec(
        "motionlog",
        &motionlog,
        XPLUGIN_KIND_CONTROLLER,
        &["plugindemo"],
        "{}",
        dir.path(),
    );
    m.version = "0.9.0".into();
    // SAFETY: every plugin comes from `spec` (see there).
    unsafe { lc.init_all(vec![d, m]) };
    lc.start_all();
    assert_eq!(
        lc.running(),
        ["plugindemo", "motionlog"],
        "{:?}",
        lc.outcomes()
    );
    // Both step on the real-time cycle; none fails a step.
    let plugins = lc.cycle_plugins();
    assert_eq!(plugins.len(), 2);
    let timing = run_cycles(&lc, plugins, 100_000, 50);
    assert_eq!(timing.cycles, 50);
    for (name, p) in &timing.plugins {
        assert_eq!((p.failures, p.step_ns.count), (0, 50), "{name}");
    }
    lc.shutdown();
}

#[test]
fn a_service_of_an_undeclared_provider_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let demo = cdylib_path("plugindemo_controller");
    let motionlog = motionlog_path();
    let mut lc = Lifecycle::new("2.1.0", Bus::new());
    let mut d = spec(
        "plugindemo",
        &demo,
        XPLUGIN_KIND_CONTROLLER,
        &[],
        "{}",
        dir.path(),
    );
    d.version = "1.0.0".into();
    // motionlog without its `depend`: the registry hides plugindemo's service.
    let mut m = spec(
        "motionlog",
        &motionlog,
        XPLUGIN_KIND_CONTROLLER,
        &[],
        "{}",
        dir.path(),
    );
    m.version = "0.9.0".into();
    // SAFETY: every plugin comes from `spec` (see there).
    unsafe { lc.init_all(vec![d, m]) };
    assert!(
        matches!(state(&lc, "motionlog"), LifecycleState::Failed { .. }),
        "{:?}",
        lc.outcomes()
    );
}

#[test]
fn rust_client_plugins_find_their_dependency_service() {
    let dir = tempfile::tempdir().unwrap();
    let uikit = cdylib_path("uikit_client");
    let demo = cdylib_path("plugindemo_client");
    let mut lc = Lifecycle::new("3.0.2", Bus::new());
    let mut u = spec("uikit", &uikit, XPLUGIN_KIND_CLIENT, &[], "{}", dir.path());
    u.version = "1.2.0".into();
    let mut p = spec(
        "plugindemo",
        &demo,
        XPLUGIN_KIND_CLIENT,
        &["uikit"],
        "{}",
        dir.path(),
    );
    p.version = "3.0.1".into();
    // SAFETY: every plugin comes from `spec` (see there).
    unsafe { lc.init_all(vec![u, p]) };
    lc.start_all();
    assert_eq!(lc.running(), ["uikit", "plugindemo"], "{:?}", lc.outcomes());
    assert!(lc.idle_all().is_empty());
    lc.shutdown();
}

#[test]
fn the_resolved_config_reaches_init_and_a_bad_one_is_refused_by_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let demo = cdylib_path("plugindemo_controller");
    // A valid configuration: the plugin starts and writes into its data dir.
    let mut lc = Lifecycle::new("2.1.0", Bus::new());
    let mut d = spec(
        "plugindemo",
        &demo,
        XPLUGIN_KIND_CONTROLLER,
        &[],
        r#"{"speed_override": 0.5}"#,
        dir.path(),
    );
    d.version = "1.0.0".into();
    // SAFETY: every plugin comes from `spec` (see there).
    unsafe { lc.init_all(vec![d]) };
    lc.start_all();
    assert_eq!(lc.running(), ["plugindemo"], "{:?}", lc.outcomes());
    let record = std::fs::read_to_string(dir.path().join("last_start.json")).unwrap();
    assert!(record.contains("0.5"), "{record}");
    lc.shutdown();
    // Out of range: the plugin refuses it in init with XPLUGIN_ERR_CONFIG.
    let mut lc = Lifecycle::new("2.1.0", Bus::new());
    let mut d = spec(
        "plugindemo",
        &demo,
        XPLUGIN_KIND_CONTROLLER,
        &[],
        r#"{"speed_override": 1.5}"#,
        dir.path(),
    );
    d.version = "1.0.0".into();
    // SAFETY: every plugin comes from `spec` (see there).
    unsafe { lc.init_all(vec![d]) };
    match state(&lc, "plugindemo") {
        LifecycleState::Failed { stage, reason } => {
            assert_eq!(stage, Stage::Init);
            assert!(
                reason.contains("XPLUGIN_ERR_CONFIG") && reason.contains("speed_override"),
                "{reason}"
            );
        }
        s => panic!("{s:?}"),
    }
}
