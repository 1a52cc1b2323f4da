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
//! Sending ([`BridgeTx`]): when nothing waits, the publishing thread
//! encrypts the frame and hands it to the socket itself, without waiting
//! (`MSG_DONTWAIT`: what the socket does not take at once is finished by
//! the writer thread); otherwise the frame joins a bounded queue that one
//! writer thread drains in order. Either way the sender never waits for the
//! network, and a full queue is refused at once (the host drops and counts).
//! [`pump`] runs a bridge over a [`Session`]: the writer thread, and the
//! calling thread reads and hands every frame to the [`BridgeSink`]. What may
//! cross, the bounds and the counters are the host's
//! (`xplugin_host::bridge`).

use crate::frame::FrameError;
use crate::message::WireProblem;
use crate::noise::{Session, MAX_PLAINTEXT};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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

/// A session split for the bridge: the reader decrypts, the sender side
/// ([`BridgeTx`]) encrypts. The Noise state is shared under a mutex held only
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

/// Why [`BridgeTx::try_send`] did not take a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxRefused {
    /// The queue is full (the link is slower than the publishers).
    Full,
    /// The session ended.
    Closed,
}

/// What [`BridgeTx::try_send`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxTaken {
    /// Handed to the socket now (the sink's `sent` is not called for it).
    Sent,
    /// Queued; the writer thread sends it and calls the sink's `sent`.
    Queued,
}

struct Wire {
    stream: TcpStream,
    transport: Arc<Mutex<snow::TransportState>>,
}

#[derive(Default)]
struct TxState {
    /// The socket and cipher, once [`pump`] runs.
    wire: Option<Wire>,
    queue: VecDeque<BridgeFrame>,
    /// The writer thread is writing outside the lock, or `pending` holds the
    /// rest of a frame the socket did not take: nobody else may write.
    busy: bool,
    pending: Vec<u8>,
    closed: bool,
    seq: u64,
}

struct TxShared {
    state: Mutex<TxState>,
    wake: Condvar,
    capacity: usize,
}

/// The sending side of one bridge session: cheap to clone, usable from any
/// thread; never waits for the network.
#[derive(Clone)]
pub struct BridgeTx(Arc<TxShared>);

impl BridgeTx {
    /// A sender holding at most `capacity` frames while the socket is busy
    /// (or before [`pump`] attaches the socket).
    pub fn new(capacity: usize) -> BridgeTx {
        BridgeTx(Arc::new(TxShared {
            state: Mutex::new(TxState::default()),
            wake: Condvar::new(),
            capacity: capacity.max(1),
        }))
    }

    /// Sends `frame` (its `seq` is assigned here) or queues it.
    ///
    /// # Errors
    /// [`TxRefused`]: the queue is full or the session ended.
    pub fn try_send(&self, mut frame: BridgeFrame) -> Result<TxTaken, TxRefused> {
        let mut guard = lock(&self.0.state);
        let st = &mut *guard;
        if st.closed {
            return Err(TxRefused::Closed);
        }
        if !st.busy && st.queue.is_empty() {
            if let Some(wire) = &st.wire {
                // Nothing waits: this thread hands the frame to the socket.
                let sealed = seal(wire, &mut st.seq, Some(&mut frame));
                let sent = sealed.as_ref().map(|bytes| send_now(&wire.stream, bytes));
                return match (sealed, sent) {
                    (Some(bytes), Some(Ok(n))) => {
                        if n < bytes.len() {
                            // The socket's buffer is full: the writer
                            // finishes the frame, the rest queue behind it.
                            st.pending = bytes[n..].to_vec();
                            st.busy = true;
                            self.0.wake.notify_one();
                        }
                        Ok(TxTaken::Sent)
                    }
                    _ => {
                        st.closed = true;
                        self.0.wake.notify_all();
                        Err(TxRefused::Closed)
                    }
                };
            }
        }
        if st.queue.len() >= self.0.capacity {
            return Err(TxRefused::Full);
        }
        st.queue.push_back(frame);
        self.0.wake.notify_one();
        Ok(TxTaken::Queued)
    }

