// The untuned default must compile cleanly for every preset on every target moejit supports,
// because it is what an offline warm stores and what a GPU without tuning runs.
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "autotune/tuner.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "compiler/source.hpp"
#include "runtime/presets.hpp"
#include "runtime/warm.hpp"

namespace moejit {
namespace {

// The smallest shared-memory opt-in of the GPUs each target serves: sm_80 code also runs on
// sm_86 / sm_89 parts (99 KB); sm_90a means H100 / H200 (227 KB).
int smallest_smem_optin(const std::string& arch) {
  return arch == "sm_90a" ? 227 * 1024 : 99 * 1024;
}

using DefaultCase = std::tuple<std::string, int, Projection>;  // arch, preset index, projection

class DefaultConfigCompiles : public ::testing::TestWithParam<DefaultCase> {};

TEST_P(DefaultConfigCompiles, WithoutSpillsAndWithinSharedMemory) {
  const auto& [arch, preset_index, projection] = GetParam();
  const ModelPreset& preset = model_presets()[preset_index];
  const ProjectionSpec spec = projection_spec(preset, projection, 16);
  const TileConfig config = default_config(spec, arch);
  const KernelSource source = render_kernel_source(spec, config);
  const CompiledKernel kernel =
      compile({source.source, source.name_expression, arch, spec.describe()});

  ASSERT_TRUE(kernel.report.found) << kernel.log;
  EXPECT_FALSE(kernel.report.spills()) << config.name() << "\n" << kernel.log;
  EXPECT_EQ(kernel.report.stack_frame, 0) << config.name() << "\n" << kernel.log;
  // C7519: ptxas fenced a wgmma's accumulators (a wgmma behind a branch), which serializes the
  // batches (bench/NOTES.md, v5d).
  EXPECT_EQ(kernel.log.find("C7519"), std::string::npos) << config.name() << "\n" << kernel.log;
  EXPECT_LE(source.dynamic_smem + kernel.report.static_smem, smallest_smem_optin(arch))
      << config.name();
}

// Large ranks on Hopper, both layouts, forward and dX: the default is a TMA tile (at r = 128
// m128n128 with 3 stages), compiles without spills and fits.
TEST(DefaultConfigLargeRanks, HopperDefaultsCompileWithoutSpills) {
  for (const char* name : {"qwen3-30b-a3b", "gpt-oss-20b"})
    for (const int rank : {64, 128}) {
      const ProjectionSpec forward =
          projection_spec(find_preset(name).value(), Projection::gate_up, rank);
      std::vector<ProjectionSpec> specs{forward};
      for (const ProjectionSpec& op : backward_ops(forward))
        if (op.op == OpKind::backward_dx) specs.push_back(op);
      ASSERT_EQ(specs.size(), 2u);
      for (const ProjectionSpec& spec : specs) {
        const TileConfig config = default_config(spec, "sm_90a");
        const KernelSource source = render_kernel_source(spec, config);
        const CompiledKernel kernel =
            compile({source.source, source.name_expression, "sm_90a", spec.describe()});
        EXPECT_TRUE(config.tma) << config.name() << " for " << spec.describe();
        EXPECT_FALSE(kernel.report.spills()) << config.name() << " for " << spec.describe();
        EXPECT_EQ(kernel.log.find("C7519"), std::string::npos)
            << config.name() << " for " << spec.describe();
        EXPECT_LE(source.dynamic_smem + kernel.report.static_smem, smallest_smem_optin("sm_90a"))
            << config.name();
      }
    }
}

// The LoRA-gradient kernels' defaults fit the smallest opt-in (sm_86 / sm_89 parts) at every
// rank: their stages hold fp32 u rows, and a layout that grew them had cut that to 160.
TEST(DefaultConfigLargeRanks, LoraGradDefaultsFitSmallestSharedMemory) {
  for (const int rank : {16, 64, 128, 129, 160, 176, 192, 193, 256}) {
    const ProjectionSpec forward =
        projection_spec(find_preset("mixtral-8x7b").value(), Projection::down, rank);
    int grads = 0;
    for (const ProjectionSpec& op : backward_ops(forward)) {
      if (op.op != OpKind::grad_a && op.op != OpKind::grad_b) continue;
      ++grads;
      const TileConfig config = default_config(op, "sm_80");
      EXPECT_LE(dynamic_smem_bytes(op, config), smallest_smem_optin("sm_80"))
          << config.name() << " for " << op.describe();
    }
    EXPECT_EQ(grads, 2) << "rank " << rank;
  }
}

std::string case_name(const ::testing::TestParamInfo<DefaultCase>& info) {
  std::string preset(model_presets()[std::get<1>(info.param)].name);
  for (char& c : preset)
    if (c == '-') c = '_';
  return std::get<0>(info.param) + "_" + preset + "_" +
         std::string(to_string(std::get<2>(info.param)));
}

INSTANTIATE_TEST_SUITE_P(
    Presets, DefaultConfigCompiles,
    ::testing::Combine(::testing::Values("sm_80", "sm_90a"),
                       ::testing::Range(0, static_cast<int>(model_presets().size())),
                       ::testing::Values(Projection::gate_up, Projection::down)),
    case_name);

}  // namespace
}  // namespace moejit
