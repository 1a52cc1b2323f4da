//! The xplugin C ABI, version 1.
//!
//! This crate is the Rust mirror of `include/xplugin.h`: the descriptor a
//! plugin exports, the host services table it receives, status codes, and the
//! tag the host reads from the library file *without loading it*. It has no
//! dependencies, so a plugin that uses it pulls in nothing else.
//!
//! Plugin authors normally use only [`Plugin`], [`Host`], [`PluginError`] and
//! the [`export_plugin!`] macro, which fills the descriptor and wraps every
//! call in `catch_unwind` so that a panic becomes [`XPLUGIN_ERR_PANIC`] instead
//! of unwinding into C. Hosts use the raw `#[repr(C)]` types.
//!
//! The header and these definitions are kept in sync by the `abi_layout`
//! integration test, which compiles the header with the system C compiler and
//! compares every size and field offset.
#![deny(missing_docs)]

use core::ffi::{c_char, c_void, CStr};
use std::fmt;

mod plugin;
#[doc(hidden)]
pub use plugin::__private;
pub use plugin::{write_error, Host, Plugin, PluginError, Subscription};

/// `"XPLG"` read as a little-endian `u32`: the first field of tags and descriptors.
pub const XPLUGIN_MAGIC: u32 = 0x474C_5058;
/// ABI major version. A host refuses a library built for another major.
pub const XPLUGIN_ABI_MAJOR: u16 = 1;
/// ABI minor version. Minors only append fields; older plugins keep working.
pub const XPLUGIN_ABI_MINOR: u16 = 1;
/// Name of the exported entry function, without NUL.
pub const XPLUGIN_ENTRY_SYMBOL: &str = "xplugin_entry";
/// Name of the exported [`AbiTag`] data symbol, without NUL.
pub const XPLUGIN_ABI_TAG_SYMBOL: &str = "xplugin_abi";

/// A controller plugin.
pub const XPLUGIN_KIND_CONTROLLER: u32 = 1;
/// A client (teach pendant / HMI) plugin.
pub const XPLUGIN_KIND_CLIENT: u32 = 2;
/// The client-side ABI runtime library (`xplugin.so`, `libxplugin.so`, `xplugin.dll`).
pub const XPLUGIN_KIND_RUNTIME: u32 = 3;

/// Status code type: 0 is success, negative values are errors.
pub type Status = i32;
/// Success.
pub const XPLUGIN_OK: Status = 0;
/// Generic failure; see the error text.
pub const XPLUGIN_ERR_FAILED: Status = -1;
/// An argument was NULL, malformed or out of range.
pub const XPLUGIN_ERR_INVALID_ARG: Status = -2;
/// Topic, service or file not found.
pub const XPLUGIN_ERR_NOT_FOUND: Status = -3;
/// Optional call not supported.
pub const XPLUGIN_ERR_NOT_IMPLEMENTED: Status = -4;
/// Not now: called in the wrong lifecycle state, or a wait that would
/// deadlock (`unsubscribe`); retry later.
pub const XPLUGIN_ERR_NOT_READY: Status = -5;
/// Configuration rejected.
pub const XPLUGIN_ERR_CONFIG: Status = -6;
/// A required dependency or service is missing.
pub const XPLUGIN_ERR_DEPENDENCY: Status = -7;
/// A name (service, subscription) is already taken.
pub const XPLUGIN_ERR_DUPLICATE: Status = -8;
/// Allocation failed or a bound was reached.
pub const XPLUGIN_ERR_NO_MEMORY: Status = -9;
/// File or device error.
pub const XPLUGIN_ERR_IO: Status = -10;
/// Deadline missed.
pub const XPLUGIN_ERR_TIMEOUT: Status = -11;
/// The plugin panicked or threw; the host marks it failed.
pub const XPLUGIN_ERR_PANIC: Status = -12;
/// Not allowed for this plugin.
pub const XPLUGIN_ERR_UNAUTHORIZED: Status = -13;