    /// Ends the session's sending (and, with the socket attached, the
    /// connection).
    pub fn close(&self) {
        let mut st = lock(&self.0.state);
        st.closed = true;
        if let Some(w) = &st.wire {
            let _ = w.stream.shutdown(std::net::Shutdown::Both);
        }
        self.0.wake.notify_all();
    }

    /// Frames waiting in the queue.
    pub fn queued(&self) -> usize {
        lock(&self.0.state).queue.len()
    }
}

/// Encrypts the next frame (`frame`, or a ping) into wire bytes (length
/// prefix included), numbering it; `None` when encryption fails.
fn seal(wire: &Wire, seq: &mut u64, frame: Option<&mut BridgeFrame>) -> Option<Vec<u8>> {
    let mut plain = Vec::with_capacity(64);
    match frame {
        Some(f) => {
            *seq += 1;
            f.seq = *seq;
            f.encode(&mut plain).ok()?;
        }
        None => plain.push(KIND_PING),
    }
    let mut cipher = vec![0u8; plain.len() + 16];
    let n = lock(&wire.transport)
        .write_message(&plain, &mut cipher)
        .ok()?;
    let mut out = Vec::with_capacity(4 + n);
    out.extend_from_slice(&(n as u32).to_be_bytes());
    out.extend_from_slice(&cipher[..n]);
    Some(out)
}

/// Writes what the socket takes now, without waiting.
#[cfg(unix)]
fn send_now(stream: &TcpStream, bytes: &[u8]) -> std::io::Result<usize> {
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    loop {
        match send(
            stream.as_raw_fd(),
            bytes,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EAGAIN) => return Ok(0),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(std::io::Error::from(e)),
        }
    }
}

/// Without a per-call non-blocking send, the writer thread sends
/// everything.
#[cfg(not(unix))]
fn send_now(_stream: &TcpStream, _bytes: &[u8]) -> std::io::Result<usize> {
    Ok(0)
}

/// The writer thread: finishes a partly sent frame, drains the queue in
/// order, pings after [`KEEPALIVE`] of quiet; ends when the session does.
fn writer(tx: BridgeTx, mut stream: TcpStream, sink: Arc<dyn BridgeSink>, closer: Closer) {
    let shared = &tx.0;
    loop {
        let (bytes, frame) = {
            let mut st = lock(&shared.state);
            loop {
                if st.closed || closer.stop.load(Ordering::SeqCst) {
                    drop(st);
                    closer.close();
                    return;
                }
                if !st.pending.is_empty() {
                    break (std::mem::take(&mut st.pending), None);
                }
                if !st.busy {
                    if let Some(mut f) = st.queue.pop_front() {
                        let sealed = st.wire.as_ref().and_then(|w| {
                            let mut seq = st.seq;
                            let b = seal(w, &mut seq, Some(&mut f));
                            Some((b?, seq))
                        });
                        let Some((b, seq)) = sealed else {
                            st.closed = true;
                            continue;
                        };
                        st.seq = seq;
                        st.busy = true;
                        break (b, Some(f));
                    }
                }
                let (guard, timeout) = shared
                    .wake
                    .wait_timeout(st, KEEPALIVE)
                    .unwrap_or_else(|e| e.into_inner());
                st = guard;
                if timeout.timed_out() && !st.busy && st.queue.is_empty() && st.pending.is_empty() {
                    let mut seq = st.seq;
                    let Some(b) = st.wire.as_ref().and_then(|w| seal(w, &mut seq, None)) else {
                        st.closed = true;
                        continue;
                    };
                    st.busy = true;
                    break (b, None);
                }
            }
        };
        let written = stream
            .set_write_timeout(Some(crate::frame::WRITE_DEADLINE))
            .and_then(|()| std::io::Write::write_all(&mut stream, &bytes));
        let mut st = lock(&shared.state);
        st.busy = false;
        if written.is_err() {
            st.closed = true;
            continue;
        }
        drop(st);
        if let Some(f) = frame {
            sink.sent(&f);
        }
    }
}

