//! The journal: which plugin and which stage each host thread is in, kept in
//! a small memory-mapped file (`ROOT/state/journal`) whose pages the kernel
//! keeps when the process dies, however it dies (SIGKILL, SIGSEGV, abort,
//! exit from inside a plugin). The next boot reads it to know who was
//! running ([`crate::quarantine`]).
//!
//! # Layout (little endian, fixed, versioned)
//!
//! ```text
//! 0      header  (HEADER bytes): magic, version, state, pid, boot id,
//!                 start time (CLOCK_MONOTONIC), generation, fault record
//! HEADER names   (NAMES x NAME_LEN): plugin names by journal index
//! ...    slots   (SLOTS x SLOT_LEN): one per host thread that calls into
//!                 plugins: active flag, plugin index, stage, since, cycle, tid
//! ```
//!
//! # Writers
//!
//! The slot of a thread is written only by that thread, with relaxed atomic
//! stores into the mapping (the cycle thread: two stores before and one
//! after each `step`, no system call). Names and the header are written
//! before the plugins are called. A process that dies leaves its record in
//! the page cache, which outlives it: a crash needs no `msync`. A machine
//! that goes down (power cut, reset, kernel crash) keeps only what was made
//! durable, so the header says which [`Phase`] the run was in, made durable
//! at each change (a handful of `msync`s per run), and whether each
//! lifecycle call (load, init, start, render, stop, destroy) was made durable
//! before it ran ([`Journal::open`]'s `durable_calls`). That costs one disk
//! flush per plugin per call, so a run does it only after a previous run was
//! lost by the machine going down during a lifecycle phase, when the record
//! did not say which call was running: the next such loss then names the
//! plugin. `reconfigure` (rare, admin-driven) is always durable. The cycle
//! path is three relaxed stores per step, never a system call.
//!
//! The fault record is written by [`crate::fault`]'s signal handler with
//! plain stores only (async-signal-safe).

use crate::stage::Stage;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

const MAGIC: u64 = u64::from_le_bytes(*b"XPJRNL01");
const VERSION: u32 = 1;
/// Bytes of the header.
pub const HEADER: usize = 256;
/// Longest plugin name kept, in bytes.
pub const NAME_LEN: usize = 64;
/// Plugins the journal can name (more are recorded by index only).
pub const NAMES: usize = 256;
/// Bytes of one slot.
pub const SLOT_LEN: usize = 64;
/// Slots: one per host thread that calls into plugins.
pub const SLOTS: usize = 8;
/// The file's size.
pub const SIZE: usize = HEADER + NAMES * NAME_LEN + SLOTS * SLOT_LEN;

/// The host threads that call into plugins, by slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Role {
    /// The main (lifecycle) thread: init, start, stop, destroy, idle.
    Main = 0,
    /// The real-time cycle thread: step.
    Cycle = 1,
    /// The cycle's service thread: message callbacks of what step published.
    Service = 2,
    /// Admin and link threads: reconfigure, message callbacks.
    Admin = 3,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Main => "main",
            Role::Cycle => "cycle",
            Role::Service => "service",
            Role::Admin => "admin",
        }
    }

    fn from_u32(v: u32) -> Option<Role> {
        [Role::Main, Role::Cycle, Role::Service, Role::Admin]
            .into_iter()
            .find(|r| *r as u32 == v)
    }
}

/// What the host was doing, as far as the machine going down is concerned.
/// Every change is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Phase {
    /// Not recorded (a journal written before phases existed, whose
    /// lifecycle calls were all durable).
    Unknown = 0,
    /// Loading, initialising, starting (and rendering) plugins.
    Starting = 1,
    /// Every plugin is started; the cycle and admin calls run.
    Running = 2,
    /// Stopping and destroying plugins.
    Stopping = 3,
    /// Loading, initialising and starting plugins, then stopping and
    /// destroying them with nothing run in between: a run that stops right
    /// after start (`boot` without cycles). One phase for both, so that
    /// the run makes no phase change durable between its start and its
    /// clean end: a loss of the machine in either reads the same way
    /// (nobody is blamed; the next run makes each call durable).
    StartingAndStopping = 4,
}

