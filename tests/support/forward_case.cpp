#include "tests/support/forward_case.hpp"

#include <fmt/format.h>
#include <cmath>
#include <stdexcept>

namespace moejit::test {

std::string ForwardCase::describe() const {
  return fmt::format("{} T={} routing={} config={} seed={}", spec.describe(), tokens,
                     to_string(routing), config.name(), seed);
}

ForwardInputs make_inputs(const ProjectionSpec& spec, std::int64_t tokens, RoutingKind routing,
                          std::uint64_t seed) {
  Rng rng(seed);
  const auto E = static_cast<std::size_t>(spec.experts),
             K = static_cast<std::size_t>(spec.in_features);
  const auto N = static_cast<std::size_t>(spec.out_features),
             r = static_cast<std::size_t>(spec.rank);
  if (spec.weights != WeightFormat::bf16 && spec.weights != WeightFormat::fp16)
    throw std::invalid_argument("make_inputs: only bf16/fp16 base weights are generated");
  ForwardInputs in;
  in.routing = make_routing(routing, spec.experts, spec.top_k, tokens, rng);
  const auto x_rows = static_cast<std::size_t>(spec.grouped_in ? in.routing.rows() : tokens);
  in.x = random_tensor(spec.act, x_rows * K, 1.0, rng);
  in.w = random_tensor(spec.act, E * N * K, 1.0 / std::sqrt(double(K)), rng);
  in.a = random_tensor(spec.lora, E * r * K, 1.0 / std::sqrt(double(K)), rng);
  in.b = random_tensor(spec.lora, E * N * r, 1.0 / std::sqrt(double(r)), rng);
  if (spec.has_bias) in.bias = random_tensor(spec.act, E * N, 1.0, rng);
  in.scale = std::uniform_real_distribution<float>(0.5f, 2.0f)(rng);
  return in;
}

}  // namespace moejit::test
