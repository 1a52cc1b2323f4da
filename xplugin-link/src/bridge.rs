//! The plugin message bridge: client plugins and controller plugins
//! publishing to each other over an established, authenticated session.
//!
//! A pendant opens it with [`Message::BridgeOpen`](crate::message::Message)
//! (its client plugins' declared topics and `ctrlDepend`); the controller
//! answers `bridge-opened` with the routes it accepts (and a problem for
//! every declaration it refuses). From then on the connection carries only
//! bridge frames, both ways, at any time, until either side closes it:
//!
//! ```text
//! [KIND_BRIDGE][seq: u64 BE][plugin len: u8][plugin][topic len: u8][topic][payload ...]
//! [KIND_PING]                 (every KEEPALIVE without traffic; SILENCE without
//!                              any frame from the peer ends the bridge)
//! ```
//!
//! Each side numbers the frames it sends (`seq` from 1, +1 per frame), and
//! one thread writes them in queue order on one TCP stream, so the order per
//! topic (and per sender) is the order of publishing. Nothing is ever sent
//! again: a frame lost with a connection is lost (counted by the host), and
//! a receiver drops any `seq` not above the last it saw, so no message is
//! delivered twice, also across a reconnect (the receiver's state belongs
//! to one session; a new session starts a new numbering the peer cannot
//! confuse with the old one: Noise keys are new per session).
//!
//! [`pump`] runs a bridge over a [`Session`]: a writer thread drains the
//! host's bounded outbound queue (the host never blocks on it: it drops and
//! counts when the queue is full), the calling thread reads and hands every
//! frame to the [`BridgeSink`]. What may cross, the bounds and the counters
//! are the host's (`xplugin_host::bridge`).

use crate::frame::{read_frame, write_frame, FrameError};
use crate::message::WireProblem;
use crate::noise::{Session, MAX_PLAINTEXT};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::{Deserialize, Serialize};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Frame kind: a bridge message.
pub const KIND_BRIDGE: u8 = 4;
/// Frame kind: keep-alive.
pub const KIND_PING: u8 = 5;
/// Largest payload of one bridge message. A larger publish stays local
/// (dropped from the bridge and counted).
pub const MAX_PAYLOAD: usize = 4096;
/// Longest plugin name or topic in a bridge frame.
pub const MAX_NAME: usize = 128;
/// A ping goes out after this long without an outgoing frame.
pub const KEEPALIVE: Duration = Duration::from_secs(1);
/// The bridge ends after this long without any frame from the peer.
pub const SILENCE: Duration = Duration::from_secs(5);
/// Time allowed to complete one frame once it started.
pub const FRAME_DEADLINE: Duration = Duration::from_secs(5);

const _: () = assert!(1 + 8 + 1 + MAX_NAME + 1 + MAX_NAME + MAX_PAYLOAD <= MAX_PLAINTEXT);

/// A plugin's declaration, sent by the pendant in `bridge-open`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeDecl {
    /// The client plugin.
    pub plugin: String,
    /// The controller plugins it may reach (its `ctrlDepend` names).
    #[serde(default)]
    pub ctrl_depend: Vec<String>,
    /// Topics it sends to the controller.
    #[serde(default)]
    pub send: Vec<String>,
    /// Topics it accepts from the controller.
    #[serde(default)]
    pub receive: Vec<String>,
}

/// Which way a route goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// From a client plugin to controller plugins.
    ToController,
    /// From a controller plugin to client plugins.
    ToPendant,
}

/// One accepted route: messages `from` publishes on `topic` reach `to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Route {
    /// Which way.
    pub direction: Direction,
    /// The topic.
    pub topic: String,
    /// The sending plugin.
    pub from: String,
    /// The plugins on the other side that receive it.
    pub to: Vec<String>,
}

/// The bounds the controller applies (and the pendant applies too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest payload, bytes.
    pub max_payload: usize,
    /// Messages of one plugin waiting to be sent, at most.
    pub queue_per_plugin: usize,
    /// Messages one plugin may send per second (sustained).
    pub rate_per_s: u32,
    /// Messages one plugin may send at once above the rate.
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload: MAX_PAYLOAD,
            queue_per_plugin: 64,
            rate_per_s: 1000,
            burst: 200,
        }
    }
}

/// The controller's answer to `bridge-open`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeOpened {
    /// The accepted routes, both ways.
    pub routes: Vec<Route>,
    /// Every declaration refused, and why (`link.bridge_refused`).
    #[serde(default)]
    pub problems: Vec<WireProblem>,
    /// The bounds in force.
    pub limits: Limits,
}

/// One message crossing the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeFrame {
    /// The sender's number for it (from 1).
    pub seq: u64,
    /// The plugin that published it.
    pub plugin: String,
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub data: Vec<u8>,
}

