#include "bench/weights.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "compiler/error.hpp"

namespace moejit::bench {
namespace {

constexpr std::array<BenchWeights, 4> kAllWeights = {BenchWeights::bf16, BenchWeights::nf4,
                                                     BenchWeights::nf4_dq, BenchWeights::int8};

// QuantState.code of quant_type nf4 (SPEC.md "Base weights").
const std::vector<float> kNf4Code = {-1.0f,
                                     -0.6961928009986877f,
                                     -0.5250730514526367f,
                                     -0.39491748809814453f,
                                     -0.28444138169288635f,
                                     -0.18477343022823334f,
                                     -0.09105003625154495f,
                                     0.0f,
                                     0.07958029955625534f,
                                     0.16093020141124725f,
                                     0.24611230194568634f,
                                     0.33791524171829224f,
                                     0.44070982933044434f,
                                     0.5626170039176941f,
                                     0.7229568362236023f,
                                     1.0f};

constexpr int kAbsmaxBlocksize = 256;  // double quantization's second-level block

// The signed dynamic map of SPEC.md (code2): midpoints of linspace(0.1, 1, 2^i + 1) scaled by
// 10^(i-6), both signs, plus 0 and 1, sorted. Computed in plain fp32 here: the benchmark needs a
// table of the right shape and range, not bitsandbytes' last bit.
std::vector<float> signed_dynamic_map() {
  std::vector<float> map = {0.0f, 1.0f};
  for (int i = 0; i <= 6; ++i) {
    const int points = (1 << i) + 1;
    const float step = 0.9f / static_cast<float>(points - 1);
    const auto scale = static_cast<float>(std::pow(10.0, i - 6));
    for (int j = 0; j + 1 < points; ++j) {
      const float mid = (0.1f + step * j + 0.1f + step * (j + 1)) / 2.0f;
      map.push_back(scale * mid);
      map.push_back(-scale * mid);
    }
  }
  std::sort(map.begin(), map.end());
  return map;
}

std::size_t ceil_div(std::size_t a, std::size_t b) {
  return (a + b - 1) / b;
}

}  // namespace

std::string_view to_string(BenchWeights weights) {
  switch (weights) {
    case BenchWeights::bf16:
      return "bf16";
    case BenchWeights::nf4:
      return "nf4";
    case BenchWeights::nf4_dq:
      return "nf4-dq";
    case BenchWeights::int8:
      return "int8";
  }
  return "?";
}

BenchWeights parse_bench_weights(std::string_view text, const char* argument) {
  for (BenchWeights w : kAllWeights)
    if (to_string(w) == text) return w;
  throw InvalidArgument(argument, "'" + std::string(text) + "'", "bf16, nf4, nf4-dq or int8");
}

ProjectionSpec with_weights(ProjectionSpec spec, BenchWeights weights) {
  spec.quant_blocksize = 0;
  spec.double_quant = false;
  switch (weights) {
    case BenchWeights::bf16:
      spec.weights = spec.act == DType::fp16 ? WeightFormat::fp16 : WeightFormat::bf16;
      break;
    case BenchWeights::nf4:
    case BenchWeights::nf4_dq:
      spec.weights = WeightFormat::nf4;
      spec.quant_blocksize = kNf4Blocksize;
      spec.double_quant = weights == BenchWeights::nf4_dq;
      break;
    case BenchWeights::int8:
      spec.weights = WeightFormat::int8_rowwise;
      break;
  }
  return spec;
}

BaseWeights::BaseWeights(const ProjectionSpec& spec, Fill how, std::uint64_t seed) {
  const std::size_t values = static_cast<std::size_t>(spec.experts) * spec.in_features *
                             static_cast<std::size_t>(spec.out_features);
  switch (spec.weights) {
    case WeightFormat::bf16:
    case WeightFormat::fp16:
      w_ = cuda::DeviceBuffer(values * size_of(spec.act));
      fill_floats(w_, spec.act, how, seed);
      break;
    case WeightFormat::nf4:
      make_nf4(spec, values, how, seed);
      break;
    case WeightFormat::int8_rowwise:
      make_int8(spec, values, how, seed);
      break;
  }
}

void BaseWeights::make_nf4(const ProjectionSpec& spec, std::size_t values, Fill how,
                           std::uint64_t seed) {
  const std::size_t blocks = ceil_div(values, spec.quant_blocksize);
  const float typical = 1.0f / std::sqrt(static_cast<float>(spec.in_features));
  w_ = cuda::DeviceBuffer((values + 1) / 2);
  fill_bytes(w_, how, seed);
  code_ = upload(kNf4Code);
  if (!spec.double_quant) {
    absmax_ = cuda::DeviceBuffer(blocks * sizeof(float));
    fill_scales(absmax_, 0.5f * typical, 1.5f * typical, how, seed + 1);
    return;
  }
  // absmax = code2[q] * absmax2 + offset with code2 in [-1, 1]: stays in [0.5, 1.5] * typical.
  absmax_ = cuda::DeviceBuffer(blocks);
  fill_bytes(absmax_, how, seed + 1);
  absmax2_ = cuda::DeviceBuffer(ceil_div(blocks, kAbsmaxBlocksize) * sizeof(float));
  fill_scales(absmax2_, 0.25f * typical, 0.5f * typical, how, seed + 2);
  code2_ = upload(signed_dynamic_map());
  offset_ = typical;
}

void BaseWeights::make_int8(const ProjectionSpec& spec, std::size_t values, Fill how,
                            std::uint64_t seed) {
  // One statistic per last-dimension row: W[E, N, K] has E*N rows, W[E, K, N] has E*K.
  const int last_dim = spec.layout == WeightLayout::out_in ? spec.in_features : spec.out_features;
  const float typical = 1.0f / std::sqrt(static_cast<float>(spec.in_features));
  w_ = cuda::DeviceBuffer(values);
  fill_bytes(w_, how, seed);
  absmax_ = cuda::DeviceBuffer(values / last_dim * sizeof(float));
  fill_scales(absmax_, 0.5f * typical, 1.5f * typical, how, seed + 1);
}

std::size_t BaseWeights::bytes() const {
  return w_.bytes() + absmax_.bytes() + code_.bytes() + absmax2_.bytes() + code2_.bytes();
}

}  // namespace moejit::bench
