//! The pendant link with two real processes over loopback (the daemon,
//! `xplugin-controller run --listen`, and `xplugin-client`): pairing; an
//! import forwarded, applied by the running daemon and reported back;
//! refusals of an unknown pendant key and a wrong controller key (and the
//! negative control: with pinning switched off the same checks fail); a
//! status-role pendant; replayed handshakes and frames; oversized and
//! truncated frames; a slow peer; older and newer protocol sessions from
//! fixtures; and SIGKILL of either process (and dropped connections) at
//! every named durability and protocol boundary of an install over both
//! computers, each ending old/old or new/new, verified file by file.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xplugin_tests::build::{bin_path, runner_prefix, target_command};
use xplugin_tests::daemon::Daemon;
use xplugin_tests::link::{
    client_env, copy_tree, daemon, free_port, identity, import_online, installed, pair,
    pendant_runner, seeded, tree, Proxy, Tamper,
};
use xplugin_tests::problems::codes;
use xplugin_tests::scenario::{Run, Scenario};

/// The two roots, a v1 and a v2 of every plugin (v2: one more file each
/// and other data, installed with --force: the example libraries carry
/// their version, so the manifests keep theirs), snapshots of both as the
/// vendor laid them out, and the link paired at `address`.
struct World {
    s: Scenario,
    address: String,
    v1: PathBuf,
    v2: PathBuf,
    pkg_v2: PathBuf,
}

/// Bytes that do not compress (a plugin's data file that makes the
/// controller part span many upload chunks).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn world() -> World {
    let s = Scenario::new();
    let data = s.folder("controller", "motionlog").join("data.bin");
    std::fs::write(&data, noise(1_600_000, 1)).unwrap();
    s.license_all();
    let pkg_v1 = s.pack("v1");
    let v1 = s.tmp.path().join("plugins-v1");
    copy_tree(&s.plugins, &v1);
    s.import(&pkg_v1, &[]).ok();
    for side in ["client", "controller"] {
        for e in std::fs::read_dir(s.plugins.join(side)).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            std::fs::write(e.path().join("v2-notes.txt"), format!("{name} v2\n")).unwrap();
        }
    }
    std::fs::write(&data, noise(1_600_000, 2)).unwrap();
    s.license_all();
    let pkg_v2 = s.pack("v2");
    let v2 = s.tmp.path().join("plugins-v2");
    copy_tree(&s.plugins, &v2);
    let address = format!("127.0.0.1:{}", free_port());
    pair(&s, &address, "install");
    World {
        s,
        address,
        v1,
        v2,
        pkg_v2,
    }
}

/// Which snapshot a root's installed files are, compared file by file.
fn version_of(w: &World, root: &Path, side: &str) -> Result<&'static str, String> {
    let have = installed(root);
    for (name, snap) in [("old", &w.v1), ("new", &w.v2)] {
        if have == tree(&snap.join(side)) {
            return Ok(name);
        }
    }
    let old = tree(&w.v1.join(side));
    let differ: Vec<&String> = have
        .keys()
        .chain(old.keys())
        .filter(|k| have.get(*k) != old.get(*k))
        .take(6)
        .collect();
    Err(format!(
        "{side} root holds neither v1 nor v2 (differs from v1 in {differ:?})"
    ))
}

/// Both computers hold the same installation, nothing is left undecided:
/// `old` or `new`.
fn consistent(w: &World, point: &str) -> &'static str {
    let client = version_of(w, &w.s.client_root, "client");
    let controller = version_of(w, &w.s.controller_root, "controller");
    let (Ok(c), Ok(k)) = (&client, &controller) else {
        panic!("{point}: {client:?} / {controller:?}");
    };
    assert_eq!(c, k, "{point}: pendant {c}, controller {k}: a mix");
    assert!(
        !w.s.client_root.join("state/link/pending.json").exists(),
        "{point}: the pendant's journal is left"
    );
    for root in [&w.s.client_root, &w.s.controller_root] {
        for e in std::fs::read_dir(root.join("transactions"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let record = std::fs::read_to_string(e.path().join("record.json")).unwrap_or_default();
            assert!(
                !record.contains("\"preparing\"") && !record.contains("\"prepared\""),
                "{point}: an open transaction is left in {}: {record}",
                root.display()
            );
        }
    }
    c
}

/// Settles an undecided install (every link command does first).
fn settle(w: &World) -> Run {
    w.s.client(&["controller-status", "--controller", &w.address, "--json"])
}

