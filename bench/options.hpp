#pragma once
// What one moejit_bench invocation measures, parsed from the command line.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "bench/timing.hpp"
#include "bench/weights.hpp"
#include "compiler/tile_config.hpp"
#include "runtime/presets.hpp"

namespace moejit::bench {

// One row of the table: a model's projection at a token count with one base-weight format.
struct RowSpec {
  ModelPreset preset;
  Projection projection = Projection::gate_up;
  std::int64_t tokens = 0;
  BenchWeights weights = BenchWeights::bf16;
};

struct BenchOptions {
  bool tunes(BenchWeights weights) const {
    return std::ranges::find(tune_weights, weights) != tune_weights.end();
  }

  std::vector<RowSpec> rows;  // in order, each once
  int rank = 16;
  std::filesystem::path cache;  // empty: a fresh cache per row, cold-tuned and timed
  TimingOptions timing;
  bool backward = true;  // also tune the backward ops and time forward + backward
  // Rows whose weights are listed here are autotuned (and their cold tune timed); the others run
  // the runtime's default configs, compiled ahead in parallel (bench/precompile.hpp).
  std::vector<BenchWeights> tune_weights = {BenchWeights::bf16, BenchWeights::nf4,
                                            BenchWeights::nf4_dq, BenchWeights::int8};
  // Rows whose weights are listed here also get the warm first-launch child.
  std::vector<BenchWeights> first_launch_weights = {BenchWeights::bf16};
  // The config the forward and dX of untuned rows run instead of the default (a kernel on trial).
  std::optional<TileConfig> gemm_config;
  int grad_b_sms = -1;  // RuntimeOptions::grad_b_sms of every row
  std::uint64_t seed = 1;
  // The LoRA B storage of every row (SPEC.md "LoRA factors"); PEFT's is what users have.
  BStorage b_storage = BStorage::peft;
  std::filesystem::path self_exe;  // this program, started again for the first-launch child
};

// The problem of a row: its preset's projection at the options' rank and B storage, with its
// weights.
inline ProjectionSpec row_spec(const RowSpec& row, const BenchOptions& o) {
  ProjectionSpec spec =
      with_weights(projection_spec(row.preset, row.projection, o.rank), row.weights);
  spec.b_storage = o.b_storage;
  return spec;
}

}  // namespace moejit::bench
