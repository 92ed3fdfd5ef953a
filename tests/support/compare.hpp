#pragma once
// Accuracy measures of SPEC.md "Accuracy".
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/problem.hpp"
#include "tests/support/host_tensor.hpp"

namespace moejit::test {

// ||out - ref|| / ||ref|| in the Frobenius norm; ||out - ref|| when ref is all zeros.
// Throws std::invalid_argument when the sizes differ.
double relative_frobenius_error(const std::vector<double>& reference, const HostTensor& output);

// Index of the first NaN or infinite element, or -1 when all are finite.
std::int64_t first_non_finite(const HostTensor& output);

// The bound on relative_frobenius_error for outputs in `act` dtype.
double forward_tolerance(DType act);

// Why `output` ([rows, cols]) fails SPEC.md's accuracy contract against `reference` (a non-finite
// element, with its row and column, or the error above the tolerance for `act`); empty when it
// passes.
std::string forward_mismatch(const std::vector<double>& reference, const HostTensor& output,
                             std::int64_t cols, DType act);

}  // namespace moejit::test
