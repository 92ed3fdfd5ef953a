#pragma once
// Quantized base weights inside the GEMM kernels (SPEC.md "Base weights"). 16-bit weights reach
// shared memory by cp.async; nf4 and int8_rowwise weights are fetched into registers one pipeline
// stage ahead (the packed words and their scales), then decoded bit-exactly (dequant.cuh) into the
// same shared-memory tile layout after the current stage's math is issued, so the loads' latency
// hides behind that math and no dequantized copy of any expert ever reaches device memory.
#include "moejit/dequant.cuh"
#include "moejit/params.h"

namespace moejit {

// Host WeightFormat order (compiler/problem.hpp).
inline constexpr int kWeightNf4 = 2;
inline constexpr int kWeightInt8 = 3;

// Lookup tables of one CTA: the nf4 code (16) and the double-quantization code2 (256).
struct QuantTables {
  float code[16];
  float code2[256];
};

template <int kFormat>
__device__ __forceinline__ void stage_quant_tables(QuantTables* tables, const ForwardParams& p,
                                                   bool double_quant, int threads) {
  if constexpr (kFormat == kWeightNf4) {
    const float* code = static_cast<const float*>(p.code);
    const float* code2 = static_cast<const float*>(p.code2);
    for (int i = threadIdx.x; i < 16; i += threads) tables->code[i] = code[i];
    if (double_quant)
      for (int i = threadIdx.x; i < 256; i += threads) tables->code2[i] = code2[i];
  }
}

// One thread's share of a weight tile of kChunks 16-byte chunks (8 weights each), shared by the
// kThreads threads from threadIdx.x == kFirstThread on. Kernels over 16-bit weights declare one
// too but never call it (and the compiler drops it).
template <int kFormat, int kBlocksize, bool kDoubleQuant, int kChunks, int kThreads,
          int kFirstThread = 0>
struct QuantWeightFetch {
  static_assert(kFormat != kWeightNf4 || (kBlocksize >= 32 && kBlocksize <= 4096 &&
                                          (kBlocksize & (kBlocksize - 1)) == 0),
                "nf4 blocksize must be a power of two in [32, 4096]");
  static constexpr int kPerThread = (kChunks + kThreads - 1) / kThreads;
  unsigned lo[kPerThread], hi[kPerThread];
  float scale[kPerThread];  // absmax, absmax2 (double quant) or row_stats
  unsigned qabsmax[kPerThread];
  int dst[kPerThread];  // shared-memory chunk index; -1: no chunk; -2: out of range (zeros)

  // map(c, flat, row_len, dst_chunk) -> valid: the flat weight index of chunk c's first value,
  // the length of its last-dimension row (int8 row_stats) and its chunk in the tile.
  template <class Map>
  __device__ __forceinline__ void fetch(const ForwardParams& p, Map map) {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int c = threadIdx.x - kFirstThread + i * kThreads;
      dst[i] = -1;
      if (c >= kChunks) continue;
      long long flat = 0, row_len = 1;
      int chunk = 0;
      const bool valid = map(c, flat, row_len, chunk);
      dst[i] = valid ? chunk : -2 - chunk;
      if (!valid) continue;
      if constexpr (kFormat == kWeightNf4) {
        lo[i] = __ldg(reinterpret_cast<const unsigned*>(static_cast<const unsigned char*>(p.w) +
                                                        (flat >> 1)));
        const long long block = flat / kBlocksize;
        if constexpr (kDoubleQuant) {
          qabsmax[i] = __ldg(static_cast<const unsigned char*>(p.absmax) + block);
          scale[i] = __ldg(static_cast<const float*>(p.absmax2) + block / kAbsmax2Blocksize);
        } else {
          scale[i] = __ldg(static_cast<const float*>(p.absmax) + block);
        }
      } else {
        const uint2 v =
            __ldg(reinterpret_cast<const uint2*>(static_cast<const signed char*>(p.w) + flat));
        lo[i] = v.x;
        hi[i] = v.y;
        scale[i] = __ldg(static_cast<const float*>(p.absmax) + flat / row_len);
      }
    }
  }

  template <class Act>
  __device__ __forceinline__ void store(char* tile, const QuantTables* tables, float offset) const {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      if (dst[i] == -1) continue;
      unsigned out[4] = {0u, 0u, 0u, 0u};
      const int chunk = dst[i] >= 0 ? dst[i] : -2 - dst[i];
      if (dst[i] >= 0) {
        if constexpr (kFormat == kWeightNf4) {
          float absmax = scale[i];
          if constexpr (kDoubleQuant)
            absmax = add_rn(mul_rn(tables->code2[qabsmax[i]], scale[i]), offset);
          nf4_decode8<Act>(lo[i], tables->code, absmax, out);
        } else {
          int8_decode8<Act>(lo[i], hi[i], scale[i], out);
        }
      }
      store16(tile + chunk * 16, out);
    }
  }
};

}  // namespace moejit
