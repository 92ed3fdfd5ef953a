// The forward and backward over quantized base weights (nf4 with and without double quantization,
// int8_rowwise) through moejit::Runtime, against the float64 references fed with the weights
// dequantized bit-exactly on the CPU: Y, the saved x*A^T, dX, dA and dB within SPEC.md's bounds,
// finite and written, bitwise reproducible; and the quantization arguments checked by name. The
// case list and the oracle's own checks run anywhere; everything on the device skips without a GPU.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <optional>
#include <set>
#include <thread>

#include "autotune/tuner.hpp"
#include "compiler/error.hpp"
#include "compiler/kernel_view.hpp"
#include "compiler/source.hpp"
#include "runtime/presets.hpp"
#include "runtime/warm.hpp"
#include "tests/gpu/backward_problem.hpp"
#include "tests/gpu/gpu_env.hpp"
#include "tests/gpu/quant_gemm_checker.hpp"
#include "tests/gpu/quant_gemm_device.hpp"
#include "tests/support/temp_dir.hpp"

namespace moejit::test {
namespace {

// ---- the case list and the oracle (no GPU) ----

TileConfig quantized_tma_config() {
  return TileConfig{.block_m = 128,
                    .block_n = 128,
                    .block_k = 64,
                    .warps_m = 8,
                    .warps_n = 1,
                    .stages = 3,
                    .wgmma = true,
                    .tma = true};
}

// The cases the TMA kernel can serve: lora dtype == act dtype, r <= 64 (its shared memory). The
// sampled cases have fewer output tiles than an H100 has SMs, so two more have several hundred:
// each CTA of the persistent grid then runs several tiles, and a tile's first k-blocks reuse
// stages the previous tile's last ones read (K = 264: five k-blocks, more than the stages).
std::vector<QuantCase> tma_cases() {
  std::vector<QuantCase> out;
  for (const QuantCase& c : quant_gemm_cases())
    if (c.spec.lora == c.spec.act && c.spec.rank <= 64) out.push_back(c);
  auto many_tiles = [](WeightFormat weights, int blocksize, bool double_quant, WeightLayout layout,
                       DType act, std::uint64_t seed) {
    QuantCase c;
    c.spec.weights = weights;
    c.spec.quant_blocksize = blocksize;
    c.spec.double_quant = double_quant;
    c.spec.layout = layout;
    c.spec.act = c.spec.lora = act;
    c.spec.experts = 4;
    c.spec.top_k = 2;
    c.spec.in_features = 264;
    c.spec.out_features = 1032;
    c.spec.rank = 16;
    c.tokens = 3000;  // 6000 rows: about 47 row tiles of 128 times 9 column tiles
    c.routing = RoutingKind::skewed;
    c.seed = seed;
    c.save_xa = true;
    return c;
  };
  out.push_back(
      many_tiles(WeightFormat::nf4, 64, true, WeightLayout::out_in, DType::bf16, 0x7A1E5));
  out.push_back(
      many_tiles(WeightFormat::int8_rowwise, 0, false, WeightLayout::in_out, DType::fp16, 0x7A1E6));
  return out;
}

// The register-operand kernel (forward_sm90_rs.cuh), pinned for each of its tile heights and
// widths (one or two accumulating warpgroups).
TileConfig rs_config(int block_m, int block_n = 128, int stages = 0) {
  return TileConfig{.block_m = block_m,
                    .block_n = block_n,
                    .block_k = 64,
                    .warps_m = block_n / 16,
                    .warps_n = 1,
                    .stages = stages > 0       ? stages
                              : block_m == 192 ? 5
                                               : 4,
                    .wgmma = true,
                    .tma = true,
                    .rs = true};
}

// Cases it serves (nf4 or int8, lora dtype == act, r a multiple of 4 up to 64, the weight's
// contiguous dimension a multiple of 32 for nf4 and 16 for int8), still ragged: K and N not
// multiples of 64 or 128 (int8: nor of 32), every nf4 block size, double quantization on and off,
// both layouts and act dtypes, empty experts (sparse routing), grouped inputs and outputs, bias,
// and many-tile cases (several tiles per CTA of the persistent grid, more k-blocks than stages).
std::vector<QuantCase> rs_cases() {
  struct Axes {
    WeightFormat weights;
    int blocksize;
    bool double_quant;
    WeightLayout layout;
    DType act;
    int experts, top_k, k, n, rank;
    std::int64_t tokens;
    RoutingKind routing;
    bool grouped_in, grouped_out, bias;
  };
  const WeightLayout out_in = WeightLayout::out_in, in_out = WeightLayout::in_out;
  const DType bf16 = DType::bf16, fp16 = DType::fp16;
  const WeightFormat nf4 = WeightFormat::nf4, int8 = WeightFormat::int8_rowwise;
  const Axes axes[] = {
      {nf4, 32, false, out_in, bf16, 6, 2, 288, 416, 16, 700, RoutingKind::skewed, false, false,
       false},
      {nf4, 64, true, in_out, bf16, 8, 2, 352, 480, 8, 900, RoutingKind::sparse, false, false,
       true},
      {nf4, 128, false, in_out, fp16, 5, 1, 320, 224, 4, 600, RoutingKind::uniform, true, false,
       false},
      {nf4, 256, true, out_in, fp16, 4, 2, 416, 288, 64, 500, RoutingKind::skewed, false, true,
       true},
      {nf4, 64, false, out_in, bf16, 16, 4, 224, 352, 12, 800, RoutingKind::sparse, true, true,
       false},
      {nf4, 32, true, in_out, fp16, 3, 2, 96, 160, 16, 400, RoutingKind::uniform, false, false,
       false},
      {nf4, 64, true, out_in, bf16, 4, 2, 544, 1056, 16, 3000, RoutingKind::skewed, false, false,
       false},
      {nf4, 128, false, in_out, bf16, 4, 2, 288, 1024, 16, 3000, RoutingKind::skewed, false, false,
       true},
      {int8, 0, false, out_in, bf16, 6, 2, 272, 400, 16, 700, RoutingKind::skewed, false, false,
       true},
      {int8, 0, false, in_out, fp16, 8, 2, 336, 208, 8, 900, RoutingKind::sparse, true, false,
       false},
      {int8, 0, false, in_out, bf16, 4, 2, 400, 288, 64, 500, RoutingKind::skewed, false, true,
       true},
      {int8, 0, false, out_in, fp16, 16, 4, 240, 368, 12, 800, RoutingKind::uniform, true, true,
       false},
      {int8, 0, false, in_out, bf16, 4, 2, 544, 1040, 16, 3000, RoutingKind::skewed, false, false,
       false},
      // Ranks where ptxas spilled in the x * A^T prologue without its launch-bounds hint: 24 and
      // 32 with the 128-row prologue tile it had (the forward over in_out weights, dX over out_in
      // ones), 56 with the 64-row one (the forward over out_in weights, dX over in_out ones).
      {nf4, 64, false, in_out, bf16, 6, 2, 320, 448, 24, 700, RoutingKind::skewed, false, false,
       false},
      {int8, 0, false, out_in, fp16, 5, 2, 304, 400, 32, 600, RoutingKind::uniform, false, false,
       true},
      {nf4, 128, true, out_in, bf16, 4, 2, 256, 320, 56, 600, RoutingKind::skewed, false, false,
       false},
      {int8, 0, false, in_out, bf16, 3, 2, 272, 352, 56, 500, RoutingKind::sparse, false, false,
       true},
      // N = 8 (mod 16): a row's last 16 features have one 8-feature chunk inside N and one past
      // it, which splits a warp's two halves in the epilogue.
      {nf4, 64, false, out_in, bf16, 5, 2, 288, 408, 16, 600, RoutingKind::skewed, false, false,
       false},
      {int8, 0, false, out_in, fp16, 4, 2, 272, 392, 8, 500, RoutingKind::uniform, true, false,
       true},
      // Grouped input and output with several tiles per CTA of the persistent grid and more
      // k-blocks than stages.
      {nf4, 64, false, out_in, bf16, 4, 2, 544, 1056, 16, 3000, RoutingKind::skewed, true, true,
       false},
      // Grouped inputs above 16 ranks (128 rows by 32 ranks, 256 by 64 with the LoRA term on
      // mma.sync, 192 by 32).
      {nf4, 128, false, in_out, fp16, 6, 2, 352, 224, 32, 800, RoutingKind::uniform, true, true,
       false},
      {nf4, 64, true, out_in, bf16, 5, 2, 288, 352, 56, 700, RoutingKind::skewed, true, false,
       false},
      {int8, 0, false, in_out, bf16, 4, 2, 336, 272, 20, 600, RoutingKind::sparse, true, false,
       true},
  };
  std::vector<QuantCase> out;
  std::uint64_t seed = 0x55AA10;
  for (const Axes& a : axes) {
    QuantCase c;
    c.spec.weights = a.weights;
    c.spec.quant_blocksize = a.blocksize;
    c.spec.double_quant = a.double_quant;
    c.spec.layout = a.layout;
    c.spec.act = c.spec.lora = a.act;
    c.spec.experts = a.experts;
    c.spec.top_k = a.top_k;
    c.spec.in_features = a.k;
    c.spec.out_features = a.n;
    c.spec.rank = a.rank;
    c.spec.grouped_in = a.grouped_in;
    c.spec.grouped_out = a.grouped_out;
    c.spec.has_bias = a.bias;
    c.tokens = a.tokens;
    c.routing = a.routing;
    c.seed = seed++;
    c.save_xa = c.seed % 2 == 0;  // both: the prologue writes save_xa, or scratch
    out.push_back(c);
  }
  return out;
}

// One NVRTC compile of a test: its result is the pruning reason ("" when kept), or "threw: "
// and the exception's message.
struct TestCompile {
  ProjectionSpec spec;
  TileConfig config;
  bool must_not_spill;  // else it only has to compile
  std::string result;
};

// The compiles are independent: on every core.
void compile_all(std::vector<TestCompile>& compiles) {
  std::atomic<std::size_t> next{0};
  std::vector<std::jthread> pool;
  for (unsigned t = 0; t < std::max(1u, std::thread::hardware_concurrency()); ++t)
    pool.emplace_back([&] {
      for (std::size_t i; (i = next++) < compiles.size();) {
        TestCompile& c = compiles[i];
        try {
          c.result =
              compile_candidates(c.spec, {c.config}, "sm_90a", 227 * 1024, "test", 1)[0].pruned;
        } catch (const std::exception& e) {
          c.result = std::string("threw: ") + e.what();
        }
      }
    });
}

void expect_compiled(const std::vector<TestCompile>& compiles) {
  for (const TestCompile& c : compiles) {
    if (c.must_not_spill) {
      EXPECT_EQ(c.result, "") << c.config.name() << " for " << c.spec.describe();
    } else {
      EXPECT_FALSE(c.result.starts_with("threw"))
          << c.config.name() << " for " << c.spec.describe() << ": " << c.result;
    }
  }
}

// Without a GPU: the register-operand configs compile for the forward and dX of every rs case,
// and without a spill for the presets' nf4 (with and without double quantization) and int8
// projections.
TEST(QuantGemmCases, RsConfigCompilesForItsCases) {
  const std::vector<QuantCase> cases = rs_cases();
  for (const QuantCase& c : cases) {
    ASSERT_TRUE(rs_serves(c.spec)) << c.describe();
    for (const ProjectionSpec& op : backward_ops(c.spec)) {
      if (op.op == OpKind::backward_dx) {
        ASSERT_TRUE(rs_serves(op)) << c.describe();
      }
    }
  }
  std::vector<TestCompile> compiles;
  for (const int block_m : {128, 192, 256}) {
    for (const QuantCase& c : cases)
      if (block_m == 128 || c.spec.rank <= 32) {
        compiles.push_back({c.spec, rs_config(block_m), false, ""});
        compiles.push_back({c.spec, rs_config(block_m, 64), false, ""});
      } else {  // the LoRA term's mma.sync beyond 48 ranks at 256 rows; 3 stages fit
        compiles.push_back({c.spec, rs_config(block_m, 128, 3), false, ""});
      }
    for (const ModelPreset& preset : model_presets())
      for (const Projection proj : {Projection::gate_up, Projection::down})
        for (const auto& [weights, dq] : {std::pair{WeightFormat::nf4, false},
                                          {WeightFormat::nf4, true},
                                          {WeightFormat::int8_rowwise, false}}) {
          ProjectionSpec spec = projection_spec(preset, proj, 16);
          spec.weights = weights;
          spec.quant_blocksize = weights == WeightFormat::nf4 ? 64 : 0;
          spec.double_quant = dq;
          compiles.push_back({spec, rs_config(block_m), true, ""});
        }
  }
  compile_all(compiles);
  expect_compiled(compiles);
}

// Without a GPU: the pinned TMA config compiles for the forward and dX of every such case (the
// GPU test runs them all), and without a spill for the presets' projections in nf4 and int8,
// where its speed matters (a spilling config is pruned before timing).
TEST(QuantGemmCases, TmaConfigCompilesForEveryCaseAndPresetsWithoutSpills) {
  const std::vector<QuantCase> cases = tma_cases();
  ASSERT_GE(cases.size(), 8u);
  auto forward_and_dx = [](const ProjectionSpec& spec) {
    std::vector<ProjectionSpec> out{spec};
    for (const ProjectionSpec& op : backward_ops(spec))
      if (op.op == OpKind::backward_dx) out.push_back(op);
    return out;
  };
  std::vector<ProjectionSpec> specs, presets;
  for (const QuantCase& c : cases)
    for (const ProjectionSpec& s : forward_and_dx(c.spec)) specs.push_back(s);
  for (const ModelPreset& preset : model_presets())
    for (const Projection proj : {Projection::gate_up, Projection::down})
      for (const WeightFormat format : {WeightFormat::nf4, WeightFormat::int8_rowwise}) {
        ProjectionSpec spec = projection_spec(preset, proj, 16);
        spec.weights = format;
        spec.quant_blocksize = format == WeightFormat::nf4 ? 64 : 0;
        for (const ProjectionSpec& s : forward_and_dx(spec)) presets.push_back(s);
      }
  const TileConfig tma = quantized_tma_config();
  std::vector<TestCompile> compiles;
  for (const ProjectionSpec& spec : specs) compiles.push_back({spec, tma, false, ""});
  for (const ProjectionSpec& spec : presets) compiles.push_back({spec, tma, true, ""});
  compile_all(compiles);
  expect_compiled(compiles);
}

std::string format_name(const ProjectionSpec& s) {
  if (s.weights != WeightFormat::nf4) return std::string(to_string(s.weights));
  return fmt::format("nf4/{}{}", s.quant_blocksize, s.double_quant ? "/dq" : "");
}

bool has_empty_expert(const QuantCase& c) {
  Rng rng(c.seed);
  const Routing routing = make_routing(c.routing, c.spec.experts, c.spec.top_k, c.tokens, rng);
  for (int e = 0; e < c.spec.experts; ++e)
    if (routing.rows_of(e) == 0) return true;
  return false;
}

TEST(QuantGemmCases, CoverEveryAxis) {
  const std::vector<QuantCase> cases = quant_gemm_cases();
  std::set<std::string> combos;
  std::set<int> experts, top_ks, ranks;
  std::set<std::pair<bool, bool>> groupings;
  std::set<bool> biases, saves, forward_wgmma;
  bool empty_expert = false, crossing_partial = false, ragged = true;
  for (const QuantCase& c : cases) {
    const ProjectionSpec& s = c.spec;
    combos.insert(fmt::format("{} {} {}", format_name(s), to_string(s.layout), to_string(s.act)));
    experts.insert(s.experts);
    top_ks.insert(s.top_k);
    ranks.insert(s.rank);
    groupings.insert({s.grouped_in, s.grouped_out});
    biases.insert(s.has_bias);
    saves.insert(c.save_xa);
    forward_wgmma.insert(s.lora == s.act && s.rank <= 128);
    empty_expert = empty_expert || has_empty_expert(c);
    const std::int64_t n = std::int64_t(s.experts) * s.in_features * s.out_features;
    const std::int64_t bs = std::max(1, s.quant_blocksize), blocks = (n + bs - 1) / bs;
    crossing_partial = crossing_partial || (blocks_cross_experts(s) && s.double_quant &&
                                            n % bs != 0 && blocks > 256 && blocks % 256 != 0);
    ragged = ragged && (s.in_features % 64 != 0 && s.out_features % 64 != 0);
  }
  for (const std::string format : {"nf4/32", "nf4/32/dq", "nf4/64", "nf4/64/dq", "nf4/128",
                                   "nf4/128/dq", "nf4/256", "nf4/256/dq", "int8_rowwise"})
    for (const char* layout : {"out_in", "in_out"})
      for (const char* act : {"bf16", "fp16"}) {
        const std::string combo = fmt::format("{} {} {}", format, layout, act);
        EXPECT_TRUE(combos.count(combo)) << "no case for " << combo;
      }
  EXPECT_EQ(experts, (std::set<int>{1, 3, 8}));
  EXPECT_EQ(top_ks, (std::set<int>{1, 2}));
  for (const int r : {1, 16, 33}) EXPECT_TRUE(ranks.count(r)) << "rank " << r;
  EXPECT_TRUE(std::any_of(ranks.begin(), ranks.end(), [](int r) { return r > 128; }));
  EXPECT_EQ(groupings.size(), 4u);
  EXPECT_EQ(biases.size(), 2u);
  EXPECT_EQ(saves.size(), 2u);
  EXPECT_EQ(forward_wgmma.size(), 2u) << "both forward kernel families on sm_90a";
  EXPECT_TRUE(empty_expert) << "no case has an expert without rows";
  EXPECT_TRUE(crossing_partial) << "no case has blocks crossing experts, a partial last block and "
                                   "a partial second absmax2 block";
  EXPECT_TRUE(ragged) << "every K and N is a multiple of 8 but not of 64";
  EXPECT_LE(cases.size(), 44u) << "keep the GPU run short";
}

// The oracle's weights: the SPEC.md array sizes, and Wd close to the float weights in the same
// order (a layout slip in the test would show as an error near 100%).
TEST(QuantGemmOracle, QuantizedArraysHaveSpecSizesAndTrackTheWeights) {
  for (const QuantCase& c : quant_gemm_cases()) {
    const ProjectionSpec& s = c.spec;
    SCOPED_TRACE(c.describe());
    const QuantizedBase base = make_quantized_base(s, c.seed);
    const std::vector<float> w = random_base_weights(s, c.seed);
    const auto n = static_cast<std::int64_t>(w.size());
    ASSERT_EQ(base.dequantized.size(), w.size());
    double error = 0, norm = 0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      error += std::pow(base.dequantized.at(i) - w[i], 2);
      norm += std::pow(double(w[i]), 2);
    }
    if (s.weights == WeightFormat::nf4) {
      const std::int64_t blocks = (n + s.quant_blocksize - 1) / s.quant_blocksize;
      EXPECT_EQ(std::int64_t(base.nf4.packed.size()), (n + 1) / 2);
      EXPECT_EQ(std::int64_t(s.double_quant ? base.nf4.qabsmax.size() : base.nf4.absmax.size()),
                blocks);
      if (s.double_quant) {
        EXPECT_EQ(std::int64_t(base.nf4.absmax2.size()), (blocks + 255) / 256);
      }
      EXPECT_LT(std::sqrt(error / norm), 0.15) << "nf4 quantization error";
    } else {
      const int cols = s.layout == WeightLayout::out_in ? s.in_features : s.out_features;
      EXPECT_EQ(std::int64_t(base.int8.row_stats.size()), n / cols);
      EXPECT_LT(std::sqrt(error / norm), 0.01) << "int8 quantization error";
    }
  }
}

TEST(QuantGemmOracle, ErrorPatternLocatesBadElements) {
  const std::vector<double> ref(6 * 4, 1.0);  // 6 rows of 4
  HostTensor out(DType::fp32, ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i) out.set(i, 1.0f);
  out.set(1 * 4 + 2, 1.5f);  // row 1, col 2
  out.set(4 * 4 + 3, NAN);   // row 4, col 3
  const std::string pattern = error_pattern(ref, out, 4, 5e-3, {0, 0, 1, 1, 2, 2});
  EXPECT_NE(pattern.find("2 of 24 elements"), std::string::npos) << pattern;
  EXPECT_NE(pattern.find("(1 not finite)"), std::string::npos) << pattern;
  EXPECT_NE(pattern.find("rows 1..4, cols 2..3"), std::string::npos) << pattern;
  EXPECT_NE(pattern.find("per expert {0: 1, 2: 1}"), std::string::npos) << pattern;
  out.set(1 * 4 + 2, 1.0f);
  out.set(4 * 4 + 3, 1.0f);
  EXPECT_EQ(error_pattern(ref, out, 4, 5e-3, {}), "");
}

// ---- on the GPU (the input checks first, the sweep last) ----

// SPEC.md "Input checks": a missing quantization array is an InvalidArgument naming it, raised
// before anything is launched or written.
class QuantGemmInputChecks : public ::testing::Test {
 protected:
  void SetUp() override {
    MOEJIT_SKIP_WITHOUT_GPU();
    context_.emplace();
  }

