//! The host services table handed to each plugin in `init`: logging, host
//! version, data directory, publish/subscribe and the service registry.
//!
//! Each plugin gets its own [`PluginHost`] (so that log lines carry its name,
//! `data_dir` is its own and `find_service` only sees its dependencies), and
//! all of them share one [`Bus`]. Every callback entered from C catches
//! panics: unwinding into a plugin's C frames is undefined behaviour.
//!
//! Messages are delivered synchronously, on the publisher's thread, to the
//! subscriptions that exist when `publish` is called. A callback may publish
//! (nested delivery, bounded by [`MAX_DELIVERY_DEPTH`]), subscribe and
//! unsubscribe, itself included; [`crate::delivery`] keeps the promise that
//! once `unsubscribe` returns no delivery to the subscription is running on
//! another thread, without waiting for the caller's own.

use crate::delivery::{self, Deliveries, RetireError, WaitGraph};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use xplugin_abi::*;

pub use crate::delivery::MAX_DELIVERY_DEPTH;

/// Upper bound on registered services per host: a plugin that registers in a
/// loop gets `XPLUGIN_ERR_NO_MEMORY` instead of growing the host forever.
pub const MAX_SERVICES: usize = 4096;
/// Upper bound on live subscriptions per host.
pub const MAX_SUBSCRIPTIONS: usize = 16_384;
/// Longest accepted topic or service name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

struct ServiceEntry {
    provider: String,
    version: u32,
    /// The plugin-owned table, stored as an address: the host never
    /// dereferences it, it only hands it to dependents.
    iface: usize,
}

struct Subscriber {
    id: u64,
    owner: String,
    /// The owner's journal index (which plugin a delivery is in).
    owner_index: usize,
    topic: String,
    callback: MessageFn,
    user: usize,
    /// Whether it still takes messages, and the deliveries in flight.
    deliveries: Arc<Deliveries>,
}

#[derive(Default)]
struct BusState {
    services: BTreeMap<String, ServiceEntry>,
    subscribers: Vec<Arc<Subscriber>>,
}

/// A host hook that sees every message a plugin publishes: publisher,
/// topic, payload. The plugin message bridge uses it to forward what
/// crosses the pendant link. Runs on the publisher's thread (for messages
/// from `step`, the service thread): it must not block.
pub type Tap = Arc<dyn Fn(&str, &str, &[u8]) + Send + Sync>;

/// Topics and services shared by all plugins of one host.
#[derive(Default)]
pub struct Bus {
    state: Mutex<BusState>,
    next_id: AtomicU64,
    /// Who waits for whose deliveries, to refuse an `unsubscribe` that would
    /// deadlock.
    waits: WaitGraph,
    /// The bridge's hook, once set.
    tap: std::sync::OnceLock<Tap>,
}

