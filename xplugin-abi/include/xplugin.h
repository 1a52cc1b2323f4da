/*
 * xplugin.h — the xplugin plugin ABI, version 1.
 *
 * One header for the one concept a plugin author needs: what a plugin exports
 * and what the host hands it. The Rust definitions in xplugin-abi/src/lib.rs
 * mirror this file; the test `abi_layout` in tests/ compiles this header with
 * the system C compiler and compares every size and field offset, so the two
 * cannot drift apart silently.
 *
 * The companion document docs/abi.md (in the xplugin repository) holds what
 * does not fit a header: the plugin folder and manifest rules a vendor must
 * follow, the same thread tables as below with room for the rows later host
 * versions add, and the planned ABI 1.1 additions. Each function below is
 * documented the way wasmtime documents its C API: what every pointer
 * parameter must be and who owns it for how long, which thread calls it or
 * may call it, and what an error means.
 *
 * Rules of the boundary
 * ---------------------
 * - Only fixed-width integers, `size_t`, `uint8_t` booleans, NUL-terminated
 *   UTF-8 strings and raw pointers cross it. No C++ or Rust types.
 * - Status codes are `int32_t`: 0 is success, negative values are errors
 *   (XPLUGIN_ERR_*). Positive values are reserved.
 * - Error text is written by the callee into a buffer the caller provides
 *   (`err`, `err_cap`), always NUL-terminated and truncated to fit. Nothing is
 *   allocated for it. The host's buffers are 1024 bytes; `err` is never NULL
 *   when the host calls you, but a plugin should cope with NULL or 0.
 * - Whoever allocates frees. Strings the host passes in are borrowed for the
 *   duration of the call unless stated otherwise: copy what you keep.
 *   Pointers a plugin hands to the host (descriptor, names, service tables,
 *   callbacks and their `user`) must stay valid for as long as each function
 *   below says; in practice they are statics or live in the instance.
 * - A library is never unloaded (dlclose is never called), so function
 *   pointers and static data of a plugin stay valid for the whole process.
 * - Structs evolve append-only. Each starts with `struct_size`; a reader uses
 *   a field only if `struct_size` covers it (a plugin checks
 *   `host->struct_size` before it uses a host function a later minor
 *   appended). A new ABI minor may append fields; a new ABI major may change
 *   anything, and the host refuses a major it does not know before running
 *   any code of the plugin.
 *
 * Discovery without loading
 * -------------------------
 * Every plugin (and the client-side runtime library) exports the data symbol
 * `xplugin_abi` (an xplugin_abi_tag). The host reads it, and the ELF/PE machine
 * type, straight from the file, so a library built for another ABI major or
 * another architecture is refused before dlopen runs any constructor. Only
 * then is the library opened, with RTLD_NOW | RTLD_LOCAL: every undefined
 * symbol must resolve at load time, and a plugin's symbols are never visible
 * to other plugins (export only `xplugin_abi` and `xplugin_entry`: build with
 * -fvisibility=hidden and mark those two XPLUGIN_EXPORT).
 *
 * Packaging (the full rules: docs/abi.md, section 1)
 * ---------------------------------------------------
 * controller.zip/NAME/{NAME.json, NAME.lic, NAME.so} and
 * client.zip/NAME/{NAME.json, NAME.lic, NAME.so and/or NAME.dll, the xplugin
 * runtime libxplugin.so | xplugin.so | xplugin.dll beside it}. The folder
 * name, the manifest's "name", every file stem and the descriptor's `name`
 * are equal, case-sensitively; the descriptor's `version` equals the
 * manifest's numerically; the license covers every file that can hold code.
 *
 * Threads: which host thread calls into a plugin
 * ----------------------------------------------
 * docs/abi.md keeps the same table and says which host version brought each
 * row.
 *
 *   call             controller host                  client (pendant) host
 *                    `xplugin-controller boot`/`run`  `xplugin-client run`
 *   ---------------  -------------------------------  -----------------------------
 *   xplugin_entry    main thread, once, after dlopen  main thread, once
 *   xplugin_modules  main thread, once, after dlopen  main thread, once
 *   (1.1, optional)  (entry modules: below)
 *   init             main, every plugin in load order main, same
 *   start            main, load order, after every    main, same; only enabled
 *                    init returned                    plugins (manifest, `enable`)
 *   step             the cycle thread (xplugin-cycle; never
 *                    SCHED_FIFO when configured),
 *                    every cycle, in load order, only
 *                    between start and stop
 *   render (1.1)     never                            main, once per start, after
 *                                                     every start, load order
 *   idle             never                            main, every idle round, in
 *                                                     load order
 *   stop             main, reverse load order, after  main, same
 *                    the cycle thread stopped (or
 *                    after the cycle took the plugin
 *                    out: over budget)
 *   destroy          main, reverse load order, after  main, same
 *                    every stop
 *   reconfigure      the daemon's main thread, on     not called by this host
 *                    `config set`, only while the     version (the pendant
 *                    plugin runs and never during its stores values for the
 *                    step: the cycle thread skips its next start)
 *                    turns until reconfigure returns
 *                    (the others keep their cycle)
 *   message callback a message published from `step`: the service thread
 *                    (xplugin-service), after `step` returned; any other
 *                    publish: the publishing thread, inside its `publish`
 *   message callback the link's connection    the bridge thread
 *   for a message    thread (xplugin-link-    (xplugin-bridge)
 *   from the other   conn)
 *   computer (the manifest's `bridge`; also the host's `xplugin/link`
 *   topic, "up PEER" / "down REASON", docs/link.md "Plugin messages")
 *
 * The host makes at most one lifecycle call into an instance at a time:
 * init, start, step or idle, stop, destroy and reconfigure never overlap
 * for one plugin. Message callbacks are not lifecycle
 * calls: one can run during another of the plugin's calls (on the service
 * thread while your `step` runs on the cycle thread; or reached from a
 * publish made inside your own lifecycle call) or, when some plugin
 * publishes from a thread of its own, on that thread. The host does not
 * serialise deliveries; a callback that can be reached from two threads
 * must be thread-safe, and a controller plugin shares state between its
 * callbacks and its `step` with atomics or lock-free structures, never with
 * a lock `step` would wait on.
 *
 * Threads: which host function a plugin may call from where
 * ---------------------------------------------------------
 * Every function of xplugin_host_api may be called from any thread,
 * including threads the plugin started, from the moment `init` is entered
 * until `destroy` returns. Never after a failed `init` returned, and never
 * after `destroy` returned. Inside particular calls:
 *
 *   host function     in init/start/stop  in step          in idle  in a message   in destroy
 *                                         (cycle thread)            callback
 *   ----------------  ------------------  ---------------  -------  -------------  -------------
 *   log               yes                 yes, queued (*)  yes      yes            yes
 *   host_version      yes                 yes              yes      yes            yes
 *   data_dir          yes                 yes              yes      yes            yes
 *   publish           yes                 yes, queued (*)  yes      yes (nested)   yes
 *   subscribe         yes                 NOT_READY (***)  yes      yes            no (**)
 *   unsubscribe       yes                 NOT_READY (***)  yes      yes, own too   NOT_FOUND
 *   register_service  yes (init: best)    NOT_READY (***)  yes      yes            no (**)
 *   find_service      yes                 NOT_READY (***)  yes      yes            yes
 *   set_busy (1.1)    yes                 yes              yes      yes            yes
 *
 *   `render` (1.1) allows what `idle` allows.
 *
 *   (*)  On the cycle thread `log` and `publish` never block, allocate or
 *        make a system call: the line or message is copied into a
 *        fixed-capacity ring created before the first cycle and handed to
 *        the service thread, which writes the line and delivers the message
 *        (so subscribers' callbacks run there, not inside your `step`). A
 *        log line longer than 240 bytes is cut; a message payload over
 *        1024 bytes is refused with XPLUGIN_ERR_NO_MEMORY; a full ring drops
 *        the line or message and counts the drop (status, `timing.drops`;
 *        publish still returns XPLUGIN_OK). host_version and data_dir only
 *        read.
 *   (**) The host removed the plugin's subscriptions and services just before
 *        `destroy`; what `destroy` adds would not be removed again.
 *   (***) These take the bus lock, so the cycle thread may not call them:
 *        they return XPLUGIN_ERR_NOT_READY there and change nothing. Call
 *        them from init or start and keep what you need.
 *   "nested": a publish from inside a callback is delivered before it
 *        returns, to every current subscriber (this callback included): up
 *        to 16 nested deliveries per thread, beyond which publish returns
 *        XPLUGIN_ERR_NO_MEMORY.
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
#define XPLUGIN_ABI_MINOR 1

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
#define XPLUGIN_ERR_NOT_READY -5       /* not now: wrong state, or a wait would deadlock */
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