/// Short symbolic name of a status code, for reports (`"XPLUGIN_ERR_CONFIG"`).
pub fn status_name(status: Status) -> &'static str {
    match status {
        XPLUGIN_OK => "XPLUGIN_OK",
        XPLUGIN_ERR_FAILED => "XPLUGIN_ERR_FAILED",
        XPLUGIN_ERR_INVALID_ARG => "XPLUGIN_ERR_INVALID_ARG",
        XPLUGIN_ERR_NOT_FOUND => "XPLUGIN_ERR_NOT_FOUND",
        XPLUGIN_ERR_NOT_IMPLEMENTED => "XPLUGIN_ERR_NOT_IMPLEMENTED",
        XPLUGIN_ERR_NOT_READY => "XPLUGIN_ERR_NOT_READY",
        XPLUGIN_ERR_CONFIG => "XPLUGIN_ERR_CONFIG",
        XPLUGIN_ERR_DEPENDENCY => "XPLUGIN_ERR_DEPENDENCY",
        XPLUGIN_ERR_DUPLICATE => "XPLUGIN_ERR_DUPLICATE",
        XPLUGIN_ERR_NO_MEMORY => "XPLUGIN_ERR_NO_MEMORY",
        XPLUGIN_ERR_IO => "XPLUGIN_ERR_IO",
        XPLUGIN_ERR_TIMEOUT => "XPLUGIN_ERR_TIMEOUT",
        XPLUGIN_ERR_PANIC => "XPLUGIN_ERR_PANIC",
        XPLUGIN_ERR_UNAUTHORIZED => "XPLUGIN_ERR_UNAUTHORIZED",
        s if s > 0 => "positive status (reserved)",
        _ => "unknown error status",
    }
}

/// Log level: error.
pub const XPLUGIN_LOG_ERROR: u32 = 1;
/// Log level: warning.
pub const XPLUGIN_LOG_WARN: u32 = 2;
/// Log level: information.
pub const XPLUGIN_LOG_INFO: u32 = 3;
/// Log level: debug.
pub const XPLUGIN_LOG_DEBUG: u32 = 4;
/// Log level: trace.
pub const XPLUGIN_LOG_TRACE: u32 = 5;

/// The data exported as `xplugin_abi`, read by the host from the file before
/// loading it. Plain constant data: no pointers, no relocations.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiTag {
    /// [`XPLUGIN_MAGIC`].
    pub magic: u32,
    /// ABI major the library was built against.
    pub abi_major: u16,
    /// ABI minor the library was built against.
    pub abi_minor: u16,
    /// `XPLUGIN_KIND_*`.
    pub kind: u32,
    /// Zero.
    pub reserved: u32,
}

impl AbiTag {
    /// The tag of a library built against this crate, of the given kind.
    pub const fn current(kind: u32) -> Self {
        AbiTag {
            magic: XPLUGIN_MAGIC,
            abi_major: XPLUGIN_ABI_MAJOR,
            abi_minor: XPLUGIN_ABI_MINOR,
            kind,
            reserved: 0,
        }
    }

    /// Size of the tag in a file, in bytes.
    pub const SIZE: usize = core::mem::size_of::<AbiTag>();

    /// Decodes a tag from its bytes in the file (`little_endian` from the
    /// file header). Returns `None` if `bytes` is too short.
    pub fn from_bytes(bytes: &[u8], little_endian: bool) -> Option<Self> {
        let b = bytes.get(..Self::SIZE)?;
        let u32_at = |i: usize| {
            let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
            if little_endian {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            }
        };
        let u16_at = |i: usize| {
            let a = [b[i], b[i + 1]];
            if little_endian {
                u16::from_le_bytes(a)
            } else {
                u16::from_be_bytes(a)
            }
        };
        Some(AbiTag {
            magic: u32_at(0),
            abi_major: u16_at(4),
            abi_minor: u16_at(6),
            kind: u32_at(8),
            reserved: u32_at(12),
        })
    }
}

/// Name of a kind for messages.
pub fn kind_name(kind: u32) -> &'static str {
    match kind {
        XPLUGIN_KIND_CONTROLLER => "controller plugin",
        XPLUGIN_KIND_CLIENT => "client plugin",
        XPLUGIN_KIND_RUNTIME => "xplugin runtime",
        _ => "unknown kind",
    }
}