impl Phase {
    fn from_u32(v: u32) -> Phase {
        [
            Phase::Starting,
            Phase::Running,
            Phase::Stopping,
            Phase::StartingAndStopping,
        ]
        .into_iter()
        .find(|p| *p as u32 == v)
        .unwrap_or(Phase::Unknown)
    }

    /// True for the phases whose plugin calls are lifecycle calls.
    pub fn is_lifecycle(self) -> bool {
        !matches!(self, Phase::Running)
    }

    /// Words for a message: `starting plugins`, ...
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Unknown => "in an unrecorded phase",
            Phase::Starting => "loading and starting plugins",
            Phase::Running => "running (plugins started)",
            Phase::Stopping => "stopping plugins",
            Phase::StartingAndStopping => {
                "loading and starting plugins, or stopping them right after (a run without a cycle)"
            }
        }
    }
}

/// How the last run ended, as the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum RunState {
    /// Running (or it died without saying otherwise).
    Running = 1,
    /// Stopped cleanly.
    Clean = 2,
}

// Header offsets.
const H_MAGIC: usize = 0;
const H_VERSION: usize = 8;
const H_STATE: usize = 12;
const H_PID: usize = 16;
const H_BOOT_ID: usize = 24; // 16 bytes
#[cfg_attr(not(unix), allow(dead_code))] // written only by the Unix `open`
const H_STARTED_NS: usize = 40;
const H_GENERATION: usize = 48;
const H_LAZY_CALLS: usize = 56; // 1: lifecycle calls not made durable; 0: each one was
const H_PHASE: usize = 60;
// Fault record.
const F_SIGNAL: usize = 64;
const F_KIND: usize = 68; // 1 signal, 2 exit() inside a plugin, 3 hang
const F_SLOT: usize = 72;
const F_BLAMED: usize = 76; // plugin index + 1, 0 = none
const F_PC: usize = 80;
const F_ADDR: usize = 88;
const F_MONO_NS: usize = 96;
const F_STAGE: usize = 104;
const F_PLUGIN: usize = 108; // the slot's plugin index + 1
const F_CYCLE: usize = 112;
const F_ELAPSED_NS: usize = 120;
// Slot offsets (within a slot).
const S_ACTIVE: usize = 0;
const S_PLUGIN: usize = 4;
const S_STAGE: usize = 8;
const S_TID: usize = 12;
const S_SINCE_NS: usize = 16;
const S_CYCLE: usize = 24;

/// What kind of end a fault record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT).
    Signal,
    /// The process called `exit` while a plugin call was in progress.
    Exit,
    /// The supervisor found a call that did not return.
    Hang,
}

/// The mapped journal of this process.
pub struct Journal {
    base: *mut u8,
    /// Every lifecycle call is made durable before it runs.
    durable_calls: bool,
    /// Held open for the process's life: its lock tells the next run that
    /// this journal is still in use ([`open_file`]).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // written through elsewhere
    file: std::fs::File,
}

/// The journal file, sized and locked (`flock`, exclusive) by this process,
/// and whether it is the previous run's file, to be cleared.
///
/// The previous run's file is reused in place when it has the journal's
/// size and no live process holds its lock: overwriting its blocks makes
/// the first `msync` a plain data write, where deleting it and creating a
/// new one cost an unlink, a block allocation and a journal commit of the
/// file system (5–15 ms at every boot here). A file another process still
/// holds (a run that has not ended, e.g. one hung in a plugin while its
/// successor starts) is left to it: it is unlinked and a new one made, as
/// is a file of the wrong size or one this user cannot open for writing (a
/// root command's).
#[cfg(unix)]
fn open_file(path: &Path) -> std::io::Result<(std::fs::File, bool)> {
    use std::os::fd::AsRawFd;
    let lock = |f: &std::fs::File| {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        unsafe { nix::libc::flock(f.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) == 0 }
    };
    use std::fs::OpenOptions;
    if let Ok(f) = OpenOptions::new().read(true).write(true).open(path) {
        let sized = f
            .metadata()
            .is_ok_and(|m| m.is_file() && m.len() == SIZE as u64);
        if sized && lock(&f) {
            return Ok((f, true));
        }
    }
    let _ = std::fs::remove_file(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.set_len(0)?;
    file.set_len(SIZE as u64)?;
    // Failing to lock a file this process just made only means the next
    // run makes a new one again.
    lock(&file);
    Ok((file, false))
}

// SAFETY: the mapping is process-wide and lives until exit (never unmapped);
// every access goes through atomics or is done before other threads use it.
unsafe impl Send for Journal {}
// SAFETY: as above: concurrent access is only through atomic operations on
// disjoint, aligned words.
unsafe impl Sync for Journal {}

static JOURNAL: OnceLock<Journal> = OnceLock::new();

thread_local! {
    static ROLE: std::cell::Cell<Option<Role>> = const { std::cell::Cell::new(None) };
}

/// What the previous run left in the journal file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRun {
    /// How it ended, as far as the header knows.
    pub state: RunState,
    /// Its pid.
    pub pid: u32,
    /// The boot id of the kernel it ran under.
    pub boot_id: [u8; 16],
    /// The generation it booted.
    pub generation: u64,
    /// Each lifecycle call was made durable before it ran, so the slots
    /// are true even after the machine went down.
    pub durable_calls: bool,
    /// Its phase (durable).
    pub phase: Phase,
    /// Plugin names by journal index.
    pub names: Vec<String>,
    /// Threads that were inside a plugin: (role, plugin, stage, since_ns, cycle).
    pub inside: Vec<Inside>,
    /// The fault record, if one was written.
    pub fault: Option<Fault>,
}

