#pragma once
// What one moejit_bench invocation measures, parsed from the command line.
#include <cstdint>
#include <filesystem>
#include <vector>

#include "bench/timing.hpp"
#include "runtime/presets.hpp"

namespace moejit::bench {

struct BenchOptions {
  std::vector<ModelPreset> presets;     // the rows' shapes, in order
  std::vector<Projection> projections;  // per preset
  std::int64_t tokens = 8192;
  int rank = 16;
  std::filesystem::path cache;  // empty: a fresh cache per row, cold-tuned and timed
  TimingOptions timing;
  bool first_launch_child = true;  // measure the warm first launch in a child process per row
  std::uint64_t seed = 1;
  std::filesystem::path self_exe;  // this program, started again for the first-launch child
};

}  // namespace moejit::bench