  static QuantCase small_case(WeightFormat weights, bool double_quant) {
    QuantCase c;
    c.spec.experts = 3;
    c.spec.top_k = 2;
    c.spec.in_features = 136;
    c.spec.out_features = 72;
    c.spec.rank = 16;
    c.spec.weights = weights;
    c.spec.quant_blocksize = weights == WeightFormat::nf4 ? 64 : 0;
    c.spec.double_quant = double_quant;
    c.tokens = 40;
    c.seed = 11;
    return c;
  }

  // Nulls one argument (`clear`) in both calls and expects InvalidArgument whose message holds
  // `quoted` ("'name'" or a prefix of it), with every output byte still 0xFF.
  template <class Clear>
  void expect_rejected(const QuantCase& c, const std::string& quoted, Clear clear) {
    SCOPED_TRACE(c.describe());
    const QuantizedBase base = make_quantized_base(c.spec, c.seed);
    const ForwardInputs inputs = make_quant_inputs(c, base);
    const DeviceQuantWeights weights(base);
    DeviceProblem forward(c.spec, inputs);
    BackwardProblem backward(c.spec, inputs, make_quant_dy(c), false);
    RuntimeOptions options;
    options.cache_path = dir_.path() / "cache.sqlite";
    options.tune = false;
    Runtime runtime(options);

    ForwardArgs forward_args = forward.args();
    weights.apply(forward_args);
    clear(forward_args);
    forward.poison_output();
    expect_throws_naming([&] { runtime.forward(c.spec, forward_args); }, "forward", quoted);
    synchronize_context();
    expect_poisoned("Y", forward.download_output(), quoted);

    BackwardArgs backward_args = backward.args();
    weights.apply(backward_args);
    clear(backward_args);
    backward.poison();
    expect_throws_naming([&] { runtime.backward(c.spec, backward_args); }, "backward", quoted);
    synchronize_context();
    const Gradients g = backward.download();
    expect_poisoned("dX", g.dx, quoted);
    expect_poisoned("dA", g.da, quoted);
    expect_poisoned("dB", g.db, quoted);
    EXPECT_EQ(runtime.stats().launches, 0);
  }

