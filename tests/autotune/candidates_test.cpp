// The candidate space: every config it offers must be instantiable for the spec it was made for.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "autotune/tuner.hpp"
#include "compiler/source.hpp"
#include "runtime/presets.hpp"

namespace moejit {
namespace {

// Both projections of every preset at the ranks training runs use, plus a layout/dtype mix.
std::vector<ProjectionSpec> specs_under_test() {
  std::vector<ProjectionSpec> specs;
  for (const ModelPreset& preset : model_presets())
    for (Projection proj : {Projection::gate_up, Projection::down})
      for (int rank : {8, 16, 64, 128, 256})
        specs.push_back(projection_spec(preset, proj, rank, DType::bf16, DType::fp32));
  // LoRA factors in the act dtype, so that Hopper serves them with wgmma and TMA, at ranks on
  // both sides of where the 128-row TMA tiles stop fitting the shared memory.
  for (const char* name : {"qwen3-30b-a3b", "gpt-oss-20b"})
    for (int rank : {16, 64, 80, 128})
      specs.push_back(projection_spec(find_preset(name).value(), Projection::down, rank));
  ProjectionSpec fp16 =
      projection_spec(model_presets().front(), Projection::down, 32, DType::fp16, DType::fp16);
  fp16.index = IndexType::int64;
  specs.push_back(fp16);
  return specs;
}

const std::vector<std::string> kArchs = {"sm_80", "sm_86", "sm_90a"};

TEST(CandidateConfigs, EveryCandidateValidatesAndRenders) {
  for (const std::string& arch : kArchs)
    for (const ProjectionSpec& spec : specs_under_test()) {
      const std::vector<TileConfig> configs = candidate_configs(spec, arch);
      ASSERT_FALSE(configs.empty()) << spec.describe();
      for (const TileConfig& config : configs) {
        EXPECT_NO_THROW(config.validate()) << config.name() << " for " << spec.describe();
        const KernelSource source = render_kernel_source(spec, config);
        EXPECT_NE(source.source.find("kBlockM = " + std::to_string(config.block_m) + ";"),
                  std::string::npos)
            << config.name();
        EXPECT_EQ(source.threads, config.threads()) << config.name();
        EXPECT_EQ(source.dynamic_smem, dynamic_smem_bytes(spec, config)) << config.name();
      }
    }
}

TEST(CandidateConfigs, WgmmaOnlyWhereSupported) {
  for (const std::string& arch : kArchs)
    for (const ProjectionSpec& spec : specs_under_test()) {
      const auto configs = candidate_configs(spec, arch);
      const bool any_wgmma =
          std::any_of(configs.begin(), configs.end(), [](const TileConfig& c) { return c.wgmma; });
      EXPECT_EQ(any_wgmma, wgmma_supported(spec, arch)) << arch << " " << spec.describe();
      if (arch != "sm_90a") {
        EXPECT_FALSE(any_wgmma) << arch << " has no wgmma instructions";
      }
      // On Hopper 16-bit weights get only wgmma tiles (every tuned run picked one there).
      if (any_wgmma && !is_quantized(spec.weights)) {
        EXPECT_TRUE(std::all_of(configs.begin(), configs.end(), [](const TileConfig& c) {
          return c.wgmma;
        })) << spec.describe();
      }
    }
}

TEST(CandidateConfigs, HasNoDuplicates) {
  for (const std::string& arch : kArchs)
    for (const ProjectionSpec& spec : specs_under_test()) {
      std::set<std::string> names;
      for (const TileConfig& config : candidate_configs(spec, arch))
        EXPECT_TRUE(names.insert(config.name()).second) << config.name() << " twice";
    }
}

TEST(CandidateConfigs, OfferAChoiceAtCommonRanks) {
  // Tuning is pointless with a single candidate; at r = 16 the space must hold several.
  for (const ModelPreset& preset : model_presets()) {
    const ProjectionSpec spec = projection_spec(preset, Projection::gate_up, 16);
    EXPECT_GT(candidate_configs(spec).size(), 4u) << preset.name;
  }
}

TEST(DefaultConfig, ValidatesAndRendersForEverySpec) {
  for (const std::string& arch : kArchs)
    for (const ProjectionSpec& spec : specs_under_test()) {
      const TileConfig config = default_config(spec, arch);
      if (config.wgmma) {
        EXPECT_TRUE(wgmma_supported(spec, arch)) << arch << " " << spec.describe();
      }
      EXPECT_NO_THROW(config.validate()) << config.name() << " for " << spec.describe();
      EXPECT_NO_THROW(render_kernel_source(spec, config)) << spec.describe();
    }
}

// Hopper with 16-bit weights defaults to the TMA kernel where a 128-row tile fits; the tuner's
// reference is never the TMA kernel (so a TMA winner is checked against an independent kernel), is
// a candidate there, and everything else defaults to it.
TEST(DefaultConfig, TmaOnHopperWithSixteenBitWeightsReferenceNeverTma) {
  for (const std::string& arch : kArchs)
    for (ProjectionSpec spec : specs_under_test()) {
      const TileConfig reference = reference_config(spec, arch);
      EXPECT_FALSE(reference.tma) << arch << " " << spec.describe();
      EXPECT_NO_THROW(reference.validate()) << reference.name();
      const TileConfig config = default_config(spec, arch);
      if (wgmma_supported(spec, arch)) {
        // TMA exactly where a 128-row TMA tile fits; the reference is always a candidate.
        const auto tma = tma_candidates(spec, arch);
        EXPECT_EQ(config.tma,
                  std::ranges::any_of(tma, [](const TileConfig& c) { return c.block_m == 128; }))
            << config.name() << " for " << spec.describe();
        if (!config.tma) {
          EXPECT_EQ(config, reference) << spec.describe();
        }
        EXPECT_LE(dynamic_smem_bytes(spec, config), 227 * 1024 - 1024) << config.name();
        EXPECT_TRUE(config.block_n < 256 || spec.rank <= 64) << config.name() << " spills there";
        const auto candidates = candidate_configs(spec, arch);
        EXPECT_NE(std::ranges::find(candidates, reference), candidates.end()) << spec.describe();
      } else {
        EXPECT_EQ(config, reference) << arch << " " << spec.describe();
      }
      // nf4 and int8: the register-operand kernel where it serves (sm_90a), else the reference;
      // the reference is never it and is always a candidate.
      for (const WeightFormat weights : {WeightFormat::nf4, WeightFormat::int8_rowwise}) {
        spec.weights = weights;
        spec.quant_blocksize = weights == WeightFormat::nf4 ? 64 : 0;
        const std::vector<TileConfig> rs = rs_candidates(spec, arch);
        EXPECT_EQ(!rs.empty(), arch == "sm_90a" && rs_serves(spec)) << spec.describe();
        EXPECT_EQ(default_config(spec, arch),
                  rs.empty() ? reference_config(spec, arch) : rs.front())
            << "quantized weights: " << arch << " " << spec.describe();
        EXPECT_FALSE(reference_config(spec, arch).rs) << spec.describe();
        if (!rs.empty()) {
          const auto quant_candidates = candidate_configs(spec, arch);
          EXPECT_NE(std::ranges::find(quant_candidates, reference_config(spec, arch)),
                    quant_candidates.end())
              << spec.describe();
        }
      }
    }
}

// The TMA kernel's configs: only where wgmma serves the spec, all offered by candidate_configs,
// all within Hopper's shared memory, and (for the most common shape) compiling without spills,
// so that offering them does not just add pruned compiles.
TEST(TmaCandidates, FitHopperAndCompileWithoutSpills) {
  for (const ProjectionSpec& spec : specs_under_test()) {
    const auto configs = tma_candidates(spec, "sm_90a");
    EXPECT_EQ(!configs.empty(), wgmma_supported(spec, "sm_90a")) << spec.describe();
    EXPECT_TRUE(tma_candidates(spec, "sm_89").empty());
    std::set<std::string> offered;
    for (const TileConfig& c : candidate_configs(spec, "sm_90a")) offered.insert(c.name());
    for (const TileConfig& c : configs) {
      EXPECT_TRUE(offered.contains(c.name())) << c.name() << " not offered for " << spec.describe();
      EXPECT_TRUE(c.wgmma && c.tma) << c.name();
      EXPECT_LE(dynamic_smem_bytes(spec, c), 227 * 1024 - 1024) << c.name();
    }
  }
  const ModelPreset qwen = find_preset("qwen3-30b-a3b").value();
  for (const Projection proj : {Projection::gate_up, Projection::down}) {
    const ProjectionSpec spec = projection_spec(qwen, proj, 16);
    const auto configs = tma_candidates(spec, "sm_90a");
    EXPECT_GE(configs.size(), 8u);
    for (const CompiledCandidate& c :
         compile_candidates(spec, configs, "sm_90a", 227 * 1024, "test"))
      EXPECT_EQ(c.pruned, "") << c.config.name() << " for " << spec.describe();
  }
}

// The register-operand kernel's rule on the weight's contiguous dimension (K for out_in storage,
// N for in_out, in the forward and dX alike): 16-byte int8 chunks need a multiple of 16, nf4's
// 8-byte feature-contiguous chunks (16 values) a multiple of 32.
TEST(RsServes, ContiguousDimensionByFormat) {
  ProjectionSpec spec = projection_spec(find_preset("qwen3-30b-a3b").value(), Projection::down, 16);
  spec.in_features = 784;  // 16 * 49: a multiple of 16, not of 32
  spec.out_features = 2048;
  for (const WeightLayout layout : {WeightLayout::out_in, WeightLayout::in_out}) {
    spec.layout = layout;
    ProjectionSpec dx = spec;
    dx.op = OpKind::backward_dx;
    spec.weights = dx.weights = WeightFormat::int8_rowwise;
    EXPECT_TRUE(rs_serves(spec)) << spec.describe();
    EXPECT_TRUE(rs_serves(dx)) << dx.describe();
    spec.weights = dx.weights = WeightFormat::nf4;
    spec.quant_blocksize = dx.quant_blocksize = 64;
    // K = 784 is the contiguous dimension of out_in weights.
    EXPECT_EQ(rs_serves(spec), layout == WeightLayout::in_out) << spec.describe();
    EXPECT_EQ(rs_serves(dx), layout == WeightLayout::in_out) << dx.describe();
    spec.weights = dx.weights = WeightFormat::bf16;
    EXPECT_FALSE(rs_serves(spec)) << spec.describe();
  }
  spec.weights = WeightFormat::int8_rowwise;
  spec.layout = WeightLayout::out_in;
  spec.in_features = 776;  // a multiple of 8, not of 16
  EXPECT_FALSE(rs_serves(spec)) << spec.describe();
}

}  // namespace
}  // namespace moejit
