// The CPU quantizer and dequantizers of SPEC.md "Base weights": hand-checked goldens that pin the
// nibble order, the padding, blocks crossing rows and double quantization; the decision rules and
// the dynamic map; and quantize -> dequantize error bounds for every block size.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>

#include "tests/support/half.hpp"
#include "tests/support/quant.hpp"

namespace moejit::test {
namespace {

constexpr std::uint64_t kSeed = 1234;

float up(float x) {
  return std::nextafter(x, std::numeric_limits<float>::infinity());
}

TEST(Nf4Code, IsTheAscendingNormalFloatTable) {
  EXPECT_TRUE(std::is_sorted(kNf4Code.begin(), kNf4Code.end()));
  EXPECT_EQ(kNf4Code[0], -1.0f);
  EXPECT_EQ(kNf4Code[7], 0.0f);
  EXPECT_EQ(kNf4Code[15], 1.0f);
}

TEST(Nf4Nibble, EachCodeMapsToItself) {
  for (int i = 0; i < 16; ++i) EXPECT_EQ(nf4_nibble(kNf4Code[i]), i) << kNf4Code[i];
}

TEST(Nf4Nibble, NearestCodeAwayFromMidpoints) {
  for (int i = 0; i < 15; ++i) {
    const double midpoint = (static_cast<double>(kNf4Code[i]) + kNf4Code[i + 1]) / 2;
    const auto below = static_cast<float>(midpoint * (1 - 1e-6 * (midpoint > 0 ? 1 : -1)));
    const auto above = static_cast<float>(midpoint * (1 + 1e-6 * (midpoint > 0 ? 1 : -1)));
    EXPECT_EQ(nf4_nibble(below), i) << "just below the midpoint " << midpoint;
    EXPECT_EQ(nf4_nibble(above), i + 1) << "just above the midpoint " << midpoint;
  }
}

// bitsandbytes compares with `>` against its tree's constants; a value equal to one takes the lower
// code. These four are one ulp off the fp32-rounded midpoints (see quant.cpp).
TEST(Nf4Nibble, ThresholdsAreThoseOfBitsandbytesDecisionTree) {
  for (float t : {-0.8480964004993439f, 0.1202552504837513f, 0.5016634166240692f,
                  0.8614784181118011f, 0.03979014977812767f, -0.33967943489551544f}) {
    const int lower = nf4_nibble(t);
    EXPECT_EQ(nf4_nibble(up(t)), lower + 1) << t;
    EXPECT_LT(kNf4Code[lower], t);
    EXPECT_GT(kNf4Code[lower + 1], t);
  }
  EXPECT_EQ(nf4_nibble(-0.8480964004993439f), 0);
  EXPECT_EQ(nf4_nibble(0.8614784181118011f), 14);
  EXPECT_EQ(nf4_nibble(0.03979014977812767f), 7);
}

TEST(Nf4Nibble, OutOfRangeClampsAndNanIsZero) {
  EXPECT_EQ(nf4_nibble(1.5f), 15);
  EXPECT_EQ(nf4_nibble(-1.5f), 0);
  EXPECT_EQ(nf4_nibble(std::numeric_limits<float>::quiet_NaN()), 0);
}

TEST(Nf4Pack, ThreeValuesMakeTwoBytesHighNibbleFirstAndPaddedLow) {
  // 1 -> 15, -1 -> 0, 0.5 -> 12 (0.5 < midpoint 0.5017 of 0.4407 and 0.5626), pad 0 -> 7.
  const Nf4Quantized q = quantize_nf4({1.0f, -1.0f, 0.5f}, 64, false);
  EXPECT_EQ(q.values, 3);
  EXPECT_EQ(q.packed, (std::vector<std::uint8_t>{0xF0, 0xC7}));
  EXPECT_EQ(q.absmax, std::vector<float>{1.0f});
  EXPECT_EQ(nf4_value(q, 2), kNf4Code[12]);
}

TEST(Nf4Pack, EvenCountHasNoPad) {
  // absmax 0.5: 0.5 -> 1 -> 15; -0.25 -> -0.5 -> 2 (below the midpoint -0.4600 of codes 2 and 3).
  const Nf4Quantized q = quantize_nf4({0.5f, -0.25f}, 32, false);
  EXPECT_EQ(q.packed, std::vector<std::uint8_t>{0xF2});
  EXPECT_EQ(nf4_value(q, 0), 0.5f);
  EXPECT_EQ(nf4_value(q, 1), kNf4Code[2] * 0.5f);
}

TEST(Nf4Blocks, BlockCrossesARowBoundary) {
  // Two rows of 24 values, blocks of 32: block 0 holds row 0 and row 1's first 8 values.
  std::vector<float> w(48, 0.1f);
  w[29] = -4.0f;  // row 1, column 5: sets block 0's absmax
  w[40] = 2.0f;   // block 1
  const Nf4Quantized q = quantize_nf4(w, 32, false);
  EXPECT_EQ(q.absmax, (std::vector<float>{4.0f, 2.0f}));
  EXPECT_EQ(q.packed[14], 0x70);  // flat 28: 0.025 -> 7; flat 29: -1 -> 0
  EXPECT_EQ(nf4_value(q, 29), -4.0f);
  EXPECT_EQ(nf4_value(q, 0), 0.0f);                 // 0.025 rounds to the zero code
  EXPECT_EQ(nf4_value(q, 33), kNf4Code[8] * 2.0f);  // 0.05 is above the midpoint 0.0398
  EXPECT_EQ(nf4_value(q, 40), 2.0f);
}

TEST(Nf4Blocks, AllZeroBlockStoresNibbleZeroAndDequantizesToMinusZero) {
  // bitsandbytes normalizes by 1/0: 0 * inf is NaN, which its decision tree sends to nibble 0.
  const Nf4Quantized q = quantize_nf4(std::vector<float>(32, 0.0f), 32, false);
  EXPECT_EQ(q.packed, std::vector<std::uint8_t>(16, 0x00));
  EXPECT_EQ(nf4_value(q, 5), 0.0f);
  EXPECT_TRUE(std::signbit(nf4_value(q, 5)));
}

TEST(Nf4Blocks, RejectsUnsupportedBlockSizes) {
  for (int bs : {0, 16, 48, 100, 8192})
    EXPECT_THROW(quantize_nf4({1.0f}, bs, false), std::invalid_argument) << bs;
}

TEST(Nf4DoubleQuant, TinyInputByHand) {
  // Blocks of constant magnitude 2, 4, 6: offset 4, centred -2, 0, 2, absmax2 2, normalized
  // -1, 0, 1 -> the lowest code (-0.99297), 0 at index 127, 1.0 at index 255.
  std::vector<float> w(96);
  for (int i = 0; i < 96; ++i) w[i] = (i % 2 ? -1.0f : 1.0f) * static_cast<float>(2 * (i / 32 + 1));
  const Nf4Quantized q = quantize_nf4(w, 32, true);
  EXPECT_TRUE(q.absmax.empty());
  EXPECT_EQ(q.qabsmax, (std::vector<std::uint8_t>{0, 127, 255}));
  EXPECT_EQ(q.absmax2, std::vector<float>{2.0f});
  EXPECT_EQ(q.offset, 4.0f);
  EXPECT_EQ(q.code2, dynamic_map_signed());
  EXPECT_NEAR(nf4_block_absmax(q, 0), 2.0140625, 1e-6);
  EXPECT_EQ(nf4_block_absmax(q, 1), 4.0f);
  EXPECT_EQ(nf4_block_absmax(q, 2), 6.0f);
  EXPECT_EQ(nf4_value(q, 95), -6.0f);
}

TEST(Nf4DoubleQuant, ProductIsRoundedBeforeTheOffsetIsAdded) {
  // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 rounds to 1 + 2^-11 in fp32; a fused multiply-add would keep
  // the 2^-24 after adding -1.
  Nf4Quantized q;
  q.values = 2;
  q.blocksize = 32;
  q.double_quant = true;
  q.packed = {0xF7};
  q.code.assign(kNf4Code.begin(), kNf4Code.end());
  q.qabsmax = {3};
  q.code2.assign(256, 0.0f);
  q.code2[3] = 1.0f + std::ldexp(1.0f, -12);
  q.absmax2 = {1.0f + std::ldexp(1.0f, -12)};
  q.offset = -1.0f;
  EXPECT_EQ(nf4_block_absmax(q, 0), std::ldexp(1.0f, -11));
  EXPECT_EQ(nf4_value(q, 0), std::ldexp(1.0f, -11));
}

TEST(DynamicMap, SignedMapProperties) {
  const std::vector<float> code = dynamic_map_signed();
  ASSERT_EQ(code.size(), 256u);
  EXPECT_TRUE(std::adjacent_find(code.begin(), code.end(), std::greater_equal<float>()) ==
              code.end())
      << "strictly ascending";
  EXPECT_EQ(code[127], 0.0f);
  EXPECT_EQ(code[255], 1.0f);
  for (int i = 0; i < 127; ++i) EXPECT_EQ(code[i], -code[254 - i]) << i;
  // Decade i - 6 holds the 2^i midpoints of linspace(0.1, 1, 2^i + 1), scaled by 10^(i-6).
  for (int i = 0; i < 7; ++i) {
    const double low = std::pow(10.0, i - 7), high = std::pow(10.0, i - 6);
    const auto count = std::count_if(code.begin() + 128, code.begin() + 255,
                                     [&](float v) { return v > low && v < high; });
    EXPECT_EQ(count, 1 << i) << "decade " << i - 6;
  }
  EXPECT_NEAR(code[128], 0.55e-6, 1e-13);
  EXPECT_NEAR(code[254], (1.0 - 0.9 / 64 + 1.0) / 2, 1e-7);
}

TEST(DynamicCodeIndex, NearestCodeWithTiesToTheEvenIndex) {
  const std::vector<float> code = dynamic_map_signed();
  for (int i = 0; i < 256; ++i) EXPECT_EQ(dynamic_code_index(code, code[i]), i);
  for (int i : {10, 11, 200, 201}) {
    const float midpoint = (code[i] + code[i + 1]) * 0.5f;
    const int even = i % 2 == 0 ? i : i + 1;
    EXPECT_EQ(dynamic_code_index(code, midpoint), even) << "midpoint after " << i;
    EXPECT_EQ(dynamic_code_index(code, up(midpoint)), i + 1);
  }
  EXPECT_EQ(dynamic_code_index(code, 2.0f), 255);
  EXPECT_EQ(dynamic_code_index(code, -2.0f), 0);
  EXPECT_EQ(dynamic_code_index(code, std::numeric_limits<float>::quiet_NaN()), 0);
}

// |x - code[nibble]| for x = w / absmax may be at most half the gap to the neighbour on x's side.
double half_gap(float x, int nibble) {
  const int neighbour = x > kNf4Code[nibble] ? std::min(nibble + 1, 15) : std::max(nibble - 1, 0);
  return std::fabs(static_cast<double>(kNf4Code[neighbour]) - kNf4Code[nibble]) / 2;
}

class Nf4RoundTrip : public ::testing::TestWithParam<int> {};

TEST_P(Nf4RoundTrip, ErrorIsAtMostHalfACodeStep) {
  const int bs = GetParam();
  const std::vector<float> w = random_quant_weights(10007, kSeed + bs);
  const Nf4Quantized q = quantize_nf4(w, bs, false);
  ASSERT_EQ(q.packed.size(), 5004u);
  ASSERT_EQ(q.absmax.size(), static_cast<std::size_t>((10007 + bs - 1) / bs));
  for (std::size_t b = 0; b < q.absmax.size(); ++b) {
    float m = 0.0f;
    for (std::size_t i = b * bs; i < std::min(w.size(), (b + 1) * bs); ++i)
      m = std::max(m, std::fabs(w[i]));
    ASSERT_EQ(q.absmax[b], m) << "block " << b;
  }
  for (std::size_t i = 0; i < w.size(); ++i) {
    const float absmax = q.absmax[i / bs];
    const int nibble = i % 2 ? q.packed[i / 2] & 0x0F : q.packed[i / 2] >> 4;
    const double bound = half_gap(w[i] / absmax, nibble) * absmax * (1 + 1e-5);
    ASSERT_LE(std::fabs(static_cast<double>(w[i]) - nf4_value(q, i)), bound)
        << "value " << i << " = " << w[i] << ", bs " << bs;
  }
  EXPECT_EQ(q.packed.back() & 0x0F, nf4_nibble(0.0f)) << "pad nibble";
}

TEST_P(Nf4RoundTrip, DoubleQuantKeepsNibblesAndApproximatesAbsmax) {
  const int bs = GetParam();
  const std::vector<float> w = random_quant_weights(70001, kSeed + 2 * bs);
  const Nf4Quantized single = quantize_nf4(w, bs, false);
  const Nf4Quantized dq = quantize_nf4(w, bs, true);
  EXPECT_EQ(dq.packed, single.packed);
  ASSERT_EQ(dq.qabsmax.size(), single.absmax.size());
  ASSERT_EQ(dq.absmax2.size(), (single.absmax.size() + 255) / 256);
  for (std::int64_t b = 0; b < dq.blocks(); ++b) {
    // The widest gap between dynamic-map codes is 0.9/64 (top decade): half of it, times absmax2.
    const double bound = dq.absmax2[b / 256] / 128.0 * (1 + 1e-5);
    ASSERT_LE(std::fabs(nf4_block_absmax(dq, b) - single.absmax[b]), bound) << "block " << b;
  }
}

INSTANTIATE_TEST_SUITE_P(BlockSizes, Nf4RoundTrip, ::testing::Values(32, 64, 128, 256, 4096));

TEST(Int8Rowwise, RoundsHalfToEvenByHand) {
  // Row 0: absmax 127, scale 1. Row 1: absmax 2, scale 63.5. Row 2: zeros.
  const Int8Quantized q = quantize_int8_rowwise({127.0f, 63.5f, -0.5f, 1.5f, 2.5f, -2.0f, 1.0f,
                                                 0.5f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f},
                                                3, 5);
  EXPECT_EQ(q.row_stats, (std::vector<float>{127.0f, 2.0f, 0.0f}));
  EXPECT_EQ(q.cb, (std::vector<std::int8_t>{127, 64, 0, 2, 2, -127, 64, 32, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(int8_value(q, 0), 127.0f * 127.0f * kInt8Factor);
  EXPECT_EQ(int8_value(q, 12), 0.0f);
  EXPECT_THROW(quantize_int8_rowwise({1.0f, 2.0f}, 1, 3), std::invalid_argument);
}

TEST(Int8Rowwise, RoundTripWithinHalfAStep) {
  const std::int64_t rows = 37;
  const int cols = 200;
  const std::vector<float> w = random_quant_weights(rows * cols, kSeed);
  const Int8Quantized q = quantize_int8_rowwise(w, rows, cols);
  for (std::int64_t r = 0; r < rows; ++r) {
    int largest = 0;
    for (int c = 0; c < cols; ++c) largest = std::max(largest, std::abs(int{q.cb[r * cols + c]}));
    EXPECT_EQ(largest, 127) << "row " << r << " reaches +-127";
    for (int c = 0; c < cols; ++c) {
      const std::int64_t i = r * cols + c;
      ASSERT_LE(std::fabs(w[i] - int8_value(q, i)), q.row_stats[r] / 254.0 * (1 + 1e-5)) << i;
    }
  }
}

TEST(Dequantize, RoundsOnceToTheActDtype) {
  Nf4Quantized q;
  q.values = 2;
  q.blocksize = 64;
  q.packed = {0xF0};
  q.code.assign(kNf4Code.begin(), kNf4Code.end());
  q.absmax = {3.0f};
  const HostTensor bf = dequantize(q, DType::bf16);
  const HostTensor fp = dequantize(q, DType::fp16);
  EXPECT_EQ(bf.bytes(), (std::vector<std::uint8_t>{0x40, 0x40, 0x40, 0xC0}));  // 3, -3
  EXPECT_EQ(fp.bytes(), (std::vector<std::uint8_t>{0x00, 0x42, 0x00, 0xC2}));
  // A value needing rounding: code[13] * 3 in fp32, then to bf16.
  q.packed = {0xD0};
  EXPECT_EQ(dequantize(q, DType::bf16).at(0), bf16_to_float(float_to_bf16(kNf4Code[13] * 3.0f)));
}

TEST(Dequantize, SelectsExpertsInTheGivenOrder) {
  const Int8Quantized q = quantize_int8_rowwise(random_quant_weights(3 * 4 * 8, kSeed), 12, 8);
  const HostTensor all = dequantize(q, DType::fp16);
  const HostTensor picked = select_experts(all, 32, {2, 0, 2});
  ASSERT_EQ(picked.size(), 96u);
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(picked.at(i), all.at(64 + i));
    EXPECT_EQ(picked.at(32 + i), all.at(i));
    EXPECT_EQ(picked.at(64 + i), all.at(64 + i));
  }
  EXPECT_THROW(select_experts(all, 32, {3}), std::out_of_range);
}

}  // namespace
}  // namespace moejit::test