  template <class Call>
  static void expect_throws_naming(Call call, const char* op, const std::string& quoted) {
    try {
      call();
      ADD_FAILURE() << op << ": no InvalidArgument with " << quoted << " null";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(quoted), std::string::npos)
          << op << ": the message does not name " << quoted << ": " << e.what();
    }
  }

  static void expect_poisoned(const char* name, const HostTensor& t, const std::string& quoted) {
    EXPECT_TRUE(std::all_of(t.bytes().begin(), t.bytes().end(), [](auto b) { return b == 0xFF; }))
        << name << " written although " << quoted << " is null";
  }

  TempDir dir_;
  std::optional<TestContext> context_;  // outlives the buffers of each test body
};

TEST_F(QuantGemmInputChecks, Nf4WithoutCodeNamesWCode) {
  expect_rejected(small_case(WeightFormat::nf4, false), "'w_code'",
                  [](auto& args) { args.w_code = nullptr; });
}

TEST_F(QuantGemmInputChecks, DoubleQuantWithoutCode2NamesWCode2) {
  expect_rejected(small_case(WeightFormat::nf4, true), "'w_code2'",
                  [](auto& args) { args.w_code2 = nullptr; });
}

TEST_F(QuantGemmInputChecks, Int8WithoutRowStatsNamesWAbsmax) {
  // The runtime may add what the array holds after the name ("'w_absmax (row_stats)'").
  expect_rejected(small_case(WeightFormat::int8_rowwise, false), "'w_absmax",
                  [](auto& args) { args.w_absmax = nullptr; });
}

