// The float64 reference on a case small enough to compute by hand, in every layout, B storage,
// grouping and lora dtype; plus the accuracy helpers.
#include <gtest/gtest.h>

#include <limits>
#include <tuple>

#include "tests/support/compare.hpp"
#include "tests/support/forward_case.hpp"
#include "tests/support/reference.hpp"

namespace moejit::test {
namespace {

HostTensor tensor(DType dtype, const std::vector<float>& values) {
  HostTensor t(dtype, values.size());
  for (std::size_t i = 0; i < values.size(); ++i) t.set(i, values[i]);
  return t;
}

// E = 2, k = 1, T = 2, K = N = r = 2. Token 0 goes to expert 1, token 1 to expert 0.
//   Wd_0 = I, Wd_1 = [[1, 3], [2, 4]] (K x N); A_0 = I, A_1 = [[1, 1], [1, -1]] (r x K);
//   B_0 = [[1, 0], [0, 0]], B_1 = I (N x r); bias_0 = [0.5, 0.5], bias_1 = [1, -1]; s = 0.5.
// Token 1, x = [3, 4], expert 0: [3, 4] + 0.5 * [3, 0] + [0.5, 0.5] = [5, 4.5].
// Token 0, x = [1, 2], expert 1: [5, 11] + 0.5 * [3, -1] + [1, -1] = [7.5, 9.5].
using HandCase = std::tuple<WeightLayout, BStorage, bool, bool, DType>;
class HandComputed : public ::testing::TestWithParam<HandCase> {};

TEST_P(HandComputed, MatchesTheHandResult) {
  const auto [layout, storage, grouped_in, grouped_out, lora] = GetParam();
  ProjectionSpec spec;
  spec.experts = 2;
  spec.top_k = 1;
  spec.in_features = spec.out_features = spec.rank = 2;
  spec.layout = layout;
  spec.b_storage = storage;
  spec.grouped_in = grouped_in;
  spec.grouped_out = grouped_out;
  spec.lora = lora;
  spec.has_bias = true;

  ForwardInputs in;
  in.routing = sort_by_expert({1, 0}, 2, 1);
  // Grouped row 0 is token 1, grouped row 1 is token 0.
  in.x = tensor(DType::bf16,
                grouped_in ? std::vector<float>{3, 4, 1, 2} : std::vector<float>{1, 2, 3, 4});
  in.w = tensor(DType::bf16, layout == WeightLayout::out_in
                                 ? std::vector<float>{1, 0, 0, 1, 1, 2, 3, 4}
                                 : std::vector<float>{1, 0, 0, 1, 1, 3, 2, 4});
  in.a = tensor(lora, {1, 0, 0, 1, 1, 1, 1, -1});
  switch (storage) {
    case BStorage::peft:
      in.b = tensor(lora, {1, 1, 0, 0, 0, 0, 0, 1});
      break;
    case BStorage::expert_major:
      in.b = tensor(lora, {1, 0, 1, 0, 0, 0, 0, 1});
      break;
    case BStorage::stacked:
      in.b = tensor(lora, {1, 0, 0, 0, 1, 0, 0, 1});
      break;
  }
  in.bias = tensor(DType::bf16, {0.5, 0.5, 1, -1});
  in.scale = 0.5f;

  const std::vector<double> expected =
      grouped_out ? std::vector<double>{5, 4.5, 7.5, 9.5} : std::vector<double>{7.5, 9.5, 5, 4.5};
  EXPECT_EQ(reference_forward(spec, in), expected);

  spec.has_bias = false;
  const std::vector<double> no_bias =
      grouped_out ? std::vector<double>{4.5, 4, 6.5, 10.5} : std::vector<double>{6.5, 10.5, 4.5, 4};
  EXPECT_EQ(reference_forward(spec, in), no_bias);
}

INSTANTIATE_TEST_SUITE_P(
    AllStorages, HandComputed,
    ::testing::Combine(::testing::Values(WeightLayout::out_in, WeightLayout::in_out),
                       ::testing::Values(BStorage::peft, BStorage::expert_major, BStorage::stacked),
                       ::testing::Bool(), ::testing::Bool(),
                       ::testing::Values(DType::bf16, DType::fp16, DType::fp32)));

TEST(Reference, ThreadsSplitRowsWithoutChangingThem) {
  ProjectionSpec spec;
  spec.experts = 5;
  spec.top_k = 2;
  spec.in_features = 24;
  spec.out_features = 16;
  spec.rank = 3;
  spec.b_storage = BStorage::peft;
  const ForwardInputs in = make_inputs(spec, 37, RoutingKind::skewed, 11);
  EXPECT_EQ(reference_forward(spec, in, 1), reference_forward(spec, in, 7)) << "seed 11";
}

TEST(Compare, RelativeFrobeniusError) {
  EXPECT_DOUBLE_EQ(relative_frobenius_error({3, 4}, tensor(DType::bf16, {3, 4})), 0.0);
  EXPECT_DOUBLE_EQ(relative_frobenius_error({3, 4}, tensor(DType::bf16, {3, 5})), 0.2);
  EXPECT_DOUBLE_EQ(relative_frobenius_error({0, 0}, tensor(DType::fp32, {3, 4})), 5.0);
  EXPECT_THROW(relative_frobenius_error({1}, tensor(DType::bf16, {1, 2})), std::invalid_argument);
}

TEST(Compare, FindsTheFirstNonFiniteElement) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(first_non_finite(tensor(DType::fp16, {1, 2, 3})), -1);
  EXPECT_EQ(first_non_finite(tensor(DType::bf16, {1, 2, nan, inf})), 2);
  EXPECT_EQ(first_non_finite(tensor(DType::fp16, {1, 70000})), 1);  // overflows to inf in fp16
}

TEST(Compare, ForwardMismatchExplainsTheFailure) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<double> ref{1, 2, 3, 4};
  EXPECT_EQ(forward_mismatch(ref, tensor(DType::bf16, {1, 2, 3, 4}), 2, DType::bf16), "");
  const std::string unwritten =
      forward_mismatch(ref, tensor(DType::bf16, {1, 2, 3, nan}), 2, DType::bf16);
  EXPECT_NE(unwritten.find("row 1, col 1"), std::string::npos) << unwritten;
  // Relative error 0.01 / sqrt(30) = 1.8e-3: within bf16's bound, beyond fp16's.
  const HostTensor off = tensor(DType::fp32, {1, 2, 3, 4.01f});
  EXPECT_EQ(forward_mismatch(ref, off, 2, DType::bf16), "");
  EXPECT_NE(forward_mismatch(ref, off, 2, DType::fp16).find("relative Frobenius error"),
            std::string::npos);
  EXPECT_NE(forward_mismatch(ref, tensor(DType::fp32, {1, 2, 3, 4.5f}), 2, DType::bf16), "");
}

TEST(Inputs, AreSeededScaledAndNeverZero) {
  ProjectionSpec spec;
  spec.experts = 3;
  spec.top_k = 2;
  spec.in_features = 64;
  spec.out_features = 8;
  spec.rank = 4;
  spec.has_bias = true;
  const ForwardInputs a = make_inputs(spec, 9, RoutingKind::uniform, 5);
  const ForwardInputs b = make_inputs(spec, 9, RoutingKind::uniform, 5);
  EXPECT_EQ(a.w.bytes(), b.w.bytes());
  EXPECT_EQ(a.x.size(), 9u * 64);
  EXPECT_EQ(a.b.size(), 3u * 8 * 4);
  EXPECT_EQ(a.bias.size(), 3u * 8);
  for (const HostTensor* t : {&a.x, &a.w, &a.a, &a.b, &a.bias}) EXPECT_EQ(first_non_finite(*t), -1);
  for (std::size_t i = 0; i < a.w.size(); ++i) {
    ASSERT_NE(a.w.at(i), 0.0);
    ASSERT_LE(std::abs(a.w.at(i)), 1.0 / 8 * 1.01);  // U(-1,1)/sqrt(K), K = 64
  }
}

}  // namespace
}  // namespace moejit::test
