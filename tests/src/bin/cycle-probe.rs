//! cycle-probe: proves what the cycle path does not do.
//!
//! Loads the controller plugin libraries given on the command line through
//! the host's own lifecycle, runs the real-time cycle over them for
//! `--cycles N` cycles, and checks two things on the cycle thread from the
//! first cycle to the last:
//!
//! * **no heap allocation**: a counting global allocator counts every
//!   allocation and reallocation made on that thread while armed (armed by
//!   the cycle's `on_start` hook, just before the first cycle);
//! * **no system call but the clock's and sleep's**: with `--seccomp`, the
//!   `on_start` hook installs a seccomp filter on the cycle thread only that
//!   allows `clock_gettime`, `clock_nanosleep` and `restart_syscall`; any
//!   other system call kills the whole process with SIGSYS (so the caller
//!   sees a signal, not a report). After the last cycle the thread parks in
//!   `clock_nanosleep` and the main thread reports and exits.
//!
//! `--self-test` makes the `on_start` hook, once armed, allocate once and
//! (with `--seccomp`) call `getpid`: the negative controls, which must show
//! one counted allocation and a SIGSYS death.
//!
//! Prints one JSON document on stdout. Used by tests/tests/it/realtime.rs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xplugin_abi::XPLUGIN_KIND_CONTROLLER;
use xplugin_host::checks::check_plugin_file;
use xplugin_host::cycle::{Cycle, CycleHooks, CycleSettings};
use xplugin_host::lifecycle::{Lifecycle, PluginToLoad};
use xplugin_host::services::Bus;

