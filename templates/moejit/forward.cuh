#pragma once
// Fused MoE-LoRA GEMM (SPEC.md "Ops"): for grouped row i of expert e,
//   y = x * Wd_e + s * ((x * A_e^T) * B_e^T) + bias_e
// The backward's dx = dy * Wd_e^T + s * (dy * B_e) * A_e is the same computation with K and N
// swapped, the weight layout flipped, B_e^T packed as "A" and A_e^T read as "B" (see
// compiler/kernel_view.hpp); x * A^T can be saved for the LoRA gradients.
// One CTA computes a BLOCK_M x BLOCK_N output tile of one expert. Its K loop multiplies the
// gathered input rows by the weight tile and, in the same pass, by the rank-r LoRA A tile (as if
// the weight tile had r more columns), so x is read once for both products. The epilogue rounds
// s * (x * A^T) to the act dtype, multiplies it by B^T on the tensor cores into the same
// accumulators, adds the bias and scatters the rows to their output positions.
// Tensor cores: mma.sync m16n8k16 with fp32 accumulation, fed by a cp.async multistage pipeline
// (sm_80 and newer).
#include "moejit/params.h"
#include "moejit/quant_weights.cuh"
#include "moejit/tile.cuh"

namespace moejit {

// B storages of SPEC.md "LoRA factors".
inline constexpr int kBStoragePeft = 0;         // [N, r*E], B_e[o, j] = B[o*r*E + j*E + e]
inline constexpr int kBStorageExpertMajor = 1;  // [N, E*r], B_e[o, j] = B[o*E*r + e*r + j]
inline constexpr int kBStorageStacked = 2;      // [E, N, r], B_e[o, j] = B[(e*N + o)*r + j]
inline constexpr int kBStorageRowMajorT =
    3;  // [E*r, N], B_e[o, j] = B[(e*r + j)*N + o] (A's layout)

template <int kStorage, int E, int N, int R>
__device__ __forceinline__ long long lora_b_index(int e, int o, int j) {
  if constexpr (kStorage == kBStoragePeft) {
    return (static_cast<long long>(o) * R + j) * E + e;
  } else if constexpr (kStorage == kBStorageExpertMajor) {
    return (static_cast<long long>(o) * E + e) * R + j;
  } else if constexpr (kStorage == kBStorageStacked) {
    return (static_cast<long long>(e) * N + o) * R + j;
  } else {
    static_assert(kStorage == kBStorageRowMajorT, "unknown B storage");
    return (static_cast<long long>(e) * R + j) * N + o;
  }
}

// The output tile one CTA computes: one expert's row range and a column offset.
struct OutputTile {
  int expert;  // -1 when the CTA has no tile (the grid is an upper bound)
  int n0;
  long long row_begin;
  int rows;  // valid rows in this tile, 1..BLOCK_M
};

// Finds the CTA's output tile from its linear index (grouped raster over row and column tiles):
// warp 0 walks the experts' row ranges, and the result is shared through `shared`.
template <class Cfg, int BM, int BN>
__device__ __forceinline__ OutputTile locate_tile(const ForwardParams& p, OutputTile& shared) {
  constexpr int kNTiles = (Cfg::kN + BN - 1) / BN;
  constexpr int kRasterGroup = 8;  // row tiles that share each weight tile within a wave
  if ((threadIdx.x >> 5) == 0) {
    long long row_tile = 0;
    int col_tile = 0;
    grouped_raster<kNTiles, kRasterGroup>(blockIdx.x, row_tile, col_tile);
    int expert = -1;
    long long row_begin = 0, row_end = 0;
    const bool found = find_row_tile<typename Cfg::Index, Cfg::kExperts, BM>(
        p.expert_offsets, row_tile, expert, row_begin, row_end);
    if (row_end > p.rows) row_end = p.rows;  // never index past the routing arrays
    if ((threadIdx.x & 31) == 0) {
      shared.expert = found && row_end > row_begin ? expert : -1;
      shared.n0 = col_tile * BN;
      shared.row_begin = row_begin;
      shared.rows = static_cast<int>(row_end - row_begin);
    }
  }
  __syncthreads();
  return shared;
}

// Stages what the whole K loop and the epilogue of tile `t` reuse: the source and destination row
// of each of its BM grouped rows (-1 past the tile), B_e for its columns in the act dtype
// zero-padded to RP ranks ([n][j] in BTile), and the nf4 code tables. The caller synchronizes.
template <class Cfg, class BTile, int BM, int BN, int RP, int kThreads>
__device__ __forceinline__ void stage_tile_inputs(const ForwardParams& p, const OutputTile& t,
                                                  long long* src_rows, char* bs,
                                                  QuantTables* tables, bool base) {
  using Act = typename Cfg::Act;
  using LoraB = typename Cfg::LoraB;
  constexpr int E = Cfg::kExperts, N = Cfg::kN, R = Cfg::kRank;
  long long* dst_rows = src_rows + BM;
  for (int i = threadIdx.x; i < BM; i += kThreads) {
    long long src = -1, dst = -1;
    if (i < t.rows) {
      const long long row = t.row_begin + i;
      const long long slot = load_index<typename Cfg::Index>(p.scattered_idxs, row);
      src = Cfg::kGroupedIn ? row : slot / Cfg::kGatherDiv;
      dst = Cfg::kGroupedOut ? row : slot;
    }
    src_rows[i] = src;
    dst_rows[i] = dst;
  }
  const LoraB* lora_b = static_cast<const LoraB*>(p.lora_b);
  for (int idx = threadIdx.x; idx < BN * RP; idx += kThreads) {
    const int n = idx / RP, j = idx % RP, o = t.n0 + n;
    const float v = (j < R && o < N)
                        ? to_float(lora_b[lora_b_index<Cfg::kBStorage, E, N, R>(t.expert, o, j)])
                        : 0.f;
    *reinterpret_cast<Act*>(bs + BTile::byte_offset(n, j, 2)) = from_float<Act>(v);
  }
  if (base) stage_quant_tables<Cfg::kWeightFormat>(tables, p, Cfg::kDoubleQuant, kThreads);
}

template <class Cfg>
struct ForwardKernel {
  using Act = typename Cfg::Act;
  using Lora = typename Cfg::Lora;    // dtype of the A-role factor
  using LoraB = typename Cfg::LoraB;  // dtype of the B-role factor
  using Index = typename Cfg::Index;
  static constexpr int E = Cfg::kExperts, K = Cfg::kK, N = Cfg::kN;
  static constexpr int R = Cfg::kRank;
  static constexpr int BM = Cfg::kBlockM, BN = Cfg::kBlockN, BK = Cfg::kBlockK;
  static constexpr int WARPS_M = Cfg::kWarpsM, WARPS_N = Cfg::kWarpsN, STAGES = Cfg::kStages;
  static constexpr bool kInOut = Cfg::kWeightInOut;
  static constexpr bool kBf16 = DTypeTraits<Act>::kIsBf16;
  static constexpr bool kLoraIsAct = IsSame<Lora, Act>::value;

