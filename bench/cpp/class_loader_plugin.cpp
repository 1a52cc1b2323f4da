// class_loader_plugin.cpp — one generated ROS class_loader plugin library,
// the peer of bench/c/bench_plugin.c: same lifecycle. bench/gen.py compiles it
// once per class name (with a precompiled class_loader header, to keep 500
// compiles short) and links it with an object holding the same random padding
// the xplugin plugin of that index embeds, so both loaders map the same size:
//
//   g++ -std=c++17 -O2 -fPIC -I bench/cpp -I /usr/include/class_loader \
//       -I /usr/include/rcpputils -I /usr/include/rcutils \
//       -DBENCH_CLASS=BenchPlugin_p0001 -c -o p0001.o bench/cpp/class_loader_plugin.cpp
//   g++ -shared -o libp0001.so p0001.o padding.o \
//       -lclass_loader -lrcpputils -lrcutils -lconsole_bridge
//
// Each library registers one class with a unique name (class_loader's
// factories are keyed by class name, process-wide).
#include <class_loader/class_loader.hpp>

#include "bench_plugin_base.hpp"

#ifndef BENCH_CLASS
#error "define BENCH_CLASS, e.g. -DBENCH_CLASS=BenchPlugin_p0001"
#endif

class BENCH_CLASS : public BenchPlugin {
public:
  int init() override {
    steps_ = 0;
    return 0;
  }
  int start() override { return 0; }
  int step(std::uint64_t cycle) override {
    steps_++;
    last_cycle_ = cycle;
    return 0;
  }
  int stop() override { return 0; }

private:
  std::uint64_t steps_ = 0;
  std::uint64_t last_cycle_ = 0;
};

CLASS_LOADER_REGISTER_CLASS(BENCH_CLASS, BenchPlugin)
