/*
 * bench_plugin.c — the generated plugin of the benchmark suite (scripts/bench).
 *
 * One source, compiled once per generated plugin with its name and a padding
 * file, so every library has its own name, its own bytes and a realistic
 * size (the padding is random, so it neither compresses nor deduplicates):
 *
 *   cc -std=c99 -O2 -fPIC -shared -fvisibility=hidden -I xplugin-abi/include \
 *      '-DBENCH_NAME="p0001"' '-DBENCH_PAD_FILE="/tmp/p0001.pad"' \
 *      [-DBENCH_CLIENT] -o p0001.so bench/c/bench_plugin.c
 *
 * Defines:
 *   BENCH_NAME="n"       plugin name (required), equal to the manifest's name.
 *   BENCH_VERSION="v"    descriptor version (default "1.0.0").
 *   BENCH_PAD_FILE="f"   file whose bytes are embedded in .rodata (required).
 *   BENCH_CLIENT         a client plugin (idle hook) instead of a controller
 *                        plugin (step hook).
 *
 * The lifecycle does what a small real plugin does: allocate an instance in
 * init, count steps, free it in destroy. The step body is mirrored by
 * `direct_step` in xplugin-host/benches/abi_call.rs, so the ABI-call benchmark
 * compares the same work called directly and through the descriptor.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "xplugin.h"

#ifndef BENCH_NAME
#error "define BENCH_NAME, e.g. -DBENCH_NAME=\"p0001\""
#endif
#ifndef BENCH_PAD_FILE
#error "define BENCH_PAD_FILE, e.g. -DBENCH_PAD_FILE=\"/tmp/p0001.pad\""
#endif
#ifndef BENCH_VERSION
#define BENCH_VERSION "1.0.0"
#endif

#ifdef BENCH_CLIENT
#define BENCH_KIND XPLUGIN_KIND_CLIENT
#else
#define BENCH_KIND XPLUGIN_KIND_CONTROLLER
#endif

XPLUGIN_DEFINE_ABI_TAG(BENCH_KIND);

/* The padding: loaded, read-only data, like the tables and code of a real
 * plugin of this size. `.incbin` keeps the compile fast for megabytes. */
__asm__(".section .rodata.bench_padding,\"a\"\n"
        ".balign 16\n"
        ".incbin \"" BENCH_PAD_FILE "\"\n"
        ".previous\n");

typedef struct bench_instance {
  uint64_t steps;
  uint64_t last_cycle;
} bench_instance;

static void set_error(char *err, size_t err_cap, const char *text) {
  if (err != NULL && err_cap > 0) {
    snprintf(err, err_cap, "%s", text);
  }
}

static xplugin_status bench_init(const xplugin_host_api *host,
                                 const char *config_json, size_t config_len,
                                 void **out_instance, char *err,
                                 size_t err_cap) {
  bench_instance *self;
  (void)host;
  (void)config_json;
  (void)config_len;
  if (out_instance == NULL) {
    set_error(err, err_cap, BENCH_NAME ": init called with a NULL out pointer");
    return XPLUGIN_ERR_INVALID_ARG;
  }
  self = (bench_instance *)calloc(1, sizeof *self);
  if (self == NULL) {
    set_error(err, err_cap, BENCH_NAME ": out of memory");
    return XPLUGIN_ERR_NO_MEMORY;
  }
  *out_instance = self;
  return XPLUGIN_OK;
}

static xplugin_status bench_start(void *instance, char *err, size_t err_cap) {
  (void)err;
  (void)err_cap;
  return instance == NULL ? XPLUGIN_ERR_INVALID_ARG : XPLUGIN_OK;
}

static xplugin_status bench_stop(void *instance, char *err, size_t err_cap) {
  (void)err;
  (void)err_cap;
  return instance == NULL ? XPLUGIN_ERR_INVALID_ARG : XPLUGIN_OK;
}

static void bench_destroy(void *instance) { free(instance); }

#ifndef BENCH_CLIENT
/* The cyclic hook: one increment, one store. */
static xplugin_status bench_step(void *instance, uint64_t cycle,
                                 uint64_t now_ns) {
  bench_instance *self = (bench_instance *)instance;
  (void)now_ns;
  if (self == NULL) {
    return XPLUGIN_ERR_INVALID_ARG;
  }
  self->steps++;
  self->last_cycle = cycle;
  return XPLUGIN_OK;
}
#else
static xplugin_status bench_idle(void *instance) {
  bench_instance *self = (bench_instance *)instance;
  if (self == NULL) {
    return XPLUGIN_ERR_INVALID_ARG;
  }
  self->steps++;
  return XPLUGIN_OK;
}
#endif

static const xplugin_descriptor bench_descriptor = {
    XPLUGIN_MAGIC,
    XPLUGIN_ABI_MAJOR,
    XPLUGIN_ABI_MINOR,
    (uint32_t)sizeof(xplugin_descriptor),
    BENCH_KIND,
    BENCH_NAME,
    BENCH_VERSION,
    bench_init,
    bench_start,
    bench_stop,
    bench_destroy,
    NULL, /* reconfigure */
#ifndef BENCH_CLIENT
    bench_step,
    NULL, /* idle */
#else
    NULL, /* step */
    bench_idle,
#endif
    NULL, /* render (ABI 1.1) */
};

XPLUGIN_EXPORT const xplugin_descriptor *xplugin_entry(void) {
  return &bench_descriptor;
}
