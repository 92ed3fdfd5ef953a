#include "bench/weights.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "compiler/error.hpp"
#include "tests/support/quant.hpp"

namespace moejit::bench {
namespace {

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
  code_ = upload(std::vector<float>(test::kNf4Code.begin(), test::kNf4Code.end()));
  if (!spec.double_quant) {
    absmax_ = cuda::DeviceBuffer(blocks * sizeof(float));
    fill_scales(absmax_, 0.5f * typical, 1.5f * typical, how, seed + 1);
    return;
  }
  // absmax = code2[q] * absmax2 + offset with code2 in [-1, 1]: stays in [0.5, 1.5] * typical.
  absmax_ = cuda::DeviceBuffer(blocks);
  fill_bytes(absmax_, how, seed + 1);
  absmax2_ = cuda::DeviceBuffer(ceil_div(blocks, test::kAbsmaxBlocksize) * sizeof(float));
  fill_scales(absmax2_, 0.25f * typical, 0.5f * typical, how, seed + 2);
  code2_ = upload(test::dynamic_map_signed());
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
