#pragma once
// wgmma (sm_90a) wrappers: shared-memory descriptors and m64nNk16 products with fp32 accumulators,
// D += A * B with A in shared memory or registers and B in shared memory, K-major (or MN-major
// for a transposed B) under the 128-byte swizzle, or without swizzle.
// Each accumulator register is one asm operand, and an asm string cannot depend on a template
// parameter, so the m64nNk16 wrappers are macro-made: one per N, each for bf16 and f16.

namespace moejit {

// Shared-memory matrix descriptor, by default with the 128-byte swizzle (layout 1): 8-row atoms of
// 1024 B whose rows are 128 B and whose 16-byte chunks are XORed with the row index; tiles start
// on 1024-byte boundaries. Layout 0: no swizzle.
__device__ __forceinline__ unsigned long long wgmma_desc(const void* smem, unsigned leading_bytes,
                                                         unsigned stride_bytes,
                                                         unsigned long long layout = 1) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  unsigned long long desc = (addr & 0x3FFFFu) >> 4;
  desc |= static_cast<unsigned long long>((leading_bytes >> 4) & 0x3FFFu) << 16;
  desc |= static_cast<unsigned long long>((stride_bytes >> 4) & 0x3FFFu) << 32;
  desc |= layout << 62;
  return desc;
}

// K-major operand: rows of 64 k values; consecutive 8-row groups 1024 B apart (leading offset
// unused). Stepping k by 16 adds 32 B to the start address.
__device__ __forceinline__ unsigned long long wgmma_desc_k128(const void* smem) {
  return wgmma_desc(smem, 16, 1024);
}

// K-major operand without swizzle: core matrices of 8 rows x 16 bytes (128 contiguous bytes);
// `k_group_bytes` apart along k (the next 8 k values), `row_group_bytes` along the rows.
__device__ __forceinline__ unsigned long long wgmma_desc_no_swizzle(const void* smem,
                                                                    unsigned k_group_bytes,
                                                                    unsigned row_group_bytes) {
  return wgmma_desc(smem, k_group_bytes, row_group_bytes, 0);
}

// MN-major operand (transposed B): blocks of 64 n values, each `block_bytes` long and made of rows
// of 128 B, one per k; 8-k-row groups 1024 B apart. Stepping k by 16 adds 2048 B.
__device__ __forceinline__ unsigned long long wgmma_desc_mn128(const void* smem,
                                                               unsigned block_bytes) {
  return wgmma_desc(smem, block_bytes, 1024);
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Makes generic-proxy shared-memory writes (cp.async, st.shared) visible to wgmma.
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Keeps the compiler from moving accumulator reads across an in-flight wgmma.
template <int R>
__device__ __forceinline__ void wgmma_fence_operands(float (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// The accumulators of m64nNk16 (N / 2 fp32 registers a thread) as an asm register list and the
// matching "+f" operands of an array `d`, each size built on the one before it.
#define MOEJIT_ACC8_REGS "%0, %1, %2, %3, %4, %5, %6, %7"
#define MOEJIT_ACC8_OPS \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
#define MOEJIT_ACC32_REGS                                                                      \
  MOEJIT_ACC8_REGS                                                                             \
  ", %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, " \
  "%26, %27, %28, %29, %30, %31"
#define MOEJIT_ACC32_OPS                                                                         \
  MOEJIT_ACC8_OPS, "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),   \
      "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
      "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
      "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define MOEJIT_ACC64_REGS                                                                   \
  MOEJIT_ACC32_REGS                                                                         \
  ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, " \
  "%49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define MOEJIT_ACC64_OPS                                                                          \
  MOEJIT_ACC32_OPS, "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), \
      "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]),  \
      "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]),  \
      "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]),  \
      "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define MOEJIT_ACC96_REGS                                                                   \
  MOEJIT_ACC64_REGS                                                                         \
  ", %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, " \
  "%81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
#define MOEJIT_ACC96_OPS                                                                          \
  MOEJIT_ACC64_OPS, "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), \
      "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]),  \
      "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]),  \
      "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]),  \
      "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
#define MOEJIT_ACC128_REGS                                                                     \
  MOEJIT_ACC96_REGS                                                                            \
  ", %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, "   \
  "%111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, " \
  "%126, %127"
#define MOEJIT_ACC128_OPS                                                                 \
  MOEJIT_ACC96_OPS, "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]),     \
      "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), \
      "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), \
      "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), \
      "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), \
      "+f"(d[125]), "+f"(d[126]), "+f"(d[127])

