// moejit_render: prints the source stub that render_kernel_source() generates for a spec and a
// tile config given as flags, or with --ptxas the NVRTC/ptxas log of compiling it for --arch.
// The golden tests pipe its output through FileCheck.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <iostream>
#include <string>

#include "compiler/error.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "compiler/source.hpp"

namespace {

struct Flags {
  moejit::ProjectionSpec spec;
  moejit::TileConfig config;
  std::string act = "bf16", lora = "bf16", index = "int32", weights, layout = "out_in";
  std::string b_storage = "peft", arch = "sm_90a";
  bool ptxas = false;
};

void add_flags(CLI::App& app, Flags& f) {
  app.add_option("--experts", f.spec.experts, "E")->required();
  app.add_option("--top-k", f.spec.top_k, "k")->required();
  app.add_option("--in-features", f.spec.in_features, "K")->required();
  app.add_option("--out-features", f.spec.out_features, "N")->required();
  app.add_option("--rank", f.spec.rank, "r")->required();
  app.add_option("--act", f.act, "bf16|fp16")->capture_default_str();
  app.add_option("--lora", f.lora, "bf16|fp16|fp32")->capture_default_str();
  app.add_option("--index", f.index, "int32|int64")->capture_default_str();
  app.add_option("--weights", f.weights, "base weight format (default: the act dtype)");
  app.add_option("--layout", f.layout, "out_in|in_out")->capture_default_str();
  app.add_option("--b-storage", f.b_storage, "peft|expert_major|stacked")->capture_default_str();
  app.add_flag("--grouped-in", f.spec.grouped_in);
  app.add_flag("--grouped-out", f.spec.grouped_out);
  app.add_flag("--bias", f.spec.has_bias);
  app.add_option("--block-m", f.config.block_m)->capture_default_str();
  app.add_option("--block-n", f.config.block_n)->capture_default_str();
  app.add_option("--block-k", f.config.block_k)->capture_default_str();
  app.add_option("--warps-m", f.config.warps_m)->capture_default_str();
  app.add_option("--warps-n", f.config.warps_n)->capture_default_str();
  app.add_option("--stages", f.config.stages)->capture_default_str();
  app.add_flag("--wgmma", f.config.wgmma, "the sm_90a wgmma kernel instead of mma.sync");
  app.add_flag("--ptxas", f.ptxas, "print the compile log for --arch instead of the source");
  app.add_option("--arch", f.arch, "NVRTC target for --ptxas")->capture_default_str();
}

void parse_enums(Flags& f) {
  f.spec.act = moejit::parse_dtype(f.act, "--act");
  f.spec.lora = moejit::parse_dtype(f.lora, "--lora");
  f.spec.index = moejit::parse_index_type(f.index, "--index");
  f.spec.weights = moejit::parse_weight_format(f.weights.empty() ? f.act : f.weights, "--weights");
  f.spec.layout = moejit::parse_weight_layout(f.layout, "--layout");
  f.spec.b_storage = moejit::parse_b_storage(f.b_storage, "--b-storage");
}

void run(Flags& f) {
  parse_enums(f);
  const moejit::KernelSource source = moejit::render_kernel_source(f.spec, f.config);
  if (!f.ptxas) {
    // The kernel name, block size and shared memory are not in the stub itself; print them after
    // it as comments so the goldens pin them too.
    fmt::print("{}// name_expression: {}\n// threads: {}\n// dynamic_smem: {}\n", source.source,
               source.name_expression, source.threads, source.dynamic_smem);
    return;
  }
  const moejit::CompiledKernel kernel =
      moejit::compile({source.source, source.name_expression, f.arch, "moejit_render"});
  fmt::print("// lowered_name: {}\n{}\n", kernel.lowered_name, kernel.log);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Print the generated moejit kernel source or its ptxas report"};
  Flags flags;
  add_flags(app, flags);
  CLI11_PARSE(app, argc, argv);
  try {
    run(flags);
  } catch (const moejit::Error& e) {
    fmt::print(stderr, "moejit_render: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
