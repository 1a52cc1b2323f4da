//! The host services table handed to each plugin in `init`: logging, host
//! version, data directory, publish/subscribe and the service registry.
//!
//! Each plugin gets its own [`PluginHost`] (so that log lines carry its name,
//! `data_dir` is its own and `find_service` only sees its dependencies), and
//! all of them share one [`Bus`]. Every callback entered from C catches
//! panics: unwinding into a plugin's C frames is undefined behaviour.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use xplugin_abi::*;

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
    topic: String,
    callback: MessageFn,
    user: usize,
    active: AtomicBool,
    /// Held while a message is delivered; `unsubscribe` takes it after
    /// deactivating, so once it returns no delivery is in flight.
    delivering: Mutex<()>,
}

#[derive(Default)]
struct BusState {
    services: BTreeMap<String, ServiceEntry>,
    subscribers: Vec<Arc<Subscriber>>,
}

/// Topics and services shared by all plugins of one host.
#[derive(Default)]
pub struct Bus {
    state: Mutex<BusState>,
    next_id: AtomicU64,
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

    /// Removes every service and subscription `owner` made. Called before a
    /// plugin is destroyed and when it fails, so nobody calls into a dead
    /// instance.
    pub fn remove_owner(&self, owner: &str) {
        let removed: Vec<Arc<Subscriber>> = {
            let mut st = lock(&self.state);
            st.services.retain(|_, s| s.provider != owner);
            let (gone, kept) = st.subscribers.drain(..).partition(|s| s.owner == owner);
            st.subscribers = kept;
            gone
        };
        for s in removed {
            s.active.store(false, Ordering::SeqCst);
            drop(lock(&s.delivering));
        }
    }

    /// Names of the services registered now, with their providers.
    pub fn services(&self) -> Vec<(String, String, u32)> {
        lock(&self.state)
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.provider.clone(), s.version))
            .collect()
    }

    /// Publishes from the host itself (or a test). Returns how many
    /// subscribers received the message.
    pub fn publish(&self, topic: &str, data: &[u8]) -> usize {
        let targets: Vec<Arc<Subscriber>> = lock(&self.state)
            .subscribers
            .iter()
            .filter(|s| s.topic == topic)
            .cloned()
            .collect();
        let Ok(ctopic) = CString::new(topic) else {
            return 0;
        };
        let mut delivered = 0;
        for s in targets {
            let _guard = lock(&s.delivering);
            if !s.active.load(Ordering::SeqCst) {
                continue;
            }
            // SAFETY: callback and user were given by the subscriber, which
            // is alive (active) while we hold `delivering`.
            let r = catch_unwind(AssertUnwindSafe(|| unsafe {
                (s.callback)(
                    s.user as *mut c_void,
                    ctopic.as_ptr(),
                    data.as_ptr(),
                    data.len(),
                )
            }));
            if r.is_ok() {
                delivered += 1;
            }
        }
        delivered
    }
}

/// The per-plugin host context: a boxed [`HostApi`] whose `host` field points
/// back at this struct. It must outlive the plugin's `destroy`.
pub struct PluginHost {
    api: HostApi,
    name: String,
    host_version: CString,
    data_dir: CString,
    /// Plugins whose services this plugin may find: its transitive `depend`.
    visible_providers: BTreeSet<String>,
    bus: Arc<Bus>,
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
        let mut b = Box::new(PluginHost {
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
            },
            name: name.to_string(),
            host_version: cstring(host_version),
            data_dir: cstring(&data_dir.to_string_lossy()),
            visible_providers,
            bus,
        });
        let self_ptr: *mut PluginHost = &mut *b;
        b.api.host = self_ptr.cast::<HostContext>();
        b
    }

    /// The table to pass to `init`.
    pub fn api(&self) -> *const HostApi {
        &self.api
    }
}

/// # Safety
/// `host` must be the `host` field of a live [`PluginHost`] table.
unsafe fn ctx<'a>(host: *mut HostContext) -> Option<&'a PluginHost> {
    host.cast::<PluginHost>().as_ref()
}

unsafe fn name_arg<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    let s = CStr::from_ptr(p).to_str().ok()?;
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

