#pragma once
// Top-k routings of T tokens over E experts, sorted by expert in the ScatterMoE convention of
// SPEC.md "Routing", under the distributions the kernels must handle.
#include <cstdint>
#include <string_view>
#include <vector>

#include "compiler/problem.hpp"
#include "tests/support/host_tensor.hpp"

namespace moejit::test {

enum class RoutingKind : std::uint8_t {
  uniform,     // every expert equally likely
  skewed,      // Zipf-like: expert e has weight 1/(e+1)^2, so a few experts take most rows
  sparse,      // only a subset of the experts is ever chosen; the others get zero rows
  one_expert,  // k = 1 and every token picks the same expert
};
std::string_view to_string(RoutingKind kind);

struct Routing {
  int experts = 0;
  int top_k = 0;
  std::int64_t tokens = 0;
  std::vector<std::int64_t> sorted_expert_idxs;     // [T*k], non-decreasing
  std::vector<std::int64_t> sorted_scattered_idxs;  // [T*k], slot p = t*k + j of grouped row i
  std::vector<std::int64_t> expert_offsets;         // [E], inclusive cumulative ends

  std::int64_t rows() const { return tokens * top_k; }
  std::int64_t rows_of(int expert) const;
};

// Each token picks `top_k` distinct experts; the slots are then sorted (stably) by expert.
// Throws std::invalid_argument when the kind cannot produce such a routing (one_expert needs
// top_k == 1; top_k must be in [1, experts]).
Routing make_routing(RoutingKind kind, int experts, int top_k, std::int64_t tokens, Rng& rng);

// The routing from each slot's expert (slot p = t*k + j), sorted stably by expert.
Routing sort_by_expert(const std::vector<int>& slot_experts, int experts, int top_k);

// The values as the bytes of an int32 or int64 tensor.
std::vector<std::uint8_t> index_bytes(const std::vector<std::int64_t>& values, IndexType type);

}  // namespace moejit::test
