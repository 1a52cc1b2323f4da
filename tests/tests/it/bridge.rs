//! Client plugins and controller plugins talking over the pendant link (the
//! manifests' `bridge`): two real processes on 127.0.0.1, the controller's
//! daemon and `xplugin-client run --until-stopped --controller`.
//!
//! The package: the examples (the pendant's plugindemo "presses its button"
//! when the link comes up; the controller's plugindemo answers on
//! `plugindemo/motion`), a controller fixture `flood` that publishes 5000
//! messages on `flood/data` each time the link comes up (a client fixture
//! `sink` receives that topic), and a client fixture `nosy` that declares a
//! topic no controller plugin in its ctrlDepend receives.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use xplugin_tests::build::{c_fixture, plugin_folder};
use xplugin_tests::daemon::{ready_timeout, Daemon};
use xplugin_tests::link::{daemon, free_port, pair, pendant_runner};
use xplugin_tests::scenario::Scenario;

struct Pendant {
    child: Child,
    log: PathBuf,
}

impl Pendant {
    fn start(s: &Scenario, address: &str, name: &str) -> Pendant {
        let log = s.tmp.path().join(format!("{name}.log"));
        let err = std::fs::File::create(&log).unwrap();
        let child = pendant_runner(s, address)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Pendant { child, log }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) -> (i32, String) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let code = self.child.wait().map_or(-1, |s| s.code().unwrap_or(-1));
        (code, self.text())
    }
}

impl Drop for Pendant {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `text()` holds `needle` `times` times.
fn wait_for(what: &str, needle: &str, times: usize, text: impl Fn() -> String) -> String {
    let start = Instant::now();
    loop {
        let t = text();
        if t.matches(needle).count() >= times {
            return t;
        }
        assert!(
            start.elapsed() < ready_timeout(),
            "{what}: no {times} x {needle:?} within {:?}:\n{t}",
            ready_timeout()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fixture_folder(s: &Scenario, side: &str, name: &str, lib: &Path, manifest: String) {
    plugin_folder(&s.plugins.join(side), name, lib, &manifest);
}

fn world() -> (Scenario, String) {
    let s = Scenario::new();
    let flood = c_fixture(
        "flood",
        &[
            "FIXTURE_ON_LINK_TOPIC=\"flood/data\"",
            "FIXTURE_ON_LINK_COUNT=5000",
        ],
    );
    fixture_folder(
        &s,
        "controller",
        "flood",
        &flood,
        r#"{"controller_plugin": {"name": "flood", "depend": [], "enable": true, "version": "0.1.0",
            "bridge": {"send": ["flood/data"]}}}"#
            .into(),
    );
    let client = ["FIXTURE_KIND=XPLUGIN_KIND_CLIENT"];
    let sink = c_fixture("sink", &client);
    fixture_folder(
        &s,
        "client",
        "sink",
        &sink,
        r#"{"client_plugin": {"name": "sink", "depend": [], "ctrlDepend": ["flood"], "enable": true,
            "version": "0.1.0", "bridge": {"receive": ["flood/data"]}}}"#
            .into(),
    );
    let nosy = c_fixture(
        "nosy",
        &[
            "FIXTURE_KIND=XPLUGIN_KIND_CLIENT",
            "FIXTURE_ON_LINK_TOPIC=\"nobody/listens\"",
        ],
    );
    fixture_folder(
        &s,
        "client",
        "nosy",
        &nosy,
        r#"{"client_plugin": {"name": "nosy", "depend": [], "ctrlDepend": ["plugindemo"], "enable": true,
            "version": "0.1.0", "bridge": {"send": ["nobody/listens"]}}}"#
            .into(),
    );
    s.license_all();
    let pkg = s.pack("bridge");
    s.import(&pkg, &[]).ok();
    let address = format!("127.0.0.1:{}", free_port());
    pair(&s, &address, "install");
    (s, address)
}

fn status(d: &Daemon) -> serde_json::Value {
    d.cli(&["status", "--json"]).ok().json()
}

