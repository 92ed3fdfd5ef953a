#include "compiler/source.hpp"

#include <fmt/format.h>
#include <algorithm>

#include "compiler/error.hpp"
#include "compiler/kernel_view.hpp"

namespace moejit {
namespace {

constexpr const char* kGemmStub = R"(// moejit generated kernel: {description}
#include "{header}"
namespace moejit_cfg {{
struct {config_name} {{
  using Act = {act};
  using Lora = {lora};
  using LoraB = {lora_b};
  using Index = {index};
  static constexpr int kExperts = {experts};
  static constexpr int kTopK = {top_k};
  static constexpr int kGatherDiv = {gather_div};
  static constexpr int kK = {k};
  static constexpr int kN = {n};
  static constexpr int kRank = {rank};
  static constexpr bool kWeightInOut = {in_out};
  static constexpr int kBStorage = {b_storage};
  static constexpr bool kGroupedIn = {grouped_in};
  static constexpr bool kGroupedOut = {grouped_out};
  static constexpr bool kHasBias = {has_bias};
  static constexpr int kWeightFormat = {weight_format};
  static constexpr int kQuantBlocksize = {quant_blocksize};
  static constexpr bool kDoubleQuant = {double_quant};
  static constexpr int kBlockM = {block_m};
  static constexpr int kBlockN = {block_n};
  static constexpr int kBlockK = {block_k};
  static constexpr int kWarpsM = {warps_m};
  static constexpr int kWarpsN = {warps_n};
  static constexpr int kStages = {stages};
  static constexpr int kClusterM = {cluster_m};
  static constexpr int kSmemBytes = {smem_bytes};
}};
}}  // namespace moejit_cfg
)";

constexpr const char* kGradStub = R"(// moejit generated kernel: {description}
#include "moejit/lora_grad.cuh"
namespace moejit_cfg {{
struct Config {{
  using Act = {act};
  using Out = {lora};
  using Index = {index};
  static constexpr int kExperts = {experts};
  static constexpr int kRank = {rank};
  static constexpr int kD = {d};
  static constexpr bool kVGrouped = {v_grouped};
  static constexpr int kGatherDiv = {gather_div};
  static constexpr int kOutStorage = {out_storage};
  static constexpr int kBlockN = {block_n};
  static constexpr int kBlockK = {block_k};
  static constexpr int kWarpsM = {warps_m};
  static constexpr int kWarpsN = {warps_n};
  static constexpr int kStages = {stages};
  static constexpr int kSmemBytes = {smem_bytes};
}};
}}  // namespace moejit_cfg
)";

constexpr const char* kAuxStub = R"(// moejit generated kernel: {description}
#include "moejit/aux.cuh"
namespace moejit_cfg {{
struct Config {{
  using Act = {act};
  using Lora = {lora};
  static constexpr int kExperts = {experts};
  static constexpr int kTopK = {top_k};
  static constexpr int kK = {k};
  static constexpr int kN = {n};
  static constexpr int kRank = {rank};
  static constexpr int kBStorage = {b_storage};
}};
}}  // namespace moejit_cfg
)";

constexpr int kAuxThreads = 256;

const char* device_type(DType t) {
  switch (t) {
    case DType::bf16:
      return "moejit::bf16";
    case DType::fp16:
      return "moejit::fp16";
    case DType::fp32:
      return "float";
  }
  return "?";
}

int padded_rank(int rank) {
  return (rank + 15) / 16 * 16;
}

// Bytes of a shared-memory tile row of `bytes` bytes, padded as templates/moejit/tile.cuh pads it.
int padded_row_bytes(int bytes) {
  const int chunks = bytes / 16;
  const int stride = chunks >= 8 ? (chunks + 7) / 8 * 8 : chunks <= 2 ? 2 : chunks <= 4 ? 4 : 8;
  return stride * 16;
}

std::string describe(const ProjectionSpec& spec, const TileConfig& c) {
  return spec.describe() + " config=" + c.name();
}

std::string gemm_stub(const ProjectionSpec& spec, const TileConfig& c, const char* config_name);

