// How ops map onto kernels: which B layout the GEMM kernels read, and pack_b's launch.
#include <gtest/gtest.h>

#include "compiler/kernel_view.hpp"
#include "compiler/problem.hpp"
#include "compiler/source.hpp"
#include "compiler/tile_config.hpp"

namespace moejit {
namespace {

ProjectionSpec spec_with(BStorage storage, OpKind op) {
  ProjectionSpec s;
  s.experts = 40;
  s.top_k = 4;
  s.in_features = 264;
  s.out_features = 136;
  s.rank = 16;
  s.b_storage = storage;
  return op_spec(s, op);
}

// Only a forward over PEFT's storage reads B packed (B_e^T rows, GemmView storage 3); the other
// storages are read where they are, and dX always reads A^T rows (storage 3) whatever B's storage.
TEST(ForwardReadsPackedB, OnlyTheForwardOverPeft) {
  EXPECT_TRUE(forward_reads_packed_b(spec_with(BStorage::peft, OpKind::forward)));
  EXPECT_EQ(gemm_view(spec_with(BStorage::peft, OpKind::forward)).b_storage, 3);
  EXPECT_FALSE(forward_reads_packed_b(spec_with(BStorage::expert_major, OpKind::forward)));
  EXPECT_EQ(gemm_view(spec_with(BStorage::expert_major, OpKind::forward)).b_storage, 1);
  EXPECT_FALSE(forward_reads_packed_b(spec_with(BStorage::stacked, OpKind::forward)));
  EXPECT_EQ(gemm_view(spec_with(BStorage::stacked, OpKind::forward)).b_storage, 2);
  for (const OpKind op : {OpKind::backward_dx, OpKind::grad_a, OpKind::grad_b, OpKind::pack_b})
    EXPECT_FALSE(forward_reads_packed_b(spec_with(BStorage::peft, op))) << to_string(op);
  EXPECT_EQ(gemm_view(spec_with(BStorage::peft, OpKind::backward_dx)).b_storage, 3);
  // dB is written in the user's storage, never the packed one.
  EXPECT_EQ(grad_view(spec_with(BStorage::peft, OpKind::grad_b)).out_storage, 0);
}

// pack_b runs a thread per (n, j) and 16 experts: E = 40 needs 3 groups of experts.
TEST(PackBLaunch, CoversEveryRankColumnAndExpertGroup) {
  const ProjectionSpec pack = spec_with(BStorage::peft, OpKind::pack_b);
  const LaunchDims d = launch_dims(pack, TileConfig{}, 100);
  const long long threads = static_cast<long long>(d.grid_x) * d.grid_y * d.threads;
  EXPECT_GE(threads, 3LL * pack.rank * pack.out_features);
  EXPECT_LT(threads, 3LL * pack.rank * pack.out_features + d.threads);
}

}  // namespace
}  // namespace moejit