  static constexpr int kThreads = 32 * WARPS_M * WARPS_N;
  static constexpr int RP = (R + 15) / 16 * 16;  // rank padded to the mma k
  static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
  static constexpr int MF = WM / 16, NF = WN / 8;  // mma tiles per warp
  static constexpr int XA_CHUNKS = RP / 8;         // n8 column blocks of x * A^T
  static constexpr int XA_PER_WARP = (XA_CHUNKS + WARPS_N - 1) / WARPS_N;
  static constexpr int KB = (K + BK - 1) / BK;
  static constexpr int N_TILES = (N + BN - 1) / BN;

  static_assert(sizeof(Act) == 2, "activations are 16-bit");
  static_assert(K % 8 == 0 && N % 8 == 0, "K and N must be multiples of 8 (16-byte rows)");
  static_assert(R >= 1 && R <= 256, "rank must be in [1, 256]");
  static_assert(BK == 32 || BK == 64 || BK == 128,
                "block_k must be 32 or 64 (128: the register-operand kernel's prologue)");
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile must be a multiple of 16x16");
  static_assert(16 % sizeof(Lora) == 0, "lora dtype must divide a 16-byte chunk");

  using XTile = SwizzledTile<BM, BK * 2 / 16>;
  using WTile = SwizzledTile<kInOut ? BK : BN, kInOut ? BN * 2 / 16 : BK * 2 / 16>;
  using ATile = SwizzledTile<RP, BK* static_cast<int>(sizeof(Lora)) / 16>;
  using BTile = SwizzledTile<BN, RP * 2 / 16>;   // B_e rows n0.. in act dtype: [n][j]
  using XaTile = SwizzledTile<BM, RP * 2 / 16>;  // s * x * A^T rounded to act: [m][j]

