#include "runtime/validation.hpp"

#include <fmt/format.h>
#include <cstdint>
#include <cstring>
#include <vector>

#include "autotune/cuda_driver.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

std::string pointer_text(const void* p) {
  return fmt::format("{}", p);
}

void require_pointer(const void* p, const char* name) {
  if (!p) throw InvalidArgument(name, "null", "a device pointer");
  if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0)
    throw InvalidArgument(name, pointer_text(p), "a 16-byte aligned device pointer");
}

std::vector<std::int64_t> download_indices(const void* device, std::int64_t count, IndexType type) {
  std::vector<char> bytes(static_cast<std::size_t>(count) * size_of(type));
  if (count > 0)
    cuda::check(
        cuda::api().cuMemcpyDtoH(bytes.data(), reinterpret_cast<CUdeviceptr>(device), bytes.size()),
        "cuMemcpyDtoH(routing validation)");
  std::vector<std::int64_t> out(static_cast<std::size_t>(count));
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (type == IndexType::int64) {
      std::memcpy(&out[i], bytes.data() + i * 8, 8);
    } else {
      std::int32_t v;
      std::memcpy(&v, bytes.data() + i * 4, 4);
      out[i] = v;
    }
  }
  return out;
}

template <class Args>
void require_quant_pointers(const ProjectionSpec& spec, const Args& args) {
  if (spec.weights == WeightFormat::nf4) {
    require_pointer(args.w_absmax, spec.double_quant ? "w_absmax (qabsmax)" : "w_absmax");
    if (!args.w_code) throw InvalidArgument("w_code", "null", "the nf4 code table (fp32[16])");
    if (spec.double_quant) {
      if (!args.w_absmax2)
        throw InvalidArgument("w_absmax2", "null", "fp32 absmax2 for double quantization");
      if (!args.w_code2)
        throw InvalidArgument("w_code2", "null", "the fp32[256] code2 for double quantization");
    }
  } else if (spec.weights == WeightFormat::int8_rowwise) {
    require_pointer(args.w_absmax, "w_absmax (row_stats)");
  }
}

}  // namespace

void validate_forward_args(const ProjectionSpec& spec, const ForwardArgs& args) {
  spec.validate();
  if (args.tokens < 0) throw InvalidArgument("tokens", std::to_string(args.tokens), ">= 0");
  require_pointer(args.x, "x");
  require_pointer(args.w, "w");
  require_quant_pointers(spec, args);
  require_pointer(args.lora_a, "lora_a");
  require_pointer(args.lora_b, "lora_b");
  require_pointer(args.expert_offsets, "expert_offsets");
  require_pointer(args.sorted_scattered_idxs, "sorted_scattered_idxs");
  require_pointer(args.y, "y");
  if (args.sorted_expert_idxs) require_pointer(args.sorted_expert_idxs, "sorted_expert_idxs");
  if (args.save_xa) require_pointer(args.save_xa, "save_xa");
  if (spec.has_bias) {
    require_pointer(args.bias, "bias");
  } else if (args.bias) {
    throw InvalidArgument("bias", pointer_text(args.bias),
                          "null, since the spec has has_bias = false");
  }
}

void validate_backward_args(const ProjectionSpec& spec, const BackwardArgs& args) {
  spec.validate();
  if (spec.op != OpKind::forward)
    throw InvalidArgument("spec.op", std::string(to_string(spec.op)),
                          "forward (the spec of the forward being differentiated)");
  if (args.tokens < 0) throw InvalidArgument("tokens", std::to_string(args.tokens), ">= 0");
  require_pointer(args.x, "x");
  require_pointer(args.w, "w");
  require_quant_pointers(spec, args);
  require_pointer(args.lora_a, "lora_a");
  require_pointer(args.lora_b, "lora_b");
  require_pointer(args.expert_offsets, "expert_offsets");
  require_pointer(args.sorted_scattered_idxs, "sorted_scattered_idxs");
  require_pointer(args.dy, "dy");
  require_pointer(args.dx, "dx");
  require_pointer(args.da, "da");
  require_pointer(args.db, "db");
  if (args.sorted_expert_idxs) require_pointer(args.sorted_expert_idxs, "sorted_expert_idxs");
  if (args.xa) require_pointer(args.xa, "xa");
  const std::size_t needed = backward_workspace_bytes(spec, args.tokens);
  if (args.workspace_bytes < needed)
    throw InvalidArgument("workspace_bytes", std::to_string(args.workspace_bytes),
                          fmt::format(">= {} (backward_workspace_bytes)", needed));
  if (needed > 0) require_pointer(args.workspace, "workspace");
  if (reinterpret_cast<std::uintptr_t>(args.workspace) % 256 != 0)
    throw InvalidArgument("workspace", pointer_text(args.workspace), "a 256-byte aligned pointer");
}

void validate_routing(const ProjectionSpec& spec, std::int64_t tokens, const RoutingPointers& args,
                      CUstream stream) {
  cuda::check(cuda::api().cuStreamSynchronize(stream), "cuStreamSynchronize(routing validation)");
  const std::int64_t rows = tokens * spec.top_k;
  const auto offsets = download_indices(args.expert_offsets, spec.experts, spec.index);
  std::int64_t previous = 0;
  for (int e = 0; e < spec.experts; ++e) {
    if (offsets[e] < previous)
      throw InvalidArgument(fmt::format("expert_offsets[{}]", e), std::to_string(offsets[e]),
                            fmt::format("non-decreasing offsets (>= {})", previous));
    previous = offsets[e];
  }
  if (previous != rows)
    throw InvalidArgument(fmt::format("expert_offsets[{}]", spec.experts - 1),
                          std::to_string(previous), fmt::format("T*k = {}", rows));
  const auto scattered = download_indices(args.sorted_scattered_idxs, rows, spec.index);
  for (std::int64_t i = 0; i < rows; ++i)
    if (scattered[i] < 0 || scattered[i] >= rows)
      throw InvalidArgument(fmt::format("sorted_scattered_idxs[{}]", i),
                            std::to_string(scattered[i]), fmt::format("a slot in [0, {})", rows));
  if (!args.sorted_expert_idxs) return;
  const auto experts = download_indices(args.sorted_expert_idxs, rows, spec.index);
  int e = 0;
  for (std::int64_t i = 0; i < rows; ++i) {
    while (e < spec.experts && offsets[e] <= i) ++e;
    if (experts[i] != e)
      throw InvalidArgument(fmt::format("sorted_expert_idxs[{}]", i), std::to_string(experts[i]),
                            fmt::format("expert {} per expert_offsets", e));
  }
}

}  // namespace moejit
