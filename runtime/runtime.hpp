#pragma once
// The moejit runtime: host code describes a projection and hands device pointers plus its CUDA
// stream; the runtime finds the tuned kernel (memory, then the SQLite cache, then autotuning or the
// default config), loads it once, and launches it.
#include <cuda.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>

#include "autotune/cuda_driver.hpp"
#include "compiler/problem.hpp"
#include "compiler/tile_config.hpp"

namespace moejit {

// Device pointers for one forward call (SPEC.md "Ops"); all 16-byte aligned.
struct ForwardArgs {
  const void* x = nullptr;  // [T, K], or [T*k, K] when grouped_in
  const void* w = nullptr;  // base weights of all experts
  // Quantized base weights (spec.weights nf4 or int8_rowwise, SPEC.md "Base weights"): `w` then
  // holds the packed nf4 bytes (bitsandbytes' layout) or the int8 `cb`.
  const void* w_absmax = nullptr;    // nf4: fp32 absmax, or uint8 qabsmax with double quant;
                                     // int8_rowwise: fp32 row_stats
  const float* w_code = nullptr;     // nf4: fp32[16] (QuantState.code)
  const float* w_absmax2 = nullptr;  // nf4 double quant: fp32[ceil(nblocks / 256)]
  const float* w_code2 = nullptr;    // nf4 double quant: fp32[256]
  float w_offset = 0.0f;             // nf4 double quant
  const void* lora_a = nullptr;      // A storage
  const void* lora_b = nullptr;      // B storage
  const void* bias = nullptr;        // [E, N]; required iff spec.has_bias
  const void* sorted_expert_idxs = nullptr;     // [T*k]
  const void* sorted_scattered_idxs = nullptr;  // [T*k]
  const void* expert_offsets = nullptr;         // [E]
  void* y = nullptr;                            // [T*k, N]
  // Optional: receives x * A_e^T (unscaled, fp32, [T*k, r] in grouped-row order) for the
  // backward, which then need not recompute it. 16-byte aligned.
  float* save_xa = nullptr;
  float scale = 1.0f;
  std::int64_t tokens = 0;  // T
};

// Device pointers for one backward call (SPEC.md "Ops", backward). x, w, lora_a, lora_b, the
// routing, scale and tokens are those of the forward call.
struct BackwardArgs {
  const void* x = nullptr;
  const void* w = nullptr;
  // Quantized base weights (spec.weights nf4 or int8_rowwise, SPEC.md "Base weights"): `w` then
  // holds the packed nf4 bytes (bitsandbytes' layout) or the int8 `cb`.
  const void* w_absmax = nullptr;    // nf4: fp32 absmax, or uint8 qabsmax with double quant;
                                     // int8_rowwise: fp32 row_stats
  const float* w_code = nullptr;     // nf4: fp32[16] (QuantState.code)
  const float* w_absmax2 = nullptr;  // nf4 double quant: fp32[ceil(nblocks / 256)]
  const float* w_code2 = nullptr;    // nf4 double quant: fp32[256]
  float w_offset = 0.0f;             // nf4 double quant