  static constexpr int kStageBytes = XTile::kBytes + WTile::kBytes + ATile::kBytes;
  static constexpr int kBTileOffset = STAGES * kStageBytes;
  static constexpr int kXaTileOffset = kBTileOffset + BTile::kBytes;
  static constexpr int kRowsOffset = kXaTileOffset + XaTile::kBytes;
  static constexpr int kTablesOffset = kRowsOffset + BM * 2 * 8;  // source and destination rows
  static constexpr bool kQuant =
      Cfg::kWeightFormat == kWeightNf4 || Cfg::kWeightFormat == kWeightInt8;
  static constexpr int kSmemBytes =
      kTablesOffset +
      (Cfg::kWeightFormat == kWeightNf4 ? static_cast<int>(sizeof(QuantTables)) : 0);
  using WeightFetch = QuantWeightFetch<Cfg::kWeightFormat, Cfg::kQuantBlocksize, Cfg::kDoubleQuant,
                                       kInOut ? BK*(BN / 8) : BN*(BK / 8), kThreads>;

  // The tile chunk, flat weight index and row length of quantized chunk c of k-block kb.
  __device__ static bool quant_chunk(const OutputTile& t, int kb, int c, long long& flat,
                                     long long& row_len, int& chunk) {
    if constexpr (kInOut) {
      const int row = c / (BN / 8), ch = c % (BN / 8), k = kb * BK + row, n = t.n0 + ch * 8;
      flat = (static_cast<long long>(t.expert) * K + k) * N + n;
      row_len = N;
      chunk = WTile::chunk_offset(row, ch);
      return k < K && n < N;
    } else {
      const int row = c / (BK / 8), ch = c % (BK / 8), k = kb * BK + ch * 8, n = t.n0 + row;
      flat = (static_cast<long long>(t.expert) * N + n) * K + k;
      row_len = K;
      chunk = WTile::chunk_offset(row, ch);
      return k < K && n < N;
    }
  }
  static_assert(kSmemBytes == Cfg::kSmemBytes,
                "host and device disagree on the shared-memory layout (see compiler/source.cpp)");

  using Tile = OutputTile;

