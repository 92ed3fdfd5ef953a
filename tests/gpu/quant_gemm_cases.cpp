#include "tests/gpu/quant_gemm_cases.hpp"

#include <fmt/format.h>

#include <cmath>
#include <initializer_list>

#include "tests/support/forward_case.hpp"

namespace moejit::test {
namespace {

constexpr std::uint64_t kCaseSeed = 0x0A7C0DE5;

template <class T>
T pick(std::initializer_list<T> options, Rng& rng) {
  const auto i = std::uniform_int_distribution<std::size_t>(0, options.size() - 1)(rng);
  return options.begin()[i];
}

struct Format {
  WeightFormat weights;
  int blocksize;
  bool double_quant;
};

constexpr Format kFormats[] = {
    {WeightFormat::nf4, 32, false},        {WeightFormat::nf4, 32, true},
    {WeightFormat::nf4, 64, false},        {WeightFormat::nf4, 64, true},
    {WeightFormat::nf4, 128, false},       {WeightFormat::nf4, 128, true},
    {WeightFormat::nf4, 256, false},       {WeightFormat::nf4, 256, true},
    {WeightFormat::int8_rowwise, 0, false}};

ProjectionSpec quant_spec(const Format& f, WeightLayout layout, DType act) {
  ProjectionSpec s;
  s.weights = f.weights;
  s.quant_blocksize = f.blocksize;
  s.double_quant = f.double_quant;
  s.layout = layout;
  s.act = act;
  return s;
}

// The axes besides the format, layout and act dtype. K and N are multiples of 8 but not of 64,
// so every tile loop has a ragged edge.
QuantCase sampled_case(ProjectionSpec s, Rng& rng) {
  s.experts = pick({1, 3, 8}, rng);
  do s.top_k = pick({1, 2}, rng);
  while (s.top_k > s.experts);
  s.in_features = pick({72, 136, 200, 328, 456}, rng);
  s.out_features = pick({40, 136, 200, 264, 520}, rng);
  s.rank = pick({1, 16, 33}, rng);
  const DType other16 = s.act == DType::bf16 ? DType::fp16 : DType::bf16;
  s.lora = pick({s.act, s.act, DType::fp32, other16}, rng);  // lora == act: wgmma on sm_90a
  s.index = pick({IndexType::int32, IndexType::int64}, rng);
  s.b_storage = pick({BStorage::peft, BStorage::expert_major, BStorage::stacked}, rng);
  s.grouped_in = pick({false, true}, rng);
  s.grouped_out = pick({false, true}, rng);
  s.has_bias = pick({false, true}, rng);
  QuantCase c;
  c.spec = s;
  c.tokens = pick<std::int64_t>({33, 100, 257}, rng);
  // sparse: some experts get no rows (with E = 8 nearly always).
  c.routing = s.experts == 1 ? RoutingKind::uniform
                             : pick({RoutingKind::uniform, RoutingKind::skewed, RoutingKind::sparse,
                                     RoutingKind::sparse},
                                    rng);
  c.seed = rng();
  c.save_xa = pick({false, true}, rng);
  return c;
}

QuantCase targeted(Format f, WeightLayout layout, DType act, int experts, int top_k, int k, int n,
                   int rank, std::int64_t tokens, bool save_xa) {
  QuantCase c;
  c.spec = quant_spec(f, layout, act);
  c.spec.experts = experts;
  c.spec.top_k = top_k;
  c.spec.in_features = k;
  c.spec.out_features = n;
  c.spec.rank = rank;
  c.tokens = tokens;
  c.routing = experts > 2 ? RoutingKind::skewed : RoutingKind::uniform;
  c.seed = 1000 + static_cast<std::uint64_t>(experts * 7 + k + n + rank);
  c.save_xa = save_xa;
  return c;
}

std::string block_layout(const ProjectionSpec& s) {
  const std::int64_t per_expert = std::int64_t(s.in_features) * s.out_features;
  if (s.weights == WeightFormat::int8_rowwise)
    return fmt::format(
        "row_stats: {} rows of {}",
        s.experts * std::int64_t(s.layout == WeightLayout::out_in ? s.out_features : s.in_features),
        s.layout == WeightLayout::out_in ? s.in_features : s.out_features);
  const std::int64_t n = per_expert * s.experts, bs = s.quant_blocksize;
  const std::int64_t blocks = (n + bs - 1) / bs;
  std::string text = fmt::format("nf4 blocks: {} of {} (last holds {}), cross experts: {}", blocks,
                                 bs, n - (blocks - 1) * bs, blocks_cross_experts(s));
  if (s.double_quant) text += fmt::format(", absmax2 blocks: {}", (blocks + 255) / 256);
  return text;
}

const char* family_on_sm90(bool wgmma) {
  return wgmma ? "wgmma" : "mma.sync";
}

}  // namespace

std::string QuantCase::describe() const {
  const bool forward_wgmma = spec.lora == spec.act && spec.rank <= 128;
  return fmt::format(
      "{} T={} routing={} seed={} save_xa={} [{}; sm_90a untuned: forward {}, backward_dx {}]",
      spec.describe(), tokens, to_string(routing), seed, save_xa, block_layout(spec),
      family_on_sm90(forward_wgmma), family_on_sm90(spec.rank <= 128));
}

ProjectionSpec reference_spec(const ProjectionSpec& quantized) {
  ProjectionSpec s = quantized;
  s.weights = quantized.act == DType::bf16 ? WeightFormat::bf16 : WeightFormat::fp16;
  s.quant_blocksize = 0;
  s.double_quant = false;
  return s;
}

std::vector<float> random_base_weights(const ProjectionSpec& spec, std::uint64_t seed) {
  constexpr std::size_t kRun = 97;  // prime: runs straddle blocks and rows
  Rng rng(seed ^ 0x5EED5EED5EED5EEDull);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-2, 2);
  const std::size_t n =
      std::size_t(spec.experts) * std::size_t(spec.in_features) * std::size_t(spec.out_features);
  const float base = 1.0f / std::sqrt(static_cast<float>(spec.in_features));
  std::vector<float> w(n);
  for (std::size_t i = 0; i < n; i += kRun) {
    const float scale = std::ldexp(base, exponent(rng));
    for (std::size_t j = i; j < std::min(n, i + kRun); ++j) w[j] = uniform(rng) * scale;
  }
  return w;
}

