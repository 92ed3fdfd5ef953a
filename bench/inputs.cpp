#include "bench/inputs.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>

#include "compiler/error.hpp"

namespace moejit::bench {
namespace {

// SplitMix64: tiny, fast and good enough to decorrelate benchmark data; seeded per element range so
// the values do not depend on the number of threads.
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

// Random sign and mantissa, magnitude in [2^-7, 2^-3): never zero, never subnormal, and small
// enough that K-long dot products stay far from overflow.
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

void fill_host_range(std::byte* out, std::size_t count, DType type, std::uint64_t seed) {
  SplitMix64 rng{seed};
  const std::size_t size = size_of(type);
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint32_t bits = random_element_bits(type, rng.next());
    if (size == 2) {
      const auto half = static_cast<std::uint16_t>(bits);
      std::memcpy(out + i * 2, &half, 2);
    } else {
      std::memcpy(out + i * 4, &bits, 4);
    }
  }
}

// Generates on the host in chunks (bounded host memory for multi-GB weights), all cores at once.
void fill_random(cuda::DeviceBuffer& buffer, DType type, std::uint64_t seed) {
  constexpr std::size_t kChunkElements = std::size_t{1} << 26;
  const std::size_t size = size_of(type);
  const std::size_t count = buffer.bytes() / size;
  const std::size_t workers = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::byte> host(std::min(count, kChunkElements) * size);
  for (std::size_t begin = 0; begin < count; begin += kChunkElements) {
    const std::size_t n = std::min(kChunkElements, count - begin);
    const std::size_t slice = (n + workers - 1) / workers;
    {
      std::vector<std::jthread> threads;
      for (std::size_t s = 0; s < n; s += slice)
        threads.emplace_back(fill_host_range, host.data() + s * size, std::min(slice, n - s), type,
                             seed * 0x100000001b3ull + begin + s);
    }
    cuda::check(cuda::api().cuMemcpyHtoD(buffer.get() + begin * size, host.data(), n * size),
                "cuMemcpyHtoD");
  }
}

void fill(cuda::DeviceBuffer& buffer, DType type, Fill how, std::uint64_t seed) {
  if (how == Fill::random) {
    fill_random(buffer, type, seed);
  } else {
    buffer.fill_bytes(0x3c);  // bf16 0x3c3c ~ 0.0115: finite and non-zero in every float type
  }
}

cuda::DeviceBuffer upload(const std::vector<std::int32_t>& values) {
  cuda::DeviceBuffer buffer(values.size() * sizeof(std::int32_t));
  buffer.upload(values);
  return buffer;
}

// Memsets and pageable uploads may still be in flight on the legacy stream, which a non-blocking
// stream does not wait for: finish them before anything is launched or timed.
void synchronize_context() {
  cuda::check(cuda::api().cuCtxSynchronize(), "cuCtxSynchronize");
}

void check_supported(const ProjectionSpec& spec) {
  if (spec.index != IndexType::int32)
    throw InvalidArgument("spec.index", std::string(to_string(spec.index)),
                          "int32 (the benchmark generates int32 routing)");
  if (spec.weights != WeightFormat::bf16 && spec.weights != WeightFormat::fp16)
    throw InvalidArgument("spec.weights", std::string(to_string(spec.weights)),
                          "bf16 or fp16 (the benchmark generates dense weights)");
  if (spec.act == DType::fp32) throw InvalidArgument("spec.act", "fp32", "bf16 or fp16");
}

}  // namespace

