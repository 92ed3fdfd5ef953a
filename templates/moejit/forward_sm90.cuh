#pragma once
// Hopper (sm_90a) MoE-LoRA forward: the same contract and tiling idea as forward.cuh, with the K
// loop on wgmma. Each warpgroup owns 64 rows of the BLOCK_M x BLOCK_N tile; gathered x rows, the
// weight tile and the LoRA A tile arrive by cp.async into 128-byte-swizzled shared memory (the
// layout wgmma reads), STAGES deep, with one wgmma batch kept in flight while the next stage
// loads. x * A^T rides along as extra m64n16 products on the same x tile. The epilogue (x*A^T
// rounded, times B^T, bias, scatter) runs per warp on mma.sync: a warp's slice of a wgmma
// accumulator has the same fragment layout as an m16n8 mma.sync accumulator.
// Weights may be K-major (out_in forward, in_out backward dx) or N-contiguous (wgmma reads B
// transposed). Requirements: A-role dtype == act, block_k == 64.
#include "moejit/forward.cuh"
#include "moejit/wgmma.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#error "the wgmma kernel (forward_sm90.cuh) needs sm_90a"
#endif

namespace moejit {

// The persistent kernels' tile schedule (warp 0): tile_start[e] = row tiles (of kTileRows rows)
// of the experts before e, tile_start[E] = all of them.
template <int E, class Index, int kTileRows>
__device__ void count_row_tiles(const ForwardParams& p, long long* tile_start) {
  const int lane = threadIdx.x & 31;
  long long before = 0;
  for (int base = 0; base < E; base += 32) {
    const int e = base + lane;
    long long count = 0;
    if (e < E) {
      const long long end = load_index<Index>(p.expert_offsets, e);
      const long long begin = e == 0 ? 0 : load_index<Index>(p.expert_offsets, e - 1);
      count = end > begin ? (end - begin + kTileRows - 1) / kTileRows : 0;
    }
    long long inclusive = count;
#pragma unroll
    for (int delta = 1; delta < 32; delta <<= 1) {
      const long long up = __shfl_up_sync(0xffffffffu, inclusive, delta);
      if (lane >= delta) inclusive += up;
    }
    if (e < E) tile_start[e] = before + inclusive - count;
    before += __shfl_sync(0xffffffffu, inclusive, 31);
  }
  if (lane == 0) tile_start[E] = before;
}

// The expert owning row tile `row_tile` of that schedule and its row range [begin, end) (end
// clamped to p.rows, so that no routing array is read past its end); false past the last tile.
template <int E, class Index>
__device__ __forceinline__ bool locate_row_tile(const ForwardParams& p, const long long* tile_start,
                                                long long row_tile, int& expert, long long& begin,
                                                long long& end) {
  if (row_tile >= tile_start[E]) return false;
  int lo = 0, hi = E - 1;  // the last expert whose first tile is at or before row_tile
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (tile_start[mid] <= row_tile)
      lo = mid;
    else
      hi = mid - 1;
  }
  begin = lo == 0 ? 0 : load_index<Index>(p.expert_offsets, lo - 1);
  end = load_index<Index>(p.expert_offsets, lo);
  if (end > p.rows) end = p.rows;
  expert = lo;
  return true;
}

// The persistent kernels' mbarriers, 8 bytes each from `base`: full[STAGES], empty[STAGES] (the
// pipeline stages), then inputs_full[2], inputs_empty[2] (the per-tile epilogue inputs).
template <int STAGES>
struct PipelineBarriers {
  unsigned base;
  __device__ unsigned full(int s) const { return base + 8 * s; }
  __device__ unsigned empty(int s) const { return base + 8 * (STAGES + s); }
  __device__ unsigned inputs_full(int b) const { return base + 8 * (2 * STAGES + b); }
  __device__ unsigned inputs_empty(int b) const { return base + 8 * (2 * STAGES + 2 + b); }
};