/**
 * Opaque per-plugin host context: what the host knows about this plugin
 * (its name, data directory, dependencies). Owned by the host; valid from
 * `init` until the plugin's `destroy` returns. Pass `host->host` back as the
 * first argument of every host function; it identifies the calling plugin.
 */
typedef struct xplugin_host xplugin_host;

/**
 * A message callback, registered with `subscribe`.
 *
 * - `user`: the pointer given to `subscribe`, passed back unchanged. The host
 *   never dereferences it.
 * - `topic`: the topic the message was published on (NUL-terminated UTF-8).
 *   Host-owned, borrowed for the duration of the call.
 * - `data`, `len`: the message bytes, borrowed for the duration of the call;
 *   `data` may be NULL when `len` is 0. Copy what you keep.
 *
 * Thread: the publisher's, inside its `publish` call (see "Threads" above):
 * on the main thread when the publish came from a lifecycle call, on a
 * plugin's own thread otherwise; possibly on several threads at once.
 *
 * Inside the callback every host function may be called (see the table
 * above), in particular:
 * - `unsubscribe` of this very subscription: returns XPLUGIN_OK at once (it
 *   does not wait for the delivery that is calling it); the callback then
 *   gets no further message, and this call may finish normally. `user` must
 *   stay valid until it has returned.
 * - `unsubscribe` of another subscription: as from anywhere else (waits for
 *   that subscription's deliveries on other threads).
 * - `subscribe`: the new subscription gets the next message published on its
 *   topic, not the one being delivered now.
 * - `publish`: delivered (nested) before `publish` returns, to every current
 *   subscriber of that topic including this callback, at most 16 nested
 *   deliveries deep per thread.
 *
 * The callback returns nothing; it must not unwind (C++ exceptions, Rust
 * panics) into the host. It should be short: it runs inside the publisher's
 * call.
 */