/// Opaque per-plugin host context (`xplugin_host` in C).
#[repr(C)]
pub struct HostContext {
    _private: [u8; 0],
}

/// Message callback (`xplugin_message_fn`).
pub type MessageFn =
    unsafe extern "C" fn(user: *mut c_void, topic: *const c_char, data: *const u8, len: usize);

/// The host services table (`xplugin_host_api`). Owned by the host, valid
/// until the plugin's `destroy` returns.
#[repr(C)]
pub struct HostApi {
    /// Size of this struct as the host knows it.
    pub struct_size: u32,
    /// Host ABI major.
    pub abi_major: u16,
    /// Host ABI minor.
    pub abi_minor: u16,
    /// Passed back as the first argument of every call.
    pub host: *mut HostContext,
    /// Log a line through the host.
    pub log:
        Option<unsafe extern "C" fn(host: *mut HostContext, level: u32, message: *const c_char)>,
    /// The host's HMI or controller version. Host-owned, static.
    pub host_version: Option<unsafe extern "C" fn(host: *mut HostContext) -> *const c_char>,
    /// This plugin's writable data directory. Host-owned.
    pub data_dir: Option<unsafe extern "C" fn(host: *mut HostContext) -> *const c_char>,
    /// Publish bytes on a topic.
    pub publish: Option<
        unsafe extern "C" fn(
            host: *mut HostContext,
            topic: *const c_char,
            data: *const u8,
            len: usize,
        ) -> Status,
    >,
    /// Subscribe a callback to a topic.
    pub subscribe: Option<
        unsafe extern "C" fn(
            host: *mut HostContext,
            topic: *const c_char,
            callback: Option<MessageFn>,
            user: *mut c_void,
            out_subscription: *mut u64,
        ) -> Status,
    >,
    /// Remove a subscription.
    pub unsubscribe:
        Option<unsafe extern "C" fn(host: *mut HostContext, subscription: u64) -> Status>,
    /// Register a service interface under a name.
    pub register_service: Option<
        unsafe extern "C" fn(
            host: *mut HostContext,
            name: *const c_char,
            iface_version: u32,
            iface: *const c_void,
        ) -> Status,
    >,
    /// Find a service registered by one of this plugin's dependencies.
    pub find_service: Option<
        unsafe extern "C" fn(
            host: *mut HostContext,
            name: *const c_char,
            out_iface: *mut *const c_void,
            out_iface_version: *mut u32,
        ) -> Status,
    >,
    /// ABI 1.1: set (non-zero) or clear (zero) the plugin's busy flag.
    pub set_busy: Option<unsafe extern "C" fn(host: *mut HostContext, busy: u8) -> Status>,
}

/// `init`: receives the host table and resolved config JSON, writes the instance.
pub type InitFn = unsafe extern "C" fn(
    host: *const HostApi,
    config_json: *const c_char,
    config_len: usize,
    out_instance: *mut *mut c_void,
    err: *mut c_char,
    err_cap: usize,
) -> Status;
/// `start` / `stop`.
pub type LifecycleFn =
    unsafe extern "C" fn(instance: *mut c_void, err: *mut c_char, err_cap: usize) -> Status;
/// `destroy`: frees what `init` allocated; cannot fail.
pub type DestroyFn = unsafe extern "C" fn(instance: *mut c_void);
/// `reconfigure`.
pub type ReconfigureFn = unsafe extern "C" fn(
    instance: *mut c_void,
    config_json: *const c_char,
    config_len: usize,
    err: *mut c_char,
    err_cap: usize,
) -> Status;
/// `step`: the cyclic controller hook.
pub type StepFn = unsafe extern "C" fn(instance: *mut c_void, cycle: u64, now_ns: u64) -> Status;
/// `idle`: the periodic client hook.
pub type IdleFn = unsafe extern "C" fn(instance: *mut c_void) -> Status;
/// ABI 1.1 `render`: the client hook that attaches the plugin's UI.
pub type RenderFn = unsafe extern "C" fn(
    instance: *mut c_void,
    ctx: *const RenderContext,
    err: *mut c_char,
    err_cap: usize,
) -> Status;

