// moejit_render: prints the source stub that render_kernel_source() generates for a spec and a
// tile config given as flags; with --ptxas the NVRTC/ptxas log of compiling it for --arch; with
// --cubin PATH it writes the compiled CUBIN to PATH (bench/sass_check.sh disassembles it).
// The golden tests pipe its output through FileCheck.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

#include "compiler/error.hpp"
#include "compiler/kernel_view.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "compiler/source.hpp"

namespace {

struct Flags {
  moejit::ProjectionSpec spec;
  moejit::TileConfig config;
  std::string op = "forward", act = "bf16", lora = "bf16", index = "int32", weights;
  std::string layout = "out_in", b_storage = "peft", arch = "sm_90a", cubin;
  bool ptxas = false;
};

void add_spec_flags(CLI::App& app, Flags& f) {
  app.add_option("--op", f.op,
                 "forward|backward_dx|grad_a|grad_b|pack_b|reduce_slots: the kernel of that op "
                 "of the projection whose forward the other flags describe")
      ->capture_default_str();
  app.add_option("--experts", f.spec.experts, "E")->required();
  app.add_option("--top-k", f.spec.top_k, "k")->required();
  app.add_option("--in-features", f.spec.in_features, "K")->required();
  app.add_option("--out-features", f.spec.out_features, "N")->required();
  app.add_option("--rank", f.spec.rank, "r")->required();
  app.add_option("--act", f.act, "bf16|fp16")->capture_default_str();
  app.add_option("--lora", f.lora, "bf16|fp16|fp32")->capture_default_str();
  app.add_option("--index", f.index, "int32|int64")->capture_default_str();
  app.add_option("--weights", f.weights, "base weight format (default: the act dtype)");
  // 64 is the QLoRA blocksize the bench and the tuning data use; only nf4 reads it.
  f.spec.quant_blocksize = 64;
  app.add_option("--quant-blocksize", f.spec.quant_blocksize, "nf4 blocksize")
      ->capture_default_str();
  app.add_flag("--double-quant", f.spec.double_quant, "nf4 absmax double quantization");
  app.add_option("--layout", f.layout, "out_in|in_out")->capture_default_str();
  app.add_option("--b-storage", f.b_storage, "peft|expert_major|stacked")->capture_default_str();
  app.add_flag("--grouped-in", f.spec.grouped_in);
  app.add_flag("--grouped-out", f.spec.grouped_out);
  app.add_flag("--bias", f.spec.has_bias);
}

void add_config_flags(CLI::App& app, Flags& f) {
  app.add_option("--block-m", f.config.block_m)->capture_default_str();
  app.add_option("--block-n", f.config.block_n)->capture_default_str();
  app.add_option("--block-k", f.config.block_k)->capture_default_str();
  app.add_option("--warps-m", f.config.warps_m)->capture_default_str();
  app.add_option("--warps-n", f.config.warps_n)->capture_default_str();
  app.add_option("--stages", f.config.stages)->capture_default_str();
  app.add_flag("--wgmma", f.config.wgmma, "the sm_90a wgmma kernel instead of mma.sync");
  app.add_flag("--tma", f.config.tma, "with --wgmma: the warp-specialized TMA persistent kernel");
  app.add_flag("--rs", f.config.rs,
               "with --wgmma --tma: the register-operand nf4 kernel (block_m rows, block_n "
               "features)");
  app.add_option("--cluster-m", f.config.cluster_m,
                 "with --tma: CTAs per cluster (2: the weight tile multicast to both)")
      ->default_val(1);
}

void add_output_flags(CLI::App& app, Flags& f) {
  app.add_flag("--ptxas", f.ptxas, "print the compile log for --arch instead of the source");
  app.add_option("--cubin", f.cubin,
                 "compile for --arch, write the CUBIN to this path and print the lowered name");
  app.add_option("--arch", f.arch, "NVRTC target for --ptxas and --cubin")->capture_default_str();
}

void parse_enums(Flags& f) {
  f.spec.op = moejit::parse_op(f.op, "--op");
  f.spec.act = moejit::parse_dtype(f.act, "--act");
  f.spec.lora = moejit::parse_dtype(f.lora, "--lora");
  f.spec.index = moejit::parse_index_type(f.index, "--index");
  f.spec.weights = moejit::parse_weight_format(f.weights.empty() ? f.act : f.weights, "--weights");
  f.spec.layout = moejit::parse_weight_layout(f.layout, "--layout");
  f.spec.b_storage = moejit::parse_b_storage(f.b_storage, "--b-storage");
  // The runtime builds a backward op's kernel from the forward's spec the same way.
  f.spec = moejit::op_spec(f.spec, f.spec.op);
}

void write_cubin(const std::string& path, const std::vector<char>& cubin) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (file) file.write(cubin.data(), static_cast<std::streamsize>(cubin.size()));
  if (!file.flush())
    throw moejit::InvalidArgument("--cubin", "'" + path + "'",
                                  fmt::format("a writable file path ({})", std::strerror(errno)));
}

void run(Flags& f) {
  parse_enums(f);
  const moejit::KernelSource source = moejit::render_kernel_source(f.spec, f.config);
  if (!f.ptxas && f.cubin.empty()) {
    // The kernel name, block size and shared memory are not in the stub itself; print them after
    // it as comments so the goldens pin them too.
    fmt::print("{}// name_expression: {}\n// threads: {}\n// dynamic_smem: {}\n", source.source,
               source.name_expression, source.threads, source.dynamic_smem);
    return;
  }
  const moejit::CompiledKernel kernel =
      moejit::compile({source.source, source.name_expression, f.arch, "moejit_render"});
  if (!f.cubin.empty()) write_cubin(f.cubin, kernel.cubin);
  fmt::print("// lowered_name: {}\n", kernel.lowered_name);
  if (f.ptxas) fmt::print("{}\n", kernel.log);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Print the generated moejit kernel source, its ptxas report, or write its CUBIN"};
  Flags flags;
  add_spec_flags(app, flags);
  add_config_flags(app, flags);
  add_output_flags(app, flags);
  CLI11_PARSE(app, argc, argv);
  try {
    run(flags);
  } catch (const moejit::Error& e) {
    fmt::print(stderr, "moejit_render: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
