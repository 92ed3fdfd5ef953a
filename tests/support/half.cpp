#include "tests/support/half.hpp"

#include <bit>

namespace moejit::test {
namespace {

constexpr std::uint32_t kAbsMask = 0x7FFFFFFFu;
constexpr std::uint32_t kF32Inf = 0x7F800000u;

// value >> shift rounded to nearest, ties to even (shift in 1..31).
std::uint32_t shift_right_rne(std::uint32_t value, int shift) {
  const std::uint32_t kept = value >> shift;
  const std::uint32_t rest = value & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1);
  return kept + ((rest > half || (rest == half && (kept & 1u))) ? 1u : 0u);
}

}  // namespace

std::uint16_t float_to_bf16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & kAbsMask) > kF32Inf) return kCanonicalNan16;
  // Dropping 16 bits of mantissa; a carry into the exponent is the correct rounding (up to inf).
  return static_cast<std::uint16_t>(shift_right_rne(bits, 16));
}

float bf16_to_float(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

std::uint16_t float_to_fp16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t abs = bits & kAbsMask;
  if (abs > kF32Inf) return kCanonicalNan16;
  // 65520 = 0x477FF000 is the tie between 65504 (odd mantissa) and the next power: rounds to inf.
  if (abs >= 0x477FF000u) return sign | 0x7C00u;
  if (abs >= 0x38800000u) {  // normal in fp16 (>= 2^-14): rebias the exponent from 127 to 15
    return sign | static_cast<std::uint16_t>(shift_right_rne(abs - (112u << 23), 13));
  }
  // Subnormal in fp16: the result is round(|value| * 2^24) units of 2^-24.
  const int exponent = static_cast<int>(abs >> 23);
  if (exponent < 102) return sign;  // below 2^-25: rounds to zero (shift would exceed 24)
  const std::uint32_t mantissa = (abs & 0x7FFFFFu) | 0x800000u;
  return sign | static_cast<std::uint16_t>(shift_right_rne(mantissa, 126 - exponent));
}

float fp16_to_float(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1Fu;
  std::uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0x1F) return std::bit_cast<float>(sign | kF32Inf | (mantissa << 13));
  if (exponent != 0)
    return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return std::bit_cast<float>(sign);
  // Subnormal: normalize the mantissa into an fp32 normal.
  int shift = 0;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    ++shift;
  }
  const std::uint32_t f32_exponent = static_cast<std::uint32_t>(113 - shift);
  return std::bit_cast<float>(sign | (f32_exponent << 23) | ((mantissa & 0x3FFu) << 13));
}

}  // namespace moejit::test
