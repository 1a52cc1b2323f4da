//! uikit's implementation of the `uikit.widgets` service.
//!
//! The table has no instance pointer (its layout is fixed by the header), so
//! the widget list is process-wide; uikit is loaded once per process.

use crate::widgets_service::{WidgetsService, WIDGETS_SERVICE_VERSION};
use core::ffi::{c_char, CStr};
use std::sync::Mutex;
use xplugin_abi::{XPLUGIN_ERR_INVALID_ARG, XPLUGIN_ERR_NO_MEMORY, XPLUGIN_OK};

/// At most this many widgets: a plugin in a loop must not exhaust the pendant's memory.
const MAX_WIDGETS: usize = 1024;

/// One widget on the pendant screen.
#[derive(Debug, Clone)]
pub struct Widget {
    /// Plugin that added it.
    pub owner: String,
    /// Button text.
    pub label: String,
}

static WIDGETS: Mutex<Vec<Widget>> = Mutex::new(Vec::new());

/// The table registered with the host; static so it outlives every user.
pub static WIDGETS_SERVICE: WidgetsService = WidgetsService {
    struct_size: core::mem::size_of::<WidgetsService>() as u32,
    version: WIDGETS_SERVICE_VERSION,
    add_button,
    widget_count,
};

/// Removes every widget (called from `init` and `destroy`).
pub fn clear() {
    lock().clear();
}

/// A copy of the current widgets, for logging.
pub fn snapshot() -> Vec<Widget> {
    lock().clone()
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Widget>> {
    // A panic while holding the lock leaves a valid Vec; keep using it.
    WIDGETS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `add_button` of the widgets service table.
///
/// # Safety
/// `owner` and `label` must be NULL or NUL-terminated and valid for the call;
/// `out_widget_id` NULL or writable.
unsafe extern "C" fn add_button(
    owner: *const c_char,
    label: *const c_char,
    out_widget_id: *mut u32,
) -> i32 {
    if owner.is_null() || label.is_null() || out_widget_id.is_null() {
        return XPLUGIN_ERR_INVALID_ARG;
    }
    // SAFETY: both are non-NULL (checked above) and NUL-terminated and valid
    // for the call per this function's contract (uikit_widgets.h); the
    // borrowed strings are copied before it returns.
    let (owner, label) = unsafe { (CStr::from_ptr(owner), CStr::from_ptr(label)) };
    let (Ok(owner), Ok(label)) = (owner.to_str(), label.to_str()) else {
        return XPLUGIN_ERR_INVALID_ARG;
    };
    let mut widgets = lock();
    if widgets.len() >= MAX_WIDGETS {
        return XPLUGIN_ERR_NO_MEMORY;
    }
    widgets.push(Widget {
        owner: owner.to_string(),
        label: label.to_string(),
    });
    // SAFETY: non-NULL (checked above) and writable per this function's
    // contract. len <= MAX_WIDGETS, which fits u32.
    unsafe { *out_widget_id = widgets.len() as u32 };
    XPLUGIN_OK
}

extern "C" fn widget_count() -> u32 {
    lock().len() as u32
}
