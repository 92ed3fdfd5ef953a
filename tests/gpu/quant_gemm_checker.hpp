#pragma once
// Runs quantized-weight cases through moejit::Runtime (forward, then backward) and holds Y, the
// saved x*A^T, dX, dA and dB to SPEC.md "Accuracy" against the float64 references fed with the
// bit-exact dequantized weights; every run on poisoned outputs, each op twice, bit for bit.
#include <filesystem>
#include <string>
#include <vector>

#include "autotune/cuda_driver.hpp"
#include "runtime/runtime.hpp"
#include "tests/gpu/quant_gemm_cases.hpp"
#include "tests/support/host_tensor.hpp"

namespace moejit::test {

// Where the elements of a failing output lie: how many are off by more than bound x max(|want|,
// rms of the reference) or not finite, their row and column ranges and, when `row_experts` maps
// rows to experts (-1: unknown), how many per expert. Empty when no element is off.
std::string error_pattern(const std::vector<double>& reference, const HostTensor& output,
                          std::int64_t cols, double bound, const std::vector<int>& row_experts);

// Empty when the case passes, otherwise one line per problem (tensor, error, bound, elements).
// Each op runs twice and must repeat itself bit for bit; with `gradients_after_dx` (a Runtime
// with grad_b_sms = 0) the second backward runs through it, so the gradients computed beside dX
// must equal those computed after it. Throws what the Runtime throws.
std::string check_quant_case(Runtime& runtime, const QuantCase& c, const cuda::Stream& stream,
                             int reference_threads, Runtime* gradients_after_dx = nullptr);

// The cache file of worker `worker` under `cache_dir` (entries put there first are used).
std::filesystem::path worker_cache(const std::filesystem::path& cache_dir, int worker);

// Checks `cases` on `workers` threads, each with its own untuned Runtime (its own cache file under
// `cache_dir`), stream and context. One entry per case: empty when it passed, else why not (a
// CudaError stops every worker, since a device fault leaves the context unusable).
std::vector<std::string> check_quant_cases(const std::vector<QuantCase>& cases,
                                           const std::filesystem::path& cache_dir, int workers);

}  // namespace moejit::test
