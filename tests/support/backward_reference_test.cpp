// The float64 backward reference: a case small enough to compute by hand in every layout, B
// storage, grouping and lora dtype; the sum over slots and zero-row experts; and a
// finite-difference check of every gradient element against the float64 forward reference, which
// checks SPEC.md's backward formulas and the storage of dX, dA and dB at once.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "tests/support/backward_reference.hpp"
#include "tests/support/forward_case.hpp"
#include "tests/support/reference.hpp"

namespace moejit::test {
namespace {

HostTensor tensor(DType dtype, const std::vector<float>& values) {
  HostTensor t(dtype, values.size());
  for (std::size_t i = 0; i < values.size(); ++i) t.set(i, values[i]);
  return t;
}

ProjectionSpec spec_of(int experts, int top_k, int k, int n, int rank) {
  ProjectionSpec s;
  s.experts = experts;
  s.top_k = top_k;
  s.in_features = k;
  s.out_features = n;
  s.rank = rank;
  return s;
}

// The forward hand case of reference_test.cpp: E = 2, k = 1, T = 2, K = N = r = 2, s = 0.5;
// token 0 -> expert 1, token 1 -> expert 0, so grouped row 0 is token 1 and grouped row 1 token 0.
//   Wd_0 = I, Wd_1 = [[1, 3], [2, 4]] (K x N); A_0 = I, A_1 = [[1, 1], [1, -1]] (r x K);
//   B_0 = [[1, 0], [0, 0]], B_1 = I (N x r); x_0 = [1, 2], x_1 = [3, 4].
// dy of grouped row 0 (expert 0) = [1, 2], of grouped row 1 (expert 1) = [1, -1].
// Row 0: dy*B_0 = [1, 0]; dx = [1, 2] + 0.5 * [1, 0] = [1.5, 2]; x*A_0^T = [3, 4].
// Row 1: dy*B_1 = [1, -1]; dx = [1 - 3, 2 - 4] + 0.5 * [0, 2] = [-2, -1]; x*A_1^T = [3, -1].
// dA_0 = 0.5 * [1, 0]^T [3, 4] = [[1.5, 2], [0, 0]]; dA_1 = 0.5 * [1, -1]^T [1, 2].
// dB_0 = 0.5 * [1, 2]^T [3, 4] = [[1.5, 2], [3, 4]]; dB_1 = 0.5 * [1, -1]^T [3, -1].
using HandCase = std::tuple<WeightLayout, BStorage, bool, bool, DType>;
class HandComputedBackward : public ::testing::TestWithParam<HandCase> {};

ForwardInputs hand_inputs(const ProjectionSpec& spec) {
  ForwardInputs in;
  in.routing = sort_by_expert({1, 0}, 2, 1);
  in.x = tensor(DType::bf16,
                spec.grouped_in ? std::vector<float>{3, 4, 1, 2} : std::vector<float>{1, 2, 3, 4});
  in.w = tensor(DType::bf16, spec.layout == WeightLayout::out_in
                                 ? std::vector<float>{1, 0, 0, 1, 1, 2, 3, 4}
                                 : std::vector<float>{1, 0, 0, 1, 1, 3, 2, 4});
  in.a = tensor(spec.lora, {1, 0, 0, 1, 1, 1, 1, -1});
  switch (spec.b_storage) {
    case BStorage::peft:
      in.b = tensor(spec.lora, {1, 1, 0, 0, 0, 0, 0, 1});
      break;
    case BStorage::expert_major:
      in.b = tensor(spec.lora, {1, 0, 1, 0, 0, 0, 0, 1});
      break;
    case BStorage::stacked:
      in.b = tensor(spec.lora, {1, 0, 0, 0, 1, 0, 0, 1});
      break;
  }
  in.bias = tensor(DType::bf16, {0.5, 0.5, 1, -1});  // no gradient, so no effect
  in.scale = 0.5f;
  return in;
}

// dB_0 = [[1.5, 2], [3, 4]] and dB_1 = [[1.5, -0.5], [-1.5, 0.5]] in B's storage.
std::vector<double> hand_db(BStorage storage) {
  switch (storage) {
    case BStorage::peft:  // [o][j][e]
      return {1.5, 1.5, 2, -0.5, 3, -1.5, 4, 0.5};
    case BStorage::expert_major:  // [o][e][j]
      return {1.5, 2, 1.5, -0.5, 3, 4, -1.5, 0.5};
    case BStorage::stacked:  // [e][o][j]
      return {1.5, 2, 3, 4, 1.5, -0.5, -1.5, 0.5};
  }
  return {};
}

TEST_P(HandComputedBackward, MatchesTheHandResult) {
  ProjectionSpec spec = spec_of(2, 1, 2, 2, 2);
  std::tie(spec.layout, spec.b_storage, spec.grouped_in, spec.grouped_out, spec.lora) = GetParam();
  spec.has_bias = true;
  const ForwardInputs in = hand_inputs(spec);
  // Grouped rows' dy = [1, 2] and [1, -1]; in slot order token 0 (grouped row 1) comes first.
  const HostTensor dy = tensor(DType::bf16, spec.grouped_out ? std::vector<float>{1, 2, 1, -1}
                                                             : std::vector<float>{1, -1, 1, 2});
  const BackwardReference ref = reference_backward(spec, in, dy);
  const std::vector<double> dx_rows{1.5, 2, -2, -1}, dx_tokens{-2, -1, 1.5, 2};
  EXPECT_EQ(ref.dx, spec.grouped_in ? dx_rows : dx_tokens);
  EXPECT_EQ(ref.da, (std::vector<double>{1.5, 2, 0, 0, 0.5, 1, -0.5, -1}));
  EXPECT_EQ(ref.db, hand_db(spec.b_storage));
  EXPECT_EQ(ref.xa, (std::vector<double>{3, 4, 3, -1}));
}

INSTANTIATE_TEST_SUITE_P(
    AllStorages, HandComputedBackward,
    ::testing::Combine(::testing::Values(WeightLayout::out_in, WeightLayout::in_out),
                       ::testing::Values(BStorage::peft, BStorage::expert_major, BStorage::stacked),
                       ::testing::Bool(), ::testing::Bool(),
                       ::testing::Values(DType::bf16, DType::fp16, DType::fp32)));

// Token-level dX (input not grouped) is the sum of the k grouped rows' dx of that token, which the
// same inputs give row by row when presented grouped.
TEST(BackwardReference, UngroupedDxSumsTheSlotsOfEachToken) {
  ProjectionSpec spec = spec_of(5, 3, 24, 16, 4);
  const ForwardInputs in = make_inputs(spec, 9, RoutingKind::skewed, 3);
  Rng rng(4);
  const HostTensor dy = random_tensor(DType::bf16, in.routing.rows() * 16, 1.0, rng);
  const BackwardReference tokens = reference_backward(spec, in, dy);
  ForwardInputs grouped = in;
  grouped.x = HostTensor(DType::bf16, in.routing.rows() * 24);
  for (std::int64_t i = 0; i < in.routing.rows(); ++i)
    for (int c = 0; c < 24; ++c)
      grouped.x.set(i * 24 + c,
                    static_cast<float>(in.x.at(in.routing.sorted_scattered_idxs[i] / 3 * 24 + c)));
  spec.grouped_in = true;
  const BackwardReference rows = reference_backward(spec, grouped, dy);
  EXPECT_EQ(rows.da, tokens.da);
  EXPECT_EQ(rows.db, tokens.db);
  for (std::int64_t t = 0; t < 9; ++t) {
    for (int c = 0; c < 24; ++c) {
      double sum = 0;
      for (std::int64_t i = 0; i < in.routing.rows(); ++i)
        if (in.routing.sorted_scattered_idxs[i] / 3 == t) sum += rows.dx[i * 24 + c];
      ASSERT_NEAR(tokens.dx[t * 24 + c], sum, 1e-12 * (1 + std::abs(sum)))
          << "t=" << t << " c=" << c;
    }
  }
}

TEST(BackwardReference, ExpertsWithoutRowsGetZeroGradientsAndThreadsChangeNothing) {
  ProjectionSpec spec = spec_of(17, 2, 40, 24, 5);
  spec.b_storage = BStorage::expert_major;
  const ForwardInputs in = make_inputs(spec, 30, RoutingKind::sparse, 8);
  Rng rng(9);
  const HostTensor dy = random_tensor(DType::bf16, in.routing.rows() * 24, 1.0, rng);
  const BackwardReference ref = reference_backward(spec, in, dy, 1);
  const BackwardReference threaded = reference_backward(spec, in, dy, 7);
  EXPECT_EQ(ref.dx, threaded.dx);
  EXPECT_EQ(ref.da, threaded.da);
  EXPECT_EQ(ref.db, threaded.db);
  int empty_experts = 0;
  for (int e = 0; e < 17; ++e) {
    const bool empty = in.routing.rows_of(e) == 0;
    empty_experts += empty;
    double norm_a = 0, norm_b = 0;
    for (int j = 0; j < 5; ++j) {
      for (int c = 0; c < 40; ++c) norm_a += std::abs(ref.da[(e * 5 + j) * 40 + c]);
      for (int o = 0; o < 24; ++o) norm_b += std::abs(ref.db[b_storage_index(spec, e, o, j)]);
    }
    EXPECT_EQ(norm_a == 0, empty) << "expert " << e << " has " << in.routing.rows_of(e) << " rows";
    EXPECT_EQ(norm_b == 0, empty) << "expert " << e << " has " << in.routing.rows_of(e) << " rows";
  }
  EXPECT_GT(empty_experts, 0) << "sparse routing (seed 8) left every expert with rows";
}

TEST(BackwardReference, RejectsSizesThatDisagreeWithTheSpec) {
  const ProjectionSpec spec = spec_of(3, 2, 16, 8, 4);
  const ForwardInputs in = make_inputs(spec, 5, RoutingKind::uniform, 1);
  Rng rng(2);
  const HostTensor short_dy = random_tensor(DType::bf16, 10 * 8 - 1, 1.0, rng);
  EXPECT_THROW(reference_backward(spec, in, short_dy), std::invalid_argument);
  ProjectionSpec grouped = spec;
  grouped.grouped_in = true;  // x would need T*k rows
  const HostTensor dy = random_tensor(DType::bf16, 10 * 8, 1.0, rng);
  EXPECT_THROW(reference_backward(grouped, in, dy), std::invalid_argument);
  EXPECT_NO_THROW(reference_backward(spec, in, dy));
}

// Finite differences. L = sum(Y .* G) with Y from reference_forward and a fixed random G, so
// dL/dtheta is what the backward computes from dY = G. Inputs are multiples of h = 2^-20 in
// (-1, 1) stored as fp32, so theta +- h is stored exactly and the float64 forward reference sees
// exactly the perturbed value. L is linear in each single element, so the central difference has
// no truncation error; what is left is float64 rounding, far below the 1e-6 bound.
constexpr double kStep = 1.0 / (1 << 20);
constexpr double kFiniteDifferenceBound = 1e-6;

HostTensor dyadic_tensor(std::size_t count, Rng& rng) {
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  HostTensor t(DType::fp32, count);
  for (std::size_t i = 0; i < count; ++i)
    t.set(i, static_cast<float>(std::round(uniform(rng) / kStep) * kStep));
  return t;
}

double loss(const ProjectionSpec& spec, const ForwardInputs& in, const std::vector<double>& g) {
  const std::vector<double> y = reference_forward(spec, in);
  double sum = 0;
  for (std::size_t i = 0; i < y.size(); ++i) sum += y[i] * g[i];
  return sum;
}

// (L(theta + h) - L(theta - h)) / 2h for element i of the tensor `member` of `in`.
double central_difference(const ProjectionSpec& spec, ForwardInputs in,
                          HostTensor ForwardInputs::*member, std::size_t i,
                          const std::vector<double>& g) {
  HostTensor& t = in.*member;
  const double theta = t.at(i);
  double sides[2];
  for (int side = 0; side < 2; ++side) {
    const double value = side == 0 ? theta + kStep : theta - kStep;
    t.set(i, static_cast<float>(value));
    if (t.at(i) != value) ADD_FAILURE() << theta << " +- h is not exact in fp32";
    sides[side] = loss(spec, in, g);
  }
  return (sides[0] - sides[1]) / (2 * kStep);
}

void expect_matches_finite_differences(const ProjectionSpec& spec, const ForwardInputs& in,
                                       const std::vector<double>& g, const char* name,
                                       HostTensor ForwardInputs::*member,
                                       const std::vector<double>& analytic) {
  ASSERT_EQ(analytic.size(), (in.*member).size()) << name;
  double mean_square = 0;
  for (double v : analytic) mean_square += v * v;
  // Elements near zero are held to the tensor's typical magnitude instead of their own.
  const double floor = std::sqrt(mean_square / static_cast<double>(analytic.size()));
  ASSERT_GT(floor, 0) << name << " is all zeros: the check would be vacuous";
  for (std::size_t i = 0; i < analytic.size(); ++i) {
    const double numeric = central_difference(spec, in, member, i, g);
    const double error = std::abs(numeric - analytic[i]) / std::max(std::abs(analytic[i]), floor);
    ASSERT_LT(error, kFiniteDifferenceBound)
        << spec.describe() << ": d" << name << "[" << i << "] analytic " << analytic[i]
        << ", finite difference " << numeric;
  }
}

using GradientCase = std::tuple<WeightLayout, BStorage, bool, bool>;
class FiniteDifferences : public ::testing::TestWithParam<GradientCase> {};

TEST_P(FiniteDifferences, MatchTheBackwardReference) {
  ProjectionSpec spec = spec_of(4, 2, 8, 16, 3);
  std::tie(spec.layout, spec.b_storage, spec.grouped_in, spec.grouped_out) = GetParam();
  spec.lora = DType::fp32;
  spec.has_bias = true;
  Rng rng(0xFD);
  ForwardInputs in;
  // T = 5, k = 2; expert 1 gets no rows, so its dA and dB must be zero both ways.
  in.routing = sort_by_expert({2, 0, 0, 3, 3, 2, 0, 2, 2, 3}, 4, 2);
  in.x = dyadic_tensor((spec.grouped_in ? 10 : 5) * 8, rng);
  in.w = dyadic_tensor(4 * 16 * 8, rng);
  in.a = dyadic_tensor(4 * 3 * 8, rng);
  in.b = dyadic_tensor(4 * 16 * 3, rng);
  in.bias = dyadic_tensor(4 * 16, rng);
  in.scale = 0.75f;
  std::vector<double> g(10 * 16);
  for (double& v : g) v = std::uniform_real_distribution<double>(-1.0, 1.0)(rng);

  const BackwardReference ref = reference_backward(spec, to_double(in), g);
  expect_matches_finite_differences(spec, in, g, "X", &ForwardInputs::x, ref.dx);
  expect_matches_finite_differences(spec, in, g, "A", &ForwardInputs::a, ref.da);
  expect_matches_finite_differences(spec, in, g, "B", &ForwardInputs::b, ref.db);
}

INSTANTIATE_TEST_SUITE_P(
    AllStorages, FiniteDifferences,
    ::testing::Combine(::testing::Values(WeightLayout::out_in, WeightLayout::in_out),
                       ::testing::Values(BStorage::peft, BStorage::expert_major, BStorage::stacked),
                       ::testing::Bool(), ::testing::Bool()));

}  // namespace
}  // namespace moejit::test
