/*
 * motionlog — a controller plugin in plain C99, version 0.9.0.
 *
 * It shows that the xplugin ABI needs nothing but xplugin.h and a C compiler:
 * no Rust, no runtime library. It `depend`s on the Rust controller plugin
 * plugindemo (">=1.0, <2") and, in init, finds the "plugindemo.motion"
 * service that plugindemo registered in its own init (the loader initialises
 * dependencies first) and calls it. In step it samples the controller cycle
 * count through the service without allocating; at stop it logs a summary.
 *
 * Build (see examples/build-examples):
 *   cc -std=c99 -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden \
 *      -I xplugin-abi/include -I examples/plugindemo-controller/include \
 *      -o libmotionlog.so examples/motionlog-c/motionlog.c
 *
 * Only xplugin_entry and xplugin_abi are exported (-fvisibility=hidden plus
 * XPLUGIN_EXPORT), so nothing else of this library can clash with the host
 * or with other plugins.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugindemo_motion.h"
#include "xplugin.h"

#define MOTIONLOG_NAME "motionlog"
#define MOTIONLOG_VERSION "0.9.0"
/* The speed the demo asks plugindemo to scale at init, in mm/s. */
#define MOTIONLOG_PROBE_SPEED 250.0

XPLUGIN_DEFINE_ABI_TAG(XPLUGIN_KIND_CONTROLLER);

/* True when a struct of `size` bytes (its struct_size) covers all of `field`. */
#define MOTIONLOG_COVERS(size, type, field)                                    \
  ((size_t)(size) >= offsetof(type, field) + sizeof(((type *)0)->field))

typedef struct motionlog {
  const xplugin_host_api *host;
  const plugindemo_motion_service *motion;
  uint64_t cycles_at_start; /* plugindemo's count when we started */
  uint64_t last_cycles;     /* last count sampled in step */
  uint64_t steps;           /* our own step calls */
} motionlog;

static void log_line(const xplugin_host_api *host, uint32_t level,
                     const char *text) {
  if (host->log != NULL) {
    host->log(host->host, level, text);
  }
}

/* Formats into the caller's error buffer: truncated, always NUL-terminated. */
static void set_error(char *err, size_t err_cap, const char *text) {
  if (err == NULL || err_cap == 0) {
    return;
  }
  snprintf(err, err_cap, "%s", text);
}

static xplugin_status motionlog_init(const xplugin_host_api *host,
                                     const char *config_json,
                                     size_t config_len, void **out_instance,
                                     char *err, size_t err_cap) {
  const void *iface = NULL;
  uint32_t iface_version = 0;
  xplugin_status status;
  const plugindemo_motion_service *motion;
  motionlog *self;
  char line[256];

  (void)config_json;
  (void)config_len;
  if (host == NULL || out_instance == NULL) {
    set_error(err, err_cap, "motionlog: init called with a NULL host table or out pointer");
    return XPLUGIN_ERR_INVALID_ARG;
  }
  if (!MOTIONLOG_COVERS(host->struct_size, xplugin_host_api, find_service) ||
      host->find_service == NULL) {
    snprintf(line, sizeof line,
             "motionlog: the host services table (%u bytes) has no find_service; "
             "this plugin needs an xplugin host with ABI 1.0 or later",
             (unsigned)host->struct_size);
    set_error(err, err_cap, line);
    return XPLUGIN_ERR_NOT_IMPLEMENTED;
  }

  status = host->find_service(host->host, PLUGINDEMO_MOTION_SERVICE, &iface,
                              &iface_version);
  if (status != XPLUGIN_OK || iface == NULL) {
    snprintf(line, sizeof line,
             "motionlog: service \"%s\" not found (status %d); it is registered "
             "by the controller plugin plugindemo: install plugindemo >=1.0, <2 and "
             "keep it in motionlog's depend list",
             PLUGINDEMO_MOTION_SERVICE, (int)status);
    set_error(err, err_cap, line);
    return XPLUGIN_ERR_DEPENDENCY;
  }
  motion = (const plugindemo_motion_service *)iface;
  if (iface_version != PLUGINDEMO_MOTION_VERSION ||
      !MOTIONLOG_COVERS(motion->struct_size, plugindemo_motion_service,
                        scale_speed)) {
    snprintf(line, sizeof line,
             "motionlog: service \"%s\" has interface version %u and %u bytes, "
             "expected version %u and at least %u bytes; install a plugindemo "
             "release that offers motion interface %u",
             PLUGINDEMO_MOTION_SERVICE, (unsigned)iface_version,
             (unsigned)motion->struct_size, (unsigned)PLUGINDEMO_MOTION_VERSION,
             (unsigned)sizeof(plugindemo_motion_service),
             (unsigned)PLUGINDEMO_MOTION_VERSION);
    set_error(err, err_cap, line);
    return XPLUGIN_ERR_DEPENDENCY;
  }

  self = (motionlog *)calloc(1, sizeof *self);
  if (self == NULL) {
    set_error(err, err_cap, "motionlog: out of memory allocating the instance");
    return XPLUGIN_ERR_NO_MEMORY;
  }
  self->host = host;
  self->motion = motion;

  snprintf(line, sizeof line,
           "motionlog " MOTIONLOG_VERSION ": found %s v%u; %.1f mm/s requested "
           "-> %.1f mm/s after the controller's speed override",
           PLUGINDEMO_MOTION_SERVICE, (unsigned)iface_version,
           MOTIONLOG_PROBE_SPEED, motion->scale_speed(MOTIONLOG_PROBE_SPEED));
  log_line(host, XPLUGIN_LOG_INFO, line);

  *out_instance = self;
  return XPLUGIN_OK;
}