typedef void (*xplugin_message_fn)(void *user, const char *topic,
                                   const uint8_t *data, size_t len);

/**
 * The services the host offers a plugin, passed to `init`.
 *
 * Ownership and lifetime: the table, every function in it and every string
 * it returns are owned by the host and stay valid and unchanged from the
 * moment `init` is entered until the plugin's `destroy` returns (also while
 * the plugin is stopped). After a failed `init` the plugin must not use them.
 * Keep the pointer `init` received; do not copy the struct (a later minor
 * appends fields the copy would cut off).
 *
 * Every function is thread-safe (see "Threads" above). Functions that take
 * strings require NUL-terminated UTF-8, borrowed for the call only; the host
 * copies what it keeps. A NULL, empty, non-UTF-8 or longer than 256 bytes
 * topic or service name is XPLUGIN_ERR_INVALID_ARG. No function of the table
 * is NULL in a host of ABI 1.0 or later.
 */
typedef struct xplugin_host_api {
  uint32_t struct_size; /* sizeof(xplugin_host_api) as the host knows it */
  uint16_t abi_major;
  uint16_t abi_minor;
  xplugin_host *host; /* pass back as the first argument of every call */

  /**
   * Logs a line through the host (syslog and/or stderr), prefixed with the
   * plugin's name.
   *
   * - `level`: XPLUGIN_LOG_*; any other value logs at trace level.
   * - `message`: NUL-terminated text (invalid UTF-8 is replaced), borrowed
   *   for the call. NULL logs nothing.
   *
   * Never fails. Not real-time safe in this host version (it may block on
   * syslog): in `step`, log only on rare events.
   */
  void (*log)(xplugin_host *host, uint32_t level, const char *message);

  /**
   * The host's HMI (client) or controller version, e.g. "3.2.0": the version
   * the manifest's min_hmi_version / min_controller_version were checked
   * against.
   *
   * Returns a host-owned NUL-terminated string, valid until the plugin's
   * `destroy` returns; never NULL in this host. Do not free it.
   */
  const char *(*host_version)(xplugin_host *host);

  /**
   * Absolute path of this plugin's own writable data directory,
   * `<install root>/data/<plugin name>`.
   *
   * - It exists (created with mode 0700) before `init` is called.
   * - It is outside the installed generations, so it survives upgrades,
   *   downgrades, rollbacks, disable and enable: every version of the
   *   plugin sees the same directory (migrate what an older version wrote).
   *   In this host version `remove` does not delete it either.
   * - No other plugin is given it.
   *
   * Returns a host-owned NUL-terminated string, valid until the plugin's
   * `destroy` returns; never NULL in this host. Do not free it.
   */
  const char *(*data_dir)(xplugin_host *host);

  /**
   * Publishes `len` bytes on `topic`, synchronously: every callback
   * subscribed to `topic` when `publish` is called (in subscription order,
   * on the calling thread) has returned when `publish` returns.
   *
   * - `topic`: 1 to 256 bytes of NUL-terminated UTF-8, borrowed for the
   *   call. Topics are global to one host (every plugin of the controller,
   *   or every plugin of the pendant; in this host version no message
   *   crosses between the two) and not scoped by dependency: any plugin may
   *   publish or subscribe on any topic. Prefix topics with the plugin name.
   * - `data`: `len` readable bytes, borrowed for the call (subscribers see
   *   the same bytes, not a copy); may be NULL when `len` is 0.
   *
   * Delivery does not depend on the subscribers' lifecycle state: a
   * subscription receives messages from the moment `subscribe` returns
   * (during `init`, before `start`, after `stop`) until it is unsubscribed or
   * the host removes it (failed `init` or `start`, or just before `destroy`).
   * To get messages only while running, subscribe in `start` and unsubscribe
   * in `stop`.
   *
   * Returns XPLUGIN_OK (also when nobody is subscribed);
   * XPLUGIN_ERR_INVALID_ARG for a bad topic or NULL `data` with `len` > 0;
   * XPLUGIN_ERR_NO_MEMORY when called from inside 16 nested deliveries on
   * this thread (nothing is delivered).
   */
  xplugin_status (*publish)(xplugin_host *host, const char *topic,
                            const uint8_t *data, size_t len);

  /**
   * Subscribes `callback(user, ...)` to `topic`.
   *
   * - `topic`: as for `publish`; copied.
   * - `callback`: non-NULL. Must stay callable until the subscription is
   *   removed (functions of a library always are: it is never unloaded).
   * - `user`: any value, passed back to `callback`; owned by the plugin. It
   *   must stay valid until `unsubscribe` of this subscription returned
   *   XPLUGIN_OK, or, for a subscription never unsubscribed, until the
   *   plugin's `destroy` is called (the host removes it just before and
   *   waits for running deliveries). The host never dereferences it.
   * - `out_subscription`: NULL, or where the host writes the subscription id
   *   (never 0) for `unsubscribe`. It is written before the subscription can
   *   receive its first message, so a callback on another thread may read
   *   it; 0 is written when the call fails. With NULL, the subscription lasts
   *   until the host removes it.
   *
   * Returns XPLUGIN_OK; XPLUGIN_ERR_INVALID_ARG for a bad topic or NULL
   * callback; XPLUGIN_ERR_NO_MEMORY when the host holds 16384 subscriptions.
   * Subscribing from inside a message callback is allowed; the new
   * subscription gets the next message, not the one being delivered.
   */
  xplugin_status (*subscribe)(xplugin_host *host, const char *topic,
                              xplugin_message_fn callback, void *user,
                              uint64_t *out_subscription);

  /**
   * Removes a subscription this plugin made.
   *
   * On XPLUGIN_OK no new delivery to it starts, and no delivery to it is
   * still running on another thread: `unsubscribe` waits for those, so
   * `user` may be freed right after it returns. Called from inside this
   * subscription's own callback, it does not wait for that delivery (the
   * caller's own): the callback goes on until it returns, and `user` must
   * stay valid until then. Because it may wait, do not call it while holding
   * a lock that the subscription's callback takes.
   *
   * Returns XPLUGIN_OK; XPLUGIN_ERR_NOT_FOUND if the id is not a live
   * subscription of this plugin (never made, already removed, or removed by
   * the host: in `destroy` every subscription already is);
   * XPLUGIN_ERR_NOT_READY if waiting would deadlock: the subscription's
   * callback is running on another thread that is itself waiting, in an
   * `unsubscribe`, for a callback running on this thread. Nothing changed
   * then: the subscription is still active; retry after the current callback
   * returned.
   */
  xplugin_status (*unsubscribe)(xplugin_host *host, uint64_t subscription);

  /**
   * Registers an interface under `name` for the plugins that depend on this
   * one.
   *
   * - `name`: 1 to 256 bytes of NUL-terminated UTF-8, unique per host;
   *   copied. Prefix it with the plugin name ("plugindemo.motion").
   * - `iface_version`: the interface's version, agreed between provider and
   *   users; `find_service` hands it out with the table.
   * - `iface`: non-NULL pointer to a plugin-owned table (usually a static
   *   struct of function pointers starting with its own struct_size), whose
   *   layout is agreed between provider and users. It must stay valid and
   *   unchanged until the provider's `destroy` returns. The host never
   *   dereferences it.
   *
   * Register in `init`: dependents are initialised after their providers
   * and look services up in their own `init`. The host removes the
   * provider's services when its `init` or `start` fails and just before its
   * `destroy`; dependents are destroyed before their providers, so a table
   * found in `init` stays valid for the dependent's whole life.
   *
   * Returns XPLUGIN_OK; XPLUGIN_ERR_INVALID_ARG for a bad name or NULL
   * `iface`; XPLUGIN_ERR_DUPLICATE if the name is taken (by any plugin);
   * XPLUGIN_ERR_NO_MEMORY when the host holds 4096 services.
   */
  xplugin_status (*register_service)(xplugin_host *host, const char *name,
                                     uint32_t iface_version, const void *iface);

  /**
   * Finds a service registered by this plugin itself or by one of its
   * dependencies (direct or transitive `depend`).
   *
   * - `name`: as for `register_service`, borrowed for the call.
   * - `out_iface`: non-NULL; on success receives the provider's table
   *   (owned by the provider, valid for as long as the caller lives: see
   *   `register_service`). Not written on failure.
   * - `out_iface_version`: NULL, or receives the table's version on success.
   *
   * Returns XPLUGIN_OK; XPLUGIN_ERR_INVALID_ARG for a bad name or NULL
   * `out_iface`; XPLUGIN_ERR_NOT_FOUND if no such service is registered, or
   * if its provider is not a declared dependency (declare it in `depend`, so
   * that the provider is initialised first). Check the version (and the
   * table's own struct_size) before calling through the table.
   */
  xplugin_status (*find_service)(xplugin_host *host, const char *name,
                                 const void **out_iface,
                                 uint32_t *out_iface_version);

  /* ---- ABI 1.1 (present when struct_size covers it) ---- */

  /**
   * Says whether the plugin is in the middle of something that must not be
   * cut (a motion, a measurement, a write): `busy` non-zero sets the flag,
   * zero clears it. A committed generation applied "when idle" waits until
   * no plugin holds the flag (with a timeout that names who held it); "now"
   * does not wait. Not a safety function: stopping plugins does not make a
   * robot safe.
   *
   * A single atomic store: allowed everywhere, including `step` on the
   * cycle thread. The flag is cleared when the plugin is stopped.
   * Returns XPLUGIN_OK, or XPLUGIN_ERR_INVALID_ARG for a NULL `host`.
   * Check `struct_size` before calling it: a 1.0 host does not have it.
   */
  xplugin_status (*set_busy)(xplugin_host *host, uint8_t busy);
} xplugin_host_api;