/// Why [`Bus::publish`] delivered nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Called from inside [`MAX_DELIVERY_DEPTH`] nested message callbacks.
    #[error(
        "publish on topic \"{topic}\" refused: {depth} message callbacks are already nested on this thread (the bound is {MAX_DELIVERY_DEPTH}); a callback that publishes must not trigger itself without end"
    )]
    TooDeep {
        /// The topic.
        topic: String,
        /// Deliveries on the thread's stack.
        depth: u32,
    },
    /// The topic holds a NUL byte, which no C subscriber could have named.
    #[error("publish refused: topic {topic:?} contains a NUL byte")]
    InvalidTopic {
        /// The topic.
        topic: String,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps half-updated (every
    // update is a single insert/remove), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Bus {
    /// A new, empty bus.
    pub fn new() -> Arc<Bus> {
        Arc::new(Bus::default())
    }

    /// Removes every service and subscription `owner` made, and waits until
    /// no delivery to those subscriptions runs on another thread. Called
    /// before a plugin is destroyed and when it fails, so nobody calls into a
    /// dead instance. Call it from the lifecycle thread, outside any message
    /// callback.
    pub fn remove_owner(&self, owner: &str) {
        let removed: Vec<Arc<Subscriber>> = {
            let mut st = lock(&self.state);
            st.services.retain(|_, s| s.provider != owner);
            let (gone, kept) = st.subscribers.drain(..).partition(|s| s.owner == owner);
            st.subscribers = kept;
            gone
        };
        for s in removed {
            self.waits.retire_and_wait(&s.deliveries);
        }
    }

    /// Removes subscription `id` of `owner`. Once this returns `Ok`, the
    /// callback gets no new message, and no delivery to it runs on another
    /// thread; when called from inside that callback, the caller's own
    /// delivery is still running (it is the caller).
    ///
    /// # Errors
    /// [`RetireError::NotFound`] if `owner` has no such subscription;
    /// [`RetireError::WouldDeadlock`] (nothing changed) if waiting for a
    /// delivery on another thread would deadlock.
    pub fn unsubscribe(&self, owner: &str, id: u64) -> Result<(), RetireError> {
        let s = lock(&self.state)
            .subscribers
            .iter()
            .find(|s| s.id == id && s.owner == owner)
            .cloned()
            .ok_or(RetireError::NotFound)?;
        let retirement = self.waits.retire(&s.deliveries)?;
        lock(&self.state).subscribers.retain(|x| x.id != id);
        retirement.wait();
        Ok(())
    }

    /// Names of the services registered now, with their providers.
    pub fn services(&self) -> Vec<(String, String, u32)> {
        lock(&self.state)
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.provider.clone(), s.version))
            .collect()
    }

    /// Sets the hook that sees every plugin's publish ([`Tap`]); once per
    /// bus (a second one is refused and returned).
    ///
    /// # Errors
    /// The tap given, when one is set already.
    pub fn set_tap(&self, tap: Tap) -> Result<(), Tap> {
        self.tap.set(tap)
    }

    /// A plugin's publish: shown to the tap (if any), then delivered as
    /// [`Bus::publish`] does.
    ///
    /// # Errors
    /// As [`Bus::publish`].
    pub fn publish_from(
        &self,
        publisher: &str,
        topic: &str,
        data: &[u8],
    ) -> Result<usize, PublishError> {
        if let Some(tap) = self.tap.get() {
            tap(publisher, topic, data);
        }
        self.publish(topic, data)
    }

    /// Publishes from the host itself (or a test) and from plugins'
    /// `publish`: delivers synchronously, on this thread, to every
    /// subscription of `topic` that exists now. Returns how many callbacks
    /// returned normally.
    ///
    /// # Errors
    /// [`PublishError`]: the topic holds a NUL, or this thread is already
    /// inside [`MAX_DELIVERY_DEPTH`] nested deliveries.
    pub fn publish(&self, topic: &str, data: &[u8]) -> Result<usize, PublishError> {
        let depth = delivery::depth();
        if depth >= MAX_DELIVERY_DEPTH {
            return Err(PublishError::TooDeep {
                topic: topic.to_string(),
                depth,
            });
        }
        let Ok(ctopic) = CString::new(topic) else {
            return Err(PublishError::InvalidTopic {
                topic: topic.to_string(),
            });
        };
        // A snapshot: subscriptions made by a callback during this publish
        // get the next message, not this one.
        let targets: Vec<Arc<Subscriber>> = lock(&self.state)
            .subscribers
            .iter()
            .filter(|s| s.topic == topic)
            .cloned()
            .collect();
        let mut delivered = 0;
        for s in targets {
            // Unsubscribed since the snapshot (possibly by a callback of
            // this very publish): skip it.
            let Some(_in_flight) = s.deliveries.begin() else {
                continue;
            };
            let r = catch_unwind(AssertUnwindSafe(|| {
                crate::journal::around(s.owner_index, crate::stage::Stage::Message, || {
                    // SAFETY: `callback` and `user` were handed over together
                    // by the subscription's owner in `subscribe`. The ABI
                    // makes the owner keep both valid until its `unsubscribe`
                    // returns or, for what it never unsubscribes, until the
                    // host removes the subscription before the owner's
                    // `destroy`; libraries are never unloaded. Both removals
                    // wait for every delivery registered by `begin` on
                    // another thread, and `begin` registered this one only
                    // while the subscription was active. `ctopic` is
                    // NUL-terminated and `data` is `data.len()` readable
                    // bytes, both alive across the call.
                    unsafe {
                        (s.callback)(
                            s.user as *mut c_void,
                            ctopic.as_ptr(),
                            data.as_ptr(),
                            data.len(),
                        )
                    }
                })
            }));
            if r.is_ok() {
                delivered += 1;
            }
        }
        Ok(delivered)
    }
}

/// The per-plugin host context: the [`HostApi`] table handed to `init`,
/// whose `host` field points back at the context. It must outlive the
/// plugin's `destroy`.
pub struct PluginHost {
    /// Owned, freed in `Drop`. A raw pointer rather than a `Box` field: the
    /// table's `host` field points into this allocation and plugins read
    /// through it while the `PluginHost` handle is moved around, and a `Box`
    /// claims unique access to its contents each time it is moved.
    inner: NonNull<HostState>,
}

struct HostState {
    api: HostApi,
    name: String,
    host_version: CString,
    data_dir: CString,
    /// Plugins whose services this plugin may find: its transitive `depend`.
    visible_providers: BTreeSet<String>,
    bus: Arc<Bus>,
    /// The plugin's busy flag (`set_busy`): a single atomic, so the cycle
    /// thread may set it.
    busy: AtomicBool,
    /// Its index in the journal (set by the lifecycle after creation).
    journal_index: AtomicUsize,
}

