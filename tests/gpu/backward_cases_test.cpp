// The backward sweep on the host: its case generator reaches every value of every axis it promises
// with valid specs, and the accuracy checks pass exact gradients and explain bad ones.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "tests/gpu/backward_accuracy.hpp"
#include "tests/gpu/backward_cases.hpp"
#include "tests/support/compare.hpp"
#include "tests/support/forward_case.hpp"

namespace moejit::test {
namespace {

constexpr std::uint64_t kSweepSeed = 0xBAC0001;  // the seed backward_test.cpp uses
constexpr int kSampledCases = 80;

std::map<std::string, std::set<std::string>> axes(const std::vector<BackwardCase>& cases) {
  std::map<std::string, std::set<std::string>> seen;
  for (const BackwardCase& c : cases) {
    const ProjectionSpec& s = c.spec;
    const auto add = [&](const char* axis, const auto& value) {
      seen[axis].insert(fmt::format("{}", value));
    };
    add("E", s.experts), add("k", s.top_k), add("K", s.in_features), add("N", s.out_features);
    add("r", s.rank), add("T", c.tokens), add("act", to_string(s.act));
    add("lora", to_string(s.lora)), add("index", to_string(s.index));
    add("layout", to_string(s.layout)), add("b", to_string(s.b_storage));
    add("grouping", fmt::format("{}{}", s.grouped_in, s.grouped_out));
    add("routing", to_string(c.routing)), add("save_xa", c.save_xa);
  }
  return seen;
}

TEST(BackwardCases, SampleCoversEveryAxisValue) {
  const auto seen = axes(sampled_backward_cases(kSweepSeed, kSampledCases));
  const std::map<std::string, std::size_t> expected_counts{
      {"E", 4}, {"k", 3},        {"K", 5},       {"N", 5},      {"r", 6},
      {"T", 4}, {"act", 2},      {"lora", 3},    {"index", 2},  {"layout", 2},
      {"b", 3}, {"grouping", 4}, {"routing", 4}, {"save_xa", 2}};
  for (const auto& [axis, count] : expected_counts)
    EXPECT_EQ(seen.at(axis).size(), count) << "axis " << axis << " seed " << kSweepSeed;
}

TEST(BackwardCases, AreValidAndReachExpertsWithoutRows) {
  std::vector<BackwardCase> cases = sampled_backward_cases(kSweepSeed, kSampledCases);
  const std::vector<BackwardCase> targeted = targeted_backward_cases();
  cases.insert(cases.end(), targeted.begin(), targeted.end());
  int with_empty_expert = 0, saving = 0;
  for (const BackwardCase& c : cases) {
    ASSERT_NO_THROW(c.spec.validate()) << c.describe();
    ASSERT_EQ(c.spec.op, OpKind::forward) << c.describe();
    const ForwardInputs in = make_inputs(c.spec, c.tokens, c.routing, c.seed);
    ASSERT_EQ(make_dy(c).size(), std::size_t(in.routing.rows() * c.spec.out_features));
    for (int e = 0; e < c.spec.experts; ++e)
      if (in.routing.rows_of(e) == 0) {
        ++with_empty_expert;
        break;
      }
    saving += c.save_xa;
  }
  EXPECT_GE(with_empty_expert, 5);
  EXPECT_GT(saving, int(cases.size()) / 3);
  EXPECT_LT(saving, int(cases.size()) * 2 / 3);
}

TEST(BackwardCases, DyIsSeededAndIndependentOfTheInputs) {
  const BackwardCase c = sampled_backward_cases(kSweepSeed, 1)[0];
  EXPECT_EQ(make_dy(c).bytes(), make_dy(c).bytes());
  BackwardCase other = c;
  ++other.seed;
  EXPECT_NE(make_dy(c).bytes(), make_dy(other).bytes());
}

// Why bf16-stored gradients get bf16's bound even with fp16 activations: rounding exact values
// to bf16 alone exceeds fp16's 1e-3.
TEST(BackwardAccuracy, ToleranceCoversTheStorageRounding) {
  Rng rng(1);
  std::normal_distribution<double> normal;
  std::vector<double> exact(10000);
  for (double& v : exact) v = normal(rng);
  HostTensor bf16(DType::bf16, exact.size()), fp16(DType::fp16, exact.size());
  for (std::size_t i = 0; i < exact.size(); ++i) {
    bf16.set(i, static_cast<float>(exact[i]));
    fp16.set(i, static_cast<float>(exact[i]));
  }
  EXPECT_GT(relative_frobenius_error(exact, bf16), 1e-3);
  EXPECT_LT(relative_frobenius_error(exact, bf16), gradient_tolerance(DType::fp16, DType::bf16));
  EXPECT_LT(relative_frobenius_error(exact, fp16), gradient_tolerance(DType::fp16, DType::fp16));
  EXPECT_EQ(gradient_tolerance(DType::fp16, DType::fp32), 1e-3);
  EXPECT_EQ(gradient_tolerance(DType::bf16, DType::fp16), 5e-3);
}

// E = 3 (expert 1 without rows), k = 1, T = 2, K = N = 8, r = 2, stacked B.
struct SmallProblem {
  ProjectionSpec spec;
  Routing routing = sort_by_expert({2, 0}, 3, 1);
  BackwardReference reference;
  Gradients gradients;

