//! The pendant's half of the plugin message bridge: while `xplugin-client
//! run --until-stopped --controller ADDR:PORT` runs, one thread keeps a
//! bridge session with the controller, and opens a new one after the link
//! drops (the controller restarting to apply a generation, a cable pulled).
//! What crosses, the bounds and the counters are `xplugin_host::bridge`'s;
//! the session is `xplugin_link::bridge`'s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xplugin_host::boot::Booted;
use xplugin_host::bridge::Bridge;
use xplugin_host::remote_import::LinkTarget;
use xplugin_link::bridge::{pump, Closer, Limits};
use xplugin_link::client::connect;

/// Wait between two attempts to reach the controller.
const RECONNECT: Duration = Duration::from_millis(500);

/// The running pendant bridge. [`PendantBridge::stop`] ends it.
pub struct PendantBridge {
    bridge: Arc<Bridge>,
    stop: Arc<AtomicBool>,
    closer: Arc<Mutex<Option<Closer>>>,
    thread: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the bridge for `booted`'s running client plugins that declare a
/// `bridge`; `None` when none does (nothing would cross).
pub fn start(booted: &Booted, target: LinkTarget) -> Option<PendantBridge> {
    let bridge = booted.bridge(Limits::default());
    if bridge.decls().is_empty() {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let closer: Arc<Mutex<Option<Closer>>> = Arc::new(Mutex::new(None));
    let (b, s, c) = (bridge.clone(), stop.clone(), closer.clone());
    let thread = std::thread::Builder::new()
        .name("xplugin-bridge".into())
        .stack_size(512 * 1024)
        .spawn(move || run(&b, &target, &s, &c));
    match thread {
        Ok(t) => Some(PendantBridge {
            bridge,
            stop,
            closer,
            thread: Some(t),
        }),
        Err(e) => {
            log::error!("cannot start the plugin message bridge's thread: {e}");
            None
        }
    }
}

fn run(
    bridge: &Arc<Bridge>,
    target: &LinkTarget,
    stop: &AtomicBool,
    closer: &Mutex<Option<Closer>>,
) {
    let mut last_complaint: Option<(String, Instant)> = None;
    while !stop.load(Ordering::SeqCst) {
        match session(bridge, target, stop, closer) {
            Ok(()) => last_complaint = None,
            Err(why) => {
                // Say it once, then again only every minute.
                let repeat = last_complaint
                    .as_ref()
                    .is_some_and(|(w, at)| *w == why && at.elapsed() < Duration::from_secs(60));
                if !repeat {
                    log::warn!(
                        "plugin message bridge to {}: {why}; retrying",
                        target.address
                    );
                    last_complaint = Some((why, Instant::now()));
                }
            }
        }
        let until = Instant::now() + RECONNECT;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One bridge session, until it ends.
fn session(
    bridge: &Arc<Bridge>,
    target: &LinkTarget,
    stop: &AtomicBool,
    closer: &Mutex<Option<Closer>>,
) -> Result<(), String> {
    let mut conn = connect(
        &target.root,
        &target.address,
        target.device_id.as_deref(),
        target.hello.clone(),
    )
    .map_err(|e| e.to_string())?;
    let opened = conn
        .open_bridge(bridge.decls().to_vec())
        .map_err(|e| e.to_string())?;
    for p in &opened.problems {
        log::warn!("{}", p.to_problem());
    }
    let link = conn.into_bridge().map_err(|e| e.to_string())?;
    *lock(closer) = Some(link.closer());
    if stop.load(Ordering::SeqCst) {
        link.closer().close();
    }
    let peer = format!("controller {}", target.address);
    let (outbound, id) = bridge.attach(&peer, &opened);
    log::info!(
        "plugin message bridge to {}: open, {} route(s)",
        target.address,
        bridge.stats().routes.len()
    );
    let end = pump(link, outbound, bridge.sink(id));
    *lock(closer) = None;
    log::info!("plugin message bridge to {}: ended: {end}", target.address);
    bridge.detach(id, &end.to_string());
    Ok(())
}

impl PendantBridge {
    /// Ends the bridge (the plugins hear `down`) and returns its counters.
    pub fn stop(mut self) -> xplugin_host::bridge::BridgeStats {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(c) = lock(&self.closer).as_ref() {
            c.close();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.bridge.stats()
    }
}
