#pragma once
// The float64 oracle of the fused MoE-LoRA forward (SPEC.md "Ops"), computed from the same stored
// inputs the GPU reads. Written for obviousness, not speed: one output element at a time.
#include <cstdint>
#include <vector>

#include "compiler/problem.hpp"
#include "tests/support/host_tensor.hpp"
#include "tests/support/routing.hpp"

namespace moejit::test {

// Everything one forward call reads, as stored.
struct ForwardInputs {
  HostTensor x;     // [T, K], or [T*k, K] when grouped_in; act dtype
  HostTensor w;     // [E, N, K] (out_in) or [E, K, N] (in_out); weights dtype = act dtype
  HostTensor a;     // [E*r, K], lora dtype
  HostTensor b;     // peft [N, r*E], expert_major [N, E*r] or stacked [E, N, r]; lora dtype
  HostTensor bias;  // [E, N] act dtype, or empty
  Routing routing;
  float scale = 1.0f;
};

// Y as [T*k, N] row-major: row i is grouped row i when grouped_out, else slot order.
// Supports the bf16 and fp16 weight formats; splits the rows over `threads` threads.
std::vector<double> reference_forward(const ProjectionSpec& spec, const ForwardInputs& in,
                                      int threads = 1);

}  // namespace moejit::test