KernelSource render_gemm(const ProjectionSpec& spec, const TileConfig& c) {
  const GemmView v = gemm_view(spec);
  if (c.wgmma && v.a_dtype != spec.act)
    throw InvalidArgument("tile config", c.name(),
                          "a non-wgmma config: the sm90 kernel needs lora dtype == act dtype");
  if (c.cluster_m != 1 && is_quantized(spec.weights))
    throw InvalidArgument("tile config", c.name(),
                          "cluster_m 1 for quantized weights (clusters multicast 16-bit tiles)");
  if (c.rs && !rs_serves(spec))
    throw InvalidArgument("tile config", c.name(),
                          "a non-rs config: the register-operand kernel needs nf4 or int8 weights, "
                          "lora dtype == act dtype, r <= 64 and a multiple of 4, and the weight's "
                          "contiguous dimension a multiple of 32 (nf4) or 16 (int8)");
  KernelSource out;
  out.threads = c.threads();
  out.dynamic_smem = dynamic_smem_bytes(spec, c);
  out.source = gemm_stub(spec, c, "Config");
  out.name_expression = c.rs ? "moejit::moe_lora_forward_sm90_rs<moejit_cfg::Config>"
                        : c.cluster_m == 2
                            ? "moejit::moe_lora_forward_sm90_tma_cluster2<moejit_cfg::Config>"
                        : c.tma   ? "moejit::moe_lora_forward_sm90_tma<moejit_cfg::Config>"
                        : c.wgmma ? "moejit::moe_lora_forward_sm90<moejit_cfg::Config>"
                                  : "moejit::moe_lora_forward<moejit_cfg::Config>";
  if (c.rs) {  // the prologue kernel, by a name that needs no lowering
    const RsPrologue prologue = rs_prologue(spec);
    out.source += gemm_stub(prologue.spec, prologue.config, "XaConfig");
    // A register budget of five resident CTAs (102 registers; the shared memory holds four: 52 KB
    // at r = 16): without such a hint ptxas spilled a few bytes of the x * A^T fragments at some
    // ranks (bench/NOTES.md, v11c); with six, at r = 56-64 once the stages grew to 128 k (v20);
    // with five, none at r = 4-64.
    out.source += fmt::format(
        "extern \"C\" __global__ void __launch_bounds__("
        "moejit::ForwardKernel<moejit_cfg::XaConfig>::kThreads, 5)\n{}(const "
        "moejit::ForwardParams params) {{\n  "
        "moejit::ForwardKernel<moejit_cfg::XaConfig>::run(params);\n}}\n",
        kRsPrologueName);
  }
  return out;
}

// The stub instantiating the GEMM template of config c for spec as moejit_cfg::<config_name>.
std::string gemm_stub(const ProjectionSpec& spec, const TileConfig& c, const char* config_name) {
  const GemmView v = gemm_view(spec);
  using fmt::arg;
  return fmt::format(
      kGemmStub, arg("description", describe(spec, c)), arg("config_name", config_name),
      arg("header", c.rs      ? "moejit/forward_sm90_rs.cuh"
                    : c.tma   ? "moejit/forward_sm90_tma.cuh"
                    : c.wgmma ? "moejit/forward_sm90.cuh"
                              : "moejit/forward.cuh"),
      arg("act", device_type(spec.act)), arg("lora", device_type(v.a_dtype)),
      arg("lora_b", device_type(v.b_dtype)),
      arg("index", spec.index == IndexType::int64 ? "long long" : "int"),
      arg("experts", spec.experts), arg("top_k", spec.top_k), arg("gather_div", v.gather_div),
      arg("k", v.k), arg("n", v.n), arg("rank", spec.rank), arg("in_out", v.in_out),
      arg("b_storage", v.b_storage), arg("grouped_in", reads_grouped_x(spec, c)),
      arg("grouped_out", v.grouped_out), arg("has_bias", v.has_bias),
      arg("weight_format", static_cast<int>(spec.weights)),
      arg("quant_blocksize", spec.weights == WeightFormat::nf4 ? spec.quant_blocksize : 0),
      arg("double_quant", spec.weights == WeightFormat::nf4 && spec.double_quant),
      arg("block_m", c.block_m), arg("block_n", c.block_n), arg("block_k", c.block_k),
      arg("warps_m", c.warps_m), arg("warps_n", c.warps_n), arg("stages", c.stages),
      arg("cluster_m", c.cluster_m), arg("smem_bytes", dynamic_smem_bytes(spec, c)));
}

KernelSource render_grad(const ProjectionSpec& spec, const TileConfig& c) {
  const GradView v = grad_view(spec);
  if (const std::string problem = grad_config_problem(spec, c); !problem.empty())
    throw InvalidArgument("tile config", c.name(), problem);
  KernelSource out;
  out.threads = c.threads();
  out.dynamic_smem = dynamic_smem_bytes(spec, c);
  using fmt::arg;
  out.source =
      fmt::format(kGradStub, arg("description", describe(spec, c)),
                  arg("act", device_type(spec.act)), arg("lora", device_type(spec.lora)),
                  arg("index", spec.index == IndexType::int64 ? "long long" : "int"),
                  arg("experts", spec.experts), arg("rank", spec.rank), arg("d", v.d),
                  arg("v_grouped", v.v_grouped), arg("gather_div", v.gather_div),
                  arg("out_storage", v.out_storage), arg("block_n", c.block_n),
                  arg("block_k", c.block_k), arg("warps_m", c.warps_m), arg("warps_n", c.warps_n),
                  arg("stages", c.stages), arg("smem_bytes", out.dynamic_smem));
  out.name_expression = "moejit::moe_lora_grad<moejit_cfg::Config>";
  return out;
}

