//! The Rust side for plugin authors: [`Plugin`], [`Host`] and [`export_plugin!`].

use crate::*;
use core::ffi::{c_char, c_void, CStr};
use std::ffi::CString;
use std::path::PathBuf;

/// An error a plugin returns from a lifecycle call: a status and a message for
/// the host's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// Negative `XPLUGIN_ERR_*` code.
    pub status: Status,
    /// Human-readable reason; written into the host's error buffer.
    pub message: String,
}

impl PluginError {
    /// An error with an explicit status. A non-negative status is turned into
    /// [`XPLUGIN_ERR_FAILED`] so that an error never reads as success.
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        let status = if status < 0 {
            status
        } else {
            XPLUGIN_ERR_FAILED
        };
        PluginError {
            status,
            message: message.into(),
        }
    }

    /// A generic failure ([`XPLUGIN_ERR_FAILED`]).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(XPLUGIN_ERR_FAILED, message)
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, status_name(self.status))
    }
}

impl std::error::Error for PluginError {}

impl From<String> for PluginError {
    fn from(message: String) -> Self {
        PluginError::failed(message)
    }
}

impl From<&str> for PluginError {
    fn from(message: &str) -> Self {
        PluginError::failed(message)
    }
}

/// What a Rust plugin implements. [`export_plugin!`] turns it into the C
/// descriptor. Every method runs inside `catch_unwind`: a panic is reported to
/// the host as [`XPLUGIN_ERR_PANIC`] and the host marks the plugin failed.
///
/// The host never calls two methods of one instance at the same time.
pub trait Plugin: Sized + Send + 'static {
    /// Creates the instance. `config_json` is the resolved configuration
    /// (`{}` when the plugin has none).
    ///
    /// # Errors
    /// An error makes the host report the plugin as failed and skip its dependents.
    fn init(host: Host, config_json: &str) -> Result<Self, PluginError>;

    /// Called after every plugin has been initialised.
    ///
    /// # Errors
    /// As for `init`.
    fn start(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    /// Called before shutdown, in reverse load order.
    ///
    /// # Errors
    /// Reported; shutdown goes on.
    fn stop(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    /// Applies a new configuration while running.
    ///
    /// # Errors
    /// The default refuses with [`XPLUGIN_ERR_NOT_IMPLEMENTED`].
    fn reconfigure(&mut self, _config_json: &str) -> Result<(), PluginError> {
        Err(PluginError::new(
            XPLUGIN_ERR_NOT_IMPLEMENTED,
            "this plugin does not support reconfigure; restart it to apply a new configuration",
        ))
    }

    /// Whether [`Plugin::step`] is exported (controller plugins).
    const HAS_STEP: bool = false;

    /// The cyclic hook. Must not block or allocate.
    ///
    /// # Errors
    /// Reported by the cyclic scheduler.
    fn step(&mut self, _cycle: u64, _now_ns: u64) -> Result<(), PluginError> {
        Ok(())
    }

    /// Whether [`Plugin::idle`] is exported (client plugins).
    const HAS_IDLE: bool = false;

    /// The periodic client hook.
    ///
    /// # Errors
    /// Reported by the host.
    fn idle(&mut self) -> Result<(), PluginError> {
        Ok(())
    }
}

/// Writes `message` into a caller-provided error buffer: truncated on a UTF-8
/// character boundary to fit, always NUL-terminated. Does nothing if the
/// buffer is NULL or has no room.
///
/// # Safety
/// `err` must be NULL or valid for writes of `err_cap` bytes.
pub unsafe fn write_error(err: *mut c_char, err_cap: usize, message: &str) {
    if err.is_null() || err_cap == 0 {
        return;
    }
    let mut n = message.len().min(err_cap - 1);
    while n > 0 && !message.is_char_boundary(n) {
        n -= 1;
    }
    core::ptr::copy_nonoverlapping(message.as_ptr(), err.cast::<u8>(), n);
    *err.add(n) = 0;
}

/// The host services a Rust plugin received in `init`. Cheap to copy; valid
/// until the plugin's `destroy` returns. The host's functions are
/// thread-safe, so a `Host` may be used from any thread the plugin owns.
#[derive(Clone, Copy)]
pub struct Host {
    api: *const HostApi,
}

// SAFETY: the host documents every function of the table as thread-safe and
// the table outlives the plugin instance.
unsafe impl Send for Host {}
unsafe impl Sync for Host {}

/// A live subscription made with [`Host::subscribe`]. Dropping it
/// unsubscribes and then frees the closure (the host guarantees that no
/// delivery is in progress once `unsubscribe` returns). Do not drop it from
/// inside its own callback.
pub struct Subscription {
    host: Host,
    id: u64,
    /// Thin pointer (to a boxed fat pointer) handed to the host as `user`.
    closure: *mut Callback,
}

type Callback = Box<dyn Fn(&str, &[u8]) + Send + Sync>;

// SAFETY: the closure is Send + Sync; the id and host are plain data.
unsafe impl Send for Subscription {}

impl Subscription {
    /// The host's id of this subscription.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(f) = self.host.field(|a| a.unsubscribe) {
            // SAFETY: host table valid (see Host); id came from subscribe.
            unsafe { f(self.host.ctx(), self.id) };
        }
        // SAFETY: created by Box::into_raw in subscribe; the host no longer
        // calls it after unsubscribe returned.
        drop(unsafe { Box::from_raw(self.closure) });
    }
}

