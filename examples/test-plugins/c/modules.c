/*
 * modules.c — a C test plugin made of several entry modules (ABI 1.1), for
 * the loader's integration tests, and the worked example of the header's
 * XPLUGIN_MODULE / XPLUGIN_DEFINE_MODULES macros. tests/src/build.rs
 * (`c_modules_fixture`) compiles it.
 *
 * Three modules, listed out of order on purpose so that a test sees the
 * host sort them: "alpha" (priority 10), "safety" (20), "beta" (10). The
 * host runs init and start as safety, alpha, beta (higher priority first,
 * ties by name), stop in exactly the reverse of start, destroy in exactly
 * the reverse of init.
 *
 * Every call appends "NAME/MODULE:stage\n" to the trace file named by the
 * configuration's string "trace_file" (nothing is recorded without it).
 *
 * Defines (all optional except MODULES_NAME):
 *   MODULES_NAME="n"          plugin name (required).
 *   MODULES_KIND=k            XPLUGIN_KIND_CONTROLLER (default) or _CLIENT.
 *   MODULES_FAIL_INIT="m"     module m's init fails ("m: deliberate failure").
 *   MODULES_FAIL_START="m"    module m's start fails.
 *   MODULES_STEP              every module has a step; each records its first
 *                             step only (the cycle path stays quiet).
 *   MODULES_RENDER            every module has a render (client plugins).
 *   MODULES_FAIL_RENDER="m"   module m's render fails.
 *   MODULES_DUPLICATE_NAME    the third module is listed as "alpha" too (a
 *                             malformed list the host must refuse).
 * Every module has a reconfigure; module "beta" refuses a configuration whose
 * JSON holds the text "refuse".
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xplugin.h"

#ifndef MODULES_NAME
#error "define MODULES_NAME, e.g. -DMODULES_NAME=\"cell\""
#endif
#ifndef MODULES_KIND
#define MODULES_KIND XPLUGIN_KIND_CONTROLLER
#endif
#define MODULES_VERSION "0.1.0"

XPLUGIN_DEFINE_ABI_TAG(MODULES_KIND);

typedef struct module_instance {
  const char *module;
  char trace[4096];
  int stepped;
} module_instance;

static void set_error(char *err, size_t err_cap, const char *text) {
  if (err != NULL && err_cap > 0) {
    snprintf(err, err_cap, "%s", text);
  }
}

/* The string value of "trace_file" in the configuration, if any (the tests
 * write plain paths: no escapes). */
static void find_trace(const char *json, size_t len, char *out, size_t cap) {
  const char *key = "\"trace_file\"";
  const char *p = strstr(json, key);
  out[0] = '\0';
  if (p == NULL || (size_t)(p - json) >= len) {
    return;
  }
  p = strchr(p + strlen(key), '"');
  if (p == NULL) {
    return;
  }
  p++;
  const char *end = strchr(p, '"');
  if (end == NULL || (size_t)(end - p) >= cap) {
    return;
  }
  memcpy(out, p, (size_t)(end - p));
  out[end - p] = '\0';
}

static void record(const module_instance *m, const char *stage) {
  if (m->trace[0] == '\0') {
    return;
  }
  FILE *f = fopen(m->trace, "a");
  if (f != NULL) {
    fprintf(f, "%s/%s:%s\n", MODULES_NAME, m->module, stage);
    fclose(f);
  }
}

static int is(const char *module, const char *name) { return strcmp(module, name) == 0; }

static xplugin_status module_init(const char *module, const char *config_json,
                                  size_t config_len, void **out_instance, char *err,
                                  size_t err_cap) {
  module_instance *m = calloc(1, sizeof *m);
  if (m == NULL) {
    set_error(err, err_cap, "out of memory");
    return XPLUGIN_ERR_NO_MEMORY;
  }
  m->module = module;
  find_trace(config_json, config_len, m->trace, sizeof m->trace);
  record(m, "init");
#ifdef MODULES_FAIL_INIT
  if (is(module, MODULES_FAIL_INIT)) {
    set_error(err, err_cap, MODULES_FAIL_INIT ": deliberate failure in init");
    free(m);
    return XPLUGIN_ERR_FAILED;
  }
#endif
  *out_instance = m;
  return XPLUGIN_OK;
}