KernelSource render_aux(const ProjectionSpec& spec, const TileConfig& c) {
  KernelSource out;
  out.threads = kAuxThreads;
  using fmt::arg;
  out.source = fmt::format(
      kAuxStub, arg("description", describe(spec, c)), arg("act", device_type(spec.act)),
      arg("lora", device_type(spec.lora)), arg("experts", spec.experts), arg("top_k", spec.top_k),
      arg("k", spec.in_features), arg("n", spec.out_features), arg("rank", spec.rank),
      arg("b_storage", static_cast<int>(spec.b_storage)));
  out.name_expression = spec.op == OpKind::pack_b ? "moejit::pack_lora_b<moejit_cfg::Config>"
                                                  : "moejit::reduce_slots<moejit_cfg::Config>";
  return out;
}

}  // namespace

int grad_block_m(int rank, int warps_m) {
  const int slice = 16 * warps_m;
  return (rank + slice - 1) / slice * slice;
}

std::string grad_config_problem(const ProjectionSpec& spec, const TileConfig& c) {
  if (c.wgmma || c.block_m != grad_block_m(spec.rank, c.warps_m))
    return fmt::format(
        "a lora_grad config: no wgmma, block_m = rank {} padded to 16 * warps_m = {}", spec.rank,
        grad_block_m(spec.rank, c.warps_m));
  const int chunks_per_row = c.block_n / 8;
  if (c.block_k % (16 * c.warps_n) != 0 || c.threads() % chunks_per_row != 0 ||
      c.threads() / chunks_per_row > c.block_k)
    return "a lora_grad config: block_k a multiple of 16 * warps_n, and the threads a multiple of "
           "block_n / 8 and at most block_k * block_n / 8";
  return {};
}

bool rs_serves(const ProjectionSpec& spec) {
  if (family_of(spec.op) != KernelFamily::gemm || !is_quantized(spec.weights)) return false;
  const GemmView v = gemm_view(spec);
  // Packed chunks of 16 bytes (8 for nf4's feature-contiguous slices) inside or outside the
  // weight's contiguous dimension whole.
  const int contiguous_multiple = spec.weights == WeightFormat::nf4 ? 32 : 16;
  return v.a_dtype == spec.act && spec.rank <= 64 && spec.rank % 4 == 0 &&
         (v.in_out ? v.n : v.k) % contiguous_multiple == 0;
}

bool reads_grouped_x(const ProjectionSpec& spec, const TileConfig& c) {
  return c.rs || gemm_view(spec).grouped_in;
}

RsPrologue rs_prologue(const ProjectionSpec& spec) {
  // 64 rows by 16 features (4 warps of 16 rows), 128-k stages, 2 of them. Its math is a few mma
  // per row; the bytes in flight, the grid's waves and the length of each row's piece are what
  // count: against the 128-row tile in 4 stages it had (v9; 87 KB, two CTAs an SM), nf4 f+b steps
  // were up to 2.6% faster with 3 stages of 64 k (v11c), and 256-byte pieces of the gathered rows
  // instead of 128 moved them by -2.1% to +0.7% (v20; bench/NOTES.md).
  RsPrologue out{spec, TileConfig{64, 16, 128, 4, 1, 2}};
  // It never reads the base weights: the 16-bit format keeps its stub free of the quantized path.
  out.spec.weights = spec.act == DType::fp16 ? WeightFormat::fp16 : WeightFormat::bf16;
  out.spec.quant_blocksize = 0;
  out.spec.double_quant = false;
  // It computes x * A^T only, in column tile 0: with 8 output features its grid is the row tiles
  // alone, not one CTA per column tile that exits at once (forward.cuh still reads B_e's first
  // columns, within its bounds, and never uses them).
  (spec.op == OpKind::forward ? out.spec.out_features : out.spec.in_features) = 8;
  out.spec.has_bias = false;
  return out;
}

