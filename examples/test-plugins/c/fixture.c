/*
 * fixture.c — configurable C test plugin for the loader's integration tests.
 *
 * Not part of any product package: every behaviour is selected at compile
 * time, so one source gives each fixture the tests need and no test logic
 * sits in the examples. tests/src/build.rs (`c_fixture`) compiles it.
 *
 * Defines (all optional except FIXTURE_NAME):
 *   FIXTURE_NAME="n"          plugin name in the descriptor (required). Install
 *                             it under another folder/file name to get a
 *                             "descriptor name differs from file name" fixture.
 *   FIXTURE_VERSION="v"       descriptor version (default "0.1.0").
 *   FIXTURE_KIND=k            XPLUGIN_KIND_CONTROLLER (default) or XPLUGIN_KIND_CLIENT.
 *   FIXTURE_ABI_MAJOR=n       ABI major written into BOTH the xplugin_abi tag and
 *                             the descriptor (default XPLUGIN_ABI_MAJOR), e.g. 2
 *                             for the "wrong ABI major" fixture.
 *   FIXTURE_FAIL_INIT         init returns XPLUGIN_ERR_FAILED with the error text
 *                             "NAME: deliberate failure in init (FIXTURE_FAIL_INIT)".
 *   FIXTURE_FAIL_START        likewise for start.
 *   FIXTURE_FAIL_STOP         likewise for stop.
 *   FIXTURE_RECORD            the recorder: every lifecycle call (init, start,
 *                             stop, reconfigure, destroy) first appends the line
 *                             "NAME:stage\n" to the trace file, so a test can
 *                             assert the order of calls across several plugins
 *                             that share one trace file. The trace file is the
 *                             config JSON's string "trace_file" (e.g.
 *                             {"trace_file": "/tmp/x/trace.log"}); without it,
 *                             "trace.log" in the plugin's own data directory.
 *                             A failing stage is recorded before it fails.
 *   FIXTURE_RECORD_CONFIG     (with FIXTURE_RECORD) init and reconfigure also
 *                             append "NAME:config-init JSON\n" and
 *                             "NAME:config-reconfigure JSON\n" with the
 *                             configuration JSON the host passed (one line:
 *                             the host writes it without newlines), so a test
 *                             can see which typed values a C plugin got.
 *   FIXTURE_REGISTER_SERVICE="s"  init registers a service named s (iface version
 *                             1, a static table holding the plugin name).
 *   FIXTURE_REQUIRE_SERVICE="s"   init fails with XPLUGIN_ERR_DEPENDENCY unless
 *                             find_service("s") succeeds.
 *   FIXTURE_MESSAGING         start exercises message callbacks that call the
 *                             host back: it subscribes "NAME/self" and
 *                             "NAME/other" and publishes on "NAME/self". That
 *                             callback, on its first call, publishes on its own
 *                             topic again (a nested delivery to itself),
 *                             unsubscribes "NAME/other", subscribes "NAME/late"
 *                             and unsubscribes itself. start then publishes on
 *                             all three topics and checks who got what. With
 *                             FIXTURE_RECORD it records the line
 *                             "NAME:messaging self=S other=O late=L status=A,B,C,D"
 *                             (calls per callback; statuses of the nested
 *                             publish, the two unsubscribes and the subscribe);
 *                             start fails with that text unless it is
 *                             "self=2 other=0 late=1 status=0,0,0,0".
 *
 *   FIXTURE_STEP              the plugin has a `step` (it counts its steps).
 *   FIXTURE_STEP_CHATTY       (with FIXTURE_STEP) every step logs a line and
 *                             publishes the cycle number (8 bytes) on
 *                             "NAME/step": a plugin whose step uses the host.
 *   FIXTURE_STEP_FAIL         (with FIXTURE_STEP) every step returns
 *                             XPLUGIN_ERR_FAILED.
 *   FIXTURE_STEP_SPIN_US=n    (with FIXTURE_STEP) every step busy-waits n
 *                             microseconds on CLOCK_MONOTONIC (over a budget).
 *   FIXTURE_CRASH_HOW=n       how the crash points below end the process: 1
 *                             SIGSEGV (a write through NULL), 2 abort(), 3
 *                             exit(3), 4 hang (sleep forever).
 *   FIXTURE_CRASH_INIT, FIXTURE_CRASH_START, FIXTURE_CRASH_STOP
 *                             crash (as FIXTURE_CRASH_HOW says) in that call.
 *   FIXTURE_CRASH_STEP=n      (with FIXTURE_STEP) crash in the n-th step; with
 *                             FIXTURE_CRASH_RANDOM instead at a cycle picked
 *                             from the start time (so each boot differs).
 *   FIXTURE_SERVICE_CRASHES   (with FIXTURE_REGISTER_SERVICE and
 *                             FIXTURE_CRASH_HOW) the service's poke() crashes
 *                             on its 5th call: code of this plugin reached
 *                             through another plugin's call.
 *   FIXTURE_STEP_POKES        (with FIXTURE_REQUIRE_SERVICE and FIXTURE_STEP)
 *                             every step calls the required service's poke().
 *   FIXTURE_BUSY              start sets the busy flag (ABI 1.1 `set_busy`);
 *                             with FIXTURE_BUSY_STEPS=n (and FIXTURE_STEP) the
 *                             n-th step clears it; otherwise it stays set
 *                             until the plugin is stopped.
 *   FIXTURE_RECONFIGURE_REFUSE="t"  reconfigure refuses (XPLUGIN_ERR_INVALID_ARG,
 *                             "NAME: refuses a configuration holding t") any
 *                             configuration whose JSON text contains t.
 *   FIXTURE_RECONFIGURE_SLEEP_US=n  reconfigure takes n microseconds (sleeps)
 *                             before it accepts.
 *   FIXTURE_NO_RECONFIGURE    the descriptor's reconfigure is NULL.
 *   FIXTURE_STEP_OBSERVE      (with FIXTURE_STEP and FIXTURE_RECORD) the plugin
 *                             watches the host's promise that reconfigure and
 *                             step never overlap: each records
 *                             "NAME:OVERLAP ..." if it finds the other running;
 *                             the first step after an accepted reconfigure
 *                             records "NAME:step-sees-config N cycle C" (N
 *                             counts accepted reconfigures).
 *
 *   FIXTURE_ON_LINK_TOPIC="t" start subscribes the host's link topic
 *                             "xplugin/link"; each time the link comes up it
 *                             publishes FIXTURE_ON_LINK_COUNT (default 1)
 *                             messages of 32 bytes on t from inside that
 *                             callback, and logs "NAME: link up, published N
 *                             on t" (a flood with a large count, a message on
 *                             an undeclared topic with 1).
 *
 * Example: cc -std=c99 -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden
 *   -I xplugin-abi/include '-DFIXTURE_NAME="failinit"' -DFIXTURE_FAIL_INIT
 *   -o libfailinit.so examples/test-plugins/c/fixture.c
 */
