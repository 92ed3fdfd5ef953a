#pragma once
// Storage types for 16-bit floats and their conversions, written with PTX so that no CUDA header is
// needed under NVRTC.
#include "moejit/ptx.cuh"

namespace moejit {

struct bf16 {
  unsigned short bits;
};
struct fp16 {
  unsigned short bits;
};

template <class A, class B>
struct IsSame {
  static constexpr bool value = false;
};
template <class A>
struct IsSame<A, A> {
  static constexpr bool value = true;
};

template <class T>
struct DTypeTraits;
template <>
struct DTypeTraits<bf16> {
  static constexpr bool kIsBf16 = true;
};
template <>
struct DTypeTraits<fp16> {
  static constexpr bool kIsBf16 = false;
};

__device__ __forceinline__ float to_float(float v) {
  return v;
}
__device__ __forceinline__ float to_float(bf16 v) {
  return __uint_as_float(static_cast<unsigned>(v.bits) << 16);
}
__device__ __forceinline__ float to_float(fp16 v) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
  return f;
}

// Packs two floats into one 32-bit register of 16-bit values (lo in the low half), rounding to
// nearest even; the operand format of mma.sync.
template <class T>
__device__ __forceinline__ unsigned pack2(float lo, float hi);
template <>
__device__ __forceinline__ unsigned pack2<bf16>(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
template <>
__device__ __forceinline__ unsigned pack2<fp16>(float lo, float hi) {
  unsigned r;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

template <class T>
__device__ __forceinline__ T from_float(float v) {
  return T{static_cast<unsigned short>(pack2<T>(v, 0.f) & 0xffffu)};
}
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}

}  // namespace moejit
