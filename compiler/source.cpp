#include "compiler/source.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "compiler/error.hpp"

namespace moejit {
namespace {

constexpr const char* kForwardStub = R"(// moejit generated kernel: {description}
#include "{header}"
namespace moejit_cfg {{
struct Config {{
  using Act = {act};
  using Lora = {lora};
  using Index = {index};
  static constexpr int kExperts = {experts};
  static constexpr int kTopK = {top_k};
  static constexpr int kK = {k};
  static constexpr int kN = {n};
  static constexpr int kRank = {rank};
  static constexpr bool kWeightInOut = {in_out};
  static constexpr int kBStorage = {b_storage};
  static constexpr bool kGroupedIn = {grouped_in};
  static constexpr bool kGroupedOut = {grouped_out};
  static constexpr bool kHasBias = {has_bias};
  static constexpr int kBlockM = {block_m};
  static constexpr int kBlockN = {block_n};
  static constexpr int kBlockK = {block_k};
  static constexpr int kWarpsM = {warps_m};
  static constexpr int kWarpsN = {warps_n};
  static constexpr int kStages = {stages};
  static constexpr int kSmemBytes = {smem_bytes};
}};
}}  // namespace moejit_cfg
)";

const char* device_type(DType t) {
  switch (t) {
    case DType::bf16: return "moejit::bf16";
    case DType::fp16: return "moejit::fp16";
    case DType::fp32: return "float";
  }
  return "?";
}

int padded_rank(int rank) { return (rank + 15) / 16 * 16; }

// Bytes of a shared-memory tile row of `bytes` bytes, padded as templates/moejit/tile.cuh pads it.
int padded_row_bytes(int bytes) {
  const int chunks = bytes / 16;
  const int stride = chunks >= 8 ? (chunks + 7) / 8 * 8 : chunks <= 2 ? 2 : chunks <= 4 ? 4 : 8;
  return stride * 16;
}

}  // namespace

int dynamic_smem_bytes(const ProjectionSpec& spec, const TileConfig& c) {
  const int rp = padded_rank(spec.rank);
  // Epilogue tiles (B_e and x*A^T in the 16-bit act dtype) and the source/destination row lists.
  const int epilogue = (c.block_n + c.block_m) * padded_row_bytes(rp * 2) + c.block_m * 16;
  if (c.wgmma)  // 128-byte rows everywhere, plus slack to align the tiles to 1024 bytes
    return 1024 + c.stages * (c.block_m + c.block_n + rp) * 128 + epilogue;
  const int act = static_cast<int>(size_of(spec.act));
  const int lora = static_cast<int>(size_of(spec.lora));
  const int stage = c.block_m * c.block_k * act + c.block_k * c.block_n * act + rp * c.block_k * lora;
  return c.stages * stage + epilogue;
}

std::int64_t grid_size(const ProjectionSpec& spec, const TileConfig& c, std::int64_t rows) {
  const std::int64_t n_tiles = (spec.out_features + c.block_n - 1) / c.block_n;
  const std::int64_t row_tiles =
      (rows + c.block_m - 1) / c.block_m + std::min<std::int64_t>(spec.experts, rows);
  return n_tiles * row_tiles;
}

KernelSource render_kernel_source(const ProjectionSpec& spec, const TileConfig& c) {
  spec.validate();
  c.validate();
  if (spec.weights != WeightFormat::bf16 && spec.weights != WeightFormat::fp16)
    throw InvalidArgument("weights", std::string(to_string(spec.weights)),
                          "bf16 or fp16 (quantized formats are not generated yet)");
  if (c.wgmma && (spec.layout != WeightLayout::out_in || spec.lora != spec.act))
    throw InvalidArgument("tile config", c.name(),
                          "a non-wgmma config: the sm90 kernel needs out_in weights and lora dtype "
                          "== act dtype");
  KernelSource out;
  out.threads = c.threads();
  out.dynamic_smem = dynamic_smem_bytes(spec, c);
  using fmt::arg;
  out.source = fmt::format(
      kForwardStub, arg("description", spec.describe() + " config=" + c.name()),
      arg("header", c.wgmma ? "moejit/forward_sm90.cuh" : "moejit/forward.cuh"),
      arg("act", device_type(spec.act)), arg("lora", device_type(spec.lora)),
      arg("index", spec.index == IndexType::int64 ? "long long" : "int"),
      arg("experts", spec.experts), arg("top_k", spec.top_k), arg("k", spec.in_features),
      arg("n", spec.out_features), arg("rank", spec.rank),
      arg("in_out", spec.layout == WeightLayout::in_out),
      arg("b_storage", static_cast<int>(spec.b_storage)), arg("grouped_in", spec.grouped_in),
      arg("grouped_out", spec.grouped_out), arg("has_bias", spec.has_bias),
      arg("block_m", c.block_m), arg("block_n", c.block_n), arg("block_k", c.block_k),
      arg("warps_m", c.warps_m), arg("warps_n", c.warps_n), arg("stages", c.stages),
      arg("smem_bytes", out.dynamic_smem));
  out.name_expression = c.wgmma ? "moejit::moe_lora_forward_sm90<moejit_cfg::Config>"
                                : "moejit::moe_lora_forward<moejit_cfg::Config>";
  return out;
}

}  // namespace moejit
