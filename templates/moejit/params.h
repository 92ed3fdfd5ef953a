#pragma once
// Kernel parameter blocks. This header is compiled both by the host compiler and by NVRTC, so the
// struct layouts are identical on both sides by construction. Plain C types only.

namespace moejit {

// The register-operand kernel runs its LoRA term as wgmma while block_m * (r rounded up to 16) is
// at most this; beyond it (256 rows above 48 ranks) on mma.sync, whose registers spill, so the
// tuner offers no such tile.
constexpr int kRsLoraWgmmaMaxCells = 256 * 48;

struct ForwardParams {
  // [T, K] (or [T*k, K] when grouped_in; always for the register-operand kernel), act dtype
  const void* x;
  const void* w;               // base weight, all experts; format and layout per the config
  const void* lora_a;          // A storage, lora dtype
  const void* lora_b;          // B storage, lora dtype
  const void* bias;            // [E, N] act dtype, or null when the config has no bias
  const void* expert_offsets;  // [E], inclusive cumulative ends, index dtype
  const void* scattered_idxs;  // [T*k], slot of each grouped row, index dtype
  // [T*k, N] act dtype; null: only xa_out is written (w and the quantization arrays must still
  // be valid: the sm90 kernels run column tile 0's base product then and drop it)
  void* y;
  float* xa_out;  // optional [T*k, r] fp32: x * A^T per grouped row (unscaled)
  // The register-operand kernel (forward_sm90_rs.cuh) reads x * A^T here instead, [T*k, r] fp32
  // written by its prologue kernel; unused by the other kernels.
  const float* xa_in;
  // Optional [T*k, K] act dtype: the forward kernel (forward.cuh) copies the x rows it reads here
  // in grouped-row order, so that the register-operand kernel after it loads a gathered input's
  // tiles by TMA (as a grouped input's) instead of gathering them row by row.
  void* x_grouped;
  long long rows;  // T*k
  float scale;     // LoRA scaling s
  // Quantized base weights (nf4 / int8_rowwise); unused for bf16/fp16 weights.
  const void* absmax;   // nf4: fp32 absmax or uint8 qabsmax; int8: fp32 row_stats
  const void* code;     // nf4: fp32[16]
  const void* absmax2;  // nf4 double quant: fp32[ceil(nblocks/256)]
  const void* code2;    // nf4 double quant: fp32[256]
  float offset;         // nf4 double quant
};

// The TMA kernel's tensor maps (CUtensorMap: 128 opaque bytes, 64-byte aligned), encoded by the
// host for each launch because they hold the global addresses: the base weight and LoRA A-role
// factor of a ForwardParams block.
struct alignas(64) TensorMapStorage {
  unsigned long long opaque[16];
};
struct ForwardTensorMaps {
  TensorMapStorage w;
  TensorMapStorage a;
  TensorMapStorage x;  // grouped input only: [rows][K], boxes of 64 k x block_m rows
};

// dA / dB: out_e[j, d] = s * sum over rows i of expert e of u[i, j] * v[row(i), d].
struct LoraGradParams {
  const float* u;              // [T*k, r] fp32 in grouped-row order (dy*B or x*A^T)
  const void* v;               // gathered rows of D features, act dtype (x or dy)
  const void* expert_offsets;  // [E]
  const void* scattered_idxs;  // [T*k]
  void* out;                   // dA in A's storage or dB in B's storage, lora dtype
  long long rows;              // T*k
  float scale;
};

// pack_b: B_e^T in the act dtype, [E, r, N]; reduce_slots: out[t] = sum_j in[t*k + j].
struct AuxParams {
  const void* in;
  void* out;
  long long count;  // pack_b: E*r*N elements; reduce_slots: tokens T
};

}  // namespace moejit