  __device__ static void load_stage(const ForwardParams& p, const Tile& t, char* stage, int kb,
                                    const long long* src_rows, bool base) {
    const int k0 = kb * BK;
    const char* x = static_cast<const char*>(p.x);
    char* xs = stage;
    constexpr int XC = BK / 8;  // 16-byte chunks per row of a 16-bit tile
    for (int c = threadIdx.x; c < BM * XC; c += kThreads) {
      const int row = c / XC, ch = c % XC, k = k0 + ch * 8;
      const long long src = src_rows[row];
      const bool valid = src >= 0 && k < K;
      cp_async_16(xs + XTile::chunk_offset(row, ch) * 16, valid ? x + (src * K + k) * 2 : x, valid);
    }
    const char* w = static_cast<const char*>(p.w);
    char* ws = stage + XTile::kBytes;
    if (base && !kQuant) {  // without the base product the weight tile is not needed
      if constexpr (kInOut) {
        constexpr int WC = BN / 8;
        for (int c = threadIdx.x; c < BK * WC; c += kThreads) {
          const int row = c / WC, ch = c % WC, k = k0 + row, n = t.n0 + ch * 8;
          const bool valid = k < K && n < N;
          cp_async_16(ws + WTile::chunk_offset(row, ch) * 16,
                      valid ? w + ((static_cast<long long>(t.expert) * K + k) * N + n) * 2 : w,
                      valid);
        }
      } else {
        for (int c = threadIdx.x; c < BN * XC; c += kThreads) {
          const int row = c / XC, ch = c % XC, k = k0 + ch * 8, n = t.n0 + row;
          const bool valid = k < K && n < N;
          cp_async_16(ws + WTile::chunk_offset(row, ch) * 16,
                      valid ? w + ((static_cast<long long>(t.expert) * N + n) * K + k) * 2 : w,
                      valid);
        }
      }
    }
    const char* a = static_cast<const char*>(p.lora_a);
    char* as = stage + XTile::kBytes + WTile::kBytes;
    constexpr int EPC = 16 / static_cast<int>(sizeof(Lora));  // elements per chunk
    constexpr int AC = BK / EPC;
    for (int c = threadIdx.x; c < RP * AC; c += kThreads) {
      const int j = c / AC, ch = c % AC, k = k0 + ch * EPC;
      const bool valid = j < R && k < K;
      cp_async_16(
          as + ATile::chunk_offset(j, ch) * 16,
          valid ? a + ((static_cast<long long>(t.expert) * R + j) * K + k) * sizeof(Lora) : a,
          valid);
    }
  }

  // Stage kb's x rows to p.x_grouped in grouped-row order (read before the barrier after which
  // the stage is refilled).
  __device__ static void copy_x_tile(const ForwardParams& p, const Tile& t, const char* stage,
                                     int kb) {
    constexpr int XC = BK / 8;
    char* out = static_cast<char*>(p.x_grouped);
    for (int c = threadIdx.x; c < BM * XC; c += kThreads) {
      const int row = c / XC, ch = c % XC, k = kb * BK + ch * 8;
      if (row < t.rows && k < K) {
        unsigned v[4];
        ld_shared_16(v, stage + XTile::chunk_offset(row, ch) * 16);
        st_global_16(out + ((t.row_begin + row) * K + k) * 2, v);
      }
    }
  }

  __device__ static void compute_stage(const char* stage, int warp_m, int warp_n, bool base,
                                       float (&acc)[MF][NF][4], float (&xa)[MF][XA_PER_WARP][4]) {
    const int lane = threadIdx.x & 31;
    const char* xs = stage;
    const char* ws = stage + XTile::kBytes;
    const char* as = stage + XTile::kBytes + WTile::kBytes;
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      unsigned af[MF][4];
#pragma unroll
      for (int mi = 0; mi < MF; ++mi) {
        const int row = warp_m * WM + mi * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
        ldmatrix_x4(af[mi], xs + XTile::chunk_offset(row, kk * 2 + (lane >> 4)) * 16);
      }
#pragma unroll
      for (int nj = 0; nj < (base ? NF / 2 : 0); ++nj) {
        unsigned bf[4];
        if constexpr (kInOut) {
          const int row = kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
          const int ch = (warp_n * WN + nj * 16) / 8 + (lane >> 4);
          ldmatrix_x4_trans(bf, ws + WTile::chunk_offset(row, ch) * 16);
        } else {
          const int row = warp_n * WN + nj * 16 + (lane >> 4) * 8 + (lane & 7);
          ldmatrix_x4(bf, ws + WTile::chunk_offset(row, kk * 2 + ((lane >> 3) & 1)) * 16);
        }
        const unsigned b0[2] = {bf[0], bf[1]}, b1[2] = {bf[2], bf[3]};
#pragma unroll
        for (int mi = 0; mi < MF; ++mi) {
          mma_16816<kBf16>(acc[mi][2 * nj], af[mi], b0);
          mma_16816<kBf16>(acc[mi][2 * nj + 1], af[mi], b1);
        }
      }
      // The LoRA A product rides on the same x fragments.
#pragma unroll
      for (int c = 0; c < XA_PER_WARP; ++c) {
        const int q = warp_n + c * WARPS_N;
        if (q < XA_CHUNKS) {
          if constexpr (kLoraIsAct) {
            unsigned bf[2];
            const int row = q * 8 + (lane & 7);
            ldmatrix_x2(bf, as + ATile::chunk_offset(row, kk * 2 + ((lane >> 3) & 1)) * 16);
#pragma unroll
            for (int mi = 0; mi < MF; ++mi) mma_16816<kBf16>(xa[mi][c], af[mi], bf);
          } else {
            unsigned hi[2], lo[2];
            load_b_fragment_split<ATile, Lora, Act>(hi, lo, as, q * 8 + (lane >> 2), kk * 16);
#pragma unroll
            for (int mi = 0; mi < MF; ++mi) {
              mma_16816<kBf16>(xa[mi][c], af[mi], hi);
              mma_16816<kBf16>(xa[mi][c], af[mi], lo);
            }
          }
        }
      }
    }
  }