/* ---- render (ABI 1.1, client plugins) ----------------------------------- */

/** `xplugin_render_context.toolkit`: what `parent` is. */
#define XPLUGIN_TOOLKIT_NONE 0u       /* headless host (`xplugin-client run`): parent is NULL */
#define XPLUGIN_TOOLKIT_QT_WIDGET 1u  /* parent is a Qt QWidget* */
#define XPLUGIN_TOOLKIT_WIN32_HWND 2u /* parent is a Windows HWND */

/**
 * What `render` gets: where to attach the plugin's UI. Host-owned, borrowed
 * for the call (copy what you keep); `parent` itself stays valid until the
 * plugin's `stop`.
 */
typedef struct xplugin_render_context {
  uint32_t struct_size; /* sizeof(xplugin_render_context) as the host knows it */
  uint32_t toolkit;     /* XPLUGIN_TOOLKIT_* */
  void *parent;         /* the host's UI object to attach to; NULL for NONE */
  uint32_t width;       /* initial size in pixels, 0 if unknown */
  uint32_t height;
} xplugin_render_context;

/* ---- the plugin descriptor --------------------------------------------- */

/**
 * What a plugin exports, returned by `xplugin_entry`.
 *
 * Lifecycle, called by the host in this order (thread: see "Threads"):
 *   init (every plugin, in dependency order) -> start (every plugin, in
 *   order, after all inits) -> [step | idle]* -> stop (reverse order)
 *   -> destroy (reverse order, after all stops).
 * Client stages (the vendor's) map as:
 *
 *   vendor stage  xplugin call            when (pendant host)
 *   ------------  ----------------------  ------------------------------------
 *   init          init                    every plugin, load order
 *   after-init    start                   every enabled plugin, after all inits
 *   render        render (1.1, optional)  every started plugin, after all starts
 *   idle          idle (optional)         every idle round, load order
 *   detach        stop, then destroy      reverse load order, before unload
 *
 * `xplugin-client run` reports each stage per plugin.
 *
 * What follows a failure:
 * - `init` fails (any status but XPLUGIN_OK, a Rust panic included): the
 *   host never calls `start`, `stop` or `destroy` for it and ignores
 *   `*out_instance`, so `init` must free everything it allocated and stop
 *   every thread it started before it returns the error. The host removes
 *   its services and subscriptions; plugins depending on it are not loaded
 *   (reported with the reason chain); unrelated plugins go on.
 * - `start` fails: `stop` is not called; `destroy` is, at shutdown, in
 *   reverse load order as usual. Its services and subscriptions are removed
 *   at once; its dependents are not started (they stay initialised and are
 *   destroyed, before it).
 * - `stop` fails: reported; `destroy` is still called.
 * - `step` or `idle` fails: reported; the plugin keeps running and is called
 *   again next time.
 *
 * The descriptor is checked when the library is opened, and the plugin is
 * refused (its dependents skipped) unless: `magic` is XPLUGIN_MAGIC,
 * `abi_major` is XPLUGIN_ABI_MAJOR, `struct_size` is at least the 1.0 size,
 * `kind` is the host's side, `init`, `start`, `stop` and `destroy` are not
 * NULL, `name` equals the manifest's name exactly (case-sensitive) and
 * `version` equals the manifest's version numerically ("1.0" and "1.0.0" are
 * equal; a version that does not parse must match as text).
 */