int dynamic_smem_bytes(const ProjectionSpec& spec, const TileConfig& c) {
  const int rp = padded_rank(spec.rank);
  switch (family_of(spec.op)) {
    case KernelFamily::gemm: {
      const GemmView v = gemm_view(spec);
      // Epilogue tiles (B_e and x*A^T in the 16-bit act dtype) and the source/destination rows.
      // The nf4 code tables (16 + 256 fp32) follow.
      const int epilogue = (c.block_n + c.block_m) * padded_row_bytes(rp * 2) + c.block_m * 16 +
                           (spec.weights == WeightFormat::nf4 ? (16 + 256) * 4 : 0);
      if (c.rs) {  // stages (x tile, packed slice and scales), two buffers of the LoRA term's
                   // 16-bit operand and destination rows, a 4 KB slice per accumulating
                   // warpgroup, barriers, nf4 tables, tile starts
                   // (templates/moejit/forward_sm90_rs.cuh)
        const int weight_slice = v.in_out ? 64 * (c.block_n + 16) : c.block_n * 80;
        return 1024 + c.stages * (c.block_m * 128 + weight_slice) +
               2 * (c.block_m * rp * 2 + c.block_m * 8) + c.block_n / 64 * 4096 +
               (2 * c.stages + 4) * 8 + (16 + 256) * 4 + (spec.experts + 1) * 8;
      }
      if (c.tma)  // stages, two buffers of B_e and destination rows, a 512-byte store slice per
                  // accumulating warp, barriers, nf4 tables, tile starts
        return 1024 + c.stages * (c.block_m + c.block_n + rp) * 128 +
               2 * (c.block_n * padded_row_bytes(rp * 2) + c.block_m * 8) + c.block_m * 32 +
               (2 * c.stages + 4) * 8 + (spec.weights == WeightFormat::nf4 ? (16 + 256) * 4 : 0) +
               (spec.experts + 1) * 8;
      if (c.wgmma)  // 128-byte rows everywhere, plus slack to align the tiles to 1024 bytes
        return 1024 + c.stages * (c.block_m + c.block_n + rp) * 128 + epilogue;
      const int a = static_cast<int>(size_of(v.a_dtype));
      const int stage = c.block_m * c.block_k * 2 + c.block_k * c.block_n * 2 + rp * c.block_k * a;
      return c.stages * stage + epilogue;
    }
    case KernelFamily::lora_grad:
      // Per stage: the v tile and the fp32 u rows of block_m ranks, padded by 4 floats.
      // Afterwards, with warps splitting the rows (warps_n > 1), their partial sums:
      // block_m x (block_n + 4) fp32 each.
      return std::max(
          c.stages * c.block_k * (padded_row_bytes(c.block_n * 2) + (c.block_m + 4) * 4),
          c.warps_n > 1 ? c.warps_n * c.block_m * (c.block_n + 4) * 4 : 0);
    default:
      return 0;
  }
}

LaunchDims launch_dims(const ProjectionSpec& spec, const TileConfig& c, std::int64_t rows,
                       int resident_ctas) {
  LaunchDims d;
  switch (family_of(spec.op)) {
    case KernelFamily::gemm: {
      const std::int64_t n_tiles = (gemm_view(spec).n + c.block_n - 1) / c.block_n;
      // Row tiles rounded up to the kernels' raster group of 8 (templates/moejit/tile.cuh).
      std::int64_t row_tiles =
          (rows + c.block_m - 1) / c.block_m + std::min<std::int64_t>(spec.experts, rows);
      row_tiles = (row_tiles + 7) / 8 * 8;
      d.grid_x = n_tiles * row_tiles;
      if (c.tma && resident_ctas > 0) d.grid_x = std::min<std::int64_t>(d.grid_x, resident_ctas);
      d.grid_x = (d.grid_x + c.cluster_m - 1) / c.cluster_m * c.cluster_m;  // whole clusters
      d.threads = c.threads();
      d.dynamic_smem = dynamic_smem_bytes(spec, c);
      return d;
    }
    case KernelFamily::lora_grad:
      d.grid_x = (grad_view(spec).d + c.block_n - 1) / c.block_n;
      d.grid_y = spec.experts;
      d.threads = c.threads();
      d.dynamic_smem = dynamic_smem_bytes(spec, c);
      return d;
    case KernelFamily::pack_b: {
      // One thread per (n, j) and 16 experts (templates/moejit/aux.cuh).
      const std::int64_t count =
          static_cast<std::int64_t>((spec.experts + 15) / 16) * spec.rank * spec.out_features;
      d.grid_x = std::clamp<std::int64_t>((count + kAuxThreads - 1) / kAuxThreads, 1, 4096);
      d.threads = kAuxThreads;
      return d;
    }
    case KernelFamily::reduce_slots: {
      const std::int64_t pairs = rows / spec.top_k * (spec.in_features / 2);
      d.grid_x = std::clamp<std::int64_t>((pairs + kAuxThreads - 1) / kAuxThreads, 1, 8192);
      d.threads = kAuxThreads;
      return d;
    }
  }
  return d;
}

KernelSource render_kernel_source(const ProjectionSpec& spec, const TileConfig& c) {
  spec.validate();
  switch (family_of(spec.op)) {
    case KernelFamily::gemm:
      c.validate();
      return render_gemm(spec, c);
    case KernelFamily::lora_grad:
      c.validate();
      return render_grad(spec, c);
    default:
      return render_aux(spec, c);
  }
}

}  // namespace moejit