  __device__ static void run(const ForwardParams& p) {
    extern __shared__ __align__(128) char smem[];
    __shared__ Tile shared_tile;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const Tile t = locate_tile<Cfg, BM, BN>(p, shared_tile);
    if (t.expert < 0) return;  // the grid is an upper bound on the number of row tiles
    // y == null: only x * A^T is wanted (the backward recomputing what the forward did not save,
    // or the register-operand kernel's prologue, which may also copy x: p.x_grouped).
    const bool base = p.y != nullptr;
    if (!base && t.n0 != 0) return;

    long long* src_rows = reinterpret_cast<long long*>(smem + kRowsOffset);
    const long long* dst_rows = src_rows + BM;
    char* bs = smem + kBTileOffset;
    QuantTables* tables = reinterpret_cast<QuantTables*>(smem + kTablesOffset);
    stage_tile_inputs<Cfg, BTile, BM, BN, RP, kThreads>(p, t, src_rows, bs, tables, base);
    __syncthreads();

    float acc[MF][NF][4] = {};
    WeightFetch fetch;
    auto fetch_weights = [&](int kb) {
      fetch.fetch(p, [&](int c, long long& flat, long long& row_len, int& chunk) {
        return quant_chunk(t, kb, c, flat, row_len, chunk);
      });
    };
    float xa[MF][XA_PER_WARP][4] = {};
    const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < KB) load_stage(p, t, smem + s * kStageBytes, s, src_rows, base);
      if (kQuant && base && s < KB) {
        fetch_weights(s);
        fetch.template store<Act>(smem + s * kStageBytes + XTile::kBytes, tables, p.offset);
      }
      cp_async_commit();
    }
    for (int kb = 0; kb < KB; ++kb) {
      cp_async_wait<STAGES - 2>();
      __syncthreads();
      const int next = kb + STAGES - 1;
      if (next < KB) load_stage(p, t, smem + (next % STAGES) * kStageBytes, next, src_rows, base);
      if (kQuant && base && next < KB) fetch_weights(next);  // registers, decoded below
      cp_async_commit();
      compute_stage(smem + (kb % STAGES) * kStageBytes, warp_m, warp_n, base, acc, xa);
      if (p.x_grouped != nullptr && t.n0 == 0)
        copy_x_tile(p, t, smem + (kb % STAGES) * kStageBytes, kb);
      if (kQuant && base && next < KB)
        fetch.template store<Act>(smem + (next % STAGES) * kStageBytes + XTile::kBytes, tables,
                                  p.offset);
    }
    cp_async_wait<0>();
    const int g = lane >> 2, tq = lane & 3;

    // x * A^T for the LoRA gradients, written once per row tile (by the CTAs of column tile 0).
    if (p.xa_out != nullptr && t.n0 == 0) {
#pragma unroll
      for (int mi = 0; mi < MF; ++mi)
#pragma unroll
        for (int c = 0; c < XA_PER_WARP; ++c)
#pragma unroll
          for (int v = 0; v < 4; ++v) {
            const int q = warp_n + c * WARPS_N;
            const int row = warp_m * WM + mi * 16 + g + (v >> 1) * 8,
                      col = q * 8 + 2 * tq + (v & 1);
            if (q < XA_CHUNKS && row < t.rows && col < R)
              p.xa_out[(t.row_begin + row) * R + col] = xa[mi][c][v];
          }
    }

    if (!base) return;

    // Epilogue 1: s * (x * A^T), rounded to the act dtype, to shared memory.
    char* xas = smem + kXaTileOffset;
