//! The few operating-system calls the host makes outside the controller-only
//! modules, one function each, for Unix and for Windows (the pendant build,
//! docs/windows.md).

/// Ends the process at once with `code`: no destructors, no `atexit`
/// handlers, nothing that could call into a hung plugin (`_exit(2)`; on
/// Windows `TerminateProcess` on itself, which runs no DLL detach code
/// either, unlike `ExitProcess`).
pub fn exit_now(code: i32) -> ! {
    #[cfg(unix)]
    // SAFETY: _exit ends the process without running any user code.
    unsafe {
        nix::libc::_exit(code)
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};
        // SAFETY: GetCurrentProcess returns a pseudo-handle valid in this
        // process; TerminateProcess on it does not return when it succeeds.
        unsafe { TerminateProcess(GetCurrentProcess(), code as u32) };
        // Only if terminating ourselves failed: still run no destructors.
        std::process::abort()
    }
}

/// The kernel's id of the calling thread (`gettid`; `GetCurrentThreadId`).
pub fn thread_id() -> u32 {
    #[cfg(unix)]
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { nix::libc::gettid() } as u32;
    #[cfg(windows)]
    // SAFETY: no arguments, cannot fail.
    let tid = unsafe { windows_sys::Win32::System::Threading::GetCurrentThreadId() };
    tid
}

/// How many CPUs this thread may run on: its affinity mask on Linux (one
/// `sched_getaffinity`), else the standard library's count. Unlike
/// `std::thread::available_parallelism` on Linux, it does not read the
/// cgroup's CPU quota (several files under `/sys/fs/cgroup`, about 50 µs):
/// for sizing a short burst of check threads, a quota only slows them.
pub fn usable_cpus() -> usize {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a zeroed cpu_set_t is a valid (empty) set, which the
        // kernel fills; the size passed is the set's own.
        let count = unsafe {
            let mut set: nix::libc::cpu_set_t = std::mem::zeroed();
            if nix::libc::sched_getaffinity(
                0,
                std::mem::size_of::<nix::libc::cpu_set_t>(),
                &mut set,
            ) == 0
            {
                nix::libc::CPU_COUNT(&set)
            } else {
                0
            }
        };
        if count > 0 {
            return count as usize;
        }
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// True if a process with id `pid` exists (and, on Windows, has not exited).
pub fn process_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    #[cfg(unix)]
    {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::{CloseHandle, STILL_ACTIVE};
        use windows_sys::Win32::System::Threading::{
            GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
        };
        // SAFETY: plain integer arguments; a null handle means no such process
        // (or no access to it, which we report as not running).
        let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        if handle.is_null() {
            return false;
        }
        let mut code = 0u32;
        // SAFETY: `handle` is the process handle just opened, `code` is
        // writable; the handle is closed exactly once below.
        unsafe {
            let ok = GetExitCodeProcess(handle, &mut code) != 0;
            CloseHandle(handle);
            ok && code == STILL_ACTIVE as u32
        }
    }
}

/// The kernel's release and version (`uname`), for diagnostics; on Windows
/// `None` (the Win32 version calls lie to programs without a manifest).
pub fn kernel() -> Option<String> {
    #[cfg(unix)]
    {
        nix::sys::utsname::uname().ok().map(|u| {
            format!(
                "{} {}",
                u.release().to_string_lossy(),
                u.version().to_string_lossy()
            )
        })
    }
    #[cfg(windows)]
    {
        None
    }
}