#if (defined(FIXTURE_STEP_SPIN_US) || defined(FIXTURE_CRASH_HOW) || \
     defined(FIXTURE_RECONFIGURE_SLEEP_US)) && !defined(_POSIX_C_SOURCE)
/* clock_gettime and sleep under -std=c99. */
#define _POSIX_C_SOURCE 200809L
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xplugin.h"

#ifndef FIXTURE_NAME
#error "define FIXTURE_NAME, e.g. -DFIXTURE_NAME=\"failinit\""
#endif
#ifndef FIXTURE_VERSION
#define FIXTURE_VERSION "0.1.0"
#endif
#ifndef FIXTURE_KIND
#define FIXTURE_KIND XPLUGIN_KIND_CONTROLLER
#endif
#ifndef FIXTURE_ABI_MAJOR
#define FIXTURE_ABI_MAJOR XPLUGIN_ABI_MAJOR
#endif

#define FIXTURE_PATH_MAX 4096

/* The tag, written out (not XPLUGIN_DEFINE_ABI_TAG) so the major can be wrong. */
XPLUGIN_EXPORT const xplugin_abi_tag xplugin_abi = {
    XPLUGIN_MAGIC, FIXTURE_ABI_MAJOR, XPLUGIN_ABI_MINOR, FIXTURE_KIND, 0u};