#pragma unroll
    for (int mi = 0; mi < MF; ++mi) {
#pragma unroll
      for (int c = 0; c < XA_PER_WARP; ++c) {
        const int q = warp_n + c * WARPS_N;
        if (q < XA_CHUNKS) {
          const int row = warp_m * WM + mi * 16 + g, col = q * 8 + 2 * tq;
          *reinterpret_cast<unsigned*>(xas + XaTile::byte_offset(row, col, 2)) =
              pack2<Act>(p.scale * xa[mi][c][0], p.scale * xa[mi][c][1]);
          *reinterpret_cast<unsigned*>(xas + XaTile::byte_offset(row + 8, col, 2)) =
              pack2<Act>(p.scale * xa[mi][c][2], p.scale * xa[mi][c][3]);
        }
      }
    }
    __syncthreads();

    // Epilogue 2: acc += (s * x * A^T) * B^T on the tensor cores.
#pragma unroll
    for (int kr = 0; kr < RP / 16; ++kr) {
      unsigned af[MF][4];
#pragma unroll
      for (int mi = 0; mi < MF; ++mi) {
        const int row = warp_m * WM + mi * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
        ldmatrix_x4(af[mi], xas + XaTile::chunk_offset(row, kr * 2 + (lane >> 4)) * 16);
      }
#pragma unroll
      for (int nj = 0; nj < NF / 2; ++nj) {
        unsigned bf[4];
        const int row = warp_n * WN + nj * 16 + (lane >> 4) * 8 + (lane & 7);
        ldmatrix_x4(bf, bs + BTile::chunk_offset(row, kr * 2 + ((lane >> 3) & 1)) * 16);
        const unsigned b0[2] = {bf[0], bf[1]}, b1[2] = {bf[2], bf[3]};
#pragma unroll
        for (int mi = 0; mi < MF; ++mi) {
          mma_16816<kBf16>(acc[mi][2 * nj], af[mi], b0);
          mma_16816<kBf16>(acc[mi][2 * nj + 1], af[mi], b1);
        }
      }
    }

    // Epilogue 3: bias, round, scatter.
    const Act* bias = static_cast<const Act*>(p.bias);
    Act* y = static_cast<Act*>(p.y);
#pragma unroll
    for (int ni = 0; ni < NF; ++ni) {
      const int col = t.n0 + warp_n * WN + ni * 8 + 2 * tq;
      if (col >= N) continue;
      float b0 = 0.f, b1 = 0.f;
      if constexpr (Cfg::kHasBias) {
        b0 = to_float(bias[static_cast<long long>(t.expert) * N + col]);
        b1 = to_float(bias[static_cast<long long>(t.expert) * N + col + 1]);
      }
#pragma unroll
      for (int mi = 0; mi < MF; ++mi) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int row = warp_m * WM + mi * 16 + g + half * 8;
          if (row < t.rows) {
            *reinterpret_cast<unsigned*>(y + dst_rows[row] * N + col) =
                pack2<Act>(acc[mi][ni][2 * half] + b0, acc[mi][ni][2 * half + 1] + b1);
          }
        }
      }
    }
  }
};

template <class Cfg>
__global__ void __launch_bounds__(ForwardKernel<Cfg>::kThreads)
    moe_lora_forward(const ForwardParams params) {
  ForwardKernel<Cfg>::run(params);
}

}  // namespace moejit
