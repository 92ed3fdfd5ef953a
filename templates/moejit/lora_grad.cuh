#pragma once
// LoRA factor gradients, one expert per CTA row of the grid, deterministically (SPEC.md "Ops"):
//   out_e[j, d] = s * sum over grouped rows i of expert e of u[i, j] * v[row(i), d]
// dA_e = s (dY_e B_e)^T X_e is u = dy*B (saved by backward_dx), v = x, D = K, A's layout.
// dB_e^T = s (X_e A_e^T)^T dY_e is u = x*A^T, v = dy, D = N, written transposed into B's storage.
// Each CTA owns an r x BLOCK_N slice of one expert's output and walks all of that expert's rows in
// order, so no atomics are needed and results are bitwise reproducible; an expert with no rows
// writes zeros. Everything a stage needs (v rows, u rows, the next stages' row indices) comes by
// cp.async; u (fp32) reaches the tensor cores as its act-dtype rounding plus that of the rest.
#include "moejit/forward.cuh"

namespace moejit {

template <class Cfg>
struct LoraGradKernel {
  using Act = typename Cfg::Act;
  using Out = typename Cfg::Out;
  using Index = typename Cfg::Index;
  static constexpr int E = Cfg::kExperts, R = Cfg::kRank, D = Cfg::kD;
  static constexpr int RP = (R + 15) / 16 * 16;
  static constexpr int BN = Cfg::kBlockN, BK = Cfg::kBlockK, STAGES = Cfg::kStages;
  static constexpr int WARPS_M = Cfg::kWarpsM, WARPS_N = Cfg::kWarpsN;
  static constexpr int kThreads = 32 * WARPS_M * WARPS_N;
  static constexpr int WM = RP / WARPS_M, WN = BN / WARPS_N;
  static constexpr int MF = WM / 16, NF = WN / 8;
  // Ranks up to 16 with small warp tiles (16 accumulators) get at most 64 registers a thread, so
  // that registers do not hold an SM to fewer CTAs than its shared memory does: this
  // memory-bound kernel wants copies in flight from many CTAs. Larger ones would spill there.
  static constexpr int kMinBlocks = RP == 16 && MF * NF * 4 <= 16 ? 1024 / kThreads : 1;
  static constexpr bool kBf16 = DTypeTraits<Act>::kIsBf16;
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile must be a multiple of 16x16");
  static_assert(BK % 16 == 0, "rows per step must be a multiple of 16");
  static_assert(D % 8 == 0, "D must be a multiple of 8 (16-byte rows)");

  using VTile = SwizzledTile<BK, BN * 2 / 16>;  // [row][d]
  // u arrives fp32, BK rows of RP + 4 floats (the 4 keep the splitting reads off each other's
  // banks); the tensor cores take it as a high and a low part in the act dtype (two products
  // keep ~16 bits of it), split once per stage by the whole CTA into two tiles of their own.
  using UTile = SwizzledTile<BK, RP * 2 / 16>;  // [row][j]
  static constexpr int kUStride = RP + 4;
  static constexpr int kU32Bytes = BK * kUStride * 4;
  static constexpr int kStageBytes = VTile::kBytes + kU32Bytes + 2 * UTile::kBytes;
  // Gathered v: the stages' source indices come by cp.async too, into a ring of 2 * STAGES
  // stages' worth after the stages, 2 (STAGES - 1) stages before their v copies are issued; a
  // plain load of them stalled every stage for a round trip (Nsight Compute: long-scoreboard
  // stalls first, DRAM under half busy).
  static constexpr int kIndexRing = 2 * STAGES;
  static constexpr int kIndexOffset = STAGES * kStageBytes;
  static constexpr int kSmemBytes =
      kIndexOffset + kIndexRing * BK * static_cast<int>(sizeof(Index));
  static_assert(kSmemBytes == Cfg::kSmemBytes,
                "host and device disagree on the shared-memory layout (see compiler/source.cpp)");

  // v rows of a stage: kThreadsPerRow threads copy each row's VC 16-byte chunks, so a thread
  // looks up one row index per stage (16 threads each loading every row's index made the index
  // loads a fifth of the kernel's memory instructions).
  static constexpr int VC = BN / 8;
  static constexpr int kThreadsPerRow = kThreads / BK;
  static_assert(kThreads % BK == 0 && VC % kThreadsPerRow == 0,
                "whole rows of v chunks per thread group");

