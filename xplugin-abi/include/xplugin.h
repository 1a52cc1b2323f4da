/*
 * xplugin.h — the xplugin plugin ABI, version 1.
 *
 * One header for the one concept a plugin author needs: what a plugin exports
 * and what the host hands it. The Rust definitions in xplugin-abi/src/lib.rs
 * mirror this file; the test `abi_layout` in tests/ compiles this header with
 * the system C compiler and compares every size and field offset, so the two
 * cannot drift apart silently.
 *
 * Rules of the boundary
 * ---------------------
 * - Only fixed-width integers, `size_t`, `uint8_t` booleans, NUL-terminated
 *   UTF-8 strings and raw pointers cross it. No C++ or Rust types.
 * - Status codes are `int32_t`: 0 is success, negative values are errors
 *   (XPLUGIN_ERR_*). Positive values are reserved.
 * - Error text is written by the callee into a buffer the caller provides
 *   (`err`, `err_cap`), always NUL-terminated and truncated to fit. Nothing is
 *   allocated for it.
 * - Whoever allocates frees. Strings the host passes in are borrowed for the
 *   duration of the call unless stated otherwise. Pointers a plugin hands to
 *   the host (descriptor, names, service tables) must stay valid until the
 *   plugin's `destroy` returns; in practice they are statics.
 * - Structs evolve append-only. Each starts with `struct_size`; a reader uses
 *   a field only if `struct_size` covers it. A new ABI minor may append fields;
 *   a new ABI major may change anything, and the host refuses a major it does
 *   not know before running any code of the plugin.
 *
 * Discovery without loading
 * -------------------------
 * Every plugin (and the client-side runtime library) exports the data symbol
 * `xplugin_abi` (an xplugin_abi_tag). The host reads it, and the ELF/PE machine
 * type, straight from the file, so a library built for another ABI major or
 * another architecture is refused before dlopen runs any constructor.
 */
#ifndef XPLUGIN_H
#define XPLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define XPLUGIN_EXPORT __declspec(dllexport)
#else
#define XPLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/*
 * C linkage for definitions in a plugin's own source. Needed in C++, where a
 * namespace-scope `const` object otherwise has internal linkage (and would
 * not be exported at all) and functions get mangled names. A C++ plugin
 * defines its entry as
 *   XPLUGIN_EXTERN_C XPLUGIN_EXPORT const xplugin_descriptor *xplugin_entry(void) { ... }
 */
#ifdef __cplusplus
#define XPLUGIN_EXTERN_C extern "C"
#else
#define XPLUGIN_EXTERN_C
#endif

/* ---- identity -------------------------------------------------------- */

/** "XPLG" in little-endian byte order: the first field of every tag and descriptor. */
#define XPLUGIN_MAGIC 0x474C5058u
#define XPLUGIN_ABI_MAJOR 1
#define XPLUGIN_ABI_MINOR 0

/** Name of the exported entry function (see xplugin_entry_fn). */
#define XPLUGIN_ENTRY_SYMBOL "xplugin_entry"
/** Name of the exported data symbol holding the xplugin_abi_tag. */
#define XPLUGIN_ABI_TAG_SYMBOL "xplugin_abi"

/** What a library is. A controller host refuses client plugins and vice versa. */
#define XPLUGIN_KIND_CONTROLLER 1u
#define XPLUGIN_KIND_CLIENT 2u
/** The client-side ABI runtime library (xplugin.so / libxplugin.so / xplugin.dll). */
#define XPLUGIN_KIND_RUNTIME 3u

/* ---- status codes (in the spirit of the Logi SDK table) --------------- */

typedef int32_t xplugin_status;

#define XPLUGIN_OK 0
#define XPLUGIN_ERR_FAILED -1          /* generic failure; see the error text */
#define XPLUGIN_ERR_INVALID_ARG -2     /* an argument was NULL, malformed or out of range */
#define XPLUGIN_ERR_NOT_FOUND -3       /* topic, service or file not found */
#define XPLUGIN_ERR_NOT_IMPLEMENTED -4 /* optional call not supported */
#define XPLUGIN_ERR_NOT_READY -5       /* called in the wrong lifecycle state */
#define XPLUGIN_ERR_CONFIG -6          /* configuration rejected */
#define XPLUGIN_ERR_DEPENDENCY -7      /* a required dependency or service is missing */
#define XPLUGIN_ERR_DUPLICATE -8       /* a name (service, topic subscription) is taken */
#define XPLUGIN_ERR_NO_MEMORY -9       /* allocation failed or a bound was reached */
#define XPLUGIN_ERR_IO -10             /* file or device error */
#define XPLUGIN_ERR_TIMEOUT -11        /* deadline missed */
#define XPLUGIN_ERR_PANIC -12          /* the plugin panicked / threw; it is marked failed */
#define XPLUGIN_ERR_UNAUTHORIZED -13   /* not allowed for this plugin */

/* ---- log levels ------------------------------------------------------- */

#define XPLUGIN_LOG_ERROR 1u
#define XPLUGIN_LOG_WARN 2u
#define XPLUGIN_LOG_INFO 3u
#define XPLUGIN_LOG_DEBUG 4u
#define XPLUGIN_LOG_TRACE 5u

/* ---- the tag readable without loading --------------------------------- */

/** Exported as `const xplugin_abi_tag xplugin_abi`; must be plain constant data. */
typedef struct xplugin_abi_tag {
  uint32_t magic;     /* XPLUGIN_MAGIC */
  uint16_t abi_major; /* XPLUGIN_ABI_MAJOR the library was built against */
  uint16_t abi_minor; /* XPLUGIN_ABI_MINOR the library was built against */
  uint32_t kind;      /* XPLUGIN_KIND_* */
  uint32_t reserved;  /* 0 */
} xplugin_abi_tag;

