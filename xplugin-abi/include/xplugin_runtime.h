/*
 * xplugin_runtime.h — the client-side xplugin runtime library.
 *
 * Client plugins are shipped with the runtime beside them
 * (`libxplugin.so` / `xplugin.so` on Linux, `xplugin.dll` on Windows). It
 * exports the `xplugin_abi` tag with kind XPLUGIN_KIND_RUNTIME, which the
 * pendant's loader reads from the file (without loading it) to check that the
 * bundled runtime speaks an ABI major it knows, and the small helpers below,
 * which a C or C++ client plugin may link against (`-lxplugin`).
 *
 * Every string returned is static: never free it. Every function is
 * thread-safe, touches no host state and may be called at any time, from
 * any thread (also before `init` and inside `step`: none of them allocates,
 * blocks or takes a lock).
 */
#ifndef XPLUGIN_RUNTIME_H
#define XPLUGIN_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "xplugin.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define XPLUGIN_RUNTIME_API __declspec(dllimport)
#else
#define XPLUGIN_RUNTIME_API
#endif

/** Version of the runtime library, e.g. "0.1.0". Static. */
XPLUGIN_RUNTIME_API const char *xplugin_runtime_version(void);

/**
 * ABI version the runtime was built against, as (major << 16) | minor,
 * e.g. 0x00010000 for 1.0.
 */
XPLUGIN_RUNTIME_API uint32_t xplugin_runtime_abi_version(void);

/**
 * Symbolic name of a status code, e.g. "XPLUGIN_ERR_CONFIG"; for codes it
 * does not know, "unknown error status" (negative) or
 * "positive status (reserved)". Static, never NULL.
 */
XPLUGIN_RUNTIME_API const char *xplugin_status_name(xplugin_status status);

/**
 * One-line English description of a status code, e.g. "configuration
 * rejected". Static, never NULL.
 */
XPLUGIN_RUNTIME_API const char *xplugin_status_text(xplugin_status status);

/**
 * Copies `message` into the caller's error buffer the way the ABI requires:
 * truncated to fit (on a UTF-8 character boundary), always NUL-terminated.
 * Does nothing if `err` is NULL or `err_cap` is 0; a NULL `message` writes
 * an empty string. Returns the number of bytes written, without the NUL.
 */
XPLUGIN_RUNTIME_API size_t xplugin_write_error(char *err, size_t err_cap,
                                               const char *message);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* XPLUGIN_RUNTIME_H */
