#pragma once
// One forward test case (what to compute, how to tile it, how to route, which seed) and the
// deterministic random inputs it stands for.
#include <cstdint>
#include <string>

#include "compiler/problem.hpp"
#include "compiler/tile_config.hpp"
#include "tests/support/reference.hpp"
#include "tests/support/routing.hpp"

namespace moejit::test {

struct ForwardCase {
  ProjectionSpec spec;
  std::int64_t tokens = 0;
  RoutingKind routing = RoutingKind::uniform;
  TileConfig config;
  std::uint64_t seed = 0;

  // Everything needed to rerun the case: spec, T, routing, config and seed.
  std::string describe() const;
};

// Routing first, then x, W, A, B, bias and the scale, all from one generator seeded with `seed`:
// x ~ U(-1,1), W ~ U(-1,1)/sqrt(K), A ~ U(-1,1)/sqrt(K), B ~ U(-1,1)/sqrt(r), bias ~ U(-1,1),
// s ~ U(0.5, 2).
ForwardInputs make_inputs(const ProjectionSpec& spec, std::int64_t tokens, RoutingKind routing,
                          std::uint64_t seed);
inline ForwardInputs make_inputs(const ForwardCase& c) {
  return make_inputs(c.spec, c.tokens, c.routing, c.seed);
}

}  // namespace moejit::test