impl PluginHost {
    /// Builds the context for plugin `name`.
    pub fn new(
        name: &str,
        host_version: &str,
        data_dir: &Path,
        visible_providers: BTreeSet<String>,
        bus: Arc<Bus>,
    ) -> Box<PluginHost> {
        let cstring = |s: &str| CString::new(s.replace('\0', "")).unwrap_or_default();
        let state = Box::new(HostState {
            api: HostApi {
                struct_size: std::mem::size_of::<HostApi>() as u32,
                abi_major: XPLUGIN_ABI_MAJOR,
                abi_minor: XPLUGIN_ABI_MINOR,
                host: std::ptr::null_mut(),
                log: Some(host_log),
                host_version: Some(host_version_fn),
                data_dir: Some(host_data_dir),
                publish: Some(host_publish),
                subscribe: Some(host_subscribe),
                unsubscribe: Some(host_unsubscribe),
                register_service: Some(host_register_service),
                find_service: Some(host_find_service),
                set_busy: Some(host_set_busy),
            },
            name: name.to_string(),
            host_version: cstring(host_version),
            data_dir: cstring(&path_for_plugins(data_dir).to_string_lossy()),
            visible_providers,
            bus,
            busy: AtomicBool::new(false),
            journal_index: AtomicUsize::new(0),
        });
        let inner = NonNull::from(Box::leak(state));
        // SAFETY: `inner` was just made from a leaked `Box`, so it is valid,
        // aligned and not yet shared with anyone; this is the only access.
        unsafe { (*inner.as_ptr()).api.host = inner.as_ptr().cast::<HostContext>() };
        Box::new(PluginHost { inner })
    }

    /// The table to pass to `init`.
    pub fn api(&self) -> *const HostApi {
        // SAFETY: `inner` stays valid until `Drop`; taking a field's address
        // creates no reference, so it does not conflict with plugins reading
        // the table through earlier copies of this pointer.
        unsafe { &raw const (*self.inner.as_ptr()).api }
    }
}

impl PluginHost {
    /// True while the plugin says it must not be cut (`set_busy`).
    pub fn is_busy(&self) -> bool {
        // SAFETY: `inner` stays valid until `Drop`; the flag is an atomic,
        // shared with plugin threads by design.
        unsafe { (*self.inner.as_ptr()).busy.load(Ordering::Acquire) }
    }

    /// Records the plugin's journal index (which plugin its message
    /// deliveries are in).
    pub fn set_journal_index(&self, index: usize) {
        // SAFETY: as in `is_busy`.
        unsafe {
            (*self.inner.as_ptr())
                .journal_index
                .store(index, Ordering::Relaxed)
        }
    }

    /// Clears the busy flag (the host does when it stops the plugin).
    pub fn clear_busy(&self) {
        // SAFETY: as in `is_busy`.
        unsafe { (*self.inner.as_ptr()).busy.store(false, Ordering::Release) }
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        // SAFETY: `inner` comes from `Box::leak` in `new` and is freed only
        // here, once. Whoever called the plugin's `init` with this table
        // keeps the `PluginHost` until after the plugin's `destroy` returned
        // (the ABI's lifetime of the table), so no plugin uses it any more.
        drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
    }
}

/// The context behind a table's `host` field.
///
/// # Safety
/// `host` must be NULL or the `host` field of a table made by
/// [`PluginHost::new`] whose `PluginHost` is still alive: what the ABI
/// requires of every plugin passing `host` back.
unsafe fn ctx<'a>(host: *mut HostContext) -> Option<&'a HostState> {
    // SAFETY: per this function's contract `host` is NULL or points at the
    // live `HostState` it was set to in `PluginHost::new`; the state is only
    // read after construction, so shared references to it are sound.
    unsafe { host.cast::<HostState>().as_ref() }
}

/// A topic or service name argument: NUL-terminated UTF-8 of 1 to
/// [`MAX_NAME_LEN`] bytes, or `None`.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that stays valid and
/// unchanged for `'a` (the ABI: for the duration of the call).
unsafe fn name_arg<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and NUL-terminated and alive for 'a per this
    // function's contract.
    let s = unsafe { CStr::from_ptr(p) }.to_str().ok()?;
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        None
    } else {
        Some(s)
    }
}

/// Runs `f`, turning a panic in host code into `XPLUGIN_ERR_FAILED` rather
/// than unwinding into the plugin.
fn guarded(f: impl FnOnce() -> Status) -> Status {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(XPLUGIN_ERR_FAILED)
}

// The `host_*` functions below are the table's entries. Their contract is the
// ABI's (xplugin.h): `host` is the `host` field of the plugin's own table,
// every string argument is NULL or NUL-terminated and valid for the call,
// every out pointer is NULL or writable. Each checks what it can (NULL,
// length, UTF-8) and refuses the rest with XPLUGIN_ERR_INVALID_ARG.

