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

    /// Whether [`Plugin::render`] is exported (client plugins, ABI 1.1).
    const HAS_RENDER: bool = false;

    /// The render stage (client plugins): attach the UI to `ctx.parent`
    /// (what it is says `ctx.toolkit`; NULL on a headless host). Called once
    /// per start, after every plugin started, before the first `idle`.
    ///
    /// # Errors
    /// Reported; the plugin keeps running without UI.
    fn render(&mut self, _ctx: &RenderContext) -> Result<(), PluginError> {
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
    // SAFETY: `err` is valid for `err_cap` bytes of writes (this function's
    // contract) and `n + 1 <= err_cap`, so the copy and the NUL at `n` stay
    // inside it; `message` is a separate Rust string, so they cannot overlap.
    unsafe {
        core::ptr::copy_nonoverlapping(message.as_ptr(), err.cast::<u8>(), n);
        *err.add(n) = 0;
    }
}

/// The host services a Rust plugin received in `init`. Cheap to copy; valid
/// until the plugin's `destroy` returns. The host's functions are
/// thread-safe, so a `Host` may be used from any thread the plugin owns.
#[derive(Clone, Copy)]
pub struct Host {
    api: *const HostApi,
}

// SAFETY: a `Host` is a pointer to the host's table, which the ABI keeps valid
// and unchanged until the plugin's `destroy` returns, and whose functions the
// ABI declares callable from any thread; moving the pointer to another thread
// is sound.
unsafe impl Send for Host {}
// SAFETY: as for `Send`: every function of the table may be called from
// several threads at once (xplugin.h, "Threads"), and the table is never
// written after `init`, so shared use cannot race.
unsafe impl Sync for Host {}

/// A live subscription made with [`Host::subscribe`]. Dropping it
/// unsubscribes and then frees the closure: once the host's `unsubscribe`
/// returns, no delivery runs on another thread. Dropping it from inside a
/// callback (its own included) is fine: when the closure is running on this
/// thread, it is freed as soon as that call returns. If the host refuses to
/// unsubscribe (`XPLUGIN_ERR_NOT_READY`: waiting would deadlock, see
/// xplugin.h) the closure is leaked instead, since the host may still call
/// it until the plugin is destroyed.
pub struct Subscription {
    host: Host,
    id: u64,
    /// Thin pointer (to a boxed fat pointer) handed to the host as `user`.
    closure: *mut Callback,
}

type Callback = Box<dyn Fn(&str, &[u8]) + Send + Sync>;

// SAFETY: `closure` points to a `Callback`, which is `Send + Sync`, owned by
// this value alone (the host only calls it); `host` is `Send` and `id` is
// plain data. Dropping on another thread is sound: `Drop` unsubscribes
// through the thread-safe table and frees the closure only when no delivery
// runs on any other thread.
unsafe impl Send for Subscription {}

impl Subscription {
    /// The host's id of this subscription.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(f) = self
            .host
            .field(core::mem::offset_of!(HostApi, unsubscribe), |a| {
                // SAFETY: `field` checked that the table covers this field.
                unsafe { core::ptr::addr_of!((*a).unsubscribe).read() }
            })
        else {
            // A table without `unsubscribe`: the host may call the closure
            // for as long as the plugin lives. Leaking it keeps it valid.
            return;
        };
        // SAFETY: the table is valid until `destroy` returns (`Host`), `ctx`
        // is its own `host` field, and `id` came from its `subscribe`.
        let status = unsafe { f(self.host.ctx(), self.id) };
        // OK: removed now. NOT_FOUND: the host removed it before (it does so
        // before `destroy`, waiting for deliveries). Anything else, e.g.
        // NOT_READY: still subscribed, so the closure must stay valid.
        if status != XPLUGIN_OK && status != XPLUGIN_ERR_NOT_FOUND {
            return;
        }
        if running::defer_free(self.closure) {
            // Dropped from inside the closure's own call on this thread:
            // the trampoline frees it when that call returns.
            return;
        }
        // SAFETY: created by `Box::into_raw` in `subscribe` and owned by this
        // value; the host no longer calls it (unsubscribe returned, and it
        // waits for deliveries on other threads), and no call of it is on
        // this thread's stack (`defer_free` said so), so nothing uses it.
        drop(unsafe { Box::from_raw(self.closure) });
    }
}