typedef struct xplugin_descriptor {
  uint32_t magic; /* XPLUGIN_MAGIC */
  uint16_t abi_major;
  uint16_t abi_minor;
  uint32_t struct_size; /* sizeof(xplugin_descriptor) as the plugin knows it */
  uint32_t kind;        /* XPLUGIN_KIND_CONTROLLER or XPLUGIN_KIND_CLIENT */
  const char *name;     /* must equal the manifest name; static */
  const char *version;  /* must equal the manifest version, e.g. "1.0.2.6"; static */

  /**
   * Creates the instance. Required.
   *
   * - `host`: the host services table; see xplugin_host_api for its
   *   lifetime (until `destroy` returns). Keep this pointer.
   * - `config_json`, `config_len`: the resolved configuration, a JSON
   *   object {"item": value} holding every item of the manifest's `config`
   *   with the value stored for it (its default until a user sets one),
   *   already checked by the host against the item's `type`, range, step,
   *   options and length (docs/config.md); or exactly "{}" when the
   *   manifest declares no `config`. `config_len` bytes,
   *   NUL-terminated as well (the NUL not counted); never NULL from this
   *   host. Borrowed for the call: parse or copy it.
   * - `out_instance`: never NULL; on success write the instance pointer,
   *   which the host passes to every later call and never dereferences.
   *   Write a non-NULL value (the address of a static if the plugin keeps no
   *   state): this host version does not call `destroy` for a NULL instance.
   *   Ignored on failure.
   * - `err`, `err_cap`: the error buffer (see "Rules of the boundary").
   *
   * Returns XPLUGIN_OK, or an error (XPLUGIN_ERR_CONFIG for a configuration
   * it refuses, XPLUGIN_ERR_DEPENDENCY for a missing service, ...) with a
   * reason in `err`; see the descriptor for what follows a failure.
   */
  xplugin_status (*init)(const xplugin_host_api *host, const char *config_json,
                         size_t config_len, void **out_instance, char *err,
                         size_t err_cap);
  /**
   * Starts the plugin's work. Required. Called once, after every plugin's
   * `init`, for plugins whose dependencies all started (or, on the client,
   * are loaded but not enabled); client plugins only when their manifest
   * (or `xplugin-client enable`) enables them. `instance`: what `init` wrote.
   * `err`, `err_cap`: the error buffer. On failure see the descriptor.
   */
  xplugin_status (*start)(void *instance, char *err, size_t err_cap);
  /**
   * Stops the plugin's work. Required. Called once, at shutdown, in reverse
   * load order, only for plugins whose `start` succeeded; no `step` or
   * `idle` follows. Message callbacks may still be called until `destroy`
   * (unsubscribe here if that matters). A failure is reported; `destroy`
   * follows anyway.
   */
  xplugin_status (*stop)(void *instance, char *err, size_t err_cap);
  /**
   * Frees what `init` allocated. Required; cannot fail. Called once, after
   * every plugin's `stop`, in reverse load order, for every plugin whose
   * `init` succeeded (started or not, failed `start` included). Before the
   * call the host has removed the plugin's subscriptions (waiting for
   * running deliveries) and services. After it returns the host never uses
   * `instance`, the plugin's `user` pointers or service tables again, and
   * the plugin must not use the host table: stop the plugin's own threads
   * here at the latest.
   */
  void (*destroy)(void *instance);

  /**
   * Optional: applies a new configuration while the plugin runs.
   *
   * Called by the controller daemon on `config set`, after the host has
   * checked every value against the manifest's `config` items (a value it
   * refuses never reaches the plugin), only while the plugin runs (between
   * `start` and `stop`), on the daemon's main thread, never at the same time
   * as the plugin's `step` or any other lifecycle call: the host waits for
   * the current step to return and the cycle skips the plugin's turns until
   * this returns (other plugins keep their cycle). Take as long as parsing
   * needs, but every millisecond costs steps; the supervisor stops a call
   * longer than `reconfigure_timeout_s`.
   *
   * `config_json`, `config_len`: as for `init`, the whole new configuration
   * (every item, not a diff), borrowed for the call. XPLUGIN_OK: it is
   * current; the host stores it and a later `init` gets it. Any other
   * status refuses the whole change, with the reason in `err` (shown to the
   * operator): the plugin keeps its old configuration and nothing is stored.
   * NULL, or XPLUGIN_ERR_NOT_IMPLEMENTED from a non-NULL one, declares that
   * the plugin cannot apply a new configuration while running: the values
   * are stored and reach it through a fresh `init` (next start), and `config
   * set` says so. The pendant host does not call it in this version.
   * `err`, `err_cap`: the error buffer.
   */
  xplugin_status (*reconfigure)(void *instance, const char *config_json,
                                size_t config_len, char *err, size_t err_cap);
  /**
   * Optional (NULL), controller plugins: the cyclic hook, called every
   * controller cycle while the plugin runs (after `start` succeeded, before
   * `stop`), for every running plugin in load order. In this host version on
   * the main thread, paced by sleeping (`--cycle-ms`); ABI 1.1 moves it to a
   * real-time thread. Must not block, allocate or take locks another thread
   * may hold long. `cycle` counts the host's cycles from 0 (the same value
   * for every plugin in one cycle); `now_ns` is CLOCK_MONOTONIC in
   * nanoseconds at the start of the cycle. An error is reported; the plugin
   * keeps running.
   */
  xplugin_status (*step)(void *instance, uint64_t cycle, uint64_t now_ns);
  /**
   * Optional (NULL), client plugins: the periodic idle hook, called on the
   * pendant host's main (UI) thread once per idle round for every running
   * plugin in load order (`xplugin-client run --idle N` runs N rounds). An
   * error is reported; the plugin keeps running.
   */
  xplugin_status (*idle)(void *instance);

  /* ---- ABI 1.1 (read by the host only when struct_size covers it) ---- */

  /**
   * Optional (NULL), client plugins: the vendor's render stage, where the
   * plugin attaches its UI. Called by the pendant host once per start, on
   * its main (UI) thread, after every enabled plugin's `start` (after-init)
   * and before the first `idle`, in load order, only for plugins whose
   * `start` succeeded. `ctx`: never NULL, borrowed for the call. A failure
   * is reported (the report's `render` stage) and the plugin keeps running
   * without UI: it is not stopped. Never called by the controller host.
   */
  xplugin_status (*render)(void *instance, const xplugin_render_context *ctx,
                           char *err, size_t err_cap);
} xplugin_descriptor;

