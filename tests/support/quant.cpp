#include "tests/support/quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>

namespace moejit::test {
namespace {

// torch.linspace(start, end, steps) in fp32 as torch's CPU kernel computes it: the first half
// counts up from start, the second half down from end, so both ends are exact.
std::vector<float> torch_linspace(float start, float end, int steps) {
  const float step = (end - start) / static_cast<float>(steps - 1);
  std::vector<float> out(steps);
  for (int i = 0; i < steps; ++i)
    out[i] = i < steps / 2 ? start + step * static_cast<float>(i)
                           : end - step * static_cast<float>(steps - 1 - i);
  return out;
}

// The 15 decision thresholds between consecutive NF4 codes, as bitsandbytes' NF4 decision tree
// writes them: the midpoints as 16-digit decimals rounded straight to fp32. Four of the exact
// midpoints lie halfway between two floats, and the decimals round those to the odd neighbour,
// one ulp from (code[i] + code[i+1]) * 0.5f; these constants are what bitsandbytes compares with.
constexpr std::array<float, 15> kNf4Thresholds = {
    -0.8480964004993439f,  -0.6106329262256622f,  -0.4599952697753906f,   -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f,   0.2035212516784668f,   0.2920137718319893f,    0.3893125355243683f,
    0.5016634166240692f,   0.6427869200706482f,   0.8614784181118011f};

float abs_max(const float* begin, const float* end) {
  float m = 0.0f;
  for (const float* p = begin; p != end; ++p) m = std::max(m, std::fabs(*p));
  return m;
}

void require_blocksize(int blocksize) {
  const bool power_of_two = blocksize > 0 && (blocksize & (blocksize - 1)) == 0;
  if (!power_of_two || blocksize < kMinNf4Blocksize || blocksize > kMaxNf4Blocksize)
    throw std::invalid_argument("blocksize = " + std::to_string(blocksize) +
                                ": expected a power of two in [32, 4096]");
}

// Second-level quantization of absmax (bitsandbytes' compress_statistics): centre on the mean,
// then 8-bit blockwise quantization by 256 with the signed dynamic map.
void double_quantize(Nf4Quantized& q, const std::vector<float>& absmax) {
  double sum = 0.0;
  for (float a : absmax) sum += a;
  q.offset = static_cast<float>(sum / static_cast<double>(absmax.size()));
  std::vector<float> centred(absmax.size());
  for (std::size_t b = 0; b < absmax.size(); ++b) centred[b] = absmax[b] - q.offset;
  q.code2 = dynamic_map_signed();
  q.qabsmax.resize(absmax.size());
  for (std::size_t first = 0; first < centred.size(); first += kAbsmaxBlocksize) {
    const std::size_t last = std::min(centred.size(), first + kAbsmaxBlocksize);
    const float scale = abs_max(centred.data() + first, centred.data() + last);
    q.absmax2.push_back(scale);
    const float inverse = 1.0f / scale;
    for (std::size_t b = first; b < last; ++b)
      q.qabsmax[b] = dynamic_code_index(q.code2, centred[b] * inverse);
  }
}

}  // namespace

std::vector<float> dynamic_map_signed() {
  std::vector<float> data;
  for (int i = 0; i < 7; ++i) {
    const std::vector<float> bounds = torch_linspace(0.1f, 1.0f, (1 << i) + 1);
    // A Python float scalar times an fp32 tensor: the scalar is rounded to fp32 first.
    const auto decade = static_cast<float>(std::pow(10.0, i - 6));
    for (std::size_t j = 0; j + 1 < bounds.size(); ++j) {
      const float mean = (bounds[j] + bounds[j + 1]) / 2.0f;
      data.push_back(decade * mean);
      data.push_back(-decade * mean);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  std::sort(data.begin(), data.end());
  return data;
}

std::uint8_t nf4_nibble(float normalized) {
  std::uint8_t nibble = 0;
  for (float t : kNf4Thresholds) nibble += normalized > t ? 1 : 0;  // NaN passes none: nibble 0
  return nibble;
}

std::uint8_t dynamic_code_index(const std::vector<float>& code, float normalized) {
  if (std::isnan(normalized)) return 0;
  const auto upper =
      static_cast<int>(std::lower_bound(code.begin(), code.end(), normalized) - code.begin());
  if (upper == 0) return 0;
  if (upper == static_cast<int>(code.size())) return static_cast<std::uint8_t>(upper - 1);
  // code[upper-1] < normalized <= code[upper]; bitsandbytes' bisection ends on an even index and
  // keeps it on a tie.
  const float midpoint = (code[upper - 1] + code[upper]) * 0.5f;
  int index = upper % 2 == 0 ? upper : upper - 1;
  if (normalized > midpoint) index = upper;
  if (normalized < midpoint) index = upper - 1;
  return static_cast<std::uint8_t>(index);
}

std::int64_t Nf4Quantized::blocks() const {
  return (values + blocksize - 1) / blocksize;
}

Nf4Quantized quantize_nf4(const std::vector<float>& w_flat, int blocksize, bool double_quant) {
  require_blocksize(blocksize);
  Nf4Quantized q;
  q.values = static_cast<std::int64_t>(w_flat.size());
  q.blocksize = blocksize;
  q.double_quant = double_quant;
  q.code.assign(kNf4Code.begin(), kNf4Code.end());
  q.packed.assign((w_flat.size() + 1) / 2, 0);
  std::vector<float> absmax(static_cast<std::size_t>(q.blocks()));
  for (std::size_t b = 0; b < absmax.size(); ++b) {
    const std::size_t first = b * blocksize;
    const std::size_t last = std::min(w_flat.size(), first + blocksize);
    absmax[b] = abs_max(w_flat.data() + first, w_flat.data() + last);
    const float inverse = 1.0f / absmax[b];
    // An odd count pads the last byte's low nibble with the code of 0 * inverse, as bitsandbytes
    // does; the pad is in the last block (n is odd, so no multiple of the block size).
    const std::size_t end = std::min(first + blocksize, q.packed.size() * 2);
    for (std::size_t i = first; i < end; ++i) {
      const float w = i < w_flat.size() ? w_flat[i] : 0.0f;
      const std::uint8_t nibble = nf4_nibble(w * inverse);
      q.packed[i / 2] |= static_cast<std::uint8_t>(i % 2 == 0 ? nibble << 4 : nibble);
    }
  }
  if (double_quant) {
    double_quantize(q, absmax);
  } else {
    q.absmax = std::move(absmax);
  }
  return q;
}

Int8Quantized quantize_int8_rowwise(const std::vector<float>& values, std::int64_t rows, int cols) {
  if (rows < 0 || cols < 0 || static_cast<std::int64_t>(values.size()) != rows * cols)
    throw std::invalid_argument("values.size() = " + std::to_string(values.size()) +
                                ": expected rows * cols = " + std::to_string(rows) + " * " +
                                std::to_string(cols));
  Int8Quantized q;
  q.rows = rows;
  q.cols = cols;
  q.cb.resize(values.size());
  q.row_stats.resize(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = values.data() + r * cols;
    q.row_stats[r] = abs_max(row, row + cols);
    const float scale = 127.0f / q.row_stats[r];
    for (int c = 0; c < cols; ++c) {
      const float scaled = row[c] * scale;  // NaN for an all-zero row: stored as 0
      q.cb[r * cols + c] =
          std::isnan(scaled) ? 0 : static_cast<std::int8_t>(std::nearbyint(scaled));
    }
  }
  return q;
}

float nf4_block_absmax(const Nf4Quantized& q, std::int64_t block) {
  if (!q.double_quant) return q.absmax[block];
  // Two statements: the product is rounded to fp32 before the offset is added (no fused
  // multiply-add), as SPEC.md requires.
  const float scaled = q.code2[q.qabsmax[block]] * q.absmax2[block / kAbsmaxBlocksize];
  return scaled + q.offset;
}

float nf4_value(const Nf4Quantized& q, std::int64_t flat) {
  const std::uint8_t byte = q.packed[flat / 2];
  const int nibble = flat % 2 == 0 ? byte >> 4 : byte & 0x0F;
  return q.code[nibble] * nf4_block_absmax(q, flat / q.blocksize);
}

float int8_value(const Int8Quantized& q, std::int64_t flat) {
  const float scaled = static_cast<float>(q.cb[flat]) * q.row_stats[flat / q.cols];
  return scaled * kInt8Factor;
}

HostTensor dequantize(const Nf4Quantized& q, DType act) {
  HostTensor out(act, static_cast<std::size_t>(q.values));
  for (std::int64_t i = 0; i < q.values; ++i) out.set(i, nf4_value(q, i));
  return out;
}

HostTensor dequantize(const Int8Quantized& q, DType act) {
  HostTensor out(act, q.cb.size());
  for (std::size_t i = 0; i < q.cb.size(); ++i) out.set(i, int8_value(q, i));
  return out;
}

std::vector<float> random_quant_weights(std::size_t n, std::uint64_t seed) {
  constexpr std::size_t kRun = 97;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-8, 3);
  std::vector<float> w(n);
  for (std::size_t i = 0; i < n; i += kRun) {
    const float scale = std::ldexp(1.0f, exponent(rng));
    for (std::size_t j = i; j < std::min(n, i + kRun); ++j) w[j] = uniform(rng) * scale;
  }
  return w;
}

HostTensor select_experts(const HostTensor& all, std::int64_t expert_size,
                          const std::vector<int>& experts) {
  const std::size_t bytes = expert_size * size_of(all.dtype());
  HostTensor out(all.dtype(), experts.size() * expert_size);
  for (std::size_t s = 0; s < experts.size(); ++s) {
    if (experts[s] < 0 || (experts[s] + 1) * bytes > all.bytes().size())
      throw std::out_of_range("expert " + std::to_string(experts[s]) + " is not in the tensor");
    std::memcpy(out.bytes().data() + s * bytes, all.bytes().data() + experts[s] * bytes, bytes);
  }
  return out;
}

}  // namespace moejit::test
