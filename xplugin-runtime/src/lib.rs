//! The client-side xplugin runtime library: `libxplugin.so` on Linux,
//! `xplugin.dll` on Windows, shipped inside every client plugin folder.
//!
//! It exports the `xplugin_abi` tag with kind `XPLUGIN_KIND_RUNTIME` — the
//! pendant's loader reads it from the file, before loading anything, to
//! check that the bundled runtime speaks an ABI major the pendant knows — and
//! the small C helpers declared in `xplugin-abi/include/xplugin_runtime.h`.
//! Every string it returns is a static: callers never free anything.
#![deny(missing_docs)]

mod status_text;

use core::ffi::{c_char, CStr};
use xplugin_abi::{AbiTag, Status, XPLUGIN_ABI_MAJOR, XPLUGIN_ABI_MINOR, XPLUGIN_KIND_RUNTIME};

/// The ABI tag read from the file by the loader (never through this symbol
/// at run time: a client plugin exports its own `xplugin_abi`).
// SAFETY (no_mangle): the ABI's reserved tag name, defined once in this
// library, with the `AbiTag` layout the loader reads from the file.
#[unsafe(no_mangle)]
#[used]
#[allow(non_upper_case_globals)]
pub static xplugin_abi: AbiTag = AbiTag::current(XPLUGIN_KIND_RUNTIME);

/// The runtime's version, NUL-terminated.
const RUNTIME_VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(version) => version,
        Err(_) => panic!("CARGO_PKG_VERSION contains a NUL byte"),
    };

/// `xplugin_runtime_version`: the runtime's version, a static string.
// SAFETY (no_mangle) for this and the exports below: each name is declared
// once, in xplugin_runtime.h, with exactly this signature, and no other
// symbol of this library or of the C runtime uses the `xplugin_` prefix.
#[unsafe(no_mangle)]
pub extern "C" fn xplugin_runtime_version() -> *const c_char {
    RUNTIME_VERSION.as_ptr()
}

/// `xplugin_runtime_abi_version`: `(major << 16) | minor` of the ABI the
/// runtime was built against.
#[unsafe(no_mangle)]
pub extern "C" fn xplugin_runtime_abi_version() -> u32 {
    (u32::from(XPLUGIN_ABI_MAJOR) << 16) | u32::from(XPLUGIN_ABI_MINOR)
}

/// `xplugin_status_name`: symbolic name of a status code, a static string.
#[unsafe(no_mangle)]
pub extern "C" fn xplugin_status_name(status: Status) -> *const c_char {
    status_text::name(status).as_ptr()
}

/// `xplugin_status_text`: one-line description of a status code, a static string.
#[unsafe(no_mangle)]
pub extern "C" fn xplugin_status_text(status: Status) -> *const c_char {
    status_text::description(status).as_ptr()
}

/// `xplugin_write_error`: copies `message` into an error buffer, truncated on
/// a UTF-8 boundary and NUL-terminated; returns the bytes written.
///
/// # Safety
/// `err` must be NULL or writable for `err_cap` bytes; `message` must be NULL
/// or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn xplugin_write_error(
    err: *mut c_char,
    err_cap: usize,
    message: *const c_char,
) -> usize {
    if err.is_null() || err_cap == 0 {
        return 0;
    }
    let bytes = if message.is_null() {
        &[][..]
    } else {
        // SAFETY: non-NULL, and NUL-terminated and valid for the call per
        // this function's contract.
        unsafe { CStr::from_ptr(message) }.to_bytes()
    };
    let n = utf8_prefix_len(bytes, err_cap - 1);
    // SAFETY: `n <= err_cap - 1`, so the `n` bytes and the NUL at `n` fit in
    // the `err_cap` writable bytes at `err` (this function's contract); the
    // message and the caller's buffer are distinct objects per the contract,
    // so the copy does not overlap.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), err.cast::<u8>(), n);
        *err.add(n) = 0;
    }
    n
}

/// Longest prefix of `bytes` of at most `max` bytes that does not end inside
/// a UTF-8 sequence. Bytes that are not UTF-8 at all are copied as they are.
fn utf8_prefix_len(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    let mut n = max;
    // Step back over continuation bytes (10xxxxxx) to the start of the
    // character that would be cut, and cut before it.
    while n > 0 && bytes.get(n).is_some_and(|b| b & 0xC0 == 0x80) {
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a string the runtime returned (tests only pass those).
    fn text(p: *const c_char) -> &'static str {
        // SAFETY: every caller passes a pointer the runtime returned (static,
        // NUL-terminated) or a local buffer `xplugin_write_error` just
        // NUL-terminated and which outlives the use.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap()
    }

    #[test]
    fn version_and_abi_are_this_build() {
        assert_eq!(text(xplugin_runtime_version()), env!("CARGO_PKG_VERSION"));
        assert_eq!(xplugin_runtime_abi_version(), 0x0001_0001);
        assert_eq!(xplugin_abi.kind, XPLUGIN_KIND_RUNTIME);
    }

    #[test]
    fn status_strings_match_the_abi_crate() {
        for status in -20..=3 {
            assert_eq!(
                text(xplugin_status_name(status)),
                xplugin_abi::status_name(status)
            );
            assert!(!text(xplugin_status_text(status)).is_empty());
        }
        assert_eq!(
            text(xplugin_status_text(xplugin_abi::XPLUGIN_ERR_CONFIG)),
            "configuration rejected"
        );
    }

    #[test]
    fn write_error_truncates_on_a_character_boundary() {
        let mut buf = [0x55 as c_char; 8];
        // "abcdé" is 6 bytes; with room for 5 bytes + NUL the é must not be split.
        let msg = c"abcd\u{e9}";
        // SAFETY: `buf` is 8 writable bytes, at least the `err_cap` passed;
        // `msg` is a NUL-terminated literal; NULLs are what the function
        // must handle.
        let n = unsafe { xplugin_write_error(buf.as_mut_ptr(), 6, msg.as_ptr()) };
        assert_eq!(n, 4);
        assert_eq!(text(buf.as_ptr()), "abcd");
        // SAFETY: as above.
        let n = unsafe { xplugin_write_error(buf.as_mut_ptr(), 8, msg.as_ptr()) };
        assert_eq!(n, 6);
        assert_eq!(text(buf.as_ptr()), "abcd\u{e9}");
        // SAFETY: as above.
        let n = unsafe { xplugin_write_error(buf.as_mut_ptr(), 8, core::ptr::null()) };
        assert_eq!((n, buf[0]), (0, 0));
        assert_eq!(
            // SAFETY: as above.
            unsafe { xplugin_write_error(core::ptr::null_mut(), 8, msg.as_ptr()) },
            0
        );
    }
}