/* ---- entry modules (ABI 1.1) ------------------------------------------- */

/**
 * One library may hold several entry modules (the vendor's entry modules
 * with priorities), each a descriptor of its own. A library lists them by
 * exporting `xplugin_modules`; a library without it is one module named
 * after the plugin, priority 0. Export `xplugin_entry` as well (returning
 * the first module's descriptor), so that a 1.0 host loads that one.
 *
 * Order (deterministic; the vendor leaves ties and destruction open, xplugin
 * does not): plugins in dependency order as always; within a plugin, `init`
 * and `start` run module by module, higher `priority` first, equal
 * priorities by `name` (byte order); `stop` runs in exactly the reverse of
 * start and `destroy` in exactly the reverse of init. `step`, `idle`,
 * `render` and `reconfigure` of a plugin's modules run in start order.
 *
 * Each module is an instance of its own (its own `init` ... `destroy`);
 * the modules share the plugin's name, version, data directory, license,
 * dependencies, configuration and host context (services and subscriptions
 * belong to the plugin). A failing module fails the plugin: a failed `init`
 * destroys the modules already initialised (in reverse) and skips the
 * plugin's dependents; a failed `start` stops the modules already started
 * (in reverse), and every module is destroyed at shutdown; the reason names
 * the module (`module "motion": init returned ...`). In the cycle a
 * plugin's modules share its slot and its step budget. `reconfigure` goes to
 * every module in start order; when one refuses (or has none), the modules
 * that accepted get the previous configuration back and the change is
 * refused (or stored for the next start) as a whole.
 */