  const void* lora_a = nullptr;
  const void* lora_b = nullptr;
  const void* sorted_expert_idxs = nullptr;
  const void* sorted_scattered_idxs = nullptr;
  const void* expert_offsets = nullptr;
  const void* dy = nullptr;   // rows in the forward output's order, act dtype
  const float* xa = nullptr;  // the forward's save_xa, or null to recompute it
  void* dx = nullptr;         // [T*k, K] when grouped_in, else [T, K] (sum over the k slots)
  void* da = nullptr;         // A's storage and shape, lora dtype
  void* db = nullptr;         // B's storage and shape, lora dtype
  void* workspace = nullptr;  // backward_workspace_bytes(spec, tokens) bytes, 256-byte aligned
  std::size_t workspace_bytes = 0;
  float scale = 1.0f;
  std::int64_t tokens = 0;
};

// Scratch the backward needs beyond its outputs: dy * B_e (fp32, T*k x r), B_e^T packed in the act
// dtype (E x r x N), x * A_e^T when not saved (fp32, T*k x r), and per-slot dx (act, T*k x K) when
// the forward input was not grouped and k > 1.
std::size_t backward_workspace_bytes(const ProjectionSpec& spec, std::int64_t tokens);

struct RuntimeOptions {
  std::filesystem::path cache_path;  // empty: default_cache_path()
  bool tune = true;                  // false: use the default config on a cache miss
  // With tune = false: the config the GEMM ops (forward, backward_dx) build on a cache miss
  // instead of the default (reproducing a choice, trying a kernel). Stored untuned, like a
  // default build, so a later tuning run replaces it.
  std::optional<TileConfig> gemm_config;
  bool validate = false;  // copy the routing to the host and check it before launching
  int device = 0;         // used when no context is current
  // SMs the backward leaves to dB while dX runs on the others (dB reads only dy and x*A^T, so the
  // two can overlap: dX is tensor-bound, dB memory-bound; with nf4 or int8 weights dA too, once
  // the register-operand dX's prologue has written dy*B). -1: chosen from the shape; 0: they run
  // after dX. Applies where dX runs a persistent kernel (sm_90a); the results are the same.
  int grad_b_sms = -1;
};

struct RuntimeStats {
  std::int64_t launches = 0;
  std::int64_t memory_hits = 0;  // kernel already loaded in this process
  std::int64_t cache_hits = 0;   // loaded from the SQLite cache
  std::int64_t cache_misses = 0;
  std::int64_t cache_waits = 0;  // another process was building the kernel; reused its entry
  std::int64_t compiles = 0;     // NVRTC compilations in this process
  std::int64_t tunes = 0;
  std::int64_t grad_b_beside_dx = 0;  // backward calls that ran dB beside dX (grad_b_sms)
  // Over all tunes: candidates dropped before timing (shared memory, spills), timed, left untimed
  // because their time floor was above the best time, and dropped because their result differed
  // from the reference config's (a kernel wrong for the shape; never expected).
  std::int64_t tune_pruned = 0;
  std::int64_t tune_timed = 0;
  std::int64_t tune_cannot_win = 0;
  std::int64_t tune_mismatched = 0;
  // Over all tunes: wall seconds compiling candidates (NVRTC, in parallel) and timing them
  // (including the tuning problem's set-up and the result checks).
  double tune_compile_seconds = 0;
  double tune_timing_seconds = 0;
};

class Runtime {
 public:
  explicit Runtime(RuntimeOptions options = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // y = x*Wd_e + s*(x*A_e^T)*B_e^T + bias_e for every grouped row, on `stream`.
  // Throws InvalidArgument (nothing launched) when an argument violates SPEC.md. With PEFT's B
  // storage it first packs B (E*r*N elements of the lora dtype) into a buffer the Runtime keeps
  // per stream (the largest E*r*N seen on it) until it is destroyed.
  void forward(const ProjectionSpec& spec, const ForwardArgs& args, CUstream stream = nullptr);

  // dX, dA and dB for the forward described by `spec` (whose op is forward), on `stream`.
  // Deterministic: no float atomics; experts with no rows get zero dA and dB. Part of the work may
  // run on a stream the Runtime owns (one per caller stream), ordered after the work queued on
  // `stream` before the call and before the work queued on it after.
  void backward(const ProjectionSpec& spec, const BackwardArgs& args, CUstream stream = nullptr);

  // Makes the kernel for (spec, tokens) ready without launching it; returns its config. With
  // spec.op == forward, `with_backward` also prepares the backward ops of the same projection.
  TileConfig prepare(const ProjectionSpec& spec, std::int64_t tokens, bool with_backward = false);

  RuntimeStats stats() const;
  const cuda::DeviceInfo& device() const;
  const std::filesystem::path& cache_path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moejit