/// Back to v1 on both computers (the daemon, if one runs, boots it later).
fn reset(w: &World, d: Option<&Daemon>) {
    match d {
        Some(d) => {
            d.cli(&["rollback", "--apply", "next-boot"]).ok();
        }
        None => {
            w.s.controller(&["rollback"]).ok();
        }
    }
    w.s.client(&["rollback"]).ok();
    assert_eq!(consistent(w, "reset"), "old");
}

#[test]
fn pairing_prints_keys_and_says_what_the_other_side_must_do() {
    let s = Scenario::new();
    let first = s.client(&["identity"]).ok();
    let key = first.stdout.lines().next().unwrap_or_default().to_string();
    assert_eq!(key.len(), 64, "{}", first.all());
    assert!(first.stdout.contains("fingerprint "), "{}", first.all());
    assert!(
        first.stdout.contains("xplugin-controller pair"),
        "{}",
        first.all()
    );
    let mode = std::fs::metadata(s.client_root.join("state/identity/identity.json"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600);
    // The same key again; a rotated one says who must pair again.
    assert_eq!(identity(&s, "xplugin-client"), key);
    let rotated = s.client(&["identity", "--rotate", "--json"]).ok().json();
    assert_eq!(rotated["made"], "rotated");
    assert_eq!(rotated["previous"], key.as_str());
    assert!(rotated["next"].to_string().contains("unpair"), "{rotated}");
    // A disk image copied to another device makes a new identity.
    let before = identity(&s, "xplugin-controller");
    std::fs::write(&s.machine_id, "fedcba9876543210fedcba9876543210\n").unwrap();
    let moved = s.controller(&["identity", "--json"]).ok().json();
    assert_eq!(moved["made"], "device-changed", "{moved}");
    assert_ne!(moved["key"], before.as_str());
    // Pairing and unpairing, both sides.
    let pk = identity(&s, "xplugin-client");
    s.controller(&["pair", &pk, "--role", "status"]).ok();
    let again = s.controller(&["pair", &pk, "--json"]).ok().json();
    assert_eq!(again["previous_role"], "status");
    s.controller(&["unpair", &pk]).ok();
    let r = s.controller(&["unpair", &pk, "--json"]);
    assert_eq!(codes(&r), ["link.not_paired"], "{}", r.all());
    let ck = identity(&s, "xplugin-controller");
    s.client(&["pair", "127.0.0.1", &ck]).ok();
    s.client(&["unpair", "127.0.0.1:7411"]).ok();
    let bad = s.client(&["pair", "127.0.0.1", "not-a-key", "--json"]);
    assert_eq!(codes(&bad), ["link.bad_key"], "{}", bad.all());
}

#[test]
fn an_import_is_forwarded_applied_by_the_daemon_and_reported_back() {
    let w = world();
    let d = daemon(&w.s, &w.address, &[]);
    let status = settle(&w).ok().json();
    assert_eq!(status["running"].as_u64(), Some(1), "{status}");
    let r = import_online(
        &w.s,
        &w.pkg_v2,
        &w.address,
        &["--apply", "now", "--force"],
        &[],
    );
    assert_eq!(r.code, 0, "{}\n--- daemon\n{}", r.all(), d.log_text());
    let v = r.json();
    assert_eq!(v["committed"], true, "{v}");
    assert_eq!(v["apply"]["state"], "scheduled", "{v}");
    // Applied by the running daemon (re-executed in place) and reported back.
    assert_eq!(v["applied"]["running"].as_u64(), Some(2), "{v}");
    let plugins = v["applied"]["plugins"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        plugins
            .iter()
            .all(|p| p["state"] == "running" && p["library_sha256"].is_string()),
        "{v}"
    );
    assert_eq!(consistent(&w, "forwarded"), "new");
    let status = settle(&w).ok();
    assert!(
        status.stdout.contains("generation 2 running"),
        "{}",
        status.all()
    );
    // The client plugins run with ctrlDepend checked against what runs there.
    let run = w.s.client(&[
        "run",
        "--controller",
        &w.address,
        "--hmi-version",
        "3.0.2",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_running_pendant_is_told_about_its_new_generation_and_restarts() {
    let w = world();
    let d = daemon(&w.s, &w.address, &[]);
    let mut runner = pendant_runner(&w.s, &w.address)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let runner_file = w.s.client_root.join("state/link/runner.json");
    let wait_for = |generation: u64| {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&runner_file).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if v["generation"].as_u64() == Some(generation) {
                return v["pid"].as_u64();
            }
            assert!(
                start.elapsed() < xplugin_tests::daemon::ready_timeout(),
                "runner: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let pid = wait_for(1);
    let r = import_online(
        &w.s,
        &w.pkg_v2,
        &w.address,
        &["--apply", "now", "--force"],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.json()["client_apply"]
            .as_str()
            .unwrap_or("")
            .contains("was told"),
        "{}",
        r.all()
    );
    // The same process re-executed with the new generation.
    assert_eq!(wait_for(2), pid);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(runner.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = runner.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(d.stop(), 0);
}

/// The refusal of a pendant the controller does not know (direction
/// pendant -> controller): `Err` says what was wrong with the refusal.
fn unknown_pendant_is_refused(w: &World, env: &[(&str, &str)]) -> Result<(), String> {
    let pk = identity(&w.s, "xplugin-client");
    w.s.controller(&["unpair", &pk]).ok();
    let d = daemon(&w.s, &w.address, env);
    let r = settle(w);
    let log = d.log_text();
    drop(d);
    w.s.controller(&["pair", &pk]).ok();
    if r.code == 0 {
        return Err(format!("an unknown pendant was let in: {}", r.all()));
    }
    if codes(&r) != ["link.pendant_not_authorised"] {
        return Err(format!("wrong refusal: {}", r.all()));
    }
    if !(r.stderr.contains(&pk) && r.stderr.contains("xplugin-controller pair")) {
        return Err(format!(
            "the refusal does not name the key or how to pair: {}",
            r.all()
        ));
    }
    if !log.contains(&pk) {
        return Err(format!("the controller's log does not name the key: {log}"));
    }
    Ok(())
}

/// The refusal of a controller whose key is not the pinned one (direction
/// controller -> pendant).
fn wrong_controller_key_is_refused(w: &World, env: &[(&str, &str)]) -> Result<(), String> {
    let real = identity(&w.s, "xplugin-controller");
    let other = "ab".repeat(32);
    w.s.client(&["pair", &w.address, &other]).ok();
    let d = daemon(&w.s, &w.address, &[]);
    let r = client_env(
        &w.s,
        &["controller-status", "--controller", &w.address, "--json"],
        env,
    );
    drop(d);
    w.s.client(&["pair", &w.address, &real]).ok();
    if r.code == 0 {
        return Err(format!(
            "a controller with another key was accepted: {}",
            r.all()
        ));
    }
    if codes(&r) != ["link.controller_key_mismatch"] {
        return Err(format!("wrong refusal: {}", r.all()));
    }
    if !(r.stderr.contains(&real) && r.stderr.contains("xplugin-client pair")) {
        return Err(format!(
            "the refusal does not name the key seen or how to pair: {}",
            r.all()
        ));
    }
    Ok(())
}

#[test]
fn unknown_pendants_and_wrong_controller_keys_are_refused_naming_the_keys() {
    let w = world();
    unknown_pendant_is_refused(&w, &[]).unwrap();
    wrong_controller_key_is_refused(&w, &[]).unwrap();
}

#[test]
fn negative_control_without_key_pinning_the_handshake_tests_fail() {
    // The same checks against the test build's switch that turns pinning
    // off on both sides: they must see the broken check.
    let w = world();
    let off = [("XPLUGIN_LINK_NO_PINNING", "1")];
    let e = unknown_pendant_is_refused(&w, &off).unwrap_err();
    assert!(e.contains("was let in"), "{e}");
    let e = wrong_controller_key_is_refused(&w, &off).unwrap_err();
    assert!(e.contains("was accepted"), "{e}");
}

#[test]
fn a_status_pendant_may_look_but_not_install() {
    let w = world();
    let pk = identity(&w.s, "xplugin-client");
    w.s.controller(&["pair", &pk, "--role", "status"]).ok();
    let d = daemon(&w.s, &w.address, &[]);
    settle(&w).ok();
    let before = w.s.roots_digest();
    let r = import_online(&w.s, &w.pkg_v2, &w.address, &["--force"], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(codes(&r), ["link.role_denied"], "{}", r.all());
    assert!(r.stdout.contains("--role install"), "{}", r.all());
    assert_eq!(consistent(&w, "status role"), "old");
    // Nothing of the controller changed; the pendant only has its journal gone.
    let after = w.s.roots_digest();
    let changed: Vec<_> = after
        .iter()
        .filter(|e| !before.contains(e) && !e.0.contains("state/"))
        .collect();
    assert!(changed.is_empty(), "{changed:?}");
    assert_eq!(d.stop(), 0);
}

fn transactions(root: &Path) -> usize {
    std::fs::read_dir(root.join("transactions"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn replayed_handshakes_and_replayed_or_reordered_frames_are_refused() {
    let w = world();
    let d = daemon(&w.s, &w.address, &[]);
    let ck = identity(&w.s, "xplugin-controller");
    // A whole import recorded on its way to the controller...
    let proxy = Proxy::start(&w.address, Tamper::Nothing, 1);
    w.s.client(&["pair", &proxy.address, &ck]).ok();
    let r = import_online(
        &w.s,
        &w.pkg_v2,
        &proxy.address,
        &["--apply", "next-boot", "--force"],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    reset(&w, Some(&d));
    let recorded = {
        let start = Instant::now();
        loop {
            if let Some(b) = proxy.recorded.lock().unwrap().first().cloned() {
                break b;
            }
            assert!(start.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // (A key is paired at one address: back to the controller's own.)
    w.s.client(&["pair", &w.address, &ck]).ok();
    // ... and replayed: refused at the handshake, nothing executed.
    let before = transactions(&w.s.controller_root);
    let mut s = TcpStream::connect(&w.address).unwrap();
    let _ = s.write_all(&recorded);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        answer.len() < 200,
        "the replay got more than a handshake answer: {} bytes",
        answer.len()
    );
    assert_eq!(
        transactions(&w.s.controller_root),
        before,
        "a replayed session executed something"
    );
    assert_eq!(consistent(&w, "replay"), "old");
    let log = d.log_text();
    assert!(log.contains("handshake from"), "{log}");
    // A frame sent twice, and two frames swapped, inside a live session:
    // the session is dropped there; the pendant's own retry on a new
    // session is what completes the install.
    // Frames 0-3 are the handshake, hello and upload-begin; from 4 on the
    // upload's data frames follow one another without an answer between.
    for tamper in [Tamper::Duplicate(4), Tamper::Swap(5)] {
        let before = d.log_text().matches("did not decrypt").count();
        let proxy = Proxy::start(&w.address, tamper, 4);
        w.s.client(&["pair", &proxy.address, &ck]).ok();
        let r = import_online(
            &w.s,
            &w.pkg_v2,
            &proxy.address,
            &["--apply", "next-boot", "--force"],
            &[],
        );
        let after = d.log_text().matches("did not decrypt").count();
        assert_eq!(
            after,
            before + 1,
            "{tamper:?} was not refused: {}\n{}",
            r.all(),
            d.log_text()
        );
        w.s.client(&["pair", &w.address, &ck]).ok();
        let outcome = consistent(&w, "tampered");
        if outcome == "new" {
            reset(&w, Some(&d));
        }
    }
    // Still serving the genuine pendant.
    settle(&w).ok();
    assert_eq!(d.stop(), 0);
}

/// A raw TCP peer that sends `bytes` and reports whether the daemon closed
/// the connection within `within`.
fn closed_after(address: &str, bytes: &[u8], within: Duration) -> bool {
    let mut s = TcpStream::connect(address).unwrap();
    let _ = s.write_all(bytes);
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

#[test]
fn oversized_truncated_and_slow_peers_are_dropped_and_others_still_served() {
    let w = world();
    let d = daemon(&w.s, &w.address, &[]);
    // An announced frame over the limit: dropped before anything is read.
    assert!(closed_after(
        &w.address,
        &1_000_000u32.to_be_bytes(),
        Duration::from_secs(20)
    ));
    // A frame cut short: dropped at the deadline or the close.
    let mut cut = 48u32.to_be_bytes().to_vec();
    cut.extend_from_slice(&[7u8; 10]);
    assert!(closed_after(&w.address, &cut, Duration::from_secs(30)));
    // Garbage of the right size: the handshake fails.
    let mut junk = 32u32.to_be_bytes().to_vec();
    junk.extend_from_slice(&[0x55u8; 32]);
    junk.extend_from_slice(&64u32.to_be_bytes());
    junk.extend_from_slice(&[0x55u8; 64]);
    assert!(closed_after(&w.address, &junk, Duration::from_secs(30)));
    // A slow peer (one byte a second) is dropped by the handshake deadline,
    // and while it dribbles the genuine pendant is served.
    let slow = {
        let address = w.address.clone();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(&address).unwrap();
            let start = Instant::now();
            for b in 32u32.to_be_bytes().iter().chain([1u8; 32].iter()) {
                if s.write_all(&[*b]).is_err() {
                    return Some(start.elapsed());
                }
                std::thread::sleep(Duration::from_secs(1));
                let mut probe = [0u8; 1];
                s.set_read_timeout(Some(Duration::from_millis(1))).ok();
                if matches!(s.read(&mut probe), Ok(0)) {
                    return Some(start.elapsed());
                }
            }
            None
        })
    };
    settle(&w).ok();
    let dropped = slow.join().unwrap();
    assert!(
        dropped.is_some(),
        "a peer sending one byte a second was not dropped"
    );
    // Inside a session: a frame that does not decrypt, and an oversized one.
    let pendant_hello = xplugin_link::message::Hello {
        protocol_min: 1,
        protocol_max: 1,
        protocol: None,
        program: "test".into(),
        release: "0".into(),
        arch: String::new(),
        abi: None,
        host_version: None,
        device_id: None,
        clock_unix_ms: 0,
    };
    let mut c =
        xplugin_link::client::connect(&w.s.client_root, &w.address, None, pendant_hello.clone())
            .unwrap();
    c.session_mut().send_raw_frame(&[0u8; 40]).unwrap();
    assert!(c.status().is_err(), "a forged frame was answered");
    let c =
        xplugin_link::client::connect(&w.s.client_root, &w.address, None, pendant_hello).unwrap();
    let mut raw = c.into_stream();
    let _ = raw.write_all(&(70_000u32).to_be_bytes());
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest);
    let log = d.log_text();
    assert!(log.contains("1000000 bytes was announced"), "{log}");
    assert!(log.contains("70000 bytes was announced"), "{log}");
    assert!(
        log.contains("in the middle of a frame") || log.contains("did not send"),
        "{log}"
    );
    assert!(log.contains("did not decrypt"), "{log}");
    settle(&w).ok();
    assert_eq!(d.stop(), 0);
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let w = world();
    let d = daemon(&w.s, &w.address, &[]);
    let held: Vec<TcpStream> = (0..xplugin_link::server::MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(&w.address).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        closed_after(&w.address, &[], Duration::from_secs(5)),
        "a connection over the limit was kept"
    );
    drop(held);
    // Once they are gone the pendant is served again (their threads end
    // when they close).
    let start = Instant::now();
    while settle(&w).code != 0 {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(d
        .log_text()
        .contains("pendant connections are served already"));
    assert_eq!(d.stop(), 0);
}

/// Replays a recorded session of another release (its messages, after a
/// real handshake): each step's answer type (and text it must hold).
fn replay_fixture(w: &World, name: &str) {
    let path = xplugin_tests::build::workspace_root()
        .join("tests/fixtures/link")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let steps: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut c = xplugin_link::client::handshake(&w.s.client_root, &w.address, None).unwrap();
    for (i, step) in steps.iter().enumerate() {
        let send = serde_json::to_vec(&step["send"]).unwrap();
        let answer = c.raw_exchange(&send, Duration::from_secs(30));
        let (kind, shown) = match answer {
            Ok(m) => (
                m.kind().to_string(),
                serde_json::to_string(&m).unwrap_or_default(),
            ),
            Err(xplugin_link::LinkError::Refused { problem, .. }) => (
                "refused".into(),
                format!("{} {}", problem.code, problem.message),
            ),
            Err(xplugin_link::LinkError::Remote { problems, .. }) => (
                "error".into(),
                problems
                    .iter()
                    .map(|p| format!("{} {} {}", p.code, p.subject, p.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Err(e) => ("error".into(), e.to_string()),
        };
        assert_eq!(
            kind,
            step["expect"].as_str().unwrap_or(""),
            "{name} step {i}: {shown}"
        );
        for needle in step["contains"].as_array().into_iter().flatten() {
            let needle = needle.as_str().unwrap_or("");
            assert!(
                shown.contains(needle),
                "{name} step {i}: {needle:?} not in {shown}"
            );
        }
    }
}

#[test]
fn recorded_sessions_of_older_and_newer_releases_are_understood_or_refused_by_name() {
    let w = world();
    let d = daemon(&w.s, &w.address, &[]);
    replay_fixture(&w, "v0-pendant.json");
    replay_fixture(&w, "v1-newer-pendant.json");
    assert!(d.log_text().contains("speaks link protocol versions 0..0"));
    assert_eq!(d.stop(), 0);
}

// --- kill points ---------------------------------------------------------

/// A process killed at a named boundary.
#[derive(Debug, Clone)]
enum Kill {
    /// The pendant's import, at this failpoint.
    Pendant(String),
    /// The controller's daemon, at this failpoint (restarted at once).
    Controller(String),
    /// The pendant's import drops its connection here and goes on.
    Drop(String),
    /// The pendant's import killed at the first, its recovery at the second.
    PendantTwice(String, String),
}

impl Kill {
    fn name(&self) -> String {
        match self {
            Kill::Pendant(p) => format!("pendant:{p}"),
            Kill::Controller(p) => format!("controller:{p}"),
            Kill::Drop(p) => format!("drop:{p}"),
            Kill::PendantTwice(a, b) => format!("pendant:{a}+recovery:{b}"),
        }
    }
}

/// The store boundaries an install passes: its transaction's and its
/// commit's (a commit places two staged plugins per side: both counted).
fn store_boundaries() -> Vec<String> {
    let mut out = Vec::new();
    for p in xplugin_store::failpoint::FAILPOINTS {
        if p.starts_with("txn-") || (p.starts_with("commit-") && *p != "commit-after-trash-rename")
        {
            out.push(p.to_string());
            if *p == "commit-after-staged-plugin" {
                out.push(format!("{p}@2"));
            }
        }
    }
    out
}

/// Upload chunk boundaries counted per chunk.
const CHUNKS: usize = 20;

fn link_boundaries(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in xplugin_link::failpoint::LINK_FAILPOINTS {
        if p.starts_with(prefix) {
            if p.ends_with("upload-chunk") {
                out.extend((1..=CHUNKS).map(|n| format!("{p}@{n}")));
            } else {
                out.push(p.to_string());
            }
        }
    }
    out
}

/// One process's kill points: its link boundaries, then its store's.
fn process_points(prefix: &str, kill: fn(String) -> Kill) -> Vec<Kill> {
    link_boundaries(prefix)
        .into_iter()
        .chain(store_boundaries())
        .map(kill)
        .collect()
}

fn pendant_points() -> Vec<Kill> {
    process_points("link-client-", Kill::Pendant)
}

fn controller_points() -> Vec<Kill> {
    process_points("link-server-", Kill::Controller)
}

fn drop_and_twice_points() -> Vec<Kill> {
    let mut out: Vec<Kill> = [1, 2, 3, 5, 8, 13, 20]
        .iter()
        .map(|n| Kill::Drop(format!("link-client-after-upload-chunk@{n}")))
        .collect();
    for recovery in [
        "txn-after-commit-switch",
        "commit-after-state-written",
        "commit-after-swap",
        "link-client-after-journal-cleared",
    ] {
        out.push(Kill::PendantTwice(
            "link-client-after-commit-answer".into(),
            recovery.into(),
        ));
    }
    for recovery in [
        "txn-after-decided-record",
        "link-client-after-journal-cleared",
    ] {
        out.push(Kill::PendantTwice(
            "link-client-after-journal-prepared".into(),
            recovery.into(),
        ));
    }
    out
}

fn killed(r: &Run) -> bool {
    r.code == -1
}

/// Runs one kill point; returns `old` or `new`.
fn run_point(w: &World, d: &mut Option<Daemon>, point: &Kill) -> &'static str {
    let name = point.name();
    // Every point starts from a fresh upload (a resumed one would pass
    // fewer chunk boundaries).
    let _ = std::fs::remove_dir_all(w.s.controller_root.join("state/link/uploads"));
    let next_boot = ["--apply", "next-boot", "--force"];
    match point {
        Kill::Pendant(p) => {
            let r = import_online(
                &w.s,
                &w.pkg_v2,
                &w.address,
                &next_boot,
                &[("XPLUGIN_FAILPOINT", p)],
            );
            assert!(killed(&r), "{name}: not reached: {}", r.all());
            settle(w).ok();
        }
        Kill::PendantTwice(a, b) => {
            let r = import_online(
                &w.s,
                &w.pkg_v2,
                &w.address,
                &next_boot,
                &[("XPLUGIN_FAILPOINT", a)],
            );
            assert!(killed(&r), "{name}: not reached: {}", r.all());
            let r = client_env(
                &w.s,
                &["controller-status", "--controller", &w.address, "--json"],
                &[("XPLUGIN_FAILPOINT", b)],
            );
            assert!(killed(&r), "{name}: recovery not killed: {}", r.all());
            settle(w).ok();
        }
        Kill::Drop(p) => {
            let r = import_online(
                &w.s,
                &w.pkg_v2,
                &w.address,
                &next_boot,
                &[("XPLUGIN_LINK_DROP", p)],
            );
            assert_eq!(r.code, 0, "{name}: {}", r.all());
            let uploads = r.json()["uploads"].clone();
            assert!(
                uploads
                    .as_array()
                    .is_some_and(|u| u.len() == 2 && u[1].as_u64() > Some(0)),
                "{name}: did not resume: {uploads}"
            );
        }
        Kill::Controller(p) => {
            drop(d.take());
            let killer = daemon(&w.s, &w.address, &[("XPLUGIN_FAILPOINT", p)]);
            let child = target_command(&bin_path("xplugin-client"))
                .args(["import"])
                .arg(&w.pkg_v2)
                .args([
                    "--controller",
                    &w.address,
                    "--hmi-version",
                    "3.0.2",
                    "--yes",
                    "--json",
                ])
                .args(next_boot)
                .arg("--config")
                .arg(&w.s.client_config)
                .arg("--root")
                .arg(&w.s.client_root)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let exit = killer.wait_exit(Duration::from_secs(180));
            assert!(
                exit.code().is_none(),
                "{name}: the daemon was not killed ({exit})"
            );
            // Restarted at once: the pendant reconnects and goes on.
            *d = Some(daemon(&w.s, &w.address, &[]));
            let out = child.wait_with_output().unwrap();
            let r = Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
            if r.code != 0 {
                settle(w).ok();
            }
        }
    }
    let outcome = consistent(w, &name);
    if outcome == "new" {
        reset(w, d.as_ref());
    }
    outcome
}

fn run_points(points: Vec<Kill>, label: &str) {
    let w = world();
    let mut d = Some(daemon(&w.s, &w.address, &[]));
    settle(&w).ok();
    let start = Instant::now();
    let mut tally: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for point in &points {
        let outcome = run_point(&w, &mut d, point);
        tally.entry(outcome).or_default().push(point.name());
    }
    eprintln!(
        "{label}: {} kill points in {:.0} s, each old/old or new/new after recovery, verified file by file",
        points.len(),
        start.elapsed().as_secs_f64()
    );
    for (outcome, names) in &tally {
        eprintln!("  {outcome} ({}): {}", names.len(), names.join(", "));
    }
    if let Some(d) = d {
        assert_eq!(d.stop(), 0);
    }
}

#[test]
fn killing_the_pendant_at_every_boundary_ends_old_or_new_on_both() {
    run_points(seeded(pendant_points(), 8, 0x11a1), "pendant");
}

#[test]
fn killing_the_controller_at_every_boundary_ends_old_or_new_on_both() {
    run_points(seeded(controller_points(), 8, 0x11a2), "controller");
}

#[test]
fn dropped_connections_resume_and_killed_recoveries_recover() {
    run_points(
        seeded(drop_and_twice_points(), 4, 0x11a3),
        "drops and recoveries",
    );
}

#[test]
fn the_kill_points_cover_every_named_boundary_at_least_100_on_the_host() {
    let all: Vec<String> = pendant_points()
        .into_iter()
        .chain(controller_points())
        .chain(drop_and_twice_points())
        .map(|k| k.name())
        .collect();
    for p in xplugin_link::failpoint::LINK_FAILPOINTS {
        assert!(all.iter().any(|n| n.contains(p)), "{p} is not covered");
    }
    for p in store_boundaries() {
        assert!(all.iter().any(|n| n == &format!("pendant:{p}")), "{p}");
        assert!(all.iter().any(|n| n == &format!("controller:{p}")), "{p}");
    }
    if runner_prefix().is_empty() {
        assert!(all.len() >= 100, "only {} kill points", all.len());
    }
    eprintln!("{} kill points: {}", all.len(), all.join(", "));
}

#[test]
fn offline_import_checks_the_controller_part_for_controller_arch() {
    let s = Scenario::new();
    s.license_all();
    let pkg = s.pack("v1");
    // This pendant's CPU is not the controller's: an aarch64 controller
    // part would pass, this one (built for this machine) must not.
    let other = if cfg!(target_arch = "aarch64") {
        "x86_64"
    } else {
        "aarch64"
    };
    let cfg = s.tmp.path().join("pendant-arch.json");
    let text = std::fs::read_to_string(&s.client_config).unwrap();
    std::fs::write(
        &cfg,
        text.replacen(
            '{',
            &format!("{{\n  \"controller_arch\": \"{other}\",\n"),
            1,
        ),
    )
    .unwrap();
    let r = xplugin_tests::scenario::run_program(
        "xplugin-client",
        &[
            "import",
            pkg.to_str().unwrap(),
            "--controller-root",
            s.controller_root.to_str().unwrap(),
            "--controller-config",
            s.controller_config.to_str().unwrap(),
            "--hmi-version",
            "3.0.2",
            "--controller-version",
            "2.1.0",
            "--config",
            cfg.to_str().unwrap(),
            "--root",
            s.client_root.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.all());
    let v = r.json();
    let problems = v["problems"].as_array().cloned().unwrap_or_default();
    assert!(
        problems.iter().any(|p| p["code"] == "library.wrong_arch"
            && p["subject"]
                .as_str()
                .unwrap_or("")
                .contains("controller.zip")
            && p["hint"].as_str().unwrap_or("").contains("controller_arch")),
        "{v}"
    );
    // The client part is checked for this pendant's own CPU: no complaint.
    assert!(
        !problems.iter().any(
            |p| p["subject"].as_str().unwrap_or("").contains("client.zip")
                && p["code"] == "library.wrong_arch"
        ),
        "{v}"
    );
}

#[test]
fn a_transaction_the_controller_aborted_on_its_timeout_is_discarded_by_the_pendant() {
    let w = world();
    let cfg = w.s.tmp.path().join("short-timeout.json");
    let text = std::fs::read_to_string(&w.s.controller_config).unwrap();
    std::fs::write(
        &cfg,
        text.replacen('{', "{\n  \"transaction_timeout_s\": 1,\n", 1),
    )
    .unwrap();
    let d = Daemon::start_env(&w.s, &cfg, &["--listen", &w.address], &[], true);
    // The pendant stops just before it sends the commit...
    let r = import_online(
        &w.s,
        &w.pkg_v2,
        &w.address,
        &["--apply", "next-boot", "--force"],
        &[("XPLUGIN_FAILPOINT", "link-client-after-journal-commit-sent")],
    );
    assert_eq!(r.code, -1, "{}", r.all());
    // ... the controller aborts the transaction on its deadline ...
    let start = Instant::now();
    let aborted_on_deadline = || {
        std::fs::read_dir(w.s.controller_root.join("transactions"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let r = std::fs::read_to_string(e.path().join("record.json")).unwrap_or_default();
                r.contains("\"aborted\"") && r.contains("deadline")
            })
    };
    while !aborted_on_deadline() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // ... and the pendant, settling, discards its part.
    let v = settle(&w).ok().json();
    assert_eq!(v["settled"]["outcome"], "aborted", "{v}");
    assert_eq!(consistent(&w, "timeout"), "old");
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_client_only_package_is_checked_against_what_the_controller_runs() {
    let w = world();
    let d = daemon(&w.s, &w.address, &[]);
    // The client part alone (the controller's plugins stay as they run).
    let away = w.s.tmp.path().join("controller-away");
    std::fs::rename(w.s.plugins.join("controller"), &away).unwrap();
    let pkg = w.s.pack("client-only");
    std::fs::rename(&away, w.s.plugins.join("controller")).unwrap();
    // Killed with its client part prepared: nothing is left open (this
    // process decided it alone, so recovery aborts it) ...
    let r = import_online(
        &w.s,
        &pkg,
        &w.address,
        &["--force"],
        &[("XPLUGIN_FAILPOINT", "txn-after-prepared")],
    );
    assert_eq!(r.code, -1, "{}", r.all());
    // ... and the next import goes through.
    let r = import_online(&w.s, &pkg, &w.address, &["--force"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v = r.json();
    assert!(v["controller_transaction"].is_null(), "{v}");
    assert_eq!(
        installed(&w.s.client_root),
        tree(&w.v2.join("client")),
        "the pendant has the new client part"
    );
    assert_eq!(
        installed(&w.s.controller_root),
        tree(&w.v1.join("controller")),
        "the controller is untouched"
    );
    assert_eq!(d.stop(), 0);
}
