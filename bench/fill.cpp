#include "bench/fill.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <thread>

namespace moejit::bench {
namespace {

// Writes `count` elements of `element_size` bytes at `out`, drawing from `rng`.
using RangeWriter = std::function<void(SplitMix64& rng, std::byte* out, std::size_t count)>;

std::uint32_t random_element_bits(DType type, std::uint64_t u) {
  const auto bits = static_cast<std::uint32_t>(u);
  const std::uint32_t exponent_step = (bits >> 28) & 3u;
  switch (type) {
    case DType::bf16:
      return (bits & 0x8000u) | ((120u + exponent_step) << 7) | (bits & 0x7fu);
    case DType::fp16:
      return (bits & 0x8000u) | ((8u + exponent_step) << 10) | (bits & 0x3ffu);
    case DType::fp32:
      return (bits & 0x80000000u) | ((120u + exponent_step) << 23) | (bits & 0x7fffffu);
  }
  return 0;
}

// Generates on the host in chunks (bounded host memory for multi-GB weights), all cores at once.
void fill_generated(cuda::DeviceBuffer& buffer, std::size_t element_size, std::uint64_t seed,
                    const RangeWriter& write) {
  constexpr std::size_t kChunkElements = std::size_t{1} << 26;
  const std::size_t count = buffer.bytes() / element_size;
  const std::size_t workers = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::byte> host(std::min(count, kChunkElements) * element_size);
  for (std::size_t begin = 0; begin < count; begin += kChunkElements) {
    const std::size_t n = std::min(kChunkElements, count - begin);
    const std::size_t slice = (n + workers - 1) / workers;
    {
      std::vector<std::jthread> threads;
      for (std::size_t s = 0; s < n; s += slice)
        threads.emplace_back([&, s] {
          SplitMix64 rng{seed * 0x100000001b3ull + begin + s};
          write(rng, host.data() + s * element_size, std::min(slice, n - s));
        });
    }
    cuda::check(cuda::api().cuMemcpyHtoD(buffer.get() + begin * element_size, host.data(),
                                         n * element_size),
                "cuMemcpyHtoD");
  }
}

}  // namespace

void fill_floats(cuda::DeviceBuffer& buffer, DType type, Fill how, std::uint64_t seed) {
  if (how == Fill::pattern) return buffer.fill_bytes(kPatternByte);
  const std::size_t size = size_of(type);
  fill_generated(buffer, size, seed, [type, size](SplitMix64& rng, std::byte* out, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t bits = random_element_bits(type, rng.next());
      if (size == 2) {
        const auto half = static_cast<std::uint16_t>(bits);
        std::memcpy(out + i * 2, &half, 2);
      } else {
        std::memcpy(out + i * 4, &bits, 4);
      }
    }
  });
}

void fill_bytes(cuda::DeviceBuffer& buffer, Fill how, std::uint64_t seed) {
  if (how == Fill::pattern) return buffer.fill_bytes(kPatternByte);
  fill_generated(buffer, 1, seed, [](SplitMix64& rng, std::byte* out, std::size_t n) {
    for (std::size_t i = 0; i < n; i += 8) {
      const std::uint64_t bits = rng.next();
      std::memcpy(out + i, &bits, std::min<std::size_t>(8, n - i));
    }
  });
}

void fill_scales(cuda::DeviceBuffer& buffer, float low, float high, Fill how, std::uint64_t seed) {
  if (how == Fill::pattern) return buffer.fill_bytes(kPatternByte);
  fill_generated(buffer, 4, seed, [low, high](SplitMix64& rng, std::byte* out, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      const float unit = static_cast<float>(rng.next() >> 40) * 0x1p-24f;  // [0, 1)
      const float value = low + (high - low) * unit;
      std::memcpy(out + i * 4, &value, 4);
    }
  });
}

void synchronize_context() {
  cuda::check(cuda::api().cuCtxSynchronize(), "cuCtxSynchronize");
}

}  // namespace moejit::bench