/// A thread that was inside a plugin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inside {
    /// Which host thread.
    pub role: &'static str,
    /// The plugin's name.
    pub plugin: String,
    /// The call.
    pub stage: Option<Stage>,
    /// When the call began (CLOCK_MONOTONIC of that boot).
    pub since_ns: u64,
    /// The cycle number (step only).
    pub cycle: u64,
}

/// A fault record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What ended the run.
    pub kind: FaultKind,
    /// The signal, for [`FaultKind::Signal`].
    pub signal: i32,
    /// The plugin whose code faulted (by program counter), if known.
    pub blamed: Option<String>,
    /// The plugin whose call was in progress on the faulting thread.
    pub plugin: Option<String>,
    /// Its stage.
    pub stage: Option<Stage>,
    /// The faulting instruction.
    pub pc: u64,
    /// The faulting address.
    pub addr: u64,
    /// When (CLOCK_MONOTONIC of that boot).
    pub mono_ns: u64,
    /// The cycle number, when it happened in `step`.
    pub cycle: u64,
    /// How long the call had been running (hangs).
    pub elapsed_ns: u64,
}

/// This kernel boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let hex: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        for (i, pair) in hex.chunks(2).take(16).enumerate() {
            let s = std::str::from_utf8(pair).unwrap_or("0");
            id[i] = u8::from_str_radix(s, 16).unwrap_or(0);
        }
    }
    id
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Reads what the previous run left at `path` (`None`: no usable journal).
pub fn read_last(path: &Path) -> Option<LastRun> {
    let b = std::fs::read(path).ok()?;
    if b.len() < SIZE || read_u64(&b, H_MAGIC) != MAGIC || read_u32(&b, H_VERSION) != VERSION {
        return None;
    }
    let name = |i: u32| -> Option<String> {
        let at = HEADER + (i as usize) * NAME_LEN;
        let raw = b.get(at..at + NAME_LEN)?;
        let end = raw.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        let s = String::from_utf8_lossy(&raw[..end]).into_owned();
        (!s.is_empty()).then_some(s)
    };
    let names = (0..NAMES as u32).map_while(name).collect();
    let inside = (0..SLOTS)
        .filter_map(|s| {
            let at = HEADER + NAMES * NAME_LEN + s * SLOT_LEN;
            (read_u32(&b, at + S_ACTIVE) == 1).then(|| Inside {
                role: Role::from_u32(s as u32).map_or("?", Role::name),
                plugin: name(read_u32(&b, at + S_PLUGIN)).unwrap_or_else(|| "?".into()),
                stage: Stage::from_index(read_u32(&b, at + S_STAGE)),
                since_ns: read_u64(&b, at + S_SINCE_NS),
                cycle: read_u64(&b, at + S_CYCLE),
            })
        })
        .collect();
    let kind = match read_u32(&b, F_KIND) {
        1 => Some(FaultKind::Signal),
        2 => Some(FaultKind::Exit),
        3 => Some(FaultKind::Hang),
        _ => None,
    };
    let plus_one = |v: u32| v.checked_sub(1).and_then(name);
    let fault = kind.map(|kind| Fault {
        kind,
        signal: read_u32(&b, F_SIGNAL) as i32,
        blamed: plus_one(read_u32(&b, F_BLAMED)),
        plugin: plus_one(read_u32(&b, F_PLUGIN)),
        stage: Stage::from_index(read_u32(&b, F_STAGE)),
        pc: read_u64(&b, F_PC),
        addr: read_u64(&b, F_ADDR),
        mono_ns: read_u64(&b, F_MONO_NS),
        cycle: read_u64(&b, F_CYCLE),
        elapsed_ns: read_u64(&b, F_ELAPSED_NS),
    });
    let mut boot = [0u8; 16];
    boot.copy_from_slice(&b[H_BOOT_ID..H_BOOT_ID + 16]);
    Some(LastRun {
        state: if read_u32(&b, H_STATE) == RunState::Clean as u32 {
            RunState::Clean
        } else {
            RunState::Running
        },
        pid: read_u32(&b, H_PID),
        boot_id: boot,
        generation: read_u64(&b, H_GENERATION),
        durable_calls: read_u32(&b, H_LAZY_CALLS) == 0,
        phase: Phase::from_u32(read_u32(&b, H_PHASE)),
        names,
        inside,
        fault,
    })
}

