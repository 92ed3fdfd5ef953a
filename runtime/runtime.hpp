#pragma once
// The moejit runtime: host code describes a projection and hands device pointers plus its CUDA
// stream; the runtime finds the tuned kernel (memory, then the SQLite cache, then autotuning or the
// default config), loads it once, and launches it.
#include <cuda.h>

#include <cstdint>
#include <filesystem>
#include <memory>

#include "autotune/cuda_driver.hpp"
#include "compiler/problem.hpp"
#include "compiler/tile_config.hpp"

namespace moejit {

// Device pointers for one forward call (SPEC.md "Ops"); all 16-byte aligned.
struct ForwardArgs {
  const void* x = nullptr;       // [T, K], or [T*k, K] when grouped_in
  const void* w = nullptr;       // base weights of all experts
  const void* lora_a = nullptr;  // A storage
  const void* lora_b = nullptr;  // B storage
  const void* bias = nullptr;    // [E, N]; required iff spec.has_bias
  const void* sorted_expert_idxs = nullptr;     // [T*k]
  const void* sorted_scattered_idxs = nullptr;  // [T*k]
  const void* expert_offsets = nullptr;         // [E]
  void* y = nullptr;                            // [T*k, N]
  float scale = 1.0f;
  std::int64_t tokens = 0;  // T
};

struct RuntimeOptions {
  std::filesystem::path cache_path;  // empty: default_cache_path()
  bool tune = true;                  // false: use the default config on a cache miss
  bool validate = false;             // copy the routing to the host and check it before launching
  int device = 0;                    // used when no context is current
};

struct RuntimeStats {
  std::int64_t launches = 0;
  std::int64_t memory_hits = 0;  // kernel already loaded in this process
  std::int64_t cache_hits = 0;   // loaded from the SQLite cache
  std::int64_t cache_misses = 0;
  std::int64_t compiles = 0;     // NVRTC compilations in this process
  std::int64_t tunes = 0;
};

class Runtime {
 public:
  explicit Runtime(RuntimeOptions options = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // y = x*Wd_e + s*(x*A_e^T)*B_e^T + bias_e for every grouped row, on `stream`.
  // Throws InvalidArgument (nothing launched) when an argument violates SPEC.md.
  void forward(const ProjectionSpec& spec, const ForwardArgs& args, CUstream stream = nullptr);

  // Makes the kernel for (spec, tokens) ready without launching it; returns its config.
  TileConfig prepare(const ProjectionSpec& spec, std::int64_t tokens);

  RuntimeStats stats() const;
  const cuda::DeviceInfo& device() const;
  const std::filesystem::path& cache_path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moejit
