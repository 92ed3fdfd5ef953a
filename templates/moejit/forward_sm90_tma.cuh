#pragma once
// Hopper (sm_90a) MoE-LoRA GEMM, warp-specialized and persistent; the contract of forward.cuh.
// A CTA is one loading warpgroup and one or two accumulating warpgroups of 64 rows each. It walks
// the output tiles c, c + C, ... (c: its cluster's index, C: the clusters in the grid; a cluster
// is one CTA unless kClusterM is 2) of the grouped raster over all experts' ragged row ranges
// (empty experts own no tile), so the loads of one tile overlap the epilogue of the previous one.
//  - The loader brings the weight tile and the LoRA A tile by TMA (3-D tensor maps with the
//    128-byte swizzle; parts past K, N or r arrive as zeros) and the x rows: a grouped input's
//    tile rows are contiguous and come by TMA too, gathered rows by cp.async, eight threads per
//    128-byte row slice so that a warp's copy reads whole rows; all complete on the stage's
//    `full` mbarrier. Once a tile's first stages are issued it stages the
//    destination rows and B_e's columns for its epilogue (double-buffered). Without y (x * A^T
//    only, for the backward) the grid runs column tile 0 of each row tile and drops its product.
//  - The accumulators run wgmma on each stage (x * A^T as extra m64n16 products on the same x
//    tile), keep one batch in flight and hand the stage back on its `empty` mbarrier once the
//    batch that read it has completed; then the epilogue of forward_sm90.cuh.
//  - With Cfg::kClusterM == 2 the CTAs run in clusters of two that take the two halves of a
//    2 * BM-row tile: both need the same weight tile, and each loads half of it by TMA multicast
//    into both, so the weight bytes read from L2 per output halve. A stage is refilled once the
//    accumulators of both CTAs have released it (they arrive on the `empty` barriers of both).
//    The second CTA's half may hold no rows (an expert's last tile); it still runs the stages.
//  - Quantized weights are decoded by the accumulators themselves, all of them sharing the tile:
//    while the wgmma batch of k-block kb runs they decode k-block kb + 1 (fetched one k-block
//    earlier) into its stage and fetch kb + 2, then meet at a named barrier. Decoding by the
//    single loading warpgroup was measured slower than the mma.sync kernels (bench/NOTES.md).
#include "moejit/async.cuh"
#include "moejit/forward_sm90.cuh"

