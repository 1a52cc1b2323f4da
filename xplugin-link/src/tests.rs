//! The two halves against each other in one process, over loopback.

use crate::bridge::{
    pump, BridgeDecl, BridgeEnd, BridgeFrame, BridgeOpened, BridgeSink, BridgeTx, Direction,
    Limits, Route, TxTaken,
};
use crate::client::{connect, Connection};
use crate::error::LinkError;
use crate::identity::Identity;
use crate::message::{ConfigReply, ControllerStatus, Hello, TransactionReply};
use crate::peers::{pair_controller, pair_pendant, Role};
use crate::server::{Answer, BridgeAttach, LinkHandler, Pendant, Server, ServerOptions};
use crate::upload::Uploads;
use std::path::Path;
use std::sync::{Arc, Mutex};
use xplugin_model::{Failure, ProblemCode};

#[derive(Default)]
struct Recorder {
    prepared: Mutex<Vec<Vec<u8>>>,
}

fn reply(id: &str, state: &str) -> TransactionReply {
    TransactionReply {
        transaction: id.into(),
        state: state.into(),
        holder: String::new(),
        base_generation: None,
        new_generation: None,
        expires_unix: 0,
        reason: None,
        problems: Vec::new(),
        prepared_set: Default::default(),
        text: String::new(),
        report: serde_json::Value::Null,
        apply: None,
    }
}

pub(crate) fn hello(program: &str) -> Hello {
    Hello {
        protocol_min: 1,
        protocol_max: 1,
        protocol: None,
        program: program.into(),
        release: "test".into(),
        arch: "x86_64".into(),
        abi: None,
        host_version: None,
        device_id: None,
        clock_unix_ms: 0,
    }
}

impl LinkHandler for Recorder {
    fn hello(&self) -> Hello {
        let mut h = hello("xplugin-controller");
        h.clock_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        h
    }
    fn status(&self) -> Answer<ControllerStatus> {
        Ok(ControllerStatus {
            running: Some(1),
            committed: Some(1),
            committed_transaction: None,
            prepared: None,
            host_version: None,
            plugins: Vec::new(),
            apply: serde_json::Value::Null,
            text: "ok\n".into(),
        })
    }
    fn prepare(
        &self,
        _: &Pendant,
        package: &Path,
        _: &str,
        _: bool,
        _: bool,
        _: &str,
    ) -> Answer<TransactionReply> {
        self.prepared
            .lock()
            .unwrap()
            .push(std::fs::read(package).unwrap());
        Ok(reply("00000000000000aa", "prepared"))
    }
    fn commit(&self, _: &Pendant, t: &str, _: Option<&str>) -> Answer<TransactionReply> {
        Ok(reply(t, "committed"))
    }
    fn abort(&self, _: &Pendant, t: &str, _: &str) -> Answer<TransactionReply> {
        Ok(reply(t, "aborted"))
    }
    fn outcome(&self, t: &str) -> Answer<TransactionReply> {
        Ok(reply(t, "committed"))
    }
    fn lookup(&self, _: &str) -> Answer<TransactionReply> {
        Ok(reply("00000000000000aa", "prepared"))
    }
    fn config_show(&self, plugin: &str) -> Answer<ConfigReply> {
        Ok(ConfigReply {
            text: format!("{plugin}\n"),
            report: serde_json::json!({ "name": plugin }),
        })
    }
    fn config_set(&self, _: &Pendant, plugin: &str, assignments: &[String]) -> Answer<ConfigReply> {
        Ok(ConfigReply {
            text: format!("{plugin}: {}\n", assignments.join(" ")),
            report: serde_json::json!({ "name": plugin, "set": assignments }),
        })
    }
    /// An echo bridge: every frame comes back on `echo/TOPIC`.
    fn bridge_open(&self, _: &Pendant, plugins: &[BridgeDecl]) -> Answer<BridgeAttach> {
        let tx = BridgeTx::new(256);
        let routes = plugins
            .iter()
            .flat_map(|d| {
                d.send.iter().map(|t| Route {
                    direction: Direction::ToController,
                    topic: t.clone(),
                    from: d.plugin.clone(),
                    to: vec!["echo".into()],
                })
            })
            .collect();
        Ok(BridgeAttach {
            opened: BridgeOpened {
                routes,
                problems: Vec::new(),
                limits: Limits::default(),
            },
            outbound: tx.clone(),
            sink: Arc::new(Echo(tx)),
            closed: Box::new(|_| {}),
        })
    }
}