#ifdef FIXTURE_MESSAGING
/* What the message callbacks saw and got back from the host. */
typedef struct fixture_messaging {
  uint64_t self_id, other_id, late_id;
  int self_calls, other_calls, late_calls;
  xplugin_status nested_publish, unsubscribe_other, subscribe_late,
      unsubscribe_self;
} fixture_messaging;
#endif

typedef struct fixture {
  const xplugin_host_api *host;
  uint64_t steps;
  uint64_t crash_at;
  const void *required; /* FIXTURE_REQUIRE_SERVICE's table */
  char trace_file[FIXTURE_PATH_MAX]; /* empty: not recording */
#ifdef FIXTURE_MESSAGING
  fixture_messaging messaging;
#endif
#ifdef FIXTURE_STEP_OBSERVE
  int in_step, in_reconfigure; /* __atomic builtins: two host threads look */
  uint64_t config_seq, seen_seq;
#endif
} fixture;

#ifdef FIXTURE_CRASH_HOW
#include <unistd.h>
/* Ends the process the way FIXTURE_CRASH_HOW says; for the fault
 * containment tests. */
static void fixture_crash(void) {
#if FIXTURE_CRASH_HOW == 1
  volatile int *volatile nowhere = NULL;
  *nowhere = 42;
#elif FIXTURE_CRASH_HOW == 2
  abort();
#elif FIXTURE_CRASH_HOW == 3
  exit(3);
#elif FIXTURE_CRASH_HOW == 4
  for (;;) {
    sleep(1000);
  }
#else
#error "FIXTURE_CRASH_HOW must be 1 (SIGSEGV), 2 (abort), 3 (exit) or 4 (hang)"
#endif
}
#endif

static void set_error(char *err, size_t err_cap, const char *text) {
  if (err != NULL && err_cap > 0) {
    snprintf(err, err_cap, "%s", text);
  }
}

#ifdef FIXTURE_RECORD
/*
 * Copies the JSON string value of "trace_file" from `json` into `out`.
 * Returns 1 when found, 0 when the key is absent, -1 when malformed or too
 * long. Enough JSON for a test fixture: handles \" \\ \/ escapes only.
 */
static int find_trace_file(const char *json, size_t len, char *out,
                           size_t out_cap) {
  static const char key[] = "\"trace_file\"";
  const char *end = json + len;
  const char *p;
  size_t n = 0;
  if (json == NULL || len == 0) {
    return 0;
  }
  p = strstr(json, key);
  if (p == NULL || p >= end) {
    return 0;
  }
  p += sizeof key - 1;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
  if (p >= end || *p != ':') return -1;
  p++;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
  if (p >= end || *p != '"') return -1;
  p++;
  while (p < end && *p != '"') {
    char c = *p++;
    if (c == '\\') {
      if (p >= end) return -1;
      c = *p++;
      if (c != '"' && c != '\\' && c != '/') return -1;
    }
    if (n + 1 >= out_cap) return -1;
    out[n++] = c;
  }
  if (p >= end || n == 0) return -1;
  out[n] = '\0';
  return 1;
}

/* Appends "NAME:stage\n" to the trace file; returns 0 on success. */
static int record(const fixture *self, const char *stage) {
  FILE *f;
  int ok;
  if (self->trace_file[0] == '\0') {
    return 0;
  }
  f = fopen(self->trace_file, "a");
  if (f == NULL) {
    return -1;
  }
  ok = fprintf(f, "%s:%s\n", FIXTURE_NAME, stage) > 0;
  return (fclose(f) == 0 && ok) ? 0 : -1;
}
#ifdef FIXTURE_RECORD_CONFIG
/* Appends "NAME:config-WHEN JSON\n" to the trace file; returns 0 on success. */
static int record_config(const fixture *self, const char *when,
                         const char *json, size_t len) {
  FILE *f;
  int ok;
  if (self->trace_file[0] == '\0') {
    return 0;
  }
  if (len > 65536u) {
    len = 65536u; /* a test's configuration is small; the rest is cut */
  }
  f = fopen(self->trace_file, "a");
  if (f == NULL) {
    return -1;
  }
  ok = fprintf(f, "%s:config-%s %.*s\n", FIXTURE_NAME, when, (int)len,
               json != NULL ? json : "") > 0;
  return (fclose(f) == 0 && ok) ? 0 : -1;
}
#endif
#else
static int record(const fixture *self, const char *stage) {
  (void)self;
  (void)stage;
  return 0;
}
#endif