static xplugin_status module_start(void *instance, char *err, size_t err_cap) {
  module_instance *m = instance;
  record(m, "start");
#ifdef MODULES_FAIL_START
  if (is(m->module, MODULES_FAIL_START)) {
    set_error(err, err_cap, MODULES_FAIL_START ": deliberate failure in start");
    return XPLUGIN_ERR_FAILED;
  }
#else
  (void)err;
  (void)err_cap;
#endif
  return XPLUGIN_OK;
}

static xplugin_status module_stop(void *instance, char *err, size_t err_cap) {
  (void)err;
  (void)err_cap;
  record(instance, "stop");
  return XPLUGIN_OK;
}

static void module_destroy(void *instance) {
  record(instance, "destroy");
  free(instance);
}

static xplugin_status module_reconfigure(void *instance, const char *config_json,
                                         size_t config_len, char *err, size_t err_cap) {
  module_instance *m = instance;
  (void)config_len;
  record(m, "reconfigure");
  if (is(m->module, "beta") && strstr(config_json, "refuse") != NULL) {
    set_error(err, err_cap, "beta: refuses this configuration");
    return XPLUGIN_ERR_CONFIG;
  }
  return XPLUGIN_OK;
}

#ifdef MODULES_STEP
static xplugin_status module_step(void *instance, uint64_t cycle, uint64_t now_ns) {
  module_instance *m = instance;
  (void)cycle;
  (void)now_ns;
  if (!m->stepped) {
    m->stepped = 1;
    record(m, "step");
  }
  return XPLUGIN_OK;
}
#define MODULE_STEP module_step
#else
#define MODULE_STEP NULL
#endif

#ifdef MODULES_RENDER
static xplugin_status module_render(void *instance, const xplugin_render_context *ctx,
                                    char *err, size_t err_cap) {
  module_instance *m = instance;
  record(m, ctx->toolkit == XPLUGIN_TOOLKIT_NONE ? "render" : "render-with-toolkit");
#ifdef MODULES_FAIL_RENDER
  if (is(m->module, MODULES_FAIL_RENDER)) {
    set_error(err, err_cap, MODULES_FAIL_RENDER ": deliberate failure in render");
    return XPLUGIN_ERR_FAILED;
  }
#else
  (void)err;
  (void)err_cap;
#endif
  return XPLUGIN_OK;
}
#define MODULE_RENDER module_render
#else
#define MODULE_RENDER NULL
#endif

/* One init and one descriptor per module: `init` has no module argument. */
#define DEFINE_MODULE(id_)                                                     \
  static xplugin_status init_##id_(const xplugin_host_api *host,              \
                                   const char *config_json, size_t config_len, \
                                   void **out_instance, char *err,             \
                                   size_t err_cap) {                           \
    (void)host;                                                                \
    return module_init(#id_, config_json, config_len, out_instance, err,       \
                       err_cap);                                               \
  }                                                                            \
  static const xplugin_descriptor descriptor_##id_ = {                         \
      XPLUGIN_MAGIC,       XPLUGIN_ABI_MAJOR,  XPLUGIN_ABI_MINOR,              \
      sizeof(xplugin_descriptor), MODULES_KIND, MODULES_NAME,                  \
      MODULES_VERSION,     init_##id_,         module_start,                   \
      module_stop,         module_destroy,     module_reconfigure,             \
      MODULE_STEP,         NULL,               MODULE_RENDER}

DEFINE_MODULE(alpha);
DEFINE_MODULE(safety);
DEFINE_MODULE(beta);

/* The header's macros: one line per module, one for the list. */
XPLUGIN_MODULE(alpha_module, "alpha", 10, &descriptor_alpha);
XPLUGIN_MODULE(safety_module, "safety", 20, &descriptor_safety);
#ifdef MODULES_DUPLICATE_NAME
XPLUGIN_MODULE(beta_module, "alpha", 10, &descriptor_beta);
#else
XPLUGIN_MODULE(beta_module, "beta", 10, &descriptor_beta);
#endif
XPLUGIN_DEFINE_MODULES(&alpha_module, &safety_module, &beta_module)

/* For a 1.0 host: the first module. */
XPLUGIN_EXTERN_C XPLUGIN_EXPORT const xplugin_descriptor *xplugin_entry(void) {
  return &descriptor_safety;
}
