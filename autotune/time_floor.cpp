#include "autotune/time_floor.hpp"

#include "compiler/kernel_view.hpp"

namespace moejit {

TensorPeak tensor_peak(int major, int minor, int sm_count, double clock_khz) {
  int flops = 0;
  if (major == 9 && minor == 0) flops = 4096;
  if (major == 8 && minor == 0) flops = 2048;
  if (major == 8 && (minor == 6 || minor == 9)) flops = 1024;
  return TensorPeak{sm_count, clock_khz, flops};
}

double time_floor_ms(const ProjectionSpec& spec, const TileConfig& config,
                     const std::vector<std::int64_t>& expert_offsets, const TensorPeak& peak) {
  if (family_of(spec.op) != KernelFamily::gemm || peak.flops_per_sm_clock <= 0 ||
      peak.sm_count <= 0 || peak.clock_khz <= 0)
    return 0;
  const GemmView v = gemm_view(spec);
  std::int64_t row_tiles = 0, begin = 0;
  for (const std::int64_t end : expert_offsets) {
    // A cluster runs its CTAs' row tiles in step, whether they hold rows or not.
    const std::int64_t cluster_rows = std::int64_t{config.block_m} * config.cluster_m;
    row_tiles += (end - begin + cluster_rows - 1) / cluster_rows * config.cluster_m;
    begin = end;
  }
  const std::int64_t tiles = row_tiles * ((v.n + config.block_n - 1) / config.block_n);
  const std::int64_t tiles_on_busiest_sm = (tiles + peak.sm_count - 1) / peak.sm_count;
  const std::int64_t k_padded = (v.k + config.block_k - 1) / config.block_k * config.block_k;
  const double flops = 2.0 * static_cast<double>(tiles_on_busiest_sm) * config.block_m *
                       config.block_n * static_cast<double>(k_padded);
  const double clocks = flops / peak.flops_per_sm_clock;
  return clocks / peak.clock_khz;  // kHz: clocks per millisecond
}

}  // namespace moejit
