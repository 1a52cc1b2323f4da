//! Static C strings for status codes, so C callers get text without any
//! allocation or ownership question.

use core::ffi::CStr;
use xplugin_abi::*;

/// Symbolic name; the same text as [`xplugin_abi::status_name`].
pub fn name(status: Status) -> &'static CStr {
    match status {
        XPLUGIN_OK => c"XPLUGIN_OK",
        XPLUGIN_ERR_FAILED => c"XPLUGIN_ERR_FAILED",
        XPLUGIN_ERR_INVALID_ARG => c"XPLUGIN_ERR_INVALID_ARG",
        XPLUGIN_ERR_NOT_FOUND => c"XPLUGIN_ERR_NOT_FOUND",
        XPLUGIN_ERR_NOT_IMPLEMENTED => c"XPLUGIN_ERR_NOT_IMPLEMENTED",
        XPLUGIN_ERR_NOT_READY => c"XPLUGIN_ERR_NOT_READY",
        XPLUGIN_ERR_CONFIG => c"XPLUGIN_ERR_CONFIG",
        XPLUGIN_ERR_DEPENDENCY => c"XPLUGIN_ERR_DEPENDENCY",
        XPLUGIN_ERR_DUPLICATE => c"XPLUGIN_ERR_DUPLICATE",
        XPLUGIN_ERR_NO_MEMORY => c"XPLUGIN_ERR_NO_MEMORY",
        XPLUGIN_ERR_IO => c"XPLUGIN_ERR_IO",
        XPLUGIN_ERR_TIMEOUT => c"XPLUGIN_ERR_TIMEOUT",
        XPLUGIN_ERR_PANIC => c"XPLUGIN_ERR_PANIC",
        XPLUGIN_ERR_UNAUTHORIZED => c"XPLUGIN_ERR_UNAUTHORIZED",
        s if s > 0 => c"positive status (reserved)",
        _ => c"unknown error status",
    }
}

/// One-line description, as in the comments of `xplugin.h`.
pub fn description(status: Status) -> &'static CStr {
    match status {
        XPLUGIN_OK => c"success",
        XPLUGIN_ERR_FAILED => c"generic failure; see the error text",
        XPLUGIN_ERR_INVALID_ARG => c"an argument was NULL, malformed or out of range",
        XPLUGIN_ERR_NOT_FOUND => c"topic, service or file not found",
        XPLUGIN_ERR_NOT_IMPLEMENTED => c"optional call not supported",
        XPLUGIN_ERR_NOT_READY => {
            c"not now: wrong lifecycle state, or a wait that would deadlock; retry later"
        }
        XPLUGIN_ERR_CONFIG => c"configuration rejected",
        XPLUGIN_ERR_DEPENDENCY => c"a required dependency or service is missing",
        XPLUGIN_ERR_DUPLICATE => c"a name (service, topic subscription) is taken",
        XPLUGIN_ERR_NO_MEMORY => c"allocation failed or a bound was reached",
        XPLUGIN_ERR_IO => c"file or device error",
        XPLUGIN_ERR_TIMEOUT => c"deadline missed",
        XPLUGIN_ERR_PANIC => c"the plugin panicked or threw; it is marked failed",
        XPLUGIN_ERR_UNAUTHORIZED => c"not allowed for this plugin",
        s if s > 0 => c"positive status codes are reserved",
        _ => c"unknown error status",
    }
}