  // Issues the copies of stage `stage`'s source indices into the ring (gathered v only).
  __device__ static void copy_indices(const LoraGradParams& p, char* smem, int stage,
                                      long long begin, long long end) {
    if (Cfg::kVGrouped || threadIdx.x >= BK) return;
    const long long i = begin + static_cast<long long>(stage) * BK + threadIdx.x;
    Index* slot =
        reinterpret_cast<Index*>(smem + kIndexOffset) + stage % kIndexRing * BK + threadIdx.x;
    const Index* from = static_cast<const Index*>(p.scattered_idxs) + (i < end ? i : 0);
    if constexpr (sizeof(Index) == 8)
      cp_async_8(slot, from, i < end);
    else
      cp_async_4(slot, from, i < end);
  }

  // This thread's v row of stage `stage` (an x or dy row), -1 past the expert: the grouped row,
  // or its source by the index in the ring (`from_ring`) or in global memory.
  __device__ static long long v_source(const LoraGradParams& p, const char* smem, int stage,
                                       long long begin, long long end, bool from_ring) {
    const int row = threadIdx.x / kThreadsPerRow;
    const long long i = begin + static_cast<long long>(stage) * BK + row;
    if (i >= end) return -1;
    if constexpr (Cfg::kVGrouped) return i;
    const long long slot = from_ring ? static_cast<long long>(reinterpret_cast<const Index*>(
                                           smem + kIndexOffset)[stage % kIndexRing * BK + row])
                                     : load_index<Index>(p.scattered_idxs, i);
    return slot / Cfg::kGatherDiv;
  }

  // Issues the copies of rows [r0, r0 + BK) of this expert into one stage: this thread's chunks
  // of v row `src`, and u's fp32 rows by cp.async too (plain loads of them stalled the CTA for a
  // round trip every stage), 16 bytes at a time where R is a multiple of 4 and u aligned, else
  // 4. Rows past the expert and ranks past R become zeros.
  __device__ static void load_stage(const LoraGradParams& p, char* stage, long long src,
                                    long long r0, long long end, int d0) {
    const char* v = static_cast<const char*>(p.v);
    const int row = threadIdx.x / kThreadsPerRow, part = threadIdx.x % kThreadsPerRow;
#pragma unroll
    for (int i = 0; i < VC / kThreadsPerRow; ++i) {
      const int ch = part + i * kThreadsPerRow, d = d0 + ch * 8;
      const bool valid = src >= 0 && d < D;
      cp_async_16(stage + VTile::chunk_offset(row, ch) * 16, valid ? v + (src * D + d) * 2 : v,
                  valid);
    }
    float* us = reinterpret_cast<float*>(stage + VTile::kBytes);
    if (R % 4 == 0 && (reinterpret_cast<unsigned long long>(p.u) & 15) == 0) {
      constexpr int UC = RP / 4;
      for (int c = threadIdx.x; c < BK * UC; c += kThreads) {
        const int row = c / UC, j = c % UC * 4;
        const long long i = r0 + row;
        const bool valid = i < end && j < R;
        cp_async_16(us + row * kUStride + j, valid ? p.u + i * R + j : p.u, valid);
      }
    } else {
      for (int c = threadIdx.x; c < BK * RP; c += kThreads) {
        const int row = c / RP, j = c % RP;
        const long long i = r0 + row;
        const bool valid = i < end && j < R;
        cp_async_4(us + row * kUStride + j, valid ? p.u + i * R + j : p.u, valid);
      }
    }
  }

  // The stage's u rows into their high and low parts (rounded to the act dtype, then the rest).
  __device__ static void split_u(char* stage) {
    const float* u32 = reinterpret_cast<const float*>(stage + VTile::kBytes);
    char* hi = stage + VTile::kBytes + kU32Bytes;
    char* lo = hi + UTile::kBytes;
    for (int idx = threadIdx.x; idx < BK * (RP / 2); idx += kThreads) {
      const int row = idx / (RP / 2), j = idx % (RP / 2) * 2;
      const float2 u = *reinterpret_cast<const float2*>(u32 + row * kUStride + j);
      const float h0 = to_float(from_float<Act>(u.x)), h1 = to_float(from_float<Act>(u.y));
      *reinterpret_cast<unsigned*>(hi + UTile::byte_offset(row, j, 2)) = pack2<Act>(u.x, u.y);
      *reinterpret_cast<unsigned*>(lo + UTile::byte_offset(row, j, 2)) =
          pack2<Act>(u.x - h0, u.y - h1);
    }
  }