QuantizedBase make_quantized_base(const ProjectionSpec& spec, std::uint64_t seed) {
  const std::vector<float> w = random_base_weights(spec, seed);
  QuantizedBase base;
  base.format = spec.weights;
  if (spec.weights == WeightFormat::nf4) {
    base.nf4 = quantize_nf4(w, spec.quant_blocksize, spec.double_quant);
    base.dequantized = dequantize(base.nf4, spec.act);
  } else {
    const int cols = spec.layout == WeightLayout::out_in ? spec.in_features : spec.out_features;
    base.int8 = quantize_int8_rowwise(w, std::int64_t(w.size()) / cols, cols);
    base.dequantized = dequantize(base.int8, spec.act);
  }
  return base;
}

ForwardInputs make_quant_inputs(const QuantCase& c, const QuantizedBase& base) {
  ForwardInputs in = make_inputs(reference_spec(c.spec), c.tokens, c.routing, c.seed);
  in.w = base.dequantized;
  return in;
}

HostTensor make_quant_dy(const QuantCase& c) {
  Rng rng(c.seed ^ 0xD1D1D1D1D1D1D1D1ull);
  const auto rows = static_cast<std::size_t>(c.tokens * c.spec.top_k);
  return random_tensor(c.spec.act, rows * c.spec.out_features, 1.0, rng);
}

bool blocks_cross_experts(const ProjectionSpec& spec) {
  return spec.weights == WeightFormat::nf4 && spec.experts > 1 &&
         (std::int64_t(spec.in_features) * spec.out_features) % spec.quant_blocksize != 0;
}

std::vector<QuantCase> quant_gemm_cases() {
  Rng rng(kCaseSeed);
  std::vector<QuantCase> cases;
  for (const Format& f : kFormats)
    for (const WeightLayout layout : {WeightLayout::out_in, WeightLayout::in_out})
      for (const DType act : {DType::bf16, DType::fp16})
        cases.push_back(sampled_case(quant_spec(f, layout, act), rng));
  // X*Y = 27200 = 106.25 blocks of 256 (212.5 of 128): blocks cross rows (of 200 or 136) and
  // experts, the last block is partial, and double quantization has 2 absmax2 blocks, the last
  // partial.
  cases.push_back(targeted({WeightFormat::nf4, 256, true}, WeightLayout::out_in, DType::bf16, 3, 2,
                           200, 136, 16, 150, true));
  cases.push_back(targeted({WeightFormat::nf4, 128, false}, WeightLayout::in_out, DType::fp16, 3, 2,
                           200, 136, 33, 150, false));
  // Rank above 128: both the forward and backward_dx run mma.sync on every architecture.
  cases.push_back(targeted({WeightFormat::int8_rowwise, 0, false}, WeightLayout::in_out,
                           DType::bf16, 3, 1, 264, 136, 160, 120, true));
  // A large block (1024 values spans several rows) with double quantization.
  cases.push_back(targeted({WeightFormat::nf4, 1024, true}, WeightLayout::out_in, DType::fp16, 8, 2,
                           136, 328, 16, 200, false));
  // The smallest shapes: W[3, 8, 16], a 32-value block spans 2 rows.
  cases.push_back(targeted({WeightFormat::nf4, 32, true}, WeightLayout::in_out, DType::bf16, 3, 2,
                           8, 16, 1, 40, true));
  return cases;
}

QuantCase large_determinism_case() {
  QuantCase c = targeted({WeightFormat::nf4, 64, true}, WeightLayout::out_in, DType::bf16, 4, 2,
                         512, 264, 16, 2048, true);
  c.spec.lora = DType::fp32;
  c.routing = RoutingKind::skewed;
  c.seed = 42;
  return c;
}

}  // namespace moejit::test
