#include "autotune/tuning_problem.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>
#include <random>

#include "autotune/result_check.hpp"
#include "compiler/kernel_view.hpp"
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
    cuda::check(
        cuda::api().cuLaunchKernel(function_, 1024, 1, 1, 256, 1, 1, 0, nullptr, args, nullptr),
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

TuningProblem::TuningProblem(const ProjectionSpec& spec, std::int64_t tokens, std::uint64_t seed)
    : spec_(spec), rows_(tokens * spec.top_k) {
  const std::size_t E = spec.experts, r = spec.rank, rows = static_cast<std::size_t>(rows_);
  const FillKernel fill;
  auto random = [&](std::size_t count, DType dtype, float scale) -> void* {
    buffers_.push_back(
        random_buffer(fill, std::max<std::size_t>(count, 8), dtype, scale, seed + buffers_.size()));
    return buffers_.back().ptr();
  };
  auto upload = [&](const std::vector<char>& bytes) -> const void* {
    buffers_.emplace_back(std::max<std::size_t>(bytes.size(), 16));
    buffers_.back().upload(bytes.data(), bytes.size());
    return buffers_.back().ptr();
  };
  const Routing routing = uniform_routing(spec.experts, spec.top_k, tokens, seed);
  const void* offsets = upload(index_bytes(routing.expert_offsets, spec.index));
  expert_offsets_ = routing.expert_offsets;
  const void* scattered = upload(index_bytes(routing.sorted_scattered_idxs, spec.index));

  if (family_of(spec.op) == KernelFamily::gemm) {
    const GemmView v = gemm_view(spec);
    const std::size_t k = v.k, n = v.n;
    const std::size_t x_rows = v.grouped_in ? rows : rows / v.gather_div;
    const float inv_sqrt_k = 1.0f / std::sqrt(static_cast<float>(k));
    gemm_.x = random(x_rows * k, spec.act, 1.0f);
    const std::size_t weights = E * n * k;
    if (spec.weights == WeightFormat::nf4) {
      // Any bytes are valid nf4 codes and qabsmax indices; scales are random too.
      const std::size_t blocks = (weights + spec.quant_blocksize - 1) / spec.quant_blocksize;
      gemm_.w = random((weights / 2 + 1) / 2, DType::fp16, 1.0f);
      gemm_.absmax = spec.double_quant ? random(blocks / 2 + 1, DType::fp16, 1.0f)
                                       : random(blocks, DType::fp32, inv_sqrt_k);
      gemm_.code = random(16, DType::fp32, 1.0f);
      gemm_.absmax2 = random(blocks / 256 + 1, DType::fp32, inv_sqrt_k);
      gemm_.code2 = random(256, DType::fp32, 1.0f);
      gemm_.offset = 0.01f;
    } else if (spec.weights == WeightFormat::int8_rowwise) {
      gemm_.w = random(weights / 2, DType::fp16, 1.0f);
      // row_stats: one per last-dimension row, at most weights / min(k, n) in either layout.
      gemm_.absmax = random(weights / std::min(k, n), DType::fp32, inv_sqrt_k);
    } else {
      gemm_.w = random(weights, spec.act, inv_sqrt_k);
    }
    gemm_.lora_a = random(E * r * k, v.a_dtype, inv_sqrt_k);
    gemm_.lora_b = random(E * r * n, v.b_dtype, 1.0f / std::sqrt(static_cast<float>(r)));
    gemm_.bias = v.has_bias ? random(E * n, spec.act, 1.0f) : nullptr;
    gemm_.y = random(rows * n, spec.act, 1.0f);
    // The backward's dx pass always saves dy * B for the gradients.
    gemm_.xa_out = spec.op == OpKind::backward_dx
                       ? static_cast<float*>(random(rows * r, DType::fp32, 1.0f))
                       : nullptr;
    gemm_.expert_offsets = offsets;
    gemm_.scattered_idxs = scattered;
    gemm_.rows = static_cast<long long>(rows);
    gemm_.scale = 2.0f;
  } else {
    const GradView v = grad_view(spec);
    const std::size_t v_rows = v.v_grouped ? rows : rows / v.gather_div;
    grad_.u = static_cast<const float*>(random(rows * r, DType::fp32, 1.0f));
    grad_.v = random(v_rows * v.d, spec.act, 1.0f);
    grad_.out = random(E * r * v.d, spec.lora, 1.0f);
    grad_.expert_offsets = offsets;
    grad_.scattered_idxs = scattered;
    grad_.rows = static_cast<long long>(rows);
    grad_.scale = 2.0f;
  }
  cuda::check(cuda::api().cuCtxSynchronize(), "cuCtxSynchronize(after random fill)");
}

std::vector<float> TuningProblem::run_and_read(const KernelHandle& kernel, CUstream stream,
                                               std::size_t max_elements) const {
  const bool gemm = family_of(spec_.op) == KernelFamily::gemm;
  const DType dtype = gemm ? spec_.act : spec_.lora;
  const std::size_t elements =
      gemm ? static_cast<std::size_t>(rows_) * gemm_view(spec_).n
           : static_cast<std::size_t>(spec_.experts) * spec_.rank * grad_view(spec_).d;
  const auto out = reinterpret_cast<CUdeviceptr>(gemm ? gemm_.y : grad_.out);
  const std::size_t bytes = elements * size_of(dtype);
  cuda::check(cuda::api().cuMemsetD8Async(out, 0xFF, bytes, stream), "cuMemsetD8Async(poison)");
  launch(kernel, stream);
  cuda::check(cuda::api().cuStreamSynchronize(stream), "cuStreamSynchronize(after a check run)");
  std::vector<unsigned char> host(std::min(elements, max_elements) * size_of(dtype));
  cuda::check(cuda::api().cuMemcpyDtoH(host.data(), out, host.size()), "cuMemcpyDtoH(result)");
  return widen(host, dtype);
}

void TuningProblem::launch(const KernelHandle& kernel, CUstream stream) const {
  const void* params = family_of(spec_.op) == KernelFamily::gemm ? static_cast<const void*>(&gemm_)
                                                                 : static_cast<const void*>(&grad_);
  launch_kernel(kernel, spec_, params, rows_, stream);
}

}  // namespace moejit
