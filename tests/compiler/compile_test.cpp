// Compiles the rendered forward stub with NVRTC (no GPU needed) and checks what compile() returns,
// and that a failing compile carries everything needed to debug it.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <tuple>

#include "compiler/error.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "compiler/source.hpp"

namespace moejit {
namespace {

ProjectionSpec out_in_spec() {
  ProjectionSpec s;
  s.experts = 64;
  s.top_k = 8;
  s.in_features = 2048;
  s.out_features = 2048;
  s.rank = 16;
  s.grouped_out = true;
  return s;
}

// GPT-OSS-like down projection: in_out weights, bias, fp32 LoRA factors, int64 routing.
ProjectionSpec in_out_spec() {
  ProjectionSpec s;
  s.experts = 32;
  s.top_k = 4;
  s.in_features = 2880;
  s.out_features = 2880;
  s.rank = 16;
  s.layout = WeightLayout::in_out;
  s.lora = DType::fp32;
  s.index = IndexType::int64;
  s.has_bias = true;
  s.grouped_in = true;
  return s;
}

using CompileCase = std::tuple<std::string, ProjectionSpec>;

class CompileForward : public ::testing::TestWithParam<CompileCase> {};

TEST_P(CompileForward, ReturnsCubinLoweredNameAndCleanReport) {
  const auto& [arch, spec] = GetParam();
  const KernelSource source = render_kernel_source(spec, TileConfig{});
  const CompiledKernel kernel =
      compile({source.source, source.name_expression, arch, "test-key " + spec.describe()});

  EXPECT_FALSE(kernel.cubin.empty());
  EXPECT_EQ(kernel.lowered_name.rfind("_Z", 0), 0u) << kernel.lowered_name;
  EXPECT_NE(kernel.log.find(kernel.lowered_name), std::string::npos) << kernel.log;
  ASSERT_TRUE(kernel.report.found) << kernel.log;
  EXPECT_GT(kernel.report.registers, 0) << kernel.log;
  EXPECT_FALSE(kernel.report.spills()) << kernel.log;
  EXPECT_EQ(kernel.report.spill_stores, 0);
  EXPECT_EQ(kernel.report.spill_loads, 0);
}

std::string case_name(const ::testing::TestParamInfo<CompileCase>& info) {
  return std::get<0>(info.param) + "_" + std::string(to_string(std::get<1>(info.param).layout));
}

INSTANTIATE_TEST_SUITE_P(ArchAndLayout, CompileForward,
                         ::testing::Combine(::testing::Values("sm_80", "sm_90a"),
                                            ::testing::Values(out_in_spec(), in_out_spec())),
                         case_name);

TEST(CompileWgmma, Sm90KernelCompilesForSm90aWithoutSpills) {
  const TileConfig config{128, 128, 64, 8, 1, 4, true};
  const KernelSource source = render_kernel_source(out_in_spec(), config);
  const CompiledKernel kernel = compile({source.source, source.name_expression, "sm_90a", "key"});
  EXPECT_FALSE(kernel.cubin.empty());
  EXPECT_NE(kernel.lowered_name.find("moe_lora_forward_sm90"), std::string::npos);
  ASSERT_TRUE(kernel.report.found) << kernel.log;
  EXPECT_GT(kernel.report.registers, 0);
  EXPECT_FALSE(kernel.report.spills()) << kernel.log;
}

// The TMA kernel in clusters of two: its own entry point (the cluster shape is compiled in), no
// spills, in both weight layouts; quantized weights are refused with the config named.
TEST(CompileWgmma, ClusterKernelCompilesWithoutSpills) {
  const TileConfig config{128, 256, 64, 8, 1, 4, true, true, 2};
  for (ProjectionSpec spec : {out_in_spec(), in_out_spec()}) {
    spec.lora = spec.act;  // the sm90 kernels' restriction
    const KernelSource source = render_kernel_source(spec, config);
    const CompiledKernel kernel = compile({source.source, source.name_expression, "sm_90a", "key"});
    EXPECT_NE(kernel.lowered_name.find("moe_lora_forward_sm90_tma_cluster2"), std::string::npos);
    ASSERT_TRUE(kernel.report.found) << kernel.log;
    EXPECT_FALSE(kernel.report.spills()) << kernel.log;
  }
  ProjectionSpec quantized = out_in_spec();
  quantized.weights = WeightFormat::int8_rowwise;
  try {
    render_kernel_source(quantized, config);
    FAIL() << "a cluster config rendered for quantized weights";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(config.name()), std::string::npos) << e.what();
  }
}

TEST(CompileWgmma, Sm80RejectsTheSm90Kernel) {
  // wgmma exists only on sm_90a: the failure must surface as CompileError, never as a CUBIN.
  const KernelSource source =
      render_kernel_source(out_in_spec(), TileConfig{128, 128, 64, 8, 1, 4, true});
  EXPECT_THROW(compile({source.source, source.name_expression, "sm_80", "wgmma-on-sm80"}),
               CompileError);
}

TEST(CompileError, CarriesLogOptionsAndKey) {
  const std::string source =
      "#include \"moejit/forward.cuh\"\n"
      "__global__ void broken_kernel() { int x = undeclared_symbol_42; }\n";
  try {
    compile({source, "broken_kernel", "sm_80", "key-text-for-the-broken-kernel"});
    FAIL() << "compile() accepted a broken source";
  } catch (const CompileError& e) {
    const std::string message = e.what();
    // The log's error line: file, line number and the offending identifier.
    EXPECT_NE(message.find("moejit_kernel.cu(2): error"), std::string::npos) << message;
    EXPECT_NE(message.find("undeclared_symbol_42"), std::string::npos) << message;
    EXPECT_NE(message.find("-arch=sm_80"), std::string::npos) << message;
    for (const std::string& option : compile_options("sm_80"))
      EXPECT_NE(message.find(option), std::string::npos) << option << "\n" << message;
    EXPECT_NE(message.find("key-text-for-the-broken-kernel"), std::string::npos) << message;
  }
}

TEST(CompileOptions, NameTheArch) {
  for (const std::string arch : {"sm_80", "sm_89", "sm_90a"}) {
    const auto options = compile_options(arch);
    EXPECT_NE(std::find(options.begin(), options.end(), "-arch=" + arch), options.end()) << arch;
  }
}

TEST(NvrtcVersion, IsMajorDotMinor) {
  const std::string version = nvrtc_version();
  const auto dot = version.find('.');
  ASSERT_NE(dot, std::string::npos) << version;
  EXPECT_GE(std::stoi(version.substr(0, dot)), 12) << version;
}

}  // namespace
}  // namespace moejit
