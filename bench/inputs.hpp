#pragma once
// Device inputs of one projection for the benchmark: uniform random top-k routing sorted by expert
// (SPEC.md "Routing"), random never-zero activations, LoRA factors and dY, base weights in the
// spec's format (bench/weights.hpp), and the outputs and scratch of the forward and the backward.
#include <cstdint>
#include <vector>

#include "autotune/cuda_driver.hpp"
#include "bench/fill.hpp"
#include "bench/weights.hpp"
#include "compiler/problem.hpp"
#include "runtime/runtime.hpp"

namespace moejit::bench {

// Host routing for T tokens, each choosing top_k distinct experts uniformly at random.
struct Routing {
  std::vector<std::int32_t> sorted_expert_idxs;     // [T*k], non-decreasing
  std::vector<std::int32_t> sorted_scattered_idxs;  // [T*k], slot t*k+j of each grouped row
  std::vector<std::int32_t> expert_offsets;         // [E], inclusive cumulative ends
};
Routing random_routing(std::int64_t tokens, int experts, int top_k, std::uint64_t seed);

// Owns every device buffer of one forward (and, when asked, backward) call; freed when it goes out
// of scope.
class ProblemInputs {
 public:
  ProblemInputs(const ProjectionSpec& spec, std::int64_t tokens, Fill fill, std::uint64_t seed,
                bool with_backward);
  // Pointers for Runtime::forward, with scale 2 (lora_alpha = 2r, a common PEFT choice); with
  // `save_xa` the forward also writes x*A^T for the backward.
  ForwardArgs forward_args(bool save_xa) const;
  // Pointers for Runtime::backward of that forward, reading the saved x*A^T.
  BackwardArgs backward_args() const;
  // Device memory the training step needs beyond its inputs and outputs: the backward workspace
  // and the saved x*A^T.
  std::size_t extra_bytes() const;
  // Sets every byte of the outputs to 0xFF (bf16/fp16 NaN) so unwritten values are visible.
  void poison_outputs();
  // Non-finite values among the first `max_rows` rows of y, resp. of dx plus all of dA and dB
  // (downloads them).
  std::int64_t count_nonfinite_forward(std::int64_t max_rows) const;
  std::int64_t count_nonfinite_backward(std::int64_t max_rows) const;

 private:
  ProjectionSpec spec_;
  std::int64_t tokens_;
  BaseWeights weights_;
  cuda::DeviceBuffer x_, lora_a_, lora_b_, bias_, y_;
  cuda::DeviceBuffer sorted_expert_idxs_, sorted_scattered_idxs_, expert_offsets_;
  cuda::DeviceBuffer xa_, dy_, dx_, da_, db_, workspace_;  // empty without the backward
};

}  // namespace moejit::bench
