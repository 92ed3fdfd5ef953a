// compile_candidates prunes by shared memory before anything runs, and keeps what fits.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "autotune/tuner.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

ProjectionSpec small_spec() {
  ProjectionSpec s;
  s.experts = 8;
  s.top_k = 2;
  s.in_features = 256;
  s.out_features = 512;
  s.rank = 16;
  return s;
}

const std::vector<TileConfig> kSmallAndLarge = {TileConfig{64, 64, 32, 2, 2, 2},
                                                TileConfig{128, 128, 64, 2, 2, 4}};

int total_smem(const CompiledCandidate& c) {
  return c.dynamic_smem + c.kernel.report.static_smem;
}

TEST(CompileCandidates, NoLimitKeepsEveryCleanCandidate) {
  const auto candidates = compile_candidates(small_spec(), kSmallAndLarge, "sm_80", 0, "key", 2);
  ASSERT_EQ(candidates.size(), kSmallAndLarge.size());
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    EXPECT_EQ(candidates[i].config, kSmallAndLarge[i]) << "results must keep the input order";
    EXPECT_TRUE(candidates[i].pruned.empty()) << candidates[i].pruned;
    EXPECT_FALSE(candidates[i].kernel.cubin.empty());
    EXPECT_GT(candidates[i].dynamic_smem, 0);
  }
  EXPECT_LT(total_smem(candidates[0]), total_smem(candidates[1]));
}

TEST(CompileCandidates, PrunesOnlyWhatExceedsTheLimit) {
  const auto unlimited = compile_candidates(small_spec(), kSmallAndLarge, "sm_80", 0, "key", 2);
  // The limit is exactly the small candidate's need: equal fits, one byte more does not.
  const int limit = total_smem(unlimited[0]);
  const auto limited = compile_candidates(small_spec(), kSmallAndLarge, "sm_80", limit, "key", 2);
  EXPECT_TRUE(limited[0].pruned.empty()) << limited[0].pruned;
  EXPECT_NE(limited[1].pruned.find("shared memory"), std::string::npos) << limited[1].pruned;
  EXPECT_NE(limited[1].pruned.find(std::to_string(total_smem(unlimited[1]))), std::string::npos)
      << limited[1].pruned;

  const auto tight = compile_candidates(small_spec(), kSmallAndLarge, "sm_80", limit - 1, "key", 1);
  EXPECT_FALSE(tight[0].pruned.empty());
  EXPECT_FALSE(tight[1].pruned.empty());
}

TEST(CompileCandidates, InvalidConfigPropagates) {
  const std::vector<TileConfig> configs = {TileConfig{}, TileConfig{96, 128, 32, 4, 2, 3}};
  EXPECT_THROW(compile_candidates(small_spec(), configs, "sm_80", 0, "key", 2), InvalidArgument);
}

}  // namespace
}  // namespace moejit
