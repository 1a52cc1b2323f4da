//! The pendant link with two real processes over loopback: pairing, an
//! import forwarded to the running daemon, applied and reported back.

use xplugin_tests::link::{daemon, free_port, import_online, pair};
use xplugin_tests::scenario::Scenario;

fn installed() -> Scenario {
    let s = Scenario::new();
    s.license_all();
    s
}

#[test]
fn an_import_is_forwarded_applied_by_the_daemon_and_reported_back() {
    let s = installed();
    let address = format!("127.0.0.1:{}", free_port());
    pair(&s, &address, "install");
    let d = daemon(&s, &address, &[]);
    let pkg = s.pack("v1");
    let r = import_online(&s, &pkg, &address, &["--apply", "now"], &[]);
    assert_eq!(r.code, 0, "{}\n--- daemon\n{}", r.all(), d.log_text());
    let v = r.json();
    assert_eq!(v["committed"], true, "{v}");
    assert_eq!(v["applied"]["running"].as_u64(), Some(1), "{v}");
    assert_eq!(d.stop(), 0);
}
