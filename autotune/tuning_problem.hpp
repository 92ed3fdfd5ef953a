#pragma once
// A full-size problem on the device for timing candidates of one op: every buffer filled with
// fresh uniform random values by a device kernel (never zeros), and a uniform random top-k routing
// sorted by expert as SPEC.md's routing convention describes.
#include <cstdint>
#include <vector>

#include "autotune/cuda_driver.hpp"
#include "autotune/launch.hpp"
#include "compiler/problem.hpp"
#include "templates/moejit/params.h"

namespace moejit {

// Uniform random routing of `tokens` tokens to `top_k` distinct experts each, sorted by expert.
struct Routing {
  std::vector<std::int64_t> sorted_expert_idxs;
  std::vector<std::int64_t> sorted_scattered_idxs;
  std::vector<std::int64_t> expert_offsets;
};
Routing uniform_routing(int experts, int top_k, std::int64_t tokens, std::uint64_t seed);

// Index values as the bytes of an int32 or int64 tensor.
std::vector<char> index_bytes(const std::vector<std::int64_t>& values, IndexType type);

class TuningProblem {
 public:
  // Buffers for the op of `spec` (forward, backward_dx, grad_a or grad_b).
  TuningProblem(const ProjectionSpec& spec, std::int64_t tokens, std::uint64_t seed = 1);
  void launch(const KernelHandle& kernel, CUstream stream) const;
  // Poisons what the op writes (y, or dA / dB), runs `kernel` and reads back the first
  // `max_elements` of it (y rows in order), widened to float, for comparing configs.
  std::vector<float> run_and_read(const KernelHandle& kernel, CUstream stream,
                                  std::size_t max_elements) const;
  // The routing's inclusive cumulative row ends per expert.
  const std::vector<std::int64_t>& expert_offsets() const { return expert_offsets_; }

 private:
  ProjectionSpec spec_;
  std::int64_t rows_ = 0;
  std::vector<std::int64_t> expert_offsets_;
  std::vector<cuda::DeviceBuffer> buffers_;
  ForwardParams gemm_{};
  LoraGradParams grad_{};
};

}  // namespace moejit
