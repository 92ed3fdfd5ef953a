// The sweep's case generator, on the host: the sample reaches every value of every axis the sweep
// promises, every case instantiates and fits the shared-memory budget, and the sample is fixed.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <map>
#include <set>

#include "compiler/source.hpp"
#include "tests/gpu/forward_cases.hpp"

namespace moejit::test {
namespace {

constexpr std::uint64_t kSweepSeed = 0x5EED0001;  // the seed forward_test.cpp uses
constexpr int kSampledCases = 150;
constexpr int kWgmmaCases = 60;
constexpr int kTmaCases = 60;

// Every value each axis takes over `cases`, as text.
std::map<std::string, std::set<std::string>> axes(const std::vector<ForwardCase>& cases) {
  std::map<std::string, std::set<std::string>> seen;
  for (const ForwardCase& c : cases) {
    const ProjectionSpec& s = c.spec;
    const auto add = [&](const char* axis, const auto& value) {
      seen[axis].insert(fmt::format("{}", value));
    };
    add("E", s.experts), add("k", s.top_k), add("K", s.in_features), add("N", s.out_features);
    add("r", s.rank), add("T", c.tokens), add("act", to_string(s.act));
    add("lora", to_string(s.lora)), add("index", to_string(s.index));
    add("layout", to_string(s.layout)), add("b", to_string(s.b_storage));
    add("grouping", fmt::format("{}{}", s.grouped_in, s.grouped_out)), add("bias", s.has_bias);
    add("routing", to_string(c.routing)), add("block_m", c.config.block_m);
    add("block_n", c.config.block_n), add("block_k", c.config.block_k);
    add("warps", fmt::format("{}x{}", c.config.warps_m, c.config.warps_n));
    add("stages", c.config.stages), add("cluster_m", c.config.cluster_m);
  }
  return seen;
}

TEST(SweepCases, SampleCoversEveryAxisValue) {
  const auto seen = axes(sampled_cases(kSweepSeed, kSampledCases));
  const std::map<std::string, std::size_t> expected_counts{
      {"E", 4},       {"k", 3},        {"K", 5},     {"N", 5},       {"r", 6},
      {"T", 4},       {"act", 2},      {"lora", 3},  {"index", 2},   {"layout", 2},
      {"b", 3},       {"grouping", 4}, {"bias", 2},  {"routing", 4}, {"block_m", 2},
      {"block_n", 2}, {"block_k", 2},  {"warps", 3}, {"stages", 3}};
  for (const auto& [axis, count] : expected_counts)
    EXPECT_EQ(seen.at(axis).size(), count) << "axis " << axis << " seed " << kSweepSeed;
}

TEST(SweepCases, WgmmaSampleCoversItsAxes) {
  const std::vector<ForwardCase> cases =
      sampled_cases(kSweepSeed, kWgmmaCases, KernelFamily::wgmma);
  const auto seen = axes(cases);
  const std::map<std::string, std::size_t> expected_counts{
      {"E", 4},    {"k", 3},       {"K", 5},       {"N", 5},       {"r", 6},
      {"T", 4},    {"act", 2},     {"index", 2},   {"b", 3},       {"grouping", 4},
      {"bias", 2}, {"routing", 4}, {"block_m", 2}, {"block_n", 3}, {"stages", 4}};
  for (const auto& [axis, count] : expected_counts)
    EXPECT_EQ(seen.at(axis).size(), count) << "axis " << axis << " seed " << kSweepSeed;
  for (const ForwardCase& c : cases) {
    EXPECT_TRUE(c.config.wgmma) << c.describe();
    EXPECT_EQ(c.spec.layout, WeightLayout::out_in) << c.describe();
    EXPECT_EQ(c.spec.lora, c.spec.act) << c.describe();
    EXPECT_NO_THROW(render_kernel_source(c.spec, c.config)) << c.describe();
    EXPECT_LE(dynamic_smem_bytes(c.spec, c.config), kWgmmaSmemBudget) << c.describe();
  }
}

TEST(SweepCases, TmaSampleCoversItsAxes) {
  const std::vector<ForwardCase> cases =
      sampled_cases(kSweepSeed + 1, kTmaCases, KernelFamily::tma);
  const auto seen = axes(cases);
  const std::map<std::string, std::size_t> expected_counts{
      {"E", 4},       {"k", 3},       {"K", 5},       {"N", 5},        {"r", 6},        {"T", 4},
      {"act", 2},     {"index", 2},   {"layout", 2},  {"b", 3},        {"grouping", 4}, {"bias", 2},
      {"routing", 4}, {"block_m", 2}, {"block_n", 3}, {"cluster_m", 2}};
  for (const auto& [axis, count] : expected_counts)
    EXPECT_EQ(seen.at(axis).size(), count) << "axis " << axis << " seed " << kSweepSeed + 1;
  EXPECT_GE(seen.at("stages").size(), 4u);
  for (const ForwardCase& c : cases) {
    EXPECT_TRUE(c.config.wgmma && c.config.tma) << c.describe();
    EXPECT_EQ(c.spec.lora, c.spec.act) << c.describe();
    EXPECT_NO_THROW(render_kernel_source(c.spec, c.config)) << c.describe();
    EXPECT_LE(dynamic_smem_bytes(c.spec, c.config), kWgmmaSmemBudget) << c.describe();
  }
}

TEST(SweepCases, EveryCaseInstantiatesAndFits) {
  std::vector<ForwardCase> cases = sampled_cases(kSweepSeed, kSampledCases);
  const std::vector<ForwardCase> targeted = targeted_cases();
  cases.insert(cases.end(), targeted.begin(), targeted.end());
  for (const ForwardCase& c : cases) {
    EXPECT_FALSE(c.config.wgmma) << c.describe();
    EXPECT_NO_THROW(render_kernel_source(c.spec, c.config)) << c.describe();
    EXPECT_LE(dynamic_smem_bytes(c.spec, c.config), kSweepSmemBudget) << c.describe();
    EXPECT_LE(c.spec.top_k, c.spec.experts) << c.describe();
    if (c.routing == RoutingKind::one_expert) {
      EXPECT_EQ(c.spec.top_k, 1) << c.describe();
    }
  }
}

TEST(SweepCases, TargetedCasesHaveTheirEdges) {
  int zero_row_experts = 0, one_expert = 0, single_token = 0;
  for (const ForwardCase& c : targeted_cases()) {
    zero_row_experts += c.routing == RoutingKind::sparse;
    one_expert += c.routing == RoutingKind::one_expert;
    single_token += c.tokens == 1;
  }
  EXPECT_GE(zero_row_experts, 1);
  EXPECT_GE(one_expert, 1);
  EXPECT_GE(single_token, 1);
}

TEST(SweepCases, SampleIsReproducible) {
  const auto a = sampled_cases(kSweepSeed, 20), b = sampled_cases(kSweepSeed, 20);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].describe(), b[i].describe());
}

}  // namespace
}  // namespace moejit::test
