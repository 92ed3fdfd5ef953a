#include "autotune/tuning_problem.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>
#include <random>

#include "compiler/nvrtc_compiler.hpp"

namespace moejit {
namespace {

// The fill kernel, compiled for the device of the current context. Compiled per problem (a
// fraction of a second) rather than kept in a static, whose module would outlive its context.
class FillKernel {
 public:
  FillKernel() {
    CUdevice device = 0;
    cuda::check(cuda::api().cuCtxGetDevice(&device), "cuCtxGetDevice");
    const CompiledKernel k =
        compile({"#include \"moejit/fill.cuh\"\n", "moejit::fill_uniform",
                 cuda::query_device(static_cast<int>(device)).arch(), "fill_uniform"});
    module_ = cuda::Module(k.cubin);
    function_ = module_.function(k.lowered_name);
  }
  void fill(cuda::DeviceBuffer& buffer, DType dtype, float scale, std::uint64_t seed) const {
    long long count = static_cast<long long>(buffer.bytes() / size_of(dtype));
    int type = static_cast<int>(dtype);
    unsigned long long s = seed;
    void* ptr = buffer.ptr();
    void* args[] = {&ptr, &count, &type, &s, &scale};
    cuda::check(cuda::api().cuLaunchKernel(function_, 1024, 1, 1, 256, 1, 1, 0, nullptr, args,
                                           nullptr),
                "cuLaunchKernel(fill_uniform)");
  }

 private:
  cuda::Module module_;
  CUfunction function_ = nullptr;
};

cuda::DeviceBuffer random_buffer(const FillKernel& fill, std::size_t count, DType dtype,
                                 float scale, std::uint64_t seed) {
  cuda::DeviceBuffer buffer(count * size_of(dtype));
  fill.fill(buffer, dtype, scale, seed);
  return buffer;
}

}  // namespace

Routing uniform_routing(int experts, int top_k, std::int64_t tokens, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> slot_expert(static_cast<std::size_t>(tokens * top_k));
  std::vector<int> pool(experts);
  std::iota(pool.begin(), pool.end(), 0);
  for (std::int64_t t = 0; t < tokens; ++t) {
    // Partial Fisher-Yates: the first top_k entries become k distinct experts.
    for (int j = 0; j < top_k; ++j) {
      std::uniform_int_distribution<int> pick(j, experts - 1);
      std::swap(pool[j], pool[pick(rng)]);
      slot_expert[t * top_k + j] = pool[j];
    }
  }
  Routing r;
  r.expert_offsets.assign(experts, 0);
  for (int e : slot_expert) ++r.expert_offsets[e];
  std::partial_sum(r.expert_offsets.begin(), r.expert_offsets.end(), r.expert_offsets.begin());
  std::vector<std::int64_t> next(experts, 0);
  for (int e = 1; e < experts; ++e) next[e] = r.expert_offsets[e - 1];
  r.sorted_expert_idxs.resize(slot_expert.size());
  r.sorted_scattered_idxs.resize(slot_expert.size());
  for (std::size_t p = 0; p < slot_expert.size(); ++p) {
    const std::int64_t row = next[slot_expert[p]]++;
    r.sorted_expert_idxs[row] = slot_expert[p];
    r.sorted_scattered_idxs[row] = static_cast<std::int64_t>(p);
  }
  return r;
}

std::vector<char> index_bytes(const std::vector<std::int64_t>& values, IndexType type) {
  std::vector<char> out(values.size() * size_of(type));
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (type == IndexType::int64) {
      std::memcpy(out.data() + i * 8, &values[i], 8);
    } else {
      const std::int32_t v = static_cast<std::int32_t>(values[i]);
      std::memcpy(out.data() + i * 4, &v, 4);
    }
  }
  return out;
}

TuningProblem::TuningProblem(const ProjectionSpec& spec, std::int64_t tokens, std::uint64_t seed) {
  const std::size_t E = spec.experts, K = spec.in_features, N = spec.out_features, r = spec.rank;
  const std::size_t rows = static_cast<std::size_t>(tokens) * spec.top_k;
  const std::size_t x_rows = spec.grouped_in ? rows : static_cast<std::size_t>(tokens);
  const float inv_sqrt_k = 1.0f / std::sqrt(static_cast<float>(K));
  const FillKernel fill;
  x_ = random_buffer(fill, x_rows * K, spec.act, 1.0f, seed + 1);
  w_ = random_buffer(fill, E * N * K, spec.act, inv_sqrt_k, seed + 2);
  a_ = random_buffer(fill, E * r * K, spec.lora, inv_sqrt_k, seed + 3);
  b_ = random_buffer(fill, N * r * E, spec.lora, 1.0f / std::sqrt(static_cast<float>(r)), seed + 4);
  if (spec.has_bias) bias_ = random_buffer(fill, E * N, spec.act, 1.0f, seed + 5);
  y_ = cuda::DeviceBuffer(std::max<std::size_t>(rows, 1) * N * size_of(spec.act));
  const Routing routing = uniform_routing(spec.experts, spec.top_k, tokens, seed + 6);
  const auto offsets = index_bytes(routing.expert_offsets, spec.index);
  const auto scattered = index_bytes(routing.sorted_scattered_idxs, spec.index);
  offsets_ = cuda::DeviceBuffer(offsets.size());
  offsets_.upload(offsets);
  scattered_ = cuda::DeviceBuffer(std::max<std::size_t>(scattered.size(), 16));
  scattered_.upload(scattered);
  cuda::check(cuda::api().cuCtxSynchronize(), "cuCtxSynchronize(after random fill)");

  params_.x = x_.ptr();
  params_.w = w_.ptr();
  params_.lora_a = a_.ptr();
  params_.lora_b = b_.ptr();
  params_.bias = spec.has_bias ? bias_.ptr() : nullptr;
  params_.expert_offsets = offsets_.ptr();
  params_.scattered_idxs = scattered_.ptr();
  params_.y = y_.ptr();
  params_.rows = static_cast<long long>(rows);
  params_.scale = 2.0f;
}

}  // namespace moejit
