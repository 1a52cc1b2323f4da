//! Test hooks at the link's protocol boundaries, compiled to nothing
//! without the `failpoints` feature (release builds).
//!
//! * Kill points: [`kill_point`] is a store failpoint
//!   ([`xplugin_store::failpoint::failpoint`]): `XPLUGIN_FAILPOINT=NAME` (or
//!   `NAME@N` for the Nth time it is passed) kills the process there with
//!   SIGKILL. [`LINK_FAILPOINTS`] names every link boundary, in the order an
//!   online import passes them.
//! * Drop points: `XPLUGIN_LINK_DROP=NAME[@N]` makes [`drop_point`] return
//!   true once, where the caller then drops the connection (a cut cable at
//!   that instant, the process living on).
//! * The negative control: `XPLUGIN_LINK_NO_PINNING=1` switches key pinning
//!   off on both sides (an unknown pendant is let in as `install`, a
//!   controller with another key is accepted), so the handshake tests can
//!   prove they see a broken check.

/// Every named link boundary: `link-client-*` are passed by the pendant's
/// online import, `link-server-*` by the controller's link server.
pub const LINK_FAILPOINTS: &[&str] = &[
    "link-client-after-handshake",
    "link-client-after-hello",
    "link-client-after-upload-begin",
    "link-client-after-upload-chunk",
    "link-client-after-upload-end",
    "link-client-after-journal-preparing",
    "link-client-after-prepare-answer",
    "link-client-after-journal-prepared",
    "link-client-after-journal-commit-sent",
    "link-client-after-commit-answer",
    "link-client-after-client-commit",
    "link-client-after-journal-cleared",
    "link-server-after-handshake",
    "link-server-after-hello",
    "link-server-after-upload-begin",
    "link-server-after-upload-chunk",
    "link-server-after-upload-complete",
    "link-server-after-prepare",
    "link-server-before-commit",
    "link-server-after-commit",
];

/// The environment variable that arms one drop point.
pub const DROP_ENV: &str = "XPLUGIN_LINK_DROP";
/// The environment variable of the negative control (`1`: no pinning).
pub const NO_PINNING_ENV: &str = "XPLUGIN_LINK_NO_PINNING";

/// Kills the process here when `XPLUGIN_FAILPOINT` names this boundary.
#[inline]
pub fn kill_point(name: &str) {
    xplugin_store::failpoint::failpoint(name);
}

/// True once, at the armed drop point (`XPLUGIN_LINK_DROP`).
#[inline]
pub fn drop_point(name: &str) -> bool {
    #[cfg(feature = "failpoints")]
    {
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        use std::sync::OnceLock;
        static ARMED: OnceLock<Option<(String, u32)>> = OnceLock::new();
        static HITS: AtomicU32 = AtomicU32::new(0);
        static FIRED: AtomicBool = AtomicBool::new(false);
        let armed = ARMED.get_or_init(|| {
            let v = std::env::var(DROP_ENV).ok().filter(|v| !v.is_empty())?;
            Some(match v.split_once('@') {
                Some((n, count)) => (n.to_string(), count.parse().unwrap_or(1)),
                None => (v, 1),
            })
        });
        if let Some((armed, nth)) = armed {
            if armed == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
                return !FIRED.swap(true, Ordering::SeqCst);
            }
        }
        false
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        false
    }
}

/// True when the negative control switched key pinning off (never in
/// builds without the `failpoints` feature).
#[inline]
pub fn pinning_disabled() -> bool {
    #[cfg(feature = "failpoints")]
    {
        static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OFF.get_or_init(|| std::env::var(NO_PINNING_ENV).is_ok_and(|v| v == "1"))
    }
    #[cfg(not(feature = "failpoints"))]
    false
}
