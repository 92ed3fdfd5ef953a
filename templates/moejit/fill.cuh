#pragma once
// Fills a buffer with fresh uniform random values in [-scale, scale) on the device, so that the
// autotuner times kernels on realistic data (never zeros) without uploading gigabytes of weights.
#include "moejit/types.cuh"

namespace moejit {

__device__ __forceinline__ unsigned long long splitmix64(unsigned long long z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// dtype: 0 bf16, 1 fp16, 2 fp32 (the order of moejit::DType on the host).
__global__ void fill_uniform(void* out, long long count, int dtype, unsigned long long seed,
                             float scale) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const float u =
        static_cast<float>(splitmix64(seed ^ static_cast<unsigned long long>(i)) >> 40) *
            (2.0f / 16777216.0f) -
        1.0f;
    const float v = u * scale;
    if (dtype == 0) {
      static_cast<bf16*>(out)[i] = from_float<bf16>(v);
    } else if (dtype == 1) {
      static_cast<fp16*>(out)[i] = from_float<fp16>(v);
    } else {
      static_cast<float*>(out)[i] = v;
    }
  }
}

}  // namespace moejit