namespace moejit {

// The epilogue of the TMA kernel, run by each accumulating warp (`warp` counts those warps) on
// its 16 rows of the tile: x * A^T out when asked, then acc += round(s * x * A^T) * B^T on
// mma.sync (a warp's slice of a wgmma accumulator has the m16n8 fragment layout), the bias,
// rounding and the scatter of the rows. `bs` holds B_e's columns, `slices` 512 bytes per warp of
// scratch for the stores.
// The same steps as the end of ForwardSm90Kernel::run, which keeps its own copy (without v5d's
// destination rows read once) until a GPU run verifies sharing this one (bench/NOTES.md, v5).
template <class Cfg, int BM, int BN, int RP>
__device__ __forceinline__ void sm90_epilogue(const ForwardParams& p, const OutputTile& t,
                                              float (&acc)[BN / 2], float (&xa)[RP / 16][8],
                                              int warp, const char* bs, char* slices,
                                              const long long* dst_rows, bool base) {
  using Act = typename Cfg::Act;
  using BTile = SwizzledTile<BN, RP * 2 / 16>;
  constexpr int N = Cfg::kN, R = Cfg::kRank;
  constexpr bool kBf16 = DTypeTraits<Act>::kIsBf16;
  const int lane = threadIdx.x & 31;
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

#pragma unroll
  // acc += round(s * x * A^T) * B^T on mma.sync, warp by warp.
  for (int kr = 0; kr < RP / 16; ++kr) {
    // The x * A^T accumulator of m64n16 holds, per warp, the m16n8 fragments of two 8-column
    // halves, which packed in pairs are the m16n8k16 A fragment of those 16 ranks: no trip
    // through shared memory.
    unsigned af[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      af[i] = pack2<Act>(p.scale * xa[kr][2 * i], p.scale * xa[kr][2 * i + 1]);
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

  // Bias, round, scatter.
  const Act* bias = static_cast<const Act*>(p.bias);
  Act* y = static_cast<Act*>(p.y);
  auto bias_pair = [&](int col, float& b0, float& b1) {
    b0 = b1 = 0.f;
    if constexpr (Cfg::kHasBias) {
      b0 = to_float(bias[static_cast<long long>(t.expert) * N + col]);
      b1 = to_float(bias[static_cast<long long>(t.expert) * N + col + 1]);
    }
  };
  // With y aligned to 16 bytes (N is a multiple of 8), the warp's 16 rows go out in 16-column
  // slices: the fragments into the warp's 512-byte slice of shared memory, then one
  // 16-byte store per lane, whole 32-byte sectors, instead of four 4-byte fragment stores.
  if ((reinterpret_cast<unsigned long long>(y) & 15) == 0) {
    char* slice = slices + warp * 512;  // 16 rows x 32 bytes
    // Rows 4-7 of each 8 swap their 16-byte halves, so the fragment writes hit distinct banks.
    auto slice_offset = [](int row, int half) { return row * 32 + ((half ^ (row >> 2)) & 1) * 16; };
    const int my_row = lane >> 1, my_half = lane & 1;
    const long long my_dst = warp * 16 + my_row < t.rows ? dst_rows[warp * 16 + my_row] * N : -1;
    __syncwarp();
#pragma unroll
    for (int c = 0; c < BN / 16; ++c) {
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        const int j = 2 * c + jj, col = t.n0 + j * 8 + 2 * tq;
        float b0 = 0.f, b1 = 0.f;
        if (col < N) bias_pair(col, b0, b1);
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int row = g + 8 * half;
          *reinterpret_cast<unsigned*>(slice + slice_offset(row, jj) + tq * 4) =
              pack2<Act>(acc[j * 4 + 2 * half] + b0, acc[j * 4 + 2 * half + 1] + b1);
        }
      }
      __syncwarp();
      unsigned v[4];
      ld_shared_16(v, slice + slice_offset(my_row, my_half));
      const int col = t.n0 + c * 16 + my_half * 8;
      if (my_dst >= 0 && col < N) st_global_16(y + my_dst + col, v);
      __syncwarp();
    }
    return;
  }
  // Otherwise fragment by fragment. The thread's two destination rows are read once: the stores
  // to y might alias dst_rows for all the compiler knows, so it would reload them.
  long long dst_offset[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + half * 8;
    dst_offset[half] = row < t.rows ? dst_rows[row] * N : -1;
  }
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) {
    const int col = t.n0 + j * 8 + 2 * tq;
    if (col >= N) continue;
    float b0, b1;
    bias_pair(col, b0, b1);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      if (dst_offset[half] >= 0) {
        *reinterpret_cast<unsigned*>(y + dst_offset[half] + col) =
            pack2<Act>(acc[j * 4 + 2 * half] + b0, acc[j * 4 + 2 * half + 1] + b1);
      }
    }
  }
}