impl Journal {
    /// Creates (or reuses) the journal file at `path`, sized and zeroed, maps
    /// it, writes this run's header (phase `first`: [`Phase::Starting`], or
    /// [`Phase::StartingAndStopping`] for a run that stops right after
    /// start) and makes it the process's journal. With `durable_calls`, every lifecycle call is
    /// made durable before it runs (see the module documentation for when).
    /// Returns `Ok(false)` if this process already has one.
    ///
    /// # Errors
    /// The I/O error (the host then runs without a journal and says so).
    #[cfg(unix)]
    pub fn open(
        path: &Path,
        generation: u64,
        durable_calls: bool,
        first: Phase,
    ) -> std::io::Result<bool> {
        if JOURNAL.get().is_some() {
            return Ok(false);
        }
        use std::os::fd::AsRawFd;
        let (file, reused) = open_file(path)?;
        // SAFETY: mapping a file we just sized to SIZE bytes, shared and
        // writable; the mapping is never unmapped (it lives as long as the
        // process, which is what the signal handler needs).
        let base = unsafe {
            nix::libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                nix::libc::PROT_READ | nix::libc::PROT_WRITE,
                nix::libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == nix::libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        if reused {
            // SAFETY: the whole SIZE-byte mapping, before any other thread
            // knows of it; no other process holds the file (its lock).
            unsafe { std::ptr::write_bytes(base.cast::<u8>(), 0, SIZE) };
        }
        let j = Journal {
            base: base.cast(),
            durable_calls,
            file,
        };
        j.u64(H_MAGIC).store(MAGIC, Relaxed);
        j.u32(H_VERSION).store(VERSION, Relaxed);
        j.u32(H_STATE).store(RunState::Running as u32, Relaxed);
        j.u32(H_PID).store(std::process::id(), Relaxed);
        let id = boot_id();
        for (i, chunk) in id.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            j.u64(H_BOOT_ID + i * 8)
                .store(u64::from_le_bytes(w), Relaxed);
        }
        j.u64(H_STARTED_NS)
            .store(crate::cycle::clock::monotonic_ns(), Relaxed);
        j.u64(H_GENERATION).store(generation, Relaxed);
        j.u32(H_LAZY_CALLS)
            .store(u32::from(!durable_calls), Relaxed);
        j.u32(H_PHASE).store(first as u32, Relaxed);
        j.sync();
        let _ = JOURNAL.set(j);
        Ok(true)
    }