// One worker per host core (at most 16), or MOEJIT_QUANT_GEMM_WORKERS. A kernel fault breaks the
// context of every worker and surfaces wherever the next CUDA call happens, so with several
// workers it cannot be pinned to one case: set MOEJIT_QUANT_GEMM_WORKERS=1 to attribute it.
int worker_count() {
  if (const char* forced = std::getenv("MOEJIT_QUANT_GEMM_WORKERS"))
    return std::clamp(std::atoi(forced), 1, 64);
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 16u));
}

// `prepare` may fill the workers' cache files first (worker_cache) to pin kernels; `inspect` sees
// them after the cases ran.
// In quick mode (gpu_env.hpp) every fifth case and the last two (in tma_cases, the many-tile
// ones).
void run_cases(const std::vector<QuantCase>& all_cases, int workers,
               const std::function<void(const std::filesystem::path&)>& prepare = {},
               const std::function<void(const std::filesystem::path&)>& inspect = {}) {
  std::vector<QuantCase> cases;
  for (std::size_t i = 0; i < all_cases.size(); ++i)
    if (!quick_mode() || i % 5 == 0 || i + 2 >= all_cases.size()) cases.push_back(all_cases[i]);
  const TempDir dir("moejit-quant-gemm-test");
  if (prepare) prepare(dir.path());
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::string> results = check_quant_cases(cases, dir.path(), workers);
  int failed = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const bool passed = results[i].empty();
    failed += passed ? 0 : 1;
    std::cout << (passed ? "[ PASS ] " : "[ FAIL ] ") << cases[i].describe() << "\n";
    if (!passed) ADD_FAILURE() << cases[i].describe() << ":\n" << results[i];
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "checked " << cases.size() << " quantized-weight cases (" << failed << " failed) on "
            << workers << " workers in " << seconds << " s\n";
  if (inspect) inspect(dir.path());
}

