//! Real-time setup, as real-time Linux practice does it (the ros2_control /
//! cactus-rt recipe): lock all memory (`mlockall(MCL_CURRENT | MCL_FUTURE)`),
//! keep the heap resident (`mallopt`: no trimming, no mmap'd chunks, one
//! arena, so a `free` on another thread never gives pages back that the
//! cycle then faults in again), pre-fault the cycle thread's stack, pin it to
//! a CPU and give it `SCHED_FIFO`.
//!
//! Nothing here is fatal: without `CAP_SYS_NICE` (or an `RLIMIT_RTPRIO`
//! allowing the priority) or with a memlock limit too small, the cycle runs
//! at normal priority and [`RtStatus`] says why, once, in the log and in
//! `status`.
//!
//! On Windows (the pendant build, which runs no cycle) each of these is
//! refused with the reason, so a status never claims real-time settings.

#[cfg(unix)]
use nix::libc;
use serde::Serialize;

/// What the real-time setup achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RtStatus {
    /// `fifo` or `other` (normal scheduling).
    pub policy: String,
    /// The SCHED_FIFO priority in force (0 for normal scheduling).
    pub priority: u8,
    /// The CPU the cycle thread is pinned to, if any.
    pub cpu: Option<usize>,
    /// True if all memory is locked (mlockall succeeded).
    pub memory_locked: bool,
    /// Stack bytes pre-faulted on the cycle thread.
    pub stack_prefaulted: usize,
    /// What was asked for but not achieved, and why (empty when all is well).
    pub degraded: Vec<String>,
}

impl RtStatus {
    /// True when every requested real-time setting is in force.
    pub fn is_real_time(&self) -> bool {
        self.policy == "fifo" && self.degraded.is_empty()
    }
}

impl std::fmt::Display for RtStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.policy == "fifo" {
            write!(f, "SCHED_FIFO priority {}", self.priority)?;
        } else {
            f.write_str("normal scheduling")?;
        }
        if let Some(cpu) = self.cpu {
            write!(f, ", pinned to CPU {cpu}")?;
        }
        if self.memory_locked {
            f.write_str(", memory locked")?;
        }
        for d in &self.degraded {
            write!(f, "; {d}")?;
        }
        Ok(())
    }
}

/// Locks all current and future memory of the process and keeps the heap
/// resident. Call once, before the threads whose stacks must be locked are
/// started (every host thread has an explicit, small stack size so locking
/// them stays cheap). Returns why it failed, if it did.
#[cfg(unix)]
pub fn lock_memory() -> Result<(), String> {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning parameters; the values
    // are ones glibc documents (M_TRIM_THRESHOLD -1 = never trim, M_MMAP_MAX
    // 0 = never serve a request with mmap, M_ARENA_MAX 1 = one arena).
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // SAFETY: mlockall takes flags only and has no memory-safety effect.
    let r = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if r == 0 {
        Ok(())
    } else {
        let e = std::io::Error::last_os_error();
        Err(format!(
            "memory not locked (mlockall: {e}; needs CAP_IPC_LOCK or a memlock limit (LimitMEMLOCK=infinity) large enough)"
        ))
    }
}

/// Touches `bytes` of the calling thread's stack so that the cycle never
/// takes a page fault on it. Returns the bytes touched.
#[inline(never)]
pub fn prefault_stack(bytes: usize) -> usize {
    const CHUNK: usize = 16 * 1024;
    fn touch(left: usize) -> usize {
        let mut buf = [0u8; CHUNK];
        // Volatile writes so the compiler cannot drop the buffer.
        for i in (0..CHUNK).step_by(4096) {
            // SAFETY: `i < CHUNK`, so the pointer is inside `buf`.
            unsafe { std::ptr::write_volatile(buf.as_mut_ptr().add(i), 1) };
        }
        std::hint::black_box(&buf);
        if left > CHUNK {
            CHUNK + touch(left - CHUNK)
        } else {
            CHUNK
        }
    }
    touch(bytes)
}

/// Refused on Windows: see the module documentation.
#[cfg(windows)]
pub fn lock_memory() -> Result<(), String> {
    Err(NOT_HERE.replace("{what}", "memory not locked"))
}

/// Pins the calling thread to `cpu`.
#[cfg(unix)]
pub fn pin_to_cpu(cpu: usize) -> Result<(), String> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET stays within the
    // set for cpu < CPU_SETSIZE, checked first.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(format!("CPU {cpu} is out of range"));
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        // 0 = the calling thread.
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!("not pinned to CPU {cpu} (sched_setaffinity: {e})"));
        }
    }
    Ok(())
}

/// Refused on Windows: see the module documentation.
#[cfg(windows)]
pub fn pin_to_cpu(cpu: usize) -> Result<(), String> {
    Err(NOT_HERE.replace("{what}", &format!("not pinned to CPU {cpu}")))
}

/// Refused on Windows: see the module documentation.
#[cfg(windows)]
pub fn set_fifo(priority: u8) -> Result<(), String> {
    Err(NOT_HERE.replace(
        "{what}",
        &format!("running at normal priority, not SCHED_FIFO {priority}"),
    ))
}

/// Why a real-time setting is refused on Windows.
#[cfg(windows)]
const NOT_HERE: &str =
    "{what} (real-time settings exist only on the Linux controller; this is a Windows build)";

/// Gives the calling thread `SCHED_FIFO` at `priority` (1..=99).
#[cfg(unix)]
pub fn set_fifo(priority: u8) -> Result<(), String> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority.clamp(1, 99)),
    };
    // SAFETY: `param` is a valid sched_param; pthread_self() is the calling
    // thread, which is alive.
    let r = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if r == 0 {
        Ok(())
    } else {
        let e = std::io::Error::from_raw_os_error(r);
        Err(format!(
            "running at normal priority, not SCHED_FIFO {priority} ({e}; needs CAP_SYS_NICE or LimitRTPRIO={priority})"
        ))
    }
}

/// Sets up the calling thread as the cycle thread: pin, pre-fault `stack`
/// bytes, SCHED_FIFO when `priority > 0`. `memory` is the outcome of
/// [`lock_memory`] (done once per process), recorded in the status.
pub fn setup_cycle_thread(
    priority: u8,
    cpu: Option<usize>,
    stack: usize,
    memory: &Result<(), String>,
) -> RtStatus {
    let mut status = RtStatus {
        policy: "other".into(),
        ..RtStatus::default()
    };
    if let Some(cpu) = cpu {
        match pin_to_cpu(cpu) {
            Ok(()) => status.cpu = Some(cpu),
            Err(e) => status.degraded.push(e),
        }
    }
    match memory {
        Ok(()) => status.memory_locked = true,
        Err(e) if priority > 0 => status.degraded.push(e.clone()),
        Err(_) => {}
    }
    status.stack_prefaulted = prefault_stack(stack);
    if priority > 0 {
        match set_fifo(priority) {
            Ok(()) => {
                status.policy = "fifo".into();
                status.priority = priority;
            }
            Err(e) => status.degraded.push(e),
        }
    }
    status
}
