//! Round trip of a small plugin message client -> controller -> client over
//! the pendant link on loopback, against a raw TCP echo of the same size in
//! the same run (`scripts/bench`, section "Plugin messages").
//!
//! The bridge path is the product's, in one process: a link server and a
//! pendant connection over 127.0.0.1 with the Noise handshake and pinned
//! keys, a `xplugin_host::bridge::Bridge` on each side over its own bus, and
//! two subscriptions made through the plugins' ABI table: the controller's
//! `echo` answers `bench/ping` with `bench/pong`, the pendant's `ui`
//! publishes the ping and waits for the pong. Rate bounds are lifted (the
//! product's 1000 messages/s would pace a tight loop); everything else is as
//! shipped. The raw baseline: one TCP connection on 127.0.0.1 (TCP_NODELAY),
//! write N bytes, read N bytes back from an echoing thread.
//!
//! Output: `key=value` lines (medians and p99 of the interleaved rounds, in
//! microseconds), read by bench/report.py.

use std::collections::BTreeSet;
use std::ffi::{c_char, c_void, CString};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xplugin_abi::HostApi;
use xplugin_host::bridge::Bridge;
use xplugin_host::services::{Bus, PluginHost};
use xplugin_link::bridge::{pump, BridgeDecl, Limits};
use xplugin_link::identity::Identity;
use xplugin_link::message::{ConfigReply, ControllerStatus, Hello, TransactionReply};
use xplugin_link::peers::{pair_controller, pair_pendant, Role};
use xplugin_link::server::{Answer, BridgeAttach, LinkHandler, Pendant, Server, ServerOptions};
use xplugin_link::upload::Uploads;
use xplugin_model::manifest::Side;

const PAYLOAD: usize = 64;
const ROUNDS: usize = 2000;
const BATCHES: usize = 3;

/// The controller's link handler: only the bridge.
struct Controller(Arc<Bridge>);

fn no<T>() -> Answer<T> {
    Err(Vec::new())
}

impl LinkHandler for Controller {
    fn hello(&self) -> Hello {
        Hello::this_host("bench-controller", None, None)
    }
    fn status(&self) -> Answer<ControllerStatus> {
        no()
    }
    fn prepare(
        &self,
        _: &Pendant,
        _: &Path,
        _: &str,
        _: bool,
        _: bool,
        _: &str,
    ) -> Answer<TransactionReply> {
        no()
    }
    fn commit(&self, _: &Pendant, _: &str, _: Option<&str>) -> Answer<TransactionReply> {
        no()
    }
    fn abort(&self, _: &Pendant, _: &str, _: &str) -> Answer<TransactionReply> {
        no()
    }
    fn outcome(&self, _: &str) -> Answer<TransactionReply> {
        no()
    }
    fn lookup(&self, _: &str) -> Answer<TransactionReply> {
        no()
    }
    fn config_show(&self, _: &str) -> Answer<ConfigReply> {
        no()
    }
    fn config_set(&self, _: &Pendant, _: &str, _: &[String]) -> Answer<ConfigReply> {
        no()
    }
    fn bridge_open(&self, pendant: &Pendant, plugins: &[BridgeDecl]) -> Answer<BridgeAttach> {
        let b = self.0.clone();
        let (opened, outbound, id) = b
            .open(&pendant.describe(), &pendant.key.to_string(), plugins)
            .map_err(|p| vec![p])?;
        let sink = b.sink(id);
        Ok(BridgeAttach {
            opened,
            outbound,
            sink,
            closed: Box::new(move |why| b.detach(id, why)),
        })
    }
}

fn decl(plugin: &str, ctrl: &[&str], send: &str, receive: &str) -> BridgeDecl {
    BridgeDecl {
        plugin: plugin.into(),
        ctrl_depend: ctrl.iter().map(|s| s.to_string()).collect(),
        send: vec![send.into()],
        receive: vec![receive.into()],
    }
}

/// The controller plugin's callback: answers every ping with a pong, as a
/// plugin does, through its host table (`user`).
unsafe extern "C" fn echo(user: *mut c_void, _topic: *const c_char, data: *const u8, len: usize) {
    let api = user.cast::<HostApi>();
    // SAFETY: `user` is the echo host's table (kept alive by `main`), and
    // `data`/`len` are the delivery's bytes, valid for this call.
    unsafe {
        if let Some(publish) = (*api).publish {
            let topic = c"bench/pong";
            publish((*api).host, topic.as_ptr(), data, len);
        }
    }
}

/// The pendant plugin's callback: tells the waiting loop (`user`: a sender).
unsafe extern "C" fn pong(user: *mut c_void, _topic: *const c_char, _data: *const u8, _len: usize) {
    // SAFETY: `user` is the `Sender` `main` keeps alive until the end.
    let tx = unsafe { &*user.cast::<crossbeam_channel::Sender<Instant>>() };
    let _ = tx.send(Instant::now());
}

