// bench_plugin_base.hpp — the interface of the class_loader peer plugins of
// the benchmark suite: the same lifecycle an xplugin controller plugin has
// (init, start, cyclic step, stop; destroy = delete).
#ifndef XPLUGIN_BENCH_PLUGIN_BASE_HPP
#define XPLUGIN_BENCH_PLUGIN_BASE_HPP

#include <cstdint>

class BenchPlugin {
public:
  virtual ~BenchPlugin() = default;
  virtual int init() = 0;
  virtual int start() = 0;
  virtual int step(std::uint64_t cycle) = 0;
  virtual int stop() = 0;
};

#endif