/* The service table a FIXTURE_REGISTER_SERVICE plugin registers and a
 * FIXTURE_REQUIRE_SERVICE plugin finds (same source, same layout). */
typedef struct fixture_service {
  uint32_t struct_size;
  uint32_t version;
  const char *provider;
  void (*poke)(void);
} fixture_service;

#ifdef FIXTURE_REGISTER_SERVICE
static void fixture_poke(void) {
#ifdef FIXTURE_SERVICE_CRASHES
  static int pokes;
  if (++pokes == 5) {
    fixture_crash();
  }
#endif
}
static const fixture_service fixture_service_table = {
    (uint32_t)sizeof(fixture_service), 1u, FIXTURE_NAME, fixture_poke};
#endif

static xplugin_status fixture_init(const xplugin_host_api *host,
                                   const char *config_json, size_t config_len,
                                   void **out_instance, char *err,
                                   size_t err_cap) {
  fixture *self;
  char line[FIXTURE_PATH_MAX + 256];
  (void)config_json;
  (void)config_len;
  (void)line;
  if (host == NULL || out_instance == NULL) {
    set_error(err, err_cap, FIXTURE_NAME ": init called with NULL arguments");
    return XPLUGIN_ERR_INVALID_ARG;
  }
#ifdef FIXTURE_CRASH_INIT
  fixture_crash();
#endif
  self = (fixture *)calloc(1, sizeof *self);
  if (self == NULL) {
    set_error(err, err_cap, FIXTURE_NAME ": out of memory");
    return XPLUGIN_ERR_NO_MEMORY;
  }
  self->host = host;

#ifdef FIXTURE_RECORD
  {
    int found = find_trace_file(config_json, config_len, self->trace_file,
                                sizeof self->trace_file);
    if (found < 0) {
      set_error(err, err_cap,
                FIXTURE_NAME ": config item \"trace_file\" must be a non-empty "
                "path string (escapes other than \\\" \\\\ \\/ not supported)");
      free(self);
      return XPLUGIN_ERR_CONFIG;
    }
    if (found == 0) {
      const char *dir = host->data_dir != NULL ? host->data_dir(host->host) : NULL;
      if (dir == NULL || dir[0] == '\0' ||
          snprintf(self->trace_file, sizeof self->trace_file, "%s/trace.log",
                   dir) >= (int)sizeof self->trace_file) {
        set_error(err, err_cap,
                  FIXTURE_NAME ": no \"trace_file\" in the config and no usable "
                  "data directory to write trace.log into");
        free(self);
        return XPLUGIN_ERR_CONFIG;
      }
    }
    if (record(self, "init") != 0
#ifdef FIXTURE_RECORD_CONFIG
        || record_config(self, "init", config_json, config_len) != 0
#endif
    ) {
      snprintf(line, sizeof line, FIXTURE_NAME ": cannot append to trace file %s",
               self->trace_file);
      set_error(err, err_cap, line);
      free(self);
      return XPLUGIN_ERR_IO;
    }
  }
#endif

#ifdef FIXTURE_REQUIRE_SERVICE
  {
    const void *iface = NULL;
    uint32_t version = 0;
    if (host->find_service == NULL ||
        host->find_service(host->host, FIXTURE_REQUIRE_SERVICE, &iface,
                           &version) != XPLUGIN_OK ||
        iface == NULL) {
      set_error(err, err_cap,
                FIXTURE_NAME ": required service \"" FIXTURE_REQUIRE_SERVICE
                "\" not found");
      free(self);
      return XPLUGIN_ERR_DEPENDENCY;
    }
    self->required = iface;
  }
#endif

#ifdef FIXTURE_REGISTER_SERVICE
  {
    xplugin_status status =
        host->register_service == NULL
            ? XPLUGIN_ERR_NOT_IMPLEMENTED
            : host->register_service(host->host, FIXTURE_REGISTER_SERVICE, 1u,
                                     &fixture_service_table);
    if (status != XPLUGIN_OK) {
      snprintf(line, sizeof line,
               FIXTURE_NAME ": cannot register service \"" FIXTURE_REGISTER_SERVICE
               "\" (status %d)",
               (int)status);
      set_error(err, err_cap, line);
      free(self);
      return status;
    }
  }
#endif

#ifdef FIXTURE_FAIL_INIT
  set_error(err, err_cap, FIXTURE_NAME ": deliberate failure in init (FIXTURE_FAIL_INIT)");
  free(self);
  return XPLUGIN_ERR_FAILED;
#else
  if (host->log != NULL) {
    host->log(host->host, XPLUGIN_LOG_INFO, FIXTURE_NAME ": initialised");
  }
  *out_instance = self;
  return XPLUGIN_OK;
#endif
}