fn subscribe(
    api: *const HostApi,
    topic: &str,
    callback: xplugin_abi::MessageFn,
    user: *mut c_void,
) {
    let t = CString::new(topic).expect("topic");
    // SAFETY: `api` is a live host table; `callback` and `user` stay valid
    // for the whole bench (both are kept by `main`).
    let status = unsafe {
        ((*api).subscribe.expect("subscribe"))(
            (*api).host,
            t.as_ptr(),
            Some(callback),
            user,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(status, 0, "subscribe {topic}");
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let croot = tmp.path().join("controller");
    let proot = tmp.path().join("pendant");
    let (cid, _) = Identity::load_or_create(&croot, None).expect("controller identity");
    let (pid, _) = Identity::load_or_create(&proot, None).expect("pendant identity");
    pair_pendant(&croot, pid.public, Role::Install).expect("pair pendant");

    // Controller: bus, its plugin `echo`, its bridge, the link server.
    let cbus = Bus::new();
    let echo_host = PluginHost::new("echo", "2.1.0", tmp.path(), BTreeSet::new(), cbus.clone());
    subscribe(
        echo_host.api(),
        "bench/ping",
        echo,
        echo_host.api().cast_mut().cast(),
    );
    let limits = Limits {
        rate_per_s: 10_000_000,
        burst: 10_000_000,
        ..Limits::default()
    };
    let cbridge = Bridge::new(
        Side::Controller,
        cbus.clone(),
        vec![decl("echo", &[], "bench/pong", "bench/ping")],
        limits,
    );
    let server = Server::start(
        ServerOptions {
            listen: "127.0.0.1:0".into(),
            root: croot.clone(),
            device_id: None,
            uploads: Uploads::new(&croot, 1 << 20, 1 << 20),
        },
        Arc::new(Controller(cbridge)),
    )
    .expect("server");
    let address = server.local_addr().to_string();
    pair_controller(&proot, &address, cid.public).expect("pair controller");

    // Pendant: bus, its plugin `ui`, its bridge, the session.
    let pbus = Bus::new();
    let ui_host = PluginHost::new("ui", "3.0.2", tmp.path(), BTreeSet::new(), pbus.clone());
    let (tx, rx) = crossbeam_channel::unbounded::<Instant>();
    let tx = Box::new(tx);
    subscribe(
        ui_host.api(),
        "bench/pong",
        pong,
        (&*tx as *const crossbeam_channel::Sender<Instant>)
            .cast_mut()
            .cast(),
    );
    let pbridge = Bridge::new(
        Side::Client,
        pbus.clone(),
        vec![decl("ui", &["echo"], "bench/ping", "bench/pong")],
        limits,
    );
    let mut conn = xplugin_link::client::connect(
        &proot,
        &address,
        None,
        Hello::this_host("bench-pendant", None, None),
    )
    .expect("connect");
    let opened = conn
        .open_bridge(pbridge.decls().to_vec())
        .expect("open the bridge");
    assert_eq!(opened.routes.len(), 2, "{opened:?}");
    let (outbound, id) = pbridge.attach(&address, &opened);
    let link = conn.into_bridge().expect("split");
    let closer = link.closer();
    let sink = pbridge.sink(id);
    let pump_thread = std::thread::spawn(move || pump(link, outbound, sink));
    let ui = ui_host.api();
    let ping = |payload: &[u8]| {
        let t = c"bench/ping";
        // SAFETY: `ui` is the live host table of `ui_host`.
        unsafe {
            ((*ui).publish.expect("publish"))(
                (*ui).host,
                t.as_ptr(),
                payload.as_ptr(),
                payload.len(),
            )
        }
    };

    // Raw TCP echo.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let echo_addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let _ = s.set_nodelay(true);
        let mut buf = [0u8; PAYLOAD];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut raw = TcpStream::connect(echo_addr).expect("connect echo");
    raw.set_nodelay(true).expect("nodelay");

    let payload = [0x5au8; PAYLOAD];
    let mut buf = [0u8; PAYLOAD];
    let (mut tcp_rtts, mut bridge_rtts) = (Vec::new(), Vec::new());
    // Warm-up, then interleaved batches.
    for _ in 0..200 {
        raw.write_all(&payload).expect("write");
        raw.read_exact(&mut buf).expect("read");
        ping(&payload);
        rx.recv_timeout(Duration::from_secs(5)).expect("a pong");
    }
    for _ in 0..BATCHES {
        for _ in 0..ROUNDS {
            let t0 = Instant::now();
            raw.write_all(&payload).expect("write");
            raw.read_exact(&mut buf).expect("read");
            tcp_rtts.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        for _ in 0..ROUNDS {
            let t0 = Instant::now();
            ping(&payload);
            let t1 = rx.recv_timeout(Duration::from_secs(5)).expect("a pong");
            bridge_rtts.push(t1.duration_since(t0).as_secs_f64() * 1e6);
        }
    }
    closer.close();
    let _ = pump_thread.join();
    drop(server);
    for v in [&mut tcp_rtts, &mut bridge_rtts] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    let (tm, t99) = (percentile(&tcp_rtts, 0.5), percentile(&tcp_rtts, 0.99));
    let (bm, b99) = (
        percentile(&bridge_rtts, 0.5),
        percentile(&bridge_rtts, 0.99),
    );
    println!("payload_bytes={PAYLOAD}");
    println!("rounds={}", ROUNDS * BATCHES);
    println!("tcp_echo_median_us={tm:.2}");
    println!("tcp_echo_p99_us={t99:.2}");
    println!("bridge_median_us={bm:.2}");
    println!("bridge_p99_us={b99:.2}");
    println!("ratio_median={:.2}", bm / tm);
    println!("ratio_p99={:.2}", b99 / t99);
    drop(tx);
    drop(echo_host);
    drop(ui_host);
}
