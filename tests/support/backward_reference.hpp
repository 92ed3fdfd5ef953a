#pragma once
// The float64 oracle of the MoE-LoRA backward (SPEC.md "Ops", backward), computed from the same
// stored inputs the GPU reads. Like reference_forward, written for obviousness, not speed.
#include <cstdint>
#include <vector>

#include "compiler/problem.hpp"
#include "tests/support/host_tensor.hpp"
#include "tests/support/reference.hpp"
#include "tests/support/routing.hpp"

namespace moejit::test {

// What the backward reads, as doubles: the double-precision entry point, for checks (finite
// differences) that need values no 16-bit or fp32 tensor holds. Shapes as in ForwardInputs.
struct DoubleInputs {
  std::vector<double> x, w, a, b;
  Routing routing;
  double scale = 1.0;
};
DoubleInputs to_double(const ForwardInputs& in);

// The gradients, each laid out like the tensor the GPU writes.
struct BackwardReference {
  std::vector<double> dx;  // [T*k, K] in grouped-row order when grouped_in, else [T, K]
  std::vector<double> da;  // A's storage: [E*r, K]
  std::vector<double> db;  // B's storage (peft, expert_major or stacked), N*r per expert
  std::vector<double>
      xa;  // x*A_e^T, unscaled, [T*k, r] in grouped-row order (ForwardArgs::save_xa)
};

// dy holds T*k rows of N in the forward output's order: row i is grouped row i when grouped_out,
// else slot order. Supports the bf16 and fp16 weight formats; the bias gets no gradient. Splits
// the work over `threads` threads. Throws std::invalid_argument when a size disagrees with spec.
BackwardReference reference_backward(const ProjectionSpec& spec, const DoubleInputs& in,
                                     const std::vector<double>& dy, int threads = 1);
BackwardReference reference_backward(const ProjectionSpec& spec, const ForwardInputs& in,
                                     const HostTensor& dy, int threads = 1);

// Flat index of B_e[o, j] in B's storage (SPEC.md "LoRA factors"); dB uses the same layout.
std::int64_t b_storage_index(const ProjectionSpec& spec, int expert, int out, int rank_index);

}  // namespace moejit::test
