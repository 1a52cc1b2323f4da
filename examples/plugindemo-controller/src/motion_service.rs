//! The `plugindemo.motion` service: a static `#[repr(C)]` table other plugins
//! find through the host's service registry.
//!
//! The C declaration is `include/plugindemo_motion.h`; the `abi_layout` test
//! compiles that header and compares sizes and offsets with this struct (it
//! includes this file by path, so keep it free of crate-internal imports).
//!
//! The service functions take no instance pointer (the layout is fixed by the
//! header), so the state they read lives in process-wide atomics. A library
//! is loaded once per process and initialised once, so there is exactly one
//! provider instance; `init` resets the state.

use core::sync::atomic::{AtomicU64, Ordering};

/// Name under which the table is registered.
pub const MOTION_SERVICE_NAME: &str = "plugindemo.motion";
/// Interface version (`PLUGINDEMO_MOTION_VERSION`), also passed as `iface_version`.
pub const MOTION_SERVICE_VERSION: u32 = 1;

/// `plugindemo_motion_service` in C.
#[repr(C)]
pub struct MotionService {
    /// Size of this struct as the provider knows it.
    pub struct_size: u32,
    /// [`MOTION_SERVICE_VERSION`].
    pub version: u32,
    /// Controller cycles since the provider's init.
    pub get_cycle_count: extern "C" fn() -> u64,
    /// Applies the configured speed override to a requested speed.
    pub scale_speed: extern "C" fn(f64) -> f64,
}

/// The table handed to the host; static so it outlives every user.
pub static MOTION_SERVICE: MotionService = MotionService {
    struct_size: core::mem::size_of::<MotionService>() as u32,
    version: MOTION_SERVICE_VERSION,
    get_cycle_count,
    scale_speed,
};

static CYCLE_COUNT: AtomicU64 = AtomicU64::new(0);
/// Speed override as `f64` bits; 1.0 until configured.
static SPEED_OVERRIDE_BITS: AtomicU64 = AtomicU64::new(0x3FF0_0000_0000_0000);

/// Resets the cycle counter and sets the speed override (called from `init`).
pub fn reset(speed_override: f64) {
    CYCLE_COUNT.store(0, Ordering::Relaxed);
    set_speed_override(speed_override);
}

/// Changes the speed override (called from `init` and `reconfigure`).
pub fn set_speed_override(speed_override: f64) {
    SPEED_OVERRIDE_BITS.store(speed_override.to_bits(), Ordering::Relaxed);
}

/// Counts one controller cycle. Lock-free and allocation-free: runs on the
/// cyclic thread.
pub fn count_cycle() -> u64 {
    CYCLE_COUNT.fetch_add(1, Ordering::Relaxed) + 1
}

extern "C" fn get_cycle_count() -> u64 {
    CYCLE_COUNT.load(Ordering::Relaxed)
}

extern "C" fn scale_speed(requested: f64) -> f64 {
    let factor = f64::from_bits(SPEED_OVERRIDE_BITS.load(Ordering::Relaxed));
    // A NaN request must not reach a drive: treat it as "stand still".
    if requested.is_nan() {
        return 0.0;
    }
    requested * factor
}