impl Host {
    /// Wraps a raw table.
    ///
    /// # Safety
    /// `api` must point to a valid host table that outlives every use of the
    /// returned `Host`.
    pub unsafe fn from_raw(api: *const HostApi) -> Self {
        Host { api }
    }

    /// The raw table, for calls this wrapper does not cover.
    pub fn as_raw(&self) -> *const HostApi {
        self.api
    }

    fn ctx(&self) -> *mut HostContext {
        // SAFETY: valid per from_raw's contract.
        unsafe { (*self.api).host }
    }

    /// Reads a function field of the table. ABI 1.0 hosts pass the full 1.0
    /// table; a table whose `struct_size` does not cover it comes from a
    /// broken host and gets no calls. Fields a later minor appends will be
    /// read only when `struct_size` reaches past their offset.
    fn field<T: Copy>(&self, get: impl Fn(&HostApi) -> Option<T>) -> Option<T> {
        // SAFETY: valid per from_raw's contract.
        let api = unsafe { &*self.api };
        if (api.struct_size as usize) < core::mem::size_of::<HostApi>() {
            return None;
        }
        get(api)
    }

    /// Logs a line through the host at `level` (`XPLUGIN_LOG_*`).
    pub fn log(&self, level: u32, message: &str) {
        if let Some(f) = self.field(|a| a.log) {
            let c = to_cstring(message);
            // SAFETY: valid table; c lives across the call.
            unsafe { f(self.ctx(), level, c.as_ptr()) };
        }
    }

    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(XPLUGIN_LOG_INFO, message)
    }

    /// Logs at warning level.
    pub fn warn(&self, message: &str) {
        self.log(XPLUGIN_LOG_WARN, message)
    }

    /// Logs at error level.
    pub fn error(&self, message: &str) {
        self.log(XPLUGIN_LOG_ERROR, message)
    }

    /// The host's HMI or controller version.
    pub fn host_version(&self) -> Option<String> {
        let f = self.field(|a| a.host_version)?;
        // SAFETY: valid table; the host returns NULL or a static C string.
        unsafe { cstr_to_string(f(self.ctx())) }
    }

    /// This plugin's writable data directory.
    pub fn data_dir(&self) -> Option<PathBuf> {
        let f = self.field(|a| a.data_dir)?;
        // SAFETY: valid table; the host returns NULL or a C string it owns.
        unsafe { cstr_to_string(f(self.ctx())) }.map(PathBuf::from)
    }

    /// Publishes `data` on `topic`.
    ///
    /// # Errors
    /// The host's status, e.g. [`XPLUGIN_ERR_INVALID_ARG`] for a bad topic.
    pub fn publish(&self, topic: &str, data: &[u8]) -> Result<(), Status> {
        let f = self
            .field(|a| a.publish)
            .ok_or(XPLUGIN_ERR_NOT_IMPLEMENTED)?;
        let t = CString::new(topic).map_err(|_| XPLUGIN_ERR_INVALID_ARG)?;
        // SAFETY: valid table; t and data live across the call.
        status_result(unsafe { f(self.ctx(), t.as_ptr(), data.as_ptr(), data.len()) })
    }

    /// Subscribes `callback(topic, data)` to `topic`. The subscription lasts
    /// until the returned value is dropped.
    ///
    /// # Errors
    /// The host's status.
    pub fn subscribe<F>(&self, topic: &str, callback: F) -> Result<Subscription, Status>
    where
        F: Fn(&str, &[u8]) + Send + Sync + 'static,
    {
        let f = self
            .field(|a| a.subscribe)
            .ok_or(XPLUGIN_ERR_NOT_IMPLEMENTED)?;
        let t = CString::new(topic).map_err(|_| XPLUGIN_ERR_INVALID_ARG)?;
        let closure: *mut Callback = Box::into_raw(Box::new(Box::new(callback) as Callback));
        let mut id = 0u64;
        // SAFETY: valid table; trampoline matches MessageFn; the closure stays
        // alive until the Subscription is dropped, after unsubscribe.
        let status = unsafe {
            f(
                self.ctx(),
                t.as_ptr(),
                Some(trampoline),
                closure.cast::<c_void>(),
                &mut id,
            )
        };
        if status != XPLUGIN_OK {
            // SAFETY: created above and never shared with the host.
            drop(unsafe { Box::from_raw(closure) });
            return Err(status);
        }
        Ok(Subscription {
            host: *self,
            id,
            closure,
        })
    }

    /// Registers a service table under `name` for dependents to find.
    ///
    /// # Safety
    /// `iface` must stay valid until this plugin's `destroy` returns (use a
    /// `static`).
    ///
    /// # Errors
    /// [`XPLUGIN_ERR_DUPLICATE`] if the name is taken.
    pub unsafe fn register_service(
        &self,
        name: &str,
        iface_version: u32,
        iface: *const c_void,
    ) -> Result<(), Status> {
        let f = self
            .field(|a| a.register_service)
            .ok_or(XPLUGIN_ERR_NOT_IMPLEMENTED)?;
        let n = CString::new(name).map_err(|_| XPLUGIN_ERR_INVALID_ARG)?;
        status_result(f(self.ctx(), n.as_ptr(), iface_version, iface))
    }

    /// Finds a service registered by one of this plugin's dependencies:
    /// the table pointer and its interface version.
    ///
    /// # Errors
    /// [`XPLUGIN_ERR_NOT_FOUND`] if no dependency registered it.
    pub fn find_service(&self, name: &str) -> Result<(*const c_void, u32), Status> {
        let f = self
            .field(|a| a.find_service)
            .ok_or(XPLUGIN_ERR_NOT_IMPLEMENTED)?;
        let n = CString::new(name).map_err(|_| XPLUGIN_ERR_INVALID_ARG)?;
        let mut iface: *const c_void = core::ptr::null();
        let mut version = 0u32;
        // SAFETY: valid table; out pointers are locals.
        status_result(unsafe { f(self.ctx(), n.as_ptr(), &mut iface, &mut version) })?;
        Ok((iface, version))
    }
}

