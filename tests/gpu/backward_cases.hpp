#pragma once
// The backward sweep's cases: a fixed-seed random sample over every axis of SPEC.md's backward
// (shapes that are multiples of 8 but of no tile, ranks, experts, top-k, tokens, layouts, B
// storages, dtypes, groupings, index widths, routings, with and without the forward's saved x*A^T)
// and targeted edge cases. The Runtime picks the kernels (untuned), so a case has no tile config.
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/problem.hpp"
#include "tests/support/host_tensor.hpp"
#include "tests/support/routing.hpp"

namespace moejit::test {

struct BackwardCase {
  ProjectionSpec spec;  // op == forward: the projection whose backward runs
  std::int64_t tokens = 0;
  RoutingKind routing = RoutingKind::uniform;
  std::uint64_t seed = 0;  // inputs as make_inputs(spec, tokens, routing, seed), dY from make_dy
  bool save_xa = false;    // the forward saves x*A^T and the backward reads it

  // Everything needed to rerun the case alone.
  std::string describe() const;
};

// dY: T*k rows of N drawn from U(-1, 1) in the act dtype, from a generator derived from the seed.
HostTensor make_dy(const BackwardCase& c);

// A forward spec of E experts, top-k, K -> N and rank r, every other field at its default.
ProjectionSpec base_spec(int experts, int top_k, int k, int n, int rank);

// `count` cases drawn with a generator seeded by `seed`; save_xa alternates from case to case.
std::vector<BackwardCase> sampled_backward_cases(std::uint64_t seed, int count);

// Zero-row experts, all rows on one expert, a single token, k = 4 slot sums, the largest rank,
// the smallest shapes, fp16 activations with bf16 factors.
std::vector<BackwardCase> targeted_backward_cases();

}  // namespace moejit::test