  __device__ static void run(const LoraGradParams& p) {
    extern __shared__ __align__(128) char smem[];
    const int expert = blockIdx.y, d0 = blockIdx.x * BN;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
    long long begin = expert == 0 ? 0 : load_index<Index>(p.expert_offsets, expert - 1);
    long long end = load_index<Index>(p.expert_offsets, expert);
    if (end > p.rows) end = p.rows;
    if (begin > end) begin = end;
    const int steps = static_cast<int>((end - begin + BK - 1) / BK);

    float acc[MF][NF][4] = {};
    // The first stages' indices by plain loads (one round trip, all in flight together); the
    // indices of the stages that the first STAGES - 1 iterations load ride in the first group.
    long long first_src[STAGES - 1];
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) first_src[s] = v_source(p, smem, s, begin, end, false);
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < steps) load_stage(p, smem + s * kStageBytes, first_src[s], begin + s * BK, end, d0);
      if (s == 0)
        for (int t = STAGES - 1; t < 2 * STAGES - 2 && t < steps; ++t)
          copy_indices(p, smem, t, begin, end);
      cp_async_commit();
    }
    for (int step = 0; step < steps; ++step) {
      // Completes the group of iteration step - STAGES + 1 (or the first): with it this stage's
      // copies and the indices of stage `next`.
      cp_async_wait<STAGES - 2>();
      __syncthreads();
      const int next = step + STAGES - 1;
      if (next < steps)
        load_stage(p, smem + (next % STAGES) * kStageBytes,
                   v_source(p, smem, next, begin, end, true), begin + next * BK, end, d0);
      if (next + STAGES - 1 < steps) copy_indices(p, smem, next + STAGES - 1, begin, end);
      cp_async_commit();
      char* vs = smem + (step % STAGES) * kStageBytes;
      split_u(vs);
      __syncthreads();
      const char* us = vs + VTile::kBytes + kU32Bytes;
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        unsigned af[MF][4], af_lo[MF][4];
#pragma unroll
        for (int mi = 0; mi < MF; ++mi) {
          // A = u^T: stored [row = k][j = m], so the transposing ldmatrix yields row-major A.
          const int q = lane >> 3;
          const int row = kk * 16 + (q >> 1) * 8 + (lane & 7);
          const int ch = (warp_m * WM + mi * 16 + (q & 1) * 8) / 8;
          ldmatrix_x4_trans(af[mi], us + UTile::chunk_offset(row, ch) * 16);
          ldmatrix_x4_trans(af_lo[mi], us + UTile::kBytes + UTile::chunk_offset(row, ch) * 16);
        }
#pragma unroll
        for (int nj = 0; nj < NF / 2; ++nj) {
          unsigned bf[4];
          const int row = kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
          const int ch = (warp_n * WN + nj * 16) / 8 + (lane >> 4);
          ldmatrix_x4_trans(bf, vs + VTile::chunk_offset(row, ch) * 16);
          const unsigned b0[2] = {bf[0], bf[1]}, b1[2] = {bf[2], bf[3]};
#pragma unroll
          for (int mi = 0; mi < MF; ++mi) {
            mma_16816<kBf16>(acc[mi][2 * nj], af[mi], b0);
            mma_16816<kBf16>(acc[mi][2 * nj + 1], af[mi], b1);
            mma_16816<kBf16>(acc[mi][2 * nj], af_lo[mi], b0);
            mma_16816<kBf16>(acc[mi][2 * nj + 1], af_lo[mi], b1);
          }
        }
      }
    }
    cp_async_wait<0>();

    Out* out = static_cast<Out*>(p.out);
    const int g = lane >> 2, tq = lane & 3;
#pragma unroll
    for (int mi = 0; mi < MF; ++mi)
#pragma unroll
      for (int ni = 0; ni < NF; ++ni)
#pragma unroll
        for (int v = 0; v < 4; ++v) {
          const int j = warp_m * WM + mi * 16 + g + (v >> 1) * 8;
          const int d = d0 + warp_n * WN + ni * 8 + 2 * tq + (v & 1);
          if (j < R && d < D)
            out[lora_b_index<Cfg::kOutStorage, E, D, R>(expert, d, j)] =
                from_float<Out>(p.scale * acc[mi][ni][v]);
        }
  }
};

template <class Cfg>
__global__ void __launch_bounds__(LoraGradKernel<Cfg>::kThreads, LoraGradKernel<Cfg>::kMinBlocks)
    moe_lora_grad(const LoraGradParams params) {
  LoraGradKernel<Cfg>::run(params);
}

}  // namespace moejit
