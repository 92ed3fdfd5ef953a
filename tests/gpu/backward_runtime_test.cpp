// Runtime::backward as an API on a GPU: SPEC.md's input checks reject bad arguments by name and
// write nothing; untuned, prepared and tuned calls give the reference result and count what they
// did (compiles, cache hits, tunes).
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

#include "autotune/launch.hpp"
#include "autotune/result_check.hpp"
#include "autotune/tuner.hpp"
#include "autotune/tuning_problem.hpp"
#include "compiler/error.hpp"
#include "runtime/runtime.hpp"
#include "tests/gpu/backward_cases.hpp"
#include "tests/gpu/backward_checker.hpp"
#include "tests/gpu/backward_problem.hpp"
#include "tests/gpu/gpu_env.hpp"
#include "tests/support/forward_case.hpp"
#include "tests/support/temp_dir.hpp"

namespace moejit::test {
namespace {

BackwardCase small_case(bool save_xa) {
  BackwardCase c;
  c.spec.experts = 8;
  c.spec.top_k = 2;
  c.spec.in_features = 264;
  c.spec.out_features = 136;
  c.spec.rank = 16;
  c.spec.lora = DType::fp32;
  c.spec.layout = WeightLayout::in_out;
  c.spec.has_bias = true;
  c.tokens = 50;
  c.routing = RoutingKind::uniform;
  c.seed = 7;
  c.save_xa = save_xa;
  return c;
}

bool all_poison(const HostTensor& t) {
  return std::all_of(t.bytes().begin(), t.bytes().end(), [](auto b) { return b == 0xFF; });
}

class BackwardRuntime : public ::testing::Test {
 protected:
  void SetUp() override {
    MOEJIT_SKIP_WITHOUT_GPU();
    context_.emplace();
  }
  RuntimeOptions options(bool tune, bool validate = false) const {
    RuntimeOptions o;
    o.cache_path = dir_.path() / "cache.sqlite";
    o.tune = tune;
    o.validate = validate;
    return o;
  }
  // Expects backward() to throw InvalidArgument naming `argument` and to leave dX, dA, dB poisoned.
  void expect_rejected(Runtime& runtime, const BackwardCase& c, const BackwardArgs& args,
                       BackwardProblem& problem, const std::string& argument) {
    problem.poison();
    try {
      runtime.backward(c.spec, args);
      ADD_FAILURE() << "no InvalidArgument for a bad '" << argument << "' in " << c.describe();
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("'" + argument), std::string::npos)
          << "the error for a bad '" << argument << "' names another argument: " << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "a bad '" << argument
                    << "' threw something other than InvalidArgument: " << e.what();
    }
    synchronize_context();
    const Gradients g = problem.download();
    EXPECT_TRUE(all_poison(g.dx)) << "dX written despite a bad '" << argument << "'";
    EXPECT_TRUE(all_poison(g.da)) << "dA written despite a bad '" << argument << "'";
    EXPECT_TRUE(all_poison(g.db)) << "dB written despite a bad '" << argument << "'";
  }
  void expect_passes(Runtime& runtime, const BackwardCase& c) {
    cuda::Stream stream;
    const std::string why = check_backward_case(runtime, c, stream, 8);
    EXPECT_TRUE(why.empty()) << c.describe() << ":\n" << why;
  }

