#pragma once
// A full-size problem on the device for timing candidates: every buffer filled with fresh uniform
// random values by a device kernel (never zeros), and a uniform random top-k routing sorted by
// expert as SPEC.md's routing convention describes.
#include <cstdint>
#include <vector>

#include "autotune/cuda_driver.hpp"
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
  TuningProblem(const ProjectionSpec& spec, std::int64_t tokens, std::uint64_t seed = 1);
  const ForwardParams& params() const { return params_; }

 private:
  cuda::DeviceBuffer x_, w_, a_, b_, bias_, offsets_, scattered_, y_;
  ForwardParams params_{};
};

}  // namespace moejit
