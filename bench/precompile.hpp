#pragma once
// The untuned rows (weights not in --tune-weights) run the runtime's default configs: their
// kernels are compiled ahead of the measurements, several rows at once, so that rows which are not
// autotuned cost the run seconds rather than a cold tune each.
#include <filesystem>
#include <vector>

#include "bench/options.hpp"

namespace moejit::bench {

struct PrecompileJob {
  RowSpec row;
  std::filesystem::path cache;
};

// Fills each job's cache with the default-config kernels of its forward (and backward ops), one
// job per core at a time. A job that fails is left for the row's own measurement to repeat and
// report.
void precompile_untuned(const BenchOptions& options, const std::vector<PrecompileJob>& jobs);

}  // namespace moejit::bench