  TempDir dir_{"moejit-backward-runtime"};
  std::optional<TestContext> context_;  // outlives the buffers of each test body
};

TEST_F(BackwardRuntime, RejectsNullPointersByName) {
  const BackwardCase c = small_case(false);
  BackwardProblem problem(c.spec, make_inputs(c.spec, c.tokens, c.routing, c.seed), make_dy(c),
                          false);
  Runtime runtime(options(false));
  const std::pair<const char*, const void * BackwardArgs::*> inputs[] = {
      {"dy", &BackwardArgs::dy},
      {"x", &BackwardArgs::x},
      {"w", &BackwardArgs::w},
      {"lora_a", &BackwardArgs::lora_a},
      {"lora_b", &BackwardArgs::lora_b},
      {"expert_offsets", &BackwardArgs::expert_offsets},
      {"sorted_scattered_idxs", &BackwardArgs::sorted_scattered_idxs}};
  for (const auto& [name, field] : inputs) {
    BackwardArgs args = problem.args();
    args.*field = nullptr;
    expect_rejected(runtime, c, args, problem, name);
  }
  const std::pair<const char*, void * BackwardArgs::*> outputs[] = {
      {"dx", &BackwardArgs::dx},
      {"da", &BackwardArgs::da},
      {"db", &BackwardArgs::db},
      {"workspace", &BackwardArgs::workspace}};
  for (const auto& [name, field] : outputs) {
    BackwardArgs args = problem.args();
    args.*field = nullptr;
    expect_rejected(runtime, c, args, problem, name);
  }
  EXPECT_EQ(runtime.stats().launches, 0);
}

TEST_F(BackwardRuntime, RejectsTooSmallWorkspaceByName) {
  const BackwardCase c = small_case(false);
  BackwardProblem problem(c.spec, make_inputs(c.spec, c.tokens, c.routing, c.seed), make_dy(c),
                          false);
  ASSERT_GT(problem.workspace_bytes(), 0u) << "dy*B_e alone needs scratch";
  Runtime runtime(options(false));
  for (const std::size_t bytes : {problem.workspace_bytes() - 1, std::size_t{0}}) {
    BackwardArgs args = problem.args();
    args.workspace_bytes = bytes;
    SCOPED_TRACE("workspace_bytes = " + std::to_string(bytes) + ", required " +
                 std::to_string(problem.workspace_bytes()));
    expect_rejected(runtime, c, args, problem, "workspace");  // 'workspace' or 'workspace_bytes'
  }
  EXPECT_EQ(runtime.stats().launches, 0);
}

TEST_F(BackwardRuntime, RejectsMisalignedPointersByName) {
  const BackwardCase c = small_case(true);
  BackwardProblem problem(c.spec, make_inputs(c.spec, c.tokens, c.routing, c.seed), make_dy(c),
                          true);
  Runtime runtime(options(false));
  BackwardArgs args = problem.args();
  args.dy = static_cast<const char*>(args.dy) + 2;  // still inside the allocation
  expect_rejected(runtime, c, args, problem, "dy");
  args = problem.args();
  args.da = static_cast<char*>(args.da) + 8;
  expect_rejected(runtime, c, args, problem, "da");
  args = problem.args();
  args.xa += 1;  // 4 bytes
  expect_rejected(runtime, c, args, problem, "xa");
  // Large enough, but 16-byte and not 256-byte aligned, as BackwardArgs::workspace requires.
  cuda::DeviceBuffer wide(problem.workspace_bytes() + 256);
  args = problem.args();
  args.workspace = static_cast<char*>(wide.ptr()) + 16;
  expect_rejected(runtime, c, args, problem, "workspace");
  EXPECT_EQ(runtime.stats().launches, 0);
}

// Runtime::backward takes the spec of the forward it differentiates, not one of its backward ops.
TEST_F(BackwardRuntime, RejectsASpecWhoseOpIsNotForward) {
  BackwardCase c = small_case(false);
  BackwardProblem problem(c.spec, make_inputs(c.spec, c.tokens, c.routing, c.seed), make_dy(c),
                          false);
  Runtime runtime(options(false));
  c.spec.op = OpKind::grad_a;
  expect_rejected(runtime, c, problem.args(), problem, "spec.op");
}

TEST_F(BackwardRuntime, ValidationRejectsOffsetsNotEndingAtTk) {
  const BackwardCase c = small_case(false);
  ForwardInputs in = make_inputs(c.spec, c.tokens, c.routing, c.seed);
  in.routing.expert_offsets.back() = in.routing.rows() - 1;  // still non-decreasing
  BackwardProblem problem(c.spec, in, make_dy(c), false);
  Runtime runtime(options(false, true));
  expect_rejected(runtime, c, problem.args(), problem, "expert_offsets");
}

TEST_F(BackwardRuntime, UntunedCallsMatchReferenceAndCompileOnce) {
  for (const bool save_xa : {false, true}) {
    const BackwardCase c = small_case(save_xa);
    Runtime runtime(options(false));
    expect_passes(runtime, c);  // forward, then backward twice
    const RuntimeStats before = runtime.stats();
    EXPECT_EQ(before.tunes, 0);
    BackwardProblem problem(c.spec, make_inputs(c.spec, c.tokens, c.routing, c.seed), make_dy(c),
                            false);
    runtime.backward(c.spec, problem.args());
    synchronize_context();
    const RuntimeStats after = runtime.stats();
    EXPECT_EQ(after.compiles, before.compiles) << "a second backward of the same spec compiled";
    EXPECT_EQ(after.cache_misses, before.cache_misses);
    EXPECT_GT(after.memory_hits, before.memory_hits);
    EXPECT_GT(after.launches, before.launches);
  }
}

TEST_F(BackwardRuntime, NewRuntimeLoadsBackwardKernelsFromTheCache) {
  const BackwardCase c = small_case(false);
  {
    Runtime first(options(false));
    first.prepare(c.spec, c.tokens, true);
    EXPECT_GT(first.stats().compiles, 0);
  }
  Runtime second(options(false));
  expect_passes(second, c);
  EXPECT_EQ(second.stats().compiles, 0) << "the cache written by the first Runtime was not used";
  EXPECT_GT(second.stats().cache_hits, 0);
}

TEST_F(BackwardRuntime, PreparedBackwardCompilesNothingMore) {
  const BackwardCase c = small_case(true);
  Runtime runtime(options(false));
  runtime.prepare(c.spec, c.tokens, true);
  const std::int64_t compiles = runtime.stats().compiles;
  expect_passes(runtime, c);
  EXPECT_EQ(runtime.stats().compiles, compiles) << "prepare(with_backward) left kernels to compile";
}

// pack_b reads PEFT's B 16 bytes at a time where a thread's experts fill whole words (8 or 16
// experts of bf16, 16 of fp32: one, two and four words), else element by element (12 experts).
TEST_F(BackwardRuntime, PeftBPackedInWordsOrElementsMatchesReference) {
  Runtime runtime(options(false));
  for (const auto& [experts, lora] : {std::pair{8, DType::bf16}, std::pair{32, DType::bf16},
                                      std::pair{16, DType::fp32}, std::pair{12, DType::bf16}}) {
    BackwardCase c = small_case(true);
    c.spec.experts = experts;
    c.spec.top_k = 4;
    c.spec.lora = lora;
    c.spec.layout = WeightLayout::out_in;
    c.spec.b_storage = BStorage::peft;
    c.seed = 40 + experts;
    expect_passes(runtime, c);
  }
}

TEST_F(BackwardRuntime, TunedCallMatchesReferenceAndTunesOnce) {
  BackwardCase c;
  c.spec.experts = 8;
  c.spec.top_k = 2;
  c.spec.in_features = 512;
  c.spec.out_features = 384;
  c.spec.rank = 16;
  c.tokens = 512;
  c.routing = RoutingKind::uniform;
  c.seed = 11;
  c.save_xa = true;
  Runtime runtime(options(true));
  expect_passes(runtime, c);
  const RuntimeStats tuned = runtime.stats();
  EXPECT_GT(tuned.tunes, 0);
  expect_passes(runtime, c);
  EXPECT_EQ(runtime.stats().tunes, tuned.tunes) << "the same spec and tokens were tuned again";
  EXPECT_EQ(runtime.stats().compiles, tuned.compiles);
}

// dB beside dX (RuntimeOptions::grad_b_sms: dX on a side stream with its grid capped below its
// tiles, dB on the caller's) gives the bits of dB after dX, and the reference result, with
// x * A^T saved or recomputed; work queued on the caller's stream afterwards runs after dX and
// dA too. (The register-operand kernel's cases, QuantGemm.RsKernel*, run dB beside dX by the
// default choice.)
TEST_F(BackwardRuntime, GradBBesideDxGivesTheSameBits) {
  if (const std::string arch = cuda::query_device(0).arch(); arch != "sm_90a")
    GTEST_SKIP() << "dB beside dX needs a persistent dX kernel (sm_90a); this device is " << arch;
  const cuda::Api& api = cuda::api();
  for (const bool save_xa : {false, true}) {
    BackwardCase c;
    c.spec.experts = 8;
    c.spec.top_k = 2;
    c.spec.in_features = 512;
    c.spec.out_features = 384;
    c.spec.rank = 16;
    c.tokens = 4000;  // dX: about 140 tiles, more than the grid keeps at half the SMs
    c.routing = RoutingKind::skewed;
    c.seed = 23;
    c.save_xa = save_xa;
    SCOPED_TRACE(c.describe());
    const ForwardInputs inputs = make_inputs(c.spec, c.tokens, c.routing, c.seed);
    std::optional<Gradients> after, beside;
    for (const int sms : {0, 1000}) {  // 1000: as many as it may (half the SMs)
      RuntimeOptions o = options(false);
      o.grad_b_sms = sms;
      Runtime runtime(o);
      BackwardProblem problem(c.spec, inputs, make_dy(c), save_xa);
      cuda::Stream stream;
      problem.poison();
      runtime.forward(c.spec, problem.forward_args(), stream.get());
      runtime.backward(c.spec, problem.args(), stream.get());
      stream.synchronize();
      EXPECT_EQ(runtime.stats().grad_b_beside_dx, sms > 0 ? 1 : 0);
      (sms > 0 ? beside : after) = problem.download();
      if (sms == 0) continue;
      const std::string why = check_backward_case(runtime, c, stream, 8);
      EXPECT_TRUE(why.empty()) << why;
      // Poison written on the caller's stream right after a backward lands after dX and dA,
      // which ran on the side stream.
      const BackwardArgs args = problem.args();
      runtime.backward(c.spec, args, stream.get());
      for (void* out : {args.dx, args.da})
        cuda::check(api.cuMemsetD8Async(
                        reinterpret_cast<CUdeviceptr>(out), 0xFF,
                        out == args.dx ? beside->dx.bytes().size() : beside->da.bytes().size(),
                        stream.get()),
                    "cuMemsetD8Async");
      stream.synchronize();
      const Gradients late = problem.download();
      EXPECT_TRUE(all_poison(late.dx)) << "dX written after the caller's later work";
      EXPECT_TRUE(all_poison(late.da)) << "dA written after the caller's later work";
    }
    EXPECT_TRUE(beside->dx.bytes() == after->dx.bytes()) << "dX differs";
    EXPECT_TRUE(beside->da.bytes() == after->da.bytes()) << "dA differs";
    EXPECT_TRUE(beside->db.bytes() == after->db.bytes()) << "dB differs";
  }
  RuntimeOptions bad = options(false);
  bad.grad_b_sms = -2;
  try {
    Runtime runtime(bad);
    ADD_FAILURE() << "grad_b_sms = -2 accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("grad_b_sms"), std::string::npos) << e.what();
  }
}

// Every lora_grad tuning candidate against the default config (which the backward sweep checks
// against the float64 reference), on ragged routings: rows per expert not a multiple of any
// stage, experts with no rows (their gradient must be exactly zero, as the default's), D not a
// multiple of any block_n, ranks that leave padded warp slices; grouped and gathered rows, fp16
// and fp32 factors, int64 indices and every B storage. The tuner makes the same check
// before it stores a winner; this makes a wrong candidate fail here rather than be dropped there.
TEST(LoraGradCandidates, EveryCandidateMatchesTheDefault) {
  MOEJIT_SKIP_WITHOUT_GPU();
  TestContext context;
  const cuda::DeviceInfo device = cuda::query_device(context.device());
  cuda::Stream stream;
  struct Shape {
    int experts, top_k, k, n, rank;
    std::int64_t tokens;
    bool grouped_in;  // dA reads grouped x rows and dB gathered dy rows, or the other way round
    DType act, lora;
    IndexType index;
    BStorage b_storage;
  };
  const Shape shapes[] = {
      {16, 2, 1000, 520, 5, 700, false, DType::bf16, DType::bf16, IndexType::int32, BStorage::peft},
      {64, 4, 264, 200, 16, 40, true, DType::bf16, DType::fp32, IndexType::int64,
       BStorage::expert_major},
      {8, 2, 520, 136, 48, 1500, false, DType::fp16, DType::fp16, IndexType::int32,
       BStorage::stacked},
      {12, 3, 136, 264, 176, 333, true, DType::bf16, DType::bf16, IndexType::int32,
       BStorage::peft}};
  for (const Shape& shape : shapes) {
    ProjectionSpec spec = base_spec(shape.experts, shape.top_k, shape.k, shape.n, shape.rank);
    spec.grouped_in = shape.grouped_in;
    spec.grouped_out = !shape.grouped_in;
    spec.act = shape.act;
    spec.weights = shape.act == DType::fp16 ? WeightFormat::fp16 : WeightFormat::bf16;
    spec.lora = shape.lora;
    spec.index = shape.index;
    spec.b_storage = shape.b_storage;
    for (const OpKind op : {OpKind::grad_a, OpKind::grad_b}) {
      spec.op = op;
      const TuningProblem problem(spec, shape.tokens, 7);
      std::vector<TileConfig> configs = candidate_configs(spec, device.arch());
      const TileConfig fallback = default_config(spec, device.arch());
      configs.insert(configs.begin(), fallback);
      const auto compiled =
          compile_candidates(spec, configs, device.arch(), device.smem_optin_bytes, "test");
      auto run = [&](const CompiledCandidate& c) {
        const cuda::Module module(c.kernel.cubin);
        const KernelHandle handle =
            load_kernel(module, c.kernel.lowered_name, spec, c.config, device.sm_count);
        return problem.run_and_read(handle, stream.get(), std::size_t{1} << 24);
      };
      ASSERT_TRUE(compiled[0].pruned.empty()) << fallback.name() << ": " << compiled[0].pruned;
      const std::vector<float> want = run(compiled[0]);
      int checked = 0;
      for (std::size_t i = 1; i < compiled.size(); ++i) {
        if (!compiled[i].pruned.empty()) continue;
        EXPECT_EQ(result_difference(run(compiled[i]), want, spec.lora), "")
            << compiled[i].config.name() << " against " << fallback.name() << " for "
            << spec.describe();
        ++checked;
      }
      EXPECT_GE(checked, 6) << spec.describe();
    }
  }
}

}  // namespace
}  // namespace moejit::test
