//! What a plugin's `step` hands to the rest of the host: log lines and
//! published messages, copied into fixed-size records and pushed into
//! wait-free single-producer/single-consumer rings (`rtrb`) created before
//! the first cycle. The cycle thread is the only producer; the service
//! thread drains them. A full ring drops the record and counts the drop:
//! `log` and `publish` from `step` never block, never allocate and never
//! make a system call.
//!
//! The host's `log` and `publish` services ask [`in_cycle`] whether they run
//! on the cycle thread; if so they go through [`log`] and [`publish`] here
//! instead of the blocking paths (the `log` crate's writer, the bus's
//! synchronous delivery).

use super::stats::CycleStats;
use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use xplugin_abi::{Status, XPLUGIN_ERR_NO_MEMORY, XPLUGIN_OK};

/// Longest log line from `step`, in bytes; longer lines are cut (and marked).
pub const LOG_TEXT_MAX: usize = 240;
/// Longest topic name accepted from `step` (as for every publish).
pub const TOPIC_MAX: usize = 256;
/// Largest message payload accepted from `step`; a larger one is refused
/// with `XPLUGIN_ERR_NO_MEMORY` (publish it from a non-real-time thread).
pub const PAYLOAD_MAX: usize = 1024;
/// Capacity of the log ring (records).
pub const LOG_RING: usize = 1024;
/// Capacity of the message ring (records).
pub const MESSAGE_RING: usize = 256;

/// A log line from `step`.
#[derive(Clone, Copy)]
pub struct LogRecord {
    /// Position of the plugin in the cycle.
    pub slot: u16,
    /// `XPLUGIN_LOG_*`.
    pub level: u32,
    /// Bytes used in `text`.
    pub len: u16,
    /// True if the line was longer than [`LOG_TEXT_MAX`].
    pub truncated: bool,
    /// The text (UTF-8 as the plugin gave it, possibly cut mid-character).
    pub text: [u8; LOG_TEXT_MAX],
}

/// A message published from `step`.
#[derive(Clone, Copy)]
pub struct MessageRecord {
    /// Position of the publishing plugin in the cycle.
    pub slot: u16,
    /// Bytes used in `topic`.
    pub topic_len: u16,
    /// The topic (valid UTF-8, checked by the caller).
    pub topic: [u8; TOPIC_MAX],
    /// Bytes used in `data`.
    pub len: u16,
    /// The payload.
    pub data: [u8; PAYLOAD_MAX],
}

/// The producer halves, owned by the cycle thread through a thread-local.
pub(crate) struct Outbox {
    pub(crate) logs: rtrb::Producer<LogRecord>,
    pub(crate) messages: rtrb::Producer<MessageRecord>,
    pub(crate) stats: Arc<CycleStats>,
}

thread_local! {
    // Const-initialised: reading it never allocates. It is set (and its
    // destructor registered) once, before the first cycle.
    static OUTBOX: RefCell<Option<Outbox>> = const { RefCell::new(None) };
    // The plugin whose `step` runs now: a plain cell, written once per step.
    static CURRENT: Cell<u16> = const { Cell::new(0) };
}

/// Installs the outbox on the calling (cycle) thread.
pub(crate) fn install(outbox: Outbox) {
    OUTBOX.with(|o| *o.borrow_mut() = Some(outbox));
}

/// Removes the outbox from the calling thread (after the last cycle).
pub(crate) fn uninstall() {
    OUTBOX.with(|o| o.borrow_mut().take());
}

/// Sets which plugin's step is about to run.
#[inline]
pub(crate) fn set_current(slot: u16) {
    CURRENT.with(|c| c.set(slot));
}

/// True when called on the cycle thread.
#[inline]
pub fn in_cycle() -> bool {
    OUTBOX.with(|o| o.try_borrow().map(|o| o.is_some()).unwrap_or(true))
}

/// Queues a log line from `step`. Returns false when not on the cycle thread
/// (the caller then logs the usual way).
pub fn log(level: u32, text: &[u8]) -> bool {
    OUTBOX.with(|o| {
        let Ok(mut guard) = o.try_borrow_mut() else {
            // Re-entered from inside ourselves: drop rather than block.
            return true;
        };
        let Some(o) = guard.as_mut() else {
            return false;
        };
        let len = text.len().min(LOG_TEXT_MAX);
        let mut record = LogRecord {
            slot: CURRENT.with(Cell::get),
            level,
            len: len as u16,
            truncated: text.len() > LOG_TEXT_MAX,
            text: [0; LOG_TEXT_MAX],
        };
        record.text[..len].copy_from_slice(&text[..len]);
        if o.logs.push(record).is_err() {
            let d = &o.stats.log_drops;
            d.store(d.load(Relaxed) + 1, Relaxed);
        }
        true
    })
}

/// Queues a message published from `step`. `None` when not on the cycle
/// thread; otherwise the status for the plugin: OK (queued, or dropped and
/// counted because the ring is full) or `XPLUGIN_ERR_NO_MEMORY` for a
/// payload over [`PAYLOAD_MAX`].
pub fn publish(topic: &str, data: &[u8]) -> Option<Status> {
    OUTBOX.with(|o| {
        let Ok(mut guard) = o.try_borrow_mut() else {
            return Some(XPLUGIN_ERR_NO_MEMORY);
        };
        let o = guard.as_mut()?;
        if data.len() > PAYLOAD_MAX || topic.len() > TOPIC_MAX {
            return Some(XPLUGIN_ERR_NO_MEMORY);
        }
        let mut record = MessageRecord {
            slot: CURRENT.with(Cell::get),
            topic_len: topic.len() as u16,
            topic: [0; TOPIC_MAX],
            len: data.len() as u16,
            data: [0; PAYLOAD_MAX],
        };
        record.topic[..topic.len()].copy_from_slice(topic.as_bytes());
        record.data[..data.len()].copy_from_slice(data);
        if o.messages.push(record).is_err() {
            let d = &o.stats.message_drops;
            d.store(d.load(Relaxed) + 1, Relaxed);
        }
        Some(XPLUGIN_OK)
    })
}
