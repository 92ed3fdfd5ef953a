#include "tests/gpu/forward_cases.hpp"

#include <initializer_list>

#include "compiler/error.hpp"
#include "compiler/source.hpp"

namespace moejit::test {
namespace {

template <class T>
T pick(std::initializer_list<T> options, Rng& rng) {
  const auto i = std::uniform_int_distribution<std::size_t>(0, options.size() - 1)(rng);
  return options.begin()[i];
}

bool fits(const ForwardCase& c, int smem_budget) {
  try {
    render_kernel_source(c.spec, c.config);  // validates the pair, wgmma's restrictions included
  } catch (const InvalidArgument&) {
    return false;
  }
  return dynamic_smem_bytes(c.spec, c.config) + 1024 <= smem_budget;  // 1 KB static smem
}

TileConfig random_config(KernelFamily family, Rng& rng) {
  if (family != KernelFamily::mma_sync) {
    const bool tma = family == KernelFamily::tma;  // which also runs with 2 stages
    const int block_m = pick({64, 128}, rng);
    TileConfig c{.block_m = block_m,
                 .block_n = pick({64, 128, 256}, rng),
                 .block_k = 64,
                 .warps_m = block_m / 16,
                 .warps_n = 1,
                 .stages = tma ? pick({2, 3, 4, 5, 6}, rng) : pick({3, 4, 5, 6}, rng),
                 .wgmma = true,
                 .tma = tma};
    // Clusters of two multicast the weight tile (block_n 128 or 256).
    if (tma && c.block_n >= 128) c.cluster_m = pick({1, 2}, rng);
    return c;
  }
  const auto [warps_m, warps_n] = pick<std::pair<int, int>>({{2, 2}, {2, 4}, {4, 2}}, rng);
  const int block_m = pick({64, 128}, rng), block_n = pick({64, 128}, rng);
  const int block_k = pick({32, 64}, rng);
  return mma_sync_config(block_m, block_n, block_k, warps_m, warps_n, pick({2, 3, 4}, rng));
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
  s.has_bias = pick({false, true}, rng);
  return s;
}

ForwardCase random_case(KernelFamily family, Rng& rng) {
  ForwardCase c;
  c.spec = random_spec(rng);
  if (family == KernelFamily::wgmma) {  // the only layout and lora dtype it takes
    c.spec.layout = WeightLayout::out_in;
    c.spec.lora = c.spec.act;
  }
  if (family == KernelFamily::tma) c.spec.lora = c.spec.act;
  c.tokens = pick<std::int64_t>({1, 7, 100, 333}, rng);
  c.routing = pick(
      {RoutingKind::uniform, RoutingKind::skewed, RoutingKind::sparse, RoutingKind::one_expert},
      rng);
  if (c.routing == RoutingKind::one_expert) c.spec.top_k = 1;  // k distinct experts otherwise
  const int budget = family == KernelFamily::mma_sync ? kSweepSmemBudget : kWgmmaSmemBudget;
  do c.config = random_config(family, rng);
  while (!fits(c, budget));
  c.seed = rng();
  return c;
}

ProjectionSpec base_spec(int experts, int top_k, int k, int n, int rank) {
  ProjectionSpec s;
  s.experts = experts;
  s.top_k = top_k;
  s.in_features = k;
  s.out_features = n;
  s.rank = rank;
  return s;
}

}  // namespace

TileConfig mma_sync_config(int block_m, int block_n, int block_k, int warps_m, int warps_n,
                           int stages) {
  return TileConfig{.block_m = block_m,
                    .block_n = block_n,
                    .block_k = block_k,
                    .warps_m = warps_m,
                    .warps_n = warps_n,
                    .stages = stages};
}

std::vector<ForwardCase> sampled_cases(std::uint64_t seed, int count, KernelFamily family) {
  Rng rng(seed);
  std::vector<ForwardCase> cases;
  for (int i = 0; i < count; ++i) cases.push_back(random_case(family, rng));
  return cases;
}

std::vector<ForwardCase> targeted_cases() {
  const TileConfig m64 = mma_sync_config(64, 64, 32, 2, 2, 3);
  const TileConfig m128 = mma_sync_config(128, 128, 64, 2, 4, 2);
  const TileConfig wide = mma_sync_config(128, 64, 32, 4, 2, 4);
  std::vector<ForwardCase> out;
  auto add = [&](ProjectionSpec spec, std::int64_t tokens, RoutingKind routing, TileConfig config) {
    out.push_back(ForwardCase{spec, tokens, routing, config, 1000 + out.size()});
  };
  // Experts with zero rows between experts with rows, in both layouts and groupings.
  ProjectionSpec sparse = base_spec(17, 2, 264, 200, 16);
  add(sparse, 100, RoutingKind::sparse, m64);
  sparse.layout = WeightLayout::in_out;
  sparse.grouped_in = sparse.has_bias = true;
  sparse.b_storage = BStorage::expert_major;
  add(sparse, 333, RoutingKind::sparse, m128);
  // All rows on one expert: many row tiles of a single expert, with and without other experts.
  ProjectionSpec one = base_spec(8, 1, 136, 520, 33);
  one.grouped_out = true;
  add(one, 333, RoutingKind::one_expert, m64);
  one.lora = DType::fp32;
  add(one, 333, RoutingKind::one_expert, wide);
  add(base_spec(1, 1, 1000, 136, 5), 333, RoutingKind::one_expert, m128);
  // A single token: k rows on k experts, and one row in total.
  ProjectionSpec single = base_spec(8, 4, 24, 40, 1);
  single.index = IndexType::int64;
  add(single, 1, RoutingKind::uniform, m128);
  single.grouped_in = true;
  single.b_storage = BStorage::stacked;
  add(single, 1, RoutingKind::skewed, m64);
  add(base_spec(1, 1, 8, 8, 1), 1, RoutingKind::uniform, m64);
  // The largest rank with fp32 LoRA factors, and the smallest shapes with fp16 activations.
  ProjectionSpec big_rank = base_spec(3, 2, 1000, 520, 128);
  big_rank.lora = DType::fp32;
  add(big_rank, 100, RoutingKind::uniform, mma_sync_config(64, 64, 32, 2, 2, 2));
  ProjectionSpec tiny = base_spec(17, 4, 8, 8, 64);
  tiny.act = DType::fp16;
  tiny.weights = WeightFormat::fp16;
  tiny.b_storage = BStorage::peft;
  add(tiny, 333, RoutingKind::skewed, wide);
  return out;
}

}  // namespace moejit::test