  SmallProblem() {
    spec.experts = 3;
    spec.top_k = 1;
    spec.in_features = spec.out_features = 8;
    spec.rank = 2;
    spec.lora = DType::fp32;
    spec.b_storage = BStorage::stacked;
    ForwardInputs in = make_inputs(spec, 2, RoutingKind::uniform, 3);
    in.routing = routing;
    Rng rng(4);
    reference = reference_backward(spec, in, random_tensor(DType::bf16, 2 * 8, 1.0, rng));
    gradients.dx = exactly(DType::bf16, reference.dx);
    gradients.da = exactly(DType::fp32, reference.da);
    gradients.db = exactly(DType::fp32, reference.db);
  }
  static HostTensor exactly(DType dtype, const std::vector<double>& values) {
    HostTensor t(dtype, values.size());
    for (std::size_t i = 0; i < values.size(); ++i) t.set(i, static_cast<float>(values[i]));
    return t;
  }
  std::string mismatch() const { return gradient_mismatch(spec, routing, reference, gradients); }
};

TEST(BackwardAccuracy, PassesTheReferenceRoundedToStorage) {
  const SmallProblem p;
  EXPECT_EQ(p.mismatch(), "");
  EXPECT_EQ(determinism_mismatch(p.gradients, p.gradients), "");
}

TEST(BackwardAccuracy, NamesAnUnwrittenElement) {
  SmallProblem p;
  p.gradients.da.set(2 * 8 + 3, std::numeric_limits<float>::quiet_NaN());  // expert 1, rank 0
  const std::string why = p.mismatch();
  EXPECT_NE(why.find("dA"), std::string::npos) << why;
  EXPECT_NE(why.find("expert 1, rank 0, col 3"), std::string::npos) << why;
}

TEST(BackwardAccuracy, NamesTheWorstElementOfAnInaccurateTensor) {
  SmallProblem p;
  const std::size_t i = 1 * 8 + 5;  // token 1, col 5
  p.gradients.dx.set(i, static_cast<float>(p.reference.dx[i] + 1.0));
  const std::string why = p.mismatch();
  EXPECT_NE(why.find("dX: relative Frobenius error"), std::string::npos) << why;
  EXPECT_NE(why.find("token 1, col 5"), std::string::npos) << why;
}

TEST(BackwardAccuracy, RequiresExactZerosForExpertsWithoutRows) {
  SmallProblem p;
  ASSERT_EQ(p.routing.rows_of(1), 0);
  p.gradients.db.set(1 * 8 * 2 + 4 * 2 + 1, 1e-30f);  // stacked: expert 1, out 4, rank 1
  const std::string why = p.mismatch();
  EXPECT_NE(why.find("expert 1 has no rows"), std::string::npos) << why;
  EXPECT_NE(why.find("expert 1, out 4, rank 1"), std::string::npos) << why;
}

TEST(BackwardAccuracy, NamesTheFirstDifferenceBetweenRuns) {
  const SmallProblem p;
  Gradients second = p.gradients;
  second.db.set(7, static_cast<float>(second.db.at(7)) * 1.0000001f + 1e-6f);
  EXPECT_EQ(determinism_mismatch(p.gradients, second).find("dB: not deterministic: element 7"), 0u)
      << determinism_mismatch(p.gradients, second);
}

}  // namespace
}  // namespace moejit::test