/// `RenderContext::toolkit`: no UI toolkit (a headless pendant host such as
/// `xplugin-client run`); `parent` is NULL.
pub const XPLUGIN_TOOLKIT_NONE: u32 = 0;
/// `RenderContext::toolkit`: `parent` is a Qt `QWidget *`.
pub const XPLUGIN_TOOLKIT_QT_WIDGET: u32 = 1;
/// `RenderContext::toolkit`: `parent` is a Windows `HWND`.
pub const XPLUGIN_TOOLKIT_WIN32_HWND: u32 = 2;

/// What `render` gets (`xplugin_render_context`): where to attach the UI.
/// Host-owned, borrowed for the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RenderContext {
    /// Size of this struct as the host knows it.
    pub struct_size: u32,
    /// `XPLUGIN_TOOLKIT_*`: what `parent` is.
    pub toolkit: u32,
    /// The host's UI object to attach to (NULL with `XPLUGIN_TOOLKIT_NONE`);
    /// valid until the plugin's `stop`.
    pub parent: *mut c_void,
    /// Initial width in pixels, 0 if unknown.
    pub width: u32,
    /// Initial height in pixels, 0 if unknown.
    pub height: u32,
}
/// The exported entry function `xplugin_entry`.
pub type EntryFn = unsafe extern "C" fn() -> *const Descriptor;

/// The static descriptor a plugin's `xplugin_entry` returns.
#[repr(C)]
pub struct Descriptor {
    /// [`XPLUGIN_MAGIC`].
    pub magic: u32,
    /// ABI major the plugin was built against.
    pub abi_major: u16,
    /// ABI minor the plugin was built against.
    pub abi_minor: u16,
    /// Size of this struct as the plugin knows it.
    pub struct_size: u32,
    /// `XPLUGIN_KIND_CONTROLLER` or `XPLUGIN_KIND_CLIENT`.
    pub kind: u32,
    /// Plugin name, NUL-terminated; must equal the manifest name.
    pub name: *const c_char,
    /// Plugin version, NUL-terminated.
    pub version: *const c_char,
    /// Required.
    pub init: Option<InitFn>,
    /// Required.
    pub start: Option<LifecycleFn>,
    /// Required.
    pub stop: Option<LifecycleFn>,
    /// Required.
    pub destroy: Option<DestroyFn>,
    /// Optional.
    pub reconfigure: Option<ReconfigureFn>,
    /// Optional, controller plugins.
    pub step: Option<StepFn>,
    /// Optional, client plugins.
    pub idle: Option<IdleFn>,
    /// ABI 1.1, optional, client plugins: attach the UI (the vendor's render
    /// stage). Read only when `struct_size` covers it.
    pub render: Option<RenderFn>,
}

/// Size of an ABI 1.0 descriptor (every field up to `idle`): the least a
/// 1.x host accepts. Fields after it are read only when `struct_size`
/// covers them.
pub const DESCRIPTOR_SIZE_1_0: usize = core::mem::offset_of!(Descriptor, render);

/// Name of the optional exported function listing a library's entry
/// modules (ABI 1.1), without NUL.
pub const XPLUGIN_MODULES_SYMBOL: &str = "xplugin_modules";
/// Most entry modules one library may list.
pub const XPLUGIN_MAX_MODULES: u32 = 64;

/// One entry module (`xplugin_module`): a descriptor of its own with a name
/// and a priority. Static data of the plugin.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Module {
    /// Size of this struct as the plugin knows it.
    pub struct_size: u32,
    /// Higher runs first (init, start); ties by name.
    pub priority: i32,
    /// Unique within the plugin: 1 to 64 bytes of `[A-Za-z0-9_.-]`.
    pub name: *const c_char,
    /// Its lifecycle; `name` and `version` equal the plugin's.
    pub descriptor: *const Descriptor,
}

