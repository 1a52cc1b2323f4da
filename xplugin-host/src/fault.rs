//! Who crashed: a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT)
//! is recorded in the journal with the faulting instruction mapped to the
//! plugin library that contains it, so a crash inside plugin B's code
//! reached through plugin A's call is blamed on B; then the default action
//! runs (the process dies as it would have). An `exit()` while a plugin call
//! is in progress is recorded too (an atexit hook).
//!
//! The handler is async-signal-safe: it reads a fixed table of code ranges
//! filled when each plugin was loaded, and writes the journal's mapped pages
//! with plain stores. The kernel keeps those pages when the process dies.

use crate::journal::{self, FaultKind};
use nix::libc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Code ranges the table can hold (a few per plugin).
const MAX_RANGES: usize = 1024;

struct Range {
    start: AtomicU64,
    end: AtomicU64,
    plugin: AtomicU32,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Range = Range {
    start: AtomicU64::new(0),
    end: AtomicU64::new(0),
    plugin: AtomicU32::new(0),
};

static RANGES: [Range; MAX_RANGES] = [EMPTY; MAX_RANGES];
static COUNT: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The fatal signals recorded.
const SIGNALS: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

struct Search<'a> {
    path: &'a [u8],
    /// The library's load address, when the loader said it: matched by
    /// that number instead of its path (every load walks every loaded
    /// object, and comparing paths made that walk quadratic in strlen and
    /// memcmp over a boot).
    bias: Option<usize>,
    found: Vec<(u64, u64)>,
}

unsafe extern "C" fn each_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `data` is the `Search` passed to dl_iterate_phdr below, alive
    // for the whole iteration; `info` is valid for this callback.
    let (search, info) = unsafe { (&mut *data.cast::<Search<'_>>(), &*info) };
    match search.bias {
        Some(bias) => {
            if info.dlpi_addr as usize != bias {
                return 0;
            }
        }
        None => {
            if info.dlpi_name.is_null() {
                return 0;
            }
            // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
            let name = unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes();
            if name != search.path {
                return 0;
            }
        }
    }
    for i in 0..usize::from(info.dlpi_phnum) {
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
            // 32-bit on armv7, 64-bit elsewhere.
            #[allow(clippy::unnecessary_cast)]
            let start = info.dlpi_addr as u64 + ph.p_vaddr as u64;
            #[allow(clippy::unnecessary_cast)]
            search.found.push((start, start + ph.p_memsz as u64));
        }
    }
    1
}

/// Records the executable segments of the loaded library at `path`
/// (loaded at `bias`, [`crate::loader::LoadedPlugin::load_bias`], when
/// known) as belonging to the plugin with journal index `plugin`. Call
/// right after `dlopen`, before any other call into the plugin. Returns how
/// many ranges were found (0: the loader does not list it).
pub fn register_library(plugin: usize, path: &std::path::Path, bias: Option<usize>) -> usize {
    use std::os::unix::ffi::OsStrExt;
    let mut search = Search {
        path: path.as_os_str().as_bytes(),
        // A library loaded at 0 (not position-independent) shares that
        // number with others: by path.
        bias: bias.filter(|&b| b != 0),
        found: Vec::new(),
    };
    // SAFETY: the callback matches dl_iterate_phdr's signature and only
    // reads what the loader hands it; `search` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each_object), (&mut search as *mut Search<'_>).cast()) };
    for (start, end) in &search.found {
        let i = COUNT.load(Relaxed);
        if i >= MAX_RANGES {
            break;
        }
        RANGES[i].start.store(*start, Relaxed);
        RANGES[i].end.store(*end, Relaxed);
        RANGES[i].plugin.store(plugin as u32, Relaxed);
        // Published last: the handler reads only ranges below COUNT.
        COUNT.store(i + 1, std::sync::atomic::Ordering::Release);
    }
    search.found.len()
}

/// The plugin whose code contains `pc` (async-signal-safe).
fn plugin_at(pc: u64) -> Option<u32> {
    let n = COUNT
        .load(std::sync::atomic::Ordering::Acquire)
        .min(MAX_RANGES);
    RANGES[..n]
        .iter()
        .find(|r| r.start.load(Relaxed) <= pc && pc < r.end.load(Relaxed))
        .map(|r| r.plugin.load(Relaxed))
}

/// The program counter in a signal's context.
///
/// # Safety
/// `ctx` is the `ucontext_t` the kernel passed to an SA_SIGINFO handler.
unsafe fn pc_of(ctx: *mut libc::c_void) -> u64 {
    if ctx.is_null() {
        return 0;
    }
    let uc = ctx.cast::<libc::ucontext_t>();
    // SAFETY: per this function's contract `uc` is a valid ucontext_t.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        {
            (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] as u64
        }
        #[cfg(target_arch = "aarch64")]
        {
            (*uc).uc_mcontext.pc
        }
        #[cfg(target_arch = "arm")]
        {
            u64::from((*uc).uc_mcontext.arm_pc)
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm")))]
        {
            let _ = uc;
            0
        }
    }
}

extern "C" fn on_fatal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SA_RESETHAND restored the default action on entry: when this returns,
    // a fault re-executes and dies, an abort() raises again and dies.
    let Some(j) = journal::get() else { return };
    // SAFETY: gettid is async-signal-safe and cannot fail.
    let tid = unsafe { libc::gettid() } as u32;
    let role = j.role_of_tid(tid);
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler.
    let pc = unsafe { pc_of(ctx) };
    let addr = if info.is_null() {
        0
    } else {
        // SAFETY: a valid siginfo_t from the kernel; si_addr is meaningful
        // for the fault signals and harmless to read for SIGABRT.
        unsafe { (*info).si_addr() as u64 }
    };
    j.record_fault(FaultKind::Signal, sig, role, plugin_at(pc), pc, addr, 0);
}

extern "C" fn at_exit() {
    let Some(j) = journal::get() else { return };
    let Some(role) = journal::current_role() else {
        return;
    };
    let (active, ..) = j.read_slot(role);
    if active {
        // `exit` called from inside a plugin call on this thread.
        j.record_fault(FaultKind::Exit, 0, Some(role), None, 0, 0, 0);
        j.sync();
    }
}

/// Installs the fatal-signal handlers and the exit hook (once per process).
/// Replaces the Rust runtime's own SIGSEGV/SIGBUS handler (its stack
/// overflow message): a crash is reported through the journal instead.
pub fn install() {
    if INSTALLED.swap(true, Relaxed) {
        return;
    }
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction is a valid starting point; the handler
        // has the SA_SIGINFO signature and is async-signal-safe (loads,
        // stores, gettid, clock_gettime).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
    // SAFETY: registering a plain extern "C" function with no arguments.
    unsafe { libc::atexit(at_exit) };
}
