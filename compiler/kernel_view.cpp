#include "compiler/kernel_view.hpp"

#include "compiler/error.hpp"

namespace moejit {

KernelFamily family_of(OpKind op) {
  switch (op) {
    case OpKind::forward:
    case OpKind::backward_dx:
      return KernelFamily::gemm;
    case OpKind::grad_a:
    case OpKind::grad_b:
      return KernelFamily::lora_grad;
    case OpKind::pack_b:
      return KernelFamily::pack_b;
    case OpKind::reduce_slots:
      return KernelFamily::reduce_slots;
  }
  throw InvalidArgument("op", std::to_string(static_cast<int>(op)), "a known op");
}

ProjectionSpec op_spec(const ProjectionSpec& forward_spec, OpKind op) {
  ProjectionSpec s = forward_spec;
  s.op = op;
  if (family_of(op) != KernelFamily::gemm) {
    s.weights = s.act == DType::fp16 ? WeightFormat::fp16 : WeightFormat::bf16;
    s.quant_blocksize = 0;
    s.double_quant = false;
    s.layout = WeightLayout::out_in;
    s.has_bias = false;
  }
  return s;
}

GemmView gemm_view(const ProjectionSpec& s) {
  GemmView v;
  if (s.op == OpKind::forward) {
    v.k = s.in_features;
    v.n = s.out_features;
    v.in_out = s.layout == WeightLayout::in_out;
    v.gather_div = s.top_k;
    v.grouped_in = s.grouped_in;
    v.grouped_out = s.grouped_out;
    v.has_bias = s.has_bias;
    v.a_dtype = s.lora;
    v.b_dtype = s.lora;
    v.b_storage = forward_reads_packed_b(s) ? 3 : static_cast<int>(s.b_storage);
    return v;
  }
  if (s.op != OpKind::backward_dx)
    throw InvalidArgument("op", std::string(to_string(s.op)), "forward or backward_dx");
  // dx rows come from dy in the forward output's order and go to the forward input's order
  // (per slot when the input was not grouped; reduce_slots then sums the k slots of a token).
  v.k = s.out_features;
  v.n = s.in_features;
  v.in_out = s.layout == WeightLayout::out_in;
  v.gather_div = 1;
  v.grouped_in = s.grouped_out;
  v.grouped_out = s.grouped_in;
  v.has_bias = false;
  v.a_dtype = s.lora;  // B^T packed by pack_b (same dtype, contiguous)
  v.b_dtype = s.lora;  // A read as A^T
  v.b_storage = 3;
  return v;
}

bool forward_reads_packed_b(const ProjectionSpec& spec) {
  return spec.op == OpKind::forward && spec.b_storage == BStorage::peft;
}

GradView grad_view(const ProjectionSpec& s) {
  GradView v;
  if (s.op == OpKind::grad_a) {
    v.d = s.in_features;
    v.v_grouped = s.grouped_in;
    v.gather_div = s.top_k;
    v.out_storage = 3;
  } else if (s.op == OpKind::grad_b) {
    v.d = s.out_features;
    v.v_grouped = s.grouped_out;
    v.gather_div = 1;
    v.out_storage = static_cast<int>(s.b_storage);
  } else {
    throw InvalidArgument("op", std::string(to_string(s.op)), "grad_a or grad_b");
  }
  return v;
}

}  // namespace moejit