#define XPLUGIN_MODULES_SYMBOL "xplugin_modules"
/** Most modules one library may list. */
#define XPLUGIN_MAX_MODULES 64u

typedef struct xplugin_module {
  uint32_t struct_size; /* sizeof(xplugin_module) as the plugin knows it */
  int32_t priority;     /* higher runs first (init, start); ties by name */
  const char *name;     /* unique in the plugin: 1 to 64 bytes of [A-Za-z0-9_.-]; static */
  const xplugin_descriptor *descriptor; /* static; name and version = the plugin's */
} xplugin_module;

typedef struct xplugin_module_list {
  uint32_t magic; /* XPLUGIN_MAGIC */
  uint16_t abi_major;
  uint16_t abi_minor;
  uint32_t struct_size; /* sizeof(xplugin_module_list) as the plugin knows it */
  uint32_t count;       /* 1 to XPLUGIN_MAX_MODULES */
  const xplugin_module *const *modules; /* `count` pointers, static */
} xplugin_module_list;

/**
 * The optional second entry point:
 *   XPLUGIN_EXTERN_C XPLUGIN_EXPORT const xplugin_module_list *xplugin_modules(void);
 * Same rules as `xplugin_entry`: called once, on the main thread, right after
 * dlopen; returns static data; must not allocate or call the host. A list
 * that is malformed (bad magic or major, count 0 or over the maximum, a
 * missing or invalid name, a duplicate name, a descriptor `xplugin_entry`
 * would not pass) refuses the whole plugin, naming the module.
 */
