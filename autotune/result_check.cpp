#include "autotune/result_check.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace moejit {
namespace {

float from_bf16(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

float from_fp16(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits >> 15) << 31;
  const int exponent = (bits >> 10) & 0x1F;
  const std::uint32_t mantissa = bits & 0x3FF;
  if (exponent == 0x1F)  // inf or NaN
    return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  if (exponent == 0)  // zero or subnormal: mantissa * 2^-24, exact in float
    return std::bit_cast<float>(sign) + (sign ? -1.0f : 1.0f) * std::ldexp(float(mantissa), -24);
  return std::bit_cast<float>(sign | static_cast<std::uint32_t>(exponent - 15 + 127) << 23 |
                              (mantissa << 13));
}

// The relative spacing the comparison allows: that of `dtype` values just above 1 for the 16-bit
// types (configs may round a sum differently by one unit), and for fp32 results, which are long
// sums in config-dependent orders, that of the order differences instead.
double relative_spacing(DType dtype) {
  switch (dtype) {
    case DType::bf16:
      return std::ldexp(1.0, -7);
    case DType::fp16:
      return std::ldexp(1.0, -10);
    case DType::fp32:
      return std::ldexp(1.0, -14);
  }
  return 1.0;
}

}  // namespace

std::vector<float> widen(const std::vector<unsigned char>& bytes, DType dtype) {
  std::vector<float> out;
  if (dtype == DType::fp32) {
    out.resize(bytes.size() / 4);
    std::memcpy(out.data(), bytes.data(), out.size() * 4);
    return out;
  }
  out.resize(bytes.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto bits = static_cast<std::uint16_t>(bytes[2 * i] | bytes[2 * i + 1] << 8);
    out[i] = dtype == DType::bf16 ? from_bf16(bits) : from_fp16(bits);
  }
  return out;
}

std::string result_difference(const std::vector<float>& got, const std::vector<float>& want,
                              DType dtype) {
  if (got.size() != want.size())
    return fmt::format("{} elements against {}", got.size(), want.size());
  double largest = 0;
  for (const float w : want) largest = std::max(largest, std::fabs(double(w)));
  const double spacing = relative_spacing(dtype);
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    const bool close =
        std::isfinite(g) && std::fabs(g - w) <= 2 * spacing * std::fabs(w) + spacing * largest / 8;
    if (!close && bad++ == 0) first = i;
  }
  if (bad == 0) return {};
  return fmt::format("{} of {} elements differ, the first at {}: {} against {}", bad, got.size(),
                     first, got[first], want[first]);
}

}  // namespace moejit
