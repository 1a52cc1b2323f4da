/*
 * uikit_widgets.h — the "uikit.widgets" service of the uikit client plugin.
 *
 * uikit registers a static table of this type under UIKIT_WIDGETS_SERVICE.
 * Client plugins that declare `depend: ["uikit"]` find it in their init with
 * find_service and add their widgets to the pendant's UI through it.
 * Append-only evolution: read a field only if `struct_size` covers it; an
 * incompatible change bumps `version`.
 *
 * The Rust definition is examples/uikit-client/src/widgets_service.rs; the
 * abi_layout test compares the two.
 */
#ifndef UIKIT_WIDGETS_H
#define UIKIT_WIDGETS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UIKIT_WIDGETS_SERVICE "uikit.widgets"
#define UIKIT_WIDGETS_VERSION 1u

typedef struct uikit_widgets_service {
  uint32_t struct_size; /* sizeof(uikit_widgets_service) as the provider knows it */
  uint32_t version;     /* UIKIT_WIDGETS_VERSION */
  /**
   * Adds a button labelled `label` (UTF-8, copied) owned by plugin `owner`
   * and writes its id. Returns an xplugin status (0 = ok,
   * XPLUGIN_ERR_INVALID_ARG for NULL or non-UTF-8 strings).
   */
  int32_t (*add_button)(const char *owner, const char *label,
                        uint32_t *out_widget_id);
  /** Number of widgets added so far. */
  uint32_t (*widget_count)(void);
} uikit_widgets_service;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* UIKIT_WIDGETS_H */