// Also checks accuracy; each op runs twice and must repeat itself bit for bit.
TEST(QuantGemm, LargeRunsAreBitwiseIdentical) {
  MOEJIT_SKIP_WITHOUT_GPU();
  run_cases({large_determinism_case()}, 1);
}

// Last two: a kernel fault leaves this process without a usable CUDA context, so the tests after
// it could only report that.
TEST(QuantGemm, ForwardAndBackwardMatchReference) {
  MOEJIT_SKIP_WITHOUT_GPU();
  run_cases(quant_gemm_cases(), worker_count());
}

// The warp-specialized TMA kernel, whose loading warpgroup decodes the quantized weights: the
// cases it serves (lora dtype == act dtype), their forward and dX pinned to it by offline cache
// entries, which the untuned Runtime runs.
TEST(QuantGemm, TmaKernelMatchesReference) {
  MOEJIT_SKIP_WITHOUT_GPU();
  if (const std::string arch = cuda::query_device(0).arch(); arch != "sm_90a")
    GTEST_SKIP() << "the TMA kernel needs sm_90a; this device is " << arch;
  const TileConfig tma = quantized_tma_config();
  const std::vector<QuantCase> cases = tma_cases();
  ASSERT_FALSE(cases.empty());
  run_cases(
      cases, 1,
      [&](const std::filesystem::path& dir) {
        CacheStore store(worker_cache(dir, 0));
        for (const QuantCase& c : cases) {
          EXPECT_EQ(warm_offline(store, c.spec, c.tokens, "sm_90a", tma).config, tma);
          for (const ProjectionSpec& op : backward_ops(c.spec))
            if (op.op == OpKind::backward_dx) warm_offline(store, op, c.tokens, "sm_90a", tma);
        }
      },
      [&](const std::filesystem::path& dir) {  // the GEMMs really ran the pinned kernel
        for (const CacheEntry& e : CacheStore(worker_cache(dir, 0)).list()) {
          if (family_of(e.key.spec.op) == KernelFamily::gemm) {
            EXPECT_EQ(e.config, tma) << e.key.spec.describe();
          }
        }
      });
}