typedef const xplugin_module_list *(*xplugin_modules_fn)(void);

/**
 * One line per module, then one line for the list (C and C++):
 *
 *   XPLUGIN_MODULE(safety_module, "safety", 20, &safety_descriptor);
 *   XPLUGIN_MODULE(motion_module, "motion", 10, &motion_descriptor);
 *   XPLUGIN_DEFINE_MODULES(&safety_module, &motion_module)
 */
#define XPLUGIN_MODULE(var_, name_, priority_, descriptor_)                    \
  static const xplugin_module var_ = {(uint32_t)sizeof(xplugin_module),       \
                                      (int32_t)(priority_), (name_),           \
                                      (descriptor_)}
#define XPLUGIN_DEFINE_MODULES(...)                                            \
  static const xplugin_module *const xplugin_module_ptrs_[] = {__VA_ARGS__};   \
  static const xplugin_module_list xplugin_module_list_ = {                    \
      XPLUGIN_MAGIC, XPLUGIN_ABI_MAJOR, XPLUGIN_ABI_MINOR,                     \
      (uint32_t)sizeof(xplugin_module_list),                                   \
      (uint32_t)(sizeof(xplugin_module_ptrs_) /                                \
                 sizeof(xplugin_module_ptrs_[0])),                             \
      xplugin_module_ptrs_};                                                   \
  XPLUGIN_EXTERN_C XPLUGIN_EXPORT const xplugin_module_list *xplugin_modules(  \
      void) {                                                                  \
    return &xplugin_module_list_;                                              \
  }

/**
 * The one entry point:
 *   XPLUGIN_EXTERN_C XPLUGIN_EXPORT const xplugin_descriptor *xplugin_entry(void);
 *
 * Called once per load, on the host's main thread, right after dlopen.
 * Returns a pointer to a descriptor in static storage (never unloaded, never
 * written by the host), or NULL to refuse loading. Must not allocate, start
 * threads or call anything of the host.
 */
typedef const xplugin_descriptor *(*xplugin_entry_fn)(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* XPLUGIN_H */
