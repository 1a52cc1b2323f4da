/*
 * dlopen_floor.c — the floor of a plugin boot: open every library given on
 * the command line with dlopen(RTLD_NOW | RTLD_LOCAL), exactly as xplugin's
 * loader does, and resolve `xplugin_entry`. Nothing else: no checks, no
 * hashing, no lifecycle calls, never dlclose (xplugin never unloads either).
 *
 *   cc -std=c99 -O2 -o dlopen-floor bench/c/dlopen_floor.c -ldl
 *   dlopen-floor a.so b.so ...
 *
 * Exits 1 naming the library if any dlopen or dlsym fails, so a benchmark of
 * a broken set cannot pass for a fast one.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
  int failed = 0;
  for (int i = 1; i < argc; i++) {
    void *handle = dlopen(argv[i], RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
      fprintf(stderr, "dlopen-floor: %s\n", dlerror());
      failed = 1;
      continue;
    }
    if (dlsym(handle, "xplugin_entry") == NULL) {
      fprintf(stderr, "dlopen-floor: %s: no xplugin_entry\n", argv[i]);
      failed = 1;
    }
  }
  return failed;
}
