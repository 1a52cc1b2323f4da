// class_loader_boot.cpp — the ROS class_loader peer of `xplugin-controller
// boot`: for every library on the command line, a class_loader::ClassLoader
// (which dlopens it), discovery of its BenchPlugin class and createInstance;
// then init all in order, start all, stop all in reverse, destroy all.
//
// Like xplugin, it does not unload the libraries: after destroying the
// instances it leaves with _exit(0), so neither side pays for dlclose. It
// does no integrity or license check: class_loader has none.
//
// Exits 1 naming the library if anything fails, so a broken set cannot pass
// for a fast one.
#include <class_loader/class_loader.hpp>

#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include "bench_plugin_base.hpp"

int main(int argc, char **argv) {
  std::vector<std::unique_ptr<class_loader::ClassLoader>> loaders;
  std::vector<std::shared_ptr<BenchPlugin>> instances;
  loaders.reserve(static_cast<std::size_t>(argc));
  instances.reserve(static_cast<std::size_t>(argc));
  try {
    for (int i = 1; i < argc; i++) {
      auto loader = std::make_unique<class_loader::ClassLoader>(argv[i], false);
      std::vector<std::string> classes = loader->getAvailableClasses<BenchPlugin>();
      if (classes.size() != 1) {
        std::fprintf(stderr, "class-loader-boot: %s: expected 1 BenchPlugin class, found %zu\n",
                     argv[i], classes.size());
        return 1;
      }
      std::shared_ptr<BenchPlugin> instance = loader->createInstance<BenchPlugin>(classes[0]);
      if (instance->init() != 0) {
        std::fprintf(stderr, "class-loader-boot: %s: init failed\n", argv[i]);
        return 1;
      }
      instances.push_back(std::move(instance));
      loaders.push_back(std::move(loader));
    }
  } catch (const std::exception &e) {
    std::fprintf(stderr, "class-loader-boot: %s\n", e.what());
    return 1;
  }
  for (auto &p : instances) {
    if (p->start() != 0) {
      return 1;
    }
  }
  for (auto it = instances.rbegin(); it != instances.rend(); ++it) {
    if ((*it)->stop() != 0) {
      return 1;
    }
  }
  while (!instances.empty()) {
    instances.pop_back();
  }
  std::fflush(stdout);
  _exit(0);
}
