// The fused forward kernel against the float64 reference over a fixed-seed sample of every axis of
// SPEC.md plus targeted edge cases, with explicit tile configs; and run-to-run bitwise determinism.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>

#include "compiler/error.hpp"
#include "tests/gpu/forward_cases.hpp"
#include "tests/gpu/forward_checker.hpp"
#include "tests/gpu/gpu_env.hpp"
#include "tests/support/compare.hpp"

namespace moejit::test {
namespace {

constexpr std::uint64_t kSweepSeed = 0x5EED0001;
constexpr int kSampledCases = 150;
constexpr int kWgmmaCases = 60;
constexpr int kTmaCases = 60;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Checks every case; a failure names the case (shape, dtypes, layout, storage, routing, config,
// seed) so it can be rerun alone.
void run_sweep(const std::vector<ForwardCase>& cases) {
  TestContext context;
  const cuda::DeviceInfo device = cuda::query_device(context.device());
  const auto start = std::chrono::steady_clock::now();
  const KernelSet kernels = load_kernels(cases, device);
  std::cout << "compiled " << kernels.size() << " kernels for " << device.arch() << " in "
            << seconds_since(start) << " s\n";
  cuda::Stream stream;
  int checked = 0;
  for (const ForwardCase& c : cases) {
    const LoadedKernel& k = kernels.at(kernel_key(c));
    if (!k.compile_error.empty()) {
      ADD_FAILURE() << c.describe() << ": compile failed: " << k.compile_error;
      continue;
    }
    if (!k.too_big.empty()) {
      std::cout << "not run on " << device.name << ": " << c.describe() << ": " << k.too_big
                << "\n";
      continue;
    }
    try {
      const std::string why = check_case(c, k.handle, stream);
      EXPECT_TRUE(why.empty()) << c.describe() << ": " << why;
    } catch (const CudaError& e) {  // a device fault leaves the context unusable: stop here
      FAIL() << c.describe() << ": " << e.what();
    }
    ++checked;
  }
  std::cout << "checked " << checked << " of " << cases.size() << " cases in "
            << seconds_since(start) << " s\n";
  EXPECT_GT(checked, 0) << "every case needed more shared memory than " << device.name << " has";
}

TEST(ForwardSweep, RandomSampleMatchesReference) {
  MOEJIT_SKIP_WITHOUT_GPU();
  run_sweep(sampled_cases(kSweepSeed, sampled_count(kSampledCases)));
}

// The Hopper kernel, over the axes it supports (out_in weights, lora dtype == act dtype).
TEST(ForwardSweep, WgmmaSampleMatchesReference) {
  MOEJIT_SKIP_WITHOUT_GPU();
  if (const std::string arch = cuda::query_device(0).arch(); arch != "sm_90a")
    GTEST_SKIP() << "the wgmma kernel needs sm_90a; this device is " << arch;
  run_sweep(sampled_cases(kSweepSeed, sampled_count(kWgmmaCases), KernelFamily::wgmma));
}

// The warp-specialized TMA kernel, both weight layouts (lora dtype == act dtype).
TEST(ForwardSweep, TmaSampleMatchesReference) {
  MOEJIT_SKIP_WITHOUT_GPU();
  if (const std::string arch = cuda::query_device(0).arch(); arch != "sm_90a")
    GTEST_SKIP() << "the TMA kernel needs sm_90a; this device is " << arch;
  std::vector<ForwardCase> cases =
      sampled_cases(kSweepSeed + 1, sampled_count(kTmaCases), KernelFamily::tma);
  // A case of several hundred output tiles (K = 1000: 16 k-blocks; N = 520: 5 column tiles at
  // block_n 128; 5,800 skewed rows), so each CTA of the persistent grid runs several tiles through
  // the same stage ring; the sampled cases have fewer tiles than the GPU has SMs.
  auto many_tiles = [&](int experts, int rank, WeightLayout layout, const TileConfig& config,
                        std::uint64_t seed) {
    ForwardCase c;
    c.spec.experts = experts;
    c.spec.top_k = 2;
    c.spec.in_features = 1000;
    c.spec.out_features = 520;
    c.spec.rank = rank;
    c.spec.layout = layout;
    c.spec.has_bias = layout == WeightLayout::in_out;
    c.tokens = 2900;
    c.routing = RoutingKind::skewed;
    c.config = config;
    c.seed = seed;
    cases.push_back(c);
  };
  for (const WeightLayout layout : {WeightLayout::out_in, WeightLayout::in_out}) {
    // 64-row tiles, then the same in clusters of two, whose second CTA has no rows in an expert's
    // odd last tile.
    for (const int cluster_m : {1, 2})
      many_tiles(8, 16, layout,
                 TileConfig{.block_m = 64,
                            .block_n = 128,
                            .block_k = 64,
                            .warps_m = 4,
                            .warps_n = 1,
                            .stages = 3,
                            .wgmma = true,
                            .tma = true,
                            .cluster_m = cluster_m},
                 0x7A1E0 + static_cast<int>(layout) + 16 * cluster_m);
    // r = 128: the Hopper default tile for 16-bit weights at that rank (x * A^T fragments of 64
    // registers, B_e's 128 columns of 128 ranks staged per tile).
    many_tiles(3, 128, layout, TileConfig{128, 128, 64, 8, 1, 3, true, true},
               0x7A1F0 + static_cast<int>(layout));
  }
  run_sweep(cases);
}

TEST(ForwardSweep, EdgeCasesMatchReference) {
  MOEJIT_SKIP_WITHOUT_GPU();
  run_sweep(targeted_cases());
}

// SPEC.md "Ops": no float atomics, so the same inputs and config give the same bits.
TEST(ForwardDeterminism, TwoRunsAreBitwiseIdentical) {
  MOEJIT_SKIP_WITHOUT_GPU();
  ForwardCase c;
  c.spec.experts = 8;
  c.spec.top_k = 2;
  c.spec.in_features = 1000;
  c.spec.out_features = 200;
  c.spec.rank = 33;
  c.spec.lora = DType::fp32;
  c.spec.has_bias = true;
  c.tokens = 333;
  c.routing = RoutingKind::skewed;
  c.config = mma_sync_config(64, 128, 64, 2, 4, 3);
  c.seed = 42;
  TestContext context;
  const KernelSet kernels = load_kernels({c}, cuda::query_device(context.device()));
  const LoadedKernel& k = kernels.at(kernel_key(c));
  ASSERT_TRUE(k.compile_error.empty() && k.too_big.empty()) << k.compile_error << k.too_big;
  const ForwardInputs inputs = make_inputs(c);
  DeviceProblem problem(c.spec, inputs);
  cuda::Stream stream;
  const HostTensor first = run_forward(k.handle, c.spec, problem, stream);
  const HostTensor second = run_forward(k.handle, c.spec, problem, stream);
  EXPECT_EQ(first.bytes(), second.bytes()) << c.describe();
  const std::string why = forward_mismatch(reference_forward(c.spec, inputs, 8), first,
                                           c.spec.out_features, c.spec.act);
  EXPECT_TRUE(why.empty()) << c.describe() << ": " << why;
}

}  // namespace
}  // namespace moejit::test
