// The time floor of autotune's early stop: counted by hand on small routings, zero where no floor
// is known, and never above what the FLOPs alone would take with perfect balance.
#include <gtest/gtest.h>

#include "autotune/time_floor.hpp"

namespace moejit {
namespace {

ProjectionSpec small_spec() {
  ProjectionSpec s;
  s.experts = 2;
  s.top_k = 1;
  s.in_features = 100;   // 128 after rounding up to block_k = 64
  s.out_features = 300;  // 3 column tiles of 128
  s.rank = 16;
  return s;
}

TileConfig wgmma_tile() {
  return TileConfig{.block_m = 128,
                    .block_n = 128,
                    .block_k = 64,
                    .warps_m = 8,
                    .warps_n = 1,
                    .stages = 4,
                    .wgmma = true};
}

TEST(TensorPeak, KnowsHopperAmpereAndAda) {
  EXPECT_EQ(tensor_peak(9, 0, 132, 1.98e6).flops_per_sm_clock, 4096);
  EXPECT_EQ(tensor_peak(8, 0, 108, 1.41e6).flops_per_sm_clock, 2048);
  EXPECT_EQ(tensor_peak(8, 9, 128, 2.5e6).flops_per_sm_clock, 1024);
  EXPECT_EQ(tensor_peak(10, 0, 148, 1.9e6).flops_per_sm_clock, 0);
}

TEST(TimeFloor, CountsPaddedTilesOnTheBusiestSm) {
  // Expert 0: 130 rows = 2 row tiles, expert 1: none; 2 x 3 = 6 tiles over 4 SMs: the busiest
  // runs 2 tiles of 2 * 128 * 128 * 128 FLOPs at 4096 FLOPs per clock, 1 GHz.
  const TensorPeak peak{4, 1e6, 4096};
  const double expected_ms = 2.0 * 2 * 128 * 128 * 128 / 4096 / 1e6;
  EXPECT_DOUBLE_EQ(time_floor_ms(small_spec(), wgmma_tile(), {130, 130}, peak), expected_ms);
  // Moving one row to expert 1 adds a row tile: 9 tiles, 3 on the busiest SM.
  EXPECT_DOUBLE_EQ(time_floor_ms(small_spec(), wgmma_tile(), {129, 130}, peak),
                   expected_ms * 3 / 2);
}

TEST(TimeFloor, ClustersRunTheirEmptyHalfTiles) {
  // Clusters of two take 256-row tiles and run both CTA tiles even where the second has no rows.
  // 130 + 1 rows: 2 + 1 CTA tiles unclustered, 2 + 2 clustered; x 3 column tiles over 4 SMs gives
  // 3 tiles on the busiest SM either way. 520 rows on one expert: 5 CTA tiles against 6 (3 cluster
  // tiles), 15 and 18 tiles, 4 and 5 on the busiest SM.
  TileConfig cluster = wgmma_tile();
  cluster.tma = true;
  cluster.cluster_m = 2;
  const TensorPeak peak{4, 1e6, 4096};
  const double tile_ms = 2.0 * 128 * 128 * 128 / 4096 / 1e6;
  EXPECT_DOUBLE_EQ(time_floor_ms(small_spec(), cluster, {130, 131}, peak), 3 * tile_ms);
  TileConfig single = cluster;
  single.cluster_m = 1;
  EXPECT_DOUBLE_EQ(time_floor_ms(small_spec(), single, {130, 131}, peak), 3 * tile_ms);
  EXPECT_DOUBLE_EQ(time_floor_ms(small_spec(), single, {520, 520}, peak), 4 * tile_ms);
  EXPECT_DOUBLE_EQ(time_floor_ms(small_spec(), cluster, {520, 520}, peak), 5 * tile_ms);
}

TEST(TimeFloor, ZeroWithoutAFloor) {
  ProjectionSpec grad = small_spec();
  grad.op = OpKind::grad_a;
  EXPECT_EQ(time_floor_ms(grad, wgmma_tile(), {130, 130}, TensorPeak{4, 1e6, 4096}), 0);
  EXPECT_EQ(time_floor_ms(small_spec(), wgmma_tile(), {130, 130}, TensorPeak{4, 1e6, 0}), 0);
}

TEST(TimeFloor, NeverBelowTheBalancedFlopTime) {
  // The floor counts padding and whole tiles, so it is at least the real FLOPs spread perfectly.
  ProjectionSpec s = small_spec();
  s.op = OpKind::backward_dx;  // K and N swapped: 300 is the reduction
  const TensorPeak peak{4, 1e6, 4096};
  const std::vector<std::int64_t> offsets{77, 300};
  const double flops = 2.0 * 300 * 100 * 300;
  const double balanced_ms = flops / (4.0 * 4096) / 1e6;
  for (const TileConfig& c :
       {wgmma_tile(),
        TileConfig{
            .block_m = 64, .block_n = 64, .block_k = 32, .warps_m = 2, .warps_n = 2, .stages = 3}})
    EXPECT_GE(time_floor_ms(s, c, offsets, peak), balanced_ms) << c.name();
}

}  // namespace
}  // namespace moejit
