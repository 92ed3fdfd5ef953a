#pragma once
// Filling benchmark buffers: fresh random values generated on the host (all cores, in bounded
// chunks) and uploaded, or one non-zero byte pattern set on the device for runs that must not spend
// their time generating data (the first-launch child).
#include <cstdint>
#include <vector>

#include "autotune/cuda_driver.hpp"
#include "compiler/problem.hpp"

namespace moejit::bench {

enum class Fill { random, pattern };

// SplitMix64: tiny, fast and good enough to decorrelate benchmark data and routing; seeded per
// element range so the values do not depend on the number of threads.
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

// The pattern byte: bf16 0x3c3c ~ 0.0115, fp32 0x3c3c3c3c ~ 0.0115, int8 60, nf4 nibbles 3 and 12;
// finite and non-zero in every format the benchmark stores.
inline constexpr unsigned char kPatternByte = 0x3c;

// Random sign and mantissa, magnitude in [2^-7, 2^-3): never zero, never subnormal, and small
// enough that K-long dot products stay far from overflow.
void fill_floats(cuda::DeviceBuffer& buffer, DType type, Fill how, std::uint64_t seed);
// Uniformly random bytes (every byte is a valid nf4 pair and int8 value).
void fill_bytes(cuda::DeviceBuffer& buffer, Fill how, std::uint64_t seed);
// fp32 scales uniform in [low, high), for absmax and row statistics.
void fill_scales(cuda::DeviceBuffer& buffer, float low, float high, Fill how, std::uint64_t seed);

// A device copy of `values`.
template <class T>
cuda::DeviceBuffer upload(const std::vector<T>& values) {
  cuda::DeviceBuffer buffer(values.size() * sizeof(T));
  buffer.upload(values);
  return buffer;
}

// Memsets and pageable uploads may still be in flight on the legacy stream, which a non-blocking
// stream does not wait for: finish them before anything is launched or timed.
void synchronize_context();

}  // namespace moejit::bench
