#pragma once
// The forward sweep's cases: a fixed-seed random sample over every axis of SPEC.md (shapes that
// are multiples of 8 but of no tile, ranks, experts, top-k, tokens, layouts, B storages, dtypes,
// groupings, bias, index widths, routings and tile configs), and targeted edge cases.
#include <cstdint>
#include <vector>

#include "tests/support/forward_case.hpp"

namespace moejit::test {

// Shared memory every mma.sync case fits in: the opt-in limit of an A100 (163 KB), which H100 and
// H200 exceed, so the sample does not depend on the device it runs on.
inline constexpr int kSweepSmemBudget = 163 * 1024;
// The wgmma kernel runs on sm_90a only, whose parts all allow 227 KB.
inline constexpr int kWgmmaSmemBudget = 227 * 1024;

enum class KernelFamily {
  mma_sync,  // forward.cuh, every arch from sm_80
  wgmma,     // forward_sm90.cuh: sm_90a, out_in weights, lora dtype == act dtype
  tma,       // forward_sm90_tma.cuh: sm_90a, both layouts, lora dtype == act dtype
};

// An mma.sync kernel config, by field name so that new TileConfig fields keep their defaults.
TileConfig mma_sync_config(int block_m, int block_n, int block_k, int warps_m, int warps_n,
                           int stages);

// `count` cases drawn with a generator seeded by `seed`; each case gets its own input seed.
std::vector<ForwardCase> sampled_cases(std::uint64_t seed, int count,
                                       KernelFamily family = KernelFamily::mma_sync);

// Experts with zero rows, all rows on one expert, a single token, the extreme shapes and ranks.
std::vector<ForwardCase> targeted_cases();

}  // namespace moejit::test