/// Why a bridge frame is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeFrameError {
    /// Shorter than its header says.
    #[error("a bridge frame is truncated")]
    Truncated,
    /// A name or topic too long, not UTF-8, or a payload too large.
    #[error("a bridge frame is malformed: {0}")]
    Malformed(&'static str),
}

impl BridgeFrame {
    /// The frame's plaintext (kind byte first).
    ///
    /// # Errors
    /// [`BridgeFrameError::Malformed`] for a name or topic over
    /// [`MAX_NAME`] or a payload over [`MAX_PAYLOAD`].
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), BridgeFrameError> {
        if self.plugin.len() > MAX_NAME || self.topic.len() > MAX_NAME {
            return Err(BridgeFrameError::Malformed("a name over 128 bytes"));
        }
        if self.data.len() > MAX_PAYLOAD {
            return Err(BridgeFrameError::Malformed("a payload over the limit"));
        }
        out.clear();
        out.push(KIND_BRIDGE);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.push(self.plugin.len() as u8);
        out.extend_from_slice(self.plugin.as_bytes());
        out.push(self.topic.len() as u8);
        out.extend_from_slice(self.topic.as_bytes());
        out.extend_from_slice(&self.data);
        Ok(())
    }

    /// Decodes a frame's body (after the kind byte). Bounded: never reads
    /// past `body`, never allocates more than `body.len()`.
    ///
    /// # Errors
    /// [`BridgeFrameError`].
    pub fn decode(body: &[u8]) -> Result<BridgeFrame, BridgeFrameError> {
        let (seq, rest) = split(body, 8)?;
        let mut s = [0u8; 8];
        s.copy_from_slice(seq);
        let (plugin, rest) = name(rest)?;
        let (topic, data) = name(rest)?;
        if data.len() > MAX_PAYLOAD {
            return Err(BridgeFrameError::Malformed("a payload over the limit"));
        }
        Ok(BridgeFrame {
            seq: u64::from_be_bytes(s),
            plugin,
            topic,
            data: data.to_vec(),
        })
    }
}

fn split(b: &[u8], n: usize) -> Result<(&[u8], &[u8]), BridgeFrameError> {
    if b.len() < n {
        return Err(BridgeFrameError::Truncated);
    }
    Ok(b.split_at(n))
}

fn name(b: &[u8]) -> Result<(String, &[u8]), BridgeFrameError> {
    let (len, rest) = split(b, 1)?;
    let n = usize::from(len[0]);
    if n > MAX_NAME {
        return Err(BridgeFrameError::Malformed("a name over 128 bytes"));
    }
    let (s, rest) = split(rest, n)?;
    let s = std::str::from_utf8(s).map_err(|_| BridgeFrameError::Malformed("a name not UTF-8"))?;
    Ok((s.to_string(), rest))
}

/// What the host does with a running bridge.
pub trait BridgeSink: Send + Sync {
    /// A frame arrived (in order; already checked for duplicates by the
    /// pump). Called on the bridge's reading thread; must not block long.
    fn deliver(&self, frame: BridgeFrame);
    /// A frame of the outbound queue went out.
    fn sent(&self, frame: &BridgeFrame);
}

/// Why a bridge ended.
#[derive(Debug)]
pub enum BridgeEnd {
    /// The peer closed the connection, or [`Closer::close`] was called.
    Closed,
    /// The peer was silent for [`SILENCE`].
    Silent,
    /// A frame could not be read, decrypted or decoded.
    Broken(String),
}

impl std::fmt::Display for BridgeEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BridgeEnd::Closed => f.write_str("the connection was closed"),
            BridgeEnd::Silent => write!(f, "the peer sent nothing for {} s", SILENCE.as_secs()),
            BridgeEnd::Broken(why) => f.write_str(why),
        }
    }
}

/// Ends a running [`pump`] from another thread.
#[derive(Debug, Clone)]
pub struct Closer {
    stream: Arc<TcpStream>,
    stop: Arc<AtomicBool>,
}

impl Closer {
    /// Closes the connection: the pump returns [`BridgeEnd::Closed`].
    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A session split for the bridge: one thread encrypts and writes, one
/// reads and decrypts. The Noise state is shared under a mutex held only
/// while a frame is encrypted or decrypted (its sending and receiving
/// counters are separate, so the two directions never wait on the network
/// for each other).
pub struct BridgeLink {
    reader: TcpStream,
    writer: TcpStream,
    closer: Closer,
    transport: Arc<Mutex<snow::TransportState>>,
}

impl BridgeLink {
    /// Splits `session` (after `bridge-opened`).
    ///
    /// # Errors
    /// The socket cannot be duplicated.
    pub fn new(session: Session) -> std::io::Result<BridgeLink> {
        let (stream, transport) = session.into_parts();
        let writer = stream.try_clone()?;
        let closing = stream.try_clone()?;
        Ok(BridgeLink {
            reader: stream,
            writer,
            closer: Closer {
                stream: Arc::new(closing),
                stop: Arc::new(AtomicBool::new(false)),
            },
            transport: Arc::new(Mutex::new(transport)),
        })
    }

