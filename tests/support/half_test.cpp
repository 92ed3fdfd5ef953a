// The host 16-bit conversions on known bit patterns, ties, overflow, subnormals and NaN, and fp16
// against the compiler's own _Float16 conversion where the compiler has one.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "tests/support/half.hpp"

namespace moejit::test {
namespace {

float from_bits(std::uint32_t bits) {
  return std::bit_cast<float>(bits);
}

TEST(Bf16, KnownValues) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(float_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(bf16_to_float(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xC0A0), -5.0f);
}

TEST(Bf16, RoundsToNearestTiesToEven) {
  EXPECT_EQ(float_to_bf16(from_bits(0x3F808000)), 0x3F80);  // tie, even below
  EXPECT_EQ(float_to_bf16(from_bits(0x3F818000)), 0x3F82);  // tie, even above
  EXPECT_EQ(float_to_bf16(from_bits(0x3F808001)), 0x3F81);  // just above the tie
  EXPECT_EQ(float_to_bf16(from_bits(0x3F807FFF)), 0x3F80);  // just below the tie
}

TEST(Bf16, OverflowInfinityAndNan) {
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to inf
  EXPECT_EQ(float_to_bf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::quiet_NaN()), kCanonicalNan16);
  EXPECT_EQ(float_to_bf16(from_bits(0xFF800001)), kCanonicalNan16);  // signalling, negative
  EXPECT_TRUE(std::isnan(bf16_to_float(0x7FC0)));
}

TEST(Fp16, KnownValues) {
  EXPECT_EQ(float_to_fp16(1.0f), 0x3C00);
  EXPECT_EQ(float_to_fp16(-2.0f), 0xC000);
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7BFF);
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(fp16_to_float(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(fp16_to_float(0x83FF), -std::ldexp(1023.0f, -24));
}

TEST(Fp16, RoundsToNearestTiesToEven) {
  EXPECT_EQ(float_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie, even below
  EXPECT_EQ(float_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie, even above
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -25)), 0x0000);             // subnormal tie to zero
  EXPECT_EQ(float_to_fp16(3 * std::ldexp(1.0f, -25)), 0x0002);         // subnormal tie up
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -26)), 0x0000);
}

TEST(Fp16, OverflowInfinityAndNan) {
  EXPECT_EQ(float_to_fp16(65519.0f), 0x7BFF);  // below the tie with infinity
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7C00);  // the tie rounds to even: infinity
  EXPECT_EQ(float_to_fp16(1e6f), 0x7C00);
  EXPECT_EQ(float_to_fp16(-1e6f), 0xFC00);
  EXPECT_EQ(float_to_fp16(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(float_to_fp16(std::numeric_limits<float>::quiet_NaN()), kCanonicalNan16);
  EXPECT_TRUE(std::isinf(fp16_to_float(0xFC00)));
  EXPECT_TRUE(std::isnan(fp16_to_float(0x7E00)));
}

// Every non-NaN 16-bit value converts to a float and back to the same bits.
TEST(Half, EveryValueRoundTrips) {
  for (std::uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    const auto b = static_cast<std::uint16_t>(bits);
    if (!std::isnan(bf16_to_float(b))) {
      ASSERT_EQ(float_to_bf16(bf16_to_float(b)), b) << "bf16 bits " << bits;
    }
    if (!std::isnan(fp16_to_float(b))) {
      ASSERT_EQ(float_to_fp16(fp16_to_float(b)), b) << "fp16 bits " << bits;
    }
  }
}

#ifdef __FLT16_MAX__
// An independent oracle: the compiler's float -> _Float16 conversion rounds to nearest even.
TEST(Fp16, MatchesCompilerConversion) {
  std::mt19937 rng(20240601);
  std::uniform_int_distribution<int> exponent(-30, 17);
  std::uniform_real_distribution<float> mantissa(-2.0f, 2.0f);
  for (int i = 0; i < 200000; ++i) {
    const float value = std::ldexp(mantissa(rng), exponent(rng));
    const auto expected = std::bit_cast<std::uint16_t>(static_cast<_Float16>(value));
    ASSERT_EQ(float_to_fp16(value), expected) << "value " << value << " seed 20240601";
  }
}
#endif

}  // namespace
}  // namespace moejit::test