/// `log`.
///
/// # Safety
/// The ABI's contract for the table's functions (see above).
unsafe extern "C" fn host_log(host: *mut HostContext, level: u32, message: *const c_char) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `host` is what the plugin got in its table (ABI contract).
        let (Some(h), false) = (unsafe { ctx(host) }, message.is_null()) else {
            return;
        };
        // SAFETY: non-NULL, and the ABI requires a NUL-terminated string
        // valid for the duration of the call.
        let text = unsafe { CStr::from_ptr(message) };
        // On the cycle thread the line goes into the cycle's log ring: never
        // blocks, never allocates (the service thread writes it).
        if crate::cycle::outbox::log(level, text.to_bytes()) {
            return;
        }
        let msg = text.to_string_lossy();
        let level = match level {
            XPLUGIN_LOG_ERROR => log::Level::Error,
            XPLUGIN_LOG_WARN => log::Level::Warn,
            XPLUGIN_LOG_INFO => log::Level::Info,
            XPLUGIN_LOG_DEBUG => log::Level::Debug,
            _ => log::Level::Trace,
        };
        log::log!(target: "xplugin::plugin", level, "[{}] {}", h.name, msg);
    }));
}

/// The form of `path` a plugin is given. On Windows the install root is
/// canonical, which there is a verbatim path (`\\?\Z:\...`); Windows does
/// not normalise verbatim paths, so a plugin that appends `/file` to one
/// (as C code does) names a file that cannot be opened. Where the plain
/// form means the same file (it fits in `MAX_PATH`, no reserved names or
/// trailing dots: `dunce::simplified`'s rules) the prefix is dropped;
/// longer paths stay verbatim, the only form Windows accepts for them.
#[cfg(windows)]
fn path_for_plugins(path: &Path) -> &Path {
    dunce::simplified(path)
}

/// Unix paths have no verbatim form: handed over as they are.
#[cfg(not(windows))]
fn path_for_plugins(path: &Path) -> &Path {
    path
}

/// `host_version`.
///
/// # Safety
/// The ABI's contract for the table's functions (see above).
unsafe extern "C" fn host_version_fn(host: *mut HostContext) -> *const c_char {
    // SAFETY: `host` is what the plugin got in its table (ABI contract).
    unsafe { ctx(host) }.map_or(std::ptr::null(), |h| h.host_version.as_ptr())
}

/// `data_dir`.
///
/// # Safety
/// The ABI's contract for the table's functions (see above).
unsafe extern "C" fn host_data_dir(host: *mut HostContext) -> *const c_char {
    // SAFETY: `host` is what the plugin got in its table (ABI contract).
    unsafe { ctx(host) }.map_or(std::ptr::null(), |h| h.data_dir.as_ptr())
}

/// `publish`.
///
/// # Safety
/// The ABI's contract for the table's functions (see above); `data` is NULL
/// (with `len` 0) or `len` readable bytes.
unsafe extern "C" fn host_publish(
    host: *mut HostContext,
    topic: *const c_char,
    data: *const u8,
    len: usize,
) -> Status {
    guarded(|| {
        // SAFETY: `host` is what the plugin got in its table and `topic` is
        // NULL or a NUL-terminated string valid for the call (ABI contract).
        let (Some(h), Some(topic)) = (unsafe { ctx(host) }, unsafe { name_arg(topic) }) else {
            return XPLUGIN_ERR_INVALID_ARG;
        };
        if (data.is_null() && len != 0) || len > isize::MAX as usize {
            return XPLUGIN_ERR_INVALID_ARG;
        }
        let bytes = if len == 0 {
            &[][..]
        } else {
            // SAFETY: non-NULL, `len` is at most isize::MAX (checked above),
            // and the ABI requires `len` readable bytes that stay unchanged
            // for the duration of the call; the slice does not outlive it.
            unsafe { std::slice::from_raw_parts(data, len) }
        };
        // From `step`: queued for the service thread, which delivers it.
        if let Some(status) = crate::cycle::outbox::publish(topic, bytes) {
            return status;
        }
        match h.bus.publish_from(&h.name, topic, bytes) {
            Ok(_) => XPLUGIN_OK,
            Err(e) => {
                log::warn!("[{}] {e}", h.name);
                XPLUGIN_ERR_NO_MEMORY
            }
        }
    })
}