    /// Refused on Windows: no journal is ever opened there, so [`get`] is
    /// always `None` and the host runs unguarded, saying so.
    ///
    /// # Errors
    /// Always [`std::io::ErrorKind::Unsupported`].
    #[cfg(windows)]
    pub fn open(
        path: &Path,
        generation: u64,
        durable_calls: bool,
        first: Phase,
    ) -> std::io::Result<bool> {
        let _ = (path, generation, durable_calls, first);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the crash journal (a shared file mapping read after a crash) exists only on the Linux controller",
        ))
    }

    fn at(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset < SIZE);
        // SAFETY: every caller passes an offset inside the SIZE-byte mapping.
        unsafe { self.base.add(offset) }
    }

    fn u32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: the offset is inside the mapping and 4-aligned (page-aligned
        // base, offsets multiples of 4); AtomicU32 has u32's layout; the
        // mapping lives for the rest of the process.
        unsafe { &*self.at(offset).cast::<AtomicU32>() }
    }

    fn u64(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: as for `u32`, 8-aligned offsets.
        unsafe { &*self.at(offset).cast::<AtomicU64>() }
    }

    /// Makes the mapping durable (msync). Not for the cycle path.
    pub fn sync(&self) {
        #[cfg(unix)]
        // SAFETY: the range is exactly the mapping.
        unsafe {
            nix::libc::msync(self.base.cast(), SIZE, nix::libc::MS_SYNC)
        };
        // (No journal is ever opened on Windows: there is no mapping to sync.)
    }

    /// Records the name of the plugin with journal index `index` (before
    /// any of its calls).
    pub fn name(&self, index: usize, name: &str) {
        if index >= NAMES {
            return;
        }
        let bytes = name.as_bytes();
        let len = bytes.len().min(NAME_LEN - 1);
        let padded = bytes[..len].iter().copied().chain(std::iter::repeat(0));
        for (i, b) in padded.take(NAME_LEN).enumerate() {
            // SAFETY: inside the names table of the mapping; byte stores
            // made before the plugin is called, by the thread that loads it.
            unsafe { self.at(HEADER + index * NAME_LEN + i).write_volatile(b) };
        }
    }

    fn slot(&self, role: Role, field: usize) -> usize {
        HEADER + NAMES * NAME_LEN + role as usize * SLOT_LEN + field
    }

    /// Records that this thread enters `stage` of plugin `index`.
    #[inline]
    pub fn enter(&self, role: Role, index: u32, stage: Stage, cycle: u64) {
        self.u32(self.slot(role, S_PLUGIN)).store(index, Relaxed);
        self.u32(self.slot(role, S_STAGE))
            .store(stage.index(), Relaxed);
        self.u64(self.slot(role, S_CYCLE)).store(cycle, Relaxed);
        self.u32(self.slot(role, S_ACTIVE)).store(1, Relaxed);
    }

    /// Records the start time of a non-cycle call (a clock read: not for
    /// the cycle path, where the supervisor watches the cycle counter).
    pub fn since(&self, role: Role, now_ns: u64) {
        self.u64(self.slot(role, S_SINCE_NS)).store(now_ns, Relaxed);
    }

    /// Records that this thread left the plugin.
    #[inline]
    pub fn leave(&self, role: Role) {
        self.u32(self.slot(role, S_ACTIVE)).store(0, Relaxed);
    }

    /// The slot of `role`: (active, plugin index, stage, since_ns, cycle, tid).
    pub fn read_slot(&self, role: Role) -> (bool, u32, Option<Stage>, u64, u64, u32) {
        (
            self.u32(self.slot(role, S_ACTIVE)).load(Relaxed) == 1,
            self.u32(self.slot(role, S_PLUGIN)).load(Relaxed),
            Stage::from_index(self.u32(self.slot(role, S_STAGE)).load(Relaxed)),
            self.u64(self.slot(role, S_SINCE_NS)).load(Relaxed),
            self.u64(self.slot(role, S_CYCLE)).load(Relaxed),
            self.u32(self.slot(role, S_TID)).load(Relaxed),
        )
    }

    /// Records the kernel thread id of `role`'s thread (for the signal
    /// handler, which finds the faulting thread's slot by it).
    pub fn register_thread(&self, role: Role) {
        let tid = crate::os::thread_id();
        self.u32(self.slot(role, S_TID)).store(tid, Relaxed);
        ROLE.with(|r| r.set(Some(role)));
    }

    /// The slot whose thread is `tid` (async-signal-safe: loads only).
    pub fn role_of_tid(&self, tid: u32) -> Option<Role> {
        [Role::Main, Role::Cycle, Role::Service, Role::Admin]
            .into_iter()
            .find(|r| self.u32(self.slot(*r, S_TID)).load(Relaxed) == tid)
    }

    /// Writes the fault record (async-signal-safe: stores only).
    #[allow(clippy::too_many_arguments)]
    pub fn record_fault(
        &self,
        kind: FaultKind,
        signal: i32,
        role: Option<Role>,
        blamed: Option<u32>,
        pc: u64,
        addr: u64,
        elapsed_ns: u64,
    ) {
        let kind_code = match kind {
            FaultKind::Signal => 1,
            FaultKind::Exit => 2,
            FaultKind::Hang => 3,
        };
        self.u32(F_SIGNAL).store(signal as u32, Relaxed);
        self.u32(F_SLOT)
            .store(role.map_or(u32::MAX, |r| r as u32), Relaxed);
        self.u32(F_BLAMED)
            .store(blamed.map_or(0, |b| b + 1), Relaxed);
        self.u64(F_PC).store(pc, Relaxed);
        self.u64(F_ADDR).store(addr, Relaxed);
        self.u64(F_ELAPSED_NS).store(elapsed_ns, Relaxed);
        if let Some(r) = role {
            let (active, plugin, stage, _, cycle, _) = self.read_slot(r);
            if active {
                self.u32(F_PLUGIN).store(plugin + 1, Relaxed);
                self.u32(F_STAGE)
                    .store(stage.map_or(0, Stage::index), Relaxed);
                self.u64(F_CYCLE).store(cycle, Relaxed);
            }
        }
        // clock_gettime(CLOCK_MONOTONIC), which is async-signal-safe.
        self.u64(F_MONO_NS)
            .store(crate::cycle::clock::monotonic_ns(), Relaxed);
        // The kind last: a reader that sees it sees the rest.
        self.u32(F_KIND)
            .store(kind_code, std::sync::atomic::Ordering::Release);
    }

    /// Records that the run entered `phase` and makes it durable (with
    /// every slot as it is now: a call that returned is no longer shown as
    /// running after the machine goes down).
    pub fn phase(&self, phase: Phase) {
        if self.u32(H_PHASE).swap(phase as u32, Relaxed) != phase as u32 {
            self.sync();
        }
    }

    /// Records that the run entered `phase` and has it made durable by a
    /// short-lived thread, off the caller's path. For [`Phase::Running`]:
    /// no lifecycle call runs in it, and until the `msync` completes a loss
    /// of the machine finds the previous phase, "starting", which blames
    /// nobody and only makes the next run record each call — the cautious
    /// reading. A phase whose calls must be attributed (starting, stopping)
    /// uses [`Journal::phase`], which waits.
    pub fn phase_soon(&'static self, phase: Phase) {
        if self.u32(H_PHASE).swap(phase as u32, Relaxed) == phase as u32 {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("xplugin-journal".into())
            .stack_size(64 * 1024)
            .spawn(move || self.sync());
        if spawned.is_err() {
            self.sync();
        }
    }

    /// Records that the run stops its plugins ([`Phase::Stopping`], made
    /// durable), unless its phase already covers the stop
    /// ([`Phase::StartingAndStopping`]: nothing changes, nothing to make
    /// durable).
    pub fn stopping(&self) {
        if self.current_phase() != Phase::StartingAndStopping {
            self.phase(Phase::Stopping);
        }
    }

    /// The phase this run is in.
    pub fn current_phase(&self) -> Phase {
        Phase::from_u32(self.u32(H_PHASE).load(Relaxed))
    }

    /// Every lifecycle call of this run is made durable before it runs.
    pub fn durable_calls(&self) -> bool {
        self.durable_calls
    }

    /// Marks the run as stopped cleanly and makes that durable. A run that
    /// stops right after start ([`Phase::StartingAndStopping`]: `boot`
    /// without cycles, which a script may run many times) starts the write
    /// and does not wait for it: the machine lost in the few milliseconds
    /// the write takes leaves the record of that one phase, read as a loss
    /// during it (nobody blamed; the next run makes each call durable). A
    /// run with a cycle or a daemon waits for the disk.
    pub fn clean_stop(&self) {
        self.u32(H_STATE).store(RunState::Clean as u32, Relaxed);
        if self.current_phase() == Phase::StartingAndStopping {
            self.write_soon();
        } else {
            self.sync();
        }
    }

    /// Starts writing the mapping to the disk without waiting for it
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`); where that is refused or
    /// missing, [`Journal::sync`].
    fn write_soon(&self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is the journal file's, open for the
            // process's life; the range is the file's size.
            let rc = unsafe {
                nix::libc::sync_file_range(
                    self.file.as_raw_fd(),
                    0,
                    SIZE as nix::libc::off64_t,
                    nix::libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            if rc == 0 {
                return;
            }
        }
        self.sync();
    }
}

/// The process's journal, if one was opened.
pub fn get() -> Option<&'static Journal> {
    JOURNAL.get()
}

/// The calling thread's role, if it registered one.
pub fn current_role() -> Option<Role> {
    ROLE.with(std::cell::Cell::get)
}

/// Runs `f` recorded as `stage` of plugin `index` on the calling thread's
/// slot (a no-op wrapper when there is no journal or the thread has no
/// slot). A lifecycle call is made durable before it runs when the run has
/// `durable_calls`; one outside the lifecycle phases (`reconfigure`, or one
/// plugin stopped or started while the others run) always, before and
/// after, so that its record neither gets lost nor outlives it.
pub fn around<T>(index: usize, stage: Stage, f: impl FnOnce() -> T) -> T {
    let (Some(j), Some(role)) = (get(), current_role()) else {
        return f();
    };
    j.enter(role, index as u32, stage, 0);
    j.since(role, crate::cycle::clock::monotonic_ns());
    let lifecycle = matches!(
        stage,
        Stage::Load
            | Stage::Init
            | Stage::Start
            | Stage::Stop
            | Stage::Destroy
            | Stage::Reconfigure
            | Stage::Render
    );
    let outside = lifecycle && !j.current_phase().is_lifecycle();
    if outside || (lifecycle && j.durable_calls) {
        j.sync();
    }
    let out = f();
    j.leave(role);
    if outside {
        j.sync();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn the_previous_file_is_reused_unless_a_live_run_holds_it() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal");
        let (first, reused) = open_file(&path).expect("new journal");
        assert!(!reused, "nothing to reuse yet");
        let ino = first.metadata().expect("stat").ino();
        // Held by a live run: a new file, the holder keeps its own.
        let (second, reused) = open_file(&path).expect("second journal");
        assert!(!reused, "a locked journal is not taken over");
        assert_ne!(second.metadata().expect("stat").ino(), ino);
        assert_eq!(first.metadata().expect("stat").nlink(), 0);
        drop(first);
        // The run ended (its lock went with it): the same file, in place.
        let ino = second.metadata().expect("stat").ino();
        drop(second);
        let (third, reused) = open_file(&path).expect("third journal");
        assert!(reused);
        assert_eq!(third.metadata().expect("stat").ino(), ino);
        drop(third);
        // A file of another size is replaced.
        std::fs::write(&path, b"short").expect("write");
        let (fourth, reused) = open_file(&path).expect("fourth journal");
        assert!(!reused);
        assert_eq!(fourth.metadata().expect("stat").len(), SIZE as u64);
    }

    #[test]
    fn layout_fits_and_offsets_are_aligned() {
        const { assert!(F_ELAPSED_NS + 8 <= HEADER) };
        for off in [
            H_MAGIC,
            H_BOOT_ID,
            H_STARTED_NS,
            H_GENERATION,
            F_PC,
            F_ADDR,
            F_MONO_NS,
            F_CYCLE,
            F_ELAPSED_NS,
        ] {
            assert_eq!(off % 8, 0, "{off}");
        }
        assert_eq!((HEADER + NAMES * NAME_LEN) % 8, 0);
        assert_eq!(SLOT_LEN % 8, 0);
        const { assert!(S_CYCLE + 8 <= SLOT_LEN) };
    }

    #[test]
    fn a_garbage_file_is_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal");
        std::fs::write(&p, b"not a journal").unwrap();
        assert!(read_last(&p).is_none());
        std::fs::write(&p, vec![0u8; SIZE]).unwrap();
        assert!(read_last(&p).is_none());
    }
}
