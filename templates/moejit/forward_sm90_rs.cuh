#pragma once
// Hopper (sm_90a) MoE-LoRA GEMM over nf4 or int8_rowwise base weights with the weights as wgmma's
// A operand in registers: a CTA computes y^T = W x^T for BF output features by BR grouped rows, so
// each accumulating thread decodes its own A fragments straight from the packed bytes and no
// decoded weight goes through shared memory. Warp-specialized and persistent like
// forward_sm90_tma.cuh:
//  - one loading warpgroup fills each stage with the x tile (BR rows of 64 k, K-major under the
//    128-byte swizzle: wgmma's B operand) by TMA, from grouped rows: a gathered input's rows
//    were copied in grouped order by the prologue (ForwardParams::x_grouped), because gathering
//    them here by cp.async left the accumulating warps waiting for their stages 29-45% of the
//    time (bench/NOTES.md v17); then the
//    packed weight slice (cp.async) and its statistics: nf4, the fp32 scale of every 8-value
//    group (absmax, or with double quantization code2[q] * absmax2 + offset; a thread's loads are
//    issued two stages ahead of their use, so their latency overlaps the stages between); int8
//    over feature-contiguous weights, the k rows' row_stats (cp.async). Over K-contiguous weights
//    row_stats is per feature: the accumulating threads load their two once per tile;
//  - BF / 64 accumulating warpgroups of 64 features each decode k-block kb + 1 into registers
//    while the wgmma batch of kb runs (two register buffers of A fragments);
//  - x * A^T (fp32, p.xa_in) comes from the prologue kernel the launch runs first (forward.cuh in
//    its x * A^T-only mode, which also writes a gathered input's grouped copy); the loader rounds
//    a tile's rows of s * x * A^T into a 16-bit wgmma operand. The epilogue adds
//    B_e * round(s * x * A^T)^T as a wgmma (B_e's fragments as A, from registers), the bias,
//    rounds, and writes each row's 64 features of a warpgroup (128 bytes) through a
//    shared-memory slice that its warps fill by stmatrix;
//  - a tile of at most 128 rows (an expert's last, often) runs the m64n128 wgmma instead of the
//    tile's full width.
// Stage layout of the weight slice (the rows a warp reads at one time hit distinct banks):
//  - K-contiguous weights (out_in forward, in_out dX): BF rows of 80 bytes, one per feature:
//    nf4, 32 packed bytes (64 k), then the 8 group scales, then 16 bytes of padding; int8, the
//    64 bytes, then padding;
//  - feature-contiguous weights (in_out forward, out_in dX): 64 rows (one per k) of BF + 16 bytes:
//    nf4, per 16 features 8 packed bytes and the scales of their two groups; int8, the BF bytes,
//    then in the padding of rows 0-15 the row_stats of k rows 4i..4i+3.
// Requirements: A-role dtype == act, the weight's contiguous dimension (K for K-contiguous, N
// otherwise) a multiple of 32 (nf4) or 16 (int8), so that packed chunks are 8- or 16-byte
// aligned and lie inside or outside it whole, and r a multiple of 4 (16-byte rows of x * A^T).
#include "moejit/async.cuh"
#include "moejit/forward_sm90.cuh"

namespace moejit {

// Byte `selector & 7` of the 8 bytes {hi, lo} (lo = bytes 0-3), sign-extended: `selector` is a
// prmt control whose other three nibbles are (selector & 7) | 8, so one prmt does both.
__device__ __forceinline__ int signed_byte(unsigned lo, unsigned hi, unsigned selector) {
  int out;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(out) : "r"(lo), "r"(hi), "r"(selector));
  return out;
}
__device__ __forceinline__ unsigned signed_byte_selector(unsigned byte) {
  return byte | (byte | 8u) * 0x1110u;
}

