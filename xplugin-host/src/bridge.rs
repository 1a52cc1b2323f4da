//! The plugin message bridge, host side: which of a host's plugin messages
//! cross the pendant link, within which bounds, and what each plugin sent,
//! received and lost.
//!
//! Declared, not implicit: a plugin's manifest `bridge` lists the topics it
//! sends to and receives from the other computer. A client plugin reaches
//! only the controller plugins in its `ctrlDepend` (and hears only from
//! them). The controller computes the routes when a pendant opens the bridge
//! ([`Bridge::open`]); the pendant applies the answer ([`Bridge::attach`]).
//! A route is `(direction, topic, from, to)`; nothing else crosses, and the
//! receiving side checks every frame against its routes again.
//!
//! Bounded: a payload over [`Limits::max_payload`], a plugin over its rate
//! (token bucket: [`Limits::rate_per_s`], [`Limits::burst`]) or with
//! [`Limits::queue_per_plugin`] messages waiting is dropped and counted,
//! per plugin; one plugin's flood never takes another's room. The tap that
//! sees a publish never blocks: it is called on the publisher's thread
//! (for a publish from `step`, the service thread: never the cycle thread)
//! and either hands the frame to the socket without waiting or queues it for
//! the link's writer (bounded).
//!
//! Both sides' plugins learn the link's state on the topic
//! [`LINK_TOPIC`]: `up PEER` when a bridge session starts, `down REASON`
//! when it ends. Messages in flight when it ends are lost (counted as
//! `dropped_no_link`), never sent again: no message is delivered twice.

use crate::services::Bus;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;
use xplugin_link::bridge::{
    BridgeDecl, BridgeFrame, BridgeOpened, BridgeSink, BridgeTx, Direction, Limits, Route,
    TxRefused, TxTaken,
};
use xplugin_model::manifest::Side;
use xplugin_model::{Problem, ProblemCode};

/// The host's topic for the link's state: payload `up PEER` or
/// `down REASON`, published on each side's own bus.
pub const LINK_TOPIC: &str = "xplugin/link";
/// Outbound queue, all plugins together (each plugin is bounded further by
/// [`Limits::queue_per_plugin`]). Frames wait only while the socket is busy:
/// when nothing waits, the publishing thread hands a frame to the socket
/// itself, without waiting (`xplugin_link::bridge::BridgeTx`).
pub const QUEUE: usize = 1024;

/// What one plugin's bridge traffic came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PluginBridgeStats {
    /// Messages sent to the other computer.
    pub sent: u64,
    /// Messages received from the other computer (delivered here).
    pub received: u64,
    /// Not sent: the payload was over the limit.
    pub dropped_too_large: u64,
    /// Not sent: the plugin was over its rate.
    pub dropped_rate: u64,
    /// Not sent: the plugin's queue was full (the link is slower than it).
    pub dropped_queue: u64,
    /// Not sent: no link (or lost with one that ended).
    pub dropped_no_link: u64,
    /// Frames from the other computer refused: not on a route, too large,
    /// or their sender over its rate (a peer that does not keep its bounds).
    pub refused: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    dropped_too_large: AtomicU64,
    dropped_rate: AtomicU64,
    dropped_queue: AtomicU64,
    dropped_no_link: AtomicU64,
    refused: AtomicU64,
    waiting: AtomicUsize,
}

