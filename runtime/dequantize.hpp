#pragma once
// The `dequantize` op of SPEC.md "Base weights": writes Wd of chosen experts of a bitsandbytes-
// quantized weight tensor (nf4 with or without double quantization, int8_rowwise) in the act dtype,
// bit for bit as SPEC.md's formulas. Kernels come from templates/moejit/dequant.cuh, compiled with
// NVRTC once per (format, block size, double quantization, shape) per Dequantizer and kept in
// memory only: each is a few hundred instructions that compile in well under a second, so the
// SQLite cache, keyed by ProjectionSpec, is not worth a second key scheme here.
#include <cuda.h>

#include <cstdint>
#include <memory>

#include "compiler/nvrtc_compiler.hpp"
#include "compiler/problem.hpp"

namespace moejit {

// Device arrays of one quantized weight tensor W[E, X, Y] (all experts, row-major), as
// bitsandbytes stores them; fields a format does not use stay null. n = E*X*Y, nblocks =
// ceil(n / blocksize).
struct QuantizedWeights {
  WeightFormat format = WeightFormat::nf4;  // nf4 or int8_rowwise
  int experts = 0;                          // E
  int rows = 0;                             // X
  int cols = 0;                             // Y
  int blocksize = 64;                       // nf4: a power of two in [32, 4096]
  bool double_quant = false;                // nf4: absmax stored as uint8 qabsmax
  const void* packed_or_cb = nullptr;       // nf4: uint8[(n+1)/2]; int8_rowwise: int8[n]
  // nf4: fp32 absmax[nblocks], or uint8 qabsmax[nblocks]; int8_rowwise: fp32 row_stats[E*X].
  const void* absmax_or_qabsmax_or_row_stats = nullptr;
  const void* code = nullptr;     // nf4: fp32[16]
  const void* absmax2 = nullptr;  // nf4 double quantization: fp32[ceil(nblocks / 256)]
  const void* code2 = nullptr;    // nf4 double quantization: fp32[256]
  float offset = 0.0f;            // nf4 double quantization
};

// Element counts of the arrays of QuantizedWeights (0: not used by the format).
struct QuantizedSizes {
  std::int64_t packed_or_cb = 0;
  std::int64_t absmax_or_qabsmax_or_row_stats = 0;
  std::int64_t code = 0;
  std::int64_t absmax2 = 0;
  std::int64_t code2 = 0;
  bool operator==(const QuantizedSizes&) const = default;
};

// The sizes SPEC.md requires for `w`'s format and shape; throws InvalidArgument for an invalid
// format, shape or block size.
QuantizedSizes required_sizes(const QuantizedWeights& w);

// For callers that know their arrays' sizes (tensor bindings): throws InvalidArgument naming the
// first array whose count in `given` is not the required one.
void check_sizes(const QuantizedWeights& w, const QuantizedSizes& given);

// SPEC.md "Input checks" for one call, with no device access: format, shape, block size, every
// pointer present exactly when the format uses it and 16-byte aligned, 0 <= count <= 65535.
// Throws InvalidArgument naming the argument, its value and the expectation.
void validate_dequantize(const QuantizedWeights& w, const int* device_expert_ids, int count,
                         const void* out);

// The NVRTC request for the kernel that dequantizes `w` (format, block size, double quantization,
// X, Y) to `act` on `arch`; needs no device. Throws InvalidArgument for an invalid `w` or `act`.
CompileRequest dequantize_kernel_request(const QuantizedWeights& w, DType act,
                                         const std::string& arch);

struct DequantizerOptions {
  int device = 0;             // used when no CUDA context is current
  bool validate_ids = false;  // copy the expert ids to the host (synchronizing the stream) and
                              // check them against [0, E) before launching
};

class Dequantizer {
 public:
  // Throws InvalidArgument unless `act` is bf16 or fp16; NoGpuError without a GPU.
  explicit Dequantizer(DType act, DequantizerOptions options = {});
  ~Dequantizer();
  Dequantizer(const Dequantizer&) = delete;
  Dequantizer& operator=(const Dequantizer&) = delete;

  // out[s] = Wd of expert device_expert_ids[s] for s < count: [count, X, Y] in the act dtype, on
  // `stream`. Throws InvalidArgument, launching nothing, for a violated contract. Without
  // validate_ids, an id outside [0, E) leaves its slice unwritten (never read out of bounds).
  // Thread-safe.
  void run(const QuantizedWeights& w, const int* device_expert_ids, int count, void* out,
           CUstream stream = nullptr);

  // NVRTC compilations so far (one per distinct kernel).
  int compiles() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moejit
