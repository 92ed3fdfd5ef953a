#include "tests/gpu/device_problem.hpp"

#include <cstring>

#include "compiler/kernel_view.hpp"

namespace moejit::test {
namespace {

cuda::DeviceBuffer upload(const std::vector<std::uint8_t>& bytes) {
  if (bytes.empty()) return {};  // an absent tensor (no bias) stays a null pointer
  cuda::DeviceBuffer buffer(bytes.size());
  buffer.upload(bytes);
  return buffer;
}

// B_e^T rows ([E*r, N]) from PEFT's [N, r*E] storage, element by element.
std::vector<std::uint8_t> packed_b(const ProjectionSpec& spec, const HostTensor& b) {
  const std::size_t e_count = spec.experts, r = spec.rank, n = spec.out_features;
  const std::size_t size = size_of(spec.lora);
  const std::vector<std::uint8_t>& in = b.bytes();
  std::vector<std::uint8_t> out(in.size());
  for (std::size_t e = 0; e < e_count; ++e)
    for (std::size_t j = 0; j < r; ++j)
      for (std::size_t o = 0; o < n; ++o)
        std::memcpy(&out[((e * r + j) * n + o) * size], &in[((o * r + j) * e_count + e) * size],
                    size);
  return out;
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
      b_packed_(forward_reads_packed_b(spec) ? upload(packed_b(spec, in.b)) : cuda::DeviceBuffer{}),
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
  p.lora_b = forward_reads_packed_b(spec_) ? b_packed_.ptr() : b_.ptr();
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
