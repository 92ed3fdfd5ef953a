// The comparison that keeps a tuned config whose result is wrong for its shape out of the cache.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "autotune/result_check.hpp"

namespace moejit {
namespace {

TEST(Widen, DecodesBf16Fp16AndFp32) {
  // bf16 0x3F80 = 1, 0xC040 = -3; fp16 0x3C00 = 1, 0x0001 = 2^-24 (subnormal), 0xFC00 = -inf.
  EXPECT_EQ(widen({0x80, 0x3F, 0x40, 0xC0}, DType::bf16), (std::vector<float>{1.0f, -3.0f}));
  const std::vector<float> half = widen({0x00, 0x3C, 0x01, 0x00, 0x00, 0xFC}, DType::fp16);
  EXPECT_EQ(half[0], 1.0f);
  EXPECT_EQ(half[1], std::ldexp(1.0f, -24));
  EXPECT_EQ(half[2], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(widen({0x00, 0x00, 0xC0, 0x3F}, DType::fp32), (std::vector<float>{1.5f}));
}

TEST(ResultDifference, AcceptsRoundingLevelDifferences) {
  const std::vector<float> want{1.0f, -2.0f, 100.0f, 0.0f};
  // One bf16 unit (2^-7 relative) on each element, and a tiny value where the result is zero.
  const std::vector<float> got{1.0078125f, -2.015625f, 100.78125f, 0.01f};
  EXPECT_EQ(result_difference(got, want, DType::bf16), "");
  EXPECT_EQ(result_difference(want, want, DType::fp32), "");
}

TEST(ResultDifference, RejectsWrongUnwrittenAndShortResults) {
  const std::vector<float> want{1.0f, 2.0f, 3.0f, 4.0f};
  std::vector<float> wrong = want;
  wrong[2] = 3.5f;  // 16 bf16 units off
  const std::string why = result_difference(wrong, want, DType::bf16);
  EXPECT_NE(why.find("1 of 4 elements differ, the first at 2"), std::string::npos) << why;
  std::vector<float> unwritten = want;
  unwritten[0] = std::numeric_limits<float>::quiet_NaN();  // the poison left in place
  EXPECT_NE(result_difference(unwritten, want, DType::bf16), "");
  EXPECT_NE(result_difference({1.0f}, want, DType::bf16), "");
  // fp16 is stricter than bf16: one bf16 unit is eight fp16 units.
  EXPECT_NE(result_difference({1.0078125f, 2, 3, 4}, want, DType::fp16), "");
}

}  // namespace
}  // namespace moejit