/// The closures whose call is on this thread's stack, so that a
/// [`Subscription`] dropped from inside its own callback frees the closure
/// after the call instead of under it.
mod running {
    use super::Callback;
    use std::cell::RefCell;

    thread_local! {
        /// Innermost last; `true` once the subscription was dropped.
        static STACK: RefCell<Vec<(*mut Callback, bool)>> = const { RefCell::new(Vec::new()) };
    }

    /// Notes that `closure` is being called on this thread.
    pub(super) fn enter(closure: *mut Callback) {
        let _ = STACK.try_with(|s| s.borrow_mut().push((closure, false)));
    }

    /// Ends the innermost call; returns true when the closure must be freed
    /// now (its subscription was dropped and no outer call of it remains).
    pub(super) fn leave(closure: *mut Callback) -> bool {
        STACK
            .try_with(|s| {
                let mut s = s.borrow_mut();
                let dropped = s.pop().is_some_and(|(_, dropped)| dropped);
                dropped && !s.iter().any(|(c, _)| *c == closure)
            })
            .unwrap_or(false)
    }

    /// Marks `closure` dropped if a call of it is on this thread's stack;
    /// returns whether it was (then [`leave`] frees it).
    pub(super) fn defer_free(closure: *mut Callback) -> bool {
        STACK
            .try_with(|s| {
                let mut found = false;
                for (c, dropped) in s.borrow_mut().iter_mut() {
                    if *c == closure {
                        *dropped = true;
                        found = true;
                    }
                }
                found
            })
            .unwrap_or(false)
    }
}

impl Host {
    /// Wraps a raw table.
    ///
    /// # Safety
    /// `api` must point to a valid host table (at least `struct_size` bytes,
    /// as the host filled it in) that stays valid and unchanged for every use
    /// of the returned `Host` and its copies: the table `init` received,
    /// used until `destroy` returns.
    pub unsafe fn from_raw(api: *const HostApi) -> Self {
        Host { api }
    }

    /// The raw table, for calls this wrapper does not cover.
    pub fn as_raw(&self) -> *const HostApi {
        self.api
    }

    fn ctx(&self) -> *mut HostContext {
        // SAFETY: `api` points to a valid table (`from_raw`'s contract), and
        // `host` is a 1.0 field every table has.
        unsafe { (*self.api).host }
    }

    /// Reads a function field of the table, if the table's `struct_size`
    /// covers it: a 1.0 host's table ends before the 1.1 fields, which then
    /// read as absent. Only the field itself is read (by value), so no
    /// reference to more of the table than the host provided is made.
    fn field<T: Copy>(
        &self,
        offset: usize,
        get: impl Fn(*const HostApi) -> Option<T>,
    ) -> Option<T> {
        // SAFETY: `api` points to a valid, unchanging table (`from_raw`'s
        // contract) whose leading `struct_size` every version has.
        let size = unsafe { core::ptr::addr_of!((*self.api).struct_size).read() } as usize;
        if offset + core::mem::size_of::<Option<T>>() > size {
            return None;
        }
        get(self.api)
    }