/* Shared body of start and stop: record, then fail if built to fail. */
static xplugin_status fixture_stage(void *instance, const char *stage,
                                    int fail, char *err, size_t err_cap) {
  fixture *self = (fixture *)instance;
  char line[256];
  if (self == NULL) {
    set_error(err, err_cap, FIXTURE_NAME ": called with a NULL instance");
    return XPLUGIN_ERR_INVALID_ARG;
  }
  if (record(self, stage) != 0) {
    set_error(err, err_cap, FIXTURE_NAME ": cannot append to the trace file");
    return XPLUGIN_ERR_IO;
  }
  if (fail) {
    snprintf(line, sizeof line, FIXTURE_NAME ": deliberate failure in %s (FIXTURE_FAIL_%s)",
             stage, strcmp(stage, "start") == 0 ? "START" : "STOP");
    set_error(err, err_cap, line);
    return XPLUGIN_ERR_FAILED;
  }
  return XPLUGIN_OK;
}

#ifdef FIXTURE_MESSAGING
#define FIXTURE_TOPIC_SELF FIXTURE_NAME "/self"
#define FIXTURE_TOPIC_OTHER FIXTURE_NAME "/other"
#define FIXTURE_TOPIC_LATE FIXTURE_NAME "/late"

/* Counts its calls in the int `user` points to. */
static void on_count(void *user, const char *topic, const uint8_t *data,
                     size_t len) {
  (void)topic;
  (void)data;
  (void)len;
  (*(int *)user)++;
}

/* Calls the host back from inside its own delivery; see FIXTURE_MESSAGING. */
static void on_self(void *user, const char *topic, const uint8_t *data,
                    size_t len) {
  fixture *self = (fixture *)user;
  fixture_messaging *m = &self->messaging;
  const xplugin_host_api *host = self->host;
  m->self_calls++;
  if (m->self_calls > 1) {
    return; /* the nested delivery */
  }
  m->nested_publish = host->publish(host->host, topic, data, len);
  m->unsubscribe_other = host->unsubscribe(host->host, m->other_id);
  m->subscribe_late = host->subscribe(host->host, FIXTURE_TOPIC_LATE, on_count,
                                      &m->late_calls, &m->late_id);
  /* Used to deadlock: the host held this subscription's delivery lock. */
  m->unsubscribe_self = host->unsubscribe(host->host, m->self_id);
}

