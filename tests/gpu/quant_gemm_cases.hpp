#pragma once
// Cases for the forward and backward over quantized base weights (nf4 with and without double
// quantization, int8_rowwise; SPEC.md "Base weights"), and the host-side oracle: random float
// weights quantized on the CPU, then dequantized bit-exactly (tests/support/quant) into the 16-bit
// Wd that the float64 references read as their stored weights.
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/problem.hpp"
#include "tests/support/host_tensor.hpp"
#include "tests/support/quant.hpp"
#include "tests/support/reference.hpp"
#include "tests/support/routing.hpp"

namespace moejit::test {

struct QuantCase {
  ProjectionSpec spec;  // op forward, weights nf4 or int8_rowwise
  std::int64_t tokens = 0;
  RoutingKind routing = RoutingKind::uniform;
  std::uint64_t seed = 0;  // inputs and weights both derive from it
  bool save_xa = false;    // the forward saves x*A^T for the backward

  // Everything needed to rerun the case alone, plus where its quantization blocks fall and the
  // kernel family the untuned Runtime picks on sm_90a.
  std::string describe() const;
};

// The base weights of a case in both forms: quantized (what the GPU reads) and dequantized to the
// act dtype (what the references read). Only the member of the case's format is filled.
struct QuantizedBase {
  WeightFormat format = WeightFormat::nf4;
  Nf4Quantized nf4;
  Int8Quantized int8;
  HostTensor dequantized;  // [E, X, Y] flattened, act dtype
};

// The same projection with 16-bit weights in the act dtype: the spec the references take.
ProjectionSpec reference_spec(const ProjectionSpec& quantized);

// Float weights W[E, X, Y] (X, Y = N, K for out_in; K, N for in_out) in runs of 97 values
// U(-1, 1) * 2^u / sqrt(K), u uniform in [-2, 2]: neighbouring quantization blocks and rows get
// absmax values up to 16x apart, so a scale read from the wrong block or row shows.
std::vector<float> random_base_weights(const ProjectionSpec& spec, std::uint64_t seed);

// random_base_weights quantized in spec's format and dequantized to spec.act.
QuantizedBase make_quantized_base(const ProjectionSpec& spec, std::uint64_t seed);

// make_inputs of the reference spec (routing, x, A, B, bias, scale) with W replaced by the
// dequantized weights of `base`.
ForwardInputs make_quant_inputs(const QuantCase& c, const QuantizedBase& base);

// dY: T*k rows of N drawn from U(-1, 1) in the act dtype, independent of the inputs' generator.
HostTensor make_quant_dy(const QuantCase& c);

// Whether some quantization block spans two experts: X*Y is not a multiple of the block size.
bool blocks_cross_experts(const ProjectionSpec& spec);

// Every format (nf4 block sizes 32..256 with and without double quantization, int8_rowwise) for
// both layouts and both act dtypes, with the other axes drawn from a fixed seed; then targeted
// cases: blocks crossing rows and experts with a partial last block, a rank above 128 (mma.sync
// everywhere), a 1024-value block and the smallest shapes.
std::vector<QuantCase> quant_gemm_cases();

// Many rows per expert (nf4, double quantization), so that any reduction split over rows would
// show up as a run-to-run difference.
QuantCase large_determinism_case();

}  // namespace moejit::test