/// The list `xplugin_modules` returns (`xplugin_module_list`).
#[repr(C)]
pub struct ModuleList {
    /// [`XPLUGIN_MAGIC`].
    pub magic: u32,
    /// ABI major the plugin was built against.
    pub abi_major: u16,
    /// ABI minor the plugin was built against.
    pub abi_minor: u16,
    /// Size of this struct as the plugin knows it.
    pub struct_size: u32,
    /// Number of entries in `modules` (1 to [`XPLUGIN_MAX_MODULES`]).
    pub count: u32,
    /// `count` pointers to modules.
    pub modules: *const *const Module,
}

// SAFETY: like `Descriptor`: immutable static data (integers, pointers to
// static strings, descriptors and modules) that nothing writes after the
// plugin returned it.
unsafe impl Sync for Module {}
// SAFETY: owns nothing; see `Descriptor`.
unsafe impl Send for Module {}
// SAFETY: as for `Module`.
unsafe impl Sync for ModuleList {}
// SAFETY: as for `Module`.
unsafe impl Send for ModuleList {}

/// The optional exported `xplugin_modules` function.
pub type ModulesFn = unsafe extern "C" fn() -> *const ModuleList;

// SAFETY: a descriptor is immutable static data: plain integers, pointers to
// static strings and function pointers. Nothing writes through it after the
// plugin's `xplugin_entry` returned it (the ABI), so shared reads from several
// threads cannot race.
unsafe impl Sync for Descriptor {}
// SAFETY: it owns nothing (no destructor, no thread-bound resource); moving
// one to another thread only moves the pointers, which stay valid there.
unsafe impl Send for Descriptor {}

impl Descriptor {
    /// Reads the name as UTF-8, if present and valid.
    ///
    /// # Safety
    /// `self.name` must be NULL or point to a NUL-terminated string that
    /// lives as long as `self`.
    pub unsafe fn name_str(&self) -> Option<&str> {
        if self.name.is_null() {
            return None;
        }
        // SAFETY: non-NULL, and NUL-terminated per this function's contract;
        // the string lives at least as long as `self` (static data).
        unsafe { CStr::from_ptr(self.name) }.to_str().ok()
    }

    /// Reads the version as UTF-8, if present and valid.
    ///
    /// # Safety
    /// `self.version` must be NULL or point to a NUL-terminated string that
    /// lives as long as `self`.
    pub unsafe fn version_str(&self) -> Option<&str> {
        if self.version.is_null() {
            return None;
        }
        // SAFETY: as in `name_str`, for `self.version`.
        unsafe { CStr::from_ptr(self.version) }.to_str().ok()
    }
}

impl fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Descriptor")
            .field("magic", &format_args!("{:#x}", self.magic))
            .field("abi_major", &self.abi_major)
            .field("abi_minor", &self.abi_minor)
            .field("struct_size", &self.struct_size)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Offsets and sizes of every ABI struct field, as this crate lays them out.