template <class Cfg>
struct ForwardTmaKernel {
  using Act = typename Cfg::Act;
  using Index = typename Cfg::Index;
  using LoraB = typename Cfg::LoraB;
  static constexpr int E = Cfg::kExperts, K = Cfg::kK, N = Cfg::kN, R = Cfg::kRank;
  static constexpr int BM = Cfg::kBlockM, BN = Cfg::kBlockN, BK = 64, STAGES = Cfg::kStages;
  static constexpr bool kBf16 = DTypeTraits<Act>::kIsBf16;
  static constexpr bool kInOut = Cfg::kWeightInOut;  // weight tile N-contiguous: B transposed
  static constexpr int kConsumers = BM / 64;
  static constexpr int kCluster = Cfg::kClusterM;  // CTAs sharing each weight tile
  static constexpr int kTileRows = BM * kCluster;  // rows of a cluster's tile
  // Each accumulating warp releases a stage once per CTA of the cluster.
  static constexpr int kEmptyArrivals = kConsumers * 4 * kCluster;
  static constexpr int kConsumerThreads = 128 * kConsumers;
  static constexpr int kThreads = 128 + kConsumerThreads;
  static constexpr int RP = (R + 15) / 16 * 16;
  static constexpr int KB = (K + BK - 1) / BK;
  static constexpr int N_TILES = (N + BN - 1) / BN;
  static constexpr int kRasterGroup = 8;  // row tiles that walk the column tiles together
  static constexpr bool kQuant =
      Cfg::kWeightFormat == kWeightNf4 || Cfg::kWeightFormat == kWeightInt8;
  // Registers per thread after reallocation, within what the CTA holds at launch (ptxas gives a
  // 384-thread CTA 168 each, a 256-thread one 232).
  static constexpr int kLoaderRegisters = kConsumers == 1 ? 152 : 80;
  static constexpr int kConsumerRegisters = kConsumers == 1 ? 232 : 208;
  static_assert(128 * kLoaderRegisters + kConsumerThreads * kConsumerRegisters <=
                    (kConsumers == 1 ? 256 * 232 : 384 * 168),
                "register reallocation beyond the launch allocation");

  static_assert(Cfg::kBlockK == 64, "the sm90 kernels read 128-byte (64-element) k slices");
  static_assert(IsSame<typename Cfg::Lora, Act>::value && IsSame<LoraB, Act>::value,
                "the sm90 kernels need lora dtype == act");
  static_assert(BM == 64 || BM == 128, "block_m is one or two warpgroups of 64 rows");
  static_assert(BN == 64 || BN == 128 || BN == 256, "block_n must be 64, 128 or 256");
  static_assert(STAGES >= (kQuant ? 3 : 2),
                "at least two stages; three for quantized weights, whose k-block kb + 1 is decoded "
                "into its stage while the batches of kb - 1 and kb may still read theirs");
  static_assert(RP <= 256, "a TMA box holds at most 256 rows");
  static_assert(K % 8 == 0 && N % 8 == 0, "K and N must be multiples of 8 (16-byte rows)");
  static_assert(kCluster == 1 || (kCluster == 2 && !kQuant && BN >= 128),
                "clusters of two CTAs multicast 16-bit weight tiles of 128 or 256 columns");

  using XTile = SwizzledTile<BM, 8>;
  using BTile = SwizzledTile<BN, RP * 2 / 16>;
  static constexpr int kXBytes = BM * 128, kWBytes = BN * 128, kABytes = RP * 128;
  static constexpr int kStageBytes = kXBytes + kWBytes + kABytes;  // a multiple of 1024
  // Per-tile epilogue inputs, double-buffered: B_e's columns, then the destination rows.
  static constexpr int kInputsBytes = BTile::kBytes + BM * 8;
  static constexpr int kInputsOffset = STAGES * kStageBytes;
  static constexpr int kSlicesOffset = kInputsOffset + 2 * kInputsBytes;  // 512 bytes per warp
  static constexpr int kBarriersOffset = kSlicesOffset + BM * 32;
  // full[STAGES], empty[STAGES], inputs_full[2], inputs_empty[2]
  static constexpr int kTablesOffset = kBarriersOffset + (2 * STAGES + 4) * 8;
  static constexpr int kTileStartOffset =
      kTablesOffset +
      (Cfg::kWeightFormat == kWeightNf4 ? static_cast<int>(sizeof(QuantTables)) : 0);
  static constexpr int kSmemBytes = 1024 + kTileStartOffset + (E + 1) * 8;  // 1024: alignment
  static_assert(kSmemBytes == Cfg::kSmemBytes,
                "host and device disagree on the shared-memory layout (see compiler/source.cpp)");