struct Echo(BridgeTx);

impl BridgeSink for Echo {
    fn deliver(&self, mut frame: BridgeFrame) {
        frame.topic = format!("echo/{}", frame.topic);
        // From the reading thread, as a controller plugin's answer would.
        assert!(self.0.try_send(frame).is_ok(), "the echo queue is full");
    }
    fn sent(&self, _: &BridgeFrame) {}
}

/// Collects what the pendant's side of a bridge receives.
struct Collect(crossbeam_channel::Sender<BridgeFrame>);

impl BridgeSink for Collect {
    fn deliver(&self, frame: BridgeFrame) {
        let _ = self.0.send(frame);
    }
    fn sent(&self, _: &BridgeFrame) {}
}

#[test]
fn a_bridge_carries_frames_both_ways_in_order_and_ends_when_closed() {
    let w = world(Some(Role::Install));
    let mut c = join(&w).unwrap();
    let opened = c
        .open_bridge(vec![BridgeDecl {
            plugin: "ui".into(),
            ctrl_depend: vec!["echo".into()],
            send: vec!["ui/button".into()],
            receive: vec!["echo/ui/button".into()],
        }])
        .unwrap();
    assert_eq!(opened.routes.len(), 1);
    let link = c.into_bridge().unwrap();
    let closer = link.closer();
    let out_tx = BridgeTx::new(64);
    let (in_tx, in_rx) = crossbeam_channel::unbounded();
    // Some frames queued before the socket is attached, the rest sent by
    // the publishing thread itself or queued behind a busy socket.
    let send = |i: u8| {
        out_tx
            .try_send(BridgeFrame {
                seq: 0,
                plugin: "ui".into(),
                topic: "ui/button".into(),
                data: vec![i; usize::from(i) * 80],
            })
            .unwrap()
    };
    for i in 0..5u8 {
        assert_eq!(send(i), TxTaken::Queued);
    }
    let pump_tx = out_tx.clone();
    let pump = std::thread::spawn(move || pump(link, pump_tx, Arc::new(Collect(in_tx))));
    for i in 5..50u8 {
        send(i);
    }
    for i in 0..50u8 {
        let f = in_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        assert_eq!(f.seq, u64::from(i) + 1);
        assert_eq!(f.topic, "echo/ui/button");
        assert_eq!(f.data, vec![i; usize::from(i) * 80]);
    }
    closer.close();
    let end = pump.join().unwrap();
    assert!(matches!(end, BridgeEnd::Closed), "{end}");
}

#[test]
fn a_status_pendant_may_not_open_the_bridge() {
    let w = world(Some(Role::Status));
    let mut c = join(&w).unwrap();
    let e = c.open_bridge(Vec::new()).unwrap_err();
    assert_eq!(code(&e), ProblemCode::LinkRoleDenied, "{e}");
}

struct World {
    _tmp: tempfile::TempDir,
    controller: std::path::PathBuf,
    pendant: std::path::PathBuf,
    address: String,
    server: Server,
    handler: Arc<Recorder>,
}