/// The `abi_layout` test prints the same table from C and compares.
pub fn layout_table() -> Vec<(&'static str, usize)> {
    use core::mem::{offset_of, size_of};
    vec![
        ("sizeof(xplugin_abi_tag)", size_of::<AbiTag>()),
        ("xplugin_abi_tag.kind", offset_of!(AbiTag, kind)),
        ("xplugin_abi_tag.reserved", offset_of!(AbiTag, reserved)),
        ("sizeof(xplugin_host_api)", size_of::<HostApi>()),
        ("xplugin_host_api.abi_major", offset_of!(HostApi, abi_major)),
        ("xplugin_host_api.abi_minor", offset_of!(HostApi, abi_minor)),
        ("xplugin_host_api.host", offset_of!(HostApi, host)),
        ("xplugin_host_api.log", offset_of!(HostApi, log)),
        (
            "xplugin_host_api.host_version",
            offset_of!(HostApi, host_version),
        ),
        ("xplugin_host_api.data_dir", offset_of!(HostApi, data_dir)),
        ("xplugin_host_api.publish", offset_of!(HostApi, publish)),
        ("xplugin_host_api.subscribe", offset_of!(HostApi, subscribe)),
        (
            "xplugin_host_api.unsubscribe",
            offset_of!(HostApi, unsubscribe),
        ),
        (
            "xplugin_host_api.register_service",
            offset_of!(HostApi, register_service),
        ),
        (
            "xplugin_host_api.find_service",
            offset_of!(HostApi, find_service),
        ),
        ("xplugin_host_api.set_busy", offset_of!(HostApi, set_busy)),
        ("sizeof(xplugin_descriptor)", size_of::<Descriptor>()),
        (
            "xplugin_descriptor.abi_major",
            offset_of!(Descriptor, abi_major),
        ),
        (
            "xplugin_descriptor.abi_minor",
            offset_of!(Descriptor, abi_minor),
        ),
        (
            "xplugin_descriptor.struct_size",
            offset_of!(Descriptor, struct_size),
        ),
        ("xplugin_descriptor.kind", offset_of!(Descriptor, kind)),
        ("xplugin_descriptor.name", offset_of!(Descriptor, name)),
        (
            "xplugin_descriptor.version",
            offset_of!(Descriptor, version),
        ),
        ("xplugin_descriptor.init", offset_of!(Descriptor, init)),
        ("xplugin_descriptor.start", offset_of!(Descriptor, start)),
        ("xplugin_descriptor.stop", offset_of!(Descriptor, stop)),
        (
            "xplugin_descriptor.destroy",
            offset_of!(Descriptor, destroy),
        ),
        (
            "xplugin_descriptor.reconfigure",
            offset_of!(Descriptor, reconfigure),
        ),
        ("xplugin_descriptor.step", offset_of!(Descriptor, step)),
        ("xplugin_descriptor.idle", offset_of!(Descriptor, idle)),
        ("xplugin_descriptor.render", offset_of!(Descriptor, render)),
        ("sizeof(xplugin_render_context)", size_of::<RenderContext>()),
        (
            "xplugin_render_context.toolkit",
            offset_of!(RenderContext, toolkit),
        ),
        (
            "xplugin_render_context.parent",
            offset_of!(RenderContext, parent),
        ),
        (
            "xplugin_render_context.width",
            offset_of!(RenderContext, width),
        ),
        (
            "xplugin_render_context.height",
            offset_of!(RenderContext, height),
        ),
        ("sizeof(xplugin_module)", size_of::<Module>()),
        ("xplugin_module.priority", offset_of!(Module, priority)),
        ("xplugin_module.name", offset_of!(Module, name)),
        ("xplugin_module.descriptor", offset_of!(Module, descriptor)),
        ("sizeof(xplugin_module_list)", size_of::<ModuleList>()),
        (
            "xplugin_module_list.abi_major",
            offset_of!(ModuleList, abi_major),
        ),
        (
            "xplugin_module_list.struct_size",
            offset_of!(ModuleList, struct_size),
        ),
        ("xplugin_module_list.count", offset_of!(ModuleList, count)),
        (
            "xplugin_module_list.modules",
            offset_of!(ModuleList, modules),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_spells_xplg_in_little_endian() {
        assert_eq!(&XPLUGIN_MAGIC.to_le_bytes(), b"XPLG");
    }

    #[test]
    fn tag_round_trips_through_bytes() {
        let tag = AbiTag::current(XPLUGIN_KIND_CLIENT);
        let mut le = Vec::new();
        le.extend_from_slice(&tag.magic.to_le_bytes());
        le.extend_from_slice(&tag.abi_major.to_le_bytes());
        le.extend_from_slice(&tag.abi_minor.to_le_bytes());
        le.extend_from_slice(&tag.kind.to_le_bytes());
        le.extend_from_slice(&tag.reserved.to_le_bytes());
        assert_eq!(AbiTag::from_bytes(&le, true), Some(tag));
        assert_eq!(AbiTag::from_bytes(&le[..15], true), None);
    }

    #[test]
    fn status_names_cover_every_code() {
        for s in -13..=0 {
            assert!(status_name(s).starts_with("XPLUGIN_"), "{s}");
        }
        assert_eq!(status_name(-99), "unknown error status");
    }
}
