#pragma once
// One point of the tile-config space of the mma.sync kernels.
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace moejit {

struct TileConfig {
  int block_m = 128;  // grouped rows per CTA
  int block_n = 128;  // output features per CTA
  int block_k = 32;   // reduction slice per pipeline stage
  int warps_m = 2;
  int warps_n = 2;
  int stages = 3;  // cp.async pipeline depth
  // sm_90a kernel: one or two warpgroups of 64 rows on wgmma (warps_m = block_m / 16,
  // warps_n = 1, block_k = 64); otherwise the mma.sync kernel that runs on sm_80 and newer.
  bool wgmma = false;
  // With wgmma: the warp-specialized persistent kernel (forward_sm90_tma.cuh), whose extra loading
  // warpgroup brings the weight and LoRA tiles by TMA; all stages hold data in flight (2 to 8).
  bool tma = false;
  // With tma: CTAs per cluster along the rows (1 or 2). Two CTAs take the halves of a 2 * block_m
  // row tile and multicast the weight tile they share, each loading half of it.
  int cluster_m = 1;
  // nf4 and int8 weights on sm_90a: the register-operand kernel (forward_sm90_rs.cuh; tma and wgmma
  // set too). Its tile is block_m grouped rows by block_n features, one accumulating warpgroup per
  // 64 features (warps_m = block_n / 16), with a prologue kernel for x * A^T.
  bool rs = false;

  int threads() const { return (tma ? 128 : 0) + 32 * warps_m * warps_n; }
  // "m128n128k32_w2x2_s3" ("..._wg" for wgmma, "..._tma" for TMA, "..._tma_c2" for TMA in
  // clusters of two, "..._rs" for the register-operand kernel): stable, human-readable, used in
  // listings and cache values.
  std::string name() const;
  // Throws InvalidArgument when the config cannot be instantiated (e.g. warp tile not a multiple
  // of the mma shape).
  void validate() const;
  bool operator==(const TileConfig&) const = default;
};

// The config named `name` (TileConfig::name()); throws InvalidArgument naming it when it is not
// such a name or the config does not validate.
TileConfig parse_tile_config(const std::string& name);

void to_json(nlohmann::json& j, const TileConfig& c);
void from_json(const nlohmann::json& j, TileConfig& c);

}  // namespace moejit
