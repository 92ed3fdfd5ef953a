#pragma once
// How each op of a projection maps onto a kernel template. The forward and the backward's dx are
// both the GEMM template (forward.cuh / forward_sm90.cuh): dx = dy W^T + s (dy B) A is a forward
// with K and N swapped, the weight layout flipped, B^T (packed by pack_b) in the A role and A^T in
// the B role. dA and dB are the lora_grad template.
#include "compiler/problem.hpp"

namespace moejit {

enum class KernelFamily { gemm, lora_grad, pack_b, reduce_slots };
KernelFamily family_of(OpKind op);

// The spec of op `op` of the projection whose forward is `forward_spec`, with the fields that op's
// kernel does not read set to fixed values (the LoRA-gradient and helper kernels never read the
// base weights), so that equal kernels share one cache key whatever the weight format.
ProjectionSpec op_spec(const ProjectionSpec& forward_spec, OpKind op);

struct GemmView {
  int k = 0, n = 0;     // reduction and output features of the kernel
  bool in_out = false;  // weight tile N-contiguous (ldmatrix.trans / no wgmma)
  int gather_div = 1;   // ungrouped input row = slot / gather_div
  bool grouped_in = false, grouped_out = false, has_bias = false;
  DType a_dtype = DType::bf16;  // A-role factor (rows of r, K-contiguous)
  DType b_dtype = DType::bf16;  // B-role factor, addressed through b_storage
  int b_storage = 0;            // 0 peft, 1 expert_major, 2 stacked, 3 row-major [E*r, N]
};
GemmView gemm_view(const ProjectionSpec& spec);  // op forward or backward_dx

// Whether the forward kernel of `spec` reads B packed by pack_b (B_e^T rows, GemmView::b_storage
// 3) rather than in its storage: PEFT's puts a rank's elements of one expert E apart, so each
// 2-byte element of a tile's B_e would cost the loader a 32-byte sector (measured: qwen3-30b-a3b
// down 1.4x slower forward than from stacked storage, bench/NOTES.md v8). The runtime runs pack_b
// before such a forward.
bool forward_reads_packed_b(const ProjectionSpec& spec);

struct GradView {
  int d = 0;               // output columns (K for dA, N for dB)
  bool v_grouped = false;  // v rows in grouped order
  int gather_div = 1;      // else v row = slot / gather_div
  int out_storage = 3;     // as GemmView::b_storage
};
GradView grad_view(const ProjectionSpec& spec);  // op grad_a or grad_b

}  // namespace moejit
