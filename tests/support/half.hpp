#pragma once
// Host conversions between float and the 16-bit float formats, bit exact with the GPU's
// cvt.rn.{bf16,f16}.f32: round to nearest, ties to even; overflow to infinity; every NaN becomes
// the canonical NaN 0x7FFF (the GPU does not propagate payloads through these conversions).
#include <cstdint>

namespace moejit::test {

inline constexpr std::uint16_t kCanonicalNan16 = 0x7FFF;

std::uint16_t float_to_bf16(float value);
float bf16_to_float(std::uint16_t bits);

std::uint16_t float_to_fp16(float value);
float fp16_to_float(std::uint16_t bits);

}  // namespace moejit::test