unsafe extern "C" fn host_log(host: *mut HostContext, level: u32, message: *const c_char) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let (Some(h), false) = (ctx(host), message.is_null()) else {
            return;
        };
        // On the cycle thread the line goes into the cycle's log ring: never
        // blocks, never allocates (the service thread writes it).
        if crate::cycle::outbox::log(level, CStr::from_ptr(message).to_bytes()) {
            return;
        }
        let msg = CStr::from_ptr(message).to_string_lossy();
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

unsafe extern "C" fn host_version_fn(host: *mut HostContext) -> *const c_char {
    ctx(host).map_or(std::ptr::null(), |h| h.host_version.as_ptr())
}

unsafe extern "C" fn host_data_dir(host: *mut HostContext) -> *const c_char {
    ctx(host).map_or(std::ptr::null(), |h| h.data_dir.as_ptr())
}

unsafe extern "C" fn host_publish(
    host: *mut HostContext,
    topic: *const c_char,
    data: *const u8,
    len: usize,
) -> Status {
    guarded(|| {
        let (Some(h), Some(topic)) = (ctx(host), name_arg(topic)) else {
            return XPLUGIN_ERR_INVALID_ARG;
        };
        if data.is_null() && len != 0 {
            return XPLUGIN_ERR_INVALID_ARG;
        }
        let bytes = if len == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(data, len)
        };
        // From `step`: queued for the service thread, which delivers it.
        if let Some(status) = crate::cycle::outbox::publish(topic, bytes) {
            return status;
        }
        h.bus.publish(topic, bytes);
        XPLUGIN_OK
    })
}

unsafe extern "C" fn host_subscribe(
    host: *mut HostContext,
    topic: *const c_char,
    callback: Option<MessageFn>,
    user: *mut c_void,
    out_subscription: *mut u64,
) -> Status {
    guarded(|| {
        // These take the bus lock: refused on the real-time cycle thread.
        if crate::cycle::outbox::in_cycle() {
            return XPLUGIN_ERR_NOT_READY;
        }
        let (Some(h), Some(topic), Some(callback)) = (ctx(host), name_arg(topic), callback) else {
            return XPLUGIN_ERR_INVALID_ARG;
        };
        let id = h.bus.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut st = lock(&h.bus.state);
            if st.subscribers.len() >= MAX_SUBSCRIPTIONS {
                return XPLUGIN_ERR_NO_MEMORY;
            }
            st.subscribers.push(Arc::new(Subscriber {
                id,
                owner: h.name.clone(),
                topic: topic.to_string(),
                callback,
                user: user as usize,
                active: AtomicBool::new(true),
                delivering: Mutex::new(()),
            }));
        }
        if !out_subscription.is_null() {
            *out_subscription = id;
        }
        XPLUGIN_OK
    })
}

unsafe extern "C" fn host_unsubscribe(host: *mut HostContext, subscription: u64) -> Status {
    guarded(|| {
        // These take the bus lock: refused on the real-time cycle thread.
        if crate::cycle::outbox::in_cycle() {
            return XPLUGIN_ERR_NOT_READY;
        }
        let Some(h) = ctx(host) else {
            return XPLUGIN_ERR_INVALID_ARG;
        };
        let removed = {
            let mut st = lock(&h.bus.state);
            let pos = st
                .subscribers
                .iter()
                .position(|s| s.id == subscription && s.owner == h.name);
            pos.map(|i| st.subscribers.remove(i))
        };
        match removed {
            Some(s) => {
                s.active.store(false, Ordering::SeqCst);
                drop(lock(&s.delivering));
                XPLUGIN_OK
            }
            None => XPLUGIN_ERR_NOT_FOUND,
        }
    })
}

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
        let (Some(h), Some(name)) = (ctx(host), name_arg(name)) else {
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
        let (Some(h), Some(name)) = (ctx(host), name_arg(name)) else {
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
        *out_iface = entry.iface as *const c_void;
        if !out_iface_version.is_null() {
            *out_iface_version = entry.version;
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
        assert_eq!(bus.publish("t", b"zz"), 0);
    }

    #[test]
    fn null_and_oversized_arguments_are_refused() {
        let bus = Bus::new();
        let a = host("a", &[], &bus);
        let long = CString::new("x".repeat(MAX_NAME_LEN + 1)).unwrap();
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
        }
    }
}