/// Reads frames from the bridge's stream with one `read` for as many bytes
/// as the socket holds (a frame per system call or better; the general
/// `frame::read_frame` makes several per frame). The same bounds: a frame over
/// [`crate::frame::MAX_FRAME`] is refused before it is read, no byte within
/// [`SILENCE`] ends the bridge, a frame not complete within
/// [`FRAME_DEADLINE`] of its first byte too.
struct FrameReader {
    stream: TcpStream,
    /// Zeroed once; bytes `start..end` are received and not yet taken.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    partial_since: Option<Instant>,
}

/// Room for the largest frame and its prefix, twice.
const READ_BUFFER: usize = 2 * (crate::frame::MAX_FRAME + 4);

impl FrameReader {
    fn new(stream: TcpStream) -> std::io::Result<FrameReader> {
        stream.set_read_timeout(Some(SILENCE))?;
        Ok(FrameReader {
            stream,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            partial_since: None,
        })
    }

    fn next(&mut self) -> Result<Vec<u8>, FrameError> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if avail.len() >= 4 {
                let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
                if len > crate::frame::MAX_FRAME {
                    return Err(FrameError::TooLarge(len));
                }
                if avail.len() >= 4 + len {
                    let body = avail[4..4 + len].to_vec();
                    self.start += 4 + len;
                    if self.start == self.end {
                        self.start = 0;
                        self.end = 0;
                        self.partial_since = None;
                    } else {
                        self.partial_since = Some(Instant::now());
                    }
                    return Ok(body);
                }
            }
            if !avail.is_empty() {
                let since = *self.partial_since.get_or_insert_with(Instant::now);
                if since.elapsed() > FRAME_DEADLINE {
                    return Err(FrameError::Timeout {
                        what: "a whole frame",
                    });
                }
            }
            if self.end == self.buf.len() {
                // Only a partial frame is left: move it to the front.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let had = self.end - self.start;
            match std::io::Read::read(&mut self.stream, &mut self.buf[self.end..]) {
                Ok(0) if had == 0 => return Err(FrameError::Closed),
                Ok(0) => {
                    return Err(FrameError::Truncated {
                        got: had,
                        want: had + 1,
                    })
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(FrameError::Timeout { what: "a message" })
                }
                Err(e) => return Err(FrameError::Io(e)),
            }
        }
    }
}

/// Runs the bridge until the connection ends: what `tx` is given goes out
/// in order (a ping after [`KEEPALIVE`] of quiet), frames in go to `sink`.
/// Returns why it ended; the connection and `tx` are closed then.
pub fn pump(link: BridgeLink, tx: BridgeTx, sink: Arc<dyn BridgeSink>) -> BridgeEnd {
    let BridgeLink {
        reader,
        writer: writer_stream,
        closer,
        transport,
    } = link;
    let mut reader = match FrameReader::new(reader) {
        Ok(r) => r,
        Err(e) => {
            tx.close();
            closer.close();
            return BridgeEnd::Broken(format!("cannot set the connection's deadline: {e}"));
        }
    };
    let attached = writer_stream.try_clone().map(|stream| {
        lock(&tx.0.state).wire = Some(Wire {
            stream,
            transport: transport.clone(),
        });
        tx.0.wake.notify_one();
    });
    if let Err(e) = attached {
        tx.close();
        closer.close();
        return BridgeEnd::Broken(format!("cannot duplicate the connection: {e}"));
    }
    let (writer_tx, writer_sink, writer_closer) = (tx.clone(), sink.clone(), closer.clone());
    let spawned = std::thread::Builder::new()
        .name("xplugin-bridge-tx".into())
        .stack_size(256 * 1024)
        .spawn(move || writer(writer_tx, writer_stream, writer_sink, writer_closer));
    let writer_thread = match spawned {
        Ok(t) => t,
        Err(e) => {
            tx.close();
            closer.close();
            return BridgeEnd::Broken(format!("cannot start the bridge's writer thread: {e}"));
        }
    };
    let mut last_seq = 0u64;
    let end = loop {
        let frame = match reader.next() {
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
    tx.close();
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