// The register-operand kernel on its cases, forward and dX pinned by offline cache entries
// (block_m 256, 192 and 128 in turn).
TEST(QuantGemm, RsKernelMatchesReference) {
  MOEJIT_SKIP_WITHOUT_GPU();
  if (const std::string arch = cuda::query_device(0).arch(); arch != "sm_90a")
    GTEST_SKIP() << "the register-operand kernel needs sm_90a; this device is " << arch;
  const std::vector<QuantCase> cases = rs_cases();
  // Every fourth case runs one accumulating warpgroup (64 features). Above 32 ranks the 192- and
  // 256-row tiles hold 3 stages (the 256-row tile's LoRA term runs on mma.sync beyond 48).
  auto config_of = [&](std::size_t i) {
    const int block_m = i % 3 == 0 ? 256 : i % 3 == 1 ? 192 : 128;
    return rs_config(block_m, i % 4 == 3 ? 64 : 128,
                     cases[i].spec.rank > 32 && block_m > 128 ? 3 : 0);
  };
  run_cases(
      cases, 1,
      [&](const std::filesystem::path& dir) {
        CacheStore store(worker_cache(dir, 0));
        for (std::size_t i = 0; i < cases.size(); ++i) {
          const QuantCase& c = cases[i];
          EXPECT_EQ(warm_offline(store, c.spec, c.tokens, "sm_90a", config_of(i)).config,
                    config_of(i));
          for (const ProjectionSpec& op : backward_ops(c.spec))
            if (op.op == OpKind::backward_dx)
              warm_offline(store, op, c.tokens, "sm_90a", config_of(i));
        }
      },
      [&](const std::filesystem::path& dir) {  // the GEMMs really ran the pinned kernel
        for (const CacheEntry& e : CacheStore(worker_cache(dir, 0)).list()) {
          if (family_of(e.key.spec.op) == KernelFamily::gemm) {
            EXPECT_TRUE(e.config.rs) << e.key.spec.describe();
          }
        }
      });
}

}  // namespace
}  // namespace moejit::test
