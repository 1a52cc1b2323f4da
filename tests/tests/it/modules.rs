//! Entry modules (ABI 1.1 `xplugin_modules`) and the client render stage,
//! through `xplugin_host::lifecycle` with real libraries: the C test plugin
//! `examples/test-plugins/c/modules.c` (the header's C macros) and the Rust
//! fixture `rcell` (`export_plugin!`'s `modules = [...]`). Both list their
//! modules out of order (alpha 10, safety 20, beta 10); the host must run
//! them as safety, alpha, beta, stop in exact reverse of start and destroy
//! in exact reverse of init, and fail the plugin with the module named.

use std::path::{Path, PathBuf};
use xplugin_abi::{RenderContext, XPLUGIN_KIND_CLIENT, XPLUGIN_KIND_CONTROLLER};
use xplugin_host::checks::check_plugin_file;
use xplugin_host::lifecycle::{Lifecycle, LifecycleState, PluginToLoad, Reconfigured};
use xplugin_host::services::Bus;
use xplugin_host::stage::Stage;
use xplugin_tests::build::{c_fixture, c_modules_fixture, cdylib_path};

/// A plugin to load. Every `init_all` here loads only libraries the test
/// helpers just built from this repository, passed through
/// `check_plugin_file` (architecture, ABI tag, kind); that, and not being a
/// vendor package needing a license, is what `init_all` requires.
fn spec(name: &str, lib: &Path, kind: u32, depend: &[&str], config: &str) -> PluginToLoad {
    PluginToLoad {
        name: name.to_string(),
        version: "0.1.0".to_string(),
        library: check_plugin_file(lib, kind).unwrap_or_else(|e| panic!("{name}: {e}")),
        config_json: config.to_string(),
        depend: depend.iter().map(|s| s.to_string()).collect(),
        data_dir: std::env::temp_dir(),
        cycle_budget_ns: 0,
        enable: true,
    }
}

struct Trace {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Trace {
    fn new() -> Trace {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.log");
        Trace { _dir: dir, path }
    }