static xplugin_status motionlog_start(void *instance, char *err,
                                      size_t err_cap) {
  motionlog *self = (motionlog *)instance;
  char line[160];
  if (self == NULL) {
    set_error(err, err_cap, "motionlog: start called with a NULL instance");
    return XPLUGIN_ERR_INVALID_ARG;
  }
  self->cycles_at_start = self->motion->get_cycle_count();
  self->last_cycles = self->cycles_at_start;
  snprintf(line, sizeof line,
           "motionlog: started at controller cycle %llu",
           (unsigned long long)self->cycles_at_start);
  log_line(self->host, XPLUGIN_LOG_INFO, line);
  return XPLUGIN_OK;
}

/* Cyclic hook: two loads and two stores, no allocation, no locks. */
static xplugin_status motionlog_step(void *instance, uint64_t cycle,
                                     uint64_t now_ns) {
  motionlog *self = (motionlog *)instance;
  (void)cycle;
  (void)now_ns;
  if (self == NULL) {
    return XPLUGIN_ERR_INVALID_ARG;
  }
  self->last_cycles = self->motion->get_cycle_count();
  self->steps++;
  return XPLUGIN_OK;
}

static xplugin_status motionlog_stop(void *instance, char *err,
                                     size_t err_cap) {
  motionlog *self = (motionlog *)instance;
  char line[200];
  if (self == NULL) {
    set_error(err, err_cap, "motionlog: stop called with a NULL instance");
    return XPLUGIN_ERR_INVALID_ARG;
  }
  snprintf(line, sizeof line,
           "motionlog: stopping after %llu step(s); plugindemo counted %llu "
           "controller cycle(s) while motionlog ran",
           (unsigned long long)self->steps,
           (unsigned long long)(self->motion->get_cycle_count() -
                                self->cycles_at_start));
  log_line(self->host, XPLUGIN_LOG_INFO, line);
  return XPLUGIN_OK;
}

static void motionlog_destroy(void *instance) { free(instance); }

static const xplugin_descriptor motionlog_descriptor = {
    XPLUGIN_MAGIC,
    XPLUGIN_ABI_MAJOR,
    XPLUGIN_ABI_MINOR,
    (uint32_t)sizeof(xplugin_descriptor),
    XPLUGIN_KIND_CONTROLLER,
    MOTIONLOG_NAME,
    MOTIONLOG_VERSION,
    motionlog_init,
    motionlog_start,
    motionlog_stop,
    motionlog_destroy,
    NULL, /* reconfigure: not supported; the host restarts the plugin */
    motionlog_step,
    NULL, /* idle: client plugins only */
    NULL, /* render (ABI 1.1): client plugins only */
};

XPLUGIN_EXPORT const xplugin_descriptor *xplugin_entry(void) {
  return &motionlog_descriptor;
}