// The 8 x 8 matrix of 16-bit values held a row per four lanes (lane 4r + c: columns 2c, 2c + 1
// of row r), transposed across the warp into the same layout. Every call site is warp-uniform.
__device__ __forceinline__ unsigned transpose_8x8(unsigned v) {
  unsigned out;
  asm("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(out) : "r"(v));
  return out;
}

// Keeps the compiler from reusing the registers of A fragments an in-flight wgmma still reads.
template <int R>
__device__ __forceinline__ void wgmma_fence_fragments(unsigned (&a)[R][4]) {
#pragma unroll
  for (int i = 0; i < R; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) asm volatile("" : "+r"(a[i][j])::"memory");
}

inline constexpr int log2_exact(int v) {
  return v <= 1 ? 0 : 1 + log2_exact(v / 2);
}

template <int V>
struct IntConstant {
  static constexpr int value = V;
};

template <class Cfg>
struct ForwardRsKernel {
  using Act = typename Cfg::Act;
  using Index = typename Cfg::Index;
  using LoraB = typename Cfg::LoraB;
  static constexpr int E = Cfg::kExperts, K = Cfg::kK, N = Cfg::kN, R = Cfg::kRank;
  static constexpr int BR = Cfg::kBlockM, BF = Cfg::kBlockN, BK = 64, STAGES = Cfg::kStages;
  static constexpr bool kBf16 = DTypeTraits<Act>::kIsBf16;
  static constexpr bool kKContig = !Cfg::kWeightInOut;  // a feature's k values adjacent in memory
  static constexpr int kConsumers = BF / 64;
  static constexpr int kConsumerThreads = 128 * kConsumers;
  static constexpr int kThreads = 128 + kConsumerThreads;
  static constexpr int RP = (R + 15) / 16 * 16;
  static constexpr int KB = (K + BK - 1) / BK;
  static constexpr int N_TILES = (N + BF - 1) / BF;
  static constexpr int kRasterGroup = 8;
  // A tile with at most this many rows runs the narrower wgmma (see compute).
  static constexpr int kNarrowRows = 128;
  static constexpr int kNarrowWidth = kNarrowRows < BR ? kNarrowRows : BR;
  static constexpr bool kNf4 = Cfg::kWeightFormat == kWeightNf4;
  static constexpr int kBlocksize = kNf4 ? Cfg::kQuantBlocksize : BK;  // int8: not used
  static constexpr int kBlockShift = log2_exact(kBlocksize);
  // Registers per thread after reallocation, within what the CTA holds at launch (ptxas gives a
  // 384-thread CTA 168 each, a 256-thread one 232).
  static constexpr int kLoaderRegisters = 88;
  static constexpr int kConsumerRegisters = kConsumers == 1 ? 240 : 200;
  static_assert(128 * kLoaderRegisters + kConsumerThreads * kConsumerRegisters <=
                    (kConsumers == 1 ? 256 * 232 : 384 * 168),
                "register reallocation beyond the launch allocation");

  static_assert(kNf4 || Cfg::kWeightFormat == kWeightInt8,
                "the register-operand kernel decodes nf4 or int8_rowwise");
  static_assert(kBlocksize >= 32 && (kBlocksize & (kBlocksize - 1)) == 0,
                "nf4 blocksize must be a power of two of at least 32");
  static_assert(Cfg::kBlockK == 64, "64-element k slices");
  static_assert(IsSame<typename Cfg::Lora, Act>::value && IsSame<LoraB, Act>::value,
                "the sm90 kernels need lora dtype == act");
  static_assert(BR == 128 || BR == 192 || BR == 256,
                "block_m (rows, wgmma's N) of 128, 192 or 256");
  static_assert(BF == 64 || BF == 128, "block_n (features) of one or two warpgroups of 64");
  static_assert(STAGES >= 2, "at least two stages");
  static_assert(Cfg::kGroupedIn, "x in grouped rows, loaded by TMA (see the header)");
  static_assert(RP <= 64, "rank up to 64 (the epilogue's B_e fragments live in registers)");
  static_assert(R % 4 == 0, "rank a multiple of 4 (x * A^T rows in 16-byte units)");
  static_assert((kKContig ? K : N) % (kNf4 ? 32 : 16) == 0,
                "the weight's contiguous dimension must be a multiple of 32 (nf4) or 16 (int8)");
  static_assert(K % 8 == 0 && N % 8 == 0, "K and N must be multiples of 8 (16-byte rows)");

  // The weight slice of a stage (see the header).
  static constexpr int kWRows = kKContig ? BF : BK;
  static constexpr int kWStride = kKContig ? 80 : BF + 16;
  static constexpr int kXBytes = BR * 128, kWBytes = kWRows * kWStride;
  static constexpr int kStageBytes = kXBytes + kWBytes;
  static_assert(kStageBytes % 1024 == 0, "stages keep the x tiles on 1024-byte boundaries");
  // Per-tile epilogue inputs, double-buffered: the LoRA term's B operand, round(s * x * A^T) of
  // the tile's rows in the act dtype ([RP / 8][BR][8], see stage_inputs), then the destination
  // rows.
  static constexpr int kLoraOperandBytes = BR * RP * 2;
  static constexpr int kInputsBytes = kLoraOperandBytes + BR * 8;
  static constexpr int kInputsOffset = STAGES * kStageBytes;
  static constexpr int kSlicesOffset = kInputsOffset + 2 * kInputsBytes;  // 4 KB a warpgroup
  static constexpr int kBarriersOffset = kSlicesOffset + kConsumers * 4 * 1024;
  // full[STAGES], empty[STAGES], inputs_full[2], inputs_empty[2]
  static constexpr int kTablesOffset = kBarriersOffset + (2 * STAGES + 4) * 8;
  static constexpr int kTileStartOffset = kTablesOffset + static_cast<int>(sizeof(QuantTables));
  static constexpr int kSmemBytes = 1024 + kTileStartOffset + (E + 1) * 8;  // 1024: alignment
  static_assert(kSmemBytes == Cfg::kSmemBytes,
                "host and device disagree on the shared-memory layout (see compiler/source.cpp)");

  // A loader thread's share of the group scales: one segment of kSegValues consecutive flat
  // values (a feature's 64 k, or half of a k row's BF features), kSegValues / 8 groups.
  static constexpr int kSegValues = kKContig ? BK : BF / 2;
  static constexpr int kSegGroups = kSegValues / 8;
  // A 64-aligned segment lies inside one block of 64 or more (the usual case: saves the loader
  // the registers and selects of a second block).
  static constexpr bool kSegInOneBlock =
      kBlocksize >= kSegValues && (kKContig ? K : N) % kSegValues == 0;
  static constexpr int kSegBlocks =
      kSegInOneBlock ? 1 : (kSegValues + kBlocksize - 1) / kBlocksize + 1;
  static constexpr int kScaleThreads = kKContig ? BF : 2 * BK;

  using Barriers = PipelineBarriers<STAGES>;

  struct Schedule {
    const long long* tile_start;  // [E + 1] first row tile of each expert, then the total
    long long linear_end, first, stride;
  };

  __device__ static bool tile_at(const ForwardParams& p, const Schedule& s, long long linear,
                                 OutputTile& t) {
    long long row_tile = 0;
    int col_tile = 0;
    grouped_raster<N_TILES, kRasterGroup>(linear, row_tile, col_tile);
    long long begin = 0, end = 0;
    if (!locate_row_tile<E, Index>(p, s.tile_start, row_tile, t.expert, begin, end)) return false;
    t.n0 = col_tile * BF;
    t.row_begin = begin + (row_tile - s.tile_start[t.expert]) * BR;
    const long long row_end = t.row_begin + BR < end ? t.row_begin + BR : end;
    t.rows = static_cast<int>(row_end - t.row_begin);
    return t.rows > 0;
  }

  // Flat index of weight element (feature n, reduction index k) of expert e.
  __device__ static long long flat_index(int e, int n, int k) {
    return kKContig ? (static_cast<long long>(e) * N + n) * K + k
                    : (static_cast<long long>(e) * K + k) * N + n;
  }

  // A loader thread's segment of k-block kb's slice: its first flat value and how many of its
  // groups lie inside K and N (a prefix; the others get scale 0, so their zero-filled bytes decode
  // to zeros).
  struct Segment {
    long long flat0;
    int groups;
  };
  __device__ static Segment segment(const OutputTile& t, int kb) {
    if (threadIdx.x >= kScaleThreads) return {0, 0};
    int n, k, left;
    bool inside;
    if constexpr (kKContig) {
      n = t.n0 + threadIdx.x;
      k = kb * BK;
      left = (K - k) / 8;
      inside = n < N;
    } else {
      n = t.n0 + (threadIdx.x & 1) * kSegValues;
      k = kb * BK + (threadIdx.x >> 1);
      left = (N - n) / 8;
      inside = k < K && n < N;
    }
    return {flat_index(t.expert, n, k), inside ? (left < kSegGroups ? left : kSegGroups) : 0};
  }

  // One loader thread's block statistics of one stage: loads issued by fetch (two stages ahead of
  // their use, so that their latency overlaps), turned into group scales by store.
  struct ScaleFetch {
    float absmax[kSegBlocks];      // absmax, or absmax2 of the block with double quantization
    unsigned qabsmax[kSegBlocks];  // double quantization only

    __device__ void fetch(const ForwardParams& p, const OutputTile& t, int kb) {
      const Segment seg = segment(t, kb);
      const long long first_block = seg.flat0 >> kBlockShift;
      const long long last_block = (seg.flat0 + 8 * seg.groups - 1) >> kBlockShift;
#pragma unroll
      for (int j = 0; j < kSegBlocks; ++j) {
        absmax[j] = 0.f;
        qabsmax[j] = 0;
        if (seg.groups == 0) continue;
        const long long b = first_block + j <= last_block ? first_block + j : last_block;
        if constexpr (Cfg::kDoubleQuant) {
          qabsmax[j] = __ldg(static_cast<const unsigned char*>(p.absmax) + b);
          absmax[j] = __ldg(static_cast<const float*>(p.absmax2) + b / kAbsmax2Blocksize);
        } else {
          absmax[j] = __ldg(static_cast<const float*>(p.absmax) + b);
        }
      }
    }

    __device__ void store(const OutputTile& t, int kb, char* w_area, const QuantTables* tables,
                          float offset) const {
      if (threadIdx.x >= kScaleThreads) return;
      const Segment seg = segment(t, kb);
      // flat0's offset in its block: the groups' block indices relative to the first, in 32 bits.
      const unsigned in_block = static_cast<unsigned>(seg.flat0) & (kBlocksize - 1);
      float block_scale[kSegBlocks];
#pragma unroll
      for (int j = 0; j < kSegBlocks; ++j)
        block_scale[j] = Cfg::kDoubleQuant
                             ? add_rn(mul_rn(tables->code2[qabsmax[j]], absmax[j]), offset)
                             : absmax[j];
      float scale[kSegGroups];
#pragma unroll
      for (int g = 0; g < kSegGroups; ++g) {
        const int j = static_cast<int>((in_block + 8 * g) >> kBlockShift);
        float v = block_scale[0];
#pragma unroll
        for (int i = 1; i < kSegBlocks; ++i) v = j == i ? block_scale[i] : v;
        scale[g] = g < seg.groups ? v : 0.f;
      }
      if constexpr (kKContig) {
        float4* dst = reinterpret_cast<float4*>(w_area + threadIdx.x * kWStride + 32);
        dst[0] = float4{scale[0], scale[1], scale[2], scale[3]};
        dst[1] = float4{scale[4], scale[5], scale[6], scale[7]};
      } else {
        char* row = w_area + (threadIdx.x >> 1) * kWStride + (threadIdx.x & 1) * (BF / 2);
#pragma unroll
        for (int c = 0; c < kSegGroups / 2; ++c)
          *reinterpret_cast<float2*>(row + c * 16 + 8) = float2{scale[2 * c], scale[2 * c + 1]};
      }
    }
  };

  // The weight slice of k-block kb (see the header) by cp.async: 16-byte chunks of a feature's
  // k values, or of 16 features of one k (nf4: 8 bytes); int8 over feature-contiguous weights
  // also the row_stats of the 64 k rows, four per chunk. Chunks past K or N are zero-filled (so
  // are nf4's scales there), so they decode to zeros.
  __device__ static void copy_packed(const ForwardParams& p, const OutputTile& t, int kb,
                                     char* w_area) {
    const unsigned char* w = static_cast<const unsigned char*>(p.w);
    constexpr int kValueShift = kNf4 ? 1 : 0;  // flat index -> byte
    constexpr int kFeatureChunks = (BK >> kValueShift) / 16;
    constexpr int kChunks = kKContig ? BF * kFeatureChunks : BK * (BF / 16);
#pragma unroll
    for (int c = threadIdx.x; c < kChunks; c += 128) {
      if constexpr (kKContig) {
        const int row = c / kFeatureChunks, part = c % kFeatureChunks;
        const int n = t.n0 + row, k = kb * BK + (part << (4 + kValueShift));
        const bool valid = n < N && k < K;
        cp_async_16(w_area + row * kWStride + part * 16,
                    valid ? w + (flat_index(t.expert, n, k) >> kValueShift) : w, valid);
      } else {
        const int row = c / (BF / 16), chunk = c % (BF / 16);
        const int k = kb * BK + row, n = t.n0 + chunk * 16;
        const bool valid = n < N && k < K;
        const unsigned char* src = valid ? w + (flat_index(t.expert, n, k) >> kValueShift) : w;
        if constexpr (kNf4)
          cp_async_8(w_area + row * kWStride + chunk * 16, src, valid);
        else
          cp_async_16(w_area + row * kWStride + chunk * 16, src, valid);
      }
    }
    if constexpr (!kNf4 && !kKContig) {
      if (threadIdx.x < BK / 4) {
        const float* row_stats = static_cast<const float*>(p.absmax);
        const int k = kb * BK + 4 * threadIdx.x;
        cp_async_16(w_area + threadIdx.x * kWStride + BF,
                    k < K ? row_stats + static_cast<long long>(t.expert) * K + k : row_stats,
                    k < K);
      }
    }
  }

  // The loader's per-tile epilogue inputs: the destination rows, and the LoRA term's B operand
  // from the tile's fp32 rows of x * A^T: round(s * x * A^T) in the act dtype, K-major without
  // swizzle (core matrices of 8 rows x 16 bytes), ranks 8c..8c + 7 of row j at (c * BR + j) * 16
  // bytes. Rows past the tile and ranks past r are zeros (B_e's padded ranks are zeros, and
  // 0 * NaN of a stale value would not be). Written by the generic proxy for the wgmma, so
  // fenced before each loader thread's arrival on `full`.
  __device__ static void stage_inputs(const ForwardParams& p, const OutputTile& t, char* inputs,
                                      unsigned full) {
    long long* dst_rows = reinterpret_cast<long long*>(inputs + kLoraOperandBytes);
#pragma unroll
    for (int i = 0; i < (BR + 127) / 128; ++i) {
      if (threadIdx.x + 128 * i >= BR) break;
      long long src, dst;
      tile_row_ends<Cfg>(p, t, threadIdx.x + 128 * i, src, dst);
      dst_rows[threadIdx.x + 128 * i] = dst;
    }
    constexpr int kChunks = BR * RP / 8;
    static_assert(kChunks % 128 == 0, "whole rounds of the loader's 128 threads");
    const float* xa = p.xa_in + t.row_begin * R;
    // Two chunks' loads in flight per thread: all of them made ptxas spill in the loader at
    // r = 64, four at r = 16 with double quantization.
#pragma unroll 2
    for (int i = 0; i < kChunks / 128; ++i) {
      const int c = threadIdx.x + 128 * i;
      const int row = c % BR, rank0 = c / BR * 8;
      unsigned v[4] = {0u, 0u, 0u, 0u};
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        if (row < t.rows && rank0 + 4 * h < R) {
          const float4 f = __ldg(reinterpret_cast<const float4*>(xa + row * R + rank0 + 4 * h));
          v[2 * h] = pack2<Act>(p.scale * f.x, p.scale * f.y);
          v[2 * h + 1] = pack2<Act>(p.scale * f.z, p.scale * f.w);
        }
      }
      *reinterpret_cast<uint4*>(inputs + c * 16) = uint4{v[0], v[1], v[2], v[3]};
    }
    fence_proxy_async();
    mbarrier_arrive(full);
  }

  __device__ static void load(const ForwardParams& p, const ForwardTensorMaps& maps, char* smem,
                              const Barriers& bars, const Schedule& s, const QuantTables* tables) {
    const bool leader = threadIdx.x == 0;
    if (leader) prefetch_tensor_map(&maps.x);
    RingPosition<STAGES> stage;
    RingPosition<2> inputs;
    ScaleFetch scales[2];  // k-blocks kb and kb + 1 (by kb's parity)
    for (long long linear = s.first; linear < s.linear_end; linear += s.stride) {
      OutputTile t;
      if (!tile_at(p, s, linear, t)) continue;
      if constexpr (kNf4) {
        scales[0].fetch(p, t, 0);
        if (KB > 1) scales[1].fetch(p, t, 1);
      }
      constexpr int kInputsAfter = (STAGES < KB ? STAGES : KB) - 1;
      auto fill = [&](auto buffer, int kb) {
        constexpr int kBuf = decltype(buffer)::value;
        mbarrier_wait(bars.empty(stage.slot), stage.phase ^ 1);
        char* st = smem + stage.slot * kStageBytes;
        const unsigned full = bars.full(stage.slot);
        if (leader) {
          // Rows past the tile (another expert's, or zeros past the end) feed only accumulator
          // columns that are never stored.
          mbarrier_arrive_expect_tx(full, kXBytes);
          tma_load_3d(smem_addr(st), &maps.x, full, kb * BK, static_cast<int>(t.row_begin), 0);
        }
        copy_packed(p, t, kb, st + kXBytes);
        if constexpr (kNf4) scales[kBuf].store(t, kb, st + kXBytes, tables, p.offset);
        cp_async_mbarrier_arrive(full);
        // nf4's scales are plain stores: each warp's are released by its lane 0 after the warp
        // has converged on them (`full` counts these four arrivals for nf4 only).
        if constexpr (kNf4) {
          __syncwarp();
          if ((threadIdx.x & 31) == 0) mbarrier_arrive(full);
        }
        if (kNf4 && kb + 2 < KB) scales[kBuf].fetch(p, t, kb + 2);
        stage.advance();
        if (kb == kInputsAfter) {
          mbarrier_wait(bars.inputs_empty(inputs.slot), inputs.phase ^ 1);
          stage_inputs(p, t, smem + kInputsOffset + inputs.slot * kInputsBytes,
                       bars.inputs_full(inputs.slot));
          inputs.advance();
        }
      };
      for (int kb = 0; kb < KB; kb += 2) {
        fill(IntConstant<0>{}, kb);
        if (kb + 1 < KB) fill(IntConstant<1>{}, kb + 1);
      }
    }
    cp_async_wait<0>();  // no copy outlives its thread
  }

  // The A fragments of k-block `slot`'s weight slice for this warp's 16 features: a[kk] for the
  // k16 step kk, in the mma.m16n8k16 A layout (rows = features g and g + 8, k pairs 2q, 2q + 1
  // and 2q + 8, 2q + 9 with q the lane's quad index). `feature_stat`: int8 over K-contiguous
  // weights, the row_stats of features g and g + 8.
  __device__ static void decode(const char* w_area, const float* code,
                                const float (&feature_stat)[2], int f0, int lane,
                                unsigned (&a)[4][4]) {
    const int g = lane >> 2, q = lane & 3;
    auto value = [&](unsigned nibble, float scale) { return mul_rn(code[nibble], scale); };
    if constexpr (!kNf4) {
      decode_int8(w_area, feature_stat, f0, g, q, a);
    } else if constexpr (kKContig) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const char* row = w_area + (f0 + g + 8 * half) * kWStride;
        unsigned words[8], bits[8];
        ld_shared_16(*reinterpret_cast<unsigned(*)[4]>(&words[0]), row);
        ld_shared_16(*reinterpret_cast<unsigned(*)[4]>(&words[4]), row + 16);
        ld_shared_16(*reinterpret_cast<unsigned(*)[4]>(&bits[0]), row + 32);
        ld_shared_16(*reinterpret_cast<unsigned(*)[4]>(&bits[4]), row + 48);
        // Word w holds k 8w..8w+7; this lane's pair of k-step kk, part h is byte q of word
        // 2 kk + h (high nibble first: the even k).
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const unsigned byte = words[2 * kk + h] >> (8 * q);
            const float scale = __uint_as_float(bits[2 * kk + h]);
            a[kk][half + 2 * h] =
                pack2<Act>(value((byte >> 4) & 15u, scale), value(byte & 15u, scale));
          }
      }
    } else {
      // Decoded transposed, then moved into place: lane (g, q) decodes the byte of features
      // 2q, 2q + 1 (high nibble first) of the warp's 8-feature half hf in k row 8h + g of the k16
      // step, which is row g, columns 2q, 2q + 1 of the 8 x 8 block (k x features) whose
      // transpose is A fragment 2h + hf; movmatrix transposes it. So each lane loads two k rows
      // (16 bytes each: both halves' packed bytes, then their two group scales) per k16 step,
      // where the direct layout needed four.
      const char* column = w_area + (f0 / 16) * 16 + g * kWStride;
      const int shift = 8 * q;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        unsigned rows[2][4];  // k rows 16 kk + g and 16 kk + 8 + g
#pragma unroll
        for (int h = 0; h < 2; ++h) ld_shared_16(rows[h], column + (16 * kk + 8 * h) * kWStride);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int h = i >> 1, hf = i & 1;
          const unsigned byte = rows[h][hf] >> shift;
          const float scale = __uint_as_float(rows[h][2 + hf]);
          a[kk][i] =
              transpose_8x8(pack2<Act>(value((byte >> 4) & 15u, scale), value(byte & 15u, scale)));
        }
      }
    }
  }

  // int8: w = float(cb) * row_stat * (1/127) in SPEC.md's order, each byte sign-extended by one
  // prmt from the 8 bytes that hold it.
  __device__ static void decode_int8(const char* w_area, const float (&feature_stat)[2], int f0,
                                     int g, int q, unsigned (&a)[4][4]) {
    if constexpr (kKContig) {
      // k pair (16 kk + 8 h + 2q, + 1) of a feature: bytes 2q, 2q + 1 of its row's 8 bytes at
      // 16 kk + 8 h.
      const unsigned even = signed_byte_selector(2 * q), odd = signed_byte_selector(2 * q + 1);
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const char* row = w_area + (f0 + g + 8 * half) * kWStride;
        unsigned words[16];
#pragma unroll
        for (int i = 0; i < 4; ++i)
          ld_shared_16(*reinterpret_cast<unsigned(*)[4]>(&words[4 * i]), row + 16 * i);
        const float stat = feature_stat[half];
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const unsigned lo = words[4 * kk + 2 * h], hi = words[4 * kk + 2 * h + 1];
            a[kk][half + 2 * h] = pack2<Act>(int8_scaled(signed_byte(lo, hi, even), stat),
                                             int8_scaled(signed_byte(lo, hi, odd), stat));
          }
      }
    } else {
      // Decoded transposed and moved into place as nf4 (see decode): lane (g, q) takes features
      // 2q, 2q + 1 of half hf (bytes 2 (q & 1), + 1 of word 2 hf + q / 2 of the warp's 16 bytes)
      // in k row 8h + g of the k16 step; k row 4i + j's row_stat is float j of row i's padding.
      const unsigned even = signed_byte_selector(2 * (q & 1)),
                     odd = signed_byte_selector(2 * (q & 1) + 1);
      const char* column = w_area + f0 + g * kWStride;
      const char* stats = w_area + BF + (g >> 2) * kWStride + (g & 3) * 4;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        unsigned rows[2][4];  // k rows 16 kk + g and 16 kk + 8 + g
        float stat[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          ld_shared_16(rows[h], column + (16 * kk + 8 * h) * kWStride);
          stat[h] = *reinterpret_cast<const float*>(stats + (4 * kk + 2 * h) * kWStride);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int h = i >> 1, hf = i & 1;
          const unsigned word = (q & 2) ? rows[h][2 * hf + 1] : rows[h][2 * hf];
          a[kk][i] = transpose_8x8(pack2<Act>(int8_scaled(signed_byte(word, word, even), stat[h]),
                                              int8_scaled(signed_byte(word, word, odd), stat[h])));
        }
      }
    }
  }

  __device__ static void compute(const ForwardParams& p, char* smem, const Barriers& bars,
                                 const Schedule& s, const QuantTables* tables) {
    const int warp = (threadIdx.x - 128) >> 5;  // among the accumulating warps
    const int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const int f0 = warp * 16;  // the warp's first feature in the tile
    const float* code = tables->code;
    const int wg = warp >> 2;
    char* wg_slice = smem + kSlicesOffset + wg * 4096;  // the epilogue's (4 KB a warpgroup)
    const LoraB* lora_b = static_cast<const LoraB*>(p.lora_b);
    const Act* bias = static_cast<const Act*>(p.bias);
    Act* y = static_cast<Act*>(p.y);
    RingPosition<STAGES> stage;
    RingPosition<2> inputs;
    for (long long linear = s.first; linear < s.linear_end; linear += s.stride) {
      OutputTile t;
      if (!tile_at(p, s, linear, t)) continue;
      // The epilogue's B_e fragments (features f0 + g, f0 + g + 8 by ranks) and bias, loaded now
      // so that their latency hides behind the main loop.
      unsigned b_frag[RP / 16][4];
#pragma unroll
      for (int kq = 0; kq < RP / 16; ++kq)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int o = t.n0 + f0 + g + 8 * (i & 1), j = kq * 16 + 2 * q + 8 * (i >> 1);
          const float lo =
              o < N && j < R
                  ? to_float(lora_b[lora_b_index<Cfg::kBStorage, E, N, R>(t.expert, o, j)])
                  : 0.f;
          const float hi =
              o < N && j + 1 < R
                  ? to_float(lora_b[lora_b_index<Cfg::kBStorage, E, N, R>(t.expert, o, j + 1)])
                  : 0.f;
          b_frag[kq][i] = pack2<Act>(lo, hi);
        }
      float feature_stat[2] = {0.f, 0.f};
      if constexpr (!kNf4 && kKContig) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int o = t.n0 + f0 + g + 8 * half;
          if (o < N)
            feature_stat[half] = __ldg(static_cast<const float*>(p.absmax) +
                                       static_cast<long long>(t.expert) * N + o);
        }
      }
      float bias_of[2] = {0.f, 0.f};
      if constexpr (Cfg::kHasBias) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int o = t.n0 + f0 + g + 8 * half;
          bias_of[half] = o < N ? to_float(bias[static_cast<long long>(t.expert) * N + o]) : 0.f;
        }
      }

      float acc[BR / 2];