thread_local! {
    // Const-initialised and without a destructor: reading it from inside
    // the allocator never allocates.
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

static CYCLE_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

struct Counting;

fn count() {
    if ARMED.with(Cell::get) {
        CYCLE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged; counting touches only an atomic and a thread-local
// Cell, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's layout (GlobalAlloc contract).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` and `layout` come from this allocator (which is
        // System's), as GlobalAlloc requires of the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Logs are counted, not written: the service thread writes them.
struct CountingLogger(AtomicUsize);

impl log::Log for CountingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        if r.target() == "xplugin::plugin" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn flush(&self) {}
}

static LOGGER: CountingLogger = CountingLogger(AtomicUsize::new(0));

#[cfg(target_os = "linux")]
mod filter {
    //! The seccomp filter of the cycle thread.
    use nix::libc;

    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    #[cfg(target_arch = "arm")]
    const ARCH: u32 = 0x4000_0028; // AUDIT_ARCH_ARM

    fn allowed() -> Vec<u32> {
        #[allow(unused_mut)]
        let mut v = vec![
            libc::SYS_clock_gettime as u32,
            libc::SYS_clock_nanosleep as u32,
            libc::SYS_restart_syscall as u32,
        ];
        // 32-bit ARM glibc uses the 64-bit-time calls (Linux 5.1+); the
        // libc crate does not name them for arm-gnu, so the numbers come
        // from the kernel's common 32-bit table (asm-generic/unistd.h).
        #[cfg(target_arch = "arm")]
        v.extend([
            403, // __NR_clock_gettime64
            407, // __NR_clock_nanosleep_time64
        ]);
        v
    }

    fn stmt(code: u16, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter { code, jt, jf, k }
    }

    /// Installs the filter on the calling thread.
    ///
    /// # Errors
    /// Why it could not (e.g. under qemu-user, which does not emulate
    /// seccomp).
    pub fn install() -> Result<(), String> {
        const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
        const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
        const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
        let kill = libc::SECCOMP_RET_KILL_PROCESS;
        let mut prog = vec![
            stmt(LD_W_ABS, 4), // seccomp_data.arch
            jump(JEQ_K, ARCH, 1, 0),
            stmt(RET_K, kill),
            stmt(LD_W_ABS, 0), // seccomp_data.nr
        ];
        for nr in allowed() {
            prog.push(jump(JEQ_K, nr, 0, 1));
            prog.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
        }
        prog.push(stmt(RET_K, kill));
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        // SAFETY: prctl with these options takes integers and, for
        // PR_SET_SECCOMP, a pointer to a sock_fprog that lives across the
        // call (the kernel copies the program).
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(format!(
                    "PR_SET_NO_NEW_PRIVS: {}",
                    std::io::Error::last_os_error()
                ));
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog,
                0,
                0,
            ) != 0
            {
                return Err(format!(
                    "PR_SET_SECCOMP: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(())
    }
}

fn usage() -> ! {
    eprintln!("usage: cycle-probe [--cycles N] [--period-us P] [--seccomp] [--budget-us NAME=US]... LIB...");
    std::process::exit(2)
}

fn main() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Trace);
    let mut cycles = 10_000u64;
    let mut period_us = 200u64;
    let mut seccomp = false;
    let mut self_test = false;
    let mut budgets: Vec<(String, u64)> = Vec::new();
    let mut libs: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cycles" => {
                cycles = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--period-us" => {
                period_us = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--seccomp" => seccomp = true,
            "--self-test" => self_test = true,
            "--budget-us" => {
                let v = args.next().unwrap_or_else(|| usage());
                let (n, us) = v.split_once('=').unwrap_or_else(|| usage());
                budgets.push((n.to_string(), us.parse().unwrap_or_else(|_| usage())));
            }
            _ if a.starts_with("--") => usage(),
            _ => libs.push(PathBuf::from(a)),
        }
    }
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut lc = Lifecycle::new("2.1.0", Bus::new());
    let plugins: Vec<PluginToLoad> = libs
        .iter()
        .map(|lib| {
            let stem = lib
                .file_stem()
                .map(|s| s.to_string_lossy().trim_start_matches("lib").to_string())
                .unwrap_or_default();
            let budget = budgets
                .iter()
                .find(|(n, _)| *n == stem)
                .map_or(0, |(_, us)| us * 1000);
            PluginToLoad {
                name: stem.clone(),
                version: "0.1.0".into(),
                library: check_plugin_file(lib, XPLUGIN_KIND_CONTROLLER)
                    .unwrap_or_else(|e| panic!("{}: {e}", lib.display())),
                config_json: "{}".into(),
                depend: Vec::new(),
                data_dir: data.path().to_path_buf(),
                cycle_budget_ns: budget,
                enable: true,
            }
        })
        .collect();
    // SAFETY: the probe's own test fixtures, checked by check_plugin_file.
    unsafe { lc.init_all(plugins) };
    lc.start_all();
    let seccomp_result = Arc::new(std::sync::Mutex::new(None::<Result<(), String>>));
    let result = seccomp_result.clone();
    let hooks = CycleHooks {
        on_start: Some(Box::new(move || {
            if seccomp {
                #[cfg(target_os = "linux")]
                let r = filter::install();
                #[cfg(not(target_os = "linux"))]
                let r = Err("seccomp is Linux-only".to_string());
                // Reported before the first cycle (outside the armed window).
                if let Ok(mut slot) = result.lock() {
                    *slot = Some(r);
                }
            }
            ARMED.with(|a| a.set(true));
            if self_test {
                // Negative controls: what the proofs must catch.
                std::hint::black_box(Vec::<u8>::with_capacity(16));
                #[cfg(target_os = "linux")]
                // SAFETY: getpid has no arguments and no memory effects.
                unsafe {
                    nix::libc::syscall(nix::libc::SYS_getpid);
                }
            }
        })),
        on_exit: Some(Box::new(move || {
            ARMED.with(|a| a.set(false));
            if seccomp {
                // Only the clock and sleep are allowed on this thread now:
                // park; the main thread reports and exits the process.
                loop {
                    let now = xplugin_host::cycle::clock::monotonic_ns();
                    xplugin_host::cycle::clock::sleep_until(now + 1_000_000_000);
                }
            }
        })),
    };
    let settings = CycleSettings {
        period_ns: period_us * 1000,
        cycles: Some(cycles),
        ..CycleSettings::default()
    };
    // SAFETY: the instances are `lc`'s running plugins; `lc` is shut down
    // only after the cycle is joined (or the process exits with them alive).
    let cycle = unsafe { Cycle::spawn(settings, lc.cycle_plugins(), lc.bus().clone(), hooks) }
        .unwrap_or_else(|e| panic!("cycle: {e}"));
    let start = Instant::now();
    while cycle.stats().cycles.load(Ordering::Relaxed) < cycles {
        if start.elapsed() > Duration::from_secs(600) {
            eprintln!("cycle-probe: the cycle did not finish");
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the service thread drain what the last cycles queued.
    std::thread::sleep(Duration::from_millis(200));
    let timing = cycle.stats().report();
    let seccomp_state = match seccomp_result.lock().ok().and_then(|s| s.clone()) {
        None => "off".to_string(),
        Some(Ok(())) => "enforced".to_string(),
        Some(Err(e)) => format!("unavailable: {e}"),
    };
    let report = serde_json::json!({
        "cycles": timing.cycles,
        "allocations_on_cycle_thread": CYCLE_ALLOCATIONS.load(Ordering::Relaxed),
        "seccomp": seccomp_state,
        "plugin_log_lines": LOGGER.0.load(Ordering::Relaxed),
        "timing": timing,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    if seccomp {
        // The cycle thread is parked under its filter; leave without joining.
        std::process::exit(0);
    }
    let _ = cycle.join();
    lc.shutdown();
}