/* Runs the exercise; 0 when everything went as documented. */
static int fixture_messaging_run(fixture *self, char *err, size_t err_cap) {
  fixture_messaging *m = &self->messaging;
  const xplugin_host_api *host = self->host;
  char line[256];
  int ok;
  static const uint8_t payload[] = {'h', 'i'};
  memset(m, 0, sizeof *m);
  m->nested_publish = m->unsubscribe_other = m->subscribe_late =
      m->unsubscribe_self = XPLUGIN_ERR_FAILED;
  if (host->subscribe(host->host, FIXTURE_TOPIC_SELF, on_self, self,
                      &m->self_id) != XPLUGIN_OK ||
      host->subscribe(host->host, FIXTURE_TOPIC_OTHER, on_count,
                      &m->other_calls, &m->other_id) != XPLUGIN_OK) {
    set_error(err, err_cap, FIXTURE_NAME ": subscribe failed");
    return -1;
  }
  (void)host->publish(host->host, FIXTURE_TOPIC_SELF, payload, sizeof payload);
  /* None of these may reach an unsubscribed callback. */
  (void)host->publish(host->host, FIXTURE_TOPIC_SELF, payload, sizeof payload);
  (void)host->publish(host->host, FIXTURE_TOPIC_OTHER, payload, sizeof payload);
  (void)host->publish(host->host, FIXTURE_TOPIC_LATE, payload, sizeof payload);
  snprintf(line, sizeof line,
           "messaging self=%d other=%d late=%d status=%d,%d,%d,%d",
           m->self_calls, m->other_calls, m->late_calls,
           (int)m->nested_publish, (int)m->unsubscribe_other,
           (int)m->subscribe_late, (int)m->unsubscribe_self);
  (void)record(self, line);
  ok = m->self_calls == 2 && m->other_calls == 0 && m->late_calls == 1 &&
       m->nested_publish == XPLUGIN_OK && m->unsubscribe_other == XPLUGIN_OK &&
       m->subscribe_late == XPLUGIN_OK && m->unsubscribe_self == XPLUGIN_OK;
  if (!ok) {
    char text[300];
    snprintf(text, sizeof text, FIXTURE_NAME ": unexpected %s", line);
    set_error(err, err_cap, text);
    return -1;
  }
  return 0;
}
#endif

#ifdef FIXTURE_FAIL_START
#define FIXTURE_START_FAILS 1
#else
#define FIXTURE_START_FAILS 0
#endif
#ifdef FIXTURE_FAIL_STOP
#define FIXTURE_STOP_FAILS 1
#else
#define FIXTURE_STOP_FAILS 0
#endif

#ifdef FIXTURE_BUSY
/* ABI 1.1: only when the host's table has the field. */
static void fixture_set_busy(fixture *self, uint8_t busy) {
  const xplugin_host_api *host = self->host;
  if (host->struct_size >= offsetof(xplugin_host_api, set_busy) + sizeof host->set_busy &&
      host->set_busy != NULL) {
    (void)host->set_busy(host->host, busy);
  }
}
#endif

#ifdef FIXTURE_ON_LINK_TOPIC
#ifndef FIXTURE_ON_LINK_COUNT
#define FIXTURE_ON_LINK_COUNT 1
#endif
static void fixture_on_link(void *user, const char *topic, const uint8_t *data,
                            size_t len) {
  fixture *self = (fixture *)user;
  const xplugin_host_api *host = self->host;
  uint8_t payload[32];
  char line[160];
  int n;
  (void)topic;
  if (len < 2 || data[0] != 'u' || data[1] != 'p') {
    return;
  }
  memset(payload, 'x', sizeof payload);
  for (n = 0; n < FIXTURE_ON_LINK_COUNT; n++) {
    (void)host->publish(host->host, FIXTURE_ON_LINK_TOPIC, payload, sizeof payload);
  }
  snprintf(line, sizeof line, "%s: link up, published %d on %s", FIXTURE_NAME,
           n, FIXTURE_ON_LINK_TOPIC);
  host->log(host->host, XPLUGIN_LOG_INFO, line);
}
#endif