#pragma unroll
      for (int i = 0; i < BR / 2; ++i) acc[i] = 0.f;
      // A tile of at most kNarrowRows rows (often an expert's last) runs the wgmma of that width,
      // on the first columns of acc: half the tensor time of a 256-row tile's.
      auto main_loop = [&](auto width) {
        constexpr int W = decltype(width)::value;
        float(&acc_w)[W / 2] = *reinterpret_cast<float(*)[W / 2]>(&acc[0]);
        unsigned a[2][4][4];
        int in_flight = -1;  // the stage the wgmma batch still running reads
        mbarrier_wait(bars.full(stage.slot), stage.phase);
        decode(smem + stage.slot * kStageBytes + kXBytes, code, feature_stat, f0, lane, a[0]);
        // One k-block: its batch on the fragments decoded into a[kBuf]; then, once the previous
        // batch has completed (its stage is released and its fragments a[!kBuf] are free), the
        // next k-block's fragments while this batch runs.
        auto step = [&](auto buffer, int kb) {
          constexpr int kBuf = decltype(buffer)::value;
          const char* xs = smem + stage.slot * kStageBytes;
          wgmma_fence();
#pragma unroll
          for (int kk = 0; kk < BK / 16; ++kk)
            WgmmaRs<W>::template mma<kBf16>(acc_w, a[kBuf][kk], wgmma_desc_k128(xs + kk * 32));
          wgmma_commit();
          wgmma_wait<1>();
          wgmma_fence_fragments(a[kBuf ^ 1]);
          // Every accumulating thread releases the stage after its own decode reads of it (one
          // arrival per warp after a __syncwarp left racecheck reporting the refill as a hazard;
          // bench/NOTES.md, v7).
          if (in_flight >= 0) mbarrier_arrive(bars.empty(in_flight));
          in_flight = stage.slot;
          stage.advance();
          if (kb + 1 < KB) {
            mbarrier_wait(bars.full(stage.slot), stage.phase);
            decode(smem + stage.slot * kStageBytes + kXBytes, code, feature_stat, f0, lane,
                   a[kBuf ^ 1]);
          }
        };
        for (int kb = 0; kb < KB; kb += 2) {
          step(IntConstant<0>{}, kb);
          if (kb + 1 < KB) step(IntConstant<1>{}, kb + 1);
        }
        wgmma_wait<0>();
        wgmma_fence_operands(acc_w);
        wgmma_fence_fragments(a[0]);
        wgmma_fence_fragments(a[1]);
        mbarrier_arrive(bars.empty(in_flight));
      };
      if (kNarrowRows < BR && t.rows <= kNarrowRows)
        main_loop(IntConstant<kNarrowWidth>{});
      else
        main_loop(IntConstant<BR>{});

      mbarrier_wait(bars.inputs_full(inputs.slot), inputs.phase);
      const char* in = smem + kInputsOffset + inputs.slot * kInputsBytes;
      const long long* dst_rows = reinterpret_cast<const long long*>(in + kLoraOperandBytes);
      // acc (features x rows) += B_e * round(s * x * A^T)^T, B_e's fragments as A and the
      // loader's rounded rows as B: one wgmma per 16 ranks, or on 256-row tiles beyond 48 ranks
      // (where the wgmma's operands together made ptxas serialize it) mma.sync per 8 rows, whose
      // B fragment (row 8j + g, ranks 2q, 2q + 1 and + 8) is one word of each of two core
      // matrices. The tuner leaves that case to pinned configs: its registers spill.
      if constexpr (BR * RP <= kRsLoraWgmmaMaxCells) {
        wgmma_fence();
#pragma unroll
        for (int kq = 0; kq < RP / 16; ++kq)
          WgmmaRs<BR>::template mma<kBf16>(
              acc, b_frag[kq], wgmma_desc_no_swizzle(in + kq * 2 * BR * 16, BR * 16, 128));
        wgmma_commit();
        wgmma_wait<0>();
        wgmma_fence_operands(acc);
        wgmma_fence_fragments(b_frag);
      } else {
#pragma unroll
        for (int j = 0; j < BR / 8; ++j) {
          if (8 * j >= t.rows) break;  // rows past the tile: never stored
#pragma unroll
          for (int kq = 0; kq < RP / 16; ++kq) {
            unsigned b[2];
#pragma unroll
            for (int h = 0; h < 2; ++h)
              b[h] = *reinterpret_cast<const unsigned*>(in + ((2 * kq + h) * BR + 8 * j + g) * 16 +
                                                        4 * q);
            mma_16816<kBf16>(*reinterpret_cast<float(*)[4]>(&acc[j * 4]), b_frag[kq], b);
          }
        }
      }
      // Bias, rounding, and 32 rows at a time through the warpgroup's 4 KB slice (32 rows x its 64
      // features, 128-byte rows whose 16-byte chunks are swizzled by the row's low three bits):
      // each warp stores its fragments transposed by stmatrix (four 8 x 8 blocks, 2 row blocks x
      // its 2 halves of 8 features, per instruction), then after a warpgroup barrier each thread
      // stores 16-byte chunks, so that each warp instruction writes four rows' whole 128-byte
      // lines: 8x fewer shared-memory store instructions than 16-bit stores into per-warp slices,
      // and no line written a 32-byte part at a time by four warps (bench/NOTES.md, v16d).
      auto chunk_offset = [](int row, int chunk) { return row * 128 + ((chunk ^ row) & 7) * 16; };
      // This lane's stmatrix row address, for block lane / 8: slice row 8 (lane / 16) + lane % 8
      // (+ 16 for the second pair of row blocks), chunk 2 (warp % 4) + (lane / 8) % 2 (the warp's
      // feature half (lane / 8) % 2).
      const unsigned my_row_address =
          smem_addr(wg_slice) +
          chunk_offset(8 * (lane >> 4) + (lane & 7), 2 * (warp & 3) + ((lane >> 3) & 1));
      // N as an opaque value: with N a power of two ptxas hoisted every chunk's row address out
      // of the loop below and spilled (measured: 300 bytes at N = 2048).
      int row_stride = N;
      asm("" : "+r"(row_stride));