unsafe extern "C" fn trampoline(
    user: *mut c_void,
    topic: *const c_char,
    data: *const u8,
    len: usize,
) {
    if user.is_null() {
        return;
    }
    let closure: &Callback = &*user.cast::<Callback>();
    let topic = if topic.is_null() {
        ""
    } else {
        CStr::from_ptr(topic).to_str().unwrap_or("")
    };
    let data = if data.is_null() || len == 0 {
        &[][..]
    } else {
        core::slice::from_raw_parts(data, len)
    };
    // A panic must not unwind into the host's C frame.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| closure(topic, data)));
}

fn status_result(status: Status) -> Result<(), Status> {
    if status == XPLUGIN_OK {
        Ok(())
    } else {
        Err(status)
    }
}

fn to_cstring(s: &str) -> CString {
    // Interior NULs would truncate; replace them so the whole line is logged.
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

unsafe fn cstr_to_string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        Some(CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

/// Implementation details of [`export_plugin!`]. Not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
        if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".to_string()
        }
    }

    fn finish<T>(
        r: std::thread::Result<Result<T, PluginError>>,
        err: *mut c_char,
        err_cap: usize,
    ) -> (Status, Option<T>) {
        match r {
            Ok(Ok(v)) => (XPLUGIN_OK, Some(v)),
            Ok(Err(e)) => {
                // SAFETY: err/err_cap come from the host per the ABI contract.
                unsafe { write_error(err, err_cap, &e.message) };
                (e.status, None)
            }
            Err(p) => {
                let msg = format!("plugin panicked: {}", panic_text(&*p));
                // SAFETY: as above.
                unsafe { write_error(err, err_cap, &msg) };
                (XPLUGIN_ERR_PANIC, None)
            }
        }
    }

    unsafe fn config_str<'a>(p: *const c_char, len: usize) -> Result<&'a str, PluginError> {
        if p.is_null() || len == 0 {
            return Ok("{}");
        }
        std::str::from_utf8(core::slice::from_raw_parts(p.cast::<u8>(), len))
            .map_err(|_| PluginError::new(XPLUGIN_ERR_CONFIG, "configuration is not UTF-8"))
    }

    /// `init` wrapper.
    pub unsafe extern "C" fn init<P: Plugin>(
        host: *const HostApi,
        config_json: *const c_char,
        config_len: usize,
        out_instance: *mut *mut c_void,
        err: *mut c_char,
        err_cap: usize,
    ) -> Status {
        if host.is_null() || out_instance.is_null() {
            write_error(
                err,
                err_cap,
                "init called with a NULL host table or out pointer",
            );
            return XPLUGIN_ERR_INVALID_ARG;
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            let config = config_str(config_json, config_len)?;
            P::init(Host::from_raw(host), config)
        }));
        match finish(r, err, err_cap) {
            (XPLUGIN_OK, Some(p)) => {
                *out_instance = Box::into_raw(Box::new(p)).cast::<c_void>();
                XPLUGIN_OK
            }
            (s, _) => s,
        }
    }

    unsafe fn with_instance<P: Plugin>(
        instance: *mut c_void,
        err: *mut c_char,
        err_cap: usize,
        call: impl FnOnce(&mut P) -> Result<(), PluginError>,
    ) -> Status {
        if instance.is_null() {
            write_error(err, err_cap, "called with a NULL instance");
            return XPLUGIN_ERR_INVALID_ARG;
        }
        let p = &mut *instance.cast::<P>();
        finish(catch_unwind(AssertUnwindSafe(|| call(p))), err, err_cap).0
    }

    /// `start` wrapper.
    pub unsafe extern "C" fn start<P: Plugin>(
        i: *mut c_void,
        err: *mut c_char,
        cap: usize,
    ) -> Status {
        with_instance::<P>(i, err, cap, |p| p.start())
    }

    /// `stop` wrapper.
    pub unsafe extern "C" fn stop<P: Plugin>(
        i: *mut c_void,
        err: *mut c_char,
        cap: usize,
    ) -> Status {
        with_instance::<P>(i, err, cap, |p| p.stop())
    }

    /// `destroy` wrapper: drops the instance; a panic in Drop is swallowed.
    pub unsafe extern "C" fn destroy<P: Plugin>(i: *mut c_void) {
        if !i.is_null() {
            let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(i.cast::<P>()))));
        }
    }

    /// `reconfigure` wrapper.
    pub unsafe extern "C" fn reconfigure<P: Plugin>(
        i: *mut c_void,
        config_json: *const c_char,
        config_len: usize,
        err: *mut c_char,
        cap: usize,
    ) -> Status {
        with_instance::<P>(i, err, cap, |p| {
            let config = config_str(config_json, config_len)?;
            p.reconfigure(config)
        })
    }

    /// `step` wrapper.
    pub unsafe extern "C" fn step<P: Plugin>(i: *mut c_void, cycle: u64, now_ns: u64) -> Status {
        with_instance::<P>(i, core::ptr::null_mut(), 0, |p| p.step(cycle, now_ns))
    }

    /// `idle` wrapper.
    pub unsafe extern "C" fn idle<P: Plugin>(i: *mut c_void) -> Status {
        with_instance::<P>(i, core::ptr::null_mut(), 0, |p| p.idle())
    }

    /// Builds the descriptor for `P`.
    pub const fn descriptor<P: Plugin>(
        kind: u32,
        name: &'static str,
        version: &'static str,
    ) -> Descriptor {
        Descriptor {
            magic: XPLUGIN_MAGIC,
            abi_major: XPLUGIN_ABI_MAJOR,
            abi_minor: XPLUGIN_ABI_MINOR,
            struct_size: core::mem::size_of::<Descriptor>() as u32,
            kind,
            name: name.as_ptr().cast::<c_char>(),
            version: version.as_ptr().cast::<c_char>(),
            init: Some(init::<P>),
            start: Some(start::<P>),
            stop: Some(stop::<P>),
            destroy: Some(destroy::<P>),
            reconfigure: Some(reconfigure::<P>),
            step: if P::HAS_STEP { Some(step::<P>) } else { None },
            idle: if P::HAS_IDLE { Some(idle::<P>) } else { None },
        }
    }
}