static xplugin_status fixture_start(void *instance, char *err, size_t err_cap) {
#ifdef FIXTURE_CRASH_START
  fixture_crash();
#endif
  xplugin_status status =
      fixture_stage(instance, "start", FIXTURE_START_FAILS, err, err_cap);
#ifdef FIXTURE_BUSY
  if (status == XPLUGIN_OK) {
    fixture_set_busy((fixture *)instance, 1);
  }
#endif
#ifdef FIXTURE_MESSAGING
  if (status == XPLUGIN_OK &&
      fixture_messaging_run((fixture *)instance, err, err_cap) != 0) {
    status = XPLUGIN_ERR_FAILED;
  }
#endif
#ifdef FIXTURE_ON_LINK_TOPIC
  if (status == XPLUGIN_OK) {
    fixture *self = (fixture *)instance;
    status = self->host->subscribe(self->host->host, "xplugin/link",
                                   fixture_on_link, self, NULL);
    if (status != XPLUGIN_OK) {
      set_error(err, err_cap, FIXTURE_NAME ": cannot subscribe to xplugin/link");
    }
  }
#endif
  return status;
}

static xplugin_status fixture_stop(void *instance, char *err, size_t err_cap) {
#ifdef FIXTURE_CRASH_STOP
  fixture_crash();
#endif
  return fixture_stage(instance, "stop", FIXTURE_STOP_FAILS, err, err_cap);
}

#ifdef FIXTURE_STEP
#ifdef FIXTURE_STEP_SPIN_US
static uint64_t fixture_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#endif

static xplugin_status fixture_step(void *instance, uint64_t cycle, uint64_t now_ns) {
  fixture *self = (fixture *)instance;
  (void)now_ns;
  if (self == NULL) {
    return XPLUGIN_ERR_INVALID_ARG;
  }
  self->steps++;
#ifdef FIXTURE_STEP_OBSERVE
  __atomic_store_n(&self->in_step, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&self->in_reconfigure, __ATOMIC_SEQ_CST)) {
    (void)record(self, "OVERLAP step while reconfigure runs");
  }
  {
    uint64_t seq = __atomic_load_n(&self->config_seq, __ATOMIC_SEQ_CST);
    if (seq != self->seen_seq) {
      char line[96];
      self->seen_seq = seq;
      snprintf(line, sizeof line, "step-sees-config %llu cycle %llu",
               (unsigned long long)seq, (unsigned long long)cycle);
      (void)record(self, line);
    }
  }
#endif
#if defined(FIXTURE_CRASH_STEP) && defined(FIXTURE_CRASH_RANDOM)
  if (self->steps == 1) {
    self->crash_at = 1 + (now_ns / 1000u) % (uint64_t)(FIXTURE_CRASH_STEP);
  }
  if (self->steps == self->crash_at) {
    fixture_crash();
  }
#elif defined(FIXTURE_CRASH_STEP)
  if (self->steps == (uint64_t)(FIXTURE_CRASH_STEP)) {
    fixture_crash();
  }
#endif
#if defined(FIXTURE_STEP_POKES) && defined(FIXTURE_REQUIRE_SERVICE)
  ((const fixture_service *)self->required)->poke();
#endif
#ifdef FIXTURE_STEP_CHATTY
  {
    uint8_t payload[8];
    size_t i;
    for (i = 0; i < 8; i++) {
      payload[i] = (uint8_t)(cycle >> (8 * i));
    }
    self->host->log(self->host->host, XPLUGIN_LOG_DEBUG, FIXTURE_NAME ": step");
    (void)self->host->publish(self->host->host, FIXTURE_NAME "/step", payload,
                              sizeof payload);
  }
#else
  (void)cycle;
#endif
#ifdef FIXTURE_STEP_SPIN_US
  {
    uint64_t until = fixture_now_ns() + (uint64_t)(FIXTURE_STEP_SPIN_US) * 1000u;
    while (fixture_now_ns() < until) {
    }
  }
#endif
#if defined(FIXTURE_BUSY) && defined(FIXTURE_BUSY_STEPS)
  if (self->steps == (uint64_t)(FIXTURE_BUSY_STEPS)) {
    fixture_set_busy(self, 0);
  }
