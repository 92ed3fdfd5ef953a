#pragma once
// Decoding of the quantized base-weight formats of SPEC.md "Base weights" into the 16-bit act
// dtype, bit-exact with SPEC.md's formulas, for the GEMM loaders and for the standalone dequantize
// kernel at the end of this file:
//   nf4:          w = code[nibble] * absmax[flat / bs]
//                 absmax[b] = code2[qabsmax[b]] * absmax2[b / 256] + offset  (double quantization)
//   int8_rowwise: w = float(cb) * row_stats[row] * 7.874015718698502e-3
// each in fp32 in that order, then rounded once to the act dtype (round to nearest even).
// `flat` indexes W[E, X, Y] flattened row-major; packed byte j holds flat value 2j in its HIGH
// nibble and 2j+1 in its LOW nibble, so a little-endian 32-bit word of packed bytes j..j+3 holds
// flat values 2j..2j+7 as nibbles 1,0,3,2,5,4,7,6 (counting from bit 0).
#include "moejit/types.cuh"

namespace moejit {

// Weight format ids: the order of moejit::WeightFormat on the host.
inline constexpr int kWeightFormatNf4 = 2;
inline constexpr int kWeightFormatInt8Rowwise = 3;

inline constexpr int kNf4MinBlocksize = 32;
inline constexpr int kNf4MaxBlocksize = 4096;
inline constexpr int kAbsmax2Blocksize = 256;  // second-level blocks of double quantization
inline constexpr float kInt8Factor = 7.874015718698502e-3f;  // 1/127 in fp32

// fp32 multiply and add, each rounded on its own: the explicit .rn keeps ptxas from contracting a
// multiply and an add into one FMA, whose single rounding SPEC.md's formulas do not allow.
__device__ __forceinline__ float mul_rn(float a, float b) {
  float r;
  asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
__device__ __forceinline__ float add_rn(float a, float b) {
  float r;
  asm("add.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}

// ---- NF4 --------------------------------------------------------------------------------------

// The block statistics of one NF4 tensor (all experts). Lookup tables are read by data-dependent
// index, so point `code2` (and the `code` argument of the decoders) at shared-memory copies.
struct Nf4Stats {
  const void* absmax;    // fp32[nblocks]; with double quantization uint8 qabsmax[nblocks]
  const float* absmax2;  // fp32[ceil(nblocks / 256)]; double quantization only
  const float* code2;    // fp32[256]; double quantization only
  float offset;          // double quantization only
};

// absmax of block `block` (= flat / blocksize) in fp32.
template <bool kDoubleQuant>
__device__ __forceinline__ float nf4_block_absmax(const Nf4Stats& stats, long long block) {
  if constexpr (kDoubleQuant) {
    const unsigned q = static_cast<const unsigned char*>(stats.absmax)[block];
    return add_rn(mul_rn(stats.code2[q], stats.absmax2[block / kAbsmax2Blocksize]), stats.offset);
  } else {
    return static_cast<const float*>(stats.absmax)[block];
  }
}

// The nibble of value i (0..7) of a little-endian word of four packed bytes.
__device__ __forceinline__ unsigned nf4_nibble(unsigned word, int i) {
  return (word >> (8 * (i >> 1) + ((i & 1) ? 0 : 4))) & 0xFu;
}

// Eight NF4 values, flat f..f+7 (f even), from the word of packed bytes f/2..f/2+3; all eight in
// the block of scale `absmax` (true when f is a multiple of 8: block sizes are multiples of 32).
// out[i] holds values 2i (low half) and 2i+1 (high half): the order of 16-bit elements in memory.
template <class T>
__device__ __forceinline__ void nf4_decode8(unsigned word, const float* code, float absmax,
                                            unsigned (&out)[4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
    out[i] = pack2<T>(mul_rn(code[nf4_nibble(word, 2 * i)], absmax),
                      mul_rn(code[nf4_nibble(word, 2 * i + 1)], absmax));
}

// Sixteen NF4 values, flat f..f+15 with f a multiple of 16, from packed bytes f/2..f/2+7 (`lo`
// holds the first four bytes); all sixteen in one block.
template <class T>
__device__ __forceinline__ void nf4_decode16(unsigned lo, unsigned hi, const float* code,
                                             float absmax, unsigned (&out)[8]) {
  unsigned first[4], second[4];
  nf4_decode8<T>(lo, code, absmax, first);
  nf4_decode8<T>(hi, code, absmax, second);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[i] = first[i];
    out[4 + i] = second[i];
  }
}

// One NF4 value at any flat index, in fp32 (before rounding to the act dtype).
template <int kBlocksize, bool kDoubleQuant>
__device__ __forceinline__ float nf4_value(const unsigned char* packed, const float* code,
                                           const Nf4Stats& stats, long long flat) {
  const unsigned byte = packed[flat >> 1];
  const unsigned nibble = (flat & 1) ? (byte & 0xFu) : (byte >> 4);
  return mul_rn(code[nibble], nf4_block_absmax<kDoubleQuant>(stats, flat / kBlocksize));
}

// ---- int8_rowwise -----------------------------------------------------------------------------

__device__ __forceinline__ float int8_scaled(int cb, float row_stat) {
  return mul_rn(mul_rn(static_cast<float>(cb), row_stat), kInt8Factor);
}

// Sign-extended byte i (0..3) of a word.
__device__ __forceinline__ int int8_byte(unsigned word, int i) {
  return static_cast<int>(word << (24 - 8 * i)) >> 24;
}

// Eight int8 values of one row, flat f..f+7, from the little-endian words of cb bytes f..f+3
// (`lo`) and f+4..f+7 (`hi`); out[i] holds values 2i (low half) and 2i+1 (high half).
template <class T>
__device__ __forceinline__ void int8_decode8(unsigned lo, unsigned hi, float row_stat,
                                             unsigned (&out)[4]) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    out[i] = pack2<T>(int8_scaled(int8_byte(lo, 2 * i), row_stat),
                      int8_scaled(int8_byte(lo, 2 * i + 1), row_stat));
    out[2 + i] = pack2<T>(int8_scaled(int8_byte(hi, 2 * i), row_stat),
                          int8_scaled(int8_byte(hi, 2 * i + 1), row_stat));
  }
}

// ---- Standalone dequantization ----------------------------------------------------------------

// One 16-byte store (a struct copy is split into four 4-byte stores); `p` is 16-byte aligned.
__device__ __forceinline__ void store16(void* p, const unsigned (&r)[4]) {
  asm volatile("st.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"l"(p), "r"(r[0]), "r"(r[1]), "r"(r[2]),
               "r"(r[3])
               : "memory");
}

struct alignas(8) Chunk8 {
  unsigned w[2];
};

// Copies `count` floats into shared memory; every thread of the CTA calls it, then syncs.
__device__ __forceinline__ void stage_table(float* smem, const float* table, int count) {
  for (int i = threadIdx.x; i < count; i += blockDim.x) smem[i] = table[i];
}

// Cfg: using Act (bf16 or fp16); kFormat; kBlocksize and kDoubleQuant (nf4 only); kRows, kCols
// (X, Y of W[E, X, Y]); kThreads.
template <class Cfg>
struct DequantizeKernel {
  using Act = typename Cfg::Act;
  static constexpr int kFormat = Cfg::kFormat, kBlocksize = Cfg::kBlocksize;
  static constexpr bool kNf4 = kFormat == kWeightFormatNf4, kDoubleQuant = Cfg::kDoubleQuant;
  static constexpr long long kExpertSize = static_cast<long long>(Cfg::kRows) * Cfg::kCols;
  static constexpr int kThreads = Cfg::kThreads;

  static_assert(sizeof(Act) == 2, "the act dtype is bf16 or fp16");
  static_assert(kNf4 || kFormat == kWeightFormatInt8Rowwise, "format must be nf4 or int8_rowwise");
  static_assert(!kNf4 || ((kBlocksize & (kBlocksize - 1)) == 0 && kBlocksize >= kNf4MinBlocksize &&
                          kBlocksize <= kNf4MaxBlocksize),
                "nf4 blocksize must be a power of two in [32, 4096]");
  static_assert(kNf4 || !kDoubleQuant, "double quantization exists for nf4 only");
  static_assert(Cfg::kRows >= 1 && Cfg::kCols >= 1, "rows and cols must be >= 1");
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "threads: whole warps, at most 1024");

  // Eight values per step when each group of eight starts a 16-byte output chunk and a 4-byte word
  // of packed nibbles (nf4), or 8 bytes of one row (int8); otherwise one value per step.
  static constexpr bool kVector = kNf4 ? kExpertSize % 8 == 0 : Cfg::kCols % 8 == 0;

  __device__ static float scalar(const void* values, const void* scales, const float* code,
                                 const Nf4Stats& stats, long long flat) {
    if constexpr (kNf4) {
      return nf4_value<kBlocksize, kDoubleQuant>(static_cast<const unsigned char*>(values), code,
                                                 stats, flat);
    } else {
      return int8_scaled(static_cast<const signed char*>(values)[flat],
                         static_cast<const float*>(scales)[flat / Cfg::kCols]);
    }
  }

  __device__ static void vector8(const void* values, const void* scales, const float* code,
                                 const Nf4Stats& stats, long long flat, Act* dst) {
    unsigned r[4];
    if constexpr (kNf4) {
      const unsigned word =
          *reinterpret_cast<const unsigned*>(static_cast<const unsigned char*>(values) + flat / 2);
      nf4_decode8<Act>(word, code, nf4_block_absmax<kDoubleQuant>(stats, flat / kBlocksize), r);
    } else {
      const Chunk8 cb =
          *reinterpret_cast<const Chunk8*>(static_cast<const signed char*>(values) + flat);
      int8_decode8<Act>(cb.w[0], cb.w[1], static_cast<const float*>(scales)[flat / Cfg::kCols], r);
    }
    store16(dst, r);
  }
};

// out[s] = Wd of expert expert_ids[s] for s = blockIdx.y: [count, X, Y] in the act dtype. values:
// nf4 packed bytes or int8 cb; scales: nf4 absmax / qabsmax or int8 row_stats. An expert id
// outside [0, experts) leaves its slice unwritten (the host validates ids when asked).
template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads)
    dequantize_experts(const void* values, const void* scales, const float* code,
                       const float* absmax2, const float* code2, float offset,
                       const int* expert_ids, int experts, void* out) {
  using K = DequantizeKernel<Cfg>;
  __shared__ float smem_code[16];
  __shared__ float smem_code2[K::kDoubleQuant ? 256 : 1];
  const int expert = expert_ids[blockIdx.y];
  if (expert < 0 || expert >= experts) return;  // the whole CTA: no barrier is skipped
  if constexpr (K::kNf4) stage_table(smem_code, code, 16);
  if constexpr (K::kDoubleQuant) stage_table(smem_code2, code2, 256);
  __syncthreads();
  const Nf4Stats stats{scales, absmax2, smem_code2, offset};
  const long long base = expert * K::kExpertSize;
  typename K::Act* dst = static_cast<typename K::Act*>(out) + blockIdx.y * K::kExpertSize;
  const long long stride = static_cast<long long>(gridDim.x) * K::kThreads;
  const long long first = static_cast<long long>(blockIdx.x) * K::kThreads + threadIdx.x;
  if constexpr (K::kVector) {
    for (long long v = first; v < K::kExpertSize / 8; v += stride)
      K::vector8(values, scales, smem_code, stats, base + 8 * v, dst + 8 * v);
  } else {
    for (long long i = first; i < K::kExpertSize; i += stride)
      dst[i] = from_float<typename K::Act>(K::scalar(values, scales, smem_code, stats, base + i));
  }
}

}  // namespace moejit