    /// The configuration JSON that makes the plugins record here, with
    /// `extra` keys.
    fn config(&self, extra: serde_json::Value) -> String {
        let mut c = serde_json::json!({ "trace_file": self.path });
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        c.to_string()
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

fn lines(prefix: &str, modules: &[&str], stage: &str) -> Vec<String> {
    modules
        .iter()
        .map(|m| format!("{prefix}/{m}:{stage}"))
        .collect()
}

const START_ORDER: [&str; 3] = ["safety", "alpha", "beta"];
const REVERSE: [&str; 3] = ["beta", "alpha", "safety"];

fn state(lc: &Lifecycle, name: &str) -> LifecycleState {
    lc.outcomes()
        .into_iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("{name} not in outcomes"))
        .state
}

#[test]
fn c_modules_run_by_priority_then_name_and_stop_and_destroy_in_exact_reverse() {
    let trace = Trace::new();
    let cfg = trace.config(serde_json::json!({}));
    let dep = c_fixture("dep", &["FIXTURE_RECORD"]);
    let after = c_fixture("after", &["FIXTURE_RECORD"]);
    let cell = c_modules_fixture("cell", &[]);
    let mut lc = Lifecycle::new("2.1.0", Bus::new());
    // SAFETY: every plugin comes from `spec` (see there).
    unsafe {
        lc.init_all(vec![
            spec("dep", &dep, XPLUGIN_KIND_CONTROLLER, &[], &cfg),
            spec("cell", &cell, XPLUGIN_KIND_CONTROLLER, &["dep"], &cfg),
            spec("after", &after, XPLUGIN_KIND_CONTROLLER, &["cell"], &cfg),
        ])
    };
    lc.start_all();
    assert_eq!(
        lc.running(),
        ["dep", "cell", "after"],
        "{:?}",
        lc.outcomes()
    );
    let running = lc.outcomes();
    let modules: Vec<(String, i32, &str)> = running[1]
        .modules
        .iter()
        .map(|m| (m.name.clone(), m.priority, m.state))
        .collect();
    assert_eq!(
        modules,
        [
            ("safety".to_string(), 20, "running"),
            ("alpha".to_string(), 10, "running"),
            ("beta".to_string(), 10, "running"),
        ]
    );
    // A library without a module list reports none.
    assert!(running[0].modules.is_empty());
    lc.shutdown();
    let mut expected = vec!["dep:init".to_string()];
    expected.extend(lines("cell", &START_ORDER, "init"));
    expected.push("after:init".into());
    expected.push("dep:start".into());
    expected.extend(lines("cell", &START_ORDER, "start"));
    expected.push("after:start".into());
    expected.push("after:stop".into());
    expected.extend(lines("cell", &REVERSE, "stop"));
    expected.push("dep:stop".into());
    expected.push("after:destroy".into());
    expected.extend(lines("cell", &REVERSE, "destroy"));
    expected.push("dep:destroy".into());
    assert_eq!(trace.lines(), expected);
    let outcome = &lc.outcomes()[1];
    assert!(outcome.modules.iter().all(|m| m.state == "destroyed"));
    let stages: Vec<(Stage, u64, u64)> = outcome
        .stages
        .iter()
        .map(|s| (s.stage, s.calls, s.failures))
        .collect();
    assert_eq!(
        stages,
        [
            (Stage::Init, 1, 0),
            (Stage::Start, 1, 0),
            (Stage::Stop, 1, 0),
            (Stage::Destroy, 1, 0)
        ]
    );
}

#[test]
fn rust_modules_from_export_plugin_run_in_order_and_all_step_in_the_cycle() {
    let trace = Trace::new();
    let lib = cdylib_path("modules");
    let mut lc = Lifecycle::new("2.1.0", Bus::new());
    let cfg = trace.config(serde_json::json!({}));
    // SAFETY: every plugin comes from `spec` (see there).
    unsafe {
        lc.init_all(vec![spec(
            "rcell",
            &lib,
            XPLUGIN_KIND_CONTROLLER,
            &[],
            &cfg,
        )])
    };
    lc.start_all();
    assert_eq!(lc.running(), ["rcell"], "{:?}", lc.outcomes());
    // One cycle slot for the plugin, stepping its three modules.
    let plugins = lc.cycle_plugins();
    assert_eq!(plugins.len(), 1);
    let timing = crate::loading::run_cycles(&lc, plugins, 200_000, 20);
    assert_eq!(timing.plugins["rcell"].step_ns.count, 20);
    assert_eq!(timing.plugins["rcell"].failures, 0);
    lc.shutdown();
    let mut expected = lines("rcell", &START_ORDER, "init");
    expected.extend(lines("rcell", &START_ORDER, "start"));
    expected.extend(lines("rcell", &START_ORDER, "step"));
    expected.extend(lines("rcell", &REVERSE, "stop"));
    expected.extend(lines("rcell", &REVERSE, "destroy"));
    assert_eq!(trace.lines(), expected);
}

#[test]
fn a_failing_module_init_fails_its_plugin_destroys_its_siblings_and_skips_dependents() {
    for (name, lib) in [
        (
            "cell",
            c_modules_fixture("cell", &["MODULES_FAIL_INIT=\"alpha\""]),
        ),
        ("rcell", cdylib_path("modules")),
    ] {
        let trace = Trace::new();
        let cfg = trace.config(serde_json::json!({ "fail_init": "alpha" }));
        let after = c_fixture("after", &["FIXTURE_RECORD"]);
        let other = c_fixture("other", &["FIXTURE_RECORD"]);
        let mut lc = Lifecycle::new("2.1.0", Bus::new());
        // SAFETY: every plugin comes from `spec` (see there).
        unsafe {
            lc.init_all(vec![
                spec(name, &lib, XPLUGIN_KIND_CONTROLLER, &[], &cfg),
                spec("after", &after, XPLUGIN_KIND_CONTROLLER, &[name], &cfg),
                spec("other", &other, XPLUGIN_KIND_CONTROLLER, &[], &cfg),
            ])
        };
        lc.start_all();
        match state(&lc, name) {
            LifecycleState::Failed { stage, reason } => {
                assert_eq!(stage, Stage::Init);
                assert!(
                    reason.contains("module \"alpha\"") && reason.contains("deliberate failure"),
                    "{reason}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
        match state(&lc, "after") {
            LifecycleState::Skipped { reason } => {
                assert!(
                    reason.contains(&format!("depends on {name}, which failed")),
                    "{reason}"
                );
                assert!(reason.contains("module \"alpha\""), "{reason}");
            }
            other => panic!("after: {other:?}"),
        }
        assert_eq!(lc.running(), ["other"]);
        lc.shutdown();
        // safety initialised, alpha failed: safety is destroyed at once;
        // beta never ran.
        let ours: Vec<String> = trace
            .lines()
            .into_iter()
            .filter(|l| l.starts_with(&format!("{name}/")))
            .collect();
        assert_eq!(
            ours,
            [
                format!("{name}/safety:init"),
                format!("{name}/alpha:init"),
                format!("{name}/safety:destroy"),
            ]
        );
        let o = &lc.outcomes()[0];
        let states: Vec<&str> = o.modules.iter().map(|m| m.state).collect();
        assert_eq!(states, ["failed", "failed", "failed"], "{o:?}");
    }
}

#[test]
fn a_failing_module_start_stops_the_started_ones_and_every_module_is_destroyed() {
    for (name, lib) in [
        (
            "cell",
            c_modules_fixture("cell", &["MODULES_FAIL_START=\"alpha\""]),
        ),
        ("rcell", cdylib_path("modules")),
    ] {
        let trace = Trace::new();
        let cfg = trace.config(serde_json::json!({ "fail_start": "alpha" }));
        let mut lc = Lifecycle::new("2.1.0", Bus::new());
        // SAFETY: every plugin comes from `spec` (see there).
        unsafe { lc.init_all(vec![spec(name, &lib, XPLUGIN_KIND_CONTROLLER, &[], &cfg)]) };
        lc.start_all();
        match state(&lc, name) {
            LifecycleState::Failed { stage, reason } => {
                assert_eq!(stage, Stage::Start);
                assert!(reason.contains("module \"alpha\""), "{reason}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(lc.cycle_plugins().is_empty());
        lc.shutdown();
        let mut expected = lines(name, &START_ORDER, "init");
        expected.extend(lines(name, &["safety", "alpha"], "start"));
        // alpha's start failed: no stop for it; safety is stopped.
        expected.push(format!("{name}/safety:stop"));
        expected.extend(lines(name, &REVERSE, "destroy"));
        assert_eq!(trace.lines(), expected, "{name}");
    }
}

#[test]
fn a_module_refusing_reconfigure_gives_the_others_their_old_configuration_back() {
    let trace = Trace::new();
    let cell = c_modules_fixture("cell", &[]);
    let cfg = trace.config(serde_json::json!({ "gain": 1 }));
    let mut lc = Lifecycle::new("2.1.0", Bus::new());
    // SAFETY: every plugin comes from `spec` (see there).
    unsafe {
        lc.init_all(vec![spec(
            "cell",
            &cell,
            XPLUGIN_KIND_CONTROLLER,
            &[],
            &cfg,
        )])
    };
    lc.start_all();
    let ok = trace.config(serde_json::json!({ "gain": 2 }));
    assert_eq!(lc.reconfigure("cell", &ok), Reconfigured::Applied);
    let refused = trace.config(serde_json::json!({ "gain": "refuse" }));
    match lc.reconfigure("cell", &refused) {
        Reconfigured::Refused(why) => {
            assert!(
                why.contains("module \"beta\"") && why.contains("refuses"),
                "{why}"
            );
        }
        other => panic!("{other:?}"),
    }
    lc.shutdown();
    let reconfigures: Vec<String> = trace
        .lines()
        .into_iter()
        .filter(|l| l.ends_with(":reconfigure"))
        .collect();
    let mut expected = lines("cell", &START_ORDER, "reconfigure");
    // The refused change: safety and alpha take it, beta refuses, alpha and
    // safety (reverse) get the previous one back.
    expected.extend(lines("cell", &START_ORDER, "reconfigure"));
    expected.extend(lines("cell", &["alpha", "safety"], "reconfigure"));
    assert_eq!(reconfigures, expected);
}

#[test]
fn a_malformed_module_list_refuses_the_plugin_naming_the_problem() {
    let trace = Trace::new();
    let cfg = trace.config(serde_json::json!({}));
    let lib = c_modules_fixture("cell", &["MODULES_DUPLICATE_NAME"]);
    let mut lc = Lifecycle::new("2.1.0", Bus::new());
    // SAFETY: every plugin comes from `spec` (see there).
    unsafe { lc.init_all(vec![spec("cell", &lib, XPLUGIN_KIND_CONTROLLER, &[], &cfg)]) };
    match state(&lc, "cell") {
        LifecycleState::Failed { stage, reason } => {
            assert_eq!(stage, Stage::Load);
            assert!(
                reason.contains("two modules are named \"alpha\""),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Nothing of it ran.
    assert!(trace.lines().is_empty(), "{:?}", trace.lines());
}

#[test]
fn render_runs_after_every_start_in_module_order_and_a_failure_keeps_the_plugin_running() {
    let trace = Trace::new();
    let cfg = trace.config(serde_json::json!({}));
    let ui = c_modules_fixture(
        "ui",
        &[
            "MODULES_KIND=XPLUGIN_KIND_CLIENT",
            "MODULES_RENDER",
            "MODULES_FAIL_RENDER=\"alpha\"",
        ],
    );
    let plain = c_fixture(
        "plain",
        &["FIXTURE_RECORD", "FIXTURE_KIND=XPLUGIN_KIND_CLIENT"],
    );
    let mut lc = Lifecycle::new("3.0.2", Bus::new());
    // SAFETY: every plugin comes from `spec` (see there).
    unsafe {
        lc.init_all(vec![
            spec("ui", &ui, XPLUGIN_KIND_CLIENT, &[], &cfg),
            spec("plain", &plain, XPLUGIN_KIND_CLIENT, &[], &cfg),
        ])
    };
    lc.start_all();
    let ctx = RenderContext {
        struct_size: std::mem::size_of::<RenderContext>() as u32,
        toolkit: xplugin_abi::XPLUGIN_TOOLKIT_NONE,
        parent: std::ptr::null_mut(),
        width: 0,
        height: 0,
    };
    let failures = lc.render_all(&ctx);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "ui");
    assert!(failures[0].1.contains("module \"alpha\""), "{failures:?}");
    assert_eq!(lc.running(), ["ui", "plain"]);
    lc.shutdown();
    let lines_seen = trace.lines();
    let renders: Vec<&String> = lines_seen
        .iter()
        .filter(|l| l.contains(":render"))
        .collect();
    assert_eq!(
        renders,
        ["ui/safety:render", "ui/alpha:render", "ui/beta:render"]
    );
    // Render after every start.
    let last_start = lines_seen.iter().rposition(|l| l.ends_with(":start"));
    let first_render = lines_seen.iter().position(|l| l.ends_with(":render"));
    assert!(last_start < first_render, "{lines_seen:?}");
    let outcomes = lc.outcomes();
    let render = |name: &str| {
        outcomes
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| o.stages.iter().find(|s| s.stage == Stage::Render).cloned())
            .unwrap_or_else(|| panic!("{name}: no render stage in {outcomes:?}"))
    };
    let ui_render = render("ui");
    assert_eq!((ui_render.calls, ui_render.failures), (1, 1));
    let plain_render = render("plain");
    assert!(!plain_render.provided, "{plain_render:?}");
}
