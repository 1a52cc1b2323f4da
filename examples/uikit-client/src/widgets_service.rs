//! The `uikit.widgets` service: the table client plugins use to add widgets
//! to the pendant UI. C declaration: `include/uikit_widgets.h`.
//!
//! This file is shared by path with the plugindemo client plugin (the user
//! of the service) and the `abi_layout` test, so it holds only the layout
//! and its constants; the provider's functions live in `widgets.rs`.

use core::ffi::c_char;

/// Name under which uikit registers the table.
pub const WIDGETS_SERVICE_NAME: &str = "uikit.widgets";
/// Interface version (`UIKIT_WIDGETS_VERSION`), also the `iface_version`.
pub const WIDGETS_SERVICE_VERSION: u32 = 1;

/// `uikit_widgets_service` in C.
#[repr(C)]
pub struct WidgetsService {
    /// Size of this struct as the provider knows it.
    pub struct_size: u32,
    /// [`WIDGETS_SERVICE_VERSION`].
    pub version: u32,
    /// Adds a button; returns an xplugin status and writes the widget id.
    pub add_button: unsafe extern "C" fn(
        owner: *const c_char,
        label: *const c_char,
        out_widget_id: *mut u32,
    ) -> i32,
    /// Number of widgets added so far.
    pub widget_count: extern "C" fn() -> u32,
}
