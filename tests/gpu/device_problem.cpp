#include "tests/gpu/device_problem.hpp"

namespace moejit::test {
namespace {

cuda::DeviceBuffer upload(const std::vector<std::uint8_t>& bytes) {
  if (bytes.empty()) return {};  // an absent tensor (no bias) stays a null pointer
  cuda::DeviceBuffer buffer(bytes.size());
  buffer.upload(bytes);
  return buffer;
}

}  // namespace

DeviceProblem::DeviceProblem(const ProjectionSpec& spec, const ForwardInputs& in)
    : spec_(spec),
      tokens_(in.routing.tokens),
      rows_(in.routing.rows()),
      scale_(in.scale),
      x_(upload(in.x.bytes())),
      w_(upload(in.w.bytes())),
      a_(upload(in.a.bytes())),
      b_(upload(in.b.bytes())),
      bias_(upload(in.bias.bytes())),
      expert_idxs_(upload(index_bytes(in.routing.sorted_expert_idxs, spec.index))),
      scattered_(upload(index_bytes(in.routing.sorted_scattered_idxs, spec.index))),
      offsets_(upload(index_bytes(in.routing.expert_offsets, spec.index))),
      y_(static_cast<std::size_t>(rows_) * spec.out_features * size_of(spec.act)) {
  synchronize_context();  // pageable uploads may still be in flight on the legacy stream
}

ForwardParams DeviceProblem::params() const {
  ForwardParams p{};
  p.x = x_.ptr();
  p.w = w_.ptr();
  p.lora_a = a_.ptr();
  p.lora_b = b_.ptr();
  p.bias = bias_.ptr();
  p.expert_offsets = offsets_.ptr();
  p.scattered_idxs = scattered_.ptr();
  p.y = y_.ptr();
  p.rows = rows_;
  p.scale = scale_;
  return p;
}

ForwardArgs DeviceProblem::args() const {
  ForwardArgs a;
  a.x = x_.ptr();
  a.w = w_.ptr();
  a.lora_a = a_.ptr();
  a.lora_b = b_.ptr();
  a.bias = bias_.ptr();
  a.sorted_expert_idxs = expert_idxs_.ptr();
  a.sorted_scattered_idxs = scattered_.ptr();
  a.expert_offsets = offsets_.ptr();
  a.y = y_.ptr();
  a.scale = scale_;
  a.tokens = tokens_;
  return a;
}

void DeviceProblem::poison_output() {
  y_.fill_bytes(0xFF);
  synchronize_context();
}

HostTensor DeviceProblem::download_output() const {
  HostTensor y(spec_.act, static_cast<std::size_t>(rows_) * spec_.out_features);
  y_.download(y.bytes());
  return y;
}

}  // namespace moejit::test