#pragma unroll
      for (int c = 0; c < BR / 32; ++c) {
        if (32 * c >= t.rows) break;  // the same for the whole warpgroup (its barriers below)
#pragma unroll
        for (int pair = 0; pair < 2; ++pair) {
          unsigned r[4];  // blocks (row block 4c + 2 pair + m / 2, half m % 2)
#pragma unroll
          for (int m = 0; m < 4; ++m) {
            const float* f = &acc[(4 * c + 2 * pair + (m >> 1)) * 4 + 2 * (m & 1)];
            r[m] = Cfg::kHasBias ? pack2<Act>(f[0] + bias_of[m & 1], f[1] + bias_of[m & 1])
                                 : pack2<Act>(f[0], f[1]);
          }
          stmatrix_x4_trans(my_row_address + pair * 16 * 128, r);
        }
        named_barrier_sync(1 + wg, 128);
        const int wg_thread = threadIdx.x & 127;
#pragma unroll
        for (int pass = 0; pass < 2; ++pass) {
          const int chunk = wg_thread + 128 * pass, slice_row = chunk >> 3, part = chunk & 7;
          const int row = 32 * c + slice_row, o = t.n0 + 64 * wg + 8 * part;
          unsigned v[4];
          ld_shared_16(v, wg_slice + chunk_offset(slice_row, part));
          const long long dst = row < t.rows ? dst_rows[row] : -1;
          if (dst >= 0 && o < N) st_global_16(y + dst * row_stride + o, v);
        }
        named_barrier_sync(1 + wg, 128);  // the slice is read before the next rows' stores
      }
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
    QuantTables* tables = reinterpret_cast<QuantTables*>(smem + kTablesOffset);
    if (threadIdx.x == 0) {
      for (int s = 0; s < STAGES; ++s) {
        // Each loader thread's cp.async arrival, each loader warp's nf4 scales, and the TMA one.
        mbarrier_init(bars.full(s), 128 + (kNf4 ? 4 : 0) + 1);
        mbarrier_init(bars.empty(s), kConsumerThreads);  // every accumulating thread
      }
      for (int b = 0; b < 2; ++b) {
        mbarrier_init(bars.inputs_full(b), 128);
        mbarrier_init(bars.inputs_empty(b), kConsumerThreads);
      }
      fence_mbarrier_init();
    }
    if (threadIdx.x < 32) count_row_tiles<E, Index, BR>(p, tile_start);
    stage_quant_tables<Cfg::kWeightFormat>(tables, p, Cfg::kDoubleQuant, kThreads);
    __syncthreads();
    const long long row_tiles = tile_start[E];
    const Schedule s{tile_start,
                     (row_tiles + kRasterGroup - 1) / kRasterGroup * kRasterGroup * N_TILES,
                     blockIdx.x, gridDim.x};
    if (threadIdx.x < 128) {
      release_registers<kLoaderRegisters>();
      load(p, maps, smem, bars, s, tables);
    } else {
      claim_registers<kConsumerRegisters>();
      compute(p, smem, bars, s, tables);
    }
  }
};

template <class Cfg>
__global__ void __launch_bounds__(ForwardRsKernel<Cfg>::kThreads, 1)
    moe_lora_forward_sm90_rs(const ForwardParams params,
                             const __grid_constant__ ForwardTensorMaps maps) {
  ForwardRsKernel<Cfg>::run(params, maps);
}

}  // namespace moejit