// A position in a ring of barriers: the slot and the parity of its current phase.
template <int kSlots>
struct RingPosition {
  int slot = 0;
  unsigned phase = 0;
  __device__ void advance() {
    if (++slot == kSlots) {
      slot = 0;
      phase ^= 1;
    }
  }
};

// The source (x row) and destination (y row) of row `my_row` of tile t; -1 past its rows.
template <class Cfg>
__device__ __forceinline__ void tile_row_ends(const ForwardParams& p, const OutputTile& t,
                                              int my_row, long long& src, long long& dst) {
  src = dst = -1;
  if (my_row < t.rows) {
    const long long row = t.row_begin + my_row;
    const long long slot = load_index<typename Cfg::Index>(p.scattered_idxs, row);
    src = Cfg::kGroupedIn ? row : slot / Cfg::kGatherDiv;
    dst = Cfg::kGroupedOut ? row : slot;
  }
}

// The tile chunk, flat weight index and row length of quantized chunk c of k-block kb of a
// BN-column weight tile in the layouts wgmma reads: K-major rows of 128 bytes (out_in), or blocks
// of 64 n, each 64 rows (one per k) of 128 bytes (in_out, read transposed). Shared by both sm90
// kernels.
template <class Cfg, int BN>
__device__ __forceinline__ bool sm90_quant_chunk(const OutputTile& t, int kb, int c,
                                                 long long& flat, long long& row_len, int& chunk) {
  constexpr int K = Cfg::kK, N = Cfg::kN, BK = 64;
  if constexpr (Cfg::kWeightInOut) {
    const int row = c / (BN / 8), ch = c % (BN / 8), k = kb * BK + row, n = t.n0 + ch * 8;
    flat = (static_cast<long long>(t.expert) * K + k) * N + n;
    row_len = N;
    chunk = ((ch >> 3) * BK + row) * 8 + ((ch ^ row) & 7);
    return k < K && n < N;
  } else {
    const int row = c >> 3, ch = c & 7, k = kb * BK + ch * 8, n = t.n0 + row;
    flat = (static_cast<long long>(t.expert) * N + n) * K + k;
    row_len = K;
    chunk = SwizzledTile<BN, 8>::chunk_offset(row, ch);
    return k < K && n < N;
  }
}

template <class Cfg>
struct ForwardSm90Kernel {
  using Act = typename Cfg::Act;
  using Index = typename Cfg::Index;
  using LoraB = typename Cfg::LoraB;
  static constexpr int E = Cfg::kExperts, K = Cfg::kK, N = Cfg::kN;
  static constexpr int R = Cfg::kRank;
  static constexpr int BM = Cfg::kBlockM, BN = Cfg::kBlockN, BK = 64, STAGES = Cfg::kStages;
  static constexpr bool kBf16 = DTypeTraits<Act>::kIsBf16;
  static constexpr int kWarps = BM / 16;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int RP = (R + 15) / 16 * 16;
  static constexpr int KB = (K + BK - 1) / BK;
  static constexpr int N_TILES = (N + BN - 1) / BN;
  static constexpr int kPrefetch = STAGES - 2;  // one stage is read by the wgmma in flight

  static_assert(Cfg::kBlockK == 64, "the sm90 kernel reads 128-byte (64-element) k slices");
  static constexpr bool kInOut = Cfg::kWeightInOut;  // weight tile N-contiguous: wgmma transposes B
  static_assert(IsSame<typename Cfg::Lora, Act>::value, "the sm90 kernel needs lora dtype == act");
  static_assert(BM == 64 || BM == 128, "block_m is one or two warpgroups of 64 rows");
  static_assert(BN == 64 || BN == 128 || BN == 256, "block_n must be 64, 128 or 256");
  static_assert(STAGES >= 3, "one stage in flight plus at least one prefetched");
  static_assert(K % 8 == 0 && N % 8 == 0, "K and N must be multiples of 8 (16-byte rows)");

