#pragma once
// LoRA factor gradients, one expert per CTA row of the grid, deterministically (SPEC.md "Ops"):
//   out_e[j, d] = s * sum over grouped rows i of expert e of u[i, j] * v[row(i), d]
// dA_e = s (dY_e B_e)^T X_e is u = dy*B (saved by backward_dx), v = x, D = K, A's layout.
// dB_e^T = s (X_e A_e^T)^T dY_e is u = x*A^T, v = dy, D = N, written transposed into B's storage.
// Each CTA owns an r x BLOCK_N slice of one expert's output and walks all of that expert's rows,
// its warps taking fixed 16-row slices of each stage and meeting once at the end in a fixed order,
// so no atomics are needed and results are bitwise reproducible; an expert with no rows writes
// zeros. v and u both come by cp.async; u (fp32) reaches the tensor cores as its act-dtype
// rounding plus that of the rest, split where each warp builds its fragments.
#include "moejit/forward.cuh"

namespace moejit {

template <class Cfg>
struct LoraGradKernel {
  using Act = typename Cfg::Act;
  using Out = typename Cfg::Out;
  using Index = typename Cfg::Index;
  static constexpr int E = Cfg::kExperts, R = Cfg::kRank, D = Cfg::kD;
  static constexpr int BN = Cfg::kBlockN, BK = Cfg::kBlockK, STAGES = Cfg::kStages;
  // The warps split the ranks (WARPS_M) and the stage's rows (WARPS_K, the config's warps_n):
  // each warp owns whole 16-row slices of every stage and all BN columns, so each u value is
  // converted once per CTA, and the WARPS_K partial sums meet once, at the end.
  static constexpr int WARPS_M = Cfg::kWarpsM, WARPS_K = Cfg::kWarpsN;
  static constexpr int RP = (R + 16 * WARPS_M - 1) / (16 * WARPS_M) * (16 * WARPS_M);
  static constexpr int kThreads = 32 * WARPS_M * WARPS_K;
  static constexpr int WM = RP / WARPS_M;
  static constexpr int MF = WM / 16, NF = BN / 8;
  static constexpr int kSlicesPerWarp = BK / 16 / WARPS_K;  // 16-row slices per warp and stage
  static constexpr bool kBf16 = DTypeTraits<Act>::kIsBf16;
  static_assert(WM % 16 == 0 && BN % 16 == 0, "warp tile must be a multiple of 16x16");
  static_assert(BK % (16 * WARPS_K) == 0, "each warp takes whole 16-row slices of a stage");
  static_assert(D % 8 == 0, "D must be a multiple of 8 (16-byte rows)");

  using VTile = SwizzledTile<BK, BN * 2 / 16>;  // [row][d]
  // v: a thread copies chunk column t % VC of rows t / VC + m * (kThreads / VC), the same in every
  // stage, so its addresses are set up once; a warp's copy reads whole row pieces.
  static constexpr int VC = BN / 8;
  static_assert(kThreads % VC == 0, "a CTA covers whole rows of the v tile");
  static constexpr int kRowsPerPass = kThreads / VC;
  static constexpr int kVRows = (BK + kRowsPerPass - 1) / kRowsPerPass;  // the last may be partial
  static constexpr bool kWholePasses = BK % kRowsPerPass == 0;
  // u stays fp32 in the stage, BK rows of RP + 4 floats: the 4 put a fragment's rows 2tq of the
  // four lane quads on distinct banks. The tensor cores take it as a high and a low part in the
  // act dtype (two products keep ~16 bits of it), split when the fragments are built.
  static constexpr int kUStride = RP + 4;
  static constexpr int kStageBytes = VTile::kBytes + BK * kUStride * 4;
  // After the last stage the same memory holds the partial sums of WARPS_K > 1 row-splitting
  // warps, RP x (BN + 4) fp32 each.
  static constexpr int kSumStride = BN + 4;
  static constexpr int kSumPlaneBytes = RP * kSumStride * 4;
  static constexpr int kSumBytes = WARPS_K == 1 ? 0 : kSumPlaneBytes * WARPS_K;
  static constexpr int kPipelineBytes = kStageBytes * STAGES;
  static constexpr int kSmemBytes = kPipelineBytes > kSumBytes ? kPipelineBytes : kSumBytes;
  static_assert(kSmemBytes == Cfg::kSmemBytes,
                "host and device disagree on the shared-memory layout (see compiler/source.cpp)");

  // The v row of grouped row i (which must lie in the expert).
  __device__ static long long source_row(const LoraGradParams& p, long long i) {
    if constexpr (Cfg::kVGrouped)
      return i;
    else
      return load_index<Index>(p.scattered_idxs, i) / Cfg::kGatherDiv;
  }