#endif
#ifdef FIXTURE_STEP_OBSERVE
  __atomic_store_n(&self->in_step, 0, __ATOMIC_SEQ_CST);
#endif
#ifdef FIXTURE_STEP_FAIL
  return XPLUGIN_ERR_FAILED;
#else
  return XPLUGIN_OK;
#endif
}
#define FIXTURE_STEP_FN fixture_step
#else
#define FIXTURE_STEP_FN NULL
#endif

#ifndef FIXTURE_NO_RECONFIGURE
static xplugin_status fixture_reconfigure_checks(void *instance,
                                                 const char *config_json,
                                                 size_t config_len, char *err,
                                                 size_t err_cap) {
  (void)config_json;
  (void)config_len;
#ifdef FIXTURE_RECORD_CONFIG
  if (instance != NULL &&
      record_config((const fixture *)instance, "reconfigure", config_json,
                    config_len) != 0) {
    set_error(err, err_cap, FIXTURE_NAME ": cannot append to the trace file");
    return XPLUGIN_ERR_IO;
  }
#endif
#ifdef FIXTURE_RECONFIGURE_REFUSE
  /* config_json is NUL-terminated (as for init). */
  if (config_json != NULL && strstr(config_json, FIXTURE_RECONFIGURE_REFUSE) != NULL) {
    set_error(err, err_cap,
              FIXTURE_NAME ": refuses a configuration holding " FIXTURE_RECONFIGURE_REFUSE);
    return XPLUGIN_ERR_INVALID_ARG;
  }
#endif
#ifdef FIXTURE_RECONFIGURE_SLEEP_US
  {
    struct timespec ts;
    ts.tv_sec = (time_t)((FIXTURE_RECONFIGURE_SLEEP_US) / 1000000);
    ts.tv_nsec = (long)(((FIXTURE_RECONFIGURE_SLEEP_US) % 1000000) * 1000);
    nanosleep(&ts, NULL);
  }
#endif
  return fixture_stage(instance, "reconfigure", 0, err, err_cap);
}

static xplugin_status fixture_reconfigure(void *instance,
                                          const char *config_json,
                                          size_t config_len, char *err,
                                          size_t err_cap) {
  xplugin_status status;
#ifdef FIXTURE_STEP_OBSERVE
  fixture *self = (fixture *)instance;
  if (self != NULL) {
    __atomic_store_n(&self->in_reconfigure, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&self->in_step, __ATOMIC_SEQ_CST)) {
      (void)record(self, "OVERLAP reconfigure while step runs");
    }
  }
#endif
  status = fixture_reconfigure_checks(instance, config_json, config_len, err,
                                      err_cap);
#ifdef FIXTURE_STEP_OBSERVE
  if (self != NULL) {
    if (status == XPLUGIN_OK) {
      __atomic_add_fetch(&self->config_seq, 1, __ATOMIC_SEQ_CST);
    }
    __atomic_store_n(&self->in_reconfigure, 0, __ATOMIC_SEQ_CST);
  }
#endif
  return status;
}
#define FIXTURE_RECONFIGURE_FN fixture_reconfigure
#else
#define FIXTURE_RECONFIGURE_FN NULL
#endif

static void fixture_destroy(void *instance) {
  fixture *self = (fixture *)instance;
  if (self != NULL) {
    (void)record(self, "destroy");
    free(self);
  }
}

static const xplugin_descriptor fixture_descriptor = {
    XPLUGIN_MAGIC,
    FIXTURE_ABI_MAJOR,
    XPLUGIN_ABI_MINOR,
    (uint32_t)sizeof(xplugin_descriptor),
    FIXTURE_KIND,
    FIXTURE_NAME,
    FIXTURE_VERSION,
    fixture_init,
    fixture_start,
    fixture_stop,
    fixture_destroy,
    FIXTURE_RECONFIGURE_FN,
    FIXTURE_STEP_FN,
    NULL, /* idle */
    NULL, /* render (ABI 1.1) */
};

XPLUGIN_EXPORT const xplugin_descriptor *xplugin_entry(void) {
  return &fixture_descriptor;
}