/// `subscribe`.
///
/// # Safety
/// The ABI's contract for the table's functions (see above); `callback` and
/// `user` stay valid until the subscription is removed.
unsafe extern "C" fn host_subscribe(
    host: *mut HostContext,
    topic: *const c_char,
    callback: Option<MessageFn>,
    user: *mut c_void,
    out_subscription: *mut u64,
) -> Status {
    let write_id = |id: u64| {
        if !out_subscription.is_null() {
            // SAFETY: non-NULL, and the ABI requires a writable uint64_t.
            unsafe { *out_subscription = id };
        }
    };
    let status = guarded(|| {
        // These take the bus lock: refused on the real-time cycle thread.
        if crate::cycle::outbox::in_cycle() {
            return XPLUGIN_ERR_NOT_READY;
        }
        // SAFETY: `host` is what the plugin got in its table and `topic` is
        // NULL or a NUL-terminated string valid for the call (ABI contract).
        let (Some(h), Some(topic), Some(callback)) =
            (unsafe { ctx(host) }, unsafe { name_arg(topic) }, callback)
        else {
            return XPLUGIN_ERR_INVALID_ARG;
        };
        let id = h.bus.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut st = lock(&h.bus.state);
        if st.subscribers.len() >= MAX_SUBSCRIPTIONS {
            return XPLUGIN_ERR_NO_MEMORY;
        }
        // Written before the subscription is visible to publishers, so a
        // callback running on another thread can already read its id.
        write_id(id);
        st.subscribers.push(Arc::new(Subscriber {
            id,
            owner: h.name.clone(),
            owner_index: h.journal_index.load(Ordering::Relaxed),
            topic: topic.to_string(),
            callback,
            user: user as usize,
            deliveries: Arc::default(),
        }));
        XPLUGIN_OK
    });
    if status != XPLUGIN_OK {
        // 0 is never an id (they start at 1).
        write_id(0);
    }
    status
}

/// `unsubscribe`.
///
/// # Safety
/// The ABI's contract for the table's functions (see above).
unsafe extern "C" fn host_unsubscribe(host: *mut HostContext, subscription: u64) -> Status {
    guarded(|| {
        // These take the bus lock: refused on the real-time cycle thread.
        if crate::cycle::outbox::in_cycle() {
            return XPLUGIN_ERR_NOT_READY;
        }
        // SAFETY: `host` is what the plugin got in its table (ABI contract).
        let Some(h) = (unsafe { ctx(host) }) else {
            return XPLUGIN_ERR_INVALID_ARG;
        };
        match h.bus.unsubscribe(&h.name, subscription) {
            Ok(()) => XPLUGIN_OK,
            Err(RetireError::WouldDeadlock) => {
                log::warn!(
                    "[{}] unsubscribe({subscription}): {}",
                    h.name,
                    RetireError::WouldDeadlock
                );
                XPLUGIN_ERR_NOT_READY
            }
            Err(_) => XPLUGIN_ERR_NOT_FOUND,
        }
    })
}

/// `register_service`.
///
/// # Safety
/// The ABI's contract for the table's functions (see above); `iface` stays
/// valid until the plugin's `destroy` returns.
unsafe extern "C" fn host_register_service(
    host: *mut HostContext,
    name: *const c_char,
    iface_version: u32,
    iface: *const c_void,
) -> Status {
    guarded(|| {
        // These take the bus lock: refused on the real-time cycle thread.
        if crate::cycle::outbox::in_cycle() {
            return XPLUGIN_ERR_NOT_READY;
        }
        // SAFETY: `host` is what the plugin got in its table and `name` is
        // NULL or a NUL-terminated string valid for the call (ABI contract).
        let (Some(h), Some(name)) = (unsafe { ctx(host) }, unsafe { name_arg(name) }) else {
            return XPLUGIN_ERR_INVALID_ARG;
        };
        if iface.is_null() {
            return XPLUGIN_ERR_INVALID_ARG;
        }
        let mut st = lock(&h.bus.state);
        if let Some(existing) = st.services.get(name) {
            log::warn!(
                "[{}] cannot register service \"{name}\": already registered by plugin \"{}\"",
                h.name,
                existing.provider
            );
            return XPLUGIN_ERR_DUPLICATE;
        }
        if st.services.len() >= MAX_SERVICES {
            return XPLUGIN_ERR_NO_MEMORY;
        }
        st.services.insert(
            name.to_string(),
            ServiceEntry {
                provider: h.name.clone(),
                version: iface_version,
                iface: iface as usize,
            },
        );
        XPLUGIN_OK
    })
}

/// `set_busy` (ABI 1.1).
///
/// # Safety
/// The ABI's contract for the table's functions (see above).
unsafe extern "C" fn host_set_busy(host: *mut HostContext, busy: u8) -> Status {
    // SAFETY: `host` is what the plugin got in its table (ABI contract).
    // One atomic store: no lock, no allocation, allowed on the cycle thread.
    match unsafe { ctx(host) } {
        Some(h) => {
            h.busy.store(busy != 0, Ordering::Release);
            XPLUGIN_OK
        }
        None => XPLUGIN_ERR_INVALID_ARG,
    }
}

