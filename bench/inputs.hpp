#pragma once
// Device inputs of one forward problem for the benchmark: uniform random top-k routing sorted by
// expert (SPEC.md "Routing") and random, never zero, activations, weights and LoRA factors.
#include <cstdint>
#include <vector>

#include "autotune/cuda_driver.hpp"
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

// How the floating-point buffers are filled: `random` draws fresh values on the host (all threads)
// and uploads them; `pattern` sets every byte to one non-zero value on the device, for runs that
// must not spend their time generating data (the first-launch measurement).
enum class Fill { random, pattern };

// Owns every device buffer of one forward call; freed when it goes out of scope.
class ForwardInputs {
 public:
  ForwardInputs(const ProjectionSpec& spec, std::int64_t tokens, Fill fill, std::uint64_t seed);
  // Pointers for Runtime::forward, with scale 2 (lora_alpha = 2r, a common PEFT choice).
  ForwardArgs args() const;
  // Sets every byte of the output to 0xFF (bf16/fp16 NaN) so unwritten rows are visible.
  void poison_output();
  // Counts non-finite values among the first `max_rows` output rows (downloads them).
  std::int64_t count_nonfinite_output(std::int64_t max_rows) const;

 private:
  ProjectionSpec spec_;
  std::int64_t tokens_;
  cuda::DeviceBuffer x_, w_, lora_a_, lora_b_, bias_, y_;
  cuda::DeviceBuffer sorted_expert_idxs_, sorted_scattered_idxs_, expert_offsets_;
};

}  // namespace moejit::bench