#[test]
fn client_and_controller_plugins_talk_over_the_link_within_bounds_and_learn_when_it_drops() {
    let (s, address) = world();
    let d = daemon(&s, &address, &[]);
    let p = Pendant::start(&s, &address, "pendant-1");

    // Round trip: the pendant's button reaches the controller's plugindemo,
    // whose answer reaches the pendant's plugindemo.
    let pendant_log = wait_for(
        "the pendant",
        "plugindemo (client): the controller answered: motion started for \"button",
        1,
        || p.text(),
    );
    let log = d.log_text();
    assert!(
        log.contains("plugindemo: button from the pendant: button"),
        "{log}"
    );
    assert!(log.contains("plugindemo: pendant link up"), "{log}");

    // An undeclared crossing is refused by name, on both sides.
    assert!(
        pendant_log.contains("topic \"nobody/listens\" does not cross the link"),
        "{pendant_log}"
    );
    assert!(
        pendant_log.contains("client plugin \"nosy\""),
        "{pendant_log}"
    );
    assert!(log.contains("nobody/listens"), "{log}");

    // The flood from `flood` is dropped at its own bounds; plugindemo's
    // messages were not touched by it.
    wait_for(
        "the controller",
        "flood: link up, published 5000",
        1,
        || d.log_text(),
    );
    let st = status(&d);
    let bridge = &st["bridge"];
    assert_eq!(bridge["connected"], true, "{st:#}");
    let flood = &bridge["plugins"]["flood"];
    let n = |k: &str| flood[k].as_u64().unwrap_or(0);
    let dropped = n("dropped_rate") + n("dropped_queue");
    // Over its rate (a burst of 200, then 1000/s) it is dropped; every
    // message is accounted for: sent, dropped, or (at most 64) waiting.
    assert!(dropped > 0 && n("sent") > 0, "{bridge:#}");
    let accounted = n("sent") + dropped + n("dropped_no_link");
    assert!(
        (5000 - 64..=5000).contains(&accounted),
        "{accounted}: {bridge:#}"
    );
    let demo = &bridge["plugins"]["plugindemo"];
    assert_eq!(demo["received"], 1, "{bridge:#}");
    assert_eq!(demo["sent"], 1, "{bridge:#}");
    for k in [
        "dropped_rate",
        "dropped_queue",
        "dropped_too_large",
        "refused",
    ] {
        assert_eq!(demo[k], 0, "{k}: {bridge:#}");
    }
    let routes = bridge["routes"].as_array().cloned().unwrap_or_default();
    assert!(
        routes.iter().all(|r| r["topic"] != "nobody/listens"),
        "{bridge:#}"
    );
    let text = d.cli(&["status"]).ok().stdout;
    assert!(
        text.contains("plugin message bridge: connected to pendant"),
        "{text}"
    );

    // The pendant goes away: the controller's plugin hears it.
    let (code, pendant_log) = p.stop();
    assert_eq!(code, 0, "{pendant_log}");
    assert!(
        pendant_log.contains("plugin message bridge: plugindemo: sent 1, received 1"),
        "{pendant_log}"
    );
    wait_for("the controller", "plugindemo: pendant link down", 1, || {
        d.log_text()
    });
    assert_eq!(status(&d)["bridge"]["connected"], false);

    // A new pendant session: one more button, one more answer; nothing of
    // the first session is delivered again.
    let p = Pendant::start(&s, &address, "pendant-2");
    wait_for(
        "the second pendant",
        "plugindemo (client): the controller answered",
        1,
        || p.text(),
    );
    let log = d.log_text();
    assert_eq!(
        log.matches("plugindemo: button from the pendant").count(),
        2,
        "{log}"
    );
    assert_eq!(status(&d)["bridge"]["sessions"], 2);

    // The controller goes away: the pendant's plugin hears it.
    assert_eq!(d.stop(), 0);
    wait_for(
        "the second pendant",
        "plugindemo (client): controller link down",
        1,
        || p.text(),
    );
    let (code, text) = p.stop();
    assert_eq!(code, 0, "{text}");
}
