//! Test hook: crash injection for the crash-consistency test.
//!
//! The store calls a failpoint between every step of commit, rollback and
//! recovery. When the environment variable [`FAILPOINT_ENV`]
//! (`XPLUGIN_FAILPOINT`) equals the step's full name (for example
//! `commit-after-gen-rename`), the process sends itself `SIGKILL` there, the
//! same as `kill -9` or a crash at that instant; `NAME@N` kills the Nth time
//! the step is passed (a step hit once per plugin or per chunk). The variable
//! is read once per process; when it is unset a failpoint costs one atomic
//! load and a branch.
//!
//! This exists only so tests can prove that every intermediate state is
//! recovered to "all old" or "all new". It is compiled only with the cargo
//! feature `failpoints`, which the test crate enables; without it (every
//! release build: `cargo build --release -p xplugin-controller`) the
//! variable is never read and a failpoint is an empty inline function.

/// The environment variable that arms one failpoint by name.
pub const FAILPOINT_ENV: &str = "XPLUGIN_FAILPOINT";

/// Every failpoint the store can hit, in the order an operation hits them.
///
/// `commit-*` are hit by [`Store::commit`](super::Store::commit) and
/// [`Store::set_enabled`](super::Store::set_enabled), `rollback-*` by
/// [`Store::rollback`](super::Store::rollback), `recovery-*` by the recovery
/// that [`Store::lock`](super::Store::lock) runs.
/// `txn-*` are hit by the install transactions ([`crate::transaction`]);
/// a transaction's commit also hits every `commit-*`.
/// `commit-after-staged-plugin` is hit after each staged plugin is in place,
/// so it kills after the first one (a half-built generation).
pub const FAILPOINTS: &[&str] = &[
    "commit-after-tmp-created",
    "commit-after-carry-over",
    "commit-after-staged-plugin",
    "commit-after-files-fsynced",
    "commit-after-state-written",
    "commit-after-values-written",
    "commit-after-values-renamed",
    "commit-after-gen-rename",
    "commit-after-tmp-symlink",
    "commit-after-swap",
    "commit-after-trash-rename",
    "commit-after-cleanup",
    "rollback-after-tmp-symlink",
    "rollback-after-swap",
    "rollback-after-trash-rename",
    "rollback-after-cleanup",
    "txn-after-begin",
    "txn-after-staged-fsync",
    "txn-after-prepared",
    "txn-after-commit-switch",
    "txn-after-decided-record",
    "recovery-after-tmp-symlink-removed",
    "recovery-after-staging-cleared",
    "recovery-after-tmp-removed",
    "recovery-after-trash-rename",
    "recovery-after-cleanup",
];

/// True when this build contains the failpoints (feature `failpoints`).
pub const COMPILED: bool = cfg!(feature = "failpoints");

#[cfg(feature = "failpoints")]
static ARMED: std::sync::OnceLock<Option<(String, u32)>> = std::sync::OnceLock::new();

#[cfg(feature = "failpoints")]
static PASSED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Kills the process with `SIGKILL` if `XPLUGIN_FAILPOINT` equals `name`
/// (or `name@N` and this is the Nth time). A test hook (see the module
/// documentation); does nothing otherwise, and nothing at all in builds
/// without the `failpoints` feature.
#[inline]
pub fn failpoint(name: &str) {
    #[cfg(feature = "failpoints")]
    if armed().is_some_and(|(armed, _)| armed == name) {
        passed();
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// The failpoint named `<operation>-<step>`, without building the string.
#[inline]
pub(crate) fn hit(operation: &str, step: &str) {
    #[cfg(feature = "failpoints")]
    if let Some((armed, _)) = armed() {
        let matches = armed
            .strip_prefix(operation)
            .and_then(|rest| rest.strip_prefix('-'))
            == Some(step);
        if matches {
            passed();
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = (operation, step);
}

/// The armed step was passed: kill the process the Nth time.
#[cfg(feature = "failpoints")]
fn passed() {
    let nth = armed().map_or(1, |(_, n)| *n);
    if PASSED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 >= nth {
        kill_self();
    }
}

/// Test hook for the negative controls of the power-loss test
/// (`tests/tests/it/powerloss.rs`): which fsyncs the store leaves out on the
/// calling thread. Only in builds with the `failpoints` feature.
#[cfg(feature = "failpoints")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkipFsync {
    /// Leave out every directory fsync (`fsync_dir`).
    pub dirs: bool,
    /// Leave out the fsync of every installed plugin file (`fsync_file`;
    /// `state.json` keeps its own).
    pub files: bool,
}

#[cfg(feature = "failpoints")]
thread_local! {
    static SKIP_FSYNC: std::cell::Cell<SkipFsync> = const {
        std::cell::Cell::new(SkipFsync { dirs: false, files: false })
    };
}

/// Makes the store on this thread leave out the fsyncs `skip` names, so the
/// power-loss test can prove that it sees the damage. Per thread, so other
/// tests in the same process are not affected.
#[cfg(feature = "failpoints")]
pub fn set_skip_fsync(skip: SkipFsync) {
    SKIP_FSYNC.with(|s| s.set(skip));
}

/// True when a negative control switched directory fsyncs off on this thread
/// (always false without the `failpoints` feature).
#[inline]
pub(crate) fn skip_dir_fsync() -> bool {
    #[cfg(feature = "failpoints")]
    return SKIP_FSYNC.with(|s| s.get().dirs);
    #[cfg(not(feature = "failpoints"))]
    false
}

/// True when a negative control switched the fsync of installed files off on
/// this thread (always false without the `failpoints` feature).
#[inline]
pub(crate) fn skip_file_fsync() -> bool {
    #[cfg(feature = "failpoints")]
    return SKIP_FSYNC.with(|s| s.get().files);
    #[cfg(not(feature = "failpoints"))]
    false
}

#[cfg(feature = "failpoints")]
fn armed() -> Option<&'static (String, u32)> {
    ARMED
        .get_or_init(|| {
            let v = std::env::var(FAILPOINT_ENV)
                .ok()
                .filter(|v| !v.is_empty())?;
            Some(match v.split_once('@') {
                Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1).max(1)),
                None => (v, 1),
            })
        })
        .as_ref()
}

#[cfg(feature = "failpoints")]
fn kill_self() -> ! {
    // SIGKILL cannot be caught: nothing (no destructor, no buffered write)
    // runs after this, exactly like an external `kill -9`.
    #[cfg(unix)]
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    // Windows' equivalent: TerminateProcess runs no handler and no
    // destructor (exit code 137, as a shell reports a SIGKILL).
    #[cfg(windows)]
    // SAFETY: GetCurrentProcess returns a pseudo-handle valid in this process;
    // terminating ourselves is the point.
    unsafe {
        use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};
        TerminateProcess(GetCurrentProcess(), 137);
    }
    // Only reached if the signal could not be sent; still die without cleanup.
    std::process::abort()
}