    /// Logs a line through the host at `level` (`XPLUGIN_LOG_*`).
    pub fn log(&self, level: u32, message: &str) {
        if let Some(f) = self.field(core::mem::offset_of!(HostApi, log), |a| {
            // SAFETY: `field` checked that the table covers this field.
            unsafe { core::ptr::addr_of!((*a).log).read() }
        }) {
            let c = to_cstring(message);
            // SAFETY: `f` is the table's `log` with its own `host`; `c` is
            // NUL-terminated and outlives the call, as the ABI requires.
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
        let f = self.field(core::mem::offset_of!(HostApi, host_version), |a| {
            // SAFETY: `field` checked that the table covers this field.
            unsafe { core::ptr::addr_of!((*a).host_version).read() }
        })?;
        // SAFETY: `f` is the table's `host_version` with its own `host`; the
        // ABI says it returns NULL or a NUL-terminated string valid until
        // `destroy`, and it is copied at once.
        unsafe { cstr_to_string(f(self.ctx())) }
    }

    /// This plugin's writable data directory.
    pub fn data_dir(&self) -> Option<PathBuf> {
        let f = self.field(core::mem::offset_of!(HostApi, data_dir), |a| {
            // SAFETY: `field` checked that the table covers this field.
            unsafe { core::ptr::addr_of!((*a).data_dir).read() }
        })?;
        // SAFETY: `f` is the table's `data_dir` with its own `host`; as for
        // `host_version`, NULL or a host-owned C string, copied at once.
        unsafe { cstr_to_string(f(self.ctx())) }.map(PathBuf::from)
    }

    /// Publishes `data` on `topic`.
    ///
    /// # Errors
    /// The host's status, e.g. [`XPLUGIN_ERR_INVALID_ARG`] for a bad topic.
    pub fn publish(&self, topic: &str, data: &[u8]) -> Result<(), Status> {
        let f = self
            .field(core::mem::offset_of!(HostApi, publish), |a| {
                // SAFETY: `field` checked that the table covers this field.
                unsafe { core::ptr::addr_of!((*a).publish).read() }
            })
            .ok_or(XPLUGIN_ERR_NOT_IMPLEMENTED)?;
        let t = CString::new(topic).map_err(|_| XPLUGIN_ERR_INVALID_ARG)?;
        // SAFETY: `f` is the table's `publish` with its own `host`; `t` is
        // NUL-terminated and `data` is `data.len()` readable bytes, both
        // outliving the call (the host copies nothing it keeps).
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
            .field(core::mem::offset_of!(HostApi, subscribe), |a| {
                // SAFETY: `field` checked that the table covers this field.
                unsafe { core::ptr::addr_of!((*a).subscribe).read() }
            })
            .ok_or(XPLUGIN_ERR_NOT_IMPLEMENTED)?;
        let t = CString::new(topic).map_err(|_| XPLUGIN_ERR_INVALID_ARG)?;
        let closure: *mut Callback = Box::into_raw(Box::new(Box::new(callback) as Callback));
        let mut id = 0u64;
        // SAFETY: `f` is the table's `subscribe` with its own `host`; `t`
        // outlives the call; `trampoline` has the `MessageFn` signature and
        // expects `user` to be a `*mut Callback`, which `closure` is. The
        // closure stays valid until the `Subscription` made below is
        // dropped and the host has stopped calling it (see its `Drop`);
        // `id` is a local the host may write.
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
            // SAFETY: created by `Box::into_raw` above; the host refused the
            // subscription, so it never stored or called it.
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
    /// `iface` must point to the table the interface's users expect for
    /// `name` and `iface_version`, and stay valid and unchanged until this
    /// plugin's `destroy` returns (use a `static`): dependents call through
    /// it without further checks.
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
            .field(core::mem::offset_of!(HostApi, register_service), |a| {
                // SAFETY: `field` checked that the table covers this field.
                unsafe { core::ptr::addr_of!((*a).register_service).read() }
            })
            .ok_or(XPLUGIN_ERR_NOT_IMPLEMENTED)?;
        let n = CString::new(name).map_err(|_| XPLUGIN_ERR_INVALID_ARG)?;
        // SAFETY: `f` is the table's `register_service` with its own `host`;
        // `n` outlives the call; `iface`'s lifetime is our caller's promise.
        status_result(unsafe { f(self.ctx(), n.as_ptr(), iface_version, iface) })
    }

    /// Finds a service registered by one of this plugin's dependencies:
    /// the table pointer and its interface version.
    ///
    /// # Errors
    /// [`XPLUGIN_ERR_NOT_FOUND`] if no dependency registered it.
    pub fn find_service(&self, name: &str) -> Result<(*const c_void, u32), Status> {
        let f = self
            .field(core::mem::offset_of!(HostApi, find_service), |a| {
                // SAFETY: `field` checked that the table covers this field.
                unsafe { core::ptr::addr_of!((*a).find_service).read() }
            })
            .ok_or(XPLUGIN_ERR_NOT_IMPLEMENTED)?;
        let n = CString::new(name).map_err(|_| XPLUGIN_ERR_INVALID_ARG)?;
        let mut iface: *const c_void = core::ptr::null();
        let mut version = 0u32;
        // SAFETY: `f` is the table's `find_service` with its own `host`; `n`
        // outlives the call; the out pointers are locals the host may write.
        status_result(unsafe { f(self.ctx(), n.as_ptr(), &mut iface, &mut version) })?;
        Ok((iface, version))
    }

    /// ABI 1.1: says the plugin is (`true`) or is no longer (`false`) in the
    /// middle of something that must not be cut; an apply "when idle" waits
    /// for it. A single atomic store in the host: allowed in `step`.
    ///
    /// # Errors
    /// [`XPLUGIN_ERR_NOT_IMPLEMENTED`] on a 1.0 host.
    pub fn set_busy(&self, busy: bool) -> Result<(), Status> {
        let f = self
            .field(core::mem::offset_of!(HostApi, set_busy), |a| {
                // SAFETY: `field` checked that the table covers this field.
                unsafe { core::ptr::addr_of!((*a).set_busy).read() }
            })
            .ok_or(XPLUGIN_ERR_NOT_IMPLEMENTED)?;
        // SAFETY: `f` is the table's `set_busy` with its own `host`.
        status_result(unsafe { f(self.ctx(), u8::from(busy)) })
    }
}

/// The `MessageFn` every Rust subscription registers: calls the closure
/// behind `user`.
///
/// # Safety
/// `user` is NULL or the `*mut Callback` of a live [`Subscription`]; `topic`
/// is NULL or NUL-terminated; `data` is NULL or `len` readable bytes; all
/// valid for the call (the host's side of the ABI).
unsafe extern "C" fn trampoline(
    user: *mut c_void,
    topic: *const c_char,
    data: *const u8,
    len: usize,
) {
    if user.is_null() {
        return;
    }
    let closure_ptr = user.cast::<Callback>();
    // SAFETY: `user` is the closure `subscribe` registered; it is freed only
    // after the host stopped calling it and, when its `Subscription` is
    // dropped during this call, only after this call (`running`).
    let closure: &Callback = unsafe { &*closure_ptr };
    let topic = if topic.is_null() {
        ""
    } else {
        // SAFETY: non-NULL, NUL-terminated and valid for the call (the ABI).
        unsafe { CStr::from_ptr(topic) }.to_str().unwrap_or("")
    };
    let data = if data.is_null() || len == 0 {
        &[][..]
    } else {
        // SAFETY: non-NULL and `len` readable bytes for the call (the ABI);
        // the slice does not outlive it.
        unsafe { core::slice::from_raw_parts(data, len) }
    };
    running::enter(closure_ptr);
    // A panic must not unwind into the host's C frame.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| closure(topic, data)));
    if running::leave(closure_ptr) {
        // SAFETY: the `Subscription` was dropped during the call (after the
        // host's unsubscribe returned) and left the freeing to us; no outer
        // call of this closure is on this thread's stack and the host waited
        // for calls on other threads, so this was the last use.
        drop(unsafe { Box::from_raw(closure_ptr) });
    }
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

/// Copies a C string, if any.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn cstr_to_string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: non-NULL and NUL-terminated per this function's contract.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
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
                // SAFETY: `err`/`err_cap` are the caller's error buffer, which
                // the ABI requires to be NULL or `err_cap` writable bytes.
                unsafe { write_error(err, err_cap, &e.message) };
                (e.status, None)
            }
            Err(p) => {
                let msg = format!("plugin panicked: {}", panic_text(&*p));
                // SAFETY: as above: the ABI's error buffer.
                unsafe { write_error(err, err_cap, &msg) };
                (XPLUGIN_ERR_PANIC, None)
            }
        }
    }

    /// The configuration text `init` and `reconfigure` received.
    ///
    /// # Safety
    /// `p` is NULL or `len` readable bytes that stay unchanged for `'a`.
    unsafe fn config_str<'a>(p: *const c_char, len: usize) -> Result<&'a str, PluginError> {
        if p.is_null() || len == 0 {
            return Ok("{}");
        }
        // SAFETY: non-NULL and `len` readable bytes for 'a (this function's
        // contract; the ABI's for `config_json`/`config_len`).
        std::str::from_utf8(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), len) })
            .map_err(|_| PluginError::new(XPLUGIN_ERR_CONFIG, "configuration is not UTF-8"))
    }

    /// `init` wrapper.
    ///
    /// # Safety
    /// The ABI's contract for `init` (xplugin.h): `host` is NULL or a valid
    /// table that outlives the instance, `config_json` is NULL or
    /// `config_len` readable bytes, `out_instance` is NULL or writable, `err`
    /// is NULL or `err_cap` writable bytes.
    pub unsafe extern "C" fn init<P: Plugin>(
        host: *const HostApi,
        config_json: *const c_char,
        config_len: usize,
        out_instance: *mut *mut c_void,
        err: *mut c_char,
        err_cap: usize,
    ) -> Status {
        if host.is_null() || out_instance.is_null() {
            // SAFETY: the ABI's error buffer (this function's contract).
            unsafe {
                write_error(
                    err,
                    err_cap,
                    "init called with a NULL host table or out pointer",
                )
            };
            return XPLUGIN_ERR_INVALID_ARG;
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the ABI's `config_json`/`config_len`, valid for the
            // call, and `P::init` gets a copy of what it needs (a `&str`
            // that does not outlive the call).
            let config = unsafe { config_str(config_json, config_len) }?;
            // SAFETY: non-NULL (checked), and the ABI keeps the table valid
            // and unchanged until `destroy` returns, which is as long as the
            // instance (and so its `Host`) may live.
            P::init(unsafe { Host::from_raw(host) }, config)
        }));
        match finish(r, err, err_cap) {
            (XPLUGIN_OK, Some(p)) => {
                // SAFETY: non-NULL (checked) and writable (the ABI).
                unsafe { *out_instance = Box::into_raw(Box::new(p)).cast::<c_void>() };
                XPLUGIN_OK
            }
            (s, _) => s,
        }
    }

    /// Runs `call` on the instance behind `instance`, catching panics.
    ///
    /// # Safety
    /// `instance` is NULL or what [`init`] wrote for the same `P` and not yet
    /// destroyed, with no other call on it running (the ABI: the host makes
    /// one call into an instance at a time); `err` is NULL or `err_cap`
    /// writable bytes.
    unsafe fn with_instance<P: Plugin>(
        instance: *mut c_void,
        err: *mut c_char,
        err_cap: usize,
        call: impl FnOnce(&mut P) -> Result<(), PluginError>,
    ) -> Status {
        if instance.is_null() {
            // SAFETY: the ABI's error buffer (this function's contract).
            unsafe { write_error(err, err_cap, "called with a NULL instance") };
            return XPLUGIN_ERR_INVALID_ARG;
        }
        // SAFETY: a live `Box<P>` leaked by `init` (this function's
        // contract), and no other call into the instance runs, so this is
        // the only reference to it.
        let p = unsafe { &mut *instance.cast::<P>() };
        finish(catch_unwind(AssertUnwindSafe(|| call(p))), err, err_cap).0
    }

    /// `start` wrapper.
    ///
    /// # Safety
    /// The ABI's contract for `start`: `i` is the instance `init` wrote, not
    /// destroyed, with no other call on it running; `err` is NULL or `cap`
    /// writable bytes.
    pub unsafe extern "C" fn start<P: Plugin>(
        i: *mut c_void,
        err: *mut c_char,
        cap: usize,
    ) -> Status {
        // SAFETY: this function's contract is `with_instance`'s.
        unsafe { with_instance::<P>(i, err, cap, |p| p.start()) }
    }

    /// `stop` wrapper.
    ///
    /// # Safety
    /// As [`start`].
    pub unsafe extern "C" fn stop<P: Plugin>(
        i: *mut c_void,
        err: *mut c_char,
        cap: usize,
    ) -> Status {
        // SAFETY: this function's contract is `with_instance`'s.
        unsafe { with_instance::<P>(i, err, cap, |p| p.stop()) }
    }

    /// `destroy` wrapper: drops the instance; a panic in Drop is swallowed.
    ///
    /// # Safety
    /// `i` is NULL or the instance `init` wrote, destroyed only this once,
    /// with no other call on it running and none after.
    pub unsafe extern "C" fn destroy<P: Plugin>(i: *mut c_void) {
        if !i.is_null() {
            // SAFETY: the `Box<P>` `init` leaked, freed exactly once, here
            // (this function's contract), and not used after.
            let instance = unsafe { Box::from_raw(i.cast::<P>()) };
            let _ = catch_unwind(AssertUnwindSafe(|| drop(instance)));
        }
    }

    /// `reconfigure` wrapper.
    ///
    /// # Safety
    /// As [`start`], and `config_json` is NULL or `config_len` readable
    /// bytes valid for the call.
    pub unsafe extern "C" fn reconfigure<P: Plugin>(
        i: *mut c_void,
        config_json: *const c_char,
        config_len: usize,
        err: *mut c_char,
        cap: usize,
    ) -> Status {
        let call = |p: &mut P| {
            // SAFETY: the ABI's `config_json`/`config_len`, valid for the
            // call; the `&str` does not outlive it.
            let config = unsafe { config_str(config_json, config_len) }?;
            p.reconfigure(config)
        };
        // SAFETY: this function's contract is `with_instance`'s.
        unsafe { with_instance::<P>(i, err, cap, call) }
    }

    /// `step` wrapper.
    ///
    /// # Safety
    /// `i` is the instance `init` wrote, not destroyed, with no other call on
    /// it running.
    pub unsafe extern "C" fn step<P: Plugin>(i: *mut c_void, cycle: u64, now_ns: u64) -> Status {
        // SAFETY: this function's contract is `with_instance`'s; there is no
        // error buffer (NULL, 0).
        unsafe { with_instance::<P>(i, core::ptr::null_mut(), 0, |p| p.step(cycle, now_ns)) }
    }

    /// `idle` wrapper.
    ///
    /// # Safety
    /// As [`step`].
    pub unsafe extern "C" fn idle<P: Plugin>(i: *mut c_void) -> Status {
        // SAFETY: as in `step`.
        unsafe { with_instance::<P>(i, core::ptr::null_mut(), 0, |p| p.idle()) }
    }

    /// `render` wrapper.
    ///
    /// # Safety
    /// As [`start`], and `ctx` is NULL or points to a render context valid
    /// for the call.
    pub unsafe extern "C" fn render<P: Plugin>(
        i: *mut c_void,
        ctx: *const RenderContext,
        err: *mut c_char,
        cap: usize,
    ) -> Status {
        if ctx.is_null() {
            // SAFETY: the ABI's error buffer (this function's contract).
            unsafe { write_error(err, cap, "render called with a NULL context") };
            return XPLUGIN_ERR_INVALID_ARG;
        }
        // SAFETY: non-NULL and valid for the call (this function's
        // contract); copied, so nothing borrowed outlives the call.
        let ctx = unsafe { *ctx };
        // SAFETY: this function's contract is `with_instance`'s.
        unsafe { with_instance::<P>(i, err, cap, |p| p.render(&ctx)) }
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
            render: if P::HAS_RENDER {
                Some(render::<P>)
            } else {
                None
            },
        }
    }

    /// 1 per module: counts `modules = [...]` in [`export_plugin!`].
    pub const fn one(_name: &str) -> usize {
        1
    }

    /// The entry modules for [`export_plugin!`]'s `modules = [...]`: module
    /// `i` is `names[i]` (NUL-terminated) at `priorities[i]` with
    /// `descriptors[i]`.
    pub const fn modules<const N: usize>(
        names: [&'static str; N],
        priorities: [i32; N],
        descriptors: &'static [Descriptor; N],
    ) -> [Module; N] {
        let empty = Module {
            struct_size: core::mem::size_of::<Module>() as u32,
            priority: 0,
            name: core::ptr::null(),
            descriptor: core::ptr::null(),
        };
        let mut out = [empty; N];
        let mut i = 0;
        while i < N {
            out[i].priority = priorities[i];
            out[i].name = names[i].as_ptr().cast::<c_char>();
            out[i].descriptor = &descriptors[i];
            i += 1;
        }
        out
    }

    /// References to `modules`, the array the list points to.
    pub const fn module_refs<const N: usize>(
        modules: &'static [Module; N],
    ) -> [&'static Module; N] {
        assert!(
            N > 0,
            "export_plugin!: modules = [...] needs at least one module"
        );
        let mut out = [&modules[0]; N];
        let mut i = 0;
        while i < N {
            out[i] = &modules[i];
            i += 1;
        }
        out
    }

    /// The module list of [`export_plugin!`]'s `modules = [...]`.
    pub const fn module_list(modules: &'static [&'static Module]) -> ModuleList {
        ModuleList {
            magic: XPLUGIN_MAGIC,
            abi_major: XPLUGIN_ABI_MAJOR,
            abi_minor: XPLUGIN_ABI_MINOR,
            struct_size: core::mem::size_of::<ModuleList>() as u32,
            count: modules.len() as u32,
            // `&Module` and `*const Module` have the same layout.
            modules: modules.as_ptr().cast::<*const Module>(),
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
///
/// A library with several entry modules (ABI 1.1; order and failure rules in
/// `xplugin.h`, "entry modules") lists one `Type => ("module", priority)`
/// per module instead of a single type; each type implements [`Plugin`] and
/// is an instance of its own. `xplugin_entry` returns the first module, for
/// 1.0 hosts.
///
/// ```ignore
/// xplugin_abi::export_plugin!(
///     kind = controller, name = "cell", version = "1.0.0",
///     modules = [
///         Safety => ("safety", 20),
///         Motion => ("motion", 10),
///     ]
/// );
/// ```
#[macro_export]
macro_rules! export_plugin {
    (kind = controller, name = $name:literal, version = $version:literal,
     modules = [ $($module:ty => ($mname:literal, $prio:expr)),+ $(,)? ] $(,)?) => {
        $crate::export_plugin!(@modules $crate::XPLUGIN_KIND_CONTROLLER, $name, $version,
            $($module => ($mname, $prio)),+);
    };
    (kind = client, name = $name:literal, version = $version:literal,
     modules = [ $($module:ty => ($mname:literal, $prio:expr)),+ $(,)? ] $(,)?) => {
        $crate::export_plugin!(@modules $crate::XPLUGIN_KIND_CLIENT, $name, $version,
            $($module => ($mname, $prio)),+);
    };
    (@modules $kind:expr, $name:literal, $version:literal,
     $($module:ty => ($mname:literal, $prio:expr)),+) => {
        /// The ABI tag the host reads from the file before loading it.
        // SAFETY (no_mangle): as in the single-type form.
        #[unsafe(no_mangle)]
        #[used]
        #[allow(non_upper_case_globals)]
        pub static xplugin_abi: $crate::AbiTag = $crate::AbiTag::current($kind);

        #[doc(hidden)]
        const __XPLUGIN_MODULE_COUNT: usize = 0 $(+ $crate::__private::one($mname))+;
        #[doc(hidden)]
        static __XPLUGIN_DESCRIPTORS: [$crate::Descriptor; __XPLUGIN_MODULE_COUNT] = [
            $($crate::__private::descriptor::<$module>(
                $kind,
                concat!($name, "\0"),
                concat!($version, "\0"),
            )),+
        ];
        #[doc(hidden)]
        static __XPLUGIN_MODULES: [$crate::Module; __XPLUGIN_MODULE_COUNT] =
            $crate::__private::modules(
                [$(concat!($mname, "\0")),+],
                [$($prio),+],
                &__XPLUGIN_DESCRIPTORS,
            );
        #[doc(hidden)]
        static __XPLUGIN_MODULE_REFS: [&$crate::Module; __XPLUGIN_MODULE_COUNT] =
            $crate::__private::module_refs(&__XPLUGIN_MODULES);
        #[doc(hidden)]
        static __XPLUGIN_MODULE_LIST: $crate::ModuleList =
            $crate::__private::module_list(&__XPLUGIN_MODULE_REFS);

        /// The xplugin entry point: the first module, for 1.0 hosts.
        // SAFETY (no_mangle): the ABI's reserved symbol, defined once per
        // library, with the `EntryFn` signature.
        #[unsafe(no_mangle)]
        pub extern "C" fn xplugin_entry() -> *const $crate::Descriptor {
            &__XPLUGIN_DESCRIPTORS[0]
        }

        /// The entry modules (ABI 1.1).
        // SAFETY (no_mangle): the ABI's reserved symbol `xplugin_modules`,
        // defined once per library, with the `ModulesFn` signature.
        #[unsafe(no_mangle)]
        pub extern "C" fn xplugin_modules() -> *const $crate::ModuleList {
            &__XPLUGIN_MODULE_LIST
        }
    };
    ($plugin:ty, kind = controller, name = $name:literal, version = $version:literal $(,)?) => {
        $crate::export_plugin!(@emit $plugin, $crate::XPLUGIN_KIND_CONTROLLER, $name, $version);
    };
    ($plugin:ty, kind = client, name = $name:literal, version = $version:literal $(,)?) => {
        $crate::export_plugin!(@emit $plugin, $crate::XPLUGIN_KIND_CLIENT, $name, $version);
    };
    (@emit $plugin:ty, $kind:expr, $name:literal, $version:literal) => {
        /// The ABI tag the host reads from the file before loading it.
        // SAFETY (no_mangle): `xplugin_abi` is the ABI's reserved symbol name;
        // a library exports it once (one `export_plugin!` per library), and
        // it has exactly the `AbiTag` layout the host reads.
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
        // SAFETY (no_mangle): `xplugin_entry` is the ABI's reserved symbol
        // name, defined once per library, with the `EntryFn` signature the
        // host calls it through.
        #[unsafe(no_mangle)]
        pub extern "C" fn xplugin_entry() -> *const $crate::Descriptor {
            &__XPLUGIN_DESCRIPTOR
        }
    };
}