  // An accumulating thread's share of a quantized weight tile (BN * 8 chunks of 16 bytes).
  using WeightFetch = QuantWeightFetch<Cfg::kWeightFormat, Cfg::kQuantBlocksize, Cfg::kDoubleQuant,
                                       BN * 8, kConsumerThreads, 128>;
  static constexpr int kConsumerBarrier = 1;  // named barrier of the accumulating threads
  using Barriers = PipelineBarriers<STAGES>;

  // The tiles of the whole grid, visited in the same order by every role of a CTA.
  struct Schedule {
    const long long* tile_start;  // [E + 1] first row tile of each expert, then the total
    long long linear_end;
    long long first, stride;  // this cluster's first linear tile index; clusters in the grid
    int cta_rank;             // in the cluster
  };

  // This CTA's output tile of linear index `linear` (its cluster's); false when it has none (past
  // the last row tile, or not column tile 0 when only x * A^T is wanted). In a cluster, rank r
  // takes rows [r * BM, (r + 1) * BM) of the cluster's tile, and may get none of them.
  __device__ static bool tile_at(const ForwardParams& p, const Schedule& s, long long linear,
                                 bool base, OutputTile& t) {
    long long row_tile = 0;
    int col_tile = 0;
    if (base)
      grouped_raster<N_TILES, kRasterGroup>(linear, row_tile, col_tile);
    else  // only x * A^T: column tile 0 of each row tile
      row_tile = linear;
    long long begin = 0, end = 0;
    if (!locate_row_tile<E, Index>(p, s.tile_start, row_tile, t.expert, begin, end)) return false;
    t.n0 = col_tile * BN;
    t.row_begin = begin + (row_tile - s.tile_start[t.expert]) * kTileRows + s.cta_rank * BM;
    const long long row_end = t.row_begin + BM < end ? t.row_begin + BM : end;
    t.rows = row_end > t.row_begin ? static_cast<int>(row_end - t.row_begin) : 0;
    return true;
  }

  // The x row of row `row` of tile t; -1 past its rows.
  __device__ static long long source_row(const ForwardParams& p, const OutputTile& t, int row) {
    long long src, dst;
    tile_row_ends<Cfg>(p, t, row, src, dst);
    return src;
  }

