// The Runtime API on a GPU: SPEC.md's input checks reject bad arguments by name and write nothing;
// untuned and tuned calls give the reference result and count what they did.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

#include "autotune/tuner.hpp"
#include "compiler/error.hpp"
#include "compiler/kernel_view.hpp"
#include "runtime/runtime.hpp"
#include "tests/gpu/device_problem.hpp"
#include "tests/support/compare.hpp"
#include "tests/support/forward_case.hpp"
#include "tests/support/temp_dir.hpp"

namespace moejit::test {
namespace {

constexpr std::uint64_t kSeed = 7;

ProjectionSpec small_spec() {
  ProjectionSpec s;
  s.experts = 8;
  s.top_k = 2;
  s.in_features = 264;
  s.out_features = 136;
  s.rank = 16;
  s.lora = DType::fp32;
  s.layout = WeightLayout::in_out;
  s.has_bias = true;
  return s;
}

class RuntimeOnGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    MOEJIT_SKIP_WITHOUT_GPU();
    context_.emplace();
  }
  RuntimeOptions options(bool tune, bool validate) const {
    RuntimeOptions o;
    o.cache_path = dir_.path() / "cache.sqlite";
    o.tune = tune;
    o.validate = validate;
    return o;
  }
  // Expects forward() to throw InvalidArgument naming `argument` and to leave y poisoned.
  void expect_rejected(Runtime& runtime, const ProjectionSpec& spec, const ForwardArgs& args,
                       DeviceProblem& problem, const std::string& argument) {
    problem.poison_output();
    try {
      runtime.forward(spec, args);
      ADD_FAILURE() << "no InvalidArgument for a bad '" << argument << "'";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("'" + argument), std::string::npos) << e.what();
    }
    synchronize_context();
    const HostTensor y = problem.download_output();
    EXPECT_TRUE(std::all_of(y.bytes().begin(), y.bytes().end(), [](auto b) { return b == 0xFF; }))
        << "output written despite a bad '" << argument << "'";
  }
  void expect_matches_reference(const ProjectionSpec& spec, const ForwardInputs& in,
                                const DeviceProblem& problem) {
    const std::string why = forward_mismatch(
        reference_forward(spec, in, 8), problem.download_output(), spec.out_features, spec.act);
    EXPECT_TRUE(why.empty()) << spec.describe() << " seed=" << kSeed << ": " << why;
  }

  TempDir dir_;
  std::optional<TestContext> context_;  // outlives the buffers of each test body
};

TEST_F(RuntimeOnGpu, RejectsNullPointersByName) {
  const ProjectionSpec spec = small_spec();
  DeviceProblem problem(spec, make_inputs(spec, 50, RoutingKind::uniform, kSeed));
  Runtime runtime(options(false, false));
  const std::pair<const char*, const void * ForwardArgs::*> fields[] = {
      {"x", &ForwardArgs::x},
      {"w", &ForwardArgs::w},
      {"lora_a", &ForwardArgs::lora_a},
      {"lora_b", &ForwardArgs::lora_b},
      {"bias", &ForwardArgs::bias},
      {"expert_offsets", &ForwardArgs::expert_offsets},
      {"sorted_scattered_idxs", &ForwardArgs::sorted_scattered_idxs}};
  for (const auto& [name, field] : fields) {
    ForwardArgs args = problem.args();
    args.*field = nullptr;
    expect_rejected(runtime, spec, args, problem, name);
  }
  ForwardArgs args = problem.args();
  args.y = nullptr;
  expect_rejected(runtime, spec, args, problem, "y");
  EXPECT_EQ(runtime.stats().launches, 0);
}

TEST_F(RuntimeOnGpu, RejectsMisalignedPointersByName) {
  const ProjectionSpec spec = small_spec();
  DeviceProblem problem(spec, make_inputs(spec, 50, RoutingKind::uniform, kSeed));
  Runtime runtime(options(false, false));
  ForwardArgs args = problem.args();
  args.lora_b = static_cast<const char*>(args.lora_b) + 8;  // still inside the allocation
  expect_rejected(runtime, spec, args, problem, "lora_b");
  args = problem.args();
  args.x = static_cast<const char*>(args.x) + 2;
  expect_rejected(runtime, spec, args, problem, "x");
}

