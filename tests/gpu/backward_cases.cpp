#include "tests/gpu/backward_cases.hpp"

#include <fmt/format.h>

#include <initializer_list>

namespace moejit::test {
namespace {

template <class T>
T pick(std::initializer_list<T> options, Rng& rng) {
  const auto i = std::uniform_int_distribution<std::size_t>(0, options.size() - 1)(rng);
  return options.begin()[i];
}

ProjectionSpec random_spec(Rng& rng) {
  ProjectionSpec s;
  s.experts = pick({1, 3, 8, 17}, rng);
  do s.top_k = pick({1, 2, 4}, rng);
  while (s.top_k > s.experts);
  s.in_features = pick({8, 24, 136, 264, 1000}, rng);
  s.out_features = pick({8, 40, 136, 200, 520}, rng);
  s.rank = pick({1, 5, 16, 33, 64, 128}, rng);
  s.act = pick({DType::bf16, DType::fp16}, rng);
  s.weights = s.act == DType::bf16 ? WeightFormat::bf16 : WeightFormat::fp16;
  s.lora = pick({DType::bf16, DType::fp16, DType::fp32}, rng);
  s.index = pick({IndexType::int32, IndexType::int64}, rng);
  s.layout = pick({WeightLayout::out_in, WeightLayout::in_out}, rng);
  s.b_storage = pick({BStorage::peft, BStorage::expert_major, BStorage::stacked}, rng);
  s.grouped_in = pick({false, true}, rng);
  s.grouped_out = pick({false, true}, rng);
  s.has_bias = pick({false, true}, rng);  // the forward's bias; it gets no gradient
  return s;
}

ProjectionSpec with_fp16_act(ProjectionSpec s) {
  s.act = DType::fp16;
  s.weights = WeightFormat::fp16;
  return s;
}

}  // namespace

ProjectionSpec base_spec(int experts, int top_k, int k, int n, int rank) {
  ProjectionSpec s;
  s.experts = experts;
  s.top_k = top_k;
  s.in_features = k;
  s.out_features = n;
  s.rank = rank;
  return s;
}

std::string BackwardCase::describe() const {
  return fmt::format("backward of {} T={} routing={} seed={} save_xa={}", spec.describe(), tokens,
                     to_string(routing), seed, save_xa);
}

HostTensor make_dy(const BackwardCase& c) {
  Rng rng(c.seed ^ 0xD1D1D1D1D1D1D1D1ull);  // independent of the stream make_inputs draws from
  const auto rows = static_cast<std::size_t>(c.tokens * c.spec.top_k);
  return random_tensor(c.spec.act, rows * c.spec.out_features, 1.0, rng);
}

std::vector<BackwardCase> sampled_backward_cases(std::uint64_t seed, int count) {
  Rng rng(seed);
  std::vector<BackwardCase> cases;
  for (int i = 0; i < count; ++i) {
    BackwardCase c;
    c.spec = random_spec(rng);
    c.tokens = pick<std::int64_t>({1, 7, 100, 333}, rng);
    c.routing = pick(
        {RoutingKind::uniform, RoutingKind::skewed, RoutingKind::sparse, RoutingKind::one_expert},
        rng);
    if (c.routing == RoutingKind::one_expert) c.spec.top_k = 1;  // k distinct experts otherwise
    c.seed = rng();
    c.save_xa = i % 2 == 1;
    cases.push_back(c);
  }
  return cases;
}

std::vector<BackwardCase> targeted_backward_cases() {
  std::vector<BackwardCase> out;
  auto add = [&](const ProjectionSpec& spec, std::int64_t tokens, RoutingKind routing) {
    out.push_back(BackwardCase{spec, tokens, routing, 2000 + out.size(), out.size() % 2 == 0});
  };
  // Experts with zero rows between experts with rows: their dA and dB must be exactly zero.
  ProjectionSpec sparse = base_spec(17, 2, 264, 200, 16);
  add(sparse, 100, RoutingKind::sparse);
  sparse.layout = WeightLayout::in_out;
  sparse.grouped_in = sparse.grouped_out = true;
  sparse.b_storage = BStorage::expert_major;
  add(sparse, 333, RoutingKind::sparse);
  sparse.b_storage = BStorage::stacked;
  sparse.lora = DType::fp32;
  add(sparse, 7, RoutingKind::sparse);  // most experts empty
  // All rows on one expert: long per-expert reductions for dA and dB.
  ProjectionSpec one = base_spec(8, 1, 136, 520, 33);
  one.grouped_out = true;
  add(one, 333, RoutingKind::one_expert);
  one.lora = DType::fp32;
  add(one, 333, RoutingKind::one_expert);
  add(base_spec(1, 1, 1000, 136, 5), 333, RoutingKind::one_expert);
  // A single token: k rows on k experts, and one row in total.
  ProjectionSpec single = base_spec(8, 4, 24, 40, 1);
  single.index = IndexType::int64;
  add(single, 1, RoutingKind::uniform);
  single.grouped_in = true;
  single.b_storage = BStorage::stacked;
  add(single, 1, RoutingKind::skewed);
  add(base_spec(1, 1, 8, 8, 1), 1, RoutingKind::uniform);
  // dX summed over k = 4 slots per token, in both x layouts of the weights.
  ProjectionSpec slots = base_spec(8, 4, 264, 136, 16);
  add(slots, 333, RoutingKind::uniform);
  slots.layout = WeightLayout::in_out;
  slots.b_storage = BStorage::expert_major;
  add(slots, 333, RoutingKind::skewed);
  // The largest rank of the sweep with fp32 factors; the smallest shapes with fp16 activations.
  ProjectionSpec big_rank = base_spec(3, 2, 1000, 520, 128);
  big_rank.lora = DType::fp32;
  add(big_rank, 100, RoutingKind::uniform);
  // A rank past 128: the LoRA-gradient kernels pad it to whole warp slices (176 -> 192).
  ProjectionSpec huge_rank = base_spec(3, 2, 264, 136, 176);
  huge_rank.lora = DType::fp32;
  add(huge_rank, 100, RoutingKind::skewed);
  add(with_fp16_act(base_spec(17, 4, 8, 8, 64)), 333, RoutingKind::skewed);
  // fp16 activations with bf16 factors: dA and dB are rounded to bf16 at the end.
  ProjectionSpec mixed = with_fp16_act(base_spec(8, 2, 136, 200, 16));
  mixed.lora = DType::bf16;
  add(mixed, 100, RoutingKind::uniform);
  return out;
}

}  // namespace moejit::test