  // The loader's per-tile work for the epilogue: the destination row of its x row and B_e's
  // columns (act dtype, zero-padded to RP ranks) into `inputs`. B_e's elements are scattered (the
  // PEFT storage interleaves experts), so the time goes in load latency: 16 loads in flight where
  // registers allow (else 8), issued before the stores, which could alias them.
  // While the loader waits here it issues no stage, and the accumulators would soon starve
  // (measured: four round trips per tile cost qwen3 gate_up a quarter of its time).
  __device__ static void stage_inputs(const ForwardParams& p, const OutputTile& t, char* inputs,
                                      int my_row, long long dst, bool first_of_row, bool base) {
    const LoraB* lora_b = static_cast<const LoraB*>(p.lora_b);
    if constexpr (Cfg::kBStorage == kBStorageRowMajorT) {
      // B_e^T rows (packed by pack_b): 8 columns of one rank are 16 contiguous bytes (N and n0
      // are multiples of 8), so one 16-byte load each, a batch of up to 4 in flight before its
      // stores (16 registers: no spills; a batch past kPerThread has idx >= kChunks: no load, no
      // store).
      constexpr int kChunks = BN / 8 * RP, kPerThread = (kChunks + 127) / 128;
      constexpr int kBatch = kPerThread < 4 ? kPerThread : 4;
      for (int u0 = 0; u0 < kPerThread; u0 += kBatch) {
        unsigned v[kBatch][4];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          const int idx = (u0 + u) * 128 + threadIdx.x, j = idx / (BN / 8);
          const int o = t.n0 + idx % (BN / 8) * 8;
          v[u][0] = v[u][1] = v[u][2] = v[u][3] = 0;
          if (base && idx < kChunks && j < R && o < N)
            ld_global_16(v[u], lora_b + (static_cast<long long>(t.expert) * R + j) * N + o);
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          const int idx = (u0 + u) * 128 + threadIdx.x, j = idx / (BN / 8), n = idx % (BN / 8) * 8;
          if (idx < kChunks)
#pragma unroll
            for (int e = 0; e < 8; ++e)
              *reinterpret_cast<unsigned short*>(inputs + BTile::byte_offset(n + e, j, 2)) =
                  static_cast<unsigned short>(v[u][e / 2] >> (16 * (e % 2)));
        }
      }
      if (first_of_row) reinterpret_cast<long long*>(inputs + BTile::kBytes)[my_row] = dst;
      return;
    }
    constexpr int kPerThread = BN * RP / 128;
    // 16 loads in flight where ptxas keeps them in registers (it spilled with quantized weights,
    // with block_n 128 at r = 16 and with block_m 64 at r = 64).
    constexpr int kBatch =
        !kQuant && BM == 128 && kPerThread % 16 == 0 && kPerThread >= 32 ? 16 : 8;
    static_assert(kPerThread % kBatch == 0, "B tile elements per loader thread");
    for (int i0 = 0; base && i0 < kPerThread; i0 += kBatch) {
      LoraB v[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int idx = (i0 + u) * 128 + threadIdx.x, n = idx / RP, j = idx % RP, o = t.n0 + n;
        v[u] = j < R && o < N ? lora_b[lora_b_index<Cfg::kBStorage, E, N, R>(t.expert, o, j)]
                              : LoraB{};
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int idx = (i0 + u) * 128 + threadIdx.x, n = idx / RP, j = idx % RP;
        *reinterpret_cast<Act*>(inputs + BTile::byte_offset(n, j, 2)) = v[u];
      }
    }
    if (first_of_row) reinterpret_cast<long long*>(inputs + BTile::kBytes)[my_row] = dst;
  }

  __device__ static void load(const ForwardParams& p, const ForwardTensorMaps& maps, char* smem,
                              const Barriers& bars, const Schedule& s, bool base) {
    // x: thread i copies 16-byte chunk i % 8 of rows i / 8, i / 8 + 16, ... of each stage, so a
    // warp's copy instruction reads four whole 128-byte row slices (one row per thread would
    // touch 32 rows and half of each 32-byte sector).
    constexpr int kRowsPerThread = BM / 16;
    const int x_row0 = threadIdx.x / 8, x_chunk = threadIdx.x % 8;
    // The epilogue's destination rows: one per thread.
    const int my_row = threadIdx.x;
    const bool leader = threadIdx.x == 0;
    if (leader) {
      if (!kQuant) prefetch_tensor_map(&maps.w);  // not encoded otherwise
      prefetch_tensor_map(&maps.a);
      if constexpr (Cfg::kGroupedIn) prefetch_tensor_map(&maps.x);
    }
    const char* x = static_cast<const char*>(p.x);
    // The whole weight tile: in a cluster half of it comes from the other CTA's multicast.
    const unsigned tx_bytes = (kQuant ? 0 : kWBytes) + kABytes + (Cfg::kGroupedIn ? kXBytes : 0);
    auto load_w = [&](unsigned dst, unsigned full, int c0, int c1, int expert) {
      if constexpr (kCluster == 1)
        tma_load_3d(dst, &maps.w, full, c0, c1, expert);
      else
        tma_load_3d_multicast(dst, &maps.w, full, c0, c1, expert, (1u << kCluster) - 1);
    };
    RingPosition<STAGES> stage;
    RingPosition<2> inputs;
    for (long long linear = s.first; linear < s.linear_end; linear += s.stride) {
      OutputTile t;
      if (!tile_at(p, s, linear, base, t)) continue;
      // x rows (fewer than 2^31), 32-bit so the loader does not spill; a grouped input's come by
      // TMA.
      int src[kRowsPerThread] = {};
      if constexpr (!Cfg::kGroupedIn) {
#pragma unroll
        for (int i = 0; i < kRowsPerThread; ++i)
          src[i] = static_cast<int>(source_row(p, t, x_row0 + 16 * i));
      }
      // Staged once the tile's first stages are issued: the accumulators need them only in the
      // epilogue, and the loader would otherwise wait for a free stage meanwhile. (The destination
      // rows are looked up then rather than held in registers across the stages.)
      auto stage_epilogue_inputs = [&] {
        long long unused_src, dst;
        tile_row_ends<Cfg>(p, t, my_row, unused_src, dst);
        mbarrier_wait(bars.inputs_empty(inputs.slot), inputs.phase ^ 1);
        stage_inputs(p, t, smem + kInputsOffset + inputs.slot * kInputsBytes, my_row, dst,
                     my_row < BM, base);
        mbarrier_arrive(bars.inputs_full(inputs.slot));
        inputs.advance();
      };
      // One stage: the weight tile (16-bit weights), the A tile and a grouped x tile by TMA,
      // gathered x rows by cp.async. Quantized weight tiles are the accumulators' own work.
      auto fill_stage = [&](int kb) {
        // In a cluster, released by the accumulators of every CTA this one's multicast writes to.
        mbarrier_wait(bars.empty(stage.slot), stage.phase ^ 1);
        char* st = smem + stage.slot * kStageBytes;
        const unsigned full = bars.full(stage.slot);
        if (leader) {
          mbarrier_arrive_expect_tx(full, tx_bytes);
          const unsigned ws = smem_addr(st + kXBytes);
          if (!kQuant) {
            if constexpr (kInOut) {  // blocks of 64 n, each 64 rows of k; rank r loads every
                                     // kCluster-th block starting at r
#pragma unroll
              for (int b = 0; b < BN / 64; b += kCluster) {
                const int block = b + s.cta_rank;
                load_w(ws + block * 64 * 128, full, t.n0 + block * 64, kb * BK, t.expert);
              }
            } else {  // rank r loads rows [r, r + 1) * BN / kCluster (the map's box)
              constexpr int kPart = BN / kCluster;
              load_w(ws + s.cta_rank * kPart * 128, full, kb * BK, t.n0 + s.cta_rank * kPart,
                     t.expert);
            }
          }
          tma_load_3d(ws + kWBytes, &maps.a, full, kb * BK, 0, t.expert);
          // Grouped input: the tile's rows are contiguous (rows past it, another expert's or
          // past the end as zeros, feed only accumulator rows that are never stored).
          if constexpr (Cfg::kGroupedIn)
            tma_load_3d(smem_addr(st), &maps.x, full, kb * BK, static_cast<int>(t.row_begin), 0);
        }
        if constexpr (Cfg::kGroupedIn) {
          mbarrier_arrive(full);
        } else {
          const int k = kb * BK + x_chunk * 8;
#pragma unroll
          for (int i = 0; i < kRowsPerThread; ++i) {
            const bool valid = src[i] >= 0 && k < K;
            cp_async_16(st + XTile::chunk_offset(x_row0 + 16 * i, x_chunk) * 16,
                        valid ? x + (static_cast<long long>(src[i]) * K + k) * 2 : x, valid);
          }
          cp_async_mbarrier_arrive(full);
        }
        stage.advance();
      };
      constexpr int kInputsAfter = (STAGES < KB ? STAGES : KB) - 1;
      for (int kb = 0; kb < KB; ++kb) {
        fill_stage(kb);
        if (kb == kInputsAfter) stage_epilogue_inputs();
      }
    }
    cp_async_wait<0>();  // no copy outlives its thread
  }

  __device__ static void compute(const ForwardParams& p, char* smem, const Barriers& bars,
                                 const Schedule& s, bool base) {
    const int warp = (threadIdx.x - 128) >> 5;  // among the accumulating warps
    const int wg = warp >> 2;
    const int lane = threadIdx.x & 31;
    // A stage is released once per warp (its wgmma_wait covers the warp's lanes), to each CTA of
    // the cluster by its own lane.
    auto release = [&](int slot) {
      if constexpr (kCluster == 1) {
        if (lane == 0) mbarrier_arrive(bars.empty(slot));
      } else {
        if (lane < kCluster) mbarrier_arrive_cluster(map_shared_to_cta(bars.empty(slot), lane));
      }
    };
    RingPosition<STAGES> stage;
    RingPosition<2> inputs;
    const QuantTables* tables = reinterpret_cast<const QuantTables*>(smem + kTablesOffset);
    WeightFetch fetched;  // quantized weights: the packed words of the next k-block to decode
    for (long long linear = s.first; linear < s.linear_end; linear += s.stride) {
      OutputTile t;
      if (!tile_at(p, s, linear, base, t)) continue;
      auto fetch = [&](int kb) {
        fetched.fetch(p, [&](int c, long long& flat, long long& row_len, int& chunk) {
          return sm90_quant_chunk<Cfg, BN>(t, kb, c, flat, row_len, chunk);
        });
      };
      // Decodes the fetched k-block into the weight tile of stage `slot`, visible to the wgmma
      // (async proxy) of every accumulating thread once they have all met at the barrier.
      auto decode_into = [&](int slot) {
        fetched.template store<Act>(smem + slot * kStageBytes + kXBytes, tables, p.offset);
        fence_proxy_async();
      };
      // Quantized weights: k-block 0 into the tile's first stage, whose last reader has completed.
      if constexpr (kQuant) {
        fetch(0);
        decode_into(stage.slot);
        if (KB > 1) fetch(1);
        named_barrier_sync(kConsumerBarrier, kConsumerThreads);
      }
      float acc[BN / 2];
      float xa[RP / 16][8];
#pragma unroll
      for (int i = 0; i < BN / 2; ++i) acc[i] = 0.f;
#pragma unroll
      for (int q = 0; q < RP / 16; ++q)
#pragma unroll
        for (int i = 0; i < 8; ++i) xa[q][i] = 0.f;
      int in_flight = -1;  // the stage the wgmma batch still running reads
      for (int kb = 0; kb < KB; ++kb) {
        mbarrier_wait(bars.full(stage.slot), stage.phase);
        // Gathered x rows came through cp.async (generic proxy); TMA-loaded ones need no fence.
        if constexpr (!Cfg::kGroupedIn) fence_proxy_async();
        const char* st = smem + stage.slot * kStageBytes;
        const char* xs = st + wg * 64 * 128;
        const char* ws = st + kXBytes;
        const char* as = ws + kWBytes;
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
          const unsigned long long da = wgmma_desc_k128(xs + kk * 32);
          // Also without y (column tile 0 only, acc unused): a wgmma behind a branch makes ptxas
          // fence the accumulators around it (C7519), a dummy HGMMA in every k-block.
          if constexpr (kInOut) {
            Wgmma<BN>::template mma<kBf16, true>(acc, da,
                                                 wgmma_desc_mn128(ws + kk * 2048, 64 * 128));
          } else {
            Wgmma<BN>::template mma<kBf16>(acc, da, wgmma_desc_k128(ws + kk * 32));
          }
#pragma unroll
          for (int q = 0; q < RP / 16; ++q)
            Wgmma<16>::template mma<kBf16>(xa[q], da, wgmma_desc_k128(as + q * 16 * 128 + kk * 32));
        }
        wgmma_commit();
        // Quantized weights: k-block kb + 1 into the next stage while this batch runs. That
        // stage's last reader, k-block kb + 1 - STAGES <= kb - 2, has completed in both
        // warpgroups: each passed wgmma_wait<1> of iteration kb - 1 (or wgmma_wait<0> at the end
        // of its previous tile) before the named barrier this thread passed since. The barrier
        // must therefore stay after wgmma_wait<1>.
        const bool decode_next = kQuant && kb + 1 < KB;
        if constexpr (kQuant) {
          if (decode_next) {
            decode_into(stage.slot + 1 == STAGES ? 0 : stage.slot + 1);
            if (kb + 2 < KB) fetch(kb + 2);
          }
        }
        wgmma_wait<1>();
        if (in_flight >= 0) release(in_flight);
        in_flight = stage.slot;
        stage.advance();
        if constexpr (kQuant) {
          if (decode_next) named_barrier_sync(kConsumerBarrier, kConsumerThreads);
        }
      }
      wgmma_wait<0>();
      wgmma_fence_operands(acc);
#pragma unroll
      for (int q = 0; q < RP / 16; ++q) wgmma_fence_operands(xa[q]);
      if (in_flight >= 0) release(in_flight);

      mbarrier_wait(bars.inputs_full(inputs.slot), inputs.phase);
      const char* in = smem + kInputsOffset + inputs.slot * kInputsBytes;
      sm90_epilogue<Cfg, BM, BN, RP>(p, t, acc, xa, warp, in, smem + kSlicesOffset,
                                     reinterpret_cast<const long long*>(in + BTile::kBytes), base);
      mbarrier_arrive(bars.inputs_empty(inputs.slot));
      inputs.advance();
    }
  }

  __device__ static void run(const ForwardParams& p, const ForwardTensorMaps& maps) {
    extern __shared__ __align__(1024) char smem_raw[];
    // The 128-byte swizzle (TMA and wgmma) is anchored to 1024-byte boundaries.
    char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    const Barriers bars{smem_addr(smem + kBarriersOffset)};
    long long* tile_start = reinterpret_cast<long long*>(smem + kTileStartOffset);
    if (threadIdx.x == 0) {
      for (int s = 0; s < STAGES; ++s) {
        // Each loader thread's arrival (after its cp.async, if any) plus the TMA one.
        mbarrier_init(bars.full(s), 128 + 1);
        mbarrier_init(bars.empty(s), kEmptyArrivals);
      }
      for (int b = 0; b < 2; ++b) {
        mbarrier_init(bars.inputs_full(b), 128);
        mbarrier_init(bars.inputs_empty(b), kConsumerThreads);
      }
      fence_mbarrier_init();
    }
    if (threadIdx.x < 32) count_row_tiles<E, Index, kTileRows>(p, tile_start);
    if constexpr (kQuant)
      stage_quant_tables<Cfg::kWeightFormat>(reinterpret_cast<QuantTables*>(smem + kTablesOffset),
                                             p, Cfg::kDoubleQuant, kThreads);
    // In a cluster the other CTA's multicast and arrivals reach these barriers: initialized
    // first. (cluster_sync is also a CTA-wide barrier.)
    if constexpr (kCluster == 1)
      __syncthreads();
    else
      cluster_sync();
    const bool base = p.y != nullptr;  // y == null: only x * A^T is wanted
    const long long row_tiles = tile_start[E];
    const Schedule s{
        tile_start,
        base ? (row_tiles + kRasterGroup - 1) / kRasterGroup * kRasterGroup * N_TILES : row_tiles,
        blockIdx.x / kCluster, gridDim.x / kCluster,
        kCluster == 1 ? 0 : static_cast<int>(cluster_cta_rank())};
    if (threadIdx.x < 128) {
      release_registers<kLoaderRegisters>();
      load(p, maps, smem, bars, s, base);
    } else {
      claim_registers<kConsumerRegisters>();
      compute(p, smem, bars, s, base);
    }
    // The last releases reach the other CTA's barriers: it must not have exited before.
    if constexpr (kCluster > 1) cluster_sync();
  }
};

template <class Cfg>
__global__ void __launch_bounds__(ForwardTmaKernel<Cfg>::kThreads, 1)
    moe_lora_forward_sm90_tma(const ForwardParams params,
                              const __grid_constant__ ForwardTensorMaps maps) {
  ForwardTmaKernel<Cfg>::run(params, maps);
}

// The same in clusters of two CTAs (Cfg::kClusterM == 2), which multicast the weight tiles.
template <class Cfg>
__global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(ForwardTmaKernel<Cfg>::kThreads, 1)
    moe_lora_forward_sm90_tma_cluster2(const ForwardParams params,
                                       const __grid_constant__ ForwardTensorMaps maps) {
  ForwardTmaKernel<Cfg>::run(params, maps);
}

}  // namespace moejit