/// Exports a [`Plugin`] implementation as an xplugin v1 library: the
/// `xplugin_abi` tag (readable without loading) and the `xplugin_entry`
/// function returning a static descriptor.
///
/// ```ignore
/// xplugin_abi::export_plugin!(MyPlugin, kind = controller, name = "plugindemo", version = "1.0.0");
/// ```
/// `kind` is `controller` or `client`. `name` must equal the manifest name.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty, kind = controller, name = $name:literal, version = $version:literal $(,)?) => {
        $crate::export_plugin!(@emit $plugin, $crate::XPLUGIN_KIND_CONTROLLER, $name, $version);
    };
    ($plugin:ty, kind = client, name = $name:literal, version = $version:literal $(,)?) => {
        $crate::export_plugin!(@emit $plugin, $crate::XPLUGIN_KIND_CLIENT, $name, $version);
    };
    (@emit $plugin:ty, $kind:expr, $name:literal, $version:literal) => {
        /// The ABI tag the host reads from the file before loading it.
        #[unsafe(no_mangle)]
        #[used]
        #[allow(non_upper_case_globals)]
        pub static xplugin_abi: $crate::AbiTag = $crate::AbiTag::current($kind);

        #[doc(hidden)]
        static __XPLUGIN_DESCRIPTOR: $crate::Descriptor = $crate::__private::descriptor::<$plugin>(
            $kind,
            concat!($name, "\0"),
            concat!($version, "\0"),
        );

        /// The xplugin entry point.
        #[unsafe(no_mangle)]
        pub extern "C" fn xplugin_entry() -> *const $crate::Descriptor {
            &__XPLUGIN_DESCRIPTOR
        }
    };
}
