#pragma once
// The base-weight formats the benchmark measures (SPEC.md "Base weights") and their device arrays.
// Quantized arrays are random but valid: every byte is a valid nf4 pair or int8 value, and scales
// are positive, about 1/sqrt(K), so outputs stay finite; kernels read them as data, and the time
// of a GEMM does not depend on the values.
#include <array>
#include <cstdint>
#include <string_view>

#include "autotune/cuda_driver.hpp"
#include "bench/fill.hpp"
#include "compiler/problem.hpp"
#include "runtime/runtime.hpp"

namespace moejit::bench {

// bf16: the act dtype as stored; nf4: blocksize 64, fp32 absmax; nf4-dq: nf4 with double
// quantization; int8: int8_rowwise.
enum class BenchWeights { bf16, nf4, nf4_dq, int8 };
inline constexpr std::array<BenchWeights, 4> kAllWeights = {
    BenchWeights::bf16, BenchWeights::nf4, BenchWeights::nf4_dq, BenchWeights::int8};

std::string_view to_string(BenchWeights weights);
// Throws InvalidArgument naming `argument` and the accepted spellings.
BenchWeights parse_bench_weights(std::string_view text, const char* argument);

inline constexpr int kNf4Blocksize = 64;

// `spec` with its base weights in `weights`' format (spec.act stays the activation dtype).
ProjectionSpec with_weights(ProjectionSpec spec, BenchWeights weights);

// Owns the device arrays of all experts' base weights in spec.weights' format.
class BaseWeights {
 public:
  BaseWeights(const ProjectionSpec& spec, Fill how, std::uint64_t seed);
  // Sets w and the quantization fields of ForwardArgs or BackwardArgs.
  template <class Args>
  void set(Args& args) const {
    args.w = w_.ptr();
    args.w_absmax = absmax_.bytes() ? absmax_.ptr() : nullptr;
    args.w_code = static_cast<const float*>(code_.bytes() ? code_.ptr() : nullptr);
    args.w_absmax2 = static_cast<const float*>(absmax2_.bytes() ? absmax2_.ptr() : nullptr);
    args.w_code2 = static_cast<const float*>(code2_.bytes() ? code2_.ptr() : nullptr);
    args.w_offset = offset_;
  }
  std::size_t bytes() const;

 private:
  void make_nf4(const ProjectionSpec& spec, std::size_t values, Fill how, std::uint64_t seed);
  void make_int8(const ProjectionSpec& spec, std::size_t values, Fill how, std::uint64_t seed);

  cuda::DeviceBuffer w_, absmax_, code_, absmax2_, code2_;
  float offset_ = 0.0f;
};

}  // namespace moejit::bench