TEST_F(RuntimeOnGpu, ValidationRejectsOffsetsNotEndingAtTk) {
  const ProjectionSpec spec = small_spec();
  ForwardInputs in = make_inputs(spec, 50, RoutingKind::uniform, kSeed);
  in.routing.expert_offsets.back() = in.routing.rows() - 1;  // still non-decreasing
  DeviceProblem problem(spec, in);
  Runtime runtime(options(false, true));
  expect_rejected(runtime, spec, problem.args(), problem, "expert_offsets");
}

TEST_F(RuntimeOnGpu, ValidationRejectsScatteredIndexOutOfRange) {
  const ProjectionSpec spec = small_spec();
  ForwardInputs in = make_inputs(spec, 50, RoutingKind::uniform, kSeed);
  in.routing.sorted_scattered_idxs[37] = in.routing.rows();
  DeviceProblem problem(spec, in);
  Runtime runtime(options(false, true));
  expect_rejected(runtime, spec, problem.args(), problem, "sorted_scattered_idxs");
}

TEST_F(RuntimeOnGpu, UntunedCallMatchesReference) {
  const ProjectionSpec spec = small_spec();
  const ForwardInputs in = make_inputs(spec, 100, RoutingKind::skewed, kSeed);
  DeviceProblem problem(spec, in);
  Runtime runtime(options(false, true));
  cuda::Stream stream;
  problem.poison_output();
  runtime.forward(spec, problem.args(), stream.get());
  stream.synchronize();
  expect_matches_reference(spec, in, problem);
  runtime.forward(spec, problem.args(), stream.get());
  stream.synchronize();
  // PEFT's B storage: each forward is pack_b, then the GEMM reading the packed B.
  ASSERT_TRUE(forward_reads_packed_b(spec));
  const RuntimeStats stats = runtime.stats();
  EXPECT_EQ(stats.launches, 4);
  EXPECT_EQ(stats.compiles, 2);
  EXPECT_EQ(stats.cache_misses, 2);
  EXPECT_EQ(stats.memory_hits, 2);
  EXPECT_EQ(stats.tunes, 0);
}

// RuntimeOptions::gemm_config: the forward builds the pinned config on a miss (and is right);
// an invalid one is rejected by name when the Runtime is made.
TEST_F(RuntimeOnGpu, PinnedGemmConfigIsBuiltAndMatchesReference) {
  const ProjectionSpec spec = small_spec();  // fp32 LoRA factors: an mma.sync kernel everywhere
  const TileConfig pinned{64, 64, 32, 2, 2, 3};
  ASSERT_NE(default_config(spec, cuda::query_device(0).arch()), pinned);
  RuntimeOptions o = options(false, false);
  o.gemm_config = pinned;
  Runtime runtime(o);
  EXPECT_EQ(runtime.prepare(spec, 100), pinned);
  const ForwardInputs in = make_inputs(spec, 100, RoutingKind::sparse, kSeed);
  DeviceProblem problem(spec, in);
  problem.poison_output();
  runtime.forward(spec, problem.args());
  synchronize_context();
  expect_matches_reference(spec, in, problem);
  o.gemm_config = TileConfig{128, 128, 48, 2, 2, 3};
  EXPECT_THROW(Runtime{o}, InvalidArgument);
}

TEST_F(RuntimeOnGpu, TunedCallMatchesReferenceAndTunesOnce) {
  ProjectionSpec spec;
  spec.experts = 8;
  spec.top_k = 2;
  spec.in_features = 512;
  spec.out_features = 384;
  spec.rank = 16;
  const ForwardInputs in = make_inputs(spec, 512, RoutingKind::uniform, kSeed);
  DeviceProblem problem(spec, in);
  Runtime runtime(options(true, false));
  cuda::Stream stream;
  for (int call = 0; call < 2; ++call) {
    problem.poison_output();
    runtime.forward(spec, problem.args(), stream.get());
    stream.synchronize();
    expect_matches_reference(spec, in, problem);
  }
  EXPECT_EQ(runtime.stats().tunes, 1);        // pack_b has no configs to tune
  EXPECT_EQ(runtime.stats().memory_hits, 2);  // the GEMM and PEFT's pack_b
}

}  // namespace
}  // namespace moejit::test