// D (ACC accumulators) += A * B, both from shared memory by descriptor; the asm operand numbers
// after the accumulators are those of desc_a, desc_b, the scale-d flag and trans-b.
#define MOEJIT_WGMMA_SS(N, ACC, DESC_A, DESC_B, SCALE_D, TRANS_B, TYPES)                           \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #SCALE_D                                       \
               ", 0;\n"                                                                            \
               "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPES " {" MOEJIT_ACC##ACC##_REGS \
               "}, %" #DESC_A ", %" #DESC_B ", p, 1, 1, 0, %" #TRANS_B ";\n}\n"                    \
               : MOEJIT_ACC##ACC##_OPS                                                             \
               : "l"(desc_a), "l"(desc_b), "r"(1), "n"(kTransB ? 1 : 0))
#define MOEJIT_DEFINE_WGMMA(N, ACC, DESC_A, DESC_B, SCALE_D, TRANS_B)                      \
  template <>                                                                              \
  struct Wgmma<N> {                                                                        \
    template <bool kBf16, bool kTransB = false>                                            \
    __device__ __forceinline__ static void mma(float (&d)[ACC], unsigned long long desc_a, \
                                               unsigned long long desc_b) {                \
      if constexpr (kBf16)                                                                 \
        MOEJIT_WGMMA_SS(N, ACC, DESC_A, DESC_B, SCALE_D, TRANS_B, "bf16.bf16");            \
      else                                                                                 \
        MOEJIT_WGMMA_SS(N, ACC, DESC_A, DESC_B, SCALE_D, TRANS_B, "f16.f16");              \
    }                                                                                      \
  };

template <int N>
struct Wgmma;
MOEJIT_DEFINE_WGMMA(16, 8, 8, 9, 10, 11)
MOEJIT_DEFINE_WGMMA(64, 32, 32, 33, 34, 35)
MOEJIT_DEFINE_WGMMA(128, 64, 64, 65, 66, 67)
MOEJIT_DEFINE_WGMMA(256, 128, 128, 129, 130, 131)

// wgmma with A from registers (m64nNk16, A as four 32-bit registers per thread in the mma.m16n8k16
// A-fragment layout, warp w holding rows 16w..16w+15) and B K-major in shared memory. The caller
// must leave `a` untouched until a wgmma_wait covers the instruction. The asm operand numbers
// after the accumulators are those of a[0..3], desc_b and the scale-d flag.
#define MOEJIT_WGMMA_RS(N, ACC, A0, A1, A2, A3, DESC_B, SCALE_D, TYPES)                            \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #SCALE_D                                       \
               ", 0;\n"                                                                            \
               "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPES " {" MOEJIT_ACC##ACC##_REGS \
               "}, {%" #A0 ", %" #A1 ", %" #A2 ", %" #A3 "}, %" #DESC_B ", p, 1, 1, 0;\n}\n"       \
               : MOEJIT_ACC##ACC##_OPS                                                             \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1))
#define MOEJIT_DEFINE_WGMMA_RS(N, ACC, A0, A1, A2, A3, DESC_B, SCALE_D)                 \
  template <>                                                                           \
  struct WgmmaRs<N> {                                                                   \
    template <bool kBf16>                                                               \
    __device__ __forceinline__ static void mma(float (&d)[ACC], const unsigned (&a)[4], \
                                               unsigned long long desc_b) {             \
      if constexpr (kBf16)                                                              \
        MOEJIT_WGMMA_RS(N, ACC, A0, A1, A2, A3, DESC_B, SCALE_D, "bf16.bf16");          \
      else                                                                              \
        MOEJIT_WGMMA_RS(N, ACC, A0, A1, A2, A3, DESC_B, SCALE_D, "f16.f16");            \
    }                                                                                   \
  };

template <int N>
struct WgmmaRs;
MOEJIT_DEFINE_WGMMA_RS(128, 64, 64, 65, 66, 67, 68, 69)
MOEJIT_DEFINE_WGMMA_RS(192, 96, 96, 97, 98, 99, 100, 101)
MOEJIT_DEFINE_WGMMA_RS(256, 128, 128, 129, 130, 131, 132, 133)

#undef MOEJIT_DEFINE_WGMMA_RS
#undef MOEJIT_WGMMA_RS
#undef MOEJIT_DEFINE_WGMMA
#undef MOEJIT_WGMMA_SS
#undef MOEJIT_ACC8_REGS
#undef MOEJIT_ACC8_OPS
#undef MOEJIT_ACC32_REGS
#undef MOEJIT_ACC32_OPS
#undef MOEJIT_ACC64_REGS
#undef MOEJIT_ACC64_OPS
#undef MOEJIT_ACC96_REGS
#undef MOEJIT_ACC96_OPS
#undef MOEJIT_ACC128_REGS
#undef MOEJIT_ACC128_OPS

}  // namespace moejit