  using XTile = SwizzledTile<BM, 8>;
  using WTile = SwizzledTile<BN, 8>;  // K-major weights: one 128-byte row per n
  // N-contiguous weights: BN/64 blocks of 64 n, each BK rows (one per k) of 128 bytes.
  static constexpr int kWBlockBytes = BK * 128;
  __device__ __forceinline__ static int w_in_out_chunk(int k, int n_chunk) {
    return ((n_chunk >> 3) * BK + k) * 8 + ((n_chunk ^ k) & 7);
  }
  using ATile = SwizzledTile<RP, 8>;
  using BTile = SwizzledTile<BN, RP * 2 / 16>;
  using XaTile = SwizzledTile<BM, RP * 2 / 16>;

  static constexpr int kStageBytes = XTile::kBytes + WTile::kBytes + ATile::kBytes;
  static constexpr int kBTileOffset = STAGES * kStageBytes;
  static constexpr int kXaTileOffset = kBTileOffset + BTile::kBytes;
  static constexpr int kRowsOffset = kXaTileOffset + XaTile::kBytes;
  static constexpr int kTablesOffset = kRowsOffset + BM * 2 * 8;
  static constexpr bool kQuant =
      Cfg::kWeightFormat == kWeightNf4 || Cfg::kWeightFormat == kWeightInt8;
  static constexpr int kSmemBytes =  // 1024: alignment slack
      1024 + kTablesOffset +
      (Cfg::kWeightFormat == kWeightNf4 ? static_cast<int>(sizeof(QuantTables)) : 0);
  using WeightFetch = QuantWeightFetch<Cfg::kWeightFormat, Cfg::kQuantBlocksize, Cfg::kDoubleQuant,
                                       BN * 8, kThreads>;

  __device__ static bool quant_chunk(const OutputTile& t, int kb, int c, long long& flat,
                                     long long& row_len, int& chunk) {
    return sm90_quant_chunk<Cfg, BN>(t, kb, c, flat, row_len, chunk);
  }
  static_assert(kSmemBytes == Cfg::kSmemBytes,
                "host and device disagree on the shared-memory layout (see compiler/source.cpp)");

  using Tile = OutputTile;

  __device__ static void load_stage(const ForwardParams& p, const Tile& t, char* stage, int kb,
                                    const long long* src_rows) {
    const int k0 = kb * BK;
    const char* x = static_cast<const char*>(p.x);
    for (int c = threadIdx.x; c < BM * 8; c += kThreads) {
      const int row = c >> 3, ch = c & 7, k = k0 + ch * 8;
      const long long src = src_rows[row];
      const bool valid = src >= 0 && k < K;
      cp_async_16(stage + XTile::chunk_offset(row, ch) * 16, valid ? x + (src * K + k) * 2 : x,
                  valid);
    }
    const char* w = static_cast<const char*>(p.w);
    char* ws = stage + XTile::kBytes;
    if constexpr (kQuant) {
      // fetched and decoded by the main loop
    } else if constexpr (kInOut) {
      constexpr int WC = BN / 8;
      for (int c = threadIdx.x; c < BK * WC; c += kThreads) {
        const int row = c / WC, ch = c % WC, k = k0 + row, n = t.n0 + ch * 8;
        const bool valid = k < K && n < N;
        cp_async_16(ws + w_in_out_chunk(row, ch) * 16,
                    valid ? w + ((static_cast<long long>(t.expert) * K + k) * N + n) * 2 : w,
                    valid);
      }
    } else {
      for (int c = threadIdx.x; c < BN * 8; c += kThreads) {
        const int row = c >> 3, ch = c & 7, k = k0 + ch * 8, n = t.n0 + row;
        const bool valid = k < K && n < N;
        cp_async_16(ws + WTile::chunk_offset(row, ch) * 16,
                    valid ? w + ((static_cast<long long>(t.expert) * N + n) * K + k) * 2 : w,
                    valid);
      }
    }
    const char* a = static_cast<const char*>(p.lora_a);
    char* as = ws + WTile::kBytes;
    for (int c = threadIdx.x; c < RP * 8; c += kThreads) {
      const int j = c >> 3, ch = c & 7, k = k0 + ch * 8;
      const bool valid = j < R && k < K;
      cp_async_16(as + ATile::chunk_offset(j, ch) * 16,
                  valid ? a + ((static_cast<long long>(t.expert) * R + j) * K + k) * 2 : a, valid);
    }
  }