Routing random_routing(std::int64_t tokens, int experts, int top_k, std::uint64_t seed) {
  if (top_k < 1 || top_k > experts)
    throw InvalidArgument("top_k", std::to_string(top_k),
                          "between 1 and the expert count " + std::to_string(experts));
  const std::size_t slots = static_cast<std::size_t>(tokens) * top_k;
  std::vector<std::int32_t> slot_expert(slots);
  std::vector<std::int32_t> permutation(experts);
  std::iota(permutation.begin(), permutation.end(), 0);
  SplitMix64 rng{seed};
  // A partial Fisher-Yates shuffle per token: k distinct experts, uniformly.
  for (std::size_t slot = 0; slot < slots; ++slot) {
    const int j = static_cast<int>(slot % top_k);
    const int pick = j + static_cast<int>(rng.next() % static_cast<std::uint64_t>(experts - j));
    std::swap(permutation[j], permutation[pick]);
    slot_expert[slot] = permutation[j];
  }
  // Counting sort of the slots by expert.
  Routing r;
  std::vector<std::int32_t> counts(experts, 0);
  for (std::int32_t e : slot_expert) ++counts[e];
  r.expert_offsets.resize(experts);
  std::inclusive_scan(counts.begin(), counts.end(), r.expert_offsets.begin());
  std::vector<std::int32_t> next_row(experts);
  std::exclusive_scan(counts.begin(), counts.end(), next_row.begin(), 0);
  r.sorted_expert_idxs.resize(slots);
  r.sorted_scattered_idxs.resize(slots);
  for (std::size_t slot = 0; slot < slots; ++slot) {
    const std::int32_t row = next_row[slot_expert[slot]]++;
    r.sorted_expert_idxs[row] = slot_expert[slot];
    r.sorted_scattered_idxs[row] = static_cast<std::int32_t>(slot);
  }
  return r;
}

ForwardInputs::ForwardInputs(const ProjectionSpec& spec, std::int64_t tokens, Fill how,
                             std::uint64_t seed)
    : spec_(spec), tokens_(tokens) {
  check_supported(spec);
  const auto T = static_cast<std::size_t>(tokens), k = static_cast<std::size_t>(spec.top_k),
             E = static_cast<std::size_t>(spec.experts),
             K = static_cast<std::size_t>(spec.in_features),
             N = static_cast<std::size_t>(spec.out_features),
             r = static_cast<std::size_t>(spec.rank);
  const std::size_t act = size_of(spec.act), lora = size_of(spec.lora);
  x_ = cuda::DeviceBuffer((spec.grouped_in ? T * k : T) * K * act);
  w_ = cuda::DeviceBuffer(E * N * K * act);  // bf16/fp16 weights have the act dtype
  lora_a_ = cuda::DeviceBuffer(E * r * K * lora);
  lora_b_ = cuda::DeviceBuffer(N * r * E * lora);  // the same size in every B storage
  if (spec.has_bias) bias_ = cuda::DeviceBuffer(E * N * act);
  y_ = cuda::DeviceBuffer(T * k * N * act);
  fill(x_, spec.act, how, seed + 1);
  fill(w_, spec.act, how, seed + 2);
  fill(lora_a_, spec.lora, how, seed + 3);
  fill(lora_b_, spec.lora, how, seed + 4);
  if (spec.has_bias) fill(bias_, spec.act, how, seed + 5);
  const Routing routing = random_routing(tokens, spec.experts, spec.top_k, seed);
  sorted_expert_idxs_ = upload(routing.sorted_expert_idxs);
  sorted_scattered_idxs_ = upload(routing.sorted_scattered_idxs);
  expert_offsets_ = upload(routing.expert_offsets);
  synchronize_context();
}

ForwardArgs ForwardInputs::args() const {
  ForwardArgs a;
  a.x = x_.ptr();
  a.w = w_.ptr();
  a.lora_a = lora_a_.ptr();
  a.lora_b = lora_b_.ptr();
  a.bias = spec_.has_bias ? bias_.ptr() : nullptr;
  a.sorted_expert_idxs = sorted_expert_idxs_.ptr();
  a.sorted_scattered_idxs = sorted_scattered_idxs_.ptr();
  a.expert_offsets = expert_offsets_.ptr();
  a.y = y_.ptr();
  a.scale = 2.0f;
  a.tokens = tokens_;
  return a;
}

void ForwardInputs::poison_output() {
  y_.fill_bytes(0xff);
  synchronize_context();
}

std::int64_t ForwardInputs::count_nonfinite_output(std::int64_t max_rows) const {
  const std::int64_t rows = std::min<std::int64_t>(max_rows, tokens_ * spec_.top_k);
  std::vector<std::uint16_t> host(static_cast<std::size_t>(rows) * spec_.out_features);
  y_.download(host);
  // An all-ones exponent is Inf or NaN in both 16-bit float formats.
  const std::uint16_t exponent_mask = spec_.act == DType::bf16 ? 0x7f80 : 0x7c00;
  return std::count_if(host.begin(), host.end(),
                       [&](std::uint16_t v) { return (v & exponent_mask) == exponent_mask; });
}

}  // namespace moejit::bench
