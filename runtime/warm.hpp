#pragma once
// Filling the cache ahead of time, with or without a GPU.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cache/store.hpp"
#include "compiler/problem.hpp"

namespace moejit {

struct WarmOutcome {
  CacheKey key;
  TileConfig config;
  bool already_cached = false;  // an entry of at least the same quality was present
  bool tuned = false;
  double seconds = 0;
};

// The specs of the kernels the backward of the forward `spec` runs (pack_b, backward_dx,
// reduce_slots when the input is not grouped and k > 1, grad_a, grad_b).
std::vector<ProjectionSpec> backward_ops(const ProjectionSpec& spec);

// Without a GPU: compiles the default config of `spec` for `arch` (or `pinned`, a choice
// for tests and reproductions) and stores it under the offline device identity, marked untuned (a
// GPU machine later tunes it in place; until then an untuned Runtime runs it).
WarmOutcome warm_offline(CacheStore& store, const ProjectionSpec& spec, std::int64_t tokens,
                         const std::string& arch,
                         const std::optional<TileConfig>& pinned = std::nullopt);

}  // namespace moejit