fn world(role: Option<Role>) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let controller = tmp.path().join("controller");
    let pendant = tmp.path().join("pendant");
    let (cid, _) = Identity::load_or_create(&controller, None).unwrap();
    let (pid, _) = Identity::load_or_create(&pendant, None).unwrap();
    if let Some(role) = role {
        pair_pendant(&controller, pid.public, role).unwrap();
    }
    let handler = Arc::new(Recorder::default());
    let server = Server::start(
        ServerOptions {
            listen: "127.0.0.1:0".into(),
            root: controller.clone(),
            device_id: None,
            uploads: Uploads::new(&controller, 1 << 30, 1 << 30),
        },
        handler.clone(),
    )
    .unwrap();
    let address = server.local_addr().to_string();
    pair_controller(&pendant, &address, cid.public).unwrap();
    World {
        _tmp: tmp,
        controller,
        pendant,
        address,
        server,
        handler,
    }
}

fn join(w: &World) -> Result<Connection, LinkError> {
    connect(&w.pendant, &w.address, None, hello("xplugin-client"))
}

fn code(e: &LinkError) -> ProblemCode {
    e.problems().0[0].code
}

#[test]
fn a_paired_pendant_uploads_resumes_and_prepares() {
    let w = world(Some(Role::Install));
    let mut c = join(&w).unwrap();
    assert_eq!(c.role, Role::Install);
    assert_eq!(c.status().unwrap().running, Some(1));
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let file = w._tmp.path().join("pkg.zip");
    std::fs::write(&file, &data).unwrap();
    let sha = crate::key::hex(&<sha2::Sha256 as sha2::Digest>::digest(&data));
    // A first upload cut after one chunk (by hand: a partial file).
    let part = w
        .controller
        .join(crate::upload::UPLOADS_DIR)
        .join(format!("{sha}.part"));
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, &data[..70_000]).unwrap();
    let mut from = None;
    c.upload(&file, &sha, data.len() as u64, &mut |o| from = Some(o))
        .unwrap();
    assert_eq!(
        from,
        Some(70_000),
        "resumed where the controller's copy ends"
    );
    let r = c.prepare(&sha, "pkg.zip", false, false, "r1").unwrap();
    assert_eq!(r.state, "prepared");
    assert_eq!(w.handler.prepared.lock().unwrap()[0], data);
    drop(w.server);
}

#[test]
fn unknown_pendants_and_wrong_controller_keys_are_refused_naming_the_key() {
    let w = world(None);
    let e = join(&w).err().unwrap();
    assert_eq!(code(&e), ProblemCode::LinkPendantNotAuthorised, "{e}");
    let (pid, _) = Identity::load_or_create(&w.pendant, None).unwrap();
    let p = &e.problems().0[0];
    assert!(p.hint.contains(&pid.public.to_string()), "{p}");
    // Another key pinned for the controller's address: refused before the
    // pendant shows its own key.
    let other = crate::key::PublicKey([9; 32]);
    pair_controller(&w.pendant, &w.address, other).unwrap();
    pair_pendant(&w.controller, pid.public, Role::Install).unwrap();
    let e = join(&w).err().unwrap();
    assert_eq!(code(&e), ProblemCode::LinkControllerKeyMismatch, "{e}");
    let (cid, _) = Identity::load_or_create(&w.controller, None).unwrap();
    assert!(
        e.to_string().contains(&cid.public.to_string())
            || format!("{:?}", e).contains(&cid.public.fingerprint()),
        "{e:?}"
    );
}

#[test]
fn a_status_pendant_may_look_but_not_install() {
    let w = world(Some(Role::Status));
    let mut c = join(&w).unwrap();
    assert!(c.status().is_ok());
    let e = c
        .prepare(&"a".repeat(64), "x", false, false, "r")
        .unwrap_err();
    assert_eq!(code(&e), ProblemCode::LinkRoleDenied, "{e}");
    // Looking at configuration is allowed, changing it is not.
    assert_eq!(c.config_show("alpha").unwrap().report["name"], "alpha");
    let e = c.config_set("alpha", &["a=1".to_string()]).unwrap_err();
    assert_eq!(code(&e), ProblemCode::LinkRoleDenied, "{e}");
    // Still served afterwards.
    assert!(c.status().is_ok());
}
