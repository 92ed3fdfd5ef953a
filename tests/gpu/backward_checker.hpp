#pragma once
// Runs backward cases through moejit::Runtime and holds dX, dA and dB to backward_accuracy.hpp:
// every element finite and written, the error within the bound, exact zeros for experts without
// rows, and bitwise-identical repeated runs.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "autotune/cuda_driver.hpp"
#include "runtime/runtime.hpp"
#include "tests/gpu/backward_accuracy.hpp"
#include "tests/gpu/backward_cases.hpp"
#include "tests/gpu/backward_problem.hpp"

namespace moejit::test {

// Forward (saving x*A^T when the case asks), then backward twice on a poisoned output, on
// `stream`: the first result against the reference, the second against the first, bit for bit.
// Empty when the case passes. Throws what the Runtime throws.
std::string check_backward_case(Runtime& runtime, const BackwardCase& c, const cuda::Stream& stream,
                                int reference_threads);

// Checks `cases` on `workers` threads, each with its own Runtime (untuned, its own cache file
// under `cache_dir`) and stream. One entry per case: empty when it passed, else why not (a
// CudaError stops every worker, since a device fault leaves the context unusable).
// gemm_config pins the config of the forward and dX (RuntimeOptions::gemm_config).
std::vector<std::string> check_backward_cases(const std::vector<BackwardCase>& cases,
                                              const std::filesystem::path& cache_dir, int workers,
                                              const std::optional<TileConfig>& gemm_config = {});

}  // namespace moejit::test