/** Defines the tag in a C or C++ plugin: `XPLUGIN_DEFINE_ABI_TAG(XPLUGIN_KIND_CONTROLLER);` */
#define XPLUGIN_DEFINE_ABI_TAG(kind_)                                          \
  XPLUGIN_EXTERN_C XPLUGIN_EXPORT const xplugin_abi_tag xplugin_abi = {       \
      XPLUGIN_MAGIC, XPLUGIN_ABI_MAJOR, XPLUGIN_ABI_MINOR, (kind_), 0u}

/* ---- host services ----------------------------------------------------- */

/** Opaque per-plugin host context. The host owns it; it outlives the plugin. */
typedef struct xplugin_host xplugin_host;

/**
 * Called for each message published on a subscribed topic. `topic` and `data`
 * are borrowed for the duration of the call. Runs on the publisher's thread.
 */
typedef void (*xplugin_message_fn)(void *user, const char *topic,
                                   const uint8_t *data, size_t len);

/**
 * The services the host offers a plugin, passed to `init`. Owned by the host
 * and valid until the plugin's `destroy` returns. All strings are
 * NUL-terminated UTF-8.
 */
typedef struct xplugin_host_api {
  uint32_t struct_size; /* sizeof(xplugin_host_api) as the host knows it */
  uint16_t abi_major;
  uint16_t abi_minor;
  xplugin_host *host; /* pass back as the first argument of every call */

  /** Log a line through the host (syslog / stderr), tagged with the plugin name. */
  void (*log)(xplugin_host *host, uint32_t level, const char *message);
  /** The host's HMI or controller version, e.g. "3.2.0". Host-owned, static. */
  const char *(*host_version)(xplugin_host *host);
  /** Absolute path of this plugin's own writable data directory. Host-owned. */
  const char *(*data_dir)(xplugin_host *host);

  /** Publish `len` bytes on `topic`; delivered synchronously to subscribers. */
  xplugin_status (*publish)(xplugin_host *host, const char *topic,
                            const uint8_t *data, size_t len);
  /** Subscribe `callback(user, ...)` to `topic`; writes an id for unsubscribe. */
  xplugin_status (*subscribe)(xplugin_host *host, const char *topic,
                              xplugin_message_fn callback, void *user,
                              uint64_t *out_subscription);
  xplugin_status (*unsubscribe)(xplugin_host *host, uint64_t subscription);

  /**
   * Register an interface under `name` (unique per host). `iface` points to a
   * plugin-owned table (usually a static struct of function pointers) whose
   * layout is agreed between provider and users and versioned by
   * `iface_version`. It must stay valid until the provider's `destroy`.
   */
  xplugin_status (*register_service)(xplugin_host *host, const char *name,
                                     uint32_t iface_version, const void *iface);
  /**
   * Find a service registered by this plugin's dependencies (direct or
   * transitive `depend`). Writes the table and its version. A service of a
   * plugin that is not a declared dependency is XPLUGIN_ERR_NOT_FOUND: declare
   * the dependency so that the provider is initialised first.
   */
  xplugin_status (*find_service)(xplugin_host *host, const char *name,
                                 const void **out_iface,
                                 uint32_t *out_iface_version);
} xplugin_host_api;

/* ---- the plugin descriptor --------------------------------------------- */

/**
 * Lifecycle, called by the host in this order:
 *   init (all plugins in dependency order) -> start (all, in order)
 *   -> [step | idle]* -> stop (reverse order) -> destroy (reverse order).
 * Client stages map as: init = init, after-init = start, idle = idle,
 * detach = stop + destroy.
 *
 * `init` receives the resolved configuration as JSON (`config_json`,
 * `config_len` bytes, NUL-terminated as well) and the host services table,
 * and writes an opaque instance pointer that every later call receives.
 * `destroy` frees what `init` allocated; it cannot fail.
 */
typedef struct xplugin_descriptor {
  uint32_t magic; /* XPLUGIN_MAGIC */
  uint16_t abi_major;
  uint16_t abi_minor;
  uint32_t struct_size; /* sizeof(xplugin_descriptor) as the plugin knows it */
  uint32_t kind;        /* XPLUGIN_KIND_CONTROLLER or XPLUGIN_KIND_CLIENT */
  const char *name;     /* must equal the manifest name */
  const char *version;  /* plugin version, e.g. "1.0.2.6" */

  xplugin_status (*init)(const xplugin_host_api *host, const char *config_json,
                         size_t config_len, void **out_instance, char *err,
                         size_t err_cap);
  xplugin_status (*start)(void *instance, char *err, size_t err_cap);
  xplugin_status (*stop)(void *instance, char *err, size_t err_cap);
  void (*destroy)(void *instance);
  /** Optional (NULL): apply a new configuration while running. */
  xplugin_status (*reconfigure)(void *instance, const char *config_json,
                                size_t config_len, char *err, size_t err_cap);
  /**
   * Optional (NULL), controller plugins: the cyclic hook, called on the
   * cyclic thread. Must not block or allocate. `cycle` counts from 0,
   * `now_ns` is CLOCK_MONOTONIC in nanoseconds.
   */
  xplugin_status (*step)(void *instance, uint64_t cycle, uint64_t now_ns);
  /** Optional (NULL), client plugins: the periodic idle hook on the UI thread. */
  xplugin_status (*idle)(void *instance);
} xplugin_descriptor;

/**
 * The one entry point: `XPLUGIN_EXTERN_C XPLUGIN_EXPORT const xplugin_descriptor *xplugin_entry(void);`
 * Returns a pointer to a static descriptor. Must not allocate or start threads.
 */
typedef const xplugin_descriptor *(*xplugin_entry_fn)(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* XPLUGIN_H */