/// `find_service`.
///
/// # Safety
/// The ABI's contract for the table's functions (see above).
unsafe extern "C" fn host_find_service(
    host: *mut HostContext,
    name: *const c_char,
    out_iface: *mut *const c_void,
    out_iface_version: *mut u32,
) -> Status {
    guarded(|| {
        // These take the bus lock: refused on the real-time cycle thread.
        if crate::cycle::outbox::in_cycle() {
            return XPLUGIN_ERR_NOT_READY;
        }
        // SAFETY: `host` is what the plugin got in its table and `name` is
        // NULL or a NUL-terminated string valid for the call (ABI contract).
        let (Some(h), Some(name)) = (unsafe { ctx(host) }, unsafe { name_arg(name) }) else {
            return XPLUGIN_ERR_INVALID_ARG;
        };
        if out_iface.is_null() {
            return XPLUGIN_ERR_INVALID_ARG;
        }
        let st = lock(&h.bus.state);
        let Some(entry) = st.services.get(name) else {
            log::debug!("[{}] service \"{name}\" is not registered", h.name);
            return XPLUGIN_ERR_NOT_FOUND;
        };
        if entry.provider != h.name && !h.visible_providers.contains(&entry.provider) {
            log::warn!(
                "[{}] service \"{name}\" is provided by plugin \"{}\", which is not among its dependencies; add \"{}\" to \"depend\" in its manifest",
                h.name,
                entry.provider,
                entry.provider
            );
            return XPLUGIN_ERR_NOT_FOUND;
        }
        // SAFETY: `out_iface` is non-NULL and the ABI requires it to be
        // writable; the stored address is the provider's table, which the
        // host only passes on, never dereferences.
        unsafe { *out_iface = entry.iface as *const c_void };
        if !out_iface_version.is_null() {
            // SAFETY: non-NULL, and the ABI requires a writable uint32_t.
            unsafe { *out_iface_version = entry.version };
        }
        XPLUGIN_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static RECEIVED: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn on_message(
        _user: *mut c_void,
        _t: *const c_char,
        _d: *const u8,
        len: usize,
    ) {
        RECEIVED.fetch_add(len, Ordering::SeqCst);
    }

    fn host(name: &str, deps: &[&str], bus: &Arc<Bus>) -> Box<PluginHost> {
        PluginHost::new(
            name,
            "3.0.1",
            Path::new("/tmp/data"),
            deps.iter().map(|s| s.to_string()).collect(),
            bus.clone(),
        )
    }

    #[test]
    fn services_are_visible_to_dependents_only() {
        let bus = Bus::new();
        let a = host("a", &[], &bus);
        let b = host("b", &["a"], &bus);
        let c = host("c", &[], &bus);
        static TABLE: u64 = 42;
        let name = CString::new("a.svc").unwrap();
        // SAFETY: the tables of live PluginHosts, called with their own
        // `host` field, C strings that outlive the calls, a static service
        // table and local out variables.
        unsafe {
            let api = &*a.api();
            let reg = api.register_service.unwrap();
            assert_eq!(
                reg(api.host, name.as_ptr(), 3, (&TABLE as *const u64).cast()),
                XPLUGIN_OK
            );
            assert_eq!(
                reg(api.host, name.as_ptr(), 3, (&TABLE as *const u64).cast()),
                XPLUGIN_ERR_DUPLICATE
            );
            let mut out: *const c_void = std::ptr::null();
            let mut ver = 0;
            let bapi = &*b.api();
            assert_eq!(
                (bapi.find_service.unwrap())(bapi.host, name.as_ptr(), &mut out, &mut ver),
                XPLUGIN_OK
            );
            assert_eq!((ver, *out.cast::<u64>()), (3, 42));
            let capi = &*c.api();
            assert_eq!(
                (capi.find_service.unwrap())(capi.host, name.as_ptr(), &mut out, &mut ver),
                XPLUGIN_ERR_NOT_FOUND
            );
        }
        bus.remove_owner("a");
        assert!(bus.services().is_empty());
    }

    #[test]
    fn publish_reaches_subscribers_until_unsubscribed() {
        let bus = Bus::new();
        let a = host("a", &[], &bus);
        let topic = CString::new("t").unwrap();
        let before = RECEIVED.load(Ordering::SeqCst);
        // SAFETY: the table of a live PluginHost with its own `host` field;
        // the topic outlives the calls; `on_message` ignores `user`.
        unsafe {
            let api = &*a.api();
            let mut id = 0;
            assert_eq!(
                (api.subscribe.unwrap())(
                    api.host,
                    topic.as_ptr(),
                    Some(on_message),
                    std::ptr::null_mut(),
                    &mut id
                ),
                XPLUGIN_OK
            );
            assert_eq!(
                (api.publish.unwrap())(api.host, topic.as_ptr(), b"abc".as_ptr(), 3),
                XPLUGIN_OK
            );
            assert_eq!(RECEIVED.load(Ordering::SeqCst) - before, 3);
            assert_eq!((api.unsubscribe.unwrap())(api.host, id), XPLUGIN_OK);
            assert_eq!(
                (api.unsubscribe.unwrap())(api.host, id),
                XPLUGIN_ERR_NOT_FOUND
            );
        }
        assert_eq!(bus.publish("t", b"zz"), Ok(0));
    }

    /// What a re-entrant test callback does, reached through `user`.
    struct Reentrant {
        api: *const HostApi,
        /// The subscription's own id, set after subscribe.
        own_id: AtomicU64,
        /// Another subscription to remove from inside the callback.
        other_id: AtomicU64,
        calls: AtomicUsize,
        /// Statuses seen inside the callback, in order.
        statuses: Mutex<Vec<(&'static str, Status)>>,
    }

    /// On its first call: publishes on its own topic (a nested delivery to
    /// itself), unsubscribes the other subscription, subscribes a new one,
    /// then unsubscribes itself. Later calls only count.
    ///
    /// # Safety
    /// `user` points to a live `Reentrant` whose `api` is a live table.
    unsafe extern "C" fn reentrant(
        user: *mut c_void,
        topic: *const c_char,
        _d: *const u8,
        _l: usize,
    ) {
        // SAFETY: the tests pass a `Reentrant` that outlives the bus use.
        let r = unsafe { &*user.cast::<Reentrant>() };
        if r.calls.fetch_add(1, Ordering::SeqCst) > 0 {
            return;
        }
        // SAFETY: the table of a live PluginHost; topic is the host's C string.
        unsafe {
            let api = &*r.api;
            let mut out = r.statuses.lock().unwrap();
            out.push((
                "publish",
                (api.publish.unwrap())(api.host, topic, std::ptr::null(), 0),
            ));
            out.push((
                "unsubscribe other",
                (api.unsubscribe.unwrap())(api.host, r.other_id.load(Ordering::SeqCst)),
            ));
            let mut id = 0;
            out.push((
                "subscribe",
                (api.subscribe.unwrap())(
                    api.host,
                    c"late".as_ptr(),
                    Some(on_message),
                    std::ptr::null_mut(),
                    &mut id,
                ),
            ));
            out.push((
                "unsubscribe self",
                (api.unsubscribe.unwrap())(api.host, r.own_id.load(Ordering::SeqCst)),
            ));
        }
    }

    fn subscribe(api: &HostApi, topic: &CStr, cb: MessageFn, user: *mut c_void) -> u64 {
        let mut id = 0;
        // SAFETY: a live table; topic is a C string; user outlives the bus use.
        let s =
            unsafe { (api.subscribe.unwrap())(api.host, topic.as_ptr(), Some(cb), user, &mut id) };
        assert_eq!(s, XPLUGIN_OK);
        id
    }

    /// Runs `f` on a thread and fails the test if it does not finish in 30
    /// seconds: a deadlock regression then fails instead of hanging the suite.
    fn within_30s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{what}: no result within 30 s (deadlocked?)"))
    }

    #[test]
    fn a_callback_may_publish_subscribe_and_unsubscribe_itself_and_others() {
        within_30s("re-entrant callback", || {
            let bus = Bus::new();
            let a = host("a", &[], &bus);
            // SAFETY: the table of a live PluginHost.
            let api = unsafe { &*a.api() };
            let r = Reentrant {
                api: a.api(),
                own_id: AtomicU64::new(0),
                other_id: AtomicU64::new(0),
                calls: AtomicUsize::new(0),
                statuses: Mutex::new(Vec::new()),
            };
            let user = (&r as *const Reentrant).cast_mut().cast::<c_void>();
            r.own_id
                .store(subscribe(api, c"self", reentrant, user), Ordering::SeqCst);
            let other = subscribe(api, c"other", on_message, std::ptr::null_mut());
            r.other_id.store(other, Ordering::SeqCst);
            // Hung on the delivery lock before unsubscribe learnt to skip the
            // caller's own delivery.
            assert_eq!(bus.publish("self", b""), Ok(1));
            assert_eq!(
                *r.statuses.lock().unwrap(),
                [
                    ("publish", XPLUGIN_OK),
                    ("unsubscribe other", XPLUGIN_OK),
                    ("subscribe", XPLUGIN_OK),
                    ("unsubscribe self", XPLUGIN_OK),
                ]
            );
            // The nested publish reached the callback a second time.
            assert_eq!(r.calls.load(Ordering::SeqCst), 2);
            assert_eq!(bus.publish("self", b""), Ok(0), "unsubscribed itself");
            assert_eq!(bus.publish("other", b""), Ok(0), "unsubscribed by it");
            assert_eq!(bus.publish("late", b""), Ok(1), "subscribed by it");
            assert_eq!(delivery::depth(), 0);
        });
    }

    /// Publishes on its own topic from every delivery: endless recursion
    /// unless the host bounds it. Counts the calls and records the first
    /// refused publish status.
    ///
    /// # Safety
    /// As for `reentrant`.
    unsafe extern "C" fn echo(user: *mut c_void, topic: *const c_char, _d: *const u8, _l: usize) {
        // SAFETY: the test passes a `Reentrant` that outlives the bus use.
        let r = unsafe { &*user.cast::<Reentrant>() };
        r.calls.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the table of a live PluginHost; topic is the host's C string.
        let s = unsafe {
            let api = &*r.api;
            (api.publish.unwrap())(api.host, topic, std::ptr::null(), 0)
        };
        if s != XPLUGIN_OK {
            r.statuses.lock().unwrap().push(("publish", s));
        }
    }

    #[test]
    fn nested_publishing_is_bounded() {
        within_30s("nested publishing", || {
            let bus = Bus::new();
            let a = host("a", &[], &bus);
            // SAFETY: the table of a live PluginHost.
            let api = unsafe { &*a.api() };
            let r = Reentrant {
                api: a.api(),
                own_id: AtomicU64::new(0),
                other_id: AtomicU64::new(0),
                calls: AtomicUsize::new(0),
                statuses: Mutex::new(Vec::new()),
            };
            let user = (&r as *const Reentrant).cast_mut().cast::<c_void>();
            subscribe(api, c"echo", echo, user);
            assert_eq!(bus.publish("echo", b""), Ok(1));
            assert_eq!(r.calls.load(Ordering::SeqCst), MAX_DELIVERY_DEPTH as usize);
            assert_eq!(
                *r.statuses.lock().unwrap(),
                [("publish", XPLUGIN_ERR_NO_MEMORY)]
            );
            assert_eq!(delivery::depth(), 0);
            let e = PublishError::TooDeep {
                topic: "echo".into(),
                depth: MAX_DELIVERY_DEPTH,
            };
            assert!(e.to_string().contains("\"echo\""), "{e}");
        });
    }

    #[test]
    fn remove_owner_waits_for_a_delivery_on_another_thread() {
        use std::sync::mpsc;
        static GATE: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>> = Mutex::new(None);
        unsafe extern "C" fn slow(_u: *mut c_void, _t: *const c_char, _d: *const u8, _l: usize) {
            let gate = GATE.lock().unwrap().take();
            if let Some((entered, proceed)) = gate {
                entered.send(()).unwrap();
                proceed.recv().unwrap();
            }
        }
        let bus = Bus::new();
        let a = host("a", &[], &bus);
        // SAFETY: the table of a live PluginHost.
        let api = unsafe { &*a.api() };
        subscribe(api, c"slow", slow, std::ptr::null_mut());
        let (entered_tx, entered_rx) = mpsc::channel();
        let (proceed_tx, proceed_rx) = mpsc::channel();
        *GATE.lock().unwrap() = Some((entered_tx, proceed_rx));
        let publisher = {
            let bus = Arc::clone(&bus);
            std::thread::spawn(move || bus.publish("slow", b""))
        };
        entered_rx.recv().unwrap();
        let (removed_tx, removed_rx) = mpsc::channel();
        let remover = {
            let bus = Arc::clone(&bus);
            std::thread::spawn(move || {
                bus.remove_owner("a");
                removed_tx.send(()).unwrap();
            })
        };
        // The delivery is still running: remove_owner must not return.
        assert!(removed_rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        proceed_tx.send(()).unwrap();
        removed_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("remove_owner did not return after the delivery ended");
        assert_eq!(publisher.join().unwrap(), Ok(1));
        remover.join().unwrap();
        assert_eq!(bus.publish("slow", b""), Ok(0));
    }

    #[test]
    fn null_and_oversized_arguments_are_refused() {
        let bus = Bus::new();
        let a = host("a", &[], &bus);
        let long = CString::new("x".repeat(MAX_NAME_LEN + 1)).unwrap();
        // SAFETY: the table of a live PluginHost with its own `host` field;
        // the NULL and over-long arguments are what the host must refuse.
        unsafe {
            let api = &*a.api();
            assert_eq!(
                (api.publish.unwrap())(api.host, std::ptr::null(), std::ptr::null(), 0),
                XPLUGIN_ERR_INVALID_ARG
            );
            assert_eq!(
                (api.publish.unwrap())(api.host, long.as_ptr(), std::ptr::null(), 0),
                XPLUGIN_ERR_INVALID_ARG
            );
            assert_eq!(
                (api.register_service.unwrap())(api.host, long.as_ptr(), 1, std::ptr::null()),
                XPLUGIN_ERR_INVALID_ARG
            );
            // A refused subscribe writes 0, never a stale or future id.
            let mut id = 99;
            assert_eq!(
                (api.subscribe.unwrap())(
                    api.host,
                    long.as_ptr(),
                    Some(on_message),
                    std::ptr::null_mut(),
                    &mut id
                ),
                XPLUGIN_ERR_INVALID_ARG
            );
            assert_eq!(id, 0);
            assert_eq!(
                (api.subscribe.unwrap())(
                    api.host,
                    c"t".as_ptr(),
                    None,
                    std::ptr::null_mut(),
                    &mut id
                ),
                XPLUGIN_ERR_INVALID_ARG
            );
            assert_eq!(id, 0);
        }
    }
}
