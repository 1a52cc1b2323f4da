/*
 * plugindemo_motion.h — the "plugindemo.motion" service of the plugindemo
 * controller plugin.
 *
 * The plugindemo controller plugin registers a static table of this type with
 * the host under the name PLUGINDEMO_MOTION_SERVICE. A plugin that declares
 * `depend` on plugindemo finds it in its own init:
 *
 *   const void *iface = NULL;
 *   uint32_t version = 0;
 *   if (api->find_service(api->host, PLUGINDEMO_MOTION_SERVICE, &iface, &version) == XPLUGIN_OK
 *       && version == PLUGINDEMO_MOTION_VERSION) { ... }
 *
 * Evolution follows the xplugin rules: fields are only appended, and a user
 * reads a field only if `struct_size` covers it. An incompatible change bumps
 * `version` (which is also the iface_version given to register_service).
 *
 * The Rust definition lives in examples/plugindemo-controller/src/motion_service.rs;
 * the abi_layout test compares the two.
 */
#ifndef PLUGINDEMO_MOTION_H
#define PLUGINDEMO_MOTION_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Service name to pass to find_service. */
#define PLUGINDEMO_MOTION_SERVICE "plugindemo.motion"
/** Interface version this header describes. */
#define PLUGINDEMO_MOTION_VERSION 1u

typedef struct plugindemo_motion_service {
  uint32_t struct_size; /* sizeof(plugindemo_motion_service) as the provider knows it */
  uint32_t version;     /* PLUGINDEMO_MOTION_VERSION */
  /** Number of controller cycles (`step` calls) since the provider's init. Real-time safe. */
  uint64_t (*get_cycle_count)(void);
  /**
   * Applies the controller's configured speed override (0.0 ..= 1.0) to a
   * requested speed and returns the speed the controller will use. Real-time safe.
   */
  double (*scale_speed)(double requested);
} plugindemo_motion_service;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PLUGINDEMO_MOTION_H */
