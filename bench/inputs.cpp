#include "bench/inputs.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>

#include "autotune/launch.hpp"
#include "compiler/error.hpp"
#include "compiler/kernel_view.hpp"

namespace moejit::bench {
namespace {

void check_supported(const ProjectionSpec& spec) {
  if (spec.index != IndexType::int32)
    throw InvalidArgument("spec.index", std::string(to_string(spec.index)),
                          "int32 (the benchmark generates int32 routing)");
  if (spec.act == DType::fp32) throw InvalidArgument("spec.act", "fp32", "bf16 or fp16");
}

// Counts Inf and NaN among the first `max_elements` values of a bf16, fp16 or fp32 buffer.
std::int64_t count_nonfinite(const cuda::DeviceBuffer& buffer, DType type,
                             std::size_t max_elements) {
  const std::size_t size = size_of(type);
  const std::size_t n = std::min(max_elements, buffer.bytes() / size);
  std::vector<unsigned char> host(n * size);
  buffer.download(host);
  // An all-ones exponent is Inf or NaN.
  const std::uint32_t mask =
      type == DType::bf16 ? 0x7f80u : (type == DType::fp16 ? 0x7c00u : 0x7f800000u);
  std::int64_t count = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t bits = 0;
    std::memcpy(&bits, host.data() + i * size, size);  // little-endian: the low bytes
    count += (bits & mask) == mask;
  }
  return count;
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

ProblemInputs::ProblemInputs(const ProjectionSpec& spec, std::int64_t tokens, Fill how,
                             std::uint64_t seed, bool with_backward)
    : spec_((check_supported(spec), spec)), tokens_(tokens), weights_(spec, how, seed + 2) {
  const auto T = static_cast<std::size_t>(tokens), k = static_cast<std::size_t>(spec.top_k),
             E = static_cast<std::size_t>(spec.experts),
             K = static_cast<std::size_t>(spec.in_features),
             N = static_cast<std::size_t>(spec.out_features),
             r = static_cast<std::size_t>(spec.rank);
  const std::size_t act = size_of(spec.act), lora = size_of(spec.lora);
  const std::size_t x_rows = spec.grouped_in ? T * k : T;
  x_ = cuda::DeviceBuffer(x_rows * K * act);
  lora_a_ = cuda::DeviceBuffer(E * r * K * lora);
  lora_b_ = cuda::DeviceBuffer(N * r * E * lora);  // the same size in every B storage
  if (spec.has_bias) bias_ = cuda::DeviceBuffer(E * N * act);
  y_ = cuda::DeviceBuffer(T * k * N * act);
  fill_floats(x_, spec.act, how, seed + 1);
  fill_floats(lora_a_, spec.lora, how, seed + 3);
  fill_floats(lora_b_, spec.lora, how, seed + 4);
  if (spec.has_bias) fill_floats(bias_, spec.act, how, seed + 5);
  if (with_backward) {
    xa_ = cuda::DeviceBuffer(T * k * r * sizeof(float));
    dy_ = cuda::DeviceBuffer(T * k * N * act);
    dx_ = cuda::DeviceBuffer(x_rows * K * act);
    da_ = cuda::DeviceBuffer(lora_a_.bytes());
    db_ = cuda::DeviceBuffer(lora_b_.bytes());
    workspace_ =
        cuda::DeviceBuffer(std::max<std::size_t>(backward_workspace_bytes(spec, tokens), 1));
    fill_floats(dy_, spec.act, how, seed + 6);
  }
  const Routing routing = random_routing(tokens, spec.experts, spec.top_k, seed);
  sorted_expert_idxs_ = upload(routing.sorted_expert_idxs);
  sorted_scattered_idxs_ = upload(routing.sorted_scattered_idxs);
  expert_offsets_ = upload(routing.expert_offsets);
  synchronize_context();
}

ForwardArgs ProblemInputs::forward_args(bool save_xa) const {
  ForwardArgs a;
  a.x = x_.ptr();
  weights_.set(a);
  a.lora_a = lora_a_.ptr();
  a.lora_b = lora_b_.ptr();
  a.bias = spec_.has_bias ? bias_.ptr() : nullptr;
  a.sorted_expert_idxs = sorted_expert_idxs_.ptr();
  a.sorted_scattered_idxs = sorted_scattered_idxs_.ptr();
  a.expert_offsets = expert_offsets_.ptr();
  a.y = y_.ptr();
  if (save_xa) {
    if (!xa_.bytes())
      throw InvalidArgument("save_xa", "true", "inputs built with the backward buffers");
    a.save_xa = static_cast<float*>(xa_.ptr());
  }
  a.scale = 2.0f;
  a.tokens = tokens_;
  return a;
}

BackwardArgs ProblemInputs::backward_args() const {
  if (!dy_.bytes())
    throw InvalidArgument("backward_args", "requested", "inputs built with the backward buffers");
  BackwardArgs a;
  a.x = x_.ptr();
  weights_.set(a);
  a.lora_a = lora_a_.ptr();
  a.lora_b = lora_b_.ptr();
  a.sorted_expert_idxs = sorted_expert_idxs_.ptr();
  a.sorted_scattered_idxs = sorted_scattered_idxs_.ptr();
  a.expert_offsets = expert_offsets_.ptr();
  a.dy = dy_.ptr();
  a.xa = static_cast<const float*>(xa_.ptr());
  a.dx = dx_.ptr();
  a.da = da_.ptr();
  a.db = db_.ptr();
  a.workspace = workspace_.ptr();
  a.workspace_bytes = workspace_.bytes();
  a.scale = 2.0f;
  a.tokens = tokens_;
  return a;
}

std::size_t ProblemInputs::extra_bytes() const {
  // Beside the saved x * A^T: the forward's grouped copy of a gathered input (register-operand
  // kernel), or the backward's workspace with dX's copy (autotune/launch.hpp), whichever is larger.
  const std::int64_t rows = tokens_ * spec_.top_k;
  const std::size_t forward = rs_grouped_x_bytes(op_spec(spec_, OpKind::forward), rows);
  const std::size_t backward = backward_workspace_bytes(spec_, tokens_) +
                               rs_grouped_x_bytes(op_spec(spec_, OpKind::backward_dx), rows);
  return std::max(forward, backward) + xa_.bytes();
}

void ProblemInputs::poison_outputs() {
  for (cuda::DeviceBuffer* out : {&y_, &xa_, &dx_, &da_, &db_})
    if (out->bytes()) out->fill_bytes(0xff);
  synchronize_context();
}

std::int64_t ProblemInputs::count_nonfinite_forward(std::int64_t max_rows) const {
  const auto rows = static_cast<std::size_t>(std::max<std::int64_t>(max_rows, 0));
  return count_nonfinite(y_, spec_.act, rows * spec_.out_features);
}

std::int64_t ProblemInputs::count_nonfinite_backward(std::int64_t max_rows) const {
  const auto rows = static_cast<std::size_t>(std::max<std::int64_t>(max_rows, 0));
  const std::size_t all = static_cast<std::size_t>(-1);
  return count_nonfinite(dx_, spec_.act, rows * spec_.in_features) +
         count_nonfinite(da_, spec_.lora, all) + count_nonfinite(db_, spec_.lora, all);
}

}  // namespace moejit::bench