    /// A handle that ends the bridge from another thread.
    pub fn closer(&self) -> Closer {
        self.closer.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the bridge until the connection ends: frames from `outbound` go
/// out in order (a ping after [`KEEPALIVE`] of quiet), frames in go to
/// `sink`. Returns why it ended; the connection is closed then.
pub fn pump(
    link: BridgeLink,
    outbound: Receiver<BridgeFrame>,
    sink: Arc<dyn BridgeSink>,
) -> BridgeEnd {
    let BridgeLink {
        mut reader,
        mut writer,
        closer,
        transport,
    } = link;
    let writer_transport = transport.clone();
    let writer_closer = closer.clone();
    let writer_sink = sink.clone();
    let spawned = std::thread::Builder::new()
        .name("xplugin-bridge-tx".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut plain = Vec::with_capacity(MAX_PLAINTEXT);
            let mut cipher = vec![0u8; crate::frame::MAX_FRAME];
            let mut seq = 0u64;
            while !writer_closer.stop.load(Ordering::SeqCst) {
                let frame = match outbound.recv_timeout(KEEPALIVE) {
                    Ok(mut f) => {
                        seq += 1;
                        f.seq = seq;
                        if f.encode(&mut plain).is_err() {
                            continue;
                        }
                        Some(f)
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        plain.clear();
                        plain.push(KIND_PING);
                        None
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                let n = match lock(&writer_transport).write_message(&plain, &mut cipher) {
                    Ok(n) => n,
                    Err(_) => break,
                };
                if write_frame(&mut writer, &cipher[..n]).is_err() {
                    break;
                }
                if let Some(f) = frame {
                    writer_sink.sent(&f);
                }
            }
            writer_closer.close();
        });
    let writer_thread = match spawned {
        Ok(t) => t,
        Err(e) => {
            closer.close();
            return BridgeEnd::Broken(format!("cannot start the bridge's writer thread: {e}"));
        }
    };
    let mut last_seq = 0u64;
    let end = loop {
        let frame = match read_frame(&mut reader, Instant::now() + SILENCE, FRAME_DEADLINE) {
            Ok(f) => f,
            Err(_) if closer.stop.load(Ordering::SeqCst) => break BridgeEnd::Closed,
            Err(FrameError::Closed) => break BridgeEnd::Closed,
            Err(FrameError::Timeout { .. }) => break BridgeEnd::Silent,
            Err(e) => break BridgeEnd::Broken(e.to_string()),
        };
        let mut plain = vec![0u8; frame.len()];
        let n = match lock(&transport).read_message(&frame, &mut plain) {
            Ok(n) => n,
            Err(_) => break BridgeEnd::Broken("a bridge frame did not decrypt".into()),
        };
        plain.truncate(n);
        match plain.split_first() {
            Some((&KIND_PING, [])) => {}
            Some((&KIND_BRIDGE, body)) => match BridgeFrame::decode(body) {
                // Never twice, never out of order.
                Ok(f) if f.seq > last_seq => {
                    last_seq = f.seq;
                    sink.deliver(f);
                }
                Ok(f) => {
                    break BridgeEnd::Broken(format!(
                        "bridge frame {} came after {last_seq}",
                        f.seq
                    ))
                }
                Err(e) => break BridgeEnd::Broken(e.to_string()),
            },
            _ => break BridgeEnd::Broken("a frame that is not a bridge frame".into()),
        }
    };
    closer.close();
    let _ = writer_thread.join();
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_hostile_ones_are_refused() {
        let f = BridgeFrame {
            seq: 7,
            plugin: "plugindemo".into(),
            topic: "plugindemo/button".into(),
            data: b"pressed".to_vec(),
        };
        let mut out = Vec::new();
        f.encode(&mut out).unwrap();
        assert_eq!(out[0], KIND_BRIDGE);
        assert_eq!(BridgeFrame::decode(&out[1..]).unwrap(), f);
        for cut in 0..out.len() - 1 - f.data.len() {
            assert!(BridgeFrame::decode(&out[1..1 + cut]).is_err(), "cut {cut}");
        }
        let mut big = f.clone();
        big.data = vec![0; MAX_PAYLOAD + 1];
        assert!(big.encode(&mut out).is_err());
        let mut bad = out.clone();
        bad[9] = 200;
        assert!(BridgeFrame::decode(&bad[1..]).is_err());
    }
}
