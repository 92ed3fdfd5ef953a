#pragma once
// Picks the fastest tile config for one projection: enumerate candidates, compile them in parallel,
// prune by shared memory and ptxas spills before anything runs, then time the survivors with CUDA
// events on the real problem size with fresh random buffers.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "autotune/cuda_driver.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "compiler/problem.hpp"
#include "compiler/tile_config.hpp"

namespace moejit {

// The candidate space for `spec` on `arch` (every config here instantiates; some may still be
// pruned). On sm_90a with 16-bit weights: the TMA tiles, the wgmma tiles where no 128-row TMA tile
// fits, and reference_config; elsewhere the mma.sync tiles, plus the wgmma ones on sm_90a.
std::vector<TileConfig> candidate_configs(const ProjectionSpec& spec,
                                          const std::string& arch = "sm_80");
// The warp-specialized TMA kernel's configs for `spec` on `arch` (empty where it cannot serve):
// block_m 128 or 64, block_n 256 or 128, 3 to 6 stages within Hopper's shared memory; none yet for
// quantized weights (see tuner.cpp). Part of candidate_configs on sm_90a.
// The register-operand kernel's tiles for an nf4 spec on sm_90a that fit the untuned shared-memory
// limit (empty when it cannot serve spec), the default first.
std::vector<TileConfig> rs_candidates(const ProjectionSpec& spec, const std::string& arch);

std::vector<TileConfig> tma_candidates(const ProjectionSpec& spec, const std::string& arch);
// The config used without tuning on `arch`: the measured best where one is known (the TMA kernel
// on Hopper with 16-bit weights), else reference_config.
TileConfig default_config(const ProjectionSpec& spec, const std::string& arch = "sm_80");
// The config the tuner checks every would-be winner's result against: the longest-verified kernel
// for the spec (mma.sync, or on Hopper the cp.async-fed wgmma tile), never the TMA kernel, so
// that a TMA candidate is compared with an independent implementation.
TileConfig reference_config(const ProjectionSpec& spec, const std::string& arch = "sm_80");
// False for the small helper ops (pack_b, reduce_slots), which run their one fixed config.
bool is_tuned_op(OpKind op);
// True when the sm90 wgmma kernel can serve `spec` on `arch`.
bool wgmma_supported(const ProjectionSpec& spec, const std::string& arch);

struct CompiledCandidate {
  TileConfig config;
  CompiledKernel kernel;
  int dynamic_smem = 0;
  std::string pruned;  // empty when kept; otherwise why it was dropped before timing
  // Filled in by tune(): the median of its one-by-one launches, or for a playoff finalist of
  // its interleaved rounds.
  double time_ms = -1;
};

// Compiles `configs` for `arch` on up to `threads` threads (0: all cores) and marks the pruned
// ones: static + dynamic shared memory above `smem_limit` bytes (0: no limit), or any spill.
// Compile errors propagate as CompileError carrying `key`.
std::vector<CompiledCandidate> compile_candidates(const ProjectionSpec& spec,
                                                  const std::vector<TileConfig>& configs,
                                                  const std::string& arch, int smem_limit,
                                                  const std::string& key, int threads = 0);

struct TuneResult {
  CompiledCandidate best;
  std::vector<CompiledCandidate> candidates;  // all, with times for the timed ones
  int compiled = 0, pruned = 0, timed = 0;
  int cannot_win = 0;  // not timed: their time floor (autotune/time_floor.hpp) was above the best
  int mismatched = 0;  // would have won but dropped: their result differed from the reference's
  // The reference config, when it was not a candidate: compiled to check the winner against.
  std::optional<CompiledCandidate> reference;
  double compile_seconds = 0, timing_seconds = 0;
};

// The candidates timed again before the tuner picks one: the winner of the one-by-one timing
// first, then the fastest others not pruned whose time is within kPlayoffMargin of its, at most
// kPlayoffFinalists in all. The configs timed first, right after the compiles, run on a GPU still
// clocking up (measured on an H100: up to 9% slower than the same config a moment later), so
// close candidates of the GEMM ops (forward, dX) are timed again in interleaved rounds. `winner` is
// one of `candidates`.
inline constexpr double kPlayoffMargin = 1.10;
inline constexpr std::size_t kPlayoffFinalists = 4;
std::vector<CompiledCandidate*> playoff_finalists(std::vector<CompiledCandidate>& candidates,
                                                  const CompiledCandidate& winner);

// Compiles, prunes and times the candidate space of spec.op (a tuned op) on the current device for
// `tokens` tokens. `precompiled`, when not empty, is what compile_candidates returned for that
// space (the caller compiled several ops' candidates at once); then nothing is compiled here.
// Throws Error when every candidate is pruned.
TuneResult tune(const ProjectionSpec& spec, std::int64_t tokens, const cuda::DeviceInfo& device,
                const std::string& key, std::vector<CompiledCandidate> precompiled = {});

}  // namespace moejit
