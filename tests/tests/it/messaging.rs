//! Message callbacks that call the host back: a real C plugin, and a Rust
//! `Subscription`, unsubscribing from inside their own callback (which used
//! to deadlock on the host's delivery lock), publishing again from it,
//! unsubscribing another subscription and subscribing anew.
//!
//! Each runs on a thread of its own under a deadline, so that a deadlock
//! regression fails the test instead of hanging the suite.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xplugin_abi::{Host, Subscription, XPLUGIN_KIND_CONTROLLER};
use xplugin_host::checks::check_plugin_file;
use xplugin_host::lifecycle::{Lifecycle, LifecycleState, PluginToLoad};
use xplugin_host::services::{Bus, PluginHost};
use xplugin_tests::build::c_fixture;

/// Generous: the work takes milliseconds, but the suite may run under qemu.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `f` on its own thread; panics if it does not finish by [`DEADLINE`].
fn within_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: not done after {DEADLINE:?}; the host deadlocked")
        }
        // The thread panicked: its message is already printed above.
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the test thread panicked"),
    }
}

#[test]
fn a_c_plugin_unsubscribes_itself_and_others_and_publishes_from_inside_its_callback() {
    let lib = c_fixture("msgcb", &["FIXTURE_MESSAGING", "FIXTURE_RECORD"]);
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.log");
    let config = serde_json::json!({ "trace_file": trace }).to_string();
    let data_dir = dir.path().to_path_buf();
    let (outcome, running) = within_deadline("C plugin's re-entrant callbacks", move || {
        let mut lc = Lifecycle::new("2.1.0", Bus::new());
        let spec = PluginToLoad {
            name: "msgcb".into(),
            version: "0.1.0".into(),
            library: check_plugin_file(&lib, XPLUGIN_KIND_CONTROLLER).unwrap(),
            config_json: config,
            depend: Vec::new(),
            data_dir,
            cycle_budget_ns: 0,
            enable: true,
        };
        // SAFETY: a fixture the test helpers just compiled from this
        // repository, passed through `check_plugin_file` above (the other
        // package checks concern vendors' packages).
        unsafe { lc.init_all(vec![spec]) };
        // The plugin's start runs the whole exercise (fixture.c,
        // FIXTURE_MESSAGING) and fails unless every call did what the header
        // documents.
        lc.start_all();
        let running = lc.running();
        let outcome = lc.outcomes().remove(0).state;
        lc.shutdown();
        (outcome, running)
    });
    assert_eq!(running, ["msgcb"], "{outcome:?}");
    assert_eq!(outcome, LifecycleState::Running);
    let lines = std::fs::read_to_string(&trace).unwrap();
    assert!(
        lines
            .lines()
            .any(|l| l == "msgcb:messaging self=2 other=0 late=1 status=0,0,0,0"),
        "{lines}"
    );
    assert!(lines.ends_with("msgcb:stop\nmsgcb:destroy\n"), "{lines}");
}

/// Counts how often it is dropped.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_rust_subscription_dropped_inside_its_own_callback_frees_the_closure_after_the_call() {
    let (calls, drops_during_call, drops_after) =
        within_deadline("Rust subscription dropped in its callback", || {
            let bus = Bus::new();
            let plugin_host = PluginHost::new(
                "rustsub",
                "2.1.0",
                Path::new("/nonexistent"),
                Default::default(),
                Arc::clone(&bus),
            );
            // SAFETY: the table of `plugin_host`, which lives until the end of
            // this closure, after every use of `host`.
            let host = unsafe { Host::from_raw(plugin_host.api()) };
            let slot: Arc<Mutex<Option<Subscription>>> = Arc::default();
            let drops = Arc::new(AtomicUsize::new(0));
            let calls = Arc::new(AtomicUsize::new(0));
            let drops_during_call = Arc::new(AtomicUsize::new(usize::MAX));
            let subscription = {
                let counter = DropCounter(Arc::clone(&drops));
                let (slot, drops, calls, during) = (
                    Arc::clone(&slot),
                    Arc::clone(&drops),
                    Arc::clone(&calls),
                    Arc::clone(&drops_during_call),
                );
                host.subscribe("rustsub/self", move |_, _| {
                    let _keep = &counter;
                    calls.fetch_add(1, Ordering::SeqCst);
                    // Unsubscribes and schedules the closure's release.
                    drop(slot.lock().unwrap().take());
                    // Still running, so not freed yet.
                    during.store(drops.load(Ordering::SeqCst), Ordering::SeqCst);
                })
                .unwrap()
            };
            *slot.lock().unwrap() = Some(subscription);
            assert_eq!(bus.publish("rustsub/self", b"x"), Ok(1));
            assert_eq!(bus.publish("rustsub/self", b"x"), Ok(0), "unsubscribed");
            let result = (
                calls.load(Ordering::SeqCst),
                drops_during_call.load(Ordering::SeqCst),
                drops.load(Ordering::SeqCst),
            );
            drop(plugin_host);
            result
        });
    assert_eq!(calls, 1);
    assert_eq!(
        drops_during_call, 0,
        "the closure was freed under its own call"
    );
    assert_eq!(drops_after, 1, "the closure was not freed after its call");
}

#[test]
fn the_header_states_the_bounds_the_host_enforces() {
    use xplugin_host::services::{
        MAX_DELIVERY_DEPTH, MAX_NAME_LEN, MAX_SERVICES, MAX_SUBSCRIPTIONS,
    };
    let header = xplugin_tests::build::workspace_root().join("xplugin-abi/include/xplugin.h");
    let text = std::fs::read_to_string(&header).unwrap();
    // The comments wrap lines; compare with runs of whitespace folded.
    let text = text
        .split_whitespace()
        .filter(|w| *w != "*")
        .collect::<Vec<_>>()
        .join(" ");
    for phrase in [
        format!("up to {MAX_DELIVERY_DEPTH} nested deliveries per thread"),
        format!("inside {MAX_DELIVERY_DEPTH} nested deliveries"),
        format!("host holds {MAX_SUBSCRIPTIONS} subscriptions"),
        format!("host holds {MAX_SERVICES} services"),
        format!("longer than {MAX_NAME_LEN} bytes"),
    ] {
        assert!(
            text.contains(&phrase),
            "{} no longer says \"{phrase}\": update the header with the host's bound",
            header.display()
        );
    }
}
