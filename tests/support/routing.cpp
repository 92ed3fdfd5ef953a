#include "tests/support/routing.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>

namespace moejit::test {
namespace {

// Selection weight of every expert under `kind`; experts of weight zero are never chosen.
std::vector<double> expert_weights(RoutingKind kind, int experts, int top_k, Rng& rng) {
  std::vector<double> weights(experts, 1.0);
  if (kind == RoutingKind::skewed) {
    for (int e = 0; e < experts; ++e) weights[e] = 1.0 / ((e + 1.0) * (e + 1.0));
  } else if (kind == RoutingKind::sparse) {
    // Keep top_k experts plus about a third of the rest, at random; at least one gets no row
    // whenever there are more experts than top_k.
    const int kept = top_k + (experts - top_k) / 3;
    std::vector<int> order(experts);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    for (int i = kept; i < experts; ++i) weights[order[i]] = 0.0;
  } else if (kind == RoutingKind::one_expert) {
    const int chosen = std::uniform_int_distribution<int>(0, experts - 1)(rng);
    std::fill(weights.begin(), weights.end(), 0.0);
    weights[chosen] = 1.0;
  }
  return weights;
}

}  // namespace

std::string_view to_string(RoutingKind kind) {
  switch (kind) {
    case RoutingKind::uniform:
      return "uniform";
    case RoutingKind::skewed:
      return "skewed";
    case RoutingKind::sparse:
      return "sparse";
    case RoutingKind::one_expert:
      return "one_expert";
  }
  return "?";
}

std::int64_t Routing::rows_of(int expert) const {
  return expert_offsets[expert] - (expert == 0 ? 0 : expert_offsets[expert - 1]);
}

Routing make_routing(RoutingKind kind, int experts, int top_k, std::int64_t tokens, Rng& rng) {
  if (top_k < 1 || top_k > experts || tokens < 0)
    throw std::invalid_argument("make_routing: need 1 <= top_k <= experts and tokens >= 0, got k=" +
                                std::to_string(top_k) + " E=" + std::to_string(experts));
  if (kind == RoutingKind::one_expert && top_k != 1)
    throw std::invalid_argument("make_routing: one_expert routing needs top_k == 1, got " +
                                std::to_string(top_k));
  const std::vector<double> weights = expert_weights(kind, experts, top_k, rng);
  std::vector<int> slot_experts;
  slot_experts.reserve(static_cast<std::size_t>(tokens) * top_k);
  for (std::int64_t t = 0; t < tokens; ++t) {
    std::vector<double> remaining = weights;  // sampling without replacement: distinct experts
    for (int j = 0; j < top_k; ++j) {
      const int e = std::discrete_distribution<int>(remaining.begin(), remaining.end())(rng);
      remaining[e] = 0.0;
      slot_experts.push_back(e);
    }
  }
  return sort_by_expert(slot_experts, experts, top_k);
}

Routing sort_by_expert(const std::vector<int>& slot_experts, int experts, int top_k) {
  Routing r;
  r.experts = experts;
  r.top_k = top_k;
  r.tokens = static_cast<std::int64_t>(slot_experts.size()) / top_k;
  r.sorted_scattered_idxs.resize(slot_experts.size());
  std::iota(r.sorted_scattered_idxs.begin(), r.sorted_scattered_idxs.end(), 0);
  std::stable_sort(
      r.sorted_scattered_idxs.begin(), r.sorted_scattered_idxs.end(),
      [&](std::int64_t a, std::int64_t b) { return slot_experts[a] < slot_experts[b]; });
  r.expert_offsets.assign(experts, 0);
  for (const std::int64_t slot : r.sorted_scattered_idxs) {
    r.sorted_expert_idxs.push_back(slot_experts[slot]);
    ++r.expert_offsets[slot_experts[slot]];
  }
  std::partial_sum(r.expert_offsets.begin(), r.expert_offsets.end(), r.expert_offsets.begin());
  return r;
}

std::vector<std::uint8_t> index_bytes(const std::vector<std::int64_t>& values, IndexType type) {
  const std::size_t width = size_of(type);
  std::vector<std::uint8_t> out(values.size() * width);
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (type == IndexType::int64) {
      std::memcpy(out.data() + i * width, &values[i], width);
    } else {
      const auto narrow = static_cast<std::int32_t>(values[i]);
      std::memcpy(out.data() + i * width, &narrow, width);
    }
  }
  return out;
}

}  // namespace moejit::test