  // Issues the copies of rows [r0, r0 + BK) of this expert into one stage: v from the rows `src`
  // (this thread's rows; -1 past the expert), u's fp32 rows 16 bytes at a time where R is a
  // multiple of 4 and u aligned, else 4. Rows past the expert and ranks past R become zeros.
  __device__ static void load_stage(const LoraGradParams& p, char* stage, long long r0,
                                    long long end, const long long (&src)[kVRows], long long col) {
    const char* v = static_cast<const char*>(p.v);
    const int ch = threadIdx.x % VC, row0 = threadIdx.x / VC;
#pragma unroll
    for (int m = 0; m < kVRows; ++m) {
      const int row = row0 + m * kRowsPerPass;
      if (!kWholePasses && row >= BK) break;
      const bool valid = src[m] >= 0 && col < D;
      cp_async_16(stage + VTile::chunk_offset(row, ch) * 16, valid ? v + (src[m] * D + col) * 2 : v,
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

  // This thread's v rows of the stage starting at grouped row r0 (-1 past the expert). Gathered
  // rows cost an index load each: issued a stage ahead of the copies that need them.
  __device__ static void stage_rows(const LoraGradParams& p, long long r0, long long end,
                                    long long (&src)[kVRows]) {
    const int row0 = threadIdx.x / VC;
#pragma unroll
    for (int m = 0; m < kVRows; ++m) {
      const int row = row0 + m * kRowsPerPass;
      const long long i = r0 + row;
      src[m] = (kWholePasses || row < BK) && i < end ? source_row(p, i) : -1;
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
      const float h0 = to_float(Act{static_cast<unsigned short>(hi[i] & 0xffffu)});
      const float h1 = to_float(Act{static_cast<unsigned short>(hi[i] >> 16)});
      lo[i] = pack2<Act>(u0 - h0, u1 - h1);
    }
  }

  __device__ static void run(const LoraGradParams& p) {
    extern __shared__ __align__(128) char smem[];
    const int expert = blockIdx.y, d0 = blockIdx.x * BN;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int warp_m = warp / WARPS_K, warp_k = warp % WARPS_K;
    long long begin = expert == 0 ? 0 : load_index<Index>(p.expert_offsets, expert - 1);
    long long end = load_index<Index>(p.expert_offsets, expert);
    if (end > p.rows) end = p.rows;
    if (begin > end) begin = end;
    const int steps = static_cast<int>((end - begin + BK - 1) / BK);
    const long long col = d0 + threadIdx.x % VC * 8;

    float acc[MF][NF][4] = {};
    long long src[kVRows];
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < steps) {
        stage_rows(p, begin + s * BK, end, src);
        load_stage(p, smem + s * kStageBytes, begin + s * BK, end, src, col);
      }
      cp_async_commit();
    }
    if (STAGES - 1 < steps) stage_rows(p, begin + (STAGES - 1) * BK, end, src);
    for (int step = 0; step < steps; ++step) {
      cp_async_wait<STAGES - 2>();
      __syncthreads();
      const int next = step + STAGES - 1;
      if (next < steps) {
        load_stage(p, smem + (next % STAGES) * kStageBytes, begin + next * BK, end, src, col);
        // The rows of the stage after it: their index loads run under this step's products.
        if (next + 1 < steps) stage_rows(p, begin + (next + 1) * BK, end, src);
      }
      cp_async_commit();
      const char* vs = smem + (step % STAGES) * kStageBytes;
      const float* us = reinterpret_cast<const float*>(vs + VTile::kBytes);
#pragma unroll
      for (int q = 0; q < kSlicesPerWarp; ++q) {
        const int k0 = (q * WARPS_K + warp_k) * 16;
        unsigned af[MF][4], af_lo[MF][4];
#pragma unroll
        for (int mi = 0; mi < MF; ++mi)
          u_fragments(us, warp_m * WM + mi * 16, k0, lane, af[mi], af_lo[mi]);
#pragma unroll
        for (int nj = 0; nj < NF / 2; ++nj) {
          unsigned bf[4];
          const int row = k0 + ((lane >> 3) & 1) * 8 + (lane & 7);
          ldmatrix_x4_trans(bf, vs + VTile::chunk_offset(row, nj * 2 + (lane >> 4)) * 16);
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
    // Calls f(j, d, sum) for each of this warp's sums: rank j, column col0 + d of the tile's d.
    auto for_each_sum = [&](int col0, auto&& f) {
      const int g = lane >> 2, tq = lane & 3;
#pragma unroll
      for (int mi = 0; mi < MF; ++mi)
#pragma unroll
        for (int ni = 0; ni < NF; ++ni)
#pragma unroll
          for (int v = 0; v < 4; ++v)
            f(warp_m * WM + mi * 16 + g + (v >> 1) * 8, col0 + ni * 8 + 2 * tq + (v & 1),
              acc[mi][ni][v]);
    };
    if constexpr (WARPS_K == 1) {  // one warp holds each sum whole
      for_each_sum(d0, [&](int j, int d, float sum) {
        if (j < R && d < D)
          out[lora_b_index<Cfg::kOutStorage, E, D, R>(expert, d, j)] =
              from_float<Out>(p.scale * sum);
      });
      return;
    }
    // The WARPS_K partial sums, added in warp order (bitwise reproducible), then scaled. The
    // stages are free once every warp is past its last products.
    __syncthreads();
    float* sums = reinterpret_cast<float*>(smem);
    for_each_sum(0,
                 [&](int j, int d, float sum) { sums[(warp_k * RP + j) * kSumStride + d] = sum; });
    __syncthreads();
    // Consecutive threads write consecutive elements of the output's storage where they can.
    constexpr bool kRankFastest =
        Cfg::kOutStorage == kBStorageExpertMajor || Cfg::kOutStorage == kBStorageStacked;
    for (int c = threadIdx.x; c < R * BN; c += kThreads) {
      const int j = kRankFastest ? c % R : c / BN, d = kRankFastest ? c / R : c % BN;
      if (d0 + d >= D) continue;
      float total = sums[j * kSumStride + d];
#pragma unroll
      for (int w = 1; w < WARPS_K; ++w) total += sums[(w * RP + j) * kSumStride + d];
      out[lora_b_index<Cfg::kOutStorage, E, D, R>(expert, d0 + d, j)] =
          from_float<Out>(p.scale * total);
    }
  }
};

template <class Cfg>
__global__ void __launch_bounds__(LoraGradKernel<Cfg>::kThreads)
    moe_lora_grad(const LoraGradParams params) {
  LoraGradKernel<Cfg>::run(params);
}

}  // namespace moejit
