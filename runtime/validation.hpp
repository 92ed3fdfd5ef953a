#pragma once
// SPEC.md "Input checks": violations are reported with the argument, its value and the
// expectation before anything is launched.
#include <cuda.h>

#include <cstdint>

#include "compiler/problem.hpp"
#include "runtime/runtime.hpp"

namespace moejit {

// Checks the spec and the pointers (present, 16-byte aligned, bias iff spec.has_bias) and tokens.
void validate_forward_args(const ProjectionSpec& spec, const ForwardArgs& args);

// Checks the pointers of a backward call (spec.op must be forward: the forward being
// differentiated) and that the workspace holds backward_workspace_bytes(spec, tokens).
void validate_backward_args(const ProjectionSpec& spec, const BackwardArgs& args);

struct RoutingPointers {
  const void* expert_offsets;
  const void* sorted_scattered_idxs;
  const void* sorted_expert_idxs;  // may be null
};

// Copies the routing to the host (synchronizing `stream`) and checks it: expert_offsets
// non-decreasing with the last equal to T*k, scattered indices in [0, T*k), sorted_expert_idxs (if
// given) consistent with the offsets.
void validate_routing(const ProjectionSpec& spec, std::int64_t tokens, const RoutingPointers& r,
                      CUstream stream);

}  // namespace moejit