impl Counters {
    fn snapshot(&self) -> PluginBridgeStats {
        PluginBridgeStats {
            sent: self.sent.load(Relaxed),
            received: self.received.load(Relaxed),
            dropped_too_large: self.dropped_too_large.load(Relaxed),
            dropped_rate: self.dropped_rate.load(Relaxed),
            dropped_queue: self.dropped_queue.load(Relaxed),
            dropped_no_link: self.dropped_no_link.load(Relaxed),
            refused: self.refused.load(Relaxed),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// A plugin's token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The session in force.
struct Live {
    id: u64,
    peer: String,
    /// The peer's key (the controller: one pendant at a time).
    key: String,
    tx: BridgeTx,
    /// Topic -> local plugins whose publishes on it go out.
    out: BTreeMap<String, BTreeSet<String>>,
    /// Remote plugin -> topics this side accepts from it.
    inbound: BTreeMap<String, BTreeSet<String>>,
    routes: Vec<Route>,
}

/// What `status` shows about the bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BridgeStats {
    /// A bridge session is open.
    pub connected: bool,
    /// Who with (`pendant FINGERPRINT (ADDR)`, or the controller's address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The routes in force.
    pub routes: Vec<Route>,
    /// Per plugin of this side with a `bridge` declaration.
    pub plugins: BTreeMap<String, PluginBridgeStats>,
    /// Sessions since the host started.
    pub sessions: u64,
}

/// One host's bridge (controller or pendant).
pub struct Bridge {
    side: Side,
    bus: Arc<Bus>,
    /// This side's running plugins with a declaration.
    decls: Vec<BridgeDecl>,
    /// Every topic any of them sends (a quick filter for the tap).
    send_topics: BTreeSet<String>,
    limits: Limits,
    counters: BTreeMap<String, Counters>,
    live: Mutex<Option<Live>>,
    buckets: Mutex<BTreeMap<String, Bucket>>,
    /// The same bounds for what the other side's plugins send here: a peer
    /// that does not keep its own bounds does not get past these.
    inbound_buckets: Mutex<BTreeMap<String, Bucket>>,
    /// When the last refusal was logged (at most one line per 10 s).
    last_refusal_log: Mutex<Option<Instant>>,
    sessions: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Bridge {
    /// The bridge of a host on `side` whose running plugins declared
    /// `decls` (`ctrl_depend` empty on the controller), over `bus`: installs
    /// its tap on the bus.
    pub fn new(side: Side, bus: Arc<Bus>, decls: Vec<BridgeDecl>, limits: Limits) -> Arc<Bridge> {
        let send_topics = decls.iter().flat_map(|d| d.send.iter().cloned()).collect();
        let counters = decls
            .iter()
            .map(|d| (d.plugin.clone(), Counters::default()))
            .collect();
        let bridge = Arc::new(Bridge {
            side,
            bus: bus.clone(),
            decls,
            send_topics,
            limits,
            counters,
            live: Mutex::new(None),
            buckets: Mutex::new(BTreeMap::new()),
            inbound_buckets: Mutex::new(BTreeMap::new()),
            last_refusal_log: Mutex::new(None),
            sessions: AtomicU64::new(0),
        });
        let weak: Weak<Bridge> = Arc::downgrade(&bridge);
        let tap: crate::services::Tap = Arc::new(move |publisher, topic, data| {
            if let Some(b) = weak.upgrade() {
                b.forward(publisher, topic, data);
            }
        });
        if bus.set_tap(tap).is_err() {
            log::error!(
                "the plugin message bridge could not attach to the bus (one is attached already)"
            );
        }
        bridge
    }

    /// This side's declarations (what the pendant sends in `bridge-open`).
    pub fn decls(&self) -> &[BridgeDecl] {
        &self.decls
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Controller: opens a session for the pendant `peer` (identified by
    /// `peer_key`; the same pendant reconnecting takes over its own old
    /// session) with its client plugins' `pendant` declarations. Returns the
    /// answer for the pendant and the queue to send from.
    ///
    /// # Errors
    /// [`ProblemCode::LinkBridgeBusy`] while another pendant holds the
    /// bridge.
    pub fn open(
        self: &Arc<Self>,
        peer: &str,
        peer_key: &str,
        pendant: &[BridgeDecl],
    ) -> Result<(BridgeOpened, BridgeTx, u64), Problem> {
        {
            let live = lock(&self.live);
            if let Some(l) = live.as_ref() {
                if l.key != peer_key {
                    return Err(Problem::new(
                        ProblemCode::LinkBridgeBusy,
                        peer,
                        format!("the plugin message bridge is held by {}", l.peer),
                        "stop `xplugin-client run` on that pendant, or retry when it has gone",
                    ));
                }
            }
        }
        let (routes, problems) = routes(&self.decls, pendant);
        let opened = BridgeOpened {
            routes,
            problems: problems.iter().map(Into::into).collect(),
            limits: self.limits,
        };
        for p in &problems {
            log::warn!("link: {peer}: {p}");
        }
        let (rx, id) = self.start(peer, peer_key, &opened.routes);
        Ok((opened, rx, id))
    }

    /// Pendant: starts a session with the controller's answer. Routes the
    /// controller accepted but this side did not declare are ignored.
    pub fn attach(self: &Arc<Self>, peer: &str, opened: &BridgeOpened) -> (BridgeTx, u64) {
        let ours = |r: &Route| match r.direction {
            Direction::ToController => self
                .decls
                .iter()
                .any(|d| d.plugin == r.from && d.send.contains(&r.topic)),
            Direction::ToPendant => self.decls.iter().any(|d| {
                d.receive.contains(&r.topic)
                    && r.to.contains(&d.plugin)
                    && d.ctrl_depend.contains(&r.from)
            }),
        };
        let routes: Vec<Route> = opened.routes.iter().filter(|r| ours(r)).cloned().collect();
        self.start(peer, "", &routes)
    }

    fn start(&self, peer: &str, key: &str, routes: &[Route]) -> (BridgeTx, u64) {
        let outgoing = match self.side {
            Side::Controller => Direction::ToPendant,
            Side::Client => Direction::ToController,
        };
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut inbound: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in routes {
            if r.direction == outgoing {
                out.entry(r.topic.clone())
                    .or_default()
                    .insert(r.from.clone());
            } else {
                inbound
                    .entry(r.from.clone())
                    .or_default()
                    .insert(r.topic.clone());
            }
        }
        let tx = BridgeTx::new(QUEUE);
        let id = self.sessions.fetch_add(1, Relaxed) + 1;
        let old = lock(&self.live).replace(Live {
            id,
            peer: peer.to_string(),
            key: key.to_string(),
            tx: tx.clone(),
            out,
            inbound,
            routes: routes.to_vec(),
        });
        if let Some(old) = old {
            // The older session ends: its connection is closed.
            old.tx.close();
            log::info!("link: the plugin message bridge moves to a new session with {peer}");
        }
        for c in self.counters.values() {
            c.waiting.store(0, Relaxed);
        }
        let up = format!("up {peer}");
        let _ = self.bus.publish(LINK_TOPIC, up.as_bytes());
        (tx, id)
    }

    /// The sink for session `id`'s incoming frames.
    pub fn sink(self: &Arc<Self>, id: u64) -> Arc<dyn BridgeSink> {
        Arc::new(SessionSink {
            bridge: self.clone(),
            id,
        })
    }

    /// Session `id` ended (`why`): the plugins hear `down` (unless a newer
    /// session took over already).
    pub fn detach(&self, id: u64, why: &str) {
        let mut live = lock(&self.live);
        if live.as_ref().is_some_and(|l| l.id == id) {
            if let Some(l) = live.take() {
                l.tx.close();
            }
            drop(live);
            // What waited in the queue is lost with the session.
            for c in self.counters.values() {
                let lost = c.waiting.swap(0, Relaxed) as u64;
                c.dropped_no_link.fetch_add(lost, Relaxed);
            }
            let down = format!("down {why}");
            let _ = self.bus.publish(LINK_TOPIC, down.as_bytes());
        }
    }

    /// The tap: a plugin published `topic`.
    fn forward(&self, publisher: &str, topic: &str, data: &[u8]) {
        if !self.send_topics.contains(topic) {
            return;
        }
        let Some(c) = self.counters.get(publisher) else {
            return;
        };
        let live = lock(&self.live);
        let Some(l) = live.as_ref() else {
            // Declared, but no link now.
            if self.declares_send(publisher, topic) {
                bump(&c.dropped_no_link);
            }
            return;
        };
        if !l
            .out
            .get(topic)
            .is_some_and(|from| from.contains(publisher))
        {
            return;
        }
        if data.len() > self.limits.max_payload {
            bump(&c.dropped_too_large);
            return;
        }
        if !self.take_token(publisher) {
            bump(&c.dropped_rate);
            return;
        }
        if c.waiting.load(Relaxed) >= self.limits.queue_per_plugin {
            bump(&c.dropped_queue);
            return;
        }
        // Counted before the frame can reach the writer (whose `sent`
        // takes it back off).
        c.waiting.fetch_add(1, Relaxed);
        let frame = BridgeFrame {
            seq: 0,
            plugin: publisher.to_string(),
            topic: topic.to_string(),
            data: data.to_vec(),
        };
        match l.tx.try_send(frame) {
            Ok(TxTaken::Queued) => {}
            Ok(TxTaken::Sent) => {
                c.waiting.fetch_sub(1, Relaxed);
                bump(&c.sent);
            }
            Err(TxRefused::Full) => {
                c.waiting.fetch_sub(1, Relaxed);
                bump(&c.dropped_queue);
            }
            Err(TxRefused::Closed) => {
                c.waiting.fetch_sub(1, Relaxed);
                bump(&c.dropped_no_link);
            }
        }
    }

    fn declares_send(&self, plugin: &str, topic: &str) -> bool {
        self.decls
            .iter()
            .any(|d| d.plugin == plugin && d.send.iter().any(|t| t == topic))
    }

    fn take_token(&self, plugin: &str) -> bool {
        self.take_token_from(&self.buckets, plugin)
    }

    fn take_token_from(&self, buckets: &Mutex<BTreeMap<String, Bucket>>, plugin: &str) -> bool {
        let now = Instant::now();
        let rate = f64::from(self.limits.rate_per_s);
        let burst = f64::from(self.limits.burst.max(1));
        let mut buckets = lock(buckets);
        if !buckets.contains_key(plugin) {
            buckets.insert(
                plugin.to_string(),
                Bucket {
                    tokens: burst,
                    at: now,
                },
            );
        }
        let Some(b) = buckets.get_mut(plugin) else {
            return false;
        };
        b.tokens = (b.tokens + rate * now.duration_since(b.at).as_secs_f64()).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn deliver(&self, id: u64, frame: BridgeFrame) {
        let accepted = {
            let live = lock(&self.live);
            live.as_ref().is_some_and(|l| {
                l.id == id
                    && l.inbound
                        .get(frame.plugin.as_str())
                        .is_some_and(|topics| topics.contains(frame.topic.as_str()))
            })
        };
        let receivers: Vec<&Counters> = self
            .decls
            .iter()
            .filter(|d| d.receive.contains(&frame.topic))
            .filter_map(|d| self.counters.get(&d.plugin))
            .collect();
        let why = if !accepted {
            Some("not on a route of this bridge")
        } else if frame.data.len() > self.limits.max_payload {
            Some("larger than the bridge's payload limit")
        } else if !self.take_token_from(&self.inbound_buckets, &frame.plugin) {
            Some("its sender is over its rate")
        } else {
            None
        };
        if let Some(why) = why {
            for c in &receivers {
                bump(&c.refused);
            }
            let mut last = lock(&self.last_refusal_log);
            if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10)) {
                *last = Some(Instant::now());
                log::warn!(
                    "link: a message of {} on topic \"{}\" was refused: {why} (further refusals within 10 s are counted, not logged)",
                    frame.plugin,
                    frame.topic
                );
            }
            return;
        }
        for c in &receivers {
            bump(&c.received);
        }
        // Plain publish, not `publish_from`: what came over the link never
        // goes back over it.
        if let Err(e) = self.bus.publish(&frame.topic, &frame.data) {
            log::warn!(
                "link: a message on topic \"{}\" was not delivered: {e}",
                frame.topic
            );
        }
    }

    fn sent(&self, frame: &BridgeFrame) {
        if let Some(c) = self.counters.get(&frame.plugin) {
            c.waiting.fetch_sub(1, Relaxed);
            bump(&c.sent);
        }
    }

    /// What `status` shows.
    pub fn stats(&self) -> BridgeStats {
        let live = lock(&self.live);
        BridgeStats {
            connected: live.is_some(),
            peer: live.as_ref().map(|l| l.peer.clone()),
            routes: live.as_ref().map(|l| l.routes.clone()).unwrap_or_default(),
            plugins: self
                .counters
                .iter()
                .map(|(n, c)| (n.clone(), c.snapshot()))
                .collect(),
            sessions: self.sessions.load(Relaxed),
        }
    }
}

struct SessionSink {
    bridge: Arc<Bridge>,
    id: u64,
}

impl BridgeSink for SessionSink {
    fn deliver(&self, frame: BridgeFrame) {
        self.bridge.deliver(self.id, frame);
    }

    fn sent(&self, frame: &BridgeFrame) {
        self.bridge.sent(frame);
    }
}

/// The routes between the controller's running plugins (`controller`,
/// whose `ctrl_depend` is empty) and the pendant's client plugins
/// (`pendant`), and a problem for every declared topic that has none.
pub fn routes(controller: &[BridgeDecl], pendant: &[BridgeDecl]) -> (Vec<Route>, Vec<Problem>) {
    let mut routes = Vec::new();
    let mut problems = Vec::new();
    let refuse = |subject: String, field: &str, topic: &str, why: String| {
        Problem::new(
            ProblemCode::LinkBridgeRefused,
            subject,
            format!("topic \"{topic}\" does not cross the link: {why}"),
            "declare the topic on both sides (\"send\" on one, \"receive\" on the other) and list the controller plugin in the client plugin's ctrlDepend",
        )
        .with_field(field)
    };
    for c in pendant {
        let reach: Vec<&BridgeDecl> = controller
            .iter()
            .filter(|p| c.ctrl_depend.contains(&p.plugin))
            .collect();
        for t in &c.send {
            let to: Vec<String> = reach
                .iter()
                .filter(|p| p.receive.contains(t))
                .map(|p| p.plugin.clone())
                .collect();
            if to.is_empty() {
                problems.push(refuse(
                    format!("client plugin \"{}\"", c.plugin),
                    "bridge.send",
                    t,
                    format!(
                        "no running controller plugin in its ctrlDepend ({}) receives it",
                        list(&c.ctrl_depend)
                    ),
                ));
            } else {
                routes.push(Route {
                    direction: Direction::ToController,
                    topic: t.clone(),
                    from: c.plugin.clone(),
                    to,
                });
            }
        }
        for t in &c.receive {
            if !reach.iter().any(|p| p.send.contains(t)) {
                problems.push(refuse(
                    format!("client plugin \"{}\"", c.plugin),
                    "bridge.receive",
                    t,
                    format!(
                        "no running controller plugin in its ctrlDepend ({}) sends it",
                        list(&c.ctrl_depend)
                    ),
                ));
            }
        }
    }
    for p in controller {
        for t in &p.send {
            let to: Vec<String> = pendant
                .iter()
                .filter(|c| c.ctrl_depend.contains(&p.plugin) && c.receive.contains(t))
                .map(|c| c.plugin.clone())
                .collect();
            if !to.is_empty() {
                routes.push(Route {
                    direction: Direction::ToPendant,
                    topic: t.clone(),
                    from: p.plugin.clone(),
                    to,
                });
            }
        }
    }
    routes.sort();
    (routes, problems)
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(plugin: &str, ctrl: &[&str], send: &[&str], receive: &[&str]) -> BridgeDecl {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        BridgeDecl {
            plugin: plugin.into(),
            ctrl_depend: v(ctrl),
            send: v(send),
            receive: v(receive),
        }
    }

    #[test]
    fn routes_follow_declarations_and_ctrl_depend_only() {
        let controller = [
            decl("motion", &[], &["motion/state"], &["motion/cmd"]),
            decl("other", &[], &[], &["other/cmd"]),
        ];
        let pendant = [
            decl(
                "ui",
                &["motion"],
                &["motion/cmd", "other/cmd"],
                &["motion/state"],
            ),
            decl("spy", &[], &["motion/cmd"], &["motion/state"]),
        ];
        let (routes, problems) = routes(&controller, &pendant);
        assert_eq!(
            routes,
            [
                Route {
                    direction: Direction::ToController,
                    topic: "motion/cmd".into(),
                    from: "ui".into(),
                    to: vec!["motion".into()],
                },
                Route {
                    direction: Direction::ToPendant,
                    topic: "motion/state".into(),
                    from: "motion".into(),
                    to: vec!["ui".into()],
                },
            ]
        );
        // ui may not reach "other" (not in its ctrlDepend); spy reaches
        // nothing at all.
        let refused: Vec<(String, String)> = problems
            .iter()
            .map(|p| (p.subject.clone(), p.message.clone()))
            .collect();
        assert_eq!(problems.len(), 3, "{refused:?}");
        assert!(problems
            .iter()
            .all(|p| p.code == ProblemCode::LinkBridgeRefused));
        assert!(refused[0].1.contains("\"other/cmd\""), "{refused:?}");
        assert!(refused[1].0.contains("spy"), "{refused:?}");
    }

    /// Small bounds, to reach every one of them in a few messages.
    const TIGHT: Limits = Limits {
        max_payload: 16,
        queue_per_plugin: 4,
        rate_per_s: 1,
        burst: 8,
    };

    #[test]
    fn a_peer_over_the_bounds_is_refused_on_arrival() {
        let bus = Bus::new();
        let limits = TIGHT;
        let b = Bridge::new(
            Side::Controller,
            bus,
            vec![decl("motion", &[], &[], &["motion/cmd"])],
            limits,
        );
        let (_opened, _tx, id) = b
            .open(
                "pendant",
                "key",
                &[decl("ui", &["motion"], &["motion/cmd"], &[])],
            )
            .unwrap();
        let sink = b.sink(id);
        let frame = |topic: &str, len: usize| BridgeFrame {
            seq: 0,
            plugin: "ui".into(),
            topic: topic.into(),
            data: vec![0; len],
        };
        for _ in 0..100 {
            sink.deliver(frame("motion/cmd", 4));
        }
        sink.deliver(frame("motion/cmd", 17));
        sink.deliver(frame("other/topic", 4));
        let s = &b.stats().plugins["motion"];
        // The burst of 8 arrives; 92 over the rate and the oversized one are
        // refused (the off-route topic has no receiver here to count it).
        assert_eq!((s.received, s.refused), (8, 93), "{s:?}");
    }

    #[test]
    fn floods_are_dropped_per_plugin_and_counted() {
        let bus = Bus::new();
        let limits = TIGHT;
        let b = Bridge::new(
            Side::Client,
            bus.clone(),
            vec![
                decl("flood", &["c"], &["c/a"], &[]),
                decl("calm", &["c"], &["c/b"], &[]),
            ],
            limits,
        );
        let opened = BridgeOpened {
            routes: routes(&[decl("c", &[], &[], &["c/a", "c/b"])], b.decls()).0,
            problems: Vec::new(),
            limits,
        };
        let (tx, _id) = b.attach("controller", &opened);
        for _ in 0..100 {
            bus.publish_from("flood", "c/a", b"x").unwrap();
        }
        bus.publish_from("flood", "c/a", &[0; 17]).unwrap();
        bus.publish_from("calm", "c/b", b"hello").unwrap();
        let stats = b.stats();
        let flood = &stats.plugins["flood"];
        assert_eq!(flood.dropped_queue + flood.dropped_rate, 96, "{flood:?}");
        assert_eq!(flood.dropped_too_large, 1);
        // No socket attached: all of it waits in the session's queue.
        assert_eq!(tx.queued(), 5);
        assert_eq!(stats.plugins["calm"], PluginBridgeStats::default());
    }
}