  __device__ static void run(const ForwardParams& p) {
    extern __shared__ __align__(1024) char smem_raw[];
    // wgmma's 128-byte swizzle is anchored to 1024-byte boundaries of the shared address.
    char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    __shared__ Tile shared_tile;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wg = warp >> 2;
    const Tile t = locate_tile<Cfg, BM, BN>(p, shared_tile);
    if (t.expert < 0) return;
    // y == null: only x * A^T is wanted (the backward recomputing what the forward did not save).
    const bool base = p.y != nullptr;
    if (!base && t.n0 != 0) return;

    long long* src_rows = reinterpret_cast<long long*>(smem + kRowsOffset);
    const long long* dst_rows = src_rows + BM;
    char* bs = smem + kBTileOffset;
    QuantTables* tables = reinterpret_cast<QuantTables*>(smem + kTablesOffset);
    // The quantized weights' tables are staged without y too: column tile 0 runs its whole
    // product then (see the main loop).
    stage_tile_inputs<Cfg, BTile, BM, BN, RP, kThreads>(p, t, src_rows, bs, tables, true);
    __syncthreads();

    WeightFetch fetch;
    auto fetch_weights = [&](int kb) {
      fetch.fetch(p, [&](int c, long long& flat, long long& row_len, int& chunk) {
        return quant_chunk(t, kb, c, flat, row_len, chunk);
      });
    };
    float acc[BN / 2];
    float xa[RP / 16][8];
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.f;
#pragma unroll
    for (int q = 0; q < RP / 16; ++q)
#pragma unroll
      for (int i = 0; i < 8; ++i) xa[q][i] = 0.f;

#pragma unroll
    for (int s = 0; s < kPrefetch; ++s) {
      if (s < KB) load_stage(p, t, smem + s * kStageBytes, s, src_rows);
      if (kQuant && s < KB) {
        fetch_weights(s);
        fetch.template store<Act>(smem + s * kStageBytes + XTile::kBytes, tables, p.offset);
      }
      cp_async_commit();
    }
    for (int kb = 0; kb < KB; ++kb) {
      cp_async_wait<kPrefetch - 1>();
      fence_proxy_async();
      __syncthreads();
      // The stage loaded now was last read by the wgmma batch of kb - 2, which has completed.
      const int next = kb + kPrefetch;
      if (next < KB) load_stage(p, t, smem + (next % STAGES) * kStageBytes, next, src_rows);
      if (kQuant && next < KB) fetch_weights(next);  // registers, decoded below
      cp_async_commit();

      const char* stage = smem + (kb % STAGES) * kStageBytes;
      const char* xs = stage + wg * 64 * 128;
      const char* ws = stage + XTile::kBytes;
      const char* as = ws + WTile::kBytes;
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        const unsigned long long da = wgmma_desc_k128(xs + kk * 32);
        // Also without y (then acc is dropped): a wgmma behind a branch makes ptxas fence the
        // accumulators around it (C7519).
        if constexpr (kInOut) {
          Wgmma<BN>::template mma<kBf16, true>(acc, da,
                                               wgmma_desc_mn128(ws + kk * 2048, kWBlockBytes));
        } else {
          Wgmma<BN>::template mma<kBf16>(acc, da, wgmma_desc_k128(ws + kk * 32));
        }
#pragma unroll
        for (int q = 0; q < RP / 16; ++q)
          Wgmma<16>::template mma<kBf16>(xa[q], da, wgmma_desc_k128(as + q * 16 * 128 + kk * 32));
      }
      wgmma_commit();
      wgmma_wait<1>();
      // Decoded while this stage's wgmma runs; made visible to wgmma by the fence and barrier at
      // the top of a later iteration.
      if (kQuant && next < KB)
        fetch.template store<Act>(smem + (next % STAGES) * kStageBytes + XTile::kBytes, tables,
                                  p.offset);
    }
    wgmma_wait<0>();
    wgmma_fence_operands(acc);
#pragma unroll
    for (int q = 0; q < RP / 16; ++q) wgmma_fence_operands(xa[q]);
    cp_async_wait<0>();
    const int g = lane >> 2, tq = lane & 3;
    const int row0 = warp * 16 + g;

