#pragma once
// LoRA factor gradients, one expert per CTA row of the grid, deterministically (SPEC.md "Ops"):
//   out_e[j, d] = s * sum over grouped rows i of expert e of u[i, j] * v[row(i), d]
// dA_e = s (dY_e B_e)^T X_e is u = dy*B (saved by backward_dx), v = x, D = K, A's layout.
// dB_e^T = s (X_e A_e^T)^T dY_e is u = x*A^T, v = dy, D = N, written transposed into B's storage.
// Each CTA owns an r x BLOCK_N slice of one expert's output and walks all of that expert's rows in
// order, so no atomics are needed and results are bitwise reproducible; an expert with no rows
// writes zeros. v and u both come by cp.async; u (fp32) reaches the tensor cores as its act-dtype
// rounding plus that of the rest, split where each warp builds its fragments.
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
  static constexpr bool kBf16 = DTypeTraits<Act>::kIsBf16;
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile must be a multiple of 16x16");
  static_assert(BK % 16 == 0, "rows per step must be a multiple of 16");
  static_assert(D % 8 == 0, "D must be a multiple of 8 (16-byte rows)");

  using VTile = SwizzledTile<BK, BN * 2 / 16>;  // [row][d]
  // u stays fp32 in the stage, BK rows of RP + 4 floats: the 4 put a fragment's rows 2tq of the
  // four lane quads on distinct banks. The tensor cores take it as a high and a low part in the
  // act dtype (two products keep ~16 bits of it), split when the fragments are built.
  static constexpr int kUStride = RP + 4;
  static constexpr int kStageBytes = VTile::kBytes + BK * kUStride * 4;
  static constexpr int kSmemBytes = STAGES * kStageBytes;
  static_assert(kSmemBytes == Cfg::kSmemBytes,
                "host and device disagree on the shared-memory layout (see compiler/source.cpp)");

  // Issues the copies of rows [r0, r0 + BK) of this expert into one stage: v gathered, u's fp32
  // rows by cp.async too (plain loads of them stalled the CTA for a round trip every stage),
  // 16 bytes at a time where R is a multiple of 4 and u aligned, else 4. Rows past the expert
  // and ranks past R become zeros.
  __device__ static void load_stage(const LoraGradParams& p, char* stage, long long r0,
                                    long long end, int d0) {
    const char* v = static_cast<const char*>(p.v);
    constexpr int VC = BN / 8;
    for (int c = threadIdx.x; c < BK * VC; c += kThreads) {
      const int row = c / VC, ch = c % VC, d = d0 + ch * 8;
      const long long i = r0 + row;
      bool valid = i < end && d < D;
      long long src = 0;
      if (valid) {
        const long long slot = load_index<Index>(p.scattered_idxs, i);
        src = Cfg::kVGrouped ? i : slot / Cfg::kGatherDiv;
      }
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

  // The m16n8k16 A fragment of u^T (m = rank j0 + g, + 8; k = rows k0 + 2tq, + 1, + 8, + 9) from
  // the fp32 stage, split into its act-dtype rounding and the rounding of the rest.
  __device__ static void u_fragments(const float* us, int j0, int k0, int lane, unsigned (&hi)[4],
                                     unsigned (&lo)[4]) {
    const int g = lane >> 2, tq = lane & 3;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int j = j0 + g + (i & 1) * 8, k = k0 + 2 * tq + (i >> 1) * 8;
      const float u0 = us[k * kUStride + j], u1 = us[(k + 1) * kUStride + j];
      hi[i] = pack2<Act>(u0, u1);
      lo[i] = pack2<Act>(u0 - to_float(from_float<Act>(u0)), u1 - to_float(from_float<Act>(u1)));
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
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < steps) load_stage(p, smem + s * kStageBytes, begin + s * BK, end, d0);
      cp_async_commit();
    }
    for (int step = 0; step < steps; ++step) {
      cp_async_wait<STAGES - 2>();
      __syncthreads();
      const int next = step + STAGES - 1;
      if (next < steps)
        load_stage(p, smem + (next % STAGES) * kStageBytes, begin + next * BK, end, d0);
      cp_async_commit();
      const char* vs = smem + (step % STAGES) * kStageBytes;
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        unsigned af[MF][4], af_lo[MF][4];
#pragma unroll
        for (int mi = 0; mi < MF; ++mi)
          u_fragments(reinterpret_cast<const float*>(vs + VTile::kBytes), warp_m * WM + mi * 16,
                      kk * 16, lane, af[mi], af_lo[mi]);
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
__global__ void __launch_bounds__(LoraGradKernel<Cfg>::kThreads)
    moe_lora_grad(const LoraGradParams params) {
  LoraGradKernel<Cfg>::run(params);
}

}  // namespace moejit
