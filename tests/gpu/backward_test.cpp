// The MoE-LoRA backward through moejit::Runtime against the float64 reference, over a fixed-seed
// sample of every axis of SPEC.md plus targeted edge cases: dX, dA and dB finite, within the
// accuracy bound, exact zeros for experts without rows, and bitwise identical from run to run.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <thread>

#include "tests/gpu/backward_cases.hpp"
#include "tests/gpu/backward_checker.hpp"
#include "tests/gpu/gpu_env.hpp"
#include "tests/support/temp_dir.hpp"

namespace moejit::test {
namespace {

constexpr std::uint64_t kSweepSeed = 0xBAC0001;
constexpr int kSampledCases = 80;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Each Runtime compiles its kernels one after another, so the cases run on one worker (Runtime,
// stream, cache file) per host core: compiles and float64 references overlap.
int worker_count() {
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 16u));
}

void run_sweep(const std::vector<BackwardCase>& cases,
               const std::optional<TileConfig>& gemm_config = {}) {
  const TempDir dir("moejit-backward-test");
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::string> results =
      check_backward_cases(cases, dir.path(), worker_count(), gemm_config);
  int failed = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    if (results[i].empty()) continue;
    ++failed;
    ADD_FAILURE() << cases[i].describe() << ":\n" << results[i];
  }
  std::cout << "checked " << cases.size() << " backward cases (" << failed << " failed) on "
            << worker_count() << " workers in " << seconds_since(start) << " s\n";
}

TEST(BackwardSweep, RandomSampleMatchesReference) {
  MOEJIT_SKIP_WITHOUT_GPU();
  run_sweep(sampled_backward_cases(kSweepSeed, sampled_count(kSampledCases)));
}

// The TMA kernel in clusters of two, which tuning does not offer, pinned for the forward and dX
// of the sampled cases it serves (16-bit weights, lora dtype == act dtype, r <= 64).
TEST(BackwardSweep, ClusterTileMatchesReference) {
  MOEJIT_SKIP_WITHOUT_GPU();
  if (const std::string arch = cuda::query_device(0).arch(); arch != "sm_90a")
    GTEST_SKIP() << "the TMA kernel needs sm_90a; this device is " << arch;
  const TileConfig cluster = parse_tile_config("m128n128k64_w8x1_s4_tma_c2");
  std::vector<BackwardCase> cases;
  for (BackwardCase c : sampled_backward_cases(kSweepSeed + 2, sampled_count(kSampledCases))) {
    if (is_quantized(c.spec.weights) || c.spec.rank > 64) continue;
    c.spec.lora = c.spec.act;
    cases.push_back(c);
  }
  ASSERT_GE(cases.size(), static_cast<std::size_t>(sampled_count(kSampledCases)) / 4);
  run_sweep(cases, cluster);
}

TEST(BackwardSweep, EdgeCasesMatchReference) {
  MOEJIT_SKIP_WITHOUT_GPU();
  run_sweep(targeted_backward_cases());
}

// Many rows per expert, so that any split of the dA/dB reductions over rows shows up as run-to-run
// differences if it were combined in a varying order.
TEST(BackwardDeterminism, LargeRunsAreBitwiseIdentical) {
  MOEJIT_SKIP_WITHOUT_GPU();
  BackwardCase c;
  c.spec.experts = 4;
  c.spec.top_k = 2;
  c.spec.in_features = 512;
  c.spec.out_features = 264;
  c.spec.rank = 16;
  c.spec.lora = DType::fp32;
  c.tokens = 2048;
  c.routing = RoutingKind::skewed;
  c.seed = 42;
  const TempDir dir("moejit-backward-test");
  for (const bool save_xa : {false, true}) {
    c.save_xa = save_xa;
    const std::vector<std::string> results = check_backward_cases({c}, dir.path(), 1);
    EXPECT_TRUE(results[0].empty()) << c.describe() << ":\n" << results[0];
  }
}

}  // namespace
}  // namespace moejit::test
