#pragma once
// A floor under the run time of any kernel for one GEMM candidate, from counting alone: the tiles
// of the routing being timed, spread as evenly as possible over the SMs, each SM running its
// tiles' tensor-core products at the device's peak rate. No kernel can beat it, so once the best
// measured time is below a candidate's floor that candidate cannot win (autotune's early stop).
#include <cstdint>
#include <vector>

#include "compiler/problem.hpp"
#include "compiler/tile_config.hpp"

namespace moejit {

struct TensorPeak {
  int sm_count = 0;
  double clock_khz = 0;        // the device's reported (boost) clock
  int flops_per_sm_clock = 0;  // dense 16-bit tensor-core FLOPs per SM per clock; 0: unknown
};
// The peak for compute capability `major`.`minor`: 4096 FLOPs per SM per clock on sm_90 (wgmma),
// 2048 on sm_80, 1024 on sm_86 / sm_89; 0 (no floor) elsewhere. It must never be below the real
// rate, or the early stop could skip a candidate that wins.
TensorPeak tensor_peak(int major, int minor, int sm_count, double clock_khz);

// Milliseconds: ceil(tiles / SMs) tiles of 2 * block_m * block_n * K' FLOPs (K' = K rounded up to
// block_k) at the peak rate, where tiles = sum over experts of ceil(rows_e / block_m) times
// ceil(N / block_n). `expert_offsets` are the inclusive cumulative row ends. 0 for ops other than
// the GEMMs (forward, backward_dx) and for an unknown peak.
double time_floor_ms(const ProjectionSpec& spec, const TileConfig& config,
                     const std::vector<std::int64_t>& expert_offsets, const TensorPeak& peak);

}  // namespace moejit