    // x * A^T for the LoRA gradients, written once per row tile (by the CTAs of column tile 0).
    if (p.xa_out != nullptr && t.n0 == 0) {
#pragma unroll
      for (int q = 0; q < RP / 16; ++q)
#pragma unroll
        for (int v = 0; v < 8; ++v) {
          const int row = row0 + ((v >> 1) & 1) * 8, col = q * 16 + (v >> 2) * 8 + 2 * tq + (v & 1);
          if (row < t.rows && col < R) p.xa_out[(t.row_begin + row) * R + col] = xa[q][v];
        }
    }

    if (!base) return;

    // Epilogue 1: s * (x * A^T), rounded to the act dtype, to shared memory.
    char* xas = smem + kXaTileOffset;
#pragma unroll
    for (int q = 0; q < RP / 16; ++q) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int col = q * 16 + half * 8 + 2 * tq;
        *reinterpret_cast<unsigned*>(xas + XaTile::byte_offset(row0, col, 2)) =
            pack2<Act>(p.scale * xa[q][half * 4 + 0], p.scale * xa[q][half * 4 + 1]);
        *reinterpret_cast<unsigned*>(xas + XaTile::byte_offset(row0 + 8, col, 2)) =
            pack2<Act>(p.scale * xa[q][half * 4 + 2], p.scale * xa[q][half * 4 + 3]);
      }
    }
    __syncwarp();  // each warp reads back only its own 16 rows

    // Epilogue 2: acc += (s * x * A^T) * B^T on mma.sync, warp by warp.
#pragma unroll
    for (int kr = 0; kr < RP / 16; ++kr) {
      unsigned af[4];
      const int arow = warp * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
      ldmatrix_x4(af, xas + XaTile::chunk_offset(arow, kr * 2 + (lane >> 4)) * 16);
#pragma unroll
      for (int nj = 0; nj < BN / 16; ++nj) {
        unsigned bf[4];
        const int brow = nj * 16 + (lane >> 4) * 8 + (lane & 7);
        ldmatrix_x4(bf, bs + BTile::chunk_offset(brow, kr * 2 + ((lane >> 3) & 1)) * 16);
        const unsigned b0[2] = {bf[0], bf[1]}, b1[2] = {bf[2], bf[3]};
        mma_16816<kBf16>(*reinterpret_cast<float(*)[4]>(&acc[(2 * nj) * 4]), af, b0);
        mma_16816<kBf16>(*reinterpret_cast<float(*)[4]>(&acc[(2 * nj + 1) * 4]), af, b1);
      }
    }

    // Epilogue 3: bias, round, scatter.
    const Act* bias = static_cast<const Act*>(p.bias);
    Act* y = static_cast<Act*>(p.y);
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
      const int col = t.n0 + j * 8 + 2 * tq;
      if (col >= N) continue;
      float b0 = 0.f, b1 = 0.f;
      if constexpr (Cfg::kHasBias) {
        b0 = to_float(bias[static_cast<long long>(t.expert) * N + col]);
        b1 = to_float(bias[static_cast<long long>(t.expert) * N + col + 1]);
      }
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int row = row0 + half * 8;
        if (row < t.rows) {
          *reinterpret_cast<unsigned*>(y + dst_rows[row] * N + col) =
              pack2<Act>(acc[j * 4 + 2 * half] + b0, acc[j * 4 + 2 * half + 1] + b1);
        }
      }
    }
  }
};

template <class Cfg>
__global__ void __launch_bounds__(ForwardSm90Kernel<Cfg>::kThreads, 1)
    moe_lora_forward_sm90(const ForwardParams params) {
  ForwardSm90Kernel<Cfg>::run(params);
}

}  // namespace moejit
