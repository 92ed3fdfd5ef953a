#include "tests/gpu/backward_problem.hpp"

namespace moejit::test {
namespace {

std::size_t bytes_of(DType dtype, std::int64_t count) {
  return static_cast<std::size_t>(count) * size_of(dtype);
}

// A buffer for `count` elements of `dtype` (never empty: cuMemAlloc wants at least one byte).
cuda::DeviceBuffer buffer_for(DType dtype, std::int64_t count) {
  return cuda::DeviceBuffer(bytes_of(dtype, count));
}

}  // namespace

BackwardProblem::BackwardProblem(const ProjectionSpec& spec, const ForwardInputs& in,
                                 const HostTensor& dy, bool save_xa)
    : spec_(spec),
      forward_(spec, in),
      tokens_(in.routing.tokens),
      workspace_bytes_(backward_workspace_bytes(spec, in.routing.tokens)),
      dy_(dy.bytes().size()),
      dx_(buffer_for(spec.act, in.x.size())),  // dX has the shape of x
      da_(buffer_for(spec.lora, in.a.size())),
      db_(buffer_for(spec.lora, in.b.size())),
      workspace_(workspace_bytes_) {
  dy_.upload(dy.bytes());
  if (save_xa) {
    xa_ = buffer_for(DType::fp32, in.routing.rows() * spec.rank);
    xa_.fill_bytes(0xFF);  // NaN: a row the forward does not save shows up in the checks
  }
  synchronize_context();  // pageable uploads may still be in flight on the legacy stream
}

ForwardArgs BackwardProblem::forward_args() const {
  ForwardArgs a = forward_.args();
  a.save_xa = static_cast<float*>(xa_.ptr());  // null without save_xa
  return a;
}

BackwardArgs BackwardProblem::args() const {
  const ForwardArgs f = forward_.args();
  BackwardArgs a;
  a.x = f.x;
  a.w = f.w;
  a.lora_a = f.lora_a;
  a.lora_b = f.lora_b;
  a.sorted_expert_idxs = f.sorted_expert_idxs;
  a.sorted_scattered_idxs = f.sorted_scattered_idxs;
  a.expert_offsets = f.expert_offsets;
  a.dy = dy_.ptr();
  a.xa = static_cast<const float*>(xa_.ptr());
  a.dx = dx_.ptr();
  a.da = da_.ptr();
  a.db = db_.ptr();
  a.workspace = workspace_.ptr();
  a.workspace_bytes = workspace_bytes_;
  a.scale = f.scale;
  a.tokens = tokens_;
  return a;
}

void BackwardProblem::poison() {
  for (cuda::DeviceBuffer* b : {&dx_, &da_, &db_, &workspace_}) b->fill_bytes(0xFF);
  synchronize_context();
}

Gradients BackwardProblem::download() const {
  Gradients g{HostTensor(spec_.act, dx_.bytes() / size_of(spec_.act)),
              HostTensor(spec_.lora, da_.bytes() / size_of(spec_.lora)),
              HostTensor(spec_.lora, db_.bytes() / size_of(spec_.lora))};
  dx_.download(g.dx.bytes());
  da_.download(g.da.bytes());
  db_.download(g.db.bytes());
  return g;
}

HostTensor BackwardProblem::download_xa() const {
  HostTensor xa(DType::fp32, xa_.bytes() / sizeof(float));
  xa_.download(xa.bytes());
  return xa;
}

}  // namespace moejit::test
